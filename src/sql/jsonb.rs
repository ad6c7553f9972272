//! `jsonb`: values are kept as their normalized text (a `Datum::Text` of type
//! [`SqlType::Jsonb`](crate::sql::types::SqlType::Jsonb)), the form PostgreSQL prints:
//! object keys sorted by length then bytes, the last of duplicate keys kept, `", "` and
//! `": "` separators. Equal documents have equal text, so equality, DISTINCT and GROUP BY
//! work on the text; operators parse it ([`Json::parse`]).
//!
//! # Implementation caveats
//!
//! - ORDER BY / `<` compare the text, not PostgreSQL's jsonb order (objects > arrays >
//!   booleans > numbers > strings > null); numbers that are equal but written apart
//!   (`1.0`, `1`) are unequal here.
//! - No `json` type, no `-`, `#-`, `?|`, `?&`, no jsonb_agg / jsonb_object_agg. The
//!   set-returning jsonb functions (`jsonb_array_elements[_text]`, `jsonb_each[_text]`,
//!   `jsonb_object_keys`) work in FROM only (`exec::plan_from_srf`), not in select lists.

use std::fmt::Write as _;

use rust_decimal::Decimal;

use crate::error::{Error, ErrorKind, Result};

/// A parsed JSON document. Objects keep PostgreSQL's key order.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// A number's normalized text (as numeric prints it).
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

fn invalid(s: &str) -> Error {
    Error::new(
        ErrorKind::InvalidTextRepresentation,
        format!("invalid input syntax for type json: \"{s}\""),
    )
}

/// How deep documents may nest (PostgreSQL's stack depth limit, roughly).
const MAX_DEPTH: usize = 1000;

impl Json {
    pub fn parse(s: &str) -> Result<Json> {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value(0).ok_or_else(|| invalid(s))?;
        p.ws();
        if p.i != p.b.len() {
            return Err(invalid(s));
        }
        Ok(v)
    }

    /// The normalized text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::String(s) => write_string(s, out),
            Json::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Object(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_string(k, out);
                    out.push_str(": ");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Number(_) => "number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }

    /// Sorts keys as PostgreSQL does (length, then bytes) and keeps the last duplicate.
    pub fn object(mut pairs: Vec<(String, Json)>) -> Json {
        // A stable sort keeps duplicates in input order; the last one wins.
        pairs.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
        let mut out: Vec<(String, Json)> = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => out.push((k, v)),
            }
        }
        Json::Object(out)
    }

    /// `->` with a text key (objects) or an integer index (arrays, negative from the end).
    pub fn get(&self, key: &PathStep) -> Option<&Json> {
        match (self, key) {
            (Json::Object(o), PathStep::Key(k)) => o.iter().find(|(x, _)| x == k).map(|p| &p.1),
            (Json::Array(a), PathStep::Index(i)) => {
                let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                usize::try_from(idx).ok().and_then(|i| a.get(i))
            }
            _ => None,
        }
    }

    /// `#>`: follows a path of keys (array elements by their index written as text).
    pub fn get_path(&self, path: &[String]) -> Option<&Json> {
        let mut cur = self;
        for p in path {
            let step = match cur {
                Json::Array(_) => PathStep::Index(p.trim().parse().ok()?),
                _ => PathStep::Key(p.clone()),
            };
            cur = cur.get(&step)?;
        }
        Some(cur)
    }

    /// The text `->>` returns: strings unquoted, JSON null as SQL NULL.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Json::Null => None,
            Json::String(s) => Some(s.clone()),
            other => Some(other.to_text()),
        }
    }

    /// `@>`: whether `self` contains `other` (PostgreSQL's rules: objects by key,
    /// arrays as multisets ignoring order, a scalar array contains its scalar).
    pub fn contains(&self, other: &Json) -> bool {
        match (self, other) {
            (Json::Object(a), Json::Object(b)) => b.iter().all(|(k, bv)| {
                a.iter()
                    .find(|(x, _)| x == k)
                    .is_some_and(|(_, av)| av.contains(bv))
            }),
            (Json::Array(a), Json::Array(b)) => b.iter().all(|bv| {
                a.iter().any(|av| match (av, bv) {
                    (Json::Array(_), Json::Array(_)) | (Json::Object(_), Json::Object(_)) => {
                        av.contains(bv)
                    }
                    _ => av == bv,
                })
            }),
            (Json::Array(a), scalar) if !matches!(scalar, Json::Array(_) | Json::Object(_)) => {
                a.iter().any(|v| v == scalar)
            }
            (a, b) => a == b,
        }
    }

    /// `?`: an object key, or a string element of an array, equal to `key`.
    pub fn has_key(&self, key: &str) -> bool {
        match self {
            Json::Object(o) => o.iter().any(|(k, _)| k == key),
            Json::Array(a) => a.iter().any(|v| matches!(v, Json::String(s) if s == key)),
            Json::String(s) => s == key,
            _ => false,
        }
    }

    /// `||`: objects merge (right wins), arrays concatenate, a scalar is a one-element
    /// array.
    pub fn concat(self, other: Json) -> Json {
        match (self, other) {
            (Json::Object(mut a), Json::Object(b)) => {
                a.extend(b);
                Json::object(a)
            }
            (a, b) => {
                let mut out = match a {
                    Json::Array(v) => v,
                    x => vec![x],
                };
                match b {
                    Json::Array(v) => out.extend(v),
                    x => out.push(x),
                }
                Json::Array(out)
            }
        }
    }
}

/// One step of `->`: an object key or an array index.
pub enum PathStep {
    Key(String),
    Index(i64),
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Normalizes a JSON number as numeric prints it (`1e2` → `100`, `1.50` kept).
fn normalize_number(t: &str) -> Option<String> {
    if t.contains(['e', 'E']) {
        let d = Decimal::from_scientific(t).ok()?;
        return Some(d.to_string());
    }
    let d: Decimal = t.parse().ok()?;
    Some(d.to_string())
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn lit(&mut self, word: &str) -> Option<()> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match *self.b.get(self.i)? {
            b'n' => self.lit("null").map(|_| Json::Null),
            b't' => self.lit("true").map(|_| Json::Bool(true)),
            b'f' => self.lit("false").map(|_| Json::Bool(false)),
            b'"' => self.string().map(Json::String),
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Some(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i)? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(Json::Array(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'{' => {
                self.i += 1;
                let mut pairs = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Some(Json::Object(pairs));
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return None;
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return None;
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    pairs.push((k, v));
                    self.ws();
                    match self.b.get(self.i)? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(Json::object(pairs));
                        }
                        _ => return None,
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                if self.b[self.i] == b'-' {
                    self.i += 1;
                }
                let digits = |p: &mut Self| {
                    let s = p.i;
                    while p.i < p.b.len() && p.b[p.i].is_ascii_digit() {
                        p.i += 1;
                    }
                    p.i > s
                };
                let int_start = self.i;
                if !digits(self) {
                    return None;
                }
                // No leading zeros (`01`), as JSON says.
                if self.b[int_start] == b'0' && self.i - int_start > 1 {
                    return None;
                }
                if self.b.get(self.i) == Some(&b'.') {
                    self.i += 1;
                    if !digits(self) {
                        return None;
                    }
                }
                if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
                    self.i += 1;
                    if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                        self.i += 1;
                    }
                    if !digits(self) {
                        return None;
                    }
                }
                let t = std::str::from_utf8(&self.b[start..self.i]).ok()?;
                normalize_number(t).map(Json::Number)
            }
            _ => None,
        }
    }

    fn string(&mut self) -> Option<String> {
        self.i += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let c = *self.b.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = *self.b.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let hex = |p: &mut Self| -> Option<u32> {
                                let h = std::str::from_utf8(p.b.get(p.i..p.i + 4)?).ok()?;
                                p.i += 4;
                                u32::from_str_radix(h, 16).ok()
                            };
                            let mut cp = hex(self)?;
                            if (0xd800..0xdc00).contains(&cp) {
                                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return None;
                                }
                                self.i += 2;
                                let lo = hex(self)?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return None;
                                }
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                            }
                            if cp == 0 {
                                return None;
                            }
                            let ch = char::from_u32(cp)?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                c => out.push(c),
            }
        }
    }
}

/// The JSON form of a SQL value for `to_jsonb` / `jsonb_build_*`: numbers and booleans
/// as themselves, jsonb values nested, everything else as its text in a string.
pub fn from_datum(d: &crate::sql::types::Datum, is_jsonb: bool) -> Result<Json> {
    use crate::sql::types::Datum;
    Ok(match d {
        Datum::Null => Json::Null,
        Datum::Text(t) if is_jsonb => Json::parse(t)?,
        Datum::Int(i) => Json::Number(i.to_string()),
        Datum::Numeric(n) => Json::Number(n.to_string()),
        Datum::Float(f) if f.is_finite() => {
            Json::Number(crate::sql::types::format_float(*f, false))
        }
        Datum::Bool(b) => Json::Bool(*b),
        Datum::Text(t) => Json::String(t.clone()),
        Datum::Timestamp(_) | Datum::TimestampTz(_) => {
            let text = d.to_text(d.natural_type()).unwrap_or_default();
            Json::String(iso_timestamp(&text))
        }
        other => Json::String(other.to_text(other.natural_type()).unwrap_or_default()),
    })
}

/// A timestamp's text as JSON writes it (ISO 8601, as PostgreSQL's `to_jsonb`):
/// `2019-01-01T01:00:00`, with a zone as `+00:00`. Infinities stay as they are.
fn iso_timestamp(text: &str) -> String {
    let Some((date, time)) = text.split_once(' ') else {
        return text.to_string();
    };
    let mut out = format!("{date}T{time}");
    // A zone of whole hours prints as `+HH`; JSON wants `+HH:MM`.
    let zone = out.rfind(['+', '-']).filter(|&i| i > date.len());
    if let Some(i) = zone {
        if out.len() - i == 3 {
            out.push_str(":00");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_postgres() {
        let j =
            Json::parse(r#"{"bb": 1, "a": [1, 2.50, 1e2], "c": {"x": null}, "a": true}"#).unwrap();
        assert_eq!(j.to_text(), r#"{"a": true, "c": {"x": null}, "bb": 1}"#);
        assert_eq!(Json::parse("[1e2, 2.50]").unwrap().to_text(), "[100, 2.50]");
        assert!(Json::parse("{").is_err());
        assert!(Json::parse("[1,]").is_err());
    }

    #[test]
    fn timestamps_are_iso_8601() {
        assert_eq!(iso_timestamp("2019-01-01 01:00:00"), "2019-01-01T01:00:00");
        assert_eq!(
            iso_timestamp("2019-01-01 01:00:00.5+00"),
            "2019-01-01T01:00:00.5+00:00"
        );
        assert_eq!(
            iso_timestamp("2019-01-01 01:00:00-03:30"),
            "2019-01-01T01:00:00-03:30"
        );
        assert_eq!(iso_timestamp("infinity"), "infinity");
    }
}
