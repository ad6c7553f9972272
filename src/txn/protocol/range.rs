//! One range's replica state, as the protocol sees it: the MVCC store, the concurrency
//! manager (latches, lock table, timestamp cache) and the transaction records anchored
//! here with their txn wait queue.
//!
//! Every write batch a range applies counts as one *proposal* (one round of consensus in
//! the replicated system); the harness prints them to show what 1PC and parallel commits
//! cost.

use std::collections::BTreeMap;

use chitin_storage::{RangeId, Timestamp};

use super::latch::LatchManager;
use super::lock_table::LockTable;
use super::meta::{Key, NodeId, Span, TxnId};
use super::mvcc::MvccStore;
use super::record::TxnRecord;
use super::ts_cache::TimestampCache;
use super::txn_wait::TxnWaitQueue;

/// How many spans the timestamp cache keeps before raising its low-water mark.
pub const TS_CACHE_CAPACITY: usize = 4096;

#[derive(Debug)]
pub struct Range {
    pub id: RangeId,
    /// The keys this range holds: `[start, end)`, `end` `None` for the last range.
    pub start: Key,
    pub end: Option<Key>,
    /// The node holding the lease (whose clock the range reads).
    pub node: NodeId,
    pub mvcc: MvccStore,
    pub latches: LatchManager,
    pub locks: LockTable,
    pub ts_cache: TimestampCache,
    pub records: BTreeMap<TxnId, TxnRecord>,
    pub wait_queue: TxnWaitQueue,
    /// Write batches applied (proposals).
    pub proposals: u64,
}

impl Range {
    pub fn new(id: RangeId, start: Key, end: Option<Key>, node: NodeId) -> Self {
        Range {
            id,
            start,
            end,
            node,
            mvcc: MvccStore::new(),
            latches: LatchManager::new(),
            locks: LockTable::new(),
            ts_cache: TimestampCache::new(Timestamp::MIN, TS_CACHE_CAPACITY),
            records: BTreeMap::new(),
            wait_queue: TxnWaitQueue::new(),
            proposals: 0,
        }
    }

    pub fn contains(&self, key: &Key) -> bool {
        &self.start <= key && self.end.as_ref().is_none_or(|e| key < e)
    }

    /// The part of `span` this range holds, if any.
    pub fn clip(&self, span: &Span) -> Option<Span> {
        let start = span.start.clone().max(self.start.clone());
        let end = match &self.end {
            Some(e) => span.end.clone().min(e.clone()),
            None => span.end.clone(),
        };
        (start < end).then_some(Span { start, end })
    }
}
