//! `UPDATE … FROM` and `DELETE … USING`: a write whose rows come from a join.
//!
//! The target table and the other relations are planned as one join
//! ([`plan_dml_join`]): the target's columns first (hidden rowid included), then each
//! relation's, with the statement's WHERE over all of them. Running it gives joined rows;
//! the first `width` values of each are a target row. As in PostgreSQL, a target row that
//! joins several rows is written once, with the first joined row
//! ([`Exec::dml_join_rows`]); SET expressions, and RETURNING, read the whole joined row
//! (RETURNING sees the target's new values).
//!
//! # Implementation caveats
//!
//! - "First" is the join's order (the target's rows in key order, then each relation's);
//!   PostgreSQL leaves it unspecified too, so a statement whose result depends on it may
//!   differ from PostgreSQL's.
//! - The target rows are not locked before they are read (as a plain UPDATE by a scan).

use super::*;

/// The join an `UPDATE … FROM` / `DELETE … USING` reads: `target` (a table, with its
/// alias) and then the `others`, filtered by `selection`. Every column of the joined row
/// is an output, so the plan's `scope` is also how SET and RETURNING bind.
pub(super) fn plan_dml_join(
    cat: &Catalog,
    db_id: u32,
    path: &catalog::SearchPath,
    target: &TableFactor,
    others: &[ast::TableWithJoins],
    selection: Option<&Expr>,
    params: &mut Vec<SqlType>,
) -> Result<SelectPlan> {
    let mut list = Vec::with_capacity(others.len() + 1);
    list.push(ast::TableWithJoins {
        relation: target.clone(),
        joins: Vec::new(),
    });
    list.extend(others.iter().cloned());
    let (table, derived, join, scope) = plan_from(cat, db_id, path, &list, params)?;
    let filter = match selection {
        Some(w) => {
            let (s, ty) = Binder::new(&scope, params).bind(w, Some(SqlType::Bool))?;
            if !matches!(ty, SqlType::Bool | SqlType::Unknown) {
                return Err(Error::mismatch(format!(
                    "argument of WHERE must be type boolean, not type {}",
                    ty.name()
                )));
            }
            Some(s)
        }
        None => None,
    };
    let columns = scope
        .iter()
        .map(|c| Column {
            name: c.name.clone(),
            ty: c.ty,
        })
        .collect();
    let mut plan = empty_plan(columns);
    plan.outputs = (0..scope.len()).map(Scalar::Column).collect();
    plan.table = table;
    plan.derived = derived;
    plan.join = join;
    plan.scope = scope;
    plan.filter = filter;
    Ok(plan)
}

/// The relations of `UPDATE … FROM` (empty without FROM).
pub(super) fn update_from(u: &ast::Update) -> &[ast::TableWithJoins] {
    match &u.from {
        Some(ast::UpdateTableFromKind::AfterSet(v) | ast::UpdateTableFromKind::BeforeSet(v)) => v,
        None => &[],
    }
}

/// RETURNING over a joined row described by `scope`: `*` is every visible column of
/// every relation, `name.*` one relation's.
pub(super) fn bind_returning_scoped(
    scope: &[ScopeColumn],
    items: &[SelectItem],
    params: &mut Vec<SqlType>,
) -> Result<(Vec<Scalar>, Vec<Column>)> {
    let mut outs = Vec::new();
    let mut cols = Vec::new();
    let push_all = |qual: Option<&str>, outs: &mut Vec<Scalar>, cols: &mut Vec<Column>| {
        for (i, c) in scope.iter().enumerate() {
            if c.hidden || (qual.is_some() && c.table.as_deref() != qual) {
                continue;
            }
            outs.push(Scalar::Column(i));
            cols.push(Column {
                name: c.name.clone(),
                ty: c.ty,
            });
        }
    };
    for item in items {
        match item {
            SelectItem::Wildcard(_) => push_all(None, &mut outs, &mut cols),
            SelectItem::QualifiedWildcard(kind, _) => {
                let qual = match kind {
                    ast::SelectItemQualifiedWildcardKind::ObjectName(n) => object_name(n),
                    other => other.to_string().trim_matches('"').to_lowercase(),
                };
                if !scope.iter().any(|c| c.table.as_deref() == Some(&qual)) {
                    return Err(Error::new(
                        ErrorKind::UndefinedTable,
                        format!("missing FROM-clause entry for table \"{qual}\""),
                    ));
                }
                push_all(Some(&qual), &mut outs, &mut cols);
            }
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                let name = match item {
                    SelectItem::ExprWithAlias { alias, .. } => ident_name(alias),
                    _ => output_name(e),
                };
                let (s, ty) = Binder::new(scope, params).bind(e, None)?;
                outs.push(s);
                cols.push(Column {
                    name,
                    ty: fix_unknown(ty),
                });
            }
            _ => return Err(Error::unsupported("unsupported RETURNING item")),
        }
    }
    Ok((outs, cols))
}

impl Exec<'_> {
    /// Runs `plan` (from [`plan_dml_join`]) and keeps, for each target row, the first
    /// joined row it appears in.
    pub(super) async fn dml_join_rows(
        &mut self,
        t: &TableDesc,
        mut plan: SelectPlan,
    ) -> Result<Vec<Vec<Datum>>> {
        self.check_correlated_use(&plan)?;
        // PERF: with no correlated subquery in WHERE and the last relation joined by a
        // comma, WHERE becomes that join's condition, so its equalities between the
        // sides make it a hash join instead of a filtered cross product.
        if self.correlated_in(plan.filter.as_ref()).is_empty() {
            if let Some(join) = &mut plan.join {
                if let Some(last) = join.steps.last_mut() {
                    if last.0 == JoinKind::Inner && last.1.is_none() {
                        last.1 = plan.filter.take();
                    }
                }
            }
        }
        let rows = self.run_plan(&plan).await?;
        let width = t.columns.len();
        let mut seen = HashSet::with_capacity(rows.len());
        let mut kept = Vec::with_capacity(rows.len());
        for r in rows {
            if seen.insert(Self::pk_key(t, &r[..width])) {
                kept.push(r);
            }
        }
        Ok(kept)
    }
}
