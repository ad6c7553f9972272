//! The plain data types of the storage interface.

use std::fmt;

/// Identifies a range (a raft group) within the whole cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RangeId(pub u64);

impl fmt::Display for RangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// A hybrid-logical-clock timestamp: wall-clock nanoseconds and a logical counter.
/// Ordered by wall time, then logical.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    pub wall: u64,
    pub logical: u32,
}

impl Timestamp {
    /// The smallest timestamp; reads at it see nothing written at a real time.
    pub const MIN: Timestamp = Timestamp {
        wall: 0,
        logical: 0,
    };
    /// The largest timestamp; a read at it sees every version.
    pub const MAX: Timestamp = Timestamp {
        wall: u64::MAX,
        logical: u32::MAX,
    };

    pub const fn new(wall: u64, logical: u32) -> Self {
        Timestamp { wall, logical }
    }

    /// Encodes the timestamp in 12 bytes that sort **descending** bytewise (newest first),
    /// as MVCC keys order their versions.
    pub fn encode_desc(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&(!self.wall).to_be_bytes());
        out[8..].copy_from_slice(&(!self.logical).to_be_bytes());
        out
    }

    /// Inverse of [`Timestamp::encode_desc`].
    pub fn decode_desc(b: &[u8; 12]) -> Self {
        let wall = !u64::from_be_bytes(b[..8].try_into().unwrap());
        let logical = !u32::from_be_bytes(b[8..].try_into().unwrap());
        Timestamp { wall, logical }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:010}", self.wall, self.logical)
    }
}

/// One key and its visible value, as returned by scans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The timestamp of the version returned.
    pub ts: Timestamp,
}

/// How to scan.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// Read timestamp: the newest version at or below it is visible.
    pub ts: Timestamp,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
    /// Descending key order when true.
    pub reverse: bool,
}

impl ScanOptions {
    pub fn at(ts: Timestamp) -> Self {
        ScanOptions {
            ts,
            limit: 0,
            reverse: false,
        }
    }
}

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    /// Writes a version of `key` at `ts`.
    Put {
        key: Vec<u8>,
        ts: Timestamp,
        value: Vec<u8>,
    },
    /// Writes a tombstone version of `key` at `ts`.
    Delete { key: Vec<u8>, ts: Timestamp },
    /// A range tombstone: hides every version at or below `ts` of the keys in `[start, end)`.
    /// `ts = Timestamp::MAX` removes a span's data altogether (e.g. a range moved away).
    DeleteRange {
        start: Vec<u8>,
        end: Vec<u8>,
        ts: Timestamp,
    },
    /// Sets the lock-table record of `key` (an intent: transaction meta + provisional value).
    PutLock { key: Vec<u8>, lock: Vec<u8> },
    /// Removes the lock-table record of `key`.
    DeleteLock { key: Vec<u8> },
}

/// A set of writes applied atomically, plus the raft applied index they bring each range to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub ops: Vec<BatchOp>,
    /// `(range, applied index)` pairs recorded with the batch.
    pub applied: Vec<(RangeId, u64)>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put(&mut self, key: impl Into<Vec<u8>>, ts: Timestamp, value: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Put {
            key: key.into(),
            ts,
            value: value.into(),
        });
    }
    pub fn delete(&mut self, key: impl Into<Vec<u8>>, ts: Timestamp) {
        self.ops.push(BatchOp::Delete {
            key: key.into(),
            ts,
        });
    }
    pub fn delete_range(
        &mut self,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
        ts: Timestamp,
    ) {
        self.ops.push(BatchOp::DeleteRange {
            start: start.into(),
            end: end.into(),
            ts,
        });
    }
    pub fn put_lock(&mut self, key: impl Into<Vec<u8>>, lock: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::PutLock {
            key: key.into(),
            lock: lock.into(),
        });
    }
    pub fn delete_lock(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::DeleteLock { key: key.into() });
    }
    /// Records that applying this batch brings `range` to raft index `index`.
    pub fn set_applied(&mut self, range: RangeId, index: u64) {
        self.applied.push((range, index));
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.applied.is_empty()
    }
}
