//! Client drivers against a spawned server (issue 6, item 6): the programs in `drivers/`
//! run unchanged, each in a database of its own, and must exit 0.
//!
//! - `psycopg_test.py`: psycopg 3 — parameters bound server side (text and binary), every
//!   supported type and NULL both ways, executemany, fetchmany, prepared statements,
//!   commit/rollback/`conn.transaction()`, SQLSTATEs (23505, 42P01, 25P02) with the
//!   connection usable after each, `cursor.copy` in and out.
//! - `sqlalchemy_test.py`: SQLAlchemy 2 over psycopg — `server_version_info`, declarative
//!   models, `create_all`, ORM add/get/update/delete, queries with filters, ORDER BY, LIMIT,
//!   joins and aggregates, IntegrityError, and reflection (the dialect's own pg_catalog
//!   queries): table names, columns with types and nullability, primary key, indexes,
//!   unique constraints, `MetaData.reflect`, then `drop_all`.
//! - `node_pg_test.js`: node-postgres — `$n` parameters, named prepared statements, types,
//!   array row mode, transactions, SQLSTATEs.
//! - `Jdbc.java`: pgjdbc — PreparedStatement with typed parameters past the driver's
//!   prepare threshold (named statements, binary results), batches, transactions,
//!   `DatabaseMetaData.getTables/getColumns` (and `getPrimaryKeys`, against PostgreSQL
//!   only: it needs composite types), SQLStates.
//!
//! Every program also passes against PostgreSQL 15 (`CHITIN_TEST_URL=postgresql://…`), which
//! is how their expectations were checked.
//!
//! Where the tools come from (CI's `.ci/run` installs them under `target/drivers/`):
//! - `CHITIN_PYTHON`: a python with psycopg 3 and SQLAlchemy 2; default
//!   `target/drivers/venv/bin/python` if it exists, else `python3`.
//! - `CHITIN_NODE_PATH`: a `node_modules` directory holding `pg`; default
//!   `target/drivers/node_modules`. `node` from the PATH.
//! - `CHITIN_JDBC_JAR`: pgjdbc; default `/usr/share/java/postgresql.jar` (Debian's
//!   libpostgresql-jdbc-java). `javac` and `java` from the PATH.
//!
//! A missing tool or package skips that test with a message, unless
//! `CHITIN_REQUIRE_DRIVERS=1` (set by CI), which makes it a failure.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Target, TempDir};

/// How long one driver program may run (JDBC includes compiling it).
const PROGRAM_LIMIT: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn program(name: &str) -> PathBuf {
    repo().join("tests").join("drivers").join(name)
}

/// `$var` if set and non-empty, else `default`.
fn env_or(var: &str, default: impl Into<PathBuf>) -> PathBuf {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => PathBuf::from(v.trim()),
        _ => default.into(),
    }
}

/// Whether `cmd` runs and exits 0 (used to probe for toolchains and packages).
fn probe(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Skips the test (returns `false`) when a prerequisite is missing, or fails it when CI
/// requires every driver.
fn require(present: bool, what: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var("CHITIN_REQUIRE_DRIVERS").is_ok_and(|v| v == "1") {
        panic!("{what} is missing and CHITIN_REQUIRE_DRIVERS=1");
    }
    eprintln!("skipped: {what} is missing (set CHITIN_REQUIRE_DRIVERS=1 to fail instead)");
    false
}

/// The server (spawned once for every test here, or `CHITIN_TEST_URL`) and a fresh database `name` on it, as a
/// `postgresql://` URL.
fn database(name: &str) -> (Arc<Target>, String) {
    let target = common::shared_target("CHITIN_TEST_URL").unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let config = runtime
        .block_on(common::fresh_database(&target, name))
        .unwrap_or_else(|e| panic!("{e}\n{}", target.log_tail()));
    let addr = target.sql_addr().unwrap_or_else(|e| panic!("{e}"));
    let user = config.get_user().unwrap_or(common::DEFAULT_USER);
    let url = format!("postgresql://{user}@{addr}/{name}");
    (target, url)
}

/// Runs `cmd` to completion or until [`PROGRAM_LIMIT`], then asserts it exited 0, showing
/// its output (and the server's log tail) otherwise.
fn run_program(what: &str, cmd: &mut Command, target: &Target) {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > PROGRAM_LIMIT {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let err = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    print!("{out}");
    eprint!("{err}");
    assert!(
        status.success() && !timed_out,
        "{what} failed ({status}{}) after {:?}\n--- stdout:\n{out}\n--- stderr:\n{err}\n--- server log:\n{}",
        if timed_out { ", timed out" } else { "" },
        started.elapsed(),
        target.log_tail()
    );
}

fn python() -> PathBuf {
    let venv = repo().join("target/drivers/venv/bin/python");
    env_or(
        "CHITIN_PYTHON",
        if venv.exists() {
            venv
        } else {
            PathBuf::from("python3")
        },
    )
}

/// Whether `python` imports every module in `modules`.
fn python_has(python: &Path, modules: &str) -> bool {
    probe(Command::new(python).args(["-c", &format!("import {modules}")]))
}

#[test]
fn psycopg3() {
    let python = python();
    if !require(
        python_has(&python, "psycopg"),
        &format!("psycopg 3 for {}", python.display()),
    ) {
        return;
    }
    let (target, url) = database("drivers_psycopg");
    run_program(
        "psycopg_test.py",
        Command::new(&python)
            .arg(program("psycopg_test.py"))
            .arg(&url),
        &target,
    );
}

#[test]
fn sqlalchemy2() {
    let python = python();
    if !require(
        python_has(&python, "psycopg, sqlalchemy"),
        &format!("psycopg 3 and SQLAlchemy 2 for {}", python.display()),
    ) {
        return;
    }
    let (target, url) = database("drivers_sqlalchemy");
    run_program(
        "sqlalchemy_test.py",
        Command::new(&python)
            .arg(program("sqlalchemy_test.py"))
            .arg(&url),
        &target,
    );
}

#[test]
fn node_postgres() {
    let node_path = env_or(
        "CHITIN_NODE_PATH",
        repo().join("target/drivers/node_modules"),
    );
    let present = probe(
        Command::new("node")
            .args(["-e", "require('pg')"])
            .env("NODE_PATH", &node_path),
    );
    if !require(
        present,
        &format!("node with npm `pg` in {}", node_path.display()),
    ) {
        return;
    }
    let (target, url) = database("drivers_node_pg");
    run_program(
        "node_pg_test.js",
        Command::new("node")
            .arg(program("node_pg_test.js"))
            .arg(&url)
            .env("NODE_PATH", &node_path),
        &target,
    );
}

#[test]
fn jdbc() {
    let jar = env_or("CHITIN_JDBC_JAR", "/usr/share/java/postgresql.jar");
    let present = jar.exists()
        && probe(Command::new("javac").arg("-version"))
        && probe(Command::new("java").arg("-version"));
    if !require(
        present,
        &format!("javac, java and pgjdbc at {}", jar.display()),
    ) {
        return;
    }
    let (target, url) = database("drivers_jdbc");
    let classes = TempDir::new("chitin-jdbc").expect("temp dir");
    run_program(
        "javac Jdbc.java",
        Command::new("javac")
            .arg("-d")
            .arg(classes.path())
            .arg(program("Jdbc.java")),
        &target,
    );
    // postgresql://user@host:port/db → jdbc:postgresql://host:port/db?user=user
    let rest = url.trim_start_matches("postgresql://");
    let (user, hostdb) = rest.split_once('@').expect("user in url");
    let jdbc_url = format!("jdbc:postgresql://{hostdb}?user={user}");
    let classpath = format!("{}:{}", classes.path().display(), jar.display());
    let mut java = Command::new("java");
    java.arg("-cp").arg(classpath).arg("Jdbc").arg(&jdbc_url);
    if target.is_spawned() {
        // Chitin has no composite types, so not information_schema._pg_expandarray(),
        // which pgjdbc's getPrimaryKeys reads.
        java.env("CHITIN_JDBC_PRIMARY_KEYS", "0");
    }
    run_program("Jdbc.java", &mut java, &target);
}
