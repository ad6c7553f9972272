//! Segment files: naming, preparation (pre-zeroing or recycling), aligned appends with an
//! in-memory tail block, record reads, and the sequential scan recovery uses.
//!
//! A live segment is named `{seq:020}.log`. A segment being zero-filled is `{seq:020}.tmp`
//! until it is complete and synced; a reclaimed segment waiting to be recycled is
//! `free-{old seq:020}.log`. Only `*.log` files with a sequence number name are part of the
//! log; recovery deletes `*.tmp` files and recycles (or deletes) `free-*` files.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};

use super::record::{check_header, Header, Invalid, HEADER_LEN};
use crate::{Error, Result};

/// Block size of appends: at least the device's O_DIRECT alignment, and never below a
/// filesystem page so a rewritten tail block never shares a page with unrelated bytes.
const MIN_BLOCK: u64 = 4096;

/// Size of each read when scanning a segment.
const SCAN_CHUNK: usize = 1 << 20;

/// Size of each zero-filling write when preparing a fresh segment.
const ZERO_CHUNK: usize = 1 << 20;

pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:020}.log")
}

/// Parses a live segment file name into its sequence number.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn free_name(seq: u64) -> String {
    format!("free-{seq:020}.log")
}

pub(crate) fn is_free_name(name: &str) -> bool {
    name.strip_prefix("free-")
        .and_then(parse_segment_name)
        .is_some()
}

/// Opens a segment for reading and writing with O_DIRECT.
pub(crate) async fn open_rw(path: &Path) -> Result<DmaFile> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(path)
        .await
        .map_err(|e| Error::glommio("open", path, e))
}

/// fsyncs a directory, making renames, creations and removals in it durable.
pub(crate) async fn sync_dir(dir: &Path) -> Result<()> {
    let d = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| Error::glommio("open directory", dir, e))?;
    d.sync()
        .await
        .map_err(|e| Error::glommio("fsync directory", dir, e))?;
    d.close()
        .await
        .map_err(|e| Error::glommio("close directory", dir, e))
}

/// One segment file of the log.
pub(crate) struct Segment {
    pub seq: u64,
    pub path: PathBuf,
    pub file: Rc<DmaFile>,
    /// Size of the file: how far appends go before the log rotates.
    pub capacity: u64,
}

impl Segment {
    /// Opens an existing segment file.
    pub async fn open(seq: u64, path: PathBuf) -> Result<Segment> {
        let file = open_rw(&path).await?;
        let capacity = file
            .file_size()
            .await
            .map_err(|e| Error::glommio("stat", &path, e))?;
        Ok(Segment {
            seq,
            path,
            file: Rc::new(file),
            capacity,
        })
    }

    /// The append block size for this file.
    pub fn block(&self) -> u64 {
        self.file.alignment().max(MIN_BLOCK)
    }

    /// Reads `len` bytes at `offset` (any alignment).
    pub async fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let r = self
            .file
            .read_at(offset, len)
            .await
            .map_err(|e| Error::glommio("read", &self.path, e))?;
        if r.len() != len {
            return Err(Error::io(
                "read",
                &self.path,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("short read: {} of {len} bytes at offset {offset}", r.len()),
                ),
            ));
        }
        Ok(r.to_vec())
    }
}

/// Where the preparation of the next segment takes its file from.
pub(crate) enum Source {
    /// A reclaimed segment (`free-*.log`): renamed, its stale bytes left in place.
    Recycle(PathBuf),
    /// A new file of this many bytes, written full of zeros.
    Fresh(u64),
}

/// Prepares segment `seq` in `dir`: a file of real, synced blocks (zeros, or a recycled
/// segment's old records), durably named `{seq}.log`. Appending into it afterwards only
/// overwrites blocks, which is what makes each append's fdatasync cheap.
pub(crate) async fn prepare(dir: PathBuf, seq: u64, source: Source) -> Result<Segment> {
    let path = dir.join(segment_name(seq));
    match source {
        Source::Recycle(old) => {
            let file = open_rw(&old).await?;
            file.rename(&path)
                .await
                .map_err(|e| Error::glommio("rename", &old, e))?;
            file.close()
                .await
                .map_err(|e| Error::glommio("close", &path, e))?;
        }
        Source::Fresh(size) => {
            let tmp = dir.join(format!("{seq:020}.tmp"));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .dma_open(&tmp)
                .await
                .map_err(|e| Error::glommio("create", &tmp, e))?;
            let size = file.align_up(size.max(MIN_BLOCK));
            let mut pos = 0;
            while pos < size {
                let n = (size - pos).min(ZERO_CHUNK as u64) as usize;
                let mut buf = file.alloc_dma_buffer(n);
                buf.as_bytes_mut().fill(0);
                let w = file
                    .write_at(buf, pos)
                    .await
                    .map_err(|e| Error::glommio("zero-fill", &tmp, e))?;
                if w != n {
                    return Err(short_write(&tmp, pos, w, n));
                }
                pos += n as u64;
                glommio::yield_if_needed().await;
            }
            file.fdatasync()
                .await
                .map_err(|e| Error::glommio("fdatasync", &tmp, e))?;
            file.rename(&path)
                .await
                .map_err(|e| Error::glommio("rename", &tmp, e))?;
            file.close()
                .await
                .map_err(|e| Error::glommio("close", &path, e))?;
        }
    }
    sync_dir(&dir).await?;
    Segment::open(seq, path).await
}

pub(crate) fn short_write(path: &Path, pos: u64, written: usize, wanted: usize) -> Error {
    Error::io(
        "write",
        path,
        std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short write: {written} of {wanted} bytes at offset {pos}"),
        ),
    )
}

/// The segment being appended to, with the bytes of its partial last block.
pub(crate) struct Active {
    pub seg: Rc<Segment>,
    /// Where the next record goes.
    pub write_pos: u64,
    /// Bytes `[align_down(write_pos), write_pos)`: the partial block the next append
    /// rewrites (O_DIRECT writes whole blocks).
    pub tail: Vec<u8>,
}

impl Active {
    pub fn new(seg: Rc<Segment>) -> Self {
        Active {
            seg,
            write_pos: 0,
            tail: Vec::new(),
        }
    }

    /// Room left before the segment's nominal capacity.
    pub fn room(&self) -> u64 {
        self.seg.capacity.saturating_sub(self.write_pos)
    }

    /// Builds the aligned buffer for appending `bytes` at `write_pos`: the tail block, then
    /// the new bytes, zero-padded to a whole block. Returns the buffer, the file offset to
    /// write it at, and the tail to keep once the write is durable.
    pub fn stage(&self, bytes: &[u8]) -> (glommio::io::DmaBuffer, u64, Vec<u8>) {
        let block = self.seg.block();
        let start = self.write_pos - self.tail.len() as u64;
        debug_assert_eq!(start % block, 0, "tail must start on a block boundary");
        let total = self.tail.len() + bytes.len();
        let buf_len = total.div_ceil(block as usize) * block as usize;
        let mut buf = self.seg.file.alloc_dma_buffer(buf_len);
        let b = buf.as_bytes_mut();
        b[..self.tail.len()].copy_from_slice(&self.tail);
        b[self.tail.len()..total].copy_from_slice(bytes);
        b[total..].fill(0);
        let new_tail_len = total % block as usize;
        let new_tail = b[total - new_tail_len..total].to_vec();
        (buf, start, new_tail)
    }
}

/// What the next step of a segment scan found.
pub(crate) enum Scanned {
    /// A valid record at `offset`; `bytes` is the whole record (header and payload).
    Record { offset: u64, bytes: Vec<u8> },
    /// No valid record at `offset`: the records of this segment end there.
    End { offset: u64, why: Invalid },
}

/// Reads a segment's records in order, from offset 0, in large aligned chunks.
pub(crate) struct Scanner<'a> {
    seg: &'a Segment,
    file_size: u64,
    /// Bytes of the file from `buf_start`.
    buf: Vec<u8>,
    buf_start: u64,
    pos: u64,
}

impl<'a> Scanner<'a> {
    pub fn new(seg: &'a Segment) -> Self {
        Scanner {
            seg,
            file_size: seg.capacity,
            buf: Vec::new(),
            buf_start: 0,
            pos: 0,
        }
    }

    /// Makes `[pos, pos + n)` available in `buf` (or as much of it as the file holds).
    async fn fill(&mut self, n: u64) -> Result<()> {
        if self.pos - self.buf_start > SCAN_CHUNK as u64 {
            let drop = (self.pos - self.buf_start) as usize;
            self.buf.drain(..drop);
            self.buf_start = self.pos;
        }
        let want_end = (self.pos + n).min(self.file_size);
        while self.buf_start + (self.buf.len() as u64) < want_end {
            let at = self.buf_start + self.buf.len() as u64;
            let chunk = self
                .seg
                .file
                .read_at(at, SCAN_CHUNK)
                .await
                .map_err(|e| Error::glommio("read", &self.seg.path, e))?;
            if chunk.is_empty() {
                // The file is shorter than it said: treat the rest as absent.
                self.file_size = at;
                break;
            }
            self.buf.extend_from_slice(&chunk);
        }
        Ok(())
    }

    fn slice(&self, n: usize) -> &[u8] {
        let at = (self.pos - self.buf_start) as usize;
        &self.buf[at..at + n]
    }

    /// Returns the record at the current position and moves past it, or where it ends.
    pub async fn next(&mut self) -> Result<Scanned> {
        let offset = self.pos;
        if self.file_size.saturating_sub(offset) < HEADER_LEN as u64 {
            return Ok(Scanned::End {
                offset,
                why: Invalid::BadLength,
            });
        }
        self.fill(HEADER_LEN as u64).await?;
        if self.file_size.saturating_sub(offset) < HEADER_LEN as u64 {
            return Ok(Scanned::End {
                offset,
                why: Invalid::BadLength,
            });
        }
        let header: Header = match check_header(
            self.slice(HEADER_LEN),
            self.seg.seq,
            self.file_size - offset,
        ) {
            Ok(h) => h,
            Err(why) => return Ok(Scanned::End { offset, why }),
        };
        let len = header.record_len();
        self.fill(len).await?;
        if self.file_size - offset < len {
            return Ok(Scanned::End {
                offset,
                why: Invalid::BadLength,
            });
        }
        let bytes = self.slice(len as usize).to_vec();
        if crc32fast::hash(&bytes[4..]) != header.crc {
            return Ok(Scanned::End {
                offset,
                why: Invalid::BadChecksum,
            });
        }
        self.pos += len;
        Ok(Scanned::Record { offset, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name(&free_name(42)), None);
        assert!(is_free_name(&free_name(42)));
        assert!(!is_free_name(&segment_name(42)));
    }
}
