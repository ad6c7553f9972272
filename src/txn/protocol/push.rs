//! Pushes: what a request that met another transaction's intent asks of that transaction.
//!
//! - PUSH_TIMESTAMP (a reader): "commit above my read timestamp". Allowed when the pushee is
//!   PENDING and the pusher's priority is higher, or the pushee tolerates moving its
//!   timestamp without a refresh (READ COMMITTED), or the pushee expired (then it is aborted).
//! - PUSH_ABORT (a writer wants the lock): allowed when the pushee expired or has a lower
//!   priority.
//!
//! A push that is not allowed waits in the pushee's txn wait queue (`txn_wait.rs`) until the
//! pushee finishes, expires, or a deadlock is broken. A STAGING pushee cannot be aborted by
//! priority: it may already be committed. Only once expired is its status *recovered*
//! (`recovery.rs`). The decision is a pure function of the pushee's record and the time.

use chitin_storage::Timestamp;

use super::meta::{Priority, TxnId};
use super::record::{TxnRecord, TxnStatus};
use crate::txn::Isolation;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushType {
    /// Move the pushee's timestamp to at least this one.
    Timestamp(Timestamp),
    Abort,
}

/// The pusher, as far as the decision is concerned.
#[derive(Clone, Copy, Debug)]
pub struct Pusher {
    pub txn: Option<TxnId>,
    pub priority: Priority,
}

/// What to do about the pushee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushDecision {
    /// The pushee already finished: resolve its intent accordingly.
    AlreadyFinal(TxnStatus, Timestamp),
    /// The pushee's timestamp is (now) at or above the requested one: move the intent up.
    Pushed(Timestamp),
    /// Abort the pushee (it expired, or the pusher outranks it).
    Abort,
    /// The pushee is STAGING and expired: run status recovery.
    Recover,
    /// Wait in the pushee's txn wait queue.
    Wait,
}

/// Why a push succeeded or waits, for people.
pub fn explain(
    decision: PushDecision,
    record: &TxnRecord,
    pusher: &Pusher,
    expired: bool,
) -> String {
    let pushee = record.meta.id;
    match decision {
        PushDecision::AlreadyFinal(s, _) => format!("{pushee} is already {s}"),
        PushDecision::Pushed(_) if expired => format!("{pushee} expired"),
        PushDecision::Pushed(_) if record.meta.isolation == Isolation::ReadCommitted => {
            format!("{pushee} is READ COMMITTED and may commit later")
        }
        PushDecision::Pushed(_) => format!(
            "pusher priority {} > {pushee} priority {}",
            pusher.priority, record.meta.priority
        ),
        PushDecision::Abort if expired => {
            format!("{pushee} expired: no heartbeat within the expiry")
        }
        PushDecision::Abort => format!(
            "pusher priority {} > {pushee} priority {}",
            pusher.priority, record.meta.priority
        ),
        PushDecision::Recover => format!("{pushee} is STAGING and expired"),
        PushDecision::Wait if record.status == TxnStatus::Staging => {
            format!("{pushee} is STAGING, may already be committed, and is not expired")
        }
        PushDecision::Wait => format!(
            "{pushee} is PENDING, priority {} not below the pusher's {}",
            record.meta.priority, pusher.priority
        ),
    }
}

/// Decides a push of `record`'s transaction at time `now`.
pub fn decide(
    record: &TxnRecord,
    pusher: &Pusher,
    push: PushType,
    now: Timestamp,
    expiry_nanos: u64,
) -> PushDecision {
    if record.status.is_final() {
        return PushDecision::AlreadyFinal(record.status, record.meta.write_ts);
    }
    let expired = record.is_expired(now, expiry_nanos);
    if record.status == TxnStatus::Staging {
        return if expired {
            PushDecision::Recover
        } else {
            PushDecision::Wait
        };
    }
    if let PushType::Timestamp(to) = push {
        if record.meta.write_ts >= to {
            return PushDecision::Pushed(record.meta.write_ts);
        }
    }
    if expired {
        return PushDecision::Abort;
    }
    let outranks = pusher.priority > record.meta.priority;
    match push {
        PushType::Timestamp(to)
            if outranks || record.meta.isolation == Isolation::ReadCommitted =>
        {
            PushDecision::Pushed(to)
        }
        PushType::Abort if outranks => PushDecision::Abort,
        _ => PushDecision::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::protocol::meta::{Epoch, Key, TxnMeta};

    fn record(prio: Priority) -> TxnRecord {
        TxnRecord::pending(
            TxnMeta {
                id: TxnId(1),
                epoch: Epoch(0),
                write_ts: Timestamp::new(10, 0),
                min_ts: Timestamp::new(10, 0),
                priority: prio,
                isolation: Isolation::Serializable,
                anchor: Key::new("a"),
            },
            Timestamp::new(10, 0),
        )
    }

    #[test]
    fn priority_and_expiry_decide_pushes() {
        let hi = Pusher {
            txn: Some(TxnId(2)),
            priority: Priority::HIGH,
        };
        let eq = Pusher {
            txn: Some(TxnId(2)),
            priority: Priority::NORMAL,
        };
        let r = record(Priority::NORMAL);
        let now = Timestamp::new(20, 0);
        let to = PushType::Timestamp(Timestamp::new(15, 0));
        assert_eq!(
            decide(&r, &hi, to, now, 100),
            PushDecision::Pushed(Timestamp::new(15, 0))
        );
        assert_eq!(decide(&r, &eq, to, now, 100), PushDecision::Wait);
        assert_eq!(
            decide(&r, &eq, PushType::Abort, now, 100),
            PushDecision::Wait
        );
        assert_eq!(
            decide(&r, &hi, PushType::Abort, now, 100),
            PushDecision::Abort
        );
        let later = Timestamp::new(200, 0);
        assert_eq!(
            decide(&r, &eq, PushType::Abort, later, 100),
            PushDecision::Abort
        );
        let mut staging = r.clone();
        staging.status = TxnStatus::Staging;
        assert_eq!(
            decide(&staging, &hi, PushType::Abort, now, 100),
            PushDecision::Wait
        );
        assert_eq!(
            decide(&staging, &eq, PushType::Abort, later, 100),
            PushDecision::Recover
        );
    }
}
