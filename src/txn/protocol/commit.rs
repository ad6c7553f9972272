//! Commits on the cluster: read-only, one-phase, and parallel commits; rollback.
//!
//! - A transaction that wrote nothing commits without a word to any range.
//! - One phase (1PC): a transaction whose writes all arrive with its commit and land on one
//!   range commits in one evaluation — one proposal, no intents, no record.
//! - Parallel commit: the last writes and a STAGING record listing every write are sent in
//!   one round. The transaction is committed the moment all listed writes are replicated at
//!   or below the staging timestamp; the coordinator acknowledges the client then, and
//!   afterwards (asynchronously) marks the record COMMITTED and queues intent resolution.

use chitin_storage::Timestamp;

use super::cluster::{Cluster, Step, Wait};
use super::coordinator::CoordState;
use super::error::{RetryReason, TxnError};
use super::latch::LatchAccess;
use super::meta::{ts_next, Key, Span, TxnId, Value};
use super::mvcc::Resolution;
use super::push::PushType;
use super::record::{InFlightWrite, TxnRecord, TxnStatus};
use crate::txn::Isolation;

/// How a commit went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitKind {
    ReadOnly,
    OnePhase,
    Parallel {
        /// Writes pipelined earlier (not waited for).
        pipelined: usize,
        /// Writes sent in the commit round, beside the STAGING record.
        last_writes: usize,
        /// Rounds of consensus the commit step took (1 unless it had to stage again).
        rounds: u32,
    },
    /// The STAGING record was written and then the coordinator died.
    StagedThenCrashed {
        in_flight: Vec<Key>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitOutcome {
    pub ts: Timestamp,
    pub kind: CommitKind,
    /// Proposals the commit step made.
    pub proposals: u64,
}

impl Cluster {
    /// Commits `txn`, sending `last_writes` with the commit.
    pub fn commit(
        &mut self,
        txn: TxnId,
        last_writes: &[(Key, Option<Value>)],
        crash_after_staging: bool,
    ) -> Result<Step<CommitOutcome>, TxnError> {
        self.begin_request(txn)?;
        if !last_writes.is_empty() && self.coord(txn).staged_at.is_none() {
            // The last writes are a statement of their own under READ COMMITTED.
            if self.coord(txn).isolation() == Isolation::ReadCommitted {
                let gw = self.coord(txn).gateway;
                let now = self.node_mut(gw).hlc.now();
                let max_offset = self.options.max_offset_nanos;
                self.coord_mut(txn).start_statement(now, max_offset);
            }
        }
        let c = self.coord(txn);
        if !c.has_writes() && last_writes.is_empty() {
            let ts = c.read_ts;
            self.coord_mut(txn).state = CoordState::Committed(ts);
            return Ok(Step::Done(CommitOutcome {
                ts,
                kind: CommitKind::ReadOnly,
                proposals: 0,
            }));
        }
        if !c.has_writes() {
            let first = self.range_of(&last_writes[0].0);
            if last_writes.iter().all(|(k, _)| self.range_of(k) == first) {
                return self.commit_one_phase(txn, first, last_writes);
            }
        }
        self.commit_parallel(txn, last_writes, crash_after_staging)
    }

    fn commit_one_phase(
        &mut self,
        txn: TxnId,
        idx: usize,
        writes: &[(Key, Option<Value>)],
    ) -> Result<Step<CommitOutcome>, TxnError> {
        self.contact(txn, idx)?;
        let latches: Vec<(Span, LatchAccess)> = writes
            .iter()
            .map(|(k, _)| (Span::key(k), LatchAccess::Write))
            .collect();
        loop {
            let range = &mut self.ranges[idx];
            let latch = range
                .latches
                .acquire(&latches)
                .expect("invariant: requests evaluate one at a time");
            let conflict = writes.iter().find_map(|(k, _)| {
                range
                    .mvcc
                    .intent(k)
                    .filter(|i| i.txn.id != txn)
                    .map(|i| (k.clone(), i.clone()))
            });
            if let Some((key, intent)) = conflict {
                range.latches.release(latch);
                match self.handle_conflict(txn, idx, &key, &intent, PushType::Abort)? {
                    Some(w) => return Ok(Step::Blocked(w)),
                    None => continue,
                }
            }
            let mut ts = self.coord(txn).meta.write_ts;
            let mut too_old = false;
            let range = &mut self.ranges[idx];
            for (k, _) in writes {
                if let Some(p) = range.ts_cache.push_for_write(&Span::key(k), txn, ts) {
                    ts = ts.max(p);
                }
                if let Some((newest, _)) = range.mvcc.newest_committed(k) {
                    if newest >= ts {
                        ts = ts_next(newest);
                        too_old = true;
                    }
                }
            }
            let read_ts = self.coord(txn).read_ts;
            if self.coord(txn).isolation() == Isolation::Serializable && ts > read_ts {
                if let Err(detail) = self.refresh(txn, read_ts, ts) {
                    self.ranges[idx].latches.release(latch);
                    self.coord_mut(txn).state = CoordState::Aborted;
                    let reason = if too_old {
                        RetryReason::WriteTooOld
                    } else {
                        RetryReason::Serializable
                    };
                    return Err(TxnError::retry(reason, detail));
                }
            }
            let range = &mut self.ranges[idx];
            for (k, v) in writes {
                range.mvcc.put_committed(k, ts, v.clone());
            }
            range.proposals += 1;
            range.latches.release(latch);
            let c = self.coord_mut(txn);
            c.bump_write_ts(ts);
            c.state = CoordState::Committed(ts);
            return Ok(Step::Done(CommitOutcome {
                ts,
                kind: CommitKind::OnePhase,
                proposals: 1,
            }));
        }
    }

    fn commit_parallel(
        &mut self,
        txn: TxnId,
        last_writes: &[(Key, Option<Value>)],
        crash_after_staging: bool,
    ) -> Result<Step<CommitOutcome>, TxnError> {
        if self.coord(txn).staged_at.is_none() {
            let c = self.coord(txn);
            let pipelined = c
                .intents
                .keys()
                .chain(c.delayed.iter().map(|d| &d.key))
                .filter(|k| !last_writes.iter().any(|(l, _)| l == *k))
                .count();
            // The last writes go out in the same round as the STAGING record.
            for (k, v) in last_writes {
                if let Step::Blocked(w) = self.write_intent(txn, k, v.clone())? {
                    return Ok(Step::Blocked(w));
                }
            }
            if let Some(rec) = self.record(txn) {
                let pushed = rec.meta.write_ts;
                self.coord_mut(txn).bump_write_ts(pushed);
            }
            let c = self.coord_mut(txn);
            c.intents_before_commit = pipelined;
            c.last_writes_in_commit = last_writes.len();
            c.commit_proposals = last_writes.len() as u64;
            c.commit_rounds = 0;
            let ts = self.stage(txn)?;
            if crash_after_staging {
                let in_flight = self.in_flight_keys(txn);
                let proposals = self.coord(txn).commit_proposals;
                self.crash(txn);
                return Ok(Step::Done(CommitOutcome {
                    ts,
                    kind: CommitKind::StagedThenCrashed { in_flight },
                    proposals,
                }));
            }
        }
        self.finish_parallel_commit(txn)
    }

    fn in_flight_keys(&self, txn: TxnId) -> Vec<Key> {
        let c = self.coord(txn);
        let mut keys: Vec<Key> = c.intents.keys().cloned().collect();
        keys.extend(c.delayed.iter().map(|d| d.key.clone()));
        keys.sort();
        keys
    }

    /// Refreshes if the write timestamp moved (SERIALIZABLE), then writes the STAGING record
    /// listing every write. Returns the staging timestamp.
    fn stage(&mut self, txn: TxnId) -> Result<Timestamp, TxnError> {
        let c = self.coord(txn);
        let (read_ts, ts) = (c.read_ts, c.meta.write_ts);
        if c.isolation() == Isolation::Serializable && ts > read_ts {
            if let Err(detail) = self.refresh(txn, read_ts, ts) {
                let reason = if self.coord(txn).write_too_old {
                    RetryReason::WriteTooOld
                } else {
                    RetryReason::Serializable
                };
                self.rollback_internal(txn);
                return Err(TxnError::retry(reason, detail));
            }
        }
        let c = self.coord(txn);
        let mut in_flight: Vec<InFlightWrite> = c
            .intents
            .iter()
            .map(|(k, t)| InFlightWrite {
                key: k.clone(),
                ts: *t,
            })
            .collect();
        in_flight.extend(c.delayed.iter().map(|d| InFlightWrite {
            key: d.key.clone(),
            ts: d.meta.write_ts,
        }));
        let mut meta = c.meta.clone();
        meta.write_ts = ts;
        let gw = c.gateway;
        let anchor_idx = self.range_of(&meta.anchor);
        self.contact(txn, anchor_idx)?;
        let now = self.node(gw).hlc.peek();
        let range = &mut self.ranges[anchor_idx];
        range.records.insert(
            txn,
            TxnRecord {
                meta,
                status: TxnStatus::Staging,
                last_heartbeat: now,
                in_flight_writes: in_flight,
            },
        );
        range.proposals += 1;
        let c = self.coord_mut(txn);
        c.staged_at = Some(ts);
        c.commit_rounds += 1;
        c.commit_proposals += 1;
        Ok(ts)
    }

    /// The coordinator waits until every in-flight write is replicated, then the
    /// transaction is (implicitly) committed: it marks the record COMMITTED and queues the
    /// intents for resolution.
    fn finish_parallel_commit(&mut self, txn: TxnId) -> Result<Step<CommitOutcome>, TxnError> {
        let ts = self.coord(txn).staged_at.expect("staged");
        let rec = self
            .record(txn)
            .cloned()
            .expect("a staged transaction has a record");
        if rec.status == TxnStatus::Aborted {
            self.coord_mut(txn).state = CoordState::Aborted;
            let why = self.abort_reasons.get(&txn).cloned().unwrap_or_default();
            return Err(TxnError::retry(RetryReason::Aborted, why));
        }
        if rec.status == TxnStatus::Staging {
            if let Some((_, why)) = self.coord(txn).failed_writes.first().cloned() {
                // The write never landed: the commit cannot complete. Abort (recovery
                // would, too).
                self.rollback_internal(txn);
                return Err(TxnError::retry(RetryReason::AsyncWriteFailure, why));
            }
            let missing: Vec<Key> = self
                .coord(txn)
                .delayed
                .iter()
                .map(|d| d.key.clone())
                .collect();
            if !missing.is_empty() {
                let wait = Wait::InFlight { keys: missing };
                self.waits.insert(txn, wait.clone());
                return Ok(Step::Blocked(wait));
            }
            // A write that landed above the staging timestamp (pushed by the timestamp
            // cache on its way) cannot complete this commit: stage again, higher (after a
            // refresh), in one more round.
            let above = self
                .coord(txn)
                .intents
                .values()
                .copied()
                .filter(|t| *t > ts)
                .max();
            if let Some(t) = above {
                self.coord_mut(txn).bump_write_ts(t);
                self.stage(txn)?;
                return self.finish_parallel_commit(txn);
            }
            // Every write is replicated at or below the staging timestamp: committed.
            let anchor_idx = self.range_of(&rec.meta.anchor);
            if let Some(r) = self.ranges[anchor_idx].records.get_mut(&txn) {
                r.status = TxnStatus::Committed;
            }
            self.finish(txn, anchor_idx, TxnStatus::Committed, ts);
        }
        let c = self.coord_mut(txn);
        c.state = CoordState::Committed(ts);
        let (pipelined, last_writes, proposals, rounds) = (
            c.intents_before_commit,
            c.last_writes_in_commit,
            c.commit_proposals,
            c.commit_rounds,
        );
        self.queue_own_resolution(txn, Resolution::Commit(ts));
        Ok(Step::Done(CommitOutcome {
            ts,
            kind: CommitKind::Parallel {
                pipelined,
                last_writes,
                rounds,
            },
            proposals,
        }))
    }

    /// Rolls `txn` back (the client asked, or after a retryable error).
    pub fn rollback(&mut self, txn: TxnId) -> Result<(), TxnError> {
        self.begin_request(txn)?;
        self.rollback_internal(txn);
        Ok(())
    }

    /// Marks the record ABORTED (if the transaction has one), releases its waiters and
    /// queues its intents for resolution.
    pub(super) fn rollback_internal(&mut self, txn: TxnId) {
        self.coord_mut(txn).state = CoordState::Aborted;
        if self.coord(txn).anchored {
            let anchor_idx = self.range_of(&self.coord(txn).meta.anchor);
            let mut rec = self.ranges[anchor_idx]
                .records
                .get(&txn)
                .cloned()
                .unwrap_or_else(|| TxnRecord::synthesized(self.coord(txn).meta.clone()));
            rec.status = TxnStatus::Aborted;
            let ts = rec.meta.write_ts;
            self.ranges[anchor_idx].records.insert(txn, rec);
            self.finish(txn, anchor_idx, TxnStatus::Aborted, ts);
        }
        self.queue_own_resolution(txn, Resolution::Abort);
    }
}
