//! Engine-level tests: MVCC semantics across memtable, SSTs, compaction and restart; a
//! model test against `MemEngine` with restarts and crashes; corruption; time bounds;
//! export and ingest.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::MemEngine;

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "chitin-lsm-{}-{}-{}",
            name,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `f` on a fresh glommio executor thread.
pub(crate) fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .name("lsm-test")
        .spawn(move || async move { f().await })
        .unwrap()
        .join()
        .unwrap();
}

fn t(w: u64) -> Timestamp {
    Timestamp::new(w, 0)
}

/// Small sizes, so a few hundred writes make many tables and levels.
fn tiny(background: bool) -> LsmOptions {
    LsmOptions {
        memtable_bytes: 4 << 10,
        max_immutable_memtables: 2,
        block_size: 256,
        bloom_bits_per_key: 10,
        block_cache_bytes: 16 << 10,
        max_open_files: 4,
        l0_compaction_trigger: 2,
        l0_stop_writes: 6,
        level_base_bytes: 8 << 10,
        level_multiplier: 4,
        target_file_bytes: 4 << 10,
        background_shares: 100,
        background_work: background,
    }
}

async fn get(e: &LsmEngine, k: &str, ts: u64) -> Option<String> {
    e.get(k.as_bytes(), t(ts))
        .await
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

async fn keys(e: &LsmEngine, ts: u64, reverse: bool) -> Vec<String> {
    let mut o = ScanOptions::at(t(ts));
    o.reverse = reverse;
    e.scan(b"", b"\xff", &o)
        .await
        .unwrap()
        .into_iter()
        .map(|kv| {
            format!(
                "{}={}@{}",
                String::from_utf8_lossy(&kv.key),
                String::from_utf8_lossy(&kv.value),
                kv.ts.wall
            )
        })
        .collect()
}

/// The MVCC story of `mvcc_semantics`, checked wherever the data currently lives.
async fn check_story(e: &LsmEngine, phase: &str) {
    // Versions: the newest at or below the read timestamp.
    assert_eq!(get(e, "a", 9).await, None, "{phase}");
    assert_eq!(get(e, "a", 10).await.as_deref(), Some("a10"), "{phase}");
    assert_eq!(get(e, "a", 25).await.as_deref(), Some("a20"), "{phase}");
    // Tombstones.
    assert_eq!(get(e, "b", 29).await.as_deref(), Some("b10"), "{phase}");
    assert_eq!(get(e, "b", 30).await, None, "{phase}");
    // A range tombstone at 40 over [a, c) hides a and the re-written b from 40 on.
    assert_eq!(get(e, "a", 39).await.as_deref(), Some("a20"), "{phase}");
    assert_eq!(get(e, "a", 40).await, None, "{phase}");
    assert_eq!(get(e, "b", 35).await.as_deref(), Some("b35"), "{phase}");
    assert_eq!(get(e, "b", 45).await, None, "{phase}");
    // A removal (delete-range at MAX) of [d, e) drops d's old versions but not the later write.
    assert_eq!(get(e, "d", 4).await, None, "{phase}");
    assert_eq!(get(e, "d", 15).await.as_deref(), Some("d5"), "{phase}");
    assert_eq!(get(e, "d", 60).await.as_deref(), Some("d5"), "{phase}");
    // Keys that are prefixes of each other keep their own versions.
    assert_eq!(get(e, "c", 50).await.as_deref(), Some("c5"), "{phase}");
    assert_eq!(get(e, "cc", 50).await.as_deref(), Some("cc7"), "{phase}");
    assert_eq!(
        keys(e, 50, false).await,
        vec!["c=c5@5", "cc=cc7@7", "d=d5@5"],
        "{phase}"
    );
    assert_eq!(
        keys(e, 50, true).await,
        vec!["d=d5@5", "cc=cc7@7", "c=c5@5"],
        "{phase}"
    );
    assert_eq!(
        keys(e, 25, false).await,
        vec!["a=a20@20", "b=b10@10", "c=c5@5", "cc=cc7@7", "d=d5@5"],
        "{phase}"
    );
    let mut lim = ScanOptions::at(t(25));
    lim.limit = 2;
    lim.reverse = true;
    let got: Vec<_> = e
        .scan(b"a", b"d", &lim)
        .await
        .unwrap()
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(got, vec![b"cc".to_vec(), b"c".to_vec()], "{phase}");
    // Locks live apart: invisible to MVCC reads, visible to lock reads.
    assert_eq!(get(e, "lock-only", 100).await, None, "{phase}");
    assert_eq!(
        e.get_lock(b"lock-only").await.unwrap(),
        Some(b"txn1".to_vec()),
        "{phase}"
    );
    assert_eq!(e.get_lock(b"c").await.unwrap(), None, "{phase}");
    assert_eq!(
        e.scan_locks(b"", b"\xff").await.unwrap(),
        vec![(b"lock-only".to_vec(), b"txn1".to_vec())],
        "{phase}"
    );
    assert_eq!(e.applied_index(RangeId(7)), Some(3), "{phase}");
}

#[test]
fn mvcc_semantics_hold_in_memtable_sst_compaction_and_after_restart() {
    let dir = TempDir::new("story");
    let p = dir.path().to_path_buf();
    run(move || async move {
        let e = LsmEngine::open(&p, tiny(false)).await.unwrap();
        let mut b = WriteBatch::new();
        b.put("a", t(10), "a10");
        b.put("a", t(20), "a20");
        b.put("b", t(10), "b10");
        b.delete("b", t(30));
        b.put("c", t(5), "c5");
        b.put("cc", t(7), "cc7");
        b.put("d", t(10), "d10");
        b.put_lock("lock-only", "txn1");
        b.put_lock("c", "txn2");
        b.set_applied(RangeId(7), 1);
        e.write(b).await.unwrap();
        let mut b = WriteBatch::new();
        b.delete_range("a", "c", t(40));
        b.put("b", t(35), "b35");
        b.delete_lock("c");
        b.delete_range("d", "e", Timestamp::MAX);
        b.set_applied(RangeId(7), 2);
        e.write(b).await.unwrap();
        let mut b = WriteBatch::new();
        b.put("d", t(5), "d5");
        b.set_applied(RangeId(7), 3);
        e.write(b).await.unwrap();
        // Not durable yet: the applied index reports the last flush.
        assert_eq!(e.applied_index(RangeId(7)), None);
        e.flush().await.unwrap();
        check_story(&e, "after flush").await;
        e.compact().await.unwrap();
        check_story(&e, "after compaction").await;
        e.close().await.unwrap();
        let e = LsmEngine::open(&p, tiny(true)).await.unwrap();
        check_story(&e, "after restart").await;
        // One engine per directory.
        assert!(matches!(
            LsmEngine::open(&p, tiny(true)).await,
            Err(Error::Unavailable(_))
        ));
        e.close().await.unwrap();
    });
}

#[test]
fn gc_keeps_the_newest_version_at_or_below_the_threshold() {
    let dir = TempDir::new("gc");
    let p = dir.path().to_path_buf();
    run(move || async move {
        let e = LsmEngine::open(&p, tiny(false)).await.unwrap();
        let mut b = WriteBatch::new();
        for w in [5, 10, 20, 30] {
            b.put("k", t(w), format!("v{w}"));
        }
        b.put("gone", t(5), "x");
        b.delete("gone", t(8));
        b.put("lock", t(1), "x");
        b.put_lock("l", "1");
        b.delete_lock("l");
        e.write(b).await.unwrap();
        e.set_gc_threshold(t(25));
        e.compact().await.unwrap();
        let v = e
            .scan_versions(b"", b"\xff", Timestamp::MIN, Timestamp::MAX)
            .await
            .unwrap();
        let got: Vec<_> = v
            .iter()
            .map(|v| (String::from_utf8_lossy(&v.key).into_owned(), v.ts.wall))
            .collect();
        // k@30 is above the threshold, k@20 is the newest at or below it; "gone" is a
        // deleted key at the bottom level: both its versions go.
        assert_eq!(
            got,
            vec![("k".into(), 30), ("k".into(), 20), ("lock".into(), 1)]
        );
        assert_eq!(get(&e, "k", 25).await.as_deref(), Some("v20"));
        assert_eq!(get(&e, "k", 30).await.as_deref(), Some("v30"));
        assert_eq!(e.scan_locks(b"", b"\xff").await.unwrap(), vec![]);
        e.close().await.unwrap();
        // The threshold is durable.
        let e = LsmEngine::open(&p, tiny(false)).await.unwrap();
        assert_eq!(e.gc_threshold(), t(25));
        e.close().await.unwrap();
    });
}

#[test]
fn delete_range_at_max_removes_data_for_good() {
    let dir = TempDir::new("remove");
    let p = dir.path().to_path_buf();
    run(move || async move {
        let e = LsmEngine::open(&p, tiny(false)).await.unwrap();
        for i in 0..300u32 {
            let mut b = WriteBatch::new();
            b.put(format!("k{i:04}"), t(u64::from(i) + 1), vec![b'x'; 50]);
            e.write(b).await.unwrap();
        }
        e.flush().await.unwrap();
        let mut b = WriteBatch::new();
        b.delete_range("k0100", "k0200", Timestamp::MAX);
        e.write(b).await.unwrap();
        assert_eq!(
            e.scan(b"k0100", b"k0200", &ScanOptions::at(Timestamp::MAX))
                .await
                .unwrap(),
            vec![]
        );
        e.compact().await.unwrap();
        let v = e
            .scan_versions(b"", b"\xff", Timestamp::MIN, Timestamp::MAX)
            .await
            .unwrap();
        assert_eq!(v.len(), 200);
        // The data is gone from disk, and the tombstone with it.
        assert!(e.inner.state.borrow().version.range_tombstones.is_empty());
        let n: u64 = e
            .inner
            .state
            .borrow()
            .version
            .all_tables()
            .map(|(_, t)| t.num_entries)
            .sum();
        assert_eq!(n, 200);
        e.close().await.unwrap();
    });
}

#[test]
fn time_bounded_scans_skip_tables_outside_the_bounds() {
    let dir = TempDir::new("time");
    let p = dir.path().to_path_buf();
    run(move || async move {
        let mut opts = tiny(false);
        opts.l0_compaction_trigger = 100;
        opts.l0_stop_writes = 0;
        let e = LsmEngine::open(&p, opts.clone()).await.unwrap();
        for (gen, ts) in [(0u32, 10u64), (1, 20), (2, 30)] {
            let mut b = WriteBatch::new();
            for i in 0..20u32 {
                b.put(format!("k{i:02}"), t(ts), format!("g{gen}"));
            }
            e.write(b).await.unwrap();
            e.flush().await.unwrap();
        }
        e.close().await.unwrap();
        let e = LsmEngine::open(&p, opts).await.unwrap();
        assert_eq!(e.stats().tables_per_level[0], 3);
        let v = e.scan_versions(b"k", b"l", t(15), t(25)).await.unwrap();
        assert_eq!(v.len(), 20);
        assert!(v
            .iter()
            .all(|v| v.ts == t(20) && v.value.as_deref() == Some(&b"g1"[..])));
        assert_eq!(
            e.stats().cache.table_opens,
            1,
            "only the table holding ts 20 is opened"
        );
        e.close().await.unwrap();
    });
}

#[test]
fn export_and_ingest_round_trip() {
    let dir = TempDir::new("export");
    let p = dir.path().to_path_buf();
    run(move || async move {
        let a = LsmEngine::open(p.join("a"), tiny(true)).await.unwrap();
        for i in 0..200u32 {
            let mut b = WriteBatch::new();
            b.put(format!("k{i:03}"), t(10), format!("old{i}"));
            if i % 3 == 0 {
                b.put(format!("k{i:03}"), t(20), format!("new{i}"));
            }
            if i % 5 == 0 {
                b.delete(format!("k{i:03}"), t(30));
            }
            a.write(b).await.unwrap();
        }
        let full = p.join("full.sst");
        let incr = p.join("incr.sst");
        let n = a
            .export(b"k", b"l", ExportSpec::AsOf(t(15)), &full)
            .await
            .unwrap();
        assert_eq!(n, 200);
        let n = a
            .export(b"k", b"l", ExportSpec::Between(t(15), t(30)), &incr)
            .await
            .unwrap();
        assert_eq!(n, 67 + 40);
        let b = LsmEngine::open(p.join("b"), tiny(true)).await.unwrap();
        b.ingest(&full).await.unwrap();
        b.ingest(&incr).await.unwrap();
        for ts in [15, 20, 25, 30, 40] {
            let want = a.scan(b"", b"\xff", &ScanOptions::at(t(ts))).await.unwrap();
            let got = b.scan(b"", b"\xff", &ScanOptions::at(t(ts))).await.unwrap();
            assert_eq!(got, want, "ts {ts}");
        }
        b.close().await.unwrap();
        let b = LsmEngine::open(p.join("b"), tiny(true)).await.unwrap();
        let got = b.scan(b"", b"\xff", &ScanOptions::at(t(40))).await.unwrap();
        assert_eq!(got.len(), 160);
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

#[test]
fn flipped_byte_in_a_data_block_is_corruption_naming_the_file() {
    let dir = TempDir::new("corrupt");
    let p = dir.path().to_path_buf();
    run(move || async move {
        let e = LsmEngine::open(&p, tiny(false)).await.unwrap();
        let mut b = WriteBatch::new();
        for i in 0..50u32 {
            b.put(format!("k{i:02}"), t(1), format!("value{i}"));
        }
        e.write(b).await.unwrap();
        e.flush().await.unwrap();
        let ssts = e.sst_paths();
        assert_eq!(ssts.len(), 1);
        e.close().await.unwrap();
        let sst = ssts[0].1.clone();
        let mut bytes = std::fs::read(&sst).unwrap();
        bytes[10] ^= 0x40; // inside the first data block
        std::fs::write(&sst, &bytes).unwrap();
        let e = LsmEngine::open(&p, tiny(false)).await.unwrap();
        match e.get(b"k00", t(5)).await {
            Err(Error::Corruption { path, offset, .. }) => {
                assert_eq!(path, sst);
                assert_eq!(offset, 0);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(e
            .scan(b"", b"\xff", &ScanOptions::at(t(5)))
            .await
            .unwrap_err()
            .is_corruption());
        // Other files' damage (the manifest) is caught at open.
        e.close().await.unwrap();
        let m = p.join(manifest::MANIFEST);
        let mut bytes = std::fs::read(&m).unwrap();
        bytes[30] ^= 1;
        std::fs::write(&m, &bytes).unwrap();
        match LsmEngine::open(&p, tiny(false)).await {
            Err(Error::Corruption { path, .. }) => assert_eq!(path, m),
            Err(other) => panic!("expected corruption, got {other:?}"),
            Ok(_) => panic!("expected corruption, got an engine"),
        }
    });
}

#[test]
fn io_errors_reach_the_caller_and_the_engine_recovers_when_they_stop() {
    let dir = TempDir::new("ioerr");
    let p = dir.path().to_path_buf();
    run(move || async move {
        let e = LsmEngine::open(&p, tiny(false)).await.unwrap();
        let mut b = WriteBatch::new();
        b.put("a", t(1), "1");
        b.set_applied(R, 1);
        e.write(b).await.unwrap();
        e.flush().await.unwrap();
        e.close().await.unwrap();
        let e = LsmEngine::open(&p, tiny(false)).await.unwrap();
        // A failing read (e.g. EIO) is an error, not a panic, and not a wrong answer.
        file::faults::arm(0);
        assert!(matches!(e.get(b"a", t(1)).await, Err(Error::Io { .. })));
        file::faults::recover(|| false);
        assert_eq!(get(&e, "a", 1).await.as_deref(), Some("1"));
        // A failing flush (e.g. ENOSPC) keeps the data in memory and can be retried.
        let mut b = WriteBatch::new();
        b.put("b", t(2), "2");
        b.set_applied(R, 2);
        e.write(b).await.unwrap();
        file::faults::arm(1);
        assert!(e.flush().await.is_err());
        assert_eq!(e.applied_index(R), Some(1));
        assert_eq!(get(&e, "b", 2).await.as_deref(), Some("2"));
        file::faults::recover(|| false);
        e.flush().await.unwrap();
        assert_eq!(e.applied_index(R), Some(2));
        e.close().await.unwrap();
        let e = LsmEngine::open(&p, tiny(false)).await.unwrap();
        assert_eq!(get(&e, "b", 2).await.as_deref(), Some("2"));
        assert_eq!(e.applied_index(R), Some(2));
        e.close().await.unwrap();
    });
}

#[test]
fn open_files_stay_bounded() {
    let dir = TempDir::new("files");
    let p = dir.path().to_path_buf();
    run(move || async move {
        let mut opts = tiny(false);
        opts.l0_compaction_trigger = 1000;
        opts.l0_stop_writes = 0;
        opts.max_open_files = 3;
        let e = LsmEngine::open(&p, opts).await.unwrap();
        for g in 0..10u32 {
            let mut b = WriteBatch::new();
            b.put(format!("k{g}"), t(1), "v");
            e.write(b).await.unwrap();
            e.flush().await.unwrap();
        }
        for g in 0..10u32 {
            assert_eq!(get(&e, &format!("k{g}"), 1).await.as_deref(), Some("v"));
            assert!(e.stats().open_tables <= 3);
        }
        e.close().await.unwrap();
    });
}

#[test]
fn readers_never_see_part_of_a_batch() {
    let dir = TempDir::new("atomic");
    let p = dir.path().to_path_buf();
    run(move || async move {
        let mut opts = tiny(true);
        opts.block_cache_bytes = 1; // every block read goes to disk: readers suspend a lot
        opts.memtable_bytes = 1 << 20; // many batches share a memtable
        let e = Rc::new(LsmEngine::open(&p, opts).await.unwrap());
        let batch = |gen: u64| {
            let mut b = WriteBatch::new();
            for i in 0..100u32 {
                // Each generation rewrites every key at a newer timestamp: a read at MAX
                // that saw writes made after it began would mix generations.
                b.put(format!("k{i:03}"), t(1000 + gen), format!("{gen}"));
            }
            b.delete_range("k050", "k060", t(5000 + gen));
            b
        };
        e.write(batch(0)).await.unwrap();
        e.flush().await.unwrap();
        let done = Rc::new(std::cell::Cell::new(false));
        let writer = {
            let (e, done) = (e.clone(), done.clone());
            glommio::spawn_local(async move {
                for gen in 1..120 {
                    e.write(batch(gen)).await.unwrap();
                    if gen % 20 == 0 {
                        e.flush().await.unwrap();
                    }
                    futures_lite::future::yield_now().await;
                }
                done.set(true);
            })
        };
        let mut scans = 0;
        let mut generations = std::collections::HashSet::new();
        while !done.get() || scans < 20 {
            let mut o = ScanOptions::at(Timestamp::MAX);
            o.reverse = scans % 2 == 1;
            let kvs = e.scan(b"k", b"l", &o).await.unwrap();
            assert_eq!(
                kvs.len(),
                90,
                "scan {scans}: every key but the range-deleted ones"
            );
            let first = &kvs[0].value;
            assert!(
                kvs.iter().all(|kv| &kv.value == first),
                "scan {scans} mixes batches"
            );
            generations.insert(first.clone());
            scans += 1;
        }
        writer.await;
        assert!(
            generations.len() > 2,
            "reads interleaved with writes: {generations:?}"
        );
        Rc::try_unwrap(e).ok().unwrap().close().await.unwrap();
    });
}

#[test]
fn a_snapshot_ignores_later_writes_to_its_own_memtable() {
    let dir = TempDir::new("snapshot");
    let p = dir.path().to_path_buf();
    run(move || async move {
        let e = LsmEngine::open(&p, LsmOptions::default()).await.unwrap();
        let mut b = WriteBatch::new();
        b.put("a", t(1), "old");
        b.put("c", t(1), "old");
        e.write(b).await.unwrap();
        let snap = e.inner.snapshot();
        let mut b = WriteBatch::new();
        b.put("a", t(2), "new");
        b.put("b", t(2), "new");
        b.delete("c", t(2));
        b.delete_range("a", "z", Timestamp::MAX);
        e.write(b).await.unwrap();
        let all = ScanOptions::at(Timestamp::MAX);
        let got = e.inner.scan_in(&snap, b"", b"z", &all).await.unwrap();
        let got: Vec<_> = got.into_iter().map(|kv| (kv.key, kv.value)).collect();
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), b"old".to_vec()),
                (b"c".to_vec(), b"old".to_vec())
            ]
        );
        let got = e.inner.get_in(&snap, b"a", Timestamp::MAX).await.unwrap();
        assert_eq!(got, Some(b"old".to_vec()));
        assert_eq!(e.scan(b"", b"z", &all).await.unwrap(), vec![]);
        e.close().await.unwrap();
    });
}

/// Runs one golden script (see `testdata/mvcc`): each command's output is printed under it,
/// and the whole transcript must match `testdata/<name>.golden` (rewritten when
/// `CHITIN_REGENERATE_GOLDEN` is set).
fn golden(name: &'static str) {
    let dir = TempDir::new(&format!("golden-{name}"));
    let p = dir.path().to_path_buf();
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lsm/testdata");
    let script = std::fs::read_to_string(base.join(name)).unwrap();
    let golden_path = base.join(format!("{name}.golden"));
    let (tx, rx) = std::sync::mpsc::channel();
    run(move || async move {
        let mut o = String::new();
        let opts = tiny(false);
        let mut e = LsmEngine::open(&p, opts.clone()).await.unwrap();
        let ts = |s: &str| -> Timestamp {
            if s == "MAX" {
                Timestamp::MAX
            } else {
                t(s.parse().unwrap())
            }
        };
        let span = |s: &str| -> (Vec<u8>, Vec<u8>, String) {
            let (range, at) = s.split_once('@').unwrap_or((s, ""));
            let (a, b) = range.split_once('-').unwrap();
            (a.as_bytes().to_vec(), b.as_bytes().to_vec(), at.to_string())
        };
        let show = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        for line in script.lines() {
            o.push_str(line);
            o.push('\n');
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (cmd, args) = line.split_once(' ').unwrap_or((line, ""));
            let res: String = match cmd {
                "write" => {
                    let mut b = WriteBatch::new();
                    for op in args.split(',').map(str::trim) {
                        let (kind, rest) = op.split_once(' ').unwrap();
                        match kind {
                            "put" => {
                                let (kt, v) = rest.split_once('=').unwrap();
                                let (k, w) = kt.split_once('@').unwrap();
                                b.put(k, ts(w), v);
                            }
                            "del" => {
                                let (k, w) = rest.split_once('@').unwrap();
                                b.delete(k, ts(w));
                            }
                            "delrange" => {
                                let (a, z, w) = span(rest);
                                b.delete_range(a, z, ts(&w));
                            }
                            "lock" => {
                                let (k, v) = rest.split_once('=').unwrap();
                                b.put_lock(k, v);
                            }
                            "unlock" => b.delete_lock(rest),
                            "applied" => {
                                let (r, i) = rest.split_once('=').unwrap();
                                b.set_applied(RangeId(r[1..].parse().unwrap()), i.parse().unwrap());
                            }
                            other => panic!("unknown op {other}"),
                        }
                    }
                    e.write(b).await.unwrap();
                    "ok".into()
                }
                "get" => {
                    let (k, w) = args.split_once('@').unwrap();
                    match e.get(k.as_bytes(), ts(w)).await.unwrap() {
                        Some(v) => show(&v),
                        None => "<none>".into(),
                    }
                }
                "scan" => {
                    let mut words = args.split(' ');
                    let (a, z, w) = span(words.next().unwrap());
                    let mut so = ScanOptions::at(ts(&w));
                    for wd in words {
                        match wd.split_once('=') {
                            Some(("limit", n)) => so.limit = n.parse().unwrap(),
                            _ if wd == "rev" => so.reverse = true,
                            _ => panic!("unknown scan option {wd}"),
                        }
                    }
                    let kvs = e.scan(&a, &z, &so).await.unwrap();
                    let s: Vec<_> = kvs
                        .iter()
                        .map(|kv| format!("{}@{}={}", show(&kv.key), kv.ts.wall, show(&kv.value)))
                        .collect();
                    if s.is_empty() {
                        "<none>".into()
                    } else {
                        s.join(" ")
                    }
                }
                "locks" => {
                    let (a, z, _) = span(args);
                    let l = e.scan_locks(&a, &z).await.unwrap();
                    let s: Vec<_> = l
                        .iter()
                        .map(|(k, v)| format!("{}={}", show(k), show(v)))
                        .collect();
                    if s.is_empty() {
                        "<none>".into()
                    } else {
                        s.join(" ")
                    }
                }
                "versions" => {
                    let (a, z, w) = span(args);
                    let (t1, t2) = w.split_once('-').unwrap();
                    let opens = e.stats().cache.table_opens;
                    let v = e.scan_versions(&a, &z, ts(t1), ts(t2)).await.unwrap();
                    let s: Vec<_> = v
                        .iter()
                        .map(|v| match &v.value {
                            Some(x) => format!("{}@{}={}", show(&v.key), v.ts.wall, show(x)),
                            None => format!("{}@{}=<del>", show(&v.key), v.ts.wall),
                        })
                        .collect();
                    let s = if s.is_empty() {
                        "<none>".into()
                    } else {
                        s.join(" ")
                    };
                    let tables = e.stats().tables_per_level.iter().sum::<usize>();
                    format!(
                        "{s}\n(tables live {tables}, newly opened {})",
                        e.stats().cache.table_opens - opens
                    )
                }
                "applied" => format!("{:?}", e.applied_index(RangeId(args[1..].parse().unwrap()))),
                "flush" => {
                    e.flush().await.unwrap();
                    "ok".into()
                }
                "compact" => {
                    e.compact().await.unwrap();
                    format!("ok, tables per level {:?}", e.stats().tables_per_level)
                }
                "gc" => {
                    e.set_gc_threshold(ts(args));
                    "ok".into()
                }
                "restart" => {
                    e.close().await.unwrap();
                    e = LsmEngine::open(&p, opts.clone()).await.unwrap();
                    "ok".into()
                }
                other => panic!("unknown command {other}"),
            };
            for l in res.lines() {
                o.push_str("  → ");
                o.push_str(l);
                o.push('\n');
            }
        }
        e.close().await.unwrap();
        tx.send(o).unwrap();
    });
    let got = rx.recv().unwrap();
    if std::env::var_os("CHITIN_REGENERATE_GOLDEN").is_some() {
        std::fs::write(&golden_path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&golden_path).unwrap_or_default();
    if got != want {
        panic!(
            "golden {name} differs (CHITIN_REGENERATE_GOLDEN=1 rewrites it):\n{}",
            got
        );
    }
}

#[test]
fn golden_mvcc() {
    golden("mvcc");
}

/// splitmix64: a tiny deterministic PRNG.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const R: RangeId = RangeId(1);

fn key(rng: &mut Rng) -> Vec<u8> {
    // Some keys are prefixes of others.
    let i = rng.below(120);
    if i.is_multiple_of(7) {
        format!("k{:02}", i / 2).into_bytes()
    } else {
        format!("k{:03}", i).into_bytes()
    }
}

async fn replay(e: &impl Engine, log: &[WriteBatch]) {
    for b in log {
        e.write(b.clone()).await.unwrap();
    }
}

/// Compares full scans and a few point reads of `e` and `oracle` at timestamps >= `floor`.
async fn assert_same(e: &LsmEngine, oracle: &MemEngine, floor: u64, top: u64, what: &str) {
    for ts in [floor, (floor + top) / 2, top + 1, u64::MAX] {
        for reverse in [false, true] {
            let mut o = ScanOptions::at(t(ts));
            o.reverse = reverse;
            let want = oracle.scan(b"", b"\xff", &o).await.unwrap();
            let got = e.scan(b"", b"\xff", &o).await.unwrap();
            if got != want {
                let fmt = |kvs: &[KeyValue]| -> std::collections::BTreeSet<String> {
                    kvs.iter()
                        .map(|kv| {
                            let k = String::from_utf8_lossy(&kv.key);
                            let v = String::from_utf8_lossy(&kv.value);
                            format!("{k}@{}={v}", kv.ts.wall)
                        })
                        .collect()
                };
                let (g, w) = (fmt(&got), fmt(&want));
                panic!(
                    "{what}: full scan at {ts} reverse {reverse}: engine only {:?}, oracle only {:?}",
                    g.difference(&w).collect::<Vec<_>>(),
                    w.difference(&g).collect::<Vec<_>>()
                );
            }
        }
    }
    assert_eq!(
        e.scan_locks(b"", b"\xff").await.unwrap(),
        oracle.scan_locks(b"", b"\xff").await.unwrap(),
        "{what}: locks"
    );
}

/// How a model run ends its engine's life between steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Restart {
    Clean,
    /// Dropped mid-flight: background work is cancelled at an await.
    Drop,
    /// The fault layer failed every I/O call from some point on, then lost unsynced data.
    Crash,
}

/// Recovers after a restart: the engine must hold exactly the batches up to its durable
/// applied index (never fewer than the last successful `flush`), and the "raft log"
/// brings back the rest, as the layer above does.
async fn recover(
    p: &Path,
    opts: &LsmOptions,
    log: &[WriteBatch],
    flushed: &mut u64,
    gc: u64,
    top: u64,
    what: &str,
) -> LsmEngine {
    // A dropped engine lets go of its directory once its cancelled background task is gone.
    let mut tries = 0;
    let e = loop {
        match LsmEngine::open(p, opts.clone()).await {
            Err(Error::Unavailable(_)) if tries < 1000 => {
                tries += 1;
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            }
            res => break res.unwrap_or_else(|err| panic!("{what}: open: {err}")),
        }
    };
    let durable = e.applied_index(R).unwrap_or(0);
    assert!(
        durable >= *flushed && durable <= log.len() as u64,
        "{what}: durable {durable} flushed {flushed}"
    );
    let prefix = MemEngine::new();
    replay(&prefix, &log[..durable as usize]).await;
    if let Ok(k) = std::env::var("CHITIN_DEBUG_KEY") {
        let k = k.as_bytes();
        eprintln!("DEBUG {what}: durable {durable} of {}", log.len());
        for (i, b) in log.iter().enumerate() {
            for op in &b.ops {
                let hit = match op {
                    BatchOp::Put { key, .. } | BatchOp::Delete { key, .. } => key.as_slice() == k,
                    BatchOp::DeleteRange { start, end, .. } => {
                        start.as_slice() <= k && k < end.as_slice()
                    }
                    _ => false,
                };
                if hit {
                    eprintln!("DEBUG   batch {} {:?}", i + 1, op);
                }
            }
        }
        let v = e
            .scan_versions(k, &[k, &[0][..]].concat(), Timestamp::MIN, Timestamp::MAX)
            .await
            .unwrap();
        for v in v {
            eprintln!("DEBUG   engine version {:?}", v);
        }
        let st = e.inner.state.borrow();
        for t in &st.version.range_tombstones {
            if t.contains(k) {
                eprintln!("DEBUG   engine tombstone {t:?}");
            }
        }
        eprintln!("DEBUG   gc {:?}", e.gc_threshold());
    }
    assert_same(&e, &prefix, gc, top, &format!("{what}: recovered")).await;
    replay(&e, &log[durable as usize..]).await;
    *flushed = durable;
    e
}

/// Random operations against the engine and `MemEngine` as the oracle, with flushes,
/// compactions, GC and restarts of every kind (see [`Restart`]).
fn model(seed: u64, ops: usize, opts: LsmOptions) {
    let dir = TempDir::new(&format!("model{seed}"));
    let p = dir.path().to_path_buf();
    run(move || async move {
        let mut rng = Rng(seed);
        let mut e = LsmEngine::open(&p, opts.clone()).await.unwrap();
        let oracle = MemEngine::new();
        let mut log: Vec<WriteBatch> = Vec::new();
        let mut gc = 0u64;
        let mut top = 1u64;
        let mut flushed = 0u64;
        let mut restarts = [0usize; 3];
        for step in 0..ops {
            let what = format!("seed {seed} step {step}");
            let r = rng.below(100);
            let mut restart = None;
            let res: Result<()> = async {
                match r {
                    0..=44 => {
                        let mut b = WriteBatch::new();
                        for _ in 0..1 + rng.below(4) {
                            let k = key(&mut rng);
                            let ts = gc + 1 + rng.below(40);
                            top = top.max(ts);
                            match rng.below(10) {
                                0..=5 => {
                                    let v = format!("v{step}-{}", rng.below(1000));
                                    b.put(k, t(ts), v.repeat(1 + rng.below(4) as usize))
                                }
                                6..=7 => b.delete(k, t(ts)),
                                8 => b.put_lock(k, format!("lock{step}")),
                                _ => b.delete_lock(k),
                            }
                        }
                        if rng.below(20) == 0 {
                            let (a, z) = (key(&mut rng), key(&mut rng));
                            let ts = if rng.below(3) == 0 {
                                Timestamp::MAX
                            } else {
                                t(gc + 1 + rng.below(40))
                            };
                            b.delete_range(a.clone().min(z.clone()), a.max(z), ts);
                        }
                        b.set_applied(R, log.len() as u64 + 1);
                        // Committed to the "raft log" first; applying may fail (crash).
                        log.push(b.clone());
                        oracle.write(b.clone()).await.unwrap();
                        e.write(b).await?;
                    }
                    45..=59 => {
                        let k = key(&mut rng);
                        let ts = t(gc + rng.below(top + 5 - gc));
                        let want = oracle.get(&k, ts).await.unwrap();
                        assert_eq!(e.get(&k, ts).await?, want, "{what}: get");
                        let want = oracle.get_lock(&k).await.unwrap();
                        assert_eq!(e.get_lock(&k).await?, want, "{what}: lock");
                    }
                    60..=74 => {
                        let (a, z) = (key(&mut rng), key(&mut rng));
                        let mut o = ScanOptions::at(t(gc + rng.below(top + 5 - gc)));
                        o.limit = rng.below(8) as usize;
                        o.reverse = rng.below(2) == 0;
                        let (a, z) = (a.clone().min(z.clone()), a.max(z));
                        let want = oracle.scan(&a, &z, &o).await.unwrap();
                        assert_eq!(e.scan(&a, &z, &o).await?, want, "{what}: scan {o:?}");
                        let want = oracle.scan_locks(&a, &z).await.unwrap();
                        assert_eq!(e.scan_locks(&a, &z).await?, want, "{what}: locks");
                    }
                    75..=79 => {
                        e.flush().await?;
                        flushed = log.len() as u64;
                        assert_eq!(e.applied_index(R).unwrap_or(0), flushed);
                        if rng.below(4) == 0 {
                            // Raise the GC threshold right after a flush, so that nothing
                            // the log would replay lies below it.
                            gc = gc.max(top.saturating_sub(10));
                            e.set_gc_threshold(t(gc));
                            top = top.max(gc + 1);
                        }
                    }
                    80..=81 => e.compact().await?,
                    82..=84 => e.compact_as_needed().await?,
                    85..=86 => restart = Some(Restart::Clean),
                    87..=88 => restart = Some(Restart::Drop),
                    89..=91 => {
                        // The process will "die" somewhere in the next few I/O calls.
                        file::faults::arm(rng.below(40));
                    }
                    _ => {
                        // A batch with only an applied index (e.g. a raft no-op).
                        let mut b = WriteBatch::new();
                        b.set_applied(R, log.len() as u64 + 1);
                        log.push(b.clone());
                        e.write(b).await?;
                    }
                }
                Ok(())
            }
            .await;
            if let Err(err) = res {
                assert!(file::faults::crashed(), "{what}: unexpected error {err}");
                restart = Some(Restart::Crash);
            }
            let Some(kind) = restart else { continue };
            restarts[kind as usize] += 1;
            match kind {
                Restart::Clean => {
                    if let Err(err) = e.close().await {
                        assert!(file::faults::crashed(), "{what}: unexpected error {err}");
                    }
                }
                Restart::Drop | Restart::Crash => drop(e),
            }
            let mut coin = Rng(rng.next());
            file::faults::recover(|| coin.below(2) == 0);
            let what = format!("{what} ({kind:?})");
            e = recover(&p, &opts, &log, &mut flushed, gc, top, &what).await;
        }
        file::faults::recover(|| false);
        assert_same(&e, &oracle, gc, top, &format!("seed {seed}: final")).await;
        e.compact().await.unwrap();
        assert_same(
            &e,
            &oracle,
            gc,
            top,
            &format!("seed {seed}: final compacted"),
        )
        .await;
        e.close().await.unwrap();
        assert!(
            restarts.iter().all(|n| *n > 0),
            "seed {seed}: restarts {restarts:?}"
        );
    });
}

fn model_ops() -> usize {
    std::env::var("CHITIN_MODEL_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

#[test]
fn model_foreground_seeds() {
    for seed in model_seeds(1..=3) {
        model(seed, model_ops(), tiny(false));
    }
}

/// `CHITIN_MODEL_SEED=a-b` replaces every model test's seeds (e.g. to explore more).
fn model_seeds(default: std::ops::RangeInclusive<u64>) -> std::ops::RangeInclusive<u64> {
    match std::env::var("CHITIN_MODEL_SEED") {
        Ok(s) => {
            let (a, b) = s.split_once('-').unwrap_or((&s, &s));
            a.parse().unwrap()..=b.parse().unwrap()
        }
        Err(_) => default,
    }
}

#[test]
fn model_background_seeds() {
    for seed in model_seeds(11..=13) {
        model(seed, model_ops(), tiny(true));
    }
}

/// The same model under extreme options: 128-byte blocks (restart points everywhere),
/// one open file, a few-block cache, tiny levels, no bloom filter to speak of.
#[test]
fn model_extreme_options() {
    let opts = LsmOptions {
        memtable_bytes: 2 << 10,
        max_immutable_memtables: 1,
        block_size: 128,
        bloom_bits_per_key: 1,
        block_cache_bytes: 4 << 10,
        max_open_files: 1,
        l0_compaction_trigger: 3,
        l0_stop_writes: 4,
        level_base_bytes: 8 << 10,
        level_multiplier: 2,
        target_file_bytes: 2 << 10,
        background_shares: 10,
        background_work: true,
    };
    for seed in model_seeds(21..=22) {
        model(seed, model_ops() / 3, opts.clone());
    }
}

/// A rough throughput probe (not a benchmark harness; `bench/` has those):
/// `cargo test --release -p chitin-storage lsm::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let dir = TempDir::new("throughput");
    let p = dir.path().to_path_buf();
    let n: u64 = std::env::var("CHITIN_PROBE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    run(move || async move {
        let e = LsmEngine::open(&p, LsmOptions::default()).await.unwrap();
        let mut rng = Rng(42);
        let key = |i: u64| format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).into_bytes();
        let value = vec![b'v'; 100];
        let start = std::time::Instant::now();
        for chunk in 0..n / 100 {
            let mut b = WriteBatch::new();
            for i in chunk * 100..(chunk + 1) * 100 {
                b.put(key(i), t(1), value.clone());
            }
            e.write(b).await.unwrap();
        }
        e.flush().await.unwrap();
        let fill = start.elapsed();
        println!(
            "fill {n} random keys (batches of 100, one flush): {:.0} keys/s",
            n as f64 / fill.as_secs_f64()
        );
        let s = e.stats();
        println!("after fill: {s:?}");
        let start = std::time::Instant::now();
        let gets = 100_000u64;
        for _ in 0..gets {
            let i = rng.below(n);
            assert!(e.get(&key(i), t(2)).await.unwrap().is_some());
        }
        let el = start.elapsed();
        println!(
            "random get (cold cache): {:.0} gets/s",
            gets as f64 / el.as_secs_f64()
        );
        let start = std::time::Instant::now();
        for _ in 0..gets {
            let i = rng.below(n);
            assert!(e.get(&key(i), t(2)).await.unwrap().is_some());
        }
        let el = start.elapsed();
        println!(
            "random get (warm cache): {:.0} gets/s",
            gets as f64 / el.as_secs_f64()
        );
        e.compact().await.unwrap();
        let start = std::time::Instant::now();
        for _ in 0..gets {
            let i = rng.below(n);
            assert!(e.get(&key(i), t(2)).await.unwrap().is_some());
        }
        let el = start.elapsed();
        println!(
            "random get after full compaction: {:.0} gets/s",
            gets as f64 / el.as_secs_f64()
        );
        let start = std::time::Instant::now();
        let scans = 10_000u64;
        let mut o = ScanOptions::at(t(2));
        o.limit = 100;
        for _ in 0..scans {
            let k = key(rng.below(n));
            assert!(!e.scan(&k, b"\xff", &o).await.unwrap().is_empty());
        }
        let el = start.elapsed();
        println!("scan 100: {:.0} scans/s", scans as f64 / el.as_secs_f64());
        println!("final: {:?}", e.stats());
        e.close().await.unwrap();
    });
}

#[test]
fn version_pages_cover_the_span_once_without_splitting_a_key() {
    let dir = TempDir::new("pages");
    let p = dir.path().to_path_buf();
    run(move || async move {
        let e = LsmEngine::open(&p, tiny(false)).await.unwrap();
        // 50 keys with 3 versions each, half of them flushed.
        for ts in [10u64, 20, 30] {
            let mut b = WriteBatch::new();
            for i in 0..50u32 {
                b.put(format!("k{i:02}"), t(ts), vec![b'v'; 10]);
            }
            e.write(b).await.unwrap();
            if ts == 20 {
                e.flush().await.unwrap();
            }
        }
        let all = e
            .scan_versions(b"k", b"l", Timestamp::MIN, Timestamp::MAX)
            .await
            .unwrap();
        assert_eq!(all.len(), 150);
        let mut paged = Vec::new();
        let mut from = b"k".to_vec();
        let mut pages = 0;
        loop {
            let (page, next) = e
                .scan_versions_page(&from, b"l", Timestamp::MIN, Timestamp::MAX, 100)
                .await
                .unwrap();
            pages += 1;
            // Each page ends with a key's oldest version: no key is split.
            assert_eq!(page.last().map(|v| v.ts), Some(t(10)));
            paged.extend(page);
            match next {
                Some(k) => from = k,
                None => break,
            }
        }
        assert!(pages > 5, "{pages} pages");
        assert_eq!(paged, all);
        e.close().await.unwrap();
    });
}
