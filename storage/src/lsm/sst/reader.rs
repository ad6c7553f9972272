//! Opens an SST: reads and verifies the footer, index, bloom filter and properties, and
//! reads data blocks on demand (each verified against its crc32 on every read from disk).

use std::path::{Path, PathBuf};

use glommio::io::DmaFile;

use super::block::Block;
use super::bloom::Bloom;
use super::footer::{BlockHandle, Footer, Properties, FOOTER_LEN};
use crate::lsm::file;
use crate::{Error, Result};

pub fn corruption(path: &Path, offset: u64, detail: impl Into<String>) -> Error {
    Error::Corruption {
        path: path.to_path_buf(),
        offset,
        detail: detail.into(),
    }
}

/// An open SST with its metadata blocks in memory.
pub struct Table {
    pub number: u64,
    pub path: PathBuf,
    file: DmaFile,
    /// Per data block: its last internal key and where it is.
    // PERF: the decoded index block keeps all keys in one buffer (cache-friendly binary
    // search); `handles[i]` locates data block `i`.
    index: Block,
    handles: Vec<BlockHandle>,
    bloom: Bloom,
    pub props: Properties,
}

impl Table {
    pub async fn open(path: PathBuf, number: u64) -> Result<Table> {
        let file = file::open_read(&path).await?;
        let size = file
            .file_size()
            .await
            .map_err(|e| Error::glommio("stat", &path, e))?;
        if size < FOOTER_LEN as u64 {
            return Err(corruption(
                &path,
                0,
                format!("file of {size} bytes has no footer"),
            ));
        }
        let foff = size - FOOTER_LEN as u64;
        let raw = file::read_exact(&file, &path, foff, FOOTER_LEN).await?;
        let footer = Footer::decode(&raw).map_err(|d| corruption(&path, foff, d))?;
        let check = |h: BlockHandle| {
            if h.offset.checked_add(h.len + 4).is_none_or(|e| e > foff) {
                Err(corruption(
                    &path,
                    foff,
                    format!("block handle {h:?} outside the file"),
                ))
            } else {
                Ok(h)
            }
        };
        let read = |h: BlockHandle| {
            let (file, path) = (&file, &path);
            async move { file::read_checked(file, path, h.offset, h.len as usize).await }
        };
        let ih = check(footer.index)?;
        let raw = read(ih).await?;
        let block = Block::decode(&raw).map_err(|d| corruption(&path, ih.offset, d))?;
        let mut handles = Vec::with_capacity(block.len());
        for i in 0..block.len() {
            let v = block.value(i);
            if v.len() != 16 {
                return Err(corruption(&path, ih.offset, "malformed index entry"));
            }
            let h = BlockHandle {
                offset: u64::from_le_bytes(v[..8].try_into().unwrap()),
                len: u64::from_le_bytes(v[8..].try_into().unwrap()),
            };
            if h.offset + h.len + 4 > footer.data_end {
                return Err(corruption(&path, ih.offset, "index points past the data"));
            }
            handles.push(h);
        }
        let bh = check(footer.bloom)?;
        let bloom = Bloom::decode(&read(bh).await?).map_err(|d| corruption(&path, bh.offset, d))?;
        let ph = check(footer.properties)?;
        let props =
            Properties::decode(&read(ph).await?).map_err(|d| corruption(&path, ph.offset, d))?;
        Ok(Table {
            number,
            path,
            file,
            index: block,
            handles,
            bloom,
            props,
        })
    }

    /// False when the table certainly holds no version of `head` (space + user key).
    pub fn may_contain(&self, head_hash: u64) -> bool {
        self.bloom.may_contain(head_hash)
    }

    pub fn num_blocks(&self) -> usize {
        self.handles.len()
    }

    /// The first block whose last key is `>= k` (`num_blocks()` if none).
    pub fn find_block(&self, k: &[u8]) -> usize {
        self.index.seek_ge(k)
    }

    pub fn block_offset(&self, i: usize) -> u64 {
        self.handles[i].offset
    }

    /// Reads, verifies and decodes data block `i` from disk (no caching here).
    pub async fn read_block(&self, i: usize) -> Result<Block> {
        let h = self.handles[i];
        let raw = file::read_checked(&self.file, &self.path, h.offset, h.len as usize).await?;
        match Block::decode(&raw) {
            Ok(b) if b.is_empty() => Err(corruption(&self.path, h.offset, "empty data block")),
            Ok(b) => Ok(b),
            Err(d) => Err(corruption(&self.path, h.offset, d)),
        }
    }
}
