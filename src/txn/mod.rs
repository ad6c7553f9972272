//! Transactions: the node-wide hybrid logical clock and the gateway's transaction
//! coordinator ([`Txn`]), which buffers writes, reads its own writes, and commits through
//! the ranges (see `kv/` for what the ranges check).
//!
//! # Implementation caveats
//!
//! - SERIALIZABLE by read refresh: a read-write transaction records what it read
//!   ([`ReadSet`]); at commit every range it read re-checks, at the commit timestamp,
//!   that nobody wrote there since the read timestamp (else 40001), and raises its read
//!   high-water mark so nobody can. Read-only transactions read one snapshot and need no
//!   refresh. No intents, pushes or uncertainty intervals yet (issue 4).
//! - READ COMMITTED: a fresh snapshot per statement, no refresh; a write that conflicts
//!   with a commit since the statement that made it fails the commit with 40001 (where
//!   PostgreSQL would wait for the other writer and re-apply the statement).
//! - Row locks: UPDATE and DELETE of rows found by primary key lock each row on its range
//!   before reading it (`KvRequest::Lock`); a transaction that finds the row locked waits
//!   for the holder to end, and if the row changed meanwhile it moves its read timestamp
//!   past that write, refreshing what it read so far (SERIALIZABLE) — so contending
//!   writers queue instead of failing at commit. Locks are in memory on the leaseholder
//!   and advisory (commits still validate); scans take none; `FOR UPDATE` / `FOR SHARE`
//!   take none yet (plain reads, refreshed under SERIALIZABLE).
//! - The clock ([`Hlc`]) is a monotonic nanosecond counter that follows the node's wall
//!   clock and is moved forward by every write a replica applies (so a leaseholder's clock
//!   is past every value it has served) and by every value a read found uncertain.
//! - Uncertainty: in a cluster of more than one node, clocks disagree by up to the maximum
//!   offset (`--max-offset`, default 500 ms). A transaction that starts at `read_ts` may
//!   miss a write that finished before it started but was stamped by a node whose clock
//!   runs ahead. So every read also looks at `(read_ts, uncertainty_limit]`
//!   (`uncertainty_limit = read_ts + max offset`, capped by the leaseholder's own clock):
//!   a value there is *uncertain*, and the read moves the transaction's read timestamp up
//!   to it ([`Txn::advance_read_ts`] after refreshing what was read so far, or a 40001 if
//!   that fails) and reads again. The retry's interval ends at the serving node's clock
//!   reading (nothing it applied was above it) only when that one node serves the whole
//!   read again (one key, a span inside one range, DistSQL flows all on one node): another
//!   node's clock may run ahead of it by up to the maximum offset, so a read served by
//!   several nodes keeps its whole interval. Nodes whose clock is off by more than the
//!   maximum from most others stop serving (`node::clock`). Single-node servers share one
//!   clock and have no uncertainty.

pub mod protocol;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chitin_storage::Timestamp;

use crate::kv::{KvWrite, TxnId};

/// How far apart the clocks of a cluster's nodes may be (`--max-offset`): the width of a
/// transaction's uncertainty interval.
pub const DEFAULT_MAX_OFFSET: Duration = Duration::from_millis(500);

/// The node-wide clock, read by every core without a message (one atomic).
#[derive(Debug)]
pub struct Hlc {
    last: AtomicU64,
    max_offset: Duration,
}

impl Default for Hlc {
    fn default() -> Self {
        Self::new()
    }
}

impl Hlc {
    pub fn new() -> Self {
        Self::with_max_offset(DEFAULT_MAX_OFFSET)
    }

    pub fn with_max_offset(max_offset: Duration) -> Self {
        Hlc {
            last: AtomicU64::new(0),
            max_offset,
        }
    }

    /// The largest offset between two nodes' clocks the cluster tolerates.
    pub fn max_offset(&self) -> Duration {
        self.max_offset
    }

    /// A timestamp strictly greater than every one handed out before.
    pub fn now(&self) -> Timestamp {
        let wall = chitin_net::clock::wall_nanos();
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(prev + 1);
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Timestamp::new(next, 0),
                Err(p) => prev = p,
            }
        }
    }

    /// Moves the clock past `ts` (after observing it, e.g. a commit timestamp).
    pub fn update(&self, ts: Timestamp) {
        self.last.fetch_max(ts.wall, Ordering::AcqRel);
    }
}

/// A buffered write, keyed by the key it writes.
#[derive(Clone, Debug)]
pub enum Pending {
    Put(Vec<u8>),
    Insert(Vec<u8>),
    Delete,
}

/// What a transaction read: keys, and spans `[start, end)` scanned. Its commit refreshes
/// them (see the module caveats).
#[derive(Clone, Debug, Default)]
pub struct ReadSet {
    pub keys: Vec<Vec<u8>>,
    pub spans: Vec<(Vec<u8>, Vec<u8>)>,
}

impl ReadSet {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.spans.is_empty()
    }
}

/// The gateway side of one transaction: a read timestamp, a write buffer and a read set.
pub struct Txn {
    pub id: TxnId,
    /// Reads see what committed at or below it; a read that meets an uncertain value or
    /// waits for a lock moves it up ([`Txn::advance_read_ts`]).
    read_ts: Cell<Timestamp>,
    /// Values above `read_ts` and at or below this may have been written before the
    /// transaction started, by a node whose clock runs ahead ([`Txn::uncertainty_limit`]).
    uncertainty_limit: Cell<Timestamp>,
    /// Reads served since the read timestamp was last chosen (a read that is the first
    /// can move the timestamp without refreshing anything).
    pub reads_served: Cell<u64>,
    pub writes: BTreeMap<Vec<u8>, Pending>,
    /// Whether reads are recorded: off for a statement that cannot write (an implicit
    /// transaction's SELECT), so the read path allocates nothing for it.
    pub track_reads: bool,
    pub reads: RefCell<ReadSet>,
    /// A single statement's implicit transaction (not BEGIN … COMMIT).
    pub implicit: bool,
    pub isolation: Isolation,
    /// `READ ONLY` (`BEGIN READ ONLY`, `default_transaction_read_only`): writes fail with
    /// 25006.
    pub read_only: bool,
    /// The read timestamp of the statement that buffered the first write: commits check
    /// write-write conflicts from there (READ COMMITTED moves `read_ts` per statement).
    pub first_write_ts: Cell<Option<Timestamp>>,
    /// Ranges where this transaction took row locks (released when it ends).
    pub locked: RefCell<Vec<chitin_storage::RangeId>>,
    /// The catalog version a session's transaction began with, held until it ends
    /// (online schema changes wait for it: [`crate::node::catalog_pins`]).
    pub pin: Option<crate::node::catalog_pins::CatalogPin>,
}

/// Isolation levels. REPEATABLE READ and SNAPSHOT run as SERIALIZABLE, READ UNCOMMITTED
/// as READ COMMITTED (as PostgreSQL and CockroachDB do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Isolation {
    #[default]
    Serializable,
    /// Each statement reads a fresh snapshot; no read refresh at commit. Write-write
    /// conflicts still fail the commit with 40001 (PostgreSQL would wait and re-check).
    ReadCommitted,
}

impl Isolation {
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Serializable => "serializable",
            Isolation::ReadCommitted => "read committed",
        }
    }

    /// From a level's SQL name (`read committed`, `SERIALIZABLE`, …).
    pub fn from_name(s: &str) -> Option<Isolation> {
        match s.trim().to_ascii_lowercase().as_str() {
            "serializable" | "repeatable read" | "snapshot" | "default" => {
                Some(Isolation::Serializable)
            }
            "read committed" | "read uncommitted" => Some(Isolation::ReadCommitted),
            _ => None,
        }
    }
}

impl Txn {
    pub fn new(id: TxnId, read_ts: Timestamp) -> Self {
        Txn {
            id,
            read_ts: Cell::new(read_ts),
            uncertainty_limit: Cell::new(read_ts),
            reads_served: Cell::new(0),
            writes: BTreeMap::new(),
            track_reads: true,
            reads: RefCell::new(ReadSet::default()),
            implicit: false,
            isolation: Isolation::Serializable,
            read_only: false,
            first_write_ts: Cell::new(None),
            locked: RefCell::new(Vec::new()),
            pin: None,
        }
    }

    /// The timestamp reads are served at.
    pub fn read_ts(&self) -> Timestamp {
        self.read_ts.get()
    }

    /// Where the uncertainty interval `(read_ts, limit]` ends (`read_ts`: no interval).
    pub fn uncertainty_limit(&self) -> Timestamp {
        self.uncertainty_limit.get()
    }

    /// Starts reading at `ts` afresh (a new transaction attempt, a READ COMMITTED
    /// statement, AS OF SYSTEM TIME) with uncertainty up to `limit`.
    pub fn reset_read_ts(&self, ts: Timestamp, limit: Timestamp) {
        self.read_ts.set(ts);
        self.uncertainty_limit.set(limit.max(ts));
        self.reads_served.set(0);
    }

    /// Moves the read timestamp up to `ts`, once what was read below it is known to be
    /// unchanged (refreshed, or nothing read yet). The uncertainty limit stays: it is
    /// about when the transaction started.
    pub fn advance_read_ts(&self, ts: Timestamp) {
        if ts <= self.read_ts.get() {
            return;
        }
        self.read_ts.set(ts);
        if self.first_write_ts.get().is_some() {
            self.first_write_ts.set(Some(ts));
        }
    }

    /// Remembers that a row lock was taken on `range`.
    pub fn note_lock(&self, range: chitin_storage::RangeId) {
        let mut l = self.locked.borrow_mut();
        if !l.contains(&range) {
            l.push(range);
        }
    }

    fn note_write(&mut self) {
        if self.first_write_ts.get().is_none() {
            self.first_write_ts.set(Some(self.read_ts.get()));
        }
    }

    /// Records a read of `key`.
    pub fn read_key(&self, key: &[u8]) {
        if self.track_reads {
            self.reads.borrow_mut().keys.push(key.to_vec());
        }
    }

    /// Records a scan of `[start, end)`.
    pub fn read_span(&self, start: &[u8], end: &[u8]) {
        if self.track_reads && start < end {
            self.reads
                .borrow_mut()
                .spans
                .push((start.to_vec(), end.to_vec()));
        }
    }

    /// What this transaction itself wrote to `key`: `Some(Some(v))` a value, `Some(None)` a
    /// deletion, `None` nothing.
    pub fn own_write(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.writes.get(key).map(|p| match p {
            Pending::Put(v) | Pending::Insert(v) => Some(v.as_slice()),
            Pending::Delete => None,
        })
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.note_write();
        // A put over our own insert stays an insert (the key was absent when we checked).
        let p = match self.writes.get(&key) {
            Some(Pending::Insert(_)) => Pending::Insert(value),
            _ => Pending::Put(value),
        };
        self.writes.insert(key, p);
    }

    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.note_write();
        // Re-inserting a key this transaction deleted is a plain put.
        let p = match self.writes.get(&key) {
            Some(Pending::Delete) | Some(Pending::Put(_)) => Pending::Put(value),
            _ => Pending::Insert(value),
        };
        self.writes.insert(key, p);
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.note_write();
        match self.writes.get(&key) {
            // Deleting our own insert: nothing to write at all.
            Some(Pending::Insert(_)) => {
                self.writes.remove(&key);
            }
            _ => {
                self.writes.insert(key, Pending::Delete);
            }
        }
    }

    /// The buffered writes as KV writes, in key order.
    pub fn kv_writes(&self) -> Vec<KvWrite> {
        self.writes
            .iter()
            .map(|(k, p)| match p {
                Pending::Put(v) => KvWrite::Put {
                    key: k.clone(),
                    value: v.clone(),
                },
                Pending::Insert(v) => KvWrite::Insert {
                    key: k.clone(),
                    value: v.clone(),
                },
                Pending::Delete => KvWrite::Delete { key: k.clone() },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hlc_is_strictly_monotonic() {
        let h = Hlc::new();
        let mut prev = h.now();
        for _ in 0..10_000 {
            let t = h.now();
            assert!(t > prev);
            prev = t;
        }
        h.update(Timestamp::new(prev.wall + 1_000_000_000_000, 0));
        assert!(h.now().wall > prev.wall + 1_000_000_000_000);
    }

    #[test]
    fn write_buffer_folds_insert_and_delete() {
        let mut t = Txn::new(1, Timestamp::MIN);
        t.insert(b"k".to_vec(), b"v".to_vec());
        t.delete(b"k".to_vec());
        assert!(t.writes.is_empty());
        t.delete(b"j".to_vec());
        t.insert(b"j".to_vec(), b"w".to_vec());
        assert!(matches!(
            t.writes.get(b"j".as_slice()),
            Some(Pending::Put(_))
        ));
    }
}
