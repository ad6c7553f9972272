//! chitin-storage: the storage a Chitin core owns alone.
//!
//! Every core of a node holds one [`RaftLog`](raftlog) (a segmented, append-only log that
//! multiplexes the raft logs of all the core's ranges) and one MVCC [`Engine`]: an LSM tree
//! on glommio `DmaFile`s (O_DIRECT, io_uring) in production, or [`MemEngine`] (a `BTreeMap`)
//! in the tests of the layers above. Nothing here knows SQL or raft policy: callers hand in
//! opaque keys, values and log entries.
//!
//! # The contract every engine keeps
//!
//! - **MVCC keys** are `(user key, timestamp)`, ordered by key ascending then timestamp
//!   descending. A read at `ts` sees, per key, the newest version with timestamp `<= ts`;
//!   a tombstone version or a covering range tombstone hides the key.
//! - **Atomic batches.** A [`WriteBatch`] becomes visible all at once: no reader ever sees
//!   part of one.
//! - **Intents live apart.** The lock table (`key → opaque lock record`) is a separate key
//!   space; MVCC reads and scans never see it.
//! - **The raft log is the WAL.** Writes applied from raft go to the memtable only. The
//!   engine remembers, durably as of its last flush, the applied index per range given in
//!   each batch ([`WriteBatch::set_applied`]); after a crash [`Engine::applied_index`]
//!   tells the caller from where to replay committed raft entries.
//! - **Errors, not panics.** I/O failures and corruption are [`Error`]s; corruption names
//!   the file and offset.
//!
//! # Implementation caveats
//!
//! See each module's essay.

#![allow(async_fn_in_trait)]

mod error;
mod local;
pub mod lsm;
mod mem;
pub mod raftlog;
mod span;
mod types;

pub use error::{Error, Result};
pub use local::{prime_direct_io, LocalStore, PROBE_FILE};
pub use lsm::{ExportSpec, LsmEngine, LsmOptions, LsmStats, VersionedKeyValue};
pub use mem::MemEngine;
pub use raftlog::{RaftLog, RaftLogOptions, RaftLogStats, RangeWrite};
pub use span::{version_bytes as span_version_bytes, SpanSize};
pub use types::{BatchOp, KeyValue, RangeId, ScanOptions, Timestamp, WriteBatch};

/// The MVCC engine of one core.
///
/// All methods take `&self`: an engine is shared by the tasks of one core through `Rc`, and
/// is never sent to another thread. Methods are `async` because the LSM reads blocks from
/// disk; the in-memory engine never suspends.
pub trait Engine {
    /// Applies `batch` atomically: once this returns, every later read sees all of it, and no
    /// read ever sees part of it. Not durable by itself (the raft log is the WAL); durable
    /// after the next [`Engine::flush`].
    async fn write(&self, batch: WriteBatch) -> Result<()>;

    /// Returns the newest visible value of `key` at `ts`: `None` when there is no version at
    /// or below `ts`, or the newest one is a tombstone, or a range tombstone covers it.
    async fn get(&self, key: &[u8], ts: Timestamp) -> Result<Option<Vec<u8>>>;

    /// Returns the visible versions at `opts.ts` of the keys in `[start, end)`, one per key,
    /// in key order (descending when `opts.reverse`), at most `opts.limit` of them (0 means
    /// no limit). Tombstoned keys are skipped and do not count towards the limit.
    async fn scan(&self, start: &[u8], end: &[u8], opts: &ScanOptions) -> Result<Vec<KeyValue>>;

    /// Returns the lock-table record for `key`, if any.
    async fn get_lock(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Returns the lock-table records in `[start, end)`, in key order.
    async fn scan_locks(&self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Returns the applied index of `range` recorded by the last durable flush (or the last
    /// write, for an engine with no durability), or `None` if the range was never written.
    fn applied_index(&self, range: RangeId) -> Option<u64>;

    /// Makes every write so far durable (memtable → SST, manifest synced), so the raft log
    /// may be truncated below the applied indexes it records.
    async fn flush(&self) -> Result<()>;
}
