//! Internal keys: how a user key, its key space, its timestamp and its sequence number are
//! laid out in one byte string, and how such strings compare.
//!
//! ```text
//! [space: u8][user key …][ts desc: 12 bytes][seq desc: 8 bytes]
//! ```
//!
//! The *head* (`space` + user key) is variable-length, so internal keys are not compared
//! bytewise as a whole (a user key that is a prefix of another would sort wrongly): they
//! compare by head first, then by the fixed 20-byte trailer, which is bytewise descending in
//! timestamp and then in sequence number. So versions of a key sort newest first, and for
//! one `(key, ts)` the latest write (highest seqno) first.
//!
//! The entry's kind (put, tombstone, lock put, lock delete) is the first byte of its value.

use std::cmp::Ordering;

use crate::Timestamp;

/// Length of the fixed trailer: timestamp (12) + sequence number (8).
pub const TRAILER_LEN: usize = 20;

/// The MVCC key space: `(key, ts)` versions.
pub const SPACE_MVCC: u8 = 0x01;
/// The lock-table key space: one record per key, never seen by MVCC reads.
pub const SPACE_LOCK: u8 = 0x02;

/// Value kinds (first byte of a stored value).
pub const KIND_TOMBSTONE: u8 = 0;
pub const KIND_PUT: u8 = 1;
pub const KIND_LOCK_PUT: u8 = 2;
pub const KIND_LOCK_DELETE: u8 = 3;

/// A global write sequence number; every op of every batch gets its own.
pub type Seqno = u64;

/// Builds an internal key.
pub fn encode(space: u8, user_key: &[u8], ts: Timestamp, seq: Seqno) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + user_key.len() + TRAILER_LEN);
    out.push(space);
    out.extend_from_slice(user_key);
    out.extend_from_slice(&ts.encode_desc());
    out.extend_from_slice(&(!seq).to_be_bytes());
    out
}

/// The smallest internal key of `user_key` in `space` (all of its versions sort after it).
pub fn seek_first(space: u8, user_key: &[u8]) -> Vec<u8> {
    encode(space, user_key, Timestamp::MAX, Seqno::MAX)
}

/// True when `k` is long enough to be an internal key.
pub fn is_valid(k: &[u8]) -> bool {
    k.len() > TRAILER_LEN
}

/// `space` + user key.
#[inline]
pub fn head(k: &[u8]) -> &[u8] {
    &k[..k.len() - TRAILER_LEN]
}

#[inline]
pub fn space(k: &[u8]) -> u8 {
    k[0]
}

#[inline]
pub fn user_key(k: &[u8]) -> &[u8] {
    &k[1..k.len() - TRAILER_LEN]
}

#[inline]
pub fn ts(k: &[u8]) -> Timestamp {
    let n = k.len() - TRAILER_LEN;
    Timestamp::decode_desc(k[n..n + 12].try_into().unwrap())
}

#[inline]
pub fn seq(k: &[u8]) -> Seqno {
    let n = k.len() - 8;
    !u64::from_be_bytes(k[n..].try_into().unwrap())
}

/// The order of internal keys: head ascending, then trailer (ts desc, seq desc).
// PERF: every block search and every merge step calls this.
#[inline]
pub fn compare(a: &[u8], b: &[u8]) -> Ordering {
    let (ah, at) = a.split_at(a.len() - TRAILER_LEN);
    let (bh, bt) = b.split_at(b.len() - TRAILER_LEN);
    ah.cmp(bh).then_with(|| at.cmp(bt))
}

/// An owned internal key ordered by [`compare`], for `BTreeMap`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IKey(pub Vec<u8>);

impl Ord for IKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(&self.0, &other.0)
    }
}

impl PartialOrd for IKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A borrowed internal key with [`IKey`]'s order, so a `BTreeMap<IKey, _>` can be searched
/// without copying the key. PERF: the memtable read path.
#[derive(Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct IKeyRef(pub [u8]);

impl IKeyRef {
    pub fn new(k: &[u8]) -> &IKeyRef {
        // SAFETY: `IKeyRef` is `repr(transparent)` over `[u8]`, so the layouts are equal.
        unsafe { &*(k as *const [u8] as *const IKeyRef) }
    }
}

impl Ord for IKeyRef {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(&self.0, &other.0)
    }
}

impl PartialOrd for IKeyRef {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::borrow::Borrow<IKeyRef> for IKey {
    fn borrow(&self) -> &IKeyRef {
        IKeyRef::new(&self.0)
    }
}

/// A range tombstone: hides versions of user keys in `[start, end)`.
///
/// With `ts < Timestamp::MAX` it is an MVCC deletion: a version at `vts <= ts` is hidden
/// from reads at `read_ts >= ts`, whatever the order the two were written in. With
/// `ts == Timestamp::MAX` it removes data: every version written before it (lower seqno) is
/// gone for every reader, and versions written after it are untouched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeTombstone {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    pub ts: Timestamp,
    pub seq: Seqno,
}

impl RangeTombstone {
    pub fn contains(&self, user_key: &[u8]) -> bool {
        self.start.as_slice() <= user_key && user_key < self.end.as_slice()
    }

    pub fn overlaps(&self, start: &[u8], end: &[u8]) -> bool {
        self.start.as_slice() < end && start < self.end.as_slice()
    }

    pub fn is_removal(&self) -> bool {
        self.ts == Timestamp::MAX
    }

    /// True when this tombstone removes the version (written with `seq`) altogether.
    pub fn removes(&self, user_key: &[u8], seq: Seqno) -> bool {
        self.is_removal() && seq < self.seq && self.contains(user_key)
    }

    /// True when this (MVCC) tombstone hides a version at `vts` from a read at `read_ts`.
    pub fn hides(&self, user_key: &[u8], vts: Timestamp, read_ts: Timestamp) -> bool {
        !self.is_removal() && vts <= self.ts && self.ts <= read_ts && self.contains(user_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_key_then_ts_desc_then_seq_desc() {
        let t = |w| Timestamp::new(w, 0);
        let mut keys = [
            encode(SPACE_MVCC, b"ab", t(1), 1),
            encode(SPACE_MVCC, b"a", t(1), 5),
            encode(SPACE_MVCC, b"a", t(2), 1),
            encode(SPACE_MVCC, b"a", t(1), 9),
            encode(SPACE_LOCK, b"a", Timestamp::MAX, 1),
        ];
        keys.sort_by(|a, b| compare(a, b));
        let decoded: Vec<_> = keys
            .iter()
            .map(|k| (space(k), user_key(k).to_vec(), ts(k).wall, seq(k)))
            .collect();
        assert_eq!(
            decoded,
            vec![
                (SPACE_MVCC, b"a".to_vec(), 2, 1),
                (SPACE_MVCC, b"a".to_vec(), 1, 9),
                (SPACE_MVCC, b"a".to_vec(), 1, 5),
                (SPACE_MVCC, b"ab".to_vec(), 1, 1),
                (SPACE_LOCK, b"a".to_vec(), u64::MAX, 1),
            ]
        );
    }
}
