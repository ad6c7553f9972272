//! chitin-bench: the tools that measure Chitin.
//!
//! - [`workload`]: the load generator behind `chitin workload` (YCSB, kv, bank), a pgwire
//!   client that runs unchanged against Chitin and PostgreSQL.
//! - `benches/`: Criterion micro-benchmarks of the storage layer (`cargo bench -p
//!   chitin-bench`).
//!
//! This crate uses public APIs only and never depends on the `chitin` server crate (which
//! depends on it, to expose `chitin workload`).

pub mod workload;
