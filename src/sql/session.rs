//! A SQL session: session variables, the transaction state machine (idle, open, failed),
//! prepared statements and portals, SQL cursors ([`crate::sql::cursor`]), and the retry
//! loop for implicit transactions.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::error::{Error, ErrorKind, Result};
use crate::kv::{KvRequest, KvResponse};
use crate::node::CoreCtx;
use crate::sql::catalog;
use crate::sql::cursor::{self, CursorCommand, Cursors};
use crate::sql::exec::{self, Exec};
use crate::sql::types::{Datum, SqlType};
use crate::txn::{Isolation, Txn};

/// A result column.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
}

/// What a statement produced.
pub enum Outcome {
    Rows {
        rows: Vec<Vec<Datum>>,
        tag: String,
        suspended: bool,
    },
    Command(String),
    Empty,
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7) | 1
    );
}

/// A per-core pseudo-random u64 (splitmix64), for gen_random_uuid() and random().
pub fn next_random() -> u64 {
    RNG.with(|r| {
        let mut z = r.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        r.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

struct PreparedStmt {
    stmt: Option<Statement>,
    param_types: Vec<SqlType>,
    columns: Option<Vec<Column>>,
    /// The plan of a prepared query, reused while the catalog does not change.
    plan: exec::PlanCache,
}

struct Portal {
    stmt: Rc<PreparedStmt>,
    params: Vec<Datum>,
    formats: Vec<i16>,
    /// Rows left from an Execute with a row limit.
    pending: Option<(VecDeque<Vec<Datum>>, String)>,
    /// The point-lookup fast path ran it: later Executes return no rows.
    exhausted: bool,
}

/// The parameter values of a Bind message, as spans of its body (`None`: NULL).
pub struct BindParams<'a> {
    pub raw: &'a [u8],
    pub spans: &'a [Option<(usize, usize)>],
}

impl BindParams<'_> {
    fn get(&self, i: usize) -> Option<&[u8]> {
        self.spans[i].map(|(a, b)| &self.raw[a..b])
    }
}

/// What the point-lookup fast path found: the stored row (if any) and how to show it.
/// Reused across Executes, so its buffers stop growing.
#[derive(Default)]
pub struct PointRow {
    pub lookup: Option<Rc<exec::PointLookup>>,
    pub row: Option<Vec<u8>>,
    pub formats: Vec<i16>,
    /// The encoded key (scratch).
    key: Vec<u8>,
}

pub struct Session {
    pub ctx: Rc<CoreCtx>,
    pub user: String,
    pub database: String,
    /// Session variables; shared with each statement's evaluation (`current_setting`).
    vars: Rc<BTreeMap<String, String>>,
    txn: Option<Txn>,
    /// An explicit transaction (BEGIN) is open.
    explicit: bool,
    /// The explicit transaction failed; only ROLLBACK is accepted.
    failed: bool,
    /// A multi-statement simple query is running: its statements outside an explicit
    /// transaction share one implicit transaction, committed at the end of the string.
    in_batch: bool,
    implicit_batch: bool,
    /// Values overwritten by SET LOCAL, restored at the end of the transaction.
    local_saved: Vec<(String, Option<String>)>,
    /// Open savepoints, outermost first, with the write buffer as it was at each.
    savepoints: Vec<(String, BTreeMap<Vec<u8>, crate::txn::Pending>)>,
    /// `RELEASE SAVEPOINT cockroach_restart` committed the transaction; COMMIT ends it.
    released: bool,
    prepared: HashMap<String, Rc<PreparedStmt>>,
    portals: HashMap<String, Portal>,
    /// SQL cursors (DECLARE … CURSOR).
    cursors: Cursors,
    /// The last simple-protocol statement was a FETCH from a BINARY cursor.
    binary_result: bool,
    cancel: Arc<AtomicBool>,
    /// currval / lastval state, for the session's life.
    sequences: Rc<std::cell::RefCell<crate::sql::sequence::SeqSession>>,
}

const MAX_RETRIES: usize = 50;

/// How long the server keeps retrying an implicit transaction before returning its 40001.
const IMPLICIT_RETRY_BUDGET: std::time::Duration = std::time::Duration::from_secs(4);

/// The savepoint of CockroachDB's client-side retry protocol.
const RESTART_SAVEPOINT: &str = "cockroach_restart";

/// Statements slower than this are logged to stderr.
const SLOW_STATEMENT: std::time::Duration = std::time::Duration::from_secs(1);

/// Session variables and their defaults (what RESET restores).
const DEFAULTS: [(&str, &str); 20] = [
    ("server_version", "15.0.0"),
    ("server_version_num", "150000"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("timezone", "UTC"),
    ("application_name", ""),
    ("search_path", DEFAULT_SEARCH_PATH),
    ("transaction_isolation", "serializable"),
    ("default_transaction_isolation", "serializable"),
    ("transaction_read_only", "off"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("statement_timeout", "0"),
    ("default_table_access_method", "heap"),
    // SERIAL columns: `sql_sequence` (PostgreSQL's: a sequence per column) or `rowid`
    // (CockroachDB's old default: unique_rowid()).
    ("serial_normalization", "sql_sequence"),
    // DistSQL (`sql::exec::distsql`): `off`, `auto` or `on`.
    ("distsql", "auto"),
];

impl Session {
    pub async fn new(
        ctx: Rc<CoreCtx>,
        user: &str,
        database: &str,
        params: &BTreeMap<String, String>,
        cancel: Arc<AtomicBool>,
    ) -> Result<Session> {
        let cat = catalog::current(&ctx).await?;
        if cat.database(database).is_none() {
            return Err(Error::new(
                ErrorKind::UndefinedDatabase,
                format!("database \"{database}\" does not exist"),
            ));
        }
        let mut vars = BTreeMap::new();
        for (k, v) in DEFAULTS {
            vars.insert(k.to_string(), v.to_string());
        }
        vars.insert("session_authorization".to_string(), user.to_string());
        for (k, v) in params {
            let k = k.to_lowercase();
            if k == "options" {
                for (name, value) in startup_options(v) {
                    vars.insert(name, value);
                }
            } else if !matches!(k.as_str(), "user" | "database" | "replication") {
                vars.insert(k, v.clone());
            }
        }
        Ok(Session {
            ctx,
            user: user.to_string(),
            database: database.to_string(),
            vars: Rc::new(vars),
            txn: None,
            explicit: false,
            failed: false,
            in_batch: false,
            implicit_batch: false,
            local_saved: Vec::new(),
            savepoints: Vec::new(),
            released: false,
            prepared: HashMap::new(),
            portals: HashMap::new(),
            cursors: Cursors::default(),
            binary_result: false,
            cancel,
            sequences: Default::default(),
        })
    }

    pub fn startup_parameters(&self) -> Vec<(String, String)> {
        let names = [
            ("server_version", "server_version"),
            ("server_encoding", "server_encoding"),
            ("client_encoding", "client_encoding"),
            ("DateStyle", "datestyle"),
            ("IntervalStyle", "intervalstyle"),
            ("integer_datetimes", "integer_datetimes"),
            ("standard_conforming_strings", "standard_conforming_strings"),
            ("TimeZone", "timezone"),
            ("application_name", "application_name"),
            ("is_superuser", "is_superuser"),
            ("session_authorization", "session_authorization"),
        ];
        names
            .iter()
            .map(|(wire, key)| {
                (
                    wire.to_string(),
                    self.vars.get(*key).cloned().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// 'I' idle, 'T' in a transaction block, 'E' in a failed one.
    pub fn txn_status(&self) -> u8 {
        if self.failed {
            b'E'
        } else if self.explicit {
            b'T'
        } else {
            b'I'
        }
    }

    pub fn parse_sql(&self, sql: &str) -> Result<Vec<Statement>> {
        parse(sql)
    }

    /// Called after any error was sent: an explicit transaction becomes failed.
    pub fn on_error(&mut self) {
        if self.explicit {
            self.failed = true;
        }
    }

    /// True while a multi-statement string's implicit transaction is open.
    pub fn in_implicit_batch(&self) -> bool {
        self.implicit_batch
    }

    /// Starts a multi-statement simple query.
    pub fn begin_batch(&mut self) {
        self.in_batch = true;
        self.implicit_batch = !self.explicit;
    }

    /// Ends a multi-statement simple query: commits its implicit transaction when every
    /// statement succeeded, else drops it.
    pub async fn end_batch(&mut self, ok: bool) -> Result<()> {
        self.in_batch = false;
        if !self.implicit_batch {
            return Ok(());
        }
        self.implicit_batch = false;
        let txn = self.txn.take();
        let r = match txn {
            Some(txn) if ok => commit(&self.ctx, txn).await,
            other => {
                abandon(&self.ctx, other);
                Ok(())
            }
        };
        self.cursors.end_transaction(ok && r.is_ok());
        r
    }

    pub async fn sync(&mut self) {}

    fn begin_txn(&self) -> Txn {
        let id = self.ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed);
        let now = self.ctx.shared.hlc.now();
        let mut txn = Txn::new(id, now);
        txn.reset_read_ts(now, self.ctx.shared.uncertainty_limit(now));
        txn.pin = Some(crate::node::catalog_pins::pin(&self.ctx));
        txn.isolation = self
            .vars
            .get("default_transaction_isolation")
            .and_then(|v| Isolation::from_name(v))
            .unwrap_or_default();
        txn.track_reads = txn.isolation == Isolation::Serializable;
        txn.read_only = self.default_read_only();
        txn
    }

    /// `default_transaction_read_only`: new transactions are READ ONLY.
    fn default_read_only(&self) -> bool {
        self.vars
            .get("default_transaction_read_only")
            .is_some_and(|v| parse_bool_setting(v) == Some(true))
    }

    /// Whether the statement about to run belongs to a READ ONLY transaction.
    fn read_only(&self) -> bool {
        match &self.txn {
            Some(t) if self.explicit || self.implicit_batch => t.read_only,
            _ => self.default_read_only(),
        }
    }

    /// Applies `ISOLATION LEVEL …` and `READ ONLY | READ WRITE` modes to the open
    /// transaction.
    fn set_isolation(&mut self, modes: &[sqlparser::ast::TransactionMode]) {
        for m in modes {
            if let sqlparser::ast::TransactionMode::AccessMode(mode) = m {
                let read_only = matches!(mode, sqlparser::ast::TransactionAccessMode::ReadOnly);
                if let Some(txn) = self.txn.as_mut() {
                    txn.read_only = read_only;
                }
                let value = if read_only { "on" } else { "off" };
                let old = Rc::make_mut(&mut self.vars)
                    .insert("transaction_read_only".into(), value.into());
                self.local_saved.push(("transaction_read_only".into(), old));
            }
            if let sqlparser::ast::TransactionMode::IsolationLevel(level) = m {
                use sqlparser::ast::TransactionIsolationLevel as L;
                let iso = match level {
                    L::ReadCommitted | L::ReadUncommitted => Isolation::ReadCommitted,
                    _ => Isolation::Serializable,
                };
                if let Some(txn) = self.txn.as_mut() {
                    txn.isolation = iso;
                    txn.track_reads = iso == Isolation::Serializable;
                }
            }
        }
        let name = self
            .txn
            .as_ref()
            .map(|t| t.isolation)
            .unwrap_or_default()
            .name();
        let old = Rc::make_mut(&mut self.vars).insert("transaction_isolation".into(), name.into());
        self.local_saved.push(("transaction_isolation".into(), old));
    }

    /// Runs one statement from a simple Query message.
    pub async fn execute_simple(
        &mut self,
        stmt: Statement,
        _multi: bool,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        self.binary_result = false;
        self.run(&stmt, Vec::new(), None).await
    }

    /// Whether the rows of the statement [`Session::execute_simple`] just ran go in binary
    /// format (a FETCH from a BINARY cursor); resets the flag.
    pub fn take_binary_result(&mut self) -> bool {
        std::mem::take(&mut self.binary_result)
    }

    /// Checks a `COPY … FROM STDIN` before the client sends data: the table and columns
    /// exist. Returns the number of columns each row carries.
    pub async fn copy_in_start(&mut self, spec: &crate::sql::copy::CopySpec) -> Result<usize> {
        self.usable_for("COPY")?;
        // Pin before reading the catalog ([`crate::node::catalog_pins`]).
        let mut txn = self.begin_txn();
        let cat = catalog::current(&self.ctx).await?;
        let ex = self.exec(&cat, &mut txn, Vec::new());
        let (_, positions, _) = ex.copy_target(&spec.table, &spec.columns)?;
        Ok(positions.len())
    }

    /// Inserts one batch of `COPY … FROM STDIN` rows: into the open transaction inside
    /// BEGIN … COMMIT, else in a transaction of its own, retried on 40001 like an implicit
    /// statement.
    pub async fn copy_in_rows(
        &mut self,
        spec: &crate::sql::copy::CopySpec,
        rows: &[Vec<crate::sql::copy::Field>],
        first_line: u64,
    ) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        let result = self.copy_in_rows_inner(spec, rows, first_line).await;
        self.ctx
            .metrics()
            .observe_statement(1, started.elapsed(), result.is_err());
        result
    }

    async fn copy_in_rows_inner(
        &mut self,
        spec: &crate::sql::copy::CopySpec,
        rows: &[Vec<crate::sql::copy::Field>],
        first_line: u64,
    ) -> Result<u64> {
        self.usable_for("COPY")?;
        if self.explicit || self.implicit_batch {
            let mut txn = self.txn.take().unwrap_or_else(|| self.begin_txn());
            let cat = match catalog::current(&self.ctx).await {
                Ok(cat) => cat,
                Err(e) => {
                    self.txn = Some(txn);
                    return Err(e);
                }
            };
            let r = {
                let mut ex = self.exec(&cat, &mut txn, Vec::new());
                ex.copy_rows(&spec.table, &spec.columns, rows, first_line)
                    .await
            };
            self.txn = Some(txn);
            return r;
        }
        let mut attempt = 0;
        let first_try = Instant::now();
        loop {
            let mut txn = self.begin_txn();
            let cat = catalog::current(&self.ctx).await?;
            txn.implicit = true;
            let r = {
                let mut ex = self.exec(&cat, &mut txn, Vec::new());
                ex.copy_rows(&spec.table, &spec.columns, rows, first_line)
                    .await
            };
            match finish_implicit(&self.ctx, txn, r).await {
                Err(e) if retry_implicit(&self.ctx, &e, &mut attempt, first_try).await => {}
                r => return r,
            }
        }
    }

    /// The rows of `COPY {table (cols) | (query)} TO STDOUT`, with their columns.
    pub async fn copy_out(
        &mut self,
        spec: &crate::sql::copy::CopySpec,
    ) -> Result<(Vec<Vec<Datum>>, Vec<Column>)> {
        let sql = match &spec.query {
            Some(q) => q.clone(),
            None if spec.columns.is_empty() => format!("SELECT * FROM {}", spec.table),
            None => format!(
                "SELECT {} FROM {}",
                spec.columns
                    .iter()
                    .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
                    .collect::<Vec<_>>()
                    .join(", "),
                spec.table
            ),
        };
        if spec.query.is_none() {
            self.refuse_copy_from_view(&spec.table).await?;
        }
        let mut stmts = parse(&sql)?;
        if stmts.len() != 1 {
            return Err(Error::syntax("COPY: expected one query"));
        }
        let stmt = stmts.pop().unwrap();
        if !matches!(stmt, Statement::Query(_)) {
            return Err(Error::unsupported(
                "COPY (statement) TO STDOUT: only a query is supported",
            ));
        }
        match self.run(&stmt, Vec::new(), None).await? {
            (Outcome::Rows { rows, .. }, cols) => Ok((rows, cols.unwrap_or_default())),
            _ => Err(Error::internal("COPY: the query returned no rows")),
        }
    }

    /// `COPY v TO STDOUT` of a view or materialized view: PostgreSQL's 42809 (only a
    /// table's rows are copied by name; `COPY (SELECT …) TO` reads any query).
    async fn refuse_copy_from_view(&self, table: &str) -> Result<()> {
        let Ok(name) = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(table)
            .and_then(|mut p| p.parse_object_name(false))
        else {
            return Ok(());
        };
        let cat = catalog::current(&self.ctx).await?;
        let db_id = cat.database(&self.database).map(|d| d.id).unwrap_or(0);
        let path = self.search_path(&cat, db_id);
        let (kind, t) = match cat.relation(db_id, &path, &name)? {
            Some(t) if t.materialized.is_some() => ("materialized view", t),
            Some(t) if t.view.is_some() => ("view", t),
            _ => return Ok(()),
        };
        Err(Error::new(
            ErrorKind::WrongObjectType,
            format!("cannot copy from {kind} \"{}\"", t.name),
        )
        .with_hint("Try the COPY (SELECT ...) TO variant."))
    }

    /// Runs a statement with transaction handling. Implicit transactions are retried on
    /// 40001 here; explicit ones get the error.
    async fn run(
        &mut self,
        stmt: &Statement,
        params: Vec<Datum>,
        plan: Option<&exec::PlanCache>,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        self.cancel.store(false, Ordering::SeqCst);
        let started = Instant::now();
        let kind = exec::statement_kind(stmt);
        let retry_params = self.ctx.shared.replicated().then(|| params.clone());
        let mut result = self.run_inner(stmt, params, plan).await;
        // In a cluster another node may have changed the schema since this node last
        // loaded it: a statement that found no such table (column, database) reloads the
        // catalog and runs once more, outside explicit transactions.
        if let Err(e) = &result {
            let stale = is_stale_catalog(e);
            if let Some(params) =
                retry_params.filter(|_| stale && !self.explicit && self.txn.is_none())
            {
                self.ctx
                    .shared
                    .catalog_version
                    .fetch_add(1, Ordering::SeqCst);
                result = self.run_inner(stmt, params, plan).await;
            }
        }
        let took = started.elapsed();
        if took > SLOW_STATEMENT {
            let text = stmt.to_string();
            let text: String = text.chars().take(200).collect();
            eprintln!(
                "core {}: slow statement ({took:?}, {}): {text}",
                self.ctx.core,
                match &result {
                    Ok(_) => "ok".to_string(),
                    Err(e) => format!("error {}: {}", e.sqlstate(), e.message),
                }
            );
        }
        self.ctx
            .metrics()
            .observe_statement(kind, started.elapsed(), result.is_err());
        result
    }

    /// `SAVEPOINT name`: remembers the write buffer.
    fn savepoint(&mut self, name: &str) -> Result<(Outcome, Option<Vec<Column>>)> {
        if !self.explicit {
            return Err(Error::new(
                ErrorKind::NoActiveSqlTransaction,
                "SAVEPOINT can only be used in transaction blocks",
            ));
        }
        self.usable_for("SAVEPOINT")?;
        let writes = self
            .txn
            .as_ref()
            .map(|t| t.writes.clone())
            .unwrap_or_default();
        self.savepoints.push((name.to_string(), writes));
        Ok((Outcome::Command("SAVEPOINT".into()), None))
    }

    /// Refuses statements in a failed or released transaction.
    fn usable_for(&self, what: &str) -> Result<()> {
        if self.failed {
            return Err(Error::new(
                ErrorKind::InFailedTransaction,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        if self.released {
            return Err(Error::new(
                ErrorKind::InFailedTransaction,
                format!("{what}: the transaction is committed; only COMMIT is allowed"),
            ));
        }
        Ok(())
    }

    fn find_savepoint(&self, name: &str) -> Result<usize> {
        self.savepoints
            .iter()
            .rposition(|(n, _)| n.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidSavepoint,
                    format!("savepoint \"{name}\" does not exist"),
                )
            })
    }

    /// `RELEASE SAVEPOINT name`: forgets it and the savepoints after it. Releasing
    /// `cockroach_restart` (CockroachDB's client-side retry protocol) commits the
    /// transaction: a 40001 surfaces here, and `ROLLBACK TO SAVEPOINT cockroach_restart`
    /// then restarts the transaction.
    async fn release(&mut self, name: &str) -> Result<(Outcome, Option<Vec<Column>>)> {
        if !self.explicit {
            return Err(Error::new(
                ErrorKind::NoActiveSqlTransaction,
                "RELEASE SAVEPOINT can only be used in transaction blocks",
            ));
        }
        self.usable_for("RELEASE")?;
        let at = self.find_savepoint(name)?;
        if at == 0 && name.eq_ignore_ascii_case(RESTART_SAVEPOINT) {
            if let Some(txn) = self.txn.take() {
                let writes = txn.writes.clone();
                let id = txn.id;
                if let Err(e) = commit(&self.ctx, txn).await {
                    // Keep a transaction to restart (ROLLBACK TO) or roll back.
                    let now = self.ctx.shared.hlc.now();
                    let mut again = Txn::new(id, now);
                    again.reset_read_ts(now, self.ctx.shared.uncertainty_limit(now));
                    again.writes = writes;
                    again.pin = Some(crate::node::catalog_pins::pin(&self.ctx));
                    self.txn = Some(again);
                    self.failed = true;
                    return Err(e);
                }
            }
            self.released = true;
        }
        self.savepoints.truncate(at);
        self.cursors.release(at);
        Ok((Outcome::Command("RELEASE".into()), None))
    }

    /// `ROLLBACK TO SAVEPOINT name`: undoes the writes made since, keeps the savepoint,
    /// and leaves a failed transaction usable again. For `cockroach_restart` (the
    /// outermost savepoint) the transaction restarts at a new timestamp.
    fn rollback_to(&mut self, name: &str) -> Result<(Outcome, Option<Vec<Column>>)> {
        if !self.explicit {
            return Err(Error::new(
                ErrorKind::NoActiveSqlTransaction,
                "ROLLBACK TO SAVEPOINT can only be used in transaction blocks",
            ));
        }
        if self.released {
            return Err(Error::new(
                ErrorKind::InFailedTransaction,
                "ROLLBACK TO SAVEPOINT: the transaction is committed; only COMMIT is allowed",
            ));
        }
        let at = self.find_savepoint(name)?;
        self.savepoints.truncate(at + 1);
        self.cursors.rollback_to(at);
        let writes = self.savepoints[at].1.clone();
        if at == 0 && name.eq_ignore_ascii_case(RESTART_SAVEPOINT) {
            let mut txn = self.begin_txn();
            txn.writes = writes;
            abandon(&self.ctx, self.txn.replace(txn));
        } else if let Some(txn) = self.txn.as_mut() {
            txn.writes = writes;
        }
        self.failed = false;
        Ok((Outcome::Command("ROLLBACK".into()), None))
    }

    fn restore_locals(&mut self) {
        while let Some((name, old)) = self.local_saved.pop() {
            match old {
                Some(v) => Rc::make_mut(&mut self.vars).insert(name, v),
                None => Rc::make_mut(&mut self.vars).remove(&name),
            };
        }
    }

    async fn run_inner(
        &mut self,
        stmt: &Statement,
        params: Vec<Datum>,
        mut plan: Option<&exec::PlanCache>,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        if !matches!(stmt, Statement::Rollback { .. }) {
            self.ctx.shared.check_clock()?;
        }
        match stmt {
            Statement::StartTransaction { .. } => {
                if self.implicit_batch {
                    // BEGIN inside a multi-statement string: the statements before it
                    // join the explicit transaction.
                    self.implicit_batch = false;
                    self.explicit = true;
                    if self.txn.is_none() {
                        self.txn = Some(self.begin_txn());
                    }
                    if let Statement::StartTransaction { modes, .. } = stmt {
                        self.set_isolation(modes);
                    }
                    return Ok((Outcome::Command("BEGIN".into()), None));
                }
                if self.explicit {
                    // PostgreSQL warns and carries on.
                    return Ok((Outcome::Command("BEGIN".into()), None));
                }
                self.explicit = true;
                self.failed = false;
                self.savepoints.clear();
                self.released = false;
                self.txn = Some(self.begin_txn());
                if let Statement::StartTransaction { modes, .. } = stmt {
                    self.set_isolation(modes);
                }
                return Ok((Outcome::Command("BEGIN".into()), None));
            }
            Statement::Savepoint { name } => return self.savepoint(&name.value),
            Statement::ReleaseSavepoint { name } => return self.release(&name.value).await,
            Statement::Rollback {
                savepoint: Some(name),
                ..
            } => return self.rollback_to(&name.value),
            Statement::Commit { .. } => {
                if !self.explicit {
                    return Ok((Outcome::Command("COMMIT".into()), None));
                }
                let failed = self.failed;
                self.explicit = false;
                self.failed = false;
                self.savepoints.clear();
                self.released = false;
                self.implicit_batch = self.in_batch;
                self.restore_locals();
                let txn = self.txn.take();
                if failed {
                    abandon(&self.ctx, txn);
                    self.cursors.end_transaction(false);
                    return Ok((Outcome::Command("ROLLBACK".into()), None));
                }
                if let Some(txn) = txn {
                    if let Err(e) = commit(&self.ctx, txn).await {
                        self.cursors.end_transaction(false);
                        return Err(e);
                    }
                }
                self.cursors.end_transaction(true);
                return Ok((Outcome::Command("COMMIT".into()), None));
            }
            Statement::Rollback {
                savepoint: None, ..
            } => {
                self.implicit_batch = self.in_batch && self.explicit;
                self.restore_locals();
                self.explicit = false;
                self.failed = false;
                self.savepoints.clear();
                self.released = false;
                abandon(&self.ctx, self.txn.take());
                self.cursors.end_transaction(false);
                return Ok((Outcome::Command("ROLLBACK".into()), None));
            }
            _ => {}
        }
        self.usable_for("statement")?;
        if let Some(r) = self.cluster_setting_statement(stmt).await? {
            return Ok(r);
        }
        if let Some(r) = self.session_statement(stmt)? {
            return Ok(r);
        }
        if let Some(command) = exec::read_only_violation(stmt) {
            if self.read_only() {
                return Err(Error::new(
                    ErrorKind::ReadOnlySqlTransaction,
                    format!("cannot execute {command} in a read-only transaction"),
                ));
            }
        }
        match stmt {
            Statement::Prepare {
                name,
                data_types,
                statement,
            } => return self.sql_prepare(name, data_types, statement).await,
            Statement::Execute {
                name: Some(name),
                parameters,
                immediate: false,
                ..
            } => return Box::pin(self.sql_execute(name, parameters)).await,
            Statement::Declare { stmts, .. } => {
                return Box::pin(self.declare_cursor(stmt, stmts, params)).await
            }
            Statement::Fetch { .. } => return self.fetch_cursor(stmt),
            Statement::Close { cursor } => match cursor {
                sqlparser::ast::CloseCursor::All => {
                    self.cursors.close_all();
                    return Ok((Outcome::Command("CLOSE CURSOR ALL".into()), None));
                }
                sqlparser::ast::CloseCursor::Specific { name } => {
                    self.cursors.close(&crate::sql::expr::ident_name(name))?;
                    return Ok((Outcome::Command("CLOSE CURSOR".into()), None));
                }
            },
            _ => {}
        }
        // `pg_cursors` is session state: a derived table of the open cursors. PERF: one
        // walk of each query's relations (the prepared point lookup never comes here).
        let with_cursors;
        let stmt = if matches!(stmt, Statement::Query(_)) && cursor::mentions_pg_cursors(stmt) {
            with_cursors = cursor::with_pg_cursors(stmt, &self.cursors)?;
            // Its rows change from one run to the next: no cached plan.
            plan = None;
            &with_cursors
        } else {
            stmt
        };
        if self.explicit || self.implicit_batch {
            let mut txn = self.txn.take().unwrap_or_else(|| self.begin_txn());
            let cat = match catalog::current(&self.ctx).await {
                Ok(cat) => cat,
                Err(e) => {
                    self.txn = Some(txn);
                    return Err(e);
                }
            };
            if txn.isolation == Isolation::ReadCommitted {
                // READ COMMITTED: every statement reads a fresh snapshot.
                let now = self.ctx.shared.hlc.now();
                txn.reset_read_ts(now, self.ctx.shared.uncertainty_limit(now));
            }
            let r = {
                let mut ex = self.exec(&cat, &mut txn, params);
                ex.plan_cache = plan;
                ex.run(stmt).await
            };
            self.txn = Some(txn);
            return r;
        }
        // Implicit transaction: run and commit, retrying serialization failures for at most
        // IMPLICIT_RETRY_BUDGET (then the client gets the 40001: no statement hangs).
        let mut attempt = 0;
        let first_try = Instant::now();
        loop {
            // Pin before reading the catalog ([`crate::node::catalog_pins`]).
            let mut txn = self.begin_txn();
            let cat = catalog::current(&self.ctx).await?;
            // A lone SELECT cannot write: its reads need no refresh.
            txn.track_reads = !matches!(stmt, Statement::Query(_));
            txn.implicit = true;
            let r = {
                let mut ex = self.exec(&cat, &mut txn, params.clone());
                ex.plan_cache = plan;
                ex.run(stmt).await
            };
            match finish_implicit(&self.ctx, txn, r).await {
                Err(e) if retry_implicit(&self.ctx, &e, &mut attempt, first_try).await => {}
                r => return r,
            }
        }
    }

    /// `DECLARE name [NO] SCROLL CURSOR [WITH HOLD] FOR query`: runs the query in the
    /// session's transaction (an implicit one for a held cursor outside a block) and
    /// keeps its rows.
    async fn declare_cursor(
        &mut self,
        declare: &Statement,
        stmts: &[sqlparser::ast::Declare],
        params: Vec<Datum>,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let [d] = stmts else {
            return Err(Error::syntax("DECLARE declares one cursor"));
        };
        let (Some(sqlparser::ast::DeclareType::Cursor), Some(query), [name]) =
            (&d.declare_type, &d.for_query, d.names.as_slice())
        else {
            return Err(Error::unsupported(
                "DECLARE: only DECLARE name CURSOR FOR query is supported",
            ));
        };
        let hold = d.hold == Some(true);
        if !(hold || self.explicit || self.implicit_batch) {
            return Err(Error::new(
                ErrorKind::NoActiveSqlTransaction,
                "DECLARE CURSOR can only be used in transaction blocks",
            ));
        }
        let name = crate::sql::expr::ident_name(name);
        if self.cursors.columns(&name).is_some() {
            return Err(Error::new(
                ErrorKind::DuplicateCursor,
                format!("cursor \"{name}\" already exists"),
            ));
        }
        let select = Statement::Query(query.clone());
        let (outcome, columns) = self.run_inner(&select, params, None).await?;
        let (Outcome::Rows { rows, .. }, Some(columns)) = (outcome, columns) else {
            return Err(Error::syntax(
                "DECLARE CURSOR needs a query that returns rows",
            ));
        };
        let scroll = match d.scroll {
            Some(false) => cursor::Scroll::NoScroll,
            _ => cursor::Scroll::Scroll,
        };
        let binary = d.binary == Some(true);
        let mut c = cursor::Cursor::new(columns, rows, scroll, hold, binary, self.savepoints.len());
        c.statement = declare.to_string();
        // Outside a block the implicit transaction has committed: the cursor outlives it.
        let in_block = self.explicit || self.implicit_batch;
        self.cursors.declare(name, c)?;
        if !in_block {
            self.cursors.end_transaction(true);
        }
        Ok((Outcome::Command("DECLARE CURSOR".into()), None))
    }

    /// `FETCH` (rows, tag `FETCH n`) or `MOVE` (tag `MOVE n`) on a cursor.
    fn fetch_cursor(&mut self, stmt: &Statement) -> Result<(Outcome, Option<Vec<Column>>)> {
        let Some(command) = CursorCommand::from_statement(stmt) else {
            return Err(Error::internal("not a FETCH"));
        };
        let command = command?;
        let c = self.cursors.get_mut(&command.cursor)?;
        if command.is_move {
            let n = c.fetch(command.direction, command.count, None)?;
            return Ok((Outcome::Command(format!("MOVE {n}")), None));
        }
        let mut rows = Vec::new();
        let n = c.fetch(command.direction, command.count, Some(&mut rows))?;
        self.binary_result = c.binary;
        Ok((
            Outcome::Rows {
                rows,
                tag: format!("FETCH {n}"),
                suspended: false,
            },
            Some(c.columns.clone()),
        ))
    }

    /// The columns a prepared FETCH returns: its cursor's, as they are now (as
    /// PostgreSQL, which describes a FETCH when it is described). `None` when `stmt` is
    /// not a FETCH; `Some(None)` for a MOVE or a cursor that does not exist.
    fn fetch_columns(&self, stmt: Option<&Statement>) -> Option<Option<Vec<Column>>> {
        let command = CursorCommand::from_statement(stmt?)?;
        Some(match command {
            Ok(c) if !c.is_move => self.cursors.columns(&c.cursor).map(<[Column]>::to_vec),
            _ => None,
        })
    }

    /// SQL `PREPARE name [(types)] AS statement`.
    async fn sql_prepare(
        &mut self,
        name: &sqlparser::ast::Ident,
        data_types: &[sqlparser::ast::DataType],
        statement: &Statement,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let n = crate::sql::expr::ident_name(name);
        if self.prepared.contains_key(&n) {
            return Err(Error::new(
                ErrorKind::DuplicatePreparedStatement,
                format!("prepared statement \"{n}\" already exists"),
            ));
        }
        let types = data_types
            .iter()
            .map(crate::sql::expr::sql_type)
            .collect::<Result<Vec<_>>>()?;
        self.prepare_parsed(&n, Some(statement.clone()), types)
            .await?;
        Ok((Outcome::Command("PREPARE".into()), None))
    }

    /// SQL `EXECUTE name [(arguments)]`: the arguments are evaluated (as a SELECT of
    /// each cast to its parameter's type), then the prepared statement runs with them.
    async fn sql_execute(
        &mut self,
        name: &sqlparser::ast::ObjectName,
        args: &[sqlparser::ast::Expr],
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let n = crate::sql::expr::object_name(name);
        let prepared = self.prepared.get(&n).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidStatementName,
                format!("prepared statement \"{n}\" does not exist"),
            )
        })?;
        let want = prepared.param_types.len();
        if args.len() != want {
            return Err(Error::syntax(format!(
                "wrong number of parameters for prepared statement \"{n}\""
            ))
            .with_detail(format!(
                "Expected {want} parameters but got {}.",
                args.len()
            )));
        }
        let mut params = Vec::with_capacity(want);
        if want > 0 {
            let items: Vec<String> = args
                .iter()
                .zip(&prepared.param_types)
                .map(|(a, t)| format!("CAST(({a}) AS {})", t.name()))
                .collect();
            let select = parse(&format!("SELECT {}", items.join(", ")))?;
            let [select] = select.as_slice() else {
                return Err(Error::syntax("bad EXECUTE argument"));
            };
            let (outcome, _) = Box::pin(self.run_inner(select, Vec::new(), None)).await?;
            if let Outcome::Rows { rows, .. } = outcome {
                params = rows.into_iter().next().unwrap_or_default();
            }
            if params.len() != want {
                return Err(Error::internal("EXECUTE arguments did not evaluate"));
            }
        }
        let Some(stmt) = &prepared.stmt else {
            return Ok((Outcome::Empty, None));
        };
        if params.iter().any(Datum::is_null) {
            // A NULL has no type of its own, and a plan binds each parameter by its
            // value's type: this run casts the parameters to their declared types (and
            // does not use the cached plan).
            let typed = typed_placeholders(stmt, &prepared.param_types);
            let (outcome, columns) = Box::pin(self.run_inner(&typed, params, None)).await?;
            return Ok((outcome, columns.or_else(|| prepared.columns.clone())));
        }
        let (outcome, columns) =
            Box::pin(self.run_inner(stmt, params, Some(&prepared.plan))).await?;
        Ok((outcome, columns.or_else(|| prepared.columns.clone())))
    }

    /// Releases the row locks of a transaction left open (the connection closed).
    pub fn close_transaction(&mut self) {
        abandon(&self.ctx, self.txn.take());
    }

    /// The schemas the session's `search_path` names in database `db_id`.
    fn search_path(&self, cat: &catalog::Catalog, db_id: u32) -> catalog::SearchPath {
        match self.vars.get("search_path") {
            Some(setting) => catalog::SearchPath::resolve(cat, db_id, setting, &self.user),
            None => catalog::SearchPath::default(),
        }
    }

    fn exec<'a>(
        &'a self,
        cat: &'a catalog::Catalog,
        txn: &'a mut Txn,
        params: Vec<Datum>,
    ) -> Exec<'a> {
        let db_id = cat.database(&self.database).map(|d| d.id).unwrap_or(0);
        let mut ex = Exec::new(
            &self.ctx,
            cat,
            db_id,
            &self.database,
            &self.user,
            txn,
            params,
            &self.cancel,
        );
        let rowid = self
            .vars
            .get("serial_normalization")
            .is_some_and(|v| v.eq_ignore_ascii_case("rowid"));
        ex.set_session_state(self.sequences.clone(), rowid);
        ex = ex.with_settings(self.vars.clone());
        ex
    }

    /// `SET CLUSTER SETTING`, `SHOW CLUSTER SETTING name`, `SHOW [ALL] CLUSTER SETTINGS`;
    /// `None` if `stmt` is something else.
    async fn cluster_setting_statement(
        &mut self,
        stmt: &Statement,
    ) -> Result<Option<(Outcome, Option<Vec<Column>>)>> {
        use crate::node::settings;
        use sqlparser::ast::{Expr, Set, Value};
        let text = |e: &Expr| match e {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            other => other.to_string(),
        };
        let rows = |rows: Vec<Vec<Datum>>, names: &[&str]| {
            let cols = names
                .iter()
                .map(|n| Column {
                    name: (*n).into(),
                    ty: SqlType::Text,
                })
                .collect();
            Some((
                Outcome::Rows {
                    rows,
                    tag: "SHOW".into(),
                    suspended: false,
                },
                Some(cols),
            ))
        };
        match stmt {
            Statement::Set(Set::SingleAssignment {
                variable, values, ..
            }) if variable.to_string().trim_matches('"')
                == crate::sql::preparse::CLUSTER_SETTING_MARKER =>
            {
                let [name, value] = values.as_slice() else {
                    return Err(Error::new(
                        ErrorKind::Syntax,
                        "SET CLUSTER SETTING takes one value",
                    ));
                };
                if self.explicit {
                    return Err(Error::new(
                        ErrorKind::ActiveTransaction,
                        "SET CLUSTER SETTING cannot be used inside a multi-statement transaction",
                    ));
                }
                let name = text(name);
                let value = match value {
                    Expr::Identifier(i) if i.value.eq_ignore_ascii_case("default") => None,
                    v => Some(text(v)),
                };
                settings::set(&self.ctx, &name, value.as_deref()).await?;
                Ok(Some((Outcome::Command("SET CLUSTER SETTING".into()), None)))
            }
            Statement::Set(Set::SingleAssignment {
                variable, values, ..
            }) if variable.to_string().trim_matches('"')
                == crate::sql::preparse::ZONE_CONFIG_MARKER =>
            {
                let words: Vec<String> = values.iter().map(text).collect();
                match words.first().map(String::as_str) {
                    Some("show") if words.len() == 1 => {
                        let max = settings::show(&self.ctx.shared, settings::RANGE_MAX_BYTES)?;
                        let n = settings::show(&self.ctx.shared, settings::NUM_REPLICAS)?;
                        let sql = format!(
                            "ALTER RANGE default CONFIGURE ZONE USING\n\trange_max_bytes = {max},\n\tnum_replicas = {n}"
                        );
                        return Ok(rows(
                            vec![vec![Datum::Text("RANGE default".into()), Datum::Text(sql)]],
                            &["target", "raw_config_sql"],
                        ));
                    }
                    Some(t) if t.starts_with("target:") => {
                        return Err(Error::new(
                            ErrorKind::FeatureNotSupported,
                            format!(
                                "zone configurations of {} are not supported; only RANGE default",
                                t["target:".len()..].to_uppercase()
                            ),
                        ));
                    }
                    _ => {}
                }
                if self.explicit {
                    return Err(Error::new(
                        ErrorKind::ActiveTransaction,
                        "CONFIGURE ZONE cannot be used inside a multi-statement transaction",
                    ));
                }
                let mut changes: Vec<(&str, Option<String>)> = Vec::new();
                if words.len() == 1 && words[0] == "discard" {
                    changes.push((settings::RANGE_MAX_BYTES, None));
                    changes.push((settings::NUM_REPLICAS, None));
                } else {
                    for pair in words.chunks(2) {
                        let [field, value] = pair else {
                            return Err(Error::syntax("CONFIGURE ZONE USING field = value, …"));
                        };
                        let name = match field.as_str() {
                            "range_max_bytes" => settings::RANGE_MAX_BYTES,
                            "num_replicas" => settings::NUM_REPLICAS,
                            other => {
                                return Err(Error::new(
                                    ErrorKind::FeatureNotSupported,
                                    format!(
                                        "zone config field \"{other}\" is not supported (supported: range_max_bytes, num_replicas)"
                                    ),
                                ))
                            }
                        };
                        let value = if value.eq_ignore_ascii_case("copy_from_parent")
                            || value.eq_ignore_ascii_case("default")
                        {
                            None
                        } else {
                            settings::validate(name, value)?;
                            Some(value.clone())
                        };
                        changes.push((name, value));
                    }
                }
                for (name, value) in changes {
                    settings::set(&self.ctx, name, value.as_deref()).await?;
                }
                Ok(Some((Outcome::Command("CONFIGURE ZONE".into()), None)))
            }
            Statement::ShowVariable { variable } => {
                let words: Vec<String> = variable.iter().map(|i| i.value.to_lowercase()).collect();
                let w: Vec<&str> = words.iter().map(String::as_str).collect();
                match w.as_slice() {
                    ["cluster", "setting", rest @ ..] if !rest.is_empty() => {
                        let name = rest.join(".");
                        let value = settings::show(&self.ctx.shared, &name)?;
                        Ok(rows(vec![vec![Datum::Text(value)]], &[name.as_str()]))
                    }
                    ["cluster", "settings"] | ["all", "cluster", "settings"] => {
                        let mut out = Vec::new();
                        for (name, _, description) in settings::KNOWN {
                            out.push(vec![
                                Datum::Text(name.to_string()),
                                Datum::Text(settings::show(&self.ctx.shared, name)?),
                                Datum::Text(description.to_string()),
                            ]);
                        }
                        Ok(rows(out, &["variable", "value", "description"]))
                    }
                    _ => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }

    /// SET / SHOW of session variables; `None` if `stmt` is something else.
    fn session_statement(
        &mut self,
        stmt: &Statement,
    ) -> Result<Option<(Outcome, Option<Vec<Column>>)>> {
        use sqlparser::ast::Set;
        match stmt {
            Statement::Set(set) => {
                match set {
                    Set::SetTransaction { modes, session, .. } => {
                        if *session {
                            for m in modes {
                                if let sqlparser::ast::TransactionMode::IsolationLevel(l) = m {
                                    Rc::make_mut(&mut self.vars).insert(
                                        "default_transaction_isolation".into(),
                                        l.to_string().to_lowercase(),
                                    );
                                }
                            }
                        } else if self.explicit {
                            self.set_isolation(modes);
                        }
                        return Ok(Some((Outcome::Command("SET".into()), None)));
                    }
                    Set::SingleAssignment {
                        variable,
                        values,
                        scope,
                        ..
                    } => {
                        let name = variable.to_string().to_lowercase();
                        let value = values
                            .iter()
                            .map(|v| match v {
                                sqlparser::ast::Expr::Value(v) => match &v.value {
                                    sqlparser::ast::Value::SingleQuotedString(s) => s.clone(),
                                    other => other.to_string(),
                                },
                                // `SET application_name = "slt"`: a quoted name is its text.
                                sqlparser::ast::Expr::Identifier(i) => i.value.clone(),
                                other => other.to_string(),
                            })
                            .collect::<Vec<_>>()
                            .join(", ");
                        let value = if name == "search_path" {
                            search_path_setting(values).unwrap_or(value)
                        } else {
                            value
                        };
                        let (name, value) = if name == "timezone" || name == "time zone" {
                            // `SET timezone = -7` is an offset east; a quoted value a name.
                            let quoted = matches!(
                                values.first(),
                                Some(sqlparser::ast::Expr::Value(v))
                                    if matches!(v.value, sqlparser::ast::Value::SingleQuotedString(_))
                            );
                            let numeric = !quoted && value.trim().parse::<f64>().is_ok();
                            let value = crate::sql::time_zone::setting_value(&value, numeric)?;
                            crate::sql::time_zone::set_current(&value);
                            ("timezone".to_string(), value)
                        } else {
                            (name, value)
                        };
                        if name.trim_matches('"') == crate::sql::preparse::NOOP_MARKER {
                            return Ok(Some((Outcome::Command(value), None)));
                        }
                        if name == "database" {
                            self.database = value.clone();
                        }
                        if name == "transaction_isolation"
                            || name == "default_transaction_isolation"
                        {
                            let v = value.to_lowercase();
                            if !matches!(
                                v.as_str(),
                                "serializable"
                                    | "read committed"
                                    | "repeatable read"
                                    | "snapshot"
                                    | "default"
                            ) {
                                return Err(Error::new(
                                    ErrorKind::InvalidParameterValue,
                                    format!("invalid value for parameter \"{name}\": \"{value}\""),
                                ));
                            }
                        }
                        let value = if name == crate::sql::exec::DISTSQL_VAR {
                            match crate::sql::exec::distsql_setting(&value) {
                                Some(v) => v.to_string(),
                                None => {
                                    return Err(Error::new(
                                        ErrorKind::InvalidParameterValue,
                                        format!(
                                            "invalid value for parameter \"distsql\": \"{value}\""
                                        ),
                                    ))
                                }
                            }
                        } else {
                            value
                        };
                        if name == "serial_normalization" {
                            let v = value.to_lowercase();
                            let v = match v.as_str() {
                                "sql_sequence" | "sql_sequence_cached" | "default" => {
                                    "sql_sequence"
                                }
                                "rowid" | "unordered_rowid" => "rowid",
                                _ => {
                                    return Err(Error::new(
                                        ErrorKind::InvalidParameterValue,
                                        format!(
                                            "invalid value for parameter \"{name}\": \"{value}\""
                                        ),
                                    ))
                                }
                            };
                            Rc::make_mut(&mut self.vars).insert(name, v.to_string());
                            return Ok(Some((Outcome::Command("SET".into()), None)));
                        }
                        let local = matches!(scope, Some(sqlparser::ast::ContextModifier::Local));
                        if local && self.explicit {
                            let old = self.vars.get(&name).cloned();
                            self.local_saved.push((name.clone(), old));
                        }
                        if !local || self.explicit {
                            Rc::make_mut(&mut self.vars).insert(name, value);
                        }
                    }
                    Set::SetTimeZone { value, .. } => {
                        let v = set_time_zone_value(value)?;
                        crate::sql::time_zone::set_current(&v);
                        Rc::make_mut(&mut self.vars).insert("timezone".into(), v);
                    }
                    _ => {}
                }
                Ok(Some((Outcome::Command("SET".into()), None)))
            }
            Statement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(|i| i.value.to_lowercase())
                    .collect::<Vec<_>>()
                    .join(" ");
                let name = match name.as_str() {
                    "transaction isolation level" => "transaction_isolation".to_string(),
                    "time zone" => "timezone".to_string(),
                    n => n.to_string(),
                };
                if name == "all" {
                    let rows = self
                        .vars
                        .iter()
                        .map(|(k, v)| vec![Datum::Text(k.clone()), Datum::Text(v.clone())])
                        .collect();
                    let cols = vec![
                        Column {
                            name: "name".into(),
                            ty: SqlType::Text,
                        },
                        Column {
                            name: "setting".into(),
                            ty: SqlType::Text,
                        },
                    ];
                    return Ok(Some((
                        Outcome::Rows {
                            rows,
                            tag: "SHOW".into(),
                            suspended: false,
                        },
                        Some(cols),
                    )));
                }
                if name == "tables"
                    || name == "databases"
                    || name == "jobs"
                    || name.starts_with("index entries from ")
                    || name.starts_with("statistics for table ")
                    || name.starts_with("ranges from table ")
                {
                    return Ok(None);
                }
                let value = if name == "database" {
                    Some(self.database.clone())
                } else {
                    self.vars.get(&name).cloned()
                };
                let value = value.ok_or_else(|| {
                    Error::new(
                        ErrorKind::UndefinedObject,
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
                let cols = vec![Column {
                    name,
                    ty: SqlType::Text,
                }];
                Ok(Some((
                    Outcome::Rows {
                        rows: vec![vec![Datum::Text(value)]],
                        tag: "SHOW".into(),
                        suspended: false,
                    },
                    Some(cols),
                )))
            }
            Statement::Reset(_) => {
                let text = stmt.to_string();
                let name = text.trim_start_matches("RESET").trim().to_lowercase();
                if name == "all" {
                    Rc::make_mut(&mut self.vars)
                        .retain(|k, _| DEFAULTS.iter().any(|(d, _)| d == k));
                    for (k, v) in DEFAULTS {
                        Rc::make_mut(&mut self.vars).insert(k.to_string(), v.to_string());
                    }
                } else if let Some((_, v)) = DEFAULTS.iter().find(|(k, _)| *k == name) {
                    Rc::make_mut(&mut self.vars).insert(name, v.to_string());
                } else {
                    Rc::make_mut(&mut self.vars).remove(&name);
                }
                Ok(Some((Outcome::Command("RESET".into()), None)))
            }
            // The prepared statements of the extended protocol and of SQL are one namespace,
            // as in PostgreSQL (psycopg sends `DEALLOCATE ALL` after a rollback).
            Statement::Deallocate { name, .. } => {
                if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
                    self.prepared.clear();
                    return Ok(Some((Outcome::Command("DEALLOCATE ALL".into()), None)));
                }
                let n = crate::sql::expr::ident_name(name);
                if self.prepared.remove(&n).is_none() {
                    return Err(Error::new(
                        ErrorKind::InvalidStatementName,
                        format!("prepared statement \"{n}\" does not exist"),
                    ));
                }
                Ok(Some((Outcome::Command("DEALLOCATE".into()), None)))
            }
            Statement::Discard { .. } => {
                self.prepared.clear();
                self.portals.clear();
                self.cursors.close_all();
                Ok(Some((Outcome::Command("DISCARD ALL".into()), None)))
            }
            _ => Ok(None),
        }
    }

    // --- Extended protocol ---

    pub async fn parse_prepared(&mut self, name: &str, sql: &str, oids: &[u32]) -> Result<()> {
        if !name.is_empty() && self.prepared.contains_key(name) {
            return Err(Error::new(
                ErrorKind::DuplicatePreparedStatement,
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        let mut stmts = parse(sql)?;
        if stmts.len() > 1 {
            return Err(Error::syntax(
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let stmt = stmts.pop();
        let param_types: Vec<SqlType> = oids
            .iter()
            .map(|o| SqlType::from_oid(*o).unwrap_or(SqlType::Unknown))
            .collect();
        self.prepare_parsed(name, stmt, param_types).await
    }

    /// Describes `stmt` and keeps it as prepared statement `name` (the protocol's Parse
    /// and SQL `PREPARE` share the namespace, as in PostgreSQL).
    async fn prepare_parsed(
        &mut self,
        name: &str,
        stmt: Option<Statement>,
        mut param_types: Vec<SqlType>,
    ) -> Result<()> {
        // A DECLARE's parameters are its query's; it returns no rows itself.
        let declared_query = match &stmt {
            Some(Statement::Declare { stmts, .. }) => stmts
                .first()
                .and_then(|d| d.for_query.clone())
                .map(Statement::Query),
            _ => None,
        };
        let is_declare = declared_query.is_some();
        let with_cursors = match declared_query.as_ref().or(stmt.as_ref()) {
            Some(s @ Statement::Query(_)) if cursor::mentions_pg_cursors(s) => {
                Some(cursor::with_pg_cursors(s, &self.cursors)?)
            }
            _ => None,
        };
        let described = with_cursors
            .as_ref()
            .or(declared_query.as_ref())
            .or(stmt.as_ref());
        let columns = match described {
            Some(s) => {
                let given = param_types.clone();
                let cat = catalog::current(&self.ctx).await?;
                let db_id = cat.database(&self.database).map(|d| d.id).unwrap_or(0);
                let path = self.search_path(&cat, db_id);
                match exec::describe(&cat, db_id, &path, s, &mut param_types) {
                    // As `run`: another node may have changed the schema since this
                    // node loaded it; reload once and describe again.
                    Err(e) if self.ctx.shared.replicated() && is_stale_catalog(&e) => {
                        self.ctx
                            .shared
                            .catalog_version
                            .fetch_add(1, Ordering::SeqCst);
                        param_types = given;
                        let cat = catalog::current(&self.ctx).await?;
                        let db_id = cat.database(&self.database).map(|d| d.id).unwrap_or(0);
                        let path = self.search_path(&cat, db_id);
                        exec::describe(&cat, db_id, &path, s, &mut param_types)?
                    }
                    r => r?,
                }
            }
            None => None,
        };
        let columns = if is_declare { None } else { columns };
        for t in param_types.iter_mut() {
            if *t == SqlType::Unknown {
                *t = SqlType::Text;
            }
        }
        self.prepared.insert(
            name.to_string(),
            Rc::new(PreparedStmt {
                stmt,
                param_types,
                columns,
                plan: exec::PlanCache::default(),
            }),
        );
        Ok(())
    }

    /// Binds `portal` to prepared statement `stmt_name` with these parameters.
    /// PERF: rebinding a portal of the same name (the unnamed one, usually) reuses its
    /// buffers, and a text parameter reuses the string of the previous binding.
    pub fn bind(
        &mut self,
        portal: &str,
        stmt_name: &str,
        params: &BindParams<'_>,
        param_formats: &[i16],
        result_formats: &[i16],
    ) -> Result<()> {
        let stmt = self.prepared.get(stmt_name).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidStatementName,
                format!("prepared statement \"{stmt_name}\" does not exist"),
            )
        })?;
        let n = params.spans.len();
        if n != stmt.param_types.len() {
            return Err(Error::protocol(format!(
                "bind message supplies {} parameters, but prepared statement \"{stmt_name}\" requires {}",
                n,
                stmt.param_types.len()
            )));
        }
        // Decode into the portal's old buffers when it exists; a failed Bind leaves no
        // portal behind.
        let mut values = match self.portals.get_mut(portal) {
            Some(p) => std::mem::take(&mut p.params),
            None => Vec::with_capacity(n),
        };
        values.truncate(n);
        let decoded = decode_params(&mut values, &stmt.param_types, params, param_formats);
        if let Err(e) = decoded {
            self.portals.remove(portal);
            return Err(e);
        }
        match self.portals.get_mut(portal) {
            Some(p) => {
                p.stmt = stmt;
                p.params = values;
                p.formats.clear();
                p.formats.extend_from_slice(result_formats);
                p.pending = None;
                p.exhausted = false;
            }
            None => {
                self.portals.insert(
                    portal.to_string(),
                    Portal {
                        stmt,
                        params: values,
                        formats: result_formats.to_vec(),
                        pending: None,
                        exhausted: false,
                    },
                );
            }
        }
        Ok(())
    }

    /// The point-lookup fast path (issue 3: "cached plan, one KV get, no avoidable
    /// allocation"): runs portal `name` when its statement's cached plan is a primary-key
    /// point lookup ([`exec::PointLookup`]) and no transaction is open, leaving the stored
    /// row in `out` for pgwire to encode. `None` when the portal cannot take it, or the
    /// read failed (the general path then runs it, with its retries and error reporting).
    ///
    /// A lone read in an implicit transaction is serializable at any timestamp: it reads
    /// at the present, and the range's timestamp cache keeps later writers above it, as
    /// for any read. PERF: no allocation here on a warm session with the same-core range
    /// (the engine's owned value aside).
    pub async fn execute_point(&mut self, name: &str, out: &mut PointRow) -> Option<()> {
        if self.txn.is_some() || self.explicit || self.in_batch {
            return None;
        }
        let p = self.portals.get(name)?;
        if p.pending.is_some() || p.exhausted {
            return None;
        }
        let version = self.ctx.shared.catalog_version.load(Ordering::SeqCst);
        let db_id = {
            let cat = self.ctx.catalog.borrow();
            let cat = cat.as_ref().filter(|c| c.version == version)?;
            cat.database(&self.database)?.id
        };
        let lookup = p.stmt.plan.point_lookup(version, db_id)?;
        if !lookup.key(&p.params, &mut out.key) {
            return None;
        }
        out.formats.clear();
        out.formats.extend_from_slice(&p.formats);
        self.cancel.store(false, Ordering::SeqCst);
        let started = Instant::now();
        let ts = self.ctx.shared.hlc.now();
        let row = self.ctx.kv_get(&out.key, ts).await.ok()?;
        self.ctx
            .metrics()
            .observe_statement(0, started.elapsed(), false);
        out.row = row;
        out.lookup = Some(lookup);
        if let Some(p) = self.portals.get_mut(name) {
            p.exhausted = true;
        }
        Some(())
    }

    pub fn describe_statement(&self, name: &str) -> Result<(Vec<SqlType>, Option<Vec<Column>>)> {
        let s = self.prepared.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidStatementName,
                format!("prepared statement \"{name}\" does not exist"),
            )
        })?;
        let columns = self
            .fetch_columns(s.stmt.as_ref())
            .unwrap_or_else(|| s.columns.clone());
        Ok((s.param_types.clone(), columns))
    }

    pub fn describe_portal(&self, name: &str) -> Result<(Option<Vec<Column>>, Vec<i16>)> {
        let p = self.portals.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidCursorName,
                format!("portal \"{name}\" does not exist"),
            )
        })?;
        let columns = self
            .fetch_columns(p.stmt.stmt.as_ref())
            .unwrap_or_else(|| p.stmt.columns.clone());
        Ok((columns, p.formats.clone()))
    }

    pub async fn execute_portal(
        &mut self,
        name: &str,
        max_rows: usize,
    ) -> Result<(Outcome, Option<Vec<Column>>, Vec<i16>)> {
        let (stmt, params, formats, pending) = {
            let p = self.portals.get_mut(name).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidCursorName,
                    format!("portal \"{name}\" does not exist"),
                )
            })?;
            if p.exhausted {
                return Ok((
                    Outcome::Rows {
                        rows: Vec::new(),
                        tag: "SELECT 0".into(),
                        suspended: false,
                    },
                    p.stmt.columns.clone(),
                    p.formats.clone(),
                ));
            }
            (
                p.stmt.clone(),
                p.params.clone(),
                p.formats.clone(),
                p.pending.take(),
            )
        };
        let mut cols = stmt.columns.clone();
        let (mut rows, tag) = match pending {
            Some(p) => p,
            None => {
                let Some(s) = &stmt.stmt else {
                    return Ok((Outcome::Empty, None, formats));
                };
                // Parameters are typed by their values when the statement runs; a NULL has
                // no type of its own, so it takes the one Parse declared (or inferred)
                // through a cast in the statement text, which then runs unplanned.
                let null_types: Vec<SqlType> = params
                    .iter()
                    .zip(&stmt.param_types)
                    .map(|(d, &t)| if d.is_null() { t } else { SqlType::Unknown })
                    .collect();
                let (outcome, run_cols) = if null_types.iter().any(|&t| t != SqlType::Unknown) {
                    let typed = typed_placeholders(s, &null_types);
                    self.run(&typed, params, None).await?
                } else {
                    self.run(s, params, Some(&stmt.plan)).await?
                };
                // A FETCH's rows are its cursor's, whatever Parse saw.
                if matches!(s, Statement::Fetch { .. }) {
                    cols = run_cols;
                }
                match outcome {
                    Outcome::Rows { rows, tag, .. } => (VecDeque::from(rows), tag),
                    other => return Ok((other, cols, formats)),
                }
            }
        };
        if rows.len() > max_rows {
            let rest = rows.split_off(max_rows);
            let out: Vec<_> = rows.into_iter().collect();
            if let Some(p) = self.portals.get_mut(name) {
                p.pending = Some((rest, tag.clone()));
            }
            return Ok((
                Outcome::Rows {
                    rows: out,
                    tag,
                    suspended: true,
                },
                cols,
                formats,
            ));
        }
        // The portal is exhausted: later Executes return no rows.
        let out: Vec<_> = rows.into_iter().collect();
        let tag = if tag.starts_with("SELECT ") {
            format!("SELECT {}", out.len())
        } else {
            tag
        };
        if let Some(p) = self.portals.get_mut(name) {
            p.pending = Some((VecDeque::new(), tag.clone()));
        }
        Ok((
            Outcome::Rows {
                rows: out,
                tag,
                suspended: false,
            },
            cols,
            formats,
        ))
    }

    pub fn close(&mut self, target: u8, name: &str) {
        if target == b'S' {
            self.prepared.remove(name);
        } else {
            self.portals.remove(name);
        }
    }
}

/// Decodes Bind parameters into `values` (their previous contents reused where possible).
/// `stmt` with each `$n` cast to `types[n - 1]` (left alone where that is unknown).
fn typed_placeholders(stmt: &Statement, types: &[SqlType]) -> Statement {
    use sqlparser::ast::{CastKind, DataType, Expr, Ident, ObjectName, Value};
    let mut typed = stmt.clone();
    let _ = sqlparser::ast::visit_expressions_mut(&mut typed, |e| {
        let ty = match e {
            Expr::Value(v) => match &v.value {
                Value::Placeholder(p) => p
                    .strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| types.get(n.wrapping_sub(1)))
                    .filter(|t| **t != SqlType::Unknown),
                _ => None,
            },
            _ => None,
        };
        if let Some(ty) = ty {
            *e = Expr::Cast {
                kind: CastKind::DoubleColon,
                expr: Box::new(e.clone()),
                data_type: DataType::Custom(ObjectName::from(vec![Ident::new(ty.name())]), vec![]),
                format: None,
            };
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    typed
}

fn decode_params(
    values: &mut Vec<Datum>,
    types: &[SqlType],
    params: &BindParams<'_>,
    param_formats: &[i16],
) -> Result<()> {
    for (i, &ty) in types.iter().enumerate() {
        let fmt = match param_formats.len() {
            0 => 0,
            1 => param_formats[0],
            _ => *param_formats.get(i).unwrap_or(&0),
        };
        let value = match params.get(i) {
            None => Datum::Null,
            Some(b) if fmt == 1 && matches!(ty, SqlType::Text | SqlType::Varchar) => {
                let s = std::str::from_utf8(b)
                    .map_err(|_| Error::invalid_text("invalid UTF-8 in parameter"))?;
                reuse_text(values.get_mut(i), s)
            }
            Some(b) if fmt == 1 => Datum::from_binary(ty, b)?,
            Some(b) => {
                let s = std::str::from_utf8(b)
                    .map_err(|_| Error::invalid_text("invalid UTF-8 in parameter"))?;
                if matches!(ty, SqlType::Text | SqlType::Varchar) {
                    reuse_text(values.get_mut(i), s)
                } else {
                    Datum::parse(ty, s)?
                }
            }
        };
        if i < values.len() {
            values[i] = value;
        } else {
            values.push(value);
        }
    }
    Ok(())
}

/// A text parameter, in the string `slot` held before when it held one.
fn reuse_text(slot: Option<&mut Datum>, s: &str) -> Datum {
    match slot {
        Some(Datum::Text(t)) => {
            let mut t = std::mem::take(t);
            t.clear();
            t.push_str(s);
            Datum::Text(t)
        }
        _ => Datum::Text(s.to_string()),
    }
}

/// Deepest expression nesting accepted. Parsing, binding, evaluating and even dropping an
/// expression tree recurse once per level, so a client could otherwise overflow the core's
/// stack with `SELECT 1+1+…+1`; PostgreSQL refuses those too (54001).
const MAX_EXPRESSION_DEPTH: usize = 2_000;

/// The `TimeZone` setting `SET TIME ZONE value` stores: a quoted name as it is, `LOCAL`
/// and `DEFAULT` as UTC, a number of hours or an interval (east of UTC) as the POSIX zone
/// with that offset (`<-07>+07`, as PostgreSQL shows it).
fn set_time_zone_value(value: &sqlparser::ast::Expr) -> Result<String> {
    use crate::sql::time_zone::{posix_name, setting_value};
    use sqlparser::ast::{Expr, Value};
    match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => setting_value(s, false),
            other => setting_value(&other.to_string(), true),
        },
        Expr::Interval(iv) => {
            let text = match iv.value.as_ref() {
                Expr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                },
                other => other.to_string(),
            };
            let parsed = crate::sql::interval::Interval::parse(&text, None)?;
            if parsed.months != 0 || parsed.days != 0 {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    format!("invalid interval value for time zone: \"{text}\""),
                ));
            }
            Ok(posix_name((parsed.micros / 1_000_000) as i32))
        }
        Expr::Identifier(i) => setting_value(&i.value, false),
        other => setting_value(&other.to_string(), true),
    }
}

/// The settings in a startup packet's `options` (libpq's `PGOPTIONS`, `?options=`):
/// `-c name=value` and `--name=value`, separated by white space, where `\ ` is a space
/// inside a value. Names are lower-cased and `-` in them read as `_`, as PostgreSQL does.
fn startup_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let setting = if w == "-c" {
            words.next()
        } else {
            w.strip_prefix("--")
                .or_else(|| w.strip_prefix("-c"))
                .map(str::to_string)
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            out.push((name.to_lowercase().replace('-', "_"), value.to_string()));
        }
    }
    out
}

/// Rejects statements whose expressions nest deeper than [`MAX_EXPRESSION_DEPTH`], judged
/// from the tokens without building a tree: per parenthesis level, the operators since the
/// last comma, plus the parenthesis depth.
fn check_complexity(sql: &str) -> Result<()> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        // The parser reports the tokenizer's error with its position.
        return Ok(());
    };
    let mut levels: Vec<usize> = vec![0];
    for t in &tokens {
        let is_operator = match t {
            Token::LParen => {
                levels.push(0);
                false
            }
            Token::RParen => {
                if levels.len() > 1 {
                    levels.pop();
                }
                false
            }
            Token::Comma => {
                *levels.last_mut().unwrap() = 0;
                false
            }
            Token::SemiColon => {
                levels.clear();
                levels.push(0);
                false
            }
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq => true,
            Token::Word(w) => matches!(
                w.value.to_ascii_uppercase().as_str(),
                "AND" | "OR" | "NOT" | "CASE" | "WHEN"
            ),
            _ => false,
        };
        if is_operator {
            *levels.last_mut().unwrap() += 1;
        }
        let depth = levels.len() + levels.last().copied().unwrap_or(0);
        if depth > MAX_EXPRESSION_DEPTH {
            return Err(Error::new(
                ErrorKind::StatementTooComplex,
                format!("statement too complex: expressions nest more than {MAX_EXPRESSION_DEPTH} levels"),
            ));
        }
    }
    Ok(())
}

/// Commits an implicit transaction's work, or releases its locks when the work failed.
async fn finish_implicit<T>(ctx: &Rc<CoreCtx>, txn: Txn, work: Result<T>) -> Result<T> {
    match work {
        Ok(out) => commit(ctx, txn).await.map(|_| out),
        Err(e) => {
            abandon(ctx, Some(txn));
            Err(e)
        }
    }
}

/// Whether an implicit transaction that failed with `e` runs again (a serialization
/// failure, within MAX_RETRIES and IMPLICIT_RETRY_BUDGET); if so, counts the retry and
/// waits a jittered exponential backoff first.
async fn retry_implicit(ctx: &CoreCtx, e: &Error, attempt: &mut usize, first_try: Instant) -> bool {
    if !(e.is_retryable() && *attempt < MAX_RETRIES && first_try.elapsed() < IMPLICIT_RETRY_BUDGET)
    {
        return false;
    }
    *attempt += 1;
    ctx.metrics().txn_retries.fetch_add(1, Ordering::Relaxed);
    let backoff =
        std::time::Duration::from_micros(100 * (1 << (*attempt).min(8)) + next_random() % 500);
    glommio::timer::sleep(backoff).await;
    true
}

/// Parses SQL text with PostgreSQL's dialect; a syntax error carries its position.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    let sql_trim = sql.trim();
    if sql_trim.is_empty() || sql_trim.chars().all(|c| c == ';' || c.is_whitespace()) {
        return Ok(Vec::new());
    }
    let rewritten = crate::sql::preparse::rewrite(sql);
    check_complexity(&rewritten)?;
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, &rewritten).map_err(|e| {
        let msg = e.to_string();
        let detail = msg.trim_start_matches("sql parser error: ").to_string();
        let near = near_token(&msg);
        let mut err = if near == "EOF" {
            Error::syntax("syntax error at end of input")
        } else {
            Error::syntax(format!("syntax error at or near \"{near}\""))
        }
        .with_detail(detail);
        if let Some(pos) = position_of(&msg, sql) {
            err = err.with_position(pos);
        }
        err
    })?;
    // `SELECT … INTO t` is DDL: it runs as the `CREATE TABLE t AS SELECT …` it means.
    for s in stmts.iter_mut() {
        if let Some(ct) = crate::sql::exec::select_into_as_create(s)? {
            *s = ct;
        }
    }
    Ok(stmts)
}

fn near_token(msg: &str) -> String {
    msg.split("found: ")
        .nth(1)
        .map(|s| s.split(" at Line").next().unwrap_or(s).to_string())
        .unwrap_or_else(|| "EOF".into())
}

/// Turns sqlparser's "Line: l, Column: c" into a 1-based character offset.
fn position_of(msg: &str, sql: &str) -> Option<usize> {
    let l = msg
        .split("Line: ")
        .nth(1)?
        .split(',')
        .next()?
        .trim()
        .parse::<usize>()
        .ok()?;
    let c = msg
        .split("Column: ")
        .nth(1)?
        .split(|ch: char| !ch.is_ascii_digit())
        .next()?
        .parse::<usize>()
        .ok()?;
    let mut pos = 0;
    for (i, line) in sql.split('\n').enumerate() {
        if i + 1 == l {
            return Some(pos + c);
        }
        pos += line.chars().count() + 1;
    }
    None
}

/// Commits a transaction's buffered writes: one range → 1PC; several → prepare all (in
/// range order, so two committers never wait on each other in a cycle) then commit all.
/// Splits a read set by the ranges that hold it (spans crossing ranges are cut).
async fn reads_by_range(
    ctx: &CoreCtx,
    reads: &crate::txn::ReadSet,
) -> Result<BTreeMap<chitin_storage::RangeId, crate::txn::ReadSet>> {
    let mut out: BTreeMap<chitin_storage::RangeId, crate::txn::ReadSet> = BTreeMap::new();
    for k in &reads.keys {
        out.entry(ctx.range_of(k).await?)
            .or_default()
            .keys
            .push(k.clone());
    }
    for (start, end) in &reads.spans {
        let mut cur = start.clone();
        while cur < *end {
            ctx.range_of(&cur).await?;
            let (range, range_end) = ctx.ranges.borrow().locate(&cur);
            let piece_end = if !range_end.is_empty() && range_end < *end {
                range_end
            } else {
                end.clone()
            };
            out.entry(range)
                .or_default()
                .spans
                .push((cur, piece_end.clone()));
            cur = piece_end;
        }
    }
    Ok(out)
}

/// A range that split under the commit answers `RangeKeyMismatch` before anything of the
/// transaction was applied; the commit is then regrouped by fresh descriptors and resent.
pub async fn commit(ctx: &CoreCtx, txn: Txn) -> Result<()> {
    let r = commit_writes(ctx, &txn).await;
    if r.is_ok() {
        crate::sql::stats::count_mutations(ctx, txn.writes.keys());
    }
    // Row locks: a range that applied this transaction's commit released them there; the
    // others are told (all of them when the commit failed).
    let locked = std::mem::take(&mut *txn.locked.borrow_mut());
    if !locked.is_empty() {
        let mut release = Vec::new();
        for range in locked {
            let mut written = false;
            if r.is_ok() {
                for k in txn.writes.keys() {
                    if ctx.range_of(k).await.ok() == Some(range) {
                        written = true;
                        break;
                    }
                }
            }
            if !written {
                release.push(range);
            }
        }
        ctx.kv_release_locks(txn.id, &release).await;
    }
    r
}

/// Releases the row locks of a transaction that ends without committing, in the
/// background (nobody waits for it).
pub fn abandon(ctx: &Rc<CoreCtx>, txn: Option<Txn>) {
    let Some(txn) = txn else { return };
    let locked = std::mem::take(&mut *txn.locked.borrow_mut());
    if locked.is_empty() {
        return;
    }
    let ctx = ctx.clone();
    let id = txn.id;
    glommio::spawn_local(async move { ctx.kv_release_locks(id, &locked).await }).detach();
}

/// Moves a transaction's reads from `from` to `to`: fails (40001) if anyone else wrote
/// what it read in between, and makes sure nobody can any more.
pub async fn refresh_reads(
    ctx: &CoreCtx,
    txn: crate::kv::TxnId,
    reads: &crate::txn::ReadSet,
    from: chitin_storage::Timestamp,
    to: chitin_storage::Timestamp,
) -> Result<()> {
    // PERF: every range refreshes at once.
    let refreshes = reads_by_range(ctx, reads)
        .await?
        .into_iter()
        .map(|(range, reads)| {
            ctx.send(KvRequest::Refresh {
                range,
                txn,
                read_ts: from,
                commit_ts: to,
                reads,
            })
        })
        .collect::<Vec<_>>();
    for r in join_all(refreshes).await {
        r?;
    }
    Ok(())
}

async fn commit_writes(ctx: &CoreCtx, txn: &Txn) -> Result<()> {
    if txn.writes.is_empty() {
        ctx.metrics().txn_commits.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let mut attempts = 0;
    loop {
        match commit_once(ctx, txn).await {
            Err(e)
                if e.kind == crate::error::ErrorKind::RangeKeyMismatch
                    && attempts < crate::node::MISMATCH_RETRIES =>
            {
                attempts += 1;
                ctx.reroute_ranges().await?;
            }
            r => {
                if r.is_ok() {
                    ctx.metrics().txn_commits.fetch_add(1, Ordering::Relaxed);
                }
                return r;
            }
        }
    }
}

async fn commit_once(ctx: &CoreCtx, txn: &Txn) -> Result<()> {
    let mut by_range: BTreeMap<chitin_storage::RangeId, Vec<crate::kv::KvWrite>> = BTreeMap::new();
    for w in txn.kv_writes() {
        by_range
            .entry(ctx.range_of(w.key()).await?)
            .or_default()
            .push(w);
    }
    let mut read_set = txn.reads.borrow().clone();
    // A key the transaction also writes needs no refresh: the write's own conflict check
    // (any version newer than the read timestamp → 40001) covers it.
    read_set.keys.retain(|k| !txn.writes.contains_key(k));
    let reads = reads_by_range(ctx, &read_set).await?;
    // Writes conflict with anything committed since the statement that made the first of
    // them read (for SERIALIZABLE that is the transaction's one read timestamp).
    let write_ts = txn
        .first_write_ts
        .get()
        .unwrap_or(txn.read_ts())
        .min(txn.read_ts());
    let single_range = by_range.len() == 1 && reads.keys().all(|r| by_range.contains_key(r));
    if single_range {
        // One range holds every write and every read: one raft round, refresh included.
        let (range, writes) = by_range.into_iter().next().unwrap();
        let m = ctx.metrics();
        m.txn_commit_rounds.fetch_add(1, Ordering::Relaxed);
        m.txn_one_phase_commits.fetch_add(1, Ordering::Relaxed);
        ctx.send(KvRequest::OnePhase {
            range,
            txn: txn.id,
            read_ts: write_ts,
            writes,
            reads: reads.into_values().next().unwrap_or_default(),
        })
        .await?;
        return Ok(());
    }
    parallel_commit(ctx, txn, by_range, reads, write_ts).await
}

/// Commits a transaction that writes to several ranges in one round of consensus: the
/// STAGING transaction record and every range's prepare are written at once
/// (`node::txn_record` explains the protocol and its recovery). Reads on ranges it does
/// not write are refreshed first (no consensus: they only raise those ranges' read
/// high-water marks); reads on ranges it writes are refreshed by their prepare.
async fn parallel_commit(
    ctx: &CoreCtx,
    txn: &Txn,
    by_range: BTreeMap<chitin_storage::RangeId, Vec<crate::kv::KvWrite>>,
    mut reads: BTreeMap<chitin_storage::RangeId, crate::txn::ReadSet>,
    write_ts: chitin_storage::Timestamp,
) -> Result<()> {
    use crate::kv::keys::TxnRecord;
    use crate::node::txn_record::{self as record, Outcome};
    let commit_ts = ctx.shared.hlc.now().max(txn.read_ts());
    let read_only = reads
        .keys()
        .filter(|r| !by_range.contains_key(r))
        .copied()
        .collect::<Vec<_>>();
    if !read_only.is_empty() {
        let refreshes = read_only
            .iter()
            .map(|range| {
                ctx.send(KvRequest::Refresh {
                    range: *range,
                    txn: txn.id,
                    read_ts: txn.read_ts(),
                    commit_ts,
                    reads: reads.remove(range).unwrap_or_default(),
                })
            })
            .collect::<Vec<_>>();
        for r in join_all(refreshes).await {
            r?;
        }
    }
    let participants = by_range.keys().copied().collect::<Vec<_>>();
    let staging = TxnRecord::Staging {
        ts: commit_ts,
        participants: participants.clone(),
    };
    // PERF: one round: the record and every prepare at once.
    let mut requests = Vec::with_capacity(by_range.len() + 1);
    requests.push(ctx.send(KvRequest::OnePhase {
        range: crate::kv::keys::SYSTEM_RANGE,
        txn: ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed),
        read_ts: txn.read_ts(),
        writes: vec![crate::kv::KvWrite::Insert {
            key: crate::kv::keys::txn_record_key(txn.id),
            value: staging.encode(),
        }],
        reads: Default::default(),
    }));
    for (range, writes) in by_range {
        requests.push(ctx.send(KvRequest::Prepare {
            range,
            txn: txn.id,
            read_ts: write_ts,
            writes,
            commit_ts,
            reads_ts: txn.read_ts(),
            reads: reads.remove(&range).unwrap_or_default(),
        }));
    }
    let mut answers = join_all(requests).await.into_iter();
    let staged = answers.next().expect("the record write was sent");
    let mut failure = None;
    let mut prepared = Vec::new();
    let mut pushed_to = commit_ts;
    for (range, answer) in participants.iter().zip(answers) {
        match answer {
            Ok(KvResponse::Prepared { min_commit_ts }) => {
                prepared.push(*range);
                pushed_to = pushed_to.max(min_commit_ts);
            }
            Ok(other) => {
                failure.get_or_insert(Error::internal(format!("unexpected response {other:?}")));
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    let staged_at = match staged {
        Ok(KvResponse::Committed { commit_ts }) => Some(commit_ts),
        Ok(other) => {
            failure.get_or_insert(Error::internal(format!("unexpected response {other:?}")));
            None
        }
        Err(e) if e.kind == ErrorKind::UniqueViolation => {
            // A resolver found a prepare of ours orphaned and aborted the transaction.
            failure.get_or_insert(Error::retry(
                "restart transaction: aborted while committing (its prepare records were resolved as orphans)",
            ));
            None
        }
        Err(e) => {
            failure.get_or_insert(e);
            None
        }
    };
    let fast = staged_at.is_some() && failure.is_none() && pushed_to == commit_ts;
    let m = ctx.metrics();
    m.txn_commit_rounds
        .fetch_add(if fast { 1 } else { 2 }, Ordering::Relaxed);
    if fast {
        m.txn_parallel_commits.fetch_add(1, Ordering::Relaxed);
    } else {
        m.txn_parallel_commit_slow.fetch_add(1, Ordering::Relaxed);
    }
    let outcome = match (staged_at, &failure) {
        // The fast path: implicitly committed once all of it was durable.
        (Some(_), None) if fast => Outcome::Committed(commit_ts),
        // A read served on a participant pushed the commit above the record's timestamp:
        // refresh every read to the new timestamp, then commit explicitly there.
        (Some(at), None) => {
            let read_set = txn.reads.borrow().clone();
            let refreshed = refresh_reads(ctx, txn.id, &read_set, txn.read_ts(), pushed_to).await;
            let want = match refreshed {
                Ok(()) => Outcome::Committed(pushed_to),
                Err(e) => {
                    failure = Some(e);
                    Outcome::Aborted
                }
            };
            decide(ctx, txn.id, at, want).await?
        }
        (Some(at), Some(_)) => decide(ctx, txn.id, at, Outcome::Aborted).await?,
        // The record may or may not have been written (an ambiguous error): decide like a
        // recoverer would.
        (None, _) => record::resolve(ctx, txn.id).await?,
    };
    match outcome {
        Outcome::Committed(ts) => {
            finish(ctx, txn.id, participants, ts);
            Ok(())
        }
        Outcome::Aborted => {
            for range in prepared {
                let _ = ctx.send(KvRequest::Abort { range, txn: txn.id }).await;
            }
            Err(failure.unwrap_or_else(|| {
                Error::retry("restart transaction: aborted while committing (a recoverer found it unfinished)")
            }))
        }
    }
}

/// Replaces the STAGING record (written at `at`) by `want`, unless a recoverer decided
/// first: then its decision stands.
async fn decide(
    ctx: &CoreCtx,
    txn: crate::kv::TxnId,
    at: chitin_storage::Timestamp,
    want: crate::node::txn_record::Outcome,
) -> Result<crate::node::txn_record::Outcome> {
    use crate::node::txn_record as record;
    if record::replace(ctx, txn, at, &want.record()).await? {
        return Ok(want);
    }
    record::resolve(ctx, txn).await
}

/// Makes a committed parallel commit explicit, in the background (the client already has
/// its answer): record → COMMITTED, every participant applies its writes, record deleted.
/// Until a participant applies them, its latches make readers of those keys wait. A step
/// that fails leaves the rest to the orphan resolver.
fn finish(
    ctx: &CoreCtx,
    txn: crate::kv::TxnId,
    participants: Vec<chitin_storage::RangeId>,
    commit_ts: chitin_storage::Timestamp,
) {
    use crate::kv::keys::TxnRecord;
    use crate::node::txn_record as record;
    let ctx = ctx.rc();
    glommio::spawn_local(async move {
        if record::put(&ctx, txn, &TxnRecord::Committed(commit_ts))
            .await
            .is_err()
        {
            return;
        }
        let commits = participants
            .iter()
            .map(|&range| {
                ctx.send(KvRequest::Commit {
                    range,
                    txn,
                    commit_ts,
                })
            })
            .collect::<Vec<_>>();
        if join_all(commits).await.iter().all(|r| r.is_ok()) {
            let _ = record::delete(&ctx, txn).await;
        }
    })
    .detach();
}

/// Runs futures concurrently on this task and returns their outputs in order.
pub(crate) async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Option<std::pin::Pin<Box<F>>>> =
        futs.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if let Some(fut) = f {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *o = Some(v);
                        *f = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// An error a statement planned against a stale catalog may give: no such table,
/// column or database (another node may have just created it).
fn is_stale_catalog(e: &Error) -> bool {
    matches!(
        e.kind,
        ErrorKind::UndefinedTable | ErrorKind::UndefinedColumn | ErrorKind::UndefinedDatabase
    )
}

/// PostgreSQL's default `search_path`.
const DEFAULT_SEARCH_PATH: &str = "\"$user\", public";

/// `SET search_path = a, "B", 'c'` as PostgreSQL shows it (`a, "B", c`): each schema
/// name quoted where it must be; `DEFAULT` is the default path. `None` for what is not a
/// list of names.
fn search_path_setting(values: &[sqlparser::ast::Expr]) -> Option<String> {
    use sqlparser::ast::{Expr, Value};
    let mut names = Vec::new();
    for v in values {
        let name = match v {
            Expr::Identifier(i) if i.quote_style.is_none() => {
                if i.value.eq_ignore_ascii_case("default") && values.len() == 1 {
                    return Some(DEFAULT_SEARCH_PATH.to_string());
                }
                i.value.to_lowercase()
            }
            Expr::Identifier(i) => i.value.clone(),
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => s.clone(),
                _ => return None,
            },
            _ => return None,
        };
        names.push(crate::sql::pg_catalog::quote_ident(&name));
    }
    Some(names.join(", "))
}

/// A boolean setting's value as PostgreSQL reads it (`on`, `true`, `yes`, `1` and their
/// opposites, any case).
fn parse_bool_setting(v: &str) -> Option<bool> {
    match v.trim().trim_matches('\'').to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" => Some(true),
        "off" | "false" | "no" | "0" | "f" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::startup_options;

    #[test]
    fn startup_options_read_like_postgres() {
        let got = startup_options("-c search_path=app,public --DateStyle=ISO -cstatement_timeout=5s -c application_name=a\\ b");
        let want = [
            ("search_path", "app,public"),
            ("datestyle", "ISO"),
            ("statement_timeout", "5s"),
            ("application_name", "a b"),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        );
    }
}
