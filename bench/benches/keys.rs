//! Criterion benchmarks of the storage layer's key coding: building and taking apart MVCC
//! internal keys (`[space][user key][ts desc: 12][seq desc: 8]`), comparing them (every
//! block search and merge step does), and the varints of block entries.
//!
//! Run: `cargo bench -p chitin-bench --bench keys`.

use std::hint::black_box;
use std::time::Duration;

use chitin_storage::lsm::{coding, key};
use chitin_storage::Timestamp;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn mvcc_key(c: &mut Criterion) {
    let mut g = c.benchmark_group("mvcc_key");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    let user_key = *b"00000000000abcde";
    let ts = Timestamp::new(1_764_000_000_000_000_000, 3);
    g.bench_function("encode_16B", |b| {
        b.iter(|| {
            key::encode(
                key::SPACE_MVCC,
                black_box(&user_key),
                black_box(ts),
                black_box(42),
            )
        })
    });
    let k = key::encode(key::SPACE_MVCC, &user_key, ts, 42);
    g.bench_function("decode_16B", |b| {
        b.iter(|| {
            let k = black_box(&k[..]);
            (key::user_key(k).len(), key::ts(k), key::seq(k))
        })
    });
    let older = key::encode(
        key::SPACE_MVCC,
        &user_key,
        Timestamp::new(ts.wall - 1, 0),
        41,
    );
    g.bench_function("compare_same_user_key", |b| {
        b.iter(|| key::compare(black_box(&k), black_box(&older)))
    });
    let other = key::encode(key::SPACE_MVCC, b"00000000000abcdf", ts, 43);
    g.bench_function("compare_other_user_key", |b| {
        b.iter(|| key::compare(black_box(&k), black_box(&other)))
    });
    g.finish();

    let mut g = c.benchmark_group("varint");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    // The three varints of a block entry (shared, unshared, value length), 16 entries.
    let values: Vec<u64> = (0..16u64)
        .flat_map(|i| [i % 3 * 12, 37 - i % 3 * 12, 101])
        .collect();
    g.throughput(Throughput::Elements(values.len() as u64));
    let mut buf = Vec::with_capacity(256);
    g.bench_function("put_then_read_48", |b| {
        b.iter(|| {
            buf.clear();
            for &v in black_box(&values) {
                coding::put_varint(&mut buf, v);
            }
            let mut r = coding::Reader::new(&buf);
            let mut sum = 0u64;
            while !r.is_empty() {
                sum += r.varint().expect("varint");
            }
            sum
        })
    });
    g.finish();
}

criterion_group!(benches, mvcc_key);
criterion_main!(benches);
