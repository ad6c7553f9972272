//! Merge join: an equi-join step whose inputs both arrive sorted on the join keys — a
//! table read in primary-key order joined on its leading key columns, the usual shape of
//! parent and child tables keyed alike — walks the two sides in step instead of building a
//! hash table over the right side: |left| + |right| key comparisons and no memory beyond
//! the ranges it answers.
//!
//! Whether the inputs are sorted is checked on the rows themselves (one comparison per
//! row), so a step whose inputs happen to be ordered by an index or a filter takes it too,
//! and a step whose inputs are not (a table spread over ranges read out of order, an
//! index scan) falls back to the hash join; the answer is the same rows in the same order
//! either way. `EXPLAIN` predicts it for a first step over two tables read in primary-key
//! order on their first key columns.
//!
//! # Implementation caveats
//!
//! - Keys of the kinds the hash join hashes only (no floats or intervals, whose `=` has
//!   its own rules); a NULL key anywhere sends the step to the hash join.
//! - Only the first step of a join sees its left input in a table's order; later steps'
//!   left sides are join results, ordered only when earlier steps kept that order (they
//!   do: both join methods emit in left order).

use std::cmp::Ordering;
use std::ops::Range;

use super::hash_join::is_key_value;
use crate::sql::types::Datum;

/// For each left row, the range of right rows whose keys equal its own, when both sides
/// are sorted on the key columns `columns` (left position, right position) and every key
/// is of a kind compared here; `None` otherwise.
pub(super) fn ranges(
    columns: &[(usize, usize)],
    left: &[Vec<Datum>],
    right: &[Vec<Datum>],
) -> Option<Vec<Range<usize>>> {
    if columns.is_empty() {
        return None;
    }
    let left_cols: Vec<usize> = columns.iter().map(|(l, _)| *l).collect();
    let right_cols: Vec<usize> = columns.iter().map(|(_, r)| *r).collect();
    if !sorted(left, &left_cols) || !sorted(right, &right_cols) {
        return None;
    }
    let mut out = Vec::with_capacity(left.len());
    let mut j = 0;
    let mut last: Option<(usize, Range<usize>)> = None;
    for (i, l) in left.iter().enumerate() {
        // A left row equal to the one before it matches the same right rows.
        if let Some((prev, range)) = &last {
            if compare(&left[*prev], &left_cols, l, &left_cols) == Some(Ordering::Equal) {
                out.push(range.clone());
                continue;
            }
        }
        while j < right.len() && compare(&right[j], &right_cols, l, &left_cols)? == Ordering::Less {
            j += 1;
        }
        let mut end = j;
        while end < right.len()
            && compare(&right[end], &right_cols, l, &left_cols)? == Ordering::Equal
        {
            end += 1;
        }
        out.push(j..end);
        last = Some((i, j..end));
    }
    Some(out)
}

/// Whether `rows` are in non-decreasing order of the key `cols`, with every key value
/// non-NULL and of a kind compared here.
fn sorted(rows: &[Vec<Datum>], cols: &[usize]) -> bool {
    let supported = |r: &Vec<Datum>| cols.iter().all(|&c| r.get(c).is_some_and(is_key_value));
    if !rows.first().is_none_or(supported) {
        return false;
    }
    rows.windows(2)
        .all(|w| supported(&w[1]) && compare(&w[0], cols, &w[1], cols) != Some(Ordering::Greater))
}

/// The order of row `a`'s key `a_cols` against row `b`'s key `b_cols` (`None` when a value
/// is missing or NULL).
fn compare(a: &[Datum], a_cols: &[usize], b: &[Datum], b_cols: &[usize]) -> Option<Ordering> {
    for (x, y) in a_cols.iter().zip(b_cols) {
        match a.get(*x)?.sql_cmp(b.get(*y)?)? {
            Ordering::Equal => {}
            other => return Some(other),
        }
    }
    Some(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(keys: &[i64]) -> Vec<Vec<Datum>> {
        keys.iter().map(|k| vec![Datum::Int(*k)]).collect()
    }

    #[test]
    fn sorted_inputs_match_by_ranges() {
        let left = rows(&[1, 2, 2, 4, 7]);
        let right = rows(&[0, 2, 2, 3, 4, 8]);
        let got = ranges(&[(0, 0)], &left, &right).unwrap();
        assert_eq!(got, vec![1..1, 1..3, 1..3, 4..5, 5..5]);
    }

    #[test]
    fn unsorted_null_or_float_keys_fall_back() {
        assert!(ranges(&[(0, 0)], &rows(&[2, 1]), &rows(&[1, 2])).is_none());
        assert!(ranges(&[(0, 0)], &rows(&[1, 2]), &rows(&[3, 1])).is_none());
        let with_null = vec![vec![Datum::Int(1)], vec![Datum::Null]];
        assert!(ranges(&[(0, 0)], &with_null, &rows(&[1])).is_none());
        let floats = vec![vec![Datum::Float(1.0)]];
        assert!(ranges(&[(0, 0)], &floats, &floats).is_none());
        assert!(ranges(&[], &rows(&[1]), &rows(&[1])).is_none());
    }

    #[test]
    fn numeric_kinds_compare_by_value() {
        let left = vec![vec![Datum::Int(1)], vec![Datum::Int(2)]];
        let right = vec![
            vec![Datum::Numeric(1.into())],
            vec![Datum::Numeric(2.into())],
        ];
        assert_eq!(ranges(&[(0, 0)], &left, &right).unwrap(), vec![0..1, 1..2]);
    }
}
