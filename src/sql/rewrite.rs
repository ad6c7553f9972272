//! AST rewrites done before planning.
//!
//! - **CTEs** (`WITH x AS (…) …`): every reference to a CTE becomes a derived table
//!   holding its query (a CTE referenced twice runs twice). A `WITH RECURSIVE` is left in
//!   place: the executor computes it first (`exec::recursive_cte`) and its CTEs come back
//!   here as VALUES lists.
//! - **Subqueries in expressions** (`(SELECT …)`, `x IN (SELECT …)`, `EXISTS (…)`) are
//!   taken out and replaced by markers ([`extract_subqueries`]); the executor runs them
//!   first and puts their results back as parameters ([`put_back`]). So only uncorrelated
//!   subqueries work: a correlated one fails when run alone (reported as unsupported).
//!   [`stub_subqueries`] replaces them with typed NULLs instead, for describing a
//!   statement without running anything.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Ident, InTarget, Query, TableAlias, TableAliasColumnDef, TableFactor, Value, Visit,
    VisitMut, Visitor, VisitorMut,
};

use crate::error::{Error, Result};

/// Markers are identifiers no user writes.
const MARKER: &str = "__chitin_subquery_";

/// A subquery taken out of an expression.
pub enum Extracted {
    /// `(SELECT …)`: one value (NULL when no row).
    Scalar(Box<Query>),
    /// `x [NOT] IN (SELECT …)`: a list of values (`x` and NOT kept for the correlated
    /// case).
    In(Box<Query>, Box<Expr>, bool),
    /// `[NOT] EXISTS (SELECT …)`: whether it returns a row.
    Exists(Box<Query>, bool),
    /// `x op ANY|ALL (SELECT …)`: a list of values, which become the elements of the
    /// `ARRAY[…]` the operator then compares with.
    Quantified(Box<Query>),
}

/// What an extracted subquery turned into.
pub enum Replacement {
    Value(Box<Expr>),
    List(Vec<Expr>),
    /// Replaces the whole `x IN (…)`.
    Whole(Box<Expr>),
}

/// True when `node` holds a CTE or a subquery in an expression (cheap check first).
pub fn needs_rewrite<T: Visit>(node: &T) -> bool {
    struct Finder;
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            if q.with.is_some() {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::In {
                    target: InTarget::Subquery(_),
                    ..
                } => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    Visit::visit(node, &mut Finder).is_break()
}

/// Replaces every reference to a CTE by a derived table with its query; each CTE sees the
/// ones declared before it.
pub fn inline_ctes<T: VisitMut>(node: &mut T) -> Result<()> {
    inline_ctes_mode(node, false)
}

/// As [`inline_ctes`], for describing a statement without running it: a recursive CTE
/// stands for its non-recursive term, whose columns are the CTE's.
pub fn inline_ctes_for_describe<T: VisitMut>(node: &mut T) -> Result<()> {
    inline_ctes_mode(node, true)
}

fn inline_ctes_mode<T: VisitMut>(node: &mut T, describe: bool) -> Result<()> {
    struct Inliner {
        error: Option<Error>,
        describe: bool,
    }
    impl VisitorMut for Inliner {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            let Some(with) = q.with.take() else {
                return ControlFlow::Continue(());
            };
            if with.recursive && !self.describe {
                // Left for the executor, which computes the recursive CTEs of a statement's
                // query and of expression subqueries before running them
                // (`exec::recursive_cte`); planning refuses any other.
                q.with = Some(with);
                return ControlFlow::Continue(());
            }
            let mut defined: Vec<(String, TableAlias, Box<Query>)> = Vec::new();
            for cte in with.cte_tables {
                let mut body = cte.query;
                if with.recursive {
                    if let sqlparser::ast::SetExpr::SetOperation { left, .. } = body.body.as_ref() {
                        let left = left.clone();
                        body.body = left;
                    }
                }
                let mut s = Substitute {
                    ctes: &defined,
                    describe: self.describe,
                };
                let _ = VisitMut::visit(&mut body, &mut s);
                let name = cte.alias.name.value.to_lowercase();
                defined.push((name, cte.alias, body));
            }
            let mut s = Substitute {
                ctes: &defined,
                describe: self.describe,
            };
            let _ = VisitMut::visit(&mut q.body, &mut s);
            if let Some(ob) = &mut q.order_by {
                let _ = VisitMut::visit(ob, &mut s);
            }
            ControlFlow::Continue(())
        }
    }
    struct Substitute<'a> {
        ctes: &'a [(String, TableAlias, Box<Query>)],
        describe: bool,
    }
    impl VisitorMut for Substitute<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            // A nested WITH shadows the outer names it redefines: inline it first, so the
            // references it owns are gone before the outer CTEs are substituted.
            if q.with
                .as_ref()
                .is_some_and(|w| !w.recursive || self.describe)
            {
                let _ = inline_ctes_mode(q, self.describe);
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name, alias, args, ..
            } = tf
            {
                if args.is_some() || name.0.len() != 1 {
                    return ControlFlow::Continue(());
                }
                let n = name.to_string().trim_matches('"').to_lowercase();
                if let Some((_, cte_alias, q)) = self.ctes.iter().rev().find(|(c, _, _)| *c == n) {
                    let alias = match alias.take() {
                        Some(mut a) => {
                            if a.columns.is_empty() {
                                a.columns = cte_alias.columns.clone();
                            }
                            a
                        }
                        None => TableAlias {
                            explicit: true,
                            name: Ident::new(n),
                            columns: cte_alias
                                .columns
                                .iter()
                                .map(|c| TableAliasColumnDef::from_name(c.name.value.clone()))
                                .collect(),
                            at: None,
                        },
                    };
                    *tf = TableFactor::Derived {
                        lateral: false,
                        subquery: q.clone(),
                        alias: Some(alias),
                        sample: None,
                    };
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = Inliner {
        error: None,
        describe,
    };
    let _ = VisitMut::visit(node, &mut v);
    match v.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn marker(i: usize) -> Expr {
    Expr::Identifier(Ident::new(format!("{MARKER}{i}")))
}

fn marker_index(e: &Expr) -> Option<usize> {
    match e {
        Expr::Identifier(i) => i.value.strip_prefix(MARKER)?.parse().ok(),
        _ => None,
    }
}

/// Takes the subqueries out of `node`'s expressions (outermost ones; those nested inside
/// them stay in their query), leaving markers, and returns them in marker order.
pub fn extract_subqueries<T: VisitMut>(node: &mut T) -> Vec<Extracted> {
    struct Extractor {
        out: Vec<Extracted>,
    }
    impl VisitorMut for Extractor {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            let i = self.out.len();
            match e {
                Expr::Subquery(q) => {
                    let q = std::mem::replace(q, Box::new(empty_query()));
                    self.out.push(Extracted::Scalar(q));
                    *e = marker(i);
                }
                Expr::Exists { subquery, negated } => {
                    let q = std::mem::replace(subquery, Box::new(empty_query()));
                    self.out.push(Extracted::Exists(q, *negated));
                    *e = marker(i);
                }
                Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } => {
                    let mut inner = right.as_mut();
                    while let Expr::Nested(n) = inner {
                        inner = n.as_mut();
                    }
                    if let Expr::Subquery(q) = inner {
                        let q = std::mem::replace(q, Box::new(empty_query()));
                        self.out.push(Extracted::Quantified(q));
                        *inner = Expr::Array(sqlparser::ast::Array {
                            elem: vec![marker(i)],
                            named: true,
                        });
                    }
                }
                Expr::In {
                    expr,
                    target,
                    negated,
                    ..
                } => {
                    if let InTarget::Subquery(q) = target {
                        let q = std::mem::replace(q, Box::new(empty_query()));
                        self.out.push(Extracted::In(q, expr.clone(), *negated));
                        *target = InTarget::List(vec![marker(i)]);
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut x = Extractor { out: Vec::new() };
    let _ = VisitMut::visit(node, &mut x);
    x.out
}

/// Puts the results of extracted subqueries where their markers are.
pub fn put_back<T: VisitMut>(node: &mut T, mut replacements: Vec<Option<Replacement>>) {
    struct PutBack<'a> {
        r: &'a mut Vec<Option<Replacement>>,
    }
    impl VisitorMut for PutBack<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if let Some(i) = marker_index(e) {
                if let Some(Some(Replacement::Value(v))) = self.r.get_mut(i).map(Option::take) {
                    *e = *v;
                }
            } else if let Expr::Array(a) = e {
                if let [m] = a.elem.as_slice() {
                    if let Some(i) = marker_index(m) {
                        if let Some(Some(Replacement::List(l))) =
                            self.r.get_mut(i).map(Option::take)
                        {
                            a.elem = l;
                        }
                    }
                }
            } else if let Expr::In {
                target: InTarget::List(list),
                ..
            } = e
            {
                if let [m] = list.as_slice() {
                    if let Some(i) = marker_index(m) {
                        match self.r.get_mut(i).map(Option::take) {
                            Some(Some(Replacement::List(l))) => *list = l,
                            Some(Some(Replacement::Whole(w))) => *e = *w,
                            _ => {}
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = VisitMut::visit(
        node,
        &mut PutBack {
            r: &mut replacements,
        },
    );
}

/// A NULL of the SQL type named `ty` (for describing without running subqueries).
pub fn typed_null(ty: &str) -> Expr {
    Expr::Cast {
        kind: sqlparser::ast::CastKind::DoubleColon,
        expr: Box::new(Expr::Value(Value::Null.into())),
        data_type: sqlparser::ast::DataType::Custom(
            sqlparser::ast::ObjectName::from(vec![Ident::new(ty)]),
            vec![],
        ),
        format: None,
    }
}

fn empty_query() -> Query {
    match sqlparser::parser::Parser::parse_sql(
        &sqlparser::dialect::PostgreSqlDialect {},
        "SELECT 1",
    )
    .ok()
    .and_then(|mut v| v.pop())
    {
        Some(sqlparser::ast::Statement::Query(q)) => *q,
        _ => unreachable!("SELECT 1 parses"),
    }
}

/// `x IN (SELECT e FROM … WHERE p)` → `EXISTS (SELECT e FROM … WHERE (p) AND e = x)`, for
/// running a correlated IN per outer row. `None` when the subquery's shape does not allow
/// it (aggregates, grouping, DISTINCT, LIMIT, ORDER BY, set operations).
pub fn in_to_exists(q: &Query, lhs: &Expr) -> Option<Query> {
    if q.limit_clause.is_some() || q.order_by.is_some() || q.with.is_some() {
        return None;
    }
    let sqlparser::ast::SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    if s.having.is_some()
        || s.distinct.is_some()
        || !matches!(&s.group_by, sqlparser::ast::GroupByExpr::Expressions(g, _) if g.is_empty())
    {
        return None;
    }
    let e = match s.projection.as_slice() {
        [sqlparser::ast::SelectItem::UnnamedExpr(e)]
        | [sqlparser::ast::SelectItem::ExprWithAlias { expr: e, .. }] => e.clone(),
        _ => return None,
    };
    let mut has_agg = false;
    let _ = Visit::visit(&e, &mut AggFinder(&mut has_agg));
    if has_agg {
        return None;
    }
    let eq = Expr::BinaryOp {
        left: Box::new(Expr::Nested(Box::new(e))),
        op: sqlparser::ast::BinaryOperator::Eq,
        right: Box::new(Expr::Nested(Box::new(lhs.clone()))),
    };
    let mut out = q.clone();
    if let sqlparser::ast::SetExpr::Select(s) = out.body.as_mut() {
        s.selection = Some(match s.selection.take() {
            Some(w) => Expr::BinaryOp {
                left: Box::new(Expr::Nested(Box::new(w))),
                op: sqlparser::ast::BinaryOperator::And,
                right: Box::new(eq),
            },
            None => eq,
        });
    }
    Some(out)
}

struct AggFinder<'a>(&'a mut bool);

impl Visitor for AggFinder<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = e {
            let n = f.name.to_string().to_lowercase();
            if f.over.is_none() && crate::sql::expr::is_agg_name(n.as_str()) {
                *self.0 = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Maps the error of a subquery run on its own: an unknown column there most likely
/// belongs to the outer query (a correlated subquery).
pub fn subquery_error(e: Error) -> Error {
    use crate::error::ErrorKind;
    if matches!(
        e.kind,
        ErrorKind::UndefinedColumn | ErrorKind::UndefinedTable
    ) {
        Error::unsupported(format!(
            "correlated subqueries are not supported yet ({})",
            e.message
        ))
    } else {
        e
    }
}

/// Replaces the references of a correlated subquery `q` to its outer query's columns
/// (names its own FROM, `inner`, does not have, but `outer` does) by parameter
/// placeholders; `param(outer column index)` returns each one's 1-based number.
/// Parameter `$n` as an expression: plain, or cast to `ty` when the value alone would not
/// say its type (an array or jsonb value is text underneath).
pub fn param_expr(n: usize, ty: Option<crate::sql::types::SqlType>) -> Expr {
    let placeholder = Expr::Value(Value::Placeholder(format!("${n}")).into());
    match ty {
        Some(t) if t.array_elem().is_some() || t == crate::sql::types::SqlType::Jsonb => {
            crate::sql::catalog::parse_default(&format!("${n}::{}", t.name()))
                .unwrap_or(placeholder)
        }
        _ => placeholder,
    }
}

pub fn bind_outer_refs<T: VisitMut>(
    q: &mut T,
    inner: &[crate::sql::expr::ScopeColumn],
    outer: &[crate::sql::expr::ScopeColumn],
    param: &mut dyn FnMut(usize) -> Expr,
) {
    use crate::sql::expr::ident_name;
    struct Binder<'a> {
        inner: &'a [crate::sql::expr::ScopeColumn],
        outer: &'a [crate::sql::expr::ScopeColumn],
        param: &'a mut dyn FnMut(usize) -> Expr,
    }
    impl VisitorMut for Binder<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            let found = match e {
                Expr::Identifier(i) => {
                    let n = ident_name(i);
                    if self.inner.iter().any(|c| c.name == n) {
                        None
                    } else {
                        let mut it = self.outer.iter().enumerate().filter(|(_, c)| c.name == n);
                        match (it.next(), it.next()) {
                            (Some((k, _)), None) => Some(k),
                            _ => None,
                        }
                    }
                }
                // `t.c`, or `schema.t.c` (SQLAlchemy spells `pg_catalog.pg_class.oid`).
                Expr::CompoundIdentifier(parts) if (2..=3).contains(&parts.len()) => {
                    let k = parts.len();
                    let (t, n) = (ident_name(&parts[k - 2]), ident_name(&parts[k - 1]));
                    let schema = (k == 3).then(|| ident_name(&parts[0]));
                    let schema = schema.as_deref();
                    if self.inner.iter().any(|c| c.qualified_by(schema, &t)) {
                        None
                    } else {
                        self.outer
                            .iter()
                            .position(|c| c.qualified_by(schema, &t) && c.name == n)
                    }
                }
                _ => None,
            };
            if let Some(k) = found {
                *e = (self.param)(k);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = VisitMut::visit(
        q,
        &mut Binder {
            inner,
            outer,
            param,
        },
    );
}
