//! Builds an SST in memory from entries given in internal-key order.

use super::block::BlockBuilder;
use super::bloom;
use super::footer::{BlockHandle, Footer, Properties, FOOTER_LEN};
use crate::lsm::file::pad_for_tail;
use crate::lsm::key;
use crate::Timestamp;

pub struct TableBuilder {
    out: Vec<u8>,
    data: BlockBuilder,
    index: BlockBuilder,
    block_size: usize,
    bloom_bits_per_key: usize,
    hashes: Vec<u64>,
    last_head: Vec<u8>,
    props: Properties,
}

impl TableBuilder {
    pub fn new(block_size: usize, bloom_bits_per_key: usize) -> Self {
        TableBuilder {
            out: Vec::new(),
            data: BlockBuilder::new(16),
            index: BlockBuilder::new(1),
            block_size,
            bloom_bits_per_key,
            hashes: Vec::new(),
            last_head: Vec::new(),
            props: Properties {
                num_entries: 0,
                num_tombstones: 0,
                num_locks: 0,
                num_data_blocks: 0,
                min_seq: u64::MAX,
                max_seq: 0,
                min_ts: Timestamp::MAX,
                max_ts: Timestamp::MIN,
                smallest: Vec::new(),
                largest: Vec::new(),
            },
        }
    }

    /// Adds an entry; keys must be strictly increasing internal keys.
    pub fn add(&mut self, k: &[u8], v: &[u8]) {
        if self.data.estimated_size() >= self.block_size {
            self.finish_block();
        }
        let p = &mut self.props;
        if p.num_entries == 0 {
            p.smallest = k.to_vec();
        }
        p.num_entries += 1;
        let seq = key::seq(k);
        p.min_seq = p.min_seq.min(seq);
        p.max_seq = p.max_seq.max(seq);
        if key::space(k) == key::SPACE_MVCC {
            let ts = key::ts(k);
            p.min_ts = p.min_ts.min(ts);
            p.max_ts = p.max_ts.max(ts);
            if v.first() == Some(&key::KIND_TOMBSTONE) {
                p.num_tombstones += 1;
            }
        } else {
            p.num_locks += 1;
        }
        let head = key::head(k);
        if head != self.last_head.as_slice() {
            self.hashes.push(bloom::hash(head));
            self.last_head.clear();
            self.last_head.extend_from_slice(head);
        }
        self.data.add(k, v);
    }

    pub fn num_entries(&self) -> u64 {
        self.props.num_entries
    }

    /// Bytes written so far (a little less than the finished file).
    pub fn estimated_size(&self) -> usize {
        self.out.len() + self.data.estimated_size()
    }

    fn append_block(&mut self, raw: &[u8]) -> BlockHandle {
        let h = BlockHandle {
            offset: self.out.len() as u64,
            len: raw.len() as u64,
        };
        self.out.extend_from_slice(raw);
        self.out
            .extend_from_slice(&crc32fast::hash(raw).to_le_bytes());
        h
    }

    fn finish_block(&mut self) {
        if self.data.is_empty() {
            return;
        }
        let last = self.data.last_key().to_vec();
        let raw = self.data.finish();
        let h = self.append_block(&raw);
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&h.offset.to_le_bytes());
        v.extend_from_slice(&h.len.to_le_bytes());
        self.index.add(&last, &v);
        self.props.largest = last;
        self.props.num_data_blocks += 1;
    }

    /// Returns the whole file (a multiple of 4 KiB) and its properties.
    pub fn finish(mut self) -> (Vec<u8>, Properties) {
        self.finish_block();
        let data_end = self.out.len() as u64;
        let raw = self.index.finish();
        let index = self.append_block(&raw);
        let raw = bloom::build(&self.hashes, self.bloom_bits_per_key);
        let bloom = self.append_block(&raw);
        let raw = self.props.encode();
        let properties = self.append_block(&raw);
        pad_for_tail(&mut self.out, FOOTER_LEN);
        let footer = Footer {
            index,
            bloom,
            properties,
            data_end,
            reserved: 0,
            magic: 0,
            version: 0,
            crc: 0,
        }
        .seal();
        self.out.extend_from_slice(bytemuck::bytes_of(&footer));
        (self.out, self.props)
    }
}
