//! Streamed raft snapshots.
//!
//! A snapshot carries a range's data to a new or lagging replica. A small range's data
//! travels inside raft's `MsgSnapshot` as one command ([`super::replica::Command`] of kind
//! `Ingest`). A range larger than one chunk ([`chunk_bytes`], 4 MiB) is **streamed**: the
//! sender reads its versions a page at a time (`scan_versions_page`, so neither side holds
//! the range in memory) and sends each page as a chunk ([`crate::cluster::METHOD_SNAPSHOT_CHUNK`],
//! to the core that owns the range on the receiving node), waiting for each chunk's answer
//! (backpressure) and keeping under [`RATE`] bytes a second (throttle); only then does it
//! send the `MsgSnapshot`, whose data is a [`STREAMED`] header (stream id, chunk count)
//! followed by the command with the span and the lock-table records. The receiver appends
//! the chunks to a spool file under the store's `snapshots/` directory; a `MsgSnapshot`
//! whose stream is not completely spooled is dropped (raft sends another snapshot later),
//! so the raft driver only ever installs a complete one: the spooled pages are written to
//! the engine in batches of their own, then the final batch with the records, the raft
//! state and the applied index, as for an inline snapshot.
//!
//! A crash in the middle leaves versions of the range in the engine without its raft
//! state: the range's data as the leader had it, which the next snapshot writes again
//! (versions are idempotent). Spool files do not survive a restart (the directory is
//! emptied when the store opens) and are deleted once installed or after [`SPOOL_TTL`].

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chitin_storage::RangeId;

use crate::error::{Error, Result};

/// First byte of a streamed snapshot's data (a command's first byte is its kind, < 0x20).
pub const STREAMED: u8 = 0xFE;

/// Bytes of versions per chunk (the testing knob `CHITIN_TESTING_SNAPSHOT_CHUNK_BYTES`
/// makes it small, so tests stream small ranges).
pub fn chunk_bytes() -> usize {
    static BYTES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| {
        std::env::var("CHITIN_TESTING_SNAPSHOT_CHUNK_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(4 << 20)
    })
}

/// The most snapshot bytes a core sends a second (CockroachDB's
/// `kv.snapshot_rebalance.max_rate` default).
pub const RATE: u64 = 32 << 20;

/// How long a spooled stream that never got its `MsgSnapshot` is kept.
pub const SPOOL_TTL: Duration = Duration::from_secs(600);

/// How long the sender waits for a chunk's answer.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// The data of a streamed snapshot's `MsgSnapshot`: header, then the final command.
pub fn streamed_data(id: u64, chunks: u32, cmd: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + cmd.len());
    out.push(STREAMED);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&chunks.to_le_bytes());
    out.extend_from_slice(cmd);
    out
}

/// `(stream id, chunk count, final command)` of a streamed snapshot's data; None for an
/// inline one.
pub fn parse_streamed(data: &[u8]) -> Option<(u64, u32, &[u8])> {
    if data.first() != Some(&STREAMED) || data.len() < 13 {
        return None;
    }
    let id = u64::from_le_bytes(data[1..9].try_into().ok()?);
    let chunks = u32::from_le_bytes(data[9..13].try_into().ok()?);
    Some((id, chunks, &data[13..]))
}

/// A chunk's payload: `range u64 | stream id u64 | seq u32 | command`.
pub fn chunk_payload(range: RangeId, id: u64, seq: u32, cmd: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + cmd.len());
    out.extend_from_slice(&range.0.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(cmd);
    out
}

/// Reads a chunk's payload.
pub fn parse_chunk(p: &[u8]) -> Result<(RangeId, u64, u32, &[u8])> {
    if p.len() < 20 {
        return Err(Error::internal("malformed snapshot chunk"));
    }
    let range = RangeId(u64::from_le_bytes(p[0..8].try_into().unwrap()));
    let id = u64::from_le_bytes(p[8..16].try_into().unwrap());
    let seq = u32::from_le_bytes(p[16..20].try_into().unwrap());
    Ok((range, id, seq, &p[20..]))
}

struct Spool {
    path: PathBuf,
    file: std::fs::File,
    chunks: u32,
    started: Instant,
}

/// A core's spooled snapshot streams, by (range, stream id).
pub struct Spools {
    dir: PathBuf,
    open: HashMap<(RangeId, u64), Spool>,
}

impl Spools {
    /// Spools under `dir`, emptied (streams from before a restart are never completed).
    pub fn new(dir: PathBuf) -> Result<Spools> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Spools {
            dir,
            open: HashMap::new(),
        })
    }

    /// Appends chunk `seq` of stream `id` of `range`: chunk 0 starts the stream, the
    /// others must come in order.
    // PERF: blocking file I/O on the core's executor (a chunk is a few MiB into the page
    // cache, no fsync); an io_uring file would not block.
    pub fn add(&mut self, range: RangeId, id: u64, seq: u32, cmd: &[u8]) -> Result<()> {
        self.expire();
        let key = (range, id);
        if seq == 0 {
            let path = self.dir.join(format!("{}-{id:016x}", range.0));
            let file = std::fs::File::create(&path)?;
            self.open.insert(
                key,
                Spool {
                    path,
                    file,
                    chunks: 0,
                    started: Instant::now(),
                },
            );
        }
        let Some(s) = self.open.get_mut(&key) else {
            return Err(Error::internal(format!(
                "snapshot chunk {seq} of {range} for a stream not started here"
            )));
        };
        if s.chunks != seq {
            return Err(Error::internal(format!(
                "snapshot chunk {seq} of {range} out of order (expected {})",
                s.chunks
            )));
        }
        s.file.write_all(&(cmd.len() as u32).to_le_bytes())?;
        s.file.write_all(cmd)?;
        s.chunks += 1;
        Ok(())
    }

    /// Whether stream `id` of `range` holds `chunks` chunks.
    pub fn complete(&self, range: RangeId, id: u64, chunks: u32) -> bool {
        self.open
            .get(&(range, id))
            .is_some_and(|s| s.chunks == chunks)
    }

    /// Takes the complete stream `id` of `range`: its file (deleted by [`SpoolFile`]'s
    /// drop).
    pub fn take(&mut self, range: RangeId, id: u64, chunks: u32) -> Option<SpoolFile> {
        if !self.complete(range, id, chunks) {
            return None;
        }
        let s = self.open.remove(&(range, id))?;
        let file = std::fs::File::open(&s.path).ok();
        Some(SpoolFile { path: s.path, file })
    }

    fn expire(&mut self) {
        self.open.retain(|_, s| {
            let keep = s.started.elapsed() < SPOOL_TTL;
            if !keep {
                let _ = std::fs::remove_file(&s.path);
            }
            keep
        });
    }
}

/// A complete spooled stream being installed: its chunks in order; the file is deleted
/// when this is dropped.
pub struct SpoolFile {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl SpoolFile {
    /// The next chunk's command bytes, None at the end.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        let Some(f) = self.file.as_mut() else {
            return Ok(None);
        };
        let mut len = [0u8; 4];
        match f.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
        f.read_exact(&mut buf)?;
        Ok(Some(buf))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        self.file = None;
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_spool_in_order_and_read_back() {
        let dir = std::env::temp_dir().join(format!("chitin-spool-{}", std::process::id()));
        let mut spools = Spools::new(dir.clone()).unwrap();
        let r = RangeId(7);
        assert!(spools.add(r, 1, 1, b"late").is_err(), "no stream yet");
        spools.add(r, 1, 0, b"first").unwrap();
        assert!(spools.add(r, 1, 2, b"skipped one").is_err());
        spools.add(r, 1, 1, b"second").unwrap();
        assert!(!spools.complete(r, 1, 3));
        assert!(spools.take(r, 1, 3).is_none());
        let mut f = spools.take(r, 1, 2).expect("complete");
        let path = f.path().to_path_buf();
        assert_eq!(f.next_chunk().unwrap().as_deref(), Some(&b"first"[..]));
        assert_eq!(f.next_chunk().unwrap().as_deref(), Some(&b"second"[..]));
        assert_eq!(f.next_chunk().unwrap(), None);
        drop(f);
        assert!(!path.exists(), "the spool file is deleted once installed");
        let data = streamed_data(9, 4, b"cmd");
        assert_eq!(parse_streamed(&data), Some((9, 4, &b"cmd"[..])));
        assert_eq!(parse_streamed(b"\x00inline"), None);
        let p = chunk_payload(r, 3, 5, b"x");
        let (rr, id, seq, cmd) = parse_chunk(&p).unwrap();
        assert_eq!((rr, id, seq, cmd), (r, 3, 5, &b"x"[..]));
        let _ = std::fs::remove_dir_all(dir);
    }
}
