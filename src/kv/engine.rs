//! The engine a core's store runs on: the LSM engine (durable, the default) or the
//! in-memory engine (`--engine mem`: nothing on disk but the raft log, which recovery
//! replays in full).

use chitin_storage::{
    Engine, KeyValue, LsmEngine, LsmOptions, MemEngine, RangeId, Result, ScanOptions, Timestamp,
    WriteBatch,
};

/// Which engine to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Lsm,
    Mem,
}

pub enum StoreEngine {
    Lsm(LsmEngine),
    Mem(MemEngine),
}

impl StoreEngine {
    pub async fn open(kind: EngineKind, dir: &std::path::Path, cache_bytes: usize) -> Result<Self> {
        Ok(match kind {
            EngineKind::Mem => StoreEngine::Mem(MemEngine::new()),
            EngineKind::Lsm => {
                let opts = LsmOptions {
                    block_cache_bytes: cache_bytes.max(1 << 20),
                    ..Default::default()
                };
                StoreEngine::Lsm(LsmEngine::open(dir, opts).await?)
            }
        })
    }

    /// Every version (tombstones included) of the keys in `[start, end)`: what a split
    /// copies to the range that takes over the span.
    pub async fn scan_versions(
        &self,
        start: &[u8],
        end: &[u8],
    ) -> Result<Vec<chitin_storage::VersionedKeyValue>> {
        match self {
            StoreEngine::Lsm(e) => {
                e.scan_versions(start, end, Timestamp::MIN, Timestamp::MAX)
                    .await
            }
            StoreEngine::Mem(e) => Ok(e.scan_versions(start, end)),
        }
    }

    /// [`Self::scan_versions`] a page of about `max_bytes` at a time (a key's versions
    /// are never split), and where the next page starts (None: the span is done).
    pub async fn scan_versions_page(
        &self,
        start: &[u8],
        end: &[u8],
        max_bytes: usize,
    ) -> Result<(Vec<chitin_storage::VersionedKeyValue>, Option<Vec<u8>>)> {
        match self {
            StoreEngine::Lsm(e) => {
                e.scan_versions_page(start, end, Timestamp::MIN, Timestamp::MAX, max_bytes)
                    .await
            }
            StoreEngine::Mem(e) => Ok(e.scan_versions_page(start, end, max_bytes)),
        }
    }

    /// The size of the versions in `[start, end)` and its middle key (streamed).
    pub async fn span_size(&self, start: &[u8], end: &[u8]) -> Result<chitin_storage::SpanSize> {
        match self {
            StoreEngine::Lsm(e) => e.span_size(start, end).await,
            StoreEngine::Mem(e) => Ok(e.span_size(start, end)),
        }
    }

    /// True when a version (tombstones included) of a key in `[start, end)` has a
    /// timestamp in `(after, upto]`: the serializable refresh check.
    pub async fn has_versions_between(
        &self,
        start: &[u8],
        end: &[u8],
        after: Timestamp,
        upto: Timestamp,
    ) -> Result<bool> {
        Ok(self
            .newest_version_between(start, end, after, upto)
            .await?
            .is_some())
    }

    /// The newest timestamp of a version (tombstones included) of a key in `[start, end)`
    /// in `(after, upto]`: what a refresh or an uncertainty check looks for. SSTs outside
    /// the time bounds are not read.
    pub async fn newest_version_between(
        &self,
        start: &[u8],
        end: &[u8],
        after: Timestamp,
        upto: Timestamp,
    ) -> Result<Option<Timestamp>> {
        if after >= upto {
            return Ok(None);
        }
        let lo = crate::kv::store::next_ts(after);
        Ok(match self {
            StoreEngine::Lsm(e) => e
                .scan_versions(start, end, lo, upto)
                .await?
                .iter()
                .map(|v| v.ts)
                .max(),
            StoreEngine::Mem(e) => e
                .scan_versions(start, end)
                .iter()
                .map(|v| v.ts)
                .filter(|ts| *ts >= lo && *ts <= upto)
                .max(),
        })
    }

    /// Flushes and stops background work.
    pub async fn close(self) -> Result<()> {
        match self {
            StoreEngine::Lsm(e) => {
                e.flush().await?;
                e.close().await
            }
            StoreEngine::Mem(_) => Ok(()),
        }
    }
}

impl Engine for StoreEngine {
    async fn write(&self, batch: WriteBatch) -> Result<()> {
        match self {
            StoreEngine::Lsm(e) => e.write(batch).await,
            StoreEngine::Mem(e) => e.write(batch).await,
        }
    }

    async fn get(&self, key: &[u8], ts: Timestamp) -> Result<Option<Vec<u8>>> {
        match self {
            StoreEngine::Lsm(e) => e.get(key, ts).await,
            StoreEngine::Mem(e) => e.get(key, ts).await,
        }
    }

    async fn scan(&self, start: &[u8], end: &[u8], opts: &ScanOptions) -> Result<Vec<KeyValue>> {
        match self {
            StoreEngine::Lsm(e) => e.scan(start, end, opts).await,
            StoreEngine::Mem(e) => e.scan(start, end, opts).await,
        }
    }

    async fn get_lock(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self {
            StoreEngine::Lsm(e) => e.get_lock(key).await,
            StoreEngine::Mem(e) => e.get_lock(key).await,
        }
    }

    async fn scan_locks(&self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match self {
            StoreEngine::Lsm(e) => e.scan_locks(start, end).await,
            StoreEngine::Mem(e) => e.scan_locks(start, end).await,
        }
    }

    fn applied_index(&self, range: RangeId) -> Option<u64> {
        match self {
            StoreEngine::Lsm(e) => e.applied_index(range),
            StoreEngine::Mem(e) => e.applied_index(range),
        }
    }

    async fn flush(&self) -> Result<()> {
        match self {
            StoreEngine::Lsm(e) => e.flush().await,
            StoreEngine::Mem(e) => e.flush().await,
        }
    }
}
