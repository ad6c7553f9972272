//! The fixed-layout parts of an SST: the footer at the very end of the file and the fixed
//! head of the properties block. Both are `bytemuck` plain old data, little-endian.

use bytemuck::{Pod, Zeroable};

use crate::Timestamp;

pub const MAGIC: u64 = 0x4348_4954_494e_5353; // "CHITINSS"
pub const VERSION: u32 = 1;
pub const FOOTER_LEN: usize = std::mem::size_of::<Footer>();

/// Where a block sits in the file: `len` excludes the 4-byte crc32 that follows it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockHandle {
    pub offset: u64,
    pub len: u64,
}

/// The last [`FOOTER_LEN`] bytes of every SST. `crc` covers every byte before it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct Footer {
    pub index: BlockHandle,
    pub bloom: BlockHandle,
    pub properties: BlockHandle,
    /// End of the last data block (its crc included).
    pub data_end: u64,
    pub reserved: u64,
    pub magic: u64,
    pub version: u32,
    pub crc: u32,
}

impl Footer {
    pub fn seal(mut self) -> Self {
        self.magic = MAGIC;
        self.version = VERSION;
        self.crc = 0;
        self.crc = crc32fast::hash(&bytemuck::bytes_of(&self)[..FOOTER_LEN - 4]);
        self
    }

    pub fn decode(raw: &[u8]) -> Result<Footer, String> {
        if raw.len() != FOOTER_LEN {
            return Err(format!("footer is {} bytes, want {FOOTER_LEN}", raw.len()));
        }
        let f: Footer = bytemuck::pod_read_unaligned(raw);
        if f.magic != MAGIC {
            return Err(format!("bad magic {:#x}", f.magic));
        }
        if crc32fast::hash(&raw[..FOOTER_LEN - 4]) != f.crc {
            return Err("footer checksum mismatch".into());
        }
        if f.version != VERSION {
            return Err(format!("unsupported SST version {}", f.version));
        }
        Ok(f)
    }
}

/// The fixed head of the properties block; the smallest and largest internal keys follow it
/// (`smallest_len` and `largest_len` bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct PropertiesHead {
    pub num_entries: u64,
    pub num_tombstones: u64,
    pub num_locks: u64,
    pub num_data_blocks: u64,
    pub min_seq: u64,
    pub max_seq: u64,
    pub min_ts_wall: u64,
    pub max_ts_wall: u64,
    pub min_ts_logical: u32,
    pub max_ts_logical: u32,
    pub smallest_len: u32,
    pub largest_len: u32,
}

pub const PROPERTIES_HEAD_LEN: usize = std::mem::size_of::<PropertiesHead>();

/// What an SST holds, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Properties {
    pub num_entries: u64,
    pub num_tombstones: u64,
    pub num_locks: u64,
    pub num_data_blocks: u64,
    pub min_seq: u64,
    pub max_seq: u64,
    /// Timestamp bounds of the MVCC versions (`MAX..MIN` when there are none).
    pub min_ts: Timestamp,
    pub max_ts: Timestamp,
    pub smallest: Vec<u8>,
    pub largest: Vec<u8>,
}

impl Properties {
    pub fn encode(&self) -> Vec<u8> {
        let head = PropertiesHead {
            num_entries: self.num_entries,
            num_tombstones: self.num_tombstones,
            num_locks: self.num_locks,
            num_data_blocks: self.num_data_blocks,
            min_seq: self.min_seq,
            max_seq: self.max_seq,
            min_ts_wall: self.min_ts.wall,
            max_ts_wall: self.max_ts.wall,
            min_ts_logical: self.min_ts.logical,
            max_ts_logical: self.max_ts.logical,
            smallest_len: self.smallest.len() as u32,
            largest_len: self.largest.len() as u32,
        };
        let mut out = bytemuck::bytes_of(&head).to_vec();
        out.extend_from_slice(&self.smallest);
        out.extend_from_slice(&self.largest);
        out
    }

    pub fn decode(raw: &[u8]) -> Result<Properties, String> {
        if raw.len() < PROPERTIES_HEAD_LEN {
            return Err("properties block too short".into());
        }
        let h: PropertiesHead = bytemuck::pod_read_unaligned(&raw[..PROPERTIES_HEAD_LEN]);
        let rest = &raw[PROPERTIES_HEAD_LEN..];
        let (s, l) = (h.smallest_len as usize, h.largest_len as usize);
        if rest.len() != s + l {
            return Err("properties key lengths do not match the block".into());
        }
        Ok(Properties {
            num_entries: h.num_entries,
            num_tombstones: h.num_tombstones,
            num_locks: h.num_locks,
            num_data_blocks: h.num_data_blocks,
            min_seq: h.min_seq,
            max_seq: h.max_seq,
            min_ts: Timestamp::new(h.min_ts_wall, h.min_ts_logical),
            max_ts: Timestamp::new(h.max_ts_wall, h.max_ts_logical),
            smallest: rest[..s].to_vec(),
            largest: rest[s..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_round_trips_and_detects_damage() {
        let f = Footer {
            index: BlockHandle {
                offset: 10,
                len: 20,
            },
            bloom: BlockHandle { offset: 34, len: 5 },
            properties: BlockHandle {
                offset: 43,
                len: 100,
            },
            data_end: 10,
            reserved: 0,
            magic: 0,
            version: 0,
            crc: 0,
        }
        .seal();
        let raw = bytemuck::bytes_of(&f).to_vec();
        assert_eq!(raw.len(), 80);
        let back = Footer::decode(&raw).unwrap();
        assert_eq!(back.index, f.index);
        let mut bad = raw.clone();
        bad[3] ^= 1;
        assert!(Footer::decode(&bad).is_err());
    }
}
