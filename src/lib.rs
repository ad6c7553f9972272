//! Chitin: a geo-distributed, serializable SQL database, thread-per-core.
//!
//! See `DESIGN.md` (shared) for the map. This crate holds the server: the node runtime
//! (`node`), ranges and raft (`kv`), transactions (`txn`), SQL (`sql`) and HTTP (`server`).

pub mod cluster;
pub mod error;
pub mod kv;
pub mod metrics;
pub mod node;
pub mod raftlog;
pub mod server;
pub mod sql;
pub mod txn;
