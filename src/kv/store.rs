//! The per-core store: the core's ranges, its engine and its raft log, the raft driver that
//! batches every range's `Ready` into one log append (one fdatasync), and the evaluation of
//! KV requests on the ranges this core leads.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chitin_storage::{Engine, RangeId, ScanOptions, Timestamp, VersionedKeyValue, WriteBatch};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use raft::prelude::*;

use super::deadlock::{stop_waiting, waits_for};
use super::engine::{EngineKind, StoreEngine};
use super::keys;
use super::replica::{
    decode_fence, encode_fence, fence_record_key, prepare_record_key, raft_state_key, Command,
    CommandKind, FenceKind, Membership, Prepared, RaftStateRecord, RangeStorage, Replica,
    FENCE_PREFIX, GONE_PREFIX, PREPARE_PREFIX, RAFT_INIT_INDEX, RAFT_INIT_TERM, RAFT_STATE_PREFIX,
};
use super::LockWait;
use super::{KvRequest, KvResponse, KvWrite, ReadResult, TxnId, Uncertain};
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::CoreMetrics;
use crate::raftlog::DurableLog;
use crate::txn::Hlc;

/// How long a request waits for latched keys before giving up with a retryable error.
const LATCH_WAIT: Duration = Duration::from_secs(2);

/// The longest a row-lock request waits (then 40001): a lock held longer than
/// [`crate::kv::replica::LOCK_STALE`] is taken over, after the latch wait.
pub const LOCK_WAIT_MAX: Duration = crate::kv::replica::LOCK_STALE.saturating_add(LATCH_WAIT);

/// How long a [`LockWait::Slice`] request waits before answering `LockWaitSlice`: well
/// inside the gateway's [`crate::node::FORWARD_TIMEOUT`].
pub const LOCK_SLICE: Duration = Duration::from_secs(1);

/// The longest a latch waiter sleeps between checks when no release wakes it (a safety
/// net: every release and fence lift wakes the waiters at once).
const LATCH_POLL: Duration = Duration::from_millis(20);

pub struct Store {
    pub core: usize,
    pub ncores: usize,
    engine: RefCell<Option<Rc<StoreEngine>>>,
    log: DurableLog,
    replicas: RefCell<HashMap<RangeId, Rc<Replica>>>,
    /// Key → timestamp of its newest committed write since this process started (write-write
    /// conflict detection; older writes are below every live transaction's read timestamp).
    last_write: RefCell<HashMap<Vec<u8>, Timestamp>>,
    wake_tx: LocalSender<()>,
    wake_rx: RefCell<Option<LocalReceiver<()>>>,
    next_proposal: Cell<u64>,
    pub hlc: Arc<Hlc>,
    pub metrics: Arc<CoreMetrics>,
    stopping: Cell<bool>,
    /// Set when the raft driver failed: the store refuses further writes.
    fatal: RefCell<Option<String>>,
    /// This node's id and the voters of every range; `None` until the node joins a
    /// cluster (no range is served before).
    membership: RefCell<Option<Membership>>,
    /// Cores per node (a range's replica lives on core `range % cores` of each node).
    node_cores: RefCell<HashMap<u64, usize>>,
    /// Raft messages to other nodes go out through this core's transport.
    transport: RefCell<Option<chitin_net::Transport>>,
    /// `MsgSnapshot`s raft produced, waiting for their data (sent by the raft loop).
    outgoing_snapshots: RefCell<Vec<(RangeId, Message)>>,
    /// Nodes leadership moves away from (dead or decommissioning: the allocator's view).
    avoid: RefCell<std::collections::HashSet<u64>>,
    /// The node drains: leaders hand leadership to another voter (set by
    /// `node::cluster::follow` from [`crate::node::NodeShared::draining`]).
    pub draining: Cell<bool>,
    /// Ranges the raft driver's next round looks at (each once: `Replica::dirty`).
    dirty: RefCell<Vec<RangeId>>,
    /// Raft ticks since the store opened.
    ticks: Cell<u64>,
    /// Nodes this node has not heard from lately: a quiesced follower whose leader is on
    /// one wakes up, to elect another (set by `node::cluster::follow`).
    unreachable: RefCell<std::collections::HashSet<u64>>,
    /// `(draining, avoid)` at the last tick: a change wakes quiesced leaders, which may
    /// have to hand leadership over.
    placement_seen: RefCell<(bool, Vec<u64>)>,
    /// When the store opened: prepares a range latches again soon after are from before
    /// the restart ([`RESTART_PREPARES`]).
    opened_at: Instant,
    /// Ranges whose replica here was destroyed by replica GC ([`super::replica::GONE_PREFIX`]).
    gone: RefCell<std::collections::HashSet<RangeId>>,
    /// Streamed snapshots being received ([`super::snapshot`]).
    spools: RefCell<super::snapshot::Spools>,
    /// Raft rounds and log truncations in progress (they hold replicas across awaits):
    /// replica GC destroys a replica only between them.
    busy: Cell<u32>,
}

/// Counts one holder of [`Store::busy`] while it lives.
struct Busy<'a>(&'a Cell<u32>);

impl<'a> Busy<'a> {
    fn new(c: &'a Cell<u32>) -> Busy<'a> {
        c.set(c.get() + 1);
        Busy(c)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Ticks (100 ms) without a request before an idle, caught-up range quiesces.
pub const QUIESCE_TICKS: u64 = 30;

/// The context of a leader's quiesce heartbeat (and of its followers' answers).
const QUIESCE_CONTEXT: &[u8] = b"quiesce";

/// Whether `msg` is a quiesce heartbeat (`Some(true)`), an answer to one (`Some(false)`)
/// or neither.
fn quiesce_message(msg: &Message) -> Option<bool> {
    if msg.context != QUIESCE_CONTEXT {
        return None;
    }
    match msg.get_msg_type() {
        MessageType::MsgHeartbeat => Some(true),
        MessageType::MsgHeartbeatResponse => Some(false),
        _ => None,
    }
}

impl Store {
    /// Opens the core's store under `dir` and recovers every range its raft log holds,
    /// replaying committed entries above each range's applied index.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        core: usize,
        ncores: usize,
        dir: PathBuf,
        hlc: Arc<Hlc>,
        metrics: Arc<CoreMetrics>,
        engine_kind: EngineKind,
        cache_bytes: usize,
        membership: Option<Membership>,
    ) -> Result<Rc<Store>> {
        let log = DurableLog::open(&dir.join("raft")).await?;
        let engine = StoreEngine::open(engine_kind, &dir.join("engine"), cache_bytes).await?;
        let (wake_tx, wake_rx) = local_channel::new_unbounded();
        let store = Rc::new(Store {
            core,
            ncores,
            engine: RefCell::new(Some(Rc::new(engine))),
            log,
            replicas: RefCell::new(HashMap::new()),
            last_write: RefCell::new(HashMap::new()),
            wake_tx,
            wake_rx: RefCell::new(Some(wake_rx)),
            // Past the ids this node used before a restart (they grow far slower than the
            // clock; the low 48 bits wrap every 78 hours): an entry from then that
            // applies now wakes nobody new.
            next_proposal: Cell::new(hlc.now().wall),
            hlc,
            metrics,
            stopping: Cell::new(false),
            fatal: RefCell::new(None),
            membership: RefCell::new(membership.clone()),
            node_cores: RefCell::new(HashMap::new()),
            transport: RefCell::new(None),
            outgoing_snapshots: RefCell::new(Vec::new()),
            avoid: RefCell::new(Default::default()),
            draining: Cell::new(false),
            dirty: RefCell::new(Vec::new()),
            ticks: Cell::new(0),
            unreachable: RefCell::new(Default::default()),
            placement_seen: RefCell::new((false, Vec::new())),
            opened_at: Instant::now(),
            gone: RefCell::new(Default::default()),
            busy: Cell::new(0),
            spools: RefCell::new(super::snapshot::Spools::new(dir.join("snapshots"))?),
        });
        let recovered = store.log.recover().await?;
        // Raft-state records: each range's configuration and last snapshot.
        let mut states = HashMap::new();
        {
            let end = keys::prefix_end(RAFT_STATE_PREFIX);
            for (key, value) in store.engine()?.scan_locks(RAFT_STATE_PREFIX, &end).await? {
                let Some(id) = key
                    .get(RAFT_STATE_PREFIX.len()..)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                else {
                    return Err(Error::internal("corrupt raft state record key"));
                };
                states.insert(RangeId(id), RaftStateRecord::decode(&value)?);
            }
            let end = keys::prefix_end(GONE_PREFIX);
            for (key, _) in store.engine()?.scan_locks(GONE_PREFIX, &end).await? {
                let id = key
                    .get(GONE_PREFIX.len()..)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| Error::internal("corrupt destroyed-replica record key"))?;
                store.gone.borrow_mut().insert(RangeId(id));
            }
        }
        let members = match (&membership, recovered.is_empty() && states.is_empty()) {
            (Some(m), _) => m.clone(),
            (None, true) => return Ok(store),
            (None, false) => {
                return Err(Error::internal(
                    "the store holds ranges but the node has no cluster state",
                ))
            }
        };
        let mut seen = std::collections::HashSet::new();
        for rec in recovered {
            seen.insert(rec.range);
            let applied = store.engine()?.applied_index(rec.range).unwrap_or(0);
            let state = states.get(&rec.range);
            let mut truncated = rec.truncated;
            if let Some(st) = state.filter(|st| st.snap_index >= truncated.0) {
                // The last snapshot is at or past the log's start: the log's entries from
                // before it are stale (a crash between installing it and truncating).
                if st.snap_index > truncated.0 || truncated.1 == 0 || truncated.0 == 0 {
                    truncated = (st.snap_index, st.snap_term);
                }
            } else if truncated.0 == RAFT_INIT_INDEX
                && rec
                    .entries
                    .first()
                    .is_some_and(|e| e.index == RAFT_INIT_INDEX + 1)
            {
                truncated.1 = RAFT_INIT_TERM;
            }
            // A log that starts after the seed has nothing below it to apply.
            let applied = if truncated.0 == RAFT_INIT_INDEX {
                applied.max(RAFT_INIT_INDEX)
            } else {
                applied
            };
            if applied < truncated.0 {
                return Err(Error::internal(format!(
                    "raft log of {} was truncated to {} but the engine applied only {applied}",
                    rec.range, truncated.0
                )));
            }
            let entries: Vec<Entry> = rec
                .entries
                .into_iter()
                .filter(|e| e.index > truncated.0)
                .collect();
            let conf = match state {
                Some(st) => st.conf.clone(),
                None => ConfState::from((members.voters.clone(), vec![])),
            };
            let replica = Replica::new(
                rec.range,
                members.node,
                rec.hard_state,
                truncated,
                entries,
                applied,
                conf,
                false,
            )?;
            store
                .replicas
                .borrow_mut()
                .insert(rec.range, Rc::new(replica));
        }
        // Ranges that installed a snapshot and appended nothing since.
        for (range, st) in states {
            if seen.contains(&range) || st.snap_index == 0 {
                continue;
            }
            let applied = store.engine()?.applied_index(range).unwrap_or(0);
            let replica = Replica::new(
                range,
                members.node,
                None,
                (st.snap_index, st.snap_term),
                Vec::new(),
                applied,
                st.conf,
                false,
            )?;
            store.replicas.borrow_mut().insert(range, Rc::new(replica));
        }
        // Fences of splits and merges that were in progress (resolved by the gateway that
        // runs them, or after a while by `split::resolve_fence`).
        {
            let end = keys::prefix_end(FENCE_PREFIX);
            let fences = store.engine()?.scan_locks(FENCE_PREFIX, &end).await?;
            let replicas = store.replicas.borrow();
            for (key, value) in fences {
                let id = key
                    .get(FENCE_PREFIX.len()..)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| Error::internal("corrupt fence record key"))?;
                if let Some(r) = replicas.get(&RangeId(id)) {
                    r.set_fence_state(Some(decode_fence(&value)?));
                }
            }
        }
        // A split or merge this restart cut short (its steps on the range failed
        // meanwhile) is resolved at once: a fence from the lock table here, one that
        // comes back with the log when its entry applies (`Store::apply`).
        for r in store.replicas.borrow().values() {
            // The log may hold prepares the engine has not applied yet (entries a crash
            // left without a durable commit index commit again under the next leader):
            // a range serves only once it applied them and latched every prepare record
            // (`relatch`), single-replica ranges too.
            r.relatched.set(false);
            r.restarted.set(true);
            r.recovered_up_to
                .set(r.raw.borrow().raft.raft_log.last_index());
            if let Some(at) = r.fence.borrow().as_deref() {
                eprintln!(
                    "core {core}: {} holds a {:?} fence at {} from before the restart",
                    r.id,
                    r.fence_kind.get(),
                    keys::pretty_key_suffix(at)
                );
                r.fence_since.set(fence_long_ago());
            }
        }
        // Apply what the log holds before serving anything.
        store.drive_once().await?;
        Ok(store)
    }

    /// Adopts the node's cluster membership (once it joined) and the peers' core counts;
    /// raft messages then go out through `transport`.
    pub fn set_cluster(
        &self,
        membership: Membership,
        node_cores: HashMap<u64, usize>,
        transport: chitin_net::Transport,
    ) {
        *self.membership.borrow_mut() = Some(membership);
        *self.node_cores.borrow_mut() = node_cores;
        *self.transport.borrow_mut() = Some(transport);
    }

    /// The replica of `range`, created on first use (this core must own the range). A
    /// replica created for a local request campaigns at once, one created for a message
    /// from another node waits for that node's leader.
    fn replica(&self, range: RangeId) -> Result<Rc<Replica>> {
        self.replica_for(range, true)
    }

    /// Whether this core holds a replica of `range` (initialized or not).
    pub fn has_replica(&self, range: RangeId) -> bool {
        self.replicas.borrow().contains_key(&range)
    }

    /// Whether a local request may bring `range` into being here: ranges are born on the
    /// cluster's initial voters ([`Membership::voters`]); other nodes get replicas only
    /// by being added to a group (and then a snapshot).
    fn may_create(&self, range: RangeId) -> bool {
        self.has_replica(range)
            || self
                .membership
                .borrow()
                .as_ref()
                .is_some_and(|m| m.voters.contains(&m.node))
    }

    fn replica_for(&self, range: RangeId, campaign: bool) -> Result<Rc<Replica>> {
        if let Some(r) = self.replicas.borrow().get(&range) {
            return Ok(r.clone());
        }
        if keys::core_for_range(range, self.ncores) != self.core {
            return Err(Error::internal(format!(
                "range {range} does not live on core {}",
                self.core
            )));
        }
        let members = self.membership.borrow().clone().ok_or_else(|| {
            Error::new(
                ErrorKind::AdminShutdown,
                "the node has not joined a cluster yet (run chitin init)",
            )
        })?;
        let gone = self.gone.borrow().contains(&range);
        let r = if members.voters.contains(&members.node) && !gone {
            // One of the range's initial replicas: it starts from the seed every initial
            // replica shares (unless its replica here was removed from the group and
            // destroyed: then only a leader's snapshot brings it back).
            let conf = ConfState::from((members.voters.clone(), vec![]));
            Replica::new(
                range,
                members.node,
                None,
                (RAFT_INIT_INDEX, RAFT_INIT_TERM),
                Vec::new(),
                RAFT_INIT_INDEX,
                conf,
                campaign,
            )?
        } else if !campaign {
            // Added to the group later: knows nothing until the leader's snapshot.
            Replica::new(
                range,
                members.node,
                None,
                (0, 0),
                Vec::new(),
                0,
                ConfState::default(),
                false,
            )?
        } else {
            return Err(Error::retry(format!(
                "restart transaction: range {range} has no replica on node {}",
                members.node
            )));
        };
        let r = Rc::new(r);
        self.replicas.borrow_mut().insert(range, r.clone());
        self.mark(&r);
        Ok(r)
    }

    /// Queues a raft message from another node for `range`'s replica (created if this is
    /// its first message); the raft driver steps it.
    pub fn deliver(&self, range: RangeId, msg: Message) {
        if keys::core_for_range(range, self.ncores) != self.core {
            return;
        }
        if msg.get_msg_type() == MessageType::MsgSnapshot {
            if let Some((id, chunks, _)) =
                super::snapshot::parse_streamed(msg.get_snapshot().get_data())
            {
                if !self.spools.borrow().complete(range, id, chunks) {
                    // Its chunks are not all here (lost, or from before a restart): raft
                    // sends another snapshot.
                    return;
                }
            }
        }
        if let Ok(r) = self.replica_for(range, false) {
            r.msgs_in.set(r.msgs_in.get() + 1);
            match quiesce_message(&msg) {
                Some(true) => r.quiesce_offer.set(Some((msg.term, msg.from, msg.commit))),
                // An answer to a quiesce heartbeat leaves the leader quiet.
                Some(false) => {}
                None => {
                    r.quiesce_offer.set(None);
                    if r.quiesced.get() {
                        self.unquiesce(&r);
                    }
                }
            }
            r.inbox.borrow_mut().push(msg);
            self.mark(&r);
        }
    }

    /// Queues `r` for the raft driver's next round.
    fn mark(&self, r: &Replica) {
        if !r.dirty.replace(true) {
            self.dirty.borrow_mut().push(r.id);
        }
        self.wake();
    }

    /// Wakes a quiesced replica: it ticks again (and, as leader, heartbeats and renews
    /// its lease), and stays awake for at least `QUIESCE_TICKS`.
    fn unquiesce(&self, r: &Replica) {
        r.quiesced.set(false);
        r.active_tick.set(self.ticks.get());
        self.mark(r);
    }

    /// Records which nodes this node has not heard from lately (quiesced followers of
    /// leaders there wake up at the next tick).
    pub fn set_unreachable(&self, nodes: impl IntoIterator<Item = u64>) {
        let mut u = self.unreachable.borrow_mut();
        u.clear();
        u.extend(nodes);
    }

    /// A leader's quiesce step, at a tick: if `r` has been idle for `QUIESCE_TICKS`, has
    /// nothing in flight, and every replica holds, has committed and applied its whole
    /// log, it stops ticking and tells its followers to stop too: a heartbeat with
    /// `QUIESCE_CONTEXT` and the commit index. A follower quiesces when that heartbeat
    /// finds it in the same term under the same leader with exactly that log, and wakes at
    /// any other raft message or when the leader's node becomes unreachable (so an
    /// election can run). Leases: a quiesced leader's lease lapses (it is renewed only by
    /// heartbeat rounds); the first request wakes it and waits for one round. Ticks only
    /// ever get rarer, so the lease argument ([`super::replica::LEASE`]) still holds.
    /// Returns the heartbeats to send when `r` quiesces.
    fn try_quiesce(&self, r: &Replica, ticks: u64) -> Option<Vec<Message>> {
        if ticks.saturating_sub(r.active_tick.get()) < QUIESCE_TICKS
            || self.draining.get()
            || !r.queue.borrow().is_empty()
            || !r.conf_queue.borrow().is_empty()
            || !r.inbox.borrow().is_empty()
            || !r.snap_reports.borrow().is_empty()
            || !r.waiters.borrow().is_empty()
            || r.fence.borrow().is_some()
            || !r.relatched.get()
        {
            return None;
        }
        let raw = r.raw.borrow();
        if raw.raft.state != raft::StateRole::Leader
            || raw.raft.lead_transferee.is_some()
            || raw.has_ready()
        {
            return None;
        }
        let last = raw.raft.raft_log.last_index();
        if raw.raft.raft_log.committed != last || r.applied.get() != last {
            return None;
        }
        let me = raw.raft.id;
        let mut msgs = Vec::new();
        for (&id, pr) in raw.raft.prs().iter() {
            if id == me {
                continue;
            }
            if pr.matched != last {
                return None;
            }
            let mut m = Message::default();
            m.set_msg_type(MessageType::MsgHeartbeat);
            m.to = id;
            m.from = me;
            m.term = raw.raft.term;
            m.commit = last;
            m.context = QUIESCE_CONTEXT.to_vec();
            msgs.push(m);
        }
        Some(msgs)
    }

    /// Whether this core serves `range` now (leads it, caught up). PERF: the point-read
    /// path checks this before reading in place.
    pub fn serves(&self, range: RangeId) -> bool {
        self.replicas
            .borrow()
            .get(&range)
            .is_some_and(|r| r.serving())
    }

    /// Sends raft messages of `range` to their nodes.
    fn send_messages(&self, range: RangeId, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        let transport = self.transport.borrow();
        let Some(t) = transport.as_ref() else { return };
        let cores = self.node_cores.borrow();
        for m in msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                // Its data is read from the engine first (`Store::send_snapshot`).
                self.outgoing_snapshots.borrow_mut().push((range, m));
                continue;
            }
            let Some(&n) = cores.get(&m.to) else { continue };
            let core = keys::core_for_range(range, n) as u32;
            let bytes = prost011::Message::encode_to_vec(&m);
            t.send_raft(
                (chitin_net::NodeId(m.to), chitin_net::CoreId(core)),
                range.0,
                bytes::Bytes::from(bytes),
            );
        }
    }

    /// The core's engine (an error once the store has shut down).
    fn engine(&self) -> Result<Rc<StoreEngine>> {
        self.engine
            .borrow()
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::AdminShutdown, "the node is shutting down"))
    }

    /// Flushes the engine and stops its background work. Call after the raft loop ended.
    pub async fn close_engine(&self) -> Result<()> {
        let engine = self.engine.borrow_mut().take();
        if let Some(e) = engine {
            match Rc::try_unwrap(e) {
                Ok(e) => e.close().await?,
                Err(e) => e.flush().await?,
            }
        }
        Ok(())
    }

    fn wake(&self) {
        let _ = self.wake_tx.try_send(());
    }

    /// Why the store stopped working, if it did.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.borrow().clone()
    }

    pub fn stop(&self) {
        self.stopping.set(true);
        self.wake();
    }

    /// Serves one KV request on this core, if it leads the request's range; else answers
    /// `NotLeader` with the request, for the gateway to send on.
    pub async fn handle(&self, req: KvRequest) -> KvResponse {
        let range = req.range();
        // A request brings a replica into being only for a range being born here: the
        // system range, a table's first range, or a new range a split fills (`Ingest`). A range
        // that lives on other nodes is not started again from the seed here (that replica
        // would campaign in the initial configuration for ever).
        let born_here =
            keys::initial_span(range).is_some() || matches!(req, KvRequest::Ingest { .. });
        let here = self.has_replica(range)
            || (born_here && self.may_create(range) && !self.gone.borrow().contains(&range));
        if !here {
            // No replica here: the gateway looks for the range elsewhere.
            return KvResponse::NotLeader {
                leader: 0,
                req: Some(Box::new(req)),
            };
        }
        match self.replica(req.range()) {
            Ok(r) if !r.serving() => {
                r.active_tick.set(self.ticks.get());
                if r.quiesced.get() && r.raw.borrow().raft.state == raft::StateRole::Leader {
                    // Its lease lapsed while it slept: wake it to renew; the gateway
                    // asks again in a moment.
                    self.unquiesce(&r);
                }
                return KvResponse::NotLeader {
                    leader: r.leader_hint(),
                    req: Some(Box::new(req)),
                };
            }
            Err(e) => return KvResponse::Err(e),
            Ok(r) => r.active_tick.set(self.ticks.get()),
        }
        match self.handle_inner(req).await {
            Ok(r) => r,
            Err(e) => KvResponse::Err(e),
        }
    }

    /// Reads `key` at `ts` from `range` on this core: [`KvRequest::Get`] without building
    /// the request. PERF: the point-read path; borrows the key.
    /// With `unc > ts`, a version of the key in `(ts, unc]` answers [`Uncertain`].
    pub async fn get(
        &self,
        range: RangeId,
        key: &[u8],
        ts: Timestamp,
        unc: Timestamp,
    ) -> Result<ReadResult<Option<Vec<u8>>>> {
        let replica = self.replica(range)?;
        replica.active_tick.set(self.ticks.get());
        self.wait_latches(&replica, key, None).await?;
        if !replica.owns(key) {
            return Err(mismatch(&replica));
        }
        replica.stats.record(key);
        replica.bump_read_ts(ts);
        let engine = self.engine()?;
        let value = engine.get(key, ts).await?;
        if unc > ts {
            let mut end = key.to_vec();
            end.push(0);
            if let Some(u) = self.uncertain(&engine, key, &end, ts, unc).await? {
                return Ok(Err(u));
            }
        }
        Ok(Ok(value))
    }

    /// The newest version in `[start, end)` above `ts` and at or below `unc`, capped by
    /// this node's clock: every write applied here moved the clock past its timestamp, so
    /// nothing above the clock's reading exists yet. PERF: a second pass over the span
    /// (time-bounded: SSTs older than `ts` are skipped); only clusters of several nodes
    /// read with an uncertainty interval.
    async fn uncertain(
        &self,
        engine: &StoreEngine,
        start: &[u8],
        end: &[u8],
        ts: Timestamp,
        unc: Timestamp,
    ) -> Result<Option<Uncertain>> {
        let observed = self.hlc.now();
        let limit = unc.min(observed);
        Ok(engine
            .newest_version_between(start, end, ts, limit)
            .await?
            .map(|value_ts| Uncertain { value_ts, observed }))
    }

    async fn handle_inner(&self, req: KvRequest) -> Result<KvResponse> {
        if let KvRequest::Get {
            range,
            key,
            ts,
            unc,
        } = &req
        {
            return Ok(match self.get(*range, key, *ts, *unc).await? {
                Ok(v) => KvResponse::Value(v),
                Err(u) => KvResponse::Uncertain(u),
            });
        }
        let replica = self.replica(req.range())?;
        match req {
            KvRequest::Get { .. } => Err(Error::internal("a get is served above")),
            KvRequest::Scan {
                start,
                end,
                ts,
                unc,
                limit,
                reverse,
                ..
            } => {
                self.wait_latches(&replica, &start, Some(&end)).await?;
                if !replica.owns_span(&start, &end) {
                    return Err(mismatch(&replica));
                }
                replica.stats.record(&start);
                replica.bump_read_ts(ts);
                let opts = ScanOptions { ts, limit, reverse };
                let engine = self.engine()?;
                let rows = engine.scan(&start, &end, &opts).await?;
                if unc > ts {
                    // Only the keys the answer covers: a limited scan stops at its last row.
                    let (lo, hi) = match rows.last() {
                        Some(last) if limit != 0 && rows.len() >= limit => {
                            let mut after = last.key.clone();
                            after.push(0);
                            if reverse {
                                (last.key.clone(), end.clone())
                            } else {
                                (start.clone(), after)
                            }
                        }
                        _ => (start.clone(), end.clone()),
                    };
                    if let Some(u) = self.uncertain(&engine, &lo, &hi, ts, unc).await? {
                        return Ok(KvResponse::Uncertain(u));
                    }
                }
                Ok(KvResponse::Rows(
                    rows.into_iter().map(|kv| (kv.key, kv.value)).collect(),
                ))
            }
            KvRequest::Prepare {
                txn,
                read_ts,
                writes,
                commit_ts,
                reads_ts,
                reads,
                ..
            } => {
                if let Some(w) = writes.first() {
                    replica.stats.record(w.key());
                }
                let refresh = (!reads.is_empty()).then_some((&reads, reads_ts));
                let ts = self
                    .prepare(&replica, txn, read_ts, writes, Some(commit_ts), refresh)
                    .await?;
                Ok(KvResponse::Prepared { min_commit_ts: ts })
            }
            KvRequest::Recover { txn, .. } => self.recover(&replica, txn).await,
            KvRequest::Commit { txn, commit_ts, .. } => {
                let commit_ts = self.commit(&replica, txn, commit_ts).await?;
                Ok(KvResponse::Committed { commit_ts })
            }
            KvRequest::Abort { txn, .. } => {
                let durable = replica
                    .prepared
                    .borrow()
                    .get(&txn)
                    .is_some_and(|p| p.durable);
                let result = if durable {
                    self.replicate(&replica, CommandKind::Abort, txn, Timestamp::MIN, &[])
                        .await
                } else {
                    Ok(())
                };
                replica.release(txn);
                result.map(|_| KvResponse::Done)
            }
            KvRequest::OnePhase {
                txn,
                read_ts,
                writes,
                reads,
                ..
            } => {
                if let Some(w) = writes.first() {
                    replica.stats.record(w.key());
                }
                self.prepare(&replica, txn, read_ts, writes, None, None)
                    .await?;
                let ts = self
                    .hlc
                    .now()
                    .max(next_ts(replica.max_read_ts.get().max(read_ts)));
                // Other refreshes order themselves by it (see `refresh`).
                if let Some(p) = replica.prepared.borrow_mut().get_mut(&txn) {
                    p.ts = ts;
                }
                if !reads.is_empty() {
                    if let Err(e) = self.refresh(&replica, txn, &reads, read_ts, ts).await {
                        replica.release(txn);
                        return Err(e);
                    }
                }
                let commit_ts = self.commit(&replica, txn, ts).await?;
                Ok(KvResponse::Committed { commit_ts })
            }
            KvRequest::Refresh {
                txn,
                read_ts,
                commit_ts,
                reads,
                ..
            } => {
                self.refresh(&replica, txn, &reads, read_ts, commit_ts)
                    .await?;
                Ok(KvResponse::Done)
            }
            KvRequest::Lock { txn, key, wait, .. } => {
                self.lock(&replica, txn, &key, wait).await?;
                let latest = self
                    .last_write
                    .borrow()
                    .get(&key)
                    .copied()
                    .unwrap_or(Timestamp::MIN);
                Ok(KvResponse::Locked { latest })
            }
            KvRequest::Flow { .. } => Err(Error::internal(
                "a DistSQL flow reached the store instead of the SQL layer",
            )),
            KvRequest::FenceTouch { .. } => {
                if replica.fence.borrow().is_some() {
                    replica.fence_since.set(Some(Instant::now()));
                }
                Ok(KvResponse::Done)
            }
            KvRequest::Describe { .. } => {
                let conf = replica.raw.borrow().store().conf.borrow().clone();
                let mut rows = Vec::new();
                for (role, ids) in [
                    ("voter", &conf.voters),
                    ("learner", &conf.learners),
                    ("outgoing", &conf.voters_outgoing),
                ] {
                    for id in ids {
                        rows.push((role.as_bytes().to_vec(), id.to_be_bytes().to_vec()));
                    }
                }
                let bytes = match replica.stats.bytes.get() {
                    Some(b) => b,
                    None => {
                        let (start, end) = replica.span.borrow().clone();
                        let b = self.engine()?.span_size(&start, &end).await?.bytes;
                        replica.stats.bytes.set(Some(b));
                        b
                    }
                };
                rows.push((b"bytes".to_vec(), bytes.to_be_bytes().to_vec()));
                let qps = replica.stats.qps.get().to_bits();
                rows.push((b"qps".to_vec(), qps.to_be_bytes().to_vec()));
                let age = replica.stats.span_age().as_millis() as u64;
                rows.push((b"age_ms".to_vec(), age.to_be_bytes().to_vec()));
                Ok(KvResponse::Rows(rows))
            }
            KvRequest::ReleaseLocks { txn, .. } => {
                replica.release_locks(txn);
                Ok(KvResponse::Done)
            }
            KvRequest::SplitFence { key, .. } => self.split_fence(&replica, key).await,
            KvRequest::MergeFence { key, .. } => {
                let span = replica.span.borrow().clone();
                if key == span.1 && key > span.0 {
                    // The left-hand range: reserve what it takes over, refuse splits.
                    self.set_fence(&replica, FenceKind::MergeLeft, key).await?;
                    Ok(KvResponse::SplitFenced {
                        versions: Vec::new(),
                        max_read_ts: Timestamp::MIN,
                        last_writes: Vec::new(),
                        end: span.1,
                    })
                } else if key == span.0 && span.0 < span.1 {
                    self.fence_and_collect(&replica, FenceKind::MergeRight, key)
                        .await
                } else {
                    Err(mismatch(&replica))
                }
            }
            KvRequest::Ingest {
                start,
                end,
                versions,
                max_read_ts,
                last_writes,
                ..
            } => {
                self.ingest(&replica, start, end, versions).await?;
                replica.bump_read_ts(max_read_ts);
                let mut lw = self.last_write.borrow_mut();
                for (k, ts) in last_writes {
                    lw.insert(k, ts);
                }
                Ok(KvResponse::Done)
            }
            KvRequest::SplitFinish { key, .. } => {
                if replica.fence.borrow().as_deref() != Some(key.as_slice()) {
                    // Leadership moved during the split (the fence was in the old
                    // leader's memory): the descriptors are published, so shrink anyway.
                    eprintln!(
                        "core {}: split of {} finishes on a leader without its fence",
                        self.core, replica.id
                    );
                }
                let end = replica.span.borrow().1.clone();
                let cmd = Command {
                    kind: CommandKind::Shrink,
                    span: (key, end),
                    ..Default::default()
                };
                // Applied, it lifts the fence; on failure the fence stays: the old data
                // must not be served again.
                self.replicate_cmd(&replica, cmd).await?;
                Ok(KvResponse::Done)
            }
            KvRequest::SplitAbort { .. } => {
                self.lift_fence(&replica).await?;
                Ok(KvResponse::Done)
            }
        }
    }

    /// The serializable refresh of `txn`'s reads on this range: raises the read high-water
    /// mark to `commit_ts` (no later write can land at or below it), waits for other
    /// transactions' writes in flight there, then fails with 40001 if any version in the
    /// reads has a timestamp in `(read_ts, commit_ts]`.
    async fn refresh(
        &self,
        replica: &Replica,
        txn: TxnId,
        reads: &crate::txn::ReadSet,
        read_ts: Timestamp,
        commit_ts: Timestamp,
    ) -> Result<()> {
        if !reads.keys.iter().all(|k| replica.owns(k))
            || !reads.spans.iter().all(|(s, e)| replica.owns_span(s, e))
        {
            return Err(mismatch(replica));
        }
        replica.bump_read_ts(commit_ts);
        let started = Instant::now();
        loop {
            let other = reads
                .keys
                .iter()
                .find_map(|k| replica.latched_by_other(k, None, txn, commit_ts))
                .or_else(|| {
                    reads
                        .spans
                        .iter()
                        .find_map(|(s, e)| replica.latched_by_other(s, Some(e), txn, commit_ts))
                });
            if let Some(other) = other {
                // A two-phase writer may itself wait for us elsewhere (a cycle only a
                // timeout would break): give up rather than wait. (Writers committing
                // above `commit_ts` are not even looked at: their writes cannot be in
                // the refreshed window.)
                if replica.is_two_phase(other) {
                    return Err(refresh_failed());
                }
                // Two refreshing writers wait only for the one with the lower commit
                // timestamp (which never waits for the other); at equal timestamps the
                // newer transaction gives up.
                if replica.prepared_ts(other) == Some(commit_ts) && other < txn {
                    return Err(refresh_failed());
                }
            }
            // A split fence waits for our own latches here: waiting for it would be a cycle.
            let fenced = reads.keys.iter().any(|k| replica.fenced(k))
                || reads.spans.iter().any(|(s, e)| replica.fenced_span(s, e));
            if fenced {
                return Err(being_split());
            }
            if other.is_none() {
                break;
            }
            if started.elapsed() > LATCH_WAIT {
                return Err(Error::retry(
                    "restart transaction: timed out waiting for a conflicting write",
                ));
            }
            replica.latch_release(LATCH_POLL).await;
        }
        let engine = self.engine()?;
        let mut next = Vec::new();
        for k in &reads.keys {
            next.clear();
            next.extend_from_slice(k);
            next.push(0);
            if engine
                .has_versions_between(k, &next, read_ts, commit_ts)
                .await?
            {
                return Err(refresh_failed());
            }
        }
        for (s, e) in &reads.spans {
            if engine
                .has_versions_between(s, e, read_ts, commit_ts)
                .await?
            {
                return Err(refresh_failed());
            }
        }
        Ok(())
    }

    /// Fences `[key, span end)` of `replica` for a split and returns its data.
    async fn split_fence(&self, replica: &Replica, key: Vec<u8>) -> Result<KvResponse> {
        if !replica.owns(&key) || replica.span.borrow().0 == key {
            return Err(mismatch(replica));
        }
        self.fence_and_collect(replica, FenceKind::Split, key).await
    }

    /// Fences `replica` at `key` through its raft log (every replica, and a later leader,
    /// holds the fence). The leader refuses a second fence at once, before the command
    /// applies; a proposal that never made it into the log takes the fence back.
    async fn set_fence(&self, replica: &Replica, kind: FenceKind, key: Vec<u8>) -> Result<()> {
        self.fence_check(replica)?;
        *replica.fence.borrow_mut() = Some(key.clone());
        let cmd = Command {
            kind: CommandKind::Fence,
            writes: vec![(fence_record_key(replica.id), Some(encode_fence(kind, &key)))],
            ..Default::default()
        };
        if let Err(e) = self.replicate_cmd(replica, cmd).await {
            if e.is_retryable() {
                // Never appended: nothing else set this fence (a second one is refused).
                replica.set_fence_state(None);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Lifts `replica`'s fence through its raft log (nothing to do without one).
    async fn lift_fence(&self, replica: &Replica) -> Result<()> {
        if replica.fence.borrow().is_none() {
            return Ok(());
        }
        let cmd = Command {
            kind: CommandKind::Unfence,
            ..Default::default()
        };
        self.replicate_cmd(replica, cmd).await
    }

    /// Refuses to fence `replica` while a split or merge runs on it, or while leadership
    /// or membership moves (the fence lives in this leader's memory).
    fn fence_check(&self, replica: &Replica) -> Result<()> {
        if replica.fence.borrow().is_some() {
            return Err(Error::retry("a split of this range is already in progress"));
        }
        if replica.raw.borrow().raft.lead_transferee.is_some()
            || replica.raw.borrow().raft.has_pending_conf()
        {
            // The fence lives in this leader's memory: not while leadership or the
            // membership is moving.
            return Err(Error::retry(
                "restart transaction: the range is changing leader or replicas; split again",
            ));
        }
        Ok(())
    }

    /// Fences `[key, span end)` of `replica`, waits for the writes in flight there, and
    /// returns its data (a split's first step, and a merge's on the right-hand range with
    /// `key` at the span's start).
    async fn fence_and_collect(
        &self,
        replica: &Replica,
        kind: FenceKind,
        key: Vec<u8>,
    ) -> Result<KvResponse> {
        self.set_fence(replica, kind, key.clone()).await?;
        let end = replica.span.borrow().1.clone();
        let started = Instant::now();
        while replica.span_latched(&key, &end) {
            if started.elapsed() > LATCH_WAIT {
                self.lift_fence(replica).await?;
                return Err(Error::retry(
                    "split: timed out waiting for writes in the span to finish",
                ));
            }
            replica.latch_release(LATCH_POLL).await;
        }
        let versions = match self.engine()?.scan_versions(&key, &end).await {
            Ok(v) => v,
            Err(e) => {
                self.lift_fence(replica).await?;
                return Err(e.into());
            }
        };
        let last_writes = self
            .last_write
            .borrow()
            .iter()
            .filter(|(k, _)| k.as_slice() >= key.as_slice() && k.as_slice() < end.as_slice())
            .map(|(k, ts)| (k.clone(), *ts))
            .collect();
        Ok(KvResponse::SplitFenced {
            versions,
            max_read_ts: replica.max_read_ts.get(),
            last_writes,
            end,
        })
    }

    /// Replicates `versions` into `replica` as the whole content of `[start, end)`, in raft
    /// entries of about [`INGEST_CHUNK_BYTES`].
    async fn ingest(
        &self,
        replica: &Replica,
        start: Vec<u8>,
        end: Vec<u8>,
        versions: Vec<VersionedKeyValue>,
    ) -> Result<()> {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        let mut versions = versions.into_iter().peekable();
        loop {
            let v = versions.next();
            if let Some(v) = v {
                bytes += v.key.len() + v.value.as_ref().map_or(0, |x| x.len()) + 24;
                chunk.push(v);
            }
            let last = versions.peek().is_none();
            if bytes >= INGEST_CHUNK_BYTES || last {
                // The span changes with the last chunk only: a range taking over keys
                // (a merge) never serves them half-copied.
                let span = if last {
                    (start.clone(), end.clone())
                } else {
                    replica.span.borrow().clone()
                };
                let cmd = Command {
                    kind: CommandKind::Ingest,
                    span,
                    versions: std::mem::take(&mut chunk),
                    ..Default::default()
                };
                self.replicate_cmd(replica, cmd).await?;
                bytes = 0;
            }
            if last {
                return Ok(());
            }
        }
    }

    /// Sets the spans of this core's replicas from the range descriptors (the source of
    /// truth at startup): described ranges get their span, split-off ranges without a
    /// descriptor (a split that crashed before publishing) get none.
    pub fn install_spans(&self, descs: &[super::ranges::RangeDesc]) -> Result<()> {
        for r in self.replicas.borrow().values() {
            if keys::initial_span(r.id).is_none() {
                *r.span.borrow_mut() = Default::default();
            }
        }
        for d in descs {
            // A range with no replica here gets its span with its data (its log or a
            // snapshot), if it ever comes here.
            if keys::core_for_range(d.id, self.ncores) == self.core && self.has_replica(d.id) {
                let r = self.replica(d.id)?;
                *r.span.borrow_mut() = (d.start.clone(), d.end.clone());
            }
        }
        Ok(())
    }

    /// Waits until no other transaction latches `key` (or a key in `[key, end)`) and no
    /// split is moving it away.
    async fn wait_latches(&self, replica: &Replica, key: &[u8], end: Option<&[u8]>) -> Result<()> {
        let started = Instant::now();
        loop {
            let latched = match end {
                Some(end) => replica.span_latched(key, end) || replica.fenced_span(key, end),
                None => replica.key_latched(key) || replica.fenced(key),
            };
            if !latched {
                return Ok(());
            }
            if started.elapsed() > LATCH_WAIT {
                return Err(Error::retry(
                    "restart transaction: timed out waiting for a conflicting write",
                ));
            }
            replica.latch_release(LATCH_POLL).await;
        }
    }

    /// Takes the row lock on `key` for `txn`, waiting (parked on the range's release
    /// signal) while another transaction holds it or a prepared write latches it. A lock
    /// held past `LOCK_STALE` is taken over.
    async fn lock(&self, replica: &Replica, txn: TxnId, key: &[u8], wait: LockWait) -> Result<()> {
        let started = Instant::now();
        let r = loop {
            if wait == LockWait::Slice && started.elapsed() > LOCK_SLICE {
                break Err(Error::new(
                    ErrorKind::LockWaitSlice,
                    "restart transaction: still waiting for a row lock",
                ));
            }
            if started.elapsed() > LOCK_WAIT_MAX {
                break Err(Error::retry(
                    "restart transaction: timed out waiting for a row lock",
                ));
            }
            if !replica.owns(key) {
                break Err(mismatch(replica));
            }
            let latched = replica
                .latches
                .borrow()
                .get(key)
                .copied()
                .filter(|t| *t != txn);
            let holder = latched.or_else(|| {
                if replica.locked_by_other(key, txn) {
                    replica.locks.borrow().get(key).map(|l| l.0)
                } else {
                    None
                }
            });
            let Some(holder) = holder else {
                replica.take_lock(key, txn);
                break Ok(());
            };
            if wait == LockWait::NoWait {
                break Err(Error::new(
                    ErrorKind::LockNotAvailable,
                    "could not obtain lock on row",
                ));
            }
            if waits_for(txn, holder) {
                break Err(Error::retry(
                    "restart transaction: deadlock detected: this transaction waited for a \
                     row lock held by a transaction that waits for it; it was aborted to \
                     break the cycle",
                ));
            }
            replica.latch_release(LATCH_POLL).await;
        };
        stop_waiting(txn);
        r
    }

    /// Latches the keys of `writes` for `txn` and validates them: no write newer than
    /// `read_ts` on any key (write-write conflict → 40001), no visible value under an
    /// insert (→ 23505). Returns the lowest timestamp the writes may commit at here.
    ///
    /// `staged`: a parallel-commit participant proposing that commit timestamp. Its
    /// `refresh` (this range's reads and the timestamp they were made at) is refreshed to
    /// it once the writes are latched, and the writes become a durable prepare record
    /// holding the returned timestamp. Without it (1PC) nothing is made durable.
    async fn prepare(
        &self,
        replica: &Replica,
        txn: TxnId,
        read_ts: Timestamp,
        writes: Vec<KvWrite>,
        staged: Option<Timestamp>,
        refresh: Option<(&crate::txn::ReadSet, Timestamp)>,
    ) -> Result<Timestamp> {
        let durable = staged.is_some();
        let started = Instant::now();
        // Latch every key, all or nothing, without holding some while waiting for others.
        // A two-phase transaction holds latches on other ranges: it must not wait for a
        // split fence (the split may be waiting for those latches). Participants of one
        // parallel commit prepare at once, so two of them may wait for each other across
        // ranges: every wait is an edge of the node's wait-for graph, and the wait that
        // would close a cycle fails instead (40001).
        let latched = loop {
            if durable && writes.iter().any(|w| replica.fenced(w.key())) {
                break Err(being_split());
            }
            if replica.is_prevented(txn) {
                break Err(prevented());
            }
            let holder = {
                let latches = replica.latches.borrow();
                writes.iter().find_map(|w| {
                    if let Some(t) = latches.get(w.key()).filter(|t| **t != txn) {
                        return Some(Some(*t));
                    }
                    if replica.fenced(w.key()) {
                        return Some(None);
                    }
                    if replica.locked_by_other(w.key(), txn) {
                        return Some(replica.locks.borrow().get(w.key()).map(|l| l.0));
                    }
                    None
                })
            };
            let Some(holder) = holder else {
                if !writes.iter().all(|w| replica.owns(w.key())) {
                    break Err(mismatch(replica));
                }
                let mut latches = replica.latches.borrow_mut();
                for w in &writes {
                    latches.insert(w.key().to_vec(), txn);
                }
                break Ok(());
            };
            if let Some(holder) = holder {
                if waits_for(txn, holder) {
                    break Err(Error::retry(
                        "restart transaction: deadlock detected: this transaction's commit \
                         waited for a transaction that waits for it; it was aborted to \
                         break the cycle",
                    ));
                }
            }
            if started.elapsed() > LATCH_WAIT {
                break Err(Error::retry(
                    "restart transaction: timed out waiting for a conflicting write",
                ));
            }
            replica.latch_release(LATCH_POLL).await;
        };
        stop_waiting(txn);
        latched?;
        // Above every read served before the latches: a read of these keys from now on
        // waits for them.
        let ts = next_ts(replica.max_read_ts.get().max(read_ts)).max(staged.unwrap_or_default());
        replica.prepared.borrow_mut().insert(
            txn,
            Prepared {
                writes: Vec::new(),
                ts,
                durable: false,
                since: Instant::now(),
            },
        );
        let mut validated = self.validate(&writes, read_ts).await;
        // Keep the writes with the prepared record so release() finds the latches.
        if let Some(p) = replica.prepared.borrow_mut().get_mut(&txn) {
            p.writes = writes;
        }
        if let (Ok(()), Some((reads, reads_ts)), Some(commit_ts)) = (&validated, refresh, staged) {
            validated = self.refresh(replica, txn, reads, reads_ts, commit_ts).await;
        }
        if let Err(e) = validated {
            replica.release(txn);
            return Err(e);
        }
        if durable {
            // Two-phase commit: the writes become a durable prepare record, so that a
            // crash between this and the commit decision can be resolved at restart.
            let writes = replica
                .prepared
                .borrow()
                .get(&txn)
                .map(|p| p.writes.clone())
                .unwrap_or_default();
            if let Err(e) = self
                .replicate(replica, CommandKind::Prepare, txn, ts, &writes)
                .await
            {
                replica.release(txn);
                return Err(e);
            }
            if let Some(p) = replica.prepared.borrow_mut().get_mut(&txn) {
                p.durable = true;
            }
        }
        Ok(ts)
    }

    /// [`KvRequest::Recover`]: whether `txn` is durably prepared here (waiting for a
    /// prepare in flight); if not, it never will be.
    async fn recover(&self, replica: &Replica, txn: TxnId) -> Result<KvResponse> {
        let started = Instant::now();
        loop {
            let state = replica
                .prepared
                .borrow()
                .get(&txn)
                .map(|p| (p.durable, p.ts));
            match state {
                Some((true, ts)) => return Ok(KvResponse::Prepared { min_commit_ts: ts }),
                Some((false, _)) => {
                    if started.elapsed() > LATCH_WAIT {
                        return Err(Error::retry(
                            "restart transaction: timed out waiting for a prepare in flight",
                        ));
                    }
                    replica.latch_release(LATCH_POLL).await;
                }
                None => break,
            }
        }
        // Not known in memory: a durable record this leader has not re-latched (a
        // single-replica range after a restart) still counts.
        let key = prepare_record_key(replica.id, txn);
        let end = keys::prefix_end(&key);
        for (_, value) in self.engine()?.scan_locks(&key, &end).await? {
            let (found, ts, _) = decode_prepare_record(&value)?;
            if found == txn {
                return Ok(KvResponse::Prepared { min_commit_ts: ts });
            }
        }
        // The scan awaited: a prepare may have started meanwhile.
        if replica.prepared.borrow().contains_key(&txn) {
            return Err(Error::retry(
                "restart transaction: a prepare arrived while recovering its transaction",
            ));
        }
        replica.prevent(txn);
        Ok(KvResponse::Done)
    }

    async fn validate(&self, writes: &[KvWrite], read_ts: Timestamp) -> Result<()> {
        for w in writes {
            if let Some(ts) = self.last_write.borrow().get(w.key()) {
                if *ts > read_ts {
                    return Err(Error::retry(
                        "restart transaction: TransactionRetryWithProtoRefreshError: WriteTooOldError",
                    ));
                }
            }
            if let KvWrite::Insert { key, .. } = w {
                if self.engine()?.get(key, Timestamp::MAX).await?.is_some() {
                    return Err(Error::new(
                        ErrorKind::UniqueViolation,
                        "duplicate key value violates unique constraint",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Replicates and applies the prepared writes of `txn` at `ts`, then releases them.
    async fn commit(&self, replica: &Replica, txn: TxnId, ts: Timestamp) -> Result<Timestamp> {
        let found = replica
            .prepared
            .borrow()
            .get(&txn)
            .map(|p| (p.writes.clone(), p.durable));
        let Some((writes, durable)) = found else {
            // Only a committed decision lets a Commit be sent, and a resolver that found
            // the prepare record orphaned follows that decision: it committed it already.
            return Ok(ts);
        };
        let kind = if durable {
            CommandKind::Commit
        } else {
            CommandKind::Write
        };
        let result = self.replicate(replica, kind, txn, ts, &writes).await;
        replica.release(txn);
        result?;
        Ok(ts)
    }

    async fn replicate(
        &self,
        replica: &Replica,
        kind: CommandKind,
        txn: TxnId,
        ts: Timestamp,
        writes: &[KvWrite],
    ) -> Result<()> {
        if writes.is_empty() && kind == CommandKind::Write {
            return Ok(());
        }
        let cmd = Command {
            kind,
            txn,
            ts,
            writes: writes
                .iter()
                .map(|w| match w {
                    KvWrite::Put { key, value } | KvWrite::Insert { key, value } => {
                        (key.clone(), Some(value.clone()))
                    }
                    KvWrite::Delete { key } => (key.clone(), None),
                })
                .collect(),
            ..Default::default()
        };
        self.replicate_cmd(replica, cmd).await
    }

    /// Proposes `cmd` (its proposal id is assigned here) and waits until it is applied.
    async fn replicate_cmd(&self, replica: &Replica, mut cmd: Command) -> Result<()> {
        if let Some(f) = self.fatal() {
            return Err(Error::internal(format!("the store failed: {f}")));
        }
        let seq = self.next_proposal.get();
        self.next_proposal.set(seq + 1);
        // Unique across nodes too: a proposal another node made (forwarded, or left in
        // the log by a former leader) must never wake a waiter here.
        let node = self.membership.borrow().as_ref().map_or(0, |m| m.node);
        let proposal = (node << 48) | (seq & ((1 << 48) - 1));
        self.metrics
            .raft_proposals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let proposed_at = Instant::now();
        cmd.proposal = proposal;
        let ts = cmd.ts;
        let (tx, rx) = local_channel::new_bounded(1);
        replica.waiters.borrow_mut().insert(proposal, tx);
        replica.queue.borrow_mut().push(cmd.encode());
        if replica.quiesced.get() {
            self.unquiesce(replica);
        } else {
            replica.active_tick.set(self.ticks.get());
            self.mark(replica);
        }
        match rx.recv().await {
            Some(r) => {
                self.hlc.update(ts);
                self.metrics
                    .raft_commit_latency
                    .observe(proposed_at.elapsed());
                r
            }
            None => Err(Error::new(
                ErrorKind::AdminShutdown,
                "result is ambiguous: the node is shutting down",
            )),
        }
    }

    /// The raft driver of this core. Runs until [`Store::stop`].
    pub async fn raft_loop(self: Rc<Self>) {
        let rx = self
            .wake_rx
            .borrow_mut()
            .take()
            .expect("raft loop started twice");
        let ticker = {
            let me = self.clone();
            glommio::spawn_local(async move {
                while !me.stopping.get() {
                    glommio::timer::sleep(super::replica::TICK).await;
                    let ticks = me.ticks.get() + 1;
                    me.ticks.set(ticks);
                    me.tick_all(ticks);
                    if ticks.is_multiple_of(TRUNCATE_EVERY_TICKS) {
                        if let Err(e) = me.truncate_logs().await {
                            eprintln!("core {}: raft log truncation: {e}", me.core);
                        }
                    }
                }
            })
        };
        // Everything recovered at open gets one round at once.
        for r in self.replicas.borrow().values() {
            self.mark(r);
        }
        while !self.stopping.get() {
            if rx.recv().await.is_none() {
                break;
            }
            // Drain every pending wakeup: one pass serves them all.
            while let Some(Some(())) = futures_lite::future::poll_once(rx.recv()).await {}
            let result = self.drive_once().await;
            for (range, msg) in self.outgoing_snapshots.borrow_mut().drain(..) {
                glommio::spawn_local(self.clone().send_snapshot(range, msg)).detach();
            }
            if let Err(e) = result {
                // The raft log or the engine failed under a Ready that was taken but not
                // advanced: this core cannot go on safely. Nothing unpersisted was
                // acknowledged; fail the waiters and stop the node.
                eprintln!("core {}: fatal: raft driver error: {e}", self.core);
                *self.fatal.borrow_mut() = Some(e.message.clone());
                for r in self.replicas.borrow().values() {
                    for (_, w) in r.waiters.borrow_mut().drain() {
                        let _ = w.try_send(Err(Error::internal(format!("raft log: {e}"))));
                    }
                }
                break;
            }
        }
        ticker.await;
        // Fail anyone still waiting: their writes may or may not have been applied.
        for r in self.replicas.borrow().values() {
            r.waiters.borrow_mut().clear();
        }
    }

    /// One raft tick: ticks every replica that is not quiesced, quiesces the idle ones
    /// (`try_quiesce`) and wakes quiesced followers whose leader's node is unreachable.
    fn tick_all(&self, ticks: u64) {
        let placement = {
            let mut avoid: Vec<u64> = self.avoid.borrow().iter().copied().collect();
            avoid.sort_unstable();
            (self.draining.get(), avoid)
        };
        // Leadership may have to move (drain, a node to avoid): wake quiesced leaders.
        let placement_changed = *self.placement_seen.borrow() != placement;
        if placement_changed {
            *self.placement_seen.borrow_mut() = placement;
        }
        let unreachable = self.unreachable.borrow();
        let mut quiesced = 0;
        let mut outgoing = Vec::new();
        for r in self.replicas.borrow().values() {
            if r.quiesced.get() {
                let (leader, me) = {
                    let raw = r.raw.borrow();
                    (raw.raft.leader_id, raw.raft.id)
                };
                let asleep = if leader == me {
                    !placement_changed
                } else {
                    leader != 0 && !unreachable.contains(&leader)
                };
                if asleep {
                    quiesced += 1;
                    continue;
                }
                r.quiesced.set(false);
                r.active_tick.set(ticks);
            }
            if let Some(msgs) = self.try_quiesce(r, ticks) {
                r.quiesced.set(true);
                quiesced += 1;
                outgoing.push((r.id, msgs));
                continue;
            }
            r.raw.borrow_mut().tick();
            if !r.dirty.replace(true) {
                self.dirty.borrow_mut().push(r.id);
            }
        }
        drop(unreachable);
        for (range, msgs) in outgoing {
            self.send_messages(range, msgs);
        }
        self.metrics
            .raft_quiesced
            .store(quiesced, std::sync::atomic::Ordering::Relaxed);
        self.wake();
    }

    /// One round of the raft driver over the ranges something happened to (`mark`): feed
    /// queued proposals, collect every ready, persist them with one log append, apply
    /// committed entries, advance.
    pub async fn drive_once(&self) -> Result<()> {
        let _busy = Busy::new(&self.busy);
        let ids = std::mem::take(&mut *self.dirty.borrow_mut());
        let replicas: Vec<Rc<Replica>> = {
            let all = self.replicas.borrow();
            ids.iter().filter_map(|id| all.get(id).cloned()).collect()
        };
        for r in &replicas {
            r.dirty.set(false);
        }
        let mut readies = Vec::new();
        let mut persist = Vec::new();
        for r in &replicas {
            {
                let mut raw = r.raw.borrow_mut();
                for (to, delivered) in r.snap_reports.borrow_mut().drain(..) {
                    let status = if delivered {
                        raft::SnapshotStatus::Finish
                    } else {
                        raft::SnapshotStatus::Failure
                    };
                    raw.report_snapshot(to, status);
                }
                for cc in r.conf_queue.borrow_mut().drain(..) {
                    // Refused while another change is pending; dropped when no longer
                    // leader (raft would forward it to the new leader, whose allocator
                    // decides for itself): the allocator asks again on its next round.
                    if raw.raft.state == raft::StateRole::Leader {
                        let _ = raw.propose_conf_change(Vec::new(), cc);
                    }
                }
                for m in r.inbox.borrow_mut().drain(..) {
                    // A message for an older term or from a stale peer is refused by raft
                    // itself; nothing a peer sends can break the group.
                    let _ = raw.step(m);
                }
                if let Some((term, from, commit)) = r.quiesce_offer.take() {
                    let log = &raw.raft.raft_log;
                    if raw.raft.state == raft::StateRole::Follower
                        && raw.raft.term == term
                        && raw.raft.leader_id == from
                        && log.last_index() == commit
                        && log.committed == commit
                    {
                        r.quiesced.set(true);
                    }
                }
                let leader = raw.raft.state == raft::StateRole::Leader;
                // A leader handing over holds its proposals: the transfer ends within an
                // election timeout (ticks bring the range back here), and then they are
                // proposed here or refused as never appended.
                if !(leader && raw.raft.lead_transferee.is_some()) {
                    for data in r.queue.borrow_mut().drain(..) {
                        // Not leader any more (raft would forward it to the new leader,
                        // where nobody waits for it), or dropped: never appended, so safe
                        // to retry.
                        let refused = if leader {
                            raw.propose(Vec::new(), data.clone()).err()
                        } else {
                            Some(raft::Error::ProposalDropped)
                        };
                        let Some(e) = refused else { continue };
                        if let Ok(cmd) = Command::decode(&data) {
                            if let Some(w) = r.waiters.borrow_mut().remove(&cmd.proposal) {
                                let _ = w.try_send(Err(Error::retry(format!(
                                    "restart transaction: range {} lost its leader ({e})",
                                    r.id
                                ))));
                            }
                        }
                    }
                }
            }
            self.note_leadership(r);
            let (mut ready, snap) = {
                let mut raw = r.raw.borrow_mut();
                renew_lease(r, &mut raw);
                prefer_leader(r, &mut raw, &self.avoid.borrow(), self.draining.get());
                if !raw.has_ready() {
                    continue;
                }
                let mut ready = raw.ready();
                for rs in ready.take_read_states() {
                    if let Some(t) = super::replica::lease_context_time(&rs.request_ctx) {
                        if r.lease_round.get() == Some(t) {
                            r.lease_round.set(None);
                        }
                        let until = t + super::replica::LEASE;
                        if r.lease_until.get().is_none_or(|u| u < until) {
                            r.lease_until.set(Some(until));
                        }
                    }
                }
                let snap = (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone());
                (ready, snap)
            };
            if let Some(snap) = snap {
                self.install_snapshot(r, snap).await?;
            }
            // PERF: a leader sends its appends before persisting them (raft §10.2.1).
            self.send_messages(r.id, ready.take_messages());
            // PERF: a hard state that only moves the commit index is not made durable by
            // itself (that would be one more fdatasync per replicated write, on every
            // replica). Raft needs only term and vote durable; the commit index is
            // relearned from the leader, and at restart it is at least what the engine
            // applied (`Replica::new`).
            let hs = ready.hs().cloned();
            let durable_hs = hs.as_ref().is_some_and(|h| {
                (h.term, h.vote) != r.persisted_term_vote.get() || !ready.entries().is_empty()
            });
            if !ready.entries().is_empty() || durable_hs {
                persist.push((r.id, ready.entries().clone(), hs));
            } else if let Some(hs) = hs {
                r.raw.borrow().store().wl().set_hardstate(hs);
            }
            readies.push((r.clone(), ready));
        }
        if readies.is_empty() {
            return Ok(());
        }
        if !persist.is_empty() {
            let started = Instant::now();
            self.log.append(&persist).await?;
            self.metrics.observe_log_sync(started.elapsed());
            for (range, entries, hs) in persist {
                let r = &self.replicas.borrow()[&range];
                let raw = r.raw.borrow_mut();
                let store = raw.store();
                let mut w = store.wl();
                if !entries.is_empty() {
                    w.append(&entries)
                        .map_err(|e| Error::internal(e.to_string()))?;
                }
                if let Some(hs) = hs {
                    r.persisted_term_vote.set((hs.term, hs.vote));
                    w.set_hardstate(hs);
                }
            }
        }
        for (r, mut ready) in readies {
            // Votes and append acknowledgements only once what they vouch for is durable.
            self.send_messages(r.id, ready.take_persisted_messages());
            let committed = ready.take_committed_entries();
            self.apply(&r, committed).await?;
            let mut light = r.raw.borrow_mut().advance(ready);
            self.send_messages(r.id, light.take_messages());
            if let Some(commit) = light.commit_index() {
                let raw = r.raw.borrow_mut();
                let mut w = raw.store().wl();
                let mut hs = w.hard_state().clone();
                hs.commit = commit;
                w.set_hardstate(hs);
            }
            let committed = light.take_committed_entries();
            self.apply(&r, committed).await?;
            r.raw.borrow_mut().advance_apply();
        }
        for r in &replicas {
            if !r.relatched.get() && r.applied.get() >= r.term_start.get() {
                self.relatch(r).await?;
            }
        }
        Ok(())
    }

    /// A new leader latches the keys of the range's durable prepare records again and
    /// remembers them as prepared, so readers wait for those two-phase transactions and
    /// their Commit or Abort finds them, as on the previous leader. Runs once the leader
    /// applied everything before its term (every prepare record is in the engine then).
    async fn relatch(&self, r: &Replica) -> Result<()> {
        // Prepares from before a restart have no coordinator waiting here any more: the
        // orphan resolver may decide them at once. (A replica that leads only much later
        // finds prepares of a live cluster's ongoing commits: those wait as usual.)
        let since = if r.restarted.replace(false) && self.opened_at.elapsed() < RESTART_PREPARES {
            Instant::now()
                .checked_sub(Duration::from_secs(3600))
                .unwrap_or_else(Instant::now)
        } else {
            Instant::now()
        };
        let mut start = PREPARE_PREFIX.to_vec();
        start.extend_from_slice(&r.id.0.to_be_bytes());
        let end = keys::prefix_end(&start);
        let records = self.engine()?.scan_locks(&start, &end).await?;
        if r.raw.borrow().raft.state != raft::StateRole::Leader {
            return Ok(());
        }
        for (_, value) in records {
            let (txn, ts, writes) = decode_prepare_record(&value)?;
            {
                let mut latches = r.latches.borrow_mut();
                for w in &writes {
                    latches.insert(w.key().to_vec(), txn);
                }
            }
            r.prepared.borrow_mut().insert(
                txn,
                Prepared {
                    writes,
                    ts,
                    durable: true,
                    since,
                },
            );
        }
        r.relatched.set(true);
        Ok(())
    }

    /// Notices a change of leadership of `r`. A new leader serves once it has applied its
    /// term's first entry, with reads at or below the present refused to writers (its
    /// timestamp cache starts at now: the previous leader may have served reads up to
    /// there). A replica that lost leadership fails its waiters: their proposals may or
    /// may not commit under the new leader.
    fn note_leadership(&self, r: &Replica) {
        let raw = r.raw.borrow();
        let leader = raw.raft.state == raft::StateRole::Leader;
        if leader && !r.was_leader.get() {
            r.was_leader.set(true);
            r.term_start.set(raw.raft.raft_log.last_index());
            r.bump_read_ts(self.hlc.now());
            if raw.raft.prs().iter().count() > 1 {
                r.relatched.set(false);
            }
        } else if !leader && r.was_leader.get() {
            r.was_leader.set(false);
            r.term_start.set(u64::MAX);
            r.lease_until.set(None);
            r.lease_round.set(None);
            r.latches.borrow_mut().clear();
            r.latches_changed();
            r.prepared.borrow_mut().clear();
            for (_, w) in r.waiters.borrow_mut().drain() {
                let _ = w.try_send(Err(Error::new(
                    ErrorKind::AmbiguousResult,
                    format!(
                        "result is ambiguous: range {} lost its leader before the write applied",
                        r.id
                    ),
                )));
            }
        }
    }

    async fn apply(&self, r: &Replica, entries: Vec<Entry>) -> Result<()> {
        for e in entries {
            let mut batch = WriteBatch::new();
            let mut proposal = None;
            if matches!(
                e.get_entry_type(),
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2
            ) {
                let conf = {
                    let mut raw = r.raw.borrow_mut();
                    let applied = if e.get_entry_type() == EntryType::EntryConfChangeV2 {
                        let cc = <ConfChangeV2 as prost011::Message>::decode(&e.data[..])
                            .map_err(|_| Error::internal("corrupt conf change"))?;
                        raw.apply_conf_change(&cc)
                    } else {
                        let cc = <ConfChange as prost011::Message>::decode(&e.data[..])
                            .map_err(|_| Error::internal("corrupt conf change"))?;
                        raw.apply_conf_change(&cc)
                    };
                    applied.map_err(|e| Error::internal(format!("conf change {}: {e}", r.id)))?
                };
                let (snap_index, snap_term) = r.snap_point.get();
                let record = RaftStateRecord {
                    snap_index,
                    snap_term,
                    conf: conf.clone(),
                };
                batch.put_lock(raft_state_key(r.id), record.encode());
                {
                    let raw = r.raw.borrow();
                    raw.store().wl().set_conf_state(conf.clone());
                    *raw.store().conf.borrow_mut() = conf;
                }
                self.metrics
                    .raft_conf_changes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                let cmd = Command::decode(&e.data)?;
                proposal = Some(cmd.proposal);
                match cmd.kind {
                    CommandKind::Prepare => {
                        batch.put_lock(prepare_record_key(r.id, cmd.txn), e.data.clone());
                    }
                    CommandKind::Abort => batch.delete_lock(prepare_record_key(r.id, cmd.txn)),
                    CommandKind::Write | CommandKind::Commit => {
                        if cmd.kind == CommandKind::Commit {
                            batch.delete_lock(prepare_record_key(r.id, cmd.txn));
                        }
                        let mut last_write = self.last_write.borrow_mut();
                        for (k, v) in cmd.writes {
                            r.stats.wrote(chitin_storage::span_version_bytes(
                                k.len(),
                                v.as_ref().map_or(0, Vec::len),
                            ));
                            last_write.insert(k.clone(), cmd.ts);
                            match v {
                                Some(v) => batch.put(k, cmd.ts, v),
                                None => batch.delete(k, cmd.ts),
                            }
                        }
                        self.hlc.update(cmd.ts);
                    }
                    CommandKind::Ingest => {
                        for v in cmd.versions {
                            r.stats.wrote(chitin_storage::span_version_bytes(
                                v.key.len(),
                                v.value.as_ref().map_or(0, Vec::len),
                            ));
                            self.hlc.update(v.ts);
                            match v.value {
                                Some(value) => batch.put(v.key, v.ts, value),
                                None => batch.delete(v.key, v.ts),
                            }
                        }
                        if *r.span.borrow() != cmd.span {
                            r.stats.span_changed();
                        }
                        *r.span.borrow_mut() = cmd.span;
                    }
                    CommandKind::Shrink => {
                        // The moved data stays in this core's engine, invisible: the span
                        // ends here. Removing it would race, on replay, with a range on
                        // this core that took it over (entries of different ranges do not
                        // replay in their original order). See the module essay in kv.
                        r.span.borrow_mut().1 = cmd.span.0;
                        r.stats.span_changed();
                        batch.delete_lock(fence_record_key(r.id));
                        r.set_fence_state(None);
                    }
                    CommandKind::Fence => {
                        for (k, v) in cmd.writes {
                            if let Some(v) = v {
                                r.set_fence_state(Some(decode_fence(&v)?));
                                if e.index <= r.recovered_up_to.get() {
                                    r.fence_since.set(fence_long_ago());
                                }
                                batch.put_lock(k, v);
                            }
                        }
                    }
                    CommandKind::Unfence => {
                        batch.delete_lock(fence_record_key(r.id));
                        r.set_fence_state(None);
                    }
                }
            }
            batch.set_applied(r.id, e.index);
            self.engine()?.write(batch).await?;
            r.applied.set(e.index);
            r.raw.borrow().store().applied.set(e.index);
            if let Some(p) = proposal {
                if let Some(w) = r.waiters.borrow_mut().remove(&p) {
                    let _ = w.try_send(Ok(()));
                }
            }
        }
        Ok(())
    }

    /// The prepare records this core holds: two-phase commits a crash interrupted before
    /// they were resolved. Each is `(range, txn, writes)`.
    pub async fn prepared_records(&self) -> Result<Vec<(RangeId, TxnId, Vec<KvWrite>)>> {
        let end = keys::prefix_end(PREPARE_PREFIX);
        let mut out = Vec::new();
        for (key, value) in self.engine()?.scan_locks(PREPARE_PREFIX, &end).await? {
            if key.len() != PREPARE_PREFIX.len() + 16 {
                return Err(Error::internal("corrupt prepare record key"));
            }
            let range = RangeId(u64::from_be_bytes(
                key[PREPARE_PREFIX.len()..PREPARE_PREFIX.len() + 8]
                    .try_into()
                    .unwrap(),
            ));
            let (txn, _, writes) = decode_prepare_record(&value)?;
            out.push((range, txn, writes));
        }
        Ok(out)
    }

    /// Resolves a recovered prepare record: commits its writes at `commit_ts` when the
    /// transaction's decision record says it committed, else drops them.
    pub async fn resolve_recovered(
        &self,
        range: RangeId,
        txn: TxnId,
        writes: Vec<KvWrite>,
        commit_ts: Option<Timestamp>,
    ) -> Result<()> {
        let replica = self.replica(range)?;
        let result = match commit_ts {
            Some(ts) => {
                self.replicate(&replica, CommandKind::Commit, txn, ts, &writes)
                    .await
            }
            None => {
                self.replicate(&replica, CommandKind::Abort, txn, Timestamp::MIN, &[])
                    .await
            }
        };
        // Latched again after the restart (`relatch`): resolved now.
        replica.release(txn);
        result
    }

    /// Whether every replica of this core has latched its prepare records again since
    /// the store opened (on a single node: applied its whole log, as the leader it is).
    pub fn relatched(&self) -> bool {
        self.replicas.borrow().values().all(|r| r.relatched.get())
    }

    /// Installs a snapshot raft handed to this follower: the range's versions, its
    /// prepare records, span, configuration and applied index, in one engine batch; then
    /// the raft storage starts after it. Stale prepare records of the range go.
    async fn install_snapshot(&self, r: &Replica, snap: Snapshot) -> Result<()> {
        let engine = self.engine()?;
        let meta = snap.get_metadata().clone();
        let (index, term) = (meta.index, meta.term);
        let conf = meta.get_conf_state().clone();
        let (cmd, mut spooled) = match super::snapshot::parse_streamed(&snap.data) {
            Some((id, chunks, rest)) => {
                let file = self
                    .spools
                    .borrow_mut()
                    .take(r.id, id, chunks)
                    .ok_or_else(|| {
                        Error::internal(format!("streamed snapshot of {} is not spooled", r.id))
                    })?;
                (Some(Command::decode(rest)?), Some(file))
            }
            None if snap.data.is_empty() => (None, None),
            None => (Some(Command::decode(&snap.data)?), None),
        };
        let mut bytes = 0u64;
        // A streamed snapshot's pages, each in a batch of its own, before the final batch.
        while let Some(chunk) = match spooled.as_mut() {
            Some(f) => f.next_chunk()?,
            None => None,
        } {
            let page = Command::decode(&chunk)?;
            let mut batch = WriteBatch::new();
            for v in page.versions {
                self.hlc.update(v.ts);
                bytes += (v.key.len() + v.value.as_ref().map_or(0, Vec::len)) as u64;
                match v.value {
                    Some(value) => batch.put(v.key, v.ts, value),
                    None => batch.delete(v.key, v.ts),
                }
            }
            engine.write(batch).await?;
            self.metrics
                .raft_snapshot_chunks_applied
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        drop(spooled);
        let mut batch = WriteBatch::new();
        let mut start = PREPARE_PREFIX.to_vec();
        start.extend_from_slice(&r.id.0.to_be_bytes());
        let end = keys::prefix_end(&start);
        for (key, _) in engine.scan_locks(&start, &end).await? {
            batch.delete_lock(key);
        }
        let fence_key = fence_record_key(r.id);
        batch.delete_lock(fence_key.clone());
        let mut fence = None;
        r.stats.bytes.set(None);
        if let Some(cmd) = &cmd {
            for v in &cmd.versions {
                self.hlc.update(v.ts);
                bytes += (v.key.len() + v.value.as_ref().map_or(0, Vec::len)) as u64;
                match &v.value {
                    Some(value) => batch.put(v.key.clone(), v.ts, value.clone()),
                    None => batch.delete(v.key.clone(), v.ts),
                }
            }
            for (key, value) in &cmd.writes {
                if let Some(value) = value {
                    if *key == fence_key {
                        fence = Some(decode_fence(value)?);
                    }
                    batch.put_lock(key.clone(), value.clone());
                }
            }
        }
        let record = RaftStateRecord {
            snap_index: index,
            snap_term: term,
            conf: conf.clone(),
        };
        batch.put_lock(raft_state_key(r.id), record.encode());
        batch.set_applied(r.id, index);
        engine.write(batch).await?;
        // The snapshot is in no log: make it durable before the log forgets what it
        // replaces (entries after it are appended from index + 1 on).
        engine.flush().await?;
        self.log.truncate(r.id, index + 1).await?;
        self.log.sync().await?;
        {
            let raw = r.raw.borrow();
            let st = raw.store();
            let mut bare = Snapshot::default();
            bare.set_metadata(meta);
            st.wl()
                .apply_snapshot(bare)
                .map_err(|e| Error::internal(format!("raft snapshot {}: {e}", r.id)))?;
            st.applied.set(index);
            *st.conf.borrow_mut() = conf;
        }
        r.applied.set(index);
        r.truncated.set(index);
        r.snap_point.set((index, term));
        if let Some(cmd) = cmd {
            *r.span.borrow_mut() = cmd.span;
        }
        r.set_fence_state(fence);
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics.raft_snapshots_applied.fetch_add(1, Relaxed);
        self.metrics
            .raft_snapshot_bytes_received
            .fetch_add(bytes, Relaxed);
        Ok(())
    }

    /// Fills a `MsgSnapshot` raft produced with the range's data (read after the applied
    /// index it names: commands are idempotent, so a snapshot that also holds some later
    /// writes converges once the follower applies the entries after it) and sends it.
    /// Reports the outcome to raft.
    async fn send_snapshot(self: Rc<Self>, range: RangeId, mut msg: Message) {
        let to = msg.to;
        let Some(r) = self.replicas.borrow().get(&range).cloned() else {
            return;
        };
        let dest = self
            .node_cores
            .borrow()
            .get(&to)
            .map(|n| (to, keys::core_for_range(range, *n) as u32));
        let data = async {
            let engine = self.engine()?;
            let span = r.span.borrow().clone();
            // The first page; a range larger than one chunk streams the rest (and this
            // page) ahead of the raft message.
            let (mut versions, next) = if span.0 < span.1 {
                engine
                    .scan_versions_page(&span.0, &span.1, super::snapshot::chunk_bytes())
                    .await?
            } else {
                (Vec::new(), None)
            };
            let mut streamed = None;
            if next.is_some() {
                let dest = dest.ok_or_else(|| Error::internal("snapshot to an unknown node"))?;
                let first = std::mem::take(&mut versions);
                streamed = Some(
                    self.stream_snapshot(range, dest, &span, first, next)
                        .await?,
                );
            }
            let mut start = PREPARE_PREFIX.to_vec();
            start.extend_from_slice(&range.0.to_be_bytes());
            let end = keys::prefix_end(&start);
            let mut records = engine.scan_locks(&start, &end).await?;
            // The fence record travels with the data: the new replica holds requests to a
            // span that is moving away as the others do.
            let fence = fence_record_key(range);
            let mut fence_end = fence.clone();
            fence_end.push(0);
            records.extend(engine.scan_locks(&fence, &fence_end).await?);
            let cmd = Command {
                kind: CommandKind::Ingest,
                span,
                versions,
                writes: records.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                ..Default::default()
            };
            Ok::<_, Error>(match streamed {
                Some((id, chunks)) => super::snapshot::streamed_data(id, chunks, &cmd.encode()),
                None => cmd.encode(),
            })
        }
        .await;
        let delivered = match data {
            Ok(data) => {
                use std::sync::atomic::Ordering::Relaxed;
                self.metrics.raft_snapshots_sent.fetch_add(1, Relaxed);
                self.metrics
                    .raft_snapshot_bytes_sent
                    .fetch_add(data.len() as u64, Relaxed);
                msg.mut_snapshot().data = data;
                let transport = self.transport.borrow().clone();
                match (transport, dest) {
                    (Some(t), Some((_, core))) => {
                        let bytes = prost011::Message::encode_to_vec(&msg);
                        t.send_raft(
                            (chitin_net::NodeId(to), chitin_net::CoreId(core)),
                            range.0,
                            bytes::Bytes::from(bytes),
                        );
                        true
                    }
                    _ => false,
                }
            }
            Err(e) => {
                eprintln!("core {}: snapshot of {range} for node {to}: {e}", self.core);
                false
            }
        };
        r.snap_reports.borrow_mut().push((to, delivered));
        self.unquiesce(&r);
    }

    /// Spools one chunk of a streamed snapshot sent to this core
    /// ([`crate::cluster::METHOD_SNAPSHOT_CHUNK`]).
    pub fn snapshot_chunk(&self, payload: &[u8]) -> Result<()> {
        let (range, id, seq, cmd) = super::snapshot::parse_chunk(payload)?;
        if keys::core_for_range(range, self.ncores) != self.core {
            return Err(Error::internal(format!(
                "a snapshot chunk of {range} reached core {}",
                self.core
            )));
        }
        self.spools.borrow_mut().add(range, id, seq, cmd)
    }

    /// Streams the versions of `span` to node `to`'s core `core` in chunks of
    /// [`super::snapshot::chunk_bytes`], the first page being `first` (read already) and
    /// the next starting at `next`, under [`super::snapshot::RATE`]; answers the stream id
    /// and the number of chunks.
    async fn stream_snapshot(
        &self,
        range: RangeId,
        (to, core): (u64, u32),
        span: &(Vec<u8>, Vec<u8>),
        first: Vec<VersionedKeyValue>,
        mut next: Option<Vec<u8>>,
    ) -> Result<(u64, u32)> {
        use super::snapshot;
        use std::sync::atomic::Ordering::Relaxed;
        let transport = self
            .transport
            .borrow()
            .clone()
            .ok_or_else(|| Error::internal("no transport for a snapshot"))?;
        let id = self.hlc.now().wall;
        let started = Instant::now();
        let mut sent = 0u64;
        let mut seq = 0u32;
        let mut page = first;
        loop {
            let cmd = Command {
                kind: CommandKind::Ingest,
                versions: std::mem::take(&mut page),
                ..Default::default()
            }
            .encode();
            let payload = snapshot::chunk_payload(range, id, seq, &cmd);
            sent += payload.len() as u64;
            transport
                .call(
                    chitin_net::Endpoint::new(chitin_net::NodeId(to), chitin_net::CoreId(core)),
                    crate::cluster::METHOD_SNAPSHOT_CHUNK,
                    bytes::Bytes::from(payload),
                    snapshot::CHUNK_TIMEOUT,
                )
                .await
                .map_err(|e| Error::internal(format!("snapshot chunk {seq} of {range}: {e}")))?;
            self.metrics
                .raft_snapshot_bytes_sent
                .fetch_add(cmd.len() as u64, Relaxed);
            self.metrics.raft_snapshot_chunks_sent.fetch_add(1, Relaxed);
            seq += 1;
            // Throttle: no faster than RATE bytes a second.
            let due = Duration::from_secs_f64(sent as f64 / snapshot::RATE as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                glommio::timer::sleep(wait).await;
            }
            let Some(from) = next.take() else {
                return Ok((id, seq));
            };
            let (p, n) = self
                .engine()?
                .scan_versions_page(&from, &span.1, snapshot::chunk_bytes())
                .await?;
            page = p;
            next = n;
        }
    }

    /// Keeps leadership of this core's ranges away from `nodes` (besides the nodes the
    /// last [`Store::allocate`] found gone) until the next allocation round.
    pub fn avoid_leading(&self, nodes: impl IntoIterator<Item = u64>) {
        self.avoid.borrow_mut().extend(nodes);
    }

    /// The allocator's step on the ranges this core leads: a range with a voter on a node
    /// in `gone` (dead longer than the store-dead timeout, or decommissioning) gets a
    /// replacement on a node of `candidates` in one joint-consensus change (add the new
    /// voter, remove the old); a range with fewer than `num_replicas` voters gets one
    /// more; when nothing is gone, one range per round moves from the voter holding the
    /// most of this core's replicas to the candidate holding the fewest, if they differ by
    /// two or more (rebalancing by count, as this core sees it). One change per range at a
    /// time; raft-rs leaves the joint configuration by itself. Returns how many changes it
    /// proposed.
    pub fn allocate(
        &self,
        gone: &std::collections::HashSet<u64>,
        candidates: &[u64],
        num_replicas: usize,
    ) -> usize {
        *self.avoid.borrow_mut() = gone.clone();
        let mut proposed = 0;
        let mut under = 0u64;
        let mut rebalanced = false;
        let mut load: HashMap<u64, usize> = HashMap::new();
        let replicas: Vec<Rc<Replica>> = self.replicas.borrow().values().cloned().collect();
        for r in &replicas {
            for v in r.voters() {
                *load.entry(v).or_default() += 1;
            }
        }
        for r in replicas {
            if !r.serving() || !r.conf_queue.borrow().is_empty() || r.fence.borrow().is_some() {
                // A split in progress keeps its fence in this leader's memory: no
                // membership change (and no leadership transfer) until it is done.
                continue;
            }
            let (voters, me) = {
                let raw = r.raw.borrow();
                if raw.raft.has_pending_conf() {
                    continue;
                }
                let conf = raw.store().conf.borrow();
                if !conf.voters_outgoing.is_empty() {
                    continue;
                }
                (conf.voters.clone(), raw.raft.id)
            };
            // The least loaded candidate not yet a voter (ties: by range id, to spread).
            let mut pick: Vec<u64> = candidates
                .iter()
                .copied()
                .filter(|c| !voters.contains(c) && !gone.contains(c))
                .collect();
            pick.sort_by_key(|c| {
                (
                    load.get(c).copied().unwrap_or(0),
                    c.wrapping_add(r.id.0) % 7,
                )
            });
            let add = pick.first().copied();
            let remove = voters
                .iter()
                .copied()
                .find(|v| *v != me && gone.contains(v));
            if remove.is_some() || voters.len() < num_replicas || gone.contains(&me) {
                under += 1;
            }
            let mut changes = Vec::new();
            let single = |t: ConfChangeType, node: u64| {
                let mut c = ConfChangeSingle::default();
                c.set_change_type(t);
                c.node_id = node;
                c
            };
            match (add, remove) {
                (Some(a), Some(d)) => {
                    changes.push(single(ConfChangeType::AddNode, a));
                    changes.push(single(ConfChangeType::RemoveNode, d));
                }
                (Some(a), None) if voters.len() < num_replicas => {
                    changes.push(single(ConfChangeType::AddNode, a));
                }
                (None, Some(d)) if voters.len() > num_replicas => {
                    changes.push(single(ConfChangeType::RemoveNode, d));
                }
                (Some(a), None) if !rebalanced && gone.is_empty() => {
                    // Rebalance by count: move a replica from the busiest voter (never
                    // this leader) to the least loaded candidate when they differ by two
                    // or more, one range per core per round.
                    let count = |n: &u64| load.get(n).copied().unwrap_or(0);
                    let Some(busiest) = voters
                        .iter()
                        .copied()
                        .filter(|v| *v != me)
                        .max_by_key(|v| (count(v), *v))
                    else {
                        continue;
                    };
                    if count(&busiest) < count(&a) + 2 {
                        continue;
                    }
                    rebalanced = true;
                    changes.push(single(ConfChangeType::AddNode, a));
                    changes.push(single(ConfChangeType::RemoveNode, busiest));
                }
                _ => continue,
            }
            for c in &changes {
                let delta: isize = if c.get_change_type() == ConfChangeType::AddNode {
                    1
                } else {
                    -1
                };
                let e = load.entry(c.node_id).or_default();
                *e = e.saturating_add_signed(delta);
            }
            let mut cc = ConfChangeV2::default();
            cc.set_changes(changes);
            if cc.changes.len() > 1 {
                cc.set_transition(ConfChangeTransition::Auto);
            }
            r.conf_queue.borrow_mut().push(cc);
            self.unquiesce(&r);
            proposed += 1;
        }
        self.metrics
            .ranges_underreplicated
            .store(under, std::sync::atomic::Ordering::Relaxed);
        if proposed > 0 {
            self.wake();
        }
        proposed
    }

    /// Drops raft log entries every range has durably applied (the engine records its
    /// applied index per range at each flush), from the durable log and from memory. The
    /// last entry of each range stays, so raft always knows its last term. With the
    /// in-memory engine nothing is durable and the log is never truncated.
    pub async fn truncate_logs(&self) -> Result<()> {
        let _busy = Busy::new(&self.busy);
        let engine = self.engine()?;
        if matches!(*engine, StoreEngine::Mem(_)) {
            return Ok(());
        }
        let replicas: Vec<Rc<Replica>> = self.replicas.borrow().values().cloned().collect();
        let mut truncated = false;
        for r in replicas {
            let Some(durable) = engine.applied_index(r.id) else {
                continue;
            };
            // The last entry the in-memory storage holds (not raft's unstable tail).
            let last = raft::Storage::last_index(r.raw.borrow().store())
                .map_err(|e| Error::internal(format!("raft last index {}: {e}", r.id)))?;
            let mut below = (durable + 1).min(last);
            {
                // In a replicated group only the leader truncates, and only entries every
                // replica it hears from has: a lagging one catches up from the log. One
                // not heard from for an election timeout (down, or cut off) does not hold
                // the log back: it gets a snapshot when it returns.
                let raw = r.raw.borrow();
                if raw.raft.prs().iter().count() > 1 {
                    if raw.raft.state != raft::StateRole::Leader {
                        continue;
                    }
                    let me = raw.raft.id;
                    let min_match = raw
                        .raft
                        .prs()
                        .iter()
                        .filter(|(id, p)| **id == me || p.recent_active)
                        .map(|(_, p)| p.matched)
                        .min();
                    below = below.min(min_match.unwrap_or(0) + 1);
                }
            }
            if below <= r.truncated.get() + 1 {
                continue;
            }
            self.log.truncate(r.id, below).await?;
            {
                let raw = r.raw.borrow();
                raw.store()
                    .compact(below)
                    .map_err(|e| Error::internal(format!("raft compact {}: {e}", r.id)))?;
            }
            self.metrics.raft_log_truncated_entries.fetch_add(
                below - 1 - r.truncated.get(),
                std::sync::atomic::Ordering::Relaxed,
            );
            r.truncated.set(below - 1);
            truncated = true;
        }
        if truncated {
            self.log.sync().await?;
        }
        Ok(())
    }

    /// Two-phase transactions prepared on ranges this core leads and left unresolved for
    /// longer than `older`: their coordinator may be gone (`node::cluster::resolve_orphans`
    /// decides them by their decision record).
    pub fn orphans(&self, older: Duration) -> Vec<(RangeId, TxnId)> {
        let mut out = Vec::new();
        for r in self.replicas.borrow().values() {
            if !r.serving() {
                continue;
            }
            for (txn, p) in r.prepared.borrow().iter() {
                if p.durable && p.since.elapsed() > older {
                    out.push((r.id, *txn));
                }
            }
        }
        out
    }

    /// This core's replicas that serve their table range now (leaders with a lease, no
    /// split or membership change in flight): what the split queue looks at.
    /// Ranges this core serves whose fence has stood longer than `older` (a fence
    /// restored at startup counts from then).
    pub fn fenced_leaders(&self, older: Duration) -> Vec<Rc<Replica>> {
        self.replicas
            .borrow()
            .values()
            .filter(|r| {
                if r.fence.borrow().is_none() || !r.serving() {
                    return false;
                }
                match r.fence_since.get() {
                    Some(t) => t.elapsed() > older,
                    None => {
                        r.fence_since.set(Some(Instant::now()));
                        false
                    }
                }
            })
            .cloned()
            .collect()
    }

    pub fn split_candidates(&self) -> Vec<Rc<Replica>> {
        self.replicas
            .borrow()
            .values()
            .filter(|r| {
                keys::range_table(r.id).is_some()
                    && r.serving()
                    && r.fence.borrow().is_none()
                    && r.conf_queue.borrow().is_empty()
                    && !r.raw.borrow().raft.has_pending_conf()
            })
            .cloned()
            .collect()
    }

    /// The size of this core's data in `[start, end)` and its middle key.
    pub async fn span_size(&self, start: &[u8], end: &[u8]) -> Result<chitin_storage::SpanSize> {
        Ok(self.engine()?.span_size(start, end).await?)
    }

    /// Counts of ranges and pending proposals, for metrics.
    pub fn range_count(&self) -> usize {
        self.replicas.borrow().len()
    }

    /// Refreshes the raft gauges: leaders, leaseholders, replicas without a leader.
    /// Replicas the GC queue should ask about ([`super::replica_gc`]), with their count of
    /// delivered messages: those that for `after` have known no leader or stood outside
    /// their own group's configuration (removed, or added and never initialized), and were
    /// not found still a member within `recheck`. Leaders are never candidates.
    pub fn gc_candidates(&self, after: Duration, recheck: Duration) -> Vec<(RangeId, u64)> {
        let now = Instant::now();
        let mut out = Vec::new();
        for r in self.replicas.borrow().values() {
            let suspect = {
                let raw = r.raw.borrow();
                let me = raw.raft.id;
                let conf = raw.store().conf.borrow();
                let member = conf.voters.contains(&me)
                    || conf.learners.contains(&me)
                    || conf.voters_outgoing.contains(&me);
                raw.raft.state != raft::StateRole::Leader && (raw.raft.leader_id == 0 || !member)
            };
            if !suspect {
                r.leaderless_since.set(None);
                continue;
            }
            let since = *r.leaderless_since.get().get_or_insert(now);
            r.leaderless_since.set(Some(since));
            let checked = r.gc_checked.get().is_some_and(|t| now < t + recheck);
            if now >= since + after && !checked {
                out.push((r.id, r.msgs_in.get()));
            }
        }
        out
    }

    /// The GC queue found `range`'s replica here still a member of its group.
    pub fn gc_keep(&self, range: RangeId) {
        if let Some(r) = self.replicas.borrow().get(&range) {
            r.gc_checked.set(Some(Instant::now()));
        }
    }

    /// Destroys `range`'s replica here, which its group's leader answered is not a member:
    /// unless a raft message reached it since the question (its count of delivered
    /// messages is not `seen` any more: it may have been added back) or it leads. Drops it
    /// from memory and its raft log, then in one engine batch its raft-state, prepare and
    /// fence records and its data (when no other replica here overlaps its span), and
    /// records it as gone, so no request starts it again from the initial seed. Answers
    /// whether it was destroyed.
    pub async fn destroy_replica(&self, range: RangeId, seen: u64) -> Result<bool> {
        // Between raft rounds: none holds the replica across an await when it goes.
        let waited = Instant::now();
        while self.busy.get() > 0 {
            if waited.elapsed() > Duration::from_secs(5) {
                return Ok(false);
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        let Some(r) = self.replicas.borrow().get(&range).cloned() else {
            return Ok(false);
        };
        if r.msgs_in.get() != seen
            || r.raw.borrow().raft.state == raft::StateRole::Leader
            || !r.queue.borrow().is_empty()
            || !r.waiters.borrow().is_empty()
        {
            return Ok(false);
        }
        let engine = self.engine()?;
        self.replicas.borrow_mut().remove(&range);
        self.gone.borrow_mut().insert(range);
        // The log first: a crash before the engine batch leaves the raft-state record,
        // from which the replica comes back (as a member of its old group) and is
        // collected again; the other order would bring it back from the initial seed.
        self.log.remove_range(range).await?;
        let mut batch = WriteBatch::new();
        let mut start = PREPARE_PREFIX.to_vec();
        start.extend_from_slice(&range.0.to_be_bytes());
        let end = keys::prefix_end(&start);
        for (key, _) in engine.scan_locks(&start, &end).await? {
            batch.delete_lock(key);
        }
        batch.delete_lock(fence_record_key(range));
        batch.delete_lock(raft_state_key(range));
        batch.put_lock(super::replica::gone_key(range), Vec::new());
        batch.set_applied(range, 0);
        let (lo, hi) = r.span.borrow().clone();
        let overlaps = self.replicas.borrow().values().any(|o| {
            let span = o.span.borrow();
            span.0 < hi && lo < span.1
        });
        if lo < hi && !overlaps {
            // Hides every version written here before (a later replica's writes stay).
            batch.delete_range(lo, hi, Timestamp::MAX);
        }
        engine.write(batch).await?;
        engine.flush().await?;
        r.latches_changed();
        self.metrics
            .replicas_gc
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }

    pub fn update_raft_gauges(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let (mut leaders, mut serving, mut leaderless) = (0, 0, 0);
        for r in self.replicas.borrow().values() {
            let (lead, known) = {
                let raw = r.raw.borrow();
                (
                    raw.raft.state == raft::StateRole::Leader,
                    raw.raft.leader_id != 0,
                )
            };
            leaders += lead as u64;
            serving += (lead && r.serving()) as u64;
            leaderless += (!known) as u64;
        }
        self.metrics.raft_leaders.store(leaders, Relaxed);
        self.metrics.raft_leaseholders.store(serving, Relaxed);
        self.metrics.raft_leaderless.store(leaderless, Relaxed);
        self.metrics
            .replicas
            .store(self.replicas.borrow().len() as u64, Relaxed);
        if let Some(t) = self.transport.borrow().as_ref() {
            let st = t.stats();
            self.metrics.raft_messages_sent.store(st.raft_sent, Relaxed);
            self.metrics
                .raft_messages_received
                .store(st.raft_received, Relaxed);
            self.metrics.raft_messages_dropped.store(
                st.raft_dropped_queue_full + st.raft_dropped_fault + st.raft_dropped_conn,
                Relaxed,
            );
        }
    }
}

/// A durable prepare record (a `Prepare` command): its transaction, timestamp and writes.
fn decode_prepare_record(value: &[u8]) -> Result<(TxnId, Timestamp, Vec<KvWrite>)> {
    let cmd = Command::decode(value)?;
    let writes = cmd
        .writes
        .into_iter()
        .map(|(key, v)| match v {
            Some(value) => KvWrite::Put { key, value },
            None => KvWrite::Delete { key },
        })
        .collect();
    Ok((cmd.txn, cmd.ts, writes))
}

/// The error for a request that reached a range which does not hold its keys.
fn mismatch(replica: &Replica) -> Error {
    Error::new(
        ErrorKind::RangeKeyMismatch,
        format!(
            "restart transaction: key outside range {} (it was split)",
            replica.id
        ),
    )
}

/// Starts a ReadIndex round on a replicated range's leader whose lease runs out within
/// half a lease (or whose last round got no answer for a lease): a quorum confirming it
/// extends the lease ([`Replica::serving`]). Rounds ride on raft's heartbeats.
fn renew_lease(r: &Replica, raw: &mut RawNode<RangeStorage>) {
    use super::replica::{lease_context, LEASE};
    if raw.raft.state != raft::StateRole::Leader || raw.raft.prs().iter().count() == 1 {
        return;
    }
    let now = Instant::now();
    let fresh = r.lease_until.get().is_some_and(|t| t > now + LEASE / 2);
    let in_flight = r.lease_round.get().is_some_and(|t| now < t + LEASE);
    if fresh || in_flight {
        return;
    }
    r.lease_round.set(Some(now));
    raw.read_index(lease_context(now));
}

/// Spreads leadership (and with it the lease and the work) over the nodes: each range
/// prefers the voter `voters[range % voters]`. A leader that is not the preferred one
/// hands leadership over once that voter has caught up with its log (raft's leadership
/// transfer, §3.10 of Ongaro's thesis), at most once a second per range. The allocator of
/// issue 5 will replace this fixed preference with one by load.
fn prefer_leader(
    r: &Replica,
    raw: &mut RawNode<RangeStorage>,
    avoid: &std::collections::HashSet<u64>,
    draining: bool,
) {
    if raw.raft.state != raft::StateRole::Leader
        || raw.raft.lead_transferee.is_some()
        || r.fence.borrow().is_some()
    {
        return;
    }
    let mut voters: Vec<u64> = raw
        .raft
        .prs()
        .conf()
        .voters()
        .ids()
        .iter()
        .filter(|id| !avoid.contains(id))
        .collect();
    if draining {
        // Any other voter will do.
        voters.retain(|id| *id != raw.raft.id);
        if voters.is_empty() {
            return;
        }
    } else if voters.len() < 2 {
        return;
    }
    voters.sort_unstable();
    let preferred = voters[(r.id.0 % voters.len() as u64) as usize];
    if preferred == raw.raft.id {
        return;
    }
    let now = Instant::now();
    if r.last_transfer
        .get()
        .is_some_and(|t| now < t + Duration::from_secs(1))
    {
        return;
    }
    let last = raw.raft.raft_log.last_index();
    let caught_up = raw
        .raft
        .prs()
        .get(preferred)
        .is_some_and(|p| p.matched == last && p.recent_active);
    if caught_up {
        r.last_transfer.set(Some(now));
        raw.transfer_leader(preferred);
    }
}

/// A fence's start for one the restart cut short: old enough to be resolved at once.
fn fence_long_ago() -> Option<Instant> {
    Instant::now()
        .checked_sub(super::split::FENCE_ABANDONED + Duration::from_secs(1))
        .or(Some(Instant::now()))
}

/// After a restart, how long the prepares a range latches again count as orphans at once.
const RESTART_PREPARES: Duration = Duration::from_secs(30);

/// How often (in 100 ms raft ticks) the raft logs are truncated.
const TRUNCATE_EVERY_TICKS: u64 = 20;

fn prevented() -> Error {
    Error::retry("restart transaction: aborted while committing (a recoverer found it unfinished)")
}

fn being_split() -> Error {
    Error::retry("restart transaction: the range is being split")
}

fn refresh_failed() -> Error {
    Error::retry(
        "restart transaction: TransactionRetryWithProtoRefreshError: RETRY_SERIALIZABLE: a value read was written since",
    )
}

/// Data a split moves is replicated in raft entries of about this many bytes.
const INGEST_CHUNK_BYTES: usize = 1 << 20;

/// The smallest timestamp above `ts`.
pub fn next_ts(ts: Timestamp) -> Timestamp {
    if ts.logical == u32::MAX {
        Timestamp::new(ts.wall + 1, 0)
    } else {
        Timestamp::new(ts.wall, ts.logical + 1)
    }
}
