//! Node-local durable state: a small key/value file (store identity, cluster id, cached
//! settings) replaced atomically on every change, and the Direct I/O warm-up every
//! storage directory needs before its first `DmaFile`.
//!
//! # The file
//!
//! [`LocalStore`] keeps the whole map in memory and rewrites the file on each change:
//! write `NAME.tmp`, fdatasync it, rename it over `NAME`, fsync the directory. A crash at
//! any point leaves either the old or the new file, never a mix. The format is
//!
//! ```text
//! magic "CHITINLS" | version: u32 | count: u32 | body_len: u64 | body | crc32: u32 | zeros
//! body = count × (key_len: u32, key, value_len: u32, value)
//! ```
//!
//! little-endian, the crc covering everything before it, zero-padded to the Direct I/O
//! block size. Bad bytes are [`Error::Corruption`] naming the file and offset.
//!
//! # Implementation caveats
//!
//! - Meant for a handful of small values: every change rewrites the whole file and costs
//!   two syncs (file, directory).
//! - One writer: a `LocalStore` is owned by one core; two stores on the same file would
//!   overwrite each other's changes.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use glommio::io::{DmaFile, OpenOptions};

use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"CHITINLS";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 4 + 8;

/// Name of the warm-up file [`prime_direct_io`] keeps in each storage directory.
pub const PROBE_FILE: &str = "PROBE";
const PROBE_LEN: usize = 4096;

fn probe_bytes() -> Vec<u8> {
    (0..PROBE_LEN).map(|i| (i % 251) as u8 | 0x01).collect()
}

/// Makes sure the first `DmaFile` this thread opens on `dir`'s device holds real, synced
/// data: writes `dir/PROBE` (4 KiB of non-zero bytes) if it is missing or wrong, syncs it,
/// and reads it back with O_DIRECT.
///
/// Why: glommio decides once per thread and device whether polled I/O works by reading
/// offset 0 of the first file opened there. On an empty, sparse or merely fallocated file
/// that read never reaches the disk, glommio wrongly concludes "polled", and later reads of
/// real files fail with EOPNOTSUPP (DESIGN §10). Call this before opening any other file on
/// the device; [`crate::RaftLog::open`] and [`LocalStore::open`] do.
pub async fn prime_direct_io(dir: &Path) -> Result<()> {
    let path = dir.join(PROBE_FILE);
    let want = probe_bytes();
    let ok = std::fs::read(&path).map(|b| b == want).unwrap_or(false);
    if !ok {
        let mut f = std::fs::File::create(&path).map_err(|e| Error::io("create", &path, e))?;
        f.write_all(&want)
            .map_err(|e| Error::io("write", &path, e))?;
        f.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("fsync directory", dir, e))?;
    }
    let f = DmaFile::open(&path)
        .await
        .map_err(|e| Error::glommio("open", &path, e))?;
    let r = f
        .read_at_aligned(0, PROBE_LEN)
        .await
        .map_err(|e| Error::glommio("read", &path, e))?;
    let good = r.len() == PROBE_LEN && r[..] == want[..];
    f.close()
        .await
        .map_err(|e| Error::glommio("close", &path, e))?;
    if !good {
        return Err(Error::Corruption {
            path,
            offset: 0,
            detail: "Direct I/O probe file reads back different bytes".into(),
        });
    }
    Ok(())
}

/// A small durable key/value map, rewritten atomically on every change.
pub struct LocalStore {
    dir: PathBuf,
    path: PathBuf,
    map: BTreeMap<String, Vec<u8>>,
}

impl LocalStore {
    /// Opens (or starts empty) the store at `path`, creating its directory if needed.
    pub async fn open(path: &Path) -> Result<LocalStore> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        prime_direct_io(&dir).await?;
        let tmp = tmp_path(path);
        if tmp.exists() {
            std::fs::remove_file(&tmp).map_err(|e| Error::io("remove", &tmp, e))?;
        }
        let map = if path.exists() {
            let f = DmaFile::open(path)
                .await
                .map_err(|e| Error::glommio("open", path, e))?;
            let size = f
                .file_size()
                .await
                .map_err(|e| Error::glommio("stat", path, e))?;
            let r = f
                .read_at(0, size as usize)
                .await
                .map_err(|e| Error::glommio("read", path, e))?;
            let bytes = r.to_vec();
            f.close()
                .await
                .map_err(|e| Error::glommio("close", path, e))?;
            decode(&bytes).map_err(|(offset, detail)| Error::Corruption {
                path: path.to_path_buf(),
                offset,
                detail,
            })?
        } else {
            BTreeMap::new()
        };
        Ok(LocalStore {
            dir,
            path: path.to_path_buf(),
            map,
        })
    }

    /// Returns the value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.map.get(key).map(|v| v.as_slice())
    }

    /// All keys and values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Sets `key` to `value` durably.
    pub async fn put(&mut self, key: &str, value: &[u8]) -> Result<()> {
        let mut next = self.map.clone();
        next.insert(key.to_string(), value.to_vec());
        self.replace(next).await
    }

    /// Removes `key` durably (a no-op write when absent).
    pub async fn delete(&mut self, key: &str) -> Result<()> {
        let mut next = self.map.clone();
        next.remove(key);
        self.replace(next).await
    }

    /// Replaces the whole map durably and atomically: after a crash the store holds either
    /// the old map or `next`.
    pub async fn replace(&mut self, next: BTreeMap<String, Vec<u8>>) -> Result<()> {
        let bytes = encode(&next);
        let tmp = tmp_path(&self.path);
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&tmp)
            .await
            .map_err(|e| Error::glommio("create", &tmp, e))?;
        let len = f.align_up(bytes.len() as u64) as usize;
        let mut buf = f.alloc_dma_buffer(len);
        buf.as_bytes_mut()[..bytes.len()].copy_from_slice(&bytes);
        buf.as_bytes_mut()[bytes.len()..].fill(0);
        let n = f
            .write_at(buf, 0)
            .await
            .map_err(|e| Error::glommio("write", &tmp, e))?;
        if n != len {
            return Err(Error::io(
                "write",
                &tmp,
                std::io::Error::new(std::io::ErrorKind::WriteZero, "short write"),
            ));
        }
        f.fdatasync()
            .await
            .map_err(|e| Error::glommio("fdatasync", &tmp, e))?;
        f.rename(&self.path)
            .await
            .map_err(|e| Error::glommio("rename", &tmp, e))?;
        f.close()
            .await
            .map_err(|e| Error::glommio("close", &self.path, e))?;
        crate::raftlog::sync_dir(&self.dir).await?;
        self.map = next;
        Ok(())
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn encode(map: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in map {
        body.extend_from_slice(&(k.len() as u32).to_le_bytes());
        body.extend_from_slice(k.as_bytes());
        body.extend_from_slice(&(v.len() as u32).to_le_bytes());
        body.extend_from_slice(v);
    }
    let mut out = Vec::with_capacity(HEADER + body.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes the file; on failure returns the offset and what is wrong.
fn decode(bytes: &[u8]) -> std::result::Result<BTreeMap<String, Vec<u8>>, (u64, String)> {
    if bytes.len() < HEADER + 4 || &bytes[..8] != MAGIC {
        return Err((0, "not a local store file (bad magic or too short)".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != VERSION {
        return Err((8, format!("unknown local store version {version}")));
    }
    let count = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let body_len = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    let end = (HEADER as u64).saturating_add(body_len);
    if end + 4 > bytes.len() as u64 {
        return Err((
            16,
            format!("body length {body_len} runs past the end of the file"),
        ));
    }
    let end = end as usize;
    let crc = u32::from_le_bytes(bytes[end..end + 4].try_into().unwrap());
    if crc32fast::hash(&bytes[..end]) != crc {
        return Err((end as u64, "checksum mismatch".into()));
    }
    let mut map = BTreeMap::new();
    let mut at = HEADER;
    let take = |at: &mut usize, n: usize| -> std::result::Result<&[u8], (u64, String)> {
        if *at + n > end {
            return Err((*at as u64, "entry runs past the body".into()));
        }
        let s = &bytes[*at..*at + n];
        *at += n;
        Ok(s)
    };
    for _ in 0..count {
        let klen = u32::from_le_bytes(take(&mut at, 4)?.try_into().unwrap()) as usize;
        let key_at = at as u64;
        let key = String::from_utf8(take(&mut at, klen)?.to_vec())
            .map_err(|_| (key_at, "key is not UTF-8".to_string()))?;
        let vlen = u32::from_le_bytes(take(&mut at, 4)?.try_into().unwrap()) as usize;
        let value = take(&mut at, vlen)?.to_vec();
        map.insert(key, value);
    }
    if at != end {
        return Err((at as u64, "bytes left over after the last entry".into()));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftlog::testutil::run_in_dir;

    #[test]
    fn encode_decode_roundtrip_and_detects_flips() {
        let mut m = BTreeMap::new();
        m.insert("store_id".to_string(), 7u64.to_le_bytes().to_vec());
        m.insert("cluster".to_string(), b"c-1".to_vec());
        let b = encode(&m);
        assert_eq!(decode(&b).unwrap(), m);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x04;
            assert!(decode(&bad).is_err(), "flip at {i} not detected");
        }
    }

    #[test]
    fn survives_reopen_and_replaces_atomically() {
        run_in_dir("localstore", |dir| async move {
            let path = dir.join("local").join("STORE");
            let mut s = LocalStore::open(&path).await.unwrap();
            assert_eq!(s.get("store_id"), None);
            s.put("store_id", b"42").await.unwrap();
            s.put("cluster", b"abc").await.unwrap();
            s.delete("cluster").await.unwrap();
            drop(s);
            // A stale temp file from a crash mid-write is ignored.
            std::fs::write(tmp_path(&path), b"garbage").unwrap();
            let s = LocalStore::open(&path).await.unwrap();
            assert_eq!(s.get("store_id"), Some(&b"42"[..]));
            assert_eq!(s.iter().count(), 1);
            // A flipped byte is corruption naming the file.
            drop(s);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[HEADER + 2] ^= 0xff;
            std::fs::write(&path, &bytes).unwrap();
            match LocalStore::open(&path).await {
                Err(Error::Corruption { path: p, .. }) => assert_eq!(p, path),
                Err(e) => panic!("expected corruption, got {e}"),
                Ok(_) => panic!("expected corruption, got a store"),
            }
        });
    }
}
