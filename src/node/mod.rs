//! The node: one process, N cores, each a pinned (or unpinned) glommio executor that owns a
//! [`Store`] (its ranges, engine and raft log) and its share of SQL connections.
//!
//! Cores talk through a mesh of bounded SPSC channels (`glommio::channels::shared_channel`),
//! one per ordered pair, built once here. [`CoreCtx::send`] routes a KV request to the core
//! that owns its range: a direct call when that is this core, a channel message otherwise.
//! Every core binds the SQL port with SO_REUSEPORT (glommio's default), so the kernel
//! spreads connections over cores and the accepting core is the connection's gateway.
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

use glommio::channels::local_channel::{self, LocalSender};
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::{LocalExecutorBuilder, Placement};

use chitin_storage::{RangeId, Timestamp};

use crate::error::{Error, ErrorKind, Result};
use crate::kv::keys::core_for_range;
use crate::kv::ranges::{RangeCache, RangeDesc};
use crate::kv::store::Store;
use crate::kv::{KvRequest, KvResponse};
use crate::metrics::CoreMetrics;
use crate::txn::Hlc;

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
}

/// State every core reads: atomics only on hot paths.
pub struct NodeShared {
    pub hlc: Arc<Hlc>,
    pub ncores: usize,
    /// Bumped after every schema change; cores reload their catalog cache when it moves.
    pub catalog_version: AtomicU64,
    pub next_txn: AtomicU64,
    pub next_backend: AtomicU64,
    pub metrics: Vec<Arc<CoreMetrics>>,
    pub shutdown: AtomicBool,
    pub ready: AtomicBool,
    /// Cores that resolved their interrupted two-phase commits.
    pub recovered: AtomicU64,
    /// (backend pid, secret) → the cancel flag of that session. Cold path (CancelRequest).
    pub cancels: Mutex<HashMap<(i32, i32), Arc<AtomicBool>>>,
    pub listen_addr: SocketAddr,
    /// Bumped after every split publishes its descriptors: cores reload their range cache
    /// when it moves.
    pub range_gen: AtomicU64,
    /// Held by the one split in progress on the node.
    pub splitting: AtomicBool,
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
}

/// What one core's tasks share.
pub struct CoreCtx {
    pub core: usize,
    pub store: Rc<Store>,
    pub shared: Arc<NodeShared>,
    peers: RefCell<Vec<Option<Rc<ConnectedSender<CoreMsg>>>>>,
    pending: RefCell<HashMap<u64, LocalSender<KvResponse>>>,
    next_req: Cell<u64>,
    pub catalog: RefCell<Option<Rc<crate::sql::catalog::Catalog>>>,
    /// SQL sessions open on this core.
    pub active_sessions: Cell<usize>,
    /// The range descriptors this core routes by.
    pub ranges: RefCell<RangeCache>,
}

impl CoreCtx {
    pub fn metrics(&self) -> &CoreMetrics {
        &self.shared.metrics[self.core]
    }

    /// Sends `req` to the core that owns its range and waits for the answer.
    pub async fn send(&self, req: KvRequest) -> Result<KvResponse> {
        let target = core_for_range(req.range(), self.shared.ncores);
        let resp = if target == self.core {
            self.store.handle(req).await
        } else {
            let id = self.next_req.get();
            self.next_req.set(id + 1);
            let (tx, rx) = local_channel::new_bounded(1);
            self.pending.borrow_mut().insert(id, tx);
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
            rx.recv()
                .await
                .ok_or_else(|| Error::internal(format!("core {target} dropped a request")))?
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

    /// Reloads the range descriptors if a split published new ones since the last load.
    async fn fresh_ranges(&self) -> Result<()> {
        let generation = self.shared.range_gen.load(Ordering::SeqCst);
        if self.ranges.borrow().generation != Some(generation) {
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
        let mut attempts = 0;
        loop {
            let range = self.range_of(key).await?;
            // PERF: a range on this core is read in place, without copying the key into a
            // request.
            if core_for_range(range, self.shared.ncores) == self.core {
                match self.store.get(range, key, ts).await {
                    Err(e)
                        if e.kind == ErrorKind::RangeKeyMismatch && attempts < MISMATCH_RETRIES =>
                    {
                        attempts += 1;
                        self.refresh_ranges().await?;
                        continue;
                    }
                    r => return r,
                }
            }
            let req = KvRequest::Get {
                range,
                key: key.to_vec(),
                ts,
            };
            match self.send(req).await {
                Ok(KvResponse::Value(v)) => return Ok(v),
                Ok(other) => return Err(Error::internal(format!("unexpected response {other:?}"))),
                Err(e) if e.kind == ErrorKind::RangeKeyMismatch && attempts < MISMATCH_RETRIES => {
                    attempts += 1;
                    self.refresh_ranges().await?;
                }
                Err(e) => return Err(e),
            }
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
                Ok(other) => return Err(Error::internal(format!("unexpected response {other:?}"))),
                Err(e) if e.kind == ErrorKind::RangeKeyMismatch && attempts < MISMATCH_RETRIES => {
                    attempts += 1;
                    self.refresh_ranges().await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// How often a request is re-routed after `RangeKeyMismatch` before giving up (40001).
pub const MISMATCH_RETRIES: usize = 10;

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
    // Fail early and clearly if the ports are taken.
    for addr in [cfg.listen_addr, cfg.http_addr] {
        std::net::TcpListener::bind(addr)
            .map_err(|e| Error::internal(format!("cannot listen on {addr}: {e}")))?;
    }
    install_signal_handlers();
    let n = cfg.cores.max(1);
    let shared = Arc::new(NodeShared {
        hlc: Arc::new(Hlc::new()),
        ncores: n,
        catalog_version: AtomicU64::new(1),
        next_txn: AtomicU64::new(1),
        next_backend: AtomicU64::new(1),
        metrics: (0..n).map(|_| Arc::new(CoreMetrics::default())).collect(),
        shutdown: AtomicBool::new(false),
        ready: AtomicBool::new(false),
        recovered: AtomicU64::new(0),
        cancels: Mutex::new(HashMap::new()),
        listen_addr: cfg.listen_addr,
        range_gen: AtomicU64::new(0),
        splitting: AtomicBool::new(false),
    });

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

/// Commits or aborts every prepare record on this core according to its transaction's
/// decision record in the system range (absent: the coordinator never decided → abort).
async fn recover_prepared(ctx: &CoreCtx) -> Result<()> {
    for (range, txn, writes) in ctx.store.prepared_records().await? {
        let decision = ctx
            .send(KvRequest::Get {
                range: crate::kv::keys::SYSTEM_RANGE,
                key: crate::kv::keys::txn_record_key(txn),
                ts: chitin_storage::Timestamp::MAX,
            })
            .await?;
        let commit_ts = match decision {
            KvResponse::Value(Some(v)) => crate::kv::keys::decode_commit_ts(&v),
            _ => None,
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
    let store = Store::open(
        core,
        n,
        dir,
        shared.hlc.clone(),
        shared.metrics[core].clone(),
        cfg.engine,
        cfg.cache_bytes / n.max(1),
    )
    .await?;
    let ctx = Rc::new(CoreCtx {
        core,
        store: store.clone(),
        shared: shared.clone(),
        peers: RefCell::new((0..n).map(|_| None).collect()),
        pending: RefCell::new(HashMap::new()),
        next_req: Cell::new(1),
        catalog: RefCell::new(None),
        active_sessions: Cell::new(0),
        ranges: RefCell::new(RangeCache::default()),
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
                            let resp = ctx.store.handle(req).await;
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
                        if let Some(tx) = ctx.pending.borrow_mut().remove(&id) {
                            let _ = tx.try_send(resp);
                        }
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
    // Bootstrap the system span (databases) once, from core 0.
    started.fetch_add(1, Ordering::SeqCst);
    while started.load(Ordering::SeqCst) < n as u64 {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    // The descriptors decide which keys each replica serves (a split may have crashed
    // half-way), and seed the core's range cache.
    let descs = load_range_descs(&ctx).await?;
    store.install_spans(&descs)?;
    ctx.ranges
        .borrow_mut()
        .install(descs, shared.range_gen.load(Ordering::SeqCst));
    // Resolve two-phase commits a crash interrupted, by their decision records, before
    // serving anything.
    recover_prepared(&ctx).await?;
    shared.recovered.fetch_add(1, Ordering::SeqCst);
    while shared.recovered.load(Ordering::SeqCst) < n as u64 {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    if core == 0 {
        crate::sql::catalog::bootstrap(&ctx).await?;
        shared.ready.store(true, Ordering::SeqCst);
        println!(
            "CockroachDB-compatible Chitin node started\nsql:  postgresql://root@{}/defaultdb?sslmode=disable\nhttp: http://{}/",
            cfg.listen_addr, cfg.http_addr
        );
    }
    let sql = glommio::spawn_local(crate::server::pgwire::listen(ctx.clone(), cfg.listen_addr));
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
    raft.await;
    for t in mesh_tasks {
        t.cancel().await;
    }
    store.close_engine().await?;
    Ok(())
}
