//! Heavy contention (issue 4): `CONNECTIONS` sessions increment random rows among only
//! `ROWS` rows for `DURATION`, in implicit transactions (the server retries those itself)
//! and in explicit two-row transactions (the client retries 40001).
//!
//! Checked: no statement takes longer than `MAX_STATEMENT`; every second of the run
//! commits something (throughput never drops to zero); the rows add up to exactly the
//! increments acknowledged; and the retries per commit (client and server side, from
//! `sql_txn_retries_total`) are printed.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ServerOptions, TestServer};
use tokio_postgres::error::SqlState;

const CONNECTIONS: usize = 64;
const ROWS: i64 = 10;
const DURATION: Duration = Duration::from_secs(8);
const MAX_STATEMENT: Duration = Duration::from_secs(10);

fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn sixty_four_sessions_on_ten_rows_keep_committing() {
    let server = TestServer::start(&ServerOptions::default()).expect("start");
    let config = server.config(common::DEFAULT_DATABASE);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let admin = common::connect(&config).await.unwrap();
        admin
            .batch_execute("CREATE TABLE hot (k INT8 PRIMARY KEY, n INT8 NOT NULL)")
            .await
            .unwrap();
        let values: Vec<String> = (0..ROWS).map(|k| format!("({k}, 0)")).collect();
        admin
            .batch_execute(&format!("INSERT INTO hot VALUES {}", values.join(",")))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("ALTER TABLE hot SPLIT AT VALUES ({})", ROWS / 2))
            .await
            .unwrap();

        let started = Instant::now();
        let seconds = (DURATION.as_secs() + 1) as usize;
        let per_second: Arc<Vec<AtomicU64>> =
            Arc::new((0..seconds + 30).map(|_| AtomicU64::new(0)).collect());
        let increments = Arc::new(AtomicU64::new(0));
        let retries = Arc::new(AtomicU64::new(0));
        let slowest = Arc::new(Mutex::new(Duration::ZERO));
        let mut tasks = Vec::new();
        for w in 0..CONNECTIONS {
            let config = config.clone();
            let (per_second, increments, retries, slowest) = (
                per_second.clone(),
                increments.clone(),
                retries.clone(),
                slowest.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let client = common::connect(&config).await.expect("connect");
                let mut rng = 7 + w as u64;
                let timed = |d: Duration| {
                    let mut s = slowest.lock().unwrap();
                    if d > *s {
                        *s = d;
                    }
                };
                while started.elapsed() < DURATION {
                    let a = (next_random(&mut rng) % ROWS as u64) as i64;
                    let b = (next_random(&mut rng) % ROWS as u64) as i64;
                    let explicit = w % 2 == 1 && a != b;
                    let t = Instant::now();
                    let result = if explicit {
                        async {
                            client.batch_execute("BEGIN").await?;
                            client
                                .execute("UPDATE hot SET n = n + 1 WHERE k = $1", &[&a])
                                .await?;
                            client
                                .execute("UPDATE hot SET n = n + 1 WHERE k = $1", &[&b])
                                .await?;
                            client.batch_execute("COMMIT").await
                        }
                        .await
                    } else {
                        client
                            .execute("UPDATE hot SET n = n + 1 WHERE k = $1", &[&a])
                            .await
                            .map(|_| ())
                    };
                    timed(t.elapsed());
                    match result {
                        Ok(()) => {
                            increments.fetch_add(if explicit { 2 } else { 1 }, Ordering::SeqCst);
                            let s = started.elapsed().as_secs() as usize;
                            per_second[s.min(per_second.len() - 1)]
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            let _ = client.batch_execute("ROLLBACK").await;
                        }
                        Err(e) => panic!("unexpected error: {e:?}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("worker");
        }
        let total: i64 = admin
            .query_one("SELECT sum(n)::INT8 FROM hot", &[])
            .await
            .unwrap()
            .get(0);
        let commits: u64 = per_second.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        let slowest = *slowest.lock().unwrap();
        let retries = retries.load(Ordering::Relaxed);
        let server_retries = common::status_var(server.http_addr, "sql_txn_retries_total");
        eprintln!(
            "contention: {commits} commits, {retries} client retries + {server_retries} server retries ({:.2} per commit), slowest statement {slowest:?}",
            (retries + server_retries) as f64 / commits.max(1) as f64
        );
        assert_eq!(total as u64, increments.load(Ordering::SeqCst), "lost or phantom increments");
        assert!(slowest <= MAX_STATEMENT, "a statement took {slowest:?}");
        for (s, c) in per_second.iter().take(DURATION.as_secs() as usize).enumerate() {
            assert!(
                c.load(Ordering::Relaxed) > 0,
                "no commit in second {s} of the run"
            );
        }
    });
}
