//! Status recovery of a STAGING transaction whose coordinator went quiet, and delivery of
//! writes that were still in flight.
//!
//! A STAGING record says "committed if all of these writes are replicated at or below my
//! timestamp". A pusher that finds such a record expired asks each listed write's range.
//! When every write is there, the transaction *is* committed and the pusher records that.
//! When one is missing, the pusher *prevents* it: it raises that key's timestamp cache to
//! the staging timestamp under the range's latch, so the write, should it still arrive,
//! lands above the staging timestamp and can never complete the commit. Then ABORTED is
//! safe to record. Check-and-prevent is one evaluation per key, so no write can slip in
//! between.

use chitin_storage::Timestamp;

use super::cluster::{Cluster, Wait};
use super::coordinator::CoordState;
use super::error::{RetryReason, TxnError};
use super::event::Event;
use super::latch::LatchAccess;
use super::meta::{Key, Span, Ts, TxnId};
use super::mvcc::{Resolution, WriteConflict, WriteOutcome};
use super::record::TxnStatus;

/// What happened to one delivered in-flight write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Landed(WriteOutcome),
    Conflict(WriteConflict),
}

impl Cluster {
    /// Recovers the status of `txn`, whose record is on the range holding `anchor`, if the
    /// record is STAGING. Returns the record's status afterwards.
    pub fn recover(&mut self, txn: TxnId, anchor: &Key) -> Option<TxnStatus> {
        let anchor_idx = self.range_of(anchor);
        let rec = self.ranges[anchor_idx].records.get(&txn).cloned()?;
        if rec.status != TxnStatus::Staging {
            return Some(rec.status);
        }
        let staging_ts = rec.meta.write_ts;
        let mut missing: Option<Key> = None;
        let mut found = Vec::new();
        for w in &rec.in_flight_writes {
            let idx = self.range_of(&w.key);
            let span = Span::key(&w.key);
            let range = &mut self.ranges[idx];
            let latch = range
                .latches
                .acquire(&[(span.clone(), LatchAccess::Write)])
                .expect("invariant: requests evaluate one at a time");
            let landed = range
                .mvcc
                .intent(&w.key)
                .is_some_and(|i| i.txn.id == txn && i.ts() <= staging_ts);
            if !landed {
                range.ts_cache.add(span, staging_ts, None);
            }
            range.latches.release(latch);
            if landed {
                found.push(w.key.to_string());
            } else {
                missing = Some(w.key.clone());
                break;
            }
        }
        let (status, detail, how) = match &missing {
            None => (
                TxnStatus::Committed,
                format!(
                    "STAGING @ {}, every in-flight write found ({})",
                    Ts(staging_ts),
                    found.join(", ")
                ),
                Resolution::Commit(staging_ts),
            ),
            Some(k) => (
                TxnStatus::Aborted,
                format!(
                    "STAGING @ {}, in-flight write {k} missing: prevented (timestamp cache of {k} raised to {})",
                    Ts(staging_ts),
                    Ts(staging_ts)
                ),
                Resolution::Abort,
            ),
        };
        self.emit(Event::Recovered {
            txn,
            status,
            detail: detail.clone(),
        });
        let mut rec = rec;
        rec.status = status;
        self.ranges[anchor_idx].records.insert(txn, rec.clone());
        self.ranges[anchor_idx].proposals += 1;
        if status == TxnStatus::Aborted {
            self.abort_reasons
                .insert(txn, format!("status recovery: {detail}"));
        }
        // A coordinator still waiting for its in-flight writes hears the verdict.
        if matches!(self.waits.get(&txn), Some(Wait::InFlight { .. })) {
            if status == TxnStatus::Committed {
                self.wake(txn);
            } else {
                self.clear_wait(txn);
                if let Some(c) = self.txns.get_mut(&txn) {
                    c.state = CoordState::Aborted;
                }
                self.cancelled.push((
                    txn,
                    TxnError::retry(RetryReason::Aborted, format!("status recovery: {detail}")),
                ));
            }
        }
        self.finish(txn, anchor_idx, status, staging_ts);
        for w in &rec.in_flight_writes {
            self.resolution_queue
                .push(super::cluster::PendingResolution {
                    key: w.key.clone(),
                    txn,
                    how,
                });
        }
        Some(status)
    }

    /// Replicates `txn`'s in-flight writes now (they were sent earlier, maybe by a
    /// coordinator that since died). Each is evaluated as it would have been then, against
    /// the range as it is now.
    pub fn deliver(&mut self, txn: TxnId) -> Vec<(Key, Delivery)> {
        let delayed = std::mem::take(&mut self.coord_mut(txn).delayed);
        let mut out = Vec::new();
        for d in delayed {
            let idx = self.range_of(&d.key);
            let span = Span::key(&d.key);
            let range = &mut self.ranges[idx];
            let latch = range
                .latches
                .acquire(&[(span.clone(), LatchAccess::Write)])
                .expect("invariant: requests evaluate one at a time");
            let mut meta = d.meta.clone();
            if let Some(p) = range.ts_cache.push_for_write(&span, txn, meta.write_ts) {
                meta.write_ts = p;
            }
            let res = range.mvcc.put_intent(&d.key, &meta, d.value.clone());
            if res.is_ok() {
                range.proposals += 1;
            }
            range.latches.release(latch);
            match res {
                Ok(w) => {
                    self.coord_mut(txn).intents.insert(d.key.clone(), w.ts);
                    if self
                        .record(txn)
                        .is_some_and(|r| r.status == TxnStatus::Aborted)
                    {
                        self.resolution_queue
                            .push(super::cluster::PendingResolution {
                                key: d.key.clone(),
                                txn,
                                how: Resolution::Abort,
                            });
                    }
                    out.push((d.key, Delivery::Landed(w)));
                }
                Err(c) => {
                    let why = format!(
                        "in-flight write of {} met {}'s intent",
                        d.key, c.intent.txn.id
                    );
                    self.coord_mut(txn).failed_writes.push((d.key.clone(), why));
                    out.push((d.key, Delivery::Conflict(c)))
                }
            }
        }
        if matches!(self.waits.get(&txn), Some(Wait::InFlight { .. })) {
            self.wake(txn);
        }
        out
    }

    /// The staging timestamp of `txn`'s record, if it has one.
    pub fn staging_ts(&self, txn: TxnId) -> Option<Timestamp> {
        self.record(txn).map(|r| r.meta.write_ts)
    }
}
