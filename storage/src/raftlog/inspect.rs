//! A read-only look at a log directory for debug tools (`chitin debug raft-log`): every
//! segment file and every record in it, decoded into one line each, up to where the
//! segment's records end. Nothing is replayed, cut, renamed or deleted.

use std::path::{Path, PathBuf};

use super::record::{check_frame, Record};
use super::segment::{parse_segment_name, Scanned, Scanner, Segment};
use crate::{Error, RangeId, Result};

/// One record of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordInfo {
    pub offset: u64,
    /// Header and payload.
    pub len: u64,
    /// The range the record is about (`r0` for segment starts).
    pub range: RangeId,
    /// What the record says, e.g. `write 12..=15 (4 entries, 1200 B) hs term=3 vote=2
    /// commit=14`.
    pub summary: String,
}

/// One segment file and its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub seq: u64,
    pub path: PathBuf,
    pub size: u64,
    pub records: Vec<RecordInfo>,
    /// Where the records end, and why there (zeros or a recycled segment's stale bytes
    /// read as "wrong segment sequence").
    pub end: u64,
    pub end_reason: String,
}

/// Describes every `{seq}.log` segment in `dir`, oldest first. Segments outside the live
/// chain (prepared or left over) are listed too; their records usually end at offset 0.
/// Must run inside a glommio executor; writes the Direct I/O probe file if missing
/// ([`crate::prime_direct_io`]).
pub async fn inspect(dir: &Path) -> Result<Vec<SegmentInfo>> {
    crate::local::prime_direct_io(dir).await?;
    let mut seqs: Vec<u64> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("list", dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(parse_segment_name))
        .collect();
    seqs.sort_unstable();
    let mut out = Vec::new();
    for seq in seqs {
        let seg = Segment::open(seq, dir.join(super::segment::segment_name(seq))).await?;
        let mut records = Vec::new();
        let mut sc = Scanner::new(&seg);
        let (end, end_reason) = loop {
            match sc.next().await? {
                Scanned::End { offset, why } => break (offset, why.to_string()),
                Scanned::Record { offset, bytes } => match check_frame(&bytes, seq) {
                    Ok(rec) => records.push(describe(offset, bytes.len() as u64, &rec)),
                    Err(why) => break (offset, why.to_string()),
                },
            }
        };
        out.push(SegmentInfo {
            seq,
            path: seg.path.clone(),
            size: seg.capacity,
            records,
            end,
            end_reason,
        });
    }
    Ok(out)
}

fn describe(offset: u64, len: u64, rec: &Record<'_>) -> RecordInfo {
    let hs = |h: &Option<super::HardState>| match h {
        Some(h) => format!(" hs term={} vote={} commit={}", h.term, h.vote, h.commit),
        None => String::new(),
    };
    let (range, summary) = match rec {
        Record::SegmentStart { prev_seq, prev_end } => (
            RangeId(0),
            format!("segment start: follows segment {prev_seq}, which ends at {prev_end}"),
        ),
        Record::Write {
            range,
            hard_state,
            first_index,
            entries,
        } => {
            let bytes: usize = entries.iter().map(|e| e.data.len()).sum();
            let run = match entries.len() {
                0 => "no entries".to_string(),
                n => format!(
                    "{first_index}..={} ({n} entries, {bytes} B, terms {}..={})",
                    first_index + n as u64 - 1,
                    entries[0].term,
                    entries[n - 1].term
                ),
            };
            (*range, format!("write {run}{}", hs(hard_state)))
        }
        Record::Truncate {
            range,
            below,
            prev_term,
        } => (
            *range,
            format!(
                "truncate below {below} (term of {}: {prev_term})",
                below.saturating_sub(1)
            ),
        ),
        Record::RangeRemoved { range } => (*range, "range removed".to_string()),
        Record::RangeState {
            range,
            first_index,
            prev_term,
            hard_state,
        } => (
            *range,
            format!(
                "checkpoint: first index {first_index} (term below: {prev_term}){}",
                hs(hard_state)
            ),
        ),
    };
    RecordInfo {
        offset,
        len,
        range,
        summary,
    }
}
