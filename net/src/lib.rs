//! chitin-net: the node-to-node transport.
//!
//! Every core of every node runs one [`Transport`]. It carries three kinds of traffic to
//! other cores, addressed by [`Endpoint`] = ([`NodeId`], [`CoreId`]) because a range's
//! replica lives on one core of its node (DESIGN §2, §5):
//!
//! - **raft messages**, opaque bytes tagged with a range id: [`Transport::send_raft`] never
//!   blocks and never fails; it queues the message for its destination. One writer task per
//!   destination drains *everything* queued into one `RaftBatch` frame and writes it with
//!   one `write_all`. No timer: while a write is in flight, new messages pile up and form the
//!   next batch, so batching grows with load and adds no latency when idle. A full queue
//!   drops (raft retransmits; that is raft's backpressure).
//! - **requests**: [`Transport::call`] sends opaque bytes with a method number and awaits
//!   the response, multiplexed by correlation id over the same connection, with a timeout
//!   and a bounded number in flight per destination (waiting for a permit is the
//!   backpressure).
//! - **heartbeats**: [`Transport::heartbeat`] probes a peer, answered by the remote
//!   transport itself; any frame from a node updates [`Transport::last_heard`].
//!
//! The crate knows nothing of raft, KV or SQL: payloads are bytes, methods are numbers.
//!
//! ## Connections
//!
//! A connection goes from one core to one core and is one-directional in purpose: the
//! dialer sends raft batches, requests and heartbeats; the server answers with responses
//! and heartbeat replies. Two cores that talk both ways use two connections. The dialer
//! opens with a fixed 44-byte [`Handshake`] (magic `CHTNRPC1`, version, cluster id, from,
//! to) and waits for a one-byte [`HandshakeAck`] before sending frames; after that, frames
//! are a u32 LE length plus a prost-encoded [`wire::Frame`] ([`frame`]).
//!
//! Nodes listen on one port shared with pgwire. The node peeks the first 8 bytes: the
//! magic means node transport. It reads exactly the handshake
//! ([`Handshake::read_exact_from`], no read-ahead) and, if the handshake names another
//! core, hands the socket over ([`detach_stream`] → `std::net::TcpStream`, which is `Send`)
//! to that core, which calls [`Transport::serve_std`]. For its own core it calls
//! [`Transport::serve`] (or [`Transport::accept`], which also reads the handshake).
//!
//! ## Life of a raft message
//!
//! 1. The raft scheduler on core c of node A calls `send_raft((B, d), range, bytes)`:
//!    [`fault::FaultHook`] check, push onto the `Peer` queue for (B, d), wake its writer.
//! 2. The writer (`peer::run_writer`) dials lazily (connect with timeout, `TCP_NODELAY`,
//!    handshake, ack), drains the queue into one frame, writes it.
//! 3. On B, the task serving the connection (`transport::serve_connection`) decodes the
//!    frame and calls [`TransportHandler::on_raft`] per message, in order.
//!
//! ## Invariants
//!
//! - Per (sending core, destination core) and connection, raft messages and requests are
//!   delivered at most once and in send order. Nothing is retransmitted by this crate.
//!   Across a reconnect, the old connection's last frames may still be handled after the
//!   new connection's first ones (two serving tasks): raft tolerates reordering.
//! - Nothing reachable from the network panics: a bad magic, unknown version, oversize
//!   length, undecodable or misdirected frame is an error that closes that one connection
//!   and is counted ([`TransportStats::connection_errors`]).
//! - Every task the transport spawns is tracked and is cancelled and awaited by
//!   [`Transport::close`] (DESIGN §10: tasks left behind kept sockets open and hung test
//!   clusters). No locks and nothing shared across cores: `Rc`, `Cell`, `RefCell`.
//!
//! Bootstrap calls (`chitin init`, probing join addresses) are made before the caller
//! knows the callee's node id: a handshake to node 0 is accepted by any node, and
//! [`blocking::call`] makes one such call from a plain thread. [`listen::bind_listener`]
//! binds the node's ports (`SO_REUSEPORT` + `SO_REUSEADDR`, so a killed node restarts on
//! its port at once).
//!
//! ## Implementation caveats
//!
//! - Raft messages in a write that fails are lost (counted in `raft_dropped_conn`); queued
//!   ones survive a reconnect up to the queue bound. Calls in flight on a failed connection
//!   fail with `Unavailable` whether or not the remote ran them.
//! - Reconnect: the first redial after a broken connection is immediate; after a failed
//!   dial the next waits `backoff_initial` doubling to `backoff_max`, jittered. Calls that
//!   were waiting for a failed dial fail with `Unavailable`.
//! - Inbound requests run concurrently without a per-connection bound; the dialer's
//!   in-flight bound (`max_in_flight_calls`) is what limits them.
//! - A core sending to itself goes through loopback TCP; the node should short-circuit
//!   local deliveries.
//! - Peers are never forgotten: a destination's queue and writer task live until `close`.
//! - A connection whose peer vanishes without FIN/RST is only noticed when a write fails
//!   or a call times out; there are no TCP keepalives or idle timeouts yet. Heartbeats are
//!   sent only when the node asks ([`Transport::heartbeat`]).
//! - Fault rules: partition drops both ways; drop probability and delay apply to this
//!   core's outbound traffic only.
//! - Range ids are plain `u64` here (the storage crate owns `RangeId`; net does not
//!   depend on it).
//! - Dropping a `Transport` without `close` leaks its tasks (they hold it).

pub mod blocking;
pub mod clock;
pub mod error;
pub mod fault;
pub mod frame;
mod id;
mod io;
pub mod listen;
mod peer;
pub mod stats;
mod tasks;
pub mod transport;
pub mod wire;

pub use error::{Error, Result};
pub use fault::{FaultHook, FaultRule};
pub use id::{CoreId, Endpoint, NodeId};
pub use io::{attach_stream, detach_stream};
pub use stats::TransportStats;
pub use transport::{Transport, TransportHandler, TransportOptions};
pub use wire::{Handshake, HandshakeAck};
