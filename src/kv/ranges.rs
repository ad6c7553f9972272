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
//! range generation it reflects. A split bumps the generation after publishing its
//! descriptors, so a gateway reloads before its next lookup; a request that still reaches
//! the old range (a race with the split) gets `RangeKeyMismatch` and is resent after a
//! reload.

use std::collections::BTreeMap;
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
}
