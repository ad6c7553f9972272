//! Transactions that write to two tables (two ranges, usually on two cores) commit with
//! two-phase commit: durable prepare records on each range, then a decision record. A
//! SIGKILL at any point must leave each transaction wholly present or wholly absent after
//! restart, and every acknowledged one present (atomicity across ranges, issue 4).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ServerOptions, TempDir, TestServer};

const WRITERS: usize = 4;

#[test]
fn cross_range_transactions_are_atomic_across_sigkill() {
    let dir = TempDir::new("chitin-2pc").expect("temp dir");
    let store = dir.path().join("store");
    let log = dir.path().join("server.log");
    let options = ServerOptions {
        cores: Some(2),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for round in 0..2u64 {
        let mut server = TestServer::start_on(&store, &log, &options).expect("server");
        let config = server.config("defaultdb");
        let acked: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
        rt.block_on(async {
            let client = common::connect(&config).await.expect("connect");
            if round == 0 {
                // Table ids differ by one, so the two ranges sit on different cores.
                client
                    .batch_execute(
                        "CREATE TABLE a (id INT8 PRIMARY KEY, v INT8); CREATE TABLE b (id INT8 PRIMARY KEY, v INT8)",
                    )
                    .await
                    .expect("schema");
            }
            let stop_at = Instant::now() + Duration::from_millis(700 + 300 * round);
            let mut tasks = Vec::new();
            for w in 0..WRITERS as i64 {
                let config = config.clone();
                let acked = acked.clone();
                tasks.push(tokio::spawn(async move {
                    let Ok(client) = common::connect(&config).await else { return };
                    let mut n = 0i64;
                    loop {
                        let id = (round as i64) * 1_000_000 + w * 100_000 + n;
                        n += 1;
                        let sql = format!(
                            "BEGIN; INSERT INTO a VALUES ({id}, {n}); INSERT INTO b VALUES ({id}, {n}); COMMIT"
                        );
                        match client.batch_execute(&sql).await {
                            Ok(()) => {
                                acked.lock().unwrap().insert(id);
                            }
                            Err(_) => return, // killed (or a retryable error: stop here)
                        }
                        if Instant::now() > stop_at + Duration::from_secs(30) {
                            return;
                        }
                    }
                }));
            }
            tokio::time::sleep(stop_at.saturating_duration_since(Instant::now())).await;
            server.kill();
            for t in tasks {
                let _ = t.await;
            }
        });
        // Restart and check.
        let server = TestServer::start_on(&store, &log, &options).expect("restart");
        let config = server.config("defaultdb");
        rt.block_on(async {
            let client = common::connect(&config)
                .await
                .expect("connect after restart");
            let ids = |rows: Vec<tokio_postgres::Row>| -> BTreeSet<i64> {
                rows.iter().map(|r| r.get::<_, i64>(0)).collect()
            };
            let in_a = ids(client.query("SELECT id FROM a", &[]).await.expect("read a"));
            let in_b = ids(client.query("SELECT id FROM b", &[]).await.expect("read b"));
            let torn: Vec<_> = in_a.symmetric_difference(&in_b).collect();
            assert!(
                torn.is_empty(),
                "torn transactions after kill -9 (round {round}): {torn:?}"
            );
            let acked = acked.lock().unwrap();
            let lost: Vec<_> = acked.iter().filter(|id| !in_a.contains(id)).collect();
            assert!(
                lost.is_empty(),
                "acknowledged transactions lost (round {round}): {lost:?}"
            );
            assert!(
                !acked.is_empty(),
                "no transaction committed in round {round}"
            );
        });
        drop(server);
    }
}
