//! Criterion benchmarks of the per-core raft log: durable appends of batches (one write and
//! one fdatasync each, group commit across ranges) and reads of recent and cold entries.
//!
//! Run: `cargo bench -p chitin-bench --bench raftlog`. The log lives in a fresh directory
//! under the system temp dir (set `CHITIN_BENCH_DIR` to measure another disk); pre-zeroed
//! 64 MiB segments, as in production.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chitin_storage::raftlog::Entry;
use chitin_storage::{RaftLog, RaftLogOptions, RangeId, RangeWrite};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};

struct Bench {
    ex: LocalExecutor,
    log: Option<RaftLog>,
    dir: PathBuf,
    /// Next index per range.
    next: RefCell<Vec<u64>>,
}

impl Bench {
    fn new(name: &str, cache_bytes: usize) -> Bench {
        let base = std::env::var_os("CHITIN_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!(
            "chitin-bench-raftlog-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let ex = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(4 << 20)
            .make()
            .expect("executor");
        let opts = RaftLogOptions {
            cache_bytes,
            ..RaftLogOptions::default()
        };
        let log = ex.run(RaftLog::open(&dir, opts)).expect("open raft log");
        Bench {
            ex,
            log: Some(log),
            dir,
            next: RefCell::new(Vec::new()),
        }
    }

    fn log(&self) -> &RaftLog {
        self.log.as_ref().unwrap()
    }

    /// One batch: one entry of `entry_bytes` for each of `ranges` ranges.
    fn batch(&self, ranges: usize, entry_bytes: usize) -> Vec<RangeWrite> {
        let mut next = self.next.borrow_mut();
        if next.len() < ranges {
            next.resize(ranges, 1);
        }
        (0..ranges)
            .map(|r| {
                let index = next[r];
                next[r] += 1;
                RangeWrite {
                    range: RangeId(r as u64 + 1),
                    entries: vec![Entry {
                        index,
                        term: 1,
                        data: vec![(index % 251) as u8; entry_bytes],
                    }],
                    hard_state: None,
                }
            })
            .collect()
    }

    /// Appends `iters` batches and returns the time they took.
    fn append(&self, iters: u64, ranges: usize, entry_bytes: usize) -> Duration {
        self.ex.run(async {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch = self.batch(ranges, entry_bytes);
                let t = Instant::now();
                self.log().append(&batch).await.expect("append");
                total += t.elapsed();
            }
            total
        })
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            let _ = self.ex.run(log.close());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("raftlog_append");
    g.sample_size(30).measurement_time(Duration::from_secs(6));
    let b = Bench::new("append", 32 << 20);
    // Warm up past the first rotation (the first segment is prepared in the background).
    b.append(64, 1, 128);
    for (ranges, entry_bytes) in [(1, 256), (1, 4096), (16, 256), (16, 4096), (64, 1024)] {
        g.throughput(Throughput::Elements(ranges as u64));
        g.bench_with_input(
            BenchmarkId::new(format!("{ranges}_ranges"), format!("{entry_bytes}B")),
            &(ranges, entry_bytes),
            |bench, &(ranges, entry_bytes)| {
                bench.iter_custom(|iters| b.append(iters, ranges, entry_bytes))
            },
        );
    }
    g.finish();
    let s = b.log().stats();
    eprintln!(
        "raftlog: {} batches, {} writes, {} fdatasyncs (one each), mean write {:.0} µs, mean fdatasync {:.0} µs, {} rotations",
        s.batches,
        s.writes,
        s.fdatasyncs,
        s.write_nanos as f64 / s.writes.max(1) as f64 / 1e3,
        s.fdatasync_nanos as f64 / s.fdatasyncs.max(1) as f64 / 1e3,
        s.rotations,
    );
}

fn read(c: &mut Criterion) {
    let mut g = c.benchmark_group("raftlog_entries");
    g.sample_size(30).measurement_time(Duration::from_secs(4));
    for (name, cache) in [("cached", 64 << 20), ("disk", 0)] {
        let b = Bench::new(name, cache);
        b.append(2000, 8, 512);
        g.throughput(Throughput::Elements(16));
        g.bench_function(BenchmarkId::new("16_entries", name), |bench| {
            let mut lo = 1;
            bench.iter_custom(|iters| {
                b.ex.run(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let es = b
                            .log()
                            .entries(RangeId(3), lo, lo + 16)
                            .await
                            .expect("entries");
                        assert_eq!(es.len(), 16);
                        lo = if lo + 32 > 2000 { 1 } else { lo + 16 };
                    }
                    t.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
