//! A bloom filter over key heads (key space byte + user key), one per SST, so a point read
//! skips tables that cannot hold the key. Double hashing (Kirsch–Mitzenmacher) over one
//! 64-bit hash; ~1% false positives at 10 bits per key.
//!
//! ```text
//! [bit array][probe count: u8]
//! ```

/// A 64-bit hash: FNV-1a over the bytes, then the murmur3 finalizer to spread the bits.
pub fn hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Builds a filter from the hashes of the keys it must contain.
pub fn build(hashes: &[u64], bits_per_key: usize) -> Vec<u8> {
    let bits_per_key = bits_per_key.max(1);
    let probes = ((bits_per_key as f64) * 0.69).round().clamp(1.0, 30.0) as u8;
    let nbits = (hashes.len() * bits_per_key).max(64);
    let nbytes = nbits.div_ceil(8);
    let nbits = nbytes * 8;
    let mut out = vec![0u8; nbytes + 1];
    for &h in hashes {
        let (mut a, b) = (h as u32, (h >> 32) as u32 | 1);
        for _ in 0..probes {
            let bit = a as usize % nbits;
            out[bit / 8] |= 1 << (bit % 8);
            a = a.wrapping_add(b);
        }
    }
    out[nbytes] = probes;
    out
}

/// A filter read from disk.
pub struct Bloom {
    bits: Vec<u8>,
    probes: u8,
}

impl Bloom {
    pub fn decode(raw: &[u8]) -> Result<Bloom, String> {
        match raw.split_last() {
            Some((&probes, bits)) if probes > 0 && !bits.is_empty() => Ok(Bloom {
                bits: bits.to_vec(),
                probes,
            }),
            _ => Err("malformed bloom filter".into()),
        }
    }

    /// False only when the key is certainly absent.
    pub fn may_contain(&self, h: u64) -> bool {
        let nbits = self.bits.len() * 8;
        let (mut a, b) = (h as u32, (h >> 32) as u32 | 1);
        for _ in 0..self.probes {
            let bit = a as usize % nbits;
            if self.bits[bit / 8] & (1 << (bit % 8)) == 0 {
                return false;
            }
            a = a.wrapping_add(b);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let hashes: Vec<u64> = (0..10_000u32).map(|i| hash(&i.to_be_bytes())).collect();
        let bloom = Bloom::decode(&build(&hashes, 10)).unwrap();
        assert!(hashes.iter().all(|h| bloom.may_contain(*h)));
        let fp = (10_000..110_000u32)
            .filter(|i| bloom.may_contain(hash(&i.to_be_bytes())))
            .count();
        assert!(fp < 2_000, "false positive rate {fp}/100000");
    }
}
