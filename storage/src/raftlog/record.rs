//! Record framing: how one logical change to the log becomes bytes in a segment, and back.
//!
//! Every record is a fixed 32-byte header followed by a payload:
//!
//! ```text
//! offset  size  field
//!      0     4  crc32 (crc32fast / IEEE) of bytes 4 .. 32+len: the rest of the header and
//!               the payload
//!      4     4  len: payload length in bytes
//!      8     8  seq: sequence number of the segment the record was written into
//!     16     8  range id (0 for segment-level records)
//!     24     1  kind (see `RecordKind`)
//!     25     7  reserved, zero
//! ```
//!
//! All integers are little-endian. Records are packed back to back with no padding; the
//! byte after the last record of a segment is either zero (a pre-zeroed segment), stale
//! bytes of a recycled segment (whose headers carry an older `seq`), or the torn remains of
//! a write that never completed. None of these passes [`check_frame`], which is how the end
//! of the log is found.
//!
//! Payloads, by kind:
//!
//! - `SegmentStart`: `prev_seq: u64, prev_end: u64` — the segment this one follows and the
//!   byte offset where that segment's records end. Always the first record of a segment.
//! - `Write`: `flags: u8` (bit 0: a hard state follows), `[term, vote, commit: u64]`,
//!   `first_index: u64, count: u32`, then `count` × (`term: u64, len: u32, data`). The
//!   entries have consecutive indexes from `first_index`.
//! - `Truncate`: `below: u64, prev_term: u64` — entries below `below` are gone; `prev_term`
//!   is the term of entry `below - 1` when known, else 0.
//! - `RangeRemoved`: empty.
//! - `RangeState`: `first_index: u64, prev_term: u64, flags: u8, [term, vote, commit]` — a
//!   checkpoint of one range's metadata, rewritten at the start of every segment so that
//!   older segments can be dropped without losing hard states or truncation points.

use super::{Entry, HardState, RangeWrite};
use crate::RangeId;

/// Length of the fixed record header.
pub(crate) const HEADER_LEN: usize = 32;

/// Largest payload a record may carry; a header claiming more is not a record.
pub(crate) const MAX_PAYLOAD: u32 = 1 << 30;

const HAS_HARD_STATE: u8 = 1;

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecordKind {
    SegmentStart = 1,
    Write = 2,
    Truncate = 3,
    RangeRemoved = 4,
    RangeState = 5,
}

impl RecordKind {
    fn from_u8(v: u8) -> Option<RecordKind> {
        Some(match v {
            1 => RecordKind::SegmentStart,
            2 => RecordKind::Write,
            3 => RecordKind::Truncate,
            4 => RecordKind::RangeRemoved,
            5 => RecordKind::RangeState,
            _ => return None,
        })
    }
}

/// The decoded fixed header of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub crc: u32,
    pub len: u32,
    pub seq: u64,
    pub range: RangeId,
    pub kind: u8,
}

impl Header {
    /// Decodes the header at the start of `buf` (which holds at least `HEADER_LEN` bytes).
    pub fn decode(buf: &[u8]) -> Header {
        Header {
            crc: u32::from_le_bytes(buf[0..4].try_into().unwrap()),
            len: u32::from_le_bytes(buf[4..8].try_into().unwrap()),
            seq: u64::from_le_bytes(buf[8..16].try_into().unwrap()),
            range: RangeId(u64::from_le_bytes(buf[16..24].try_into().unwrap())),
            kind: buf[24],
        }
    }

    /// Total length of the record: header plus payload.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + self.len as u64
    }
}

/// Why bytes are not a valid record (all of these mean "the log ends here" in the tail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// The header's sequence number is not the segment's: zeros, or a recycled segment's
    /// stale bytes.
    WrongSeq,
    /// The length field is impossible (too large, or past the end of the file).
    BadLength,
    /// Unknown record kind or reserved bytes not zero.
    BadKind,
    /// The checksum does not match.
    BadChecksum,
    /// The checksum matched but the payload does not decode.
    Malformed,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Invalid::WrongSeq => "record header has the wrong segment sequence",
            Invalid::BadLength => "record length is impossible",
            Invalid::BadKind => "unknown record kind",
            Invalid::BadChecksum => "record checksum mismatch",
            Invalid::Malformed => "record payload does not decode",
        };
        f.write_str(s)
    }
}

/// Checks the header at the start of `buf` before its payload is read: the sequence
/// number, kind and a plausible length (`available` is how many bytes the file holds from
/// the record's start).
pub(crate) fn check_header(buf: &[u8], seq: u64, available: u64) -> Result<Header, Invalid> {
    let h = Header::decode(buf);
    if h.seq != seq {
        return Err(Invalid::WrongSeq);
    }
    if RecordKind::from_u8(h.kind).is_none() || buf[25..HEADER_LEN].iter().any(|&b| b != 0) {
        return Err(Invalid::BadKind);
    }
    if h.len > MAX_PAYLOAD || h.record_len() > available {
        return Err(Invalid::BadLength);
    }
    Ok(h)
}

/// Checks a whole record (`rec` is exactly header + payload) and decodes it.
pub(crate) fn check_frame(rec: &[u8], seq: u64) -> Result<Record<'_>, Invalid> {
    if rec.len() < HEADER_LEN {
        return Err(Invalid::BadLength);
    }
    let h = check_header(rec, seq, rec.len() as u64)?;
    if h.record_len() != rec.len() as u64 {
        return Err(Invalid::BadLength);
    }
    if crc32fast::hash(&rec[4..]) != h.crc {
        return Err(Invalid::BadChecksum);
    }
    decode_payload(&h, &rec[HEADER_LEN..]).ok_or(Invalid::Malformed)
}

/// An entry as stored in a `Write` record, borrowing its data from the record bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryRef<'a> {
    pub term: u64,
    pub data: &'a [u8],
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    SegmentStart {
        prev_seq: u64,
        prev_end: u64,
    },
    Write {
        range: RangeId,
        hard_state: Option<HardState>,
        first_index: u64,
        entries: Vec<EntryRef<'a>>,
    },
    Truncate {
        range: RangeId,
        below: u64,
        prev_term: u64,
    },
    RangeRemoved {
        range: RangeId,
    },
    RangeState {
        range: RangeId,
        first_index: u64,
        prev_term: u64,
        hard_state: Option<HardState>,
    },
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn hard_state(&mut self, flags: u8) -> Option<Option<HardState>> {
        if flags & HAS_HARD_STATE == 0 {
            return Some(None);
        }
        Some(Some(HardState {
            term: self.u64()?,
            vote: self.u64()?,
            commit: self.u64()?,
        }))
    }
}

fn decode_payload<'a>(h: &Header, payload: &'a [u8]) -> Option<Record<'a>> {
    let mut c = Cursor { buf: payload };
    let range = h.range;
    let rec = match RecordKind::from_u8(h.kind)? {
        RecordKind::SegmentStart => Record::SegmentStart {
            prev_seq: c.u64()?,
            prev_end: c.u64()?,
        },
        RecordKind::Write => {
            let flags = c.u8()?;
            let hard_state = c.hard_state(flags)?;
            let first_index = c.u64()?;
            let count = c.u32()? as usize;
            // Each entry takes at least 12 bytes: bound the allocation by the payload. Raft
            // indexes start at 1 and must not overflow.
            if count > c.buf.len() / 12
                || (count > 0 && first_index == 0)
                || first_index.saturating_add(count as u64) > super::index::MAX_INDEX
            {
                return None;
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let term = c.u64()?;
                let len = c.u32()? as usize;
                entries.push(EntryRef {
                    term,
                    data: c.take(len)?,
                });
            }
            Record::Write {
                range,
                hard_state,
                first_index,
                entries,
            }
        }
        RecordKind::Truncate => Record::Truncate {
            range,
            below: c.u64()?,
            prev_term: c.u64()?,
        },
        RecordKind::RangeRemoved => Record::RangeRemoved { range },
        RecordKind::RangeState => {
            let first_index = c.u64()?;
            if first_index == 0 || first_index > super::index::MAX_INDEX {
                return None;
            }
            let prev_term = c.u64()?;
            let flags = c.u8()?;
            Record::RangeState {
                range,
                first_index,
                prev_term,
                hard_state: c.hard_state(flags)?,
            }
        }
    };
    if !c.buf.is_empty() {
        return None;
    }
    Some(rec)
}

/// Builds records into one byte buffer. Records are encoded with a zero sequence number and
/// no checksum; [`RecordBuf::seal`] stamps both once the segment they go to is known.
#[derive(Default)]
pub(crate) struct RecordBuf {
    pub bytes: Vec<u8>,
    /// Start offset of each record within `bytes`.
    pub starts: Vec<usize>,
}

impl RecordBuf {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    fn begin(&mut self, kind: RecordKind, range: RangeId) -> usize {
        let start = self.bytes.len();
        self.starts.push(start);
        self.bytes.extend_from_slice(&[0u8; HEADER_LEN]);
        self.bytes[start + 16..start + 24].copy_from_slice(&range.0.to_le_bytes());
        self.bytes[start + 24] = kind as u8;
        start
    }

    fn finish(&mut self, start: usize) {
        let len = (self.bytes.len() - start - HEADER_LEN) as u32;
        self.bytes[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    }

    fn put_u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    fn put_hard_state(&mut self, hs: &Option<HardState>) {
        if let Some(hs) = hs {
            self.put_u64(hs.term);
            self.put_u64(hs.vote);
            self.put_u64(hs.commit);
        }
    }

    pub fn segment_start(&mut self, prev_seq: u64, prev_end: u64) {
        let s = self.begin(RecordKind::SegmentStart, RangeId(0));
        self.put_u64(prev_seq);
        self.put_u64(prev_end);
        self.finish(s);
    }

    /// Encodes one range's entries and hard state. The entries must have consecutive
    /// indexes (the caller validated this).
    pub fn write(&mut self, w: &RangeWrite) {
        let s = self.begin(RecordKind::Write, w.range);
        self.bytes.push(if w.hard_state.is_some() {
            HAS_HARD_STATE
        } else {
            0
        });
        self.put_hard_state(&w.hard_state);
        self.put_u64(w.entries.first().map_or(0, |e| e.index));
        self.bytes
            .extend_from_slice(&(w.entries.len() as u32).to_le_bytes());
        for Entry { term, data, .. } in &w.entries {
            self.put_u64(*term);
            self.bytes
                .extend_from_slice(&(data.len() as u32).to_le_bytes());
            self.bytes.extend_from_slice(data);
        }
        self.finish(s);
    }

    pub fn truncate(&mut self, range: RangeId, below: u64, prev_term: u64) {
        let s = self.begin(RecordKind::Truncate, range);
        self.put_u64(below);
        self.put_u64(prev_term);
        self.finish(s);
    }

    pub fn range_removed(&mut self, range: RangeId) {
        let s = self.begin(RecordKind::RangeRemoved, range);
        self.finish(s);
    }

    pub fn range_state(
        &mut self,
        range: RangeId,
        first_index: u64,
        prev_term: u64,
        hard_state: &Option<HardState>,
    ) {
        let s = self.begin(RecordKind::RangeState, range);
        self.put_u64(first_index);
        self.put_u64(prev_term);
        self.bytes.push(if hard_state.is_some() {
            HAS_HARD_STATE
        } else {
            0
        });
        self.put_hard_state(hard_state);
        self.finish(s);
    }

    /// Appends all of `other`'s records after this buffer's.
    pub fn extend(&mut self, other: &RecordBuf) {
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.starts.extend(other.starts.iter().map(|s| s + base));
    }

    /// Stamps every record with the segment sequence number `seq` and its checksum.
    pub fn seal(&mut self, seq: u64) {
        for (i, &start) in self.starts.iter().enumerate() {
            let end = self.starts.get(i + 1).copied().unwrap_or(self.bytes.len());
            let rec = &mut self.bytes[start..end];
            rec[8..16].copy_from_slice(&seq.to_le_bytes());
            let crc = crc32fast::hash(&rec[4..]);
            rec[0..4].copy_from_slice(&crc.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec(),
        }
    }

    /// Splits a sealed buffer into its records and decodes each.
    fn decode_all(buf: &RecordBuf, seq: u64) -> Vec<Record<'_>> {
        let mut out = Vec::new();
        for (i, &s) in buf.starts.iter().enumerate() {
            let e = buf.starts.get(i + 1).copied().unwrap_or(buf.bytes.len());
            out.push(check_frame(&buf.bytes[s..e], seq).unwrap());
        }
        out
    }

    #[test]
    fn every_kind_roundtrips() {
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 9,
        };
        let mut b = RecordBuf::new();
        b.segment_start(6, 4096);
        b.write(&RangeWrite {
            range: RangeId(7),
            entries: vec![entry(10, 3, b"a"), entry(11, 3, b""), entry(12, 4, b"xyz")],
            hard_state: Some(hs),
        });
        b.write(&RangeWrite {
            range: RangeId(8),
            entries: vec![],
            hard_state: Some(hs),
        });
        b.truncate(RangeId(7), 11, 3);
        b.range_removed(RangeId(9));
        b.range_state(RangeId(7), 11, 3, &None);
        b.seal(7);
        let recs = decode_all(&b, 7);
        assert_eq!(recs.len(), 6);
        assert_eq!(
            recs[0],
            Record::SegmentStart {
                prev_seq: 6,
                prev_end: 4096
            }
        );
        match &recs[1] {
            Record::Write {
                range,
                hard_state,
                first_index,
                entries,
            } => {
                assert_eq!(
                    (*range, *hard_state, *first_index),
                    (RangeId(7), Some(hs), 10)
                );
                let got: Vec<_> = entries.iter().map(|e| (e.term, e.data)).collect();
                assert_eq!(got, vec![(3, &b"a"[..]), (3, &b""[..]), (4, &b"xyz"[..])]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            recs[3],
            Record::Truncate {
                range: RangeId(7),
                below: 11,
                prev_term: 3
            }
        );
        assert_eq!(recs[4], Record::RangeRemoved { range: RangeId(9) });
        assert_eq!(
            recs[5],
            Record::RangeState {
                range: RangeId(7),
                first_index: 11,
                prev_term: 3,
                hard_state: None
            }
        );
    }

    #[test]
    fn wrong_seq_flipped_bits_and_zeros_are_rejected() {
        let mut b = RecordBuf::new();
        b.write(&RangeWrite {
            range: RangeId(1),
            entries: vec![entry(1, 1, b"hello")],
            hard_state: None,
        });
        b.seal(5);
        let rec = b.bytes.clone();
        assert!(check_frame(&rec, 5).is_ok());
        assert_eq!(check_frame(&rec, 4).unwrap_err(), Invalid::WrongSeq);
        for i in 0..rec.len() {
            if (8..16).contains(&i) {
                continue; // seq bytes: WrongSeq, checked above
            }
            let mut bad = rec.clone();
            bad[i] ^= 0x10;
            assert!(
                check_frame(&bad, 5).is_err(),
                "flip at byte {i} not detected"
            );
        }
        assert_eq!(
            check_frame(&vec![0u8; rec.len()], 5).unwrap_err(),
            Invalid::WrongSeq
        );
        assert_eq!(
            check_header(&rec, 5, rec.len() as u64 - 1).unwrap_err(),
            Invalid::BadLength
        );
    }
}
