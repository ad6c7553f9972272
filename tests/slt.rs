//! SQL logic tests over a real pgwire connection.
//!
//! `slt_corpus` runs every `tests/slt/*.slt` file (PostgreSQL-compatible SQL, each file
//! verified against PostgreSQL 15) and, against Chitin only, every `tests/slt-chitin/*.slt`
//! file (CockroachDB syntax PostgreSQL lacks, such as `UPSERT`). Each file gets a fresh
//! database and its own connections; files run concurrently, a bounded number at a time,
//! on one server for the whole test binary. Every failing file is reported with its
//! error, and the test fails at the end.
//!
//! `external_corpus` runs the corpus other projects wrote (`tests/slt-external`, a verbatim
//! copy of RisingLight's and RisingWave's files checked against PostgreSQL 15, listed in
//! its `FILES.txt`) with the label `postgresql`, record by record, and prints how many
//! files and records pass. It fails only when a file that is not listed in
//! `tests/slt-external-known-failures.txt` fails: a regression. A listed file that passes
//! is reported (`NEW ok`) so its line can go; that does not fail the test. A record that
//! takes longer than 20 s is cancelled on the server and ends its file.
//!
//! Environment:
//! - `CHITIN_SLT_URL=postgresql://user@host:port/db`: run against that server instead of
//!   spawning Chitin (for example PostgreSQL itself, to validate the corpus). The runner
//!   creates and drops one database per file there.
//! - `CHITIN_SLT_FILTER=substr`: only files whose path contains `substr`.
//! - `CHITIN_SLT_JOBS=N`: files run at once (default 4).
//! - `CHITIN_SLT_TIMEOUT_SECS=N`: the whole run's limit (default 600); a file has at most
//!   a fifth of it, and no less than 60 s.
//! - `CHITIN_SLT_EXTERNAL_DIR=path`: where the external corpus is (default
//!   `tests/slt-external`).
//! - `CHITIN_SLT_EVERY_ERROR=1`: the external corpus prints every failing record, not
//!   only each file's first.
//!
//! Output format, as sqllogictest-bin's `postgres` engine: values are the server's text
//! format from the simple query protocol, unchanged (so bools are `t`/`f`, bytea is
//! `\x..` hex, timestamps are ISO), with SQL NULL as `NULL` and the empty string as
//! `(empty)`. A query string of several statements yields the first statement's result.
//! Unlike that engine, an error's text includes the server's message (`db error: ERROR:
//! relation "x" does not exist`), so `statement error <regex>` can match it, and a query
//! returning no rows is still a query result. `statement error (42P01)` matches the
//! SQLSTATE.
//!
//! Column types: for a query record whose SQL is one SELECT/VALUES/WITH statement, the
//! runner also Describes the statement (extended protocol, after the simple query ran)
//! and checks the record's letters: `I` for int2/int4/int8, `R` for float4/float8/numeric,
//! `T` for every other type; other letters match anything. The external corpus is run
//! without this check (its letters were written for other engines).
//!
//! Labels: the engine is `chitin` when the runner spawned the server or the server's
//! `version()` mentions Chitin, else `postgresql`; records may use `skipif`/`onlyif` with
//! either.

mod common;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Record, RecordOutput, Runner};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, SimpleQueryMessage};

use common::Target;

const URL_VAR: &str = "CHITIN_SLT_URL";

/// One sqllogictest connection: a tokio-postgres client using the simple query protocol.
struct PgConnection {
    client: Option<Client>,
    driver: Option<tokio::task::JoinHandle<()>>,
    /// Whether to report result column types (see [`PgConnection::column_types`]).
    describe_types: bool,
}

impl PgConnection {
    async fn connect(
        config: Config,
        describe_types: bool,
        cancels: CancelTokens,
    ) -> Result<PgConnection, SqlError> {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        if let Ok(mut tokens) = cancels.lock() {
            tokens.push(client.cancel_token());
        }
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(PgConnection {
            client: Some(client),
            driver: Some(driver),
            describe_types,
        })
    }

    /// The result column types of `sql`, which just ran successfully, from a Parse +
    /// Describe of the same text: integers are `I`, float4/float8/numeric `R`, everything
    /// else `T`. Only for a single SELECT/VALUES/WITH statement (anything else, or a
    /// failed Describe, reports no types and so is not checked).
    async fn column_types(&self, sql: &str) -> Option<Vec<DefaultColumnType>> {
        let client = self.client.as_ref()?;
        let trimmed = sql.trim().trim_end_matches(';');
        let lower = trimmed.to_ascii_lowercase();
        let query_like = ["select", "values", "with"]
            .iter()
            .any(|kw| lower.starts_with(kw));
        if !query_like || trimmed.contains(';') {
            return None;
        }
        let statement = client.prepare(trimmed).await.ok()?;
        Some(
            statement
                .columns()
                .iter()
                .map(|c| match *c.type_() {
                    Type::INT2 | Type::INT4 | Type::INT8 => DefaultColumnType::Integer,
                    Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => DefaultColumnType::FloatingPoint,
                    _ => DefaultColumnType::Text,
                })
                .collect(),
        )
    }
}

/// Accepts the actual column types when the record's letters agree: the same number of
/// columns, and each `I`, `R` or `T` equal to the actual type (any other letter, or an
/// unknown actual type, matches anything).
#[allow(clippy::ptr_arg)]
fn column_letters_match(
    actual: &Vec<DefaultColumnType>,
    expected: &Vec<DefaultColumnType>,
) -> bool {
    if actual.iter().all(|t| *t == DefaultColumnType::Any) {
        return true;
    }
    actual.len() == expected.len()
        && actual
            .iter()
            .zip(expected)
            .all(|(a, e)| *a == DefaultColumnType::Any || *e == DefaultColumnType::Any || a == e)
}

/// A client error whose text carries the server's message, so error regexes can match it.
#[derive(Debug)]
struct SqlError(tokio_postgres::Error);

impl From<tokio_postgres::Error> for SqlError {
    fn from(e: tokio_postgres::Error) -> Self {
        SqlError(e)
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "db error: {db}"),
            None => {
                write!(f, "{}", self.0)?;
                if let Some(source) = std::error::Error::source(&self.0) {
                    write!(f, ": {source}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SqlError {}

#[async_trait]
impl AsyncDB for PgConnection {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let client = self
            .client
            .as_ref()
            .expect("connection used after shutdown");
        let messages = client.simple_query(sql).await?;
        let mut columns: Option<usize> = None;
        let mut rows = Vec::new();
        let mut count = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(description) => {
                    columns = Some(description.len());
                }
                SimpleQueryMessage::Row(row) => {
                    let values = (0..row.len())
                        .map(|i| match row.get(i) {
                            None => "NULL".to_string(),
                            Some("") => "(empty)".to_string(),
                            Some(value) => value.to_string(),
                        })
                        .collect::<Vec<_>>();
                    columns.get_or_insert(values.len());
                    rows.push(values);
                }
                // Only the first statement of a multi-statement string is the result.
                SimpleQueryMessage::CommandComplete(n) => {
                    count = n;
                    break;
                }
                _ => {}
            }
        }
        let mut result = output(columns, rows, count);
        if let DBOutput::Rows { types, .. } = &mut result {
            if self.describe_types {
                if let Some(described) = self.column_types(sql).await {
                    *types = described;
                }
            }
        }
        Ok(result)
    }

    async fn shutdown(&mut self) {
        // Dropping the client sends Terminate; the driver task then ends.
        self.client.take();
        if let Some(driver) = self.driver.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
        }
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await
    }

    fn error_sql_state(err: &SqlError) -> Option<String> {
        err.0.code().map(|code| code.code().to_string())
    }
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }
}

fn output(
    columns: Option<usize>,
    rows: Vec<Vec<String>>,
    count: u64,
) -> DBOutput<DefaultColumnType> {
    match columns {
        Some(n) => DBOutput::Rows {
            types: vec![DefaultColumnType::Any; n],
            rows,
        },
        None => DBOutput::StatementComplete(count),
    }
}

/// Settings read from the environment.
struct RunSettings {
    filter: Option<String>,
    jobs: usize,
    total_timeout: Duration,
}

impl RunSettings {
    fn from_env() -> RunSettings {
        let number = |var: &str, default: u64| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        RunSettings {
            filter: std::env::var("CHITIN_SLT_FILTER")
                .ok()
                .filter(|f| !f.is_empty()),
            jobs: number("CHITIN_SLT_JOBS", 4) as usize,
            total_timeout: Duration::from_secs(number("CHITIN_SLT_TIMEOUT_SECS", 600)),
        }
    }

    fn file_timeout(&self) -> Duration {
        (self.total_timeout / 5).max(Duration::from_secs(60))
    }

    fn selects(&self, path: &Path) -> bool {
        match &self.filter {
            Some(filter) => path.to_string_lossy().contains(filter.as_str()),
            None => true,
        }
    }
}

/// Held by each test of this binary for its whole run, so the two corpora do not run at
/// once on the shared server: each already runs several files concurrently, and schema
/// changes that rewrite a table (ADD PRIMARY KEY) give up after enough retries when other
/// databases change their schemas all the time.
static ONE_CORPUS_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The server the test binary's tests share (see [`common::shared_target`]).
fn shared_target() -> Result<Arc<Target>, String> {
    common::shared_target(URL_VAR)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The `*.slt` files directly in `dir`, sorted.
fn slt_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|ext| ext == "slt"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A database name for `file`: a prefix, the file's name made an identifier, and the
/// process id, so reruns against a long-lived server do not collide.
fn database_name(prefix: &str, index: usize, file: &Path) -> String {
    let stem: String = file
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    format!("{prefix}_{index}_{stem}_{}", std::process::id())
}

/// `path` relative to the package root, for reports.
fn display_name(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Labels for `skipif`/`onlyif`: `chitin` or `postgresql`.
async fn engine_label(target: &Target) -> Result<&'static str, String> {
    if target.is_spawned() {
        return Ok("chitin");
    }
    let client = common::connect(&target.config(&target.default_database()))
        .await
        .map_err(|e| format!("connect: {}", SqlError(e)))?;
    let version = match client.simple_query("SELECT version()").await {
        Ok(messages) => messages
            .into_iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    Ok(if version.to_lowercase().contains("chitin") {
        "chitin"
    } else {
        "postgresql"
    })
}

/// Runs `work` for one file in a fresh database `db`, then drops the database.
async fn with_database<F, Fut, T>(
    target: &Target,
    admin: &Client,
    db: &str,
    work: F,
) -> Result<T, String>
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let _ = admin
        .simple_query(&format!("DROP DATABASE IF EXISTS {db}"))
        .await;
    admin
        .simple_query(&format!("CREATE DATABASE {db}"))
        .await
        .map_err(|e| format!("CREATE DATABASE {db}: {}", SqlError(e)))?;
    let result = work(target.config(db)).await;
    // Best effort: a server that cannot drop it still answered the test.
    let _ = admin.simple_query(&format!("DROP DATABASE {db}")).await;
    result
}

/// The cancel tokens of a runner's connections, so a record that takes too long can be
/// cancelled on the server (a client-side timeout alone would leave it running there).
type CancelTokens = Arc<std::sync::Mutex<Vec<tokio_postgres::CancelToken>>>;

/// Sends a CancelRequest for every connection in `cancels`; best effort.
async fn cancel_all(cancels: &CancelTokens) {
    let tokens: Vec<tokio_postgres::CancelToken> = match cancels.lock() {
        Ok(tokens) => tokens.clone(),
        Err(_) => return,
    };
    for token in tokens {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            token.cancel_query(tokio_postgres::NoTls),
        )
        .await;
    }
}

/// A future making one sqllogictest connection.
type ConnectFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<PgConnection, SqlError>> + Send>>;

/// Makes the connections of one runner (a file may open several, with `connection`).
type Connector = Box<dyn FnMut() -> ConnectFuture + Send>;

/// A runner over connections to `config`. With `check_types`, query records' column type
/// letters are checked against the server's described result types.
fn new_runner(
    config: Config,
    labels: &[&str],
    check_types: bool,
    cancels: CancelTokens,
) -> Runner<PgConnection, Connector> {
    let connector: Connector = Box::new(move || {
        Box::pin(PgConnection::connect(
            config.clone(),
            check_types,
            cancels.clone(),
        )) as ConnectFuture
    });
    let mut runner = Runner::new(connector);
    if check_types {
        runner.with_column_validator(column_letters_match);
    }
    for label in labels {
        runner.add_label(label);
    }
    runner
}

/// Runs one file to its first failure.
async fn run_file(config: Config, path: PathBuf, labels: Vec<&'static str>) -> Result<(), String> {
    let mut runner = new_runner(config, &labels, true, CancelTokens::default());
    let result = runner.run_file_async(&path).await;
    runner.shutdown_async().await;
    result.map_err(|e| e.display(false).to_string())
}

#[test]
fn slt_corpus() {
    let _one = ONE_CORPUS_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let settings = RunSettings::from_env();
    let target = match shared_target() {
        Ok(target) => target,
        Err(e) => panic!("cannot start the server: {e}"),
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let runtime = runtime();
    let label = runtime
        .block_on(engine_label(&target))
        .unwrap_or_else(|e| panic!("{e}"));

    let mut files: Vec<(&str, PathBuf)> = slt_files(&manifest.join("tests/slt"))
        .into_iter()
        .map(|f| ("slt", f))
        .collect();
    if label == "chitin" {
        files.extend(
            slt_files(&manifest.join("tests/slt-chitin"))
                .into_iter()
                .map(|f| ("sltc", f)),
        );
    }
    files.retain(|(_, f)| settings.selects(f));
    assert!(
        !files.is_empty() || settings.filter.is_some(),
        "no .slt files found under tests/"
    );

    let started = Instant::now();
    let outcome = runtime.block_on(async {
        let admin = common::connect(&target.config(&target.default_database()))
            .await
            .map_err(|e| format!("admin connection: {}", SqlError(e)))?;
        let admin = Arc::new(admin);
        let permits = Arc::new(Semaphore::new(settings.jobs));
        let file_timeout = settings.file_timeout();
        let mut tasks = JoinSet::new();
        for (index, (prefix, path)) in files.iter().cloned().enumerate() {
            let (target, admin, permits) = (target.clone(), admin.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore closed");
                let db = database_name(prefix, index, &path);
                let name = display_name(&path);
                let run = with_database(&target, &admin, &db, |config| async move {
                    match tokio::time::timeout(
                        file_timeout,
                        run_file(config, path.clone(), vec![label]),
                    )
                    .await
                    {
                        Ok(result) => result,
                        Err(_) => Err(format!("timed out after {file_timeout:?}")),
                    }
                });
                (name, run.await)
            });
        }
        let mut results = Vec::new();
        let collect = async {
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(result) => results.push(result),
                    Err(e) => results.push(("<task>".to_string(), Err(format!("panicked: {e}")))),
                }
            }
        };
        let timed_out = tokio::time::timeout(settings.total_timeout, collect)
            .await
            .is_err();
        tasks.abort_all();
        Ok::<_, String>((results, timed_out))
    });

    let (mut results, timed_out) = outcome.unwrap_or_else(|e| {
        panic!("{e}\nserver log:\n{}", target.log_tail());
    });
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let failed: Vec<&(String, Result<(), String>)> =
        results.iter().filter(|(_, r)| r.is_err()).collect();
    for (name, result) in &results {
        if result.is_ok() {
            eprintln!("slt ok      {name}");
        }
    }
    for (name, result) in &failed {
        if let Err(e) = result {
            eprintln!("slt FAILED  {name}\n{e}\n");
        }
    }
    let unfinished: Vec<String> = files
        .iter()
        .map(|(_, path)| display_name(path))
        .filter(|name| !results.iter().any(|(done, _)| done == name))
        .collect();
    let missing = unfinished.len();
    eprintln!(
        "slt ({label}): {} files passed, {} failed, {} not finished, in {:.1?}",
        results.len() - failed.len(),
        failed.len(),
        missing,
        started.elapsed()
    );
    if !failed.is_empty() || timed_out {
        let log = target.log_tail();
        if !log.is_empty() {
            eprintln!("server log (tail):\n{log}");
        }
    }
    assert!(
        !timed_out,
        "the run exceeded CHITIN_SLT_TIMEOUT_SECS ({:?}); unfinished: {}",
        settings.total_timeout,
        unfinished.join(", ")
    );
    assert!(
        failed.is_empty(),
        "{} of {} sqllogictest files failed: {}",
        failed.len(),
        results.len(),
        failed
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// Per-file record counts for the external corpus.
#[derive(Default)]
struct RecordCounts {
    passed: usize,
    failed: usize,
    skipped: usize,
    first_error: Option<String>,
    elapsed: Duration,
}

/// How long one record of the external corpus may take before its file is abandoned.
const RECORD_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs every record of one file, going on after failures.
async fn count_file(config: Config, path: PathBuf) -> Result<RecordCounts, String> {
    let started = Instant::now();
    let records =
        sqllogictest::parse_file::<DefaultColumnType>(&path).map_err(|e| format!("parse: {e}"))?;
    let cancels = CancelTokens::default();
    let mut runner = new_runner(config, &["postgresql"], false, cancels.clone());
    let mut counts = RecordCounts::default();
    for record in records {
        if let Record::Halt { .. } = record {
            break;
        }
        let counted = matches!(record, Record::Statement { .. } | Record::Query { .. });
        let result = tokio::time::timeout(RECORD_TIMEOUT, runner.run_async(record)).await;
        match result {
            Ok(Ok(RecordOutput::Nothing)) if counted => counts.skipped += 1,
            Ok(Ok(_)) if counted => counts.passed += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                counts.failed += 1;
                if std::env::var_os("CHITIN_SLT_EVERY_ERROR").is_some() {
                    let text = e.display(false).to_string();
                    let lines: Vec<&str> = text.lines().take(3).collect();
                    eprintln!("record failed: {}: {}", path.display(), lines.join(" | "));
                }
                counts
                    .first_error
                    .get_or_insert_with(|| e.display(false).to_string());
            }
            Err(_) => {
                cancel_all(&cancels).await;
                counts.failed += 1;
                counts
                    .first_error
                    .get_or_insert_with(|| format!("a record timed out after {RECORD_TIMEOUT:?}"));
                break;
            }
        }
    }
    runner.shutdown_async().await;
    counts.elapsed = started.elapsed();
    Ok(counts)
}

/// The checked-in list of external corpus files known to fail: `path reason…` per line
/// (path relative to the corpus directory, then the first failing feature), `#` comments.
const KNOWN_FAILURES: &str = "tests/slt-external-known-failures.txt";

/// Parses [`KNOWN_FAILURES`]: file path → reason.
fn known_failures(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((path, reason)) => (path.to_string(), reason.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

/// What one external corpus file did, against what [`KNOWN_FAILURES`] expects.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    /// Passes, as expected.
    Passed,
    /// Passes, but is listed as failing: the entry should go.
    NewlyPassing,
    /// Fails, and is listed.
    KnownFailure,
    /// Fails (or did not finish) although not listed: a regression.
    Regressed,
}

impl Verdict {
    fn of(passed: bool, listed: bool) -> Verdict {
        match (passed, listed) {
            (true, false) => Verdict::Passed,
            (true, true) => Verdict::NewlyPassing,
            (false, true) => Verdict::KnownFailure,
            (false, false) => Verdict::Regressed,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Verdict::Passed => "ok",
            Verdict::NewlyPassing => "NEW ok",
            Verdict::KnownFailure => "known",
            Verdict::Regressed => "FAILED",
        }
    }
}

/// The external corpus (`tests/slt-external`, a verbatim copy of the files other projects
/// wrote, listed in its `FILES.txt`), run with the label `postgresql` record by record.
///
/// Every file must pass except those listed in [`KNOWN_FAILURES`]; a listed file that
/// passes is reported (`NEW ok`) so the list shrinks, but does not fail the test. Prints
/// one line per file and the totals (files and records).
#[test]
fn external_corpus() {
    let _one = ONE_CORPUS_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let settings = RunSettings::from_env();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var("CHITIN_SLT_EXTERNAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| manifest.join("tests/slt-external"));
    let list = std::fs::read_to_string(dir.join("FILES.txt"))
        .unwrap_or_else(|e| panic!("external corpus list {}: {e}", dir.display()));
    let known_text = std::fs::read_to_string(manifest.join(KNOWN_FAILURES))
        .unwrap_or_else(|e| panic!("{KNOWN_FAILURES}: {e}"));
    let known = known_failures(&known_text);
    let listed: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stale: Vec<&String> = known
        .keys()
        .filter(|k| !listed.contains(&k.as_str()))
        .collect();
    assert!(
        stale.is_empty(),
        "{KNOWN_FAILURES} names files not in the corpus: {stale:?}"
    );
    let files: Vec<(String, PathBuf)> = listed
        .iter()
        .map(|l| (l.to_string(), dir.join(l)))
        .filter(|(_, p)| settings.selects(p))
        .collect();
    let target = shared_target().unwrap_or_else(|e| panic!("cannot start the server: {e}"));
    let runtime = runtime();
    let started = Instant::now();
    let results = runtime.block_on(async {
        let admin = match common::connect(&target.config(&target.default_database())).await {
            Ok(admin) => Arc::new(admin),
            Err(e) => return Err(format!("admin connection: {}", SqlError(e))),
        };
        let permits = Arc::new(Semaphore::new(settings.jobs));
        let file_timeout = settings.file_timeout();
        let mut tasks = JoinSet::new();
        for (index, (name, path)) in files.iter().cloned().enumerate() {
            let (target, admin, permits) = (target.clone(), admin.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore closed");
                let db = database_name("ext", index, &path);
                let run = with_database(&target, &admin, &db, |config| async move {
                    tokio::time::timeout(file_timeout, count_file(config, path))
                        .await
                        .unwrap_or_else(|_| Err(format!("timed out after {file_timeout:?}")))
                });
                (name, run.await)
            });
        }
        let mut results = Vec::new();
        let collect = async {
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(result) => results.push(result),
                    Err(e) => results.push(("<task>".to_string(), Err(format!("panicked: {e}")))),
                }
            }
        };
        let _ = tokio::time::timeout(settings.total_timeout, collect).await;
        tasks.abort_all();
        Ok(results)
    });
    let mut results = results.unwrap_or_else(|e| panic!("{e}"));
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut records_passed, mut records_failed) = (0, 0);
    let mut verdicts = Vec::new();
    for (name, result) in &results {
        let listed = known.contains_key(name);
        let verdict = match result {
            Ok(counts) => {
                records_passed += counts.passed;
                records_failed += counts.failed;
                let verdict = Verdict::of(counts.failed == 0, listed);
                eprintln!(
                    "ext {:<6} {name}: {} passed, {} failed, {} skipped, {:.1?}",
                    verdict.tag(),
                    counts.passed,
                    counts.failed,
                    counts.skipped,
                    counts.elapsed
                );
                if let (Some(e), Verdict::Regressed) = (&counts.first_error, verdict) {
                    let first_lines: Vec<&str> = e.lines().take(8).collect();
                    eprintln!("       first failure: {}", first_lines.join("\n       "));
                }
                verdict
            }
            Err(e) => {
                let verdict = Verdict::of(false, listed);
                eprintln!("ext {:<6} {name}: {e}", verdict.tag());
                verdict
            }
        };
        verdicts.push((name.as_str(), verdict));
    }
    let unfinished: Vec<&str> = files
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !results.iter().any(|(done, _)| done == name))
        .collect();
    let count = |v: Verdict| verdicts.iter().filter(|(_, x)| *x == v).count();
    let passed = count(Verdict::Passed) + count(Verdict::NewlyPassing);
    let failed = count(Verdict::KnownFailure) + count(Verdict::Regressed) + unfinished.len();
    eprintln!(
        "external corpus: {passed} passed, {failed} failed ({} known, {} regressed, {} not \
         finished) of {} files; records: {records_passed} passed, {records_failed} failed; \
         {:.1?}",
        count(Verdict::KnownFailure),
        count(Verdict::Regressed),
        unfinished.len(),
        files.len(),
        started.elapsed()
    );
    let newly: Vec<&str> = verdicts
        .iter()
        .filter(|(_, v)| *v == Verdict::NewlyPassing)
        .map(|(name, _)| *name)
        .collect();
    if !newly.is_empty() {
        eprintln!(
            "external corpus: now passing, remove from {KNOWN_FAILURES}: {}",
            newly.join(", ")
        );
    }
    let regressed: Vec<&str> = verdicts
        .iter()
        .filter(|(_, v)| *v == Verdict::Regressed)
        .map(|(name, _)| *name)
        .chain(
            unfinished
                .iter()
                .copied()
                .filter(|n| !known.contains_key(*n)),
        )
        .collect();
    if !regressed.is_empty() {
        let log = target.log_tail();
        if !log.is_empty() {
            eprintln!("server log (tail):\n{log}");
        }
    }
    assert!(
        regressed.is_empty(),
        "{} external corpus files that passed now fail (not in {KNOWN_FAILURES}): {}",
        regressed.len(),
        regressed.join(", ")
    );
}
