//! chitin-bench: the tools that measure Chitin.
//!
//! - [`workload`]: the load generator behind `chitin workload` (YCSB, kv, bank), a pgwire
//!   client that runs unchanged against Chitin and PostgreSQL.
//! - `benches/`: Criterion micro-benchmarks (`cargo bench -p chitin-bench`): raft log,
//!   key coding, memtable, MVCC gets, SST blocks, pgwire DataRow encoding, SPSC channels.
//! - `src/bin/storage-bench.rs`: `chitin-storage-bench`, the LSM engine (with the raft log
//!   as its WAL) against RocksDB (cargo feature `rocksdb`) on the same workloads.
//!
//! This crate uses public APIs only and never depends on the `chitin` server crate (which
//! depends on it, to expose `chitin workload`).

pub mod workload;
