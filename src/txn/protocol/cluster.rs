//! An in-memory cluster of nodes and ranges that runs the protocol end to end: the KV
//! layer a transaction coordinator talks to, with every message, clock reading and
//! proposal made explicit and nothing run concurrently.
//!
//! Requests return [`Step::Blocked`] instead of waiting: the caller (the harness, later the
//! node's task) parks the request and runs it again when [`Cluster::take_woken`] names its
//! transaction. Requests are idempotent for that purpose: running one again after it was
//! woken evaluates it afresh (a READ COMMITTED statement with a new snapshot).

use std::collections::{BTreeMap, VecDeque};

use chitin_storage::{RangeId, Timestamp};

use super::clock::{ClockOffsetError, Hlc, ManualClock, DEFAULT_MAX_OFFSET_NANOS};
use super::coordinator::{CoordState, DelayedWrite, TxnCoordinator};
use super::error::{RetryReason, TxnError};
use super::event::Event;
use super::latch::LatchAccess;
use super::meta::{ts_next, Key, NodeId, Priority, Span, Ts, TxnId, Value};
use super::mvcc::{
    ReadConflict, ReadContext, ReadValue, RefreshConflict, Resolution, WriteOutcome,
};
use super::push::PushType;
use super::range::Range;
use super::record::{TxnRecord, TxnStatus, DEFAULT_EXPIRY_NANOS};
use crate::txn::Isolation;

/// How many times one request re-evaluates (after pushes, refreshes) before that is a bug.
const MAX_ATTEMPTS: usize = 64;

#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub nodes: u32,
    /// Range boundaries: range i holds `[splits[i-1], splits[i])`.
    pub splits: Vec<Key>,
    pub max_offset_nanos: u64,
    pub expiry_nanos: u64,
    pub heartbeat_interval_nanos: u64,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            splits: vec![Key::new("b"), Key::new("c")],
            max_offset_nanos: DEFAULT_MAX_OFFSET_NANOS,
            expiry_nanos: DEFAULT_EXPIRY_NANOS,
            heartbeat_interval_nanos: 1_000_000_000,
        }
    }
}

/// A node: its clock, skewed from true time by `skew_nanos`.
#[derive(Clone, Debug)]
pub struct Node {
    pub id: NodeId,
    pub hlc: Hlc<ManualClock>,
    pub skew_nanos: i64,
}

/// What a blocked request waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Another transaction's lock (intent) on a key.
    Lock {
        range: RangeId,
        key: Key,
        holder: TxnId,
        why: String,
    },
    /// A commit waits for its own pipelined writes to replicate.
    InFlight { keys: Vec<Key> },
}

/// A request's result: done, or parked until woken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<T> {
    Done(T),
    Blocked(Wait),
}

/// Where a write went: replicated, or still in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Written(WriteOutcome),
    InFlight,
}

/// An `UPDATE k = k + n`: the value read and the one written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncrementOutcome {
    pub old: i64,
    pub new: i64,
    pub write: WriteOutcome,
}

/// Intents one range resolved in one batch: key, owner, and how.
pub type ResolvedBatch = (RangeId, Vec<(Key, TxnId, Resolution)>);

/// An intent waiting for asynchronous resolution.
#[derive(Clone, Debug)]
pub(super) struct PendingResolution {
    pub key: Key,
    pub txn: TxnId,
    pub how: Resolution,
}

#[derive(Debug)]
pub struct Cluster {
    pub options: ClusterOptions,
    pub nodes: Vec<Node>,
    pub ranges: Vec<Range>,
    pub txns: BTreeMap<TxnId, TxnCoordinator>,
    true_time: u64,
    pub(super) resolution_queue: Vec<PendingResolution>,
    pub(super) waits: BTreeMap<TxnId, Wait>,
    woken: VecDeque<TxnId>,
    pub(super) cancelled: Vec<(TxnId, TxnError)>,
    events: Vec<Event>,
    pub(super) abort_reasons: BTreeMap<TxnId, String>,
}

/// True time when a cluster starts: 1 ms, so no real timestamp is zero.
const START_NANOS: u64 = 1_000_000;

impl Cluster {
    pub fn new(options: ClusterOptions) -> Self {
        let nodes = (1..=options.nodes.max(1))
            .map(|i| Node {
                id: NodeId(i),
                hlc: Hlc::new(ManualClock::new(START_NANOS), options.max_offset_nanos),
                skew_nanos: 0,
            })
            .collect::<Vec<_>>();
        let mut starts = vec![Key::default()];
        starts.extend(options.splits.iter().cloned());
        let ranges = (0..starts.len())
            .map(|i| {
                let end = starts.get(i + 1).cloned();
                let node = NodeId((i as u32 % nodes.len() as u32) + 1);
                Range::new(RangeId(i as u64 + 1), starts[i].clone(), end, node)
            })
            .collect();
        Cluster {
            options,
            nodes,
            ranges,
            txns: BTreeMap::new(),
            true_time: START_NANOS,
            resolution_queue: Vec::new(),
            waits: BTreeMap::new(),
            woken: VecDeque::new(),
            cancelled: Vec::new(),
            events: Vec::new(),
            abort_reasons: BTreeMap::new(),
        }
    }

    // ----- clocks and routing -------------------------------------------------------------

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0 as usize - 1]
    }

    pub(super) fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id.0 as usize - 1]
    }

    /// True (unskewed) time.
    pub fn true_time(&self) -> Timestamp {
        Timestamp::new(self.true_time, 0)
    }

    /// Moves true time forward; every node's physical clock follows with its skew.
    pub fn advance(&mut self, nanos: u64) {
        self.true_time += nanos;
        let t = self.true_time;
        for n in &mut self.nodes {
            n.hlc
                .physical_mut()
                .set(t.saturating_add_signed(n.skew_nanos));
        }
    }

    /// Sets a node's clock skew from true time (positive: the node's clock runs ahead).
    pub fn set_skew(&mut self, node: NodeId, skew_nanos: i64) {
        let t = self.true_time;
        let n = self.node_mut(node);
        n.skew_nanos = skew_nanos;
        n.hlc
            .physical_mut()
            .set(t.saturating_add_signed(skew_nanos));
    }

    /// The index of the range holding `key`.
    pub fn range_of(&self, key: &Key) -> usize {
        self.ranges
            .iter()
            .position(|r| r.contains(key))
            .expect("invariant: the ranges cover the whole key space")
    }

    pub(super) fn range_index(&self, id: RangeId) -> usize {
        id.0 as usize - 1
    }

    /// A request from `txn`'s gateway reaches the node leasing range `idx` and its answer
    /// comes back: both clocks observe each other, and the transaction records the node's
    /// clock as its observed timestamp the first time. Returns the node.
    pub fn contact(&mut self, txn: TxnId, idx: usize) -> Result<NodeId, TxnError> {
        let gateway = self.coord(txn).gateway;
        let node = self.ranges[idx].node;
        self.exchange(gateway, node)?;
        let reading = self.node(node).hlc.peek();
        self.coord_mut(txn).observed.entry(node).or_insert(reading);
        Ok(node)
    }

    /// A message from `from` to `to` and its answer: each clock observes the other's
    /// reading, and refuses one beyond the maximum offset.
    pub fn exchange(&mut self, from: NodeId, to: NodeId) -> Result<(), ClockOffsetError> {
        if from != to {
            let request = self.node(from).hlc.peek();
            self.node_mut(to).hlc.update(request)?;
            let response = self.node(to).hlc.peek();
            self.node_mut(from).hlc.update(response)?;
        }
        Ok(())
    }

    pub fn coord(&self, txn: TxnId) -> &TxnCoordinator {
        self.txns.get(&txn).expect("unknown transaction")
    }

    pub(super) fn coord_mut(&mut self, txn: TxnId) -> &mut TxnCoordinator {
        self.txns.get_mut(&txn).expect("unknown transaction")
    }

    /// The transaction's record, if written.
    pub fn record(&self, txn: TxnId) -> Option<&TxnRecord> {
        let c = self.txns.get(&txn)?;
        if !c.anchored {
            return None;
        }
        self.ranges[self.range_of(&c.meta.anchor)].records.get(&txn)
    }

    pub(super) fn emit(&mut self, e: Event) {
        self.events.push(e);
    }

    /// Events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The next parked transaction whose request may now proceed, first woken first.
    pub fn take_woken(&mut self) -> Option<TxnId> {
        self.woken.pop_front()
    }

    /// Parked requests that failed while parked (their transaction was aborted).
    pub fn take_cancelled(&mut self) -> Vec<(TxnId, TxnError)> {
        std::mem::take(&mut self.cancelled)
    }

    pub fn is_blocked(&self, txn: TxnId) -> bool {
        self.waits.contains_key(&txn)
    }

    pub(super) fn wake(&mut self, txn: TxnId) {
        if self.waits.contains_key(&txn) && !self.woken.contains(&txn) {
            self.woken.push_back(txn);
        }
    }

    // ----- transactions ---------------------------------------------------------------------

    /// Starts a transaction on `gateway`; returns its read timestamp.
    pub fn begin(
        &mut self,
        id: TxnId,
        gateway: NodeId,
        isolation: Isolation,
        priority: Priority,
    ) -> Timestamp {
        let max_offset = self.options.max_offset_nanos;
        let now = self.node_mut(gateway).hlc.now();
        self.txns.insert(
            id,
            TxnCoordinator::new(id, gateway, now, isolation, priority, max_offset),
        );
        now
    }

    /// The coordinator dies: it sends nothing more and stops heartbeating.
    pub fn crash(&mut self, txn: TxnId) {
        self.clear_wait(txn);
        self.coord_mut(txn).state = CoordState::Crashed;
    }

    /// Forgets that `txn` was parked (it runs again, or gives up).
    pub(super) fn clear_wait(&mut self, txn: TxnId) {
        if self.waits.remove(&txn).is_some() {
            for r in &mut self.ranges {
                r.locks.remove_waiter(txn);
                r.wait_queue.remove_pusher(txn);
            }
        }
        self.woken.retain(|t| *t != txn);
    }

    /// Every request starts here: the transaction must still be open, and it learns what
    /// its heartbeat would have told it (aborted by someone, timestamp pushed).
    pub(super) fn begin_request(&mut self, txn: TxnId) -> Result<(), TxnError> {
        self.clear_wait(txn);
        let c = self
            .txns
            .get(&txn)
            .ok_or(TxnError::NotRunning(txn, "never started"))?;
        match c.state {
            CoordState::Open => {}
            CoordState::Committed(_) => return Err(TxnError::NotRunning(txn, "committed")),
            CoordState::Aborted => return Err(TxnError::NotRunning(txn, "aborted")),
            CoordState::Crashed => return Err(TxnError::NotRunning(txn, "coordinator crashed")),
        }
        if let Some(rec) = self.record(txn).cloned() {
            if rec.status == TxnStatus::Aborted {
                let why = self
                    .abort_reasons
                    .get(&txn)
                    .cloned()
                    .unwrap_or_else(|| "aborted".into());
                self.coord_mut(txn).state = CoordState::Aborted;
                self.queue_own_resolution(txn, Resolution::Abort);
                return Err(TxnError::retry(RetryReason::Aborted, why));
            }
            self.coord_mut(txn).bump_write_ts(rec.meta.write_ts);
        }
        Ok(())
    }

    /// A READ COMMITTED transaction starts each statement with a fresh snapshot.
    fn start_statement(&mut self, txn: TxnId) {
        if self.coord(txn).isolation() == Isolation::ReadCommitted {
            let gw = self.coord(txn).gateway;
            let now = self.node_mut(gw).hlc.now();
            let max_offset = self.options.max_offset_nanos;
            self.coord_mut(txn).start_statement(now, max_offset);
        }
    }

    // ----- reads ----------------------------------------------------------------------------

    /// Reads `key`.
    pub fn get(&mut self, txn: TxnId, key: &Key) -> Result<Step<ReadValue>, TxnError> {
        self.begin_request(txn)?;
        self.start_statement(txn);
        self.read_key(txn, key)
    }

    pub(super) fn read_key(&mut self, txn: TxnId, key: &Key) -> Result<Step<ReadValue>, TxnError> {
        let idx = self.range_of(key);
        let node = self.contact(txn, idx)?;
        let span = Span::key(key);
        for _ in 0..MAX_ATTEMPTS {
            let c = self.coord(txn);
            let ctx = ReadContext {
                txn: Some(txn),
                read_ts: c.read_ts,
                uncertainty_limit: c.uncertainty_limit(node),
            };
            let range = &mut self.ranges[idx];
            let latch = range
                .latches
                .acquire(&[(span.clone(), LatchAccess::Read)])
                .expect("invariant: requests evaluate one at a time");
            let res = range.mvcc.get(key, &ctx);
            if res.is_ok() {
                range.ts_cache.add(span.clone(), ctx.read_ts, Some(txn));
            }
            range.latches.release(latch);
            match res {
                Ok(v) => {
                    self.coord_mut(txn).refresh_spans.add(span);
                    return Ok(Step::Done(v));
                }
                Err(ReadConflict::Intent { key, intent }) => {
                    let push = PushType::Timestamp(ts_next(ctx.uncertainty_limit.max(ctx.read_ts)));
                    if let Some(w) = self.handle_conflict(txn, idx, &key, &intent, push)? {
                        return Ok(Step::Blocked(w));
                    }
                }
                Err(ReadConflict::Uncertain { key, value_ts, .. }) => {
                    self.on_uncertain(txn, &key, value_ts, &ctx)?;
                }
            }
        }
        panic!("invariant: a read makes progress within {MAX_ATTEMPTS} attempts")
    }

    /// Scans `span` across every range it touches.
    pub fn scan(&mut self, txn: TxnId, span: &Span) -> Result<Step<Vec<ReadValue>>, TxnError> {
        self.begin_request(txn)?;
        self.start_statement(txn);
        'restart: for _ in 0..MAX_ATTEMPTS {
            let mut out = Vec::new();
            for idx in 0..self.ranges.len() {
                let Some(clipped) = self.ranges[idx].clip(span) else {
                    continue;
                };
                let node = self.contact(txn, idx)?;
                let c = self.coord(txn);
                let ctx = ReadContext {
                    txn: Some(txn),
                    read_ts: c.read_ts,
                    uncertainty_limit: c.uncertainty_limit(node),
                };
                let range = &mut self.ranges[idx];
                let latch = range
                    .latches
                    .acquire(&[(clipped.clone(), LatchAccess::Read)])
                    .expect("invariant: requests evaluate one at a time");
                let res = range.mvcc.scan(&clipped, &ctx);
                if res.is_ok() {
                    range.ts_cache.add(clipped.clone(), ctx.read_ts, Some(txn));
                }
                range.latches.release(latch);
                match res {
                    Ok(rows) => out.extend(rows),
                    Err(ReadConflict::Intent { key, intent }) => {
                        let push =
                            PushType::Timestamp(ts_next(ctx.uncertainty_limit.max(ctx.read_ts)));
                        if let Some(w) = self.handle_conflict(txn, idx, &key, &intent, push)? {
                            return Ok(Step::Blocked(w));
                        }
                        continue 'restart;
                    }
                    Err(ReadConflict::Uncertain { key, value_ts, .. }) => {
                        self.on_uncertain(txn, &key, value_ts, &ctx)?;
                        continue 'restart;
                    }
                }
            }
            self.coord_mut(txn).refresh_spans.add(span.clone());
            return Ok(Step::Done(out));
        }
        panic!("invariant: a scan makes progress within {MAX_ATTEMPTS} attempts")
    }

    /// A read met a value in its uncertainty interval: move the read timestamp above it —
    /// a new statement snapshot under READ COMMITTED, a refresh under SERIALIZABLE.
    fn on_uncertain(
        &mut self,
        txn: TxnId,
        key: &Key,
        value_ts: Timestamp,
        ctx: &ReadContext,
    ) -> Result<(), TxnError> {
        self.emit(Event::Uncertain {
            txn,
            key: key.clone(),
            value_ts,
            read_ts: ctx.read_ts,
            limit: ctx.uncertainty_limit,
        });
        let to = ts_next(value_ts);
        if self.coord(txn).isolation() == Isolation::ReadCommitted {
            let c = self.coord_mut(txn);
            c.read_ts = to;
            c.bump_write_ts(to);
            self.emit(Event::StatementRetried {
                txn,
                key: key.clone(),
                read_ts: to,
                why: "uncertain value",
            });
            return Ok(());
        }
        let from = self.coord(txn).read_ts;
        match self.refresh(txn, from, to) {
            Ok(()) => Ok(()),
            Err(detail) => {
                self.rollback_internal(txn);
                Err(TxnError::retry(
                    RetryReason::ReadWithinUncertainty,
                    format!("{key} @ {} is uncertain and {detail}", Ts(value_ts)),
                ))
            }
        }
    }

    /// Refreshes every span `txn` read from `from` to `to`. On success the read timestamp
    /// is `to` (and the write timestamp at least that); on failure, why.
    pub fn refresh(&mut self, txn: TxnId, from: Timestamp, to: Timestamp) -> Result<(), String> {
        let spans = self.coord(txn).refresh_spans.spans().to_vec();
        for span in &spans {
            for r in &self.ranges {
                let Some(clipped) = r.clip(span) else {
                    continue;
                };
                if let Err(c) = r.mvcc.check_refresh(&clipped, txn, from, to) {
                    let what = match c {
                        RefreshConflict::Committed { key, ts, value } => format!(
                            "{key} was written @ {} ({key}={})",
                            Ts(ts),
                            value
                                .map(|v| v.to_string())
                                .unwrap_or_else(|| "deleted".into())
                        ),
                        RefreshConflict::Intent { key, txn, ts } => {
                            format!("{txn} has an intent on {key} @ {}", Ts(ts))
                        }
                    };
                    return Err(format!(
                        "refreshing reads of {span} from {} to {} failed: {what}",
                        Ts(from),
                        Ts(to)
                    ));
                }
            }
        }
        for span in &spans {
            for r in &mut self.ranges {
                if let Some(clipped) = r.clip(span) {
                    r.ts_cache.add(clipped, to, Some(txn));
                }
            }
        }
        self.emit(Event::Refreshed {
            txn,
            from,
            to,
            spans: spans.len(),
        });
        let c = self.coord_mut(txn);
        c.read_ts = c.read_ts.max(to);
        c.bump_write_ts(to);
        Ok(())
    }

    // ----- writes ---------------------------------------------------------------------------

    /// Writes `key` (a deletion when `value` is `None`). With `in_flight`, the write is sent
    /// but not yet replicated: it lands on [`Cluster::deliver`].
    pub fn put(
        &mut self,
        txn: TxnId,
        key: &Key,
        value: Option<Value>,
        in_flight: bool,
    ) -> Result<Step<PutOutcome>, TxnError> {
        self.begin_request(txn)?;
        self.start_statement(txn);
        if in_flight {
            let c = self.coord_mut(txn);
            let meta = c.meta_for_write(key);
            c.delayed.push(DelayedWrite {
                key: key.clone(),
                value,
                meta,
            });
            return Ok(Step::Done(PutOutcome::InFlight));
        }
        Ok(match self.write_intent(txn, key, value)? {
            Step::Done(w) => Step::Done(PutOutcome::Written(w)),
            Step::Blocked(w) => Step::Blocked(w),
        })
    }

    /// Places `txn`'s intent on `key` (a pipelined write: one proposal, not waited for).
    pub(super) fn write_intent(
        &mut self,
        txn: TxnId,
        key: &Key,
        value: Option<Value>,
    ) -> Result<Step<WriteOutcome>, TxnError> {
        let idx = self.range_of(key);
        let node = self.contact(txn, idx)?;
        let span = Span::key(key);
        for _ in 0..MAX_ATTEMPTS {
            let meta = self.coord_mut(txn).meta_for_write(key);
            let anchor_idx = self.range_of(&meta.anchor);
            let now = self.node(node).hlc.peek();
            let range = &mut self.ranges[idx];
            let latch = range
                .latches
                .acquire(&[(span.clone(), LatchAccess::Write)])
                .expect("invariant: requests evaluate one at a time");
            let mut placed = meta.clone();
            let cache_push = range.ts_cache.push_for_write(&span, txn, meta.write_ts);
            let cache_read = range.ts_cache.get_max(&span).ts;
            if let Some(p) = cache_push {
                placed.write_ts = p;
            }
            let res = range.mvcc.put_intent(key, &placed, value.clone());
            if res.is_ok() {
                range.proposals += 1;
            }
            range.latches.release(latch);
            match res {
                Ok(out) => {
                    if let Some(p) = cache_push {
                        self.emit(Event::TsCachePush {
                            txn,
                            key: key.clone(),
                            read: cache_read,
                            from: meta.write_ts,
                            to: p,
                        });
                    }
                    if let Some(newer) = out.write_too_old {
                        self.emit(Event::WriteTooOld {
                            txn,
                            key: key.clone(),
                            newer,
                            to: out.ts,
                        });
                        self.coord_mut(txn).write_too_old = true;
                    }
                    // The first write also writes the PENDING record (same batch).
                    let records = &mut self.ranges[anchor_idx].records;
                    records
                        .entry(txn)
                        .or_insert_with(|| TxnRecord::pending(meta.clone(), now));
                    let c = self.coord_mut(txn);
                    c.bump_write_ts(out.ts);
                    c.intents.insert(key.clone(), out.ts);
                    return Ok(Step::Done(out));
                }
                Err(conflict) => {
                    if let Some(w) =
                        self.handle_conflict(txn, idx, key, &conflict.intent, PushType::Abort)?
                    {
                        return Ok(Step::Blocked(w));
                    }
                }
            }
        }
        panic!("invariant: a write makes progress within {MAX_ATTEMPTS} attempts")
    }

    /// `UPDATE key = key + delta`: a locking read and a write in one statement. Under READ
    /// COMMITTED, a row changed since the statement's snapshot is read again at a new one
    /// (as PostgreSQL re-evaluates an UPDATE on the newest row version).
    pub fn increment(
        &mut self,
        txn: TxnId,
        key: &Key,
        delta: i64,
    ) -> Result<Step<IncrementOutcome>, TxnError> {
        self.begin_request(txn)?;
        self.start_statement(txn);
        let idx = self.range_of(key);
        for _ in 0..MAX_ATTEMPTS {
            self.contact(txn, idx)?;
            // A locking read waits for any other writer's lock first.
            if let Some(intent) = self.ranges[idx].mvcc.intent(key).cloned() {
                if intent.txn.id != txn {
                    match self.handle_conflict(txn, idx, key, &intent, PushType::Abort)? {
                        Some(w) => return Ok(Step::Blocked(w)),
                        None => continue,
                    }
                }
            }
            let read = match self.read_key(txn, key)? {
                Step::Done(v) => v,
                Step::Blocked(w) => return Ok(Step::Blocked(w)),
            };
            let read_ts = self.coord(txn).read_ts;
            if self.coord(txn).isolation() == Isolation::ReadCommitted {
                if let Some((newest, _)) = self.ranges[idx].mvcc.newest_committed(key) {
                    if newest > read_ts && !read.own {
                        let gw = self.coord(txn).gateway;
                        let now = self.node_mut(gw).hlc.now().max(ts_next(newest));
                        let c = self.coord_mut(txn);
                        c.read_ts = now;
                        c.bump_write_ts(now);
                        self.emit(Event::StatementRetried {
                            txn,
                            key: key.clone(),
                            read_ts: now,
                            why: "row changed since the statement's snapshot",
                        });
                        continue;
                    }
                }
            }
            let old = read.value.as_ref().and_then(Value::as_int).unwrap_or(0);
            let new = old + delta;
            return Ok(
                match self.write_intent(txn, key, Some(Value::new(&new.to_string())))? {
                    Step::Done(write) => Step::Done(IncrementOutcome { old, new, write }),
                    Step::Blocked(w) => Step::Blocked(w),
                },
            );
        }
        panic!("invariant: an increment makes progress within {MAX_ATTEMPTS} attempts")
    }

    // ----- time -----------------------------------------------------------------------------

    /// Lets `nanos` of time pass, in heartbeat intervals: live coordinators heartbeat their
    /// records, then every parked push is looked at again (pushees may have expired).
    pub fn tick(&mut self, nanos: u64) {
        let mut left = nanos;
        while left > 0 {
            let d = left.min(self.options.heartbeat_interval_nanos);
            self.advance(d);
            left -= d;
            self.heartbeat_all();
        }
        self.repush_waiters();
    }

    fn heartbeat_all(&mut self) {
        let live: Vec<TxnId> = self
            .txns
            .values()
            .filter(|c| c.state == CoordState::Open && c.anchored)
            .map(|c| c.id())
            .collect();
        for txn in live {
            let anchor_idx = self.range_of(&self.coord(txn).meta.anchor);
            let (gateway, node) = (self.coord(txn).gateway, self.ranges[anchor_idx].node);
            if self.exchange(gateway, node).is_err() {
                continue;
            }
            let now = self.node(self.coord(txn).gateway).hlc.peek();
            if let Some(r) = self.ranges[anchor_idx].records.get_mut(&txn) {
                if !r.status.is_final() {
                    r.last_heartbeat = now;
                }
            }
        }
    }

    // ----- asynchronous intent resolution ---------------------------------------------------

    pub(super) fn queue_own_resolution(&mut self, txn: TxnId, how: Resolution) {
        let keys: Vec<Key> = self.coord(txn).intents.keys().cloned().collect();
        for key in keys {
            self.resolution_queue
                .push(PendingResolution { key, txn, how });
        }
    }

    /// Resolves `txn`'s intent on `key` now; a released lock wakes its waiters.
    pub(super) fn resolve_now(
        &mut self,
        idx: usize,
        key: &Key,
        txn: TxnId,
        how: Resolution,
    ) -> bool {
        let range = &mut self.ranges[idx];
        let resolved = range.mvcc.resolve_intent(key, txn, how);
        if resolved {
            range.proposals += 1;
        }
        if !matches!(how, Resolution::Push(_)) {
            for w in range.locks.release(key) {
                self.wake(w);
            }
        }
        resolved
    }

    /// Runs the queued intent resolutions, batched by range. Returns per range the keys
    /// resolved (already-resolved intents are skipped).
    pub fn resolve_intents(&mut self) -> Vec<ResolvedBatch> {
        let queue = std::mem::take(&mut self.resolution_queue);
        let mut by_range: BTreeMap<usize, Vec<PendingResolution>> = BTreeMap::new();
        for p in queue {
            by_range.entry(self.range_of(&p.key)).or_default().push(p);
        }
        let mut out = Vec::new();
        for (idx, batch) in by_range {
            let mut done = Vec::new();
            for p in batch {
                if self.resolve_now(idx, &p.key, p.txn, p.how) {
                    done.push((p.key, p.txn, p.how));
                }
            }
            if !done.is_empty() {
                out.push((self.ranges[idx].id, done));
            }
        }
        out
    }

    /// Every committed version in the cluster, for checkers.
    pub fn committed_versions(&self) -> Vec<(Key, Timestamp, Option<Value>)> {
        self.ranges
            .iter()
            .flat_map(|r| {
                r.mvcc
                    .committed_versions()
                    .map(|(k, ts, v)| (k.clone(), ts, v.cloned()))
            })
            .collect()
    }
}
