//! The whole key space, in one file.
//!
//! ```text
//! 0x01 <name>                          system: node-wide metadata (descriptor ids, versions)
//! 0x02 <db id u32>                     system: database descriptors
//! 0x03 <table id u32>                  system: table descriptors
//! 0x04 <schema id u32>                 system: schema descriptors (`CREATE SCHEMA`)
//! 0x05 <function id u32>               system: function descriptors (`CREATE FUNCTION`)
//! 0x10 <table u32> <index u32> <key>   table data: /Table/<table>/<index>/<key columns…>
//! ```
//!
//! Everything below 0x10 is the *system span*, one range on core 0. Table data uses an
//! order-preserving encoding of SQL datums ([`encode_key_datum`]), ascending; row values use
//! a compact value encoding ([`encode_row`]).
//!
//! Range addressing: a table starts as one range (all its indexes) on the core chosen from
//! its id ([`range_for_key`], [`core_for_range`]); `ALTER TABLE … SPLIT AT` splits it into
//! ranges on other cores, recorded as range descriptors under `0x01 "range/"` in the
//! system span ([`range_desc_key`], [`super::ranges`]).

use rust_decimal::Decimal;

use crate::error::{Error, Result};
use crate::sql::types::{Datum, NumericSpecial};
use chitin_storage::RangeId;

pub const SYSTEM_META: u8 = 0x01;
pub const SYSTEM_DATABASE: u8 = 0x02;
pub const SYSTEM_TABLE: u8 = 0x03;
pub const SYSTEM_SCHEMA: u8 = 0x04;
pub const SYSTEM_FUNCTION: u8 = 0x05;
pub const TABLE_DATA: u8 = 0x10;

/// The range that holds all system keys.
pub const SYSTEM_RANGE: RangeId = RangeId(1);

pub fn meta_key(name: &str) -> Vec<u8> {
    let mut k = vec![SYSTEM_META];
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn schema_key(id: u32) -> Vec<u8> {
    let mut k = vec![SYSTEM_SCHEMA];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub fn function_key(id: u32) -> Vec<u8> {
    let mut k = vec![SYSTEM_FUNCTION];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub fn database_key(id: u32) -> Vec<u8> {
    let mut k = vec![SYSTEM_DATABASE];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub fn table_desc_key(id: u32) -> Vec<u8> {
    let mut k = vec![SYSTEM_TABLE];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The decision record of a two-phase commit: present (holding the commit timestamp) from
/// the commit decision until every range resolved its part.
pub fn txn_record_key(txn: u64) -> Vec<u8> {
    let mut k = meta_key("txn/");
    k.extend_from_slice(&txn.to_be_bytes());
    k
}

/// The state a transaction record holds (the value at [`txn_record_key`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnRecord {
    /// Committed at this timestamp (12 bytes: the format two-phase commit always wrote).
    Committed(chitin_storage::Timestamp),
    /// Aborted (written by a resolver that found the transaction's writes orphaned, or by
    /// a coordinator that failed to commit).
    Aborted,
    /// A parallel commit in flight at `ts`: committed as soon as every participant holds a
    /// durable prepare at or below `ts`; a recoverer decides it by asking each of them.
    Staging {
        ts: chitin_storage::Timestamp,
        participants: Vec<chitin_storage::RangeId>,
    },
}

const ABORTED_RECORD: &[u8] = b"aborted";

impl TxnRecord {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            TxnRecord::Committed(ts) => encode_commit_ts(*ts),
            TxnRecord::Aborted => ABORTED_RECORD.to_vec(),
            TxnRecord::Staging { ts, participants } => {
                let mut v = Vec::with_capacity(13 + 8 * participants.len());
                v.push(b'S');
                v.extend_from_slice(&encode_commit_ts(*ts));
                for r in participants {
                    v.extend_from_slice(&r.0.to_be_bytes());
                }
                v
            }
        }
    }

    /// `None` for bytes no version ever wrote.
    pub fn decode(v: &[u8]) -> Option<TxnRecord> {
        if v == ABORTED_RECORD {
            return Some(TxnRecord::Aborted);
        }
        if let Some(ts) = decode_commit_ts(v) {
            return Some(TxnRecord::Committed(ts));
        }
        let rest = v.strip_prefix(b"S")?;
        if rest.len() < 12 || (rest.len() - 12) % 8 != 0 {
            return None;
        }
        let ts = decode_commit_ts(&rest[..12])?;
        let participants = rest[12..]
            .chunks_exact(8)
            .map(|c| chitin_storage::RangeId(u64::from_be_bytes(c.try_into().unwrap())))
            .collect();
        Some(TxnRecord::Staging { ts, participants })
    }
}

pub fn encode_commit_ts(ts: chitin_storage::Timestamp) -> Vec<u8> {
    let mut v = ts.wall.to_be_bytes().to_vec();
    v.extend_from_slice(&ts.logical.to_be_bytes());
    v
}

pub fn decode_commit_ts(v: &[u8]) -> Option<chitin_storage::Timestamp> {
    if v.len() != 12 {
        return None;
    }
    Some(chitin_storage::Timestamp::new(
        u64::from_be_bytes(v[..8].try_into().ok()?),
        u32::from_be_bytes(v[8..].try_into().ok()?),
    ))
}

/// `[prefix, prefix_end)` of all keys starting with `prefix` byte.
pub fn system_span(prefix: u8) -> (Vec<u8>, Vec<u8>) {
    (vec![prefix], vec![prefix + 1])
}

/// The key prefix of an index: `/Table/<table>/<index>/`.
pub fn index_prefix(table: u32, index: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + 16);
    k.push(TABLE_DATA);
    k.extend_from_slice(&table.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// The first key after every key with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0xff; 16]
}

/// The first range of a table: until the table is split, it holds all of the table's
/// indexes. Range ids are `table << 16 | n`, `n` counting the table's ranges in the order
/// splits created them; ids below 2^16 are reserved for system ranges.
pub fn table_range_id(table: u32) -> RangeId {
    RangeId((table as u64) << 16)
}

/// The id of the `n`th range split off `table` (`n >= 1`).
pub fn split_range_id(table: u32, n: u16) -> RangeId {
    RangeId(((table as u64) << 16) | n as u64)
}

/// The table a range id belongs to (`None` for system ranges).
pub fn range_table(range: RangeId) -> Option<u32> {
    (range.0 >> 16 != 0).then_some((range.0 >> 16) as u32)
}

/// `[start, end)` of all keys of `table`.
pub fn table_span(table: u32) -> (Vec<u8>, Vec<u8>) {
    let mut start = Vec::with_capacity(5);
    start.push(TABLE_DATA);
    start.extend_from_slice(&table.to_be_bytes());
    let end = prefix_end(&start);
    (start, end)
}

/// The span of the system range: every key below the table data.
pub fn system_range_span() -> (Vec<u8>, Vec<u8>) {
    (Vec::new(), vec![TABLE_DATA])
}

/// The span a range has before any split moved part of it away: the whole table for a
/// table's first range, the system span for the system range, nothing for split-off
/// ranges (their span comes from their descriptor).
pub fn initial_span(range: RangeId) -> Option<(Vec<u8>, Vec<u8>)> {
    if range == SYSTEM_RANGE {
        return Some(system_range_span());
    }
    match range_table(range) {
        Some(t) if range.0 & 0xffff == 0 => Some(table_span(t)),
        _ => None,
    }
}

/// The range holding `key` when its table was never split (the descriptors in
/// [`super::ranges`] override this).
pub fn range_for_key(key: &[u8]) -> RangeId {
    if key.len() >= 5 && key[0] == TABLE_DATA {
        let table = u32::from_be_bytes(key[1..5].try_into().unwrap());
        table_range_id(table)
    } else {
        SYSTEM_RANGE
    }
}

/// The core that owns `range` on a node with `cores` cores: a table's first range on
/// `table % cores`, each range split off it on the next core round.
pub fn core_for_range(range: RangeId, cores: usize) -> usize {
    if range == SYSTEM_RANGE || cores <= 1 {
        return 0;
    }
    let table = range.0 >> 16;
    let n = range.0 & 0xffff;
    ((table + n) % cores as u64) as usize
}

/// The key of the descriptor of the range that starts at `start` (system span).
pub fn range_desc_key(start: &[u8]) -> Vec<u8> {
    let mut k = meta_key(RANGE_DESC_PREFIX);
    k.extend_from_slice(start);
    k
}

/// Descriptor keys are `meta_key(RANGE_DESC_PREFIX) + start key`.
pub const RANGE_DESC_PREFIX: &str = "range/";

// --- Order-preserving key encoding of datums (ascending). ---

const KEY_NULL: u8 = 0x00;
const KEY_FALSE: u8 = 0x02;
const KEY_TRUE: u8 = 0x03;
const KEY_INT: u8 = 0x10;
const KEY_FLOAT: u8 = 0x11;
const KEY_NUMERIC: u8 = 0x12;
const KEY_BYTES: u8 = 0x13;
const KEY_DATE: u8 = 0x14;
const KEY_TIME: u8 = 0x15;
const KEY_UUID: u8 = 0x16;
/// An interval by its normalized span only (months as 30 days, days as 24 hours), so
/// `'1 mon'` and `'30 days'` are the same key, as they are equal in PostgreSQL.
const KEY_INTERVAL: u8 = 0x17;
/// A time of day (`time`): microseconds after midnight, never negative.
const KEY_TIME_OF_DAY: u8 = 0x18;

/// Appends the order-preserving encoding of `d` to `out`. NULL sorts first.
pub fn encode_key_datum(d: &Datum, out: &mut Vec<u8>) {
    match d {
        Datum::Null => out.push(KEY_NULL),
        Datum::Bool(b) => out.push(if *b { KEY_TRUE } else { KEY_FALSE }),
        Datum::Int(i) => {
            out.push(KEY_INT);
            out.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes());
        }
        Datum::Float(f) => {
            out.push(KEY_FLOAT);
            out.extend_from_slice(&float_key(*f).to_be_bytes());
        }
        Datum::Numeric(n) => {
            // Order by the float approximation, then by exact text to keep keys distinct.
            out.push(KEY_NUMERIC);
            let f: f64 = n.to_string().parse().unwrap_or(0.0);
            out.extend_from_slice(&float_key(f).to_be_bytes());
            escape_bytes(n.normalize().to_string().as_bytes(), out);
        }
        Datum::NumericSpecial(x) => {
            // The same layout as a finite numeric: the float images of -Infinity, Infinity
            // and NaN sort below, above and above every finite value's, so the column's order
            // is PostgreSQL's (-Infinity < finite < Infinity < NaN). The text ("NaN",
            // "Infinity", "-Infinity") never parses as a finite decimal.
            out.push(KEY_NUMERIC);
            out.extend_from_slice(&float_key(x.to_f64()).to_be_bytes());
            escape_bytes(x.name().as_bytes(), out);
        }
        Datum::Text(s) => {
            out.push(KEY_BYTES);
            escape_bytes(s.as_bytes(), out);
        }
        Datum::Bytes(b) => {
            out.push(KEY_BYTES);
            escape_bytes(b, out);
        }
        Datum::Date(d) => {
            out.push(KEY_DATE);
            out.extend_from_slice(&((*d as u32) ^ (1 << 31)).to_be_bytes());
        }
        Datum::Timestamp(t) | Datum::TimestampTz(t) => {
            out.push(KEY_TIME);
            out.extend_from_slice(&((*t as u64) ^ (1 << 63)).to_be_bytes());
        }
        Datum::Uuid(u) => {
            out.push(KEY_UUID);
            out.extend_from_slice(u);
        }
        Datum::Interval(iv) => {
            out.push(KEY_INTERVAL);
            out.extend_from_slice(&((iv.span() as u128) ^ (1 << 127)).to_be_bytes());
        }
        Datum::Time(t) => {
            out.push(KEY_TIME_OF_DAY);
            out.extend_from_slice(&((*t as u64) ^ (1 << 63)).to_be_bytes());
        }
    }
}

fn float_key(f: f64) -> u64 {
    let f = if f.is_nan() {
        f64::NAN
    } else if f == 0.0 {
        0.0
    } else {
        f
    };
    let bits = f.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits ^ (1 << 63)
    }
}

fn escape_bytes(b: &[u8], out: &mut Vec<u8>) {
    for &c in b {
        if c == 0 {
            out.extend_from_slice(&[0x00, 0xff]);
        } else {
            out.push(c);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// Decodes the datums of a key suffix written by [`encode_key_datum`]; stops at the first
/// byte that does not start a datum and returns the undecoded rest. Text and bytes both
/// come back as text when they are UTF-8.
pub fn decode_key_datums(mut b: &[u8]) -> (Vec<Datum>, &[u8]) {
    fn fixed<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
        b.get(1..1 + N)?.try_into().ok()
    }
    fn unescape(b: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            match (b.get(i)?, b.get(i + 1)) {
                (0, Some(0xff)) => out.push(0),
                (0, Some(0x01)) => return Some((out, i + 2)),
                (0, _) => return None,
                (c, _) => {
                    out.push(*c);
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
    }
    let mut out = Vec::new();
    while let Some(&tag) = b.first() {
        let decoded: Option<(Datum, usize)> =
            match tag {
                KEY_NULL => Some((Datum::Null, 1)),
                KEY_FALSE => Some((Datum::Bool(false), 1)),
                KEY_TRUE => Some((Datum::Bool(true), 1)),
                KEY_INT => fixed::<8>(b)
                    .map(|x| (Datum::Int((u64::from_be_bytes(x) ^ (1 << 63)) as i64), 9)),
                KEY_FLOAT => fixed::<8>(b).map(|x| {
                    let k = u64::from_be_bytes(x);
                    let bits = if k >> 63 == 1 { k ^ (1 << 63) } else { !k };
                    (Datum::Float(f64::from_bits(bits)), 9)
                }),
                KEY_NUMERIC => unescape(&b[9.min(b.len())..]).and_then(|(text, n)| {
                    let text = std::str::from_utf8(&text).ok()?;
                    let d = match NumericSpecial::parse(text) {
                        Some(x) => Datum::NumericSpecial(x),
                        None => Datum::Numeric(text.parse().ok()?),
                    };
                    Some((d, 9 + n))
                }),
                KEY_BYTES => unescape(&b[1..]).map(|(v, n)| {
                    let d = match String::from_utf8(v) {
                        Ok(s) => Datum::Text(s),
                        Err(e) => Datum::Bytes(e.into_bytes()),
                    };
                    (d, 1 + n)
                }),
                KEY_DATE => fixed::<4>(b)
                    .map(|x| (Datum::Date((u32::from_be_bytes(x) ^ (1 << 31)) as i32), 5)),
                KEY_TIME => fixed::<8>(b).map(|x| {
                    (
                        Datum::Timestamp((u64::from_be_bytes(x) ^ (1 << 63)) as i64),
                        9,
                    )
                }),
                KEY_UUID => fixed::<16>(b).map(|x| (Datum::Uuid(x), 17)),
                KEY_INTERVAL => fixed::<16>(b).map(|x| {
                    // Only the span is stored: it comes back as days and time.
                    let span = (u128::from_be_bytes(x) ^ (1 << 127)) as i128;
                    let day = crate::sql::types::MICROS_PER_DAY as i128;
                    let iv = crate::sql::interval::Interval::new(
                        0,
                        (span / day) as i32,
                        (span % day) as i64,
                    );
                    (Datum::Interval(iv), 17)
                }),
                KEY_TIME_OF_DAY => fixed::<8>(b)
                    .map(|x| (Datum::Time((u64::from_be_bytes(x) ^ (1 << 63)) as i64), 9)),
                _ => None,
            };
        match decoded {
            Some((d, n)) => {
                out.push(d);
                b = &b[n..];
            }
            None => break,
        }
    }
    (out, b)
}

/// A readable rendering of a table data key after its table: `/<index>/<datum>/…`.
pub fn pretty_key_suffix(key: &[u8]) -> String {
    use std::fmt::Write;
    if key.len() < 9 || key[0] != TABLE_DATA {
        return format!("{key:02x?}");
    }
    let index = u32::from_be_bytes(key[5..9].try_into().unwrap());
    let mut s = format!("/{index}");
    let (datums, rest) = decode_key_datums(&key[9..]);
    for d in datums {
        let ty = d.natural_type();
        match (&d, d.to_text(ty)) {
            (Datum::Null, _) | (_, None) => s.push_str("/NULL"),
            (Datum::Text(_), Some(t)) => {
                let _ = write!(s, "/{t:?}");
            }
            (_, Some(t)) => {
                let _ = write!(s, "/{t}");
            }
        }
    }
    for b in rest {
        let _ = write!(s, "\\x{b:02x}");
    }
    s
}

/// Encodes a tuple of datums as a key suffix.
pub fn encode_key_datums(ds: &[Datum], out: &mut Vec<u8>) {
    for d in ds {
        encode_key_datum(d, out);
    }
}

// --- Value encoding of rows: per column, a tag byte then the payload. ---

const V_NULL: u8 = 0;
const V_INT: u8 = 1;
const V_FLOAT: u8 = 2;
const V_FALSE: u8 = 3;
const V_TRUE: u8 = 4;
const V_TEXT: u8 = 5;
const V_BYTES: u8 = 6;
const V_NUMERIC: u8 = 7;
const V_DATE: u8 = 8;
const V_TS: u8 = 9;
const V_TSTZ: u8 = 10;
const V_UUID: u8 = 11;
const V_INTERVAL: u8 = 12;
/// A NaN or infinite numeric: one more byte, [`V_NUMERIC_NAN`] & co. (appended).
const V_NUMERIC_SPECIAL: u8 = 13;
const V_TIME: u8 = 14;
const V_NUMERIC_NAN: u8 = 0;
const V_NUMERIC_INFINITY: u8 = 1;
const V_NUMERIC_NEG_INFINITY: u8 = 2;

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let c = *b.get(*pos).ok_or_else(corrupt)?;
        *pos += 1;
        v |= ((c & 0x7f) as u64) << shift;
        if c & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 63 {
            return Err(corrupt());
        }
    }
}

fn corrupt() -> Error {
    Error::internal("corrupt row encoding")
}

/// Appends the value encoding of one datum.
pub fn encode_value_datum(d: &Datum, out: &mut Vec<u8>) {
    match d {
        Datum::Null => out.push(V_NULL),
        Datum::Int(i) => {
            out.push(V_INT);
            put_varint(((*i << 1) ^ (*i >> 63)) as u64, out);
        }
        Datum::Float(f) => {
            out.push(V_FLOAT);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Datum::Bool(b) => out.push(if *b { V_TRUE } else { V_FALSE }),
        Datum::Text(s) => {
            out.push(V_TEXT);
            put_varint(s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        Datum::Bytes(b) => {
            out.push(V_BYTES);
            put_varint(b.len() as u64, out);
            out.extend_from_slice(b);
        }
        Datum::Numeric(n) => {
            out.push(V_NUMERIC);
            out.extend_from_slice(&n.serialize());
        }
        Datum::NumericSpecial(x) => {
            out.push(V_NUMERIC_SPECIAL);
            out.push(match x {
                NumericSpecial::NaN => V_NUMERIC_NAN,
                NumericSpecial::Infinity => V_NUMERIC_INFINITY,
                NumericSpecial::NegInfinity => V_NUMERIC_NEG_INFINITY,
            });
        }
        Datum::Date(d) => {
            out.push(V_DATE);
            out.extend_from_slice(&d.to_le_bytes());
        }
        Datum::Timestamp(t) => {
            out.push(V_TS);
            out.extend_from_slice(&t.to_le_bytes());
        }
        Datum::TimestampTz(t) => {
            out.push(V_TSTZ);
            out.extend_from_slice(&t.to_le_bytes());
        }
        Datum::Uuid(u) => {
            out.push(V_UUID);
            out.extend_from_slice(u);
        }
        Datum::Interval(iv) => {
            out.push(V_INTERVAL);
            out.extend_from_slice(&iv.months.to_le_bytes());
            out.extend_from_slice(&iv.days.to_le_bytes());
            out.extend_from_slice(&iv.micros.to_le_bytes());
        }
        Datum::Time(t) => {
            out.push(V_TIME);
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
}

/// Encodes a whole row.
pub fn encode_row(row: &[Datum]) -> Vec<u8> {
    let mut out = Vec::with_capacity(row.len() * 9);
    put_varint(row.len() as u64, &mut out);
    for d in row {
        encode_value_datum(d, &mut out);
    }
    out
}

fn take<'a>(b: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8]> {
    let s = b.get(*pos..*pos + n).ok_or_else(corrupt)?;
    *pos += n;
    Ok(s)
}

/// One stored column value, borrowed from the row bytes where it is variable-length.
/// PERF: decoding a value this way allocates nothing; [`DatumRef::into_owned`] copies.
pub enum DatumRef<'a> {
    /// A fixed-size value (never `Text` or `Bytes`).
    Fixed(Datum),
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl<'a> DatumRef<'a> {
    /// A view of an owned value (text and bytes borrowed, the rest copied).
    pub fn borrowed(d: &'a Datum) -> DatumRef<'a> {
        match d {
            Datum::Text(s) => DatumRef::Text(s),
            Datum::Bytes(b) => DatumRef::Bytes(b),
            other => DatumRef::Fixed(other.clone()),
        }
    }

    pub fn into_owned(self) -> Datum {
        match self {
            DatumRef::Fixed(d) => d,
            DatumRef::Text(s) => Datum::Text(s.to_string()),
            DatumRef::Bytes(b) => Datum::Bytes(b.to_vec()),
        }
    }
}

/// Decodes the value that starts at `*pos` and moves `pos` past it.
pub fn decode_value<'a>(b: &'a [u8], pos: &mut usize) -> Result<DatumRef<'a>> {
    let tag = *b.get(*pos).ok_or_else(corrupt)?;
    *pos += 1;
    let fixed = match tag {
        V_NULL => Datum::Null,
        V_INT => {
            let z = get_varint(b, pos)?;
            Datum::Int(((z >> 1) as i64) ^ -((z & 1) as i64))
        }
        V_FLOAT => Datum::Float(f64::from_le_bytes(take(b, pos, 8)?.try_into().unwrap())),
        V_FALSE => Datum::Bool(false),
        V_TRUE => Datum::Bool(true),
        V_TEXT => {
            let len = get_varint(b, pos)? as usize;
            let s = take(b, pos, len)?;
            return Ok(DatumRef::Text(
                std::str::from_utf8(s).map_err(|_| corrupt())?,
            ));
        }
        V_BYTES => {
            let len = get_varint(b, pos)? as usize;
            return Ok(DatumRef::Bytes(take(b, pos, len)?));
        }
        V_NUMERIC => {
            let raw: [u8; 16] = take(b, pos, 16)?.try_into().unwrap();
            Datum::Numeric(Decimal::deserialize(raw))
        }
        V_NUMERIC_SPECIAL => Datum::NumericSpecial(match take(b, pos, 1)?[0] {
            V_NUMERIC_NAN => NumericSpecial::NaN,
            V_NUMERIC_INFINITY => NumericSpecial::Infinity,
            V_NUMERIC_NEG_INFINITY => NumericSpecial::NegInfinity,
            _ => return Err(corrupt()),
        }),
        V_DATE => Datum::Date(i32::from_le_bytes(take(b, pos, 4)?.try_into().unwrap())),
        V_TS => Datum::Timestamp(i64::from_le_bytes(take(b, pos, 8)?.try_into().unwrap())),
        V_TSTZ => Datum::TimestampTz(i64::from_le_bytes(take(b, pos, 8)?.try_into().unwrap())),
        V_UUID => Datum::Uuid(take(b, pos, 16)?.try_into().unwrap()),
        V_TIME => Datum::Time(i64::from_le_bytes(take(b, pos, 8)?.try_into().unwrap())),
        V_INTERVAL => {
            let raw = take(b, pos, 16)?;
            Datum::Interval(crate::sql::interval::Interval::new(
                i32::from_le_bytes(raw[0..4].try_into().unwrap()),
                i32::from_le_bytes(raw[4..8].try_into().unwrap()),
                i64::from_le_bytes(raw[8..16].try_into().unwrap()),
            ))
        }
        _ => return Err(corrupt()),
    };
    Ok(DatumRef::Fixed(fixed))
}

/// Records where each stored value of row `b` starts, in `starts` (cleared first), and
/// checks the row decodes. PERF: allocation-free once `starts` has grown to the width.
pub fn row_value_starts(b: &[u8], starts: &mut Vec<usize>) -> Result<()> {
    starts.clear();
    let mut pos = 0;
    let n = get_varint(b, &mut pos)? as usize;
    for _ in 0..n {
        starts.push(pos);
        decode_value(b, &mut pos)?;
    }
    Ok(())
}

/// Decodes a row encoded by [`encode_row`]. Rows written before columns were added have
/// fewer values; the missing trailing ones read as NULL up to `width`.
/// [`decode_row`], with the values of columns `keep` says false left NULL (not copied out:
/// a DistSQL flow decodes only what its query reads).
pub fn decode_row_kept(b: &[u8], keep: &[bool]) -> Result<Vec<Datum>> {
    let mut pos = 0;
    let n = get_varint(b, &mut pos)? as usize;
    let mut row = Vec::with_capacity(keep.len().max(n));
    for i in 0..n {
        let v = decode_value(b, &mut pos)?;
        row.push(if keep.get(i).copied().unwrap_or(true) {
            v.into_owned()
        } else {
            Datum::Null
        });
    }
    Ok(row)
}

pub fn decode_row(b: &[u8], width: usize) -> Result<Vec<Datum>> {
    let mut pos = 0;
    let n = get_varint(b, &mut pos)? as usize;
    let mut row = Vec::with_capacity(width.max(n));
    for _ in 0..n {
        row.push(decode_value(b, &mut pos)?.into_owned());
    }
    while row.len() < width {
        row.push(Datum::Null);
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_decodes_only_the_kept_columns() {
        let row = vec![
            Datum::Int(7),
            Datum::Text("long text".into()),
            Datum::Null,
            Datum::Float(1.5),
        ];
        let b = encode_row(&row);
        let kept = decode_row_kept(&b, &[true, false, true, true]).unwrap();
        assert_eq!(format!("{kept:?}"), "[Int(7), Null, Null, Float(1.5)]");
        // Columns past the mask (added later) are kept.
        let short = decode_row_kept(&b, &[false]).unwrap();
        assert_eq!(
            format!("{short:?}"),
            "[Null, Text(\"long text\"), Null, Float(1.5)]"
        );
        assert!(decode_row_kept(&b[..b.len() - 1], &[true; 4]).is_err());
    }

    #[test]
    fn txn_records_decode_back() {
        let ts = chitin_storage::Timestamp::new(1_700_000_000_000_000_000, 7);
        for r in [
            TxnRecord::Committed(ts),
            TxnRecord::Aborted,
            TxnRecord::Staging {
                ts,
                participants: vec![],
            },
            TxnRecord::Staging {
                ts,
                participants: vec![
                    chitin_storage::RangeId(3),
                    chitin_storage::RangeId(u64::MAX),
                ],
            },
        ] {
            assert_eq!(TxnRecord::decode(&r.encode()), Some(r));
        }
        assert_eq!(TxnRecord::decode(b"S123"), None);
        assert_eq!(TxnRecord::decode(b""), None);
    }

    #[test]
    fn key_datums_decode_back() {
        let ds = vec![
            Datum::Int(-5),
            Datum::Text("a\0b".into()),
            Datum::Float(-1.5),
            Datum::Bool(true),
            Datum::Null,
            Datum::Date(-3),
            Datum::Numeric("12.5".parse().unwrap()),
        ];
        let mut k = index_prefix(9, 1);
        encode_key_datums(&ds, &mut k);
        let (back, rest) = decode_key_datums(&k[9..]);
        assert!(rest.is_empty());
        assert_eq!(back.len(), ds.len());
        assert_eq!(format!("{back:?}"), format!("{ds:?}"));
        let mut k = index_prefix(9, 1);
        encode_key_datum(&Datum::Int(100), &mut k);
        assert_eq!(pretty_key_suffix(&k), "/1/100");
    }

    fn key(d: &Datum) -> Vec<u8> {
        let mut v = Vec::new();
        encode_key_datum(d, &mut v);
        v
    }

    #[test]
    fn key_encoding_preserves_order() {
        let ints = [i64::MIN, -5, -1, 0, 1, 7, 1000, i64::MAX];
        for w in ints.windows(2) {
            assert!(key(&Datum::Int(w[0])) < key(&Datum::Int(w[1])));
        }
        let floats = [
            f64::NEG_INFINITY,
            -2.5,
            -0.0,
            0.5,
            3.0,
            f64::INFINITY,
            f64::NAN,
        ];
        for w in floats.windows(2) {
            assert!(key(&Datum::Float(w[0])) <= key(&Datum::Float(w[1])));
        }
        let strs = ["", "a", "a\0", "ab", "b"];
        for w in strs.windows(2) {
            assert!(key(&Datum::Text(w[0].into())) < key(&Datum::Text(w[1].into())));
        }
        assert!(key(&Datum::Null) < key(&Datum::Int(i64::MIN)));
    }

    #[test]
    fn rows_round_trip() {
        let row = vec![
            Datum::Int(-3),
            Datum::Null,
            Datum::Text("hi".into()),
            Datum::Float(1.5),
            Datum::Bool(true),
            Datum::Numeric("12.34".parse().unwrap()),
            Datum::Uuid([7; 16]),
        ];
        let back = decode_row(&encode_row(&row), 8).unwrap();
        assert_eq!(back.len(), 8);
        assert_eq!(format!("{:?}", &back[..7]), format!("{row:?}"));
    }

    /// PostgreSQL orders NUMERIC as -Infinity < finite values < Infinity < NaN; an index on
    /// a numeric column must scan in that order, and the special values must round-trip
    /// through both the key and the value encodings.
    #[test]
    fn numeric_special_values_order_and_round_trip() {
        let ordered = [
            Datum::NumericSpecial(NumericSpecial::NegInfinity),
            Datum::Numeric("-79228162514264337593543950335".parse().unwrap()),
            Datum::Numeric("-1.5".parse().unwrap()),
            Datum::Numeric("0".parse().unwrap()),
            Datum::Numeric("79228162514264337593543950335".parse().unwrap()),
            Datum::NumericSpecial(NumericSpecial::Infinity),
            Datum::NumericSpecial(NumericSpecial::NaN),
        ];
        assert_orders_and_round_trips(&ordered);
    }

    /// `ordered` encodes to keys in the same order, and comes back unchanged from keys
    /// and from stored rows.
    fn assert_orders_and_round_trips(ordered: &[Datum]) {
        for w in ordered.windows(2) {
            assert!(key(&w[0]) < key(&w[1]), "{:?} < {:?}", w[0], w[1]);
        }
        let mut k = Vec::new();
        encode_key_datums(ordered, &mut k);
        let (back, rest) = decode_key_datums(&k);
        assert!(rest.is_empty());
        assert_eq!(format!("{back:?}"), format!("{ordered:?}"));
        let back = decode_row(&encode_row(ordered), ordered.len()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{ordered:?}"));
    }

    /// A `time` key orders by the time of day and comes back as a time (not as the
    /// timestamp its width resembles), in keys and in stored rows.
    #[test]
    fn time_of_day_orders_and_round_trips() {
        let ordered = [
            Datum::Time(0),
            Datum::Time(1),
            Datum::Time(45_296_000_000),
            Datum::Time(86_400_000_000),
        ];
        assert_orders_and_round_trips(&ordered);
    }
}
