//! The raft log is truncated once the engine has durably applied it, and a node restarts
//! from a truncated log (issue 2, item 4: the raft log is the WAL).
//!
//! More rows than one memtable holds are written, so the LSM engine flushes and records
//! the applied index durably; the node then drops those raft log entries
//! (`raft_log_truncated_entries_total` in `/_status/vars` grows). More rows follow, the
//! node is killed with SIGKILL, and after restart — which now starts each range's raft log
//! after the truncated prefix and replays only the rest — every row is there, and writes
//! go on.

mod common;

use std::time::{Duration, Instant};

use common::{ServerOptions, TempDir, TestServer};
use tokio_postgres::Client;

/// Rows of `ROW_BYTES` written before the truncation check: more than a 16 MiB memtable.
const ROWS: i64 = 24_000;
const ROW_BYTES: usize = 1000;
const BATCH: i64 = 500;

async fn insert(client: &Client, from: i64, to: i64) {
    let mut k = from;
    while k < to {
        let end = (k + BATCH).min(to);
        let values: Vec<String> = (k..end)
            .map(|i| format!("({i}, repeat('x', {ROW_BYTES}))"))
            .collect();
        client
            .batch_execute(&format!("INSERT INTO big VALUES {}", values.join(",")))
            .await
            .unwrap_or_else(|e| panic!("insert {k}..{end}: {e:?}"));
        k = end;
    }
}

async fn count(client: &Client) -> (i64, i64) {
    let row = client
        .query_one("SELECT count(*), sum(length(v))::INT8 FROM big", &[])
        .await
        .expect("count");
    (row.get(0), row.get(1))
}

#[test]
fn truncated_raft_log_recovers_after_sigkill() {
    let dir = TempDir::new("chitin-logtrunc").expect("temp dir");
    let store = dir.path().join("store");
    let log = dir.path().join("server.log");
    let options = ServerOptions {
        cores: Some(1),
        ..Default::default()
    };
    let mut server = TestServer::start_on(&store, &log, &options).expect("start");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = server.config(common::DEFAULT_DATABASE);
    let http = server.http_addr;
    runtime.block_on(async {
        let client = common::connect(&config).await.expect("connect");
        client
            .batch_execute("CREATE TABLE big (k INT8 PRIMARY KEY, v TEXT)")
            .await
            .unwrap();
        insert(&client, 0, ROWS).await;
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::status_var(http, "raft_log_truncated_entries_total") == 0 {
        assert!(
            Instant::now() < deadline,
            "the raft log was never truncated\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    runtime.block_on(async {
        let client = common::connect(&config).await.expect("connect");
        insert(&client, ROWS, ROWS + 2_000).await;
    });
    server.kill();
    let server = TestServer::start_on(&store, &log, &options).expect("restart after kill");
    let config = server.config(common::DEFAULT_DATABASE);
    runtime.block_on(async {
        let client = common::connect(&config).await.expect("connect");
        let n = ROWS + 2_000;
        assert_eq!(count(&client).await, (n, n * ROW_BYTES as i64));
        insert(&client, n, n + 100).await;
        assert_eq!(
            count(&client).await,
            (n + 100, (n + 100) * ROW_BYTES as i64)
        );
    });
    drop(server);
}
