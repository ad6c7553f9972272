//! Sequences and foreign keys under concurrency (issue 6, item 2).
//!
//! - `nextval` is atomic and not transactional (PostgreSQL's rule): sessions on two cores
//!   calling `nextval` on one sequence at once, some inside transactions they roll back,
//!   never get the same value twice, and together get exactly 1..=N (a value taken by a
//!   rolled-back transaction is used up, not handed out again). SERIAL inserts from
//!   several sessions get distinct ids.
//! - A foreign key holds while one session deletes parent rows and others insert child
//!   rows that reference them: whatever commits, no child row is left without its parent
//!   (the child's read of the parent row is validated at commit under SERIALIZABLE).
//!
//! `CHITIN_TEST_URL=postgresql://…` runs the same checks against another server (e.g.
//! PostgreSQL 15, where they pass too).

mod common;

use std::collections::HashSet;

use common::{ServerOptions, Target};
use tokio_postgres::error::SqlState;

const SESSIONS: usize = 6;
const CALLS: usize = 60;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn target() -> Target {
    Target::from_env(
        "CHITIN_TEST_URL",
        &ServerOptions {
            cores: Some(2),
            ..Default::default()
        },
    )
    .expect("server")
}

#[test]
fn concurrent_nextval_never_repeats_a_value() {
    let target = target();
    runtime().block_on(async {
        let config = common::fresh_database(&target, "seq_concurrency")
            .await
            .unwrap();
        let admin = common::connect(&config).await.unwrap();
        admin
            .batch_execute(
                "CREATE SEQUENCE s;
                 CREATE TABLE items (id SERIAL PRIMARY KEY, session INT NOT NULL)",
            )
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for n in 0..SESSIONS {
            let config = config.clone();
            tasks.push(tokio::spawn(async move {
                let c = common::connect(&config).await.unwrap();
                let mut got = Vec::new();
                for i in 0..CALLS {
                    // Every third call inside a transaction that rolls back: the value is
                    // still used up.
                    let in_txn = i % 3 == 0;
                    if in_txn {
                        c.batch_execute("BEGIN").await.unwrap();
                    }
                    let v: i64 = c
                        .query_one("SELECT nextval('s')", &[])
                        .await
                        .expect("nextval")
                        .get(0);
                    let cur: i64 = c
                        .query_one("SELECT currval('s')", &[])
                        .await
                        .expect("currval")
                        .get(0);
                    assert_eq!(v, cur, "currval is this session's last nextval");
                    if in_txn {
                        c.batch_execute("ROLLBACK").await.unwrap();
                    }
                    got.push(v);
                    c.execute("INSERT INTO items (session) VALUES ($1)", &[&(n as i32)])
                        .await
                        .expect("insert");
                }
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let distinct: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len(), "a value was handed out twice");
        let total = (SESSIONS * CALLS) as i64;
        assert_eq!(distinct, (1..=total).collect::<HashSet<i64>>());
        let next: i64 = admin
            .query_one("SELECT nextval('s')", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(next, total + 1);
        let row = admin
            .query_one(
                "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM items",
                &[],
            )
            .await
            .unwrap();
        let (count, distinct_ids, min, max): (i64, i64, i32, i32) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(count, total);
        assert_eq!(distinct_ids, total);
        assert_eq!((min, max), (1, total as i32));
    });
}

#[test]
fn foreign_key_holds_under_concurrent_parent_deletes() {
    const PARENTS: i32 = 40;
    let target = target();
    runtime().block_on(async {
        let config = common::fresh_database(&target, "fk_concurrency")
            .await
            .unwrap();
        let admin = common::connect(&config).await.unwrap();
        admin
            .batch_execute(
                "CREATE TABLE p (id INT PRIMARY KEY);
                 CREATE TABLE c (id SERIAL PRIMARY KEY, p_id INT NOT NULL REFERENCES p (id));
                 INSERT INTO p SELECT * FROM generate_series(1, 40)",
            )
            .await
            .unwrap();
        // Deletes parents from the top down, one per statement.
        let deleter = {
            let config = config.clone();
            tokio::spawn(async move {
                let c = common::connect(&config).await.unwrap();
                let mut deleted = 0;
                for id in (1..=PARENTS).rev() {
                    match c.execute("DELETE FROM p WHERE id = $1", &[&id]).await {
                        Ok(n) => deleted += n,
                        Err(e) => {
                            let code = e.code().cloned();
                            assert!(
                                code == Some(SqlState::FOREIGN_KEY_VIOLATION)
                                    || code == Some(SqlState::T_R_SERIALIZATION_FAILURE),
                                "delete: {e:?}"
                            );
                        }
                    }
                }
                deleted
            })
        };
        let mut inserters = Vec::new();
        for n in 0..3 {
            let config = config.clone();
            inserters.push(tokio::spawn(async move {
                let c = common::connect(&config).await.unwrap();
                let mut ok = 0;
                for i in 0..60 {
                    let p_id = PARENTS - ((i * 7 + n * 13) % PARENTS);
                    let r = if i % 2 == 0 {
                        c.execute("INSERT INTO c (p_id) VALUES ($1)", &[&p_id])
                            .await
                    } else {
                        // In an explicit transaction that reads first: the parent may go
                        // between the insert and the commit.
                        async {
                            c.batch_execute("BEGIN").await?;
                            c.query("SELECT count(*) FROM c", &[]).await?;
                            let n = c
                                .execute("INSERT INTO c (p_id) VALUES ($1)", &[&p_id])
                                .await?;
                            c.batch_execute("COMMIT").await?;
                            Ok(n)
                        }
                        .await
                    };
                    match r {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            let _ = c.batch_execute("ROLLBACK").await;
                            let code = e.code().cloned();
                            assert!(
                                code == Some(SqlState::FOREIGN_KEY_VIOLATION)
                                    || code == Some(SqlState::T_R_SERIALIZATION_FAILURE)
                                    || code == Some(SqlState::T_R_DEADLOCK_DETECTED),
                                "insert: {e:?}"
                            );
                        }
                    }
                }
                ok
            }));
        }
        let _deleted = deleter.await.unwrap();
        let mut inserted = 0;
        for t in inserters {
            inserted += t.await.unwrap();
        }
        let orphans: i64 = admin
            .query_one(
                "SELECT count(*) FROM c WHERE p_id NOT IN (SELECT id FROM p)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(orphans, 0, "child rows without their parent");
        let children: i64 = admin
            .query_one("SELECT count(*) FROM c", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(children, inserted as i64);
    });
}
