//! psql 15's meta-commands against a spawned server (issue 6, item 5): `\l`, `\dt`,
//! `\d t`, `\di`, `\dn`, `\du`, `\dv` (and `\d`, `\d v`, `\d t_pkey`, `\dt+`, `\ds`, `\dm`,
//! `\d mv` of a materialized view, and
//! `\d` of a table with a SERIAL column and a foreign key) send the
//! exact catalog queries psql sends PostgreSQL (`pg_catalog`, `OPERATOR(pg_catalog.~)`,
//! correlated subqueries in SELECT lists, `pg_get_indexdef` …); their output is compared
//! to golden files in `tests/psql_meta/*.out`, which read like PostgreSQL 15's output for
//! the same schema (owner `root`; the differences are Chitin's: no `template0/1`, a
//! `system` database, CHECK expressions without PostgreSQL's implicit casts).
//!
//! Regenerate the golden files with `CHITIN_REWRITE=1` and review the diff. Needs `psql`
//! on the PATH (skipped with a message when missing), and a spawned server (skipped when
//! `CHITIN_TEST_URL` is set).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ServerOptions, TestServer};

fn have_psql() -> bool {
    Command::new("psql")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `psql -X -c command` against `server`, bounded by `limit`.
fn psql(server: &TestServer, command: &str, limit: Duration) -> Output {
    let port = server.sql_addr.port().to_string();
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "root",
            "-d",
            "defaultdb",
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-c", command])
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PAGER", "")
        .env("COLUMNS", "200")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn psql");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE t (k INT PRIMARY KEY, name VARCHAR(10) NOT NULL, e TEXT UNIQUE, \
     price NUMERIC(10,2) DEFAULT 1.5, qty INT8)",
    "ALTER TABLE t ADD CONSTRAINT price_positive CHECK (price > 0)",
    "CREATE INDEX t_qty_idx ON t (qty)",
    "CREATE VIEW v AS SELECT k, name FROM t",
    "CREATE MATERIALIZED VIEW mv AS SELECT k, qty FROM t",
    "CREATE INDEX mv_qty_idx ON mv (qty)",
    "CREATE TABLE orders (id SERIAL PRIMARY KEY, t_k INT REFERENCES t (k) ON DELETE CASCADE, \
     qty INT8)",
];

/// (golden file name, meta-command)
const COMMANDS: &[(&str, &str)] = &[
    ("list_databases", "\\l"),
    ("dt", "\\dt"),
    ("d_t", "\\d t"),
    ("di", "\\di"),
    ("dn", "\\dn"),
    ("du", "\\du"),
    ("dv", "\\dv"),
    ("d", "\\d"),
    ("d_v", "\\d v"),
    ("d_t_pkey", "\\d t_pkey"),
    ("dt_plus", "\\dt+"),
    ("d_orders", "\\d orders"),
    ("ds", "\\ds"),
    ("dm", "\\dm"),
    ("d_mv", "\\d mv"),
];

#[test]
fn psql_meta_commands_match_golden_files() {
    if std::env::var("CHITIN_TEST_URL").is_ok_and(|u| !u.trim().is_empty()) {
        eprintln!("skipped: needs a spawned server");
        return;
    }
    if !have_psql() {
        // CI installs it and sets CHITIN_REQUIRE_DRIVERS: there a missing psql fails.
        assert!(
            std::env::var_os("CHITIN_REQUIRE_DRIVERS").is_none(),
            "psql not installed (apt-get install postgresql-client)"
        );
        eprintln!("skipped: psql not installed (apt-get install postgresql-client)");
        return;
    }
    let server = TestServer::start(&ServerOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    for stmt in SCHEMA {
        let out = psql(&server, stmt, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "{stmt}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log_tail()
        );
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/psql_meta");
    let rewrite = std::env::var("CHITIN_REWRITE").is_ok_and(|v| !v.is_empty() && v != "0");
    let mut failures = Vec::new();
    for (file, command) in COMMANDS {
        let out = psql(&server, command, Duration::from_secs(30));
        let got = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.join(format!("{file}.out"));
        if rewrite {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (regenerate with CHITIN_REWRITE=1)", path.display())
        });
        if got != want || !out.status.success() {
            failures.push(format!(
                "psql -c '{command}' ({}):\n--- want\n{want}--- got\n{got}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
