//! Tests of the raft log on real files: each runs on its own glommio executor in a fresh
//! temporary directory (see `testutil`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::testutil::{run_in_dir, Rng};
use super::*;

fn opts(segment_size: u64, cache_bytes: usize) -> RaftLogOptions {
    RaftLogOptions {
        segment_size,
        cache_bytes,
        max_free_segments: 2,
        background_queue: None,
    }
}

fn entry(index: u64, term: u64, data: impl Into<Vec<u8>>) -> Entry {
    Entry {
        index,
        term,
        data: data.into(),
    }
}

fn data_for(range: u64, index: u64, term: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (range * 31 + index * 7 + term * 3 + i as u64) as u8)
        .collect()
}

fn run(range: u64, first: u64, term: u64, n: u64, len: usize) -> RangeWrite {
    RangeWrite {
        range: RangeId(range),
        entries: (first..first + n)
            .map(|i| entry(i, term, data_for(range, i, term, len)))
            .collect(),
        hard_state: None,
    }
}

/// What the log should hold for one range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct OracleRange {
    first: u64,
    /// `(term, data)` of entries `first..`.
    entries: Vec<(u64, Vec<u8>)>,
    hard_state: Option<HardState>,
}

impl OracleRange {
    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }
}

/// The in-memory model the log is checked against.
#[derive(Clone, Debug, Default)]
struct Oracle {
    ranges: BTreeMap<RangeId, OracleRange>,
}

impl Oracle {
    fn append(&mut self, w: &RangeWrite) {
        if w.entries.is_empty() && w.hard_state.is_none() {
            return;
        }
        let first = w.entries.first().map_or(1, |e| e.index);
        let r = self.ranges.entry(w.range).or_insert_with(|| OracleRange {
            first,
            ..Default::default()
        });
        if let Some(e0) = w.entries.first() {
            if r.entries.is_empty() {
                r.first = e0.index;
            } else {
                r.entries.truncate((e0.index - r.first) as usize);
            }
            r.entries
                .extend(w.entries.iter().map(|e| (e.term, e.data.clone())));
        }
        if w.hard_state.is_some() {
            r.hard_state = w.hard_state;
        }
    }

    fn truncate(&mut self, range: RangeId, below: u64) {
        if let Some(r) = self.ranges.get_mut(&range) {
            if below > r.first {
                let n = ((below - r.first) as usize).min(r.entries.len());
                r.entries.drain(..n);
                r.first = below;
            }
        }
    }
}

async fn check(log: &RaftLog, oracle: &Oracle) {
    let ranges: Vec<RangeId> = oracle.ranges.keys().copied().collect();
    assert_eq!(log.ranges(), ranges, "ranges");
    for (&range, r) in &oracle.ranges {
        assert_eq!(log.first_index(range), Some(r.first), "{range} first index");
        assert_eq!(log.last_index(range), Some(r.last()), "{range} last index");
        assert_eq!(log.hard_state(range), r.hard_state, "{range} hard state");
        let got = log.entries(range, r.first, r.last() + 1).await.unwrap();
        assert_eq!(got.len(), r.entries.len(), "{range} entry count");
        for (i, (e, (term, data))) in got.iter().zip(&r.entries).enumerate() {
            let index = r.first + i as u64;
            assert_eq!((e.index, e.term), (index, *term), "{range} entry {index}");
            assert!(e.data == *data, "{range} entry {index} data differs");
            assert_eq!(log.term(range, index).unwrap(), *term);
        }
        if !r.entries.is_empty() {
            assert!(log.entries(range, r.first - 1, r.first + 1).await.is_err() || r.first == 1);
            assert!(log.entries(range, r.first, r.last() + 2).await.is_err());
        }
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(segment::parse_segment_name)
                .is_some()
        })
        .collect();
    v.sort();
    v
}

/// Location of the record holding entry `index` of `range`.
fn loc_of(log: &RaftLog, range: u64, index: u64) -> Location {
    let st = log.state.borrow();
    let r = st.index.get(RangeId(range)).unwrap();
    r.entries[(index - r.first_index) as usize].loc
}

fn patch_file(path: &Path, offset: u64, f: impl FnOnce(&mut [u8])) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes[offset as usize..]);
    std::fs::write(path, &bytes).unwrap();
}

#[test]
fn append_and_read_back_many_ranges_interleaved() {
    for cache in [32 << 20, 0] {
        run_in_dir("raftlog-interleaved", move |dir| async move {
            let log = RaftLog::open(&dir, opts(256 << 10, cache)).await.unwrap();
            let mut oracle = Oracle::default();
            let mut next: BTreeMap<u64, u64> = BTreeMap::new();
            let mut rng = Rng::new(7);
            for round in 0..60u64 {
                let mut batch = Vec::new();
                for range in 1..=12u64 {
                    if !rng.chance(60) {
                        continue;
                    }
                    let first = *next.entry(range).or_insert(range * 10);
                    let n = rng.below(4);
                    let mut w = run(range, first, 1 + round / 20, n, rng.below(700) as usize);
                    if rng.chance(30) {
                        w.hard_state = Some(HardState {
                            term: 1 + round / 20,
                            vote: range,
                            commit: first,
                        });
                    }
                    next.insert(range, first + n);
                    oracle.append(&w);
                    batch.push(w);
                }
                log.append(&batch).await.unwrap();
            }
            check(&log, &oracle).await;
            let stats = log.stats();
            if cache == 0 {
                assert_eq!(stats.cache_hits, 0);
                assert!(stats.cache_misses > 0);
            } else {
                assert_eq!(stats.cache_misses, 0);
            }
            log.close().await.unwrap();
            let log = RaftLog::open(&dir, opts(256 << 10, cache)).await.unwrap();
            check(&log, &oracle).await;
            log.close().await.unwrap();
        });
    }
}

/// Raft §5.3: when a follower's entries conflict with the leader's, the leader's replace
/// them from the first conflicting index on.
#[test]
fn overlapping_append_replaces_the_suffix() {
    run_in_dir("raftlog-overlap", |dir| async move {
        let log = RaftLog::open(&dir, opts(1 << 20, 0)).await.unwrap();
        log.append(&[run(1, 1, 1, 10, 50), run(2, 1, 1, 3, 50)])
            .await
            .unwrap();
        log.append(&[run(1, 6, 2, 3, 60)]).await.unwrap();
        let check_r1 = |es: Vec<Entry>| {
            assert_eq!(es.len(), 8);
            for e in &es {
                let term = if e.index < 6 { 1 } else { 2 };
                assert_eq!(e.term, term, "entry {}", e.index);
                let len = if term == 1 { 50 } else { 60 };
                assert_eq!(e.data, data_for(1, e.index, term, len));
            }
        };
        assert_eq!(log.last_index(RangeId(1)), Some(8));
        check_r1(log.entries(RangeId(1), 1, 9).await.unwrap());
        assert!(log.entries(RangeId(1), 1, 10).await.is_err());
        // A size limit stops before the entry that would cross it, but returns at least one.
        let sizes = |es: Vec<Entry>| es.iter().map(|e| e.data.len()).collect::<Vec<_>>();
        let r1 = RangeId(1);
        assert_eq!(
            sizes(log.entries_max_size(r1, 1, 9, 0).await.unwrap()),
            vec![50]
        );
        assert_eq!(
            sizes(log.entries_max_size(r1, 4, 9, 170).await.unwrap()),
            vec![50, 50, 60]
        );
        assert_eq!(
            sizes(log.entries_max_size(r1, 4, 9, 1 << 20).await.unwrap()),
            vec![50, 50, 60, 60, 60]
        );
        // Two runs for one range in one batch apply in order.
        log.append(&[run(2, 3, 3, 2, 10), run(2, 4, 4, 1, 10)])
            .await
            .unwrap();
        let terms: Vec<u64> = log
            .entries(RangeId(2), 1, 5)
            .await
            .unwrap()
            .iter()
            .map(|e| e.term)
            .collect();
        assert_eq!(terms, vec![1, 1, 3, 4]);
        // A gap or a rewrite below the first index is refused, and nothing is written.
        let before = log.stats().fdatasyncs;
        assert!(matches!(
            log.append(&[run(1, 10, 2, 1, 1)]).await,
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(log.stats().fdatasyncs, before);
        log.close().await.unwrap();
        let log = RaftLog::open(&dir, opts(1 << 20, 0)).await.unwrap();
        assert_eq!(log.last_index(RangeId(1)), Some(8));
        check_r1(log.entries(RangeId(1), 1, 9).await.unwrap());
        assert_eq!(log.last_index(RangeId(2)), Some(4));
        assert_eq!(log.term(RangeId(2), 4).unwrap(), 4);
        log.close().await.unwrap();
    });
}

/// Nothing reachable from a caller panics: absurd arguments are errors.
#[test]
fn absurd_arguments_are_errors_not_panics() {
    run_in_dir("raftlog-absurd", |dir| async move {
        let log = RaftLog::open(&dir, opts(1 << 20, 1 << 20)).await.unwrap();
        log.append(&[run(1, 1, 1, 3, 10)]).await.unwrap();
        let r = RangeId(1);
        assert!(log.entries(r, 0, u64::MAX).await.is_err());
        assert!(log.entries(r, 2, u64::MAX).await.is_err());
        assert!(log.entries(RangeId(9), 1, 2).await.is_err());
        assert!(log.entries(r, 3, 1).await.unwrap().is_empty());
        assert!(log.term(r, u64::MAX).is_err());
        assert!(log.term(r, 0).is_err());
        for bad in [0, u64::MAX, 1 << 62] {
            assert!(matches!(
                log.append(&[RangeWrite {
                    range: RangeId(2),
                    entries: vec![entry(bad, 1, b"x".to_vec())],
                    hard_state: None,
                }])
                .await,
                Err(Error::InvalidArgument(_))
            ));
        }
        log.truncate(r, u64::MAX).await.unwrap();
        assert_eq!(log.last_index(r), Some(log.first_index(r).unwrap() - 1));
        assert!(log.term(r, u64::MAX).is_err());
        assert!(log.entries(r, 1, 2).await.is_err());
        log.close().await.unwrap();
        let log = RaftLog::open(&dir, opts(1 << 20, 1 << 20)).await.unwrap();
        assert_eq!(log.ranges(), vec![r]);
        log.close().await.unwrap();
    });
}

#[test]
fn truncation_reclaims_and_recycles_segments() {
    run_in_dir("raftlog-reclaim", |dir| async move {
        let seg_size = 64 << 10;
        let log = RaftLog::open(&dir, opts(seg_size, 1 << 20)).await.unwrap();
        let mut oracle = Oracle::default();
        // Range 3 holds a hard state and a truncation point only: it must survive its
        // segments going away (checkpoints carry it forward).
        let hs3 = HardState {
            term: 4,
            vote: 3,
            commit: 9,
        };
        let mut w3 = run(3, 1, 4, 9, 10);
        w3.hard_state = Some(hs3);
        log.append(std::slice::from_ref(&w3)).await.unwrap();
        oracle.append(&w3);
        log.truncate(RangeId(3), 10).await.unwrap();
        oracle.truncate(RangeId(3), 10);
        for i in 0..200u64 {
            let batch = [run(1, 1 + i * 2, 1, 2, 2000), run(2, 1 + i, 1, 1, 1500)];
            for w in &batch {
                oracle.append(w);
            }
            log.append(&batch).await.unwrap();
            if i >= 5 {
                log.truncate(RangeId(1), 1 + (i - 5) * 2).await.unwrap();
                oracle.truncate(RangeId(1), 1 + (i - 5) * 2);
                log.truncate(RangeId(2), 1 + (i - 5)).await.unwrap();
                oracle.truncate(RangeId(2), 1 + (i - 5));
            }
            // Live segments stay few; the directory never fills up.
            assert!(log.stats().live_segments <= 4, "{:?}", log.stats());
            assert!(std::fs::read_dir(&dir).unwrap().count() <= 9);
        }
        let stats = log.stats();
        assert!(stats.rotations >= 15, "{stats:?}");
        assert!(stats.segments_freed > 10, "{stats:?}");
        // With a pool of 2 and one preparation at a time, recycling keeps up: hardly any
        // segment needs deleting.
        assert!(stats.segments_deleted <= 2, "{stats:?}");
        assert_eq!(
            log.term(RangeId(3), 9).unwrap(),
            4,
            "term below the first index"
        );
        check(&log, &oracle).await;
        log.close().await.unwrap();
        // Recycled segments still hold stale records of their old lives: none come back.
        let log = RaftLog::open(&dir, opts(seg_size, 1 << 20)).await.unwrap();
        assert_eq!(log.recovery_report().torn_tail, None);
        assert!(log.recovery_report().segments_replayed <= 4);
        check(&log, &oracle).await;
        assert_eq!(log.hard_state(RangeId(3)), Some(hs3));
        assert_eq!(log.first_index(RangeId(3)), Some(10));
        assert_eq!(log.term(RangeId(3), 9).unwrap(), 4);
        // Removing a range is durable at once.
        log.remove_range(RangeId(2)).await.unwrap();
        oracle.ranges.remove(&RangeId(2));
        drop(log);
        let log = RaftLog::open(&dir, opts(seg_size, 1 << 20)).await.unwrap();
        check(&log, &oracle).await;
        log.close().await.unwrap();
    });
}

/// Reclaiming renames segments into the recycle pool without syncing the directory, so a
/// crash may bring them back under their old names. Recovery must still return exactly
/// the log (the reappearing prefix replays into entries that later records truncate).
#[test]
fn reclaimed_segments_reappearing_after_a_crash_change_nothing() {
    run_in_dir("raftlog-reappear", |dir| async move {
        let seg_size = 48 << 10;
        let log = RaftLog::open(&dir, opts(seg_size, 0)).await.unwrap();
        let mut oracle = Oracle::default();
        for i in 0..120u64 {
            let batch = [run(1, 1 + i, 1, 1, 1500), run(2, 1 + i, 1, 1, 700)];
            for w in &batch {
                oracle.append(w);
            }
            log.append(&batch).await.unwrap();
            if i % 10 == 9 {
                log.truncate(RangeId(1), i - 3).await.unwrap();
                oracle.truncate(RangeId(1), i - 3);
                log.truncate(RangeId(2), i - 5).await.unwrap();
                oracle.truncate(RangeId(2), i - 5);
            }
        }
        log.remove_range(RangeId(2)).await.unwrap();
        oracle.ranges.remove(&RangeId(2));
        assert!(log.stats().segments_freed > 0);
        let live = log.stats().live_segments as usize;
        drop(log);
        // Undo every reclaim rename that was not reused yet.
        let mut restored = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            if let Some(old) = name.strip_prefix("free-") {
                std::fs::rename(&p, dir.join(old)).unwrap();
                restored += 1;
            }
        }
        assert!(restored > 0);
        let log = RaftLog::open(&dir, opts(seg_size, 0)).await.unwrap();
        // The restored segment joined the log again (it is the live one's predecessor).
        assert!(log.recovery_report().segments_replayed > live);
        check(&log, &oracle).await;
        log.close().await.unwrap();
        let log = RaftLog::open(&dir, opts(seg_size, 0)).await.unwrap();
        check(&log, &oracle).await;
        log.close().await.unwrap();
    });
}

/// An append future dropped in the middle of its write leaves the tail unknown: the log
/// refuses further writes, and reopening recovers either with or without that batch.
#[test]
fn cancelled_append_fails_the_log_until_reopened() {
    run_in_dir("raftlog-cancel", |dir| async move {
        let log = std::rc::Rc::new(RaftLog::open(&dir, opts(1 << 20, 0)).await.unwrap());
        let mut oracle = Oracle::default();
        let w = run(1, 1, 1, 5, 100);
        oracle.append(&w);
        log.append(&[w]).await.unwrap();
        let in_flight = run(1, 6, 1, 50, 4000);
        let l2 = log.clone();
        let batch = in_flight.clone();
        let task = glommio::spawn_local(async move { l2.append(&[batch]).await });
        // Let the task start its write, then drop it.
        futures_lite::future::yield_now().await;
        assert!(
            task.cancel().await.is_none(),
            "the append should still be in flight"
        );
        let err = log.append(&[run(2, 1, 1, 1, 10)]).await.unwrap_err();
        assert!(err.to_string().contains("cancelled"), "{err}");
        assert!(log.truncate(RangeId(1), 2).await.is_err());
        drop(log);
        let log = RaftLog::open(&dir, opts(1 << 20, 0)).await.unwrap();
        let got = dump(&log).await;
        let mut with = oracle.clone();
        with.append(&in_flight);
        assert!(got == oracle.ranges || got == with.ranges);
        log.append(&[run(2, 1, 1, 1, 10)]).await.unwrap();
        log.close().await.unwrap();
    });
}

/// A batch bigger than a segment goes into one oversized segment; the log goes on, and
/// the oversized file is later reclaimed and recycled like any other.
#[test]
fn batch_larger_than_a_segment() {
    run_in_dir("raftlog-oversize", |dir| async move {
        let seg_size = 64 << 10;
        let log = RaftLog::open(&dir, opts(seg_size, 0)).await.unwrap();
        let mut oracle = Oracle::default();
        let small = run(1, 1, 1, 3, 100);
        let big = run(2, 1, 1, 50, 4096); // ~200 KiB
        for w in [&small, &big] {
            oracle.append(w);
        }
        log.append(&[small, big]).await.unwrap();
        for i in 0..40u64 {
            let w = run(1, 4 + i, 1, 1, 3000);
            oracle.append(&w);
            log.append(&[w]).await.unwrap();
        }
        check(&log, &oracle).await;
        log.close().await.unwrap();
        let log = RaftLog::open(&dir, opts(seg_size, 0)).await.unwrap();
        check(&log, &oracle).await;
        // Compact both ranges: the oversized segment goes to the recycle pool and is
        // reused.
        log.truncate(RangeId(2), 51).await.unwrap();
        oracle.truncate(RangeId(2), 51);
        log.truncate(RangeId(1), 40).await.unwrap();
        oracle.truncate(RangeId(1), 40);
        for i in 0..60u64 {
            let w = run(1, 44 + i, 2, 1, 3000);
            oracle.append(&w);
            log.append(&[w]).await.unwrap();
            log.truncate(RangeId(1), 40 + i).await.unwrap();
            oracle.truncate(RangeId(1), 40 + i);
        }
        assert!(log.stats().segments_freed >= 2, "{:?}", log.stats());
        check(&log, &oracle).await;
        log.close().await.unwrap();
        let log = RaftLog::open(&dir, opts(seg_size, 0)).await.unwrap();
        check(&log, &oracle).await;
        log.close().await.unwrap();
    });
}

#[test]
fn inspect_describes_every_record() {
    run_in_dir("raftlog-inspect", |dir| async move {
        let log = RaftLog::open(&dir, opts(1 << 20, 0)).await.unwrap();
        let mut w = run(7, 10, 3, 4, 100);
        w.hard_state = Some(HardState {
            term: 3,
            vote: 2,
            commit: 12,
        });
        log.append(&[w]).await.unwrap();
        log.truncate(RangeId(7), 12).await.unwrap();
        log.remove_range(RangeId(7)).await.unwrap();
        log.close().await.unwrap();
        let segs = inspect(&dir).await.unwrap();
        let live: Vec<&SegmentInfo> = segs.iter().filter(|s| !s.records.is_empty()).collect();
        assert_eq!(live.len(), 1, "{segs:?}");
        let lines: Vec<String> = live[0]
            .records
            .iter()
            .map(|r| format!("{} {}", r.range, r.summary))
            .collect();
        assert_eq!(
            lines,
            vec![
                "r0 segment start: follows segment 0, which ends at 0",
                "r7 write 10..=13 (4 entries, 400 B, terms 3..=3) hs term=3 vote=2 commit=12",
                "r7 truncate below 12 (term of 11: 3)",
                "r7 range removed",
            ]
        );
        assert_eq!(
            live[0].end_reason,
            "record header has the wrong segment sequence"
        );
    });
}

#[test]
fn restart_recovers_everything_appended() {
    run_in_dir("raftlog-restart", |dir| async move {
        let mut oracle = Oracle::default();
        for restart in 0..5u64 {
            let log = RaftLog::open(&dir, opts(128 << 10, 1 << 16)).await.unwrap();
            check(&log, &oracle).await;
            for i in 0..30u64 {
                let batch: Vec<RangeWrite> = (1..=5u64)
                    .map(|r| {
                        let first = oracle.ranges.get(&RangeId(r)).map_or(1, |o| o.last() + 1);
                        let mut w = run(r, first, restart + 1, 1 + (i % 3), 300 + 40 * r as usize);
                        w.hard_state = Some(HardState {
                            term: restart + 1,
                            vote: r,
                            commit: first,
                        });
                        w
                    })
                    .collect();
                for w in &batch {
                    oracle.append(w);
                }
                log.append(&batch).await.unwrap();
            }
            // Half the restarts are clean, half drop the log without closing (a crash
            // after the last append returned).
            if restart % 2 == 0 {
                log.close().await.unwrap();
            } else {
                drop(log);
            }
        }
        let log = RaftLog::open(&dir, opts(128 << 10, 1 << 16)).await.unwrap();
        check(&log, &oracle).await;
        log.close().await.unwrap();
    });
}

/// Appends `n` single-entry batches to range 1 and returns the oracle.
async fn fill(log: &RaftLog, n: u64) -> Oracle {
    let mut oracle = Oracle::default();
    for i in 1..=n {
        let w = run(1, i, 1, 1, 100 + (i as usize * 37) % 900);
        oracle.append(&w);
        log.append(&[w]).await.unwrap();
    }
    oracle
}

fn cut_oracle(oracle: &Oracle, last: u64) -> Oracle {
    let mut o = oracle.clone();
    let r = o.ranges.get_mut(&RangeId(1)).unwrap();
    r.entries.truncate((last + 1 - r.first) as usize);
    o
}

#[test]
fn torn_tail_is_cut_at_the_last_good_record() {
    // Three ways a tail tears: the file ends mid-record, the last blocks are zeros, the
    // last record's bytes are half new, half garbage.
    for how in ["short-file", "zeroed", "garbage"] {
        run_in_dir("raftlog-torn", move |dir| async move {
            let log = RaftLog::open(&dir, opts(1 << 20, 0)).await.unwrap();
            let oracle = fill(&log, 20).await;
            let loc = loc_of(&log, 1, 17);
            let path = dir.join(segment::segment_name(loc.seq));
            log.close().await.unwrap();
            match how {
                "short-file" => {
                    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                    f.set_len(loc.offset + 20).unwrap();
                }
                "zeroed" => {
                    let len = std::fs::metadata(&path).unwrap().len();
                    patch_file(&path, loc.offset, |b| {
                        b[..(len - loc.offset) as usize].fill(0)
                    });
                }
                _ => patch_file(&path, loc.offset + 40, |b| b[..30].fill(0xAB)),
            }
            let log = RaftLog::open(&dir, opts(1 << 20, 0)).await.unwrap();
            let expect = cut_oracle(&oracle, 16);
            check(&log, &expect).await;
            match how {
                "zeroed" => assert_eq!(log.recovery_report().torn_tail, None),
                _ => assert_eq!(
                    log.recovery_report()
                        .torn_tail
                        .as_ref()
                        .map(|t| (&t.0, t.1)),
                    Some((&path, loc.offset))
                ),
            }
            // The log goes on after the cut, and the cut stays put across restarts.
            let mut expect = expect;
            for i in 17..=19 {
                let w = run(1, i, 2, 1, 64);
                expect.append(&w);
                log.append(&[w]).await.unwrap();
            }
            check(&log, &expect).await;
            log.close().await.unwrap();
            let log = RaftLog::open(&dir, opts(1 << 20, 0)).await.unwrap();
            check(&log, &expect).await;
            assert_eq!(log.recovery_report().torn_tail, None);
            log.close().await.unwrap();
        });
    }
}

#[test]
fn flipped_byte_in_the_tail_segment_cuts_there() {
    run_in_dir("raftlog-flip-tail", |dir| async move {
        let log = RaftLog::open(&dir, opts(1 << 20, 1 << 20)).await.unwrap();
        let oracle = fill(&log, 30).await;
        let loc = loc_of(&log, 1, 12);
        let path = dir.join(segment::segment_name(loc.seq));
        log.close().await.unwrap();
        // A bit of entry 12's data flips: entries 12.. are lost, never returned.
        patch_file(&path, loc.offset + loc.len as u64 - 3, |b| b[0] ^= 0x01);
        let log = RaftLog::open(&dir, opts(1 << 20, 1 << 20)).await.unwrap();
        let report = log.recovery_report().clone();
        assert_eq!(report.torn_tail.as_ref().map(|t| t.1), Some(loc.offset));
        assert!(report.torn_tail.unwrap().2.contains("checksum"));
        assert_eq!(log.last_index(RangeId(1)), Some(11));
        assert!(matches!(
            log.entries(RangeId(1), 11, 13).await,
            Err(Error::Unavailable(_))
        ));
        check(&log, &cut_oracle(&oracle, 11)).await;
        log.close().await.unwrap();
    });
}

#[test]
fn corruption_in_a_sealed_segment_is_an_error_naming_file_and_offset() {
    run_in_dir("raftlog-flip-sealed", |dir| async move {
        let log = RaftLog::open(&dir, opts(64 << 10, 0)).await.unwrap();
        fill(&log, 300).await;
        assert!(log.stats().rotations >= 3);
        let loc = loc_of(&log, 1, 5);
        let path = dir.join(segment::segment_name(loc.seq));
        assert_ne!(Some(&path), segment_files(&dir).last());
        log.close().await.unwrap();
        patch_file(&path, loc.offset + HEADER_LEN as u64 + 2, |b| b[0] ^= 0x40);
        match RaftLog::open(&dir, opts(64 << 10, 0)).await {
            Err(Error::Corruption {
                path: p, offset, ..
            }) => assert_eq!((p, offset), (path, loc.offset)),
            Err(e) => panic!("expected corruption, got {e}"),
            Ok(_) => panic!("expected corruption, got an open log"),
        }
    });
}

/// Group commit (DESIGN §3): one write and one fdatasync per batch, however many ranges
/// it spans, including batches that rotate to a new segment.
#[test]
fn one_write_and_one_fdatasync_per_batch() {
    run_in_dir("raftlog-fsyncs", |dir| async move {
        // Segments are prepared in a background task queue of their own.
        let background = glommio::executor().create_task_queue(
            glommio::Shares::default(),
            glommio::Latency::NotImportant,
            "raftlog-background",
        );
        let options = RaftLogOptions {
            background_queue: Some(background),
            ..opts(64 << 10, 1 << 20)
        };
        let log = RaftLog::open(&dir, options).await.unwrap();
        let mut next = [1u64; 33];
        for b in 0..100u64 {
            let batch: Vec<RangeWrite> = (1..=32u64)
                .map(|r| {
                    let n = 1 + (b + r) % 3;
                    let w = run(r, next[r as usize], 1, n, 60);
                    next[r as usize] += n;
                    w
                })
                .collect();
            log.append(&batch).await.unwrap();
        }
        // Truncations ride with the next append: no sync of their own.
        log.truncate(RangeId(1), 5).await.unwrap();
        log.append(&[run(1, next[1], 1, 1, 60)]).await.unwrap();
        // Empty batches cost nothing.
        log.append(&[]).await.unwrap();
        log.sync().await.unwrap();
        let s = log.stats();
        assert!(s.rotations > 5, "{s:?}");
        assert_eq!(
            (s.batches, s.writes, s.fdatasyncs),
            (101, 101, 101),
            "{s:?}"
        );
        log.close().await.unwrap();
    });
}

/// Random appends (with conflicts), hard states, truncations, removals and restarts
/// against the oracle. Crash-like restarts lose the truncation markers not yet carried by
/// a write: each range must then come back as its durable state truncated somewhere
/// between its durable and its requested first index.
#[test]
fn model_random_operations_and_restarts() {
    for seed in 1..=4u64 {
        run_in_dir("raftlog-model", move |dir| async move {
            let mut rng = Rng::new(seed);
            let options = || {
                opts(
                    [48 << 10, 96 << 10, 1 << 20][(seed % 3) as usize],
                    [0, 4 << 10, 1 << 20][(seed % 3) as usize],
                )
            };
            let mut log = RaftLog::open(&dir, options()).await.unwrap();
            let mut oracle = Oracle::default();
            let mut term = 1;
            // The state as of the last durable write: truncations join it only when a write
            // carries their markers.
            let mut durable = Oracle::default();
            let mut pending: Vec<(RangeId, u64)> = Vec::new();
            for step in 0..1500u64 {
                match rng.below(100) {
                    0..=59 => {
                        let mut batch = Vec::new();
                        for _ in 0..1 + rng.below(4) {
                            let range = 1 + rng.below(8);
                            let (first, start) = match oracle.ranges.get(&RangeId(range)) {
                                Some(r) if !r.entries.is_empty() => {
                                    let back = rng.below(4).min(r.last() + 1 - r.first);
                                    (r.first, r.last() + 1 - back)
                                }
                                Some(r) => (r.first, r.first),
                                None => (1, 1 + rng.below(3)),
                            };
                            let _ = first;
                            if rng.chance(10) {
                                term += 1;
                            }
                            let len = if rng.chance(5) { 6000 } else { rng.below(400) } as usize;
                            let mut w = run(range, start, term, rng.below(5), len);
                            if rng.chance(40) {
                                w.hard_state = Some(HardState {
                                    term,
                                    vote: rng.below(4),
                                    commit: start,
                                });
                            }
                            if batch.iter().any(|b: &RangeWrite| b.range == w.range) {
                                continue;
                            }
                            batch.push(w);
                        }
                        log.append(&batch).await.unwrap();
                        let writes = batch
                            .iter()
                            .any(|w| !w.entries.is_empty() || w.hard_state.is_some());
                        if writes || !pending.is_empty() {
                            for (r, below) in pending.drain(..) {
                                durable.truncate(r, below);
                            }
                        }
                        for w in &batch {
                            oracle.append(w);
                            durable.append(w);
                        }
                    }
                    60..=74 => {
                        let range = RangeId(1 + rng.below(8));
                        if let Some(r) = oracle.ranges.get(&range) {
                            let below = r.first + rng.below(r.entries.len() as u64 + 2);
                            log.truncate(range, below).await.unwrap();
                            oracle.truncate(range, below);
                            pending.push((range, below));
                        }
                    }
                    75..=77 => {
                        let range = RangeId(1 + rng.below(8));
                        log.remove_range(range).await.unwrap();
                        if oracle.ranges.remove(&range).is_some() {
                            for (r, below) in pending.drain(..) {
                                durable.truncate(r, below);
                            }
                            durable.ranges.remove(&range);
                        }
                    }
                    78..=87 => {
                        let r = RangeId(1 + rng.below(8));
                        if let Some(o) = oracle.ranges.get(&r) {
                            if !o.entries.is_empty() {
                                let lo = o.first + rng.below(o.entries.len() as u64);
                                let hi = lo + 1 + rng.below(o.last() + 1 - lo);
                                let max_size = if rng.chance(50) {
                                    u64::MAX
                                } else {
                                    rng.below(3000)
                                };
                                let got = log.entries_max_size(r, lo, hi, max_size).await.unwrap();
                                let mut want =
                                    &o.entries[(lo - o.first) as usize..(hi - o.first) as usize];
                                let mut size = 0;
                                for (i, (_, data)) in want.iter().enumerate() {
                                    size += data.len() as u64;
                                    if size > max_size && i > 0 {
                                        want = &want[..i];
                                        break;
                                    }
                                }
                                assert_eq!(got.len(), want.len());
                                for (g, w) in got.iter().zip(want) {
                                    assert_eq!(
                                        (g.term, &g.data),
                                        (w.0, &w.1),
                                        "seed {seed} step {step}"
                                    );
                                }
                            }
                        }
                    }
                    88..=93 => {
                        check(&log, &oracle).await;
                    }
                    _ => {
                        // Restart: clean, or a crash that loses queued truncation markers.
                        if rng.chance(50) {
                            log.close().await.unwrap();
                            log = RaftLog::open(&dir, options()).await.unwrap();
                            check(&log, &oracle).await;
                            durable = oracle.clone();
                        } else {
                            drop(log);
                            log = RaftLog::open(&dir, options()).await.unwrap();
                            // Each range is the durable state truncated at some point
                            // between its durable and its requested first index (markers
                            // lost, but segments may have been reclaimed meanwhile).
                            let got = dump(&log).await;
                            let keys = |o: &BTreeMap<RangeId, OracleRange>| {
                                o.keys().copied().collect::<Vec<_>>()
                            };
                            assert_eq!(
                                keys(&got),
                                keys(&durable.ranges),
                                "seed {seed} step {step}"
                            );
                            for (r, g) in &got {
                                let d = &durable.ranges[r];
                                let wanted_first = oracle.ranges[r].first;
                                assert!(
                                    d.first <= g.first && g.first <= wanted_first,
                                    "seed {seed} step {step} {r}: first {} not in [{}, {wanted_first}]",
                                    g.first,
                                    d.first
                                );
                                let mut expect = durable.clone();
                                expect.truncate(*r, g.first);
                                assert_eq!(&expect.ranges[r], g, "seed {seed} step {step} {r}");
                            }
                            oracle = Oracle { ranges: got };
                            durable = oracle.clone();
                            pending.clear();
                        }
                    }
                }
            }
            check(&log, &oracle).await;
            log.close().await.unwrap();
            let log = RaftLog::open(&dir, options()).await.unwrap();
            check(&log, &oracle).await;
            log.close().await.unwrap();
        });
    }
}

/// Everything the log returns, in the oracle's shape.
async fn dump(log: &RaftLog) -> BTreeMap<RangeId, OracleRange> {
    let mut out = BTreeMap::new();
    for range in log.ranges() {
        let first = log.first_index(range).unwrap();
        let last = log.last_index(range).unwrap();
        let entries = log.entries(range, first, last + 1).await.unwrap();
        out.insert(
            range,
            OracleRange {
                first,
                entries: entries.into_iter().map(|e| (e.term, e.data)).collect(),
                hard_state: log.hard_state(range),
            },
        );
    }
    out
}

fn read_segments(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    segment_files(dir)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

/// A crash between a batch's write and its fdatasync leaves any mix of old and new
/// 512-byte sectors in the blocks it wrote. Recovery must then return the state before
/// the batch plus a prefix of the batch's records (each range's record is atomic: its
/// entries and hard state together or not at all), and the log must go on from there.
#[test]
fn torn_batch_write_recovers_a_prefix_of_the_batch() {
    run_in_dir("raftlog-torn-batch", |dir| async move {
        let mut rng = Rng::new(99);
        let o = || opts(48 << 10, 1 << 16);
        let mut log = RaftLog::open(&dir, o()).await.unwrap();
        let mut oracle = Oracle::default();
        let mut prefixes_seen = std::collections::BTreeSet::new();
        for trial in 0..40u64 {
            for _ in 0..rng.below(4) {
                let r = 1 + rng.below(5);
                let first = oracle.ranges.get(&RangeId(r)).map_or(1, |o| o.last() + 1);
                let w = run(r, first, 1, 1 + rng.below(3), rng.below(3000) as usize);
                oracle.append(&w);
                log.append(&[w]).await.unwrap();
            }
            let before = read_segments(&dir);
            let chosen: Vec<u64> = (1..=5u64).filter(|_| rng.chance(70)).collect();
            let batch: Vec<RangeWrite> = chosen
                .into_iter()
                .map(|r| {
                    let first = oracle.ranges.get(&RangeId(r)).map_or(1, |o| o.last() + 1);
                    let mut w = run(r, first, 2, 1 + rng.below(3), rng.below(2500) as usize);
                    w.hard_state = Some(HardState {
                        term: 2,
                        vote: r,
                        commit: first + trial,
                    });
                    w
                })
                .collect();
            log.append(&batch).await.unwrap();
            drop(log); // crash
                       // Tear the batch's write: each sector that changed is old or new at random.
            for (path, old) in &before {
                let Ok(mut new) = std::fs::read(path) else {
                    continue;
                };
                let mut changed = false;
                for (i, sector) in new.chunks_mut(512).enumerate() {
                    let at = i * 512;
                    let old_sector = old.get(at..at + sector.len());
                    if old_sector.is_some_and(|o| o != sector) && rng.chance(50) {
                        sector.copy_from_slice(old_sector.unwrap());
                        changed = true;
                    }
                }
                if changed {
                    std::fs::write(path, &new).unwrap();
                }
            }
            log = RaftLog::open(&dir, o()).await.unwrap();
            let got = dump(&log).await;
            let mut candidate = oracle.clone();
            let mut matched = (candidate.ranges == got).then_some(0);
            for (j, w) in batch.iter().enumerate() {
                candidate.append(w);
                if matched.is_none() && candidate.ranges == got {
                    matched = Some(j + 1);
                }
            }
            let Some(j) = matched else {
                panic!("trial {trial}: recovered state is not the state before the batch plus a prefix of it");
            };
            prefixes_seen.insert((j, batch.len()));
            for w in &batch[..j] {
                oracle.append(w);
            }
            check(&log, &oracle).await;
        }
        // Both outcomes happened: batches lost entirely, and batches kept whole.
        assert!(
            prefixes_seen.iter().any(|(j, _)| *j == 0),
            "{prefixes_seen:?}"
        );
        assert!(
            prefixes_seen.iter().any(|(j, n)| j == n && *n > 0),
            "{prefixes_seen:?}"
        );
        log.close().await.unwrap();
        let log = RaftLog::open(&dir, o()).await.unwrap();
        check(&log, &oracle).await;
        log.close().await.unwrap();
    });
}

/// Not a test: prints append latencies on this machine's disk. Run with
/// `cargo test -p chitin-storage --release raftlog::tests::measure -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_append_latency() {
    run_in_dir("raftlog-measure", |dir| async move {
        let log = RaftLog::open(&dir, RaftLogOptions::default())
            .await
            .unwrap();
        for (ranges, entry_bytes) in [
            (1u64, 256usize),
            (1, 4096),
            (16, 256),
            (16, 4096),
            (64, 1024),
        ] {
            let mut next = vec![1u64; ranges as usize + 1];
            let mut lat = Vec::new();
            let before = log.stats();
            let start = std::time::Instant::now();
            let rounds = 2000u64;
            for _ in 0..rounds {
                let batch: Vec<RangeWrite> = (1..=ranges)
                    .map(|r| {
                        let w = run(
                            r + 1000 * entry_bytes as u64,
                            next[r as usize],
                            1,
                            1,
                            entry_bytes,
                        );
                        next[r as usize] += 1;
                        w
                    })
                    .collect();
                let t = std::time::Instant::now();
                log.append(&batch).await.unwrap();
                lat.push(t.elapsed());
            }
            let total = start.elapsed();
            lat.sort();
            let s = log.stats();
            eprintln!(
                "{ranges:>3} ranges x {entry_bytes:>4} B: p50 {:>6.1?} p99 {:>6.1?} max {:>6.1?} | {:>6.0} batches/s {:>7.0} entries/s | fdatasyncs {} rotations {} (waited {:.1} ms) | mean write {:.0} us, fdatasync {:.0} us",
                lat[lat.len() / 2],
                lat[lat.len() * 99 / 100],
                lat[lat.len() - 1],
                rounds as f64 / total.as_secs_f64(),
                (rounds * ranges) as f64 / total.as_secs_f64(),
                s.fdatasyncs - before.fdatasyncs,
                s.rotations - before.rotations,
                (s.rotation_wait_nanos - before.rotation_wait_nanos) as f64 / 1e6,
                (s.write_nanos - before.write_nanos) as f64 / rounds as f64 / 1e3,
                (s.fdatasync_nanos - before.fdatasync_nanos) as f64 / rounds as f64 / 1e3,
            );
        }
        let s = log.stats();
        eprintln!(
            "rotations {}, mean wait for the prepared segment {:.0} us (the first one waits for its zero-fill)",
            s.rotations,
            s.rotation_wait_nanos as f64 / s.rotations.max(1) as f64 / 1e3
        );
        log.close().await.unwrap();
    });
}
