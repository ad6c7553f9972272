//! Multiple-column assignments in `UPDATE … SET` and `ON CONFLICT DO UPDATE SET`:
//! `SET (a, b) = (x, y)`, `SET (a, b) = ROW(x, y)` and `SET (a, b) = (SELECT x, y …)`.
//!
//! PostgreSQL's rules: the source is a parenthesized list, a `ROW()` expression or a
//! sub-SELECT, anything else is 0A000; the number of values must equal the number of
//! columns (42601); a sub-SELECT returning more than one row fails with 21000 and one
//! returning none sets every column to NULL. A column assigned twice is 42601.
//!
//! Everything ends as single-column assignments ([`expand_assignments`]), so the UPDATE
//! itself only ever binds `column = expression`. A sub-SELECT gets there in one of two
//! ways, before the statement's other subqueries are inlined
//! ([`Exec::run_row_subqueries`]):
//!
//! - uncorrelated: it runs once and its values become parameters, `(a, b) = ($1, $2)`;
//! - correlated (it names the updated row): it is split into one scalar subquery per
//!   column, `(a, b) = ((SELECT x …), (SELECT y …))`, which then run per row like any
//!   correlated subquery in SET. Each has the same FROM, WHERE, GROUP BY and LIMIT, so each
//!   returns as many rows as the original and the 21000 / NULL rules still hold.
//!
//! # Implementation caveats
//!
//! - A correlated sub-SELECT runs once per column per row, so a volatile function in it
//!   (`random()`, `nextval`) is evaluated once per column; one with DISTINCT, a set
//!   operation, a `*` or an ORDER BY naming another column's alias cannot be split and is
//!   refused (0A000).

use super::*;

/// The message PostgreSQL gives when the source is neither a row nor a sub-SELECT.
const NOT_A_ROW: &str =
    "source for a multiple-column UPDATE item must be a sub-SELECT or ROW() expression";

/// The 42601 for a source whose width differs from the column list's.
fn width_mismatch() -> Error {
    Error::syntax("number of columns does not match number of values")
}

/// The items of `(x, y)` or `ROW(x, y)`; None for any other expression.
fn row_items(e: &Expr) -> Option<Vec<Expr>> {
    match e {
        Expr::Tuple(items) => Some(items.clone()),
        Expr::Function(f) if f.over.is_none() && object_name(&f.name) == "row" => match &f.args {
            ast::FunctionArguments::List(l) => l
                .args
                .iter()
                .map(|a| match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e.clone()),
                    _ => None,
                })
                .collect(),
            ast::FunctionArguments::None => Some(Vec::new()),
            ast::FunctionArguments::Subquery(_) => None,
        },
        _ => None,
    }
}

/// `SET (a, b) = (x, y)` (or `ROW(x, y)`) → `SET a = x, b = y`, checking that no column
/// is assigned twice. Sub-SELECT sources must already be rows ([`Exec::run_row_subqueries`]).
pub(super) fn expand_assignments(assignments: &[ast::Assignment]) -> Result<Vec<ast::Assignment>> {
    let mut out: Vec<ast::Assignment> = Vec::with_capacity(assignments.len());
    for a in assignments {
        match &a.target {
            ast::AssignmentTarget::Tuple(cols) => {
                let values = row_items(&a.value)
                    .ok_or_else(|| Error::new(ErrorKind::FeatureNotSupported, NOT_A_ROW))?;
                if cols.len() != values.len() {
                    return Err(width_mismatch());
                }
                for (c, v) in cols.iter().zip(values) {
                    out.push(ast::Assignment {
                        target: ast::AssignmentTarget::ColumnName(c.clone()),
                        value: v,
                    });
                }
            }
            ast::AssignmentTarget::ColumnName(_) => out.push(a.clone()),
        }
    }
    for (i, a) in out.iter().enumerate() {
        let ast::AssignmentTarget::ColumnName(n) = &a.target else {
            continue;
        };
        let name = object_name(n);
        let twice = out[..i].iter().any(
            |b| matches!(&b.target, ast::AssignmentTarget::ColumnName(m) if object_name(m) == name),
        );
        if twice {
            return Err(Error::syntax(format!(
                "multiple assignments to same column \"{name}\""
            )));
        }
    }
    Ok(out)
}

/// The sub-SELECT of a multiple-column assignment, when that is its source.
fn row_subquery(a: &ast::Assignment) -> Option<(usize, &ast::Query)> {
    let ast::AssignmentTarget::Tuple(cols) = &a.target else {
        return None;
    };
    let mut v = &a.value;
    while let Expr::Nested(inner) = v {
        v = inner;
    }
    match v {
        Expr::Subquery(q) => Some((cols.len(), q)),
        _ => None,
    }
}

/// `(SELECT x, y FROM … WHERE …)` → `(SELECT x FROM … WHERE …), (SELECT y FROM … WHERE …)`;
/// None when the query cannot be split without changing how many rows each part returns
/// (DISTINCT, set operations, `*`) or what its ORDER BY means (an output alias).
fn split_row_subquery(q: &ast::Query) -> Option<Vec<Expr>> {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    if s.distinct.is_some() {
        return None;
    }
    let mut aliases = Vec::new();
    for item in &s.projection {
        match item {
            SelectItem::UnnamedExpr(_) => {}
            SelectItem::ExprWithAlias { alias, .. } => aliases.push(ident_name(alias)),
            _ => return None,
        }
    }
    if !aliases.is_empty() {
        if let Some(ob) = &q.order_by {
            let named =
                |e: &Expr| matches!(e, Expr::Identifier(i) if aliases.contains(&ident_name(i)));
            match &ob.kind {
                ast::OrderByKind::Expressions(exprs) => {
                    if exprs.iter().any(|o| named(&o.expr)) {
                        return None;
                    }
                }
                ast::OrderByKind::All(_) => return None,
            }
        }
    }
    Some(
        s.projection
            .iter()
            .map(|item| {
                let mut part = q.clone();
                if let SetExpr::Select(ps) = part.body.as_mut() {
                    ps.projection = vec![item.clone()];
                }
                Expr::Subquery(Box::new(part))
            })
            .collect(),
    )
}

/// The width of `q`'s output when it can be told from its text (a plain SELECT without
/// `*`).
fn select_width(q: &ast::Query) -> Option<usize> {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    s.projection
        .iter()
        .all(|i| {
            matches!(
                i,
                SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }
            )
        })
        .then_some(s.projection.len())
}

/// For Describe (nothing runs): every row sub-SELECT becomes its split form, or a row of
/// NULLs of the right width when it cannot be split.
pub(super) fn split_for_describe(assignments: &mut [ast::Assignment]) -> Result<()> {
    for a in assignments.iter_mut() {
        let Some((width, q)) = row_subquery(a) else {
            continue;
        };
        if select_width(q).is_some_and(|w| w != width) {
            return Err(width_mismatch());
        }
        a.value = Expr::Tuple(
            split_row_subquery(q)
                .unwrap_or_else(|| vec![Expr::Value(ast::Value::Null.into()); width]),
        );
    }
    Ok(())
}

/// The assignments of an UPDATE or of an INSERT's `ON CONFLICT DO UPDATE`.
pub(super) fn assignments_mut(stmt: &mut Statement) -> Option<&mut Vec<ast::Assignment>> {
    match stmt {
        Statement::Update(u) => Some(&mut u.assignments),
        Statement::Insert(ins) => match &mut ins.on {
            Some(ast::OnInsert::OnConflict(ast::OnConflict {
                action: ast::OnConflictAction::DoUpdate(du),
                ..
            })) => Some(&mut du.assignments),
            _ => None,
        },
        _ => None,
    }
}

impl Exec<'_> {
    /// Turns every `SET (a, b) = (SELECT …)` of `assignments` into `SET (a, b) = (…, …)`:
    /// values when the sub-SELECT is uncorrelated (it runs here, once), per-column scalar
    /// subqueries when it is correlated (see the module essay).
    pub(super) async fn run_row_subqueries(
        &mut self,
        assignments: &mut [ast::Assignment],
    ) -> Result<()> {
        for a in assignments.iter_mut() {
            let Some((width, q)) = row_subquery(a) else {
                continue;
            };
            if select_width(q).is_some_and(|w| w != width) {
                return Err(width_mismatch());
            }
            let q = q.clone();
            let values = match self.subquery_rows_raw(q.clone()).await {
                Ok((rows, cols)) => {
                    if cols.len() != width {
                        return Err(width_mismatch());
                    }
                    if rows.len() > 1 {
                        return Err(Error::new(
                            ErrorKind::Cardinality,
                            "more than one row returned by a subquery used as an expression",
                        ));
                    }
                    let row = rows
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| vec![Datum::Null; width]);
                    row.into_iter()
                        .zip(&cols)
                        .map(|(v, c)| self.subquery_param(v, c.ty))
                        .collect()
                }
                Err(e) if is_outer_reference_error(&e) => {
                    split_row_subquery(&q).ok_or_else(|| {
                        Error::unsupported(
                            "a correlated sub-SELECT with DISTINCT, a set operation, * or an \
                             ORDER BY on an output name as the source of a multiple-column \
                             assignment",
                        )
                    })?
                }
                Err(e) => return Err(rewrite::subquery_error(e)),
            };
            a.value = Expr::Tuple(values);
        }
        Ok(())
    }
}
