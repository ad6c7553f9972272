//! Planning and execution of statements over one transaction.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlparser::ast::{self, Expr, ObjectType, SelectItem, SetExpr, Statement, TableFactor};

use crate::error::{Error, ErrorKind, Result};
use crate::kv::keys::{self, encode_key_datum, index_prefix, prefix_end};
use crate::kv::{KvWrite, Uncertain};
use crate::node::CoreCtx;
use crate::sql::catalog::{
    self, Catalog, CheckDesc, ColumnDesc, DatabaseDesc, ForeignKeyDesc, IndexDesc, RefAction,
    TableDesc,
};
use crate::sql::expr::{
    ident_name, object_name, sql_type, AggCall, AggFunc, BinOp, Binder, EvalCtx, Scalar,
    ScopeColumn,
};
use crate::sql::pg_catalog;
use crate::sql::preparse::{
    ALTER_SEQUENCE_MARKER, NO_DATA_MARKER, RANGE_FOR_ROW_MARKER, SPLIT_MARKER, UPSERT_MARKER,
};
use crate::sql::rewrite;
use crate::sql::sequence::{self, SeqOp, SeqSession};
use crate::sql::session::{Column, Outcome};
use crate::sql::types::{Datum, SqlType};
use crate::sql::udf;
use crate::txn::Txn;

mod create_table_as;
mod distsql;
mod dml_join;
pub use distsql::{distsql_setting, DISTSQL_VAR};

pub use create_table_as::select_into_as_create;
mod analyze;
mod comments;
mod foreign_keys;
mod functions;
mod hash_join;
mod join_access;
mod materialized_views;
mod merge_join;
mod multi_assign;
mod online_index;
mod op_stats;
pub use analyze::refresh_stale_stats;
use online_index::duplicate_in_index;
pub use online_index::fail_interrupted_jobs;
mod recursive_cte;
mod relation_sizes;
mod roles;
mod schemas;
mod view_deps;

/// Largest intermediate join result materialized before the statement is refused.
const MAX_JOIN_ROWS: usize = 5_000_000;

/// How often one read moves its transaction's timestamp up for uncertain values before
/// giving up with 40001 (each retry's interval ends at the serving node's clock reading,
/// so only writes racing the read keep it going).
const UNCERTAINTY_RETRIES: usize = 16;

fn uncertainty_exhausted() -> Error {
    Error::retry(
        "restart transaction: ReadWithinUncertaintyIntervalError: the read kept meeting newer values",
    )
}

/// Index into `metrics::STATEMENT_KINDS`.
pub fn statement_kind(s: &Statement) -> usize {
    match s {
        Statement::Query(_) => 0,
        Statement::Insert(_) => 1,
        Statement::Update(_) => 2,
        Statement::Delete(_) => 3,
        Statement::CreateTable(_)
        | Statement::CreateIndex(_)
        | Statement::CreateSequence { .. }
        | Statement::Drop { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateSchema { .. }
        | Statement::CreateFunction(_)
        | Statement::DropFunction(_) => 4,
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. } => 5,
        _ => 6,
    }
}

/// The command a READ ONLY transaction may not run, as PostgreSQL names it in "cannot
/// execute … in a read-only transaction": writes of rows (INSERT, UPDATE, DELETE, MERGE,
/// COPY FROM, row locks) and every schema change. `None` for what only reads.
pub fn read_only_violation(s: &Statement) -> Option<String> {
    let name = match s {
        Statement::Query(q) if !q.locks.is_empty() => {
            let lock = q.locks[0].lock_type.to_string();
            return Some(format!("SELECT FOR {lock}"));
        }
        Statement::Insert(_) => "INSERT",
        Statement::Update(_) => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::Merge(_) => "MERGE",
        Statement::Copy { to: false, .. } => "COPY FROM",
        Statement::Truncate(_) => "TRUNCATE TABLE",
        _ => {
            let text = s.to_string();
            let mut words = text.split_ascii_whitespace();
            let verb = words.next()?.to_ascii_uppercase();
            if !matches!(
                verb.as_str(),
                "CREATE" | "ALTER" | "DROP" | "GRANT" | "REVOKE" | "COMMENT" | "REFRESH"
            ) {
                return None;
            }
            if matches!(verb.as_str(), "GRANT" | "REVOKE" | "COMMENT") {
                return Some(verb);
            }
            // The object kind: `CREATE [OR REPLACE] [UNIQUE | TEMPORARY] TABLE` → TABLE.
            let object = words
                .map(|w| w.to_ascii_uppercase())
                .find(|w| {
                    !matches!(
                        w.as_str(),
                        "OR" | "REPLACE" | "UNIQUE" | "TEMPORARY" | "TEMP"
                    )
                })
                .unwrap_or_default();
            let object = if object == "MATERIALIZED" {
                "MATERIALIZED VIEW".to_string()
            } else {
                object
            };
            return Some(format!("{verb} {object}"));
        }
    };
    Some(name.to_string())
}

/// Window calls of a grouped query as calls over rows of `width` group columns followed by
/// the aggregates' values (`AggRef(i)` becomes column `width + i`).
fn windows_over_groups(
    calls: &[crate::sql::expr::WindowCall],
    width: usize,
) -> Result<Vec<crate::sql::expr::WindowCall>> {
    use crate::sql::expr::WindowFunc;
    let remap = |s: &Scalar| {
        s.map_leaves(&|leaf| match leaf {
            Scalar::AggRef(i) => Some(Scalar::Column(width + i)),
            Scalar::WindowRef(_) => None,
            other => Some(other.clone()),
        })
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Windowing,
                "window function calls cannot be nested",
            )
        })
    };
    let remap_all = |xs: &[Scalar]| xs.iter().map(remap).collect::<Result<Vec<_>>>();
    let remap_order = |xs: &[(Scalar, bool, bool)]| {
        xs.iter()
            .map(|(s, d, n)| Ok((remap(s)?, *d, *n)))
            .collect::<Result<Vec<_>>>()
    };
    calls
        .iter()
        .map(|c| {
            let func = match &c.func {
                WindowFunc::Agg(call) => {
                    let mut call = call.clone();
                    call.arg = call.arg.as_ref().map(remap).transpose()?;
                    call.filter = call.filter.as_ref().map(remap).transpose()?;
                    call.delimiter = call.delimiter.as_ref().map(remap).transpose()?;
                    call.order = remap_order(&call.order)?;
                    WindowFunc::Agg(call)
                }
                other => other.clone(),
            };
            Ok(crate::sql::expr::WindowCall {
                func,
                args: remap_all(&c.args)?,
                partition: remap_all(&c.partition)?,
                order: remap_order(&c.order)?,
                frame: c.frame,
            })
        })
        .collect()
}

/// Replaces the references of `q` (a correlated subquery) to columns of the `outer`
/// scope by parameters: each reference to column `col` becomes a new parameter numbered
/// after `ptypes` (which gets the column's type), and `take(col)` is told. Derived tables
/// and FROM functions of `q` are done first, each against its own scope, so that `q`'s
/// FROM can be planned; join conditions do not take part in its scope.
fn substitute_outer_refs(
    cat: &Catalog,
    db_id: u32,
    path: &catalog::SearchPath,
    q: &mut ast::Query,
    outer: &[ScopeColumn],
    ptypes: &mut Vec<SqlType>,
    take: &mut dyn FnMut(usize),
) -> Result<()> {
    OuterRefs {
        cat,
        db_id,
        path,
        outer,
        ptypes,
        take,
    }
    .in_set_expr(&mut q.body)
}

/// One [`substitute_outer_refs`] walk: where it resolves names, the outer scope, and the
/// parameters it has made so far.
struct OuterRefs<'a> {
    cat: &'a Catalog,
    db_id: u32,
    path: &'a catalog::SearchPath,
    outer: &'a [ScopeColumn],
    ptypes: &'a mut Vec<SqlType>,
    take: &'a mut dyn FnMut(usize),
}

impl OuterRefs<'_> {
    /// Each SELECT of a query body (both sides of UNION, INTERSECT and EXCEPT).
    fn in_set_expr(&mut self, body: &mut SetExpr) -> Result<()> {
        match body {
            SetExpr::Select(s) => self.in_select(s),
            SetExpr::SetOperation { left, right, .. } => {
                self.in_set_expr(left)?;
                self.in_set_expr(right)
            }
            SetExpr::Query(q) => self.in_set_expr(&mut q.body),
            SetExpr::Values(v) => {
                self.bind(v, &[]);
                Ok(())
            }
            _ => Err(Error::unsupported(
                "correlated subqueries other than SELECT, UNION, INTERSECT or EXCEPT",
            )),
        }
    }

    /// The references of `node` to outer columns (not shadowed by `inner`) as parameters.
    fn bind<T: ast::VisitMut>(&mut self, node: &mut T, inner: &[ScopeColumn]) {
        let (outer, ptypes, take) = (self.outer, &mut *self.ptypes, &mut *self.take);
        rewrite::bind_outer_refs(node, inner, outer, &mut |col| {
            take(col);
            ptypes.push(outer[col].ty);
            rewrite::param_expr(ptypes.len(), Some(outer[col].ty))
        });
    }

    fn in_select(&mut self, s: &mut ast::Select) -> Result<()> {
        // Derived tables: their own references first, then set aside while this level's
        // are bound (their inner names are not this level's).
        let mut derived = Vec::new();
        for twj in s.from.iter_mut() {
            let factors = std::iter::once(&mut twj.relation)
                .chain(twj.joins.iter_mut().map(|j| &mut j.relation));
            for tf in factors {
                match tf {
                    TableFactor::Derived { subquery, .. } => {
                        self.in_set_expr(&mut subquery.body)?;
                        let placeholder = Box::new(placeholder_query()?);
                        derived.push(std::mem::replace(subquery, placeholder));
                    }
                    // A set-returning function's arguments (`unnest(outer.col)`).
                    TableFactor::Function { args, .. } => self.bind(args, &[]),
                    TableFactor::Table { args: Some(a), .. } => self.bind(&mut a.args, &[]),
                    TableFactor::UNNEST { array_exprs, .. } => self.bind(array_exprs, &[]),
                    _ => {}
                }
            }
        }
        // The scope of the FROM items, without their join conditions (which may name
        // outer columns).
        let mut from = s.from.clone();
        put_back_derived(&mut from, &mut derived.clone().into_iter());
        for twj in from.iter_mut() {
            for j in twj.joins.iter_mut() {
                use ast::JoinOperator as J;
                if let J::Join(ast::JoinConstraint::On(e))
                | J::Inner(ast::JoinConstraint::On(e))
                | J::Left(ast::JoinConstraint::On(e))
                | J::LeftOuter(ast::JoinConstraint::On(e))
                | J::Right(ast::JoinConstraint::On(e))
                | J::RightOuter(ast::JoinConstraint::On(e))
                | J::FullOuter(ast::JoinConstraint::On(e)) = &mut j.join_operator
                {
                    *e = Expr::Value(ast::Value::Boolean(true).into());
                }
            }
        }
        let mut scope_types = self.ptypes.clone();
        let inner = plan_from(self.cat, self.db_id, self.path, &from, &mut scope_types)?.3;
        self.bind(s, &inner);
        put_back_derived(&mut s.from, &mut derived.into_iter());
        Ok(())
    }
}

/// A query standing in for a derived table set aside by `Exec::bind_outer_values`.
fn placeholder_query() -> Result<ast::Query> {
    match crate::sql::session::parse("SELECT 1")?.pop() {
        Some(Statement::Query(q)) => Ok(*q),
        _ => Err(Error::internal("SELECT 1 did not parse as a query")),
    }
}

/// Puts the derived tables set aside by `Exec::bind_outer_values` back, in FROM order.
fn put_back_derived(
    from: &mut [ast::TableWithJoins],
    derived: &mut dyn Iterator<Item = Box<ast::Query>>,
) {
    for twj in from.iter_mut() {
        let factors =
            std::iter::once(&mut twj.relation).chain(twj.joins.iter_mut().map(|j| &mut j.relation));
        for tf in factors {
            if let TableFactor::Derived { subquery, .. } = tf {
                if let Some(q) = derived.next() {
                    *subquery = q;
                }
            }
        }
    }
}

/// How rows of a table are found.
enum Access {
    Point(Vec<Datum>),
    /// Several primary keys (`pk IN (…)` on a one-column primary key), in key order.
    Points(Vec<Datum>),
    Span(Vec<u8>, Vec<u8>),
    Index(IndexDesc, Vec<Datum>),
    /// A span `[start, end)` of a secondary index (a range on its first column), each entry
    /// then read by primary key.
    IndexRange(IndexDesc, Vec<u8>, Vec<u8>),
    Full,
}

/// Ranges on columns from a filter: column → (lower, upper) bound, each value with
/// whether it is included.
type ColumnRanges = BTreeMap<usize, (Option<(Datum, bool)>, Option<(Datum, bool)>)>;

/// What `SELECT … FOR UPDATE` does with a row another transaction holds locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LockWait {
    /// Wait for it (the default).
    Block,
    /// `NOWAIT`: fail with 55P03.
    NoWait,
    /// `SKIP LOCKED`: leave the row out.
    Skip,
}

enum SortKey {
    Output(usize),
    Expr(Scalar),
}

struct SelectPlan {
    table: Option<Rc<TableDesc>>,
    /// A subquery in FROM, producing the input rows.
    derived: Option<Box<SelectPlan>>,
    /// Several relations in FROM, joined left to right (hash or nested-loop joins).
    join: Option<JoinPlan>,
    scope: Vec<ScopeColumn>,
    filter: Option<Scalar>,
    aggs: Vec<AggCall>,
    group_by: Vec<Scalar>,
    having: Option<Scalar>,
    grouped: bool,
    outputs: Vec<Scalar>,
    columns: Vec<Column>,
    order: Vec<(SortKey, bool, bool)>,
    distinct: bool,
    /// `DISTINCT ON`: the last this many `order` keys are its expressions; the first row
    /// (in ORDER BY order) of each of their values is kept.
    distinct_on: usize,
    limit: Option<Scalar>,
    offset: Option<Scalar>,
    values: Option<Vec<Vec<Scalar>>>,
    /// UNION / INTERSECT / EXCEPT of two plans (rows pass through, like VALUES).
    setop: Option<Box<SetOpPlan>>,
    /// Window functions the outputs refer to (`Scalar::WindowRef`).
    windows: Vec<crate::sql::expr::WindowCall>,
    /// `generate_series(start, stop[, step])`: its rows are the input.
    series: Option<Vec<Scalar>>,
    /// `FOR UPDATE` / `FOR SHARE`: lock every row returned (single-table queries).
    lock: Option<LockWait>,
    /// Set-returning functions in the select list (see [`SelectSrf`]).
    srfs: Vec<SelectSrf>,
    /// Select-list items with set-returning functions inside (`unnest(a) * 2`): (output
    /// position, expression over the input row followed by the values of the hidden
    /// `srfs` outputs, which come after the visible ones), computed per expanded row.
    srf_exprs: Vec<(usize, Scalar)>,
    /// How many outputs at the end are such hidden set-returning functions.
    hidden_srfs: usize,
}

/// `unnest(array)` or `generate_subscripts(array, dim)` as a select-list item: the output
/// column `output` holds the array, and each input row becomes as many rows as its longest
/// such array has elements (PostgreSQL 10's rule), shorter ones padded with NULL.
struct SelectSrf {
    output: usize,
    /// The array's type.
    array: SqlType,
    /// `None` for unnest; the dimension asked for by generate_subscripts.
    subscripts_dim: Option<Scalar>,
    /// generate_subscripts' third argument: the subscripts in reverse order when true.
    subscripts_reverse: Option<Scalar>,
    /// What the function makes of the value in `output`.
    kind: SrfKind,
}

/// The rows a [`SelectSrf`] makes of its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SrfKind {
    /// unnest / generate_subscripts over an array.
    Array,
    /// `jsonb_array_elements[_text]`: the elements of a jsonb array (as text: `true`).
    JsonbElements(bool),
    /// The keys of a jsonb object (`jsonb_each`'s key, `jsonb_object_keys`).
    JsonbKeys,
    /// The values of a jsonb object (`jsonb_each[_text]`'s value; as text: `true`).
    JsonbValues(bool),
    /// `WITH ORDINALITY`: 1, 2, … as long as the longest of the others.
    Ordinality,
}

/// `generate_series(args)` in FROM as a derived relation of one column of type `ty`.
fn series_input(
    alias: Option<&ast::TableAlias>,
    ty: SqlType,
    args: Vec<Scalar>,
) -> (JoinInput, Vec<ScopeColumn>) {
    // A scalar function's alias names its column: `generate_series(1, 3) AS g`.
    let col = alias
        .map(|a| match a.columns.first() {
            Some(c) => ident_name(&c.name),
            None => ident_name(&a.name),
        })
        .unwrap_or_else(|| "generate_series".into());
    let mut plan = empty_plan(vec![Column {
        name: col.clone(),
        ty,
    }]);
    plan.series = Some(args);
    let table = alias.map(|a| ident_name(&a.name));
    let scope = vec![ScopeColumn {
        hidden: false,
        star_order: 0,
        table: Some(table.unwrap_or_else(|| "generate_series".into())),
        schema: None,
        name: col,
        ty,
    }];
    (
        JoinInput {
            width: 1,
            table: None,
            derived: Some(Box::new(plan)),
            lateral: false,
            lateral_query: None,
        },
        scope,
    )
}

/// The set-returning functions FROM takes besides generate_series.
const FROM_SRFS: &[&str] = &[
    "unnest",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_object_keys",
    "regexp_matches",
];

/// Plans a set-returning function in FROM (`unnest(a, b) WITH ORDINALITY AS t(x, y, n)`,
/// `jsonb_each(doc)`) as a derived relation: a FROM-less select whose outputs are the
/// arguments, expanded by [`SelectSrf`]s. Arguments may name columns of the relations
/// before it in FROM (`outer`); then the relation is lateral ([`JoinInput::lateral`]).
fn plan_from_srf(
    name: &str,
    args: &[&Expr],
    alias: Option<&ast::TableAlias>,
    with_ordinality: bool,
    outer: &[ScopeColumn],
    params: &mut Vec<SqlType>,
) -> Result<(JoinInput, Vec<ScopeColumn>)> {
    let mut bound = Vec::new();
    for e in args {
        bound.push(Binder::new(outer, params).bind(e, None)?);
    }
    let types: Vec<SqlType> = bound.iter().map(|(_, t)| *t).collect();
    let undefined = || {
        Error::new(
            ErrorKind::UndefinedFunction,
            format!(
                "function {name}({}) does not exist",
                types
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    let mut outputs = Vec::new();
    let mut srfs = Vec::new();
    // Each output column: its default name and type.
    let mut columns: Vec<(String, SqlType)> = Vec::new();
    let mut add = |s: Scalar, kind: SrfKind, array: SqlType, column: (String, SqlType)| {
        srfs.push(SelectSrf {
            output: outputs.len(),
            array,
            subscripts_dim: None,
            subscripts_reverse: None,
            kind,
        });
        outputs.push(s);
        columns.push(column);
    };
    let alias_name = alias.map(|a| ident_name(&a.name));
    if name == "regexp_matches" {
        let args: Vec<Expr> = args.iter().map(|e| (*e).clone()).collect();
        let (s, _) = Binder::new(outer, params).bind(&regexp_matches_call(&args)?, None)?;
        let col = alias_name.clone().unwrap_or_else(|| name.to_string());
        add(
            s,
            SrfKind::Array,
            SqlType::TextArray,
            (col, SqlType::TextArray),
        );
    } else if name == "unnest" {
        if bound.is_empty() {
            return Err(undefined());
        }
        let single = bound.len() == 1;
        for (s, ty) in bound {
            let elem = ty.array_elem().ok_or_else(undefined)?;
            // A lone unnest's column is named after the alias, as any scalar function's.
            let col = match (&alias_name, single) {
                (Some(a), true) => a.clone(),
                _ => "unnest".to_string(),
            };
            add(s, SrfKind::Array, ty, (col, elem));
        }
    } else {
        let [(s, ty)] = <[_; 1]>::try_from(bound).map_err(|_| undefined())?;
        let s = match ty {
            SqlType::Jsonb => s,
            SqlType::Unknown => crate::sql::expr::coerce_literal(s, SqlType::Jsonb)?,
            _ => return Err(undefined()),
        };
        match name {
            "jsonb_array_elements" | "jsonb_array_elements_text" => {
                let text = name.ends_with("_text");
                let vt = if text { SqlType::Text } else { SqlType::Jsonb };
                add(s, SrfKind::JsonbElements(text), ty, ("value".into(), vt));
            }
            "jsonb_each" | "jsonb_each_text" => {
                let text = name.ends_with("_text");
                let vt = if text { SqlType::Text } else { SqlType::Jsonb };
                add(
                    s.clone(),
                    SrfKind::JsonbKeys,
                    ty,
                    ("key".into(), SqlType::Text),
                );
                add(s, SrfKind::JsonbValues(text), ty, ("value".into(), vt));
            }
            _ => {
                let col = alias_name.clone().unwrap_or_else(|| name.to_string());
                add(s, SrfKind::JsonbKeys, ty, (col, SqlType::Text));
            }
        }
    }
    if with_ordinality {
        add(
            Scalar::Const(Datum::Null),
            SrfKind::Ordinality,
            SqlType::Int8,
            ("ordinality".into(), SqlType::Int8),
        );
    }
    // `AS t(a, b)` renames the columns in order.
    if let Some(a) = alias {
        if a.columns.len() > columns.len() {
            return Err(Error::new(
                ErrorKind::Syntax,
                format!(
                    "table \"{}\" has {} columns available but {} columns specified",
                    ident_name(&a.name),
                    columns.len(),
                    a.columns.len()
                ),
            ));
        }
        for (c, n) in columns.iter_mut().zip(&a.columns) {
            c.0 = ident_name(&n.name);
        }
    }
    let mut lateral = false;
    for o in &outputs {
        o.walk(&mut |s| lateral |= matches!(s, Scalar::Column(_)));
    }
    let table = alias_name.unwrap_or_else(|| name.to_string());
    let scope: Vec<ScopeColumn> = columns
        .iter()
        .map(|(n, ty)| ScopeColumn {
            hidden: false,
            star_order: 0,
            table: Some(table.clone()),
            schema: None,
            name: n.clone(),
            ty: *ty,
        })
        .collect();
    let mut plan = empty_plan(
        columns
            .into_iter()
            .map(|(name, ty)| Column { name, ty })
            .collect(),
    );
    plan.outputs = outputs;
    plan.srfs = srfs;
    Ok((
        JoinInput {
            width: scope.len(),
            table: None,
            derived: Some(Box::new(plan)),
            lateral,
            lateral_query: None,
        },
        scope,
    ))
}

/// `generate_series(start, stop [, step])` over numbers in a select list: the scalar
/// that computes the whole series as an array (`__series_array`), and the array's type
/// (`int4[]`, `int8[]` or `numeric[]`, as the arguments' types).
fn series_array(b: &mut Binder, args: &[Expr]) -> Result<(Scalar, SqlType)> {
    let mut bound = Vec::new();
    let mut types = Vec::new();
    for a in args {
        let (s, t) = b.bind(a, Some(SqlType::Int8))?;
        bound.push(s);
        types.push(t);
    }
    let numeric = |t: &SqlType| t.is_numeric_family() || *t == SqlType::Unknown;
    if !(2..=3).contains(&args.len()) || !types.iter().all(numeric) {
        return Err(crate::sql::scalar_functions::undefined(
            "generate_series",
            &types,
        ));
    }
    let ty = if types
        .iter()
        .any(|t| matches!(t, SqlType::Numeric | SqlType::Float4 | SqlType::Float8))
    {
        SqlType::NumericArray
    } else if types.contains(&SqlType::Int8) {
        SqlType::Int8Array
    } else {
        SqlType::Int4Array
    };
    Ok((Scalar::Func("__series_array".into(), bound, ty), ty))
}

/// The name a set-returning call inside an expression is replaced by ([`hoist_srfs`]),
/// followed by its number.
const HOISTED_SRF: &str = "__chitin_srf_";

/// Replaces the set-returning calls inside `e` (not in subqueries) by references to
/// hidden columns `__chitin_srf_<n>` numbered in order from `base`, answering the calls; `e` itself
/// being one is left to the caller.
fn hoist_srfs(e: &mut Expr, base: usize) -> Vec<Expr> {
    struct Hoist {
        calls: Vec<Expr>,
        depth: usize,
        base: usize,
    }
    impl ast::VisitorMut for Hoist {
        type Break = ();
        fn pre_visit_query(&mut self, _q: &mut ast::Query) -> std::ops::ControlFlow<()> {
            self.depth += 1;
            std::ops::ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _q: &mut ast::Query) -> std::ops::ControlFlow<()> {
            self.depth -= 1;
            std::ops::ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, e: &mut Expr) -> std::ops::ControlFlow<()> {
            if self.depth == 0 && select_srf(e).is_some() {
                let n = self.base + self.calls.len();
                let name = ast::Ident::with_quote('"', format!("{HOISTED_SRF}{n}"));
                self.calls
                    .push(std::mem::replace(e, Expr::Identifier(name)));
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    if select_srf(e).is_some() {
        return Vec::new();
    }
    let mut h = Hoist {
        calls: Vec::new(),
        depth: 0,
        base,
    };
    let _ = ast::VisitMut::visit(e, &mut h);
    h.calls
}

/// `regexp_matches(args)` as the scalar `__regexp_matches(args)`: the array of its rows
/// (each a `text[]` literal), which [`SelectSrf`] expands into one row per match.
fn regexp_matches_call(args: &[Expr]) -> Result<Expr> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    crate::sql::catalog::parse_default(&format!("__regexp_matches({})", args.join(", ")))
}

/// Whether `e` is a set-returning function the select list may hold.
fn select_srf(e: &Expr) -> Option<(&'static str, Vec<Expr>)> {
    let Expr::Function(f) = e else { return None };
    if f.over.is_some() {
        return None;
    }
    let name = match object_name(&f.name).as_str() {
        "unnest" => "unnest",
        "generate_subscripts" => "generate_subscripts",
        "generate_series" => "generate_series",
        "regexp_matches" => "regexp_matches",
        _ => return None,
    };
    let ast::FunctionArguments::List(l) = &f.args else {
        return None;
    };
    let args = l
        .args
        .iter()
        .map(|a| match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some((name, args))
}

/// The values a jsonb set-returning function makes of one document (NULL: none).
fn jsonb_srf_values(kind: SrfKind, doc: &Datum) -> Result<Vec<Datum>> {
    use crate::sql::jsonb::Json;
    let Datum::Text(text) = doc else {
        return Ok(Vec::new());
    };
    let json = Json::parse(text)?;
    let value = |j: &Json, as_text: bool| {
        if as_text {
            j.as_text().map(Datum::Text).unwrap_or(Datum::Null)
        } else {
            Datum::Text(j.to_text())
        }
    };
    let refuse = |what: &str| {
        Err(Error::new(
            ErrorKind::InvalidParameterValue,
            what.to_string(),
        ))
    };
    Ok(match (kind, &json) {
        (SrfKind::JsonbElements(t), Json::Array(items)) => {
            items.iter().map(|j| value(j, t)).collect()
        }
        (SrfKind::JsonbElements(_), Json::Object(_)) => {
            return refuse("cannot extract elements from an object")
        }
        (SrfKind::JsonbElements(_), _) => return refuse("cannot extract elements from a scalar"),
        (SrfKind::JsonbKeys, Json::Object(pairs)) => {
            pairs.iter().map(|(k, _)| Datum::Text(k.clone())).collect()
        }
        (SrfKind::JsonbValues(t), Json::Object(pairs)) => {
            pairs.iter().map(|(_, j)| value(j, t)).collect()
        }
        (SrfKind::JsonbKeys | SrfKind::JsonbValues(_), Json::Array(_)) => {
            return refuse("cannot call this function on an array")
        }
        (SrfKind::JsonbKeys | SrfKind::JsonbValues(_), _) => {
            return refuse("cannot call this function on a scalar")
        }
        (SrfKind::Array | SrfKind::Ordinality, _) => Vec::new(),
    })
}

struct SetOpPlan {
    op: ast::SetOperator,
    all: bool,
    left: SelectPlan,
    right: SelectPlan,
}

fn table_scope(t: &TableDesc, alias: &str) -> Vec<ScopeColumn> {
    t.columns
        .iter()
        .map(|c| ScopeColumn {
            table: Some(alias.to_string()),
            schema: (alias == t.name).then(|| t.schema.clone()),
            name: c.name.clone(),
            ty: c.ty,
            hidden: c.hidden,
            star_order: 0,
        })
        .collect()
}

/// A table (not a view) by name.
fn lookup_table(
    cat: &Catalog,
    db_id: u32,
    path: &catalog::SearchPath,
    name: &ast::ObjectName,
) -> Result<Rc<TableDesc>> {
    let t = lookup_relation(cat, db_id, path, name)?;
    if t.view.is_some() {
        return Err(Error::new(
            ErrorKind::WrongObjectType,
            format!("\"{}\" is a view, not a table", t.name),
        ));
    }
    if t.sequence.is_some() {
        return Err(Error::new(
            ErrorKind::WrongObjectType,
            format!("cannot change sequence \"{}\"", t.name),
        ));
    }
    Ok(t)
}

/// A sequence option's number (`INCREMENT BY -2`).
fn sequence_number(e: &Expr) -> Result<i64> {
    let text = e.to_string().replace(' ', "");
    text.parse().map_err(|_| {
        Error::out_of_range(format!("value \"{text}\" is out of range for type bigint"))
    })
}

/// CREATE / ALTER SEQUENCE options as numbers, and OWNED BY (`Some(None)`: NONE).
#[allow(clippy::type_complexity)]
fn sequence_options(
    opts: &[ast::SequenceOptions],
) -> Result<(sequence::SeqOptions, Option<Option<ast::ObjectName>>)> {
    use ast::SequenceOptions as O;
    let mut o = sequence::SeqOptions::default();
    let mut owned = None;
    for opt in opts {
        match opt {
            O::DataType(dt) => o.ty = Some(sql_type(dt)?),
            O::IncrementBy(e, _) => o.increment = Some(sequence_number(e)?),
            O::MinValue(e) => o.min = Some(e.as_ref().map(sequence_number).transpose()?),
            O::MaxValue(e) => o.max = Some(e.as_ref().map(sequence_number).transpose()?),
            O::StartWith(e, _) => o.start = Some(sequence_number(e)?),
            O::Cache(e) => o.cache = Some(sequence_number(e)?),
            // sqlparser's `Cycle(true)` is NO CYCLE.
            O::Cycle(no) => o.cycle = Some(!no),
            O::OwnedBy(n) => owned = Some(n.clone()),
        }
    }
    Ok((o, owned))
}

/// The name PostgreSQL gives a SERIAL column's sequence: `<table>_<column>_seq`, numbered
/// when taken.
fn serial_sequence_name(
    cat: &Catalog,
    db_id: u32,
    schema_id: u32,
    table: &str,
    column: &str,
    taken: &[String],
) -> String {
    let base = format!("{table}_{column}_seq");
    let mut n = base.clone();
    let mut k = 1;
    while cat.table_in(db_id, schema_id, &n).is_some() || taken.contains(&n) {
        n = format!("{base}{k}");
        k += 1;
    }
    n
}

/// A table or a view by name.
fn lookup_relation(
    cat: &Catalog,
    db_id: u32,
    path: &catalog::SearchPath,
    name: &ast::ObjectName,
) -> Result<Rc<TableDesc>> {
    // A query naming a schema that does not exist fails as PostgreSQL's does: no such
    // relation (42P01), where DDL says no such schema (3F000).
    cat.relation(db_id, path, name)
        .ok()
        .flatten()
        .ok_or_else(|| catalog::undefined_table(&catalog::display_name(name)))
}

fn output_name(item_expr: &Expr) -> String {
    match item_expr {
        Expr::Identifier(i) => ident_name(i),
        Expr::CompoundIdentifier(p) => ident_name(p.last().unwrap()),
        Expr::Function(f) => object_name(&f.name),
        Expr::Cast {
            expr, data_type, ..
        } => match **expr {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => output_name(expr),
            _ => sql_type(data_type)
                .map(|t| pg_type_short(t).to_string())
                .unwrap_or_else(|_| "?column?".into()),
        },
        Expr::Nested(e) => output_name(e),
        Expr::Case { .. } => "case".into(),
        Expr::TypedString(ts) => sql_type(&ts.data_type)
            .map(|t| pg_type_short(t).to_string())
            .unwrap_or_else(|_| "?column?".into()),
        _ => "?column?".into(),
    }
}

fn pg_type_short(t: SqlType) -> &'static str {
    match t {
        SqlType::Int2 => "int2",
        SqlType::Int4 => "int4",
        SqlType::Int8 => "int8",
        SqlType::Float4 => "float4",
        SqlType::Float8 => "float8",
        SqlType::Bool => "bool",
        SqlType::Text => "text",
        SqlType::Varchar => "varchar",
        SqlType::Bytea => "bytea",
        SqlType::Numeric => "numeric",
        SqlType::Date => "date",
        SqlType::Timestamp => "timestamp",
        SqlType::TimestampTz => "timestamptz",
        SqlType::Uuid => "uuid",
        SqlType::Unknown => "text",
        SqlType::BoolArray => "_bool",
        SqlType::Int2Array => "_int2",
        SqlType::Int4Array => "_int4",
        SqlType::Int8Array => "_int8",
        SqlType::Float8Array => "_float8",
        SqlType::Float4Array => "_float4",
        SqlType::DateArray => "_date",
        SqlType::TimestampArray => "_timestamp",
        SqlType::TimestampTzArray => "_timestamptz",
        SqlType::TimeArray => "_time",
        SqlType::IntervalArray => "_interval",
        SqlType::UuidArray => "_uuid",
        SqlType::Record => "record",
        SqlType::RecordArray => "_record",
        SqlType::VarcharArray => "_varchar",
        SqlType::ByteaArray => "_bytea",

        SqlType::NumericArray => "_numeric",
        SqlType::TextArray => "_text",
        SqlType::Int2Vector => "int2vector",
        SqlType::OidVector => "oidvector",
        SqlType::Interval => "interval",
        SqlType::Jsonb => "jsonb",
        SqlType::Time => "time",
    }
}

fn fix_unknown(t: SqlType) -> SqlType {
    if t == SqlType::Unknown {
        SqlType::Text
    } else {
        t
    }
}

/// Plans a SELECT (or VALUES) without reading anything.
fn plan_select(
    cat: &Catalog,
    db_id: u32,
    path: &catalog::SearchPath,
    q: &ast::Query,
    params: &mut Vec<SqlType>,
) -> Result<SelectPlan> {
    if q.with.as_ref().is_some_and(|w| w.recursive) {
        // Computed before planning when on the statement or an expression subquery
        // (`recursive_cte`); anywhere else it is still here.
        return Err(Error::unsupported(
            "WITH RECURSIVE is supported only on a statement's query or a subquery in an \
             expression",
        ));
    }
    let mut plan = plan_query(cat, db_id, path, q, params)?;
    if !q.locks.is_empty() {
        plan.lock = plan_locking(&plan, q)?;
    }
    Ok(plan)
}

/// `FOR UPDATE` / `FOR SHARE` clauses of `q` over its planned `plan`, as PostgreSQL
/// allows them: not with GROUP BY, DISTINCT, aggregates, window functions or set
/// operations; `OF` names a relation of the FROM clause. Every strength takes the same
/// exclusive row lock (`FOR SHARE` is as strong as `FOR UPDATE` here). Locking rows of
/// a join or a subquery in FROM is not supported yet (0A000).
fn plan_locking(plan: &SelectPlan, q: &ast::Query) -> Result<Option<LockWait>> {
    let strength = match q.locks[0].lock_type {
        ast::LockType::Update => "FOR UPDATE",
        ast::LockType::Share => "FOR SHARE",
    };
    let not_allowed = |what: &str| {
        Err(Error::unsupported(format!(
            "{strength} is not allowed with {what}"
        )))
    };
    if plan.setop.is_some() {
        return not_allowed("UNION/INTERSECT/EXCEPT");
    }
    if plan.distinct {
        return not_allowed("DISTINCT clause");
    }
    if !plan.group_by.is_empty() {
        return not_allowed("GROUP BY clause");
    }
    if plan.having.is_some() {
        return not_allowed("HAVING clause");
    }
    if plan.grouped || !plan.aggs.is_empty() {
        return not_allowed("aggregate functions");
    }
    if !plan.windows.is_empty() {
        return not_allowed("window functions");
    }
    if !plan.srfs.is_empty() {
        return not_allowed("set-returning functions in the target list");
    }
    let Some(t) = &plan.table else {
        if plan.join.is_some() || plan.derived.is_some() {
            return Err(Error::unsupported(format!(
                "{strength} over a join or a subquery in FROM is not supported yet"
            )));
        }
        // No relation (SELECT 1 FOR UPDATE, VALUES): nothing to lock.
        return Ok(None);
    };
    let alias = plan
        .scope
        .first()
        .and_then(|c| c.table.as_deref())
        .unwrap_or("");
    // The strictest wait policy named wins: NOWAIT over SKIP LOCKED over waiting.
    let mut wait = LockWait::Block;
    for clause in &q.locks {
        if let Some(of) = &clause.of {
            let name =
                of.0.last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.value.clone())
                    .unwrap_or_default();
            if name != t.name && name != alias {
                return Err(Error::new(
                    ErrorKind::UndefinedTable,
                    format!("relation \"{name}\" in {strength} clause not found in FROM clause"),
                ));
            }
        }
        let w = match clause.nonblock {
            None => LockWait::Block,
            Some(ast::NonBlock::Nowait) => LockWait::NoWait,
            Some(ast::NonBlock::SkipLocked) => LockWait::Skip,
        };
        wait = match (wait, w) {
            (LockWait::NoWait, _) | (_, LockWait::NoWait) => LockWait::NoWait,
            (LockWait::Skip, _) | (_, LockWait::Skip) => LockWait::Skip,
            _ => LockWait::Block,
        };
    }
    Ok(Some(wait))
}

fn plan_query(
    cat: &Catalog,
    db_id: u32,
    path: &catalog::SearchPath,
    q: &ast::Query,
    params: &mut Vec<SqlType>,
) -> Result<SelectPlan> {
    if q.with.is_some() {
        return Err(Error::unsupported("WITH is not supported yet"));
    }
    if let Some(expanded) = crate::sql::grouping_sets::expand(q)? {
        return plan_query(cat, db_id, path, &expanded, params);
    }
    let (limit, offset) = match &q.limit_clause {
        Some(ast::LimitClause::LimitOffset { limit, offset, .. }) => {
            (limit.clone(), offset.as_ref().map(|o| o.value.clone()))
        }
        Some(ast::LimitClause::OffsetCommaLimit { offset, limit }) => {
            (Some(limit.clone()), Some(offset.clone()))
        }
        None => (None, None),
    };
    // `FETCH FIRST n ROWS ONLY` is the standard's LIMIT (no n: one row).
    let limit = match &q.fetch {
        Some(f) if f.with_ties || f.percent => {
            return Err(Error::unsupported("FETCH … WITH TIES / PERCENT"))
        }
        Some(_) if limit.is_some() => {
            return Err(Error::syntax("multiple LIMIT clauses not allowed"))
        }
        Some(f) => Some(
            f.quantity
                .clone()
                .unwrap_or_else(|| Expr::value(ast::Value::Number("1".into(), false))),
        ),
        None => limit,
    };
    let order_exprs: Vec<ast::OrderByExpr> = match &q.order_by {
        Some(ob) => match &ob.kind {
            ast::OrderByKind::Expressions(v) => v.clone(),
            ast::OrderByKind::All(_) => return Err(Error::unsupported("ORDER BY ALL")),
        },
        None => Vec::new(),
    };
    let select = match q.body.as_ref() {
        SetExpr::Select(s) => s,
        SetExpr::Values(v) => {
            let mut rows = Vec::new();
            let mut types: Vec<SqlType> = Vec::new();
            for r in &v.rows {
                if r.len() != v.rows[0].len() {
                    return Err(Error::new(
                        ErrorKind::Syntax,
                        "VALUES lists must all be the same length",
                    ));
                }
                let mut b = Binder::new(&[], params);
                let mut out = Vec::new();
                for (i, e) in r.iter().enumerate() {
                    let (s, t) = b.bind(e, None)?;
                    if types.len() <= i {
                        types.push(t);
                    } else {
                        types[i] = crate::sql::expr::common_type(types[i], t);
                    }
                    out.push(s);
                }
                rows.push(out);
            }
            let columns = types
                .iter()
                .enumerate()
                .map(|(i, t)| Column {
                    name: format!("column{}", i + 1),
                    ty: fix_unknown(*t),
                })
                .collect::<Vec<_>>();
            let mut plan = empty_plan(columns.clone());
            plan.values = Some(rows);
            return order_and_limit(plan, &columns, &order_exprs, &limit, &offset, params);
        }
        SetExpr::Query(inner)
            if q.order_by.is_none() && q.limit_clause.is_none() && q.fetch.is_none() =>
        {
            return plan_select(cat, db_id, path, inner, params);
        }
        SetExpr::SetOperation {
            op,
            set_quantifier,
            left,
            right,
        } => {
            let side = |body: &SetExpr| {
                let mut sq = q.clone();
                sq.body = Box::new(body.clone());
                sq.order_by = None;
                sq.limit_clause = None;
                sq.with = None;
                sq
            };
            let l = plan_select(cat, db_id, path, &side(left), params)?;
            let r = plan_select(cat, db_id, path, &side(right), params)?;
            let name = op.to_string().to_uppercase();
            // ORDER BY of a set operation names result columns (or their positions) only.
            for o in &order_exprs {
                if !matches!(
                    &o.expr,
                    Expr::Identifier(_)
                        | Expr::Value(ast::ValueWithSpan {
                            value: ast::Value::Number(..),
                            ..
                        })
                ) {
                    return Err(Error::new(
                        ErrorKind::FeatureNotSupported,
                        "invalid UNION/INTERSECT/EXCEPT ORDER BY clause",
                    )
                    .with_detail(
                        "Only result column names can be used, not expressions or functions.",
                    ));
                }
            }
            if l.columns.len() != r.columns.len() {
                return Err(Error::syntax(format!(
                    "each {name} query must have the same number of columns"
                )));
            }
            let mut columns = Vec::with_capacity(l.columns.len());
            // A bare NULL on one side takes the other side's type (`SELECT 1 UNION SELECT
            // NULL` is integer), as an untyped literal does in PostgreSQL.
            fn untyped(p: &SelectPlan, i: usize) -> bool {
                match &p.setop {
                    Some(so) => untyped(&so.left, i) && untyped(&so.right, i),
                    None => {
                        p.values.is_none()
                            && matches!(p.outputs.get(i), Some(Scalar::Const(Datum::Null)))
                    }
                }
            }
            for (i, (a, b)) in l.columns.iter().zip(&r.columns).enumerate() {
                let a_ty = if untyped(&l, i) {
                    SqlType::Unknown
                } else {
                    a.ty
                };
                let b_ty = if untyped(&r, i) {
                    SqlType::Unknown
                } else {
                    b.ty
                };
                let ty = set_op_type(a_ty, b_ty).ok_or_else(|| {
                    Error::mismatch(format!(
                        "{name} types {} and {} cannot be matched",
                        a.ty.name(),
                        b.ty.name()
                    ))
                })?;
                columns.push(Column {
                    name: a.name.clone(),
                    ty: fix_unknown(ty),
                });
            }
            let all = match set_quantifier {
                ast::SetQuantifier::All => true,
                ast::SetQuantifier::Distinct | ast::SetQuantifier::None => false,
                other => return Err(Error::unsupported(format!("{name} {other}"))),
            };
            let mut plan = empty_plan(columns.clone());
            plan.setop = Some(Box::new(SetOpPlan {
                op: *op,
                all,
                left: l,
                right: r,
            }));
            return order_and_limit(plan, &columns, &order_exprs, &limit, &offset, params);
        }
        _ => {
            return Err(Error::unsupported(
                "this kind of query is not supported yet",
            ))
        }
    };
    let (table, derived, join, scope) = plan_from(cat, db_id, path, &select.from, params)?;
    let filter = match &select.selection {
        Some(w) => {
            let mut b = Binder::new(&scope, params);
            let (s, t) = b.bind(w, Some(SqlType::Bool))?;
            if !matches!(t, SqlType::Bool | SqlType::Unknown) {
                return Err(Error::mismatch(format!(
                    "argument of WHERE must be type boolean, not type {}",
                    t.name()
                )));
            }
            Some(s)
        }
        None => None,
    };
    // Expand the select list.
    let mut items: Vec<(Expr, String)> = Vec::new();
    for item in &select.projection {
        match item {
            SelectItem::UnnamedExpr(e) => items.push((e.clone(), output_name(e))),
            SelectItem::ExprWithAlias { expr, alias } => {
                items.push((expr.clone(), ident_name(alias)))
            }
            SelectItem::QualifiedWildcard(kind, _) if table.is_none() => {
                let qual = match kind {
                    ast::SelectItemQualifiedWildcardKind::ObjectName(n) => object_name(n),
                    other => other.to_string().trim_matches('"').to_lowercase(),
                };
                if !scope
                    .iter()
                    .any(|c| c.table.as_deref() == Some(qual.as_str()))
                {
                    return Err(Error::new(
                        ErrorKind::UndefinedTable,
                        format!("missing FROM-clause entry for table \"{qual}\""),
                    ));
                }
                for c in scope
                    .iter()
                    .filter(|c| !c.hidden && c.table.as_deref() == Some(qual.as_str()))
                {
                    items.push((
                        Expr::CompoundIdentifier(vec![
                            ast::Ident::with_quote('"', qual.clone()),
                            ast::Ident::with_quote('"', c.name.clone()),
                        ]),
                        c.name.clone(),
                    ));
                }
            }
            SelectItem::Wildcard(_) if table.is_none() && !scope.is_empty() => {
                let mut visible: Vec<&ScopeColumn> = scope.iter().filter(|c| !c.hidden).collect();
                // JOIN … USING columns first (a stable sort keeps the rest in order).
                visible.sort_by_key(|c| c.star_order);
                for c in visible {
                    let e = match &c.table {
                        Some(t) => Expr::CompoundIdentifier(vec![
                            ast::Ident::with_quote('"', t.clone()),
                            ast::Ident::with_quote('"', c.name.clone()),
                        ]),
                        None => Expr::Identifier(ast::Ident::with_quote('"', c.name.clone())),
                    };
                    items.push((e, c.name.clone()));
                }
            }
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                let t = table.as_ref().ok_or_else(|| {
                    Error::syntax("SELECT * with no tables specified is not valid")
                })?;
                for (_, c) in t.visible_columns() {
                    items.push((
                        Expr::Identifier(ast::Ident::with_quote('"', c.name.clone())),
                        c.name.clone(),
                    ));
                }
            }
            _ => return Err(Error::unsupported("unsupported select item")),
        }
    }
    // GROUP BY: positions and output aliases refer to select items.
    let group_exprs: Vec<Expr> = match &select.group_by {
        ast::GroupByExpr::Expressions(v, _) => v
            .iter()
            .map(|e| resolve_output_ref(e, &items, &scope))
            .collect::<Result<_>>()?,
        ast::GroupByExpr::All(_) => return Err(Error::unsupported("GROUP BY ALL")),
    };
    let group_texts: Vec<String> = group_exprs.iter().map(|e| e.to_string()).collect();
    let mut group_by = Vec::new();
    let mut grouped_cols = Vec::new();
    for e in &group_exprs {
        let mut b = Binder::new(&scope, params);
        let (s, _) = b.bind(e, None)?;
        if let Scalar::Column(i) = s {
            grouped_cols.push(i);
        }
        group_by.push(s);
    }
    let has_agg = items.iter().any(|(e, _)| contains_agg(e))
        || select.having.as_ref().is_some_and(contains_agg);
    // HAVING alone makes the whole input one group (`SELECT 1 HAVING false`: no row).
    let grouped = has_agg || !group_by.is_empty() || select.having.is_some();
    let mut aggs = Vec::new();
    let mut windows = Vec::new();
    let mut outputs = Vec::new();
    let mut columns = Vec::new();
    let mut srfs = Vec::new();
    let mut srf_exprs = Vec::new();
    let mut hidden: Vec<(Scalar, SqlType)> = Vec::new();
    let mut hidden_scope: Vec<ScopeColumn> = Vec::new();
    for (e, name) in &items {
        if let Some((srf, args)) = select_srf(e) {
            if srf == "generate_series" {
                if grouped {
                    return Err(Error::unsupported(
                        "generate_series() in the select list of a grouped query",
                    ));
                }
                // The series as an array, unnested as `unnest` is.
                let mut b = Binder::new(&scope, params);
                let (series, ty) = series_array(&mut b, &args)?;
                srfs.push(SelectSrf {
                    output: outputs.len(),
                    array: ty,
                    subscripts_dim: None,
                    subscripts_reverse: None,
                    kind: SrfKind::Array,
                });
                outputs.push(series);
                columns.push(Column {
                    name: name.clone(),
                    ty: ty.array_elem().unwrap_or(SqlType::Int8),
                });
                continue;
            }
            if srf == "regexp_matches" {
                if grouped {
                    return Err(Error::unsupported(
                        "regexp_matches() in the select list of a grouped query",
                    ));
                }
                let mut b = Binder::new(&scope, params);
                let matches = b.bind(&regexp_matches_call(&args)?, None)?.0;
                srfs.push(SelectSrf {
                    output: outputs.len(),
                    array: SqlType::TextArray,
                    subscripts_dim: None,
                    subscripts_reverse: None,
                    kind: SrfKind::Array,
                });
                outputs.push(matches);
                columns.push(Column {
                    name: name.clone(),
                    ty: SqlType::TextArray,
                });
                continue;
            }
            let want = if srf == "unnest" { 1..=1 } else { 2..=3 };
            if grouped || !want.contains(&args.len()) {
                return Err(Error::unsupported(format!(
                    "{srf}() here: only {srf}({}) in the select list of an ungrouped query",
                    if srf == "unnest" {
                        "array"
                    } else {
                        "array, dim [, reverse]"
                    }
                )));
            }
            let mut b = Binder::new(&scope, params);
            let (array, ty) = b.bind(&args[0], None)?;
            let elem = ty.array_elem().ok_or_else(|| {
                Error::new(
                    ErrorKind::UndefinedFunction,
                    format!("function {srf}({}) does not exist", ty.name()),
                )
            })?;
            let subscripts_dim = match args.get(1) {
                Some(d) => Some(b.bind(d, Some(SqlType::Int4))?.0),
                None => None,
            };
            let subscripts_reverse = match args.get(2) {
                Some(r) => Some(b.bind(r, Some(SqlType::Bool))?.0),
                None => None,
            };
            srfs.push(SelectSrf {
                output: outputs.len(),
                array: ty,
                subscripts_dim: subscripts_dim.clone(),
                subscripts_reverse,
                kind: SrfKind::Array,
            });
            outputs.push(array);
            columns.push(Column {
                name: name.clone(),
                ty: if subscripts_dim.is_some() {
                    SqlType::Int4
                } else {
                    elem
                },
            });
            continue;
        }
        if !grouped {
            let mut hoisted = e.clone();
            let calls = hoist_srfs(&mut hoisted, hidden.len());
            if !calls.is_empty() {
                // Each call becomes a hidden output expanded as the others are; the item is
                // computed over the input row and their values.
                for call in &calls {
                    let (srf, args) = select_srf(call).ok_or_else(|| {
                        Error::internal("a hoisted call is not a set-returning function")
                    })?;
                    let mut b = Binder::new(&scope, params);
                    let (array, ty) = match srf {
                        "unnest" if args.len() == 1 => b.bind(&args[0], None)?,
                        "generate_series" => series_array(&mut b, &args)?,
                        _ => {
                            return Err(Error::unsupported(format!("{srf}() inside an expression")))
                        }
                    };
                    let elem = ty.array_elem().ok_or_else(|| {
                        Error::new(
                            ErrorKind::UndefinedFunction,
                            format!("function {srf}({}) does not exist", ty.name()),
                        )
                    })?;
                    hidden_scope.push(ScopeColumn {
                        hidden: true,
                        star_order: 0,
                        table: None,
                        schema: None,
                        name: format!("{HOISTED_SRF}{}", hidden.len()),
                        ty: elem,
                    });
                    hidden.push((array, ty));
                }
                let extended: Vec<ScopeColumn> =
                    scope.iter().chain(&hidden_scope).cloned().collect();
                let (s, t) = Binder::new(&extended, params).bind(&hoisted, None)?;
                srf_exprs.push((outputs.len(), s));
                outputs.push(Scalar::Const(Datum::Null));
                columns.push(Column {
                    name: name.clone(),
                    ty: fix_unknown(t),
                });
                continue;
            }
        }
        let mut b = Binder::new(&scope, params);
        b.windows = Some(&mut windows);
        if grouped {
            b.aggs = Some(&mut aggs);
            b.grouped = Some(grouped_cols.clone());
            b.group_exprs = group_texts.clone();
        }
        let (s, t) = b.bind(e, None)?;
        outputs.push(s);
        columns.push(Column {
            name: name.clone(),
            ty: fix_unknown(t),
        });
    }
    // The hidden outputs of set-returning functions inside expressions, after the visible
    // ones.
    let hidden_srfs = hidden.len();
    for (array, ty) in hidden {
        srfs.push(SelectSrf {
            output: outputs.len(),
            array: ty,
            subscripts_dim: None,
            subscripts_reverse: None,
            kind: SrfKind::Array,
        });
        outputs.push(array);
    }
    let having = match &select.having {
        Some(h) => {
            let mut b = Binder::new(&scope, params);
            b.aggs = Some(&mut aggs);
            b.grouped = Some(grouped_cols.clone());
            b.group_exprs = group_texts.clone();
            Some(b.bind(h, Some(SqlType::Bool))?.0)
        }
        None => None,
    };
    let item_texts: Vec<String> = items.iter().map(|(e, _)| e.to_string()).collect();
    // DISTINCT ON (exprs): sorted by after ORDER BY, and the first row of each value kept.
    let distinct_on_exprs: Vec<ast::OrderByExpr> = match &select.distinct {
        Some(ast::Distinct::On(exprs)) => exprs
            .iter()
            .map(|e| ast::OrderByExpr {
                expr: e.clone(),
                options: ast::OrderByOptions {
                    sort: None,
                    nulls_first: None,
                },
                with_fill: None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for (i, d) in distinct_on_exprs.iter().enumerate() {
        if let Some(o) = order_exprs.get(i) {
            if o.expr.to_string() != d.expr.to_string() {
                return Err(Error::new(
                    ErrorKind::InvalidColumnReference,
                    "SELECT DISTINCT ON expressions must match initial ORDER BY expressions",
                ));
            }
        }
    }
    let mut order = bind_order(
        &order_exprs,
        &columns,
        &item_texts,
        &scope,
        params,
        if grouped {
            Some((&mut aggs, grouped_cols.clone(), group_texts.clone()))
        } else {
            None
        },
    )?;
    let distinct_on = distinct_on_exprs.len();
    if distinct_on > 0 {
        order.extend(bind_order(
            &distinct_on_exprs,
            &columns,
            &item_texts,
            &scope,
            params,
            if grouped {
                Some((&mut aggs, grouped_cols.clone(), group_texts.clone()))
            } else {
                None
            },
        )?);
    }
    let distinct = matches!(select.distinct, Some(ast::Distinct::Distinct));
    if distinct && order.iter().any(|(k, _, _)| matches!(k, SortKey::Expr(_))) {
        return Err(Error::new(
            ErrorKind::InvalidColumnReference,
            "for SELECT DISTINCT, ORDER BY expressions must appear in select list",
        ));
    }
    Ok(SelectPlan {
        table,
        derived,
        join,
        scope,
        filter,
        aggs,
        group_by,
        having,
        grouped,
        outputs,
        columns,
        order,
        distinct,
        distinct_on,
        limit: bind_opt(&limit, params)?,
        offset: bind_opt(&offset, params)?,
        values: None,
        setop: None,
        windows,
        series: None,
        lock: None,
        srfs,
        srf_exprs,
        hidden_srfs,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

/// One relation of a join: a table or a subquery, and how many columns it brings.
struct JoinInput {
    table: Option<Rc<TableDesc>>,
    derived: Option<Box<SelectPlan>>,
    width: usize,
    /// A set-returning function in FROM whose arguments read columns of the relations
    /// before it (implicitly LATERAL, as PostgreSQL): `derived` is run once per row of
    /// what is joined so far, with that row as its input.
    lateral: bool,
    /// `LATERAL (subquery)` reading columns of the relations before it (`outer`): run once
    /// per row of what is joined so far, its references to them bound to that row.
    lateral_query: Option<Rc<(ast::Query, Vec<ScopeColumn>)>>,
}

/// `inputs[0]`, then each later input joined to everything before it.
struct JoinPlan {
    inputs: Vec<JoinInput>,
    steps: Vec<(JoinKind, Option<Scalar>)>,
}

type FromPlan = (
    Option<Rc<TableDesc>>,
    Option<Box<SelectPlan>>,
    Option<JoinPlan>,
    Vec<ScopeColumn>,
);

/// Plans one relation of FROM.
fn plan_relation(
    cat: &Catalog,
    db_id: u32,
    path: &catalog::SearchPath,
    rel: &TableFactor,
    outer: &[ScopeColumn],
    params: &mut Vec<SqlType>,
) -> Result<(JoinInput, Vec<ScopeColumn>)> {
    match rel {
        TableFactor::Table {
            name,
            alias,
            args: Some(fargs),
            with_ordinality,
            ..
        } if FROM_SRFS.contains(&object_name(name).as_str()) => {
            let mut exprs = Vec::new();
            for a in &fargs.args {
                let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) = a else {
                    return Err(Error::unsupported(format!(
                        "{}() arguments",
                        object_name(name)
                    )));
                };
                exprs.push(e);
            }
            plan_from_srf(
                &object_name(name),
                &exprs,
                alias.as_ref(),
                *with_ordinality,
                outer,
                params,
            )
        }
        TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset: false,
            with_ordinality,
            ..
        } => plan_from_srf(
            "unnest",
            &array_exprs.iter().collect::<Vec<_>>(),
            alias.as_ref(),
            *with_ordinality,
            outer,
            params,
        ),
        TableFactor::Table {
            name,
            alias,
            args: Some(fargs),
            ..
        } if object_name(name) == "generate_series" => {
            let mut bound = Vec::new();
            let mut ty = SqlType::Int8;
            let mut exprs = Vec::new();
            for a in &fargs.args {
                let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) = a else {
                    return Err(Error::unsupported("generate_series arguments"));
                };
                exprs.push(e);
            }
            // generate_series(timestamp[tz], timestamp[tz], interval): a date or an
            // untyped literal start makes it timestamptz, as PostgreSQL resolves it.
            let mut temporal = None;
            for e in exprs.iter().take(2) {
                match Binder::new(&[], params).bind(e, None)?.1 {
                    SqlType::Timestamp => temporal = temporal.or(Some(SqlType::Timestamp)),
                    SqlType::TimestampTz | SqlType::Date => temporal = Some(SqlType::TimestampTz),
                    _ => {}
                }
            }
            if let Some(ty) = temporal {
                let mut types = Vec::new();
                let mut wants = Vec::new();
                for (i, e) in exprs.iter().enumerate() {
                    let want = if i == 2 { SqlType::Interval } else { ty };
                    let (s, t) = Binder::new(&[], params).bind(e, Some(want))?;
                    types.push(t);
                    wants.push(want);
                    bound.push(s);
                }
                let fits = |t: SqlType, want: SqlType| {
                    t == want
                        || t == SqlType::Unknown
                        || want != SqlType::Interval
                            && matches!(
                                t,
                                SqlType::Timestamp | SqlType::TimestampTz | SqlType::Date
                            )
                };
                if types.len() != 3
                    || !fits(types[0], ty)
                    || !fits(types[1], ty)
                    || !fits(types[2], SqlType::Interval)
                {
                    return Err(crate::sql::scalar_functions::undefined(
                        "generate_series",
                        &types,
                    ));
                }
                let bound = bound
                    .into_iter()
                    .zip(wants)
                    .map(|(s, want)| crate::sql::expr::coerce_literal(s, want))
                    .collect::<Result<Vec<_>>>()?;
                return Ok(series_input(alias.as_ref(), ty, bound));
            }
            for e in exprs {
                let (s, t) = Binder::new(&[], params).bind(e, Some(SqlType::Int8))?;
                if !(t.is_numeric_family() || t == SqlType::Unknown) {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!("function generate_series({}) does not exist", t.name()),
                    ));
                }
                if t == SqlType::Numeric {
                    ty = SqlType::Numeric;
                } else if t == SqlType::Int4 && bound.is_empty() {
                    ty = SqlType::Int4;
                } else if t == SqlType::Int8 {
                    ty = SqlType::Int8;
                }
                bound.push(s);
            }
            if !(2..=3).contains(&bound.len()) {
                return Err(Error::new(
                    ErrorKind::UndefinedFunction,
                    "function generate_series takes 2 or 3 arguments",
                ));
            }
            Ok(series_input(alias.as_ref(), ty, bound))
        }
        TableFactor::Table { name, alias, .. } => {
            if let Some(vt) = pg_catalog::virtual_table(cat, db_id, name) {
                return Ok(virtual_input(vt, alias.as_ref()));
            }
            let t = lookup_relation(cat, db_id, path, name)?;
            if t.materialized.as_ref().is_some_and(|m| !m.populated) {
                return Err(materialized_views::not_populated(&t.name));
            }
            if let Some(sql) = &t.view {
                // A view: its query as a derived table, named after the view.
                let mut q = match crate::sql::session::parse(sql)?.pop() {
                    Some(Statement::Query(q)) => q,
                    _ => return Err(Error::internal(format!("view {} is not a query", t.name))),
                };
                udf::inline_calls(q.as_mut(), cat, db_id, path)?;
                rewrite::inline_ctes(q.as_mut())?;
                let alias_unset = alias.is_none();
                let alias = match alias {
                    Some(a) => a.clone(),
                    None => ast::TableAlias {
                        explicit: true,
                        name: ast::Ident::new(t.name.clone()),
                        columns: Vec::new(),
                        at: None,
                    },
                };
                let mut alias = alias;
                if alias.columns.is_empty() {
                    alias.columns = t
                        .columns
                        .iter()
                        .map(|c| ast::TableAliasColumnDef::from_name(c.name.clone()))
                        .collect();
                }
                let unaliased = alias_unset;
                let derived = TableFactor::Derived {
                    lateral: false,
                    subquery: q,
                    alias: Some(alias),
                    sample: None,
                };
                let (input, mut scope) = plan_relation(cat, db_id, path, &derived, outer, params)?;
                if unaliased {
                    let schema = cat.schema_name(t.schema_id);
                    for c in scope.iter_mut() {
                        c.schema = Some(schema.to_string());
                    }
                }
                return Ok((input, scope));
            }
            let alias_name = alias
                .as_ref()
                .map(|a| ident_name(&a.name))
                .unwrap_or_else(|| t.name.clone());
            let mut scope = table_scope(&t, &alias_name);
            // Only an unaliased table can be named with its schema (`s.t.c`).
            let schema = alias.is_none().then(|| t.schema.clone());
            for c in scope.iter_mut() {
                c.schema = schema.clone();
            }
            Ok((
                JoinInput {
                    width: scope.len(),
                    table: Some(t),
                    derived: None,
                    lateral: false,
                    lateral_query: None,
                },
                scope,
            ))
        }
        TableFactor::Derived {
            subquery,
            alias,
            lateral,
            ..
        } => {
            // LATERAL: planned (for its columns) with the references to the relations
            // before it as parameters of their types.
            let lateral_query = (*lateral && !outer.is_empty())
                .then(|| Rc::new(((**subquery).clone(), outer.to_vec())));
            let inner = match &lateral_query {
                Some(lq) => {
                    let mut q = lq.0.clone();
                    let mut ptypes = params.clone();
                    substitute_outer_refs(
                        cat,
                        db_id,
                        path,
                        &mut q,
                        outer,
                        &mut ptypes,
                        &mut |_| {},
                    )?;
                    plan_select(cat, db_id, path, &q, &mut ptypes)?
                }
                None => plan_select(cat, db_id, path, subquery, params)?,
            };
            let alias_name = alias.as_ref().map(|a| ident_name(&a.name));
            let renamed: Vec<String> = alias
                .as_ref()
                .map(|a| a.columns.iter().map(|c| ident_name(&c.name)).collect())
                .unwrap_or_default();
            let scope: Vec<ScopeColumn> = inner
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| ScopeColumn {
                    hidden: false,
                    star_order: 0,
                    table: alias_name.clone(),
                    schema: None,
                    name: renamed.get(i).cloned().unwrap_or_else(|| c.name.clone()),
                    ty: c.ty,
                })
                .collect();
            let input = match lateral_query {
                Some(lq) => JoinInput {
                    width: scope.len(),
                    table: None,
                    derived: None,
                    lateral: true,
                    lateral_query: Some(lq),
                },
                None => JoinInput {
                    width: scope.len(),
                    table: None,
                    derived: Some(Box::new(inner)),
                    lateral: false,
                    lateral_query: None,
                },
            };
            Ok((input, scope))
        }
        _ => Err(Error::unsupported(
            "this kind of FROM item is not supported yet",
        )),
    }
}

/// A catalog table ([`pg_catalog`]): its rows as a VALUES list, named like a table.
fn virtual_input(
    vt: pg_catalog::VirtualTable,
    alias: Option<&ast::TableAlias>,
) -> (JoinInput, Vec<ScopeColumn>) {
    let schema = alias.is_none().then(|| vt.schema.to_string());
    let table = alias.map(|a| ident_name(&a.name)).unwrap_or(vt.name);
    let scope = vt
        .columns
        .iter()
        .map(|c| ScopeColumn {
            hidden: false,
            star_order: 0,
            table: Some(table.clone()),
            schema: schema.clone(),
            name: c.name.clone(),
            ty: c.ty,
        })
        .collect::<Vec<_>>();
    let mut plan = empty_plan(vt.columns);
    plan.values = Some(
        vt.rows
            .into_iter()
            .map(|r| r.into_iter().map(Scalar::Const).collect())
            .collect(),
    );
    (
        JoinInput {
            width: scope.len(),
            table: None,
            derived: Some(Box::new(plan)),
            lateral: false,
            lateral_query: None,
        },
        scope,
    )
}

/// Adds the relation names (or aliases) of FROM item `s` to `names`, failing (42712) on
/// one already there: two relations with the same name or alias cannot be told apart,
/// unless both are unaliased tables of different schemas (`FROM s1.a, s2.a`).
fn note_names(names: &mut Vec<(Option<String>, String)>, s: &[ScopeColumn]) -> Result<()> {
    let mut mine: Vec<(Option<&str>, &str)> = s
        .iter()
        .filter_map(|c| Some((c.schema.as_deref(), c.table.as_deref()?)))
        .collect();
    mine.sort_unstable();
    mine.dedup();
    for (s1, n1) in mine {
        for (s2, n2) in names.iter() {
            let distinct = matches!((s1, s2), (Some(a), Some(b)) if a != b);
            if n1 == n2 && !distinct {
                return Err(Error::new(
                    ErrorKind::DuplicateAlias,
                    format!("table name \"{n1}\" specified more than once"),
                ));
            }
        }
        names.push((s1.map(String::from), n1.to_string()));
    }
    Ok(())
}

/// Plans FROM: nothing, one table, one subquery, or a join of several.
fn plan_from(
    cat: &Catalog,
    db_id: u32,
    path: &catalog::SearchPath,
    from: &[ast::TableWithJoins],
    params: &mut Vec<SqlType>,
) -> Result<FromPlan> {
    let mut inputs = Vec::new();
    let mut steps = Vec::new();
    let mut scope: Vec<ScopeColumn> = Vec::new();
    // Each relation's name (or alias), once per relation.
    let mut relation_names: Vec<(Option<String>, String)> = Vec::new();
    for twj in from {
        let (input, s) = plan_relation(cat, db_id, path, &twj.relation, &scope, params)?;
        if !inputs.is_empty() {
            steps.push((JoinKind::Inner, None));
        }
        inputs.push(input);
        note_names(&mut relation_names, &s)?;
        scope.extend(s);
        for j in &twj.joins {
            let (input, s) = plan_relation(cat, db_id, path, &j.relation, &scope, params)?;
            note_names(&mut relation_names, &s)?;
            inputs.push(input);
            let left_len = scope.len();
            scope.extend(s);
            use ast::JoinOperator as J;
            let (kind, constraint) = match &j.join_operator {
                J::Join(c) | J::Inner(c) => (JoinKind::Inner, Some(c)),
                J::Left(c) | J::LeftOuter(c) => (JoinKind::Left, Some(c)),
                J::Right(c) | J::RightOuter(c) => (JoinKind::Right, Some(c)),
                J::FullOuter(c) => (JoinKind::Full, Some(c)),
                J::CrossJoin(_) => (JoinKind::Inner, None),
                _ => return Err(Error::unsupported("this kind of join is not supported yet")),
            };
            let cond = match constraint {
                Some(ast::JoinConstraint::On(e)) => {
                    let (s, _) = Binder::new(&scope, params).bind(e, Some(SqlType::Bool))?;
                    Some(s)
                }
                Some(ast::JoinConstraint::None) | None => None,
                Some(ast::JoinConstraint::Using(cols)) => {
                    let names: Vec<String> = cols.iter().map(object_name).collect();
                    using_condition(&mut scope, left_len, &names)?
                }
                Some(ast::JoinConstraint::Natural) => {
                    let names: Vec<String> = scope[left_len..]
                        .iter()
                        .filter(|c| !c.hidden)
                        .filter(|c| {
                            scope[..left_len]
                                .iter()
                                .any(|l| !l.hidden && l.name == c.name)
                        })
                        .map(|c| c.name.clone())
                        .collect();
                    using_condition(&mut scope, left_len, &names)?
                }
                Some(_) => return Err(Error::unsupported("JOIN … USING … AS")),
            };
            steps.push((kind, cond));
        }
    }
    if inputs.len() == 1 {
        let input = inputs.pop().unwrap();
        return Ok((input.table, input.derived, None, scope));
    }
    if inputs.is_empty() {
        return Ok((None, None, None, scope));
    }
    Ok((None, None, Some(JoinPlan { inputs, steps }), scope))
}

/// The condition of `JOIN … USING (names)` between `scope[..left_len]` and the relation
/// after it; the right-hand copies of the columns become hidden (one copy in `*`, and an
/// unqualified name means the left one).
fn using_condition(
    scope: &mut [ScopeColumn],
    left_len: usize,
    names: &[String],
) -> Result<Option<Scalar>> {
    let mut cond: Option<Scalar> = None;
    let base = scope.iter().map(|c| c.star_order).min().unwrap_or(0).min(0);
    for (position, n) in names.iter().enumerate() {
        let left: Vec<usize> = (0..left_len)
            .filter(|&i| !scope[i].hidden && scope[i].name == *n)
            .collect();
        let li = match left.as_slice() {
            [i] => *i,
            [] => {
                return Err(Error::new(
                    ErrorKind::UndefinedColumn,
                    format!(
                        "column \"{n}\" specified in USING clause does not exist in left table"
                    ),
                ))
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::AmbiguousColumn,
                    format!("common column name \"{n}\" appears more than once in left table"),
                ))
            }
        };
        let ri = (left_len..scope.len())
            .find(|&i| !scope[i].hidden && scope[i].name == *n)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::UndefinedColumn,
                    format!(
                        "column \"{n}\" specified in USING clause does not exist in right table"
                    ),
                )
            })?;
        scope[ri].hidden = true;
        // `*` lists the USING columns first, in USING order, then the rest.
        scope[li].star_order = base - (names.len() - position) as i64;
        let eq = Scalar::Binary(
            BinOp::Eq,
            Box::new(Scalar::Column(li)),
            Box::new(Scalar::Column(ri)),
            SqlType::Bool,
        );
        cond = Some(match cond {
            Some(c) => Scalar::Binary(BinOp::And, Box::new(c), Box::new(eq), SqlType::Bool),
            None => eq,
        });
    }
    Ok(cond)
}

/// ORDER BY, LIMIT and OFFSET of a plan whose rows pass through as they are (VALUES, set
/// operations): ORDER BY names its output columns.
fn order_and_limit(
    mut plan: SelectPlan,
    columns: &[Column],
    order_exprs: &[ast::OrderByExpr],
    limit: &Option<Expr>,
    offset: &Option<Expr>,
    params: &mut Vec<SqlType>,
) -> Result<SelectPlan> {
    let scope: Vec<ScopeColumn> = columns
        .iter()
        .map(|c| ScopeColumn {
            hidden: false,
            star_order: 0,
            table: None,
            schema: None,
            name: c.name.clone(),
            ty: c.ty,
        })
        .collect();
    plan.order = bind_order(order_exprs, columns, &[], &scope, params, None)?;
    plan.limit = bind_opt(limit, params)?;
    plan.offset = bind_opt(offset, params)?;
    Ok(plan)
}

fn empty_plan(columns: Vec<Column>) -> SelectPlan {
    SelectPlan {
        table: None,
        derived: None,
        join: None,
        scope: Vec::new(),
        filter: None,
        aggs: Vec::new(),
        group_by: Vec::new(),
        having: None,
        grouped: false,
        outputs: Vec::new(),
        columns,
        order: Vec::new(),
        distinct: false,
        distinct_on: 0,
        limit: None,
        offset: None,
        values: None,
        setop: None,
        windows: Vec::new(),
        series: None,
        lock: None,
        srfs: Vec::new(),
        srf_exprs: Vec::new(),
        hidden_srfs: 0,
    }
}

fn bind_opt(e: &Option<Expr>, params: &mut Vec<SqlType>) -> Result<Option<Scalar>> {
    match e {
        Some(e) => {
            let mut b = Binder::new(&[], params);
            Ok(Some(b.bind(e, Some(SqlType::Int8))?.0))
        }
        None => Ok(None),
    }
}

/// `GROUP BY 1` / `GROUP BY alias` → the select item's expression.
fn resolve_output_ref(e: &Expr, items: &[(Expr, String)], scope: &[ScopeColumn]) -> Result<Expr> {
    if let Expr::Value(v) = e {
        if let ast::Value::Number(n, _) = &v.value {
            let i: usize = n
                .parse()
                .map_err(|_| Error::syntax("non-integer constant in GROUP BY"))?;
            return items
                .get(i.wrapping_sub(1))
                .map(|(e, _)| e.clone())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidColumnReference,
                        format!("GROUP BY position {i} is not in select list"),
                    )
                });
        }
    }
    if let Expr::Identifier(id) = e {
        let n = ident_name(id);
        if !scope.iter().any(|c| c.name == n) {
            if let Some((e, _)) = items.iter().find(|(_, name)| *name == n) {
                return Ok(e.clone());
            }
        }
    }
    Ok(e.clone())
}

/// ORDER BY keys: a position or an output column's name is that output, as is an
/// expression written exactly as a select item (`item_texts`); anything else is bound over
/// the input.
fn bind_order(
    order: &[ast::OrderByExpr],
    columns: &[Column],
    item_texts: &[String],
    scope: &[ScopeColumn],
    params: &mut Vec<SqlType>,
    mut agg: Option<(&mut Vec<AggCall>, Vec<usize>, Vec<String>)>,
) -> Result<Vec<(SortKey, bool, bool)>> {
    let mut out = Vec::new();
    for o in order {
        let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
        let nulls_first = o.options.nulls_first.unwrap_or(desc);
        let key = match &o.expr {
            Expr::Value(v) if matches!(v.value, ast::Value::Number(..)) => {
                let ast::Value::Number(n, _) = &v.value else {
                    unreachable!()
                };
                let i: usize = n
                    .parse()
                    .map_err(|_| Error::syntax("non-integer constant in ORDER BY"))?;
                if i == 0 || i > columns.len() {
                    return Err(Error::new(
                        ErrorKind::InvalidColumnReference,
                        format!("ORDER BY position {i} is not in select list"),
                    ));
                }
                SortKey::Output(i - 1)
            }
            Expr::Identifier(id)
                if columns.iter().filter(|c| c.name == ident_name(id)).count() == 1 =>
            {
                SortKey::Output(
                    columns
                        .iter()
                        .position(|c| c.name == ident_name(id))
                        .unwrap(),
                )
            }
            e if item_texts.iter().any(|t| *t == e.to_string()) => {
                let text = e.to_string();
                SortKey::Output(item_texts.iter().position(|t| *t == text).unwrap_or(0))
            }
            e => {
                let mut b = Binder::new(scope, params);
                if let Some((aggs, cols, texts)) = agg.as_mut() {
                    b.aggs = Some(aggs);
                    b.grouped = Some(cols.clone());
                    b.group_exprs = texts.clone();
                }
                let (s, ty) = b.bind(e, None)?;
                match ty.array_elem() {
                    // Arrays sort element by element, not by their text.
                    Some(elem) if !ty.is_vector() => SortKey::Expr(Scalar::Func(
                        "__array_sort_key".into(),
                        vec![s, Scalar::Const(Datum::Int(i64::from(elem.tag())))],
                        SqlType::Bytea,
                    )),
                    _ => SortKey::Expr(s),
                }
            }
        };
        out.push((key, desc, nulls_first));
    }
    Ok(out)
}

fn contains_agg(e: &Expr) -> bool {
    crate::sql::expr::contains_aggregate(e)
}

/// Types the columns of correlated subqueries in `orig`'s SELECT list (stubbed as NULL in
/// `stubbed`) by planning each against the outer query's scope.
fn correlated_select_types(
    cat: &Catalog,
    db_id: u32,
    path: &catalog::SearchPath,
    orig: &ast::Query,
    stubbed: &ast::Query,
    cols: &mut [Column],
    params: &[SqlType],
) {
    let SetExpr::Select(sel) = orig.body.as_ref() else {
        return;
    };
    if sel.projection.len() != cols.len() {
        return;
    }
    let mut ptypes = params.to_vec();
    let Ok(outer) = plan_select(cat, db_id, path, stubbed, &mut ptypes) else {
        return;
    };
    for (k, item) in sel.projection.iter().enumerate() {
        let (SelectItem::UnnamedExpr(Expr::Subquery(q))
        | SelectItem::ExprWithAlias {
            expr: Expr::Subquery(q),
            ..
        }) = item
        else {
            continue;
        };
        let mut q = (**q).clone();
        let mut ptypes = params.to_vec();
        let substituted = substitute_outer_refs(
            cat,
            db_id,
            path,
            &mut q,
            &outer.scope,
            &mut ptypes,
            &mut |_| {},
        );
        if substituted.is_err() {
            continue;
        }
        if let Ok(p) = plan_select(cat, db_id, path, &q, &mut ptypes) {
            if let Some(c) = p.columns.first() {
                cols[k].ty = c.ty;
            }
        }
    }
}

/// The result columns of a statement, for Describe.
pub fn describe(
    cat: &Catalog,
    db_id: u32,
    path: &catalog::SearchPath,
    stmt: &Statement,
    params: &mut Vec<SqlType>,
) -> Result<Option<Vec<Column>>> {
    if udf::applies_to(stmt) && udf::calls_functions(stmt, cat, db_id) {
        let mut s = stmt.clone();
        if udf::inline_calls(&mut s, cat, db_id, path)? {
            return describe(cat, db_id, path, &s, params);
        }
    }
    if pg_catalog::needs_rewrite(stmt) {
        let mut s = stmt.clone();
        pg_catalog::rewrite(&mut s, cat, db_id, path)?;
        if rewrite::needs_rewrite(&s) {
            stub_subqueries(cat, db_id, path, &mut s, params)?;
        }
        if let Statement::Query(q) = &s {
            return Ok(Some(plan_select(cat, db_id, path, q, params)?.columns));
        }
    }
    if rewrite::needs_rewrite(stmt) {
        let mut s = stmt.clone();
        if let Some(assignments) = multi_assign::assignments_mut(&mut s) {
            multi_assign::split_for_describe(assignments)?;
        }
        stub_subqueries(cat, db_id, path, &mut s, params)?;
        let mut columns = describe(cat, db_id, path, &s, params)?;
        if let (Some(cols), Statement::Query(orig), Statement::Query(stubbed)) =
            (columns.as_mut(), stmt, &s)
        {
            correlated_select_types(cat, db_id, path, orig, stubbed, cols, params);
        }
        return Ok(columns);
    }
    Ok(match stmt {
        Statement::Query(q) => Some(plan_select(cat, db_id, path, q, params)?.columns),
        Statement::Insert(ins) if marked(ins, SPLIT_MARKER) => Some(split_at_columns()),
        Statement::Insert(ins) if marked(ins, RANGE_FOR_ROW_MARKER) => Some(show_ranges_columns()),
        Statement::Explain { .. } => Some(vec![Column {
            name: "info".into(),
            ty: SqlType::Text,
        }]),
        Statement::Insert(ins) => {
            let ast::TableObject::TableName(name) = &ins.table else {
                return Err(Error::unsupported("INSERT into a table function"));
            };
            let t = lookup_table(cat, db_id, path, name)?;
            materialized_views::refuse_write(&t, materialized_views::Write::Dml)?;
            let cols = insert_columns(&t, &ins.columns)?;
            // Parameters in VALUES take the type of their column.
            if let Some(src) = &ins.source {
                if let SetExpr::Values(v) = src.body.as_ref() {
                    for row in &v.rows {
                        let mut b = Binder::new(&[], params);
                        for (i, e) in row.iter().enumerate() {
                            if let Some(ci) = cols.get(i) {
                                if !is_default(e) {
                                    b.bind(e, Some(t.columns[*ci].ty))?;
                                }
                            }
                        }
                    }
                }
            }
            returning_columns(&t, &ins.returning, params)?
        }
        Statement::Update(u) => {
            let (t, alias) = match &u.table.relation {
                TableFactor::Table { name, alias, .. } => {
                    let t = lookup_table(cat, db_id, path, name)?;
                    materialized_views::refuse_write(&t, materialized_views::Write::Dml)?;
                    (t, alias)
                }
                _ => return Err(Error::unsupported("UPDATE of a non-table")),
            };
            let from = dml_join::update_from(u);
            let scope = if from.is_empty() {
                let a = alias.as_ref().map(|a| ident_name(&a.name));
                let scope = table_scope(&t, a.as_deref().unwrap_or(&t.name));
                if let Some(w) = &u.selection {
                    Binder::new(&scope, params).bind(w, Some(SqlType::Bool))?;
                }
                scope
            } else {
                let (rel, sel) = (&u.table.relation, u.selection.as_ref());
                dml_join::plan_dml_join(cat, db_id, path, rel, from, sel, params)?.scope
            };
            for a in &multi_assign::expand_assignments(&u.assignments)? {
                if let ast::AssignmentTarget::ColumnName(n) = &a.target {
                    if let Some(ci) = t.column_index(&object_name(n)) {
                        Binder::new(&scope, params).bind(&a.value, Some(t.columns[ci].ty))?;
                    }
                }
            }
            match &u.returning {
                Some(items) => Some(dml_join::bind_returning_scoped(&scope, items, params)?.1),
                None => None,
            }
        }
        Statement::Delete(d) => {
            let target = delete_target(d)?;
            let t = lookup_table(cat, db_id, path, delete_table(d)?)?;
            materialized_views::refuse_write(&t, materialized_views::Write::Dml)?;
            let using = d.using.as_deref().unwrap_or_default();
            let scope = if using.is_empty() {
                let alias = match target {
                    TableFactor::Table { alias: Some(a), .. } => ident_name(&a.name),
                    _ => t.name.clone(),
                };
                let scope = table_scope(&t, &alias);
                if let Some(w) = &d.selection {
                    Binder::new(&scope, params).bind(w, Some(SqlType::Bool))?;
                }
                scope
            } else {
                let sel = d.selection.as_ref();
                dml_join::plan_dml_join(cat, db_id, path, target, using, sel, params)?.scope
            };
            match &d.returning {
                Some(items) => Some(dml_join::bind_returning_scoped(&scope, items, params)?.1),
                None => None,
            }
        }
        Statement::ShowTables { .. } => Some(show_tables_columns()),
        Statement::ShowVariable { variable } if show_ranges_table(variable).is_some() => {
            Some(show_ranges_columns())
        }
        Statement::ShowVariable { variable } if is_show_jobs(variable) => {
            Some(crate::sql::jobs::columns())
        }
        Statement::ShowVariable { variable } if show_statistics_of(variable).is_some() => {
            Some(analyze::show_statistics_columns())
        }
        Statement::ShowVariable { variable } if show_index_entries_of(variable).is_some() => {
            Some(index_entries_columns())
        }
        Statement::ShowDatabases { .. } => Some(show_databases_columns()),
        Statement::ShowVariable { variable }
            if variable
                .last()
                .is_some_and(|i| i.value.eq_ignore_ascii_case("settings")) =>
        {
            Some(
                ["variable", "value", "description"]
                    .iter()
                    .map(|n| Column {
                        name: (*n).into(),
                        ty: SqlType::Text,
                    })
                    .collect(),
            )
        }
        Statement::ShowVariable { variable }
            if variable.len() > 2
                && variable[0].value.eq_ignore_ascii_case("cluster")
                && variable[1].value.eq_ignore_ascii_case("setting") =>
        {
            Some(vec![Column {
                name: variable[2..]
                    .iter()
                    .map(|i| i.value.to_lowercase())
                    .collect::<Vec<_>>()
                    .join("."),
                ty: SqlType::Text,
            }])
        }
        Statement::ShowVariable { variable } => Some(vec![Column {
            name: variable
                .iter()
                .map(|i| i.value.to_lowercase())
                .collect::<Vec<_>>()
                .join("_"),
            ty: SqlType::Text,
        }]),
        _ => None,
    })
}

/// The query inside the pre-parser's `AS OF SYSTEM TIME` wrapper and the clause's value.
fn as_of_system_time(q: &ast::Query) -> Option<(&ast::Query, &str)> {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let [from] = s.from.as_slice() else {
        return None;
    };
    match &from.relation {
        TableFactor::Derived {
            subquery,
            alias: Some(alias),
            ..
        } if from.joins.is_empty() => alias
            .name
            .value
            .strip_prefix(crate::sql::preparse::AS_OF_MARKER)
            .map(|v| (subquery.as_ref(), v)),
        _ => None,
    }
}

/// The timestamp `AS OF SYSTEM TIME <value>` names: a negative interval before `now`
/// (`'-10s'`, `'-1m30s'`, `'-500ms'`), an absolute timestamp, an HLC decimal
/// (`cluster_logical_timestamp()`'s format), `now()` or `follower_read_timestamp()`.
fn as_of_timestamp(
    value: &str,
    now: chitin_storage::Timestamp,
) -> Result<chitin_storage::Timestamp> {
    use chitin_storage::Timestamp;
    let bad = |why: &str| {
        Error::new(
            ErrorKind::InvalidParameterValue,
            format!("AS OF SYSTEM TIME: {why}"),
        )
    };
    let hlc_decimal = |v: &str| -> Option<Timestamp> {
        let (wall, frac) = v.split_once('.').unwrap_or((v, ""));
        if wall.is_empty() || !wall.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if frac.len() > 10 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let logical = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<10}").parse::<u64>().ok()?
        };
        Some(Timestamp::new(
            wall.parse().ok()?,
            u32::try_from(logical).ok()?,
        ))
    };
    let (kind, v) = value.split_at(2.min(value.len()));
    let ts = match kind {
        "f:" => match v {
            "now" | "current_timestamp" | "statement_timestamp" | "transaction_timestamp" => now,
            "follower_read_timestamp" => Timestamp::new(now.wall.saturating_sub(4_800_000_000), 0),
            other => return Err(bad(&format!("unknown function {other}()"))),
        },
        "n:" => hlc_decimal(v).ok_or_else(|| bad(&format!("invalid timestamp {v}")))?,
        _ => {
            let v = v.trim();
            if let Some(d) = v.strip_prefix('-') {
                let nanos = parse_duration_nanos(d)
                    .ok_or_else(|| bad(&format!("invalid interval '{v}'")))?;
                Timestamp::new(now.wall.saturating_sub(nanos), 0)
            } else if let Some(ts) = hlc_decimal(v) {
                ts
            } else if let Some((micros, offset)) = crate::sql::types::parse_timestamp(v) {
                let micros = micros - offset.unwrap_or(0) * 1_000_000;
                let nanos = u64::try_from(micros)
                    .ok()
                    .and_then(|m| m.checked_mul(1000))
                    .ok_or_else(|| bad("timestamp before 1970"))?;
                Timestamp::new(nanos, 0)
            } else {
                return Err(bad(&format!("invalid value '{v}'")));
            }
        }
    };
    if ts > now {
        return Err(bad("cannot specify timestamp in the future"));
    }
    Ok(ts)
}

/// `10s`, `1m30s`, `500ms`, `2h`, `10 seconds` → nanoseconds.
fn parse_duration_nanos(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = rest[n..].trim_start();
        let u = rest
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" | "nanosecond" | "nanoseconds" => 1.0,
            "us" | "µs" | "microsecond" | "microseconds" => 1e3,
            "ms" | "millisecond" | "milliseconds" => 1e6,
            "s" | "sec" | "secs" | "second" | "seconds" | "" => 1e9,
            "m" | "min" | "mins" | "minute" | "minutes" => 60e9,
            "h" | "hour" | "hours" => 3600e9,
            _ => return None,
        };
        total += value * unit;
        rest = rest[u..].trim_start();
    }
    (total.is_finite() && total >= 0.0).then_some(total as u64)
}

/// The session's `statement_timeout` as a duration; None for 0 (no limit) or a value
/// that does not parse. A bare number is milliseconds, as in PostgreSQL.
fn statement_timeout(v: &str) -> Option<std::time::Duration> {
    let v = v.trim().trim_matches('\'');
    let nanos = match v.parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms >= 0.0 => (ms * 1e6) as u64,
        Ok(_) => return None,
        Err(_) => match v.strip_suffix('d') {
            Some(days) => (days.trim().parse::<f64>().ok()? * 86_400e9) as u64,
            None => parse_duration_nanos(v)?,
        },
    };
    (nanos > 0).then(|| std::time::Duration::from_nanos(nanos))
}

/// The type of a column of a set operation whose sides have types `a` and `b`.
fn set_op_type(a: SqlType, b: SqlType) -> Option<SqlType> {
    use SqlType::*;
    let numeric = |t| matches!(t, Int2 | Int4 | Int8 | Float4 | Float8 | Numeric);
    let text = |t| matches!(t, Text | Varchar);
    Some(match (a, b) {
        (Unknown, t) | (t, Unknown) => t,
        (a, b) if a == b => a,
        (a, b) if numeric(a) && numeric(b) => crate::sql::expr::common_type(a, b),
        (a, b) if text(a) && text(b) => Text,
        (Timestamp, TimestampTz) | (TimestampTz, Timestamp) => TimestampTz,
        _ => return None,
    })
}

/// Combines the rows of a set operation's sides (NULLs equal each other here).
fn combine_set_op(
    op: ast::SetOperator,
    all: bool,
    left: Vec<Vec<Datum>>,
    right: Vec<Vec<Datum>>,
) -> Vec<Vec<Datum>> {
    use std::collections::HashMap;
    let key = |r: &[Datum]| {
        let mut k = Vec::new();
        for d in r {
            encode_key_datum(d, &mut k);
        }
        k
    };
    match op {
        ast::SetOperator::Union => {
            let mut out = left;
            out.extend(right);
            if !all {
                let mut seen = HashSet::new();
                out.retain(|r| seen.insert(key(r)));
            }
            out
        }
        ast::SetOperator::Intersect | ast::SetOperator::Except => {
            let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
            for r in &right {
                *counts.entry(key(r)).or_default() += 1;
            }
            let intersect = op == ast::SetOperator::Intersect;
            let mut emitted = HashSet::new();
            let mut out = Vec::new();
            for r in left {
                let k = key(&r);
                let in_right = counts.get(&k).copied().unwrap_or(0) > 0;
                let keep = if all {
                    if in_right {
                        *counts.get_mut(&k).unwrap() -= 1;
                    }
                    in_right == intersect
                } else {
                    in_right == intersect && emitted.insert(k)
                };
                if keep {
                    out.push(r);
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// True for a subquery's error that means it names something of the outer query.
fn is_outer_reference_error(e: &Error) -> bool {
    matches!(
        e.kind,
        ErrorKind::UndefinedColumn | ErrorKind::UndefinedTable
    )
}

/// The type of a subquery's only column (42601 when it has several).
fn one_column(cols: &[Column]) -> Result<SqlType> {
    match cols {
        [c] => Ok(c.ty),
        _ => Err(Error::syntax("subquery must return only one column")),
    }
}

/// Replaces a statement's subqueries with typed NULLs (planning them for their types) and
/// inlines its CTEs: enough to describe it without running anything.
fn stub_subqueries<T: sqlparser::ast::VisitMut>(
    cat: &Catalog,
    db_id: u32,
    path: &catalog::SearchPath,
    node: &mut T,
    params: &mut Vec<SqlType>,
) -> Result<()> {
    use rewrite::{Extracted, Replacement};
    rewrite::inline_ctes_for_describe(node)?;
    let mut reps = Vec::new();
    for e in rewrite::extract_subqueries(node) {
        reps.push(Some(match e {
            Extracted::Scalar(mut q) => {
                stub_subqueries(cat, db_id, path, q.as_mut(), params)?;
                match plan_select(cat, db_id, path, &q, params) {
                    Ok(plan) => {
                        let ty = one_column(&plan.columns)?;
                        Replacement::Value(Box::new(rewrite::typed_null(fix_unknown(ty).name())))
                    }
                    // Correlated: its type shows when it runs.
                    Err(e) if is_outer_reference_error(&e) => {
                        Replacement::Value(Box::new(Expr::Value(ast::Value::Null.into())))
                    }
                    Err(e) => return Err(rewrite::subquery_error(e)),
                }
            }
            Extracted::In(mut q, _, _) | Extracted::Quantified(mut q) => {
                stub_subqueries(cat, db_id, path, q.as_mut(), params)?;
                match plan_select(cat, db_id, path, &q, params) {
                    Ok(plan) => {
                        let ty = one_column(&plan.columns)?;
                        Replacement::List(vec![rewrite::typed_null(fix_unknown(ty).name())])
                    }
                    Err(e) if is_outer_reference_error(&e) => {
                        Replacement::List(vec![Expr::Value(ast::Value::Null.into())])
                    }
                    Err(e) => return Err(rewrite::subquery_error(e)),
                }
            }
            Extracted::Exists(..) => {
                Replacement::Value(Box::new(Expr::Value(ast::Value::Boolean(true).into())))
            }
        }));
    }
    rewrite::put_back(node, reps);
    Ok(())
}

/// What a plan's input already is with respect to its ORDER BY.
#[derive(Debug)]
pub(crate) enum Presorted {
    No,
    /// In the ORDER BY's order (a primary key prefix read in key order).
    InOrder,
    /// Consecutive sorted runs of these lengths (DistSQL flows sorted their answers).
    Runs(Vec<usize>),
}

/// One run's next row in [`merge_runs`]'s heap: the smallest comes out first, ties in run
/// order.
struct RunHead<'a> {
    item: (Vec<Datum>, Vec<Datum>),
    run: usize,
    dirs: &'a [(bool, bool)],
}

impl Ord for RunHead<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        cmp_sort_keys(&other.item.1, &self.item.1, self.dirs).then(other.run.cmp(&self.run))
    }
}

impl PartialOrd for RunHead<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for RunHead<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for RunHead<'_> {}

/// Merges `rows` (row, sort keys), consecutive runs of the lengths `runs` each sorted by
/// `dirs`, into one sorted sequence: n log(runs) comparisons instead of a sort's n log n.
fn merge_runs(
    rows: Vec<(Vec<Datum>, Vec<Datum>)>,
    runs: &[usize],
    dirs: &[(bool, bool)],
) -> Vec<(Vec<Datum>, Vec<Datum>)> {
    let total = rows.len();
    if runs.iter().sum::<usize>() != total {
        let mut rows = rows;
        rows.sort_by(|a, b| cmp_sort_keys(&a.1, &b.1, dirs));
        return rows;
    }
    let mut rest = rows.into_iter();
    let mut iters: Vec<std::vec::IntoIter<(Vec<Datum>, Vec<Datum>)>> = runs
        .iter()
        .map(|&n| rest.by_ref().take(n).collect::<Vec<_>>().into_iter())
        .collect();
    let mut heap = std::collections::BinaryHeap::with_capacity(iters.len());
    for (run, it) in iters.iter_mut().enumerate() {
        if let Some(item) = it.next() {
            heap.push(RunHead { item, run, dirs });
        }
    }
    let mut out = Vec::with_capacity(total);
    while let Some(RunHead { item, run, .. }) = heap.pop() {
        out.push(item);
        if let Some(item) = iters[run].next() {
            heap.push(RunHead { item, run, dirs });
        }
    }
    out
}

/// Compares sort keys by `(descending, nulls first)` per key.
pub(crate) fn cmp_sort_keys(a: &[Datum], b: &[Datum], dirs: &[(bool, bool)]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for (i, (desc, nulls_first)) in dirs.iter().enumerate() {
        let (x, y) = (&a[i], &b[i]);
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if *nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if *nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            _ => {
                let o = x.order_cmp(y);
                if *desc {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// True when every output is a plain column (one of the first 64) and none is repeated.
fn plain_columns(outputs: &[Scalar]) -> bool {
    let mut seen = 0u64;
    outputs.iter().all(|o| match o {
        Scalar::Column(i) if *i < 64 && seen & (1 << i) == 0 => {
            seen |= 1 << i;
            true
        }
        _ => false,
    })
}

/// True when `ins` carries the pre-parser's marker assignment `marker`.
fn marked(ins: &ast::Insert, marker: &str) -> bool {
    matches!(&ins.on, Some(ast::OnInsert::OnConflict(oc))
        if matches!(&oc.action, ast::OnConflictAction::DoUpdate(du)
            if du.assignments.len() == 1
                && du.assignments[0].target.to_string().trim_matches('"') == marker))
}

/// A statement's answer: `rows` under `columns`, tagged `SELECT n`.
fn select_rows(rows: Vec<Vec<Datum>>, columns: Vec<Column>) -> (Outcome, Option<Vec<Column>>) {
    let tag = format!("SELECT {}", rows.len());
    (
        Outcome::Rows {
            rows,
            tag,
            suspended: false,
        },
        Some(columns),
    )
}

/// The index of `SHOW INDEX ENTRIES FROM <index>`, if that is what `variable` spells.
fn show_index_entries_of(variable: &[ast::Ident]) -> Option<&str> {
    match variable {
        [a, b, c, i]
            if a.value.eq_ignore_ascii_case("index")
                && b.value.eq_ignore_ascii_case("entries")
                && c.value.eq_ignore_ascii_case("from") =>
        {
            Some(i.value.as_str())
        }
        _ => None,
    }
}

fn index_entries_columns() -> Vec<Column> {
    ["key", "primary_key"]
        .iter()
        .map(|n| Column {
            name: n.to_string(),
            ty: SqlType::Text,
        })
        .collect()
}

/// The table of `SHOW STATISTICS FOR TABLE <t>`, if that is what `variable` spells.
fn show_statistics_of(variable: &[ast::Ident]) -> Option<&str> {
    match variable {
        [a, b, c, t]
            if a.value.eq_ignore_ascii_case("statistics")
                && b.value.eq_ignore_ascii_case("for")
                && c.value.eq_ignore_ascii_case("table") =>
        {
            Some(t.value.as_str())
        }
        _ => None,
    }
}

/// Whether `variable` spells `SHOW JOBS`.
fn is_show_jobs(variable: &[ast::Ident]) -> bool {
    matches!(variable, [a] if a.value.eq_ignore_ascii_case("jobs"))
}

/// The table of `SHOW RANGES FROM TABLE <t>`, if that is what `variable` spells.
fn show_ranges_table(variable: &[ast::Ident]) -> Option<&str> {
    match variable {
        [a, b, c, t]
            if a.value.eq_ignore_ascii_case("ranges")
                && b.value.eq_ignore_ascii_case("from")
                && c.value.eq_ignore_ascii_case("table") =>
        {
            Some(t.value.as_str())
        }
        _ => None,
    }
}

fn split_at_columns() -> Vec<Column> {
    vec![
        Column {
            name: "key".into(),
            ty: SqlType::Bytea,
        },
        Column {
            name: "pretty".into(),
            ty: SqlType::Text,
        },
        Column {
            name: "split_enforced_until".into(),
            ty: SqlType::Timestamp,
        },
    ]
}

fn show_ranges_columns() -> Vec<Column> {
    let col = |name: &str, ty| Column {
        name: name.into(),
        ty,
    };
    vec![
        col("start_key", SqlType::Text),
        col("end_key", SqlType::Text),
        col("range_id", SqlType::Int8),
        col("lease_holder", SqlType::Int8),
        col("core", SqlType::Int8),
        col("replicas", SqlType::Text),
        col("range_size", SqlType::Int8),
        col("queries_per_second", SqlType::Float8),
    ]
}

fn show_tables_columns() -> Vec<Column> {
    ["schema_name", "table_name", "type", "owner"]
        .iter()
        .map(|n| Column {
            name: n.to_string(),
            ty: SqlType::Text,
        })
        .collect()
}

fn show_databases_columns() -> Vec<Column> {
    ["database_name", "owner"]
        .iter()
        .map(|n| Column {
            name: n.to_string(),
            ty: SqlType::Text,
        })
        .collect()
}

fn returning_columns(
    t: &TableDesc,
    ret: &Option<Vec<SelectItem>>,
    params: &mut Vec<SqlType>,
) -> Result<Option<Vec<Column>>> {
    Ok(match ret {
        Some(items) => Some(bind_returning(t, items, params)?.1),
        None => None,
    })
}

fn bind_returning(
    t: &TableDesc,
    items: &[SelectItem],
    params: &mut Vec<SqlType>,
) -> Result<(Vec<Scalar>, Vec<Column>)> {
    dml_join::bind_returning_scoped(&table_scope(t, &t.name), items, params)
}

fn delete_table(d: &ast::Delete) -> Result<&ast::ObjectName> {
    match delete_target(d)? {
        TableFactor::Table { name, .. } => Ok(name),
        _ => Err(Error::unsupported("DELETE from a non-table")),
    }
}

/// The relation a DELETE deletes from (with its alias).
fn delete_target(d: &ast::Delete) -> Result<&TableFactor> {
    let tables = match &d.from {
        ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
    };
    match tables.as_slice() {
        [twj] if twj.joins.is_empty() => Ok(&twj.relation),
        _ => Err(Error::unsupported("DELETE with several tables")),
    }
}

fn is_default(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// True when `e` names column `name` anywhere.
fn expr_mentions(e: &Expr, name: &str) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x| {
        match x {
            Expr::Identifier(i) if ident_name(i) == name => found = true,
            Expr::CompoundIdentifier(parts)
                if parts.last().is_some_and(|i| ident_name(i) == name) =>
            {
                found = true
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// Renames column `old` to `new` wherever `e` names it.
fn rename_column_in(e: &mut Expr, old: &str, new: &str) {
    let _ = ast::visit_expressions_mut(e, |x| {
        match x {
            Expr::Identifier(i) if ident_name(i) == old => *i = ast::Ident::new(new),
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last_mut().filter(|i| ident_name(i) == old) {
                    *last = ast::Ident::new(new);
                }
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// A column definition of CREATE TABLE or ALTER TABLE … ADD COLUMN.
struct ColumnFromDef {
    column: ColumnDesc,
    primary_key: bool,
    unique: bool,
    /// CHECK constraints on the column: (name, expression).
    checks: Vec<(Option<String>, Expr)>,
    /// Declared SERIAL / BIGSERIAL / SMALLSERIAL.
    serial: bool,
    /// `REFERENCES p [(c)] [ON DELETE …] [ON UPDATE …]` on the column.
    references: Vec<ast::ForeignKeyConstraint>,
}

/// The descriptor a column definition asks for (type, length, NOT NULL, DEFAULT, SERIAL)
/// and the constraints declared on it.
fn column_from_def(c: &ast::ColumnDef) -> Result<ColumnFromDef> {
    let cname = ident_name(&c.name);
    let tname = c.data_type.to_string().to_lowercase();
    let ty = sql_type(&c.data_type)?;
    let max_len = if ty == SqlType::Varchar {
        tname
            .split('(')
            .nth(1)
            .and_then(|s| s.trim_end_matches(')').trim().parse().ok())
            .or(if tname == "char" || tname == "character" {
                Some(1)
            } else {
                None
            })
    } else {
        None
    };
    let serial = tname.contains("serial");
    let mut col = ColumnDesc::new(cname, ty);
    col.nullable = !serial;
    if serial {
        col.default = Some("unique_rowid()".into());
    }
    col.max_len = max_len;
    col.numeric = match (ty, crate::sql::expr::typmod(&c.data_type).as_slice()) {
        (SqlType::Numeric, [p]) => Some((*p, 0)),
        (SqlType::Numeric, [p, sc, ..]) => Some((*p, *sc)),
        _ => None,
    };
    let mut out = ColumnFromDef {
        column: col,
        primary_key: false,
        unique: false,
        checks: Vec::new(),
        serial,
        references: Vec::new(),
    };
    for opt in &c.options {
        match &opt.option {
            ast::ColumnOption::Collation(name) => crate::sql::expr::check_collation(name, ty)?,
            ast::ColumnOption::NotNull => out.column.nullable = false,
            ast::ColumnOption::Null => out.column.nullable = true,
            ast::ColumnOption::Default(e) => out.column.default = Some(e.to_string()),
            ast::ColumnOption::PrimaryKey(_) => out.primary_key = true,
            ast::ColumnOption::Unique(_) => out.unique = true,
            ast::ColumnOption::Check(cc) => out
                .checks
                .push((cc.name.as_ref().map(ident_name), (*cc.expr).clone())),
            ast::ColumnOption::ForeignKey(fk) => {
                let mut fk = fk.clone();
                if fk.name.is_none() {
                    fk.name = opt.name.clone();
                }
                out.references.push(fk)
            }
            _ => {}
        }
    }
    Ok(out)
}

/// 0A000 for a column DEFAULT or CHECK that calls a SQL function: those expressions are
/// bound without inlining calls (`udf`).
fn udf_in_column_expression() -> Error {
    Error::unsupported(
        "SQL functions (CREATE FUNCTION) in a column DEFAULT or CHECK constraint are not supported",
    )
}

/// Parses a column's DEFAULT and checks it binds, without columns, to a type the column
/// can take; sets `default_expr`.
fn validate_default(c: &mut ColumnDesc) -> Result<()> {
    if let Some(d) = &c.default {
        let e = catalog::parse_default(d)?;
        // Validate the default now: it must bind without columns.
        let mut p = Vec::new();
        let (_, t) = Binder::new(&[], &mut p).bind(&e, Some(c.ty))?;
        let ok = t == SqlType::Unknown
            || t == c.ty
            || (t.is_numeric_family() && c.ty.is_numeric_family())
            || (t.is_string() && c.ty.is_string())
            || c.ty.is_string()
            || matches!(
                (t, c.ty),
                (
                    SqlType::Date | SqlType::Timestamp | SqlType::TimestampTz,
                    SqlType::Date | SqlType::Timestamp | SqlType::TimestampTz
                )
            );
        if !ok {
            return Err(Error::mismatch(format!(
                "column \"{}\" is of type {} but default expression is of type {}",
                c.name,
                c.ty.name(),
                t.name()
            )));
        }
        c.default_expr = Some(e);
    }
    Ok(())
}

/// A CHECK constraint named as PostgreSQL names it (`<table>_<column>_check`, numbered
/// when taken), its expression checked to be boolean over the table's columns.
fn build_check(
    table: &str,
    columns: &[ColumnDesc],
    existing: &[CheckDesc],
    name: Option<String>,
    expr: Expr,
    column: Option<&str>,
) -> Result<CheckDesc> {
    let probe = TableDesc::new(table, columns.to_vec());
    let scope = table_scope(&probe, table);
    let mut params = Vec::new();
    let (_, ty) = Binder::new(&scope, &mut params).bind(&expr, Some(SqlType::Bool))?;
    if ty != SqlType::Bool && ty != SqlType::Unknown {
        return Err(Error::mismatch(format!(
            "argument of CHECK must be type boolean, not type {}",
            ty.name()
        )));
    }
    let name = match name {
        Some(n) => {
            if existing.iter().any(|c| c.name == n) {
                return Err(Error::new(
                    ErrorKind::DuplicateObject,
                    format!("constraint \"{n}\" for relation \"{table}\" already exists"),
                ));
            }
            n
        }
        None => {
            // PostgreSQL names a table CHECK after its column only when it names exactly one.
            let col = column.map(str::to_string).or_else(|| {
                let named: Vec<&ColumnDesc> = columns
                    .iter()
                    .filter(|c| !c.hidden && expr_mentions(&expr, &c.name))
                    .collect();
                match named.as_slice() {
                    [one] => Some(one.name.clone()),
                    _ => None,
                }
            });
            let base = match col {
                Some(c) => format!("{table}_{c}_check"),
                None => format!("{table}_check"),
            };
            let mut n = base.clone();
            let mut k = 1;
            while existing.iter().any(|c| c.name == n) {
                n = format!("{base}{k}");
                k += 1;
            }
            n
        }
    };
    Ok(CheckDesc {
        name,
        expr: expr.to_string(),
        parsed: expr,
    })
}

fn insert_columns(t: &TableDesc, cols: &[ast::ObjectName]) -> Result<Vec<usize>> {
    if cols.is_empty() {
        return Ok(t.visible_columns().map(|(i, _)| i).collect());
    }
    let mut out = Vec::new();
    for c in cols {
        let n = object_name(c);
        let i = t.column_index(&n).ok_or_else(|| {
            Error::new(
                ErrorKind::UndefinedColumn,
                format!("column \"{n}\" of relation \"{}\" does not exist", t.name),
            )
        })?;
        if out.contains(&i) {
            return Err(Error::new(
                ErrorKind::DuplicateColumn,
                format!("column \"{n}\" specified more than once"),
            ));
        }
        out.push(i);
    }
    Ok(out)
}

#[derive(Default, Debug)]
pub struct AggState {
    pub count: i64,
    pub value: Option<Datum>,
    seen: Option<HashSet<Vec<u8>>>,
    /// `array_agg`'s values with their sort keys.
    pub items: Vec<(Vec<Datum>, Datum)>,
}

impl AggState {
    /// A partial state read back from a flow's answer (never a DISTINCT one).
    pub(crate) fn partial(
        count: i64,
        value: Option<Datum>,
        items: Vec<(Vec<Datum>, Datum)>,
    ) -> Self {
        AggState {
            count,
            value,
            seen: None,
            items,
        }
    }
}

/// Rows grouped by the values of the GROUP BY expressions, with each group's first row
/// (what the select list reads its columns from) and its aggregates' states, in the order
/// the groups first appeared.
#[derive(Default)]
pub struct Grouper {
    pub groups: Vec<(Vec<Datum>, Vec<AggState>)>,
    index: std::collections::HashMap<Vec<u8>, usize>,
}

impl Grouper {
    /// Feeds one input row.
    pub(crate) fn add(
        &mut self,
        group_by: &[Scalar],
        aggs: &[AggCall],
        row: Vec<Datum>,
        cx: &EvalCtx,
    ) -> Result<()> {
        let mut gk = Vec::new();
        for g in group_by {
            encode_key_datum(&g.eval(&row, cx)?, &mut gk);
        }
        match self.index.get(&gk) {
            Some(&gi) => {
                for (ai, call) in aggs.iter().enumerate() {
                    agg_update_row(call, &mut self.groups[gi].1[ai], &row, cx)?;
                }
            }
            None => {
                let mut states: Vec<AggState> = aggs.iter().map(|_| AggState::default()).collect();
                for (call, st) in aggs.iter().zip(states.iter_mut()) {
                    agg_update_row(call, st, &row, cx)?;
                }
                self.index.insert(gk, self.groups.len());
                self.groups.push((row, states));
            }
        }
        Ok(())
    }

    /// Folds in partial groups computed elsewhere over other rows (a DistSQL flow), as if
    /// their rows had come after the ones fed so far. Only for aggregates that
    /// [`mergeable`] accepts.
    pub(crate) fn merge(
        &mut self,
        group_by: &[Scalar],
        aggs: &[AggCall],
        groups: Vec<(Vec<Datum>, Vec<AggState>)>,
        cx: &EvalCtx,
    ) -> Result<()> {
        for (row, states) in groups {
            let mut gk = Vec::new();
            for g in group_by {
                encode_key_datum(&g.eval(&row, cx)?, &mut gk);
            }
            match self.index.get(&gk) {
                Some(&gi) => {
                    for ((call, into), from) in
                        aggs.iter().zip(self.groups[gi].1.iter_mut()).zip(states)
                    {
                        agg_merge(call, into, from)?;
                    }
                }
                None => {
                    self.index.insert(gk, self.groups.len());
                    self.groups.push((row, states));
                }
            }
        }
        Ok(())
    }
}

/// Whether partial states of `call` computed over disjoint sets of rows can be merged
/// ([`agg_merge`]): every aggregate but the DISTINCT ones.
pub(crate) fn mergeable(call: &AggCall) -> bool {
    !call.distinct
}

/// Merges `from` (a partial state over later rows) into `into`.
fn agg_merge(call: &AggCall, into: &mut AggState, from: AggState) -> Result<()> {
    into.count += from.count;
    into.items.extend(from.items);
    let Some(v) = from.value else { return Ok(()) };
    into.value = Some(match into.value.take() {
        None => v,
        Some(acc) => combine(call, acc, v)?,
    });
    Ok(())
}

/// A running value `acc` of `call` (a sum, minimum, …) with one more value, or with
/// another partial value over other rows: they combine the same way.
fn combine(call: &AggCall, acc: Datum, v: Datum) -> Result<Datum> {
    Ok(match call.func {
        AggFunc::Sum | AggFunc::Avg => add_partial(call, acc, v)?,
        AggFunc::Min if v.order_cmp(&acc).is_lt() => v,
        AggFunc::Max if v.order_cmp(&acc).is_gt() => v,
        AggFunc::BoolAnd => {
            Datum::Bool(acc.as_bool().unwrap_or(true) && v.as_bool().unwrap_or(true))
        }
        AggFunc::BoolOr => {
            Datum::Bool(acc.as_bool().unwrap_or(false) || v.as_bool().unwrap_or(false))
        }
        // count keeps its count elsewhere; the others keep items.
        _ => acc,
    })
}

/// A running sum plus `v`, in the aggregate's result type (an integer sum of a numeric
/// result is widened first).
fn add_partial(call: &AggCall, acc: Datum, v: Datum) -> Result<Datum> {
    let acc = match acc {
        Datum::Int(i) if call.ty == SqlType::Numeric => Datum::Numeric(i.into()),
        other => other,
    };
    let ty = if call.ty == SqlType::Int8 {
        SqlType::Int8
    } else {
        call.ty
    };
    Scalar::Binary(
        BinOp::Add,
        Box::new(Scalar::Const(acc)),
        Box::new(Scalar::Const(v)),
        ty,
    )
    .eval(&[], &EvalCtx::default())
}

/// Feeds input row `r` to aggregate `call`.
fn agg_update_row(call: &AggCall, st: &mut AggState, r: &[Datum], cx: &EvalCtx) -> Result<()> {
    if let Some(filter) = &call.filter {
        if !filter.eval_bool(r, cx)? {
            return Ok(());
        }
    }
    let v = match &call.arg {
        Some(a) => a.eval(r, cx)?,
        None => Datum::Null,
    };
    if call.func.keeps_items() {
        if call.func == AggFunc::StringAgg && v.is_null() {
            return Ok(());
        }
        let mut keys = call
            .order
            .iter()
            .map(|(k, _, _)| k.eval(r, cx))
            .collect::<Result<Vec<_>>>()?;
        // string_agg: the row's delimiter rides after the sort keys (jsonb_object_agg:
        // the row's key).
        if let Some(d) = &call.delimiter {
            let d = d.eval(r, cx)?;
            if call.func == AggFunc::JsonbObjectAgg && d.is_null() {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    "field name must not be null",
                ));
            }
            keys.push(d);
        }
        if call.distinct {
            let mut k = Vec::new();
            encode_key_datum(&v, &mut k);
            if !st.seen.get_or_insert_with(HashSet::new).insert(k) {
                return Ok(());
            }
        }
        st.items.push((keys, v));
        return Ok(());
    }
    agg_update(call, st, v)
}

fn agg_update(call: &AggCall, st: &mut AggState, v: Datum) -> Result<()> {
    if call.func == AggFunc::CountStar {
        st.count += 1;
        return Ok(());
    }
    if v.is_null() {
        return Ok(());
    }
    if call.distinct {
        let mut k = Vec::new();
        encode_key_datum(&v, &mut k);
        if !st.seen.get_or_insert_with(HashSet::new).insert(k) {
            return Ok(());
        }
    }
    st.count += 1;
    if let AggFunc::Variance { .. } = call.func {
        st.items.push((Vec::new(), v));
        return Ok(());
    }
    st.value = Some(match (call.func, st.value.take()) {
        (_, None) => match call.func {
            AggFunc::Sum | AggFunc::Avg => match v {
                Datum::Int(i) if call.func == AggFunc::Avg || call.ty == SqlType::Numeric => {
                    Datum::Numeric(i.into())
                }
                other => other,
            },
            _ => v,
        },
        (_, Some(acc)) => combine(call, acc, v)?,
    });
    Ok(())
}

/// The population or sample variance (or its square root) of non-NULL `values`, in
/// numeric or double precision as `ty` says; NULL without enough values (none, or one
/// for a sample).
fn variance<'v>(
    values: impl Iterator<Item = &'v Datum> + Clone,
    ty: SqlType,
    population: bool,
    root: bool,
) -> Result<Datum> {
    use rust_decimal::Decimal;
    let n = values.clone().count();
    let divisor = if population { n } else { n.saturating_sub(1) };
    if divisor == 0 {
        return Ok(Datum::Null);
    }
    if ty == SqlType::Float8 {
        let xs: Vec<f64> = values
            .map(|v| match v.clone().cast(SqlType::Float8)? {
                Datum::Float(f) => Ok(f),
                _ => Err(Error::mismatch("variance of a non-number")),
            })
            .collect::<Result<_>>()?;
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / divisor as f64;
        return Ok(Datum::Float(if root { var.sqrt() } else { var }));
    }
    let xs: Vec<Decimal> = values
        .map(|v| match v.clone().cast(SqlType::Numeric)? {
            Datum::Numeric(d) => Ok(d),
            _ => Err(Error::mismatch("variance of a non-number")),
        })
        .collect::<Result<_>>()?;
    let overflow = || Error::out_of_range("value overflows numeric format");
    let mut sum = Decimal::ZERO;
    for x in &xs {
        sum = sum.checked_add(*x).ok_or_else(overflow)?;
    }
    let mean = crate::sql::expr::numeric_div(sum, Decimal::from(n as u64))?;
    let mut squares = Decimal::ZERO;
    for x in &xs {
        let d = x.checked_sub(mean).ok_or_else(overflow)?;
        squares = squares
            .checked_add(d.checked_mul(d).ok_or_else(overflow)?)
            .ok_or_else(overflow)?;
    }
    let var = crate::sql::expr::numeric_div(squares, Decimal::from(divisor as u64))?;
    let out = if root { decimal_sqrt(var) } else { var };
    Ok(Datum::Numeric(if out.is_zero() {
        Decimal::ZERO
    } else {
        out.normalize()
    }))
}

/// The square root of non-negative `v` to rust_decimal's precision: a double precision
/// estimate refined by Newton's method.
pub(crate) fn decimal_sqrt(v: rust_decimal::Decimal) -> rust_decimal::Decimal {
    use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
    use rust_decimal::Decimal;
    if v <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    let estimate = v.to_f64().map(f64::sqrt).and_then(Decimal::from_f64);
    let mut x = match estimate {
        Some(x) if !x.is_zero() => x,
        _ => return Decimal::ZERO,
    };
    let two = Decimal::TWO;
    for _ in 0..4 {
        let Some(q) = v.checked_div(x) else { break };
        let Some(next) = x.checked_add(q).and_then(|s| s.checked_div(two)) else {
            break;
        };
        if next == x {
            break;
        }
        x = next;
    }
    x
}

fn agg_final(call: &AggCall, st: &AggState) -> Result<Datum> {
    Ok(match call.func {
        AggFunc::Count | AggFunc::CountStar => Datum::Int(st.count),
        AggFunc::Avg => match &st.value {
            None => Datum::Null,
            Some(Datum::Float(f)) => Datum::Float(f / st.count as f64),
            Some(Datum::Numeric(n)) => Datum::Numeric(crate::sql::expr::numeric_div(
                *n,
                rust_decimal::Decimal::from(st.count),
            )?),
            Some(other) => other.clone(),
        },
        AggFunc::Variance { population, root } => {
            let values = st.items.iter().map(|(_, v)| v);
            variance(values, call.ty, population, root)?
        }
        AggFunc::StringAgg => {
            if st.items.is_empty() {
                return Ok(Datum::Null);
            }
            let items = sorted_items(call, st);
            let mut out: Vec<u8> = Vec::new();
            for (i, (keys, v)) in items.iter().enumerate() {
                let bytes = |d: &Datum| match d {
                    Datum::Bytes(b) => b.clone(),
                    Datum::Null => Vec::new(),
                    d => d.to_text(d.natural_type()).unwrap_or_default().into_bytes(),
                };
                if i > 0 {
                    out.extend(keys.last().map(bytes).unwrap_or_default());
                }
                out.extend(bytes(v));
            }
            if call.ty == SqlType::Bytea {
                Datum::Bytes(out)
            } else {
                Datum::Text(String::from_utf8_lossy(&out).into_owned())
            }
        }
        AggFunc::ArrayAgg => {
            if st.items.is_empty() {
                return Ok(Datum::Null);
            }
            let texts: Vec<Option<String>> = sorted_items(call, st)
                .iter()
                .map(|(_, v)| v.to_text(call.arg_ty))
                .collect();
            Datum::Text(crate::sql::types::format_array(&texts))
        }
        AggFunc::JsonbAgg | AggFunc::JsonbObjectAgg => {
            use crate::sql::jsonb::{from_datum, Json};
            if st.items.is_empty() {
                return Ok(Datum::Null);
            }
            let items = sorted_items(call, st);
            let json = if call.func == AggFunc::JsonbAgg {
                let values = items.iter().map(|(_, v)| from_datum(v, true));
                Json::Array(values.collect::<Result<_>>()?)
            } else {
                let mut pairs = Vec::with_capacity(items.len());
                for (keys, v) in items {
                    let key = match keys.last() {
                        Some(Datum::Text(k)) => k.clone(),
                        _ => String::new(),
                    };
                    pairs.push((key, from_datum(v, true)?));
                }
                Json::object(pairs)
            };
            Datum::Text(json.to_text())
        }
        _ => st
            .value
            .clone()
            .map(|v| v.cast(call.ty))
            .transpose()?
            .unwrap_or(Datum::Null),
    })
}

/// The kept values of `call` (with their sort keys), in its `ORDER BY` order (else input
/// order).
fn sorted_items<'s>(call: &AggCall, st: &'s AggState) -> Vec<&'s (Vec<Datum>, Datum)> {
    let mut items: Vec<&(Vec<Datum>, Datum)> = st.items.iter().collect();
    if !call.order.is_empty() {
        let dirs: Vec<(bool, bool)> = call.order.iter().map(|(_, d, n)| (*d, *n)).collect();
        items.sort_by(|a, b| cmp_sort_keys(&a.0, &b.0, &dirs));
    }
    items
}

/// The cached plan of a prepared query: valid for one catalog version, database and set of
/// parameter types.
#[derive(Default)]
pub struct PlanCache {
    slot: std::cell::RefCell<Option<CachedPlan>>,
    /// Whether the statement holds CTEs or subqueries (found once: the text is fixed).
    needs_rewrite: std::cell::Cell<Option<bool>>,
    /// (catalog version, database, fast path) when the cached plan is a point lookup.
    point: std::cell::RefCell<Option<(u64, u32, Rc<PointLookup>)>>,
}

impl PlanCache {
    fn needs_rewrite(&self, stmt: &Statement) -> bool {
        match self.needs_rewrite.get() {
            Some(b) => b,
            None => {
                let b = rewrite::needs_rewrite(stmt) || pg_catalog::needs_rewrite(stmt);
                self.needs_rewrite.set(Some(b));
                b
            }
        }
    }
}

/// (catalog version, database, parameter types, plan).
type CachedPlan = (u64, u32, Vec<SqlType>, Rc<SelectPlan>);

impl PlanCache {
    /// The statement's point-lookup fast path, if its cached plan is one and is still valid
    /// for catalog `version` and database `db`.
    pub fn point_lookup(&self, version: u64, db: u32) -> Option<Rc<PointLookup>> {
        match &*self.point.borrow() {
            Some((v, d, p)) if *v == version && *d == db => Some(p.clone()),
            _ => None,
        }
    }
}

/// A prepared `SELECT <columns> FROM t WHERE pk = $n` on a one-column primary key: the
/// fast path of issue 3 ("cached plan, one KV get, no avoidable allocation"). The session
/// runs it without the executor: it encodes the key into a reused buffer, makes one KV get
/// and hands the stored row bytes to pgwire, which encodes the projected columns straight
/// into the DataRow ([`PointLookup::for_each_output`]). Parameters of another kind than the
/// key column's (NULL, a float for an INT key, …) take the general path.
pub struct PointLookup {
    /// The table's primary index prefix; a key is this plus the encoded parameter.
    prefix: Vec<u8>,
    param: usize,
    key_ty: SqlType,
    /// For each output column, the stored column it shows, its type, and the value rows
    /// written before the column was added read (`ColumnDesc::missing`, else NULL).
    outputs: Vec<(usize, SqlType, Datum)>,
}

impl PointLookup {
    fn of(plan: &SelectPlan) -> Option<PointLookup> {
        let t = plan.table.as_ref()?;
        let plain = plan.lock.is_none()
            && plan.derived.is_none()
            && plan.join.is_none()
            && plan.aggs.is_empty()
            && plan.group_by.is_empty()
            && plan.having.is_none()
            && !plan.grouped
            && plan.order.is_empty()
            && !plan.distinct
            && plan.limit.is_none()
            && plan.offset.is_none()
            && plan.values.is_none()
            && plan.setop.is_none()
            && plan.windows.is_empty()
            && plan.series.is_none()
            && t.view.is_none()
            && t.pk.len() == 1
            && plan.scope.len() == t.columns.len()
            && plan.outputs.len() == plan.columns.len();
        if !plain {
            return None;
        }
        let pk = t.pk[0];
        let param = match plan.filter.as_ref()? {
            Scalar::Binary(BinOp::Eq, l, r, _) => match (l.as_ref(), r.as_ref()) {
                (Scalar::Column(c), Scalar::Param(p)) | (Scalar::Param(p), Scalar::Column(c))
                    if *c == pk =>
                {
                    *p
                }
                _ => return None,
            },
            _ => return None,
        };
        let key_ty = t.columns[pk].ty;
        if !(key_ty.is_int() || matches!(key_ty, SqlType::Text | SqlType::Varchar)) {
            return None;
        }
        let mut outputs = Vec::with_capacity(plan.outputs.len());
        for (o, col) in plan.outputs.iter().zip(&plan.columns) {
            match o {
                Scalar::Column(c) if *c < t.columns.len() && t.columns[*c].ty == col.ty => outputs
                    .push((
                        *c,
                        col.ty,
                        t.columns[*c].missing.clone().unwrap_or(Datum::Null),
                    )),
                _ => return None,
            }
        }
        Some(PointLookup {
            prefix: index_prefix(t.id, t.primary_index),
            param,
            key_ty,
            outputs,
        })
    }

    /// Encodes the key the parameters name into `key` (cleared first). False when the
    /// parameter is not of the key column's kind: the general path decides then.
    pub fn key(&self, params: &[Datum], key: &mut Vec<u8>) -> bool {
        let ok = match params.get(self.param) {
            Some(Datum::Int(i)) => {
                self.key_ty.is_int() && crate::sql::types::check_int_range(self.key_ty, *i).is_ok()
            }
            Some(Datum::Text(_)) => matches!(self.key_ty, SqlType::Text | SqlType::Varchar),
            _ => false,
        };
        if ok {
            key.clear();
            key.extend_from_slice(&self.prefix);
            encode_key_datum(&params[self.param], key);
        }
        ok
    }

    /// The number of output columns.
    pub fn width(&self) -> usize {
        self.outputs.len()
    }

    /// Calls `f` with each output column's type and value, decoded from the stored `row`
    /// without copying (`starts` is scratch). Columns added after the row was written read
    /// as their missing value.
    pub fn for_each_output(
        &self,
        row: &[u8],
        starts: &mut Vec<usize>,
        mut f: impl FnMut(SqlType, keys::DatumRef<'_>) -> Result<()>,
    ) -> Result<()> {
        keys::row_value_starts(row, starts)?;
        for (c, ty, missing) in &self.outputs {
            match starts.get(*c) {
                Some(&at) => {
                    let mut pos = at;
                    f(*ty, keys::decode_value(row, &mut pos)?)?
                }
                None => f(*ty, keys::DatumRef::borrowed(missing))?,
            }
        }
        Ok(())
    }
}

/// Executes statements in one transaction.
pub struct Exec<'a> {
    /// Where a prepared statement keeps its plan (None for simple queries).
    pub plan_cache: Option<&'a PlanCache>,
    ctx: &'a CoreCtx,
    cat: &'a Catalog,
    db_id: u32,
    txn: &'a mut Txn,
    cx: EvalCtx,
    cancel: &'a std::sync::Arc<AtomicBool>,
    /// Correlated subqueries of the running statement: each fills one parameter slot,
    /// recomputed for every row its WHERE filters.
    correlated: Vec<Correlated>,
    /// `serial_normalization = rowid`: SERIAL columns default to unique_rowid() (INT8),
    /// CockroachDB's old behaviour, instead of a sequence.
    serial_rowid: bool,
    /// Where unqualified relation names are looked up (the session's `search_path`).
    path: catalog::SearchPath,
    /// When the statement runs out of time (the session's `statement_timeout`), checked
    /// wherever cancellation is.
    deadline: Option<std::time::Instant>,
    /// What the last DistSQL scan's flows did (`EXPLAIN ANALYZE (DISTSQL)`).
    flow_stats: Vec<distsql::FlowStat>,
    /// Table rows read by the statement so far, in the gateway and its flows (`EXPLAIN
    /// ANALYZE`).
    rows_read: std::cell::Cell<u64>,
    /// Join steps run as merge joins by the statement so far (`EXPLAIN ANALYZE`).
    merge_joins: u64,
    /// The operators run so far, while `EXPLAIN ANALYZE` runs its query
    /// ([`op_stats`]), and the plan nesting the running operator is at.
    op_stats: Option<Vec<op_stats::OpStat>>,
    op_depth: usize,
}

/// A correlated subquery in a WHERE clause and the parameter slot it fills.
struct Correlated {
    slot: usize,
    /// `Some(negated)` for EXISTS, `None` for a scalar subquery.
    exists: Option<bool>,
    /// For `x [NOT] IN (subquery)` that cannot become an EXISTS (LIMIT, DISTINCT,
    /// aggregates, NOT IN): `x` (bound in the outer scope) and NOT; the slot then holds
    /// the IN's three-valued result, taken over the subquery's rows for each outer row.
    in_lhs: Option<(Expr, bool)>,
    query: ast::Query,
}

impl<'a> Exec<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &'a CoreCtx,
        cat: &'a Catalog,
        db_id: u32,
        database: &str,
        user: &str,
        txn: &'a mut Txn,
        params: Vec<Datum>,
        cancel: &'a std::sync::Arc<AtomicBool>,
    ) -> Self {
        let now = ctx.shared.hlc.now();
        let rowid = ((now.wall / 1000) as i64) << 15 | ((ctx.core as i64) << 12);
        let cx = EvalCtx {
            params,
            aggs: Vec::new(),
            windows: Vec::new(),
            now_micros: (txn.read_ts().wall / 1000) as i64,
            txn_ts: txn.read_ts(),
            database: database.to_string(),
            user: user.to_string(),
            rowid: std::cell::Cell::new(rowid),
            settings: Rc::default(),
            seq: Default::default(),
            current_schema: Some("public".into()),
        };
        Exec {
            plan_cache: None,
            ctx,
            cat,
            db_id,
            txn,
            cx,
            cancel,
            correlated: Vec::new(),
            serial_rowid: false,
            path: catalog::SearchPath::default(),
            deadline: None,
            flow_stats: Vec::new(),
            rows_read: std::cell::Cell::new(0),
            merge_joins: 0,
            op_stats: None,
            op_depth: 0,
        }
    }

    /// The session's variables, for `current_setting` and the `search_path`.
    pub fn with_settings(mut self, settings: Rc<BTreeMap<String, String>>) -> Self {
        self.deadline = settings
            .get("statement_timeout")
            .and_then(|v| statement_timeout(v))
            .map(|d| std::time::Instant::now() + d);
        if let Some(setting) = settings.get("search_path") {
            self.path = catalog::SearchPath::resolve(self.cat, self.db_id, setting, &self.cx.user);
            self.cx.current_schema = self
                .path
                .schemas
                .first()
                .map(|&id| self.cat.schema_name(id).to_string());
        }
        // The session's zone, for timestamptz input and output during this statement.
        crate::sql::time_zone::set_current(settings.get("timezone").map_or("UTC", String::as_str));
        self.cx.settings = settings;
        self
    }

    /// Gives the statement the session's sequence state (currval, lastval) and its
    /// `serial_normalization`.
    pub fn set_session_state(
        &mut self,
        seq: Rc<std::cell::RefCell<SeqSession>>,
        serial_rowid: bool,
    ) {
        self.cx.seq = seq;
        self.serial_rowid = serial_rowid;
    }

    /// The rows of `generate_series(start, stop, step)` over timestamps (`ty`:
    /// timestamp, or timestamptz stepped in the session's zone): none when an argument
    /// is NULL.
    async fn timestamp_series(&self, ty: SqlType, args: &[Scalar]) -> Result<Vec<Vec<Datum>>> {
        let mut vals = Vec::with_capacity(3);
        for (i, a) in args.iter().enumerate() {
            let want = if i == 2 { SqlType::Interval } else { ty };
            vals.push(a.eval(&[], &self.cx)?.cast(want)?);
        }
        let micros = |d: &Datum| match d {
            Datum::Timestamp(v) | Datum::TimestampTz(v) => Some(*v),
            _ => None,
        };
        let (Some(start), Some(stop), Datum::Interval(step)) =
            (micros(&vals[0]), micros(&vals[1]), &vals[2])
        else {
            return Ok(Vec::new());
        };
        let sign = step.span().signum();
        if sign == 0 {
            return Err(Error::new(
                ErrorKind::InvalidParameterValue,
                "step size cannot equal zero",
            ));
        }
        let mut rows = Vec::new();
        let mut v = start;
        while (sign > 0 && v <= stop) || (sign < 0 && v >= stop) {
            if rows.len() % 4096 == 4095 {
                self.pause().await?;
            }
            rows.push(vec![if ty == SqlType::Timestamp {
                Datum::Timestamp(v)
            } else {
                Datum::TimestampTz(v)
            }]);
            let next = if ty == SqlType::Timestamp {
                crate::sql::interval::timestamp_add(v, step)
            } else {
                crate::sql::interval::timestamptz_add(v, step)
            };
            match next {
                Ok(next) => v = next,
                Err(_) => break,
            }
        }
        Ok(rows)
    }

    /// The sequence a sequence function's argument names: its text (`'s'`,
    /// `'public.s'`, `'"S"'`) or its oid (`'s'::regclass`).
    fn sequence_by_arg(&self, d: &Datum) -> Result<Rc<TableDesc>> {
        let t = match d {
            Datum::Int(oid) => self
                .cat
                .tables_in(self.db_id)
                .find(|t| pg_catalog::table_oid(t) == *oid)
                .cloned()
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::UndefinedTable,
                        format!("could not open relation with OID {oid}"),
                    )
                })?,
            other => {
                let text = sequence::arg_key(other);
                let name =
                    sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
                        .try_with_sql(&text)
                        .and_then(|mut p| {
                            let name = p.parse_object_name(false)?;
                            p.expect_token(&sqlparser::tokenizer::Token::EOF)?;
                            Ok(name)
                        })
                        .map_err(|_| {
                            Error::new(
                                ErrorKind::InvalidName,
                                format!("invalid name syntax: \"{text}\""),
                            )
                        })?;
                self.cat
                    .relation(self.db_id, &self.path, &name)
                    .ok()
                    .flatten()
                    .ok_or_else(|| catalog::undefined_table(&text))?
            }
        };
        if t.sequence.is_none() {
            return Err(sequence::not_a_sequence(&t.name));
        }
        Ok(t)
    }

    /// Runs the sequence functions of `exprs` for `row` ahead of their evaluation and
    /// queues their results for the evaluator (see [`sequence`]).
    async fn run_sequence_calls(&self, exprs: &[&Scalar], row: &[Datum]) -> Result<()> {
        let mut calls: Vec<(&str, &[Scalar])> = Vec::new();
        for e in exprs {
            e.walk(&mut |s| {
                if let Scalar::Func(n, args, _) = s {
                    if sequence::runs_ahead(n) {
                        calls.push((n.as_str(), args.as_slice()));
                    }
                }
            });
        }
        self.cx.seq.borrow_mut().clear_pending();
        for (name, args) in calls {
            let vals: Vec<Datum> = args
                .iter()
                .map(|a| a.eval(row, &self.cx))
                .collect::<Result<_>>()?;
            if vals.iter().any(|v| v.is_null()) {
                // Strict functions: NULL in, NULL out, nothing run.
                continue;
            }
            if name == "pg_sleep" {
                let seconds = match vals.first().map(|v| v.clone().cast(SqlType::Float8)) {
                    Some(Ok(Datum::Float(f))) => f,
                    Some(Err(e)) => return Err(e),
                    _ => 0.0,
                };
                self.sleep_for(seconds).await?;
                continue;
            }
            let func: &'static str = match name {
                "nextval" => "nextval",
                "currval" => "currval",
                "setval" => "setval",
                _ => "lastval",
            };
            let key = vals.first().map(sequence::arg_key).unwrap_or_default();
            let v = if func == "lastval" {
                self.cx.seq.borrow().lastval()?
            } else {
                let t = self.sequence_by_arg(&vals[0])?;
                match func {
                    "currval" => self.cx.seq.borrow().currval(t.id, &t.name)?,
                    "nextval" => {
                        let v = sequence::advance(self.ctx, &t, SeqOp::Next).await?;
                        self.cx.seq.borrow_mut().note_next(t.id, v);
                        v
                    }
                    _ => {
                        let value = match vals.get(1).map(|v| v.clone().cast(SqlType::Int8)) {
                            Some(Ok(Datum::Int(i))) => i,
                            Some(Err(e)) => return Err(e),
                            _ => return Err(Error::mismatch("setval: bad value")),
                        };
                        let is_called = match vals.get(2) {
                            None => true,
                            Some(Datum::Bool(b)) => *b,
                            Some(_) => return Err(Error::mismatch("setval: bad is_called")),
                        };
                        let v = sequence::advance(self.ctx, &t, SeqOp::Set { value, is_called })
                            .await?;
                        if is_called {
                            self.cx.seq.borrow_mut().note_set(t.id, v);
                        }
                        v
                    }
                }
            };
            self.cx.seq.borrow_mut().push(func, key, v);
        }
        Ok(())
    }

    /// In long loops: honours cancellation and lets the core's other tasks run.
    async fn pause(&self) -> Result<()> {
        self.check_cancel()?;
        glommio::yield_if_needed().await;
        Ok(())
    }

    fn check_cancel(&self) -> Result<()> {
        if self.ctx.shared.shutdown.load(Ordering::Relaxed) {
            // As PostgreSQL's smart shutdown: the client should reconnect elsewhere.
            return Err(Error::new(
                ErrorKind::AdminShutdown,
                "terminating connection due to administrator command",
            ));
        }
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorKind::QueryCanceled,
                "canceling statement due to user request",
            ));
        }
        // PERF: one clock read per check, and only with a statement_timeout set.
        if self
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
        {
            return Err(Error::new(
                ErrorKind::QueryCanceled,
                "canceling statement due to statement timeout",
            ));
        }
        Ok(())
    }

    /// `pg_sleep(seconds)`: waits on the core's timer in slices, so cancellation and the
    /// statement timeout end it early and the core's other sessions run meanwhile.
    async fn sleep_for(&self, seconds: f64) -> Result<()> {
        use std::time::{Duration, Instant};
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        let end = Instant::now() + Duration::from_secs_f64(seconds.min(1e9));
        loop {
            self.check_cancel()?;
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            let slice = (end - now).min(Duration::from_millis(10));
            glommio::timer::sleep(slice).await;
        }
    }

    pub async fn run(&mut self, stmt: &Statement) -> Result<(Outcome, Option<Vec<Column>>)> {
        if statement_kind(stmt) != 4 {
            return self.run_once(stmt).await;
        }
        // Schema changes commit on their own (not in the session's transaction), so they
        // retry their own conflicts (e.g. two sessions allocating descriptor ids at once).
        let mut attempt = 0u32;
        loop {
            match self.run_once(stmt).await {
                Err(e) if e.is_retryable() && attempt < 50 => {
                    attempt += 1;
                    let jitter = crate::sql::session::next_random() % 1000;
                    glommio::timer::sleep(std::time::Duration::from_micros(
                        200 * attempt as u64 + jitter,
                    ))
                    .await;
                }
                r => return r,
            }
        }
    }

    async fn run_once(&mut self, stmt: &Statement) -> Result<(Outcome, Option<Vec<Column>>)> {
        // PERF: the statement is copied only when it calls a SQL function.
        if udf::applies_to(stmt) && udf::calls_functions(stmt, self.cat, self.db_id) {
            let mut s = stmt.clone();
            if udf::inline_calls(&mut s, self.cat, self.db_id, &self.path)? {
                // Not through the plan cache: the cached plan is the text's, not the
                // rewrite's.
                let saved = self.plan_cache.take();
                let r = Box::pin(self.run_calls_inlined(&s)).await;
                self.plan_cache = saved;
                return r;
            }
        }
        self.run_calls_inlined(stmt).await
    }

    /// [`Self::run_once`] of a statement that calls no SQL function.
    async fn run_calls_inlined(
        &mut self,
        stmt: &Statement,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        if matches!(
            stmt,
            Statement::Query(_)
                | Statement::Insert(_)
                | Statement::Update(_)
                | Statement::Delete(_)
        ) && match self.plan_cache {
            // PERF: a prepared statement walks its AST for subqueries once, not per run.
            Some(c) => c.needs_rewrite(stmt),
            None => rewrite::needs_rewrite(stmt) || pg_catalog::needs_rewrite(stmt),
        } {
            // CTEs and subqueries in expressions: rewrite, run the subqueries, then the
            // statement (not through the plan cache: the rewrite differs per run).
            let base = self.cx.params.len();
            let corr_base = self.correlated.len();
            let mut s = stmt.clone();
            let saved = self.plan_cache.take();
            pg_catalog::rewrite(&mut s, self.cat, self.db_id, &self.path)?;
            self.inline_relation_sizes(&mut s).await?;
            let materialized = Box::pin(self.materialize_all_recursive(&mut s)).await;
            let r = match materialized {
                Err(e) => Err(e),
                Ok(()) => match multi_assign::assignments_mut(&mut s) {
                    Some(assignments) => self.run_row_subqueries(assignments).await,
                    None => Ok(()),
                },
            };
            let r = match r {
                Err(e) => Err(e),
                Ok(()) => self.inline_subqueries(&mut s).await,
            };
            let r = match r {
                Ok(()) => Box::pin(self.run_plain(&s)).await,
                Err(e) => Err(e),
            };
            self.plan_cache = saved;
            self.cx.params.truncate(base);
            self.correlated.truncate(corr_base);
            return r;
        }
        self.run_plain(stmt).await
    }

    /// Inlines `node`'s CTEs and replaces its subqueries by their results (parameters).
    async fn inline_subqueries<T: sqlparser::ast::VisitMut>(&mut self, node: &mut T) -> Result<()> {
        use rewrite::{Extracted, Replacement};
        rewrite::inline_ctes(node)?;
        let extracted = rewrite::extract_subqueries(node);
        let mut reps = Vec::with_capacity(extracted.len());
        for e in extracted {
            let rep = match e {
                Extracted::Scalar(q) => {
                    let (rows, cols) = match self.subquery_rows_raw((*q).clone()).await {
                        Ok(r) => r,
                        Err(e) if is_outer_reference_error(&e) => {
                            reps.push(Some(Replacement::Value(Box::new(
                                self.correlated_slot(*q, None),
                            ))));
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let ty = one_column(&cols)?;
                    if rows.len() > 1 {
                        return Err(Error::new(
                            ErrorKind::Cardinality,
                            "more than one row returned by a subquery used as an expression",
                        ));
                    }
                    let v = rows
                        .into_iter()
                        .next()
                        .and_then(|r| r.into_iter().next())
                        .unwrap_or(Datum::Null);
                    Replacement::Value(Box::new(self.subquery_param(v, ty)))
                }
                Extracted::In(q, lhs, negated) => {
                    let (rows, cols) = match self.subquery_rows_raw((*q).clone()).await {
                        Ok(r) => r,
                        Err(e) if is_outer_reference_error(&e) => {
                            // Correlated: EXISTS (… AND e = x) where that means the same,
                            // else the subquery's rows against x; run per outer row.
                            let slot = match rewrite::in_to_exists(&q, &lhs) {
                                Some(ex) if !negated => self.correlated_slot(ex, Some(false)),
                                _ => self.correlated_in_slot(*q, *lhs, negated),
                            };
                            reps.push(Some(Replacement::Whole(Box::new(slot))));
                            continue;
                        }
                        Err(e) => return Err(rewrite::subquery_error(e)),
                    };
                    let ty = one_column(&cols)?;
                    let list = rows
                        .into_iter()
                        .map(|r| {
                            let v = r.into_iter().next().unwrap_or(Datum::Null);
                            self.subquery_param(v, ty)
                        })
                        .collect();
                    Replacement::List(list)
                }
                Extracted::Quantified(q) => {
                    let (rows, cols) = match self.subquery_rows_raw(*q).await {
                        Ok(r) => r,
                        Err(e) if is_outer_reference_error(&e) => {
                            return Err(Error::unsupported(
                                "a correlated subquery under ANY / ALL is not supported yet",
                            ))
                        }
                        Err(e) => return Err(rewrite::subquery_error(e)),
                    };
                    let ty = one_column(&cols)?;
                    let list = rows
                        .into_iter()
                        .map(|r| {
                            let v = r.into_iter().next().unwrap_or(Datum::Null);
                            self.subquery_param(v, ty)
                        })
                        .collect();
                    Replacement::List(list)
                }
                Extracted::Exists(q, negated) => {
                    let (rows, _) = match self.subquery_rows_raw((*q).clone()).await {
                        Ok(r) => r,
                        Err(e) if is_outer_reference_error(&e) => {
                            reps.push(Some(Replacement::Value(Box::new(
                                self.correlated_slot(*q, Some(negated)),
                            ))));
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    Replacement::Value(Box::new(Expr::Value(
                        ast::Value::Boolean(rows.is_empty() == negated).into(),
                    )))
                }
            };
            reps.push(Some(rep));
        }
        rewrite::put_back(node, reps);
        Ok(())
    }

    /// Runs a subquery on its own (after inlining its own subqueries).
    async fn subquery_rows(&mut self, q: ast::Query) -> Result<(Vec<Vec<Datum>>, Vec<Column>)> {
        self.subquery_rows_raw(q)
            .await
            .map_err(rewrite::subquery_error)
    }

    async fn subquery_rows_raw(
        &mut self,
        mut q: ast::Query,
    ) -> Result<(Vec<Vec<Datum>>, Vec<Column>)> {
        Box::pin(self.materialize_all_recursive(&mut q)).await?;
        Box::pin(self.inline_subqueries(&mut q)).await?;
        let mut ptypes: Vec<SqlType> = self.cx.params.iter().map(|d| d.natural_type()).collect();
        let plan = plan_select(self.cat, self.db_id, &self.path, &q, &mut ptypes)?;
        self.check_correlated_use(&plan)?;
        let rows = Box::pin(self.run_plan(&plan)).await?;
        Ok((rows, plan.columns))
    }

    /// Reserves a parameter slot for a correlated subquery (filled per row) and returns
    /// its placeholder.
    fn correlated_slot(&mut self, query: ast::Query, exists: Option<bool>) -> Expr {
        self.cx.params.push(Datum::Null);
        let slot = self.cx.params.len() - 1;
        self.correlated.push(Correlated {
            slot,
            exists,
            in_lhs: None,
            query,
        });
        Expr::Value(ast::Value::Placeholder(format!("${}", slot + 1)).into())
    }

    /// As [`Self::correlated_slot`], for `lhs [NOT] IN (query)` taken as a whole.
    fn correlated_in_slot(&mut self, query: ast::Query, lhs: Expr, negated: bool) -> Expr {
        let placeholder = self.correlated_slot(query, None);
        if let Some(c) = self.correlated.last_mut() {
            c.in_lhs = Some((lhs, negated));
        }
        placeholder
    }

    /// The correlated subqueries (indexes into `self.correlated`) `plan`'s filter reads.
    fn correlated_in_filter(&self, plan: &SelectPlan) -> Vec<usize> {
        self.correlated_in(plan.filter.as_ref())
    }

    /// The correlated subqueries (indexes into `self.correlated`) `filter` reads.
    fn correlated_in(&self, filter: Option<&Scalar>) -> Vec<usize> {
        if self.correlated.is_empty() {
            return Vec::new();
        }
        let mut ps = Vec::new();
        if let Some(f) = filter {
            f.params(&mut ps);
        }
        self.correlated
            .iter()
            .enumerate()
            .filter(|(_, c)| ps.contains(&c.slot))
            .map(|(i, _)| i)
            .collect()
    }

    /// Fails when a correlated slot is read anywhere but a WHERE clause.
    fn check_correlated_use(&self, plan: &SelectPlan) -> Result<()> {
        if self.correlated.is_empty() {
            return Ok(());
        }
        let mut ps = Vec::new();
        // Outputs of an ungrouped SELECT run theirs per row (`finish_plan`).
        for s in plan
            .outputs
            .iter()
            .filter(|_| plan.grouped)
            .chain(&plan.group_by)
            .chain(plan.having.iter())
        {
            s.params(&mut ps);
        }
        for (k, _, _) in &plan.order {
            if let SortKey::Expr(s) = k {
                s.params(&mut ps);
            }
        }
        for a in &plan.aggs {
            if let Some(s) = &a.arg {
                s.params(&mut ps);
            }
        }
        if self.correlated.iter().any(|c| ps.contains(&c.slot)) {
            return Err(Error::unsupported(
                "correlated subqueries are only supported in WHERE clauses and SELECT lists",
            ));
        }
        if let Some(d) = &plan.derived {
            self.check_correlated_use(d)?;
        }
        if let Some(j) = &plan.join {
            for d in j.inputs.iter().filter_map(|i| i.derived.as_ref()) {
                self.check_correlated_use(d)?;
            }
        }
        if let Some(so) = &plan.setop {
            self.check_correlated_use(&so.left)?;
            self.check_correlated_use(&so.right)?;
        }
        Ok(())
    }

    /// Filters the rows of `plan`'s input by its WHERE, running its correlated subqueries
    /// for each row.
    async fn filter_rows_plan(
        &mut self,
        plan: &SelectPlan,
        rows: Vec<Vec<Datum>>,
    ) -> Result<Vec<Vec<Datum>>> {
        self.filter_rows_scoped(plan.filter.as_ref(), &plan.scope, rows)
            .await
    }

    /// Like [`Self::filter_rows`], running correlated subqueries per row against `scope`.
    async fn filter_rows_scoped(
        &mut self,
        filter: Option<&Scalar>,
        scope: &[ScopeColumn],
        rows: Vec<Vec<Datum>>,
    ) -> Result<Vec<Vec<Datum>>> {
        let corr = self.correlated_in(filter);
        if corr.is_empty() {
            return self.filter_rows(filter, rows).await;
        }
        let Some(f) = filter else {
            return Ok(rows);
        };
        let mut kept = Vec::with_capacity(rows.len());
        for r in rows {
            self.check_cancel()?;
            for &i in &corr {
                let v = Box::pin(self.run_correlated(i, scope, &r)).await?;
                let slot = self.correlated[i].slot;
                self.cx.params[slot] = v;
            }
            if f.eval_bool(&r, &self.cx)? {
                kept.push(r);
            }
        }
        Ok(kept)
    }

    /// Runs correlated subquery `i` for one outer row: its references to the outer scope
    /// become that row's values.
    /// Replaces the references of `q` (a correlated subquery) to columns of the `outer`
    /// scope by parameters holding `row`'s values (appended to `values`, numbered after
    /// `base`, which is where the statement's parameters end).
    fn bind_outer_values(
        &self,
        q: &mut ast::Query,
        outer: &[ScopeColumn],
        row: &[Datum],
        base: usize,
        values: &mut Vec<Datum>,
    ) -> Result<()> {
        let mut ptypes: Vec<SqlType> = self
            .cx
            .params
            .iter()
            .chain(values.iter())
            .map(|d| d.natural_type())
            .collect();
        debug_assert_eq!(ptypes.len(), base + values.len());
        substitute_outer_refs(
            self.cat,
            self.db_id,
            &self.path,
            q,
            outer,
            &mut ptypes,
            &mut |col| values.push(row[col].clone()),
        )
    }

    async fn run_correlated(
        &mut self,
        i: usize,
        outer: &[ScopeColumn],
        row: &[Datum],
    ) -> Result<Datum> {
        let mut q = self.correlated[i].query.clone();
        let exists = self.correlated[i].exists;
        let in_lhs = self.correlated[i].in_lhs.clone();
        let base = self.cx.params.len();
        let corr_base = self.correlated.len();
        let mut values = Vec::new();
        self.bind_outer_values(&mut q, outer, row, base, &mut values)?;
        self.cx.params.extend(values);
        let r = self.subquery_rows(q).await;
        self.cx.params.truncate(base);
        self.correlated.truncate(corr_base);
        let (rows, cols) = r?;
        if let Some((lhs, negated)) = in_lhs {
            one_column(&cols)?;
            let mut ptypes: Vec<SqlType> =
                self.cx.params.iter().map(|d| d.natural_type()).collect();
            let (x, _) = Binder::new(outer, &mut ptypes).bind(&lhs, None)?;
            let list = rows
                .into_iter()
                .map(|r| Scalar::Const(r.into_iter().next().unwrap_or(Datum::Null)))
                .collect();
            return Scalar::InList(Box::new(x), list, negated).eval(row, &self.cx);
        }
        Ok(match exists {
            Some(negated) => Datum::Bool(rows.is_empty() == negated),
            None => {
                one_column(&cols)?;
                if rows.len() > 1 {
                    return Err(Error::new(
                        ErrorKind::Cardinality,
                        "more than one row returned by a subquery used as an expression",
                    ));
                }
                rows.into_iter()
                    .next()
                    .and_then(|r| r.into_iter().next())
                    .unwrap_or(Datum::Null)
            }
        })
    }

    /// `$n::type` for a subquery's value `v`, appended to the statement's parameters.
    fn subquery_param(&mut self, v: Datum, ty: SqlType) -> Expr {
        self.cx.params.push(v);
        let p = Expr::Value(ast::Value::Placeholder(format!("${}", self.cx.params.len())).into());
        Expr::Cast {
            kind: ast::CastKind::DoubleColon,
            expr: Box::new(p),
            data_type: ast::DataType::Custom(
                ast::ObjectName::from(vec![ast::Ident::new(fix_unknown(ty).name())]),
                vec![],
            ),
            format: None,
        }
    }

    async fn run_plain(&mut self, stmt: &Statement) -> Result<(Outcome, Option<Vec<Column>>)> {
        match stmt {
            Statement::Query(q) => self.select(q).await,
            Statement::Insert(ins) => self.insert(ins).await,
            Statement::ShowVariable { variable } if show_index_entries_of(variable).is_some() => {
                self.show_index_entries(show_index_entries_of(variable).unwrap())
                    .await
            }
            Statement::ShowVariable { variable } if show_statistics_of(variable).is_some() => {
                self.show_statistics(show_statistics_of(variable).unwrap())
            }
            Statement::ShowVariable { variable } if is_show_jobs(variable) => {
                let rows: Vec<Vec<Datum>> = crate::sql::jobs::list(self.ctx)
                    .await?
                    .iter()
                    .map(crate::sql::jobs::row)
                    .collect();
                Ok(select_rows(rows, crate::sql::jobs::columns()))
            }
            Statement::ShowVariable { variable } if show_ranges_table(variable).is_some() => {
                self.show_ranges(show_ranges_table(variable).unwrap()).await
            }
            Statement::Update(u) => self.update(u).await,
            Statement::Delete(d) => self.delete(d).await,
            Statement::CreateTable(ct) => self.create_table(ct).await,
            Statement::CreateView(cv) if cv.materialized => self.create_materialized_view(cv).await,
            Statement::CreateView(cv) => self.create_view(cv).await,
            Statement::AlterView(av) => self.alter_view(av).await,
            Statement::CreateFunction(cf) => self.create_function(cf).await,
            Statement::DropFunction(df) => self.drop_function(df).await,
            Statement::Explain {
                statement,
                analyze,
                options,
                ..
            } => {
                let has = |name: &str| {
                    options.as_ref().is_some_and(|o| {
                        o.iter().any(|u| {
                            u.name.value.eq_ignore_ascii_case(name)
                                && u.arg.as_ref().is_none_or(|a| {
                                    !matches!(
                                        a.to_string().to_lowercase().as_str(),
                                        "false" | "off" | "0"
                                    )
                                })
                        })
                    })
                };
                self.explain(statement, *analyze || has("analyze"), has("distsql"))
                    .await
            }
            Statement::RefreshMaterializedView(r) => self.refresh_materialized_view(r).await,
            Statement::CreateIndex(ci) => self.create_index(ci).await,
            Statement::AlterTable(at) => {
                // ADD COLUMN in an implicit transaction is a schema change job in SHOW
                // JOBS (as CockroachDB shows it; a default needs no rewrite here, so it
                // ends at once). Index builds record jobs of their own.
                let adds = at
                    .operations
                    .iter()
                    .any(|op| matches!(op, ast::AlterTableOperation::AddColumn { .. }));
                if !adds || !self.txn.implicit {
                    return self.alter_table(at).await;
                }
                let mut job = crate::sql::jobs::Job::new(
                    self.ctx,
                    "ALTER TABLE",
                    &at.to_string(),
                    &self.cx.user,
                );
                let _ = job.save(self.ctx).await;
                let out = self.alter_table(at).await;
                let result = out.as_ref().map(|_| ()).map_err(Clone::clone);
                job.finish(self.ctx, &result).await;
                out
            }
            Statement::CreateDatabase {
                db_name,
                if_not_exists,
                ..
            } => self.create_database(db_name, *if_not_exists).await,
            Statement::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => self.create_schema(schema_name, *if_not_exists).await,
            Statement::Drop {
                object_type: ObjectType::Role | ObjectType::User,
                if_exists,
                names,
                ..
            } => self.drop_roles(names, *if_exists).await,
            Statement::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => self.drop(*object_type, *if_exists, names, *cascade).await,
            Statement::CreateRole(cr) => self.create_roles(cr).await,
            Statement::AlterRole { name, operation } => self.alter_role(name, operation).await,
            Statement::CreateSequence {
                temporary,
                if_not_exists,
                name,
                sequence_options,
            } => {
                self.create_sequence(name, *if_not_exists, *temporary, sequence_options)
                    .await
            }
            Statement::Truncate(t) => {
                let mut named = Vec::new();
                for tn in &t.table_names {
                    let table = lookup_table(self.cat, self.db_id, &self.path, &tn.name)?;
                    materialized_views::refuse_write(&table, materialized_views::Write::Truncate)?;
                    named.push(table);
                }
                let cascade = matches!(t.cascade, Some(ast::CascadeOption::Cascade));
                let tables = self.truncate_set(named, cascade)?;
                for table in &tables {
                    let rows = self.read_rows(table, Access::Full).await?;
                    for row in rows {
                        self.delete_row(table, &row);
                    }
                }
                if matches!(t.identity, Some(ast::TruncateIdentityOption::Restart)) {
                    // RESTART IDENTITY: the sequences the tables' columns own start over.
                    for s in self.cat.tables_in(self.db_id) {
                        if let Some(sq) = &s.sequence {
                            if sq
                                .owned_by
                                .is_some_and(|(tid, _)| tables.iter().any(|t| t.id == tid))
                            {
                                sequence::advance(self.ctx, s, SeqOp::Restart(sq.start)).await?;
                            }
                        }
                    }
                }
                Ok((Outcome::Command("TRUNCATE".into()), None))
            }
            Statement::ShowTables { .. } => {
                let mut rows: Vec<Vec<Datum>> = self
                    .cat
                    .tables_in(self.db_id)
                    .map(|t| {
                        vec![
                            Datum::Text(t.schema.clone()),
                            Datum::Text(t.name.clone()),
                            Datum::Text(view_deps::kind_name(t).into()),
                            Datum::Text("root".into()),
                        ]
                    })
                    .collect();
                // CockroachDB's order: by schema, then name.
                rows.sort_by(|a, b| a[0].order_cmp(&b[0]).then(a[1].order_cmp(&b[1])));
                let n = rows.len();
                Ok((
                    Outcome::Rows {
                        rows,
                        tag: format!("SELECT {n}"),
                        suspended: false,
                    },
                    Some(show_tables_columns()),
                ))
            }
            Statement::ShowDatabases { .. } => {
                let mut rows: Vec<Vec<Datum>> = self
                    .cat
                    .databases
                    .iter()
                    .map(|d| vec![Datum::Text(d.name.clone()), Datum::Text("root".into())])
                    .collect();
                rows.sort_by(|a, b| a[0].order_cmp(&b[0]));
                let n = rows.len();
                Ok((
                    Outcome::Rows {
                        rows,
                        tag: format!("SELECT {n}"),
                        suspended: false,
                    },
                    Some(show_databases_columns()),
                ))
            }
            Statement::Analyze(a) => self.analyze(a).await,
            Statement::Comment {
                object_type,
                object_name,
                comment,
                ..
            } => {
                self.comment_on(*object_type, object_name, comment.as_deref())
                    .await
            }
            other => Err(Error::unsupported(format!(
                "unsupported statement: {}",
                first_words(&other.to_string())
            ))),
        }
    }

    // --- KV through the transaction ---

    async fn kv_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(own) = self.txn.own_write(key) {
            return Ok(own.map(|v| v.to_vec()));
        }
        let mut unc = self.txn.uncertainty_limit();
        for _ in 0..UNCERTAINTY_RETRIES {
            match self.ctx.kv_read(key, self.txn.read_ts(), unc).await? {
                Ok(v) => {
                    self.txn.read_key(key);
                    self.note_read();
                    return Ok(v);
                }
                // One key: one range, whose leaseholder's clock bounds the retry.
                Err(u) => unc = self.read_uncertain(u, unc, true).await?,
            }
        }
        Err(uncertainty_exhausted())
    }

    /// Scans `[start, end)` at the transaction's read timestamp (at most `limit` rows, 0:
    /// all), moving the timestamp up past uncertain values first.
    async fn kv_scan_at(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut unc = self.txn.uncertainty_limit();
        // The serving node's clock bounds a retry only when one range (one leaseholder)
        // serves the whole span.
        let one_range = {
            let (_, range_end) = self.ctx.ranges.borrow().locate(start);
            range_end.is_empty() || end <= range_end.as_slice()
        };
        for _ in 0..UNCERTAINTY_RETRIES {
            match self
                .ctx
                .kv_scan_read(start, end, self.txn.read_ts(), unc, limit)
                .await?
            {
                Ok(rows) => {
                    self.note_read();
                    return Ok(rows);
                }
                Err(u) => unc = self.read_uncertain(u, unc, one_range).await?,
            }
        }
        Err(uncertainty_exhausted())
    }

    fn note_read(&self) {
        let n = &self.txn.reads_served;
        n.set(n.get() + 1);
    }

    /// A read met a value in its uncertainty interval: it may have been written before
    /// this transaction started, so the transaction reads at its timestamp from now on.
    /// What was read so far is refreshed to it (40001 if some of it changed); a statement
    /// that does not track its reads can move only before its first read (else 40001,
    /// retried by the gateway for an implicit transaction). Answers the uncertainty limit
    /// for the read's retry: with `one_node` (the retry reads from the node that served
    /// this read only), that node's clock bounds what it can hold; another node's clock
    /// may run ahead of it by up to the maximum offset, so a read served by several nodes
    /// keeps its whole interval.
    async fn read_uncertain(
        &self,
        u: Uncertain,
        unc: chitin_storage::Timestamp,
        one_node: bool,
    ) -> Result<chitin_storage::Timestamp> {
        self.ctx.shared.hlc.update(u.value_ts);
        let from = self.txn.read_ts();
        if !self.txn.track_reads && self.txn.reads_served.get() > 0 {
            return Err(Error::retry(format!(
                "restart transaction: ReadWithinUncertaintyIntervalError: read at time {from} \
                 encountered previous write with future timestamp {} within uncertainty \
                 interval `t <= {unc}`",
                u.value_ts
            )));
        }
        self.advance_read_ts(u.value_ts).await?;
        self.ctx
            .metrics()
            .txn_uncertainty_restarts
            .fetch_add(1, Ordering::Relaxed);
        Ok(if one_node { unc.min(u.observed) } else { unc })
    }

    /// Moves the read timestamp up to `to`, refreshing what was read so far under
    /// SERIALIZABLE (40001 if some of it changed since).
    async fn advance_read_ts(&self, to: chitin_storage::Timestamp) -> Result<()> {
        let from = self.txn.read_ts();
        if to <= from {
            return Ok(());
        }
        if self.txn.track_reads {
            let reads = self.txn.reads.borrow().clone();
            if !reads.is_empty() {
                crate::sql::session::refresh_reads(self.ctx, self.txn.id, &reads, from, to).await?;
            }
        }
        self.txn.advance_read_ts(to);
        Ok(())
    }

    async fn kv_scan(&self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let rows = self.kv_scan_at(start, end, 0).await?;
        self.txn.read_span(start, end);
        let own: Vec<_> = self
            .txn
            .writes
            .range(start.to_vec()..end.to_vec())
            .collect();
        if own.is_empty() {
            return Ok(rows);
        }
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = rows.into_iter().collect();
        for (k, p) in own {
            match p {
                crate::txn::Pending::Put(v) | crate::txn::Pending::Insert(v) => {
                    merged.insert(k.clone(), v.clone());
                }
                crate::txn::Pending::Delete => {
                    merged.remove(k);
                }
            }
        }
        Ok(merged.into_iter().collect())
    }

    fn pk_key(t: &TableDesc, row: &[Datum]) -> Vec<u8> {
        let mut k = index_prefix(t.id, t.primary_index);
        for &i in &t.pk {
            encode_key_datum(&row[i], &mut k);
        }
        k
    }

    /// The key of `row` in secondary index `idx`: unique indexes key by their columns alone
    /// (plus the primary key when a column is NULL, since NULLs never conflict); others by
    /// their columns then the primary key. The value is the row's primary key.
    fn index_key(t: &TableDesc, idx: &IndexDesc, row: &[Datum]) -> Vec<u8> {
        let mut k = index_prefix(t.id, idx.id);
        let mut has_null = false;
        for &i in &idx.columns {
            has_null |= row[i].is_null();
            encode_key_datum(&row[i], &mut k);
        }
        if !idx.unique || has_null {
            for &i in &t.pk {
                encode_key_datum(&row[i], &mut k);
            }
        }
        k
    }

    fn unique_conflict_possible(idx: &IndexDesc, row: &[Datum]) -> bool {
        idx.unique && !idx.columns.iter().any(|&i| row[i].is_null())
    }

    /// Whether `t` has a row this transaction sees (its own writes count).
    async fn table_has_rows(&self, t: &TableDesc) -> Result<bool> {
        let start = index_prefix(t.id, t.primary_index);
        let end = prefix_end(&start);
        if self
            .txn
            .writes
            .range(start.clone()..end.clone())
            .next()
            .is_some()
        {
            return Ok(true);
        }
        Ok(!self
            .ctx
            .kv_scan(&start, &end, self.txn.read_ts(), 1)
            .await?
            .is_empty())
    }

    async fn read_rows(&self, t: &TableDesc, access: Access) -> Result<Vec<Vec<Datum>>> {
        let mut out = Vec::new();
        match access {
            Access::Point(vals) => {
                let k = Self::pk_key_from(t, &vals);
                if let Some(v) = self.kv_get(&k).await? {
                    out.push(t.decode_row(&v)?);
                }
            }
            Access::Points(vals) => {
                let mut keys_: Vec<Vec<u8>> = vals
                    .iter()
                    .map(|v| Self::pk_key_from(t, std::slice::from_ref(v)))
                    .collect();
                keys_.sort();
                keys_.dedup();
                for k in keys_ {
                    if let Some(v) = self.kv_get(&k).await? {
                        out.push(t.decode_row(&v)?);
                    }
                }
            }
            Access::Span(s, e) => {
                for (_, v) in self.kv_scan(&s, &e).await? {
                    out.push(t.decode_row(&v)?);
                }
            }
            Access::Index(idx, vals) => {
                let mut p = index_prefix(t.id, idx.id);
                for v in &vals {
                    encode_key_datum(v, &mut p);
                }
                let end = prefix_end(&p);
                for (_, pk) in self.kv_scan(&p, &end).await? {
                    self.check_cancel()?;
                    if let Some(v) = self.kv_get(&pk).await? {
                        out.push(t.decode_row(&v)?);
                    }
                }
            }
            Access::IndexRange(_, start, end) => {
                for (_, pk) in self.kv_scan(&start, &end).await? {
                    self.check_cancel()?;
                    if let Some(v) = self.kv_get(&pk).await? {
                        out.push(t.decode_row(&v)?);
                    }
                }
            }
            Access::Full => {
                let p = index_prefix(t.id, t.primary_index);
                let end = prefix_end(&p);
                for (_, v) in self.kv_scan(&p, &end).await? {
                    out.push(t.decode_row(&v)?);
                }
            }
        }
        self.count_rows_read(out.len() as u64);
        Ok(out)
    }

    fn count_rows_read(&self, n: u64) {
        self.rows_read.set(self.rows_read.get() + n);
    }

    fn pk_key_from(t: &TableDesc, vals: &[Datum]) -> Vec<u8> {
        let mut k = index_prefix(t.id, t.primary_index);
        for v in vals {
            encode_key_datum(v, &mut k);
        }
        k
    }

    /// The secondary index to look up, among those whose columns all have an equality
    /// (`bound`): with table statistics, the one expected to leave the fewest rows (a unique
    /// index: one), and none when even that would fetch more than a tenth of a table of
    /// 1000 rows or more (a scan is cheaper than that many lookups); without statistics,
    /// the first.
    fn best_index<'t>(
        &self,
        t: &'t TableDesc,
        bound: impl Fn(usize) -> bool,
    ) -> Option<&'t IndexDesc> {
        use crate::sql::stats;
        let mut best: Option<(&IndexDesc, Option<f64>)> = None;
        for idx in t
            .indexes
            .iter()
            .filter(|i| i.columns.iter().all(|&c| bound(c)))
        {
            let est = if idx.unique {
                Some(1.0)
            } else {
                stats::estimate_eq_rows(&self.cat.stats, t.id, &idx.columns)
            };
            let better = match (best, est) {
                (None, _) => true,
                (Some((_, Some(b))), Some(e)) => e < b,
                (Some((_, None)), Some(_)) => true,
                _ => false,
            };
            if better {
                best = Some((idx, est));
            }
        }
        let (idx, est) = best?;
        if let (Some(e), Some(n)) = (est, stats::row_count(&self.cat.stats, t.id)) {
            if n >= 1000 && e > n as f64 / 10.0 {
                return None;
            }
        }
        Some(idx)
    }

    /// Picks an access path from the conjuncts of the filter.
    fn choose_access(&self, t: &TableDesc, filter: Option<&Scalar>) -> Access {
        let Some(f) = filter else { return Access::Full };
        let mut conj = Vec::new();
        flatten_and(f, &mut conj);
        // Operands that are index expressions, as their computed columns.
        let substituted = crate::sql::computed::substitute(t, &conj);
        if let Some(subs) = &substituted {
            conj = subs.iter().collect();
        }
        // `pk IN (constants)` on a one-column primary key: one point read per value.
        if t.pk.len() == 1 {
            for c in &conj {
                if let Scalar::InList(x, list, false) = c {
                    if matches!(x.as_ref(), Scalar::Column(i) if *i == t.pk[0])
                        && list.len() <= 10_000
                        && list.iter().all(is_value)
                    {
                        let ty = t.columns[t.pk[0]].ty;
                        let vals: Option<Vec<Option<Datum>>> =
                            list.iter().map(|v| self.exact_or_null(v, ty)).collect();
                        if let Some(vals) = vals {
                            return Access::Points(vals.into_iter().flatten().collect());
                        }
                    }
                }
            }
        }
        let mut eq: BTreeMap<usize, Datum> = BTreeMap::new();
        let mut lower: Option<(Datum, bool)> = None;
        let mut upper: Option<(Datum, bool)> = None;
        let mut ranges = ColumnRanges::new();
        let first_pk = t.pk[0];
        for c in &conj {
            let (op, col, val) = match c {
                Scalar::Binary(op, l, r, _) => match (l.as_ref(), r.as_ref()) {
                    (Scalar::Column(i), v) if is_value(v) => (*op, *i, v),
                    (v, Scalar::Column(i)) if is_value(v) => (flip(*op), *i, v),
                    _ => continue,
                },
                Scalar::Between(x, lo, hi, false) => {
                    if let (Scalar::Column(i), true, true) =
                        (x.as_ref(), is_value(lo), is_value(hi))
                    {
                        if let (Some(l), Some(h)) = (
                            self.exact(lo, t.columns[*i].ty),
                            self.exact(hi, t.columns[*i].ty),
                        ) {
                            if *i == first_pk {
                                lower = Some((l, true));
                                upper = Some((h, true));
                            } else {
                                ranges.insert(*i, (Some((l, true)), Some((h, true))));
                            }
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            let Some(v) = self.exact(val, t.columns[col].ty) else {
                continue;
            };
            match op {
                BinOp::Eq => {
                    eq.insert(col, v);
                }
                BinOp::Gt | BinOp::GtEq if col == first_pk => lower = Some((v, op == BinOp::GtEq)),
                BinOp::Lt | BinOp::LtEq if col == first_pk => upper = Some((v, op == BinOp::LtEq)),
                BinOp::Gt | BinOp::GtEq => {
                    ranges.entry(col).or_default().0 = Some((v, op == BinOp::GtEq))
                }
                BinOp::Lt | BinOp::LtEq => {
                    ranges.entry(col).or_default().1 = Some((v, op == BinOp::LtEq))
                }
                _ => {}
            }
        }
        if t.pk.iter().all(|c| eq.contains_key(c)) {
            return Access::Point(t.pk.iter().map(|c| eq[c].clone()).collect());
        }
        if let Some(idx) = self.best_index(t, |c| eq.contains_key(&c)) {
            return Access::Index(
                idx.clone(),
                idx.columns.iter().map(|c| eq[c].clone()).collect(),
            );
        }
        let prefix = index_prefix(t.id, t.primary_index);
        if let Some(v) = eq.get(&first_pk) {
            let mut s = prefix.clone();
            encode_key_datum(v, &mut s);
            let e = prefix_end(&s);
            return Access::Span(s, e);
        }
        if lower.is_some() || upper.is_some() {
            let start = match &lower {
                Some((v, incl)) => {
                    let mut s = prefix.clone();
                    encode_key_datum(v, &mut s);
                    if *incl {
                        s
                    } else {
                        prefix_end(&s)
                    }
                }
                None => prefix.clone(),
            };
            let end = match &upper {
                Some((v, incl)) => {
                    let mut s = prefix.clone();
                    encode_key_datum(v, &mut s);
                    if *incl {
                        prefix_end(&s)
                    } else {
                        s
                    }
                }
                None => prefix_end(&prefix),
            };
            return Access::Span(start, end);
        }
        if let Some(a) = self.index_range(t, &ranges) {
            return a;
        }
        Access::Full
    }

    /// A range scan of the secondary index whose first column has the most selective range
    /// in `ranges`, when the statistics say it reads at most a tenth of the table (each
    /// entry costs a primary key read, so a wider range scans the table instead).
    fn index_range(&self, t: &TableDesc, ranges: &ColumnRanges) -> Option<Access> {
        use crate::sql::stats;
        let mut best: Option<(&IndexDesc, f64)> = None;
        for idx in &t.indexes {
            let col = idx.columns[0];
            let Some((lo, hi)) = ranges.get(&col) else {
                continue;
            };
            // Floats: -0 = 0 and NaN sorts above everything, unlike their keys.
            if t.columns[col].ty.is_float() {
                continue;
            }
            let frac = stats::range_fraction(
                &self.cat.stats,
                t.id,
                col,
                t.columns[col].ty,
                lo.as_ref().map(|(v, _)| v),
                hi.as_ref().map(|(v, _)| v),
            )?;
            if frac <= 0.1 && best.is_none_or(|(_, f)| frac < f) {
                best = Some((idx, frac));
            }
        }
        let (idx, _) = best?;
        let (lo, hi) = &ranges[&idx.columns[0]];
        let prefix = index_prefix(t.id, idx.id);
        let start = match lo {
            Some((v, incl)) => {
                let mut s = prefix.clone();
                encode_key_datum(v, &mut s);
                if *incl {
                    s
                } else {
                    prefix_end(&s)
                }
            }
            // After the NULLs, which sort first and match no range.
            None => {
                let mut s = prefix.clone();
                encode_key_datum(&Datum::Null, &mut s);
                prefix_end(&s)
            }
        };
        let end = match hi {
            Some((v, incl)) => {
                let mut s = prefix.clone();
                encode_key_datum(v, &mut s);
                if *incl {
                    prefix_end(&s)
                } else {
                    s
                }
            }
            None => prefix_end(&prefix),
        };
        Some(Access::IndexRange(idx.clone(), start, end))
    }

    /// Like [`Exec::exact`], but a NULL value is `Some(None)` (it matches no row).
    fn exact_or_null(&self, s: &Scalar, ty: SqlType) -> Option<Option<Datum>> {
        match s.eval(&[], &self.cx).ok()? {
            Datum::Null => Some(None),
            _ => self.exact(s, ty).map(Some),
        }
    }

    /// The value of a constant/parameter as column type `ty`, only when the conversion is
    /// exact (so an index lookup finds exactly what the filter would).
    fn exact(&self, s: &Scalar, ty: SqlType) -> Option<Datum> {
        let v = s.eval(&[], &self.cx).ok()?;
        if v.is_null() {
            return None;
        }
        let same_kind = matches!(
            (&v, ty),
            (Datum::Int(_), t) if t.is_int()
        ) || matches!((&v, ty), (Datum::Text(_), SqlType::Text | SqlType::Varchar))
            || matches!(
                (&v, ty),
                (Datum::Float(_), SqlType::Float4 | SqlType::Float8)
            )
            || matches!((&v, ty), (Datum::Bool(_), SqlType::Bool))
            || matches!((&v, ty), (Datum::Uuid(_), SqlType::Uuid))
            || matches!((&v, ty), (Datum::Interval(_), SqlType::Interval))
            || matches!((&v, ty), (Datum::Date(_), SqlType::Date))
            || matches!((&v, ty), (Datum::Bytes(_), SqlType::Bytea))
            || matches!((&v, ty), (Datum::Timestamp(_), SqlType::Timestamp))
            || matches!((&v, ty), (Datum::TimestampTz(_), SqlType::TimestampTz));
        if same_kind {
            if let Datum::Int(i) = v {
                crate::sql::types::check_int_range(ty, i).ok()?;
            }
            Some(v)
        } else {
            None
        }
    }

    // --- SELECT ---

    async fn select(&mut self, q: &ast::Query) -> Result<(Outcome, Option<Vec<Column>>)> {
        if let Some((inner, value)) = as_of_system_time(q) {
            if !self.txn.implicit || !self.txn.writes.is_empty() {
                return Err(Error::unsupported(
                    "AS OF SYSTEM TIME is only supported in a single-statement (implicit) transaction",
                ));
            }
            let ts = as_of_timestamp(value, self.ctx.shared.hlc.now())?;
            self.txn.reset_read_ts(ts, ts);
            self.cx.txn_ts = ts;
            self.cx.now_micros = (ts.wall / 1000) as i64;
            let r = Box::pin(self.select(inner)).await;
            // The fast path reads at the present: never for a historical read.
            if let Some(c) = self.plan_cache {
                *c.point.borrow_mut() = None;
            }
            return r;
        }
        let mut ptypes: Vec<SqlType> = self.cx.params.iter().map(|d| d.natural_type()).collect();
        // PERF: a prepared point lookup reuses its plan; only the parameters change.
        let cached = self.plan_cache.and_then(|c| {
            let slot = c.slot.borrow();
            match &*slot {
                Some((v, db, types, plan))
                    if *v == self.cat.version && *db == self.db_id && *types == ptypes =>
                {
                    Some(plan.clone())
                }
                _ => None,
            }
        });
        let plan = match cached {
            Some(p) => p,
            None => {
                let key_types = ptypes.clone();
                let plan = Rc::new(plan_select(
                    self.cat,
                    self.db_id,
                    &self.path,
                    q,
                    &mut ptypes,
                )?);
                if let Some(c) = self.plan_cache {
                    *c.slot.borrow_mut() =
                        Some((self.cat.version, self.db_id, key_types, plan.clone()));
                    *c.point.borrow_mut() =
                        PointLookup::of(&plan).map(|p| (self.cat.version, self.db_id, Rc::new(p)));
                }
                plan
            }
        };
        self.check_correlated_use(&plan)?;
        let columns = self.correlated_output_types(&plan);
        let rows = self.run_plan(&plan).await?;
        let n = rows.len();
        Ok((
            Outcome::Rows {
                rows,
                tag: format!("SELECT {n}"),
                suspended: false,
            },
            // Prepared statements described their columns at Parse.
            if self.plan_cache.is_some() {
                None
            } else {
                Some(columns)
            },
        ))
    }

    /// `plan`'s columns, with the type of each correlated subquery in its SELECT list
    /// (planned against the outer scope; unknown until then).
    fn correlated_output_types(&self, plan: &SelectPlan) -> Vec<Column> {
        let mut columns = plan.columns.clone();
        if self.correlated.is_empty() || plan.grouped {
            return columns;
        }
        for (k, o) in plan.outputs.iter().enumerate() {
            let Scalar::Param(slot) = o else { continue };
            let Some(c) = self
                .correlated
                .iter()
                .find(|c| c.slot == *slot && c.exists.is_none())
            else {
                continue;
            };
            let mut q = c.query.clone();
            let mut ptypes: Vec<SqlType> =
                self.cx.params.iter().map(|d| d.natural_type()).collect();
            let substituted = substitute_outer_refs(
                self.cat,
                self.db_id,
                &self.path,
                &mut q,
                &plan.scope,
                &mut ptypes,
                &mut |_| {},
            );
            if substituted.is_err() {
                continue;
            }
            if let Ok(p) = plan_select(self.cat, self.db_id, &self.path, &q, &mut ptypes) {
                if let (Some(col), Some(out)) = (p.columns.first(), columns.get_mut(k)) {
                    out.ty = col.ty;
                }
            }
        }
        columns
    }

    async fn run_plan(&mut self, plan: &SelectPlan) -> Result<Vec<Vec<Datum>>> {
        if self.op_stats.is_none() {
            return self.run_plan_inner(plan).await;
        }
        self.op_depth += 1;
        let r = Box::pin(self.run_plan_inner(plan)).await;
        self.op_depth -= 1;
        r
    }

    async fn run_plan_inner(&mut self, plan: &SelectPlan) -> Result<Vec<Vec<Datum>>> {
        // A WHERE clause false for every row (`WHERE 1 = 0`) reads nothing: without this,
        // `generate_series(1, 100000000) WHERE 1 = 0` would build every row first.
        if let Some(f) = &plan.filter {
            if plan.values.is_none()
                && plan.setop.is_none()
                && plan.series.is_none()
                && f.is_row_independent()
                && !f.eval_bool(&[], &self.cx)?
            {
                return self.finish_plan(plan, Vec::new()).await;
            }
        }
        // Input rows.
        let input: Vec<Vec<Datum>> =
            if let (Some(args), SqlType::Timestamp | SqlType::TimestampTz) =
                (&plan.series, plan.columns[0].ty)
            {
                self.timestamp_series(plan.columns[0].ty, args).await?
            } else if let Some(args) = &plan.series {
                let ty = plan.columns[0].ty;
                let mut vals = Vec::with_capacity(3);
                for a in args {
                    vals.push(a.eval(&[], &self.cx)?.cast(SqlType::Numeric)?);
                }
                if let Some(e) = crate::sql::numeric_special::series_argument_error(&vals) {
                    return Err(e);
                }
                let num = |d: &Datum| match d {
                    Datum::Numeric(n) => Some(*n),
                    _ => None,
                };
                let (Some(start), Some(stop)) = (num(&vals[0]), num(&vals[1])) else {
                    return Ok(Vec::new());
                };
                let step = match vals.get(2) {
                    Some(d) => match num(d) {
                        Some(s) => s,
                        None => return Ok(Vec::new()),
                    },
                    None => rust_decimal::Decimal::ONE,
                };
                if step.is_zero() {
                    return Err(Error::new(
                        ErrorKind::InvalidParameterValue,
                        "step size cannot equal zero",
                    ));
                }
                let mut rows = Vec::new();
                let mut v = start;
                while (step.is_sign_positive() && v <= stop)
                    || (step.is_sign_negative() && v >= stop)
                {
                    if rows.len() % 4096 == 4095 {
                        self.pause().await?;
                    }
                    rows.push(vec![Datum::Numeric(v).cast(ty)?]);
                    v += step;
                }
                rows
            } else if let Some(values) = &plan.values {
                let mut rows = Vec::new();
                for r in values {
                    let mut out = Vec::new();
                    for (i, s) in r.iter().enumerate() {
                        out.push(s.eval(&[], &self.cx)?.cast(plan.columns[i].ty)?);
                    }
                    rows.push(out);
                }
                rows
            } else if let Some(join) = &plan.join {
                // Correlated subqueries in WHERE read the joined row: nothing is pushed.
                let pushable = if self.correlated_in_filter(plan).is_empty() {
                    plan.filter.as_ref()
                } else {
                    None
                };
                let rows = self.run_join(join, pushable).await?;
                self.filter_rows_plan(plan, rows).await?
            } else if let Some(so) = &plan.setop {
                let cast = |rows: Vec<Vec<Datum>>| -> Result<Vec<Vec<Datum>>> {
                    rows.into_iter()
                        .map(|r| {
                            r.into_iter()
                                .zip(&plan.columns)
                                .map(|(d, c)| d.cast(c.ty))
                                .collect()
                        })
                        .collect()
                };
                let l = cast(Box::pin(self.run_plan(&so.left)).await?)?;
                let r = cast(Box::pin(self.run_plan(&so.right)).await?)?;
                combine_set_op(so.op, so.all, l, r)
            } else if let Some(inner) = &plan.derived {
                let rows = Box::pin(self.run_plan(inner)).await?;
                self.filter_rows_plan(plan, rows).await?
            } else if let (Some(t), Some(wait)) = (&plan.table, plan.lock) {
                return self.run_locking(plan, t, wait).await;
            } else if let Some(t) = &plan.table {
                let access = self.choose_access(t, plan.filter.as_ref());
                // Flows (those of a LIMIT in key order stop once they have enough rows).
                if let Some(rows) = self.try_distsql(plan, t, &access).await? {
                    return Ok(rows);
                }
                let started = self.op_start();
                // PERF: LIMIT over the primary key order reads only as many rows as it needs.
                if let (Some(want), Access::Span(..) | Access::Full) =
                    (self.pk_order_limit(plan, t)?, &access)
                {
                    let (start, end) = match access {
                        Access::Span(s, e) => (s, e),
                        _ => {
                            let p = index_prefix(t.id, t.primary_index);
                            let e = prefix_end(&p);
                            (p, e)
                        }
                    };
                    let rows = self.scan_filtered(t, plan, start, end, want).await?;
                    self.op_done(
                        started,
                        || format!("scan {} → filter: first {want} rows in key order", t.name),
                        rows.len(),
                    );
                    return self.finish_plan(plan, rows).await;
                }
                let correlated = !self.correlated_in_filter(plan).is_empty();
                let access = if correlated { Access::Full } else { access };
                // Named before the access moves, only when EXPLAIN ANALYZE records.
                let name = started.map(|_| access_name(&access)).unwrap_or_default();
                let rows = self.read_rows(t, access).await?;
                self.op_done(started, || format!("scan {}: {name}", t.name), rows.len());
                let started = self.op_start();
                let rows = if correlated {
                    // Correlated subqueries in WHERE: read everything, filter row by row.
                    self.filter_rows_plan(plan, rows).await?
                } else {
                    self.filter_rows(plan.filter.as_ref(), rows).await?
                };
                if plan.filter.is_some() {
                    self.op_done(started, || "filter".into(), rows.len());
                }
                rows
            } else {
                let keep = match &plan.filter {
                    Some(f) => f.eval_bool(&[], &self.cx)?,
                    None => true,
                };
                if keep {
                    vec![Vec::new()]
                } else {
                    Vec::new()
                }
            };
        self.finish_plan(plan, input).await
    }

    /// Grouping, projection, DISTINCT, ORDER BY, OFFSET and LIMIT over the input rows.
    async fn finish_plan(
        &mut self,
        plan: &SelectPlan,
        input: Vec<Vec<Datum>>,
    ) -> Result<Vec<Vec<Datum>>> {
        self.finish_plan_sorted(plan, input, Presorted::No).await
    }

    /// [`Self::finish_plan`] over input already in the ORDER BY's order, or in sorted runs
    /// (the answers of DistSQL flows): ORDER BY then keeps or merges instead of sorting.
    async fn finish_plan_sorted(
        &mut self,
        plan: &SelectPlan,
        input: Vec<Vec<Datum>>,
        presorted: Presorted,
    ) -> Result<Vec<Vec<Datum>>> {
        self.check_cancel()?;
        let started = self.op_start();
        // (output row, sort keys)
        let mut produced: Vec<(Vec<Datum>, Vec<Datum>)> = Vec::new();
        if plan.values.is_some() || plan.setop.is_some() || plan.series.is_some() {
            for (n, r) in input.into_iter().enumerate() {
                if n % 1024 == 1023 {
                    self.pause().await?;
                }
                let keys = self.sort_keys(plan, &r, &r)?;
                produced.push((r, keys));
            }
        } else if plan.grouped {
            let mut grouper = Grouper::default();
            for (n, r) in input.into_iter().enumerate() {
                if n % 1024 == 1023 {
                    self.pause().await?;
                }
                grouper.add(&plan.group_by, &plan.aggs, r, &self.cx)?;
            }
            produced = self.project_groups(plan, grouper.groups)?;
        } else {
            // PERF: a projection of distinct plain columns moves them out of the input
            // row instead of cloning them (no copy of text values).
            let moves =
                plain_columns(&plan.outputs) && plan.order.is_empty() && plan.srfs.is_empty();
            // Correlated subqueries in the SELECT list: run for each row.
            let output_corr: Vec<usize> = plan
                .outputs
                .iter()
                .flat_map(|o| self.correlated_in(Some(o)))
                .collect();
            let seq_outputs = !moves && plan.outputs.iter().any(|o| o.has_sequence_call());
            let mut window_values = if plan.windows.is_empty() {
                Vec::new()
            } else {
                self.compute_windows(&plan.windows, &input)?
            };
            for (n, mut r) in input.into_iter().enumerate() {
                if n % 1024 == 1023 {
                    self.pause().await?;
                }
                if let Some(w) = window_values.get_mut(n) {
                    self.cx.windows = std::mem::take(w);
                }
                let out = if moves {
                    plan.outputs
                        .iter()
                        .map(|o| match o {
                            Scalar::Column(i) => r
                                .get_mut(*i)
                                .map(|d| std::mem::replace(d, Datum::Null))
                                .unwrap_or(Datum::Null),
                            _ => Datum::Null,
                        })
                        .collect()
                } else {
                    for &i in &output_corr {
                        let v = Box::pin(self.run_correlated(i, &plan.scope, &r)).await?;
                        let slot = self.correlated[i].slot;
                        self.cx.params[slot] = v;
                    }
                    if seq_outputs {
                        let outs: Vec<&Scalar> = plan.outputs.iter().collect();
                        self.run_sequence_calls(&outs, &r).await?;
                    }
                    self.project(plan, &r)?
                };
                if !plan.srfs.is_empty() {
                    for out in self.expand_srfs(plan, &r, out)? {
                        let keys = self.sort_keys(plan, &r, &out)?;
                        produced.push((out, keys));
                    }
                    continue;
                }
                let keys = if moves {
                    Vec::new()
                } else {
                    self.sort_keys(plan, &r, &out)?
                };
                produced.push((out, keys));
            }
        }
        let out = self.finish_produced(plan, produced, presorted)?;
        self.op_done(started, || op_stats::tail_name(plan), out.len());
        Ok(out)
    }

    /// The output of a grouped plan from its groups (from [`Grouper`], here or merged from
    /// DistSQL flows): HAVING, projection, then DISTINCT, ORDER BY, OFFSET and LIMIT.
    async fn finish_grouped(
        &mut self,
        plan: &SelectPlan,
        groups: Vec<(Vec<Datum>, Vec<AggState>)>,
    ) -> Result<Vec<Vec<Datum>>> {
        self.check_cancel()?;
        let started = self.op_start();
        let produced = self.project_groups(plan, groups)?;
        let out = self.finish_produced(plan, produced, Presorted::No)?;
        self.op_done(started, || op_stats::tail_name(plan), out.len());
        Ok(out)
    }

    /// Each group's output row and sort keys (after HAVING); a plan without GROUP BY has
    /// one group even without rows.
    fn project_groups(
        &mut self,
        plan: &SelectPlan,
        mut groups: Vec<(Vec<Datum>, Vec<AggState>)>,
    ) -> Result<Vec<(Vec<Datum>, Vec<Datum>)>> {
        if groups.is_empty() && plan.group_by.is_empty() {
            groups.push((
                vec![Datum::Null; plan.scope.len()],
                plan.aggs.iter().map(|_| AggState::default()).collect(),
            ));
        }
        // Each group (after HAVING) with its aggregates' values.
        let mut kept = Vec::with_capacity(groups.len());
        for (row, states) in groups {
            self.cx.aggs = plan
                .aggs
                .iter()
                .zip(&states)
                .map(|(c, s)| agg_final(c, s))
                .collect::<Result<_>>()?;
            if let Some(h) = &plan.having {
                if !h.eval_bool(&row, &self.cx)? {
                    continue;
                }
            }
            kept.push((row, std::mem::take(&mut self.cx.aggs)));
        }
        // Window functions run over the groups: each group is a row of its columns
        // followed by its aggregates' values.
        let mut window_values = if plan.windows.is_empty() {
            Vec::new()
        } else {
            let width = plan.scope.len();
            let calls = windows_over_groups(&plan.windows, width)?;
            let rows: Vec<Vec<Datum>> = kept
                .iter()
                .map(|(row, aggs)| {
                    let mut r = row.clone();
                    r.resize(width, Datum::Null);
                    r.extend(aggs.iter().cloned());
                    r
                })
                .collect();
            self.compute_windows(&calls, &rows)?
        };
        let mut produced = Vec::with_capacity(kept.len());
        for (n, (row, aggs)) in kept.into_iter().enumerate() {
            self.cx.aggs = aggs;
            if let Some(w) = window_values.get_mut(n) {
                self.cx.windows = std::mem::take(w);
            }
            let out = self.project(plan, &row)?;
            let keys = self.sort_keys(plan, &row, &out)?;
            produced.push((out, keys));
        }
        Ok(produced)
    }

    /// DISTINCT, ORDER BY, DISTINCT ON, OFFSET and LIMIT over produced (row, sort keys).
    fn finish_produced(
        &self,
        plan: &SelectPlan,
        mut produced: Vec<(Vec<Datum>, Vec<Datum>)>,
        presorted: Presorted,
    ) -> Result<Vec<Vec<Datum>>> {
        if plan.distinct {
            let mut seen = HashSet::new();
            produced.retain(|(row, _)| {
                let mut k = Vec::new();
                for d in row {
                    encode_key_datum(d, &mut k);
                }
                seen.insert(k)
            });
        }
        if !plan.order.is_empty() {
            let dirs: Vec<(bool, bool)> = plan.order.iter().map(|(_, d, n)| (*d, *n)).collect();
            match presorted {
                Presorted::InOrder => {}
                Presorted::Runs(runs) if !plan.distinct => {
                    debug_assert_eq!(runs.iter().sum::<usize>(), produced.len());
                    produced = merge_runs(produced, &runs, &dirs);
                }
                _ => produced.sort_by(|a, b| cmp_sort_keys(&a.1, &b.1, &dirs)),
            }
        }
        if plan.distinct_on > 0 {
            let first = plan.order.len() - plan.distinct_on;
            let mut seen = HashSet::new();
            produced.retain(|(_, keys)| {
                let mut k = Vec::new();
                for d in &keys[first..] {
                    encode_key_datum(d, &mut k);
                }
                seen.insert(k)
            });
        }
        let (offset, limit) = self.offset_limit(plan)?;
        Ok(produced
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(r, _)| r)
            .collect())
    }

    /// Joins, left to right: a hash join ([`hash_join`]) for a step whose condition
    /// compares columns of both sides for equality, else a nested loop. The inputs are
    /// read with the WHERE conjuncts that concern them alone (`filter`, which the caller
    /// still applies to the joined rows), and a step on a table's key from a small left
    /// side reads only the rows it can match ([`join_access`]).
    async fn run_join(
        &mut self,
        join: &JoinPlan,
        filter: Option<&Scalar>,
    ) -> Result<Vec<Vec<Datum>>> {
        let filters = join_access::pushdown(join, filter);
        if let Some(r) = self.join_order(join, filter, &filters) {
            let rows = self.run_join_steps(&r.plan, &r.filters).await?;
            return Ok(rows.into_iter().map(|row| r.restore(row)).collect());
        }
        self.run_join_steps(join, &filters).await
    }

    /// [`Self::run_join`] in the order `join` gives, with `filters` applied early.
    async fn run_join_steps(
        &mut self,
        join: &JoinPlan,
        filters: &join_access::JoinFilters,
    ) -> Result<Vec<Vec<Datum>>> {
        let pushed = &filters.inputs;
        let mut acc = self
            .join_input_filtered(&join.inputs[0], pushed[0].as_ref())
            .await?;
        let mut left_width = join.inputs[0].width;
        let mut steps: u64 = 0;
        for (i, (kind, on)) in join.steps.iter().enumerate() {
            let input = &join.inputs[i + 1];
            let mut step_started = self.op_start();
            // The ON condition and the WHERE conjuncts this step can already test.
            let combined = filters.step_condition(on.as_ref(), i);
            let cond = &combined;
            if input.lateral && matches!(kind, JoinKind::Right | JoinKind::Full) {
                return Err(Error::new(
                    ErrorKind::InvalidColumnReference,
                    "invalid reference to FROM-clause entry in a RIGHT or FULL JOIN",
                ));
            }
            let lateral = match &input.derived {
                Some(d) if input.lateral => Some(d),
                _ => None,
            };
            let lateral_query = input.lateral_query.as_ref();
            let per_left_row = lateral.is_some() || lateral_query.is_some();
            let shared = match per_left_row {
                true => Vec::new(),
                false => {
                    let looked_up = self
                        .lookup_rows(
                            *kind,
                            cond.as_ref(),
                            left_width,
                            input,
                            pushed[i + 1].as_ref(),
                            &acc,
                        )
                        .await?;
                    match looked_up {
                        Some(rows) => {
                            if let Some(t) = &input.table {
                                self.op_done(
                                    step_started,
                                    || format!("lookups into {}", t.name),
                                    rows.len(),
                                );
                            }
                            rows
                        }
                        None => {
                            self.join_input_filtered(input, pushed[i + 1].as_ref())
                                .await?
                        }
                    }
                }
            };
            // Both sides in key order: a merge join; else a hash join over the right side.
            let equi = match (per_left_row, cond) {
                (false, Some(c)) => hash_join::equi_columns(c, left_width),
                _ => Vec::new(),
            };
            let merged = match kind {
                JoinKind::Inner | JoinKind::Left => merge_join::ranges(&equi, &acc, &shared),
                _ => None,
            };
            if merged.is_some() {
                self.merge_joins += 1;
            }
            let index = match merged {
                Some(_) => None,
                None => hash_join::HashIndex::build(&equi, &shared),
            };
            let method = if per_left_row {
                "per left row"
            } else if merged.is_some() {
                "merge join"
            } else if index.is_some() {
                "hash join"
            } else {
                "nested loop"
            };
            // The step's own time starts once its right input is read.
            if step_started.is_some() {
                step_started = self.op_start();
            }
            let mut out = Vec::new();
            let mut right_matched = vec![false; shared.len()];
            for (li, l) in acc.iter().enumerate() {
                let mut matched = false;
                let per_row;
                let right = match (lateral, lateral_query) {
                    (Some(plan), _) => {
                        per_row = self.lateral_rows(plan, l)?;
                        &per_row
                    }
                    (None, Some(lq)) => {
                        per_row = Box::pin(self.lateral_query_rows(lq, l)).await?;
                        &per_row
                    }
                    (None, None) => &shared,
                };
                // PERF: with an index only one bucket's rows are tested, merged only the
                // range of equal keys.
                let bucket = index.as_ref().and_then(|ix| ix.probe(l));
                let range = merged.as_ref().map(|m| m[li].clone());
                let candidates = match (&range, bucket) {
                    (Some(r), _) => r.len(),
                    (None, Some(b)) => b.len(),
                    (None, None) => right.len(),
                };
                for k in 0..candidates {
                    let ri = match (&range, bucket) {
                        (Some(r), _) => r.start + k,
                        (None, Some(b)) => b[k],
                        (None, None) => k,
                    };
                    let r = &right[ri];
                    steps += 1;
                    if steps.is_multiple_of(1024) {
                        self.pause().await?;
                        if out.len() > MAX_JOIN_ROWS {
                            return Err(Error::new(
                                ErrorKind::ProgramLimitExceeded,
                                format!("join result exceeds {MAX_JOIN_ROWS} rows"),
                            ));
                        }
                    }
                    let mut combined = Vec::with_capacity(l.len() + r.len());
                    combined.extend_from_slice(l);
                    combined.extend_from_slice(r);
                    let ok = match cond {
                        Some(c) => c.eval_bool(&combined, &self.cx)?,
                        None => true,
                    };
                    if ok {
                        matched = true;
                        if !per_left_row {
                            right_matched[ri] = true;
                        }
                        out.push(combined);
                    }
                }
                if !matched && matches!(kind, JoinKind::Left | JoinKind::Full) {
                    let mut combined = l.clone();
                    combined.extend(std::iter::repeat_n(Datum::Null, input.width));
                    out.push(combined);
                }
            }
            if matches!(kind, JoinKind::Right | JoinKind::Full) {
                for (ri, r) in shared.iter().enumerate() {
                    if !right_matched[ri] {
                        let mut combined = vec![Datum::Null; left_width];
                        combined.extend_from_slice(r);
                        out.push(combined);
                    }
                }
            }
            acc = out;
            left_width += input.width;
            self.op_done(
                step_started,
                || format!("{} join step {} ({method})", join_kind_name(*kind), i + 1),
                acc.len(),
            );
        }
        Ok(acc)
    }

    /// How many rows a plan needs from its table when it only projects, filters and limits in
    /// primary key order (so the first rows of a primary key scan are the answer).
    fn pk_order_limit(&self, plan: &SelectPlan, t: &TableDesc) -> Result<Option<usize>> {
        if plan.limit.is_none() || !Self::in_pk_order(plan, t) {
            return Ok(None);
        }
        self.limit_plus_offset(plan)
    }

    /// Whether `plan`'s rows of `t`, read in primary key order, come out in its ORDER BY's
    /// order (no ORDER BY, or ascending by a primary key prefix) row for row.
    fn in_pk_order(plan: &SelectPlan, t: &TableDesc) -> bool {
        // Window functions and set-returning functions need more input rows than the
        // output rows they make (all of them; or more, when a row expands to none).
        if plan.grouped
            || plan.distinct
            || plan.distinct_on > 0
            || !plan.windows.is_empty()
            || !plan.srfs.is_empty()
        {
            return false;
        }
        for (i, (key, desc, _)) in plan.order.iter().enumerate() {
            let column = match key {
                SortKey::Expr(Scalar::Column(c)) => Some(*c),
                SortKey::Output(o) => match plan.outputs.get(*o) {
                    Some(Scalar::Column(c)) => Some(*c),
                    _ => None,
                },
                _ => None,
            };
            if *desc || column.is_none() || t.pk.get(i).copied() != column {
                return false;
            }
        }
        true
    }

    /// LIMIT + OFFSET of `plan` (None without a LIMIT, or with LIMIT NULL).
    fn limit_plus_offset(&self, plan: &SelectPlan) -> Result<Option<usize>> {
        let limit = match plan
            .limit
            .as_ref()
            .map(|l| l.eval(&[], &self.cx))
            .transpose()?
        {
            Some(Datum::Null) | None => return Ok(None),
            Some(_) => self.count_arg(plan.limit.as_ref().unwrap(), "LIMIT")?,
        };
        let offset = match &plan.offset {
            Some(o) => self.count_arg(o, "OFFSET")?,
            None => 0,
        };
        Ok(Some(limit.saturating_add(offset)))
    }

    /// Reads rows of `[start, end)` of the primary index in key order, in growing chunks,
    /// until `want` of them pass the filter (or the span ends).
    async fn scan_filtered(
        &mut self,
        t: &TableDesc,
        plan: &SelectPlan,
        mut start: Vec<u8>,
        end: Vec<u8>,
        want: usize,
    ) -> Result<Vec<Vec<Datum>>> {
        let mut kept = Vec::new();
        let mut chunk = want.clamp(16, 1024);
        while kept.len() < want && start < end {
            self.pause().await?;
            let rows = self.kv_scan_at(&start, &end, chunk).await?;
            // The chunk covers [start, chunk_end): up to the key after the last one read, or
            // to the end of the span when the scan ran out.
            let chunk_end = if rows.len() == chunk {
                let mut k = rows.last().unwrap().0.clone();
                k.push(0);
                k
            } else {
                end.clone()
            };
            self.txn.read_span(&start, &chunk_end);
            let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = rows.into_iter().collect();
            for (k, p) in self.txn.writes.range(start.clone()..chunk_end.clone()) {
                match p {
                    crate::txn::Pending::Put(v) | crate::txn::Pending::Insert(v) => {
                        merged.insert(k.clone(), v.clone());
                    }
                    crate::txn::Pending::Delete => {
                        merged.remove(k);
                    }
                }
            }
            self.count_rows_read(merged.len() as u64);
            for (_, v) in merged {
                let row = t.decode_row(&v)?;
                let pass = match &plan.filter {
                    Some(f) => f.eval_bool(&row, &self.cx)?,
                    None => true,
                };
                if pass {
                    kept.push(row);
                }
            }
            start = chunk_end;
            chunk = (chunk * 4).min(16 * 1024);
        }
        Ok(kept)
    }

    fn count_arg(&self, s: &Scalar, what: &str) -> Result<usize> {
        match s.eval(&[], &self.cx)?.cast(SqlType::Int8)? {
            Datum::Int(i) if i >= 0 => Ok(i as usize),
            Datum::Null => Ok(0),
            _ => Err(Error::new(
                if what == "LIMIT" {
                    ErrorKind::InvalidRowCountInLimit
                } else {
                    ErrorKind::InvalidRowCountInOffset
                },
                format!("{what} must not be negative"),
            )),
        }
    }

    /// `SELECT … FROM t … FOR UPDATE`: the rows, each locked for this transaction, as
    /// PostgreSQL's LockRows does — after ORDER BY, before OFFSET and LIMIT (a skipped row
    /// does not count). Rows named by primary key are locked before they are read (a
    /// waiter then reads what the holder committed); others are read, sorted, then locked
    /// one by one, and a row that changed meanwhile is read again and must still match.
    async fn run_locking(
        &mut self,
        plan: &SelectPlan,
        t: &TableDesc,
        wait: LockWait,
    ) -> Result<Vec<Vec<Datum>>> {
        let nowait = wait != LockWait::Block;
        let named_error = |e: Error| {
            if e.kind == ErrorKind::LockNotAvailable {
                Error::new(
                    ErrorKind::LockNotAvailable,
                    format!("could not obtain lock on row in relation \"{}\"", t.name),
                )
            } else {
                e
            }
        };
        let access = self.choose_access(t, plan.filter.as_ref());
        let keys = match &access {
            Access::Point(vals) => Some(vec![Self::pk_key_from(t, vals)]),
            Access::Points(vals) => Some(
                vals.iter()
                    .map(|v| Self::pk_key_from(t, std::slice::from_ref(v)))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        };
        if let Some(keys) = keys {
            // Lock first; a skipped key is not read at all.
            let mut kept = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                match self.lock_row_waiting(k, nowait).await {
                    Ok(()) => kept.push(i),
                    Err(e) if e.kind == ErrorKind::LockNotAvailable && wait == LockWait::Skip => {}
                    Err(e) => return Err(named_error(e)),
                }
            }
            let access = match access {
                Access::Points(vals) => {
                    Access::Points(kept.iter().map(|&i| vals[i].clone()).collect())
                }
                Access::Point(_) if kept.is_empty() => Access::Points(Vec::new()),
                other => other,
            };
            let rows = self.read_rows(t, access).await?;
            let rows = self.filter_rows(plan.filter.as_ref(), rows).await?;
            return self.finish_plan(plan, rows).await;
        }
        let rows = if !self.correlated_in_filter(plan).is_empty() {
            let rows = self.read_rows(t, Access::Full).await?;
            self.filter_rows_plan(plan, rows).await?
        } else {
            let rows = self.read_rows(t, access).await?;
            self.filter_rows(plan.filter.as_ref(), rows).await?
        };
        // Locked in the order the query asks for, until OFFSET + LIMIT rows are locked
        // (PostgreSQL locks the rows OFFSET skips too).
        let mut inputs = rows;
        let order = self.sorted_input_order(plan, &inputs)?;
        let (offset, limit) = self.offset_limit(plan)?;
        let wanted = offset.saturating_add(limit);
        let mut locked = Vec::new();
        for i in order {
            if locked.len() >= wanted {
                break;
            }
            let key = Self::pk_key(t, &inputs[i]);
            let before = self.txn.read_ts();
            match self.lock_row_waiting(&key, nowait).await {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::LockNotAvailable && wait == LockWait::Skip => {
                    continue
                }
                Err(e) => return Err(named_error(e)),
            }
            let mut row = std::mem::take(&mut inputs[i]);
            if self.txn.read_ts() != before {
                // Changed since it was read: read it again; it must still match.
                let pk = t.pk.iter().map(|&c| row[c].clone()).collect();
                let vals = self.read_rows(t, Access::Point(pk)).await?;
                let again = self.filter_rows(plan.filter.as_ref(), vals).await?;
                match again.into_iter().next() {
                    Some(r) => row = r,
                    None => continue,
                }
            }
            locked.push(row);
        }
        // Projection, then the same (stable) order, OFFSET and LIMIT over the locked rows.
        self.finish_plan(plan, locked).await
    }

    /// `plan`'s OFFSET (0 without one) and LIMIT (`usize::MAX` without one or when NULL).
    fn offset_limit(&self, plan: &SelectPlan) -> Result<(usize, usize)> {
        let offset = match &plan.offset {
            Some(o) => self.count_arg(o, "OFFSET")?,
            None => 0,
        };
        let limit = match &plan.limit {
            Some(l) => match l.eval(&[], &self.cx)? {
                Datum::Null => usize::MAX,
                _ => self.count_arg(l, "LIMIT")?,
            },
            None => usize::MAX,
        };
        Ok((offset, limit))
    }

    /// The positions of `rows` (input rows of `plan`) in the order `plan` sorts its
    /// output.
    fn sorted_input_order(&self, plan: &SelectPlan, rows: &[Vec<Datum>]) -> Result<Vec<usize>> {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        if plan.order.is_empty() {
            return Ok(order);
        }
        let mut keys = Vec::with_capacity(rows.len());
        for r in rows {
            let out = self.project(plan, r)?;
            keys.push(self.sort_keys(plan, r, &out)?);
        }
        let dirs: Vec<(bool, bool)> = plan.order.iter().map(|(_, d, n)| (*d, *n)).collect();
        order.sort_by(|a, b| cmp_sort_keys(&keys[*a], &keys[*b], &dirs));
        Ok(order)
    }

    /// The rows of `t` that `filter` accepts, read through the best access path.
    /// The rows of `t` (seen through `scope`, its columns under the statement's alias)
    /// that `filter` accepts.
    async fn matching_rows(
        &mut self,
        t: &TableDesc,
        scope: &[ScopeColumn],
        filter: Option<&Scalar>,
    ) -> Result<Vec<Vec<Datum>>> {
        if !self.correlated_in(filter).is_empty() {
            let rows = self.read_rows(t, Access::Full).await?;
            return self.filter_rows_scoped(filter, scope, rows).await;
        }
        let access = self.choose_access(t, filter);
        // The rows an UPDATE or DELETE names by primary key are locked before they are
        // read: a concurrent writer of the same row waits for this transaction to end
        // instead of both reading the old value and one failing at commit.
        match &access {
            Access::Point(vals) => {
                let k = Self::pk_key_from(t, vals);
                self.lock_row(&k).await?;
            }
            Access::Points(vals) => {
                let mut ks: Vec<Vec<u8>> = vals
                    .iter()
                    .map(|v| Self::pk_key_from(t, std::slice::from_ref(v)))
                    .collect();
                ks.sort();
                ks.dedup();
                for k in ks {
                    self.lock_row(&k).await?;
                }
            }
            _ => {}
        }
        let rows = self.read_rows(t, access).await?;
        self.filter_rows(filter, rows).await
    }

    /// Takes the row lock on primary key `key` for this transaction; if the row was
    /// written after this transaction's read timestamp (typically by the holder it waited
    /// for), moves the read timestamp past that write — refreshing everything read so far
    /// under SERIALIZABLE (40001 if some of it changed) — so the row is read as it is now.
    async fn lock_row(&mut self, key: &[u8]) -> Result<()> {
        self.lock_row_waiting(key, false).await
    }

    /// [`Exec::lock_row`]; with `nowait`, a row another transaction holds fails with 55P03.
    async fn lock_row_waiting(&mut self, key: &[u8], nowait: bool) -> Result<()> {
        if self.txn.writes.contains_key(key) {
            // Written by this transaction already: locked when that statement ran.
            return Ok(());
        }
        let (range, latest) = self.ctx.kv_lock(key, self.txn.id, nowait).await?;
        self.txn.note_lock(range);
        self.advance_read_ts(latest).await
    }

    /// Keeps the rows `filter` accepts (all of them without a filter), yielding in long runs.
    async fn filter_rows(
        &self,
        filter: Option<&Scalar>,
        rows: Vec<Vec<Datum>>,
    ) -> Result<Vec<Vec<Datum>>> {
        let Some(f) = filter else { return Ok(rows) };
        let mut kept = Vec::with_capacity(rows.len());
        for (n, r) in rows.into_iter().enumerate() {
            if n % 1024 == 1023 {
                self.pause().await?;
            }
            if f.eval_bool(&r, &self.cx)? {
                kept.push(r);
            }
        }
        Ok(kept)
    }

    /// The values of window calls for every input row: `[row][call]`.
    fn compute_windows(
        &self,
        calls: &[crate::sql::expr::WindowCall],
        rows: &[Vec<Datum>],
    ) -> Result<Vec<Vec<Datum>>> {
        use crate::sql::expr::{WindowFrame, WindowFunc};
        let n = rows.len();
        let mut out = vec![vec![Datum::Null; calls.len()]; n];
        for (ci, call) in calls.iter().enumerate() {
            let dirs: Vec<(bool, bool)> = call.order.iter().map(|(_, d, nf)| (*d, *nf)).collect();
            let mut keyed = Vec::with_capacity(n);
            for (i, r) in rows.iter().enumerate() {
                let mut pk = Vec::new();
                for p in &call.partition {
                    encode_key_datum(&p.eval(r, &self.cx)?, &mut pk);
                }
                let mut ok = Vec::with_capacity(call.order.len());
                for (e, _, _) in &call.order {
                    ok.push(e.eval(r, &self.cx)?);
                }
                keyed.push((pk, ok, i));
            }
            keyed.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| cmp_sort_keys(&a.1, &b.1, &dirs))
                    .then(a.2.cmp(&b.2))
            });
            let value = |j: usize, part: &[(Vec<u8>, Vec<Datum>, usize)]| -> Result<Datum> {
                call.args[0].eval(&rows[part[j].2], &self.cx)
            };
            let mut start = 0;
            while start < n {
                let mut end = start + 1;
                while end < n && keyed[end].0 == keyed[start].0 {
                    end += 1;
                }
                let part = &keyed[start..end];
                let m = part.len();
                // Peer groups: [first, last] positions of rows equal in the ORDER BY.
                let mut peer_end = vec![0; m];
                let mut peer_start = vec![0; m];
                let mut g = 0;
                while g < m {
                    let mut h = g + 1;
                    while h < m && cmp_sort_keys(&part[h].1, &part[g].1, &dirs).is_eq() {
                        h += 1;
                    }
                    for j in g..h {
                        peer_start[j] = g;
                        peer_end[j] = h - 1;
                    }
                    g = h;
                }
                let mut dense = 0i64;
                let mut state = AggState::default();
                let mut folded = 0; // rows folded into `state` so far
                for j in 0..m {
                    if peer_start[j] == j {
                        dense += 1;
                    }
                    let v = match &call.func {
                        WindowFunc::RowNumber => Datum::Int(j as i64 + 1),
                        WindowFunc::Rank => Datum::Int(peer_start[j] as i64 + 1),
                        WindowFunc::DenseRank => Datum::Int(dense),
                        WindowFunc::PercentRank => Datum::Float(if m > 1 {
                            peer_start[j] as f64 / (m - 1) as f64
                        } else {
                            0.0
                        }),
                        WindowFunc::CumeDist => Datum::Float((peer_end[j] + 1) as f64 / m as f64),
                        WindowFunc::Lag | WindowFunc::Lead => {
                            let r = &rows[part[j].2];
                            let off = match call.args[1].eval(r, &self.cx)? {
                                Datum::Int(o) => o,
                                Datum::Null => 0,
                                _ => {
                                    return Err(Error::mismatch(
                                        "lag/lead offset must be an integer",
                                    ))
                                }
                            };
                            let off = if matches!(call.func, WindowFunc::Lag) {
                                -off
                            } else {
                                off
                            };
                            let target = j as i64 + off;
                            if (0..m as i64).contains(&target) {
                                value(target as usize, part)?
                            } else {
                                match call.args.get(2) {
                                    Some(d) => d.eval(r, &self.cx)?,
                                    None => Datum::Null,
                                }
                            }
                        }
                        WindowFunc::FirstValue => value(0, part)?,
                        WindowFunc::Ntile => {
                            let r = &rows[part[j].2];
                            match call.args[0].eval(r, &self.cx)? {
                                Datum::Int(b) if b > 0 => {
                                    let b = b as usize;
                                    let (q, extra) = (m / b, m % b);
                                    let big = extra * (q + 1);
                                    Datum::Int(if j < big {
                                        j / (q + 1) + 1
                                    } else {
                                        extra + (j - big) / q.max(1) + 1
                                    } as i64)
                                }
                                Datum::Null => Datum::Null,
                                _ => {
                                    return Err(Error::new(
                                        ErrorKind::InvalidArgumentForNtile,
                                        "argument of ntile must be greater than zero",
                                    ))
                                }
                            }
                        }
                        WindowFunc::NthValue => {
                            let r = &rows[part[j].2];
                            let upto = match call.frame {
                                WindowFrame::Partition => m - 1,
                                WindowFrame::RangeToCurrent => peer_end[j],
                                WindowFrame::RowsToCurrent => j,
                            };
                            match call.args[1].eval(r, &self.cx)? {
                                Datum::Int(k) if k > 0 => {
                                    if (k as usize) - 1 <= upto {
                                        value(k as usize - 1, part)?
                                    } else {
                                        Datum::Null
                                    }
                                }
                                Datum::Null => Datum::Null,
                                _ => {
                                    return Err(Error::new(
                                        ErrorKind::InvalidParameterValue,
                                        "argument of nth_value must be greater than zero",
                                    ))
                                }
                            }
                        }
                        WindowFunc::LastValue => match call.frame {
                            WindowFrame::Partition => value(m - 1, part)?,
                            WindowFrame::RangeToCurrent => value(peer_end[j], part)?,
                            WindowFrame::RowsToCurrent => value(j, part)?,
                        },
                        WindowFunc::Agg(agg) => {
                            let upto = match call.frame {
                                WindowFrame::Partition => m - 1,
                                WindowFrame::RangeToCurrent => peer_end[j],
                                WindowFrame::RowsToCurrent => j,
                            };
                            while folded <= upto {
                                let r = &rows[part[folded].2];
                                agg_update_row(agg, &mut state, r, &self.cx)?;
                                folded += 1;
                            }
                            agg_final(agg, &state)?
                        }
                    };
                    out[part[j].2][ci] = v;
                }
                start = end;
            }
        }
        Ok(out)
    }

    /// `EXPLAIN [ANALYZE] <query>`: the plan as lines of text (`info`); with ANALYZE the
    /// query runs and the rows and time are added.
    async fn explain(
        &mut self,
        stmt: &Statement,
        analyze: bool,
        distsql: bool,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let Statement::Query(q) = stmt else {
            return Err(Error::unsupported(
                "EXPLAIN of statements other than queries",
            ));
        };
        let mut q = (**q).clone();
        let base = self.cx.params.len();
        if rewrite::needs_rewrite(&q) {
            self.inline_subqueries(&mut q).await?;
        }
        let mut ptypes: Vec<SqlType> = self.cx.params.iter().map(|d| d.natural_type()).collect();
        let plan = plan_select(self.cat, self.db_id, &self.path, &q, &mut ptypes)?;
        let mut lines = Vec::new();
        self.explain_plan(&plan, 0, &mut lines);
        if analyze {
            let started = std::time::Instant::now();
            self.flow_stats.clear();
            self.rows_read.set(0);
            self.merge_joins = 0;
            self.op_stats = Some(Vec::new());
            let ran = self.run_plan(&plan).await;
            self.render_op_stats(&mut lines);
            self.op_stats = None;
            let rows = ran?;
            if self.merge_joins > 0 {
                lines.push(format!(
                    "join steps run as merge joins: {}",
                    self.merge_joins
                ));
            }
            lines.push(format!(
                "rows: {}, table rows read: {}, execution time: {:.3} ms",
                rows.len(),
                self.rows_read.get(),
                started.elapsed().as_secs_f64() * 1000.0
            ));
        }
        if distsql {
            self.explain_distsql(&plan, analyze, &mut lines).await?;
        }
        self.cx.params.truncate(base);
        let n = lines.len();
        Ok((
            Outcome::Rows {
                rows: lines.into_iter().map(|l| vec![Datum::Text(l)]).collect(),
                tag: format!("SELECT {n}"),
                suspended: false,
            },
            Some(vec![Column {
                name: "info".into(),
                ty: SqlType::Text,
            }]),
        ))
    }

    fn explain_plan(&self, plan: &SelectPlan, depth: usize, out: &mut Vec<String>) {
        let pad = "  ".repeat(depth);
        let cols: Vec<&str> = plan.columns.iter().map(|c| c.name.as_str()).collect();
        out.push(format!("{pad}• project ({})", cols.join(", ")));
        let pad = "  ".repeat(depth + 1);
        if plan.limit.is_some() || plan.offset.is_some() {
            out.push(format!("{pad}limit/offset"));
        }
        if !plan.order.is_empty() {
            out.push(format!("{pad}sort ({} keys)", plan.order.len()));
        }
        if plan.distinct {
            out.push(format!("{pad}distinct"));
        }
        if !plan.windows.is_empty() {
            out.push(format!("{pad}window ({} functions)", plan.windows.len()));
        }
        if plan.grouped {
            out.push(format!(
                "{pad}group ({} keys, {} aggregates)",
                plan.group_by.len(),
                plan.aggs.len()
            ));
        }
        if plan.filter.is_some() {
            out.push(format!("{pad}filter"));
        }
        if let Some(t) = &plan.table {
            let access = access_name(&self.choose_access(t, plan.filter.as_ref()));
            let ranges = self.ctx.ranges.borrow().table_range_count(t.id);
            out.push(format!(
                "{pad}scan {}: {access} ({ranges} range{})",
                t.name,
                if ranges == 1 { "" } else { "s" }
            ));
            // With statistics (ANALYZE): the rows the access is expected to read.
            let estimate = match self.choose_access(t, plan.filter.as_ref()) {
                Access::Point(_) => Some(1.0),
                Access::Index(i, _) if i.unique => Some(1.0),
                Access::Index(i, _) => {
                    crate::sql::stats::estimate_eq_rows(&self.cat.stats, t.id, &i.columns)
                }
                Access::Full => {
                    crate::sql::stats::row_count(&self.cat.stats, t.id).map(|n| n as f64)
                }
                Access::Points(_) | Access::Span(..) | Access::IndexRange(..) => None,
            };
            if let (Some(e), Some(_)) = (estimate, self.cat.stats.get(&t.id)) {
                out.push(format!("{pad}  estimated rows: {}", e.round() as u64));
            }
        } else if let Some(inner) = &plan.derived {
            out.push(format!("{pad}subquery"));
            self.explain_plan(inner, depth + 2, out);
        } else if let Some(join) = &plan.join {
            // As `run_plan`: nothing is pushed past correlated subqueries.
            let filter = if self.correlated_in_filter(plan).is_empty() {
                plan.filter.as_ref()
            } else {
                None
            };
            let written = join_access::pushdown(join, filter);
            let reordered = self.join_order(join, filter, &written);
            let (join, filters) = match &reordered {
                Some(r) => (&r.plan, &r.filters),
                None => (join, &written),
            };
            out.push(format!(
                "{pad}join ({} inputs{})",
                join.inputs.len(),
                if reordered.is_some() {
                    ", reordered by estimated rows"
                } else {
                    ""
                }
            ));
            let pushed = &filters.inputs;
            let mut left_width = 0;
            for (i, input) in join.inputs.iter().enumerate() {
                let step = i.checked_sub(1).map(|s| {
                    let (kind, on) = &join.steps[s];
                    (*kind, filters.step_condition(on.as_ref(), s))
                });
                if let Some((kind, cond)) = &step {
                    let equi = cond
                        .as_ref()
                        .map(|c| hash_join::equi_columns(c, left_width))
                        .unwrap_or_default();
                    let method = if input.lateral {
                        "lateral"
                    } else if i == 1
                        && matches!(kind, JoinKind::Inner | JoinKind::Left)
                        && self.in_key_order(join, pushed, &equi)
                    {
                        "merge join"
                    } else if !equi.is_empty() {
                        "hash join"
                    } else {
                        "nested loop"
                    };
                    let kind = format!("{kind:?}").to_lowercase();
                    out.push(format!("{pad}  {kind} {method}"));
                }
                if let Some(t) = &input.table {
                    let access = match self.choose_access(t, pushed[i].as_ref()) {
                        Access::Point(_) => "primary key point lookup".to_string(),
                        Access::Points(v) => format!("primary key lookups ({} keys)", v.len()),
                        Access::Span(..) => "primary key span scan".to_string(),
                        Access::Index(ix, _) => format!("index {} lookup", ix.name),
                        Access::IndexRange(ix, _, _) => format!("index {} range scan", ix.name),
                        Access::Full => "full scan".to_string(),
                    };
                    let mut line = format!("{pad}  scan {}: {access}", t.name);
                    if pushed[i].is_some() {
                        line.push_str(" (filter pushed down)");
                    }
                    if let Some((JoinKind::Inner | JoinKind::Left, Some(cond))) = &step {
                        let eq = hash_join::equi_columns(cond, left_width);
                        if let Some((by, _)) = join_access::lookup_key(t, &eq) {
                            line.push_str(&format!(
                                "; lookup join by {} when the rows before it are few",
                                by.name()
                            ));
                        }
                    }
                    out.push(line);
                } else if let Some(d) = &input.derived {
                    self.explain_plan(d, depth + 2, out);
                }
                left_width += input.width;
            }
        } else if let Some(so) = &plan.setop {
            out.push(format!(
                "{pad}{}{}",
                so.op,
                if so.all { " ALL" } else { "" }
            ));
            self.explain_plan(&so.left, depth + 2, out);
            self.explain_plan(&so.right, depth + 2, out);
        } else if plan.values.is_some() {
            out.push(format!("{pad}values"));
        } else if plan.series.is_some() {
            out.push(format!("{pad}generate_series"));
        }
    }

    /// The rows one projected row `out` (of input row `r`) becomes through the select
    /// list's set-returning functions ([`SelectSrf`]).
    fn expand_srfs(
        &self,
        plan: &SelectPlan,
        r: &[Datum],
        out: Vec<Datum>,
    ) -> Result<Vec<Vec<Datum>>> {
        let mut columns: Vec<Vec<Datum>> = Vec::with_capacity(plan.srfs.len());
        for srf in &plan.srfs {
            if srf.kind != SrfKind::Array {
                columns.push(jsonb_srf_values(srf.kind, &out[srf.output])?);
                continue;
            }
            let elems = match &out[srf.output] {
                Datum::Text(t) => crate::sql::types::array_elements(srf.array, t)?,
                _ => Vec::new(),
            };
            let elem_ty = srf.array.array_elem().unwrap_or(SqlType::Text);
            let values = match &srf.subscripts_dim {
                None => elems
                    .into_iter()
                    .map(|e| match e {
                        Some(e) => Datum::parse(elem_ty, &e),
                        None => Ok(Datum::Null),
                    })
                    .collect::<Result<Vec<_>>>()?,
                Some(dim) => {
                    // The subscripts of dimension `dim` (none past the array's dimensions).
                    let (lower, dims) = match (&out[srf.output], srf.array.is_vector()) {
                        (_, true) => (0, vec![elems.len()]),
                        (Datum::Text(t), false) => (1, crate::sql::array::Array::parse(t)?.dims),
                        _ => (1, Vec::new()),
                    };
                    let len = match dim.eval(r, &self.cx)? {
                        Datum::Int(d) if d >= 1 => dims.get(d as usize - 1).copied().unwrap_or(0),
                        _ => 0,
                    };
                    let mut subscripts: Vec<Datum> =
                        (0..len as i64).map(|i| Datum::Int(lower + i)).collect();
                    if let Some(rev) = &srf.subscripts_reverse {
                        if rev.eval_bool(r, &self.cx)? {
                            subscripts.reverse();
                        }
                    }
                    subscripts
                }
            };
            columns.push(values);
        }
        let n = columns.iter().map(Vec::len).max().unwrap_or(0);
        for (srf, values) in plan.srfs.iter().zip(columns.iter_mut()) {
            if srf.kind == SrfKind::Ordinality {
                *values = (1..=n as i64).map(Datum::Int).collect();
            }
        }
        let mut rows = Vec::with_capacity(n);
        let visible = plan.outputs.len() - plan.hidden_srfs;
        for k in 0..n {
            let mut row = out.clone();
            for (srf, values) in plan.srfs.iter().zip(&columns) {
                row[srf.output] = values.get(k).cloned().unwrap_or(Datum::Null);
            }
            if !plan.srf_exprs.is_empty() {
                // Items over set-returning calls: the input row, then the calls' values.
                let mut input = r.to_vec();
                input.resize(plan.scope.len(), Datum::Null);
                input.extend(row.drain(visible..));
                for (i, s) in &plan.srf_exprs {
                    row[*i] = s.eval(&input, &self.cx)?;
                }
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// Whether the first two inputs of `join` are tables read in primary-key order whose
    /// leading key columns are the equi-join keys `equi`, in order: their first step will
    /// be a merge join ([`merge_join`], which checks the rows themselves).
    fn in_key_order(
        &self,
        join: &JoinPlan,
        pushed: &[Option<Scalar>],
        equi: &[(usize, usize)],
    ) -> bool {
        let (Some(left), Some(right)) = (&join.inputs[0].table, &join.inputs[1].table) else {
            return false;
        };
        let key_order = |t: &TableDesc, i: usize, cols: Vec<usize>| {
            matches!(
                self.choose_access(t, pushed[i].as_ref()),
                Access::Full | Access::Span(..) | Access::Point(_) | Access::Points(_)
            ) && !cols.is_empty()
                && t.pk.len() >= cols.len()
                && t.pk[..cols.len()] == cols[..]
                && cols.iter().all(|&c| !t.columns[c].ty.is_float())
        };
        key_order(left, 0, equi.iter().map(|(l, _)| *l).collect())
            && key_order(right, 1, equi.iter().map(|(_, r)| *r).collect())
    }

    /// The rows of `LATERAL (subquery)` ([`JoinInput::lateral_query`]) for one row `left`
    /// of the relations before it.
    async fn lateral_query_rows(
        &mut self,
        lq: &(ast::Query, Vec<ScopeColumn>),
        left: &[Datum],
    ) -> Result<Vec<Vec<Datum>>> {
        let mut q = lq.0.clone();
        let base = self.cx.params.len();
        let corr_base = self.correlated.len();
        let mut values = Vec::new();
        self.bind_outer_values(&mut q, &lq.1, left, base, &mut values)?;
        self.cx.params.extend(values);
        let r = self.subquery_rows(q).await;
        self.cx.params.truncate(base);
        self.correlated.truncate(corr_base);
        Ok(r?.0)
    }

    /// The rows of a lateral set-returning function ([`JoinInput::lateral`]) for one row of
    /// the relations before it.
    fn lateral_rows(&self, plan: &SelectPlan, outer: &[Datum]) -> Result<Vec<Vec<Datum>>> {
        let out = self.project(plan, outer)?;
        self.expand_srfs(plan, outer, out)
    }

    /// Evaluates RETURNING (or any projection) over one row.
    fn project_row(&self, outs: &[Scalar], row: &[Datum]) -> Result<Vec<Datum>> {
        outs.iter().map(|o| o.eval(row, &self.cx)).collect()
    }

    fn project(&self, plan: &SelectPlan, row: &[Datum]) -> Result<Vec<Datum>> {
        self.project_row(&plan.outputs, row)
    }

    fn sort_keys(&self, plan: &SelectPlan, input: &[Datum], out: &[Datum]) -> Result<Vec<Datum>> {
        plan.order
            .iter()
            .map(|(k, _, _)| match k {
                SortKey::Output(i) => match plan.columns.get(*i) {
                    Some(c) => crate::sql::array::sort_datum(out[*i].clone(), c.ty),
                    None => Ok(out[*i].clone()),
                },
                SortKey::Expr(e) => e.eval(input, &self.cx),
            })
            .collect()
    }

    // --- Writes ---

    /// Fills a full row from the given values: defaults, assignment casts, NOT NULL.
    async fn complete_row(&self, t: &TableDesc, given: &[(usize, Datum)]) -> Result<Vec<Datum>> {
        let mut row = vec![Datum::Null; t.columns.len()];
        let mut set = vec![false; t.columns.len()];
        for (i, v) in given {
            row[*i] = v.clone();
            set[*i] = true;
        }
        for (i, c) in t.columns.iter().enumerate() {
            if !set[i] {
                if let Some(d) = &c.default_expr {
                    let mut params = Vec::new();
                    let (s, _) = Binder::new(&[], &mut params).bind(d, Some(c.ty))?;
                    if s.has_sequence_call() {
                        self.run_sequence_calls(&[&s], &[]).await?;
                    }
                    row[i] = s.eval(&[], &self.cx)?;
                }
            }
        }
        self.check_row(t, &mut row)?;
        Ok(row)
    }

    fn check_row(&self, t: &TableDesc, row: &mut [Datum]) -> Result<()> {
        for (i, c) in t.columns.iter().enumerate() {
            let v = std::mem::replace(&mut row[i], Datum::Null);
            row[i] = assign_cast(v, c)?;
            if row[i].is_null() && !c.nullable {
                return Err(Error::new(
                    ErrorKind::NotNullViolation,
                    format!("null value in column \"{}\" of relation \"{}\" violates not-null constraint", c.name, t.name),
                ));
            }
        }
        crate::sql::computed::fill_write(t, row)?;
        if !t.checks.is_empty() {
            let scope = table_scope(t, &t.name);
            for c in &t.checks {
                let mut params = Vec::new();
                let (s, _) =
                    Binder::new(&scope, &mut params).bind(&c.parsed, Some(SqlType::Bool))?;
                if matches!(s.eval(row, &self.cx)?, Datum::Bool(false)) {
                    return Err(Error::new(
                        ErrorKind::CheckViolation,
                        format!(
                            "new row for relation \"{}\" violates check constraint \"{}\"",
                            t.name, c.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn write_row(&mut self, t: &TableDesc, row: &[Datum], insert: bool) {
        let k = Self::pk_key(t, row);
        let v = keys::encode_row(row);
        if insert {
            self.txn.insert(k.clone(), v);
        } else {
            self.txn.put(k.clone(), v);
        }
        for idx in t.write_indexes() {
            let ik = Self::index_key(t, idx, row);
            if Self::unique_conflict_possible(idx, row) {
                self.txn.insert(ik, k.clone());
            } else {
                self.txn.put(ik, k.clone());
            }
        }
    }

    fn delete_row(&mut self, t: &TableDesc, row: &[Datum]) {
        self.txn.delete(Self::pk_key(t, row));
        for idx in t.write_indexes() {
            self.txn.delete(Self::index_key(t, idx, row));
        }
    }

    /// The existing row that `row` conflicts with on `constraint` (the primary key or a
    /// unique index), if any.
    async fn conflict_on(
        &self,
        t: &TableDesc,
        row: &[Datum],
        constraint: &str,
    ) -> Result<Option<Vec<Datum>>> {
        if constraint == t.pk_name {
            return match self.kv_get(&Self::pk_key(t, row)).await? {
                Some(v) => Ok(Some(t.decode_row(&v)?)),
                None => Ok(None),
            };
        }
        for idx in t.indexes.iter().filter(|i| i.name == constraint) {
            if Self::unique_conflict_possible(idx, row) {
                if let Some(pk) = self.kv_get(&Self::index_key(t, idx, row)).await? {
                    if let Some(v) = self.kv_get(&pk).await? {
                        return Ok(Some(t.decode_row(&v)?));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The first constraint `row` would violate if inserted, with the existing row.
    async fn find_conflict(
        &self,
        t: &TableDesc,
        row: &[Datum],
    ) -> Result<Option<(String, Vec<Datum>)>> {
        let names: Vec<String> = std::iter::once(t.pk_name.clone())
            .chain(
                t.indexes
                    .iter()
                    .filter(|i| i.unique)
                    .map(|i| i.name.clone()),
            )
            .collect();
        for n in names {
            if let Some(old) = self.conflict_on(t, row, &n).await? {
                return Ok(Some((n, old)));
            }
        }
        Ok(None)
    }

    /// The constraint an ON CONFLICT target names.
    fn conflict_target(t: &TableDesc, target: &ast::ConflictTarget) -> Result<String> {
        let no_match = || {
            Error::new(
                ErrorKind::InvalidColumnReference,
                "there is no unique or exclusion constraint matching the ON CONFLICT specification",
            )
        };
        match target {
            ast::ConflictTarget::Columns { columns, .. } => {
                let mut want: Vec<usize> = Vec::new();
                for c in columns {
                    let n = ident_name(c);
                    want.push(t.column_index(&n).ok_or_else(|| {
                        Error::new(
                            ErrorKind::UndefinedColumn,
                            format!("column \"{n}\" does not exist"),
                        )
                    })?);
                }
                want.sort_unstable();
                let mut pk = t.pk.clone();
                pk.sort_unstable();
                if pk == want {
                    return Ok(t.pk_name.clone());
                }
                for idx in t.indexes.iter().filter(|i| i.unique) {
                    let mut cols = idx.columns.clone();
                    cols.sort_unstable();
                    if cols == want {
                        return Ok(idx.name.clone());
                    }
                }
                Err(no_match())
            }
            ast::ConflictTarget::OnConstraint(name) => {
                let n = object_name(name);
                if n == t.pk_name || t.indexes.iter().any(|i| i.unique && i.name == n) {
                    Ok(n)
                } else {
                    Err(Error::new(
                        ErrorKind::UndefinedObject,
                        format!("constraint \"{n}\" for table \"{}\" does not exist", t.name),
                    ))
                }
            }
        }
    }

    fn dup_error(t: &TableDesc, constraint: &str, row: &[Datum]) -> Error {
        let cols: Vec<usize> = if constraint == t.pk_name {
            t.pk.clone()
        } else {
            t.indexes
                .iter()
                .find(|i| i.name == constraint)
                .map(|i| i.columns.clone())
                .unwrap_or_default()
        };
        let names: Vec<String> = cols
            .iter()
            .map(|&i| crate::sql::computed::display(t, i))
            .collect();
        let vals: Vec<String> = cols
            .iter()
            .map(|&i| {
                row[i]
                    .to_text(t.columns[i].ty)
                    .unwrap_or_else(|| "NULL".into())
            })
            .collect();
        Error::new(
            ErrorKind::UniqueViolation,
            format!("duplicate key value violates unique constraint \"{constraint}\""),
        )
        .with_hint(format!(
            "Key ({})=({}) already exists.",
            names.join(", "),
            vals.join(", ")
        ))
    }

    async fn insert(&mut self, ins: &ast::Insert) -> Result<(Outcome, Option<Vec<Column>>)> {
        let ast::TableObject::TableName(name) = &ins.table else {
            return Err(Error::unsupported("INSERT into a table function"));
        };
        let t = lookup_table(self.cat, self.db_id, &self.path, name)?;
        if marked(ins, SPLIT_MARKER) {
            return self.split_at(&t, ins.source.as_deref()).await;
        }
        if marked(ins, RANGE_FOR_ROW_MARKER) {
            return self.show_range_for_row(&t, ins.source.as_deref()).await;
        }
        materialized_views::refuse_write(&t, materialized_views::Write::Dml)?;
        let cols = insert_columns(&t, &ins.columns)?;
        // Rows of (column, value).
        let mut given_rows: Vec<Vec<(usize, Datum)>> = Vec::new();
        let Some(source) = ins.source.as_ref() else {
            // INSERT … DEFAULT VALUES
            given_rows.push(Vec::new());
            return self.insert_rows(&t, ins, given_rows).await;
        };
        match source.body.as_ref() {
            SetExpr::Values(v) if source.order_by.is_none() && source.limit_clause.is_none() => {
                let mut params: Vec<SqlType> =
                    self.cx.params.iter().map(|d| d.natural_type()).collect();
                for r in &v.rows {
                    if r.len() > cols.len() {
                        return Err(Error::syntax(
                            "INSERT has more expressions than target columns",
                        ));
                    }
                    if !ins.columns.is_empty() && r.len() < cols.len() {
                        return Err(Error::syntax(
                            "INSERT has more target columns than expressions",
                        ));
                    }
                    let mut given = Vec::with_capacity(r.len());
                    for (e, &ci) in r.iter().zip(&cols) {
                        if is_default(e) {
                            continue;
                        }
                        let (s, _) =
                            Binder::new(&[], &mut params).bind(e, Some(t.columns[ci].ty))?;
                        if s.has_sequence_call() {
                            self.run_sequence_calls(&[&s], &[]).await?;
                        }
                        given.push((ci, s.eval(&[], &self.cx)?));
                    }
                    given_rows.push(given);
                }
            }
            _ => {
                let mut params: Vec<SqlType> =
                    self.cx.params.iter().map(|d| d.natural_type()).collect();
                let plan = plan_select(self.cat, self.db_id, &self.path, source, &mut params)?;
                if plan.columns.len() > cols.len() {
                    return Err(Error::syntax(
                        "INSERT has more expressions than target columns",
                    ));
                }
                if !ins.columns.is_empty() && plan.columns.len() < cols.len() {
                    return Err(Error::syntax(
                        "INSERT has more target columns than expressions",
                    ));
                }
                for r in self.run_plan(&plan).await? {
                    given_rows.push(cols.iter().copied().zip(r).collect());
                }
            }
        }
        self.insert_rows(&t, ins, given_rows).await
    }

    /// The target of `COPY table (columns) FROM STDIN`: the table, the positions of the
    /// columns the input's fields go to, and the INSERT that carries them (no ON
    /// CONFLICT, no RETURNING).
    pub fn copy_target(
        &self,
        table: &str,
        columns: &[String],
    ) -> Result<(Rc<TableDesc>, Vec<usize>, ast::Insert)> {
        let cols = columns
            .iter()
            .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = if cols.is_empty() {
            format!("INSERT INTO {table} VALUES (1)")
        } else {
            format!("INSERT INTO {table} ({cols}) VALUES (1)")
        };
        let dialect = sqlparser::dialect::PostgreSqlDialect {};
        let stmt = sqlparser::parser::Parser::parse_sql(&dialect, &sql)
            .map_err(|e| Error::syntax(e.to_string()))?
            .pop();
        let Some(Statement::Insert(ins)) = stmt else {
            return Err(Error::syntax("COPY: bad table name"));
        };
        let ast::TableObject::TableName(name) = &ins.table else {
            return Err(Error::syntax("COPY: bad table name"));
        };
        let t = lookup_table(self.cat, self.db_id, &self.path, name)?;
        if t.view.is_some() {
            return Err(Error::new(
                ErrorKind::WrongObjectType,
                format!("cannot copy to view \"{}\"", t.name),
            ));
        }
        materialized_views::refuse_write(&t, materialized_views::Write::CopyFrom)?;
        let positions = insert_columns(&t, &ins.columns)?;
        Ok((t, positions, ins))
    }

    /// Inserts rows of text fields (`COPY … FROM STDIN`) through the INSERT path: each
    /// field parsed by its column's type; `first_line` numbers the rows in errors.
    pub async fn copy_rows(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Vec<crate::sql::copy::Field>],
        first_line: u64,
    ) -> Result<u64> {
        let (t, positions, ins) = self.copy_target(table, columns)?;
        let mut given_rows = Vec::with_capacity(rows.len());
        for (n, fields) in rows.iter().enumerate() {
            let line = first_line + n as u64;
            if fields.len() != positions.len() {
                let what = if fields.len() < positions.len() {
                    "missing data for column"
                } else {
                    "extra data after last expected column"
                };
                let msg = if fields.len() < positions.len() {
                    format!("{what} \"{}\"", t.columns[positions[fields.len()]].name)
                } else {
                    what.to_string()
                };
                return Err(Error::new(ErrorKind::BadCopyFileFormat, msg)
                    .with_detail(format!("COPY {}, line {line}", t.name)));
            }
            let mut given = Vec::with_capacity(fields.len());
            for (f, &ci) in fields.iter().zip(&positions) {
                let col = &t.columns[ci];
                let v = match f {
                    None => Datum::Null,
                    Some(s) => Datum::parse(col.ty, s).map_err(|e| {
                        e.with_detail(format!(
                            "COPY {}, line {line}, column {}: \"{s}\"",
                            t.name, col.name
                        ))
                    })?,
                };
                given.push((ci, v));
            }
            given_rows.push(given);
        }
        let n = given_rows.len() as u64;
        self.insert_rows(&t, &ins, given_rows).await.map_err(|e| {
            if e.detail.is_none() {
                e.with_detail(format!("COPY {}", t.name))
            } else {
                e
            }
        })?;
        Ok(n)
    }

    /// `ALTER TABLE t SPLIT AT <query>`: splits `t`'s ranges at each primary-key prefix the
    /// query yields.
    async fn split_at(
        &mut self,
        t: &Rc<TableDesc>,
        source: Option<&ast::Query>,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let source = source.ok_or_else(|| Error::syntax("SPLIT AT needs VALUES or a query"))?;
        let pk_cols: Vec<&ColumnDesc> = t.pk.iter().map(|&i| &t.columns[i]).collect();
        let mut params: Vec<SqlType> = self.cx.params.iter().map(|d| d.natural_type()).collect();
        let rows: Vec<Vec<Datum>> = match source.body.as_ref() {
            SetExpr::Values(v) => {
                let mut rows = Vec::new();
                for r in &v.rows {
                    let mut row = Vec::with_capacity(r.len());
                    for (i, e) in r.iter().enumerate() {
                        let hint = pk_cols.get(i).map(|c| c.ty);
                        let (sc, _) = Binder::new(&[], &mut params).bind(e, hint)?;
                        row.push(sc.eval(&[], &self.cx)?);
                    }
                    rows.push(row);
                }
                rows
            }
            _ => {
                let plan = plan_select(self.cat, self.db_id, &self.path, source, &mut params)?;
                self.run_plan(&plan).await?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if row.is_empty() || row.len() > pk_cols.len() {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    format!(
                        "SPLIT AT data must have between 1 and {} columns (the primary key of {})",
                        pk_cols.len(),
                        t.name
                    ),
                ));
            }
            let mut vals = Vec::with_capacity(row.len());
            for (v, c) in row.into_iter().zip(&pk_cols) {
                vals.push(assign_cast(v, c)?);
            }
            let key = Self::pk_key_from(t, &vals);
            crate::kv::split::split_at(self.ctx, &key, true).await?;
            out.push(vec![
                Datum::Bytes(key.clone()),
                Datum::Text(format!("/Table/{}{}", t.id, keys::pretty_key_suffix(&key))),
                Datum::Null,
            ]);
        }
        let n = out.len();
        Ok((
            Outcome::Rows {
                rows: out,
                tag: format!("SELECT {n}"),
                suspended: false,
            },
            Some(split_at_columns()),
        ))
    }

    /// `SHOW RANGES FROM TABLE t`: one row per range, in key order.
    async fn show_ranges(&mut self, table: &str) -> Result<(Outcome, Option<Vec<Column>>)> {
        let name = ast::ObjectName::from(vec![ast::Ident::new(table)]);
        let t = lookup_table(self.cat, self.db_id, &self.path, &name)?;
        self.show_ranges_of(&t, None).await
    }

    /// `SHOW INDEX ENTRIES FROM i`: what secondary index `i` holds, entry by entry, read
    /// from the index itself (queries through an index re-check every row they fetch, so
    /// they cannot show a stale entry): its key and the primary key it points to, as
    /// `SHOW RANGES` prints keys (`/index id/value/…`). A diagnostic, for checking an index
    /// against its table.
    async fn show_index_entries(&mut self, index: &str) -> Result<(Outcome, Option<Vec<Column>>)> {
        let found = self.cat.tables_in(self.db_id).find_map(|t| {
            t.write_indexes()
                .find(|i| i.name == index)
                .map(|i| (t.id, i.id))
        });
        let Some((table, id)) = found else {
            return Err(Error::new(
                ErrorKind::UndefinedObject,
                format!("index \"{index}\" does not exist"),
            ));
        };
        let start = index_prefix(table, id);
        let end = prefix_end(&start);
        let rows: Vec<Vec<Datum>> = self
            .kv_scan(&start, &end)
            .await?
            .iter()
            .map(|(k, v)| {
                vec![
                    Datum::Text(keys::pretty_key_suffix(k)),
                    Datum::Text(keys::pretty_key_suffix(v)),
                ]
            })
            .collect();
        Ok(select_rows(rows, index_entries_columns()))
    }

    /// `SHOW RANGE FROM TABLE t FOR ROW (…)`: the range holding the row whose primary key
    /// is the given values (pre-parsed into a marked INSERT).
    async fn show_range_for_row(
        &mut self,
        t: &Rc<TableDesc>,
        source: Option<&ast::Query>,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let bad = || {
            Error::new(
                ErrorKind::InvalidParameterValue,
                format!(
                    "FOR ROW needs the {} primary key value(s) of {}",
                    t.pk.len(),
                    t.name
                ),
            )
        };
        let row = match source.map(|q| q.body.as_ref()) {
            Some(SetExpr::Values(v)) if v.rows.len() == 1 => &v.rows[0],
            _ => return Err(bad()),
        };
        if row.len() != t.pk.len() {
            return Err(bad());
        }
        let mut params: Vec<SqlType> = self.cx.params.iter().map(|d| d.natural_type()).collect();
        let mut vals = Vec::with_capacity(row.len());
        for (e, &ci) in row.iter().zip(&t.pk) {
            let c = &t.columns[ci];
            let (sc, _) = Binder::new(&[], &mut params).bind(e, Some(c.ty))?;
            vals.push(assign_cast(sc.eval(&[], &self.cx)?, c)?);
        }
        let key = Self::pk_key_from(t, &vals);
        self.show_ranges_of(t, Some(&key)).await
    }

    /// One row per range of `t` (only the one holding `key`, when given), in key order.
    async fn show_ranges_of(
        &mut self,
        t: &Rc<TableDesc>,
        key: Option<&[u8]>,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        self.ctx.refresh_ranges().await?;
        let mut ranges = self.ctx.ranges.borrow().table_ranges(t.id);
        if let Some(k) = key {
            ranges
                .retain(|d| d.start.as_slice() <= k && (d.end.is_empty() || k < d.end.as_slice()));
        }
        let (tstart, tend) = keys::table_span(t.id);
        let cores = self.ctx.shared.ncores;
        let bound = |k: &Vec<u8>, edge: &Vec<u8>| {
            if k == edge {
                Datum::Null
            } else {
                Datum::Text(keys::pretty_key_suffix(k))
            }
        };
        let mut rows: Vec<Vec<Datum>> = Vec::with_capacity(ranges.len());
        for d in &ranges {
            let info = self.ctx.replicas_of(d.id).await?;
            let replicas = format!(
                "{{{}}}",
                info.voters
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            );
            rows.push(vec![
                bound(&d.start, &tstart),
                bound(&d.end, &tend),
                Datum::Int(d.id.0 as i64),
                Datum::Int(info.leader as i64),
                Datum::Int(keys::core_for_range(d.id, cores) as i64),
                Datum::Text(replicas),
                info.bytes.map_or(Datum::Null, |b| Datum::Int(b as i64)),
                info.qps.map_or(Datum::Null, Datum::Float),
            ]);
        }
        let n = rows.len();
        Ok((
            Outcome::Rows {
                rows,
                tag: format!("SELECT {n}"),
                suspended: false,
            },
            Some(show_ranges_columns()),
        ))
    }

    async fn insert_rows(
        &mut self,
        t: &Rc<TableDesc>,
        ins: &ast::Insert,
        given_rows: Vec<Vec<(usize, Datum)>>,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let t = t.clone();
        let (conflict, upsert) = match &ins.on {
            Some(ast::OnInsert::OnConflict(oc)) => {
                let upsert = matches!(&oc.action, ast::OnConflictAction::DoUpdate(du)
                    if du.assignments.len() == 1 && du.assignments[0].target.to_string().trim_matches('"') == UPSERT_MARKER);
                (Some(oc), upsert)
            }
            Some(_) => return Err(Error::unsupported("ON DUPLICATE KEY UPDATE")),
            None => (None, false),
        };
        let target = match conflict {
            Some(oc) => match &oc.conflict_target {
                Some(ct) => Some(Self::conflict_target(&t, ct)?),
                None if matches!(oc.action, ast::OnConflictAction::DoUpdate(_)) && !upsert => {
                    return Err(Error::syntax(
                        "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                    ));
                }
                None => None,
            },
            None => None,
        };
        let returning = match &ins.returning {
            Some(items) => {
                let mut params: Vec<SqlType> =
                    self.cx.params.iter().map(|d| d.natural_type()).collect();
                Some(bind_returning(&t, items, &mut params)?)
            }
            None => None,
        };
        let mut out_rows = Vec::new();
        let mut count = 0;
        let mut touched: HashSet<Vec<u8>> = HashSet::new();
        for given in given_rows {
            self.check_cancel()?;
            let row = self.complete_row(&t, &given).await?;
            let existing = match &target {
                Some(c) => match self.conflict_on(&t, &row, c).await? {
                    Some(old) => Some((c.clone(), old)),
                    None => match self.find_conflict(&t, &row).await? {
                        Some((other, _)) => return Err(Self::dup_error(&t, &other, &row)),
                        None => None,
                    },
                },
                None if upsert => self
                    .conflict_on(&t, &row, &t.pk_name.clone())
                    .await?
                    .map(|old| (t.pk_name.clone(), old)),
                None => self.find_conflict(&t, &row).await?,
            };
            let final_row = match (existing, conflict) {
                (None, _) => {
                    self.write_row(&t, &row, true);
                    touched.insert(Self::pk_key(&t, &row));
                    if !t.foreign_keys.is_empty() {
                        self.check_references(&t, None, &row).await?;
                    }
                    row
                }
                (Some((cname, _)), None) => return Err(Self::dup_error(&t, &cname, &row)),
                (Some(_), Some(oc)) if matches!(oc.action, ast::OnConflictAction::DoNothing) => {
                    continue
                }
                (Some((_, old)), Some(_)) if upsert => {
                    let mut new = old.clone();
                    for (i, v) in &given {
                        new[*i] = v.clone();
                    }
                    // Columns the UPSERT did not name keep their values, except defaults of
                    // a brand-new primary key (not this case).
                    self.check_row(&t, &mut new)?;
                    self.update_row_checked(&t, &old, &new, 0).await?;
                    new
                }
                (Some((_, old)), Some(oc)) => {
                    let ast::OnConflictAction::DoUpdate(du) = &oc.action else {
                        unreachable!()
                    };
                    let pk = Self::pk_key(&t, &old);
                    if !touched.insert(pk) {
                        return Err(Error::new(
                            ErrorKind::CardinalityViolation,
                            "ON CONFLICT DO UPDATE command cannot affect row a second time",
                        ));
                    }
                    let mut scope = table_scope(&t, &t.name);
                    scope.extend(table_scope(&t, "excluded"));
                    let combined: Vec<Datum> =
                        old.iter().cloned().chain(row.iter().cloned()).collect();
                    if let Some(w) = &du.selection {
                        let mut params: Vec<SqlType> =
                            self.cx.params.iter().map(|d| d.natural_type()).collect();
                        let (s, _) =
                            Binder::new(&scope, &mut params).bind(w, Some(SqlType::Bool))?;
                        if !s.eval_bool(&combined, &self.cx)? {
                            continue;
                        }
                    }
                    let mut new = old.clone();
                    for a in &multi_assign::expand_assignments(&du.assignments)? {
                        let cname = match &a.target {
                            ast::AssignmentTarget::ColumnName(n) => object_name(n),
                            _ => return Err(Error::unsupported("tuple assignment")),
                        };
                        let ci = t.column_index(&cname).ok_or_else(|| {
                            Error::new(
                                ErrorKind::UndefinedColumn,
                                format!(
                                    "column \"{cname}\" of relation \"{}\" does not exist",
                                    t.name
                                ),
                            )
                        })?;
                        let mut params: Vec<SqlType> =
                            self.cx.params.iter().map(|d| d.natural_type()).collect();
                        let (s, _) = Binder::new(&scope, &mut params)
                            .bind(&a.value, Some(t.columns[ci].ty))?;
                        new[ci] = s.eval(&combined, &self.cx)?;
                    }
                    self.check_row(&t, &mut new)?;
                    self.update_row_checked(&t, &old, &new, 0).await?;
                    new
                }
            };
            count += 1;
            if let Some((outs, _)) = &returning {
                out_rows.push(self.project_row(outs, &final_row)?);
            }
        }
        Ok(dml_outcome(
            format!("INSERT 0 {count}"),
            returning,
            out_rows,
        ))
    }

    /// Replaces `old` by `new`, keeping indexes right and checking new unique keys.
    async fn replace_row(&mut self, t: &TableDesc, old: &[Datum], new: &[Datum]) -> Result<()> {
        let old_pk = Self::pk_key(t, old);
        let new_pk = Self::pk_key(t, new);
        if old_pk != new_pk {
            if self.kv_get(&new_pk).await?.is_some() {
                return Err(Self::dup_error(t, &t.pk_name.clone(), new));
            }
            self.txn.delete(old_pk.clone());
            self.txn.insert(new_pk.clone(), keys::encode_row(new));
        } else {
            self.txn.put(new_pk.clone(), keys::encode_row(new));
        }
        for idx in t.write_indexes() {
            let ok = Self::index_key(t, idx, old);
            let nk = Self::index_key(t, idx, new);
            if ok == nk && old_pk == new_pk {
                continue;
            }
            self.txn.delete(ok.clone());
            if Self::unique_conflict_possible(idx, new) && ok != nk {
                if let Some(pk) = self.kv_get(&nk).await? {
                    if pk != old_pk {
                        return Err(Self::dup_error(t, &idx.name, new));
                    }
                }
                self.txn.insert(nk, new_pk.clone());
            } else {
                self.txn.put(nk, new_pk.clone());
            }
        }
        Ok(())
    }

    async fn update(&mut self, u: &ast::Update) -> Result<(Outcome, Option<Vec<Column>>)> {
        let (t, alias) = match &u.table.relation {
            TableFactor::Table { name, alias, .. } => {
                let t = lookup_table(self.cat, self.db_id, &self.path, name)?;
                materialized_views::refuse_write(&t, materialized_views::Write::Dml)?;
                let a = alias
                    .as_ref()
                    .map(|a| ident_name(&a.name))
                    .unwrap_or_else(|| t.name.clone());
                (t, a)
            }
            _ => return Err(Error::unsupported("UPDATE of a non-table")),
        };
        let mut params: Vec<SqlType> = self.cx.params.iter().map(|d| d.natural_type()).collect();
        let from = dml_join::update_from(u);
        let join = if from.is_empty() {
            None
        } else {
            Some(dml_join::plan_dml_join(
                self.cat,
                self.db_id,
                &self.path,
                &u.table.relation,
                from,
                u.selection.as_ref(),
                &mut params,
            )?)
        };
        let scope = match &join {
            Some(p) => p.scope.clone(),
            None => table_scope(&t, &alias),
        };
        let mut sets = Vec::new();
        for a in &multi_assign::expand_assignments(&u.assignments)? {
            let cname = match &a.target {
                ast::AssignmentTarget::ColumnName(n) => object_name(n),
                _ => return Err(Error::unsupported("tuple assignment")),
            };
            let ci = t.column_index(&cname).ok_or_else(|| {
                Error::new(
                    ErrorKind::UndefinedColumn,
                    format!(
                        "column \"{cname}\" of relation \"{}\" does not exist",
                        t.name
                    ),
                )
            })?;
            let s = if is_default(&a.value) {
                match &t.columns[ci].default_expr {
                    Some(d) => {
                        Binder::new(&[], &mut params)
                            .bind(d, Some(t.columns[ci].ty))?
                            .0
                    }
                    None => Scalar::Const(Datum::Null),
                }
            } else {
                Binder::new(&scope, &mut params)
                    .bind(&a.value, Some(t.columns[ci].ty))?
                    .0
            };
            sets.push((ci, s));
        }
        let filter = match (&u.selection, &join) {
            (Some(w), None) => Some(
                Binder::new(&scope, &mut params)
                    .bind(w, Some(SqlType::Bool))?
                    .0,
            ),
            _ => None,
        };
        let returning = match &u.returning {
            Some(items) => Some(dml_join::bind_returning_scoped(&scope, items, &mut params)?),
            None => None,
        };
        let rows = match join {
            Some(plan) => self.dml_join_rows(&t, plan).await?,
            None => self.matching_rows(&t, &scope, filter.as_ref()).await?,
        };
        // Without FROM a row is just the target's; with FROM the joined row follows it.
        let width = t.columns.len();
        let mut count = 0;
        let mut out_rows = Vec::new();
        let set_exprs: Vec<&Scalar> = sets
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.has_sequence_call())
            .collect();
        // Correlated subqueries in SET (`SET x = (SELECT … WHERE o.k = t.k)`) run per row.
        let mut corr_sets: Vec<usize> = sets
            .iter()
            .flat_map(|(_, s)| self.correlated_in(Some(s)))
            .collect();
        corr_sets.sort_unstable();
        corr_sets.dedup();
        for joined in rows {
            self.check_cancel()?;
            if !set_exprs.is_empty() {
                self.run_sequence_calls(&set_exprs, &joined).await?;
            }
            for &i in &corr_sets {
                let v = Box::pin(self.run_correlated(i, &scope, &joined)).await?;
                let slot = self.correlated[i].slot;
                self.cx.params[slot] = v;
            }
            let old = &joined[..width];
            let mut new = old.to_vec();
            for (ci, s) in &sets {
                new[*ci] = s.eval(&joined, &self.cx)?;
            }
            self.check_row(&t, &mut new)?;
            self.update_row_checked(&t, old, &new, 0).await?;
            count += 1;
            if let Some((outs, _)) = &returning {
                if joined.len() == width {
                    out_rows.push(self.project_row(outs, &new)?);
                } else {
                    let mut after = new;
                    after.extend_from_slice(&joined[width..]);
                    out_rows.push(self.project_row(outs, &after)?);
                }
            }
        }
        Ok(dml_outcome(format!("UPDATE {count}"), returning, out_rows))
    }

    async fn delete(&mut self, d: &ast::Delete) -> Result<(Outcome, Option<Vec<Column>>)> {
        let target = delete_target(d)?;
        let TableFactor::Table { name, alias, .. } = target else {
            return Err(Error::unsupported("DELETE from a non-table"));
        };
        let t = lookup_table(self.cat, self.db_id, &self.path, name)?;
        materialized_views::refuse_write(&t, materialized_views::Write::Dml)?;
        let alias = alias
            .as_ref()
            .map(|a| ident_name(&a.name))
            .unwrap_or_else(|| t.name.clone());
        let mut params: Vec<SqlType> = self.cx.params.iter().map(|d| d.natural_type()).collect();
        let using = d.using.as_deref().unwrap_or_default();
        let join = if using.is_empty() {
            None
        } else {
            Some(dml_join::plan_dml_join(
                self.cat,
                self.db_id,
                &self.path,
                target,
                using,
                d.selection.as_ref(),
                &mut params,
            )?)
        };
        let scope = match &join {
            Some(p) => p.scope.clone(),
            None => table_scope(&t, &alias),
        };
        let filter = match (&d.selection, &join) {
            (Some(w), None) => Some(
                Binder::new(&scope, &mut params)
                    .bind(w, Some(SqlType::Bool))?
                    .0,
            ),
            _ => None,
        };
        let returning = match &d.returning {
            Some(items) => Some(dml_join::bind_returning_scoped(&scope, items, &mut params)?),
            None => None,
        };
        let rows = match join {
            Some(plan) => self.dml_join_rows(&t, plan).await?,
            None => self.matching_rows(&t, &scope, filter.as_ref()).await?,
        };
        let width = t.columns.len();
        let mut count = 0;
        let mut out_rows = Vec::new();
        for row in rows {
            self.delete_row_checked(&t, &row[..width], 0).await?;
            count += 1;
            if let Some((outs, _)) = &returning {
                out_rows.push(self.project_row(outs, &row)?);
            }
        }
        Ok(dml_outcome(format!("DELETE {count}"), returning, out_rows))
    }

    // --- DDL (committed on its own, not transactional yet) ---

    async fn create_database(
        &mut self,
        name: &ast::ObjectName,
        if_not_exists: bool,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let n = object_name(name);
        if self.cat.database(&n).is_some() {
            if if_not_exists {
                return Ok((Outcome::Command("CREATE DATABASE".into()), None));
            }
            return Err(Error::new(
                ErrorKind::DuplicateDatabase,
                format!("database \"{n}\" already exists"),
            ));
        }
        let ts = self.ctx.shared.hlc.now();
        let mut writes = Vec::new();
        let id = catalog::next_id(self.ctx, ts, &mut writes).await?;
        writes.push(KvWrite::Insert {
            key: keys::database_key(id),
            value: catalog::encode_database(&DatabaseDesc { id, name: n }),
        });
        catalog::commit_schema(self.ctx, ts, writes).await?;
        Ok((Outcome::Command("CREATE DATABASE".into()), None))
    }

    async fn create_table(
        &mut self,
        ct: &ast::CreateTable,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        if ct.query.is_none() && udf::calls_functions(ct, self.cat, self.db_id) {
            return Err(udf_in_column_expression());
        }
        let (schema_id, name) = self.cat.creation_name(self.db_id, &self.path, &ct.name)?;
        if self.cat.table_in(self.db_id, schema_id, &name).is_some() {
            if ct.if_not_exists {
                return Ok((Outcome::Command("CREATE TABLE".into()), None));
            }
            return Err(Error::new(
                ErrorKind::DuplicateTable,
                format!("relation \"{name}\" already exists"),
            ));
        }
        if ct.query.is_some() {
            return self.create_table_as(ct).await;
        }
        let mut columns = Vec::new();
        let mut pk: Vec<usize> = Vec::new();
        let mut uniques: Vec<(Option<String>, Vec<usize>)> = Vec::new();
        let mut pending_checks: Vec<(Option<String>, Expr, Option<String>)> = Vec::new();
        let mut serials: Vec<usize> = Vec::new();
        let mut pending_fks: Vec<(ast::ForeignKeyConstraint, Vec<usize>)> = Vec::new();
        for (i, c) in ct.columns.iter().enumerate() {
            let cname = ident_name(&c.name);
            if columns.iter().any(|x: &ColumnDesc| x.name == cname) {
                return Err(Error::new(
                    ErrorKind::DuplicateColumn,
                    format!("column \"{cname}\" specified more than once"),
                ));
            }
            let def = column_from_def(c)?;
            let col = def.column;
            if def.primary_key {
                if !pk.is_empty() {
                    return Err(Error::new(
                        ErrorKind::InvalidTableDefinition,
                        format!("multiple primary keys for table \"{name}\" are not allowed"),
                    ));
                }
                pk.push(i);
            }
            if def.unique {
                uniques.push((None, vec![i]));
            }
            for (cname, e) in def.checks {
                pending_checks.push((cname, e, Some(col.name.clone())));
            }
            if def.serial {
                serials.push(i);
            }
            for fk in def.references {
                pending_fks.push((fk, vec![i]));
            }
            columns.push(col);
        }
        let col_idx = |cols: &[ColumnDesc], n: &str| -> Result<usize> {
            cols.iter().position(|c| c.name == n).ok_or_else(|| {
                Error::new(
                    ErrorKind::UndefinedColumn,
                    format!("column \"{n}\" named in key does not exist"),
                )
            })
        };
        for tc in &ct.constraints {
            match tc {
                ast::TableConstraint::PrimaryKey(p) => {
                    if !pk.is_empty() {
                        return Err(Error::new(
                            ErrorKind::InvalidTableDefinition,
                            format!("multiple primary keys for table \"{name}\" are not allowed"),
                        ));
                    }
                    for c in &p.columns {
                        pk.push(col_idx(&columns, &index_column_name(c)?)?);
                    }
                }
                ast::TableConstraint::Unique(u) => {
                    let mut cols = Vec::new();
                    for c in &u.columns {
                        cols.push(col_idx(&columns, &index_column_name(c)?)?);
                    }
                    uniques.push((u.name.as_ref().map(ident_name), cols));
                }
                ast::TableConstraint::Check(cc) => pending_checks.push((
                    cc.name.as_ref().map(ident_name),
                    (*cc.expr).clone(),
                    None,
                )),
                ast::TableConstraint::ForeignKey(fk) => {
                    let mut cols = Vec::new();
                    for c in &fk.columns {
                        let n = ident_name(c);
                        cols.push(columns.iter().position(|x| x.name == n).ok_or_else(|| {
                            Error::new(
                                ErrorKind::UndefinedColumn,
                                format!(
                                    "column \"{n}\" referenced in foreign key constraint does not exist"
                                ),
                            )
                        })?);
                    }
                    pending_fks.push((fk.clone(), cols));
                }
                _ => {
                    return Err(Error::unsupported(
                        "this table constraint is not supported yet",
                    ))
                }
            }
        }
        if pk.is_empty() {
            let mut rowid = ColumnDesc::new("rowid", SqlType::Int8);
            rowid.nullable = false;
            rowid.default = Some("unique_rowid()".into());
            rowid.hidden = true;
            columns.push(rowid);
            pk.push(columns.len() - 1);
        }
        for &i in &pk {
            columns[i].nullable = false;
        }
        let ts = self.ctx.shared.hlc.now();
        let mut writes = Vec::new();
        let id = catalog::next_id(self.ctx, ts, &mut writes).await?;
        // SERIAL: a sequence owned by the column (PostgreSQL), or unique_rowid() in an
        // INT8 (`serial_normalization = rowid`, CockroachDB's old behaviour).
        let mut sequences = Vec::new();
        for &i in &serials {
            if self.serial_rowid {
                columns[i].ty = SqlType::Int8;
                continue;
            }
            let taken: Vec<String> = sequences
                .iter()
                .map(|s: &TableDesc| s.name.clone())
                .collect();
            let sname = serial_sequence_name(
                self.cat,
                self.db_id,
                schema_id,
                &name,
                &columns[i].name,
                &taken,
            );
            let (mut seq, _) = sequence::build(
                &sequence::SeqOptions {
                    ty: Some(columns[i].ty),
                    ..Default::default()
                },
                None,
            )?;
            seq.owned_by = Some((id, i));
            let sid = catalog::next_id(self.ctx, ts, &mut writes).await?;
            let qualified = match schema_id {
                catalog::PUBLIC_SCHEMA => pg_catalog::quote_ident(&sname),
                _ => format!(
                    "{}.{}",
                    pg_catalog::quote_ident(self.cat.schema_name(schema_id)),
                    pg_catalog::quote_ident(&sname)
                ),
            };
            columns[i].default = Some(format!(
                "nextval('{}'::regclass)",
                qualified.replace('\'', "''")
            ));
            sequences.push(sequence::relation(sid, self.db_id, schema_id, &sname, seq));
        }
        for c in columns.iter_mut() {
            validate_default(c)?;
        }
        let mut checks: Vec<CheckDesc> = Vec::new();
        for (cname, expr, col) in pending_checks {
            let c = build_check(&name, &columns, &checks, cname, expr, col.as_deref())?;
            checks.push(c);
        }
        let mut indexes = Vec::new();
        let mut next_index_id = 2;
        for (cname, cols) in uniques {
            if cols == pk {
                continue;
            }
            // `CONSTRAINT c UNIQUE (…)` keeps its name, as in PostgreSQL.
            let iname = cname.unwrap_or_else(|| {
                format!(
                    "{name}_{}_key",
                    cols.iter()
                        .map(|&i| columns[i].name.as_str())
                        .collect::<Vec<_>>()
                        .join("_")
                )
            });
            indexes.push(IndexDesc {
                id: next_index_id,
                name: iname,
                unique: true,
                columns: cols,
            });
            next_index_id += 1;
        }
        let mut desc = TableDesc {
            id,
            db_id: self.db_id,
            pk_name: format!("{name}_pkey"),
            pk,
            indexes,
            next_index_id,
            checks,
            schema_id,
            ..TableDesc::new(name, columns)
        };
        for (fk, cols) in pending_fks {
            let f = self.build_foreign_key(&desc, &fk, cols)?;
            desc.foreign_keys.push(f);
        }
        writes.push(KvWrite::Insert {
            key: keys::table_desc_key(id),
            value: catalog::encode_table(&desc),
        });
        for s in &sequences {
            writes.push(KvWrite::Insert {
                key: keys::table_desc_key(s.id),
                value: catalog::encode_table(s),
            });
        }
        catalog::commit_schema(self.ctx, ts, writes).await?;
        for s in &sequences {
            let start = s.sequence.as_ref().map(|q| q.start).unwrap_or(1);
            sequence::advance(self.ctx, s, SeqOp::Restart(start)).await?;
        }
        Ok((Outcome::Command("CREATE TABLE".into()), None))
    }

    /// `CREATE [OR REPLACE] VIEW`: a descriptor holding the query, computed at each read.
    /// (`CREATE MATERIALIZED VIEW` makes a stored table instead:
    /// `exec::materialized_views`.)
    async fn create_view(
        &mut self,
        cv: &ast::CreateView,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let (schema_id, name) = self.cat.creation_name(self.db_id, &self.path, &cv.name)?;
        let tag = "CREATE VIEW";
        let existing = self.cat.table_in(self.db_id, schema_id, &name);
        if let Some(t) = &existing {
            if cv.if_not_exists {
                return Ok((Outcome::Command(tag.into()), None));
            }
            if !(cv.or_replace && t.view.is_some()) {
                return Err(Error::new(
                    ErrorKind::DuplicateTable,
                    format!("relation \"{name}\" already exists"),
                ));
            }
        }
        let mut q = (*cv.query).clone();
        let mut params = Vec::new();
        udf::inline_calls(&mut q, self.cat, self.db_id, &self.path)?;
        stub_subqueries(self.cat, self.db_id, &self.path, &mut q, &mut params)?;
        let plan = plan_select(self.cat, self.db_id, &self.path, &q, &mut params)?;
        if !params.is_empty() {
            return Err(Error::syntax("a view cannot use parameters"));
        }
        if !cv.columns.is_empty() && cv.columns.len() != plan.columns.len() {
            return Err(Error::syntax(format!(
                "CREATE VIEW specifies {} column names, but the query returns {}",
                cv.columns.len(),
                plan.columns.len()
            )));
        }
        let columns = plan
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let name = cv
                    .columns
                    .get(i)
                    .map(|v| ident_name(&v.name))
                    .unwrap_or_else(|| c.name.clone());
                ColumnDesc::new(name, c.ty)
            })
            .collect();
        let ts = self.ctx.shared.hlc.now();
        let mut writes = Vec::new();
        let id = match &existing {
            Some(t) => t.id,
            None => catalog::next_id(self.ctx, ts, &mut writes).await?,
        };
        let desc = TableDesc {
            id,
            db_id: self.db_id,
            view: Some(cv.query.to_string()),
            schema_id,
            ..TableDesc::new(name, columns)
        };
        writes.push(KvWrite::Put {
            key: keys::table_desc_key(id),
            value: catalog::encode_table(&desc),
        });
        catalog::commit_schema(self.ctx, ts, writes).await?;
        Ok((Outcome::Command(tag.into()), None))
    }

    /// `ALTER TABLE`: ADD / DROP / RENAME COLUMN, ALTER COLUMN SET / DROP DEFAULT and NOT
    /// NULL, RENAME TO, ADD PRIMARY KEY / UNIQUE / CHECK, DROP CONSTRAINT. The operations
    /// apply in order to one new descriptor, published in one schema change.
    ///
    /// Caveats: a new column's DEFAULT is evaluated once and read by the existing rows (no
    /// rewrite; PostgreSQL re-evaluates volatile defaults per row); validations read the
    /// table in this statement's transaction; ADD CONSTRAINT … UNIQUE alone builds its index
    /// online (`exec/online_index.rs`), but a UNIQUE added together with other changes (ADD
    /// COLUMN … UNIQUE) backfills in the statement and publishes with them: writes from
    /// other sessions in between miss the new index.
    async fn alter_table(
        &mut self,
        at: &ast::AlterTable,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        const TAG: &str = "ALTER TABLE";
        if udf::calls_functions(at, self.cat, self.db_id) {
            return Err(udf_in_column_expression());
        }
        let name = object_name(&at.name);
        let t = match self.cat.relation(self.db_id, &self.path, &at.name)? {
            Some(t) => t,
            None if at.if_exists => return Ok((Outcome::Command(TAG.into()), None)),
            None => return Err(catalog::undefined_table(&name)),
        };
        if t.view.is_some() {
            return Err(Error::new(
                ErrorKind::WrongObjectType,
                format!("\"{}\" is not a table", t.name),
            ));
        }
        if t.materialized.is_some() {
            // Its columns are its query's: only a new name is allowed.
            if let Some(op) = at
                .operations
                .iter()
                .find(|op| !matches!(op, ast::AlterTableOperation::RenameTable { .. }))
            {
                return Err(Error::new(
                    ErrorKind::WrongObjectType,
                    format!(
                        "ALTER action {} cannot be performed on relation \"{}\"",
                        op.to_string()
                            .split_whitespace()
                            .take(2)
                            .collect::<Vec<_>>()
                            .join(" "),
                        t.name
                    ),
                )
                .with_detail("This operation is not supported for materialized views."));
            }
        }
        let mut desc = (*t).clone();
        let mut new_indexes: Vec<IndexDesc> = Vec::new();
        let mut validate_checks: Vec<CheckDesc> = Vec::new();
        let mut validate_fks: Vec<ForeignKeyDesc> = Vec::new();
        let mut validate_not_null: Vec<usize> = Vec::new();
        let mut new_pk: Option<(Vec<usize>, String)> = None;
        let undefined_column = |c: &str, t: &str| {
            Error::new(
                ErrorKind::UndefinedColumn,
                format!("column \"{c}\" of relation \"{t}\" does not exist"),
            )
        };
        for op in &at.operations {
            use ast::AlterTableOperation as Op;
            match op {
                Op::AddColumn {
                    if_not_exists,
                    column_def,
                    ..
                } => {
                    let def = column_from_def(column_def)?;
                    let mut col = def.column;
                    if desc.column_index(&col.name).is_some() {
                        if *if_not_exists {
                            continue;
                        }
                        return Err(Error::new(
                            ErrorKind::DuplicateColumn,
                            format!(
                                "column \"{}\" of relation \"{}\" already exists",
                                col.name, desc.name
                            ),
                        ));
                    }
                    if def.primary_key {
                        return Err(Error::unsupported(
                            "ALTER TABLE … ADD COLUMN … PRIMARY KEY is not supported; add the \
                             column, then ADD PRIMARY KEY",
                        ));
                    }
                    validate_default(&mut col)?;
                    if let Some(e) = &col.default_expr {
                        let mut p = Vec::new();
                        let (sc, _) = Binder::new(&[], &mut p).bind(e, Some(col.ty))?;
                        // Existing rows read the default evaluated once (no rewrite): a
                        // volatile one would give them all the same value, where
                        // PostgreSQL gives each row its own.
                        if join_access::volatile(&sc) && self.table_has_rows(&t).await? {
                            return Err(Error::unsupported(format!(
                                "ALTER TABLE … ADD COLUMN \"{}\" with a volatile default ({}) \
                                 on a table that has rows is not supported yet",
                                col.name,
                                col.default.as_deref().unwrap_or("")
                            ))
                            .with_hint(
                                "Add the column without the default, fill it with UPDATE, \
                                 then ALTER COLUMN … SET DEFAULT.",
                            ));
                        }
                        let v = assign_cast(sc.eval(&[], &self.cx)?, &col)?;
                        if !v.is_null() {
                            col.missing = Some(v);
                        }
                    }
                    if !col.nullable && col.missing.is_none() {
                        validate_not_null.push(desc.columns.len());
                    }
                    let ci = desc.columns.len();
                    let cname = col.name.clone();
                    desc.columns.push(col);
                    if def.unique {
                        new_indexes.push(IndexDesc {
                            id: 0,
                            name: format!("{}_{cname}_key", desc.name),
                            unique: true,
                            columns: vec![ci],
                        });
                    }
                    for (n, e) in def.checks {
                        let c = build_check(
                            &desc.name,
                            &desc.columns,
                            &desc.checks,
                            n,
                            e,
                            Some(&cname),
                        )?;
                        validate_checks.push(c.clone());
                        desc.checks.push(c);
                    }
                    for fk in def.references {
                        let f = self.build_foreign_key(&desc, &fk, vec![ci])?;
                        validate_fks.push(f.clone());
                        desc.foreign_keys.push(f);
                    }
                }
                Op::DropColumn {
                    column_names,
                    if_exists,
                    ..
                } => {
                    for cn in column_names {
                        let cname = ident_name(cn);
                        let Some(ci) = desc
                            .column_index(&cname)
                            .filter(|&i| !desc.columns[i].hidden)
                        else {
                            if *if_exists {
                                continue;
                            }
                            return Err(undefined_column(&cname, &desc.name));
                        };
                        if desc.pk.contains(&ci) {
                            return Err(Error::unsupported(format!(
                                "column \"{cname}\" is referenced by the primary key"
                            )));
                        }
                        if desc.visible_columns().count() == 1 {
                            // PostgreSQL allows zero-column tables; we do not.
                            return Err(Error::unsupported(format!(
                                "cannot drop column \"{cname}\": it is the table's only column"
                            )));
                        }
                        // Indexes (also on expressions reading it) and CHECKs over the
                        // column go with it (as in PostgreSQL).
                        let mut gone = vec![ci];
                        for (i, c) in desc.columns.iter().enumerate() {
                            if let Some(Ok(e)) = c.computed.as_deref().map(catalog::parse_default) {
                                if expr_mentions(&e, &cname) {
                                    gone.push(i);
                                }
                            }
                        }
                        let keep = |i: &IndexDesc| !i.columns.iter().any(|c| gone.contains(c));
                        desc.indexes.retain(keep);
                        desc.adding.retain(keep);
                        new_indexes.retain(keep);
                        crate::sql::computed::drop_unused(&mut desc);
                        desc.checks.retain(|c| !expr_mentions(&c.parsed, &cname));
                        let c = &mut desc.columns[ci];
                        c.dropped = true;
                        c.hidden = true;
                        c.nullable = true;
                        c.default = None;
                        c.default_expr = None;
                        c.missing = None;
                        c.name = format!("........pg.dropped.{}........", ci + 1);
                    }
                }
                Op::RenameColumn {
                    old_column_name,
                    new_column_name,
                } => {
                    let (old, new) = (ident_name(old_column_name), ident_name(new_column_name));
                    let ci = desc
                        .column_index(&old)
                        .filter(|&i| !desc.columns[i].hidden)
                        .ok_or_else(|| undefined_column(&old, &desc.name))?;
                    if desc.column_index(&new).is_some() {
                        return Err(Error::new(
                            ErrorKind::DuplicateColumn,
                            format!(
                                "column \"{new}\" of relation \"{}\" already exists",
                                desc.name
                            ),
                        ));
                    }
                    desc.columns[ci].name = new.clone();
                    for c in desc.checks.iter_mut() {
                        rename_column_in(&mut c.parsed, &old, &new);
                        c.expr = c.parsed.to_string();
                    }
                    for c in desc.columns.iter_mut() {
                        if let Some(Ok(mut e)) = c.computed.as_deref().map(catalog::parse_default) {
                            rename_column_in(&mut e, &old, &new);
                            c.computed = Some(e.to_string());
                        }
                    }
                    crate::sql::computed::bind(&mut desc);
                }
                Op::RenameTable { table_name } => {
                    let n = match table_name {
                        ast::RenameTableNameKind::As(n) | ast::RenameTableNameKind::To(n) => {
                            object_name(n)
                        }
                    };
                    if self.cat.table_in(self.db_id, desc.schema_id, &n).is_some() {
                        return Err(Error::new(
                            ErrorKind::DuplicateTable,
                            format!("relation \"{n}\" already exists"),
                        ));
                    }
                    desc.name = n;
                }
                Op::AlterColumn { column_name, op } => {
                    let cname = ident_name(column_name);
                    let ci = desc
                        .column_index(&cname)
                        .filter(|&i| !desc.columns[i].hidden)
                        .ok_or_else(|| undefined_column(&cname, &desc.name))?;
                    match op {
                        ast::AlterColumnOperation::SetNotNull => {
                            if desc.columns[ci].nullable {
                                desc.columns[ci].nullable = false;
                                validate_not_null.push(ci);
                            }
                        }
                        ast::AlterColumnOperation::DropNotNull => {
                            if desc.pk.contains(&ci) {
                                return Err(Error::new(
                                    ErrorKind::InvalidTableDefinition,
                                    format!("column \"{cname}\" is in a primary key"),
                                ));
                            }
                            desc.columns[ci].nullable = true;
                        }
                        ast::AlterColumnOperation::SetDefault { value } => {
                            let c = &mut desc.columns[ci];
                            c.default = Some(value.to_string());
                            validate_default(c)?;
                        }
                        ast::AlterColumnOperation::DropDefault => {
                            let c = &mut desc.columns[ci];
                            c.default = None;
                            c.default_expr = None;
                        }
                        other => {
                            return Err(Error::unsupported(format!(
                                "ALTER COLUMN {}",
                                first_words(&other.to_string())
                            )))
                        }
                    }
                }
                Op::AddConstraint { constraint, .. } => match constraint {
                    ast::TableConstraint::PrimaryKey(p) => {
                        let rowid_keyed = desc.pk.len() == 1 && desc.columns[desc.pk[0]].hidden;
                        if !rowid_keyed || new_pk.is_some() {
                            return Err(Error::new(
                                ErrorKind::InvalidTableDefinition,
                                format!(
                                    "multiple primary keys for table \"{}\" are not allowed",
                                    desc.name
                                ),
                            ));
                        }
                        let mut cols = Vec::new();
                        for c in &p.columns {
                            let n = index_column_name(c)?;
                            cols.push(
                                desc.column_index(&n)
                                    .filter(|&i| !desc.columns[i].hidden)
                                    .ok_or_else(|| undefined_column(&n, &desc.name))?,
                            );
                        }
                        let cname = p
                            .name
                            .as_ref()
                            .map(ident_name)
                            .unwrap_or_else(|| format!("{}_pkey", desc.name));
                        new_pk = Some((cols, cname));
                    }
                    ast::TableConstraint::Unique(u) => {
                        let mut cols = Vec::new();
                        for c in &u.columns {
                            let n = index_column_name(c)?;
                            cols.push(
                                desc.column_index(&n)
                                    .filter(|&i| !desc.columns[i].hidden)
                                    .ok_or_else(|| undefined_column(&n, &desc.name))?,
                            );
                        }
                        let iname = u.name.as_ref().map(ident_name).unwrap_or_else(|| {
                            format!(
                                "{}_{}_key",
                                desc.name,
                                cols.iter()
                                    .map(|&i| desc.columns[i].name.as_str())
                                    .collect::<Vec<_>>()
                                    .join("_")
                            )
                        });
                        let taken = self.cat.tables_in(self.db_id).any(|x| {
                            x.pk_name == iname || x.indexes.iter().any(|i| i.name == iname)
                        }) || new_indexes.iter().any(|i| i.name == iname);
                        if taken {
                            return Err(Error::new(
                                ErrorKind::DuplicateTable,
                                format!("relation \"{iname}\" already exists"),
                            ));
                        }
                        new_indexes.push(IndexDesc {
                            id: 0,
                            name: iname,
                            unique: true,
                            columns: cols,
                        });
                    }
                    ast::TableConstraint::Check(cc) => {
                        let c = build_check(
                            &desc.name,
                            &desc.columns,
                            &desc.checks,
                            cc.name.as_ref().map(ident_name),
                            (*cc.expr).clone(),
                            None,
                        )?;
                        validate_checks.push(c.clone());
                        desc.checks.push(c);
                    }
                    ast::TableConstraint::ForeignKey(fk) => {
                        let mut cols = Vec::new();
                        for c in &fk.columns {
                            let n = ident_name(c);
                            cols.push(
                                desc.column_index(&n)
                                    .filter(|&i| !desc.columns[i].hidden && !desc.columns[i].dropped)
                                    .ok_or_else(|| {
                                        Error::new(
                                            ErrorKind::UndefinedColumn,
                                            format!(
                                                "column \"{n}\" referenced in foreign key constraint does not exist"
                                            ),
                                        )
                                    })?,
                            );
                        }
                        let f = self.build_foreign_key(&desc, fk, cols)?;
                        validate_fks.push(f.clone());
                        desc.foreign_keys.push(f);
                    }
                    _ => {
                        return Err(Error::unsupported(
                            "this table constraint is not supported yet",
                        ))
                    }
                },
                Op::DropConstraint {
                    if_exists,
                    name: cn,
                    ..
                } => {
                    let cname = ident_name(cn);
                    let before = (
                        desc.checks.len(),
                        desc.indexes.len(),
                        desc.foreign_keys.len(),
                    );
                    desc.checks.retain(|c| c.name != cname);
                    desc.indexes.retain(|i| !(i.unique && i.name == cname));
                    desc.foreign_keys.retain(|f| f.name != cname);
                    if before
                        == (
                            desc.checks.len(),
                            desc.indexes.len(),
                            desc.foreign_keys.len(),
                        )
                    {
                        if cname == desc.pk_name {
                            return Err(Error::unsupported(
                                "dropping the primary key is not supported",
                            ));
                        }
                        if !*if_exists {
                            return Err(Error::new(
                                ErrorKind::UndefinedObject,
                                format!(
                                    "constraint \"{cname}\" of relation \"{}\" does not exist",
                                    desc.name
                                ),
                            ));
                        }
                    }
                }
                other => {
                    return Err(Error::unsupported(format!(
                        "ALTER TABLE {}",
                        first_words(&other.to_string())
                    )))
                }
            }
        }
        for fk in &validate_fks {
            self.validate_foreign_key(&desc, fk).await?;
        }
        if !validate_not_null.is_empty() || !validate_checks.is_empty() {
            let probe = TableDesc {
                checks: validate_checks.clone(),
                ..desc.clone()
            };
            for row in self.read_rows(&t, Access::Full).await? {
                let mut row = probe
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        row.get(i)
                            .cloned()
                            .unwrap_or_else(|| c.missing.clone().unwrap_or(Datum::Null))
                    })
                    .collect::<Vec<_>>();
                for &ci in &validate_not_null {
                    if row[ci].is_null() {
                        return Err(Error::new(
                            ErrorKind::NotNullViolation,
                            format!(
                                "column \"{}\" of relation \"{}\" contains null values",
                                probe.columns[ci].name, probe.name
                            ),
                        ));
                    }
                }
                if !validate_checks.is_empty() {
                    self.check_row(&probe, &mut row).map_err(|e| {
                        if e.kind == ErrorKind::CheckViolation {
                            Error::new(
                                ErrorKind::CheckViolation,
                                format!(
                                    "check constraint of relation \"{}\" is violated by some row",
                                    probe.name
                                ),
                            )
                        } else {
                            e
                        }
                    })?;
                }
            }
        }
        if new_pk.is_none()
            && !new_indexes.is_empty()
            && catalog::encode_table(&desc) == catalog::encode_table(&t)
        {
            // Only unique constraints to add: built online, one after the other, as
            // CREATE UNIQUE INDEX (each its own job).
            for (n, idx) in new_indexes.into_iter().enumerate() {
                let (now, _) = online_index::current_desc(self.ctx, t.id).await?;
                let description = if n == 0 {
                    at.to_string()
                } else {
                    format!("{at} ({})", idx.name)
                };
                self.build_index_online(&now, idx, &[], description).await?;
            }
            return Ok((Outcome::Command(TAG.into()), None));
        }
        for mut idx in new_indexes {
            idx.id = desc.next_index_id;
            desc.next_index_id += 1;
            self.backfill_index(&t, &desc, &idx).await?;
            desc.indexes.push(idx);
        }
        if let Some((cols, cname)) = new_pk {
            return self.rekey(&t, desc, cols, cname).await;
        }
        let writes = vec![KvWrite::Put {
            key: keys::table_desc_key(desc.id),
            value: catalog::encode_table(&desc),
        }];
        catalog::commit_schema(self.ctx, self.ctx.shared.hlc.now(), writes).await?;
        Ok((Outcome::Command(TAG.into()), None))
    }

    /// `ALTER TABLE t ADD PRIMARY KEY (cols)` on a table keyed by its hidden rowid: copies
    /// every row (and every secondary index) under new index ids keyed by `cols`, in
    /// batches read at one snapshot, then publishes the descriptor in a transaction that
    /// refreshes its read of the whole table from that snapshot: if anyone wrote the table
    /// meanwhile, the statement fails with 40001 and nothing changed (the copies are
    /// unreachable garbage).
    async fn rekey(
        &mut self,
        t: &TableDesc,
        mut desc: TableDesc,
        cols: Vec<usize>,
        pk_name: String,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        // Reserve the index ids the copy goes to first: a retried statement (or one that
        // failed half-way) then copies under fresh ids, never into its own earlier copy.
        let mut reserve = t.clone();
        reserve.next_index_id = desc.next_index_id + 1 + desc.indexes.len() as u32;
        catalog::commit_schema(
            self.ctx,
            self.ctx.shared.hlc.now(),
            vec![KvWrite::Put {
                key: keys::table_desc_key(reserve.id),
                value: catalog::encode_table(&reserve),
            }],
        )
        .await?;
        let snapshot = self.ctx.shared.hlc.now();
        desc.primary_index = desc.next_index_id;
        desc.next_index_id += 1;
        for idx in desc.indexes.iter_mut() {
            idx.id = desc.next_index_id;
            desc.next_index_id += 1;
        }
        for &c in &cols {
            desc.columns[c].nullable = false;
        }
        desc.next_index_id = reserve.next_index_id;
        desc.pk = cols;
        desc.pk_name = pk_name;
        let old_start = index_prefix(t.id, t.primary_index);
        let old_end = prefix_end(&old_start);
        let mut cur = old_start.clone();
        loop {
            self.check_cancel()?;
            let batch = self
                .ctx
                .kv_scan(&cur, &old_end, snapshot, crate::sql::copy::COPY_BATCH_ROWS)
                .await?;
            let Some((last, _)) = batch.last() else {
                break;
            };
            cur = last.clone();
            cur.push(0);
            let mut txn = Txn::new(
                self.ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed),
                self.ctx.shared.hlc.now(),
            );
            for (_, v) in &batch {
                let row = t.decode_row(v)?;
                for &c in &desc.pk {
                    if row[c].is_null() {
                        return Err(Error::new(
                            ErrorKind::NotNullViolation,
                            format!(
                                "column \"{}\" of relation \"{}\" contains null values",
                                desc.columns[c].name, desc.name
                            ),
                        ));
                    }
                }
                let k = Self::pk_key(&desc, &row);
                if txn.writes.contains_key(&k) {
                    return Err(Self::duplicate_key(&desc, &row));
                }
                txn.insert(k.clone(), keys::encode_row(&row));
                for idx in &desc.indexes {
                    let ik = Self::index_key(&desc, idx, &row);
                    if Self::unique_conflict_possible(idx, &row) {
                        txn.insert(ik, k.clone());
                    } else {
                        txn.put(ik, k.clone());
                    }
                }
            }
            crate::sql::session::commit(self.ctx, txn)
                .await
                .map_err(|e| {
                    if e.kind == ErrorKind::UniqueViolation {
                        Error::new(
                            ErrorKind::UniqueViolation,
                            format!("could not create unique index \"{}\"", desc.pk_name),
                        )
                        .with_detail("Key values are duplicated.")
                    } else {
                        e
                    }
                })?;
            if batch.len() < crate::sql::copy::COPY_BATCH_ROWS {
                break;
            }
        }
        // Publish, refreshing the snapshot's read of the table: no write may have slipped in.
        let mut publish = Txn::new(
            self.ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed),
            snapshot,
        );
        publish.read_span(&old_start, &old_end);
        publish.put(keys::table_desc_key(desc.id), catalog::encode_table(&desc));
        let generation = catalog::schema_generation(self.ctx, snapshot).await? + 1;
        if let KvWrite::Put { key, value } = catalog::generation_write(generation) {
            publish.put(key, value);
        }
        let r = crate::sql::session::commit(self.ctx, publish).await;
        self.ctx
            .shared
            .catalog_version
            .fetch_add(1, Ordering::SeqCst);
        r.map_err(|e| {
            if e.is_retryable() {
                Error::new(
                    ErrorKind::SerializationFailure,
                    "ADD PRIMARY KEY: the table was written while it was being rewritten; retry",
                )
            } else {
                e
            }
        })?;
        Ok((Outcome::Command("ALTER TABLE".into()), None))
    }

    fn duplicate_key(desc: &TableDesc, row: &[Datum]) -> Error {
        duplicate_in_index(desc, &desc.pk_name, &desc.pk, row)
    }

    /// Writes index `idx` of `desc` for every current row of `t`, in a transaction of its
    /// own. A unique index over duplicate values fails with 23505.
    async fn backfill_index(&self, t: &TableDesc, desc: &TableDesc, idx: &IndexDesc) -> Result<()> {
        let ts = self.ctx.shared.hlc.now();
        let mut backfill = Txn::new(self.ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed), ts);
        let rows = self.read_rows(t, Access::Full).await?;
        let mut seen = HashSet::new();
        for row in rows {
            let k = Self::index_key(desc, idx, &row);
            if Self::unique_conflict_possible(idx, &row) && !seen.insert(k.clone()) {
                return Err(Error::new(
                    ErrorKind::UniqueViolation,
                    format!("could not create unique index \"{}\"", idx.name),
                ));
            }
            backfill.put(k, Self::pk_key(desc, &row));
        }
        crate::sql::session::commit(self.ctx, backfill).await
    }

    async fn create_index(
        &mut self,
        ci: &ast::CreateIndex,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let t = lookup_table(self.cat, self.db_id, &self.path, &ci.table_name)?;
        let mut cols = Vec::new();
        let mut name_parts = Vec::new();
        // Index expressions: (key part, expression text, type), columns made by the build.
        let mut exprs = Vec::new();
        for (part, c) in ci.columns.iter().enumerate() {
            let mut e = c.column.expr.clone();
            while let Expr::Nested(inner) = e {
                e = *inner;
            }
            if let Expr::Identifier(i) = &e {
                let n = ident_name(i);
                cols.push(
                    t.column_index(&n)
                        .filter(|&i| t.columns[i].computed.is_none())
                        .ok_or_else(|| {
                            Error::new(
                                ErrorKind::UndefinedColumn,
                                format!("column \"{n}\" does not exist"),
                            )
                        })?,
                );
                name_parts.push(n);
                continue;
            }
            unqualify_columns(&mut e);
            let (_, ty) = crate::sql::computed::bind_expr(&t, &e)?;
            name_parts.push(crate::sql::computed::name_part(&e));
            exprs.push((part, e.to_string(), ty));
            cols.push(usize::MAX);
        }
        let iname = match &ci.name {
            Some(n) => object_name(n),
            None => format!(
                "{}_{}_{}",
                t.name,
                name_parts.join("_"),
                if ci.unique { "key" } else { "idx" }
            ),
        };
        let exists = self
            .cat
            .tables_in(self.db_id)
            .any(|t| t.write_indexes().any(|i| i.name == iname) || t.pk_name == iname);
        if exists {
            if ci.if_not_exists {
                return Ok((Outcome::Command("CREATE INDEX".into()), None));
            }
            return Err(Error::new(
                ErrorKind::DuplicateTable,
                format!("relation \"{iname}\" already exists"),
            ));
        }
        let idx = IndexDesc {
            // Assigned by the build, from the descriptor as it is then.
            id: 0,
            name: iname,
            unique: ci.unique,
            columns: cols,
        };
        self.build_index_online(&t, idx, &exprs, ci.to_string())
            .await?;
        Ok((Outcome::Command("CREATE INDEX".into()), None))
    }

    /// `CREATE SEQUENCE`, and `ALTER SEQUENCE` (pre-parsed into a marked `CREATE TEMPORARY
    /// SEQUENCE`, see [`crate::sql::preparse`]).
    async fn create_sequence(
        &mut self,
        name: &ast::ObjectName,
        if_not_exists: bool,
        temporary: bool,
        options: &[ast::SequenceOptions],
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(ident_name)
            .collect();
        let last = parts.last().cloned().unwrap_or_default();
        let (mut o, owned) = sequence_options(options)?;
        if temporary && last.starts_with(ALTER_SEQUENCE_MARKER) {
            const TAG: &str = "ALTER SEQUENCE";
            let restart = last[ALTER_SEQUENCE_MARKER.len()..].trim();
            if let Some(r) = restart.strip_prefix("restart") {
                o.restart = Some(match r.trim() {
                    "" => None,
                    n => Some(n.parse().map_err(|_| Error::syntax("bad RESTART value"))?),
                });
            }
            let mut seq_name = name.clone();
            seq_name.0.pop();
            let sname = catalog::display_name(&seq_name);
            let t = match self.cat.relation(self.db_id, &self.path, &seq_name)? {
                Some(t) if t.sequence.is_some() => t,
                Some(t) => return Err(sequence::not_a_sequence(&t.name)),
                None if if_not_exists => return Ok((Outcome::Command(TAG.into()), None)),
                None => return Err(catalog::undefined_table(&sname)),
            };
            let (mut seq, restart) = sequence::build(&o, t.sequence.as_ref())?;
            if let Some(owner) = owned {
                seq.owned_by = self.sequence_owner(owner.as_ref())?;
            }
            let mut desc = (*t).clone();
            desc.sequence = Some(seq);
            catalog::commit_schema(
                self.ctx,
                self.ctx.shared.hlc.now(),
                vec![KvWrite::Put {
                    key: keys::table_desc_key(desc.id),
                    value: catalog::encode_table(&desc),
                }],
            )
            .await?;
            if let Some(r) = restart {
                sequence::advance(self.ctx, &desc, SeqOp::Restart(r)).await?;
            }
            return Ok((Outcome::Command(TAG.into()), None));
        }
        const TAG: &str = "CREATE SEQUENCE";
        let (schema_id, last) = self.cat.creation_name(self.db_id, &self.path, name)?;
        if self.cat.table_in(self.db_id, schema_id, &last).is_some() {
            if if_not_exists {
                return Ok((Outcome::Command(TAG.into()), None));
            }
            return Err(Error::new(
                ErrorKind::DuplicateTable,
                format!("relation \"{last}\" already exists"),
            ));
        }
        let (mut seq, _) = sequence::build(&o, None)?;
        if let Some(owner) = owned {
            seq.owned_by = self.sequence_owner(owner.as_ref())?;
        }
        let ts = self.ctx.shared.hlc.now();
        let mut writes = Vec::new();
        let id = catalog::next_id(self.ctx, ts, &mut writes).await?;
        let start = seq.start;
        let desc = sequence::relation(id, self.db_id, schema_id, &last, seq);
        writes.push(KvWrite::Insert {
            key: keys::table_desc_key(id),
            value: catalog::encode_table(&desc),
        });
        catalog::commit_schema(self.ctx, ts, writes).await?;
        sequence::advance(self.ctx, &desc, SeqOp::Restart(start)).await?;
        Ok((Outcome::Command(TAG.into()), None))
    }

    /// `DROP SEQUENCE`: refused while a column default calls the sequence, unless CASCADE
    /// (which drops those defaults, as PostgreSQL does).
    fn drop_sequences(
        &self,
        if_exists: bool,
        names: &[ast::ObjectName],
        cascade: bool,
        writes: &mut Vec<KvWrite>,
    ) -> Result<()> {
        let mut changed: Vec<TableDesc> = Vec::new();
        for n in names {
            let sname = object_name(n);
            let t = match self.cat.relation(self.db_id, &self.path, n)? {
                Some(t) if t.sequence.is_some() => t,
                Some(t) => {
                    return Err(sequence::not_a_sequence(&t.name)
                        .with_hint("Use DROP TABLE to remove a table."))
                }
                None if if_exists => continue,
                None => {
                    return Err(Error::new(
                        ErrorKind::UndefinedTable,
                        format!("sequence \"{sname}\" does not exist"),
                    ))
                }
            };
            writes.push(KvWrite::Delete {
                key: keys::table_desc_key(t.id),
            });
            self.cx.seq.borrow_mut().forget(t.id);
            let quoted = format!("'{}'", pg_catalog::quote_ident(&t.name));
            for u in self.cat.tables_in(self.db_id) {
                for (ci, c) in u.columns.iter().enumerate() {
                    let uses = c
                        .default
                        .as_deref()
                        .is_some_and(|d| d.contains("nextval(") && d.contains(&quoted));
                    if !uses {
                        continue;
                    }
                    if !cascade {
                        return Err(Error::new(
                            ErrorKind::DependentObjects,
                            format!(
                                "cannot drop sequence {} because other objects depend on it",
                                t.name
                            ),
                        )
                        .with_detail(format!(
                            "default value for column {} of table {} depends on sequence {}",
                            c.name, u.name, t.name
                        ))
                        .with_hint("Use DROP ... CASCADE to drop the dependent objects too."));
                    }
                    let desc = match changed.iter().position(|d| d.id == u.id) {
                        Some(p) => &mut changed[p],
                        None => {
                            changed.push((**u).clone());
                            changed.last_mut().unwrap()
                        }
                    };
                    desc.columns[ci].default = None;
                    desc.columns[ci].default_expr = None;
                }
            }
        }
        for d in changed {
            writes.push(KvWrite::Put {
                key: keys::table_desc_key(d.id),
                value: catalog::encode_table(&d),
            });
        }
        Ok(())
    }

    /// Dropping the tables `dropped`: FOREIGN KEYs of other tables that reference them are
    /// an error (2BP01) unless CASCADE, which drops those constraints (not the tables).
    fn drop_foreign_keys_to(
        &self,
        dropped: &[u32],
        cascade: bool,
        writes: &mut Vec<KvWrite>,
    ) -> Result<()> {
        for u in self.cat.tables_in(self.db_id) {
            if dropped.contains(&u.id) {
                continue;
            }
            let refs: Vec<&ForeignKeyDesc> = u
                .foreign_keys
                .iter()
                .filter(|fk| dropped.contains(&fk.ref_table))
                .collect();
            let Some(first) = refs.first() else { continue };
            if !cascade {
                let parent = self
                    .cat
                    .tables
                    .iter()
                    .find(|t| t.id == first.ref_table)
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                return Err(Error::new(
                    ErrorKind::DependentObjects,
                    format!("cannot drop table {parent} because other objects depend on it"),
                )
                .with_detail(format!(
                    "constraint {} on table {} depends on table {parent}",
                    first.name, u.name
                ))
                .with_hint("Use DROP ... CASCADE to drop the dependent objects too."));
            }
            let mut desc = (**u).clone();
            desc.foreign_keys
                .retain(|fk| !dropped.contains(&fk.ref_table));
            writes.push(KvWrite::Put {
                key: keys::table_desc_key(desc.id),
                value: catalog::encode_table(&desc),
            });
        }
        Ok(())
    }

    /// `OWNED BY table.column` as (table id, column position); `None` for NONE.
    fn sequence_owner(&self, owner: Option<&ast::ObjectName>) -> Result<Option<(u32, usize)>> {
        let Some(owner) = owner else { return Ok(None) };
        let parts: Vec<String> = owner
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(ident_name)
            .collect();
        if parts.len() < 2 {
            return Err(Error::syntax("invalid OWNED BY option")
                .with_hint("Specify OWNED BY table.column or OWNED BY NONE."));
        }
        let (tname, cname) = (&parts[parts.len() - 2], &parts[parts.len() - 1]);
        let t = self
            .cat
            .table(self.db_id, &self.path, tname)
            .ok_or_else(|| catalog::undefined_table(tname))?;
        let ci = t.column_index(cname).ok_or_else(|| {
            Error::new(
                ErrorKind::UndefinedColumn,
                format!("column \"{cname}\" of relation \"{tname}\" does not exist"),
            )
        })?;
        Ok(Some((t.id, ci)))
    }

    async fn drop(
        &mut self,
        ot: ObjectType,
        if_exists: bool,
        names: &[ast::ObjectName],
        cascade: bool,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let mut writes = Vec::new();
        let tag = match ot {
            ObjectType::Table => {
                let mut dropped: Vec<u32> = Vec::new();
                for n in names {
                    match self.cat.relation(self.db_id, &self.path, n)? {
                        Some(t) if t.view.is_some() => {
                            return Err(Error::new(
                                ErrorKind::WrongObjectType,
                                format!("\"{}\" is not a table", t.name),
                            )
                            .with_hint("Use DROP VIEW to remove a view."))
                        }
                        Some(t) if t.sequence.is_some() => {
                            return Err(Error::new(
                                ErrorKind::WrongObjectType,
                                format!("\"{}\" is not a table", t.name),
                            )
                            .with_hint("Use DROP SEQUENCE to remove a sequence."))
                        }
                        Some(t) if t.materialized.is_some() => {
                            return Err(Error::new(
                                ErrorKind::WrongObjectType,
                                format!("\"{}\" is not a table", t.name),
                            )
                            .with_hint(
                                "Use DROP MATERIALIZED VIEW to remove a materialized view.",
                            ))
                        }
                        Some(t) => {
                            writes.push(KvWrite::Delete {
                                key: keys::table_desc_key(t.id),
                            });
                            dropped.push(t.id);
                        }
                        None if if_exists => {}
                        None => return Err(catalog::undefined_table(&catalog::display_name(n))),
                    }
                }
                // Sequences owned by a dropped table's columns (SERIAL) go with it.
                for s in self.cat.tables_in(self.db_id) {
                    if let Some(sq) = &s.sequence {
                        if sq.owned_by.is_some_and(|(tid, _)| dropped.contains(&tid)) {
                            writes.push(KvWrite::Delete {
                                key: keys::table_desc_key(s.id),
                            });
                        }
                    }
                }
                self.drop_dependent_views(&mut dropped, cascade, &mut writes)?;
                self.drop_foreign_keys_to(&dropped, cascade, &mut writes)?;
                "DROP TABLE"
            }
            ObjectType::Sequence => {
                self.drop_sequences(if_exists, names, cascade, &mut writes)?;
                "DROP SEQUENCE"
            }
            ObjectType::Schema => {
                self.drop_schemas(if_exists, names, cascade, &mut writes)?;
                "DROP SCHEMA"
            }
            ObjectType::View | ObjectType::MaterializedView => {
                let materialized = ot == ObjectType::MaterializedView;
                let kind = if materialized {
                    "materialized view"
                } else {
                    "view"
                };
                let mut dropped: Vec<u32> = Vec::new();
                for n in names {
                    match self.cat.relation(self.db_id, &self.path, n)? {
                        // A materialized view made before they were stored is a plain
                        // view descriptor: DROP MATERIALIZED VIEW takes those too.
                        Some(t)
                            if t.view.is_some() || (materialized && t.materialized.is_some()) =>
                        {
                            writes.push(KvWrite::Delete {
                                key: keys::table_desc_key(t.id),
                            });
                            dropped.push(t.id);
                        }
                        Some(t) => {
                            let hint = if t.materialized.is_some() {
                                "Use DROP MATERIALIZED VIEW to remove a materialized view."
                            } else if t.sequence.is_some() {
                                "Use DROP SEQUENCE to remove a sequence."
                            } else {
                                "Use DROP TABLE to remove a table."
                            };
                            return Err(Error::new(
                                ErrorKind::WrongObjectType,
                                format!("\"{}\" is not a {kind}", t.name),
                            )
                            .with_hint(hint));
                        }
                        None if if_exists => {}
                        None => {
                            return Err(Error::new(
                                ErrorKind::UndefinedTable,
                                format!("{kind} \"{}\" does not exist", object_name(n)),
                            ))
                        }
                    }
                }
                self.drop_dependent_views(&mut dropped, cascade, &mut writes)?;
                if ot == ObjectType::View {
                    "DROP VIEW"
                } else {
                    "DROP MATERIALIZED VIEW"
                }
            }
            ObjectType::Index => {
                // The changed descriptors, one per table however many of its indexes go.
                let mut changed: Vec<TableDesc> = Vec::new();
                for n in names {
                    let iname = object_name(n);
                    let owner = self
                        .cat
                        .tables_in(self.db_id)
                        .find(|t| t.write_indexes().any(|i| i.name == iname))
                        .cloned();
                    match owner {
                        Some(t) => {
                            let at = match changed.iter().position(|d| d.id == t.id) {
                                Some(at) => at,
                                None => {
                                    changed.push((*t).clone());
                                    changed.len() - 1
                                }
                            };
                            // An index still being built goes too: its build then fails.
                            let desc = &mut changed[at];
                            desc.indexes.retain(|i| i.name != iname);
                            desc.adding.retain(|i| i.name != iname);
                            crate::sql::computed::drop_unused(desc);
                        }
                        None if if_exists => {}
                        None => {
                            return Err(Error::new(
                                ErrorKind::UndefinedObject,
                                format!("index \"{iname}\" does not exist"),
                            ))
                        }
                    }
                }
                for desc in &changed {
                    writes.push(KvWrite::Put {
                        key: keys::table_desc_key(desc.id),
                        value: catalog::encode_table(desc),
                    });
                }
                "DROP INDEX"
            }
            ObjectType::Database => {
                for n in names {
                    let dname = object_name(n);
                    match self.cat.database(&dname) {
                        Some(d) => {
                            if dname == self.cx.database {
                                return Err(Error::new(
                                    ErrorKind::ActiveTransaction,
                                    "cannot drop the currently open database",
                                ));
                            }
                            writes.push(KvWrite::Delete {
                                key: keys::database_key(d.id),
                            });
                            for t in self.cat.tables_in(d.id) {
                                writes.push(KvWrite::Delete {
                                    key: keys::table_desc_key(t.id),
                                });
                            }
                            for f in self.cat.functions_in(d.id) {
                                writes.push(KvWrite::Delete {
                                    key: keys::function_key(f.id),
                                });
                            }
                            for sc in self.cat.schemas_in(d.id) {
                                writes.push(KvWrite::Delete {
                                    key: keys::schema_key(sc.id),
                                });
                            }
                        }
                        None if if_exists => {}
                        None => {
                            return Err(Error::new(
                                ErrorKind::UndefinedDatabase,
                                format!("database \"{dname}\" does not exist"),
                            ))
                        }
                    }
                }
                "DROP DATABASE"
            }
            other => return Err(Error::unsupported(format!("DROP {other} is not supported"))),
        };
        if !writes.is_empty() {
            catalog::commit_schema(self.ctx, self.ctx.shared.hlc.now(), writes).await?;
        }
        Ok((Outcome::Command(tag.into()), None))
    }
}

/// The result of INSERT/UPDATE/DELETE: the RETURNING rows, or just the command tag.
fn dml_outcome(
    tag: String,
    returning: Option<(Vec<Scalar>, Vec<Column>)>,
    rows: Vec<Vec<Datum>>,
) -> (Outcome, Option<Vec<Column>>) {
    match returning {
        Some((_, cols)) => (
            Outcome::Rows {
                rows,
                tag,
                suspended: false,
            },
            Some(cols),
        ),
        None => (Outcome::Command(tag), None),
    }
}

/// A join kind as SQL says it.
fn join_kind_name(kind: JoinKind) -> &'static str {
    match kind {
        JoinKind::Inner => "inner",
        JoinKind::Left => "left",
        JoinKind::Right => "right",
        JoinKind::Full => "full",
    }
}

/// How EXPLAIN names an access path.
fn access_name(access: &Access) -> String {
    match access {
        Access::Point(_) => "primary key point lookup".to_string(),
        Access::Points(v) => format!("primary key lookups ({} keys)", v.len()),
        Access::Span(..) => "primary key span scan".to_string(),
        Access::Index(i, _) => format!("index {} lookup", i.name),
        Access::IndexRange(i, _, _) => format!("index {} range scan", i.name),
        Access::Full => "full scan".to_string(),
    }
}

fn index_column_name(c: &ast::IndexColumn) -> Result<String> {
    match &c.column.expr {
        Expr::Identifier(i) => Ok(ident_name(i)),
        other => Err(Error::unsupported(format!("index on expression {other}"))),
    }
}

/// `e` with its column references unqualified (`t.v` → `v`): index expressions are
/// kept as text over the table's column names.
fn unqualify_columns(e: &mut Expr) {
    let _ = ast::visit_expressions_mut(e, |x| {
        if let Expr::CompoundIdentifier(parts) = x {
            if let Some(last) = parts.last() {
                *x = Expr::Identifier(last.clone());
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn is_value(s: &Scalar) -> bool {
    matches!(s, Scalar::Const(_) | Scalar::Param(_))
}

fn flip(op: BinOp) -> BinOp {
    match op {
        BinOp::Lt => BinOp::Gt,
        BinOp::LtEq => BinOp::GtEq,
        BinOp::Gt => BinOp::Lt,
        BinOp::GtEq => BinOp::LtEq,
        o => o,
    }
}

fn flatten_and<'s>(s: &'s Scalar, out: &mut Vec<&'s Scalar>) {
    if let Scalar::Binary(BinOp::And, l, r, _) = s {
        flatten_and(l, out);
        flatten_and(r, out);
    } else {
        out.push(s);
    }
}

/// The assignment cast of a value into a column: type conversion and length limits.
fn assign_cast(v: Datum, c: &ColumnDesc) -> Result<Datum> {
    if v.is_null() {
        return Ok(v);
    }
    let from = v.natural_type();
    let compatible = from == c.ty
        || (from.is_numeric_family() && c.ty.is_numeric_family())
        || (from.is_string() && c.ty.is_string())
        || matches!(v, Datum::Text(_))
        || matches!(
            (from, c.ty),
            (SqlType::Date, SqlType::Timestamp | SqlType::TimestampTz)
                | (SqlType::Timestamp, SqlType::TimestampTz)
                | (SqlType::TimestampTz, SqlType::Timestamp)
        );
    if !compatible {
        return Err(Error::mismatch(format!(
            "column \"{}\" is of type {} but expression is of type {}",
            c.name,
            c.ty.name(),
            from.name()
        )));
    }
    let mut v = v.cast(c.ty)?;
    if let (Some((p, sc)), Datum::Numeric(d)) = (c.numeric, &v) {
        v = Datum::Numeric(crate::sql::expr::numeric_typmod(*d, p, sc)?);
    }
    if let (Some((p, sc)), Datum::NumericSpecial(x)) = (c.numeric, &v) {
        v = Datum::NumericSpecial(x.check_typmod(p, sc)?);
    }
    if let (Some(max), Datum::Text(s)) = (c.max_len, &v) {
        if s.chars().count() > max as usize {
            return Err(Error::new(
                ErrorKind::StringTooLong,
                format!("value too long for type character varying({max})"),
            ));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(v: &[Option<i64>]) -> Vec<(Vec<Datum>, Vec<Datum>)> {
        v.iter()
            .enumerate()
            .map(|(i, x)| {
                let d = x.map_or(Datum::Null, Datum::Int);
                (vec![Datum::Int(i as i64)], vec![d])
            })
            .collect()
    }

    fn keys(rows: &[(Vec<Datum>, Vec<Datum>)]) -> Vec<Option<i64>> {
        rows.iter()
            .map(|(_, k)| match k[0] {
                Datum::Int(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn sorted_runs_merge_into_one_order() {
        // Descending, NULLs first: three runs, one empty, with ties across runs.
        let dirs = [(true, true)];
        let rows = keyed(&[
            None,
            Some(9),
            Some(4),
            Some(4),
            Some(8),
            Some(4),
            Some(1),
            None,
            Some(10),
            Some(0),
        ]);
        let merged = merge_runs(rows.clone(), &[4, 0, 3, 3], &dirs);
        assert_eq!(
            keys(&merged),
            vec![
                None,
                None,
                Some(10),
                Some(9),
                Some(8),
                Some(4),
                Some(4),
                Some(4),
                Some(1),
                Some(0)
            ]
        );
        // Ties keep their runs' order: row 2 and 3 (run 0) before row 5 (run 2).
        let tied: Vec<String> = merged[5..8]
            .iter()
            .map(|(r, _)| format!("{:?}", r[0]))
            .collect();
        assert_eq!(tied, vec!["Int(2)", "Int(3)", "Int(5)"]);
        // Lengths that do not add up: sorted anyway.
        let sorted = merge_runs(rows, &[2], &dirs);
        assert_eq!(keys(&sorted), keys(&merged));
    }
}
