//! The two caches every read goes through: open tables (bounded number of open files) and
//! decoded data blocks (bounded bytes). Direct I/O bypasses the page cache, so the block
//! cache is the only cache there is.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

use super::cache::LruCache;
use super::file::sst_path;
use super::sst::block::Block;
use super::sst::Table;
use crate::Result;

/// Counters for tests, benches and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub table_opens: u64,
    pub block_hits: u64,
    pub block_misses: u64,
}

pub struct TableCache {
    dir: PathBuf,
    tables: RefCell<LruCache<u64, Rc<Table>>>,
    blocks: RefCell<LruCache<(u64, u64), Rc<Block>>>,
    table_opens: Cell<u64>,
    block_hits: Cell<u64>,
    block_misses: Cell<u64>,
}

impl TableCache {
    pub fn new(dir: PathBuf, max_open_files: usize, block_cache_bytes: usize) -> Self {
        TableCache {
            dir,
            tables: RefCell::new(LruCache::new(max_open_files.max(1))),
            blocks: RefCell::new(LruCache::new(block_cache_bytes)),
            table_opens: Cell::new(0),
            block_hits: Cell::new(0),
            block_misses: Cell::new(0),
        }
    }

    /// Returns the open table `number`, opening it (and maybe closing the least recently
    /// used one) if needed.
    pub async fn table(&self, number: u64) -> Result<Rc<Table>> {
        if let Some(t) = self.tables.borrow().get(&number) {
            return Ok(t);
        }
        let t = Rc::new(Table::open(sst_path(&self.dir, number), number).await?);
        self.table_opens.set(self.table_opens.get() + 1);
        self.tables.borrow_mut().insert(number, t.clone(), 1);
        Ok(t)
    }

    /// Returns data block `i` of `table`, from the cache or from disk.
    // PERF: the hot path of every read that misses the memtable.
    pub async fn block(&self, table: &Table, i: usize) -> Result<Rc<Block>> {
        let k = (table.number, table.block_offset(i));
        if let Some(b) = self.blocks.borrow().get(&k) {
            self.block_hits.set(self.block_hits.get() + 1);
            return Ok(b);
        }
        self.block_misses.set(self.block_misses.get() + 1);
        let b = Rc::new(table.read_block(i).await?);
        let charge = b.charge();
        self.blocks.borrow_mut().insert(k, b.clone(), charge);
        Ok(b)
    }

    /// Forgets a deleted table and its blocks.
    pub fn evict(&self, number: u64) {
        self.tables.borrow_mut().remove(&number);
        self.blocks.borrow_mut().retain(|(n, _)| *n != number);
    }

    pub fn open_tables(&self) -> usize {
        self.tables.borrow().len()
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            table_opens: self.table_opens.get(),
            block_hits: self.block_hits.get(),
            block_misses: self.block_misses.get(),
        }
    }
}
