//! The network front of a node: pgwire for SQL clients and a small HTTP server for health
//! checks and Prometheus metrics.

pub mod http;
pub mod pgwire;
