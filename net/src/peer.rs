//! The outbound side: one [`Peer`] per destination core, owning the connection to it.
//!
//! A peer has a bounded raft queue, a queue of control frames (requests, heartbeats), a
//! table of calls awaiting replies, and two tasks:
//!
//! - the *writer* (spawned on the first send, lives until the transport closes) dials
//!   lazily, then loops: wait until something is queued, drain *everything* queued into one
//!   buffer (all raft messages as one `RaftBatch` frame, up to `max_batch_bytes`, plus the
//!   control frames), and write it with one `write_all` — normally one syscall. There is no
//!   timer: messages queued while a write is in flight form the next batch, so batches grow
//!   exactly when the socket is the bottleneck.
//! - the *reader* (one per connection) completes calls from response frames.
//!
//! Failure handling: if a dial fails, the writer backs off exponentially (initial delay
//! doubling up to the maximum, with jitter) before the next attempt, and fails every call
//! waiting for a connection with `Unavailable`. If an established connection fails (write
//! error, read error, EOF), the batch being written is lost, pending calls fail with
//! `Unavailable`, and the next queued message triggers a redial. Raft messages stay queued
//! (bounded) across failures; the ones in the failed write are dropped and counted.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use glommio::sync::Semaphore;

use crate::fault::xorshift;
use crate::frame::{encode_frame, FrameReader};
use crate::io::{split, with_timeout, Notify, ReadHalf};
use crate::stats::add;
use crate::transport::Shared;
use crate::wire::{
    frame::Body, Frame, Handshake, HandshakeAck, HeartbeatReply, RaftBatch, RaftEnvelope,
};
use crate::{Endpoint, Error, Result};

/// What a call gets back.
pub(crate) enum Reply {
    Payload(Bytes),
    Heartbeat(HeartbeatReply),
}

/// Where a call's reply lands.
#[derive(Default)]
struct ReplySlot {
    value: RefCell<Option<Result<Reply>>>,
    ready: Notify,
}

impl ReplySlot {
    fn complete(&self, r: Result<Reply>) {
        *self.value.borrow_mut() = Some(r);
        self.ready.notify();
    }

    async fn wait(&self) -> Result<Reply> {
        loop {
            if let Some(r) = self.value.borrow_mut().take() {
                return r;
            }
            self.ready.wait().await;
        }
    }
}

pub(crate) struct Peer {
    dest: Endpoint,
    shared: Rc<Shared>,
    raft: RefCell<VecDeque<RaftEnvelope>>,
    control: RefCell<VecDeque<Body>>,
    pending: RefCell<HashMap<u64, Rc<ReplySlot>>>,
    next_id: Cell<u64>,
    in_flight: Semaphore,
    wake: Notify,
    writer_spawned: Cell<bool>,
    /// Generation of the current connection (0 = none yet) and of the last one whose reader
    /// saw it fail.
    generation: Cell<u64>,
    lost_generation: Cell<u64>,
    rng: Cell<u64>,
}

impl Peer {
    pub fn new(dest: Endpoint, shared: Rc<Shared>) -> Peer {
        let in_flight = Semaphore::new(shared.options.max_in_flight_calls.max(1) as u64);
        let rng = crate::fault::seed() ^ dest.node.0.rotate_left(17) ^ dest.core.0 as u64;
        Peer {
            dest,
            shared,
            raft: RefCell::new(VecDeque::new()),
            control: RefCell::new(VecDeque::new()),
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
            in_flight,
            wake: Notify::default(),
            writer_spawned: Cell::new(false),
            generation: Cell::new(0),
            lost_generation: Cell::new(0),
            rng: Cell::new(rng | 1),
        }
    }

    /// Raft messages currently queued.
    pub fn queue_depth(&self) -> usize {
        self.raft.borrow().len()
    }

    /// Queues one raft message; false (and counted) if the queue is full.
    // PERF: called for every raft message; no allocation beyond the queue's growth.
    pub fn enqueue_raft(self: &Rc<Self>, range_id: u64, message: Bytes) -> bool {
        {
            let mut q = self.raft.borrow_mut();
            if q.len() >= self.shared.options.raft_queue_len {
                add(&self.shared.stats.raft_dropped_queue_full, 1);
                return false;
            }
            q.push_back(RaftEnvelope { range_id, message });
        }
        self.kick();
        true
    }

    /// Sends a control frame built from a fresh correlation id and awaits its reply, all
    /// within `timeout` (waiting for an in-flight permit included).
    pub async fn request(
        self: &Rc<Self>,
        body: impl FnOnce(u64) -> Body,
        timeout: Duration,
    ) -> Result<Reply> {
        with_timeout(timeout, async {
            let _permit = self
                .in_flight
                .acquire_permit(1)
                .await
                .map_err(|_| Error::Closed)?;
            if self.shared.closed.get() {
                return Err(Error::Closed);
            }
            let id = self.next_id.get();
            self.next_id.set(id + 1);
            let slot = Rc::new(ReplySlot::default());
            self.pending.borrow_mut().insert(id, slot.clone());
            let _unregister = Unregister { peer: self, id };
            if self.shared.fault.drop_outbound(self.dest.node) {
                add(&self.shared.stats.requests_dropped_fault, 1);
            } else {
                self.control.borrow_mut().push_back(body(id));
                self.kick();
            }
            slot.wait().await
        })
        .await
    }

    /// Fails calls waiting for a reply or a permit with `Closed`.
    pub fn close(&self) {
        self.in_flight.close();
        self.fail_pending(|| Error::Closed);
    }

    /// Fails every call awaiting a reply.
    pub fn fail_pending(&self, err: impl Fn() -> Error) {
        let pending: Vec<_> = self.pending.borrow_mut().drain().map(|(_, s)| s).collect();
        for slot in pending {
            slot.complete(Err(err()));
        }
    }

    fn complete(&self, id: u64, r: Result<Reply>) {
        let slot = self.pending.borrow_mut().remove(&id);
        // A missing id is a call that already timed out: drop the late reply.
        if let Some(slot) = slot {
            slot.complete(r);
        }
    }

    /// Wakes the writer, spawning it on first use.
    fn kick(self: &Rc<Self>) {
        if !self.writer_spawned.replace(true) {
            self.shared.tasks.spawn(run_writer(self.clone()));
        }
        self.wake.notify();
    }

    fn has_work(&self) -> bool {
        !self.raft.borrow().is_empty() || !self.control.borrow().is_empty()
    }

    /// Drops the control frames waiting for a connection and fails every pending call.
    fn fail_all(&self, err: impl Fn() -> Error) {
        self.control.borrow_mut().clear();
        self.fail_pending(err);
    }

    /// Encodes everything queued (control frames, then at most `max_batch_bytes` of raft
    /// messages as one frame) into `buf`. Returns (frames, raft messages) encoded.
    fn drain_into(&self, buf: &mut Vec<u8>) -> (u64, u64) {
        let max_frame = self.shared.options.max_frame;
        let mut frames = 0;
        for body in self.control.borrow_mut().drain(..) {
            // Payload sizes were checked at `call`, so this only fails for a misconfigured
            // max_frame; the call then times out.
            if encode_frame(&Frame { body: Some(body) }, max_frame, buf).is_ok() {
                frames += 1;
            }
        }
        let mut raft = self.raft.borrow_mut();
        if raft.is_empty() {
            return (frames, 0);
        }
        let budget = self.shared.options.max_batch_bytes;
        let mut take = 0;
        let mut bytes = 0;
        for m in raft.iter() {
            if take > 0 && bytes + m.message.len() > budget {
                break;
            }
            bytes += m.message.len() + 16;
            take += 1;
        }
        let messages: Vec<RaftEnvelope> = raft.drain(..take).collect();
        drop(raft);
        let count = messages.len() as u64;
        match encode_frame(
            &Frame {
                body: Some(Body::RaftBatch(RaftBatch { messages })),
            },
            max_frame,
            buf,
        ) {
            Ok(_) => (frames + 1, count),
            Err(_) => {
                add(&self.shared.stats.raft_dropped_conn, count);
                (frames, 0)
            }
        }
    }

    /// Dials the destination: connect, handshake, await the ack.
    async fn dial(&self) -> Result<TcpStream> {
        let opts = &self.shared.options;
        let addr = self
            .shared
            .addrs
            .borrow()
            .get(&self.dest.node)
            .copied()
            .ok_or(Error::UnknownNode(self.dest.node.0))?;
        let mut stream = TcpStream::connect_timeout(addr, opts.connect_timeout)
            .await
            .map_err(|e| Error::Unavailable(format!("connect {addr}: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        let hs = Handshake::new(opts.cluster_id, self.shared.local.get(), self.dest);
        let ack = with_timeout(opts.handshake_timeout, async {
            hs.write_to(&mut stream).await?;
            HandshakeAck::read_from(&mut stream).await
        })
        .await?;
        if ack != HandshakeAck::Accepted {
            return Err(Error::Rejected(format!("{ack:?} by {}", self.dest)));
        }
        Ok(stream)
    }

    /// The delay before the next dial after `failures` consecutive failures.
    fn backoff(&self, failures: u32) -> Duration {
        let opts = &self.shared.options;
        let exp = failures.saturating_sub(1).min(20);
        let base = opts
            .backoff_initial
            .saturating_mul(1 << exp)
            .min(opts.backoff_max);
        // Jitter: a uniform factor in [0.5, 1.0), so peers that failed together spread out.
        let frac = (xorshift(&self.rng) >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(0.5 + frac / 2.0)
    }
}

/// Removes a call from the pending table when the call ends for any reason (reply,
/// timeout, the caller dropping the future).
struct Unregister<'a> {
    peer: &'a Peer,
    id: u64,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.peer.pending.borrow_mut().remove(&self.id);
    }
}

/// An established outbound connection, as the writer holds it.
struct Connection {
    write: crate::io::WriteHalf,
    reader: Option<crate::tasks::TaskId>,
    generation: u64,
}

async fn run_writer(peer: Rc<Peer>) {
    let shared = peer.shared.clone();
    let stats = &shared.stats;
    let node = peer.dest.node;
    let mut conn: Option<Connection> = None;
    let mut failures: u32 = 0;
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    loop {
        if let Some(c) = &conn {
            if peer.lost_generation.get() == c.generation {
                teardown(&peer, conn.take());
            }
        }
        if !peer.has_work() {
            peer.wake.wait().await;
            continue;
        }
        if conn.is_none() {
            if failures > 0 {
                glommio::timer::sleep(peer.backoff(failures)).await;
            }
            match peer.dial().await {
                Ok(stream) => {
                    failures = 0;
                    add(&stats.dials, 1);
                    if peer.generation.get() > 0 {
                        add(&stats.reconnects, 1);
                    }
                    let generation = peer.generation.get() + 1;
                    peer.generation.set(generation);
                    let (read, write) = split(stream);
                    let reader = shared
                        .tasks
                        .spawn(run_reader(peer.clone(), read, generation));
                    conn = Some(Connection {
                        write,
                        reader,
                        generation,
                    });
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    add(&stats.dial_failures, 1);
                    let msg = format!("dial {}: {e}", peer.dest);
                    peer.fail_all(|| Error::Unavailable(msg.clone()));
                    continue;
                }
            }
        }
        if let Some(d) = shared.fault.outbound_delay(node) {
            glommio::timer::sleep(d).await;
        }
        buf.clear();
        let (frames, rafts) = peer.drain_into(&mut buf);
        if frames == 0 {
            continue;
        }
        let Some(c) = conn.as_mut() else { continue };
        match c.write.write_all(&buf).await {
            Ok(()) => {
                add(&stats.frames_sent, frames);
                add(&stats.bytes_sent, buf.len() as u64);
                add(&stats.raft_sent, rafts);
            }
            Err(_) => {
                add(&stats.connection_errors, 1);
                add(&stats.raft_dropped_conn, rafts);
                teardown(&peer, conn.take());
            }
        }
        // Bound the buffer kept between batches after a burst.
        if buf.capacity() > shared.options.max_batch_bytes * 2 {
            buf = Vec::with_capacity(64 << 10);
        }
    }
}

/// Closes a connection: stops its reader, drops the socket, fails the calls it carried.
fn teardown(peer: &Peer, conn: Option<Connection>) {
    if let Some(c) = conn {
        if let Some(reader) = c.reader {
            peer.shared.tasks.cancel(reader);
        }
        drop(c.write);
    }
    let dest = peer.dest;
    peer.fail_all(|| Error::Unavailable(format!("connection to {dest} lost")));
}

async fn run_reader(peer: Rc<Peer>, mut read: ReadHalf, generation: u64) {
    let shared = peer.shared.clone();
    let stats = &shared.stats;
    let node = peer.dest.node;
    let mut frames = FrameReader::new(shared.options.max_frame);
    let result: Result<()> = loop {
        let (frame, size) = match frames.read(&mut read).await {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        add(&stats.frames_received, 1);
        add(&stats.bytes_received, size as u64);
        if shared.fault.drop_inbound(node) {
            add(&stats.requests_dropped_fault, 1);
            continue;
        }
        shared.heard_from(node);
        match frame.body {
            Some(Body::Response(r)) => {
                let reply = match r.error {
                    Some(e) => Err(Error::Remote(e)),
                    None => Ok(Reply::Payload(r.payload)),
                };
                peer.complete(r.id, reply);
            }
            Some(Body::HeartbeatReply(h)) => peer.complete(h.id, Ok(Reply::Heartbeat(h))),
            _ => break Err(Error::Malformed("server sent a dialer-only frame".into())),
        }
    };
    if result.is_err() {
        add(&stats.connection_errors, 1);
    }
    peer.lost_generation.set(generation);
    let dest = peer.dest;
    peer.fail_pending(|| Error::Unavailable(format!("connection to {dest} lost")));
    peer.wake.notify();
}
