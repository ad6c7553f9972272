//! Index expressions: `CREATE INDEX … ON t (lower(v))`, `… ((a || ' ' || b))`.
//!
//! Each expression becomes a hidden column of its table (`crdb_internal_idx_expr`,
//! `…_1`, as CockroachDB names its inaccessible computed columns) whose value is computed
//! from the row's other columns, and the index is an ordinary secondary index over that
//! column. So index maintenance, the online backfill, unique checks, statistics and
//! lookups need nothing of their own.
//!
//! - **The value is never trusted from storage.** Every row read ([`fill_read`], from
//!   `TableDesc::decode_row`) and every row written ([`fill_write`], from the write path's
//!   row check) recomputes it. Rows written before the index existed (shorter in
//!   storage) and rows written by a session that planned with the catalog from before
//!   the index (no value) therefore read right, and a delete or update of any of them
//!   removes the entry the index holds for it. The written value is stored with the row
//!   (its slot keeps later columns' positions right) but only as a placeholder.
//! - **Immutable expressions only** (PostgreSQL: 42P17): time, randomness, sequences,
//!   session state; no subqueries (0A000) or aggregates (42803). Evaluation uses an empty
//!   context, which immutable expressions never read. A read that fails to compute a value
//!   (which an immutable expression that was computed at write time cannot) reads NULL.
//! - **Selection.** A filter conjunct whose operand is, once bound, the same expression as
//!   an index expression (`lower(v) = 'x'`) is matched against that column when the scan's
//!   access path is chosen ([`substitute`]); the filter itself still evaluates the
//!   expression.
//! - The expression is kept as SQL text over column names: `RENAME COLUMN` rewrites it,
//!   `DROP COLUMN` drops the expressions that read the column and their indexes, `DROP
//!   INDEX` drops the expression columns no remaining index uses.

use sqlparser::ast::{self, Expr};

use crate::error::{Error, ErrorKind, Result};
use crate::sql::catalog::{self, ColumnDesc, TableDesc};
use crate::sql::expr::{Binder, EvalCtx, Scalar, ScopeColumn};
use crate::sql::types::{Datum, SqlType};

/// The name of the first expression column of a table; later ones get `_1`, `_2`, ….
const COLUMN_NAME: &str = "crdb_internal_idx_expr";

thread_local! {
    /// Immutable expressions read nothing from the context: one empty one per thread.
    static EMPTY: EvalCtx = EvalCtx::default();
}

/// Binds every computed column's expression over `t`'s columns (when the descriptor
/// loads, and after a change of its computed columns) and notes where they are; one
/// that no longer binds computes NULL.
pub fn bind(t: &mut TableDesc) {
    t.computed_columns = t
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.computed.is_some())
        .map(|(i, _)| i)
        .collect();
    if t.computed_columns.is_empty() {
        return;
    }
    let bound: Vec<Option<Scalar>> = t
        .columns
        .iter()
        .map(|c| {
            let text = c.computed.as_deref()?;
            let e = catalog::parse_default(text).ok()?;
            bind_expr(t, &e).ok().map(|(s, _)| s)
        })
        .collect();
    for (c, s) in t.columns.iter_mut().zip(bound) {
        c.computed_scalar = s;
    }
}

/// Binds index expression `e` over `t`'s columns, refusing what PostgreSQL refuses in
/// one; answers the bound expression and its type.
pub fn bind_expr(t: &TableDesc, e: &Expr) -> Result<(Scalar, SqlType)> {
    if has_subquery(e) {
        return Err(Error::unsupported(
            "cannot use subquery in index expression",
        ));
    }
    if crate::sql::expr::contains_aggregate(e) {
        return Err(Error::new(
            ErrorKind::Grouping,
            "aggregate functions are not allowed in index expressions",
        ));
    }
    let scope: Vec<ScopeColumn> = t
        .columns
        .iter()
        .map(|c| ScopeColumn {
            table: Some(t.name.clone()),
            schema: Some(t.schema.clone()),
            name: c.name.clone(),
            ty: c.ty,
            hidden: c.hidden,
            star_order: 0,
        })
        .collect();
    let mut params = Vec::new();
    let (s, ty) = Binder::new(&scope, &mut params).bind(e, None)?;
    if !params.is_empty() {
        return Err(Error::new(
            ErrorKind::Syntax,
            "there is no parameter $1 in an index expression",
        ));
    }
    let mut reads_computed = false;
    let mut mutable = None;
    s.walk(&mut |n| match n {
        Scalar::Column(i) => reads_computed |= t.columns[*i].computed.is_some(),
        Scalar::Func(name, _, _) if !is_immutable(name) => mutable = Some(name.clone()),
        _ => {}
    });
    if mutable.is_some() {
        return Err(Error::new(
            ErrorKind::InvalidObjectDefinition,
            "functions in index expression must be marked IMMUTABLE",
        ));
    }
    if reads_computed {
        return Err(Error::new(
            ErrorKind::UndefinedColumn,
            "an index expression cannot read another index expression",
        ));
    }
    Ok((s, ty))
}

fn has_subquery(e: &Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x| {
        if matches!(
            x,
            Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::In {
                    target: ast::InTarget::Subquery(_),
                    ..
                }
        ) {
            found = true;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// Functions whose value depends on more than their arguments (time, randomness,
/// sequences, the session): PostgreSQL's STABLE and VOLATILE built-ins.
fn is_immutable(name: &str) -> bool {
    !(crate::sql::sequence::runs_ahead(name)
        || matches!(
            name,
            "now"
                | "current_timestamp"
                | "statement_timestamp"
                | "transaction_timestamp"
                | "clock_timestamp"
                | "localtimestamp"
                | "localtime"
                | "current_date"
                | "current_time"
                | "timeofday"
                | "random"
                | "gen_random_uuid"
                | "uuid_generate_v4"
                | "unique_rowid"
                | "version"
                | "current_database"
                | "current_catalog"
                | "current_user"
                | "session_user"
                | "user"
                | "current_schema"
                | "current_setting"
                | "database"
                | "cluster_logical_timestamp"
                | "pg_sleep"
                | "age"
        ))
}

/// Recomputes the computed columns of a row just read (those `keep` marks, when given).
pub fn fill_read(t: &TableDesc, row: &mut [Datum], keep: Option<&[bool]>) {
    for &i in &t.computed_columns {
        if i >= row.len() || keep.is_some_and(|k| !k.get(i).copied().unwrap_or(true)) {
            continue;
        }
        row[i] = match &t.columns[i].computed_scalar {
            Some(s) => EMPTY.with(|cx| s.eval(row, cx)).unwrap_or(Datum::Null),
            None => Datum::Null,
        };
    }
}

/// Computes the computed columns of a row about to be written; an expression that fails
/// on it fails the write, as in PostgreSQL.
pub fn fill_write(t: &TableDesc, row: &mut [Datum]) -> Result<()> {
    for &i in &t.computed_columns {
        if i >= row.len() {
            continue;
        }
        row[i] = match &t.columns[i].computed_scalar {
            Some(s) => EMPTY.with(|cx| s.eval(row, cx))?,
            None => Datum::Null,
        };
    }
    Ok(())
}

/// How catalogs and messages show column `i` of `t`: its name, or for an index
/// expression the expression (parenthesized unless it is a function call, as
/// `pg_get_indexdef` prints it).
pub fn display(t: &TableDesc, i: usize) -> String {
    let c = &t.columns[i];
    match &c.computed {
        Some(text) => match catalog::parse_default(text) {
            Ok(Expr::Function(_)) => text.clone(),
            _ => format!("({text})"),
        },
        None => c.name.clone(),
    }
}

/// The name PostgreSQL gives an index expression in a generated index name
/// (`FigureColname`): a function's name, a column's, a cast's operand's or its type's,
/// else `expr`.
pub fn name_part(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => crate::sql::expr::ident_name(i),
        Expr::CompoundIdentifier(parts) => parts
            .last()
            .map(crate::sql::expr::ident_name)
            .unwrap_or_else(|| "expr".into()),
        Expr::Function(f) => crate::sql::expr::object_name(&f.name),
        Expr::Nested(x) => name_part(x),
        Expr::Cast {
            expr, data_type, ..
        } => match name_part(expr).as_str() {
            "expr" => data_type.to_string().to_lowercase(),
            n => n.to_string(),
        },
        _ => "expr".into(),
    }
}

/// The column for index expression `text` in `desc`: an existing computed column of the
/// same expression, else a new hidden one appended (its position answered).
pub fn column_for(desc: &mut TableDesc, text: &str, ty: SqlType) -> usize {
    if let Some(i) = desc
        .columns
        .iter()
        .position(|c| !c.dropped && c.computed.as_deref() == Some(text))
    {
        return i;
    }
    let mut name = COLUMN_NAME.to_string();
    let mut n = 0;
    while desc.column_index(&name).is_some() {
        n += 1;
        name = format!("{COLUMN_NAME}_{n}");
    }
    let mut c = ColumnDesc::new(name, ty);
    c.hidden = true;
    c.computed = Some(text.to_string());
    desc.columns.push(c);
    bind(desc);
    desc.columns.len() - 1
}

/// Marks dropped the computed columns of `desc` that no index (public or being added)
/// uses any more.
pub fn drop_unused(desc: &mut TableDesc) {
    let used: Vec<usize> = desc
        .write_indexes()
        .flat_map(|i| i.columns.iter().copied())
        .collect();
    for (i, c) in desc.columns.iter_mut().enumerate() {
        if c.computed.is_some() && !c.dropped && !used.contains(&i) {
            c.dropped = true;
            c.computed = None;
            c.computed_scalar = None;
            c.name = format!("........pg.dropped.{}........", i + 1);
        }
    }
    bind(desc);
}

/// The conjuncts of a scan's filter with every operand that is an index expression of
/// `t` replaced by its column, for choosing the access path; None when `t` has none or
/// no conjunct changed.
pub fn substitute(t: &TableDesc, conjuncts: &[&Scalar]) -> Option<Vec<Scalar>> {
    let exprs: Vec<(usize, String)> = t
        .computed_columns
        .iter()
        .filter_map(|&i| Some((i, format!("{:?}", t.columns[i].computed_scalar.as_ref()?))))
        .collect();
    if exprs.is_empty() {
        return None;
    }
    let column_of = |s: &Scalar| -> Option<Box<Scalar>> {
        let text = format!("{s:?}");
        exprs
            .iter()
            .find(|(_, e)| *e == text)
            .map(|(i, _)| Box::new(Scalar::Column(*i)))
    };
    let mut changed = false;
    let out = conjuncts
        .iter()
        .map(|c| {
            let new = match c {
                Scalar::Binary(op, l, r, ty) => match (column_of(l), column_of(r)) {
                    (Some(l), _) => Some(Scalar::Binary(*op, l, r.clone(), *ty)),
                    (None, Some(r)) => Some(Scalar::Binary(*op, l.clone(), r, *ty)),
                    _ => None,
                },
                Scalar::Between(x, lo, hi, n) => {
                    column_of(x).map(|x| Scalar::Between(x, lo.clone(), hi.clone(), *n))
                }
                Scalar::InList(x, list, n) => {
                    column_of(x).map(|x| Scalar::InList(x, list.clone(), *n))
                }
                _ => None,
            };
            changed |= new.is_some();
            new.unwrap_or_else(|| (*c).clone())
        })
        .collect();
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TableDesc {
        let columns = vec![
            ColumnDesc::new("k", SqlType::Int8),
            ColumnDesc::new("v", SqlType::Text),
        ];
        let t = TableDesc {
            id: 104,
            db_id: 1,
            pk: vec![0],
            pk_name: "t_pkey".into(),
            ..TableDesc::new("t", columns)
        };
        let mut t = catalog::decode_table(&catalog::encode_table(&t)).unwrap();
        let e = catalog::parse_default("lower(v)").unwrap();
        let (_, ty) = bind_expr(&t, &e).unwrap();
        column_for(&mut t, "lower(v)", ty);
        t
    }

    #[test]
    fn computed_values_are_recomputed_on_read_and_write() {
        let t = table();
        assert_eq!(t.columns[2].name, "crdb_internal_idx_expr");
        assert!(t.columns[2].hidden);
        let mut row = vec![Datum::Int(1), Datum::Text("HeLLo".into()), Datum::Null];
        fill_write(&t, &mut row).unwrap();
        assert!(matches!(&row[2], Datum::Text(s) if s == "hello"));
        // A row stored before the index existed: no slot, read as computed.
        let stored = crate::kv::keys::encode_row(&row[..2]);
        let back = t.decode_row(&stored).unwrap();
        assert!(matches!(&back[2], Datum::Text(s) if s == "hello"));
        // A stale stored value is never believed.
        let stale = crate::kv::keys::encode_row(&[
            Datum::Int(1),
            Datum::Text("X".into()),
            Datum::Text("wrong".into()),
        ]);
        assert!(matches!(&t.decode_row(&stale).unwrap()[2], Datum::Text(s) if s == "x"));
        // The same expression again is the same column; the descriptor round-trips it.
        let mut t2 = t.clone();
        assert_eq!(column_for(&mut t2, "lower(v)", SqlType::Text), 2);
        let back = catalog::decode_table(&catalog::encode_table(&t)).unwrap();
        assert!(back.columns[2].computed_scalar.is_some());
        assert_eq!(display(&back, 2), "lower(v)");
        assert_eq!(display(&back, 1), "v");
    }

    #[test]
    fn only_immutable_expressions_are_accepted() {
        let t = table();
        for (sql, kind) in [
            ("now()", ErrorKind::InvalidObjectDefinition),
            ("v || random()::text", ErrorKind::InvalidObjectDefinition),
            ("(SELECT 1)", ErrorKind::FeatureNotSupported),
            ("count(*)", ErrorKind::Grouping),
            ("nosuch", ErrorKind::UndefinedColumn),
        ] {
            let e = catalog::parse_default(sql).unwrap();
            assert_eq!(bind_expr(&t, &e).unwrap_err().kind, kind, "{sql}");
        }
        let e = catalog::parse_default("upper(v) || k::text").unwrap();
        assert_eq!(bind_expr(&t, &e).unwrap().1, SqlType::Text);
    }

    #[test]
    fn filter_operands_match_index_expressions() {
        let t = table();
        let e = catalog::parse_default("lower(v)").unwrap();
        let (s, _) = bind_expr(&t, &e).unwrap();
        let eq = Scalar::Binary(
            crate::sql::expr::BinOp::Eq,
            Box::new(Scalar::Const(Datum::Text("a".into()))),
            Box::new(s),
            SqlType::Bool,
        );
        let out = substitute(&t, &[&eq]).unwrap();
        assert!(matches!(&out[0], Scalar::Binary(_, _, r, _) if matches!(**r, Scalar::Column(2))));
        let other = Scalar::Column(1);
        assert!(substitute(&t, &[&other]).is_none());
        assert_eq!(
            name_part(&catalog::parse_default("lower(v)").unwrap()),
            "lower"
        );
        assert_eq!(
            name_part(&catalog::parse_default("a || b").unwrap()),
            "expr"
        );
    }
}
