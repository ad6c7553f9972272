//! The golden files in `testdata/` (regenerate with `CHITIN_REWRITE=1`), and a randomized
//! bank workload checked for conservation of money and serializability.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chitin_storage::Timestamp;

use super::cluster::{Cluster, ClusterOptions, Step};
use super::coordinator::CoordState;
use super::error::TxnError;
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
    Transfer { from: u64, to: u64, amount: i64 },
    Audit,
}

/// One client running one transaction at a time.
struct Worker {
    program: Program,
    txn: TxnId,
    step: usize,
    reads: BTreeMap<Key, i64>,
}

/// A committed transaction, for the serializability check.
struct Committed {
    txn: TxnId,
    ts: Timestamp,
    reads: BTreeMap<Key, i64>,
    writes: BTreeMap<Key, i64>,
}

struct Bank {
    cluster: Cluster,
    rng: Rng,
    next_txn: u64,
    history: Vec<Committed>,
    audits: usize,
    aborts: usize,
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
            audits: 0,
            aborts: 0,
        }
    }

    fn start(&mut self) -> Worker {
        let program = if self.rng.below(4) == 0 {
            Program::Audit
        } else {
            let from = self.rng.below(ACCOUNTS);
            let to = (from + 1 + self.rng.below(ACCOUNTS - 1)) % ACCOUNTS;
            Program::Transfer {
                from,
                to,
                amount: 1 + self.rng.below(20) as i64,
            }
        };
        let txn = TxnId(self.next_txn);
        self.next_txn += 1;
        let node = NodeId(1 + self.rng.below(3) as u32);
        let priority =
            [Priority::LOW, Priority::NORMAL, Priority::HIGH][self.rng.below(3) as usize];
        self.cluster
            .begin(txn, node, Isolation::Serializable, priority);
        Worker {
            program,
            txn,
            step: 0,
            reads: BTreeMap::new(),
        }
    }

    /// Runs the worker's next request. Returns false when the transaction is over.
    fn step(&mut self, w: &mut Worker) -> bool {
        let c = &mut self.cluster;
        let res: Result<Step<()>, TxnError> = match (&w.program, w.step) {
            (Program::Transfer { from, .. }, 0) | (Program::Transfer { to: from, .. }, 1) => {
                let k = acct(*from);
                c.get(w.txn, &k).map(|s| match s {
                    Step::Done(v) => {
                        w.reads.insert(k, v.value.and_then(|v| v.as_int()).unwrap());
                        Step::Done(())
                    }
                    Step::Blocked(b) => Step::Blocked(b),
                })
            }
            (Program::Transfer { from, amount, .. }, 2) => {
                let k = acct(*from);
                let v = w.reads[&k] - amount;
                c.put(w.txn, &k, Some(Value::new(&v.to_string())), false)
                    .map(map_unit)
            }
            (Program::Transfer { to, amount, .. }, 3) => {
                let k = acct(*to);
                let v = w.reads[&k] + amount;
                c.put(w.txn, &k, Some(Value::new(&v.to_string())), false)
                    .map(map_unit)
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
            _ => c.commit(w.txn, &[], false).map(map_unit),
        };
        match res {
            Ok(Step::Done(())) => {
                let is_commit = matches!(
                    (&w.program, w.step),
                    (Program::Transfer { .. }, 4) | (Program::Audit, 1)
                );
                w.step += 1;
                if is_commit {
                    self.committed(w);
                    return false;
                }
                true
            }
            Ok(Step::Blocked(_)) => true,
            Err(e) => {
                assert!(e.is_retryable(), "{}: unexpected error {e}", w.txn);
                self.aborts += 1;
                false
            }
        }
    }

    fn committed(&mut self, w: &Worker) {
        let CoordState::Committed(ts) = self.cluster.coord(w.txn).state else {
            panic!("{} committed without a commit timestamp", w.txn)
        };
        let mut writes = BTreeMap::new();
        if let Program::Transfer { from, to, amount } = w.program {
            writes.insert(acct(from), w.reads[&acct(from)] - amount);
            writes.insert(acct(to), w.reads[&acct(to)] + amount);
        } else {
            let total: i64 = w.reads.values().sum();
            assert_eq!(
                total,
                INITIAL * ACCOUNTS as i64,
                "audit {} saw {:?}",
                w.txn,
                w.reads
            );
            assert_eq!(w.reads.len() as u64, ACCOUNTS);
            self.audits += 1;
        }
        self.history.push(Committed {
            txn: w.txn,
            ts,
            reads: w.reads.clone(),
            writes,
        });
    }

    /// Replays committed transactions in commit-timestamp order: every value a transaction
    /// read must be the newest write (by commit timestamp) at or below its own commit
    /// timestamp — the history is equivalent to that serial order.
    fn check_serializable(&mut self) {
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
        // The store ends where the serial order ends.
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
}

fn map_unit<T>(s: Step<T>) -> Step<()> {
    match s {
        Step::Done(_) => Step::Done(()),
        Step::Blocked(b) => Step::Blocked(b),
    }
}

fn run_bank(seed: u64, steps: usize) -> (usize, usize, usize) {
    let mut bank = Bank::new(seed);
    let mut workers: Vec<Worker> = (0..4).map(|_| bank.start()).collect();
    let mut stuck = 0;
    for _ in 0..steps {
        // Parked requests that were woken run first; cancelled ones restart.
        bank.cluster.detect_deadlocks();
        for (txn, err) in bank.cluster.take_cancelled() {
            assert!(err.is_retryable());
            bank.aborts += 1;
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
        bank.cluster.take_events();
        if runnable.is_empty() {
            stuck += 1;
            assert!(
                stuck < 10,
                "seed {seed}: every worker blocked and nothing moves"
            );
            bank.cluster.tick(1_000_000_000);
            continue;
        }
        stuck = 0;
        let i = runnable[bank.rng.below(runnable.len() as u64) as usize];
        let mut w = std::mem::replace(
            &mut workers[i],
            Worker {
                program: Program::Audit,
                txn: TxnId(0),
                step: 0,
                reads: BTreeMap::new(),
            },
        );
        let alive = bank.step(&mut w);
        workers[i] = if alive { w } else { bank.start() };
        match bank.rng.below(10) {
            0..=5 => bank.cluster.advance(1_000_000),
            6 => {
                bank.cluster.resolve_intents();
            }
            _ => {}
        }
    }
    bank.check_serializable();
    (bank.history.len(), bank.audits, bank.aborts)
}

/// Random interleavings of transfers and full-sum audits over three ranges, with clock
/// skew, random priorities, pushes, deadlocks and refreshes: money is conserved, every
/// audit sees the full total, and the history replays serially in commit-timestamp order.
#[test]
fn bank_random_interleavings_are_serializable() {
    let mut totals = (0, 0, 0);
    for seed in 1..=40u64 {
        let (c, a, ab) = run_bank(seed * 7919, 400);
        totals = (totals.0 + c, totals.1 + a, totals.2 + ab);
    }
    // The workload must actually exercise the protocol.
    assert!(totals.0 > 1000, "commits {totals:?}");
    assert!(totals.1 > 100, "audits {totals:?}");
    assert!(totals.2 > 10, "aborts {totals:?}");
}
