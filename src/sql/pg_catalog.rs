//! `pg_catalog` and `information_schema`: virtual tables computed from the catalog.
//!
//! psql's `\d` commands and drivers learn the schema by querying PostgreSQL's system
//! catalogs. Chitin keeps its schema in descriptors ([`crate::sql::catalog`]), so the
//! system catalogs here are *virtual*: when a statement names one, its rows are computed
//! from the current [`Catalog`] snapshot at planning time and handed to the executor as a
//! `VALUES` list (a derived table, like a view), so filters, joins, ORDER BY and the rest
//! work on them unchanged.
//!
//! # How a catalog query runs
//!
//! 1. [`needs_rewrite`] tells `exec::Exec::run_once` (and `exec::describe`) that a statement
//!    touches the catalog: a virtual table, a catalog function, `OPERATOR(pg_catalog.~)`,
//!    `COLLATE`, a cast to `regclass`/`oid`/… or a `pg_catalog.`-qualified type.
//! 2. [`rewrite`] turns what the binder does not know into what it does:
//!    `OPERATOR(pg_catalog.~)` into `~`; `x COLLATE pg_catalog.c` into `x`; `'t'::regclass` into the
//!    table's oid; other `reg*`/`oid` casts into `int8`; `pg_catalog.text` into `text`;
//!    `pg_get_indexdef`, `pg_get_constraintdef` and `pg_get_viewdef` into a CASE over the
//!    catalog's objects; `pg_table_is_visible(x)` into `x NOT IN (…)` of the relations
//!    the session's search path does not find (`pg_function_is_visible` likewise) (so `\dt` lists what PostgreSQL's does); and queries and subqueries that must be empty (an inner join with
//!    a catalog that is always empty here: publications, policies, inheritance, extended
//!    statistics, role memberships …) into an empty result, without binding the exotic
//!    syntax psql sends to them (arrays, `= ANY`, subscripts).
//! 3. `exec::plan_relation` asks [`virtual_table`] before looking up a table: `pg_catalog.X`
//!    and bare `pg_X` names (pg_catalog comes first on PostgreSQL's search path, so it wins
//!    over a user table of the same name) and `information_schema.X`.
//! 4. Functions psql calls (`format_type`, `pg_get_userbyid`, `pg_table_is_visible`, …) and
//!    the regex operators are bound and evaluated by `expr` through [`function_type`] and
//!    [`eval_function`].
//!
//! # Object ids
//!
//! Stable and derived from descriptor ids, so every virtual table agrees: a table or view
//! is `100000 + id`, its index `1000000 + 1000·id + index id`, the primary key or unique
//! constraint on that index `2000000 + 1000·id + index id`, its n-th CHECK
//! `3000000 + 1000·id + n`, a column default `4000000 + 1000·id + attnum`. Namespaces,
//! types, access methods and the bootstrap role use PostgreSQL's own oids (`pg_catalog` 11,
//! `public` 2200, `int4` 23, `btree` 403, the superuser 10 — here `root`).
//!
//! # Implementation caveats
//!
//! - Only the current database's relations, and only user relations: `pg_class` does not
//!   list the catalogs themselves, `information_schema.tables` neither.
//! - Every statement that names a virtual table rebuilds it (all columns of all tables for
//!   `pg_attribute`), and joins are nested loops: fine for psql on schemas of hundreds of
//!   tables, slow for thousands (`\d t` joins `pg_class` with itself).
//! - A unique index whose name ends in `_key` is shown as a UNIQUE constraint (that is how
//!   Chitin names them); others as plain unique indexes.
//! - Arrays are values only, never columns: a `Datum::Text` in PostgreSQL's array syntax
//!   typed as an array type (`indkey` is an `int2vector`, `'1 2'`; `array_agg` gives
//!   `text[]` and the like), so clients see the right type oid and decode a list.
//!   `x = ANY (ARRAY[…])` works, `x = ANY (column)` does not; `ARRAY(subquery)` works only
//!   when the subquery is always empty (`'{}'`). `unnest` and `generate_subscripts` work in
//!   a select list (`exec::SelectSrf`), not in FROM.
//! - `x::regclass` of a value known only at run time is a CASE over the relation names
//!   (NULL for an unknown name, where PostgreSQL raises 42P01); the system catalogs have
//!   PostgreSQL's oids there (`'pg_class'::regclass` is 1259) though `pg_class` does not
//!   list them. `x::regtype::text` is `format_type(x, -1)`.
//! - `pg_opclass` is empty: every index uses its column type's default operator class.
//! - `pg_settings` shows the defaults, not the session's `SET` values; `pg_proc` lists the
//!   SQL functions (`CREATE FUNCTION`, oid `100000 + id`), not the built-in ones.
//! - CHECK constraints print as stored (`CHECK (price > 0)`), without PostgreSQL's
//!   implicit casts (`0::numeric`); `char(n)` columns are `character varying(n)`.
//! - Privilege functions answer true: there is one user, `root`.

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, BinaryOperator, DataType, Expr, FunctionArguments, ObjectName, Query, SelectItem,
    SetExpr, Statement, TableFactor, Value, VisitMut, Visitor, VisitorMut,
};

use crate::error::{Error, ErrorKind, Result};
use std::rc::Rc;

use crate::sql::catalog::{
    Catalog, ForeignKeyDesc, FunctionDesc, IndexDesc, RefAction, SearchPath, TableDesc,
};
use crate::sql::session::Column;
use crate::sql::types::{Datum, SqlType};

pub const PG_CATALOG_OID: i64 = 11;
pub const PUBLIC_OID: i64 = 2200;
pub const INFORMATION_SCHEMA_OID: i64 = 13000;
pub const PG_TOAST_OID: i64 = 99;
/// The bootstrap superuser (PostgreSQL's oid 10): `root`.
pub const ROOT_OID: i64 = 10;
/// PostgreSQL 15's `pg_database_owner`, the owner of `public`.
pub const DATABASE_OWNER_OID: i64 = 6171;

/// The oid of a table or view.
/// The oid of schema `schema_id` in pg_namespace (`public`'s is PostgreSQL's 2200).
pub fn schema_oid(schema_id: u32) -> i64 {
    if schema_id == crate::sql::catalog::PUBLIC_SCHEMA {
        PUBLIC_OID
    } else {
        100_000 + schema_id as i64
    }
}

/// The oid of a SQL function (descriptor ids are unique across tables, schemas and
/// functions, so this shares their range).
pub fn function_oid(f: &FunctionDesc) -> i64 {
    100_000 + f.id as i64
}

/// PostgreSQL's oid of `LANGUAGE sql` (`pg_language`).
const SQL_LANGUAGE_OID: i64 = 14;

/// The SQL functions of database `db_id`, by id.
fn functions_of(cat: &Catalog, db_id: u32) -> Vec<&FunctionDesc> {
    let mut v: Vec<&FunctionDesc> = cat.functions_in(db_id).map(|f| f.as_ref()).collect();
    v.sort_by_key(|f| f.id);
    v
}

/// A function's parameters as `pg_get_function_arguments` prints them: `a integer,
/// integer, b text DEFAULT 'x'`.
fn function_arguments(f: &FunctionDesc) -> String {
    f.args
        .iter()
        .map(|a| {
            let mut s = match &a.name {
                Some(n) => format!("{} {}", quote_ident(n), a.ty.name()),
                None => a.ty.name().to_string(),
            };
            if let Some(d) = &a.default {
                s.push_str(" DEFAULT ");
                s.push_str(d);
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn table_oid(t: &TableDesc) -> i64 {
    100_000 + t.id as i64
}

/// The oid of index `index_id` of `t`.
pub fn index_oid(t: &TableDesc, index_id: u32) -> i64 {
    1_000_000 + 1000 * t.id as i64 + index_id as i64
}

fn unique_constraint_oid(t: &TableDesc, index_id: u32) -> i64 {
    2_000_000 + 1000 * t.id as i64 + index_id as i64
}

fn check_oid(t: &TableDesc, n: usize) -> i64 {
    3_000_000 + 1000 * t.id as i64 + n as i64
}

fn attrdef_oid(t: &TableDesc, attnum: i64) -> i64 {
    4_000_000 + 1000 * t.id as i64 + attnum
}

/// The oid of `t`'s n-th FOREIGN KEY constraint.
fn foreign_key_oid(t: &TableDesc, n: usize) -> i64 {
    5_000_000 + 1000 * t.id as i64 + n as i64
}

/// The table a foreign key references and the unique index (primary key first) its
/// referenced columns are.
fn fk_parent(cat: &Catalog, fk: &ForeignKeyDesc) -> Option<(Rc<TableDesc>, IndexDesc, bool)> {
    let parent = cat.tables.iter().find(|t| t.id == fk.ref_table)?.clone();
    let mut want = fk.ref_columns.clone();
    want.sort_unstable();
    let (idx, primary) = indexes_of(&parent).into_iter().find(|(i, _)| {
        let mut c = i.columns.clone();
        c.sort_unstable();
        i.unique && c == want
    })?;
    Some((parent, idx, primary))
}

/// `pg_get_constraintdef` of a foreign key: `FOREIGN KEY (a) REFERENCES p(id) ON DELETE
/// CASCADE` (ON UPDATE before ON DELETE, NO ACTION left out, as PostgreSQL prints it).
fn foreign_key_def(cat: &Catalog, t: &TableDesc, fk: &ForeignKeyDesc) -> String {
    let (pname, pcols) = match cat.tables.iter().find(|p| p.id == fk.ref_table) {
        Some(p) => (quote_ident(&p.name), col_names(p, &fk.ref_columns)),
        None => (String::from("?"), String::new()),
    };
    let mut s = format!(
        "FOREIGN KEY ({}) REFERENCES {pname}({pcols})",
        col_names(t, &fk.columns)
    );
    if fk.on_update != RefAction::NoAction {
        s.push_str(&format!(" ON UPDATE {}", fk.on_update.sql()));
    }
    if fk.on_delete != RefAction::NoAction {
        s.push_str(&format!(" ON DELETE {}", fk.on_delete.sql()));
    }
    s
}

/// Whether PostgreSQL would give `t` triggers: it holds or is referenced by a foreign key
/// (psql's `\d` asks for foreign keys only then).
fn has_fk_triggers(cat: &Catalog, t: &TableDesc) -> bool {
    !t.foreign_keys.is_empty()
        || cat
            .tables
            .iter()
            .any(|c| c.foreign_keys.iter().any(|f| f.ref_table == t.id))
}

fn database_oid(id: u32) -> i64 {
    16_000 + id as i64
}

/// A catalog table's columns and rows.
pub struct VirtualTable {
    /// `pg_catalog` or `information_schema`.
    pub schema: &'static str,
    pub name: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Datum>>,
}

/// PostgreSQL type facts: (oid, typname, typlen, category, array oid, collation).
const TYPES: &[(i64, &str, i64, &str, i64, i64)] = &[
    (16, "bool", 1, "B", 1000, 0),
    (17, "bytea", -1, "U", 1001, 0),
    (18, "char", 1, "Z", 1002, 0),
    (19, "name", 64, "S", 1003, 950),
    (20, "int8", 8, "N", 1016, 0),
    (21, "int2", 2, "N", 1005, 0),
    (22, "int2vector", -1, "A", 1006, 0),
    (30, "oidvector", -1, "A", 1013, 0),
    (23, "int4", 4, "N", 1007, 0),
    (25, "text", -1, "S", 1009, 100),
    (26, "oid", 4, "N", 1028, 0),
    (700, "float4", 4, "N", 1021, 0),
    (701, "float8", 8, "N", 1022, 0),
    (1042, "bpchar", -1, "S", 1014, 100),
    (1043, "varchar", -1, "S", 1015, 100),
    (1082, "date", 4, "D", 1182, 0),
    (1114, "timestamp", 8, "D", 1115, 0),
    (1184, "timestamptz", 8, "D", 1185, 0),
    (1700, "numeric", -1, "N", 1231, 0),
    (2205, "regclass", 4, "N", 2210, 0),
    (2206, "regtype", 4, "N", 2211, 0),
    (2950, "uuid", 16, "U", 2951, 0),
    (1186, "interval", 16, "T", 1187, 0),
    (3802, "jsonb", -1, "U", 3807, 0),
    // The array types results may have (`array_agg`); their element is the type whose
    // array oid they are.
    (1000, "_bool", -1, "A", 0, 0),
    (1005, "_int2", -1, "A", 0, 0),
    (1007, "_int4", -1, "A", 0, 0),
    (1009, "_text", -1, "A", 0, 100),
    (1016, "_int8", -1, "A", 0, 0),
    (1022, "_float8", -1, "A", 0, 0),
    (1231, "_numeric", -1, "A", 0, 0),
];

/// The element type oid of array type `oid` (0 for a scalar type).
fn array_elem_oid(oid: i64) -> i64 {
    TYPES
        .iter()
        .find(|t| t.4 == oid && oid != 0)
        .map(|t| t.0)
        .unwrap_or(0)
}

fn type_oid(ty: SqlType) -> i64 {
    ty.oid() as i64
}

/// The oid of the type named `name` (`integer`, `int4`, `pg_catalog.int4`, `text[]`),
/// `None` when there is no such type (as `to_regtype`).
fn regtype_oid(name: &str) -> Option<i64> {
    let n = name.trim().to_lowercase();
    let n = n.strip_prefix("pg_catalog.").unwrap_or(&n);
    if let Some(elem) = n.strip_suffix("[]") {
        let e = regtype_oid(elem)?;
        return TYPES
            .iter()
            .find(|t| t.0 == e)
            .map(|t| t.4)
            .filter(|&a| a != 0);
    }
    if let Some(t) = TYPES.iter().find(|t| t.1 == n) {
        return Some(t.0);
    }
    if let Some(oid) = TYPES.iter().map(|t| t.0).find(|&o| format_type(o, -1) == n) {
        return Some(oid);
    }
    SqlType::from_sql_name(n).map(type_oid)
}

/// The SQL name `format_type` gives a type oid and typmod.
pub fn format_type(oid: i64, typmod: i64) -> String {
    let base = match oid {
        16 => "boolean",
        17 => "bytea",
        18 => "\"char\"",
        19 => "name",
        20 => "bigint",
        21 => "smallint",
        22 => "int2vector",
        30 => "oidvector",
        23 => "integer",
        25 => "text",
        26 => "oid",
        700 => "real",
        701 => "double precision",
        1042 => "character",
        1043 => "character varying",
        1082 => "date",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1700 => "numeric",
        2205 => "regclass",
        2206 => "regtype",
        2950 => "uuid",
        o if array_elem_oid(o) != 0 => {
            return format!("{}[]", format_type(array_elem_oid(o), typmod))
        }
        _ => return "???".into(),
    };
    match oid {
        1042 | 1043 if typmod >= 4 => format!("{base}({})", typmod - 4),
        1700 if typmod >= 4 => {
            let m = typmod - 4;
            format!("{base}({},{})", m >> 16, m & 0xffff)
        }
        _ => base.into(),
    }
}

fn col_typmod(c: &crate::sql::catalog::ColumnDesc) -> i64 {
    match (c.ty, c.max_len, c.numeric) {
        (SqlType::Varchar, Some(n), _) => n as i64 + 4,
        (SqlType::Numeric, _, Some((p, s))) => (((p as i64) << 16) | s as i64) + 4,
        _ => -1,
    }
}

/// (attnum, column position) of the columns PostgreSQL would show: hidden columns (the
/// implicit rowid) have none; dropped ones keep theirs.
fn attnums(t: &TableDesc) -> Vec<(i64, usize)> {
    let mut n = 0;
    let mut out = Vec::new();
    for (i, c) in t.columns.iter().enumerate() {
        if c.hidden {
            continue;
        }
        n += 1;
        out.push((n, i));
    }
    out
}

fn attnum_of(t: &TableDesc, pos: usize) -> Option<i64> {
    attnums(t)
        .into_iter()
        .find(|(_, p)| *p == pos)
        .map(|(n, _)| n)
}

/// The indexes PostgreSQL would list for `t`: the primary key's (unless keyed by the
/// hidden rowid), then the secondary ones. (index, is primary)
fn indexes_of(t: &TableDesc) -> Vec<(IndexDesc, bool)> {
    let mut out = Vec::new();
    if t.view.is_some() || t.sequence.is_some() {
        return out;
    }
    if !t.pk.iter().any(|&p| t.columns[p].hidden) {
        out.push((
            IndexDesc {
                id: t.primary_index,
                name: t.pk_name.clone(),
                unique: true,
                columns: t.pk.clone(),
            },
            true,
        ));
    }
    for i in &t.indexes {
        out.push((i.clone(), false));
    }
    out
}

fn is_unique_constraint(idx: &IndexDesc, primary: bool) -> bool {
    primary || (idx.unique && idx.name.ends_with("_key"))
}

fn col_names(t: &TableDesc, cols: &[usize]) -> String {
    cols.iter()
        .map(|&c| match t.columns[c].computed {
            Some(_) => crate::sql::computed::display(t, c),
            None => quote_ident(&t.columns[c].name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CREATE [UNIQUE] INDEX name ON public.t USING btree (cols)`.
fn index_def(t: &TableDesc, idx: &IndexDesc) -> String {
    format!(
        "CREATE {}INDEX {} ON public.{} USING btree ({})",
        if idx.unique { "UNIQUE " } else { "" },
        quote_ident(&idx.name),
        quote_ident(&t.name),
        col_names(t, &idx.columns)
    )
}

/// Quotes an identifier when PostgreSQL would.
pub fn quote_ident(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

fn text(s: impl Into<String>) -> Datum {
    Datum::Text(s.into())
}

fn int(i: i64) -> Datum {
    Datum::Int(i)
}

fn opt_text(s: Option<impl Into<String>>) -> Datum {
    s.map(|s| Datum::Text(s.into())).unwrap_or(Datum::Null)
}

/// Builds a table from (column name, type) and rows.
fn table(name: &str, cols: &[(&str, SqlType)], rows: Vec<Vec<Datum>>) -> VirtualTable {
    VirtualTable {
        schema: "pg_catalog",
        name: name.to_string(),
        columns: cols
            .iter()
            .map(|(n, t)| Column {
                name: n.to_string(),
                ty: *t,
            })
            .collect(),
        rows,
    }
}

use SqlType::{Bool as B, Float4 as F4, Int2 as I2, Int4 as I4, Int8 as I8, Text as T};

/// Catalogs with no rows here (nothing in Chitin populates them). Queries that inner-join
/// one of them are empty.
const EMPTY_TABLES: &[(&str, &[(&str, SqlType)])] = &[
    (
        "pg_shdescription",
        &[("objoid", I8), ("classoid", I8), ("description", T)],
    ),
    (
        "pg_inherits",
        &[
            ("inhrelid", I8),
            ("inhparent", I8),
            ("inhseqno", I4),
            ("inhdetachpending", B),
        ],
    ),
    (
        "pg_policy",
        &[
            ("oid", I8),
            ("polname", T),
            ("polrelid", I8),
            ("polcmd", T),
            ("polpermissive", B),
            ("polroles", T),
            ("polqual", T),
            ("polwithcheck", T),
        ],
    ),
    (
        "pg_trigger",
        &[
            ("oid", I8),
            ("tgrelid", I8),
            ("tgparentid", I8),
            ("tgname", T),
            ("tgfoid", I8),
            ("tgtype", I2),
            ("tgenabled", T),
            ("tgisinternal", B),
            ("tgconstrrelid", I8),
            ("tgconstrindid", I8),
            ("tgconstraint", I8),
            ("tgdeferrable", B),
            ("tginitdeferred", B),
            ("tgnargs", I2),
        ],
    ),
    (
        "pg_rewrite",
        &[
            ("oid", I8),
            ("rulename", T),
            ("ev_class", I8),
            ("ev_type", T),
            ("ev_enabled", T),
            ("is_instead", B),
            ("ev_qual", T),
            ("ev_action", T),
        ],
    ),
    (
        "pg_statistic_ext",
        &[
            ("oid", I8),
            ("stxrelid", I8),
            ("stxname", T),
            ("stxnamespace", I8),
            ("stxowner", I8),
            ("stxstattarget", I4),
            ("stxkeys", T),
            ("stxkind", T),
            ("stxexprs", T),
        ],
    ),
    (
        "pg_publication",
        &[
            ("oid", I8),
            ("pubname", T),
            ("pubowner", I8),
            ("puballtables", B),
            ("pubinsert", B),
            ("pubupdate", B),
            ("pubdelete", B),
            ("pubtruncate", B),
            ("pubviaroot", B),
        ],
    ),
    (
        "pg_publication_rel",
        &[
            ("oid", I8),
            ("prpubid", I8),
            ("prrelid", I8),
            ("prqual", T),
            ("prattrs", T),
        ],
    ),
    (
        "pg_publication_namespace",
        &[("oid", I8), ("pnpubid", I8), ("pnnspid", I8)],
    ),
    (
        "pg_partitioned_table",
        &[
            ("partrelid", I8),
            ("partstrat", T),
            ("partnatts", I2),
            ("partdefid", I8),
            ("partattrs", T),
            ("partclass", T),
            ("partcollation", T),
            ("partexprs", T),
        ],
    ),
    (
        "pg_auth_members",
        &[
            ("roleid", I8),
            ("member", I8),
            ("grantor", I8),
            ("admin_option", B),
        ],
    ),
    (
        "pg_extension",
        &[
            ("oid", I8),
            ("extname", T),
            ("extowner", I8),
            ("extnamespace", I8),
            ("extrelocatable", B),
            ("extversion", T),
        ],
    ),
    (
        "pg_opclass",
        &[
            ("oid", I8),
            ("opcmethod", I8),
            ("opcname", T),
            ("opcnamespace", I8),
            ("opcowner", I8),
            ("opcfamily", I8),
            ("opcintype", I8),
            ("opcdefault", B),
            ("opckeytype", I8),
        ],
    ),
    (
        "pg_enum",
        &[
            ("oid", I8),
            ("enumtypid", I8),
            ("enumsortorder", F4),
            ("enumlabel", T),
        ],
    ),
    (
        "pg_foreign_table",
        &[("ftrelid", I8), ("ftserver", I8), ("ftoptions", T)],
    ),
];

/// PostgreSQL's oids of the system catalogs a `'pg_class'::regclass` may name (drivers
/// compare `pg_description.classoid` with them).
/// `pg_class`'s oid (`pg_description.classoid` of a relation's comments).
const PG_CLASS_OID: i64 = 1259;

const SYSTEM_CATALOG_OIDS: &[(&str, i64)] = &[
    ("pg_type", 1247),
    ("pg_attribute", 1249),
    ("pg_proc", 1255),
    ("pg_class", 1259),
    ("pg_authid", 1260),
    ("pg_database", 1262),
    ("pg_constraint", 2606),
    ("pg_description", 2609),
    ("pg_index", 2610),
    ("pg_namespace", 2615),
    ("pg_am", 2601),
    ("pg_attrdef", 2604),
    ("pg_collation", 3456),
    ("pg_sequence", 2224),
    ("pg_tablespace", 1213),
];

fn is_always_empty(name: &str) -> bool {
    EMPTY_TABLES.iter().any(|(n, _)| *n == name)
}

/// (schema, table) a FROM name refers to, when it is a catalog.
fn catalog_name(name: &ObjectName) -> Option<(&'static str, String)> {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(crate::sql::expr::ident_name)
        .collect();
    let table = parts.last()?.clone();
    match parts.len() {
        1 if table.starts_with("pg_") && is_pg_catalog_table(&table) => Some(("pg_catalog", table)),
        n if n >= 2 => match parts[n - 2].as_str() {
            "pg_catalog" if is_pg_catalog_table(&table) => Some(("pg_catalog", table)),
            "information_schema" if INFORMATION_SCHEMA_TABLES.contains(&table.as_str()) => {
                Some(("information_schema", table))
            }
            "crdb_internal" if table == "gossip_nodes" => Some(("crdb_internal", table)),
            _ => None,
        },
        _ => None,
    }
}

const PG_CATALOG_TABLES: &[&str] = &[
    "pg_description",
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_type",
    "pg_index",
    "pg_constraint",
    "pg_database",
    "pg_roles",
    "pg_user",
    "pg_authid",
    "pg_am",
    "pg_attrdef",
    "pg_settings",
    "pg_collation",
    "pg_tablespace",
    "pg_tables",
    "pg_views",
    "pg_matviews",
    "pg_indexes",
    "pg_sequence",
    "pg_proc",
];

const INFORMATION_SCHEMA_TABLES: &[&str] = &[
    "schemata",
    "tables",
    "columns",
    "key_column_usage",
    "table_constraints",
    "views",
    "check_constraints",
    "referential_constraints",
    "sequences",
];

fn is_pg_catalog_table(name: &str) -> bool {
    PG_CATALOG_TABLES.contains(&name) || is_always_empty(name)
}

/// Whether `name` (as written in FROM) is a catalog table.
pub fn is_virtual(name: &ObjectName) -> bool {
    catalog_name(name).is_some()
}

/// The catalog table `name` refers to, its rows computed from `cat` for database `db_id`;
/// `None` when `name` is no catalog table.
pub fn virtual_table(cat: &Catalog, db_id: u32, name: &ObjectName) -> Option<VirtualTable> {
    let (schema, t) = catalog_name(name)?;
    let mut vt = if schema == "pg_catalog" {
        pg_table(cat, db_id, &t)
    } else if schema == "crdb_internal" {
        gossip_nodes()
    } else {
        information_schema_table(cat, db_id, &t)
    };
    vt.schema = schema;
    Some(vt)
}

/// `crdb_internal.gossip_nodes`: the cluster's nodes (CockroachDB's columns that apply).
fn gossip_nodes() -> VirtualTable {
    let rows = crate::node::cluster::nodes_view()
        .into_iter()
        .map(|n| {
            vec![
                int(n.id as i64),
                text("tcp"),
                text(n.address.clone()),
                text(n.address.clone()),
                text(n.address),
                int(n.cores as i64),
                Datum::Bool(n.live),
                Datum::Bool(n.draining),
                Datum::Bool(n.decommissioning),
            ]
        })
        .collect();
    table(
        "gossip_nodes",
        &[
            ("node_id", I8),
            ("network", T),
            ("address", T),
            ("advertise_address", T),
            ("sql_address", T),
            ("cores", I8),
            ("is_live", B),
            ("is_draining", B),
            ("is_decommissioning", B),
        ],
        rows,
    )
}

fn user_tables(cat: &Catalog, db_id: u32) -> Vec<&TableDesc> {
    let mut v: Vec<&TableDesc> = cat.tables_in(db_id).map(|t| t.as_ref()).collect();
    v.sort_by_key(|t| t.id);
    v
}

fn db_name(cat: &Catalog, db_id: u32) -> String {
    cat.databases
        .iter()
        .find(|d| d.id == db_id)
        .map(|d| d.name.clone())
        .unwrap_or_default()
}

fn pg_table(cat: &Catalog, db_id: u32, name: &str) -> VirtualTable {
    if let Some((n, cols)) = EMPTY_TABLES.iter().find(|(n, _)| *n == name) {
        return table(n, cols, Vec::new());
    }
    let tables = user_tables(cat, db_id);
    match name {
        // COMMENT ON: the table's (objsubid 0) and its columns' (their attnum).
        "pg_description" => {
            let mut rows = Vec::new();
            for t in &tables {
                for (on, text) in &t.comments {
                    let subid = match on {
                        0 => 0,
                        n => match attnum_of(t, *n as usize - 1) {
                            Some(a) => a,
                            None => continue,
                        },
                    };
                    rows.push(vec![
                        Datum::Int(table_oid(t)),
                        Datum::Int(PG_CLASS_OID),
                        Datum::Int(subid),
                        Datum::Text(text.clone()),
                    ]);
                }
            }
            table(
                name,
                &[
                    ("objoid", I8),
                    ("classoid", I8),
                    ("objsubid", I4),
                    ("description", T),
                ],
                rows,
            )
        }
        "pg_namespace" => table(
            name,
            &[("oid", I8), ("nspname", T), ("nspowner", I8), ("nspacl", T)],
            [
                (PG_CATALOG_OID, "pg_catalog", ROOT_OID),
                (PG_TOAST_OID, "pg_toast", ROOT_OID),
                (PUBLIC_OID, "public", DATABASE_OWNER_OID),
                (INFORMATION_SCHEMA_OID, "information_schema", ROOT_OID),
            ]
            .iter()
            .map(|(o, n, w)| vec![int(*o), text(*n), int(*w), Datum::Null])
            .chain(cat.schemas_in(db_id).map(|s| {
                vec![
                    int(schema_oid(s.id)),
                    text(s.name.clone()),
                    int(ROOT_OID),
                    Datum::Null,
                ]
            }))
            .collect(),
        ),
        "pg_class" => {
            let mut rows = Vec::new();
            for t in &tables {
                let view = t.view.is_some();
                let seq = t.sequence.is_some();
                let idx = indexes_of(t);
                let mut row = class_row(
                    table_oid(t),
                    &t.name,
                    if view {
                        "v"
                    } else if seq {
                        "S"
                    } else if t.materialized.is_some() {
                        "m"
                    } else {
                        "r"
                    },
                    if view || seq { 0 } else { 2 },
                    t.columns.iter().filter(|c| !c.hidden).count() as i64,
                    t.checks.len() as i64,
                    !idx.is_empty(),
                    view,
                );
                // relhastriggers: PostgreSQL enforces foreign keys with triggers.
                row[20] = Datum::Bool(has_fk_triggers(cat, t));
                if let Some(m) = &t.materialized {
                    // A materialized view has its query as a rule, as a view does.
                    row[19] = Datum::Bool(true);
                    row[24] = Datum::Bool(m.populated);
                }
                row[2] = int(schema_oid(t.schema_id));
                rows.push(row);
                for (i, _) in idx {
                    let mut row = class_row(
                        index_oid(t, i.id),
                        &i.name,
                        "i",
                        403,
                        i.columns.len() as i64,
                        0,
                        false,
                        false,
                    );
                    row[2] = int(schema_oid(t.schema_id));
                    rows.push(row);
                }
            }
            table(
                name,
                &[
                    ("oid", I8),
                    ("relname", T),
                    ("relnamespace", I8),
                    ("reltype", I8),
                    ("reloftype", I8),
                    ("relowner", I8),
                    ("relam", I8),
                    ("relfilenode", I8),
                    ("reltablespace", I8),
                    ("relpages", I4),
                    ("reltuples", F4),
                    ("relallvisible", I4),
                    ("reltoastrelid", I8),
                    ("relhasindex", B),
                    ("relisshared", B),
                    ("relpersistence", T),
                    ("relkind", T),
                    ("relnatts", I2),
                    ("relchecks", I2),
                    ("relhasrules", B),
                    ("relhastriggers", B),
                    ("relhassubclass", B),
                    ("relrowsecurity", B),
                    ("relforcerowsecurity", B),
                    ("relispopulated", B),
                    ("relreplident", T),
                    ("relispartition", B),
                    ("relrewrite", I8),
                    ("relfrozenxid", I8),
                    ("relminmxid", I8),
                    ("relacl", T),
                    ("reloptions", T),
                    ("relpartbound", T),
                ],
                rows,
            )
        }
        "pg_attribute" => {
            let mut rows = Vec::new();
            for t in &tables {
                for (attnum, pos) in attnums(t) {
                    rows.push(attribute_row(table_oid(t), &t.columns[pos], attnum, true));
                }
                // An index's attributes are its columns, numbered from 1; an expression
                // is named as PostgreSQL names it (`lower`, `expr`, `expr1`, …).
                for (i, _) in indexes_of(t) {
                    let mut taken: Vec<String> = Vec::new();
                    for (n, &c) in i.columns.iter().enumerate() {
                        let oid = index_oid(t, i.id);
                        let col = &t.columns[c];
                        let row = match col
                            .computed
                            .as_deref()
                            .map(crate::sql::catalog::parse_default)
                        {
                            Some(Ok(e)) => {
                                let base = crate::sql::computed::name_part(&e);
                                let mut name = base.clone();
                                let mut k = 0;
                                while taken.contains(&name) {
                                    k += 1;
                                    name = format!("{base}{k}");
                                }
                                taken.push(name.clone());
                                let mut named = col.clone();
                                named.name = name;
                                attribute_row(oid, &named, n as i64 + 1, false)
                            }
                            _ => {
                                taken.push(col.name.clone());
                                attribute_row(oid, col, n as i64 + 1, false)
                            }
                        };
                        rows.push(row);
                    }
                }
            }
            table(
                name,
                &[
                    ("attrelid", I8),
                    ("attname", T),
                    ("atttypid", I8),
                    ("attlen", I2),
                    ("attnum", I2),
                    ("atttypmod", I4),
                    ("attnotnull", B),
                    ("atthasdef", B),
                    ("atthasmissing", B),
                    ("attidentity", T),
                    ("attgenerated", T),
                    ("attisdropped", B),
                    ("attislocal", B),
                    ("attinhcount", I4),
                    ("attcollation", I8),
                    ("attacl", T),
                    ("attoptions", T),
                    ("attstattarget", I4),
                    ("attndims", I4),
                    ("attstorage", T),
                    ("attcompression", T),
                ],
                rows,
            )
        }
        "pg_type" => table(
            name,
            &[
                ("oid", I8),
                ("typname", T),
                ("typnamespace", I8),
                ("typowner", I8),
                ("typlen", I2),
                ("typbyval", B),
                ("typtype", T),
                ("typcategory", T),
                ("typispreferred", B),
                ("typisdefined", B),
                ("typdelim", T),
                ("typrelid", I8),
                ("typelem", I8),
                ("typarray", I8),
                ("typinput", T),
                ("typoutput", T),
                ("typreceive", T),
                ("typsend", T),
                ("typalign", T),
                ("typstorage", T),
                ("typnotnull", B),
                ("typbasetype", I8),
                ("typtypmod", I4),
                ("typndims", I4),
                ("typcollation", I8),
                ("typdefault", T),
            ],
            TYPES
                .iter()
                .map(|(oid, n, len, cat, arr, coll)| {
                    vec![
                        int(*oid),
                        text(*n),
                        int(PG_CATALOG_OID),
                        int(ROOT_OID),
                        int(*len),
                        Datum::Bool((1..=8).contains(len)),
                        text("b"),
                        text(*cat),
                        Datum::Bool(matches!(*n, "bool" | "float8" | "text" | "oid")),
                        Datum::Bool(true),
                        text(","),
                        int(0),
                        int(array_elem_oid(*oid)),
                        int(*arr),
                        text(format!("{n}in")),
                        text(format!("{n}out")),
                        text(format!("{n}recv")),
                        text(format!("{n}send")),
                        text(match len {
                            1 => "c",
                            2 => "s",
                            4 => "i",
                            _ => "d",
                        }),
                        text(if *len == -1 { "x" } else { "p" }),
                        Datum::Bool(false),
                        int(0),
                        int(-1),
                        int(0),
                        int(*coll),
                        Datum::Null,
                    ]
                })
                .collect(),
        ),
        "pg_index" => {
            let mut rows = Vec::new();
            for t in &tables {
                for (i, primary) in indexes_of(t) {
                    let keys: Vec<String> = i
                        .columns
                        .iter()
                        .map(|&c| attnum_of(t, c).unwrap_or(0).to_string())
                        .collect();
                    let n = keys.len() as i64;
                    rows.push(vec![
                        int(index_oid(t, i.id)),
                        int(table_oid(t)),
                        int(n),
                        int(n),
                        Datum::Bool(i.unique),
                        Datum::Bool(primary),
                        Datum::Bool(false),
                        Datum::Bool(true),
                        Datum::Bool(false),
                        Datum::Bool(true),
                        Datum::Bool(false),
                        Datum::Bool(true),
                        Datum::Bool(true),
                        Datum::Bool(false),
                        Datum::Bool(false),
                        text(keys.join(" ")),
                        text(vec!["0"; keys.len()].join(" ")),
                        text(vec!["1978"; keys.len()].join(" ")),
                        text(vec!["0"; keys.len()].join(" ")),
                        Datum::Null,
                        Datum::Null,
                    ]);
                }
            }
            table(
                name,
                &[
                    ("indexrelid", I8),
                    ("indrelid", I8),
                    ("indnatts", I2),
                    ("indnkeyatts", I2),
                    ("indisunique", B),
                    ("indisprimary", B),
                    ("indisexclusion", B),
                    ("indimmediate", B),
                    ("indisclustered", B),
                    ("indisvalid", B),
                    ("indcheckxmin", B),
                    ("indisready", B),
                    ("indislive", B),
                    ("indisreplident", B),
                    ("indnullsnotdistinct", B),
                    ("indkey", SqlType::Int2Vector),
                    ("indcollation", SqlType::OidVector),
                    ("indclass", SqlType::OidVector),
                    ("indoption", SqlType::Int2Vector),
                    ("indexprs", T),
                    ("indpred", T),
                ],
                rows,
            )
        }
        "pg_constraint" => {
            let mut rows = Vec::new();
            for t in &tables {
                for (i, primary) in indexes_of(t) {
                    if !is_unique_constraint(&i, primary) {
                        continue;
                    }
                    let keys: Vec<String> = i
                        .columns
                        .iter()
                        .map(|&c| attnum_of(t, c).unwrap_or(0).to_string())
                        .collect();
                    rows.push(constraint_row(
                        unique_constraint_oid(t, i.id),
                        &i.name,
                        if primary { "p" } else { "u" },
                        table_oid(t),
                        index_oid(t, i.id),
                        format!("{{{}}}", keys.join(",")),
                    ));
                }
                for (n, c) in t.checks.iter().enumerate() {
                    let keys: Vec<String> = t
                        .columns
                        .iter()
                        .enumerate()
                        .filter(|(_, col)| c.expr.contains(col.name.as_str()))
                        .filter_map(|(p, _)| attnum_of(t, p))
                        .map(|a| a.to_string())
                        .collect();
                    rows.push(constraint_row(
                        check_oid(t, n),
                        &c.name,
                        "c",
                        table_oid(t),
                        0,
                        format!("{{{}}}", keys.join(",")),
                    ));
                }
                for (n, fk) in t.foreign_keys.iter().enumerate() {
                    let Some((parent, pidx, _)) = fk_parent(cat, fk) else {
                        continue;
                    };
                    let nums = |tab: &TableDesc, cols: &[usize]| {
                        let v: Vec<String> = cols
                            .iter()
                            .map(|&c| attnum_of(tab, c).unwrap_or(0).to_string())
                            .collect();
                        format!("{{{}}}", v.join(","))
                    };
                    let mut row = constraint_row(
                        foreign_key_oid(t, n),
                        &fk.name,
                        "f",
                        table_oid(t),
                        index_oid(&parent, pidx.id),
                        nums(t, &fk.columns),
                    );
                    row[11] = int(table_oid(&parent));
                    row[12] = text(fk.on_update.letter().to_string());
                    row[13] = text(fk.on_delete.letter().to_string());
                    row[14] = text("s");
                    row[19] = text(nums(&parent, &fk.ref_columns));
                    rows.push(row);
                }
            }
            table(
                name,
                &[
                    ("oid", I8),
                    ("conname", T),
                    ("connamespace", I8),
                    ("contype", T),
                    ("condeferrable", B),
                    ("condeferred", B),
                    ("convalidated", B),
                    ("conrelid", I8),
                    ("contypid", I8),
                    ("conindid", I8),
                    ("conparentid", I8),
                    ("confrelid", I8),
                    ("confupdtype", T),
                    ("confdeltype", T),
                    ("confmatchtype", T),
                    ("conislocal", B),
                    ("coninhcount", I4),
                    ("connoinherit", B),
                    ("conkey", T),
                    ("confkey", T),
                    ("conbin", T),
                ],
                rows,
            )
        }
        "pg_database" => table(
            name,
            &[
                ("oid", I8),
                ("datname", T),
                ("datdba", I8),
                ("encoding", I4),
                ("datlocprovider", T),
                ("datistemplate", B),
                ("datallowconn", B),
                ("datconnlimit", I4),
                ("datfrozenxid", I8),
                ("datminmxid", I8),
                ("dattablespace", I8),
                ("datcollate", T),
                ("datctype", T),
                ("daticulocale", T),
                ("datcollversion", T),
                ("datacl", T),
            ],
            {
                let mut dbs = cat.databases.clone();
                dbs.sort_by(|a, b| a.name.cmp(&b.name));
                dbs.iter()
                    .map(|d| {
                        vec![
                            int(database_oid(d.id)),
                            text(d.name.clone()),
                            int(ROOT_OID),
                            int(6),
                            text("c"),
                            Datum::Bool(false),
                            Datum::Bool(true),
                            int(-1),
                            int(0),
                            int(1),
                            int(1663),
                            text("C.UTF-8"),
                            text("C.UTF-8"),
                            Datum::Null,
                            Datum::Null,
                            Datum::Null,
                        ]
                    })
                    .collect()
            },
        ),
        "pg_roles" | "pg_authid" => {
            let rolname = "rolname";
            table(
                name,
                &[
                    ("oid", I8),
                    (rolname, T),
                    ("rolsuper", B),
                    ("rolinherit", B),
                    ("rolcreaterole", B),
                    ("rolcreatedb", B),
                    ("rolcanlogin", B),
                    ("rolreplication", B),
                    ("rolconnlimit", I4),
                    ("rolpassword", T),
                    ("rolvaliduntil", SqlType::TimestampTz),
                    ("rolbypassrls", B),
                    ("rolconfig", T),
                ],
                [
                    role_row(ROOT_OID, "root", true),
                    role_row(DATABASE_OWNER_OID, "pg_database_owner", false),
                ]
                .into_iter()
                .chain(cat.roles.iter().map(|r| {
                    let mut row = role_row(i64::from(r.oid), &r.name, false);
                    row[2] = Datum::Bool(r.superuser);
                    row[3] = Datum::Bool(r.inherit);
                    row[4] = Datum::Bool(r.create_role);
                    row[5] = Datum::Bool(r.create_db);
                    row[6] = Datum::Bool(r.login);
                    row[7] = Datum::Bool(r.replication);
                    row[8] = int(r.conn_limit);
                    row[11] = Datum::Bool(r.bypass_rls);
                    row
                }))
                .collect(),
            )
        }
        "pg_user" => table(
            name,
            &[
                ("usename", T),
                ("usesysid", I8),
                ("usecreatedb", B),
                ("usesuper", B),
                ("userepl", B),
                ("usebypassrls", B),
                ("passwd", T),
                ("valuntil", SqlType::TimestampTz),
                ("useconfig", T),
            ],
            std::iter::once((ROOT_OID, "root", true, true, false, false))
                .chain(cat.roles.iter().filter(|r| r.login).map(|r| {
                    (
                        i64::from(r.oid),
                        r.name.as_str(),
                        r.create_db,
                        r.superuser,
                        r.replication,
                        r.bypass_rls,
                    )
                }))
                .map(|(oid, name, createdb, superuser, repl, bypass)| {
                    vec![
                        text(name),
                        int(oid),
                        Datum::Bool(createdb),
                        Datum::Bool(superuser),
                        Datum::Bool(repl),
                        Datum::Bool(bypass),
                        text("********"),
                        Datum::Null,
                        Datum::Null,
                    ]
                })
                .collect(),
        ),
        "pg_am" => table(
            name,
            &[("oid", I8), ("amname", T), ("amhandler", T), ("amtype", T)],
            vec![
                vec![
                    int(2),
                    text("heap"),
                    text("heap_tableam_handler"),
                    text("t"),
                ],
                vec![int(403), text("btree"), text("bthandler"), text("i")],
            ],
        ),
        // SQL functions (`CREATE FUNCTION`); the built-in functions are not listed.
        "pg_proc" => table(
            name,
            &[
                ("oid", I8),
                ("proname", T),
                ("pronamespace", I8),
                ("proowner", I8),
                ("prolang", I8),
                ("prokind", T),
                ("provolatile", T),
                ("proisstrict", B),
                ("proretset", B),
                ("prorettype", I8),
                ("pronargs", I2),
                ("pronargdefaults", I2),
                ("proargtypes", SqlType::OidVector),
                ("prosrc", T),
            ],
            functions_of(cat, db_id)
                .into_iter()
                .map(|f| {
                    let arg_oids: Vec<String> =
                        f.args.iter().map(|a| type_oid(a.ty).to_string()).collect();
                    vec![
                        int(function_oid(f)),
                        text(f.name.clone()),
                        int(schema_oid(f.schema_id)),
                        int(ROOT_OID),
                        int(SQL_LANGUAGE_OID),
                        text("f"),
                        text((f.volatility as char).to_string()),
                        Datum::Bool(f.strict),
                        Datum::Bool(false),
                        int(type_oid(f.returns)),
                        Datum::Int(f.args.len() as i64),
                        Datum::Int(f.args.iter().filter(|a| a.default.is_some()).count() as i64),
                        text(arg_oids.join(" ")),
                        text(match &f.body {
                            crate::sql::catalog::FunctionBody::As(b) => b.clone(),
                            crate::sql::catalog::FunctionBody::Return(_) => String::new(),
                        }),
                    ]
                })
                .collect(),
        ),
        "pg_sequence" => table(
            name,
            &[
                ("seqrelid", I8),
                ("seqtypid", I8),
                ("seqstart", I8),
                ("seqincrement", I8),
                ("seqmax", I8),
                ("seqmin", I8),
                ("seqcache", I8),
                ("seqcycle", B),
            ],
            tables
                .iter()
                .filter_map(|t| {
                    let sq = t.sequence.as_ref()?;
                    Some(vec![
                        int(table_oid(t)),
                        int(type_oid(sq.ty)),
                        int(sq.start),
                        int(sq.increment),
                        int(sq.max),
                        int(sq.min),
                        int(sq.cache),
                        Datum::Bool(sq.cycle),
                    ])
                })
                .collect(),
        ),
        "pg_attrdef" => {
            let mut rows = Vec::new();
            for t in &tables {
                for (attnum, pos) in attnums(t) {
                    let c = &t.columns[pos];
                    if let (Some(d), false) = (&c.default, c.dropped) {
                        rows.push(vec![
                            int(attrdef_oid(t, attnum)),
                            int(table_oid(t)),
                            int(attnum),
                            text(d.clone()),
                        ]);
                    }
                }
            }
            table(
                name,
                &[("oid", I8), ("adrelid", I8), ("adnum", I2), ("adbin", T)],
                rows,
            )
        }
        "pg_settings" => table(
            name,
            &[
                ("name", T),
                ("setting", T),
                ("unit", T),
                ("category", T),
                ("short_desc", T),
                ("context", T),
                ("vartype", T),
                ("source", T),
                ("boot_val", T),
                ("reset_val", T),
            ],
            SETTINGS
                .iter()
                .map(|(n, v)| {
                    vec![
                        text(*n),
                        text(*v),
                        Datum::Null,
                        text("Client Connection Defaults"),
                        text(""),
                        text("user"),
                        text("string"),
                        text("default"),
                        text(*v),
                        text(*v),
                    ]
                })
                .collect(),
        ),
        "pg_collation" => table(
            name,
            &[
                ("oid", I8),
                ("collname", T),
                ("collnamespace", I8),
                ("collowner", I8),
                ("collprovider", T),
                ("collisdeterministic", B),
                ("collencoding", I4),
                ("collcollate", T),
                ("collctype", T),
            ],
            [
                (100, "default", "d", None),
                (950, "C", "c", Some("C")),
                (951, "POSIX", "c", Some("POSIX")),
            ]
            .iter()
            .map(|(o, n, p, c)| {
                vec![
                    int(*o),
                    text(*n),
                    int(PG_CATALOG_OID),
                    int(ROOT_OID),
                    text(*p),
                    Datum::Bool(true),
                    int(-1),
                    opt_text(*c),
                    opt_text(*c),
                ]
            })
            .collect(),
        ),
        "pg_tablespace" => table(
            name,
            &[
                ("oid", I8),
                ("spcname", T),
                ("spcowner", I8),
                ("spcacl", T),
                ("spcoptions", T),
            ],
            vec![
                vec![
                    int(1663),
                    text("pg_default"),
                    int(ROOT_OID),
                    Datum::Null,
                    Datum::Null,
                ],
                vec![
                    int(1664),
                    text("pg_global"),
                    int(ROOT_OID),
                    Datum::Null,
                    Datum::Null,
                ],
            ],
        ),
        "pg_tables" => table(
            name,
            &[
                ("schemaname", T),
                ("tablename", T),
                ("tableowner", T),
                ("tablespace", T),
                ("hasindexes", B),
                ("hasrules", B),
                ("hastriggers", B),
                ("rowsecurity", B),
            ],
            tables
                .iter()
                .filter(|t| t.view.is_none() && t.sequence.is_none() && t.materialized.is_none())
                .map(|t| {
                    vec![
                        text(cat.schema_name(t.schema_id)),
                        text(t.name.clone()),
                        text("root"),
                        Datum::Null,
                        Datum::Bool(!indexes_of(t).is_empty()),
                        Datum::Bool(false),
                        Datum::Bool(has_fk_triggers(cat, t)),
                        Datum::Bool(false),
                    ]
                })
                .collect(),
        ),
        "pg_views" => table(
            name,
            &[
                ("schemaname", T),
                ("viewname", T),
                ("viewowner", T),
                ("definition", T),
            ],
            tables
                .iter()
                .filter_map(|t| {
                    t.view.as_ref().map(|v| {
                        vec![
                            text(cat.schema_name(t.schema_id)),
                            text(t.name.clone()),
                            text("root"),
                            text(format!("{v};")),
                        ]
                    })
                })
                .collect(),
        ),
        "pg_matviews" => table(
            name,
            &[
                ("schemaname", T),
                ("matviewname", T),
                ("matviewowner", T),
                ("tablespace", T),
                ("hasindexes", B),
                ("ispopulated", B),
                ("definition", T),
            ],
            tables
                .iter()
                .filter_map(|t| {
                    t.materialized.as_ref().map(|m| {
                        vec![
                            text(cat.schema_name(t.schema_id)),
                            text(t.name.clone()),
                            text("root"),
                            Datum::Null,
                            Datum::Bool(!indexes_of(t).is_empty()),
                            Datum::Bool(m.populated),
                            text(format!("{};", m.query)),
                        ]
                    })
                })
                .collect(),
        ),
        "pg_indexes" => table(
            name,
            &[
                ("schemaname", T),
                ("tablename", T),
                ("indexname", T),
                ("tablespace", T),
                ("indexdef", T),
            ],
            tables
                .iter()
                .flat_map(|t| {
                    indexes_of(t).into_iter().map(|(i, _)| {
                        vec![
                            text(cat.schema_name(t.schema_id)),
                            text(t.name.clone()),
                            text(i.name.clone()),
                            Datum::Null,
                            text(index_def(t, &i)),
                        ]
                    })
                })
                .collect(),
        ),
        other => unreachable!("catalog table {other} is listed but not built"),
    }
}

const SETTINGS: &[(&str, &str)] = &[
    ("server_version", "15.0.0"),
    ("server_version_num", "150000"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("IntervalStyle", "postgres"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("TimeZone", "UTC"),
    ("search_path", "\"$user\", public"),
    ("default_transaction_isolation", "serializable"),
    ("max_identifier_length", "63"),
    ("max_index_keys", "32"),
    ("block_size", "8192"),
];

/// A `pg_attribute` row for column `c`, number `attnum` of relation `rel` (a table's own
/// column when `own`, else an index's).
fn attribute_row(
    rel: i64,
    c: &crate::sql::catalog::ColumnDesc,
    attnum: i64,
    own: bool,
) -> Vec<Datum> {
    let toid = type_oid(c.ty);
    let len = TYPES
        .iter()
        .find(|x| x.0 == toid)
        .map(|x| x.2)
        .unwrap_or(-1);
    let coll = if matches!(c.ty, SqlType::Text | SqlType::Varchar) {
        100
    } else {
        0
    };
    let name = if c.dropped {
        format!("........pg.dropped.{attnum}........")
    } else {
        c.name.clone()
    };
    vec![
        int(rel),
        text(name),
        int(if c.dropped { 0 } else { toid }),
        int(len),
        int(attnum),
        int(col_typmod(c)),
        Datum::Bool(own && !c.nullable && !c.dropped),
        Datum::Bool(own && c.default.is_some() && !c.dropped),
        Datum::Bool(own && c.missing.is_some()),
        text(""),
        text(""),
        Datum::Bool(c.dropped),
        Datum::Bool(true),
        int(0),
        int(coll),
        Datum::Null,
        Datum::Null,
        int(-1),
        int(0),
        text(match (len, c.ty) {
            (-1, SqlType::Numeric) => "m",
            (-1, _) => "x",
            _ => "p",
        }),
        text(""),
    ]
}

#[allow(clippy::too_many_arguments)]
fn class_row(
    oid: i64,
    name: &str,
    kind: &str,
    am: i64,
    natts: i64,
    checks: i64,
    has_index: bool,
    view: bool,
) -> Vec<Datum> {
    vec![
        int(oid),
        text(name),
        int(PUBLIC_OID),
        int(0),
        int(0),
        int(ROOT_OID),
        int(am),
        int(if view { 0 } else { oid }),
        int(0),
        int(0),
        Datum::Float(-1.0),
        int(0),
        int(0),
        Datum::Bool(has_index),
        Datum::Bool(false),
        text("p"),
        text(kind),
        int(natts),
        int(checks),
        Datum::Bool(view),
        Datum::Bool(false),
        Datum::Bool(false),
        Datum::Bool(false),
        Datum::Bool(false),
        Datum::Bool(true),
        text(if view { "n" } else { "d" }),
        Datum::Bool(false),
        int(0),
        int(0),
        int(0),
        Datum::Null,
        Datum::Null,
        Datum::Null,
    ]
}

fn constraint_row(
    oid: i64,
    name: &str,
    kind: &str,
    rel: i64,
    index: i64,
    key: String,
) -> Vec<Datum> {
    vec![
        int(oid),
        text(name),
        int(PUBLIC_OID),
        text(kind),
        Datum::Bool(false),
        Datum::Bool(false),
        Datum::Bool(true),
        int(rel),
        int(0),
        int(index),
        int(0),
        int(0),
        text(" "),
        text(" "),
        text(" "),
        Datum::Bool(true),
        int(0),
        Datum::Bool(kind == "c"),
        text(key),
        Datum::Null,
        Datum::Null,
    ]
}

fn role_row(oid: i64, name: &str, login: bool) -> Vec<Datum> {
    vec![
        int(oid),
        text(name),
        Datum::Bool(login),
        Datum::Bool(true),
        Datum::Bool(login),
        Datum::Bool(login),
        Datum::Bool(login),
        Datum::Bool(false),
        int(-1),
        text("********"),
        Datum::Null,
        Datum::Bool(false),
        Datum::Null,
    ]
}

/// information_schema's `data_type` of a column.
fn info_data_type(ty: SqlType) -> &'static str {
    match ty {
        SqlType::Int2 => "smallint",
        SqlType::Int4 => "integer",
        SqlType::Int8 => "bigint",
        SqlType::Float4 => "real",
        SqlType::Float8 => "double precision",
        SqlType::Bool => "boolean",
        SqlType::Text | SqlType::Unknown => "text",
        SqlType::Varchar => "character varying",
        SqlType::Bytea => "bytea",
        SqlType::Numeric => "numeric",
        SqlType::Date => "date",
        SqlType::Timestamp => "timestamp without time zone",
        SqlType::TimestampTz => "timestamp with time zone",
        SqlType::Uuid => "uuid",
        SqlType::Interval => "interval",
        SqlType::Jsonb => "jsonb",
        SqlType::Int2Vector => "int2vector",
        SqlType::OidVector => "oidvector",
        _ => "ARRAY",
    }
}

fn udt_name(ty: SqlType) -> &'static str {
    let oid = type_oid(ty);
    TYPES
        .iter()
        .find(|t| t.0 == oid)
        .map(|t| t.1)
        .unwrap_or("text")
}

fn information_schema_table(cat: &Catalog, db_id: u32, name: &str) -> VirtualTable {
    // Materialized views are not in the SQL standard's views (PostgreSQL leaves them out).
    let (sequences, tables): (Vec<&TableDesc>, Vec<&TableDesc>) = user_tables(cat, db_id)
        .into_iter()
        .filter(|t| t.materialized.is_none())
        .partition(|t| t.sequence.is_some());
    let db = db_name(cat, db_id);
    let constraint_cols: &[(&str, SqlType)] = &[
        ("constraint_catalog", T),
        ("constraint_schema", T),
        ("constraint_name", T),
    ];
    match name {
        "schemata" => table(
            name,
            &[
                ("catalog_name", T),
                ("schema_name", T),
                ("schema_owner", T),
                ("default_character_set_catalog", T),
                ("default_character_set_schema", T),
                ("default_character_set_name", T),
                ("sql_path", T),
            ],
            [
                ("information_schema", "root"),
                ("pg_catalog", "root"),
                ("pg_toast", "root"),
                ("public", "pg_database_owner"),
            ]
            .iter()
            .map(|(s, o)| (s.to_string(), *o))
            .chain(cat.schemas_in(db_id).map(|s| (s.name.clone(), "root")))
            .map(|(s, o)| {
                vec![
                    text(db.clone()),
                    text(s),
                    text(o),
                    Datum::Null,
                    Datum::Null,
                    Datum::Null,
                    Datum::Null,
                ]
            })
            .collect(),
        ),
        "tables" => table(
            name,
            &[
                ("table_catalog", T),
                ("table_schema", T),
                ("table_name", T),
                ("table_type", T),
                ("self_referencing_column_name", T),
                ("reference_generation", T),
                ("user_defined_type_catalog", T),
                ("user_defined_type_schema", T),
                ("user_defined_type_name", T),
                ("is_insertable_into", T),
                ("is_typed", T),
                ("commit_action", T),
            ],
            tables
                .iter()
                .map(|t| {
                    let view = t.view.is_some();
                    vec![
                        text(db.clone()),
                        text(cat.schema_name(t.schema_id)),
                        text(t.name.clone()),
                        text(if view { "VIEW" } else { "BASE TABLE" }),
                        Datum::Null,
                        Datum::Null,
                        Datum::Null,
                        Datum::Null,
                        Datum::Null,
                        text(if view { "NO" } else { "YES" }),
                        text("NO"),
                        Datum::Null,
                    ]
                })
                .collect(),
        ),
        "columns" => {
            let mut rows = Vec::new();
            for t in &tables {
                for (attnum, pos) in attnums(t) {
                    let c = &t.columns[pos];
                    if c.dropped {
                        continue;
                    }
                    let (prec, radix, scale): (Option<i64>, Option<i64>, Option<i64>) = match c.ty {
                        SqlType::Int2 => (Some(16), Some(2), Some(0)),
                        SqlType::Int4 => (Some(32), Some(2), Some(0)),
                        SqlType::Int8 => (Some(64), Some(2), Some(0)),
                        SqlType::Float4 => (Some(24), Some(2), None),
                        SqlType::Float8 => (Some(53), Some(2), None),
                        SqlType::Numeric => match c.numeric {
                            Some((p, s)) => (Some(p as i64), Some(10), Some(s as i64)),
                            None => (None, Some(10), None),
                        },
                        _ => (None, None, None),
                    };
                    let char_len = match c.ty {
                        SqlType::Varchar => c.max_len.map(|n| n as i64),
                        _ => None,
                    };
                    let octet_len = match c.ty {
                        SqlType::Varchar | SqlType::Text => {
                            Some(char_len.map(|n| n * 4).unwrap_or(1_073_741_824))
                        }
                        _ => None,
                    };
                    let dt_prec = match c.ty {
                        SqlType::Date => Some(0),
                        SqlType::Timestamp | SqlType::TimestampTz => Some(6),
                        _ => None,
                    };
                    let o = |v: Option<i64>| v.map(Datum::Int).unwrap_or(Datum::Null);
                    rows.push(vec![
                        text(db.clone()),
                        text(cat.schema_name(t.schema_id)),
                        text(t.name.clone()),
                        text(c.name.clone()),
                        int(attnum),
                        opt_text(c.default.clone()),
                        text(if c.nullable { "YES" } else { "NO" }),
                        text(info_data_type(c.ty)),
                        o(char_len),
                        o(octet_len),
                        o(prec),
                        o(radix),
                        o(scale),
                        o(dt_prec),
                        text(db.clone()),
                        text("pg_catalog"),
                        text(udt_name(c.ty)),
                        text("NO"),
                        text("NEVER"),
                        text(if t.view.is_some() { "NO" } else { "YES" }),
                    ]);
                }
            }
            table(
                name,
                &[
                    ("table_catalog", T),
                    ("table_schema", T),
                    ("table_name", T),
                    ("column_name", T),
                    ("ordinal_position", I4),
                    ("column_default", T),
                    ("is_nullable", T),
                    ("data_type", T),
                    ("character_maximum_length", I4),
                    ("character_octet_length", I4),
                    ("numeric_precision", I4),
                    ("numeric_precision_radix", I4),
                    ("numeric_scale", I4),
                    ("datetime_precision", I4),
                    ("udt_catalog", T),
                    ("udt_schema", T),
                    ("udt_name", T),
                    ("is_identity", T),
                    ("is_generated", T),
                    ("is_updatable", T),
                ],
                rows,
            )
        }
        "key_column_usage" => {
            let mut rows = Vec::new();
            for t in &tables {
                for (i, primary) in indexes_of(t) {
                    if !is_unique_constraint(&i, primary) {
                        continue;
                    }
                    for (n, &c) in i.columns.iter().enumerate() {
                        rows.push(vec![
                            text(db.clone()),
                            text(cat.schema_name(t.schema_id)),
                            text(i.name.clone()),
                            text(db.clone()),
                            text(cat.schema_name(t.schema_id)),
                            text(t.name.clone()),
                            text(t.columns[c].name.clone()),
                            int(n as i64 + 1),
                            Datum::Null,
                        ]);
                    }
                }
                for fk in &t.foreign_keys {
                    let Some((_, pidx, _)) = fk_parent(cat, fk) else {
                        continue;
                    };
                    for (n, (&c, rc)) in fk.columns.iter().zip(&fk.ref_columns).enumerate() {
                        let pos = pidx.columns.iter().position(|x| x == rc).unwrap_or(n);
                        rows.push(vec![
                            text(db.clone()),
                            text(cat.schema_name(t.schema_id)),
                            text(fk.name.clone()),
                            text(db.clone()),
                            text(cat.schema_name(t.schema_id)),
                            text(t.name.clone()),
                            text(t.columns[c].name.clone()),
                            int(n as i64 + 1),
                            int(pos as i64 + 1),
                        ]);
                    }
                }
            }
            let mut cols = constraint_cols.to_vec();
            cols.extend_from_slice(&[
                ("table_catalog", T),
                ("table_schema", T),
                ("table_name", T),
                ("column_name", T),
                ("ordinal_position", I4),
                ("position_in_unique_constraint", I4),
            ]);
            table(name, &cols, rows)
        }
        "table_constraints" => {
            let mut rows = Vec::new();
            let row = |cname: String, t: &TableDesc, kind: &str| {
                vec![
                    text(db.clone()),
                    text(cat.schema_name(t.schema_id)),
                    text(cname),
                    text(db.clone()),
                    text(cat.schema_name(t.schema_id)),
                    text(t.name.clone()),
                    text(kind),
                    text("NO"),
                    text("NO"),
                    text("YES"),
                    if kind == "UNIQUE" {
                        text("YES")
                    } else {
                        Datum::Null
                    },
                ]
            };
            for t in tables.iter().filter(|t| t.view.is_none()) {
                for (i, primary) in indexes_of(t) {
                    if is_unique_constraint(&i, primary) {
                        let kind = if primary { "PRIMARY KEY" } else { "UNIQUE" };
                        rows.push(row(i.name.clone(), t, kind));
                    }
                }
                for c in &t.checks {
                    rows.push(row(c.name.clone(), t, "CHECK"));
                }
                for fk in &t.foreign_keys {
                    rows.push(row(fk.name.clone(), t, "FOREIGN KEY"));
                }
                for (attnum, pos) in attnums(t) {
                    let c = &t.columns[pos];
                    if !c.nullable && !c.dropped {
                        let n = format!("{PUBLIC_OID}_{}_{attnum}_not_null", table_oid(t));
                        rows.push(row(n, t, "CHECK"));
                    }
                }
            }
            let mut cols = constraint_cols.to_vec();
            cols.extend_from_slice(&[
                ("table_catalog", T),
                ("table_schema", T),
                ("table_name", T),
                ("constraint_type", T),
                ("is_deferrable", T),
                ("initially_deferred", T),
                ("enforced", T),
                ("nulls_distinct", T),
            ]);
            table(name, &cols, rows)
        }
        "check_constraints" => {
            let mut rows = Vec::new();
            for t in &tables {
                for c in &t.checks {
                    rows.push(vec![
                        text(db.clone()),
                        text(cat.schema_name(t.schema_id)),
                        text(c.name.clone()),
                        text(c.expr.clone()),
                    ]);
                }
            }
            let mut cols = constraint_cols.to_vec();
            cols.push(("check_clause", T));
            table(name, &cols, rows)
        }
        "referential_constraints" => {
            let mut cols = constraint_cols.to_vec();
            cols.extend_from_slice(&[
                ("unique_constraint_catalog", T),
                ("unique_constraint_schema", T),
                ("unique_constraint_name", T),
                ("match_option", T),
                ("update_rule", T),
                ("delete_rule", T),
            ]);
            let mut rows = Vec::new();
            for t in &tables {
                for fk in &t.foreign_keys {
                    let Some((_, pidx, _)) = fk_parent(cat, fk) else {
                        continue;
                    };
                    rows.push(vec![
                        text(db.clone()),
                        text(cat.schema_name(t.schema_id)),
                        text(fk.name.clone()),
                        text(db.clone()),
                        text(cat.schema_name(t.schema_id)),
                        text(pidx.name.clone()),
                        text("NONE"),
                        text(fk.on_update.sql()),
                        text(fk.on_delete.sql()),
                    ]);
                }
            }
            table(name, &cols, rows)
        }
        "sequences" => table(
            name,
            &[
                ("sequence_catalog", T),
                ("sequence_schema", T),
                ("sequence_name", T),
                ("data_type", T),
                ("numeric_precision", I4),
                ("numeric_precision_radix", I4),
                ("numeric_scale", I4),
                ("start_value", T),
                ("minimum_value", T),
                ("maximum_value", T),
                ("increment", T),
                ("cycle_option", T),
            ],
            sequences
                .iter()
                .filter_map(|t| {
                    let sq = t.sequence.as_ref()?;
                    let bits = match sq.ty {
                        SqlType::Int2 => 16,
                        SqlType::Int4 => 32,
                        _ => 64,
                    };
                    Some(vec![
                        text(db.clone()),
                        text(cat.schema_name(t.schema_id)),
                        text(t.name.clone()),
                        text(crate::sql::sequence::type_name(sq.ty)),
                        int(bits),
                        int(2),
                        int(0),
                        text(sq.start.to_string()),
                        text(sq.min.to_string()),
                        text(sq.max.to_string()),
                        text(sq.increment.to_string()),
                        text(if sq.cycle { "YES" } else { "NO" }),
                    ])
                })
                .collect(),
        ),
        "views" => table(
            name,
            &[
                ("table_catalog", T),
                ("table_schema", T),
                ("table_name", T),
                ("view_definition", T),
                ("check_option", T),
                ("is_updatable", T),
                ("is_insertable_into", T),
                ("is_trigger_updatable", T),
                ("is_trigger_deletable", T),
                ("is_trigger_insertable_into", T),
            ],
            tables
                .iter()
                .filter_map(|t| {
                    t.view.as_ref().map(|v| {
                        vec![
                            text(db.clone()),
                            text(cat.schema_name(t.schema_id)),
                            text(t.name.clone()),
                            text(v.clone()),
                            text("NONE"),
                            text("NO"),
                            text("NO"),
                            text("NO"),
                            text("NO"),
                            text("NO"),
                        ]
                    })
                })
                .collect(),
        ),
        other => unreachable!("information_schema.{other} is listed but not built"),
    }
}

// --- Functions. ---

/// The result type of a catalog function `name` (called with arguments of `args` types),
/// or `None` when it is not one.
pub fn function_type(name: &str, _args: &[SqlType]) -> Option<SqlType> {
    Some(match name {
        "pg_table_is_visible"
        | "pg_type_is_visible"
        | "pg_function_is_visible"
        | "has_table_privilege"
        | "has_schema_privilege"
        | "has_database_privilege"
        | "has_column_privilege"
        | "has_any_column_privilege"
        | "has_function_privilege"
        | "has_sequence_privilege"
        | "pg_has_role"
        | "pg_is_in_recovery"
        | "pg_relation_is_publishable"
        | "pg_collation_is_visible"
        | "__regex" => SqlType::Bool,
        "pg_get_userbyid"
        | "format_type"
        | "pg_encoding_to_char"
        | "obj_description"
        | "col_description"
        | "shobj_description"
        | "array_to_string"
        | "current_schemas"
        | "pg_get_expr"
        | "pg_size_pretty"
        | "quote_ident"
        | "pg_get_indexdef"
        | "pg_get_constraintdef"
        | "pg_get_viewdef"
        | "pg_get_function_arguments"
        | "pg_get_function_identity_arguments"
        | "pg_get_function_result"
        | "pg_get_serial_sequence"
        | "json_build_object" => SqlType::Text,
        "pg_relation_size"
        | "pg_table_size"
        | "pg_total_relation_size"
        | "pg_indexes_size"
        | "pg_database_size"
        | "to_regtype" => SqlType::Int8,
        "pg_backend_pid" => SqlType::Int4,
        // psql's `\d` asks for the ancestors of a relation: here only the relation itself
        // (no partitioning), so a scalar.
        "pg_partition_ancestors" => SqlType::Int8,
        _ => return None,
    })
}

fn regex_match(s: &str, pattern: &str, ci: bool) -> Result<bool> {
    crate::sql::regex_functions::is_match(s, pattern, ci)
}

/// The code `__regex` takes for a regex operator: bit 0 negates, bit 1 ignores case.
pub fn regex_op(op: &BinaryOperator) -> Option<i64> {
    Some(match op {
        BinaryOperator::PGRegexMatch => 0,
        BinaryOperator::PGRegexNotMatch => 1,
        BinaryOperator::PGRegexIMatch => 2,
        BinaryOperator::PGRegexNotIMatch => 3,
        _ => return None,
    })
}

fn as_int(d: &Datum) -> Option<i64> {
    match d {
        Datum::Int(i) => Some(*i),
        Datum::Text(s) => s.trim().parse().ok(),
        Datum::Numeric(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

fn as_text(d: &Datum) -> String {
    match d {
        Datum::Text(s) => s.clone(),
        Datum::Int(i) => i.to_string(),
        Datum::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// Evaluates catalog function `name` on non-NULL arguments `vals`; `None` when it is not
/// one.
pub fn eval_function(name: &str, vals: &[Datum]) -> Option<Result<Datum>> {
    let arg_int = |i: usize| vals.get(i).and_then(as_int);
    Some(Ok(match name {
        "__regex" => {
            let code = arg_int(2).unwrap_or(0);
            let s = vals.first().map(as_text).unwrap_or_default();
            let p = vals.get(1).map(as_text).unwrap_or_default();
            return Some(
                regex_match(&s, &p, code & 2 != 0).map(|m| Datum::Bool(m != (code & 1 != 0))),
            );
        }
        "pg_table_is_visible"
        | "pg_type_is_visible"
        | "pg_function_is_visible"
        | "has_table_privilege"
        | "has_schema_privilege"
        | "has_database_privilege"
        | "has_column_privilege"
        | "has_any_column_privilege"
        | "has_function_privilege"
        | "has_sequence_privilege"
        | "pg_collation_is_visible"
        | "pg_has_role" => Datum::Bool(true),
        "pg_is_in_recovery" | "pg_relation_is_publishable" => Datum::Bool(false),
        "pg_get_userbyid" => text(match arg_int(0) {
            Some(ROOT_OID) => "root".to_string(),
            Some(DATABASE_OWNER_OID) => "pg_database_owner".to_string(),
            Some(o) => format!("unknown (OID={o})"),
            None => return Some(Ok(Datum::Null)),
        }),
        "format_type" => match arg_int(0) {
            Some(oid) => text(format_type(oid, arg_int(1).unwrap_or(-1))),
            None => Datum::Null,
        },
        "pg_encoding_to_char" => text(match arg_int(0) {
            Some(6) => "UTF8",
            Some(0) => "SQL_ASCII",
            _ => "",
        }),
        // obj_description / col_description are rewritten over the catalog ([`rewrite`]).
        "obj_description" | "col_description" | "shobj_description" => Datum::Null,
        "array_to_string" => {
            // array_to_string(array, delimiter [, null_string]): the elements in row-major
            // order (nested arrays flattened), NULLs skipped or written as null_string.
            let (Some(a), Some(sep)) = (vals.first(), vals.get(1)) else {
                return Some(Ok(Datum::Null));
            };
            if a.is_null() || sep.is_null() {
                return Some(Ok(Datum::Null));
            }
            let null_as = vals.get(2).filter(|d| !d.is_null()).map(as_text);
            let array = match crate::sql::array::Array::parse(&as_text(a)) {
                Ok(array) => array,
                Err(e) => return Some(Err(e)),
            };
            let parts: Vec<String> = array
                .elems
                .into_iter()
                .filter_map(|e| e.or_else(|| null_as.clone()))
                .collect();
            text(parts.join(&as_text(sep)))
        }
        "current_schemas" => text(if matches!(vals.first(), Some(Datum::Bool(true))) {
            "{pg_catalog,public}"
        } else {
            "{public}"
        }),
        // adbin holds the default's SQL text.
        "pg_get_expr" => vals.first()?.clone(),
        "pg_relation_size"
        | "pg_table_size"
        | "pg_total_relation_size"
        | "pg_indexes_size"
        | "pg_database_size" => int(0),
        "pg_size_pretty" => {
            let n = arg_int(0).unwrap_or(0);
            text(if n.abs() < 10 * 1024 {
                format!("{n} bytes")
            } else if n.abs() < 10 * 1024 * 1024 {
                format!("{} kB", (n + 512) / 1024)
            } else {
                format!("{} MB", (n + 512 * 1024) / (1024 * 1024))
            })
        }
        "quote_ident" => text(quote_ident(&vals.first().map(as_text).unwrap_or_default())),
        "json_build_object" => return Some(json_build_object(vals)),
        "to_regtype" => match regtype_oid(&vals.first().map(as_text).unwrap_or_default()) {
            Some(oid) => int(oid),
            None => Datum::Null,
        },
        "pg_backend_pid" => int(std::process::id() as i64),
        "pg_partition_ancestors" => match vals.first().and_then(as_int) {
            Some(oid) => int(oid),
            None => Datum::Null,
        },
        // Rewritten into CASEs over the catalog before binding ([`rewrite`]): reached only
        // for an object that does not exist.
        "pg_get_indexdef"
        | "pg_get_constraintdef"
        | "pg_get_viewdef"
        | "pg_get_function_arguments"
        | "pg_get_function_identity_arguments"
        | "pg_get_function_result" => Datum::Null,
        // CAVEAT: not looked up in the catalog yet (these functions see no catalog):
        // NULL, as for a column without an owned sequence. SQLAlchemy's reflection
        // binds it (for identity columns, which Chitin has none of).
        "pg_get_serial_sequence" => Datum::Null,
        _ => return None,
    }))
}

/// Functions whose NULL arguments do not make the result NULL.
pub fn is_non_strict(name: &str) -> bool {
    matches!(
        name,
        "obj_description"
            | "col_description"
            | "shobj_description"
            | "pg_is_in_recovery"
            | "pg_backend_pid"
            | "json_build_object"
            | "format_type"
    )
}

/// `json_build_object(k1, v1, …)` as PostgreSQL prints it (`{"a" : 1, "b" : null}`); the
/// result is text, there being no json type here.
fn json_build_object(vals: &[Datum]) -> Result<Datum> {
    if !vals.len().is_multiple_of(2) {
        return Err(Error::new(
            ErrorKind::InvalidParameterValue,
            "argument list must have even number of elements",
        ));
    }
    fn quote(s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    let mut out = String::from("{");
    for (i, pair) in vals.chunks(2).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if pair[0].is_null() {
            return Err(Error::new(
                ErrorKind::InvalidParameterValue,
                "null value not allowed for object key",
            ));
        }
        quote(&as_text(&pair[0]), &mut out);
        out.push_str(" : ");
        match &pair[1] {
            Datum::Null => out.push_str("null"),
            Datum::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Datum::Int(i) => out.push_str(&i.to_string()),
            Datum::Numeric(n) => out.push_str(&n.to_string()),
            Datum::Float(f) if f.is_finite() => {
                out.push_str(&crate::sql::types::format_float(*f, false))
            }
            other => quote(
                &other.to_text(other.natural_type()).unwrap_or_default(),
                &mut out,
            ),
        }
    }
    out.push('}');
    Ok(text(out))
}

// --- The rewrite. ---

/// [`rewrite`]'s name for "the relation name of this oid" (an output `x::regclass`).
const REGCLASS_NAME: &str = "__regclass_name";

/// Functions whose answer depends on the data: `exec`'s `inline_relation_sizes` answers
/// those of a constant relation.
pub const SIZE_FUNCTIONS: &[&str] = &[
    "pg_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_total_relation_size",
];

/// Functions whose answer depends on the catalog: [`rewrite`] replaces them.
const CATALOG_FUNCTIONS: &[&str] = &[
    "pg_get_function_arguments",
    "pg_get_function_identity_arguments",
    "pg_get_function_result",
    "pg_get_indexdef",
    "pg_get_constraintdef",
    "pg_get_viewdef",
    "obj_description",
    "col_description",
];

fn func_name(f: &ast::Function) -> String {
    crate::sql::expr::object_name(&f.name)
}

fn is_reg_type(dt: &DataType) -> bool {
    let s = dt.to_string().to_lowercase();
    let base = s.rsplit('.').next().unwrap_or("");
    s.starts_with("pg_catalog.")
        || matches!(
            base,
            "regclass"
                | "regtype"
                | "regnamespace"
                | "regproc"
                | "regprocedure"
                | "regrole"
                | "regoper"
                | "oid"
                | "\"char\""
                | "int2vector"
                | "oidvector"
        )
}

/// Whether `stmt` touches the catalog (see the module essay).
pub fn needs_rewrite(stmt: &Statement) -> bool {
    struct Finder;
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
            if is_virtual(r) {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            let hit = match e {
                Expr::BinaryOp {
                    op: BinaryOperator::PGCustomBinaryOperator(_),
                    ..
                }
                | Expr::Collate { .. } => true,
                Expr::Cast { data_type, .. } => is_reg_type(data_type),
                Expr::Function(f) => {
                    CATALOG_FUNCTIONS.contains(&func_name(f).as_str())
                        || SIZE_FUNCTIONS.contains(&func_name(f).as_str())
                        || func_name(f) == "pg_table_is_visible"
                        || func_name(f) == "pg_function_is_visible"
                        || matches!(f.args, FunctionArguments::Subquery(_))
                }
                _ => false,
            };
            if hit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    matches!(stmt, Statement::Query(_)) && ast::Visit::visit(stmt, &mut Finder).is_break()
}

/// Rewrites `stmt` (see the module essay) against `cat` for database `db_id`.
pub fn rewrite(stmt: &mut Statement, cat: &Catalog, db_id: u32, path: &SearchPath) -> Result<()> {
    let Statement::Query(q) = stmt else {
        return Ok(());
    };
    struct Rewriter<'a> {
        cat: &'a Catalog,
        db_id: u32,
        path: &'a SearchPath,
        error: Option<Error>,
    }
    impl VisitorMut for Rewriter<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            match self.rewrite_expr(e) {
                Ok(()) => ControlFlow::Continue(()),
                Err(err) => {
                    self.error = Some(err);
                    ControlFlow::Break(())
                }
            }
        }
        fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            // What is rewritten keeps the output name PostgreSQL gives it.
            if let SetExpr::Select(s) = q.body.as_mut() {
                for item in s.projection.iter_mut() {
                    if let SelectItem::UnnamedExpr(e) = item {
                        let renamed = match e {
                            Expr::Function(f) => {
                                CATALOG_FUNCTIONS.contains(&func_name(f).as_str())
                                    || matches!(f.args, FunctionArguments::Subquery(_))
                            }
                            Expr::Cast { data_type, .. } => is_reg_type(data_type),
                            _ => false,
                        };
                        if renamed {
                            let alias = ast::Ident::with_quote('"', expr_name(e));
                            *item = SelectItem::ExprWithAlias {
                                expr: e.clone(),
                                alias,
                            };
                        }
                    }
                    // A column cast to regclass in the output prints the relation's name
                    // (psql's `conrelid::pg_catalog.regclass AS ontable`).
                    let e = match item {
                        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                        _ => continue,
                    };
                    if let Expr::Cast {
                        expr, data_type, ..
                    } = e
                    {
                        let regclass = data_type
                            .to_string()
                            .to_lowercase()
                            .rsplit('.')
                            .next()
                            .is_some_and(|b| b == "regclass");
                        if regclass && !matches!(expr.as_ref(), Expr::Value(_)) {
                            let inner = (**expr).clone();
                            *e = self.lookup_case(REGCLASS_NAME, inner, false);
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            // `x::regtype::text` is the type's name, `x::regclass::text` the relation's:
            // replaced before the inner cast becomes a number.
            if let Expr::Cast {
                expr: inner,
                data_type,
                ..
            } = e
            {
                let outer = data_type.to_string().to_lowercase();
                if matches!(
                    outer.as_str(),
                    "text" | "varchar" | "name" | "pg_catalog.text"
                ) {
                    if let Expr::Cast {
                        expr: x,
                        data_type: reg,
                        ..
                    } = inner.as_ref()
                    {
                        let reg = reg.to_string().to_lowercase();
                        let reg = reg.rsplit('.').next().unwrap_or("");
                        let x = x.as_ref().clone();
                        let string = match &x {
                            Expr::Value(v) => match &v.value {
                                Value::SingleQuotedString(s) => Some(s.clone()),
                                _ => None,
                            },
                            _ => None,
                        };
                        if reg == "regtype" {
                            *e = match string {
                                Some(name) => match regtype_oid(&name) {
                                    Some(oid) => Expr::Value(
                                        Value::SingleQuotedString(format_type(oid, -1)).into(),
                                    ),
                                    None => e.clone(),
                                },
                                None => function_call("format_type", vec![x, number(-1)]),
                            };
                        } else if reg == "regclass" && string.is_none() && !is_number_literal(&x) {
                            *e = self.regclass_name_case(x);
                        }
                    }
                }
            }
            // Subqueries that must be empty: replaced before their insides are visited.
            let replacement = match e {
                Expr::Subquery(q) if query_is_empty(q) => Some(null()),
                Expr::Exists { subquery, negated } if query_is_empty(subquery) => {
                    Some(Expr::Value(Value::Boolean(*negated).into()))
                }
                Expr::In {
                    target: ast::InTarget::Subquery(subquery),
                    negated,
                    ..
                } if query_is_empty(subquery) => Some(Expr::Value(Value::Boolean(*negated).into())),
                Expr::Function(f) => match &f.args {
                    FunctionArguments::Subquery(q) if query_is_empty(q) || over_unnest(q) => {
                        Some(Expr::Value(Value::SingleQuotedString("{}".into()).into()))
                    }
                    _ => None,
                },
                _ => None,
            };
            if let Some(r) = replacement {
                *e = r;
            }
            ControlFlow::Continue(())
        }
    }
    impl Rewriter<'_> {
        fn rewrite_expr(&mut self, e: &mut Expr) -> Result<()> {
            if let Some(array) = array_of_subquery(e)? {
                *e = array;
                return Ok(());
            }
            match e {
                Expr::BinaryOp { op, .. } => {
                    if let BinaryOperator::PGCustomBinaryOperator(parts) = op {
                        let name = parts.last().cloned().unwrap_or_default();
                        *op = match name.as_str() {
                            "~" => BinaryOperator::PGRegexMatch,
                            "!~" => BinaryOperator::PGRegexNotMatch,
                            "~*" => BinaryOperator::PGRegexIMatch,
                            "!~*" => BinaryOperator::PGRegexNotIMatch,
                            "=" => BinaryOperator::Eq,
                            "<>" | "!=" => BinaryOperator::NotEq,
                            "<" => BinaryOperator::Lt,
                            "<=" => BinaryOperator::LtEq,
                            ">" => BinaryOperator::Gt,
                            ">=" => BinaryOperator::GtEq,
                            "||" => BinaryOperator::StringConcat,
                            other => {
                                return Err(Error::new(
                                    ErrorKind::UndefinedFunction,
                                    format!("operator does not exist: {other}"),
                                ))
                            }
                        };
                    }
                }
                // psql's `COLLATE pg_catalog.default`; any other collation is for the
                // binder, which checks its name and the expression's type.
                Expr::Collate { expr, collation }
                    if collation.0.len() == 2
                        && collation.0[0]
                            .to_string()
                            .eq_ignore_ascii_case("pg_catalog") =>
                {
                    let inner = std::mem::replace(expr.as_mut(), null());
                    *e = inner;
                }
                Expr::Cast {
                    expr, data_type, ..
                } if is_reg_type(data_type) => {
                    let s = data_type.to_string().to_lowercase();
                    let base = s.rsplit('.').next().unwrap_or("").to_string();
                    let literal = match expr.as_ref() {
                        Expr::Value(v) => match &v.value {
                            Value::SingleQuotedString(s) => Some(s.clone()),
                            _ => None,
                        },
                        _ => None,
                    };
                    match (base.as_str(), literal) {
                        ("regclass", Some(name)) if name.parse::<i64>().is_err() => {
                            *e = number(self.regclass(&name)?);
                        }
                        ("regclass", None) if !is_number_literal(expr) => {
                            let inner = std::mem::replace(expr.as_mut(), null());
                            *e = self.regclass_case(inner);
                        }
                        ("regtype", Some(name)) if name.parse::<i64>().is_err() => {
                            let ty = crate::sql::types::SqlType::from_sql_name(&name).ok_or_else(
                                || {
                                    Error::new(
                                        ErrorKind::UndefinedObject,
                                        format!("type \"{name}\" does not exist"),
                                    )
                                },
                            )?;
                            *e = number(type_oid(ty));
                        }
                        ("regnamespace", Some(name)) => {
                            let oid = match name.as_str() {
                                "pg_catalog" => PG_CATALOG_OID,
                                "public" => PUBLIC_OID,
                                "information_schema" => INFORMATION_SCHEMA_OID,
                                "pg_toast" => PG_TOAST_OID,
                                _ => {
                                    return Err(Error::new(
                                        ErrorKind::UndefinedObject,
                                        format!("schema \"{name}\" does not exist"),
                                    ))
                                }
                            };
                            *e = number(oid);
                        }
                        _ => {
                            let target = match base.as_str() {
                                "text" | "name" | "\"char\"" | "char" | "int2vector"
                                | "oidvector" | "varchar" => "text",
                                "int2" | "smallint" => "int2",
                                "int4" | "integer" => "int4",
                                "bool" | "boolean" => "bool",
                                "numeric" => "numeric",
                                "float8" => "float8",
                                _ => "int8",
                            };
                            *data_type = DataType::Custom(
                                ObjectName::from(vec![ast::Ident::new(target)]),
                                vec![],
                            );
                        }
                    }
                }
                Expr::Function(f)
                    if matches!(
                        func_name(f).as_str(),
                        "pg_table_is_visible" | "pg_function_is_visible"
                    ) =>
                {
                    let hidden = if func_name(f) == "pg_table_is_visible" {
                        self.hidden_oids()
                    } else {
                        self.hidden_function_oids()
                    };
                    if let (false, FunctionArguments::List(l)) = (hidden.is_empty(), &f.args) {
                        if let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))] =
                            l.args.as_slice()
                        {
                            *e = Expr::In {
                                expr: Box::new(arg.clone()),
                                target: ast::InTarget::List(
                                    hidden.into_iter().map(number).collect(),
                                ),
                                negated: true,
                                global: false,
                            };
                        }
                    }
                }
                Expr::Function(f) => {
                    let name = func_name(f);
                    if CATALOG_FUNCTIONS.contains(&name.as_str()) {
                        let args: Vec<Expr> = match &f.args {
                            FunctionArguments::List(l) => l
                                .args
                                .iter()
                                .map(|a| match a {
                                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)) => {
                                        a.clone()
                                    }
                                    _ => null(),
                                })
                                .collect(),
                            _ => Vec::new(),
                        };
                        // pg_get_constraintdef(oid, pretty): pretty drops the outer
                        // parentheses of a CHECK expression.
                        let pretty = name == "pg_get_constraintdef"
                            && matches!(
                                args.get(1),
                                Some(Expr::Value(v)) if v.value == Value::Boolean(true)
                            );
                        let column = match args.get(1) {
                            Some(Expr::Value(v)) if v.value == Value::Number("0".into(), false) => {
                                None
                            }
                            Some(c) if name == "pg_get_indexdef" => Some(c.clone()),
                            _ => None,
                        };
                        if name == "col_description" {
                            let mut it = args.into_iter();
                            let (oid, n) = (it.next().unwrap_or_else(null), it.next());
                            *e = self.column_comment_case(oid, n.unwrap_or_else(null));
                            return Ok(());
                        }
                        let arg = args.into_iter().next().unwrap_or_else(null);
                        *e = match column {
                            Some(c) => self.index_column_case(arg, c),
                            None => self.lookup_case(&name, arg, pretty),
                        };
                    }
                }
                _ => {}
            }
            Ok(())
        }

        /// The oids of the relations (and their indexes) an unqualified name does not
        /// find through the search path: `pg_table_is_visible` is false for them.
        fn hidden_oids(&self) -> Vec<i64> {
            let mut hidden = Vec::new();
            for t in user_tables(self.cat, self.db_id) {
                let schema_on_path = self.path.schemas.contains(&t.schema_id);
                if !self.cat.is_visible(self.path, t) {
                    hidden.push(table_oid(t));
                }
                if !schema_on_path {
                    hidden.extend(indexes_of(t).into_iter().map(|(i, _)| index_oid(t, i.id)));
                }
            }
            hidden
        }

        /// The oids of the SQL functions a call does not find through the search path
        /// (their schema is not on it, or an earlier schema has one of the same name and
        /// argument types): `pg_function_is_visible` is false for them.
        fn hidden_function_oids(&self) -> Vec<i64> {
            functions_of(self.cat, self.db_id)
                .into_iter()
                .filter(|f| {
                    let found = self
                        .cat
                        .functions_named(self.db_id, self.path, None, &f.name)
                        .unwrap_or_default();
                    !found.iter().any(|g| g.id == f.id)
                })
                .map(function_oid)
                .collect()
        }

        /// The oid of relation `name` ('t', 'public.t', '"T"', 'pg_catalog.pg_class'): an
        /// unqualified name through the search path.
        fn regclass(&self, name: &str) -> Result<i64> {
            let parts = crate::sql::catalog::search_path_names(&name.replace('.', ","));
            let (schema, n) = match parts.as_slice() {
                [.., s, n] => (Some(s.as_str()), n.clone()),
                [n] => (None, n.clone()),
                [] => return Err(crate::sql::catalog::undefined_table(name)),
            };
            if matches!(schema, None | Some("pg_catalog")) {
                if let Some((_, oid)) = SYSTEM_CATALOG_OIDS.iter().find(|(c, _)| *c == n) {
                    return Ok(*oid);
                }
            }
            let schemas: Vec<u32> = match schema {
                None => self.path.schemas.clone(),
                Some(s) => self.cat.schema_id(self.db_id, s).into_iter().collect(),
            };
            for schema_id in schemas {
                for t in self.cat.tables_in(self.db_id) {
                    if t.schema_id != schema_id {
                        continue;
                    }
                    if t.name == n {
                        return Ok(table_oid(t));
                    }
                    for (i, _) in indexes_of(t) {
                        if i.name == n {
                            return Ok(index_oid(t, i.id));
                        }
                    }
                }
            }
            Err(crate::sql::catalog::undefined_table(name))
        }

        /// `x::regclass` for an `x` known only when the statement runs (a parameter, a
        /// column): a CASE over the relations' names, bare and schema-qualified, and a
        /// numeric oid passes through. Another name gives NULL where PostgreSQL would
        /// raise 42P01.
        fn regclass_case(&self, arg: Expr) -> Expr {
            let as_text = Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(Expr::Nested(Box::new(arg))),
                data_type: DataType::Text,
                format: None,
            };
            let mut names: Vec<(String, i64)> = Vec::new();
            for (c, oid) in SYSTEM_CATALOG_OIDS {
                names.push((c.to_string(), *oid));
                names.push((format!("pg_catalog.{c}"), *oid));
            }
            for t in user_tables(self.cat, self.db_id) {
                let visible = self.cat.is_visible(self.path, t);
                let schema = quote_ident(self.cat.schema_name(t.schema_id));
                let mut add = |n: &str, oid: i64| {
                    if visible {
                        names.push((n.to_string(), oid));
                    }
                    names.push((format!("{schema}.{n}"), oid));
                    if quote_ident(n) != n {
                        if visible {
                            names.push((quote_ident(n), oid));
                        }
                        names.push((format!("{schema}.{}", quote_ident(n)), oid));
                    }
                };
                add(&t.name, table_oid(t));
                for (i, _) in indexes_of(t) {
                    add(&i.name, index_oid(t, i.id));
                }
            }
            let numeric = Expr::Case {
                case_token: ast::helpers::attached_token::AttachedToken::empty(),
                end_token: ast::helpers::attached_token::AttachedToken::empty(),
                operand: None,
                conditions: vec![ast::CaseWhen {
                    condition: Expr::BinaryOp {
                        left: Box::new(as_text.clone()),
                        op: BinaryOperator::PGRegexMatch,
                        right: Box::new(Expr::Value(
                            Value::SingleQuotedString("^[0-9]+$".into()).into(),
                        )),
                    },
                    result: Expr::Cast {
                        kind: ast::CastKind::DoubleColon,
                        expr: Box::new(as_text.clone()),
                        data_type: DataType::Custom(
                            ObjectName::from(vec![ast::Ident::new("int8")]),
                            vec![],
                        ),
                        format: None,
                    },
                }],
                else_result: None,
            };
            Expr::Case {
                case_token: ast::helpers::attached_token::AttachedToken::empty(),
                end_token: ast::helpers::attached_token::AttachedToken::empty(),
                operand: Some(Box::new(as_text)),
                conditions: names
                    .into_iter()
                    .map(|(n, oid)| ast::CaseWhen {
                        condition: Expr::Value(Value::SingleQuotedString(n).into()),
                        result: number(oid),
                    })
                    .collect(),
                else_result: Some(Box::new(numeric)),
            }
        }

        /// `x::regclass::text`: the name of the relation whose oid `x` is (its number when
        /// there is none, as PostgreSQL prints an unknown oid).
        fn regclass_name_case(&self, arg: Expr) -> Expr {
            let mut pairs: Vec<(i64, String)> = SYSTEM_CATALOG_OIDS
                .iter()
                .map(|(n, oid)| (*oid, format!("pg_catalog.{n}")))
                .collect();
            for t in user_tables(self.cat, self.db_id) {
                // As PostgreSQL's regclassout: qualified when the search path does not
                // find it.
                let qualify = |n: &str, visible: bool| {
                    if visible {
                        quote_ident(n)
                    } else {
                        format!(
                            "{}.{}",
                            quote_ident(self.cat.schema_name(t.schema_id)),
                            quote_ident(n)
                        )
                    }
                };
                pairs.push((
                    table_oid(t),
                    qualify(&t.name, self.cat.is_visible(self.path, t)),
                ));
                let schema_on_path = self.path.schemas.contains(&t.schema_id);
                for (i, _) in indexes_of(t) {
                    pairs.push((index_oid(t, i.id), qualify(&i.name, schema_on_path)));
                }
            }
            let as_int8 = Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(Expr::Nested(Box::new(arg))),
                data_type: DataType::Custom(
                    ObjectName::from(vec![ast::Ident::new("int8")]),
                    vec![],
                ),
                format: None,
            };
            Expr::Case {
                case_token: ast::helpers::attached_token::AttachedToken::empty(),
                end_token: ast::helpers::attached_token::AttachedToken::empty(),
                operand: Some(Box::new(as_int8.clone())),
                conditions: pairs
                    .into_iter()
                    .map(|(oid, n)| ast::CaseWhen {
                        condition: number(oid),
                        result: Expr::Value(Value::SingleQuotedString(n).into()),
                    })
                    .collect(),
                else_result: Some(Box::new(Expr::Cast {
                    kind: ast::CastKind::DoubleColon,
                    expr: Box::new(as_int8),
                    data_type: DataType::Text,
                    format: None,
                })),
            }
        }

        /// `pg_get_indexdef(index, column, …)`: the name of that index column.
        fn index_column_case(&self, index: Expr, column: Expr) -> Expr {
            let as_int8 = |e: Expr| Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(Expr::Nested(Box::new(e))),
                data_type: DataType::Custom(
                    ObjectName::from(vec![ast::Ident::new("int8")]),
                    vec![],
                ),
                format: None,
            };
            let eq = |l: Expr, r: i64| Expr::BinaryOp {
                left: Box::new(as_int8(l)),
                op: BinaryOperator::Eq,
                right: Box::new(number(r)),
            };
            let mut conditions = Vec::new();
            for t in user_tables(self.cat, self.db_id) {
                for (i, _) in indexes_of(t) {
                    for (n, &c) in i.columns.iter().enumerate() {
                        conditions.push(ast::CaseWhen {
                            condition: Expr::BinaryOp {
                                left: Box::new(eq(index.clone(), index_oid(t, i.id))),
                                op: BinaryOperator::And,
                                right: Box::new(eq(column.clone(), n as i64 + 1)),
                            },
                            result: Expr::Value(
                                Value::SingleQuotedString(col_names(t, &[c])).into(),
                            ),
                        });
                    }
                }
            }
            if conditions.is_empty() {
                return null();
            }
            Expr::Case {
                case_token: ast::helpers::attached_token::AttachedToken::empty(),
                end_token: ast::helpers::attached_token::AttachedToken::empty(),
                operand: None,
                conditions,
                else_result: None,
            }
        }

        /// `CASE arg WHEN oid THEN 'text' … END` for a catalog-dependent function.
        /// `col_description(oid, attnum)`: a CASE over the commented columns.
        fn column_comment_case(&self, oid: Expr, attnum: Expr) -> Expr {
            let oid = Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(Expr::Nested(Box::new(oid))),
                data_type: DataType::Custom(
                    ObjectName::from(vec![ast::Ident::new("int8")]),
                    vec![],
                ),
                format: None,
            };
            let mut whens = Vec::new();
            for t in user_tables(self.cat, self.db_id) {
                for (on, text) in &t.comments {
                    let Some(n) = on.checked_sub(1).and_then(|p| attnum_of(t, p as usize)) else {
                        continue;
                    };
                    let cond = Expr::BinaryOp {
                        left: Box::new(Expr::BinaryOp {
                            left: Box::new(oid.clone()),
                            op: BinaryOperator::Eq,
                            right: Box::new(number(table_oid(t))),
                        }),
                        op: BinaryOperator::And,
                        right: Box::new(Expr::BinaryOp {
                            left: Box::new(Expr::Nested(Box::new(attnum.clone()))),
                            op: BinaryOperator::Eq,
                            right: Box::new(number(n)),
                        }),
                    };
                    whens.push(ast::CaseWhen {
                        condition: cond,
                        result: Expr::Value(Value::SingleQuotedString(text.clone()).into()),
                    });
                }
            }
            if whens.is_empty() {
                return null();
            }
            Expr::Case {
                case_token: ast::helpers::attached_token::AttachedToken::empty(),
                end_token: ast::helpers::attached_token::AttachedToken::empty(),
                operand: None,
                conditions: whens,
                else_result: None,
            }
        }

        fn lookup_case(&self, name: &str, arg: Expr, pretty: bool) -> Expr {
            let mut pairs: Vec<(i64, String)> = Vec::new();
            for f in functions_of(self.cat, self.db_id) {
                match name {
                    "pg_get_function_arguments" => {
                        pairs.push((function_oid(f), function_arguments(f)))
                    }
                    "pg_get_function_identity_arguments" => {
                        pairs.push((function_oid(f), f.signature()))
                    }
                    "pg_get_function_result" => {
                        pairs.push((function_oid(f), f.returns.name().to_string()))
                    }
                    _ => {}
                }
            }
            for t in user_tables(self.cat, self.db_id) {
                match name {
                    "obj_description" => {
                        if let Some((_, text)) = t.comments.iter().find(|(on, _)| *on == 0) {
                            pairs.push((table_oid(t), text.clone()));
                        }
                    }
                    REGCLASS_NAME => {
                        pairs.push((table_oid(t), quote_ident(&t.name)));
                        for (i, _) in indexes_of(t) {
                            pairs.push((index_oid(t, i.id), quote_ident(&i.name)));
                        }
                    }
                    "pg_get_indexdef" => {
                        for (i, _) in indexes_of(t) {
                            pairs.push((index_oid(t, i.id), index_def(t, &i)));
                        }
                    }
                    "pg_get_constraintdef" => {
                        for (i, primary) in indexes_of(t) {
                            if is_unique_constraint(&i, primary) {
                                let kind = if primary { "PRIMARY KEY" } else { "UNIQUE" };
                                pairs.push((
                                    unique_constraint_oid(t, i.id),
                                    format!("{kind} ({})", col_names(t, &i.columns)),
                                ));
                            }
                        }
                        for (n, c) in t.checks.iter().enumerate() {
                            let def = if pretty {
                                format!("CHECK ({})", c.expr)
                            } else {
                                format!("CHECK (({}))", c.expr)
                            };
                            pairs.push((check_oid(t, n), def));
                        }
                        for (n, fk) in t.foreign_keys.iter().enumerate() {
                            pairs.push((foreign_key_oid(t, n), foreign_key_def(self.cat, t, fk)));
                        }
                    }
                    _ => {
                        if let Some(v) = t.defining_query() {
                            pairs.push((table_oid(t), format!(" {v};")));
                        }
                    }
                }
            }
            if pairs.is_empty() {
                return null();
            }
            Expr::Case {
                case_token: ast::helpers::attached_token::AttachedToken::empty(),
                end_token: ast::helpers::attached_token::AttachedToken::empty(),
                operand: Some(Box::new(Expr::Cast {
                    kind: ast::CastKind::DoubleColon,
                    expr: Box::new(Expr::Nested(Box::new(arg))),
                    data_type: DataType::Custom(
                        ObjectName::from(vec![ast::Ident::new("int8")]),
                        vec![],
                    ),
                    format: None,
                })),
                conditions: pairs
                    .into_iter()
                    .map(|(oid, s)| ast::CaseWhen {
                        condition: number(oid),
                        result: Expr::Value(Value::SingleQuotedString(s).into()),
                    })
                    .collect(),
                else_result: None,
            }
        }
    }
    // A whole query that must be empty: its columns, no rows, nothing else bound.
    if query_is_empty(q) {
        let names = output_names(q);
        let select = format!(
            "SELECT {} WHERE false",
            names
                .iter()
                .map(|n| format!("NULL::text AS \"{}\"", n.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(Statement::Query(empty)) = crate::sql::session::parse(&select)?.pop() {
            **q = *empty;
        }
        return Ok(());
    }
    let mut r = Rewriter {
        cat,
        db_id,
        path,
        error: None,
    };
    let _ = q.visit(&mut r);
    match r.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether `q` reads `unnest(…)`: arrays are text here, and the only ones the catalog
/// holds (`reloptions`, `datacl`, …) are NULL, so `ARRAY(SELECT … FROM unnest(x))` is `{}`.
/// Whether `q` reads `unnest` of a column (psql's `ARRAY(SELECT … FROM unnest(stxkeys) …)`
/// over catalog arrays, which are always empty here).
fn over_unnest(q: &Query) -> bool {
    let of_column = |args: &[ast::FunctionArg]| {
        args.iter().any(|a| {
            matches!(
                a,
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(
                    Expr::Identifier(_) | Expr::CompoundIdentifier(_)
                ))
            )
        })
    };
    match q.body.as_ref() {
        SetExpr::Select(s) => s.from.iter().any(|twj| match &twj.relation {
            TableFactor::Table {
                name,
                args: Some(a),
                ..
            } => crate::sql::expr::object_name(name) == "unnest" && of_column(&a.args),
            TableFactor::Function { name, args, .. } => {
                crate::sql::expr::object_name(name) == "unnest" && of_column(args)
            }
            _ => false,
        }),
        _ => false,
    }
}

/// `ARRAY(subquery)` as the scalar subquery that aggregates the subquery's one column in
/// its row order (`'{}'` when it has no rows): `(SELECT coalesce(array_agg(e), '{}') FROM
/// (subquery) AS a(e))`. Correlated subqueries run per outer row as any scalar subquery.
fn array_of_subquery(e: &Expr) -> Result<Option<Expr>> {
    let Expr::Function(f) = e else {
        return Ok(None);
    };
    let FunctionArguments::Subquery(q) = &f.args else {
        return Ok(None);
    };
    if func_name(f) != "array" {
        return Ok(None);
    }
    if let SetExpr::Select(s) = q.body.as_ref() {
        let wildcard = s.projection.iter().any(|i| {
            matches!(
                i,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        });
        if s.projection.len() != 1 && !wildcard {
            return Err(Error::new(
                ErrorKind::Syntax,
                "subquery must return only one column",
            ));
        }
    }
    let sql = format!(
        "(SELECT coalesce(array_agg(\"__array\".\"__elem\"), '{{}}') FROM ({q}) AS \"__array\"(\"__elem\"))"
    );
    crate::sql::catalog::parse_default(&sql).map(Some)
}

fn is_number_literal(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if matches!(v.value, Value::Number(..)))
}

/// `name(args…)` as an expression.
fn function_call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(ast::Function {
        name: ObjectName::from(vec![ast::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

fn null() -> Expr {
    Expr::Value(Value::Null.into())
}

fn number(n: i64) -> Expr {
    Expr::Value(Value::Number(n.to_string(), false).into())
}

/// The output column names of `q` (its leftmost SELECT's).
fn output_names(q: &Query) -> Vec<String> {
    let mut body = q.body.as_ref();
    loop {
        match body {
            SetExpr::SetOperation { left, .. } => body = left,
            SetExpr::Query(inner) => body = inner.body.as_ref(),
            SetExpr::Select(s) => {
                return s
                    .projection
                    .iter()
                    .map(|item| match item {
                        SelectItem::ExprWithAlias { alias, .. } => {
                            crate::sql::expr::ident_name(alias)
                        }
                        SelectItem::UnnamedExpr(e) => expr_name(e),
                        _ => "?column?".into(),
                    })
                    .collect()
            }
            _ => return vec!["?column?".into()],
        }
    }
}

fn expr_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => crate::sql::expr::ident_name(i),
        Expr::CompoundIdentifier(p) => p
            .last()
            .map(crate::sql::expr::ident_name)
            .unwrap_or_default(),
        Expr::Function(f) => func_name(f),
        // As PostgreSQL's FigureColname: `c.oid::regclass` is `oid`, `'t'::regclass` is
        // `regclass`.
        Expr::Cast {
            expr, data_type, ..
        } => match expr_name(expr) {
            n if n == "?column?" => {
                let s = data_type.to_string().to_lowercase();
                s.rsplit('.')
                    .next()
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_string()
            }
            n => n,
        },
        Expr::Nested(expr) => expr_name(expr),
        _ => "?column?".into(),
    }
}

/// Whether `q` returns no rows whatever the data: every branch inner-joins an always-empty
/// catalog and neither aggregates nor groups.
pub fn query_is_empty(q: &Query) -> bool {
    set_is_empty(&q.body)
}

fn set_is_empty(s: &SetExpr) -> bool {
    match s {
        SetExpr::Select(sel) => select_is_empty(sel),
        SetExpr::Query(q) => query_is_empty(q),
        SetExpr::SetOperation {
            op, left, right, ..
        } => match op {
            ast::SetOperator::Union => set_is_empty(left) && set_is_empty(right),
            ast::SetOperator::Intersect => set_is_empty(left) || set_is_empty(right),
            ast::SetOperator::Except => set_is_empty(left),
            _ => false,
        },
        _ => false,
    }
}

fn select_is_empty(s: &ast::Select) -> bool {
    let grouped = !matches!(&s.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    if grouped || s.having.is_some() || s.projection.iter().any(item_aggregates) {
        return false;
    }
    let empty_factor = |f: &TableFactor| match f {
        TableFactor::Table {
            name, args: None, ..
        } => {
            matches!(catalog_name(name), Some((_, n)) if is_always_empty(&n))
        }
        _ => false,
    };
    s.from.iter().any(|twj| {
        use ast::JoinOperator as J;
        let base_inner = !twj.joins.iter().any(|j| {
            matches!(
                j.join_operator,
                J::Right(_) | J::RightOuter(_) | J::FullOuter(_)
            )
        });
        (base_inner && empty_factor(&twj.relation))
            || twj.joins.iter().any(|j| {
                matches!(j.join_operator, J::Join(_) | J::Inner(_) | J::CrossJoin(_))
                    && empty_factor(&j.relation)
            })
    })
}

fn item_aggregates(item: &SelectItem) -> bool {
    crate::sql::expr::contains_aggregate(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_type_names_like_postgres() {
        assert_eq!(format_type(23, -1), "integer");
        assert_eq!(format_type(1043, 14), "character varying(10)");
        assert_eq!(format_type(1700, ((10 << 16) | 2) + 4), "numeric(10,2)");
        assert_eq!(format_type(25, -1), "text");
    }

    #[test]
    fn psql_operator_syntax_rewrites() {
        let cat = Catalog::default();
        let sql = "SELECT c.oid FROM pg_catalog.pg_class c \
                   WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default";
        let mut s = crate::sql::session::parse(sql).unwrap().pop().unwrap();
        assert!(needs_rewrite(&s));
        rewrite(&mut s, &cat, 1, &SearchPath::default()).unwrap();
        assert!(s.to_string().contains("c.relname ~ '^(t)$'"), "{s}");
    }

    #[test]
    fn queries_over_empty_catalogs_are_empty() {
        let cat = Catalog::default();
        let sql = "SELECT pubname, NULL FROM pg_catalog.pg_publication p \
                   JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid \
                   WHERE pr.prattrs[1] = 1 UNION SELECT pubname, NULL \
                   FROM pg_catalog.pg_publication p WHERE p.puballtables ORDER BY 1";
        let mut s = crate::sql::session::parse(sql).unwrap().pop().unwrap();
        rewrite(&mut s, &cat, 1, &SearchPath::default()).unwrap();
        assert_eq!(
            s.to_string(),
            "SELECT NULL::TEXT AS \"pubname\", NULL::TEXT AS \"?column?\" WHERE false"
        );
        assert!(!query_is_empty(
            match &crate::sql::session::parse("SELECT count(*) FROM pg_inherits").unwrap()[0] {
                Statement::Query(q) => q,
                _ => unreachable!(),
            }
        ));
    }
}
