//! `SELECT … FOR UPDATE [NOWAIT | SKIP LOCKED]` across sessions (issue 4, SQL surface):
//! a row one transaction locked makes NOWAIT fail with 55P03, SKIP LOCKED leave it out,
//! and a plain FOR UPDATE wait until the holder commits and then return what it
//! committed. A job queue worked by four sessions with `… LIMIT 1 FOR UPDATE SKIP LOCKED`
//! hands every job to exactly one worker.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{ServerOptions, TestServer};
use tokio_postgres::error::SqlState;

#[test]
fn for_update_nowait_skip_locked_and_waiting() {
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
    runtime.block_on(async {
        let a = common::connect(&config).await.unwrap();
        let b = common::connect(&config).await.unwrap();
        a.batch_execute(
            "CREATE TABLE jobs (id INT8 PRIMARY KEY, state TEXT NOT NULL, worker INT8);
             INSERT INTO jobs SELECT g, 'pending', NULL FROM generate_series(1, 5) AS g",
        )
        .await
        .unwrap();

        a.batch_execute("BEGIN").await.unwrap();
        let held = a
            .query("SELECT id FROM jobs WHERE id = 1 FOR UPDATE", &[])
            .await
            .unwrap();
        assert_eq!(held.len(), 1);

        // NOWAIT: 55P03 at once, naming the relation.
        let started = Instant::now();
        let err = b
            .query("SELECT id FROM jobs WHERE id = 1 FOR UPDATE NOWAIT", &[])
            .await
            .expect_err("the row is locked");
        assert_eq!(err.code(), Some(&SqlState::LOCK_NOT_AVAILABLE), "{err:?}");
        let msg = err.as_db_error().unwrap().message().to_string();
        assert!(msg.contains("could not obtain lock on row in relation \"jobs\""), "{msg}");
        assert!(started.elapsed() < Duration::from_secs(1), "NOWAIT does not wait");
        // The same through a scan.
        let err = b
            .query("SELECT id FROM jobs WHERE state = 'pending' FOR UPDATE NOWAIT", &[])
            .await
            .expect_err("a scanned row is locked");
        assert_eq!(err.code(), Some(&SqlState::LOCK_NOT_AVAILABLE));

        // SKIP LOCKED: the next free row, by primary key and by scan.
        let rows = b
            .query(
                "SELECT id FROM jobs WHERE state = 'pending' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.iter().map(|r| r.get(0)).collect::<Vec<i64>>(), vec![2]);
        let rows = b
            .query("SELECT id FROM jobs WHERE id IN (1, 3) ORDER BY id FOR UPDATE SKIP LOCKED", &[])
            .await
            .unwrap();
        assert_eq!(rows.iter().map(|r| r.get(0)).collect::<Vec<i64>>(), vec![3]);

        // A plain FOR UPDATE waits for the holder and reads what it committed.
        let waiter = {
            let config = config.clone();
            tokio::spawn(async move {
                let c = common::connect(&config).await.unwrap();
                c.batch_execute("BEGIN").await.unwrap();
                let started = Instant::now();
                let row = c
                    .query_one("SELECT state, worker FROM jobs WHERE id = 1 FOR UPDATE", &[])
                    .await
                    .unwrap();
                let waited = started.elapsed();
                c.batch_execute("COMMIT").await.unwrap();
                (row.get::<_, String>(0), row.get::<_, Option<i64>>(1), waited)
            })
        };
        tokio::time::sleep(Duration::from_millis(400)).await;
        a.batch_execute("UPDATE jobs SET state = 'done', worker = 7 WHERE id = 1; COMMIT")
            .await
            .unwrap();
        let (state, worker, waited) = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the waiter finishes")
            .unwrap();
        assert_eq!((state.as_str(), worker), ("done", Some(7)));
        assert!(waited >= Duration::from_millis(300), "it waited ({waited:?})");
    });
}

#[test]
fn skip_locked_job_queue_hands_each_job_to_one_worker() {
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
    let jobs = 60i64;
    runtime.block_on(async {
        let c = common::connect(&config).await.unwrap();
        c.batch_execute(&format!(
            "CREATE TABLE queue (id INT8 PRIMARY KEY, state TEXT NOT NULL, worker INT8);
             INSERT INTO queue SELECT g, 'pending', NULL FROM generate_series(1, {jobs}) AS g"
        ))
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut workers = Vec::new();
        let t0 = Instant::now();
        for w in 0..4i64 {
            let config = config.clone();
            workers.push(tokio::spawn(async move {
                let c = common::connect(&config).await.unwrap();
                let (mut done, mut retries) = (0u64, 0u64);
                loop {
                    assert!(Instant::now() < deadline, "the queue drains in time");
                    c.batch_execute("BEGIN").await.unwrap();
                    let picked = c
                        .query(
                            "SELECT id FROM queue WHERE state = 'pending' ORDER BY id LIMIT 1 \
                             FOR UPDATE SKIP LOCKED",
                            &[],
                        )
                        .await;
                    let id: i64 = match picked {
                        Ok(rows) if rows.is_empty() => {
                            c.batch_execute("COMMIT").await.unwrap();
                            // Nothing free: done when nothing is pending at all.
                            let left: i64 = c
                                .query_one(
                                    "SELECT count(*) FROM queue WHERE state = 'pending'",
                                    &[],
                                )
                                .await
                                .unwrap()
                                .get(0);
                            if left == 0 {
                                return (done, retries);
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        }
                        Ok(rows) => rows[0].get(0),
                        Err(e) if e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) => {
                            retries += 1;
                            c.batch_execute("ROLLBACK").await.unwrap();
                            continue;
                        }
                        Err(e) => panic!("pick: {e:?}"),
                    };
                    let r = c
                        .execute(
                            "UPDATE queue SET state = 'done', worker = $1 WHERE id = $2",
                            &[&w, &id],
                        )
                        .await;
                    let r = match r {
                        Ok(_) => c.batch_execute("COMMIT").await,
                        Err(e) => Err(e),
                    };
                    match r {
                        Ok(()) => done += 1,
                        Err(e) if e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) => {
                            retries += 1;
                            let _ = c.batch_execute("ROLLBACK").await;
                        }
                        Err(e) => panic!("work: {e:?}"),
                    }
                }
            }));
        }
        let mut total = 0;
        for (w, h) in workers.into_iter().enumerate() {
            let (done, retries) = h.await.unwrap();
            println!("worker {w}: {done} jobs, {retries} retries");
            total += done;
        }
        println!("{jobs} jobs drained in {:?}", t0.elapsed());
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no worker stalls on a latch"
        );
        assert_eq!(total, jobs as u64, "every commit took a job");
        let rows = c
            .query(
                "SELECT worker, count(*) FROM queue GROUP BY worker ORDER BY worker",
                &[],
            )
            .await
            .unwrap();
        let by: BTreeMap<Option<i64>, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert!(!by.contains_key(&None), "no job left undone: {by:?}");
        assert_eq!(by.values().sum::<i64>(), jobs);
    });
}
