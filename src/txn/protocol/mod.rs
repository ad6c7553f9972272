//! The transaction protocol, as sans-I/O logic (issue 4). ESSAY TODO

pub mod clock;
pub mod cluster;
pub mod commit;
pub mod conflict;
pub mod coordinator;
pub mod error;
pub mod event;
#[cfg(test)]
pub mod harness;
pub mod latch;
pub mod lock_table;
pub mod meta;
pub mod mvcc;
pub mod push;
pub mod range;
pub mod record;
pub mod recovery;
pub mod refresh;
#[cfg(test)]
mod tests;
pub mod ts_cache;
pub mod txn_wait;
