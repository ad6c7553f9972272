//! `GROUP BY GROUPING SETS (…)`, `ROLLUP (…)` and `CUBE (…)`, rewritten before planning
//! into a `UNION ALL` of one plain `GROUP BY` query per grouping set.
//!
//! In the branch for set S, every grouping expression outside S reads as NULL in the
//! select list and HAVING (not inside aggregate arguments, which see input rows), and
//! `grouping(a, b, …)` is the constant bitmask PostgreSQL gives it (bit set for each
//! argument not in S, the first argument the most significant). The empty set gets
//! `HAVING true`, so it is one group even with no aggregate in the select list. Several
//! items in GROUP BY multiply out (`GROUP BY a, ROLLUP (b, c)`).
//!
//! ORDER BY, LIMIT, OFFSET and DISTINCT apply to the union: the rewrite wraps it as a
//! derived table, so they may name output columns (or positions, or expressions over
//! output columns).
//!
//! Implementation caveats:
//! - ORDER BY an aggregate or an expression that is not an output column fails (the
//!   wrapper only sees output columns).
//! - Grouping expressions are matched by their SQL text, as the binder matches GROUP BY
//!   expressions.
//! - `grouping()` is only known in queries with grouping sets.
//! - The input is read once per grouping set.

use std::ops::ControlFlow;

use sqlparser::ast::{self, Expr, GroupByExpr, Query, SelectItem, SetExpr};

use crate::error::{Error, ErrorKind, Result};
use crate::sql::expr::{is_agg_name, object_name};

/// How many grouping sets one query may expand to (`CUBE` of n items is 2^n sets).
const MAX_SETS: usize = 4096;

/// `q` without grouping sets, or `None` when its GROUP BY has none.
pub fn expand(q: &Query) -> Result<Option<Query>> {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return Ok(None);
    };
    let GroupByExpr::Expressions(items, _) = &select.group_by else {
        return Ok(None);
    };
    if !items
        .iter()
        .any(|e| matches!(e, Expr::GroupingSets(_) | Expr::Rollup(_) | Expr::Cube(_)))
    {
        return Ok(None);
    }
    let sets = grouping_sets(items)?;
    // Every expression any set groups by, in first-seen order, by text.
    let mut all: Vec<(String, Expr)> = Vec::new();
    for set in &sets {
        for e in set {
            let text = e.to_string();
            if !all.iter().any(|(t, _)| *t == text) {
                all.push((text, e.clone()));
            }
        }
    }
    let mut branches = Vec::with_capacity(sets.len());
    for set in &sets {
        let grouped: Vec<String> = set.iter().map(|e| e.to_string()).collect();
        let mut branch = (**select).clone();
        let mut group_by: Vec<Expr> = Vec::new();
        for e in set {
            if !group_by.iter().any(|g| g.to_string() == e.to_string()) {
                group_by.push(e.clone());
            }
        }
        branch.group_by = GroupByExpr::Expressions(group_by, Vec::new());
        for item in &mut branch.projection {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let name = match e {
                        Expr::Identifier(i) => Some(i.clone()),
                        Expr::CompoundIdentifier(parts) => parts.last().cloned(),
                        _ => None,
                    };
                    let before = e.to_string();
                    null_ungrouped(e, &all, &grouped)?;
                    if let (Some(alias), true) = (name, e.to_string() != before) {
                        *item = SelectItem::ExprWithAlias {
                            expr: e.clone(),
                            alias,
                        };
                    }
                }
                SelectItem::ExprWithAlias { expr, .. } => null_ungrouped(expr, &all, &grouped)?,
                _ => {
                    return Err(Error::unsupported(
                        "SELECT * with GROUPING SETS, ROLLUP or CUBE",
                    ))
                }
            }
        }
        match &mut branch.having {
            Some(h) => null_ungrouped(h, &all, &grouped)?,
            None if set.is_empty() => {
                branch.having = Some(Expr::Value(ast::Value::Boolean(true).into()));
            }
            None => {}
        }
        let mut text = branch.to_string();
        if text.is_empty() {
            text = "SELECT NULL".into();
        }
        branches.push(text);
    }
    let union = branches.join(" UNION ALL ");
    let wrap = q.order_by.is_some() || q.limit_clause.is_some() || select.distinct.is_some();
    let sql = if wrap {
        let distinct = match &select.distinct {
            Some(ast::Distinct::Distinct) => "DISTINCT ",
            Some(ast::Distinct::On(_)) => {
                return Err(Error::unsupported("DISTINCT ON with GROUPING SETS"))
            }
            _ => "",
        };
        let mut sql = format!("SELECT {distinct}* FROM ({union}) AS \"grouping sets\"");
        if let Some(o) = &q.order_by {
            sql.push_str(&format!(" {o}"));
        }
        if let Some(l) = &q.limit_clause {
            sql.push_str(&format!(" {l}"));
        }
        sql
    } else {
        union
    };
    let mut statements = crate::sql::session::parse(&sql)?;
    match statements.pop() {
        Some(ast::Statement::Query(mut rewritten)) if statements.is_empty() => {
            rewritten.with = q.with.clone();
            Ok(Some(*rewritten))
        }
        _ => Err(Error::new(
            ErrorKind::Internal,
            "GROUPING SETS rewrite produced something other than one query",
        )),
    }
}

/// The grouping sets of GROUP BY `items`: the cross product of each item's sets.
fn grouping_sets(items: &[Expr]) -> Result<Vec<Vec<Expr>>> {
    let mut product: Vec<Vec<Expr>> = vec![Vec::new()];
    for item in items {
        let factor: Vec<Vec<Expr>> = match item {
            Expr::GroupingSets(sets) => sets.iter().map(|s| flatten(s)).collect(),
            Expr::Rollup(elements) => (0..=elements.len())
                .map(|n| elements[..n].iter().flat_map(|e| flatten(e)).collect())
                .collect(),
            Expr::Cube(elements) => {
                if elements.len() > 12 {
                    return Err(Error::new(
                        ErrorKind::StatementTooComplex,
                        "CUBE is limited to 12 elements",
                    ));
                }
                (0..1usize << elements.len())
                    .rev()
                    .map(|mask| {
                        elements
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| mask & (1 << (elements.len() - 1 - i)) != 0)
                            .flat_map(|(_, e)| flatten(e))
                            .collect()
                    })
                    .collect()
            }
            plain => vec![vec![plain.clone()]],
        };
        let mut next = Vec::with_capacity(product.len() * factor.len());
        for left in &product {
            for right in &factor {
                let mut set = left.clone();
                set.extend(right.iter().cloned());
                next.push(set);
            }
        }
        if next.len() > MAX_SETS {
            return Err(Error::new(
                ErrorKind::StatementTooComplex,
                format!("too many grouping sets present (more than {MAX_SETS})"),
            ));
        }
        product = next;
    }
    Ok(product)
}

/// The expressions of one grouping-set element: `(a, b)` is a and b; `()` is none.
fn flatten(element: &[Expr]) -> Vec<Expr> {
    element
        .iter()
        .flat_map(|e| match e {
            Expr::Tuple(items) => items.clone(),
            Expr::Nested(inner) => vec![(**inner).clone()],
            other => vec![other.clone()],
        })
        .collect()
}

/// In `e` (a select item or HAVING): `grouping(…)` becomes its bitmask, and each of `all`
/// not in `grouped` becomes NULL, except inside aggregate calls.
fn null_ungrouped(e: &mut Expr, all: &[(String, Expr)], grouped: &[String]) -> Result<()> {
    // Aggregate calls are set aside first, so nothing inside them is replaced.
    let mut aggregates: Vec<Expr> = Vec::new();
    let mut failure: Option<Error> = None;
    let _ = ast::visit_expressions_mut(e, |x| {
        if let Expr::Function(f) = x {
            let name = object_name(&f.name);
            if name == "grouping" && f.over.is_none() {
                match grouping_mask(f, grouped) {
                    Ok(mask) => {
                        *x = Expr::Value(ast::Value::Number(mask.to_string(), false).into())
                    }
                    Err(err) => failure = Some(err),
                }
            } else if is_agg_name(&name) && f.over.is_none() {
                let placeholder = Expr::Identifier(ast::Ident::new(format!(
                    "\u{0}aggregate{}",
                    aggregates.len()
                )));
                aggregates.push(std::mem::replace(x, placeholder));
            }
        }
        ControlFlow::<()>::Continue(())
    });
    if let Some(err) = failure {
        return Err(err);
    }
    let _ = ast::visit_expressions_mut(e, |x| {
        let text = x.to_string();
        if all.iter().any(|(t, _)| *t == text) && !grouped.contains(&text) {
            *x = Expr::Value(ast::Value::Null.into());
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = ast::visit_expressions_mut(e, |x| {
        if let Expr::Identifier(i) = x {
            if let Some(n) = i.value.strip_prefix("\u{0}aggregate") {
                if let Some(agg) = n.parse::<usize>().ok().and_then(|n| aggregates.get(n)) {
                    *x = agg.clone();
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(())
}

/// `grouping(a, b, …)` in the branch grouping by `grouped`: bit n-1-i set when argument i
/// is not grouped.
fn grouping_mask(f: &ast::Function, grouped: &[String]) -> Result<i64> {
    let ast::FunctionArguments::List(l) = &f.args else {
        return Err(Error::syntax("grouping() needs arguments"));
    };
    if l.args.is_empty() || l.args.len() > 31 {
        return Err(Error::new(
            ErrorKind::StatementTooComplex,
            "GROUPING must have fewer than 32 arguments",
        ));
    }
    let mut mask = 0i64;
    for a in &l.args {
        let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) = a else {
            return Err(Error::syntax("grouping() takes expressions"));
        };
        mask = (mask << 1) | i64::from(!grouped.contains(&e.to_string()));
    }
    Ok(mask)
}
