//! How big a span of MVCC data is, and where its middle is: what a range needs to decide
//! to split by size and where ([`crate::LsmEngine::span_size`], [`crate::MemEngine::span_size`]).

/// The size of a span's MVCC data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpanSize {
    /// Bytes of keys, timestamps and values of every version (tombstones included).
    pub bytes: u64,
    /// Versions counted.
    pub versions: u64,
    /// Distinct keys.
    pub keys: u64,
    /// A key with about half of `bytes` in the versions of the keys before it (never the
    /// span's first key): where to split. `None` for spans of fewer than two keys.
    pub middle: Option<Vec<u8>>,
}

/// The bytes one version costs: its key, a 12-byte timestamp, its value.
pub fn version_bytes(key: usize, value: usize) -> u64 {
    (key + 12 + value) as u64
}

/// Counts a span key by key (in order) and keeps a bounded sample of keys with the bytes
/// before them, so the middle is known at the end without a second pass: at most
/// `2 * MAX_SAMPLES` keys are held, each sample is within `total / MAX_SAMPLES` of its
/// true position.
#[derive(Default)]
pub struct SpanCounter {
    size: SpanSize,
    /// `(bytes before the key, key)`, every `every` bytes.
    samples: Vec<(u64, Vec<u8>)>,
    every: u64,
    next_sample: u64,
}

const MAX_SAMPLES: usize = 512;

impl SpanCounter {
    pub fn new() -> Self {
        Self {
            every: 1,
            ..Default::default()
        }
    }

    /// Adds the versions of `key` (`bytes` in all, `versions` of them); keys come in order.
    pub fn add(&mut self, key: &[u8], bytes: u64, versions: u64) {
        if self.size.keys > 0 && self.size.bytes >= self.next_sample {
            self.samples.push((self.size.bytes, key.to_vec()));
            self.next_sample = self.size.bytes + self.every;
            if self.samples.len() >= 2 * MAX_SAMPLES {
                // Keep every other sample and sample half as often.
                let mut i = 0;
                self.samples.retain(|_| {
                    i += 1;
                    i % 2 == 0
                });
                self.every *= 2;
                self.next_sample = self.size.bytes + self.every;
            }
        }
        self.size.bytes += bytes;
        self.size.versions += versions;
        self.size.keys += 1;
    }

    pub fn finish(mut self) -> SpanSize {
        let half = self.size.bytes / 2;
        self.size.middle = self
            .samples
            .into_iter()
            .find(|(before, _)| *before >= half)
            .map(|(_, k)| k)
            .or(self.size.middle);
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_middle_splits_the_bytes_in_about_half() {
        for n in [2u64, 3, 10, 1000, 100_000] {
            let mut c = SpanCounter::new();
            for i in 0..n {
                c.add(&i.to_be_bytes(), 100, 1);
            }
            let s = c.finish();
            assert_eq!((s.bytes, s.keys, s.versions), (100 * n, n, n));
            let mid = u64::from_be_bytes(s.middle.unwrap().try_into().unwrap());
            assert!(mid > 0 && mid < n, "{n}: {mid}");
            let off = (mid as f64 / n as f64 - 0.5).abs();
            assert!(n < 10 || off < 0.01, "{n}: {mid}");
        }
    }

    #[test]
    fn skewed_sizes_split_by_bytes_not_keys() {
        let mut c = SpanCounter::new();
        c.add(b"a", 1_000_000, 1);
        for i in 0..1000u32 {
            c.add(format!("b{i:04}").as_bytes(), 1000, 1);
        }
        // Half the bytes are in "a": the split goes right after it.
        assert_eq!(c.finish().middle.as_deref(), Some(&b"b0000"[..]));
    }

    #[test]
    fn one_key_has_no_middle() {
        let mut c = SpanCounter::new();
        c.add(b"a", 10, 3);
        assert_eq!(c.finish().middle, None);
        assert_eq!(SpanCounter::new().finish(), SpanSize::default());
    }
}
