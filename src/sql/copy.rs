//! `COPY`: bulk load from and unload to the client, in PostgreSQL's text and CSV formats.
//!
//! `COPY t [(cols)] FROM STDIN [[WITH] (options)]` and `COPY {t [(cols)] | (query)} TO
//! STDOUT [[WITH] (options)]`, with the options PostgreSQL 15 accepts for text and CSV
//! (`FORMAT`, `DELIMITER`, `NULL`, `HEADER`, `QUOTE`, `ESCAPE`, `FREEZE`, `ENCODING`,
//! `FORCE_QUOTE`, `FORCE_NOT_NULL`, `FORCE_NULL`) and the pre-9.0 spellings (`WITH CSV
//! HEADER DELIMITER AS ','`). sqlparser's COPY grammar lacks some of these (`FREEZE on`),
//! so the statement is parsed here from its tokens.
//!
//! The wire side lives in `server::pgwire` (CopyInResponse, CopyData…, CopyDone); this
//! module turns the byte stream into rows ([`CopyDecoder`], incremental: a row may span
//! CopyData messages) and rows into bytes ([`encode_row`]).
//!
//! # Implementation caveats
//!
//! - Binary format, files and `PROGRAM` are refused (0A000): the server never touches the
//!   client's files.
//! - `COPY … FROM STDIN` outside an explicit transaction commits every
//!   [`COPY_BATCH_ROWS`] rows (as CockroachDB did before atomic COPY): if a later row fails,
//!   the rows of earlier batches stay. Inside `BEGIN … COMMIT` it is all or nothing.
//! - `WHERE` on `COPY FROM` is refused.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{Error, ErrorKind, Result};

/// Rows per committed batch of a `COPY FROM` outside an explicit transaction.
pub const COPY_BATCH_ROWS: usize = 2_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
}

/// What a `COPY` statement asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopySpec {
    /// The table, as SQL text (possibly qualified and quoted); empty for `COPY (query)`.
    pub table: String,
    pub columns: Vec<String>,
    /// `COPY (query) TO STDOUT`.
    pub query: Option<String>,
    /// FROM STDIN (true) or TO STDOUT (false).
    pub from: bool,
    pub format: CopyFormat,
    pub delimiter: u8,
    pub null: String,
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
    /// FORCE_QUOTE: columns always quoted in CSV output (`*`: all).
    pub force_quote: Vec<String>,
    pub force_quote_all: bool,
    /// FORCE_NOT_NULL: CSV input columns whose unquoted NULL string is an empty string.
    pub force_not_null: Vec<String>,
    /// FORCE_NULL: CSV input columns whose quoted NULL string is NULL too.
    pub force_null: Vec<String>,
}

/// True when `sql` is a COPY statement (its first word is COPY).
pub fn is_copy(sql: &str) -> bool {
    let s = skip_comments(sql);
    s.get(..4).is_some_and(|w| w.eq_ignore_ascii_case("copy"))
        && s[4..].starts_with(|c: char| c.is_whitespace() || c == '(' || c == '"')
}

fn skip_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.find('\n').map(|i| &rest[i..]).unwrap_or("");
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.find("*/").map(|i| &rest[i + 2..]).unwrap_or("");
        } else {
            return s;
        }
    }
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::syntax(msg.into())
}

/// Token cursor over the statement, whitespace dropped.
struct Cur {
    toks: Vec<Token>,
    pos: usize,
}

impl Cur {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    /// The next token if it is the (unquoted) keyword `kw`.
    fn keyword(&mut self, kw: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }
    fn expect_keyword(&mut self, kw: &str) -> Result<()> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }
    fn token(&mut self, t: &Token) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn unexpected(&self) -> Error {
        match self.peek() {
            Some(t) => syntax(format!("syntax error at or near \"{t}\"")),
            None => syntax("syntax error at end of input"),
        }
    }
    /// An identifier: its value (case-folded unless quoted).
    fn ident(&mut self) -> Result<String> {
        match self.next() {
            Some(Token::Word(w)) => Ok(if w.quote_style.is_some() {
                w.value
            } else {
                w.value.to_lowercase()
            }),
            _ => {
                self.pos -= 1;
                Err(self.unexpected())
            }
        }
    }
    /// A string literal.
    fn string(&mut self) -> Result<String> {
        match self.next() {
            Some(Token::SingleQuotedString(s)) | Some(Token::EscapedStringLiteral(s)) => Ok(s),
            _ => {
                self.pos -= 1;
                Err(self.unexpected())
            }
        }
    }
    /// `( ident, … )`
    fn ident_list(&mut self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if !self.token(&Token::LParen) {
            return Err(self.unexpected());
        }
        loop {
            out.push(self.ident()?);
            if self.token(&Token::Comma) {
                continue;
            }
            if self.token(&Token::RParen) {
                return Ok(out);
            }
            return Err(self.unexpected());
        }
    }
}

/// Parses a COPY statement.
pub fn parse(sql: &str) -> Result<CopySpec> {
    let body = skip_comments(sql).trim_end().trim_end_matches(';');
    let toks = Tokenizer::new(&PostgreSqlDialect {}, body)
        .tokenize()
        .map_err(|e| syntax(e.to_string()))?;
    let toks: Vec<Token> = toks
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut c = Cur { toks, pos: 0 };
    c.expect_keyword("copy")?;
    let mut spec = CopySpec {
        table: String::new(),
        columns: Vec::new(),
        query: None,
        from: true,
        format: CopyFormat::Text,
        delimiter: b'\t',
        null: "\\N".into(),
        header: false,
        quote: b'"',
        escape: b'"',
        force_quote: Vec::new(),
        force_quote_all: false,
        force_not_null: Vec::new(),
        force_null: Vec::new(),
    };
    if c.peek() == Some(&Token::LParen) {
        // `( query )`: find the matching parenthesis and keep the text between.
        let start = c.pos + 1;
        let mut depth = 0;
        let mut end = None;
        for (i, t) in c.toks.iter().enumerate().skip(c.pos) {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(|| syntax("syntax error at end of input"))?;
        let text: String = c.toks[start..end]
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        spec.query = Some(text);
        c.pos = end + 1;
    } else {
        let mut name = String::new();
        loop {
            match c.next() {
                Some(Token::Word(w)) => name.push_str(&w.to_string()),
                _ => {
                    c.pos -= 1;
                    return Err(c.unexpected());
                }
            }
            if c.token(&Token::Period) {
                name.push('.');
                continue;
            }
            break;
        }
        spec.table = name;
        if c.peek() == Some(&Token::LParen) {
            spec.columns = c.ident_list()?;
        }
    }
    if c.keyword("from") {
        spec.from = true;
    } else if c.keyword("to") {
        spec.from = false;
    } else {
        return Err(c.unexpected());
    }
    if spec.query.is_some() && spec.from {
        return Err(syntax("syntax error at or near \"FROM\""));
    }
    if c.keyword("stdin") || c.keyword("stdout") {
    } else if c.keyword("program") || matches!(c.peek(), Some(Token::SingleQuotedString(_))) {
        return Err(Error::new(
            ErrorKind::FeatureNotSupported,
            "COPY to or from a file or program is not supported; use STDIN or STDOUT \
             (psql's \\copy)",
        ));
    } else {
        return Err(c.unexpected());
    }
    c.keyword("with");
    if c.peek() == Some(&Token::LParen) {
        c.next();
        loop {
            option(&mut c, &mut spec)?;
            if c.token(&Token::Comma) {
                continue;
            }
            if c.token(&Token::RParen) {
                break;
            }
            return Err(c.unexpected());
        }
    } else {
        legacy_options(&mut c, &mut spec)?;
    }
    if c.keyword("where") {
        return Err(Error::new(
            ErrorKind::FeatureNotSupported,
            "COPY FROM … WHERE is not supported",
        ));
    }
    if c.peek().is_some() {
        return Err(c.unexpected());
    }
    validate(&spec)?;
    Ok(spec)
}

fn single_byte(name: &str, s: &str) -> Result<u8> {
    match s.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(Error::new(
            ErrorKind::FeatureNotSupported,
            format!("COPY {name} must be a single one-byte character"),
        )),
    }
}

fn boolean(c: &mut Cur) -> Result<bool> {
    match c.peek() {
        Some(Token::Word(w)) if w.quote_style.is_none() => {
            let v = match w.value.to_ascii_lowercase().as_str() {
                "true" | "on" => true,
                "false" | "off" => false,
                _ => return Ok(true),
            };
            c.pos += 1;
            Ok(v)
        }
        Some(Token::Number(n, _)) => {
            let v = n != "0";
            c.pos += 1;
            Ok(v)
        }
        Some(Token::SingleQuotedString(s)) => {
            let v = matches!(s.to_ascii_lowercase().as_str(), "true" | "on" | "1" | "yes");
            c.pos += 1;
            Ok(v)
        }
        _ => Ok(true),
    }
}

/// One `name value` of the parenthesized option list.
fn option(c: &mut Cur, spec: &mut CopySpec) -> Result<()> {
    let name = c.ident()?;
    match name.as_str() {
        "format" => {
            let f = c.ident()?;
            spec.format = match f.as_str() {
                "text" => CopyFormat::Text,
                "csv" => CopyFormat::Csv,
                "binary" => {
                    return Err(Error::new(
                        ErrorKind::FeatureNotSupported,
                        "COPY format \"binary\" is not supported",
                    ))
                }
                other => {
                    return Err(Error::new(
                        ErrorKind::InvalidParameterValue,
                        format!("COPY format \"{other}\" not recognized"),
                    ))
                }
            };
            set_format_defaults(spec);
        }
        "freeze" => {
            boolean(c)?;
        }
        "delimiter" => spec.delimiter = single_byte("delimiter", &c.string()?)?,
        "null" => spec.null = c.string()?,
        "header" => {
            if c.keyword("match") {
                spec.header = true;
            } else {
                spec.header = boolean(c)?;
            }
        }
        "quote" => spec.quote = single_byte("quote", &c.string()?)?,
        "escape" => spec.escape = single_byte("escape", &c.string()?)?,
        "encoding" => {
            let e = c.string()?;
            let e = e.to_ascii_lowercase().replace(['-', '_'], "");
            if e != "utf8" && e != "unicode" && e != "sqlascii" {
                return Err(Error::new(
                    ErrorKind::FeatureNotSupported,
                    "COPY supports only the UTF8 encoding",
                ));
            }
        }
        "force_quote" => {
            if c.token(&Token::Mul) {
                spec.force_quote_all = true;
            } else {
                spec.force_quote = c.ident_list()?;
            }
        }
        "force_not_null" => spec.force_not_null = c.ident_list()?,
        "force_null" => spec.force_null = c.ident_list()?,
        "oids" => {
            if boolean(c)? {
                return Err(Error::new(
                    ErrorKind::FeatureNotSupported,
                    "COPY … OIDS is not supported",
                ));
            }
        }
        other => {
            return Err(syntax(format!("option \"{other}\" not recognized")));
        }
    }
    Ok(())
}

fn set_format_defaults(spec: &mut CopySpec) {
    match spec.format {
        CopyFormat::Text => {
            if spec.delimiter == b',' {
                spec.delimiter = b'\t';
            }
            if spec.null.is_empty() {
                spec.null = "\\N".into();
            }
        }
        CopyFormat::Csv => {
            if spec.delimiter == b'\t' {
                spec.delimiter = b',';
            }
            if spec.null == "\\N" {
                spec.null = String::new();
            }
        }
    }
}

/// The pre-9.0 option syntax: `[BINARY] [DELIMITER [AS] 'c'] [NULL [AS] 's'] [CSV [HEADER]
/// [QUOTE [AS] 'q'] [ESCAPE [AS] 'e'] [FORCE QUOTE cols|*] [FORCE NOT NULL cols]]`.
fn legacy_options(c: &mut Cur, spec: &mut CopySpec) -> Result<()> {
    let mut delimiter = None;
    let mut null = None;
    loop {
        if c.keyword("binary") {
            return Err(Error::new(
                ErrorKind::FeatureNotSupported,
                "COPY format \"binary\" is not supported",
            ));
        } else if c.keyword("delimiter") {
            c.keyword("as");
            delimiter = Some(single_byte("delimiter", &c.string()?)?);
        } else if c.keyword("null") {
            c.keyword("as");
            null = Some(c.string()?);
        } else if c.keyword("csv") {
            spec.format = CopyFormat::Csv;
        } else if c.keyword("header") {
            spec.header = true;
        } else if c.keyword("quote") {
            c.keyword("as");
            spec.quote = single_byte("quote", &c.string()?)?;
        } else if c.keyword("escape") {
            c.keyword("as");
            spec.escape = single_byte("escape", &c.string()?)?;
        } else if c.keyword("force") {
            if c.keyword("quote") {
                if c.token(&Token::Mul) {
                    spec.force_quote_all = true;
                } else {
                    spec.force_quote = bare_ident_list(c)?;
                }
            } else {
                c.expect_keyword("not")?;
                c.expect_keyword("null")?;
                spec.force_not_null = bare_ident_list(c)?;
            }
        } else {
            break;
        }
    }
    set_format_defaults(spec);
    if let Some(d) = delimiter {
        spec.delimiter = d;
    }
    if let Some(n) = null {
        spec.null = n;
    }
    Ok(())
}

fn bare_ident_list(c: &mut Cur) -> Result<Vec<String>> {
    let mut out = vec![c.ident()?];
    while c.token(&Token::Comma) {
        out.push(c.ident()?);
    }
    Ok(out)
}

fn validate(spec: &CopySpec) -> Result<()> {
    let bad = |m: &str| Err(Error::new(ErrorKind::FeatureNotSupported, m.to_string()));
    if spec.format == CopyFormat::Text {
        if spec.quote != b'"' || spec.escape != b'"' {
            return bad("COPY quote and escape are available only in CSV mode");
        }
        if matches!(spec.delimiter, b'\\' | b'\r' | b'\n' | b'.')
            || spec.delimiter.is_ascii_alphanumeric()
        {
            return bad("COPY delimiter cannot be this character in text mode");
        }
    }
    if spec.format == CopyFormat::Csv && spec.delimiter == spec.quote {
        return bad("COPY delimiter and quote must be different");
    }
    if spec.null.as_bytes().contains(&spec.delimiter) {
        return bad("COPY delimiter must not appear in the NULL specification");
    }
    Ok(())
}

// --- Input ---

/// One field of an input row: `None` is SQL NULL.
pub type Field = Option<String>;

/// Splits a COPY FROM byte stream into rows of fields, across CopyData boundaries.
pub struct CopyDecoder {
    spec: CopySpec,
    buf: Vec<u8>,
    /// Lines seen (for error messages: PostgreSQL counts from 1, the header included).
    pub line: u64,
    header_pending: bool,
    /// `\.` was seen: the rest is ignored.
    pub done: bool,
}

impl CopyDecoder {
    pub fn new(spec: &CopySpec) -> Self {
        CopyDecoder {
            spec: spec.clone(),
            buf: Vec::new(),
            line: 0,
            header_pending: spec.header,
            done: false,
        }
    }

    /// Adds bytes and appends every row they complete to `rows`.
    pub fn feed(&mut self, data: &[u8], rows: &mut Vec<Vec<Field>>) -> Result<()> {
        if self.done {
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(end) = self.row_end(start) {
            let line = &self.buf[start..end];
            let next = end + 1;
            let line_owned = strip_cr(line).to_vec();
            start = next;
            self.line += 1;
            if line_owned == b"\\." {
                self.done = true;
                break;
            }
            if self.header_pending {
                self.header_pending = false;
                continue;
            }
            rows.push(self.decode_line(&line_owned)?);
        }
        self.buf.drain(..start.min(self.buf.len()));
        Ok(())
    }

    /// The end of input: a last line without its newline is a row too.
    pub fn finish(&mut self, rows: &mut Vec<Vec<Field>>) -> Result<()> {
        if self.done || self.buf.is_empty() {
            return Ok(());
        }
        if self.spec.format == CopyFormat::Csv && self.row_end(0).is_none() && self.in_quotes() {
            return Err(self.err("unterminated CSV quoted field"));
        }
        let line = std::mem::take(&mut self.buf);
        let line = strip_cr(&line).to_vec();
        self.line += 1;
        if line == b"\\." {
            self.done = true;
            return Ok(());
        }
        if self.header_pending {
            self.header_pending = false;
            return Ok(());
        }
        rows.push(self.decode_line(&line)?);
        Ok(())
    }

    fn in_quotes(&self) -> bool {
        let mut q = false;
        let (quote, escape) = (self.spec.quote, self.spec.escape);
        let mut i = 0;
        while i < self.buf.len() {
            let b = self.buf[i];
            if q && b == escape && escape != quote && self.buf.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            if b == quote {
                q = !q;
            }
            i += 1;
        }
        q
    }

    /// The index of the newline ending the row that starts at `start`, if it is complete.
    fn row_end(&self, start: usize) -> Option<usize> {
        let b = &self.buf[start..];
        match self.spec.format {
            CopyFormat::Text => {
                // A backslash escapes the next byte, so `\` + newline is data.
                let mut i = 0;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'\n' => return Some(start + i),
                        _ => i += 1,
                    }
                }
                None
            }
            CopyFormat::Csv => {
                let (quote, escape) = (self.spec.quote, self.spec.escape);
                let mut q = false;
                let mut i = 0;
                while i < b.len() {
                    let c = b[i];
                    if q {
                        if c == escape && escape != quote && b.get(i + 1) == Some(&quote) {
                            i += 2;
                            continue;
                        }
                        if c == quote {
                            q = false;
                        }
                    } else if c == quote {
                        q = true;
                    } else if c == b'\n' {
                        return Some(start + i);
                    }
                    i += 1;
                }
                None
            }
        }
    }

    fn err(&self, msg: &str) -> Error {
        Error::new(ErrorKind::BadCopyFileFormat, msg.to_string())
            .with_detail(format!("COPY, line {}", self.line))
    }

    fn decode_line(&self, line: &[u8]) -> Result<Vec<Field>> {
        match self.spec.format {
            CopyFormat::Text => self.decode_text(line),
            CopyFormat::Csv => self.decode_csv(line),
        }
    }

    fn decode_text(&self, line: &[u8]) -> Result<Vec<Field>> {
        let delim = self.spec.delimiter;
        let null = self.spec.null.as_bytes();
        let mut out = Vec::new();
        for raw in split_unescaped(line, delim) {
            if raw == null {
                out.push(None);
                continue;
            }
            let mut v = Vec::with_capacity(raw.len());
            let mut i = 0;
            while i < raw.len() {
                let c = raw[i];
                if c != b'\\' || i + 1 == raw.len() {
                    v.push(c);
                    i += 1;
                    continue;
                }
                let e = raw[i + 1];
                i += 2;
                match e {
                    b'b' => v.push(8),
                    b'f' => v.push(12),
                    b'n' => v.push(b'\n'),
                    b'r' => v.push(b'\r'),
                    b't' => v.push(b'\t'),
                    b'v' => v.push(11),
                    b'0'..=b'7' => {
                        let mut n = (e - b'0') as u32;
                        let mut k = 0;
                        while k < 2 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                            n = n * 8 + (raw[i] - b'0') as u32;
                            i += 1;
                            k += 1;
                        }
                        v.push((n & 0xff) as u8);
                    }
                    b'x' if i < raw.len() && raw[i].is_ascii_hexdigit() => {
                        let mut n = hex(raw[i]);
                        i += 1;
                        if i < raw.len() && raw[i].is_ascii_hexdigit() {
                            n = n * 16 + hex(raw[i]);
                            i += 1;
                        }
                        v.push(n);
                    }
                    other => v.push(other),
                }
            }
            out.push(Some(String::from_utf8(v).map_err(|_| {
                Error::new(
                    ErrorKind::BadCopyFileFormat,
                    "invalid byte sequence for encoding \"UTF8\"",
                )
            })?));
        }
        Ok(out)
    }

    fn decode_csv(&self, line: &[u8]) -> Result<Vec<Field>> {
        let (delim, quote, escape) = (self.spec.delimiter, self.spec.quote, self.spec.escape);
        let null = self.spec.null.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let mut v = Vec::new();
            let mut quoted = false;
            let mut in_q = false;
            let field_start = i;
            while i < line.len() {
                let c = line[i];
                if in_q {
                    if c == escape && line.get(i + 1) == Some(&quote) {
                        v.push(quote);
                        i += 2;
                        continue;
                    }
                    if c == quote {
                        in_q = false;
                        i += 1;
                        continue;
                    }
                    v.push(c);
                    i += 1;
                } else if c == quote {
                    in_q = true;
                    quoted = true;
                    i += 1;
                } else if c == delim {
                    break;
                } else {
                    v.push(c);
                    i += 1;
                }
            }
            if in_q {
                return Err(self.err("unterminated CSV quoted field"));
            }
            let raw = &line[field_start..i];
            let field = if !quoted && raw == null {
                None
            } else {
                Some(String::from_utf8(v).map_err(|_| {
                    Error::new(
                        ErrorKind::BadCopyFileFormat,
                        "invalid byte sequence for encoding \"UTF8\"",
                    )
                })?)
            };
            out.push(field);
            if i < line.len() && line[i] == delim {
                i += 1;
                continue;
            }
            break;
        }
        Ok(out)
    }
}

fn hex(b: u8) -> u8 {
    (b as char).to_digit(16).unwrap_or(0) as u8
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits a text-format line at delimiters not escaped by a backslash.
fn split_unescaped(line: &[u8], delim: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < line.len() {
        if line[i] == b'\\' {
            i += 2;
            continue;
        }
        if line[i] == delim {
            out.push(&line[start..i]);
            start = i + 1;
        }
        i += 1;
    }
    out.push(&line[start.min(line.len())..]);
    out
}

// --- Output ---

/// Appends one row (fields in their text form; `None` is NULL) in the spec's format.
/// `force` says, per field, whether CSV output quotes it regardless.
pub fn encode_row(spec: &CopySpec, fields: &[Option<&str>], force: &[bool], out: &mut Vec<u8>) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(spec.delimiter);
        }
        match (spec.format, f) {
            (CopyFormat::Text, None) => out.extend_from_slice(spec.null.as_bytes()),
            (CopyFormat::Text, Some(s)) => {
                for &b in s.as_bytes() {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        8 => out.extend_from_slice(b"\\b"),
                        12 => out.extend_from_slice(b"\\f"),
                        11 => out.extend_from_slice(b"\\v"),
                        b if b == spec.delimiter => {
                            out.push(b'\\');
                            out.push(b);
                        }
                        b => out.push(b),
                    }
                }
            }
            (CopyFormat::Csv, None) => out.extend_from_slice(spec.null.as_bytes()),
            (CopyFormat::Csv, Some(s)) => {
                let bytes = s.as_bytes();
                let needs = force.get(i).copied().unwrap_or(false)
                    || spec.force_quote_all
                    || bytes == spec.null.as_bytes()
                    || bytes.iter().any(|&b| {
                        b == spec.delimiter || b == spec.quote || b == b'\n' || b == b'\r'
                    })
                    || (bytes == b"\\.");
                if needs {
                    out.push(spec.quote);
                    for &b in bytes {
                        if b == spec.quote || b == spec.escape {
                            out.push(spec.escape);
                        }
                        out.push(b);
                    }
                    out.push(spec.quote);
                } else {
                    out.extend_from_slice(bytes);
                }
            }
        }
    }
    out.push(b'\n');
}

/// The header line of CSV/text output: the column names.
pub fn encode_header(spec: &CopySpec, names: &[&str], out: &mut Vec<u8>) {
    let fields: Vec<Option<&str>> = names.iter().map(|n| Some(*n)).collect();
    encode_row(spec, &fields, &[], out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(spec: &CopySpec, chunks: &[&[u8]]) -> Result<Vec<Vec<Field>>> {
        let mut d = CopyDecoder::new(spec);
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out)?;
        }
        d.finish(&mut out)?;
        Ok(out)
    }

    fn s(v: &str) -> Field {
        Some(v.to_string())
    }

    #[test]
    fn parses_statements_psql_and_pgbench_send() {
        let p = parse("copy pgbench_accounts from stdin with (freeze on)").unwrap();
        assert_eq!(p.table, "pgbench_accounts");
        assert!(p.from);
        assert_eq!(p.format, CopyFormat::Text);
        let p = parse("COPY t (a, \"B\") FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';')")
            .unwrap();
        assert_eq!(p.columns, vec!["a".to_string(), "B".to_string()]);
        assert_eq!(
            (p.format, p.header, p.delimiter),
            (CopyFormat::Csv, true, b';')
        );
        assert_eq!(p.null, "");
        let p = parse("COPY t TO STDOUT WITH CSV HEADER DELIMITER AS '|' NULL AS 'nil'").unwrap();
        assert!(!p.from);
        assert_eq!((p.delimiter, p.null.as_str()), (b'|', "nil"));
        let p = parse("COPY (SELECT a, b FROM t WHERE a > 1 ORDER BY a) TO STDOUT").unwrap();
        assert_eq!(
            p.query.as_deref(),
            Some("SELECT a , b FROM t WHERE a > 1 ORDER BY a")
        );
        assert_eq!(
            parse("COPY t FROM '/etc/passwd'").unwrap_err().sqlstate(),
            "0A000"
        );
        assert_eq!(
            parse("COPY t FROM STDIN (FORMAT binary)")
                .unwrap_err()
                .sqlstate(),
            "0A000"
        );
        assert_eq!(
            parse("COPY t FROM STDIN (bogus 1)").unwrap_err().sqlstate(),
            "42601"
        );
        assert_eq!(parse("COPY t FROM").unwrap_err().sqlstate(), "42601");
        assert!(is_copy("  copy t from stdin"));
        assert!(is_copy("/* x */ COPY(select 1) to stdout"));
        assert!(!is_copy("copyright"));
    }

    #[test]
    fn text_format_rows_across_chunks() {
        let spec = parse("COPY t FROM STDIN").unwrap();
        let out = rows(
            &spec,
            &[b"1\ta\\tb\t\\N\n2\t", b"x\\\\y\tz\n\\.\nignored\n"],
        )
        .unwrap();
        assert_eq!(
            out,
            vec![
                vec![s("1"), s("a\tb"), None],
                vec![s("2"), s("x\\y"), s("z")],
            ]
        );
        // A last line without a newline, CRLF line ends, octal and hex escapes.
        let out = rows(&spec, &[b"a\\101\\x42\r\nlast"]).unwrap();
        assert_eq!(out, vec![vec![s("aAB")], vec![s("last")]]);
    }

    #[test]
    fn csv_rows_quotes_newlines_and_nulls() {
        let spec = parse("COPY t FROM STDIN WITH (FORMAT csv, HEADER)").unwrap();
        let out = rows(
            &spec,
            &[b"a,b,c\n1,\"x,\"\"y\"\"\",\n2,\"multi\n", b"line\",\"\"\n"],
        )
        .unwrap();
        assert_eq!(
            out,
            vec![
                vec![s("1"), s("x,\"y\""), None],
                vec![s("2"), s("multi\nline"), s("")],
            ]
        );
        let err = rows(&spec, &[b"h\n\"open"]).unwrap_err();
        assert_eq!(err.sqlstate(), "22P04");
    }

    #[test]
    fn output_escapes_round_trip() {
        for sql in ["COPY t TO STDOUT", "COPY t TO STDOUT (FORMAT csv)"] {
            let spec = parse(sql).unwrap();
            let mut out = Vec::new();
            let fields = [Some("a\tb,c\"d\ne\\f"), None, Some("")];
            encode_row(&spec, &fields, &[], &mut out);
            let mut input_spec = spec.clone();
            input_spec.from = true;
            let back = rows(&input_spec, &[&out]).unwrap();
            let want: Vec<Field> = fields.iter().map(|f| f.map(str::to_string)).collect();
            assert_eq!(back, vec![want], "{sql}: {}", String::from_utf8_lossy(&out));
        }
    }
}
