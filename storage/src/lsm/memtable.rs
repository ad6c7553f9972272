//! The memtable: the newest writes, in memory, ordered by internal key.
//!
//! A `BTreeMap` keyed by internal key (so every version and every write of a batch has its
//! own entry, told apart by seqno) plus the range tombstones written to it. The active
//! memtable takes writes until it holds `memtable_bytes`; then it is frozen (immutable) and
//! queued for flush to an L0 SST. Readers see a memtable as of their snapshot seqno:
//! entries with a higher seqno (written after the read began) are skipped, which is what
//! makes batches atomic to readers even across the read's awaits.
//!
//! There is no WAL: the raft log is the WAL. A frozen memtable carries the applied index
//! per range as of its last batch, which becomes durable when its SST is in the manifest.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::key::{self, IKey, IKeyRef, RangeTombstone, Seqno};
use crate::{RangeId, Timestamp};

#[derive(Default)]
pub struct Memtable {
    map: RefCell<BTreeMap<IKey, Vec<u8>>>,
    tombstones: RefCell<Vec<RangeTombstone>>,
    bytes: Cell<usize>,
    min_ts: Cell<Option<Timestamp>>,
    /// Applied index per range as of the memtable's freeze (all ranges, not just those
    /// written here).
    pub applied: RefCell<HashMap<RangeId, u64>>,
}

impl Memtable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&self, ikey: Vec<u8>, value: Vec<u8>) {
        self.bytes
            .set(self.bytes.get() + ikey.len() + value.len() + 48);
        if key::space(&ikey) == key::SPACE_MVCC {
            let ts = key::ts(&ikey);
            self.min_ts
                .set(Some(self.min_ts.get().map_or(ts, |m| m.min(ts))));
        }
        self.map.borrow_mut().insert(IKey(ikey), value);
    }

    pub fn add_range_tombstone(&self, t: RangeTombstone) {
        self.bytes
            .set(self.bytes.get() + t.start.len() + t.end.len() + 64);
        self.tombstones.borrow_mut().push(t);
    }

    /// Approximate memory held.
    pub fn bytes(&self) -> usize {
        self.bytes.get()
    }

    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty() && self.tombstones.borrow().is_empty()
    }

    /// True when the memtable holds point entries (not just range tombstones).
    pub fn has_entries(&self) -> bool {
        !self.map.borrow().is_empty()
    }

    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn min_ts(&self) -> Option<Timestamp> {
        self.min_ts.get()
    }

    /// The range tombstones visible at `snapshot` overlapping `[start, end)`.
    pub fn range_tombstones(
        &self,
        snapshot: Seqno,
        start: &[u8],
        end: &[u8],
        out: &mut Vec<RangeTombstone>,
    ) {
        out.extend(
            self.tombstones
                .borrow()
                .iter()
                .filter(|t| t.seq <= snapshot && t.overlaps(start, end))
                .cloned(),
        );
    }

    /// Appends the tombstones visible at `snapshot` whose span holds `key`.
    pub fn point_tombstones(&self, snapshot: Seqno, key: &[u8], out: &mut Vec<RangeTombstone>) {
        let t = self.tombstones.borrow();
        if t.is_empty() {
            return;
        }
        out.extend(
            t.iter()
                .filter(|t| t.seq <= snapshot && t.contains(key))
                .cloned(),
        );
    }

    pub fn all_range_tombstones(&self) -> Vec<RangeTombstone> {
        self.tombstones.borrow().clone()
    }

    /// The first entry `>= k` (or `> k` when `!inclusive`), cloned.
    // PERF: re-seeks the tree on every step, so an iterator never holds a borrow across an
    // await and writers may insert meanwhile; a skiplist arena would avoid the clones.
    pub fn next_from(&self, k: &[u8], inclusive: bool) -> Option<(Vec<u8>, Vec<u8>)> {
        let k = IKey(k.to_vec());
        let lo = if inclusive {
            Bound::Included(k)
        } else {
            Bound::Excluded(k)
        };
        self.map
            .borrow()
            .range((lo, Bound::Unbounded))
            .next()
            .map(|(k, v)| (k.0.clone(), v.clone()))
    }

    /// The first entry `>= seek` with the same key head as `seek` that `pred` accepts.
    pub fn first_matching(
        &self,
        seek: &[u8],
        pred: impl Fn(&[u8]) -> bool,
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        let head = key::head(seek);
        let map = self.map.borrow();
        map.range::<IKeyRef, _>((Bound::Included(IKeyRef::new(seek)), Bound::Unbounded))
            .take_while(|(k, _)| key::head(&k.0) == head)
            .find(|(k, _)| pred(&k.0))
            .map(|(k, v)| (k.0.clone(), v.clone()))
    }

    /// The last entry `< k`, cloned.
    pub fn prev_before(&self, k: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        self.map
            .borrow()
            .range((Bound::Unbounded, Bound::Excluded(IKey(k.to_vec()))))
            .next_back()
            .map(|(k, v)| (k.0.clone(), v.clone()))
    }

    pub fn first(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        self.map
            .borrow()
            .iter()
            .next()
            .map(|(k, v)| (k.0.clone(), v.clone()))
    }

    pub fn last(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        self.map
            .borrow()
            .iter()
            .next_back()
            .map(|(k, v)| (k.0.clone(), v.clone()))
    }

    /// Calls `f` on up to `max` entries in order, starting after `after` (from the start
    /// when `None`); returns the last key given to `f` when it stopped early, so a long
    /// flush can yield between batches. For frozen memtables.
    pub fn for_each_batch(
        &self,
        after: Option<&[u8]>,
        max: usize,
        mut f: impl FnMut(&[u8], &[u8]),
    ) -> Option<Vec<u8>> {
        let map = self.map.borrow();
        let lo = match after {
            Some(k) => Bound::Excluded(IKey(k.to_vec())),
            None => Bound::Unbounded,
        };
        for (n, (k, v)) in map.range((lo, Bound::Unbounded)).enumerate() {
            f(&k.0, v);
            if n + 1 == max {
                return Some(k.0.clone());
            }
        }
        None
    }
}
