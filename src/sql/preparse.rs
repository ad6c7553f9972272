//! A pre-parser for the CockroachDB extensions sqlparser lacks, rewriting them into syntax
//! it parses and the executor recognizes.
//!
//! - `UPSERT INTO t … VALUES …` becomes `INSERT INTO t … ON CONFLICT DO UPDATE SET
//!   "__chitin_upsert" = 1`, which `exec` executes as an upsert (replace the row that has the
//!   same primary key).
//!
//! Implementation caveats: only a statement that starts with UPSERT and is the only
//! statement of the string is rewritten; a `RETURNING` inside a string literal would
//! confuse it.

/// The marker assignment that flags an upsert.
pub const UPSERT_MARKER: &str = "__chitin_upsert";

pub fn rewrite(sql: &str) -> std::borrow::Cow<'_, str> {
    let trimmed = sql.trim_start();
    let body = sql.trim().trim_end_matches(';').trim_end();
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
}
