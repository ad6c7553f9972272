//! `CREATE TABLE name [(columns)] AS query [WITH [NO] DATA]` and `SELECT … INTO name`.
//!
//! The query runs first (through [`Exec::run_once`], so its subqueries and CTEs are
//! rewritten as for any SELECT); its result columns give the new table's columns, named
//! by the optional list (which may name fewer columns than the query has) and typed by the
//! query's result types. The table has no primary key of its own, so it gets the hidden
//! `rowid` one, as every such table does. The descriptor is committed as any DDL (on its
//! own); the rows are written in the statement's transaction.
//!
//! # Implementation caveats
//!
//! - Type modifiers of the source columns (`numeric(6,2)`, `varchar(10)`) are not kept:
//!   the new columns are plain `numeric`, `varchar`.
//! - With `WITH NO DATA` the query still runs, with `LIMIT 0`.
//! - The table exists once the descriptor commits: if writing the rows fails, or the
//!   transaction rolls back, the (empty) table stays, unlike in PostgreSQL.

use super::*;

impl Exec<'_> {
    /// Creates table `ct.name` from `ct.query` (which must be present).
    pub(super) async fn create_table_as(
        &mut self,
        ct: &ast::CreateTable,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let Some(query) = &ct.query else {
            return Err(Error::internal("create_table_as without a query"));
        };
        let (schema_id, name) = self.cat.creation_name(self.db_id, &self.path, &ct.name)?;
        if self.cat.table_in(self.db_id, schema_id, &name).is_some() {
            if ct.if_not_exists {
                return Ok((Outcome::Command("CREATE TABLE AS".into()), None));
            }
            return Err(Error::new(
                ErrorKind::DuplicateTable,
                format!("relation \"{name}\" already exists"),
            ));
        }
        let with_data = ct.with_data.as_ref().is_none_or(|w| w.data);
        let mut q = (**query).clone();
        if !with_data {
            q.limit_clause = Some(ast::LimitClause::LimitOffset {
                limit: Some(Expr::value(ast::Value::Number("0".into(), false))),
                offset: None,
                limit_by: Vec::new(),
            });
        }
        // Not through a prepared statement's plan cache: that one is the CREATE's.
        let saved = self.plan_cache.take();
        let ran = Box::pin(self.run_once(&Statement::Query(Box::new(q)))).await;
        self.plan_cache = saved;
        let (outcome, result_columns) = ran?;
        let rows = match outcome {
            Outcome::Rows { rows, .. } => rows,
            _ => Vec::new(),
        };
        let Some(result_columns) = result_columns else {
            return Err(Error::internal("a query without result columns"));
        };
        if ct.columns.len() > result_columns.len() {
            return Err(Error::syntax("too many column names were specified"));
        }
        let mut columns: Vec<ColumnDesc> = Vec::with_capacity(result_columns.len() + 1);
        for (i, c) in result_columns.iter().enumerate() {
            let cname = match ct.columns.get(i) {
                Some(def) => ident_name(&def.name),
                None => c.name.clone(),
            };
            if columns.iter().any(|x| x.name == cname) {
                return Err(Error::new(
                    ErrorKind::DuplicateColumn,
                    format!("column \"{cname}\" specified more than once"),
                ));
            }
            let ty = fix_unknown(c.ty);
            if matches!(ty, SqlType::Int2Vector | SqlType::OidVector) {
                return Err(Error::unsupported(format!(
                    "a column of type {} is not supported yet",
                    ty.name()
                )));
            }
            columns.push(ColumnDesc::new(cname, ty));
        }
        let mut rowid = ColumnDesc::new("rowid", SqlType::Int8);
        rowid.nullable = false;
        rowid.default = Some("unique_rowid()".into());
        rowid.hidden = true;
        validate_default(&mut rowid)?;
        columns.push(rowid);
        let ts = self.ctx.shared.hlc.now();
        let mut writes = Vec::new();
        let id = catalog::next_id(self.ctx, ts, &mut writes).await?;
        let desc = TableDesc {
            id,
            db_id: self.db_id,
            pk_name: format!("{name}_pkey"),
            name,
            pk: vec![columns.len() - 1],
            columns,
            indexes: Vec::new(),
            next_index_id: 2,
            adding: Vec::new(),
            view: None,
            checks: Vec::new(),
            primary_index: 1,
            sequence: None,
            foreign_keys: Vec::new(),
            schema_id,
            schema: "public".into(),
            comments: Vec::new(),
        };
        writes.push(KvWrite::Insert {
            key: keys::table_desc_key(id),
            value: catalog::encode_table(&desc),
        });
        catalog::commit_schema(self.ctx, ts, writes).await?;
        let n = rows.len();
        for (k, row) in rows.into_iter().enumerate() {
            if k % 1024 == 1023 {
                self.pause().await?;
            }
            let given: Vec<(usize, Datum)> = row.into_iter().enumerate().collect();
            let full = self.complete_row(&desc, &given).await?;
            self.write_row(&desc, &full, true);
        }
        Ok((Outcome::Command(format!("SELECT {n}")), None))
    }
}

/// `SELECT … INTO [TABLE] name …` as the `CREATE TABLE name AS SELECT …` it means;
/// `None` for any other statement.
pub fn select_into_as_create(stmt: &Statement) -> Result<Option<Statement>> {
    let Statement::Query(q) = stmt else {
        return Ok(None);
    };
    let SetExpr::Select(s) = q.body.as_ref() else {
        return Ok(None);
    };
    let Some(into) = &s.into else {
        return Ok(None);
    };
    let name = match into.targets.as_slice() {
        [Expr::Identifier(i)] => ast::ObjectName::from(vec![i.clone()]),
        [Expr::CompoundIdentifier(parts)] => ast::ObjectName::from(parts.clone()),
        _ => return Err(Error::syntax("SELECT … INTO takes one table name")),
    };
    let mut inner = q.clone();
    if let SetExpr::Select(s) = inner.body.as_mut() {
        s.into = None;
    }
    Ok(Some(Statement::CreateTable(
        ast::helpers::stmt_create_table::CreateTableBuilder::new(name)
            .query(Some(inner))
            .build(),
    )))
}
