//! A range replica: its raft group (raft-rs `RawNode` over an in-memory `MemStorage` view
//! of the durable log), its latches, and the proposals waiting to be applied.
//!
//! Only the core's raft driver ([`super::store::Store::raft_loop`]) touches the `RawNode`
//! between `ready()` and `advance()`; proposers queue their commands in
//! [`Replica::queue`] and the driver feeds them to raft at the top of its loop, so raft-rs's
//! rule (no `propose`/`step` between `ready` and `advance`) holds by construction.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use chitin_storage::{RangeId, Timestamp};
use glommio::channels::local_channel::LocalSender;
use raft::prelude::*;
use raft::storage::MemStorage;

use super::{KvWrite, TxnId};
use crate::error::{Error, Result};

/// What a replicated command does when applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// Write `writes` at `ts` (a one-phase commit).
    Write = 0,
    /// Store `writes` durably as transaction `txn`'s prepare record (lock table); nothing
    /// becomes visible.
    Prepare = 1,
    /// Write `writes` at `ts` and drop `txn`'s prepare record.
    Commit = 2,
    /// Drop `txn`'s prepare record.
    Abort = 3,
}

/// A command replicated through raft. Encoded as `kind u8 | txn u64 | proposal id u64 |
/// ts wall u64 | ts logical u32 | count u32 | (op u8, klen u32, key, vlen u32, value)*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub kind: CommandKind,
    pub txn: TxnId,
    pub proposal: u64,
    pub ts: Timestamp,
    pub writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// The lock-table key of the prepare record of `txn` on `range`.
pub fn prepare_record_key(range: RangeId, txn: TxnId) -> Vec<u8> {
    let mut k = PREPARE_PREFIX.to_vec();
    k.extend_from_slice(&range.0.to_be_bytes());
    k.extend_from_slice(&txn.to_be_bytes());
    k
}

/// Prefix of every prepare record in a core's lock table.
pub const PREPARE_PREFIX: &[u8] = b"\x00prepare/";

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33 + self.writes.len() * 32);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.txn.to_le_bytes());
        out.extend_from_slice(&self.proposal.to_le_bytes());
        out.extend_from_slice(&self.ts.wall.to_le_bytes());
        out.extend_from_slice(&self.ts.logical.to_le_bytes());
        out.extend_from_slice(&(self.writes.len() as u32).to_le_bytes());
        for (k, v) in &self.writes {
            out.push(v.is_some() as u8);
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k);
            if let Some(v) = v {
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Command> {
        let bad = || Error::internal("corrupt raft command");
        let mut pos = 0usize;
        let mut take = |n: usize| -> Result<&[u8]> {
            let s = b.get(pos..pos + n).ok_or_else(bad)?;
            pos += n;
            Ok(s)
        };
        let kind = match take(1)?[0] {
            0 => CommandKind::Write,
            1 => CommandKind::Prepare,
            2 => CommandKind::Commit,
            3 => CommandKind::Abort,
            _ => return Err(bad()),
        };
        let txn = u64::from_le_bytes(take(8)?.try_into().unwrap());
        let proposal = u64::from_le_bytes(take(8)?.try_into().unwrap());
        let wall = u64::from_le_bytes(take(8)?.try_into().unwrap());
        let logical = u32::from_le_bytes(take(4)?.try_into().unwrap());
        let n = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
        let mut writes = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let is_put = take(1)?[0] == 1;
            let klen = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
            let key = take(klen)?.to_vec();
            let value = if is_put {
                let vlen = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
                Some(take(vlen)?.to_vec())
            } else {
                None
            };
            writes.push((key, value));
        }
        Ok(Command {
            kind,
            txn,
            proposal,
            ts: Timestamp::new(wall, logical),
            writes,
        })
    }
}

/// A write prepared (latched and validated) but not yet committed.
pub struct Prepared {
    pub writes: Vec<KvWrite>,
    pub read_ts: Timestamp,
    /// The writes are in a durable prepare record (two-phase commit), which commit and
    /// abort must resolve.
    pub durable: bool,
}

pub struct Replica {
    pub id: RangeId,
    pub raw: RefCell<RawNode<MemStorage>>,
    /// Commands waiting to be proposed by the raft driver.
    pub queue: RefCell<Vec<Vec<u8>>>,
    /// Proposal id → who waits for its application.
    pub waiters: RefCell<HashMap<u64, LocalSender<Result<()>>>>,
    /// Latched keys → the transaction holding them.
    pub latches: RefCell<HashMap<Vec<u8>, TxnId>>,
    pub prepared: RefCell<HashMap<TxnId, Prepared>>,
    /// The highest timestamp any read of this range was served at: commits go above it.
    pub max_read_ts: Cell<Timestamp>,
    /// The highest timestamp any write of this range committed at.
    pub max_write_ts: Cell<Timestamp>,
    pub applied: Cell<u64>,
}

pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl Replica {
    /// Creates (or recovers) the single-voter replica of `id`: `entries` and `hard_state`
    /// come from the durable log; `applied` from the engine.
    pub fn new(
        id: RangeId,
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
        applied: u64,
    ) -> Result<Replica> {
        let storage = MemStorage::new();
        {
            let mut w = storage.wl();
            w.set_conf_state(ConfState::from((vec![1], vec![])));
            if !entries.is_empty() {
                w.append(&entries)
                    .map_err(|e| Error::internal(format!("raft recover {id}: {e}")))?;
            }
            if let Some(hs) = hard_state {
                w.set_hardstate(hs);
            }
        }
        let applied = applied.min(storage.rl().hard_state().commit);
        let cfg = Config {
            id: 1,
            election_tick: 10,
            heartbeat_tick: 3,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let mut raw = RawNode::new(&cfg, storage, &raft_logger())
            .map_err(|e| Error::internal(format!("raft init {id}: {e}")))?;
        raw.campaign()
            .map_err(|e| Error::internal(format!("raft campaign {id}: {e}")))?;
        Ok(Replica {
            id,
            raw: RefCell::new(raw),
            queue: RefCell::new(Vec::new()),
            waiters: RefCell::new(HashMap::new()),
            latches: RefCell::new(HashMap::new()),
            prepared: RefCell::new(HashMap::new()),
            max_read_ts: Cell::new(Timestamp::MIN),
            max_write_ts: Cell::new(Timestamp::MIN),
            applied: Cell::new(applied),
        })
    }

    /// True when a key in `[start, end)` is latched by a prepared transaction.
    pub fn span_latched(&self, start: &[u8], end: &[u8]) -> bool {
        self.latches
            .borrow()
            .keys()
            .any(|k| k.as_slice() >= start && k.as_slice() < end)
    }

    pub fn key_latched(&self, key: &[u8]) -> bool {
        self.latches.borrow().contains_key(key)
    }

    pub fn bump_read_ts(&self, ts: Timestamp) {
        if ts > self.max_read_ts.get() {
            self.max_read_ts.set(ts);
        }
    }

    pub fn release(&self, txn: TxnId) -> Option<Prepared> {
        let p = self.prepared.borrow_mut().remove(&txn)?;
        let mut latches = self.latches.borrow_mut();
        for w in &p.writes {
            if latches.get(w.key()) == Some(&txn) {
                latches.remove(w.key());
            }
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_round_trip() {
        let c = Command {
            kind: CommandKind::Prepare,
            txn: 42,
            proposal: 7,
            ts: Timestamp::new(99, 3),
            writes: vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), None)],
        };
        assert_eq!(Command::decode(&c.encode()).unwrap(), c);
        assert!(Command::decode(&c.encode()[..10]).is_err());
    }
}
