//! SERIALIZABLE, not just snapshot isolation (issue 4): write skew is refused.
//!
//! The classic anomaly: two doctors are on call; each transaction checks that two are on
//! call and takes one off. Under snapshot isolation both commit and nobody is on call;
//! under SERIALIZABLE the second commit fails with 40001. Checked with both rows in one
//! range (one-phase commit with the refresh inside) and split into two ranges on two cores
//! (two-phase commit with a refresh step). Transactions whose reads nobody changed commit,
//! read-only transactions are never refused, and a read made stale by a committed write
//! fails the reader's commit. G2 over a predicate (two transactions each find a span
//! empty and insert into it) is refused too.

mod common;

use common::{ServerOptions, TestServer};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

async fn on_call(c: &Client) -> i64 {
    c.query_one("SELECT count(*) FROM doctors WHERE on_call", &[])
        .await
        .expect("count")
        .get(0)
}

/// Runs the write skew on rows `a` and `b`; returns the two commit results.
async fn write_skew(t1: &Client, t2: &Client, a: i64, b: i64) -> (bool, Option<SqlState>) {
    t1.batch_execute("BEGIN").await.unwrap();
    t2.batch_execute("BEGIN").await.unwrap();
    assert_eq!(on_call(t1).await, 2);
    assert_eq!(on_call(t2).await, 2);
    t1.execute("UPDATE doctors SET on_call = false WHERE id = $1", &[&a])
        .await
        .unwrap();
    t2.execute("UPDATE doctors SET on_call = false WHERE id = $1", &[&b])
        .await
        .unwrap();
    let first = t1.batch_execute("COMMIT").await.is_ok();
    let second = match t2.batch_execute("COMMIT").await {
        Ok(()) => None,
        Err(e) => {
            let _ = t2.batch_execute("ROLLBACK").await;
            Some(e.code().cloned().unwrap_or(SqlState::INTERNAL_ERROR))
        }
    };
    (first, second)
}

async fn reset(c: &Client) {
    c.batch_execute("UPDATE doctors SET on_call = true")
        .await
        .unwrap();
}

/// A two-core server, its connection settings and a runtime to drive clients.
fn two_core_server() -> (TestServer, tokio_postgres::Config, tokio::runtime::Runtime) {
    let server = TestServer::start(&ServerOptions {
        cores: Some(2),
        ..Default::default()
    })
    .expect("start");
    let config = server.config(common::DEFAULT_DATABASE);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (server, config, runtime)
}

#[test]
fn write_skew_is_refused_within_and_across_ranges() {
    let (_server, config, runtime) = two_core_server();
    runtime.block_on(async {
        let admin = common::connect(&config).await.unwrap();
        let t1 = common::connect(&config).await.unwrap();
        let t2 = common::connect(&config).await.unwrap();
        admin
            .batch_execute(
                "CREATE TABLE doctors (id INT8 PRIMARY KEY, on_call BOOL NOT NULL);
                 INSERT INTO doctors VALUES (1, true), (2, true), (3, true), (4, true)",
            )
            .await
            .unwrap();
        // Only rows 1 and 2 matter for the skew; keep 3 and 4 off call.
        admin
            .batch_execute("UPDATE doctors SET on_call = false WHERE id > 2")
            .await
            .unwrap();

        // One range: the refresh runs inside the one-phase commit.
        let (first, second) = write_skew(&t1, &t2, 1, 2).await;
        assert!(first, "the first commit succeeds");
        assert_eq!(second, Some(SqlState::T_R_SERIALIZATION_FAILURE));
        assert_eq!(on_call(&admin).await, 1, "one doctor stays on call");
        reset(&admin).await;
        admin
            .batch_execute("UPDATE doctors SET on_call = false WHERE id > 2")
            .await
            .unwrap();

        // Two ranges on two cores: two-phase commit with a refresh step.
        admin
            .batch_execute("ALTER TABLE doctors SPLIT AT VALUES (2)")
            .await
            .unwrap();
        let (first, second) = write_skew(&t1, &t2, 1, 2).await;
        assert!(first);
        assert_eq!(second, Some(SqlState::T_R_SERIALIZATION_FAILURE));
        assert_eq!(on_call(&admin).await, 1);
        reset(&admin).await;

        // Disjoint read and write sets: both commit.
        t1.batch_execute("BEGIN").await.unwrap();
        t2.batch_execute("BEGIN").await.unwrap();
        t1.query("SELECT on_call FROM doctors WHERE id = 1", &[])
            .await
            .unwrap();
        t2.query("SELECT on_call FROM doctors WHERE id = 2", &[])
            .await
            .unwrap();
        t1.execute("UPDATE doctors SET on_call = false WHERE id = 1", &[])
            .await
            .unwrap();
        t2.execute("UPDATE doctors SET on_call = false WHERE id = 2", &[])
            .await
            .unwrap();
        t1.batch_execute("COMMIT").await.expect("disjoint t1");
        t2.batch_execute("COMMIT").await.expect("disjoint t2");
        reset(&admin).await;

        // A read-only transaction is never refused, whatever commits meanwhile.
        t1.batch_execute("BEGIN").await.unwrap();
        assert_eq!(on_call(&t1).await, 4);
        admin
            .batch_execute("UPDATE doctors SET on_call = false WHERE id = 3")
            .await
            .unwrap();
        assert_eq!(on_call(&t1).await, 4, "one snapshot");
        t1.batch_execute("COMMIT").await.expect("read-only commit");

        // A stale read: t1 reads row 4, someone else changes it, t1 writes row 1 → 40001.
        t1.batch_execute("BEGIN").await.unwrap();
        let v: bool = t1
            .query_one("SELECT on_call FROM doctors WHERE id = 4", &[])
            .await
            .unwrap()
            .get(0);
        assert!(v);
        admin
            .batch_execute("UPDATE doctors SET on_call = false WHERE id = 4")
            .await
            .unwrap();
        t1.execute("UPDATE doctors SET on_call = false WHERE id = 1", &[])
            .await
            .unwrap();
        let err = t1.batch_execute("COMMIT").await.expect_err("stale read");
        assert_eq!(err.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE));
        let one: bool = admin
            .query_one("SELECT on_call FROM doctors WHERE id = 1", &[])
            .await
            .unwrap()
            .get(0);
        assert!(one, "the refused transaction wrote nothing");

        // G2 over a predicate: each transaction sees no booking in [100, 200) and books
        // one; the second to commit is refused (its scanned span changed).
        admin
            .batch_execute("CREATE TABLE bookings (k INT8 PRIMARY KEY, who TEXT)")
            .await
            .unwrap();
        let t2 = common::connect(&config).await.unwrap();
        for (c, _) in [(&t1, 150i64), (&t2, 160i64)] {
            c.batch_execute("BEGIN").await.unwrap();
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM bookings WHERE k >= 100 AND k < 200",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 0);
        }
        t1.execute("INSERT INTO bookings VALUES (150, 'a')", &[])
            .await
            .unwrap();
        t2.execute("INSERT INTO bookings VALUES (160, 'b')", &[])
            .await
            .unwrap();
        t1.batch_execute("COMMIT").await.expect("first booking");
        let err = t2.batch_execute("COMMIT").await.expect_err("G2 refused");
        assert_eq!(err.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE));
        let n: i64 = admin
            .query_one("SELECT count(*) FROM bookings", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "one booking in the span");

        // CockroachDB's client-side retry protocol: the 40001 surfaces at RELEASE
        // SAVEPOINT cockroach_restart; ROLLBACK TO it restarts the transaction, which then
        // sees the other commit.
        admin
            .batch_execute(
                "UPDATE doctors SET on_call = true WHERE id <= 2;
                 UPDATE doctors SET on_call = false WHERE id > 2",
            )
            .await
            .unwrap();
        for c in [&t1, &t2] {
            c.batch_execute("BEGIN; SAVEPOINT cockroach_restart")
                .await
                .unwrap();
            assert_eq!(on_call(c).await, 2);
        }
        t1.execute("UPDATE doctors SET on_call = false WHERE id = 1", &[])
            .await
            .unwrap();
        t2.execute("UPDATE doctors SET on_call = false WHERE id = 2", &[])
            .await
            .unwrap();
        t1.batch_execute("RELEASE SAVEPOINT cockroach_restart; COMMIT")
            .await
            .expect("t1 commits");
        let err = t2
            .batch_execute("RELEASE SAVEPOINT cockroach_restart")
            .await
            .expect_err("t2 must retry");
        assert_eq!(err.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE));
        t2.batch_execute("ROLLBACK TO SAVEPOINT cockroach_restart")
            .await
            .unwrap();
        assert_eq!(on_call(&t2).await, 1, "the retry sees t1's commit");
        t2.batch_execute("RELEASE SAVEPOINT cockroach_restart; COMMIT")
            .await
            .expect("t2's retry commits");
        assert_eq!(on_call(&admin).await, 1);
    });
}

/// `AS OF SYSTEM TIME` reads the past: at a `cluster_logical_timestamp()` taken earlier,
/// at an interval before now, never in the future, and only outside explicit transactions.
#[test]
fn as_of_system_time_reads_the_past() {
    let (_server, config, runtime) = two_core_server();
    runtime.block_on(async {
        let c = common::connect(&config).await.unwrap();
        c.batch_execute(
            "CREATE TABLE ao (k INT8 PRIMARY KEY, v TEXT); INSERT INTO ao VALUES (1, 'old')",
        )
        .await
        .unwrap();
        let ts: String = c
            .query_one("SELECT cluster_logical_timestamp()::TEXT", &[])
            .await
            .unwrap()
            .get(0);
        assert!(ts.contains('.'), "HLC decimal: {ts}");
        c.batch_execute("UPDATE ao SET v = 'new' WHERE k = 1; INSERT INTO ao VALUES (2, 'two')")
            .await
            .unwrap();
        let at = |sql: String| {
            let c = &c;
            async move {
                c.query(&sql, &[]).await.map(|rows| {
                    rows.iter()
                        .map(|r| r.get::<_, String>(0))
                        .collect::<Vec<_>>()
                })
            }
        };
        assert_eq!(
            at(format!(
                "SELECT v FROM ao AS OF SYSTEM TIME '{ts}' ORDER BY k"
            ))
            .await
            .unwrap(),
            vec!["old".to_string()]
        );
        assert_eq!(
            at(format!(
                "SELECT v FROM ao AS OF SYSTEM TIME {ts} WHERE k = 1"
            ))
            .await
            .unwrap(),
            vec!["old".to_string()]
        );
        assert_eq!(
            at("SELECT v FROM ao AS OF SYSTEM TIME '-0s' ORDER BY k".into())
                .await
                .unwrap(),
            vec!["new".to_string(), "two".to_string()]
        );
        assert!(at("SELECT v FROM ao AS OF SYSTEM TIME '-1h'".into())
            .await
            .unwrap()
            .is_empty());
        let future = at("SELECT v FROM ao AS OF SYSTEM TIME '2999-01-01 00:00:00'".into())
            .await
            .expect_err("future");
        assert_eq!(future.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
        c.batch_execute("BEGIN").await.unwrap();
        let explicit = at("SELECT v FROM ao AS OF SYSTEM TIME '-1s'".into())
            .await
            .expect_err("explicit");
        assert_eq!(explicit.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED));
        c.batch_execute("ROLLBACK").await.unwrap();
    });
}

/// READ COMMITTED as PostgreSQL has it: each statement sees a fresh snapshot (a
/// non-repeatable read is allowed), write skew is allowed, a lost update is not (here the
/// late writer gets 40001 where PostgreSQL would wait and re-apply).
#[test]
fn read_committed_reads_per_statement_and_loses_no_update() {
    let (_server, config, runtime) = two_core_server();
    runtime.block_on(async {
        let admin = common::connect(&config).await.unwrap();
        let t1 = common::connect(&config).await.unwrap();
        let t2 = common::connect(&config).await.unwrap();
        admin
            .batch_execute(
                "CREATE TABLE rc (k INT8 PRIMARY KEY, n INT8 NOT NULL);
                 INSERT INTO rc VALUES (1, 0), (2, 0)",
            )
            .await
            .unwrap();
        assert_eq!(level(&t1).await, "serializable");

        // Non-repeatable read.
        t1.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .unwrap();
        assert_eq!(level(&t1).await, "read committed");
        assert_eq!(rc_n(&t1, 1).await, 0);
        admin
            .batch_execute("UPDATE rc SET n = 5 WHERE k = 1")
            .await
            .unwrap();
        assert_eq!(
            rc_n(&t1, 1).await,
            5,
            "each statement reads a fresh snapshot"
        );
        t1.batch_execute("COMMIT").await.unwrap();
        assert_eq!(level(&t1).await, "serializable");

        // Write skew is allowed under READ COMMITTED (as in PostgreSQL).
        for c in [&t1, &t2] {
            c.batch_execute("SET default_transaction_isolation = 'read committed'; BEGIN")
                .await
                .unwrap();
            assert_eq!(level(c).await, "read committed");
            let sum: i64 = c
                .query_one("SELECT sum(n)::INT8 FROM rc", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(sum, 5);
        }
        t1.batch_execute("UPDATE rc SET n = n + 1 WHERE k = 1")
            .await
            .unwrap();
        t2.batch_execute("UPDATE rc SET n = n + 1 WHERE k = 2")
            .await
            .unwrap();
        t1.batch_execute("COMMIT").await.expect("t1");
        t2.batch_execute("COMMIT")
            .await
            .expect("t2: write skew allowed");

        // No lost update: t1's increment was computed from a value admin then changed.
        t1.batch_execute("BEGIN").await.unwrap();
        t1.batch_execute("UPDATE rc SET n = n + 1 WHERE k = 1")
            .await
            .unwrap();
        admin
            .batch_execute("UPDATE rc SET n = n + 10 WHERE k = 1")
            .await
            .unwrap();
        match t1.batch_execute("COMMIT").await {
            Ok(()) => assert_eq!(rc_n(&admin, 1).await, 6 + 10 + 1, "both increments"),
            Err(e) => {
                assert_eq!(e.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE));
                assert_eq!(
                    rc_n(&admin, 1).await,
                    6 + 10,
                    "the refused one wrote nothing"
                );
            }
        }
    });
}

async fn level(c: &Client) -> String {
    c.simple_query("SHOW TRANSACTION ISOLATION LEVEL")
        .await
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|s| s.to_string()),
            _ => None,
        })
        .unwrap()
}

async fn rc_n(c: &Client, k: i64) -> i64 {
    c.query_one("SELECT n FROM rc WHERE k = $1", &[&k])
        .await
        .unwrap()
        .get(0)
}
