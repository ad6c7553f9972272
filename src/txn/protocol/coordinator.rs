//! The client side of one transaction (the gateway's coordinator): its timestamps, what it
//! read, what it wrote, and the clock readings it observed per node.
//!
//! - `read_ts` is where reads happen; `meta.write_ts` where intents go. They start equal;
//!   pushes move the write timestamp up, and a refresh moves the read timestamp up to it.
//!   SERIALIZABLE commits only when they are equal; READ COMMITTED takes a fresh `read_ts`
//!   per statement and commits at the write timestamp without refreshing.
//! - The *global uncertainty limit* is the start time plus the maximum clock offset: a value
//!   below it might have been written before the transaction started on a clock that runs
//!   ahead. The first contact with a node yields an *observed timestamp* from that node's
//!   clock, which caps the limit for values read on that node: anything above it was surely
//!   written after the transaction started.

use std::collections::BTreeMap;

use chitin_storage::Timestamp;

use super::meta::{Epoch, Key, NodeId, Priority, TxnId, TxnMeta, Value};
use super::refresh::RefreshSpans;
use crate::txn::Isolation;

/// Where the coordinator stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordState {
    Open,
    Committed(Timestamp),
    Aborted,
    /// The coordinator died: it sends nothing more, heartbeats stop.
    Crashed,
}

/// A write sent but not yet replicated (a pipelined write still in flight).
#[derive(Clone, Debug)]
pub struct DelayedWrite {
    pub key: Key,
    pub value: Option<Value>,
    pub meta: TxnMeta,
}

#[derive(Clone, Debug)]
pub struct TxnCoordinator {
    pub meta: TxnMeta,
    /// Whether `meta.anchor` was chosen (the first write's key).
    pub anchored: bool,
    pub gateway: NodeId,
    pub read_ts: Timestamp,
    pub global_uncertainty_limit: Timestamp,
    pub observed: BTreeMap<NodeId, Timestamp>,
    pub refresh_spans: RefreshSpans,
    /// Intents written and replicated, with their timestamps: the in-flight writes a
    /// parallel commit lists.
    pub intents: BTreeMap<Key, Timestamp>,
    /// Writes sent but not yet replicated.
    pub delayed: Vec<DelayedWrite>,
    /// Pipelined writes that failed when they were finally evaluated (why, per key).
    pub failed_writes: Vec<(Key, String)>,
    /// A write met a newer committed value (the reason a failed refresh reports).
    pub write_too_old: bool,
    /// The staging timestamp once a parallel commit wrote its STAGING record.
    pub staged_at: Option<Timestamp>,
    /// For the commit's story: writes pipelined before it, writes sent with it, and the
    /// proposals its commit round made.
    pub intents_before_commit: usize,
    pub last_writes_in_commit: usize,
    pub commit_proposals: u64,
    pub commit_rounds: u32,
    pub state: CoordState,
}

impl TxnCoordinator {
    pub fn new(
        id: TxnId,
        gateway: NodeId,
        now: Timestamp,
        isolation: Isolation,
        priority: Priority,
        max_offset_nanos: u64,
    ) -> Self {
        TxnCoordinator {
            meta: TxnMeta {
                id,
                epoch: Epoch(0),
                write_ts: now,
                min_ts: now,
                priority,
                isolation,
                anchor: Key::default(),
            },
            anchored: false,
            gateway,
            read_ts: now,
            global_uncertainty_limit: Timestamp::new(now.wall.saturating_add(max_offset_nanos), 0),
            observed: BTreeMap::new(),
            refresh_spans: RefreshSpans::new(),
            intents: BTreeMap::new(),
            delayed: Vec::new(),
            failed_writes: Vec::new(),
            write_too_old: false,
            staged_at: None,
            intents_before_commit: 0,
            last_writes_in_commit: 0,
            commit_proposals: 0,
            commit_rounds: 0,
            state: CoordState::Open,
        }
    }

    pub fn id(&self) -> TxnId {
        self.meta.id
    }

    pub fn isolation(&self) -> Isolation {
        self.meta.isolation
    }

    /// The uncertainty limit for a read served by `node`.
    pub fn uncertainty_limit(&self, node: NodeId) -> Timestamp {
        let mut limit = self.global_uncertainty_limit;
        if let Some(obs) = self.observed.get(&node) {
            limit = limit.min(*obs);
        }
        limit.max(self.read_ts)
    }

    /// Starts a READ COMMITTED statement: a fresh snapshot at `now`.
    pub fn start_statement(&mut self, now: Timestamp, max_offset_nanos: u64) {
        self.read_ts = self.read_ts.max(now);
        self.global_uncertainty_limit =
            Timestamp::new(now.wall.saturating_add(max_offset_nanos), 0);
        self.observed.clear();
        self.bump_write_ts(self.read_ts);
    }

    pub fn bump_write_ts(&mut self, ts: Timestamp) {
        if ts > self.meta.write_ts {
            self.meta.write_ts = ts;
        }
    }

    /// The metadata an intent on `key` carries; the first write anchors the record.
    pub fn meta_for_write(&mut self, key: &Key) -> TxnMeta {
        if !self.anchored {
            self.anchored = true;
            self.meta.anchor = key.clone();
        }
        self.meta.clone()
    }

    pub fn is_open(&self) -> bool {
        self.state == CoordState::Open
    }

    /// Whether the transaction wrote anything (replicated or still in flight).
    pub fn has_writes(&self) -> bool {
        !self.intents.is_empty() || !self.delayed.is_empty()
    }
}
