//! Glue between the raft driver (raft-rs types) and the core's durable raft log
//! (`chitin_storage::RaftLog`): type conversion, and recovery of every range the log holds.
//!
//! A raft-rs entry is stored as our log entry with `data = [entry type] ++ raft data`.

use std::path::Path;

use chitin_storage::raftlog as log;
use chitin_storage::{RaftLog, RaftLogOptions, RangeId, RangeWrite};
use raft::prelude::{Entry, EntryType, HardState};

use crate::error::{Error, Result};

/// What recovery found for one range.
pub struct RecoveredRange {
    pub range: RangeId,
    pub hard_state: Option<HardState>,
    /// `(index, term)` of the last entry truncated away; `(0, 0)` if none was.
    pub truncated: (u64, u64),
    pub entries: Vec<Entry>,
}

/// The core's raft log as the raft driver sees it.
pub struct DurableLog {
    log: RaftLog,
}

fn entry_type_tag(t: EntryType) -> u8 {
    match t {
        EntryType::EntryNormal => 0,
        EntryType::EntryConfChange => 1,
        EntryType::EntryConfChangeV2 => 2,
    }
}

fn to_log_entry(e: &Entry) -> log::Entry {
    let mut data = Vec::with_capacity(e.data.len() + 1);
    data.push(entry_type_tag(e.get_entry_type()));
    data.extend_from_slice(&e.data);
    log::Entry {
        index: e.index,
        term: e.term,
        data,
    }
}

fn from_log_entry(e: log::Entry) -> Result<Entry> {
    let (tag, data) = e
        .data
        .split_first()
        .ok_or_else(|| Error::internal(format!("raft log entry {} has no type", e.index)))?;
    let mut out = Entry {
        index: e.index,
        term: e.term,
        data: data.to_vec(),
        ..Default::default()
    };
    out.set_entry_type(match tag {
        0 => EntryType::EntryNormal,
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        t => {
            return Err(Error::internal(format!(
                "raft log entry {} has unknown type {t}",
                e.index
            )))
        }
    });
    Ok(out)
}

impl DurableLog {
    pub async fn open(dir: &Path) -> Result<DurableLog> {
        std::fs::create_dir_all(dir)?;
        let opts = RaftLogOptions {
            segment_size: 16 << 20,
            ..Default::default()
        };
        Ok(DurableLog {
            log: RaftLog::open(dir, opts).await?,
        })
    }

    /// Everything the log holds, per range: hard state, the `(index, term)` of the last
    /// entry truncated away (`(0, 0)` when the log starts at 1), and the entries.
    pub async fn recover(&self) -> Result<Vec<RecoveredRange>> {
        let mut out = Vec::new();
        for range in self.log.ranges() {
            let hs = self.log.hard_state(range).map(|h| HardState {
                term: h.term,
                vote: h.vote,
                commit: h.commit,
            });
            let mut entries = Vec::new();
            let mut truncated = (0, 0);
            if let (Some(first), Some(last)) =
                (self.log.first_index(range), self.log.last_index(range))
            {
                if last >= first {
                    for e in self.log.entries(range, first, last + 1).await? {
                        entries.push(from_log_entry(e)?);
                    }
                }
                if first > 1 {
                    // The log forgets that term when a crash came between reclaiming a
                    // segment and persisting the truncation marker; terms never decrease,
                    // so the first entry's term is a safe stand-in for one voter.
                    let term = self
                        .log
                        .term(range, first - 1)
                        .ok()
                        .or_else(|| entries.first().map(|e| e.term))
                        .unwrap_or(0);
                    truncated = (first - 1, term);
                }
            }
            out.push(RecoveredRange {
                range,
                hard_state: hs,
                truncated,
                entries,
            });
        }
        Ok(out)
    }

    /// Drops the entries of `range` below `below` (durable with the next append; segments
    /// no range needs are reclaimed).
    pub async fn truncate(&self, range: RangeId, below: u64) -> Result<()> {
        self.log.truncate(range, below).await?;
        Ok(())
    }

    /// Forgets `range` altogether (its replica here was destroyed), durably at once.
    pub async fn remove_range(&self, range: RangeId) -> Result<()> {
        self.log.remove_range(range).await?;
        Ok(())
    }

    /// Makes pending truncation markers durable.
    pub async fn sync(&self) -> Result<()> {
        self.log.sync().await?;
        Ok(())
    }

    /// Persists entries and hard states of many ranges with one write and one fdatasync.
    pub async fn append(&self, batch: &[(RangeId, Vec<Entry>, Option<HardState>)]) -> Result<()> {
        let writes: Vec<RangeWrite> = batch
            .iter()
            .map(|(range, entries, hs)| RangeWrite {
                range: *range,
                entries: entries.iter().map(to_log_entry).collect(),
                hard_state: hs.as_ref().map(|h| log::HardState {
                    term: h.term,
                    vote: h.vote,
                    commit: h.commit,
                }),
            })
            .collect();
        self.log.append(&writes).await?;
        Ok(())
    }
}
