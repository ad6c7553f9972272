//! Time zones: the session's `TimeZone`, zone names in `AT TIME ZONE` / `timezone()` and
//! in timestamptz input, and the offsets a timestamptz is printed with.
//!
//! A timestamptz is stored as microseconds since the epoch in UTC; the zone decides only
//! how it is read and written as text. [`Zone`] is either a fixed offset (`UTC`, an
//! abbreviation like `PST`, a POSIX-style `UTC+3`, `SET TIME ZONE -7`) or an IANA zone
//! (`Europe/Moscow`, `US/Pacific`) with its history of offsets and daylight saving rules.
//!
//! The IANA database is the one `jiff` bundles (feature `tzdb-bundle-always`): a node
//! needs no `/usr/share/zoneinfo`, and every node reads the same rules. `jiff` was chosen
//! over `chrono-tz` for its smaller tree (three crates, no build scripts, no generated
//! code per zone).
//!
//! The session's zone lives in a task-local slot ([`scoped`]): each pgwire connection's
//! future (and each distributed flow) carries its own zone, swapped into a thread-local
//! around every poll, so the text input and output functions (`Datum::to_text`,
//! `Datum::parse`, casts) reach it without a context argument, and connections that
//! interleave on one core never see each other's zone. Outside such a task the zone is UTC.
//!
//! Rules kept from PostgreSQL:
//! - Names are case-insensitive; the name is shown as it was set.
//! - A POSIX-style offset counts hours *west* of Greenwich (`UTC+3` is three hours behind
//!   UTC), an ISO offset in a timestamp (`+03`) hours east.
//! - A local time that falls in a gap (spring forward) takes the offset before the
//!   transition; one that falls in a fold (fall back) the offset after it.
//! - Abbreviations (`PST`, `CEST`) are fixed offsets, accepted in input and in
//!   `AT TIME ZONE`, but not as the session zone (unless the database has a zone of
//!   that name, like `EST`).
//!
//! # Implementation caveats
//!
//! - The abbreviation table is a short list of common ones, not PostgreSQL's `Default`
//!   set; `timezone_abbreviations` cannot be changed.
//! - POSIX zone strings with daylight saving rules are read by `jiff`; one without rules
//!   (`FOO5BAR`) does not take PostgreSQL's `posixrules` (New York) default.
//! - Offsets before year -9999 or after 9999 (outside `jiff`'s range) are those at the
//!   range's end.
//! - Comparing a timestamp with a timestamptz compares the stored microseconds, not the
//!   timestamp read in the session's zone; `age` and `timestamptz - timestamptz` work on
//!   instants.
//! - `to_timestamp(text, format)` reads the text in the session's zone; zone fields in
//!   the format (`TZH`, `TZM`) are not parsed.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::{Error, ErrorKind, Result};

const MICROS_PER_SECOND: i64 = 1_000_000;

/// A time zone as PostgreSQL reads one.
#[derive(Clone, Debug)]
pub enum Zone {
    /// A constant offset east of UTC in seconds, with the abbreviation `to_char`'s `TZ`
    /// prints.
    Fixed { offset_secs: i32, abbrev: String },
    /// An IANA zone (or a POSIX string with rules).
    Named(jiff::tz::TimeZone),
}

impl Default for Zone {
    fn default() -> Self {
        Zone::utc()
    }
}

impl Zone {
    pub fn utc() -> Zone {
        Zone::Fixed {
            offset_secs: 0,
            abbrev: "UTC".into(),
        }
    }

    /// Reads a zone name as `SET TimeZone` does (`abbrevs` false) or as `AT TIME ZONE`
    /// and timestamp input do (`abbrevs` true: abbreviations like `PST` first). None when
    /// the name is not known.
    pub fn parse(name: &str, abbrevs: bool) -> Option<Zone> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return None;
        }
        if abbrevs {
            if let Some(offset_secs) = abbreviation_offset(name) {
                return Some(Zone::Fixed {
                    offset_secs,
                    abbrev: name.to_ascii_uppercase(),
                });
            }
        }
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "utc" | "etc/utc" | "gmt" | "etc/gmt" | "uct" | "universal" | "zulu" | "z"
        ) {
            return Some(Zone::utc());
        }
        if let Some(z) = posix_fixed(name) {
            return Some(z);
        }
        if let Ok(tz) = jiff::tz::TimeZone::get(name) {
            return Some(Zone::Named(tz));
        }
        // A POSIX string with daylight saving rules (`EST5EDT,M3.2.0,M11.1.0`).
        if name.contains(',') {
            if let Ok(tz) = jiff::tz::TimeZone::posix(name) {
                return Some(Zone::Named(tz));
            }
        }
        None
    }

    /// [`Zone::parse`] with PostgreSQL's error for an unknown name (22023).
    pub fn parse_or_error(name: &str, abbrevs: bool) -> Result<Zone> {
        Zone::parse(name, abbrevs).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidParameterValue,
                format!("time zone \"{name}\" not recognized"),
            )
        })
    }

    /// The offset east of UTC, in seconds, at instant `utc_micros`.
    pub fn offset_at(&self, utc_micros: i64) -> i32 {
        match self {
            Zone::Fixed { offset_secs, .. } => *offset_secs,
            Zone::Named(tz) => tz.to_offset(jiff_timestamp(utc_micros)).seconds(),
        }
    }

    /// The abbreviation in effect at instant `utc_micros` (`PDT`, `+03`), as `to_char`'s
    /// `TZ` prints it.
    pub fn abbreviation_at(&self, utc_micros: i64) -> String {
        match self {
            Zone::Fixed { abbrev, .. } => abbrev.clone(),
            Zone::Named(tz) => tz
                .to_offset_info(jiff_timestamp(utc_micros))
                .abbreviation()
                .to_string(),
        }
    }

    /// The local wall-clock time, in microseconds, of instant `utc_micros`.
    pub fn to_local(&self, utc_micros: i64) -> i64 {
        utc_micros.saturating_add(self.offset_at(utc_micros) as i64 * MICROS_PER_SECOND)
    }

    /// The instant a wall-clock time `local_micros` names in this zone; a time in a gap
    /// takes the offset before the transition, one in a fold the offset after it, as
    /// PostgreSQL's `DetermineTimeZoneOffset` resolves them.
    pub fn to_utc(&self, local_micros: i64) -> i64 {
        let offset = match self {
            Zone::Fixed { offset_secs, .. } => *offset_secs,
            Zone::Named(tz) => {
                let secs = local_micros.div_euclid(MICROS_PER_SECOND);
                // Clamp into jiff's civil range; offsets there stand for those beyond.
                let secs = secs.clamp(-377_705_116_800 + 86_400, 253_402_207_200 - 86_400);
                let days = secs.div_euclid(86_400);
                let rem = secs.rem_euclid(86_400);
                let (y, m, d) = crate::sql::types::civil_from_days(days);
                let dt = jiff::civil::DateTime::new(
                    y as i16,
                    m as i8,
                    d as i8,
                    (rem / 3600) as i8,
                    (rem / 60 % 60) as i8,
                    (rem % 60) as i8,
                    0,
                );
                match dt {
                    Ok(dt) => match tz.to_ambiguous_timestamp(dt).offset() {
                        jiff::tz::AmbiguousOffset::Unambiguous { offset } => offset.seconds(),
                        jiff::tz::AmbiguousOffset::Gap { before, .. } => before.seconds(),
                        jiff::tz::AmbiguousOffset::Fold { after, .. } => after.seconds(),
                    },
                    Err(_) => self.offset_at(local_micros),
                }
            }
        };
        local_micros.saturating_sub(offset as i64 * MICROS_PER_SECOND)
    }
}

/// A jiff instant for `micros`, clamped into jiff's range.
fn jiff_timestamp(micros: i64) -> jiff::Timestamp {
    let secs = micros.div_euclid(MICROS_PER_SECOND).clamp(
        jiff::Timestamp::MIN.as_second(),
        jiff::Timestamp::MAX.as_second(),
    );
    jiff::Timestamp::new(secs, 0).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Formats an offset east of UTC as a timestamptz's text shows it: `+00`, `-07`,
/// `+05:30`, `+02:30:17`.
pub fn format_offset(offset_secs: i32, out: &mut String) {
    use std::fmt::Write as _;
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let a = offset_secs.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    let _ = write!(out, "{sign}{h:02}");
    if m != 0 || s != 0 {
        let _ = write!(out, ":{m:02}");
    }
    if s != 0 {
        let _ = write!(out, ":{s:02}");
    }
}

/// A POSIX-style fixed zone: a name (letters, or `<…>`) and an offset west of Greenwich
/// (`UTC+3`, `<-07>+07`, `+05:30`), or a bare offset. None when `name` is not one.
fn posix_fixed(name: &str) -> Option<Zone> {
    let (abbrev, rest) = if let Some(inner) = name.strip_prefix('<') {
        let end = inner.find('>')?;
        (&inner[..end], &inner[end + 1..])
    } else {
        let end = name
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(name.len());
        (&name[..end], &name[end..])
    };
    if !abbrev.is_empty() && abbrev.len() < 3 && !name.starts_with('<') {
        return None;
    }
    let west = parse_hms_offset(rest)?;
    Some(Zone::Fixed {
        offset_secs: -west,
        abbrev: abbrev.to_string(),
    })
}

/// `[+|-]h[h][:mm[:ss]]` as seconds (sign as written); None for anything else.
fn parse_hms_offset(s: &str) -> Option<i32> {
    let (sign, body) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        b'0'..=b'9' => (1, s),
        _ => return None,
    };
    let parts: Vec<&str> = body.split(':').collect();
    if parts.len() > 3 {
        return None;
    }
    let mut hms = [0i32; 3];
    for (field, part) in hms.iter_mut().zip(&parts) {
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *field = part.parse().ok()?;
    }
    if hms[0] > 167 || hms[1] > 59 || hms[2] > 59 {
        return None;
    }
    Some(sign * (hms[0] * 3600 + hms[1] * 60 + hms[2]))
}

/// The offset east of UTC, in seconds, of a time zone abbreviation PostgreSQL's default
/// abbreviation set knows (a short list of the common ones).
fn abbreviation_offset(name: &str) -> Option<i32> {
    const H: i32 = 3600;
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_str() {
        "utc" | "gmt" | "ut" | "z" | "zulu" | "wet" => 0,
        "est" => -5 * H,
        "edt" => -4 * H,
        "cst" => -6 * H,
        "cdt" => -5 * H,
        "mst" => -7 * H,
        "mdt" => -6 * H,
        "pst" => -8 * H,
        "pdt" => -7 * H,
        "akst" => -9 * H,
        "akdt" => -8 * H,
        "hst" => -10 * H,
        "ast" => -4 * H,
        "adt" => -3 * H,
        "nst" => -(3 * H + 1800),
        "ndt" => -(2 * H + 1800),
        "bst" | "cet" | "met" | "west" => H,
        "cest" | "mest" | "eet" => 2 * H,
        "eest" | "msk" => 3 * H,
        "ist" => 2 * H,
        "sgt" | "hkt" | "awst" => 8 * H,
        "jst" | "kst" => 9 * H,
        "acst" => 9 * H + 1800,
        "acdt" => 10 * H + 1800,
        "aest" => 10 * H,
        "aedt" => 11 * H,
        "nzst" => 12 * H,
        "nzdt" => 13 * H,
        _ => return None,
    })
}

/// Splits a trailing zone name off timestamp text (`2024-11-20 20:00:00 UTC`,
/// `… Asia/Shanghai`): the rest and the zone, when the last word starts with a letter
/// and is not an era (`BC`, `AD`) or `T`/`Z` syntax the timestamp reader handles.
pub fn split_zone_suffix(s: &str) -> (&str, Option<&str>) {
    let t = s.trim_end();
    let Some(i) = t.rfind(char::is_whitespace) else {
        return (s, None);
    };
    let word = &t[i + 1..];
    let first = word.chars().next();
    if !first.is_some_and(|c| c.is_ascii_alphabetic())
        || ["bc", "ad", "z", "am", "pm"].contains(&word.to_ascii_lowercase().as_str())
    {
        return (s, None);
    }
    (&t[..i], Some(word))
}

thread_local! {
    /// The zone of the task being polled on this thread (see [`scoped`]).
    static CURRENT: RefCell<Zone> = RefCell::new(Zone::utc());
    /// The `TimeZone` setting [`CURRENT`] was read from, so setting it again is free.
    static CURRENT_NAME: RefCell<String> = RefCell::new("UTC".into());
}

/// Runs `f` with the current task's zone.
// PERF: called for every timestamptz printed or parsed; a fixed zone costs no lookup.
pub fn with_current<R>(f: impl FnOnce(&Zone) -> R) -> R {
    CURRENT.with(|z| f(&z.borrow()))
}

/// Makes the zone named by setting `name` (as `SET TimeZone` stored it) the current
/// task's; an unknown name leaves UTC.
pub fn set_current(name: &str) {
    let same = CURRENT_NAME.with(|n| *n.borrow() == name);
    if same {
        return;
    }
    let zone = Zone::parse(name, false).unwrap_or_default();
    CURRENT.with(|z| *z.borrow_mut() = zone);
    CURRENT_NAME.with(|n| *n.borrow_mut() = name.to_string());
}

/// Validates a `SET TimeZone` value and returns the text to store: names as given,
/// numbers (`SET TIME ZONE -7`: hours east, ISO sign) and intervals as POSIX zones
/// (`<-07>+07`), which read back as the same offset.
pub fn setting_value(value: &str, numeric: bool) -> Result<String> {
    let invalid = || {
        Error::new(
            ErrorKind::InvalidParameterValue,
            format!("invalid value for parameter \"TimeZone\": \"{value}\""),
        )
    };
    let lower = value.trim().to_ascii_lowercase();
    if matches!(lower.as_str(), "local" | "default") {
        return Ok("UTC".into());
    }
    if numeric {
        let hours: f64 = value.trim().parse().map_err(|_| invalid())?;
        if !hours.is_finite() || hours.abs() > 168.0 {
            return Err(invalid());
        }
        return Ok(posix_name((hours * 3600.0).round() as i32));
    }
    Zone::parse(value, false).ok_or_else(invalid)?;
    Ok(value.to_string())
}

/// The POSIX zone text for a fixed offset east of UTC: `<+05:30>-05:30`.
pub fn posix_name(offset_secs: i32) -> String {
    let mut east = String::new();
    format_offset(offset_secs, &mut east);
    let mut west = String::new();
    format_offset(-offset_secs, &mut west);
    format!("<{east}>{west}")
}

/// Runs `fut` with its own current zone, initially that of setting `name`: the zone is
/// swapped into this thread's slot for each poll and back out after, so tasks that
/// interleave on a core keep theirs apart.
pub fn scoped<F: Future>(name: &str, fut: F) -> Scoped<F> {
    Scoped {
        zone: Zone::parse(name, false).unwrap_or_default(),
        name: name.to_string(),
        inner: Box::pin(fut),
    }
}

/// The future [`scoped`] returns.
pub struct Scoped<F> {
    zone: Zone,
    name: String,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let swap = |zone: &mut Zone, name: &mut String| {
            CURRENT.with(|z| std::mem::swap(&mut *z.borrow_mut(), zone));
            CURRENT_NAME.with(|n| std::mem::swap(&mut *n.borrow_mut(), name));
        };
        swap(&mut this.zone, &mut this.name);
        let out = this.inner.as_mut().poll(cx);
        swap(&mut this.zone, &mut this.name);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(s: &str) -> i64 {
        crate::sql::types::parse_timestamp(s).unwrap().0
    }

    #[test]
    fn posix_offsets_count_west_and_iso_ones_east() {
        let z = Zone::parse("UTC+3", false).unwrap();
        assert_eq!(z.offset_at(0), -3 * 3600);
        let z = Zone::parse("<-07>+07", false).unwrap();
        assert_eq!(z.offset_at(0), -7 * 3600);
        assert_eq!(setting_value("-7", true).unwrap(), "<-07>+07");
        let z = Zone::parse("+05:30", false).unwrap();
        assert_eq!(z.offset_at(0), -(5 * 3600 + 1800));
        assert!(Zone::parse("nope", true).is_none());
        assert!(Zone::parse("PST", false).is_none());
        assert_eq!(Zone::parse("pst", true).unwrap().offset_at(0), -8 * 3600);
    }

    #[test]
    fn names_are_case_insensitive_and_follow_daylight_saving() {
        let z = Zone::parse("us/pacific", false).unwrap();
        assert_eq!(z.offset_at(micros("2020-07-01 12:00")), -7 * 3600);
        assert_eq!(z.offset_at(micros("2020-01-01 12:00")), -8 * 3600);
        assert_eq!(z.abbreviation_at(micros("2020-07-01 12:00")), "PDT");
    }

    /// PostgreSQL's `DetermineTimeZoneOffset`: a gap takes the offset before the
    /// transition, a fold the one after.
    #[test]
    fn gaps_and_folds_resolve_as_postgresql_does() {
        let ny = Zone::parse("America/New_York", false).unwrap();
        // 02:30 does not exist on 2020-03-08: read as EST, it is 07:30 UTC (03:30 EDT).
        assert_eq!(
            ny.to_utc(micros("2020-03-08 02:30")),
            micros("2020-03-08 07:30")
        );
        // 01:30 happens twice on 2020-11-01: the later one (EST) is chosen.
        assert_eq!(
            ny.to_utc(micros("2020-11-01 01:30")),
            micros("2020-11-01 06:30")
        );
    }

    #[test]
    fn offsets_print_as_postgresql_prints_them() {
        let f = |o| {
            let mut s = String::new();
            format_offset(o, &mut s);
            s
        };
        assert_eq!(f(0), "+00");
        assert_eq!(f(-7 * 3600), "-07");
        assert_eq!(f(5 * 3600 + 1800), "+05:30");
        assert_eq!(f(2 * 3600 + 30 * 60 + 17), "+02:30:17");
    }

    #[test]
    fn a_zone_word_splits_off_timestamp_text() {
        assert_eq!(
            split_zone_suffix("2024-11-20 20:00:00 UTC"),
            ("2024-11-20 20:00:00", Some("UTC"))
        );
        assert_eq!(split_zone_suffix("2024-11-20 BC"), ("2024-11-20 BC", None));
        assert_eq!(split_zone_suffix("2024-11-20"), ("2024-11-20", None));
    }
}
