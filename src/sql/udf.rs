//! SQL-language user-defined functions: how a call is resolved and inlined.
//!
//! `CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql AS 'select a + b'` stores a
//! [`FunctionDesc`] (its body as text, `exec::functions`). A statement that calls `add` is
//! rewritten before it is planned ([`inline_calls`], from `exec::Exec::run` and
//! `exec::describe`): the call becomes the body's expression, each parameter (`$1` or its
//! name) replaced by `CAST(argument AS parameter type)`, the whole cast to the declared
//! return type. A body that reads tables (`select count(*) from t where x = $1`) becomes a
//! scalar subquery with `LIMIT 1` (a SQL function answers its query's first row, NULL when
//! there is none), which the subquery machinery (`rewrite`) runs, correlated when an
//! argument refers to the outer query's columns. Calls inside a body are inlined in turn,
//! up to [`MAX_DEPTH`] levels.
//!
//! Which function a call means follows PostgreSQL's rules as far as argument types are
//! known before binding (`Inliner::arg_type`): the candidates of the name whose
//! parameters take the arguments (positional ones first, then `name => value`, parameters
//! left out having defaults) and to which every known argument type converts implicitly;
//! then those with the most exact matches, then the most preferred types (`float8`,
//! `text`) where an argument converts, then a string parameter for an untyped literal.
//! More than one left is 42725, none 42883. An argument whose type is not known here (a
//! parameter `$n`, an expression of a built-in function) fits any parameter.
//!
//! # Implementation caveats
//!
//! - Inlining is textual: a volatile argument used twice in the body is evaluated twice,
//!   and a STRICT function evaluates its arguments once more for the NULL test.
//! - Recursive SQL functions cannot be inlined: nesting deeper than [`MAX_DEPTH`] is
//!   54001, and so is a call that expands to more than [`MAX_EXPANDED_NODES`]
//!   expressions (arguments are copied where the body uses them).
//! - A function shadows a built-in of the same name (PostgreSQL searches `pg_catalog`
//!   first). Statements and views see functions; column DEFAULTs and CHECKs may not
//!   call them (0A000: they are bound without this rewrite), and nothing records that a
//!   view depends on a function, so DROP FUNCTION does not refuse.
//! - A table-reading body runs where the subquery machinery runs subqueries (WHERE,
//!   SELECT lists and derived tables; correlated only in WHERE and ungrouped SELECT
//!   lists), not inside a view. An argument's column is qualified by the caller's FROM
//!   item only when a table (not a derived table or CTE) provides it.
//! - Only scalar results: no `SETOF` / `RETURNS TABLE` / `void`, no OUT parameters, no
//!   bodies of several statements, no `BEGIN ATOMIC`, only `LANGUAGE sql`.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::rc::Rc;

use sqlparser::ast::{self, Expr, Statement};

use crate::error::{Error, ErrorKind, Result};
use crate::sql::catalog::{Catalog, FunctionBody, FunctionDesc, SearchPath};
use crate::sql::expr::{ident_name, is_agg_name, sql_type};
use crate::sql::types::SqlType;

/// How deep calls inside function bodies may nest when inlined.
pub const MAX_DEPTH: usize = 16;

/// How many expression nodes one inlined call may grow to. A body that uses a parameter
/// several times copies its argument each time, so nested calls grow exponentially
/// (`f(f(f(…)))`); past this the statement is refused (54001) before it exhausts memory.
pub const MAX_EXPANDED_NODES: usize = 100_000;

/// Where a call is inlined: the catalog and the names the statement may use.
pub struct Inliner<'a> {
    pub cat: &'a Catalog,
    pub db_id: u32,
    pub path: &'a SearchPath,
    /// The types of the statement's columns by name, for typing arguments (`None` when
    /// tables disagree on a name's type).
    columns: HashMap<String, Option<SqlType>>,
    /// How many calls were inlined (also numbers the aliases bodies' tables get).
    inlined: std::cell::Cell<usize>,
    /// For each column name of the query a call sits in, the FROM item that qualifies it
    /// (`None` when several have it): the statement's, then each table-reading body's
    /// being expanded.
    scopes: std::cell::RefCell<Vec<HashMap<String, Option<String>>>>,
}

/// Whether `stmt` is a statement whose expressions [`inline_calls`] rewrites.
pub fn applies_to(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::Query(_)
            | Statement::Insert(_)
            | Statement::Update(_)
            | Statement::Delete(_)
            | Statement::Explain { .. }
    )
}

/// Rewrites the calls of SQL functions in `stmt` into their bodies (see the module
/// essay). Answers whether anything changed; `stmt` is untouched when database `db_id`
/// has no functions.
pub fn inline_calls<T: ast::VisitMut + ast::Visit>(
    node: &mut T,
    cat: &Catalog,
    db_id: u32,
    path: &SearchPath,
) -> Result<bool> {
    if !calls_functions(node, cat, db_id) {
        return Ok(false);
    }
    let names = function_names(cat, db_id);
    name_call_columns(node, &|f| names.contains(&call_name(f).as_str()));
    let mut inliner = Inliner::new(cat, db_id, path);
    inliner.note_relations(node);
    inliner.inline(node, 0)?;
    Ok(inliner.inlined.get() > 0)
}

/// Whether `node` calls a function named like a SQL function of database `db_id` (the
/// cheap test before [`inline_calls`] copies and rewrites a statement).
pub fn calls_functions<T: ast::Visit>(node: &T, cat: &Catalog, db_id: u32) -> bool {
    if cat.functions_in(db_id).next().is_none() {
        return false;
    }
    let names = function_names(cat, db_id);
    ast::visit_expressions(node, |e| match e {
        Expr::Function(f) if names.contains(&call_name(f).as_str()) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

fn function_names(cat: &Catalog, db_id: u32) -> Vec<&str> {
    cat.functions_in(db_id).map(|f| f.name.as_str()).collect()
}

/// The function name a call uses, without its schema.
fn call_name(f: &ast::Function) -> String {
    f.name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(ident_name)
        .unwrap_or_default()
}

/// Gives a SELECT list's bare call of a SQL function the function's name as its column
/// name, as PostgreSQL names it (the inlined expression would be named after its cast).
fn name_call_columns<T: ast::VisitMut>(node: &mut T, is_call: &dyn Fn(&ast::Function) -> bool) {
    struct Names<'f>(&'f dyn Fn(&ast::Function) -> bool);
    fn name_items(body: &mut ast::SetExpr, is_call: &dyn Fn(&ast::Function) -> bool) {
        match body {
            ast::SetExpr::Select(s) => {
                for item in s.projection.iter_mut() {
                    if let ast::SelectItem::UnnamedExpr(Expr::Function(f)) = item {
                        if is_call(f) {
                            let name = crate::sql::expr::object_name(&f.name);
                            *item = ast::SelectItem::ExprWithAlias {
                                expr: Expr::Function(f.clone()),
                                alias: ast::Ident::with_quote('"', name),
                            };
                        }
                    }
                }
            }
            ast::SetExpr::SetOperation { left, right, .. } => {
                name_items(left, is_call);
                name_items(right, is_call);
            }
            _ => {}
        }
    }
    impl ast::VisitorMut for Names<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut ast::Query) -> ControlFlow<()> {
            name_items(&mut q.body, self.0);
            ControlFlow::Continue(())
        }
    }
    let _ = node.visit(&mut Names(is_call));
}

impl<'a> Inliner<'a> {
    pub fn new(cat: &'a Catalog, db_id: u32, path: &'a SearchPath) -> Inliner<'a> {
        Inliner {
            cat,
            db_id,
            path,
            columns: HashMap::new(),
            inlined: std::cell::Cell::new(0),
            scopes: Default::default(),
        }
    }

    /// Notes the column types of the tables `node` reads, for `Inliner::arg_type`, and which
    /// FROM item each column name belongs to.
    pub fn note_relations<T: ast::Visit>(&mut self, node: &T) {
        let scope = self.column_owners(node);
        self.scopes.borrow_mut().push(scope);
        let _ = ast::visit_relations(node, |name| {
            if let Ok(Some(t)) = self.cat.relation(self.db_id, self.path, name) {
                for (_, c) in t.visible_columns() {
                    self.columns
                        .entry(c.name.clone())
                        .and_modify(|ty| {
                            if *ty != Some(c.ty) {
                                *ty = None
                            }
                        })
                        .or_insert(Some(c.ty));
                }
            }
            ControlFlow::<()>::Continue(())
        });
    }

    /// The FROM items of `node` that name tables: (the name that qualifies their columns,
    /// the table's columns).
    fn tables_read<T: ast::Visit>(&self, node: &T) -> Vec<(String, Vec<String>)> {
        struct Tables(Vec<(String, ast::ObjectName)>);
        impl ast::Visitor for Tables {
            type Break = ();
            fn pre_visit_table_factor(&mut self, tf: &ast::TableFactor) -> ControlFlow<()> {
                if let ast::TableFactor::Table { name, alias, .. } = tf {
                    let qualifier = match alias {
                        Some(a) => ident_name(&a.name),
                        None => crate::sql::expr::object_name(name),
                    };
                    self.0.push((qualifier, name.clone()));
                }
                ControlFlow::Continue(())
            }
        }
        let mut found = Tables(Vec::new());
        let _ = node.visit(&mut found);
        found
            .0
            .into_iter()
            .filter_map(|(q, name)| {
                let t = self.cat.relation(self.db_id, self.path, &name).ok()??;
                Some((
                    q,
                    t.visible_columns().map(|(_, c)| c.name.clone()).collect(),
                ))
            })
            .collect()
    }

    /// For each column name of the tables `node` reads, the FROM item it belongs to.
    fn column_owners<T: ast::Visit>(&self, node: &T) -> HashMap<String, Option<String>> {
        let mut owners: HashMap<String, Option<String>> = HashMap::new();
        for (q, columns) in self.tables_read(node) {
            for c in columns {
                owners
                    .entry(c)
                    .and_modify(|o| {
                        if o.as_deref() != Some(q.as_str()) {
                            *o = None
                        }
                    })
                    .or_insert_with(|| Some(q.clone()));
            }
        }
        owners
    }

    /// A table-reading body (`q`) runs as a subquery inside the caller's query, where an
    /// argument's column could be captured by a body table's column of the same name.
    /// So the body's tables get fresh aliases (its own `t.c` references follow), and the
    /// arguments' unqualified columns are qualified by the caller's FROM item.
    fn isolate_body(&self, q: &mut ast::Query, params: &mut [Expr]) {
        let mut renamed: HashMap<String, String> = HashMap::new();
        struct Aliases<'r> {
            renamed: &'r mut HashMap<String, String>,
            next: &'r std::cell::Cell<usize>,
        }
        impl ast::VisitorMut for Aliases<'_> {
            type Break = ();
            fn pre_visit_table_factor(&mut self, tf: &mut ast::TableFactor) -> ControlFlow<()> {
                if let ast::TableFactor::Table { name, alias, .. } = tf {
                    let old = match alias {
                        Some(a) => ident_name(&a.name),
                        None => crate::sql::expr::object_name(name),
                    };
                    let n = self.next.get() + 1;
                    self.next.set(n);
                    let new = format!("__fn{n}_{old}");
                    *alias = Some(ast::TableAlias {
                        explicit: true,
                        name: ast::Ident::new(new.clone()),
                        columns: match alias.take() {
                            Some(a) => a.columns,
                            None => Vec::new(),
                        },
                        at: None,
                    });
                    self.renamed.insert(old, new);
                }
                ControlFlow::Continue(())
            }
        }
        let _ = ast::VisitMut::visit(
            q,
            &mut Aliases {
                renamed: &mut renamed,
                next: &self.inlined,
            },
        );
        let _ = ast::visit_expressions_mut(q, |e| {
            if let Expr::CompoundIdentifier(parts) = e {
                let k = parts.len();
                if (2..=3).contains(&k) {
                    if let Some(new) = renamed.get(&ident_name(&parts[k - 2])) {
                        *e = Expr::CompoundIdentifier(vec![
                            ast::Ident::new(new.clone()),
                            parts[k - 1].clone(),
                        ]);
                    }
                }
            }
            ControlFlow::<()>::Continue(())
        });
        let scopes = self.scopes.borrow();
        if let Some(owners) = scopes.last() {
            for p in params.iter_mut() {
                let _ = ast::visit_expressions_mut(p, |e| {
                    if let Expr::Identifier(id) = e {
                        if let Some(Some(q)) = owners.get(&ident_name(id)) {
                            *e = Expr::CompoundIdentifier(vec![ast::Ident::new(q), id.clone()]);
                        }
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
        }
    }

    /// The column names of the tables `node` reads: in a body, a table column named like
    /// a parameter wins over the parameter, as in PostgreSQL.
    fn table_columns<T: ast::Visit>(&self, node: &T) -> Vec<String> {
        let mut names = Vec::new();
        let _ = ast::visit_relations(node, |name| {
            if let Ok(Some(t)) = self.cat.relation(self.db_id, self.path, name) {
                names.extend(t.columns.iter().map(|c| c.name.clone()));
            }
            ControlFlow::<()>::Continue(())
        });
        names
    }

    /// Inlines every call of a SQL function in `node`, `depth` levels down.
    pub fn inline<T: ast::VisitMut>(&self, node: &mut T, depth: usize) -> Result<()> {
        // Post-order: a call's arguments are inlined before the call itself.
        let r = ast::visit_expressions_mut(node, |e| {
            if let Expr::Function(f) = e {
                match self.inline_call(f, depth) {
                    Ok(Some(body)) => {
                        *e = body;
                        self.inlined.set(self.inlined.get() + 1);
                    }
                    Ok(None) => {}
                    Err(err) => return ControlFlow::Break(err),
                }
            }
            ControlFlow::Continue(())
        });
        match r {
            ControlFlow::Break(err) => Err(err),
            ControlFlow::Continue(()) => Ok(()),
        }
    }

    /// The expression a call of `f` becomes, `None` when `f` names no SQL function.
    fn inline_call(&self, f: &ast::Function, depth: usize) -> Result<Option<Expr>> {
        let Ok((schema, name)) = crate::sql::catalog::split_name(&f.name) else {
            return Ok(None);
        };
        let (schema, name) = (schema.as_deref(), &name);
        if schema.is_some_and(|s| s == "pg_catalog") {
            return Ok(None);
        }
        let candidates = self
            .cat
            .functions_named(self.db_id, self.path, schema, name)?;
        if candidates.is_empty() {
            return Ok(None);
        }
        let args = call_args(f, name)?;
        let (desc, slots) = self.resolve(name, &candidates, &args)?;
        if depth >= MAX_DEPTH {
            return Err(Error::new(
                ErrorKind::StatementTooComplex,
                format!(
                    "SQL function \"{name}\" nests more than {MAX_DEPTH} levels of function calls"
                ),
            )
            .with_hint("Recursive SQL functions are not supported."));
        }
        let mut params = Vec::with_capacity(desc.args.len());
        for (slot, a) in slots.into_iter().zip(&desc.args) {
            let e = match slot {
                Some(i) => args[i].1.clone(),
                None => crate::sql::catalog::parse_default(a.default.as_deref().unwrap_or("NULL"))?,
            };
            params.push(cast_to(e, &param_type_sql(a.ty, &a.type_sql))?);
        }
        self.expand(&desc, &params, depth).map(Some)
    }

    /// The body of `desc` with `params` (typed arguments) in place of its parameters, its
    /// own calls inlined, cast to the return type.
    pub fn expand(&self, desc: &FunctionDesc, params: &[Expr], depth: usize) -> Result<Expr> {
        let mut body = body_expr(desc)?;
        let shadowed = self.table_columns(&body);
        let mut inner = params.to_vec();
        let reads_tables = if let Expr::Subquery(q) = &mut body {
            self.isolate_body(q, &mut inner);
            true
        } else {
            false
        };
        substitute(&mut body, desc, &inner, &shadowed)?;
        if reads_tables {
            // Calls inside the body see the body's tables.
            let owners = self.column_owners(&body);
            self.scopes.borrow_mut().push(owners);
        }
        let r = self.inline(&mut body, depth + 1);
        if reads_tables {
            self.scopes.borrow_mut().pop();
        }
        r?;
        if desc.strict && !params.is_empty() {
            let mut any_null: Option<Expr> = None;
            for p in params {
                let test = Expr::IsNull(Box::new(p.clone()));
                any_null = Some(match any_null {
                    None => test,
                    Some(prev) => Expr::BinaryOp {
                        left: Box::new(prev),
                        op: ast::BinaryOperator::Or,
                        right: Box::new(test),
                    },
                });
            }
            body = Expr::Case {
                case_token: ast::helpers::attached_token::AttachedToken::empty(),
                end_token: ast::helpers::attached_token::AttachedToken::empty(),
                operand: None,
                conditions: vec![ast::CaseWhen {
                    condition: any_null.unwrap(),
                    result: Expr::Value(ast::Value::Null.into()),
                }],
                else_result: Some(Box::new(body)),
            };
        }
        let mut nodes = 0usize;
        let _ = ast::visit_expressions(&body, |_| {
            nodes += 1;
            if nodes > MAX_EXPANDED_NODES {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if nodes > MAX_EXPANDED_NODES {
            return Err(Error::new(
                ErrorKind::StatementTooComplex,
                format!(
                    "statement too complex: the call of SQL function \"{}\" expands to more than {MAX_EXPANDED_NODES} expressions",
                    desc.name
                ),
            ));
        }
        cast_to(body, &param_type_sql(desc.returns, &desc.returns_sql))
    }

    /// The query `CREATE FUNCTION` checks `desc`'s body with (PostgreSQL's
    /// `check_function_bodies`): the body's query (`SELECT expr` for `RETURN expr`), each
    /// parameter a NULL of its type, calls inside inlined. Planning it finds unknown
    /// columns, tables and functions; its one column's type is the body's result type.
    pub fn validation_query(&self, desc: &FunctionDesc) -> Result<ast::Query> {
        let mut q = match &desc.body {
            FunctionBody::As(_) => body_query(&desc.name, &desc.body)?.expect("an AS body"),
            FunctionBody::Return(text) => {
                match crate::sql::session::parse(&format!("SELECT {text}"))?.pop() {
                    Some(Statement::Query(q)) => *q,
                    _ => return Err(Error::syntax(format!("bad RETURN expression {text}"))),
                }
            }
        };
        let params: Vec<Expr> = desc
            .args
            .iter()
            .map(|a| {
                cast_to(
                    Expr::Value(ast::Value::Null.into()),
                    &param_type_sql(a.ty, &a.type_sql),
                )
            })
            .collect::<Result<_>>()?;
        let shadowed = self.table_columns(&q);
        substitute(&mut q, desc, &params, &shadowed)?;
        self.inline(&mut q, 1)?;
        Ok(q)
    }

    /// The function of `candidates` a call with `args` means (PostgreSQL's function
    /// resolution, as far as argument types are known here).
    fn resolve(
        &self,
        name: &str,
        candidates: &[Rc<FunctionDesc>],
        args: &[(Option<String>, Expr)],
    ) -> Result<(Rc<FunctionDesc>, Vec<Option<usize>>)> {
        let types: Vec<Option<SqlType>> = args.iter().map(|(_, e)| self.arg_type(e)).collect();
        // Each candidate that can take the arguments, with the argument each parameter
        // gets; an argument's type against its parameter's is `pairs`.
        let fits: Vec<(&Rc<FunctionDesc>, Vec<Option<usize>>)> = candidates
            .iter()
            .filter_map(|f| Some((f, slots(f, args)?)))
            .filter(|(f, slots)| {
                slots.iter().zip(&f.args).all(|(slot, a)| {
                    slot.is_none_or(|i| types[i].is_none_or(|t| implicitly_converts(t, a.ty)))
                })
            })
            .collect();
        let pairs =
            |f: &Rc<FunctionDesc>, slots: &[Option<usize>]| -> Vec<(Option<SqlType>, SqlType)> {
                slots
                    .iter()
                    .zip(&f.args)
                    .filter_map(|(slot, a)| slot.map(|i| (types[i], a.ty)))
                    .collect()
            };
        let shown = || {
            types
                .iter()
                .zip(args)
                .map(|(t, (n, _))| {
                    let ty = t.unwrap_or(SqlType::Unknown).name();
                    match n {
                        Some(n) => format!("{n} => {ty}"),
                        None => ty.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Most exact matches, then most preferred types where a known argument converts
        // (`float8` for numbers: f(int8) and f(float8) called with an int4 take the
        // float8 one), then a string parameter for an untyped literal.
        let exact = |(f, slots): &(&Rc<FunctionDesc>, Vec<Option<usize>>)| {
            pairs(f, slots)
                .into_iter()
                .filter(|(t, p)| t.is_some_and(|t| same_type(t, *p)))
                .count()
        };
        let preferred = |(f, slots): &(&Rc<FunctionDesc>, Vec<Option<usize>>)| {
            pairs(f, slots)
                .into_iter()
                .filter(|(t, p)| {
                    t.is_some_and(|t| {
                        t != SqlType::Unknown && (same_type(t, *p) || is_preferred(t, *p))
                    })
                })
                .count()
        };
        let strings = |(f, slots): &(&Rc<FunctionDesc>, Vec<Option<usize>>)| {
            pairs(f, slots)
                .into_iter()
                .filter(|(t, p)| *t == Some(SqlType::Unknown) && p.is_string())
                .count()
        };
        let mut best = keep_most(fits, exact);
        if best.len() > 1 {
            best = keep_most(best, preferred);
        }
        if best.len() > 1 {
            best = keep_most(best, strings);
        }
        match best.as_slice() {
            [] => Err(Error::new(
                ErrorKind::UndefinedFunction,
                format!("function {name}({}) does not exist", shown()),
            )
            .with_hint(
                "No function matches the given name and argument types. You might need to add explicit type casts.",
            )),
            [_] => {
                let (f, slots) = best.pop().expect("one candidate");
                Ok((f.clone(), slots))
            }
            _ => Err(Error::new(
                ErrorKind::AmbiguousFunction,
                format!("function {name}({}) is not unique", shown()),
            )
            .with_hint(
                "Could not choose a best candidate function. You might need to add explicit type casts.",
            )),
        }
    }

    /// The type of argument `e` as far as it is known without binding: `Unknown` for a
    /// string literal or NULL, `None` when not known here (both fit any parameter).
    fn arg_type(&self, e: &Expr) -> Option<SqlType> {
        use ast::BinaryOperator as B;
        match e {
            Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => Some(if n.parse::<i32>().is_ok() {
                    SqlType::Int4
                } else if n.parse::<i64>().is_ok() {
                    SqlType::Int8
                } else {
                    SqlType::Numeric
                }),
                ast::Value::Boolean(_) => Some(SqlType::Bool),
                ast::Value::Placeholder(_) => None,
                // A string literal or NULL: of type unknown until resolved.
                _ => Some(SqlType::Unknown),
            },
            Expr::Cast { data_type, .. } => sql_type(data_type).ok(),
            Expr::TypedString(ts) => sql_type(&ts.data_type).ok(),
            Expr::Nested(inner) | Expr::UnaryOp { expr: inner, .. } => self.arg_type(inner),
            Expr::Identifier(id) => self.columns.get(&ident_name(id)).copied().flatten(),
            Expr::CompoundIdentifier(ids) => ids
                .last()
                .and_then(|id| self.columns.get(&ident_name(id)).copied().flatten()),
            Expr::BinaryOp { left, op, right } => match op {
                B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => {
                    match (self.arg_type(left), self.arg_type(right)) {
                        (Some(l), Some(r)) if l.is_numeric_family() && r.is_numeric_family() => {
                            Some(wider_numeric(l, r))
                        }
                        (Some(t), None) | (None, Some(t)) if t.is_numeric_family() => Some(t),
                        _ => None,
                    }
                }
                B::StringConcat => Some(SqlType::Text),
                B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq | B::And | B::Or => {
                    Some(SqlType::Bool)
                }
                _ => None,
            },
            Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsTrue(_)
            | Expr::IsFalse(_)
            | Expr::Between { .. }
            | Expr::Like { .. }
            | Expr::ILike { .. } => Some(SqlType::Bool),
            _ => None,
        }
    }
}

/// A call's arguments: (name for `name => value`, value). Aggregate and window syntax
/// on a SQL function is refused.
fn call_args(f: &ast::Function, name: &str) -> Result<Vec<(Option<String>, Expr)>> {
    if f.over.is_some() {
        return Err(Error::new(
            ErrorKind::WrongObjectType,
            format!(
                "OVER specified, but {name} is not a window function nor an aggregate function"
            ),
        ));
    }
    if f.filter.is_some() || !f.within_group.is_empty() {
        return Err(Error::new(
            ErrorKind::WrongObjectType,
            format!("{name} is not an aggregate function"),
        ));
    }
    let list = match &f.args {
        ast::FunctionArguments::None => return Ok(Vec::new()),
        ast::FunctionArguments::Subquery(_) => {
            return Err(Error::unsupported(format!(
                "a subquery as the argument list of {name}"
            )))
        }
        ast::FunctionArguments::List(l) => l,
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return Err(Error::new(
            ErrorKind::WrongObjectType,
            format!("{name} is not an aggregate function"),
        ));
    }
    let mut args: Vec<(Option<String>, Expr)> = Vec::with_capacity(list.args.len());
    for a in &list.args {
        let (arg_name, value) = match a {
            ast::FunctionArg::Unnamed(v) => (None, v),
            ast::FunctionArg::Named { name, arg, .. } => (Some(ident_name(name)), arg),
            ast::FunctionArg::ExprNamed {
                name: Expr::Identifier(name),
                arg,
                ..
            } => (Some(ident_name(name)), arg),
            ast::FunctionArg::ExprNamed { .. } => {
                return Err(Error::syntax(format!(
                    "bad named argument in a call of {name}"
                )))
            }
        };
        if arg_name.is_none() && args.iter().any(|(n, _)| n.is_some()) {
            return Err(Error::syntax(
                "positional argument cannot follow named argument",
            ));
        }
        match value {
            ast::FunctionArgExpr::Expr(e) => args.push((arg_name, e.clone())),
            _ => {
                return Err(Error::new(
                    ErrorKind::UndefinedFunction,
                    format!("function {name}(*) does not exist"),
                ))
            }
        }
    }
    Ok(args)
}

/// `CAST(e AS type_sql)`.
fn cast_to(e: Expr, type_sql: &str) -> Result<Expr> {
    let data_type = sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql(type_sql)
        .and_then(|mut p| p.parse_data_type())
        .map_err(|e| Error::syntax(format!("bad type {type_sql}: {e}")))?;
    Ok(Expr::Cast {
        kind: ast::CastKind::Cast,
        expr: Box::new(e),
        data_type,
        format: None,
    })
}

/// A function body's query, when the body is `AS '…'` (`None` for `RETURN expr`). 42P13
/// for a body that is not one query; 0A000 for one of several statements or a DML.
pub fn body_query(desc_name: &str, body: &FunctionBody) -> Result<Option<ast::Query>> {
    let FunctionBody::As(text) = body else {
        return Ok(None);
    };
    let mut stmts = crate::sql::session::parse(text)?;
    match stmts.len() {
        0 => Err(Error::new(
            ErrorKind::InvalidFunctionDefinition,
            format!("return type mismatch in function \"{desc_name}\""),
        )
        .with_detail(
            "Function's final statement must be SELECT or INSERT/UPDATE/DELETE/MERGE RETURNING.",
        )),
        1 => match stmts.pop() {
            Some(Statement::Query(q)) => Ok(Some(*q)),
            _ => Err(Error::unsupported(format!(
                "SQL function \"{desc_name}\": only a body that is one SELECT is supported"
            ))),
        },
        _ => Err(Error::unsupported(format!(
            "SQL function \"{desc_name}\": bodies of more than one statement are not supported"
        ))),
    }
}

/// The body of `desc` as one expression, its parameters still in place: the SELECT's
/// expression when the body reads no table (and does not aggregate), else the query as a
/// scalar subquery answering its first row.
pub fn body_expr(desc: &FunctionDesc) -> Result<Expr> {
    let q = match &desc.body {
        FunctionBody::Return(text) => return crate::sql::catalog::parse_default(text),
        FunctionBody::As(_) => body_query(&desc.name, &desc.body)?.expect("an AS body"),
    };
    if let Some(e) = plain_select_expr(&q) {
        return Ok(e);
    }
    let mut q = q;
    if q.limit_clause.is_none() && q.fetch.is_none() {
        q.limit_clause = Some(ast::LimitClause::LimitOffset {
            limit: Some(Expr::Value(ast::Value::Number("1".into(), false).into())),
            offset: None,
            limit_by: Vec::new(),
        });
    }
    Ok(Expr::Subquery(Box::new(q)))
}

/// The expression of `SELECT expr` with nothing else (no FROM, WHERE, grouping,
/// aggregate, ordering or limit).
fn plain_select_expr(q: &ast::Query) -> Option<Expr> {
    if q.with.is_some()
        || q.order_by.is_some()
        || q.limit_clause.is_some()
        || q.fetch.is_some()
        || !q.locks.is_empty()
    {
        return None;
    }
    let ast::SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    let grouped = match &s.group_by {
        ast::GroupByExpr::Expressions(v, m) => !v.is_empty() || !m.is_empty(),
        ast::GroupByExpr::All(_) => true,
    };
    if !s.from.is_empty()
        || s.selection.is_some()
        || grouped
        || s.having.is_some()
        || s.distinct.is_some()
        || s.projection.len() != 1
    {
        return None;
    }
    let e = match &s.projection[0] {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return None,
    };
    let mut aggregates = false;
    let _ = ast::visit_expressions(e, |x| {
        if let Expr::Function(f) = x {
            let name = crate::sql::expr::object_name(&f.name);
            aggregates |= f.over.is_some() || is_agg_name(&name);
        }
        ControlFlow::<()>::Continue(())
    });
    (!aggregates).then(|| e.clone())
}

/// Replaces `desc`'s parameters in `body` (`$n`, a parameter's name, or
/// `function.parameter`) by `params`. Names in `shadowed` are columns, not parameters.
fn substitute<T: ast::VisitMut>(
    body: &mut T,
    desc: &FunctionDesc,
    params: &[Expr],
    shadowed: &[String],
) -> Result<()> {
    let by_name =
        |n: &str| -> Option<usize> { desc.args.iter().position(|a| a.name.as_deref() == Some(n)) };
    let r = ast::visit_expressions_mut(body, |e| {
        let index = match e {
            Expr::Value(v) => match &v.value {
                ast::Value::Placeholder(p) => match p.strip_prefix('$').map(str::parse::<usize>) {
                    Some(Ok(n)) if n >= 1 && n <= params.len() => Some(n - 1),
                    Some(_) => {
                        return ControlFlow::Break(Error::new(
                            ErrorKind::UndefinedColumn,
                            format!("there is no parameter {p}"),
                        ))
                    }
                    None => None,
                },
                _ => None,
            },
            Expr::Identifier(id) => {
                let n = ident_name(id);
                if shadowed.contains(&n) {
                    None
                } else {
                    by_name(&n)
                }
            }
            Expr::CompoundIdentifier(ids) if ids.len() == 2 && ident_name(&ids[0]) == desc.name => {
                by_name(&ident_name(&ids[1]))
            }
            _ => None,
        };
        if let Some(i) = index {
            *e = Expr::Nested(Box::new(params[i].clone()));
        }
        ControlFlow::Continue(())
    });
    match r {
        ControlFlow::Break(err) => Err(err),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Whether a value of type `from` converts to `to` implicitly (PostgreSQL's implicit
/// casts among the types here).
pub fn implicitly_converts(from: SqlType, to: SqlType) -> bool {
    use SqlType as T;
    if same_type(from, to) || from == T::Unknown || to == T::Unknown {
        return true;
    }
    let rank = |t: SqlType| match t {
        T::Int2 => Some(0),
        T::Int4 => Some(1),
        T::Int8 => Some(2),
        T::Numeric => Some(3),
        T::Float4 => Some(4),
        T::Float8 => Some(5),
        _ => None,
    };
    if let (Some(a), Some(b)) = (rank(from), rank(to)) {
        return a <= b;
    }
    matches!(
        (from, to),
        (T::Date, T::Timestamp | T::TimestampTz) | (T::Timestamp, T::TimestampTz)
    )
}

/// Whether a function's result of type `from` may be returned as `to` (an assignment
/// cast: numbers among themselves, anything to a string, dates and timestamps).
pub fn assignment_converts(from: SqlType, to: SqlType) -> bool {
    use SqlType as T;
    implicitly_converts(from, to)
        || to.is_string()
        || (from.is_numeric_family() && to.is_numeric_family())
        || matches!(
            (from, to),
            (T::Timestamp | T::TimestampTz, T::Date) | (T::TimestampTz, T::Timestamp)
        )
}

/// The candidates that score highest.
fn keep_most<C>(candidates: Vec<C>, score: impl Fn(&C) -> usize) -> Vec<C> {
    let most = candidates.iter().map(&score).max().unwrap_or(0);
    candidates
        .into_iter()
        .filter(|c| score(c) == most)
        .collect()
}

/// Which argument each parameter of `f` gets (`None`: its default), when a call with
/// `args` fits `f`'s parameters: positional arguments first, then named ones, every
/// parameter left out having a default.
fn slots(f: &FunctionDesc, args: &[(Option<String>, Expr)]) -> Option<Vec<Option<usize>>> {
    let mut slots: Vec<Option<usize>> = vec![None; f.args.len()];
    for (i, (name, _)) in args.iter().enumerate() {
        let p = match name {
            None => i,
            Some(n) => f.args.iter().position(|a| a.name.as_ref() == Some(n))?,
        };
        if p >= slots.len() || slots[p].is_some() {
            return None;
        }
        slots[p] = Some(i);
    }
    slots
        .iter()
        .zip(&f.args)
        .all(|(slot, a)| slot.is_some() || a.default.is_some())
        .then_some(slots)
}

/// The type an argument or result is cast to: `ty` without the type modifiers written
/// (PostgreSQL ignores a function's `varchar(3)` and `numeric(5,2)`), the text as
/// written when the type is not one of ours.
fn param_type_sql(ty: SqlType, written: &str) -> String {
    match ty {
        SqlType::Unknown => written.to_string(),
        ty => ty.name().to_string(),
    }
}

/// Whether `param` is the preferred type of `arg`'s type category (PostgreSQL's
/// `typispreferred`: `float8` for numbers, `text` for strings, `timestamptz` for dates
/// and times).
fn is_preferred(arg: SqlType, param: SqlType) -> bool {
    match param {
        SqlType::Float8 => arg.is_numeric_family(),
        SqlType::Text => arg.is_string(),
        SqlType::TimestampTz => {
            matches!(
                arg,
                SqlType::Date | SqlType::Timestamp | SqlType::TimestampTz
            )
        }
        _ => false,
    }
}

fn same_type(a: SqlType, b: SqlType) -> bool {
    a == b || (a.is_string() && b.is_string())
}

fn wider_numeric(a: SqlType, b: SqlType) -> SqlType {
    for t in [
        SqlType::Float8,
        SqlType::Float4,
        SqlType::Numeric,
        SqlType::Int8,
        SqlType::Int4,
    ] {
        if a == t || b == t {
            return t;
        }
    }
    SqlType::Int2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::catalog::FunctionArgDesc;

    fn function(
        id: u32,
        name: &str,
        args: &[(&str, &str)],
        returns: &str,
        body: &str,
    ) -> FunctionDesc {
        FunctionDesc {
            id,
            db_id: 1,
            schema_id: crate::sql::catalog::PUBLIC_SCHEMA,
            name: name.into(),
            args: args
                .iter()
                .map(|(n, t)| FunctionArgDesc {
                    name: (!n.is_empty()).then(|| n.to_string()),
                    type_sql: t.to_string(),
                    ty: crate::sql::catalog::function_type(t),
                    default: None,
                })
                .collect(),
            returns_sql: returns.into(),
            returns: crate::sql::catalog::function_type(returns),
            body: FunctionBody::As(body.into()),
            volatility: b'v',
            strict: false,
        }
    }

    fn inlined(cat: &Catalog, sql: &str) -> Result<String> {
        let mut stmt = crate::sql::session::parse(sql)?.pop().unwrap();
        inline_calls(&mut stmt, cat, 1, &SearchPath::default())?;
        Ok(stmt.to_string())
    }

    fn catalog() -> Catalog {
        Catalog {
            functions: vec![
                Rc::new(function(
                    1,
                    "add",
                    &[("", "INT"), ("", "INT")],
                    "INT",
                    "select $1 + $2",
                )),
                Rc::new(function(
                    2,
                    "add",
                    &[("", "TEXT"), ("", "TEXT")],
                    "TEXT",
                    "select $1 || $2",
                )),
                Rc::new(function(
                    3,
                    "twice",
                    &[("x", "INT")],
                    "INT",
                    "select add(x, x)",
                )),
                Rc::new(function(
                    4,
                    "loop",
                    &[("x", "INT")],
                    "INT",
                    "select loop(x)",
                )),
                Rc::new(function(
                    5,
                    "n",
                    &[("x", "INT")],
                    "BIGINT",
                    "select count(*) from t where c = x",
                )),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn inlines_parameters_as_typed_arguments() {
        let cat = catalog();
        assert_eq!(
            inlined(&cat, "SELECT add(1, 2)").unwrap(),
            "SELECT CAST((CAST(1 AS INTEGER)) + (CAST(2 AS INTEGER)) AS INTEGER) AS \"add\""
        );
        // Named parameters, and a call inside a body.
        assert_eq!(
            inlined(&cat, "SELECT twice(3)").unwrap(),
            "SELECT CAST(CAST((CAST((CAST(3 AS INTEGER)) AS INTEGER)) + (CAST((CAST(3 AS INTEGER)) AS INTEGER)) AS INTEGER) AS INTEGER) AS \"twice\""
        );
    }

    #[test]
    fn resolves_overloads_by_known_argument_types() {
        let cat = catalog();
        assert!(inlined(&cat, "SELECT add('a'::text, 'b')")
            .unwrap()
            .contains("||"));
        assert!(inlined(&cat, "SELECT add(1, 2)").unwrap().contains('+'));
        // Untyped literals prefer the string parameters.
        assert!(inlined(&cat, "SELECT add('a', 'b')")
            .unwrap()
            .contains("||"));
        let e = inlined(&cat, "SELECT add(x, y) FROM t").unwrap_err();
        assert_eq!(e.kind, ErrorKind::AmbiguousFunction);
        let e = inlined(&cat, "SELECT add(1.5, true)").unwrap_err();
        assert_eq!(e.kind, ErrorKind::UndefinedFunction);
        assert_eq!(e.message, "function add(numeric, boolean) does not exist");
        let e = inlined(&cat, "SELECT add(1)").unwrap_err();
        assert_eq!(e.kind, ErrorKind::UndefinedFunction);
    }

    #[test]
    fn a_body_reading_tables_becomes_a_first_row_subquery() {
        let cat = catalog();
        assert_eq!(
            inlined(&cat, "SELECT n(1)").unwrap(),
            "SELECT CAST((SELECT count(*) FROM t AS __fn1_t WHERE c = (CAST(1 AS INTEGER)) LIMIT 1) AS BIGINT) AS \"n\""
        );
    }

    #[test]
    fn named_arguments_and_defaults_fill_parameters() {
        let mut cat = catalog();
        let mut f = function(
            6,
            "sub",
            &[("x", "INT"), ("y", "INT")],
            "INT",
            "select x - y",
        );
        f.args[1].default = Some("5".into());
        cat.functions.push(Rc::new(f));
        assert_eq!(
            inlined(&cat, "SELECT sub(y => 1, x => 3)").unwrap(),
            "SELECT CAST((CAST(3 AS INTEGER)) - (CAST(1 AS INTEGER)) AS INTEGER) AS \"sub\""
        );
        assert!(inlined(&cat, "SELECT sub(3)")
            .unwrap()
            .contains("CAST(5 AS INTEGER)"));
        let e = inlined(&cat, "SELECT sub(y => 1)").unwrap_err();
        assert_eq!(e.message, "function sub(y => integer) does not exist");
        let e = inlined(&cat, "SELECT sub(x => 1, 2)").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax);
    }

    #[test]
    fn recursion_is_refused_with_54001() {
        let e = inlined(&catalog(), "SELECT loop(1)").unwrap_err();
        assert_eq!(e.kind, ErrorKind::StatementTooComplex);
    }

    #[test]
    fn exponential_expansion_is_refused_with_54001() {
        let mut cat = catalog();
        let body = "select x + x + x + x";
        cat.functions
            .push(Rc::new(function(7, "quad", &[("x", "INT")], "INT", body)));
        assert!(inlined(&cat, "SELECT quad(quad(1))").is_ok());
        let deep = format!("SELECT {}1{}", "quad(".repeat(12), ")".repeat(12));
        let e = inlined(&cat, &deep).unwrap_err();
        assert_eq!(e.kind, ErrorKind::StatementTooComplex);
    }

    #[test]
    fn statements_without_calls_are_untouched() {
        let cat = catalog();
        let mut stmt = crate::sql::session::parse("SELECT abs(1)")
            .unwrap()
            .pop()
            .unwrap();
        assert!(!inline_calls(&mut stmt, &cat, 1, &SearchPath::default()).unwrap());
    }
}
