//! SQL types and values (`Datum`): parsing from text, formatting to text and to the pgwire
//! binary format, comparison, and the type OIDs clients see.

use std::cmp::Ordering;
use std::fmt::Write as _;

use rust_decimal::Decimal;

pub use crate::sql::numeric_special::NumericSpecial;

use crate::error::{Error, Result};
use crate::sql::interval::Interval;
use crate::sql::time_of_day;

/// A column or expression type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SqlType {
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
    /// The type of a bare NULL or an untyped parameter before inference.
    Unknown,
    // Arrays of any number of dimensions: the value is a `Datum::Text` in PostgreSQL's
    // array syntax, `{a,"b c",NULL}`, `{{1,2},{3,4}}` ([`crate::sql::array`]).
    BoolArray,
    Int2Array,
    Int4Array,
    Int8Array,
    Float8Array,
    NumericArray,
    TextArray,
    /// `int2vector` (`pg_index.indkey`): a `Datum::Text` of numbers separated by spaces,
    /// subscripted from 0.
    Int2Vector,
    /// `oidvector` (`pg_index.indclass`): as `int2vector`, of oids.
    OidVector,
    /// `interval`: a `Datum::Interval` (months, days, microseconds).
    Interval,
    /// `jsonb`: a `Datum::Text` of the normalized document ([`crate::sql::jsonb`]).
    Jsonb,
    /// `time without time zone`: a `Datum::Time` ([`crate::sql::time_of_day`]).
    Time,
    /// `real[]` (an array like the others above, appended after them).
    Float4Array,
    // Arrays of date/time and uuid values (appended).
    DateArray,
    TimestampArray,
    TimestampTzArray,
    TimeArray,
    IntervalArray,
    UuidArray,
    /// An anonymous composite (`ROW(…)`): a `Datum::Text` of PostgreSQL's record output,
    /// `(1,"a b",)` (appended).
    Record,
    /// `record[]` (appended).
    RecordArray,
    /// `character varying[]`: what `varchar[]` columns and casts are (an array of strings
    /// built from values, `ARRAY[v]` or `array_agg(v)`, is `text[]`) (appended).
    VarcharArray,
    /// `bytea[]` (appended).
    ByteaArray,
}

impl SqlType {
    /// The PostgreSQL type OID.
    pub fn oid(self) -> u32 {
        match self {
            SqlType::Int2 => 21,
            SqlType::Int4 => 23,
            SqlType::Int8 => 20,
            SqlType::Float4 => 700,
            SqlType::Float8 => 701,
            SqlType::Bool => 16,
            SqlType::Text => 25,
            SqlType::Varchar => 1043,
            SqlType::Bytea => 17,
            SqlType::Numeric => 1700,
            SqlType::Date => 1082,
            SqlType::Timestamp => 1114,
            SqlType::TimestampTz => 1184,
            SqlType::Uuid => 2950,
            SqlType::Unknown => 25,
            SqlType::BoolArray => 1000,
            SqlType::Int2Array => 1005,
            SqlType::Int4Array => 1007,
            SqlType::Int8Array => 1016,
            SqlType::Float8Array => 1022,
            SqlType::NumericArray => 1231,
            SqlType::TextArray => 1009,
            SqlType::Int2Vector => 22,
            SqlType::OidVector => 30,
            SqlType::Interval => 1186,
            SqlType::Jsonb => 3802,
            SqlType::Time => 1083,
            SqlType::Float4Array => 1021,
            SqlType::DateArray => 1182,
            SqlType::TimestampArray => 1115,
            SqlType::TimestampTzArray => 1185,
            SqlType::TimeArray => 1183,
            SqlType::IntervalArray => 1187,
            SqlType::UuidArray => 2951,
            SqlType::Record => 2249,
            SqlType::RecordArray => 2287,
            SqlType::VarcharArray => 1015,
            SqlType::ByteaArray => 1001,
        }
    }

    /// The element type of an array type (`None` for a scalar type).
    pub fn array_elem(self) -> Option<SqlType> {
        Some(match self {
            SqlType::BoolArray => SqlType::Bool,
            SqlType::Int2Array | SqlType::Int2Vector => SqlType::Int2,
            SqlType::OidVector => SqlType::Int8,
            SqlType::Int4Array => SqlType::Int4,
            SqlType::Int8Array => SqlType::Int8,
            SqlType::Float8Array => SqlType::Float8,
            SqlType::Float4Array => SqlType::Float4,
            SqlType::NumericArray => SqlType::Numeric,
            SqlType::TextArray => SqlType::Text,
            SqlType::DateArray => SqlType::Date,
            SqlType::TimestampArray => SqlType::Timestamp,
            SqlType::TimestampTzArray => SqlType::TimestampTz,
            SqlType::TimeArray => SqlType::Time,
            SqlType::IntervalArray => SqlType::Interval,
            SqlType::UuidArray => SqlType::Uuid,
            SqlType::RecordArray => SqlType::Record,
            SqlType::VarcharArray => SqlType::Varchar,
            SqlType::ByteaArray => SqlType::Bytea,
            _ => return None,
        })
    }

    /// `int2vector` or `oidvector`: arrays written `1 2`, subscripted from 0.
    pub fn is_vector(self) -> bool {
        matches!(self, SqlType::Int2Vector | SqlType::OidVector)
    }

    /// The type `T[]` names when written in SQL (a column or a cast): as [`Self::array_of`],
    /// except that `varchar[]` is its own type.
    pub fn declared_array_of(self) -> Option<SqlType> {
        match self {
            SqlType::Varchar => Some(SqlType::VarcharArray),
            other => other.array_of(),
        }
    }

    /// The array type whose elements are `self` (`None` when there is none here).
    pub fn array_of(self) -> Option<SqlType> {
        Some(match self {
            SqlType::Bool => SqlType::BoolArray,
            SqlType::Int2 => SqlType::Int2Array,
            SqlType::Int4 => SqlType::Int4Array,
            SqlType::Int8 => SqlType::Int8Array,
            SqlType::Float4 => SqlType::Float4Array,
            SqlType::Float8 => SqlType::Float8Array,
            SqlType::Numeric => SqlType::NumericArray,
            SqlType::Text | SqlType::Varchar | SqlType::Unknown => SqlType::TextArray,
            SqlType::Date => SqlType::DateArray,
            SqlType::Timestamp => SqlType::TimestampArray,
            SqlType::TimestampTz => SqlType::TimestampTzArray,
            SqlType::Time => SqlType::TimeArray,
            SqlType::Interval => SqlType::IntervalArray,
            SqlType::Uuid => SqlType::UuidArray,
            SqlType::Record => SqlType::RecordArray,
            SqlType::Bytea => SqlType::ByteaArray,
            _ => return None,
        })
    }

    pub fn from_oid(oid: u32) -> Option<SqlType> {
        Some(match oid {
            21 => SqlType::Int2,
            23 => SqlType::Int4,
            20 => SqlType::Int8,
            700 => SqlType::Float4,
            701 => SqlType::Float8,
            16 => SqlType::Bool,
            25 => SqlType::Text,
            1043 | 1042 | 19 => SqlType::Varchar,
            17 => SqlType::Bytea,
            1700 => SqlType::Numeric,
            1082 => SqlType::Date,
            1114 => SqlType::Timestamp,
            1184 => SqlType::TimestampTz,
            2950 => SqlType::Uuid,
            0 | 705 => SqlType::Unknown,
            1000 => SqlType::BoolArray,
            1005 => SqlType::Int2Array,
            1007 => SqlType::Int4Array,
            1016 => SqlType::Int8Array,
            1022 => SqlType::Float8Array,
            1231 => SqlType::NumericArray,
            1009 => SqlType::TextArray,
            1015 => SqlType::VarcharArray,
            1001 => SqlType::ByteaArray,
            22 => SqlType::Int2Vector,
            30 => SqlType::OidVector,
            1186 => SqlType::Interval,
            3802 => SqlType::Jsonb,
            1083 => SqlType::Time,
            1021 => SqlType::Float4Array,
            1182 => SqlType::DateArray,
            1115 => SqlType::TimestampArray,
            1185 => SqlType::TimestampTzArray,
            1183 => SqlType::TimeArray,
            1187 => SqlType::IntervalArray,
            2951 => SqlType::UuidArray,
            2249 => SqlType::Record,
            2287 => SqlType::RecordArray,
            _ => return None,
        })
    }

    /// The size clients are told in RowDescription (-1: variable).
    pub fn type_size(self) -> i16 {
        match self {
            SqlType::Int2 => 2,
            SqlType::Int4 | SqlType::Float4 | SqlType::Date => 4,
            SqlType::Int8
            | SqlType::Float8
            | SqlType::Timestamp
            | SqlType::TimestampTz
            | SqlType::Time => 8,
            SqlType::Bool => 1,
            SqlType::Uuid | SqlType::Interval => 16,
            _ => -1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SqlType::Int2 => "smallint",
            SqlType::Int4 => "integer",
            SqlType::Int8 => "bigint",
            SqlType::Float4 => "real",
            SqlType::Float8 => "double precision",
            SqlType::Bool => "boolean",
            SqlType::Text => "text",
            SqlType::Varchar => "character varying",
            SqlType::Bytea => "bytea",
            SqlType::Numeric => "numeric",
            SqlType::Date => "date",
            SqlType::Timestamp => "timestamp without time zone",
            SqlType::TimestampTz => "timestamp with time zone",
            SqlType::Uuid => "uuid",
            SqlType::Unknown => "unknown",
            SqlType::BoolArray => "boolean[]",
            SqlType::Int2Array => "smallint[]",
            SqlType::Int4Array => "integer[]",
            SqlType::Int8Array => "bigint[]",
            SqlType::Float8Array => "double precision[]",
            SqlType::NumericArray => "numeric[]",
            SqlType::TextArray => "text[]",
            SqlType::Int2Vector => "int2vector",
            SqlType::OidVector => "oidvector",
            SqlType::Interval => "interval",
            SqlType::Jsonb => "jsonb",
            SqlType::Time => "time without time zone",
            SqlType::Float4Array => "real[]",
            SqlType::DateArray => "date[]",
            SqlType::TimestampArray => "timestamp without time zone[]",
            SqlType::TimestampTzArray => "timestamp with time zone[]",
            SqlType::TimeArray => "time without time zone[]",
            SqlType::IntervalArray => "interval[]",
            SqlType::UuidArray => "uuid[]",
            SqlType::Record => "record",
            SqlType::RecordArray => "record[]",
            SqlType::VarcharArray => "character varying[]",
            SqlType::ByteaArray => "bytea[]",
        }
    }

    pub fn is_int(self) -> bool {
        matches!(self, SqlType::Int2 | SqlType::Int4 | SqlType::Int8)
    }
    pub fn is_float(self) -> bool {
        matches!(self, SqlType::Float4 | SqlType::Float8)
    }
    pub fn is_numeric_family(self) -> bool {
        self.is_int() || self.is_float() || self == SqlType::Numeric
    }
    pub fn is_string(self) -> bool {
        matches!(self, SqlType::Text | SqlType::Varchar)
    }

    /// One byte for the on-disk descriptor encoding: the declaration order for the first
    /// fifteen types (the encoding predates the array types), then explicit tags.
    pub fn tag(self) -> u8 {
        match self {
            SqlType::Interval => TAG_INTERVAL,
            SqlType::Jsonb => TAG_JSONB,
            SqlType::Time => TAG_TIME,
            other => other as u8,
        }
    }
    pub fn from_tag(t: u8) -> Option<SqlType> {
        use SqlType::*;
        if t == TAG_INTERVAL {
            return Some(Interval);
        }
        if t == TAG_JSONB {
            return Some(Jsonb);
        }
        if t == TAG_TIME {
            return Some(Time);
        }
        // Array types (and the catalog's vector types) are tagged by their declaration
        // order, as the first fifteen.
        for a in [
            Int2Vector,
            OidVector,
            BoolArray,
            Int2Array,
            Int4Array,
            Int8Array,
            Float8Array,
            NumericArray,
            TextArray,
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
        ] {
            if a as u8 == t {
                return Some(a);
            }
        }
        const ALL: [SqlType; 15] = [
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
        ];
        ALL.get(t as usize).copied()
    }

    /// Resolves a type name as written in SQL.
    pub fn from_sql_name(name: &str) -> Option<SqlType> {
        let n = name.to_ascii_lowercase();
        // `int[]`, `int[][]`, `int[3]`: one array type whatever the dimensions.
        let t = n.trim_end();
        if t.ends_with(']') {
            let base = t.split('[').next().unwrap_or("").trim();
            let elem = SqlType::from_sql_name(base)?;
            return elem
                .declared_array_of()
                .filter(|_| elem.array_elem().is_none());
        }
        let base = n.split('(').next().unwrap_or("").trim();
        Some(match base {
            "smallint" | "int2" | "smallserial" | "serial2" => SqlType::Int2,
            "int" | "integer" | "int4" | "serial" | "serial4" => SqlType::Int4,
            "bigint" | "int8" | "bigserial" | "serial8" | "int64" => SqlType::Int8,
            "real" | "float4" => SqlType::Float4,
            "double precision" | "float8" | "float" | "double" => SqlType::Float8,
            "bool" | "boolean" => SqlType::Bool,
            "text" | "string" => SqlType::Text,
            "varchar" | "character varying" | "char" | "character" | "bpchar" | "name" => {
                SqlType::Varchar
            }
            "bytea" | "bytes" | "blob" => SqlType::Bytea,
            "numeric" | "decimal" | "dec" => SqlType::Numeric,
            "date" => SqlType::Date,
            "timestamp" | "timestamp without time zone" | "datetime" => SqlType::Timestamp,
            "timestamptz" | "timestamp with time zone" => SqlType::TimestampTz,
            "uuid" => SqlType::Uuid,
            "interval" => SqlType::Interval,
            "time" | "time without time zone" => SqlType::Time,
            "jsonb" => SqlType::Jsonb,
            _ => return None,
        })
    }
}

const TAG_INTERVAL: u8 = 64;
const TAG_JSONB: u8 = 65;
const TAG_TIME: u8 = 66;

/// A SQL value.
#[derive(Clone, Debug)]
pub enum Datum {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    Numeric(Decimal),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01 00:00:00 (no time zone).
    Timestamp(i64),
    /// Microseconds since the Unix epoch, UTC.
    TimestampTz(i64),
    Uuid([u8; 16]),
    Interval(Interval),
    /// A NUMERIC that is NaN or infinite (appended; finite values are `Numeric`).
    NumericSpecial(NumericSpecial),
    /// A time of day: microseconds after midnight, 0 to 24:00:00 inclusive.
    Time(i64),
}

impl Datum {
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    /// The natural type of the value (Int is reported as int8).
    pub fn natural_type(&self) -> SqlType {
        match self {
            Datum::Null => SqlType::Unknown,
            Datum::Int(_) => SqlType::Int8,
            Datum::Float(_) => SqlType::Float8,
            Datum::Bool(_) => SqlType::Bool,
            Datum::Text(_) => SqlType::Text,
            Datum::Bytes(_) => SqlType::Bytea,
            Datum::Numeric(_) | Datum::NumericSpecial(_) => SqlType::Numeric,
            Datum::Date(_) => SqlType::Date,
            Datum::Timestamp(_) => SqlType::Timestamp,
            Datum::TimestampTz(_) => SqlType::TimestampTz,
            Datum::Uuid(_) => SqlType::Uuid,
            Datum::Interval(_) => SqlType::Interval,
            Datum::Time(_) => SqlType::Time,
        }
    }

    /// SQL comparison; `None` when either side is NULL. Values of different numeric kinds are
    /// compared numerically.
    pub fn sql_cmp(&self, other: &Datum) -> Option<Ordering> {
        use Datum::*;
        Some(match (self, other) {
            (Null, _) | (_, Null) => return None,
            (Int(a), Int(b)) => a.cmp(b),
            (Float(a), Float(b)) => float_cmp(*a, *b),
            (Int(a), Float(b)) => float_cmp(*a as f64, *b),
            (Float(a), Int(b)) => float_cmp(*a, *b as f64),
            (Numeric(a), Numeric(b)) => a.cmp(b),
            (Numeric(a), Int(b)) => a.cmp(&Decimal::from(*b)),
            (Int(a), Numeric(b)) => Decimal::from(*a).cmp(b),
            (Numeric(a), Float(b)) => float_cmp(decimal_to_f64(a), *b),
            (Float(a), Numeric(b)) => float_cmp(*a, decimal_to_f64(b)),
            (NumericSpecial(a), NumericSpecial(b)) => a.cmp(b),
            (NumericSpecial(a), Int(_) | Numeric(_)) => a.cmp_finite(),
            (Int(_) | Numeric(_), NumericSpecial(b)) => b.cmp_finite().reverse(),
            (NumericSpecial(a), Float(b)) => float_cmp(a.to_f64(), *b),
            (Float(a), NumericSpecial(b)) => float_cmp(*a, b.to_f64()),
            (Bool(a), Bool(b)) => a.cmp(b),
            (Text(a), Text(b)) => a.cmp(b),
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Date(a), Date(b)) => a.cmp(b),
            (Timestamp(a), Timestamp(b)) => a.cmp(b),
            (TimestampTz(a), TimestampTz(b)) => a.cmp(b),
            (Timestamp(a), TimestampTz(b)) | (TimestampTz(a), Timestamp(b)) => a.cmp(b),
            (Date(a), Timestamp(b)) | (Date(a), TimestampTz(b)) => {
                (*a as i64 * MICROS_PER_DAY).cmp(b)
            }
            (Timestamp(a), Date(b)) | (TimestampTz(a), Date(b)) => {
                a.cmp(&(*b as i64 * MICROS_PER_DAY))
            }
            (Uuid(a), Uuid(b)) => a.cmp(b),
            (Interval(a), Interval(b)) => a.cmp_span(b),
            (Time(a), Time(b)) => a.cmp(b),
            // A time meets an interval as the interval it casts to implicitly.
            (Time(a), Interval(b)) => time_of_day::to_interval(*a).cmp_span(b),
            (Interval(a), Time(b)) => a.cmp_span(&time_of_day::to_interval(*b)),
            _ => return None,
        })
    }

    /// Total order used by ORDER BY, DISTINCT and GROUP BY: NULLs sort last (PostgreSQL's
    /// default for ascending order).
    pub fn order_cmp(&self, other: &Datum) -> Ordering {
        match (self.is_null(), other.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => self.sql_cmp(other).unwrap_or_else(|| {
                // Different, incomparable kinds: order by kind so sorting stays total.
                self.kind_rank().cmp(&other.kind_rank())
            }),
        }
    }

    fn kind_rank(&self) -> u8 {
        match self {
            Datum::Null => 0,
            Datum::Bool(_) => 1,
            Datum::Int(_) | Datum::Float(_) | Datum::Numeric(_) | Datum::NumericSpecial(_) => 2,
            Datum::Text(_) => 3,
            Datum::Bytes(_) => 4,
            Datum::Date(_) | Datum::Timestamp(_) | Datum::TimestampTz(_) => 5,
            Datum::Uuid(_) => 6,
            Datum::Interval(_) => 7,
            Datum::Time(_) => 8,
        }
    }

    /// Formats the value in PostgreSQL's text output format.
    pub fn to_text(&self, ty: SqlType) -> Option<String> {
        let mut s = String::new();
        match self {
            Datum::Null => return None,
            Datum::Int(i) => write!(s, "{i}").unwrap(),
            Datum::Float(f) => s = format_float(*f, ty == SqlType::Float4),
            Datum::Bool(b) => s.push(if *b { 't' } else { 'f' }),
            Datum::Text(t) => s.push_str(t),
            Datum::Bytes(b) => {
                s.push_str("\\x");
                for byte in b {
                    write!(s, "{byte:02x}").unwrap();
                }
            }
            Datum::Numeric(d) => write!(s, "{d}").unwrap(),
            Datum::NumericSpecial(x) => s.push_str(x.name()),
            Datum::Date(d) => s = format_date(*d),
            Datum::Timestamp(t) => s = format_timestamp(*t),
            Datum::TimestampTz(t) => {
                // In the session's zone, with its offset then (`2020-07-01 05:00:00-07`).
                let offset = crate::sql::time_zone::with_current(|z| z.offset_at(*t));
                s = format_timestamp(t.saturating_add(offset as i64 * 1_000_000));
                let mut zone = String::new();
                crate::sql::time_zone::format_offset(offset, &mut zone);
                // The zone goes before a BC (`0044-03-15 12:00:00+00 BC`).
                match s.strip_suffix(" BC") {
                    Some(ad) => s = format!("{ad}{zone} BC"),
                    None => s.push_str(&zone),
                }
            }
            Datum::Uuid(u) => s = format_uuid(u),
            Datum::Interval(iv) => s = iv.to_text(),
            Datum::Time(t) => s = time_of_day::format_time(*t),
        }
        Some(s)
    }

    /// Appends the text format of a non-NULL value to `out`, allocating nothing for the
    /// common types (integers, text, booleans).
    pub fn write_text(&self, ty: SqlType, out: &mut Vec<u8>) {
        use std::io::Write as _;
        match self {
            Datum::Null => {}
            Datum::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Datum::Text(t) => out.extend_from_slice(t.as_bytes()),
            Datum::Bool(b) => out.push(if *b { b't' } else { b'f' }),
            other => {
                if let Some(s) = other.to_text(ty) {
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
    }

    /// Appends the pgwire binary format of the value (for a non-NULL value) as `ty`.
    pub fn to_binary(&self, ty: SqlType, out: &mut Vec<u8>) -> Result<()> {
        match (self, ty) {
            (Datum::Int(i), SqlType::Int2) => out.extend_from_slice(&(*i as i16).to_be_bytes()),
            (Datum::Int(i), SqlType::Int4) => out.extend_from_slice(&(*i as i32).to_be_bytes()),
            (Datum::Int(i), _) => out.extend_from_slice(&i.to_be_bytes()),
            (Datum::Float(f), SqlType::Float4) => out.extend_from_slice(&(*f as f32).to_be_bytes()),
            (Datum::Float(f), _) => out.extend_from_slice(&f.to_be_bytes()),
            (Datum::Bool(b), _) => out.push(*b as u8),
            (Datum::Text(t), _) if ty.array_elem().is_some() => encode_array_binary(ty, t, out)?,
            (Datum::Text(t), SqlType::Jsonb) => {
                // Version 1 of jsonb's binary format: the text after a version byte.
                out.push(1);
                out.extend_from_slice(t.as_bytes());
            }
            (Datum::Text(t), _) => out.extend_from_slice(t.as_bytes()),
            (Datum::Bytes(b), _) => out.extend_from_slice(b),
            (Datum::Numeric(d), _) => encode_numeric_binary(d, out),
            (Datum::NumericSpecial(x), _) => {
                // ndigits 0, weight 0, the special sign word, dscale 0.
                let sign: u16 = match x {
                    NumericSpecial::NaN => NUMERIC_NAN,
                    NumericSpecial::Infinity => NUMERIC_PINF,
                    NumericSpecial::NegInfinity => NUMERIC_NINF,
                };
                out.extend_from_slice(&[0, 0, 0, 0]);
                out.extend_from_slice(&sign.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            (Datum::Date(d), _) => out.extend_from_slice(&(d - PG_EPOCH_DAYS).to_be_bytes()),
            (Datum::Timestamp(t), _) | (Datum::TimestampTz(t), _) => {
                out.extend_from_slice(&(t - PG_EPOCH_DAYS as i64 * MICROS_PER_DAY).to_be_bytes())
            }
            (Datum::Uuid(u), _) => out.extend_from_slice(u),
            (Datum::Interval(iv), _) => iv.to_binary(out),
            (Datum::Time(t), _) => out.extend_from_slice(&t.to_be_bytes()),
            (Datum::Null, _) => {}
        }
        Ok(())
    }

    /// Parses a parameter sent in binary format as `ty`.
    pub fn from_binary(ty: SqlType, b: &[u8]) -> Result<Datum> {
        let bad = || Error::protocol(format!("invalid binary value for type {}", ty.name()));
        Ok(match ty {
            SqlType::Int2 => {
                Datum::Int(i16::from_be_bytes(b.try_into().map_err(|_| bad())?) as i64)
            }
            SqlType::Int4 => {
                Datum::Int(i32::from_be_bytes(b.try_into().map_err(|_| bad())?) as i64)
            }
            SqlType::Int8 => Datum::Int(i64::from_be_bytes(b.try_into().map_err(|_| bad())?)),
            SqlType::Float4 => {
                Datum::Float(f32::from_be_bytes(b.try_into().map_err(|_| bad())?) as f64)
            }
            SqlType::Float8 => Datum::Float(f64::from_be_bytes(b.try_into().map_err(|_| bad())?)),
            SqlType::Bool => match b {
                [v] => Datum::Bool(*v != 0),
                _ => return Err(bad()),
            },
            SqlType::Text | SqlType::Varchar | SqlType::Unknown => {
                Datum::Text(String::from_utf8(b.to_vec()).map_err(|_| bad())?)
            }
            SqlType::Bytea => Datum::Bytes(b.to_vec()),
            SqlType::Numeric => match b.get(4..6).map(|w| u16::from_be_bytes([w[0], w[1]])) {
                Some(NUMERIC_NAN) if b.len() == 8 => Datum::NumericSpecial(NumericSpecial::NaN),
                Some(NUMERIC_PINF) if b.len() == 8 => {
                    Datum::NumericSpecial(NumericSpecial::Infinity)
                }
                Some(NUMERIC_NINF) if b.len() == 8 => {
                    Datum::NumericSpecial(NumericSpecial::NegInfinity)
                }
                _ => Datum::Numeric(decode_numeric_binary(b).ok_or_else(bad)?),
            },
            SqlType::Date => {
                Datum::Date(i32::from_be_bytes(b.try_into().map_err(|_| bad())?) + PG_EPOCH_DAYS)
            }
            SqlType::Timestamp | SqlType::TimestampTz => {
                let v = i64::from_be_bytes(b.try_into().map_err(|_| bad())?)
                    + PG_EPOCH_DAYS as i64 * MICROS_PER_DAY;
                if ty == SqlType::Timestamp {
                    Datum::Timestamp(v)
                } else {
                    Datum::TimestampTz(v)
                }
            }
            SqlType::Uuid => Datum::Uuid(b.try_into().map_err(|_| bad())?),
            SqlType::Interval => Datum::Interval(Interval::from_binary(b).ok_or_else(bad)?),
            SqlType::Time => {
                let t = i64::from_be_bytes(b.try_into().map_err(|_| bad())?);
                if !(0..=MICROS_PER_DAY).contains(&t) {
                    return Err(bad());
                }
                Datum::Time(t)
            }
            SqlType::Jsonb => match b.split_first() {
                Some((1, text)) => Datum::parse(
                    SqlType::Jsonb,
                    std::str::from_utf8(text).map_err(|_| bad())?,
                )?,
                _ => return Err(bad()),
            },
            _ => Datum::Text(decode_array_binary(ty, b).ok_or_else(bad)?),
        })
    }

    /// Parses text as a value of `ty` (the input function of the type). Errors are 22P02 /
    /// 22008 / 22003 as PostgreSQL reports them.
    pub fn parse(ty: SqlType, s: &str) -> Result<Datum> {
        let invalid = || {
            Error::invalid_text(format!(
                "invalid input syntax for type {}: \"{}\"",
                ty.name(),
                s
            ))
        };
        let t = s.trim();
        Ok(match ty {
            SqlType::Int2 | SqlType::Int4 | SqlType::Int8 => {
                let v: i64 = t.parse().map_err(|_| {
                    if !t.is_empty()
                        && t.trim_start_matches(['-', '+'])
                            .chars()
                            .all(|c| c.is_ascii_digit())
                    {
                        Error::out_of_range(format!(
                            "value \"{t}\" is out of range for type {}",
                            ty.name()
                        ))
                    } else {
                        invalid()
                    }
                })?;
                check_int_range(ty, v)?;
                Datum::Int(v)
            }
            SqlType::Float4 | SqlType::Float8 => {
                let lower = t.to_ascii_lowercase();
                let v = match lower.as_str() {
                    "nan" => f64::NAN,
                    "infinity" | "inf" | "+infinity" => f64::INFINITY,
                    "-infinity" | "-inf" => f64::NEG_INFINITY,
                    _ => t.parse().map_err(|_| invalid())?,
                };
                if ty == SqlType::Float4 && v.is_finite() && (v as f32).is_infinite() {
                    return Err(Error::out_of_range(format!(
                        "\"{t}\" is out of range for type real"
                    )));
                }
                Datum::Float(float_of_type(ty, v)?)
            }
            SqlType::Bool => match t.to_ascii_lowercase().as_str() {
                "t" | "true" | "yes" | "y" | "on" | "1" => Datum::Bool(true),
                "f" | "false" | "no" | "n" | "off" | "0" => Datum::Bool(false),
                _ => return Err(invalid()),
            },
            SqlType::Text | SqlType::Varchar | SqlType::Unknown => Datum::Text(s.to_string()),
            SqlType::Bytea => Datum::Bytes(parse_bytea(s)?),
            SqlType::Numeric => {
                if let Some(x) = NumericSpecial::parse(t) {
                    return Ok(Datum::NumericSpecial(x));
                }
                let d = t
                    .parse::<Decimal>()
                    .or_else(|_| Decimal::from_scientific(t))
                    .map_err(|_| invalid())?;
                Datum::Numeric(d)
            }
            SqlType::Date => Datum::Date(
                parse_date(t)
                    .or_else(|| parse_date_with_time(t))
                    .ok_or_else(|| datetime_error(ty, s))?,
            ),
            SqlType::Timestamp => {
                // A zone name after the time is read and ignored, as PostgreSQL does.
                let parsed = parse_timestamp(t).or_else(|| {
                    match crate::sql::time_zone::split_zone_suffix(t) {
                        (rest, Some(zone))
                            if crate::sql::time_zone::Zone::parse(zone, true).is_some() =>
                        {
                            parse_timestamp(rest)
                        }
                        _ => None,
                    }
                });
                Datum::Timestamp(parsed.ok_or_else(|| datetime_error(ty, s))?.0)
            }
            SqlType::TimestampTz => {
                use crate::sql::time_zone::{self, Zone};
                // A numeric offset wins; else a zone name after the time; else the
                // session's zone.
                let (body, zone) = match time_zone::split_zone_suffix(t) {
                    (body, Some(name))
                        if parse_timestamp(t).is_none() && parse_timestamp(body).is_some() =>
                    {
                        (body, Some(Zone::parse_or_error(name, true)?))
                    }
                    _ => (t, None),
                };
                let (micros, offset) =
                    parse_timestamp(body).ok_or_else(|| datetime_error(ty, s))?;
                Datum::TimestampTz(match (offset, zone) {
                    (Some(offset), _) => micros - offset * 1_000_000,
                    (None, Some(zone)) => zone.to_utc(micros),
                    (None, None) => time_zone::with_current(|z| z.to_utc(micros)),
                })
            }
            SqlType::Uuid => Datum::Uuid(parse_uuid(t).ok_or_else(invalid)?),
            SqlType::Interval => Datum::Interval(Interval::parse(s, None)?),
            SqlType::Time => {
                Datum::Time(time_of_day::parse_time(t).ok_or_else(|| time_of_day::input_error(s))?)
            }
            SqlType::Jsonb => Datum::Text(crate::sql::jsonb::Json::parse(s)?.to_text()),
            SqlType::Record => {
                return Err(Error::unsupported(
                    "input of anonymous composite types is not implemented",
                ))
            }
            _ => {
                // An array: every element through the element type's input function,
                // then printed in the canonical form.
                let elem = ty.array_elem().ok_or_else(invalid)?;
                if ty.is_vector() {
                    let mut elems = Vec::new();
                    for e in array_elements(ty, s)? {
                        elems.push(match e {
                            Some(e) => Datum::parse(elem, &e)?.to_text(elem),
                            None => None,
                        });
                    }
                    Datum::Text(elems.into_iter().flatten().collect::<Vec<_>>().join(" "))
                } else {
                    let mut a = crate::sql::array::Array::parse(s)?;
                    for e in a.elems.iter_mut() {
                        if let Some(t) = e {
                            *e = Datum::parse(elem, t)?.to_text(elem);
                        }
                    }
                    Datum::Text(a.format())
                }
            }
        })
    }

    /// Converts the value to `ty` as an explicit or assignment cast does.
    pub fn cast(self, ty: SqlType) -> Result<Datum> {
        let from = self.natural_type();
        let fail = |d: &Datum| {
            Error::cannot_coerce(format!(
                "cannot cast type {} to {}",
                d.natural_type().name(),
                ty.name()
            ))
        };
        Ok(match (self, ty) {
            (Datum::Null, _) => Datum::Null,
            (d, SqlType::Unknown) => d,
            (Datum::Text(s), t) => Datum::parse(t, &s)?,
            (Datum::Bool(b), SqlType::Text | SqlType::Varchar) => {
                Datum::Text(if b { "true" } else { "false" }.into())
            }
            (d, SqlType::Text | SqlType::Varchar) => {
                Datum::Text(d.to_text(from).unwrap_or_default())
            }
            (Datum::Int(i), t) if t.is_int() => {
                check_int_range(t, i)?;
                Datum::Int(i)
            }
            (Datum::Int(i), t) if t.is_float() => Datum::Float(float_of_type(t, i as f64)?),
            (Datum::Int(i), SqlType::Numeric) => Datum::Numeric(Decimal::from(i)),
            (Datum::Int(i), SqlType::Bool) => Datum::Bool(i != 0),
            (Datum::Float(f), t) if t.is_int() => {
                if !f.is_finite() || f.round() > i64::MAX as f64 || f.round() < i64::MIN as f64 {
                    return Err(Error::out_of_range(format!("{} out of range", t.name())));
                }
                let i = f.round_ties_even() as i64;
                check_int_range(t, i)?;
                Datum::Int(i)
            }
            (Datum::Float(f), t) if t.is_float() => Datum::Float(float_of_type(t, f)?),
            (Datum::Float(f), SqlType::Numeric) if !f.is_finite() => {
                Datum::NumericSpecial(NumericSpecial::from_f64(f).unwrap_or(NumericSpecial::NaN))
            }
            (Datum::Float(f), SqlType::Numeric) => Datum::Numeric(
                Decimal::from_f64_retain(f)
                    .map(|d| d.normalize())
                    .ok_or_else(|| Error::out_of_range("numeric out of range"))?,
            ),
            (Datum::Numeric(d), t) if t.is_int() => {
                let r = d.round_dp_with_strategy(
                    0,
                    rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                );
                let i: i64 = r
                    .try_into()
                    .map_err(|_| Error::out_of_range(format!("{} out of range", t.name())))?;
                check_int_range(t, i)?;
                Datum::Int(i)
            }
            (Datum::Numeric(d), t) if t.is_float() => {
                Datum::Float(float_of_type(t, decimal_to_f64(&d))?)
            }
            (Datum::Numeric(d), SqlType::Numeric) => Datum::Numeric(d),
            (Datum::NumericSpecial(x), t) if t.is_int() => {
                return Err(x.integer_cast_error(t.name()));
            }
            (Datum::NumericSpecial(x), t) if t.is_float() => Datum::Float(x.to_f64()),
            (Datum::NumericSpecial(x), SqlType::Numeric) => Datum::NumericSpecial(x),
            (Datum::Bool(b), t) if t.is_int() => Datum::Int(b as i64),
            (Datum::Bool(b), SqlType::Bool) => Datum::Bool(b),
            (Datum::Bytes(b), SqlType::Bytea) => Datum::Bytes(b),
            (Datum::Date(d), SqlType::Date) => Datum::Date(d),
            (Datum::Date(d), SqlType::Timestamp) => Datum::Timestamp(d as i64 * MICROS_PER_DAY),
            // Between local times and instants: in the session's zone.
            (Datum::Date(d), SqlType::TimestampTz) => {
                Datum::TimestampTz(crate::sql::time_zone::with_current(|z| {
                    z.to_utc(d as i64 * MICROS_PER_DAY)
                }))
            }
            (Datum::Timestamp(t), SqlType::Date) => {
                Datum::Date(t.div_euclid(MICROS_PER_DAY) as i32)
            }
            (Datum::TimestampTz(t), SqlType::Date) => {
                let local = crate::sql::time_zone::with_current(|z| z.to_local(t));
                Datum::Date(local.div_euclid(MICROS_PER_DAY) as i32)
            }
            (Datum::Timestamp(t), SqlType::Timestamp) => Datum::Timestamp(t),
            (Datum::TimestampTz(t), SqlType::Timestamp) => {
                Datum::Timestamp(crate::sql::time_zone::with_current(|z| z.to_local(t)))
            }
            (Datum::TimestampTz(t), SqlType::TimestampTz) => Datum::TimestampTz(t),
            (Datum::Timestamp(t), SqlType::TimestampTz) => {
                Datum::TimestampTz(crate::sql::time_zone::with_current(|z| z.to_utc(t)))
            }
            (Datum::Uuid(u), SqlType::Uuid) => Datum::Uuid(u),
            (Datum::Interval(iv), SqlType::Interval) => Datum::Interval(iv),
            (Datum::Time(t), SqlType::Time) => Datum::Time(t),
            (Datum::Time(t), SqlType::Interval) => Datum::Interval(time_of_day::to_interval(t)),
            (Datum::Interval(iv), SqlType::Time) => Datum::Time(time_of_day::from_interval(&iv)),
            (Datum::Timestamp(t), SqlType::Time) => Datum::Time(time_of_day::from_timestamp(t)),
            (Datum::TimestampTz(t), SqlType::Time) => Datum::Time(time_of_day::from_timestamp(
                crate::sql::time_zone::with_current(|z| z.to_local(t)),
            )),
            (d, _) => return Err(fail(&d)),
        })
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Datum::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// A float value as type `ty` holds it: a `real` keeps only single precision (a finite
/// value too large for it is 22003), a `double precision` is unchanged.
pub fn float_of_type(ty: SqlType, v: f64) -> Result<f64> {
    if ty != SqlType::Float4 {
        return Ok(v);
    }
    let single = v as f32;
    if v.is_finite() && single.is_infinite() {
        return Err(Error::out_of_range("value out of range: overflow"));
    }
    Ok(single as f64)
}

/// PostgreSQL's bytea input: `\x` then hex digit pairs (whitespace between pairs
/// allowed), else the escape format: `\\` is a backslash, `\ooo` an octal byte,
/// anything else itself.
pub fn parse_bytea(s: &str) -> Result<Vec<u8>> {
    let invalid = || {
        Error::new(
            crate::error::ErrorKind::InvalidTextRepresentation,
            "invalid input syntax for type bytea",
        )
    };
    if let Some(hex) = s.strip_prefix("\\x").or_else(|| s.strip_prefix("\\X")) {
        let digit = |c: u8| -> Result<u8> {
            (c as char).to_digit(16).map(|d| d as u8).ok_or_else(|| {
                Error::new(
                    crate::error::ErrorKind::InvalidParameterValue,
                    format!("invalid hexadecimal digit: \"{}\"", c as char),
                )
            })
        };
        let bytes = hex.as_bytes();
        let mut out = Vec::with_capacity(bytes.len() / 2);
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let high = digit(bytes[i])?;
            let Some(&low) = bytes.get(i + 1) else {
                return Err(Error::new(
                    crate::error::ErrorKind::InvalidParameterValue,
                    "invalid hexadecimal data: odd number of digits",
                ));
            };
            out.push(high << 4 | digit(low)?);
            i += 2;
        }
        return Ok(out);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = bytes.get(i + 1..i + 4).ok_or_else(invalid)?;
            if !(b'0'..=b'3').contains(&octal[0])
                || !octal[1..].iter().all(|c| (b'0'..=b'7').contains(c))
            {
                return Err(invalid());
            }
            out.push(
                octal
                    .iter()
                    .fold(0u8, |acc, c| acc.wrapping_mul(8) + (c - b'0')),
            );
            i += 4;
        }
    }
    Ok(out)
}

/// The error for text that is not a valid date/timestamp: 22008 when it has the shape of
/// one but a field is out of range, else 22007.
fn datetime_error(ty: SqlType, s: &str) -> Error {
    let t = s.trim();
    let shaped = t.len() >= 10
        && t.as_bytes()[4] == b'-'
        && t.as_bytes()[7] == b'-'
        && t[..4].chars().all(|c| c.is_ascii_digit())
        && t[5..7].chars().all(|c| c.is_ascii_digit())
        && t[8..10].chars().all(|c| c.is_ascii_digit());
    if shaped {
        Error::new(
            crate::error::ErrorKind::DatetimeFieldOverflow,
            format!("date/time field value out of range: \"{s}\""),
        )
    } else {
        Error::new(
            crate::error::ErrorKind::InvalidDatetimeFormat,
            format!("invalid input syntax for type {}: \"{s}\"", ty.name()),
        )
    }
}

pub fn check_int_range(ty: SqlType, v: i64) -> Result<()> {
    let ok = match ty {
        SqlType::Int2 => i16::try_from(v).is_ok(),
        SqlType::Int4 => i32::try_from(v).is_ok(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::out_of_range(format!("{} out of range", ty.name())))
    }
}

pub fn float_cmp(a: f64, b: f64) -> Ordering {
    // PostgreSQL: NaN equals NaN and sorts above every other value.
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

pub fn decimal_to_f64(d: &Decimal) -> f64 {
    d.to_string().parse().unwrap_or(0.0)
}

pub fn format_float(f: f64, single: bool) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let s = if single {
        format!("{}", f as f32)
    } else {
        format!("{f}")
    };
    // Rust prints large/small values without exponent; PostgreSQL switches to e-notation
    // beyond 15 significant digits. Keep Rust's shortest round-trip form but use e-notation
    // for very large or very small magnitudes like PostgreSQL does.
    let abs = f.abs();
    // float8 switches at 10^15, float4 at 10^6 (shortest round-trip digits either way).
    let upper = if single { 1e6 } else { 1e15 };
    if abs != 0.0 && !(1e-4..upper).contains(&abs) {
        let e = if single {
            format!("{:e}", f as f32)
        } else {
            format!("{f:e}")
        };
        // Rust: 1e20 / 1.5e-5; PostgreSQL: 1e+20 / 1.5e-05
        if let Some((m, exp)) = e.split_once('e') {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            return format!("{m}e{sign}{digits:0>2}");
        }
        return e;
    }
    s
}

pub const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Days from 1970-01-01 to 2000-01-01 (the PostgreSQL epoch of binary dates/timestamps).
pub const PG_EPOCH_DAYS: i32 = 10_957;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// `s` without an `AD` / `BC` word, and whether it was `BC`.
fn strip_era(s: &str) -> (std::borrow::Cow<'_, str>, bool) {
    let is_era = |w: &str| w.eq_ignore_ascii_case("ad") || w.eq_ignore_ascii_case("bc");
    if !s.split_whitespace().any(is_era) {
        return (std::borrow::Cow::Borrowed(s), false);
    }
    let bc = s.split_whitespace().any(|w| w.eq_ignore_ascii_case("bc"));
    let rest: Vec<&str> = s.split_whitespace().filter(|w| !is_era(w)).collect();
    (std::borrow::Cow::Owned(rest.join(" ")), bc)
}

/// The dates PostgreSQL can represent, in days since 1970-01-01: from 4714-11-24 BC (its
/// Julian day 0) up to, not including, 5874898-01-01.
pub const DATE_RANGE: std::ops::Range<i64> = -2_440_588..2_145_042_906;

/// The timestamps PostgreSQL can represent, in microseconds since 1970: from 4714-11-24
/// 00:00:00 BC up to what an i64 of microseconds since 2000 holds (294276 AD).
pub const TIMESTAMP_RANGE: std::ops::Range<i64> =
    -210_866_803_200_000_000..i64::MAX - 946_684_800_000_000;

pub fn parse_date(s: &str) -> Option<i32> {
    let (s, bc) = strip_era(s);
    parse_ymd(&s, bc)
}

/// `YYYY-MM-DD`; with `bc`, the year counts back from 1 BC (year 0 in the proleptic
/// calendar).
fn parse_ymd(s: &str, bc: bool) -> Option<i32> {
    let mut parts = s.splitn(3, '-');
    let y: i64 = parts.next()?.trim().parse().ok()?;
    let y = match bc {
        true if y >= 1 => 1 - y,
        true => return None,
        false => y,
    };
    let m: u32 = parts.next()?.trim().parse().ok()?;
    let d: u32 = parts.next()?.trim().parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    i32::try_from(days_from_civil(y, m, d)).ok()
}

/// A date written with a time of day or a zone after it, both ignored as PostgreSQL
/// ignores them (`2024-02-29 10:00`, `2024-02-29 +00`, which pgjdbc sends for a `Date`).
fn parse_date_with_time(s: &str) -> Option<i32> {
    let (date, rest) = s.split_once([' ', 'T'])?;
    let rest = rest.trim();
    let zone_only = rest.starts_with(['+', '-'])
        && rest[1..].chars().all(|c| c.is_ascii_digit() || c == ':')
        && rest.len() > 1;
    if zone_only || rest.eq_ignore_ascii_case("z") || parse_timestamp(s).is_some() {
        parse_date(date)
    } else {
        None
    }
}

/// Parses `YYYY-MM-DD[ |T]HH:MM[:SS[.ffffff]][Z|±HH[:MM]]`; returns micros and the offset in
/// seconds when one was given.
pub fn parse_timestamp(s: &str) -> Option<(i64, Option<i64>)> {
    let (s, bc) = strip_era(s.trim());
    let s = s.trim();
    let (date, rest) = match s.find([' ', 'T']) {
        Some(i) => (&s[..i], s[i + 1..].trim()),
        None => (s, ""),
    };
    let days = parse_ymd(date, bc)? as i64;
    let mut micros = days * MICROS_PER_DAY;
    if rest.is_empty() {
        return Some((micros, None));
    }
    // Split off a zone suffix.
    let (time, zone) = match rest.find(['+', '-', 'Z', 'z']) {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let time = time.trim();
    let mut hms = time.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let mi: i64 = hms.next()?.parse().ok()?;
    let sec_part = hms.next().unwrap_or("0");
    let (sec, frac) = match sec_part.split_once('.') {
        Some((a, b)) => (a, b),
        None => (sec_part, ""),
    };
    let sec: i64 = sec.parse().ok()?;
    if h > 24 || mi > 59 || sec > 60 {
        return None;
    }
    let mut frac_micros = 0i64;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(6).collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        frac_micros = format!("{digits:0<6}").parse().ok()?;
    }
    micros += ((h * 60 + mi) * 60 + sec) * 1_000_000 + frac_micros;
    let offset = match zone {
        None => None,
        Some(z) if z.eq_ignore_ascii_case("z") => Some(0),
        Some(z) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let body = z[1..].trim();
            let (hh, mm) = match body.split_once(':') {
                Some((a, b)) => (a.parse::<i64>().ok()?, b.parse::<i64>().ok()?),
                None if body.len() == 4 => (body[..2].parse().ok()?, body[2..].parse().ok()?),
                None => (body.parse().ok()?, 0),
            };
            Some(sign * (hh * 3600 + mm * 60))
        }
    };
    Some((micros, offset))
}

pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(days as i64);
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

pub fn format_timestamp(micros: i64) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let rem = micros.rem_euclid(MICROS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    // 1 BC is year 0: PostgreSQL writes the year counted back, then BC.
    let (y, bc) = if y <= 0 { (1 - y, true) } else { (y, false) };
    let mut s = format!(
        "{y:04}-{m:02}-{d:02} {}",
        crate::sql::time_of_day::format_time(rem)
    );
    if bc {
        s.push_str(" BC");
    }
    s
}

pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let s = s.trim().trim_start_matches('{').trim_end_matches('}');
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

pub fn format_uuid(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        write!(s, "{b:02x}").unwrap();
    }
    s
}

/// The sign words of PostgreSQL's binary numeric that mark the special values.
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// PostgreSQL's binary numeric: ndigits, weight, sign, dscale, then base-10000 digits.
fn encode_numeric_binary(d: &Decimal, out: &mut Vec<u8>) {
    let text = d.abs().to_string();
    let (int_part, frac_part) = match text.split_once('.') {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (text.clone(), String::new()),
    };
    let dscale = frac_part.len() as u16;
    let int_part = int_part.trim_start_matches('0');
    // Pad the integer part on the left and the fraction on the right to groups of 4.
    let pad_left = (4 - int_part.len() % 4) % 4;
    let int_padded = format!("{}{}", "0".repeat(pad_left), int_part);
    let pad_right = (4 - frac_part.len() % 4) % 4;
    let frac_padded = format!("{}{}", frac_part, "0".repeat(pad_right));
    let mut digits: Vec<i16> = Vec::new();
    for c in int_padded.as_bytes().chunks(4) {
        digits.push(std::str::from_utf8(c).unwrap().parse().unwrap());
    }
    let int_groups = digits.len() as i16;
    for c in frac_padded.as_bytes().chunks(4) {
        digits.push(std::str::from_utf8(c).unwrap().parse().unwrap());
    }
    let mut weight = int_groups - 1;
    // Strip leading zero groups (adjusting the weight) and trailing zero groups.
    while digits.first() == Some(&0) {
        digits.remove(0);
        weight -= 1;
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    let sign: u16 = if d.is_sign_negative() && !d.is_zero() {
        0x4000
    } else {
        0
    };
    out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in digits {
        out.extend_from_slice(&g.to_be_bytes());
    }
}

fn decode_numeric_binary(b: &[u8]) -> Option<Decimal> {
    if b.len() < 8 {
        return None;
    }
    let nd = i16::from_be_bytes([b[0], b[1]]) as usize;
    let weight = i16::from_be_bytes([b[2], b[3]]) as i32;
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = u16::from_be_bytes([b[6], b[7]]) as u32;
    if b.len() != 8 + 2 * nd || sign == 0xC000 {
        return None;
    }
    let mut s = String::new();
    let mut int_digits = String::new();
    let mut frac_digits = String::new();
    for i in 0..nd {
        let g = i16::from_be_bytes([b[8 + 2 * i], b[9 + 2 * i]]);
        let pos = weight - i as i32;
        if pos >= 0 {
            int_digits.push_str(&format!("{g:04}"));
        } else {
            frac_digits.push_str(&format!("{g:04}"));
        }
    }
    // Zero groups between the last digit and the decimal point.
    let last_pos = weight - nd as i32 + 1;
    if last_pos > 0 {
        for _ in 0..last_pos {
            int_digits.push_str("0000");
        }
    }
    if weight < -1 {
        let lead = "0000".repeat((-weight - 1) as usize);
        frac_digits = lead + &frac_digits;
    }
    if sign == 0x4000 {
        s.push('-');
    }
    let int_trim = int_digits.trim_start_matches('0');
    s.push_str(if int_trim.is_empty() { "0" } else { int_trim });
    if dscale > 0 {
        s.push('.');
        let mut f = frac_digits;
        while (f.len() as u32) < dscale {
            f.push('0');
        }
        s.push_str(&f[..dscale as usize]);
    }
    s.parse().ok()
}

/// The elements of an array value of type `ty` in text form (`{a,"b c",NULL}`, or for
/// `int2vector` `1 2`), `None` for a NULL element. Only one dimension.
pub fn array_elements(ty: SqlType, s: &str) -> Result<Vec<Option<String>>> {
    if ty.is_vector() {
        return Ok(s.split_whitespace().map(|e| Some(e.to_string())).collect());
    }
    Ok(crate::sql::array::Array::parse(s)?.elems)
}

/// PostgreSQL's text form of a one-dimensional array of these elements (already in their
/// text form): quoted where an element is empty, `NULL`, or holds a delimiter, a quote, a
/// backslash or white space.
pub fn format_array(elems: &[Option<String>]) -> String {
    let mut out = String::from("{");
    for (i, e) in elems.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        crate::sql::array::push_element(&mut out, e.as_deref());
    }
    out.push('}');
    out
}

/// The binary form of an array (ndim, has-nulls flag, element oid, then per dimension its
/// length and lower bound 1, then each element as length and binary value).
fn encode_array_binary(ty: SqlType, text: &str, out: &mut Vec<u8>) -> Result<()> {
    let elem = ty.array_elem().unwrap_or(SqlType::Text);
    let (dims, elems) = if ty.is_vector() {
        let elems = array_elements(ty, text)?;
        (vec![elems.len()], elems)
    } else {
        let a = crate::sql::array::Array::parse(text)?;
        (a.dims, a.elems)
    };
    let has_null = elems.iter().any(|e| e.is_none());
    let ndim = if elems.is_empty() { 0 } else { dims.len() };
    out.extend_from_slice(&(ndim as i32).to_be_bytes());
    out.extend_from_slice(&(has_null as i32).to_be_bytes());
    out.extend_from_slice(&elem.oid().to_be_bytes());
    for &d in dims.iter().take(ndim) {
        out.extend_from_slice(&(d as i32).to_be_bytes());
        out.extend_from_slice(&(if ty.is_vector() { 0i32 } else { 1 }).to_be_bytes());
    }
    let mut buf = Vec::new();
    for e in &elems {
        match e {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(e) => {
                buf.clear();
                Datum::parse(elem, e)?.to_binary(elem, &mut buf)?;
                out.extend_from_slice(&(buf.len() as i32).to_be_bytes());
                out.extend_from_slice(&buf);
            }
        }
    }
    Ok(())
}

/// Decodes a one-dimensional binary array of type `ty` into its text form.
fn decode_array_binary(ty: SqlType, b: &[u8]) -> Option<String> {
    let elem = ty.array_elem()?;
    let i32_at = |pos: usize| -> Option<i32> {
        Some(i32::from_be_bytes(b.get(pos..pos + 4)?.try_into().ok()?))
    };
    let ndim = i32_at(0)?;
    if ndim == 0 {
        return Some(if ty.is_vector() {
            String::new()
        } else {
            "{}".into()
        });
    }
    if ndim != 1 {
        return None;
    }
    let n = usize::try_from(i32_at(12)?).ok()?;
    let mut pos = 20;
    let mut elems = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let len = i32_at(pos)?;
        pos += 4;
        if len < 0 {
            elems.push(None);
            continue;
        }
        let v = b.get(pos..pos + len as usize)?;
        pos += len as usize;
        elems.push(Datum::from_binary(elem, v).ok()?.to_text(elem));
    }
    if pos != b.len() {
        return None;
    }
    if ty.is_vector() {
        return Some(elems.into_iter().flatten().collect::<Vec<_>>().join(" "));
    }
    Some(format_array(&elems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_parse_and_print_like_postgres() {
        let elems =
            array_elements(SqlType::TextArray, r#"{a, "b c" ,NULL,"NULL","q\"x",\,}"#).unwrap();
        assert_eq!(
            elems,
            vec![
                Some("a".to_string()),
                Some("b c".to_string()),
                None,
                Some("NULL".to_string()),
                Some("q\"x".to_string()),
                Some(",".to_string()),
            ]
        );
        assert_eq!(format_array(&elems), r#"{a,"b c",NULL,"NULL","q\"x",","}"#);
        assert_eq!(format_array(&[]), "{}");
        assert!(array_elements(SqlType::TextArray, "{a,}").is_err());
        assert!(array_elements(SqlType::TextArray, "a,b").is_err());
        let d = Datum::parse(SqlType::Int4Array, "{ 1, 2 ,3}").unwrap();
        assert_eq!(d.to_text(SqlType::Int4Array).unwrap(), "{1,2,3}");
        let mut bin = Vec::new();
        d.to_binary(SqlType::Int4Array, &mut bin).unwrap();
        let back = Datum::from_binary(SqlType::Int4Array, &bin).unwrap();
        assert_eq!(back.to_text(SqlType::Int4Array).unwrap(), "{1,2,3}");
        let v = Datum::parse(SqlType::Int2Vector, "1 3").unwrap();
        bin.clear();
        v.to_binary(SqlType::Int2Vector, &mut bin).unwrap();
        let back = Datum::from_binary(SqlType::Int2Vector, &bin).unwrap();
        assert_eq!(back.to_text(SqlType::Int2Vector).unwrap(), "1 3");
    }

    #[test]
    fn dates_round_trip() {
        for s in ["1970-01-01", "2000-02-29", "2024-12-31", "1900-03-01"] {
            assert_eq!(format_date(parse_date(s).unwrap()), s);
        }
        assert!(parse_date("2023-02-29").is_none());
        assert_eq!(parse_date("2000-01-01").unwrap(), PG_EPOCH_DAYS);
    }

    #[test]
    fn timestamps() {
        let (t, off) = parse_timestamp("2024-01-02 03:04:05.5+02").unwrap();
        assert_eq!(off, Some(7200));
        assert_eq!(format_timestamp(t), "2024-01-02 03:04:05.5");
    }

    #[test]
    fn numeric_binary_round_trip() {
        for s in [
            "0",
            "1",
            "-1.5",
            "12345.6789",
            "0.0001",
            "100000000",
            "3.14159",
            "-0.01",
        ] {
            let d: Decimal = s.parse().unwrap();
            let mut out = Vec::new();
            encode_numeric_binary(&d, &mut out);
            assert_eq!(decode_numeric_binary(&out).unwrap(), d, "{s}");
        }
    }

    #[test]
    fn floats_format_like_postgres() {
        assert_eq!(format_float(1.5, false), "1.5");
        assert_eq!(format_float(1e20, false), "1e+20");
        assert_eq!(format_float(0.1, false), "0.1");
        assert_eq!(format_float(-3.25e10, true), "-3.25e+10");
        assert_eq!(format_float(123456.0, true), "123456");
    }
}
