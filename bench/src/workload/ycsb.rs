//! YCSB, the Yahoo! Cloud Serving Benchmark, as its `CoreWorkload` specifies it.
//!
//! The table is `usertable(ycsb_key VARCHAR PRIMARY KEY, field0 … field9 TEXT)`; each row
//! holds ten 100-byte random strings. Record number `n` has the key `user` followed by
//! the decimal FNV-1a hash of `n` (YCSB's default `insertorder=hashed`), so consecutive
//! records are scattered over the key space.
//!
//! | workload | mix | keys |
//! |---|---|---|
//! | A | 50 % read, 50 % update | zipfian |
//! | B | 95 % read, 5 % update | zipfian |
//! | C | 100 % read | zipfian |
//! | D | 95 % read, 5 % insert | latest |
//! | E | 95 % scan of 1–100 rows, 5 % insert | zipfian |
//! | F | 50 % read, 50 % read-modify-write | zipfian |
//!
//! A read fetches all ten fields; an update rewrites one random field (YCSB's default
//! `writeallfields=false`); a read-modify-write is a read followed by an update of the same
//! record, timed as one operation, not in a transaction (as in YCSB).
//!
//! Implementation caveats:
//! - `--request-distribution` overrides the key distribution except for D, which is
//!   always "latest".
//! - Keys of run-time inserts continue after the rows present when the run starts (D and E
//!   count the table first), so repeated runs do not collide; reads choose among the
//!   `--record-count` loaded records (plus, for "latest", the acknowledged inserts).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;
use tokio_postgres::{Client, Config, Statement};

use super::flags::{Distribution, Options, YcsbWorkload};
use super::zipf::{fnv_hash64, Rng, ScrambledZipfian, SkewedLatest};
use super::{
    connect, create_table, load, multi_row_insert, query_number, retry, split_table, Int, LoadSpec,
    Outcome, OwnedParams, Workers,
};

/// The number of value fields of a record.
pub const FIELD_COUNT: usize = 10;
/// The length of each field, in bytes.
pub const FIELD_LENGTH: usize = 100;
/// The longest scan of workload E.
pub const MAX_SCAN_LENGTH: u64 = 100;

const CREATE_TABLE: &str = "CREATE TABLE usertable (
    ycsb_key VARCHAR PRIMARY KEY,
    field0 TEXT, field1 TEXT, field2 TEXT, field3 TEXT, field4 TEXT,
    field5 TEXT, field6 TEXT, field7 TEXT, field8 TEXT, field9 TEXT
)";

/// YCSB's key of record number `n`.
pub fn key_name(n: u64) -> String {
    format!("user{}", fnv_hash64(n))
}

/// The split points of `--splits N`: N−1 keys evenly spaced over the range of hashed
/// keys (19-digit numbers dominate it, so their leading digits are spread evenly).
pub fn split_points(splits: u32) -> Vec<String> {
    (1..splits as u64)
        .map(|i| {
            let n = (i as u128 * i64::MAX as u128 / splits as u128) as u64;
            format!("'user{n}'")
        })
        .collect()
}

/// The operations of a workload, in the order their counters are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Read,
    Update,
    Insert,
    Scan,
    ReadModifyWrite,
}

/// The operation mix of `workload`: (operation, proportion) pairs summing to 1.
fn mix(workload: YcsbWorkload) -> &'static [(Op, f64)] {
    match workload {
        YcsbWorkload::A => &[(Op::Read, 0.5), (Op::Update, 0.5)],
        YcsbWorkload::B => &[(Op::Read, 0.95), (Op::Update, 0.05)],
        YcsbWorkload::C => &[(Op::Read, 1.0)],
        YcsbWorkload::D => &[(Op::Read, 0.95), (Op::Insert, 0.05)],
        YcsbWorkload::E => &[(Op::Scan, 0.95), (Op::Insert, 0.05)],
        YcsbWorkload::F => &[(Op::Read, 0.5), (Op::ReadModifyWrite, 0.5)],
    }
}

/// The printed names of `workload`'s operations, in [`mix`] order.
pub fn op_names(workload: YcsbWorkload) -> &'static [&'static str] {
    match workload {
        YcsbWorkload::A | YcsbWorkload::B => &["read", "update"],
        YcsbWorkload::C => &["read"],
        YcsbWorkload::D => &["read", "insert"],
        YcsbWorkload::E => &["scan", "insert"],
        YcsbWorkload::F => &["read", "rmw"],
    }
}

/// Appends one record's key and ten random fields to `params`.
fn record_params(n: u64, rng: &mut Rng, params: &mut OwnedParams) {
    params.push(Box::new(key_name(n)));
    for _ in 0..FIELD_COUNT {
        params.push(Box::new(random_field(rng)));
    }
}

fn random_field(rng: &mut Rng) -> String {
    let mut buf = Vec::with_capacity(FIELD_LENGTH);
    rng.fill_ascii(&mut buf, FIELD_LENGTH);
    String::from_utf8(buf).expect("fill_ascii writes ASCII")
}

pub async fn init(client: &Client, config: &Config, options: &Options) -> Result<()> {
    create_table(client, options, "usertable", CREATE_TABLE).await?;
    split_table(client, "usertable", &split_points(options.splits)).await;
    load(
        config,
        options,
        LoadSpec {
            table: "usertable",
            insert_sql: |rows| multi_row_insert("usertable", 1 + FIELD_COUNT, rows),
            row_params: Arc::new(record_params),
        },
    )
    .await
}

/// Chooses the record numbers that operations address.
#[derive(Clone, Debug)]
enum KeyChooser {
    Uniform,
    Zipfian(ScrambledZipfian),
    Latest(SkewedLatest),
}

/// What the workers of one run share.
struct Shared {
    workload: YcsbWorkload,
    /// Records present when the run started (reads address `0..base`).
    base: u64,
    /// The next record number to insert.
    insert_next: AtomicU64,
    /// One past the highest record number whose insert was acknowledged.
    acknowledged: AtomicU64,
}

pub async fn run(client: &Client, config: &Config, options: &Options) -> Result<bool> {
    let workload = options.workload;
    let inserts = mix(workload).iter().any(|(op, _)| *op == Op::Insert);
    // Inserts continue after the rows already there, so that a second run does not
    // collide with the first one's inserts.
    let present = if inserts {
        query_number(client, "SELECT count(*) FROM usertable").await? as u64
    } else {
        0
    };
    let base = options.record_count;
    let shared = Arc::new(Shared {
        workload,
        base,
        insert_next: AtomicU64::new(base.max(present)),
        acknowledged: AtomicU64::new(base.max(present)),
    });
    let chooser = match options.distribution {
        Distribution::Uniform => KeyChooser::Uniform,
        Distribution::Zipfian => KeyChooser::Zipfian(ScrambledZipfian::new(base)),
        Distribution::Latest => KeyChooser::Latest(SkewedLatest::new(base)),
    };
    let names = op_names(workload);
    let mut workers = Workers::new(names, options);
    for w in 0..options.concurrency {
        let client = connect(config).await?;
        let worker = YcsbWorker::new(
            client,
            shared.clone(),
            chooser.clone(),
            Rng::new(options.seed.wrapping_add(w as u64 * 7919)),
        )
        .await?;
        workers.spawn(worker);
    }
    let lines = workers.measure(options).await;
    Ok(!super::all_failed(&lines))
}

/// One connection running YCSB operations.
pub struct YcsbWorker {
    client: Client,
    shared: Arc<Shared>,
    chooser: KeyChooser,
    rng: Rng,
    read: Statement,
    /// `UPDATE usertable SET field<i> = $1 WHERE ycsb_key = $2`, one per field.
    updates: Vec<Statement>,
    insert: Statement,
    scan: Statement,
    mix: &'static [(Op, f64)],
}

impl YcsbWorker {
    async fn new(
        client: Client,
        shared: Arc<Shared>,
        chooser: KeyChooser,
        rng: Rng,
    ) -> Result<YcsbWorker> {
        let read = client
            .prepare("SELECT * FROM usertable WHERE ycsb_key = $1")
            .await?;
        let mut updates = Vec::with_capacity(FIELD_COUNT);
        for i in 0..FIELD_COUNT {
            updates.push(
                client
                    .prepare(&format!(
                        "UPDATE usertable SET field{i} = $1 WHERE ycsb_key = $2"
                    ))
                    .await?,
            );
        }
        let insert = client
            .prepare(&multi_row_insert("usertable", 1 + FIELD_COUNT, 1))
            .await?;
        let scan = client
            .prepare("SELECT * FROM usertable WHERE ycsb_key >= $1 ORDER BY ycsb_key LIMIT $2")
            .await?;
        let mix = mix(shared.workload);
        Ok(YcsbWorker {
            client,
            shared,
            chooser,
            rng,
            read,
            updates,
            insert,
            scan,
            mix,
        })
    }

    /// The record number the next read, update or scan addresses.
    fn next_record(&mut self) -> u64 {
        match &mut self.chooser {
            KeyChooser::Uniform => self.rng.below(self.shared.base.max(1)),
            KeyChooser::Zipfian(z) => z.next(&mut self.rng),
            KeyChooser::Latest(l) => {
                let acknowledged = self.shared.acknowledged.load(Ordering::Relaxed);
                l.next(&mut self.rng, acknowledged)
            }
        }
    }

    fn choose_op(&mut self) -> (usize, Op) {
        let u = self.rng.next_f64();
        let mut acc = 0.0;
        for (i, (op, p)) in self.mix.iter().enumerate() {
            acc += p;
            if u < acc {
                return (i, *op);
            }
        }
        let last = self.mix.len() - 1;
        (last, self.mix[last].0)
    }

    async fn read(&self, key: &str, retries: &mut u32) -> Result<(), tokio_postgres::Error> {
        let mut r = *retries;
        let result = retry!(r, self.client.query_opt(&self.read, &[&key]).await);
        *retries = r;
        result.map(|_| ())
    }

    async fn update(&mut self, key: &str, retries: &mut u32) -> Result<(), tokio_postgres::Error> {
        let field = self.rng.below(FIELD_COUNT as u64) as usize;
        let value = random_field(&mut self.rng);
        let mut r = *retries;
        let result = retry!(
            r,
            self.client
                .execute(&self.updates[field], &[&value, &key])
                .await
        );
        *retries = r;
        result.map(|_| ())
    }

    async fn insert(&mut self, retries: &mut u32) -> Result<(), tokio_postgres::Error> {
        let n = self.shared.insert_next.fetch_add(1, Ordering::Relaxed);
        let mut owned = OwnedParams::with_capacity(1 + FIELD_COUNT);
        record_params(n, &mut self.rng, &mut owned);
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = owned
            .iter()
            .map(|p| &**p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let mut r = *retries;
        let result = retry!(r, self.client.execute(&self.insert, &params).await);
        *retries = r;
        if result.is_ok() {
            self.shared.acknowledged.fetch_max(n + 1, Ordering::Relaxed);
        }
        result.map(|_| ())
    }

    async fn scan(&mut self, key: &str, retries: &mut u32) -> Result<(), tokio_postgres::Error> {
        let length = Int(1 + self.rng.below(MAX_SCAN_LENGTH) as i64);
        let mut r = *retries;
        let result = retry!(r, self.client.query(&self.scan, &[&key, &length]).await);
        *retries = r;
        result.map(|_| ())
    }

    async fn run_op(&mut self, op: Op, retries: &mut u32) -> Result<(), tokio_postgres::Error> {
        if op == Op::Insert {
            return self.insert(retries).await;
        }
        let key = key_name(self.next_record());
        match op {
            Op::Read => self.read(&key, retries).await,
            Op::Update => self.update(&key, retries).await,
            Op::Scan => self.scan(&key, retries).await,
            Op::ReadModifyWrite => {
                self.read(&key, retries).await?;
                self.update(&key, retries).await
            }
            Op::Insert => unreachable!("handled above"),
        }
    }
}

impl super::Worker for YcsbWorker {
    async fn step(&mut self) -> Outcome {
        let (index, op) = self.choose_op();
        let mut retries = 0;
        let result = self.run_op(op, &mut retries).await;
        Outcome {
            op: index,
            retries,
            result,
        }
    }

    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_user_and_the_hashed_record_number() {
        assert_eq!(key_name(0), format!("user{}", fnv_hash64(0)));
        // Hashing scatters neighbours, and keys are stable across runs.
        assert_ne!(key_name(1), key_name(2));
        assert_eq!(key_name(12345), key_name(12345));
        assert!(key_name(7).starts_with("user"));
        assert!(key_name(7)[4..].chars().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn split_points_are_ordered_keys() {
        let points = split_points(4);
        assert_eq!(points.len(), 3);
        assert!(points.windows(2).all(|w| w[0] < w[1]), "{points:?}");
        assert!(points.iter().all(|p| p.starts_with("'user")));
        assert!(split_points(0).is_empty() && split_points(1).is_empty());
    }

    #[test]
    fn mixes_sum_to_one_and_match_the_names() {
        use YcsbWorkload::*;
        for w in [A, B, C, D, E, F] {
            let sum: f64 = mix(w).iter().map(|(_, p)| p).sum();
            assert!((sum - 1.0).abs() < 1e-9, "{w:?}");
            assert_eq!(mix(w).len(), op_names(w).len(), "{w:?}");
        }
    }

    #[test]
    fn record_params_are_a_key_and_ten_100_byte_fields() {
        let mut rng = Rng::new(1);
        let mut params = OwnedParams::new();
        record_params(3, &mut rng, &mut params);
        assert_eq!(params.len(), 1 + FIELD_COUNT);
        assert_eq!(random_field(&mut rng).len(), FIELD_LENGTH);
    }
}
