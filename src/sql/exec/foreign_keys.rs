//! FOREIGN KEY constraints: declaring them and keeping them true.
//!
//! A foreign key lives in the referencing (child) table's descriptor
//! ([`ForeignKeyDesc`]); the referenced (parent) columns are the parent's primary key or
//! the columns of one of its unique indexes, so a parent row is found with one point read.
//! MATCH SIMPLE: a child row with a NULL in any foreign-key column references nothing.
//!
//! - Child side ([`Exec::check_references`]): after a row is inserted, or updated with a
//!   changed key, its parent row must exist (23503 otherwise). The parent row is read
//!   inside the user's transaction, so the read is tracked: a concurrent delete of the
//!   parent that commits first makes this transaction's commit-time refresh fail (40001)
//!   under SERIALIZABLE. Under READ COMMITTED, where reads are not refreshed, the parent's
//!   row lock is taken as well, so the parent's delete waits for this transaction.
//! - Parent side ([`Exec::on_parent_delete`], [`Exec::on_parent_update`]): after a
//!   referenced row is deleted, or its referenced key changed, the rows that referenced it
//!   get the constraint's action: NO ACTION / RESTRICT (23503 if there are any), CASCADE
//!   (delete them, or give them the new key), SET NULL, SET DEFAULT. Actions run through
//!   the same functions, so they cascade further. The child rows are found through an
//!   index (or primary key) that starts with the foreign-key columns, else by a scan.
//!
//! # Implementation caveats
//!
//! - Checks are immediate, row by row, not at the end of the statement: NO ACTION behaves
//!   as RESTRICT. A statement that is only valid as a whole (deleting a parent and its
//!   self-referencing children in one DELETE, in an order where a parent goes first;
//!   `UPDATE t SET id = id + 1` over a chain of references) fails where PostgreSQL passes.
//!   DEFERRABLE constraints are not supported.
//! - MATCH FULL and MATCH PARTIAL are refused (0A000).
//! - ON DELETE SET NULL / SET DEFAULT with a column list (PostgreSQL 15's `SET NULL (a)`)
//!   is not parsed.

use super::*;

/// How deep ON DELETE / ON UPDATE actions may cascade before the statement is refused.
const MAX_CASCADE_DEPTH: usize = 256;

fn ref_action(a: Option<ast::ReferentialAction>) -> RefAction {
    match a {
        None | Some(ast::ReferentialAction::NoAction) => RefAction::NoAction,
        Some(ast::ReferentialAction::Restrict) => RefAction::Restrict,
        Some(ast::ReferentialAction::Cascade) => RefAction::Cascade,
        Some(ast::ReferentialAction::SetNull) => RefAction::SetNull,
        Some(ast::ReferentialAction::SetDefault) => RefAction::SetDefault,
    }
}

/// Whether a column of type `a` may reference one of type `b` (PostgreSQL needs an
/// equality operator between them).
fn comparable(a: SqlType, b: SqlType) -> bool {
    a == b
        || (a.is_numeric_family() && b.is_numeric_family())
        || (a.is_string() && b.is_string())
        || matches!(
            (a, b),
            (
                SqlType::Date | SqlType::Timestamp | SqlType::TimestampTz,
                SqlType::Date | SqlType::Timestamp | SqlType::TimestampTz
            )
        )
}

/// `(a, b)=(1, 2)` of an error's DETAIL.
fn key_text(t: &TableDesc, cols: &[usize], row: &[Datum]) -> (String, String) {
    let names: Vec<&str> = cols.iter().map(|&i| t.columns[i].name.as_str()).collect();
    let vals: Vec<String> = cols
        .iter()
        .map(|&i| {
            row[i]
                .to_text(t.columns[i].ty)
                .unwrap_or_else(|| "null".into())
        })
        .collect();
    (names.join(", "), vals.join(", "))
}

/// The constraint name PostgreSQL picks: `<table>_<columns>_fkey`, numbered when taken.
pub(super) fn foreign_key_name(t: &TableDesc, cols: &[usize]) -> String {
    let base = format!(
        "{}_{}_fkey",
        t.name,
        cols.iter()
            .map(|&i| t.columns[i].name.as_str())
            .collect::<Vec<_>>()
            .join("_")
    );
    let taken = |n: &str| {
        t.foreign_keys.iter().any(|f| f.name == n)
            || t.checks.iter().any(|c| c.name == n)
            || t.indexes.iter().any(|i| i.name == n)
            || t.pk_name == n
    };
    let mut n = base.clone();
    let mut k = 1;
    while taken(&n) {
        n = format!("{base}{k}");
        k += 1;
    }
    n
}

impl<'a> Exec<'a> {
    fn table_by_id(&self, id: u32) -> Option<Rc<TableDesc>> {
        self.cat.tables.iter().find(|t| t.id == id).cloned()
    }

    /// The descriptor of FOREIGN KEY `fk` declared on `child` over `columns` (positions in
    /// `child`, which during CREATE TABLE is not in the catalog yet and may reference
    /// itself).
    pub(super) fn build_foreign_key(
        &self,
        child: &TableDesc,
        fk: &ast::ForeignKeyConstraint,
        columns: Vec<usize>,
    ) -> Result<ForeignKeyDesc> {
        if matches!(
            fk.match_kind,
            Some(
                ast::ConstraintReferenceMatchKind::Full
                    | ast::ConstraintReferenceMatchKind::Partial
            )
        ) {
            return Err(Error::unsupported(
                "only MATCH SIMPLE foreign keys are supported",
            ));
        }
        if fk
            .characteristics
            .as_ref()
            .is_some_and(|c| c.deferrable == Some(true))
        {
            return Err(Error::unsupported(
                "DEFERRABLE foreign keys are not supported",
            ));
        }
        let pname = object_name(&fk.foreign_table);
        // The parent as a query would find it (through the search path when unqualified);
        // the child itself when it comes first (it may not be in the catalog yet).
        let found = self
            .cat
            .relation(self.db_id, &self.path, &fk.foreign_table)?;
        let qualified = fk.foreign_table.0.len() > 1;
        let self_reference = pname == child.name
            && if qualified {
                let (schema, _) =
                    self.cat
                        .creation_name(self.db_id, &self.path, &fk.foreign_table)?;
                schema == child.schema_id
            } else {
                let rank = |id: u32| self.path.schemas.iter().position(|&s| s == id);
                match (rank(child.schema_id), &found) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(c), Some(f)) => f.id == child.id || rank(f.schema_id) >= Some(c),
                }
            };
        let parent: Rc<TableDesc> = if self_reference {
            Rc::new(child.clone())
        } else {
            match found {
                Some(p) if p.view.is_none() && p.sequence.is_none() && p.materialized.is_none() => {
                    p
                }
                Some(p) => {
                    return Err(Error::new(
                        ErrorKind::WrongObjectType,
                        format!("referenced relation \"{}\" is not a table", p.name),
                    ))
                }
                None => return Err(catalog::undefined_table(&pname)),
            }
        };
        let ref_columns: Vec<usize> = if fk.referred_columns.is_empty() {
            if parent.pk.iter().any(|&i| parent.columns[i].hidden) {
                return Err(Error::new(
                    ErrorKind::UndefinedObject,
                    format!(
                        "there is no primary key for referenced table \"{}\"",
                        parent.name
                    ),
                ));
            }
            parent.pk.clone()
        } else {
            let mut out = Vec::new();
            for c in &fk.referred_columns {
                let n = ident_name(c);
                out.push(
                    parent
                        .column_index(&n)
                        .filter(|&i| !parent.columns[i].dropped)
                        .ok_or_else(|| {
                            Error::new(
                                ErrorKind::UndefinedColumn,
                                format!(
                                    "column \"{n}\" referenced in foreign key constraint does not exist"
                                ),
                            )
                        })?,
                );
            }
            out
        };
        if ref_columns.len() != columns.len() {
            return Err(Error::new(
                ErrorKind::InvalidForeignKey,
                "number of referencing and referenced columns for foreign key disagree",
            ));
        }
        let same_set = |cols: &[usize]| {
            let mut a = cols.to_vec();
            let mut b = ref_columns.clone();
            a.sort_unstable();
            b.sort_unstable();
            a == b
        };
        let pk_is_real = !parent.pk.iter().any(|&i| parent.columns[i].hidden);
        let referenceable = (pk_is_real && same_set(&parent.pk))
            || parent
                .indexes
                .iter()
                .any(|i| i.unique && same_set(&i.columns));
        if !referenceable {
            return Err(Error::new(
                ErrorKind::InvalidForeignKey,
                format!(
                    "there is no unique constraint matching given keys for referenced table \"{}\"",
                    parent.name
                ),
            ));
        }
        let name = match &fk.name {
            Some(n) => {
                let n = ident_name(n);
                if child.foreign_keys.iter().any(|f| f.name == n)
                    || child.checks.iter().any(|c| c.name == n)
                {
                    return Err(Error::new(
                        ErrorKind::DuplicateObject,
                        format!(
                            "constraint \"{n}\" for relation \"{}\" already exists",
                            child.name
                        ),
                    ));
                }
                n
            }
            None => foreign_key_name(child, &columns),
        };
        for (&c, &p) in columns.iter().zip(&ref_columns) {
            let (ct, pt) = (child.columns[c].ty, parent.columns[p].ty);
            if !comparable(ct, pt) {
                return Err(Error::mismatch(format!(
                    "foreign key constraint \"{name}\" cannot be implemented"
                ))
                .with_detail(format!(
                    "Key columns \"{}\" and \"{}\" are of incompatible types: {} and {}.",
                    child.columns[c].name,
                    parent.columns[p].name,
                    ct.name(),
                    pt.name()
                )));
            }
        }
        Ok(ForeignKeyDesc {
            name,
            columns,
            ref_table: parent.id,
            ref_columns,
            on_delete: ref_action(fk.on_delete),
            on_update: ref_action(fk.on_update),
        })
    }

    /// The primary key of `parent`'s row whose `fk.ref_columns` equal `vals`, read in the
    /// transaction (tracked), if there is one.
    async fn parent_row_key(
        &mut self,
        parent: &TableDesc,
        fk: &ForeignKeyDesc,
        vals: &[Datum],
    ) -> Result<Option<Vec<u8>>> {
        // The values in the parent's column order and types.
        let mut row = vec![Datum::Null; parent.columns.len()];
        for (&pc, v) in fk.ref_columns.iter().zip(vals) {
            row[pc] = v.clone().cast(parent.columns[pc].ty)?;
        }
        let mut pk = parent.pk.clone();
        let mut want = fk.ref_columns.clone();
        pk.sort_unstable();
        want.sort_unstable();
        let key = if pk == want {
            let k = Self::pk_key(parent, &row);
            if self.kv_get(&k).await?.is_none() {
                return Ok(None);
            }
            k
        } else {
            let Some(idx) = parent.indexes.iter().find(|i| {
                let mut c = i.columns.clone();
                c.sort_unstable();
                i.unique && c == want
            }) else {
                return Ok(None);
            };
            match self.kv_get(&Self::index_key(parent, idx, &row)).await? {
                Some(k) => k,
                None => return Ok(None),
            }
        };
        Ok(Some(key))
    }

    /// Child side: `new` (a row of `t`, just written) must reference existing parent rows
    /// through each of `t`'s foreign keys whose columns it changed from `old`.
    pub(super) async fn check_references(
        &mut self,
        t: &TableDesc,
        old: Option<&[Datum]>,
        new: &[Datum],
    ) -> Result<()> {
        for fk in &t.foreign_keys {
            if fk.columns.iter().any(|&c| new[c].is_null()) {
                continue;
            }
            if let Some(old) = old {
                let same = fk
                    .columns
                    .iter()
                    .all(|&c| old[c].order_cmp(&new[c]) == std::cmp::Ordering::Equal);
                if same {
                    continue;
                }
            }
            let parent = if fk.ref_table == t.id {
                Rc::new(t.clone())
            } else {
                match self.table_by_id(fk.ref_table) {
                    Some(p) => p,
                    None => continue,
                }
            };
            let vals: Vec<Datum> = fk.columns.iter().map(|&c| new[c].clone()).collect();
            match self.parent_row_key(&parent, fk, &vals).await? {
                Some(k) => {
                    if !self.txn.track_reads {
                        // Not refreshed at commit: hold the parent row as it is.
                        self.lock_row(&k).await?;
                    }
                }
                None => {
                    let (cols, vals) = key_text(t, &fk.columns, new);
                    return Err(Error::new(
                        ErrorKind::ForeignKeyViolation,
                        format!(
                            "insert or update on table \"{}\" violates foreign key constraint \"{}\"",
                            t.name, fk.name
                        ),
                    )
                    .with_detail(format!(
                        "Key ({cols})=({vals}) is not present in table \"{}\".",
                        parent.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// The foreign keys (with their tables) that reference table `parent_id`.
    fn referencing(&self, parent_id: u32) -> Vec<(Rc<TableDesc>, ForeignKeyDesc)> {
        let mut out = Vec::new();
        for t in self.cat.tables.iter() {
            for fk in &t.foreign_keys {
                if fk.ref_table == parent_id {
                    out.push((t.clone(), fk.clone()));
                }
            }
        }
        out
    }

    /// The rows of `child` whose `fk.columns` equal `vals`.
    async fn child_rows(
        &mut self,
        child: &TableDesc,
        fk: &ForeignKeyDesc,
        vals: &[Datum],
    ) -> Result<Vec<Vec<Datum>>> {
        let vals: Vec<Datum> = fk
            .columns
            .iter()
            .zip(vals)
            .map(|(&c, v)| v.clone().cast(child.columns[c].ty))
            .collect::<Result<_>>()?;
        let n = fk.columns.len();
        let access = if child.pk.len() >= n && child.pk[..n] == fk.columns[..] {
            let mut p = index_prefix(child.id, child.primary_index);
            for v in &vals {
                encode_key_datum(v, &mut p);
            }
            let e = prefix_end(&p);
            Access::Span(p, e)
        } else if let Some(idx) = child
            .indexes
            .iter()
            .find(|i| i.columns.len() >= n && i.columns[..n] == fk.columns[..])
        {
            Access::Index(idx.clone(), vals.clone())
        } else {
            Access::Full
        };
        let rows = self.read_rows(child, access).await?;
        Ok(rows
            .into_iter()
            .filter(|r| {
                fk.columns
                    .iter()
                    .zip(&vals)
                    .all(|(&c, v)| r[c].order_cmp(v) == std::cmp::Ordering::Equal)
            })
            .collect())
    }

    fn still_referenced(
        parent: &TableDesc,
        child: &TableDesc,
        fk: &ForeignKeyDesc,
        row: &[Datum],
    ) -> Error {
        let (cols, vals) = key_text(parent, &fk.ref_columns, row);
        Error::new(
            ErrorKind::ForeignKeyViolation,
            format!(
                "update or delete on table \"{}\" violates foreign key constraint \"{}\" on table \"{}\"",
                parent.name, fk.name, child.name
            ),
        )
        .with_detail(format!(
            "Key ({cols})=({vals}) is still referenced from table \"{}\".",
            child.name
        ))
    }

    /// The value of column `c`'s DEFAULT (NULL without one).
    async fn column_default(&self, c: &ColumnDesc) -> Result<Datum> {
        let Some(d) = &c.default_expr else {
            return Ok(Datum::Null);
        };
        let mut params = Vec::new();
        let (s, _) = Binder::new(&[], &mut params).bind(d, Some(c.ty))?;
        if s.has_sequence_call() {
            self.run_sequence_calls(&[&s], &[]).await?;
        }
        s.eval(&[], &self.cx)
    }

    /// Deletes `row` of `t` and applies the ON DELETE actions of the foreign keys that
    /// reference it.
    pub(super) async fn delete_row_checked(
        &mut self,
        t: &TableDesc,
        row: &[Datum],
        depth: usize,
    ) -> Result<()> {
        self.delete_row(t, row);
        self.on_parent_delete(t, row, depth).await
    }

    /// Replaces `old` by `new` in `t` (`new` already checked by `check_row`): unique keys,
    /// `t`'s own foreign keys, and the ON UPDATE actions of those that reference it.
    pub(super) async fn update_row_checked(
        &mut self,
        t: &TableDesc,
        old: &[Datum],
        new: &[Datum],
        depth: usize,
    ) -> Result<()> {
        self.replace_row(t, old, new).await?;
        if !t.foreign_keys.is_empty() {
            self.check_references(t, Some(old), new).await?;
        }
        self.on_parent_update(t, old, new, depth).await
    }

    fn cascade_depth(depth: usize) -> Result<usize> {
        if depth >= MAX_CASCADE_DEPTH {
            return Err(Error::new(
                ErrorKind::StatementTooComplex,
                "foreign key actions cascade too deep",
            ));
        }
        Ok(depth + 1)
    }

    /// Parent side of a delete: the rows that referenced `row` (deleted from `t`).
    pub(super) async fn on_parent_delete(
        &mut self,
        t: &TableDesc,
        row: &[Datum],
        depth: usize,
    ) -> Result<()> {
        for (child, fk) in self.referencing(t.id) {
            if fk.ref_columns.iter().any(|&c| row[c].is_null()) {
                continue;
            }
            let vals: Vec<Datum> = fk.ref_columns.iter().map(|&c| row[c].clone()).collect();
            let child = if child.id == t.id {
                Rc::new(t.clone())
            } else {
                child
            };
            let rows = self.child_rows(&child, &fk, &vals).await?;
            if rows.is_empty() {
                continue;
            }
            let next = Self::cascade_depth(depth)?;
            match fk.on_delete {
                RefAction::NoAction | RefAction::Restrict => {
                    return Err(Self::still_referenced(t, &child, &fk, row));
                }
                RefAction::Cascade => {
                    for r in rows {
                        Box::pin(self.delete_row_checked(&child, &r, next)).await?;
                    }
                }
                RefAction::SetNull | RefAction::SetDefault => {
                    for r in rows {
                        let mut new = r.clone();
                        for &c in &fk.columns {
                            new[c] = if fk.on_delete == RefAction::SetNull {
                                Datum::Null
                            } else {
                                self.column_default(&child.columns[c]).await?
                            };
                        }
                        self.check_row(&child, &mut new)?;
                        Box::pin(self.update_row_checked(&child, &r, &new, next)).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Parent side of an update: the rows that referenced `old`'s key, if `new` changed it.
    pub(super) async fn on_parent_update(
        &mut self,
        t: &TableDesc,
        old: &[Datum],
        new: &[Datum],
        depth: usize,
    ) -> Result<()> {
        for (child, fk) in self.referencing(t.id) {
            if fk.ref_columns.iter().any(|&c| old[c].is_null()) {
                continue;
            }
            let changed = fk
                .ref_columns
                .iter()
                .any(|&c| old[c].order_cmp(&new[c]) != std::cmp::Ordering::Equal);
            if !changed {
                continue;
            }
            let vals: Vec<Datum> = fk.ref_columns.iter().map(|&c| old[c].clone()).collect();
            let child = if child.id == t.id {
                Rc::new(t.clone())
            } else {
                child
            };
            let rows = self.child_rows(&child, &fk, &vals).await?;
            if rows.is_empty() {
                continue;
            }
            let next = Self::cascade_depth(depth)?;
            if matches!(fk.on_update, RefAction::NoAction | RefAction::Restrict) {
                return Err(Self::still_referenced(t, &child, &fk, old));
            }
            for r in rows {
                let mut upd = r.clone();
                for (&c, &p) in fk.columns.iter().zip(&fk.ref_columns) {
                    upd[c] = match fk.on_update {
                        RefAction::Cascade => new[p].clone(),
                        RefAction::SetNull => Datum::Null,
                        _ => self.column_default(&child.columns[c]).await?,
                    };
                }
                self.check_row(&child, &mut upd)?;
                Box::pin(self.update_row_checked(&child, &r, &upd, next)).await?;
            }
        }
        Ok(())
    }

    /// `ALTER TABLE … ADD FOREIGN KEY`: every existing row of `t` must reference a parent
    /// row (23503 naming the first that does not).
    pub(super) async fn validate_foreign_key(
        &mut self,
        t: &TableDesc,
        fk: &ForeignKeyDesc,
    ) -> Result<()> {
        let probe = TableDesc {
            foreign_keys: vec![fk.clone()],
            schema_id: catalog::PUBLIC_SCHEMA,
            schema: "public".into(),
            ..t.clone()
        };
        for (n, row) in self
            .read_rows(t, Access::Full)
            .await?
            .into_iter()
            .enumerate()
        {
            if n % 256 == 255 {
                self.pause().await?;
            }
            self.check_references(&probe, None, &row).await?;
        }
        Ok(())
    }

    /// `TRUNCATE`: a table referenced by a table not truncated with it is refused (0A000),
    /// unless CASCADE, which adds the referencing tables. Returns the tables to empty.
    pub(super) fn truncate_set(
        &self,
        named: Vec<Rc<TableDesc>>,
        cascade: bool,
    ) -> Result<Vec<Rc<TableDesc>>> {
        let mut set = named;
        let mut i = 0;
        while i < set.len() {
            let id = set[i].id;
            for (child, fk) in self.referencing(id) {
                if set.iter().any(|t| t.id == child.id) {
                    continue;
                }
                if !cascade {
                    return Err(Error::unsupported(
                        "cannot truncate a table referenced in a foreign key constraint",
                    )
                    .with_detail(format!(
                        "Table \"{}\" references \"{}\".",
                        child.name, set[i].name
                    ))
                    .with_hint(format!(
                        "Truncate table \"{}\" at the same time, or use TRUNCATE ... CASCADE.",
                        child.name
                    )));
                }
                let _ = fk;
                set.push(child);
            }
            i += 1;
        }
        Ok(set)
    }
}
