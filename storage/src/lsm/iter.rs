//! Cursors over internal keys: one per memtable, per SST, per sorted level, and the
//! merging cursor over all of them that every read and every compaction uses.
//!
//! The contract, the same at every layer (after pebble's `InternalIterator`):
//! - `seek_ge(k)` positions at the first entry `>= k`; `seek_lt(k)` at the last entry
//!   `< k`; `next`/`prev` step one entry. A cursor that runs off either end is invalid,
//!   and `key`/`value` must not be called on an invalid cursor (they panic).
//! - An error (I/O, corruption) is returned by the call that met it; the cursor's position
//!   is then unspecified and the caller must stop using it.
//! - Keys are internal keys in [`key::compare`] order. The merging cursor additionally
//!   hides entries whose seqno is above its snapshot.

use std::cmp::Ordering;
use std::rc::Rc;

use super::key::{self, Seqno};
use super::memtable::Memtable;
use super::sst::block::Block;
use super::sst::Table;
use super::table_cache::TableCache;
use super::version::TableMeta;
use crate::Result;

/// Sorts before every internal key.
pub fn min_key() -> Vec<u8> {
    vec![0u8; key::TRAILER_LEN + 1]
}

/// Sorts after every internal key.
pub fn max_key() -> Vec<u8> {
    vec![0xffu8; key::TRAILER_LEN + 1]
}

pub struct MemIter {
    mem: Rc<Memtable>,
    cur: Option<(Vec<u8>, Vec<u8>)>,
}

impl MemIter {
    pub fn new(mem: Rc<Memtable>) -> Self {
        MemIter { mem, cur: None }
    }
}

pub struct TableIter {
    cache: Rc<TableCache>,
    table: Rc<Table>,
    block_idx: usize,
    block: Option<Rc<Block>>,
    pos: usize,
    /// Sequential mode (compactions): read this many bytes of blocks at a time, around
    /// the block cache.
    readahead: usize,
    /// Blocks read ahead: `ahead[k]` is block `ahead_first + k`.
    ahead: Vec<Rc<Block>>,
    ahead_first: usize,
}

impl TableIter {
    pub fn new(cache: Rc<TableCache>, table: Rc<Table>) -> Self {
        TableIter {
            cache,
            table,
            block_idx: 0,
            block: None,
            pos: 0,
            readahead: 0,
            ahead: Vec::new(),
            ahead_first: 0,
        }
    }

    /// A cursor for one pass over the whole table (compaction): large reads, and the
    /// blocks it reads do not displace the foreground's working set in the block cache.
    pub fn sequential(cache: Rc<TableCache>, table: Rc<Table>, readahead: usize) -> Self {
        TableIter {
            readahead: readahead.max(1),
            ..TableIter::new(cache, table)
        }
    }

    async fn load(&mut self, i: usize) -> Result<()> {
        self.block_idx = i;
        if self.readahead == 0 {
            self.block = Some(self.cache.block(&self.table, i).await?);
            return Ok(());
        }
        let hit = i >= self.ahead_first && i < self.ahead_first + self.ahead.len();
        if !hit {
            self.ahead = self
                .table
                .read_blocks(i, self.readahead)
                .await?
                .into_iter()
                .map(Rc::new)
                .collect();
            self.ahead_first = i;
        }
        self.block = Some(self.ahead[i - self.ahead_first].clone());
        Ok(())
    }

    pub(crate) fn valid(&self) -> bool {
        self.block.as_ref().is_some_and(|b| self.pos < b.len())
    }

    async fn seek_first(&mut self) -> Result<()> {
        self.block = None;
        if self.table.num_blocks() > 0 {
            self.load(0).await?;
            self.pos = 0;
        }
        Ok(())
    }

    async fn seek_last(&mut self) -> Result<()> {
        self.block = None;
        let n = self.table.num_blocks();
        if n > 0 {
            self.load(n - 1).await?;
            self.pos = self.block.as_ref().unwrap().len().saturating_sub(1);
        }
        Ok(())
    }

    pub(crate) async fn seek_ge(&mut self, k: &[u8]) -> Result<()> {
        self.block = None;
        let i = self.table.find_block(k);
        if i < self.table.num_blocks() {
            self.load(i).await?;
            self.pos = self.block.as_ref().unwrap().seek_ge(k);
            if !self.valid() {
                // Cannot happen with a sane index (the block's last key is >= k).
                self.next_block().await?;
            }
        }
        Ok(())
    }

    async fn seek_lt(&mut self, k: &[u8]) -> Result<()> {
        self.block = None;
        let i = self.table.find_block(k);
        if i < self.table.num_blocks() {
            self.load(i).await?;
            let p = self.block.as_ref().unwrap().seek_ge(k);
            if p > 0 {
                self.pos = p - 1;
                return Ok(());
            }
        }
        if i == 0 {
            self.block = None;
            return Ok(());
        }
        self.load(i - 1).await?;
        self.pos = self.block.as_ref().unwrap().len().saturating_sub(1);
        Ok(())
    }

    async fn next_block(&mut self) -> Result<()> {
        if self.block_idx + 1 < self.table.num_blocks() {
            self.load(self.block_idx + 1).await?;
            self.pos = 0;
        } else {
            self.block = None;
        }
        Ok(())
    }

    pub(crate) async fn next(&mut self) -> Result<()> {
        self.pos += 1;
        if !self.valid() {
            self.next_block().await?;
        }
        Ok(())
    }

    async fn prev(&mut self) -> Result<()> {
        if self.pos > 0 {
            self.pos -= 1;
        } else if self.block_idx > 0 {
            self.load(self.block_idx - 1).await?;
            self.pos = self.block.as_ref().unwrap().len().saturating_sub(1);
        } else {
            self.block = None;
        }
        Ok(())
    }

    pub(crate) fn key(&self) -> &[u8] {
        self.block.as_ref().unwrap().key(self.pos)
    }

    pub(crate) fn value(&self) -> &[u8] {
        self.block.as_ref().unwrap().value(self.pos)
    }
}

/// The tables of one sorted level (L1+), visited one after another.
pub struct LevelIter {
    cache: Rc<TableCache>,
    tables: Vec<Rc<TableMeta>>,
    idx: usize,
    cur: Option<TableIter>,
    /// Passed on to each table's cursor (see [`TableIter::sequential`]).
    readahead: usize,
}

impl LevelIter {
    pub fn new(cache: Rc<TableCache>, tables: Vec<Rc<TableMeta>>) -> Self {
        LevelIter {
            cache,
            tables,
            idx: 0,
            cur: None,
            readahead: 0,
        }
    }

    pub fn sequential(cache: Rc<TableCache>, tables: Vec<Rc<TableMeta>>, readahead: usize) -> Self {
        LevelIter {
            readahead: readahead.max(1),
            ..LevelIter::new(cache, tables)
        }
    }

    async fn open(&mut self, i: usize) -> Result<&mut TableIter> {
        self.idx = i;
        let t = self.cache.table(self.tables[i].number).await?;
        let it = if self.readahead > 0 {
            TableIter::sequential(self.cache.clone(), t, self.readahead)
        } else {
            TableIter::new(self.cache.clone(), t)
        };
        Ok(self.cur.insert(it))
    }

    fn valid(&self) -> bool {
        self.cur.as_ref().is_some_and(|c| c.valid())
    }

    async fn skip_forward(&mut self) -> Result<()> {
        while !self.valid() && self.idx + 1 < self.tables.len() {
            self.open(self.idx + 1).await?.seek_first().await?;
        }
        Ok(())
    }

    async fn skip_backward(&mut self) -> Result<()> {
        while !self.valid() && self.idx > 0 && self.cur.is_some() {
            self.open(self.idx - 1).await?.seek_last().await?;
        }
        Ok(())
    }

    async fn seek_ge(&mut self, k: &[u8]) -> Result<()> {
        self.cur = None;
        let i = self
            .tables
            .partition_point(|t| key::compare(&t.largest, k) == Ordering::Less);
        if i < self.tables.len() {
            self.open(i).await?.seek_ge(k).await?;
            self.skip_forward().await?;
        }
        Ok(())
    }

    async fn seek_lt(&mut self, k: &[u8]) -> Result<()> {
        self.cur = None;
        let i = self
            .tables
            .partition_point(|t| key::compare(&t.smallest, k) == Ordering::Less);
        if i > 0 {
            self.open(i - 1).await?.seek_lt(k).await?;
            self.skip_backward().await?;
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<()> {
        self.cur.as_mut().unwrap().next().await?;
        self.skip_forward().await
    }

    async fn prev(&mut self) -> Result<()> {
        self.cur.as_mut().unwrap().prev().await?;
        self.skip_backward().await
    }
}

/// One input of a merge.
pub enum Source {
    Mem(MemIter),
    Table(TableIter),
    Level(LevelIter),
}

impl Source {
    fn valid(&self) -> bool {
        match self {
            Source::Mem(m) => m.cur.is_some(),
            Source::Table(t) => t.valid(),
            Source::Level(l) => l.valid(),
        }
    }

    fn key(&self) -> &[u8] {
        match self {
            Source::Mem(m) => &m.cur.as_ref().unwrap().0,
            Source::Table(t) => t.key(),
            Source::Level(l) => l.cur.as_ref().unwrap().key(),
        }
    }

    fn value(&self) -> &[u8] {
        match self {
            Source::Mem(m) => &m.cur.as_ref().unwrap().1,
            Source::Table(t) => t.value(),
            Source::Level(l) => l.cur.as_ref().unwrap().value(),
        }
    }

    async fn seek_ge(&mut self, k: &[u8]) -> Result<()> {
        match self {
            Source::Mem(m) => {
                m.cur = m.mem.next_from(k, true);
                Ok(())
            }
            Source::Table(t) => t.seek_ge(k).await,
            Source::Level(l) => l.seek_ge(k).await,
        }
    }

    async fn seek_lt(&mut self, k: &[u8]) -> Result<()> {
        match self {
            Source::Mem(m) => {
                m.cur = m.mem.prev_before(k);
                Ok(())
            }
            Source::Table(t) => t.seek_lt(k).await,
            Source::Level(l) => l.seek_lt(k).await,
        }
    }

    async fn next(&mut self) -> Result<()> {
        match self {
            Source::Mem(m) => {
                let k = m.cur.take().unwrap().0;
                m.cur = m.mem.next_from(&k, false);
                Ok(())
            }
            Source::Table(t) => t.next().await,
            Source::Level(l) => l.next().await,
        }
    }

    async fn prev(&mut self) -> Result<()> {
        match self {
            Source::Mem(m) => {
                let k = m.cur.take().unwrap().0;
                m.cur = m.mem.prev_before(&k);
                Ok(())
            }
            Source::Table(t) => t.prev().await,
            Source::Level(l) => l.prev().await,
        }
    }
}

/// Merges sources in one direction (fixed at creation), hiding entries above `snapshot`.
pub struct MergingIter {
    sources: Vec<Source>,
    cur: Option<usize>,
    reverse: bool,
    snapshot: Seqno,
}

impl MergingIter {
    pub fn new(sources: Vec<Source>, reverse: bool, snapshot: Seqno) -> Self {
        MergingIter {
            sources,
            cur: None,
            reverse,
            snapshot,
        }
    }

    /// Forward: positions at the first entry `>= k`. Reverse: at the last entry `< k`.
    pub async fn seek(&mut self, k: &[u8]) -> Result<()> {
        for s in &mut self.sources {
            if self.reverse {
                s.seek_lt(k).await?;
            } else {
                s.seek_ge(k).await?;
            }
        }
        self.pick();
        self.skip_invisible().await
    }

    pub fn valid(&self) -> bool {
        self.cur.is_some()
    }

    pub fn key(&self) -> &[u8] {
        self.sources[self.cur.unwrap()].key()
    }

    pub fn value(&self) -> &[u8] {
        self.sources[self.cur.unwrap()].value()
    }

    /// Steps to the next entry in the iteration direction.
    pub async fn advance(&mut self) -> Result<()> {
        self.step().await?;
        self.skip_invisible().await
    }

    async fn step(&mut self) -> Result<()> {
        let i = self.cur.expect("advance on an invalid iterator");
        if self.reverse {
            self.sources[i].prev().await?;
        } else {
            self.sources[i].next().await?;
        }
        self.pick();
        Ok(())
    }

    async fn skip_invisible(&mut self) -> Result<()> {
        while self.cur.is_some() && key::seq(self.key()) > self.snapshot {
            self.step().await?;
        }
        Ok(())
    }

    // PERF: a linear pick is right for the handful of sources a read has (memtables, L0
    // files, one per level); a heap would pay off beyond ~16.
    fn pick(&mut self) {
        let mut best: Option<usize> = None;
        for (i, s) in self.sources.iter().enumerate() {
            if !s.valid() {
                continue;
            }
            best = match best {
                None => Some(i),
                Some(b) => {
                    let ord = key::compare(s.key(), self.sources[b].key());
                    let better = if self.reverse {
                        ord == Ordering::Greater
                    } else {
                        ord == Ordering::Less
                    };
                    if better {
                        Some(i)
                    } else {
                        Some(b)
                    }
                }
            };
        }
        self.cur = best;
    }
}
