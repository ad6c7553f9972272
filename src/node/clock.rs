//! How far the other nodes' clocks are from this one's, and whether this node may serve.
//!
//! Serializability and "no stale reads" across nodes rest on one assumption: no two clocks
//! are further apart than the maximum offset (`--max-offset`, default 500 ms), the width of
//! every transaction's uncertainty interval (`txn` module docs). Core 0 heartbeats every
//! other node once a second; each heartbeat reply carries the peer's wall clock. With the
//! send time `t0`, the receive time `t1` and the peer's reading `r`, the peer's offset is
//! `r − (t0 + t1) / 2`, known to within `(t1 − t0) / 2`. A peer is *far* when even the most
//! favourable reading of that puts it more than 80 % of the maximum offset away (as
//! CockroachDB does: the margin keeps the assumption true while the clocks drift apart).
//! When more than half of the peers heard from recently are far, it is this node's clock
//! that is wrong: the node stops serving SQL (statements fail with SQLSTATE 58000) and hands
//! leadership of its ranges to other nodes, until the offsets come back within bounds.
//!
//! Caveat: in a cluster of two nodes each is the other's only peer, so a bad clock stops
//! both (CockroachDB behaves the same way); three nodes or more single out the bad one.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::NodeShared;
use crate::error::{Error, ErrorKind};

/// Readings older than this do not count (the peer stopped answering).
const FRESH: Duration = Duration::from_secs(10);

/// One peer's clock as the last heartbeat measured it.
#[derive(Clone, Copy, Debug)]
pub struct ClockReading {
    /// The peer's clock minus this node's, in nanoseconds.
    pub offset_nanos: i64,
    /// Half the round trip: the offset is known to within this.
    pub error_nanos: u64,
    pub at: Instant,
}

impl ClockReading {
    /// From a heartbeat sent at `sent`, answered at `received` (this node's wall clock,
    /// nanoseconds) with the peer's wall clock `remote`.
    pub fn measure(sent: u64, received: u64, remote: u64, at: Instant) -> Self {
        let received = received.max(sent);
        let midpoint = sent / 2 + received / 2 + (sent % 2 + received % 2) / 2;
        ClockReading {
            offset_nanos: (remote as i128 - midpoint as i128)
                .clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            error_nanos: (received - sent) / 2,
            at,
        }
    }

    /// Whether the peer's clock is surely more than 80 % of `max_offset` away.
    pub fn far(&self, max_offset: Duration) -> bool {
        let tolerated = max_offset.as_nanos() as u64 / 5 * 4;
        self.offset_nanos
            .unsigned_abs()
            .saturating_sub(self.error_nanos)
            > tolerated
    }
}

/// The last reading of every peer.
#[derive(Debug, Default)]
pub struct ClockMonitor {
    readings: HashMap<u64, ClockReading>,
}

impl ClockMonitor {
    pub fn record(&mut self, node: u64, reading: ClockReading) {
        self.readings.insert(node, reading);
    }

    /// Of the peers read within [`FRESH`] of `now`: how many are far, and how many there
    /// are.
    pub fn verdict(&self, max_offset: Duration, now: Instant) -> (usize, usize) {
        let fresh: Vec<&ClockReading> = self
            .readings
            .values()
            .filter(|r| now.saturating_duration_since(r.at) <= FRESH)
            .collect();
        let far = fresh.iter().filter(|r| r.far(max_offset)).count();
        (far, fresh.len())
    }

    /// Every peer's last reading, by node id.
    pub fn readings(&self) -> Vec<(u64, ClockReading)> {
        let mut v: Vec<(u64, ClockReading)> = self.readings.iter().map(|(k, r)| (*k, *r)).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }
}

/// Records a heartbeat's reading of `node` and re-judges this node's clock: unsafe while
/// more than half of the recently heard peers are far.
pub fn observe(shared: &NodeShared, node: u64, reading: ClockReading) {
    let max_offset = shared.hlc.max_offset();
    let (far, measured) = match shared.clock.lock() {
        Ok(mut m) => {
            m.record(node, reading);
            m.verdict(max_offset, reading.at)
        }
        Err(_) => return,
    };
    let unsafe_now = measured > 0 && far * 2 > measured;
    let was = shared.clock_unsafe.swap(unsafe_now, Ordering::SeqCst);
    if unsafe_now != was {
        if unsafe_now {
            eprintln!(
                "clock synchronization error: this node's clock is more than {:?} away from {far} of {measured} other nodes; it stops serving SQL and hands over its ranges",
                max_offset * 4 / 5
            );
        } else {
            eprintln!("clock offsets are back within {max_offset:?}: serving again");
        }
    }
}

/// The error statements get on a node whose clock is unsafe.
pub fn unsafe_error(shared: &NodeShared) -> Error {
    Error::new(
        ErrorKind::SystemError,
        format!(
            "clock synchronization error: this node's clock is more than {:?} away from most other nodes' clocks; it refuses to serve until that is fixed",
            shared.hlc.max_offset() * 4 / 5
        ),
    )
    .with_hint("connect to another node, and check the time synchronization (NTP) of this one")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn offset_is_measured_from_the_midpoint_of_the_round_trip() {
        let at = Instant::now();
        let r = ClockReading::measure(1_000 * MS, 1_002 * MS, 1_251 * MS, at);
        assert_eq!(r.offset_nanos, 250 * MS as i64);
        assert_eq!(r.error_nanos, MS);
        let behind = ClockReading::measure(1_000 * MS, 1_000 * MS, 400 * MS, at);
        assert_eq!(behind.offset_nanos, -600 * MS as i64);
        // A reply "before" the send (the local clock stepped back) counts as no round trip.
        let odd = ClockReading::measure(1_000 * MS, 900 * MS, 1_000 * MS, at);
        assert_eq!((odd.offset_nanos, odd.error_nanos), (0, 0));
    }

    #[test]
    fn far_means_beyond_four_fifths_of_the_maximum_even_at_the_edge_of_the_error() {
        let max = Duration::from_millis(500);
        let at = Instant::now();
        let read = |offset_ms: i64, error_ms: u64| ClockReading {
            offset_nanos: offset_ms * MS as i64,
            error_nanos: error_ms * MS,
            at,
        };
        assert!(!read(250, 0).far(max));
        assert!(!read(400, 0).far(max));
        assert!(read(401, 0).far(max));
        assert!(read(-1500, 0).far(max));
        assert!(!read(450, 60).far(max), "within the measurement error");
    }

    #[test]
    fn the_node_is_unsafe_only_when_most_fresh_peers_are_far() {
        let max = Duration::from_millis(500);
        let now = Instant::now();
        let reading = |offset_ms: i64, at: Instant| ClockReading {
            offset_nanos: offset_ms * MS as i64,
            error_nanos: 0,
            at,
        };
        let mut m = ClockMonitor::default();
        m.record(2, reading(900, now));
        assert_eq!(m.verdict(max, now), (1, 1));
        m.record(3, reading(10, now));
        // One of two: not more than half (the other node may be the bad one).
        assert_eq!(m.verdict(max, now), (1, 2));
        m.record(4, reading(-700, now));
        assert_eq!(m.verdict(max, now), (2, 3));
        // A peer not heard from for a while no longer counts.
        let later = now + FRESH + Duration::from_secs(1);
        m.record(3, reading(10, later));
        assert_eq!(m.verdict(max, later), (0, 1));
    }
}
