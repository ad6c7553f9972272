//! Arrays: their text form, and the array operators the binder plans as `__array_*` calls.
//!
//! An array value is a `Datum::Text` in PostgreSQL's text form (`{1,2}`, `{{1,2},{3,4}}`,
//! `{a,"b c",NULL}`) whose `SqlType` names the element type (`SqlType::Int4Array`, …), as
//! in PostgreSQL one type for any number of dimensions. Every dimension's lower bound is 1.
//! [`Array::parse`] reads the text form into its dimensions and its elements in row-major
//! order (each in its type's text form), [`Array::format`] prints it back, and [`eval`]
//! computes what the binder (`expr::Binder`) planned:
//!
//! - `__array_nest(a, b, …)`: `ARRAY[ARRAY[…], …]`, one dimension more than its items;
//! - `__array_subscript(a, i, …)` and `__array_slice(a, mask, lo, hi, …)`: `a[i][j]`, `a[lo:hi]`
//!   (a bound missing from the mask is the dimension's own);
//! - `__array_cat`, `__array_append`, `__array_prepend`: `||`;
//! - `__array_contains`, `__array_overlap`: `@>` (and `<@`, its operands swapped), `&&`;
//! - `__array_cmp(a, b, op, elem)`: `=`, `<`, … between arrays, in PostgreSQL's order;
//! - `__array_quantified(x, a, op, all, elem)`: `x op ANY | ALL (a)` over an array value.
//!
//! Comparison operators are coded as [`CmpOp`]; element types travel as
//! [`SqlType::tag`] constants.
//!
//! # Implementation caveats
//!
//! - Elements are compared by parsing them with the element type's input function on each
//!   call: fine for the short arrays applications keep, not for very long ones.
//! - No explicit lower bounds (`'[0:1]={1,2}'`). A SELECT's ORDER BY sorts arrays by
//!   [`sort_key`]; GROUP BY, DISTINCT, window and set-operation ordering compare an array's
//!   text (equal arrays are equal texts, but that order is not PostgreSQL's).

use std::cmp::Ordering;

use crate::error::{Error, ErrorKind, Result};
use crate::sql::types::{Datum, SqlType};

/// An array value: its dimensions and its elements in row-major order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Array {
    /// The length of each dimension, outermost first; empty for the empty array.
    pub dims: Vec<usize>,
    /// The elements in their type's text form; `None` is NULL.
    pub elems: Vec<Option<String>>,
}

/// A comparison operator, as coded in the `op` argument of the `__array_*` calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 0,
    NotEq = 1,
    Lt = 2,
    LtEq = 3,
    Gt = 4,
    GtEq = 5,
}

impl CmpOp {
    pub fn from_code(c: i64) -> Option<CmpOp> {
        Some(match c {
            0 => CmpOp::Eq,
            1 => CmpOp::NotEq,
            2 => CmpOp::Lt,
            3 => CmpOp::LtEq,
            4 => CmpOp::Gt,
            5 => CmpOp::GtEq,
            _ => return None,
        })
    }

    /// Whether `ord` (left compared with right) satisfies the operator.
    pub fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::NotEq => ord != Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::LtEq => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::GtEq => ord != Ordering::Less,
        }
    }
}

/// The names [`eval`] answers to.
pub const NAMES: &[&str] = &[
    "__array_nest",
    "__array_subscript",
    "__array_slice",
    "__array_cat",
    "__array_append",
    "__array_prepend",
    "__array_contains",
    "__array_overlap",
    "__array_cmp",
    "__array_quantified",
    "__array_sort_key",
];

impl Array {
    /// A one-dimensional array of these elements (empty when there are none).
    pub fn one_dim(elems: Vec<Option<String>>) -> Array {
        let dims = if elems.is_empty() {
            Vec::new()
        } else {
            vec![elems.len()]
        };
        Array { dims, elems }
    }

    /// Parses PostgreSQL's text form: nested braces, elements quoted with `"` or bare
    /// (`NULL` unquoted is NULL), `\` escaping one character, white space around elements
    /// ignored. Sub-arrays must have matching dimensions.
    pub fn parse(s: &str) -> Result<Array> {
        let mut p = Parser {
            src: s,
            chars: s.char_indices().peekable(),
            dims: Vec::new(),
            leaf_depth: None,
            elems: Vec::new(),
        };
        p.skip_ws();
        if p.chars.next().map(|(_, c)| c) != Some('{') {
            return Err(malformed(
                s,
                "Array value must start with \"{\" or dimension information.",
            ));
        }
        p.level(0)?;
        p.skip_ws();
        if p.chars.peek().is_some() {
            return Err(malformed(s, "Junk after closing right brace."));
        }
        let dims: Vec<usize> = p.dims.into_iter().map(|d| d.unwrap_or(0)).collect();
        if p.elems.is_empty() {
            return Ok(Array::default());
        }
        Ok(Array {
            dims,
            elems: p.elems,
        })
    }

    /// PostgreSQL's text form.
    pub fn format(&self) -> String {
        let mut out = String::new();
        if self.elems.is_empty() || self.dims.is_empty() {
            out.push_str("{}");
            return out;
        }
        let mut next = 0;
        self.write_level(&mut out, 0, &mut next);
        out
    }

    fn write_level(&self, out: &mut String, depth: usize, next: &mut usize) {
        out.push('{');
        for i in 0..self.dims[depth] {
            if i > 0 {
                out.push(',');
            }
            if depth + 1 == self.dims.len() {
                push_element(out, self.elems.get(*next).and_then(|e| e.as_deref()));
                *next += 1;
            } else {
                self.write_level(out, depth + 1, next);
            }
        }
        out.push('}');
    }

    /// The element at these 1-based subscripts; `None` when their number is not the
    /// number of dimensions or one is out of range (PostgreSQL's NULL).
    pub fn element(&self, subscripts: &[i64]) -> Option<&str> {
        if subscripts.len() != self.dims.len() || self.dims.is_empty() {
            return None;
        }
        let mut offset = 0usize;
        for (&len, &i) in self.dims.iter().zip(subscripts) {
            if i < 1 || i as u64 > len as u64 {
                return None;
            }
            offset = offset * len + (i as usize - 1);
        }
        self.elems.get(offset)?.as_deref()
    }

    /// The slice between these inclusive 1-based bounds per dimension (a missing bound, or
    /// a missing dimension, is the whole dimension), clamped to the array; empty when a
    /// dimension's range is empty.
    pub fn slice(&self, bounds: &[(Option<i64>, Option<i64>)]) -> Array {
        if self.dims.is_empty() || bounds.len() > self.dims.len() {
            return Array::default();
        }
        let mut ranges = Vec::with_capacity(self.dims.len());
        for (k, &len) in self.dims.iter().enumerate() {
            let (lo, hi) = bounds.get(k).copied().unwrap_or((None, None));
            let lo = lo.unwrap_or(1).max(1);
            let hi = hi.unwrap_or(len as i64).min(len as i64);
            if lo > hi {
                return Array::default();
            }
            ranges.push((lo as usize - 1, hi as usize));
        }
        let mut out = Array {
            dims: ranges.iter().map(|(lo, hi)| hi - lo).collect(),
            elems: Vec::new(),
        };
        self.collect_slice(&ranges, 0, 0, &mut out.elems);
        out
    }

    fn collect_slice(
        &self,
        ranges: &[(usize, usize)],
        depth: usize,
        base: usize,
        out: &mut Vec<Option<String>>,
    ) {
        let (lo, hi) = ranges[depth];
        for i in lo..hi {
            let offset = base * self.dims[depth] + i;
            if depth + 1 == self.dims.len() {
                out.push(self.elems.get(offset).cloned().flatten());
            } else {
                self.collect_slice(ranges, depth + 1, offset, out);
            }
        }
    }

    /// `a || b` for two arrays: an empty one gives the other; of equal dimensions, the
    /// outer dimensions add up; one a dimension short is one more item of the other.
    pub fn concat(mut self, b: Array) -> Result<Array> {
        if b.elems.is_empty() {
            return Ok(self);
        }
        if self.elems.is_empty() {
            return Ok(b);
        }
        let (na, nb) = (self.dims.len(), b.dims.len());
        let incompatible = |detail: &str| {
            Error::new(
                ErrorKind::ArraySubscriptError,
                "cannot concatenate incompatible arrays",
            )
            .with_detail(detail.to_string())
        };
        if na == nb {
            if self.dims[1..] != b.dims[1..] {
                return Err(incompatible(
                    "Arrays with differing element dimensions are not compatible for concatenation.",
                ));
            }
            self.dims[0] += b.dims[0];
        } else if na + 1 == nb {
            if self.dims[..] != b.dims[1..] {
                return Err(incompatible(
                    "Arrays with differing dimensions are not compatible for concatenation.",
                ));
            }
            let mut dims = b.dims.clone();
            dims[0] += 1;
            self.dims = dims;
        } else if na == nb + 1 {
            if self.dims[1..] != b.dims[..] {
                return Err(incompatible(
                    "Arrays with differing dimensions are not compatible for concatenation.",
                ));
            }
            self.dims[0] += 1;
        } else {
            return Err(incompatible(&format!(
                "Arrays of {na} and {nb} dimensions are not compatible for concatenation."
            )));
        }
        self.elems.extend(b.elems);
        Ok(self)
    }

    /// The elements as values of `elem`.
    fn datums(&self, elem: SqlType) -> Result<Vec<Datum>> {
        self.elems
            .iter()
            .map(|e| match e {
                Some(t) => Datum::parse(elem, t),
                None => Ok(Datum::Null),
            })
            .collect()
    }
}

/// PostgreSQL's order of two arrays (btree `array_cmp`): element by element (NULL after
/// every value), then the one with fewer elements first, then by dimensions.
pub fn compare(a: &Array, b: &Array, elem: SqlType) -> Result<Ordering> {
    let (da, db) = (a.datums(elem)?, b.datums(elem)?);
    for (x, y) in da.iter().zip(&db) {
        let ord = x.order_cmp(y);
        if ord != Ordering::Equal {
            return Ok(ord);
        }
    }
    Ok(da
        .len()
        .cmp(&db.len())
        .then(a.dims.len().cmp(&b.dims.len()))
        .then_with(|| a.dims.cmp(&b.dims)))
}

/// Bytes that sort as PostgreSQL orders arrays of `elem` ([`compare`]): per element a
/// marker (NULL after every value) and the order-preserving key encoding of the value,
/// then an end marker (so a prefix sorts first), then the dimensions. ORDER BY sorts an
/// array by these instead of by its text.
pub fn sort_key(text: &str, elem: SqlType) -> Result<Vec<u8>> {
    let a = Array::parse(text)?;
    let mut out = Vec::with_capacity(text.len() + 8);
    for e in &a.elems {
        match e {
            Some(t) => {
                out.push(1);
                crate::kv::keys::encode_key_datum(&Datum::parse(elem, t)?, &mut out);
            }
            None => out.push(2),
        }
    }
    out.push(0);
    out.push(a.dims.len() as u8);
    for d in &a.dims {
        out.extend_from_slice(&(*d as u32).to_be_bytes());
    }
    Ok(out)
}

/// The value ORDER BY sorts `d` of type `ty` by: for an array its [`sort_key`], else `d`.
// PERF: one type test for the values that are not arrays.
pub fn sort_datum(d: Datum, ty: SqlType) -> Result<Datum> {
    match (&d, ty.array_elem()) {
        (Datum::Text(t), Some(elem)) if !ty.is_vector() => Ok(Datum::Bytes(sort_key(t, elem)?)),
        _ => Ok(d),
    }
}

/// `a @> b` (`all`): every element of `b` is in `a`, a NULL in `b` never being; `a && b`
/// (not `all`): some non-NULL element is in both.
fn contains(a: &Array, b: &Array, elem: SqlType, all: bool) -> Result<bool> {
    let (da, db) = (a.datums(elem)?, b.datums(elem)?);
    let found = |y: &Datum| da.iter().any(|x| x.sql_cmp(y) == Some(Ordering::Equal));
    Ok(if all {
        db.iter().all(|y| !y.is_null() && found(y))
    } else {
        db.iter().any(|y| !y.is_null() && found(y))
    })
}

/// `x op ANY (a)` (or ALL when `all`) with SQL's three-valued result: ANY is true when one
/// comparison is, else NULL when one is NULL, else false; ALL the other way round. An empty
/// array gives false for ANY and true for ALL, whatever `x` is.
fn quantified(x: &Datum, a: &Array, elem: SqlType, op: CmpOp, all: bool) -> Result<Datum> {
    let mut saw_null = false;
    for e in &a.elems {
        let r = match e {
            None => None,
            Some(t) => x.sql_cmp(&Datum::parse(elem, t)?).map(|o| op.holds(o)),
        };
        match r {
            None => saw_null = true,
            Some(b) if b != all => return Ok(Datum::Bool(b)),
            Some(_) => {}
        }
    }
    Ok(if saw_null {
        Datum::Null
    } else {
        Datum::Bool(all)
    })
}

/// Evaluates one of [`NAMES`]: `vals` are the evaluated arguments, `ty` the call's type.
pub fn eval(name: &str, vals: &[Datum], ty: SqlType) -> Result<Datum> {
    let array = |i: usize| -> Result<Option<Array>> {
        match vals.get(i) {
            Some(Datum::Text(t)) => Array::parse(t).map(Some),
            _ => Ok(None),
        }
    };
    let int = |i: usize| -> Option<i64> {
        match vals.get(i) {
            Some(Datum::Int(n)) => Some(*n),
            _ => None,
        }
    };
    let elem_of = |i: usize| -> SqlType {
        int(i)
            .and_then(|t| u8::try_from(t).ok())
            .and_then(SqlType::from_tag)
            .unwrap_or(SqlType::Text)
    };
    let own_elem = ty.array_elem().unwrap_or(SqlType::Text);
    let text = |a: Array| Datum::Text(a.format());
    Ok(match name {
        "__array_nest" => {
            let mut out = Array::default();
            let mut inner: Option<Vec<usize>> = None;
            let mismatch = || {
                Error::new(
                    ErrorKind::ArraySubscriptError,
                    "multidimensional arrays must have array expressions with matching dimensions",
                )
            };
            for i in 0..vals.len() {
                let a = array(i)?.ok_or_else(mismatch)?;
                match &inner {
                    None => inner = Some(a.dims.clone()),
                    Some(d) if *d != a.dims => return Err(mismatch()),
                    Some(_) => {}
                }
                out.elems.extend(a.elems);
            }
            match inner {
                Some(d) if !d.is_empty() => {
                    out.dims.push(vals.len());
                    out.dims.extend(d);
                    text(out)
                }
                _ => text(Array::default()),
            }
        }
        "__array_subscript" => {
            let Some(a) = array(0)? else {
                return Ok(Datum::Null);
            };
            let mut subs = Vec::with_capacity(vals.len() - 1);
            for i in 1..vals.len() {
                match int(i) {
                    Some(n) => subs.push(n),
                    None => return Ok(Datum::Null),
                }
            }
            match a.element(&subs) {
                Some(t) => Datum::parse(ty, t)?,
                None => Datum::Null,
            }
        }
        "__array_slice" => {
            let Some(a) = array(0)? else {
                return Ok(Datum::Null);
            };
            let mask = int(1).unwrap_or(0);
            let mut bounds = Vec::with_capacity((vals.len() - 2) / 2);
            let mut i = 2;
            while i + 1 < vals.len() {
                let bound = |j: usize| -> std::result::Result<Option<i64>, ()> {
                    if mask & (1 << (j - 2)) == 0 {
                        return Ok(None);
                    }
                    int(j).map(Some).ok_or(())
                };
                match (bound(i), bound(i + 1)) {
                    (Ok(lo), Ok(hi)) => bounds.push((lo, hi)),
                    _ => return Ok(Datum::Null),
                }
                i += 2;
            }
            text(a.slice(&bounds))
        }
        "__array_cat" => match (array(0)?, array(1)?) {
            (Some(a), Some(b)) => text(a.concat(b)?),
            (Some(a), None) | (None, Some(a)) => text(a),
            (None, None) => Datum::Null,
        },
        "__array_append" | "__array_prepend" => {
            let (ai, xi) = if name == "__array_append" {
                (0, 1)
            } else {
                (1, 0)
            };
            let a = array(ai)?.unwrap_or_default();
            if a.dims.len() > 1 {
                return Err(Error::new(
                    ErrorKind::DataException,
                    "argument must be empty or one-dimensional array",
                ));
            }
            let x = vals
                .get(xi)
                .cloned()
                .unwrap_or(Datum::Null)
                .cast(own_elem)?;
            let one = Array::one_dim(vec![x.to_text(own_elem)]);
            text(if ai == 0 {
                a.concat(one)?
            } else {
                one.concat(a)?
            })
        }
        "__array_contains" | "__array_overlap" => match (array(0)?, array(1)?) {
            (Some(a), Some(b)) => {
                Datum::Bool(contains(&a, &b, elem_of(2), name == "__array_contains")?)
            }
            _ => Datum::Null,
        },
        "__array_cmp" => match (array(0)?, array(1)?, int(2).and_then(CmpOp::from_code)) {
            (Some(a), Some(b), Some(op)) => Datum::Bool(op.holds(compare(&a, &b, elem_of(3))?)),
            _ => Datum::Null,
        },
        "__array_quantified" => {
            let (Some(a), Some(op)) = (array(1)?, int(2).and_then(CmpOp::from_code)) else {
                return Ok(Datum::Null);
            };
            let all = int(3) == Some(1);
            let x = vals.first().cloned().unwrap_or(Datum::Null);
            if a.elems.is_empty() {
                return Ok(Datum::Bool(all));
            }
            if x.is_null() {
                return Ok(Datum::Null);
            }
            quantified(&x, &a, elem_of(4), op, all)?
        }
        "__array_sort_key" => match vals.first() {
            Some(Datum::Text(t)) => Datum::Bytes(sort_key(t, elem_of(1))?),
            _ => Datum::Null,
        },
        _ => return Err(Error::internal(format!("no array function {name}"))),
    })
}

/// Appends one element in array syntax: quoted where it is empty, `NULL`, or holds a
/// delimiter, a quote, a backslash or white space.
pub fn push_element(out: &mut String, e: Option<&str>) {
    let Some(e) = e else {
        out.push_str("NULL");
        return;
    };
    let quote = e.is_empty()
        || e.eq_ignore_ascii_case("NULL")
        || e.chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
    if !quote {
        out.push_str(e);
        return;
    }
    out.push('"');
    for c in e.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn malformed(s: &str, detail: &str) -> Error {
    Error::invalid_text(format!("malformed array literal: \"{s}\"")).with_detail(detail.to_string())
}

struct Parser<'a> {
    src: &'a str,
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    /// The number of items at each depth, once one sub-array of that depth has ended.
    dims: Vec<Option<usize>>,
    /// The depth elements (not sub-arrays) sit at, once one has been seen.
    leaf_depth: Option<usize>,
    elems: Vec<Option<String>>,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            self.chars.next();
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|(_, c)| *c)
    }

    fn err(&self, detail: &str) -> Error {
        malformed(self.src, detail)
    }

    /// Parses the items of a sub-array at `depth`, its `{` already read, through its `}`.
    fn level(&mut self, depth: usize) -> Result<()> {
        if depth >= 6 {
            return Err(Error::new(
                ErrorKind::ProgramLimitExceeded,
                "number of array dimensions (7) exceeds the maximum allowed (6)",
            ));
        }
        if self.dims.len() <= depth {
            self.dims.push(None);
        }
        self.skip_ws();
        let mut count = 0usize;
        if self.peek() == Some('}') {
            self.chars.next();
            if depth > 0 || self.leaf_depth.is_some() {
                return Err(self.err("Unexpected \"}\" character."));
            }
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() == Some('{') {
                if self.leaf_depth == Some(depth) {
                    return Err(self.err("Unexpected \"{\" character."));
                }
                self.chars.next();
                self.level(depth + 1)?;
            } else {
                match self.leaf_depth {
                    None => self.leaf_depth = Some(depth),
                    Some(d) if d != depth => return Err(self.err(
                        "Multidimensional arrays must have sub-arrays with matching dimensions.",
                    )),
                    Some(_) => {}
                }
                let e = self.element()?;
                self.elems.push(e);
            }
            count += 1;
            self.skip_ws();
            match self.chars.next().map(|(_, c)| c) {
                Some(',') => {}
                Some('}') => break,
                _ => return Err(self.err("Unexpected array element.")),
            }
        }
        match self.dims[depth] {
            None => self.dims[depth] = Some(count),
            Some(n) if n != count => {
                return Err(self
                    .err("Multidimensional arrays must have sub-arrays with matching dimensions."))
            }
            Some(_) => {}
        }
        if self.leaf_depth.is_some_and(|d| d + 1 != self.dims.len()) {
            return Err(
                self.err("Multidimensional arrays must have sub-arrays with matching dimensions.")
            );
        }
        Ok(())
    }

    /// One element, quoted or bare; bare `NULL` is NULL.
    fn element(&mut self) -> Result<Option<String>> {
        let mut item = String::new();
        if self.peek() == Some('"') {
            self.chars.next();
            loop {
                match self.chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match self.chars.next() {
                        Some((_, c)) => item.push(c),
                        None => return Err(self.err("Unexpected end of input.")),
                    },
                    Some(c) => item.push(c),
                    None => return Err(self.err("Unexpected end of input.")),
                }
            }
            return Ok(Some(item));
        }
        // Trailing white space is dropped, but not white space that was escaped.
        let mut kept = 0;
        let mut escaped = false;
        while let Some(c) = self.peek() {
            if matches!(c, ',' | '}') {
                break;
            }
            if matches!(c, '{' | '"') {
                return Err(self.err(&format!("Unexpected \"{c}\" character.")));
            }
            self.chars.next();
            if c == '\\' {
                match self.chars.next() {
                    Some((_, c)) => item.push(c),
                    None => return Err(self.err("Unexpected end of input.")),
                }
                escaped = true;
                kept = item.len();
            } else {
                item.push(c);
                if !c.is_whitespace() {
                    kept = item.len();
                }
            }
        }
        item.truncate(kept);
        if item.is_empty() {
            return Err(self.err("Unexpected \",\" character."));
        }
        Ok(if !escaped && item.eq_ignore_ascii_case("NULL") {
            None
        } else {
            Some(item)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(s: &str) -> Array {
        Array::parse(s).unwrap()
    }

    #[test]
    fn parses_and_prints_nested_arrays() {
        let a = arr("{{1,2},{3,4}}");
        assert_eq!(a.dims, vec![2, 2]);
        assert_eq!(a.format(), "{{1,2},{3,4}}");
        assert_eq!(arr(" { } ").format(), "{}");
        assert_eq!(
            arr(r#"{a, "b c" ,NULL,"NULL"}"#).format(),
            r#"{a,"b c",NULL,"NULL"}"#
        );
        assert_eq!(arr("{{{1},{2}}}").dims, vec![1, 2, 1]);
        for bad in [
            "{{1,2},{3}}",
            "{{1},2}",
            "{1,{2}}",
            "{1,}",
            "1,2",
            "{1}x",
            "{{}}",
        ] {
            let e = Array::parse(bad).unwrap_err();
            assert_eq!(e.sqlstate(), "22P02", "{bad}");
        }
    }

    #[test]
    fn subscripts_and_slices_follow_postgres() {
        let a = arr("{{1,2},{3,4}}");
        assert_eq!(a.element(&[2, 1]), Some("3"));
        assert_eq!(a.element(&[2]), None);
        assert_eq!(a.element(&[0, 1]), None);
        assert_eq!(a.slice(&[(Some(1), Some(1))]).format(), "{{1,2}}");
        assert_eq!(
            a.slice(&[(Some(2), Some(2)), (None, Some(1))]).format(),
            "{{3}}"
        );
        let b = arr("{1,NULL,2}");
        assert_eq!(b.slice(&[(Some(3), Some(1))]).format(), "{}");
        assert_eq!(b.slice(&[(Some(-1), None)]).format(), "{1,NULL,2}");
        assert_eq!(b.slice(&[(None, Some(2))]).format(), "{1,NULL}");
        assert_eq!(
            b.slice(&[(Some(1), Some(1)), (Some(1), Some(1))]).format(),
            "{}"
        );
    }

    #[test]
    fn concatenation_and_its_errors() {
        let c = |a: &str, b: &str| arr(a).concat(arr(b)).map(|x| x.format());
        assert_eq!(c("{1,2}", "{3}").unwrap(), "{1,2,3}");
        assert_eq!(c("{{1,2}}", "{{3,4}}").unwrap(), "{{1,2},{3,4}}");
        assert_eq!(c("{1,2}", "{{3,4}}").unwrap(), "{{1,2},{3,4}}");
        assert_eq!(c("{{1,2}}", "{3,4}").unwrap(), "{{1,2},{3,4}}");
        assert_eq!(c("{}", "{3,4}").unwrap(), "{3,4}");
        assert_eq!(c("{{1,2}}", "{1,2,3}").unwrap_err().sqlstate(), "2202E");
    }

    #[test]
    fn comparisons_containment_and_quantifiers() {
        let i = SqlType::Int4;
        let cmp = |a: &str, b: &str| compare(&arr(a), &arr(b), i).unwrap();
        assert_eq!(cmp("{1,10}", "{1,9}"), Ordering::Greater);
        assert_eq!(cmp("{1,2}", "{1,2,0}"), Ordering::Less);
        assert_eq!(cmp("{1,NULL}", "{1,2}"), Ordering::Greater);
        assert_eq!(cmp("{1,2}", "{1,2}"), Ordering::Equal);
        assert!(contains(&arr("{1,2,3}"), &arr("{3,2}"), i, true).unwrap());
        assert!(!contains(&arr("{1,NULL}"), &arr("{NULL}"), i, true).unwrap());
        assert!(!contains(&arr("{1,NULL}"), &arr("{NULL,2}"), i, false).unwrap());
        assert!(contains(&arr("{1,2,3}"), &arr("{3,4}"), i, false).unwrap());
        let q = |x: i64, a: &str, op, all| quantified(&Datum::Int(x), &arr(a), i, op, all).unwrap();
        assert!(matches!(q(3, "{1,2,NULL}", CmpOp::GtEq, true), Datum::Null));
        assert!(matches!(
            q(1, "{1,NULL}", CmpOp::Eq, false),
            Datum::Bool(true)
        ));
        assert!(matches!(
            q(1, "{1,2}", CmpOp::NotEq, true),
            Datum::Bool(false)
        ));
        assert!(matches!(q(2, "{NULL}", CmpOp::Lt, false), Datum::Null));
    }

    #[test]
    fn sort_keys_order_as_compare_does() {
        let texts = [
            "{1}", "{2}", "{1,2,3}", "{1,NULL}", "{-5,10}", "{{1,2}}", "{}", "{1,2}",
        ];
        for a in texts {
            for b in texts {
                let want = compare(&arr(a), &arr(b), SqlType::Int4).unwrap();
                let got = sort_key(a, SqlType::Int4)
                    .unwrap()
                    .cmp(&sort_key(b, SqlType::Int4).unwrap());
                assert_eq!(got, want, "{a} vs {b}");
            }
        }
    }
}
