//! Table statistics (issue 6, item 3): `ANALYZE` and `CREATE STATISTICS` collect row,
//! distinct and NULL counts and histograms as jobs, `SHOW STATISTICS FOR TABLE` shows them,
//! and the planner uses them: of two indexes a filter could use it looks up the more
//! selective one, and it scans instead of looking up most of a big table. With
//! `sql.stats.automatic_collection.enabled` (the default) a table gets statistics once 500
//! of its rows were written, and fresh ones after a fifth of its rows changed, whichever
//! session (and core) wrote them; turned off, nothing more is collected.

mod common;

use std::time::Duration;

use common::{ServerOptions, TestServer};
use tokio_postgres::{Client, SimpleQueryMessage};

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

/// The access line of `EXPLAIN sql` (`scan t: …`).
async fn access(client: &Client, sql: &str) -> String {
    rows_of(client, &format!("EXPLAIN {sql}"))
        .await
        .into_iter()
        .map(|r| r[0].trim().to_string())
        .find(|l| l.starts_with("scan "))
        .unwrap_or_else(|| panic!("no scan in the plan of {sql}"))
}

#[test]
fn statistics_are_collected_shown_and_steer_index_choice() {
    let server = TestServer::start(&ServerOptions::default()).expect("start");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = server.config(common::DEFAULT_DATABASE);
    runtime.block_on(async {
        let c = common::connect(&config).await.expect("connect");
        // Automatic statistics later; first, none but ANALYZE's.
        c.batch_execute("SET CLUSTER SETTING sql.stats.automatic_collection.enabled = false")
            .await
            .unwrap();
        c.batch_execute(
            "CREATE TABLE t (id INT8 PRIMARY KEY, flag INT8, grp INT8, name TEXT); \
             CREATE INDEX t_flag ON t (flag); \
             CREATE INDEX t_grp ON t (grp); \
             INSERT INTO t SELECT i, i % 2, i % 500, 'n' || (i % 7)::TEXT \
               FROM generate_series(1, 5000) AS i; \
             INSERT INTO t VALUES (6000, NULL, NULL, NULL)",
        )
        .await
        .expect("fill");
        let both = "SELECT id FROM t WHERE flag = 1 AND grp = 3";
        // Without statistics: the first index that fits.
        assert_eq!(
            access(&c, both).await,
            "scan t: index t_flag lookup (1 range)"
        );
        assert!(rows_of(&c, "SHOW STATISTICS FOR TABLE t").await.is_empty());

        c.batch_execute("ANALYZE t").await.expect("ANALYZE");
        let stats = rows_of(&c, "SHOW STATISTICS FOR TABLE t").await;
        let summary: Vec<Vec<&str>> = stats
            .iter()
            .map(|r| vec![&*r[0], &*r[1], &*r[3], &*r[4], &*r[5]])
            .collect();
        assert_eq!(
            summary,
            vec![
                vec!["__auto__", "{id}", "5001", "5001", "0"],
                vec!["__auto__", "{flag}", "5001", "2", "1"],
                vec!["__auto__", "{grp}", "5001", "500", "1"],
                vec!["__auto__", "{name}", "5001", "7", "1"],
            ]
        );
        assert_eq!(stats[1][6], "{0,1}");
        assert_eq!(stats[3][6], "{n0,n1,n2,n3,n4,n5,n6}");
        let bounds: Vec<i64> = stats[0][6]
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .map(|b| b.parse().unwrap())
            .collect();
        assert_eq!(bounds.len(), 20, "{bounds:?}");
        assert!(bounds.windows(2).all(|w| w[0] < w[1]) && bounds[19] == 6000);

        // The more selective index, and no index at all for half the table.
        assert_eq!(
            access(&c, both).await,
            "scan t: index t_grp lookup (1 range)"
        );
        assert_eq!(
            access(&c, "SELECT id FROM t WHERE flag = 1").await,
            "scan t: full scan (1 range)"
        );
        let plan = rows_of(&c, &format!("EXPLAIN {both}")).await;
        assert!(
            plan.iter().any(|r| r[0].trim() == "estimated rows: 10"),
            "{plan:?}"
        );
        let plan = rows_of(&c, "EXPLAIN SELECT id FROM t WHERE flag = 1").await;
        assert!(
            plan.iter().any(|r| r[0].trim() == "estimated rows: 5001"),
            "{plan:?}"
        );
        let count = rows_of(&c, &both.replace("id", "count(*)")).await;
        assert_eq!(count, vec![vec!["10".to_string()]]);

        // CREATE STATISTICS on a column set, as a job.
        c.batch_execute("CREATE STATISTICS fg ON flag, grp FROM t")
            .await
            .expect("CREATE STATISTICS");
        let stats = rows_of(&c, "SHOW STATISTICS FOR TABLE t").await;
        let fg = stats.iter().find(|r| r[0] == "fg").expect("fg");
        assert_eq!((&*fg[1], &*fg[3], &*fg[4]), ("{flag,grp}", "5001", "501"));
        let jobs = rows_of(&c, "SHOW JOBS").await;
        let kinds: Vec<(&str, &str, &str)> = jobs
            .iter()
            .filter(|r| r[1] == "CREATE STATS")
            .map(|r| (&*r[2], &*r[4], &*r[9]))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("ANALYZE t", "succeeded", "1"),
                ("CREATE STATISTICS fg ON flag, grp FROM t", "succeeded", "1"),
            ]
        );

        // Errors: an unknown column (42703), a view (42809), an unknown table (42P01).
        let e = c.batch_execute("ANALYZE t (nope)").await.unwrap_err();
        assert_eq!(e.code().unwrap().code(), "42703");
        c.batch_execute("CREATE VIEW tv AS SELECT id FROM t")
            .await
            .unwrap();
        let e = c.batch_execute("ANALYZE tv").await.unwrap_err();
        assert_eq!(e.code().unwrap().code(), "42809");
        let e = c.batch_execute("ANALYZE missing").await.unwrap_err();
        assert_eq!(e.code().unwrap().code(), "42P01");
        // ANALYZE without a table covers every table of the database.
        c.batch_execute("CREATE TABLE u (k INT8 PRIMARY KEY)")
            .await
            .unwrap();
        c.batch_execute("INSERT INTO u VALUES (1), (2)")
            .await
            .unwrap();
        c.batch_execute("ANALYZE").await.expect("ANALYZE all");
        let u = rows_of(&c, "SHOW STATISTICS FOR TABLE u").await;
        assert_eq!((&*u[0][1], &*u[0][3]), ("{k}", "2"));

        // Automatic refresh: 500 rows written into a table without statistics, then a
        // fifth of its rows (at least 500) more, each time refreshed within seconds.
        c.batch_execute("SET CLUSTER SETTING sql.stats.automatic_collection.enabled = true")
            .await
            .unwrap();
        c.batch_execute("CREATE TABLE a (k INT8 PRIMARY KEY, g INT8)")
            .await
            .unwrap();
        // Waits for statistics on `g` of `rows` rows and `distinct` values.
        let wait_stats = |rows: &'static str, distinct: &'static str| {
            let c = &c;
            async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                loop {
                    let s = rows_of(c, "SHOW STATISTICS FOR TABLE a").await;
                    if s.iter()
                        .any(|r| r[1] == "{g}" && r[3] == rows && r[4] == distinct)
                    {
                        return;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no automatic statistics of {rows} rows, {distinct} values: {s:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        c.batch_execute("INSERT INTO a SELECT i, i % 4 FROM generate_series(1, 400) AS i")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert!(rows_of(&c, "SHOW STATISTICS FOR TABLE a").await.is_empty());
        // Through several sessions (and so, likely, both cores): the node adds them up.
        for i in 0..4 {
            let s = common::connect(&config).await.unwrap();
            s.batch_execute(&format!(
                "INSERT INTO a SELECT i, i % 4 FROM generate_series({}, {}) AS i",
                401 + i * 50,
                450 + i * 50
            ))
            .await
            .unwrap();
        }
        wait_stats("600", "4").await;
        c.batch_execute("UPDATE a SET g = k % 8 WHERE k <= 500")
            .await
            .unwrap();
        wait_stats("600", "8").await;
        let jobs = rows_of(&c, "SHOW JOBS").await;
        let auto: Vec<&Vec<String>> = jobs
            .iter()
            .filter(|r| r[2] == "Table statistics refresh for a")
            .collect();
        assert!(
            auto.len() >= 2 && auto.iter().all(|r| r[4] == "succeeded"),
            "{auto:?}"
        );
        // Off: nothing more.
        c.batch_execute("SET CLUSTER SETTING sql.stats.automatic_collection.enabled = false")
            .await
            .unwrap();
        c.batch_execute("INSERT INTO a SELECT i, 0 FROM generate_series(1000, 2000) AS i")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let s = rows_of(&c, "SHOW STATISTICS FOR TABLE a").await;
        assert!(s.iter().all(|r| r[3] == "600"), "{s:?}");
    });
}

/// Waits (up to 20 s) until a line of `EXPLAIN sql` says `want`: the planner sees new
/// statistics once the catalog reloads them.
async fn wait_for_plan(client: &Client, sql: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !rows_of(client, &format!("EXPLAIN {sql}"))
        .await
        .iter()
        .any(|r| r[0].contains(want))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "EXPLAIN {sql} never said {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `table rows read: N` of `EXPLAIN ANALYZE sql`, and the rows it returned.
async fn rows_read(client: &Client, sql: &str) -> (u64, u64) {
    let line = rows_of(client, &format!("EXPLAIN ANALYZE {sql}"))
        .await
        .into_iter()
        .map(|r| r[0].trim().to_string())
        .find(|l| l.starts_with("rows: "))
        .unwrap_or_else(|| panic!("no rows line for {sql}"));
    let num = |prefix: &str| -> u64 {
        line.split(", ")
            .find_map(|p| p.strip_prefix(prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"))
    };
    (num("rows: "), num("table rows read: "))
}

/// Item 3's predicate pushdown and lookup joins: a join reads its inputs by key when the
/// WHERE clause or a small left side allows it, instead of scanning whole tables.
#[test]
fn joins_read_only_the_rows_they_can_match() {
    let server = TestServer::start(&ServerOptions::default()).expect("start");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = server.config(common::DEFAULT_DATABASE);
    runtime.block_on(async {
        let c = common::connect(&config).await.expect("connect");
        c.batch_execute(
            "CREATE TABLE cust (id INT8 PRIMARY KEY, name TEXT); \
             CREATE TABLE ord (id INT8 PRIMARY KEY, cust INT8, amt INT8); \
             CREATE INDEX ord_cust ON ord (cust); \
             INSERT INTO cust SELECT i, 'c' || i::TEXT FROM generate_series(1, 5000) AS i; \
             INSERT INTO ord SELECT i, i % 5000 + 1, i FROM generate_series(1, 10000) AS i; \
             ANALYZE cust; ANALYZE ord",
        )
        .await
        .unwrap();
        // The planner sees the statistics once the catalog reloads them.
        wait_for_plan(&c, "SELECT * FROM cust", "estimated rows: 5000").await;
        // WHERE on the left input: a point lookup; then one primary key lookup of cust.
        let q = "SELECT o.id, c.name FROM ord o JOIN cust c ON o.cust = c.id WHERE o.id = 7";
        assert_eq!(
            rows_of(&c, q).await,
            vec![vec!["7".to_string(), "c8".to_string()]]
        );
        assert_eq!(rows_read(&c, q).await, (1, 2));
        // A few customers, each with two orders, through the index on ord.cust.
        let q = "SELECT c.id, o.id FROM cust c LEFT JOIN ord o ON o.cust = c.id \
                 WHERE c.id IN (1, 2, 3, 4999) ORDER BY 1, 2";
        let got = rows_of(&c, q).await;
        assert_eq!(got.len(), 8, "{got:?}");
        assert_eq!(got[0], vec!["1".to_string(), "5000".to_string()]);
        assert_eq!(rows_read(&c, q).await, (8, 4 + 8));
        // 200 orders from a span of the primary key: a lookup join of cust by key.
        let q = "SELECT count(*), count(DISTINCT c.id) FROM ord o JOIN cust c ON c.id = o.cust \
                 WHERE o.id BETWEEN 101 AND 300";
        assert_eq!(
            rows_of(&c, q).await,
            vec![vec!["200".to_string(), "200".to_string()]]
        );
        assert_eq!(rows_read(&c, q).await, (1, 200 + 200));
        // Everything joined with everything: both tables read once, hash join.
        let q = "SELECT count(*) FROM ord o JOIN cust c ON c.id = o.cust";
        assert_eq!(rows_read(&c, q).await, (1, 15_000));
        // Written largest first, run from the one customer: then its orders through
        // ord_cust, then their lines through the prefix of line's primary key.
        c.batch_execute(
            "CREATE TABLE line (ord INT8, n INT8, qty INT8, PRIMARY KEY (ord, n));              INSERT INTO line SELECT i / 3 + 1, i % 3, i FROM generate_series(0, 29999) AS i",
        )
        .await
        .unwrap();
        let q = "SELECT l.qty, o.id, c.name FROM line l, ord o, cust c                  WHERE l.ord = o.id AND o.cust = c.id AND c.id = 10 ORDER BY 1";
        let plan = rows_of(&c, &format!("EXPLAIN {q}")).await;
        assert!(
            plan.iter().any(|r| r[0].contains("reordered by estimated rows")),
            "{plan:?}"
        );
        let got = rows_of(&c, q).await;
        // Customer 10 has orders 9 and 5009, three lines each.
        assert_eq!(got.len(), 6, "{got:?}");
        assert_eq!(rows_read(&c, q).await, (6, 1 + 2 + 6));
        // A range the histogram says is narrow makes the later input the first.
        c.batch_execute(
            "CREATE TABLE ev (id INT8 PRIMARY KEY, ts INT8, kind INT8); \
             INSERT INTO ev SELECT i, i, i % 5000 + 1 FROM generate_series(1, 10000) AS i; \
             ANALYZE ev",
        )
        .await
        .unwrap();
        wait_for_plan(&c, "SELECT * FROM ev", "estimated rows: 10000").await;
        let q = "SELECT count(*) FROM cust c JOIN ev e ON e.kind = c.id WHERE e.ts > 9990";
        let plan = rows_of(&c, &format!("EXPLAIN {q}")).await;
        assert!(
            plan.iter()
                .any(|r| r[0].contains("reordered by estimated rows")),
            "{plan:?}"
        );
        assert_eq!(rows_of(&c, q).await, vec![vec!["10".to_string()]]);
        assert_eq!(rows_read(&c, q).await, (1, 10_000 + 10));
        // With an index on ts, a narrow range reads the index (NULLs never match).
        c.batch_execute(
            "CREATE INDEX ev_ts ON ev (ts); \
             INSERT INTO ev VALUES (-1, NULL, 1), (-2, NULL, 2); \
             ANALYZE ev",
        )
        .await
        .unwrap();
        wait_for_plan(&c, "SELECT * FROM ev WHERE ts > 9990", "range scan").await;
        assert_eq!(
            access(&c, "SELECT * FROM ev WHERE ts > 9990").await,
            "scan ev: index ev_ts range scan (1 range)"
        );
        for (filter, want) in [
            ("ts > 9990", 10),
            ("ts >= 9990", 11),
            ("ts < 5", 4),
            ("ts <= 5", 5),
            ("ts BETWEEN 100 AND 199", 100),
            ("ts > 50 AND ts < 60", 9),
            ("ts > 20000", 0),
        ] {
            let q = format!("SELECT count(*) FROM ev WHERE {filter}");
            assert_eq!(
                rows_of(&c, &q).await,
                vec![vec![want.to_string()]],
                "{filter}"
            );
            assert_eq!(rows_read(&c, &q).await, (1, want), "{filter}");
        }
        // Half the table: a full scan is cheaper than 5000 lookups.
        assert_eq!(
            access(&c, "SELECT * FROM ev WHERE ts > 5000").await,
            "scan ev: full scan (1 range)"
        );
        assert_eq!(rows_read(&c, q).await, (1, 10 + 10));
        // Writes find their rows through the range too.
        c.batch_execute("UPDATE ev SET kind = 0 WHERE ts > 9995; DELETE FROM ev WHERE ts < 3")
            .await
            .unwrap();
        assert_eq!(
            rows_of(&c, "SELECT count(*) FILTER (WHERE kind = 0), count(*) FROM ev").await,
            vec![vec!["5".to_string(), "10000".to_string()]]
        );

        // The padded side of a LEFT JOIN is not filtered early.
        let q = "SELECT count(*) FROM cust c LEFT JOIN ord o ON o.cust = c.id \
                 WHERE o.id IS NULL";
        assert_eq!(rows_of(&c, q).await, vec![vec!["0".to_string()]]);
    });
}
