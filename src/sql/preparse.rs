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
//!
//! Implementation caveats: only a statement that starts with UPSERT and is the only
//! statement of the string is rewritten; a `RETURNING` inside a string literal would
//! confuse it.

/// The marker assignment that flags an upsert.
pub const UPSERT_MARKER: &str = "__chitin_upsert";

/// The marker assignment that flags `ALTER TABLE … SPLIT AT`.
pub const SPLIT_MARKER: &str = "__chitin_split_at";

pub fn rewrite(sql: &str) -> std::borrow::Cow<'_, str> {
    let trimmed = sql.trim_start();
    let body = sql.trim().trim_end_matches(';').trim_end();
    if let Some(r) = rewrite_split_at(body) {
        return r.into();
    }
    let starts_with_upsert = trimmed
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("upsert"));
    if starts_with_upsert && !body.contains(';') {
        let rest = &body[sql.len() - trimmed.len() + 6..];
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
}
