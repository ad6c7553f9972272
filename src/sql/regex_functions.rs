//! PostgreSQL's regular-expression functions and `SIMILAR TO`.
//!
//! `x SIMILAR TO p [ESCAPE e]` binds as the `~` operator over `similar_to_escape(p, e)`,
//! which turns the SQL pattern into a POSIX one exactly as PostgreSQL's
//! `similar_escape_internal` does (`%` → `.*`, `_` → `.`, the escape character quotes the
//! next one, `e"` separates the parts `substring` would return, the whole wrapped in
//! `^(?: … )$`). `regexp_replace`, `regexp_match`, `regexp_like`, `regexp_count` and
//! `regexp_split_to_array` and `regexp_matches` compile their pattern with `fancy-regex`
//! (cached per thread; the `~` operators share the cache), with PostgreSQL's defaults: `.`
//! matches a newline, `^`/`$` anchor the whole string; flag `n` makes them
//! newline-sensitive.
//!
//! [`result_type`] answers the binder, [`eval`] computes a value from evaluated
//! arguments; every function is strict (NULL in, NULL out).
//!
//! # Implementation caveats
//!
//! - The patterns are `fancy-regex`'s syntax, which covers most of PostgreSQL's ARE
//!   (classes, `{m,n}`, lazy quantifiers, `(?:…)`, lookahead and lookbehind, back
//!   references, `\d`, `\w`, `\s`) but not `[[:<:]]` word boundaries or the `x` flag's
//!   comments; such a pattern is 2201B like any invalid one. A match that backtracks more
//!   than the engine's limit (a million steps) fails with 2201B instead of running on.
//! - `regexp_matches` (a set-returning function) is `__regexp_matches`, whose value is the
//!   array of its rows (each a `text[]` literal), expanded by the select list or FROM.
//! - `regexp_substr` / `regexp_instr` are not here.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

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
    "__regexp_matches",
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
        "regexp_replace" if n == 3 && texts(3) => SqlType::Text,
        // (…, flags) or (…, start [, N [, flags]]).
        "regexp_replace" if (4..=6).contains(&n) && texts(3) => {
            let int = |i: usize| types[i].is_int() || types[i] == SqlType::Unknown;
            let string = |i: usize| types[i].is_string() || types[i] == SqlType::Unknown;
            let ok = match n {
                4 => int(3) || string(3),
                5 => int(3) && int(4),
                _ => int(3) && int(4) && string(5),
            };
            if !ok {
                return Some(Err(undefined(name, types)));
            }
            SqlType::Text
        }
        "__regexp_matches" if (2..=3).contains(&n) && texts(n) => SqlType::TextArray,
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
            // The fourth argument is the start position when it is an integer.
            let int = |i: usize| match vals.get(i) {
                Some(Datum::Int(v)) => Some(*v),
                _ => None,
            };
            let (start, nth, flags) = match (int(3), vals.len()) {
                (Some(start), n) => (start, int(4), arg(5).filter(|_| n == 6)),
                (None, _) => (1, None, arg(3)),
            };
            if start <= 0 {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    format!("invalid value for parameter \"start\": {start}"),
                ));
            }
            if let Some(n) = nth.filter(|n| *n < 0) {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    format!("invalid value for parameter \"n\": {n}"),
                ));
            }
            let mut flags = Flags::parse(flags.as_deref().unwrap_or(""), true)?;
            // N = 0 replaces every match; N > 0 only the N-th.
            let which = match nth {
                Some(0) => {
                    flags.global = true;
                    None
                }
                Some(n) => Some(n as usize),
                None => None,
            };
            let re = compile(&arg(1).unwrap_or_default(), flags)?;
            let from = char_offset(&s, start);
            let replacement = arg(2).unwrap_or_default();
            Datum::Text(replace(&re, &s, from, &replacement, flags.global, which)?)
        }
        "regexp_match" => {
            let flags = Flags::parse(arg(2).as_deref().unwrap_or(""), false)?;
            let re = compile(&arg(1).unwrap_or_default(), flags)?;
            match re.captures(&s).map_err(too_complex)? {
                None => Datum::Null,
                Some(caps) => Datum::Text(format_array(&groups(&caps))),
            }
        }
        "__regexp_matches" => {
            let flags = Flags::parse(arg(2).as_deref().unwrap_or(""), true)?;
            let re = compile(&arg(1).unwrap_or_default(), flags)?;
            let mut rows = Vec::new();
            for caps in re.captures_iter(&s) {
                let caps = caps.map_err(too_complex)?;
                rows.push(Some(format_array(&groups(&caps))));
                if !flags.global {
                    break;
                }
            }
            Datum::Text(format_array(&rows))
        }
        "regexp_like" => {
            let flags = Flags::parse(arg(2).as_deref().unwrap_or(""), false)?;
            let re = compile(&arg(1).unwrap_or_default(), flags)?;
            Datum::Bool(re.is_match(&s).map_err(too_complex)?)
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
            let from = char_offset(&s, start);
            let mut count = 0;
            for m in re.find_iter(&s[from..]) {
                m.map_err(too_complex)?;
                count += 1;
            }
            Datum::Int(count)
        }
        "regexp_split_to_array" => {
            let flags = Flags::parse(arg(2).as_deref().unwrap_or(""), false)?;
            let re = compile(&arg(1).unwrap_or_default(), flags)?;
            Datum::Text(format_array(&split(&re, &s)?))
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

/// The byte offset of 1-based character position `start` of `s` (its end when past it).
fn char_offset(s: &str, start: i64) -> usize {
    s.char_indices()
        .nth((start - 1) as usize)
        .map_or(s.len(), |(i, _)| i)
}

/// What `regexp_match` / `regexp_matches` return for one match: its groups, or the whole
/// match when the pattern has none.
fn groups(caps: &fancy_regex::Captures) -> Vec<Option<String>> {
    let text = |i: usize| caps.get(i).map(|m| m.as_str().to_string());
    if caps.len() == 1 {
        vec![text(0)]
    } else {
        (1..caps.len()).map(text).collect()
    }
}

/// A match that gave up (backtracking past the engine's limit).
fn too_complex(e: fancy_regex::Error) -> Error {
    Error::new(
        ErrorKind::InvalidRegularExpression,
        format!("invalid regular expression: {e}"),
    )
}

thread_local! {
    /// Compiled patterns, by (pattern, case-insensitive, newline-sensitive).
    static CACHE: RefCell<HashMap<(String, bool, bool), Rc<fancy_regex::Regex>>> =
        RefCell::new(HashMap::new());
}

/// `pattern` compiled with `flags`' options (2201B when it is not a valid expression).
fn compile(pattern: &str, flags: Flags) -> Result<Rc<fancy_regex::Regex>> {
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
        let re = fancy_regex::RegexBuilder::new(pattern)
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
        let re = Rc::new(re);
        c.insert(key, re.clone());
        Ok(re)
    })
}

/// Whether `pattern` matches somewhere in `s` (the `~` operators; `.` matches a newline).
pub fn is_match(s: &str, pattern: &str, case_insensitive: bool) -> Result<bool> {
    let flags = Flags {
        case_insensitive,
        ..Flags::default()
    };
    compile(pattern, flags)?.is_match(s).map_err(too_complex)
}

/// `regexp_replace`: the matches at or after byte `from` — the first, every one when
/// `global`, or only the `which`-th — replaced by `replacement`, where `\1`…`\9` is a
/// group, `\&` the whole match and `\\` a backslash.
fn replace(
    re: &fancy_regex::Regex,
    s: &str,
    from: usize,
    replacement: &str,
    global: bool,
    which: Option<usize>,
) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..from]);
    let mut last = from;
    let mut seen = 0;
    let mut pos = from;
    while pos <= s.len() {
        let Some(caps) = re.captures_from_pos(s, pos).map_err(too_complex)? else {
            break;
        };
        let Some(whole) = caps.get(0) else { break };
        seen += 1;
        // The next search starts after this match (one character on after an empty one).
        pos = if whole.end() > whole.start() {
            whole.end()
        } else {
            s[whole.end()..]
                .chars()
                .next()
                .map_or(s.len() + 1, |c| whole.end() + c.len_utf8())
        };
        if which.is_some_and(|w| w != seen) {
            continue;
        }
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
        if !global || which.is_some() {
            break;
        }
    }
    out.push_str(&s[last..]);
    Ok(out)
}

/// `regexp_split_to_array`: the pieces between matches, skipping (as PostgreSQL's
/// `setup_regexp_matches` does) a match at the very end and one that ends where the
/// previous kept match ended, so an empty match splits between characters.
fn split(re: &fancy_regex::Regex, s: &str) -> Result<Vec<Option<String>>> {
    let next_char = |i: usize| s[i..].chars().next().map_or(i + 1, |c| i + c.len_utf8());
    let mut pieces = Vec::new();
    let mut prev_end = 0;
    let mut search = 0;
    while search <= s.len() {
        let Some(m) = re.find_from_pos(s, search).map_err(too_complex)? else {
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
    Ok(pieces)
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
        let all = replace(&re, "xaby a", 0, "<\\1\\2\\&>", true, None).unwrap();
        assert_eq!(all, "x<abab>y <aa>");
        let second = replace(&re, "xaby a", 0, "<\\1>", false, Some(2)).unwrap();
        assert_eq!(second, "xaby <a>");
        let from = replace(&re, "ab ab", 1, "-", true, None).unwrap();
        assert_eq!(from, "ab -");
        let re = compile("x*", Flags::default()).unwrap();
        assert_eq!(replace(&re, "abc", 0, "-", true, None).unwrap(), "-a-b-c-");
        let re = compile("\\s*", Flags::default()).unwrap();
        let got: Vec<String> = split(&re, "ab c").unwrap().into_iter().flatten().collect();
        assert_eq!(got, vec!["a", "b", "c"]);
    }

    #[test]
    fn lookaround_and_back_references() {
        let re = compile("a(?=r)", Flags::default()).unwrap();
        assert_eq!(
            replace(&re, "foobarbaz", 0, "X", false, None).unwrap(),
            "foobXrbaz"
        );
        let re = compile("(?<!X)a", Flags::default()).unwrap();
        assert_eq!(
            replace(&re, "foobarXaz", 0, "X", true, None).unwrap(),
            "foobXrXaz"
        );
        assert!(is_match("abab", "(ab)\\1", false).unwrap());
        assert!(!is_match("abba", "(ab)\\1", false).unwrap());
    }
}
