//! Hash join for equality conditions: `run_join` builds a [`HashIndex`] over the right
//! input's rows, keyed by the columns the ON condition compares for equality with columns
//! on the left (`l.a = r.b AND …`), and probes it with each left row. Only the rows of one
//! bucket are then tested against the whole condition, so an equi-join costs about
//! |left| + |right| + |matches| condition evaluations instead of |left| × |right|.
//!
//! A row whose key holds a NULL is never in a bucket and never finds one: `NULL = x` is
//! not true, so such rows match nothing (an outer join still pads them).
//!
//! # Implementation caveats
//!
//! - Keys are hashed by value kind: integers, text, booleans, dates, timestamps, uuids,
//!   bytea and numerics (integers and numerics share one kind, compared as normalized
//!   decimals, as `=` compares them). A float or interval key (whose `=` has its own rules)
//!   makes the step fall back to the nested loop.
//! - The right input is built in memory; the smaller side is not chosen yet.

use std::collections::HashMap;

use rust_decimal::Decimal;

use crate::sql::expr::{BinOp, Scalar};
use crate::sql::types::Datum;

/// One key value, hashable, equal exactly when SQL `=` says equal for these kinds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum HashKey {
    Number(Decimal),
    Text(String),
    Bool(bool),
    Date(i32),
    Timestamp(i64),
    Uuid([u8; 16]),
    Bytes(Vec<u8>),
    NumericSpecial(crate::sql::types::NumericSpecial),
    Time(i64),
}

/// The key of a datum: `Ok(None)` for NULL (matches nothing), `Err(())` for a kind this
/// join does not hash.
fn key_of(d: &Datum) -> Result<Option<HashKey>, ()> {
    Ok(Some(match d {
        Datum::Null => return Ok(None),
        Datum::Int(i) => HashKey::Number(Decimal::from(*i)),
        Datum::Numeric(n) => HashKey::Number(n.normalize()),
        // NaN equals NaN for NUMERIC, so it hashes like any other value.
        Datum::NumericSpecial(x) => HashKey::NumericSpecial(*x),
        Datum::Text(s) => HashKey::Text(s.clone()),
        Datum::Bool(b) => HashKey::Bool(*b),
        Datum::Date(x) => HashKey::Date(*x),
        // Timestamps with and without time zone compare as instants here.
        Datum::Timestamp(t) | Datum::TimestampTz(t) => HashKey::Timestamp(*t),
        Datum::Uuid(u) => HashKey::Uuid(*u),
        Datum::Time(t) => HashKey::Time(*t),
        Datum::Bytes(b) => HashKey::Bytes(b.clone()),
        Datum::Float(_) | Datum::Interval(_) => return Err(()),
    }))
}

/// Whether `d` is a non-NULL value of a kind the join keys compare (see [`key_of`]).
pub(super) fn is_key_value(d: &Datum) -> bool {
    matches!(key_of(d), Ok(Some(_)))
}

/// The equality conjuncts of `cond` between a left column (position < `left_width` in the
/// joined row) and a right one: (left position, right position within the right row).
pub(super) fn equi_columns(cond: &Scalar, left_width: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    collect(cond, left_width, &mut out);
    out
}

fn collect(cond: &Scalar, lw: usize, out: &mut Vec<(usize, usize)>) {
    match cond {
        Scalar::Binary(BinOp::And, a, b, _) => {
            collect(a, lw, out);
            collect(b, lw, out);
        }
        Scalar::Binary(BinOp::Eq, a, b, _) => {
            if let (Scalar::Column(x), Scalar::Column(y)) = (a.as_ref(), b.as_ref()) {
                if *x < lw && *y >= lw {
                    out.push((*x, *y - lw));
                } else if *y < lw && *x >= lw {
                    out.push((*y, *x - lw));
                }
            }
        }
        _ => {}
    }
}

/// The right input's rows by key.
pub(super) struct HashIndex {
    left: Vec<usize>,
    buckets: HashMap<Vec<HashKey>, Vec<usize>>,
}

impl HashIndex {
    /// Builds the index of `right` for the key columns `columns` ([`equi_columns`]), or
    /// `None` when there are none or a key value is of a kind not hashed here.
    pub(super) fn build(columns: &[(usize, usize)], right: &[Vec<Datum>]) -> Option<HashIndex> {
        if columns.is_empty() {
            return None;
        }
        let mut buckets: HashMap<Vec<HashKey>, Vec<usize>> = HashMap::new();
        'rows: for (i, r) in right.iter().enumerate() {
            let mut key = Vec::with_capacity(columns.len());
            for (_, rc) in columns {
                match key_of(r.get(*rc)?).ok()? {
                    Some(k) => key.push(k),
                    None => continue 'rows,
                }
            }
            buckets.entry(key).or_default().push(i);
        }
        Some(HashIndex {
            left: columns.iter().map(|(l, _)| *l).collect(),
            buckets,
        })
    }

    /// The positions of the right rows whose key equals `left_row`'s; `None` when a key
    /// value of the left row is of a kind not hashed here (the caller tests every row).
    pub(super) fn probe(&self, left_row: &[Datum]) -> Option<&[usize]> {
        let mut key = Vec::with_capacity(self.left.len());
        for l in &self.left {
            match key_of(left_row.get(*l)?).ok()? {
                Some(k) => key.push(k),
                None => return Some(&[]),
            }
        }
        Some(self.buckets.get(&key).map(Vec::as_slice).unwrap_or(&[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::types::SqlType;

    fn eq(a: usize, b: usize) -> Scalar {
        Scalar::Binary(
            BinOp::Eq,
            Box::new(Scalar::Column(a)),
            Box::new(Scalar::Column(b)),
            SqlType::Bool,
        )
    }

    #[test]
    fn finds_equality_conjuncts_across_sides() {
        let cond = Scalar::Binary(
            BinOp::And,
            Box::new(eq(3, 0)),
            Box::new(Scalar::Binary(
                BinOp::And,
                Box::new(eq(1, 2)),
                Box::new(eq(0, 1)),
                SqlType::Bool,
            )),
            SqlType::Bool,
        );
        // Left width 2: (3 = 0) is right.1 = left.0; (1 = 2) left.1 = right.0; (0 = 1) is
        // left-only.
        assert_eq!(equi_columns(&cond, 2), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn buckets_skip_nulls_and_unify_numbers() {
        let right = vec![
            vec![Datum::Int(1)],
            vec![Datum::Null],
            vec![Datum::Numeric(Decimal::new(10, 1))],
        ];
        let ix = HashIndex::build(&[(0, 0)], &right).unwrap();
        assert_eq!(ix.probe(&[Datum::Int(1)]), Some(&[0, 2][..]));
        assert_eq!(ix.probe(&[Datum::Null]), Some(&[][..]));
        assert!(HashIndex::build(&[(0, 0)], &[vec![Datum::Float(1.0)]]).is_none());
    }
}
