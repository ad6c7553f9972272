//! The raft log of one core: a single segmented, append-only log on glommio `DmaFile`s
//! (O_DIRECT, io_uring) that multiplexes the raft logs of all the core's ranges.
//!
//! # Why one log per core
//!
//! A core drives hundreds or thousands of raft groups. Each scheduler pass collects the
//! `Ready`s of all of them and must make their entries and hard states durable before
//! sending messages or applying. With one file per range that is one fdatasync per range;
//! here it is **one write and one fdatasync per batch** ([`RaftLog::append`]), whatever the
//! number of ranges in it (group commit, DESIGN §3 and §5).
//!
//! # On disk
//!
//! A directory of segment files `{seq:020}.log` (see `segment.rs`). Each holds records
//! framed by `record.rs`: a 32-byte header (crc32, length, segment sequence number, range,
//! kind) and a payload. A record concerns one range: a run of entries and/or a hard state,
//! a truncation marker, a "range removed" marker, or a checkpoint of the range's metadata;
//! plus one `SegmentStart` record at offset 0 of every segment naming its predecessor and
//! the byte offset where the predecessor's records end.
//!
//! Segments are **pre-zeroed**: written full of zeros and synced once, before any record
//! goes in. An append then only overwrites blocks that already exist, and fdatasync after
//! overwriting is far cheaper than after extending a file or writing fallocated blocks
//! (DESIGN §10). Segments that are no longer needed are **recycled**: renamed to the next
//! sequence number and appended into again without re-zeroing. The sequence number in every
//! record header is what keeps the stale records of a recycled segment from being read as
//! new ones. The next segment is prepared (zero-filled or renamed, synced, its name made
//! durable) by a background task while the current one fills, so rotation rarely waits.
//!
//! # Invariants
//!
//! - **Durable before visible.** [`RaftLog::append`] returns only after its records are
//!   fdatasync'd, and the in-memory index learns of them only then; a reader never sees an
//!   entry that a crash could take back.
//! - **Log order is the truth.** Replaying the records of the live segments in order
//!   rebuilds exactly the state the index held: an append overlapping existing entries
//!   replaces that suffix (raft's conflict truncation), a truncation drops a prefix, a
//!   removal forgets the range, a later hard state replaces an earlier one.
//! - **Checkpoints make old segments disposable.** The first write into every segment
//!   carries a `RangeState` record for every range (truncation point, term below it, hard
//!   state). So all metadata lives in the newest durably started segment or later, and an
//!   older segment may go as soon as no range holds a live entry in it. Segments are
//!   reclaimed oldest first (always a prefix of the log).
//! - **Appends rewrite only their own tail block.** Writes are whole aligned blocks; the
//!   partial last block is kept in memory and rewritten, with identical bytes for the
//!   records already durable, by the next append.
//! - **A torn tail is cut, never replayed.** Recovery reads the last segment until the
//!   first record whose sequence number, length or checksum is wrong and stops there. The
//!   next append then starts a new segment, so the cut point never moves and no stray
//!   bytes beyond it can later be mistaken for records. A bad record inside an older,
//!   sealed segment (whose end its successor recorded) is [`Error::Corruption`] naming the
//!   file and offset.
//! - **Errors, not panics.** A failed write or fdatasync leaves the file in an unknown
//!   state (an fdatasync error may have dropped dirty data), so the log refuses all further
//!   writes until it is reopened and recovered.
//!
//! # How it fits
//!
//! The per-core raft scheduler calls [`RaftLog::append`] once per round with every range's
//! new entries and hard state, then sends messages and applies committed entries, reading
//! them with [`RaftLog::entries`] (usually from the in-memory cache of recent entries).
//! After the MVCC engine flushes, the applied indexes it made durable allow
//! [`RaftLog::truncate`]. On restart, [`RaftLog::open`] recovers and [`RaftLog::ranges`]
//! with [`RaftLog::hard_state`], [`RaftLog::first_index`] and [`RaftLog::last_index`]
//! rebuild each replica's raft storage.
//!
//! # Implementation caveats
//!
//! - Truncation markers are not synced by [`RaftLog::truncate`]: they ride with the next
//!   append (or [`RaftLog::sync`], or [`RaftLog::close`]). A crash before then brings the
//!   truncated entries back (a longer but still valid log). Segments may be reclaimed
//!   before the marker is durable; that only removes a prefix of the entries a crash would
//!   bring back. [`RaftLog::remove_range`] is synced at once.
//! - Damage inside the tail segment cannot be told from a torn write and is cut like one:
//!   acknowledged records after it are dropped (and reported in
//!   [`RecoveryReport::torn_tail`]); raft brings them back from the other replicas.
//! - The term of the entry just below the first (raft's "snapshot term") is remembered only
//!   when the log held that entry when it was truncated; after a truncation past the end
//!   of the log (snapshot install) [`RaftLog::term`] of `first_index - 1` is unavailable,
//!   and the raft glue should keep the snapshot's term itself.
//! - A batch larger than a segment goes into one oversized segment (the file grows, and
//!   that append pays for extending the file).
//! - Every rotation writes one checkpoint record per range: with very many ranges and small
//!   segments that overhead grows; segments are 64 MiB by default.
//! - The index keeps ~72 bytes per live entry in memory (plus the data of cached
//!   entries), and recovery reads every live segment in full.
//! - Reads are not serialised with truncation: an [`RaftLog::entries`] call racing a
//!   truncation of the same entries may fail with [`Error::Unavailable`].
//! - Reclaiming renames or unlinks files without syncing the directory each time; after a
//!   crash an already reclaimed segment may reappear and is reclaimed again by recovery.
//! - An `append` future dropped midway (between its write and its index update) makes
//!   the log refuse further writes until reopened: the tail on disk is then unknown.
//! - Dropping the log without [`RaftLog::close`] loses queued truncation markers and
//!   leaves a running segment preparation to finish on its own; reopening the directory
//!   on the same thread waits for it first.
//! - Concurrent `append` calls are serialised, each with its own write and fdatasync; the
//!   batching is the caller's (the core's raft scheduler hands in one batch per round).
//! - [`RaftLog::truncate`] takes one range; each call walks all ranges to find the
//!   oldest segment still needed.
//! - Not yet: a fault-injecting file layer (the crash tests cut, zero, corrupt and
//!   sector-mix the files directly), and a limit on open file handles (every live
//!   segment stays open).
//!
//! # Measured
//!
//! `bench/benches/raftlog.rs` (criterion) on the 2-core development VM while other builds
//! ran (load ~7), so latencies are pessimistic: one append with fdatasync p50 ~0.35 ms
//! unloaded-ish (`measure_append_latency`), ~1.2–2 ms mean under that load; group commit
//! carries 16 × 4 KiB entries in ~1.5 ms (~10 k durable entries/s) and 64 × 1 KiB in
//! ~2 ms (~31 k entries/s); reading 16 recent entries from the cache ~2 µs, from disk
//! ~0.3 ms (nearby records are fetched with one read). Rotations after the first wait
//! ~0 ms for the background-prepared segment; the very first append of a fresh log
//! waits for its first 64 MiB zero-fill (~150 ms here).

mod index;
mod inspect;
mod record;
mod recovery;
mod segment;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use glommio::Task;
use glommio::TaskQueueHandle;

use self::index::{Location, LogIndex};
pub use self::inspect::{inspect, RecordInfo, SegmentInfo};
use self::record::{check_frame, Record, RecordBuf, HEADER_LEN, MAX_PAYLOAD};
pub use self::recovery::RecoveryReport;
pub(crate) use self::segment::sync_dir;
use self::segment::{free_name, Active, Segment, Source};
use crate::{Error, RangeId, Result};

/// One raft log entry of a range: its index, term and opaque data (the encoded raft
/// entry payload; the log never looks inside).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub data: Vec<u8>,
}

/// A range's raft hard state: current term, vote, commit index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// What one range's `Ready` asks to persist: new entries (consecutive indexes) and/or a
/// new hard state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeWrite {
    pub range: RangeId,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
}

/// How to open a [`RaftLog`].
#[derive(Clone, Debug)]
pub struct RaftLogOptions {
    /// Size of a fresh segment, zero-filled before use. Rounded up to the block size.
    pub segment_size: u64,
    /// Byte budget of the in-memory cache of recent entry data (FIFO by append order).
    pub cache_bytes: usize,
    /// How many reclaimed segments to keep for recycling; more are deleted.
    pub max_free_segments: usize,
    /// Task queue for preparing segments in the background (default: the current one).
    pub background_queue: Option<TaskQueueHandle>,
}

impl Default for RaftLogOptions {
    fn default() -> Self {
        RaftLogOptions {
            segment_size: 64 << 20,
            cache_bytes: 32 << 20,
            max_free_segments: 2,
            background_queue: None,
        }
    }
}

/// Counters of the log's work since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaftLogStats {
    /// Batches made durable (appends, syncs and range removals that wrote something).
    pub batches: u64,
    /// `write` calls on the append path.
    pub writes: u64,
    /// `fdatasync` calls on the append path (segment preparation syncs are not counted).
    pub fdatasyncs: u64,
    /// Time spent in those writes and fdatasyncs, in nanoseconds.
    pub write_nanos: u64,
    pub fdatasync_nanos: u64,
    /// Time appends spent waiting for the next segment to be prepared, in nanoseconds.
    pub rotation_wait_nanos: u64,
    /// Record bytes appended.
    pub bytes_appended: u64,
    /// Bytes written on the append path, including rewritten tail blocks and padding.
    pub bytes_written: u64,
    /// Segment rotations.
    pub rotations: u64,
    /// Segments reclaimed into the recycle pool.
    pub segments_freed: u64,
    /// Segments deleted.
    pub segments_deleted: u64,
    /// Reclaims that failed (the segment stays until the next recovery reclaims it).
    pub reclaim_errors: u64,
    /// Entries served from the cache / read from disk.
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Live segments and cached bytes right now.
    pub live_segments: u64,
    pub cached_bytes: u64,
}

struct State {
    index: LogIndex,
    /// The live segments, oldest first; includes the active one.
    segments: BTreeMap<u64, Rc<Segment>>,
    /// The segment appends go to; `None` until the first append after opening.
    active: Option<Active>,
    /// `(seq, end)` of the segment before the active one, as the next `SegmentStart` (or
    /// the active one's, if it was written into) must record it.
    prev: (u64, u64),
    /// The newest segment whose `SegmentStart` and checkpoints are durable.
    durable_head: u64,
    next_seq: u64,
    /// Reclaimed segment files waiting to be recycled.
    free: Vec<PathBuf>,
    /// Records (truncations, removals) to write with the next batch.
    pending: RecordBuf,
    /// Set after a failed write or sync: the log refuses writes until reopened.
    failed: Option<String>,
    /// True from a batch's write until its index update: still true at the start of the
    /// next batch only if a caller dropped an append future midway.
    writing: bool,
    stats: RaftLogStats,
}

/// A background segment preparation and the flag it sets when it has finished.
type Preparation = (Task<Result<Segment>>, Rc<Cell<bool>>);

/// The raft log of one core. See the module documentation.
///
/// All methods take `&self`; the log is shared by the core's tasks through `Rc` and never
/// leaves its thread. Writes ([`append`](Self::append), [`sync`](Self::sync),
/// [`truncate`](Self::truncate), [`remove_range`](Self::remove_range)) are serialised;
/// reads run concurrently with them.
pub struct RaftLog {
    dir: PathBuf,
    opts: RaftLogOptions,
    write_lock: Semaphore,
    state: RefCell<State>,
    /// The background preparation of the next segment, and whether it has finished.
    prep: RefCell<Option<Preparation>>,
    report: RecoveryReport,
}

impl RaftLog {
    /// Opens the log in `dir` (created if missing), recovering what it holds: every record
    /// up to the first torn or corrupt one in the last segment. Fails with
    /// [`Error::Corruption`] when an older, sealed segment is damaged.
    ///
    /// Must run inside a glommio executor. Warms up Direct I/O first
    /// ([`crate::prime_direct_io`]).
    pub async fn open(dir: &Path, opts: RaftLogOptions) -> Result<RaftLog> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        crate::local::prime_direct_io(dir).await?;
        wait_for_orphans(dir).await;
        let rec = recovery::recover(dir, opts.cache_bytes, opts.max_free_segments).await?;
        let log = RaftLog {
            dir: dir.to_path_buf(),
            write_lock: Semaphore::new(1),
            state: RefCell::new(State {
                index: rec.index,
                segments: rec.segments,
                active: None,
                prev: rec.prev,
                durable_head: rec.prev.0,
                next_seq: rec.next_seq,
                free: rec.free,
                pending: RecordBuf::new(),
                failed: None,
                writing: false,
                stats: RaftLogStats::default(),
            }),
            prep: RefCell::new(None),
            report: rec.report,
            opts,
        };
        log.reclaim().await;
        log.spawn_prepare()?;
        Ok(log)
    }

    /// What recovery found when the log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Makes the entries and hard states of `batch` durable with one write and one
    /// fdatasync, together with any truncation markers queued since the last write.
    ///
    /// Per range, entries must have consecutive indexes ≥ 1; when the range already holds
    /// entries the run must start within `[first_index, last_index + 1]`, and entries from
    /// its first index on replace the ones there (raft's conflict truncation). A range
    /// without entries may start anywhere. Violations are [`Error::InvalidArgument`] and
    /// nothing is written. A batch with nothing to write returns at once.
    pub async fn append(&self, batch: &[RangeWrite]) -> Result<()> {
        let _permit = self.lock().await?;
        self.state.borrow().index.check_batch(batch)?;
        self.write_locked(batch).await
    }

    /// Makes queued truncation markers durable (one write and fdatasync, or nothing).
    pub async fn sync(&self) -> Result<()> {
        let _permit = self.lock().await?;
        self.write_locked(&[]).await
    }

    /// Returns entries `[lo, hi)` of `range`. Fails with [`Error::Unavailable`] when `lo` is
    /// below the first index (compacted) or `hi` is past `last_index + 1`, and with
    /// [`Error::Corruption`] when a record on disk no longer matches its checksum.
    pub async fn entries(&self, range: RangeId, lo: u64, hi: u64) -> Result<Vec<Entry>> {
        self.entries_max_size(range, lo, hi, u64::MAX).await
    }

    /// Like [`RaftLog::entries`], but stops before the entry that would take the total
    /// data size past `max_size`; the first entry is returned whatever its size (raft-rs's
    /// `Storage::entries` contract). Entries past the limit are not read from disk.
    pub async fn entries_max_size(
        &self,
        range: RangeId,
        lo: u64,
        hi: u64,
        max_size: u64,
    ) -> Result<Vec<Entry>> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        // Collect what the cache has and which records to read, without holding the state
        // across I/O.
        let mut out: Vec<Option<Entry>> = Vec::new();
        let mut reads: Vec<(Location, Vec<u64>)> = Vec::new();
        let mut segs: BTreeMap<u64, Rc<Segment>> = BTreeMap::new();
        {
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            let log = st
                .index
                .get(range)
                .ok_or_else(|| Error::Unavailable(format!("{range}: no raft log here")))?;
            check_bounds(range, log.first_index, log.last_index(), lo, hi)?;
            let mut size = 0u64;
            let mut hi = hi;
            for idx in lo..hi {
                size += log.entries[(idx - log.first_index) as usize].len as u64;
                if size > max_size && idx > lo {
                    hi = idx;
                    break;
                }
            }
            out.reserve((hi - lo) as usize);
            for idx in lo..hi {
                let e = &log.entries[(idx - log.first_index) as usize];
                match &e.cached {
                    Some((_, data)) => {
                        st.stats.cache_hits += 1;
                        out.push(Some(Entry {
                            index: idx,
                            term: e.term,
                            data: data.clone(),
                        }));
                    }
                    None => {
                        st.stats.cache_misses += 1;
                        out.push(None);
                        match reads.last_mut() {
                            Some((loc, idxs)) if *loc == e.loc => idxs.push(idx),
                            _ => reads.push((e.loc, vec![idx])),
                        }
                        if let Some(seg) = st.segments.get(&e.loc.seq) {
                            segs.entry(e.loc.seq).or_insert_with(|| seg.clone());
                        }
                    }
                }
            }
        }
        // PERF: a cold read of a run of entries touches one record per append batch, and
        // the records of one range sit close together in a segment (interleaved with other
        // ranges'). Nearby records are fetched with one read of the span that holds them.
        for (span_seq, span_start, span_end, members) in coalesce(&reads) {
            let Some(seg) = segs.get(&span_seq) else {
                let loc = reads[members[0]].0;
                return Err(self.lost_while_reading(range, lo, loc, "segment reclaimed"));
            };
            let span = seg
                .read(span_start, (span_end - span_start) as usize)
                .await?;
            for m in members {
                let (loc, idxs) = &reads[m];
                let at = (loc.offset - span_start) as usize;
                let bytes = &span[at..at + loc.len as usize];
                let rec = match check_frame(bytes, loc.seq) {
                    Ok(r) => r,
                    Err(why) => {
                        return Err(self.lost_while_reading(range, lo, *loc, &why.to_string()))
                    }
                };
                let Record::Write {
                    range: rec_range,
                    first_index,
                    entries,
                    ..
                } = rec
                else {
                    return Err(self.corrupt(*loc, "index points at a record that is not a write"));
                };
                for &idx in idxs {
                    let e = idx
                        .checked_sub(first_index)
                        .and_then(|i| entries.get(i as usize))
                        .filter(|_| rec_range == range)
                        .ok_or_else(|| {
                            self.corrupt(*loc, "record does not hold the indexed entry")
                        })?;
                    out[(idx - lo) as usize] = Some(Entry {
                        index: idx,
                        term: e.term,
                        data: e.data.to_vec(),
                    });
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|e| e.expect("every entry filled"))
            .collect())
    }

    /// Returns the term of entry `index` of `range`: a live entry, or the entry just below
    /// the first when the log remembers it. Otherwise [`Error::Unavailable`].
    pub fn term(&self, range: RangeId, index: u64) -> Result<u64> {
        let st = self.state.borrow();
        st.index
            .get(range)
            .and_then(|log| log.term(index))
            .ok_or_else(|| Error::Unavailable(format!("{range}: no term for index {index}")))
    }

    /// Index of the first entry `range` may hold (entries below were truncated), or `None`
    /// for a range the log does not know.
    pub fn first_index(&self, range: RangeId) -> Option<u64> {
        self.state.borrow().index.get(range).map(|l| l.first_index)
    }

    /// Index of the last entry of `range` (`first_index - 1` when it holds none), or `None`
    /// for a range the log does not know.
    pub fn last_index(&self, range: RangeId) -> Option<u64> {
        self.state.borrow().index.get(range).map(|l| l.last_index())
    }

    /// The last hard state persisted for `range`.
    pub fn hard_state(&self, range: RangeId) -> Option<HardState> {
        self.state
            .borrow()
            .index
            .get(range)
            .and_then(|l| l.hard_state)
    }

    /// Every range the log holds something for, in id order.
    pub fn ranges(&self) -> Vec<RangeId> {
        self.state
            .borrow()
            .index
            .ranges()
            .map(|(r, _)| *r)
            .collect()
    }

    /// Drops the entries of `range` below `below` (log compaction, once the state machine
    /// has durably applied them). `below` may be past the last entry (after a snapshot):
    /// the log is then empty and the next append starts at `below`. A no-op for unknown
    /// ranges and when `below` is not above the first index. The marker is made durable
    /// with the next write (see the caveats); segments no range needs any more are
    /// reclaimed at once.
    pub async fn truncate(&self, range: RangeId, below: u64) -> Result<()> {
        let below = below.min(index::MAX_INDEX);
        let _permit = self.lock().await?;
        {
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            Self::check_failed(st)?;
            let Some(log) = st.index.get(range) else {
                return Ok(());
            };
            if below <= log.first_index {
                return Ok(());
            }
            let prev_term = log.term(below - 1).unwrap_or(0);
            st.index.apply_truncate(range, below, prev_term);
            st.pending.truncate(range, below, prev_term);
        }
        self.reclaim().await;
        Ok(())
    }

    /// Forgets `range` (its replica left this core) and makes that durable at once.
    pub async fn remove_range(&self, range: RangeId) -> Result<()> {
        let _permit = self.lock().await?;
        {
            let mut st = self.state.borrow_mut();
            Self::check_failed(&st)?;
            if st.index.get(range).is_none() {
                return Ok(());
            }
            st.index.apply_remove(range);
            st.pending.range_removed(range);
        }
        self.write_locked(&[]).await?;
        self.reclaim().await;
        Ok(())
    }

    /// Counters since opening.
    pub fn stats(&self) -> RaftLogStats {
        let st = self.state.borrow();
        RaftLogStats {
            live_segments: st.segments.len() as u64,
            cached_bytes: st.index.cache_bytes() as u64,
            ..st.stats
        }
    }

    /// Writes queued markers, stops the background segment preparation and closes the
    /// files. Dropping the log instead is safe but loses queued truncation markers.
    pub async fn close(self) -> Result<()> {
        let synced = self.sync().await;
        let prep = self.prep.borrow_mut().take();
        if let Some((task, _)) = prep {
            // Let it finish: a prepared segment is simply reused (recycled) by the next open.
            if let Ok(seg) = task.await {
                close_segment(Rc::new(seg)).await;
            }
        }
        let segs = {
            let mut st = self.state.borrow_mut();
            st.active = None;
            std::mem::take(&mut st.segments)
        };
        for (_, seg) in segs {
            close_segment(seg).await;
        }
        synced
    }

    async fn lock(&self) -> Result<glommio::sync::Permit<'_>> {
        self.write_lock
            .acquire_permit(1)
            .await
            .map_err(|e| Error::glommio("lock raft log", &self.dir, e))
    }

    fn check_failed(st: &State) -> Result<()> {
        match &st.failed {
            Some(why) => Err(Error::Io {
                op: "append",
                path: PathBuf::new(),
                source: std::io::Error::other(format!(
                    "raft log refuses writes after an earlier failure (reopen to recover): {why}"
                )),
            }),
            None => Ok(()),
        }
    }

    fn corrupt(&self, loc: Location, detail: &str) -> Error {
        Error::Corruption {
            path: self.dir.join(segment::segment_name(loc.seq)),
            offset: loc.offset,
            detail: detail.to_string(),
        }
    }

    /// The error for a record that could not be read back: `Unavailable` when the entries
    /// were truncated meanwhile, else corruption.
    fn lost_while_reading(&self, range: RangeId, lo: u64, loc: Location, why: &str) -> Error {
        let st = self.state.borrow();
        match st.index.get(range) {
            Some(log) if log.first_index <= lo && st.segments.contains_key(&loc.seq) => {
                self.corrupt(loc, why)
            }
            _ => Error::Unavailable(format!(
                "{range}: entries from {lo} truncated while reading"
            )),
        }
    }

    /// Starts preparing the next segment in the background.
    fn spawn_prepare(&self) -> Result<()> {
        let (seq, source) = self.next_source();
        let done = Rc::new(Cell::new(false));
        let guard = SetOnDrop(done.clone());
        let dir = self.dir.clone();
        let fut = async move {
            let _guard = guard;
            segment::prepare(dir, seq, source).await
        };
        let task = match self.opts.background_queue {
            Some(q) => glommio::spawn_local_into(fut, q)
                .map_err(|e| Error::glommio("spawn segment preparation", &self.dir, e))?,
            None => glommio::spawn_local(fut),
        };
        *self.prep.borrow_mut() = Some((task, done));
        Ok(())
    }

    fn next_source(&self) -> (u64, Source) {
        let mut st = self.state.borrow_mut();
        let seq = st.next_seq;
        st.next_seq += 1;
        let source = match st.free.pop() {
            Some(p) => Source::Recycle(p),
            None => Source::Fresh(self.opts.segment_size),
        };
        (seq, source)
    }

    /// Switches appends to the prepared segment (waiting for it if need be) and starts
    /// preparing the one after. Caller holds the write lock.
    async fn rotate(&self) -> Result<()> {
        let task = self.prep.borrow_mut().take();
        let t0 = Instant::now();
        let seg = match task {
            Some((t, _)) => t.await,
            None => {
                let (seq, source) = self.next_source();
                segment::prepare(self.dir.clone(), seq, source).await
            }
        }?;
        {
            let mut st = self.state.borrow_mut();
            if let Some(a) = st.active.take() {
                st.prev = (a.seg.seq, a.write_pos);
            }
            let seg = Rc::new(seg);
            st.segments.insert(seg.seq, seg.clone());
            st.active = Some(Active::new(seg));
            st.stats.rotations += 1;
            st.stats.rotation_wait_nanos += t0.elapsed().as_nanos() as u64;
        }
        self.spawn_prepare()
    }

    /// The append path: queued markers plus `batch`, one write, one fdatasync, then the
    /// index. Caller holds the write lock and has validated `batch`.
    // PERF: this is the per-round hot path of every core; it must stay at one write_at
    // and one fdatasync (the fdatasync counter test checks).
    async fn write_locked(&self, batch: &[RangeWrite]) -> Result<()> {
        let writes: Vec<&RangeWrite> = batch
            .iter()
            .filter(|w| !w.entries.is_empty() || w.hard_state.is_some())
            .collect();
        let mut body = RecordBuf::new();
        {
            let mut st = self.state.borrow_mut();
            if st.writing {
                st.failed =
                    Some("an earlier append was cancelled in the middle of its write".into());
            }
            Self::check_failed(&st)?;
            body.extend(&st.pending);
        }
        let first_write_rec = body.starts.len();
        for w in &writes {
            let start = body.len();
            body.write(w);
            if (body.len() - start - HEADER_LEN) as u64 > MAX_PAYLOAD as u64 {
                return Err(Error::InvalidArgument(format!(
                    "{}: one append of {} bytes exceeds the record limit",
                    w.range,
                    body.len() - start
                )));
            }
        }
        if body.bytes.is_empty() {
            return Ok(());
        }

        let rotating = match &self.state.borrow().active {
            None => true,
            Some(a) => body.len() as u64 > a.room(),
        };
        let (mut buf, prefix_recs) = if rotating {
            self.rotate().await?;
            let mut buf = RecordBuf::new();
            let st = self.state.borrow();
            buf.segment_start(st.prev.0, st.prev.1);
            for (range, log) in st.index.ranges() {
                buf.range_state(*range, log.first_index, log.prev_term, &log.hard_state);
            }
            let prefix_recs = buf.starts.len();
            buf.extend(&body);
            (buf, prefix_recs)
        } else {
            (body, 0)
        };

        let (seg, base, dma, pos, new_tail) = {
            let st = self.state.borrow();
            let a = st
                .active
                .as_ref()
                .expect("rotate installs an active segment");
            buf.seal(a.seg.seq);
            let (dma, pos, new_tail) = a.stage(&buf.bytes);
            (a.seg.clone(), a.write_pos, dma, pos, new_tail)
        };
        let dma_len = dma.len();
        self.state.borrow_mut().writing = true;
        let t0 = Instant::now();
        let written = match seg.file.write_at(dma, pos).await {
            Ok(n) if n == dma_len => Ok(()),
            Ok(n) => Err(segment::short_write(&seg.path, pos, n, dma_len)),
            Err(e) => Err(Error::glommio("write", &seg.path, e)),
        };
        let t1 = Instant::now();
        let synced = match written {
            Ok(()) => seg
                .file
                .fdatasync()
                .await
                .map_err(|e| Error::glommio("fdatasync", &seg.path, e)),
            Err(e) => Err(e),
        };
        {
            let mut st = self.state.borrow_mut();
            st.stats.write_nanos += (t1 - t0).as_nanos() as u64;
            st.stats.fdatasync_nanos += t1.elapsed().as_nanos() as u64;
        }
        self.finish_write(
            synced,
            &writes,
            &buf,
            prefix_recs + first_write_rec,
            &seg,
            base,
            dma_len,
            new_tail,
            rotating,
        )?;
        if rotating {
            self.reclaim().await;
        }
        Ok(())
    }

    /// After a batch's write and fdatasync: record the outcome, advance the tail, and teach
    /// the index where the batch's entries live (`first` is the record number of the
    /// batch's first write record in `buf`).
    #[allow(clippy::too_many_arguments)]
    fn finish_write(
        &self,
        synced: Result<()>,
        writes: &[&RangeWrite],
        buf: &RecordBuf,
        first: usize,
        seg: &Segment,
        base: u64,
        dma_len: usize,
        new_tail: Vec<u8>,
        rotating: bool,
    ) -> Result<()> {
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        st.stats.writes += 1;
        if let Err(e) = synced {
            st.failed = Some(e.to_string());
            return Err(e);
        }
        st.stats.fdatasyncs += 1;
        st.stats.batches += 1;
        st.stats.bytes_appended += buf.len() as u64;
        st.stats.bytes_written += dma_len as u64;
        let a = st.active.as_mut().unwrap();
        a.write_pos += buf.len() as u64;
        a.tail = new_tail;
        if rotating {
            st.durable_head = seg.seq;
        }
        st.pending = RecordBuf::new();
        for (k, w) in writes.iter().enumerate() {
            let start = buf.starts[first + k];
            let end = buf.starts.get(first + k + 1).copied().unwrap_or(buf.len());
            let loc = Location {
                seq: seg.seq,
                offset: base + start as u64,
                len: (end - start) as u32,
            };
            st.index.apply_write(
                w.range,
                w.entries.first().map_or(0, |e| e.index),
                w.hard_state,
                w.entries.iter().map(|e| (e.term, &e.data[..])),
                loc,
            );
        }
        st.writing = false;
        Ok(())
    }

    /// Reclaims every segment older than both the newest durably started segment and the
    /// oldest one holding a live entry: renamed into the recycle pool, or deleted when the
    /// pool is full. Caller holds the write lock (or is `open`).
    ///
    /// Failures are counted, not returned: the caller's own work is done and durable, and
    /// a segment that could not be renamed or removed is found and reclaimed again by the
    /// next recovery.
    async fn reclaim(&self) {
        let victims: Vec<Rc<Segment>> = {
            let mut st = self.state.borrow_mut();
            let limit = st
                .index
                .min_live_segment()
                .unwrap_or(u64::MAX)
                .min(st.durable_head);
            let keep = st.segments.split_off(&limit);
            let old = std::mem::replace(&mut st.segments, keep);
            old.into_values().collect()
        };
        for seg in victims {
            let to_pool = self.state.borrow().free.len() < self.opts.max_free_segments;
            if to_pool {
                let to = self.dir.join(free_name(seg.seq));
                let renamed = seg.file.rename(&to).await;
                let mut st = self.state.borrow_mut();
                match renamed {
                    Ok(()) => {
                        st.free.push(to);
                        st.stats.segments_freed += 1;
                    }
                    Err(_) => st.stats.reclaim_errors += 1,
                }
            } else {
                let removed = seg.file.remove().await;
                let mut st = self.state.borrow_mut();
                match removed {
                    Ok(()) => st.stats.segments_deleted += 1,
                    Err(_) => st.stats.reclaim_errors += 1,
                }
            }
            close_segment(seg).await;
        }
    }
}

impl Drop for RaftLog {
    fn drop(&mut self) {
        // A preparation still running is left to finish (cancelling it could leave its
        // last file operation in flight on glommio's blocking pool), and registered so
        // that reopening the directory on this thread waits for it.
        if let Some((task, done)) = self.prep.get_mut().take() {
            if !done.get() {
                ORPHANS.with(|o| o.borrow_mut().push((self.dir.clone(), done)));
                drop(task.detach());
            }
        }
    }
}

thread_local! {
    /// Segment preparations of logs dropped without [`RaftLog::close`], by directory.
    static ORPHANS: RefCell<Vec<(PathBuf, Rc<Cell<bool>>)>> = const { RefCell::new(Vec::new()) };
}

/// Waits until no preparation of a dropped log of `dir` is running on this thread.
async fn wait_for_orphans(dir: &Path) {
    loop {
        let busy = ORPHANS.with(|o| {
            let mut o = o.borrow_mut();
            o.retain(|(_, done)| !done.get());
            o.iter().any(|(d, _)| d == dir)
        });
        if !busy {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

/// Sets the flag when dropped: marks a background task finished, however it ended.
struct SetOnDrop(Rc<Cell<bool>>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Largest gap between two records still fetched with one read, and the largest span.
const COALESCE_GAP: u64 = 64 << 10;
const COALESCE_MAX: u64 = 4 << 20;

/// Groups record reads (in log order) into spans of one segment each: `(seq, start, end,
/// positions in reads)`.
fn coalesce(reads: &[(Location, Vec<u64>)]) -> Vec<(u64, u64, u64, Vec<usize>)> {
    let mut spans: Vec<(u64, u64, u64, Vec<usize>)> = Vec::new();
    for (i, (loc, _)) in reads.iter().enumerate() {
        let end = loc.offset + loc.len as u64;
        match spans.last_mut() {
            Some((seq, start, span_end, members))
                if *seq == loc.seq
                    && loc.offset >= *span_end
                    && loc.offset - *span_end <= COALESCE_GAP
                    && end - *start <= COALESCE_MAX =>
            {
                *span_end = end;
                members.push(i);
            }
            _ => spans.push((loc.seq, loc.offset, end, vec![i])),
        }
    }
    spans
}

fn check_bounds(range: RangeId, first: u64, last: u64, lo: u64, hi: u64) -> Result<()> {
    if lo < first {
        return Err(Error::Unavailable(format!(
            "{range}: entries from {lo} are compacted (first index {first})"
        )));
    }
    if hi > last + 1 {
        return Err(Error::Unavailable(format!(
            "{range}: entries up to {hi} not in the log (last index {last})"
        )));
    }
    Ok(())
}

/// Closes a segment's file if nothing else (a read in flight) still holds it; otherwise
/// the last holder's drop closes it.
async fn close_segment(seg: Rc<Segment>) {
    if let Ok(seg) = Rc::try_unwrap(seg) {
        if let Ok(file) = Rc::try_unwrap(seg.file) {
            let _ = file.close().await;
        }
    }
}
