//! [`Transport`]: one core's endpoint of the node-to-node transport.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::BoxedLocal;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

use crate::fault::FaultHook;
use crate::frame::{encode_frame, FrameReader, DEFAULT_MAX_FRAME};
use crate::io::{split, with_timeout, Notify, WriteHalf};
use crate::peer::{Peer, Reply};
use crate::stats::{add, Counters, TransportStats};
use crate::tasks::TaskSet;
use crate::wire::{
    frame::Body, Frame, Handshake, HandshakeAck, Heartbeat, HeartbeatReply, Request, Response,
    VERSION,
};
use crate::{Endpoint, Error, NodeId, Result};

/// Bytes a frame adds around a request or raft payload (ids, tags, lengths), generously.
const FRAME_OVERHEAD: usize = 64;

/// Tunables of a [`Transport`]. `Default` gives production values.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    /// The cluster's id; 0 = unknown. A handshake is refused when both sides know the id
    /// and they differ.
    pub cluster_id: u64,
    /// Largest encoded frame accepted or sent (length prefix excluded).
    pub max_frame: usize,
    /// Soft cap on the raft payload bytes of one `RaftBatch` frame.
    pub max_batch_bytes: usize,
    /// Raft messages queued per destination before new ones are dropped.
    pub raft_queue_len: usize,
    /// Calls awaiting a reply per destination; further calls wait for a permit.
    pub max_in_flight_calls: usize,
    /// TCP connect timeout of a dial.
    pub connect_timeout: Duration,
    /// Time allowed for the handshake and its ack, on either side.
    pub handshake_timeout: Duration,
    /// First reconnect delay after a failed dial; doubles per failure up to `backoff_max`
    /// (each delay is jittered to between half and all of it).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// The glommio task queue for the transport's tasks (writers, readers, connections,
    /// request handlers); `None` = the executor's default queue. DESIGN §2: raft I/O gets
    /// its own queue with shares. Must be a queue of the executor the transport runs on.
    pub task_queue: Option<glommio::TaskQueueHandle>,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            cluster_id: 0,
            max_frame: DEFAULT_MAX_FRAME,
            max_batch_bytes: 4 << 20,
            raft_queue_len: 4096,
            max_in_flight_calls: 1024,
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            task_queue: None,
        }
    }
}

/// What the node does with inbound traffic. Called on the core that serves the connection.
///
/// Contract: `on_raft` is called in the order messages were sent by one sending core to
/// this core, and must not block (queue the message for the raft scheduler). `on_request`
/// futures run concurrently, each in its own task; their outputs go back to the caller as
/// the response (`Err(msg)` arrives as [`Error::Remote`]`(msg)`). Neither may panic on bad
/// input: payloads come from the network.
pub trait TransportHandler {
    fn on_raft(&self, from: Endpoint, range_id: u64, message: Bytes);
    fn on_request(
        &self,
        from: Endpoint,
        method: u32,
        payload: Bytes,
    ) -> BoxedLocal<std::result::Result<Bytes, String>>;
}

/// State shared by a transport and its tasks (one core, so `Rc` and cells).
pub(crate) struct Shared {
    pub local: Cell<Endpoint>,
    pub options: TransportOptions,
    pub stats: Counters,
    pub fault: Rc<FaultHook>,
    pub addrs: RefCell<HashMap<NodeId, SocketAddr>>,
    pub last_heard: RefCell<HashMap<NodeId, Instant>>,
    pub epoch: Cell<u64>,
    pub draining: Cell<bool>,
    pub tasks: TaskSet,
    pub closed: Cell<bool>,
}

impl Shared {
    pub fn heard_from(&self, node: NodeId) {
        self.last_heard.borrow_mut().insert(node, Instant::now());
    }
}

/// One core's transport endpoint: sends raft messages and calls to (node, core)
/// destinations, and serves inbound connections handed to it.
///
/// Cheap to clone (an `Rc`); not `Send`: each core creates its own. Must be closed with
/// [`Transport::close`] before the executor exits: its tasks reference it, so dropping the
/// last handle does not stop them.
#[derive(Clone)]
pub struct Transport {
    shared: Rc<Shared>,
    peers: Rc<RefCell<HashMap<Endpoint, Rc<Peer>>>>,
}

impl Transport {
    /// A transport for the core `local`, knowing no peer addresses yet.
    pub fn new(local: impl Into<Endpoint>, options: TransportOptions) -> Transport {
        let tasks = TaskSet::new(options.task_queue);
        Transport {
            shared: Rc::new(Shared {
                local: Cell::new(local.into()),
                options,
                stats: Counters::default(),
                fault: Rc::new(FaultHook::new()),
                addrs: RefCell::new(HashMap::new()),
                last_heard: RefCell::new(HashMap::new()),
                epoch: Cell::new(0),
                draining: Cell::new(false),
                tasks,
                closed: Cell::new(false),
            }),
            peers: Rc::new(RefCell::new(HashMap::new())),
        }
    }

    /// This core's endpoint.
    pub fn local(&self) -> Endpoint {
        self.shared.local.get()
    }

    /// Sets this core's node id: a node learns it when it joins a cluster, after its
    /// transport already serves bootstrap calls as node 0. Connections dialed before keep
    /// the handshake they made.
    pub fn set_local_node(&self, node: NodeId) {
        let mut local = self.shared.local.get();
        local.node = node;
        self.shared.local.set(local);
    }

    /// Sets (or changes) the address of a node. Takes effect at the next dial; existing
    /// connections are kept.
    pub fn set_peer_addr(&self, node: NodeId, addr: SocketAddr) {
        self.shared.addrs.borrow_mut().insert(node, addr);
    }

    /// The address known for a node.
    pub fn peer_addr(&self, node: NodeId) -> Option<SocketAddr> {
        self.shared.addrs.borrow().get(&node).copied()
    }

    /// Sets the liveness epoch this node reports in heartbeats and heartbeat replies.
    pub fn set_epoch(&self, epoch: u64) {
        self.shared.epoch.set(epoch);
    }

    /// Sets whether this node reports itself draining in heartbeats and their replies.
    pub fn set_draining(&self, draining: bool) {
        self.shared.draining.set(draining);
    }

    /// The fault-injection rules of this transport.
    pub fn fault(&self) -> Rc<FaultHook> {
        self.shared.fault.clone()
    }

    /// When a frame from any core of `node` last arrived on any connection of this core.
    pub fn last_heard(&self, node: NodeId) -> Option<Instant> {
        self.shared.last_heard.borrow().get(&node).copied()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TransportStats {
        let mut depth: Vec<(Endpoint, usize)> = self
            .peers
            .borrow()
            .iter()
            .map(|(e, p)| (*e, p.queue_depth()))
            .collect();
        depth.sort();
        self.shared.stats.snapshot(depth)
    }

    fn peer(&self, dest: Endpoint) -> Rc<Peer> {
        self.peers
            .borrow_mut()
            .entry(dest)
            .or_insert_with(|| Rc::new(Peer::new(dest, self.shared.clone())))
            .clone()
    }

    /// Queues a raft message for `dest`; never blocks, never fails. Returns whether it was
    /// queued: messages are dropped (and counted) when the destination's queue is full, by
    /// the fault hook, when too large for a frame, or after `close`. Raft retransmits, so
    /// dropping is its backpressure.
    ///
    /// Messages to one destination are delivered in order, at most once. Delivery is not
    /// guaranteed: a message is lost if its connection fails while it is being written
    /// (queued ones survive a reconnect, up to the queue bound).
    // PERF: one hash lookup and a queue push; the write happens in the destination's
    // writer task.
    pub fn send_raft(&self, dest: impl Into<Endpoint>, range_id: u64, message: Bytes) -> bool {
        let dest = dest.into();
        let shared = &self.shared;
        if shared.closed.get() {
            return false;
        }
        if shared.fault.drop_outbound(dest.node) {
            add(&shared.stats.raft_dropped_fault, 1);
            return false;
        }
        if message.len() + FRAME_OVERHEAD > shared.options.max_frame {
            add(&shared.stats.raft_dropped_conn, 1);
            return false;
        }
        self.peer(dest).enqueue_raft(range_id, message)
    }

    /// Sends a request to `dest` and awaits its response, within `timeout` (which covers
    /// waiting for an in-flight permit, dialing and the remote handler).
    ///
    /// Errors: [`Error::Timeout`]; [`Error::Unavailable`] if the destination cannot be
    /// dialed or the connection is lost before the reply (the request may or may not have
    /// run); [`Error::Remote`] with the handler's message; [`Error::FrameTooLarge`];
    /// [`Error::Closed`].
    pub async fn call(
        &self,
        dest: impl Into<Endpoint>,
        method: u32,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes> {
        if self.shared.closed.get() {
            return Err(Error::Closed);
        }
        let max = self.shared.options.max_frame;
        if payload.len() + FRAME_OVERHEAD > max {
            return Err(Error::FrameTooLarge {
                len: payload.len() as u64,
                max: max as u64,
            });
        }
        let peer = self.peer(dest.into());
        let body = move |id| {
            Body::Request(Request {
                id,
                method,
                payload,
            })
        };
        let reply = peer.request(body, timeout).await;
        self.count_call(&reply);
        match reply? {
            Reply::Payload(b) => Ok(b),
            Reply::Heartbeat(_) => Err(Error::Malformed("heartbeat reply to a request".into())),
        }
    }

    /// Sends a heartbeat (this node's id and epoch, the wall clock) to `dest` and returns
    /// its reply. Any frame from the node, including this reply, updates
    /// [`Transport::last_heard`].
    pub async fn heartbeat(
        &self,
        dest: impl Into<Endpoint>,
        timeout: Duration,
    ) -> Result<HeartbeatReply> {
        if self.shared.closed.get() {
            return Err(Error::Closed);
        }
        let peer = self.peer(dest.into());
        let (node_id, epoch) = (self.shared.local.get().node.0, self.shared.epoch.get());
        let draining = self.shared.draining.get();
        let body = move |id| {
            Body::Heartbeat(Heartbeat {
                id,
                node_id,
                epoch,
                now_nanos: now_nanos(),
                draining,
            })
        };
        let reply = peer.request(body, timeout).await;
        self.count_call(&reply);
        match reply? {
            Reply::Heartbeat(h) => Ok(h),
            Reply::Payload(_) => Err(Error::Malformed("response to a heartbeat".into())),
        }
    }

    fn count_call<T>(&self, r: &Result<T>) {
        let stats = &self.shared.stats;
        add(
            if r.is_ok() {
                &stats.calls_ok
            } else {
                &stats.calls_failed
            },
            1,
        );
    }

    /// Reads the handshake from a freshly accepted connection (within the handshake
    /// timeout) and serves it, in a task of this transport. For connections whose
    /// handshake names this core; a node that accepts for several cores reads the handshake
    /// itself ([`Handshake::read_exact_from`]) and hands the socket to the right core's
    /// [`Transport::serve`].
    pub fn accept(&self, mut stream: TcpStream, handler: Rc<dyn TransportHandler>) {
        let shared = self.shared.clone();
        let timeout = shared.options.handshake_timeout;
        self.shared.tasks.spawn(async move {
            let hs = with_timeout(timeout, Handshake::read_exact_from(&mut stream)).await;
            let result = match hs {
                Ok(hs) => serve_connection(&shared, stream, hs, handler).await,
                Err(e) => Err(e),
            };
            if result.is_err() {
                add(&shared.stats.connection_errors, 1);
            }
        });
    }

    /// Serves an inbound connection whose handshake has been read: answers the handshake
    /// (refusing one addressed to another node or core, another cluster or version), then
    /// reads frames until EOF or error, in a task of this transport. Raft batches go to
    /// `handler.on_raft`, requests to `handler.on_request` (each in its own task),
    /// heartbeats are answered here. Any error closes this connection only.
    pub fn serve(
        &self,
        stream: TcpStream,
        handshake: Handshake,
        handler: Rc<dyn TransportHandler>,
    ) {
        let shared = self.shared.clone();
        self.shared.tasks.spawn(async move {
            if serve_connection(&shared, stream, handshake, handler)
                .await
                .is_err()
            {
                add(&shared.stats.connection_errors, 1);
            }
        });
    }

    /// [`Transport::serve`] for a socket handed over from another core as a std socket
    /// (see [`crate::detach_stream`]).
    pub fn serve_std(
        &self,
        stream: std::net::TcpStream,
        handshake: Handshake,
        handler: Rc<dyn TransportHandler>,
    ) {
        self.serve(crate::attach_stream(stream), handshake, handler);
    }

    /// Stops the transport: fails pending calls with [`Error::Closed`], then cancels and
    /// awaits every task it spawned (writers, readers, served connections, request
    /// handlers), which closes all its sockets. Later sends are dropped and calls fail with
    /// `Closed`. Must not be called from a request handler of this transport.
    pub async fn close(&self) {
        self.shared.closed.set(true);
        let peers: Vec<Rc<Peer>> = self.peers.borrow().values().cloned().collect();
        for peer in &peers {
            peer.close();
        }
        self.shared.tasks.close().await;
    }

    /// Number of live tasks (for tests of shutdown).
    pub fn task_count(&self) -> usize {
        self.shared.tasks.len()
    }
}

fn now_nanos() -> u64 {
    crate::clock::wall_nanos()
}

/// Frames waiting to go back to the dialer of an inbound connection.
#[derive(Default)]
struct ReplyQueue {
    frames: RefCell<Vec<Body>>,
    wake: Notify,
}

impl ReplyQueue {
    fn push(&self, body: Body) {
        self.frames.borrow_mut().push(body);
        self.wake.notify();
    }
}

/// Cancels a task when dropped (so a connection's writer dies with its reader).
struct CancelOnDrop<'a> {
    shared: &'a Shared,
    task: Option<crate::tasks::TaskId>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.task {
            self.shared.tasks.cancel(t);
        }
    }
}

fn check_handshake(shared: &Shared, hs: &Handshake) -> HandshakeAck {
    let local = shared.local.get();
    let cluster = shared.options.cluster_id;
    if hs.version != VERSION {
        HandshakeAck::UnsupportedVersion
    } else if hs.to.node != local.node && hs.to.node != NodeId(0) {
        // Node 0 is "whoever listens here": bootstrap calls (init, join) are made before
        // the caller knows the node's id.
        HandshakeAck::WrongNode
    } else if hs.to.core != local.core {
        HandshakeAck::WrongCore
    } else if cluster != 0 && hs.cluster_id != 0 && cluster != hs.cluster_id {
        HandshakeAck::ClusterMismatch
    } else {
        HandshakeAck::Accepted
    }
}

async fn serve_connection(
    shared: &Rc<Shared>,
    mut stream: TcpStream,
    hs: Handshake,
    handler: Rc<dyn TransportHandler>,
) -> Result<()> {
    let ack = check_handshake(shared, &hs);
    stream.set_nodelay(true)?;
    with_timeout(shared.options.handshake_timeout, ack.write_to(&mut stream)).await?;
    if ack != HandshakeAck::Accepted {
        return Err(Error::Rejected(format!("{ack:?}: {hs:?}")));
    }
    add(&shared.stats.connections_accepted, 1);
    let from = hs.from;
    let (mut read, write) = split(stream);
    let replies = Rc::new(ReplyQueue::default());
    let writer = shared.tasks.spawn(run_reply_writer(
        shared.clone(),
        replies.clone(),
        write,
        from.node,
    ));
    let _writer = CancelOnDrop {
        shared,
        task: writer,
    };
    let stats = &shared.stats;
    let mut frames = FrameReader::new(shared.options.max_frame);
    while let Some((frame, size)) = frames.read(&mut read).await? {
        add(&stats.frames_received, 1);
        add(&stats.bytes_received, size as u64);
        if shared.fault.drop_inbound(from.node) {
            match &frame.body {
                Some(Body::RaftBatch(b)) => add(&stats.raft_dropped_fault, b.messages.len() as u64),
                _ => add(&stats.requests_dropped_fault, 1),
            }
            continue;
        }
        shared.heard_from(from.node);
        match frame.body {
            Some(Body::RaftBatch(batch)) => {
                add(&stats.raft_received, batch.messages.len() as u64);
                for m in batch.messages {
                    handler.on_raft(from, m.range_id, m.message);
                }
            }
            Some(Body::Request(req)) => {
                let fut = handler.on_request(from, req.method, req.payload);
                let replies = replies.clone();
                let max = shared.options.max_frame;
                let id = req.id;
                shared.tasks.spawn(async move {
                    let response = match fut.await {
                        Ok(payload) if payload.len() + FRAME_OVERHEAD > max => Response {
                            id,
                            payload: Bytes::new(),
                            error: Some(format!(
                                "response of {} bytes is too large",
                                payload.len()
                            )),
                        },
                        Ok(payload) => Response {
                            id,
                            payload,
                            error: None,
                        },
                        Err(e) => Response {
                            id,
                            payload: Bytes::new(),
                            error: Some(e),
                        },
                    };
                    replies.push(Body::Response(response));
                });
            }
            Some(Body::Heartbeat(h)) => {
                replies.push(Body::HeartbeatReply(HeartbeatReply {
                    id: h.id,
                    node_id: shared.local.get().node.0,
                    epoch: shared.epoch.get(),
                    now_nanos: now_nanos(),
                    draining: shared.draining.get(),
                }));
            }
            Some(Body::Response(_)) | Some(Body::HeartbeatReply(_)) | None => {
                return Err(Error::Malformed("dialer sent a server-only frame".into()));
            }
        }
    }
    Ok(())
}

/// Writes responses and heartbeat replies of one inbound connection, batched like the
/// outbound writer: everything queued goes out in one write.
async fn run_reply_writer(
    shared: Rc<Shared>,
    replies: Rc<ReplyQueue>,
    mut write: WriteHalf,
    to: NodeId,
) {
    let stats = &shared.stats;
    let mut buf = Vec::with_capacity(16 << 10);
    loop {
        if replies.frames.borrow().is_empty() {
            replies.wake.wait().await;
            continue;
        }
        if let Some(d) = shared.fault.outbound_delay(to) {
            glommio::timer::sleep(d).await;
        }
        buf.clear();
        let bodies = std::mem::take(&mut *replies.frames.borrow_mut());
        let mut n = 0;
        for body in bodies {
            if encode_frame(
                &Frame { body: Some(body) },
                shared.options.max_frame,
                &mut buf,
            )
            .is_ok()
            {
                n += 1;
            }
        }
        if write.write_all(&buf).await.is_err() {
            // The reader sees the failure too and ends the connection.
            return;
        }
        add(&stats.frames_sent, n);
        add(&stats.bytes_sent, buf.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CoreId;

    #[test]
    fn handshake_checks() {
        let local = Endpoint::new(NodeId(2), CoreId(1));
        let opts = TransportOptions {
            cluster_id: 77,
            ..Default::default()
        };
        let t = Transport::new(local, opts);
        let from = Endpoint::new(NodeId(1), CoreId(0));
        let check = |hs: Handshake| check_handshake(&t.shared, &hs);
        assert_eq!(
            check(Handshake::new(77, from, local)),
            HandshakeAck::Accepted
        );
        // A dialer that does not know the cluster id yet is accepted.
        assert_eq!(
            check(Handshake::new(0, from, local)),
            HandshakeAck::Accepted
        );
        assert_eq!(
            check(Handshake::new(78, from, local)),
            HandshakeAck::ClusterMismatch
        );
        let other_core = Endpoint::new(NodeId(2), CoreId(0));
        assert_eq!(
            check(Handshake::new(77, from, other_core)),
            HandshakeAck::WrongCore
        );
        let other_node = Endpoint::new(NodeId(3), CoreId(1));
        assert_eq!(
            check(Handshake::new(77, from, other_node)),
            HandshakeAck::WrongNode
        );
        let mut future = Handshake::new(77, from, local);
        future.version = VERSION + 1;
        assert_eq!(check(future), HandshakeAck::UnsupportedVersion);
    }
}
