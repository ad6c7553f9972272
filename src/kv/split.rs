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
    let n = ranges.iter().map(|d| d.id.0 & 0xffff).max().unwrap_or(0) + 1;
    if n > 0xffff {
        return Err(Error::new(
            ErrorKind::ProgramLimitExceeded,
            format!("table {table} has too many ranges"),
        ));
    }
    let new_id = keys::split_range_id(table, n as u16);

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
