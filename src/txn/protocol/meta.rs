//! The names the protocol passes around: transaction ids, priorities, epochs, node ids,
//! keys and spans, and the transaction metadata an intent carries.

use std::fmt;

use chitin_storage::Timestamp;

use crate::txn::Isolation;

/// Identifies a transaction cluster-wide. Printed `t<n>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxnId(pub u64);

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// Identifies a node (and so its clock). Printed `n<n>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A transaction's priority: a pusher with a strictly higher priority may push a pending
/// pushee (its timestamp or, for a writer, abort it). Deterministic, never random here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u32);

impl Priority {
    pub const LOW: Priority = Priority(1);
    pub const NORMAL: Priority = Priority(100);
    pub const HIGH: Priority = Priority(10_000);

    /// From a script name: `low`, `normal`, `high` or a number.
    pub fn from_name(s: &str) -> Option<Priority> {
        match s {
            "low" => Some(Priority::LOW),
            "normal" => Some(Priority::NORMAL),
            "high" => Some(Priority::HIGH),
            n => n.parse().ok().map(Priority),
        }
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::NORMAL
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Priority::LOW => f.write_str("low"),
            Priority::NORMAL => f.write_str("normal"),
            Priority::HIGH => f.write_str("high"),
            Priority(n) => write!(f, "{n}"),
        }
    }
}

/// A transaction's restart count; intents of an older epoch are garbage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u32);

/// A key: raw bytes, printed as text when it is text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Key(pub Vec<u8>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", String::from_utf8_lossy(&self.0))
    }
}

impl Key {
    pub fn new(s: &str) -> Key {
        Key(s.as_bytes().to_vec())
    }

    /// The smallest key greater than this one (this key with a zero byte appended).
    pub fn next(&self) -> Key {
        let mut k = self.0.clone();
        k.push(0);
        Key(k)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// A value as stored: bytes, printed as text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Value(pub Vec<u8>);

impl Value {
    pub fn new(s: &str) -> Value {
        Value(s.as_bytes().to_vec())
    }

    /// The value read as a decimal integer (the bank and `+=` statements).
    pub fn as_int(&self) -> Option<i64> {
        std::str::from_utf8(&self.0).ok()?.parse().ok()
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// A key span `[start, end)`. A single key `k` is the span `[k, k\0)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub start: Key,
    pub end: Key,
}

impl Span {
    pub fn key(k: &Key) -> Span {
        Span {
            start: k.clone(),
            end: k.next(),
        }
    }

    pub fn new(start: Key, end: Key) -> Span {
        Span { start, end }
    }

    pub fn contains(&self, k: &Key) -> bool {
        &self.start <= k && k < &self.end
    }

    pub fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }

    pub fn is_single_key(&self) -> bool {
        self.end == self.start.next()
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single_key() {
            write!(f, "{}", self.start)
        } else {
            write!(f, "[{}, {})", self.start, self.end)
        }
    }
}

/// What every intent (and the transaction record) says about its writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMeta {
    pub id: TxnId,
    pub epoch: Epoch,
    /// The timestamp the writer currently intends to commit at (its provisional write ts).
    pub write_ts: Timestamp,
    /// When the transaction started: a pusher that finds no record measures expiry from it.
    pub min_ts: Timestamp,
    pub priority: Priority,
    pub isolation: Isolation,
    /// The key whose range holds the transaction record.
    pub anchor: Key,
}

/// Prints a timestamp for people: milliseconds of the wall clock, then `,logical` when the
/// logical part is not zero (`5ms`, `302ms,1`, `1.5ms`).
pub struct Ts(pub Timestamp);

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        if t == Timestamp::MAX {
            return f.write_str("∞");
        }
        let ms = t.wall / 1_000_000;
        let rem = t.wall % 1_000_000;
        if rem == 0 {
            write!(f, "{ms}ms")?;
        } else {
            let frac = format!("{rem:06}");
            write!(f, "{ms}.{}ms", frac.trim_end_matches('0'))?;
        }
        if t.logical != 0 {
            write!(f, ",{}", t.logical)?;
        }
        Ok(())
    }
}

/// The next timestamp after `ts` (one logical tick later).
pub fn ts_next(ts: Timestamp) -> Timestamp {
    if ts.logical == u32::MAX {
        Timestamp::new(ts.wall + 1, 0)
    } else {
        Timestamp::new(ts.wall, ts.logical + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_in_milliseconds() {
        assert_eq!(Ts(Timestamp::new(5_000_000, 0)).to_string(), "5ms");
        assert_eq!(Ts(Timestamp::new(302_000_000, 1)).to_string(), "302ms,1");
        assert_eq!(Ts(Timestamp::new(1_500_000, 0)).to_string(), "1.5ms");
    }

    #[test]
    fn single_key_spans_print_as_the_key() {
        assert_eq!(Span::key(&Key::new("a")).to_string(), "a");
        assert_eq!(
            Span::new(Key::new("a"), Key::new("c")).to_string(),
            "[a, c)"
        );
    }
}
