//! Online schema changes (issue 6, item 2): `CREATE INDEX` on a populated table while
//! writers keep writing, its progress in `SHOW JOBS`, and an index that agrees with its
//! table entry for entry afterwards.
//!
//! `create_index_on_a_big_table_under_writes`: a two-core server holds `big`
//! (`CHITIN_ONLINE_INDEX_ROWS` rows, 1 000 000 by default, split into four ranges over both
//! cores). `WRITERS` sessions update, insert and delete random rows, without pause, while
//! `CREATE INDEX big_v ON big (v)` runs. Then:
//! - writes were acknowledged all through the build (the test prints how many, and the
//!   longest gap between two acknowledgements, which must stay under `MAX_WRITE_GAP`);
//! - `SHOW JOBS` showed the job running with its progress, and then succeeded;
//! - the index holds exactly one entry per row, with the row's current value, read from the
//!   index itself (`SHOW INDEX ENTRIES`: a query through the index re-checks every row it
//!   fetches, so it would hide a stale entry), and queries use it.
//!
//! `unique_index_add_column_and_an_interrupted_build`: on a smaller table under writes,
//! `CREATE UNIQUE INDEX` succeeds and then refuses a duplicate (23505); `ADD COLUMN … DEFAULT`
//! shows the default in every row and as a succeeded job in `SHOW JOBS`; a build waits for a transaction that wrote with the
//! catalog from before it (`SHOW JOBS` says so) and indexes its row once it commits; a unique build over duplicate values fails with 23505,
//! leaves no index behind and shows as failed in `SHOW JOBS`; a build killed (SIGKILL)
//! half-way shows as failed after the restart, leaves no index, and can run again.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ServerOptions, TempDir, TestServer};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, SimpleQueryMessage};

const DEFAULT_ROWS: i64 = 1_000_000;
/// Distinct values of `v`.
const VALUES: i64 = 1_000;
const WRITERS: u64 = 4;
/// The longest a writer may go without an acknowledged write while the index is built.
const MAX_WRITE_GAP: Duration = Duration::from_secs(5);
const RUN_TIMEOUT: Duration = Duration::from_secs(1_200);

fn rows() -> i64 {
    std::env::var("CHITIN_ONLINE_INDEX_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROWS)
}

fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The rows of a simple query, as text.
async fn rows_of(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = tokio::time::timeout(Duration::from_secs(300), client.simple_query(sql))
        .await
        .unwrap_or_else(|_| panic!("{sql}: timed out"))
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// Sessions that update, insert and delete random rows of `table` (`id`, `v`) until
/// stopped. Inserted ids start at `insert_base`; new values of `v` come from `fresh`
/// (a unique value per write when true, else `0..VALUES`).
struct Writers {
    stop: Arc<AtomicBool>,
    /// When each acknowledged write was answered.
    acks: Arc<Mutex<Vec<Instant>>>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
}

impl Writers {
    fn start(
        config: &Config,
        table: &str,
        id_range: i64,
        insert_base: i64,
        fresh: bool,
    ) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let fresh_values = Arc::new(AtomicU64::new(0));
        let tasks = (0..WRITERS)
            .map(|w| {
                let (config, stop, acks) = (config.clone(), stop.clone(), acks.clone());
                let fresh_values = fresh_values.clone();
                let table = table.to_string();
                tokio::spawn(async move {
                    let client = common::connect(&config)
                        .await
                        .map_err(|e| format!("connect: {e}"))?;
                    let mut rng = 0x5eed ^ ((w + 1) * 7919);
                    let mut inserted = 0i64;
                    while !stop.load(Ordering::Relaxed) {
                        let id = 1 + (next_random(&mut rng) % id_range as u64) as i64;
                        let v = if fresh {
                            2_000_000_000 + fresh_values.fetch_add(1, Ordering::Relaxed) as i64
                        } else {
                            (next_random(&mut rng) % VALUES as u64) as i64
                        };
                        let sql = match next_random(&mut rng) % 10 {
                            0..=5 => format!("UPDATE {table} SET v = {v} WHERE id = {id}"),
                            6..=7 => {
                                inserted += 1;
                                let new_id = insert_base + w as i64 * 100_000_000 + inserted;
                                format!("INSERT INTO {table} (id, v) VALUES ({new_id}, {v})")
                            }
                            _ => format!("DELETE FROM {table} WHERE id = {id}"),
                        };
                        match client.batch_execute(&sql).await {
                            Ok(()) => acks.lock().unwrap().push(Instant::now()),
                            Err(e) if retryable(&e) => {}
                            Err(e) => return Err(format!("{sql}: {e:?}")),
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        Writers { stop, acks, tasks }
    }

    /// Stops the writers; answers when each acknowledged write was answered, in order.
    async fn finish(self) -> Vec<Instant> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("writer panicked").expect("writer failed");
        }
        let mut acks = self.acks.lock().unwrap().clone();
        acks.sort();
        acks
    }
}

/// Polls `SHOW JOBS` until stopped: whether a running `CREATE INDEX` job was seen, and the
/// largest progress it showed while running.
fn watch_jobs(config: &Config, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(bool, f64)> {
    let config = config.clone();
    tokio::spawn(async move {
        let client = common::connect(&config).await.expect("connect");
        let (mut seen, mut progress) = (false, 0f64);
        while !stop.load(Ordering::Relaxed) {
            for r in rows_of(&client, "SHOW JOBS").await {
                if r[1].as_deref() == Some("CREATE INDEX") && r[4].as_deref() == Some("running") {
                    seen = true;
                    let f: f64 = r[9].as_deref().unwrap_or("0").parse().unwrap();
                    progress = progress.max(f);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (seen, progress)
    })
}

/// Waits (up to 60 s) until `SHOW JOBS` shows the job of `description` running with a
/// status that starts with `status`.
async fn wait_for_job(client: &Client, description: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = rows_of(client, "SHOW JOBS").await;
        if jobs.iter().any(|r| {
            r[2].as_deref() == Some(description)
                && r[4].as_deref() == Some("running")
                && r[5].as_deref().unwrap_or("").starts_with(status)
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job {description:?} never showed {status:?}: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Panics unless index `index` does not exist (42704 from `SHOW INDEX ENTRIES`).
async fn assert_no_index(client: &Client, index: &str) {
    let e = client
        .batch_execute(&format!("SHOW INDEX ENTRIES FROM {index}"))
        .await
        .expect_err("the index is still there");
    assert_eq!(
        e.code(),
        Some(&SqlState::UNDEFINED_OBJECT),
        "{index}: {e:?}"
    );
}

/// `(v, id)` of every row of `table`, read from the table.
async fn table_pairs(client: &Client, table: &str) -> BTreeSet<(i64, i64)> {
    expression_pairs(client, table, "v").await
}

/// `(expr, id)` of every row of `table`.
async fn expression_pairs(client: &Client, table: &str, expr: &str) -> BTreeSet<(i64, i64)> {
    rows_of(client, &format!("SELECT {expr}, id FROM {table}"))
        .await
        .into_iter()
        .map(|r| {
            (
                r[0].as_deref().unwrap().parse().unwrap(),
                r[1].as_deref().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// `(v, id)` of every entry of index `index` on `(v)`, read from the index: keys print as
/// `/index id/v[/id]` and point at `/1/id`.
async fn index_pairs(client: &Client, index: &str) -> BTreeSet<(i64, i64)> {
    let mut out = BTreeSet::new();
    for r in rows_of(client, &format!("SHOW INDEX ENTRIES FROM {index}")).await {
        let key = r[0].as_deref().unwrap();
        let pk = r[1].as_deref().unwrap();
        let parts: Vec<&str> = key.split('/').collect();
        let v: i64 = parts[2]
            .parse()
            .unwrap_or_else(|_| panic!("index key {key}"));
        let id: i64 = pk
            .strip_prefix("/1/")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("primary key {pk}"));
        if let Some(from_key) = parts.get(3) {
            assert_eq!(
                from_key.parse::<i64>().ok(),
                Some(id),
                "entry {key} -> {pk}"
            );
        }
        assert!(out.insert((v, id)), "entry ({v}, {id}) twice");
    }
    out
}

/// Panics, with a sample of the differences, unless the index agrees with the table.
async fn assert_index_exact(client: &Client, table: &str, index: &str) -> usize {
    let in_table = table_pairs(client, table).await;
    let in_index = index_pairs(client, index).await;
    if in_table != in_index {
        let missing: Vec<_> = in_table.difference(&in_index).take(5).collect();
        let extra: Vec<_> = in_index.difference(&in_table).take(5).collect();
        panic!(
            "index {index} out of step with {table}: {} rows without their entry (e.g. \
             {missing:?}), {} entries without their row (e.g. {extra:?})",
            in_table.difference(&in_index).count(),
            in_index.difference(&in_table).count()
        );
    }
    in_table.len()
}

/// The longest time between consecutive acknowledgements within `[from, to]`.
fn longest_gap(acks: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut last = from;
    let mut gap = Duration::ZERO;
    for &a in acks.iter().filter(|&&a| a >= from && a <= to) {
        gap = gap.max(a - last);
        last = a;
    }
    gap.max(to - last)
}

#[test]
fn an_expression_index_is_built_online_under_writes() {
    // The expression is a hidden computed column of the table, recomputed on every read and
    // write: rows written before the build, by writers planned with the catalog from before
    // it, and during it all end with exactly their entry.
    let rows = 20_000;
    let options = ServerOptions {
        cores: Some(2),
        ..Default::default()
    };
    let server = TestServer::start(&options).expect("start");
    let runtime = runtime();
    let config = server.config(common::DEFAULT_DATABASE);
    runtime.block_on(async {
        let admin = common::connect(&config).await.expect("connect");
        for sql in [
            "CREATE TABLE ex (id INT8 PRIMARY KEY, v INT8 NOT NULL, pad TEXT)".to_string(),
            format!("ALTER TABLE ex SPLIT AT VALUES ({})", rows / 2),
            format!(
                "INSERT INTO ex SELECT g, g % {VALUES}, 'row ' || g::TEXT \
                 FROM generate_series(1, {rows}) AS g"
            ),
        ] {
            admin.batch_execute(&sql).await.expect("load");
        }
        let writers = Writers::start(&config, "ex", rows, rows + 1, false);
        tokio::time::sleep(Duration::from_millis(300)).await;
        admin
            .batch_execute("CREATE INDEX ex_v2 ON ex ((v * 2 + 1))")
            .await
            .expect("CREATE INDEX");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let acks = writers.finish().await;
        assert!(!acks.is_empty(), "no write acknowledged");
        let in_table = expression_pairs(&admin, "ex", "v * 2 + 1").await;
        let in_index = index_pairs(&admin, "ex_v2").await;
        assert_eq!(
            in_table.difference(&in_index).count() + in_index.difference(&in_table).count(),
            0,
            "index ex_v2 out of step with ex"
        );
        let plan = rows_of(&admin, "EXPLAIN SELECT id FROM ex WHERE v * 2 + 1 = 15").await;
        assert!(
            plan.iter()
                .any(|r| r[0].as_deref().unwrap_or("").contains("ex_v2")),
            "the query does not use the index: {plan:?}"
        );
        let by_index = rows_of(&admin, "SELECT count(*) FROM ex WHERE v * 2 + 1 = 15").await;
        let by_table = rows_of(&admin, "SELECT count(*) FROM ex WHERE v = 7").await;
        assert_eq!(by_index, by_table);
    });
}

#[test]
fn create_index_on_a_big_table_under_writes() {
    let rows = rows();
    let options = ServerOptions {
        cores: Some(2),
        ..Default::default()
    };
    let server = TestServer::start(&options).expect("start");
    let runtime = runtime();
    let config = server.config(common::DEFAULT_DATABASE);
    let started = Instant::now();
    runtime.block_on(async {
        let admin = common::connect(&config).await.expect("connect");
        // Only this test's own jobs (tests/statistics.rs covers the automatic ones).
        admin
            .batch_execute("SET CLUSTER SETTING sql.stats.automatic_collection.enabled = false")
            .await
            .expect("setting");
        admin
            .batch_execute("CREATE TABLE big (id INT8 PRIMARY KEY, v INT8 NOT NULL, pad TEXT)")
            .await
            .expect("create");
        for at in [rows / 4, rows / 2, 3 * rows / 4] {
            admin
                .batch_execute(&format!("ALTER TABLE big SPLIT AT VALUES ({at})"))
                .await
                .expect("split");
        }
        let chunk = 50_000;
        let mut at = 0;
        while at < rows {
            let to = (at + chunk).min(rows);
            admin
                .batch_execute(&format!(
                    "INSERT INTO big SELECT g, g % {VALUES}, 'row ' || g::TEXT \
                     FROM generate_series({}, {to}) AS g",
                    at + 1
                ))
                .await
                .unwrap_or_else(|e| panic!("load {at}..{to}: {e:?}"));
            at = to;
        }
        println!("loaded {rows} rows in {:.1?}", started.elapsed());

        let writers = Writers::start(&config, "big", rows, rows + 1, false);
        let stop_jobs = Arc::new(AtomicBool::new(false));
        let jobs = watch_jobs(&config, stop_jobs.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let build_started = Instant::now();
        admin
            .batch_execute("CREATE INDEX big_v ON big (v)")
            .await
            .expect("CREATE INDEX");
        let build_ended = Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_jobs.store(true, Ordering::Relaxed);
        let acks = writers.finish().await;
        let (seen_running, progress) = jobs.await.unwrap();
        assert!(started.elapsed() < RUN_TIMEOUT, "timed out");

        let during = acks
            .iter()
            .filter(|&&a| a >= build_started && a <= build_ended)
            .count();
        let gap = longest_gap(&acks, build_started, build_ended);
        println!(
            "CREATE INDEX on {rows} rows took {:.1?}; {during} writes acknowledged meanwhile \
             ({:.0}/s), longest gap between acknowledgements {gap:.2?}; SHOW JOBS showed it \
             running up to {:.0}% done",
            build_ended - build_started,
            during as f64 / (build_ended - build_started).as_secs_f64(),
            progress * 100.0
        );
        assert!(
            during > 0,
            "no write acknowledged while the index was built"
        );
        assert!(
            gap < MAX_WRITE_GAP,
            "writes stalled for {gap:?} while the index was built"
        );
        assert!(seen_running, "SHOW JOBS never showed the build running");

        let job = rows_of(&admin, "SHOW JOBS").await;
        let job = job
            .iter()
            .rfind(|r| r[1].as_deref() == Some("CREATE INDEX"))
            .expect("a job");
        assert_eq!(job[1].as_deref(), Some("CREATE INDEX"));
        assert_eq!(job[2].as_deref(), Some("CREATE INDEX big_v ON big(v)"));
        assert_eq!(job[4].as_deref(), Some("succeeded"), "job: {job:?}");
        assert_eq!(job[9].as_deref(), Some("1"));

        let n = assert_index_exact(&admin, "big", "big_v").await;
        println!("index big_v agrees with its {n} rows, entry for entry");
        let plan = rows_of(&admin, "EXPLAIN SELECT id FROM big WHERE v = 7").await;
        assert!(
            plan.iter()
                .any(|r| r[0].as_deref().unwrap_or("").contains("big_v")),
            "the query does not use the index: {plan:?}"
        );
        let by_index = rows_of(&admin, "SELECT count(*) FROM big WHERE v = 7").await;
        let by_table = rows_of(&admin, "SELECT count(*) FROM big WHERE v + 0 = 7").await;
        assert_eq!(by_index, by_table);
    });
}

#[test]
fn unique_index_add_column_and_an_interrupted_build() {
    const SMALL: i64 = 20_000;
    let dir = TempDir::new("chitin-online").expect("temp dir");
    let store = dir.path().join("store");
    let log = dir.path().join("server.log");
    let options = ServerOptions {
        cores: Some(2),
        ..Default::default()
    };
    let mut server = TestServer::start_on(&store, &log, &options).expect("start");
    let runtime = runtime();
    let config = server.config(common::DEFAULT_DATABASE);
    let t0 = Instant::now();
    let phase = |what: &str| println!("{:>8.1?} {what}", t0.elapsed());
    runtime.block_on(async {
        let admin = common::connect(&config).await.expect("connect");
        admin
            .batch_execute("SET CLUSTER SETTING sql.stats.automatic_collection.enabled = false")
            .await
            .expect("setting");
        admin
            .batch_execute("CREATE TABLE u (id INT8 PRIMARY KEY, v INT8)")
            .await
            .expect("create");
        admin
            .batch_execute(&format!("ALTER TABLE u SPLIT AT VALUES ({})", SMALL / 2))
            .await
            .expect("split");
        admin
            .batch_execute(&format!(
                "INSERT INTO u SELECT g, g FROM generate_series(1, {SMALL}) AS g"
            ))
            .await
            .expect("fill");
        phase("filled u");
        // Writers give every write a value never used before: the unique index must build.
        let writers = Writers::start(&config, "u", SMALL, SMALL + 1, true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        admin
            .batch_execute("CREATE UNIQUE INDEX u_v_key ON u (v)")
            .await
            .expect("CREATE UNIQUE INDEX under writes");
        admin
            .batch_execute("ALTER TABLE u ADD COLUMN z INT8 NOT NULL DEFAULT 7")
            .await
            .expect("ADD COLUMN under writes");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let acks = writers.finish().await;
        assert!(!acks.is_empty(), "no write acknowledged");
        phase("unique index built under writes");
        assert_index_exact(&admin, "u", "u_v_key").await;
        let not_seven = rows_of(&admin, "SELECT count(*) FROM u WHERE z <> 7").await;
        assert_eq!(not_seven[0][0].as_deref(), Some("0"), "ADD COLUMN default");
        // The schema change shows in SHOW JOBS (ended at once: the default needs no
        // rewrite of the rows).
        let jobs = rows_of(&admin, "SHOW JOBS").await;
        let job = jobs
            .iter()
            .rfind(|r| r[1].as_deref() == Some("ALTER TABLE"))
            .expect("an ALTER TABLE job");
        assert_eq!(
            job[2].as_deref(),
            Some("ALTER TABLE u ADD COLUMN z INT8 NOT NULL DEFAULT 7")
        );
        assert_eq!(job[4].as_deref(), Some("succeeded"), "job: {job:?}");
        let taken = rows_of(&admin, "SELECT v FROM u LIMIT 1").await;
        let taken = taken[0][0].clone().unwrap();
        let e = admin
            .batch_execute(&format!("INSERT INTO u (id, v) VALUES (-1, {taken})"))
            .await
            .expect_err("a duplicate value");
        assert_eq!(e.code(), Some(&SqlState::UNIQUE_VIOLATION), "{e:?}");

        phase("checked u");
        // A transaction that wrote with the catalog from before the build holds it (the
        // job says so) until it commits, and its row gets its entry.
        let old = common::connect(&config).await.expect("connect");
        old.batch_execute("BEGIN; INSERT INTO u (id, v) VALUES (-7, 7777777)")
            .await
            .expect("open transaction");
        let build = {
            let config = config.clone();
            tokio::spawn(async move {
                let client = common::connect(&config).await.expect("connect");
                client.batch_execute("CREATE INDEX u_v_idx ON u (v)").await
            })
        };
        wait_for_job(
            &admin,
            "CREATE INDEX u_v_idx ON u(v)",
            "waiting for transactions",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !build.is_finished(),
            "the build did not wait for the open transaction"
        );
        old.batch_execute("COMMIT").await.expect("commit");
        build.await.unwrap().expect("the build after the commit");
        let entries = index_pairs(&admin, "u_v_idx").await;
        assert!(
            entries.contains(&(7777777, -7)),
            "the late row has no entry"
        );
        assert_index_exact(&admin, "u", "u_v_idx").await;
        phase("a build waited for an older transaction");
        // A duplicate: the unique build fails, and leaves nothing behind.
        admin
            .batch_execute(
                "CREATE TABLE d (id INT8 PRIMARY KEY, v INT8); \
                 INSERT INTO d SELECT g, g FROM generate_series(1, 5000) AS g; \
                 UPDATE d SET v = 17 WHERE id = 4000",
            )
            .await
            .expect("create d");
        let e = admin
            .batch_execute("CREATE UNIQUE INDEX d_v_key ON d (v)")
            .await
            .expect_err("duplicates");
        assert_eq!(e.code(), Some(&SqlState::UNIQUE_VIOLATION), "{e:?}");
        let job = rows_of(&admin, "SHOW JOBS").await;
        let job = job
            .iter()
            .rfind(|r| r[1].as_deref() == Some("CREATE INDEX"))
            .unwrap();
        assert_eq!(job[4].as_deref(), Some("failed"), "{job:?}");
        assert!(
            job[10].as_deref().unwrap_or("").contains("d_v_key"),
            "{job:?}"
        );
        assert_no_index(&admin, "d_v_key").await;
        admin
            .batch_execute("INSERT INTO d VALUES (5001, 17); DELETE FROM d WHERE v = 17")
            .await
            .expect("writes after the failed build");
        admin
            .batch_execute("CREATE UNIQUE INDEX d_v_key ON d (v)")
            .await
            .expect("the build again, without the duplicates");
        assert_index_exact(&admin, "u", "u_v_key").await;

        phase("duplicate build failed");
        // A bigger table whose build gets killed.
        admin
            .batch_execute(
                "CREATE TABLE k (id INT8 PRIMARY KEY, v INT8); \
                 INSERT INTO k SELECT g, g % 100 FROM generate_series(1, 50000) AS g",
            )
            .await
            .expect("create k");
    });
    let build = {
        let config = config.clone();
        runtime.spawn(async move {
            let client = common::connect(&config).await.expect("connect");
            client.batch_execute("CREATE INDEX k_v ON k (v)").await
        })
    };
    runtime.block_on(async {
        let admin = common::connect(&config).await.expect("connect");
        wait_for_job(&admin, "CREATE INDEX k_v ON k(v)", "backfilling").await;
    });
    phase("build backfilling");
    server.kill();
    let result = runtime.block_on(build).expect("build task");
    assert!(result.is_err(), "the build finished before the kill");
    let server = TestServer::start_on(&store, &log, &options).expect("restart");
    let config = server.config(common::DEFAULT_DATABASE);
    runtime.block_on(async {
        let admin = common::connect(&config).await.expect("connect");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let jobs = rows_of(&admin, "SHOW JOBS").await;
            let job = jobs
                .iter()
                .find(|r| r[2].as_deref() == Some("CREATE INDEX k_v ON k(v)"))
                .expect("the job")
                .clone();
            if job[4].as_deref() == Some("failed") {
                assert!(
                    job[10].as_deref().unwrap_or("").contains("restarted"),
                    "{job:?}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "job still {job:?} after the restart"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        phase("job failed after the restart");
        assert_no_index(&admin, "k_v").await;
        admin
            .batch_execute("UPDATE k SET v = v + 1 WHERE id < 100")
            .await
            .expect("writes after the restart");
        admin
            .batch_execute("CREATE INDEX k_v ON k (v)")
            .await
            .expect("the build again");
        assert_index_exact(&admin, "k", "k_v").await;
    });
}
