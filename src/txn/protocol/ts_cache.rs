//! The timestamp cache: the highest timestamp at which each key or span was read.
//!
//! A write consults it before placing an intent: a write at or below a read already served
//! would change what that read should have seen, so the write moves just above it (and its
//! transaction may have to refresh). Entries remember which transaction read, so a
//! transaction is never pushed by its own reads. The cache is bounded: evicted entries raise
//! the low-water mark, a floor every lookup returns at least — forgetting only ever makes
//! writes more conservative, never lets one slip under a read.

use chitin_storage::Timestamp;

use super::meta::{Span, TxnId};

#[derive(Clone, Debug)]
struct Entry {
    span: Span,
    ts: Timestamp,
    txn: Option<TxnId>,
}

#[derive(Clone, Debug)]
pub struct TimestampCache {
    low_water: Timestamp,
    entries: Vec<Entry>,
    capacity: usize,
}

/// The answer to "what is the highest read over this span?"
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedRead {
    pub ts: Timestamp,
    /// The reader, when exactly one transaction read at `ts` (none for the low-water mark
    /// or for non-transactional reads).
    pub txn: Option<TxnId>,
}

impl TimestampCache {
    /// A cache whose low-water mark starts at `low_water` (e.g. when the lease started).
    pub fn new(low_water: Timestamp, capacity: usize) -> Self {
        TimestampCache {
            low_water,
            entries: Vec::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn low_water(&self) -> Timestamp {
        self.low_water
    }

    /// Records a read of `span` at `ts` by `txn`.
    pub fn add(&mut self, span: Span, ts: Timestamp, txn: Option<TxnId>) {
        if ts <= self.low_water {
            return;
        }
        self.entries.push(Entry { span, ts, txn });
        if self.entries.len() > self.capacity {
            // Evict the oldest half and fold it into the low-water mark.
            let evict = self.entries.len() / 2;
            for e in self.entries.drain(..evict) {
                self.low_water = self.low_water.max(e.ts);
            }
            let lw = self.low_water;
            self.entries.retain(|e| e.ts > lw);
        }
    }

    /// The highest read of any key in `span`.
    pub fn get_max(&self, span: &Span) -> CachedRead {
        let mut best = CachedRead {
            ts: self.low_water,
            txn: None,
        };
        for e in self.entries.iter().filter(|e| e.span.overlaps(span)) {
            if e.ts > best.ts {
                best = CachedRead {
                    ts: e.ts,
                    txn: e.txn,
                };
            } else if e.ts == best.ts && best.txn != e.txn {
                best.txn = None;
            }
        }
        best
    }

    /// The timestamp a write of `span` by `txn` at `ts` must move to, if any: just above
    /// the highest read by someone else at or above `ts`.
    pub fn push_for_write(&self, span: &Span, txn: TxnId, ts: Timestamp) -> Option<Timestamp> {
        let r = self.get_max(span);
        if r.ts >= ts && r.txn != Some(txn) {
            Some(super::meta::ts_next(r.ts))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::protocol::meta::Key;

    #[test]
    fn writes_move_above_foreign_reads_but_not_own_reads() {
        let mut c = TimestampCache::new(Timestamp::MIN, 16);
        let a = Span::key(&Key::new("a"));
        c.add(a.clone(), Timestamp::new(10, 0), Some(TxnId(1)));
        assert_eq!(
            c.push_for_write(&a, TxnId(2), Timestamp::new(5, 0)),
            Some(Timestamp::new(10, 1))
        );
        assert_eq!(c.push_for_write(&a, TxnId(1), Timestamp::new(5, 0)), None);
        assert_eq!(c.push_for_write(&a, TxnId(2), Timestamp::new(11, 0)), None);
    }

    #[test]
    fn eviction_raises_the_low_water_mark() {
        let mut c = TimestampCache::new(Timestamp::MIN, 2);
        for i in 1..=3u8 {
            c.add(
                Span::key(&Key(vec![i])),
                Timestamp::new(u64::from(i), 0),
                Some(TxnId(1)),
            );
        }
        assert!(c.low_water() >= Timestamp::new(1, 0));
        // A key never read still reports the low-water mark.
        assert_eq!(c.get_max(&Span::key(&Key(vec![9]))).ts, c.low_water());
    }
}
