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
//! A failure before 3 lifts the fence and changes nothing visible. A failure of 3 itself
//! keeps the fence (the outcome may be ambiguous; the old copy must not be served again);
//! the next restart takes spans from whatever descriptors are durable.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chitin_storage::RangeId;

use super::keys::{self, SYSTEM_RANGE};
use super::range_stats::SplitReason;
use super::ranges::RangeDesc;
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
async fn claim_range_id(ctx: &CoreCtx, table: u32, ranges: &[RangeDesc]) -> Result<RangeId> {
    let mut n = ranges.iter().map(|d| d.id.0 & 0xffff).max().unwrap_or(0) + 1;
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
/// Returns the new range, or `None` when a range already starts there.
pub async fn split_at(ctx: &CoreCtx, key: &[u8]) -> Result<Option<RangeId>> {
    let table = match keys::range_table(keys::range_for_key(key)) {
        Some(t) => t,
        None => return Err(Error::internal("split key outside table data")),
    };
    let _guard = acquire(ctx).await?;
    ctx.refresh_ranges().await?;
    let ranges = ctx.ranges.borrow().table_ranges(table);
    let old = ranges
        .iter()
        .find(|d| d.contains(key))
        .cloned()
        .ok_or_else(|| Error::internal("no range holds the split key"))?;
    if old.start == key {
        return Ok(None);
    }
    let new_id = claim_range_id(ctx, table, &ranges).await?;

    // 1. Fence.
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
        let _ = ctx.send(KvRequest::SplitAbort { range: old.id }).await;
        return Err(Error::retry("split: range descriptor changed; retry"));
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
        let _ = ctx.send(KvRequest::SplitAbort { range: old.id }).await;
        return Err(e);
    }
    // 3. Publish.
    let left = RangeDesc {
        id: old.id,
        start: old.start.clone(),
        end: key.to_vec(),
    };
    let right = RangeDesc {
        id: new_id,
        start: key.to_vec(),
        end: old.end.clone(),
    };
    ctx.send(KvRequest::OnePhase {
        range: SYSTEM_RANGE,
        txn: ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed),
        read_ts: ctx.shared.hlc.now(),
        writes: vec![
            KvWrite::Put {
                key: keys::range_desc_key(&left.start),
                value: left.encode(),
            },
            KvWrite::Put {
                key: keys::range_desc_key(&right.start),
                value: right.encode(),
            },
        ],
        reads: Default::default(),
    })
    .await?;
    ctx.shared.range_gen.fetch_add(1, Ordering::SeqCst);
    // 4. Finish.
    ctx.send(KvRequest::SplitFinish {
        range: old.id,
        key: key.to_vec(),
    })
    .await?;
    ctx.refresh_ranges().await?;
    Ok(Some(new_id))
}

/// One round of this core's split queue (once a second, from `node::cluster::follow`):
/// closes each led range's load window, measures ranges whose size is unknown, and splits
/// the first range that is too big (at the middle of its bytes) or too busy (at the median
/// of its recent request keys) — one split per round, so a burst of growth turns into a
/// steady trickle of splits. See [`super::range_stats`].
pub async fn split_queue(ctx: &CoreCtx) {
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
        match split_at(ctx, &key).await {
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
}
