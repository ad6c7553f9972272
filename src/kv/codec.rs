//! The wire form of [`KvRequest`] and [`KvResponse`]: how a KV request crosses nodes.
//!
//! A gateway sends a KV request to the range that owns the key. Within a node that is a
//! direct call or a message over the cores' SPSC mesh, and the request travels as the Rust
//! value. When the range's leader lives on another node, the request is forwarded over the
//! node transport (`net/`) and has to become bytes: [`encode_request`] on the gateway,
//! [`decode_request`] on the leader's node, and [`encode_response`] / [`decode_response`]
//! for the answer. This is on the forwarding hot path, so the codec is a hand-written,
//! compact binary form rather than a general serializer: encoding appends into the
//! caller's buffer (reserving the exact size first, so a reused buffer is written with no
//! allocation at all), and decoding reads straight from the received slice, allocating
//! only the owned byte strings the decoded value holds.
//!
//! # Format
//!
//! A message is a version byte ([`VERSION`]), a tag byte naming the variant, then the
//! variant's fields in declaration order, with nothing in between:
//!
//! - fixed-size integers are little-endian: `u8`, `u32`, `u64`; a `usize` (a scan limit,
//!   an error position) travels as a `u64`;
//! - a `bool` is one byte, 0 or 1;
//! - a byte string is a `u32` length and the bytes; a `String` is a byte string holding
//!   UTF-8;
//! - an `Option` is a byte, 0 (none) or 1 (some), and then the value if some;
//! - a list is a `u32` count and the elements;
//! - a [`RangeId`] is its `u64`; a [`Timestamp`] is `wall: u64` then `logical: u32`;
//! - a [`KvWrite`] is a tag byte (1 put, 2 insert, 3 delete), the key, and the value for
//!   a put or an insert; a [`VersionedKeyValue`] is the key, the timestamp and the
//!   optional value (none: a tombstone); a [`ReadSet`] is the list of keys, then the list
//!   of `(start, end)` spans;
//! - an [`Error`] is its kind as one byte (the table in [`kind_code`], fixed forever: the
//!   kind decides the SQLSTATE, so the SQLSTATE is not sent separately), the message, a
//!   flags byte (bit 0 position, bit 1 hint, bit 2 detail; other bits must be 0), and then
//!   the fields the flags name, in that order.
//!
//! Request tags: 1 `Get`, 2 `Scan`, 3 `Prepare`, 4 `Commit`, 5 `Abort`, 6 `OnePhase`,
//! 7 `Refresh`, 8 `SplitFence`, 9 `Ingest`, 10 `SplitFinish`, 11 `SplitAbort`, 12 `Lock`,
//! 13 `ReleaseLocks`, 14 `Recover`, 15 `Describe`, 16 `MergeFence`, 17 `Flow`,
//! 18 `FenceTouch`. Response tags: 1 `Value`, 2 `Rows`, 3 `Prepared`,
//! 4 `Committed`,
//! 5 `SplitFenced`, 6 `Done`, 7 `Err`, 8 `NotLeader`, 9 `Locked` (only the leader hint crosses: the request a local core hands
//! back inside it is for its own gateway, so it decodes as `req: None`). A tag, a kind code or a flag bit is never reused for something else; a change
//! of the layout of an existing variant bumps [`VERSION`].
//!
//! # Invariants
//!
//! - `decode(encode(x)) == x` for every request and response (errors included: kind,
//!   message, position, hint and detail all come back).
//! - Decoding takes untrusted bytes. Every malformed input — truncated, trailing bytes,
//!   an unknown version, tag, kind or flag, a `bool` or `Option` byte other than 0 or 1,
//!   invalid UTF-8, a length or count larger than what is left — is an
//!   `Error::internal("corrupt KV message: …")`, never a panic. Nothing is allocated before
//!   it is known to fit: a byte string's length is checked against the remaining bytes
//!   before it is copied, and a list's count is checked against the remaining bytes
//!   divided by the smallest encoding of one element before `Vec::with_capacity`, so a
//!   hostile count cannot make the decoder reserve more than a small multiple of the
//!   message's own size.
//! - Encoding cannot fail. A byte string or list longer than `u32::MAX` cannot be encoded
//!   and panics: the transport's frames are far smaller than that, and ranges split long
//!   before a single request could carry 4 GiB.

use chitin_storage::{RangeId, Timestamp, VersionedKeyValue};

use super::{KvRequest, KvResponse, KvWrite, LockWait};
use crate::error::{Error, ErrorKind, Result};
use crate::txn::ReadSet;

/// The format version, the first byte of every message.
pub const VERSION: u8 = 2;

const REQ_GET: u8 = 1;
const REQ_SCAN: u8 = 2;
const REQ_PREPARE: u8 = 3;
const REQ_COMMIT: u8 = 4;
const REQ_ABORT: u8 = 5;
const REQ_ONE_PHASE: u8 = 6;
const REQ_REFRESH: u8 = 7;
const REQ_SPLIT_FENCE: u8 = 8;
const REQ_INGEST: u8 = 9;
const REQ_SPLIT_FINISH: u8 = 10;
const REQ_SPLIT_ABORT: u8 = 11;
const REQ_LOCK: u8 = 12;
const REQ_RELEASE_LOCKS: u8 = 13;
const REQ_RECOVER: u8 = 14;
const REQ_DESCRIBE: u8 = 15;
const REQ_FLOW: u8 = 17;
const REQ_MERGE_FENCE: u8 = 16;
const REQ_FENCE_TOUCH: u8 = 18;

const RESP_VALUE: u8 = 1;
const RESP_ROWS: u8 = 2;
const RESP_PREPARED: u8 = 3;
const RESP_COMMITTED: u8 = 4;
const RESP_SPLIT_FENCED: u8 = 5;
const RESP_DONE: u8 = 6;
const RESP_ERR: u8 = 7;
const RESP_NOT_LEADER: u8 = 8;
const RESP_LOCKED: u8 = 9;
const RESP_UNCERTAIN: u8 = 10;
const RESP_FLOW: u8 = 11;

const WRITE_PUT: u8 = 1;
const WRITE_INSERT: u8 = 2;
const WRITE_DELETE: u8 = 3;

const ERR_POSITION: u8 = 1;
const ERR_HINT: u8 = 2;
const ERR_DETAIL: u8 = 4;

// Encoded sizes, and the smallest encoding of each list element (the decoder's bound on a
// count).
const LEN: usize = 4;
const TS: usize = 12;
const RANGE: usize = 8;
const MIN_WRITE: usize = 1 + LEN;
const MIN_KEY: usize = LEN;
const MIN_SPAN: usize = 2 * LEN;
const MIN_VERSION: usize = LEN + TS + 1;
const MIN_KEY_TS: usize = LEN + TS;
const MIN_ROW: usize = 2 * LEN;

/// Declares the error kinds' wire codes once and generates both directions from it. The
/// encoding `match` is exhaustive, so a new [`ErrorKind`] does not build until it is given
/// a code here; a code or a kind listed twice is an unreachable pattern, denied.
macro_rules! kind_codes {
    ($($kind:ident = $code:literal,)*) => {
        /// The wire code of an error kind. Codes are never reused.
        #[deny(unreachable_patterns)]
        pub fn kind_code(kind: ErrorKind) -> u8 {
            match kind {
                $(ErrorKind::$kind => $code,)*
            }
        }

        /// The error kind of a wire code, if it names one.
        #[deny(unreachable_patterns)]
        pub fn kind_from_code(code: u8) -> Option<ErrorKind> {
            match code {
                $($code => Some(ErrorKind::$kind),)*
                _ => None,
            }
        }

        #[cfg(test)]
        const KIND_COUNT: usize = [$($code),*].len();
    };
}

kind_codes! {
    Syntax = 1,
    UndefinedTable = 2,
    UndefinedColumn = 3,
    UndefinedDatabase = 4,
    DuplicateTable = 5,
    DuplicateDatabase = 6,
    DuplicateColumn = 7,
    UniqueViolation = 8,
    NotNullViolation = 9,
    InvalidTextRepresentation = 10,
    NumericOutOfRange = 11,
    DivisionByZero = 12,
    DatatypeMismatch = 13,
    CannotCoerce = 14,
    UndefinedFunction = 15,
    FeatureNotSupported = 16,
    InFailedTransaction = 17,
    SerializationFailure = 18,
    Protocol = 19,
    InvalidStatementName = 20,
    InvalidCursorName = 21,
    Grouping = 22,
    InvalidColumnReference = 23,
    Cardinality = 24,
    InvalidParameterValue = 25,
    UndefinedObject = 26,
    IndeterminateDatatype = 27,
    QueryCanceled = 28,
    StringTooLong = 29,
    CardinalityViolation = 30,
    WrongObjectType = 31,
    DependentObjects = 32,
    ActiveTransaction = 33,
    AdminShutdown = 34,
    InvalidDatetimeFormat = 35,
    DatetimeFieldOverflow = 36,
    InvalidTableDefinition = 37,
    AmbiguousColumn = 38,
    ProgramLimitExceeded = 39,
    StatementTooComplex = 40,
    DuplicateAlias = 41,
    InvalidRowCountInLimit = 42,
    InvalidRowCountInOffset = 43,
    RangeKeyMismatch = 44,
    Windowing = 45,
    NoActiveSqlTransaction = 46,
    InvalidSavepoint = 47,
    Internal = 48,
    AmbiguousResult = 49,
    BadCopyFileFormat = 50,
    CheckViolation = 51,
    DuplicateObject = 52,
    ForeignKeyViolation = 53,
    SequenceGeneratorLimitExceeded = 54,
    ObjectNotInPrerequisiteState = 55,
    InvalidForeignKey = 56,
    LockNotAvailable = 57,
    IntervalFieldOverflow = 58,
    InvalidRecursion = 59,
    SystemError = 60,
    DuplicatePreparedStatement = 61,
    InvalidEscapeSequence = 62,
    InvalidArgumentForNtile = 63,
    InvalidSchemaName = 64,
    DuplicateSchema = 65,
    AmbiguousAlias = 66,
    InvalidName = 67,
    InvalidRegularExpression = 68,
    InvalidArgumentForPowerFunction = 69,
    LockWaitSlice = 70,
    ArraySubscriptError = 71,
    DataException = 72,
    DuplicateFunction = 73,
    AmbiguousFunction = 74,
    InvalidFunctionDefinition = 75,
    ReadOnlySqlTransaction = 76,
    ReservedName = 77,
    DuplicateCursor = 78,
    InvalidObjectDefinition = 79,
}

// ---------------------------------------------------------------------------------------
// Encoding

/// Appends the encoding of `req` to `out` (which it does not clear).
pub fn encode_request(req: &KvRequest, out: &mut Vec<u8>) {
    out.reserve(request_len(req));
    out.push(VERSION);
    match req {
        KvRequest::Get {
            range,
            key,
            ts,
            unc,
        } => {
            out.push(REQ_GET);
            put_range(out, *range);
            put_bytes(out, key);
            put_ts(out, *ts);
            put_ts(out, *unc);
        }
        KvRequest::Scan {
            range,
            start,
            end,
            ts,
            unc,
            limit,
            reverse,
        } => {
            out.push(REQ_SCAN);
            put_range(out, *range);
            put_bytes(out, start);
            put_bytes(out, end);
            put_ts(out, *ts);
            put_ts(out, *unc);
            put_u64(out, *limit as u64);
            out.push(*reverse as u8);
        }
        KvRequest::Prepare {
            range,
            txn,
            read_ts,
            writes,
            commit_ts,
            reads_ts,
            reads,
        } => {
            out.push(REQ_PREPARE);
            put_range(out, *range);
            put_u64(out, *txn);
            put_ts(out, *read_ts);
            put_writes(out, writes);
            put_ts(out, *commit_ts);
            put_ts(out, *reads_ts);
            put_read_set(out, reads);
        }
        KvRequest::Recover {
            range,
            txn,
            staging_ts,
        } => {
            out.push(REQ_RECOVER);
            put_range(out, *range);
            put_u64(out, *txn);
            put_ts(out, *staging_ts);
        }
        KvRequest::Commit {
            range,
            txn,
            commit_ts,
        } => {
            out.push(REQ_COMMIT);
            put_range(out, *range);
            put_u64(out, *txn);
            put_ts(out, *commit_ts);
        }
        KvRequest::Abort { range, txn } => {
            out.push(REQ_ABORT);
            put_range(out, *range);
            put_u64(out, *txn);
        }
        KvRequest::OnePhase {
            range,
            txn,
            read_ts,
            writes,
            reads,
        } => {
            out.push(REQ_ONE_PHASE);
            put_range(out, *range);
            put_u64(out, *txn);
            put_ts(out, *read_ts);
            put_writes(out, writes);
            put_read_set(out, reads);
        }
        KvRequest::Refresh {
            range,
            txn,
            read_ts,
            commit_ts,
            reads,
        } => {
            out.push(REQ_REFRESH);
            put_range(out, *range);
            put_u64(out, *txn);
            put_ts(out, *read_ts);
            put_ts(out, *commit_ts);
            put_read_set(out, reads);
        }
        KvRequest::SplitFence { range, key } => {
            out.push(REQ_SPLIT_FENCE);
            put_range(out, *range);
            put_bytes(out, key);
        }
        KvRequest::Ingest {
            range,
            start,
            end,
            versions,
            max_read_ts,
            last_writes,
        } => {
            out.push(REQ_INGEST);
            put_range(out, *range);
            put_bytes(out, start);
            put_bytes(out, end);
            put_versions(out, versions);
            put_ts(out, *max_read_ts);
            put_key_timestamps(out, last_writes);
        }
        KvRequest::SplitFinish { range, key } => {
            out.push(REQ_SPLIT_FINISH);
            put_range(out, *range);
            put_bytes(out, key);
        }
        KvRequest::SplitAbort { range } => {
            out.push(REQ_SPLIT_ABORT);
            put_range(out, *range);
        }
        KvRequest::MergeFence { range, key } => {
            out.push(REQ_MERGE_FENCE);
            put_range(out, *range);
            put_bytes(out, key);
        }
        KvRequest::Lock {
            range,
            txn,
            key,
            wait,
        } => {
            out.push(REQ_LOCK);
            put_range(out, *range);
            put_u64(out, *txn);
            put_bytes(out, key);
            out.push(match wait {
                LockWait::Block => 0,
                LockWait::NoWait => 1,
                LockWait::Slice => 2,
            });
        }
        KvRequest::ReleaseLocks { range, txn } => {
            out.push(REQ_RELEASE_LOCKS);
            put_range(out, *range);
            put_u64(out, *txn);
        }
        KvRequest::Flow { range, spec } => {
            out.push(REQ_FLOW);
            put_range(out, *range);
            let mut payload = Vec::new();
            crate::sql::distsql::encode_spec(spec, &mut payload);
            put_bytes(out, &payload);
        }
        KvRequest::Describe { range } => {
            out.push(REQ_DESCRIBE);
            put_range(out, *range);
        }
        KvRequest::FenceTouch { range } => {
            out.push(REQ_FENCE_TOUCH);
            put_range(out, *range);
        }
    }
}

/// Appends the encoding of `resp` to `out` (which it does not clear).
pub fn encode_response(resp: &KvResponse, out: &mut Vec<u8>) {
    out.reserve(response_len(resp));
    out.push(VERSION);
    match resp {
        KvResponse::Value(v) => {
            out.push(RESP_VALUE);
            put_opt_bytes(out, v.as_deref());
        }
        KvResponse::Rows(rows) => {
            out.push(RESP_ROWS);
            put_count(out, rows.len());
            for (k, v) in rows {
                put_bytes(out, k);
                put_bytes(out, v);
            }
        }
        KvResponse::Prepared { min_commit_ts } => {
            out.push(RESP_PREPARED);
            put_ts(out, *min_commit_ts);
        }
        KvResponse::Committed { commit_ts } => {
            out.push(RESP_COMMITTED);
            put_ts(out, *commit_ts);
        }
        KvResponse::SplitFenced {
            versions,
            max_read_ts,
            last_writes,
            end,
        } => {
            out.push(RESP_SPLIT_FENCED);
            put_versions(out, versions);
            put_ts(out, *max_read_ts);
            put_key_timestamps(out, last_writes);
            put_bytes(out, end);
        }
        KvResponse::Done => out.push(RESP_DONE),
        KvResponse::Flow(result) => {
            out.push(RESP_FLOW);
            let mut payload = Vec::new();
            crate::sql::distsql::encode_result(result, &mut payload);
            put_bytes(out, &payload);
        }
        KvResponse::Locked { latest } => {
            out.push(RESP_LOCKED);
            put_ts(out, *latest);
        }
        // The request handed back inside is for the local gateway only: never sent.
        KvResponse::NotLeader { leader, .. } => {
            out.push(RESP_NOT_LEADER);
            put_u64(out, *leader);
        }
        KvResponse::Err(e) => {
            out.push(RESP_ERR);
            put_error(out, e);
        }
        KvResponse::Uncertain(u) => {
            out.push(RESP_UNCERTAIN);
            put_ts(out, u.value_ts);
            put_ts(out, u.observed);
        }
    }
}

#[inline]
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[inline]
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[inline]
fn put_count(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("KV message: a byte string or list longer than u32::MAX");
    put_u32(out, n);
}

#[inline]
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_count(out, b.len());
    out.extend_from_slice(b);
}

#[inline]
fn put_opt_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

#[inline]
fn put_ts(out: &mut Vec<u8>, ts: Timestamp) {
    put_u64(out, ts.wall);
    put_u32(out, ts.logical);
}

#[inline]
fn put_range(out: &mut Vec<u8>, r: RangeId) {
    put_u64(out, r.0);
}

fn put_writes(out: &mut Vec<u8>, writes: &[KvWrite]) {
    put_count(out, writes.len());
    for w in writes {
        match w {
            KvWrite::Put { key, value } => {
                out.push(WRITE_PUT);
                put_bytes(out, key);
                put_bytes(out, value);
            }
            KvWrite::Insert { key, value } => {
                out.push(WRITE_INSERT);
                put_bytes(out, key);
                put_bytes(out, value);
            }
            KvWrite::Delete { key } => {
                out.push(WRITE_DELETE);
                put_bytes(out, key);
            }
        }
    }
}

fn put_read_set(out: &mut Vec<u8>, reads: &ReadSet) {
    put_count(out, reads.keys.len());
    for k in &reads.keys {
        put_bytes(out, k);
    }
    put_count(out, reads.spans.len());
    for (s, e) in &reads.spans {
        put_bytes(out, s);
        put_bytes(out, e);
    }
}

fn put_versions(out: &mut Vec<u8>, versions: &[VersionedKeyValue]) {
    put_count(out, versions.len());
    for v in versions {
        put_bytes(out, &v.key);
        put_ts(out, v.ts);
        put_opt_bytes(out, v.value.as_deref());
    }
}

fn put_key_timestamps(out: &mut Vec<u8>, kts: &[(Vec<u8>, Timestamp)]) {
    put_count(out, kts.len());
    for (k, ts) in kts {
        put_bytes(out, k);
        put_ts(out, *ts);
    }
}

fn put_error(out: &mut Vec<u8>, e: &Error) {
    out.push(kind_code(e.kind));
    put_bytes(out, e.message.as_bytes());
    let mut flags = 0;
    if e.position.is_some() {
        flags |= ERR_POSITION;
    }
    if e.hint.is_some() {
        flags |= ERR_HINT;
    }
    if e.detail.is_some() {
        flags |= ERR_DETAIL;
    }
    out.push(flags);
    if let Some(p) = e.position {
        put_u64(out, p as u64);
    }
    if let Some(h) = &e.hint {
        put_bytes(out, h.as_bytes());
    }
    if let Some(d) = &e.detail {
        put_bytes(out, d.as_bytes());
    }
}

// Exact encoded sizes, so encoding reserves once. A test checks them against the encoder.

fn bytes_len(b: &[u8]) -> usize {
    LEN + b.len()
}

fn opt_bytes_len(b: Option<&[u8]>) -> usize {
    1 + b.map_or(0, bytes_len)
}

fn writes_len(writes: &[KvWrite]) -> usize {
    LEN + writes
        .iter()
        .map(|w| match w {
            KvWrite::Put { key, value } | KvWrite::Insert { key, value } => {
                1 + bytes_len(key) + bytes_len(value)
            }
            KvWrite::Delete { key } => 1 + bytes_len(key),
        })
        .sum::<usize>()
}

fn read_set_len(reads: &ReadSet) -> usize {
    LEN + reads.keys.iter().map(|k| bytes_len(k)).sum::<usize>()
        + LEN
        + reads
            .spans
            .iter()
            .map(|(s, e)| bytes_len(s) + bytes_len(e))
            .sum::<usize>()
}

fn versions_len(versions: &[VersionedKeyValue]) -> usize {
    LEN + versions
        .iter()
        .map(|v| bytes_len(&v.key) + TS + opt_bytes_len(v.value.as_deref()))
        .sum::<usize>()
}

fn key_timestamps_len(kts: &[(Vec<u8>, Timestamp)]) -> usize {
    LEN + kts.iter().map(|(k, _)| bytes_len(k) + TS).sum::<usize>()
}

fn error_len(e: &Error) -> usize {
    1 + bytes_len(e.message.as_bytes())
        + 1
        + e.position.map_or(0, |_| 8)
        + e.hint.as_deref().map_or(0, |h| bytes_len(h.as_bytes()))
        + e.detail.as_deref().map_or(0, |d| bytes_len(d.as_bytes()))
}

fn request_len(req: &KvRequest) -> usize {
    2 + match req {
        KvRequest::Get { key, .. } => RANGE + bytes_len(key) + 2 * TS,
        KvRequest::Scan { start, end, .. } => {
            RANGE + bytes_len(start) + bytes_len(end) + 2 * TS + 8 + 1
        }
        KvRequest::Prepare { writes, reads, .. } => {
            RANGE + 8 + 3 * TS + writes_len(writes) + read_set_len(reads)
        }
        KvRequest::Recover { .. } => RANGE + 8 + TS,
        KvRequest::Commit { .. } => RANGE + 8 + TS,
        KvRequest::Abort { .. } => RANGE + 8,
        KvRequest::OnePhase { writes, reads, .. } => {
            RANGE + 8 + TS + writes_len(writes) + read_set_len(reads)
        }
        KvRequest::Refresh { reads, .. } => RANGE + 8 + 2 * TS + read_set_len(reads),
        KvRequest::SplitFence { key, .. }
        | KvRequest::SplitFinish { key, .. }
        | KvRequest::MergeFence { key, .. } => RANGE + bytes_len(key),
        KvRequest::Ingest {
            start,
            end,
            versions,
            last_writes,
            ..
        } => {
            RANGE
                + bytes_len(start)
                + bytes_len(end)
                + versions_len(versions)
                + TS
                + key_timestamps_len(last_writes)
        }
        KvRequest::SplitAbort { .. } => RANGE,
        KvRequest::Lock { key, .. } => RANGE + 8 + bytes_len(key) + 1,
        KvRequest::ReleaseLocks { .. } => RANGE + 8,
        KvRequest::Describe { .. } | KvRequest::FenceTouch { .. } => RANGE,
        // Encoded into a payload of its own first: no estimate.
        KvRequest::Flow { .. } => RANGE + LEN,
    }
}

fn response_len(resp: &KvResponse) -> usize {
    2 + match resp {
        KvResponse::Value(v) => opt_bytes_len(v.as_deref()),
        KvResponse::Rows(rows) => {
            LEN + rows
                .iter()
                .map(|(k, v)| bytes_len(k) + bytes_len(v))
                .sum::<usize>()
        }
        KvResponse::Prepared { .. } | KvResponse::Committed { .. } | KvResponse::Locked { .. } => {
            TS
        }
        KvResponse::SplitFenced {
            versions,
            last_writes,
            end,
            ..
        } => versions_len(versions) + TS + key_timestamps_len(last_writes) + bytes_len(end),
        KvResponse::Done => 0,
        KvResponse::Flow(_) => LEN,
        KvResponse::Err(e) => error_len(e),
        KvResponse::NotLeader { .. } => 8,
        KvResponse::Uncertain(_) => 2 * TS,
    }
}

// ---------------------------------------------------------------------------------------
// Decoding

/// Decodes a request encoded by [`encode_request`]; the whole of `b` must be one message.
pub fn decode_request(b: &[u8]) -> Result<KvRequest> {
    let mut r = Reader::new(b)?;
    let req = match r.u8()? {
        REQ_GET => KvRequest::Get {
            range: r.range()?,
            key: r.vec()?,
            ts: r.ts()?,
            unc: r.ts()?,
        },
        REQ_SCAN => KvRequest::Scan {
            range: r.range()?,
            start: r.vec()?,
            end: r.vec()?,
            ts: r.ts()?,
            unc: r.ts()?,
            limit: r.usize()?,
            reverse: r.bool()?,
        },
        REQ_PREPARE => KvRequest::Prepare {
            range: r.range()?,
            txn: r.u64()?,
            read_ts: r.ts()?,
            writes: r.writes()?,
            commit_ts: r.ts()?,
            reads_ts: r.ts()?,
            reads: r.read_set()?,
        },
        REQ_RECOVER => KvRequest::Recover {
            range: r.range()?,
            txn: r.u64()?,
            staging_ts: r.ts()?,
        },
        REQ_COMMIT => KvRequest::Commit {
            range: r.range()?,
            txn: r.u64()?,
            commit_ts: r.ts()?,
        },
        REQ_ABORT => KvRequest::Abort {
            range: r.range()?,
            txn: r.u64()?,
        },
        REQ_ONE_PHASE => KvRequest::OnePhase {
            range: r.range()?,
            txn: r.u64()?,
            read_ts: r.ts()?,
            writes: r.writes()?,
            reads: r.read_set()?,
        },
        REQ_REFRESH => KvRequest::Refresh {
            range: r.range()?,
            txn: r.u64()?,
            read_ts: r.ts()?,
            commit_ts: r.ts()?,
            reads: r.read_set()?,
        },
        REQ_SPLIT_FENCE => KvRequest::SplitFence {
            range: r.range()?,
            key: r.vec()?,
        },
        REQ_INGEST => KvRequest::Ingest {
            range: r.range()?,
            start: r.vec()?,
            end: r.vec()?,
            versions: r.versions()?,
            max_read_ts: r.ts()?,
            last_writes: r.key_timestamps()?,
        },
        REQ_SPLIT_FINISH => KvRequest::SplitFinish {
            range: r.range()?,
            key: r.vec()?,
        },
        REQ_SPLIT_ABORT => KvRequest::SplitAbort { range: r.range()? },
        REQ_MERGE_FENCE => KvRequest::MergeFence {
            range: r.range()?,
            key: r.vec()?,
        },
        REQ_LOCK => KvRequest::Lock {
            range: r.range()?,
            txn: r.u64()?,
            key: r.vec()?,
            wait: match r.u8()? {
                0 => LockWait::Block,
                1 => LockWait::NoWait,
                2 => LockWait::Slice,
                w => return Err(corrupt(format_args!("unknown lock wait {w}"))),
            },
        },
        REQ_RELEASE_LOCKS => KvRequest::ReleaseLocks {
            range: r.range()?,
            txn: r.u64()?,
        },
        REQ_DESCRIBE => KvRequest::Describe { range: r.range()? },
        REQ_FENCE_TOUCH => KvRequest::FenceTouch { range: r.range()? },
        REQ_FLOW => KvRequest::Flow {
            range: r.range()?,
            spec: Box::new(crate::sql::distsql::decode_spec(&r.vec()?)?),
        },
        tag => return Err(corrupt(format_args!("unknown request tag {tag}"))),
    };
    r.finish()?;
    Ok(req)
}

/// Decodes a response encoded by [`encode_response`]; the whole of `b` must be one
/// message. A decoded [`KvResponse::Err`] is the remote error itself (`Ok(Err(…))`), a
/// malformed message is an `Err`.
pub fn decode_response(b: &[u8]) -> Result<KvResponse> {
    let mut r = Reader::new(b)?;
    let resp = match r.u8()? {
        RESP_VALUE => KvResponse::Value(r.opt_vec()?),
        RESP_ROWS => {
            let n = r.count(MIN_ROW)?;
            let mut rows = Vec::with_capacity(n);
            for _ in 0..n {
                rows.push((r.vec()?, r.vec()?));
            }
            KvResponse::Rows(rows)
        }
        RESP_PREPARED => KvResponse::Prepared {
            min_commit_ts: r.ts()?,
        },
        RESP_COMMITTED => KvResponse::Committed { commit_ts: r.ts()? },
        RESP_SPLIT_FENCED => KvResponse::SplitFenced {
            versions: r.versions()?,
            max_read_ts: r.ts()?,
            last_writes: r.key_timestamps()?,
            end: r.vec()?,
        },
        RESP_DONE => KvResponse::Done,
        RESP_FLOW => KvResponse::Flow(Box::new(crate::sql::distsql::decode_result(&r.vec()?)?)),
        RESP_LOCKED => KvResponse::Locked { latest: r.ts()? },
        RESP_NOT_LEADER => KvResponse::NotLeader {
            leader: r.u64()?,
            req: None,
        },
        RESP_ERR => KvResponse::Err(r.error()?),
        RESP_UNCERTAIN => KvResponse::Uncertain(crate::kv::Uncertain {
            value_ts: r.ts()?,
            observed: r.ts()?,
        }),
        tag => return Err(corrupt(format_args!("unknown response tag {tag}"))),
    };
    r.finish()?;
    Ok(resp)
}

#[cold]
#[inline(never)]
fn corrupt(what: std::fmt::Arguments<'_>) -> Error {
    Error::internal(format!("corrupt KV message: {what}"))
}

/// Reads a message front to back; every read checks the remaining length first.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `b`, checking its version byte.
    fn new(b: &'a [u8]) -> Result<Self> {
        let mut r = Reader { b };
        match r.u8()? {
            VERSION => Ok(r),
            v => Err(corrupt(format_args!("unsupported version {v}"))),
        }
    }

    fn finish(self) -> Result<()> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(corrupt(format_args!("{} trailing bytes", self.b.len())))
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        match self.b.split_first_chunk::<N>() {
            Some((a, rest)) => {
                self.b = rest;
                Ok(*a)
            }
            None => Err(corrupt(format_args!("truncated"))),
        }
    }

    #[inline]
    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    #[inline]
    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }

    #[inline]
    fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn usize(&mut self) -> Result<usize> {
        let v = self.u64()?;
        usize::try_from(v).map_err(|_| corrupt(format_args!("{v} does not fit a usize")))
    }

    fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(corrupt(format_args!("bool byte {b}"))),
        }
    }

    #[inline]
    fn ts(&mut self) -> Result<Timestamp> {
        Ok(Timestamp::new(self.u64()?, self.u32()?))
    }

    #[inline]
    fn range(&mut self) -> Result<RangeId> {
        self.u64().map(RangeId)
    }

    /// A length-prefixed byte string, borrowed from the message.
    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > self.b.len() {
            return Err(corrupt(format_args!(
                "byte string of {n} bytes with {} left",
                self.b.len()
            )));
        }
        let (s, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(s)
    }

    #[inline]
    fn vec(&mut self) -> Result<Vec<u8>> {
        self.bytes().map(<[u8]>::to_vec)
    }

    fn opt_vec(&mut self) -> Result<Option<Vec<u8>>> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.vec().map(Some),
            b => Err(corrupt(format_args!("option byte {b}"))),
        }
    }

    fn string(&mut self) -> Result<String> {
        let b = self.bytes()?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(corrupt(format_args!("string is not UTF-8"))),
        }
    }

    /// A list's count, checked against what is left: every element takes at least
    /// `min_size` bytes, so a count the rest cannot hold is rejected before anything is
    /// allocated for it.
    fn count(&mut self, min_size: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n > self.b.len() / min_size {
            return Err(corrupt(format_args!(
                "{n} elements with {} bytes left",
                self.b.len()
            )));
        }
        Ok(n)
    }

    fn writes(&mut self) -> Result<Vec<KvWrite>> {
        let n = self.count(MIN_WRITE)?;
        let mut writes = Vec::with_capacity(n);
        for _ in 0..n {
            writes.push(match self.u8()? {
                WRITE_PUT => KvWrite::Put {
                    key: self.vec()?,
                    value: self.vec()?,
                },
                WRITE_INSERT => KvWrite::Insert {
                    key: self.vec()?,
                    value: self.vec()?,
                },
                WRITE_DELETE => KvWrite::Delete { key: self.vec()? },
                tag => return Err(corrupt(format_args!("unknown write tag {tag}"))),
            });
        }
        Ok(writes)
    }

    fn read_set(&mut self) -> Result<ReadSet> {
        let n = self.count(MIN_KEY)?;
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            keys.push(self.vec()?);
        }
        let n = self.count(MIN_SPAN)?;
        let mut spans = Vec::with_capacity(n);
        for _ in 0..n {
            spans.push((self.vec()?, self.vec()?));
        }
        Ok(ReadSet { keys, spans })
    }

    fn versions(&mut self) -> Result<Vec<VersionedKeyValue>> {
        let n = self.count(MIN_VERSION)?;
        let mut versions = Vec::with_capacity(n);
        for _ in 0..n {
            versions.push(VersionedKeyValue {
                key: self.vec()?,
                ts: self.ts()?,
                value: self.opt_vec()?,
            });
        }
        Ok(versions)
    }

    fn key_timestamps(&mut self) -> Result<Vec<(Vec<u8>, Timestamp)>> {
        let n = self.count(MIN_KEY_TS)?;
        let mut kts = Vec::with_capacity(n);
        for _ in 0..n {
            kts.push((self.vec()?, self.ts()?));
        }
        Ok(kts)
    }

    fn error(&mut self) -> Result<Error> {
        let code = self.u8()?;
        let kind = kind_from_code(code)
            .ok_or_else(|| corrupt(format_args!("unknown error kind {code}")))?;
        let message = self.string()?;
        let flags = self.u8()?;
        if flags & !(ERR_POSITION | ERR_HINT | ERR_DETAIL) != 0 {
            return Err(corrupt(format_args!("unknown error flags {flags:#04x}")));
        }
        let position = if flags & ERR_POSITION != 0 {
            Some(self.usize()?)
        } else {
            None
        };
        let hint = if flags & ERR_HINT != 0 {
            Some(self.string()?)
        } else {
            None
        };
        let detail = if flags & ERR_DETAIL != 0 {
            Some(self.string()?)
        } else {
            None
        };
        Ok(Error {
            kind,
            message,
            position,
            hint,
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(wall: u64, logical: u32) -> Timestamp {
        Timestamp::new(wall, logical)
    }

    fn writes() -> Vec<KvWrite> {
        vec![
            KvWrite::Put {
                key: b"a".to_vec(),
                value: b"1".to_vec(),
            },
            KvWrite::Insert {
                key: b"b".to_vec(),
                value: Vec::new(),
            },
            KvWrite::Delete { key: Vec::new() },
            KvWrite::Delete {
                key: vec![0xff; 300],
            },
        ]
    }

    fn reads() -> ReadSet {
        ReadSet {
            keys: vec![b"k1".to_vec(), Vec::new()],
            spans: vec![(b"a".to_vec(), b"z".to_vec()), (Vec::new(), vec![0, 1, 2])],
        }
    }

    fn versions() -> Vec<VersionedKeyValue> {
        vec![
            VersionedKeyValue {
                key: b"k".to_vec(),
                ts: ts(10, 2),
                value: Some(b"v".to_vec()),
            },
            VersionedKeyValue {
                key: b"k".to_vec(),
                ts: ts(9, 0),
                value: None,
            },
            VersionedKeyValue {
                key: Vec::new(),
                ts: Timestamp::MAX,
                value: Some(Vec::new()),
            },
        ]
    }

    fn last_writes() -> Vec<(Vec<u8>, Timestamp)> {
        vec![(b"k".to_vec(), ts(7, 1)), (Vec::new(), Timestamp::MIN)]
    }

    /// Every request variant, some with empty and some with full contents.
    fn requests() -> Vec<KvRequest> {
        let r = RangeId(42);
        vec![
            KvRequest::Get {
                range: r,
                key: b"key".to_vec(),
                ts: ts(1_700_000_000_000_000_000, 3),
                unc: ts(1_700_000_000_500_000_000, 3),
            },
            KvRequest::Get {
                range: RangeId(u64::MAX),
                key: Vec::new(),
                ts: Timestamp::MAX,
                unc: Timestamp::MIN,
            },
            KvRequest::Scan {
                range: r,
                start: b"a".to_vec(),
                end: b"b".to_vec(),
                ts: ts(5, 0),
                unc: ts(6, 0),
                limit: 100,
                reverse: true,
            },
            KvRequest::Scan {
                range: RangeId(0),
                start: Vec::new(),
                end: vec![0xff],
                ts: Timestamp::MIN,
                unc: Timestamp::MIN,
                limit: usize::MAX,
                reverse: false,
            },
            KvRequest::Prepare {
                range: r,
                txn: 7,
                read_ts: ts(6, 1),
                writes: writes(),
                commit_ts: ts(7, 0),
                reads_ts: ts(5, 2),
                reads: reads(),
            },
            KvRequest::Prepare {
                range: r,
                txn: 0,
                read_ts: ts(6, 1),
                writes: Vec::new(),
                commit_ts: Timestamp::MIN,
                reads_ts: Timestamp::MIN,
                reads: ReadSet::default(),
            },
            KvRequest::Recover {
                range: r,
                txn: 3,
                staging_ts: ts(9, 4),
            },
            KvRequest::Commit {
                range: r,
                txn: u64::MAX,
                commit_ts: ts(8, 9),
            },
            KvRequest::Abort { range: r, txn: 12 },
            KvRequest::OnePhase {
                range: r,
                txn: 13,
                read_ts: ts(3, 0),
                writes: writes(),
                reads: reads(),
            },
            KvRequest::OnePhase {
                range: r,
                txn: 13,
                read_ts: ts(3, 0),
                writes: vec![KvWrite::Delete { key: b"x".to_vec() }],
                reads: ReadSet::default(),
            },
            KvRequest::Refresh {
                range: r,
                txn: 14,
                read_ts: ts(3, 0),
                commit_ts: ts(4, 0),
                reads: reads(),
            },
            KvRequest::SplitFence {
                range: r,
                key: b"m".to_vec(),
            },
            KvRequest::Ingest {
                range: RangeId(43),
                start: b"m".to_vec(),
                end: b"z".to_vec(),
                versions: versions(),
                max_read_ts: ts(11, 0),
                last_writes: last_writes(),
            },
            KvRequest::Ingest {
                range: RangeId(43),
                start: Vec::new(),
                end: Vec::new(),
                versions: Vec::new(),
                max_read_ts: Timestamp::MIN,
                last_writes: Vec::new(),
            },
            KvRequest::SplitFinish {
                range: r,
                key: b"m".to_vec(),
            },
            KvRequest::SplitAbort { range: r },
            KvRequest::MergeFence {
                range: r,
                key: b"q".to_vec(),
            },
            KvRequest::Lock {
                range: r,
                txn: 13,
                key: b"k".to_vec(),
                wait: LockWait::Block,
            },
            KvRequest::Lock {
                range: r,
                txn: 13,
                key: Vec::new(),
                wait: LockWait::NoWait,
            },
            KvRequest::Lock {
                range: r,
                txn: 13,
                key: b"s".to_vec(),
                wait: LockWait::Slice,
            },
            KvRequest::ReleaseLocks { range: r, txn: 14 },
            KvRequest::Describe { range: r },
            KvRequest::FenceTouch { range: r },
        ]
    }

    fn all_kinds() -> Vec<ErrorKind> {
        (0..=u8::MAX).filter_map(kind_from_code).collect()
    }

    /// Every response variant, and errors of every kind with every combination of the
    /// optional fields.
    fn responses() -> Vec<KvResponse> {
        let mut v = vec![
            KvResponse::NotLeader {
                leader: 3,
                req: None,
            },
            KvResponse::Value(None),
            KvResponse::Value(Some(Vec::new())),
            KvResponse::Value(Some(b"value".to_vec())),
            KvResponse::Rows(Vec::new()),
            KvResponse::Rows(vec![
                (b"a".to_vec(), b"1".to_vec()),
                (Vec::new(), Vec::new()),
            ]),
            KvResponse::Prepared {
                min_commit_ts: ts(20, 1),
            },
            KvResponse::Committed {
                commit_ts: ts(21, 0),
            },
            KvResponse::SplitFenced {
                versions: versions(),
                max_read_ts: ts(22, 0),
                last_writes: last_writes(),
                end: b"z".to_vec(),
            },
            KvResponse::SplitFenced {
                versions: Vec::new(),
                max_read_ts: Timestamp::MIN,
                last_writes: Vec::new(),
                end: Vec::new(),
            },
            KvResponse::Done,
            KvResponse::Locked { latest: ts(23, 2) },
            KvResponse::Uncertain(crate::kv::Uncertain {
                value_ts: ts(24, 1),
                observed: ts(25, 0),
            }),
            KvResponse::Err(Error::retry("restart transaction: write too old")),
            KvResponse::Err(
                Error::new(ErrorKind::UniqueViolation, "duplicate key value")
                    .with_detail("Key (id)=(1) already exists."),
            ),
            KvResponse::Err(
                Error::syntax("syntax error at or near \"SELEC\"")
                    .with_position(1)
                    .with_hint("did you mean SELECT? ✓"),
            ),
            KvResponse::Err(Error::new(ErrorKind::RangeKeyMismatch, "r42 split")),
            KvResponse::Err(Error::internal("")),
        ];
        for (i, kind) in all_kinds().into_iter().enumerate() {
            let mut e = Error::new(kind, format!("kind {kind:?}"));
            if i & 1 != 0 {
                e = e.with_position(i);
            }
            if i & 2 != 0 {
                e = e.with_hint(format!("hint {i}"));
            }
            if i & 4 != 0 {
                e = e.with_detail(format!("detail {i}"));
            }
            v.push(KvResponse::Err(e));
        }
        v
    }

    fn enc_req(req: &KvRequest) -> Vec<u8> {
        let mut out = Vec::new();
        encode_request(req, &mut out);
        out
    }

    fn enc_resp(resp: &KvResponse) -> Vec<u8> {
        let mut out = Vec::new();
        encode_response(resp, &mut out);
        out
    }

    #[test]
    fn requests_round_trip() {
        let reqs = requests();
        let mut tags = std::collections::BTreeSet::new();
        for req in &reqs {
            let b = enc_req(req);
            assert_eq!(b.len(), request_len(req), "{req:?}");
            assert_eq!(b[0], VERSION);
            tags.insert(b[1]);
            let back = decode_request(&b).unwrap_or_else(|e| panic!("{req:?}: {e}"));
            assert_eq!(format!("{back:?}"), format!("{req:?}"));
        }
        assert_eq!(tags.len(), 17, "every request variant is tested");
    }

    #[test]
    fn responses_round_trip() {
        let resps = responses();
        let mut tags = std::collections::BTreeSet::new();
        for resp in &resps {
            let b = enc_resp(resp);
            assert_eq!(b.len(), response_len(resp), "{resp:?}");
            assert_eq!(b[0], VERSION);
            tags.insert(b[1]);
            let back = decode_response(&b).unwrap_or_else(|e| panic!("{resp:?}: {e}"));
            assert_eq!(format!("{back:?}"), format!("{resp:?}"));
        }
        assert_eq!(tags.len(), 10, "every response variant is tested");
    }

    #[test]
    fn error_fields_survive() {
        let e = Error::new(ErrorKind::UniqueViolation, "dup")
            .with_position(usize::MAX)
            .with_hint("h")
            .with_detail("d");
        let b = enc_resp(&KvResponse::Err(e));
        let Ok(KvResponse::Err(back)) = decode_response(&b) else {
            panic!("not an error response");
        };
        assert_eq!(back.kind, ErrorKind::UniqueViolation);
        assert_eq!(back.sqlstate(), "23505");
        assert_eq!(back.message, "dup");
        assert_eq!(back.position, Some(usize::MAX));
        assert_eq!(back.hint.as_deref(), Some("h"));
        assert_eq!(back.detail.as_deref(), Some("d"));
    }

    #[test]
    fn kind_codes_are_a_bijection() {
        // The macro makes `kind_code` exhaustive; here every listed code maps back.
        let kinds = all_kinds();
        assert_eq!(kinds.len(), KIND_COUNT);
        for k in kinds {
            assert_eq!(kind_from_code(kind_code(k)), Some(k));
        }
        assert_eq!(kind_from_code(0), None);
        assert_eq!(kind_code(ErrorKind::Internal), 48);
    }

    #[test]
    fn encoding_appends() {
        let req = &requests()[0];
        let mut out = b"prefix".to_vec();
        encode_request(req, &mut out);
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(out[6..], enc_req(req)[..]);
        let resp = &responses()[2];
        let mut out = b"xy".to_vec();
        encode_response(resp, &mut out);
        assert_eq!(&out[..2], b"xy");
        assert_eq!(out[2..], enc_resp(resp)[..]);
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        for req in requests() {
            let b = enc_req(&req);
            for n in 0..b.len() {
                assert!(decode_request(&b[..n]).is_err(), "{req:?} cut at {n}");
            }
            let mut long = b.clone();
            long.push(0);
            let e = decode_request(&long).unwrap_err();
            assert!(e.message.starts_with("corrupt KV message"), "{e}");
            assert_eq!(e.kind, ErrorKind::Internal);
        }
        for resp in responses() {
            let b = enc_resp(&resp);
            for n in 0..b.len() {
                assert!(decode_response(&b[..n]).is_err(), "{resp:?} cut at {n}");
            }
            let mut long = b.clone();
            long.push(0);
            assert!(decode_response(&long).is_err());
        }
    }

    #[test]
    fn malformed_fields_are_errors() {
        let is_corrupt = |r: Result<KvResponse>| match r {
            Err(e) => e.message.starts_with("corrupt KV message"),
            Ok(_) => false,
        };
        // Wrong version, unknown tags.
        assert!(is_corrupt(decode_response(&[VERSION + 1, RESP_DONE])));
        assert!(is_corrupt(decode_response(&[VERSION, 0])));
        assert!(is_corrupt(decode_response(&[VERSION, 200])));
        assert!(decode_request(&[VERSION, 0]).is_err());
        assert!(decode_request(&[VERSION, 12]).is_err());
        assert!(decode_request(&[]).is_err());
        // An option byte other than 0 or 1.
        assert!(is_corrupt(decode_response(&[VERSION, RESP_VALUE, 2])));
        // A bool byte other than 0 or 1.
        let mut b = enc_req(&requests()[2]);
        *b.last_mut().unwrap() = 2;
        assert!(decode_request(&b).is_err());
        // An unknown write tag.
        let mut b = enc_req(&KvRequest::Prepare {
            range: RangeId(1),
            txn: 1,
            read_ts: Timestamp::MIN,
            writes: vec![KvWrite::Delete { key: Vec::new() }],
            commit_ts: Timestamp::MIN,
            reads_ts: Timestamp::MIN,
            reads: ReadSet::default(),
        });
        let tag_at = 2 + RANGE + 8 + TS + LEN;
        assert_eq!(b[tag_at], WRITE_DELETE);
        b[tag_at] = 9;
        assert!(decode_request(&b).is_err());
        // Error: unknown kind, unknown flag, invalid UTF-8.
        let b = enc_resp(&KvResponse::Err(Error::internal("ab")));
        let mut k = b.clone();
        k[2] = 0;
        assert!(is_corrupt(decode_response(&k)));
        let mut f = b.clone();
        *f.last_mut().unwrap() = 0x08;
        assert!(is_corrupt(decode_response(&f)));
        let mut u = b.clone();
        u[2 + 1 + LEN] = 0xff;
        assert!(is_corrupt(decode_response(&u)));
    }

    #[test]
    fn hostile_counts_and_lengths_are_rejected_before_allocating() {
        // A list count of u32::MAX in a tiny message.
        let mut b = vec![VERSION, REQ_PREPARE];
        b.extend_from_slice(&[0; RANGE + 8 + TS]);
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&[WRITE_DELETE, 0, 0, 0, 0]);
        assert!(decode_request(&b).is_err());
        // A count that fits only if elements were smaller than their smallest encoding.
        let mut b = vec![VERSION, RESP_ROWS];
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&[0; 2 * MIN_ROW - 1]);
        assert!(decode_response(&b).is_err());
        // A byte string longer than the message.
        let mut b = vec![VERSION, RESP_VALUE, 1];
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(b"short");
        assert!(decode_response(&b).is_err());
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let valid: Vec<Vec<u8>> = requests()
            .iter()
            .map(enc_req)
            .chain(responses().iter().map(enc_resp))
            .collect();
        let mut buf = Vec::new();
        for case in 0..20_000 {
            buf.clear();
            if case % 2 == 0 {
                // Random bytes, mostly behind a valid version and a plausible tag so the
                // decoder gets past the first checks.
                let len = (rng.next() % 96) as usize;
                for _ in 0..len {
                    buf.push(rng.next() as u8);
                }
                if case % 4 == 0 && buf.len() >= 2 {
                    buf[0] = VERSION;
                    buf[1] = 1 + (rng.next() % 11) as u8;
                }
            } else {
                // A valid message with a few bytes overwritten, some with 0xff runs (huge
                // lengths and counts), maybe truncated or extended.
                buf.extend_from_slice(&valid[(rng.next() % valid.len() as u64) as usize]);
                for _ in 0..1 + rng.next() % 3 {
                    let at = (rng.next() % buf.len() as u64) as usize;
                    let x = rng.next();
                    if x & 1 == 0 {
                        buf[at] = (x >> 8) as u8;
                    } else {
                        let end = (at + 4).min(buf.len());
                        buf[at..end].fill(0xff);
                    }
                }
                match rng.next() % 4 {
                    0 => buf.truncate((rng.next() % (buf.len() as u64 + 1)) as usize),
                    1 => buf.push(rng.next() as u8),
                    _ => {}
                }
            }
            let _ = decode_request(&buf);
            let _ = decode_response(&buf);
        }
    }
}
