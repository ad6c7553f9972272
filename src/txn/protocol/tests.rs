//! The golden files in `testdata/` (regenerate with `CHITIN_REWRITE=1`), and a randomized
//! bank workload checked for conservation of money and serializability.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chitin_storage::Timestamp;

use super::cluster::{Cluster, ClusterOptions, Step};
use super::coordinator::CoordState;
use super::error::TxnError;
use super::event::Event;
use super::harness::run_script;
use super::meta::{Key, NodeId, Priority, Span, TxnId, Value};
use crate::txn::Isolation;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/txn/protocol/testdata")
}

/// Runs one golden file; with `CHITIN_REWRITE=1` writes the output back instead.
fn golden(name: &str) {
    let path = testdata().join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let got = run_script(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    if std::env::var("CHITIN_REWRITE").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    if got != text {
        let diff: Vec<String> = text
            .lines()
            .zip(got.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}:\n  want: {a}\n  got:  {b}", i + 1))
            .collect();
        panic!(
            "{name}: output differs (CHITIN_REWRITE=1 regenerates; review the diff)\n{}",
            diff.join("\n")
        );
    }
}

macro_rules! golden_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                golden(stringify!($name));
            }
        )*

        /// Every file in `testdata/` has a test above.
        #[test]
        fn every_golden_file_has_a_test() {
            let known = [$(stringify!($name)),*];
            for e in std::fs::read_dir(testdata()).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().trim_end_matches(".txt").to_string();
                assert!(known.contains(&name.as_str()), "testdata/{name}.txt has no test");
            }
        }
    };
}

golden_tests!(
    dirty_write,
    dirty_read,
    lost_update,
    fuzzy_read,
    read_skew,
    write_skew,
    g2_predicate,
    read_committed_dirty_write,
    read_committed_dirty_read,
    read_committed_lost_update,
    read_committed_fuzzy_read,
    read_committed_read_skew,
    read_committed_write_skew,
    read_committed_g2_predicate,
    uncertainty,
    timestamp_cache,
    deadlock,
    push_expired,
    staging_recovery_committed,
    staging_recovery_aborted,
    one_phase_commit,
    parallel_commit,
    refresh,
    lock_wait_queue,
);

// ----- the bank ------------------------------------------------------------------------------

/// xorshift64*: deterministic randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ACCOUNTS: u64 = 6;
const INITIAL: i64 = 100;

fn acct(i: u64) -> Key {
    Key::new(&format!("acct/{i}"))
}

#[derive(Clone, Debug)]
enum Program {
    /// SERIALIZABLE: read both balances, write both.
    Transfer { from: u64, to: u64, amount: i64 },
    /// READ COMMITTED: `UPDATE from -= amount; UPDATE to += amount`.
    Increments { from: u64, to: u64, amount: i64 },
    /// SERIALIZABLE: scan every account and check the total.
    Audit,
}

/// One client running one transaction at a time.
struct Worker {
    program: Program,
    txn: TxnId,
    step: usize,
    reads: BTreeMap<Key, i64>,
    writes: BTreeMap<Key, i64>,
    /// The coordinator dies right after writing its STAGING record…
    crash: bool,
    /// Its second write is still in flight at commit (and the commit waits for it,
    /// unless the coordinator died).
    in_flight: bool,
}

impl Worker {
    fn idle() -> Worker {
        Worker {
            program: Program::Audit,
            txn: TxnId(0),
            step: 0,
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
            crash: false,
            in_flight: false,
        }
    }

    fn commit_step(&self) -> usize {
        match self.program {
            Program::Transfer { .. } => 4,
            Program::Increments { .. } => 2,
            Program::Audit => 1,
        }
    }
}

/// A committed transaction, for the serializability check.
struct Committed {
    txn: TxnId,
    ts: Timestamp,
    reads: BTreeMap<Key, i64>,
    writes: BTreeMap<Key, i64>,
}

#[derive(Default, Debug, Clone, Copy)]
struct BankStats {
    commits: usize,
    audits: usize,
    aborts: usize,
    crashed: usize,
    recovered_committed: usize,
    deadlocks: usize,
    pushes: usize,
    refreshes: usize,
    uncertain: usize,
}

struct Bank {
    cluster: Cluster,
    rng: Rng,
    next_txn: u64,
    history: Vec<Committed>,
    /// Transactions whose coordinator died after staging, with what they did.
    crashed: Vec<Worker>,
    stats: BankStats,
}

impl Bank {
    fn new(seed: u64) -> Bank {
        let mut cluster = Cluster::new(ClusterOptions {
            nodes: 3,
            splits: vec![acct(2), acct(4)],
            ..ClusterOptions::default()
        });
        let mut rng = Rng(seed | 1);
        for n in 1..=3 {
            let skew = rng.below(40_000_000) as i64;
            cluster.set_skew(NodeId(n), skew);
        }
        let setup = TxnId(1);
        cluster.begin(setup, NodeId(1), Isolation::Serializable, Priority::NORMAL);
        let writes: Vec<(Key, Option<Value>)> = (0..ACCOUNTS)
            .map(|i| (acct(i), Some(Value::new(&INITIAL.to_string()))))
            .collect();
        let out = cluster.commit(setup, &writes, false).unwrap();
        assert!(matches!(out, Step::Done(_)));
        cluster.resolve_intents();
        Bank {
            cluster,
            rng,
            next_txn: 2,
            history: Vec::new(),
            crashed: Vec::new(),
            stats: BankStats::default(),
        }
    }

    fn start(&mut self) -> Worker {
        let from = self.rng.below(ACCOUNTS);
        let to = (from + 1 + self.rng.below(ACCOUNTS - 1)) % ACCOUNTS;
        let amount = 1 + self.rng.below(20) as i64;
        let (program, isolation) = match self.rng.below(8) {
            0 | 1 => (Program::Audit, Isolation::Serializable),
            2 => (
                Program::Increments { from, to, amount },
                Isolation::ReadCommitted,
            ),
            _ => (
                Program::Transfer { from, to, amount },
                Isolation::Serializable,
            ),
        };
        let transfer = matches!(program, Program::Transfer { .. });
        let crash = transfer && self.rng.below(20) == 0;
        let in_flight = transfer && self.rng.below(if crash { 2 } else { 10 }) == 0;
        let txn = TxnId(self.next_txn);
        self.next_txn += 1;
        let node = NodeId(1 + self.rng.below(3) as u32);
        let priority =
            [Priority::LOW, Priority::NORMAL, Priority::HIGH][self.rng.below(3) as usize];
        self.cluster.begin(txn, node, isolation, priority);
        Worker {
            program,
            txn,
            step: 0,
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
            crash,
            in_flight,
        }
    }

    /// Runs the worker's next request. Returns false when the transaction is over.
    fn step(&mut self, w: &mut Worker) -> bool {
        let c = &mut self.cluster;
        let res: Result<Step<()>, TxnError> = match (w.program.clone(), w.step) {
            (Program::Transfer { from, to, .. }, 0 | 1) => {
                let k = acct(if w.step == 0 { from } else { to });
                c.get(w.txn, &k).map(|s| match s {
                    Step::Done(v) => {
                        w.reads.insert(k, v.value.and_then(|v| v.as_int()).unwrap());
                        Step::Done(())
                    }
                    Step::Blocked(b) => Step::Blocked(b),
                })
            }
            (Program::Transfer { from, to, amount }, 2 | 3) => {
                let (k, v) = if w.step == 2 {
                    (acct(from), w.reads[&acct(from)] - amount)
                } else {
                    (acct(to), w.reads[&acct(to)] + amount)
                };
                w.writes.insert(k.clone(), v);
                let in_flight = w.step == 3 && w.in_flight;
                c.put(w.txn, &k, Some(Value::new(&v.to_string())), in_flight)
                    .map(map_unit)
            }
            (Program::Increments { from, to, amount }, 0 | 1) => {
                let (k, d) = if w.step == 0 {
                    (acct(from), -amount)
                } else {
                    (acct(to), amount)
                };
                c.increment(w.txn, &k, d).map(|s| match s {
                    Step::Done(i) => {
                        w.reads.insert(k.clone(), i.old);
                        w.writes.insert(k, i.new);
                        Step::Done(())
                    }
                    Step::Blocked(b) => Step::Blocked(b),
                })
            }
            (Program::Audit, 0) => {
                let span = Span::new(Key::new("acct/"), Key::new("acct0"));
                c.scan(w.txn, &span).map(|s| match s {
                    Step::Done(rows) => {
                        for r in rows {
                            w.reads
                                .insert(r.key, r.value.and_then(|v| v.as_int()).unwrap());
                        }
                        Step::Done(())
                    }
                    Step::Blocked(b) => Step::Blocked(b),
                })
            }
            _ => c.commit(w.txn, &[], w.crash).map(map_unit),
        };
        match res {
            Ok(Step::Done(())) => {
                let is_commit = w.step == w.commit_step();
                w.step += 1;
                if is_commit {
                    if w.crash {
                        self.stats.crashed += 1;
                        self.crashed.push(std::mem::replace(w, Worker::idle()));
                    } else {
                        self.committed(w);
                    }
                    return false;
                }
                true
            }
            Ok(Step::Blocked(_)) => true,
            Err(e) => {
                assert!(e.is_retryable(), "{}: unexpected error {e}", w.txn);
                self.stats.aborts += 1;
                false
            }
        }
    }

    fn committed(&mut self, w: &Worker) {
        let CoordState::Committed(ts) = self.cluster.coord(w.txn).state else {
            panic!("{} committed without a commit timestamp", w.txn)
        };
        self.record_commit(w, ts);
    }

    fn record_commit(&mut self, w: &Worker, ts: Timestamp) {
        if let Program::Audit = w.program {
            let total: i64 = w.reads.values().sum();
            assert_eq!(
                total,
                INITIAL * ACCOUNTS as i64,
                "audit {} saw {:?}",
                w.txn,
                w.reads
            );
            assert_eq!(w.reads.len() as u64, ACCOUNTS);
            self.stats.audits += 1;
        }
        self.stats.commits += 1;
        self.history.push(Committed {
            txn: w.txn,
            ts,
            reads: w.reads.clone(),
            writes: w.writes.clone(),
        });
    }

    /// Settles every crashed coordinator's transaction: delivers what is still in flight
    /// (maybe) and recovers its status; a recovered COMMITTED joins the history.
    fn settle_crashed(&mut self) {
        for w in std::mem::take(&mut self.crashed) {
            if self.rng.below(2) == 0 {
                self.cluster.deliver(w.txn);
            }
            let anchor = self.cluster.coord(w.txn).meta.anchor.clone();
            let status = self.cluster.recover(w.txn, &anchor);
            let rec = self.cluster.record(w.txn).cloned().unwrap();
            assert_eq!(status, Some(rec.status));
            if rec.status == super::record::TxnStatus::Committed {
                self.stats.recovered_committed += 1;
                self.record_commit(&w, rec.meta.write_ts);
            }
            self.cluster.deliver(w.txn);
        }
    }

    /// Replays committed transactions in commit-timestamp order: every value a transaction
    /// read must be the newest write (by commit timestamp) at or below its own commit
    /// timestamp — the history is equivalent to that serial order.
    fn check_serializable(&mut self) {
        self.settle_crashed();
        self.cluster.resolve_intents();
        let mut writes: BTreeMap<Key, Vec<(Timestamp, TxnId, i64)>> = BTreeMap::new();
        for c in &self.history {
            for (k, v) in &c.writes {
                writes.entry(k.clone()).or_default().push((c.ts, c.txn, *v));
            }
        }
        for vs in writes.values_mut() {
            vs.sort();
            for pair in vs.windows(2) {
                assert!(
                    pair[0].0 < pair[1].0,
                    "two commits wrote the same key at one timestamp: {pair:?}"
                );
            }
        }
        for c in &self.history {
            for (k, v) in &c.reads {
                let expected = writes
                    .get(k)
                    .and_then(|vs| vs.iter().rfind(|(ts, t, _)| *ts <= c.ts && *t != c.txn))
                    .map(|(_, _, v)| *v)
                    .unwrap_or(INITIAL);
                assert_eq!(
                    *v, expected,
                    "{} @ {:?} read {k}={v}, serial order says {expected}",
                    c.txn, c.ts
                );
            }
        }
        // The store ends where the serial order ends, with every intent resolved.
        let mut latest: BTreeMap<Key, (Timestamp, i64)> = BTreeMap::new();
        for (k, ts, v) in self.cluster.committed_versions() {
            latest.insert(k, (ts, v.and_then(|v| v.as_int()).unwrap()));
        }
        let total: i64 = latest.values().map(|(_, v)| v).sum();
        assert_eq!(total, INITIAL * ACCOUNTS as i64);
        for (k, vs) in &writes {
            assert_eq!(latest[k].1, vs.last().unwrap().2, "final value of {k}");
        }
    }

    fn count_events(&mut self) {
        for e in self.cluster.take_events() {
            match e {
                Event::DeadlockBroken { .. } => self.stats.deadlocks += 1,
                Event::PushedTimestamp { .. } | Event::AbortedByPush { .. } => {
                    self.stats.pushes += 1
                }
                Event::Refreshed { .. } => self.stats.refreshes += 1,
                Event::Uncertain { .. } => self.stats.uncertain += 1,
                _ => {}
            }
        }
    }
}

fn map_unit<T>(s: Step<T>) -> Step<()> {
    match s {
        Step::Done(_) => Step::Done(()),
        Step::Blocked(b) => Step::Blocked(b),
    }
}

/// Replicates the in-flight writes every waiting commit is waiting for.
fn deliver_in_flight(bank: &mut Bank) -> usize {
    let waiting: Vec<TxnId> = bank
        .cluster
        .waits
        .iter()
        .filter(|(_, w)| matches!(w, super::cluster::Wait::InFlight { .. }))
        .map(|(t, _)| *t)
        .collect();
    for t in &waiting {
        bank.cluster.deliver(*t);
    }
    waiting.len()
}

fn run_bank(seed: u64, steps: usize) -> BankStats {
    let mut bank = Bank::new(seed);
    let mut workers: Vec<Worker> = (0..4).map(|_| bank.start()).collect();
    let mut stuck = 0;
    for _ in 0..steps {
        // Parked requests that were woken run first; cancelled ones restart.
        bank.cluster.detect_deadlocks();
        for (txn, err) in bank.cluster.take_cancelled() {
            assert!(err.is_retryable());
            bank.stats.aborts += 1;
            if let Some(i) = workers.iter().position(|w| w.txn == txn) {
                workers[i] = bank.start();
            }
        }
        let runnable: Vec<usize> = if let Some(t) = bank.cluster.take_woken() {
            workers
                .iter()
                .position(|w| w.txn == t)
                .into_iter()
                .collect()
        } else {
            (0..workers.len())
                .filter(|i| !bank.cluster.is_blocked(workers[*i].txn))
                .collect()
        };
        bank.count_events();
        if runnable.is_empty() {
            // Everyone waits: for in-flight writes, or an abandoned transaction to expire.
            if deliver_in_flight(&mut bank) > 0 {
                // The woken commits run on the next turn.
                continue;
            }
            stuck += 1;
            assert!(
                stuck < 20,
                "seed {seed}: every worker blocked and nothing moves"
            );
            bank.cluster.tick(1_000_000_000);
            continue;
        }
        stuck = 0;
        let i = runnable[bank.rng.below(runnable.len() as u64) as usize];
        let mut w = std::mem::replace(&mut workers[i], Worker::idle());
        let alive = bank.step(&mut w);
        workers[i] = if alive { w } else { bank.start() };
        bank.count_events();
        match bank.rng.below(20) {
            0..=11 => bank.cluster.advance(1_000_000),
            12 | 13 => {
                bank.cluster.resolve_intents();
            }
            15 => {
                deliver_in_flight(&mut bank);
            }
            14 if !bank.crashed.is_empty() => {
                // A stray in-flight write of a dead coordinator arrives.
                let j = bank.rng.below(bank.crashed.len() as u64) as usize;
                let txn = bank.crashed[j].txn;
                bank.cluster.deliver(txn);
            }
            _ => {}
        }
    }
    bank.check_serializable();
    bank.stats
}

/// Random interleavings of transfers (SERIALIZABLE reads and writes, and READ COMMITTED
/// `UPDATE … += …` pairs) and full-sum audits over three ranges, with clock skew, random
/// priorities, pushes, deadlocks, refreshes, and coordinators that die after staging with
/// a write still in flight: money is conserved, every audit sees the full total, and the
/// history (including transactions recovered as committed) replays serially in
/// commit-timestamp order.
#[test]
fn bank_random_interleavings_are_serializable() {
    let mut t = BankStats::default();
    // More seeds: CHITIN_BANK_SEEDS=1000.
    let seeds: u64 = std::env::var("CHITIN_BANK_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    for seed in 1..=seeds {
        let s = run_bank(seed * 7919, 500);
        t.commits += s.commits;
        t.audits += s.audits;
        t.aborts += s.aborts;
        t.crashed += s.crashed;
        t.recovered_committed += s.recovered_committed;
        t.deadlocks += s.deadlocks;
        t.pushes += s.pushes;
        t.refreshes += s.refreshes;
        t.uncertain += s.uncertain;
    }
    // The workload must actually exercise the protocol.
    eprintln!("bank: {t:?}");
    assert!(t.commits > 1000, "{t:?}");
    assert!(t.audits > 100, "{t:?}");
    assert!(t.aborts > 10, "{t:?}");
    assert!(t.crashed > 10 && t.recovered_committed > 0, "{t:?}");
    assert!(t.deadlocks > 0 && t.pushes > 0 && t.refreshes > 0, "{t:?}");
}
