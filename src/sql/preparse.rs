//! A pre-parser for the CockroachDB extensions sqlparser lacks, rewriting them into syntax
//! it parses and the executor recognizes.
//!
//! - `UPSERT INTO t … VALUES …` becomes `INSERT INTO t … ON CONFLICT DO UPDATE SET
//!   "__chitin_upsert" = 1`, which `exec` executes as an upsert (replace the row that has the
//!   same primary key).
//!
//! - `ALTER TABLE t SPLIT AT <VALUES … | SELECT …>` becomes `INSERT INTO t <VALUES …> ON
//!   CONFLICT DO UPDATE SET "__chitin_split_at" = 1` (a query goes in a derived table), which `exec` executes as splits of
//!   `t`'s ranges at the primary-key prefixes the query yields.
//! - `SELECT … FROM t AS OF SYSTEM TIME <'string' | number | fn()> …` loses the clause
//!   and becomes `SELECT * FROM (<the rest>) AS "__chitin_as_of <value>"`, which `exec`
//!   runs at that timestamp.
//!
//! - `SHOW RANGE FROM TABLE t FOR ROW (…)` becomes `INSERT INTO t VALUES (…) ON CONFLICT DO
//!   UPDATE SET "__chitin_range_for_row" = 1`, which `exec` answers with the range that
//!   holds the row with that primary key (no row is written).
//!
//! - `VACUUM …` / `CHECKPOINT` become a marked `SET` the session answers with the tag
//!   (nothing to do: the LSM compacts and collects garbage by itself).
//!
//! - `ALTER SEQUENCE [IF EXISTS] s <options>` becomes `CREATE TEMPORARY SEQUENCE [IF NOT
//!   EXISTS] s."__chitin_alter_sequence[ restart[ n]]" <the other options>`, which `exec`
//!   executes as the ALTER (sqlparser has no ALTER SEQUENCE, and no RESTART option).
//!
//! - `CREATE TABLE t (a, b) AS …` gets a marker type on each named column
//!   (`UNTYPED_COLUMN`), since sqlparser wants a type there.
//!
//! - Every `CREATE MATERIALIZED VIEW v … AS query WITH [NO] DATA` (in any statement of the
//!   string) loses the clause (sqlparser has none for views); `NO DATA` becomes the option
//!   `WITH ("__chitin_no_data" = 1)` before the `AS`, which `exec` reads.
//!
//! - Every `FETCH` and `MOVE` (in any statement of the string) becomes `FETCH ALL FROM
//!   name INTO "__chitin_cursor <fetch|move> <direction> <count>"`, which
//!   [`crate::sql::cursor::CursorCommand::from_statement`] reads: sqlparser has no MOVE,
//!   no negative counts and no FETCH without `FROM`/`IN`.
//!
//! Implementation caveats: only a statement that starts with UPSERT and is the only
//! statement of the string is rewritten; a `RETURNING` inside a string literal would
//! confuse it.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// The type name given to the columns of `CREATE TABLE t (a, b) AS …`.
pub const UNTYPED_COLUMN: &str = "__chitin_untyped";

/// The marker assignment that flags an upsert.
pub const UPSERT_MARKER: &str = "__chitin_upsert";

/// The alias prefix that carries `AS OF SYSTEM TIME`'s value: `s:` a string literal,
/// `n:` a number, `f:` a function name.
pub const AS_OF_MARKER: &str = "__chitin_as_of ";

/// The marker assignment that flags `ALTER TABLE … SPLIT AT`.
pub const SPLIT_MARKER: &str = "__chitin_split_at";

/// The marker assignment that flags `SHOW RANGE FROM TABLE … FOR ROW (…)`.
pub const RANGE_FOR_ROW_MARKER: &str = "__chitin_range_for_row";

/// The session variable a no-op statement sets; its value is the command tag.
pub const NOOP_MARKER: &str = "__chitin_noop";

/// The variable a rewritten `SET CLUSTER SETTING name = value` sets; its values are the
/// setting's name and value (`DEFAULT`: the value is the identifier `default`).
pub const CLUSTER_SETTING_MARKER: &str = "__chitin_cluster_setting";

/// The variable a rewritten `ALTER RANGE default CONFIGURE ZONE USING f = v, …` sets; its
/// values alternate field names and values. `SHOW ZONE CONFIGURATION FOR RANGE default`
/// sets it to the single value `'show'`.
pub const ZONE_CONFIG_MARKER: &str = "__chitin_zone_config";

/// The first column of an `ANALYZE` rewritten from `CREATE STATISTICS name …`, followed by
/// the name.
pub const STATS_NAME_MARKER: &str = "__chitin_stats ";

/// The option of a `CREATE MATERIALIZED VIEW … WITH NO DATA`.
pub const NO_DATA_MARKER: &str = "__chitin_no_data";

/// The last name part that flags `ALTER SEQUENCE` (a `CREATE TEMPORARY SEQUENCE`).
pub const ALTER_SEQUENCE_MARKER: &str = "__chitin_alter_sequence";

pub fn rewrite(sql: &str) -> std::borrow::Cow<'_, str> {
    // A string of several statements: each is rewritten on its own (the rewrites below
    // look at one statement: `ALTER TABLE … SPLIT AT` after a CREATE TABLE in one psql -c).
    if let Some(pieces) = split_statements(sql) {
        let rewritten: Vec<std::borrow::Cow<'_, str>> =
            pieces.iter().map(|p| rewrite_one(p)).collect();
        if rewritten
            .iter()
            .any(|r| matches!(r, std::borrow::Cow::Owned(_)))
        {
            return rewritten.join(";").into();
        }
        return sql.into();
    }
    rewrite_one(sql)
}

/// The statements of `sql` (split at the semicolons outside quotes, comments and dollar
/// quotes), when there are several; None for one (or for text the tokenizer refuses,
/// which the parser then reports).
fn split_statements(sql: &str) -> Option<Vec<&str>> {
    // PERF: most strings hold one statement and never tokenize here.
    let body = sql.trim().trim_end_matches(';');
    if !body.contains(';') {
        return None;
    }
    let (tokens, offsets) = tokens_at(sql)?;
    let mut pieces = Vec::new();
    let mut from = 0;
    for (i, _) in tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| t.token == Token::SemiColon)
    {
        let at = offsets[i];
        pieces.push(&sql[from..at]);
        from = at + 1;
    }
    pieces.push(&sql[from..]);
    pieces.retain(|p| !p.trim().is_empty());
    (pieces.len() > 1).then_some(pieces)
}

/// `sql`'s tokens and the byte offset in `sql` where each starts, plus one more offset,
/// `sql.len()`, for the end; None when the tokenizer refuses the text.
fn tokens_at(sql: &str) -> Option<(Vec<TokenWithSpan>, Vec<usize>)> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    // Byte offsets of each line's start, to turn token locations into offsets.
    let mut line_starts = vec![0];
    line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
    let mut offsets = Vec::with_capacity(tokens.len() + 1);
    for t in &tokens {
        let start = *line_starts.get((t.span.start.line as usize).checked_sub(1)?)?;
        let col = (t.span.start.column as usize).checked_sub(1)?;
        offsets.push(match sql[start..].char_indices().nth(col) {
            Some((i, _)) => start + i,
            None => sql.len(),
        });
    }
    offsets.push(sql.len());
    Some((tokens, offsets))
}

/// [`rewrite`] of one statement.
fn rewrite_one(sql: &str) -> std::borrow::Cow<'_, str> {
    let trimmed = sql.trim_start();
    let body = sql.trim().trim_end_matches(';').trim_end();
    if let Some(r) = rewrite_fetch_move(sql) {
        return r.into();
    }
    if let Some(r) = rewrite_matview_with_data(sql) {
        return r.into();
    }
    if let Some(r) = rewrite_noop(body) {
        return r.into();
    }
    if let Some(r) = rewrite_user(body) {
        return r.into();
    }
    if let Some(r) = rewrite_cluster_setting(body) {
        return r.into();
    }
    if let Some(r) = rewrite_zone_config(body) {
        return r.into();
    }
    if let Some(r) = rewrite_alter_sequence(body) {
        return r.into();
    }
    if let Some(r) = rewrite_create_statistics(body) {
        return r.into();
    }
    if let Some(r) = rewrite_explain_analyze_options(body) {
        return r.into();
    }
    if let Some(r) = rewrite_dollar_comment(body) {
        return r.into();
    }
    if let Some(r) = rewrite_split_at(body) {
        return r.into();
    }
    if let Some(r) = rewrite_range_for_row(body) {
        return r.into();
    }
    if let Some(r) = rewrite_as_of(body) {
        return r.into();
    }
    if let Some(r) = rewrite_ctas_columns(body) {
        return r.into();
    }
    let starts_with_upsert = trimmed
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("upsert"));
    if starts_with_upsert && !body.contains(';') {
        // `body` starts where `trimmed` does: at the UPSERT.
        let rest = &body[6..];
        let clause = format!(" ON CONFLICT DO UPDATE SET \"{UPSERT_MARKER}\" = 1");
        let lower = rest.to_ascii_lowercase();
        return match lower
            .rfind(" returning ")
            .or_else(|| lower.rfind("\nreturning "))
        {
            Some(i) => format!("INSERT{}{clause}{}", &rest[..i], &rest[i..]).into(),
            None => format!("INSERT{rest}{clause}").into(),
        };
    }
    sql.into()
}

/// `CREATE TABLE [IF NOT EXISTS] t (a, b) AS …` (column names without types, which
/// sqlparser does not parse) → `CREATE TABLE … t (a "__chitin_untyped", …) AS …`; the
/// types are the query's (`exec::create_table_as` reads only the names).
fn rewrite_ctas_columns(body: &str) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let mut words = lower.split_ascii_whitespace();
    if words.next()? != "create" || words.next()? != "table" || body.contains(';') {
        return None;
    }
    let open = body.find('(')?;
    // Only `CREATE TABLE [IF NOT EXISTS] name (`: the list follows the name.
    let head: Vec<&str> = lower[..open].split_ascii_whitespace().collect();
    if !matches!(
        head.as_slice(),
        [_, _, _] | [_, _, "if", "not", "exists", _]
    ) {
        return None;
    }
    let close = open + body[open..].find(')')?;
    let after = lower[close + 1..].trim_start();
    if !(after.starts_with("as ") || after.starts_with("as(") || after.starts_with("as\n")) {
        return None;
    }
    let list = &body[open + 1..close];
    let mut names = Vec::new();
    for n in list.split(',') {
        let n = n.trim();
        let plain = !n.is_empty()
            && n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let quoted = n.len() >= 2
            && n.starts_with('"')
            && n.ends_with('"')
            && n[1..n.len() - 1].chars().all(|c| c != '"');
        if !plain && !quoted {
            return None;
        }
        names.push(format!("{n} \"{UNTYPED_COLUMN}\""));
    }
    Some(format!(
        "{}({}){}",
        &body[..open],
        names.join(", "),
        &body[close + 1..]
    ))
}

/// Each statement of `sql` that is `CREATE MATERIALIZED VIEW … AS query WITH [NO] DATA`
/// loses the clause, and for `NO DATA` gets the [`NO_DATA_MARKER`] option before its
/// first `AS` outside parentheses; the rest of the text is kept byte for byte. `None` when
/// there is no such statement.
fn rewrite_matview_with_data(sql: &str) -> Option<String> {
    // PERF: every simple query passes here; most never tokenize.
    if !may_start_statement(sql, "create") || !sql.to_ascii_lowercase().contains("materialized") {
        return None;
    }
    let (tokens, offsets) = tokens_at(sql)?;
    let offset = |i: usize| offsets.get(i).copied();
    let word = |i: usize, w: &str| matches!(&tokens[i].token, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    // (byte range to remove, byte offset of the AS to put the marker before) per statement.
    let mut edits: Vec<(std::ops::Range<usize>, Option<usize>)> = Vec::new();
    let mut from = 0;
    for end in
        (0..=tokens.len()).filter(|&i| i == tokens.len() || tokens[i].token == Token::SemiColon)
    {
        let significant: Vec<usize> = (from..end)
            .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
            .collect();
        from = end + 1;
        let n = significant.len();
        if n < 6
            || !word(significant[0], "create")
            || !word(significant[1], "materialized")
            || !word(significant[2], "view")
            || !word(significant[n - 1], "data")
        {
            continue;
        }
        let no_data = word(significant[n - 2], "no");
        let with = if no_data { n - 3 } else { n - 2 };
        if !word(significant[with], "with") {
            continue;
        }
        let removed = offset(significant[with])?..offset(significant[n - 1] + 1)?;
        let mut as_at = None;
        if no_data {
            let mut depth = 0;
            for &i in &significant[3..with] {
                match &tokens[i].token {
                    Token::LParen => depth += 1,
                    Token::RParen => depth -= 1,
                    _ if depth == 0 && word(i, "as") => {
                        as_at = Some(offset(i)?);
                        break;
                    }
                    _ => {}
                }
            }
            as_at?;
        }
        edits.push((removed, as_at));
    }
    if edits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(sql.len() + 32 * edits.len());
    let mut copied = 0;
    for (removed, as_at) in edits {
        if let Some(at) = as_at {
            out.push_str(&sql[copied..at]);
            out.push_str(&format!("WITH (\"{NO_DATA_MARKER}\" = 1) "));
            copied = at;
        }
        out.push_str(sql[copied..removed.start].trim_end());
        copied = removed.end;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

/// `SELECT … AS OF SYSTEM TIME x …` → the marked derived table, if `body` is one.
fn rewrite_as_of(body: &str) -> Option<String> {
    const CLAUSE: &str = "as of system time";
    let lower = body.to_ascii_lowercase();
    if !lower.trim_start().starts_with("select") || body.contains(';') {
        return None;
    }
    let at = lower.find(CLAUSE)?;
    let rest = body.get(at + CLAUSE.len()..)?;
    let value_at = rest.len() - rest.trim_start().len();
    let rest = rest.trim_start();
    let (marker, used) = if let Some(lit) = rest.strip_prefix('\'') {
        // A string literal ('' escapes a quote).
        let mut value = String::new();
        let mut chars = lit.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().map(|p| p.1) == Some('\'') {
                    value.push('\'');
                    chars.next();
                    continue;
                }
                end = Some(i + 1);
                break;
            }
            value.push(c);
        }
        (format!("s:{value}"), 1 + end?)
    } else {
        let n = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'))
            .unwrap_or(rest.len());
        let word = &rest[..n];
        if word.is_empty() {
            return None;
        }
        if word.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
            (format!("n:{word}"), n)
        } else {
            let after = rest[n..].trim_start();
            let paren = after.strip_prefix('(')?.trim_start().strip_prefix(')')?;
            (
                format!("f:{}", word.to_ascii_lowercase()),
                rest.len() - paren.len(),
            )
        }
    };
    if marker.contains('"') {
        return None;
    }
    let before = body.get(..at)?.trim_end();
    let after = body.get(at + CLAUSE.len() + value_at + used..)?;
    Some(format!(
        "SELECT * FROM ({before} {after}) AS \"{AS_OF_MARKER}{marker}\""
    ))
}

/// `VACUUM …` and `CHECKPOINT` (storage housekeeping PostgreSQL tools send; the LSM
/// compacts and garbage-collects by itself) → `SET "__chitin_noop" = 'VACUUM'`, which the
/// session answers with the tag alone.
/// CockroachDB's `CREATE STATISTICS name ON a[, b …] FROM t` → `ANALYZE t ("marker name", a,
/// b …)` (`exec/analyze.rs` takes the name from the marker column).
/// `COMMENT ON … IS $tag$text$tag$` → `… IS 'text'`: sqlparser takes only a quoted string
/// there.
fn rewrite_dollar_comment(body: &str) -> Option<String> {
    let first = body.split_ascii_whitespace().next()?;
    if !first.eq_ignore_ascii_case("comment") || !body.ends_with('$') {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    // The first `IS` (between whitespace) followed by nothing but one dollar-quoted string:
    // the text itself may say "is".
    for (at, _) in lower.match_indices("is") {
        let before = at.checked_sub(1).map(|b| bytes[b]);
        let after = bytes.get(at + 2).copied();
        if !before.is_some_and(|b| b.is_ascii_whitespace())
            || !after.is_some_and(|b| b.is_ascii_whitespace())
        {
            continue;
        }
        let quoted = body[at + 2..].trim();
        let Some(tag_end) = quoted
            .strip_prefix('$')
            .and_then(|q| q.find('$'))
            .map(|e| e + 2)
        else {
            continue;
        };
        let tag = &quoted[..tag_end];
        let Some(text) = quoted.strip_prefix(tag).and_then(|q| q.strip_suffix(tag)) else {
            continue;
        };
        if !tag[1..tag.len() - 1]
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_')
            || text.contains(tag)
        {
            continue;
        }
        return Some(format!(
            "{} '{}'",
            &body[..at + 2],
            text.replace('\'', "''")
        ));
    }
    None
}

/// CockroachDB's `EXPLAIN ANALYZE (DISTSQL) …` → `EXPLAIN (ANALYZE, DISTSQL) …`, which
/// sqlparser reads.
fn rewrite_explain_analyze_options(body: &str) -> Option<String> {
    let t = body.trim_start();
    let (first, rest) = t.split_once(|c: char| c.is_ascii_whitespace())?;
    let rest = rest.trim_start();
    let (second, rest) = rest.split_at_checked(7)?;
    if !first.eq_ignore_ascii_case("explain") || !second.eq_ignore_ascii_case("analyze") {
        return None;
    }
    let options = rest.trim_start().strip_prefix('(')?;
    // `EXPLAIN ANALYZE (SELECT 1)` is a parenthesized query, not options.
    let word: String = options
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic() || *c == '_')
        .collect::<String>()
        .to_ascii_lowercase();
    const OPTIONS: [&str; 11] = [
        "distsql",
        "verbose",
        "costs",
        "buffers",
        "timing",
        "summary",
        "format",
        "settings",
        "wal",
        "generic_plan",
        "analyze",
    ];
    if body.contains(';') || !OPTIONS.contains(&word.as_str()) {
        return None;
    }
    Some(format!("EXPLAIN (ANALYZE, {options}"))
}

fn rewrite_create_statistics(body: &str) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let mut words = lower.split_ascii_whitespace();
    if words.next()? != "create" || words.next()? != "statistics" || body.contains(';') {
        return None;
    }
    let rest = body.trim_start()[6..].trim_start()[10..].trim_start();
    let rest_lower = rest.to_ascii_lowercase();
    let on = rest_lower.find(" on ")?;
    let from = rest_lower.rfind(" from ")?;
    if from < on {
        return None;
    }
    let name = rest[..on].trim().trim_matches('"');
    let columns = rest[on + 4..from].trim();
    let table = rest[from + 6..].trim();
    if name.is_empty() || columns.is_empty() || table.is_empty() || name.contains('"') {
        return None;
    }
    Some(format!(
        "ANALYZE {table} (\"{STATS_NAME_MARKER}{name}\", {columns})"
    ))
}

/// `CREATE USER u …` → `CREATE ROLE u … LOGIN` (PostgreSQL's CREATE USER is CREATE ROLE
/// with LOGIN by default; sqlparser reads CREATE USER as Snowflake's) and `ALTER USER` →
/// `ALTER ROLE`.
fn rewrite_user(body: &str) -> Option<String> {
    let mut words = body.split_ascii_whitespace();
    let verb = words.next()?.to_ascii_lowercase();
    if !matches!(verb.as_str(), "create" | "alter")
        || !words.next()?.eq_ignore_ascii_case("user")
        || body.contains(';')
    {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let rest: Vec<&str> = lower.split_ascii_whitespace().skip(2).collect();
    if rest.first() == Some(&"mapping") {
        return None;
    }
    let at = body.to_ascii_lowercase().find("user")? + 4;
    let tail = &body[at..];
    if verb == "alter" {
        return Some(format!("ALTER ROLE{tail}"));
    }
    let login_given = rest.iter().any(|w| *w == "login" || *w == "nologin");
    Some(format!(
        "CREATE ROLE{tail}{}",
        if login_given { "" } else { " LOGIN" }
    ))
}

/// Whether `word` (in any case) starts a line or follows a `;` (blanks aside) somewhere in
/// `text`: where a statement may start. A cheap test before tokenizing.
fn may_start_statement(text: &str, word: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .windows(word.len())
        .enumerate()
        .filter(|(_, w)| w.eq_ignore_ascii_case(word.as_bytes()))
        .any(|(i, _)| {
            let before = bytes[..i]
                .iter()
                .rev()
                .find(|b| !matches!(b, b' ' | b'\t' | b'\r'));
            matches!(before, None | Some(b';' | b'\n'))
        })
}

/// Rewrites each statement of `sql` that is a FETCH or MOVE (see the module essay); the
/// rest of the text is kept byte for byte. `None` when there is none, or a FETCH / MOVE
/// does not follow PostgreSQL's grammar (sqlparser then reports the error).
fn rewrite_fetch_move(sql: &str) -> Option<String> {
    // PERF: every simple query passes here; most never tokenize.
    if !may_start_statement(sql, "fetch") && !may_start_statement(sql, "move") {
        return None;
    }
    let (tokens, offsets) = tokens_at(sql)?;
    let mut out = String::new();
    let mut copied = 0;
    // The statements, as index ranges of their tokens.
    let mut statements = Vec::new();
    let mut from = 0;
    for (i, t) in tokens.iter().enumerate() {
        if t.token == Token::SemiColon {
            statements.push(from..i);
            from = i + 1;
        }
    }
    statements.push(from..tokens.len());
    for range in statements {
        let significant: Vec<usize> = range
            .clone()
            .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
            .collect();
        let Some((&verb_at, rest)) = significant.split_first() else {
            continue;
        };
        let verb = &tokens[verb_at];
        let op = match &verb.token {
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("fetch") => {
                "fetch"
            }
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("move") => {
                "move"
            }
            _ => continue,
        };
        // The words after the verb: a sign joins its number; a quoted name is marked so
        // it never reads as a keyword.
        let mut words: Vec<String> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut sign = "";
        for t in rest.iter().map(|&i| &tokens[i]) {
            let word = match &t.token {
                Token::Minus if sign.is_empty() => {
                    sign = "-";
                    continue;
                }
                Token::Plus if sign.is_empty() => {
                    sign = "+";
                    continue;
                }
                Token::Number(n, false) => format!("{sign}{n}"),
                Token::Word(w) if sign.is_empty() => match w.quote_style {
                    None => w.value.clone(),
                    Some(_) => format!("\"{}", w.value),
                },
                _ => return None,
            };
            sign = "";
            names.push(t.token.to_string());
            words.push(word);
        }
        if !sign.is_empty() {
            return None;
        }
        let word_refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let (spec, at) = crate::sql::cursor::parse_fetch_words(&word_refs)?;
        let start = offsets[verb_at];
        let end = offsets[range.end];
        out.push_str(&sql[copied..start]);
        out.push_str(&format!(
            "FETCH ALL FROM {} INTO \"{}{op} {spec}\" ",
            names[at],
            crate::sql::cursor::CURSOR_MARKER
        ));
        copied = end;
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

fn rewrite_noop(body: &str) -> Option<String> {
    let first = body.split_ascii_whitespace().next()?.to_ascii_lowercase();
    let tag = match first.as_str() {
        "vacuum" => "VACUUM",
        "checkpoint" => "CHECKPOINT",
        _ => return None,
    };
    if body.contains(';') {
        return None;
    }
    Some(format!("SET \"{NOOP_MARKER}\" = '{tag}'"))
}

/// `SET CLUSTER SETTING name {= | TO} value` → `SET "marker" = 'name', value`.
fn rewrite_cluster_setting(body: &str) -> Option<String> {
    let words: Vec<&str> = body.splitn(4, char::is_whitespace).collect();
    let is = |i: usize, w: &str| words.get(i).is_some_and(|x| x.eq_ignore_ascii_case(w));
    if !is(0, "set") || !is(1, "cluster") || !is(2, "setting") || body.contains(';') {
        return None;
    }
    let rest = words.get(3)?.trim_start();
    let (name, value) = match rest.find('=') {
        Some(i) => (rest[..i].trim(), rest[i + 1..].trim()),
        None => {
            let lower = rest.to_ascii_lowercase();
            let i = lower.find(" to ")?;
            (rest[..i].trim(), rest[i + 4..].trim())
        }
    };
    if name.is_empty() || value.is_empty() || name.contains('\'') {
        return None;
    }
    Some(format!(
        "SET \"{CLUSTER_SETTING_MARKER}\" = '{}', {value}",
        name.trim_matches('"')
    ))
}

/// `ALTER RANGE default CONFIGURE ZONE USING f = v [, …]` → `SET "marker" = 'f', v, …`;
/// `SHOW ZONE CONFIGURATION FOR RANGE default` → `SET "marker" = 'show'`. Other targets
/// (`ALTER TABLE … CONFIGURE ZONE`, `RANGE meta`, …) become `'target:<name>'` so the
/// session refuses them by name. `DISCARD` resets every field.
fn rewrite_zone_config(body: &str) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_ascii_whitespace().collect();
    if body.contains(';') || body.contains('"') {
        return None;
    }
    if words.len() == 6 && words[..5] == ["show", "zone", "configuration", "for", "range"] {
        return Some(if words[5] == "default" {
            format!("SET \"{ZONE_CONFIG_MARKER}\" = 'show'")
        } else {
            format!("SET \"{ZONE_CONFIG_MARKER}\" = 'target:range {}'", words[5])
        });
    }
    if words.first() != Some(&"alter") {
        return None;
    }
    let at = lower.find(" configure zone ")?;
    let target = words.get(1..)?.join(" ");
    let target = target.split(" configure zone").next()?.to_string();
    if target != "range default" {
        if target.contains('\'') {
            return None;
        }
        return Some(format!("SET \"{ZONE_CONFIG_MARKER}\" = 'target:{target}'"));
    }
    let rest = body[at + " configure zone ".len()..].trim();
    if rest.eq_ignore_ascii_case("discard") {
        return Some(format!("SET \"{ZONE_CONFIG_MARKER}\" = 'discard'"));
    }
    let using = rest.get(..6)?;
    if !using.eq_ignore_ascii_case("using ") {
        return None;
    }
    let mut values = Vec::new();
    for part in rest[6..].split(',') {
        let (field, value) = part.split_once('=')?;
        let (field, value) = (field.trim(), value.trim());
        if field.is_empty() || value.is_empty() || field.contains('\'') {
            return None;
        }
        values.push(format!("'{}', {value}", field.to_ascii_lowercase()));
    }
    Some(format!(
        "SET \"{ZONE_CONFIG_MARKER}\" = {}",
        values.join(", ")
    ))
}

/// `ALTER SEQUENCE …` → the marked `CREATE TEMPORARY SEQUENCE`, if `body` is one.
fn rewrite_alter_sequence(body: &str) -> Option<String> {
    let words: Vec<&str> = body.split_ascii_whitespace().collect();
    let is = |i: usize, w: &str| words.get(i).is_some_and(|x| x.eq_ignore_ascii_case(w));
    if !is(0, "alter") || !is(1, "sequence") || body.contains(';') {
        return None;
    }
    let if_exists = is(2, "if") && is(3, "exists");
    let mut i = if if_exists { 4 } else { 2 };
    let name = words.get(i)?;
    i += 1;
    let mut rest = Vec::new();
    let mut restart = None;
    while i < words.len() {
        if is(i, "restart") {
            i += 1;
            if is(i, "with") {
                i += 1;
            }
            restart = Some(match words.get(i).filter(|w| w.parse::<i64>().is_ok()) {
                Some(n) => {
                    i += 1;
                    format!(" restart {n}")
                }
                None => " restart".to_string(),
            });
        } else {
            rest.push(words[i]);
            i += 1;
        }
    }
    Some(format!(
        "CREATE TEMPORARY SEQUENCE {}{name}.\"{ALTER_SEQUENCE_MARKER}{}\" {}",
        if if_exists { "IF NOT EXISTS " } else { "" },
        restart.unwrap_or_default(),
        rest.join(" ")
    ))
}

/// `SHOW RANGE FROM TABLE <name> FOR ROW (<values>)` → `INSERT INTO <name> VALUES
/// (<values>) ON CONFLICT DO UPDATE SET "__chitin_range_for_row" = 1`, if `body` is one.
fn rewrite_range_for_row(body: &str) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_ascii_whitespace().take(4).collect();
    if words != ["show", "range", "from", "table"] || body.contains(';') {
        return None;
    }
    let at = lower.find(" for row ")?;
    let head = body.get(..at)?.trim_start();
    // Skip the four words (their lengths are the lowercase words' lengths).
    let mut name = head;
    for w in ["show", "range", "from", "table"] {
        name = name.get(w.len()..)?.trim_start();
    }
    let values = body.get(at + " for row ".len()..)?.trim();
    if name.is_empty() || !values.starts_with('(') {
        return None;
    }
    Some(format!(
        "INSERT INTO {name} VALUES {values} ON CONFLICT DO UPDATE SET \"{RANGE_FOR_ROW_MARKER}\" = 1"
    ))
}

/// `ALTER TABLE <name> SPLIT AT <query>` → the marked INSERT, if `body` is one.
fn rewrite_split_at(body: &str) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_ascii_whitespace().take(2).collect();
    if words != ["alter", "table"] || body.contains(';') {
        return None;
    }
    let at = lower.find(" split at ")?;
    // `lower` is `body` lowercased byte for byte, so its offsets are `body`'s.
    let head = body.get(..at)?.trim_start();
    let name = head.get(5..)?.trim_start().get(5..)?.trim();
    let query = body.get(at + " split at ".len()..)?.trim();
    if name.is_empty() || query.is_empty() {
        return None;
    }
    // A bare SELECT would swallow the ON of ON CONFLICT; a derived table cannot.
    let query = if query
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("values"))
    {
        query.to_string()
    } else {
        format!("SELECT * FROM ({query}) AS \"{SPLIT_MARKER}\"")
    };
    Some(format!(
        "INSERT INTO {name} {query} ON CONFLICT DO UPDATE SET \"{SPLIT_MARKER}\" = 1"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn materialized_view_with_data_clause() {
        assert_eq!(
            rewrite("CREATE MATERIALIZED VIEW v AS SELECT 1 WITH DATA;"),
            "CREATE MATERIALIZED VIEW v AS SELECT 1;"
        );
        assert_eq!(
            rewrite("create materialized view if not exists v (a, \"as\") as select 1, 2 with no data"),
            "create materialized view if not exists v (a, \"as\") WITH (\"__chitin_no_data\" = 1) as select 1, 2"
        );
        assert_eq!(
            rewrite("CREATE MATERIALIZED VIEW class AS\n(SELECT 1 AS x)\nWITH  NO DATA"),
            "CREATE MATERIALIZED VIEW class WITH (\"__chitin_no_data\" = 1) AS\n(SELECT 1 AS x)"
        );
        // Every statement of a string.
        assert_eq!(
            rewrite("CREATE TABLE b (k INT); CREATE MATERIALIZED VIEW m AS SELECT k FROM b WITH NO DATA; SELECT 'with no data'; CREATE MATERIALIZED VIEW n AS SELECT 1 WITH DATA"),
            "CREATE TABLE b (k INT); CREATE MATERIALIZED VIEW m WITH (\"__chitin_no_data\" = 1) AS SELECT k FROM b; SELECT 'with no data'; CREATE MATERIALIZED VIEW n AS SELECT 1"
        );
        for unchanged in [
            "CREATE MATERIALIZED VIEW v AS SELECT 1",
            "CREATE VIEW v AS SELECT 1 WITH DATA",
            "CREATE MATERIALIZED VIEW v AS SELECT data FROM with",
            "SELECT 'create materialized view v as select 1 with data'",
        ] {
            assert_eq!(rewrite(unchanged), unchanged);
        }
    }

    #[test]
    fn a_dollar_quoted_comment_becomes_a_quoted_string() {
        assert_eq!(
            rewrite("COMMENT ON TABLE t IS $$it's$$;"),
            "COMMENT ON TABLE t IS 'it''s'"
        );
        assert_eq!(
            rewrite("comment on column t.c is $x$a$$b$x$"),
            "comment on column t.c is 'a$$b'"
        );
        assert_eq!(
            rewrite("COMMENT ON TABLE t IS 'x'"),
            "COMMENT ON TABLE t IS 'x'"
        );
        assert_eq!(
            rewrite("COMMENT ON TABLE users IS $$This is the users table$$"),
            "COMMENT ON TABLE users IS 'This is the users table'"
        );
        assert_eq!(
            rewrite("COMMENT ON TABLE t IS\n$$x$$"),
            "COMMENT ON TABLE t IS 'x'"
        );
        for odd in [
            "COMMENT ON t IS $",
            "COMMENT ON t IS é$",
            "comment on t is x$",
            "COMMENT $",
        ] {
            assert_eq!(rewrite(odd), odd);
        }
    }

    #[test]
    fn create_user_is_a_login_role() {
        assert_eq!(rewrite("create user u1"), "CREATE ROLE u1 LOGIN");
        assert_eq!(
            rewrite("CREATE USER u WITH PASSWORD 'p';"),
            "CREATE ROLE u WITH PASSWORD 'p' LOGIN"
        );
        assert_eq!(rewrite("CREATE USER u NOLOGIN"), "CREATE ROLE u NOLOGIN");
        assert_eq!(
            rewrite("alter user u with login"),
            "ALTER ROLE u with login"
        );
        let mapping = "CREATE USER MAPPING FOR u SERVER s";
        assert_eq!(rewrite(mapping), mapping);
        assert_eq!(rewrite("CREATE USERS x"), "CREATE USERS x");
    }

    #[test]
    fn explain_analyze_with_options_becomes_one_option_list() {
        assert_eq!(
            rewrite("EXPLAIN ANALYZE (DISTSQL) SELECT 1"),
            "EXPLAIN (ANALYZE, DISTSQL) SELECT 1"
        );
        assert_eq!(
            rewrite("explain  analyze(distsql) select 1;"),
            "EXPLAIN (ANALYZE, distsql) select 1"
        );
        assert_eq!(
            rewrite("EXPLAIN ANALYZE SELECT 1"),
            "EXPLAIN ANALYZE SELECT 1"
        );
        assert_eq!(rewrite("EXPLAIN analyzed"), "EXPLAIN analyzed");
        assert_eq!(
            rewrite("EXPLAIN ANALYZE (SELECT 1)"),
            "EXPLAIN ANALYZE (SELECT 1)"
        );
    }

    #[test]
    fn zone_configs_are_rewritten_and_parse() {
        for (sql, want) in [
            (
                "ALTER RANGE default CONFIGURE ZONE USING range_max_bytes = 1048576, num_replicas = 3",
                "SET \"__chitin_zone_config\" = 'range_max_bytes', 1048576, 'num_replicas', 3",
            ),
            (
                "alter range default configure zone discard",
                "SET \"__chitin_zone_config\" = 'discard'",
            ),
            (
                "SHOW ZONE CONFIGURATION FOR RANGE default",
                "SET \"__chitin_zone_config\" = 'show'",
            ),
            (
                "ALTER TABLE t CONFIGURE ZONE USING num_replicas = 5",
                "SET \"__chitin_zone_config\" = 'target:table t'",
            ),
        ] {
            let r = rewrite(sql);
            assert_eq!(r, want);
            crate::sql::session::parse(&r).unwrap();
        }
        assert_eq!(
            rewrite("ALTER TABLE t ADD COLUMN c INT"),
            "ALTER TABLE t ADD COLUMN c INT"
        );
    }

    #[test]
    fn upsert_is_rewritten_and_parses() {
        let r = rewrite("UPSERT INTO t (k, v) VALUES (1, 'a');");
        assert_eq!(
            r,
            "INSERT INTO t (k, v) VALUES (1, 'a') ON CONFLICT DO UPDATE SET \"__chitin_upsert\" = 1"
        );
        let stmts =
            sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, &r)
                .unwrap();
        assert_eq!(stmts.len(), 1);
        assert_eq!(rewrite("SELECT 1"), "SELECT 1");
        // Multi-byte characters where the keyword would be must not panic.
        assert_eq!(rewrite("SELE\u{fffd} $1"), "SELE\u{fffd} $1");
        let r = rewrite("upsert into t values (1) returning k");
        assert_eq!(r, "INSERT into t values (1) ON CONFLICT DO UPDATE SET \"__chitin_upsert\" = 1 returning k");
    }

    #[test]
    fn alter_sequence_is_rewritten_and_parses() {
        let r = rewrite("ALTER SEQUENCE s RESTART WITH 10 INCREMENT BY 2;");
        assert_eq!(
            r,
            "CREATE TEMPORARY SEQUENCE s.\"__chitin_alter_sequence restart 10\" INCREMENT BY 2"
        );
        let r2 = rewrite("alter sequence if exists s restart");
        assert_eq!(
            r2,
            "CREATE TEMPORARY SEQUENCE IF NOT EXISTS s.\"__chitin_alter_sequence restart\" "
        );
        for sql in [r, r2] {
            let stmts = sqlparser::parser::Parser::parse_sql(
                &sqlparser::dialect::PostgreSqlDialect {},
                &sql,
            )
            .unwrap();
            assert!(matches!(
                stmts[0],
                sqlparser::ast::Statement::CreateSequence {
                    temporary: true,
                    ..
                }
            ));
        }
        assert_eq!(
            rewrite("ALTER TABLE t ADD c int"),
            "ALTER TABLE t ADD c int"
        );
    }

    #[test]
    fn as_of_system_time_is_rewritten_and_parses() {
        let r = rewrite("SELECT k FROM t AS OF SYSTEM TIME '-10s' WHERE k > 1 ORDER BY k");
        assert_eq!(
            r,
            "SELECT * FROM (SELECT k FROM t  WHERE k > 1 ORDER BY k) AS \"__chitin_as_of s:-10s\""
        );
        let r = rewrite("select count(*) from t as of system time follower_read_timestamp()");
        assert!(
            r.ends_with("AS \"__chitin_as_of f:follower_read_timestamp\""),
            "{r}"
        );
        let r = rewrite("SELECT 1 FROM t AS OF SYSTEM TIME 1700000000000000000.0000000001");
        assert!(
            r.ends_with("AS \"__chitin_as_of n:1700000000000000000.0000000001\""),
            "{r}"
        );
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, &r)
            .unwrap();
        assert_eq!(
            rewrite("SELECT 'as of system time'"),
            "SELECT 'as of system time'"
        );
    }

    #[test]
    fn each_statement_of_a_string_is_rewritten() {
        let r = rewrite(
            "CREATE TABLE kv (k INT PRIMARY KEY); ALTER TABLE kv SPLIT AT VALUES (10);\n\
             UPSERT INTO kv VALUES (1); SELECT ';'",
        );
        assert_eq!(
            r,
            "CREATE TABLE kv (k INT PRIMARY KEY);INSERT INTO kv VALUES (10) ON CONFLICT DO \
             UPDATE SET \"__chitin_split_at\" = 1;INSERT INTO kv VALUES (1) ON CONFLICT DO \
             UPDATE SET \"__chitin_upsert\" = 1; SELECT ';'"
        );
        for (i, stmt) in crate::sql::session::parse(&r).unwrap().iter().enumerate() {
            assert!(!stmt.to_string().is_empty(), "statement {i}");
        }
        // Nothing to rewrite: the string itself.
        let plain = "SELECT 1; SELECT 2";
        assert!(matches!(rewrite(plain), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn split_at_is_rewritten_and_parses() {
        let r = rewrite("ALTER TABLE kv SPLIT AT VALUES (10), (20);");
        assert_eq!(
            r,
            "INSERT INTO kv VALUES (10), (20) ON CONFLICT DO UPDATE SET \"__chitin_split_at\" = 1"
        );
        let r = rewrite("alter  table \"My T\"\n split at select generate_series(1, 3)");
        assert!(
            r.starts_with("INSERT INTO \"My T\" SELECT * FROM (select"),
            "{r}"
        );
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, &r)
            .unwrap();
        assert_eq!(
            rewrite("ALTER TABLE t ADD COLUMN c INT"),
            "ALTER TABLE t ADD COLUMN c INT"
        );
    }

    #[test]
    fn fetch_and_move_are_rewritten_in_every_statement() {
        let r = rewrite("SELECT 'move';\n  MOVE -2 IN \"My C\"; fetch absolute -1 c ;SELECT 1");
        assert_eq!(
            r,
            "SELECT 'move';\n  FETCH ALL FROM \"My C\" INTO \"__chitin_cursor move forward -2\" ; \
             FETCH ALL FROM c INTO \"__chitin_cursor fetch absolute -1\" ;SELECT 1"
        );
        let stmts =
            sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, &r)
                .unwrap();
        assert_eq!(stmts.len(), 4);
        // A query's FETCH FIRST clause and a malformed FETCH are left alone.
        let q = "SELECT a FROM t FETCH FIRST 2 ROWS ONLY";
        assert_eq!(rewrite(q), q);
        assert_eq!(rewrite("FETCH ABSOLUTE FROM c"), "FETCH ABSOLUTE FROM c");
    }
}
