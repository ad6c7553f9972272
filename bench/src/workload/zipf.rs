//! Key choosers: a small seeded PRNG and YCSB's request distributions.
//!
//! The generators follow YCSB's `core/generator` package so that numbers measured here
//! mean what users expect from YCSB:
//!
//! - [`Zipfian`] is `ZipfianGenerator`: Gray et al., "Quickly Generating Billion-Record
//!   Synthetic Databases" (SIGMOD 1994), with zipfian constant θ = 0.99. Item 0 is the
//!   most popular. Growing the item count updates ζ(n) incrementally, as YCSB does.
//! - [`ScrambledZipfian`] is `ScrambledZipfianGenerator`: a zipfian draw over 10¹⁰ items
//!   (with YCSB's precomputed ζ), hashed with 64-bit FNV-1a and reduced modulo the record
//!   count, so popular keys are spread over the key space instead of clustered at its
//!   start.
//! - [`SkewedLatest`] is `SkewedLatestGenerator`: the most recently inserted key is the
//!   most popular (`latest − zipfian(latest)`).
//!
//! Implementation caveats:
//! - [`Rng`] is xoshiro256** seeded by splitmix64: fast and good enough for load
//!   generation, not for anything cryptographic.
//! - ζ(n) for the record count costs O(n) `powf` calls; it is computed once per run and
//!   the generator is cloned into each worker.

/// YCSB's zipfian constant.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// The item count of YCSB's scrambled zipfian draw.
const SCRAMBLED_ITEM_COUNT: u64 = 10_000_000_000;

/// ζ(10¹⁰, 0.99), precomputed by YCSB (`ScrambledZipfianGenerator.ZETAN`).
const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;

/// YCSB's `Utils.fnvhash64`: FNV-1a over the eight little-endian bytes of `value`, made
/// non-negative as Java's `Math.abs` would (so the result fits an `i64`).
pub fn fnv_hash64(value: u64) -> u64 {
    const OFFSET_BASIS: u64 = 0xCBF2_9CE4_8422_2325;
    const PRIME: u64 = 1_099_511_628_211;
    let mut hash = OFFSET_BASIS;
    let mut v = value;
    for _ in 0..8 {
        let octet = v & 0xff;
        v >>= 8;
        hash ^= octet;
        hash = hash.wrapping_mul(PRIME);
    }
    (hash as i64).unsigned_abs()
}

/// A seeded xoshiro256** generator; each worker owns one.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose sequence is a function of `seed` only.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in [0, n); `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below needs a non-empty range");
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Fills `buf` with printable ASCII letters (YCSB's field values are random strings).
    pub fn fill_ascii(&mut self, buf: &mut Vec<u8>, len: usize) {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        buf.clear();
        while buf.len() < len {
            let mut bits = self.next_u64();
            for _ in 0..10 {
                if buf.len() == len {
                    break;
                }
                buf.push(ALPHABET[(bits & 63) as usize]);
                bits >>= 6;
            }
        }
    }
}

/// ζ(n, θ) = Σ_{i=1..n} 1/i^θ, continued from ζ(start, θ) = `sum`.
fn zeta(start: u64, n: u64, theta: f64, sum: f64) -> f64 {
    let mut sum = sum;
    for i in start..n {
        sum += 1.0 / ((i + 1) as f64).powf(theta);
    }
    sum
}

/// Zipfian-distributed integers in [0, items): 0 is the most popular.
#[derive(Clone, Debug)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    zeta2theta: f64,
    eta: f64,
}

impl Zipfian {
    /// A generator over `items` items (at least 1) with constant `theta` (0 < θ < 1).
    pub fn new(items: u64, theta: f64) -> Zipfian {
        let items = items.max(1);
        Self::with_zetan(items, theta, zeta(0, items, theta, 0.0))
    }

    fn with_zetan(items: u64, theta: f64, zetan: f64) -> Zipfian {
        let zeta2theta = zeta(0, 2, theta, 0.0);
        let mut z = Zipfian {
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            zeta2theta,
            eta: 0.0,
        };
        z.eta = z.compute_eta();
        z
    }

    fn compute_eta(&self) -> f64 {
        (1.0 - (2.0 / self.items as f64).powf(1.0 - self.theta))
            / (1.0 - self.zeta2theta / self.zetan)
    }

    pub fn items(&self) -> u64 {
        self.items
    }

    /// Grows (or shrinks) the item count; growth updates ζ(n) incrementally.
    pub fn set_items(&mut self, items: u64) {
        let items = items.max(1);
        if items == self.items {
            return;
        }
        self.zetan = if items > self.items {
            zeta(self.items, items, self.theta, self.zetan)
        } else {
            zeta(0, items, self.theta, 0.0)
        };
        self.items = items;
        self.eta = self.compute_eta();
    }

    /// The next draw, in [0, items).
    pub fn next(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let v = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.items - 1)
    }
}

/// YCSB's scrambled zipfian: popular items are spread over [0, items).
#[derive(Clone, Debug)]
pub struct ScrambledZipfian {
    items: u64,
    zipfian: Zipfian,
}

impl ScrambledZipfian {
    pub fn new(items: u64) -> ScrambledZipfian {
        ScrambledZipfian {
            items: items.max(1),
            zipfian: Zipfian::with_zetan(SCRAMBLED_ITEM_COUNT, ZIPFIAN_CONSTANT, SCRAMBLED_ZETAN),
        }
    }

    /// The next draw, in [0, items).
    pub fn next(&self, rng: &mut Rng) -> u64 {
        fnv_hash64(self.zipfian.next(rng)) % self.items
    }
}

/// YCSB's skewed-latest: the most recently inserted item is the most popular.
#[derive(Clone, Debug)]
pub struct SkewedLatest {
    zipfian: Zipfian,
}

impl SkewedLatest {
    /// A generator for a key space that currently holds `items` items.
    pub fn new(items: u64) -> SkewedLatest {
        SkewedLatest {
            zipfian: Zipfian::new(items, ZIPFIAN_CONSTANT),
        }
    }

    /// The next draw, in [0, items), where `items` is the current count of inserted
    /// (acknowledged) items.
    pub fn next(&mut self, rng: &mut Rng, items: u64) -> u64 {
        let items = items.max(1);
        self.zipfian.set_items(items);
        items - 1 - self.zipfian.next(rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_ycsb() {
        // Utils.fnvhash64(0) in YCSB: the basis hashed with eight zero octets, then abs.
        let mut h: u64 = 0xCBF2_9CE4_8422_2325;
        for _ in 0..8 {
            h = h.wrapping_mul(1_099_511_628_211);
        }
        assert_eq!(fnv_hash64(0), (h as i64).unsigned_abs());
        assert!(fnv_hash64(u64::MAX) <= i64::MAX as u64 + 1);
        assert_ne!(fnv_hash64(1), fnv_hash64(2));
    }

    #[test]
    fn rng_is_deterministic_and_uniform() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[a.below(10) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        for _ in 0..1000 {
            let f = a.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
        let mut buf = Vec::new();
        a.fill_ascii(&mut buf, 100);
        assert_eq!(buf.len(), 100);
        assert!(buf.iter().all(|c| c.is_ascii_graphic()));
    }

    #[test]
    fn zipfian_is_skewed_toward_zero() {
        // With θ = 0.99 over 1000 items, P(0) = 1/ζ(1000) ≈ 0.13 and the frequencies of
        // the first items fall off roughly as 1/i.
        let z = Zipfian::new(1000, ZIPFIAN_CONSTANT);
        let mut rng = Rng::new(1);
        let n = 200_000;
        let mut counts = vec![0u64; 1000];
        for _ in 0..n {
            let v = z.next(&mut rng);
            assert!(v < 1000);
            counts[v as usize] += 1;
        }
        let expected0 = 1.0 / zeta(0, 1000, ZIPFIAN_CONSTANT, 0.0);
        let p0 = counts[0] as f64 / n as f64;
        assert!((p0 - expected0).abs() < 0.01, "p0 {p0} vs {expected0}");
        assert!(counts[0] > counts[1] && counts[1] > counts[5] && counts[5] > counts[100]);
        // The top 10% of items get the bulk of the draws.
        let top: u64 = counts[..100].iter().sum();
        assert!(top as f64 / n as f64 > 0.6, "top-100 share {top}");
    }

    #[test]
    fn zipfian_incremental_zeta_matches_fresh() {
        let mut grown = Zipfian::new(100, ZIPFIAN_CONSTANT);
        grown.set_items(5000);
        let fresh = Zipfian::new(5000, ZIPFIAN_CONSTANT);
        assert!((grown.zetan - fresh.zetan).abs() < 1e-9);
        assert!((grown.eta - fresh.eta).abs() < 1e-9);
        grown.set_items(10);
        assert!((grown.zetan - Zipfian::new(10, ZIPFIAN_CONSTANT).zetan).abs() < 1e-9);
    }

    #[test]
    fn scrambled_zipfian_stays_in_range_and_spreads() {
        for items in [1u64, 2, 7, 1000, 1_000_000] {
            let z = ScrambledZipfian::new(items);
            let mut rng = Rng::new(items);
            for _ in 0..10_000 {
                assert!(z.next(&mut rng) < items);
            }
        }
        // Skewed, but the hottest key is not simply key 0 and hot keys are spread out.
        let z = ScrambledZipfian::new(10_000);
        let mut rng = Rng::new(3);
        let mut counts = vec![0u32; 10_000];
        for _ in 0..100_000 {
            counts[z.next(&mut rng) as usize] += 1;
        }
        let max = *counts.iter().max().unwrap();
        assert!(max > 1_000, "hottest key only {max} of 100000");
        let halves: (u32, u32) = (
            counts[..5000].iter().sum::<u32>(),
            counts[5000..].iter().sum::<u32>(),
        );
        assert!(halves.0 > 20_000 && halves.1 > 20_000, "{halves:?}");
    }

    #[test]
    fn skewed_latest_prefers_recent_items() {
        let mut g = SkewedLatest::new(1000);
        let mut rng = Rng::new(9);
        let mut recent = 0;
        for _ in 0..10_000 {
            let v = g.next(&mut rng, 1000);
            assert!(v < 1000);
            if v >= 990 {
                recent += 1;
            }
        }
        assert!(
            recent > 3_000,
            "only {recent} draws among the latest 10 items"
        );
        // The key space grows as inserts are acknowledged.
        for _ in 0..1000 {
            assert!(g.next(&mut rng, 1500) < 1500);
        }
    }
}
