//! Online `CREATE INDEX`: the table stays writable while its index is built.
//!
//! The protocol (F1's, as CockroachDB runs it), each step a job state in `SHOW JOBS`:
//!
//! 1. **Write-only.** The descriptor gets the index in `adding`: every statement planned
//!    with this catalog maintains it (puts, deletes, unique checks) but nothing reads it.
//! 2. **Wait for old transactions.** Writers that planned with the catalog from before
//!    step 1 do not maintain the index; the build waits until none is left anywhere
//!    ([`catalog::old_schema_users`]: pinned catalog versions on this node,
//!    acknowledgements from the others).
//! 3. **Backfill** the primary index in key order, in batches, each batch one transaction
//!    that reads its rows at one timestamp and writes their entries. A writer that moves a
//!    row off a value after that timestamp (an update of the indexed columns, a delete)
//!    writes the old entry's key (a delete), so the batch's write of the same key fails its
//!    write-write check (40001) and the batch runs again, reading the new row; a writer
//!    after the batch maintains the entry itself; a writer's new row has its entry from
//!    the writer. So every row ends with exactly its entry, and the batch needs no read
//!    refresh (which would fail whenever any row of the span changed, however unrelated).
//!    A unique entry already there for another row is a duplicate (23505, the build
//!    fails); for the same row it was written by a writer and is kept.
//! 4. **Public.** The index moves from `adding` to `indexes` in the current descriptor
//!    (re-read: other schema changes may have happened meanwhile).
//!
//! A failed build takes the index out of `adding`; its partial entries stay behind as
//! unreachable garbage under an id never used again (as `DROP INDEX` leaves them). A
//! build whose node died is failed, and its index taken out, when that node restarts
//! ([`fail_interrupted_jobs`]).

use std::sync::atomic::Ordering;

use super::*;
use crate::sql::jobs::{self, Job};

/// Rows per backfill transaction, at most and at least (see `backfill_batch`).
const BATCH_ROWS: usize = 1_000;
const MIN_BATCH_ROWS: usize = 16;

/// How often a running build writes its progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How often a build waiting for old transactions looks again.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// A batch that keeps failing with 40001 (a hot span) is retried this many times.
const BATCH_ATTEMPTS: usize = 100;

impl Exec<'_> {
    /// Builds `idx` on `t` online (module essay), recording job `description`. `exprs` are
    /// its index expressions: (key part, expression text, type), each made a computed
    /// column of the table ([`crate::sql::computed`]) when the index becomes write-only.
    pub(super) async fn build_index_online(
        &mut self,
        t: &TableDesc,
        idx: IndexDesc,
        exprs: &[(usize, String, SqlType)],
        description: String,
    ) -> Result<()> {
        let (start, end) = {
            let s = index_prefix(t.id, t.primary_index);
            let e = prefix_end(&s);
            (s, e)
        };
        if !self.txn.implicit
            && self
                .txn
                .writes
                .range(start.clone()..end.clone())
                .next()
                .is_some()
        {
            return Err(Error::unsupported(format!(
                "CREATE INDEX on \"{}\" after writing to it in the same transaction",
                t.name
            )));
        }
        let mut job = Job::new(self.ctx, "CREATE INDEX", &description, &self.cx.user);
        job.table_id = t.id;
        job.running_status = "adding the index as write-only".into();
        job.save(self.ctx).await?;
        let r = self
            .run_index_build(t, idx, exprs, &start, &end, &mut job)
            .await;
        if r.is_err() && job.index_id != 0 {
            // Take the index out again; a failure here leaves it write-only until the
            // node restarts (`fail_interrupted_jobs`).
            let _ = remove_adding(self.ctx, t.id, job.index_id).await;
        }
        job.finish(self.ctx, &r).await;
        r
    }

    async fn run_index_build(
        &mut self,
        t: &TableDesc,
        mut idx: IndexDesc,
        exprs: &[(usize, String, SqlType)],
        start: &[u8],
        end: &[u8],
        job: &mut Job,
    ) -> Result<()> {
        // 1. Write-only, under the next index id of the descriptor as it is then (a
        // concurrent build of an index of the same name loses here, or at the commit).
        let generation = update_desc(self.ctx, t.id, |desc| {
            if desc.write_indexes().any(|i| i.name == idx.name) {
                return Err(Error::new(
                    ErrorKind::DuplicateTable,
                    format!("relation \"{}\" already exists", idx.name),
                ));
            }
            idx.id = desc.next_index_id;
            desc.next_index_id += 1;
            for (part, text, ty) in exprs {
                idx.columns[*part] = crate::sql::computed::column_for(desc, text, *ty);
            }
            desc.adding.push(idx.clone());
            Ok(true)
        })
        .await?;
        let (desc, _) = current_desc(self.ctx, t.id).await?;
        let version = self.ctx.shared.catalog_version.load(Ordering::SeqCst);
        job.index_id = idx.id;
        let _ = job.save(self.ctx).await;
        // 2. Wait for writers that do not know the index. This statement's own
        // transaction is one of them, and needs no waiting for.
        self.txn.pin = None;
        let ctx = self.ctx;
        loop {
            self.check_cancel()?;
            match catalog::old_schema_users(ctx, generation, version).await? {
                None => break,
                Some(waiting) => {
                    if waiting != job.running_status {
                        job.running_status = waiting;
                        let _ = job.save(ctx).await;
                    }
                    glommio::timer::sleep(WAIT_POLL).await;
                }
            }
        }
        // 3. Backfill.
        job.running_status = "backfilling".into();
        let _ = job.save(ctx).await;
        let total_bytes = self.table_bytes(t).await.max(1);
        let mut done_bytes = 0u64;
        let mut last_progress = std::time::Instant::now();
        let mut cur = start.to_vec();
        let mut size = BATCH_ROWS;
        loop {
            self.check_cancel()?;
            let (next, bytes) = self
                .backfill_batch(&desc, &idx, &cur, end, &mut size)
                .await?;
            done_bytes += bytes;
            let Some(next) = next else { break };
            cur = next;
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = std::time::Instant::now();
                job.fraction_completed = (done_bytes as f64 / total_bytes as f64).min(0.99);
                let _ = job.save(ctx).await;
            }
        }
        // 4. Public, in the descriptor as it is now.
        job.running_status = "making the index public".into();
        update_desc(ctx, t.id, |desc| {
            let Some(at) = desc.adding.iter().position(|i| i.id == idx.id) else {
                return Err(Error::new(
                    ErrorKind::ObjectNotInPrerequisiteState,
                    format!(
                        "index \"{}\" was dropped while it was being built",
                        idx.name
                    ),
                ));
            };
            let built = desc.adding.remove(at);
            desc.indexes.push(built);
            Ok(true)
        })
        .await?;
        Ok(())
    }

    /// Backfills the rows of `[from, end)`, up to `size` of them, in one transaction
    /// (retried while it fails with 40001, with smaller batches: a batch that keeps meeting
    /// writers shrinks until it fits between them; one that commits grows again). Answers
    /// where the next batch starts (`None`: done) and the bytes of rows read.
    ///
    /// A unique entry is first written as an insert (no read: the apply checks that the key
    /// is free); if one is taken, the batch runs again reading each entry first, which tells
    /// a writer's entry for the same row (kept) from a duplicate (23505).
    async fn backfill_batch(
        &self,
        desc: &TableDesc,
        idx: &IndexDesc,
        from: &[u8],
        end: &[u8],
        size: &mut usize,
    ) -> Result<(Option<Vec<u8>>, u64)> {
        let ctx = self.ctx;
        let mut attempt = 0;
        let mut read_entries = false;
        loop {
            self.check_cancel()?;
            let ts = ctx.shared.hlc.now();
            let mut txn = Txn::new(ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed), ts);
            let rows = ctx.kv_scan(from, end, ts, *size).await?;
            let next = match rows.last() {
                Some((k, _)) if rows.len() == *size => {
                    let mut n = k.clone();
                    n.push(0);
                    Some(n)
                }
                _ => None,
            };
            // No read set: the entries' write-write checks are what keep the batch right
            // (module essay).
            txn.track_reads = false;
            let mut bytes = 0u64;
            for (k, v) in &rows {
                bytes += (k.len() + v.len()) as u64;
                let row = desc.decode_row(v)?;
                let ik = Self::index_key(desc, idx, &row);
                let pk = Self::pk_key(desc, &row);
                if !Self::unique_conflict_possible(idx, &row) {
                    txn.put(ik, pk);
                    continue;
                }
                if let Some(own) = txn.own_write(&ik) {
                    if own != Some(pk.as_slice()) {
                        return Err(duplicate_in_index(desc, &idx.name, &idx.columns, &row));
                    }
                    continue;
                }
                if !read_entries {
                    txn.insert(ik, pk);
                    continue;
                }
                match ctx.kv_get(&ik, ts).await? {
                    None => txn.put(ik, pk),
                    Some(p) if p == pk => {}
                    Some(_) => return Err(duplicate_in_index(desc, &idx.name, &idx.columns, &row)),
                }
            }
            if txn.writes.is_empty() {
                return Ok((next, bytes));
            }
            match crate::sql::session::commit(ctx, txn).await {
                Ok(()) => {
                    *size = (*size * 2).min(BATCH_ROWS);
                    return Ok((next, bytes));
                }
                Err(e) if e.kind == ErrorKind::UniqueViolation && !read_entries => {
                    read_entries = true;
                }
                Err(e) if e.is_retryable() && attempt < BATCH_ATTEMPTS => {
                    attempt += 1;
                    *size = (*size / 2).max(MIN_BATCH_ROWS);
                    let pause = std::time::Duration::from_millis((attempt as u64).min(20));
                    glommio::timer::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The bytes the table's ranges hold (for a progress estimate; 0 if unknown).
    async fn table_bytes(&self, t: &TableDesc) -> u64 {
        if self.ctx.refresh_ranges().await.is_err() {
            return 0;
        }
        let ranges = self.ctx.ranges.borrow().table_ranges(t.id);
        let mut total = 0;
        for d in ranges {
            if let Ok(info) = self.ctx.replicas_of(d.id).await {
                total += info.bytes.unwrap_or(0);
            }
        }
        total
    }
}

/// 23505 for unique index `name` (on `columns` of `desc`) over duplicate values, as
/// PostgreSQL words it, naming `row`'s values.
pub(super) fn duplicate_in_index(
    desc: &TableDesc,
    name: &str,
    columns: &[usize],
    row: &[Datum],
) -> Error {
    let names: Vec<String> = columns
        .iter()
        .map(|&i| crate::sql::computed::display(desc, i))
        .collect();
    let vals: Vec<String> = columns
        .iter()
        .map(|&i| {
            row[i]
                .to_text(desc.columns[i].ty)
                .unwrap_or_else(|| "NULL".into())
        })
        .collect();
    Error::new(
        ErrorKind::UniqueViolation,
        format!("could not create unique index \"{name}\""),
    )
    .with_detail(format!(
        "Key ({})=({}) is duplicated.",
        names.join(", "),
        vals.join(", ")
    ))
}

/// The table's descriptor as stored now, and the timestamp it was read at.
pub(super) async fn current_desc(
    ctx: &CoreCtx,
    id: u32,
) -> Result<(TableDesc, chitin_storage::Timestamp)> {
    let ts = ctx.shared.hlc.now();
    let Some(v) = ctx.kv_get(&keys::table_desc_key(id), ts).await? else {
        return Err(Error::new(
            ErrorKind::UndefinedTable,
            "the table was dropped while its index was being built",
        ));
    };
    Ok((catalog::decode_table(&v)?, ts))
}

/// Takes index `index` out of table `table`'s indexes being added.
async fn remove_adding(ctx: &CoreCtx, table: u32, index: u32) -> Result<()> {
    update_desc(ctx, table, |desc| {
        let before = desc.adding.len();
        desc.adding.retain(|i| i.id != index);
        crate::sql::computed::drop_unused(desc);
        Ok(desc.adding.len() != before)
    })
    .await
    .map(|_| ())
}

/// How often a descriptor change of a build is tried when it meets another schema change.
const DESC_ATTEMPTS: usize = 50;

/// Changes table `table`'s descriptor as it is now with `change` (which answers whether it
/// changed anything) and commits it as a schema change, again from a fresh read when
/// another schema change got in between (40001): the steps of a build must not fail, and
/// have the statement retried, for a conflict on the schema generation. Answers the
/// schema generation committed (0: nothing changed).
async fn update_desc(
    ctx: &CoreCtx,
    table: u32,
    mut change: impl FnMut(&mut TableDesc) -> Result<bool>,
) -> Result<u64> {
    let mut attempt = 0;
    loop {
        let (mut desc, ts) = current_desc(ctx, table).await?;
        if !change(&mut desc)? {
            return Ok(0);
        }
        let write = KvWrite::Put {
            key: keys::table_desc_key(desc.id),
            value: catalog::encode_table(&desc),
        };
        match catalog::commit_schema(ctx, ts, vec![write]).await {
            Err(e) if e.is_retryable() && attempt < DESC_ATTEMPTS => {
                attempt += 1;
                glommio::timer::sleep(std::time::Duration::from_millis(attempt as u64)).await;
            }
            r => return r,
        }
    }
}

/// At startup: this node's jobs still marked running died with its previous process;
/// they are failed and their write-only indexes taken out.
pub async fn fail_interrupted_jobs(ctx: &CoreCtx) -> Result<()> {
    let me = ctx.shared.node_id.load(Ordering::SeqCst).max(1);
    for mut job in jobs::list(ctx).await? {
        if job.status != jobs::Status::Running || job.coordinator != me {
            continue;
        }
        match remove_adding(ctx, job.table_id, job.index_id).await {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::UndefinedTable => {}
            Err(e) => return Err(e),
        }
        let interrupted = Err(Error::new(
            ErrorKind::AdminShutdown,
            "the node running the job restarted",
        ));
        job.finish(ctx, &interrupted).await;
    }
    Ok(())
}
