//! What a replica measures about its range to decide when to split: its size and its load.
//!
//! - **Size**: the bytes of every MVCC version in the span, measured once by walking the
//!   engine ([`StoreEngine::span_size`](super::engine::StoreEngine::span_size)) and then
//!   kept up to date by the apply loop, which adds what each command writes. Nothing is
//!   subtracted (MVCC keeps old versions until garbage collection), so the figure errs on
//!   the large side; a split measures again before it decides, and a range whose span
//!   shrinks is measured afresh.
//! - **Load**: requests served per second, over windows of at least a second, with a small
//!   reservoir sample of the keys they touched. Splitting a hot range at the median sampled
//!   key gives each half about half of the load (CockroachDB's load-based splitter does the
//!   same with a finer weighting).
//!
//! Counting a request is a counter increment; sampling its key clones it with
//! probability `SAMPLE / n`, so the hot read path allocates only for the first few requests
//! of each window.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// Keys kept per load window.
pub const SAMPLE: usize = 32;

/// The shortest window a load figure is computed over.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);

pub struct RangeStats {
    /// The span's MVCC bytes; `None`: not measured since the span last changed.
    pub bytes: Cell<Option<u64>>,
    requests: Cell<u64>,
    window_start: Cell<Instant>,
    sample: RefCell<Vec<Vec<u8>>>,
    rng: Cell<u64>,
    /// Requests per second over the last full window (and how many windows in a row were
    /// above the load-split threshold, kept by the split queue).
    pub qps: Cell<f64>,
    pub hot_windows: Cell<u32>,
    /// The sample of the last full window, sorted.
    last_sample: RefCell<Vec<Vec<u8>>>,
    /// When the span last changed (or this replica was created): young ranges are not
    /// merged (a split is not undone before its halves have shown their load).
    span_since: Cell<Instant>,
}

impl Default for RangeStats {
    fn default() -> Self {
        Self {
            bytes: Cell::new(None),
            requests: Cell::new(0),
            window_start: Cell::new(Instant::now()),
            sample: RefCell::new(Vec::new()),
            rng: Cell::new(0x9e37_79b9_7f4a_7c15),
            qps: Cell::new(0.0),
            hot_windows: Cell::new(0),
            last_sample: RefCell::new(Vec::new()),
            span_since: Cell::new(Instant::now()),
        }
    }
}

impl RangeStats {
    /// Counts a request touching `key`.
    pub fn record(&self, key: &[u8]) {
        let n = self.requests.get() + 1;
        self.requests.set(n);
        let mut sample = self.sample.borrow_mut();
        if sample.len() < SAMPLE {
            sample.push(key.to_vec());
            return;
        }
        // Reservoir sampling: keep the n-th key with probability SAMPLE / n.
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        let slot = x % n;
        if (slot as usize) < SAMPLE {
            sample[slot as usize] = key.to_vec();
        }
    }

    /// The span changed (a split, a merge): its size must be measured again.
    pub fn span_changed(&self) {
        self.bytes.set(None);
        self.span_since.set(Instant::now());
    }

    /// How long the span has been what it is.
    pub fn span_age(&self) -> Duration {
        self.span_since.get().elapsed()
    }

    /// Adds `bytes` written to the span (when its size is known).
    pub fn wrote(&self, bytes: u64) {
        if let Some(b) = self.bytes.get() {
            self.bytes.set(Some(b + bytes));
        }
    }

    /// Closes the load window if it is at least [`MIN_WINDOW`] old: updates [`Self::qps`]
    /// and the sample. Returns whether it did.
    pub fn roll(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.window_start.get());
        if elapsed < MIN_WINDOW {
            return false;
        }
        self.qps
            .set(self.requests.get() as f64 / elapsed.as_secs_f64());
        self.requests.set(0);
        self.window_start.set(now);
        let mut s = std::mem::take(&mut *self.sample.borrow_mut());
        s.sort_unstable();
        *self.last_sample.borrow_mut() = s;
        true
    }

    /// The median key of the last window's sample, if it lies strictly inside
    /// `(start, end)`: where a load-based split goes.
    pub fn load_split_key(&self, start: &[u8], end: &[u8]) -> Option<Vec<u8>> {
        let s = self.last_sample.borrow();
        let inside: Vec<&Vec<u8>> = s
            .iter()
            .filter(|k| k.as_slice() > start && k.as_slice() < end)
            .collect();
        // Every sampled key at the span's start (one hot row) cannot be split off.
        inside.get(inside.len() / 2).map(|k| k.to_vec())
    }
}

/// Why a range should split.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SplitReason {
    Size { bytes: u64, max: u64 },
    Load { qps: f64, threshold: f64 },
}

impl std::fmt::Display for SplitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitReason::Size { bytes, max } => {
                write!(f, "size {bytes} B above range_max_bytes {max} B")
            }
            SplitReason::Load { qps, threshold } => {
                write!(f, "load {qps:.0} requests/s above {threshold:.0}")
            }
        }
    }
}

/// The split policy, from the cluster settings.
#[derive(Clone, Copy, Debug)]
pub struct SplitPolicy {
    pub max_bytes: u64,
    /// `None`: load-based splitting is off.
    pub load_qps: Option<f64>,
    /// Windows in a row above `load_qps` before a load split (a burst is not a load).
    pub hot_windows: u32,
    /// Whether small, cold neighbours merge.
    pub merge: bool,
}

/// Whether a range of `stats` should split under `policy` (size first).
pub fn should_split(stats: &RangeStats, policy: &SplitPolicy) -> Option<SplitReason> {
    if let Some(bytes) = stats.bytes.get() {
        if bytes > policy.max_bytes {
            return Some(SplitReason::Size {
                bytes,
                max: policy.max_bytes,
            });
        }
    }
    let threshold = policy.load_qps?;
    (stats.hot_windows.get() >= policy.hot_windows).then(|| SplitReason::Load {
        qps: stats.qps.get(),
        threshold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SplitPolicy {
        SplitPolicy {
            max_bytes: 1000,
            load_qps: Some(100.0),
            hot_windows: 2,
            merge: true,
        }
    }

    #[test]
    fn size_is_counted_once_measured() {
        let s = RangeStats::default();
        s.wrote(5000);
        assert_eq!(should_split(&s, &policy()), None, "unknown size: no split");
        s.bytes.set(Some(900));
        s.wrote(50);
        assert_eq!(should_split(&s, &policy()), None);
        s.wrote(51);
        assert_eq!(
            should_split(&s, &policy()),
            Some(SplitReason::Size {
                bytes: 1001,
                max: 1000
            })
        );
    }

    #[test]
    fn load_needs_consecutive_hot_windows_and_splits_at_the_median_key() {
        let s = RangeStats::default();
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            s.record(&i.to_be_bytes());
        }
        assert!(!s.roll(t0), "a window lasts at least a second");
        assert!(s.roll(t0 + Duration::from_secs(2)));
        assert!((s.qps.get() - 5000.0).abs() < 1000.0, "{}", s.qps.get());
        s.hot_windows.set(1);
        assert_eq!(should_split(&s, &policy()), None);
        s.hot_windows.set(2);
        assert!(matches!(
            should_split(&s, &policy()),
            Some(SplitReason::Load { .. })
        ));
        let mid = s.load_split_key(&[], &[0xff]).unwrap();
        let mid = u32::from_be_bytes(mid.try_into().unwrap());
        assert!(
            (2000..8000).contains(&mid),
            "median of a uniform sample: {mid}"
        );
        // A key at the span's start cannot be a split point.
        assert_eq!(s.load_split_key(&u32::MAX.to_be_bytes(), &[0xff; 5]), None);
        let off = SplitPolicy {
            load_qps: None,
            ..policy()
        };
        assert_eq!(should_split(&s, &off), None);
    }
}
