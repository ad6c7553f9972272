//! The transaction protocol as sans-I/O logic (issue 4): CockroachDB's protocol — HLC
//! timestamps with uncertainty intervals, intents and transaction records, pushes and
//! deadlock detection, the timestamp cache, read refresh, one-phase and parallel commits
//! with status recovery — written as plain functions and state machines over in-memory
//! ranges. Nothing here spawns, blocks, sleeps, or reads the wall clock: time comes from a
//! [`clock::PhysicalClock`] (tests use [`clock::ManualClock`]), and a request that must
//! wait returns [`cluster::Step::Blocked`] instead of waiting. The node will adopt these
//! pieces behind its glommio shell; today's gateway transaction (`super::Txn`) is untouched.
//!
//! # The parts
//!
//! | file | concept |
//! |---|---|
//! | `meta.rs` | ids (`TxnId`, `NodeId`, `Priority`, `Epoch`), `Key`/`Value`/`Span`, `TxnMeta`, `Ts` (printing) |
//! | `clock.rs` | [`clock::Hlc`] over a pluggable physical clock; the max-offset check |
//! | `mvcc.rs` | one range's versions and intents; uncertainty, write-too-old, refresh checks |
//! | `latch.rs` | span latches held while one request evaluates |
//! | `lock_table.rs` | per-key FIFO queues of requests waiting for an intent's owner |
//! | `ts_cache.rs` | highest read per span, with a low-water mark |
//! | `record.rs` | transaction records: PENDING / STAGING / COMMITTED / ABORTED, heartbeat, expiry |
//! | `push.rs` | the push decision (PUSH_TIMESTAMP, PUSH_ABORT) as a pure function |
//! | `txn_wait.rs` | the txn wait queue; dependents propagation; the deadlock victim |
//! | `refresh.rs` | the spans a transaction read |
//! | `coordinator.rs` | the client side of one transaction (timestamps, observed timestamps, writes) |
//! | `range.rs` | one range: MVCC + concurrency manager + records + wait queue |
//! | `cluster.rs` | nodes and ranges end to end: reads, writes, `UPDATE k = k + n`, time, resolution |
//! | `conflict.rs` | meeting an intent: push, resolve, or park; finishing a txn wakes its waiters; deadlocks |
//! | `commit.rs` | read-only, 1PC and parallel commits; rollback |
//! | `recovery.rs` | status recovery of expired STAGING records; delivery of in-flight writes |
//! | `event.rs` | what happened inside a request, for people |
//! | `harness.rs`, `tests.rs` | the golden-file driver (`testdata/*.txt`) and the bank test |
//!
//! # Life of a transaction
//!
//! 1. [`cluster::Cluster::begin`] takes a timestamp from the gateway's HLC: the read and
//!    write timestamps, and the global uncertainty limit (start + max offset).
//! 2. Every request first reaches its range's node ([`cluster::Cluster::contact`]): both
//!    clocks [`clock::Hlc::update`] from each other (refusing a clock beyond the max
//!    offset), and the first contact with a node records its clock as an observed
//!    timestamp, which caps the uncertainty limit for values read there.
//! 3. A read ([`cluster::Cluster::get`], [`cluster::Cluster::scan`]) takes a read latch and
//!    asks [`mvcc::MvccStore::get`]. A foreign intent at or below the uncertainty limit
//!    means pushing its writer ([`conflict`]: [`push::decide`]) — resolve it if the writer
//!    finished, move it up if the push succeeds, else park in the lock table and the
//!    pushee's txn wait queue. A committed value in the uncertainty interval moves the read
//!    timestamp above it by a refresh (SERIALIZABLE) or a new statement snapshot (READ
//!    COMMITTED). The read is recorded in the timestamp cache and the refresh spans.
//! 4. A write ([`cluster::Cluster::put`]) takes a write latch, moves above the timestamp
//!    cache ([`ts_cache::TimestampCache::push_for_write`]) and above newer committed
//!    versions (write too old), and places an intent — a pipelined write: one proposal the
//!    client does not wait for. The first write also writes the PENDING record on the
//!    anchor range. A foreign intent means PUSH_ABORT, or waiting.
//! 5. Time passes ([`cluster::Cluster::tick`]): live coordinators heartbeat; parked pushes
//!    are retried, and an expired pushee is aborted (or, if STAGING, recovered).
//!    [`cluster::Cluster::detect_deadlocks`] propagates dependents through the wait queues
//!    and aborts the weakest member of each cycle.
//! 6. [`commit::CommitKind`]: a transaction without writes commits locally; one whose
//!    writes all come with the commit and land on one range commits in one proposal (1PC);
//!    otherwise the last writes and a STAGING record listing every write go out in one round
//!    (parallel commit). SERIALIZABLE first refreshes if its write timestamp moved
//!    ([`cluster::Cluster::refresh`]); failure is a 40001 with a reason
//!    ([`error::RetryReason`]). Once all in-flight writes are replicated at or below the
//!    staging timestamp the transaction is committed; the record becomes COMMITTED, waiters
//!    are woken ([`conflict`]'s `finish`), and intents are queued for asynchronous, batched
//!    resolution ([`cluster::Cluster::resolve_intents`]).
//! 7. A coordinator that dies after staging leaves a STAGING record. The first pusher that
//!    finds it expired runs [`cluster::Cluster::recover`]: all writes found → COMMITTED;
//!    one missing → prevented through the timestamp cache → ABORTED.
//!
//! # Invariants
//!
//! - At most one intent per key; a write never lands at or below a read served on its key
//!   by another transaction (timestamp cache), nor at or below a committed version.
//! - A SERIALIZABLE transaction commits only at a timestamp where all its reads are still
//!   valid (read timestamp = commit timestamp, after refresh).
//! - A transaction record's final status never changes; a STAGING transaction is aborted
//!   only after the missing write was prevented.
//! - Deadlock breaking aborts exactly one transaction per cycle, chosen deterministically.
//!
//! # Implementation caveats
//!
//! - One request evaluates at a time, so latches never contend here; a concurrent shell
//!   must wait on [`latch::LatchConflict`]. Replication is counted, not run: each write
//!   batch a range applies is one "proposal"; no raft, leases or lease transfers (the
//!   timestamp cache's low-water mark is not yet raised on a lease change).
//! - A retryable error ends the transaction (its record becomes ABORTED); the client runs
//!   a new one. No epoch restarts that keep intents, no savepoints.
//! - A coordinator learns that a pusher aborted (or pushed) it at its next request, as a
//!   heartbeat response would tell it; there is no asynchronous heartbeat loop.
//! - Priorities are fixed per transaction (no random priorities, no priority bumps after
//!   restarts). PUSH_TIMESTAMP always succeeds on a READ COMMITTED pushee (it needs no
//!   refresh), as in CockroachDB; a READ COMMITTED reader still waits for a SERIALIZABLE
//!   writer's intent at equal priority. A reader pushes a writer above its *uncertainty
//!   limit*, not just its read timestamp.
//! - Observed timestamps are per node and taken at first contact; CockroachDB's "local
//!   timestamp" refinement for values moved by pushes is not modelled.
//! - The timestamp cache is a bounded list scanned linearly (evicting into the low-water
//!   mark), not an interval skiplist. Records are never garbage-collected.
//! - 1PC applies only when the transaction wrote nothing before the commit; its refresh
//!   (if the write timestamp moved) is done by the coordinator, not server-side.
//! - A pipelined write that lands above the staging timestamp makes a live coordinator
//!   refresh and stage again (one more round). One that meets another transaction's intent
//!   when it is finally evaluated fails (RETRY_ASYNC_WRITE_FAILURE) instead of queueing in
//!   the lock table.
//! - Status recovery runs when a pusher finds an expired STAGING record, or when asked
//!   (`recover` in scripts); a recovering pusher does not first wait for in-flight writes.
//! - Ranges are fixed at creation (split points), one lease-holding node each.
//! - The golden scripts run with a max clock offset of 0 unless a script sets one (the
//!   harness's clocks agree exactly until skewed); the bank test uses the default 500 ms.
//!
//! # Tests
//!
//! `CARGO_TARGET_DIR=/work/target-txn cargo test --lib txn::protocol`; regenerate the
//! golden files with `CHITIN_REWRITE=1` and review them by reading: one file per anomaly or
//! rule, named after it (Berenson et al. 1995, Adya 1999).

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
