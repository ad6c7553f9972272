//! `ANALYZE` / `CREATE STATISTICS` (a job that collects [`crate::sql::stats`]) and
//! `SHOW STATISTICS FOR TABLE`.

use std::collections::HashMap;

use super::*;
use crate::sql::jobs::{self, Job};
use crate::sql::preparse::STATS_NAME_MARKER;
use crate::sql::stats::{self, Collector};

/// Rows read per scan of a statistics collection.
const SCAN_BATCH: usize = 2_000;

/// How often a collection writes its progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The name of statistics that `ANALYZE` collects (CockroachDB's automatic ones).
const AUTO_NAME: &str = "__auto__";

pub(super) fn show_statistics_columns() -> Vec<Column> {
    let col = |name: &str, ty| Column {
        name: name.into(),
        ty,
    };
    vec![
        col("statistics_name", SqlType::Text),
        col("column_names", SqlType::Text),
        col("created", SqlType::TimestampTz),
        col("row_count", SqlType::Int8),
        col("distinct_count", SqlType::Int8),
        col("null_count", SqlType::Int8),
        col("histogram_upper_bounds", SqlType::Text),
    ]
}

impl Exec<'_> {
    /// `ANALYZE [t [(columns)]]` (every table of the database without a name; each
    /// visible column, or each named one, on its own) and `CREATE STATISTICS name ON a[, b]
    /// FROM t` (pre-parsed into an ANALYZE whose first column is a marker with the name:
    /// one statistic on the column set).
    pub(super) async fn analyze(
        &mut self,
        a: &ast::Analyze,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let mut names: Vec<String> = a.columns.iter().map(ident_name).collect();
        let named = names
            .first()
            .and_then(|n| n.strip_prefix(STATS_NAME_MARKER))
            .map(str::to_string);
        if named.is_some() {
            names.remove(0);
        }
        let tables: Vec<Rc<TableDesc>> = match &a.table_name {
            Some(n) => vec![lookup_table(self.cat, self.db_id, &self.path, n)?],
            None => self
                .cat
                .tables_in(self.db_id)
                .filter(|t| t.view.is_none() && t.sequence.is_none())
                .cloned()
                .collect(),
        };
        for t in tables {
            if t.view.is_some() || t.sequence.is_some() {
                return Err(Error::new(
                    ErrorKind::WrongObjectType,
                    format!("\"{}\" is not a table", t.name),
                ));
            }
            let mut cols = Vec::new();
            for n in &names {
                let c = t
                    .column_index(n)
                    .filter(|&c| !t.columns[c].hidden && !t.columns[c].dropped)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::UndefinedColumn,
                            format!("column \"{n}\" of relation \"{}\" does not exist", t.name),
                        )
                    })?;
                cols.push(c);
            }
            let sets: Vec<Vec<usize>> = if named.is_some() {
                vec![cols]
            } else if cols.is_empty() {
                each_column(&t)
            } else {
                cols.into_iter().map(|c| vec![c]).collect()
            };
            let name = named.as_deref().unwrap_or(AUTO_NAME);
            let description = match &named {
                Some(n) => format!(
                    "CREATE STATISTICS {n} ON {} FROM {}",
                    names.join(", "),
                    t.name
                ),
                None => format!("ANALYZE {}", t.name),
            };
            self.collect_stats(&t, sets, name, &description).await?;
        }
        let tag = if named.is_some() {
            "CREATE STATISTICS"
        } else {
            "ANALYZE"
        };
        Ok((Outcome::Command(tag.into()), None))
    }

    /// Reads every row of `t` at one timestamp and stores one statistic per column set,
    /// as a job.
    async fn collect_stats(
        &self,
        t: &TableDesc,
        sets: Vec<Vec<usize>>,
        name: &str,
        description: &str,
    ) -> Result<()> {
        collect(self.ctx, t, sets, name, description, &self.cx.user, &|| {
            self.check_cancel()
        })
        .await
    }

    /// `SHOW STATISTICS FOR TABLE t`: the newest statistic of each column set, oldest
    /// first.
    pub(super) fn show_statistics(&self, table: &str) -> Result<(Outcome, Option<Vec<Column>>)> {
        let name = ast::ObjectName::from(vec![ast::Ident::new(table)]);
        let t = lookup_table(self.cat, self.db_id, &self.path, &name)?;
        let mut list: Vec<&stats::ColumnStat> = self
            .cat
            .stats
            .get(&t.id)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        list.sort_by_key(|s| (s.created, s.columns.clone()));
        let rows: Vec<Vec<Datum>> = list
            .iter()
            .map(|s| {
                let cols: Vec<&str> = s
                    .columns
                    .iter()
                    .map(|&c| t.columns.get(c).map_or("?", |c| c.name.as_str()))
                    .collect();
                vec![
                    Datum::Text(s.name.clone()),
                    Datum::Text(format!("{{{}}}", cols.join(","))),
                    Datum::TimestampTz(s.created),
                    Datum::Int(s.row_count as i64),
                    Datum::Int(s.distinct_count as i64),
                    Datum::Int(s.null_count as i64),
                    Datum::Text(format!("{{{}}}", s.histogram.join(","))),
                ]
            })
            .collect();
        Ok(select_rows(rows, show_statistics_columns()))
    }
}

/// Reads every row of `t` at one timestamp and stores one statistic per column set, as a
/// job (`user`'s). `check` runs between batches (cancellation).
async fn collect(
    ctx: &CoreCtx,
    t: &TableDesc,
    sets: Vec<Vec<usize>>,
    name: &str,
    description: &str,
    user: &str,
    check: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let mut job = Job::new(ctx, "CREATE STATS", description, user);
    job.table_id = t.id;
    job.running_status = "scanning".into();
    job.save(ctx).await?;
    let r = collect_inner(ctx, t, sets, name, &mut job, check).await;
    job.finish(ctx, &r).await;
    r
}

async fn collect_inner(
    ctx: &CoreCtx,
    t: &TableDesc,
    sets: Vec<Vec<usize>>,
    name: &str,
    job: &mut Job,
    check: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let mut collectors: Vec<Collector> = sets.into_iter().map(Collector::new).collect();
    let start = index_prefix(t.id, t.primary_index);
    let end = prefix_end(&start);
    let ts = ctx.shared.hlc.now();
    let mut cur = start;
    let mut rows = 0u64;
    let mut last_progress = std::time::Instant::now();
    loop {
        check()?;
        let batch = ctx.kv_scan(&cur, &end, ts, SCAN_BATCH).await?;
        for (_, v) in &batch {
            let row = t.decode_row(v)?;
            for c in collectors.iter_mut() {
                c.add(&row);
            }
        }
        rows += batch.len() as u64;
        if batch.len() < SCAN_BATCH {
            break;
        }
        cur = batch.last().map(|(k, _)| k.clone()).unwrap_or_default();
        cur.push(0);
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = std::time::Instant::now();
            job.running_status = format!("scanned {rows} rows");
            let _ = job.save(ctx).await;
        }
    }
    let types: Vec<SqlType> = t.columns.iter().map(|c| c.ty).collect();
    let created = jobs::now_micros();
    let writes: Vec<KvWrite> = collectors
        .into_iter()
        .map(|c| {
            let s = c.finish(name, t.id, &types, created);
            KvWrite::Put {
                key: stats::stat_key(t.id, &s.columns),
                value: stats::encode(&s),
            }
        })
        .collect();
    // Every node's catalog reloads with them. Two refreshes committing at once conflict
    // (40001): retried here.
    let mut attempt = 0;
    loop {
        match catalog::commit_stats(ctx, writes.clone()).await {
            Err(e) if e.is_retryable() && attempt < 20 => {
                attempt += 1;
                glommio::timer::sleep(std::time::Duration::from_millis(attempt)).await;
            }
            r => return r,
        }
    }
}

/// Every visible column of `t`, each on its own (what ANALYZE collects).
fn each_column(t: &TableDesc) -> Vec<Vec<usize>> {
    t.visible_columns()
        .filter(|(_, c)| !c.dropped)
        .map(|(i, _)| vec![i])
        .collect()
}

/// Refreshes the statistics of the tables this core's transactions changed enough
/// ([`stats::refresh_after`]), one table after another (the automatic refresh of
/// [`crate::sql::stats`]). Runs once a second on core 0, from its cluster task.
pub async fn refresh_stale_stats(ctx: &CoreCtx) {
    let enabled = ctx
        .shared
        .setting(crate::node::settings::AUTO_STATS)
        .is_none_or(|v| v == "true");
    let take_all = |table: Option<u32>| {
        let mut total: HashMap<u32, u64> = HashMap::new();
        for m in &ctx.shared.mutations {
            if let Ok(mut m) = m.lock() {
                match table {
                    Some(t) => {
                        m.remove(&t);
                    }
                    None if !enabled => m.clear(),
                    None => {
                        for (&t, &n) in m.iter() {
                            *total.entry(t).or_insert(0) += n;
                        }
                    }
                }
            }
        }
        total
    };
    let counts = take_all(None);
    if counts.is_empty() {
        return;
    }
    let Ok(cat) = catalog::current(ctx).await else {
        return;
    };
    for (table, n) in counts {
        if n < stats::refresh_after(&cat.stats, table) {
            continue;
        }
        take_all(Some(table));
        let Some(t) = cat.tables.iter().find(|t| t.id == table) else {
            continue;
        };
        if t.view.is_some() || t.sequence.is_some() {
            continue;
        }
        let description = format!("Table statistics refresh for {}", t.name);
        let stopping = || {
            if ctx
                .shared
                .shutdown
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                Err(Error::new(ErrorKind::AdminShutdown, "the node is stopping"))
            } else {
                Ok(())
            }
        };
        let _ = collect(
            ctx,
            t,
            each_column(t),
            AUTO_NAME,
            &description,
            "root",
            &stopping,
        )
        .await;
    }
}
