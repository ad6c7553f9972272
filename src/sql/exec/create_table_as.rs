//! `CREATE TABLE name [(columns)] AS query [WITH [NO] DATA]` and `SELECT … INTO name`;
//! `CREATE MATERIALIZED VIEW` makes its table here too ([`FromQuery`], see
//! `exec::materialized_views`).
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

/// A relation made from a query's result: a `CREATE TABLE … AS` table or a materialized
/// view.
pub(super) struct FromQuery<'a> {
    pub name: &'a ast::ObjectName,
    /// Names for the first columns (there may be fewer than the query's columns).
    pub column_names: Vec<String>,
    pub query: &'a ast::Query,
    /// False for `WITH NO DATA`: the query runs with `LIMIT 0`, for its columns.
    pub with_data: bool,
    pub if_not_exists: bool,
    /// For a materialized view: the query text its descriptor keeps (extension 6).
    pub materialized: Option<String>,
}

impl Exec<'_> {
    /// Creates table `ct.name` from `ct.query` (which must be present).
    pub(super) async fn create_table_as(
        &mut self,
        ct: &ast::CreateTable,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let Some(query) = &ct.query else {
            return Err(Error::internal("create_table_as without a query"));
        };
        self.create_from_query(FromQuery {
            name: &ct.name,
            column_names: ct.columns.iter().map(|c| ident_name(&c.name)).collect(),
            query,
            with_data: ct.with_data.as_ref().is_none_or(|w| w.data),
            if_not_exists: ct.if_not_exists,
            materialized: None,
        })
        .await
    }

    /// Creates the table `spec` describes, with the hidden `rowid` primary key, and writes
    /// the query's rows into it in this statement's transaction. The tag is PostgreSQL's:
    /// `SELECT n`, or the command's name when no rows were asked for.
    pub(super) async fn create_from_query(
        &mut self,
        spec: FromQuery<'_>,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let command = if spec.materialized.is_some() {
            "CREATE MATERIALIZED VIEW"
        } else {
            "CREATE TABLE AS"
        };
        let (schema_id, name) = self.cat.creation_name(self.db_id, &self.path, spec.name)?;
        if self.cat.table_in(self.db_id, schema_id, &name).is_some() {
            if spec.if_not_exists {
                return Ok((Outcome::Command(command.into()), None));
            }
            return Err(Error::new(
                ErrorKind::DuplicateTable,
                format!("relation \"{name}\" already exists"),
            ));
        }
        let (rows, result_columns) = self.rows_of_query(spec.query, spec.with_data).await?;
        if spec.column_names.len() > result_columns.len() {
            return Err(Error::syntax("too many column names were specified"));
        }
        let mut columns: Vec<ColumnDesc> = Vec::with_capacity(result_columns.len() + 1);
        for (i, c) in result_columns.iter().enumerate() {
            let cname = match spec.column_names.get(i) {
                Some(n) => n.clone(),
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
            pk: vec![columns.len() - 1],
            schema_id,
            materialized: spec
                .materialized
                .map(|query| catalog::MaterializedViewDesc {
                    query,
                    populated: spec.with_data,
                }),
            ..TableDesc::new(name, columns)
        };
        writes.push(KvWrite::Insert {
            key: keys::table_desc_key(id),
            value: catalog::encode_table(&desc),
        });
        catalog::commit_schema(self.ctx, ts, writes).await?;
        let n = self.insert_query_rows(&desc, rows).await?;
        if !spec.with_data {
            return Ok((Outcome::Command(command.into()), None));
        }
        Ok((Outcome::Command(format!("SELECT {n}")), None))
    }

    /// Runs `query` as a SELECT (with `LIMIT 0` unless `with_data`): its rows and result
    /// columns.
    pub(super) async fn rows_of_query(
        &mut self,
        query: &ast::Query,
        with_data: bool,
    ) -> Result<(Vec<Vec<Datum>>, Vec<Column>)> {
        let mut q = query.clone();
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
        Ok((rows, result_columns))
    }

    /// Writes `rows` (values of `t`'s first columns, in order) into `t` with fresh rowids,
    /// checking its unique indexes; answers how many.
    pub(super) async fn insert_query_rows(
        &mut self,
        t: &TableDesc,
        rows: Vec<Vec<Datum>>,
    ) -> Result<usize> {
        let n = rows.len();
        let check_unique = t.write_indexes().any(|i| i.unique);
        for (k, row) in rows.into_iter().enumerate() {
            if k % 1024 == 1023 {
                self.pause().await?;
            }
            let given: Vec<(usize, Datum)> = row.into_iter().enumerate().collect();
            let full = self.complete_row(t, &given).await?;
            if check_unique {
                if let Some((constraint, _)) = self.find_conflict(t, &full).await? {
                    return Err(Self::dup_error(t, &constraint, &full));
                }
            }
            self.write_row(t, &full, true);
        }
        Ok(n)
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
