//! Criterion benchmarks of the LSM engine's read and write paths, below the raft log:
//!
//! - `memtable_insert`: one internal key + 100-byte value into the `BTreeMap` memtable
//!   (keys prepared outside the timing; the memtable is replaced every 90 000 entries,
//!   about a 16 MiB memtable's worth).
//! - `mvcc_get`: `Engine::get` of a random existing key among 50 000, from the memtable
//!   and from one flushed SST with a warm block cache.
//! - `sst_block`: decoding a 4 KiB data block (what a block-cache miss costs after the
//!   read) and `Block::seek_ge` of a key in it.
//!
//! Run: `cargo bench -p chitin-bench --bench lsm`. The engines live in fresh directories
//! under the system temp dir (`CHITIN_BENCH_DIR` to measure another disk).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chitin_bench::workload::zipf::Rng;
use chitin_storage::lsm::key;
use chitin_storage::lsm::memtable::Memtable;
use chitin_storage::lsm::sst::block::{Block, BlockBuilder};
use chitin_storage::{Engine, LsmEngine, LsmOptions, Timestamp, WriteBatch};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};

const KEYS: u64 = 50_000;

fn user_key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(format!("{i:016x}").as_bytes());
    k
}

fn config(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
}

fn memtable_insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("memtable_insert");
    config(&mut g);
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng::new(1);
    let value = vec![7u8; 101];
    let mut seq = 0;
    g.bench_function("random_16B_key_100B_value", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(90_000);
                left -= n;
                let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
                    .map(|_| {
                        seq += 1;
                        let k = user_key(rng.next_u64());
                        let ts = Timestamp::new(seq, 0);
                        (key::encode(key::SPACE_MVCC, &k, ts, seq), value.clone())
                    })
                    .collect();
                let m = Memtable::new();
                let t = Instant::now();
                for (k, v) in entries {
                    m.insert(k, v);
                }
                total += t.elapsed();
                black_box(m.len());
            }
            total
        })
    });
    g.finish();
}

/// An LSM engine on its own glommio executor, holding `KEYS` keys.
struct EngineBench {
    ex: LocalExecutor,
    engine: Option<LsmEngine>,
    dir: PathBuf,
}

impl EngineBench {
    fn new(name: &str, flush: bool) -> EngineBench {
        let base = std::env::var_os("CHITIN_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("chitin-bench-lsm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ex = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(4 << 20)
            .make()
            .expect("executor");
        let opts = LsmOptions {
            memtable_bytes: 256 << 20,
            background_work: false,
            ..LsmOptions::default()
        };
        let engine = ex.run(async {
            let e = LsmEngine::open(&dir, opts).await.expect("open engine");
            for chunk in 0..KEYS / 100 {
                let mut b = WriteBatch::new();
                for i in chunk * 100..(chunk + 1) * 100 {
                    b.put(user_key(i).to_vec(), Timestamp::new(1, 0), vec![b'v'; 100]);
                }
                e.write(b).await.expect("write");
            }
            if flush {
                e.flush().await.expect("flush");
            }
            e
        });
        EngineBench {
            ex,
            engine: Some(engine),
            dir,
        }
    }

    /// `iters` gets of random existing keys; returns their total time.
    fn gets(&self, rng: &mut Rng, iters: u64) -> Duration {
        let e = self.engine.as_ref().unwrap();
        let keys: Vec<[u8; 16]> = (0..iters).map(|_| user_key(rng.below(KEYS))).collect();
        self.ex.run(async {
            let t = Instant::now();
            for k in &keys {
                let v = e.get(k, Timestamp::new(2, 0)).await.expect("get");
                assert!(v.is_some());
            }
            t.elapsed()
        })
    }
}

impl Drop for EngineBench {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            let _ = self.ex.run(e.close());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mvcc_get(c: &mut Criterion) {
    let mut g = c.benchmark_group("mvcc_get");
    config(&mut g);
    g.throughput(Throughput::Elements(1));
    for (name, flush) in [("memtable", false), ("sst_warm_cache", true)] {
        let b = EngineBench::new(name, flush);
        let mut rng = Rng::new(2);
        // Warm the block cache (every block of the SST).
        b.gets(&mut rng, 2 * KEYS);
        let stats = b.engine.as_ref().unwrap().stats();
        assert_eq!(
            stats.tables_per_level[0],
            usize::from(flush),
            "{name}: unexpected table count"
        );
        g.bench_function(BenchmarkId::new("50k_keys", name), |bench| {
            bench.iter_custom(|iters| b.gets(&mut rng, iters))
        });
    }
    g.finish();
}

fn sst_block(c: &mut Criterion) {
    let mut g = c.benchmark_group("sst_block");
    config(&mut g);
    // A data block as the table builder makes them: restart interval 16, cut at 4 KiB.
    let mut bb = BlockBuilder::new(16);
    let mut keys = Vec::new();
    let value = vec![key::KIND_PUT; 101];
    let mut i = 0u64;
    while bb.estimated_size() < 4096 {
        let uk = user_key(i * 7);
        bb.add(
            &key::encode(key::SPACE_MVCC, &uk, Timestamp::new(1, 0), i + 1),
            &value,
        );
        keys.push(key::seek_first(key::SPACE_MVCC, &uk));
        i += 1;
    }
    let raw = bb.finish();
    let block = Block::decode(&raw).expect("decode");
    assert_eq!(block.len(), keys.len());
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function(
        BenchmarkId::new("decode", format!("{}_entries", keys.len())),
        |b| b.iter(|| Block::decode(black_box(&raw)).expect("decode")),
    );
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng::new(3);
    g.bench_function(
        BenchmarkId::new("seek_ge", format!("{}_entries", keys.len())),
        |b| {
            b.iter(|| {
                let k = &keys[rng.below(keys.len() as u64) as usize];
                block.seek_ge(black_box(k))
            })
        },
    );
    g.finish();
}

criterion_group!(benches, memtable_insert, mvcc_get, sst_block);
criterion_main!(benches);
