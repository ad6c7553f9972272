//! Range descriptors and the cache every gateway core routes by.
//!
//! A table starts as one range ([`keys::table_range_id`]) spanning all its keys, with no
//! descriptor: its span is implied ([`keys::initial_span`]). The first split of a table
//! writes explicit descriptors for both halves; from then on the table's descriptors cover
//! its whole span. Descriptors live in the system range under [`keys::range_desc_key`]
//! (keyed by start key), and are the single source of truth: at startup every core takes
//! its replicas' spans from them.
//!
//! Each core keeps a [`RangeCache`]: the explicit descriptors, tagged with the node-wide
//! range generation it reflects. A split or merge publishes its descriptors, then records
//! the change in the node's [`RangeChangeLog`] under the next generation, so every core
//! brings its cache up to date before its next lookup by applying the few changes it
//! missed — O(changed descriptors), not O(ranges) (a table split by hand into thousands of
//! ranges would otherwise reload every descriptor on every core after every split). A core
//! that fell further behind than the log reaches reloads everything. A request that still
//! reaches the old range (a race with the split, or a split on another node) gets
//! `RangeKeyMismatch` and is resent after a reload.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use chitin_storage::RangeId;

use super::keys;
use crate::error::{Error, Result};

/// A range: its id and its span `[start, end)`. The core that serves it follows from the
/// id ([`keys::core_for_range`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeDesc {
    pub id: RangeId,
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    /// The boundary at `start` was made by hand (`ALTER TABLE … SPLIT AT`): the merge
    /// queue never removes it (CockroachDB's sticky bit). Descriptors written before the
    /// flag existed decode as sticky: only manual splits wrote them.
    pub sticky: bool,
}

impl RangeDesc {
    /// `id u64 | start len u32 | start | end len u32 | end | sticky u8`, big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.start.len() + self.end.len());
        out.extend_from_slice(&self.id.0.to_be_bytes());
        out.extend_from_slice(&(self.start.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.start);
        out.extend_from_slice(&(self.end.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.end);
        out.push(self.sticky as u8);
        out
    }

    pub fn decode(b: &[u8]) -> Result<RangeDesc> {
        let bad = || Error::internal("corrupt range descriptor");
        let id = u64::from_be_bytes(b.get(..8).ok_or_else(bad)?.try_into().unwrap());
        let mut pos = 8;
        let mut bytes = || -> Result<Vec<u8>> {
            let n = u32::from_be_bytes(b.get(pos..pos + 4).ok_or_else(bad)?.try_into().unwrap())
                as usize;
            let v = b.get(pos + 4..pos + 4 + n).ok_or_else(bad)?.to_vec();
            pos += 4 + n;
            Ok(v)
        };
        let start = bytes()?;
        let end = bytes()?;
        let sticky = match b.get(16 + start.len() + end.len()) {
            None | Some(1) => true,
            Some(0) => false,
            Some(_) => return Err(bad()),
        };
        Ok(RangeDesc {
            id: RangeId(id),
            start,
            end,
            sticky,
        })
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.start.as_slice() <= key && key < self.end.as_slice()
    }
}

/// One published change of the descriptors: the descriptors written (keyed by their start)
/// and the start keys of those deleted.
#[derive(Clone, Debug, Default)]
pub struct RangeChange {
    pub puts: Vec<RangeDesc>,
    pub deletes: Vec<Vec<u8>>,
}

/// The node's recent descriptor changes, by generation (shared by the cores behind a
/// mutex: touched once per split or merge, and by a core only when its cache is behind).
#[derive(Default)]
pub struct RangeChangeLog {
    /// `(generation, change)`, oldest first, generations consecutive.
    entries: VecDeque<(u64, RangeChange)>,
}

impl RangeChangeLog {
    /// How many changes the log keeps; a core further behind reloads everything.
    pub const CAPACITY: usize = 4096;

    /// Records `change` as generation `generation` (the next after the last recorded).
    pub fn push(&mut self, generation: u64, change: RangeChange) {
        if self.entries.len() == Self::CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back((generation, change));
    }

    /// Applies to `cache` every change after its generation, in order. False when the log
    /// no longer reaches back to the cache's generation (or the cache was never loaded):
    /// the caller reloads every descriptor.
    pub fn catch_up(&self, cache: &mut RangeCache) -> bool {
        let Some(have) = cache.generation else {
            return false;
        };
        let Some(&(first, _)) = self.entries.front() else {
            return false;
        };
        if have + 1 < first {
            return false;
        }
        let skip = (have + 1 - first) as usize;
        for (generation, change) in self.entries.iter().skip(skip) {
            cache.apply(change);
            cache.generation = Some(*generation);
        }
        true
    }
}

/// The explicit range descriptors as one core last read them.
#[derive(Default)]
pub struct RangeCache {
    by_start: BTreeMap<Vec<u8>, RangeDesc>,
    /// The node's range generation these descriptors reflect (`None`: never loaded).
    pub generation: Option<u64>,
}

impl RangeCache {
    /// Replaces the cached descriptors.
    pub fn install(&mut self, descs: Vec<RangeDesc>, generation: u64) {
        self.by_start = descs.into_iter().map(|d| (d.start.clone(), d)).collect();
        self.generation = Some(generation);
    }

    /// Applies one published change (descriptors keep their generation tag).
    pub fn apply(&mut self, change: &RangeChange) {
        for start in &change.deletes {
            self.by_start.remove(start);
        }
        for d in &change.puts {
            self.by_start.insert(d.start.clone(), d.clone());
        }
    }

    /// The explicit descriptor whose span starts at `start` (at a table's end: the next
    /// table's first range, once that table was split).
    pub fn starting_at(&self, start: &[u8]) -> Option<&RangeDesc> {
        self.by_start.get(start)
    }

    /// The range holding `key` with its whole descriptor (implied for a table never split).
    pub fn desc_of(&self, key: &[u8]) -> RangeDesc {
        if let Some(d) = self.explicit(key) {
            return d.clone();
        }
        let id = keys::range_for_key(key);
        let (start, end) = keys::initial_span(id).unwrap_or_default();
        RangeDesc {
            id,
            start,
            end,
            sticky: false,
        }
    }

    /// The explicit descriptor of `table`'s range `id`.
    pub fn table_range(&self, table: u32, id: RangeId) -> Option<RangeDesc> {
        let (start, end) = keys::table_span(table);
        self.by_start
            .range(start..end)
            .find(|(_, d)| d.id == id)
            .map(|(_, d)| d.clone())
    }

    /// How many ranges `table` has.
    pub fn table_range_count(&self, table: u32) -> usize {
        let (start, end) = keys::table_span(table);
        self.by_start.range(start..end).count().max(1)
    }

    /// The highest split sequence number among `table`'s ranges (0 for a table whose only
    /// ranges are its first).
    pub fn max_split_seq(&self, table: u32) -> u64 {
        let (start, end) = keys::table_span(table);
        self.by_start
            .range(start..end)
            .map(|(_, d)| d.id.0 & 0xffff)
            .max()
            .unwrap_or(0)
    }

    fn explicit(&self, key: &[u8]) -> Option<&RangeDesc> {
        self.by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .map(|(_, d)| d)
            .filter(|d| d.contains(key))
    }

    /// The range holding `key`. Allocates nothing.
    pub fn range_id(&self, key: &[u8]) -> RangeId {
        match self.explicit(key) {
            Some(d) => d.id,
            None => keys::range_for_key(key),
        }
    }

    /// The range holding `key` and the end of its span.
    pub fn locate(&self, key: &[u8]) -> (RangeId, Vec<u8>) {
        if let Some(d) = self.explicit(key) {
            return (d.id, d.end.clone());
        }
        let id = keys::range_for_key(key);
        let end = keys::initial_span(id).map(|s| s.1).unwrap_or_default();
        (id, end)
    }

    /// The ranges of `table`, in key order.
    pub fn table_ranges(&self, table: u32) -> Vec<RangeDesc> {
        let (start, end) = keys::table_span(table);
        let found: Vec<RangeDesc> = self
            .by_start
            .range(start.clone()..end.clone())
            .map(|(_, d)| d.clone())
            .collect();
        if found.is_empty() {
            vec![RangeDesc {
                id: keys::table_range_id(table),
                start,
                end,
                sticky: false,
            }]
        } else {
            found
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_round_trip() {
        for sticky in [false, true] {
            let d = RangeDesc {
                id: keys::split_range_id(7, 3),
                start: b"\x10abc".to_vec(),
                end: vec![],
                sticky,
            };
            assert_eq!(RangeDesc::decode(&d.encode()).unwrap(), d);
            assert!(RangeDesc::decode(&d.encode()[..10]).is_err());
            // Written before the flag: sticky.
            let old = &d.encode()[..d.encode().len() - 1];
            assert!(RangeDesc::decode(old).unwrap().sticky);
        }
    }

    #[test]
    fn lookup_prefers_descriptors_and_falls_back_to_the_table_range() {
        let (t5s, t5e) = keys::table_span(5);
        let mut mid = t5s.clone();
        mid.extend_from_slice(b"m");
        let mut c = RangeCache::default();
        c.install(
            vec![
                RangeDesc {
                    id: keys::table_range_id(5),
                    start: t5s.clone(),
                    end: mid.clone(),
                    sticky: false,
                },
                RangeDesc {
                    id: keys::split_range_id(5, 1),
                    start: mid.clone(),
                    end: t5e.clone(),
                    sticky: true,
                },
            ],
            1,
        );
        let mut k = t5s.clone();
        k.push(b'a');
        assert_eq!(c.range_id(&k), keys::table_range_id(5));
        assert_eq!(c.range_id(&mid), keys::split_range_id(5, 1));
        let mut z = t5s.clone();
        z.push(b'z');
        assert_eq!(c.locate(&z), (keys::split_range_id(5, 1), t5e.clone()));
        // Another table, never split: its first range, whole span.
        let (t6s, t6e) = keys::table_span(6);
        assert_eq!(c.locate(&t6s), (keys::table_range_id(6), t6e));
        assert_eq!(c.range_id(&keys::meta_key("x")), keys::SYSTEM_RANGE);
        assert_eq!(c.table_ranges(5).len(), 2);
        assert_eq!(c.table_ranges(6).len(), 1);
        assert_eq!(keys::core_for_range(keys::split_range_id(5, 1), 2), 0);
        assert_eq!(keys::core_for_range(keys::table_range_id(5), 2), 1);
    }

    fn desc(table: u32, n: u16, start: &[u8], end: &[u8]) -> RangeDesc {
        let (ts, _) = keys::table_span(table);
        let key = |k: &[u8]| {
            let mut v = ts.clone();
            v.extend_from_slice(k);
            v
        };
        RangeDesc {
            id: if n == 0 {
                keys::table_range_id(table)
            } else {
                keys::split_range_id(table, n)
            },
            start: if start.is_empty() {
                ts.clone()
            } else {
                key(start)
            },
            end: if end.is_empty() {
                keys::table_span(table).1
            } else {
                key(end)
            },
            sticky: true,
        }
    }

    #[test]
    fn the_change_log_brings_a_cache_up_to_date_or_asks_for_a_reload() {
        let mut log = RangeChangeLog::default();
        let mut behind = RangeCache::default();
        // Never loaded: reload.
        assert!(!log.catch_up(&mut behind));
        behind.install(vec![], 0);
        // 1: split at m; 2: split at t; 3: merge [m,t) and [t,end) back.
        log.push(
            1,
            RangeChange {
                puts: vec![desc(5, 0, b"", b"m"), desc(5, 1, b"m", b"")],
                deletes: vec![],
            },
        );
        log.push(
            2,
            RangeChange {
                puts: vec![desc(5, 1, b"m", b"t"), desc(5, 2, b"t", b"")],
                deletes: vec![],
            },
        );
        let mut mid = RangeCache::default();
        mid.install(vec![], 0);
        assert!(log.catch_up(&mut mid));
        assert_eq!(mid.generation, Some(2));
        assert_eq!(mid.table_range_count(5), 3);
        assert_eq!(mid.max_split_seq(5), 2);
        log.push(
            3,
            RangeChange {
                puts: vec![desc(5, 1, b"m", b"")],
                deletes: vec![desc(5, 2, b"t", b"").start],
            },
        );
        // From 0 and from 2 alike: the same descriptors as a fresh load.
        for c in [&mut behind, &mut mid] {
            assert!(log.catch_up(c));
            assert_eq!(c.generation, Some(3));
            assert_eq!(
                c.table_ranges(5),
                vec![desc(5, 0, b"", b"m"), desc(5, 1, b"m", b"")]
            );
            let (ts, _) = keys::table_span(5);
            let mut z = ts.clone();
            z.push(b'z');
            assert_eq!(c.range_id(&z), keys::split_range_id(5, 1));
            assert_eq!(c.desc_of(&z), desc(5, 1, b"m", b""));
            assert_eq!(
                c.starting_at(&desc(5, 1, b"m", b"").start).map(|d| d.id),
                Some(keys::split_range_id(5, 1))
            );
            // Already current: nothing to do.
            assert!(log.catch_up(c));
        }
        // A table never split: its implied range.
        let mut implied = desc(6, 0, b"", b"");
        implied.sticky = false;
        assert_eq!(mid.desc_of(&keys::table_span(6).0), implied);
        // Fallen behind what the log keeps: reload.
        let mut log = RangeChangeLog::default();
        for g in 1..=RangeChangeLog::CAPACITY as u64 + 1 {
            log.push(g, RangeChange::default());
        }
        let mut old = RangeCache::default();
        old.install(vec![], 0);
        assert!(!log.catch_up(&mut old));
        old.install(vec![], 1);
        assert!(log.catch_up(&mut old));
        assert_eq!(old.generation, Some(RangeChangeLog::CAPACITY as u64 + 1));
    }
}
