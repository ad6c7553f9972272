//! `chitin workload`: a load generator in the style of `cockroach workload`, speaking
//! pgwire to any PostgreSQL-compatible server, so that one client measures Chitin and
//! PostgreSQL alike.
//!
//! # Life of a run
//!
//! 1. [`main`] parses the flags ([`flags::parse`]) and builds a small tokio runtime: one
//!    thread by default (`--client-threads`), because the server under test usually shares
//!    the machine and the client must not steal its cores.
//! 2. [`run`] connects once to set up (the workload's `Setup`: counts, balances), then opens
//!    one connection per worker; each worker prepares its statements on its connection.
//! 3. Every worker runs [`drive`]: it calls its [`Worker::step`] in a closed loop, timing
//!    each operation (retries included) into its own [`stats::Recorder`].
//! 4. Once a second the reporter drains the recorders, prints one line per operation type
//!    ([`stats::Printer::tick`]) and accumulates the measured period; at the end (duration
//!    reached, `--max-ops` spent or Ctrl-C) it stops the workers and prints the summary.
//! 5. Workloads with an invariant check it afterwards (bank: the total balance).
//!
//! `init` creates the workload's table and loads it with multi-row INSERTs from several
//! connections ([`load`]).
//!
//! # Errors and retries
//!
//! Serialization failures (SQLSTATE 40001, and 40P01 deadlocks, which PostgreSQL reports
//! for crossing transfers) are retried by the worker itself, transparently; every retry
//! is counted and printed. Any other error is counted against its operation type and the
//! worker carries on; the first few are printed to stderr. A worker whose connection is
//! closed stops.
//!
//! # Implementation caveats
//!
//! - `--splits` issues CockroachDB's `ALTER TABLE … SPLIT AT VALUES`; servers without it
//!   (PostgreSQL, Chitin today) answer with an error, which is reported once and ignored.
//! - The per-second lines come from a 1 s ticker; an operation is attributed to the
//!   interval in which it finished.
//! - `--max-ops` counts operations started, so the total is exact but the last
//!   operations of different workers may overlap the stop.
//! - At the end, operations in flight get [`DRAIN_TIMEOUT`] to finish; any still running
//!   are abandoned (said on stderr) and not counted.

pub mod bank;
pub mod flags;
pub mod kv;
pub mod stats;
pub mod ycsb;
pub mod zipf;

use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::BytesMut;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::{Client, Config, NoTls};

use flags::{Command, Kind, Options};
use stats::{Line, Printer, Recorder};
use zipf::Rng;

/// How many times one operation is retried on a serialization failure before the error
/// is counted.
pub const MAX_RETRIES: u32 = 100;

/// How long the end of a run waits for the operations in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How many errors are printed to stderr in full; the rest are only counted.
const PRINTED_ERRORS: u64 = 10;

/// Runs `chitin workload <args>` and returns the process's exit code.
pub fn main(args: &[String]) -> ExitCode {
    if matches!(
        args.first().map(String::as_str),
        None | Some("help" | "--help" | "-h")
    ) {
        print!("{}", flags::USAGE);
        return if args.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let options = match flags::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e:#}\n\n{}", flags::USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = if options.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.client_threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the client runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match options.command {
            Command::Init => init(&options).await.map(|()| true),
            Command::Run => run(&options).await,
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the client should retry the transaction that failed with `e`.
pub fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Runs `$op` (an expression that awaits a statement) until it does not fail with a
/// retryable error or [`MAX_RETRIES`] is reached, counting retries in `$retries`.
macro_rules! retry {
    ($retries:ident, $op:expr) => {{
        loop {
            match $op {
                Err(e)
                    if $crate::workload::is_retryable(&e)
                        && $retries < $crate::workload::MAX_RETRIES =>
                {
                    $retries += 1;
                }
                r => break r,
            }
        }
    }};
}
pub(crate) use retry;

/// Opens a connection without TLS and drives it on a spawned task.
pub async fn connect(config: &Config) -> Result<Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .context("cannot connect to the server")?;
    tokio::spawn(async move {
        // The task ends with the connection; the client sees the error on its next call.
        let _ = connection.await;
    });
    Ok(client)
}

/// An integer parameter or column of whichever integer type the server chose: `INT` is 8
/// bytes in CockroachDB and Chitin but 4 in PostgreSQL.
#[derive(Clone, Copy, Debug)]
pub struct Int(pub i64);

impl ToSql for Int {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *ty {
            Type::INT2 => i16::try_from(self.0)?.to_sql(ty, out),
            Type::INT4 => i32::try_from(self.0)?.to_sql(ty, out),
            _ => self.0.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8)
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Int {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Int, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Int(match *ty {
            Type::INT2 => i64::from(i16::from_sql(ty, raw)?),
            Type::INT4 => i64::from(i32::from_sql(ty, raw)?),
            _ => i64::from_sql(ty, raw)?,
        }))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8)
    }
}

/// Runs `SELECT …` returning a single number through the simple protocol (text), so that
/// `sum()` works whatever type the server gives it (NUMERIC, INT8).
pub async fn query_number(client: &Client, sql: &str) -> Result<i128> {
    use tokio_postgres::SimpleQueryMessage;
    let messages = client
        .simple_query(sql)
        .await
        .with_context(|| sql.to_string())?;
    for m in messages {
        if let SimpleQueryMessage::Row(row) = m {
            let text = row.get(0).unwrap_or("0");
            let integral = text.split('.').next().unwrap_or(text);
            return integral
                .parse()
                .with_context(|| format!("{sql}: not a number: {text:?}"));
        }
    }
    anyhow::bail!("{sql}: no row")
}

/// The result of one operation of a worker.
#[derive(Debug)]
pub struct Outcome {
    /// Index into the workload's operation names.
    pub op: usize,
    /// Serialization failures retried on the way.
    pub retries: u32,
    pub result: std::result::Result<(), tokio_postgres::Error>,
}

/// One connection's worth of load: a closed loop of operations.
pub trait Worker: Send + 'static {
    /// Runs one operation to completion, retrying serialization failures itself.
    fn step(&mut self) -> impl Future<Output = Outcome> + Send;

    /// Whether the worker's connection is gone (it then stops).
    fn is_closed(&self) -> bool;
}

/// State the workers of one run share with the reporter.
#[derive(Debug, Default)]
pub struct RunControl {
    pub stop: AtomicBool,
    pub ops_started: AtomicU64,
    pub max_ops: Option<u64>,
    pub errors_printed: AtomicU64,
}

impl RunControl {
    /// Claims the right to start one more operation.
    fn admit(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        match self.max_ops {
            Some(max) => self.ops_started.fetch_add(1, Ordering::Relaxed) < max,
            None => true,
        }
    }

    fn report_error(&self, what: &str, e: &dyn std::fmt::Display) {
        if self.errors_printed.fetch_add(1, Ordering::Relaxed) < PRINTED_ERRORS {
            eprintln!("error in {what}: {e}");
        }
    }
}

/// A worker's closed loop; returns when the run stops or its connection closes.
async fn drive<W: Worker>(
    mut worker: W,
    op_names: &'static [&'static str],
    recorder: Arc<Mutex<Recorder>>,
    control: Arc<RunControl>,
    start_delay: Duration,
    _done: mpsc::Sender<()>,
) {
    if !start_delay.is_zero() {
        tokio::time::sleep(start_delay).await;
    }
    while control.admit() {
        let started = Instant::now();
        let outcome = worker.step().await;
        let latency = started.elapsed();
        if let Err(e) = &outcome.result {
            control.report_error(op_names[outcome.op], &DbError(e));
        }
        recorder.lock().unwrap_or_else(|e| e.into_inner()).record(
            outcome.op,
            latency,
            outcome.retries,
            outcome.result.is_err(),
        );
        if worker.is_closed() {
            control.report_error("worker", &"connection closed; the worker stops");
            break;
        }
    }
}

/// Prints a server error with its SQLSTATE and message, not just "db error".
pub struct DbError<'a>(pub &'a tokio_postgres::Error);

impl std::fmt::Display for DbError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "{} ({})", db.message(), db.code().code()),
            None => write!(f, "{}", self.0),
        }
    }
}

/// The workers of one run, started but not yet measured.
pub struct Workers {
    op_names: &'static [&'static str],
    recorders: Vec<Arc<Mutex<Recorder>>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
    control: Arc<RunControl>,
    done_tx: Option<mpsc::Sender<()>>,
    done_rx: mpsc::Receiver<()>,
    ramp: Duration,
    concurrency: usize,
    started: usize,
}

impl Workers {
    pub fn new(op_names: &'static [&'static str], options: &Options) -> Workers {
        let (done_tx, done_rx) = mpsc::channel(1);
        Workers {
            op_names,
            recorders: Vec::new(),
            handles: Vec::new(),
            control: Arc::new(RunControl {
                max_ops: options.max_ops,
                ..RunControl::default()
            }),
            done_tx: Some(done_tx),
            done_rx,
            ramp: options.ramp,
            concurrency: options.concurrency,
            started: 0,
        }
    }

    /// Starts `worker`; with a ramp, the i-th worker starts i/concurrency of the way in.
    pub fn spawn<W: Worker>(&mut self, worker: W) {
        let recorder = Arc::new(Mutex::new(Recorder::new(self.op_names.len())));
        self.recorders.push(recorder.clone());
        let delay = self
            .ramp
            .mul_f64(self.started as f64 / self.concurrency.max(1) as f64);
        self.started += 1;
        let done = self.done_tx.clone().expect("spawn before measure");
        self.handles.push(tokio::spawn(drive(
            worker,
            self.op_names,
            recorder,
            self.control.clone(),
            delay,
            done,
        )));
    }

    /// Reports once a second until the run ends, stops the workers and returns the
    /// summary lines of the measured period (after the ramp).
    pub async fn measure(mut self, options: &Options) -> Vec<Line> {
        drop(self.done_tx.take());
        let ops = self.op_names.len();
        let mut printer = Printer::new(options.json);
        let start = Instant::now();
        let mut measuring_since = options.ramp.is_zero().then_some(start);
        let mut cumulative = Recorder::new(ops);
        let mut interval = Recorder::new(ops);
        let mut cumulative_ops = vec![0u64; ops];
        let mut last_tick = start;
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::from_std(start + Duration::from_secs(1)),
            Duration::from_secs(1),
        );
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let far = Duration::from_secs(100 * 365 * 24 * 3600);
        loop {
            let deadline = match (measuring_since, options.duration) {
                (Some(since), Some(d)) => since + d,
                _ => start + far,
            };
            let mut finished = false;
            // Biased toward the ticker, so that a tick due at the deadline is printed.
            tokio::select! {
                biased;
                _ = ticker.tick() => {}
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    finished = true;
                }
                _ = &mut ctrl_c => finished = true,
                None = self.done_rx.recv() => finished = true,
            }
            let now = Instant::now();
            for r in &self.recorders {
                interval.drain_from(&mut r.lock().unwrap_or_else(|e| e.into_inner()));
            }
            if finished {
                self.control.stop.store(true, Ordering::Relaxed);
                // Let the operations in flight finish, so that they are counted, but
                // no longer than DRAIN_TIMEOUT in all: a server that takes minutes per
                // statement must not stretch a 10 s run into minutes.
                let drain_deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
                let mut abandoned = 0;
                for mut h in self.handles.drain(..) {
                    if tokio::time::timeout_at(drain_deadline, &mut h)
                        .await
                        .is_err()
                    {
                        h.abort();
                        abandoned += 1;
                    }
                }
                if abandoned > 0 {
                    eprintln!(
                        "note: {abandoned} operation(s) still running {DRAIN_TIMEOUT:?} after \
                         the end were abandoned and are not counted"
                    );
                }
                for r in &self.recorders {
                    interval.drain_from(&mut r.lock().unwrap_or_else(|e| e.into_inner()));
                }
                if measuring_since.is_some() {
                    cumulative.drain_from(&mut interval);
                }
                let measured = now - measuring_since.unwrap_or(start);
                return summary_lines(self.op_names, &cumulative, measured, &mut printer);
            }
            let tick_len = now - last_tick;
            last_tick = now;
            let lines: Vec<Line> = (0..ops)
                .map(|op| {
                    Line::from_histogram(
                        self.op_names[op],
                        &interval.latencies[op],
                        interval.errors[op],
                        interval.retries[op],
                    )
                })
                .collect();
            if measuring_since.is_some() {
                for (op, line) in lines.iter().enumerate() {
                    cumulative_ops[op] += line.ops;
                }
                cumulative.drain_from(&mut interval);
            } else {
                interval.reset();
            }
            let measured = measuring_since.map_or(Duration::ZERO, |s| now - s);
            print!(
                "{}",
                printer.tick(now - start, tick_len, measured, &lines, &cumulative_ops)
            );
            if measuring_since.is_none() && now >= start + options.ramp {
                measuring_since = Some(now);
            }
        }
    }
}

/// Prints the summary of `cumulative` over `measured` and returns its lines (the total
/// last).
fn summary_lines(
    op_names: &[&'static str],
    cumulative: &Recorder,
    measured: Duration,
    printer: &mut Printer,
) -> Vec<Line> {
    let mut lines: Vec<Line> = op_names
        .iter()
        .enumerate()
        .map(|(op, name)| {
            Line::from_histogram(
                name,
                &cumulative.latencies[op],
                cumulative.errors[op],
                cumulative.retries[op],
            )
        })
        .collect();
    let mut merged: Histogram<u64> = stats::new_histogram();
    for h in &cumulative.latencies {
        merged.add(h).expect("histograms with equal bounds");
    }
    lines.push(Line::total(&lines, &merged));
    print!("{}", printer.summary(measured, &lines));
    lines
}

/// `chitin workload init`: creates and loads the workload's table.
async fn init(options: &Options) -> Result<()> {
    let config: Config = options.url.parse()?;
    let client = connect(&config).await?;
    match options.kind {
        Kind::Ycsb => ycsb::init(&client, &config, options).await,
        Kind::Kv => kv::init(&client, &config, options).await,
        Kind::Bank => bank::init(&client, &config, options).await,
    }
}

/// `chitin workload run`: returns whether the run passed its checks.
async fn run(options: &Options) -> Result<bool> {
    let config: Config = options.url.parse()?;
    let client = connect(&config).await?;
    let ok = match options.kind {
        Kind::Ycsb => ycsb::run(&client, &config, options).await?,
        Kind::Kv => kv::run(&client, &config, options).await?,
        Kind::Bank => bank::run(&client, &config, options).await?,
    };
    Ok(ok)
}

/// Whether the summary shows a run in which nothing succeeded although something failed.
pub fn all_failed(lines: &[Line]) -> bool {
    lines
        .last()
        .is_some_and(|total| total.ops == 0 && total.errors > 0)
}

/// Runs `sql` and reports whether it succeeded; DDL helpers use it for statements that
/// some servers do not support.
pub async fn try_execute(client: &Client, sql: &str) -> std::result::Result<(), String> {
    client
        .batch_execute(sql)
        .await
        .map_err(|e| DbError(&e).to_string())
}

/// Issues `ALTER TABLE <table> SPLIT AT VALUES (…)` for each split point; stops at the
/// first error and reports it once (PostgreSQL and Chitin do not have SPLIT AT).
pub async fn split_table(client: &Client, table: &str, points: &[String]) {
    for point in points {
        let sql = format!("ALTER TABLE {table} SPLIT AT VALUES ({point})");
        if let Err(e) = try_execute(client, &sql).await {
            eprintln!("note: --splits ignored: the server did not accept SPLIT AT ({e})");
            return;
        }
    }
    if !points.is_empty() {
        eprintln!("split {table} at {} points", points.len());
    }
}

/// A parameter list under construction: owned values, lent to `execute` as references.
pub type OwnedParams = Vec<Box<dyn ToSql + Sync + Send>>;

/// Appends the parameters of row `index` to the list, drawing randomness from the `Rng`.
pub type RowParams = dyn Fn(u64, &mut Rng, &mut OwnedParams) + Send + Sync;

/// How a workload's rows are loaded: the INSERT for `n` rows, and the parameters of row
/// `index`.
pub struct LoadSpec {
    pub table: &'static str,
    pub insert_sql: fn(usize) -> String,
    pub row_params: Arc<RowParams>,
}

/// Loads `options.record_count` rows with multi-row INSERTs of `--load-batch` rows from
/// `--concurrency` connections, printing progress once a second.
pub async fn load(config: &Config, options: &Options, spec: LoadSpec) -> Result<()> {
    let total = options.record_count;
    let batch = options.load_batch as u64;
    let next = Arc::new(AtomicU64::new(0));
    let loaded = Arc::new(AtomicU64::new(0));
    let spec = Arc::new(spec);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..options.concurrency {
        let client = connect(config).await?;
        let (next, loaded, spec) = (next.clone(), loaded.clone(), spec.clone());
        let seed = options.seed ^ (w as u64).wrapping_mul(0x9E37_79B9);
        tasks.spawn(async move {
            let mut rng = Rng::new(seed);
            let full = client.prepare(&(spec.insert_sql)(batch as usize)).await?;
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    return Ok::<(), anyhow::Error>(());
                }
                let n = batch.min(total - first);
                let stmt = if n == batch {
                    full.clone()
                } else {
                    client.prepare(&(spec.insert_sql)(n as usize)).await?
                };
                let mut owned: OwnedParams = Vec::new();
                for row in first..first + n {
                    (spec.row_params)(row, &mut rng, &mut owned);
                }
                let params: Vec<&(dyn ToSql + Sync)> =
                    owned.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                let mut retries = 0;
                retry!(retries, client.execute(&stmt, &params).await).map_err(|e| {
                    anyhow::anyhow!("INSERT INTO {} failed: {}", spec.table, DbError(&e))
                })?;
                loaded.fetch_add(n, Ordering::Relaxed);
            }
        });
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let n = loaded.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                if options.json {
                    println!("{{\"type\":\"load\",\"elapsed_s\":{secs:.1},\"table\":\"{}\",\"rows\":{n},\"total\":{total}}}", spec.table);
                } else {
                    println!("{secs:>7.1}s loaded {n}/{total} rows into {} ({:.0} rows/s)", spec.table, n as f64 / secs);
                }
            }
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => anyhow::bail!("load task failed: {e}"),
            },
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let n = loaded.load(Ordering::Relaxed);
    if options.json {
        println!(
            "{{\"type\":\"load_done\",\"elapsed_s\":{secs:.1},\"table\":\"{}\",\"rows\":{n},\"rows_per_sec\":{:.1}}}",
            spec.table,
            n as f64 / secs
        );
    } else {
        println!(
            "loaded {n} rows into {} in {secs:.1}s ({:.0} rows/s)",
            spec.table,
            n as f64 / secs
        );
    }
    Ok(())
}

/// `INSERT INTO <table_and_columns> VALUES ($1, …), (…), …` for `rows` rows of `columns`
/// parameters each.
pub fn multi_row_insert(table_and_columns: &str, columns: usize, rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table_and_columns} VALUES ");
    let mut p = 1;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&p.to_string());
            p += 1;
        }
        sql.push(')');
    }
    sql
}

/// Creates `table` with `create_sql`, dropping it first with `--drop`; without `--drop`
/// an existing table is an error (loading into it would collide with its rows).
pub async fn create_table(
    client: &Client,
    options: &Options,
    table: &str,
    create_sql: &str,
) -> Result<()> {
    if options.drop {
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
            .await
            .map_err(|e| anyhow::anyhow!("DROP TABLE {table}: {}", DbError(&e)))?;
    }
    client.batch_execute(create_sql).await.map_err(|e| {
        anyhow::anyhow!(
            "CREATE TABLE {table}: {} (use --drop to replace an existing table)",
            DbError(&e)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_insert_numbers_parameters() {
        assert_eq!(
            multi_row_insert("t (a, b)", 2, 2),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(multi_row_insert("t", 1, 1), "INSERT INTO t VALUES ($1)");
    }

    #[test]
    fn run_control_admits_max_ops() {
        let control = RunControl {
            max_ops: Some(3),
            ..RunControl::default()
        };
        assert_eq!((0..10).filter(|_| control.admit()).count(), 3);
        let unlimited = RunControl::default();
        assert!(unlimited.admit());
        unlimited.stop.store(true, Ordering::Relaxed);
        assert!(!unlimited.admit());
    }

    #[test]
    fn all_failed_needs_errors_and_no_successes() {
        let line = |ops, errors| Line {
            op: "total".into(),
            ops,
            errors,
            retries: 0,
            mean_ms: 0.0,
            p50_ms: 0.0,
            p95_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
        };
        assert!(all_failed(&[line(0, 3)]));
        assert!(!all_failed(&[line(1, 3)]));
        assert!(!all_failed(&[line(0, 0)]));
    }
}
