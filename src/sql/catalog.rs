//! The catalog: database and table descriptors stored in the system span (range 1, core 0),
//! cached per core and reloaded when the node-wide catalog version moves.

use std::rc::Rc;
use std::sync::atomic::Ordering;

use sqlparser::ast::{Expr, ObjectName};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::error::{Error, ErrorKind, Result};
use crate::kv::keys::{self, SYSTEM_RANGE};
use crate::kv::{KvRequest, KvResponse, KvWrite};
use crate::node::CoreCtx;
use crate::sql::types::SqlType;

#[derive(Clone, Debug)]
pub struct DatabaseDesc {
    pub id: u32,
    pub name: String,
}

/// A schema (`CREATE SCHEMA`) of one database. `public` is implicit: schema id
/// [`PUBLIC_SCHEMA`], no descriptor.
#[derive(Clone, Debug)]
pub struct SchemaDesc {
    pub id: u32,
    pub db_id: u32,
    pub name: String,
}

/// The schema id of `public`, every database's default schema (no descriptor).
pub const PUBLIC_SCHEMA: u32 = 0;

/// The schemas an unqualified relation name is looked up in, in order: the session's
/// `search_path` (PostgreSQL's default `"$user", public`) without the schemas that do not
/// exist. The first one is where an unqualified CREATE puts its relation. `pg_catalog`
/// is searched before it by the virtual tables (`pg_catalog::virtual_table`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchPath {
    pub schemas: Vec<u32>,
}

impl Default for SearchPath {
    /// `public` alone: the default path when no schema is named after the user.
    fn default() -> SearchPath {
        SearchPath {
            schemas: vec![PUBLIC_SCHEMA],
        }
    }
}

impl SearchPath {
    /// The path `setting` (the `search_path` variable's text) names in database `db_id`
    /// for `user`: `$user` is the schema named after the user, if any.
    pub fn resolve(cat: &Catalog, db_id: u32, setting: &str, user: &str) -> SearchPath {
        let mut schemas = Vec::new();
        for name in search_path_names(setting) {
            let name = if name == "$user" { user } else { name.as_str() };
            if let Some(id) = cat.schema_id(db_id, name) {
                if !schemas.contains(&id) {
                    schemas.push(id);
                }
            }
        }
        SearchPath { schemas }
    }
}

/// The schema names of a `search_path` setting, as PostgreSQL's `SplitIdentifierString`
/// reads them: comma-separated, an unquoted name folded to lower case, a double-quoted
/// one kept as written (`""` is a quote).
pub fn search_path_names(setting: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = setting.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut name = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        name.push('"');
                    } else {
                        break;
                    }
                } else {
                    name.push(c);
                }
            }
            while chars.peek().is_some_and(|&c| c != ',') {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                name.push(c);
                chars.next();
            }
            name = name.trim().to_lowercase();
        }
        if !name.is_empty() {
            names.push(name);
        }
        if chars.next().is_none() {
            return names;
        }
    }
}

/// A relation name's schema (when qualified: `s.t`, `db.s.t`) and relation.
pub fn split_name(name: &ObjectName) -> Result<(Option<String>, String)> {
    let mut parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(crate::sql::expr::ident_name)
        .collect();
    let Some(rel) = parts.pop() else {
        return Err(Error::syntax("empty relation name"));
    };
    Ok((parts.pop(), rel))
}

#[derive(Clone, Debug)]
pub struct ColumnDesc {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
    /// The DEFAULT expression as SQL text.
    pub default: Option<String>,
    pub hidden: bool,
    /// VARCHAR(n) / CHAR(n) limit.
    pub max_len: Option<u32>,
    /// NUMERIC(precision, scale).
    pub numeric: Option<(u32, u32)>,
    /// Parsed `default` (not stored).
    pub default_expr: Option<Expr>,
    /// Dropped by `ALTER TABLE … DROP COLUMN`: its slot stays in stored rows (as
    /// PostgreSQL's `attisdropped`), nothing reads or writes it any more.
    pub dropped: bool,
    /// The value rows written before `ADD COLUMN … DEFAULT` read for this column
    /// (PostgreSQL's `attmissingval`): no rewrite of existing rows.
    pub missing: Option<crate::sql::types::Datum>,
    /// For the hidden column of an index expression: the expression as SQL text, its value
    /// recomputed from the row's other columns whenever a row is read or written
    /// ([`crate::sql::computed`]).
    pub computed: Option<String>,
    /// `computed`, bound over the table's columns (not stored: bound when the descriptor
    /// loads).
    pub computed_scalar: Option<crate::sql::expr::Scalar>,
}

impl ColumnDesc {
    /// A plain nullable column of type `ty`.
    pub fn new(name: impl Into<String>, ty: SqlType) -> Self {
        ColumnDesc {
            name: name.into(),
            ty,
            nullable: true,
            default: None,
            hidden: false,
            max_len: None,
            numeric: None,
            default_expr: None,
            dropped: false,
            missing: None,
            computed: None,
            computed_scalar: None,
        }
    }
}

/// A CHECK constraint: rows whose expression is false are refused (NULL passes).
#[derive(Clone, Debug)]
pub struct CheckDesc {
    pub name: String,
    /// The expression as SQL text.
    pub expr: String,
    /// Parsed `expr` (not stored).
    pub parsed: Expr,
}

/// What a foreign key does to referencing rows when the referenced row is deleted or its
/// key updated (PostgreSQL's `confdeltype` / `confupdtype` letters in [`RefAction::letter`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefAction {
    NoAction,
    Restrict,
    Cascade,
    SetNull,
    SetDefault,
}

impl RefAction {
    pub fn letter(self) -> char {
        match self {
            RefAction::NoAction => 'a',
            RefAction::Restrict => 'r',
            RefAction::Cascade => 'c',
            RefAction::SetNull => 'n',
            RefAction::SetDefault => 'd',
        }
    }
    pub fn from_letter(c: u8) -> Option<RefAction> {
        Some(match c {
            b'a' => RefAction::NoAction,
            b'r' => RefAction::Restrict,
            b'c' => RefAction::Cascade,
            b'n' => RefAction::SetNull,
            b'd' => RefAction::SetDefault,
            _ => return None,
        })
    }
    /// The SQL words (`SET NULL`).
    pub fn sql(self) -> &'static str {
        match self {
            RefAction::NoAction => "NO ACTION",
            RefAction::Restrict => "RESTRICT",
            RefAction::Cascade => "CASCADE",
            RefAction::SetNull => "SET NULL",
            RefAction::SetDefault => "SET DEFAULT",
        }
    }
}

/// A FOREIGN KEY constraint of the table that holds it (the referencing table), MATCH
/// SIMPLE: a row with a NULL in any of `columns` references nothing.
#[derive(Clone, Debug)]
pub struct ForeignKeyDesc {
    pub name: String,
    /// Column positions in this table.
    pub columns: Vec<usize>,
    /// The referenced table's descriptor id.
    pub ref_table: u32,
    /// Column positions in the referenced table: its primary key or a unique index.
    pub ref_columns: Vec<usize>,
    pub on_delete: RefAction,
    pub on_update: RefAction,
}

/// A sequence's options (PostgreSQL's `pg_sequence`). The sequence is a relation whose one
/// row (`last_value`, `log_cnt`, `is_called`) lives at its primary-index prefix and is
/// advanced outside user transactions ([`crate::sql::sequence`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceDesc {
    /// int2, int4 or int8.
    pub ty: SqlType,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub start: i64,
    pub cache: i64,
    pub cycle: bool,
    /// `OWNED BY table.column`: (table id, column position); dropped with the table.
    pub owned_by: Option<(u32, usize)>,
}

#[derive(Clone, Debug)]
pub struct IndexDesc {
    pub id: u32,
    pub name: String,
    pub unique: bool,
    pub columns: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct TableDesc {
    pub id: u32,
    pub db_id: u32,
    pub name: String,
    pub columns: Vec<ColumnDesc>,
    /// Column positions of the primary key (the hidden rowid when none was declared).
    pub pk: Vec<usize>,
    pub pk_name: String,
    /// Secondary indexes (the primary index is id 1).
    pub indexes: Vec<IndexDesc>,
    pub next_index_id: u32,
    /// Indexes being added online (`CREATE INDEX`): writers maintain them, readers and the
    /// catalog views do not see them until the backfill is done and they move to
    /// `indexes` (see `exec/online_index.rs`).
    pub adding: Vec<IndexDesc>,
    /// For a view: its query (SQL text); the columns are its output columns.
    pub view: Option<String>,
    /// CHECK constraints.
    pub checks: Vec<CheckDesc>,
    /// The index id the primary key's rows live under: 1, until `ALTER TABLE … ADD
    /// PRIMARY KEY` rewrites a table keyed by its hidden rowid under a new id.
    pub primary_index: u32,
    /// For a sequence: its options (the columns are last_value, log_cnt, is_called).
    pub sequence: Option<SequenceDesc>,
    /// FOREIGN KEY constraints this table holds.
    pub foreign_keys: Vec<ForeignKeyDesc>,
    /// The schema the relation lives in ([`PUBLIC_SCHEMA`] or a [`SchemaDesc`] id).
    pub schema_id: u32,
    /// That schema's name (not stored: filled in when the catalog loads).
    pub schema: String,
    /// `COMMENT ON`: (0 for the table, column position + 1 for a column, comment).
    pub comments: Vec<(u32, String)>,
    /// For a materialized view: its query and whether it is populated. Such a relation is
    /// a table (`view` is `None`: its rows are stored, indexes work) that only `REFRESH
    /// MATERIALIZED VIEW` writes (`exec::materialized_views`).
    pub materialized: Option<MaterializedViewDesc>,
    /// Positions of the columns with a bound `computed_scalar` (not stored: kept by
    /// [`crate::sql::computed::bind`]); empty for most tables, whose rows then skip it.
    pub computed_columns: Vec<usize>,
}

/// What makes a table a materialized view (descriptor extension 6).
#[derive(Clone, Debug, PartialEq)]
pub struct MaterializedViewDesc {
    /// The defining query (SQL text), run again by each `REFRESH MATERIALIZED VIEW` and
    /// resolved through the search path of the session that refreshes.
    pub query: String,
    /// False after `WITH NO DATA`: reading the view is an error (55000) until a REFRESH
    /// fills it (PostgreSQL's `relispopulated`).
    pub populated: bool,
}

impl TableDesc {
    /// A table `name` of `columns` in the public schema, with nothing else yet: no id,
    /// key, indexes or constraints (callers set what they have with `..`).
    pub fn new(name: impl Into<String>, columns: Vec<ColumnDesc>) -> TableDesc {
        TableDesc {
            id: 0,
            db_id: 0,
            name: name.into(),
            columns,
            pk: Vec::new(),
            pk_name: String::new(),
            indexes: Vec::new(),
            next_index_id: 2,
            adding: Vec::new(),
            view: None,
            checks: Vec::new(),
            primary_index: 1,
            sequence: None,
            foreign_keys: Vec::new(),
            schema_id: PUBLIC_SCHEMA,
            schema: "public".into(),
            comments: Vec::new(),
            materialized: None,
            computed_columns: Vec::new(),
        }
    }
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
    /// Decodes a stored row: values of columns added since it was written read as the
    /// column's missing value (NULL unless added with a DEFAULT).
    pub fn decode_row(&self, b: &[u8]) -> Result<Vec<crate::sql::types::Datum>> {
        let mut row = keys::decode_row(b, 0)?;
        let n = row.len();
        for c in self.columns.iter().skip(n) {
            row.push(c.missing.clone().unwrap_or(crate::sql::types::Datum::Null));
        }
        row.truncate(self.columns.len().max(n));
        crate::sql::computed::fill_read(self, &mut row, None);
        Ok(row)
    }
    /// [`Self::decode_row`] with only the columns `keep` marks (the others NULL).
    pub fn decode_row_kept(
        &self,
        b: &[u8],
        keep: &[bool],
    ) -> Result<Vec<crate::sql::types::Datum>> {
        let mut row = keys::decode_row_kept(b, keep)?;
        let n = row.len();
        for (i, c) in self.columns.iter().enumerate().skip(n) {
            row.push(if keep.get(i).copied().unwrap_or(true) {
                c.missing.clone().unwrap_or(crate::sql::types::Datum::Null)
            } else {
                crate::sql::types::Datum::Null
            });
        }
        row.truncate(self.columns.len().max(n));
        crate::sql::computed::fill_read(self, &mut row, Some(keep));
        Ok(row)
    }
    /// The secondary indexes writers maintain: the public ones and those being added.
    pub fn write_indexes(&self) -> impl Iterator<Item = &IndexDesc> {
        self.indexes.iter().chain(&self.adding)
    }
    pub fn visible_columns(&self) -> impl Iterator<Item = (usize, &ColumnDesc)> {
        self.columns.iter().enumerate().filter(|(_, c)| !c.hidden)
    }
    /// The query text a view or materialized view is defined by (`None` for a table or
    /// sequence).
    pub fn defining_query(&self) -> Option<&str> {
        match (&self.view, &self.materialized) {
            (Some(q), _) => Some(q),
            (None, Some(m)) => Some(&m.query),
            (None, None) => None,
        }
    }
}

/// An immutable snapshot of all descriptors.
#[derive(Debug, Default)]
pub struct Catalog {
    pub version: u64,
    pub databases: Vec<DatabaseDesc>,
    pub schemas: Vec<SchemaDesc>,
    pub tables: Vec<Rc<TableDesc>>,
    /// Table statistics (`ANALYZE`), by table id ([`crate::sql::stats`]).
    pub stats: crate::sql::stats::StatsByTable,
    /// Roles besides the built-in `root`, by name ([`crate::sql::roles`]).
    pub roles: Vec<crate::sql::roles::Role>,
    /// SQL functions (`CREATE FUNCTION`), of every database.
    pub functions: Vec<Rc<FunctionDesc>>,
}

/// An argument of a [`FunctionDesc`].
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionArgDesc {
    /// The parameter name (`None` for an unnamed one, referred to as `$n` only).
    pub name: Option<String>,
    /// The type as written (`INT`, `VARCHAR(10)`): what an argument is cast to.
    pub type_sql: String,
    /// That type (not stored: resolved when the catalog loads).
    pub ty: SqlType,
    /// The DEFAULT expression as SQL text, used when a call leaves the argument out.
    pub default: Option<String>,
}

/// How a SQL function's body was written.
#[derive(Clone, Debug, PartialEq)]
pub enum FunctionBody {
    /// `AS 'select …'` / `AS $$select …$$`: the body's text.
    As(String),
    /// `RETURN expr`: the expression's text.
    Return(String),
}

/// A SQL-language function (`CREATE FUNCTION … LANGUAGE sql`), under
/// [`keys::function_key`]. Calls are inlined ([`crate::sql::udf`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionDesc {
    pub id: u32,
    pub db_id: u32,
    /// The schema the function lives in ([`PUBLIC_SCHEMA`] or a [`SchemaDesc`] id).
    pub schema_id: u32,
    pub name: String,
    pub args: Vec<FunctionArgDesc>,
    /// The return type as written.
    pub returns_sql: String,
    /// That type (not stored: resolved when the catalog loads).
    pub returns: SqlType,
    pub body: FunctionBody,
    /// PostgreSQL's `provolatile`: `i`mmutable, `s`table or `v`olatile.
    pub volatility: u8,
    /// `STRICT` / `RETURNS NULL ON NULL INPUT`: a NULL argument makes the result NULL.
    pub strict: bool,
}

impl FunctionDesc {
    /// The argument types, as PostgreSQL prints a signature: `integer, text`.
    pub fn signature(&self) -> String {
        self.args
            .iter()
            .map(|a| a.ty.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Catalog {
    pub fn database(&self, name: &str) -> Option<&DatabaseDesc> {
        self.databases.iter().find(|d| d.name == name)
    }
    /// A relation by unqualified name: the first schema of `path` that holds one.
    pub fn table(&self, db_id: u32, path: &SearchPath, name: &str) -> Option<Rc<TableDesc>> {
        path.schemas
            .iter()
            .find_map(|&schema| self.table_in(db_id, schema, name))
    }
    /// A relation of schema `schema_id` by name.
    pub fn table_in(&self, db_id: u32, schema_id: u32, name: &str) -> Option<Rc<TableDesc>> {
        self.tables
            .iter()
            .find(|t| t.db_id == db_id && t.schema_id == schema_id && t.name == name)
            .cloned()
    }
    /// A schema's id by name (`public` included).
    pub fn schema_id(&self, db_id: u32, name: &str) -> Option<u32> {
        if name == "public" {
            return Some(PUBLIC_SCHEMA);
        }
        self.schemas
            .iter()
            .find(|s| s.db_id == db_id && s.name == name)
            .map(|s| s.id)
    }
    /// The name of schema `schema_id` (`public` for [`PUBLIC_SCHEMA`]).
    pub fn schema_name(&self, schema_id: u32) -> &str {
        self.schemas
            .iter()
            .find(|s| s.id == schema_id)
            .map(|s| s.name.as_str())
            .unwrap_or("public")
    }
    /// The user schemas of database `db_id` (not `public`), by id.
    pub fn schemas_in(&self, db_id: u32) -> impl Iterator<Item = &SchemaDesc> {
        self.schemas.iter().filter(move |s| s.db_id == db_id)
    }
    /// Where a relation named `name` (`t`, `s.t`, `db.s.t`) is created: its schema id and
    /// relation name. An unqualified name goes to the first schema of `path` (3F000 when
    /// the path names no schema that exists); a named schema that does not exist is 3F000.
    pub fn creation_name(
        &self,
        db_id: u32,
        path: &SearchPath,
        name: &ObjectName,
    ) -> Result<(u32, String)> {
        let (schema, rel) = split_name(name)?;
        match schema {
            None => match path.schemas.first() {
                Some(&id) => Ok((id, rel)),
                None => Err(Error::new(
                    ErrorKind::InvalidSchemaName,
                    "no schema has been selected to create in",
                )),
            },
            Some(s) => match self.schema_id(db_id, &s) {
                Some(id) => Ok((id, rel)),
                None => Err(undefined_schema(&s)),
            },
        }
    }
    /// The relation a possibly qualified name refers to (an unqualified one through
    /// `path`): `Ok(None)` when there is none, 3F000 when a named schema does not exist.
    pub fn relation(
        &self,
        db_id: u32,
        path: &SearchPath,
        name: &ObjectName,
    ) -> Result<Option<Rc<TableDesc>>> {
        let (schema, rel) = split_name(name)?;
        match schema {
            None => Ok(self.table(db_id, path, &rel)),
            Some(s) => match self.schema_id(db_id, &s) {
                Some(id) => Ok(self.table_in(db_id, id, &rel)),
                None => Err(undefined_schema(&s)),
            },
        }
    }
    /// Whether an unqualified `t.name` finds `t` through `path` (PostgreSQL's
    /// `pg_table_is_visible`): its schema is on the path and no schema before it holds a
    /// relation of the same name.
    pub fn is_visible(&self, path: &SearchPath, t: &TableDesc) -> bool {
        self.table(t.db_id, path, &t.name)
            .is_some_and(|found| found.id == t.id)
    }
    pub fn tables_in(&self, db_id: u32) -> impl Iterator<Item = &Rc<TableDesc>> {
        self.tables.iter().filter(move |t| t.db_id == db_id)
    }
    pub fn functions_in(&self, db_id: u32) -> impl Iterator<Item = &Rc<FunctionDesc>> {
        self.functions.iter().filter(move |f| f.db_id == db_id)
    }
    /// The functions a call of `name` may mean: those of the named schema, or (unqualified)
    /// of every schema on `path`, an earlier schema's function hiding a later one's of the
    /// same argument types. 3F000 when a named schema does not exist.
    pub fn functions_named(
        &self,
        db_id: u32,
        path: &SearchPath,
        schema: Option<&str>,
        name: &str,
    ) -> Result<Vec<Rc<FunctionDesc>>> {
        let schemas = match schema {
            Some(s) => match self.schema_id(db_id, s) {
                Some(id) => vec![id],
                None => return Err(undefined_schema(s)),
            },
            None => path.schemas.clone(),
        };
        let mut found: Vec<Rc<FunctionDesc>> = Vec::new();
        for sid in schemas {
            for f in self
                .functions_in(db_id)
                .filter(|f| f.schema_id == sid && f.name == name)
            {
                let hidden = found.iter().any(|g| {
                    g.args.len() == f.args.len()
                        && g.args.iter().zip(&f.args).all(|(a, b)| a.ty == b.ty)
                });
                if !hidden {
                    found.push(f.clone());
                }
            }
        }
        Ok(found)
    }
}

// --- Encoding: a tiny length-prefixed binary format. ---

struct W(Vec<u8>);
impl W {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn opt_str(&mut self, s: &Option<String>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }
}

struct R<'a>(&'a [u8], usize);
impl R<'_> {
    fn bad() -> Error {
        Error::internal("corrupt descriptor")
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.0.get(self.1..self.1 + 4).ok_or_else(Self::bad)?;
        self.1 += 4;
        Ok(u32::from_le_bytes(b.try_into().unwrap()))
    }
    fn i64(&mut self) -> Result<i64> {
        let b = self.0.get(self.1..self.1 + 8).ok_or_else(Self::bad)?;
        self.1 += 8;
        Ok(i64::from_le_bytes(b.try_into().unwrap()))
    }
    fn u8(&mut self) -> Result<u8> {
        let b = *self.0.get(self.1).ok_or_else(Self::bad)?;
        self.1 += 1;
        Ok(b)
    }
    fn str(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        let b = self.0.get(self.1..self.1 + n).ok_or_else(Self::bad)?;
        self.1 += n;
        String::from_utf8(b.to_vec()).map_err(|_| Self::bad())
    }
    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.u32()? as usize;
        let b = self.0.get(self.1..self.1 + n).ok_or_else(Self::bad)?;
        self.1 += n;
        Ok(b.to_vec())
    }
    fn opt_str(&mut self) -> Result<Option<String>> {
        Ok(if self.u8()? == 1 {
            Some(self.str()?)
        } else {
            None
        })
    }
}

pub fn encode_table(t: &TableDesc) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.u32(t.id);
    w.u32(t.db_id);
    w.str(&t.name);
    w.u32(t.columns.len() as u32);
    for c in &t.columns {
        w.str(&c.name);
        w.u8(c.ty.tag());
        w.u8(c.nullable as u8);
        w.opt_str(&c.default);
        w.u8(c.hidden as u8);
        w.u32(c.max_len.unwrap_or(0));
        match c.numeric {
            Some((p, sc)) => {
                w.u8(1);
                w.u32(p);
                w.u32(sc);
            }
            None => w.u8(0),
        }
    }
    w.u32(t.pk.len() as u32);
    for p in &t.pk {
        w.u32(*p as u32);
    }
    w.str(&t.pk_name);
    w.u32(t.indexes.len() as u32);
    for i in &t.indexes {
        encode_index(&mut w, i);
    }
    w.u32(t.next_index_id);
    // Added later: absent in older descriptors.
    w.opt_str(&t.view);
    // Extension 1 (ALTER TABLE): per-column dropped flag and missing value, CHECKs, the
    // primary index id.
    w.u8(1);
    for c in &t.columns {
        w.u8(c.dropped as u8);
        match &c.missing {
            Some(d) => {
                w.u8(1);
                w.bytes(&keys::encode_row(std::slice::from_ref(d)));
            }
            None => w.u8(0),
        }
    }
    w.u32(t.checks.len() as u32);
    for c in &t.checks {
        w.str(&c.name);
        w.str(&c.expr);
    }
    w.u32(t.primary_index);
    // Extension 2 (sequences, foreign keys).
    w.u8(2);
    match &t.sequence {
        Some(sq) => {
            w.u8(1);
            w.u8(sq.ty.tag());
            for v in [sq.increment, sq.min, sq.max, sq.start, sq.cache] {
                w.i64(v);
            }
            w.u8(sq.cycle as u8);
            match sq.owned_by {
                Some((table, col)) => {
                    w.u8(1);
                    w.u32(table);
                    w.u32(col as u32);
                }
                None => w.u8(0),
            }
        }
        None => w.u8(0),
    }
    w.u32(t.foreign_keys.len() as u32);
    for fk in &t.foreign_keys {
        w.str(&fk.name);
        w.u32(fk.columns.len() as u32);
        for c in &fk.columns {
            w.u32(*c as u32);
        }
        w.u32(fk.ref_table);
        w.u32(fk.ref_columns.len() as u32);
        for c in &fk.ref_columns {
            w.u32(*c as u32);
        }
        w.u8(fk.on_delete.letter() as u8);
        w.u8(fk.on_update.letter() as u8);
    }
    // Extension 3 (schemas).
    w.u8(3);
    w.u32(t.schema_id);
    // Extension 4 (online schema changes): indexes being added.
    w.u8(4);
    w.u32(t.adding.len() as u32);
    for i in &t.adding {
        encode_index(&mut w, i);
    }
    // Extension 5 (COMMENT ON).
    w.u8(5);
    w.u32(t.comments.len() as u32);
    for (on, text) in &t.comments {
        w.u32(*on);
        w.str(text);
    }
    // Extension 6 (materialized views): the query and the populated flag.
    w.u8(6);
    match &t.materialized {
        Some(m) => {
            w.u8(1);
            w.str(&m.query);
            w.u8(m.populated as u8);
        }
        None => w.u8(0),
    }
    // Extension 7 (index expressions): per column, its computed expression.
    w.u8(7);
    for c in &t.columns {
        w.opt_str(&c.computed);
    }
    w.0
}

fn encode_index(w: &mut W, i: &IndexDesc) {
    w.u32(i.id);
    w.str(&i.name);
    w.u8(i.unique as u8);
    w.u32(i.columns.len() as u32);
    for c in &i.columns {
        w.u32(*c as u32);
    }
}

fn decode_index(r: &mut R) -> Result<IndexDesc> {
    let id = r.u32()?;
    let name = r.str()?;
    let unique = r.u8()? == 1;
    let n = r.u32()? as usize;
    let mut columns = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        columns.push(r.u32()? as usize);
    }
    Ok(IndexDesc {
        id,
        name,
        unique,
        columns,
    })
}

pub fn parse_default(s: &str) -> Result<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(s)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| Error::syntax(format!("bad default expression {s}: {e}")))
}

pub fn decode_table(b: &[u8]) -> Result<TableDesc> {
    let mut r = R(b, 0);
    let id = r.u32()?;
    let db_id = r.u32()?;
    let name = r.str()?;
    let ncols = r.u32()? as usize;
    let mut columns = Vec::with_capacity(ncols.min(4096));
    for _ in 0..ncols {
        let name = r.str()?;
        let ty = SqlType::from_tag(r.u8()?).ok_or_else(R::bad)?;
        let nullable = r.u8()? == 1;
        let default = r.opt_str()?;
        let hidden = r.u8()? == 1;
        let max_len = match r.u32()? {
            0 => None,
            n => Some(n),
        };
        let numeric = if r.u8()? == 1 {
            Some((r.u32()?, r.u32()?))
        } else {
            None
        };
        let default_expr = match &default {
            Some(s) => Some(parse_default(s)?),
            None => None,
        };
        columns.push(ColumnDesc {
            name,
            ty,
            nullable,
            default,
            hidden,
            max_len,
            numeric,
            default_expr,
            dropped: false,
            missing: None,
            computed: None,
            computed_scalar: None,
        });
    }
    let npk = r.u32()? as usize;
    let mut pk = Vec::new();
    for _ in 0..npk {
        pk.push(r.u32()? as usize);
    }
    let pk_name = r.str()?;
    let nidx = r.u32()? as usize;
    let mut indexes = Vec::new();
    for _ in 0..nidx {
        indexes.push(decode_index(&mut r)?);
    }
    let next_index_id = r.u32()?;
    let view = if r.1 < r.0.len() { r.opt_str()? } else { None };
    let mut checks = Vec::new();
    let mut primary_index = 1;
    if r.1 < r.0.len() && r.u8()? >= 1 {
        for c in columns.iter_mut() {
            c.dropped = r.u8()? == 1;
            if r.u8()? == 1 {
                let b = r.bytes()?;
                c.missing = keys::decode_row(&b, 1)?.pop();
            }
        }
        let n = r.u32()? as usize;
        for _ in 0..n {
            let name = r.str()?;
            let expr = r.str()?;
            let parsed = parse_default(&expr)?;
            checks.push(CheckDesc { name, expr, parsed });
        }
        primary_index = r.u32()?;
    }
    let mut sequence = None;
    let mut foreign_keys = Vec::new();
    if r.1 < r.0.len() && r.u8()? >= 2 {
        if r.u8()? == 1 {
            let ty = SqlType::from_tag(r.u8()?).ok_or_else(R::bad)?;
            let (increment, min, max, start, cache) =
                (r.i64()?, r.i64()?, r.i64()?, r.i64()?, r.i64()?);
            let cycle = r.u8()? == 1;
            let owned_by = if r.u8()? == 1 {
                Some((r.u32()?, r.u32()? as usize))
            } else {
                None
            };
            sequence = Some(SequenceDesc {
                ty,
                increment,
                min,
                max,
                start,
                cache,
                cycle,
                owned_by,
            });
        }
        let n = r.u32()? as usize;
        for _ in 0..n {
            let name = r.str()?;
            let mut columns = Vec::new();
            for _ in 0..r.u32()? {
                columns.push(r.u32()? as usize);
            }
            let ref_table = r.u32()?;
            let mut ref_columns = Vec::new();
            for _ in 0..r.u32()? {
                ref_columns.push(r.u32()? as usize);
            }
            let on_delete = RefAction::from_letter(r.u8()?).ok_or_else(R::bad)?;
            let on_update = RefAction::from_letter(r.u8()?).ok_or_else(R::bad)?;
            foreign_keys.push(ForeignKeyDesc {
                name,
                columns,
                ref_table,
                ref_columns,
                on_delete,
                on_update,
            });
        }
    }
    let mut schema_id = PUBLIC_SCHEMA;
    if r.1 < r.0.len() && r.u8()? >= 3 {
        schema_id = r.u32()?;
    }
    let mut adding = Vec::new();
    if r.1 < r.0.len() && r.u8()? >= 4 {
        for _ in 0..r.u32()? {
            adding.push(decode_index(&mut r)?);
        }
    }
    let mut comments = Vec::new();
    if r.1 < r.0.len() && r.u8()? >= 5 {
        for _ in 0..r.u32()? {
            let on = r.u32()?;
            comments.push((on, r.str()?));
        }
    }
    let mut materialized = None;
    let mut tag = if r.1 < r.0.len() { r.u8()? } else { 0 };
    if tag == 6 {
        if r.u8()? == 1 {
            let query = r.str()?;
            let populated = r.u8()? == 1;
            materialized = Some(MaterializedViewDesc { query, populated });
        }
        tag = if r.1 < r.0.len() { r.u8()? } else { 0 };
    }
    if tag == 7 {
        for c in columns.iter_mut() {
            c.computed = r.opt_str()?;
        }
    }
    let mut t = TableDesc {
        id,
        db_id,
        name,
        columns,
        pk,
        pk_name,
        indexes,
        next_index_id,
        adding,
        view,
        checks,
        primary_index,
        sequence,
        foreign_keys,
        schema_id,
        schema: "public".into(),
        comments,
        materialized,
        computed_columns: Vec::new(),
    };
    crate::sql::computed::bind(&mut t);
    Ok(t)
}

pub fn encode_database(d: &DatabaseDesc) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.u32(d.id);
    w.str(&d.name);
    w.0
}

pub fn encode_schema(s: &SchemaDesc) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.u32(s.id);
    w.u32(s.db_id);
    w.str(&s.name);
    w.0
}

pub fn decode_schema(b: &[u8]) -> Result<SchemaDesc> {
    let mut r = R(b, 0);
    Ok(SchemaDesc {
        id: r.u32()?,
        db_id: r.u32()?,
        name: r.str()?,
    })
}

pub fn decode_database(b: &[u8]) -> Result<DatabaseDesc> {
    let mut r = R(b, 0);
    Ok(DatabaseDesc {
        id: r.u32()?,
        name: r.str()?,
    })
}

async fn scan_system(ctx: &CoreCtx, prefix: u8) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let (start, end) = keys::system_span(prefix);
    scan_system_span(ctx, start, end).await
}

/// Every system-range meta record whose name starts with `prefix`, in key order, as of now.
pub async fn scan_meta(ctx: &CoreCtx, prefix: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let start = keys::meta_key(prefix);
    let end = keys::prefix_end(&start);
    scan_system_span(ctx, start, end).await
}

async fn scan_system_span(
    ctx: &CoreCtx,
    start: Vec<u8>,
    end: Vec<u8>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let ts = ctx.shared.hlc.now();
    match ctx
        .send(KvRequest::Scan {
            range: SYSTEM_RANGE,
            start,
            end,
            ts,
            unc: chitin_storage::Timestamp::MIN,
            limit: 0,
            reverse: false,
        })
        .await?
    {
        KvResponse::Rows(rows) => Ok(rows),
        other => Err(Error::internal(format!("unexpected response {other:?}"))),
    }
}

/// Writes `writes` to the system range in one raft entry, as of now (blind writes: a
/// concurrent write of the same key after now fails it with 40001).
pub async fn write_system(ctx: &CoreCtx, writes: Vec<KvWrite>) -> Result<()> {
    let txn = ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed);
    ctx.send(KvRequest::OnePhase {
        range: SYSTEM_RANGE,
        txn,
        read_ts: ctx.shared.hlc.now(),
        writes,
        reads: Default::default(),
    })
    .await
    .map(|_| ())
}

/// The format version a function descriptor starts with. Later fields are appended after
/// the version-1 ones (read when present), as table descriptors' extensions are.
const FUNCTION_FORMAT: u8 = 1;

pub fn encode_function(f: &FunctionDesc) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.u8(FUNCTION_FORMAT);
    w.u32(f.id);
    w.u32(f.db_id);
    w.u32(f.schema_id);
    w.str(&f.name);
    w.u32(f.args.len() as u32);
    for a in &f.args {
        w.opt_str(&a.name);
        w.str(&a.type_sql);
        w.opt_str(&a.default);
    }
    w.str(&f.returns_sql);
    match &f.body {
        FunctionBody::As(text) => {
            w.u8(0);
            w.str(text);
        }
        FunctionBody::Return(text) => {
            w.u8(1);
            w.str(text);
        }
    }
    w.u8(f.volatility);
    w.u8(f.strict as u8);
    w.0
}

/// The type a function's argument or result names, from its SQL text (`Unknown` if it no
/// longer parses: the function then fails when called, not the catalog when loading).
pub fn function_type(type_sql: &str) -> SqlType {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(type_sql)
        .and_then(|mut p| p.parse_data_type())
        .ok()
        .and_then(|dt| crate::sql::expr::sql_type(&dt).ok())
        .unwrap_or(SqlType::Unknown)
}

pub fn decode_function(b: &[u8]) -> Result<FunctionDesc> {
    let mut r = R(b, 0);
    if r.u8()? != FUNCTION_FORMAT {
        return Err(R::bad());
    }
    let id = r.u32()?;
    let db_id = r.u32()?;
    let schema_id = r.u32()?;
    let name = r.str()?;
    let n = r.u32()? as usize;
    let mut args = Vec::with_capacity(n.min(100));
    for _ in 0..n {
        let name = r.opt_str()?;
        let type_sql = r.str()?;
        let default = r.opt_str()?;
        args.push(FunctionArgDesc {
            name,
            ty: function_type(&type_sql),
            type_sql,
            default,
        });
    }
    let returns_sql = r.str()?;
    let body = match r.u8()? {
        0 => FunctionBody::As(r.str()?),
        1 => FunctionBody::Return(r.str()?),
        _ => return Err(R::bad()),
    };
    let volatility = r.u8()?;
    let strict = r.u8()? == 1;
    Ok(FunctionDesc {
        id,
        db_id,
        schema_id,
        name,
        args,
        returns: function_type(&returns_sql),
        returns_sql,
        body,
        volatility,
        strict,
    })
}

/// Reads every descriptor from the system span.
pub async fn load(ctx: &CoreCtx) -> Result<Catalog> {
    let version = ctx.shared.catalog_version.load(Ordering::SeqCst);
    let mut cat = Catalog {
        version,
        ..Default::default()
    };
    for (_, v) in scan_system(ctx, keys::SYSTEM_DATABASE).await? {
        cat.databases.push(decode_database(&v)?);
    }
    for (_, v) in scan_system(ctx, keys::SYSTEM_SCHEMA).await? {
        cat.schemas.push(decode_schema(&v)?);
    }
    for (_, v) in scan_system(ctx, keys::SYSTEM_TABLE).await? {
        let mut t = decode_table(&v)?;
        t.schema = cat.schema_name(t.schema_id).to_string();
        cat.tables.push(Rc::new(t));
    }
    for (_, v) in scan_system(ctx, keys::SYSTEM_FUNCTION).await? {
        cat.functions.push(Rc::new(decode_function(&v)?));
    }
    for (_, v) in scan_meta(ctx, crate::sql::stats::PREFIX).await? {
        let s = crate::sql::stats::decode(&v)?;
        cat.stats.entry(s.table).or_default().push(s);
    }
    for (_, v) in scan_meta(ctx, crate::sql::roles::PREFIX).await? {
        cat.roles.push(crate::sql::roles::decode(&v)?);
    }
    Ok(cat)
}

/// The core's cached catalog, reloaded when a schema change moved the version.
pub async fn current(ctx: &CoreCtx) -> Result<Rc<Catalog>> {
    let version = ctx.shared.catalog_version.load(Ordering::SeqCst);
    if let Some(c) = ctx.catalog.borrow().as_ref() {
        if c.version == version {
            return Ok(c.clone());
        }
    }
    let c = Rc::new(load(ctx).await?);
    *ctx.catalog.borrow_mut() = Some(c.clone());
    Ok(c)
}

/// Commits descriptor writes to the system range in one raft entry, moves the schema
/// generation on, and publishes the new catalog version. Answers the new generation.
pub async fn commit_schema(
    ctx: &CoreCtx,
    read_ts: chitin_storage::Timestamp,
    mut writes: Vec<KvWrite>,
) -> Result<u64> {
    let txn = ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed);
    // Other nodes watch this key to notice schema changes ([`watch_schema`]). Two changes
    // that read the same generation conflict on it (the later one fails with 40001).
    let generation = schema_generation(ctx, read_ts).await? + 1;
    writes.push(generation_write(generation));
    let r = ctx
        .send(KvRequest::OnePhase {
            range: SYSTEM_RANGE,
            txn,
            read_ts,
            writes,
            reads: Default::default(),
        })
        .await;
    ctx.shared.catalog_version.fetch_add(1, Ordering::SeqCst);
    r.map(|_| generation)
}

/// The system-range key every schema change rewrites: the schema generation, a counter
/// every change moves on (a store written before generations holds a transaction id
/// there, which serves as the starting count).
pub const SCHEMA_CHANGE_KEY: &str = "schema_change";

/// The system-range key every statistics refresh rewrites (not a schema change: it moves
/// no generation and conflicts with no DDL); [`watch_schema`] reloads catalogs when it
/// changes.
const STATS_CHANGE_KEY: &str = "stats_change";

/// Commits table statistics (`writes`) and makes this node's cores reload their catalog
/// (other nodes follow within a poll of [`watch_schema`]).
pub async fn commit_stats(ctx: &CoreCtx, mut writes: Vec<KvWrite>) -> Result<()> {
    let change = ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed);
    writes.push(KvWrite::Put {
        key: keys::meta_key(STATS_CHANGE_KEY),
        value: change.to_le_bytes().to_vec(),
    });
    let r = write_system(ctx, writes).await;
    ctx.shared.catalog_version.fetch_add(1, Ordering::SeqCst);
    r
}

/// The schema generation as of `ts`.
pub async fn schema_generation(ctx: &CoreCtx, ts: chitin_storage::Timestamp) -> Result<u64> {
    let v = ctx.kv_get(&keys::meta_key(SCHEMA_CHANGE_KEY), ts).await?;
    Ok(v.as_deref().map_or(0, generation_of))
}

/// The write that sets the schema generation to `generation`.
pub fn generation_write(generation: u64) -> KvWrite {
    KvWrite::Put {
        key: keys::meta_key(SCHEMA_CHANGE_KEY),
        value: generation.to_le_bytes().to_vec(),
    }
}

fn generation_of(v: &[u8]) -> u64 {
    v.get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The system-range key where node `node` acknowledges the newest schema generation
/// whose older transactions have all ended there ([`watch_schema`]).
fn ack_key(node: u64) -> Vec<u8> {
    keys::meta_key(&format!("schema_ack/{node:020}"))
}

/// How often [`watch_schema`] polls the schema generation.
const SCHEMA_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Keeps this node's catalog fresh in a cluster: polls the schema generation and, when
/// another node changed the schema, makes every core reload its catalog. Once no
/// transaction of this node still uses a catalog from before a generation, acknowledges
/// it in the system range, for [`old_schema_users`]. Runs on one core per node,
/// for the node's life.
///
/// Caveat: between another node's schema change and the next poll (≤ 250 ms), this node
/// plans with the old schema. Statements that fail on a missing table, column or database
/// reload the catalog and run again at once (`Session::run`); online index builds wait for
/// the acknowledgements ([`old_schema_users`]) before they backfill, so no writer misses a
/// new index.
pub async fn watch_schema(ctx: &CoreCtx) {
    let key = keys::meta_key(SCHEMA_CHANGE_KEY);
    // `None` until the first reading.
    let mut seen: Option<Option<Vec<u8>>> = None;
    let stats_key = keys::meta_key(STATS_CHANGE_KEY);
    let mut seen_stats: Option<Option<Vec<u8>>> = None;
    // Generations seen, with the catalog version this node moved to for each, oldest
    // first, until acknowledged.
    let mut unacked: std::collections::VecDeque<(u64, u64)> = Default::default();
    let (mut due, mut acked) = (0u64, 0u64);
    // Jobs this node was running when it last stopped died with it.
    while !ctx.shared.shutdown.load(Ordering::SeqCst) {
        match crate::sql::exec::fail_interrupted_jobs(ctx).await {
            Ok(()) => break,
            Err(_) => glommio::timer::sleep(SCHEMA_POLL).await,
        }
    }
    while !ctx.shared.shutdown.load(Ordering::SeqCst) {
        glommio::timer::sleep(SCHEMA_POLL).await;
        let several = ctx.shared.replicated() || ctx.shared.multi_node.load(Ordering::SeqCst);
        if !several || !ctx.shared.ready.load(Ordering::SeqCst) {
            continue;
        }
        let read = ctx
            .send(KvRequest::Get {
                range: SYSTEM_RANGE,
                key: key.clone(),
                ts: ctx.shared.hlc.now(),
                unc: chitin_storage::Timestamp::MIN,
            })
            .await;
        if let Ok(KvResponse::Value(v)) = read {
            // The first reading counts as a change too: a core may have loaded its
            // catalog before another node's schema change this poll is the first to see.
            if seen.as_ref() != Some(&v) {
                let version = ctx.shared.catalog_version.fetch_add(1, Ordering::SeqCst) + 1;
                unacked.push_back((v.as_deref().map_or(0, generation_of), version));
            }
            seen = Some(v);
        }
        // New statistics: a reload, nothing to acknowledge.
        let read = ctx
            .send(KvRequest::Get {
                range: SYSTEM_RANGE,
                key: stats_key.clone(),
                ts: ctx.shared.hlc.now(),
                unc: chitin_storage::Timestamp::MIN,
            })
            .await;
        if let Ok(KvResponse::Value(v)) = read {
            if seen_stats.as_ref().is_some_and(|s| *s != v) {
                ctx.shared.catalog_version.fetch_add(1, Ordering::SeqCst);
            }
            seen_stats = Some(v);
        }
        while let Some(&(generation, version)) = unacked.front() {
            if !crate::node::catalog_pins::drained(&ctx.shared, version) {
                break;
            }
            due = due.max(generation);
            unacked.pop_front();
        }
        let node = ctx.shared.node_id.load(Ordering::SeqCst);
        if due > acked && node != 0 {
            let ack = KvWrite::Put {
                key: ack_key(node),
                value: due.to_le_bytes().to_vec(),
            };
            if write_system(ctx, vec![ack]).await.is_ok() {
                acked = due;
            }
        }
    }
}

/// Who may still write with a catalog from before schema generation `generation`, which
/// this node reached at catalog version `version`: `None` once nobody — no transaction of
/// this node began before it, and every other live node acknowledged the generation
/// ([`watch_schema`]); else what is being waited for, in words. Online schema changes poll
/// it until `None`.
///
/// Caveat: a node not heard from for 4.5 s is not waited for (it cannot reach the others
/// to commit; when it comes back it reloads its catalog before it plans again).
pub async fn old_schema_users(
    ctx: &CoreCtx,
    generation: u64,
    version: u64,
) -> Result<Option<String>> {
    if !crate::node::catalog_pins::drained(&ctx.shared, version) {
        return Ok(Some(
            "waiting for transactions that began before the schema change".into(),
        ));
    }
    let me = ctx.shared.node_id.load(Ordering::SeqCst);
    let mut behind = Vec::new();
    for n in crate::node::cluster::node_rows(ctx) {
        if n.id == me || !n.live {
            continue;
        }
        let acked = ctx
            .kv_get(&ack_key(n.id), ctx.shared.hlc.now())
            .await?
            .as_deref()
            .map_or(0, generation_of);
        if acked < generation {
            behind.push(n.id.to_string());
        }
    }
    Ok((!behind.is_empty()).then(|| {
        format!(
            "waiting for node(s) {} to finish transactions that began before the schema change",
            behind.join(", ")
        )
    }))
}

/// Allocates a descriptor id (read-modify-write of a counter; conflicts are 40001 and the
/// schema change is retried by the caller).
pub async fn next_id(
    ctx: &CoreCtx,
    read_ts: chitin_storage::Timestamp,
    writes: &mut Vec<KvWrite>,
) -> Result<u32> {
    let key = keys::meta_key("next_descriptor_id");
    let cur = match ctx
        .send(KvRequest::Get {
            range: SYSTEM_RANGE,
            key: key.clone(),
            ts: read_ts,
            unc: chitin_storage::Timestamp::MIN,
        })
        .await?
    {
        KvResponse::Value(Some(v)) if v.len() == 4 => u32::from_le_bytes(v.try_into().unwrap()),
        _ => 100,
    };
    // Several ids in one schema change: continue from the counter this change already
    // moved.
    let pending = writes.iter().rev().find_map(|w| match w {
        KvWrite::Put { key: k, value } if k == &key && value.len() == 4 => {
            Some(u32::from_le_bytes(value.as_slice().try_into().unwrap()))
        }
        _ => None,
    });
    let id = pending.unwrap_or(cur).max(cur);
    writes.retain(|w| w.key() != key.as_slice());
    writes.push(KvWrite::Put {
        key,
        value: (id + 1).to_le_bytes().to_vec(),
    });
    Ok(id)
}

/// Creates the built-in databases on a fresh store.
pub async fn bootstrap(ctx: &CoreCtx) -> Result<()> {
    let cat = load(ctx).await?;
    let mut writes = Vec::new();
    for (id, name) in [(1u32, "defaultdb"), (2, "postgres"), (3, "system")] {
        if cat.database(name).is_none() {
            writes.push(KvWrite::Put {
                key: keys::database_key(id),
                value: encode_database(&DatabaseDesc {
                    id,
                    name: name.to_string(),
                }),
            });
        }
    }
    if !writes.is_empty() {
        let ts = ctx.shared.hlc.now();
        commit_schema(ctx, ts, writes).await?;
    }
    Ok(())
}

pub fn undefined_table(name: &str) -> Error {
    Error::new(
        ErrorKind::UndefinedTable,
        format!("relation \"{name}\" does not exist"),
    )
}

/// A possibly qualified relation name as PostgreSQL's messages spell it (`s.t`).
pub fn display_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(crate::sql::expr::ident_name)
        .collect::<Vec<_>>()
        .join(".")
}

/// 3F000 for a schema that does not exist.
pub fn undefined_schema(name: &str) -> Error {
    Error::new(
        ErrorKind::InvalidSchemaName,
        format!("schema \"{name}\" does not exist"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_descriptor_round_trips() {
        let f = FunctionDesc {
            id: 7,
            db_id: 2,
            schema_id: 9,
            name: "add".into(),
            args: vec![
                FunctionArgDesc {
                    name: None,
                    type_sql: "INT".into(),
                    ty: SqlType::Int4,
                    default: None,
                },
                FunctionArgDesc {
                    name: Some("b".into()),
                    type_sql: "VARCHAR(3)".into(),
                    ty: SqlType::Varchar,
                    default: Some("'x'".into()),
                },
            ],
            returns_sql: "DOUBLE PRECISION".into(),
            returns: SqlType::Float8,
            body: FunctionBody::As("select $1 + 1".into()),
            volatility: b'i',
            strict: true,
        };
        assert_eq!(decode_function(&encode_function(&f)).unwrap(), f);
        let r = FunctionDesc {
            body: FunctionBody::Return("$1 * 2".into()),
            ..f
        };
        let bytes = encode_function(&r);
        assert_eq!(decode_function(&bytes).unwrap(), r);
        // Fields a later version appends after these are skipped by this one.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode_function(&longer).unwrap(), r);
        assert!(decode_function(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn table_descriptor_round_trip() {
        let t = TableDesc {
            id: 104,
            db_id: 1,
            name: "t".into(),
            columns: vec![ColumnDesc {
                name: "k".into(),
                ty: SqlType::Int8,
                nullable: false,
                default: Some("1 + 1".into()),
                hidden: false,
                max_len: Some(5),
                numeric: None,
                default_expr: None,
                dropped: false,
                missing: None,
                computed: Some("k + 1".into()),
                computed_scalar: None,
            }],
            pk: vec![0],
            pk_name: "t_pkey".into(),
            indexes: vec![IndexDesc {
                id: 2,
                name: "t_k_idx".into(),
                unique: true,
                columns: vec![0],
            }],
            next_index_id: 4,
            adding: vec![IndexDesc {
                id: 3,
                name: "t_k_new".into(),
                unique: false,
                columns: vec![0],
            }],
            view: Some("SELECT 1".into()),
            checks: vec![CheckDesc {
                name: "t_k_check".into(),
                expr: "k > 0".into(),
                parsed: parse_default("k > 0").unwrap(),
            }],
            primary_index: 4,
            sequence: None,
            foreign_keys: Vec::new(),
            schema_id: 0,
            schema: "public".into(),
            comments: vec![(0, "the table".into()), (1, "the key".into())],
            materialized: None,
            computed_columns: Vec::new(),
        };
        let back = decode_table(&encode_table(&t)).unwrap();
        assert_eq!(back.name, "t");
        assert_eq!(back.comments, t.comments);
        assert_eq!(back.materialized, None);
        // Extension 6: a materialized view's query and populated flag.
        let mut mv = t.clone();
        mv.view = None;
        mv.materialized = Some(MaterializedViewDesc {
            query: "SELECT k FROM t".into(),
            populated: false,
        });
        let back = decode_table(&encode_table(&mv)).unwrap();
        assert_eq!(back.materialized, mv.materialized);
        assert_eq!(back.defining_query(), Some("SELECT k FROM t"));
        assert_eq!(back.comments, t.comments);
        assert_eq!(back.columns[0].default.as_deref(), Some("1 + 1"));
        assert!(back.columns[0].default_expr.is_some());
        assert_eq!(back.columns[0].computed.as_deref(), Some("k + 1"));
        assert_eq!(back.indexes[0].columns, vec![0]);
        assert_eq!(back.adding.len(), 1);
        assert_eq!(
            (back.adding[0].id, back.adding[0].name.as_str()),
            (3, "t_k_new")
        );
        assert_eq!(
            back.write_indexes().map(|i| i.id).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(back.checks[0].expr, "k > 0");
        assert_eq!(back.primary_index, 4);
        let mut t2 = t.clone();
        t2.columns[0].dropped = true;
        t2.columns[0].missing = Some(crate::sql::types::Datum::Int(7));
        let back = decode_table(&encode_table(&t2)).unwrap();
        assert!(back.columns[0].dropped);
        assert!(matches!(
            back.columns[0].missing,
            Some(crate::sql::types::Datum::Int(7))
        ));
        // A descriptor written before extension 2 reads with its defaults.
        let mut t3 = t.clone();
        t3.sequence = Some(SequenceDesc {
            ty: SqlType::Int4,
            increment: -2,
            min: i64::MIN,
            max: 10,
            start: 7,
            cache: 1,
            cycle: true,
            owned_by: Some((105, 2)),
        });
        t3.foreign_keys.push(ForeignKeyDesc {
            name: "t_k_fkey".into(),
            columns: vec![0],
            ref_table: 99,
            ref_columns: vec![1],
            on_delete: RefAction::Cascade,
            on_update: RefAction::SetNull,
        });
        let back = decode_table(&encode_table(&t3)).unwrap();
        assert_eq!(back.sequence, t3.sequence);
        assert_eq!(back.foreign_keys[0].ref_columns, vec![1]);
        assert_eq!(back.foreign_keys[0].on_delete, RefAction::Cascade);
        assert_eq!(back.foreign_keys[0].on_update, RefAction::SetNull);
        // A descriptor written before extension 5 has no comments, before 4 no indexes
        // being added.
        let mut t0 = t.clone();
        t0.adding.clear();
        t0.comments.clear();
        t0.columns[0].computed = None;
        let full = encode_table(&t0);
        // Before extension 7: no index expressions (a tag and one absent per column).
        let before_ext7 = full[..full.len() - 2].to_vec();
        assert!(decode_table(&before_ext7).unwrap().columns[0]
            .computed
            .is_none());
        // Before extension 6: no materialized view part (a tag and a 0 for none).
        let old = full[..full.len() - 4].to_vec();
        assert!(decode_table(&old).unwrap().materialized.is_none());
        let back = decode_table(&old[..old.len() - (1 + 4)]).unwrap();
        assert!(back.comments.is_empty() && back.adding.is_empty());
        let back = decode_table(&old[..old.len() - 2 * (1 + 4)]).unwrap();
        assert!(back.adding.is_empty() && back.schema_id == 0);
        let ext2_len = 1 + 1 + 4 + (1 + 4) + (1 + 4) + (1 + 4);
        let before_ext2 = &old[..old.len() - ext2_len];
        let back = decode_table(before_ext2).unwrap();
        assert!(back.sequence.is_none() && back.foreign_keys.is_empty());
        assert_eq!(back.primary_index, 4);
        // A descriptor written before extension 1 reads with its defaults.
        let old = before_ext2.to_vec();
        let cut = old.len() - (1 + 2 + 4 + 4 + 9 + 4 + 5 + 4);
        let back = decode_table(&old[..cut]).unwrap();
        assert!(back.checks.is_empty() && back.primary_index == 1);
        assert!(decode_table(&encode_table(&t)[..7]).is_err());
    }
}
