//! The node: one process, N cores, each a pinned (or unpinned) glommio executor that owns a
//! [`Store`] (its ranges, engine and raft log) and its share of SQL connections.
//!
//! Cores talk through a mesh of bounded SPSC channels (`glommio::channels::shared_channel`),
//! one per ordered pair, built once here. [`CoreCtx::send`] routes a KV request to the core
//! that owns its range: a direct call when that is this core, a channel message otherwise.
//! Every core binds the SQL port with SO_REUSEPORT (glommio's default), so the kernel
//! spreads connections over cores and the accepting core is the connection's gateway.
//!
//! The SQL port is also the node-transport port: a connection opening with the transport's
//! magic is handed to the core its handshake names ([`cluster::accept_transport`]); raft
//! messages and forwarded KV requests arrive there. Before the node joins a cluster
//! (`chitin init`) it listens but serves no ranges.
//!
//! Shutdown is explicit (DESIGN §10): on SIGTERM/SIGINT every core stops accepting, waits
//! briefly for sessions to finish, stops its raft driver, flushes its engine and exits.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::{LocalExecutorBuilder, Placement};

use chitin_storage::{RangeId, Timestamp};

use crate::error::{Error, ErrorKind, Result};
use crate::kv::keys::core_for_range;
use crate::kv::ranges::{RangeCache, RangeChange, RangeChangeLog, RangeDesc};
use crate::kv::store::Store;
use crate::kv::{KvRequest, KvResponse, LockWait, ReadResult};
use crate::metrics::CoreMetrics;
use crate::txn::Hlc;

pub mod catalog_pins;
pub mod clock;
pub mod cluster;
pub mod settings;
pub mod txn_ids;
pub mod txn_record;

/// How a node is started.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub store: PathBuf,
    pub listen_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub cores: usize,
    pub pin: bool,
    pub cache_bytes: usize,
    pub engine: crate::kv::engine::EngineKind,
    /// `start-single-node`: a one-node cluster, initialized on first start.
    pub single_node: bool,
    /// `start --join`: the addresses of the cluster's nodes (this one may be among them).
    pub join: Vec<SocketAddr>,
    /// The address other nodes reach this one at [default: the listen address].
    pub advertise_addr: Option<SocketAddr>,
    /// `--locality region=R,zone=Z` (recorded; placement by locality is still to do).
    pub locality: String,
    /// `--max-offset`: how far apart the nodes' clocks may be.
    pub max_offset: Duration,
}

impl NodeConfig {
    /// A single-node configuration with the given addresses (tests, tools).
    pub fn single_node(store: PathBuf, listen_addr: SocketAddr, http_addr: SocketAddr) -> Self {
        NodeConfig {
            store,
            listen_addr,
            http_addr,
            cores: 1,
            pin: false,
            cache_bytes: 128 << 20,
            engine: crate::kv::engine::EngineKind::Lsm,
            single_node: true,
            join: Vec::new(),
            advertise_addr: None,
            locality: String::new(),
            max_offset: crate::txn::DEFAULT_MAX_OFFSET,
        }
    }
}

/// State every core reads: atomics only on hot paths.
pub struct NodeShared {
    pub hlc: Arc<Hlc>,
    pub ncores: usize,
    /// Bumped after every schema change; cores reload their catalog cache when it moves.
    pub catalog_version: AtomicU64,
    /// Per core: the oldest catalog version an open transaction there began with
    /// (`u64::MAX`: none). See [`catalog_pins`].
    pub oldest_catalog: Vec<AtomicU64>,
    /// Per core: rows written per table by the transactions it committed since the
    /// table's statistics were last refreshed by this node (`sql::stats`). Each core locks
    /// only its own map, except core 0 once a second.
    pub mutations: Vec<Mutex<HashMap<u32, u64>>>,
    pub next_txn: AtomicU64,
    /// The first transaction id not durably reserved (`txn_ids`).
    pub txn_id_limit: AtomicU64,
    pub next_backend: AtomicU64,
    pub metrics: Vec<Arc<CoreMetrics>>,
    pub shutdown: AtomicBool,
    pub ready: AtomicBool,
    /// Cores that resolved their interrupted two-phase commits.
    pub recovered: AtomicU64,
    /// (backend pid, secret) → the cancel flag of that session. Cold path (CancelRequest).
    pub cancels: Mutex<HashMap<(i32, i32), Arc<AtomicBool>>>,
    pub listen_addr: SocketAddr,
    /// Bumped after every split or merge publishes its descriptors: cores bring their range
    /// cache up to date when it moves ([`NodeShared::publish_range_change`]).
    pub range_gen: AtomicU64,
    /// The descriptor changes behind the recent generations. Cold path (splits, merges).
    pub range_changes: Mutex<RangeChangeLog>,
    /// Held by the one split in progress on the node.
    pub splitting: AtomicBool,
    /// This node's id in its cluster (0 until it joins one).
    pub node_id: AtomicU64,
    /// The cluster as this node knows it (`None` until it joins one).
    pub cluster: Mutex<Option<Arc<crate::cluster::ClusterState>>>,
    /// Bumped when `cluster` or the fault rules change: cores re-read them.
    pub cluster_gen: AtomicU64,
    /// Nodes this node's transports drop all traffic to and from (tests' fault hook).
    pub partitioned: Mutex<Vec<u64>>,
    /// Where other nodes reach this one.
    pub advertise_addr: SocketAddr,
    pub join: Vec<SocketAddr>,
    pub store_dir: PathBuf,
    /// Held while `chitin init` runs on this node.
    pub initializing: AtomicBool,
    /// Ranges have more than one replica (set with `cluster`).
    pub multi_replica: AtomicBool,
    /// `chitin node drain`: new SQL connections are refused and this node's leaders hand
    /// their leadership (and leases) to other voters. Until the process restarts.
    pub draining: AtomicBool,
    /// When this node last got a heartbeat answer from each other node (core 0 beats
    /// every second). Cold path: read once a second by each core's allocator.
    pub liveness: Mutex<HashMap<u64, std::time::Instant>>,
    /// When the node started (a node never heard from counts as dead only once this
    /// node has been up for the store-dead timeout).
    pub started: std::time::Instant,
    /// Cluster settings as last read from the system range (`SET CLUSTER SETTING`):
    /// name → value. Core 0 polls them.
    pub settings: Mutex<Arc<HashMap<String, String>>>,
    /// The cluster has more than one node: clocks differ, reads have uncertainty.
    pub multi_node: AtomicBool,
    /// How far each other node's clock is from this one's, as heartbeats measured it
    /// ([`clock::ClockMonitor`]); core 0 writes, the status endpoint reads.
    pub clock: Mutex<clock::ClockMonitor>,
    /// This node's clock is off by more than the maximum offset from most of the others:
    /// it serves no SQL and leads no range until that changes.
    pub clock_unsafe: AtomicBool,
    /// Other nodes whose last heartbeat answer said they are draining (or have a bad
    /// clock): no range hands its leadership to them.
    pub peers_draining: Mutex<std::collections::HashSet<u64>>,
}

impl NodeShared {
    /// Records a change of the range descriptors (already durable in the system range)
    /// under the next range generation; every core applies it before its next lookup.
    pub fn publish_range_change(&self, change: RangeChange) {
        let mut log = self.range_changes.lock().unwrap();
        let generation = self.range_gen.load(Ordering::SeqCst) + 1;
        log.push(generation, change);
        self.range_gen.store(generation, Ordering::SeqCst);
    }

    /// The cluster state, if the node has joined a cluster.
    pub fn cluster(&self) -> Option<Arc<crate::cluster::ClusterState>> {
        self.cluster.lock().ok().and_then(|c| c.clone())
    }

    /// The value of cluster setting `name` as last polled, if it was ever set.
    pub fn setting(&self, name: &str) -> Option<String> {
        self.settings.lock().ok().and_then(|s| s.get(name).cloned())
    }

    /// Whether ranges have more than one replica (some single-node shortcuts are off).
    pub fn replicated(&self) -> bool {
        self.multi_replica.load(Ordering::Relaxed)
    }

    /// Where the uncertainty interval of a transaction reading at `read_ts` ends: the
    /// maximum clock offset later in a cluster of several nodes, nowhere (`read_ts`) on a
    /// single node, whose cores share one clock.
    pub fn uncertainty_limit(&self, read_ts: Timestamp) -> Timestamp {
        if !self.multi_node.load(Ordering::Relaxed) {
            return read_ts;
        }
        let offset = self.hlc.max_offset().as_nanos() as u64;
        Timestamp::new(read_ts.wall.saturating_add(offset), read_ts.logical)
    }

    /// Fails when this node must not serve SQL: its clock is too far off (SQLSTATE 58000).
    pub fn check_clock(&self) -> Result<()> {
        if self.clock_unsafe.load(Ordering::Relaxed) {
            return Err(clock::unsafe_error(self));
        }
        Ok(())
    }
}

/// A message on the core mesh.
pub enum CoreMsg {
    Request {
        from: usize,
        id: u64,
        req: KvRequest,
    },
    Response {
        id: u64,
        resp: KvResponse,
    },
    /// A node-transport connection accepted on another core, for this one.
    Connection {
        stream: std::net::TcpStream,
        handshake: chitin_net::Handshake,
    },
}

/// Where a request sent to another core of the node gets its answer.
#[derive(Default)]
pub struct ReplySlot {
    value: Cell<Option<KvResponse>>,
    waker: RefCell<Option<std::task::Waker>>,
}

/// What one core's tasks share.
/// What `SHOW RANGES` shows of one range ([`CoreCtx::replicas_of`]).
pub struct RangeInfo {
    /// Voters (both halves of a joint configuration), sorted.
    pub voters: Vec<u64>,
    /// The node last known to lead it.
    pub leader: u64,
    /// Bytes of MVCC data in its span, as its leader counts them.
    pub bytes: Option<u64>,
    /// Requests per second over its leader's last load window.
    pub qps: Option<f64>,
    /// How long its span has been unchanged.
    pub age: Option<Duration>,
}

pub struct CoreCtx {
    pub core: usize,
    pub store: Rc<Store>,
    pub shared: Arc<NodeShared>,
    peers: RefCell<Vec<Option<Rc<ConnectedSender<CoreMsg>>>>>,
    pending: RefCell<HashMap<u64, Rc<ReplySlot>>>,
    /// Reply slots free for reuse. PERF: a request to another core allocates no reply
    /// channel once the pool is warm.
    reply_pool: RefCell<Vec<Rc<ReplySlot>>>,
    next_req: Cell<u64>,
    pub catalog: RefCell<Option<Rc<crate::sql::catalog::Catalog>>>,
    /// This core's open transactions by catalog version ([`catalog_pins`]).
    pub pins: catalog_pins::CorePins,
    /// SQL sessions open on this core.
    pub active_sessions: Cell<usize>,
    /// The range descriptors this core routes by.
    pub ranges: RefCell<RangeCache>,
    /// This core's end of the node transport.
    pub transport: chitin_net::Transport,
    /// Range → the node last known to lead it (the gateway's leader cache).
    pub leaders: RefCell<HashMap<RangeId, u64>>,
    /// This context itself, for background work that outlives a borrow of it.
    me: std::rc::Weak<CoreCtx>,
}

impl CoreCtx {
    /// This core's context, shared (for a task spawned from code that only borrows it).
    pub fn rc(&self) -> Rc<CoreCtx> {
        self.me
            .upgrade()
            .expect("a core's context lives as long as its executor")
    }

    pub fn metrics(&self) -> &CoreMetrics {
        &self.shared.metrics[self.core]
    }

    /// Sends `req` to the range's leader and waits for the answer: to the core of this node
    /// that holds the range when it leads (or the leader is unknown), else over the node
    /// transport to the leader's node. `NotLeader` answers update the leader cache and the
    /// request goes again, for up to [`LEADER_WAIT`] (then a retryable error).
    pub async fn send(&self, req: KvRequest) -> Result<KvResponse> {
        let started = std::time::Instant::now();
        let mut req = req;
        let mut attempt = 0u32;
        loop {
            let range = req.range();
            let me = self.shared.node_id.load(Ordering::Relaxed);
            let cached = self.leaders.borrow().get(&range).copied();
            let leader = match cached {
                Some(n) if n != me && n != 0 => match self.forward(n, &req).await {
                    Ok(KvResponse::NotLeader { leader, .. }) => leader,
                    Ok(KvResponse::Err(e)) => return Err(e),
                    Ok(r) => return Ok(r),
                    Err(e) => {
                        self.leaders.borrow_mut().remove(&range);
                        if started.elapsed() > LEADER_WAIT || !e.is_retryable() {
                            return Err(e);
                        }
                        0
                    }
                },
                _ => match self.send_local(req).await? {
                    KvResponse::NotLeader {
                        leader,
                        req: Some(back),
                    } => {
                        req = *back;
                        leader
                    }
                    KvResponse::NotLeader { .. } => {
                        return Err(Error::internal("a core lost a request it did not lead"))
                    }
                    r => return Ok(r),
                },
            };
            // Replicas cut off from their group, or removed from it and not yet collected,
            // can name each other as leader forever: after a few answers that led nowhere,
            // every other attempt asks the members in turn instead of following the hint.
            let leader = if attempt >= 4 && attempt % 2 == 1 {
                0
            } else {
                leader
            };
            if leader == 0 || leader == me {
                self.leaders.borrow_mut().remove(&range);
                // Nobody here knows a leader: this node may hold no replica of the range
                // (it was added elsewhere) or one cut off from its group. Ask another
                // node next, in turn; its answer names the leader if it knows one.
                if leader == 0 && attempt % 2 == 1 {
                    if let Some(st) = self.shared.cluster() {
                        let others: Vec<u64> = st
                            .members
                            .iter()
                            .map(|m| m.id)
                            .filter(|id| *id != me)
                            .collect();
                        if !others.is_empty() {
                            let pick =
                                others[(range.0 as usize + attempt as usize / 2) % others.len()];
                            self.leaders.borrow_mut().insert(range, pick);
                        }
                    }
                }
            } else {
                self.leaders.borrow_mut().insert(range, leader);
            }
            if started.elapsed() > LEADER_WAIT {
                return Err(Error::retry(format!(
                    "restart transaction: range {range} has no leader (waited {LEADER_WAIT:?})"
                )));
            }
            // A known other leader is tried at once; an election or a new leader catching
            // up is waited for.
            if leader == 0 || leader == me || attempt > 3 {
                let pause = Duration::from_millis((2u64 << attempt.min(5)).min(50));
                glommio::timer::sleep(pause).await;
            }
            attempt += 1;
        }
    }

    /// Serves a request for a range of this core: DistSQL flows in the SQL layer, the rest
    /// in the store.
    async fn serve(&self, req: KvRequest) -> KvResponse {
        match req {
            // Boxed: a flow reads through `send`, which may serve a request here.
            KvRequest::Flow { spec, .. } => Box::pin(crate::sql::distsql::serve(self, spec)).await,
            req => self.store.handle(req).await,
        }
    }

    /// Sends `req` to node `node`'s core for its range over the transport.
    async fn forward(&self, node: u64, req: &KvRequest) -> Result<KvResponse> {
        // A lock wait there goes in slices, each answered well inside the transport's
        // timeout: a long wait for a live holder is not taken for a dead node.
        if let KvRequest::Lock {
            range,
            txn,
            key,
            wait: LockWait::Block,
        } = req
        {
            let slice = KvRequest::Lock {
                range: *range,
                txn: *txn,
                key: key.clone(),
                wait: LockWait::Slice,
            };
            let started = std::time::Instant::now();
            loop {
                match self.forward_once(node, &slice).await {
                    Ok(KvResponse::Err(e))
                        if e.kind == ErrorKind::LockWaitSlice
                            && started.elapsed() < crate::kv::store::LOCK_WAIT_MAX =>
                    {
                        continue
                    }
                    Ok(KvResponse::Err(e)) if e.kind == ErrorKind::LockWaitSlice => {
                        return Err(Error::retry(
                            "restart transaction: timed out waiting for a row lock",
                        ))
                    }
                    r => return r,
                }
            }
        }
        self.forward_once(node, req).await
    }

    async fn forward_once(&self, node: u64, req: &KvRequest) -> Result<KvResponse> {
        let cores = self
            .shared
            .cluster()
            .and_then(|c| c.member(node).map(|m| m.cores))
            .ok_or_else(|| Error::retry(format!("restart transaction: unknown node {node}")))?;
        let core = core_for_range(req.range(), cores) as u32;
        let mut payload = Vec::new();
        crate::kv::codec::encode_request(req, &mut payload);
        // A row lock writes nothing: like a read, it can go again (a lock taken by a
        // request whose answer was lost is taken over once stale).
        let read_only = matches!(
            req,
            KvRequest::Get { .. }
                | KvRequest::Scan { .. }
                | KvRequest::Lock { .. }
                | KvRequest::Flow { .. }
        );
        let timeout = if matches!(req, KvRequest::Flow { .. }) {
            FLOW_TIMEOUT
        } else {
            FORWARD_TIMEOUT
        };
        let reply = self
            .transport
            .call(
                (chitin_net::NodeId(node), chitin_net::CoreId(core)),
                crate::cluster::METHOD_KV,
                bytes::Bytes::from(payload),
                timeout,
            )
            .await;
        match reply {
            Ok(b) => crate::kv::codec::decode_response(&b),
            // A read can go again; a write may or may not have happened.
            Err(e) if read_only => Err(Error::retry(format!(
                "restart transaction: node {node} unreachable: {e}"
            ))),
            Err(e) => Err(Error::new(
                ErrorKind::AmbiguousResult,
                format!("result is ambiguous: node {node} unreachable: {e}"),
            )),
        }
    }

    /// The node whose replica of `range` serves it now (its raft leader, holding the
    /// lease): found by reading `key` of the range through [`CoreCtx::send`], which
    /// follows the leader. Cold path (SHOW RANGES).
    pub async fn leader_of(&self, range: RangeId, key: &[u8]) -> Result<u64> {
        self.send(KvRequest::Get {
            range,
            key: key.to_vec(),
            ts: Timestamp::MAX,
            unc: Timestamp::MIN,
        })
        .await?;
        let me = self.shared.node_id.load(Ordering::Relaxed);
        Ok(self.leaders.borrow().get(&range).copied().unwrap_or(me))
    }

    /// The voters of `range` as its leader knows them (sorted), and the node that leads
    /// it. Cold path (SHOW RANGES).
    pub async fn replicas_of(&self, range: RangeId) -> Result<RangeInfo> {
        let rows = match self.send(KvRequest::Describe { range }).await? {
            KvResponse::Rows(rows) => rows,
            other => return Err(Error::internal(format!("unexpected response {other:?}"))),
        };
        let mut voters: Vec<u64> = rows
            .iter()
            .filter(|(role, _)| matches!(role.as_slice(), b"voter" | b"outgoing"))
            .filter_map(|(_, id)| id.as_slice().try_into().ok().map(u64::from_be_bytes))
            .collect();
        voters.sort_unstable();
        voters.dedup();
        let me = self.shared.node_id.load(Ordering::Relaxed);
        let leader = self.leaders.borrow().get(&range).copied().unwrap_or(me);
        let stat = |name: &[u8]| {
            rows.iter()
                .find(|(role, _)| role.as_slice() == name)
                .and_then(|(_, v)| v.as_slice().try_into().ok())
                .map(u64::from_be_bytes)
        };
        Ok(RangeInfo {
            voters,
            leader,
            bytes: stat(b"bytes"),
            qps: stat(b"qps").map(f64::from_bits),
            age: stat(b"age_ms").map(Duration::from_millis),
        })
    }

    /// Passes `msg` to core `core` of this node over the mesh.
    pub async fn hand_over(&self, core: usize, msg: CoreMsg) {
        let peer = self.peers.borrow().get(core).cloned().flatten();
        if let Some(p) = peer {
            let _ = p.send(msg).await;
        }
    }

    /// Sends `req` to the core of this node that owns its range and waits for the answer.
    pub async fn send_local(&self, req: KvRequest) -> Result<KvResponse> {
        let target = core_for_range(req.range(), self.shared.ncores);
        let resp = if target == self.core {
            self.serve(req).await
        } else {
            let id = self.next_req.get();
            self.next_req.set(id + 1);
            let slot = self.reply_pool.borrow_mut().pop().unwrap_or_default();
            self.pending.borrow_mut().insert(id, slot.clone());
            let peer = self.peers.borrow()[target]
                .clone()
                .ok_or_else(|| Error::internal("core mesh not connected"))?;
            if peer
                .send(CoreMsg::Request {
                    from: self.core,
                    id,
                    req,
                })
                .await
                .is_err()
            {
                self.pending.borrow_mut().remove(&id);
                return Err(Error::internal(format!("core {target} is gone")));
            }
            let resp = std::future::poll_fn(|cx| match slot.value.take() {
                Some(r) => std::task::Poll::Ready(r),
                None => {
                    *slot.waker.borrow_mut() = Some(cx.waker().clone());
                    std::task::Poll::Pending
                }
            })
            .await;
            let mut pool = self.reply_pool.borrow_mut();
            if pool.len() < 1024 {
                pool.push(slot);
            }
            resp
        };
        match resp {
            KvResponse::Err(e) => Err(e),
            r => Ok(r),
        }
    }

    /// Reloads the range descriptors from the system range.
    pub async fn refresh_ranges(&self) -> Result<()> {
        let generation = self.shared.range_gen.load(Ordering::SeqCst);
        let descs = load_range_descs(self).await?;
        self.ranges.borrow_mut().install(descs, generation);
        Ok(())
    }

    /// After `RangeKeyMismatch`: catches up with this node's splits when the cache is
    /// behind them; when it is not, the range changed on another node, and every
    /// descriptor is reloaded.
    pub async fn reroute_ranges(&self) -> Result<()> {
        let generation = self.shared.range_gen.load(Ordering::SeqCst);
        if self.ranges.borrow().generation == Some(generation) {
            self.refresh_ranges().await
        } else {
            self.fresh_ranges().await
        }
    }

    /// Brings the range cache up to date with the splits and merges this node published
    /// since it was last loaded: from the node's change log, or by reloading everything
    /// when the log no longer reaches back that far.
    pub async fn fresh_ranges(&self) -> Result<()> {
        let generation = self.shared.range_gen.load(Ordering::SeqCst);
        if self.ranges.borrow().generation == Some(generation) {
            return Ok(());
        }
        let caught_up = {
            let log = self.shared.range_changes.lock().unwrap();
            log.catch_up(&mut self.ranges.borrow_mut())
        };
        if !caught_up {
            self.refresh_ranges().await?;
        }
        Ok(())
    }

    /// The range that holds `key`.
    pub async fn range_of(&self, key: &[u8]) -> Result<RangeId> {
        self.fresh_ranges().await?;
        Ok(self.ranges.borrow().range_id(key))
    }

    /// Reads `key` at `ts` from the range that holds it, following splits.
    pub async fn kv_get(&self, key: &[u8], ts: Timestamp) -> Result<Option<Vec<u8>>> {
        self.kv_read(key, ts, Timestamp::MIN)
            .await?
            .map_err(|u| Error::internal(format!("uncertain read without an interval: {u:?}")))
    }

    /// Reads `key` at `ts` from the range that holds it, following splits; a version in
    /// `(ts, unc]` answers [`Uncertain`](crate::kv::Uncertain).
    pub async fn kv_read(
        &self,
        key: &[u8],
        ts: Timestamp,
        unc: Timestamp,
    ) -> Result<ReadResult<Option<Vec<u8>>>> {
        let mut attempts = 0;
        loop {
            let range = self.range_of(key).await?;
            // PERF: a range this core leads is read in place, without copying the key into
            // a request.
            if core_for_range(range, self.shared.ncores) == self.core && self.store.serves(range) {
                match self.store.get(range, key, ts, unc).await {
                    Err(e)
                        if e.kind == ErrorKind::RangeKeyMismatch && attempts < MISMATCH_RETRIES =>
                    {
                        attempts += 1;
                        self.reroute_ranges().await?;
                        continue;
                    }
                    r => return r,
                }
            }
            let req = KvRequest::Get {
                range,
                key: key.to_vec(),
                ts,
                unc,
            };
            match self.send(req).await {
                Ok(KvResponse::Value(v)) => return Ok(Ok(v)),
                Ok(KvResponse::Uncertain(u)) => return Ok(Err(u)),
                Ok(other) => return Err(Error::internal(format!("unexpected response {other:?}"))),
                Err(e) if e.kind == ErrorKind::RangeKeyMismatch && attempts < MISMATCH_RETRIES => {
                    attempts += 1;
                    self.reroute_ranges().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes the row lock on `key` for `txn` (waiting while another transaction holds
    /// it); returns the range that holds the key and the key's last committed write.
    pub async fn kv_lock(
        &self,
        key: &[u8],
        txn: crate::kv::TxnId,
        nowait: bool,
    ) -> Result<(RangeId, Timestamp)> {
        let mut attempts = 0;
        loop {
            let range = self.range_of(key).await?;
            let req = KvRequest::Lock {
                range,
                txn,
                key: key.to_vec(),
                wait: if nowait {
                    LockWait::NoWait
                } else {
                    LockWait::Block
                },
            };
            match self.send(req).await {
                Ok(KvResponse::Locked { latest }) => {
                    self.shared.hlc.update(latest);
                    return Ok((range, latest));
                }
                Ok(other) => return Err(Error::internal(format!("unexpected response {other:?}"))),
                Err(e) if e.kind == ErrorKind::RangeKeyMismatch && attempts < MISMATCH_RETRIES => {
                    attempts += 1;
                    self.reroute_ranges().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Releases the row locks `txn` holds on `ranges` (best effort: a lock left behind is
    /// taken over after `LOCK_STALE`).
    pub async fn kv_release_locks(&self, txn: crate::kv::TxnId, ranges: &[RangeId]) {
        for &range in ranges {
            let _ = self.send(KvRequest::ReleaseLocks { range, txn }).await;
        }
    }

    /// Scans `[start, end)` at `ts` over every range it crosses, in key order: at most
    /// `limit` rows (0: no limit).
    pub async fn kv_scan(
        &self,
        start: &[u8],
        end: &[u8],
        ts: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.kv_scan_read(start, end, ts, Timestamp::MIN, limit)
            .await?
            .map_err(|u| Error::internal(format!("uncertain read without an interval: {u:?}")))
    }

    /// [`CoreCtx::kv_scan`] with the uncertainty interval `(ts, unc]`: a version there in
    /// any range answers [`Uncertain`](crate::kv::Uncertain) for the whole scan.
    pub async fn kv_scan_read(
        &self,
        start: &[u8],
        end: &[u8],
        ts: Timestamp,
        unc: Timestamp,
        limit: usize,
    ) -> Result<ReadResult<Vec<(Vec<u8>, Vec<u8>)>>> {
        let mut out = Vec::new();
        let mut cur = start.to_vec();
        let mut attempts = 0;
        while cur.as_slice() < end {
            self.fresh_ranges().await?;
            let (range, range_end) = self.ranges.borrow().locate(&cur);
            let piece_end = if !range_end.is_empty() && range_end.as_slice() < end {
                range_end
            } else {
                end.to_vec()
            };
            let req = KvRequest::Scan {
                range,
                start: cur.clone(),
                end: piece_end.clone(),
                ts,
                unc,
                limit: if limit == 0 { 0 } else { limit - out.len() },
                reverse: false,
            };
            match self.send(req).await {
                Ok(KvResponse::Rows(rows)) => {
                    if out.is_empty() {
                        out = rows;
                    } else {
                        out.extend(rows);
                    }
                    if limit != 0 && out.len() >= limit {
                        break;
                    }
                    cur = piece_end;
                }
                Ok(KvResponse::Uncertain(u)) => return Ok(Err(u)),
                Ok(other) => return Err(Error::internal(format!("unexpected response {other:?}"))),
                Err(e) if e.kind == ErrorKind::RangeKeyMismatch && attempts < MISMATCH_RETRIES => {
                    attempts += 1;
                    self.reroute_ranges().await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Ok(out))
    }
}

/// How often a request is re-routed after `RangeKeyMismatch` before giving up (40001).
pub const MISMATCH_RETRIES: usize = 10;

/// How long a request forwarded to another node may take (a partition or a dead node is
/// noticed by this timeout; requests wait up to 2 s for latches on the leader).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a DistSQL flow sent to another node may take: it reads and processes its
/// spans before it answers (a longer one fails with a retryable error).
pub const FLOW_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a request waits for its range to have a leader (elections after a node
/// failure take one to three seconds).
pub const LEADER_WAIT: Duration = Duration::from_secs(10);

/// Every explicit range descriptor, from the system range.
async fn load_range_descs(ctx: &CoreCtx) -> Result<Vec<RangeDesc>> {
    let start = crate::kv::keys::range_desc_key(&[]);
    let end = crate::kv::keys::prefix_end(&start);
    match ctx
        .send(KvRequest::Scan {
            range: crate::kv::keys::SYSTEM_RANGE,
            start,
            end,
            ts: ctx.shared.hlc.now(),
            unc: Timestamp::MIN,
            limit: 0,
            reverse: false,
        })
        .await?
    {
        KvResponse::Rows(rows) => rows.iter().map(|(_, v)| RangeDesc::decode(v)).collect(),
        other => Err(Error::internal(format!("unexpected response {other:?}"))),
    }
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// How long a starting node waits for its ports to be released (by a node killed just
/// before) before it gives up.
const PORT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts the node and blocks until it has shut down.
pub fn run(cfg: NodeConfig) -> Result<()> {
    std::fs::create_dir_all(&cfg.store).map_err(|e| {
        Error::internal(format!("cannot create store {}: {e}", cfg.store.display()))
    })?;
    // Files are opened by absolute path (glommio's directory handles need it).
    let mut cfg = cfg;
    cfg.store = std::fs::canonicalize(&cfg.store).map_err(|e| {
        Error::internal(format!("cannot resolve store {}: {e}", cfg.store.display()))
    })?;
    // Fail early and clearly if the ports are taken (by a listener: a killed node's
    // connections lingering in TIME-WAIT do not count, as for the listeners themselves).
    // A node killed a moment ago can still hold its listeners for a while: the kernel
    // closes the files of its io_uring rings after the process is gone.
    let wait_until = std::time::Instant::now() + PORT_WAIT;
    for addr in [cfg.listen_addr, cfg.http_addr] {
        loop {
            match chitin_net::listen::check_port_free(addr) {
                Ok(()) => break,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < wait_until =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(Error::internal(format!("cannot listen on {addr}: {e}"))),
            }
        }
    }
    install_signal_handlers();
    let n = cfg.cores.max(1);
    let advertise_addr = cfg.advertise_addr.unwrap_or(cfg.listen_addr);
    let mut state = crate::cluster::ClusterState::load(&cfg.store)?;
    if state.is_none() && cfg.single_node {
        let st = crate::cluster::ClusterState::single(advertise_addr, n);
        st.save(&cfg.store)?;
        state = Some(st);
    }
    if state.is_none() && cfg.join.is_empty() {
        return Err(Error::internal(
            "no cluster state in the store: pass --join (and run chitin init), or use start-single-node",
        ));
    }
    if let Some(st) = &state {
        if st.member(st.node_id).is_some_and(|m| m.cores != n) {
            return Err(Error::internal(format!(
                "this node joined its cluster with --cores {}; start it with the same count",
                st.member(st.node_id).map(|m| m.cores).unwrap_or(0)
            )));
        }
    }
    let shared = Arc::new(NodeShared {
        hlc: Arc::new(Hlc::with_max_offset(cfg.max_offset)),
        ncores: n,
        catalog_version: AtomicU64::new(1),
        oldest_catalog: (0..n).map(|_| AtomicU64::new(u64::MAX)).collect(),
        mutations: (0..n).map(|_| Mutex::new(HashMap::new())).collect(),
        next_txn: AtomicU64::new(1),
        txn_id_limit: AtomicU64::new(0),
        next_backend: AtomicU64::new(1),
        metrics: (0..n).map(|_| Arc::new(CoreMetrics::default())).collect(),
        shutdown: AtomicBool::new(false),
        ready: AtomicBool::new(false),
        recovered: AtomicU64::new(0),
        cancels: Mutex::new(HashMap::new()),
        listen_addr: cfg.listen_addr,
        range_gen: AtomicU64::new(0),
        range_changes: Mutex::new(RangeChangeLog::default()),
        splitting: AtomicBool::new(false),
        node_id: AtomicU64::new(0),
        cluster: Mutex::new(None),
        cluster_gen: AtomicU64::new(0),
        partitioned: Mutex::new(Vec::new()),
        advertise_addr,
        join: cfg.join.clone(),
        store_dir: cfg.store.clone(),
        initializing: AtomicBool::new(false),
        multi_replica: AtomicBool::new(false),
        liveness: Mutex::new(HashMap::new()),
        draining: AtomicBool::new(false),
        started: std::time::Instant::now(),
        settings: Mutex::new(Arc::new(HashMap::new())),
        multi_node: AtomicBool::new(false),
        clock: Mutex::new(clock::ClockMonitor::default()),
        clock_unsafe: AtomicBool::new(false),
        peers_draining: Mutex::new(Default::default()),
    });
    if let Some(st) = state {
        cluster::install(&shared, st)?;
    }

    // The mesh: senders[i][j] carries i → j; receivers[j][i] is its other end.
    let mut senders: Vec<Vec<Option<SharedSender<CoreMsg>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut receivers: Vec<Vec<Option<SharedReceiver<CoreMsg>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let (s, r) = shared_channel::new_bounded(4096);
                senders[i][j] = Some(s);
                receivers[j][i] = Some(r);
            }
        }
    }
    let cores_started = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for (core, (my_senders, my_receivers)) in senders.into_iter().zip(receivers).enumerate() {
        let shared = shared.clone();
        let cfg = cfg.clone();
        let started = cores_started.clone();
        let placement = if cfg.pin {
            Placement::Fixed(core)
        } else {
            Placement::Unbound
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("core-{core}"))
            .spin_before_park(Duration::from_micros(50))
            .io_memory(1 << 20)
            .spawn(move || async move {
                if let Err(e) =
                    run_core(core, cfg, shared.clone(), my_senders, my_receivers, started).await
                {
                    eprintln!("core {core}: {e}");
                    shared.shutdown.store(true, Ordering::SeqCst);
                    return Err(e);
                }
                Ok(())
            })
            .map_err(|e| Error::internal(format!("cannot start core {core}: {e}")))?;
        handles.push(handle);
    }
    let mut result = Ok(());
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(Error::internal(format!("core failed: {e}"))),
        }
    }
    result
}

/// How long a restarting single node waits for its ranges to apply their logs before it
/// resolves the prepare records it finds.
const RELATCH_WAIT: Duration = Duration::from_secs(10);

/// Commits or aborts every prepare record on this core according to its transaction's
/// record in the system range (`txn_record::resolve`: absent → abort; STAGING → commit
/// exactly when every participant holds its prepare).
async fn recover_prepared(ctx: &CoreCtx) -> Result<()> {
    // First every prepare in the log: a crash can leave entries the engine had applied
    // (and acknowledged) without a durable commit index; they apply again once the range
    // elected itself leader. Bounded: anything found later is the orphan resolver's.
    let started = std::time::Instant::now();
    while !ctx.store.relatched() && started.elapsed() < RELATCH_WAIT {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    for (range, txn, writes) in ctx.store.prepared_records().await? {
        let commit_ts = match txn_record::resolve(ctx, txn).await? {
            txn_record::Outcome::Committed(ts) => Some(ts),
            txn_record::Outcome::Aborted => None,
        };
        ctx.store
            .resolve_recovered(range, txn, writes, commit_ts)
            .await?;
    }
    Ok(())
}

async fn run_core(
    core: usize,
    cfg: NodeConfig,
    shared: Arc<NodeShared>,
    senders: Vec<Option<SharedSender<CoreMsg>>>,
    receivers: Vec<Option<SharedReceiver<CoreMsg>>>,
    started: Arc<AtomicU64>,
) -> Result<()> {
    let n = shared.ncores;
    let dir = cfg.store.join(format!("core-{core}"));
    let state = shared.cluster();
    let store = Store::open(
        core,
        n,
        dir,
        shared.hlc.clone(),
        shared.metrics[core].clone(),
        cfg.engine,
        cfg.cache_bytes / n.max(1),
        state.as_ref().map(|st| cluster::membership(st)),
    )
    .await?;
    let transport = chitin_net::Transport::new(
        (
            chitin_net::NodeId(state.as_ref().map(|st| st.node_id).unwrap_or(0)),
            chitin_net::CoreId(core as u32),
        ),
        chitin_net::TransportOptions::default(),
    );
    let ctx = Rc::new_cyclic(|me| CoreCtx {
        core,
        store: store.clone(),
        shared: shared.clone(),
        peers: RefCell::new((0..n).map(|_| None).collect()),
        pending: RefCell::new(HashMap::new()),
        reply_pool: RefCell::new(Vec::new()),
        next_req: Cell::new(1),
        catalog: RefCell::new(None),
        pins: Default::default(),
        active_sessions: Cell::new(0),
        ranges: RefCell::new(RangeCache::default()),
        transport,
        leaders: RefCell::new(HashMap::new()),
        me: me.clone(),
    });
    let raft = glommio::spawn_local(store.clone().raft_loop());
    // Connect the mesh: every sender and receiver connects on its own executor, and a
    // sender's connect waits for its receiver's, so receivers connect in their own tasks.
    let mut mesh_tasks = Vec::new();
    for r in receivers.into_iter().flatten() {
        let ctx = ctx.clone();
        mesh_tasks.push(glommio::spawn_local(async move {
            let rx: ConnectedReceiver<CoreMsg> = r.connect().await;
            while let Some(msg) = rx.recv().await {
                match msg {
                    CoreMsg::Request { from, id, req } => {
                        let ctx = ctx.clone();
                        ctx.metrics()
                            .queued_requests
                            .fetch_add(1, Ordering::Relaxed);
                        glommio::spawn_local(async move {
                            let resp = ctx.serve(req).await;
                            ctx.metrics()
                                .queued_requests
                                .fetch_sub(1, Ordering::Relaxed);
                            let peer = ctx.peers.borrow()[from].clone();
                            if let Some(peer) = peer {
                                let _ = peer.send(CoreMsg::Response { id, resp }).await;
                            }
                        })
                        .detach();
                    }
                    CoreMsg::Response { id, resp } => {
                        let slot = ctx.pending.borrow_mut().remove(&id);
                        if let Some(slot) = slot {
                            slot.value.set(Some(resp));
                            if let Some(w) = slot.waker.borrow_mut().take() {
                                w.wake();
                            }
                        }
                    }
                    CoreMsg::Connection { stream, handshake } => {
                        ctx.transport
                            .serve_std(stream, handshake, cluster::handler(&ctx));
                    }
                }
            }
        }));
    }
    for (j, s) in senders.into_iter().enumerate() {
        if let Some(s) = s {
            ctx.peers.borrow_mut()[j] = Some(Rc::new(s.connect().await));
        }
    }
    started.fetch_add(1, Ordering::SeqCst);
    while started.load(Ordering::SeqCst) < n as u64 {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    // Listen from here on: before the node joins a cluster it must answer `chitin init`
    // and the initializing node (pgwire sessions are refused until the node is ready).
    let sql = glommio::spawn_local(crate::server::pgwire::listen(ctx.clone(), cfg.listen_addr));
    let cluster_task = glommio::spawn_local(cluster::follow(ctx.clone()));
    // Wait to join a cluster.
    while ctx.shared.cluster().is_none() || !cluster::adopted(&ctx) {
        if shared.shutdown.load(Ordering::SeqCst) || SIGNALLED.load(Ordering::SeqCst) {
            shared.shutdown.store(true, Ordering::SeqCst);
            sql.cancel().await;
            cluster_task.cancel().await;
            ctx.transport.close().await;
            store.stop();
            raft.await;
            store.close_engine().await?;
            return Ok(());
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    let replicated = shared.replicated();
    // The descriptors decide which keys each replica serves (a split may have crashed
    // half-way), and seed the core's range cache. In a cluster this waits for the system
    // range to elect a leader (a quorum of nodes up).
    let descs = cluster::until_ok(&ctx, || load_range_descs(&ctx)).await?;
    store.install_spans(&descs)?;
    ctx.ranges
        .borrow_mut()
        .install(descs, shared.range_gen.load(Ordering::SeqCst));
    // Resolve two-phase commits a crash interrupted, by their decision records, before
    // serving anything. (Replicated ranges: left to issue 4's intent resolution; their
    // prepare records stay, invisible.)
    if !replicated {
        recover_prepared(&ctx).await?;
    }
    shared.recovered.fetch_add(1, Ordering::SeqCst);
    while shared.recovered.load(Ordering::SeqCst) < n as u64 {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    if core == 0 {
        if shared.node_id.load(Ordering::SeqCst) == 1 {
            cluster::until_ok(&ctx, || crate::sql::catalog::bootstrap(&ctx)).await?;
        }
        shared.ready.store(true, Ordering::SeqCst);
        println!(
            "CockroachDB-compatible Chitin node started\nsql:  postgresql://root@{}/defaultdb?sslmode=disable\nhttp: http://{}/",
            cfg.listen_addr, cfg.http_addr
        );
    }
    let schema_watch = (core == 0).then(|| {
        let ctx = ctx.clone();
        glommio::spawn_local(async move { crate::sql::catalog::watch_schema(&ctx).await })
    });
    let http = if core == 0 {
        Some(glommio::spawn_local(crate::server::http::listen(
            ctx.clone(),
            cfg.http_addr,
        )))
    } else {
        None
    };
    // Wait for a shutdown signal.
    loop {
        if SIGNALLED.load(Ordering::SeqCst) {
            shared.shutdown.store(true, Ordering::SeqCst);
        }
        if shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        if let Some(f) = store.fatal() {
            eprintln!("core {core}: stopping the node: {f}");
            shared.shutdown.store(true, Ordering::SeqCst);
            break;
        }
        ctx.metrics()
            .ranges
            .store(store.range_count() as u64, Ordering::Relaxed);
        store.update_raft_gauges();
        if core == 0 {
            if let Err(e) = txn_ids::extend(&shared) {
                eprintln!("stopping the node: {e}");
                shared.shutdown.store(true, Ordering::SeqCst);
                break;
            }
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    // Stop accepting; sessions notice the flag between statements and end.
    sql.cancel().await;
    if let Some(h) = http {
        h.cancel().await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while ctx.active_sessions.get() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    // Give other cores time to finish requests routed here.
    glommio::timer::sleep(Duration::from_millis(200)).await;
    store.stop();
    if let Some(t) = schema_watch {
        t.cancel().await;
    }
    cluster_task.cancel().await;
    ctx.transport.close().await;
    raft.await;
    for t in mesh_tasks {
        t.cancel().await;
    }
    store.close_engine().await?;
    Ok(())
}
