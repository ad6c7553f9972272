//! kv: point reads and blind upserts on `kv(k INT8 PRIMARY KEY, v BYTEA)`, as in
//! `cockroach workload run kv`.
//!
//! `--read-percent` of the operations read `--batch` keys in one statement
//! (`WHERE k = $1`, or `WHERE k IN (…)` for a batch); the rest upsert `--batch` rows of
//! `--value-size` random bytes with `INSERT … ON CONFLICT (k) DO UPDATE` (the PostgreSQL
//! spelling of CockroachDB's `UPSERT`). Keys are drawn from `0..--record-count` with the
//! request distribution (uniform by default); `init` loads that many rows.
//!
//! Implementation caveats:
//! - Keys within one batch are distinct (PostgreSQL rejects an upsert that touches a row
//!   twice), so `--batch` must not exceed `--record-count`.

use std::sync::Arc;

use anyhow::{bail, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Statement};

use super::flags::{Distribution, Options};
use super::zipf::{Rng, ScrambledZipfian, SkewedLatest};
use super::{
    connect, create_table, load, multi_row_insert, retry, split_table, LoadSpec, Outcome,
    OwnedParams, Workers,
};

const CREATE_TABLE: &str = "CREATE TABLE kv (k INT8 PRIMARY KEY, v BYTEA)";

pub const OP_NAMES: &[&str] = &["read", "write"];

/// `SELECT k, v FROM kv WHERE k = $1`, or an `IN` list of `batch` parameters.
pub fn read_sql(batch: usize) -> String {
    if batch == 1 {
        return "SELECT k, v FROM kv WHERE k = $1".to_string();
    }
    let list: Vec<String> = (1..=batch).map(|i| format!("${i}")).collect();
    format!("SELECT k, v FROM kv WHERE k IN ({})", list.join(", "))
}

/// The upsert of `batch` rows.
pub fn write_sql(batch: usize) -> String {
    format!(
        "{} ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        multi_row_insert("kv (k, v)", 2, batch)
    )
}

fn random_value(rng: &mut Rng, size: usize) -> Vec<u8> {
    (0..size).map(|_| rng.next_u64() as u8).collect()
}

pub async fn init(client: &Client, config: &Config, options: &Options) -> Result<()> {
    create_table(client, options, "kv", CREATE_TABLE).await?;
    let splits = options.splits as u64;
    let points: Vec<String> = (1..splits)
        .map(|i| (i * options.record_count / splits).to_string())
        .collect();
    split_table(client, "kv", &points).await;
    let value_size = options.value_size;
    load(
        config,
        options,
        LoadSpec {
            table: "kv",
            insert_sql: |rows| multi_row_insert("kv (k, v)", 2, rows),
            row_params: Arc::new(move |n, rng: &mut Rng, params: &mut OwnedParams| {
                params.push(Box::new(n as i64));
                params.push(Box::new(random_value(rng, value_size)));
            }),
        },
    )
    .await
}

pub async fn run(_client: &Client, config: &Config, options: &Options) -> Result<bool> {
    if options.batch as u64 > options.record_count {
        bail!("--batch must not exceed --record-count");
    }
    let mut workers = Workers::new(OP_NAMES, options);
    for w in 0..options.concurrency {
        let client = connect(config).await?;
        let read = client.prepare(&read_sql(options.batch)).await?;
        let write = client.prepare(&write_sql(options.batch)).await?;
        let chooser = match options.distribution {
            Distribution::Uniform => Chooser::Uniform,
            Distribution::Zipfian => Chooser::Zipfian(ScrambledZipfian::new(options.record_count)),
            Distribution::Latest => Chooser::Latest(SkewedLatest::new(options.record_count)),
        };
        workers.spawn(KvWorker {
            client,
            read,
            write,
            chooser,
            rng: Rng::new(options.seed.wrapping_add(w as u64 * 7919)),
            records: options.record_count,
            batch: options.batch,
            read_percent: options.read_percent,
            value_size: options.value_size,
        });
    }
    let lines = workers.measure(options).await;
    Ok(!super::all_failed(&lines))
}

#[derive(Clone, Debug)]
enum Chooser {
    Uniform,
    Zipfian(ScrambledZipfian),
    Latest(SkewedLatest),
}

pub struct KvWorker {
    client: Client,
    read: Statement,
    write: Statement,
    chooser: Chooser,
    rng: Rng,
    records: u64,
    batch: usize,
    read_percent: u32,
    value_size: usize,
}

impl KvWorker {
    /// `batch` distinct keys.
    fn keys(&mut self) -> Vec<i64> {
        let mut keys: Vec<i64> = Vec::with_capacity(self.batch);
        while keys.len() < self.batch {
            let k = match &mut self.chooser {
                Chooser::Uniform => self.rng.below(self.records),
                Chooser::Zipfian(z) => z.next(&mut self.rng),
                Chooser::Latest(l) => l.next(&mut self.rng, self.records),
            } as i64;
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        keys
    }
}

impl super::Worker for KvWorker {
    async fn step(&mut self) -> Outcome {
        let is_read = self.rng.below(100) < u64::from(self.read_percent);
        let keys = self.keys();
        let mut retries = 0;
        let result = if is_read {
            let params: Vec<&(dyn ToSql + Sync)> =
                keys.iter().map(|k| k as &(dyn ToSql + Sync)).collect();
            retry!(retries, self.client.query(&self.read, &params).await).map(|_| ())
        } else {
            let values: Vec<Vec<u8>> = keys
                .iter()
                .map(|_| random_value(&mut self.rng, self.value_size))
                .collect();
            let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(2 * keys.len());
            for (k, v) in keys.iter().zip(&values) {
                params.push(k);
                params.push(v);
            }
            retry!(retries, self.client.execute(&self.write, &params).await).map(|_| ())
        };
        Outcome {
            op: usize::from(!is_read),
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
    fn statements() {
        assert_eq!(read_sql(1), "SELECT k, v FROM kv WHERE k = $1");
        assert_eq!(read_sql(3), "SELECT k, v FROM kv WHERE k IN ($1, $2, $3)");
        assert_eq!(
            write_sql(2),
            "INSERT INTO kv (k, v) VALUES ($1, $2), ($3, $4) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
        );
    }
}
