//! A compact binary codec for the values and expressions of a query fragment (a DistSQL
//! flow) sent to another node: [`Datum`], [`SqlType`], [`Scalar`], [`AggCall`] and rows.
//!
//! The format is little-endian, as [`crate::sql::record`]'s: every enum variant is one
//! explicit tag byte (named consts below, never an `as u8` of a type this module does
//! not own, except through [`SqlType::tag`], the descriptor encoding's stable tags),
//! lengths and counts are u32, indexes (`usize`) are u64, booleans are exactly 0 or 1 and
//! an `Option` is a presence byte (0 or 1) before the value.
//!
//! Invariants:
//! - Round trip: `get_x(put_x(v)) == v` for every value, bit for bit (a float by its bits,
//!   NaN payloads and -0.0 included; a NUMERIC by its 16-byte serialization, scale kept).
//! - Every encoding is self-delimiting, so values concatenate without framing and no
//!   proper prefix of an encoding decodes.
//! - The decoders read bytes from the network: they answer `None` on any malformed,
//!   truncated or non-canonical input (an unknown tag, a boolean other than 0 or 1, a
//!   NUMERIC with bits set outside its sign and a scale of at most 28) and never panic.
//!   A count read from the wire pre-allocates at most [`MAX_PREALLOC`] elements, so a
//!   forged count costs no more memory than the bytes that actually arrive, and
//!   [`get_scalar`] refuses expressions nested deeper than [`MAX_DEPTH`] levels, so a
//!   forged chain of tags cannot overflow the stack.
//!
//! Implementation caveats:
//! - There is no version byte: the flow's header must carry the format version. Tags are
//!   append-only; a tag's meaning never changes.
//! - [`put_scalar`] encodes an expression of any depth; one deeper than [`MAX_DEPTH`]
//!   (which the binder does not produce) encodes but does not decode.
//! - Window calls ([`crate::sql::expr::WindowCall`]) are not encoded: a flow that needs a
//!   window function runs it on the gateway.
//! - The decoders do not type-check: a well-formed but meaningless expression (a column
//!   index past the row) decodes, and evaluation reports it as it would for any plan.

use rust_decimal::Decimal;

use crate::sql::expr::{AggCall, AggFunc, BinOp, Scalar};
use crate::sql::interval::Interval;
use crate::sql::record::{put_str, Reader};
use crate::sql::types::{Datum, NumericSpecial, SqlType};

/// The deepest expression [`get_scalar`] accepts: the root is level 1.
pub const MAX_DEPTH: usize = 512;

/// The most elements a count read from the wire pre-allocates.
pub const MAX_PREALLOC: usize = 1024;

// Datum tags.
const DATUM_NULL: u8 = 0;
const DATUM_INT: u8 = 1;
const DATUM_FLOAT: u8 = 2;
const DATUM_BOOL: u8 = 3;
const DATUM_TEXT: u8 = 4;
const DATUM_BYTES: u8 = 5;
const DATUM_NUMERIC: u8 = 6;
const DATUM_DATE: u8 = 7;
const DATUM_TIMESTAMP: u8 = 8;
const DATUM_TIMESTAMPTZ: u8 = 9;
const DATUM_UUID: u8 = 10;
const DATUM_INTERVAL: u8 = 11;
const DATUM_NUMERIC_SPECIAL: u8 = 12;
const DATUM_TIME: u8 = 13;

// NumericSpecial tags.
const NUMERIC_NEG_INFINITY: u8 = 0;
const NUMERIC_INFINITY: u8 = 1;
const NUMERIC_NAN: u8 = 2;

/// The flag bits a valid `Decimal` may have: the sign (bit 31) and the scale (16..=23).
const DECIMAL_FLAGS_MASK: u32 = 0x801F_0000;
/// rust_decimal's largest scale.
const DECIMAL_MAX_SCALE: u32 = 28;

// Scalar tags.
const SCALAR_WINDOW_REF: u8 = 0;
const SCALAR_CONST: u8 = 1;
const SCALAR_PARAM: u8 = 2;
const SCALAR_COLUMN: u8 = 3;
const SCALAR_AGG_REF: u8 = 4;
const SCALAR_BINARY: u8 = 5;
const SCALAR_NOT: u8 = 6;
const SCALAR_NEG: u8 = 7;
const SCALAR_IS_NULL: u8 = 8;
const SCALAR_IS_BOOL: u8 = 9;
const SCALAR_IS_DISTINCT: u8 = 10;
const SCALAR_IN_LIST: u8 = 11;
const SCALAR_BETWEEN: u8 = 12;
const SCALAR_LIKE: u8 = 13;
const SCALAR_CASE: u8 = 14;
const SCALAR_CAST: u8 = 15;
const SCALAR_FUNC: u8 = 16;

// AggFunc tags.
const AGG_COUNT: u8 = 0;
const AGG_COUNT_STAR: u8 = 1;
const AGG_SUM: u8 = 2;
const AGG_MIN: u8 = 3;
const AGG_MAX: u8 = 4;
const AGG_AVG: u8 = 5;
const AGG_BOOL_AND: u8 = 6;
const AGG_BOOL_OR: u8 = 7;
const AGG_ARRAY_AGG: u8 = 8;
const AGG_STRING_AGG: u8 = 9;
/// Followed by `population` and `root` as booleans.
const AGG_VARIANCE: u8 = 10;
const AGG_JSONB_AGG: u8 = 11;
const AGG_JSONB_OBJECT_AGG: u8 = 12;

/// BinOp tags, each operator's index in this table.
const BIN_OPS: [BinOp; 14] = [
    BinOp::Add,
    BinOp::Sub,
    BinOp::Mul,
    BinOp::Div,
    BinOp::Mod,
    BinOp::Eq,
    BinOp::NotEq,
    BinOp::Lt,
    BinOp::LtEq,
    BinOp::Gt,
    BinOp::GtEq,
    BinOp::And,
    BinOp::Or,
    BinOp::Concat,
];

fn bin_op_tag(op: BinOp) -> u8 {
    match op {
        BinOp::Add => 0,
        BinOp::Sub => 1,
        BinOp::Mul => 2,
        BinOp::Div => 3,
        BinOp::Mod => 4,
        BinOp::Eq => 5,
        BinOp::NotEq => 6,
        BinOp::Lt => 7,
        BinOp::LtEq => 8,
        BinOp::Gt => 9,
        BinOp::GtEq => 10,
        BinOp::And => 11,
        BinOp::Or => 12,
        BinOp::Concat => 13,
    }
}

fn put_bool(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

fn get_bool(r: &mut Reader) -> Option<bool> {
    match r.u8()? {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("wire: a length or count fits in u32");
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_index(out: &mut Vec<u8>, i: usize) {
    out.extend_from_slice(&(i as u64).to_le_bytes());
}

fn get_index(r: &mut Reader) -> Option<usize> {
    usize::try_from(r.u64()?).ok()
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

fn get_i32(r: &mut Reader) -> Option<i32> {
    r.take().map(i32::from_le_bytes)
}

/// Reads a u32 count and then that many items, allocating only for items that arrive.
fn get_vec<T>(r: &mut Reader, mut item: impl FnMut(&mut Reader) -> Option<T>) -> Option<Vec<T>> {
    let n = r.u32()? as usize;
    let mut v = Vec::with_capacity(n.min(MAX_PREALLOC));
    for _ in 0..n {
        v.push(item(r)?);
    }
    Some(v)
}

/// Appends one value.
pub fn put_datum(out: &mut Vec<u8>, d: &Datum) {
    match d {
        Datum::Null => out.push(DATUM_NULL),
        Datum::Int(i) => {
            out.push(DATUM_INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Datum::Float(f) => {
            out.push(DATUM_FLOAT);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Datum::Bool(b) => {
            out.push(DATUM_BOOL);
            put_bool(out, *b);
        }
        Datum::Text(s) => {
            out.push(DATUM_TEXT);
            put_str(out, s);
        }
        Datum::Bytes(b) => {
            out.push(DATUM_BYTES);
            put_bytes(out, b);
        }
        Datum::Numeric(n) => {
            out.push(DATUM_NUMERIC);
            out.extend_from_slice(&n.serialize());
        }
        Datum::Date(d) => {
            out.push(DATUM_DATE);
            out.extend_from_slice(&d.to_le_bytes());
        }
        Datum::Timestamp(t) => {
            out.push(DATUM_TIMESTAMP);
            out.extend_from_slice(&t.to_le_bytes());
        }
        Datum::TimestampTz(t) => {
            out.push(DATUM_TIMESTAMPTZ);
            out.extend_from_slice(&t.to_le_bytes());
        }
        Datum::Uuid(u) => {
            out.push(DATUM_UUID);
            out.extend_from_slice(u);
        }
        Datum::Interval(iv) => {
            out.push(DATUM_INTERVAL);
            out.extend_from_slice(&iv.months.to_le_bytes());
            out.extend_from_slice(&iv.days.to_le_bytes());
            out.extend_from_slice(&iv.micros.to_le_bytes());
        }
        Datum::NumericSpecial(x) => {
            out.push(DATUM_NUMERIC_SPECIAL);
            out.push(match x {
                NumericSpecial::NegInfinity => NUMERIC_NEG_INFINITY,
                NumericSpecial::Infinity => NUMERIC_INFINITY,
                NumericSpecial::NaN => NUMERIC_NAN,
            });
        }
        Datum::Time(t) => {
            out.push(DATUM_TIME);
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
}

/// Reads one value written by [`put_datum`].
pub fn get_datum(r: &mut Reader) -> Option<Datum> {
    Some(match r.u8()? {
        DATUM_NULL => Datum::Null,
        DATUM_INT => Datum::Int(r.i64()?),
        DATUM_FLOAT => Datum::Float(f64::from_bits(r.u64()?)),
        DATUM_BOOL => Datum::Bool(get_bool(r)?),
        DATUM_TEXT => Datum::Text(r.str()?),
        DATUM_BYTES => Datum::Bytes(r.bytes()?.to_vec()),
        DATUM_NUMERIC => {
            let raw: [u8; 16] = r.take()?;
            // `Decimal::deserialize` masks stray flag bits and rescales a scale above 28;
            // neither comes from `serialize`, so such input is refused, not repaired.
            let flags = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            if flags & !DECIMAL_FLAGS_MASK != 0 || (flags >> 16) & 0xFF > DECIMAL_MAX_SCALE {
                return None;
            }
            Datum::Numeric(Decimal::deserialize(raw))
        }
        DATUM_DATE => Datum::Date(get_i32(r)?),
        DATUM_TIMESTAMP => Datum::Timestamp(r.i64()?),
        DATUM_TIMESTAMPTZ => Datum::TimestampTz(r.i64()?),
        DATUM_UUID => Datum::Uuid(r.take()?),
        DATUM_INTERVAL => Datum::Interval(Interval {
            months: get_i32(r)?,
            days: get_i32(r)?,
            micros: r.i64()?,
        }),
        DATUM_NUMERIC_SPECIAL => Datum::NumericSpecial(match r.u8()? {
            NUMERIC_NEG_INFINITY => NumericSpecial::NegInfinity,
            NUMERIC_INFINITY => NumericSpecial::Infinity,
            NUMERIC_NAN => NumericSpecial::NaN,
            _ => return None,
        }),
        DATUM_TIME => Datum::Time(r.i64()?),
        _ => return None,
    })
}

/// Appends a type as its descriptor tag ([`SqlType::tag`]).
pub fn put_type(out: &mut Vec<u8>, t: SqlType) {
    out.push(t.tag());
}

/// Reads a type written by [`put_type`].
pub fn get_type(r: &mut Reader) -> Option<SqlType> {
    SqlType::from_tag(r.u8()?)
}

/// Appends a row: a u32 count and its values.
pub fn put_row(out: &mut Vec<u8>, row: &[Datum]) {
    put_len(out, row.len());
    for d in row {
        put_datum(out, d);
    }
}

/// Reads a row written by [`put_row`].
pub fn get_row(r: &mut Reader) -> Option<Vec<Datum>> {
    get_vec(r, get_datum)
}

/// Appends an expression (recursively; see the module caveats on depth).
pub fn put_scalar(out: &mut Vec<u8>, s: &Scalar) {
    match s {
        Scalar::WindowRef(i) => {
            out.push(SCALAR_WINDOW_REF);
            put_index(out, *i);
        }
        Scalar::Const(d) => {
            out.push(SCALAR_CONST);
            put_datum(out, d);
        }
        Scalar::Param(i) => {
            out.push(SCALAR_PARAM);
            put_index(out, *i);
        }
        Scalar::Column(i) => {
            out.push(SCALAR_COLUMN);
            put_index(out, *i);
        }
        Scalar::AggRef(i) => {
            out.push(SCALAR_AGG_REF);
            put_index(out, *i);
        }
        Scalar::Binary(op, a, b, ty) => {
            out.push(SCALAR_BINARY);
            out.push(bin_op_tag(*op));
            put_scalar(out, a);
            put_scalar(out, b);
            put_type(out, *ty);
        }
        Scalar::Not(a) => {
            out.push(SCALAR_NOT);
            put_scalar(out, a);
        }
        Scalar::Neg(a) => {
            out.push(SCALAR_NEG);
            put_scalar(out, a);
        }
        Scalar::IsNull(a, negated) => {
            out.push(SCALAR_IS_NULL);
            put_scalar(out, a);
            put_bool(out, *negated);
        }
        Scalar::IsBool(a, value, negated) => {
            out.push(SCALAR_IS_BOOL);
            put_scalar(out, a);
            put_bool(out, *value);
            put_bool(out, *negated);
        }
        Scalar::IsDistinct(a, b, negated) => {
            out.push(SCALAR_IS_DISTINCT);
            put_scalar(out, a);
            put_scalar(out, b);
            put_bool(out, *negated);
        }
        Scalar::InList(a, list, negated) => {
            out.push(SCALAR_IN_LIST);
            put_scalar(out, a);
            put_len(out, list.len());
            for x in list {
                put_scalar(out, x);
            }
            put_bool(out, *negated);
        }
        Scalar::Between(a, low, high, negated) => {
            out.push(SCALAR_BETWEEN);
            put_scalar(out, a);
            put_scalar(out, low);
            put_scalar(out, high);
            put_bool(out, *negated);
        }
        Scalar::Like(a, pattern, negated, case_insensitive) => {
            out.push(SCALAR_LIKE);
            put_scalar(out, a);
            put_scalar(out, pattern);
            put_bool(out, *negated);
            put_bool(out, *case_insensitive);
        }
        Scalar::Case(operand, arms, otherwise) => {
            out.push(SCALAR_CASE);
            put_opt_scalar(out, operand.as_deref());
            put_len(out, arms.len());
            for (when, then) in arms {
                put_scalar(out, when);
                put_scalar(out, then);
            }
            put_opt_scalar(out, otherwise.as_deref());
        }
        Scalar::Cast(a, ty) => {
            out.push(SCALAR_CAST);
            put_scalar(out, a);
            put_type(out, *ty);
        }
        Scalar::Func(name, args, ty) => {
            out.push(SCALAR_FUNC);
            put_str(out, name);
            put_len(out, args.len());
            for x in args {
                put_scalar(out, x);
            }
            put_type(out, *ty);
        }
    }
}

fn put_opt_scalar(out: &mut Vec<u8>, s: Option<&Scalar>) {
    match s {
        None => put_bool(out, false),
        Some(s) => {
            put_bool(out, true);
            put_scalar(out, s);
        }
    }
}

/// Reads an expression written by [`put_scalar`]; `None` also for one nested deeper than
/// [`MAX_DEPTH`] levels.
pub fn get_scalar(r: &mut Reader) -> Option<Scalar> {
    get_scalar_at(r, 1)
}

/// Reads an expression whose root sits at nesting level `depth`.
///
/// The recursion runs through this dispatch and one small reader per shape of node, so
/// that each level's stack frames hold only that shape's temporaries: an unoptimized
/// build does not share stack slots between match arms, and one match over every variant
/// took about 2 KiB a level (1 MiB at [`MAX_DEPTH`]); split, a level takes from 0.5 KiB
/// (NOT) to 1.2 KiB (CASE), measured in a debug build.
fn get_scalar_at(r: &mut Reader, depth: usize) -> Option<Scalar> {
    if depth > MAX_DEPTH {
        return None;
    }
    let tag = r.u8()?;
    let depth = depth + 1;
    match tag {
        SCALAR_WINDOW_REF | SCALAR_CONST | SCALAR_PARAM | SCALAR_COLUMN | SCALAR_AGG_REF => {
            get_leaf(r, tag)
        }
        SCALAR_NOT | SCALAR_NEG | SCALAR_IS_NULL | SCALAR_IS_BOOL | SCALAR_CAST => {
            get_one_child(r, tag, depth)
        }
        SCALAR_BINARY | SCALAR_IS_DISTINCT | SCALAR_BETWEEN | SCALAR_LIKE => {
            get_children(r, tag, depth)
        }
        SCALAR_IN_LIST => get_in_list(r, depth),
        SCALAR_CASE => get_case(r, depth),
        SCALAR_FUNC => get_func(r, depth),
        _ => None,
    }
}

/// Reads a child expression at nesting level `depth`.
fn get_child(r: &mut Reader, depth: usize) -> Option<Box<Scalar>> {
    get_scalar_at(r, depth).map(Box::new)
}

/// The nodes without children.
fn get_leaf(r: &mut Reader, tag: u8) -> Option<Scalar> {
    Some(match tag {
        SCALAR_WINDOW_REF => Scalar::WindowRef(get_index(r)?),
        SCALAR_CONST => Scalar::Const(get_datum(r)?),
        SCALAR_PARAM => Scalar::Param(get_index(r)?),
        SCALAR_COLUMN => Scalar::Column(get_index(r)?),
        SCALAR_AGG_REF => Scalar::AggRef(get_index(r)?),
        _ => return None,
    })
}

/// The nodes with one child, at nesting level `depth`.
fn get_one_child(r: &mut Reader, tag: u8, depth: usize) -> Option<Scalar> {
    let a = get_child(r, depth)?;
    Some(match tag {
        SCALAR_NOT => Scalar::Not(a),
        SCALAR_NEG => Scalar::Neg(a),
        SCALAR_IS_NULL => Scalar::IsNull(a, get_bool(r)?),
        SCALAR_IS_BOOL => Scalar::IsBool(a, get_bool(r)?, get_bool(r)?),
        SCALAR_CAST => Scalar::Cast(a, get_type(r)?),
        _ => return None,
    })
}

/// The nodes with two or three children, at nesting level `depth`.
fn get_children(r: &mut Reader, tag: u8, depth: usize) -> Option<Scalar> {
    let op = if tag == SCALAR_BINARY {
        Some(*BIN_OPS.get(usize::from(r.u8()?))?)
    } else {
        None
    };
    let a = get_child(r, depth)?;
    let b = get_child(r, depth)?;
    Some(match (tag, op) {
        (SCALAR_BINARY, Some(op)) => Scalar::Binary(op, a, b, get_type(r)?),
        (SCALAR_IS_DISTINCT, _) => Scalar::IsDistinct(a, b, get_bool(r)?),
        (SCALAR_BETWEEN, _) => Scalar::Between(a, b, get_child(r, depth)?, get_bool(r)?),
        (SCALAR_LIKE, _) => Scalar::Like(a, b, get_bool(r)?, get_bool(r)?),
        _ => return None,
    })
}

/// Reads a u32 count and that many expressions at nesting level `depth`.
fn get_scalars(r: &mut Reader, depth: usize) -> Option<Vec<Scalar>> {
    let n = r.u32()? as usize;
    let mut v = Vec::with_capacity(n.min(MAX_PREALLOC));
    for _ in 0..n {
        v.push(get_scalar_at(r, depth)?);
    }
    Some(v)
}

/// Reads an optional child at nesting level `depth` (without [`get_opt`]'s closure frame).
fn get_opt_child(r: &mut Reader, depth: usize) -> Option<Option<Box<Scalar>>> {
    Some(if get_bool(r)? {
        Some(get_child(r, depth)?)
    } else {
        None
    })
}

fn get_in_list(r: &mut Reader, depth: usize) -> Option<Scalar> {
    let a = get_child(r, depth)?;
    Some(Scalar::InList(a, get_scalars(r, depth)?, get_bool(r)?))
}

fn get_case(r: &mut Reader, depth: usize) -> Option<Scalar> {
    let operand = get_opt_child(r, depth)?;
    let n = r.u32()? as usize;
    let mut arms = Vec::with_capacity(n.min(MAX_PREALLOC));
    for _ in 0..n {
        let when = get_scalar_at(r, depth)?;
        arms.push((when, get_scalar_at(r, depth)?));
    }
    Some(Scalar::Case(operand, arms, get_opt_child(r, depth)?))
}

fn get_func(r: &mut Reader, depth: usize) -> Option<Scalar> {
    let name = r.str()?;
    Some(Scalar::Func(name, get_scalars(r, depth)?, get_type(r)?))
}

/// Reads a presence byte and, when present, the value: `Some(None)` for an absent one,
/// `None` for malformed input.
fn get_opt<T>(r: &mut Reader, item: impl FnOnce(&mut Reader) -> Option<T>) -> Option<Option<T>> {
    if get_bool(r)? {
        item(r).map(Some)
    } else {
        Some(None)
    }
}

fn put_agg_func(out: &mut Vec<u8>, f: AggFunc) {
    match f {
        AggFunc::Count => out.push(AGG_COUNT),
        AggFunc::CountStar => out.push(AGG_COUNT_STAR),
        AggFunc::Sum => out.push(AGG_SUM),
        AggFunc::Min => out.push(AGG_MIN),
        AggFunc::Max => out.push(AGG_MAX),
        AggFunc::Avg => out.push(AGG_AVG),
        AggFunc::BoolAnd => out.push(AGG_BOOL_AND),
        AggFunc::BoolOr => out.push(AGG_BOOL_OR),
        AggFunc::ArrayAgg => out.push(AGG_ARRAY_AGG),
        AggFunc::StringAgg => out.push(AGG_STRING_AGG),
        AggFunc::JsonbAgg => out.push(AGG_JSONB_AGG),
        AggFunc::JsonbObjectAgg => out.push(AGG_JSONB_OBJECT_AGG),
        AggFunc::Variance { population, root } => {
            out.push(AGG_VARIANCE);
            put_bool(out, population);
            put_bool(out, root);
        }
    }
}

fn get_agg_func(r: &mut Reader) -> Option<AggFunc> {
    Some(match r.u8()? {
        AGG_COUNT => AggFunc::Count,
        AGG_COUNT_STAR => AggFunc::CountStar,
        AGG_SUM => AggFunc::Sum,
        AGG_MIN => AggFunc::Min,
        AGG_MAX => AggFunc::Max,
        AGG_AVG => AggFunc::Avg,
        AGG_BOOL_AND => AggFunc::BoolAnd,
        AGG_BOOL_OR => AggFunc::BoolOr,
        AGG_ARRAY_AGG => AggFunc::ArrayAgg,
        AGG_STRING_AGG => AggFunc::StringAgg,
        AGG_JSONB_AGG => AggFunc::JsonbAgg,
        AGG_JSONB_OBJECT_AGG => AggFunc::JsonbObjectAgg,
        AGG_VARIANCE => AggFunc::Variance {
            population: get_bool(r)?,
            root: get_bool(r)?,
        },
        _ => return None,
    })
}

/// Appends an aggregate call: function, argument, DISTINCT, result and argument types,
/// its own ORDER BY (key, descending, nulls first), FILTER and string_agg's delimiter.
pub fn put_agg_call(out: &mut Vec<u8>, c: &AggCall) {
    put_agg_func(out, c.func);
    put_opt_scalar(out, c.arg.as_ref());
    put_bool(out, c.distinct);
    put_type(out, c.ty);
    put_type(out, c.arg_ty);
    put_len(out, c.order.len());
    for (key, descending, nulls_first) in &c.order {
        put_scalar(out, key);
        put_bool(out, *descending);
        put_bool(out, *nulls_first);
    }
    put_opt_scalar(out, c.filter.as_ref());
    put_opt_scalar(out, c.delimiter.as_ref());
}

/// Reads an aggregate call written by [`put_agg_call`].
pub fn get_agg_call(r: &mut Reader) -> Option<AggCall> {
    let func = get_agg_func(r)?;
    let arg = get_opt(r, get_scalar)?;
    let distinct = get_bool(r)?;
    let ty = get_type(r)?;
    let arg_ty = get_type(r)?;
    let order = get_vec(r, |r| Some((get_scalar(r)?, get_bool(r)?, get_bool(r)?)))?;
    let filter = get_opt(r, get_scalar)?;
    let delimiter = get_opt(r, get_scalar)?;
    Some(AggCall {
        func,
        arg,
        distinct,
        ty,
        arg_ty,
        order,
        filter,
        delimiter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `bytes` with `get`, requiring every byte consumed.
    fn decode<T>(bytes: &[u8], get: impl FnOnce(&mut Reader) -> Option<T>) -> Option<T> {
        let mut r = Reader(bytes);
        let v = get(&mut r)?;
        assert!(r.0.is_empty(), "a decoder left {} bytes", r.0.len());
        Some(v)
    }

    /// Encodes `v`, decodes it, and checks that the decoded value prints as `v` does and
    /// re-encodes to the same bytes (which, the encoding writing every field in full,
    /// makes it bit-equal: floats by their bits, decimals by their serialization).
    /// Then checks that no proper prefix decodes. Returns the decoded value.
    fn round_trip<T: std::fmt::Debug>(
        v: &T,
        put: impl Fn(&mut Vec<u8>, &T),
        get: impl Fn(&mut Reader) -> Option<T>,
    ) -> T {
        let mut bytes = Vec::new();
        put(&mut bytes, v);
        let back = decode(&bytes, &get).expect("a valid encoding decodes");
        assert_eq!(format!("{back:?}"), format!("{v:?}"));
        let mut again = Vec::new();
        put(&mut again, &back);
        assert_eq!(again, bytes, "{v:?} re-encodes differently");
        for n in 0..bytes.len() {
            assert!(
                get(&mut Reader(&bytes[..n])).is_none(),
                "the {n}-byte prefix of {v:?} decoded"
            );
        }
        back
    }

    fn datum_round_trip(d: &Datum) -> Datum {
        round_trip(d, put_datum, get_datum)
    }

    fn every_datum() -> Vec<Datum> {
        let dec = |s: &str| Datum::Numeric(s.parse().unwrap());
        let mut ds = vec![
            Datum::Null,
            Datum::Bool(false),
            Datum::Bool(true),
            Datum::Text(String::new()),
            Datum::Text("héllo, \u{1F980}\0".into()),
            Datum::Bytes(vec![]),
            Datum::Bytes(vec![0, 0xFF, 7]),
            dec("0"),
            dec("1.00"),
            dec("-0.0000000000000000000000000001"),
            dec("79228162514264337593543950335"),
            dec("-79228162514264337593543950335"),
            Datum::Numeric(Decimal::from_parts(0, 0, 0, true, 3)),
            Datum::Uuid([0; 16]),
            Datum::Uuid(*b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff"),
            Datum::NumericSpecial(NumericSpecial::NegInfinity),
            Datum::NumericSpecial(NumericSpecial::Infinity),
            Datum::NumericSpecial(NumericSpecial::NaN),
            Datum::Interval(Interval::default()),
            Datum::Interval(Interval {
                months: i32::MIN,
                days: i32::MAX,
                micros: i64::MIN,
            }),
            Datum::Interval(Interval {
                months: -1,
                days: 1,
                micros: -1,
            }),
            Datum::Time(0),
            Datum::Time(86_400_000_000),
        ];
        for i in [0, 1, -1, i64::MIN, i64::MAX] {
            ds.push(Datum::Int(i));
            ds.push(Datum::Timestamp(i));
            ds.push(Datum::TimestampTz(i));
        }
        for d in [0, -1, i32::MIN, i32::MAX] {
            ds.push(Datum::Date(d));
        }
        for f in [
            0.0,
            -0.0,
            1.5,
            f64::MIN_POSITIVE,
            f64::from_bits(1), // the smallest subnormal
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7FF0_0000_0000_0001), // a signalling NaN
            f64::from_bits(0xFFF8_DEAD_BEEF_0001), // a negative NaN with a payload
        ] {
            ds.push(Datum::Float(f));
        }
        ds
    }

    #[test]
    fn every_datum_round_trips_bit_for_bit() {
        for d in every_datum() {
            let back = datum_round_trip(&d);
            match (&d, &back) {
                (Datum::Float(a), Datum::Float(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                (Datum::Numeric(a), Datum::Numeric(b)) => {
                    assert_eq!(a.serialize(), b.serialize());
                    assert_eq!(a.scale(), b.scale());
                    assert_eq!(a.is_sign_negative(), b.is_sign_negative());
                }
                _ => {}
            }
        }
    }

    #[test]
    fn rows_round_trip() {
        round_trip(&every_datum(), |o, r| put_row(o, r), get_row);
        round_trip(&Vec::new(), |o, r| put_row(o, r), get_row);
    }

    /// Every SqlType; the match makes a new variant a compile error here until listed.
    fn every_type() -> Vec<SqlType> {
        use SqlType::*;
        let all = vec![
            Int2,
            Int4,
            Int8,
            Float4,
            Float8,
            Bool,
            Text,
            Varchar,
            Bytea,
            Numeric,
            Date,
            Timestamp,
            TimestampTz,
            Uuid,
            Unknown,
            BoolArray,
            Int2Array,
            Int4Array,
            Int8Array,
            Float8Array,
            NumericArray,
            TextArray,
            Int2Vector,
            OidVector,
            Interval,
            Jsonb,
            Time,
            Float4Array,
            DateArray,
            TimestampArray,
            TimestampTzArray,
            TimeArray,
            IntervalArray,
            UuidArray,
            Record,
            RecordArray,
            VarcharArray,
            ByteaArray,
        ];
        for t in &all {
            match t {
                Int2 | Int4 | Int8 | Float4 | Float8 | Bool | Text | Varchar | Bytea | Numeric
                | Date | Timestamp | TimestampTz | Uuid | Unknown | BoolArray | Int2Array
                | Int4Array | Int8Array | Float8Array | NumericArray | TextArray | Int2Vector
                | OidVector | Interval | Jsonb | Time | Float4Array | DateArray
                | TimestampArray | TimestampTzArray | TimeArray | IntervalArray | UuidArray
                | Record | RecordArray | VarcharArray | ByteaArray => {}
            }
        }
        all
    }

    #[test]
    fn every_type_round_trips() {
        let mut tags = std::collections::HashSet::new();
        for t in every_type() {
            let mut b = Vec::new();
            put_type(&mut b, t);
            assert_eq!(decode(&b, get_type), Some(t));
            assert!(tags.insert(b[0]), "{t:?} shares its tag");
        }
        assert_eq!(tags.len(), 38);
        // Every other tag is refused.
        for tag in 0..=u8::MAX {
            assert_eq!(decode(&[tag], get_type).is_some(), tags.contains(&tag));
        }
    }

    #[test]
    fn non_canonical_input_is_refused() {
        // A boolean other than 0 or 1.
        assert!(decode(&[DATUM_BOOL, 2], get_datum).is_none());
        // A NUMERIC with a scale above 28, or a stray flag bit.
        let mut n = vec![DATUM_NUMERIC];
        n.extend_from_slice(&[0, 0, 29, 0]);
        n.extend_from_slice(&[1; 12]);
        assert!(decode(&n, get_datum).is_none());
        n[1] = 1;
        n[3] = 0;
        assert!(decode(&n, get_datum).is_none());
        // Text that is not UTF-8; an unknown NumericSpecial, Datum, BinOp or AggFunc tag.
        assert!(decode(&[DATUM_TEXT, 1, 0, 0, 0, 0xFF], get_datum).is_none());
        assert!(decode(&[DATUM_NUMERIC_SPECIAL, 3], get_datum).is_none());
        assert!(decode(&[DATUM_TIME + 1], get_datum).is_none());
        assert!(decode(&[SCALAR_BINARY, 14], get_scalar).is_none());
        assert!(decode(&[AGG_VARIANCE + 1], get_agg_call).is_none());
    }

    fn col(i: usize) -> Box<Scalar> {
        Box::new(Scalar::Column(i))
    }

    fn text(s: &str) -> Box<Scalar> {
        Box::new(Scalar::Const(Datum::Text(s.into())))
    }

    /// An expression using every Scalar variant, every BinOp, and each flag both ways.
    fn every_scalar() -> Scalar {
        let mut parts: Vec<Scalar> = BIN_OPS
            .iter()
            .map(|&op| Scalar::Binary(op, col(0), Box::new(Scalar::Param(1)), SqlType::Int8))
            .collect();
        for b in [false, true] {
            parts.push(Scalar::IsNull(col(1), b));
            parts.push(Scalar::IsDistinct(col(1), col(2), b));
            parts.push(Scalar::InList(col(3), vec![*col(4), *text("x")], b));
            parts.push(Scalar::Between(col(5), col(6), col(7), b));
            for c in [false, true] {
                parts.push(Scalar::IsBool(col(2), b, c));
                parts.push(Scalar::Like(text("abc"), text("a%"), b, c));
            }
        }
        parts.extend([
            Scalar::WindowRef(0),
            Scalar::AggRef(usize::MAX),
            Scalar::InList(col(3), vec![], false),
            Scalar::Not(Box::new(Scalar::Neg(col(8)))),
            Scalar::Case(None, vec![(*col(0), *text("a"))], None),
            Scalar::Case(
                Some(col(0)),
                vec![(*text("x"), *col(1)), (*text("y"), *col(2))],
                Some(text("z")),
            ),
            Scalar::Case(Some(col(0)), vec![], None),
            Scalar::Case(None, vec![(*col(0), *col(1))], Some(col(2))),
            Scalar::Cast(text("{1,2}"), SqlType::Int4Array),
            Scalar::Cast(text("{}"), SqlType::IntervalArray),
            Scalar::Cast(text("1 day"), SqlType::Interval),
            Scalar::Func("now".into(), vec![], SqlType::TimestampTz),
        ]);
        parts.extend(every_datum().into_iter().map(Scalar::Const));
        parts.extend(every_type().into_iter().map(|t| Scalar::Cast(col(9), t)));
        Scalar::Func("coalesce".into(), parts, SqlType::Unknown)
    }

    fn scalar_round_trip(s: &Scalar) -> Scalar {
        round_trip(s, put_scalar, get_scalar)
    }

    #[test]
    fn an_expression_with_every_variant_round_trips() {
        let s = every_scalar();
        let mut variants = std::collections::HashSet::new();
        s.walk(&mut |x| {
            variants.insert(std::mem::discriminant(x));
        });
        // Scalar has 17 variants; the walk must have seen them all.
        assert_eq!(variants.len(), 17);
        scalar_round_trip(&s);
    }

    #[test]
    fn every_aggregate_call_round_trips() {
        let mut funcs = vec![
            AggFunc::Count,
            AggFunc::CountStar,
            AggFunc::Sum,
            AggFunc::Min,
            AggFunc::Max,
            AggFunc::Avg,
            AggFunc::BoolAnd,
            AggFunc::BoolOr,
            AggFunc::ArrayAgg,
            AggFunc::StringAgg,
            AggFunc::JsonbAgg,
            AggFunc::JsonbObjectAgg,
        ];
        for population in [false, true] {
            for root in [false, true] {
                funcs.push(AggFunc::Variance { population, root });
            }
        }
        for (i, func) in funcs.into_iter().enumerate() {
            let bare = AggCall {
                func,
                arg: None,
                distinct: false,
                ty: SqlType::Int8,
                arg_ty: SqlType::Unknown,
                order: vec![],
                filter: None,
                delimiter: None,
            };
            let back = round_trip(&bare, put_agg_call, get_agg_call);
            assert_eq!(back.func, func);
            let full = AggCall {
                func,
                arg: Some(*col(i)),
                distinct: true,
                ty: SqlType::TextArray,
                arg_ty: SqlType::Numeric,
                order: vec![(*col(1), true, false), (*col(2), false, true)],
                filter: Some(Scalar::IsBool(col(3), true, false)),
                delimiter: Some(*text(", ")),
            };
            let back = round_trip(&full, put_agg_call, get_agg_call);
            assert_eq!(back.func, func);
        }
    }

    #[test]
    fn nesting_is_limited_to_max_depth_without_overflowing_the_stack() {
        // MAX_DEPTH levels decode: MAX_DEPTH - 1 NOTs around a column.
        let mut bytes = vec![SCALAR_NOT; MAX_DEPTH - 1];
        put_scalar(&mut bytes, &Scalar::Column(0));
        let s = decode(&bytes, get_scalar).expect("MAX_DEPTH levels decode");
        let mut again = Vec::new();
        put_scalar(&mut again, &s);
        assert_eq!(again, bytes);
        // One more level does not.
        let mut deeper = vec![SCALAR_NOT];
        deeper.extend_from_slice(&bytes);
        assert!(get_scalar(&mut Reader(&deeper)).is_none());
        // Nor does a forged chain of 100 000 NOTs, through every recursive position.
        assert!(get_scalar(&mut Reader(&[SCALAR_NOT; 100_000])).is_none());
        for prefix in [
            &[SCALAR_BINARY, 0][..],
            &[
                SCALAR_IN_LIST,
                SCALAR_COLUMN,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                1,
                0,
                0,
                0,
            ],
            &[SCALAR_CASE, 0, 1, 0, 0, 0],
            &[SCALAR_FUNC, 0, 0, 0, 0, 1, 0, 0, 0],
        ] {
            let mut forged = Vec::new();
            for _ in 0..20_000 {
                forged.extend_from_slice(prefix);
            }
            assert!(get_scalar(&mut Reader(&forged)).is_none());
        }
        // An aggregate's expressions are limited as well.
        let mut forged = vec![AGG_COUNT, 1];
        forged.extend_from_slice(&[SCALAR_NEG; 100_000]);
        assert!(get_agg_call(&mut Reader(&forged)).is_none());
    }

    #[test]
    fn a_forged_count_does_not_preallocate() {
        // u32::MAX row values, or list items, announced and none sent: a quick None.
        assert!(decode(&[0xFF; 4], get_row).is_none());
        let mut b = vec![SCALAR_FUNC, 0, 0, 0, 0];
        b.extend_from_slice(&[0xFF; 4]);
        assert!(get_scalar(&mut Reader(&b)).is_none());
    }

    /// Random bytes, and valid encodings with random bytes flipped, never panic.
    #[test]
    fn random_input_never_panics() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut valid = Vec::new();
        put_scalar(&mut valid, &every_scalar());
        let decoders: [fn(&mut Reader) -> bool; 5] = [
            |r| get_datum(r).is_some(),
            |r| get_type(r).is_some(),
            |r| get_scalar(r).is_some(),
            |r| get_agg_call(r).is_some(),
            |r| get_row(r).is_some(),
        ];
        for _ in 0..4000 {
            let len = (next() % 64) as usize;
            // Small tags, so that the inputs reach past the first byte.
            let bytes: Vec<u8> = (0..len).map(|_| (next() % 20) as u8).collect();
            for get in decoders {
                get(&mut Reader(&bytes));
            }
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            for get in decoders {
                get(&mut Reader(&bytes));
            }
            let mut mutated = valid.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % mutated.len() as u64) as usize;
                mutated[i] = next() as u8;
            }
            for get in decoders {
                get(&mut Reader(&mutated));
            }
        }
    }
}
