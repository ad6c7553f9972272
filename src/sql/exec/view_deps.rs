//! Views that depend on dropped relations: `DROP TABLE` / `DROP VIEW` of a relation a view
//! or materialized view reads fails with 2BP01 unless CASCADE, which drops those views too
//! (and views on them).
//!
//! A view keeps its query as text (a materialized view too, beside its rows), so its
//! dependencies are found by parsing that text and resolving the relation names in it
//! ([`view_references`]), at drop time.
//!
//! # Implementation caveats
//!
//! - A CTE inside a view with the name of a table counts as a reference to that table.

use super::*;

/// The ids of the relations view `v`'s query names.
fn view_references(
    cat: &Catalog,
    db_id: u32,
    path: &catalog::SearchPath,
    v: &TableDesc,
) -> Vec<u32> {
    let Some(sql) = v.defining_query() else {
        return Vec::new();
    };
    let Ok(stmts) = crate::sql::session::parse(sql) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for s in &stmts {
        let _ = ast::visit_relations(s, |name| {
            if let Ok(Some(t)) = cat.relation(db_id, path, name) {
                ids.push(t.id);
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
    ids
}

/// What a relation is, as messages and `SHOW TABLES` name it.
pub(super) fn kind_name(t: &TableDesc) -> &'static str {
    if t.view.is_some() {
        "view"
    } else if t.materialized.is_some() {
        "materialized view"
    } else if t.sequence.is_some() {
        "sequence"
    } else {
        "table"
    }
}

impl Exec<'_> {
    /// Dropping the relations `dropped`: views that read them are an error (2BP01) unless
    /// `cascade`, which deletes them too (adding them to `dropped`).
    pub(super) fn drop_dependent_views(
        &self,
        dropped: &mut Vec<u32>,
        cascade: bool,
        writes: &mut Vec<KvWrite>,
    ) -> Result<()> {
        loop {
            let mut more = Vec::new();
            for v in self.cat.tables_in(self.db_id) {
                if v.defining_query().is_none() || dropped.contains(&v.id) {
                    continue;
                }
                let refs = view_references(self.cat, self.db_id, &self.path, v);
                let Some(on) = refs.iter().find(|id| dropped.contains(id)) else {
                    continue;
                };
                if !cascade {
                    let base = self.cat.tables.iter().find(|t| t.id == *on);
                    let (kind, name) = base
                        .map(|t| (kind_name(t), t.name.clone()))
                        .unwrap_or(("table", String::new()));
                    return Err(Error::new(
                        ErrorKind::DependentObjects,
                        format!("cannot drop {kind} {name} because other objects depend on it"),
                    )
                    .with_detail(format!(
                        "{} {} depends on {kind} {name}",
                        kind_name(v),
                        v.name
                    ))
                    .with_hint("Use DROP ... CASCADE to drop the dependent objects too."));
                }
                more.push(v.id);
            }
            if more.is_empty() {
                return Ok(());
            }
            for id in more {
                writes.push(KvWrite::Delete {
                    key: keys::table_desc_key(id),
                });
                dropped.push(id);
            }
        }
    }
}
