//! A range replica: its raft group (raft-rs `RawNode` over an in-memory `MemStorage` view
//! of the durable log), its latches, and the proposals waiting to be applied.
//!
//! Only the core's raft driver ([`super::store::Store::raft_loop`]) touches the `RawNode`
//! between `ready()` and `advance()`; proposers queue their commands in
//! [`Replica::queue`] and the driver feeds them to raft at the top of its loop, so raft-rs's
//! rule (no `propose`/`step` between `ready` and `advance`) holds by construction. The
//! same goes for membership changes ([`Replica::conf_queue`]) and snapshot outcomes
//! ([`Replica::snap_reports`]).
//!
//! A replica's log starts after a seed ([`RAFT_INIT_INDEX`]) shared by the range's initial
//! replicas; one added later starts empty (no configuration: it cannot campaign) and gets
//! a snapshot, since no log holds the entries below the seed. Its configuration as of the
//! applied index is kept in the engine ([`RaftStateRecord`]) with that index.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use chitin_storage::{RangeId, Timestamp, VersionedKeyValue};
use glommio::channels::local_channel::LocalSender;
use raft::prelude::*;
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, StorageError};

use super::{KvWrite, TxnId};
use crate::error::{Error, Result};

/// What a replicated command does when applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommandKind {
    /// Write `writes` at `ts` (a one-phase commit).
    #[default]
    Write = 0,
    /// Store `writes` durably as transaction `txn`'s prepare record (lock table); nothing
    /// becomes visible.
    Prepare = 1,
    /// Write `writes` at `ts` and drop `txn`'s prepare record.
    Commit = 2,
    /// Drop `txn`'s prepare record.
    Abort = 3,
    /// Take over `span` from the range it was split off: write `versions` with their own
    /// timestamps, and set the span. Purely additive (versions are immutable), so entries
    /// of different ranges may replay in any order.
    Ingest = 4,
    /// Give `span` (the upper part of this range) away to the range split off: end this
    /// range's span at its start. Lifts the fence.
    Shrink = 5,
    /// Fence the range for a split or merge: `writes` holds the one fence record
    /// ([`fence_record_key`] → [`encode_fence`]). Replicated (and kept in the lock table)
    /// so that a new leader, or the node after a restart, still holds requests to the
    /// span that is moving away.
    Fence = 6,
    /// Lift the fence (the split or merge gave up, or a merge's left-hand range is done).
    Unfence = 7,
}

/// Why a range is fenced (the first byte of its fence record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FenceKind {
    /// A split moves `[key, span end)` to a new range.
    #[default]
    Split = 0,
    /// A merge's left-hand range, reserved at its end (`key`), takes over the next span.
    MergeLeft = 1,
    /// A merge's right-hand range, fenced whole (`key` = its start), is taken over.
    MergeRight = 2,
}

/// Prefix of every range's fence record in a core's lock table.
pub const FENCE_PREFIX: &[u8] = b"\x00fence/";

/// The lock-table key of `range`'s fence record.
pub fn fence_record_key(range: RangeId) -> Vec<u8> {
    let mut k = FENCE_PREFIX.to_vec();
    k.extend_from_slice(&range.0.to_be_bytes());
    k
}

/// A fence record: `kind u8 | key`.
pub fn encode_fence(kind: FenceKind, key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + key.len());
    v.push(kind as u8);
    v.extend_from_slice(key);
    v
}

pub fn decode_fence(v: &[u8]) -> Result<(FenceKind, Vec<u8>)> {
    let kind = match v.first() {
        Some(0) => FenceKind::Split,
        Some(1) => FenceKind::MergeLeft,
        Some(2) => FenceKind::MergeRight,
        _ => return Err(Error::internal("corrupt fence record")),
    };
    Ok((kind, v[1..].to_vec()))
}

/// A command replicated through raft. Encoded as `kind u8 | txn u64 | proposal id u64 |
/// ts wall u64 | ts logical u32 | count u32 | (op u8, klen u32, key, vlen u32, value)*`,
/// and for `Ingest` and `Shrink` then `slen u32 | span start | elen u32 | span end |
/// count u32 | (klen u32, key, wall u64, logical u32, op u8, vlen u32, value)*`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Command {
    pub kind: CommandKind,
    pub txn: TxnId,
    pub proposal: u64,
    pub ts: Timestamp,
    pub writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// `Ingest`, `Shrink`: the span acted on.
    pub span: (Vec<u8>, Vec<u8>),
    /// `Ingest`: versions, each at its own timestamp.
    pub versions: Vec<VersionedKeyValue>,
}

/// The lock-table key of the prepare record of `txn` on `range`.
pub fn prepare_record_key(range: RangeId, txn: TxnId) -> Vec<u8> {
    let mut k = PREPARE_PREFIX.to_vec();
    k.extend_from_slice(&range.0.to_be_bytes());
    k.extend_from_slice(&txn.to_be_bytes());
    k
}

/// Prefix of every prepare record in a core's lock table.
pub const PREPARE_PREFIX: &[u8] = b"\x00prepare/";

/// Prefix of every range's raft-state record in a core's lock table.
pub const RAFT_STATE_PREFIX: &[u8] = b"\x00raftstate/";

/// Prefix of the records of ranges whose replica this core destroyed (replica GC): such a
/// range is never started here again from the initial seed, only from a leader's snapshot.
pub const GONE_PREFIX: &[u8] = b"\x00rangegone/";

/// The lock-table key of `range`'s destroyed-replica record.
pub fn gone_key(range: RangeId) -> Vec<u8> {
    let mut k = GONE_PREFIX.to_vec();
    k.extend_from_slice(&range.0.to_be_bytes());
    k
}

/// The lock-table key of `range`'s raft-state record.
pub fn raft_state_key(range: RangeId) -> Vec<u8> {
    let mut k = RAFT_STATE_PREFIX.to_vec();
    k.extend_from_slice(&range.0.to_be_bytes());
    k
}

/// What a replica keeps durable beside the raft log, in the engine, written in the same
/// batch as the applied index it goes with: the configuration as of that index (changed
/// by conf-change entries and snapshots) and the `(index, term)` of the last snapshot
/// installed (the raft log cannot tell the term below its first entry after a snapshot).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RaftStateRecord {
    pub snap_index: u64,
    pub snap_term: u64,
    pub conf: ConfState,
}

impl RaftStateRecord {
    /// `snap_index u64 | snap_term u64 | ConfState (protobuf)`, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&self.snap_index.to_le_bytes());
        out.extend_from_slice(&self.snap_term.to_le_bytes());
        out.extend_from_slice(&prost011::Message::encode_to_vec(&self.conf));
        out
    }

    pub fn decode(b: &[u8]) -> Result<RaftStateRecord> {
        let bad = || Error::internal("corrupt raft state record");
        if b.len() < 16 {
            return Err(bad());
        }
        let conf = <ConfState as prost011::Message>::decode(&b[16..]).map_err(|_| bad())?;
        Ok(RaftStateRecord {
            snap_index: u64::from_le_bytes(b[..8].try_into().unwrap()),
            snap_term: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            conf,
        })
    }
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33 + self.writes.len() * 32);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.txn.to_le_bytes());
        out.extend_from_slice(&self.proposal.to_le_bytes());
        out.extend_from_slice(&self.ts.wall.to_le_bytes());
        out.extend_from_slice(&self.ts.logical.to_le_bytes());
        out.extend_from_slice(&(self.writes.len() as u32).to_le_bytes());
        for (k, v) in &self.writes {
            out.push(v.is_some() as u8);
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k);
            if let Some(v) = v {
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
        }
        if matches!(self.kind, CommandKind::Ingest | CommandKind::Shrink) {
            for b in [&self.span.0, &self.span.1] {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
            out.extend_from_slice(&(self.versions.len() as u32).to_le_bytes());
            for v in &self.versions {
                out.extend_from_slice(&(v.key.len() as u32).to_le_bytes());
                out.extend_from_slice(&v.key);
                out.extend_from_slice(&v.ts.wall.to_le_bytes());
                out.extend_from_slice(&v.ts.logical.to_le_bytes());
                out.push(v.value.is_some() as u8);
                if let Some(value) = &v.value {
                    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                    out.extend_from_slice(value);
                }
            }
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Command> {
        let bad = || Error::internal("corrupt raft command");
        let mut pos = 0usize;
        let mut take = |n: usize| -> Result<&[u8]> {
            let s = b.get(pos..pos + n).ok_or_else(bad)?;
            pos += n;
            Ok(s)
        };
        let kind = match take(1)?[0] {
            0 => CommandKind::Write,
            1 => CommandKind::Prepare,
            2 => CommandKind::Commit,
            3 => CommandKind::Abort,
            4 => CommandKind::Ingest,
            5 => CommandKind::Shrink,
            6 => CommandKind::Fence,
            7 => CommandKind::Unfence,
            _ => return Err(bad()),
        };
        let txn = u64::from_le_bytes(take(8)?.try_into().unwrap());
        let proposal = u64::from_le_bytes(take(8)?.try_into().unwrap());
        let wall = u64::from_le_bytes(take(8)?.try_into().unwrap());
        let logical = u32::from_le_bytes(take(4)?.try_into().unwrap());
        let n = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
        let mut writes = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let is_put = take(1)?[0] == 1;
            let klen = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
            let key = take(klen)?.to_vec();
            let value = if is_put {
                let vlen = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
                Some(take(vlen)?.to_vec())
            } else {
                None
            };
            writes.push((key, value));
        }
        let mut cmd = Command {
            kind,
            txn,
            proposal,
            ts: Timestamp::new(wall, logical),
            writes,
            ..Default::default()
        };
        if matches!(kind, CommandKind::Ingest | CommandKind::Shrink) {
            let mut bytes = || -> Result<Vec<u8>> {
                let n = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
                Ok(take(n)?.to_vec())
            };
            cmd.span = (bytes()?, bytes()?);
            let n = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
            cmd.versions.reserve(n.min(1 << 16));
            for _ in 0..n {
                let klen = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
                let key = take(klen)?.to_vec();
                let wall = u64::from_le_bytes(take(8)?.try_into().unwrap());
                let logical = u32::from_le_bytes(take(4)?.try_into().unwrap());
                let value = if take(1)?[0] == 1 {
                    let vlen = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
                    Some(take(vlen)?.to_vec())
                } else {
                    None
                };
                cmd.versions.push(VersionedKeyValue {
                    key,
                    ts: Timestamp::new(wall, logical),
                    value,
                });
            }
        }
        Ok(cmd)
    }
}

/// A write prepared (latched and validated) but not yet committed.
pub struct Prepared {
    pub writes: Vec<KvWrite>,
    /// The lowest timestamp this range lets the transaction commit at (above every read
    /// served here before the writes were latched, and at least the commit timestamp the
    /// coordinator proposed). Durable prepare records keep it: a parallel commit is
    /// implicitly committed only when every participant's is at or below the STAGING
    /// record's timestamp.
    pub ts: Timestamp,
    /// The writes are in a durable prepare record (two-phase commit), which commit and
    /// abort must resolve.
    pub durable: bool,
    /// When this leader learned of it (prepared here, or re-latched after a leader change):
    /// a durable one left alone for long has lost its coordinator.
    pub since: Instant,
}

/// How long a leader remembers that a recoverer prevented a transaction's prepare (far
/// longer than any prepare request can be in flight).
pub const PREVENTED_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// A row lock held longer than this may be taken over by a waiter (its holder is
/// presumed gone: a client that disconnected mid-transaction on another gateway).
pub const LOCK_STALE: std::time::Duration = std::time::Duration::from_secs(5);

/// Index and term every range's log starts after: a replica created with the range's
/// initial voters begins as if it had installed a snapshot at `(RAFT_INIT_INDEX,
/// RAFT_INIT_TERM)` holding the initial configuration and no data. A replica added later
/// starts empty and, needing entries below the leader's first index, is sent a real
/// snapshot (raft-rs never sends entry 1..=RAFT_INIT_INDEX, which no log holds). Same idea
/// as CockroachDB's `RaftInitialLogIndex`.
pub const RAFT_INIT_INDEX: u64 = 5;
pub const RAFT_INIT_TERM: u64 = 5;

/// A range's raft storage: raft-rs's `MemStorage` view of the durable log, plus what a
/// snapshot of the range is made of at the applied index. The driver keeps `applied` and
/// `conf` current as it applies entries; [`raft::Storage::snapshot`] answers with that
/// metadata and no data: the driver fills the data of an outgoing `MsgSnapshot` from the
/// engine ([`super::store::Store`], `export_snapshot`).
pub struct RangeStorage {
    pub mem: MemStorage,
    /// The applied index (the snapshot index raft-rs is offered).
    pub applied: Cell<u64>,
    /// The configuration as of `applied`.
    pub conf: RefCell<ConfState>,
    /// `(index, term)` of the last entry the log was truncated after: `MemStorage`
    /// forgets that term on `compact`, yet raft asks for it (the entry before the first
    /// one it holds), and a snapshot at the applied index may be exactly there.
    pub compacted: Cell<(u64, u64)>,
}

impl RangeStorage {
    pub fn wl(&self) -> std::sync::RwLockWriteGuard<'_, raft::storage::MemStorageCore> {
        self.mem.wl()
    }

    /// Drops the entries before `below`, remembering the term of the one before it.
    pub fn compact(&self, below: u64) -> raft::Result<()> {
        let term = raft::Storage::term(self, below - 1)?;
        self.mem.wl().compact(below)?;
        self.compacted.set((below - 1, term));
        Ok(())
    }

    pub fn rl(&self) -> std::sync::RwLockReadGuard<'_, raft::storage::MemStorageCore> {
        self.mem.rl()
    }
}

impl raft::Storage for RangeStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let (at, term) = self.compacted.get();
        if idx == at && at != 0 {
            return Ok(term);
        }
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let index = self.applied.get();
        if index < request_index.max(RAFT_INIT_INDEX) {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let term = raft::Storage::term(self, index)?;
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf.borrow().clone());
        Ok(snap)
    }
}

pub struct Replica {
    pub id: RangeId,
    pub raw: RefCell<RawNode<RangeStorage>>,
    /// Commands waiting to be proposed by the raft driver.
    pub queue: RefCell<Vec<Vec<u8>>>,
    /// Membership changes waiting to be proposed by the raft driver.
    pub conf_queue: RefCell<Vec<ConfChangeV2>>,
    /// Outcomes of snapshots sent (`(to, delivered)`), reported to raft by the driver.
    pub snap_reports: RefCell<Vec<(u64, bool)>>,
    /// Proposal id → who waits for its application.
    pub waiters: RefCell<HashMap<u64, LocalSender<Result<()>>>>,
    /// Latched keys → the transaction holding them.
    pub latches: RefCell<HashMap<Vec<u8>, TxnId>>,
    /// Row locks (in memory, on the leaseholder): key → the transaction that will write
    /// it and since when. Taken by UPDATE/DELETE/SELECT FOR UPDATE before reading the
    /// row, so that conflicting writers queue instead of failing at commit; released when
    /// the transaction commits or aborts on this range, or by `ReleaseLocks`. Advisory:
    /// commits still validate (a lock lost with a leader change, or taken over after
    /// [`LOCK_STALE`], costs a 40001, never correctness).
    pub locks: RefCell<HashMap<Vec<u8>, (TxnId, std::time::Instant)>>,
    pub prepared: RefCell<HashMap<TxnId, Prepared>>,
    /// Transactions a recoverer found not prepared here (`KvRequest::Recover`) and since
    /// when: their prepare is refused from then on. In memory on the leader; entries are
    /// forgotten after [`PREVENTED_FOR`].
    pub prevented: RefCell<HashMap<TxnId, Instant>>,
    /// The highest timestamp any read of this range was served at: commits go above it.
    pub max_read_ts: Cell<Timestamp>,
    /// The highest timestamp any write of this range committed at.
    pub max_write_ts: Cell<Timestamp>,
    pub applied: Cell<u64>,
    /// Entries up to here are dropped from the raft log (durably applied before).
    pub truncated: Cell<u64>,
    /// `(index, term)` of the last snapshot installed (or the start of the log), kept in
    /// the range's [`RaftStateRecord`].
    pub snap_point: Cell<(u64, u64)>,
    /// The keys this replica serves, `[start, end)`; requests for others get
    /// `RangeKeyMismatch`. Empty for a split-off range not (or no longer) described.
    pub span: RefCell<(Vec<u8>, Vec<u8>)>,
    /// While a split moves `[fence, span end)` away, requests touching it wait. Set when
    /// a `Fence` command applies (and on the leader already when it proposes one, so no
    /// second split starts meanwhile); lifted by `Unfence` or `Shrink`.
    pub fence: RefCell<Option<Vec<u8>>>,
    /// The kind of the fence and since when this replica knows it (a fence left behind by
    /// a gateway that died is resolved after a while: `split::resolve_fence`).
    pub fence_kind: Cell<FenceKind>,
    pub fence_since: Cell<Option<std::time::Instant>>,
    /// The last log index when the store opened: entries up to it come from before the
    /// restart.
    pub recovered_up_to: Cell<u64>,
    /// Raft messages from other nodes, stepped by the raft driver before its next `ready`.
    pub inbox: RefCell<Vec<Message>>,
    /// As leader: the index of the first entry of its term. It serves requests once it has
    /// applied that far (everything earlier leaders committed is applied then).
    pub term_start: Cell<u64>,
    /// Whether the replica was leader at the last `Ready` (to notice changes).
    pub was_leader: Cell<bool>,
    /// The term and vote last written to the durable log.
    pub persisted_term_vote: Cell<(u64, u64)>,
    /// As leader of a replicated range: until when no other replica can have been elected
    /// ([`LEASE`] after the start of the last ReadIndex round a quorum confirmed).
    pub lease_until: Cell<Option<Instant>>,
    /// The start of the ReadIndex round in flight, if any.
    pub lease_round: Cell<Option<Instant>>,
    /// When this leader last handed leadership to the range's preferred node.
    pub last_transfer: Cell<Option<Instant>>,
    /// As a new leader of a replicated range: the durable prepare records of the range's
    /// two-phase transactions are latched again (they lived in the previous leader's
    /// memory). It serves nothing before.
    pub relatched: Cell<bool>,
    /// Opened from the log at a restart and not latched again since: the prepares
    /// `relatch` finds are from before the restart.
    pub restarted: Cell<bool>,
    /// Size and load, for splits ([`super::range_stats`]).
    pub stats: super::range_stats::RangeStats,
    /// Queued for the raft driver's next round ([`super::store::Store`] drives only the
    /// replicas something happened to).
    pub dirty: Cell<bool>,
    /// Idle and caught up everywhere: neither ticked nor heartbeating until a request, a
    /// raft message or the loss of its leader's node wakes it (see `Store::quiesce`).
    pub quiesced: Cell<bool>,
    /// A leader's quiesce heartbeat (term, leader, commit), judged once it is stepped.
    pub quiesce_offer: Cell<Option<(u64, u64, u64)>>,
    /// The store's tick count when a request last came for this range (a leader quiesces
    /// only after `QUIESCE_TICKS` without one).
    pub active_tick: Cell<u64>,
    /// Bumped whenever latches are released or a fence is lifted; waiters park on it.
    latch_gen: Cell<u64>,
    latch_waiters: RefCell<Vec<std::task::Waker>>,
    /// Raft messages delivered from other nodes so far: replica GC destroys a replica only
    /// if none came between asking the range's leader and acting on its answer.
    pub msgs_in: Cell<u64>,
    /// Since when this replica has known no leader (or been outside its own group's
    /// configuration), as the GC queue last saw it ([`super::replica_gc`]).
    pub leaderless_since: Cell<Option<Instant>>,
    /// When the GC queue last found this replica still a member (asked no sooner again
    /// than [`super::replica_gc::RECHECK`]).
    pub gc_checked: Cell<Option<Instant>>,
}

/// Raft ticks: every replica ticks this often.
pub const TICK: Duration = Duration::from_millis(100);
/// Ticks without hearing from a leader before a follower campaigns (and, with
/// check-quorum, before it will vote for anyone else).
pub const ELECTION_TICKS: usize = 10;
/// How long a confirmed leadership round protects reads. A follower that acknowledged a
/// round started at `t` heard from the leader after `t`, and with check-quorum refuses to
/// vote for another candidate until `ELECTION_TICKS` of its ticks pass without hearing
/// from it again — at least `ELECTION_TICKS - 1` tick intervals of real time (its first
/// tick may come at once). One more tick is kept as margin (the nodes share a clock
/// source here; across machines the clock-rate bound would come off this too).
pub const LEASE: Duration = Duration::from_millis(100 * (ELECTION_TICKS as u64 - 2));

/// Process-wide origin of ReadIndex contexts (an `Instant` as nanoseconds since it).
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The ReadIndex context for a round started at `t`.
pub fn lease_context(t: Instant) -> Vec<u8> {
    (t.saturating_duration_since(epoch()).as_nanos() as u64)
        .to_le_bytes()
        .to_vec()
}

/// The start of the round a ReadIndex context names.
pub fn lease_context_time(ctx: &[u8]) -> Option<Instant> {
    let nanos = u64::from_le_bytes(ctx.try_into().ok()?);
    Some(epoch() + Duration::from_nanos(nanos))
}

/// Where a replica's raft group lives: this node's id and the voters' ids.
#[derive(Clone, Debug)]
pub struct Membership {
    pub node: u64,
    pub voters: Vec<u64>,
}

/// True when the group is this one voter (no lease needed: nobody else can be elected).
pub fn is_single(raw: &RawNode<RangeStorage>) -> bool {
    raw.raft.prs().iter().count() == 1
}

pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl Replica {
    /// Creates (or recovers) the replica of `id` on node `node`: `entries` and
    /// `hard_state` come from the durable log, `truncated` is the `(index, term)` below the
    /// first entry (a log truncation, a snapshot, or the [`RAFT_INIT_INDEX`] seed; `(0, 0)`
    /// for a replica that knows nothing yet and waits for a snapshot), `conf` the group's
    /// configuration as of `applied` (empty: not initialized), `applied` comes from the
    /// engine. A single voter campaigns at once (it elects itself); in a larger group,
    /// `campaign` asks for an election now instead of after a timeout.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: RangeId,
        node: u64,
        hard_state: Option<HardState>,
        truncated: (u64, u64),
        entries: Vec<Entry>,
        applied: u64,
        conf: ConfState,
        campaign: bool,
    ) -> Result<Replica> {
        let storage = MemStorage::new();
        {
            let mut w = storage.wl();
            w.set_conf_state(conf.clone());
            if truncated.0 > 0 {
                // The dropped prefix was applied durably: start the log after it.
                let mut snap = Snapshot::default();
                snap.mut_metadata().index = truncated.0;
                snap.mut_metadata().term = truncated.1;
                snap.mut_metadata().set_conf_state(conf.clone());
                w.apply_snapshot(snap)
                    .map_err(|e| Error::internal(format!("raft recover {id}: {e}")))?;
            }
            if !entries.is_empty() {
                w.append(&entries)
                    .map_err(|e| Error::internal(format!("raft recover {id}: {e}")))?;
            }
            if let Some(mut hs) = hard_state {
                hs.commit = hs.commit.max(truncated.0);
                hs.term = hs.term.max(truncated.1);
                w.set_hardstate(hs);
            }
        }
        // Entries the engine applied were committed, whatever commit index the log last
        // recorded (commit-only hard states are not synced: `Store::drive_once`).
        {
            let last = raft::Storage::last_index(&storage)
                .map_err(|e| Error::internal(format!("raft recover {id}: {e}")))?;
            let mut w = storage.wl();
            let mut hs = w.hard_state().clone();
            let known = applied.min(last);
            if known > hs.commit {
                hs.commit = known;
                w.set_hardstate(hs);
            }
        }
        let persisted_term_vote = {
            let r = storage.rl();
            (r.hard_state().term, r.hard_state().vote)
        };
        let applied = applied
            .max(truncated.0)
            .min(storage.rl().hard_state().commit);
        let cfg = Config {
            id: node,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: 3,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let single = conf.voters == [node] && conf.learners.is_empty();
        let voter = conf.voters.contains(&node);
        let storage = RangeStorage {
            compacted: Cell::new((0, 0)),
            mem: storage,
            applied: Cell::new(applied),
            conf: RefCell::new(conf),
        };
        let mut raw = RawNode::new(&cfg, storage, &raft_logger())
            .map_err(|e| Error::internal(format!("raft init {id}: {e}")))?;
        if voter && (single || campaign) {
            raw.campaign()
                .map_err(|e| Error::internal(format!("raft campaign {id}: {e}")))?;
        }
        let leads = raw.raft.state == raft::StateRole::Leader;
        let term_start = if leads {
            raw.raft.raft_log.last_index()
        } else {
            u64::MAX
        };
        Ok(Replica {
            id,
            raw: RefCell::new(raw),
            queue: RefCell::new(Vec::new()),
            conf_queue: RefCell::new(Vec::new()),
            snap_reports: RefCell::new(Vec::new()),
            waiters: RefCell::new(HashMap::new()),
            latches: RefCell::new(HashMap::new()),
            locks: RefCell::new(HashMap::new()),
            prepared: RefCell::new(HashMap::new()),
            prevented: RefCell::new(HashMap::new()),
            max_read_ts: Cell::new(Timestamp::MIN),
            max_write_ts: Cell::new(Timestamp::MIN),
            applied: Cell::new(applied),
            truncated: Cell::new(truncated.0),
            snap_point: Cell::new(truncated),
            span: RefCell::new(super::keys::initial_span(id).unwrap_or_default()),
            fence: RefCell::new(None),
            fence_kind: Cell::new(FenceKind::Split),
            fence_since: Cell::new(None),
            recovered_up_to: Cell::new(0),
            inbox: RefCell::new(Vec::new()),
            term_start: Cell::new(term_start),
            was_leader: Cell::new(leads),
            persisted_term_vote: Cell::new(persisted_term_vote),
            lease_until: Cell::new(None),
            lease_round: Cell::new(None),
            last_transfer: Cell::new(None),
            relatched: Cell::new(true),
            restarted: Cell::new(false),
            stats: Default::default(),
            dirty: Cell::new(false),
            quiesced: Cell::new(false),
            quiesce_offer: Cell::new(None),
            active_tick: Cell::new(0),
            latch_gen: Cell::new(0),
            latch_waiters: RefCell::new(Vec::new()),
            msgs_in: Cell::new(0),
            leaderless_since: Cell::new(None),
            gc_checked: Cell::new(None),
        })
    }

    /// The voters of the configuration this replica applied last (both halves of a joint
    /// configuration).
    pub fn voters(&self) -> Vec<u64> {
        let raw = self.raw.borrow();
        let conf = raw.store().conf.borrow();
        let mut v: Vec<u64> = conf.voters.clone();
        for n in &conf.voters_outgoing {
            if !v.contains(n) {
                v.push(*n);
            }
        }
        v.sort_unstable();
        v
    }

    /// Whether this replica may serve requests: it leads, is not handing leadership over
    /// (the new leader may serve as soon as it is elected), and has applied every entry
    /// committed before its term.
    pub fn serving(&self) -> bool {
        let raw = self.raw.borrow();
        raw.raft.state == raft::StateRole::Leader
            && raw.raft.lead_transferee.is_none()
            && self.applied.get() >= self.term_start.get()
            && self.relatched.get()
            && (is_single(&raw) || self.lease_until.get().is_some_and(|t| Instant::now() < t))
    }

    /// The leader this replica knows of (0: none).
    pub fn leader_hint(&self) -> u64 {
        self.raw.borrow().raft.leader_id
    }

    /// True when this replica serves `key`.
    pub fn owns(&self, key: &[u8]) -> bool {
        let span = self.span.borrow();
        span.0.as_slice() <= key && key < span.1.as_slice()
    }

    /// True when this replica serves all of `[start, end)`.
    pub fn owns_span(&self, start: &[u8], end: &[u8]) -> bool {
        let span = self.span.borrow();
        span.0.as_slice() <= start && end <= span.1.as_slice() && start < end
    }

    /// Sets (or, with `None`, lifts) the fence as a `Fence`, `Unfence` or `Shrink`
    /// command, a snapshot or a restart says; waiters look again.
    pub fn set_fence_state(&self, fence: Option<(FenceKind, Vec<u8>)>) {
        match fence {
            Some((kind, key)) => {
                let same = self.fence.borrow().as_deref() == Some(key.as_slice())
                    && self.fence_kind.get() == kind;
                if !same || self.fence_since.get().is_none() {
                    self.fence_since.set(Some(std::time::Instant::now()));
                }
                self.fence_kind.set(kind);
                *self.fence.borrow_mut() = Some(key);
            }
            None => {
                *self.fence.borrow_mut() = None;
                self.fence_since.set(None);
            }
        }
        self.latches_changed();
    }

    /// True when a split is moving `key` away.
    pub fn fenced(&self, key: &[u8]) -> bool {
        self.fence
            .borrow()
            .as_ref()
            .is_some_and(|f| f.as_slice() <= key)
    }

    /// True when a split is moving a key of `[start, end)` away.
    pub fn fenced_span(&self, _start: &[u8], end: &[u8]) -> bool {
        self.fence
            .borrow()
            .as_ref()
            .is_some_and(|f| f.as_slice() < end)
    }

    /// True when a key in `[start, end)` is latched by a prepared transaction.
    pub fn span_latched(&self, start: &[u8], end: &[u8]) -> bool {
        self.latches
            .borrow()
            .keys()
            .any(|k| k.as_slice() >= start && k.as_slice() < end)
    }

    pub fn key_latched(&self, key: &[u8]) -> bool {
        self.latches.borrow().contains_key(key)
    }

    /// A transaction other than `txn` that latches `key` or a key of `[key, end)` and may
    /// commit at or below `below` (a prepared transaction whose lowest commit timestamp is
    /// above it cannot write under a read at `below`).
    pub fn latched_by_other(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
        txn: TxnId,
        below: Timestamp,
    ) -> Option<TxnId> {
        let latches = self.latches.borrow();
        let prepared = self.prepared.borrow();
        // A prepared transaction's `ts` is a lower bound of its commit timestamp.
        let relevant = |t: TxnId| t != txn && prepared.get(&t).is_none_or(|p| p.ts <= below);
        match end {
            None => latches.get(key).copied().filter(|t| relevant(*t)),
            Some(end) => latches
                .iter()
                .find(|(k, t)| relevant(**t) && k.as_slice() >= key && k.as_slice() < end)
                .map(|(_, t)| *t),
        }
    }

    /// True when `txn` holds its latches through a two-phase commit (it may be waiting on
    /// other ranges meanwhile).
    pub fn is_two_phase(&self, txn: TxnId) -> bool {
        self.prepared.borrow().get(&txn).is_some_and(|p| p.durable)
    }

    /// The lowest commit timestamp of `txn`'s prepared writes here, if it prepared.
    pub fn prepared_ts(&self, txn: TxnId) -> Option<Timestamp> {
        self.prepared.borrow().get(&txn).map(|p| p.ts)
    }

    /// Remembers that `txn` must not prepare here any more (a recoverer decided it).
    pub fn prevent(&self, txn: TxnId) {
        let mut p = self.prevented.borrow_mut();
        if p.len() > 1024 {
            p.retain(|_, since| since.elapsed() < PREVENTED_FOR);
        }
        p.insert(txn, Instant::now());
    }

    pub fn is_prevented(&self, txn: TxnId) -> bool {
        self.prevented.borrow().contains_key(&txn)
    }

    /// Records a read at `ts`. Reads at `Timestamp::MAX` (internal "read the latest"
    /// lookups, outside any transaction) do not count: no commit could go above them.
    pub fn bump_read_ts(&self, ts: Timestamp) {
        if ts > self.max_read_ts.get() && ts != Timestamp::MAX {
            self.max_read_ts.set(ts);
        }
    }

    /// True when another transaction holds the lock on `key` (and has not held it longer
    /// than [`LOCK_STALE`]: an abandoned lock may be taken over).
    pub fn locked_by_other(&self, key: &[u8], txn: TxnId) -> bool {
        self.locks
            .borrow()
            .get(key)
            .is_some_and(|(holder, since)| *holder != txn && since.elapsed() < LOCK_STALE)
    }

    /// Takes the lock on `key` for `txn` (the caller checked [`Replica::locked_by_other`]).
    pub fn take_lock(&self, key: &[u8], txn: TxnId) {
        let mut locks = self.locks.borrow_mut();
        match locks.get_mut(key) {
            Some(held) if held.0 == txn => {}
            Some(held) => *held = (txn, std::time::Instant::now()),
            None => {
                locks.insert(key.to_vec(), (txn, std::time::Instant::now()));
            }
        }
    }

    /// Releases every lock `txn` holds here and wakes the waiters.
    pub fn release_locks(&self, txn: TxnId) {
        let mut any = false;
        self.locks.borrow_mut().retain(|_, (holder, _)| {
            let mine = *holder == txn;
            any |= mine;
            !mine
        });
        if any {
            self.latches_changed();
        }
    }

    pub fn release(&self, txn: TxnId) -> Option<Prepared> {
        self.release_locks(txn);
        let p = self.prepared.borrow_mut().remove(&txn)?;
        {
            let mut latches = self.latches.borrow_mut();
            for w in &p.writes {
                if latches.get(w.key()) == Some(&txn) {
                    latches.remove(w.key());
                }
            }
        }
        self.latches_changed();
        Some(p)
    }

    /// Wakes every request waiting for latches or a fence on this range: something was
    /// released; each re-checks what it waits for.
    pub fn latches_changed(&self) {
        self.latch_gen.set(self.latch_gen.get() + 1);
        for w in self.latch_waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Waits until [`Replica::latches_changed`] runs, or `at_most` passes.
    /// PERF: conflicting requests park instead of polling with timers (every poll was a
    /// timer, a park and a wake-up of the executor).
    pub async fn latch_release(&self, at_most: Duration) {
        let seen = self.latch_gen.get();
        let changed = std::future::poll_fn(|cx| {
            if self.latch_gen.get() != seen {
                std::task::Poll::Ready(())
            } else {
                self.latch_waiters.borrow_mut().push(cx.waker().clone());
                std::task::Poll::Pending
            }
        });
        let expire = async {
            glommio::timer::sleep(at_most).await;
        };
        futures_lite::future::or(changed, expire).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After the log is truncated, raft still learns the term of the entry before the
    /// first one kept, and a snapshot at an applied index exactly there can be taken (it
    /// used to fail with `Compacted`, which raft-rs treats as fatal: the node died when
    /// an idle range, truncated up to what it applied, had to send a snapshot).
    #[test]
    fn truncation_keeps_the_term_raft_asks_for() {
        let storage = RangeStorage {
            compacted: Cell::new((0, 0)),
            mem: MemStorage::new(),
            applied: Cell::new(7),
            conf: RefCell::new(ConfState::from((vec![1], vec![]))),
        };
        let entries: Vec<Entry> = (1..=10)
            .map(|i| Entry {
                index: i,
                term: 1 + i / 5,
                ..Default::default()
            })
            .collect();
        storage.wl().append(&entries).unwrap();
        storage.compact(8).unwrap();
        assert_eq!(raft::Storage::first_index(&storage).unwrap(), 8);
        assert_eq!(raft::Storage::term(&storage, 7).unwrap(), 2);
        assert_eq!(raft::Storage::term(&storage, 8).unwrap(), 2);
        assert!(raft::Storage::term(&storage, 6).is_err());
        let snap = raft::Storage::snapshot(&storage, 0, 2).unwrap();
        assert_eq!(
            (snap.get_metadata().index, snap.get_metadata().term),
            (7, 2)
        );
    }

    #[test]
    fn command_round_trip() {
        let c = Command {
            kind: CommandKind::Prepare,
            txn: 42,
            proposal: 7,
            ts: Timestamp::new(99, 3),
            writes: vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), None)],
            ..Default::default()
        };
        assert_eq!(Command::decode(&c.encode()).unwrap(), c);
        assert!(Command::decode(&c.encode()[..10]).is_err());
        let ingest = Command {
            kind: CommandKind::Ingest,
            proposal: 8,
            span: (b"k".to_vec(), b"z".to_vec()),
            versions: vec![
                VersionedKeyValue {
                    key: b"m".to_vec(),
                    ts: Timestamp::new(5, 1),
                    value: Some(b"v".to_vec()),
                },
                VersionedKeyValue {
                    key: b"m".to_vec(),
                    ts: Timestamp::new(4, 0),
                    value: None,
                },
            ],
            ..Default::default()
        };
        let bytes = ingest.encode();
        assert_eq!(Command::decode(&bytes).unwrap(), ingest);
        assert!(Command::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
