//! Leveled compaction: which tables to merge (a pure function of the current version, so it
//! is testable without I/O), how versions are garbage-collected while merging, and the
//! merge itself.
//!
//! Levels: L0 holds flushed memtables (newest first, overlapping); L1..L6 are sorted runs
//! of non-overlapping tables whose byte targets grow by `level_multiplier`. For any user
//! key, newer writes sit in shallower levels — the invariant that makes it safe to drop a
//! tombstone once nothing deeper can hold what it deletes. Outputs are never cut between
//! two versions of one key, so a key never straddles two tables of a level.

use std::rc::Rc;

use super::iter::{min_key, LevelIter, MergingIter, Source, TableIter};
use super::key::{self, RangeTombstone, Seqno};
use super::sst::TableBuilder;
use super::version::{TableMeta, Version, NUM_LEVELS};
use super::{Inner, LsmOptions};
use crate::{Result, Timestamp};

/// Bytes a compaction reads from an input table at a time.
const COMPACTION_READAHEAD: usize = 512 << 10;

/// One merge: `inputs` of `level` and the overlapping `next_inputs` of `output_level`.
#[derive(Debug)]
pub struct CompactionSpec {
    pub level: usize,
    pub output_level: usize,
    pub inputs: Vec<Rc<TableMeta>>,
    pub next_inputs: Vec<Rc<TableMeta>>,
    /// No table deeper than `output_level` overlaps the inputs' key range.
    pub bottommost: bool,
}

fn head_range(tables: &[Rc<TableMeta>]) -> (Vec<u8>, Vec<u8>) {
    let lo = tables
        .iter()
        .map(|t| key::head(&t.smallest))
        .min()
        .unwrap()
        .to_vec();
    let hi = tables
        .iter()
        .map(|t| key::head(&t.largest))
        .max()
        .unwrap()
        .to_vec();
    (lo, hi)
}

fn spec(
    v: &Version,
    level: usize,
    output_level: usize,
    inputs: Vec<Rc<TableMeta>>,
) -> CompactionSpec {
    let (lo, hi) = head_range(&inputs);
    let next_inputs: Vec<_> = if output_level == level {
        Vec::new()
    } else {
        v.levels[output_level]
            .iter()
            .filter(|t| t.overlaps_heads(&lo, &hi))
            .cloned()
            .collect()
    };
    let mut all = inputs.clone();
    all.extend(next_inputs.iter().cloned());
    let (lo, hi) = head_range(&all);
    let bottommost = v.levels[output_level + 1..]
        .iter()
        .flatten()
        .all(|t| !t.overlaps_heads(&lo, &hi));
    CompactionSpec {
        level,
        output_level,
        inputs,
        next_inputs,
        bottommost,
    }
}

/// The byte target of level `level >= 1`.
pub fn level_target(opts: &LsmOptions, level: usize) -> u64 {
    let mut t = opts.level_base_bytes.max(1);
    for _ in 1..level {
        t = t.saturating_mul(opts.level_multiplier.max(2));
    }
    t
}

/// Picks the most urgent compaction, if any level is over its target: L0 by file count,
/// L1.. by bytes. Within a level, files are taken round-robin after `pointers[level]`.
pub fn pick(v: &Version, opts: &LsmOptions, pointers: &[Vec<u8>]) -> Option<CompactionSpec> {
    let mut best: Option<(f64, usize)> = None;
    let l0 = v.levels[0].len() as f64 / opts.l0_compaction_trigger.max(1) as f64;
    if l0 >= 1.0 {
        best = Some((l0, 0));
    }
    for level in 1..NUM_LEVELS - 1 {
        let score = v.level_bytes(level) as f64 / level_target(opts, level) as f64;
        if score > 1.0 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, level));
        }
    }
    let (_, level) = best?;
    if level == 0 {
        return Some(spec(v, 0, 1, v.levels[0].clone()));
    }
    let tables = &v.levels[level];
    let after = &pointers[level];
    let t = tables
        .iter()
        .find(|t| {
            after.is_empty() || key::compare(&t.smallest, after) == std::cmp::Ordering::Greater
        })
        .unwrap_or(&tables[0]);
    Some(spec(v, level, level + 1, vec![t.clone()]))
}

/// Everything into one sorted run at the deepest non-empty level (at least L1).
pub fn full(v: &Version) -> Option<CompactionSpec> {
    let all: Vec<_> = v.all_tables().map(|(_, t)| t.clone()).collect();
    if all.is_empty() {
        return None;
    }
    let deepest = v.levels.iter().rposition(|l| !l.is_empty()).unwrap().max(1);
    Some(CompactionSpec {
        level: 0,
        output_level: deepest,
        inputs: all,
        next_inputs: Vec::new(),
        bottommost: true,
    })
}

/// Decides which versions of one key survive a compaction.
pub struct GcFilter<'a> {
    pub tombstones: &'a [RangeTombstone],
    pub gc_threshold: Timestamp,
    pub bottommost: bool,
    /// True when a version of this key head may exist outside the compaction (another
    /// table, any level, or a memtable). Levels order writes by seqno, not by timestamp:
    /// a later write at a lower timestamp can sit above a tombstone, and dropping the
    /// tombstone would bring it back.
    pub elsewhere: &'a dyn Fn(&[u8]) -> bool,
}

impl GcFilter<'_> {
    /// `group` holds every entry of one key head that the compaction sees, in internal-key
    /// order (newest first). Returns whether each survives.
    pub fn keep(&self, group: &[(Vec<u8>, Vec<u8>)]) -> Vec<bool> {
        let mut keep = vec![false; group.len()];
        let Some((first, _)) = group.first() else {
            return keep;
        };
        if key::space(first) != key::SPACE_MVCC {
            // Lock records: only the latest write of a key matters; a deletion at the bottom
            // has nothing left to delete.
            let (_, v) = &group[0];
            keep[0] = !(self.bottommost && v.first() == Some(&key::KIND_LOCK_DELETE));
            return keep;
        }
        let uk = key::user_key(first);
        let tombs: Vec<&RangeTombstone> =
            self.tombstones.iter().filter(|t| t.contains(uk)).collect();
        let gc = self.gc_threshold;
        let mut prev_ts: Option<Timestamp> = None;
        let mut seen_below_gc = false;
        for (i, (k, v)) in group.iter().enumerate() {
            let (ts, seq) = (key::ts(k), key::seq(k));
            let dup = prev_ts == Some(ts);
            prev_ts = Some(ts);
            // Removed by a delete-range at MAX, or shadowed by a later write of the same
            // (key, ts): invisible to every reader, always.
            if dup || tombs.iter().any(|t| t.removes(uk, seq)) {
                continue;
            }
            if ts <= gc {
                if seen_below_gc {
                    continue; // older than the newest version at or below the threshold
                }
                seen_below_gc = true;
                // Hidden from every read at or above the threshold.
                if tombs.iter().any(|t| t.hides(uk, ts, gc)) {
                    continue;
                }
                if self.bottommost
                    && v.first() == Some(&key::KIND_TOMBSTONE)
                    && !(self.elsewhere)(key::head(k))
                {
                    continue;
                }
            }
            keep[i] = true;
        }
        keep
    }
}

impl Inner {
    /// Merges the spec's inputs into new tables at its output level, applying GC, and
    /// installs the result. Caller holds the compaction lock.
    pub(super) async fn run_compaction(&self, spec: CompactionSpec) -> Result<()> {
        let version = self.state.borrow().version.clone();
        let mut sources = Vec::new();
        // L0 inputs each on their own (they overlap); the rest one cursor per level.
        let mut by_level: Vec<Vec<Rc<TableMeta>>> = vec![Vec::new(); NUM_LEVELS];
        for (level, t) in version.all_tables() {
            let chosen = spec
                .inputs
                .iter()
                .chain(&spec.next_inputs)
                .any(|i| i.number == t.number);
            if chosen {
                by_level[level].push(t.clone());
            }
        }
        for (level, tables) in by_level.into_iter().enumerate() {
            if level == 0 {
                for t in tables {
                    let table = self.cache.table(t.number).await?;
                    sources.push(Source::Table(TableIter::sequential(
                        self.cache.clone(),
                        table,
                        COMPACTION_READAHEAD,
                    )));
                }
            } else if !tables.is_empty() {
                sources.push(Source::Level(LevelIter::sequential(
                    self.cache.clone(),
                    tables,
                    COMPACTION_READAHEAD,
                )));
            }
        }
        // What else may hold versions of a key: tables outside the compaction, and the
        // memtables of this moment (later writes are above the GC threshold).
        let others: Vec<Rc<TableMeta>> = version
            .all_tables()
            .filter(|(_, t)| {
                !spec
                    .inputs
                    .iter()
                    .chain(&spec.next_inputs)
                    .any(|i| i.number == t.number)
            })
            .map(|(_, t)| t.clone())
            .collect();
        let mems = self.snapshot().mems;
        let elsewhere = |head: &[u8]| {
            others.iter().any(|t| t.may_contain_head(head))
                || mems.iter().any(|m| {
                    let seek = key::seek_first(head[0], &head[1..]);
                    m.first_matching(&seek, |_| true).is_some()
                })
        };
        let filter = GcFilter {
            tombstones: &version.range_tombstones,
            gc_threshold: self.gc_threshold.get(),
            bottommost: spec.bottommost,
            elsewhere: &elsewhere,
        };
        let applied = (
            version
                .range_tombstones
                .iter()
                .map(|t| t.seq)
                .max()
                .unwrap_or(0),
            filter.gc_threshold,
        );
        let mut it = MergingIter::new(sources, false, Seqno::MAX);
        let mut outputs: Vec<Rc<TableMeta>> = Vec::new();
        let result: Result<()> = async {
            it.seek(&min_key()).await?;
            let mut builder = TableBuilder::new(self.opts.block_size, self.opts.bloom_bits_per_key);
            let mut group = Vec::new();
            let mut n = 0usize;
            while it.valid() {
                super::collect_group(&mut it, &mut group).await?;
                for (keep, (k, v)) in filter.keep(&group).into_iter().zip(&group) {
                    if keep {
                        builder.add(k, v);
                    }
                }
                if builder.estimated_size() as u64 >= self.opts.target_file_bytes {
                    let b = std::mem::replace(
                        &mut builder,
                        TableBuilder::new(self.opts.block_size, self.opts.bloom_bits_per_key),
                    );
                    outputs.push(self.write_table(b, applied).await?);
                }
                n += group.len();
                if n >= 256 {
                    n = 0;
                    glommio::yield_if_needed().await;
                }
            }
            if builder.num_entries() > 0 {
                outputs.push(self.write_table(builder, applied).await?);
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            for o in &outputs {
                o.obsolete.set(true);
            }
            return Err(e);
        }
        if let Some(last) = spec
            .inputs
            .iter()
            .map(|t| &t.largest)
            .max_by(|a, b| key::compare(a, b))
        {
            self.state.borrow_mut().compact_pointers[spec.level] = last.clone();
        }
        let written: u64 = outputs.iter().map(|t| t.size).sum();
        let mut removed = spec.inputs.clone();
        removed.extend(spec.next_inputs.iter().cloned());
        let added = outputs
            .into_iter()
            .map(|t| (spec.output_level, t))
            .collect();
        self.install(&removed, added).await?;
        let mut stats = self.stats.borrow_mut();
        stats.compactions += 1;
        stats.bytes_compacted += written;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsm::key::{encode, KIND_PUT, KIND_TOMBSTONE, SPACE_MVCC};

    fn t(w: u64) -> Timestamp {
        Timestamp::new(w, 0)
    }

    fn group(versions: &[(u64, u64, u8)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut g: Vec<_> = versions
            .iter()
            .map(|&(ts, seq, kind)| (encode(SPACE_MVCC, b"k", t(ts), seq), vec![kind]))
            .collect();
        g.sort_by(|a, b| key::compare(&a.0, &b.0));
        g
    }

    fn meta(number: u64, lo: &str, hi: &str, size: u64) -> Rc<TableMeta> {
        Rc::new(TableMeta {
            number,
            size,
            smallest: encode(SPACE_MVCC, lo.as_bytes(), t(9), 1),
            largest: encode(SPACE_MVCC, hi.as_bytes(), t(1), 1),
            min_ts: t(1),
            max_ts: t(9),
            min_seq: 1,
            max_seq: 1,
            num_entries: 1,
            tombstones_applied: 0,
            gc_applied: Timestamp::MIN,
            obsolete: Default::default(),
            path: std::path::PathBuf::new(),
        })
    }

    fn numbers(ts: &[Rc<TableMeta>]) -> Vec<u64> {
        ts.iter().map(|t| t.number).collect()
    }

    #[test]
    fn picker_is_a_pure_function_of_the_version() {
        let opts = LsmOptions {
            l0_compaction_trigger: 2,
            level_base_bytes: 100,
            level_multiplier: 10,
            ..LsmOptions::default()
        };
        let pointers = vec![Vec::new(); NUM_LEVELS];
        let mut v = Version::empty();
        v.levels[0] = vec![meta(10, "c", "f", 10)];
        v.levels[1] = vec![
            meta(1, "a", "b", 30),
            meta(2, "d", "e", 30),
            meta(3, "g", "h", 30),
        ];
        v.levels[2] = vec![meta(4, "a", "z", 500)];
        // Under every target: nothing to do.
        assert!(pick(&v, &opts, &pointers).is_none());
        // L0 at its trigger: all of L0 plus the L1 tables it overlaps; L2 lies below.
        v.levels[0].insert(0, meta(11, "e", "g", 10));
        let s = pick(&v, &opts, &pointers).unwrap();
        assert_eq!((s.level, s.output_level), (0, 1));
        assert_eq!(numbers(&s.inputs), vec![11, 10]);
        assert_eq!(numbers(&s.next_inputs), vec![2, 3]);
        assert!(!s.bottommost);
        // L1 over its target (90 + 60 > 100): one L1 table, round-robin after the pointer.
        v.levels[0].clear();
        v.levels[1].push(meta(5, "i", "j", 60));
        let s = pick(&v, &opts, &pointers).unwrap();
        assert_eq!((s.level, s.output_level), (1, 2));
        assert_eq!(numbers(&s.inputs), vec![1]);
        assert_eq!(numbers(&s.next_inputs), vec![4]);
        assert!(s.bottommost);
        let mut pointers = pointers;
        pointers[1] = s.inputs[0].largest.clone();
        let s = pick(&v, &opts, &pointers).unwrap();
        assert_eq!(numbers(&s.inputs), vec![2]);
        // A full compaction takes everything into the deepest level.
        let s = full(&v).unwrap();
        assert_eq!(s.output_level, 2);
        assert_eq!(s.inputs.len(), 5);
        assert!(s.bottommost);
    }

    #[test]
    fn gc_keeps_newest_at_or_below_threshold() {
        let g = group(&[
            (30, 4, KIND_PUT),
            (20, 3, KIND_PUT),
            (10, 2, KIND_PUT),
            (5, 1, KIND_PUT),
        ]);
        let f = GcFilter {
            tombstones: &[],
            gc_threshold: t(20),
            bottommost: false,
            elsewhere: &|_| false,
        };
        // ts 30 (above), ts 20 (newest <= 20) survive; 10 and 5 go.
        assert_eq!(f.keep(&g), vec![true, true, false, false]);
    }

    #[test]
    fn gc_drops_tombstones_only_at_the_bottom() {
        let g = group(&[(20, 3, KIND_TOMBSTONE), (10, 2, KIND_PUT)]);
        let mut f = GcFilter {
            tombstones: &[],
            gc_threshold: t(25),
            bottommost: false,
            elsewhere: &|_| false,
        };
        assert_eq!(f.keep(&g), vec![true, false]);
        f.bottommost = true;
        assert_eq!(f.keep(&g), vec![false, false]);
        // A later write at a lower timestamp may sit in a table above (levels follow
        // seqnos, not timestamps): then the tombstone must stay to shadow it.
        f.elsewhere = &|_| true;
        assert_eq!(f.keep(&g), vec![true, false]);
    }

    #[test]
    fn removal_range_tombstone_drops_older_writes_only() {
        let g = group(&[(20, 1, KIND_PUT), (10, 9, KIND_PUT)]);
        let tombs = [RangeTombstone {
            start: b"a".to_vec(),
            end: b"z".to_vec(),
            ts: Timestamp::MAX,
            seq: 5,
        }];
        let f = GcFilter {
            tombstones: &tombs,
            gc_threshold: Timestamp::MIN,
            bottommost: false,
            elsewhere: &|_| false,
        };
        assert_eq!(f.keep(&g), vec![false, true]);
    }
}
