//! KV: ranges, their raft groups, and the concurrency control that sits in front of them.
//!
//! A core's [`Store`] owns its range replicas ([`replica::Replica`]), one MVCC engine and
//! one raft log. Requests ([`KvRequest`]) arrive from the gateway on the same core (a direct
//! call) or from another core (the SPSC mesh in `node/`); [`Store::handle`] serves them.
//!
//! # Life of a write
//!
//! 1. The gateway's transaction buffers its writes and, at commit, sends one
//!    [`KvRequest::Commit`] per range touched (one range: the whole commit is a single raft
//!    entry, 1PC; several: [`KvRequest::Prepare`] on each, in range order, then `Commit`).
//! 2. The range *evaluates* the writes on its leaseholder (this core): it latches the keys,
//!    checks write-write conflicts against versions newer than the transaction's read
//!    timestamp (→ 40001) and insert conflicts (→ 23505), and picks a commit timestamp above
//!    every read it has served (a coarse timestamp cache: one high-water mark per range).
//! 3. The evaluated batch is proposed to the range's raft group; the core's raft driver
//!    persists the entries of all its ranges with one log append + one fdatasync, then
//!    applies committed entries to the engine and answers the proposer.
//!
//! Reads wait for latched keys in their span (a prepared write may land below the read
//! timestamp), then read the engine at their timestamp and raise the range's read
//! high-water mark.
//!
//! # Implementation caveats
//!
//! - Isolation is snapshot isolation with first-committer-wins, not yet SERIALIZABLE
//!   (no read refresh, no per-key timestamp cache; write skew is possible). Issue 4.
//! - A commit that spans ranges is a two-phase commit on one node: each range replicates a
//!   durable prepare record (lock table), then a decision record in the system range
//!   decides, then each range applies its writes. Restart resolves leftover prepare records
//!   by their decision records. Prepared keys are latched in memory (readers wait); there
//!   are no intents visible to readers, no pushes, no parallel commits yet (issue 4).
//! - One replica per range (single node); each table is one range (all its indexes), so
//!   that single-table writes commit atomically; tables do not split yet.

pub mod engine;
pub mod keys;
pub mod replica;
pub mod store;

use chitin_storage::{RangeId, Timestamp};

use crate::error::Error;

/// A transaction id, unique on the node.
pub type TxnId = u64;

/// One buffered write of a transaction.
#[derive(Clone, Debug)]
pub enum KvWrite {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Put that fails with a unique violation if the key has a visible value.
    Insert {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
}

impl KvWrite {
    pub fn key(&self) -> &[u8] {
        match self {
            KvWrite::Put { key, .. } | KvWrite::Insert { key, .. } | KvWrite::Delete { key } => key,
        }
    }
}

/// A request to the range that owns the keys. `Send`: it may cross cores.
#[derive(Debug)]
pub enum KvRequest {
    Get {
        range: RangeId,
        key: Vec<u8>,
        ts: Timestamp,
    },
    Scan {
        range: RangeId,
        start: Vec<u8>,
        end: Vec<u8>,
        ts: Timestamp,
        limit: usize,
        reverse: bool,
    },
    /// Latch and validate; the writes stay on the range until Commit or Abort.
    Prepare {
        range: RangeId,
        txn: TxnId,
        read_ts: Timestamp,
        writes: Vec<KvWrite>,
    },
    /// Commit what Prepare validated, at `commit_ts`.
    Commit {
        range: RangeId,
        txn: TxnId,
        commit_ts: Timestamp,
    },
    /// Release a prepared transaction's latches.
    Abort { range: RangeId, txn: TxnId },
    /// Prepare + commit in one step at a timestamp the range picks (1PC).
    OnePhase {
        range: RangeId,
        txn: TxnId,
        read_ts: Timestamp,
        writes: Vec<KvWrite>,
    },
}

impl KvRequest {
    pub fn range(&self) -> RangeId {
        match self {
            KvRequest::Get { range, .. }
            | KvRequest::Scan { range, .. }
            | KvRequest::Prepare { range, .. }
            | KvRequest::Commit { range, .. }
            | KvRequest::Abort { range, .. }
            | KvRequest::OnePhase { range, .. } => *range,
        }
    }
}

/// The answer to a [`KvRequest`].
#[derive(Debug)]
pub enum KvResponse {
    Value(Option<Vec<u8>>),
    Rows(Vec<(Vec<u8>, Vec<u8>)>),
    /// Prepared: the commit timestamp must be above `min_commit_ts`.
    Prepared {
        min_commit_ts: Timestamp,
    },
    Committed {
        commit_ts: Timestamp,
    },
    Done,
    Err(Error),
}
