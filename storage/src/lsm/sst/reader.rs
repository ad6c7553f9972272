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
            let prev_end = handles
                .last()
                .map_or(0, |p: &BlockHandle| p.offset + p.len + 4);
            let end = h.offset.checked_add(h.len).and_then(|e| e.checked_add(4));
            if h.offset < prev_end || end.is_none_or(|e| e > footer.data_end) {
                return Err(corruption(
                    &path,
                    ih.offset,
                    "index handles out of order or past the data",
                ));
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

    /// Reads data blocks `first..` in one I/O of up to `max_bytes` (at least one block),
    /// verifying and decoding each. For sequential passes; bypasses the block cache.
    pub async fn read_blocks(&self, first: usize, max_bytes: usize) -> Result<Vec<Block>> {
        let start = self.handles[first].offset;
        let mut last = first;
        while last + 1 < self.handles.len() {
            let h = self.handles[last + 1];
            if h.offset + h.len + 4 - start > max_bytes as u64 {
                break;
            }
            last += 1;
        }
        let end = self.handles[last].offset + self.handles[last].len + 4;
        let raw = file::read_exact(&self.file, &self.path, start, (end - start) as usize).await?;
        let mut out = Vec::with_capacity(last + 1 - first);
        for h in &self.handles[first..=last] {
            let at = (h.offset - start) as usize;
            let len = h.len as usize;
            let body = raw
                .get(at..at + len + 4)
                .ok_or_else(|| corruption(&self.path, h.offset, "block outside its read"))?;
            let crc = u32::from_le_bytes(body[len..].try_into().unwrap());
            if crc32fast::hash(&body[..len]) != crc {
                return Err(corruption(
                    &self.path,
                    h.offset,
                    format!("block checksum mismatch ({len} bytes)"),
                ));
            }
            match Block::decode(&body[..len]) {
                Ok(b) if !b.is_empty() => out.push(b),
                Ok(_) => return Err(corruption(&self.path, h.offset, "empty data block")),
                Err(d) => return Err(corruption(&self.path, h.offset, d)),
            }
        }
        Ok(out)
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
