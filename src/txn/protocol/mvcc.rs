//! One range's multi-version store with intents.
//!
//! Each key has committed versions (timestamp → value or tombstone) and at most one intent:
//! a provisional write carrying its writer's [`TxnMeta`]. Reads see the newest committed
//! version at or below their timestamp, but refuse to guess in two cases:
//!
//! - a committed version in `(read_ts, uncertainty_limit]` might have been written before
//!   the reader started (the writer's clock may be ahead by up to the max offset):
//!   [`ReadConflict::Uncertain`], and the reader moves its timestamp above it;
//! - another transaction's intent at or below the uncertainty limit might commit below the
//!   read: [`ReadConflict::Intent`], and the reader must push its writer.
//!
//! Writes place intents. A committed version at or above the write timestamp makes the
//! write "too old": it is placed just above that version instead and the caller learns the
//! new timestamp. An intent of another transaction is a [`WriteConflict`].

use std::collections::BTreeMap;
use std::ops::Bound;

use chitin_storage::Timestamp;

use super::meta::{ts_next, Key, Span, TxnId, TxnMeta, Value};

/// A provisional write. `value` is `None` for a deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    pub txn: TxnMeta,
    pub value: Option<Value>,
}

impl Intent {
    pub fn ts(&self) -> Timestamp {
        self.txn.write_ts
    }
}

/// Who reads, at what time, with which uncertainty limit.
#[derive(Clone, Debug)]
pub struct ReadContext {
    pub txn: Option<TxnId>,
    pub read_ts: Timestamp,
    /// Values above `read_ts` up to here are uncertain (equal to `read_ts` when none).
    pub uncertainty_limit: Timestamp,
}

/// A value read and the timestamp it was written at; `value` is `None` for "no row".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadValue {
    pub key: Key,
    pub value: Option<Value>,
    pub ts: Timestamp,
    /// Read from the reader's own intent.
    pub own: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadConflict {
    /// Another transaction's intent the read cannot ignore.
    Intent { key: Key, intent: Box<Intent> },
    /// A committed value inside the reader's uncertainty interval.
    Uncertain {
        key: Key,
        value_ts: Timestamp,
        value: Option<Value>,
    },
}

/// A write met another transaction's intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteConflict {
    pub key: Key,
    pub intent: Box<Intent>,
}

/// Where a write landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    pub ts: Timestamp,
    /// The newest committed version's timestamp when the write was too old.
    pub write_too_old: Option<Timestamp>,
}

/// Why a refresh of a span failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshConflict {
    Committed {
        key: Key,
        ts: Timestamp,
        value: Option<Value>,
    },
    Intent {
        key: Key,
        txn: TxnId,
        ts: Timestamp,
    },
}

/// How an intent is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Committed at the timestamp: the intent becomes a committed version.
    Commit(Timestamp),
    /// Aborted: the intent disappears.
    Abort,
    /// Still pending but pushed: the intent moves up to the timestamp.
    Push(Timestamp),
}

#[derive(Clone, Debug, Default)]
pub struct MvccStore {
    versions: BTreeMap<Key, BTreeMap<Timestamp, Option<Value>>>,
    intents: BTreeMap<Key, Intent>,
}

impl MvccStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn intent(&self, key: &Key) -> Option<&Intent> {
        self.intents.get(key)
    }

    /// Every intent, in key order.
    pub fn intents(&self) -> impl Iterator<Item = (&Key, &Intent)> {
        self.intents.iter()
    }

    /// The newest committed version of `key`, if any.
    pub fn newest_committed(&self, key: &Key) -> Option<(Timestamp, Option<&Value>)> {
        self.versions
            .get(key)
            .and_then(|v| v.iter().next_back())
            .map(|(ts, v)| (*ts, v.as_ref()))
    }

    /// Reads one key.
    pub fn get(&self, key: &Key, ctx: &ReadContext) -> Result<ReadValue, ReadConflict> {
        if let Some(intent) = self.intents.get(key) {
            if Some(intent.txn.id) == ctx.txn {
                return Ok(ReadValue {
                    key: key.clone(),
                    value: intent.value.clone(),
                    ts: intent.ts(),
                    own: true,
                });
            }
            if intent.ts() <= ctx.uncertainty_limit.max(ctx.read_ts) {
                return Err(ReadConflict::Intent {
                    key: key.clone(),
                    intent: Box::new(intent.clone()),
                });
            }
        }
        let Some(versions) = self.versions.get(key) else {
            return Ok(ReadValue {
                key: key.clone(),
                value: None,
                ts: Timestamp::MIN,
                own: false,
            });
        };
        if ctx.uncertainty_limit > ctx.read_ts {
            let window = (
                Bound::Excluded(ctx.read_ts),
                Bound::Included(ctx.uncertainty_limit),
            );
            if let Some((ts, v)) = versions.range(window).next_back() {
                return Err(ReadConflict::Uncertain {
                    key: key.clone(),
                    value_ts: *ts,
                    value: v.clone(),
                });
            }
        }
        let (ts, value) = versions
            .range(..=ctx.read_ts)
            .next_back()
            .map(|(ts, v)| (*ts, v.clone()))
            .unwrap_or((Timestamp::MIN, None));
        Ok(ReadValue {
            key: key.clone(),
            value,
            ts,
            own: false,
        })
    }

    /// Reads every live key in `span` (deleted and absent keys are left out). Fails on the
    /// first conflict in key order.
    pub fn scan(&self, span: &Span, ctx: &ReadContext) -> Result<Vec<ReadValue>, ReadConflict> {
        let mut keys: Vec<&Key> = self
            .versions
            .range(span.start.clone()..span.end.clone())
            .map(|(k, _)| k)
            .collect();
        keys.extend(
            self.intents
                .range(span.start.clone()..span.end.clone())
                .map(|(k, _)| k),
        );
        keys.sort();
        keys.dedup();
        let mut out = Vec::new();
        for k in keys {
            let r = self.get(k, ctx)?;
            if r.value.is_some() {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Places (or replaces) `txn`'s intent on `key` at `txn.write_ts` or, when that is too
    /// old, just above the newest committed version. Replacing one's own intent keeps the
    /// higher of the two timestamps.
    pub fn put_intent(
        &mut self,
        key: &Key,
        txn: &TxnMeta,
        value: Option<Value>,
    ) -> Result<WriteOutcome, WriteConflict> {
        let mut ts = txn.write_ts;
        if let Some(existing) = self.intents.get(key) {
            if existing.txn.id != txn.id {
                return Err(WriteConflict {
                    key: key.clone(),
                    intent: Box::new(existing.clone()),
                });
            }
            ts = ts.max(existing.ts());
        }
        let mut write_too_old = None;
        if let Some((newest, _)) = self.newest_committed(key) {
            if newest >= ts {
                write_too_old = Some(newest);
                ts = ts_next(newest);
            }
        }
        let mut meta = txn.clone();
        meta.write_ts = ts;
        self.intents
            .insert(key.clone(), Intent { txn: meta, value });
        Ok(WriteOutcome { ts, write_too_old })
    }

    /// Writes a committed version directly (one-phase commit: no intent ever exists).
    /// The caller has checked for conflicts and too-old writes under latches.
    pub fn put_committed(&mut self, key: &Key, ts: Timestamp, value: Option<Value>) {
        assert!(
            !self.intents.contains_key(key),
            "invariant: a one-phase commit writes only keys without intents"
        );
        self.versions
            .entry(key.clone())
            .or_default()
            .insert(ts, value);
    }

    /// Resolves `txn`'s intent on `key`, if it is there (resolution is idempotent).
    /// Returns whether an intent was resolved.
    pub fn resolve_intent(&mut self, key: &Key, txn: TxnId, how: Resolution) -> bool {
        match self.intents.get(key) {
            Some(i) if i.txn.id == txn => {}
            _ => return false,
        }
        match how {
            Resolution::Commit(ts) => {
                let intent = self.intents.remove(key).expect("checked above");
                assert!(
                    intent.ts() <= ts,
                    "invariant: an intent commits at or above its own timestamp ({key} at {:?} committed at {ts:?})",
                    intent.ts()
                );
                self.versions
                    .entry(key.clone())
                    .or_default()
                    .insert(ts, intent.value);
            }
            Resolution::Abort => {
                self.intents.remove(key);
            }
            Resolution::Push(ts) => {
                let intent = self.intents.get_mut(key).expect("checked above");
                if ts > intent.txn.write_ts {
                    intent.txn.write_ts = ts;
                }
            }
        }
        true
    }

    /// Checks that nothing was written in `span` in `(from, to]` that `txn` did not write:
    /// no committed version, no other transaction's intent at or below `to`.
    pub fn check_refresh(
        &self,
        span: &Span,
        txn: TxnId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<(), RefreshConflict> {
        for (k, versions) in self.versions.range(span.start.clone()..span.end.clone()) {
            let window = (Bound::Excluded(from), Bound::Included(to));
            if let Some((ts, v)) = versions.range(window).next_back() {
                return Err(RefreshConflict::Committed {
                    key: k.clone(),
                    ts: *ts,
                    value: v.clone(),
                });
            }
        }
        for (k, i) in self.intents.range(span.start.clone()..span.end.clone()) {
            if i.txn.id != txn && i.ts() <= to {
                return Err(RefreshConflict::Intent {
                    key: k.clone(),
                    txn: i.txn.id,
                    ts: i.ts(),
                });
            }
        }
        Ok(())
    }

    /// Every committed version, for checkers: `(key, ts, value)` in key then time order.
    pub fn committed_versions(&self) -> impl Iterator<Item = (&Key, Timestamp, Option<&Value>)> {
        self.versions
            .iter()
            .flat_map(|(k, vs)| vs.iter().map(move |(ts, v)| (k, *ts, v.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::protocol::meta::{Epoch, Priority};
    use crate::txn::Isolation;

    fn meta(id: u64, ts: u64) -> TxnMeta {
        TxnMeta {
            id: TxnId(id),
            epoch: Epoch(0),
            write_ts: Timestamp::new(ts, 0),
            min_ts: Timestamp::new(ts, 0),
            priority: Priority::NORMAL,
            isolation: Isolation::Serializable,
            anchor: Key::new("a"),
        }
    }

    fn ctx(txn: u64, read: u64, limit: u64) -> ReadContext {
        ReadContext {
            txn: Some(TxnId(txn)),
            read_ts: Timestamp::new(read, 0),
            uncertainty_limit: Timestamp::new(limit, 0),
        }
    }

    #[test]
    fn reads_see_the_newest_version_below_and_flag_uncertain_ones() {
        let mut s = MvccStore::new();
        let k = Key::new("k");
        s.put_committed(&k, Timestamp::new(10, 0), Some(Value::new("1")));
        s.put_committed(&k, Timestamp::new(20, 0), Some(Value::new("2")));
        let r = s.get(&k, &ctx(9, 15, 15)).unwrap();
        assert_eq!(r.value, Some(Value::new("1")));
        assert!(matches!(
            s.get(&k, &ctx(9, 15, 25)),
            Err(ReadConflict::Uncertain { value_ts, .. }) if value_ts == Timestamp::new(20, 0)
        ));
    }

    #[test]
    fn too_old_writes_land_above_the_newest_version_and_foreign_intents_conflict() {
        let mut s = MvccStore::new();
        let k = Key::new("k");
        s.put_committed(&k, Timestamp::new(20, 0), Some(Value::new("2")));
        let w = s
            .put_intent(&k, &meta(1, 10), Some(Value::new("x")))
            .unwrap();
        assert_eq!(w.ts, Timestamp::new(20, 1));
        assert_eq!(w.write_too_old, Some(Timestamp::new(20, 0)));
        assert!(s.put_intent(&k, &meta(2, 30), None).is_err());
        assert!(matches!(
            s.get(&k, &ctx(2, 30, 30)),
            Err(ReadConflict::Intent { .. })
        ));
        // Above the reader's uncertainty limit, the intent is invisible.
        assert!(s.get(&k, &ctx(2, 15, 15)).is_ok());
        s.resolve_intent(&k, TxnId(1), Resolution::Commit(Timestamp::new(25, 0)));
        assert_eq!(
            s.get(&k, &ctx(2, 30, 30)).unwrap().value,
            Some(Value::new("x"))
        );
    }
}
