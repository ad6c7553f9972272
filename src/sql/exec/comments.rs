//! `COMMENT ON TABLE | VIEW | MATERIALIZED VIEW | COLUMN … IS 'text' | NULL`: kept in the
//! table's descriptor (`TableDesc::comments`), shown by `pg_description`,
//! `obj_description` and `col_description` (psql's `\d+`, drivers' reflection). Like other
//! schema changes it commits at once, outside the session's transaction.

use super::*;

impl Exec<'_> {
    pub(super) async fn comment_on(
        &mut self,
        kind: ast::CommentObject,
        name: &ast::ObjectName,
        comment: Option<&str>,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        use ast::CommentObject as K;
        let (relation, column) = match kind {
            K::Table | K::View | K::MaterializedView => (name.clone(), None),
            K::Column => {
                let mut parts = name.0.clone();
                let Some(col) = parts.pop() else {
                    return Err(Error::syntax("column name expected"));
                };
                if parts.is_empty() {
                    return Err(Error::syntax(format!(
                        "column name \"{col}\" must be qualified"
                    )));
                }
                let col = col
                    .as_ident()
                    .map(crate::sql::expr::ident_name)
                    .unwrap_or_else(|| col.to_string());
                (ast::ObjectName(parts), Some(col))
            }
            other => {
                return Err(Error::unsupported(format!("COMMENT ON {other}")));
            }
        };
        let t = lookup_relation(self.cat, self.db_id, &self.path, &relation)?;
        let on = match &column {
            None => 0,
            Some(c) => match t
                .columns
                .iter()
                .position(|col| &col.name == c && !col.hidden && !col.dropped)
            {
                Some(p) => p as u32 + 1,
                None => {
                    return Err(Error::new(
                        ErrorKind::UndefinedColumn,
                        format!("column \"{c}\" of relation \"{}\" does not exist", t.name),
                    ))
                }
            },
        };
        let mut desc = (*t).clone();
        desc.comments.retain(|(o, _)| *o != on);
        // An empty comment removes it, as in PostgreSQL.
        if let Some(text) = comment.filter(|c| !c.is_empty()) {
            desc.comments.push((on, text.to_string()));
            desc.comments.sort();
        }
        let writes = vec![KvWrite::Put {
            key: keys::table_desc_key(desc.id),
            value: catalog::encode_table(&desc),
        }];
        catalog::commit_schema(self.ctx, self.ctx.shared.hlc.now(), writes).await?;
        Ok((Outcome::Command("COMMENT".into()), None))
    }
}
