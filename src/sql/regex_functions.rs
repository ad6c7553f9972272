//! PostgreSQL's regular-expression functions and `SIMILAR TO`.
//!
//! `x SIMILAR TO p [ESCAPE e]` binds as the `~` operator over `similar_to_escape(p, e)`,
//! which turns the SQL pattern into a POSIX one exactly as PostgreSQL's
//! `similar_escape_internal` does (`%` → `.*`, `_` → `.`, the escape character quotes the
//! next one, `e"` separates the parts `substring` would return, the whole wrapped in
//! `^(?: … )$`). `regexp_replace`, `regexp_match`, `regexp_like`, `regexp_count` and
//! `regexp_split_to_array` compile their pattern with `regex-lite` (cached per thread by
//! `pg_catalog`'s regex operators too), with PostgreSQL's defaults: `.` matches a
//! newline, `^`/`$` anchor the whole string; flag `n` makes them newline-sensitive.
//!
//! [`result_type`] answers the binder, [`eval`] computes a value from evaluated
//! arguments; every function is strict (NULL in, NULL out).
//!
//! # Implementation caveats
//!
//! - The patterns are `regex-lite`'s syntax, which covers the common part of
//!   PostgreSQL's ARE (classes, `{m,n}`, lazy quantifiers, `(?:…)`, `\d`, `\w`, `\s`) but
//!   not back references, lookahead, `[[:<:]]` word boundaries, or the `x` flag's
//!   comments; such a pattern is 2201B like any invalid one.
//! - `regexp_matches` (a set-returning function) and `regexp_substr` / `regexp_instr` are
//!   not here.

use std::cell::RefCell;
use std::collections::HashMap;

use super::scalar_functions::undefined;
use crate::error::{Error, ErrorKind, Result};
use crate::sql::types::{format_array, Datum, SqlType};

/// The functions this module computes.
pub const NAMES: &[&str] = &[
    "similar_to_escape",
    "regexp_replace",
    "regexp_match",
    "regexp_like",
    "regexp_count",
    "regexp_split_to_array",
];

/// The result type of function `name` over arguments of `types`, when it is one of this
/// module's; `Err` for a known name with arguments it does not take.
pub fn result_type(name: &str, types: &[SqlType]) -> Option<Result<SqlType>> {
    if !NAMES.contains(&name) {
        return None;
    }
    let n = types.len();
    let texts = |k: usize| {
        types
            .iter()
            .take(k)
            .all(|t| t.is_string() || *t == SqlType::Unknown)
    };
    let ty = match name {
        "similar_to_escape" if (1..=2).contains(&n) && texts(n) => SqlType::Text,
        "regexp_replace" if (3..=4).contains(&n) && texts(n) => SqlType::Text,
        "regexp_match" | "regexp_split_to_array" if (2..=3).contains(&n) && texts(n) => {
            SqlType::TextArray
        }
        "regexp_like" if (2..=3).contains(&n) && texts(n) => SqlType::Bool,
        "regexp_count" if (2..=4).contains(&n) && texts(2) => {
            if n >= 3 && !(types[2].is_int() || types[2] == SqlType::Unknown) {
                return Some(Err(undefined(name, types)));
            }
            if n == 4 && !(types[3].is_string() || types[3] == SqlType::Unknown) {
                return Some(Err(undefined(name, types)));
            }
            SqlType::Int4
        }
        _ => return Some(Err(undefined(name, types))),
    };
    Some(Ok(ty))
}

fn text(d: &Datum) -> String {
    match d {
        Datum::Text(s) => s.clone(),
        d => d.to_text(d.natural_type()).unwrap_or_default(),
    }
}

/// Computes function `name` (one [`result_type`] accepted) over evaluated, non-NULL
/// arguments.
pub fn eval(name: &str, vals: &[Datum]) -> Result<Datum> {
    let arg = |i: usize| vals.get(i).map(text);
    let s = arg(0).unwrap_or_default();
    Ok(match name {
        "similar_to_escape" => Datum::Text(similar_to_escape(&s, arg(1).as_deref())?),
        "regexp_replace" => {
            let flags = Flags::parse(arg(3).as_deref().unwrap_or(""), true)?;
            let re = compile(&arg(1).unwrap_or_default(), flags)?;
            Datum::Text(replace(&re, &s, &arg(2).unwrap_or_default(), flags.global))
        }
        "regexp_match" => {
            let flags = Flags::parse(arg(2).as_deref().unwrap_or(""), false)?;
            let re = compile(&arg(1).unwrap_or_default(), flags)?;
            match re.captures(&s) {
                None => Datum::Null,
                Some(caps) if caps.len() == 1 => {
                    Datum::Text(format_array(&[caps.get(0).map(|m| m.as_str().to_string())]))
                }
                Some(caps) => {
                    let groups: Vec<Option<String>> = (1..caps.len())
                        .map(|i| caps.get(i).map(|m| m.as_str().to_string()))
                        .collect();
                    Datum::Text(format_array(&groups))
                }
            }
        }
        "regexp_like" => {
            let flags = Flags::parse(arg(2).as_deref().unwrap_or(""), false)?;
            Datum::Bool(compile(&arg(1).unwrap_or_default(), flags)?.is_match(&s))
        }
        "regexp_count" => {
            let start = match vals.get(2) {
                Some(Datum::Int(i)) => *i,
                Some(d) => text(d).trim().parse().unwrap_or(0),
                None => 1,
            };
            if start <= 0 {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    format!("invalid value for parameter \"start\": {start}"),
                ));
            }
            let flags = Flags::parse(arg(3).as_deref().unwrap_or(""), false)?;
            let re = compile(&arg(1).unwrap_or_default(), flags)?;
            let from = s
                .char_indices()
                .nth((start - 1) as usize)
                .map_or(s.len(), |(i, _)| i);
            Datum::Int(re.find_iter(&s[from..]).count() as i64)
        }
        "regexp_split_to_array" => {
            let flags = Flags::parse(arg(2).as_deref().unwrap_or(""), false)?;
            let re = compile(&arg(1).unwrap_or_default(), flags)?;
            Datum::Text(format_array(&split(&re, &s)))
        }
        _ => return Err(Error::internal(format!("no function {name} here"))),
    })
}

/// The flags argument of a regexp function: `i`/`c` case, `n` newline-sensitive, `g`
/// every match (only where the function takes it).
#[derive(Clone, Copy, Default)]
struct Flags {
    case_insensitive: bool,
    newline_sensitive: bool,
    global: bool,
}

impl Flags {
    fn parse(flags: &str, allow_global: bool) -> Result<Flags> {
        let mut f = Flags::default();
        for c in flags.chars() {
            match c {
                'i' => f.case_insensitive = true,
                'c' => f.case_insensitive = false,
                'n' | 'm' => f.newline_sensitive = true,
                's' => f.newline_sensitive = false,
                'g' if allow_global => f.global = true,
                'g' => {
                    return Err(Error::new(
                        ErrorKind::InvalidParameterValue,
                        "regexp_match() does not support the \"global\" option",
                    )
                    .with_hint("Use the regexp_matches function instead."))
                }
                other => {
                    return Err(Error::new(
                        ErrorKind::InvalidParameterValue,
                        format!("invalid regular expression option: \"{other}\""),
                    ))
                }
            }
        }
        Ok(f)
    }
}

thread_local! {
    /// Compiled patterns, by (pattern, case-insensitive, newline-sensitive).
    static CACHE: RefCell<HashMap<(String, bool, bool), regex_lite::Regex>> =
        RefCell::new(HashMap::new());
}

/// `pattern` compiled with `flags`' options (2201B when it is not a valid expression).
fn compile(pattern: &str, flags: Flags) -> Result<regex_lite::Regex> {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() > 256 {
            c.clear();
        }
        let key = (
            pattern.to_string(),
            flags.case_insensitive,
            flags.newline_sensitive,
        );
        if let Some(re) = c.get(&key) {
            return Ok(re.clone());
        }
        let re = regex_lite::RegexBuilder::new(pattern)
            .case_insensitive(flags.case_insensitive)
            .dot_matches_new_line(!flags.newline_sensitive)
            .multi_line(flags.newline_sensitive)
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::InvalidRegularExpression,
                    format!("invalid regular expression: {e}"),
                )
            })?;
        c.insert(key, re.clone());
        Ok(re)
    })
}

/// `regexp_replace`: the first match (every one when `global`) replaced by `replacement`,
/// where `\1`…`\9` is a group, `\&` the whole match and `\\` a backslash.
fn replace(re: &regex_lite::Regex, s: &str, replacement: &str, global: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for caps in re.captures_iter(s) {
        let Some(whole) = caps.get(0) else { continue };
        out.push_str(&s[last..whole.start()]);
        let mut chars = replacement.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.peek().copied() {
                Some(d @ '1'..='9') => {
                    chars.next();
                    let i = d as usize - '0' as usize;
                    if let Some(m) = caps.get(i) {
                        out.push_str(m.as_str());
                    }
                }
                Some('&') => {
                    chars.next();
                    out.push_str(whole.as_str());
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            }
        }
        last = whole.end();
        if !global {
            break;
        }
    }
    out.push_str(&s[last..]);
    out
}

/// `regexp_split_to_array`: the pieces between matches, skipping (as PostgreSQL's
/// `setup_regexp_matches` does) a match at the very end and one that ends where the
/// previous kept match ended, so an empty match splits between characters.
fn split(re: &regex_lite::Regex, s: &str) -> Vec<Option<String>> {
    let next_char = |i: usize| s[i..].chars().next().map_or(i + 1, |c| i + c.len_utf8());
    let mut pieces = Vec::new();
    let mut prev_end = 0;
    let mut search = 0;
    while search <= s.len() {
        let Some(m) = re.find_at(s, search) else {
            break;
        };
        if m.start() < s.len() && m.end() > prev_end {
            pieces.push(Some(s[prev_end..m.start()].to_string()));
            prev_end = m.end();
        }
        search = if m.start() == m.end() {
            next_char(prev_end.max(m.end()))
        } else {
            prev_end
        };
    }
    pieces.push(Some(s[prev_end..].to_string()));
    pieces
}

/// PostgreSQL's `similar_escape_internal`: SQL pattern `pattern` (SIMILAR TO) as a POSIX
/// regular expression. `escape` `None` means the default backslash; `Some("")` none.
pub fn similar_to_escape(pattern: &str, escape: Option<&str>) -> Result<String> {
    let escape = match escape {
        None => Some('\\'),
        Some(e) => {
            let mut chars = e.chars();
            let first = chars.next();
            if chars.next().is_some() {
                return Err(
                    Error::new(ErrorKind::InvalidEscapeSequence, "invalid escape string")
                        .with_hint("Escape string must be empty or one character."),
                );
            }
            first
        }
    };
    let mut out = String::with_capacity(pattern.len() + 10);
    out.push_str("^(?:");
    let mut after_escape = false;
    let mut in_class = false;
    let mut quotes = 0;
    for c in pattern.chars() {
        if after_escape {
            if c == '"' && !in_class {
                match quotes {
                    0 => out.push_str("){1,1}?("),
                    1 => out.push_str("){1,1}(?:"),
                    _ => {
                        return Err(Error::new(
                            ErrorKind::InvalidEscapeSequence,
                            "SQL regular expression may not contain more than two \
                             escape-double-quote separators",
                        ))
                    }
                }
                quotes += 1;
            } else {
                out.push('\\');
                out.push(c);
            }
            after_escape = false;
        } else if Some(c) == escape {
            after_escape = true;
        } else if in_class {
            if c == '\\' {
                out.push('\\');
            }
            out.push(c);
            if c == ']' {
                in_class = false;
            }
        } else {
            match c {
                '[' => {
                    out.push('[');
                    in_class = true;
                }
                '%' => out.push_str(".*"),
                '_' => out.push('.'),
                '(' => out.push_str("(?:"),
                '\\' | '.' | '^' | '$' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
    }
    out.push_str(")$");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_to_patterns_translate_as_postgresql() {
        assert_eq!(similar_to_escape("a%", None).unwrap(), "^(?:a.*)$");
        assert_eq!(similar_to_escape("(b|c)_", None).unwrap(), "^(?:(?:b|c).)$");
        assert_eq!(
            similar_to_escape("%#\"o_b#\"%", Some("#")).unwrap(),
            "^(?:.*){1,1}?(o.b){1,1}(?:.*)$"
        );
        assert_eq!(
            similar_to_escape("a\\%", Some("")).unwrap(),
            "^(?:a\\\\.*)$"
        );
        assert!(similar_to_escape("a", Some("ab")).is_err());
    }

    #[test]
    fn replacement_groups_and_split() {
        let re = compile("(a)(b)?", Flags::default()).unwrap();
        assert_eq!(replace(&re, "xaby a", "<\\1\\2\\&>", true), "x<abab>y <aa>");
        let re = compile("\\s*", Flags::default()).unwrap();
        let got: Vec<String> = split(&re, "ab c").into_iter().flatten().collect();
        assert_eq!(got, vec!["a", "b", "c"]);
    }
}
