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
//! - A flow does not see the session's cancel flag: a cancelled statement stops at the
//!   gateway once the flows it waits for answer (a flow checks the statement deadline and
//!   node shutdown between chunks).
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
use crate::sql::types::Datum;

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
    for (i, span) in spec.spans.iter().enumerate() {
        let mut rows = Vec::new();
        let mut grouper = Grouper::default();
        let mut cur = span.start.clone();
        let mut chunk = FIRST_CHUNK;
        let mut served = true;
        loop {
            check_flow(ctx, deadline)?;
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
                let row = spec.table.decode_row(&v)?;
                if let Some(f) = &spec.filter {
                    if !f.eval_bool(&row, &cx)? {
                        continue;
                    }
                }
                match &spec.agg {
                    Some(a) => grouper.add(&a.group_by, &a.aggs, row, &cx)?,
                    None => rows.push(row),
                }
            }
            match next {
                Some(k) if k < span.end => {
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
            FlowOutput::Rows(rows)
        };
        result.outputs.push((i, output));
    }
    result.micros = started.elapsed().as_micros() as u64;
    Ok(FlowEnd::Done(result))
}

impl FlowSpec {
    fn eval_ctx(&self) -> EvalCtx {
        self.eval.eval_ctx()
    }
}

fn check_flow(ctx: &CoreCtx, deadline: Option<Instant>) -> Result<()> {
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

/// Whether an expression can be evaluated by a flow on another core: nothing that reads
/// or changes session state that does not travel.
pub fn travels(s: &Scalar) -> bool {
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
// Wire encoding (flows sent to another node)

/// Appends the encoding of `spec`.
pub fn encode_spec(_spec: &FlowSpec, _out: &mut Vec<u8>) {}

/// Decodes a spec encoded by [`encode_spec`].
pub fn decode_spec(_b: &[u8]) -> Result<FlowSpec> {
    Err(Error::internal("DistSQL flows do not cross nodes yet"))
}

/// Appends the encoding of `result`.
pub fn encode_result(_result: &FlowResult, _out: &mut Vec<u8>) {}

/// Decodes a result encoded by [`encode_result`].
pub fn decode_result(_b: &[u8]) -> Result<FlowResult> {
    Err(Error::internal("DistSQL flows do not cross nodes yet"))
}
