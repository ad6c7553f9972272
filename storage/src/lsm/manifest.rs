//! The manifest: the durable description of the engine — live SSTs per level with their
//! metadata, range tombstones of flushed memtables, the applied index per range, the next
//! file number, the last seqno, and the GC threshold.
//!
//! It is rewritten whole on every change (flush, compaction, ingest): written to
//! `MANIFEST.tmp` through O_DIRECT and fdatasync'd, renamed over `MANIFEST`, and the
//! directory fsync'd. A crash at any point leaves either the old or the new manifest. The
//! file opens with a POD header holding magic, format version, payload length and the
//! payload's crc32.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use bytemuck::{Pod, Zeroable};

use super::coding::{put_bytes, put_varint, Reader};
use super::file::{self, pad_for_tail, sst_path};
use super::key::{RangeTombstone, Seqno};
use super::sst::reader::corruption;
use super::version::{TableMeta, Version, NUM_LEVELS};
use crate::{Error, RangeId, Result, Timestamp};

const MAGIC: u64 = 0x4348_4954_494e_4d46; // "CHITINMF"
const FORMAT: u32 = 1;
pub const MANIFEST: &str = "MANIFEST";
pub const MANIFEST_TMP: &str = "MANIFEST.tmp";

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Header {
    magic: u64,
    len: u64,
    crc: u32,
    format: u32,
}
const HEADER_LEN: usize = std::mem::size_of::<Header>();

/// Everything the manifest records.
#[derive(Clone, Debug, Default)]
pub struct ManifestState {
    pub next_file: u64,
    pub last_seq: Seqno,
    pub gc_threshold: Timestamp,
    pub applied: HashMap<RangeId, u64>,
    pub version: Version,
}

fn put_ts(out: &mut Vec<u8>, ts: Timestamp) {
    put_varint(out, ts.wall);
    put_varint(out, u64::from(ts.logical));
}

fn get_ts(r: &mut Reader) -> std::result::Result<Timestamp, String> {
    let wall = r.varint()?;
    let logical = u32::try_from(r.varint()?).map_err(|_| "logical time out of range")?;
    Ok(Timestamp::new(wall, logical))
}

pub fn encode(m: &ManifestState) -> Vec<u8> {
    let mut p = Vec::new();
    put_varint(&mut p, m.next_file);
    put_varint(&mut p, m.last_seq);
    put_ts(&mut p, m.gc_threshold);
    let mut applied: Vec<_> = m.applied.iter().collect();
    applied.sort();
    put_varint(&mut p, applied.len() as u64);
    for (r, i) in applied {
        put_varint(&mut p, r.0);
        put_varint(&mut p, *i);
    }
    put_varint(&mut p, m.version.range_tombstones.len() as u64);
    for t in &m.version.range_tombstones {
        put_bytes(&mut p, &t.start);
        put_bytes(&mut p, &t.end);
        put_ts(&mut p, t.ts);
        put_varint(&mut p, t.seq);
    }
    let n: usize = m.version.levels.iter().map(|l| l.len()).sum();
    put_varint(&mut p, n as u64);
    for (level, t) in m.version.all_tables() {
        put_varint(&mut p, level as u64);
        put_varint(&mut p, t.number);
        put_varint(&mut p, t.size);
        put_bytes(&mut p, &t.smallest);
        put_bytes(&mut p, &t.largest);
        put_ts(&mut p, t.min_ts);
        put_ts(&mut p, t.max_ts);
        put_varint(&mut p, t.min_seq);
        put_varint(&mut p, t.max_seq);
        put_varint(&mut p, t.num_entries);
        put_varint(&mut p, t.tombstones_applied);
        put_ts(&mut p, t.gc_applied);
    }
    let header = Header {
        magic: MAGIC,
        len: p.len() as u64,
        crc: crc32fast::hash(&p),
        format: FORMAT,
    };
    let mut out = bytemuck::bytes_of(&header).to_vec();
    out.extend_from_slice(&p);
    pad_for_tail(&mut out, 0);
    out
}

pub fn decode(dir: &Path, raw: &[u8]) -> std::result::Result<ManifestState, String> {
    if raw.len() < HEADER_LEN {
        return Err("manifest shorter than its header".into());
    }
    let h: Header = bytemuck::pod_read_unaligned(&raw[..HEADER_LEN]);
    if h.magic != MAGIC {
        return Err(format!("bad magic {:#x}", h.magic));
    }
    if h.format != FORMAT {
        return Err(format!("unsupported manifest format {}", h.format));
    }
    let p = usize::try_from(h.len)
        .ok()
        .and_then(|l| raw.get(HEADER_LEN..HEADER_LEN.checked_add(l)?))
        .ok_or("manifest length runs past the file")?;
    if crc32fast::hash(p) != h.crc {
        return Err("manifest checksum mismatch".into());
    }
    let mut r = Reader::new(p);
    let mut m = ManifestState {
        next_file: r.varint()?,
        last_seq: r.varint()?,
        gc_threshold: get_ts(&mut r)?,
        applied: HashMap::new(),
        version: Version::empty(),
    };
    for _ in 0..r.varint()? {
        let range = RangeId(r.varint()?);
        m.applied.insert(range, r.varint()?);
    }
    for _ in 0..r.varint()? {
        m.version.range_tombstones.push(RangeTombstone {
            start: r.bytes()?.to_vec(),
            end: r.bytes()?.to_vec(),
            ts: get_ts(&mut r)?,
            seq: r.varint()?,
        });
    }
    for _ in 0..r.varint()? {
        let level = r.varint()? as usize;
        if level >= NUM_LEVELS {
            return Err(format!("table at level {level}"));
        }
        let number = r.varint()?;
        let t = TableMeta {
            number,
            size: r.varint()?,
            smallest: r.bytes()?.to_vec(),
            largest: r.bytes()?.to_vec(),
            min_ts: get_ts(&mut r)?,
            max_ts: get_ts(&mut r)?,
            min_seq: r.varint()?,
            max_seq: r.varint()?,
            num_entries: r.varint()?,
            tombstones_applied: r.varint()?,
            gc_applied: get_ts(&mut r)?,
            obsolete: Default::default(),
            path: sst_path(dir, number),
        };
        if !super::key::is_valid(&t.smallest) || !super::key::is_valid(&t.largest) {
            return Err(format!("table {number} has malformed bounds"));
        }
        m.version.levels[level].push(Rc::new(t));
    }
    for l in 1..NUM_LEVELS {
        Version::sort_level(&mut m.version.levels[l]);
    }
    if !r.is_empty() {
        return Err("trailing bytes after the manifest".into());
    }
    Ok(m)
}

/// Makes `m` the durable state of the engine in `dir`.
pub async fn write(dir: &Path, m: &ManifestState) -> Result<()> {
    let tmp = dir.join(MANIFEST_TMP);
    file::write_whole_file(&tmp, &encode(m)).await?;
    file::rename_durable(dir, &tmp, &dir.join(MANIFEST)).await
}

/// Reads the manifest of `dir`, or `None` for a new engine.
pub async fn read(dir: &Path) -> Result<Option<ManifestState>> {
    let path = dir.join(MANIFEST);
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("stat", &path, e)),
        Ok(_) => {}
    }
    let f = file::open_read(&path).await?;
    let size = f
        .file_size()
        .await
        .map_err(|e| Error::glommio("stat", &path, e))?;
    let raw = file::read_exact(&f, &path, 0, size as usize).await?;
    let _ = f.close().await;
    decode(dir, &raw)
        .map(Some)
        .map_err(|d| corruption(&path, 0, d))
}
