//! The `time` type (`time without time zone`): a time of day in microseconds after
//! midnight, `00:00:00` to `24:00:00` inclusive, as PostgreSQL keeps it.
//!
//! Input (`hh:mm[:ss[.ffffff]]`, optionally after a date, which is ignored), output
//! (`hh:mm:ss` and the fraction without trailing zeros), the casts PostgreSQL has
//! (from timestamp, to and from interval) and the arithmetic: `time ± interval` wraps
//! around midnight and uses only the interval's time part, `time - time` is an interval,
//! `date + time` a timestamp. Everything else an interval can do with a number, a time
//! does as the interval it casts to implicitly (`'12:30'::time * 2` is `25:00:00`).
//!
//! # Implementation caveats
//!
//! - No `time with time zone`, no `AM`/`PM`, `allballs` or zone suffixes on input, no
//!   precision modifier (`time(3)` keeps all six digits).

use crate::error::{Error, ErrorKind, Result};
use crate::sql::interval::Interval;
use crate::sql::types::{self, MICROS_PER_DAY};

/// Microseconds in one hour, minute and second.
const MICROS_PER_HOUR: i64 = 3_600_000_000;
const MICROS_PER_MINUTE: i64 = 60_000_000;
const MICROS_PER_SECOND: i64 = 1_000_000;

/// Parses `hh:mm[:ss[.f…]]`, optionally after a date (`2019-10-08 10:13:36`); None when it
/// is not a time. A fraction beyond microseconds is rounded half to even after reading
/// it as a double, as PostgreSQL does. `24:00:00` is the largest value.
pub fn parse_time(s: &str) -> Option<i64> {
    let t = s.trim();
    let clock = match t.split_once([' ', 'T']) {
        Some((date, rest)) if types::parse_date(date).is_some() => rest.trim(),
        _ => t,
    };
    let mut parts = clock.split(':');
    let number = |p: &str| -> Option<i64> {
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let h = number(parts.next()?)?;
    let m = number(parts.next()?)?;
    let (sec, frac) = match parts.next() {
        None => (0, 0),
        Some(p) => {
            let (int, frac) = p.split_once('.').unwrap_or((p, ""));
            if !frac.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let f = if frac.is_empty() {
                0
            } else {
                let f: f64 = format!("0.{frac}").parse().ok()?;
                (f * 1e6).round_ties_even() as i64
            };
            (number(int)?, f)
        }
    };
    if parts.next().is_some() || m > 59 || sec > 60 {
        return None;
    }
    let micros = h * MICROS_PER_HOUR + m * MICROS_PER_MINUTE + sec * MICROS_PER_SECOND + frac;
    (0..=MICROS_PER_DAY).contains(&micros).then_some(micros)
}

/// The error for text [`parse_time`] refused: 22008 when it has a time's shape (digits,
/// colons, a dot) but a field is out of range (`25:00`), else 22007.
pub fn input_error(s: &str) -> Error {
    let t = s.trim();
    let shaped = t.contains(':')
        && t.bytes()
            .all(|c| c.is_ascii_digit() || c == b':' || c == b'.');
    if shaped {
        Error::new(
            ErrorKind::DatetimeFieldOverflow,
            format!("date/time field value out of range: \"{s}\""),
        )
    } else {
        Error::new(
            ErrorKind::InvalidDatetimeFormat,
            format!("invalid input syntax for type time: \"{s}\""),
        )
    }
}

/// The text PostgreSQL prints: `hh:mm:ss`, then `.` and the fraction without trailing
/// zeros when there is one.
pub fn format_time(micros: i64) -> String {
    let secs = micros / MICROS_PER_SECOND;
    let frac = micros % MICROS_PER_SECOND;
    let mut s = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s
}

/// `interval::time`: the interval's time part wrapped into one day (its days and months
/// are dropped, as PostgreSQL's `interval_time` drops them).
pub fn from_interval(iv: &Interval) -> i64 {
    iv.micros.rem_euclid(MICROS_PER_DAY)
}

/// `time::interval`.
pub fn to_interval(micros: i64) -> Interval {
    Interval::new(0, 0, micros)
}

/// `timestamp::time`: the time of day.
pub fn from_timestamp(micros: i64) -> i64 {
    micros.rem_euclid(MICROS_PER_DAY)
}

/// `time + interval` (`negate`: `time - interval`): wraps around midnight; only the
/// interval's time part counts.
pub fn add_interval(time: i64, iv: &Interval, negate: bool) -> i64 {
    let delta = if negate {
        -(iv.micros as i128)
    } else {
        iv.micros as i128
    };
    (time as i128 + delta).rem_euclid(MICROS_PER_DAY as i128) as i64
}

/// `date + time`: the timestamp (22008 past the timestamp range).
pub fn date_add_time(date: i32, time: i64) -> Result<i64> {
    (date as i64)
        .checked_mul(MICROS_PER_DAY)
        .and_then(|d| d.checked_add(time))
        .filter(|t| types::TIMESTAMP_RANGE.contains(t))
        .ok_or_else(|| Error::new(ErrorKind::DatetimeFieldOverflow, "timestamp out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_and_output_as_postgresql() {
        for (text, micros, out) in [
            ("10:23", 37_380_000_000, "10:23:00"),
            ("00:00:00", 0, "00:00:00"),
            ("24:00:00", MICROS_PER_DAY, "24:00:00"),
            ("10:13:36.07", 36_816_070_000, "10:13:36.07"),
            // Half to even after reading the fraction as a double: .1234565 is just below.
            ("12:34:56.1234565", 45_296_123_456, "12:34:56.123456"),
            ("2019-10-08 10:13:36", 36_816_000_000, "10:13:36"),
        ] {
            assert_eq!(parse_time(text), Some(micros), "{text}");
            assert_eq!(format_time(micros), out);
        }
        for bad in [
            "", "10", "25:00", "24:00:01", "10:60", "1:2:3:4", "noon", "10:00:0x",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn arithmetic_wraps_around_midnight() {
        let hour = MICROS_PER_HOUR;
        let iv = |h: i64| Interval::new(1, 3, h * hour);
        assert_eq!(add_interval(23 * hour, &iv(2), false), hour);
        assert_eq!(add_interval(hour, &iv(2), true), 23 * hour);
        // The extremes of an interval's time part neither overflow nor leave the day.
        for negate in [false, true] {
            for m in [i64::MIN, i64::MAX] {
                let t = add_interval(MICROS_PER_DAY, &Interval::new(0, 0, m), negate);
                assert!((0..MICROS_PER_DAY).contains(&t));
            }
        }
        assert_eq!(from_interval(&Interval::new(0, 0, -50 * hour)), 22 * hour);
        assert_eq!(from_timestamp(-hour), 23 * hour);
        assert!(date_add_time(i32::MAX, 0).is_err());
    }
}
