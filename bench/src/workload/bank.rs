//! bank: transfers between accounts in explicit serializable transactions, and a check
//! that no money was created or destroyed.
//!
//! `accounts(id INT PRIMARY KEY, balance INT)` holds `--record-count` accounts of 1000
//! each. A transfer reads both balances and writes both new balances as absolute values:
//!
//! ```sql
//! BEGIN ISOLATION LEVEL SERIALIZABLE;
//! SELECT balance FROM accounts WHERE id = $from;
//! SELECT balance FROM accounts WHERE id = $to;
//! UPDATE accounts SET balance = $from_balance - $amount WHERE id = $from;
//! UPDATE accounts SET balance = $to_balance + $amount WHERE id = $to;
//! COMMIT;
//! ```
//!
//! Because the writes are absolute, a lost update (two transfers reading the same old
//! balance) changes the total; only serializable execution keeps it. A transaction that
//! fails with a serialization failure (or deadlock) is rolled back and retried from the
//! start, transparently, and the retry counted.
//!
//! `run` reads `sum(balance)` before and after and fails (nonzero exit) if it changed.
//!
//! Implementation caveats:
//! - If the server rejects `BEGIN ISOLATION LEVEL SERIALIZABLE`, plain `BEGIN` is used
//!   (said on stderr); the check then tests the server's default isolation.

use std::time::Duration;

use anyhow::Result;
use tokio_postgres::{Client, Config, Statement};

use super::flags::Options;
use super::zipf::Rng;
use super::{
    connect, create_table, is_retryable, load, multi_row_insert, query_number, split_table,
    try_execute, Int, LoadSpec, Outcome, OwnedParams, Workers, MAX_RETRIES,
};

/// The balance of each account after `init`.
pub const INITIAL_BALANCE: i64 = 1000;
/// Transfers move 1..=MAX_TRANSFER.
const MAX_TRANSFER: u64 = 100;

const CREATE_TABLE: &str = "CREATE TABLE accounts (id INT PRIMARY KEY, balance INT)";
const SERIALIZABLE_BEGIN: &str = "BEGIN ISOLATION LEVEL SERIALIZABLE";

pub const OP_NAMES: &[&str] = &["transfer"];

pub async fn init(client: &Client, config: &Config, options: &Options) -> Result<()> {
    create_table(client, options, "accounts", CREATE_TABLE).await?;
    let splits = options.splits as u64;
    let points: Vec<String> = (1..splits)
        .map(|i| (i * options.record_count / splits).to_string())
        .collect();
    split_table(client, "accounts", &points).await;
    load(
        config,
        options,
        LoadSpec {
            table: "accounts",
            insert_sql: |rows| multi_row_insert("accounts (id, balance)", 2, rows),
            row_params: std::sync::Arc::new(|n, _rng: &mut Rng, params: &mut OwnedParams| {
                params.push(Box::new(Int(n as i64)));
                params.push(Box::new(Int(INITIAL_BALANCE)));
            }),
        },
    )
    .await
}

/// The total balance and the number of accounts.
async fn totals(client: &Client) -> Result<(i128, i128)> {
    let total = query_number(client, "SELECT sum(balance) FROM accounts").await?;
    let count = query_number(client, "SELECT count(*) FROM accounts").await?;
    Ok((total, count))
}

pub async fn run(client: &Client, config: &Config, options: &Options) -> Result<bool> {
    let (before, accounts) = totals(client).await?;
    if accounts < 2 {
        anyhow::bail!("bank needs at least two accounts (run `chitin workload init bank`)");
    }
    let begin = match try_execute(client, SERIALIZABLE_BEGIN).await {
        Ok(()) => {
            let _ = try_execute(client, "ROLLBACK").await;
            SERIALIZABLE_BEGIN
        }
        Err(e) => {
            eprintln!("note: the server rejected {SERIALIZABLE_BEGIN} ({e}); using BEGIN");
            "BEGIN"
        }
    };
    let mut workers = Workers::new(OP_NAMES, options);
    for w in 0..options.concurrency {
        let client = connect(config).await?;
        let read = client
            .prepare("SELECT balance FROM accounts WHERE id = $1")
            .await?;
        let write = client
            .prepare("UPDATE accounts SET balance = $1 WHERE id = $2")
            .await?;
        workers.spawn(BankWorker {
            client,
            read,
            write,
            begin,
            accounts: accounts as u64,
            rng: Rng::new(options.seed.wrapping_add(w as u64 * 7919)),
        });
    }
    let lines = workers.measure(options).await;
    let (after, _) = totals(client).await?;
    let ok = before == after;
    if options.json {
        println!(
            "{{\"type\":\"check\",\"check\":\"bank_total\",\"before\":{before},\"after\":{after},\"ok\":{ok}}}"
        );
    } else {
        println!(
            "bank: total balance before {before}, after {after}: {}",
            if ok { "unchanged (ok)" } else { "CHANGED" }
        );
    }
    Ok(ok && !super::all_failed(&lines))
}

pub struct BankWorker {
    client: Client,
    read: Statement,
    write: Statement,
    begin: &'static str,
    accounts: u64,
    rng: Rng,
}

impl BankWorker {
    /// One attempt at a transfer, inside an explicit transaction.
    async fn transfer(&self, from: i64, to: i64, amount: i64) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute(self.begin).await?;
        let from_balance: Int = self
            .client
            .query_one(&self.read, &[&Int(from)])
            .await?
            .try_get(0)?;
        let to_balance: Int = self
            .client
            .query_one(&self.read, &[&Int(to)])
            .await?
            .try_get(0)?;
        let (from_balance, to_balance) = (from_balance.0, to_balance.0);
        self.client
            .execute(&self.write, &[&Int(from_balance - amount), &Int(from)])
            .await?;
        self.client
            .execute(&self.write, &[&Int(to_balance + amount), &Int(to)])
            .await?;
        self.client.batch_execute("COMMIT").await
    }
}

impl super::Worker for BankWorker {
    async fn step(&mut self) -> Outcome {
        let from = self.rng.below(self.accounts) as i64;
        let mut to = self.rng.below(self.accounts - 1) as i64;
        if to >= from {
            to += 1;
        }
        let amount = 1 + self.rng.below(MAX_TRANSFER) as i64;
        let mut retries = 0;
        loop {
            let result = self.transfer(from, to, amount).await;
            match result {
                Ok(()) => {
                    return Outcome {
                        op: 0,
                        retries,
                        result: Ok(()),
                    }
                }
                Err(e) => {
                    // Ends the transaction whatever state it is in (a no-op after a
                    // failed COMMIT, which already rolled back).
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    if is_retryable(&e) && retries < MAX_RETRIES && !self.client.is_closed() {
                        retries += 1;
                        // Back off a little so that the transactions that conflicted do
                        // not meet again at once.
                        let micros = 50 * u64::from(retries.min(20)) + self.rng.below(200);
                        tokio::time::sleep(Duration::from_micros(micros)).await;
                        continue;
                    }
                    return Outcome {
                        op: 0,
                        retries,
                        result: Err(e),
                    };
                }
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
