//! The `interval` type: a span of months, days and microseconds kept apart, as
//! PostgreSQL keeps them, because a month is not a fixed number of days and a day is not
//! always 24 hours. Parsing (the postgres and SQL-standard input forms), the text output
//! of `IntervalStyle = postgres`, comparison by the normalized span (a month is 30 days, a
//! day 24 hours), arithmetic with timestamps and numbers, `extract`, `justify_*`, `age`.
//!
//! Every operation that can leave the representable range checks it and reports 22008
//! (`interval out of range`); nothing here panics on user input.
//!
//! # Implementation caveats
//!
//! - Only `IntervalStyle = postgres` output; ISO 8601 input (`P1Y2M`) is accepted, the
//!   `sql_standard` and `iso_8601` output styles are not.
//! - `timestamptz - timestamptz` and `age` work on instants (UTC), not on wall-clock
//!   times in the session's zone.

use std::cmp::Ordering;

use rust_decimal::Decimal;

use crate::error::{Error, ErrorKind, Result};
use crate::sql::types::{civil_from_days, days_from_civil, MICROS_PER_DAY};

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
pub const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;
const DAYS_PER_MONTH: i64 = 30;

/// An interval value: months, days and microseconds, each with its own sign.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

/// 22008, the error of every overflowing interval operation.
pub fn out_of_range() -> Error {
    Error::new(ErrorKind::DatetimeFieldOverflow, "interval out of range")
}

fn bad_input(s: &str) -> Error {
    Error::new(
        ErrorKind::InvalidDatetimeFormat,
        format!("invalid input syntax for type interval: \"{s}\""),
    )
}

fn field_overflow(s: &str) -> Error {
    Error::new(
        ErrorKind::IntervalFieldOverflow,
        format!("interval field value out of range: \"{s}\""),
    )
}

/// The fields an `INTERVAL '…' <qualifier>` keeps; a bare number in the text is in the
/// unit of the last field (`INTERVAL '5' MINUTE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IntervalField {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl Interval {
    pub const ZERO: Interval = Interval {
        months: 0,
        days: 0,
        micros: 0,
    };

    pub fn new(months: i32, days: i32, micros: i64) -> Interval {
        Interval {
            months,
            days,
            micros,
        }
    }

    /// The span PostgreSQL compares by: months as 30 days, days as 24 hours.
    pub fn span(&self) -> i128 {
        (self.months as i128 * DAYS_PER_MONTH as i128 + self.days as i128) * MICROS_PER_DAY as i128
            + self.micros as i128
    }

    pub fn cmp_span(&self, other: &Interval) -> Ordering {
        self.span().cmp(&other.span())
    }

    pub fn checked_add(&self, o: &Interval) -> Result<Interval> {
        Ok(Interval {
            months: self.months.checked_add(o.months).ok_or_else(out_of_range)?,
            days: self.days.checked_add(o.days).ok_or_else(out_of_range)?,
            micros: self.micros.checked_add(o.micros).ok_or_else(out_of_range)?,
        })
    }

    pub fn checked_neg(&self) -> Result<Interval> {
        Ok(Interval {
            months: self.months.checked_neg().ok_or_else(out_of_range)?,
            days: self.days.checked_neg().ok_or_else(out_of_range)?,
            micros: self.micros.checked_neg().ok_or_else(out_of_range)?,
        })
    }

    pub fn checked_sub(&self, o: &Interval) -> Result<Interval> {
        Ok(Interval {
            months: self.months.checked_sub(o.months).ok_or_else(out_of_range)?,
            days: self.days.checked_sub(o.days).ok_or_else(out_of_range)?,
            micros: self.micros.checked_sub(o.micros).ok_or_else(out_of_range)?,
        })
    }

    /// `interval * float8`, fractions of months and days cascading down (PostgreSQL's
    /// `interval_mul`), or `interval / float8` when `divide`.
    pub fn scale(&self, factor: f64, divide: bool) -> Result<Interval> {
        if divide && factor == 0.0 {
            return Err(Error::new(ErrorKind::DivisionByZero, "division by zero"));
        }
        let op = |v: f64| if divide { v / factor } else { v * factor };
        let fits_i32 = |v: f64| !v.is_nan() && v <= i32::MAX as f64 && v >= i32::MIN as f64;
        let m = op(self.months as f64);
        if !fits_i32(m) {
            return Err(out_of_range());
        }
        let months = m as i32;
        let d = op(self.days as f64);
        if !fits_i32(d) {
            return Err(out_of_range());
        }
        let mut days = d as i32;
        let tsround = |v: f64| (v * 1e6).round_ties_even() / 1e6;
        let month_remainder_days = tsround((m - months as f64) * DAYS_PER_MONTH as f64);
        let mut sec_remainder = tsround(
            (d - days as f64 + month_remainder_days - month_remainder_days.trunc()) * 86400.0,
        );
        if sec_remainder.abs() >= 86400.0 {
            let whole = (sec_remainder / 86400.0).trunc();
            days = days.checked_add(whole as i32).ok_or_else(out_of_range)?;
            sec_remainder -= whole * 86400.0;
        }
        days = days
            .checked_add(month_remainder_days.trunc() as i32)
            .ok_or_else(out_of_range)?;
        let t = (op(self.micros as f64) + sec_remainder * 1e6).round_ties_even();
        if !(i64::MIN as f64..-(i64::MIN as f64)).contains(&t) {
            return Err(out_of_range());
        }
        Ok(Interval {
            months,
            days,
            micros: t as i64,
        })
    }

    /// `justify_hours`: whole 24-hour periods become days.
    pub fn justify_hours(&self) -> Result<Interval> {
        let mut r = *self;
        let whole = r.micros / MICROS_PER_DAY;
        r.micros -= whole * MICROS_PER_DAY;
        r.days = i32::try_from(r.days as i64 + whole).map_err(|_| out_of_range())?;
        if r.days > 0 && r.micros < 0 {
            r.micros += MICROS_PER_DAY;
            r.days -= 1;
        } else if r.days < 0 && r.micros > 0 {
            r.micros -= MICROS_PER_DAY;
            r.days += 1;
        }
        Ok(r)
    }

    /// `justify_days`: whole 30-day periods become months.
    pub fn justify_days(&self) -> Result<Interval> {
        let mut r = *self;
        let whole = r.days / DAYS_PER_MONTH as i32;
        r.days -= whole * DAYS_PER_MONTH as i32;
        r.months = r.months.checked_add(whole).ok_or_else(out_of_range)?;
        if r.months > 0 && r.days < 0 {
            r.days += DAYS_PER_MONTH as i32;
            r.months -= 1;
        } else if r.months < 0 && r.days > 0 {
            r.days -= DAYS_PER_MONTH as i32;
            r.months += 1;
        }
        Ok(r)
    }

    /// `justify_interval`: both, with the signs of all fields made to agree.
    pub fn justify_interval(&self) -> Result<Interval> {
        let mut r = *self;
        let add_days = |days: i32, whole: i64| -> Result<i32> {
            i32::try_from(days as i64 + whole).map_err(|_| out_of_range())
        };
        if (r.days > 0 && r.micros > 0) || (r.days < 0 && r.micros < 0) {
            let whole = r.micros / MICROS_PER_DAY;
            r.micros -= whole * MICROS_PER_DAY;
            r.days = add_days(r.days, whole)?;
        }
        let whole = r.days / DAYS_PER_MONTH as i32;
        r.days -= whole * DAYS_PER_MONTH as i32;
        r.months = r.months.checked_add(whole).ok_or_else(out_of_range)?;
        if r.months > 0 && (r.days < 0 || (r.days == 0 && r.micros < 0)) {
            r.days += DAYS_PER_MONTH as i32;
            r.months -= 1;
        } else if r.months < 0 && (r.days > 0 || (r.days == 0 && r.micros > 0)) {
            r.days -= DAYS_PER_MONTH as i32;
            r.months += 1;
        }
        let whole = r.micros / MICROS_PER_DAY;
        r.micros -= whole * MICROS_PER_DAY;
        r.days = add_days(r.days, whole)?;
        if r.days > 0 && r.micros < 0 {
            r.micros += MICROS_PER_DAY;
            r.days -= 1;
        } else if r.days < 0 && r.micros > 0 {
            r.micros -= MICROS_PER_DAY;
            r.days += 1;
        }
        Ok(r)
    }

    /// The text output of `IntervalStyle = postgres`: `1 year 2 mons 3 days 04:05:06.5`,
    /// `-00:00:01`, `00:00:00` for zero.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut is_zero = true;
        let mut is_before = false;
        let years = self.months / 12;
        let mons = self.months % 12;
        for (v, unit) in [(years, "year"), (mons, "mon"), (self.days, "day")] {
            if v == 0 {
                continue;
            }
            if !is_zero {
                out.push(' ');
            }
            if is_before && v > 0 {
                out.push('+');
            }
            out.push_str(&v.to_string());
            out.push(' ');
            out.push_str(unit);
            if v != 1 {
                out.push('s');
            }
            is_before = v < 0;
            is_zero = false;
        }
        if is_zero || self.micros != 0 {
            if !is_zero {
                out.push(' ');
            }
            if self.micros < 0 {
                out.push('-');
            } else if is_before {
                out.push('+');
            }
            let t = self.micros.unsigned_abs();
            let hours = t / MICROS_PER_HOUR as u64;
            let mins = t / MICROS_PER_MINUTE as u64 % 60;
            let secs = t / MICROS_PER_SECOND as u64 % 60;
            let frac = t % MICROS_PER_SECOND as u64;
            out.push_str(&format!("{hours:02}:{mins:02}:{secs:02}"));
            if frac != 0 {
                let f = format!("{frac:06}");
                out.push('.');
                out.push_str(f.trim_end_matches('0'));
            }
        }
        out
    }

    /// The pgwire binary format: micros (i64), days (i32), months (i32), big-endian.
    pub fn to_binary(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.micros.to_be_bytes());
        out.extend_from_slice(&self.days.to_be_bytes());
        out.extend_from_slice(&self.months.to_be_bytes());
    }

    pub fn from_binary(b: &[u8]) -> Option<Interval> {
        if b.len() != 16 {
            return None;
        }
        Some(Interval {
            micros: i64::from_be_bytes(b[0..8].try_into().ok()?),
            days: i32::from_be_bytes(b[8..12].try_into().ok()?),
            months: i32::from_be_bytes(b[12..16].try_into().ok()?),
        })
    }

    /// Parses interval input text (PostgreSQL's postgres and verbose forms, `hh:mm:ss`,
    /// ISO 8601 `P…`), with the fields `qualifier` keeps (`INTERVAL '…' DAY TO HOUR`).
    pub fn parse(s: &str, qualifier: Option<(IntervalField, IntervalField)>) -> Result<Interval> {
        let mut acc = Accum::default();
        let t = s.trim();
        if t.is_empty() {
            return Err(bad_input(s));
        }
        if let Some(iso) = t.strip_prefix('P').or_else(|| t.strip_prefix('p')) {
            parse_iso8601(iso, &mut acc).ok_or_else(|| bad_input(s))?;
        } else {
            parse_postgres(s, t, qualifier.map(|q| q.1), &mut acc)?;
        }
        let mut iv = acc.finish().ok_or_else(|| field_overflow(s))?;
        if let Some((_, last)) = qualifier {
            iv = truncate(iv, last);
        }
        Ok(iv)
    }

    /// The value of an `extract(field FROM interval)`, as PostgreSQL 15 computes it.
    pub fn extract(&self, field: &str) -> Result<Decimal> {
        let years = (self.months / 12) as i64;
        let mons = (self.months % 12) as i64;
        let hour = self.micros / MICROS_PER_HOUR;
        let min = self.micros / MICROS_PER_MINUTE % 60;
        let sec_micros = self.micros % MICROS_PER_MINUTE;
        Ok(match field {
            "microsecond" | "microseconds" | "us" | "usec" | "usecs" => Decimal::from(sec_micros),
            "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => Decimal::new(sec_micros, 3),
            "second" | "seconds" | "sec" | "secs" | "s" => Decimal::new(sec_micros, 6),
            "minute" | "minutes" | "min" | "mins" | "m" => Decimal::from(min),
            "hour" | "hours" | "h" | "hr" | "hrs" => Decimal::from(hour),
            "day" | "days" | "d" => Decimal::from(self.days),
            "month" | "months" | "mon" | "mons" => Decimal::from(mons),
            "quarter" => Decimal::from(mons / 3 + 1),
            "year" | "years" | "y" | "yr" | "yrs" => Decimal::from(years),
            "decade" | "decades" => Decimal::from(years / 10),
            "century" | "centuries" => Decimal::from(years / 100),
            "millennium" | "millennia" => Decimal::from(years / 1000),
            "epoch" => {
                let secs = (1461 * years + 120 * mons + 4 * self.days as i64) * (86400 / 4);
                let v = secs as i128 * 1_000_000 + self.micros as i128;
                Decimal::from_i128_with_scale(v, 6)
            }
            "dow" | "isodow" | "doy" | "week" | "isoyear" | "julian" | "timezone"
            | "timezone_hour" | "timezone_minute" => {
                return Err(Error::new(
                    ErrorKind::FeatureNotSupported,
                    format!("unit \"{field}\" not supported for type interval"),
                ))
            }
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    format!("unit \"{other}\" not recognized for type interval"),
                ))
            }
        })
    }
}

/// Keeps the fields down to `last` (`INTERVAL '1 day 02:03:04' HOUR` → `1 day 02:00:00`).
fn truncate(iv: Interval, last: IntervalField) -> Interval {
    match last {
        IntervalField::Year => Interval::new(iv.months / 12 * 12, 0, 0),
        IntervalField::Month => Interval::new(iv.months, 0, 0),
        IntervalField::Day => Interval::new(iv.months, iv.days, 0),
        IntervalField::Hour => Interval::new(
            iv.months,
            iv.days,
            iv.micros / MICROS_PER_HOUR * MICROS_PER_HOUR,
        ),
        IntervalField::Minute => Interval::new(
            iv.months,
            iv.days,
            iv.micros / MICROS_PER_MINUTE * MICROS_PER_MINUTE,
        ),
        IntervalField::Second => iv,
    }
}

/// Fields being summed while parsing, wide enough that overflow is found at the end.
#[derive(Default)]
struct Accum {
    /// The fractional microseconds, rounded once at the end.
    micros: f64,
    exact_months: i64,
    exact_days: i64,
    exact_micros: i128,
}

impl Accum {
    /// Adds `value` units of `unit_months` months, `unit_days` days or `unit_micros`
    /// microseconds; fractions cascade down (a month is 30 days, a day 24 hours).
    fn add(&mut self, int: i64, frac: f64, unit: Unit) {
        match unit {
            Unit::Months(m) => {
                self.exact_months = self.exact_months.saturating_add(int.saturating_mul(m));
                let f = frac * m as f64;
                let whole = f.trunc();
                self.exact_months = self.exact_months.saturating_add(whole as i64);
                let days = (f - whole) * DAYS_PER_MONTH as f64;
                let wd = days.trunc();
                self.exact_days = self.exact_days.saturating_add(wd as i64);
                self.micros += (days - wd) * MICROS_PER_DAY as f64;
            }
            Unit::Days(d) => {
                self.exact_days = self.exact_days.saturating_add(int.saturating_mul(d));
                let f = frac * d as f64;
                let whole = f.trunc();
                self.exact_days = self.exact_days.saturating_add(whole as i64);
                self.micros += (f - whole) * MICROS_PER_DAY as f64;
            }
            Unit::Micros(u) => {
                self.exact_micros = self.exact_micros.saturating_add(int as i128 * u as i128);
                self.micros += frac * u as f64;
            }
        }
    }

    fn finish(self) -> Option<Interval> {
        let micros = self.exact_micros + self.micros.round_ties_even() as i128;
        Some(Interval {
            months: i32::try_from(self.exact_months).ok()?,
            days: i32::try_from(self.exact_days).ok()?,
            micros: i64::try_from(micros).ok()?,
        })
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Months(i64),
    Days(i64),
    Micros(i64),
}

fn unit_of(word: &str) -> Option<Unit> {
    Some(match word {
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" | "useconds" => Unit::Micros(1),
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" | "mseconds" => Unit::Micros(1000),
        "second" | "seconds" | "s" | "sec" | "secs" => Unit::Micros(MICROS_PER_SECOND),
        "minute" | "minutes" | "m" | "min" | "mins" => Unit::Micros(MICROS_PER_MINUTE),
        "hour" | "hours" | "h" | "hr" | "hrs" => Unit::Micros(MICROS_PER_HOUR),
        "day" | "days" | "d" => Unit::Days(1),
        "week" | "weeks" | "w" => Unit::Days(7),
        "month" | "months" | "mon" | "mons" => Unit::Months(1),
        "year" | "years" | "y" | "yr" | "yrs" => Unit::Months(12),
        "decade" | "decades" => Unit::Months(120),
        "century" | "centuries" | "c" => Unit::Months(1200),
        "millennium" | "millennia" | "millenniums" => Unit::Months(12000),
        _ => return None,
    })
}

/// The field a unit word sets, as a bit (`hh:mm:ss` sets hour, minute and second).
const CLOCK_MASK: u32 = (1 << 3) | (1 << 4) | (1 << 5);

fn unit_bit(word: &str) -> u32 {
    match unit_of(word) {
        Some(Unit::Months(12)) => 1 << 0,
        Some(Unit::Months(1)) => 1 << 1,
        Some(Unit::Days(1)) => 1 << 2,
        Some(Unit::Micros(MICROS_PER_HOUR)) => 1 << 3,
        Some(Unit::Micros(MICROS_PER_MINUTE)) => 1 << 4,
        Some(Unit::Micros(MICROS_PER_SECOND)) => 1 << 5,
        Some(Unit::Micros(1000)) => 1 << 6,
        Some(Unit::Micros(_)) => 1 << 7,
        Some(Unit::Days(_)) => 1 << 8,
        Some(Unit::Months(120)) => 1 << 9,
        Some(Unit::Months(1200)) => 1 << 10,
        _ => 1 << 11,
    }
}

fn field_unit(f: IntervalField) -> Unit {
    match f {
        IntervalField::Year => Unit::Months(12),
        IntervalField::Month => Unit::Months(1),
        IntervalField::Day => Unit::Days(1),
        IntervalField::Hour => Unit::Micros(MICROS_PER_HOUR),
        IntervalField::Minute => Unit::Micros(MICROS_PER_MINUTE),
        IntervalField::Second => Unit::Micros(MICROS_PER_SECOND),
    }
}

/// Splits a signed decimal number into its integer part and fraction (same sign).
fn split_number(tok: &str) -> Option<(i64, f64)> {
    let (neg, digits) = match tok.as_bytes().first()? {
        b'-' => (true, &tok[1..]),
        b'+' => (false, &tok[1..]),
        _ => (false, tok),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let i: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let f: f64 = if frac.is_empty() {
        0.0
    } else {
        format!("0.{frac}").parse().ok()?
    };
    Some(if neg { (-i, -f) } else { (i, f) })
}

/// `[-]h:mm[:ss[.ffffff]]` (or `mm:ss.ff` when it has a fraction and two parts and
/// `minute_second`): the microseconds.
fn parse_clock(tok: &str, sign: i64) -> Option<i128> {
    let parts: Vec<&str> = tok.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return None;
    }
    let num = |p: &str| -> Option<i128> {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let secs_micros = |p: &str| -> Option<i128> {
        let (int, frac) = p.split_once('.').unwrap_or((p, ""));
        let s = num(int)?;
        if !frac.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        // As PostgreSQL: the fraction is read as a double and rounded to microseconds
        // half to even (`rint`), so `.1234565` (just below half in binary) gives .123456.
        let fm = if frac.is_empty() {
            0
        } else {
            let f: f64 = format!("0.{frac}").parse().ok()?;
            (f * 1e6).round_ties_even() as i128
        };
        Some(s * 1_000_000 + fm)
    };
    // A field left empty after the last colon is zero (`1:` is one hour).
    let last = |p: &str| -> Option<i128> {
        if p.is_empty() {
            Some(0)
        } else {
            num(p)
        }
    };
    let (h, m, s) = if parts.len() == 3 {
        let s = if parts[2].is_empty() {
            0
        } else {
            secs_micros(parts[2])?
        };
        (num(parts[0])?, num(parts[1])?, s)
    } else if parts[1].contains('.') {
        // `mm:ss.fff`
        (0, num(parts[0])?, secs_micros(parts[1])?)
    } else {
        (num(parts[0])?, last(parts[1])?, 0)
    };
    if m > 59 || s >= 60_000_000 {
        return None;
    }
    Some(sign as i128 * (h * MICROS_PER_HOUR as i128 + m * MICROS_PER_MINUTE as i128 + s))
}

fn parse_postgres(
    original: &str,
    t: &str,
    bare_unit: Option<IntervalField>,
    acc: &mut Accum,
) -> Result<()> {
    let lower = t.to_ascii_lowercase();
    let mut s = lower.trim();
    if let Some(rest) = s.strip_prefix('@') {
        s = rest.trim_start();
    }
    // Tokens: numbers glued to units (`1day`) are split; a sign standing alone belongs to
    // the number after it (`- 1 year`), as PostgreSQL's lexer skips the spaces there.
    let mut tokens: Vec<String> = Vec::new();
    let mut pending_sign: Option<&str> = None;
    for word in s.split_whitespace() {
        if word == "-" || word == "+" {
            if pending_sign.is_some() {
                return Err(bad_input(original));
            }
            pending_sign = Some(word);
            continue;
        }
        let signed;
        let word = match pending_sign.take() {
            Some(sign) => {
                signed = format!("{sign}{word}");
                signed.as_str()
            }
            None => word,
        };
        let b = word.as_bytes();
        let split = b
            .iter()
            .position(|c| c.is_ascii_alphabetic())
            .filter(|&p| p > 0 && !word.contains(':'));
        match split {
            Some(p) => {
                tokens.push(word[..p].to_string());
                tokens.push(word[p..].to_string());
            }
            None => tokens.push(word.to_string()),
        }
    }
    if pending_sign.is_some() {
        return Err(bad_input(original));
    }
    let mut ago = false;
    let mut saw_any = false;
    // Each field may be given once (`1 day 1 day` is an error, as in PostgreSQL).
    let mut seen: u32 = 0;
    let mut i = 0;
    // With a qualifier of SECOND (or none) a bare number is seconds; with DAY etc. it is
    // in that unit.
    let bare = bare_unit
        .map(field_unit)
        .unwrap_or(Unit::Micros(MICROS_PER_SECOND));
    while i < tokens.len() {
        let tok = &tokens[i];
        if tok == "ago" {
            if tokens[i..].iter().any(|t| t != "ago") || !saw_any {
                return Err(bad_input(original));
            }
            ago = true;
            i += 1;
            continue;
        }
        if tok.contains(':') {
            let (sign, body) = match tok.as_bytes()[0] {
                b'-' => (-1, &tok[1..]),
                b'+' => (1, &tok[1..]),
                _ => (1, &tok[..]),
            };
            let m = parse_clock(body, sign).ok_or_else(|| {
                if body
                    .split(':')
                    .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit() || c == b'.'))
                {
                    field_overflow(original)
                } else {
                    bad_input(original)
                }
            })?;
            acc.exact_micros = acc.exact_micros.saturating_add(m);
            if seen & CLOCK_MASK != 0 {
                return Err(bad_input(original));
            }
            seen |= CLOCK_MASK;
            saw_any = true;
            i += 1;
            continue;
        }
        let (int, frac) = split_number(tok).ok_or_else(|| bad_input(original))?;
        let next = tokens.get(i + 1).map(|n| n.as_str());
        match next.and_then(unit_of) {
            Some(unit) => {
                let bit = unit_bit(next.unwrap_or(""));
                if seen & bit != 0 {
                    return Err(bad_input(original));
                }
                seen |= bit;
                acc.add(int, frac, unit);
                i += 2;
            }
            None => {
                // A bare number: the unit of the qualifier (seconds without one). `1 2`
                // would be two bare numbers: an error, as in PostgreSQL.
                if next.is_some_and(|n| n != "ago" && !n.contains(':')) {
                    return Err(bad_input(original));
                }
                let bit = match bare_unit {
                    Some(IntervalField::Year) => 1 << 0,
                    Some(IntervalField::Month) => 1 << 1,
                    Some(IntervalField::Day) => 1 << 2,
                    Some(IntervalField::Hour) => 1 << 3,
                    Some(IntervalField::Minute) => 1 << 4,
                    _ => 1 << 5,
                };
                if seen & bit != 0 {
                    return Err(bad_input(original));
                }
                seen |= bit;
                acc.add(int, frac, bare);
                i += 1;
            }
        }
        saw_any = true;
    }
    if !saw_any {
        return Err(bad_input(original));
    }
    if ago {
        acc.exact_months = -acc.exact_months;
        acc.exact_days = -acc.exact_days;
        acc.exact_micros = -acc.exact_micros;
        acc.micros = -acc.micros;
    }
    Ok(())
}

/// ISO 8601 durations after the `P`: `1Y2M3DT4H5M6S`, `T` separating date from time.
fn parse_iso8601(s: &str, acc: &mut Accum) -> Option<()> {
    let mut in_time = false;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix(['T', 't']) {
            in_time = true;
            rest = r;
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
            .unwrap_or(rest.len());
        let (int, frac) = split_number(&rest[..end])?;
        let unit = rest[end..].chars().next()?.to_ascii_uppercase();
        let u = match (unit, in_time) {
            ('Y', false) => Unit::Months(12),
            ('M', false) => Unit::Months(1),
            ('W', false) => Unit::Days(7),
            ('D', false) => Unit::Days(1),
            ('H', true) => Unit::Micros(MICROS_PER_HOUR),
            ('M', true) => Unit::Micros(MICROS_PER_MINUTE),
            ('S', true) => Unit::Micros(MICROS_PER_SECOND),
            _ => return None,
        };
        acc.add(int, frac, u);
        rest = &rest[end + 1..];
    }
    Some(())
}

/// Adds an interval to a timestamp (microseconds since 1970 without zone): months first
/// (the day clamped to the month's length), then days, then the time.
/// `timestamptz + interval` as PostgreSQL computes it: months and days move the
/// wall-clock time in the session's zone (so `+ 1 day` across a daylight saving change
/// keeps the time of day), the time part then moves the instant.
pub fn timestamptz_add(ts: i64, iv: &Interval) -> Result<i64> {
    if iv.months == 0 && iv.days == 0 {
        return timestamp_add(ts, iv);
    }
    let calendar = Interval::new(iv.months, iv.days, 0);
    let moved = crate::sql::time_zone::with_current(|zone| -> Result<i64> {
        Ok(zone.to_utc(timestamp_add(zone.to_local(ts), &calendar)?))
    })?;
    timestamp_add(moved, &Interval::new(0, 0, iv.micros))
}

pub fn timestamp_add(ts: i64, iv: &Interval) -> Result<i64> {
    let ts_err = || Error::new(ErrorKind::DatetimeFieldOverflow, "timestamp out of range");
    let mut t = ts;
    if iv.months != 0 {
        let days = t.div_euclid(MICROS_PER_DAY);
        let tod = t.rem_euclid(MICROS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let total = y * 12 + (m as i64 - 1) + iv.months as i64;
        let ny = total.div_euclid(12);
        let nm = (total.rem_euclid(12) + 1) as u32;
        let nd = d.min(days_in_month(ny, nm));
        let nd_days = days_from_civil(ny, nm, nd);
        t = nd_days
            .checked_mul(MICROS_PER_DAY)
            .and_then(|v| v.checked_add(tod))
            .ok_or_else(ts_err)?;
    }
    if iv.days != 0 {
        t = t
            .checked_add(
                (iv.days as i64)
                    .checked_mul(MICROS_PER_DAY)
                    .ok_or_else(ts_err)?,
            )
            .ok_or_else(ts_err)?;
    }
    t = t.checked_add(iv.micros).ok_or_else(ts_err)?;
    if !crate::sql::types::TIMESTAMP_RANGE.contains(&t) {
        return Err(ts_err());
    }
    Ok(t)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

/// `timestamp - timestamp`: the difference as days and time (`justify_hours` applied).
pub fn timestamp_diff(a: i64, b: i64) -> Result<Interval> {
    let diff = a.checked_sub(b).ok_or_else(out_of_range)?;
    Interval::new(0, 0, diff).justify_hours()
}

/// `age(a, b)`: the symbolic difference in years, months and days, as PostgreSQL's
/// `timestamp_age` computes it (fields subtracted, negatives borrowed upward).
pub fn age(a: i64, b: i64) -> Result<Interval> {
    let split = |t: i64| {
        let days = t.div_euclid(MICROS_PER_DAY);
        let tod = t.rem_euclid(MICROS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        (y, m as i64, d as i64, tod)
    };
    let (y1, m1, d1, t1) = split(a);
    let (y2, m2, d2, t2) = split(b);
    // Years in the proleptic calendar include a year 0 here; PostgreSQL's tm_year does
    // not, but only differences matter.
    let mut fsec = t1 % MICROS_PER_SECOND - t2 % MICROS_PER_SECOND;
    let mut sec = t1 / MICROS_PER_SECOND % 60 - t2 / MICROS_PER_SECOND % 60;
    let mut min = t1 / MICROS_PER_MINUTE % 60 - t2 / MICROS_PER_MINUTE % 60;
    let mut hour = t1 / MICROS_PER_HOUR - t2 / MICROS_PER_HOUR;
    let mut mday = d1 - d2;
    let mut mon = m1 - m2;
    let mut year = y1 - y2;
    let flip = a < b;
    if flip {
        fsec = -fsec;
        sec = -sec;
        min = -min;
        hour = -hour;
        mday = -mday;
        mon = -mon;
        year = -year;
    }
    while fsec < 0 {
        fsec += MICROS_PER_SECOND;
        sec -= 1;
    }
    while sec < 0 {
        sec += 60;
        min -= 1;
    }
    while min < 0 {
        min += 60;
        hour -= 1;
    }
    while hour < 0 {
        hour += 24;
        mday -= 1;
    }
    while mday < 0 {
        let (yy, mm) = if flip { (y1, m1) } else { (y2, m2) };
        mday += days_in_month(yy, mm as u32) as i64;
        mon -= 1;
    }
    while mon < 0 {
        mon += 12;
        year -= 1;
    }
    if flip {
        fsec = -fsec;
        sec = -sec;
        min = -min;
        hour = -hour;
        mday = -mday;
        mon = -mon;
        year = -year;
    }
    let months = year
        .checked_mul(12)
        .and_then(|v| v.checked_add(mon))
        .and_then(|v| i32::try_from(v).ok())
        .ok_or_else(out_of_range)?;
    let days = i32::try_from(mday).map_err(|_| out_of_range())?;
    let micros = ((hour * 60 + min) * 60 + sec) * MICROS_PER_SECOND + fsec;
    Ok(Interval::new(months, days, micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        Interval::parse(s, None).unwrap().to_text()
    }

    #[test]
    fn parse_and_format_like_postgres() {
        assert_eq!(p("1 day 2 hours"), "1 day 02:00:00");
        assert_eq!(p("-1"), "-00:00:01");
        assert_eq!(p("1 year 2 months"), "1 year 2 mons");
        assert_eq!(p("0"), "00:00:00");
        assert_eq!(p("1.5 days"), "1 day 12:00:00");
        assert_eq!(p("-1 year 2 mons"), "-10 mons");
        assert_eq!(p("-1 year 2 days"), "-1 years +2 days");
        assert_eq!(p("-1 day 02:00:00"), "-1 days +02:00:00");
        assert_eq!(p("1 day ago"), "-1 days");
        assert_eq!(p("P1Y2M3DT4H5M6S"), "1 year 2 mons 3 days 04:05:06");
        assert_eq!(p("100:00:00.25"), "100:00:00.25");
        assert!(Interval::parse("nonsense", None).is_err());
    }

    #[test]
    fn scale_cascades_fractions() {
        let iv = Interval::parse("1 month", None).unwrap();
        assert_eq!(iv.scale(1.5, false).unwrap().to_text(), "1 mon 15 days");
        assert_eq!(iv.scale(2.0, true).unwrap().to_text(), "15 days");
        assert!(iv.scale(0.0, true).is_err());
        assert!(iv.scale(1e300, false).is_err());
    }
}
