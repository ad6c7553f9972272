//! The LSM MVCC engine: [`LsmEngine`], the production [`Engine`](crate::Engine) of a core.
//!
//! # Shape
//!
//! ```text
//! write ─▶ active memtable ──(memtable_bytes)──▶ immutable memtables ──flush──▶ L0 SSTs
//!                                                                  │
//!            background task queue (low shares): flush, then leveled compaction with
//!            MVCC GC, L0 → L1 → … → L6; every change recorded in the MANIFEST
//! ```
//!
//! - **Internal keys** ([`key`]) are `(space, user key, ts desc, seqno desc)`; the space
//!   byte separates MVCC versions from lock-table records, so MVCC scans never meet locks.
//!   Every op of every batch gets its own seqno.
//! - **Atomic batches, consistent reads.** `write` applies a whole batch to the active
//!   memtable without suspending. A read takes a [`Snapshot`] (the last seqno, the
//!   memtables, the current `Version`) before its first await and ignores anything newer,
//!   so it never sees part of a batch, and compactions never pull files out from under it
//!   (a dead SST is unlinked when the last version naming it is dropped).
//! - **Reads** merge memtables, L0 tables and one cursor per sorted level
//!   ([`iter::MergingIter`]); per user key they pick the newest version at or below the
//!   read timestamp, then apply range tombstones. Point reads consult each table's bloom
//!   filter first. Blocks come through a byte-budgeted block cache; tables through an LRU
//!   of open files.
//! - **Range tombstones** ([`key::RangeTombstone`]) live in memtables and, once flushed,
//!   in the manifest (a version-wide list), not in SSTs. `ts < MAX` is an MVCC deletion
//!   (hides versions at or below `ts` from reads at or above `ts`); `ts == MAX` removes
//!   everything written before it. Compactions drop the versions they remove; a
//!   tombstone is forgotten once no live table can hold data it covers.
//! - **Durability.** There is no WAL: the raft log is the WAL. `flush` writes every
//!   memtable to L0 and then the manifest, which records the applied index per range as of
//!   the last flushed batch. After a crash, [`Engine::applied_index`] says where replay
//!   starts; the state on disk is exactly the batches up to that point.
//! - **Compaction** ([`compaction`]): L0 → L1 when L0 has `l0_compaction_trigger` files,
//!   Ln → Ln+1 when a level exceeds its byte target, picking files round-robin. GC under
//!   the threshold set by [`LsmEngine::set_gc_threshold`]: per key the newest version at or
//!   below the threshold survives (unless it is hidden by a range tombstone, or is a
//!   tombstone in the bottommost level with no version of its key anywhere else), older
//!   ones go. Note that levels order writes by *seqno*, not timestamp: a later write at a
//!   lower timestamp can sit above an older tombstone that shadows it, which is why a
//!   tombstone is only dropped when nothing outside the compaction may hold its key.
//!   Writes at or below the GC threshold are a caller error (as in CockroachDB): they could
//!   be hidden or revealed arbitrarily.
//! - **Time bounds, export, ingest** ([`export`]): [`LsmEngine::scan_versions`] skips SSTs
//!   whose timestamp range misses the bounds; [`LsmEngine::export`] writes a span as an
//!   SST; [`LsmEngine::ingest`] adds an external SST as the newest L0 table.
//!
//! # Implementation caveats
//!
//! - The manifest is rewritten whole on every flush and compaction (fine for thousands of
//!   tables, not for millions); range tombstones are held in it and in memory.
//! - SSTs are built whole in memory and written in one go (memory: one table per flush or
//!   compaction output). Flushes and compactions run concurrently (one of each), but a
//!   write stalled behind `max_immutable_memtables` waits for a whole flush, and one
//!   stalled at `l0_stop_writes` for whole compactions. No subcompactions, no compaction
//!   rate limit.
//! - After a failed manifest write the engine keeps serving from its previous version; the
//!   new tables stay on disk until the next open decides (by the manifest it finds) whether
//!   they are live or orphans. There is no read-only "poisoned" mode yet.
//! - Blocks are decoded whole into the cache (restart points are written and validated but
//!   the in-memory block is searched by binary search over decoded entries).
//! - The memtable is a `BTreeMap` re-seeked on every iterator step (clones keys); an
//!   arena skiplist would be faster.
//! - Iterators pin the tables they read: a long scan can keep more files open than
//!   `max_open_files` for its duration.
//! - Export writes versions, not range tombstones; ingest rewrites the external SST (to give
//!   its entries a fresh seqno) rather than linking it, and requires its keys to be
//!   internal keys (which `export` produces).
//! - The crash tests use a fault-injecting hook in [`file`] (every I/O call fails from a
//!   chosen point on; unsynced files are torn or lost and un-fsynced renames undone before
//!   reopening) and abrupt drops; they do not model a disk that reorders synced writes.
//! - Open calls `crate::prime_direct_io` first (a `PROBE` file with real, synced data),
//!   for glommio's polled-I/O probe (DESIGN.md §10).
//! - Point reads probe every L0 table whose key range and bloom filter admit the key, and
//!   per level the one table whose range holds it; there is no early exit once a version
//!   newer than anything deeper is found (timestamps do not follow levels).

pub mod cache;
pub mod coding;
pub mod compaction;
pub mod export;
pub mod file;
pub mod iter;
pub mod key;
pub mod manifest;
pub mod memtable;
pub mod sst;
pub mod table_cache;
pub mod version;

#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use glommio::channels::local_channel::{self, LocalSender};
use glommio::sync::Semaphore;

use self::iter::{LevelIter, MemIter, MergingIter, Source, TableIter};
use self::key::{RangeTombstone, Seqno, SPACE_LOCK, SPACE_MVCC};
use self::manifest::ManifestState;
use self::memtable::Memtable;
use self::sst::bloom;
use self::table_cache::{CacheStats, TableCache};
use self::version::{TableMeta, Version, NUM_LEVELS};
use crate::{
    BatchOp, Engine, Error, KeyValue, RangeId, Result, ScanOptions, Timestamp, WriteBatch,
};

pub use self::export::{ExportSpec, VersionedKeyValue};

/// Tuning of an [`LsmEngine`]. The defaults suit a production core; tests shrink them to
/// force flushes and compactions.
#[derive(Clone, Debug)]
pub struct LsmOptions {
    /// The active memtable is frozen once it holds this many bytes.
    pub memtable_bytes: usize,
    /// Writes wait for a flush when this many frozen memtables are queued.
    pub max_immutable_memtables: usize,
    /// Target size of a data block before compression of nothing (we do not compress).
    pub block_size: usize,
    pub bloom_bits_per_key: usize,
    /// Budget of the block cache (decoded blocks).
    pub block_cache_bytes: usize,
    /// At most this many SSTs are kept open by the table cache.
    pub max_open_files: usize,
    /// L0 → L1 compaction starts at this many L0 files.
    pub l0_compaction_trigger: usize,
    /// Writes wait for compaction (running it themselves if needed) at this many L0 files,
    /// so reads never face an unbounded L0. 0 disables the stall.
    pub l0_stop_writes: usize,
    /// Byte target of L1; each deeper level is `level_multiplier` times larger.
    pub level_base_bytes: u64,
    pub level_multiplier: u64,
    /// Compaction outputs are cut at this size (never between versions of one key).
    pub target_file_bytes: u64,
    /// Shares of the background task queue (foreground queues default to 1000).
    pub background_shares: usize,
    /// Run flushes and compactions in the background; when false they run only from
    /// `flush`, `compact` and write stalls (deterministic tests).
    pub background_work: bool,
}

impl Default for LsmOptions {
    fn default() -> Self {
        LsmOptions {
            memtable_bytes: 16 << 20,
            max_immutable_memtables: 2,
            block_size: 4 << 10,
            bloom_bits_per_key: 10,
            block_cache_bytes: 256 << 20,
            max_open_files: 512,
            l0_compaction_trigger: 4,
            l0_stop_writes: 20,
            level_base_bytes: 64 << 20,
            level_multiplier: 10,
            target_file_bytes: 16 << 20,
            background_shares: 100,
            background_work: true,
        }
    }
}

/// Counters of the work the engine did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LsmStats {
    pub flushes: u64,
    pub compactions: u64,
    pub bytes_flushed: u64,
    pub bytes_compacted: u64,
    pub cache: CacheStats,
    pub open_tables: usize,
    pub tables_per_level: [usize; NUM_LEVELS],
}

pub(crate) struct State {
    active: Rc<Memtable>,
    /// Frozen memtables, oldest first.
    imms: VecDeque<Rc<Memtable>>,
    version: Rc<Version>,
    last_seq: Seqno,
    next_file: u64,
    /// Applied index per range as of the last write.
    applied: HashMap<RangeId, u64>,
    applied_dirty: bool,
    /// Applied index per range as of the last durable flush.
    durable_applied: HashMap<RangeId, u64>,
    /// Per level, the largest key of the last file compacted out of it (round-robin).
    compact_pointers: Vec<Vec<u8>>,
}

pub(crate) struct Inner {
    dir: PathBuf,
    opts: LsmOptions,
    cache: Rc<TableCache>,
    state: RefCell<State>,
    /// One flush (or ingest) at a time, oldest memtable first.
    flush_lock: Semaphore,
    /// One compaction at a time (they may run alongside a flush).
    compaction_lock: Semaphore,
    /// Serializes "derive the next version from the current one, write it to the manifest,
    /// install it", so no manifest ever misses a change another one made.
    manifest_lock: Semaphore,
    gc_threshold: Cell<Timestamp>,
    bg_error: RefCell<Option<String>>,
    closing: Cell<bool>,
    wake: RefCell<Option<LocalSender<()>>>,
    stats: RefCell<LsmStats>,
    _guard: DirGuard,
}

/// What a read sees: everything up to `seq`, in these memtables and this version.
pub(crate) struct Snapshot {
    seq: Seqno,
    /// Newest first.
    mems: Vec<Rc<Memtable>>,
    version: Rc<Version>,
}

impl Snapshot {
    /// Range tombstones that may affect user keys in `[start, end)`.
    /// The range tombstones whose span holds `key`. PERF: allocates only when some do.
    fn point_tombstones(&self, key: &[u8]) -> Vec<RangeTombstone> {
        let mut out: Vec<RangeTombstone> = self
            .version
            .range_tombstones
            .iter()
            .filter(|t| t.contains(key))
            .cloned()
            .collect();
        for m in &self.mems {
            m.point_tombstones(self.seq, key, &mut out);
        }
        out
    }

    fn range_tombstones(&self, start: &[u8], end: &[u8]) -> Vec<RangeTombstone> {
        let mut out: Vec<RangeTombstone> = self
            .version
            .range_tombstones
            .iter()
            .filter(|t| t.overlaps(start, end))
            .cloned()
            .collect();
        for m in &self.mems {
            m.range_tombstones(self.seq, start, end, &mut out);
        }
        out
    }
}

/// Keeps two engines of this process off one directory (the second would delete the
/// first one's new tables as orphans). Held until the engine's state is dropped, which is
/// after its background task has stopped.
struct DirGuard(PathBuf);

static OPEN_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

impl DirGuard {
    fn acquire(dir: &Path) -> Result<DirGuard> {
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io("canonicalize", dir, e))?;
        let mut open = OPEN_DIRS.lock().unwrap_or_else(|p| p.into_inner());
        if open.contains(&dir) {
            return Err(Error::Unavailable(format!(
                "{} is already open by another engine",
                dir.display()
            )));
        }
        open.push(dir.clone());
        Ok(DirGuard(dir))
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        let mut open = OPEN_DIRS.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|d| d != &self.0);
    }
}

/// The LSM MVCC engine of one core. See the module essay.
pub struct LsmEngine {
    inner: Rc<Inner>,
    background: Option<glommio::Task<()>>,
}

thread_local! {
    static BACKGROUND_QUEUE: Cell<Option<glommio::TaskQueueHandle>> = const { Cell::new(None) };
}

fn spawn_background(
    fut: impl std::future::Future<Output = ()> + 'static,
    shares: usize,
) -> glommio::Task<()> {
    let make = || {
        let tq = glommio::executor().create_task_queue(
            glommio::Shares::Static(shares),
            glommio::Latency::NotImportant,
            "lsm-background",
        );
        BACKGROUND_QUEUE.with(|q| q.set(Some(tq)));
        tq
    };
    let tq = BACKGROUND_QUEUE.with(|q| q.get()).unwrap_or_else(make);
    // A handle cached by an earlier executor on this thread is unknown to this one.
    let fut = Rc::new(RefCell::new(Some(fut)));
    let take = |f: &Rc<RefCell<Option<_>>>| f.borrow_mut().take().unwrap();
    let f2 = fut.clone();
    match glommio::spawn_local_into(async move { take(&f2).await }, tq) {
        Ok(t) => t,
        Err(_) => {
            let tq = make();
            glommio::spawn_local_into(async move { take(&fut).await }, tq)
                .expect("spawn background task")
        }
    }
}

impl LsmEngine {
    /// Opens (or creates) the engine stored in `dir`, recovering the state of the last
    /// durable flush. Must run inside a glommio executor. Unknown `*.sst` files (outputs of
    /// an interrupted flush or compaction) are deleted.
    pub async fn open(dir: impl AsRef<Path>, opts: LsmOptions) -> Result<LsmEngine> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create dir", &dir, e))?;
        let guard = DirGuard::acquire(&dir)?;
        // Before any other file: glommio's polled-I/O probe (DESIGN.md §10).
        crate::prime_direct_io(&dir).await?;
        let m = manifest::read(&dir)
            .await?
            .unwrap_or_else(|| ManifestState {
                next_file: 1,
                version: Version::empty(),
                ..Default::default()
            });
        let live: std::collections::HashSet<u64> =
            m.version.all_tables().map(|(_, t)| t.number).collect();
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("list", &dir, e))?;
        for e in entries {
            let e = e.map_err(|e| Error::io("list", &dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let orphan = match name.strip_suffix(".sst").map(|n| n.parse::<u64>()) {
                Some(Ok(n)) => !live.contains(&n),
                _ => name == manifest::MANIFEST_TMP,
            };
            if orphan {
                std::fs::remove_file(e.path()).map_err(|err| Error::io("remove", e.path(), err))?;
            }
        }
        for (_, t) in m.version.all_tables() {
            match std::fs::metadata(&t.path) {
                Ok(md) if md.len() == t.size => {}
                Ok(md) => {
                    return Err(Error::Corruption {
                        path: t.path.clone(),
                        offset: md.len(),
                        detail: format!("SST is {} bytes, manifest says {}", md.len(), t.size),
                    })
                }
                Err(e) => return Err(Error::io("stat", &t.path, e)),
            }
        }
        let cache = Rc::new(TableCache::new(
            dir.clone(),
            opts.max_open_files,
            opts.block_cache_bytes,
        ));
        let inner = Rc::new(Inner {
            dir,
            cache,
            state: RefCell::new(State {
                active: Rc::new(Memtable::new()),
                imms: VecDeque::new(),
                version: Rc::new(m.version),
                last_seq: m.last_seq,
                next_file: m.next_file,
                applied: m.applied.clone(),
                applied_dirty: false,
                durable_applied: m.applied,
                compact_pointers: vec![Vec::new(); NUM_LEVELS],
            }),
            flush_lock: Semaphore::new(1),
            compaction_lock: Semaphore::new(1),
            manifest_lock: Semaphore::new(1),
            gc_threshold: Cell::new(m.gc_threshold),
            bg_error: RefCell::new(None),
            closing: Cell::new(false),
            wake: RefCell::new(None),
            stats: RefCell::new(LsmStats::default()),
            _guard: guard,
            opts,
        });
        let background = if inner.opts.background_work {
            let (tx, rx) = local_channel::new_bounded::<()>(1);
            *inner.wake.borrow_mut() = Some(tx);
            let weak: Weak<Inner> = Rc::downgrade(&inner);
            let task = spawn_background(
                async move {
                    while rx.recv().await.is_some() {
                        let Some(inner) = weak.upgrade() else { break };
                        if inner.closing.get() {
                            break;
                        }
                        if let Err(e) = inner.background_work().await {
                            inner.bg_error.borrow_mut().get_or_insert(e.to_string());
                        }
                    }
                },
                inner.opts.background_shares,
            );
            // Compactions owed by the recovered state.
            inner.wake();
            Some(task)
        } else {
            None
        };
        Ok(LsmEngine { inner, background })
    }

    /// Stops background work (waiting for the job in progress) and closes the engine.
    /// Unflushed writes are dropped, exactly as in a crash; call `flush` first to keep them.
    pub async fn close(mut self) -> Result<()> {
        self.inner.closing.set(true);
        self.inner.wake.borrow_mut().take();
        if let Some(t) = self.background.take() {
            t.await;
        }
        self.inner.check_bg_error()
    }

    /// Sets the MVCC GC threshold: compactions keep, per key, the newest version at or
    /// below `ts` and drop the older ones. Reads below the threshold are no longer
    /// guaranteed to be correct, and writes at or below it are not allowed. Never lowered.
    pub fn set_gc_threshold(&self, ts: Timestamp) {
        if ts > self.inner.gc_threshold.get() {
            self.inner.gc_threshold.set(ts);
        }
    }

    pub fn gc_threshold(&self) -> Timestamp {
        self.inner.gc_threshold.get()
    }

    /// Flushes, then compacts everything into the bottommost level (GC included), for
    /// tests and operators.
    pub async fn compact(&self) -> Result<()> {
        self.flush().await?;
        let _p = acquire(&self.inner.compaction_lock).await?;
        let spec = compaction::full(&self.inner.state.borrow().version);
        if let Some(spec) = spec {
            self.inner.run_compaction(spec).await?;
        }
        Ok(())
    }

    /// Runs the compactions the picker asks for, in the foreground (for tests).
    pub async fn compact_as_needed(&self) -> Result<()> {
        let _p = acquire(&self.inner.compaction_lock).await?;
        self.inner.compact_until_done().await
    }

    pub fn stats(&self) -> LsmStats {
        let mut s = *self.inner.stats.borrow();
        s.cache = self.inner.cache.stats();
        s.open_tables = self.inner.cache.open_tables();
        let st = self.inner.state.borrow();
        for (l, tables) in st.version.levels.iter().enumerate() {
            s.tables_per_level[l] = tables.len();
        }
        s
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The live SST files, by level (for tests and tools).
    pub fn sst_paths(&self) -> Vec<(usize, PathBuf)> {
        let st = self.inner.state.borrow();
        st.version
            .all_tables()
            .map(|(l, t)| (l, t.path.clone()))
            .collect()
    }
}

impl Drop for LsmEngine {
    fn drop(&mut self) {
        self.inner.closing.set(true);
        self.inner.wake.borrow_mut().take();
        // Dropping the task handle cancels the background job at its next await: an
        // abrupt stop, like a crash, from which `open` recovers.
    }
}

impl Inner {
    fn wake(&self) {
        if let Some(tx) = self.wake.borrow().as_ref() {
            let _ = tx.try_send(());
        }
    }

    fn check_bg_error(&self) -> Result<()> {
        match self.bg_error.borrow_mut().take() {
            Some(e) => Err(Error::Unavailable(format!(
                "background flush/compaction failed: {e}"
            ))),
            None => Ok(()),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let st = self.state.borrow();
        let mut mems = vec![st.active.clone()];
        mems.extend(st.imms.iter().rev().cloned());
        Snapshot {
            seq: st.last_seq,
            mems,
            version: st.version.clone(),
        }
    }

    /// Freezes the active memtable if it holds anything (or the applied indexes moved).
    fn freeze(&self) {
        let mut st = self.state.borrow_mut();
        if st.active.is_empty() && !st.applied_dirty {
            return;
        }
        *st.active.applied.borrow_mut() = st.applied.clone();
        let old = std::mem::replace(&mut st.active, Rc::new(Memtable::new()));
        st.imms.push_back(old);
        st.applied_dirty = false;
    }

    async fn background_work(&self) -> Result<()> {
        {
            let _p = acquire(&self.flush_lock).await?;
            self.flush_imms().await?;
        }
        let _p = acquire(&self.compaction_lock).await?;
        self.compact_until_done().await
    }

    async fn compact_until_done(&self) -> Result<()> {
        loop {
            if self.closing.get() {
                return Ok(());
            }
            let spec = {
                let st = self.state.borrow();
                compaction::pick(&st.version, &self.opts, &st.compact_pointers)
            };
            let Some(spec) = spec else { return Ok(()) };
            self.run_compaction(spec).await?;
            glommio::yield_if_needed().await;
        }
    }

    /// Flushes every frozen memtable, oldest first. Caller holds the flush lock.
    async fn flush_imms(&self) -> Result<()> {
        loop {
            let mem = self.state.borrow().imms.front().cloned();
            let Some(mem) = mem else { return Ok(()) };
            self.flush_one(mem).await?;
        }
    }

    fn new_file_number(&self) -> u64 {
        let mut st = self.state.borrow_mut();
        st.next_file += 1;
        st.next_file - 1
    }

    /// Writes a finished table; `applied` is what its builder already dropped (see
    /// `TableMeta::tombstones_applied`).
    async fn write_table(
        &self,
        builder: sst::TableBuilder,
        applied: (Seqno, Timestamp),
    ) -> Result<Rc<TableMeta>> {
        let number = self.new_file_number();
        let (bytes, props) = builder.finish();
        let path = file::sst_path(&self.dir, number);
        if let Err(e) = file::write_whole_file(&path, &bytes).await {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let mut meta = TableMeta::from_props(number, bytes.len() as u64, path, &props);
        (meta.tombstones_applied, meta.gc_applied) = applied;
        Ok(Rc::new(meta))
    }

    fn manifest_state(&self, version: Version, applied: HashMap<RangeId, u64>) -> ManifestState {
        let st = self.state.borrow();
        ManifestState {
            next_file: st.next_file,
            last_seq: st.last_seq,
            gc_threshold: self.gc_threshold.get(),
            applied,
            version,
        }
    }

    /// Forgets range tombstones that no live table needs any more.
    fn prune_tombstones(&self, v: &mut Version) {
        let gc = self.gc_threshold.get();
        let keep: Vec<bool> = v
            .range_tombstones
            .iter()
            .map(|t| v.tombstone_needed(t, gc))
            .collect();
        let mut k = keep.into_iter();
        v.range_tombstones.retain(|_| k.next().unwrap());
    }

    /// Writes `mem` to an L0 SST and records it (and its applied indexes) in the manifest.
    async fn flush_one(&self, mem: Rc<Memtable>) -> Result<()> {
        let meta = if mem.has_entries() {
            let mut b = sst::TableBuilder::new(self.opts.block_size, self.opts.bloom_bits_per_key);
            let mut after = None;
            // Yield between batches: a big memtable takes a while to encode.
            while let Some(last) = mem.for_each_batch(after.as_deref(), 1024, |k, v| b.add(k, v)) {
                after = Some(last);
                glommio::yield_if_needed().await;
            }
            Some(self.write_table(b, (0, Timestamp::MIN)).await?)
        } else {
            None
        };
        let _m = acquire(&self.manifest_lock).await?;
        let mut v = (*self.state.borrow().version).clone();
        if let Some(m) = &meta {
            v.levels[0].insert(0, m.clone());
        }
        v.range_tombstones.extend(mem.all_range_tombstones());
        self.prune_tombstones(&mut v);
        let applied = mem.applied.borrow().clone();
        let ms = self.manifest_state(v, applied);
        // On failure the new manifest may or may not be on disk (the rename may have
        // happened): keep the new table, the next open keeps or removes it accordingly.
        manifest::write(&self.dir, &ms).await?;
        let mut st = self.state.borrow_mut();
        st.version = Rc::new(ms.version);
        st.durable_applied = ms.applied;
        let front = st.imms.pop_front();
        assert!(
            front.is_some_and(|f| Rc::ptr_eq(&f, &mem)),
            "invariant: memtables are flushed oldest first, one at a time"
        );
        let mut stats = self.stats.borrow_mut();
        stats.flushes += 1;
        stats.bytes_flushed += meta.map_or(0, |m| m.size);
        drop(stats);
        drop(st);
        self.wake();
        Ok(())
    }

    /// Replaces `removed` tables by `added` ones at `level` and makes it durable.
    async fn install(
        &self,
        removed: &[Rc<TableMeta>],
        added: Vec<(usize, Rc<TableMeta>)>,
    ) -> Result<()> {
        let _m = acquire(&self.manifest_lock).await?;
        let mut v = (*self.state.borrow().version).clone();
        for l in v.levels.iter_mut() {
            l.retain(|t| !removed.iter().any(|r| r.number == t.number));
        }
        for (level, t) in &added {
            if *level == 0 {
                v.levels[0].insert(0, t.clone());
            } else {
                v.levels[*level].push(t.clone());
            }
        }
        for l in 1..NUM_LEVELS {
            Version::sort_level(&mut v.levels[l]);
        }
        self.prune_tombstones(&mut v);
        let applied = self.state.borrow().durable_applied.clone();
        let ms = self.manifest_state(v, applied);
        // On failure the new manifest may or may not be on disk: keep the new tables (the
        // next open removes them if they are not in the manifest it finds).
        manifest::write(&self.dir, &ms).await?;
        self.state.borrow_mut().version = Rc::new(ms.version);
        for t in removed {
            t.obsolete.set(true);
            self.cache.evict(t.number);
        }
        Ok(())
    }

    /// The cursors a read of `[start, end)` in `space` needs; tables outside
    /// `time` (when given) are skipped by their properties.
    async fn sources(
        &self,
        snap: &Snapshot,
        space: u8,
        start: &[u8],
        end: &[u8],
        time: Option<(Timestamp, Timestamp)>,
    ) -> Result<Vec<Source>> {
        let mut out: Vec<Source> = snap
            .mems
            .iter()
            .map(|m| Source::Mem(MemIter::new(m.clone())))
            .collect();
        let wanted = |t: &TableMeta| {
            t.overlaps_span(space, start, end) && time.is_none_or(|(a, b)| t.overlaps_time(a, b))
        };
        for t in snap.version.levels[0].iter().filter(|t| wanted(t)) {
            let table = self.cache.table(t.number).await?;
            out.push(Source::Table(TableIter::new(self.cache.clone(), table)));
        }
        for level in &snap.version.levels[1..] {
            let tables: Vec<_> = level.iter().filter(|t| wanted(t)).cloned().collect();
            if !tables.is_empty() {
                out.push(Source::Level(LevelIter::new(self.cache.clone(), tables)));
            }
        }
        Ok(out)
    }

    /// The newest entry of the key head of `seek` at or after `seek` that `snap` sees and
    /// no delete-range at MAX removed: `(internal key, value)`. For MVCC keys, `seek`
    /// carries the read timestamp, so this is the candidate visible version.
    // PERF: the point-read path: each memtable and each table that may hold the key
    // (key range, then bloom filter) is probed once; no merge.
    async fn point_lookup(
        &self,
        snap: &Snapshot,
        seek: &[u8],
        tombstones: &[RangeTombstone],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let head = key::head(seek);
        let user_key = &head[1..];
        let seen = |k: &[u8]| {
            let seq = key::seq(k);
            seq <= snap.seq && !tombstones.iter().any(|t| t.removes(user_key, seq))
        };
        let mut best: Option<(Vec<u8>, Vec<u8>)> = None;
        let newer = |k: &[u8], best: &Option<(Vec<u8>, Vec<u8>)>| {
            best.as_ref()
                .is_none_or(|(b, _)| key::compare(k, b).is_lt())
        };
        for m in &snap.mems {
            if let Some((k, v)) = m.first_matching(seek, seen) {
                if newer(&k, &best) {
                    best = Some((k, v));
                }
            }
        }
        let h = bloom::hash(head);
        for (level, tables) in snap.version.levels.iter().enumerate() {
            let from = if level == 0 {
                0
            } else {
                tables.partition_point(|t| key::head(&t.largest) < head)
            };
            for t in &tables[from..] {
                if !t.may_contain_head(head) {
                    if level == 0 {
                        continue;
                    }
                    break;
                }
                let table = self.cache.table(t.number).await?;
                if !table.may_contain(h) {
                    continue;
                }
                let mut it = TableIter::new(self.cache.clone(), table);
                it.seek_ge(seek).await?;
                while it.valid() && key::head(it.key()) == head {
                    if seen(it.key()) {
                        if newer(it.key(), &best) {
                            best = Some((it.key().to_vec(), it.value().to_vec()));
                        }
                        break;
                    }
                    it.next().await?;
                }
            }
        }
        Ok(best)
    }
}

impl Inner {
    /// [`Engine::get`] as of `snap`.
    async fn get_in(&self, snap: &Snapshot, key: &[u8], ts: Timestamp) -> Result<Option<Vec<u8>>> {
        let inner = self;
        let tombstones = snap.point_tombstones(key);
        let seek = key::encode(SPACE_MVCC, key, ts, Seqno::MAX);
        let Some((k, mut v)) = inner.point_lookup(snap, &seek, &tombstones).await? else {
            return Ok(None);
        };
        let visible = resolve(
            key,
            std::iter::once((k.as_slice(), v.as_slice())),
            ts,
            &tombstones,
        );
        let visible = visible.is_some();
        Ok(visible.then(|| {
            // PERF: the found copy becomes the value (its kind byte dropped), not a new copy.
            v.remove(0);
            v
        }))
    }

    /// [`Engine::scan`] as of `snap`.
    async fn scan_in(
        &self,
        snap: &Snapshot,
        start: &[u8],
        end: &[u8],
        opts: &ScanOptions,
    ) -> Result<Vec<KeyValue>> {
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let inner = self;
        let tombstones = snap.range_tombstones(start, end);
        let sources = inner.sources(snap, SPACE_MVCC, start, end, None).await?;
        let mut it = MergingIter::new(sources, opts.reverse, snap.seq);
        let from = if opts.reverse { end } else { start };
        it.seek(&key::seek_first(SPACE_MVCC, from)).await?;
        let mut group = Vec::new();
        let mut steps = 0usize;
        while it.valid() {
            let k = it.key();
            if key::space(k) != SPACE_MVCC {
                break;
            }
            let uk = key::user_key(k);
            if (!opts.reverse && uk >= end) || (opts.reverse && uk < start) {
                break;
            }
            collect_group(&mut it, &mut group).await?;
            if opts.reverse {
                group.reverse();
            }
            let uk = key::user_key(&group[0].0).to_vec();
            let versions = group.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
            if let Some((ts, value)) = resolve(&uk, versions, opts.ts, &tombstones) {
                out.push(KeyValue {
                    key: uk,
                    value: value.to_vec(),
                    ts,
                });
                if opts.limit != 0 && out.len() >= opts.limit {
                    break;
                }
            }
            steps += 1;
            if steps.is_multiple_of(128) {
                glommio::yield_if_needed().await;
            }
        }
        Ok(out)
    }
}

async fn acquire(lock: &Semaphore) -> Result<glommio::sync::Permit<'_>> {
    lock.acquire_permit(1)
        .await
        .map_err(|e| Error::Unavailable(format!("engine closed: {e}")))
}

/// Picks the visible version of one user key from its versions, newest first
/// (`(internal key, value)` pairs): `Some((ts, value))`, or `None` when the key is absent,
/// deleted or hidden at `read_ts`.
fn resolve<'a>(
    user_key: &[u8],
    versions: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    read_ts: Timestamp,
    tombstones: &[RangeTombstone],
) -> Option<(Timestamp, &'a [u8])> {
    for (k, v) in versions {
        let ts = key::ts(k);
        if ts > read_ts {
            continue;
        }
        let seq = key::seq(k);
        if tombstones.iter().any(|t| t.removes(user_key, seq)) {
            continue;
        }
        if tombstones.iter().any(|t| t.hides(user_key, ts, read_ts)) {
            return None;
        }
        return match v.split_first() {
            Some((&key::KIND_PUT, value)) => Some((ts, value)),
            _ => None,
        };
    }
    None
}

/// Collects the entries of the current user key (same head) from `it`, leaving it on the
/// next key.
async fn collect_group(it: &mut MergingIter, group: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
    group.clear();
    let head = key::head(it.key()).to_vec();
    while it.valid() && key::head(it.key()) == head.as_slice() {
        group.push((it.key().to_vec(), it.value().to_vec()));
        it.advance().await?;
    }
    Ok(())
}

impl Engine for LsmEngine {
    async fn write(&self, batch: WriteBatch) -> Result<()> {
        let inner = &self.inner;
        // A core that only writes must still let its background queue (flushes,
        // compactions) have its share.
        glommio::yield_if_needed().await;
        if inner.state.borrow().imms.len() >= inner.opts.max_immutable_memtables.max(1) {
            // Write stall: flush in the foreground rather than let memtables pile up.
            let _p = acquire(&inner.flush_lock).await?;
            inner.flush_imms().await?;
        }
        let stop = inner.opts.l0_stop_writes;
        if stop > 0 && inner.state.borrow().version.levels[0].len() >= stop {
            // Write stall: compaction fell behind; wait for it (or do it).
            let _p = acquire(&inner.compaction_lock).await?;
            inner.compact_until_done().await?;
        }
        let full = {
            let mut guard = inner.state.borrow_mut();
            let st = &mut *guard;
            for op in batch.ops {
                st.last_seq += 1;
                let seq = st.last_seq;
                match op {
                    BatchOp::Put { key, ts, value } => {
                        let mut v = Vec::with_capacity(value.len() + 1);
                        v.push(key::KIND_PUT);
                        v.extend_from_slice(&value);
                        st.active.insert(key::encode(SPACE_MVCC, &key, ts, seq), v);
                    }
                    BatchOp::Delete { key, ts } => {
                        st.active.insert(
                            key::encode(SPACE_MVCC, &key, ts, seq),
                            vec![key::KIND_TOMBSTONE],
                        );
                    }
                    BatchOp::DeleteRange { start, end, ts } => {
                        if start < end {
                            st.active.add_range_tombstone(RangeTombstone {
                                start,
                                end,
                                ts,
                                seq,
                            });
                        }
                    }
                    BatchOp::PutLock { key, lock } => {
                        let mut v = Vec::with_capacity(lock.len() + 1);
                        v.push(key::KIND_LOCK_PUT);
                        v.extend_from_slice(&lock);
                        st.active
                            .insert(key::encode(SPACE_LOCK, &key, Timestamp::MAX, seq), v);
                    }
                    BatchOp::DeleteLock { key } => {
                        st.active.insert(
                            key::encode(SPACE_LOCK, &key, Timestamp::MAX, seq),
                            vec![key::KIND_LOCK_DELETE],
                        );
                    }
                }
            }
            for (range, index) in batch.applied {
                st.applied.insert(range, index);
                st.applied_dirty = true;
            }
            st.active.bytes() >= inner.opts.memtable_bytes
        };
        if full {
            inner.freeze();
            inner.wake();
        }
        Ok(())
    }

    async fn get(&self, key: &[u8], ts: Timestamp) -> Result<Option<Vec<u8>>> {
        self.inner.get_in(&self.inner.snapshot(), key, ts).await
    }

    async fn scan(&self, start: &[u8], end: &[u8], opts: &ScanOptions) -> Result<Vec<KeyValue>> {
        self.inner
            .scan_in(&self.inner.snapshot(), start, end, opts)
            .await
    }

    async fn get_lock(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let inner = &self.inner;
        let snap = inner.snapshot();
        let seek = key::seek_first(SPACE_LOCK, key);
        // Range tombstones are MVCC-only: they never touch locks.
        let found = inner.point_lookup(&snap, &seek, &[]).await?;
        Ok(match found {
            Some((_, v)) if v.first() == Some(&key::KIND_LOCK_PUT) => Some(v[1..].to_vec()),
            _ => None,
        })
    }

    async fn scan_locks(&self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let inner = &self.inner;
        let snap = inner.snapshot();
        let sources = inner.sources(&snap, SPACE_LOCK, start, end, None).await?;
        let mut it = MergingIter::new(sources, false, snap.seq);
        it.seek(&key::seek_first(SPACE_LOCK, start)).await?;
        let mut group = Vec::new();
        while it.valid() {
            let k = it.key();
            if key::space(k) != SPACE_LOCK || key::user_key(k) >= end {
                break;
            }
            collect_group(&mut it, &mut group).await?;
            let (k, v) = &group[0];
            if let Some((&key::KIND_LOCK_PUT, lock)) = v.split_first() {
                out.push((key::user_key(k).to_vec(), lock.to_vec()));
            }
        }
        Ok(out)
    }

    fn applied_index(&self, range: RangeId) -> Option<u64> {
        self.inner
            .state
            .borrow()
            .durable_applied
            .get(&range)
            .copied()
    }

    async fn flush(&self) -> Result<()> {
        let inner = &self.inner;
        inner.check_bg_error()?;
        let _p = acquire(&inner.flush_lock).await?;
        inner.freeze();
        inner.flush_imms().await
    }
}
