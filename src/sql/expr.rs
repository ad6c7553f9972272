//! Scalar expressions: the binder turns sqlparser's `Expr` into a [`Scalar`] with resolved
//! column indexes, parameters and aggregate slots, and a static type; [`Scalar::eval`]
//! evaluates it over a row.

use std::cmp::Ordering;
use std::ops::ControlFlow;

use rust_decimal::prelude::*;
use sqlparser::ast::{self, BinaryOperator, Expr, UnaryOperator};

use crate::error::{Error, ErrorKind, Result};
use crate::sql::array::CmpOp;
use crate::sql::numeric_special::{negative_sqrt_error, special_arith, NumericOp, NumericValue};
use crate::sql::types::{check_int_range, decimal_to_f64, Datum, SqlType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Concat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    CountStar,
    Sum,
    Min,
    Max,
    Avg,
    BoolAnd,
    BoolOr,
    /// `array_agg(x [ORDER BY …])`: every value, NULLs too, in `order` (else input) order.
    ArrayAgg,
    /// `string_agg(value, delimiter [ORDER BY …])`: the non-NULL values joined, each
    /// after its own row's delimiter (none before the first).
    StringAgg,
    /// `var_pop` / `var_samp` (`variance`), `stddev_pop` / `stddev_samp` (`stddev`): the
    /// values are kept and the result computed at the end, in numeric (exact input) or
    /// double precision (float input).
    Variance {
        population: bool,
        root: bool,
    },
    /// `jsonb_agg(x [ORDER BY …])`: every value (as `to_jsonb` gives it, NULLs as `null`)
    /// in a JSON array; kept like `array_agg`'s.
    JsonbAgg,
    /// `jsonb_object_agg(key, value [ORDER BY …])`: an object of the non-NULL keys (the
    /// key rides in `delimiter`); a later duplicate key wins.
    JsonbObjectAgg,
}

impl AggFunc {
    /// Whether the aggregate keeps every value (with its sort keys) to the end.
    pub fn keeps_items(self) -> bool {
        matches!(
            self,
            AggFunc::ArrayAgg | AggFunc::StringAgg | AggFunc::JsonbAgg | AggFunc::JsonbObjectAgg
        )
    }
}

#[derive(Clone, Debug)]
pub struct AggCall {
    pub func: AggFunc,
    pub arg: Option<Scalar>,
    pub distinct: bool,
    pub ty: SqlType,
    pub arg_ty: SqlType,
    /// The aggregate's own `ORDER BY` (key, descending, nulls first); only `array_agg`.
    pub order: Vec<(Scalar, bool, bool)>,
    /// `FILTER (WHERE …)`: only rows for which it is true reach the aggregate.
    pub filter: Option<Scalar>,
    /// `string_agg`'s delimiter (evaluated per row: it goes before that row's value).
    pub delimiter: Option<Scalar>,
}

/// A window function.
#[derive(Clone, Debug)]
pub enum WindowFunc {
    RowNumber,
    Rank,
    DenseRank,
    PercentRank,
    CumeDist,
    Lag,
    Lead,
    FirstValue,
    LastValue,
    /// `ntile(n)`: the number of the bucket (of n, as equal as can be) the row falls in.
    Ntile,
    /// `nth_value(v, n)`: `v` of the frame's n-th row (NULL when the frame is shorter).
    NthValue,
    Agg(AggCall),
}

/// Which rows of its partition a window function sees (always from the partition start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowFrame {
    /// The whole partition (no ORDER BY, or `… AND UNBOUNDED FOLLOWING`).
    Partition,
    /// Up to the current row and its peers (the default with ORDER BY).
    RangeToCurrent,
    /// Up to the current row (`ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW`).
    RowsToCurrent,
}

/// One `f(…) OVER (PARTITION BY … ORDER BY …)` of a query.
#[derive(Clone, Debug)]
pub struct WindowCall {
    pub func: WindowFunc,
    /// lag/lead: value, offset, default; first_value/last_value: value.
    pub args: Vec<Scalar>,
    pub partition: Vec<Scalar>,
    /// (key, descending, nulls first)
    pub order: Vec<(Scalar, bool, bool)>,
    pub frame: WindowFrame,
}

#[derive(Clone, Debug)]
pub enum Scalar {
    /// The value of window call `i` for the current row.
    WindowRef(usize),
    Const(Datum),
    Param(usize),
    Column(usize),
    AggRef(usize),
    Binary(BinOp, Box<Scalar>, Box<Scalar>, SqlType),
    Not(Box<Scalar>),
    Neg(Box<Scalar>),
    IsNull(Box<Scalar>, bool),
    IsBool(Box<Scalar>, bool, bool),
    IsDistinct(Box<Scalar>, Box<Scalar>, bool),
    InList(Box<Scalar>, Vec<Scalar>, bool),
    Between(Box<Scalar>, Box<Scalar>, Box<Scalar>, bool),
    Like(Box<Scalar>, Box<Scalar>, bool, bool),
    Case(
        Option<Box<Scalar>>,
        Vec<(Scalar, Scalar)>,
        Option<Box<Scalar>>,
    ),
    Cast(Box<Scalar>, SqlType),
    Func(String, Vec<Scalar>, SqlType),
}

impl Scalar {
    /// Visits every node, children before their parent, left to right (evaluation order).
    pub fn walk<'s>(&'s self, f: &mut dyn FnMut(&'s Scalar)) {
        match self {
            Scalar::WindowRef(_)
            | Scalar::Const(_)
            | Scalar::Param(_)
            | Scalar::Column(_)
            | Scalar::AggRef(_) => {}
            Scalar::Binary(_, a, b, _) | Scalar::IsDistinct(a, b, _) | Scalar::Like(a, b, _, _) => {
                a.walk(f);
                b.walk(f);
            }
            Scalar::Not(a)
            | Scalar::Neg(a)
            | Scalar::IsNull(a, _)
            | Scalar::IsBool(a, _, _)
            | Scalar::Cast(a, _) => a.walk(f),
            Scalar::InList(a, list, _) => {
                a.walk(f);
                list.iter().for_each(|x| x.walk(f));
            }
            Scalar::Between(a, b, c, _) => {
                a.walk(f);
                b.walk(f);
                c.walk(f);
            }
            Scalar::Case(op, whens, els) => {
                if let Some(o) = op {
                    o.walk(f);
                }
                for (w, t) in whens {
                    w.walk(f);
                    t.walk(f);
                }
                if let Some(e) = els {
                    e.walk(f);
                }
            }
            Scalar::Func(_, args, _) => args.iter().for_each(|x| x.walk(f)),
        }
        f(self);
    }

    /// The expression with every column reference renumbered by `f`; None when `f` refuses
    /// one (a column the target row does not have), or the expression reads aggregates or
    /// window values.
    pub fn map_columns(&self, f: &dyn Fn(usize) -> Option<usize>) -> Option<Scalar> {
        self.map_leaves(&|leaf| match leaf {
            Scalar::Column(i) => Some(Scalar::Column(f(*i)?)),
            Scalar::WindowRef(_) | Scalar::AggRef(_) => None,
            other => Some(other.clone()),
        })
    }

    /// The expression with every leaf (column, aggregate or window reference, constant,
    /// parameter) replaced by what `f` makes of it; None when `f` refuses one.
    pub fn map_leaves(&self, f: &dyn Fn(&Scalar) -> Option<Scalar>) -> Option<Scalar> {
        let m = |x: &Scalar| x.map_leaves(f).map(Box::new);
        let all = |xs: &[Scalar]| {
            xs.iter()
                .map(|x| x.map_leaves(f))
                .collect::<Option<Vec<_>>>()
        };
        Some(match self {
            Scalar::Column(_)
            | Scalar::WindowRef(_)
            | Scalar::AggRef(_)
            | Scalar::Const(_)
            | Scalar::Param(_) => f(self)?,
            Scalar::Binary(op, a, b, t) => Scalar::Binary(*op, m(a)?, m(b)?, *t),
            Scalar::Not(a) => Scalar::Not(m(a)?),
            Scalar::Neg(a) => Scalar::Neg(m(a)?),
            Scalar::IsNull(a, n) => Scalar::IsNull(m(a)?, *n),
            Scalar::IsBool(a, x, y) => Scalar::IsBool(m(a)?, *x, *y),
            Scalar::IsDistinct(a, b, n) => Scalar::IsDistinct(m(a)?, m(b)?, *n),
            Scalar::InList(a, list, n) => Scalar::InList(m(a)?, all(list)?, *n),
            Scalar::Between(a, b, c, n) => Scalar::Between(m(a)?, m(b)?, m(c)?, *n),
            Scalar::Like(a, b, x, y) => Scalar::Like(m(a)?, m(b)?, *x, *y),
            Scalar::Case(op, whens, els) => Scalar::Case(
                match op {
                    Some(o) => Some(m(o)?),
                    None => None,
                },
                whens
                    .iter()
                    .map(|(w, t)| Some((w.map_leaves(f)?, t.map_leaves(f)?)))
                    .collect::<Option<Vec<_>>>()?,
                match els {
                    Some(e) => Some(m(e)?),
                    None => None,
                },
            ),
            Scalar::Cast(a, t) => Scalar::Cast(m(a)?, *t),
            Scalar::Func(n, args, t) => Scalar::Func(n.clone(), all(args)?, *t),
        })
    }

    /// Whether the expression calls nextval, currval, setval or lastval.
    pub fn has_sequence_call(&self) -> bool {
        let mut found = false;
        self.walk(&mut |s| {
            if let Scalar::Func(n, _, _) = s {
                found |= crate::sql::sequence::runs_ahead(n);
            }
        });
        found
    }

    /// Appends the parameter slots this expression reads.
    pub fn params(&self, out: &mut Vec<usize>) {
        match self {
            Scalar::Param(i) => out.push(*i),
            Scalar::WindowRef(_) | Scalar::Const(_) | Scalar::Column(_) | Scalar::AggRef(_) => {}
            Scalar::Binary(_, a, b, _) | Scalar::IsDistinct(a, b, _) => {
                a.params(out);
                b.params(out);
            }
            Scalar::Not(a)
            | Scalar::Neg(a)
            | Scalar::IsNull(a, _)
            | Scalar::IsBool(a, _, _)
            | Scalar::Cast(a, _) => a.params(out),
            Scalar::InList(a, list, _) => {
                a.params(out);
                list.iter().for_each(|x| x.params(out));
            }
            Scalar::Between(a, b, c, _) => {
                a.params(out);
                b.params(out);
                c.params(out);
            }
            Scalar::Like(a, b, _, _) => {
                a.params(out);
                b.params(out);
            }
            Scalar::Case(op, whens, els) => {
                if let Some(o) = op {
                    o.params(out);
                }
                for (w, t) in whens {
                    w.params(out);
                    t.params(out);
                }
                if let Some(e) = els {
                    e.params(out);
                }
            }
            Scalar::Func(_, args, _) => args.iter().for_each(|x| x.params(out)),
        }
    }
}

/// A column visible to expressions.
#[derive(Clone, Debug)]
pub struct ScopeColumn {
    /// Hidden columns (the implicit rowid) are not part of `*`.
    pub hidden: bool,
    /// Where `*` lists the column: ascending, ties in scope order. Zero except for the
    /// merged columns of `JOIN … USING`, which come first (negative).
    pub star_order: i64,
    pub table: Option<String>,
    /// The schema of an unaliased table (`s` of `FROM s.t`), for `s.t.c` references.
    pub schema: Option<String>,
    pub name: String,
    pub ty: SqlType,
}

impl ScopeColumn {
    /// Whether a reference qualified `[schema.]table.` may mean this column. Only a
    /// column of an unaliased table or view has a schema to qualify it with.
    pub fn qualified_by(&self, schema: Option<&str>, table: &str) -> bool {
        self.table.as_deref() == Some(table)
            && match (schema, &self.schema) {
                (Some(s), Some(mine)) => s == mine,
                (Some(_), None) => false,
                (None, _) => true,
            }
    }
}

/// What the binder resolves names against, and where it collects aggregates and parameter
/// types.
pub struct Binder<'a> {
    pub columns: &'a [ScopeColumn],
    pub params: &'a mut Vec<SqlType>,
    pub aggs: Option<&'a mut Vec<AggCall>>,
    /// Where window functions go (`None`: not allowed here).
    pub windows: Option<&'a mut Vec<WindowCall>>,
    /// When grouping: the input columns that are grouped (others may only appear in
    /// aggregates).
    pub grouped: Option<Vec<usize>>,
    /// The GROUP BY expressions, as text, when grouping.
    pub group_exprs: Vec<String>,
    in_agg: bool,
    /// Binding the arguments of an aggregate used as a window function over the groups of
    /// a grouped query: they are expressions of the groups (aggregates allowed), not of
    /// the input rows.
    window_over_groups: bool,
    /// Operand types of the last `bind_pair`.
    last_pair: (SqlType, SqlType),
}

pub fn ident_name(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

pub fn object_name(n: &ast::ObjectName) -> String {
    n.0.last()
        .and_then(|p| p.as_ident())
        .map(ident_name)
        .unwrap_or_default()
}

fn unknown_literal(s: &Scalar) -> bool {
    matches!(s, Scalar::Const(Datum::Text(_)))
}

/// The type a type-named function (`date(x)`, `int8(x)`) casts to.
fn type_function(name: &str) -> Option<SqlType> {
    Some(match name {
        "date" => SqlType::Date,
        "text" => SqlType::Text,
        "varchar" => SqlType::Varchar,
        "int2" => SqlType::Int2,
        "int4" => SqlType::Int4,
        "int8" => SqlType::Int8,
        "float4" => SqlType::Float4,
        "float8" => SqlType::Float8,
        "numeric" => SqlType::Numeric,
        "bool" => SqlType::Bool,
        "timestamp" => SqlType::Timestamp,
        "timestamptz" => SqlType::TimestampTz,
        _ => return None,
    })
}

/// Whether `n` names an aggregate function (without OVER it aggregates its input).
pub fn is_agg_name(n: &str) -> bool {
    matches!(
        n,
        "count"
            | "sum"
            | "min"
            | "max"
            | "avg"
            | "bool_and"
            | "bool_or"
            | "every"
            | "array_agg"
            | "string_agg"
            | "jsonb_agg"
            | "jsonb_object_agg"
            | "stddev"
            | "stddev_samp"
            | "stddev_pop"
            | "variance"
            | "var_samp"
            | "var_pop"
    )
}

/// Whether `node` calls an aggregate function of its own query level: not one inside a
/// subquery, and not a window call (though its arguments and window may hold aggregates).
pub fn contains_aggregate<T: ast::Visit>(node: &T) -> bool {
    struct Finder {
        subquery_depth: usize,
    }
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _q: &ast::Query) -> ControlFlow<()> {
            self.subquery_depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _q: &ast::Query) -> ControlFlow<()> {
            self.subquery_depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Function(f)
                    if self.subquery_depth == 0
                        && f.over.is_none()
                        && is_agg_name(&object_name(&f.name)) =>
                {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    node.visit(&mut Finder { subquery_depth: 0 }).is_break()
}

impl<'a> Binder<'a> {
    pub fn new(columns: &'a [ScopeColumn], params: &'a mut Vec<SqlType>) -> Self {
        Binder {
            columns,
            params,
            aggs: None,
            windows: None,
            grouped: None,
            group_exprs: Vec::new(),
            in_agg: false,
            window_over_groups: false,
            last_pair: (SqlType::Unknown, SqlType::Unknown),
        }
    }

    fn resolve(&self, table: Option<&str>, name: &str) -> Result<usize> {
        self.resolve_qualified(None, table, name)
    }

    /// Resolves `[[schema.]table.]name`.
    fn resolve_qualified(
        &self,
        schema: Option<&str>,
        table: Option<&str>,
        name: &str,
    ) -> Result<usize> {
        if let Some(t) = table {
            let mut relations = self
                .columns
                .iter()
                .filter(|c| c.qualified_by(schema, t))
                .map(|c| c.schema.as_deref());
            let Some(first) = relations.next() else {
                let full = match schema {
                    Some(s) => format!("{s}.{t}"),
                    None => t.to_string(),
                };
                return Err(Error::new(
                    ErrorKind::UndefinedTable,
                    format!("missing FROM-clause entry for table \"{full}\""),
                ));
            };
            // `a` of `FROM s1.a, s2.a`: two tables answer to the name.
            if schema.is_none() && relations.any(|s| s != first) {
                return Err(Error::new(
                    ErrorKind::AmbiguousAlias,
                    format!("table reference \"{t}\" is ambiguous"),
                ));
            }
        }
        let matches: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name == name && table.is_none_or(|t| c.qualified_by(schema, t)))
            .map(|(i, _)| i)
            .collect();
        let found = match matches.as_slice() {
            [] => None,
            [i] => Some(*i),
            many => {
                // A JOIN … USING column: the hidden right-hand copy yields to the other.
                let visible: Vec<usize> = many
                    .iter()
                    .copied()
                    .filter(|i| !self.columns[*i].hidden)
                    .collect();
                match visible.as_slice() {
                    [i] if table.is_none() => Some(*i),
                    _ => {
                        return Err(Error::new(
                            ErrorKind::AmbiguousColumn,
                            format!("column reference \"{name}\" is ambiguous"),
                        ))
                    }
                }
            }
        };
        let i = found.ok_or_else(|| {
            let full = match table {
                Some(t) => format!("{t}.{name}"),
                None => name.to_string(),
            };
            Error::new(
                ErrorKind::UndefinedColumn,
                format!("column \"{full}\" does not exist"),
            )
        })?;
        if let Some(g) = &self.grouped {
            if !self.in_agg && !g.contains(&i) {
                return Err(Error::new(
                    ErrorKind::Grouping,
                    format!(
                        "column \"{name}\" must appear in the GROUP BY clause or be used in an aggregate function"
                    ),
                ));
            }
        }
        Ok(i)
    }

    /// Binds `e`, with `hint` the type the context expects (for parameters and literals).
    pub fn bind(&mut self, e: &Expr, hint: Option<SqlType>) -> Result<(Scalar, SqlType)> {
        // An expression the query groups by may use ungrouped columns: its value is the
        // same for every row of the group.
        if self.grouped.is_some() && !self.in_agg && !self.group_exprs.is_empty() {
            let text = e.to_string();
            if self.group_exprs.contains(&text) {
                let saved = self.grouped.take();
                let r = self.bind(e, hint);
                self.grouped = saved;
                return r;
            }
        }
        Ok(match e {
            Expr::Identifier(i) => {
                let idx = self.resolve(None, &ident_name(i))?;
                (Scalar::Column(idx), self.columns[idx].ty)
            }
            Expr::CompoundIdentifier(parts) => {
                let name = ident_name(parts.last().unwrap());
                let table = parts.len().checked_sub(2).map(|i| ident_name(&parts[i]));
                let schema = parts.len().checked_sub(3).map(|i| ident_name(&parts[i]));
                let idx = self.resolve_qualified(schema.as_deref(), table.as_deref(), &name)?;
                (Scalar::Column(idx), self.columns[idx].ty)
            }
            Expr::Value(v) => self.bind_value(&v.value, hint)?,
            Expr::Interval(iv) => (
                Scalar::Const(Datum::Interval(interval_literal(iv)?)),
                SqlType::Interval,
            ),
            Expr::Nested(e) => self.bind(e, hint)?,
            Expr::Tuple(items) => self.bind_row(items)?,
            // Text sorts bytewise whatever the collation, so COLLATE only checks.
            Expr::Collate { expr, collation } => {
                let (s, t) = self.bind(expr, hint)?;
                check_collation(collation, t)?;
                (s, t)
            }
            Expr::TypedString(ts) => {
                let ty = sql_type(&ts.data_type)?;
                let s = match &ts.value.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    ast::Value::DollarQuotedString(d) => d.value.clone(),
                    other => other.to_string(),
                };
                (Scalar::Const(Datum::parse(ty, &s)?), ty)
            }
            Expr::Cast {
                expr, data_type, ..
            } => {
                let ty = cast_type(data_type)?;
                let (s, _) = self.bind(expr, Some(ty))?;
                let cast = fold(Scalar::Cast(Box::new(s), ty))?;
                (apply_typmod(cast, ty, typmod(data_type))?, ty)
            }
            Expr::Position { expr, r#in } => {
                let (needle, _) = self.bind(expr, Some(SqlType::Text))?;
                let (hay, _) = self.bind(r#in, Some(SqlType::Text))?;
                (
                    Scalar::Func("strpos".into(), vec![hay, needle], SqlType::Int4),
                    SqlType::Int4,
                )
            }
            Expr::UnaryOp {
                op: op @ (UnaryOperator::Minus | UnaryOperator::Plus),
                expr: inner,
            } if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::PGExp,
                    ..
                }
            ) =>
            {
                // PostgreSQL's unary minus binds tighter than `^` (`-3 ^ 2` is 9); the
                // parser made it `-(3 ^ 2)`: move the sign onto the leftmost operand.
                fn signed(e: &Expr, op: &UnaryOperator) -> Expr {
                    match e {
                        Expr::BinaryOp {
                            left,
                            op: BinaryOperator::PGExp,
                            right,
                        } => Expr::BinaryOp {
                            left: Box::new(signed(left, op)),
                            op: BinaryOperator::PGExp,
                            right: right.clone(),
                        },
                        other => Expr::UnaryOp {
                            op: *op,
                            expr: Box::new(other.clone()),
                        },
                    }
                }
                self.bind(&signed(inner, op), hint)?
            }
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr: inner,
            } if matches!(inner.as_ref(), Expr::Value(v) if matches!(v.value, ast::Value::Number(..))) =>
            {
                // `-2147483648` is one integer literal (an int4), as in PostgreSQL.
                let Expr::Value(v) = inner.as_ref() else {
                    unreachable!("matched above")
                };
                let ast::Value::Number(n, long) = &v.value else {
                    unreachable!("matched above")
                };
                self.bind_value(&ast::Value::Number(format!("-{n}"), *long), hint)?
            }
            Expr::UnaryOp {
                op:
                    op @ (UnaryOperator::BitwiseNot
                    | UnaryOperator::PGSquareRoot
                    | UnaryOperator::PGCubeRoot
                    | UnaryOperator::PGAbs),
                expr,
            } => {
                let (s, t) = self.bind(expr, None)?;
                let (name, ty) = match op {
                    UnaryOperator::BitwiseNot if t.is_int() => ("__bitnot", t),
                    UnaryOperator::BitwiseNot if t == SqlType::Unknown => {
                        ("__bitnot", SqlType::Int4)
                    }
                    UnaryOperator::BitwiseNot => {
                        return Err(Error::new(
                            ErrorKind::UndefinedFunction,
                            format!("operator does not exist: ~ {}", t.name()),
                        ))
                    }
                    // `|/` exists for double precision only: a numeric operand is converted
                    // (so `|/ '-0'::numeric` is 0, not sqrt()'s numeric 0.000000000000000).
                    UnaryOperator::PGSquareRoot => ("sqrt", SqlType::Float8),
                    UnaryOperator::PGCubeRoot => ("cbrt", SqlType::Float8),
                    _ => (
                        "abs",
                        if t == SqlType::Unknown {
                            SqlType::Float8
                        } else {
                            t
                        },
                    ),
                };
                let s = coerce_literal(s, if ty.is_int() { ty } else { SqlType::Float8 })?;
                (Scalar::Func(name.into(), vec![s], ty), ty)
            }
            Expr::UnaryOp { op, expr } => {
                let (s, t) = self.bind(expr, hint)?;
                match op {
                    UnaryOperator::Not => (Scalar::Not(Box::new(s)), SqlType::Bool),
                    UnaryOperator::Minus => match s {
                        Scalar::Const(Datum::Int(i)) => (Scalar::Const(Datum::Int(-i)), t),
                        Scalar::Const(Datum::Numeric(d)) => (Scalar::Const(Datum::Numeric(-d)), t),
                        Scalar::Const(Datum::Float(f)) => (Scalar::Const(Datum::Float(-f)), t),
                        s => (Scalar::Neg(Box::new(s)), t),
                    },
                    UnaryOperator::Plus => (s, t),
                    _ => return Err(Error::unsupported(format!("unsupported operator {op}"))),
                }
            }
            Expr::BinaryOp { left, op, right } => self.bind_binary(left, op, right)?,
            Expr::IsNull(e) => (
                Scalar::IsNull(Box::new(self.bind(e, None)?.0), false),
                SqlType::Bool,
            ),
            Expr::IsNotNull(e) => (
                Scalar::IsNull(Box::new(self.bind(e, None)?.0), true),
                SqlType::Bool,
            ),
            Expr::IsUnknown(inner) | Expr::IsNotUnknown(inner) => {
                let (a, t) = self.bind(inner, Some(SqlType::Bool))?;
                if !matches!(t, SqlType::Bool | SqlType::Unknown) {
                    return Err(Error::mismatch(format!(
                        "argument of IS UNKNOWN must be type boolean, not type {}",
                        t.name()
                    )));
                }
                let negated = matches!(e, Expr::IsNotUnknown(_));
                (
                    Scalar::IsNull(Box::new(coerce_literal(a, SqlType::Bool)?), negated),
                    SqlType::Bool,
                )
            }
            Expr::IsTrue(e) => (
                Scalar::IsBool(Box::new(self.bind(e, Some(SqlType::Bool))?.0), true, false),
                SqlType::Bool,
            ),
            Expr::IsNotTrue(e) => (
                Scalar::IsBool(Box::new(self.bind(e, Some(SqlType::Bool))?.0), true, true),
                SqlType::Bool,
            ),
            Expr::IsFalse(e) => (
                Scalar::IsBool(Box::new(self.bind(e, Some(SqlType::Bool))?.0), false, false),
                SqlType::Bool,
            ),
            Expr::IsNotFalse(e) => (
                Scalar::IsBool(Box::new(self.bind(e, Some(SqlType::Bool))?.0), false, true),
                SqlType::Bool,
            ),
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                let (l, r, _) = self.bind_pair(a, b)?;
                let neg = matches!(e, Expr::IsNotDistinctFrom(..));
                (
                    Scalar::IsDistinct(Box::new(l), Box::new(r), neg),
                    SqlType::Bool,
                )
            }
            Expr::In {
                expr,
                target,
                negated,
                ..
            } => {
                let list = match target {
                    ast::InTarget::List(l) => l,
                    _ => return Err(Error::unsupported("IN (subquery) is not supported yet")),
                };
                let (x, xt) = self.bind(expr, None)?;
                let mut items = Vec::with_capacity(list.len());
                for it in list {
                    let (s, _) = self.bind(it, Some(xt))?;
                    items.push(coerce_literal(s, xt)?);
                }
                (Scalar::InList(Box::new(x), items, *negated), SqlType::Bool)
            }
            Expr::Array(a) => {
                // Items that are arrays themselves (`ARRAY[ARRAY[1,2], ARRAY[3,4]]`, or
                // `ARRAY[[1,2],[3,4]]`) make an array of one more dimension, of the same type.
                let nested = !a.elem.is_empty()
                    && a.elem
                        .iter()
                        .all(|e| matches!(strip_nested(e), Expr::Array(_)));
                let hint_elem = if nested {
                    hint.filter(|h| h.array_elem().is_some())
                } else {
                    hint.and_then(SqlType::array_elem)
                };
                if a.elem.is_empty() && hint_elem.is_none() {
                    return Err(Error::new(
                        ErrorKind::IndeterminateDatatype,
                        "cannot determine type of empty array",
                    )
                    .with_hint(
                        "Explicitly cast to the desired type, for example ARRAY[]::integer[].",
                    ));
                }
                let mut bound = Vec::with_capacity(a.elem.len());
                let mut elem = SqlType::Unknown;
                for e in &a.elem {
                    let (s, t) = self.bind(e, hint_elem)?;
                    let t = if nested {
                        t.array_elem().unwrap_or(SqlType::Unknown)
                    } else {
                        t
                    };
                    elem = common_type(elem, t);
                    bound.push(s);
                }
                let hint_elem = if nested {
                    hint_elem.and_then(SqlType::array_elem)
                } else {
                    hint_elem
                };
                let elem = match (elem, hint_elem) {
                    (SqlType::Unknown, Some(h)) => h,
                    (e, _) => e,
                };
                let ty = elem.array_of().ok_or_else(|| {
                    Error::unsupported(format!("arrays of {} are not supported", elem.name()))
                })?;
                if nested {
                    let items = bound
                        .into_iter()
                        .map(|s| Scalar::Cast(Box::new(s), ty))
                        .collect();
                    (Scalar::Func("__array_nest".into(), items, ty), ty)
                } else {
                    (Scalar::Func("__array".into(), bound, ty), ty)
                }
            }
            Expr::CompoundFieldAccess { root, access_chain } => {
                self.bind_subscripts(root, access_chain)?
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            } => self.bind_quantified(left, compare_op, right, false, hint)?,
            Expr::AllOp {
                left,
                compare_op,
                right,
            } => self.bind_quantified(left, compare_op, right, true, hint)?,
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (x, xt) = self.bind(expr, None)?;
                let lo = coerce_literal(self.bind(low, Some(xt))?.0, xt)?;
                let hi = coerce_literal(self.bind(high, Some(xt))?.0, xt)?;
                (
                    Scalar::Between(Box::new(x), Box::new(lo), Box::new(hi), *negated),
                    SqlType::Bool,
                )
            }
            Expr::Like {
                negated,
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                negated,
                expr,
                pattern,
                escape_char,
                ..
            } => {
                let any = matches!(
                    e,
                    Expr::Like { any: true, .. } | Expr::ILike { any: true, .. }
                );
                if let Some((all, list)) = like_quantifier(pattern, any) {
                    return self.bind(&expand_like_quantified(e, list, all)?, hint);
                }
                let ci = matches!(e, Expr::ILike { .. });
                let (x, _) = self.bind(expr, Some(SqlType::Text))?;
                let (mut p, _) = self.bind(pattern, Some(SqlType::Text))?;
                // `ESCAPE 'c'`: the pattern goes through like_escape(), so LIKE itself
                // only ever knows backslash escapes.
                if let Some(esc) = escape_char {
                    let (esc, _) = self.bind(esc, Some(SqlType::Text))?;
                    p = Scalar::Func("like_escape".into(), vec![p, esc], SqlType::Text);
                }
                (
                    Scalar::Like(Box::new(x), Box::new(p), *negated, ci),
                    SqlType::Bool,
                )
            }
            // `ts AT TIME ZONE zone` is `timezone(zone, ts)`.
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => {
                let (ts, ts_ty) = self.bind(timestamp, None)?;
                let (zone, zone_ty) = self.bind(time_zone, Some(SqlType::Text))?;
                let ty = match crate::sql::scalar_functions::result_type(
                    "timezone",
                    &[zone_ty, ts_ty],
                ) {
                    Some(r) => r?,
                    None => return Err(Error::internal("timezone() is not known")),
                };
                (Scalar::Func("timezone".into(), vec![zone, ts], ty), ty)
            }
            // `x SIMILAR TO p [ESCAPE e]` is `x ~ similar_to_escape(p, e)`.
            Expr::SimilarTo {
                negated,
                expr,
                pattern,
                escape_char,
            } => {
                let (x, _) = self.bind(expr, Some(SqlType::Text))?;
                let (p, _) = self.bind(pattern, Some(SqlType::Text))?;
                let mut args = vec![p];
                if let Some(esc) = escape_char {
                    args.push(self.bind(esc, Some(SqlType::Text))?.0);
                }
                let regex = Scalar::Func("similar_to_escape".into(), args, SqlType::Text);
                let code = Scalar::Const(Datum::Int(i64::from(*negated)));
                (
                    Scalar::Func("__regex".into(), vec![x, regex, code], SqlType::Bool),
                    SqlType::Bool,
                )
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let op = match operand {
                    Some(o) => Some(Box::new(self.bind(o, None)?.0)),
                    None => None,
                };
                let mut whens = Vec::new();
                let mut ty = SqlType::Unknown;
                for cw in conditions {
                    let (c, _) = self.bind(&cw.condition, None)?;
                    let (r, rt) = self.bind(&cw.result, None)?;
                    ty = unify(ty, rt);
                    whens.push((c, r));
                }
                let els = match else_result {
                    Some(e) => {
                        let (s, t) = self.bind(e, None)?;
                        ty = unify(ty, t);
                        Some(Box::new(s))
                    }
                    None => None,
                };
                if ty == SqlType::Unknown {
                    ty = SqlType::Text;
                }
                (Scalar::Case(op, whens, els), ty)
            }
            Expr::Function(f) => self.bind_function(f)?,
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let (a, t) = self.bind(expr, Some(SqlType::Text))?;
                let ty = if t == SqlType::Bytea {
                    SqlType::Bytea
                } else {
                    SqlType::Text
                };
                let mut args = vec![a];
                args.push(match substring_from {
                    Some(f) => self.bind(f, Some(SqlType::Int8))?.0,
                    None => Scalar::Const(Datum::Int(1)),
                });
                if let Some(f) = substring_for {
                    args.push(self.bind(f, Some(SqlType::Int8))?.0);
                }
                (Scalar::Func("substr".into(), args, ty), ty)
            }
            Expr::Extract { field, expr, .. } => {
                let (a, t) = self.bind(expr, None)?;
                if !matches!(
                    t,
                    SqlType::Date
                        | SqlType::Timestamp
                        | SqlType::TimestampTz
                        | SqlType::Interval
                        | SqlType::Unknown
                ) {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!("function extract(unknown, {}) does not exist", t.name()),
                    ));
                }
                let a = coerce_literal(a, SqlType::Timestamp)?;
                let f = Scalar::Const(Datum::Text(field.to_string().to_lowercase()));
                (
                    Scalar::Func("extract".into(), vec![f, a], SqlType::Numeric),
                    SqlType::Numeric,
                )
            }
            Expr::Trim {
                expr,
                trim_where,
                trim_what,
                trim_characters,
            } => {
                let name = match trim_where {
                    Some(ast::TrimWhereField::Leading) => "ltrim",
                    Some(ast::TrimWhereField::Trailing) => "rtrim",
                    _ => "btrim",
                };
                let (a, t) = self.bind(expr, None)?;
                let ty = if t == SqlType::Bytea {
                    SqlType::Bytea
                } else {
                    SqlType::Text
                };
                let mut args = vec![coerce_literal(a, ty)?];
                let what = trim_what
                    .as_deref()
                    .or_else(|| trim_characters.as_ref().and_then(|c| c.first()));
                if let Some(w) = what {
                    let (w, _) = self.bind(w, Some(ty))?;
                    args.push(coerce_literal(w, ty)?);
                }
                (Scalar::Func(name.into(), args, ty), ty)
            }
            Expr::Overlay {
                expr,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                let mut args = vec![
                    coerce_literal(self.bind(expr, Some(SqlType::Text))?.0, SqlType::Text)?,
                    coerce_literal(
                        self.bind(overlay_what, Some(SqlType::Text))?.0,
                        SqlType::Text,
                    )?,
                    self.bind(overlay_from, Some(SqlType::Int4))?.0,
                ];
                if let Some(f) = overlay_for {
                    args.push(self.bind(f, Some(SqlType::Int4))?.0);
                }
                (
                    Scalar::Func("overlay".into(), args, SqlType::Text),
                    SqlType::Text,
                )
            }
            Expr::Ceil { expr, .. } | Expr::Floor { expr, .. } => {
                let (a, t) = self.bind(expr, None)?;
                let name = if matches!(e, Expr::Ceil { .. }) {
                    "ceil"
                } else {
                    "floor"
                };
                let t = if t.is_int() { SqlType::Float8 } else { t };
                (Scalar::Func(name.into(), vec![a], t), t)
            }
            other => {
                return Err(Error::unsupported(format!(
                    "unsupported expression: {other}"
                )));
            }
        })
    }

    fn bind_value(&mut self, v: &ast::Value, hint: Option<SqlType>) -> Result<(Scalar, SqlType)> {
        Ok(match v {
            ast::Value::Number(n, _) => {
                if let Ok(i) = n.parse::<i64>() {
                    let t = if i32::try_from(i).is_ok() {
                        SqlType::Int4
                    } else {
                        SqlType::Int8
                    };
                    (Scalar::Const(Datum::Int(i)), t)
                } else {
                    let d = n
                        .parse::<Decimal>()
                        .or_else(|_| Decimal::from_scientific(n))
                        .map_err(|_| {
                            Error::out_of_range(format!("numeric literal {n} is out of range"))
                        })?;
                    (Scalar::Const(Datum::Numeric(d)), SqlType::Numeric)
                }
            }
            ast::Value::SingleQuotedString(s)
            | ast::Value::EscapedStringLiteral(s)
            | ast::Value::UnicodeStringLiteral(s) => {
                (Scalar::Const(Datum::Text(s.clone())), SqlType::Unknown)
            }
            ast::Value::DollarQuotedString(d) => (
                Scalar::Const(Datum::Text(d.value.clone())),
                SqlType::Unknown,
            ),
            ast::Value::SingleQuotedByteStringLiteral(s) => (
                Scalar::Const(Datum::Bytes(s.as_bytes().to_vec())),
                SqlType::Bytea,
            ),
            ast::Value::Boolean(b) => (Scalar::Const(Datum::Bool(*b)), SqlType::Bool),
            ast::Value::Null => (Scalar::Const(Datum::Null), SqlType::Unknown),
            ast::Value::Placeholder(p) => {
                let n: usize = p
                    .trim_start_matches('$')
                    .parse()
                    .map_err(|_| Error::syntax(format!("invalid parameter {p}")))?;
                if n == 0 || n > 65535 {
                    return Err(Error::syntax(format!("invalid parameter {p}")));
                }
                if self.params.len() < n {
                    self.params.resize(n, SqlType::Unknown);
                }
                if self.params[n - 1] == SqlType::Unknown {
                    if let Some(h) = hint {
                        self.params[n - 1] = h;
                    }
                }
                let t = self.params[n - 1];
                (Scalar::Param(n - 1), t)
            }
            other => return Err(Error::unsupported(format!("unsupported literal {other}"))),
        })
    }

    fn bind_pair(&mut self, a: &Expr, b: &Expr) -> Result<(Scalar, Scalar, SqlType)> {
        let (mut l, mut lt) = self.bind(a, None)?;
        let (mut r, mut rt) = self.bind(
            b,
            if lt == SqlType::Unknown {
                None
            } else {
                Some(lt)
            },
        )?;
        if lt == SqlType::Unknown && rt != SqlType::Unknown {
            // Re-bind the left side with the right side's type as the hint (parameters).
            let (l2, lt2) = self.bind(a, Some(rt))?;
            l = l2;
            lt = lt2;
        }
        if unknown_literal(&l) && rt != SqlType::Unknown && !rt.is_string() {
            l = coerce_literal(l, rt)?;
            lt = rt;
        }
        if unknown_literal(&r) && lt != SqlType::Unknown && !lt.is_string() {
            r = coerce_literal(r, lt)?;
            rt = lt;
        }
        self.last_pair = (lt, rt);
        Ok((l, r, unify(lt, rt)))
    }

    fn bind_binary(
        &mut self,
        left: &Expr,
        op: &BinaryOperator,
        right: &Expr,
    ) -> Result<(Scalar, SqlType)> {
        if let Some(code) = crate::sql::pg_catalog::regex_op(op) {
            let (l, _) = self.bind(left, Some(SqlType::Text))?;
            let (r, _) = self.bind(right, Some(SqlType::Text))?;
            let args = vec![l, r, Scalar::Const(Datum::Int(code))];
            return Ok((
                Scalar::Func("__regex".into(), args, SqlType::Bool),
                SqlType::Bool,
            ));
        }
        if let Some(bound) = self.bind_bit_or_power(left, op, right)? {
            return Ok(bound);
        }
        if *op == BinaryOperator::PGOverlap {
            let (l, lt) = self.bind(left, None)?;
            let (r, rt) = self.bind(right, None)?;
            return array_containment("__array_overlap", l, lt, r, rt, "&&");
        }
        if let Some(bound) = self.bind_jsonb_op(left, op, right)? {
            return Ok(bound);
        }
        if let Some(expanded) = row_comparison(left, op, right)? {
            return self.bind(&expanded, Some(SqlType::Bool));
        }
        let bop = match op {
            BinaryOperator::Plus => BinOp::Add,
            BinaryOperator::Minus => BinOp::Sub,
            BinaryOperator::Multiply => BinOp::Mul,
            BinaryOperator::Divide => BinOp::Div,
            BinaryOperator::Modulo => BinOp::Mod,
            BinaryOperator::Eq => BinOp::Eq,
            BinaryOperator::NotEq => BinOp::NotEq,
            BinaryOperator::Lt => BinOp::Lt,
            BinaryOperator::LtEq => BinOp::LtEq,
            BinaryOperator::Gt => BinOp::Gt,
            BinaryOperator::GtEq => BinOp::GtEq,
            BinaryOperator::And => BinOp::And,
            BinaryOperator::Or => BinOp::Or,
            BinaryOperator::StringConcat => BinOp::Concat,
            other => return Err(Error::unsupported(format!("unsupported operator {other}"))),
        };
        let (l, r, t) = match bop {
            BinOp::And | BinOp::Or => {
                let (l, lt) = self.bind(left, Some(SqlType::Bool))?;
                let (r, rt) = self.bind(right, Some(SqlType::Bool))?;
                for (s, t) in [(&l, lt), (&r, rt)] {
                    if !matches!(t, SqlType::Bool | SqlType::Unknown) {
                        let _ = s;
                        return Err(Error::mismatch(format!(
                            "argument of {} must be type boolean, not type {}",
                            if bop == BinOp::And { "AND" } else { "OR" },
                            t.name()
                        )));
                    }
                }
                (
                    coerce_literal(l, SqlType::Bool)?,
                    coerce_literal(r, SqlType::Bool)?,
                    SqlType::Bool,
                )
            }
            BinOp::Concat => {
                let (l, lt) = self.bind(left, Some(SqlType::Text))?;
                let (r, rt) = self.bind(right, Some(SqlType::Text))?;
                if lt == SqlType::Jsonb || rt == SqlType::Jsonb {
                    let args = vec![
                        coerce_literal(l, SqlType::Jsonb)?,
                        coerce_literal(r, SqlType::Jsonb)?,
                    ];
                    if !matches!(lt, SqlType::Jsonb | SqlType::Unknown)
                        || !matches!(rt, SqlType::Jsonb | SqlType::Unknown)
                    {
                        return Err(Error::new(
                            ErrorKind::UndefinedFunction,
                            format!("operator does not exist: {} || {}", lt.name(), rt.name()),
                        ));
                    }
                    return Ok((
                        Scalar::Func("__jsonb_concat".into(), args, SqlType::Jsonb),
                        SqlType::Jsonb,
                    ));
                }
                if is_array(lt) || is_array(rt) {
                    return array_concat(l, lt, r, rt);
                }
                let stringy = |t: SqlType| {
                    t.is_string()
                        || matches!(t, SqlType::Unknown | SqlType::Bytea)
                        || t.array_elem().is_some()
                };
                if !stringy(lt) && !stringy(rt) {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!("operator does not exist: {} || {}", lt.name(), rt.name()),
                    ));
                }
                let t = if lt == SqlType::Bytea && rt == SqlType::Bytea {
                    SqlType::Bytea
                } else {
                    SqlType::Text
                };
                (l, r, t)
            }
            _ => self.bind_pair(left, right)?,
        };
        let result = match bop {
            BinOp::Eq
            | BinOp::NotEq
            | BinOp::Lt
            | BinOp::LtEq
            | BinOp::Gt
            | BinOp::GtEq
            | BinOp::And
            | BinOp::Or => {
                if !matches!(bop, BinOp::And | BinOp::Or) {
                    check_comparable(&l, &r, t)?;
                    let (lt, rt) = self.last_pair;
                    if is_array(lt) && is_array(rt) {
                        return array_comparison(bop, l, lt, r, rt);
                    }
                }
                SqlType::Bool
            }
            BinOp::Concat => t,
            _ => {
                if let Some(ty) = datetime_arith_type(bop, self.last_pair) {
                    if ty == SqlType::Unknown {
                        let (lt, rt) = self.last_pair;
                        return Err(Error::new(
                            ErrorKind::UndefinedFunction,
                            format!("operator does not exist: {} {op} {}", lt.name(), rt.name()),
                        ));
                    }
                    return Ok((fold(Scalar::Binary(bop, Box::new(l), Box::new(r), ty))?, ty));
                }
                if t == SqlType::Unknown || t.is_string() {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!("operator does not exist: {} {} {}", t.name(), op, t.name()),
                    ));
                }
                // PostgreSQL has no `%` for real or double precision (nor for a pair
                // that would be computed in one, such as numeric % real).
                if bop == BinOp::Mod && t.is_float() {
                    let (lt, rt) = self.last_pair;
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!("operator does not exist: {} {op} {}", lt.name(), rt.name()),
                    ));
                }
                if !t.is_numeric_family()
                    && !matches!(t, SqlType::Date | SqlType::Timestamp | SqlType::TimestampTz)
                {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!("operator does not exist: {} {op} {}", t.name(), t.name()),
                    ));
                }
                match (bop, self.last_pair) {
                    // date - date is a number of days.
                    (BinOp::Sub, (SqlType::Date, SqlType::Date)) => SqlType::Int4,
                    // integer + date is a date, as date + integer.
                    (BinOp::Add, (l, SqlType::Date)) if l.is_int() => SqlType::Date,
                    _ => t,
                }
            }
        };
        Ok((
            fold(Scalar::Binary(bop, Box::new(l), Box::new(r), result))?,
            result,
        ))
    }

    /// Binds the integer bit operators (`&`, `|`, `#`, `<<`, `>>`) and `^` (power);
    /// `None` for any other operator.
    fn bind_bit_or_power(
        &mut self,
        left: &Expr,
        op: &BinaryOperator,
        right: &Expr,
    ) -> Result<Option<(Scalar, SqlType)>> {
        let name = match op {
            BinaryOperator::BitwiseAnd => "__bitand",
            BinaryOperator::BitwiseOr => "__bitor",
            BinaryOperator::PGBitwiseXor => "__bitxor",
            BinaryOperator::PGBitwiseShiftLeft => "__shl",
            BinaryOperator::PGBitwiseShiftRight => "__shr",
            BinaryOperator::PGExp | BinaryOperator::BitwiseXor => "power",
            _ => return Ok(None),
        };
        let (l, lt) = self.bind(left, None)?;
        let (r, rt) = self.bind(right, None)?;
        let known = |t: SqlType| {
            if t == SqlType::Unknown {
                SqlType::Int4
            } else {
                t
            }
        };
        let (lt, rt) = (known(lt), known(rt));
        if name == "power" {
            if !(lt.is_numeric_family() && rt.is_numeric_family()) {
                return Err(Error::new(
                    ErrorKind::UndefinedFunction,
                    format!("operator does not exist: {} ^ {}", lt.name(), rt.name()),
                ));
            }
            let exact = !lt.is_float()
                && !rt.is_float()
                && (lt == SqlType::Numeric || rt == SqlType::Numeric);
            let l = coerce_literal(l, SqlType::Float8)?;
            let r = coerce_literal(r, SqlType::Float8)?;
            let pow = Scalar::Func("power".into(), vec![l, r], SqlType::Float8);
            return Ok(Some(if exact {
                (
                    Scalar::Cast(Box::new(pow), SqlType::Numeric),
                    SqlType::Numeric,
                )
            } else {
                (pow, SqlType::Float8)
            }));
        }
        if !lt.is_int() || !rt.is_int() {
            return Err(Error::new(
                ErrorKind::UndefinedFunction,
                format!("operator does not exist: {} {op} {}", lt.name(), rt.name()),
            ));
        }
        let ty = if matches!(name, "__shl" | "__shr") {
            lt
        } else {
            unify(lt, rt)
        };
        let l = coerce_literal(l, lt)?;
        let r = coerce_literal(r, rt)?;
        Ok(Some((Scalar::Func(name.into(), vec![l, r], ty), ty)))
    }

    /// Binds the jsonb operators `->`, `->>`, `#>`, `#>>`, `@>`, `<@`, `?`; `None` for
    /// any other operator.
    fn bind_jsonb_op(
        &mut self,
        left: &Expr,
        op: &BinaryOperator,
        right: &Expr,
    ) -> Result<Option<(Scalar, SqlType)>> {
        let (name, right_ty, ty) = match op {
            BinaryOperator::Arrow => ("__jsonb_get", SqlType::Text, SqlType::Jsonb),
            BinaryOperator::LongArrow => ("__jsonb_get_text", SqlType::Text, SqlType::Text),
            BinaryOperator::HashArrow => ("__jsonb_path", SqlType::TextArray, SqlType::Jsonb),
            BinaryOperator::HashLongArrow => {
                ("__jsonb_path_text", SqlType::TextArray, SqlType::Text)
            }
            BinaryOperator::AtArrow => ("__jsonb_contains", SqlType::Jsonb, SqlType::Bool),
            BinaryOperator::ArrowAt => ("__jsonb_contained", SqlType::Jsonb, SqlType::Bool),
            BinaryOperator::Question => ("__jsonb_has_key", SqlType::Text, SqlType::Bool),
            _ => return Ok(None),
        };
        let (l, lt) = self.bind(left, Some(SqlType::Jsonb))?;
        let (r, rt) = self.bind(right, (!is_array(lt)).then_some(right_ty))?;
        if is_array(lt) || is_array(rt) {
            match op {
                BinaryOperator::AtArrow => {
                    return array_containment("__array_contains", l, lt, r, rt, "@>").map(Some)
                }
                BinaryOperator::ArrowAt => {
                    return array_containment("__array_contains", r, rt, l, lt, "<@").map(Some)
                }
                _ => {}
            }
        }
        let right_ok = match right_ty {
            SqlType::Text => {
                rt.is_string() || rt == SqlType::Unknown || {
                    matches!(op, BinaryOperator::Arrow | BinaryOperator::LongArrow) && rt.is_int()
                }
            }
            t => rt == t || rt == SqlType::Unknown,
        };
        if !matches!(lt, SqlType::Jsonb | SqlType::Unknown) || !right_ok {
            return Err(Error::new(
                ErrorKind::UndefinedFunction,
                format!("operator does not exist: {} {op} {}", lt.name(), rt.name()),
            ));
        }
        let l = coerce_literal(l, SqlType::Jsonb)?;
        let r = coerce_literal(r, right_ty)?;
        Ok(Some((Scalar::Func(name.into(), vec![l, r], ty), ty)))
    }

    /// Binds `root[i][j]` (an element) or `root[lo:hi]…` (a slice: once one subscript is a
    /// slice, every one is, a lone `i` meaning `1:i`).
    fn bind_subscripts(
        &mut self,
        root: &Expr,
        chain: &[ast::AccessExpr],
    ) -> Result<(Scalar, SqlType)> {
        let (arr, ty) = self.bind(root, None)?;
        let elem = match ty.array_elem() {
            Some(e) if !ty.is_vector() => e,
            _ => {
                return Err(Error::mismatch(format!(
                    "cannot subscript type {} because it does not support subscripting",
                    ty.name()
                )))
            }
        };
        let mut subs = Vec::with_capacity(chain.len());
        for a in chain {
            match a {
                ast::AccessExpr::Subscript(s) => subs.push(s),
                ast::AccessExpr::Dot(e) => {
                    return Err(Error::unsupported(format!(
                        "field selection .{e} is not supported"
                    )))
                }
            }
        }
        let slice = subs
            .iter()
            .any(|s| matches!(s, ast::Subscript::Slice { .. }));
        let mut args = vec![arr];
        if !slice {
            for s in subs {
                if let ast::Subscript::Index { index } = s {
                    args.push(self.bind_subscript(index)?);
                }
            }
            return Ok((Scalar::Func("__array_subscript".into(), args, elem), elem));
        }
        let mut mask = 0i64;
        args.push(Scalar::Const(Datum::Int(0)));
        for s in subs {
            let (lo, hi) = match s {
                ast::Subscript::Index { index } => (None, Some(index)),
                ast::Subscript::Slice {
                    lower_bound,
                    upper_bound,
                    stride,
                } => {
                    if stride.is_some() {
                        return Err(Error::syntax("syntax error at or near \":\""));
                    }
                    (lower_bound.as_ref(), upper_bound.as_ref())
                }
            };
            for b in [lo, hi] {
                let bit = args.len() - 2;
                if bit >= 62 {
                    return Err(Error::new(
                        ErrorKind::ProgramLimitExceeded,
                        "number of array dimensions exceeds the maximum allowed (6)",
                    ));
                }
                match b {
                    Some(e) => {
                        mask |= 1 << bit;
                        args.push(self.bind_subscript(e)?);
                    }
                    None => args.push(Scalar::Const(Datum::Int(0))),
                }
            }
        }
        args[1] = Scalar::Const(Datum::Int(mask));
        Ok((Scalar::Func("__array_slice".into(), args, ty), ty))
    }

    fn bind_subscript(&mut self, e: &Expr) -> Result<Scalar> {
        let (s, t) = self.bind(e, Some(SqlType::Int4))?;
        if !(t.is_int() || t == SqlType::Unknown) {
            return Err(Error::mismatch(format!(
                "array subscript must have type integer, not {}",
                t.name()
            )));
        }
        coerce_literal(s, SqlType::Int4)
    }

    /// Binds `x op ANY | ALL (right)`: over an `ARRAY[…]` constructor as the expansion
    /// [`quantified`] writes, over any other array value as one `__array_quantified` call.
    fn bind_quantified(
        &mut self,
        left: &Expr,
        op: &BinaryOperator,
        right: &Expr,
        all: bool,
        hint: Option<SqlType>,
    ) -> Result<(Scalar, SqlType)> {
        let inner = strip_nested(right);
        let cmp = match op {
            BinaryOperator::Eq => Some(CmpOp::Eq),
            BinaryOperator::NotEq => Some(CmpOp::NotEq),
            BinaryOperator::Lt => Some(CmpOp::Lt),
            BinaryOperator::LtEq => Some(CmpOp::LtEq),
            BinaryOperator::Gt => Some(CmpOp::Gt),
            BinaryOperator::GtEq => Some(CmpOp::GtEq),
            _ => None,
        };
        if let Expr::Array(a) = inner {
            // ARRAY[NULL, …] is a text[]: comparing a number with it has no operator.
            let is_null =
                |e: &Expr| matches!(strip_nested(e), Expr::Value(v) if v.value == ast::Value::Null);
            if !a.elem.is_empty() && a.elem.iter().all(is_null) {
                let (_, lt) = self.bind(left, None)?;
                if !(lt.is_string() || lt == SqlType::Unknown) {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!("operator does not exist: {} {op} text", lt.name()),
                    ));
                }
            }
            return self.bind(&quantified(left, op, right, all)?, hint);
        }
        let Some(cmp) = cmp.filter(|_| !matches!(inner, Expr::Subquery(_))) else {
            return self.bind(&quantified(left, op, right, all)?, hint);
        };
        let (x, xt) = self.bind(left, None)?;
        let (a, at) = self.bind(right, xt.array_of())?;
        let at = if at == SqlType::Unknown {
            xt.array_of().unwrap_or(SqlType::TextArray)
        } else {
            at
        };
        let elem = match at.array_elem() {
            Some(e) if !at.is_vector() => e,
            _ => {
                return Err(Error::new(
                    ErrorKind::WrongObjectType,
                    "op ANY/ALL (array) requires array on right side",
                ))
            }
        };
        if !comparable_types(xt, elem) {
            return Err(Error::new(
                ErrorKind::UndefinedFunction,
                format!(
                    "operator does not exist: {} {op} {}",
                    xt.name(),
                    elem.name()
                ),
            ));
        }
        let args = vec![
            coerce_literal(x, elem)?,
            coerce_literal(a, at)?,
            Scalar::Const(Datum::Int(cmp as i64)),
            Scalar::Const(Datum::Int(i64::from(all))),
            Scalar::Const(Datum::Int(i64::from(elem.tag()))),
        ];
        Ok((
            Scalar::Func("__array_quantified".into(), args, SqlType::Bool),
            SqlType::Bool,
        ))
    }

    /// Binds an aggregate call's argument and picks its function and result type.
    fn bind_agg_call(
        &mut self,
        name: &str,
        args: &[Expr],
        star: bool,
        distinct: bool,
        order_by: &[ast::OrderByExpr],
    ) -> Result<AggCall> {
        // Only this call's own arguments are over the groups (an aggregate inside them
        // reads the input rows).
        let over_groups = std::mem::take(&mut self.window_over_groups);
        let mut delimiter = None;
        let (func, arg, arg_ty) = if name == "count" && (star || args.is_empty()) {
            (AggFunc::CountStar, None, SqlType::Int8)
        } else if name == "string_agg" {
            if args.len() != 2 {
                return Err(Error::new(
                    ErrorKind::UndefinedFunction,
                    "function string_agg takes two arguments",
                ));
            }
            self.in_agg = !over_groups;
            let value = self.bind(&args[0], Some(SqlType::Text));
            let delim = self.bind(&args[1], Some(SqlType::Text));
            self.in_agg = false;
            let ((v, vt), (d, dt)) = (value?, delim?);
            let bytes = vt == SqlType::Bytea;
            for t in [vt, dt] {
                if !(t.is_string() || t == SqlType::Unknown || (bytes && t == SqlType::Bytea)) {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!(
                            "function string_agg({}, {}) does not exist",
                            vt.name(),
                            dt.name()
                        ),
                    ));
                }
            }
            let ty = if bytes { SqlType::Bytea } else { SqlType::Text };
            delimiter = Some(coerce_literal(d, ty)?);
            (AggFunc::StringAgg, Some(coerce_literal(v, ty)?), ty)
        } else if name == "jsonb_object_agg" {
            if args.len() != 2 {
                return Err(Error::new(
                    ErrorKind::UndefinedFunction,
                    "function jsonb_object_agg takes two arguments",
                ));
            }
            self.in_agg = !over_groups;
            let key = self.bind(&args[0], Some(SqlType::Text));
            let value = self.bind(&args[1], None);
            self.in_agg = false;
            let ((k, kt), (v, vt)) = (key?, value?);
            delimiter = Some(if kt == SqlType::Unknown {
                coerce_literal(k, SqlType::Text)?
            } else {
                Scalar::Cast(Box::new(k), SqlType::Text)
            });
            (AggFunc::JsonbObjectAgg, Some(to_jsonb(v, vt)?), vt)
        } else {
            if args.len() != 1 {
                return Err(Error::new(
                    ErrorKind::UndefinedFunction,
                    format!("function {name} takes one argument"),
                ));
            }
            self.in_agg = !over_groups;
            let bound = self.bind(&args[0], None);
            self.in_agg = false;
            let (s, t) = bound?;
            let func = match name {
                "count" => AggFunc::Count,
                "sum" => AggFunc::Sum,
                "min" => AggFunc::Min,
                "max" => AggFunc::Max,
                "avg" => AggFunc::Avg,
                "bool_and" | "every" => AggFunc::BoolAnd,
                "array_agg" => AggFunc::ArrayAgg,
                "jsonb_agg" => AggFunc::JsonbAgg,
                "stddev" | "stddev_samp" => AggFunc::Variance {
                    population: false,
                    root: true,
                },
                "stddev_pop" => AggFunc::Variance {
                    population: true,
                    root: true,
                },
                "variance" | "var_samp" => AggFunc::Variance {
                    population: false,
                    root: false,
                },
                "var_pop" => AggFunc::Variance {
                    population: true,
                    root: false,
                },
                _ => AggFunc::BoolOr,
            };
            let s = if func == AggFunc::JsonbAgg {
                to_jsonb(s, t)?
            } else {
                s
            };
            (func, Some(s), t)
        };
        let ty = match func {
            AggFunc::Count | AggFunc::CountStar => SqlType::Int8,
            AggFunc::Sum => match arg_ty {
                SqlType::Int2 | SqlType::Int4 => SqlType::Int8,
                SqlType::Int8 | SqlType::Numeric => SqlType::Numeric,
                SqlType::Float4 | SqlType::Float8 => SqlType::Float8,
                SqlType::Unknown => SqlType::Numeric,
                t => {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!("function sum({}) does not exist", t.name()),
                    ))
                }
            },
            AggFunc::Avg => match arg_ty {
                SqlType::Float4 | SqlType::Float8 => SqlType::Float8,
                t if t.is_numeric_family() || t == SqlType::Unknown => SqlType::Numeric,
                t => {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!("function avg({}) does not exist", t.name()),
                    ))
                }
            },
            AggFunc::BoolAnd | AggFunc::BoolOr => SqlType::Bool,
            AggFunc::StringAgg => arg_ty,
            AggFunc::JsonbAgg | AggFunc::JsonbObjectAgg => SqlType::Jsonb,
            AggFunc::Variance { .. } => match arg_ty {
                SqlType::Float4 | SqlType::Float8 | SqlType::Unknown => SqlType::Float8,
                t if t.is_numeric_family() => SqlType::Numeric,
                t => {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!("function {name}({}) does not exist", t.name()),
                    ))
                }
            },
            AggFunc::ArrayAgg => arg_ty.array_of().ok_or_else(|| {
                Error::new(
                    ErrorKind::UndefinedFunction,
                    format!("function array_agg({}) is not supported", arg_ty.name()),
                )
            })?,
            AggFunc::Min | AggFunc::Max => {
                if arg_ty == SqlType::Unknown {
                    SqlType::Text
                } else {
                    arg_ty
                }
            }
        };
        if !order_by.is_empty() && !func.keeps_items() {
            return Err(Error::unsupported(format!("ORDER BY in {name}()")));
        }
        let mut order = Vec::with_capacity(order_by.len());
        for o in order_by {
            self.in_agg = !over_groups;
            let bound = self.bind(&o.expr, None);
            self.in_agg = false;
            let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
            order.push((bound?.0, desc, o.options.nulls_first.unwrap_or(desc)));
        }
        Ok(AggCall {
            func,
            arg,
            distinct,
            ty,
            arg_ty,
            order,
            filter: None,
            delimiter,
        })
    }

    /// Binds an aggregate's `FILTER (WHERE …)` condition, over the input row.
    fn bind_agg_filter(&mut self, filter: &Expr) -> Result<Scalar> {
        self.in_agg = true;
        let bound = self.bind(filter, Some(SqlType::Bool));
        self.in_agg = false;
        let (s, t) = bound?;
        if !matches!(t, SqlType::Bool | SqlType::Unknown) {
            return Err(Error::new(
                ErrorKind::DatatypeMismatch,
                format!(
                    "argument of FILTER must be type boolean, not type {}",
                    t.name()
                ),
            ));
        }
        Ok(s)
    }

    /// Binds `name(args) OVER (…)`.
    fn bind_window(
        &mut self,
        name: &str,
        args: &[Expr],
        star: bool,
        distinct: bool,
        over: &ast::WindowType,
    ) -> Result<(Scalar, SqlType)> {
        if self.windows.is_none() {
            return Err(Error::new(
                ErrorKind::Windowing,
                format!("window functions are not allowed here ({name})"),
            ));
        }
        let spec = match over {
            ast::WindowType::WindowSpec(s) if s.window_name.is_none() => s,
            _ => return Err(Error::unsupported("named windows")),
        };
        let mut partition = Vec::new();
        for e in &spec.partition_by {
            partition.push(self.bind(e, None)?.0);
        }
        let mut order = Vec::new();
        for o in &spec.order_by {
            let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
            let nulls_first = o.options.nulls_first.unwrap_or(desc);
            order.push((self.bind(&o.expr, None)?.0, desc, nulls_first));
        }
        let frame = match &spec.window_frame {
            None if order.is_empty() => WindowFrame::Partition,
            None => WindowFrame::RangeToCurrent,
            Some(f) => {
                let unbounded_start =
                    matches!(f.start_bound, ast::WindowFrameBound::Preceding(None));
                match (&f.units, unbounded_start, &f.end_bound) {
                    (_, true, Some(ast::WindowFrameBound::Following(None))) => WindowFrame::Partition,
                    (ast::WindowFrameUnits::Rows, true, None | Some(ast::WindowFrameBound::CurrentRow)) => {
                        WindowFrame::RowsToCurrent
                    }
                    (ast::WindowFrameUnits::Range, true, None | Some(ast::WindowFrameBound::CurrentRow)) => {
                        if order.is_empty() {
                            WindowFrame::Partition
                        } else {
                            WindowFrame::RangeToCurrent
                        }
                    }
                    _ => {
                        return Err(Error::unsupported(
                            "window frames other than from UNBOUNDED PRECEDING to CURRENT ROW or UNBOUNDED FOLLOWING",
                        ))
                    }
                }
            }
        };
        let nargs = |n: std::ops::RangeInclusive<usize>| -> Result<()> {
            if n.contains(&args.len()) {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorKind::UndefinedFunction,
                    format!("function {name} does not take {} arguments", args.len()),
                ))
            }
        };
        let mut bound = Vec::new();
        let (func, ty) = match name {
            "row_number" | "rank" | "dense_rank" | "percent_rank" | "cume_dist" => {
                nargs(0..=0)?;
                match name {
                    "row_number" => (WindowFunc::RowNumber, SqlType::Int8),
                    "rank" => (WindowFunc::Rank, SqlType::Int8),
                    "dense_rank" => (WindowFunc::DenseRank, SqlType::Int8),
                    "percent_rank" => (WindowFunc::PercentRank, SqlType::Float8),
                    _ => (WindowFunc::CumeDist, SqlType::Float8),
                }
            }
            "lag" | "lead" => {
                nargs(1..=3)?;
                let (v, t) = self.bind(&args[0], None)?;
                bound.push(v);
                if let Some(o) = args.get(1) {
                    bound.push(self.bind(o, Some(SqlType::Int8))?.0);
                } else {
                    bound.push(Scalar::Const(Datum::Int(1)));
                }
                if let Some(d) = args.get(2) {
                    bound.push(coerce_literal(self.bind(d, Some(t))?.0, t)?);
                }
                let f = if name == "lag" {
                    WindowFunc::Lag
                } else {
                    WindowFunc::Lead
                };
                (f, t)
            }
            "ntile" => {
                nargs(1..=1)?;
                bound.push(self.bind(&args[0], Some(SqlType::Int4))?.0);
                (WindowFunc::Ntile, SqlType::Int4)
            }
            "nth_value" => {
                nargs(2..=2)?;
                let (v, t) = self.bind(&args[0], None)?;
                bound.push(v);
                bound.push(self.bind(&args[1], Some(SqlType::Int4))?.0);
                (WindowFunc::NthValue, t)
            }
            "first_value" | "last_value" => {
                nargs(1..=1)?;
                let (v, t) = self.bind(&args[0], None)?;
                bound.push(v);
                let f = if name == "first_value" {
                    WindowFunc::FirstValue
                } else {
                    WindowFunc::LastValue
                };
                (f, t)
            }
            n if is_agg_name(n) => {
                if distinct {
                    return Err(Error::unsupported(
                        "DISTINCT is not implemented for window functions",
                    ));
                }
                // Over the groups of a grouped query, the arguments are expressions of
                // the groups: `sum(sum(x)) OVER (…)`.
                self.window_over_groups = self.grouped.is_some();
                let call = self.bind_agg_call(n, args, star, false, &[]);
                self.window_over_groups = false;
                let call = call?;
                let ty = call.ty;
                (WindowFunc::Agg(call), ty)
            }
            other => {
                return Err(Error::new(
                    ErrorKind::UndefinedFunction,
                    format!("window function {other} does not exist"),
                ))
            }
        };
        let windows = self.windows.as_mut().unwrap();
        windows.push(WindowCall {
            func,
            args: bound,
            partition,
            order,
            frame,
        });
        Ok((Scalar::WindowRef(windows.len() - 1), ty))
    }

    /// `t.*` as a jsonb argument: `jsonb_build_object('c1', t.c1, …)` over the columns
    /// `t.*` lists, which is what PostgreSQL's `to_jsonb(t.*)` of the row gives.
    fn row_as_jsonb(&self, t: &ast::ObjectName) -> Result<Expr> {
        let parts: Vec<String> = t.0.iter().map(|p| p.to_string()).collect();
        let (schema, table) = match parts.as_slice() {
            [table] => (None, table.as_str()),
            [schema, table] => (Some(schema.as_str()), table.as_str()),
            _ => return Err(Error::unsupported(format!("{t}.* here"))),
        };
        let unquote = |s: &str| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => s.to_lowercase(),
        };
        let (schema, table) = (schema.map(unquote), unquote(table));
        let mut cols: Vec<&ScopeColumn> = self
            .columns
            .iter()
            .filter(|c| !c.hidden && c.qualified_by(schema.as_deref(), &table))
            .collect();
        if cols.is_empty() {
            return Err(Error::new(
                ErrorKind::UndefinedTable,
                format!("missing FROM-clause entry for table \"{table}\""),
            ));
        }
        cols.sort_by_key(|c| c.star_order);
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let pairs: Vec<String> = cols
            .iter()
            .map(|c| {
                format!(
                    "'{}', {}.{}",
                    c.name.replace('\'', "''"),
                    quote(&table),
                    quote(&c.name)
                )
            })
            .collect();
        crate::sql::catalog::parse_default(&format!("jsonb_build_object({})", pairs.join(", ")))
    }

    /// `ROW(a, b, …)` or `(a, b, …)` as a value: an anonymous record, printed as
    /// PostgreSQL's record output (`__row`, whose first argument lists the field types).
    fn bind_row(&mut self, items: &[Expr]) -> Result<(Scalar, SqlType)> {
        let mut args = vec![Scalar::Const(Datum::Null)];
        let mut tags = Vec::with_capacity(items.len());
        for e in items {
            let (s, t) = self.bind(e, None)?;
            let t = if t == SqlType::Unknown {
                SqlType::Text
            } else {
                t
            };
            tags.push(t.tag().to_string());
            args.push(coerce_literal(s, t)?);
        }
        args[0] = Scalar::Const(Datum::Text(tags.join(",")));
        Ok((
            Scalar::Func("__row".into(), args, SqlType::Record),
            SqlType::Record,
        ))
    }

    fn bind_function(&mut self, f: &ast::Function) -> Result<(Scalar, SqlType)> {
        let mut name = object_name(&f.name);
        // SQL's spelling of current_database() (written without parentheses).
        if name == "current_catalog" {
            name = "current_database".into();
        }
        let mut order_by: Vec<ast::OrderByExpr> = Vec::new();
        let (args, distinct, star) = match &f.args {
            ast::FunctionArguments::None => (Vec::new(), false, false),
            ast::FunctionArguments::List(l) => {
                for c in &l.clauses {
                    match c {
                        ast::FunctionArgumentClause::OrderBy(o) => {
                            order_by.extend(o.iter().cloned())
                        }
                        other => return Err(Error::unsupported(format!("{other} in {name}()"))),
                    }
                }
                let distinct = matches!(
                    l.duplicate_treatment,
                    Some(ast::DuplicateTreatment::Distinct)
                );
                let mut args = Vec::new();
                let mut star = false;
                for a in &l.args {
                    match a {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                            args.push(e.clone())
                        }
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => star = true,
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::QualifiedWildcard(t))
                            if matches!(name.as_str(), "to_jsonb" | "jsonb_agg") =>
                        {
                            args.push(self.row_as_jsonb(t)?)
                        }
                        _ => {
                            return Err(Error::unsupported(format!(
                                "unsupported argument in {name}()"
                            )))
                        }
                    }
                }
                (args, distinct, star)
            }
            ast::FunctionArguments::Subquery(_) => {
                return Err(Error::unsupported("subquery arguments"))
            }
        };
        if f.filter.is_some() && !is_agg_name(&name) {
            return Err(Error::new(
                ErrorKind::WrongObjectType,
                format!("FILTER specified, but {name} is not an aggregate function"),
            ));
        }
        if let Some(over) = &f.over {
            let (s, t) = self.bind_window(&name, &args, star, distinct, over)?;
            if let Some(filter) = &f.filter {
                let bound = self.bind_agg_filter(filter)?;
                if let (Scalar::WindowRef(i), Some(windows)) = (&s, self.windows.as_mut()) {
                    if let WindowFunc::Agg(call) = &mut windows[*i].func {
                        call.filter = Some(bound);
                    }
                }
            }
            return Ok((s, t));
        }
        if is_agg_name(&name) {
            if self.in_agg {
                return Err(Error::new(
                    ErrorKind::Grouping,
                    "aggregate function calls cannot be nested",
                ));
            }
            if self.aggs.is_none() {
                return Err(Error::new(
                    ErrorKind::Grouping,
                    format!("aggregate functions are not allowed here ({name})"),
                ));
            }
            let mut call = self.bind_agg_call(&name, &args, star, distinct, &order_by)?;
            if let Some(filter) = &f.filter {
                call.filter = Some(self.bind_agg_filter(filter)?);
            }
            let ty = call.ty;
            let aggs = self.aggs.as_mut().unwrap();
            aggs.push(call);
            return Ok((Scalar::AggRef(aggs.len() - 1), ty));
        }
        if name == "row" {
            return self.bind_row(&args);
        }
        let mut args = args;
        if crate::sql::sequence::is_sequence_function(&name) {
            // `nextval('s'::regclass)` (how PostgreSQL prints a SERIAL default): the name.
            if let Some(Expr::Cast {
                expr, data_type, ..
            }) = args.first()
            {
                if data_type.to_string().eq_ignore_ascii_case("regclass") {
                    args[0] = (**expr).clone();
                }
            }
        }
        if matches!(
            name.as_str(),
            "array_cat" | "array_append" | "array_prepend"
        ) && args.len() == 2
        {
            let (l, lt) = self.bind(&args[0], None)?;
            let (r, rt) = self.bind(&args[1], None)?;
            let mode = match name.as_str() {
                "array_cat" => ArrayConcat::Cat,
                "array_append" => ArrayConcat::Append,
                _ => ArrayConcat::Prepend,
            };
            return array_concat_as(mode, l, lt, r, rt).map_err(|_| {
                Error::new(
                    ErrorKind::UndefinedFunction,
                    format!(
                        "function {name}({}, {}) does not exist",
                        lt.name(),
                        rt.name()
                    ),
                )
            });
        }
        if matches!(name.as_str(), "booleq" | "boolne") && args.len() == 2 {
            let op = if name == "booleq" {
                BinaryOperator::Eq
            } else {
                BinaryOperator::NotEq
            };
            return self.bind_binary(&args[0], &op, &args[1]);
        }
        if let (Some(ty), [arg]) = (type_function(&name), args.as_slice()) {
            // `date(x)`, `int4(x)`, `text(x)`: a cast, as PostgreSQL's type-named functions.
            let (s, _) = self.bind(arg, Some(ty))?;
            return Ok((fold(Scalar::Cast(Box::new(s), ty))?, ty));
        }
        if args.is_empty() && matches!(name.as_str(), "greatest" | "least" | "coalesce") {
            // PostgreSQL's grammar needs at least one argument here.
            return Err(Error::new(
                ErrorKind::Syntax,
                format!("syntax error at or near \")\" in {name}()"),
            ));
        }
        if args.is_empty() && matches!(name.as_str(), "concat" | "concat_ws") {
            return Err(Error::new(
                ErrorKind::UndefinedFunction,
                format!("function {name}() does not exist"),
            ));
        }
        let mut bound = Vec::with_capacity(args.len());
        let mut types = Vec::with_capacity(args.len());
        for a in &args {
            let (s, t) = self.bind(a, None)?;
            bound.push(s);
            types.push(t);
        }
        if name == "pg_typeof" && types.len() == 1 {
            // The argument's type is known here; its value is never needed.
            let ty = SqlType::Text;
            return Ok((Scalar::Const(Datum::Text(types[0].name().into())), ty));
        }
        let first = types.first().copied().unwrap_or(SqlType::Unknown);
        let ty = match name.as_str() {
            "btrim" | "ltrim" | "rtrim" | "substr" | "substring" if first == SqlType::Bytea => {
                SqlType::Bytea
            }
            "get_bit" | "get_byte" => SqlType::Int4,
            "bit_count" => SqlType::Int8,
            "set_bit" | "set_byte" | "decode" | "convert_to" => SqlType::Bytea,
            "encode" | "convert_from" => SqlType::Text,
            "lower" | "upper" | "btrim" | "ltrim" | "rtrim" | "concat" | "substr" | "substring"
            | "replace" | "repeat" | "left" | "right" | "reverse" | "md5" | "version"
            | "current_database" | "current_user" | "current_schema" | "lpad" | "rpad"
            | "initcap" | "to_hex" | "current_setting" => SqlType::Text,
            "length" | "char_length" | "character_length" | "octet_length" | "bit_length"
            | "strpos" | "ascii" => SqlType::Int4,
            "concat_ws" | "split_part" | "format" => SqlType::Text,
            "date_part" => SqlType::Float8,
            "jsonb_typeof" | "jsonb_array_length" => {
                if !matches!(first, SqlType::Jsonb | SqlType::Unknown) || types.len() != 1 {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!(
                            "function {name}({}) does not exist",
                            types
                                .iter()
                                .map(|t| t.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                let taken = std::mem::replace(&mut bound[0], Scalar::Const(Datum::Null));
                bound[0] = coerce_literal(taken, SqlType::Jsonb)?;
                if name == "jsonb_typeof" {
                    SqlType::Text
                } else {
                    SqlType::Int4
                }
            }
            "to_jsonb" | "jsonb_build_object" | "jsonb_build_array" => {
                if name == "to_jsonb" && types.len() != 1 {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!("function {name} does not exist"),
                    ));
                }
                if name == "jsonb_build_object" && types.len() % 2 != 0 {
                    return Err(Error::new(
                        ErrorKind::InvalidParameterValue,
                        "argument list must have even number of elements",
                    )
                    .with_hint(
                        "The arguments of jsonb_build_object() must consist of alternating keys and values.",
                    ));
                }
                // Which arguments are jsonb (nested as documents, not quoted as text).
                let kinds: String = types
                    .iter()
                    .map(|t| if *t == SqlType::Jsonb { 'j' } else { 'v' })
                    .collect();
                bound.insert(0, Scalar::Const(Datum::Text(kinds)));
                SqlType::Jsonb
            }
            "justify_days" | "justify_hours" | "justify_interval" | "make_interval" | "age" => {
                let want = match name.as_str() {
                    "age" => SqlType::Timestamp,
                    "make_interval" => SqlType::Float8,
                    _ => SqlType::Interval,
                };
                let arity_ok = match name.as_str() {
                    "age" => matches!(args.len(), 1 | 2),
                    "make_interval" => args.len() <= 7,
                    _ => args.len() == 1,
                };
                let type_ok = types.iter().all(|t| match want {
                    SqlType::Timestamp => matches!(
                        t,
                        SqlType::Timestamp
                            | SqlType::TimestampTz
                            | SqlType::Date
                            | SqlType::Unknown
                    ),
                    SqlType::Float8 => t.is_numeric_family() || *t == SqlType::Unknown,
                    _ => matches!(t, SqlType::Interval | SqlType::Unknown),
                });
                if !arity_ok || !type_ok {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!(
                            "function {name}({}) does not exist",
                            types
                                .iter()
                                .map(|t| t.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                for s in bound.iter_mut() {
                    let taken = std::mem::replace(s, Scalar::Const(Datum::Null));
                    *s = coerce_literal(taken, want)?;
                }
                SqlType::Interval
            }
            "sign" if first.is_int() => SqlType::Numeric,
            "abs" | "sign" => {
                if first == SqlType::Unknown {
                    SqlType::Float8
                } else {
                    first
                }
            }
            "round" | "trunc" => {
                if first.is_int() || first == SqlType::Numeric {
                    SqlType::Numeric
                } else {
                    SqlType::Float8
                }
            }
            "ceil" | "ceiling" | "floor" => {
                if first.is_int() || first.is_float() {
                    SqlType::Float8
                } else {
                    SqlType::Numeric
                }
            }
            "sqrt" if first == SqlType::Numeric => SqlType::Numeric,
            "sqrt" | "cbrt" | "power" | "pow" | "exp" | "ln" | "log" | "pi" | "random" => {
                SqlType::Float8
            }
            "mod" => first,
            "coalesce" | "greatest" | "least" | "nullif" => {
                let t = types.iter().fold(SqlType::Unknown, |a, b| unify(a, *b));
                if t == SqlType::Unknown {
                    SqlType::Text
                } else {
                    t
                }
            }
            "now"
            | "current_timestamp"
            | "transaction_timestamp"
            | "statement_timestamp"
            | "clock_timestamp" => SqlType::TimestampTz,
            "gen_random_uuid" | "uuid_generate_v4" => SqlType::Uuid,
            "unique_rowid" => SqlType::Int8,
            // void in PostgreSQL, whose text is empty.
            "pg_sleep"
                if args.len() == 1 && (first.is_numeric_family() || first == SqlType::Unknown) =>
            {
                SqlType::Text
            }
            "nextval" | "currval" | "lastval" | "setval" => {
                let want = match name.as_str() {
                    "lastval" => 0..=0,
                    "setval" => 2..=3,
                    _ => 1..=1,
                };
                if !want.contains(&args.len()) {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!(
                            "function {name}({}) does not exist",
                            types
                                .iter()
                                .map(|t| t.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                SqlType::Int8
            }
            "cluster_logical_timestamp" => SqlType::Numeric,
            n if crate::sql::scalar_functions::result_type(n, &types).is_some() => {
                crate::sql::scalar_functions::result_type(n, &types).unwrap()?
            }
            n if crate::sql::regex_functions::result_type(n, &types).is_some() => {
                crate::sql::regex_functions::result_type(n, &types).unwrap()?
            }
            n if crate::sql::datetime_format::result_type(n, &types).is_some() => {
                crate::sql::datetime_format::result_type(n, &types).unwrap()?
            }
            n if crate::sql::pg_catalog::function_type(n, &types).is_some() => {
                crate::sql::pg_catalog::function_type(n, &types).unwrap()
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::UndefinedFunction,
                    format!(
                        "function {name}({}) does not exist",
                        types
                            .iter()
                            .map(|t| t.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        };
        // Functions over bytea read an untyped literal first argument as bytea.
        if matches!(
            name.as_str(),
            "get_bit"
                | "get_byte"
                | "set_bit"
                | "set_byte"
                | "bit_count"
                | "encode"
                | "convert_from"
        ) {
            if let Some(first) = bound.first_mut() {
                let taken = std::mem::replace(first, Scalar::Const(Datum::Null));
                *first = coerce_literal(taken, SqlType::Bytea)?;
            }
            if !matches!(types.first(), Some(SqlType::Bytea | SqlType::Unknown)) {
                return Err(Error::new(
                    ErrorKind::UndefinedFunction,
                    format!(
                        "function {name}({}) does not exist",
                        types
                            .iter()
                            .map(|t| t.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        // An untyped literal given to a math function that has a double precision form is
        // read as double precision, as PostgreSQL prefers that type (`round('4.5')` is 4).
        if matches!(
            name.as_str(),
            "abs"
                | "sign"
                | "round"
                | "trunc"
                | "ceil"
                | "ceiling"
                | "floor"
                | "sqrt"
                | "cbrt"
                | "exp"
                | "ln"
                | "log"
                | "power"
                | "pow"
        ) {
            for (s, t) in bound.iter_mut().zip(&types).take(1) {
                if *t == SqlType::Unknown {
                    let taken = std::mem::replace(s, Scalar::Const(Datum::Null));
                    *s = coerce_literal(taken, SqlType::Float8)?;
                }
            }
        }
        // Untyped literals in coalesce & co. take the common type.
        if matches!(name.as_str(), "coalesce" | "greatest" | "least" | "nullif") {
            for s in bound.iter_mut() {
                let taken = std::mem::replace(s, Scalar::Const(Datum::Null));
                *s = coerce_literal(taken, ty)?;
            }
        }
        Ok((Scalar::Func(name, bound, ty), ty))
    }
}

/// `(a, b, …) op (x, y, …)` as the scalar comparisons PostgreSQL's row comparison
/// means: `=` all pairs equal, `<>` any pair unequal, and `<`, `<=`, `>`, `>=`
/// lexicographic, decided by the first unequal pair (NULL when that pair has a NULL,
/// which the AND/OR expansion keeps). `None` when the sides are not both row
/// constructors.
fn row_comparison(left: &Expr, op: &BinaryOperator, right: &Expr) -> Result<Option<Expr>> {
    fn row(e: &Expr) -> Option<Vec<Expr>> {
        match e {
            Expr::Tuple(items) => Some(items.clone()),
            Expr::Nested(inner) => row(inner),
            // ROW(a, b, …)
            Expr::Function(f) if object_name(&f.name) == "row" && f.over.is_none() => {
                let ast::FunctionArguments::List(l) = &f.args else {
                    return None;
                };
                l.args
                    .iter()
                    .map(|a| match a {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e.clone()),
                        _ => None,
                    })
                    .collect()
            }
            _ => None,
        }
    }
    let (Some(l), Some(r)) = (row(left), row(right)) else {
        return Ok(None);
    };
    if l.len() != r.len() {
        return Err(Error::syntax(
            "unequal number of entries in row expressions",
        ));
    }
    if l.is_empty() {
        return Err(Error::syntax("row comparison needs at least one column"));
    }
    let pair = |i: usize, op: BinaryOperator| Expr::BinaryOp {
        left: Box::new(l[i].clone()),
        op,
        right: Box::new(r[i].clone()),
    };
    let join = |a: Expr, op: BinaryOperator, b: Expr| {
        Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(a),
            op,
            right: Box::new(b),
        }))
    };
    let n = l.len();
    let expanded = match op {
        BinaryOperator::Eq | BinaryOperator::NotEq => {
            let combine = if *op == BinaryOperator::Eq {
                BinaryOperator::And
            } else {
                BinaryOperator::Or
            };
            let mut acc = pair(0, op.clone());
            for i in 1..n {
                acc = join(acc, combine.clone(), pair(i, op.clone()));
            }
            acc
        }
        BinaryOperator::Lt | BinaryOperator::LtEq | BinaryOperator::Gt | BinaryOperator::GtEq => {
            let strict = match op {
                BinaryOperator::Lt | BinaryOperator::LtEq => BinaryOperator::Lt,
                _ => BinaryOperator::Gt,
            };
            // From the last pair inwards: last uses `op` itself; each earlier pair is
            // `a strict b OR (a = b AND rest)`.
            let mut acc = pair(n - 1, op.clone());
            for i in (0..n - 1).rev() {
                let tie = join(pair(i, BinaryOperator::Eq), BinaryOperator::And, acc);
                acc = join(pair(i, strict.clone()), BinaryOperator::Or, tie);
            }
            acc
        }
        other => {
            return Err(Error::unsupported(format!(
                "operator {other} on row constructors"
            )))
        }
    };
    Ok(Some(expanded))
}

/// The collations there are (PostgreSQL's built-in ones that need no locale; all of them
/// compare text bytewise here, as `C` does).
const COLLATIONS: [&str; 4] = ["default", "C", "POSIX", "ucs_basic"];

/// Checks `COLLATE name` on a value of type `ty`: the collation must exist (42704; names
/// are case-sensitive, an unquoted one is folded to lower case) and the type must be
/// collatable, a string type (42804).
pub fn check_collation(name: &ast::ObjectName, ty: SqlType) -> Result<()> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) if i.quote_style.is_some() => i.value.clone(),
            Some(i) => i.value.to_lowercase(),
            None => p.to_string(),
        })
        .collect();
    let (schema, coll) = match parts.as_slice() {
        [c] => (None, c.as_str()),
        [s, c] => (Some(s.as_str()), c.as_str()),
        _ => (None, ""),
    };
    if !COLLATIONS.contains(&coll) || schema.is_some_and(|s| s != "pg_catalog") {
        return Err(Error::new(
            ErrorKind::UndefinedObject,
            format!(
                "collation \"{}\" for encoding \"UTF8\" does not exist",
                parts.join(".")
            ),
        ));
    }
    if !(ty.is_string() || ty == SqlType::Unknown) {
        return Err(Error::mismatch(format!(
            "collations are not supported by type {}",
            ty.name()
        )));
    }
    Ok(())
}

/// The value of an `INTERVAL '…' [qualifier]` literal.
fn interval_literal(iv: &ast::Interval) -> Result<crate::sql::interval::Interval> {
    use crate::sql::interval::{Interval, IntervalField as F};
    let text = match iv.value.as_ref() {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::EscapedStringLiteral(s) => s.clone(),
            ast::Value::DollarQuotedString(d) => d.value.clone(),
            ast::Value::Number(n, _) => n.clone(),
            other => other.to_string(),
        },
        other => {
            return Err(Error::syntax(format!(
                "syntax error at or near \"{other}\""
            )))
        }
    };
    let field = |f: &ast::DateTimeField| -> Result<F> {
        Ok(match f {
            ast::DateTimeField::Year | ast::DateTimeField::Years => F::Year,
            ast::DateTimeField::Month | ast::DateTimeField::Months => F::Month,
            ast::DateTimeField::Day | ast::DateTimeField::Days => F::Day,
            ast::DateTimeField::Hour | ast::DateTimeField::Hours => F::Hour,
            ast::DateTimeField::Minute | ast::DateTimeField::Minutes => F::Minute,
            ast::DateTimeField::Second | ast::DateTimeField::Seconds => F::Second,
            other => {
                return Err(Error::syntax(format!(
                    "syntax error at or near \"{other}\""
                )))
            }
        })
    };
    let qualifier = match (&iv.leading_field, &iv.last_field) {
        (None, _) => None,
        (Some(a), None) => Some((field(a)?, field(a)?)),
        (Some(a), Some(b)) => Some((field(a)?, field(b)?)),
    };
    Interval::parse(&text, qualifier)
}

/// The result type of `+ - * /` when an interval or two timestamps take part (`None`
/// for the other operand types, which the caller types). An operator PostgreSQL does not
/// have (`interval * interval`, `timestamp + timestamp`) is 42883.
fn datetime_arith_type(op: BinOp, (l, r): (SqlType, SqlType)) -> Option<SqlType> {
    use SqlType::*;
    let stamp = |t: SqlType| matches!(t, Timestamp | TimestampTz);
    let num = |t: SqlType| t.is_numeric_family();
    Some(match (op, l, r) {
        // time: date + time, time - time, time ± interval; times a number it is the
        // interval it casts to implicitly.
        (BinOp::Add, Date, Time) | (BinOp::Add, Time, Date) => Timestamp,
        (BinOp::Sub, Time, Time) => Interval,
        (BinOp::Add | BinOp::Sub, Time, Interval) | (BinOp::Add, Interval, Time) => Time,
        (BinOp::Mul | BinOp::Div, Time, t) if num(t) => Interval,
        (BinOp::Mul, t, Time) if num(t) => Interval,
        (_, Time, _) | (_, _, Time) => Unknown,
        (BinOp::Add | BinOp::Sub, Interval, Interval) => Interval,
        (BinOp::Add | BinOp::Sub, t, Interval) if stamp(t) => t,
        (BinOp::Add | BinOp::Sub, Date, Interval) => Timestamp,
        (BinOp::Add, Interval, t) if stamp(t) => t,
        (BinOp::Add, Interval, Date) => Timestamp,
        (BinOp::Sub, a, b) if (stamp(a) || a == Date) && (stamp(b) || b == Date) => {
            if a == Date && b == Date {
                return None;
            }
            Interval
        }
        (BinOp::Mul | BinOp::Div, Interval, t) if num(t) => Interval,
        (BinOp::Mul, t, Interval) if num(t) => Interval,
        // Any other use of an interval: the caller reports 42883.
        (_, Interval, _) | (_, _, Interval) => Unknown,
        _ => return None,
    })
}

fn check_comparable(_l: &Scalar, _r: &Scalar, t: SqlType) -> Result<()> {
    let _ = t;
    Ok(())
}

/// `x op ANY (ARRAY[a, b, …])` (or `SOME`) and `x op ALL (ARRAY[…])` over an array
/// constructor, as the equivalent `x IN (a, b, …)` for `= ANY`, `x NOT IN (…)` for `<> ALL`,
/// and otherwise an OR (ANY) or AND (ALL) of the comparisons. Both keep PostgreSQL's
/// three-valued result: ANY is true when one comparison is, NULL when none is and one is
/// NULL, else false (ALL the other way round). An empty array makes ANY false, ALL true.
/// ANY over any other array value is [`Binder::bind_quantified`]'s `__array_quantified`.
fn quantified(left: &Expr, op: &BinaryOperator, right: &Expr, all: bool) -> Result<Expr> {
    let mut inner = right;
    while let Expr::Nested(e) = inner {
        inner = e;
    }
    let elems = match inner {
        Expr::Array(a) => &a.elem,
        _ => {
            return Err(Error::unsupported(
                "ANY/ALL is supported only over an ARRAY[...] constructor",
            ))
        }
    };
    if elems.is_empty() {
        return Ok(Expr::Value(ast::Value::Boolean(all).into()));
    }
    if matches!(
        (op, all),
        (BinaryOperator::Eq, false) | (BinaryOperator::NotEq, true)
    ) {
        return Ok(Expr::In {
            expr: Box::new(left.clone()),
            target: ast::InTarget::List(elems.clone()),
            negated: all,
            global: false,
        });
    }
    let joiner = if all {
        BinaryOperator::And
    } else {
        BinaryOperator::Or
    };
    let mut out: Option<Expr> = None;
    for e in elems {
        let cmp = Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(left.clone()),
            op: op.clone(),
            right: Box::new(e.clone()),
        }));
        out = Some(match out {
            None => cmp,
            Some(acc) => Expr::BinaryOp {
                left: Box::new(acc),
                op: joiner.clone(),
                right: Box::new(cmp),
            },
        });
    }
    Ok(Expr::Nested(Box::new(out.unwrap_or_else(|| {
        Expr::Value(ast::Value::Boolean(all).into())
    }))))
}

/// `e` without the parentheses around it.
fn strip_nested(mut e: &Expr) -> &Expr {
    while let Expr::Nested(inner) = e {
        e = inner;
    }
    e
}

/// Whether values of `t` are arrays (not the catalog's `int2vector` / `oidvector`).
fn is_array(t: SqlType) -> bool {
    t.array_elem().is_some() && !t.is_vector()
}

/// Whether values of `a` and `b` compare with one another (numbers with numbers, strings
/// with strings, a type with itself; an untyped operand with anything).
fn comparable_types(a: SqlType, b: SqlType) -> bool {
    a == b
        || a == SqlType::Unknown
        || b == SqlType::Unknown
        || (a.is_numeric_family() && b.is_numeric_family())
        || (a.is_string() && b.is_string())
        || (matches!(a, SqlType::Date | SqlType::Timestamp | SqlType::TimestampTz)
            && matches!(b, SqlType::Date | SqlType::Timestamp | SqlType::TimestampTz))
}

/// The array type two array operands share (an untyped literal takes the other's type),
/// with each side cast to it where it differs; `None` when their elements do not compare.
fn unify_arrays(
    l: Scalar,
    lt: SqlType,
    r: Scalar,
    rt: SqlType,
) -> Result<Option<(Scalar, Scalar, SqlType)>> {
    let (lt, rt) = match (lt, rt) {
        (SqlType::Unknown, t) | (t, SqlType::Unknown) => (t, t),
        p => p,
    };
    let (Some(le), Some(re)) = (lt.array_elem(), rt.array_elem()) else {
        return Ok(None);
    };
    if !is_array(lt) || !is_array(rt) || !comparable_types(le, re) {
        return Ok(None);
    }
    let ty = match common_type(le, re).array_of() {
        Some(t) => t,
        None => return Ok(None),
    };
    let to = |s: Scalar, t: SqlType| -> Result<Scalar> {
        let s = coerce_literal(s, ty)?;
        Ok(if t == ty {
            s
        } else {
            Scalar::Cast(Box::new(s), ty)
        })
    };
    Ok(Some((to(l, lt)?, to(r, rt)?, ty)))
}

/// The element type an untyped element stands for: text.
fn fix_unknown_elem(t: SqlType) -> SqlType {
    if t == SqlType::Unknown {
        SqlType::Text
    } else {
        t
    }
}

/// `x LIKE ANY (…)` (`any`, as the parser reads it) or `x LIKE some|any|all(…)` (a
/// function call to the parser): whether it is ALL, and the list.
fn like_quantifier(pattern: &Expr, any: bool) -> Option<(bool, &Expr)> {
    if any {
        return Some((false, strip_nested(pattern)));
    }
    let Expr::Function(f) = strip_nested(pattern) else {
        return None;
    };
    let name = object_name(&f.name);
    if !matches!(name.as_str(), "any" | "some" | "all") || f.over.is_some() {
        return None;
    }
    let ast::FunctionArguments::List(l) = &f.args else {
        return None;
    };
    match l.args.as_slice() {
        [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))] if l.clauses.is_empty() => {
            Some((name == "all", strip_nested(e)))
        }
        _ => None,
    }
}

/// `x [NOT] LIKE ANY|ALL (ARRAY[p, q, …])` as the OR (ANY) or AND (ALL) of the single
/// comparisons, which keeps SQL's three-valued result; an empty array gives false for ANY
/// and true for ALL.
fn expand_like_quantified(like: &Expr, list: &Expr, all: bool) -> Result<Expr> {
    let Expr::Array(a) = list else {
        return Err(Error::unsupported(
            "LIKE ANY/ALL is supported only over an ARRAY[...] constructor",
        ));
    };
    let joiner = if all {
        BinaryOperator::And
    } else {
        BinaryOperator::Or
    };
    let mut out: Option<Expr> = None;
    for p in &a.elem {
        let mut one = like.clone();
        if let Expr::Like { any, pattern, .. } | Expr::ILike { any, pattern, .. } = &mut one {
            *any = false;
            **pattern = p.clone();
        }
        let one = Expr::Nested(Box::new(one));
        out = Some(match out {
            None => one,
            Some(acc) => Expr::BinaryOp {
                left: Box::new(acc),
                op: joiner.clone(),
                right: Box::new(one),
            },
        });
    }
    Ok(Expr::Nested(Box::new(out.unwrap_or_else(|| {
        Expr::Value(ast::Value::Boolean(all).into())
    }))))
}

fn no_operator(lt: SqlType, op: &str, rt: SqlType) -> Error {
    Error::new(
        ErrorKind::UndefinedFunction,
        format!("operator does not exist: {} {op} {}", lt.name(), rt.name()),
    )
}

/// What `||` (or `array_cat` / `array_append` / `array_prepend`) does with an array.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ArrayConcat {
    Cat,
    Append,
    Prepend,
}

/// `a || b` where one side is an array: two arrays (an untyped literal being one) are
/// concatenated, an element is appended or prepended.
fn array_concat(l: Scalar, lt: SqlType, r: Scalar, rt: SqlType) -> Result<(Scalar, SqlType)> {
    let (l_arr, r_arr) = (
        is_array(lt) || lt == SqlType::Unknown,
        is_array(rt) || rt == SqlType::Unknown,
    );
    let mode = if l_arr && r_arr {
        ArrayConcat::Cat
    } else if is_array(lt) {
        ArrayConcat::Append
    } else {
        ArrayConcat::Prepend
    };
    array_concat_as(mode, l, lt, r, rt)
}

/// `a || b` as `mode` says: for `Append` `a` is the array (an untyped literal: an array of
/// `b`'s type) and `b` the element, for `Prepend` the other way round.
fn array_concat_as(
    mode: ArrayConcat,
    l: Scalar,
    lt: SqlType,
    r: Scalar,
    rt: SqlType,
) -> Result<(Scalar, SqlType)> {
    if mode == ArrayConcat::Cat {
        let (l2, r2, ty) = unify_arrays(l, lt, r, rt)?.ok_or_else(|| no_operator(lt, "||", rt))?;
        return Ok((Scalar::Func("__array_cat".into(), vec![l2, r2], ty), ty));
    }
    let (arr, at, x, xt, name) = if mode == ArrayConcat::Append {
        (l, lt, r, rt, "__array_append")
    } else {
        (r, rt, l, lt, "__array_prepend")
    };
    let at = if at == SqlType::Unknown {
        fix_unknown_elem(xt)
            .array_of()
            .ok_or_else(|| no_operator(lt, "||", rt))?
    } else {
        at
    };
    let arr = coerce_literal(arr, at)?;
    let elem = match at.array_elem() {
        Some(e) if is_array(at) => e,
        _ => return Err(no_operator(lt, "||", rt)),
    };
    if is_array(xt) || !comparable_types(elem, xt) {
        return Err(no_operator(lt, "||", rt));
    }
    let ty = common_type(elem, xt).array_of().unwrap_or(at);
    let arr = if ty == at {
        arr
    } else {
        Scalar::Cast(Box::new(arr), ty)
    };
    let args = if name == "__array_append" {
        vec![arr, x]
    } else {
        vec![x, arr]
    };
    Ok((Scalar::Func(name.into(), args, ty), ty))
}

/// `a = b`, `a < b`, … between arrays, element by element.
fn array_comparison(
    op: BinOp,
    l: Scalar,
    lt: SqlType,
    r: Scalar,
    rt: SqlType,
) -> Result<(Scalar, SqlType)> {
    let (code, sym) = match op {
        BinOp::Eq => (CmpOp::Eq, "="),
        BinOp::NotEq => (CmpOp::NotEq, "<>"),
        BinOp::Lt => (CmpOp::Lt, "<"),
        BinOp::LtEq => (CmpOp::LtEq, "<="),
        BinOp::Gt => (CmpOp::Gt, ">"),
        _ => (CmpOp::GtEq, ">="),
    };
    let (l, r, ty) = unify_arrays(l, lt, r, rt)?.ok_or_else(|| no_operator(lt, sym, rt))?;
    let elem = ty.array_elem().unwrap_or(SqlType::Text);
    let args = vec![
        l,
        r,
        Scalar::Const(Datum::Int(code as i64)),
        Scalar::Const(Datum::Int(i64::from(elem.tag()))),
    ];
    Ok((
        Scalar::Func("__array_cmp".into(), args, SqlType::Bool),
        SqlType::Bool,
    ))
}

/// `a @> b` (`name` `__array_contains`; `<@` swaps the operands) or `a && b`
/// (`__array_overlap`).
fn array_containment(
    name: &str,
    l: Scalar,
    lt: SqlType,
    r: Scalar,
    rt: SqlType,
    sym: &str,
) -> Result<(Scalar, SqlType)> {
    let (l, r, ty) = unify_arrays(l, lt, r, rt)?.ok_or_else(|| no_operator(lt, sym, rt))?;
    let elem = ty.array_elem().unwrap_or(SqlType::Text);
    let args = vec![l, r, Scalar::Const(Datum::Int(i64::from(elem.tag())))];
    Ok((
        Scalar::Func(name.into(), args, SqlType::Bool),
        SqlType::Bool,
    ))
}

/// Casts an untyped string literal to `ty` at bind time (as PostgreSQL types `'5'` by
/// context).
pub fn coerce_literal(s: Scalar, ty: SqlType) -> Result<Scalar> {
    match s {
        Scalar::Const(Datum::Text(t)) if ty != SqlType::Unknown && !ty.is_string() => {
            Ok(Scalar::Const(Datum::parse(ty, &t)?))
        }
        s => Ok(s),
    }
}

/// `to_jsonb(s)` of a value of type `ty` (a jsonb value nests as a document).
fn to_jsonb(s: Scalar, ty: SqlType) -> Result<Scalar> {
    let s = coerce_literal(s, SqlType::Text)?;
    let kind = if ty == SqlType::Jsonb { "j" } else { "v" };
    Ok(Scalar::Func(
        "to_jsonb".into(),
        vec![Scalar::Const(Datum::Text(kind.into())), s],
        SqlType::Jsonb,
    ))
}

/// The common type of two operand types.
pub fn unify(a: SqlType, b: SqlType) -> SqlType {
    use SqlType::*;
    match (a, b) {
        (Unknown, t) | (t, Unknown) => t,
        (a, b) if a == b => a,
        (Float8, _) | (_, Float8) | (Float4, _) | (_, Float4)
            if a.is_numeric_family() && b.is_numeric_family() =>
        {
            Float8
        }
        (Numeric, _) | (_, Numeric) if a.is_numeric_family() && b.is_numeric_family() => Numeric,
        (Int8, _) | (_, Int8) if a.is_int() && b.is_int() => Int8,
        (Int4, _) | (_, Int4) if a.is_int() && b.is_int() => Int4,
        (a, b) if a.is_string() && b.is_string() => Text,
        (Timestamp, TimestampTz) | (TimestampTz, Timestamp) => TimestampTz,
        (Date, Timestamp) | (Timestamp, Date) => Timestamp,
        (Date, TimestampTz) | (TimestampTz, Date) => TimestampTz,
        (a, _) => a,
    }
}

/// The type two branches of a UNION or two rows of VALUES resolve to (PostgreSQL's
/// `select_common_type`): within the numeric family the one the other casts to implicitly
/// (smallint < integer < bigint < numeric < real < double precision, so real UNION
/// numeric is real), otherwise as [`unify`]. Unlike an operator's operands, which meet in
/// double precision when either is a float.
pub fn common_type(a: SqlType, b: SqlType) -> SqlType {
    use SqlType::*;
    let rank = |t: SqlType| match t {
        Int2 => Some(0),
        Int4 => Some(1),
        Int8 => Some(2),
        Numeric => Some(3),
        Float4 => Some(4),
        Float8 => Some(5),
        _ => None,
    };
    match (rank(a), rank(b)) {
        (Some(x), Some(y)) => {
            if x >= y {
                a
            } else {
                b
            }
        }
        _ => unify(a, b),
    }
}

/// Constant-folds a node whose children are all constants.
fn fold(s: Scalar) -> Result<Scalar> {
    let all_const = match &s {
        Scalar::Binary(_, l, r, _) => {
            matches!(**l, Scalar::Const(_)) && matches!(**r, Scalar::Const(_))
        }
        Scalar::Cast(e, _) => matches!(**e, Scalar::Const(_)),
        _ => false,
    };
    if all_const {
        Ok(Scalar::Const(s.eval(&[], &EvalCtx::default())?))
    } else {
        Ok(s)
    }
}

/// The type modifiers written after a type name: `numeric(p, s)` → `[p, s]`,
/// `varchar(n)` → `[n]`.
pub fn typmod(dt: &ast::DataType) -> Vec<u32> {
    let s = dt.to_string();
    match s.split_once('(') {
        Some((_, rest)) => rest
            .trim_end_matches(')')
            .split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect(),
        None => Vec::new(),
    }
}

/// Wraps a cast with its type modifier: rounding numerics to their scale, truncating
/// strings to their length (explicit casts truncate; assignments check instead).
pub fn apply_typmod(s: Scalar, ty: SqlType, mods: Vec<u32>) -> Result<Scalar> {
    let node = match (ty, mods.as_slice()) {
        (SqlType::Numeric, [p]) => Scalar::Func(
            "__numeric_typmod".into(),
            vec![
                s,
                Scalar::Const(Datum::Int(*p as i64)),
                Scalar::Const(Datum::Int(0)),
            ],
            ty,
        ),
        (SqlType::Numeric, [p, sc, ..]) => Scalar::Func(
            "__numeric_typmod".into(),
            vec![
                s,
                Scalar::Const(Datum::Int(*p as i64)),
                Scalar::Const(Datum::Int(*sc as i64)),
            ],
            ty,
        ),
        (SqlType::Varchar, [n, ..]) => Scalar::Func(
            "__varchar_typmod".into(),
            vec![s, Scalar::Const(Datum::Int(*n as i64))],
            ty,
        ),
        _ => return Ok(s),
    };
    if let Scalar::Func(_, args, _) = &node {
        if args[0].is_const() {
            return Ok(Scalar::Const(node.eval(&[], &EvalCtx::default())?));
        }
    }
    Ok(node)
}

/// Rounds `d` to `scale` digits and checks it fits `precision` digits in all.
pub fn numeric_typmod(d: Decimal, precision: u32, scale: u32) -> Result<Decimal> {
    let mut r = d.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(scale);
    let int_digits = r.trunc().abs().to_string().trim_start_matches('0').len() as u32;
    if precision > 0 && int_digits > precision.saturating_sub(scale) {
        return Err(Error::out_of_range("numeric field overflow").with_detail(format!(
            "A field with precision {precision}, scale {scale} must round to an absolute value less than 10^{}.",
            precision - scale
        )));
    }
    Ok(r)
}

/// PostgreSQL's base-10000 weight and first digit group of a numeric.
fn weight_first(d: &Decimal) -> (i32, u32) {
    let text = d.abs().to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let int = int.trim_start_matches('0');
    if !int.is_empty() {
        let pad = (4 - int.len() % 4) % 4;
        let padded = format!("{}{int}", "0".repeat(pad));
        let groups = padded.len() / 4;
        return ((groups - 1) as i32, padded[..4].parse().unwrap_or(0));
    }
    let pad = (4 - frac.len() % 4) % 4;
    let padded = format!("{frac}{}", "0".repeat(pad));
    for (j, g) in padded.as_bytes().chunks(4).enumerate() {
        let v: u32 = std::str::from_utf8(g)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if v != 0 {
            return (-(j as i32) - 1, v);
        }
    }
    (0, 0)
}

/// The square root of a non-negative numeric with PostgreSQL's result scale: at least 16
/// significant digits, and no fewer decimals than the argument (`numeric_sqrt` in
/// `numeric.c`), as far as rust_decimal's 28 digits allow.
fn numeric_sqrt(n: Decimal) -> Decimal {
    let (weight, _) = weight_first(&n);
    let result_weight = (weight + 1) * 4 / 2 - 1;
    let scale = (16 - result_weight).max(n.scale() as i32).clamp(0, 28) as u32;
    let root = crate::sql::exec::decimal_sqrt(n);
    let mut r = root.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    let mut padded = r;
    padded.rescale(scale);
    if padded == r {
        r = padded;
    }
    r
}

/// Numeric division with PostgreSQL's result scale (at least 16 significant digits, and no
/// fewer decimals than either input).
pub fn numeric_div(x: Decimal, y: Decimal) -> Result<Decimal> {
    if y.is_zero() {
        return Err(Error::new(ErrorKind::DivisionByZero, "division by zero"));
    }
    let (w1, f1) = weight_first(&x);
    let (w2, f2) = weight_first(&y);
    let mut qweight = w1 - w2;
    if f1 <= f2 {
        qweight -= 1;
    }
    let rscale = (16 - qweight * 4)
        .max(x.scale() as i32)
        .max(y.scale() as i32)
        .clamp(0, 28) as u32;
    let q = x
        .checked_div(y)
        .ok_or_else(|| Error::out_of_range("value overflows numeric format"))?;
    let mut r = q.round_dp_with_strategy(rscale, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(rscale);
    Ok(r)
}

/// Maps a SQL data type to ours.
pub fn sql_type(dt: &ast::DataType) -> Result<SqlType> {
    let s = dt.to_string();
    SqlType::from_sql_name(&s)
        .or_else(|| SqlType::from_sql_name(s.split('(').next().unwrap_or("")))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::UndefinedObject,
                format!("type \"{}\" does not exist", s.to_lowercase()),
            )
        })
}

/// The type a cast names: as [`sql_type`], and also the array types values may have
/// (`'{1,2}'::int[]`), which no column may.
fn cast_type(dt: &ast::DataType) -> Result<SqlType> {
    use ast::ArrayElemTypeDef as A;
    match dt {
        ast::DataType::Array(A::SquareBracket(elem, _) | A::Qualified(elem, _)) => {
            // `int[][]` is `int[]`: an array type covers every number of dimensions.
            let e = cast_type(elem)?;
            if e.array_elem().is_some() && !e.is_vector() {
                return Ok(e);
            }
            e.declared_array_of().ok_or_else(|| {
                Error::new(
                    ErrorKind::UndefinedObject,
                    format!("type \"{}[]\" is not supported", e.name()),
                )
            })
        }
        _ => sql_type(dt),
    }
}

/// What evaluation needs besides the row.
#[derive(Default)]
pub struct EvalCtx {
    pub params: Vec<Datum>,
    pub aggs: Vec<Datum>,
    /// The current row's window function values.
    pub windows: Vec<Datum>,
    /// The statement's timestamp in micros (now()).
    pub now_micros: i64,
    /// The transaction's timestamp (cluster_logical_timestamp()).
    pub txn_ts: chitin_storage::Timestamp,
    pub database: String,
    pub user: String,
    pub rowid: std::cell::Cell<i64>,
    /// The session's variables (`current_setting`).
    pub settings: std::rc::Rc<std::collections::BTreeMap<String, String>>,
    /// The session's sequence state: results of sequence calls run ahead of evaluation.
    pub seq: std::rc::Rc<std::cell::RefCell<crate::sql::sequence::SeqSession>>,
    /// `current_schema()`: the first schema of the search path (None when it has none).
    pub current_schema: Option<String>,
}

fn arith_int(op: BinOp, a: i64, b: i64, ty: SqlType) -> Result<Datum> {
    let r = match op {
        BinOp::Add => a.checked_add(b),
        BinOp::Sub => a.checked_sub(b),
        BinOp::Mul => a.checked_mul(b),
        BinOp::Div => {
            if b == 0 {
                return Err(Error::new(ErrorKind::DivisionByZero, "division by zero"));
            }
            a.checked_div(b)
        }
        BinOp::Mod => {
            if b == 0 {
                return Err(Error::new(ErrorKind::DivisionByZero, "division by zero"));
            }
            a.checked_rem(b)
        }
        _ => unreachable!("arith_int called with a non-arithmetic operator"),
    };
    let r = r.ok_or_else(|| {
        Error::out_of_range(format!(
            "{} out of range",
            if ty.is_int() { ty.name() } else { "bigint" }
        ))
    })?;
    if ty.is_int() {
        check_int_range(ty, r)?;
    }
    Ok(Datum::Int(r))
}

fn to_decimal(d: &Datum) -> Option<Decimal> {
    match d {
        Datum::Int(i) => Some(Decimal::from(*i)),
        Datum::Numeric(n) => Some(*n),
        Datum::Float(f) => Decimal::from_f64(*f),
        _ => None,
    }
}

fn to_f64(d: &Datum) -> Option<f64> {
    match d {
        Datum::Int(i) => Some(*i as f64),
        Datum::Float(f) => Some(*f),
        Datum::Numeric(n) => Some(decimal_to_f64(n)),
        Datum::NumericSpecial(x) => Some(x.to_f64()),
        _ => None,
    }
}

/// The operators with a `time` operand (typed by [`datetime_arith_type`]).
fn time_arith(op: BinOp, a: Datum, b: Datum) -> Result<Datum> {
    use crate::sql::time_of_day as tod;
    Ok(match (&a, &b) {
        (Datum::Time(t), Datum::Interval(iv)) if matches!(op, BinOp::Add | BinOp::Sub) => {
            Datum::Time(tod::add_interval(*t, iv, op == BinOp::Sub))
        }
        (Datum::Interval(iv), Datum::Time(t)) if op == BinOp::Add => {
            Datum::Time(tod::add_interval(*t, iv, false))
        }
        (Datum::Date(d), Datum::Time(t)) | (Datum::Time(t), Datum::Date(d)) if op == BinOp::Add => {
            Datum::Timestamp(tod::date_add_time(*d, *t)?)
        }
        (Datum::Time(x), Datum::Time(y)) if op == BinOp::Sub => {
            Datum::Interval(crate::sql::interval::Interval::new(0, 0, x - y))
        }
        (Datum::Time(t), n) if matches!(op, BinOp::Mul | BinOp::Div) => {
            interval_arith(op, Datum::Interval(tod::to_interval(*t)), n.clone())?
        }
        (n, Datum::Time(t)) if op == BinOp::Mul => {
            interval_arith(op, n.clone(), Datum::Interval(tod::to_interval(*t)))?
        }
        _ => return Err(bad_op(&a, &b)),
    })
}

fn arith(op: BinOp, a: Datum, b: Datum, ty: SqlType) -> Result<Datum> {
    let zero_div = || Error::new(ErrorKind::DivisionByZero, "division by zero");
    match (&a, &b) {
        (Datum::Int(x), Datum::Int(y)) => arith_int(op, *x, *y, ty),
        (Datum::Time(_), _) | (_, Datum::Time(_)) => time_arith(op, a, b),
        (Datum::Interval(_), _) | (_, Datum::Interval(_)) => interval_arith(op, a, b),
        (
            Datum::Timestamp(_) | Datum::TimestampTz(_) | Datum::Date(_),
            Datum::Timestamp(_) | Datum::TimestampTz(_) | Datum::Date(_),
        ) if op == BinOp::Sub && ty == SqlType::Interval => {
            let micros = |d: &Datum| match d {
                Datum::Date(d) => *d as i64 * crate::sql::types::MICROS_PER_DAY,
                Datum::Timestamp(t) | Datum::TimestampTz(t) => *t,
                _ => 0,
            };
            Ok(Datum::Interval(crate::sql::interval::timestamp_diff(
                micros(&a),
                micros(&b),
            )?))
        }
        (Datum::Float(_), _) | (_, Datum::Float(_)) => {
            let (x, y) = (
                to_f64(&a).ok_or_else(|| bad_op(&a, &b))?,
                to_f64(&b).ok_or_else(|| bad_op(&a, &b))?,
            );
            // real op real is computed in single precision by PostgreSQL.
            let single = |v: f64| {
                if ty == SqlType::Float4 {
                    v as f32 as f64
                } else {
                    v
                }
            };
            Ok(Datum::Float(single(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => {
                    if y == 0.0 {
                        return Err(zero_div());
                    }
                    x / y
                }
                _ => {
                    if y == 0.0 {
                        return Err(zero_div());
                    }
                    x % y
                }
            })))
        }
        (Datum::NumericSpecial(_), _) | (_, Datum::NumericSpecial(_)) => {
            let (x, y) = (
                NumericValue::of(&a).ok_or_else(|| bad_op(&a, &b))?,
                NumericValue::of(&b).ok_or_else(|| bad_op(&a, &b))?,
            );
            let op = match op {
                BinOp::Add => NumericOp::Add,
                BinOp::Sub => NumericOp::Sub,
                BinOp::Mul => NumericOp::Mul,
                BinOp::Div => NumericOp::Div,
                _ => NumericOp::Mod,
            };
            special_arith(op, x, y)
        }
        (Datum::Numeric(_), _) | (_, Datum::Numeric(_)) => {
            let (x, y) = (
                to_decimal(&a).ok_or_else(|| bad_op(&a, &b))?,
                to_decimal(&b).ok_or_else(|| bad_op(&a, &b))?,
            );
            let overflow = || Error::out_of_range("value overflows numeric format");
            Ok(Datum::Numeric(match op {
                BinOp::Add => x.checked_add(y).ok_or_else(overflow)?,
                BinOp::Sub => x.checked_sub(y).ok_or_else(overflow)?,
                BinOp::Mul => x.checked_mul(y).ok_or_else(overflow)?,
                BinOp::Div => numeric_div(x, y)?,
                _ => {
                    if y.is_zero() {
                        return Err(zero_div());
                    }
                    x.checked_rem(y).ok_or_else(overflow)?
                }
            }))
        }
        (Datum::Int(i), Datum::Date(d)) if op == BinOp::Add => {
            arith(op, Datum::Date(*d), Datum::Int(*i), SqlType::Date)
        }
        (Datum::Date(d), Datum::Int(i)) if matches!(op, BinOp::Add | BinOp::Sub) => {
            let days = match op {
                BinOp::Add => (*d as i64).checked_add(*i),
                _ => (*d as i64).checked_sub(*i),
            };
            days.filter(|v| crate::sql::types::DATE_RANGE.contains(v))
                .map(|v| Datum::Date(v as i32))
                .ok_or_else(|| Error::new(ErrorKind::DatetimeFieldOverflow, "date out of range"))
        }
        (Datum::Date(a), Datum::Date(b)) if op == BinOp::Sub => {
            Ok(Datum::Int(*a as i64 - *b as i64))
        }
        _ => Err(bad_op(&a, &b)),
    }
}

/// The jsonb operators and functions over evaluated arguments (NULLs already handled).
fn jsonb_function(name: &str, vals: &[Datum]) -> Result<Datum> {
    use crate::sql::jsonb::{from_datum, Json, PathStep};
    let doc = |i: usize| -> Result<Json> {
        match vals.get(i) {
            Some(Datum::Text(t)) => Json::parse(t),
            Some(other) => from_datum(other, false),
            None => Ok(Json::Null),
        }
    };
    let text = |i: usize| -> String {
        match vals.get(i) {
            Some(Datum::Text(t)) => t.clone(),
            Some(d) => d.to_text(d.natural_type()).unwrap_or_default(),
            None => String::new(),
        }
    };
    let out = |j: Option<&Json>| match j {
        Some(j) => Datum::Text(j.to_text()),
        None => Datum::Null,
    };
    Ok(match name {
        "__jsonb_get" | "__jsonb_get_text" => {
            let d = doc(0)?;
            let step = match &vals[1] {
                Datum::Int(i) => PathStep::Index(*i),
                _ => PathStep::Key(text(1)),
            };
            let v = d.get(&step);
            if name == "__jsonb_get" {
                out(v)
            } else {
                v.and_then(Json::as_text)
                    .map(Datum::Text)
                    .unwrap_or(Datum::Null)
            }
        }
        "__jsonb_path" | "__jsonb_path_text" => {
            let d = doc(0)?;
            let path: Vec<String> =
                crate::sql::types::array_elements(SqlType::TextArray, &text(1))?
                    .into_iter()
                    .map(|e| e.unwrap_or_default())
                    .collect();
            let v = d.get_path(&path);
            if name == "__jsonb_path" {
                out(v)
            } else {
                v.and_then(Json::as_text)
                    .map(Datum::Text)
                    .unwrap_or(Datum::Null)
            }
        }
        "__jsonb_contains" => Datum::Bool(doc(0)?.contains(&doc(1)?)),
        "__jsonb_contained" => Datum::Bool(doc(1)?.contains(&doc(0)?)),
        "__jsonb_has_key" => Datum::Bool(doc(0)?.has_key(&text(1))),
        "__jsonb_concat" => Datum::Text(doc(0)?.concat(doc(1)?).to_text()),
        "jsonb_typeof" => Datum::Text(doc(0)?.type_name().into()),
        "jsonb_array_length" => match doc(0)? {
            Json::Array(a) => Datum::Int(a.len() as i64),
            Json::Object(_) => {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    "cannot get array length of a non-array",
                ))
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    "cannot get array length of a scalar",
                ))
            }
        },
        _ => {
            // to_jsonb / jsonb_build_*: the first value says which arguments are jsonb.
            let kinds: Vec<bool> = text(0).chars().map(|c| c == 'j').collect();
            let args = &vals[1..];
            let json = |i: usize| from_datum(&args[i], kinds.get(i).copied().unwrap_or(false));
            match name {
                "to_jsonb" => Datum::Text(json(0)?.to_text()),
                "jsonb_build_array" => Datum::Text(
                    Json::Array((0..args.len()).map(json).collect::<Result<_>>()?).to_text(),
                ),
                _ => {
                    let mut pairs = Vec::with_capacity(args.len() / 2);
                    for i in (0..args.len()).step_by(2) {
                        let key = match &args[i] {
                            Datum::Null => {
                                return Err(Error::new(
                                    ErrorKind::InvalidParameterValue,
                                    "argument 1: key must not be null",
                                ))
                            }
                            Datum::Text(t) => t.clone(),
                            d => d.to_text(d.natural_type()).unwrap_or_default(),
                        };
                        pairs.push((key, json(i + 1)?));
                    }
                    Datum::Text(Json::object(pairs).to_text())
                }
            }
        }
    })
}

/// The arithmetic of intervals: with each other, with timestamps and dates, and scaled by
/// numbers.
fn interval_arith(op: BinOp, a: Datum, b: Datum) -> Result<Datum> {
    use crate::sql::interval::timestamp_add;
    let day = crate::sql::types::MICROS_PER_DAY;
    let sub = op == BinOp::Sub;
    Ok(match (&a, &b) {
        (Datum::Interval(x), Datum::Interval(y)) => match op {
            BinOp::Add => Datum::Interval(x.checked_add(y)?),
            BinOp::Sub => Datum::Interval(x.checked_sub(y)?),
            _ => return Err(bad_op(&a, &b)),
        },
        (Datum::Timestamp(_) | Datum::TimestampTz(_) | Datum::Date(_), Datum::Interval(iv))
            if matches!(op, BinOp::Add | BinOp::Sub) =>
        {
            let iv = if sub { iv.checked_neg()? } else { *iv };
            match a {
                Datum::Timestamp(t) => Datum::Timestamp(timestamp_add(t, &iv)?),
                Datum::TimestampTz(t) => {
                    Datum::TimestampTz(crate::sql::interval::timestamptz_add(t, &iv)?)
                }
                Datum::Date(d) => Datum::Timestamp(timestamp_add(d as i64 * day, &iv)?),
                _ => unreachable!("matched above"),
            }
        }
        (Datum::Interval(iv), Datum::Timestamp(_) | Datum::TimestampTz(_) | Datum::Date(_))
            if op == BinOp::Add =>
        {
            match b {
                Datum::Timestamp(t) => Datum::Timestamp(timestamp_add(t, iv)?),
                Datum::TimestampTz(t) => {
                    Datum::TimestampTz(crate::sql::interval::timestamptz_add(t, iv)?)
                }
                Datum::Date(d) => Datum::Timestamp(timestamp_add(d as i64 * day, iv)?),
                _ => unreachable!("matched above"),
            }
        }
        (Datum::Interval(iv), n) if matches!(op, BinOp::Mul | BinOp::Div) => {
            let f = to_f64(n).ok_or_else(|| bad_op(&a, &b))?;
            Datum::Interval(iv.scale(f, op == BinOp::Div)?)
        }
        (n, Datum::Interval(iv)) if op == BinOp::Mul => {
            let f = to_f64(n).ok_or_else(|| bad_op(&a, &b))?;
            Datum::Interval(iv.scale(f, false)?)
        }
        _ => return Err(bad_op(&a, &b)),
    })
}

fn bad_op(a: &Datum, b: &Datum) -> Error {
    Error::new(
        ErrorKind::UndefinedFunction,
        format!(
            "operator does not exist: {} and {}",
            a.natural_type().name(),
            b.natural_type().name()
        ),
    )
}

/// SQL LIKE with `%` and `_` and backslash escapes.
pub fn like(s: &str, p: &str, ci: bool) -> bool {
    let (s, p): (Vec<char>, Vec<char>) = if ci {
        (
            s.to_lowercase().chars().collect(),
            p.to_lowercase().chars().collect(),
        )
    } else {
        (s.chars().collect(), p.chars().collect())
    };
    fn rec(s: &[char], p: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('%') => (0..=s.len()).any(|i| rec(&s[i..], &p[1..])),
            Some('_') => !s.is_empty() && rec(&s[1..], &p[1..]),
            Some('\\') if p.len() > 1 => !s.is_empty() && s[0] == p[1] && rec(&s[1..], &p[2..]),
            Some(c) => !s.is_empty() && s[0] == *c && rec(&s[1..], &p[1..]),
        }
    }
    rec(&s, &p)
}

impl Scalar {
    /// True when the expression refers to no column, aggregate or parameter.
    pub fn is_const(&self) -> bool {
        matches!(self, Scalar::Const(_))
    }

    /// True when the expression is built of constants and operators only (no column,
    /// parameter, aggregate, window or function call), so one evaluation stands for
    /// every row: PostgreSQL's "One-Time Filter".
    pub fn is_row_independent(&self) -> bool {
        let mut independent = true;
        self.walk(&mut |s| {
            if matches!(
                s,
                Scalar::Column(_)
                    | Scalar::Param(_)
                    | Scalar::AggRef(_)
                    | Scalar::WindowRef(_)
                    | Scalar::Func(..)
            ) {
                independent = false;
            }
        });
        independent
    }

    /// Evaluates to a truth value: NULL counts as false (WHERE semantics).
    pub fn eval_bool(&self, row: &[Datum], cx: &EvalCtx) -> Result<bool> {
        match self.eval(row, cx)? {
            Datum::Bool(b) => Ok(b),
            Datum::Null => Ok(false),
            d => Err(Error::mismatch(format!(
                "argument of WHERE must be type boolean, not type {}",
                d.natural_type().name()
            ))),
        }
    }

    pub fn eval(&self, row: &[Datum], cx: &EvalCtx) -> Result<Datum> {
        Ok(match self {
            Scalar::Const(d) => d.clone(),
            Scalar::Param(i) => cx
                .params
                .get(*i)
                .cloned()
                .ok_or_else(|| Error::protocol(format!("there is no parameter ${}", i + 1)))?,
            Scalar::Column(i) => row.get(*i).cloned().unwrap_or(Datum::Null),
            Scalar::AggRef(i) => cx.aggs.get(*i).cloned().unwrap_or(Datum::Null),
            Scalar::WindowRef(i) => cx.windows.get(*i).cloned().unwrap_or(Datum::Null),
            Scalar::Binary(op, l, r, ty) => {
                let a = l.eval(row, cx)?;
                match op {
                    BinOp::And => {
                        if a.as_bool() == Some(false) {
                            return Ok(Datum::Bool(false));
                        }
                        let b = r.eval(row, cx)?;
                        return Ok(match (a.as_bool(), b.as_bool()) {
                            (_, Some(false)) => Datum::Bool(false),
                            (Some(true), Some(true)) => Datum::Bool(true),
                            _ => Datum::Null,
                        });
                    }
                    BinOp::Or => {
                        if a.as_bool() == Some(true) {
                            return Ok(Datum::Bool(true));
                        }
                        let b = r.eval(row, cx)?;
                        return Ok(match (a.as_bool(), b.as_bool()) {
                            (_, Some(true)) => Datum::Bool(true),
                            (Some(false), Some(false)) => Datum::Bool(false),
                            _ => Datum::Null,
                        });
                    }
                    _ => {}
                }
                let b = r.eval(row, cx)?;
                if a.is_null() || b.is_null() {
                    return Ok(Datum::Null);
                }
                match op {
                    BinOp::Eq
                    | BinOp::NotEq
                    | BinOp::Lt
                    | BinOp::LtEq
                    | BinOp::Gt
                    | BinOp::GtEq => {
                        let (a, b) = align(a, b)?;
                        let o = a.sql_cmp(&b).ok_or_else(|| bad_op(&a, &b))?;
                        Datum::Bool(match op {
                            BinOp::Eq => o == Ordering::Equal,
                            BinOp::NotEq => o != Ordering::Equal,
                            BinOp::Lt => o == Ordering::Less,
                            BinOp::LtEq => o != Ordering::Greater,
                            BinOp::Gt => o == Ordering::Greater,
                            _ => o != Ordering::Less,
                        })
                    }
                    BinOp::Concat if matches!((&a, &b), (Datum::Bytes(_), Datum::Bytes(_))) => {
                        let (Datum::Bytes(mut x), Datum::Bytes(y)) = (a, b) else {
                            unreachable!()
                        };
                        x.extend_from_slice(&y);
                        Datum::Bytes(x)
                    }
                    BinOp::Concat => {
                        // As a cast to text: booleans are `true` / `false` here.
                        let text = |d: Datum| match d {
                            Datum::Bool(b) => if b { "true" } else { "false" }.to_string(),
                            d => d.to_text(d.natural_type()).unwrap_or_default(),
                        };
                        let mut s = text(a);
                        s.push_str(&text(b));
                        Datum::Text(s)
                    }
                    _ => arith(*op, a, b, *ty)?,
                }
            }
            Scalar::Not(e) => match e.eval(row, cx)? {
                Datum::Bool(b) => Datum::Bool(!b),
                Datum::Null => Datum::Null,
                d => {
                    return Err(Error::mismatch(format!(
                        "argument of NOT must be type boolean, not type {}",
                        d.natural_type().name()
                    )))
                }
            },
            Scalar::Neg(e) => match e.eval(row, cx)? {
                Datum::Int(i) => Datum::Int(
                    i.checked_neg()
                        .ok_or_else(|| Error::out_of_range("integer out of range"))?,
                ),
                Datum::Float(f) => Datum::Float(-f),
                Datum::Numeric(n) => Datum::Numeric(-n),
                Datum::NumericSpecial(x) => Datum::NumericSpecial(-x),
                Datum::Interval(iv) => Datum::Interval(iv.checked_neg()?),
                Datum::Null => Datum::Null,
                d => {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!("operator does not exist: - {}", d.natural_type().name()),
                    ))
                }
            },
            // A row constructor is NULL when every field is, NOT NULL when none is
            // (PostgreSQL: `ROW(1, NULL)` is neither).
            Scalar::IsNull(e, neg) => match e.as_ref() {
                Scalar::Func(name, args, _) if name == "__row" => {
                    let (mut all_null, mut any_null) = (true, false);
                    for a in args.iter().skip(1) {
                        let null = a.eval(row, cx)?.is_null();
                        all_null &= null;
                        any_null |= null;
                    }
                    Datum::Bool(if *neg { !any_null } else { all_null })
                }
                _ => Datum::Bool(e.eval(row, cx)?.is_null() != *neg),
            },
            Scalar::IsBool(e, want, neg) => {
                let v = e.eval(row, cx)?.as_bool();
                Datum::Bool((v == Some(*want)) != *neg)
            }
            Scalar::IsDistinct(l, r, neg) => {
                let a = l.eval(row, cx)?;
                let b = r.eval(row, cx)?;
                let (a, b) = align(a, b)?;
                let same = match (a.is_null(), b.is_null()) {
                    (true, true) => true,
                    (false, false) => a.sql_cmp(&b) == Some(Ordering::Equal),
                    _ => false,
                };
                Datum::Bool(same == *neg)
            }
            Scalar::InList(x, list, neg) => {
                if list.is_empty() {
                    // IN over an empty subquery: false even for NULL.
                    return Ok(Datum::Bool(*neg));
                }
                let v = x.eval(row, cx)?;
                if v.is_null() {
                    return Ok(Datum::Null);
                }
                let mut saw_null = false;
                for it in list {
                    let d = it.eval(row, cx)?;
                    if d.is_null() {
                        saw_null = true;
                        continue;
                    }
                    let (a, b) = align(v.clone(), d)?;
                    if a.sql_cmp(&b) == Some(Ordering::Equal) {
                        return Ok(Datum::Bool(!neg));
                    }
                }
                if saw_null {
                    Datum::Null
                } else {
                    Datum::Bool(*neg)
                }
            }
            Scalar::Between(x, lo, hi, neg) => {
                let v = x.eval(row, cx)?;
                let l = lo.eval(row, cx)?;
                let h = hi.eval(row, cx)?;
                if v.is_null() || l.is_null() || h.is_null() {
                    return Ok(Datum::Null);
                }
                let (v1, l) = align(v.clone(), l)?;
                let (v2, h) = align(v, h)?;
                let inside = v1.sql_cmp(&l) != Some(Ordering::Less)
                    && v2.sql_cmp(&h) != Some(Ordering::Greater);
                Datum::Bool(inside != *neg)
            }
            Scalar::Like(x, p, neg, ci) => {
                let v = x.eval(row, cx)?;
                let pat = p.eval(row, cx)?;
                match (v, pat) {
                    (Datum::Null, _) | (_, Datum::Null) => Datum::Null,
                    (Datum::Text(s), Datum::Text(p)) => Datum::Bool(like(&s, &p, *ci) != *neg),
                    (a, _) => {
                        return Err(Error::new(
                            ErrorKind::UndefinedFunction,
                            format!(
                                "operator does not exist: {} ~~ unknown",
                                a.natural_type().name()
                            ),
                        ))
                    }
                }
            }
            Scalar::Case(op, whens, els) => {
                let base = match op {
                    Some(o) => Some(o.eval(row, cx)?),
                    None => None,
                };
                for (c, r) in whens {
                    let hit = match &base {
                        Some(b) => {
                            let v = c.eval(row, cx)?;
                            if b.is_null() || v.is_null() {
                                false
                            } else {
                                let (a, v) = align(b.clone(), v)?;
                                a.sql_cmp(&v) == Some(Ordering::Equal)
                            }
                        }
                        None => c.eval(row, cx)?.as_bool() == Some(true),
                    };
                    if hit {
                        return r.eval(row, cx);
                    }
                }
                match els {
                    Some(e) => e.eval(row, cx)?,
                    None => Datum::Null,
                }
            }
            Scalar::Cast(e, ty) => e.eval(row, cx)?.cast(*ty)?,
            Scalar::Func(name, args, ty) => eval_func(name, args, *ty, row, cx)?,
        })
    }
}

/// Brings two values of different kinds to a comparable pair (text vs typed values are
/// parsed as the typed kind).
fn align(a: Datum, b: Datum) -> Result<(Datum, Datum)> {
    Ok(match (&a, &b) {
        (Datum::Text(s), other) if !matches!(other, Datum::Text(_) | Datum::Null) => {
            (Datum::parse(other.natural_type(), s)?, b)
        }
        (other, Datum::Text(s)) if !matches!(other, Datum::Text(_) | Datum::Null) => {
            let t = other.natural_type();
            (a, Datum::parse(t, s)?)
        }
        _ => (a, b),
    })
}

/// PostgreSQL's `format(fmt, args…)`: `%s` (the value's text, NULL as nothing), `%I`
/// (quoted as an identifier when it needs to be), `%L` (quoted as a literal, NULL as
/// `NULL`), `%%`, and positions (`%2$s`); width and the `-` flag are not supported.
fn format_sql(fmt: &str, args: &[Datum]) -> Result<String> {
    let too_few = || {
        Error::new(
            ErrorKind::InvalidParameterValue,
            "too few arguments for format()",
        )
    };
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // An optional `n$` position.
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let index = if digits.is_empty() {
            next
        } else if chars.peek() == Some(&'$') {
            chars.next();
            let n: usize = digits.parse().map_err(|_| too_few())?;
            if n == 0 {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    "format specifies argument 0, but arguments are numbered from 1",
                ));
            }
            n - 1
        } else {
            return Err(Error::unsupported("a width in format()"));
        };
        let conversion = chars.next().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidParameterValue,
                "unterminated format() type specifier",
            )
        })?;
        let value = args.get(index).ok_or_else(too_few)?;
        next = index + 1;
        let text = value.to_text(value.natural_type());
        match conversion {
            's' => out.push_str(&text.unwrap_or_default()),
            'I' => {
                let Some(t) = text else {
                    return Err(Error::new(
                        ErrorKind::InvalidParameterValue,
                        "null values cannot be formatted as an SQL identifier",
                    ));
                };
                let plain = t
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                    && t.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if plain {
                    out.push_str(&t);
                } else {
                    out.push('"');
                    out.push_str(&t.replace('"', "\"\""));
                    out.push('"');
                }
            }
            'L' => match text {
                None => out.push_str("NULL"),
                Some(t) => {
                    if t.contains('\\') {
                        out.push('E');
                    }
                    out.push('\'');
                    out.push_str(&t.replace('\\', "\\\\").replace('\'', "''"));
                    out.push('\'');
                }
            },
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    format!("unrecognized format() type specifier \"{other}\""),
                ))
            }
        }
    }
    Ok(out)
}

fn text_arg(args: &[Datum], i: usize) -> Option<String> {
    args.get(i).and_then(|d| d.to_text(d.natural_type()))
}

/// A `__row` call's value: its fields (after the list of their type tags) in PostgreSQL's
/// record output: `(1,,"a b")`, NULL fields empty, a field quoted when it is empty or holds
/// a quote, backslash, parenthesis, comma or white space (quotes and backslashes doubled).
fn record_value(args: &[Scalar], row: &[Datum], cx: &EvalCtx) -> Result<Datum> {
    let Some(Scalar::Const(Datum::Text(tags))) = args.first() else {
        return Err(Error::internal("a record without its field types"));
    };
    let types = tags
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().ok().and_then(SqlType::from_tag));
    let mut out = String::from("(");
    for (i, (a, ty)) in args[1..].iter().zip(types).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = a.eval(row, cx)?;
        let ty = ty.unwrap_or_else(|| v.natural_type());
        let Some(text) = v.to_text(ty) else { continue };
        let quote = text.is_empty()
            || text
                .chars()
                .any(|c| matches!(c, '"' | '\\' | '(' | ')' | ',') || c.is_whitespace());
        if quote {
            out.push('"');
            for c in text.chars() {
                if c == '"' || c == '\\' {
                    out.push(c);
                }
                out.push(c);
            }
            out.push('"');
        } else {
            out.push_str(&text);
        }
    }
    out.push(')');
    Ok(Datum::Text(out))
}

fn eval_func(
    name: &str,
    args: &[Scalar],
    ty: SqlType,
    row: &[Datum],
    cx: &EvalCtx,
) -> Result<Datum> {
    // Functions that do not evaluate all arguments eagerly.
    if name == "__array" {
        // ARRAY[a, b, …]: each element cast to the element type, NULLs kept.
        let elem = ty.array_elem().unwrap_or(SqlType::Text);
        let mut texts = Vec::with_capacity(args.len());
        for a in args {
            let v = a.eval(row, cx)?;
            // A record's value is its text already (there is no record input).
            let v = if elem == SqlType::Record {
                v
            } else {
                v.cast(elem)?
            };
            texts.push(v.to_text(elem));
        }
        return Ok(Datum::Text(crate::sql::types::format_array(&texts)));
    }
    if name == "__row" {
        return record_value(args, row, cx);
    }
    if name == "coalesce" {
        for a in args {
            let v = a.eval(row, cx)?;
            if !v.is_null() {
                return v.cast(ty);
            }
        }
        return Ok(Datum::Null);
    }
    let vals: Vec<Datum> = args
        .iter()
        .map(|a| a.eval(row, cx))
        .collect::<Result<_>>()?;
    if name.starts_with("__array_") && crate::sql::array::NAMES.contains(&name) {
        return crate::sql::array::eval(name, &vals, ty);
    }
    let strict_null = !matches!(
        name,
        "concat"
            | "format"
            | "concat_ws"
            | "greatest"
            | "least"
            | "nullif"
            | "now"
            | "current_timestamp"
            | "gen_random_uuid"
            | "unique_rowid"
            | "lastval"
            | "random"
            | "version"
            | "current_database"
            | "current_user"
            | "current_schema"
            | "pi"
            | "jsonb_build_object"
            | "jsonb_build_array"
    ) && !crate::sql::pg_catalog::is_non_strict(name)
        && !crate::sql::scalar_functions::is_non_strict(name);
    if strict_null && vals.iter().any(|v| v.is_null()) {
        return Ok(Datum::Null);
    }
    if crate::sql::scalar_functions::NAMES.contains(&name) {
        return crate::sql::scalar_functions::eval(name, &vals, ty);
    }
    if crate::sql::regex_functions::NAMES.contains(&name) {
        return crate::sql::regex_functions::eval(name, &vals);
    }
    if crate::sql::datetime_format::NAMES.contains(&name) {
        return crate::sql::datetime_format::eval(name, &vals);
    }
    let nargs = |n: usize| -> Result<()> {
        if vals.len() == n {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::UndefinedFunction,
                format!("function {name} expects {n} argument(s)"),
            ))
        }
    };
    Ok(match name {
        "__numeric_typmod" => match (&vals[0], &vals[1], &vals[2]) {
            (Datum::Numeric(d), Datum::Int(p), Datum::Int(s)) => {
                Datum::Numeric(numeric_typmod(*d, *p as u32, *s as u32)?)
            }
            (Datum::NumericSpecial(x), Datum::Int(p), Datum::Int(s)) => {
                Datum::NumericSpecial(x.check_typmod(*p as u32, *s as u32)?)
            }
            (other, _, _) => other.clone(),
        },
        "__varchar_typmod" => match (&vals[0], &vals[1]) {
            (Datum::Text(t), Datum::Int(n)) => Datum::Text(t.chars().take(*n as usize).collect()),
            (other, _) => other.clone(),
        },
        "__jsonb_get" | "__jsonb_get_text" | "__jsonb_path" | "__jsonb_path_text"
        | "__jsonb_contains" | "__jsonb_contained" | "__jsonb_has_key" | "__jsonb_concat"
        | "jsonb_typeof" | "jsonb_array_length" | "to_jsonb" | "jsonb_build_object"
        | "jsonb_build_array" => jsonb_function(name, &vals)?,
        "justify_days" | "justify_hours" | "justify_interval" => match &vals[0] {
            Datum::Interval(iv) => Datum::Interval(match name {
                "justify_days" => iv.justify_days()?,
                "justify_hours" => iv.justify_hours()?,
                _ => iv.justify_interval()?,
            }),
            other => {
                return Err(Error::mismatch(format!(
                    "{name} expects an interval, not {}",
                    other.natural_type().name()
                )))
            }
        },
        "age" => {
            let micros = |d: &Datum| -> Result<i64> {
                Ok(match d {
                    Datum::Date(d) => *d as i64 * crate::sql::types::MICROS_PER_DAY,
                    Datum::Timestamp(t) | Datum::TimestampTz(t) => *t,
                    other => {
                        return Err(Error::mismatch(format!(
                            "age expects a timestamp, not {}",
                            other.natural_type().name()
                        )))
                    }
                })
            };
            let (a, b) = match vals.as_slice() {
                [b] => {
                    let day = crate::sql::types::MICROS_PER_DAY;
                    (cx.now_micros.div_euclid(day) * day, micros(b)?)
                }
                [a, b] => (micros(a)?, micros(b)?),
                _ => {
                    return Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        "function age does not exist",
                    ))
                }
            };
            Datum::Interval(crate::sql::interval::age(a, b)?)
        }
        "make_interval" => {
            let mut f = [0.0f64; 7];
            for (i, v) in vals.iter().enumerate() {
                f[i] = to_f64(v).unwrap_or(0.0);
            }
            let int = |v: f64| -> Result<i64> {
                if v.fract() != 0.0 || !v.is_finite() || v.abs() > i32::MAX as f64 {
                    return Err(crate::sql::interval::out_of_range());
                }
                Ok(v as i64)
            };
            let months = int(f[0])? * 12 + int(f[1])?;
            let days = int(f[2])? * 7 + int(f[3])?;
            let micros = (f[4] * 3_600_000_000.0 + f[5] * 60_000_000.0 + f[6] * 1_000_000.0)
                .round_ties_even();
            if !micros.is_finite() || micros.abs() >= 9.2e18 {
                return Err(crate::sql::interval::out_of_range());
            }
            Datum::Interval(crate::sql::interval::Interval::new(
                i32::try_from(months).map_err(|_| crate::sql::interval::out_of_range())?,
                i32::try_from(days).map_err(|_| crate::sql::interval::out_of_range())?,
                micros as i64,
            ))
        }
        "lower" => Datum::Text(text_arg(&vals, 0).unwrap_or_default().to_lowercase()),
        "upper" => Datum::Text(text_arg(&vals, 0).unwrap_or_default().to_uppercase()),
        "initcap" => {
            let s = text_arg(&vals, 0).unwrap_or_default();
            let mut out = String::new();
            let mut start = true;
            for c in s.chars() {
                if c.is_alphanumeric() {
                    if start {
                        out.extend(c.to_uppercase())
                    } else {
                        out.extend(c.to_lowercase())
                    }
                    start = false;
                } else {
                    out.push(c);
                    start = true;
                }
            }
            Datum::Text(out)
        }
        "length" | "char_length" | "character_length" => match &vals[0] {
            Datum::Bytes(b) => Datum::Int(b.len() as i64),
            _ => Datum::Int(text_arg(&vals, 0).unwrap_or_default().chars().count() as i64),
        },
        "octet_length" => match &vals[0] {
            Datum::Bytes(b) => Datum::Int(b.len() as i64),
            _ => Datum::Int(text_arg(&vals, 0).unwrap_or_default().len() as i64),
        },
        "bit_length" => match &vals[0] {
            Datum::Bytes(b) => Datum::Int(b.len() as i64 * 8),
            _ => Datum::Int(text_arg(&vals, 0).unwrap_or_default().len() as i64 * 8),
        },
        "format" => match vals.first() {
            Some(Datum::Null) | None => Datum::Null,
            Some(f) => Datum::Text(format_sql(
                &f.to_text(f.natural_type()).unwrap_or_default(),
                &vals[1..],
            )?),
        },
        "concat_ws" => {
            // The separator NULL makes NULL; NULL values are skipped.
            let Some(sep) = text_arg(&vals, 0).filter(|_| !vals[0].is_null()) else {
                return Ok(Datum::Null);
            };
            let parts: Vec<String> = vals[1..]
                .iter()
                .filter_map(|v| v.to_text(v.natural_type()))
                .collect();
            Datum::Text(parts.join(&sep))
        }
        "split_part" => {
            nargs(3)?;
            let s = text_arg(&vals, 0).unwrap_or_default();
            let delim = text_arg(&vals, 1).unwrap_or_default();
            let n = match vals[2] {
                Datum::Int(n) => n,
                _ => return Err(Error::mismatch("split_part: an integer field position")),
            };
            if n == 0 {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    "field position must not be zero",
                ));
            }
            let fields: Vec<&str> = if delim.is_empty() {
                vec![s.as_str()]
            } else {
                s.split(delim.as_str()).collect()
            };
            // A negative position counts from the end (PostgreSQL 14).
            let index = if n > 0 {
                (n - 1) as usize
            } else {
                match fields.len().checked_sub(n.unsigned_abs() as usize) {
                    Some(i) => i,
                    None => usize::MAX,
                }
            };
            Datum::Text(fields.get(index).map(|f| f.to_string()).unwrap_or_default())
        }
        "ascii" => Datum::Int(
            text_arg(&vals, 0)
                .unwrap_or_default()
                .chars()
                .next()
                .map(|c| c as i64)
                .unwrap_or(0),
        ),
        "btrim" | "ltrim" | "rtrim" if matches!(vals.first(), Some(Datum::Bytes(_))) => {
            let (Some(Datum::Bytes(b)), Some(Datum::Bytes(set))) = (vals.first(), vals.get(1))
            else {
                return Err(Error::new(
                    ErrorKind::UndefinedFunction,
                    format!("function {name}(bytea) does not exist"),
                ));
            };
            let keep = |c: &u8| !set.contains(c);
            let start = match name {
                "rtrim" => 0,
                _ => b.iter().position(keep).unwrap_or(b.len()),
            };
            let end = match name {
                "ltrim" => b.len(),
                _ => b.iter().rposition(keep).map(|i| i + 1).unwrap_or(0),
            };
            Datum::Bytes(if start < end {
                b[start..end].to_vec()
            } else {
                Vec::new()
            })
        }
        "overlay" => {
            let s: Vec<char> = text_arg(&vals, 0).unwrap_or_default().chars().collect();
            let placing = text_arg(&vals, 1).unwrap_or_default();
            let from = match vals.get(2) {
                Some(Datum::Int(i)) => *i,
                _ => 1,
            };
            let count = match vals.get(3) {
                Some(Datum::Int(i)) => *i,
                _ => placing.chars().count() as i64,
            };
            // substr(s, 1, from - 1) || placing || substr(s, from + count)
            if from < 1 || count < 0 && from.saturating_add(count) < 1 {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    "negative substring length not allowed",
                ));
            }
            let head = ((from - 1) as usize).min(s.len());
            let tail = from.saturating_add(count).max(1) as usize - 1;
            let mut out: String = s[..head].iter().collect();
            out.push_str(&placing);
            if tail < s.len() {
                out.extend(&s[tail..]);
            }
            Datum::Text(out)
        }
        "__bitand" | "__bitor" | "__bitxor" | "__shl" | "__shr" => {
            let (Some(Datum::Int(a)), Some(Datum::Int(b))) = (vals.first(), vals.get(1)) else {
                return Err(Error::mismatch(format!("{name}: integers expected")));
            };
            let (a, b) = (*a, *b);
            let bits: u32 = match ty {
                SqlType::Int2 => 16,
                SqlType::Int4 => 32,
                _ => 64,
            };
            // Shifts work on the type's own width and wrap, as PostgreSQL's int4shl.
            let shift = |v: i64| -> i64 {
                let n = b.rem_euclid(bits as i64) as u32;
                match (name, bits) {
                    ("__shl", 16) => (v as i16).wrapping_shl(n) as i64,
                    ("__shl", 32) => (v as i32).wrapping_shl(n) as i64,
                    ("__shl", _) => v.wrapping_shl(n),
                    (_, 16) => (v as i16).wrapping_shr(n) as i64,
                    (_, 32) => (v as i32).wrapping_shr(n) as i64,
                    _ => v.wrapping_shr(n),
                }
            };
            Datum::Int(match name {
                "__bitand" => a & b,
                "__bitor" => a | b,
                "__bitxor" => a ^ b,
                _ => shift(a),
            })
        }
        "__bitnot" => match vals.first() {
            Some(Datum::Int(a)) => Datum::Int(!a),
            _ => return Err(Error::mismatch("~: an integer expected")),
        },
        "cbrt" => Datum::Float(to_f64(&vals[0]).unwrap_or(0.0).cbrt()),
        "get_bit" | "get_byte" | "set_bit" | "set_byte" | "bit_count" | "encode"
        | "convert_from" => crate::sql::bytea_functions::eval(name, &vals)?,
        "decode" => {
            let (Some(text), Some(format)) = (text_arg(&vals, 0), text_arg(&vals, 1)) else {
                return Ok(Datum::Null);
            };
            Datum::Bytes(crate::sql::bytea_functions::decode(&text, &format)?)
        }
        "convert_to" => {
            let (Some(text), Some(encoding)) = (text_arg(&vals, 0), text_arg(&vals, 1)) else {
                return Ok(Datum::Null);
            };
            crate::sql::bytea_functions::check_encoding(&encoding)?;
            Datum::Bytes(text.into_bytes())
        }
        "btrim" | "ltrim" | "rtrim" => {
            let s = text_arg(&vals, 0).unwrap_or_default();
            let set: Vec<char> = text_arg(&vals, 1)
                .unwrap_or_else(|| " ".into())
                .chars()
                .collect();
            Datum::Text(match name {
                "btrim" => s.trim_matches(|c| set.contains(&c)).to_string(),
                "ltrim" => s.trim_start_matches(|c| set.contains(&c)).to_string(),
                _ => s.trim_end_matches(|c| set.contains(&c)).to_string(),
            })
        }
        "concat" => Datum::Text(
            vals.iter()
                .filter_map(|v| v.to_text(v.natural_type()))
                .collect(),
        ),
        "substr" | "substring" if matches!(vals.first(), Some(Datum::Bytes(_))) => {
            let Some(Datum::Bytes(b)) = vals.first() else {
                unreachable!("matched above")
            };
            let start = match vals.get(1) {
                Some(Datum::Int(i)) => *i,
                _ => 1,
            };
            let end = match vals.get(2) {
                Some(Datum::Int(n)) if *n < 0 => {
                    return Err(Error::new(
                        ErrorKind::InvalidParameterValue,
                        "negative substring length not allowed",
                    ))
                }
                Some(Datum::Int(n)) => start.saturating_add(*n),
                _ => i64::MAX,
            };
            let from = start.max(1) as usize - 1;
            let to = end.clamp(1, b.len() as i64 + 1) as usize - 1;
            Datum::Bytes(if from < to && from < b.len() {
                b[from..to].to_vec()
            } else {
                Vec::new()
            })
        }
        "substr" | "substring" => {
            let s: Vec<char> = text_arg(&vals, 0).unwrap_or_default().chars().collect();
            let start = match vals.get(1) {
                Some(Datum::Int(i)) => *i,
                _ => 1,
            };
            let (from, to) = match vals.get(2) {
                Some(Datum::Int(n)) => {
                    if *n < 0 {
                        return Err(Error::new(
                            ErrorKind::InvalidParameterValue,
                            "negative substring length not allowed",
                        ));
                    }
                    (start, start.saturating_add(*n))
                }
                _ => (start, i64::MAX),
            };
            let from = from.max(1) as usize - 1;
            let to = to.clamp(1, s.len() as i64 + 1) as usize - 1;
            Datum::Text(if from < to && from < s.len() {
                s[from..to].iter().collect()
            } else {
                String::new()
            })
        }
        "replace" => {
            nargs(3)?;
            let s = text_arg(&vals, 0).unwrap_or_default();
            let from = text_arg(&vals, 1).unwrap_or_default();
            let to = text_arg(&vals, 2).unwrap_or_default();
            Datum::Text(if from.is_empty() {
                s
            } else {
                s.replace(&from, &to)
            })
        }
        "repeat" => {
            nargs(2)?;
            let n = match vals[1] {
                Datum::Int(n) => n.max(0) as usize,
                _ => 0,
            };
            let s = text_arg(&vals, 0).unwrap_or_default();
            if s.len().saturating_mul(n) > 64 << 20 {
                return Err(Error::out_of_range("requested length too large"));
            }
            Datum::Text(s.repeat(n))
        }
        "left" | "right" => {
            nargs(2)?;
            let s: Vec<char> = text_arg(&vals, 0).unwrap_or_default().chars().collect();
            let n = match vals[1] {
                Datum::Int(n) => n,
                _ => 0,
            };
            let len = s.len() as i64;
            let k = if n >= 0 { n.min(len) } else { (len + n).max(0) } as usize;
            Datum::Text(if name == "left" {
                s[..k].iter().collect()
            } else {
                s[s.len() - k..].iter().collect()
            })
        }
        "reverse" => Datum::Text(
            text_arg(&vals, 0)
                .unwrap_or_default()
                .chars()
                .rev()
                .collect(),
        ),
        "strpos" => {
            let s = text_arg(&vals, 0).unwrap_or_default();
            let sub = text_arg(&vals, 1).unwrap_or_default();
            Datum::Int(
                s.find(&sub)
                    .map(|b| s[..b].chars().count() as i64 + 1)
                    .unwrap_or(0),
            )
        }
        "abs" => match &vals[0] {
            Datum::Int(i) => Datum::Int(
                i.checked_abs()
                    .ok_or_else(|| Error::out_of_range("integer out of range"))?,
            ),
            Datum::Float(f) => Datum::Float(f.abs()),
            Datum::Numeric(n) => Datum::Numeric(n.abs()),
            Datum::NumericSpecial(x) => Datum::NumericSpecial(x.abs()),
            d => d.clone().cast(SqlType::Float8)?,
        },
        "sign" => match &vals[0] {
            Datum::Int(i) if ty == SqlType::Numeric => Datum::Numeric(Decimal::from(i.signum())),
            Datum::Int(i) => Datum::Int(i.signum()),
            // sign() of a double precision NaN is 0 in PostgreSQL.
            Datum::Float(f) => Datum::Float(if *f == 0.0 || f.is_nan() {
                0.0
            } else {
                f.signum()
            }),
            Datum::Numeric(n) => Datum::Numeric(n.signum()),
            Datum::NumericSpecial(x) => x.sign(),
            _ => Datum::Null,
        },
        "round" | "trunc" => {
            let places = match vals.get(1) {
                Some(Datum::Int(p)) => *p as i32,
                _ => 0,
            };
            match &vals[0] {
                // Rounding leaves NaN and the infinities as they are.
                Datum::NumericSpecial(x) => Datum::NumericSpecial(*x),
                Datum::Float(f) if vals.len() == 1 => Datum::Float(if name == "round" {
                    f.round_ties_even_pg()
                } else {
                    f.trunc()
                }),
                d => {
                    let n =
                        to_decimal(d).ok_or_else(|| Error::mismatch("round() needs a number"))?;
                    let strategy = if name == "round" {
                        RoundingStrategy::MidpointAwayFromZero
                    } else {
                        RoundingStrategy::ToZero
                    };
                    let r = if places >= 0 {
                        let mut r = n.round_dp_with_strategy(places as u32, strategy);
                        // PostgreSQL's result has exactly `places` digits after the point
                        // (round(3.5, 2) is 3.50), where the precision allows.
                        if (places as u32) > r.scale() && places <= 28 {
                            let mut padded = r;
                            padded.rescale(places as u32);
                            if padded == r {
                                r = padded;
                            }
                        }
                        r
                    } else {
                        let f = Decimal::from(10i64.pow((-places).min(18) as u32));
                        (n / f).round_dp_with_strategy(0, strategy) * f
                    };
                    Datum::Numeric(r)
                }
            }
        }
        "ceil" | "ceiling" | "floor" => match &vals[0] {
            Datum::Numeric(n) => {
                let mut r = if name == "floor" { n.floor() } else { n.ceil() };
                // NUMERIC has no negative zero: ceil(-0.5) is 0, not -0.
                if r.is_zero() {
                    r.set_sign_positive(true);
                }
                Datum::Numeric(r)
            }
            Datum::NumericSpecial(x) => Datum::NumericSpecial(*x),
            d => {
                let f = to_f64(d).unwrap_or(0.0);
                Datum::Float(if name == "floor" { f.floor() } else { f.ceil() })
            }
        },
        "sqrt" => match &vals[0] {
            Datum::NumericSpecial(x) if ty == SqlType::Numeric => Datum::NumericSpecial(x.sqrt()?),
            Datum::Numeric(n) if ty == SqlType::Numeric => {
                if n.is_sign_negative() && !n.is_zero() {
                    return Err(negative_sqrt_error());
                }
                Datum::Numeric(numeric_sqrt(*n))
            }
            d => {
                let f = to_f64(d).unwrap_or(0.0);
                if f < 0.0 {
                    return Err(negative_sqrt_error());
                }
                Datum::Float(f.sqrt())
            }
        },
        "power" | "pow" => Datum::Float(
            to_f64(&vals[0])
                .unwrap_or(0.0)
                .powf(to_f64(&vals[1]).unwrap_or(0.0)),
        ),
        "exp" => Datum::Float(to_f64(&vals[0]).unwrap_or(0.0).exp()),
        "ln" | "log" => {
            let f = to_f64(&vals[0]).unwrap_or(0.0);
            if f <= 0.0 {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    "cannot take logarithm of zero or a negative number",
                ));
            }
            Datum::Float(if name == "ln" { f.ln() } else { f.log10() })
        }
        "pi" => Datum::Float(std::f64::consts::PI),
        "random" => {
            Datum::Float((crate::sql::session::next_random() >> 11) as f64 / (1u64 << 53) as f64)
        }
        "mod" => {
            nargs(2)?;
            arith(BinOp::Mod, vals[0].clone(), vals[1].clone(), ty)?
        }
        "greatest" | "least" => {
            let mut best: Option<Datum> = None;
            for v in vals {
                if v.is_null() {
                    continue;
                }
                let v = v.cast(ty)?;
                best = Some(match best {
                    None => v,
                    Some(b) => {
                        let o = v.order_cmp(&b);
                        if (name == "greatest" && o == Ordering::Greater)
                            || (name == "least" && o == Ordering::Less)
                        {
                            v
                        } else {
                            b
                        }
                    }
                });
            }
            best.unwrap_or(Datum::Null)
        }
        "nullif" => {
            nargs(2)?;
            let (a, b) = align(vals[0].clone(), vals[1].clone())?;
            if !a.is_null() && a.sql_cmp(&b) == Some(Ordering::Equal) {
                Datum::Null
            } else {
                vals[0].clone()
            }
        }
        "extract" | "date_part" => {
            nargs(2)?;
            let field = match &vals[0] {
                Datum::Text(f) => f.to_lowercase(),
                _ => return Err(Error::invalid_text("date_part: field must be text")),
            };
            if let Datum::Interval(iv) = &vals[1] {
                let v = iv.extract(&field)?;
                return Ok(if name == "date_part" {
                    Datum::Float(v.to_string().parse().unwrap_or(0.0))
                } else {
                    Datum::Numeric(v)
                });
            }
            let micros = match &vals[1] {
                Datum::Date(d) => *d as i64 * 86_400_000_000,
                Datum::Timestamp(t) | Datum::TimestampTz(t) => *t,
                Datum::Text(s) => match crate::sql::types::parse_timestamp(s) {
                    Some((t, off)) => t - off.unwrap_or(0) * 1_000_000,
                    None => {
                        return Err(Error::invalid_text(format!(
                            "invalid input syntax for type timestamp: \"{s}\""
                        )))
                    }
                },
                other => {
                    return Err(Error::mismatch(format!(
                        "cannot extract from {}",
                        other.natural_type().name()
                    )))
                }
            };
            let is_date = matches!(vals[1], Datum::Date(_));
            let v = match &vals[1] {
                // The fields of the wall-clock time in the session's zone; the epoch is
                // the instant's.
                Datum::TimestampTz(t) => {
                    let offset = crate::sql::time_zone::with_current(|z| z.offset_at(*t)) as i64;
                    match field.as_str() {
                        "epoch" => date_field(&field, *t, false)?,
                        "timezone" => rust_decimal::Decimal::from(offset),
                        "timezone_hour" => rust_decimal::Decimal::from(offset / 3600),
                        "timezone_minute" => rust_decimal::Decimal::from(offset / 60 % 60),
                        _ => date_field(&field, t.saturating_add(offset * 1_000_000), false)?,
                    }
                }
                _ => date_field(&field, micros, is_date)?,
            };
            if name == "date_part" {
                Datum::Float(v.to_string().parse().unwrap_or(0.0))
            } else {
                Datum::Numeric(v)
            }
        }
        "md5" => Datum::Text(match &vals[0] {
            Datum::Bytes(b) => crate::sql::md5::hex_digest(b),
            _ => crate::sql::md5::hex_digest(text_arg(&vals, 0).unwrap_or_default().as_bytes()),
        }),
        "to_hex" => match vals[0] {
            Datum::Int(i) => Datum::Text(format!("{:x}", i)),
            _ => Datum::Null,
        },
        "lpad" | "rpad" => {
            let s: Vec<char> = text_arg(&vals, 0).unwrap_or_default().chars().collect();
            let n = match vals.get(1) {
                Some(Datum::Int(n)) => (*n).clamp(0, 1 << 20) as usize,
                _ => 0,
            };
            let fill: Vec<char> = text_arg(&vals, 2)
                .unwrap_or_else(|| " ".into())
                .chars()
                .collect();
            if s.len() >= n || fill.is_empty() {
                Datum::Text(s[..n.min(s.len())].iter().collect())
            } else {
                let pad: String = fill.iter().cycle().take(n - s.len()).collect();
                let body: String = s.iter().collect();
                Datum::Text(if name == "lpad" {
                    pad + &body
                } else {
                    body + &pad
                })
            }
        }
        "now"
        | "current_timestamp"
        | "transaction_timestamp"
        | "statement_timestamp"
        | "clock_timestamp" => Datum::TimestampTz(cx.now_micros),
        // The HLC timestamp as CockroachDB prints it: wall nanos, 10 digits of logical.
        "cluster_logical_timestamp" => Datum::Numeric(
            format!("{}.{:010}", cx.txn_ts.wall, cx.txn_ts.logical)
                .parse()
                .map_err(|_| Error::out_of_range("cluster_logical_timestamp out of range"))?,
        ),
        "gen_random_uuid" | "uuid_generate_v4" => {
            let a = crate::sql::session::next_random();
            let b = crate::sql::session::next_random();
            let mut u = [0u8; 16];
            u[..8].copy_from_slice(&a.to_be_bytes());
            u[8..].copy_from_slice(&b.to_be_bytes());
            u[6] = (u[6] & 0x0f) | 0x40;
            u[8] = (u[8] & 0x3f) | 0x80;
            Datum::Uuid(u)
        }
        "nextval" | "currval" | "setval" | "lastval" => {
            let func = match name {
                "nextval" => "nextval",
                "currval" => "currval",
                "setval" => "setval",
                _ => "lastval",
            };
            let arg = vals
                .first()
                .map(crate::sql::sequence::arg_key)
                .unwrap_or_default();
            Datum::Int(cx.seq.borrow_mut().take(func, &arg)?)
        }
        // Slept ahead of evaluation (`exec`'s `run_sequence_calls`).
        "pg_sleep" => Datum::Text(String::new()),
        "unique_rowid" => {
            let v = cx.rowid.get();
            cx.rowid.set(v + 1);
            Datum::Int(v)
        }
        "version" => {
            Datum::Text("PostgreSQL 15.0 (Chitin 0.1.0, a CockroachDB-compatible database)".into())
        }
        "current_database" => Datum::Text(cx.database.clone()),
        "current_user" => Datum::Text(cx.user.clone()),
        "current_schema" => match &cx.current_schema {
            Some(s) => Datum::Text(s.clone()),
            None => Datum::Null,
        },
        "current_setting" => {
            let name = match vals.first() {
                Some(Datum::Text(t)) => t.to_lowercase(),
                _ => return Ok(Datum::Null),
            };
            let missing_ok = matches!(vals.get(1), Some(Datum::Bool(true)));
            match cx.settings.get(&name) {
                Some(v) => Datum::Text(v.clone()),
                None if name == "database" => Datum::Text(cx.database.clone()),
                None if missing_ok => Datum::Null,
                None => {
                    return Err(Error::new(
                        ErrorKind::UndefinedObject,
                        format!("unrecognized configuration parameter \"{name}\""),
                    ))
                }
            }
        }
        n if crate::sql::pg_catalog::eval_function(n, &vals).is_some() => {
            crate::sql::pg_catalog::eval_function(n, &vals).unwrap()?
        }
        _ => {
            return Err(Error::new(
                ErrorKind::UndefinedFunction,
                format!("function {name} does not exist"),
            ))
        }
    })
}

trait RoundPg {
    fn round_ties_even_pg(self) -> f64;
}
impl RoundPg for f64 {
    fn round_ties_even_pg(self) -> f64 {
        self.round_ties_even()
    }
}

/// One field of a date or timestamp (`micros` since 1970-01-01), as EXTRACT returns it.
fn date_field(field: &str, micros: i64, is_date: bool) -> Result<rust_decimal::Decimal> {
    use rust_decimal::Decimal;
    let days = micros.div_euclid(86_400_000_000);
    let in_day = micros.rem_euclid(86_400_000_000);
    let (y, m, d) = crate::sql::types::civil_from_days(days);
    let doy = days - crate::sql::types::days_from_civil(y, 1, 1) + 1;
    let dow = (days + 4).rem_euclid(7); // 1970-01-01 was a Thursday
    let int = |v: i64| Ok(Decimal::from(v));
    let time_field = |what: &str| -> Result<Decimal> {
        if is_date {
            return Err(Error::new(
                ErrorKind::InvalidParameterValue,
                format!("unit \"{what}\" not supported for type date"),
            ));
        }
        Ok(Decimal::ZERO)
    };
    match field {
        "year" | "years" => int(y),
        "month" | "months" => int(m as i64),
        "day" | "days" => int(d as i64),
        "hour" | "hours" => time_field("hour").map(|_| Decimal::from(in_day / 3_600_000_000)),
        "minute" | "minutes" => {
            time_field("minute").map(|_| Decimal::from(in_day / 60_000_000 % 60))
        }
        "second" | "seconds" => time_field("second").map(|_| Decimal::new(in_day % 60_000_000, 6)),
        "millisecond" | "milliseconds" => {
            time_field("milliseconds").map(|_| Decimal::new(in_day % 60_000_000, 3))
        }
        "microsecond" | "microseconds" => {
            time_field("microseconds").map(|_| Decimal::from(in_day % 60_000_000))
        }
        "dow" => int(dow),
        "isodow" => int(if dow == 0 { 7 } else { dow }),
        "doy" => int(doy),
        "quarter" => int((m as i64 - 1) / 3 + 1),
        "decade" => int(y.div_euclid(10)),
        "century" => int(if y > 0 {
            (y + 99) / 100
        } else {
            -((-y + 99) / 100)
        }),
        "millennium" => int(if y > 0 {
            (y + 999) / 1000
        } else {
            -((-y + 999) / 1000)
        }),
        "week" => {
            // ISO 8601 week: the week with the year's first Thursday is week 1.
            let iso_dow = if dow == 0 { 7 } else { dow };
            let thursday = days - iso_dow + 4;
            let (ty, _, _) = crate::sql::types::civil_from_days(thursday);
            let first = crate::sql::types::days_from_civil(ty, 1, 1);
            int((thursday - first) / 7 + 1)
        }
        "epoch" => Ok(if is_date {
            Decimal::from(micros / 1_000_000)
        } else {
            Decimal::new(micros, 6)
        }),
        other => Err(Error::new(
            ErrorKind::InvalidParameterValue,
            format!("unit \"{other}\" not recognized for type timestamp"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like("hello", "h%o", false));
        assert!(like("hello", "_ello", false));
        assert!(!like("hello", "H%", false));
        assert!(like("hello", "H%", true));
        assert!(like("50%", "50\\%", false));
    }

    #[test]
    fn int4_overflow_is_an_error() {
        let e = arith_int(BinOp::Add, i32::MAX as i64, 1, SqlType::Int4).unwrap_err();
        assert_eq!(e.sqlstate(), "22003");
        let e = arith_int(BinOp::Div, 1, 0, SqlType::Int4).unwrap_err();
        assert_eq!(e.sqlstate(), "22012");
    }
}
