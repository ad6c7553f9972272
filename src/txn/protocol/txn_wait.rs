//! The txn wait queue and deadlock detection.
//!
//! Each range keeps a queue of pushes waiting on transactions whose records it holds. A
//! waiting push learns, each time it re-examines its wait, the *dependents* of its own
//! pusher — every transaction that waits, directly or transitively, on the pusher. It finds
//! them by querying the queue on the pusher's own anchor range (which may be another range),
//! as CockroachDB's `txnwait` does. When a pushee shows up among its pusher's dependents,
//! the waits form a cycle: a deadlock. Propagation runs to a fixpoint, so every cycle, of any
//! length and across any ranges, is found.
//!
//! Breaking it: of all pushes that see a cycle, the one whose pushee is *weakest* (lowest
//! priority, then highest id) aborts its pushee; that pushee is the weakest member of its
//! cycle, so exactly one transaction per cycle is aborted and the choice is deterministic.

use std::collections::BTreeSet;

use super::meta::{Priority, TxnId};
use super::push::PushType;

/// One push waiting for its pushee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitingPush {
    pub pusher: TxnId,
    pub pusher_priority: Priority,
    pub pushee: TxnId,
    pub pushee_priority: Priority,
    pub push: PushType,
    /// Everyone known to wait (transitively) on the pusher.
    pub dependents: BTreeSet<TxnId>,
}

impl WaitingPush {
    /// Whether the waits through this push form a cycle.
    pub fn is_deadlocked(&self) -> bool {
        self.dependents.contains(&self.pushee)
    }
}

#[derive(Clone, Debug, Default)]
pub struct TxnWaitQueue {
    waiting: Vec<WaitingPush>,
}

impl TxnWaitQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a waiting push, once per (pusher, pushee).
    pub fn enqueue(&mut self, push: WaitingPush) {
        if !self
            .waiting
            .iter()
            .any(|w| w.pusher == push.pusher && w.pushee == push.pushee)
        {
            self.waiting.push(push);
        }
    }

    /// The pushes waiting on `pushee`, removed from the queue (it finished).
    pub fn release(&mut self, pushee: TxnId) -> Vec<WaitingPush> {
        let (out, keep) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.pushee == pushee);
        self.waiting = keep;
        out
    }

    /// Drops every push by `pusher` (it stopped waiting).
    pub fn remove_pusher(&mut self, pusher: TxnId) {
        self.waiting.retain(|w| w.pusher != pusher);
    }

    /// What a query of `txn`'s record returns to a waiting pusher: every transaction that
    /// waits on `txn`, with their own dependents.
    pub fn dependents_of(&self, txn: TxnId) -> BTreeSet<TxnId> {
        let mut out = BTreeSet::new();
        for w in self.waiting.iter().filter(|w| w.pushee == txn) {
            out.insert(w.pusher);
            out.extend(w.dependents.iter().copied());
        }
        out
    }

    pub fn waiting(&self) -> &[WaitingPush] {
        &self.waiting
    }

    pub fn waiting_mut(&mut self) -> &mut [WaitingPush] {
        &mut self.waiting
    }
}

/// Orders transactions by how readily they are sacrificed: lower priority first, then the
/// higher id (the younger transaction).
pub fn weaker_first(a: (Priority, TxnId), b: (Priority, TxnId)) -> std::cmp::Ordering {
    a.0.cmp(&b.0).then(b.1.cmp(&a.1))
}

/// Given every waiting push (from all ranges' queues, dependents already propagated),
/// the one transaction to abort to break a deadlock, if any.
pub fn deadlock_victim<'a>(
    pushes: impl Iterator<Item = &'a WaitingPush>,
) -> Option<&'a WaitingPush> {
    pushes
        .filter(|w| w.is_deadlocked())
        .min_by(|a, b| weaker_first((a.pushee_priority, a.pushee), (b.pushee_priority, b.pushee)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(pusher: u64, pushee: u64) -> WaitingPush {
        WaitingPush {
            pusher: TxnId(pusher),
            pusher_priority: Priority::NORMAL,
            pushee: TxnId(pushee),
            pushee_priority: Priority::NORMAL,
            push: PushType::Abort,
            dependents: BTreeSet::new(),
        }
    }

    /// Propagates dependents to a fixpoint over one queue (the harness does it across
    /// ranges), as pushers re-querying their own records would.
    fn propagate(q: &mut TxnWaitQueue) {
        loop {
            let before: Vec<_> = q.waiting().to_vec();
            for i in 0..q.waiting().len() {
                let deps = q.dependents_of(q.waiting()[i].pusher);
                q.waiting_mut()[i].dependents.extend(deps);
            }
            if q.waiting() == before.as_slice() {
                return;
            }
        }
    }

    #[test]
    fn a_three_cycle_aborts_exactly_its_weakest_member() {
        let mut q = TxnWaitQueue::new();
        q.enqueue(push(1, 2));
        q.enqueue(push(2, 3));
        q.enqueue(push(3, 1));
        q.enqueue(push(4, 1)); // waits on the cycle, not in it
        propagate(&mut q);
        let v = deadlock_victim(q.waiting().iter()).unwrap();
        assert_eq!(v.pushee, TxnId(3));
    }

    #[test]
    fn a_chain_is_not_a_deadlock() {
        let mut q = TxnWaitQueue::new();
        q.enqueue(push(1, 2));
        q.enqueue(push(2, 3));
        propagate(&mut q);
        assert!(deadlock_victim(q.waiting().iter()).is_none());
    }
}
