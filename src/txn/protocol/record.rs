//! Transaction records: the one place a transaction's fate is decided.
//!
//! The record lives on the range holding the transaction's anchor key (its first write).
//! PENDING records carry a heartbeat; a record (or, before one exists, a transaction start)
//! older than the expiry is *expired*, and any pusher may abort it. STAGING records list the
//! in-flight writes of a parallel commit: the transaction is committed as soon as all of them
//! are replicated at or below the staging timestamp, whether or not the record says so yet.
//! COMMITTED and ABORTED are final.

use std::fmt;

use chitin_storage::Timestamp;

use super::meta::{Key, Ts, TxnMeta};

/// How long a record lives without a heartbeat: 5 s.
pub const DEFAULT_EXPIRY_NANOS: u64 = 5_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnStatus {
    Pending,
    Staging,
    Committed,
    Aborted,
}

impl TxnStatus {
    pub fn is_final(self) -> bool {
        matches!(self, TxnStatus::Committed | TxnStatus::Aborted)
    }
}

impl fmt::Display for TxnStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TxnStatus::Pending => "PENDING",
            TxnStatus::Staging => "STAGING",
            TxnStatus::Committed => "COMMITTED",
            TxnStatus::Aborted => "ABORTED",
        })
    }
}

/// A write a STAGING record waits for: the key and the timestamp it was sent at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlightWrite {
    pub key: Key,
    pub ts: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnRecord {
    /// The transaction as last recorded; `meta.write_ts` is raised by timestamp pushes and
    /// is the commit timestamp once COMMITTED (the staging timestamp while STAGING).
    pub meta: TxnMeta,
    pub status: TxnStatus,
    pub last_heartbeat: Timestamp,
    pub in_flight_writes: Vec<InFlightWrite>,
}

impl TxnRecord {
    pub fn pending(meta: TxnMeta, now: Timestamp) -> Self {
        TxnRecord {
            meta,
            status: TxnStatus::Pending,
            last_heartbeat: now,
            in_flight_writes: Vec::new(),
        }
    }

    /// What a pusher assumes when it finds no record: PENDING since the transaction began.
    pub fn synthesized(meta: TxnMeta) -> Self {
        let start = meta.min_ts;
        TxnRecord::pending(meta, start)
    }

    /// Whether nobody has heard from the coordinator for longer than `expiry` at `now`.
    pub fn is_expired(&self, now: Timestamp, expiry_nanos: u64) -> bool {
        !self.status.is_final() && now.wall > self.last_heartbeat.wall.saturating_add(expiry_nanos)
    }
}

impl fmt::Display for TxnRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} @ {}",
            self.meta.id,
            self.status,
            Ts(self.meta.write_ts)
        )?;
        if self.status == TxnStatus::Staging {
            let keys: Vec<String> = self
                .in_flight_writes
                .iter()
                .map(|w| w.key.to_string())
                .collect();
            write!(f, " in-flight [{}]", keys.join(", "))?;
        }
        Ok(())
    }
}
