//! `CREATE SCHEMA [IF NOT EXISTS] s` and `DROP SCHEMA [IF EXISTS] s [CASCADE | RESTRICT]`.
//!
//! A schema is a descriptor of its own ([`catalog::SchemaDesc`], under
//! [`keys::schema_key`]); a relation names its schema by id
//! ([`TableDesc::schema_id`]). `public` is implicit (id [`catalog::PUBLIC_SCHEMA`]).
//! An unqualified name is looked up through the session's `search_path`
//! ([`catalog::SearchPath`], default `"$user", public`), and an unqualified CREATE
//! (table, view, sequence) goes to the path's first schema that exists (3F000 when none
//! does); a SERIAL column's sequence goes to its table's schema.
//!
//! # Implementation caveats
//!
//! - A view's query and a column default are kept as text and resolved through the search
//!   path of the statement that uses them, where PostgreSQL binds names at creation.
//!   SERIAL defaults name their sequence with its schema outside `public`, so they do not
//!   depend on the path.
//! - Index names are unique per database, not per schema.
//! - `AUTHORIZATION` is accepted and ignored; the schema's owner is the superuser.
//! - Functions live in schemas too (`catalog::FunctionDesc::schema_id`); DROP SCHEMA
//!   CASCADE drops them.
//! - `public` cannot be dropped (PostgreSQL lets an owner drop it).

use super::*;

impl Exec<'_> {
    pub(super) async fn create_schema(
        &mut self,
        name: &ast::SchemaName,
        if_not_exists: bool,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        const TAG: &str = "CREATE SCHEMA";
        let n = match name {
            ast::SchemaName::Simple(n) | ast::SchemaName::NamedAuthorization(n, _) => {
                object_name(n)
            }
            ast::SchemaName::UnnamedAuthorization(user) => ident_name(user),
        };
        let builtin = ["pg_catalog", "information_schema", "pg_toast"].contains(&n.as_str());
        if builtin || self.cat.schema_id(self.db_id, &n).is_some() {
            if if_not_exists {
                return Ok((Outcome::Command(TAG.into()), None));
            }
            return Err(Error::new(
                ErrorKind::DuplicateSchema,
                format!("schema \"{n}\" already exists"),
            ));
        }
        let ts = self.ctx.shared.hlc.now();
        let mut writes = Vec::new();
        let id = catalog::next_id(self.ctx, ts, &mut writes).await?;
        writes.push(KvWrite::Insert {
            key: keys::schema_key(id),
            value: catalog::encode_schema(&catalog::SchemaDesc {
                id,
                db_id: self.db_id,
                name: n,
            }),
        });
        catalog::commit_schema(self.ctx, ts, writes).await?;
        Ok((Outcome::Command(TAG.into()), None))
    }

    /// DROP SCHEMA: a schema holding relations is refused (2BP01) unless CASCADE, which
    /// drops them too (and foreign keys of other schemas' tables that reference them).
    pub(super) fn drop_schemas(
        &self,
        if_exists: bool,
        names: &[ast::ObjectName],
        cascade: bool,
        writes: &mut Vec<KvWrite>,
    ) -> Result<()> {
        let mut dropped: Vec<u32> = Vec::new();
        for n in names {
            let sname = object_name(n);
            let id = match self.cat.schema_id(self.db_id, &sname) {
                Some(catalog::PUBLIC_SCHEMA) => {
                    return Err(Error::unsupported("cannot drop schema public"))
                }
                Some(id) => id,
                None if if_exists => continue,
                None => return Err(catalog::undefined_schema(&sname)),
            };
            let members: Vec<&Rc<TableDesc>> = self
                .cat
                .tables_in(self.db_id)
                .filter(|t| t.schema_id == id)
                .collect();
            if let Some(first) = members.first() {
                if !cascade {
                    let kind = view_deps::kind_name(first);
                    return Err(Error::new(
                        ErrorKind::DependentObjects,
                        format!("cannot drop schema {sname} because other objects depend on it"),
                    )
                    .with_detail(format!(
                        "{kind} {sname}.{} depends on schema {sname}",
                        first.name
                    ))
                    .with_hint("Use DROP ... CASCADE to drop the dependent objects too."));
                }
            }
            let functions: Vec<&Rc<catalog::FunctionDesc>> = self
                .cat
                .functions_in(self.db_id)
                .filter(|f| f.schema_id == id)
                .collect();
            if let (Some(f), false) = (functions.first(), cascade) {
                return Err(Error::new(
                    ErrorKind::DependentObjects,
                    format!("cannot drop schema {sname} because other objects depend on it"),
                )
                .with_detail(format!(
                    "function {sname}.{}({}) depends on schema {sname}",
                    f.name,
                    f.signature()
                ))
                .with_hint("Use DROP ... CASCADE to drop the dependent objects too."));
            }
            for f in functions {
                writes.push(KvWrite::Delete {
                    key: keys::function_key(f.id),
                });
            }
            for t in members {
                writes.push(KvWrite::Delete {
                    key: keys::table_desc_key(t.id),
                });
                dropped.push(t.id);
            }
            writes.push(KvWrite::Delete {
                key: keys::schema_key(id),
            });
        }
        self.drop_dependent_views(&mut dropped, true, writes)?;
        self.drop_foreign_keys_to(&dropped, true, writes)?;
        Ok(())
    }
}
