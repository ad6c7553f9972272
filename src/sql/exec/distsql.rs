//! The gateway's side of DistSQL ([`crate::sql::distsql`] has the flows and the essay):
//! which queries distribute, how the scan is cut into flows per leaseholder core, running
//! them in parallel and merging their answers.
//!
//! `SET distsql = off | auto | on` (session; CockroachDB's variable): `auto` (the default)
//! distributes a scan that reaches ranges on some other core or node; `on` distributes every
//! eligible scan, even one on the gateway's own core alone (a flow there runs on the
//! gateway's core); `off` reads every row through the gateway (the comparison point of
//! `bench/distsql`).

use std::sync::Arc;

use super::*;
use crate::kv::keys::core_for_range;
use crate::kv::{KvRequest, KvResponse};
use crate::sql::distsql::{
    self, FlowEnd, FlowEval, FlowOrder, FlowOutput, FlowResult, FlowSpan, FlowSpec, PartialAgg,
    Source,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum DistMode {
    Off,
    Auto,
    On,
}

/// The session variable and its accepted values.
pub const DISTSQL_VAR: &str = "distsql";

/// Parses a `SET distsql` value: the stored spelling, or None when invalid.
pub fn distsql_setting(v: &str) -> Option<&'static str> {
    match v.to_lowercase().as_str() {
        "off" | "false" => Some("off"),
        "auto" | "default" => Some("auto"),
        "on" | "true" | "always" => Some("on"),
        _ => None,
    }
}

fn bad_answer(what: &str) -> Error {
    Error::internal(format!("a DistSQL flow answered a malformed {what}"))
}

/// Checks a flow's answer for span `index` of `spans` against what was asked: rows, or
/// groups with one state per aggregate (a peer of another version could answer otherwise).
fn check_output(
    out: &FlowOutput,
    agg: Option<&PartialAgg>,
    index: usize,
    spans: usize,
) -> Result<()> {
    if index >= spans {
        return Err(bad_answer("span"));
    }
    match (out, agg) {
        (FlowOutput::Rows(_), None) => Ok(()),
        (FlowOutput::Groups(groups), Some(a))
            if groups
                .iter()
                .all(|(_, states)| states.len() == a.aggs.len()) =>
        {
            Ok(())
        }
        _ => Err(bad_answer("output")),
    }
}

/// What every flow of a scan computes: the filter, the partial aggregation, the columns it
/// decodes, and for a LIMIT in key order the rows wanted (LIMIT + OFFSET).
pub(super) struct FlowWork {
    filter: Option<Scalar>,
    agg: Option<PartialAgg>,
    keep: Option<Vec<bool>>,
    want: Option<usize>,
    /// `ORDER BY … LIMIT` not in key order: each flow answers its first `top` rows in
    /// this order.
    order: Vec<FlowOrder>,
    top: usize,
}

/// Where one flow runs and what it reads.
pub(super) struct FlowPlan {
    pub(super) node: u64,
    pub(super) core: usize,
    /// (index among all the scan's spans, span).
    pub(super) spans: Vec<(usize, FlowSpan)>,
}

/// What one flow did, for `EXPLAIN ANALYZE (DISTSQL)`.
#[derive(Clone, Debug)]
pub(super) struct FlowStat {
    pub(super) node: u64,
    pub(super) core: usize,
    pub(super) spans: usize,
    pub(super) rows_read: u64,
    pub(super) rows_out: u64,
    pub(super) micros: u64,
    pub(super) at_gateway: bool,
}

impl Exec<'_> {
    pub(super) fn dist_mode(&self) -> DistMode {
        match self.cx.settings.get(DISTSQL_VAR).map(String::as_str) {
            Some("off") => DistMode::Off,
            Some("on") => DistMode::On,
            _ => DistMode::Auto,
        }
    }

    /// The primary key span `plan` scans, when it is a scan DistSQL can run: a full scan or
    /// a primary key span of one table, no row locks, no correlated subqueries, and only
    /// expressions that travel.
    pub(super) fn dist_span(
        &self,
        plan: &SelectPlan,
        t: &TableDesc,
        access: &Access,
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        if plan.lock.is_some()
            || !plan.filter.as_ref().is_none_or(distsql::travels)
            || !self.correlated_in_filter(plan).is_empty()
        {
            return None;
        }
        match access {
            Access::Full => {
                let p = index_prefix(t.id, t.primary_index);
                let e = prefix_end(&p);
                Some((p, e))
            }
            Access::Span(s, e) => Some((s.clone(), e.clone())),
            _ => None,
        }
    }

    /// `ORDER BY … LIMIT n [OFFSET m]` over the rows of one table, not in key order: the
    /// flows' sort keys (each an expression over the table row that travels) and `n + m`,
    /// the rows each flow answers at most; None when the plan groups, is DISTINCT, has
    /// window or set-returning functions, or no LIMIT.
    pub(super) fn top_k(&self, plan: &SelectPlan) -> Result<Option<(Vec<FlowOrder>, usize)>> {
        let Some(order) = self.flow_order(plan) else {
            return Ok(None);
        };
        Ok(self.limit_plus_offset(plan)?.map(|n| (order, n)))
    }

    /// The flows' sort keys for `plan`'s ORDER BY (each an expression over the table row
    /// that travels); None when there is no ORDER BY, or the plan groups, is DISTINCT, has
    /// window or set-returning functions, or a key that cannot travel.
    pub(super) fn flow_order(&self, plan: &SelectPlan) -> Option<Vec<FlowOrder>> {
        if plan.order.is_empty()
            || plan.grouped
            || plan.distinct
            || plan.distinct_on > 0
            || !plan.windows.is_empty()
            || !plan.srfs.is_empty()
            || !plan.srf_exprs.is_empty()
        {
            return None;
        }
        let mut order = Vec::with_capacity(plan.order.len());
        for (key, desc, nulls_first) in &plan.order {
            let (key, array_ty) = match key {
                SortKey::Expr(e) => (e.clone(), None),
                SortKey::Output(o) => match plan.outputs.get(*o) {
                    Some(e) => (e.clone(), plan.columns.get(*o).map(|c| c.ty)),
                    None => return None,
                },
            };
            if !distsql::travels(&key)
                || super::join_access::volatile(&key)
                || !self.correlated_in(Some(&key)).is_empty()
            {
                return None;
            }
            order.push(FlowOrder {
                key,
                array_ty,
                desc: *desc,
                nulls_first: *nulls_first,
            });
        }
        Some(order)
    }

    /// The partial aggregation flows can do for `plan`: grouped, no window functions, and
    /// every aggregate mergeable with expressions that travel.
    pub(super) fn partial_agg(plan: &SelectPlan) -> Option<PartialAgg> {
        let travels = |s: &Option<Scalar>| s.as_ref().is_none_or(distsql::travels);
        // A volatile grouping key (`GROUP BY random() > 0.5`) is computed once per row,
        // where the row is: partial groups could not be matched up again.
        let ok = plan.grouped
            && plan.windows.is_empty()
            && plan
                .group_by
                .iter()
                .all(|g| distsql::travels(g) && !super::join_access::volatile(g))
            && plan.aggs.iter().all(|a| {
                mergeable(a)
                    && travels(&a.arg)
                    && travels(&a.filter)
                    && travels(&a.delimiter)
                    && a.order.iter().all(|(k, _, _)| distsql::travels(k))
            });
        ok.then(|| PartialAgg {
            group_by: plan.group_by.clone(),
            aggs: plan.aggs.clone(),
        })
    }

    /// The columns of `plan`'s table that anything after the scan reads, when that is
    /// known exactly (no window functions, set-returning functions or correlated
    /// subqueries, which read rows in their own ways); flows decode only those.
    pub(super) fn kept_columns(&self, plan: &SelectPlan, width: usize) -> Option<Vec<bool>> {
        if !plan.windows.is_empty() || !plan.srfs.is_empty() || !self.correlated.is_empty() {
            return None;
        }
        let mut keep = vec![false; width];
        let mut mark = |s: &Scalar| {
            s.walk(&mut |n| {
                if let Scalar::Column(c) = n {
                    if let Some(k) = keep.get_mut(*c) {
                        *k = true;
                    }
                }
            })
        };
        plan.filter.iter().for_each(&mut mark);
        plan.having.iter().for_each(&mut mark);
        plan.group_by.iter().for_each(&mut mark);
        plan.outputs.iter().for_each(&mut mark);
        for (k, _, _) in &plan.order {
            if let SortKey::Expr(e) = k {
                mark(e);
            }
        }
        for a in &plan.aggs {
            a.arg.iter().for_each(&mut mark);
            a.filter.iter().for_each(&mut mark);
            a.delimiter.iter().for_each(&mut mark);
            a.order.iter().for_each(|(k, _, _)| mark(k));
        }
        Some(keep)
    }

    /// Cuts `[start, end)` at range boundaries and groups the pieces by the core that leads
    /// them (in order of first appearance).
    pub(super) async fn plan_flows(&self, start: &[u8], end: &[u8]) -> Result<Vec<FlowPlan>> {
        self.ctx.fresh_ranges().await?;
        let me = self.ctx.shared.node_id.load(Ordering::Relaxed);
        let ncores = self.ctx.shared.ncores;
        let mut flows: Vec<FlowPlan> = Vec::new();
        let mut cur = start.to_vec();
        let mut index = 0;
        while cur.as_slice() < end {
            let (range, range_end) = self.ctx.ranges.borrow().locate(&cur);
            let piece_end = if !range_end.is_empty() && range_end.as_slice() < end {
                range_end
            } else {
                end.to_vec()
            };
            // Where the gateway last found the range's leader (this node when unknown).
            let leader = self.ctx.leaders.borrow().get(&range).copied();
            let (node, core) = match leader {
                Some(n) if n != 0 && n != me => {
                    let cores = self
                        .ctx
                        .shared
                        .cluster()
                        .and_then(|c| c.member(n).map(|m| m.cores))
                        .unwrap_or(ncores);
                    (n, core_for_range(range, cores))
                }
                _ => (me, core_for_range(range, ncores)),
            };
            let span = FlowSpan {
                range,
                start: cur.clone(),
                end: piece_end.clone(),
            };
            match flows.iter_mut().find(|f| f.node == node && f.core == core) {
                Some(f) => f.spans.push((index, span)),
                None => flows.push(FlowPlan {
                    node,
                    core,
                    spans: vec![(index, span)],
                }),
            }
            index += 1;
            cur = piece_end;
        }
        Ok(flows)
    }

    /// Runs `plan`'s scan of `t` as DistSQL flows and finishes the plan over their answers;
    /// None when the query does not distribute (then the caller reads through the gateway).
    pub(super) async fn try_distsql(
        &mut self,
        plan: &SelectPlan,
        t: &TableDesc,
        access: &Access,
    ) -> Result<Option<Vec<Vec<Datum>>>> {
        let mode = self.dist_mode();
        if mode == DistMode::Off {
            return Ok(None);
        }
        let Some((start, end)) = self.dist_span(plan, t, access) else {
            return Ok(None);
        };
        let Some(planned) = self.flows_for(mode, &start, &end).await? else {
            return Ok(None);
        };
        let partial = Self::partial_agg(plan);
        let grouped = partial.is_some();
        let keep = self.kept_columns(plan, t.columns.len());
        let want = match partial {
            Some(_) => None,
            None => self.pk_order_limit(plan, t)?,
        };
        // Rows in key order need no sort; otherwise a LIMIT makes each flow answer its
        // top rows, and without one each flow answers sorted runs the gateway merges.
        let in_key_order = partial.is_none() && Self::in_pk_order(plan, t);
        let (order, top) = match (&partial, want) {
            (None, None) if !in_key_order => match self.flow_order(plan) {
                Some(order) => (order, self.limit_plus_offset(plan)?.unwrap_or(0)),
                None => Default::default(),
            },
            _ => Default::default(),
        };
        let runs = top == 0 && !order.is_empty();
        let work = FlowWork {
            filter: plan.filter.clone(),
            agg: partial,
            keep,
            want,
            order,
            top,
        };
        let started = self.op_start();
        let top = work.top;
        let (outputs, pieces) = self.run_flows(t, work, planned, (&start, &end)).await?;
        if started.is_some() {
            let out_rows: usize = outputs
                .iter()
                .map(|o| match o {
                    FlowOutput::Rows(r) => r.len(),
                    FlowOutput::Groups(g) => g.len(),
                })
                .sum();
            let place = Self::flows_place(&self.flow_stats);
            let stages = || {
                let mut st = format!("scan {}", t.name);
                if plan.filter.is_some() {
                    st.push_str(" → filter");
                }
                if grouped {
                    st.push_str(" → partial aggregation");
                } else if top > 0 {
                    st.push_str(&format!(" → top {top}"));
                } else if runs {
                    st.push_str(" → sort");
                }
                st
            };
            self.op_done_at(started, stages, out_rows, place);
        }
        if grouped {
            let mut grouper = Grouper::default();
            for out in outputs {
                if let FlowOutput::Groups(g) = out {
                    grouper.merge(&plan.group_by, &plan.aggs, g, &self.cx)?;
                }
                self.pause().await?;
            }
            return self.finish_grouped(plan, grouper.groups).await.map(Some);
        }
        let mut rows = Vec::new();
        for out in outputs {
            if let FlowOutput::Rows(r) = out {
                rows.extend(r);
            }
        }
        let presorted = if runs {
            Presorted::Runs(pieces.into_iter().flatten().collect())
        } else if in_key_order {
            Presorted::InOrder
        } else {
            Presorted::No
        };
        self.finish_plan_sorted(plan, rows, presorted)
            .await
            .map(Some)
    }

    /// Whether a scan of `[start, end)` distributes in `mode`: None when it does not;
    /// else the flows already planned (`auto` plans them to decide), if any.
    async fn flows_for(
        &self,
        mode: DistMode,
        start: &[u8],
        end: &[u8],
    ) -> Result<Option<Option<Vec<FlowPlan>>>> {
        if mode == DistMode::Off {
            return Ok(None);
        }
        // Own uncommitted writes in the span: only the gateway overlays them.
        if self
            .txn
            .writes
            .range(start.to_vec()..end.to_vec())
            .next()
            .is_some()
        {
            return Ok(None);
        }
        if mode == DistMode::On {
            return Ok(Some(None));
        }
        // PERF: one core and no cluster: every range is on the gateway's core.
        if self.ctx.shared.ncores == 1 && self.ctx.shared.cluster().is_none() {
            return Ok(None);
        }
        let flows = self.plan_flows(start, end).await?;
        let me = self.ctx.shared.node_id.load(Ordering::Relaxed);
        if flows
            .iter()
            .all(|f| f.node == me && f.core == self.ctx.core)
        {
            return Ok(None);
        }
        Ok(Some(Some(flows)))
    }

    /// The rows of a join input's scan of `t` that pass `pushed` (the WHERE conjuncts that
    /// read only this input), read by flows where the ranges are; None when the scan does
    /// not distribute (an index access, expressions that do not travel, correlated
    /// subqueries, `distsql = off`, or every range on the gateway's core).
    pub(super) async fn dist_join_input(
        &mut self,
        t: &TableDesc,
        pushed: Option<&Scalar>,
        access: &Access,
    ) -> Result<Option<Vec<Vec<Datum>>>> {
        if !pushed.is_none_or(distsql::travels) || !self.correlated_in(pushed).is_empty() {
            return Ok(None);
        }
        let (start, end) = match access {
            Access::Full => {
                let p = index_prefix(t.id, t.primary_index);
                let e = prefix_end(&p);
                (p, e)
            }
            Access::Span(s, e) => (s.clone(), e.clone()),
            _ => return Ok(None),
        };
        let Some(planned) = self.flows_for(self.dist_mode(), &start, &end).await? else {
            return Ok(None);
        };
        let work = FlowWork {
            filter: pushed.cloned(),
            agg: None,
            keep: None,
            want: None,
            order: Vec::new(),
            top: 0,
        };
        let started = self.op_start();
        let before = std::mem::take(&mut self.flow_stats);
        let (outputs, _) = self.run_flows(t, work, planned, (&start, &end)).await?;
        // The flows of every input, for EXPLAIN ANALYZE.
        let mine = std::mem::replace(&mut self.flow_stats, before);
        let mut rows = Vec::new();
        for out in outputs {
            if let FlowOutput::Rows(r) = out {
                rows.extend(r);
            }
        }
        if started.is_some() {
            let filtered = if pushed.is_some() { " → filter" } else { "" };
            self.op_done_at(
                started,
                || format!("scan {}{filtered}", t.name),
                rows.len(),
                Self::flows_place(&mine),
            );
        }
        self.flow_stats.extend(mine);
        Ok(Some(rows))
    }

    /// Runs flows over `[start, end)` of `t`'s primary index at the transaction's read
    /// timestamp and answers their outputs in key order, each with the lengths of the
    /// pieces it was answered in (each a sorted run when the flows answer sorted runs);
    /// records the span as read.
    ///
    /// Flows of rows answer in pages ([`distsql::PAGE_ROWS`]): a flow that stopped early
    /// is asked again from where it stopped, all such flows at once, round after round.
    /// With `want` (a LIMIT in key order: its count plus OFFSET), the pages are that small
    /// and the rounds stop once the spans answered completely, in key order, hold `want`
    /// rows: the spans after those are not read (they answer no rows).
    async fn run_flows(
        &mut self,
        t: &TableDesc,
        work: FlowWork,
        mut planned: Option<Vec<FlowPlan>>,
        (start, end): (&[u8], &[u8]),
    ) -> Result<(Vec<FlowOutput>, Vec<Vec<usize>>)> {
        let FlowWork {
            filter,
            agg,
            keep,
            want,
            order,
            top,
        } = work;
        let table = Arc::new(t.clone());
        let mut unc = self.txn.uncertainty_limit();
        let mut mismatches = 0;
        let mut uncertain = 0;
        let page_rows = match (&agg, want) {
            (Some(_), _) => 0,
            (None, Some(n)) => n.clamp(1, distsql::PAGE_ROWS),
            (None, None) => distsql::PAGE_ROWS,
        };
        loop {
            self.check_cancel()?;
            // The caller's plan first; a retry plans again (ranges or leaders moved).
            let mut flows = match planned.take() {
                Some(f) => f,
                None => self.plan_flows(start, end).await?,
            };
            let nspans: usize = flows.iter().map(|f| f.spans.len()).sum();
            let nodes: std::collections::BTreeSet<u64> = flows.iter().map(|f| f.node).collect();
            let base = FlowSpec {
                table: table.clone(),
                filter: filter.clone(),
                agg: agg.clone(),
                eval: FlowEval::of(&self.cx),
                spans: Vec::new(),
                ts: self.txn.read_ts(),
                unc,
                time_left: self
                    .deadline
                    .map(|d| d.saturating_duration_since(std::time::Instant::now())),
                keep: keep.clone(),
                cancel: Some(self.cancel.clone()),
                page_rows,
                order: order.clone(),
                top,
            };
            let mut slots: Vec<Option<FlowOutput>> = (0..nspans).map(|_| None).collect();
            let mut pieces: Vec<Vec<usize>> = vec![Vec::new(); nspans];
            let mut leftover = Vec::new();
            let mut stats: Vec<FlowStat> = Vec::new();
            let mut again: Option<Result<Uncertain>> = None;
            // Spans of the flows still to ask (a resumed span and those after it).
            let mut busy = vec![false; nspans];
            while !flows.is_empty() && again.is_none() {
                let answers = self.send_flows(&base, &flows).await;
                let mut next = Vec::new();
                for (f, answer) in flows.iter().zip(answers) {
                    for (gi, _) in &f.spans {
                        busy[*gi] = false;
                    }
                    match answer {
                        Ok(FlowEnd::Done(r)) => {
                            for (i, out) in r.outputs {
                                check_output(&out, agg.as_ref(), i, f.spans.len())?;
                                let gi = f.spans[i].0;
                                put_output(&mut slots[gi], &mut pieces[gi], out);
                            }
                            for i in r.unserved {
                                let span = f.spans.get(i).ok_or_else(|| bad_answer("span"))?;
                                leftover.push(span.clone());
                            }
                            add_stat(
                                &mut stats,
                                FlowStat {
                                    node: r.node,
                                    core: r.core,
                                    spans: f.spans.len(),
                                    rows_read: r.rows_read,
                                    rows_out: r.rows_out,
                                    micros: r.micros,
                                    at_gateway: false,
                                },
                            );
                            if let Some((i, key)) = r.resume {
                                let rest = resumed(f, i, key)?;
                                for (gi, _) in &rest.spans {
                                    busy[*gi] = true;
                                }
                                next.push(rest);
                            }
                        }
                        Ok(FlowEnd::Uncertain(u)) => {
                            again.get_or_insert(Ok(u));
                        }
                        Ok(FlowEnd::NotLeader(_)) => {
                            leftover.extend(f.spans.iter().cloned());
                        }
                        Err(e) if e.kind == ErrorKind::RangeKeyMismatch => {
                            if !matches!(again, Some(Ok(_))) {
                                again = Some(Err(e));
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                flows = next;
                if let Some(n) = want {
                    if let Some(done) = key_order_prefix(&slots, &busy, &leftover, n) {
                        // Enough rows in key order: nothing after span `done` is needed.
                        flows.clear();
                        leftover.retain(|(gi, _)| *gi <= done);
                        for slot in slots.iter_mut().skip(done + 1) {
                            slot.get_or_insert(FlowOutput::Rows(Vec::new()));
                        }
                    }
                }
                self.pause().await?;
            }
            if again.is_none() && !leftover.is_empty() {
                let mut spec = base.clone();
                spec.page_rows = 0;
                spec.spans = leftover.iter().map(|(_, s)| s.clone()).collect();
                match distsql::run_flow(self.ctx, &spec, Source::Routed).await {
                    Ok(FlowEnd::Done(r)) => {
                        for (i, out) in r.outputs {
                            check_output(&out, agg.as_ref(), i, leftover.len())?;
                            let gi = leftover[i].0;
                            put_output(&mut slots[gi], &mut pieces[gi], out);
                        }
                        stats.push(FlowStat {
                            node: r.node,
                            core: r.core,
                            spans: leftover.len(),
                            rows_read: r.rows_read,
                            rows_out: r.rows_out,
                            micros: r.micros,
                            at_gateway: true,
                        });
                    }
                    Ok(FlowEnd::Uncertain(u)) => again = Some(Ok(u)),
                    Ok(FlowEnd::NotLeader(_)) => {
                        return Err(Error::internal("a routed flow answered NotLeader"))
                    }
                    Err(e) if e.kind == ErrorKind::RangeKeyMismatch => again = Some(Err(e)),
                    Err(e) => return Err(e),
                }
            }
            match again {
                None => {}
                Some(Ok(u)) => {
                    uncertain += 1;
                    if uncertain > UNCERTAINTY_RETRIES {
                        return Err(uncertainty_exhausted());
                    }
                    // Flows run on several nodes: no one node's clock bounds them all.
                    let one_node = nodes.len() <= 1 && leftover.is_empty();
                    unc = self.read_uncertain(u, unc, one_node).await?;
                    continue;
                }
                Some(Err(e)) => {
                    mismatches += 1;
                    if mismatches > crate::node::MISMATCH_RETRIES {
                        return Err(e);
                    }
                    self.ctx.reroute_ranges().await?;
                    continue;
                }
            }
            let outputs: Option<Vec<FlowOutput>> = slots.into_iter().collect();
            let Some(outputs) = outputs else {
                return Err(Error::internal("a DistSQL span got no answer"));
            };
            self.txn.read_span(start, end);
            self.note_read();
            self.count_rows_read(stats.iter().map(|s| s.rows_read).sum());
            self.flow_stats = stats;
            return Ok((outputs, pieces));
        }
    }

    /// Sends one round of flows, `base` with each one's spans, in parallel; answers in the
    /// order of `flows`.
    async fn send_flows(&self, base: &FlowSpec, flows: &[FlowPlan]) -> Vec<Result<FlowEnd>> {
        let ctx = self.ctx;
        let runs = flows.iter().map(|f| {
            let mut spec = base.clone();
            spec.spans = f.spans.iter().map(|(_, s)| s.clone()).collect();
            async move {
                let n = spec.spans.len();
                let req = KvRequest::Flow {
                    range: spec.spans[0].range,
                    spec: Box::new(spec),
                };
                // To the first span's leader (forwarded to its node if need be). A flow the
                // transport could not carry (a dead or cut-off node, an answer too big or
                // too slow) is read by the gateway instead.
                let answer = match ctx.send(req).await {
                    Err(e) if e.is_retryable() => {
                        return Ok(FlowEnd::Done(FlowResult {
                            unserved: (0..n).collect(),
                            ..FlowResult::default()
                        }))
                    }
                    other => other?,
                };
                match answer {
                    KvResponse::Flow(r) => Ok(FlowEnd::Done(*r)),
                    KvResponse::Uncertain(u) => Ok(FlowEnd::Uncertain(u)),
                    // Nobody led it (the sender gave up): the gateway reads all of it.
                    KvResponse::NotLeader { .. } => Ok(FlowEnd::Done(FlowResult {
                        unserved: (0..n).collect(),
                        ..FlowResult::default()
                    })),
                    other => Err(Error::internal(format!("a flow answered {other:?}"))),
                }
            }
        });
        // PERF: flows for other cores and nodes are polled first, so they are on their way
        // before the gateway's own flow runs here (polled first, it would run to its end
        // before the others were even sent: the flows ran one after the other).
        let me = ctx.shared.node_id.load(Ordering::Relaxed);
        let mut runs: Vec<(usize, _)> = runs.enumerate().collect();
        runs.sort_by_key(|(i, _)| {
            let f = &flows[*i];
            (f.node == me || f.node == 0) && f.core == ctx.core
        });
        let (order, runs): (Vec<usize>, Vec<_>) = runs.into_iter().unzip();
        let answers = crate::sql::session::join_all(runs).await;
        let mut out: Vec<Option<Result<FlowEnd>>> = (0..flows.len()).map(|_| None).collect();
        for (i, a) in order.into_iter().zip(answers) {
            out[i] = Some(a);
        }
        out.into_iter()
            .map(|a| a.unwrap_or_else(|| Err(Error::internal("a flow got no answer"))))
            .collect()
    }

    /// `EXPLAIN (DISTSQL)` of a join: the flows that read each table input whose scan
    /// distributes (an input read by lookups from the rows before it reads no flows), the
    /// joins and the rest of the plan on the gateway.
    async fn explain_join_inputs(
        &mut self,
        join: &JoinPlan,
        plan: &SelectPlan,
        gateway: &str,
        ran: bool,
        out: &mut Vec<String>,
    ) -> Result<()> {
        let filters = join_access::pushdown(join, plan.filter.as_ref());
        let mode = self.dist_mode();
        let mut lines = Vec::new();
        let mut nflows = 0;
        for (input, pushed) in join.inputs.iter().zip(&filters.inputs) {
            let Some(t) = &input.table else { continue };
            if !pushed.as_ref().is_none_or(distsql::travels)
                || !self.correlated_in(pushed.as_ref()).is_empty()
            {
                continue;
            }
            let (start, end) = match self.choose_access(t, pushed.as_ref()) {
                Access::Full => {
                    let p = index_prefix(t.id, t.primary_index);
                    let e = prefix_end(&p);
                    (p, e)
                }
                Access::Span(s, e) => (s, e),
                _ => continue,
            };
            if self.flows_for(mode, &start, &end).await?.is_none() {
                continue;
            }
            let stages = match pushed {
                Some(_) => format!("table reader {} → filter", t.name),
                None => format!("table reader {}", t.name),
            };
            for f in self.plan_flows(&start, &end).await? {
                nflows += 1;
                lines.push(format!(
                    "  flow {nflows}: node {} core {}: {stages} ({} span{})",
                    f.node.max(1),
                    f.core,
                    f.spans.len(),
                    if f.spans.len() == 1 { "" } else { "s" }
                ));
            }
        }
        if nflows == 0 {
            out.push(format!(
                "distribution: local ({})",
                if mode == DistMode::Off {
                    "distsql = off"
                } else {
                    "no join input reads ranges elsewhere"
                }
            ));
            out.push(format!("  gateway {gateway}: the whole plan"));
            return Ok(());
        }
        out.push(format!(
            "distribution: partial ({nflows} flow{} read join inputs)",
            if nflows == 1 { "" } else { "s" }
        ));
        out.extend(lines);
        out.push(format!(
            "  gateway {gateway}: merge in key order → joins → the rest of the plan"
        ));
        if ran {
            self.push_flow_stats(false, out);
        }
        Ok(())
    }

    /// What each flow did (`EXPLAIN ANALYZE (DISTSQL)`).
    fn push_flow_stats(&self, groups: bool, out: &mut Vec<String>) {
        for s in &self.flow_stats {
            out.push(format!(
                "  ran on node {} core {}{}: {} span{}, {} rows read, {} {} out, {:.3} ms",
                s.node.max(1),
                s.core,
                if s.at_gateway { " (gateway)" } else { "" },
                s.spans,
                if s.spans == 1 { "" } else { "s" },
                s.rows_read,
                s.rows_out,
                if groups { "groups" } else { "rows" },
                s.micros as f64 / 1000.0
            ));
        }
    }

    /// `EXPLAIN (DISTSQL)`: where the flows of `plan` run (and, after it ran, what each
    /// did).
    pub(super) async fn explain_distsql(
        &mut self,
        plan: &SelectPlan,
        ran: bool,
        out: &mut Vec<String>,
    ) -> Result<()> {
        let me = self.ctx.shared.node_id.load(Ordering::Relaxed);
        let gateway = format!("node {} core {}", me.max(1), self.ctx.core);
        let local = |out: &mut Vec<String>, why: &str| {
            out.push(format!("distribution: local ({why})"));
            out.push(format!("  gateway {gateway}: the whole plan"));
        };
        if let Some(join) = &plan.join {
            return self
                .explain_join_inputs(join, plan, &gateway, ran, out)
                .await;
        }
        let Some(t) = plan.table.as_ref() else {
            local(out, "not a scan of a table");
            return Ok(());
        };
        let access = self.choose_access(t, plan.filter.as_ref());
        let mode = self.dist_mode();
        let span = self.dist_span(plan, t, &access);
        let Some((start, end)) = span.filter(|_| mode != DistMode::Off) else {
            local(
                out,
                if mode == DistMode::Off {
                    "distsql = off"
                } else {
                    "access path or expressions stay on the gateway"
                },
            );
            return Ok(());
        };
        let flows = self.plan_flows(&start, &end).await?;
        if mode == DistMode::Auto
            && flows
                .iter()
                .all(|f| f.node == me && f.core == self.ctx.core)
        {
            local(out, "every range is on the gateway's core");
            return Ok(());
        }
        let partial = Self::partial_agg(plan).is_some();
        let spans: usize = flows.iter().map(|f| f.spans.len()).sum();
        out.push(format!(
            "distribution: full ({} flow{} over {spans} range{})",
            flows.len(),
            if flows.len() == 1 { "" } else { "s" },
            if spans == 1 { "" } else { "s" },
        ));
        let mut stages = vec![format!("table reader {}", t.name)];
        if plan.filter.is_some() {
            stages.push("filter".into());
        }
        if partial {
            stages.push("partial aggregation".into());
        } else if let Some(n) = self.pk_order_limit(plan, t)? {
            // The gateway stops asking once the first rows in key order are in.
            stages.push(format!("first {n} rows"));
        } else if let Some((_, n)) = self.top_k(plan)? {
            stages.push(format!("top {n} by the ORDER BY"));
        }
        // ORDER BY without LIMIT, not in key order: each flow sorts, the gateway merges.
        let runs = !partial
            && !Self::in_pk_order(plan, t)
            && self.limit_plus_offset(plan)?.is_none()
            && self.flow_order(plan).is_some();
        if runs {
            stages.push("sort by the ORDER BY".into());
        }
        for (i, f) in flows.iter().enumerate() {
            let place = format!("node {} core {}", f.node.max(1), f.core);
            out.push(format!(
                "  flow {}: {place}: {} ({} span{})",
                i + 1,
                stages.join(" → "),
                f.spans.len(),
                if f.spans.len() == 1 { "" } else { "s" }
            ));
        }
        let mut last = vec![if runs {
            "ordered merge by the ORDER BY".to_string()
        } else {
            "merge in key order".to_string()
        }];
        if partial {
            last.push("final aggregation".into());
        } else if plan.grouped {
            last.push("aggregation".into());
        }
        let in_order = !partial && Self::in_pk_order(plan, t);
        if !plan.order.is_empty() && !runs && !in_order {
            last.push("sort".into());
        }
        if plan.limit.is_some() || plan.offset.is_some() {
            last.push("limit".into());
        }
        out.push(format!("  gateway {gateway}: {}", last.join(" → ")));
        if ran {
            self.push_flow_stats(partial, out);
        }
        Ok(())
    }
}

/// Adds a flow's answer for a span to what the span answered before (a paged flow answers
/// a span in several pieces, in key order), and the piece's length to `pieces`.
fn put_output(slot: &mut Option<FlowOutput>, pieces: &mut Vec<usize>, out: FlowOutput) {
    match (slot.as_mut(), out) {
        (Some(FlowOutput::Rows(rows)), FlowOutput::Rows(more)) => {
            pieces.push(more.len());
            rows.extend(more);
        }
        (_, out) => {
            pieces.clear();
            if let FlowOutput::Rows(r) = &out {
                pieces.push(r.len());
            }
            *slot = Some(out);
        }
    }
}

/// Folds a page's statistics into those of the same flow's earlier pages.
fn add_stat(stats: &mut Vec<FlowStat>, s: FlowStat) {
    match stats
        .iter_mut()
        .find(|x| !x.at_gateway && x.node == s.node && x.core == s.core)
    {
        Some(x) => {
            x.rows_read += s.rows_read;
            x.rows_out += s.rows_out;
            x.micros += s.micros;
        }
        None => stats.push(s),
    }
}

/// The rest of flow `f` after it stopped in its span `i` at `key`: that span from `key`,
/// then the spans after it.
fn resumed(f: &FlowPlan, i: usize, key: Vec<u8>) -> Result<FlowPlan> {
    let (gi, span) = f.spans.get(i).ok_or_else(|| bad_answer("resume span"))?;
    if key.as_slice() < span.start.as_slice() || key.as_slice() >= span.end.as_slice() {
        return Err(bad_answer("resume key"));
    }
    let mut spans = vec![(
        *gi,
        FlowSpan {
            range: span.range,
            start: key,
            end: span.end.clone(),
        },
    )];
    spans.extend(f.spans[i + 1..].iter().cloned());
    Ok(FlowPlan {
        node: f.node,
        core: f.core,
        spans,
    })
}

/// With `want` rows needed in key order: the last span of the shortest prefix of spans
/// that holds that many rows, every span of it answered completely (not left for the
/// gateway to read, no pages to come) but the last, which may have answered only its
/// first rows so far; None while there is no such prefix.
fn key_order_prefix(
    slots: &[Option<FlowOutput>],
    busy: &[bool],
    leftover: &[(usize, FlowSpan)],
    want: usize,
) -> Option<usize> {
    let mut rows = 0;
    for (gi, slot) in slots.iter().enumerate() {
        if leftover.iter().any(|(l, _)| *l == gi) {
            return None;
        }
        if let Some(FlowOutput::Rows(r)) = slot {
            rows += r.len();
        }
        if rows >= want {
            return Some(gi);
        }
        if busy[gi] || slot.is_none() {
            return None;
        }
    }
    None
}
