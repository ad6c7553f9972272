//! What a commit costs in consensus (issue 4, "fast commits"), counted by the server's own
//! metrics: an implicit UPDATE of one row proposes exactly one raft command (one-phase
//! commit), and an explicit transaction writing to two ranges on two cores is answered
//! after one round of consensus (parallel commit: the STAGING record and both prepares
//! are written at once; making the outcome explicit happens after the answer).

mod common;

use std::time::{Duration, Instant};

use common::{ServerOptions, TestServer};

#[test]
fn single_range_update_is_one_proposal_and_multi_range_commit_is_one_round() {
    let server = TestServer::start(&ServerOptions {
        cores: Some(2),
        ..Default::default()
    })
    .expect("start");
    let config = server.config(common::DEFAULT_DATABASE);
    let http = server.http_addr;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let c = common::connect(&config).await.unwrap();
        c.batch_execute(
            "CREATE TABLE t (k INT8 PRIMARY KEY, v INT8 NOT NULL);
             INSERT INTO t SELECT g, 0 FROM generate_series(1, 10) AS g",
        )
        .await
        .unwrap();
        c.batch_execute("ALTER TABLE t SPLIT AT VALUES (6)")
            .await
            .unwrap();
        let ranges = c
            .simple_query("SHOW RANGES FROM TABLE t")
            .await
            .expect("show ranges");
        let rows = ranges
            .iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count();
        assert!(rows >= 2, "the table has two ranges");
        // Let the background work of the statements above settle.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let rounds = |name: &str| common::status_var(http, name);
        let n = 20u64;
        let proposals = rounds("raft_proposals_total");
        let one_phase = rounds("sql_txn_one_phase_commits_total");
        for _ in 0..n {
            c.execute("UPDATE t SET v = v + 1 WHERE k = 1", &[])
                .await
                .unwrap();
        }
        let proposed = rounds("raft_proposals_total") - proposals;
        println!("{n} single-row implicit UPDATEs proposed {proposed} raft commands");
        assert_eq!(proposed, n, "one raft proposal per single-range UPDATE");
        assert_eq!(rounds("sql_txn_one_phase_commits_total") - one_phase, n);

        let commit_rounds = rounds("sql_txn_commit_rounds_total");
        let parallel = rounds("sql_txn_parallel_commits_total");
        let slow = rounds("sql_txn_parallel_commit_slow_total");
        let started = Instant::now();
        for _ in 0..n {
            c.batch_execute(
                "BEGIN;
                 UPDATE t SET v = v + 1 WHERE k = 2;
                 UPDATE t SET v = v + 1 WHERE k = 8;
                 COMMIT",
            )
            .await
            .unwrap();
        }
        let elapsed = started.elapsed();
        let waited = rounds("sql_txn_commit_rounds_total") - commit_rounds;
        let fast = rounds("sql_txn_parallel_commits_total") - parallel;
        let slowed = rounds("sql_txn_parallel_commit_slow_total") - slow;
        println!(
            "{n} two-range transactions: {fast} parallel commits in one round, {slowed} in \
             two, {waited} rounds waited for, {:.2} ms per transaction",
            elapsed.as_secs_f64() * 1000.0 / n as f64
        );
        assert_eq!(fast + slowed, n, "every commit was a parallel commit");
        assert_eq!(fast, n, "no participant pushed a lone client's commit");
        assert_eq!(waited, n, "one round of consensus per multi-range commit");

        // Both writes of every transaction are there (readers wait for the background
        // resolution, they never miss a committed write).
        let rows = c
            .query("SELECT k, v FROM t WHERE k IN (1, 2, 8) ORDER BY k", &[])
            .await
            .unwrap();
        let got: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(got, vec![(1, n as i64), (2, n as i64), (8, n as i64)]);
    });
}
