//! How a join reads its tables: WHERE conjuncts pushed down to the inputs they concern, and
//! lookup joins.
//!
//! **Pushdown.** A conjunct of the WHERE clause that reads the columns of one join input
//! only (`o.id = 5` in `… FROM o JOIN c ON o.cid = c.id WHERE o.id = 5`) also filters that
//! input before the join, and picks its access path like a single-table query would (a
//! primary key point lookup instead of a full scan). Only for inputs that no outer join
//! pads with NULLs: a padded row must reach the WHERE clause as the padded row (`WHERE
//! c.x IS NULL` after a LEFT JOIN keeps left rows without a match). The whole WHERE clause
//! still runs after the join, so pushing is only ever an earlier, partial filter; volatile
//! conjuncts (`random()`) are not pushed, since they would be evaluated twice.
//!
//! Conjuncts over several inputs join the ON condition of the first inner step that has all
//! of them (when no later RIGHT or FULL join pads that step's rows), so `FROM a, b WHERE
//! a.x = b.y` is a hash or lookup join, not a filtered cross product.
//!
//! **Lookup join.** An inner or left join step whose ON condition equates columns of the
//! rows joined so far with the right table's whole primary key (or all the columns of one
//! of its indexes) reads only the right rows that can match: one point read (or index
//! lookup) per distinct left key, when the left side is small next to the table (at most
//! 64 rows, or a quarter of the table's row count from its statistics, and at most
//! [`LOOKUP_MAX`]). The rows read then go through the hash join as the whole right input
//! would, so the join's output is the same, only cheaper. A key value that does not convert
//! exactly to the right column's type (an INT8 value out of an INT4 column's range, a
//! numeric against an integer key) makes the step fall back to reading the whole input.

use std::collections::HashSet;

use super::*;
use crate::sql::stats;

/// The most distinct left keys a lookup join reads one by one.
pub(super) const LOOKUP_MAX: usize = 10_000;

/// Left sides at most this big look up even without table statistics.
const LOOKUP_ALWAYS: usize = 64;

/// Functions whose value changes from call to call: never evaluated twice for a row.
pub(super) fn volatile(s: &Scalar) -> bool {
    let mut v = false;
    s.walk(&mut |n| {
        if let Scalar::Func(name, _, _) = n {
            v |= crate::sql::sequence::runs_ahead(name)
                || matches!(
                    name.as_str(),
                    "random"
                        | "gen_random_uuid"
                        | "uuid_generate_v4"
                        | "unique_rowid"
                        | "clock_timestamp"
                        | "timeofday"
                        | "nextval"
                        | "setval"
                        | "pg_sleep"
                );
        }
    });
    v
}

/// WHERE conjuncts a join applies early ([`pushdown`]).
pub(super) struct JoinFilters {
    /// Per input: the conjuncts that read only its columns, renumbered for its own rows;
    /// None for inputs an outer join pads or that are not tables.
    pub(super) inputs: Vec<Option<Scalar>>,
    /// Per step: the conjuncts that read columns of several inputs, all joined by the end
    /// of the step (an inner step that no later outer join pads), in the joined row's
    /// numbering: they join the step's ON condition, so `FROM a, b WHERE a.x = b.y` is a
    /// hash (or lookup) join and not a filtered cross product.
    pub(super) steps: Vec<Option<Scalar>>,
}

impl JoinFilters {
    /// Step `i`'s ON condition with the WHERE conjuncts it can already test.
    pub(super) fn step_condition(&self, on: Option<&Scalar>, i: usize) -> Option<Scalar> {
        match (on, &self.steps[i]) {
            (Some(a), Some(b)) => Some(Scalar::Binary(
                BinOp::And,
                Box::new(a.clone()),
                Box::new(b.clone()),
                SqlType::Bool,
            )),
            (Some(a), None) => Some(a.clone()),
            (None, b) => b.clone(),
        }
    }
}

fn and_all(xs: Vec<Scalar>) -> Option<Scalar> {
    xs.into_iter()
        .reduce(|a, b| Scalar::Binary(BinOp::And, Box::new(a), Box::new(b), SqlType::Bool))
}

/// The highest column a conjunct reads (None when it reads none, or aggregates or window
/// values).
fn max_column(s: &Scalar) -> Option<usize> {
    let mut max = None;
    let mut ok = true;
    s.walk(&mut |n| match n {
        Scalar::Column(c) => max = max.max(Some(*c)),
        Scalar::AggRef(_) | Scalar::WindowRef(_) => ok = false,
        _ => {}
    });
    max.filter(|_| ok)
}

/// Splits the pushable WHERE conjuncts of `filter` over `join`'s inputs and steps.
pub(super) fn pushdown(join: &JoinPlan, filter: Option<&Scalar>) -> JoinFilters {
    let n = join.inputs.len();
    let mut filters = JoinFilters {
        inputs: vec![None; n],
        steps: vec![None; n.saturating_sub(1)],
    };
    let Some(f) = filter else { return filters };
    let mut conj = Vec::new();
    flatten_and(f, &mut conj);
    conj.retain(|c| !volatile(c));
    let kinds: Vec<JoinKind> = join.steps.iter().map(|(k, _)| *k).collect();
    let pads_all_before = |from: usize| {
        kinds[from..]
            .iter()
            .any(|k| matches!(k, JoinKind::Right | JoinKind::Full))
    };
    let mut ends = Vec::with_capacity(n);
    let mut end = 0;
    for input in &join.inputs {
        end += input.width;
        ends.push(end);
    }
    // Conjuncts over several inputs: at the first inner step that has them all.
    let mut steps: Vec<Vec<Scalar>> = vec![Vec::new(); n.saturating_sub(1)];
    for c in &conj {
        let Some(max) = max_column(c) else { continue };
        let first = ends.iter().position(|&e| max < e).unwrap_or(n);
        if first == 0 || first >= n {
            continue;
        }
        let step = first - 1;
        if kinds[step] == JoinKind::Inner && !join.inputs[first].lateral && !pads_all_before(step) {
            steps[step].push((*c).clone());
        }
    }
    filters.steps = steps.into_iter().map(and_all).collect();
    let mut lo = 0;
    for (i, input) in join.inputs.iter().enumerate() {
        let hi = ends[i];
        let padded = if i == 0 {
            pads_all_before(0)
        } else {
            matches!(kinds[i - 1], JoinKind::Left | JoinKind::Full) || pads_all_before(i)
        };
        if input.table.is_some() && !input.lateral && !padded {
            let mine: Vec<Scalar> = conj
                .iter()
                .filter_map(|c| c.map_columns(&|col| (lo..hi).contains(&col).then(|| col - lo)))
                .collect();
            filters.inputs[i] = and_all(mine);
        }
        lo = hi;
    }
    filters
}

impl Exec<'_> {
    /// The rows of one join input, filtered by what was pushed down to it.
    pub(super) async fn join_input_filtered(
        &mut self,
        input: &JoinInput,
        pushed: Option<&Scalar>,
    ) -> Result<Vec<Vec<Datum>>> {
        match (&input.table, &input.derived) {
            (Some(t), _) => {
                let access = self.choose_access(t, pushed);
                if let Some(rows) = self.dist_join_input(t, pushed, &access).await? {
                    return Ok(rows);
                }
                let started = self.op_start();
                // Named before the access moves, only when EXPLAIN ANALYZE records.
                let name = started.map(|_| access_name(&access)).unwrap_or_default();
                let rows = self.read_rows(t, access).await?;
                self.op_done(started, || format!("scan {}: {name}", t.name), rows.len());
                let started = self.op_start();
                let rows = self.filter_rows(pushed, rows).await?;
                if pushed.is_some() {
                    self.op_done(started, || format!("filter of {}", t.name), rows.len());
                }
                Ok(rows)
            }
            (None, Some(d)) => Box::pin(self.run_plan(d)).await,
            _ => Ok(Vec::new()),
        }
    }

    /// A lookup join's right rows (see the module essay), or None when this step reads its
    /// whole right input.
    pub(super) async fn lookup_rows(
        &mut self,
        kind: JoinKind,
        cond: Option<&Scalar>,
        left_width: usize,
        input: &JoinInput,
        pushed: Option<&Scalar>,
        left: &[Vec<Datum>],
    ) -> Result<Option<Vec<Vec<Datum>>>> {
        let (Some(t), Some(cond)) = (&input.table, cond) else {
            return Ok(None);
        };
        if !matches!(kind, JoinKind::Inner | JoinKind::Left)
            || input.lateral
            || left.len() > LOOKUP_MAX
        {
            return Ok(None);
        }
        let small = left.len() <= LOOKUP_ALWAYS
            || stats::row_count(&self.cat.stats, t.id).is_some_and(|n| n / 4 >= left.len() as u64);
        // A pushed-down filter that already reads few rows needs no lookups.
        if !small
            || !matches!(
                self.choose_access(t, pushed),
                Access::Full | Access::Span(..)
            )
        {
            return Ok(None);
        }
        let Some((by, lefts)) = lookup_key(t, &hash_join::equi_columns(cond, left_width)) else {
            return Ok(None);
        };
        let cols: Vec<usize> = match by {
            LookupBy::Index(i) => i.columns.clone(),
            _ => t.pk[..lefts.len()].to_vec(),
        };
        // Floats: -0 = 0 but their keys differ.
        if cols.iter().any(|&c| t.columns[c].ty.is_float()) {
            return Ok(None);
        }
        let mut seen = HashSet::new();
        let mut lookups = Vec::new();
        'rows: for l in left {
            let mut vals = Vec::with_capacity(cols.len());
            for (lc, rc) in lefts.iter().zip(&cols) {
                let d = &l[*lc];
                if d.is_null() {
                    // Matches nothing.
                    continue 'rows;
                }
                match self.exact(&Scalar::Const(d.clone()), t.columns[*rc].ty) {
                    Some(v) => vals.push(v),
                    None => return Ok(None),
                }
            }
            let mut k = Vec::new();
            for v in &vals {
                encode_key_datum(v, &mut k);
            }
            if seen.insert(k) {
                lookups.push(vals);
            }
        }
        let mut rows = Vec::new();
        for (n, vals) in lookups.into_iter().enumerate() {
            if n % 256 == 255 {
                self.pause().await?;
            }
            let access = match by {
                LookupBy::PrimaryKey => Access::Point(vals),
                LookupBy::PrimaryKeyPrefix => {
                    let p = Self::pk_key_from(t, &vals);
                    let e = prefix_end(&p);
                    Access::Span(p, e)
                }
                LookupBy::Index(i) => Access::Index(i.clone(), vals),
            };
            rows.extend(self.read_rows(t, access).await?);
        }
        self.filter_rows(pushed, rows).await.map(Some)
    }
}

/// How a lookup join reads the right table.
#[derive(Clone, Copy)]
pub(super) enum LookupBy<'t> {
    /// A point read per key.
    PrimaryKey,
    /// A span of the primary key per value of its first columns (a child table keyed by
    /// its parent's key and a line number).
    PrimaryKeyPrefix,
    Index(&'t IndexDesc),
}

impl LookupBy<'_> {
    pub(super) fn name(&self) -> &str {
        match self {
            LookupBy::PrimaryKey => "primary key",
            LookupBy::PrimaryKeyPrefix => "primary key prefix",
            LookupBy::Index(i) => &i.name,
        }
    }
}

/// The key a lookup join can read `t` by, given the ON condition's equalities (left
/// position, right position): the primary key, else the first index whose columns are all
/// equated, else the longest equated prefix of the primary key; with the left positions
/// that give each key column.
pub(super) fn lookup_key<'t>(
    t: &'t TableDesc,
    equalities: &[(usize, usize)],
) -> Option<(LookupBy<'t>, Vec<usize>)> {
    let left_of = |c: &usize| equalities.iter().find(|(_, r)| r == c).map(|(l, _)| *l);
    let lefts = |cols: &[usize]| -> Option<Vec<usize>> { cols.iter().map(left_of).collect() };
    if let Some(ls) = lefts(&t.pk) {
        return Some((LookupBy::PrimaryKey, ls));
    }
    if let Some(found) = t
        .indexes
        .iter()
        .find_map(|i| lefts(&i.columns).map(|ls| (LookupBy::Index(i), ls)))
    {
        return Some(found);
    }
    let prefix: Vec<usize> = t.pk.iter().map_while(left_of).collect();
    (!prefix.is_empty()).then_some((LookupBy::PrimaryKeyPrefix, prefix))
}

/// Rows assumed for a table without statistics.
const UNKNOWN_ROWS: f64 = 1000.0;

/// Joins of more inputs than this keep their written order.
const MAX_REORDERED: usize = 8;

/// A join in the order it runs, when that is not the written one ([`Exec::join_order`]).
pub(super) struct Reordered {
    pub(super) plan: JoinPlan,
    pub(super) filters: JoinFilters,
    /// For each column of the written order, its position in the reordered rows.
    pub(super) columns: Vec<usize>,
}

impl Reordered {
    /// A reordered row back in the written column order.
    pub(super) fn restore(&self, row: Vec<Datum>) -> Vec<Datum> {
        let mut row: Vec<Option<Datum>> = row.into_iter().map(Some).collect();
        self.columns
            .iter()
            .map(|&p| row[p].take().unwrap_or(Datum::Null))
            .collect()
    }
}

impl Exec<'_> {
    /// Rows `input` is expected to give with its pushed-down filter: exact for key
    /// lookups, from statistics otherwise (a third of them behind a filter that is not an
    /// access path), [`UNKNOWN_ROWS`] without statistics.
    pub(super) fn estimate_input(&self, t: &TableDesc, pushed: Option<&Scalar>) -> f64 {
        let all = stats::row_count(&self.cat.stats, t.id).map_or(UNKNOWN_ROWS, |n| n as f64);
        match self.choose_access(t, pushed) {
            Access::Point(_) => 1.0,
            Access::Points(v) => v.len() as f64,
            Access::Index(ix, _) if ix.unique => 1.0,
            Access::Index(ix, _) => {
                stats::estimate_eq_rows(&self.cat.stats, t.id, &ix.columns).unwrap_or(10.0)
            }
            Access::Span(..) | Access::IndexRange(..) | Access::Full => match pushed {
                Some(f) => (all * self.selectivity(t, f)).max(1.0),
                None => all,
            },
        }
    }

    /// The fraction of `t`'s rows `filter` is expected to keep: each conjunct on its own
    /// (independence), from the statistics where they say something (equality: one
    /// distinct value's share; a range on one column: its histogram; IS NULL: the NULL
    /// share), a third otherwise.
    pub(super) fn selectivity(&self, t: &TableDesc, filter: &Scalar) -> f64 {
        const UNKNOWN: f64 = 1.0 / 3.0;
        let st = &self.cat.stats;
        let rows = stats::row_count(st, t.id).unwrap_or(0) as f64;
        let eq = |c: usize| match stats::estimate_eq_rows(st, t.id, &[c]) {
            Some(e) if rows > 0.0 => (e / rows).min(1.0),
            _ => 0.1,
        };
        let mut conj = Vec::new();
        flatten_and(filter, &mut conj);
        let mut sel = 1.0;
        // Per column: (lower, upper) bounds of the ranges on it.
        let mut ranges: Vec<(usize, Option<Datum>, Option<Datum>)> = Vec::new();
        let mut bound = |c: usize, lo: Option<Datum>, hi: Option<Datum>| match ranges
            .iter_mut()
            .find(|(col, _, _)| *col == c)
        {
            Some(r) => {
                if lo.is_some() {
                    r.1 = lo;
                }
                if hi.is_some() {
                    r.2 = hi;
                }
            }
            None => ranges.push((c, lo, hi)),
        };
        let value = |s: &Scalar| s.eval(&[], &self.cx).ok().filter(|d| !d.is_null());
        for c in conj {
            let (op, col, v) = match c {
                Scalar::Binary(op, l, r, _) => match (l.as_ref(), r.as_ref()) {
                    (Scalar::Column(i), v) if is_value(v) => (*op, *i, v),
                    (v, Scalar::Column(i)) if is_value(v) => (flip(*op), *i, v),
                    _ => {
                        sel *= UNKNOWN;
                        continue;
                    }
                },
                Scalar::Between(x, lo, hi, false) => match (x.as_ref(), value(lo), value(hi)) {
                    (Scalar::Column(i), Some(lo), Some(hi)) => {
                        bound(*i, Some(lo), Some(hi));
                        continue;
                    }
                    _ => {
                        sel *= UNKNOWN;
                        continue;
                    }
                },
                Scalar::InList(x, list, false) => {
                    sel *= match x.as_ref() {
                        Scalar::Column(i) => (eq(*i) * list.len() as f64).min(1.0),
                        _ => UNKNOWN,
                    };
                    continue;
                }
                Scalar::IsNull(x, negated) => {
                    let f = match x.as_ref() {
                        Scalar::Column(i) => stats::null_fraction(st, t.id, *i).unwrap_or(0.1),
                        _ => 0.1,
                    };
                    sel *= if *negated { 1.0 - f } else { f };
                    continue;
                }
                _ => {
                    sel *= UNKNOWN;
                    continue;
                }
            };
            match op {
                BinOp::Eq => sel *= eq(col),
                BinOp::NotEq => sel *= 1.0 - eq(col),
                BinOp::Lt | BinOp::LtEq => bound(col, None, value(v)),
                BinOp::Gt | BinOp::GtEq => bound(col, value(v), None),
                _ => sel *= UNKNOWN,
            }
        }
        for (col, lo, hi) in ranges {
            let ty = t.columns[col].ty;
            sel *= stats::range_fraction(st, t.id, col, ty, lo.as_ref(), hi.as_ref())
                .unwrap_or(UNKNOWN);
        }
        sel.clamp(0.0, 1.0)
    }

    /// Cost-based join order for a join of tables by inner joins only: start from the
    /// input expected to give the fewest rows, then add, each time, the smallest input
    /// joined to what is there by an equality (a hash or lookup join, never a cross
    /// product while one can be avoided). None when the written order is as good (or the
    /// join has outer steps, subqueries, or more than [`MAX_REORDERED`] inputs).
    pub(super) fn join_order(
        &self,
        join: &JoinPlan,
        filter: Option<&Scalar>,
        filters: &JoinFilters,
    ) -> Option<Reordered> {
        let n = join.inputs.len();
        if !(2..=MAX_REORDERED).contains(&n)
            || join.steps.iter().any(|(k, _)| *k != JoinKind::Inner)
            || join
                .inputs
                .iter()
                .any(|i| i.table.is_none() || i.lateral || i.derived.is_some())
        {
            return None;
        }
        // Every condition, as conjuncts over the written numbering.
        let mut conj: Vec<Scalar> = Vec::new();
        for (_, on) in &join.steps {
            if let Some(c) = on {
                let mut parts = Vec::new();
                flatten_and(c, &mut parts);
                if parts.iter().any(|p| volatile(p)) {
                    return None;
                }
                conj.extend(parts.into_iter().cloned());
            }
        }
        if let Some(f) = filter {
            let mut parts = Vec::new();
            flatten_and(f, &mut parts);
            conj.extend(parts.into_iter().filter(|p| !volatile(p)).cloned());
        }
        let mut starts = Vec::with_capacity(n);
        let mut at = 0;
        for input in &join.inputs {
            starts.push(at);
            at += input.width;
        }
        let input_of = |col: usize| starts.iter().rposition(|&s| s <= col).unwrap_or(0);
        // The inputs each conjunct reads.
        let reads: Vec<Vec<usize>> = conj
            .iter()
            .map(|c| {
                let mut ins = Vec::new();
                c.walk(&mut |s| {
                    if let Scalar::Column(col) = s {
                        let i = input_of(*col);
                        if !ins.contains(&i) {
                            ins.push(i);
                        }
                    }
                });
                ins
            })
            .collect();
        // Pairs of inputs an equality between columns joins.
        let linked = |a: usize, b: usize| {
            conj.iter().zip(&reads).any(|(c, r)| {
                r.len() == 2
                    && r.contains(&a)
                    && r.contains(&b)
                    && matches!(c, Scalar::Binary(BinOp::Eq, x, y, _)
                        if matches!((x.as_ref(), y.as_ref()), (Scalar::Column(_), Scalar::Column(_))))
            })
        };
        let est: Vec<f64> = join
            .inputs
            .iter()
            .zip(&filters.inputs)
            .map(|(i, p)| self.estimate_input(i.table.as_ref().unwrap(), p.as_ref()))
            .collect();
        let mut order = Vec::with_capacity(n);
        let mut left: Vec<usize> = (0..n).collect();
        while !left.is_empty() {
            let connected: Vec<usize> = left
                .iter()
                .copied()
                .filter(|&i| order.iter().any(|&o| linked(o, i)))
                .collect();
            let pool = if order.is_empty() || connected.is_empty() {
                &left
            } else {
                &connected
            };
            let best = *pool
                .iter()
                .min_by(|a, b| est[**a].total_cmp(&est[**b]).then(a.cmp(b)))?;
            order.push(best);
            left.retain(|&i| i != best);
        }
        // Worth it only when the first input is much smaller than the written one's.
        if order.iter().copied().eq(0..n) || est[order[0]] * 4.0 > est[0] {
            return None;
        }
        // New numbering: inputs in `order`, each input's columns in their own order.
        let mut columns = vec![0; at];
        let mut pos = 0;
        for &i in &order {
            for c in 0..join.inputs[i].width {
                columns[starts[i] + c] = pos;
                pos += 1;
            }
        }
        let renumber = |c: &Scalar| c.map_columns(&|col| Some(columns[col]));
        // Each conjunct at the first step that has every input it reads.
        let mut steps: Vec<Vec<Scalar>> = vec![Vec::new(); n - 1];
        for (c, r) in conj.iter().zip(&reads) {
            // A conjunct of the first input alone, or of none (`ON false`), goes to the
            // first step: ON conditions are not in the WHERE clause run afterwards.
            let last = r
                .iter()
                .map(|i| order.iter().position(|o| o == i).unwrap_or(0))
                .max()
                .unwrap_or(0)
                .max(1);
            steps[last - 1].push(renumber(c)?);
        }
        let plan = JoinPlan {
            inputs: order
                .iter()
                .map(|&i| JoinInput {
                    table: join.inputs[i].table.clone(),
                    derived: None,
                    width: join.inputs[i].width,
                    lateral: false,
                    lateral_query: None,
                })
                .collect(),
            steps: steps
                .into_iter()
                .map(|s| (JoinKind::Inner, and_all(s)))
                .collect(),
        };
        let filters = JoinFilters {
            inputs: order.iter().map(|&i| filters.inputs[i].clone()).collect(),
            steps: vec![None; n - 1],
        };
        Some(Reordered {
            plan,
            filters,
            columns,
        })
    }
}
