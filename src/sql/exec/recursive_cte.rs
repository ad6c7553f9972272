//! `WITH RECURSIVE`: a CTE that names itself is computed before the statement runs, and
//! its rows take its place as a `VALUES` list of parameters, as a subquery's result does.
//!
//! PostgreSQL's evaluation (SQL:1999 "working table" semantics): the CTE's body must be
//! `non-recursive-term UNION [ALL] recursive-term`. The non-recursive term runs once; its
//! rows are the first working table. Then the recursive term runs with the CTE's name
//! bound to the working table (only the rows the previous step produced), its rows become
//! the next working table, and everything produced is the CTE's result. Under `UNION`
//! (not ALL) rows already produced, and duplicates within a step, are dropped, which is
//! what makes a walk over a cyclic graph end. It stops when a step produces no row.
//!
//! A CTE of a `WITH RECURSIVE` that does not name itself is an ordinary CTE.
//!
//! # Implementation caveats
//!
//! - Only a `WITH RECURSIVE` on the statement's own query, or on a subquery in an
//!   expression, is computed; one inside a derived table in FROM is refused (0A000).
//! - The whole result is held in memory; more than [`MAX_ROWS`] rows, or more than
//!   [`MAX_ITERATIONS`] steps, is an error (54000) where PostgreSQL would keep going.
//! - The recursive term's columns are cast to the non-recursive term's types (PostgreSQL
//!   refuses a mismatch with 42804).

use super::*;

/// Steps of the recursive term before the statement is refused.
const MAX_ITERATIONS: usize = 1_000_000;
/// Rows a recursive CTE may produce in all.
const MAX_ROWS: usize = 1_000_000;

impl Exec<'_> {
    /// Computes every `WITH RECURSIVE` in `node`, outermost first (the statement's query,
    /// derived tables, `INSERT … SELECT`, subqueries).
    pub(super) async fn materialize_all_recursive<T>(&mut self, node: &mut T) -> Result<()>
    where
        T: sqlparser::ast::Visit + sqlparser::ast::VisitMut,
    {
        use sqlparser::ast::{Visit, VisitMut, Visitor, VisitorMut};
        use std::ops::ControlFlow;
        struct FindFirst;
        impl Visitor for FindFirst {
            type Break = ast::Query;
            fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<ast::Query> {
                if q.with.as_ref().is_some_and(|w| w.recursive) {
                    return ControlFlow::Break(q.clone());
                }
                ControlFlow::Continue(())
            }
        }
        struct ReplaceFirst(Option<ast::Query>);
        impl VisitorMut for ReplaceFirst {
            type Break = ();
            fn pre_visit_query(&mut self, q: &mut ast::Query) -> ControlFlow<()> {
                if q.with.as_ref().is_some_and(|w| w.recursive) {
                    if let Some(r) = self.0.take() {
                        *q = r;
                    }
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            }
        }
        while let ControlFlow::Break(mut q) = Visit::visit(&*node, &mut FindFirst) {
            Box::pin(self.materialize_recursive_ctes(&mut q)).await?;
            let _ = VisitMut::visit(node, &mut ReplaceFirst(Some(q)));
        }
        Ok(())
    }

    /// Computes the self-referencing CTEs of `q`'s `WITH RECURSIVE` and replaces each one's
    /// body by its rows; afterwards `q` has an ordinary `WITH`.
    pub(super) async fn materialize_recursive_ctes(&mut self, q: &mut ast::Query) -> Result<()> {
        let Some(with) = q.with.as_mut() else {
            return Ok(());
        };
        if !with.recursive {
            return Ok(());
        }
        with.recursive = false;
        let ctes = std::mem::take(&mut with.cte_tables);
        let mut kept: Vec<ast::Cte> = Vec::with_capacity(ctes.len());
        for mut cte in ctes {
            let name = ident_name(&cte.alias.name);
            if !references_table(&cte.query, &name) {
                kept.push(cte);
                continue;
            }
            let (left, right, all) = split_union(&cte.query, &name)?;
            let with_kept = |body: Box<SetExpr>, extra: Option<ast::Cte>| {
                let mut tables = kept.clone();
                tables.extend(extra);
                let mut base = (*cte.query).clone();
                base.body = body;
                base.with = Some(ast::With {
                    with_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
                    recursive: false,
                    cte_tables: tables,
                });
                base
            };
            let base_query = with_kept(left, None);
            let (rows, cols) = Box::pin(self.subquery_rows_raw(base_query)).await?;
            if !cte.alias.columns.is_empty() && cte.alias.columns.len() != cols.len() {
                return Err(Error::new(
                    ErrorKind::InvalidColumnReference,
                    format!(
                        "WITH query \"{name}\" has {} columns available but {} columns specified",
                        cols.len(),
                        cte.alias.columns.len()
                    ),
                ));
            }
            if cte.alias.columns.is_empty() {
                cte.alias.columns = cols
                    .iter()
                    .map(|c| ast::TableAliasColumnDef::from_name(c.name.clone()))
                    .collect();
            }
            let types: Vec<SqlType> = cols.iter().map(|c| fix_unknown(c.ty)).collect();
            let mut seen: HashSet<Vec<u8>> = HashSet::new();
            let mut result: Vec<Vec<Datum>> = Vec::new();
            let mut working: Vec<Vec<Datum>> = Vec::new();
            for row in rows {
                if all || seen.insert(row_key(&row)) {
                    working.push(row);
                }
            }
            let mut iterations = 0usize;
            while !working.is_empty() {
                iterations += 1;
                if iterations > MAX_ITERATIONS || result.len() + working.len() > MAX_ROWS {
                    return Err(Error::new(
                        ErrorKind::ProgramLimitExceeded,
                        format!(
                            "recursive query \"{name}\" exceeded {MAX_ITERATIONS} steps or \
                             {MAX_ROWS} rows"
                        ),
                    ));
                }
                self.pause().await?;
                let params_base = self.cx.params.len();
                let mut step_cte = cte.clone();
                step_cte.query = Box::new(self.rows_query(&working, &types));
                let step_query = with_kept(right.clone(), Some(step_cte));
                let step = Box::pin(self.subquery_rows_raw(step_query)).await;
                self.cx.params.truncate(params_base);
                let (new_rows, new_cols) = step?;
                if new_cols.len() != types.len() {
                    return Err(Error::syntax(
                        "each UNION query must have the same number of columns",
                    ));
                }
                result.append(&mut working);
                for row in new_rows {
                    let row = row
                        .into_iter()
                        .zip(&types)
                        .map(|(d, t)| d.cast(*t))
                        .collect::<Result<Vec<_>>>()?;
                    if all || seen.insert(row_key(&row)) {
                        working.push(row);
                    }
                }
            }
            cte.query = Box::new(self.rows_query(&result, &types));
            kept.push(cte);
        }
        if let Some(with) = q.with.as_mut() {
            with.cte_tables = kept;
        }
        Ok(())
    }

    /// A query returning `rows` (as parameters of types `types`), or no row.
    fn rows_query(&mut self, rows: &[Vec<Datum>], types: &[SqlType]) -> ast::Query {
        if rows.is_empty() {
            let cols: Vec<String> = types
                .iter()
                .map(|t| format!("NULL::{}", t.name()))
                .collect();
            let sql = format!("SELECT {} WHERE false", cols.join(", "));
            return match crate::sql::session::parse(&sql)
                .ok()
                .and_then(|mut v| v.pop())
            {
                Some(Statement::Query(q)) => *q,
                _ => unreachable!("a SELECT of typed NULLs parses"),
            };
        }
        let mut values = Vec::with_capacity(rows.len());
        for row in rows {
            let exprs = row
                .iter()
                .zip(types)
                .map(|(d, t)| self.subquery_param(d.clone(), *t))
                .collect();
            values.push(ast::Parens {
                opening_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
                content: exprs,
                closing_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
            });
        }
        let mut q = match crate::sql::session::parse("VALUES (1)")
            .ok()
            .and_then(|mut v| v.pop())
        {
            Some(Statement::Query(q)) => *q,
            _ => unreachable!("VALUES (1) parses"),
        };
        if let SetExpr::Values(v) = q.body.as_mut() {
            v.rows = values;
        }
        q
    }
}

/// The bytes that identify a row for UNION's duplicate removal (equal values, equal
/// bytes: the key encoding).
fn row_key(row: &[Datum]) -> Vec<u8> {
    let mut k = Vec::with_capacity(row.len() * 9);
    for d in row {
        encode_key_datum(d, &mut k);
    }
    k
}

/// Whether `q` reads the table `name` (a one-part name, anywhere in it).
fn references_table(q: &ast::Query, name: &str) -> bool {
    use sqlparser::ast::{Visit, Visitor};
    use std::ops::ControlFlow;
    struct Finder<'a>(&'a str);
    impl Visitor for Finder<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, .. } = tf {
                if name.0.len() == 1 && object_name(name) == self.0 {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    Visit::visit(q, &mut Finder(name)).is_break()
}

/// Splits a recursive CTE's body into its non-recursive and recursive terms and whether
/// they are joined by UNION ALL.
fn split_union(q: &ast::Query, name: &str) -> Result<(Box<SetExpr>, Box<SetExpr>, bool)> {
    let malformed = || {
        Error::new(
            ErrorKind::InvalidRecursion,
            format!(
                "recursive query \"{name}\" does not have the form non-recursive-term UNION \
                 [ALL] recursive-term"
            ),
        )
    };
    if q.order_by.is_some() || q.limit_clause.is_some() {
        return Err(Error::unsupported(format!(
            "ORDER BY / LIMIT in a recursive query (\"{name}\") is not implemented"
        )));
    }
    let SetExpr::SetOperation {
        op: ast::SetOperator::Union,
        set_quantifier,
        left,
        right,
    } = q.body.as_ref()
    else {
        return Err(malformed());
    };
    let left_q = ast::Query {
        body: left.clone(),
        ..q.clone()
    };
    if references_table(&left_q, name) {
        return Err(Error::new(
            ErrorKind::InvalidRecursion,
            format!("recursive reference to query \"{name}\" must not appear within its non-recursive term"),
        ));
    }
    let all = matches!(set_quantifier, ast::SetQuantifier::All);
    Ok((left.clone(), right.clone(), all))
}
