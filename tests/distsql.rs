//! DistSQL (issue 6, item 4) on a node with two cores: a table split into ranges on both
//! cores is scanned by one flow per core (table reader, filter, partial aggregation where
//! the core owns the data) and merged at the gateway. Every query answers exactly what the
//! gateway-only execution (`SET distsql = off`) answers, `EXPLAIN (DISTSQL)` shows a flow per
//! owning core, `EXPLAIN ANALYZE (DISTSQL)` shows that the flows read every row where it
//! lives, a transaction sees its own writes, and readers summing the table while writers
//! move amounts between rows always see the same total (every flow reads the same
//! snapshot).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ServerOptions, TestServer};
use tokio_postgres::{Client, SimpleQueryMessage};

const ROWS: i64 = 30_000;

async fn rows_of(client: &Client, sql: &str) -> Vec<Vec<String>> {
    tokio::time::timeout(Duration::from_secs(120), client.simple_query(sql))
        .await
        .unwrap_or_else(|_| panic!("{sql}: timed out"))
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

async fn lines_of(client: &Client, sql: &str) -> Vec<String> {
    rows_of(client, sql)
        .await
        .into_iter()
        .map(|r| r[0].trim().to_string())
        .collect()
}

/// Queries whose answers must not depend on where they run.
const QUERIES: &[&str] = &[
    "SELECT count(*), sum(v), avg(v), min(v), max(v) FROM t",
    "SELECT g, count(*), count(s), sum(v), avg(f), min(s), max(n), sum(n) FROM t GROUP BY g ORDER BY g",
    "SELECT g % 3 AS h, bool_and(v > 5), bool_or(v > 29990), stddev(v), variance(f) FROM t GROUP BY h ORDER BY h",
    "SELECT g, string_agg(s, ',' ORDER BY k DESC), array_agg(k ORDER BY k) FROM t WHERE k % 1000 = 7 GROUP BY g ORDER BY g",
    "SELECT g, count(DISTINCT v % 100) FROM t GROUP BY g ORDER BY g",
    "SELECT g, sum(v) FROM t WHERE s LIKE 'row 1%' GROUP BY g HAVING sum(v) > 1000000 ORDER BY 2 DESC",
    "SELECT count(*), sum(v) FROM t WHERE v < 0",
    "SELECT g, count(*) FROM t WHERE v < 0 GROUP BY g",
    "SELECT k, v, s FROM t WHERE v % 997 = 0 ORDER BY v DESC",
    "SELECT k, s FROM t WHERE k BETWEEN 4000 AND 26000 AND v % 1999 = 0",
    "SELECT DISTINCT g FROM t WHERE k > 100 ORDER BY g",
    "SELECT k, sum(v) OVER (PARTITION BY g ORDER BY k) FROM t WHERE k % 3001 = 0 ORDER BY k",
    "SELECT count(*) FILTER (WHERE g = 1), sum(v) FILTER (WHERE s > 'row 2') FROM t",
    "SELECT g, v FROM t WHERE k > 29990 ORDER BY g, v LIMIT 4 OFFSET 1",
    // More rows than one page of a flow: answered in pages.
    "SELECT k, v FROM t WHERE v % 5 <> 0",
    // LIMITs in key order: the flows stop early.
    "SELECT k, s FROM t LIMIT 5",
    "SELECT k FROM t WHERE v % 1000 = 0 LIMIT 7 OFFSET 2",
    "SELECT k FROM t WHERE v % 1000 = 0 ORDER BY k LIMIT 3",
    "SELECT k FROM t WHERE v > 29995 LIMIT 10",
    // Joins: each table input read by flows, joined at the gateway.
    "SELECT a.k, b.s FROM t a JOIN t b ON b.k = a.k + 1 WHERE a.v % 997 = 0 ORDER BY a.k",
    "SELECT count(*), sum(b.v) FROM t a JOIN t b ON a.k = b.k WHERE a.g = 3 AND b.v > 100",
    "SELECT a.g, count(b.k) FROM t a LEFT JOIN t b ON b.k = a.g WHERE a.k < 20000 GROUP BY a.g ORDER BY a.g",
    // ORDER BY … LIMIT not in key order: each flow answers its top rows.
    "SELECT k, v FROM t ORDER BY v DESC LIMIT 5",
    "SELECT k, s FROM t WHERE g = 2 ORDER BY s LIMIT 7 OFFSET 3",
    "SELECT k, f * 2 AS d FROM t ORDER BY d DESC, k LIMIT 4",
    "SELECT k, n FROM t ORDER BY n % 10, k DESC LIMIT 6",
    // ORDER BY without LIMIT: each flow sorts its pages, the gateway merges the runs;
    // in key order nothing is sorted.
    "SELECT k, v FROM t WHERE v % 3 <> 0 ORDER BY v DESC",
    "SELECT k, g, s FROM t ORDER BY g, s DESC",
    "SELECT k, f * 2 AS d FROM t WHERE g <> 4 ORDER BY d DESC, k",
    "SELECT k, n FROM t ORDER BY n % 10, k DESC",
    "SELECT k, s FROM t WHERE v % 4 = 1 ORDER BY k",
    "SELECT k FROM t ORDER BY k DESC",
    // A window or a set-returning function needs more rows than the LIMIT.
    "SELECT k, count(*) OVER () FROM t WHERE k % 5000 = 1 LIMIT 2",
    "SELECT k, generate_series(1, (k % 3)::INT4) FROM t WHERE k < 20 LIMIT 5",
];

/// A server with two cores, and a runtime for its clients.
fn two_cores() -> (TestServer, tokio::runtime::Runtime) {
    let server = TestServer::start(&ServerOptions {
        cores: Some(2),
        ..ServerOptions::default()
    })
    .expect("start");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    (server, runtime)
}

#[test]
fn flows_per_core_answer_what_the_gateway_answers() {
    let (server, runtime) = two_cores();
    let config = server.config(common::DEFAULT_DATABASE);
    runtime.block_on(async {
        let c = common::connect(&config).await.expect("connect");
        c.batch_execute(
            "CREATE TABLE t (k INT8 PRIMARY KEY, g INT8, v INT8, s TEXT, f FLOAT8, n NUMERIC)",
        )
        .await
        .unwrap();
        c.batch_execute(&format!(
            "INSERT INTO t SELECT i, i % 7, i, 'row ' || i::TEXT, i::FLOAT8 / 4, i::NUMERIC / 8 \
             FROM generate_series(1, {ROWS}) AS i"
        ))
        .await
        .unwrap();
        for at in [5_000, 10_000, 15_000, 20_000, 25_000] {
            c.batch_execute(&format!("ALTER TABLE t SPLIT AT VALUES ({at})"))
                .await
                .unwrap();
        }
        let cores: std::collections::BTreeSet<String> = rows_of(&c, "SHOW RANGES FROM TABLE t")
            .await
            .into_iter()
            .map(|r| r[4].clone())
            .collect();
        assert_eq!(
            cores.into_iter().collect::<Vec<_>>(),
            vec!["0", "1"],
            "the table's ranges live on both cores"
        );

        // The same answers with and without flows.
        for q in QUERIES {
            c.batch_execute("SET distsql = off").await.unwrap();
            let gateway = rows_of(&c, q).await;
            c.batch_execute("SET distsql = on").await.unwrap();
            let flows = rows_of(&c, q).await;
            assert_eq!(flows, gateway, "{q}");
            c.batch_execute("SET distsql = auto").await.unwrap();
            assert_eq!(rows_of(&c, q).await, gateway, "{q} (auto)");
        }
        // And the right ones.
        let total = rows_of(&c, "SELECT count(*), sum(v) FROM t").await;
        assert_eq!(
            total,
            vec![vec![ROWS.to_string(), (ROWS * (ROWS + 1) / 2).to_string()]]
        );
        let per_group = rows_of(&c, "SELECT g, count(*) FROM t GROUP BY g ORDER BY g").await;
        assert_eq!(per_group.len(), 7);
        for (g, row) in per_group.iter().enumerate() {
            let want = (1..=ROWS).filter(|i| i % 7 == g as i64).count();
            assert_eq!(row, &vec![g.to_string(), want.to_string()]);
        }
        // Parameters travel with the flows.
        let stmt = c
            .prepare(
                "SELECT g, count(*), sum(v)::INT8 FROM t WHERE v > $1 AND s <> $2 GROUP BY g ORDER BY g",
            )
            .await
            .unwrap();
        let got = c.query(&stmt, &[&29_000i64, &"row 29999"]).await.unwrap();
        let want: i64 = (29_001..=ROWS).filter(|i| *i != 29_999).sum();
        assert_eq!(got.iter().map(|r| r.get::<_, i64>(2)).sum::<i64>(), want);

        // EXPLAIN (DISTSQL): one flow per owning core, partial aggregation there.
        let plan = lines_of(
            &c,
            "EXPLAIN (DISTSQL) SELECT g, sum(v) FROM t WHERE v > 10 GROUP BY g",
        )
        .await;
        let text = plan.join("\n");
        assert!(
            text.contains("distribution: full (2 flows over 6 ranges)"),
            "{text}"
        );
        for core in 0..2 {
            assert!(
                plan.iter().any(|l| l.starts_with("flow ")
                    && l.contains(&format!("node 1 core {core}:"))
                    && l.contains("table reader t → filter → partial aggregation")
                    && l.contains("(3 spans)")),
                "no flow on core {core}:\n{text}"
            );
        }
        assert!(text.contains("final aggregation"), "{text}");
        // ANALYZE: each core read its own rows; only groups crossed cores.
        let ran = lines_of(
            &c,
            "EXPLAIN ANALYZE (DISTSQL) SELECT g, sum(v) FROM t GROUP BY g",
        )
        .await;
        let stats: Vec<&String> = ran.iter().filter(|l| l.starts_with("ran on ")).collect();
        assert_eq!(stats.len(), 2, "{ran:?}");
        for l in &stats {
            // Seven groups from each of its three spans.
            assert!(l.contains(", 21 groups out"), "{l}");
        }
        assert_eq!(common::flow_rows_read(&ran), ROWS as u64);
        // ANALYZE lists each operator with its rows out, time and place.
        let ops: Vec<&String> = ran
            .iter()
            .skip_while(|l| !l.starts_with("operators (rows out, time, where):"))
            .collect();
        let text = ran.join("\n");
        assert!(
            ops.iter().any(|l| l.starts_with("scan t → partial aggregation: 42 rows, ")
                && (l.ends_with("2 flows on node 1 core 0, node 1 core 1")
                    || l.ends_with("2 flows on node 1 core 1, node 1 core 0"))),
            "{text}"
        );
        assert!(
            ops.iter()
                .any(|l| l.starts_with("group → project: 7 rows, ") && l.contains("gateway node 1 core ")),
            "{text}"
        );
        // Gateway-only when asked, and for a LIMIT in key order.
        c.batch_execute("SET distsql = off").await.unwrap();
        let off = lines_of(&c, "EXPLAIN (DISTSQL) SELECT sum(v) FROM t").await;
        assert!(
            off.iter()
                .any(|l| l == "distribution: local (distsql = off)"),
            "{off:?}"
        );
        // Plain EXPLAIN ANALYZE on the gateway: each operator with its rows and place.
        let ran = lines_of(
            &c,
            "EXPLAIN ANALYZE SELECT g, count(*) FROM t WHERE v % 2 = 0 GROUP BY g ORDER BY g",
        )
        .await;
        let text = ran.join("\n");
        let ops: Vec<&String> = ran
            .iter()
            .skip_while(|l| !l.starts_with("operators (rows out, time, where):"))
            .collect();
        for want in [
            format!("scan t: full scan: {ROWS} rows, "),
            format!("filter: {} rows, ", ROWS / 2),
            "group → project → sort: 7 rows, ".to_string(),
        ] {
            assert!(
                ops.iter()
                    .any(|l| l.starts_with(&want) && l.contains("gateway node 1 core ")),
                "no {want:?} in:\n{text}"
            );
        }
        c.batch_execute("RESET distsql").await.unwrap();
        // A join's table inputs are read by flows on both cores.
        let joined = lines_of(
            &c,
            "EXPLAIN (DISTSQL) SELECT count(*) FROM t a JOIN t b ON a.k = b.k WHERE b.v > 5",
        )
        .await;
        let text = joined.join("\n");
        assert!(
            text.contains("distribution: partial (4 flows read join inputs)"),
            "{text}"
        );
        for core in 0..2 {
            assert!(
                joined.iter().any(|l| l.contains(&format!("node 1 core {core}:"))
                    && l.contains("table reader t → filter")),
                "no filtered input flow on core {core}:\n{text}"
            );
        }
        let ran = lines_of(
            &c,
            "EXPLAIN ANALYZE (DISTSQL) SELECT count(*) FROM t a JOIN t b ON a.k = b.k",
        )
        .await;
        let flows = ran.iter().filter(|l| l.starts_with("ran on ")).count();
        assert_eq!(flows, 4, "{ran:?}");
        // ORDER BY … LIMIT: each flow answers only its top rows.
        let top = lines_of(
            &c,
            "EXPLAIN (DISTSQL) SELECT k FROM t ORDER BY v DESC LIMIT 5",
        )
        .await;
        assert!(
            top.iter()
                .any(|l| l.contains("table reader t → top 5 by the ORDER BY")),
            "{top:?}"
        );
        let ran = lines_of(
            &c,
            "EXPLAIN ANALYZE (DISTSQL) SELECT k FROM t ORDER BY v DESC LIMIT 5",
        )
        .await;
        let outs: Vec<&String> = ran.iter().filter(|l| l.starts_with("ran on ")).collect();
        assert_eq!(outs.len(), 2, "{ran:?}");
        assert!(outs.iter().all(|l| l.contains(", 5 rows out")), "{ran:?}");
        // ORDER BY without LIMIT: sorted runs merged at the gateway.
        let merged = lines_of(&c, "EXPLAIN (DISTSQL) SELECT k FROM t ORDER BY v DESC").await;
        assert!(
            merged
                .iter()
                .any(|l| l.contains("table reader t → sort by the ORDER BY"))
                && merged
                    .iter()
                    .any(|l| l.contains(": ordered merge by the ORDER BY")),
            "{merged:?}"
        );
        // A LIMIT in key order distributes; its flows stop once the first rows are in.
        let limited = lines_of(&c, "EXPLAIN (DISTSQL) SELECT * FROM t LIMIT 3").await;
        assert!(
            limited.iter().any(|l| l.starts_with("distribution: full"))
                && limited
                    .iter()
                    .any(|l| l.contains("table reader t → first 3 rows")),
            "{limited:?}"
        );
        let ran = lines_of(
            &c,
            "EXPLAIN ANALYZE (DISTSQL) SELECT k FROM t WHERE v % 1000 = 0 LIMIT 3",
        )
        .await;
        let read = common::flow_rows_read(&ran);
        assert!(read > 0 && read < ROWS as u64 / 2, "{read} rows read: {ran:?}");
        let bad = c
            .batch_execute("SET distsql = sometimes")
            .await
            .unwrap_err();
        assert_eq!(
            bad.code(),
            Some(&tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE)
        );

        // A transaction's own writes are seen (its scan stays on the gateway).
        c.batch_execute("BEGIN; INSERT INTO t VALUES (100000, 1, 5, 'mine', 0, 0)")
            .await
            .unwrap();
        assert_eq!(
            rows_of(&c, "SELECT count(*) FROM t").await,
            vec![vec![(ROWS + 1).to_string()]]
        );
        c.batch_execute("ROLLBACK").await.unwrap();
    });
}

#[test]
fn concurrent_transfers_never_change_a_distributed_sum() {
    let (server, runtime) = two_cores();
    let config = server.config(common::DEFAULT_DATABASE);
    runtime.block_on(async {
        let c = common::connect(&config).await.expect("connect");
        c.batch_execute(
            "CREATE TABLE acct (id INT8 PRIMARY KEY, balance INT8); \
             INSERT INTO acct SELECT i, 1000 FROM generate_series(0, 3999) AS i",
        )
        .await
        .unwrap();
        for at in [1000, 2000, 3000] {
            c.batch_execute(&format!("ALTER TABLE acct SPLIT AT VALUES ({at})"))
                .await
                .unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let transfers = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
        for w in 0..2u64 {
            let (stop, transfers) = (stop.clone(), transfers.clone());
            let client = common::connect(&config).await.expect("connect");
            writers.push(tokio::spawn(async move {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ w;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Across ranges (and so cores): ids 1000 apart.
                    let from = x % 4000;
                    let to = (from + 1000 * (1 + (x >> 20) % 3)) % 4000;
                    let sql = format!(
                        "UPDATE acct SET balance = balance + CASE id WHEN {from} THEN -7 ELSE 7 END \
                         WHERE id IN ({from}, {to})"
                    );
                    match client.batch_execute(&sql).await {
                        Ok(()) => {
                            transfers.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE) => {}
                        Err(e) => panic!("{sql}: {e:?}"),
                    }
                }
            }));
        }
        let reader = common::connect(&config).await.expect("connect");
        reader.batch_execute("SET distsql = on").await.unwrap();
        let started = Instant::now();
        let mut reads = 0;
        while started.elapsed() < Duration::from_secs(6) {
            match reader
                .simple_query("SELECT sum(balance), count(*) FROM acct")
                .await
            {
                Ok(msgs) => {
                    let row = msgs
                        .into_iter()
                        .find_map(|m| match m {
                            SimpleQueryMessage::Row(r) => {
                                Some((r.get(0).unwrap().to_string(), r.get(1).unwrap().to_string()))
                            }
                            _ => None,
                        })
                        .unwrap();
                    assert_eq!(row, ("4000000".to_string(), "4000".to_string()));
                    reads += 1;
                }
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE) => {}
                Err(e) => panic!("sum: {e:?}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        let moved = transfers.load(Ordering::Relaxed);
        println!("{reads} distributed sums, {moved} transfers, total unchanged");
        assert!(reads >= 10 && moved >= 10, "{reads} reads, {moved} transfers");
    });
}
