//! The in-memory index of the log: per range, where each live entry's record lives, its
//! term, the hard state, the truncation point, and a FIFO cache of recent entry data.
//!
//! This is pure state, no I/O: [`super::RaftLog`] applies the same operations here when it
//! appends and when recovery replays records, so both paths keep one set of rules.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::{HardState, RangeWrite};
use crate::{Error, RangeId, Result};

/// Indexes are below 2^62, so index arithmetic never overflows.
pub(crate) const MAX_INDEX: u64 = 1 << 62;

/// Where a record lives: segment sequence number, byte offset, total length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub seq: u64,
    pub offset: u64,
    pub len: u32,
}

/// One live entry: its term, the record that holds it, and maybe its data.
#[derive(Clone, Debug)]
pub(crate) struct EntryMeta {
    pub term: u64,
    /// Length of the entry's data.
    pub len: u32,
    pub loc: Location,
    /// `(cache id, data)` while the entry is in the cache.
    pub cached: Option<(u64, Vec<u8>)>,
}

/// The raft log of one range, as the index knows it.
#[derive(Clone, Debug)]
pub(crate) struct RangeLog {
    /// Index of the first entry the log may hold; `entries[0]` has this index. Entries
    /// below it were truncated (compacted).
    pub first_index: u64,
    /// Term of entry `first_index - 1` when known, else 0.
    pub prev_term: u64,
    pub entries: VecDeque<EntryMeta>,
    pub hard_state: Option<HardState>,
}

impl RangeLog {
    fn new(first_index: u64) -> Self {
        RangeLog {
            first_index,
            prev_term: 0,
            entries: VecDeque::new(),
            hard_state: None,
        }
    }

    /// Index of the last entry; `first_index - 1` when the log holds no entries.
    pub fn last_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64 - 1
    }

    /// Term of entry `index`: a live entry, or the truncated entry just below the first.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index.checked_add(1) == Some(self.first_index) && self.prev_term != 0 {
            return Some(self.prev_term);
        }
        if index < self.first_index {
            return None;
        }
        self.entries
            .get((index - self.first_index) as usize)
            .map(|e| e.term)
    }

    fn entry_mut(&mut self, index: u64) -> Option<&mut EntryMeta> {
        let i = index.checked_sub(self.first_index)?;
        self.entries.get_mut(i as usize)
    }
}

/// All ranges of the core's log, plus the entry cache.
pub(crate) struct LogIndex {
    ranges: BTreeMap<RangeId, RangeLog>,
    /// Cached entries in insertion order: `(range, index, cache id)`.
    fifo: VecDeque<(RangeId, u64, u64)>,
    cache_bytes: usize,
    /// Number of entries holding cached data (the live part of `fifo`).
    cached_entries: usize,
    cache_budget: usize,
    next_cache_id: u64,
}

impl LogIndex {
    pub fn new(cache_budget: usize) -> Self {
        LogIndex {
            ranges: BTreeMap::new(),
            fifo: VecDeque::new(),
            cache_bytes: 0,
            cached_entries: 0,
            cache_budget,
            next_cache_id: 1,
        }
    }

    pub fn get(&self, range: RangeId) -> Option<&RangeLog> {
        self.ranges.get(&range)
    }

    pub fn ranges(&self) -> impl Iterator<Item = (&RangeId, &RangeLog)> {
        self.ranges.iter()
    }

    pub fn cache_bytes(&self) -> usize {
        self.cache_bytes
    }

    /// Checks that `batch` is a valid append against the current state: per range, entry
    /// indexes are ≥ 1 and consecutive, and when the range already holds entries the new
    /// run starts within `[first_index, last_index + 1]` (an overlap replaces the suffix).
    /// A range without entries may start anywhere. Several writes for one range in a batch
    /// are checked in order.
    pub fn check_batch(&self, batch: &[RangeWrite]) -> Result<()> {
        // range → (first index, last index); last < first means no entries.
        let mut overlay: HashMap<RangeId, (u64, u64)> = HashMap::new();
        for w in batch {
            let Some(first) = w.entries.first() else {
                continue;
            };
            for (i, e) in w.entries.iter().enumerate() {
                if e.index == 0
                    || e.index >= MAX_INDEX
                    || Some(e.index) != first.index.checked_add(i as u64)
                {
                    return Err(Error::InvalidArgument(format!(
                        "{}: entries must have consecutive indexes in [1, 2^62), got {} at \
                         position {i} of a run starting at {}",
                        w.range, e.index, first.index
                    )));
                }
            }
            let (lo, hi) = overlay.get(&w.range).copied().unwrap_or_else(|| {
                self.ranges
                    .get(&w.range)
                    .map_or((1, 0), |r| (r.first_index, r.last_index()))
            });
            let has_entries = hi >= lo;
            if has_entries && (first.index < lo || first.index > hi + 1) {
                return Err(Error::InvalidArgument(format!(
                    "{}: append at index {} outside [{lo}, {}] of the existing log",
                    w.range,
                    first.index,
                    hi + 1
                )));
            }
            let new_lo = if has_entries { lo } else { first.index };
            overlay.insert(w.range, (new_lo, w.entries.last().unwrap().index));
        }
        Ok(())
    }

    /// Applies a `Write` record: entries (with `first_index` the index of the first) replace
    /// any suffix they overlap; a hard state replaces the previous one. `entries` yields
    /// `(term, data)`; `data` is cached when the budget allows.
    pub fn apply_write<'a>(
        &mut self,
        range: RangeId,
        first_index: u64,
        hard_state: Option<HardState>,
        entries: impl ExactSizeIterator<Item = (u64, &'a [u8])>,
        loc: Location,
    ) {
        let has_new = entries.len() > 0;
        let log = self
            .ranges
            .entry(range)
            .or_insert_with(|| RangeLog::new(first_index.max(1)));
        let mut dropped = Vec::new();
        if has_new {
            if log.entries.is_empty() {
                if first_index != log.first_index {
                    log.first_index = first_index;
                    log.prev_term = 0;
                }
            } else if first_index < log.first_index || first_index > log.last_index() + 1 {
                // Not a valid append (check_batch refuses it); replay restarts the log.
                dropped.extend(log.entries.drain(..));
                log.first_index = first_index;
                log.prev_term = 0;
            } else {
                let keep = (first_index - log.first_index) as usize;
                dropped.extend(log.entries.drain(keep..));
            }
        }
        if hard_state.is_some() {
            log.hard_state = hard_state;
        }
        let base = log.last_index() + 1;
        let mut added = Vec::new();
        for (i, (term, data)) in entries.enumerate() {
            let cached = if data.len() <= self.cache_budget {
                let id = self.next_cache_id;
                self.next_cache_id += 1;
                added.push((base + i as u64, id, data.len()));
                Some((id, data.to_vec()))
            } else {
                None
            };
            log.entries.push_back(EntryMeta {
                term,
                len: data.len() as u32,
                loc,
                cached,
            });
        }
        for e in dropped {
            self.uncache(&e);
        }
        for (index, id, len) in added {
            self.fifo.push_back((range, index, id));
            self.cache_bytes += len;
            self.cached_entries += 1;
        }
        self.evict();
    }

    /// Applies a truncation: entries below `below` are dropped and `first_index` becomes
    /// `below` (past the last entry, the log is left empty). A no-op when `below` is not
    /// above the current first index.
    pub fn apply_truncate(&mut self, range: RangeId, below: u64, prev_term: u64) {
        let log = self
            .ranges
            .entry(range)
            .or_insert_with(|| RangeLog::new(below));
        if below <= log.first_index {
            if below == log.first_index && log.prev_term == 0 {
                log.prev_term = prev_term;
            }
            return;
        }
        let n = ((below - log.first_index) as usize).min(log.entries.len());
        let dropped: Vec<_> = log.entries.drain(..n).collect();
        log.first_index = below;
        log.prev_term = prev_term;
        for e in dropped {
            self.uncache(&e);
        }
    }

    /// Applies a `RangeState` checkpoint: the truncation point and hard state it records.
    pub fn apply_range_state(
        &mut self,
        range: RangeId,
        first_index: u64,
        prev_term: u64,
        hard_state: Option<HardState>,
    ) {
        self.apply_truncate(range, first_index, prev_term);
        if let Some(log) = self.ranges.get_mut(&range) {
            if log.entries.is_empty() && log.first_index != first_index {
                log.first_index = first_index;
                log.prev_term = prev_term;
            }
            if hard_state.is_some() {
                log.hard_state = hard_state;
            }
        }
    }

    /// Forgets a range entirely.
    pub fn apply_remove(&mut self, range: RangeId) {
        if let Some(log) = self.ranges.remove(&range) {
            for e in &log.entries {
                self.uncache(e);
            }
        }
    }

    /// The oldest segment that still holds a live entry, if any.
    // PERF: walks every range; fine for the thousands of ranges a core holds, called on
    // truncation and rotation only.
    pub fn min_live_segment(&self) -> Option<u64> {
        self.ranges
            .values()
            .filter_map(|r| r.entries.front().map(|e| e.loc.seq))
            .min()
    }

    fn uncache(&mut self, e: &EntryMeta) {
        if let Some((_, data)) = &e.cached {
            self.cache_bytes -= data.len();
            self.cached_entries -= 1;
        }
    }

    fn evict(&mut self) {
        while self.cache_bytes > self.cache_budget {
            let Some((range, index, id)) = self.fifo.pop_front() else {
                break;
            };
            let Some(log) = self.ranges.get_mut(&range) else {
                continue;
            };
            let Some(e) = log.entry_mut(index) else {
                continue;
            };
            if matches!(&e.cached, Some((cid, _)) if *cid == id) {
                let (_, data) = e.cached.take().unwrap();
                self.cache_bytes -= data.len();
                self.cached_entries -= 1;
            }
        }
        // Stale FIFO slots (entries dropped since) are skipped lazily above; bound the
        // queue so a long run of truncations cannot grow it without limit.
        if self.fifo.len() > 2 * self.cached_entries + 1024 {
            let ranges = &self.ranges;
            self.fifo.retain(|(range, index, id)| {
                ranges
                    .get(range)
                    .and_then(|r| {
                        let i = index.checked_sub(r.first_index)?;
                        r.entries.get(i as usize)
                    })
                    .is_some_and(|e| matches!(&e.cached, Some((cid, _)) if cid == id))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftlog::Entry;

    fn loc(seq: u64) -> Location {
        Location {
            seq,
            offset: 0,
            len: 0,
        }
    }

    fn write(ix: &mut LogIndex, range: u64, first: u64, terms: &[u64], seq: u64) {
        let data = [0u8; 10];
        ix.apply_write(
            RangeId(range),
            first,
            None,
            terms.iter().map(|&t| (t, &data[..])),
            loc(seq),
        );
    }

    fn w(range: u64, indexes: &[u64]) -> RangeWrite {
        RangeWrite {
            range: RangeId(range),
            entries: indexes
                .iter()
                .map(|&i| Entry {
                    index: i,
                    term: 1,
                    data: vec![],
                })
                .collect(),
            hard_state: None,
        }
    }

    #[test]
    fn overlap_replaces_suffix_and_truncate_drops_prefix() {
        let mut ix = LogIndex::new(1 << 20);
        write(&mut ix, 1, 5, &[1, 1, 1, 1], 1); // 5..=8
        write(&mut ix, 1, 7, &[2, 2, 2], 2); // replaces 7, 8; adds 9
        let r = ix.get(RangeId(1)).unwrap();
        assert_eq!((r.first_index, r.last_index()), (5, 9));
        assert_eq!(
            (5..=9).map(|i| r.term(i).unwrap()).collect::<Vec<_>>(),
            vec![1, 1, 2, 2, 2]
        );
        ix.apply_truncate(RangeId(1), 7, 1);
        let r = ix.get(RangeId(1)).unwrap();
        assert_eq!((r.first_index, r.last_index(), r.term(6)), (7, 9, Some(1)));
        assert_eq!(ix.min_live_segment(), Some(2));
        ix.apply_truncate(RangeId(1), 20, 0);
        let r = ix.get(RangeId(1)).unwrap();
        assert_eq!((r.first_index, r.last_index()), (20, 19));
        assert_eq!(ix.min_live_segment(), None);
        assert_eq!(ix.cache_bytes(), 0);
    }

    #[test]
    fn check_batch_refuses_gaps_and_compacted_overwrites() {
        let mut ix = LogIndex::new(0);
        write(&mut ix, 1, 5, &[1, 1], 1); // 5..=6
        assert!(ix.check_batch(&[w(1, &[7, 8])]).is_ok());
        assert!(ix.check_batch(&[w(1, &[5])]).is_ok());
        assert!(ix.check_batch(&[w(1, &[8])]).is_err()); // gap
        assert!(ix.check_batch(&[w(1, &[4])]).is_err()); // below first
        assert!(ix.check_batch(&[w(1, &[7, 9])]).is_err()); // not consecutive
        assert!(ix.check_batch(&[w(2, &[0])]).is_err()); // index 0
        assert!(ix.check_batch(&[w(2, &[100])]).is_ok()); // new range starts anywhere
        assert!(ix.check_batch(&[w(1, &[7, 8]), w(1, &[9])]).is_ok());
        assert!(ix.check_batch(&[w(1, &[7, 8]), w(1, &[10])]).is_err());
    }

    #[test]
    fn cache_stays_within_budget() {
        let mut ix = LogIndex::new(35);
        write(&mut ix, 1, 1, &[1; 10], 1); // 10 entries × 10 bytes
        assert!(ix.cache_bytes() <= 35);
        let r = ix.get(RangeId(1)).unwrap();
        let cached: Vec<bool> = r.entries.iter().map(|e| e.cached.is_some()).collect();
        assert_eq!(cached.iter().filter(|c| **c).count(), 3);
        assert!(cached[9], "the newest entries stay cached");
        ix.apply_remove(RangeId(1));
        assert_eq!(ix.cache_bytes(), 0);
    }
}
