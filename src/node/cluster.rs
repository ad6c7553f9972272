//! The node's side of the cluster: the node transport's handler (raft messages, forwarded
//! KV requests, bootstrap and admin calls), `chitin init`, and the per-core task that
//! follows membership and fault-rule changes. Membership itself is in [`crate::cluster`].

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chitin_net::{CoreId, Endpoint, NodeId, TransportHandler};
use chitin_storage::RangeId;
use futures_lite::future::BoxedLocal;

use super::{CoreCtx, NodeShared};
use crate::cluster::{self as cl, ClusterState, Probe};
use crate::error::{Error, ErrorKind, Result};
use crate::kv::replica::Membership;

/// Makes `st` the node's cluster state (already persisted, or read from the store).
pub fn install(shared: &NodeShared, st: ClusterState) -> Result<()> {
    let node = st.node_id;
    // Transaction ids are unique in the cluster (the node id in the high bits) and over
    // the store's life (a durable floor).
    super::txn_ids::start(shared, node)?;
    shared.node_id.store(node, Ordering::SeqCst);
    shared
        .multi_replica
        .store(st.voters.len() > 1, Ordering::SeqCst);
    shared
        .multi_node
        .store(st.members.len() > 1, Ordering::SeqCst);
    if let Ok(mut c) = shared.cluster.lock() {
        *c = Some(Arc::new(st));
    }
    shared.cluster_gen.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// The raft membership every range has in cluster `st`.
pub fn membership(st: &ClusterState) -> Membership {
    Membership {
        node: st.node_id,
        voters: st.voters.clone(),
    }
}

thread_local! {
    /// The cluster generation this core's store and transport were last set up for.
    static ADOPTED: Cell<u64> = const { Cell::new(0) };
}

/// Whether this core has adopted the node's current cluster state.
pub fn adopted(ctx: &CoreCtx) -> bool {
    ADOPTED.with(|a| a.get()) == ctx.shared.cluster_gen.load(Ordering::SeqCst)
}

/// Applies the node's cluster state and fault rules to this core's store and transport.
fn adopt(ctx: &CoreCtx) {
    let generation = ctx.shared.cluster_gen.load(Ordering::SeqCst);
    if let Some(st) = ctx.shared.cluster() {
        let t = &ctx.transport;
        t.set_local_node(NodeId(st.node_id));
        for m in &st.members {
            t.set_peer_addr(NodeId(m.id), m.addr);
        }
        let cores = st.members.iter().map(|m| (m.id, m.cores)).collect();
        ctx.store.set_cluster(membership(&st), cores, t.clone());
    }
    let partitioned = ctx
        .shared
        .partitioned
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    let fault = ctx.transport.fault();
    fault.heal_all();
    for n in partitioned {
        fault.partition(NodeId(n));
    }
    ADOPTED.with(|a| a.set(generation));
}

/// How long a two-phase transaction's prepare record may sit unresolved on a leader
/// before the leader resolves it itself.
const ORPHAN_AFTER: Duration = Duration::from_secs(4);

/// Resolves the multi-range transactions this core's leaders hold whose coordinator went
/// silent (its node died, or it lost its connection mid-commit), by their transaction
/// records (`super::txn_record::resolve`).
async fn resolve_orphans(ctx: &CoreCtx) {
    use super::txn_record::{resolve, Outcome};
    use crate::kv::KvRequest;
    for (range, txn) in ctx.store.orphans(ORPHAN_AFTER) {
        let req = match resolve(ctx, txn).await {
            Ok(Outcome::Committed(commit_ts)) => KvRequest::Commit {
                range,
                txn,
                commit_ts,
            },
            Ok(Outcome::Aborted) => KvRequest::Abort { range, txn },
            Err(_) => continue,
        };
        let _ = ctx.send(req).await;
    }
}

/// The per-core task that follows cluster changes; on core 0 it also heartbeats the other
/// nodes once a second (their liveness, for `chitin node status`). Every core resolves
/// orphaned two-phase transactions of the ranges it leads once a second, and runs its
/// split queue ([`crate::kv::split::split_queue`]) once a second.
pub async fn follow(ctx: Rc<CoreCtx>) {
    let mut last_beat = Instant::now() - Duration::from_secs(10);
    let mut last_orphan_check = Instant::now();
    let mut last_alloc = Instant::now();
    let mut last_join = Instant::now();
    let mut last_split_check = Instant::now();
    let splitting = Rc::new(Cell::new(false));
    let refreshing_stats = Rc::new(Cell::new(false));
    let collecting = Rc::new(Cell::new(false));
    let mut last_gc = Instant::now();
    let mut last_stats_check = Instant::now();
    let mut last_waits_fetch = Instant::now();
    let fetching_waits = Rc::new(Cell::new(false));
    loop {
        if last_orphan_check.elapsed() >= Duration::from_secs(1) {
            last_orphan_check = Instant::now();
            resolve_orphans(&ctx).await;
        }
        if !adopted(&ctx) {
            adopt(&ctx);
        }
        mark_unreachable(&ctx);
        if ctx.core == 0 && last_beat.elapsed() >= Duration::from_secs(1) {
            last_beat = Instant::now();
            publish_nodes_view(&ctx);
            if let Some(st) = ctx.shared.cluster() {
                for m in st.members.iter().filter(|m| m.id != st.node_id) {
                    let t = ctx.transport.clone();
                    let to = Endpoint::new(NodeId(m.id), CoreId(0));
                    let shared = ctx.shared.clone();
                    let id = m.id;
                    glommio::spawn_local(async move {
                        let sent = chitin_net::clock::wall_nanos();
                        if let Ok(reply) = t.heartbeat(to, Duration::from_secs(1)).await {
                            let received = chitin_net::clock::wall_nanos();
                            let at = Instant::now();
                            if let Ok(mut l) = shared.liveness.lock() {
                                l.insert(id, at);
                            }
                            if let Ok(mut d) = shared.peers_draining.lock() {
                                if reply.draining {
                                    d.insert(id);
                                } else {
                                    d.remove(&id);
                                }
                            }
                            let reading = crate::node::clock::ClockReading::measure(
                                sent,
                                received,
                                reply.now_nanos,
                                at,
                            );
                            crate::node::clock::observe(&shared, id, reading);
                        }
                    })
                    .detach();
                }
            }
            if ctx.shared.replicated() {
                crate::node::settings::poll(&ctx).await;
                poll_members(&ctx).await;
            }
            if ctx.shared.cluster().is_none()
                && !ctx.shared.join.is_empty()
                && !ctx.shared.initializing.load(Ordering::SeqCst)
                && last_join.elapsed() >= Duration::from_secs(2)
            {
                last_join = Instant::now();
                glommio::spawn_local(try_join(ctx.clone())).detach();
            }
        }
        // A node with a bad clock hands its ranges over like a draining one, and says so
        // in its heartbeats.
        let draining = ctx.shared.draining.load(Ordering::Relaxed)
            || ctx.shared.clock_unsafe.load(Ordering::Relaxed);
        ctx.store.draining.set(draining);
        ctx.transport.set_draining(draining);
        if last_split_check.elapsed() >= Duration::from_secs(1) && adopted(&ctx) && !splitting.get()
        {
            // Splits take a while (they copy half a range): in the background, one at a
            // time per core.
            last_split_check = Instant::now();
            splitting.set(true);
            let (c, busy) = (ctx.clone(), splitting.clone());
            glommio::spawn_local(async move {
                crate::kv::split::split_queue(&c).await;
                busy.set(false);
            })
            .detach();
        }
        if ctx.core == 0
            && last_stats_check.elapsed() >= Duration::from_secs(1)
            && !refreshing_stats.get()
            && ctx.shared.ready.load(Ordering::Relaxed)
        {
            // Table statistics that enough writes made stale, in the background.
            last_stats_check = Instant::now();
            refreshing_stats.set(true);
            let (c, busy) = (ctx.clone(), refreshing_stats.clone());
            glommio::spawn_local(async move {
                crate::sql::exec::refresh_stale_stats(&c).await;
                busy.set(false);
            })
            .detach();
        }
        if last_gc.elapsed() >= crate::kv::replica_gc::EVERY && adopted(&ctx) && !collecting.get() {
            // Replicas their group removed while this node was away, in the background.
            last_gc = Instant::now();
            collecting.set(true);
            let (c, busy) = (ctx.clone(), collecting.clone());
            glommio::spawn_local(async move {
                crate::kv::replica_gc::gc_queue(&c).await;
                busy.set(false);
            })
            .detach();
        }
        if last_alloc.elapsed() >= Duration::from_secs(1) && adopted(&ctx) {
            last_alloc = Instant::now();
            allocate(&ctx);
        }
        // Deadlocks across nodes: while a transaction waits here, learn what the other
        // nodes' transactions wait for.
        if ctx.core == 0
            && !fetching_waits.get()
            && last_waits_fetch.elapsed() >= crate::kv::deadlock::FETCH_EVERY
            && crate::kv::deadlock::has_waiters()
        {
            last_waits_fetch = Instant::now();
            fetching_waits.set(true);
            let (c, busy) = (ctx.clone(), fetching_waits.clone());
            glommio::spawn_local(async move {
                fetch_waits(&c).await;
                busy.set(false);
            })
            .detach();
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
}

/// Asks every other node for its lock wait-for edges ([`cl::METHOD_WAITS`]) at once and
/// hands them to the deadlock detector. A node that does not answer within the timeout
/// contributes nothing this round.
async fn fetch_waits(ctx: &CoreCtx) {
    let Some(st) = ctx.shared.cluster() else {
        return;
    };
    let calls: Vec<_> = st
        .members
        .iter()
        .filter(|m| m.id != st.node_id)
        .map(|m| {
            let t = ctx.transport.clone();
            let to = Endpoint::new(NodeId(m.id), CoreId(0));
            glommio::spawn_local(async move {
                t.call(
                    to,
                    cl::METHOD_WAITS,
                    Bytes::new(),
                    Duration::from_millis(500),
                )
                .await
                .ok()
            })
        })
        .collect();
    let mut edges = Vec::new();
    for call in calls {
        if let Some(reply) = call.await {
            edges.extend(crate::kv::deadlock::decode_edges(&reply));
        }
    }
    crate::kv::deadlock::set_remote_edges(edges);
}

/// Default of `server.time_until_store_dead`: how long a node must be unreachable before
/// its replicas are replaced elsewhere.
pub const DEFAULT_STORE_DEAD: Duration = Duration::from_secs(300);

/// A node answering heartbeats within this long is live (a replica may go there).
const LIVE_WITHIN: Duration = Duration::from_millis(4500);

/// The nodes whose replicas must move away (dead longer than the store-dead timeout, or
/// decommissioning) and the nodes replicas may go to (live, not decommissioning).
pub fn placement(ctx: &CoreCtx) -> Option<(std::collections::HashSet<u64>, Vec<u64>)> {
    let st = ctx.shared.cluster()?;
    let dead_after = ctx
        .shared
        .setting(crate::node::settings::STORE_DEAD)
        .and_then(|v| crate::node::settings::parse_duration(&v))
        .unwrap_or(DEFAULT_STORE_DEAD);
    let decommissioning = crate::node::settings::decommissioning(&ctx.shared);
    let liveness = ctx.shared.liveness.lock().ok()?.clone();
    let up = ctx.shared.started.elapsed();
    let mut gone = std::collections::HashSet::new();
    let mut candidates = Vec::new();
    for m in &st.members {
        let heard = liveness.get(&m.id).map(|t| t.elapsed());
        let me = m.id == st.node_id;
        let dead = !me && heard.map_or(up > dead_after, |h| h > dead_after);
        if dead || decommissioning.contains(&m.id) {
            gone.insert(m.id);
        } else if me || heard.is_some_and(|h| h < LIVE_WITHIN) {
            candidates.push(m.id);
        }
    }
    Some((gone, candidates))
}

/// One allocator round on this core: replace replicas on gone nodes, up-replicate.
fn allocate(ctx: &CoreCtx) {
    let Some(st) = ctx.shared.cluster() else {
        return;
    };
    if st.members.len() < 2 {
        return;
    }
    let Some((gone, candidates)) = placement(ctx) else {
        return;
    };
    let num_replicas = ctx
        .shared
        .setting(crate::node::settings::NUM_REPLICAS)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(st.voters.len())
        .clamp(1, st.members.len());
    ctx.store.allocate(&gone, &candidates, num_replicas);
    // Draining nodes keep their replicas but lead nothing.
    if let Ok(d) = ctx.shared.peers_draining.lock() {
        ctx.store.avoid_leading(d.iter().copied());
    }
}

/// Nodes not heard from for this long count as unreachable for quiesced ranges: their
/// followers here wake up and elect a leader elsewhere (a false alarm costs only ticks).
const UNREACHABLE_AFTER: Duration = Duration::from_secs(2);

/// Tells the store which nodes core 0's heartbeats have not reached lately.
fn mark_unreachable(ctx: &CoreCtx) {
    let Some(st) = ctx.shared.cluster() else {
        return;
    };
    if st.members.len() < 2 {
        return;
    }
    let Ok(liveness) = ctx.shared.liveness.lock().map(|l| l.clone()) else {
        return;
    };
    let up = ctx.shared.started.elapsed();
    ctx.store.set_unreachable(
        st.members
            .iter()
            .filter(|m| m.id != st.node_id)
            .filter(|m| {
                liveness
                    .get(&m.id)
                    .map_or(up > UNREACHABLE_AFTER, |t| t.elapsed() > UNREACHABLE_AFTER)
            })
            .map(|m| m.id),
    );
}

/// Retries `f` until it succeeds or the node shuts down (startup steps that need a quorum
/// of the cluster up). The first failure is logged.
pub async fn until_ok<T, F, Fut>(ctx: &CoreCtx, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut logged = false;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                if ctx.shared.shutdown.load(Ordering::SeqCst) || !ctx.shared.replicated() {
                    return Err(e);
                }
                if !logged {
                    eprintln!(
                        "core {}: waiting for the cluster (a quorum of nodes): {e}",
                        ctx.core
                    );
                    logged = true;
                }
                glommio::timer::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The transport handler of a core.
pub fn handler(ctx: &Rc<CoreCtx>) -> Rc<dyn TransportHandler> {
    Rc::new(Handler { ctx: ctx.clone() })
}

struct Handler {
    ctx: Rc<CoreCtx>,
}

impl TransportHandler for Handler {
    fn on_raft(&self, _from: Endpoint, range_id: u64, message: Bytes) {
        // A message that does not decode is dropped: raft retransmits what matters.
        if let Ok(m) = <raft::prelude::Message as prost011::Message>::decode(&message[..]) {
            self.ctx.store.deliver(RangeId(range_id), m);
        }
    }

    fn on_request(
        &self,
        _from: Endpoint,
        method: u32,
        payload: Bytes,
    ) -> BoxedLocal<std::result::Result<Bytes, String>> {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            let r = match method {
                cl::METHOD_KV => serve_kv(&ctx, &payload).await,
                cl::METHOD_PROBE => Ok(probe(&ctx).encode().into_bytes()),
                cl::METHOD_INIT => init_cluster(&ctx, &payload).await.map(String::into_bytes),
                cl::METHOD_ASSIGN => assign(&ctx, &payload).map(|()| b"ok".to_vec()),
                cl::METHOD_STATUS => Ok(status(&ctx).into_bytes()),
                cl::METHOD_FAULT => fault(&ctx, &payload).map(|()| b"ok".to_vec()),
                cl::METHOD_DECOMMISSION => {
                    decommission(&ctx, &payload).await.map(String::into_bytes)
                }
                cl::METHOD_JOIN => join_request(&ctx, &payload).await.map(String::into_bytes),
                cl::METHOD_DRAIN => drain(&ctx, &payload).await.map(String::into_bytes),
                cl::METHOD_WAITS => Ok(crate::kv::deadlock::local_edges()),
                cl::METHOD_SNAPSHOT_CHUNK => {
                    ctx.store.snapshot_chunk(&payload).map(|()| b"ok".to_vec())
                }
                other => Err(Error::internal(format!("unknown method {other}"))),
            };
            r.map(Bytes::from).map_err(|e| e.message)
        })
    }
}

/// A KV request forwarded by another node's gateway: served by the range's core here (or
/// answered `NotLeader`).
async fn serve_kv(ctx: &CoreCtx, payload: &[u8]) -> Result<Vec<u8>> {
    let req = crate::kv::codec::decode_request(payload)?;
    let resp = match ctx.send_local(req).await {
        Ok(crate::kv::KvResponse::NotLeader { leader, .. }) => {
            crate::kv::KvResponse::NotLeader { leader, req: None }
        }
        Ok(r) => r,
        Err(e) => crate::kv::KvResponse::Err(e),
    };
    let mut out = Vec::new();
    crate::kv::codec::encode_response(&resp, &mut out);
    Ok(out)
}

fn probe(ctx: &CoreCtx) -> Probe {
    let st = ctx.shared.cluster();
    Probe {
        cluster_id: st.as_ref().map(|s| s.cluster_id).unwrap_or(0),
        node_id: st.as_ref().map(|s| s.node_id).unwrap_or(0),
        addr: ctx.shared.advertise_addr,
        cores: ctx.shared.ncores,
    }
}

/// A blocking transport call made from a blocking thread (bootstrap only).
async fn call_blocking(
    addr: std::net::SocketAddr,
    method: u32,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<Bytes> {
    let r = glommio::executor()
        .spawn_blocking(move || {
            chitin_net::blocking::call(
                addr,
                Endpoint::new(NodeId(0), CoreId(0)),
                CoreId(0),
                method,
                &payload,
                timeout,
            )
        })
        .await;
    r.map_err(|e| Error::internal(format!("{addr}: {e}")))
}

/// `chitin init`: numbers the nodes of the join list, tells each its state, adopts its own.
async fn init_cluster(ctx: &CoreCtx, payload: &[u8]) -> Result<String> {
    // The payload is empty or `num_replicas N`.
    let text = String::from_utf8_lossy(payload);
    let replicas = match text.split_whitespace().collect::<Vec<_>>()[..] {
        [] => None,
        ["num_replicas", n] => match n.parse::<usize>() {
            Ok(n) if n >= 1 && n % 2 == 1 => Some(n),
            _ => {
                return Err(Error::internal(format!(
                    "num_replicas must be an odd number ≥ 1 (a majority of an even count tolerates no more failures), got {n}"
                )))
            }
        },
        _ => return Err(Error::internal(format!("bad init request {text:?}"))),
    };
    if ctx.shared.cluster().is_some() {
        return Err(Error::internal("cluster has already been initialized"));
    }
    if ctx.shared.initializing.swap(true, Ordering::SeqCst) {
        return Err(Error::internal(
            "cluster initialization is already in progress",
        ));
    }
    let r = init_inner(ctx, replicas).await;
    ctx.shared.initializing.store(false, Ordering::SeqCst);
    r
}

/// `replicas`: `None` for the default (3, or every node when there are fewer).
async fn init_inner(ctx: &CoreCtx, replicas: Option<usize>) -> Result<String> {
    let me = ctx.shared.advertise_addr;
    let mut others = Vec::new();
    for &addr in &ctx.shared.join {
        if addr == me || addr == ctx.shared.listen_addr {
            continue;
        }
        // Nodes may still be starting: probe for up to 30 s.
        let deadline = Instant::now() + Duration::from_secs(30);
        let probe = loop {
            match call_blocking(addr, cl::METHOD_PROBE, Vec::new(), Duration::from_secs(2)).await {
                Ok(b) => break Probe::decode(&String::from_utf8_lossy(&b))?,
                Err(e) if Instant::now() > deadline => {
                    return Err(Error::internal(format!("cannot reach node {addr}: {e}")))
                }
                Err(_) => glommio::timer::sleep(Duration::from_millis(200)).await,
            }
        };
        if probe.cluster_id != 0 {
            return Err(Error::internal(format!(
                "node {addr} already belongs to cluster {:x}",
                probe.cluster_id
            )));
        }
        others.push((probe.addr, probe.cores));
    }
    let replicas = match replicas {
        Some(n) if others.len() + 1 < n => {
            return Err(Error::internal(format!(
                "num_replicas {n} needs at least {n} nodes in --join; found {}",
                others.len() + 1
            )))
        }
        Some(n) => n,
        None => cl::DEFAULT_NUM_REPLICAS,
    };
    let st = cl::plan_cluster((me, ctx.shared.ncores), &others, replicas);
    for m in st.members.iter().filter(|m| m.id != st.node_id) {
        let mut theirs = st.clone();
        theirs.node_id = m.id;
        call_blocking(
            m.addr,
            cl::METHOD_ASSIGN,
            theirs.encode().into_bytes(),
            Duration::from_secs(10),
        )
        .await?;
    }
    st.save(&ctx.shared.store_dir)?;
    let summary = format!(
        "Cluster successfully initialized: {} nodes, replicas on nodes {:?}",
        st.members.len(),
        st.voters
    );
    install(&ctx.shared, st)?;
    Ok(summary)
}

/// The initializing node tells this node its state.
fn assign(ctx: &CoreCtx, payload: &[u8]) -> Result<()> {
    let st = ClusterState::decode(&String::from_utf8_lossy(payload))?;
    if let Some(cur) = ctx.shared.cluster() {
        if *cur == st {
            return Ok(());
        }
        return Err(Error::internal(format!(
            "this node already belongs to cluster {:x}",
            cur.cluster_id
        )));
    }
    st.save(&ctx.shared.store_dir)?;
    install(&ctx.shared, st)
}

/// One node as `chitin node status` and `crdb_internal.gossip_nodes` show it.
#[derive(Clone, Debug)]
pub struct NodeRow {
    pub id: u64,
    pub address: String,
    pub cores: usize,
    /// Holds a replica of every range from the start (an initial voter).
    pub replicas: bool,
    pub decommissioning: bool,
    pub draining: bool,
    pub live: bool,
}

/// The cluster's nodes as this node sees them (liveness: heard from within 4.5 s).
pub fn node_rows(ctx: &CoreCtx) -> Vec<NodeRow> {
    let Some(st) = ctx.shared.cluster() else {
        return Vec::new();
    };
    let decommissioning = crate::node::settings::decommissioning(&ctx.shared);
    let draining = ctx
        .shared
        .peers_draining
        .lock()
        .map(|d| d.clone())
        .unwrap_or_default();
    st.members
        .iter()
        .map(|m| {
            let me = m.id == st.node_id;
            NodeRow {
                id: m.id,
                address: m.addr.to_string(),
                cores: m.cores,
                replicas: st.voters.contains(&m.id),
                decommissioning: decommissioning.contains(&m.id),
                draining: if me {
                    ctx.shared.draining.load(Ordering::SeqCst)
                } else {
                    draining.contains(&m.id)
                },
                live: me
                    || ctx
                        .transport
                        .last_heard(NodeId(m.id))
                        .is_some_and(|t| t.elapsed() < Duration::from_millis(4500)),
            }
        })
        .collect()
}

/// The node rows core 0 last computed (once a second), for SQL's
/// `crdb_internal.gossip_nodes` (the planner has no core context).
pub fn nodes_view() -> Vec<NodeRow> {
    NODES_VIEW
        .get()
        .and_then(|m| m.lock().ok().map(|v| v.clone()))
        .unwrap_or_default()
}

static NODES_VIEW: std::sync::OnceLock<std::sync::Mutex<Vec<NodeRow>>> = std::sync::OnceLock::new();

fn publish_nodes_view(ctx: &CoreCtx) {
    let rows = node_rows(ctx);
    if let Ok(mut v) = NODES_VIEW.get_or_init(Default::default).lock() {
        *v = rows;
    }
}

/// `chitin node status`: one line per node — id, address, cores, initial replica holder,
/// decommissioning, live.
fn status(ctx: &CoreCtx) -> String {
    if ctx.shared.cluster().is_none() {
        return "uninitialized\n".into();
    }
    let mut out = String::from("id\taddress\tcores\treplicas\tis_decommissioning\tis_live\n");
    for n in node_rows(ctx) {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            n.id, n.address, n.cores, n.replicas, n.decommissioning, n.live
        ));
    }
    out
}

/// A node started with `--join` after `init` asks to be admitted: its existing id if its
/// address is a member already, else the next free id (claimed by inserting its record in
/// the system range). Answers with the new node's state.
async fn join_request(ctx: &CoreCtx, payload: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(payload);
    let mut w = text.split_whitespace();
    let (addr, cores) = match (
        w.next()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok()),
        w.next().and_then(|c| c.parse::<usize>().ok()),
    ) {
        (Some(a), Some(c)) if c >= 1 => (a, c),
        _ => return Err(Error::internal(format!("bad join request {text:?}"))),
    };
    for attempt in 0..16 {
        poll_members(ctx).await;
        let st = ctx
            .shared
            .cluster()
            .ok_or_else(|| Error::internal("this node is not initialized yet"))?;
        if let Some(m) = st.members.iter().find(|m| m.addr == addr) {
            if m.cores != cores {
                return Err(Error::internal(format!(
                    "node {} at {addr} joined with --cores {}; start it with the same count",
                    m.id, m.cores
                )));
            }
            let mut theirs = (*st).clone();
            theirs.node_id = m.id;
            return Ok(theirs.encode());
        }
        let id = st.members.iter().map(|m| m.id).max().unwrap_or(0) + 1 + attempt;
        let member = cl::Member { id, addr, cores };
        match crate::node::settings::insert_member(ctx, &member).await {
            Ok(()) => {
                add_members(ctx, &st, vec![member])?;
                let mut theirs = (*ctx.shared.cluster().unwrap_or(st)).clone();
                theirs.node_id = id;
                return Ok(theirs.encode());
            }
            Err(e) if e.kind == ErrorKind::UniqueViolation => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::internal(
        "could not claim a node id (too many concurrent joins)",
    ))
}

/// Adds `new` members to this node's state (persisted, then installed).
fn add_members(ctx: &CoreCtx, st: &ClusterState, new: Vec<cl::Member>) -> Result<()> {
    let mut next = st.clone();
    for m in new {
        if next.member(m.id).is_none() && !next.members.iter().any(|x| x.addr == m.addr) {
            next.members.push(m);
        }
    }
    if next == *st {
        return Ok(());
    }
    next.members.sort_by_key(|m| m.id);
    next.save(&ctx.shared.store_dir)?;
    install(&ctx.shared, next)
}

/// Reads the member records of nodes admitted after `init` and adds the ones this node
/// does not know.
pub async fn poll_members(ctx: &CoreCtx) {
    let Some(st) = ctx.shared.cluster() else {
        return;
    };
    let Ok(members) = crate::node::settings::members(ctx).await else {
        return;
    };
    let new: Vec<cl::Member> = members
        .into_iter()
        .filter(|m| st.member(m.id).is_none())
        .collect();
    if !new.is_empty() {
        if let Err(e) = add_members(ctx, &st, new) {
            eprintln!("core {}: cannot add members: {e}", ctx.core);
        }
    }
}

/// An uninitialized node with a join list asks each listed node to admit it, until one
/// does (a node that is not initialized yet refuses: the cluster may still be waiting for
/// `chitin init`, which then assigns this node its state instead).
async fn try_join(ctx: Rc<CoreCtx>) {
    let me = format!("{} {}", ctx.shared.advertise_addr, ctx.shared.ncores);
    for &addr in &ctx.shared.join {
        if addr == ctx.shared.advertise_addr || addr == ctx.shared.listen_addr {
            continue;
        }
        if ctx.shared.cluster().is_some() || ctx.shared.initializing.load(Ordering::SeqCst) {
            return;
        }
        let Ok(reply) = call_blocking(
            addr,
            cl::METHOD_JOIN,
            me.clone().into_bytes(),
            Duration::from_secs(10),
        )
        .await
        else {
            continue;
        };
        let Ok(st) = ClusterState::decode(&String::from_utf8_lossy(&reply)) else {
            continue;
        };
        if ctx.shared.cluster().is_some() {
            return;
        }
        match st.save(&ctx.shared.store_dir) {
            Ok(()) => {
                eprintln!(
                    "joined cluster {:x} as node {} (via {addr})",
                    st.cluster_id, st.node_id
                );
                if let Err(e) = install(&ctx.shared, st) {
                    eprintln!("cannot install the cluster state: {e}");
                }
            }
            Err(e) => eprintln!("cannot save the cluster state: {e}"),
        }
        return;
    }
}

/// `decommission N` / `recommission N`: marks node N (a cluster setting every node
/// polls); the allocators then move its replicas away.
async fn decommission(ctx: &CoreCtx, payload: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(payload);
    let mut words = text.split_whitespace();
    let (on, id) = match (
        words.next(),
        words.next().and_then(|w| w.parse::<u64>().ok()),
    ) {
        (Some("decommission"), Some(id)) => (true, id),
        (Some("recommission"), Some(id)) => (false, id),
        _ => {
            return Err(Error::internal(
                "expected `decommission N` or `recommission N`",
            ))
        }
    };
    let st = ctx
        .shared
        .cluster()
        .ok_or_else(|| Error::internal("this node has not joined a cluster"))?;
    if st.member(id).is_none() {
        return Err(Error::internal(format!(
            "node {id} is not a member of the cluster"
        )));
    }
    if on {
        let live_others = st.members.len() - 1;
        let want = ctx
            .shared
            .setting(crate::node::settings::NUM_REPLICAS)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(st.voters.len());
        if live_others < want {
            return Err(Error::internal(format!(
                "cannot decommission node {id}: {live_others} other nodes cannot hold {want} replicas of every range"
            )));
        }
    }
    crate::node::settings::set_decommissioning(ctx, id, on).await?;
    Ok(if on {
        format!("node {id} is decommissioning: its replicas move to other nodes")
    } else {
        format!("node {id} recommissioned")
    })
}

/// Fault injection for tests: `partition N[,M…]` drops all traffic with those nodes on
/// every core; `heal` lifts it.
fn fault(ctx: &CoreCtx, payload: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(payload);
    let mut words = text.split_whitespace();
    let nodes = match (words.next(), words.next()) {
        (Some("heal"), None) => Vec::new(),
        (Some("partition"), Some(list)) => list
            .split(',')
            .map(|n| {
                n.parse()
                    .map_err(|_| Error::internal(format!("bad node {n}")))
            })
            .collect::<Result<Vec<u64>>>()?,
        _ => return Err(Error::internal("expected `partition N[,M…]` or `heal`")),
    };
    if let Ok(mut p) = ctx.shared.partitioned.lock() {
        *p = nodes;
    }
    ctx.shared.cluster_gen.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// A node-transport connection accepted on this core (its magic already read): reads the
/// handshake and serves it here, or hands the socket to the core it names.
pub async fn accept_transport(
    ctx: &Rc<CoreCtx>,
    mut stream: glommio::net::TcpStream,
    magic: [u8; 8],
) {
    let read = async {
        chitin_net::Handshake::read_after_magic(magic, &mut stream)
            .await
            .ok()
    };
    let expire = async {
        glommio::timer::sleep(Duration::from_secs(2)).await;
        None
    };
    let Some(hs) = futures_lite::future::or(read, expire).await else {
        return;
    };
    let target = hs.to.core.0 as usize;
    if target == ctx.core {
        ctx.transport.serve(stream, hs, handler(ctx));
    } else if target < ctx.shared.ncores {
        if let Ok(std_stream) = chitin_net::detach_stream(stream) {
            ctx.hand_over(
                target,
                super::CoreMsg::Connection {
                    stream: std_stream,
                    handshake: hs,
                },
            )
            .await;
        }
    }
}

/// How long `chitin node drain` waits for the node's leases to move.
const DRAIN_WAIT: Duration = Duration::from_secs(30);

/// `drain N` ([`cl::METHOD_DRAIN`]): on node N, stop taking SQL connections and hand every
/// range this node leads to another voter (`prefer_leader` skips a draining node), then
/// answer how many it still leads; on any other node, forward to N.
async fn drain(ctx: &CoreCtx, payload: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(payload);
    let id = match text.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["drain", id] => id
            .parse::<u64>()
            .map_err(|_| Error::internal("expected `drain N`"))?,
        _ => return Err(Error::internal("expected `drain N`")),
    };
    let st = ctx
        .shared
        .cluster()
        .ok_or_else(|| Error::internal("this node has not joined a cluster"))?;
    if st.member(id).is_none() {
        return Err(Error::internal(format!(
            "node {id} is not a member of the cluster"
        )));
    }
    if id != st.node_id {
        let reply = ctx
            .transport
            .call(
                Endpoint::new(NodeId(id), CoreId(0)),
                cl::METHOD_DRAIN,
                Bytes::from(payload.to_vec()),
                DRAIN_WAIT + Duration::from_secs(5),
            )
            .await
            .map_err(|e| Error::internal(format!("node {id}: {e}")))?;
        return Ok(String::from_utf8_lossy(&reply).into_owned());
    }
    ctx.shared.draining.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let leaders = || -> u64 {
        ctx.shared
            .metrics
            .iter()
            .map(|m| m.raft_leaders.load(Ordering::Relaxed))
            .sum()
    };
    // The gauges are refreshed by the raft loops; give them a round first.
    glommio::timer::sleep(Duration::from_millis(300)).await;
    while leaders() > 0 && started.elapsed() < DRAIN_WAIT {
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
    let left = leaders();
    Ok(if left == 0 {
        format!("node {id} drained: it leads no range and accepts no new SQL connections\n")
    } else {
        format!(
            "node {id} is draining: it still leads {left} ranges (no other voter could take \
             them) and accepts no new SQL connections\n"
        )
    })
}
