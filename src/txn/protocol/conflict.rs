//! Conflict handling on the cluster: a request that met another transaction's intent
//! pushes it, resolves what it can, and otherwise parks in the lock table and the pushee's
//! txn wait queue. Finishing a transaction releases its waiters; deadlock detection runs
//! over all wait queues.

use std::collections::BTreeSet;

use super::cluster::{Cluster, Wait};
use super::coordinator::CoordState;
use super::error::{RetryReason, TxnError};
use super::event::Event;
use super::meta::{Key, TxnId};
use super::mvcc::{Intent, Resolution};
use super::push::{decide, explain, PushDecision, PushType, Pusher};
use super::record::{TxnRecord, TxnStatus};
use super::txn_wait::{deadlock_victim, WaitingPush};
use chitin_storage::Timestamp;

impl Cluster {
    /// `txn`'s request on range `idx` met `intent` on `key`. Pushes its writer; returns
    /// `None` when the request should evaluate again, or the wait it parked in.
    pub(super) fn handle_conflict(
        &mut self,
        txn: TxnId,
        idx: usize,
        key: &Key,
        intent: &Intent,
        push: PushType,
    ) -> Result<Option<Wait>, TxnError> {
        let pushee = intent.txn.id;
        let anchor_idx = self.range_of(&intent.txn.anchor);
        let now = self.node(self.ranges[anchor_idx].node).hlc.peek();
        let record = self.ranges[anchor_idx]
            .records
            .get(&pushee)
            .cloned()
            .unwrap_or_else(|| TxnRecord::synthesized(intent.txn.clone()));
        let pusher = Pusher {
            txn: Some(txn),
            priority: self.coord(txn).meta.priority,
        };
        let expiry = self.options.expiry_nanos;
        let expired = record.is_expired(now, expiry);
        let decision = decide(&record, &pusher, push, now, expiry);
        let why = explain(decision, &record, &pusher, expired);
        match decision {
            PushDecision::AlreadyFinal(status, ts) => {
                let how = match status {
                    TxnStatus::Committed => Resolution::Commit(ts),
                    _ => Resolution::Abort,
                };
                self.resolve_now(idx, key, pushee, how);
                self.emit(Event::ResolvedConflict {
                    by: txn,
                    key: key.clone(),
                    owner: pushee,
                    status,
                });
            }
            PushDecision::Pushed(to) => {
                let mut rec = record;
                if to > rec.meta.write_ts {
                    rec.meta.write_ts = to;
                }
                self.ranges[anchor_idx].records.insert(pushee, rec);
                self.resolve_now(idx, key, pushee, Resolution::Push(to));
                self.emit(Event::PushedTimestamp {
                    pusher: txn,
                    pushee,
                    to,
                    why,
                });
            }
            PushDecision::Abort => {
                self.emit(Event::AbortedByPush {
                    pusher: txn,
                    pushee,
                    why: why.clone(),
                });
                self.abort_txn(
                    pushee,
                    anchor_idx,
                    record,
                    format!("aborted by {txn}: {why}"),
                );
                self.resolve_now(idx, key, pushee, Resolution::Abort);
            }
            PushDecision::Recover => {
                self.recover(pushee, &intent.txn.anchor);
            }
            PushDecision::Wait => {
                let range = self.ranges[idx].id;
                let pusher_priority = self.coord(txn).meta.priority;
                self.ranges[idx].locks.enqueue(key, pushee, txn);
                self.ranges[anchor_idx].wait_queue.enqueue(WaitingPush {
                    pusher: txn,
                    pusher_priority,
                    pushee,
                    pushee_priority: record.meta.priority,
                    push,
                    dependents: BTreeSet::new(),
                });
                let wait = Wait::Lock {
                    range,
                    key: key.clone(),
                    holder: pushee,
                    why,
                };
                self.waits.insert(txn, wait.clone());
                return Ok(Some(wait));
            }
        }
        Ok(None)
    }

    /// Writes an ABORTED record for `txn` (on its anchor range `anchor_idx`) and finishes it.
    /// A coordinator parked in a request learns at once; others at their next request.
    pub(super) fn abort_txn(
        &mut self,
        txn: TxnId,
        anchor_idx: usize,
        record: TxnRecord,
        why: String,
    ) {
        let mut rec = record;
        rec.status = TxnStatus::Aborted;
        let ts = rec.meta.write_ts;
        self.ranges[anchor_idx].records.insert(txn, rec);
        self.ranges[anchor_idx].proposals += 1;
        self.abort_reasons.insert(txn, why.clone());
        if self.waits.contains_key(&txn) {
            self.clear_wait(txn);
            if let Some(c) = self.txns.get_mut(&txn) {
                c.state = CoordState::Aborted;
            }
            self.queue_own_resolution(txn, Resolution::Abort);
            self.cancelled
                .push((txn, TxnError::retry(RetryReason::Aborted, why)));
        }
        self.finish(txn, anchor_idx, TxnStatus::Aborted, ts);
    }

    /// `txn`'s record became final: every push waiting on it resolves the intent it was
    /// blocked on (waking that lock's waiters, first come first).
    pub(super) fn finish(
        &mut self,
        txn: TxnId,
        anchor_idx: usize,
        status: TxnStatus,
        ts: Timestamp,
    ) {
        let how = match status {
            TxnStatus::Committed => Resolution::Commit(ts),
            _ => Resolution::Abort,
        };
        let released = self.ranges[anchor_idx].wait_queue.release(txn);
        for w in released {
            if let Some(Wait::Lock { range, key, .. }) = self.waits.get(&w.pusher).cloned() {
                let idx = self.range_index(range);
                self.resolve_now(idx, &key, txn, how);
                self.wake(w.pusher);
            }
        }
    }

    /// After time passed: wakes every parked push whose pushee may now be pushed (expired),
    /// so that it runs again and pushes.
    pub(super) fn repush_waiters(&mut self) {
        let mut to_wake = Vec::new();
        for r in &self.ranges {
            let now = self.node(r.node).hlc.peek();
            for w in r.wait_queue.waiting() {
                let rec = r.records.get(&w.pushee);
                let expired = rec.is_none_or(|rec| rec.is_expired(now, self.options.expiry_nanos));
                if expired {
                    to_wake.push(w.pusher);
                }
            }
        }
        for t in to_wake {
            self.wake(t);
        }
    }

    /// Finds and breaks every deadlock: propagates dependents through the wait queues (each
    /// pusher querying its own record's queue) to a fixpoint, aborts the weakest pushee of a
    /// cycle, and repeats until no cycle is left. Returns the victims.
    pub fn detect_deadlocks(&mut self) -> Vec<TxnId> {
        let mut victims = Vec::new();
        loop {
            for r in &mut self.ranges {
                for w in r.wait_queue.waiting_mut() {
                    w.dependents.clear();
                }
            }
            loop {
                let mut changed = false;
                for a in 0..self.ranges.len() {
                    for i in 0..self.ranges[a].wait_queue.waiting().len() {
                        let pusher = self.ranges[a].wait_queue.waiting()[i].pusher;
                        let Some(c) = self.txns.get(&pusher) else {
                            continue;
                        };
                        if !c.anchored {
                            continue;
                        }
                        let b = self.range_of(&c.meta.anchor);
                        let deps = self.ranges[b].wait_queue.dependents_of(pusher);
                        let w = &mut self.ranges[a].wait_queue.waiting_mut()[i];
                        let before = w.dependents.len();
                        w.dependents.extend(deps);
                        changed |= w.dependents.len() != before;
                    }
                }
                if !changed {
                    break;
                }
            }
            let all: Vec<WaitingPush> = self
                .ranges
                .iter()
                .flat_map(|r| r.wait_queue.waiting().iter().cloned())
                .collect();
            let Some(v) = deadlock_victim(all.iter()) else {
                return victims;
            };
            let victim = v.pushee;
            // The cycle, for the story: follow who waits on whom, starting at the victim.
            let mut cycle = vec![victim];
            let mut at = victim;
            while let Some(next) = all.iter().find(|w| w.pusher == at).map(|w| w.pushee) {
                if next == victim || cycle.contains(&next) {
                    break;
                }
                cycle.push(next);
                at = next;
            }
            self.emit(Event::DeadlockBroken {
                victim,
                cycle: cycle.clone(),
            });
            let anchor = self.coord(victim).meta.anchor.clone();
            let anchor_idx = self.range_of(&anchor);
            let record = self.ranges[anchor_idx]
                .records
                .get(&victim)
                .cloned()
                .unwrap_or_else(|| TxnRecord::synthesized(self.coord(victim).meta.clone()));
            let others: Vec<String> = cycle
                .iter()
                .filter(|t| **t != victim)
                .map(|t| t.to_string())
                .collect();
            self.abort_txn(
                victim,
                anchor_idx,
                record,
                format!(
                    "deadlock with {}; {victim} was chosen to abort",
                    others.join(", ")
                ),
            );
            victims.push(victim);
        }
    }
}
