//! `EXPLAIN ANALYZE`: rows, time and place of each operator the statement ran.
//!
//! The executor materializes each operator's output (scan, filter, join step, the
//! grouping-to-limit tail of a plan), so an operator's time is the time it took to make
//! its whole output, its inputs' time not included. While `EXPLAIN ANALYZE` runs its query,
//! [`Exec::op_stats`] collects one [`OpStat`] per operator run, in the order they finish,
//! indented by plan nesting (subqueries, derived tables, set operations); the rendering
//! lists them after the plan. Outside EXPLAIN ANALYZE nothing is recorded (one `Option`
//! test per operator).

use std::time::Instant;

use super::*;

/// One operator run.
#[derive(Clone, Debug)]
pub(super) struct OpStat {
    /// Plan nesting: 1 for the statement's own plan.
    depth: usize,
    op: String,
    rows: u64,
    micros: u64,
    /// Where it ran: the gateway's core, or the flows (nodes and cores) that ran it.
    place: String,
}

impl Exec<'_> {
    /// When an operator starts (None when nothing is being recorded).
    pub(super) fn op_start(&self) -> Option<Instant> {
        self.op_stats.as_ref().map(|_| Instant::now())
    }

    /// Records an operator that ran on the gateway from `started` and made `rows` rows.
    pub(super) fn op_done(
        &mut self,
        started: Option<Instant>,
        op: impl FnOnce() -> String,
        rows: usize,
    ) {
        if started.is_none() {
            return;
        }
        let place = self.gateway_place();
        self.op_done_at(started, op, rows, place);
    }

    /// Records an operator that ran where `place` says.
    pub(super) fn op_done_at(
        &mut self,
        started: Option<Instant>,
        op: impl FnOnce() -> String,
        rows: usize,
        place: String,
    ) {
        let (Some(started), Some(stats)) = (started, self.op_stats.as_mut()) else {
            return;
        };
        stats.push(OpStat {
            depth: self.op_depth,
            op: op(),
            rows: rows as u64,
            micros: started.elapsed().as_micros() as u64,
            place,
        });
    }

    /// "gateway node N core C".
    pub(super) fn gateway_place(&self) -> String {
        format!(
            "gateway node {} core {}",
            self.ctx.shared.node_id.load(Ordering::Relaxed).max(1),
            self.ctx.core
        )
    }

    /// Where the flows in `stats` ran: "flows on node 1 core 0, node 1 core 1" (the gateway
    /// itself for spans no flow could serve).
    pub(super) fn flows_place(stats: &[distsql::FlowStat]) -> String {
        let places: Vec<String> = stats
            .iter()
            .map(|s| {
                format!(
                    "node {} core {}{}",
                    s.node.max(1),
                    s.core,
                    if s.at_gateway { " (gateway)" } else { "" }
                )
            })
            .collect();
        format!(
            "{} flow{} on {}",
            stats.len(),
            if stats.len() == 1 { "" } else { "s" },
            places.join(", ")
        )
    }

    /// The operators recorded, as EXPLAIN ANALYZE lines.
    pub(super) fn render_op_stats(&self, out: &mut Vec<String>) {
        let Some(stats) = &self.op_stats else { return };
        if stats.is_empty() {
            return;
        }
        out.push("operators (rows out, time, where):".into());
        for s in stats {
            out.push(format!(
                "{}{}: {} row{}, {:.3} ms, {}",
                "  ".repeat(s.depth),
                s.op,
                s.rows,
                if s.rows == 1 { "" } else { "s" },
                s.micros as f64 / 1000.0,
                s.place
            ));
        }
    }
}

/// The name of a plan's tail (what `finish_plan` does): its steps after the input, e.g.
/// "group → project → sort → limit".
pub(super) fn tail_name(plan: &SelectPlan) -> String {
    let mut steps = Vec::new();
    if plan.grouped {
        steps.push("group");
    }
    if !plan.windows.is_empty() {
        steps.push("window");
    }
    steps.push("project");
    if plan.distinct || plan.distinct_on > 0 {
        steps.push("distinct");
    }
    if !plan.order.is_empty() {
        steps.push("sort");
    }
    if plan.limit.is_some() || plan.offset.is_some() {
        steps.push("limit");
    }
    steps.join(" → ")
}
