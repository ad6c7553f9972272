//! chitin-net: node-to-node networking.
//!
//! Planned (issue 5): TCP transport on glommio with prost-encoded messages, raft messages
//! batched per destination node, KV request/response, heartbeats, backpressure, reconnect
//! with backoff and a fault-injection hook for tests.
//!
//! Implementation caveats: nothing lives here yet. A single node needs no transport; the
//! pgwire connection state machine is in the server crate (`src/server/pgwire.rs`), on top
//! of the `pgwire` crate's codec.
