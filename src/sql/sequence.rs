//! Sequences: `CREATE SEQUENCE`, `nextval`, `currval`, `lastval`, `setval`, and the
//! sequences behind `SERIAL` columns, with PostgreSQL 15's semantics.
//!
//! A sequence is a relation (a [`TableDesc`] whose `sequence` holds its options) with one
//! row, `(last_value, log_cnt, is_called)`, stored at its primary-index prefix
//! ([`value_key`]), so `SELECT * FROM s` reads it like any table.
//!
//! # Not transactional
//!
//! As in PostgreSQL, advancing a sequence is not part of the user's transaction: a value
//! handed out is never handed out again, even when the transaction that took it rolls
//! back. [`advance`] reads the row at a fresh timestamp and writes the next one in its own
//! one-phase transaction on the range that holds it. The write is refused (40001) when any
//! version of the key is newer than the read, so the read-modify-write is atomic — two
//! sessions never get the same value — and a loser simply reads again.
//!
//! # Evaluation
//!
//! Expression evaluation is synchronous, a KV write is not. So the executor runs the
//! sequence functions of an expression *before* evaluating it for a row
//! (`Exec::run_sequence_calls`): each call's arguments are evaluated, the sequence advanced
//! or read, and the result queued in the session's [`SeqSession`]; the evaluator then takes
//! each call's result from the queue ([`SeqSession::take`]).
//!
//! # Implementation caveats
//!
//! - Every `nextval` is one replicated write: `CACHE` is recorded and shown, not used.
//! - Calls are run in the expression's evaluation order, but also in branches a `CASE` or
//!   `COALESCE` then skips (the value is used up, as a gap).
//! - Sequence functions run in the SELECT list, in INSERT values and defaults, and in
//!   UPDATE … SET; elsewhere (a WHERE clause) they are refused with 0A000.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use crate::error::{Error, ErrorKind, Result};
use crate::kv::keys::{self, index_prefix};
use crate::kv::{KvRequest, KvWrite};
use crate::node::CoreCtx;
use crate::sql::catalog::{ColumnDesc, SequenceDesc, TableDesc};
use crate::sql::types::{Datum, SqlType};

/// The functions that read or advance a sequence.
pub fn is_sequence_function(name: &str) -> bool {
    matches!(name, "nextval" | "currval" | "setval" | "lastval")
}

/// The functions run ahead of evaluation, where they may wait (`exec`'s
/// `run_sequence_calls`): the sequence functions and `pg_sleep`.
pub fn runs_ahead(name: &str) -> bool {
    is_sequence_function(name) || name == "pg_sleep"
}

/// A session's sequence state: the last value `nextval` gave it per sequence (what
/// `currval` returns), the sequence `lastval` reads, and the queue of results of calls run
/// ahead of evaluation.
#[derive(Debug, Default)]
pub struct SeqSession {
    currvals: HashMap<u32, i64>,
    last: Option<u32>,
    /// (function, argument as text, result), in evaluation order.
    pending: Vec<(&'static str, String, i64)>,
}

impl SeqSession {
    pub fn clear_pending(&mut self) {
        self.pending.clear();
    }
    pub fn push(&mut self, func: &'static str, arg: String, v: i64) {
        self.pending.push((func, arg, v));
    }
    /// The queued result of call `func(arg)`.
    pub fn take(&mut self, func: &str, arg: &str) -> Result<i64> {
        match self
            .pending
            .iter()
            .position(|(f, a, _)| *f == func && a == arg)
        {
            Some(i) => Ok(self.pending.remove(i).2),
            None => Err(Error::unsupported(format!(
                "{func}() is not supported in this context"
            ))),
        }
    }
    pub fn currval(&self, id: u32, name: &str) -> Result<i64> {
        self.currvals.get(&id).copied().ok_or_else(|| {
            Error::new(
                ErrorKind::ObjectNotInPrerequisiteState,
                format!("currval of sequence \"{name}\" is not yet defined in this session"),
            )
        })
    }
    pub fn lastval(&self) -> Result<i64> {
        self.last
            .and_then(|id| self.currvals.get(&id).copied())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::ObjectNotInPrerequisiteState,
                    "lastval is not yet defined in this session",
                )
            })
    }
    pub fn note_next(&mut self, id: u32, v: i64) {
        self.currvals.insert(id, v);
        self.last = Some(id);
    }
    pub fn note_set(&mut self, id: u32, v: i64) {
        self.currvals.insert(id, v);
    }
    /// Forgets a dropped sequence (`lastval` then fails as PostgreSQL's does).
    pub fn forget(&mut self, id: u32) {
        self.currvals.remove(&id);
    }
}

/// The argument of a sequence function as the evaluator sees it: its text.
pub fn arg_key(d: &Datum) -> String {
    d.to_text(d.natural_type()).unwrap_or_default()
}

/// The key of a sequence's row.
pub fn value_key(id: u32) -> Vec<u8> {
    index_prefix(id, 1)
}

/// The smallest and largest value of a sequence of type `ty`.
pub fn type_bounds(ty: SqlType) -> (i64, i64) {
    match ty {
        SqlType::Int2 => (i16::MIN as i64, i16::MAX as i64),
        SqlType::Int4 => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    }
}

pub fn type_name(ty: SqlType) -> &'static str {
    match ty {
        SqlType::Int2 => "smallint",
        SqlType::Int4 => "integer",
        _ => "bigint",
    }
}

/// Options of CREATE / ALTER SEQUENCE, as numbers.
#[derive(Default, Debug)]
pub struct SeqOptions {
    pub ty: Option<SqlType>,
    pub increment: Option<i64>,
    /// `Some(None)`: NO MINVALUE.
    pub min: Option<Option<i64>>,
    pub max: Option<Option<i64>>,
    pub start: Option<i64>,
    /// `Some(None)`: RESTART without a value (the start value).
    pub restart: Option<Option<i64>>,
    pub cache: Option<i64>,
    pub cycle: Option<bool>,
}

fn invalid(m: String) -> Error {
    Error::new(ErrorKind::InvalidParameterValue, m)
}

/// Applies `o` to `old` (defaults for CREATE) with PostgreSQL's checks; returns the options
/// and the value the sequence restarts at, if it does.
pub fn build(o: &SeqOptions, old: Option<&SequenceDesc>) -> Result<(SequenceDesc, Option<i64>)> {
    let ty = o.ty.or(old.map(|s| s.ty)).unwrap_or(SqlType::Int8);
    if !matches!(ty, SqlType::Int2 | SqlType::Int4 | SqlType::Int8) {
        return Err(invalid(
            "sequence type must be smallint, integer, or bigint".into(),
        ));
    }
    let increment = o.increment.or(old.map(|s| s.increment)).unwrap_or(1);
    if increment == 0 {
        return Err(invalid("INCREMENT must not be zero".into()));
    }
    let (tmin, tmax) = type_bounds(ty);
    let type_changed = o.ty.is_some() && old.is_some_and(|s| s.ty != ty);
    let max = match o.max {
        Some(Some(v)) => v,
        Some(None) => {
            if increment > 0 {
                tmax
            } else {
                -1
            }
        }
        None => match old {
            // A new type moves a maximum that was the old type's bound.
            Some(s) if type_changed && s.max == type_bounds(s.ty).1 => tmax,
            Some(s) if !(o.increment.is_some() && s.max == -1 && increment > 0) => s.max,
            _ => {
                if increment > 0 {
                    tmax
                } else {
                    -1
                }
            }
        },
    };
    let min = match o.min {
        Some(Some(v)) => v,
        Some(None) => {
            if increment > 0 {
                1
            } else {
                tmin
            }
        }
        None => match old {
            Some(s) if type_changed && s.min == type_bounds(s.ty).0 => tmin,
            Some(s) if !(o.increment.is_some() && s.min == 1 && increment < 0) => s.min,
            _ => {
                if increment > 0 {
                    1
                } else {
                    tmin
                }
            }
        },
    };
    let tname = type_name(ty);
    if max < tmin || max > tmax {
        return Err(invalid(format!(
            "MAXVALUE ({max}) is out of range for sequence data type {tname}"
        )));
    }
    if min < tmin || min > tmax {
        return Err(invalid(format!(
            "MINVALUE ({min}) is out of range for sequence data type {tname}"
        )));
    }
    if min >= max {
        return Err(invalid(format!(
            "MINVALUE ({min}) must be less than MAXVALUE ({max})"
        )));
    }
    let start = match (o.start, old) {
        (Some(v), _) => v,
        (None, Some(s)) => s.start,
        (None, None) => {
            if increment > 0 {
                min
            } else {
                max
            }
        }
    };
    if start < min {
        return Err(invalid(format!(
            "START value ({start}) cannot be less than MINVALUE ({min})"
        )));
    }
    if start > max {
        return Err(invalid(format!(
            "START value ({start}) cannot be greater than MAXVALUE ({max})"
        )));
    }
    let restart = o.restart.map(|r| r.unwrap_or(start));
    if let Some(r) = restart {
        if r < min {
            return Err(invalid(format!(
                "RESTART value ({r}) cannot be less than MINVALUE ({min})"
            )));
        }
        if r > max {
            return Err(invalid(format!(
                "RESTART value ({r}) cannot be greater than MAXVALUE ({max})"
            )));
        }
    }
    let cache = o.cache.or(old.map(|s| s.cache)).unwrap_or(1);
    if cache <= 0 {
        return Err(invalid(format!(
            "CACHE ({cache}) must be greater than zero"
        )));
    }
    let cycle = o.cycle.or(old.map(|s| s.cycle)).unwrap_or(false);
    Ok((
        SequenceDesc {
            ty,
            increment,
            min,
            max,
            start,
            cache,
            cycle,
            owned_by: old.and_then(|s| s.owned_by),
        },
        restart,
    ))
}

/// The relation descriptor of sequence `name` of schema `schema_id`: its row's three
/// columns, no key columns.
pub fn relation(id: u32, db_id: u32, schema_id: u32, name: &str, seq: SequenceDesc) -> TableDesc {
    let col = |n: &str, ty| {
        let mut c = ColumnDesc::new(n, ty);
        c.nullable = false;
        c
    };
    let columns = vec![
        col("last_value", SqlType::Int8),
        col("log_cnt", SqlType::Int8),
        col("is_called", SqlType::Bool),
    ];
    TableDesc {
        id,
        db_id,
        sequence: Some(seq),
        schema_id,
        ..TableDesc::new(name, columns)
    }
}

/// A sequence's row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeqRow {
    pub last_value: i64,
    pub log_cnt: i64,
    pub is_called: bool,
}

impl SeqRow {
    pub fn fresh(start: i64) -> SeqRow {
        SeqRow {
            last_value: start,
            log_cnt: 0,
            is_called: false,
        }
    }
    pub fn encode(&self) -> Vec<u8> {
        keys::encode_row(&[
            Datum::Int(self.last_value),
            Datum::Int(self.log_cnt),
            Datum::Bool(self.is_called),
        ])
    }
    pub fn decode(b: &[u8]) -> Result<SeqRow> {
        match keys::decode_row(b, 0)?.as_slice() {
            [Datum::Int(l), Datum::Int(c), Datum::Bool(i), ..] => Ok(SeqRow {
                last_value: *l,
                log_cnt: *c,
                is_called: *i,
            }),
            _ => Err(Error::internal("corrupt sequence row")),
        }
    }
}

/// What [`advance`] does to a sequence.
#[derive(Clone, Copy, Debug)]
pub enum SeqOp {
    Next,
    Set { value: i64, is_called: bool },
    Restart(i64),
}

/// PostgreSQL's log_cnt: values "pre-logged" ahead (32 after each logging nextval).
const LOG_VALS: i64 = 32;

/// The result of `op` on a sequence in state `cur`, and the new state.
pub fn step(name: &str, seq: &SequenceDesc, cur: SeqRow, op: SeqOp) -> Result<(i64, SeqRow)> {
    match op {
        SeqOp::Next => {
            if !cur.is_called {
                return Ok((
                    cur.last_value,
                    SeqRow {
                        last_value: cur.last_value,
                        log_cnt: LOG_VALS,
                        is_called: true,
                    },
                ));
            }
            let next = cur.last_value.checked_add(seq.increment);
            let next = if seq.increment > 0 {
                match next {
                    Some(v) if v <= seq.max => v,
                    _ if seq.cycle => seq.min,
                    _ => {
                        return Err(Error::new(
                            ErrorKind::SequenceGeneratorLimitExceeded,
                            format!(
                                "nextval: reached maximum value of sequence \"{name}\" ({})",
                                seq.max
                            ),
                        ))
                    }
                }
            } else {
                match next {
                    Some(v) if v >= seq.min => v,
                    _ if seq.cycle => seq.max,
                    _ => {
                        return Err(Error::new(
                            ErrorKind::SequenceGeneratorLimitExceeded,
                            format!(
                                "nextval: reached minimum value of sequence \"{name}\" ({})",
                                seq.min
                            ),
                        ))
                    }
                }
            };
            let log_cnt = if cur.log_cnt <= 0 {
                LOG_VALS
            } else {
                cur.log_cnt - 1
            };
            Ok((
                next,
                SeqRow {
                    last_value: next,
                    log_cnt,
                    is_called: true,
                },
            ))
        }
        SeqOp::Set { value, is_called } => {
            if value < seq.min || value > seq.max {
                return Err(Error::out_of_range(format!(
                    "setval: value {value} is out of bounds for sequence \"{name}\" ({}..{})",
                    seq.min, seq.max
                )));
            }
            Ok((
                value,
                SeqRow {
                    last_value: value,
                    log_cnt: 0,
                    is_called,
                },
            ))
        }
        SeqOp::Restart(v) => Ok((v, SeqRow::fresh(v))),
    }
}

/// Applies `op` to sequence `t` atomically, outside any user transaction; returns the
/// function's result (the value `nextval` hands out).
pub async fn advance(ctx: &CoreCtx, t: &TableDesc, op: SeqOp) -> Result<i64> {
    let Some(seq) = &t.sequence else {
        return Err(not_a_sequence(&t.name));
    };
    let key = value_key(t.id);
    let mut attempt = 0u32;
    loop {
        let ts = ctx.shared.hlc.now();
        let cur = match ctx.kv_get(&key, ts).await {
            Ok(Some(b)) => SeqRow::decode(&b)?,
            Ok(None) => SeqRow::fresh(seq.start),
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                attempt += 1;
                backoff(attempt).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let (result, new) = step(&t.name, seq, cur, op)?;
        let written = async {
            let range = ctx.range_of(&key).await?;
            ctx.send(KvRequest::OnePhase {
                range,
                txn: ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed),
                read_ts: ts,
                writes: vec![KvWrite::Put {
                    key: key.clone(),
                    value: new.encode(),
                }],
                reads: Default::default(),
            })
            .await
        }
        .await;
        match written {
            Ok(_) => return Ok(result),
            Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                if e.kind == ErrorKind::RangeKeyMismatch {
                    ctx.reroute_ranges().await?;
                }
                attempt += 1;
                backoff(attempt).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How often [`advance`] retries a conflicting increment before giving up with the 40001.
const MAX_ATTEMPTS: u32 = 2000;

async fn backoff(attempt: u32) {
    if attempt < 3 {
        glommio::yield_if_needed().await;
        return;
    }
    let cap = 50 * attempt.min(40) as u64;
    let jitter = crate::sql::session::next_random() % cap.max(1);
    glommio::timer::sleep(std::time::Duration::from_micros(20 + jitter)).await;
}

pub fn not_a_sequence(name: &str) -> Error {
    Error::new(
        ErrorKind::WrongObjectType,
        format!("\"{name}\" is not a sequence"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(o: SeqOptions) -> SequenceDesc {
        build(&o, None).unwrap().0
    }

    #[test]
    fn defaults_follow_the_increment_sign() {
        let up = seq(SeqOptions::default());
        assert_eq!((up.min, up.max, up.start), (1, i64::MAX, 1));
        let down = seq(SeqOptions {
            increment: Some(-1),
            ty: Some(SqlType::Int4),
            ..Default::default()
        });
        assert_eq!((down.min, down.max, down.start), (i32::MIN as i64, -1, -1));
    }

    #[test]
    fn invalid_options_are_refused_with_postgres_messages() {
        let e = build(
            &SeqOptions {
                increment: Some(0),
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
        assert_eq!(e.message, "INCREMENT must not be zero");
        let e = build(
            &SeqOptions {
                min: Some(Some(10)),
                max: Some(Some(5)),
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
        assert_eq!(e.message, "MINVALUE (10) must be less than MAXVALUE (5)");
        let e = build(
            &SeqOptions {
                ty: Some(SqlType::Int2),
                max: Some(Some(40000)),
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "MAXVALUE (40000) is out of range for sequence data type smallint"
        );
    }

    #[test]
    fn nextval_steps_cycles_and_runs_out() {
        let s = seq(SeqOptions {
            max: Some(Some(3)),
            ..Default::default()
        });
        let mut row = SeqRow::fresh(s.start);
        let mut got = Vec::new();
        for _ in 0..3 {
            let (v, r) = step("s", &s, row, SeqOp::Next).unwrap();
            got.push(v);
            row = r;
        }
        assert_eq!(got, vec![1, 2, 3]);
        let e = step("s", &s, row, SeqOp::Next).unwrap_err();
        assert_eq!(e.sqlstate(), "2200H");
        assert_eq!(
            e.message,
            "nextval: reached maximum value of sequence \"s\" (3)"
        );
        let c = SequenceDesc { cycle: true, ..s };
        assert_eq!(step("s", &c, row, SeqOp::Next).unwrap().0, 1);
        // i64 overflow is the end of the sequence, not a panic.
        let big = seq(SeqOptions::default());
        let top = SeqRow {
            last_value: i64::MAX,
            log_cnt: 0,
            is_called: true,
        };
        assert!(step("b", &big, top, SeqOp::Next).is_err());
    }
}
