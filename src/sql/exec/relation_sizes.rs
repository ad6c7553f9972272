//! `pg_relation_size`, `pg_table_size`, `pg_indexes_size` and `pg_total_relation_size` of a
//! relation named by a constant (`'t'`, `'s.t'`, `'t'::regclass`, an oid): before the
//! statement is planned, each such call is replaced by the bytes (keys and values) of the
//! relation's live rows, read through the transaction.
//!
//! - a table's size (`pg_table_size`, `pg_relation_size` of its `main` fork) is its
//!   primary index (its rows); `pg_indexes_size` the sum of its secondary indexes plus,
//!   when a primary key was declared (PostgreSQL keeps it as an index), the primary
//!   index's keys; `pg_total_relation_size` the table and its indexes; an index's size is
//!   its own entries. The `fsm`, `vm` and `init` forks are 0 (there are none).
//!
//! # Implementation caveats
//!
//! - The size reads every row of the relation (PostgreSQL reads a file length): fine for
//!   the occasional check, slow on huge tables. Older MVCC versions and the LSM's
//!   compression are not counted.
//! - A relation known only per row (`pg_table_size(c.oid)` over `pg_class`, as psql's
//!   `\dt+` asks) still answers 0 through the catalog functions.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{Value, VisitMut, VisitorMut};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::*;

use crate::sql::pg_catalog::SIZE_FUNCTIONS;

/// One size a statement asks for: function, relation (as written), fork.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Ask {
    func: String,
    relation: Relation,
    fork: Option<String>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Relation {
    Name(String),
    Oid(i64),
}

/// The size call `e` is, when its relation is a constant.
fn ask_of(e: &Expr) -> Option<Ask> {
    let Expr::Function(f) = e else { return None };
    let func = object_name(&f.name);
    if !SIZE_FUNCTIONS.contains(&func.as_str()) {
        return None;
    }
    let ast::FunctionArguments::List(l) = &f.args else {
        return None;
    };
    let args: Vec<&Expr> = l
        .args
        .iter()
        .map(|a| match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let constant = |e: &Expr| match e {
        Expr::Value(v) => Some(v.value.clone()),
        Expr::Cast { expr, .. } => match expr.as_ref() {
            Expr::Value(v) => Some(v.value.clone()),
            _ => None,
        },
        _ => None,
    };
    let relation = match constant(args.first()?)? {
        Value::SingleQuotedString(s) => Relation::Name(s),
        Value::Number(n, _) => Relation::Oid(n.parse().ok()?),
        _ => return None,
    };
    let fork = match args.get(1) {
        None => None,
        Some(a) => match constant(a)? {
            Value::SingleQuotedString(s) => Some(s),
            _ => return None,
        },
    };
    if args.len() > 2 || (fork.is_some() && func != "pg_relation_size") {
        return None;
    }
    Some(Ask {
        func,
        relation,
        fork,
    })
}

impl Exec<'_> {
    /// Replaces the constant size calls of `stmt` by their answers.
    pub(super) async fn inline_relation_sizes(&mut self, stmt: &mut Statement) -> Result<()> {
        struct Collect(Vec<Ask>);
        impl VisitorMut for Collect {
            type Break = ();
            fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
                if let Some(ask) = ask_of(e) {
                    self.0.push(ask);
                }
                ControlFlow::Continue(())
            }
        }
        let mut found = Collect(Vec::new());
        let _ = stmt.visit(&mut found);
        if found.0.is_empty() {
            return Ok(());
        }
        let mut sizes: HashMap<Ask, i64> = HashMap::new();
        for ask in found.0 {
            if let std::collections::hash_map::Entry::Vacant(slot) = sizes.entry(ask) {
                let size = self.relation_size(slot.key()).await?;
                slot.insert(size);
            }
        }
        struct Replace(HashMap<Ask, i64>);
        impl VisitorMut for Replace {
            type Break = ();
            fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
                if let Some(size) = ask_of(e).and_then(|a| self.0.get(&a)) {
                    *e = Expr::Value(Value::Number(size.to_string(), false).into());
                }
                ControlFlow::Continue(())
            }
        }
        let _ = stmt.visit(&mut Replace(sizes));
        Ok(())
    }

    async fn relation_size(&self, ask: &Ask) -> Result<i64> {
        // The relation and, for an index, which one.
        let (table, index) = match &ask.relation {
            Relation::Name(name) => {
                let parsed = Parser::new(&PostgreSqlDialect {})
                    .try_with_sql(name)
                    .and_then(|mut p| p.parse_object_name(false))
                    .map_err(|_| {
                        Error::new(
                            ErrorKind::InvalidName,
                            format!("invalid name syntax: \"{name}\""),
                        )
                    })?;
                match self.cat.relation(self.db_id, &self.path, &parsed)? {
                    Some(t) => (t, None),
                    None => {
                        let index = object_name(&parsed);
                        self.index_owner(|_, i| i.name == index)
                            .ok_or_else(|| catalog::undefined_table(name))?
                    }
                }
            }
            Relation::Oid(oid) => {
                let by_table = self
                    .cat
                    .tables_in(self.db_id)
                    .find(|t| pg_catalog::table_oid(t) == *oid)
                    .cloned();
                match by_table {
                    Some(t) => (t, None),
                    // PostgreSQL answers NULL for an oid that names no relation.
                    None => match self.index_owner(|t, i| pg_catalog::index_oid(t, i.id) == *oid) {
                        Some(found) => found,
                        None => return Ok(0),
                    },
                }
            }
        };
        if !matches!(ask.fork.as_deref(), None | Some("main")) {
            return match ask.fork.as_deref() {
                Some("fsm" | "vm" | "init") => Ok(0),
                Some(other) => Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    format!("invalid fork name: \"{other}\""),
                )
                .with_hint("Valid fork names are \"main\", \"fsm\", \"vm\", and \"init\".")),
                None => Ok(0),
            };
        }
        if table.view.is_some() || table.sequence.is_some() {
            return Ok(0);
        }
        // (key bytes, key and value bytes) of an index.
        let measure = |id: u32| {
            let start = keys::index_prefix(table.id, id);
            let end = keys::prefix_end(&start);
            async move {
                let rows = self.kv_scan(&start, &end).await?;
                let keys: usize = rows.iter().map(|(k, _)| k.len()).sum();
                let values: usize = rows.iter().map(|(_, v)| v.len()).sum();
                Ok::<_, Error>((keys as i64, (keys + values) as i64))
            }
        };
        if let Some(i) = index {
            return Ok(match ask.func.as_str() {
                "pg_indexes_size" => 0,
                _ => measure(i).await?.1,
            });
        }
        let (primary_keys, primary) = measure(table.primary_index).await?;
        if ask.func == "pg_table_size" || ask.func == "pg_relation_size" {
            return Ok(primary);
        }
        // A declared primary key is an index of its own in PostgreSQL: its keys count
        // among the indexes (the rows, keyed by it, are the table).
        let declared_pk = !table.pk.iter().any(|&c| table.columns[c].hidden);
        let mut indexes = if declared_pk { primary_keys } else { 0 };
        for i in &table.indexes {
            indexes += measure(i.id).await?.1;
        }
        Ok(match ask.func.as_str() {
            "pg_indexes_size" => indexes,
            _ => primary + indexes,
        })
    }

    /// The table that has an index for which `pred` holds, and that index's id.
    fn index_owner(
        &self,
        pred: impl Fn(&TableDesc, &catalog::IndexDesc) -> bool,
    ) -> Option<(Rc<TableDesc>, Option<u32>)> {
        self.cat.tables_in(self.db_id).find_map(|t| {
            t.indexes
                .iter()
                .find(|i| pred(t, i))
                .map(|i| (t.clone(), Some(i.id)))
        })
    }
}
