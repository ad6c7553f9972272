//! The bank invariant under concurrent serializable transactions (issue 3, item 5:
//! BEGIN/COMMIT/ROLLBACK; the design's serializable isolation), on a table split into two
//! ranges, so that transfers between the halves are two-phase commits across cores.
//!
//! `ACCOUNTS` accounts start with `INITIAL` each. `TRANSFER_WORKERS` sessions move money
//! between random accounts in SERIALIZABLE transactions (two UPDATEs), retrying on 40001
//! (serialization failure) and 40P01 (deadlock); `READ_WORKERS` sessions meanwhile read
//! every balance one by one inside SERIALIZABLE transactions. The checks:
//! - every reader snapshot sums to the total and sees every account (no read skew, no
//!   torn transfer);
//! - at the end each account's balance is its initial balance plus the committed
//!   transfers' deltas (no lost update, no write of an aborted transaction).
//!
//! `CHITIN_TEST_URL=postgresql://...` runs it against that server instead of spawning one.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

const URL_VAR: &str = "CHITIN_TEST_URL";
const ACCOUNTS: i64 = 8;
const INITIAL: i64 = 1000;
const TRANSFER_WORKERS: u64 = 4;
const TRANSFERS_PER_WORKER: usize = 40;
const READ_WORKERS: u64 = 2;
const MAX_ATTEMPTS: usize = 100;
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// A committed transfer.
#[derive(Clone, Copy, Debug)]
struct Transfer {
    from: i64,
    to: i64,
    amount: i64,
}

/// SplitMix64.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether the client may retry the transaction (serialization failure or deadlock).
fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// One transfer attempt in a serializable transaction.
async fn try_transfer(client: &mut Client, t: Transfer) -> Result<(), tokio_postgres::Error> {
    let txn = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::Serializable)
        .start()
        .await?;
    txn.execute(
        "UPDATE accounts SET balance = balance - $1 WHERE id = $2",
        &[&t.amount, &t.from],
    )
    .await?;
    txn.execute(
        "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
        &[&t.amount, &t.to],
    )
    .await?;
    txn.commit().await
}

async fn transfer_worker(
    config: Config,
    seed: u64,
    committed: Arc<Mutex<Vec<Transfer>>>,
) -> Result<usize, String> {
    let mut client = common::connect(&config)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut random = seed;
    let mut retries = 0;
    for _ in 0..TRANSFERS_PER_WORKER {
        let from = (next_random(&mut random) % ACCOUNTS as u64) as i64;
        let to = (from + 1 + (next_random(&mut random) % (ACCOUNTS as u64 - 1)) as i64) % ACCOUNTS;
        let amount = 1 + (next_random(&mut random) % 50) as i64;
        let transfer = Transfer { from, to, amount };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match try_transfer(&mut client, transfer).await {
                Ok(()) => {
                    committed.lock().unwrap().push(transfer);
                    break;
                }
                Err(e) if is_retryable(&e) && attempt < MAX_ATTEMPTS => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(attempt as u64 * 2)).await;
                }
                Err(e) => {
                    return Err(format!(
                        "transfer {transfer:?}, attempt {attempt}: {e:?} (an unknown commit \
                         outcome would make the final check meaningless)"
                    ))
                }
            }
        }
    }
    Ok(retries)
}

/// Reads every balance, one statement per account, in one serializable transaction.
async fn try_snapshot(client: &mut Client) -> Result<Vec<i64>, tokio_postgres::Error> {
    let txn = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::Serializable)
        .start()
        .await?;
    let mut balances = Vec::new();
    for id in 0..ACCOUNTS {
        let row = txn
            .query_one("SELECT balance FROM accounts WHERE id = $1", &[&id])
            .await?;
        balances.push(row.get::<_, i64>(0));
    }
    txn.commit().await?;
    Ok(balances)
}

async fn read_worker(config: Config, stop: Arc<AtomicBool>) -> Result<usize, String> {
    let mut client = common::connect(&config)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut snapshots = 0;
    while !stop.load(Ordering::Relaxed) {
        match try_snapshot(&mut client).await {
            Ok(balances) => {
                let total: i64 = balances.iter().sum();
                if total != ACCOUNTS * INITIAL {
                    return Err(format!(
                        "read skew: a snapshot sums to {total}, not {}: {balances:?}",
                        ACCOUNTS * INITIAL
                    ));
                }
                // One statement over the whole table must agree too.
                let row = client
                    .query_one("SELECT sum(balance)::INT8, count(*) FROM accounts", &[])
                    .await
                    .map_err(|e| format!("sum: {e:?}"))?;
                let (sum, count): (i64, i64) = (row.get(0), row.get(1));
                if sum != ACCOUNTS * INITIAL || count != ACCOUNTS {
                    return Err(format!("SELECT sum, count saw {sum}, {count}"));
                }
                snapshots += 1;
            }
            Err(e) if is_retryable(&e) => {}
            Err(e) => return Err(format!("snapshot: {e:?}")),
        }
    }
    Ok(snapshots)
}

#[test]
fn transfers_keep_the_total_and_every_balance() {
    let target = common::shared_target(URL_VAR).unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result: Result<(), String> = runtime.block_on(async {
        let config = common::fresh_database(&target, "bank_invariant").await?;
        let setup = common::connect(&config)
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        setup
            .batch_execute("CREATE TABLE accounts (id INT8 PRIMARY KEY, balance INT8 NOT NULL)")
            .await
            .map_err(|e| format!("create: {e:?}"))?;
        let values: Vec<String> = (0..ACCOUNTS)
            .map(|id| format!("({id}, {INITIAL})"))
            .collect();
        setup
            .batch_execute(&format!(
                "INSERT INTO accounts VALUES {}",
                values.join(", ")
            ))
            .await
            .map_err(|e| format!("insert: {e:?}"))?;
        // Chitin: split the accounts over two ranges (on two cores when the server has
        // two), so transfers commit across ranges. PostgreSQL has no SPLIT AT.
        let split = setup
            .batch_execute(&format!(
                "ALTER TABLE accounts SPLIT AT VALUES ({})",
                ACCOUNTS / 2
            ))
            .await;
        if target.is_spawned() {
            split.map_err(|e| format!("split: {e:?}"))?;
        }

        let started = Instant::now();
        let committed = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..READ_WORKERS)
            .map(|_| tokio::spawn(read_worker(config.clone(), stop.clone())))
            .collect();
        let writers: Vec<_> = (0..TRANSFER_WORKERS)
            .map(|w| {
                tokio::spawn(transfer_worker(
                    config.clone(),
                    0xba4c + w,
                    committed.clone(),
                ))
            })
            .collect();
        let mut retries = 0;
        let mut failures = Vec::new();
        for writer in writers {
            match tokio::time::timeout(RUN_TIMEOUT, writer).await {
                Ok(Ok(Ok(n))) => retries += n,
                Ok(Ok(Err(e))) => failures.push(e),
                Ok(Err(e)) => failures.push(format!("transfer task: {e}")),
                Err(_) => failures.push(format!("transfers not done in {RUN_TIMEOUT:?}")),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut snapshots = 0;
        for reader in readers {
            match tokio::time::timeout(Duration::from_secs(30), reader).await {
                Ok(Ok(Ok(n))) => snapshots += n,
                Ok(Ok(Err(e))) => failures.push(e),
                Ok(Err(e)) => failures.push(format!("reader task: {e}")),
                Err(_) => failures.push("a reader did not stop".to_string()),
            }
        }
        if !failures.is_empty() {
            return Err(failures.join("\n"));
        }

        // Every balance is the initial one plus the committed transfers.
        let mut expected = vec![INITIAL; ACCOUNTS as usize];
        let committed = committed.lock().unwrap().clone();
        for t in &committed {
            expected[t.from as usize] -= t.amount;
            expected[t.to as usize] += t.amount;
        }
        let rows = setup
            .query("SELECT id, balance FROM accounts ORDER BY id", &[])
            .await
            .map_err(|e| format!("final read: {e:?}"))?;
        let actual: Vec<i64> = rows.iter().map(|r| r.get::<_, i64>(1)).collect();
        if actual != expected {
            return Err(format!(
                "lost update or aborted write: balances {actual:?}, committed transfers imply \
                 {expected:?}"
            ));
        }
        eprintln!(
            "bank: {} transfers committed ({retries} retries), {snapshots} consistent \
             snapshots, in {:.1?}",
            committed.len(),
            started.elapsed()
        );
        Ok(())
    });
    drop(runtime);
    if let Err(e) = result {
        panic!("{e}\nserver log (tail):\n{}", target.log_tail());
    }
}
