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
//!    entry, 1PC; several: a parallel commit — [`KvRequest::Prepare`] on each at once,
//!    together with a STAGING transaction record, then `Commit` in the background; see
//!    `node::txn_record`).
//! 2. The range *evaluates* the writes on its leaseholder (this core): it latches the keys,
//!    checks write-write conflicts against versions newer than the transaction's read
//!    timestamp (→ 40001) and insert conflicts (→ 23505), and picks a commit timestamp above
//!    every read it has served (a coarse timestamp cache: one high-water mark per range).
//! 3. The evaluated batch is proposed to the range's raft group; the core's raft driver
//!    persists the entries of all its ranges with one log append + one fdatasync, then
//!    applies committed entries to the engine and answers the proposer.
//! 4. The engine keeps applied writes in its memtable; when it flushes, it records each
//!    range's applied index durably, and every 2 s the core drops the raft log entries at
//!    or below it (`Store::truncate_logs`; the last entry of a range stays). A restart
//!    starts each range's raft log after its truncated prefix and replays the rest.
//!
//! Reads wait for latched keys in their span (a prepared write may land below the read
//! timestamp), then read the engine at their timestamp and raise the range's read
//! high-water mark.
//!
//! # Implementation caveats
//!
//! - SERIALIZABLE by read refresh at commit (see `txn`): each range a read-write
//!   transaction read re-checks its reads at the commit timestamp under the range's
//!   coarse timestamp cache (one read high-water mark per range, not per key: more
//!   transactions are pushed than need be). Issue 4 has the rest.
//! - A commit that spans ranges is a two-phase commit on one node: each range replicates a
//!   durable prepare record (lock table), then a decision record in the system range
//!   decides, then each range applies its writes. Restart resolves leftover prepare records
//!   by their decision records. Prepared keys are latched in memory (readers wait); there
//!   are no intents visible to readers, no pushes, no parallel commits yet (issue 4).
//! - Replication (`start --join` + `chitin init [--num-replicas N]`): every range is a raft
//!   group born with a replica on each of the cluster's first N (3) nodes; the allocator
//!   (`Store::allocate`) replaces replicas on dead or decommissioning nodes through
//!   joint-consensus conf changes, and new replicas get a snapshot (`Store::send_snapshot` /
//!   `Store::install_snapshot`: the span's versions and prepare records in one raft
//!   message, read after the applied index it names — commands are idempotent, so a
//!   snapshot holding some later writes converges once the entries after it apply; not
//!   streamed in chunks yet, and a snapshot installs with an engine flush). Leadership is
//!   spread by a preferred
//!   voter per range (leadership transfer). The raft leader serves every request
//!   ([`Store::handle`] answers `NotLeader` elsewhere and the gateway's `CoreCtx::send`
//!   forwards over the node transport, [`codec`]); a new leader serves once it applied its
//!   term's first entry, with its read high-water mark at its clock, and only under a lease
//!   renewed by ReadIndex rounds (`replica::LEASE`: a leader cut off from the others stops
//!   serving before another can be elected; not yet epoch leases tied to node liveness).
//!   A leader's in-flight proposals die with
//!   its leadership (waiters get "result is ambiguous", 40003); a new leader re-latches the
//!   durable prepare records of two-phase transactions before serving (`Store::relatch`),
//!   and leaders resolve prepare records left alone for 4 s by their decision record
//!   (`node::cluster::resolve_orphans`: the resolver's abort decision and the coordinator's
//!   commit decision are both inserts, so exactly one wins).
//!   Single-node stores keep one replica per range. A table starts as one range and splits on
//!   `ALTER TABLE … SPLIT AT`, by size and by load, and merges small cold neighbours. A
//!   split fences the moving span on the old range through its raft log (its requests
//!   wait; the fence is kept in the lock table, travels in snapshots and survives leader
//!   changes and restarts), copies every version to the new range through that range's
//!   raft log, publishes both descriptors in the system range (only if the old descriptor
//!   is unchanged since the fence), then shrinks the old range, which lifts the fence.
//!   A fence left for a minute (its gateway died) is resolved by the range's leader from
//!   the durable descriptor: finished if published, else the descriptor is rewritten (so a
//!   late publish fails) and the fence lifted (`split::resolve_fence`). Data is copied in
//!   the raft entries themselves (chunks of about 1 MiB), not as SST snapshots.
//!
//! # Splits and crashes
//!
//! The descriptors in the system range decide who owns a span. A crash before they are
//! written leaves the old range owning everything (the new range's copy is invisible); a
//! crash after leaves the old range's copy of the
//! moved span invisible (its span is taken from the descriptors at startup).
//!
//! The old range never removes the moved data from its core's engine: ranges share their
//! core's engine, and at restart the entries of different ranges replay in no particular
//! order, so a removal could replay after a range on the same core took the span over and
//! wipe its data. For the same reason an ingest does not clear its span first. Every copy
//! left behind is a subset of what the span's owner holds (versions are immutable, and the
//! owner's copy was taken from the previous owner), so a range that later takes a span
//! over on the same core sees nothing it should not. This holds while the node does not
//! garbage-collect old versions (it does not yet): before GC is turned on, spans no local
//! range owns must be dropped at compaction, or a deleted row's older version left behind
//! could reappear. Reclaiming that space is still to do.

pub mod codec;
pub mod deadlock;
pub mod engine;
pub mod keys;
pub mod range_stats;
pub mod ranges;
pub mod replica;
pub mod replica_gc;
pub mod snapshot;
pub mod split;
pub mod store;

use chitin_storage::{RangeId, Timestamp, VersionedKeyValue};

use crate::error::Error;
use crate::txn::ReadSet;

/// A read found a version above its timestamp and within its uncertainty interval: it
/// may have been written before the reading transaction started, by a node whose clock
/// runs ahead, so the reader must move its timestamp up to `value_ts` and read again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uncertain {
    /// The newest such version.
    pub value_ts: Timestamp,
    /// The serving node's clock when it read: nothing it had applied was above it, so the
    /// interval can end there for the read's retry.
    pub observed: Timestamp,
}

/// What a read with an uncertainty interval answers.
pub type ReadResult<T> = std::result::Result<T, Uncertain>;

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

/// How a [`KvRequest::Lock`] waits for a row another transaction holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockWait {
    /// Until the lock is free, a deadlock is found, or [`store::LOCK_WAIT_MAX`] passes.
    Block,
    /// Not at all: 55P03 at once (`FOR UPDATE NOWAIT`, and `SKIP LOCKED`, which then
    /// skips the row).
    NoWait,
    /// At most [`store::LOCK_SLICE`], then `LockWaitSlice`: a gateway waiting on another
    /// node sends the request again, so a long wait never looks like a dead node to the
    /// transport's timeout, and a dead node never looks like a long wait.
    Slice,
}

/// A request to the range that owns the keys. `Send`: it may cross cores.
#[derive(Debug)]
pub enum KvRequest {
    /// Reads `key` at `ts`. A version in `(ts, unc]` answers [`KvResponse::Uncertain`]
    /// instead (`unc <= ts`: no uncertainty interval).
    Get {
        range: RangeId,
        key: Vec<u8>,
        ts: Timestamp,
        unc: Timestamp,
    },
    /// Reads `[start, end)` at `ts`, with the uncertainty interval of [`KvRequest::Get`]
    /// over the keys the answer covers.
    Scan {
        range: RangeId,
        start: Vec<u8>,
        end: Vec<u8>,
        ts: Timestamp,
        unc: Timestamp,
        limit: usize,
        reverse: bool,
    },
    /// Parallel commit, one participant: latch and validate `writes` (conflicts with
    /// anything committed after `read_ts`), refresh `reads` (this range's part of the read
    /// set) from `reads_ts` to `commit_ts`, and make the writes a durable prepare record.
    /// Answers [`KvResponse::Prepared`] with the lowest timestamp this range lets the
    /// transaction commit at: above `commit_ts` when a read already served here pushed it.
    /// The writes stay latched until Commit or Abort.
    Prepare {
        range: RangeId,
        txn: TxnId,
        read_ts: Timestamp,
        writes: Vec<KvWrite>,
        commit_ts: Timestamp,
        reads_ts: Timestamp,
        reads: ReadSet,
    },
    /// Commit what Prepare validated, at `commit_ts`.
    Commit {
        range: RangeId,
        txn: TxnId,
        commit_ts: Timestamp,
    },
    /// Release a prepared transaction's latches.
    Abort { range: RangeId, txn: TxnId },
    /// Prepare + commit in one step at a timestamp the range picks (1PC), after
    /// refreshing `reads` (all on this range) to it.
    OnePhase {
        range: RangeId,
        txn: TxnId,
        read_ts: Timestamp,
        writes: Vec<KvWrite>,
        reads: ReadSet,
    },
    /// Serializable read refresh: fail with 40001 if anyone else wrote in `reads` (on this
    /// range) in `(read_ts, commit_ts]`, and make sure nobody can any more.
    Refresh {
        range: RangeId,
        txn: TxnId,
        read_ts: Timestamp,
        commit_ts: Timestamp,
        reads: ReadSet,
    },
    /// Split step 1, on the range being split: stop serving `[key, end of span)` (requests
    /// touching it wait), wait for prepared writes there to finish, and return its data.
    SplitFence { range: RangeId, key: Vec<u8> },
    /// Split step 2, on the new range's core: take over `[start, end)` with `versions`,
    /// and the read high-water mark and recent writes the old range had there.
    Ingest {
        range: RangeId,
        start: Vec<u8>,
        end: Vec<u8>,
        versions: Vec<VersionedKeyValue>,
        max_read_ts: Timestamp,
        last_writes: Vec<(Vec<u8>, Timestamp)>,
    },
    /// Split step 4 (after the descriptors are durable), on the range being split: end its
    /// span at `key` and lift the fence.
    SplitFinish { range: RangeId, key: Vec<u8> },
    /// A failed split: lift the fence, change nothing.
    SplitAbort { range: RangeId },
    /// Merge steps on the two ranges ([`super::split::merge`]). With `key` at the span's
    /// start (the right-hand range): fence the whole span and return its data like
    /// [`KvRequest::SplitFence`]. With `key` at the span's end (the left-hand range): fence
    /// nothing it serves, only what it is about to take over, and refuse splits meanwhile;
    /// answers an empty [`KvResponse::SplitFenced`].
    MergeFence { range: RangeId, key: Vec<u8> },
    /// Take the exclusive lock on `key` for `txn` (an UPDATE, DELETE or SELECT FOR UPDATE
    /// about to write the row), waiting while another transaction holds it; answers
    /// [`KvResponse::Locked`] with the key's last committed write.
    /// How long it waits: see [`LockWait`].
    Lock {
        range: RangeId,
        txn: TxnId,
        key: Vec<u8>,
        wait: LockWait,
    },
    /// Release every lock `txn` holds on the range (its transaction ended).
    ReleaseLocks { range: RangeId, txn: TxnId },
    /// The range's replicas as its leader knows them: [`KvResponse::Rows`] of
    /// `(role, node id as u64 big-endian)`, role `voter`, `learner` or `outgoing` (a voter
    /// of the old half of a joint configuration).
    Describe { range: RangeId },
    /// A split or merge still running on its gateway: its fence on `range` is not
    /// abandoned (sent every [`split::FENCE_TOUCH_EVERY`] until the steps end; the leader
    /// resolves a fence not touched for [`split::FENCE_ABANDONED`]). Answers `Done`.
    FenceTouch { range: RangeId },
    /// Recovery of a STAGING transaction record: is `txn` durably prepared here at or below
    /// `staging_ts`? Answers [`KvResponse::Prepared`] (with the prepare's timestamp) when
    /// it is prepared, waiting for a prepare in flight; otherwise answers
    /// [`KvResponse::Done`] and from then on refuses `txn`'s prepare here, so the
    /// transaction can never become implicitly committed behind the recoverer's back.
    Recover {
        range: RangeId,
        txn: TxnId,
        staging_ts: Timestamp,
    },
    /// A DistSQL flow (`sql::distsql`): read the spec's spans (all on this core's ranges;
    /// `range` is the first's), filter and aggregate their rows here, answer
    /// [`KvResponse::Flow`]. Served by the SQL layer on the owning core, not by the store.
    Flow {
        range: RangeId,
        spec: Box<crate::sql::distsql::FlowSpec>,
    },
}

impl KvRequest {
    pub fn range(&self) -> RangeId {
        match self {
            KvRequest::Get { range, .. }
            | KvRequest::Scan { range, .. }
            | KvRequest::Prepare { range, .. }
            | KvRequest::Recover { range, .. }
            | KvRequest::Commit { range, .. }
            | KvRequest::Abort { range, .. }
            | KvRequest::OnePhase { range, .. }
            | KvRequest::Refresh { range, .. }
            | KvRequest::SplitFence { range, .. }
            | KvRequest::Ingest { range, .. }
            | KvRequest::SplitFinish { range, .. }
            | KvRequest::SplitAbort { range }
            | KvRequest::MergeFence { range, .. }
            | KvRequest::Lock { range, .. }
            | KvRequest::ReleaseLocks { range, .. }
            | KvRequest::Describe { range }
            | KvRequest::FenceTouch { range }
            | KvRequest::Flow { range, .. } => *range,
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
    /// The data of a fenced span: every version, the range's read high-water mark, the
    /// recent writes (conflict detection), and where the span ends.
    SplitFenced {
        versions: Vec<VersionedKeyValue>,
        max_read_ts: Timestamp,
        last_writes: Vec<(Vec<u8>, Timestamp)>,
        end: Vec<u8>,
    },
    Done,
    /// The lock is held; `latest` is the key's last committed write (`Timestamp::MIN`
    /// when the range knows none).
    Locked {
        latest: Timestamp,
    },
    Err(Error),
    /// A read met a version inside its uncertainty interval ([`Uncertain`]).
    Uncertain(Uncertain),
    /// This replica does not lead the range (or has not caught up as a new leader):
    /// `leader` is the node it believes leads (0: unknown), `req` the request handed back
    /// for the gateway to send there (`None` when it crossed the network).
    NotLeader {
        leader: u64,
        req: Option<Box<KvRequest>>,
    },
    /// A flow's rows or partial groups ([`KvRequest::Flow`]).
    Flow(Box<crate::sql::distsql::FlowResult>),
}
