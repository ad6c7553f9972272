//! Time-bounded iteration, export of a span as an SST, and ingestion of an external SST —
//! what incremental backups, change feeds, raft snapshots and restores are built on.

use std::path::Path;
use std::rc::Rc;

use super::iter::{MergingIter, Source, TableIter};
use super::key::{self, Seqno, SPACE_MVCC};
use super::sst::{Table, TableBuilder};
use super::{collect_group, file, LsmEngine};
use crate::{Engine, Error, Result, Timestamp};

/// One MVCC version: `value` is `None` for a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionedKeyValue {
    pub key: Vec<u8>,
    pub ts: Timestamp,
    pub value: Option<Vec<u8>>,
}

/// What [`LsmEngine::export`] writes.
#[derive(Clone, Copy, Debug)]
pub enum ExportSpec {
    /// The visible version of every key at this timestamp (a full backup).
    AsOf(Timestamp),
    /// Every version, tombstones included, with `start < ts <= end` (an incremental one).
    Between(Timestamp, Timestamp),
}

impl LsmEngine {
    /// Returns every MVCC version (tombstones included) of the keys in `[start, end)` with a
    /// timestamp in `[min_ts, max_ts]`, in key order and newest first per key. SSTs whose
    /// timestamp range lies outside the bounds are not read at all. Versions removed by a
    /// delete-range at `Timestamp::MAX` are not returned; MVCC range tombstones are not
    /// applied (a change feed must see the versions).
    pub async fn scan_versions(
        &self,
        start: &[u8],
        end: &[u8],
        min_ts: Timestamp,
        max_ts: Timestamp,
    ) -> Result<Vec<VersionedKeyValue>> {
        let (out, _) = self
            .scan_versions_page(start, end, min_ts, max_ts, usize::MAX)
            .await?;
        Ok(out)
    }

    /// [`Self::scan_versions`] a page at a time: stops after the first key whose versions
    /// bring the page to `max_bytes` (keys and values) or more, and answers where the next
    /// page starts (None: the span is done). A key's versions are never split.
    pub async fn scan_versions_page(
        &self,
        start: &[u8],
        end: &[u8],
        min_ts: Timestamp,
        max_ts: Timestamp,
        max_bytes: usize,
    ) -> Result<(Vec<VersionedKeyValue>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        if start >= end || min_ts > max_ts {
            return Ok((out, None));
        }
        let mut bytes = 0usize;
        let inner = &self.inner;
        let snap = inner.snapshot();
        let tombstones = snap.range_tombstones(start, end);
        let sources = inner
            .sources(&snap, SPACE_MVCC, start, end, Some((min_ts, max_ts)))
            .await?;
        let mut it = MergingIter::new(sources, false, snap.seq);
        it.seek(&key::seek_first(SPACE_MVCC, start)).await?;
        let mut group = Vec::new();
        while it.valid() {
            let k = it.key();
            if key::space(k) != SPACE_MVCC || key::user_key(k) >= end {
                break;
            }
            collect_group(&mut it, &mut group).await?;
            let mut prev_ts = None;
            for (k, v) in &group {
                let (uk, ts, seq) = (key::user_key(k), key::ts(k), key::seq(k));
                if ts < min_ts || ts > max_ts || prev_ts == Some(ts) {
                    continue;
                }
                if tombstones.iter().any(|t| t.removes(uk, seq)) {
                    continue;
                }
                prev_ts = Some(ts);
                let value = match v.split_first() {
                    Some((&key::KIND_PUT, value)) => Some(value.to_vec()),
                    _ => None,
                };
                bytes += uk.len() + value.as_ref().map_or(0, Vec::len);
                out.push(VersionedKeyValue {
                    key: uk.to_vec(),
                    ts,
                    value,
                });
            }
            if bytes >= max_bytes && it.valid() {
                let k = it.key();
                if key::space(k) == SPACE_MVCC && key::user_key(k) < end {
                    return Ok((out, Some(key::user_key(k).to_vec())));
                }
            }
            glommio::yield_if_needed().await;
        }
        Ok((out, None))
    }

    /// The size of the MVCC data in `[start, end)` (every version, tombstones included;
    /// versions removed by a delete-range at `Timestamp::MAX` not counted) and its middle
    /// key, streamed: memory stays bounded whatever the span holds.
    pub async fn span_size(&self, start: &[u8], end: &[u8]) -> Result<crate::SpanSize> {
        let mut counter = crate::span::SpanCounter::new();
        if start >= end {
            return Ok(counter.finish());
        }
        let inner = &self.inner;
        let snap = inner.snapshot();
        let tombstones = snap.range_tombstones(start, end);
        let sources = inner.sources(&snap, SPACE_MVCC, start, end, None).await?;
        let mut it = MergingIter::new(sources, false, snap.seq);
        it.seek(&key::seek_first(SPACE_MVCC, start)).await?;
        let mut group = Vec::new();
        while it.valid() {
            let k = it.key();
            if key::space(k) != SPACE_MVCC || key::user_key(k) >= end {
                break;
            }
            collect_group(&mut it, &mut group).await?;
            let (mut bytes, mut versions, mut prev_ts) = (0, 0, None);
            for (k, v) in &group {
                let (uk, ts, seq) = (key::user_key(k), key::ts(k), key::seq(k));
                if prev_ts == Some(ts) || tombstones.iter().any(|t| t.removes(uk, seq)) {
                    continue;
                }
                prev_ts = Some(ts);
                bytes += crate::span::version_bytes(uk.len(), v.len().saturating_sub(1));
                versions += 1;
            }
            if versions > 0 {
                counter.add(key::user_key(&group[0].0), bytes, versions);
            }
            glommio::yield_if_needed().await;
        }
        Ok(counter.finish())
    }

    /// Writes the MVCC data of `[start, end)` chosen by `spec` as an SST at `path` (synced),
    /// and returns how many versions it holds. The file can be given to [`Self::ingest`].
    pub async fn export(
        &self,
        start: &[u8],
        end: &[u8],
        spec: ExportSpec,
        path: &Path,
    ) -> Result<u64> {
        let versions: Vec<VersionedKeyValue> = match spec {
            ExportSpec::AsOf(ts) => {
                let kvs = self.scan(start, end, &crate::ScanOptions::at(ts)).await?;
                kvs.into_iter()
                    .map(|kv| VersionedKeyValue {
                        key: kv.key,
                        ts: kv.ts,
                        value: Some(kv.value),
                    })
                    .collect()
            }
            ExportSpec::Between(from, to) => {
                if from == Timestamp::MAX {
                    Vec::new()
                } else {
                    let after = if from.logical == u32::MAX {
                        Timestamp::new(from.wall + 1, 0)
                    } else {
                        Timestamp::new(from.wall, from.logical + 1)
                    };
                    self.scan_versions(start, end, after, to).await?
                }
            }
        };
        let opts = &self.inner.opts;
        let mut b = TableBuilder::new(opts.block_size, opts.bloom_bits_per_key);
        for v in &versions {
            let k = key::encode(SPACE_MVCC, &v.key, v.ts, 0);
            match &v.value {
                Some(value) => {
                    let mut val = vec![key::KIND_PUT];
                    val.extend_from_slice(value);
                    b.add(&k, &val);
                }
                None => b.add(&k, &[key::KIND_TOMBSTONE]),
            }
        }
        let (bytes, _) = b.finish();
        file::write_whole_file(path, &bytes).await?;
        Ok(versions.len() as u64)
    }

    /// Adds the entries of the SST at `path` (e.g. from [`Self::export`] on another node) as
    /// the newest data of the engine, durably. Its checksums are verified as it is read.
    /// Entries get one fresh seqno, so they shadow earlier writes of the same `(key, ts)`;
    /// within the file, the first entry of each `(key, ts)` wins.
    pub async fn ingest(&self, path: &Path) -> Result<()> {
        let inner = &self.inner;
        inner.check_bg_error()?;
        let ext = Rc::new(Table::open(path.to_path_buf(), u64::MAX).await?);
        let _p = super::acquire(&inner.flush_lock).await?;
        // Everything written so far must sit below the ingested table.
        inner.freeze();
        inner.flush_imms().await?;
        let seq = {
            let mut st = inner.state.borrow_mut();
            st.last_seq += 1;
            st.last_seq
        };
        let mut b = TableBuilder::new(inner.opts.block_size, inner.opts.bloom_bits_per_key);
        // A private cursor: blocks of the external file must not enter the shared cache
        // under a number that could collide.
        let cache = Rc::new(super::table_cache::TableCache::new(
            path.to_path_buf(),
            1,
            1 << 20,
        ));
        let mut src = MergingIter::new(
            vec![Source::Table(TableIter::new(cache, ext))],
            false,
            Seqno::MAX,
        );
        src.seek(&super::iter::min_key()).await?;
        let mut last: Option<Vec<u8>> = None;
        while src.valid() {
            let k = src.key();
            if !key::is_valid(k) {
                return Err(Error::InvalidArgument(format!(
                    "{}: not an internal key",
                    path.display()
                )));
            }
            let mut nk = k[..k.len() - 8].to_vec();
            nk.extend_from_slice(&(!seq).to_be_bytes());
            match last.as_deref().map(|l| key::compare(l, &nk)) {
                Some(std::cmp::Ordering::Equal) => {} // same (key, ts): the first one wins
                Some(std::cmp::Ordering::Greater) => {
                    return Err(Error::InvalidArgument(format!(
                        "{}: keys out of order",
                        path.display()
                    )));
                }
                _ => {
                    b.add(&nk, src.value());
                    last = Some(nk);
                }
            }
            src.advance().await?;
            glommio::yield_if_needed().await;
        }
        if b.num_entries() == 0 {
            return Ok(());
        }
        let meta = inner.write_table(b, (0, Timestamp::MIN)).await?;
        inner.install(&[], vec![(0, meta)]).await?;
        inner.wake();
        Ok(())
    }
}
