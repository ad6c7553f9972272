//! A version: the immutable set of live SSTs per level, plus the range tombstones that
//! flushed memtables brought in. Readers hold an `Rc<Version>` for their whole read, so a
//! compaction that replaces files never pulls them out from under a reader: a dead file is
//! unlinked when the last version naming it is dropped.

use std::cell::Cell;
use std::cmp::Ordering;
use std::path::PathBuf;
use std::rc::Rc;

use super::key::{self, RangeTombstone, Seqno};
use super::sst::Properties;
use crate::Timestamp;

pub const NUM_LEVELS: usize = 7;

/// What the engine knows about one live SST without opening it (recorded in the manifest).
#[derive(Debug)]
pub struct TableMeta {
    pub number: u64,
    pub size: u64,
    pub smallest: Vec<u8>,
    pub largest: Vec<u8>,
    pub min_ts: Timestamp,
    pub max_ts: Timestamp,
    pub min_seq: Seqno,
    pub max_seq: Seqno,
    pub num_entries: u64,
    /// The table holds nothing that range tombstones with seqno <= this hide or remove,
    /// as of the GC threshold `gc_applied` (set on compaction outputs, which drop them).
    pub tombstones_applied: Seqno,
    pub gc_applied: Timestamp,
    /// Set when a compaction replaced the table: the file is unlinked on drop.
    pub obsolete: Cell<bool>,
    pub path: PathBuf,
}

impl TableMeta {
    pub fn from_props(number: u64, size: u64, path: PathBuf, p: &Properties) -> Self {
        TableMeta {
            number,
            size,
            smallest: p.smallest.clone(),
            largest: p.largest.clone(),
            min_ts: p.min_ts,
            max_ts: p.max_ts,
            min_seq: p.min_seq,
            max_seq: p.max_seq,
            num_entries: p.num_entries,
            tombstones_applied: 0,
            gc_applied: Timestamp::MIN,
            obsolete: Cell::new(false),
            path,
        }
    }

    /// True when the table may hold keys whose head lies in `[lo, hi]` (inclusive heads).
    pub fn overlaps_heads(&self, lo: &[u8], hi: &[u8]) -> bool {
        key::head(&self.smallest) <= hi && lo <= key::head(&self.largest)
    }

    /// True when the table may hold keys of `space` in `[start, end)`.
    pub fn overlaps_span(&self, space: u8, start: &[u8], end: &[u8]) -> bool {
        let mut lo = vec![space];
        lo.extend_from_slice(start);
        let mut hi = vec![space];
        hi.extend_from_slice(end);
        key::head(&self.smallest) < hi.as_slice() && lo.as_slice() <= key::head(&self.largest)
    }

    pub fn may_contain_head(&self, head: &[u8]) -> bool {
        key::head(&self.smallest) <= head && head <= key::head(&self.largest)
    }

    /// True when some MVCC version in the table may lie in `[t1, t2]`.
    pub fn overlaps_time(&self, t1: Timestamp, t2: Timestamp) -> bool {
        self.min_ts <= t2 && t1 <= self.max_ts
    }
}

impl Drop for TableMeta {
    fn drop(&mut self) {
        if self.obsolete.get() {
            // Off the data path: an unlink of a file no reader can reach any more. A failure
            // leaves an orphan that the next open removes.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Version {
    /// L0 newest first (may overlap); L1+ sorted by smallest key, non-overlapping.
    pub levels: Vec<Vec<Rc<TableMeta>>>,
    /// Range tombstones of flushed memtables (see `key::RangeTombstone`).
    pub range_tombstones: Vec<RangeTombstone>,
}

impl Version {
    pub fn empty() -> Self {
        Version {
            levels: vec![Vec::new(); NUM_LEVELS],
            range_tombstones: Vec::new(),
        }
    }

    pub fn level_bytes(&self, level: usize) -> u64 {
        self.levels[level].iter().map(|t| t.size).sum()
    }

    pub fn all_tables(&self) -> impl Iterator<Item = (usize, &Rc<TableMeta>)> {
        self.levels
            .iter()
            .enumerate()
            .flat_map(|(l, ts)| ts.iter().map(move |t| (l, t)))
    }

    pub fn sort_level(tables: &mut [Rc<TableMeta>]) {
        tables.sort_by(|a, b| key::compare(&a.smallest, &b.smallest).then(Ordering::Equal));
    }

    /// True when a live table overlapping `[start, end)` may hold MVCC data that `t` hides
    /// or removes, i.e. when `t` still has work to do. With `gc_threshold` at or above a
    /// non-removal tombstone's timestamp, versions it hides are invisible to every read
    /// the engine still serves, once compactions have dropped them.
    pub fn tombstone_needed(&self, t: &RangeTombstone, gc_threshold: Timestamp) -> bool {
        if !t.is_removal() && t.ts > gc_threshold {
            return true;
        }
        self.all_tables().any(|(_, m)| {
            let applied = m.tombstones_applied >= t.seq && (t.is_removal() || t.ts <= m.gc_applied);
            !applied
                && m.overlaps_span(key::SPACE_MVCC, &t.start, &t.end)
                && if t.is_removal() {
                    m.min_seq < t.seq
                } else {
                    m.min_ts <= t.ts
                }
        })
    }
}
