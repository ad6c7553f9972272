//! Materialized views: tables filled from their query at creation and at each `REFRESH`.
//!
//! A materialized view is a table descriptor (the query's result columns plus the hidden
//! `rowid` primary key, made by `exec::create_table_as` as for `CREATE TABLE … AS`) whose
//! extension 6 ([`catalog::MaterializedViewDesc`]) holds the defining query and the
//! `populated` flag; its `view` is `None`, so reads, joins, DistSQL, `CREATE INDEX` (built
//! from the stored rows) and the KV layout are a table's. What differs:
//!
//! - `CREATE MATERIALIZED VIEW v [(cols)] AS query [WITH [NO] DATA]` writes the query's rows
//!   in the statement's transaction ([`Exec::create_materialized_view`]); `WITH NO DATA`
//!   (a pre-parser option, `preparse::NO_DATA_MARKER`) leaves it empty and unpopulated.
//! - `REFRESH MATERIALIZED VIEW [CONCURRENTLY] v [WITH [NO] DATA]`
//!   ([`Exec::refresh_materialized_view`]) deletes every row with its index entries and
//!   inserts the query's rows again, in one transaction, so indexes on the view stay
//!   right; `WITH NO DATA` only empties it and marks it unpopulated.
//! - Reading an unpopulated one fails (55000, [`not_populated`]) where the planner
//!   resolves relations (`plan_relation`).
//! - INSERT, UPDATE, DELETE, COPY FROM and TRUNCATE are refused with PostgreSQL's
//!   messages (42809, [`refuse_write`]).
//! - `DROP MATERIALIZED VIEW` drops it; `DROP VIEW` / `DROP TABLE` of one fail with
//!   PostgreSQL's hints. Views over it, and materialized views over other relations, take
//!   part in `DROP … RESTRICT | CASCADE` as views do (`exec::view_deps`, through
//!   [`TableDesc::defining_query`]).
//! - `ALTER MATERIALIZED VIEW [IF EXISTS] v RENAME TO w` (and `ALTER VIEW … RENAME TO` for
//!   views) renames ([`Exec::alter_view`]); `ALTER TABLE v RENAME TO w` works too.
//!
//! # Implementation caveats
//!
//! - `CONCURRENTLY` is checked as PostgreSQL does (populated, a unique index) and then
//!   refreshes as without it: other transactions see the old rows until the refresh
//!   commits anyway (MVCC), but every row is rewritten, no difference is computed, and
//!   concurrent refreshes conflict (40001) instead of queueing.
//! - The populated flag lives in the descriptor, committed as any DDL (on its own), while
//!   the rows are written in the statement's transaction: a REFRESH that flips the flag and
//!   then rolls back leaves the flag flipped (an empty view reading as populated, or rows
//!   reading as unpopulated until the next REFRESH).
//! - Materialized views created before they were stored are plain view descriptors
//!   (`view: Some`): they are still computed at each read, REFRESH leaves them be, and DROP
//!   MATERIALIZED VIEW drops them; since they cannot be told from views, DROP MATERIALIZED
//!   VIEW and REFRESH accept any plain view (PostgreSQL refuses both, 42809).

use super::*;

/// Reading a materialized view created or refreshed `WITH NO DATA` (PostgreSQL's words).
pub(super) fn not_populated(name: &str) -> Error {
    Error::new(
        ErrorKind::ObjectNotInPrerequisiteState,
        format!("materialized view \"{name}\" has not been populated"),
    )
    .with_hint("Use the REFRESH MATERIALIZED VIEW command.")
}

/// The statements that write a relation, as they refuse a materialized view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Write {
    /// INSERT, UPDATE, DELETE (and UPSERT).
    Dml,
    CopyFrom,
    Truncate,
}

/// `Err` with PostgreSQL's message when `t` is a materialized view, which only REFRESH
/// writes.
pub(super) fn refuse_write(t: &TableDesc, write: Write) -> Result<()> {
    if t.materialized.is_none() {
        return Ok(());
    }
    let message = match write {
        Write::Dml => format!("cannot change materialized view \"{}\"", t.name),
        Write::CopyFrom => format!("cannot copy to materialized view \"{}\"", t.name),
        Write::Truncate => format!("\"{}\" is not a table", t.name),
    };
    Err(Error::new(ErrorKind::WrongObjectType, message))
}

impl Exec<'_> {
    /// `CREATE MATERIALIZED VIEW [IF NOT EXISTS] v [(cols)] AS query [WITH [NO] DATA]`: a
    /// table of the query's rows (`create_from_query`), marked as a materialized view.
    pub(super) async fn create_materialized_view(
        &mut self,
        cv: &ast::CreateView,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        if cv.or_replace {
            // PostgreSQL has no CREATE OR REPLACE MATERIALIZED VIEW.
            return Err(Error::syntax("syntax error at or near \"MATERIALIZED\""));
        }
        let with_data = !matches!(&cv.options, ast::CreateTableOptions::With(options)
            if options.iter().any(|o| matches!(o,
                ast::SqlOption::KeyValue { key, .. } if object_name(key) == NO_DATA_MARKER)));
        self.create_from_query(create_table_as::FromQuery {
            name: &cv.name,
            column_names: cv.columns.iter().map(|c| ident_name(&c.name)).collect(),
            query: &cv.query,
            with_data,
            if_not_exists: cv.if_not_exists,
            materialized: Some(cv.query.to_string()),
        })
        .await
    }

    /// `REFRESH MATERIALIZED VIEW [CONCURRENTLY] v [WITH [NO] DATA]`: the view's rows
    /// replaced by its query's, in this statement's transaction.
    pub(super) async fn refresh_materialized_view(
        &mut self,
        r: &ast::RefreshMaterializedView,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        const TAG: &str = "REFRESH MATERIALIZED VIEW";
        let t = lookup_relation(self.cat, self.db_id, &self.path, &r.name)?;
        let Some(m) = &t.materialized else {
            if t.view.is_some() {
                // A materialized view made before they were stored: computed at each read.
                return Ok((Outcome::Command(TAG.into()), None));
            }
            if t.sequence.is_some() {
                return Err(Error::new(
                    ErrorKind::WrongObjectType,
                    format!("\"{}\" is not a table or materialized view", t.name),
                ));
            }
            return Err(Error::unsupported(format!(
                "\"{}\" is not a materialized view",
                t.name
            )));
        };
        let with_data = r.with_data != Some(false);
        if r.concurrently {
            if !m.populated {
                return Err(Error::unsupported(
                    "CONCURRENTLY cannot be used when the materialized view is not populated",
                ));
            }
            if !with_data {
                return Err(Error::syntax(
                    "CONCURRENTLY and WITH NO DATA options cannot be used together",
                ));
            }
            if !t.indexes.iter().any(|i| i.unique) {
                return Err(Error::new(
                    ErrorKind::ObjectNotInPrerequisiteState,
                    format!(
                        "cannot refresh materialized view \"{}.{}\" concurrently",
                        t.schema, t.name
                    ),
                )
                .with_hint(
                    "Create a unique index with no WHERE clause on one or more columns of \
                     the materialized view.",
                ));
            }
        }
        let rows = if with_data {
            let query = match crate::sql::session::parse(&m.query)?.pop() {
                Some(Statement::Query(q)) => q,
                _ => {
                    return Err(Error::internal(format!(
                        "materialized view {} is not a query",
                        t.name
                    )))
                }
            };
            let (rows, columns) = self.rows_of_query(&query, true).await?;
            let stored = t.columns.iter().filter(|c| !c.hidden).count();
            if columns.len() != stored {
                return Err(Error::new(
                    ErrorKind::DatatypeMismatch,
                    format!(
                        "the query of materialized view \"{}\" now returns {} columns, not {stored}",
                        t.name,
                        columns.len()
                    ),
                ));
            }
            rows
        } else {
            Vec::new()
        };
        for (k, row) in self
            .read_rows(&t, Access::Full)
            .await?
            .into_iter()
            .enumerate()
        {
            if k % 1024 == 1023 {
                self.pause().await?;
            }
            self.delete_row(&t, &row);
        }
        self.insert_query_rows(&t, rows).await?;
        if m.populated != with_data {
            let mut desc = (*t).clone();
            desc.materialized = Some(catalog::MaterializedViewDesc {
                query: m.query.clone(),
                populated: with_data,
            });
            let ts = self.ctx.shared.hlc.now();
            let writes = vec![KvWrite::Put {
                key: keys::table_desc_key(desc.id),
                value: catalog::encode_table(&desc),
            }];
            catalog::commit_schema(self.ctx, ts, writes).await?;
        }
        Ok((Outcome::Command(TAG.into()), None))
    }

    /// `ALTER [MATERIALIZED] VIEW [IF EXISTS] v RENAME TO w`; other ALTER VIEW forms are
    /// not supported.
    pub(super) async fn alter_view(
        &mut self,
        av: &ast::AlterView,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let tag = if av.materialized {
            "ALTER MATERIALIZED VIEW"
        } else {
            "ALTER VIEW"
        };
        let ast::AlterViewOperation::RenameTo { new_name } = &av.operation else {
            return Err(Error::unsupported(format!(
                "{tag} {}",
                first_words(&av.operation.to_string())
            )));
        };
        let t = match self.cat.relation(self.db_id, &self.path, &av.name)? {
            Some(t) => t,
            None if av.if_exists => return Ok((Outcome::Command(tag.into()), None)),
            None => return Err(catalog::undefined_table(&catalog::display_name(&av.name))),
        };
        let fits = if av.materialized {
            t.materialized.is_some()
        } else {
            t.view.is_some()
        };
        if !fits {
            let kind = if av.materialized {
                "a materialized view"
            } else {
                "a view"
            };
            return Err(Error::new(
                ErrorKind::WrongObjectType,
                format!("\"{}\" is not {kind}", t.name),
            ));
        }
        let new = object_name(new_name);
        if self.cat.table_in(self.db_id, t.schema_id, &new).is_some() {
            return Err(Error::new(
                ErrorKind::DuplicateTable,
                format!("relation \"{new}\" already exists"),
            ));
        }
        let mut desc = (*t).clone();
        desc.name = new;
        let ts = self.ctx.shared.hlc.now();
        let writes = vec![KvWrite::Put {
            key: keys::table_desc_key(desc.id),
            value: catalog::encode_table(&desc),
        }];
        catalog::commit_schema(self.ctx, ts, writes).await?;
        Ok((Outcome::Command(tag.into()), None))
    }
}
