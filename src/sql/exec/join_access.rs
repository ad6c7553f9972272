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
fn volatile(s: &Scalar) -> bool {
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

/// For each input of `join`, the WHERE conjuncts (of `filter`) that read only its columns,
/// renumbered for its own rows, ANDed; None for inputs an outer join pads or that are not
/// tables.
pub(super) fn pushdown(join: &JoinPlan, filter: Option<&Scalar>) -> Vec<Option<Scalar>> {
    let n = join.inputs.len();
    let mut out = vec![None; n];
    let Some(f) = filter else { return out };
    let mut conj = Vec::new();
    flatten_and(f, &mut conj);
    let kinds: Vec<JoinKind> = join.steps.iter().map(|(k, _)| *k).collect();
    let pads_all_before = |from: usize| {
        kinds[from..]
            .iter()
            .any(|k| matches!(k, JoinKind::Right | JoinKind::Full))
    };
    let mut lo = 0;
    for (i, input) in join.inputs.iter().enumerate() {
        let hi = lo + input.width;
        let padded = if i == 0 {
            pads_all_before(0)
        } else {
            matches!(kinds[i - 1], JoinKind::Left | JoinKind::Full) || pads_all_before(i)
        };
        if input.table.is_some() && !input.lateral && !padded {
            let mine: Vec<Scalar> = conj
                .iter()
                .filter(|c| !volatile(c))
                .filter_map(|c| c.map_columns(&|col| (lo..hi).contains(&col).then(|| col - lo)))
                .collect();
            out[i] = mine
                .into_iter()
                .reduce(|a, b| Scalar::Binary(BinOp::And, Box::new(a), Box::new(b), SqlType::Bool));
        }
        lo = hi;
    }
    out
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
                let rows = self.read_rows(t, access).await?;
                self.filter_rows(pushed, rows).await
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
        let Some((index, lefts)) = lookup_key(t, &hash_join::equi_columns(cond, left_width)) else {
            return Ok(None);
        };
        let cols: Vec<usize> = index.map_or_else(|| t.pk.clone(), |i| i.columns.clone());
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
            let access = match index {
                None => Access::Point(vals),
                Some(i) => Access::Index(i.clone(), vals),
            };
            rows.extend(self.read_rows(t, access).await?);
        }
        self.filter_rows(pushed, rows).await.map(Some)
    }
}

/// The key a lookup join can read `t` by, given the ON condition's equalities (left
/// position, right position): the primary key, else the first index whose columns are all
/// equated; with the left positions that give each key column.
pub(super) fn lookup_key<'t>(
    t: &'t TableDesc,
    equalities: &[(usize, usize)],
) -> Option<(Option<&'t IndexDesc>, Vec<usize>)> {
    let lefts = |cols: &[usize]| -> Option<Vec<usize>> {
        cols.iter()
            .map(|c| equalities.iter().find(|(_, r)| r == c).map(|(l, _)| *l))
            .collect()
    };
    if let Some(ls) = lefts(&t.pk) {
        return Some((None, ls));
    }
    t.indexes
        .iter()
        .find_map(|i| lefts(&i.columns).map(|ls| (Some(i), ls)))
}
