//! More of PostgreSQL's scalar functions, kept out of the binder's big switch: the
//! trigonometric and hyperbolic functions (and the degree-based `sind`, `cosd`, `tand`,
//! `cotd`, `asind`, `acosd`, `atand`, `atan2d`, exact at the special angles as
//! PostgreSQL's float.c makes them), `degrees` / `radians`, `gcd` / `lcm`,
//! `factorial`, `div`, `starts_with`, `chr`, `translate`, `quote_ident` / `quote_literal`
//! / `quote_nullable`, `string_to_array`, `date_trunc`, and the array shape functions
//! `array_length`, `array_lower`, `array_upper`, `array_ndims`, `array_dims` and
//! `cardinality` (arrays here always start at subscript 1).
//!
//! [`result_type`] answers the binder (the function's type for these argument types, or
//! `None` when the name is not one of these); [`eval`] computes a value from evaluated
//! arguments. Every function here is strict (NULL in, NULL out) except `quote_nullable`
//! and `string_to_array` (see [`is_non_strict`]).
//!
//! # Implementation caveats
//!
//! - The two-argument `log(b, x)` is not here.
//! - `date_trunc` on `timestamptz` truncates in the session's time zone; the
//!   three-argument form (`date_trunc(field, ts, zone)`) is not here.
//! - `factorial` stops at what `numeric` holds here (28 digits), with 22003.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::error::{Error, ErrorKind, Result};
use crate::sql::types::{civil_from_days, days_from_civil, Datum, SqlType};

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// PostgreSQL's `RADIANS_PER_DEGREE` (float.c), so degrees(pi()) is exactly 180.
const RADIANS_PER_DEGREE: f64 = 0.017_453_292_519_943_295;

/// The functions this module computes.
pub const NAMES: &[&str] = &[
    "sin",
    "cos",
    "tan",
    "cot",
    "asin",
    "acos",
    "atan",
    "atan2",
    "degrees",
    "radians",
    "gcd",
    "lcm",
    "factorial",
    "div",
    "starts_with",
    "chr",
    "translate",
    "like_escape",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "date_trunc",
    "sinh",
    "cosh",
    "tanh",
    "asinh",
    "acosh",
    "atanh",
    "string_to_array",
    "sind",
    "cosd",
    "tand",
    "cotd",
    "asind",
    "acosd",
    "atand",
    "atan2d",
    "timezone",
    "__series_array",
    "array_length",
    "array_lower",
    "array_upper",
    "array_ndims",
    "array_dims",
    "cardinality",
];

/// The result type of function `name` over arguments of `types`, when it is one of this
/// module's; `Err` for a known name with arguments it does not take.
pub fn result_type(name: &str, types: &[SqlType]) -> Option<Result<SqlType>> {
    let n = types.len();
    let numeric_arg = |t: &SqlType| t.is_numeric_family() || *t == SqlType::Unknown;
    let ty = match name {
        "sin" | "cos" | "tan" | "cot" | "asin" | "acos" | "atan" | "degrees" | "radians"
            if n == 1 =>
        {
            SqlType::Float8
        }
        "atan2" | "atan2d" if n == 2 => SqlType::Float8,
        "__series_array" => {
            if types.contains(&SqlType::Numeric) {
                SqlType::NumericArray
            } else if types.contains(&SqlType::Int8) {
                SqlType::Int8Array
            } else {
                SqlType::Int4Array
            }
        }
        // timezone(zone, ts), also `ts AT TIME ZONE zone`: a timestamp becomes the
        // instant it is in that zone; an instant (or a date, or an untyped literal, read as
        // timestamptz) becomes that zone's wall-clock time.
        "timezone"
            if n == 2
                && (types[0].is_string()
                    || matches!(types[0], SqlType::Interval | SqlType::Unknown)) =>
        {
            match types[1] {
                SqlType::Timestamp => SqlType::TimestampTz,
                SqlType::TimestampTz | SqlType::Date | SqlType::Unknown => SqlType::Timestamp,
                _ => return Some(Err(undefined(name, types))),
            }
        }
        "sind" | "cosd" | "tand" | "cotd" | "asind" | "acosd" | "atand" if n == 1 => {
            SqlType::Float8
        }
        "sinh" | "cosh" | "tanh" | "asinh" | "acosh" | "atanh" if n == 1 => SqlType::Float8,
        "array_length" | "array_lower" | "array_upper" | "array_ndims" | "array_dims"
        | "cardinality" => {
            let array = |t: SqlType| t.array_elem().is_some() && !t.is_vector();
            let dim = |t: SqlType| t.is_int() || t == SqlType::Unknown;
            let ok = match name {
                "array_length" | "array_lower" | "array_upper" => {
                    n == 2 && array(types[0]) && dim(types[1])
                }
                _ => n == 1 && array(types[0]),
            };
            if !ok {
                return Some(Err(undefined(name, types)));
            }
            if name == "array_dims" {
                SqlType::Text
            } else {
                SqlType::Int4
            }
        }
        "string_to_array"
            if (n == 2 || n == 3)
                && types
                    .iter()
                    .all(|t| t.is_string() || *t == SqlType::Unknown) =>
        {
            SqlType::TextArray
        }
        "gcd" | "lcm" if n == 2 => {
            if types.iter().all(|t| t.is_int() || *t == SqlType::Unknown) {
                if types.contains(&SqlType::Int8) {
                    SqlType::Int8
                } else {
                    SqlType::Int4
                }
            } else {
                SqlType::Numeric
            }
        }
        "factorial" | "div" => SqlType::Numeric,
        "starts_with" if n == 2 => SqlType::Bool,
        "chr" if n == 1 => SqlType::Text,
        "translate" if n == 3 => SqlType::Text,
        "like_escape" if n == 2 => SqlType::Text,
        "quote_ident" | "quote_literal" | "quote_nullable" if n == 1 => SqlType::Text,
        "date_trunc" if n == 2 => match types[1] {
            SqlType::Timestamp | SqlType::Unknown => SqlType::Timestamp,
            SqlType::TimestampTz | SqlType::Date => SqlType::TimestampTz,
            _ => return Some(Err(undefined(name, types))),
        },
        "sin" | "cos" | "tan" | "cot" | "asin" | "acos" | "atan" | "degrees" | "radians"
        | "atan2" | "gcd" | "lcm" | "starts_with" | "chr" | "translate" | "like_escape"
        | "quote_ident" | "quote_literal" | "quote_nullable" | "date_trunc" | "sinh" | "cosh"
        | "tanh" | "asinh" | "acosh" | "atanh" | "string_to_array" | "sind" | "cosd" | "tand"
        | "cotd" | "asind" | "acosd" | "atand" | "atan2d" | "timezone" => {
            return Some(Err(undefined(name, types)))
        }
        _ => return None,
    };
    let numeric_only = matches!(
        name,
        "sin"
            | "cos"
            | "tan"
            | "cot"
            | "asin"
            | "acos"
            | "atan"
            | "atan2"
            | "sinh"
            | "cosh"
            | "tanh"
            | "asinh"
            | "acosh"
            | "atanh"
            | "sind"
            | "cosd"
            | "tand"
            | "cotd"
            | "asind"
            | "acosd"
            | "atand"
            | "atan2d"
            | "degrees"
            | "radians"
            | "gcd"
            | "lcm"
            | "factorial"
            | "div"
    );
    if numeric_only && !types.iter().all(numeric_arg) {
        return Some(Err(undefined(name, types)));
    }
    if matches!(name, "factorial") && n != 1 || matches!(name, "div") && n != 2 {
        return Some(Err(undefined(name, types)));
    }
    Some(Ok(ty))
}

/// Whether `name` is one of this module's functions that takes NULL arguments.
pub fn is_non_strict(name: &str) -> bool {
    name == "quote_nullable" || name == "string_to_array"
}

/// 42883 for a call no signature of `name` accepts.
pub(crate) fn undefined(name: &str, types: &[SqlType]) -> Error {
    Error::new(
        ErrorKind::UndefinedFunction,
        format!(
            "function {name}({}) does not exist",
            types
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

fn float(d: &Datum) -> f64 {
    match d {
        Datum::Int(i) => *i as f64,
        Datum::Float(f) => *f,
        Datum::Numeric(n) => n.to_f64().unwrap_or(0.0),
        Datum::NumericSpecial(x) => x.to_f64(),
        Datum::Text(s) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn decimal(d: &Datum) -> Result<Decimal> {
    match d {
        Datum::Int(i) => Ok(Decimal::from(*i)),
        Datum::Numeric(n) => Ok(*n),
        Datum::Float(f) => Decimal::try_from(*f)
            .map_err(|_| Error::out_of_range("value out of range for type numeric")),
        Datum::Text(s) => s.trim().parse().map_err(|_| {
            Error::new(
                ErrorKind::InvalidTextRepresentation,
                format!("invalid input syntax for type numeric: \"{s}\""),
            )
        }),
        _ => Err(Error::mismatch("a number is needed")),
    }
}

/// `string_to_array(s, delimiter [, null_string])`: NULL for a NULL `s`; a NULL
/// delimiter splits into characters, an empty one keeps `s` whole; elements equal to
/// `null_string` are NULL.
/// `array_length`, `array_lower`, `array_upper` (NULL for a dimension the array lacks),
/// `array_ndims`, `array_dims` (NULL for the empty array) and `cardinality`.
fn array_shape(name: &str, vals: &[Datum]) -> Result<Datum> {
    let dims = crate::sql::array::Array::parse(&text(&vals[0]))?.dims;
    let dim = || match vals.get(1) {
        Some(Datum::Int(d)) if *d >= 1 => dims.get(*d as usize - 1).copied(),
        _ => None,
    };
    let int = |v: usize| Datum::Int(v as i64);
    Ok(match name {
        "array_length" | "array_upper" => dim().map_or(Datum::Null, int),
        "array_lower" => dim().map_or(Datum::Null, |_| Datum::Int(1)),
        "array_ndims" if dims.is_empty() => Datum::Null,
        "array_ndims" => int(dims.len()),
        "array_dims" if dims.is_empty() => Datum::Null,
        "array_dims" => Datum::Text(dims.iter().map(|d| format!("[1:{d}]")).collect()),
        _ => int(dims.iter().product::<usize>() * usize::from(!dims.is_empty())),
    })
}

fn string_to_array(vals: &[Datum]) -> Datum {
    let Some(Datum::Text(s)) = vals.first() else {
        return Datum::Null;
    };
    let null_str = match vals.get(2) {
        Some(Datum::Text(n)) => Some(n.as_str()),
        _ => None,
    };
    let parts: Vec<&str> = if s.is_empty() {
        Vec::new()
    } else {
        match vals.get(1) {
            Some(Datum::Text(d)) if d.is_empty() => vec![s.as_str()],
            Some(Datum::Text(d)) => s.split(d.as_str()).collect(),
            _ => s
                .char_indices()
                .map(|(i, c)| &s[i..i + c.len_utf8()])
                .collect(),
        }
    };
    let elems: Vec<Option<String>> = parts
        .into_iter()
        .map(|p| (Some(p) != null_str).then(|| p.to_string()))
        .collect();
    Datum::Text(crate::sql::types::format_array(&elems))
}

/// PostgreSQL's `like_escape(pattern, escape)`: the pattern rewritten so that a
/// backslash is its escape character (what LIKE reads), as `LIKE … ESCAPE` needs. An
/// empty `escape` means none (every backslash becomes a literal one).
pub fn like_escape(pattern: &str, escape: &str) -> Result<String> {
    let mut esc = escape.chars();
    let e = esc.next();
    if esc.next().is_some() {
        return Err(
            Error::new(ErrorKind::InvalidEscapeSequence, "invalid escape string")
                .with_hint("Escape string must be empty or one character."),
        );
    }
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == e {
            // A trailing escape stays a trailing backslash (PostgreSQL's output too).
            out.push('\\');
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn text(d: &Datum) -> String {
    match d {
        Datum::Text(s) => s.clone(),
        d => d.to_text(d.natural_type()).unwrap_or_default(),
    }
}

fn out_of_range_input() -> Error {
    Error::out_of_range("input is out of range")
}

/// Computes function `name` (one [`result_type`] accepted) over evaluated arguments.
pub fn eval(name: &str, vals: &[Datum], ty: SqlType) -> Result<Datum> {
    let x = || float(&vals[0]);
    if name.starts_with("array_") || name == "cardinality" {
        return array_shape(name, vals);
    }
    Ok(match name {
        "sin" => Datum::Float(x().sin()),
        "cos" => Datum::Float(x().cos()),
        "tan" => Datum::Float(x().tan()),
        "cot" => Datum::Float(1.0 / x().tan()),
        "asin" | "acos" => {
            let v = x();
            if !(-1.0..=1.0).contains(&v) {
                return Err(out_of_range_input());
            }
            Datum::Float(if name == "asin" { v.asin() } else { v.acos() })
        }
        "atan" => Datum::Float(x().atan()),
        "sinh" => Datum::Float(x().sinh()),
        "cosh" => Datum::Float(x().cosh()),
        "tanh" => Datum::Float(x().tanh()),
        "asinh" => Datum::Float(x().asinh()),
        "acosh" if x() < 1.0 => return Err(out_of_range_input()),
        "acosh" => Datum::Float(x().acosh()),
        "atanh" if x().abs() > 1.0 => return Err(out_of_range_input()),
        "atanh" => Datum::Float(x().atanh()),
        "string_to_array" => string_to_array(vals),
        "sind" | "cosd" | "tand" | "cotd" => degrees::trig(name, x())?,
        "asind" | "acosd" => degrees::inverse(name, x())?,
        "atand" => Datum::Float(degrees::atand(x())),
        "__series_array" => series_array(vals, ty)?,
        "timezone" => {
            let zone = zone_of(&vals[0])?;
            if ty == SqlType::TimestampTz {
                let Datum::Timestamp(local) = vals[1].clone().cast(SqlType::Timestamp)? else {
                    return Err(Error::mismatch("timezone() needs a timestamp"));
                };
                Datum::TimestampTz(zone.to_utc(local))
            } else {
                let Datum::TimestampTz(utc) = vals[1].clone().cast(SqlType::TimestampTz)? else {
                    return Err(Error::mismatch("timezone() needs a timestamptz"));
                };
                Datum::Timestamp(zone.to_local(utc))
            }
        }
        "atan2d" => Datum::Float(degrees::atan2d(x(), float(&vals[1]))),
        "atan2" => Datum::Float(x().atan2(float(&vals[1]))),
        "degrees" => Datum::Float(x() / RADIANS_PER_DEGREE),
        "radians" => Datum::Float(x() * RADIANS_PER_DEGREE),
        "gcd" | "lcm" if ty.is_int() => {
            let (Datum::Int(a), Datum::Int(b)) = (&vals[0], &vals[1]) else {
                return Err(Error::mismatch("gcd/lcm need integers"));
            };
            let overflow = || {
                Error::out_of_range(if ty == SqlType::Int8 {
                    "bigint out of range"
                } else {
                    "integer out of range"
                })
            };
            let g = gcd(*a as i128, *b as i128);
            let v = if name == "gcd" {
                g
            } else if g == 0 {
                0
            } else {
                (*a as i128 / g * *b as i128).abs()
            };
            let limit = if ty == SqlType::Int8 {
                i64::MAX as i128
            } else {
                i32::MAX as i128
            };
            if v > limit {
                return Err(overflow());
            }
            Datum::Int(v as i64)
        }
        "gcd" | "lcm" => {
            let (a, b) = (decimal(&vals[0])?, decimal(&vals[1])?);
            let g = decimal_gcd(a.abs(), b.abs());
            Datum::Numeric(if name == "gcd" {
                g
            } else if g.is_zero() {
                Decimal::ZERO
            } else {
                (a / g * b)
                    .abs()
                    .checked_mul(Decimal::ONE)
                    .ok_or_else(|| Error::out_of_range("value overflows numeric format"))?
            })
        }
        "factorial" => {
            let n = match &vals[0] {
                Datum::Int(i) => *i,
                d => decimal(d)?.to_i64().unwrap_or(i64::MAX),
            };
            if n < 0 {
                return Err(Error::out_of_range(
                    "factorial of a negative number is undefined",
                ));
            }
            let mut acc = Decimal::ONE;
            for k in 2..=n {
                acc = acc
                    .checked_mul(Decimal::from(k))
                    .ok_or_else(|| Error::out_of_range("value overflows numeric format"))?;
            }
            Datum::Numeric(acc)
        }
        "div" => {
            let (a, b) = (decimal(&vals[0])?, decimal(&vals[1])?);
            if b.is_zero() {
                return Err(Error::new(ErrorKind::DivisionByZero, "division by zero"));
            }
            let q = a
                .checked_div(b)
                .ok_or_else(|| Error::out_of_range("value overflows numeric format"))?;
            Datum::Numeric(q.trunc())
        }
        "starts_with" => Datum::Bool(text(&vals[0]).starts_with(&text(&vals[1]))),
        "chr" => {
            let code = match &vals[0] {
                Datum::Int(i) => *i,
                d => float(d) as i64,
            };
            if code == 0 {
                return Err(Error::new(
                    ErrorKind::ProgramLimitExceeded,
                    "null character not permitted",
                ));
            }
            let c = u32::try_from(code)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::ProgramLimitExceeded,
                        "requested character too large for encoding",
                    )
                })?;
            Datum::Text(c.to_string())
        }
        "like_escape" => Datum::Text(like_escape(&text(&vals[0]), &text(&vals[1]))?),
        "translate" => {
            let from: Vec<char> = text(&vals[1]).chars().collect();
            let to: Vec<char> = text(&vals[2]).chars().collect();
            let mut out = String::new();
            for c in text(&vals[0]).chars() {
                match from.iter().position(|f| *f == c) {
                    Some(i) => {
                        if let Some(t) = to.get(i) {
                            out.push(*t);
                        }
                    }
                    None => out.push(c),
                }
            }
            Datum::Text(out)
        }
        "quote_ident" => Datum::Text(quote_ident(&text(&vals[0]))),
        "quote_literal" => Datum::Text(quote_literal(&text(&vals[0]))),
        "quote_nullable" => Datum::Text(match &vals[0] {
            Datum::Null => "NULL".into(),
            d => quote_literal(&text(d)),
        }),
        "date_trunc" => date_trunc(&text(&vals[0]), &vals[1], ty)?,
        _ => return Err(Error::internal(format!("no function {name} here"))),
    })
}

/// The most elements `generate_series` makes in a select list (it is built as an array).
const MAX_SERIES_ARRAY: usize = 10_000_000;

/// `generate_series(start, stop [, step])` of a select list as an array of type `ty`
/// (`exec::series_array`): empty when the step goes away from `stop`.
fn series_array(vals: &[Datum], ty: SqlType) -> Result<Datum> {
    if let Some(e) = crate::sql::numeric_special::series_argument_error(vals) {
        return Err(e);
    }
    let start = decimal(&vals[0])?;
    let stop = decimal(&vals[1])?;
    let step = match vals.get(2) {
        Some(d) => decimal(d)?,
        None => Decimal::ONE,
    };
    if step.is_zero() {
        return Err(Error::new(
            ErrorKind::InvalidParameterValue,
            "step size cannot equal zero",
        ));
    }
    let mut elems = Vec::new();
    let mut v = start;
    while (step.is_sign_positive() && v <= stop) || (step.is_sign_negative() && v >= stop) {
        if elems.len() == MAX_SERIES_ARRAY {
            return Err(Error::new(
                ErrorKind::ProgramLimitExceeded,
                format!(
                    "generate_series() in a select list makes at most {MAX_SERIES_ARRAY} rows \
                     here; use it in FROM"
                ),
            ));
        }
        elems.push(Some(if ty == SqlType::NumericArray {
            v.to_string()
        } else {
            v.trunc().to_string()
        }));
        v = match v.checked_add(step) {
            Some(next) => next,
            None => break,
        };
    }
    Ok(Datum::Text(crate::sql::types::format_array(&elems)))
}

/// Time zone `zone` as AT TIME ZONE reads it: an interval (no months or days), a zone
/// name or abbreviation, or a POSIX-style offset (`UTC+3`: hours *west* of Greenwich).
pub fn zone_of(zone: &Datum) -> Result<crate::sql::time_zone::Zone> {
    if let Datum::Interval(iv) = zone {
        if iv.months != 0 || iv.days != 0 {
            return Err(Error::new(
                ErrorKind::InvalidParameterValue,
                format!(
                    "interval time zone \"{}\" must not include months or days",
                    iv.to_text()
                ),
            ));
        }
        return Ok(crate::sql::time_zone::Zone::Fixed {
            offset_secs: (iv.micros / 1_000_000) as i32,
            abbrev: String::new(),
        });
    }
    crate::sql::time_zone::Zone::parse_or_error(&text(zone), true)
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn decimal_gcd(mut a: Decimal, mut b: Decimal) -> Decimal {
    while !b.is_zero() {
        (a, b) = (b, a % b);
    }
    a
}

/// `quote_ident`: the name as is when it needs no quotes (lower-case letters, digits and
/// underscores, not starting with a digit), else in double quotes with quotes doubled.
pub fn quote_ident(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// `quote_literal`: single quotes doubled; a value with backslashes becomes an `E'…'`
/// string with them doubled.
pub fn quote_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// `date_trunc(field, value)`: the value with every field finer than `field` zeroed.
fn date_trunc(field: &str, v: &Datum, ty: SqlType) -> Result<Datum> {
    // A timestamptz truncates its wall-clock time in the session's zone.
    let micros = match v {
        Datum::Timestamp(t) => *t,
        Datum::TimestampTz(t) => crate::sql::time_zone::with_current(|z| z.to_local(*t)),
        Datum::Date(d) => *d as i64 * MICROS_PER_DAY,
        Datum::Text(s) => match crate::sql::types::parse_timestamp(s) {
            Some((t, off)) => t - off.unwrap_or(0) * 1_000_000,
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidDatetimeFormat,
                    format!("invalid input syntax for type timestamp: \"{s}\""),
                ))
            }
        },
        _ => return Err(Error::mismatch("date_trunc needs a timestamp")),
    };
    let days = micros.div_euclid(MICROS_PER_DAY);
    let of_day = micros.rem_euclid(MICROS_PER_DAY);
    let (y, m, _) = civil_from_days(days);
    let at = |days: i64, of_day: i64| days * MICROS_PER_DAY + of_day;
    let first_of_year = |y: i64| days_from_civil(y, 1, 1);
    let unit = field.to_ascii_lowercase();
    let truncated = match unit.as_str() {
        "microseconds" | "microsecond" => micros,
        "milliseconds" | "millisecond" => at(days, of_day - of_day % 1_000),
        "second" | "seconds" => at(days, of_day - of_day % 1_000_000),
        "minute" | "minutes" => at(days, of_day - of_day % 60_000_000),
        "hour" | "hours" => at(days, of_day - of_day % 3_600_000_000),
        "day" | "days" => at(days, 0),
        // Weeks start on Monday; 1970-01-01 was a Thursday.
        "week" | "weeks" => at(days - (days + 3).rem_euclid(7), 0),
        "month" | "months" => at(days_from_civil(y, m, 1), 0),
        "quarter" => at(days_from_civil(y, (m - 1) / 3 * 3 + 1, 1), 0),
        "year" | "years" => at(first_of_year(y), 0),
        "decade" | "decades" => at(first_of_year(y.div_euclid(10) * 10), 0),
        "century" | "centuries" => at(first_of_year((y - 1).div_euclid(100) * 100 + 1), 0),
        "millennium" | "millennia" => at(first_of_year((y - 1).div_euclid(1000) * 1000 + 1), 0),
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidParameterValue,
                format!(
                    "unit \"{field}\" not recognized for type {}",
                    if ty == SqlType::TimestampTz {
                        "timestamp with time zone"
                    } else {
                        "timestamp without time zone"
                    }
                ),
            ))
        }
    };
    Ok(if ty == SqlType::TimestampTz {
        Datum::TimestampTz(crate::sql::time_zone::with_current(|z| z.to_utc(truncated)))
    } else {
        Datum::Timestamp(truncated)
    })
}

/// PostgreSQL's degree-based trigonometry (float.c): the argument is reduced to the
/// first quadrant and the result scaled so that 30°, 45°, 60° and 90° give exact values.
mod degrees {
    use super::{out_of_range_input, RADIANS_PER_DEGREE};
    use crate::error::Result;
    use crate::sql::types::Datum;

    fn sin_30() -> f64 {
        (30.0 * RADIANS_PER_DEGREE).sin()
    }
    fn one_minus_cos_60() -> f64 {
        1.0 - (60.0 * RADIANS_PER_DEGREE).cos()
    }
    fn sind_0_to_30(x: f64) -> f64 {
        ((x * RADIANS_PER_DEGREE).sin() / sin_30()) / 2.0
    }
    fn cosd_0_to_60(x: f64) -> f64 {
        let one_minus_cos_x = 1.0 - (x * RADIANS_PER_DEGREE).cos();
        1.0 - (one_minus_cos_x / one_minus_cos_60()) / 2.0
    }
    fn sind_q1(x: f64) -> f64 {
        if x <= 30.0 {
            sind_0_to_30(x)
        } else {
            cosd_0_to_60(90.0 - x)
        }
    }
    fn cosd_q1(x: f64) -> f64 {
        if x <= 60.0 {
            cosd_0_to_60(x)
        } else {
            sind_0_to_30(90.0 - x)
        }
    }

    /// sind, cosd, tand, cotd.
    pub fn trig(name: &str, arg: f64) -> Result<Datum> {
        if arg.is_nan() {
            return Ok(Datum::Float(f64::NAN));
        }
        if arg.is_infinite() {
            return Err(out_of_range_input());
        }
        let mut x = arg % 360.0;
        let mut sign = 1.0;
        if x < 0.0 {
            x = -x;
            if name != "cosd" {
                sign = -sign;
            }
        }
        if x > 180.0 {
            x = 360.0 - x;
            if name != "cosd" {
                sign = -sign;
            }
        }
        if x > 90.0 {
            x = 180.0 - x;
            if name != "sind" {
                sign = -sign;
            }
        }
        let tan_45 = sind_q1(45.0) / cosd_q1(45.0);
        let result = match name {
            "sind" => sign * sind_q1(x),
            "cosd" => sign * cosd_q1(x),
            "tand" => sign * ((sind_q1(x) / cosd_q1(x)) / tan_45),
            _ => sign * ((cosd_q1(x) / sind_q1(x)) / (1.0 / tan_45)),
        };
        // No minus zero (tand(180)), as PostgreSQL.
        Ok(Datum::Float(if result == 0.0 { 0.0 } else { result }))
    }

    fn asind_q1(x: f64) -> f64 {
        if x <= 0.5 {
            (x.asin() / 0.5f64.asin()) * 30.0
        } else {
            90.0 - (x.acos() / 0.5f64.acos()) * 60.0
        }
    }
    fn acosd_q1(x: f64) -> f64 {
        if x <= 0.5 {
            90.0 - (x.asin() / 0.5f64.asin()) * 30.0
        } else {
            (x.acos() / 0.5f64.acos()) * 60.0
        }
    }

    /// asind, acosd: 22003 outside [-1, 1].
    pub fn inverse(name: &str, x: f64) -> Result<Datum> {
        if x.is_nan() {
            return Ok(Datum::Float(f64::NAN));
        }
        if !(-1.0..=1.0).contains(&x) {
            return Err(out_of_range_input());
        }
        Ok(Datum::Float(match (name, x >= 0.0) {
            ("asind", true) => asind_q1(x),
            ("asind", false) => -asind_q1(-x),
            (_, true) => acosd_q1(x),
            (_, false) => 90.0 + asind_q1(-x),
        }))
    }

    pub fn atand(x: f64) -> f64 {
        (x.atan() / 1f64.atan()) * 45.0
    }

    pub fn atan2d(y: f64, x: f64) -> f64 {
        (y.atan2(x) / 1f64.atan()) * 45.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Datum {
        Datum::Timestamp(crate::sql::types::parse_timestamp(s).unwrap().0)
    }

    #[test]
    fn date_trunc_fields() {
        let v = ts("2024-05-17 13:45:12.987");
        let t = |f: &str| match date_trunc(f, &v, SqlType::Timestamp).unwrap() {
            Datum::Timestamp(m) => crate::sql::types::format_timestamp(m),
            _ => unreachable!(),
        };
        assert_eq!(t("year"), "2024-01-01 00:00:00");
        assert_eq!(t("quarter"), "2024-04-01 00:00:00");
        assert_eq!(t("week"), "2024-05-13 00:00:00");
        assert_eq!(t("second"), "2024-05-17 13:45:12");
        assert_eq!(t("century"), "2001-01-01 00:00:00");
        assert_eq!(t("decade"), "2020-01-01 00:00:00");
        assert!(date_trunc("fortnight", &v, SqlType::Timestamp).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("abc"), "abc");
        assert_eq!(quote_ident("Abc"), "\"Abc\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
    }

    #[test]
    fn integer_gcd_lcm() {
        let v = |n, a, b| match eval(n, &[Datum::Int(a), Datum::Int(b)], SqlType::Int4) {
            Ok(Datum::Int(i)) => i,
            _ => panic!("not an integer"),
        };
        assert_eq!(v("gcd", -12, 18), 6);
        assert_eq!(v("lcm", 4, 6), 12);
        assert_eq!(v("lcm", 0, 3), 0);
        assert!(eval(
            "lcm",
            &[Datum::Int(i32::MAX as i64), Datum::Int(2)],
            SqlType::Int4
        )
        .is_err());
    }
}
