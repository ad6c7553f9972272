//! Transaction records of multi-range commits, and how an unfinished one is decided.
//!
//! A transaction that writes to several ranges commits in parallel (`sql::session`): it
//! writes a STAGING record (its commit timestamp and the ranges it writes) into the system
//! range *while* each range durably prepares its writes. It is committed once the record
//! and every prepare at or below the record's timestamp are durable — one round of
//! consensus — and the client hears so then. Making the outcome explicit (record →
//! COMMITTED, each range applies its writes, record deleted) happens after, in the
//! background.
//!
//! Whoever finds a transaction unfinished (a prepare left alone by a dead or disconnected
//! coordinator, or one found at restart) decides it here, by the record:
//! - none: it inserts an ABORTED record (the coordinator's STAGING insert then fails, so
//!   the two cannot both win);
//! - COMMITTED / ABORTED: that is the outcome;
//! - STAGING: it asks every participant ([`KvRequest::Recover`]) whether the transaction
//!   is prepared there at or below the record's timestamp. A participant that is not
//!   refuses the prepare from then on, so the answer cannot change behind the recoverer's
//!   back. All prepared → COMMITTED, else ABORTED, written only if the record is still the
//!   STAGING one it read (a conditional write: the coordinator may be deciding too).

use std::sync::atomic::Ordering;

use chitin_storage::{RangeId, Timestamp};

use super::CoreCtx;
use crate::error::{Error, ErrorKind, Result};
use crate::kv::keys::{txn_record_key, TxnRecord, SYSTEM_RANGE};
use crate::kv::{KvRequest, KvResponse, KvWrite, TxnId};

/// What became of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Committed(Timestamp),
    Aborted,
}

/// A one-write transaction on the system range under an id of its own (the record's
/// transaction may itself be a participant there: its id must not be reused).
pub async fn write_record(ctx: &CoreCtx, read_ts: Timestamp, write: KvWrite) -> Result<Timestamp> {
    let writer = ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed);
    match ctx
        .send(KvRequest::OnePhase {
            range: SYSTEM_RANGE,
            txn: writer,
            read_ts,
            writes: vec![write],
            reads: Default::default(),
        })
        .await?
    {
        KvResponse::Committed { commit_ts } => Ok(commit_ts),
        other => Err(Error::internal(format!(
            "unexpected response to a transaction record write: {other:?}"
        ))),
    }
}

/// Inserts `txn`'s record; `Ok(None)` when one exists already.
pub async fn insert(ctx: &CoreCtx, txn: TxnId, rec: &TxnRecord) -> Result<Option<Timestamp>> {
    let write = KvWrite::Insert {
        key: txn_record_key(txn),
        value: rec.encode(),
    };
    match write_record(ctx, ctx.shared.hlc.now(), write).await {
        Ok(ts) => Ok(Some(ts)),
        Err(e) if e.kind == ErrorKind::UniqueViolation => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `txn`'s record with `rec` if nobody wrote it after `seen_at` (when its present
/// value was read, or written by us). `Ok(false)`: somebody did.
pub async fn replace(
    ctx: &CoreCtx,
    txn: TxnId,
    seen_at: Timestamp,
    rec: &TxnRecord,
) -> Result<bool> {
    let write = KvWrite::Put {
        key: txn_record_key(txn),
        value: rec.encode(),
    };
    match write_record(ctx, seen_at, write).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind == ErrorKind::SerializationFailure => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `rec` unconditionally.
pub async fn put(ctx: &CoreCtx, txn: TxnId, rec: &TxnRecord) -> Result<()> {
    let write = KvWrite::Put {
        key: txn_record_key(txn),
        value: rec.encode(),
    };
    write_record(ctx, ctx.shared.hlc.now(), write)
        .await
        .map(|_| ())
}

/// Removes `txn`'s record (every participant applied the outcome).
pub async fn delete(ctx: &CoreCtx, txn: TxnId) -> Result<()> {
    let write = KvWrite::Delete {
        key: txn_record_key(txn),
    };
    write_record(ctx, ctx.shared.hlc.now(), write)
        .await
        .map(|_| ())
}

/// `txn`'s record now, and the timestamp it was read at.
pub async fn read(ctx: &CoreCtx, txn: TxnId) -> Result<(Option<TxnRecord>, Timestamp)> {
    let at = ctx.shared.hlc.now();
    match ctx
        .send(KvRequest::Get {
            range: SYSTEM_RANGE,
            key: txn_record_key(txn),
            ts: at,
            unc: Timestamp::MIN,
        })
        .await?
    {
        KvResponse::Value(None) => Ok((None, at)),
        KvResponse::Value(Some(v)) => match TxnRecord::decode(&v) {
            Some(r) => Ok((Some(r), at)),
            None => Err(Error::internal(format!(
                "corrupt transaction record of {txn}"
            ))),
        },
        other => Err(Error::internal(format!(
            "unexpected response to a transaction record read: {other:?}"
        ))),
    }
}

/// Whether every participant of a STAGING record holds `txn` durably prepared at or below
/// `ts`. A participant that does not will never prepare it any more.
pub async fn all_prepared(
    ctx: &CoreCtx,
    txn: TxnId,
    ts: Timestamp,
    participants: &[RangeId],
) -> Result<bool> {
    let asks = participants
        .iter()
        .map(|&range| {
            ctx.send(KvRequest::Recover {
                range,
                txn,
                staging_ts: ts,
            })
        })
        .collect::<Vec<_>>();
    let mut all = true;
    for answer in crate::sql::session::join_all(asks).await {
        match answer? {
            KvResponse::Prepared { min_commit_ts } => all &= min_commit_ts <= ts,
            KvResponse::Done => all = false,
            other => {
                return Err(Error::internal(format!(
                    "unexpected response to a recovery: {other:?}"
                )))
            }
        }
    }
    Ok(all)
}

/// Decides an unfinished transaction by its record (see the module essay). The caller
/// applies the outcome to the prepares it found.
pub async fn resolve(ctx: &CoreCtx, txn: TxnId) -> Result<Outcome> {
    for _ in 0..16 {
        if insert(ctx, txn, &TxnRecord::Aborted).await?.is_some() {
            return Ok(Outcome::Aborted);
        }
        let (rec, at) = read(ctx, txn).await?;
        match rec {
            // Deleted between the insert and the read: look again.
            None => continue,
            Some(TxnRecord::Committed(ts)) => return Ok(Outcome::Committed(ts)),
            Some(TxnRecord::Aborted) => return Ok(Outcome::Aborted),
            Some(TxnRecord::Staging { ts, participants }) => {
                let outcome = if all_prepared(ctx, txn, ts, &participants).await? {
                    Outcome::Committed(ts)
                } else {
                    Outcome::Aborted
                };
                if replace(ctx, txn, at, &outcome.record()).await? {
                    return Ok(outcome);
                }
            }
        }
    }
    Err(Error::retry(format!(
        "restart transaction: could not decide the outcome of transaction {txn}"
    )))
}

impl Outcome {
    pub fn record(self) -> TxnRecord {
        match self {
            Outcome::Committed(ts) => TxnRecord::Committed(ts),
            Outcome::Aborted => TxnRecord::Aborted,
        }
    }
}
