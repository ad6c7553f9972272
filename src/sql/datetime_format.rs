//! PostgreSQL's date/time formatting functions: `to_char(timestamp[tz] | date, format)`,
//! `to_date(text, format)`, `to_timestamp(text, format)` and `to_timestamp(epoch)`.
//!
//! A format is read as PostgreSQL's `formatting.c` reads it: the longest template pattern
//! that matches at each position (`YYYY` before `YY`, `HH24` before `HH`, `Month` before
//! `MON`), the case of `MONTH` / `Month` / `month` choosing the output's, an `FM` prefix
//! dropping the padding of the next pattern, a `TH` / `th` suffix adding an ordinal,
//! double-quoted text and a backslash-escaped character copied as they are, and every
//! other character copied.
//!
//! [`result_type`] answers the binder, [`eval`] computes a value from evaluated arguments;
//! every function is strict.
//!
//! # Implementation caveats
//!
//! - `to_char(interval, format)` formats the interval's fields as PostgreSQL does (hours
//!   beyond a day, negative fields with their sign) and refuses the fields that need a
//!   calendar date (`Month`, `Day`, `D`, `TZ` …: 22007).
//! - A timestamptz formats in the session's time zone ([`crate::sql::time_zone`]).
//! - `to_char` of numbers (`9`, `0`, `G`, `D` …), Roman numerals (`RM`), `J` (Julian day)
//!   and the ISO week-numbering fields (`IYYY`, `IW`) are not here; in parsing, only the
//!   numeric fields, month and day names, `AM`/`PM` and separators are read.

use crate::error::{Error, ErrorKind, Result};
use crate::sql::types::{civil_from_days, days_from_civil, Datum, SqlType};

const MICROS_PER_DAY: i64 = 86_400_000_000;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The functions this module computes.
pub const NAMES: &[&str] = &["to_char", "to_date", "to_timestamp"];

/// The result type of function `name` over arguments of `types`, when it is one of this
/// module's; `Err` for a known name with arguments it does not take.
pub fn result_type(name: &str, types: &[SqlType]) -> Option<Result<SqlType>> {
    if !NAMES.contains(&name) {
        return None;
    }
    let text = |t: SqlType| t.is_string() || t == SqlType::Unknown;
    let ty = match (name, types) {
        ("to_char", [SqlType::Timestamp | SqlType::Date, f]) if text(*f) => SqlType::Text,
        ("to_char", [SqlType::TimestampTz | SqlType::Interval, f]) if text(*f) => SqlType::Text,
        ("to_date", [a, b]) if text(*a) && text(*b) => SqlType::Date,
        ("to_timestamp", [a, b]) if text(*a) && text(*b) => SqlType::TimestampTz,
        ("to_timestamp", [a]) if a.is_numeric_family() || *a == SqlType::Unknown => {
            SqlType::TimestampTz
        }
        _ => return Some(Err(super::scalar_functions::undefined(name, types))),
    };
    Some(Ok(ty))
}

/// Computes function `name` (one [`result_type`] accepted) over evaluated, non-NULL
/// arguments.
pub fn eval(name: &str, vals: &[Datum]) -> Result<Datum> {
    let text = |d: &Datum| match d {
        Datum::Text(s) => s.clone(),
        d => d.to_text(d.natural_type()).unwrap_or_default(),
    };
    match (name, vals) {
        ("to_char", [Datum::Interval(iv), f]) => Ok(Datum::Text(interval_to_char(iv, &text(f))?)),
        ("to_char", [v, f]) => {
            let (micros, zone) = match v {
                Datum::Timestamp(m) => (*m, None),
                Datum::TimestampTz(m) => crate::sql::time_zone::with_current(|z| {
                    let offset = z.offset_at(*m);
                    let local = m.saturating_add(offset as i64 * 1_000_000);
                    (local, Some((offset, z.abbreviation_at(*m))))
                }),
                Datum::Date(d) => (*d as i64 * MICROS_PER_DAY, None),
                other => match other.clone().cast(SqlType::Timestamp)? {
                    Datum::Timestamp(m) => (m, None),
                    _ => return Err(Error::mismatch("to_char() needs a timestamp")),
                },
            };
            Ok(Datum::Text(to_char(micros, zone, &text(f))))
        }
        ("to_date", [s, f]) => {
            let micros = parse(&text(s), &text(f))?;
            Ok(Datum::Date(micros.div_euclid(MICROS_PER_DAY) as i32))
        }
        ("to_timestamp", [s, f]) => {
            let local = parse(&text(s), &text(f))?;
            Ok(Datum::TimestampTz(crate::sql::time_zone::with_current(
                |z| z.to_utc(local),
            )))
        }
        ("to_timestamp", [epoch]) => {
            let secs = match epoch {
                Datum::Int(i) => *i as f64,
                Datum::Float(f) => *f,
                other => text(other).trim().parse::<f64>().map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidTextRepresentation,
                        format!(
                            "invalid input syntax for type double precision: \"{}\"",
                            text(other)
                        ),
                    )
                })?,
            };
            if !secs.is_finite() || secs.abs() > 9.0e12 {
                return Err(Error::out_of_range(format!(
                    "timestamp out of range: \"{secs}\""
                )));
            }
            Ok(Datum::TimestampTz((secs * 1e6).round() as i64))
        }
        _ => Err(Error::internal(format!("no function {name} here"))),
    }
}

/// The template patterns, longest first where one is a prefix of another.
const PATTERNS: &[&str] = &[
    "HH24", "HH12", "HH", "MI", "SSSSS", "SSSS", "SS", "MS", "US", "FF1", "FF2", "FF3", "FF4",
    "FF5", "FF6", "A.M.", "P.M.", "AM", "PM", "Y,YYY", "YYYY", "YYY", "YY", "Y", "MONTH", "MON",
    "MM", "DAY", "DY", "DDD", "DD", "D", "IYYY", "IYY", "IY", "ID", "I", "WW", "W", "Q", "CC",
    "TZH", "TZM", "TZ", "OF",
];

/// One piece of a parsed format.
enum Piece {
    Literal(String),
    Pattern {
        /// The pattern, upper case.
        name: &'static str,
        /// Its case as written: 0 upper (`MONTH`), 1 capitalized (`Month`), 2 lower.
        case: u8,
        fill: bool,
        ordinal: Option<bool>,
    },
}

impl Piece {
    /// A pattern's (name, case, fill, ordinal); a literal's text as the error.
    fn fields(self) -> std::result::Result<(&'static str, u8, bool, Option<bool>), String> {
        match self {
            Piece::Literal(s) => Err(s),
            Piece::Pattern {
                name,
                case,
                fill,
                ordinal,
            } => Ok((name, case, fill, ordinal)),
        }
    }
}

fn parse_format(fmt: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    let mut literal = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                literal.push(chars[i]);
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == '\\' && i + 1 < chars.len() {
            literal.push(chars[i + 1]);
            i += 2;
            continue;
        }
        let rest: String = chars[i..].iter().collect();
        let upper = rest.to_uppercase();
        let (fill, skip) = if upper.starts_with("FM") {
            (true, 2)
        } else {
            (false, 0)
        };
        let after: String = chars[i + skip..].iter().collect();
        let after_upper = after.to_uppercase();
        let found = PATTERNS.iter().find(|p| after_upper.starts_with(**p));
        let Some(&name) = found else {
            literal.push(c);
            i += 1;
            continue;
        };
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        let written: Vec<char> = after.chars().take(name.chars().count()).collect();
        let case = if written.iter().all(|c| !c.is_lowercase()) {
            0
        } else if written.first().is_some_and(|c| c.is_uppercase()) {
            1
        } else {
            2
        };
        i += skip + written.len();
        let suffix: String = chars[i..].iter().take(2).collect();
        let ordinal = match suffix.as_str() {
            "TH" => Some(true),
            "th" => Some(false),
            _ => None,
        };
        if ordinal.is_some() {
            i += 2;
        }
        pieces.push(Piece::Pattern {
            name,
            case,
            fill,
            ordinal,
        });
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    pieces
}

fn cased(s: &str, case: u8) -> String {
    match case {
        0 => s.to_uppercase(),
        1 => s.to_string(),
        _ => s.to_lowercase(),
    }
}

fn ordinal_suffix(n: i64, upper: bool) -> &'static str {
    let s = if (11..=13).contains(&(n % 100)) {
        "th"
    } else {
        match n % 10 {
            1 => "st",
            2 => "nd",
            3 => "rd",
            _ => "th",
        }
    };
    match (upper, s) {
        (false, s) => s,
        (true, "st") => "ST",
        (true, "nd") => "ND",
        (true, "rd") => "RD",
        (true, _) => "TH",
    }
}

/// `to_char(ts, fmt)` for local time `micros` since the epoch; `zone`, for a timestamptz,
/// is the offset east of UTC (seconds) and abbreviation of the zone it is shown in.
pub fn to_char(micros: i64, zone: Option<(i32, String)>, fmt: &str) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let rem = micros.rem_euclid(MICROS_PER_DAY);
    let (y, mo, d) = civil_from_days(days);
    let hour = rem / 3_600_000_000;
    let min = rem / 60_000_000 % 60;
    let sec = rem / 1_000_000 % 60;
    let us = rem % 1_000_000;
    let dow = (days + 4).rem_euclid(7); // 1970-01-01 was a Thursday.
    let doy = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    for piece in parse_format(fmt) {
        let (name, case, fill, ordinal) = match piece.fields() {
            Ok(fields) => fields,
            Err(literal) => {
                out.push_str(&literal);
                continue;
            }
        };
        let num = |v: i64, width: usize| -> (String, i64) {
            if fill {
                (v.to_string(), v)
            } else if v < 0 {
                (format!("-{:0width$}", -v), v)
            } else {
                (format!("{v:0width$}"), v)
            }
        };
        let name_text = |full: &str, width: usize| {
            let s = cased(full, case);
            if fill {
                s
            } else {
                format!("{s:<width$}")
            }
        };
        let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
        let (text, n) = match name {
            "HH24" => num(hour, 2),
            "HH12" | "HH" => num(hour12, 2),
            "MI" => num(min, 2),
            "SS" => num(sec, 2),
            "SSSS" | "SSSSS" => num(rem / 1_000_000, 0),
            "MS" => num(us / 1000, 3),
            "US" => num(us, 6),
            "FF1" | "FF2" | "FF3" | "FF4" | "FF5" | "FF6" => {
                let digits = (name.as_bytes()[2] - b'0') as u32;
                num(us / 10i64.pow(6 - digits), digits as usize)
            }
            "AM" | "PM" => (cased(if hour < 12 { "AM" } else { "PM" }, case), -1),
            "A.M." | "P.M." => (cased(if hour < 12 { "A.M." } else { "P.M." }, case), -1),
            "YYYY" => num(y, 4),
            "Y,YYY" => (format!("{},{:03}", y / 1000, y % 1000), y),
            "YYY" => num(y % 1000, 3),
            "YY" => num(y % 100, 2),
            "Y" => num(y % 10, 1),
            "CC" => num(if y > 0 { (y + 99) / 100 } else { y / 100 - 1 }, 2),
            "MONTH" => (name_text(MONTHS[mo as usize - 1], 9), -1),
            "MON" => (cased(&MONTHS[mo as usize - 1][..3], case), -1),
            "MM" => num(mo as i64, 2),
            "DAY" => (name_text(DAYS[dow as usize], 9), -1),
            "DY" => (cased(&DAYS[dow as usize][..3], case), -1),
            "DDD" => num(doy, 3),
            "DD" => num(d as i64, 2),
            "D" => num(dow + 1, 1),
            "ID" => num(if dow == 0 { 7 } else { dow }, 1),
            "WW" => num((doy - 1) / 7 + 1, 2),
            "W" => num((d as i64 - 1) / 7 + 1, 1),
            "Q" => num((mo as i64 - 1) / 3 + 1, 1),
            "IYYY" => num(iso_year(y, mo as i64, d as i64), 4),
            "IYY" => num(iso_year(y, mo as i64, d as i64) % 1000, 3),
            "IY" => num(iso_year(y, mo as i64, d as i64) % 100, 2),
            "I" => num(iso_year(y, mo as i64, d as i64) % 10, 1),
            "TZ" => (
                zone.as_ref()
                    .map_or(String::new(), |(_, abbrev)| cased(abbrev, case)),
                -1,
            ),
            "TZH" | "TZM" | "OF" => {
                let Some((offset, _)) = &zone else {
                    continue;
                };
                let sign = if *offset < 0 { '-' } else { '+' };
                let (h, m) = (
                    offset.unsigned_abs() / 3600,
                    offset.unsigned_abs() / 60 % 60,
                );
                let text = match name {
                    "TZH" => format!("{sign}{h:02}"),
                    "TZM" => format!("{m:02}"),
                    _ if fill && m == 0 => format!("{sign}{h}"),
                    _ if fill => format!("{sign}{h}:{m:02}"),
                    _ if m == 0 => format!("{sign}{h:02}"),
                    _ => format!("{sign}{h:02}:{m:02}"),
                };
                (text, -1)
            }
            _ => (String::new(), -1),
        };
        out.push_str(&text);
        if let (Some(upper), true) = (ordinal, n >= 0) {
            out.push_str(ordinal_suffix(n, upper));
        }
    }
    out
}

/// PostgreSQL's `date2j`: the Julian day of a year, month and day, any of them out of
/// range (as interval fields are) counted on as the formula does.
fn date2j(year: i64, month: i64, day: i64) -> i64 {
    let (year, month) = if month > 2 {
        (year + 4800, month + 1)
    } else {
        (year + 4799, month + 13)
    };
    let century = year / 100;
    year * 365 - 32167 + year / 4 - century + century / 4 + 7834 * month / 256 + day
}

/// PostgreSQL's `j2day`: the day of the week (0 Sunday) of a Julian day.
fn j2day(date: i64) -> i64 {
    (date + 1).rem_euclid(7)
}

/// PostgreSQL's `date2isoyear`: the ISO 8601 week-numbering year of a date.
fn iso_year(mut year: i64, month: i64, day: i64) -> i64 {
    let dayn = date2j(year, month, day);
    let mut day4 = date2j(year, 1, 4);
    let mut day0 = j2day(day4 - 1);
    if dayn < day4 - day0 {
        day4 = date2j(year - 1, 1, 4);
        day0 = j2day(day4 - 1);
        year -= 1;
    }
    if (dayn - (day4 - day0)) / 7 + 1 >= 52 {
        day4 = date2j(year + 1, 1, 4);
        day0 = j2day(day4 - 1);
        if dayn >= day4 - day0 {
            year += 1;
        }
    }
    year
}

/// `to_char(interval, fmt)`: PostgreSQL's `interval_to_char`. The interval is split into
/// fields as `interval2itm` splits it (years and months from the months, days, then
/// hours, minutes, seconds and microseconds from the time, each with the sign of its
/// part); a negative field is printed one digit wider for its sign, hours beyond a day
/// stay hours, and fields that need a calendar date are refused (22007).
pub fn interval_to_char(iv: &crate::sql::interval::Interval, fmt: &str) -> Result<String> {
    let year = iv.months as i64 / 12;
    let mon = iv.months as i64 % 12;
    let mday = iv.days as i64;
    let hour = iv.micros / 3_600_000_000;
    let min = iv.micros / 60_000_000 % 60;
    let sec = iv.micros / 1_000_000 % 60;
    let usec = iv.micros % 1_000_000;
    // The total span in days, approximately, as PostgreSQL counts it.
    let yday = (year * 12 + mon) * 30 + mday;
    let mut out = String::new();
    for piece in parse_format(fmt) {
        let (name, case, fill, ordinal) = match piece.fields() {
            Ok(fields) => fields,
            Err(literal) => {
                out.push_str(&literal);
                continue;
            }
        };
        // Zero-padded to `width`, or to `width + 1` when negative (sign included).
        let signed = |v: i64, width: usize| -> (String, i64) {
            let width = if fill {
                0
            } else if v < 0 {
                width + 1
            } else {
                width
            };
            (format!("{v:0width$}"), v)
        };
        let plain = |v: i64, width: usize| -> (String, i64) {
            let width = if fill { 0 } else { width };
            (format!("{v:0width$}"), v)
        };
        // The width of the year fields follows the sign of the year itself.
        let year_width = |width: usize| if year < 0 { width + 1 } else { width };
        let iso = || iso_year(year, mon, mday);
        let (text, n) = match name {
            "AM" | "PM" => (cased(if hour % 24 >= 12 { "PM" } else { "AM" }, case), -1),
            "A.M." | "P.M." => (
                cased(if hour % 24 >= 12 { "P.M." } else { "A.M." }, case),
                -1,
            ),
            "HH" | "HH12" => {
                let h = if hour % 12 == 0 { 12 } else { hour % 12 };
                let width = if hour >= 0 { 2 } else { 3 };
                plain(h, if fill { 0 } else { width })
            }
            "HH24" => signed(hour, 2),
            "MI" => signed(min, 2),
            "SS" => signed(sec, 2),
            "MS" => (format!("{:03}", usec / 1000), usec / 1000),
            "US" => (format!("{usec:06}"), usec),
            "FF1" | "FF2" | "FF3" | "FF4" | "FF5" | "FF6" => {
                let digits = (name.as_bytes()[2] - b'0') as u32;
                let v = usec / 10i64.pow(6 - digits);
                (format!("{v:0width$}", width = digits as usize), v)
            }
            "SSSS" | "SSSSS" => {
                let v = hour * 3600 + min * 60 + sec;
                (v.to_string(), v)
            }
            "MM" => signed(mon, 2),
            "DD" => plain(mday, 2),
            "DDD" => plain(yday, 3),
            "WW" => plain((yday - 1) / 7 + 1, 2),
            "Q" if mon == 0 => (String::new(), -1),
            "Q" => {
                let q = (mon - 1) / 3 + 1;
                (q.to_string(), q)
            }
            "W" => plain((mday - 1) / 7 + 1, 1),
            "CC" => {
                let c = year / 100;
                if (-99..=99).contains(&c) {
                    signed(c, 2)
                } else {
                    (c.to_string(), c)
                }
            }
            "Y,YYY" => (
                format!("{},{:03}", year / 1000, year - year / 1000 * 1000),
                year,
            ),
            "YYYY" => plain(year, year_width(4)),
            "IYYY" => plain(iso(), year_width(4)),
            "YYY" => plain(year % 1000, year_width(3)),
            "IYY" => plain(iso() % 1000, year_width(3)),
            "YY" => plain(year % 100, year_width(2)),
            "IY" => plain(iso() % 100, year_width(2)),
            "Y" => plain(year % 10, 1),
            "I" => plain(iso() % 10, 1),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidDatetimeFormat,
                    "invalid format specification for an interval value",
                ))
            }
        };
        out.push_str(&text);
        if let (Some(upper), true) = (ordinal, n >= 0) {
            out.push_str(ordinal_suffix(n, upper));
        }
    }
    Ok(out)
}

fn bad_value(field: &str, input: &str) -> Error {
    Error::new(
        ErrorKind::InvalidDatetimeFormat,
        format!("invalid value \"{input}\" for \"{field}\""),
    )
}

/// `to_timestamp(text, fmt)` / `to_date(text, fmt)`: the instant (UTC) `input` names
/// under `fmt`. Missing fields default as PostgreSQL's do: year 1, month and day 1,
/// time 00:00:00.
pub fn parse(input: &str, fmt: &str) -> Result<i64> {
    let chars: Vec<char> = input.chars().collect();
    let next_is_field: Vec<bool> = {
        let pieces = parse_format(fmt);
        (0..pieces.len())
            .map(|k| matches!(pieces.get(k + 1), Some(Piece::Pattern { .. })))
            .collect()
    };
    let mut pos = 0;
    let (mut year, mut month, mut day) = (None::<i64>, 1i64, 1i64);
    let (mut hour, mut min, mut sec, mut us) = (0i64, 0i64, 0i64, 0i64);
    let mut pm: Option<bool> = None;
    let mut doy: Option<i64> = None;
    let skip_spaces = |pos: &mut usize| {
        while *pos < chars.len() && chars[*pos].is_whitespace() {
            *pos += 1;
        }
    };
    let read_number = |pos: &mut usize, max_digits: usize, field: &str| -> Result<i64> {
        skip_spaces(pos);
        let start = *pos;
        let mut neg = false;
        if *pos < chars.len() && chars[*pos] == '-' && field.starts_with('Y') {
            neg = true;
            *pos += 1;
        }
        let digits_start = *pos;
        while *pos < chars.len() && chars[*pos].is_ascii_digit() && *pos - digits_start < max_digits
        {
            *pos += 1;
        }
        if *pos == digits_start {
            let rest: String = chars[start..].iter().collect();
            return Err(bad_value(field, &rest));
        }
        let s: String = chars[digits_start..*pos].iter().collect();
        let v: i64 = s.parse().map_err(|_| bad_value(field, &s))?;
        Ok(if neg { -v } else { v })
    };
    let read_name = |pos: &mut usize, names: &[&str], abbrev: bool, field: &str| -> Result<i64> {
        skip_spaces(pos);
        let rest: String = chars[*pos..].iter().collect();
        let lower = rest.to_lowercase();
        for (i, n) in names.iter().enumerate() {
            let n = if abbrev { &n[..3] } else { n };
            if lower.starts_with(&n.to_lowercase()) {
                *pos += n.chars().count();
                return Ok(i as i64);
            }
        }
        Err(bad_value(field, &rest))
    };
    let pieces = parse_format(fmt);
    for (k, piece) in pieces.into_iter().enumerate() {
        // A year runs to its separator, or has four digits when a field follows it
        // directly (`YYYYMMDD`).
        let year_digits = if next_is_field[k] { 4 } else { 9 };
        match piece {
            Piece::Literal(s) => {
                // Separators match any run of separators or spaces in the input.
                for c in s.chars() {
                    if c.is_whitespace() {
                        skip_spaces(&mut pos);
                    } else if pos < chars.len() && !chars[pos].is_alphanumeric() {
                        pos += 1;
                    }
                }
            }
            Piece::Pattern { name, ordinal, .. } => {
                match name {
                    "YYYY" | "Y,YYY" => year = Some(read_number(&mut pos, year_digits, "YYYY")?),
                    "YYY" => year = Some(2000 + read_number(&mut pos, 3, "YYY")? % 1000),
                    "YY" => {
                        let v = read_number(&mut pos, 2, "YY")?;
                        year = Some(if v < 70 { 2000 + v } else { 1900 + v });
                    }
                    "Y" => year = Some(2000 + read_number(&mut pos, 1, "Y")?),
                    "MM" => month = read_number(&mut pos, 2, "MM")?,
                    "MONTH" => month = read_name(&mut pos, &MONTHS, false, "MONTH")? + 1,
                    "MON" => month = read_name(&mut pos, &MONTHS, true, "MON")? + 1,
                    "DAY" => {
                        read_name(&mut pos, &DAYS, false, "DAY")?;
                    }
                    "DY" => {
                        read_name(&mut pos, &DAYS, true, "DY")?;
                    }
                    "DD" => day = read_number(&mut pos, 2, "DD")?,
                    "DDD" => doy = Some(read_number(&mut pos, 3, "DDD")?),
                    "HH24" => hour = read_number(&mut pos, 2, "HH24")?,
                    "HH" | "HH12" => hour = read_number(&mut pos, 2, "HH12")?,
                    "MI" => min = read_number(&mut pos, 2, "MI")?,
                    "SS" => sec = read_number(&mut pos, 2, "SS")?,
                    "MS" => us = read_number(&mut pos, 3, "MS")? * 1000,
                    "US" => us = read_number(&mut pos, 6, "US")?,
                    "AM" | "PM" | "A.M." | "P.M." => {
                        skip_spaces(&mut pos);
                        let rest: String = chars[pos..].iter().collect::<String>().to_uppercase();
                        let (is_pm, len) = if rest.starts_with("A.M.") {
                            (false, 4)
                        } else if rest.starts_with("P.M.") {
                            (true, 4)
                        } else if rest.starts_with("AM") {
                            (false, 2)
                        } else if rest.starts_with("PM") {
                            (true, 2)
                        } else {
                            return Err(bad_value(name, &rest));
                        };
                        pm = Some(is_pm);
                        pos += len;
                    }
                    "D" | "ID" | "Q" | "W" | "WW" | "CC" => {
                        read_number(&mut pos, 2, name)?;
                    }
                    _ => {
                        return Err(Error::unsupported(format!(
                            "formatting field \"{name}\" is only supported in to_char"
                        )))
                    }
                }
                if ordinal.is_some() {
                    while pos < chars.len() && chars[pos].is_alphabetic() {
                        pos += 1;
                    }
                }
            }
        }
    }
    if let Some(is_pm) = pm {
        if !(1..=12).contains(&hour) {
            return Err(Error::new(
                ErrorKind::InvalidDatetimeFormat,
                format!("hour \"{hour}\" is invalid for the 12-hour clock"),
            )
            .with_hint("Use the 24-hour clock, or give an hour between 1 and 12."));
        }
        hour = hour % 12 + if is_pm { 12 } else { 0 };
    }
    let year = year.unwrap_or(1);
    let out_of_range = || {
        Error::new(
            ErrorKind::DatetimeFieldOverflow,
            format!("date/time field value out of range: \"{input}\""),
        )
    };
    // Years before 1 AD, as PostgreSQL reads them: `0000` and `-0001` are both 1 BC
    // (year 0 astronomically), `-2022` is 2022 BC.
    let year = if year < 0 { year + 1 } else { year };
    let days = match doy {
        Some(n) => days_from_civil(year, 1, 1) + n - 1,
        None => {
            if !(1..=12).contains(&month) {
                return Err(out_of_range());
            }
            let next = if month == 12 {
                days_from_civil(year + 1, 1, 1)
            } else {
                days_from_civil(year, month as u32 + 1, 1)
            };
            let first = days_from_civil(year, month as u32, 1);
            if day < 1 || day > next - first {
                return Err(out_of_range());
            }
            first + day - 1
        }
    };
    if hour > 24 || min > 59 || sec > 60 {
        return Err(out_of_range());
    }
    Ok(days * MICROS_PER_DAY + ((hour * 60 + min) * 60 + sec) * 1_000_000 + us)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(s: &str) -> crate::sql::interval::Interval {
        crate::sql::interval::Interval::parse(s, None).unwrap()
    }

    /// PostgreSQL 15's `interval_to_char`: fields with their signs, one digit wider when
    /// negative, the ISO year computed from out-of-range year, month and day fields.
    #[test]
    fn intervals_format_field_by_field() {
        let fmt = "YYYY IYYY YY IY MM DD PM pm HH HH12 HH24 MI SS";
        assert_eq!(
            interval_to_char(&interval("-20459year -256 days -120hours 866seconds"), fmt).unwrap(),
            "-20459 -20460 -59 -60 00 -256 AM am -11 -11 -119 -45 -34"
        );
        assert_eq!(
            interval_to_char(&interval("0year -256 days -120hours"), fmt).unwrap(),
            "0000 -001 00 -1 00 -256 AM am 012 012 -120 00 00"
        );
        assert_eq!(
            interval_to_char(&interval("-23:22:57.124562"), "HH12 MI SS MS US").unwrap(),
            "-11 -22 -57 -124 -124562"
        );
        let err = interval_to_char(&interval("1 day"), "Mon").unwrap_err();
        assert!(err.to_string().contains("interval value"), "{err}");
    }

    #[test]
    fn a_timestamptz_shows_its_zone() {
        let t = ts(2020, 7, 1, 5, 0, 0, 0);
        assert_eq!(
            to_char(t, Some((-7 * 3600, "PDT".into())), "HH12 TZ tz TZH:TZM OF"),
            "05 PDT pdt -07:00 -07"
        );
        assert_eq!(
            to_char(t, Some((5 * 3600 + 1800, String::new())), "OF FMOF"),
            "+05:30 +5:30"
        );
    }

    fn ts(y: i64, m: u32, d: u32, h: i64, mi: i64, s: i64, us: i64) -> i64 {
        days_from_civil(y, m, d) * MICROS_PER_DAY + ((h * 60 + mi) * 60 + s) * 1_000_000 + us
    }

    #[test]
    fn to_char_patterns_render_as_postgresql() {
        let t = ts(2002, 4, 20, 17, 31, 12, 660_000);
        assert_eq!(to_char(t, None, "HH12:MI:SS"), "05:31:12");
        assert_eq!(
            to_char(t, None, "yyyy-mm-dd hh24:mi:ss.ms"),
            "2002-04-20 17:31:12.660"
        );
        assert_eq!(
            to_char(t, None, "Day, DD Month YYYY"),
            "Saturday , 20 April     2002"
        );
        assert_eq!(
            to_char(t, None, "FMDay, FMDDth FMMonth"),
            "Saturday, 20th April"
        );
        assert_eq!(to_char(t, None, "Mon dy am Q \"Q\""), "Apr sat pm 2 Q");
    }

    #[test]
    fn parse_reads_what_to_char_writes() {
        assert_eq!(
            parse("2024-03-05 14:07:09", "YYYY-MM-DD HH24:MI:SS").unwrap(),
            ts(2024, 3, 5, 14, 7, 9, 0)
        );
        assert_eq!(
            parse("05 Dec 2000", "DD Mon YYYY").unwrap(),
            ts(2000, 12, 5, 0, 0, 0, 0)
        );
        assert_eq!(
            parse("2:05 pm", "HH:MI am")
                .unwrap()
                .rem_euclid(MICROS_PER_DAY),
            ts(1970, 1, 1, 14, 5, 0, 0)
        );
        assert!(parse("2024-02-30", "YYYY-MM-DD").is_err());
    }
}
