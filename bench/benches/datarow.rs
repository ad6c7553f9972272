//! Criterion benchmarks of pgwire DataRow encoding, the per-row cost of every SELECT reply.
//!
//! Two ways, for two rows:
//! - `pgwire_datarow`: the `pgwire` crate's `DataRow` (fields encoded into its own
//!   `BytesMut`, then the message encoded into the output buffer);
//! - `direct`: straight into the output buffer, length patched afterwards, which is how
//!   the server's `data_row` does it (src/server/pgwire.rs; re-implemented here because
//!   this crate cannot depend on the server crate).
//!
//! Rows: a YCSB `usertable` row in text format (a 23-byte key and ten 100-byte fields,
//! `SELECT *`) and one INT8 in text format (pgbench -S's `abalance`).
//!
//! Run: `cargo bench -p chitin-bench --bench datarow`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pgwire::messages::data::DataRow;
use pgwire::messages::Message;

/// A row as the executor hands it over: text-formattable values.
enum Datum {
    Text(Vec<u8>),
    Int(i64),
}

/// Appends `d`'s text form to `scratch`.
fn to_text(d: &Datum, scratch: &mut String) {
    match d {
        Datum::Text(b) => scratch.push_str(std::str::from_utf8(b).expect("ascii")),
        Datum::Int(v) => write!(scratch, "{v}").expect("write to String"),
    }
}

fn encode_pgwire(row: &[Datum], out: &mut BytesMut, scratch: &mut String) {
    let mut data = BytesMut::new();
    for d in row {
        scratch.clear();
        to_text(d, scratch);
        data.put_i32(scratch.len() as i32);
        data.put_slice(scratch.as_bytes());
    }
    DataRow::new(data, row.len() as i16)
        .encode(out)
        .expect("encode");
}

fn encode_direct(row: &[Datum], out: &mut BytesMut, scratch: &mut String) {
    out.put_u8(b'D');
    let len_at = out.len();
    out.put_i32(0);
    out.put_i16(row.len() as i16);
    for d in row {
        scratch.clear();
        to_text(d, scratch);
        out.put_i32(scratch.len() as i32);
        out.put_slice(scratch.as_bytes());
    }
    let len = (out.len() - len_at) as i32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

fn datarow(c: &mut Criterion) {
    let mut g = c.benchmark_group("datarow");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    let mut ycsb = vec![Datum::Text(b"user6284781860667377211".to_vec())];
    for f in 0..10u8 {
        ycsb.push(Datum::Text(vec![b'a' + f; 100]));
    }
    let int = vec![Datum::Int(-4_187_325)];
    for (row_name, row) in [("ycsb_11_text_fields", &ycsb), ("one_int8", &int)] {
        // The two encodings must agree byte for byte.
        let (mut a, mut b, mut s) = (BytesMut::new(), BytesMut::new(), String::new());
        encode_pgwire(row, &mut a, &mut s);
        encode_direct(row, &mut b, &mut s);
        assert_eq!(a, b, "{row_name}: encodings differ");
        type Encoder = fn(&[Datum], &mut BytesMut, &mut String);
        let ways: [(&str, Encoder); 2] =
            [("pgwire_datarow", encode_pgwire), ("direct", encode_direct)];
        for (way, encode) in ways {
            let mut out = BytesMut::with_capacity(8192);
            let mut scratch = String::new();
            g.bench_function(BenchmarkId::new(way, row_name), |bench| {
                bench.iter(|| {
                    // A reply buffer reused across rows, as a connection's is.
                    if out.len() > 4096 {
                        out.clear();
                    }
                    encode(black_box(row), &mut out, &mut scratch);
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, datarow);
criterion_main!(benches);
