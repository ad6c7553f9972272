//! Recovery: rebuild the in-memory index from the segment files of a log directory.
//!
//! 1. List the directory. `*.tmp` files (segments whose zero-fill never finished) are
//!    deleted; `free-*.log` files join the recycle pool.
//! 2. Read the first record of every `{seq}.log`. It is a `SegmentStart` naming the
//!    previous segment and where that segment's records end — or it is not valid (a
//!    prepared segment never written, or one whose first write tore).
//! 3. The log is the chain that ends at the newest segment with a valid start, followed
//!    back through `prev_seq` links while the previous file exists. A missing predecessor
//!    means everything before was reclaimed; files left behind by an interrupted
//!    reclamation, and segments outside the chain, are reclaimed now.
//! 4. Sealed segments (all but the last of the chain) are replayed up to exactly the end
//!    their successor recorded; a bad record before that point is
//!    [`Error::Corruption`]. The last segment is replayed until the first record whose
//!    sequence number, length or checksum is wrong: that is the torn (or corrupt) tail,
//!    and it is cut — never replayed. The next append goes to a new segment, so the cut
//!    bytes are never overwritten and the cut point stays where it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::index::{Location, LogIndex};
use super::record::{check_frame, Invalid, Record};
use super::segment::{free_name, is_free_name, parse_segment_name, Scanned, Scanner, Segment};
use crate::{Error, Result};

/// What recovery found, for the caller and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files replayed.
    pub segments_replayed: usize,
    /// Records replayed (including segment starts and checkpoints).
    pub records_replayed: u64,
    /// Where the tail was cut when it ended in something other than clean zeros or stale
    /// recycled bytes: the file, the offset, and why.
    pub torn_tail: Option<(PathBuf, u64, String)>,
}

/// The state recovery hands to [`super::RaftLog`].
pub(crate) struct Recovered {
    pub index: LogIndex,
    /// The chain, oldest first.
    pub segments: BTreeMap<u64, Rc<Segment>>,
    /// `(seq, end)` of the last segment of the chain (`(0, 0)` when empty): what the next
    /// segment's `SegmentStart` must name.
    pub prev: (u64, u64),
    pub next_seq: u64,
    /// Reclaimed segment files ready for recycling.
    pub free: Vec<PathBuf>,
    pub report: RecoveryReport,
}

pub(crate) async fn recover(dir: &Path, cache_budget: usize, max_free: usize) -> Result<Recovered> {
    let mut seqs = Vec::new();
    let mut free = Vec::new();
    let mut max_seq = 0;
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("list", dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = parse_segment_name(name) {
            seqs.push(seq);
            max_seq = max_seq.max(seq);
        } else if is_free_name(name) {
            let seq = parse_segment_name(&name["free-".len()..]).unwrap_or(0);
            max_seq = max_seq.max(seq);
            free.push(ent.path());
        } else if let Some(seq) = name
            .strip_suffix(".tmp")
            .and_then(|n| parse_segment_name(&format!("{n}.log")))
        {
            // A preparation that never finished. Its number stays used.
            max_seq = max_seq.max(seq);
            std::fs::remove_file(ent.path()).map_err(|e| Error::io("remove", ent.path(), e))?;
        }
    }
    seqs.sort_unstable();
    free.sort();

    // Open every segment and read its first record.
    let mut segs: BTreeMap<u64, Segment> = BTreeMap::new();
    let mut starts: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for &seq in &seqs {
        let seg = Segment::open(seq, dir.join(super::segment::segment_name(seq))).await?;
        let mut sc = Scanner::new(&seg);
        if let Scanned::Record { bytes, .. } = sc.next().await? {
            if let Ok(Record::SegmentStart { prev_seq, prev_end }) = check_frame(&bytes, seq) {
                starts.insert(seq, (prev_seq, prev_end));
            }
        }
        segs.insert(seq, seg);
    }

    // The chain, newest first, then reversed.
    let mut chain = Vec::new();
    if let Some((&last, _)) = starts.iter().next_back() {
        chain.push(last);
        let mut cur = last;
        loop {
            let (prev, _) = starts[&cur];
            if prev == 0 || prev >= cur || !segs.contains_key(&prev) {
                break;
            }
            if !starts.contains_key(&prev) {
                let seg = &segs[&prev];
                return Err(Error::Corruption {
                    path: seg.path.clone(),
                    offset: 0,
                    detail: "sealed log segment does not begin with a valid segment start".into(),
                });
            }
            chain.push(prev);
            cur = prev;
        }
        chain.reverse();
    }

    // Everything outside the chain is reclaimed.
    let in_chain: std::collections::HashSet<u64> = chain.iter().copied().collect();
    for (&seq, seg) in &segs {
        if in_chain.contains(&seq) {
            continue;
        }
        if free.len() < max_free {
            let to = dir.join(free_name(seq));
            std::fs::rename(&seg.path, &to).map_err(|e| Error::io("rename", &seg.path, e))?;
            free.push(to);
        } else {
            std::fs::remove_file(&seg.path).map_err(|e| Error::io("remove", &seg.path, e))?;
        }
    }
    while free.len() > max_free {
        let p = free.pop().unwrap();
        std::fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
    }

    // Replay.
    let mut index = LogIndex::new(cache_budget);
    let mut report = RecoveryReport::default();
    let mut prev = (0, 0);
    let mut segments = BTreeMap::new();
    for (i, &seq) in chain.iter().enumerate() {
        let seg = segs.remove(&seq).unwrap();
        let sealed_end = chain.get(i + 1).map(|next| starts[next].1);
        let end = replay(&seg, sealed_end, &mut index, &mut report).await?;
        report.segments_replayed += 1;
        prev = (seq, end);
        segments.insert(seq, Rc::new(seg));
        glommio::yield_if_needed().await;
    }
    for (_, seg) in segs {
        // Reclaimed above; close our handle.
        drop(seg);
    }
    Ok(Recovered {
        index,
        segments,
        prev,
        next_seq: max_seq + 1,
        free,
        report,
    })
}

/// Replays one segment into `index`. A sealed segment (`sealed_end` known) must hold valid
/// records up to exactly `sealed_end`; the tail segment is read until its first invalid
/// record. Returns the offset where the segment's records end.
async fn replay(
    seg: &Segment,
    sealed_end: Option<u64>,
    index: &mut LogIndex,
    report: &mut RecoveryReport,
) -> Result<u64> {
    let corrupt = |offset: u64, detail: String| Error::Corruption {
        path: seg.path.clone(),
        offset,
        detail,
    };
    let mut sc = Scanner::new(seg);
    loop {
        let (offset, bytes) = match sc.next().await? {
            Scanned::Record { offset, bytes } => (offset, bytes),
            Scanned::End { offset, why } => {
                match sealed_end {
                    Some(end) if offset != end => {
                        return Err(corrupt(
                            offset,
                            format!("{why} in a sealed segment that should end at {end}"),
                        ))
                    }
                    Some(_) => {}
                    None if why != Invalid::WrongSeq => {
                        report.torn_tail = Some((seg.path.clone(), offset, why.to_string()));
                    }
                    None => {}
                }
                return Ok(offset);
            }
        };
        if let Some(end) = sealed_end {
            if offset == end {
                return Ok(offset);
            }
            if offset + bytes.len() as u64 > end {
                return Err(corrupt(
                    offset,
                    format!("record crosses the sealed end {end}"),
                ));
            }
        }
        let rec = match check_frame(&bytes, seg.seq) {
            Ok(r) => r,
            Err(why) if sealed_end.is_some() => return Err(corrupt(offset, why.to_string())),
            Err(why) => {
                report.torn_tail = Some((seg.path.clone(), offset, why.to_string()));
                return Ok(offset);
            }
        };
        report.records_replayed += 1;
        let loc = Location {
            seq: seg.seq,
            offset,
            len: bytes.len() as u32,
        };
        match rec {
            Record::SegmentStart { .. } => {}
            Record::Write {
                range,
                hard_state,
                first_index,
                entries,
            } => index.apply_write(
                range,
                first_index,
                hard_state,
                entries.iter().map(|e| (e.term, e.data)),
                loc,
            ),
            Record::Truncate {
                range,
                below,
                prev_term,
            } => index.apply_truncate(range, below, prev_term),
            Record::RangeRemoved { range } => index.apply_remove(range),
            Record::RangeState {
                range,
                first_index,
                prev_term,
                hard_state,
            } => index.apply_range_state(range, first_index, prev_term, hard_state),
        }
    }
}
