//! Splitting a range in two: the upper part moves to a new range on the next core.
//!
//! Run by the gateway that received `ALTER TABLE … SPLIT AT`, one split at a time per
//! node:
//!
//! 1. **Fence** the old range at the split key: requests touching `[key, end)` wait, and
//!    the fence waits for the prepared writes already there. The range returns every
//!    version of the span, its read high-water mark and its recent writes.
//! 2. **Ingest** on the new range's core: the versions are replicated through the new
//!    range's raft log, the high-water mark and the
//!    recent writes carried over, so no write lands under a read the old range served and
//!    write-write conflicts are still seen.
//! 3. **Publish** both descriptors in the system range in one raft entry: from here the new
//!    range owns the span, across crashes too. Bump the node's range generation.
//! 4. **Finish** on the old range: a raft command ends its span at the key (the moved data
//!    stays behind, invisible; see the essay in `kv`); the fence lifts and waiting requests get `RangeKeyMismatch`, so their
//!    gateways reload the descriptors and go to the new range.
//!
//! The fence is a raft command (`CommandKind::Fence`): every replica, a later leader and
//! the node after a restart hold it, so the old range never serves the moving span again
//! once the new one may own it. Steps 3 and 4, and the undo, are sent again through leader
//! changes for a while (`settle`). A failure before 3, or of 3 that surely did not apply,
//! lifts the fence and changes nothing visible. An ambiguous failure of 3 keeps the fence;
//! so does a gateway that dies: a running split touches its fence every second
//! ([`FenceKeeper`]), and after [`FENCE_ABANDONED`] untouched the range's leader resolves the
//! fence from the durable descriptor ([`resolve_fence`]). The publish is guarded (it fails
//! if the old range's descriptor was written since the fence), so a resolver that undid
//! the split and a late publish never both win.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chitin_storage::RangeId;

use super::keys::{self, SYSTEM_RANGE};
use super::range_stats::SplitReason;
use super::ranges::{RangeChange, RangeDesc};
use super::{KvRequest, KvResponse, KvWrite};
use crate::error::{Error, ErrorKind, Result};
use crate::node::CoreCtx;

/// How long a split waits for another split on the node to finish.
const SPLIT_WAIT: Duration = Duration::from_secs(60);

/// Held while a split runs; releases the node's split flag when dropped.
struct SplitGuard<'a>(&'a CoreCtx);

impl Drop for SplitGuard<'_> {
    fn drop(&mut self) {
        self.0.shared.splitting.store(false, Ordering::SeqCst);
    }
}

async fn acquire(ctx: &CoreCtx) -> Result<SplitGuard<'_>> {
    let started = Instant::now();
    while ctx
        .shared
        .splitting
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        if started.elapsed() > SPLIT_WAIT {
            return Err(Error::retry("timed out waiting for another split"));
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    Ok(SplitGuard(ctx))
}

/// Claims an id for a new range of `table`: the next after those `ranges` use, unless
/// another node's split took it first. The claim is an insert of `meta rangeid/<id>` in
/// the system range (a compare-and-set): two gateways splitting ranges of one table at
/// once never both fill the same new range.
async fn claim_range_id(ctx: &CoreCtx, table: u32) -> Result<RangeId> {
    let mut n = ctx.ranges.borrow().max_split_seq(table) + 1;
    loop {
        if n > 0xffff {
            return Err(Error::new(
                ErrorKind::ProgramLimitExceeded,
                format!("table {table} has too many ranges"),
            ));
        }
        let id = keys::split_range_id(table, n as u16);
        let mut key = keys::meta_key("rangeid/");
        key.extend_from_slice(&id.0.to_be_bytes());
        let write = KvWrite::Insert {
            key,
            value: Vec::new(),
        };
        match crate::node::txn_record::write_record(ctx, ctx.shared.hlc.now(), write).await {
            Ok(_) => return Ok(id),
            Err(e) if e.kind == ErrorKind::UniqueViolation => n += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Splits the range holding `key` (a table data key) so that a new range starts at `key`.
/// Returns the new range, or `None` when a range already starts there. `sticky`: a split
/// by hand, which the merge queue leaves alone.
pub async fn split_at(ctx: &CoreCtx, key: &[u8], sticky: bool) -> Result<Option<RangeId>> {
    let table = match keys::range_table(keys::range_for_key(key)) {
        Some(t) => t,
        None => return Err(Error::internal("split key outside table data")),
    };
    let _guard = acquire(ctx).await?;
    // The cache knows every split and merge of this node; one by another node shows as a
    // changed span at the fence: reload everything then, and try again.
    ctx.fresh_ranges().await?;
    let mut attempts = 0;
    loop {
        match split_once(ctx, table, key, sticky).await {
            Err(e) if is_stale(&e) && attempts < 2 => {
                attempts += 1;
                ctx.refresh_ranges().await?;
            }
            r => return r,
        }
    }
}

/// The cached descriptor a split or merge started from was out of date.
fn is_stale(e: &Error) -> bool {
    e.kind == ErrorKind::RangeKeyMismatch || e.message.contains(DESC_CHANGED)
}

const DESC_CHANGED: &str = "range descriptor changed";

async fn split_once(
    ctx: &CoreCtx,
    table: u32,
    key: &[u8],
    sticky: bool,
) -> Result<Option<RangeId>> {
    let old = ctx.ranges.borrow().desc_of(key);
    if old.start == key {
        if sticky && !old.sticky && ctx.ranges.borrow().starting_at(key).is_some() {
            // A boundary the split queue made becomes one made by hand: the merge queue
            // must leave it alone from now on.
            let desc = RangeDesc { sticky, ..old };
            publish(ctx, vec![desc], Vec::new(), None).await?;
        }
        return Ok(None);
    }
    let new_id = claim_range_id(ctx, table).await?;
    let _keeper = FenceKeeper::start(ctx, vec![old.id]);

    // 1. Fence. The descriptors are published only if the old one is unchanged since
    //    (a fence left too long is resolved by the range's leader: `resolve_fence`).
    let fenced_at = ctx.shared.hlc.now();
    let (versions, max_read_ts, last_writes, end) = match ctx
        .send(KvRequest::SplitFence {
            range: old.id,
            key: key.to_vec(),
        })
        .await?
    {
        KvResponse::SplitFenced {
            versions,
            max_read_ts,
            last_writes,
            end,
        } => (versions, max_read_ts, last_writes, end),
        other => return Err(Error::internal(format!("unexpected response {other:?}"))),
    };
    if end != old.end {
        unfence(ctx, old.id).await;
        return Err(Error::retry(format!("split: {DESC_CHANGED}; retry")));
    }
    if split_stops_after("fence") {
        return Err(stopped("fence"));
    }
    if let Some(pause) = split_pause() {
        // A slow but live gateway (a big range's copy): its keeper keeps the fence.
        glommio::timer::sleep(pause).await;
    }
    // 2. Ingest.
    let ingested = ctx
        .send(KvRequest::Ingest {
            range: new_id,
            start: key.to_vec(),
            end: old.end.clone(),
            versions,
            max_read_ts,
            last_writes,
        })
        .await;
    if let Err(e) = ingested {
        unfence(ctx, old.id).await;
        return Err(e);
    }
    // 3. Publish.
    let left = RangeDesc {
        id: old.id,
        start: old.start.clone(),
        end: key.to_vec(),
        sticky: old.sticky,
    };
    let right = RangeDesc {
        id: new_id,
        start: key.to_vec(),
        end: old.end.clone(),
        sticky,
    };
    let guard = Guard {
        keys: vec![keys::range_desc_key(&old.start)],
        since: fenced_at,
    };
    if let Err((e, ambiguous)) =
        publish_settled(ctx, vec![left, right], Vec::new(), Some(&guard)).await
    {
        if !ambiguous {
            // Not published: nothing changed, the old range serves its span again.
            unfence(ctx, old.id).await;
        }
        return Err(e);
    }
    if split_stops_after("publish") {
        return Err(stopped("publish"));
    }
    // 4. Finish.
    settle(ctx, || KvRequest::SplitFinish {
        range: old.id,
        key: key.to_vec(),
    })
    .await?;
    ctx.fresh_ranges().await?;
    Ok(Some(new_id))
}

/// How long the steps after a fence (publish, finish, undo) keep trying through leader
/// changes and unreachable nodes before giving up.
const SETTLE_BUDGET: Duration = Duration::from_secs(10);

/// Whether a step that failed with `e` may be sent again: a retryable error (it did not
/// happen) or an ambiguous one (the steps after a fence are idempotent, so sending one
/// twice does no harm).
fn may_resend(e: &Error) -> bool {
    e.is_retryable() || e.kind == ErrorKind::AmbiguousResult
}

/// Sends the request `make` builds until it succeeds, resending it after errors
/// [`may_resend`] allows, with a growing pause, for up to [`SETTLE_BUDGET`]: a split or
/// merge that fenced a range must publish and finish, or undo, and not leave the fence
/// behind because a leader moved at the wrong moment.
async fn settle(ctx: &CoreCtx, make: impl Fn() -> KvRequest) -> Result<KvResponse> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        match ctx.send(make()).await {
            Err(e) if may_resend(&e) && started.elapsed() < SETTLE_BUDGET => {
                glommio::timer::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            r => return r,
        }
    }
}

/// Lifts the fence of `range` (a split or merge that fenced it gives up), trying through
/// leader changes; a fence that still cannot be lifted goes with the next leader change.
async fn unfence(ctx: &CoreCtx, range: RangeId) {
    if let Err(e) = settle(ctx, || KvRequest::SplitAbort { range }).await {
        eprintln!(
            "core {}: could not lift the fence of {range}: {}",
            ctx.core, e.message
        );
    }
}

/// [`publish`], sent again after errors [`may_resend`] allows (writing the same
/// descriptors twice is harmless) for up to [`SETTLE_BUDGET`]. On failure, also says
/// whether some attempt may have been applied (`true`: the fences must stay).
async fn publish_settled(
    ctx: &CoreCtx,
    puts: Vec<RangeDesc>,
    deletes: Vec<Vec<u8>>,
    guard: Option<&Guard>,
) -> std::result::Result<(), (Error, bool)> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    let mut ambiguous = false;
    loop {
        match publish(ctx, puts.clone(), deletes.clone(), guard).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                ambiguous |= !e.is_retryable();
                if !may_resend(&e) || started.elapsed() >= SETTLE_BUDGET {
                    return Err((e, ambiguous));
                }
                glommio::timer::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// Descriptor keys a split or merge read (as of `since`, when it fenced its ranges): its
/// publish fails if any of them was written since — by `resolve_fence`, which gave the
/// split up for abandoned.
struct Guard {
    keys: Vec<Vec<u8>>,
    since: chitin_storage::Timestamp,
}

/// Writes `puts` and deletes the descriptors starting at `deletes` in the system range, in
/// one raft entry (only if the `guard` keys are unchanged), then tells the node's cores.
async fn publish(
    ctx: &CoreCtx,
    puts: Vec<RangeDesc>,
    deletes: Vec<Vec<u8>>,
    guard: Option<&Guard>,
) -> Result<()> {
    let mut writes: Vec<KvWrite> = puts
        .iter()
        .map(|d| KvWrite::Put {
            key: keys::range_desc_key(&d.start),
            value: d.encode(),
        })
        .collect();
    writes.extend(deletes.iter().map(|start| KvWrite::Delete {
        key: keys::range_desc_key(start),
    }));
    let (read_ts, reads) = match guard {
        Some(g) => (
            g.since,
            crate::txn::ReadSet {
                keys: g.keys.clone(),
                spans: Vec::new(),
            },
        ),
        None => (ctx.shared.hlc.now(), Default::default()),
    };
    ctx.send(KvRequest::OnePhase {
        range: SYSTEM_RANGE,
        txn: ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed),
        read_ts,
        writes,
        reads,
    })
    .await?;
    ctx.shared
        .publish_range_change(RangeChange { puts, deletes });
    Ok(())
}

/// Merges the range `left` with its right-hand neighbour (both of one table): `left`
/// takes over the neighbour's span and data, the neighbour's descriptor goes. Returns the
/// range merged away, or `None` when `left` has no mergeable neighbour (the last range of
/// its table, or a boundary made by hand).
///
/// 1. **Reserve** `left` (`MergeFence` at its end): it serves its own keys as before but
///    refuses splits, and will hold requests for the keys it takes over until step 5.
/// 2. **Fence** the right-hand range whole (`MergeFence` at its start) and collect its
///    data, as a split's first step does.
/// 3. **Ingest** the data into `left` through its raft log; the last entry extends its
///    span (earlier ones write keys it does not serve yet).
/// 4. **Publish**: `left`'s descriptor with the new end, the neighbour's deleted, in one
///    raft entry of the system range.
/// 5. **Finish**: the neighbour's span shrinks to nothing (its waiting requests get
///    `RangeKeyMismatch` and go to `left`), then `left`'s reservation lifts.
///
/// A failure before 4 undoes what was done (`left` shrinks back if its span grew) and
/// lifts both fences; a failure of 4 keeps them (the outcome may be ambiguous; restart
/// takes spans from whatever descriptors are durable).
pub async fn merge(ctx: &CoreCtx, left: RangeId) -> Result<Option<RangeId>> {
    let table =
        keys::range_table(left).ok_or_else(|| Error::internal("merge of a system range"))?;
    let _guard = acquire(ctx).await?;
    ctx.fresh_ranges().await?;
    let (l, r) = {
        let cache = ctx.ranges.borrow();
        let Some(l) = cache.table_range(table, left) else {
            return Ok(None);
        };
        // The next table's first range starts where this table's last one ends.
        let Some(r) = cache
            .starting_at(&l.end)
            .filter(|d| keys::range_table(d.id) == Some(table))
            .cloned()
        else {
            return Ok(None);
        };
        (l, r)
    };
    if r.sticky {
        return Ok(None);
    }
    let fenced = |resp| match resp {
        KvResponse::SplitFenced {
            versions,
            max_read_ts,
            last_writes,
            end,
        } => Ok((versions, max_read_ts, last_writes, end)),
        other => Err(Error::internal(format!("unexpected response {other:?}"))),
    };
    let _keeper = FenceKeeper::start(ctx, vec![l.id, r.id]);
    // 1. Reserve the left-hand range.
    let fenced_at = ctx.shared.hlc.now();
    let (_, _, _, l_end) = fenced(
        ctx.send(KvRequest::MergeFence {
            range: l.id,
            key: l.end.clone(),
        })
        .await?,
    )?;
    let abort_left = || unfence(ctx, l.id);
    if l_end != l.end {
        abort_left().await;
        return Err(Error::retry(format!("merge: {DESC_CHANGED}; retry")));
    }
    // 2. Fence the right-hand range.
    let right = match ctx
        .send(KvRequest::MergeFence {
            range: r.id,
            key: r.start.clone(),
        })
        .await
        .and_then(fenced)
    {
        Ok(x) => x,
        Err(e) => {
            abort_left().await;
            return Err(e);
        }
    };
    let (versions, max_read_ts, last_writes, r_end) = right;
    let abort_both = || async {
        unfence(ctx, r.id).await;
        abort_left().await;
    };
    if r_end != r.end {
        abort_both().await;
        return Err(Error::retry(format!("merge: {DESC_CHANGED}; retry")));
    }
    // 3. Ingest into the left-hand range.
    let ingested = ctx
        .send(KvRequest::Ingest {
            range: l.id,
            start: l.start.clone(),
            end: r.end.clone(),
            versions,
            max_read_ts,
            last_writes,
        })
        .await;
    // The ingest's last entry may have extended the left range: give the span back before
    // lifting both fences. If even that fails the fences stay (nothing is served twice).
    let undo = || async {
        if settle(ctx, || KvRequest::SplitFinish {
            range: l.id,
            key: l.end.clone(),
        })
        .await
        .is_ok()
        {
            abort_both().await;
        }
    };
    if let Err(e) = ingested {
        undo().await;
        return Err(e);
    }
    // 4. Publish.
    let merged = RangeDesc {
        id: l.id,
        start: l.start.clone(),
        end: r.end.clone(),
        sticky: l.sticky,
    };
    let guard = Guard {
        keys: vec![
            keys::range_desc_key(&l.start),
            keys::range_desc_key(&r.start),
        ],
        since: fenced_at,
    };
    if let Err((e, ambiguous)) =
        publish_settled(ctx, vec![merged], vec![r.start.clone()], Some(&guard)).await
    {
        if !ambiguous {
            // Not published: undo.
            undo().await;
        }
        return Err(e);
    }
    // 5. Finish: the right-hand range serves nothing from here; the left one everything.
    settle(ctx, || KvRequest::SplitFinish {
        range: r.id,
        key: r.start.clone(),
    })
    .await?;
    settle(ctx, || KvRequest::SplitAbort { range: l.id }).await?;
    ctx.fresh_ranges().await?;
    Ok(Some(r.id))
}

/// How long a fence may stand untouched before its range's leader resolves it: a gateway
/// touches its fences every [`FENCE_TOUCH_EVERY`] while its split or merge runs
/// ([`FenceKeeper`]), however long the copy takes, so a fence untouched this long was left
/// by one that died (or gave up without reaching the range). Tests shorten it with
/// `CHITIN_TESTING_FENCE_ABANDONED_MS`.
pub const FENCE_ABANDONED: Duration = Duration::from_secs(10);

/// How often a running split or merge touches the fences it set.
pub const FENCE_TOUCH_EVERY: Duration = Duration::from_secs(1);

/// Touches the fences of `ranges` ([`KvRequest::FenceTouch`]) every
/// [`FENCE_TOUCH_EVERY`] until dropped: held by a split or merge from before it fences
/// until it returns, so the ranges' leaders know it is alive.
struct FenceKeeper(std::rc::Rc<std::cell::Cell<bool>>);

impl FenceKeeper {
    fn start(ctx: &CoreCtx, ranges: Vec<RangeId>) -> FenceKeeper {
        let stop = std::rc::Rc::new(std::cell::Cell::new(false));
        let done = stop.clone();
        let ctx = ctx.rc();
        glommio::spawn_local(async move {
            // (More often when a test shortened the abandonment time.)
            let every = FENCE_TOUCH_EVERY.min(fence_abandoned() / 4);
            loop {
                glommio::timer::sleep(every).await;
                if done.get() {
                    return;
                }
                for &range in &ranges {
                    let _ = ctx.send(KvRequest::FenceTouch { range }).await;
                }
            }
        })
        .detach();
        FenceKeeper(stop)
    }
}

impl Drop for FenceKeeper {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

fn fence_abandoned() -> Duration {
    static AFTER: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *AFTER.get_or_init(|| {
        std::env::var("CHITIN_TESTING_FENCE_ABANDONED_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(FENCE_ABANDONED)
    })
}

/// Testing knob: `CHITIN_TESTING_SPLIT_STOP=fence|publish` makes every split stop right
/// after that step, as if its gateway died there (the fence stays behind).
fn split_stops_after(step: &str) -> bool {
    static STOP: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    STOP.get_or_init(|| std::env::var("CHITIN_TESTING_SPLIT_STOP").ok())
        .as_deref()
        == Some(step)
}

/// Testing knob: `CHITIN_TESTING_SPLIT_PAUSE_MS=n` makes every split wait that long after
/// its fence step, alive.
fn split_pause() -> Option<Duration> {
    static PAUSE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *PAUSE.get_or_init(|| {
        std::env::var("CHITIN_TESTING_SPLIT_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
    })
}

fn stopped(step: &str) -> Error {
    Error::internal(format!("testing: the split stopped after its {step} step"))
}

/// Resolves one fence on this core older than [`FENCE_ABANDONED`]: from the durable
/// descriptor, the split or merge either published (then this finishes its step on the
/// range) or not (then this rewrites the descriptor, so that a late publish of the
/// gateway fails its guard, and lifts the fence, shrinking a merge's left-hand range
/// back first).
async fn resolve_abandoned_fences(ctx: &CoreCtx) {
    let Some(r) = ctx
        .store
        .fenced_leaders(fence_abandoned())
        .into_iter()
        .next()
    else {
        return;
    };
    match resolve_fence(ctx, &r).await {
        Ok(what) => eprintln!("core {}: abandoned fence of {}: {what}", ctx.core, r.id),
        Err(e) => eprintln!(
            "core {}: abandoned fence of {} not resolved yet: {}",
            ctx.core, r.id, e.message
        ),
    }
}

async fn resolve_fence(ctx: &CoreCtx, r: &super::replica::Replica) -> Result<&'static str> {
    use super::replica::FenceKind;
    let _guard = acquire(ctx).await?;
    let Some(key) = r.fence.borrow().clone() else {
        return Ok("already lifted");
    };
    let kind = r.fence_kind.get();
    let span = r.span.borrow().clone();
    let desc_key = keys::range_desc_key(&span.0);
    let read_ts = ctx.shared.hlc.now();
    let desc = match ctx
        .send(KvRequest::Get {
            range: SYSTEM_RANGE,
            key: desc_key.clone(),
            ts: read_ts,
            unc: chitin_storage::Timestamp::MIN,
        })
        .await?
    {
        KvResponse::Value(v) => v.map(|b| RangeDesc::decode(&b)).transpose()?,
        other => return Err(Error::internal(format!("unexpected response {other:?}"))),
    };
    let published = match kind {
        FenceKind::Split => desc.as_ref().is_some_and(|d| d.end == key),
        FenceKind::MergeLeft => desc.as_ref().is_some_and(|d| d.end > key),
        FenceKind::MergeRight => desc.is_none(),
    };
    let range = r.id;
    if published {
        match kind {
            FenceKind::Split => {
                settle(ctx, || KvRequest::SplitFinish {
                    range,
                    key: key.clone(),
                })
                .await?;
            }
            FenceKind::MergeRight => {
                settle(ctx, || KvRequest::SplitFinish {
                    range,
                    key: span.0.clone(),
                })
                .await?;
            }
            FenceKind::MergeLeft => {
                settle(ctx, || KvRequest::SplitAbort { range }).await?;
            }
        }
        return Ok("published: finished");
    }
    // Not published: make sure it never will be (the gateway's publish is guarded by
    // this key), then undo.
    let write = match &desc {
        Some(d) => KvWrite::Put {
            key: desc_key.clone(),
            value: d.encode(),
        },
        None => KvWrite::Delete {
            key: desc_key.clone(),
        },
    };
    ctx.send(KvRequest::OnePhase {
        range: SYSTEM_RANGE,
        txn: ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed),
        read_ts,
        writes: vec![write],
        reads: crate::txn::ReadSet {
            keys: vec![desc_key],
            spans: Vec::new(),
        },
    })
    .await?;
    if kind == FenceKind::MergeLeft && span.1 > key {
        settle(ctx, || KvRequest::SplitFinish {
            range,
            key: key.clone(),
        })
        .await?;
    }
    settle(ctx, || KvRequest::SplitAbort { range }).await?;
    Ok("not published: undone")
}

/// One round of this core's split queue (once a second, from `node::cluster::follow`):
/// closes each led range's load window, measures ranges whose size is unknown, and splits
/// the first range that is too big (at the middle of its bytes) or too busy (at the median
/// of its recent request keys) — one split per round, so a burst of growth turns into a
/// steady trickle of splits. See [`super::range_stats`]. With nothing to split, it looks
/// for one merge ([`merge_queue`]).
pub async fn split_queue(ctx: &CoreCtx) {
    resolve_abandoned_fences(ctx).await;
    let policy = crate::node::settings::split_policy(&ctx.shared);
    let now = Instant::now();
    for r in ctx.store.split_candidates() {
        if r.stats.roll(now) {
            let hot = policy.load_qps.is_some_and(|t| r.stats.qps.get() > t);
            r.stats.hot_windows.set(if hot {
                r.stats.hot_windows.get() + 1
            } else {
                0
            });
        }
    }
    for r in ctx.store.split_candidates() {
        let (start, end) = r.span.borrow().clone();
        if start >= end {
            continue;
        }
        let mut measured = None;
        if r.stats.bytes.get().is_none() {
            match ctx.store.span_size(&start, &end).await {
                Ok(size) => {
                    r.stats.bytes.set(Some(size.bytes));
                    measured = Some(size);
                }
                Err(_) => continue,
            }
        }
        let Some(reason) = super::range_stats::should_split(&r.stats, &policy) else {
            continue;
        };
        let key = match reason {
            SplitReason::Size { .. } => {
                let size = match measured {
                    Some(s) => s,
                    // The running count only grows: measure again before splitting.
                    None => match ctx.store.span_size(&start, &end).await {
                        Ok(s) => {
                            r.stats.bytes.set(Some(s.bytes));
                            if s.bytes <= policy.max_bytes {
                                continue;
                            }
                            s
                        }
                        Err(_) => continue,
                    },
                };
                size.middle
            }
            SplitReason::Load { .. } => r.stats.load_split_key(&start, &end),
        };
        let Some(key) = key else {
            // One key holds it all: nothing to split at.
            r.stats.hot_windows.set(0);
            continue;
        };
        r.stats.hot_windows.set(0);
        match split_at(ctx, &key, false).await {
            Ok(Some(new)) => {
                let m = ctx.metrics();
                match reason {
                    SplitReason::Size { .. } => m.range_splits_size.fetch_add(1, Ordering::Relaxed),
                    SplitReason::Load { .. } => m.range_splits_load.fetch_add(1, Ordering::Relaxed),
                };
                eprintln!(
                    "core {}: split {} at {} into {new}: {reason}",
                    ctx.core,
                    r.id,
                    keys::pretty_key_suffix(&key)
                );
            }
            Ok(None) => {}
            Err(e) => eprintln!("core {}: split of {} failed: {}", ctx.core, r.id, e.message),
        }
        return;
    }
    if policy.merge {
        merge_queue(ctx, &policy).await;
    }
}

/// Ranges younger than this (since their span last changed) are not merged.
pub const MERGE_MIN_AGE: Duration = Duration::from_secs(5);

/// The merge half of the queue: the first range led here whose right-hand neighbour is
/// not a boundary made by hand and which, together with it, is small (at most half of
/// `kv.range.max_bytes`) and cold (under half the load-split threshold) merges with it.
/// Both must have kept their spans for [`MERGE_MIN_AGE`], so a split is not undone before
/// its halves showed their size and load.
async fn merge_queue(ctx: &CoreCtx, policy: &super::range_stats::SplitPolicy) {
    if ctx.fresh_ranges().await.is_err() {
        return;
    }
    for l in ctx.store.split_candidates() {
        let (Some(l_bytes), true) = (l.stats.bytes.get(), l.stats.span_age() >= MERGE_MIN_AGE)
        else {
            continue;
        };
        // Ask about the neighbour only when this range alone could still qualify.
        if l_bytes > policy.max_bytes / 2
            || policy
                .load_qps
                .is_some_and(|t| l.stats.qps.get() >= t / 2.0)
        {
            continue;
        }
        let end = l.span.borrow().1.clone();
        let Some(table) = keys::range_table(l.id) else {
            continue;
        };
        let Some(r) = ctx
            .ranges
            .borrow()
            .starting_at(&end)
            .filter(|d| !d.sticky && keys::range_table(d.id) == Some(table))
            .cloned()
        else {
            continue;
        };
        let Ok(info) = ctx.replicas_of(r.id).await else {
            continue;
        };
        let (Some(r_bytes), Some(r_qps), Some(r_age)) = (info.bytes, info.qps, info.age) else {
            continue;
        };
        let small = l_bytes + r_bytes <= policy.max_bytes / 2;
        let cold = policy
            .load_qps
            .is_none_or(|t| l.stats.qps.get() + r_qps < t / 2.0);
        if !small || !cold || r_age < MERGE_MIN_AGE {
            continue;
        }
        match merge(ctx, l.id).await {
            Ok(Some(gone)) => {
                ctx.metrics().range_merges.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "core {}: merged {gone} into {} ({} + {} bytes)",
                    ctx.core, l.id, l_bytes, r_bytes
                );
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("core {}: merge of {} failed: {}", ctx.core, l.id, e.message);
                if is_stale(&e) {
                    // Another node split or merged here: take its descriptors.
                    let _ = ctx.refresh_ranges().await;
                }
            }
        }
        return;
    }
}
