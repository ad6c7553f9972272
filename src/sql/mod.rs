//! SQL: from a statement's text to KV requests.
//!
//! # Life of a statement
//!
//! 1. `server::pgwire::serve` reads a Query (or Parse/Bind/Execute) message on the core that
//!    accepted the connection (the gateway) and hands the text to [`session::Session`].
//! 2. [`session::parse`] runs the pre-parser ([`preparse::rewrite`], for CockroachDB
//!    extensions) and sqlparser's PostgreSQL dialect.
//! 3. [`session::Session`] handles transaction control and session variables, and runs
//!    everything else in a transaction ([`crate::txn::Txn`]): the explicit one, or an
//!    implicit one it commits and retries on 40001.
//! 4. [`exec::Exec::run`] first inlines calls of SQL functions (`CREATE FUNCTION …
//!    LANGUAGE sql`, [`udf::inline_calls`]: the body in place of the call, arguments
//!    cast to the parameters' types), then rewrites catalog queries ([`pg_catalog::rewrite`]:
//!    psql's `OPERATOR(pg_catalog.~)`, `::regclass`, …), rewrites CTEs into derived
//!    tables and runs uncorrelated subqueries, putting their results back as parameters
//!    ([`rewrite`]), and turns `GROUPING SETS` / `ROLLUP` / `CUBE` into a `UNION ALL` of
//!    plain `GROUP BY` queries ([`grouping_sets`]); then it binds names against the
//!    cached [`catalog::Catalog`] and the virtual catalog tables
//!    ([`pg_catalog::virtual_table`]) ([`expr::Binder`] → [`expr::Scalar`]), picks an
//!    access path (primary key point lookup, primary key span, secondary index lookup, or
//!    full scan of the table's range), reads through the transaction (own writes
//!    overlaid on KV reads at the read timestamp), filters, aggregates, sorts, and
//!    produces rows; writes are buffered in the transaction.
//! 5. At commit, [`session::commit`] sends the buffered writes to the owning ranges
//!    (`kv::store`), which latch, validate and replicate them through raft (log append +
//!    fdatasync) before applying them to the engine.
//!
//! # Implementation caveats
//!
//! - DistSQL ([`distsql`], `exec::distsql`) runs the scan, filter and partial aggregation
//!   (or top-K of an ORDER BY … LIMIT) of a single-table query, and the scans of a join's
//!   table inputs, on each leaseholder core, rows coming back in pages; joins, window
//!   functions and DISTINCT aggregates are computed on the gateway.
//! - Joins are hash joins on equality conditions (`exec::hash_join`), merge joins when both
//!   inputs arrive in key order (`exec::merge_join`), lookup joins by key from a small left
//!   side, nested loops otherwise (`exec::join_access`: pushdown, join order by estimated
//!   rows for inner joins of tables only); the right input of a hash join is held in
//!   memory. Correlated subqueries work only in WHERE, in
//!   UPDATE … SET and in ungrouped
//!   SELECT lists (run once per outer row). Arrays ([`array`]) are their text form in a
//!   `Datum::Text`, columns too: a SELECT's ORDER BY sorts them element by element, but
//!   GROUP BY / DISTINCT / window and set-operation ordering compare that text,
//!   and there are no arrays of jsonb. `jsonb` is kept as normalized text ([`jsonb`]:
//!   operators, builders and aggregates, no jsonb ordering); `interval` and `time` are full types ([`interval`], [`time_of_day`]; no
//!   `time with time zone`); `COLLATE` accepts the locale-free collations and changes
//!   nothing (text always compares bytewise); `statement_timeout` is checked where
//!   cancellation is (between rows, and in `pg_sleep`), not inside a single KV wait;
//!   `WITH RECURSIVE` is computed before the statement runs (`exec::recursive_cte`), its
//!   rows held in memory.
//!   Views are stored queries, computed at each read; materialized views are tables filled
//!   from their query at creation and at each REFRESH (`exec::materialized_views`).
//!   An index on an expression indexes a hidden computed column of its table
//!   ([`computed`]), recomputed whenever a row is read or written.
//!   SQL functions ([`udf`], `exec::functions`) are inlined, never called: one SELECT
//!   or `RETURN expr` bodies with a scalar result, no recursion, no PL/pgSQL.
//! - Schemas (`exec::schemas`): `CREATE SCHEMA s`, `s.t` names and the session's
//!   `search_path` ([`catalog::SearchPath`]) work; a view's stored query is resolved
//!   through the path of the session that reads it, not the one that created it.
//! - `pg_catalog` / `information_schema` are virtual tables computed from the catalog at
//!   planning time ([`pg_catalog`]): enough for psql's `\d` commands and common driver
//!   introspection, not a full PostgreSQL catalog (its essay lists what is missing).
//! - Sequences (`sequence`) advance outside the user's transaction, one replicated write
//!   per nextval (CACHE is not used); sequence functions run only in SELECT lists, INSERT
//!   values and defaults, and UPDATE … SET. SERIAL makes a sequence, as PostgreSQL does
//!   (`serial_normalization = rowid` keeps CockroachDB's unique_rowid()).
//! - Foreign keys (`exec::foreign_keys`) are checked row by row, not at statement end:
//!   NO ACTION behaves as RESTRICT; no DEFERRABLE, no MATCH FULL.
//! - A multi-statement simple query's statements outside BEGIN share one implicit
//!   transaction, committed at the end of the string.
//! - SQL cursors ([`cursor`]) hold their query's rows, materialized at DECLARE; a cursor
//!   is no protocol portal.
//! - `x op ANY | ALL (subquery)` runs the subquery once (`rewrite`): a correlated one is
//!   refused (0A000). A correlated `x [NOT] IN (subquery)` becomes an EXISTS where that
//!   means the same, else the subquery runs for each outer row and IN's three-valued
//!   result is taken over its rows. `CREATE TABLE … AS` commits its table as any DDL and writes the rows
//!   in the statement's transaction (`exec::create_table_as`), so a rollback keeps the
//!   empty table. `UPDATE … FROM` / `DELETE … USING` (`exec::dml_join`) pick the first
//!   joined row of a target row in join order, where PostgreSQL's is unspecified.

pub mod array;
pub mod bytea_functions;
pub mod catalog;
pub mod computed;
pub mod copy;
pub mod cursor;
pub mod datetime_format;
pub mod distsql;
pub mod exec;
pub mod expr;
pub mod grouping_sets;
pub mod interval;
pub mod jobs;
pub mod jsonb;
pub mod md5;
pub mod numeric_special;
pub mod pg_catalog;
pub mod preparse;
pub mod record;
pub mod regex_functions;
pub mod rewrite;
pub mod roles;
pub mod scalar_functions;
pub mod sequence;
pub mod session;
pub mod stats;
pub mod time_of_day;
pub mod time_zone;
pub mod types;
pub mod udf;
pub mod wire;
