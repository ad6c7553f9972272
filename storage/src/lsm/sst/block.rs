//! Data and index blocks: sorted entries with prefix-compressed keys and restart points.
//!
//! ```text
//! entry*   = [shared: varint][unshared: varint][value len: varint][key suffix][value]
//! restarts = [offset: u32 LE]* [count: u32 LE]
//! ```
//!
//! Every `restart_interval`-th entry stores its whole key (`shared = 0`) and its offset is
//! listed in the restart array. On disk each block is followed by its crc32 (see
//! `sst::reader`). A block read from disk is decoded once into a [`Block`] (whole keys,
//! entry offsets) and cached in that form, so iteration forward and backward is array
//! indexing.

use std::cmp::Ordering;

use crate::lsm::coding::{put_varint, Reader};
use crate::lsm::key;

pub struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    restart_interval: usize,
    since_restart: usize,
    last_key: Vec<u8>,
    entries: usize,
}

impl BlockBuilder {
    pub fn new(restart_interval: usize) -> Self {
        BlockBuilder {
            buf: Vec::new(),
            restarts: Vec::new(),
            restart_interval: restart_interval.max(1),
            since_restart: 0,
            last_key: Vec::new(),
            entries: 0,
        }
    }

    /// Appends an entry; keys must come in strictly increasing internal-key order.
    pub fn add(&mut self, k: &[u8], v: &[u8]) {
        debug_assert!(self.entries == 0 || key::compare(&self.last_key, k) == Ordering::Less);
        let shared = if self.since_restart.is_multiple_of(self.restart_interval) {
            self.restarts.push(self.buf.len() as u32);
            self.since_restart = 0;
            0
        } else {
            self.last_key
                .iter()
                .zip(k)
                .take_while(|(a, b)| a == b)
                .count()
        };
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, (k.len() - shared) as u64);
        put_varint(&mut self.buf, v.len() as u64);
        self.buf.extend_from_slice(&k[shared..]);
        self.buf.extend_from_slice(v);
        self.last_key.clear();
        self.last_key.extend_from_slice(k);
        self.since_restart += 1;
        self.entries += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Bytes the finished block will take.
    pub fn estimated_size(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Returns the finished block and resets the builder.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        for r in &self.restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts.clear();
        self.since_restart = 0;
        self.entries = 0;
        self.last_key.clear();
        out
    }
}

/// A decoded block: whole keys and values laid out in one buffer.
pub struct Block {
    buf: Vec<u8>,
    /// `(key offset, key len, value offset, value len)` into `buf`, per entry.
    entries: Vec<(u32, u32, u32, u32)>,
}

impl Block {
    /// Decodes and validates a block (without its crc). Every entry's key must be a valid
    /// internal key when `internal_keys`, entries must be in order, and every restart point
    /// must start an entry with no shared prefix.
    pub fn decode(raw: &[u8]) -> Result<Block, String> {
        if raw.len() < 4 {
            return Err("block shorter than its restart count".into());
        }
        let n_restarts = u32::from_le_bytes(raw[raw.len() - 4..].try_into().unwrap()) as usize;
        let restarts_len = n_restarts
            .checked_mul(4)
            .and_then(|r| r.checked_add(4))
            .filter(|r| *r <= raw.len())
            .ok_or("restart array larger than the block")?;
        let data = &raw[..raw.len() - restarts_len];
        let mut restarts = raw[data.len()..raw.len() - 4]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as usize)
            .peekable();
        let mut r = Reader::new(data);
        let mut buf = Vec::with_capacity(data.len() * 2);
        let mut entries = Vec::new();
        let mut prev: Option<(usize, usize)> = None;
        while !r.is_empty() {
            let at = r.pos();
            let is_restart = restarts.peek() == Some(&at);
            if is_restart {
                restarts.next();
            }
            let shared = r.varint()? as usize;
            let unshared = r.varint()? as usize;
            let vlen = r.varint()? as usize;
            if is_restart && shared != 0 {
                return Err(format!("restart entry at {at} shares a prefix"));
            }
            let prev_len = prev.map(|p| p.1).unwrap_or(0);
            if shared > prev_len {
                return Err(format!(
                    "entry at {at} shares {shared} bytes of a {prev_len}-byte key"
                ));
            }
            let suffix = r.take(unshared)?;
            let value = r.take(vlen)?;
            let koff = buf.len();
            if let Some((poff, _)) = prev {
                buf.extend_from_within(poff..poff + shared);
            }
            buf.extend_from_slice(suffix);
            let klen = shared + unshared;
            let k = &buf[koff..koff + klen];
            if !key::is_valid(k) {
                return Err(format!("entry at {at} has a malformed key"));
            }
            if let Some((poff, plen)) = prev {
                if key::compare(&buf[poff..poff + plen], k) != Ordering::Less {
                    return Err(format!("entry at {at} is out of order"));
                }
            }
            let voff = buf.len();
            buf.extend_from_slice(value);
            entries.push((koff as u32, klen as u32, voff as u32, vlen as u32));
            prev = Some((koff, klen));
        }
        if restarts.next().is_some() {
            return Err("restart point does not start an entry".into());
        }
        // Cached blocks are charged by capacity: give back the decoding headroom, or the
        // cache holds about half the blocks its budget allows.
        buf.shrink_to_fit();
        entries.shrink_to_fit();
        Ok(Block { buf, entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[inline]
    pub fn key(&self, i: usize) -> &[u8] {
        let (o, l, _, _) = self.entries[i];
        &self.buf[o as usize..(o + l) as usize]
    }

    #[inline]
    pub fn value(&self, i: usize) -> &[u8] {
        let (_, _, o, l) = self.entries[i];
        &self.buf[o as usize..(o + l) as usize]
    }

    /// Index of the first entry `>= k` (may be `len()`).
    pub fn seek_ge(&self, k: &[u8]) -> usize {
        self.entries.partition_point(|&(o, l, _, _)| {
            key::compare(&self.buf[o as usize..(o + l) as usize], k) == Ordering::Less
        })
    }

    /// Memory this block holds, for the cache budget.
    pub fn charge(&self) -> usize {
        self.buf.capacity() + self.entries.capacity() * 16 + 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsm::key::{encode, SPACE_MVCC};
    use crate::Timestamp;

    #[test]
    fn round_trip_with_prefix_compression_and_restarts() {
        let mut b = BlockBuilder::new(4);
        let keys: Vec<Vec<u8>> = (0..50)
            .map(|i| {
                encode(
                    SPACE_MVCC,
                    format!("key{:04}", i).as_bytes(),
                    Timestamp::new(7, 0),
                    i,
                )
            })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            b.add(k, format!("v{i}").as_bytes());
        }
        let raw = b.finish();
        let block = Block::decode(&raw).unwrap();
        assert_eq!(block.len(), 50);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(block.key(i), k.as_slice());
            assert_eq!(block.value(i), format!("v{i}").as_bytes());
            assert_eq!(block.seek_ge(k), i);
        }
        // Prefix compression actually shrank it.
        let plain: usize = keys.iter().map(|k| k.len() + 3).sum();
        assert!(raw.len() < plain, "{} >= {}", raw.len(), plain);
        // Garbage is an error, not a panic.
        for cut in [0, 3, raw.len() / 2] {
            let _ = Block::decode(&raw[..cut]);
        }
        let mut bad = raw.clone();
        bad[1] ^= 0xff;
        let _ = Block::decode(&bad);
    }
}
