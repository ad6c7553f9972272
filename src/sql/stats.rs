//! Table statistics: row counts, distinct and NULL counts, histograms, for the planner.
//!
//! `ANALYZE [t [(columns)]]` and CockroachDB's `CREATE STATISTICS name ON a[, b] FROM t`
//! scan the table at one timestamp, in batches, and keep per column (or per column set) the
//! row count, the NULL count, the distinct count and an equi-depth histogram (from a
//! reservoir sample), as a job ("CREATE STATS"). The newest statistic of each column set
//! lives in the system range (`meta/stats/<table>/<columns>`), is loaded with the catalog
//! (a refresh makes catalogs reload without being a schema change:
//! `catalog::commit_stats`), and is shown by `SHOW STATISTICS FOR TABLE t`.
//!
//! Distinct counts are exact up to [`KMV_K`] values, then a k-minimum-values estimate (the
//! k smallest 64-bit hashes; relative error about 1/√k ≈ 1.6%), so memory stays bounded
//! whatever the table's size.
//!
//! The planner uses them to choose among the secondary indexes a filter can use (the one
//! that leaves the fewest rows), and a full scan over an index lookup that would fetch
//! most of the table ([`estimate_eq_rows`]).
//!
//! **Automatic refresh** (`sql.stats.automatic_collection.enabled`, on by default): each
//! core counts the primary-index rows its committed transactions wrote, per table; once a
//! second core 0 adds up the node's counts and refreshes the statistics of a table whose
//! count reached [`refresh_after`] (500 rows for a table without statistics, else a fifth
//! of its rows, at least 500), as a job like ANALYZE's. Nodes count separately, so a table
//! written through several nodes may be refreshed by each of them.
//!
//! Join ordering (`exec::join_access`) estimates what each input gives after its filter:
//! equalities by distinct counts, ranges (`<`, `>=`, BETWEEN) by the histograms
//! ([`range_fraction`]), `IS NULL` by NULL counts.
//!
//! Caveats: the scan reads committed rows (not the rows of the ANALYZE's own transaction);
//! histogram bounds are kept as text and parsed for each estimate; a range over several
//! columns multiplies their fractions (independence).

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use crate::error::{Error, Result};
use crate::kv::keys;
use crate::sql::record::{put_str, Reader};
use crate::sql::types::{Datum, SqlType};

/// Distinct values counted exactly before the estimate takes over.
pub const KMV_K: usize = 4096;
/// Values kept per column for the histogram.
const SAMPLE: usize = 10_000;
/// Buckets of a histogram.
const BUCKETS: usize = 20;

/// One statistic: a column set of a table, as of `created`.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnStat {
    pub name: String,
    pub table: u32,
    pub columns: Vec<usize>,
    /// Microseconds since the Unix epoch.
    pub created: i64,
    pub row_count: u64,
    pub distinct_count: u64,
    pub null_count: u64,
    /// Upper bounds of equi-depth buckets, as text (single-column statistics only).
    pub histogram: Vec<String>,
}

/// Builds one statistic from the rows fed to it.
pub struct Collector {
    columns: Vec<usize>,
    rows: u64,
    nulls: u64,
    /// The smallest hashes seen (all of them while fewer than KMV_K).
    hashes: BTreeSet<u64>,
    sample: Vec<Datum>,
    rng: u64,
}

impl Collector {
    pub fn new(columns: Vec<usize>) -> Collector {
        Collector {
            columns,
            rows: 0,
            nulls: 0,
            hashes: BTreeSet::new(),
            sample: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    pub fn add(&mut self, row: &[Datum]) {
        self.rows += 1;
        let mut key = Vec::new();
        let mut null = false;
        for &c in &self.columns {
            let d = &row[c];
            null |= d.is_null();
            keys::encode_key_datum(d, &mut key);
        }
        if null && self.columns.len() == 1 {
            self.nulls += 1;
            return;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let h = h.finish();
        if self.hashes.len() < KMV_K {
            self.hashes.insert(h);
        } else if h < *self.hashes.last().expect("k hashes") && self.hashes.insert(h) {
            self.hashes.pop_last();
        }
        if self.columns.len() == 1 {
            // Reservoir sampling (algorithm R) of the non-NULL values.
            let seen = self.rows - self.nulls;
            if self.sample.len() < SAMPLE {
                self.sample.push(row[self.columns[0]].clone());
            } else {
                self.rng = self.rng.wrapping_mul(6364136223846793005).wrapping_add(1);
                let j = (self.rng >> 11) % seen;
                if (j as usize) < SAMPLE {
                    self.sample[j as usize] = row[self.columns[0]].clone();
                }
            }
        }
    }

    /// The distinct count: exact below KMV_K values, else (k - 1) / (k-th smallest hash as
    /// a fraction of the hash space).
    fn distinct(&self) -> u64 {
        if self.hashes.len() < KMV_K {
            return self.hashes.len() as u64;
        }
        let kth = *self.hashes.last().expect("k hashes") as f64 / u64::MAX as f64;
        let estimate = (KMV_K as f64 - 1.0) / kth.max(f64::MIN_POSITIVE);
        (estimate.round() as u64).clamp(KMV_K as u64, self.rows - self.nulls)
    }

    pub fn finish(mut self, name: &str, table: u32, types: &[SqlType], created: i64) -> ColumnStat {
        let distinct_count = self.distinct();
        let mut histogram = Vec::new();
        if self.columns.len() == 1 && !self.sample.is_empty() {
            self.sample.sort_by(|a, b| a.order_cmp(b));
            let n = self.sample.len();
            let ty = types[self.columns[0]];
            for b in 1..=BUCKETS.min(n) {
                let at = (b * n).div_ceil(BUCKETS.min(n)) - 1;
                let text = self.sample[at].to_text(ty).unwrap_or_default();
                if histogram.last() != Some(&text) {
                    histogram.push(text);
                }
            }
        }
        ColumnStat {
            name: name.into(),
            table,
            columns: self.columns,
            created,
            row_count: self.rows,
            distinct_count,
            null_count: self.nulls,
            histogram,
        }
    }
}

/// The system key of the statistic on `columns` of `table`.
pub fn stat_key(table: u32, columns: &[usize]) -> Vec<u8> {
    let cols: Vec<String> = columns.iter().map(usize::to_string).collect();
    keys::meta_key(&format!("{PREFIX}{table:010}/{}", cols.join(",")))
}

/// Where statistics keys start.
pub const PREFIX: &str = "stats/";

pub fn encode(s: &ColumnStat) -> Vec<u8> {
    let mut out = vec![1u8];
    put_str(&mut out, &s.name);
    out.extend_from_slice(&s.table.to_le_bytes());
    out.extend_from_slice(&(s.columns.len() as u32).to_le_bytes());
    for &c in &s.columns {
        out.extend_from_slice(&(c as u32).to_le_bytes());
    }
    out.extend_from_slice(&s.created.to_le_bytes());
    for n in [s.row_count, s.distinct_count, s.null_count] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&(s.histogram.len() as u32).to_le_bytes());
    for b in &s.histogram {
        put_str(&mut out, b);
    }
    out
}

pub fn decode(b: &[u8]) -> Result<ColumnStat> {
    let bad = || Error::internal("corrupt table statistic");
    let (&version, rest) = b.split_first().ok_or_else(bad)?;
    if version != 1 {
        return Err(bad());
    }
    let mut r = Reader(rest);
    let parsed = (|| {
        let name = r.str()?;
        let table = r.u32()?;
        let n = r.u32()? as usize;
        let mut columns = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            columns.push(r.u32()? as usize);
        }
        let created = r.u64()? as i64;
        let (row_count, distinct_count, null_count) = (r.u64()?, r.u64()?, r.u64()?);
        let n = r.u32()? as usize;
        let mut histogram = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            histogram.push(r.str()?);
        }
        Some(ColumnStat {
            name,
            table,
            columns,
            created,
            row_count,
            distinct_count,
            null_count,
            histogram,
        })
    })();
    parsed.ok_or_else(bad)
}

/// The statistics of the catalog, by table.
pub type StatsByTable = HashMap<u32, Vec<ColumnStat>>;

/// Rows an equality on all of `columns` is expected to leave, from the statistics of
/// `table`: the row count over the distinct count of exactly that column set, else of the
/// most selective single column among them. `None` without statistics.
pub fn estimate_eq_rows(stats: &StatsByTable, table: u32, columns: &[usize]) -> Option<f64> {
    let s = stats.get(&table)?;
    let exact = s.iter().find(|c| c.columns == columns);
    let best = exact.or_else(|| {
        s.iter()
            .filter(|c| c.columns.len() == 1 && columns.contains(&c.columns[0]))
            .max_by_key(|c| c.distinct_count)
    })?;
    let non_null = best.row_count.saturating_sub(best.null_count) as f64;
    Some(non_null / best.distinct_count.max(1) as f64)
}

/// The single-column statistic of `col`, the newest.
fn column_stat(stats: &StatsByTable, table: u32, col: usize) -> Option<&ColumnStat> {
    stats
        .get(&table)?
        .iter()
        .filter(|c| c.columns == [col])
        .max_by_key(|c| c.created)
}

/// The fraction of `table`'s rows whose column `col` (of type `ty`) lies within `lo` and
/// `hi` (None: unbounded), from its equi-depth histogram: whole buckets below a bound count
/// fully, the bucket holding it half. `None` without a histogram, or when a bound does not
/// compare with the column's values.
pub fn range_fraction(
    stats: &StatsByTable,
    table: u32,
    col: usize,
    ty: SqlType,
    lo: Option<&Datum>,
    hi: Option<&Datum>,
) -> Option<f64> {
    let s = column_stat(stats, table, col)?;
    if s.histogram.is_empty() || s.row_count == 0 {
        return None;
    }
    let bounds: Vec<Datum> = s
        .histogram
        .iter()
        .map(|b| Datum::Text(b.clone()).cast(ty).ok())
        .collect::<Option<_>>()?;
    let n = bounds.len() as f64;
    // The fraction of non-NULL values below `x`.
    let below = |x: &Datum| -> f64 {
        let under = bounds.iter().filter(|b| b.order_cmp(x).is_lt()).count();
        let half = if under < bounds.len() { 0.5 } else { 0.0 };
        ((under as f64 + half) / n).min(1.0)
    };
    let from = lo.map_or(0.0, below);
    let to = hi.map_or(1.0, below);
    let non_null = s.row_count.saturating_sub(s.null_count) as f64 / s.row_count as f64;
    // At least one bucket's worth of a bucket when the range is inside one.
    Some(((to - from).max(0.5 / n)) * non_null)
}

/// The fraction of `table`'s rows whose column `col` is NULL (`None` without statistics).
pub fn null_fraction(stats: &StatsByTable, table: u32, col: usize) -> Option<f64> {
    let s = column_stat(stats, table, col)?;
    (s.row_count > 0).then(|| s.null_count as f64 / s.row_count as f64)
}

/// Counts the rows `keys` (a committed transaction's writes) wrote in each table's primary
/// index (index id 1; a table rekeyed by `ADD PRIMARY KEY` is not counted).
pub fn count_mutations<'k>(ctx: &crate::node::CoreCtx, keys: impl Iterator<Item = &'k Vec<u8>>) {
    // Keys come in order, so a table's rows are adjacent: one map update per table.
    let mut runs: Vec<(u32, u64)> = Vec::new();
    for k in keys {
        if k.len() < 9 || k[0] != keys::TABLE_DATA || k[5..9] != 1u32.to_be_bytes() {
            continue;
        }
        let table = u32::from_be_bytes([k[1], k[2], k[3], k[4]]);
        match runs.last_mut() {
            Some((t, n)) if *t == table => *n += 1,
            _ => runs.push((table, 1)),
        }
    }
    if runs.is_empty() {
        return;
    }
    if let Ok(mut counts) = ctx.shared.mutations[ctx.core].lock() {
        for (t, n) in runs {
            *counts.entry(t).or_insert(0) += n;
        }
    }
}

/// How many written rows make a table's statistics stale: 500 without statistics, else a
/// fifth of the rows they counted (at least 500).
pub fn refresh_after(stats: &StatsByTable, table: u32) -> u64 {
    row_count(stats, table).map_or(500, |n| (n / 5).max(500))
}

/// The table's row count by its newest statistic, if any.
pub fn row_count(stats: &StatsByTable, table: u32) -> Option<u64> {
    stats
        .get(&table)?
        .iter()
        .max_by_key(|c| c.created)
        .map(|c| c.row_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_estimated_from_the_histogram() {
        let types = [SqlType::Int8];
        let mut c = Collector::new(vec![0]);
        for i in 0..1000 {
            c.add(&[if i < 100 { Datum::Null } else { Datum::Int(i) }]);
        }
        let s = c.finish("s", 7, &types, 1);
        let stats: StatsByTable = [(7, vec![s])].into();
        let f = |lo: Option<i64>, hi: Option<i64>| {
            range_fraction(
                &stats,
                7,
                0,
                SqlType::Int8,
                lo.map(Datum::Int).as_ref(),
                hi.map(Datum::Int).as_ref(),
            )
            .unwrap()
        };
        // 900 non-NULL values, 100..999.
        let near = |got: f64, want: f64| assert!((got - want).abs() < 0.06, "{got} vs {want}");
        near(f(None, Some(325)), 0.225);
        near(f(Some(500), Some(700)), 0.2);
        near(f(Some(100), None), 0.9);
        assert!(f(Some(5000), None) <= 0.05);
        assert!((null_fraction(&stats, 7, 0).unwrap() - 0.1).abs() < 1e-9);
        assert_eq!(
            range_fraction(&stats, 8, 0, SqlType::Int8, None, None),
            None
        );
    }

    #[test]
    fn counts_are_exact_for_few_values_and_close_for_many() {
        let types = [SqlType::Int8, SqlType::Int8];
        let mut small = Collector::new(vec![1]);
        for i in 0..1000 {
            let v = if i % 10 == 0 {
                Datum::Null
            } else {
                Datum::Int(i % 37)
            };
            small.add(&[Datum::Int(i), v]);
        }
        let s = small.finish("s", 7, &types, 1);
        assert_eq!((s.row_count, s.null_count), (1000, 100));
        assert_eq!(s.distinct_count, 37);
        assert!(s.histogram.len() <= BUCKETS && !s.histogram.is_empty());
        assert_eq!(s.histogram.last().map(String::as_str), Some("36"));

        let mut big = Collector::new(vec![0]);
        for i in 0..200_000 {
            big.add(&[Datum::Int(i / 2), Datum::Null]);
        }
        let b = big.finish("b", 7, &types, 1);
        let err = (b.distinct_count as f64 - 100_000.0).abs() / 100_000.0;
        assert!(
            err < 0.05,
            "estimated {} distinct of 100000",
            b.distinct_count
        );
        // The histogram's bounds split the sample into equal parts, in order.
        let bounds: Vec<i64> = b.histogram.iter().map(|s| s.parse().unwrap()).collect();
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        assert!(bounds[0] > 2_000 && bounds[0] < 8_000, "{bounds:?}");

        let mut pair = Collector::new(vec![0, 1]);
        for i in 0..100 {
            pair.add(&[Datum::Int(i % 4), Datum::Int(i % 5)]);
        }
        assert_eq!(pair.finish("p", 7, &types, 1).distinct_count, 20);
    }

    #[test]
    fn a_statistic_round_trips_and_estimates_equalities() {
        let s = ColumnStat {
            name: "__auto__".into(),
            table: 60,
            columns: vec![2],
            created: 1_700_000_000_000_000,
            row_count: 1000,
            distinct_count: 10,
            null_count: 100,
            histogram: vec!["a".into(), "m".into(), "z".into()],
        };
        let b = encode(&s);
        assert_eq!(decode(&b).unwrap(), s);
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err());
        }
        let mut by = StatsByTable::new();
        by.insert(60, vec![s]);
        assert_eq!(estimate_eq_rows(&by, 60, &[2]), Some(90.0));
        assert_eq!(estimate_eq_rows(&by, 60, &[2, 3]), Some(90.0));
        assert_eq!(estimate_eq_rows(&by, 60, &[3]), None);
        assert_eq!(estimate_eq_rows(&by, 61, &[2]), None);
        assert_eq!(row_count(&by, 60), Some(1000));
    }
}
