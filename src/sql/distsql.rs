//! DistSQL flows: the part of a query that runs where the data is.
//!
//! A query over one table whose scan covers ranges held by other cores (or nodes) is split
//! by the gateway (`exec::distsql`) into one **flow** per owning core. A flow
//! ([`FlowSpec`]) is a table reader over the flow's spans, the query's filter, and, when
//! every aggregate can be merged, the grouping and aggregation as partial aggregates; it
//! travels to its core in a [`KvRequest::Flow`] (over the core mesh, or encoded over the
//! node transport) and runs there ([`run_flow`]) on that core's own store, next to the
//! raft replicas, in chunks: no row crosses a core unless it passed the filter, and an
//! aggregation sends back one partial state per group. The gateway merges the answers in
//! key order (so the rows and groups come out in the order a single scan would produce
//! them), finishes the aggregation, and runs the rest of the plan (HAVING, projection,
//! ORDER BY, LIMIT).
//!
//! # Pages and LIMIT
//!
//! A flow of rows answers at most [`PAGE_ROWS`] rows (`FlowSpec::page_rows`): it stops
//! after the chunk that reached them and answers where to resume (`FlowResult::resume`);
//! the gateway asks every such flow for its next page at once, round after round, so no
//! answer grows with the table. An aggregating flow answers its groups in one piece. A
//! `LIMIT` in key order (no ORDER BY, or ORDER BY a primary key prefix) asks for pages of
//! LIMIT + OFFSET rows and stops asking once the spans answered so far hold that many
//! rows in key order: the ranges after them are never read. An `ORDER BY … LIMIT` in
//! another order sends its sort keys (expressions over the table row) and LIMIT + OFFSET:
//! each flow keeps its first rows in that order (`FlowSpec::top`; sorted and cut every
//! time it holds twice as many) and answers only those, unpaged; the gateway sorts the
//! flows' answers and cuts again.
//!
//! # ORDER BY
//!
//! Without a LIMIT, an ORDER BY in key order (ascending by a primary key prefix) needs no
//! sort: the answers merged in key order are the order. Any other ORDER BY travels as sort
//! keys with `top` = 0: each flow sorts each span's rows of each page before answering
//! them, so every piece the gateway receives is a sorted run (paging stays as it is), and
//! the gateway merges the runs (`exec::merge_runs`, a heap over the runs' heads: n log runs
//! comparisons on the gateway's core instead of a sort's n log n, the sorting itself done
//! in parallel where the data is). Such specs travel as wire version 3: a node that would
//! ignore the sort keys refuses them.
//!
//! A join's table inputs are scanned the same way, each by flows with the WHERE conjuncts
//! that read only that input (`exec::distsql::dist_join_input`); the joins run on the
//! gateway over the merged rows.
//!
//! # Consistency
//!
//! A flow reads at the transaction's read timestamp with its uncertainty limit, exactly as
//! the scan it replaces: the store latches, bumps the range's read high-water mark and
//! reports values in the uncertainty interval ([`KvResponse::Uncertain`]: the gateway moves
//! the transaction up and runs every flow again). The gateway records the whole span in the
//! transaction's read set, so a commit refreshes it like any other scan. A transaction
//! with its own uncommitted writes in the span does not distribute (the flow cannot see
//! them).
//!
//! # Spans a flow cannot serve
//!
//! A span whose range is not led here any more (leadership moved, the range was moved to
//! another node) is answered as *unserved* and the gateway reads it itself through the
//! ordinary routing ([`Source::Routed`]), processing its rows the same way; a span that no
//! longer matches a range (a split or merge since the gateway planned) fails the flow with
//! `RangeKeyMismatch`, and the gateway re-plans from fresh descriptors.
//!
//! # Caveats
//!
//! - A flow on another node does not see the session's cancel flag: a cancelled statement
//!   stops at the gateway once the flows it waits for answer (a flow of rows answers a
//!   page at a time, so it stops within a page) (every flow checks the
//!   statement deadline and node shutdown between chunks; flows on the gateway's node also
//!   the cancel flag).
//! - Expressions with session state that does not travel (sequence functions,
//!   `unique_rowid()`) keep the query on the gateway.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chitin_storage::{RangeId, Timestamp};

use crate::error::{Error, ErrorKind, Result};
use crate::kv::{KvRequest, KvResponse, Uncertain};
use crate::node::CoreCtx;
use crate::sql::catalog::TableDesc;
use crate::sql::exec::{AggState, Grouper};
use crate::sql::expr::{AggCall, EvalCtx, Scalar};
use crate::sql::record::{put_str, Reader};
use crate::sql::types::{Datum, SqlType};
use crate::sql::wire;

/// One key span of a flow, inside one range.
#[derive(Clone, Debug)]
pub struct FlowSpan {
    pub range: RangeId,
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

/// What a flow evaluates its expressions with: the parts of the session's [`EvalCtx`]
/// that travel.
#[derive(Clone, Debug, Default)]
pub struct FlowEval {
    pub params: Vec<Datum>,
    pub now_micros: i64,
    pub txn_ts: Timestamp,
    pub database: String,
    pub user: String,
    pub settings: BTreeMap<String, String>,
    pub current_schema: Option<String>,
}

impl FlowEval {
    pub fn of(cx: &EvalCtx) -> FlowEval {
        FlowEval {
            params: cx.params.clone(),
            now_micros: cx.now_micros,
            txn_ts: cx.txn_ts,
            database: cx.database.clone(),
            user: cx.user.clone(),
            settings: (*cx.settings).clone(),
            current_schema: cx.current_schema.clone(),
        }
    }

    fn eval_ctx(&self) -> EvalCtx {
        EvalCtx {
            params: self.params.clone(),
            now_micros: self.now_micros,
            txn_ts: self.txn_ts,
            database: self.database.clone(),
            user: self.user.clone(),
            settings: std::rc::Rc::new(self.settings.clone()),
            current_schema: self.current_schema.clone(),
            ..EvalCtx::default()
        }
    }
}

/// GROUP BY expressions and aggregates a flow computes partially.
#[derive(Clone, Debug)]
pub struct PartialAgg {
    pub group_by: Vec<Scalar>,
    pub aggs: Vec<AggCall>,
}

/// A flow: read `spans` of `table`'s primary index at `ts` (uncertainty limit `unc`), keep
/// the rows `filter` accepts, and either answer them or aggregate them (`agg`).
#[derive(Clone, Debug)]
pub struct FlowSpec {
    pub table: Arc<TableDesc>,
    pub filter: Option<Scalar>,
    pub agg: Option<PartialAgg>,
    pub eval: FlowEval,
    pub spans: Vec<FlowSpan>,
    pub ts: Timestamp,
    pub unc: Timestamp,
    /// The statement's deadline (`statement_timeout`) as time left when the flow was sent.
    pub time_left: Option<std::time::Duration>,
    /// The columns the query reads (None: all); the others are not decoded.
    pub keep: Option<Vec<bool>>,
    /// The session's cancel flag, for flows on the gateway's node (not sent to other
    /// nodes: a flow there runs to its end, or to its deadline).
    pub cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Rows one answer carries at most (0: no limit): a flow of rows that has answered this
    /// many stops after its chunk and says where to resume ([`FlowResult::resume`]).
    /// Aggregating flows are not paged.
    pub page_rows: usize,
    /// `ORDER BY … LIMIT`: with `top` > 0 a flow of rows answers only its first `top` rows
    /// in this order (all of them, sorted, in its first span's output), not paged. With
    /// `top` = 0 (`ORDER BY` without LIMIT) each span's answer of each page is sorted in
    /// this order: a sorted run the gateway merges with the others.
    pub order: Vec<FlowOrder>,
    pub top: usize,
}

/// One ORDER BY key of a top-K flow: an expression over the table row; `array_ty` sorts
/// an array output as the gateway does (`array::sort_datum`).
#[derive(Clone, Debug)]
pub struct FlowOrder {
    pub key: Scalar,
    pub array_ty: Option<SqlType>,
    pub desc: bool,
    pub nulls_first: bool,
}

/// A flow's answer for one span.
#[derive(Debug)]
pub enum FlowOutput {
    Rows(Vec<Vec<Datum>>),
    /// Each group's first row and partial aggregate states, in order of appearance.
    Groups(Vec<(Vec<Datum>, Vec<AggState>)>),
}

/// What a flow answers.
#[derive(Debug, Default)]
pub struct FlowResult {
    /// (index into the spec's spans, its output), for the spans served here, in order.
    pub outputs: Vec<(usize, FlowOutput)>,
    /// Spans this core could not serve (not their leader here): the gateway reads them.
    pub unserved: Vec<usize>,
    /// Rows read from the store, and rows (or groups) answered.
    pub rows_read: u64,
    pub rows_out: u64,
    /// Where it ran and for how long.
    pub node: u64,
    pub core: usize,
    pub micros: u64,
    /// A paged flow that stopped early ([`FlowSpec::page_rows`]): the span it stopped in
    /// and the key to resume from. The spans before it are done, its rows so far are in
    /// `outputs`, the spans after it were not read.
    pub resume: Option<(usize, Vec<u8>)>,
}

/// How a flow reads its spans.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    /// From this core's store: the flow was sent to the spans' owner.
    Local,
    /// Through the gateway's ordinary routing (leader cache, forwarding): spans no flow
    /// could serve.
    Routed,
}

/// How a flow ended, when not with rows.
pub enum FlowEnd {
    Done(FlowResult),
    /// A value in the uncertainty interval: the gateway restarts at a higher timestamp.
    Uncertain(Uncertain),
    /// A one-span flow sent to a core that does not lead the span's range (the leader it
    /// believes in).
    NotLeader(u64),
}

/// The first chunk a flow reads, and the most it reads at once.
const FIRST_CHUNK: usize = 1024;
const MAX_CHUNK: usize = 16 * 1024;

/// Rows per answer of a flow of rows: the gateway asks again for the next page, so no
/// answer (an SPSC message, or a message of the node transport) grows with the table.
pub const PAGE_ROWS: usize = 8 * 1024;

/// Runs `spec` on this core and answers [`KvResponse::Flow`] (or `Uncertain`, `NotLeader`,
/// `Err`): the owning core's side of [`KvRequest::Flow`].
pub async fn serve(ctx: &CoreCtx, spec: Box<FlowSpec>) -> KvResponse {
    match run_flow(ctx, &spec, Source::Local).await {
        Ok(FlowEnd::Done(r)) => KvResponse::Flow(Box::new(r)),
        Ok(FlowEnd::Uncertain(u)) => KvResponse::Uncertain(u),
        Ok(FlowEnd::NotLeader(leader)) => KvResponse::NotLeader {
            leader,
            req: Some(Box::new(KvRequest::Flow {
                range: spec.spans[0].range,
                spec,
            })),
        },
        Err(e) => KvResponse::Err(e),
    }
}

/// Reads and processes the spans of `spec` from `source`.
pub async fn run_flow(ctx: &CoreCtx, spec: &FlowSpec, source: Source) -> Result<FlowEnd> {
    // Values are read and formatted in the gateway session's time zone.
    let zone = spec
        .eval
        .settings
        .get("timezone")
        .map_or("UTC", String::as_str);
    crate::sql::time_zone::scoped(zone, run_flow_in_zone(ctx, spec, source)).await
}

async fn run_flow_in_zone(ctx: &CoreCtx, spec: &FlowSpec, source: Source) -> Result<FlowEnd> {
    let started = Instant::now();
    let deadline = spec.time_left.map(|d| started + d);
    let cx = spec.eval_ctx();
    let mut result = FlowResult {
        node: ctx
            .shared
            .node_id
            .load(std::sync::atomic::Ordering::Relaxed),
        core: ctx.core,
        ..FlowResult::default()
    };
    let single = spec.spans.len() == 1;
    let top = if spec.agg.is_none() && !spec.order.is_empty() {
        spec.top
    } else {
        0
    };
    let paged = spec.agg.is_none() && spec.page_rows > 0 && top == 0;
    // A top-K flow's best rows so far, with their sort keys.
    let mut best: Vec<(Vec<Datum>, Vec<Datum>)> = Vec::new();
    let dirs: Vec<(bool, bool)> = spec.order.iter().map(|o| (o.desc, o.nulls_first)).collect();
    for (i, span) in spec.spans.iter().enumerate() {
        if paged && result.rows_out as usize >= spec.page_rows {
            result.resume = Some((i, span.start.clone()));
            break;
        }
        let mut rows = Vec::new();
        let mut grouper = Grouper::default();
        let mut cur = span.start.clone();
        // A small page (a LIMIT) starts with a small chunk.
        let mut chunk = if paged {
            FIRST_CHUNK.min(spec.page_rows.max(16))
        } else {
            FIRST_CHUNK
        };
        let mut served = true;
        loop {
            check_flow(ctx, deadline, spec.cancel.as_deref())?;
            let got = match source {
                Source::Local => {
                    let scan = KvRequest::Scan {
                        range: span.range,
                        start: cur.clone(),
                        end: span.end.clone(),
                        ts: spec.ts,
                        unc: spec.unc,
                        limit: chunk,
                        reverse: false,
                    };
                    match ctx.store.handle(scan).await {
                        KvResponse::Rows(r) => r,
                        KvResponse::Uncertain(u) => return Ok(FlowEnd::Uncertain(u)),
                        KvResponse::NotLeader { leader, .. } if single => {
                            return Ok(FlowEnd::NotLeader(leader))
                        }
                        KvResponse::NotLeader { .. } => {
                            served = false;
                            break;
                        }
                        KvResponse::Err(e) => return Err(e),
                        other => {
                            return Err(Error::internal(format!(
                                "a flow's scan answered {other:?}"
                            )))
                        }
                    }
                }
                Source::Routed => {
                    match ctx
                        .kv_scan_read(&cur, &span.end, spec.ts, spec.unc, chunk)
                        .await?
                    {
                        Ok(r) => r,
                        Err(u) => return Ok(FlowEnd::Uncertain(u)),
                    }
                }
            };
            let next = (got.len() >= chunk).then(|| {
                let mut k = got.last().map(|(k, _)| k.clone()).unwrap_or_default();
                k.push(0);
                k
            });
            result.rows_read += got.len() as u64;
            for (n, (_, v)) in got.into_iter().enumerate() {
                if n % 1024 == 1023 {
                    glommio::yield_if_needed().await;
                }
                let row = match &spec.keep {
                    Some(keep) => spec.table.decode_row_kept(&v, keep)?,
                    None => spec.table.decode_row(&v)?,
                };
                if let Some(f) = &spec.filter {
                    if !f.eval_bool(&row, &cx)? {
                        continue;
                    }
                }
                match &spec.agg {
                    Some(a) => grouper.add(&a.group_by, &a.aggs, row, &cx)?,
                    None if top > 0 => {
                        best.push((spec.order_keys(&row, &cx)?, row));
                        if best.len() >= 2 * top.max(512) {
                            keep_top(&mut best, &dirs, top);
                        }
                    }
                    None => rows.push(row),
                }
            }
            match next {
                Some(k) if k < span.end => {
                    if paged && result.rows_out as usize + rows.len() >= spec.page_rows {
                        result.resume = Some((i, k));
                        break;
                    }
                    cur = k;
                    chunk = (chunk * 4).min(MAX_CHUNK);
                }
                _ => break,
            }
        }
        if !served {
            result.unserved.push(i);
            continue;
        }
        let output = if spec.agg.is_some() {
            result.rows_out += grouper.groups.len() as u64;
            FlowOutput::Groups(grouper.groups)
        } else {
            result.rows_out += rows.len() as u64;
            if spec.sorted_runs() {
                // A sorted run: the gateway merges the runs (ORDER BY without LIMIT).
                let mut keyed = Vec::with_capacity(rows.len());
                for row in rows {
                    keyed.push((spec.order_keys(&row, &cx)?, row));
                }
                keyed.sort_by(|a, b| crate::sql::exec::cmp_sort_keys(&a.0, &b.0, &dirs));
                rows = keyed.into_iter().map(|(_, row)| row).collect();
            }
            FlowOutput::Rows(rows)
        };
        result.outputs.push((i, output));
        if result.resume.is_some() {
            break;
        }
    }
    if top > 0 {
        keep_top(&mut best, &dirs, top);
        result.rows_out = best.len() as u64;
        if let Some((_, first)) = result.outputs.first_mut() {
            *first = FlowOutput::Rows(best.into_iter().map(|(_, row)| row).collect());
        }
    }
    result.micros = started.elapsed().as_micros() as u64;
    Ok(FlowEnd::Done(result))
}

/// Keeps the first `top` of `rows` (sort keys, row) in the order `dirs`, sorted.
fn keep_top(rows: &mut Vec<(Vec<Datum>, Vec<Datum>)>, dirs: &[(bool, bool)], top: usize) {
    rows.sort_by(|a, b| crate::sql::exec::cmp_sort_keys(&a.0, &b.0, dirs));
    rows.truncate(top);
}

impl FlowSpec {
    fn eval_ctx(&self) -> EvalCtx {
        self.eval.eval_ctx()
    }

    /// The sort keys of `row` by [`Self::order`].
    fn order_keys(&self, row: &[Datum], cx: &EvalCtx) -> Result<Vec<Datum>> {
        self.order
            .iter()
            .map(|o| {
                let v = o.key.eval(row, cx)?;
                match o.array_ty {
                    Some(ty) => crate::sql::array::sort_datum(v, ty),
                    None => Ok(v),
                }
            })
            .collect()
    }

    /// A flow of rows with sort keys and no `top`: each span's answer is a sorted run.
    fn sorted_runs(&self) -> bool {
        self.agg.is_none() && self.top == 0 && !self.order.is_empty()
    }
}

fn check_flow(
    ctx: &CoreCtx,
    deadline: Option<Instant>,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<()> {
    if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
        return Err(Error::new(
            ErrorKind::QueryCanceled,
            "canceling statement due to user request",
        ));
    }
    if ctx
        .shared
        .shutdown
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Err(Error::new(
            ErrorKind::AdminShutdown,
            "terminating connection due to administrator command",
        ));
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(Error::new(
            ErrorKind::QueryCanceled,
            "canceling statement due to statement timeout",
        ));
    }
    Ok(())
}

/// How deeply `s` nests (a leaf: 1).
fn depth(s: &Scalar) -> usize {
    let max = |xs: &mut dyn Iterator<Item = &Scalar>| xs.map(depth).max().unwrap_or(0);
    1 + match s {
        Scalar::WindowRef(_)
        | Scalar::Const(_)
        | Scalar::Param(_)
        | Scalar::Column(_)
        | Scalar::AggRef(_) => 0,
        Scalar::Binary(_, a, b, _) | Scalar::IsDistinct(a, b, _) | Scalar::Like(a, b, _, _) => {
            depth(a).max(depth(b))
        }
        Scalar::Not(a)
        | Scalar::Neg(a)
        | Scalar::IsNull(a, _)
        | Scalar::IsBool(a, _, _)
        | Scalar::Cast(a, _) => depth(a),
        Scalar::InList(a, list, _) => depth(a).max(max(&mut list.iter())),
        Scalar::Between(a, b, c, _) => depth(a).max(depth(b)).max(depth(c)),
        Scalar::Case(op, whens, els) => op
            .as_deref()
            .map_or(0, depth)
            .max(max(&mut whens.iter().flat_map(|(w, t)| [w, t])))
            .max(els.as_deref().map_or(0, depth)),
        Scalar::Func(_, args, _) => max(&mut args.iter()),
    }
}

/// Whether an expression can be evaluated by a flow on another core or node: nothing that
/// reads or changes session state that does not travel, and not nested deeper than the
/// wire format takes ([`wire::MAX_DEPTH`]; the parser makes a long `OR` chain that deep).
pub fn travels(s: &Scalar) -> bool {
    if depth(s) > wire::MAX_DEPTH / 2 {
        return false;
    }
    let mut ok = true;
    s.walk(&mut |n| match n {
        Scalar::Func(name, _, _) => {
            ok &= !crate::sql::sequence::runs_ahead(name)
                && !matches!(
                    name.as_str(),
                    "unique_rowid" | "nextval" | "currval" | "setval" | "lastval"
                );
        }
        Scalar::AggRef(_) | Scalar::WindowRef(_) => ok = false,
        _ => {}
    });
    ok
}

// ---------------------------------------------------------------------------------------
// Wire encoding (flows sent to another node): a version byte, then the fields in order, in
// `sql::wire`'s format (little-endian, u32 lengths, presence bytes for options).

/// 2: specs carry `page_rows`, `order` and `top`, results `resume` (a node of version 1
/// refuses them as malformed rather than misreading them).
const WIRE_VERSION: u8 = 2;

/// The version of a spec whose flow answers sorted runs ([`FlowSpec::sorted_runs`]): the
/// encoding of version 2, which a node of version 2 refuses (it would answer unsorted
/// rows, and the gateway's merge would put them out of order).
const WIRE_VERSION_SORTED_RUNS: u8 = 3;

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

fn put_ts(out: &mut Vec<u8>, ts: Timestamp) {
    put_u64(out, ts.wall);
    put_u32(out, ts.logical);
}

fn get_ts(r: &mut Reader) -> Option<Timestamp> {
    Some(Timestamp::new(r.u64()?, r.u32()?))
}

fn get_vec(r: &mut Reader) -> Option<Vec<u8>> {
    r.bytes().map(<[u8]>::to_vec)
}

/// A count read from the wire, capped for pre-allocation.
fn get_count(r: &mut Reader) -> Option<(usize, usize)> {
    let n = r.u32()? as usize;
    Some((n, n.min(wire::MAX_PREALLOC)))
}

fn put_opt_scalar(out: &mut Vec<u8>, s: Option<&Scalar>) {
    match s {
        Some(s) => {
            out.push(1);
            wire::put_scalar(out, s);
        }
        None => out.push(0),
    }
}

fn get_opt<T>(r: &mut Reader, get: impl FnOnce(&mut Reader) -> Option<T>) -> Option<Option<T>> {
    match r.u8()? {
        0 => Some(None),
        1 => get(r).map(Some),
        _ => None,
    }
}

/// Appends the encoding of `spec`.
pub fn encode_spec(spec: &FlowSpec, out: &mut Vec<u8>) {
    out.push(if spec.sorted_runs() {
        WIRE_VERSION_SORTED_RUNS
    } else {
        WIRE_VERSION
    });
    put_bytes(out, &crate::sql::catalog::encode_table(&spec.table));
    put_opt_scalar(out, spec.filter.as_ref());
    match &spec.agg {
        Some(a) => {
            out.push(1);
            put_u32(out, a.group_by.len() as u32);
            for g in &a.group_by {
                wire::put_scalar(out, g);
            }
            put_u32(out, a.aggs.len() as u32);
            for c in &a.aggs {
                wire::put_agg_call(out, c);
            }
        }
        None => out.push(0),
    }
    let e = &spec.eval;
    wire::put_row(out, &e.params);
    put_u64(out, e.now_micros as u64);
    put_ts(out, e.txn_ts);
    put_str(out, &e.database);
    put_str(out, &e.user);
    put_u32(out, e.settings.len() as u32);
    for (k, v) in &e.settings {
        put_str(out, k);
        put_str(out, v);
    }
    match &e.current_schema {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
    put_u32(out, spec.spans.len() as u32);
    for s in &spec.spans {
        put_u64(out, s.range.0);
        put_bytes(out, &s.start);
        put_bytes(out, &s.end);
    }
    put_ts(out, spec.ts);
    put_ts(out, spec.unc);
    match spec.time_left {
        Some(d) => {
            out.push(1);
            put_u64(out, d.as_micros() as u64);
        }
        None => out.push(0),
    }
    match &spec.keep {
        Some(keep) => {
            out.push(1);
            put_u32(out, keep.len() as u32);
            out.extend(keep.iter().map(|k| *k as u8));
        }
        None => out.push(0),
    }
    put_u64(out, spec.page_rows as u64);
    put_u32(out, spec.order.len() as u32);
    for o in &spec.order {
        wire::put_scalar(out, &o.key);
        match o.array_ty {
            Some(ty) => {
                out.push(1);
                out.push(ty.tag());
            }
            None => out.push(0),
        }
        out.push(o.desc as u8);
        out.push(o.nulls_first as u8);
    }
    put_u64(out, spec.top as u64);
}

/// Decodes a spec encoded by [`encode_spec`].
pub fn decode_spec(b: &[u8]) -> Result<FlowSpec> {
    read_spec(&mut Reader(b)).ok_or_else(|| malformed("flow spec"))
}

fn malformed(what: &str) -> Error {
    Error::internal(format!("malformed DistSQL {what}"))
}

fn read_spec(r: &mut Reader) -> Option<FlowSpec> {
    let version = r.u8()?;
    if version != WIRE_VERSION && version != WIRE_VERSION_SORTED_RUNS {
        return None;
    }
    let table = crate::sql::catalog::decode_table(r.bytes()?).ok()?;
    let filter = get_opt(r, wire::get_scalar)?;
    let agg = get_opt(r, |r| {
        let (n, cap) = get_count(r)?;
        let mut group_by = Vec::with_capacity(cap);
        for _ in 0..n {
            group_by.push(wire::get_scalar(r)?);
        }
        let (n, cap) = get_count(r)?;
        let mut aggs = Vec::with_capacity(cap);
        for _ in 0..n {
            aggs.push(wire::get_agg_call(r)?);
        }
        Some(PartialAgg { group_by, aggs })
    })?;
    let params = wire::get_row(r)?;
    let now_micros = r.i64()?;
    let txn_ts = get_ts(r)?;
    let database = r.str()?;
    let user = r.str()?;
    let (n, _) = get_count(r)?;
    let mut settings = BTreeMap::new();
    for _ in 0..n {
        let k = r.str()?;
        settings.insert(k, r.str()?);
    }
    let current_schema = get_opt(r, |r| r.str())?;
    let (n, cap) = get_count(r)?;
    let mut spans = Vec::with_capacity(cap);
    for _ in 0..n {
        spans.push(FlowSpan {
            range: RangeId(r.u64()?),
            start: get_vec(r)?,
            end: get_vec(r)?,
        });
    }
    if spans.is_empty() {
        return None;
    }
    let ts = get_ts(r)?;
    let unc = get_ts(r)?;
    let time_left = get_opt(r, |r| r.u64().map(std::time::Duration::from_micros))?;
    let keep = get_opt(r, |r| {
        let (n, cap) = get_count(r)?;
        let mut keep = Vec::with_capacity(cap);
        for _ in 0..n {
            keep.push(match r.u8()? {
                0 => false,
                1 => true,
                _ => return None,
            });
        }
        Some(keep)
    })?;
    let page_rows = usize::try_from(r.u64()?).ok()?;
    let (n, cap) = get_count(r)?;
    let mut order = Vec::with_capacity(cap);
    for _ in 0..n {
        let key = wire::get_scalar(r)?;
        let array_ty = get_opt(r, |r| SqlType::from_tag(r.u8()?))?;
        let flag = |r: &mut Reader| match r.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        let desc = flag(r)?;
        let nulls_first = flag(r)?;
        order.push(FlowOrder {
            key,
            array_ty,
            desc,
            nulls_first,
        });
    }
    let top = usize::try_from(r.u64()?).ok()?;
    if !r.0.is_empty() {
        return None;
    }
    let spec = FlowSpec {
        table: Arc::new(table),
        filter,
        agg,
        eval: FlowEval {
            params,
            now_micros,
            txn_ts,
            database,
            user,
            settings,
            current_schema,
        },
        spans,
        ts,
        unc,
        time_left,
        keep,
        cancel: None,
        page_rows,
        order,
        top,
    };
    ((version == WIRE_VERSION_SORTED_RUNS) == spec.sorted_runs()).then_some(spec)
}

/// Appends the encoding of `result`.
pub fn encode_result(result: &FlowResult, out: &mut Vec<u8>) {
    out.push(WIRE_VERSION);
    put_u32(out, result.outputs.len() as u32);
    for (span, output) in &result.outputs {
        put_u32(out, *span as u32);
        match output {
            FlowOutput::Rows(rows) => {
                out.push(0);
                put_u32(out, rows.len() as u32);
                for row in rows {
                    wire::put_row(out, row);
                }
            }
            FlowOutput::Groups(groups) => {
                out.push(1);
                put_u32(out, groups.len() as u32);
                for (row, states) in groups {
                    wire::put_row(out, row);
                    put_u32(out, states.len() as u32);
                    for st in states {
                        put_u64(out, st.count as u64);
                        match &st.value {
                            Some(v) => {
                                out.push(1);
                                wire::put_datum(out, v);
                            }
                            None => out.push(0),
                        }
                        put_u32(out, st.items.len() as u32);
                        for (keys, v) in &st.items {
                            wire::put_row(out, keys);
                            wire::put_datum(out, v);
                        }
                    }
                }
            }
        }
    }
    put_u32(out, result.unserved.len() as u32);
    for i in &result.unserved {
        put_u32(out, *i as u32);
    }
    put_u64(out, result.rows_read);
    put_u64(out, result.rows_out);
    put_u64(out, result.node);
    put_u32(out, result.core as u32);
    put_u64(out, result.micros);
    match &result.resume {
        Some((span, key)) => {
            out.push(1);
            put_u32(out, *span as u32);
            put_bytes(out, key);
        }
        None => out.push(0),
    }
}

/// Decodes a result encoded by [`encode_result`].
pub fn decode_result(b: &[u8]) -> Result<FlowResult> {
    read_result(&mut Reader(b)).ok_or_else(|| malformed("flow result"))
}

fn read_result(r: &mut Reader) -> Option<FlowResult> {
    if r.u8()? != WIRE_VERSION {
        return None;
    }
    let (n, cap) = get_count(r)?;
    let mut outputs = Vec::with_capacity(cap);
    for _ in 0..n {
        let span = r.u32()? as usize;
        let output = match r.u8()? {
            0 => {
                let (n, cap) = get_count(r)?;
                let mut rows = Vec::with_capacity(cap);
                for _ in 0..n {
                    rows.push(wire::get_row(r)?);
                }
                FlowOutput::Rows(rows)
            }
            1 => {
                let (n, cap) = get_count(r)?;
                let mut groups = Vec::with_capacity(cap);
                for _ in 0..n {
                    let row = wire::get_row(r)?;
                    let (m, cap) = get_count(r)?;
                    let mut states = Vec::with_capacity(cap);
                    for _ in 0..m {
                        let count = r.i64()?;
                        let value = get_opt(r, wire::get_datum)?;
                        let (k, cap) = get_count(r)?;
                        let mut items = Vec::with_capacity(cap);
                        for _ in 0..k {
                            items.push((wire::get_row(r)?, wire::get_datum(r)?));
                        }
                        states.push(AggState::partial(count, value, items));
                    }
                    groups.push((row, states));
                }
                FlowOutput::Groups(groups)
            }
            _ => return None,
        };
        outputs.push((span, output));
    }
    let (n, cap) = get_count(r)?;
    let mut unserved = Vec::with_capacity(cap);
    for _ in 0..n {
        unserved.push(r.u32()? as usize);
    }
    let mut result = FlowResult {
        outputs,
        unserved,
        rows_read: r.u64()?,
        rows_out: r.u64()?,
        node: r.u64()?,
        core: r.u32()? as usize,
        micros: r.u64()?,
        resume: None,
    };
    result.resume = get_opt(r, |r| Some((r.u32()? as usize, get_vec(r)?)))?;
    r.0.is_empty().then_some(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::expr::{AggFunc, BinOp};
    use crate::sql::types::SqlType;

    #[test]
    fn deep_or_chains_and_sequence_calls_stay_on_the_gateway() {
        let eq = |i: i64| {
            Scalar::Binary(
                BinOp::Eq,
                Box::new(Scalar::Column(0)),
                Box::new(Scalar::Const(Datum::Int(i))),
                SqlType::Bool,
            )
        };
        let mut chain = eq(0);
        for i in 1..100 {
            chain = Scalar::Binary(BinOp::Or, Box::new(chain), Box::new(eq(i)), SqlType::Bool);
        }
        assert_eq!(depth(&chain), 101);
        assert!(travels(&chain));
        for i in 100..1000 {
            chain = Scalar::Binary(BinOp::Or, Box::new(chain), Box::new(eq(i)), SqlType::Bool);
        }
        assert!(!travels(&chain));
        let next = Scalar::Func("nextval".into(), vec![], SqlType::Int8);
        assert!(!travels(&next));
        let rowid = Scalar::Func("unique_rowid".into(), vec![], SqlType::Int8);
        assert!(!travels(&rowid));
        let list = Scalar::InList(
            Box::new(Scalar::Column(0)),
            (0..5000).map(|i| Scalar::Const(Datum::Int(i))).collect(),
            false,
        );
        assert!(travels(&list));
    }

    fn spec() -> FlowSpec {
        use crate::sql::catalog::{decode_table, encode_table, ColumnDesc};
        let columns = vec![
            ColumnDesc::new("k", SqlType::Int8),
            ColumnDesc::new("v", SqlType::Text),
        ];
        let t = TableDesc {
            id: 104,
            db_id: 1,
            pk: vec![0],
            pk_name: "t_pkey".into(),
            ..TableDesc::new("t", columns)
        };
        // Through the descriptor codec once: what the other node decodes is compared.
        let table = decode_table(&encode_table(&t)).unwrap();
        FlowSpec {
            table: Arc::new(table),
            filter: Some(Scalar::Binary(
                BinOp::Gt,
                Box::new(Scalar::Column(0)),
                Box::new(Scalar::Param(0)),
                SqlType::Bool,
            )),
            agg: Some(PartialAgg {
                group_by: vec![Scalar::Column(1)],
                aggs: vec![AggCall {
                    func: AggFunc::Sum,
                    arg: Some(Scalar::Column(0)),
                    distinct: false,
                    ty: SqlType::Numeric,
                    arg_ty: SqlType::Int8,
                    order: Vec::new(),
                    filter: None,
                    delimiter: None,
                }],
            }),
            eval: FlowEval {
                params: vec![Datum::Int(7)],
                now_micros: -5,
                txn_ts: Timestamp::new(9, 2),
                database: "db".into(),
                user: "u".into(),
                settings: [("timezone".to_string(), "UTC".to_string())].into(),
                current_schema: Some("public".into()),
            },
            spans: vec![FlowSpan {
                range: RangeId(66),
                start: vec![1, 2],
                end: vec![3],
            }],
            ts: Timestamp::new(100, 1),
            unc: Timestamp::new(200, 0),
            time_left: Some(std::time::Duration::from_millis(1500)),
            keep: Some(vec![true, false]),
            cancel: None,
            page_rows: 100,
            order: vec![FlowOrder {
                key: Scalar::Column(1),
                array_ty: Some(SqlType::Int8Array),
                desc: true,
                nulls_first: false,
            }],
            top: 10,
        }
    }

    #[test]
    fn a_spec_and_a_result_read_back_and_every_prefix_is_refused() {
        let s = spec();
        let mut b = Vec::new();
        encode_spec(&s, &mut b);
        let back = decode_spec(&b).unwrap();
        assert_eq!(format!("{back:?}"), format!("{s:?}"));
        for n in 0..b.len() {
            assert!(decode_spec(&b[..n]).is_err(), "prefix {n}");
        }
        // A flow of sorted runs (ORDER BY without LIMIT) travels as version 3, which a
        // node of version 2 refuses; a version byte that disagrees with the spec is refused.
        let mut runs = spec();
        runs.agg = None;
        runs.top = 0;
        let mut b = Vec::new();
        encode_spec(&runs, &mut b);
        assert_eq!(b[0], WIRE_VERSION_SORTED_RUNS);
        let back = decode_spec(&b).unwrap();
        assert_eq!(format!("{back:?}"), format!("{runs:?}"));
        b[0] = WIRE_VERSION;
        assert!(decode_spec(&b).is_err());
        let result = FlowResult {
            outputs: vec![
                (0, FlowOutput::Rows(vec![vec![Datum::Int(1), Datum::Null]])),
                (
                    2,
                    FlowOutput::Groups(vec![(
                        vec![Datum::Text("a".into())],
                        vec![AggState::partial(
                            3,
                            Some(Datum::Int(9)),
                            vec![(vec![Datum::Bool(true)], Datum::Float(0.5))],
                        )],
                    )]),
                ),
            ],
            unserved: vec![1],
            rows_read: 10,
            rows_out: 2,
            node: 3,
            core: 1,
            micros: 77,
            resume: Some((2, vec![5, 0])),
        };
        let mut b = Vec::new();
        encode_result(&result, &mut b);
        let back = decode_result(&b).unwrap();
        assert_eq!(format!("{back:?}"), format!("{result:?}"));
        for n in 0..b.len() {
            assert!(decode_result(&b[..n]).is_err(), "prefix {n}");
        }
    }
}
