//! `MemEngine`: the in-memory MVCC engine, a `BTreeMap` of versions. It keeps the whole
//! [`Engine`](crate::Engine) contract except durability (nothing survives a restart), so the
//! layers above test against it and the model test uses it as the oracle's twin.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use crate::{BatchOp, Engine, KeyValue, RangeId, Result, ScanOptions, Timestamp, WriteBatch};

/// `(key, ts descending)` → value; `None` is a tombstone.
type Versions = BTreeMap<(Vec<u8>, Reverse<Timestamp>), Option<Vec<u8>>>;

#[derive(Default)]
struct Inner {
    versions: Versions,
    /// Range tombstones `(start, end, ts)`.
    range_tombstones: Vec<(Vec<u8>, Vec<u8>, Timestamp)>,
    locks: BTreeMap<Vec<u8>, Vec<u8>>,
    applied: HashMap<RangeId, u64>,
}

/// An engine held entirely in memory. Single-core (`RefCell` inside).
#[derive(Default)]
pub struct MemEngine {
    inner: RefCell<Inner>,
}

impl MemEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every version (tombstones included) of the keys in `[start, end)`, in key order and
    /// newest first per key, like [`crate::LsmEngine::scan_versions`] over all timestamps.
    /// MVCC range tombstones below `Timestamp::MAX` are not applied.
    pub fn scan_versions(&self, start: &[u8], end: &[u8]) -> Vec<crate::VersionedKeyValue> {
        if start >= end {
            return Vec::new();
        }
        let lo = Bound::Included((start.to_vec(), Reverse(Timestamp::MAX)));
        let hi = Bound::Excluded((end.to_vec(), Reverse(Timestamp::MAX)));
        self.inner
            .borrow()
            .versions
            .range((lo, hi))
            .map(|((k, ts), v)| crate::VersionedKeyValue {
                key: k.clone(),
                ts: ts.0,
                value: v.clone(),
            })
            .collect()
    }

    /// [`Self::scan_versions`] a page at a time, like
    /// [`crate::LsmEngine::scan_versions_page`].
    pub fn scan_versions_page(
        &self,
        start: &[u8],
        end: &[u8],
        max_bytes: usize,
    ) -> (Vec<crate::VersionedKeyValue>, Option<Vec<u8>>) {
        let mut out: Vec<crate::VersionedKeyValue> = Vec::new();
        if start >= end {
            return (out, None);
        }
        let lo = Bound::Included((start.to_vec(), Reverse(Timestamp::MAX)));
        let hi = Bound::Excluded((end.to_vec(), Reverse(Timestamp::MAX)));
        let mut bytes = 0usize;
        for ((k, ts), v) in self.inner.borrow().versions.range((lo, hi)) {
            if bytes >= max_bytes && out.last().is_some_and(|l| l.key != *k) {
                return (out, Some(k.clone()));
            }
            bytes += k.len() + v.as_ref().map_or(0, Vec::len);
            out.push(crate::VersionedKeyValue {
                key: k.clone(),
                ts: ts.0,
                value: v.clone(),
            });
        }
        (out, None)
    }

    /// The size of the versions in `[start, end)` and its middle key, like
    /// [`crate::LsmEngine::span_size`].
    pub fn span_size(&self, start: &[u8], end: &[u8]) -> crate::SpanSize {
        let mut counter = crate::span::SpanCounter::new();
        let versions = self.scan_versions(start, end);
        let mut i = 0;
        while i < versions.len() {
            let key = &versions[i].key;
            let (mut bytes, mut n) = (0, 0);
            while i < versions.len() && &versions[i].key == key {
                let v = &versions[i];
                bytes +=
                    crate::span::version_bytes(v.key.len(), v.value.as_ref().map_or(0, Vec::len));
                n += 1;
                i += 1;
            }
            counter.add(key, bytes, n);
        }
        counter.finish()
    }
}

impl Inner {
    fn covered(&self, key: &[u8], version_ts: Timestamp, read_ts: Timestamp) -> bool {
        self.range_tombstones.iter().any(|(s, e, ts)| {
            s.as_slice() <= key && key < e.as_slice() && version_ts <= *ts && *ts <= read_ts
        })
    }

    /// The visible version of `key` at `ts`: `Some((version ts, value))` or `None`.
    fn visible(&self, key: &[u8], ts: Timestamp) -> Option<(Timestamp, Vec<u8>)> {
        let lo = (key.to_vec(), Reverse(ts));
        let (k, v) = self.versions.range(lo..).next()?;
        if k.0.as_slice() != key {
            return None;
        }
        let vts = k.1 .0;
        if self.covered(key, vts, ts) {
            return None;
        }
        v.as_ref().map(|v| (vts, v.clone()))
    }
}

impl Engine for MemEngine {
    async fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        for op in batch.ops {
            match op {
                BatchOp::Put { key, ts, value } => {
                    inner.versions.insert((key, Reverse(ts)), Some(value));
                }
                BatchOp::Delete { key, ts } => {
                    inner.versions.insert((key, Reverse(ts)), None);
                }
                BatchOp::DeleteRange { start, end, ts } => {
                    if ts == Timestamp::MAX {
                        let doomed: Vec<_> = inner
                            .versions
                            .range((start.clone(), Reverse(Timestamp::MAX))..)
                            .take_while(|(k, _)| k.0 < end)
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            inner.versions.remove(&k);
                        }
                    } else {
                        inner.range_tombstones.push((start, end, ts));
                    }
                }
                BatchOp::PutLock { key, lock } => {
                    inner.locks.insert(key, lock);
                }
                BatchOp::DeleteLock { key } => {
                    inner.locks.remove(&key);
                }
            }
        }
        for (range, index) in batch.applied {
            inner.applied.insert(range, index);
        }
        Ok(())
    }

    async fn get(&self, key: &[u8], ts: Timestamp) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.borrow().visible(key, ts).map(|(_, v)| v))
    }

    async fn scan(&self, start: &[u8], end: &[u8], opts: &ScanOptions) -> Result<Vec<KeyValue>> {
        let inner = self.inner.borrow();
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        // Distinct keys in the span, in the requested order.
        let lo = Bound::Included((start.to_vec(), Reverse(Timestamp::MAX)));
        let hi = Bound::Excluded((end.to_vec(), Reverse(Timestamp::MAX)));
        let mut keys: Vec<&Vec<u8>> = Vec::new();
        for ((k, _), _) in inner.versions.range((lo, hi)) {
            if keys.last().map(|l| *l != k).unwrap_or(true) {
                keys.push(k);
            }
        }
        if opts.reverse {
            keys.reverse();
        }
        for k in keys {
            if let Some((ts, value)) = inner.visible(k, opts.ts) {
                out.push(KeyValue {
                    key: k.clone(),
                    value,
                    ts,
                });
                if opts.limit != 0 && out.len() >= opts.limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn get_lock(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.borrow().locks.get(key).cloned())
    }

    async fn scan_locks(&self, start: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self
            .inner
            .borrow()
            .locks
            .range(start.to_vec()..end.to_vec())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn applied_index(&self, range: RangeId) -> Option<u64> {
        self.inner.borrow().applied.get(&range).copied()
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures_lite::future::block_on(f)
    }

    #[test]
    fn versions_tombstones_and_range_tombstones() {
        block_on(async {
            let e = MemEngine::new();
            let t = |w| Timestamp::new(w, 0);
            let mut b = WriteBatch::new();
            b.put("a", t(10), "a10");
            b.put("a", t(20), "a20");
            b.put("b", t(10), "b10");
            b.delete("b", t(30));
            b.put("c", t(5), "c5");
            e.write(b).await.unwrap();
            assert_eq!(e.get(b"a", t(9)).await.unwrap(), None);
            assert_eq!(e.get(b"a", t(15)).await.unwrap(), Some(b"a10".to_vec()));
            assert_eq!(e.get(b"a", t(25)).await.unwrap(), Some(b"a20".to_vec()));
            assert_eq!(e.get(b"b", t(29)).await.unwrap(), Some(b"b10".to_vec()));
            assert_eq!(e.get(b"b", t(30)).await.unwrap(), None);
            let mut b = WriteBatch::new();
            b.delete_range("a", "c", t(40));
            e.write(b).await.unwrap();
            assert_eq!(e.get(b"a", t(39)).await.unwrap(), Some(b"a20".to_vec()));
            assert_eq!(e.get(b"a", t(40)).await.unwrap(), None);
            let all = e.scan(b"", b"z", &ScanOptions::at(t(50))).await.unwrap();
            assert_eq!(all.len(), 1);
            assert_eq!(all[0].key, b"c");
            let mut opts = ScanOptions::at(t(25));
            opts.reverse = true;
            let keys: Vec<_> = e
                .scan(b"", b"z", &opts)
                .await
                .unwrap()
                .into_iter()
                .map(|kv| kv.key)
                .collect();
            assert_eq!(keys, vec![b"c".to_vec(), b"b".to_vec(), b"a".to_vec()]);
        });
    }
}
