//! Transport counters, per core.

use std::cell::Cell;

use crate::Endpoint;

/// A snapshot of one transport's counters (monotonic since it was created, except
/// `queue_depth`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Frames and bytes (length prefixes included) written to any connection.
    pub frames_sent: u64,
    pub bytes_sent: u64,
    /// Frames and bytes read from any connection.
    pub frames_received: u64,
    pub bytes_received: u64,
    /// Raft messages written to a socket, and delivered to the handler.
    pub raft_sent: u64,
    pub raft_received: u64,
    /// Raft messages dropped because the destination's queue was full.
    pub raft_dropped_queue_full: u64,
    /// Raft messages dropped by the fault hook (either direction).
    pub raft_dropped_fault: u64,
    /// Raft messages lost because the connection failed while writing them, or too large
    /// to ever send.
    pub raft_dropped_conn: u64,
    /// Requests and heartbeats dropped by the fault hook (either direction).
    pub requests_dropped_fault: u64,
    /// Successful dials, of which reconnects (not the first connection to a destination).
    pub dials: u64,
    pub reconnects: u64,
    /// Failed dial attempts (connect, handshake or ack).
    pub dial_failures: u64,
    /// Inbound connections accepted after the handshake.
    pub connections_accepted: u64,
    /// Connections (either side) closed because of an error: bad magic, malformed or
    /// oversized frame, socket error.
    pub connection_errors: u64,
    /// Calls (and heartbeats) completed with a reply, and failed (timeout, unavailable).
    pub calls_ok: u64,
    pub calls_failed: u64,
    /// Raft messages currently queued, per destination.
    pub queue_depth: Vec<(Endpoint, usize)>,
}

/// The live counters behind [`TransportStats`].
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub frames_sent: Cell<u64>,
    pub bytes_sent: Cell<u64>,
    pub frames_received: Cell<u64>,
    pub bytes_received: Cell<u64>,
    pub raft_sent: Cell<u64>,
    pub raft_received: Cell<u64>,
    pub raft_dropped_queue_full: Cell<u64>,
    pub raft_dropped_fault: Cell<u64>,
    pub raft_dropped_conn: Cell<u64>,
    pub requests_dropped_fault: Cell<u64>,
    pub dials: Cell<u64>,
    pub reconnects: Cell<u64>,
    pub dial_failures: Cell<u64>,
    pub connections_accepted: Cell<u64>,
    pub connection_errors: Cell<u64>,
    pub calls_ok: Cell<u64>,
    pub calls_failed: Cell<u64>,
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

impl Counters {
    pub fn snapshot(&self, queue_depth: Vec<(Endpoint, usize)>) -> TransportStats {
        TransportStats {
            frames_sent: self.frames_sent.get(),
            bytes_sent: self.bytes_sent.get(),
            frames_received: self.frames_received.get(),
            bytes_received: self.bytes_received.get(),
            raft_sent: self.raft_sent.get(),
            raft_received: self.raft_received.get(),
            raft_dropped_queue_full: self.raft_dropped_queue_full.get(),
            raft_dropped_fault: self.raft_dropped_fault.get(),
            raft_dropped_conn: self.raft_dropped_conn.get(),
            requests_dropped_fault: self.requests_dropped_fault.get(),
            dials: self.dials.get(),
            reconnects: self.reconnects.get(),
            dial_failures: self.dial_failures.get(),
            connections_accepted: self.connections_accepted.get(),
            connection_errors: self.connection_errors.get(),
            calls_ok: self.calls_ok.get(),
            calls_failed: self.calls_failed.get(),
            queue_depth,
        }
    }
}
