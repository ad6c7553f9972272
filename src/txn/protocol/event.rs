//! What happened inside a request, besides its answer: pushes, aborts, refreshes,
//! recoveries. The harness prints these so a golden file tells the whole story.

use std::fmt;

use chitin_storage::Timestamp;

use super::meta::{Key, Ts, TxnId};
use super::record::TxnStatus;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A reader pushed a writer's timestamp above its read.
    PushedTimestamp {
        pusher: TxnId,
        pushee: TxnId,
        to: Timestamp,
        why: String,
    },
    /// A pusher aborted the pushee.
    AbortedByPush {
        pusher: TxnId,
        pushee: TxnId,
        why: String,
    },
    /// A request found a finished transaction's intent and resolved it itself.
    ResolvedConflict {
        by: TxnId,
        key: Key,
        owner: TxnId,
        status: TxnStatus,
    },
    /// The timestamp cache moved a write above a read already served.
    TsCachePush {
        txn: TxnId,
        key: Key,
        read: Timestamp,
        from: Timestamp,
        to: Timestamp,
    },
    /// A write met a newer committed version and was placed above it.
    WriteTooOld {
        txn: TxnId,
        key: Key,
        newer: Timestamp,
        to: Timestamp,
    },
    /// A read met a value inside its uncertainty interval.
    Uncertain {
        txn: TxnId,
        key: Key,
        value_ts: Timestamp,
        read_ts: Timestamp,
        limit: Timestamp,
    },
    /// A transaction moved its read timestamp forward by refreshing its reads.
    Refreshed {
        txn: TxnId,
        from: Timestamp,
        to: Timestamp,
        spans: usize,
    },
    /// A READ COMMITTED statement took a new snapshot and evaluated again.
    StatementRetried {
        txn: TxnId,
        key: Key,
        read_ts: Timestamp,
        why: &'static str,
    },
    /// A deadlock was found and broken.
    DeadlockBroken { victim: TxnId, cycle: Vec<TxnId> },
    /// Status recovery of an expired STAGING record.
    Recovered {
        txn: TxnId,
        status: TxnStatus,
        detail: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::PushedTimestamp {
                pusher,
                pushee,
                to,
                why,
            } => {
                write!(
                    f,
                    "{pusher} pushed {pushee}'s timestamp to {} ({why})",
                    Ts(*to)
                )
            }
            Event::AbortedByPush {
                pusher,
                pushee,
                why,
            } => {
                write!(f, "{pusher} aborted {pushee} ({why})")
            }
            Event::ResolvedConflict {
                by,
                key,
                owner,
                status,
            } => {
                write!(
                    f,
                    "{by} resolved {owner}'s intent on {key} ({owner} is {status})"
                )
            }
            Event::TsCachePush {
                txn,
                key,
                read,
                from,
                to,
            } => write!(
                f,
                "timestamp cache: {key} was read @ {}; {txn}'s write moves from {} to {}",
                Ts(*read),
                Ts(*from),
                Ts(*to)
            ),
            Event::WriteTooOld {
                txn,
                key,
                newer,
                to,
            } => write!(
                f,
                "write too old: {key} has a committed value @ {}; {txn}'s write moves to {}",
                Ts(*newer),
                Ts(*to)
            ),
            Event::Uncertain {
                txn,
                key,
                value_ts,
                read_ts,
                limit,
            } => write!(
                f,
                "{txn}: {key} @ {} is inside the uncertainty interval ({}, {}]",
                Ts(*value_ts),
                Ts(*read_ts),
                Ts(*limit)
            ),
            Event::Refreshed {
                txn,
                from,
                to,
                spans: 0,
            } => write!(
                f,
                "{txn} moves its read timestamp from {} to {} (nothing read before, nothing to refresh)",
                Ts(*from),
                Ts(*to)
            ),
            Event::Refreshed {
                txn,
                from,
                to,
                spans,
            } => write!(
                f,
                "{txn} refreshed {spans} read span(s) from {} to {}: nothing changed",
                Ts(*from),
                Ts(*to)
            ),
            Event::StatementRetried {
                txn,
                key,
                read_ts,
                why,
            } => write!(
                f,
                "{txn}: statement re-evaluated at read ts {} ({key}: {why})",
                Ts(*read_ts)
            ),
            Event::DeadlockBroken { victim, cycle } => {
                let c: Vec<String> = cycle.iter().map(|t| t.to_string()).collect();
                write!(
                    f,
                    "deadlock {} → {}: aborting {victim}",
                    c.join(" → "),
                    c[0]
                )
            }
            Event::Recovered {
                txn,
                status,
                detail,
            } => {
                write!(f, "status recovery of {txn}: {detail} → {status}")
            }
        }
    }
}
