//! Deadlock detection for row locks and commit latches, within a node and across nodes.
//!
//! A transaction waits in one place at a time: for a row lock, or for the latches of its
//! commit, on the leaseholder of the range. Each wait is an edge `waiter → holder` of the
//! node's wait-for graph, recorded by the waiting request and re-checked on every poll of
//! its wait loop (every ~20 ms). A wait that closes a cycle is a deadlock, broken by
//! failing one member with 40001.
//!
//! Across nodes, a cycle's edges live on different nodes (each on the leaseholder where
//! that member waits). While a node has waiters, its core 0 asks every other node for its
//! edges ([`crate::cluster::METHOD_WAITS`], every [`FETCH_EVERY`]) and keeps them for
//! [`REMOTE_FRESH`]; the walk follows local edges first, then remote ones. A cycle seen
//! only through remote edges could be seen by every node that holds one of its edges, so
//! exactly one member is chosen: the one with the highest transaction id, failed by the
//! node where it waits (which sees the same cycle from its own edge). A cycle that is all
//! local is broken at once by the wait that closed it, as before.
//!
//! Remote edges may be up to [`FETCH_EVERY`] + a round trip old: a cycle that has already
//! broken may still be seen, and its highest member (if it waits again, elsewhere in the
//! same shape) fails with 40001 it did not need. That costs a retry, never correctness.
//!
//! PERF: the graph is one mutex per node, touched only by requests that must wait.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::TxnId;

/// How often a node with waiters asks the others for their edges.
pub const FETCH_EVERY: Duration = Duration::from_millis(200);

/// How long fetched edges count.
pub const REMOTE_FRESH: Duration = Duration::from_millis(1500);

/// A node's wait-for graph: its own waits and the last edges fetched from other nodes.
#[derive(Default)]
pub struct WaitGraph {
    local: HashMap<TxnId, TxnId>,
    remote: HashMap<TxnId, TxnId>,
    remote_at: Option<Instant>,
}

impl WaitGraph {
    /// Records that `txn` waits for `holder`; true when `txn` must fail to break a
    /// deadlock (see the module doc for which member of a cycle that is).
    pub fn wait(&mut self, txn: TxnId, holder: TxnId, now: Instant) -> bool {
        self.local.insert(txn, holder);
        let remote_fresh = self
            .remote_at
            .is_some_and(|at| now.saturating_duration_since(at) < REMOTE_FRESH);
        let mut cur = holder;
        let mut through_remote = false;
        let mut highest = txn.max(holder);
        // A simple path visits each waiter at most once.
        for _ in 0..=(self.local.len() + self.remote.len()) {
            if cur == txn {
                return !through_remote || highest == txn;
            }
            let next = match self.local.get(&cur) {
                Some(&n) => n,
                None => match self.remote.get(&cur).filter(|_| remote_fresh) {
                    Some(&n) => {
                        through_remote = true;
                        n
                    }
                    None => return false,
                },
            };
            highest = highest.max(next);
            cur = next;
        }
        false
    }

    /// `txn` waits for nobody here any more.
    pub fn stop(&mut self, txn: TxnId) {
        self.local.remove(&txn);
    }

    /// Replaces the other nodes' edges.
    pub fn set_remote(&mut self, edges: impl IntoIterator<Item = (TxnId, TxnId)>, at: Instant) {
        self.remote.clear();
        self.remote.extend(edges);
        self.remote_at = Some(at);
    }

    pub fn has_waiters(&self) -> bool {
        !self.local.is_empty()
    }

    /// This node's edges as little-endian `(waiter, holder)` pairs.
    pub fn encode_local(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.local.len() * 16);
        for (w, h) in &self.local {
            out.extend_from_slice(&w.to_le_bytes());
            out.extend_from_slice(&h.to_le_bytes());
        }
        out
    }
}

/// Decodes [`WaitGraph::encode_local`]'s pairs (a trailing partial pair is ignored).
pub fn decode_edges(b: &[u8]) -> impl Iterator<Item = (TxnId, TxnId)> + '_ {
    b.chunks_exact(16).map(|c| {
        let w = u64::from_le_bytes(c[..8].try_into().unwrap_or_default());
        let h = u64::from_le_bytes(c[8..].try_into().unwrap_or_default());
        (w, h)
    })
}

/// The node's graph (one per process: a process is one node).
static GRAPH: Mutex<Option<WaitGraph>> = Mutex::new(None);

fn with_graph<T>(f: impl FnOnce(&mut WaitGraph) -> T) -> T {
    let mut g = GRAPH.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(WaitGraph::default))
}

/// Records that `txn` waits for `holder`; true when `txn` must fail with 40001.
pub fn waits_for(txn: TxnId, holder: TxnId) -> bool {
    with_graph(|g| g.wait(txn, holder, Instant::now()))
}

/// `txn` waits for nobody any more.
pub fn stop_waiting(txn: TxnId) {
    with_graph(|g| g.stop(txn))
}

/// Whether any transaction waits on this node (then its edges are worth fetching).
pub fn has_waiters() -> bool {
    with_graph(|g| g.has_waiters())
}

/// This node's edges, for [`crate::cluster::METHOD_WAITS`].
pub fn local_edges() -> Vec<u8> {
    with_graph(|g| g.encode_local())
}

/// The edges just fetched from every other node.
pub fn set_remote_edges(edges: Vec<(TxnId, TxnId)>) {
    with_graph(|g| g.set_remote(edges, Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_wait_that_closes_a_cycle_fails_at_once() {
        let mut g = WaitGraph::default();
        let now = Instant::now();
        assert!(!g.wait(1, 2, now));
        assert!(!g.wait(2, 3, now));
        assert!(g.wait(3, 1, now), "1 → 2 → 3 → 1 is a cycle");
        g.stop(3);
        g.stop(2);
        assert!(!g.wait(3, 1, now), "2 no longer waits: no cycle");
    }

    #[test]
    fn a_cycle_across_nodes_fails_exactly_its_highest_member() {
        // Node A: 7 waits for 9 (its lock is on A). Node B: 9 waits for 7.
        let now = Instant::now();
        let mut a = WaitGraph::default();
        let mut b = WaitGraph::default();
        assert!(!a.wait(7, 9, now));
        assert!(!b.wait(9, 7, now));
        // Each learns the other's edges.
        a.set_remote(decode_edges(&b.encode_local()).collect::<Vec<_>>(), now);
        b.set_remote(decode_edges(&a.encode_local()).collect::<Vec<_>>(), now);
        assert!(!a.wait(7, 9, now), "7 is not the highest: it keeps waiting");
        assert!(b.wait(9, 7, now), "9 is the highest: node B fails it");
    }

    #[test]
    fn stale_remote_edges_are_ignored() {
        let now = Instant::now();
        let mut b = WaitGraph::default();
        b.set_remote([(7, 9)], now);
        assert!(b.wait(9, 7, now));
        let later = now + REMOTE_FRESH + Duration::from_millis(1);
        assert!(!b.wait(9, 7, later), "the remote edge is too old to count");
    }

    #[test]
    fn a_chain_is_not_a_deadlock_and_edges_round_trip() {
        let now = Instant::now();
        let mut g = WaitGraph::default();
        g.set_remote([(2, 3), (3, 4)], now);
        assert!(!g.wait(1, 2, now));
        let edges: Vec<_> = decode_edges(&g.encode_local()).collect();
        assert_eq!(edges, vec![(1, 2)]);
        assert_eq!(decode_edges(&[1, 2, 3]).count(), 0);
    }
}
