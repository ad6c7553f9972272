//! The golden-file driver: runs a script of transactions against a [`Cluster`] and prints
//! what happened, one block per command (datadriven style):
//!
//! ```text
//! # comments and blank lines are kept
//! t2: put a=2
//! ----
//! → blocked: waits for t1's lock on a (t1 is PENDING with priority normal (pusher normal))
//! ```
//!
//! Lines before `→` are events inside the request (pushes, refreshes, recoveries); lines
//! after it are other transactions whose parked requests resumed (or failed) as a result.
//! True time advances 1 ms before every command, so timestamps tell the order.
//!
//! Commands: `cluster nodes=N splits=b,c max-offset=500ms`, `txn tN [iso=serializable|rc]
//! [priority=low|normal|high|N] [node=N]`, `tN: get k`, `tN: scan a..c`, `tN: put k=v
//! [in-flight]`, `tN: del k`, `tN: update k += n`, `tN: commit [k=v …] [crash-after-staging]`,
//! `tN: rollback`, `tick 6s`, `skew n2 +300ms`, `crash tN`, `deliver tN`, `recover tN`,
//! `resolve-intents`, `record tN`, `dump`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::cluster::{Cluster, ClusterOptions, PutOutcome, Step, Wait};
use super::commit::{CommitKind, CommitOutcome};
use super::error::TxnError;
use super::meta::{Key, NodeId, Priority, Span, Ts, TxnId, Value};
use super::mvcc::{ReadValue, Resolution};
use super::recovery::Delivery;
use crate::txn::Isolation;

/// The cluster a script gets unless it says otherwise: three nodes, ranges split at `b`
/// and `c`, and a maximum clock offset of 0 — the harness's clocks are perfectly in sync
/// until a script skews one, so uncertainty restarts appear only in scripts that ask for
/// them with `cluster max-offset=…` (the protocol's default is 500 ms).
pub fn scenario_options() -> ClusterOptions {
    ClusterOptions {
        max_offset_nanos: 0,
        ..ClusterOptions::default()
    }
}

/// A script's state: the cluster and each parked request's text.
pub struct Harness {
    cluster: Option<Cluster>,
    parked: BTreeMap<TxnId, String>,
}

/// Parses `5ms`, `6s`, `1.5s`, `300us`, `+300ms`, `-20ms` to nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let (sign, s) = match s.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration without unit: {s}"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s}"))?;
    let scale = match unit {
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return Err(format!("bad unit in {s}")),
    };
    Ok((sign * n * scale) as i64)
}

fn parse_txn(s: &str) -> Result<TxnId, String> {
    s.strip_prefix('t')
        .and_then(|n| n.parse().ok())
        .map(TxnId)
        .ok_or_else(|| format!("bad transaction name {s} (want tN)"))
}

fn parse_kv(s: &str) -> Result<(Key, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("want k=v, got {s}"))?;
    Ok((Key::new(k), Value::new(v)))
}

fn show_read(v: &ReadValue) -> String {
    match (&v.value, v.own) {
        (Some(val), true) => format!("{} = {val} (own write)", v.key),
        (None, true) => format!("{} = <deleted> (own write)", v.key),
        (Some(val), false) => format!("{} = {val} @ {}", v.key, Ts(v.ts)),
        (None, false) => format!("{} = <none>", v.key),
    }
}

fn show_wait(w: &Wait) -> String {
    match w {
        Wait::Lock {
            key, holder, why, ..
        } => {
            format!("blocked: waits for {holder}'s lock on {key} ({why})")
        }
        Wait::InFlight { keys } => {
            let k: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            format!(
                "blocked: waits for in-flight write(s) {} to replicate",
                k.join(", ")
            )
        }
    }
}

fn show_commit(c: &CommitOutcome) -> String {
    match &c.kind {
        CommitKind::ReadOnly => format!("committed @ {} (read-only: no record, no proposals)", Ts(c.ts)),
        CommitKind::OnePhase => format!(
            "committed @ {} (1PC: {} proposal, no intents, no record)",
            Ts(c.ts),
            c.proposals
        ),
        CommitKind::Parallel {
            pipelined,
            last_writes,
            rounds,
        } => format!(
            "committed @ {} (parallel commit: {pipelined} write(s) pipelined earlier; commit step = STAGING record + {last_writes} write(s), {rounds} {}, {} proposal(s) in parallel)",
            Ts(c.ts),
            if *rounds == 1 { "round" } else { "rounds" },
            c.proposals
        ),
        CommitKind::StagedThenCrashed { in_flight } => {
            let k: Vec<String> = in_flight.iter().map(|k| k.to_string()).collect();
            format!(
                "STAGING record written @ {} listing in-flight writes [{}]; then the coordinator crashed",
                Ts(c.ts),
                k.join(", ")
            )
        }
    }
}

fn show_err(e: &TxnError) -> String {
    e.to_string()
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        Harness {
            cluster: None,
            parked: BTreeMap::new(),
        }
    }

    pub fn cluster(&mut self) -> &mut Cluster {
        self.cluster
            .get_or_insert_with(|| Cluster::new(scenario_options()))
    }

    /// Runs one command; returns its output lines.
    pub fn run(&mut self, cmd: &str) -> Result<Vec<String>, String> {
        let cmd = cmd.trim();
        let mut out = Vec::new();
        let (head, rest) = cmd.split_once(' ').unwrap_or((cmd, ""));
        if head != "cluster" {
            self.cluster().advance(1_000_000);
        }
        if let Some(name) = head.strip_suffix(':') {
            let txn = parse_txn(name)?;
            if self.parked.contains_key(&txn) {
                return Err(format!("{txn} is blocked; its next request must wait"));
            }
            let (events, line, blocked) = self.exec(txn, rest)?;
            out.extend(events);
            out.push(format!("→ {line}"));
            if blocked {
                self.parked.insert(txn, rest.to_string());
            }
        } else {
            let line = self.command(head, rest)?;
            let events = self.cluster().take_events();
            out.extend(events.iter().map(|e| e.to_string()));
            out.push(format!("→ {line}"));
        }
        self.settle(&mut out)?;
        Ok(out)
    }

    /// Breaks deadlocks and runs woken requests until nothing moves.
    fn settle(&mut self, out: &mut Vec<String>) -> Result<(), String> {
        loop {
            self.cluster().detect_deadlocks();
            let events = self.cluster().take_events();
            out.extend(events.iter().map(|e| e.to_string()));
            for (txn, err) in self.cluster().take_cancelled() {
                if let Some(op) = self.parked.remove(&txn) {
                    out.push(format!("{txn}: {op} (was waiting) → {}", show_err(&err)));
                }
            }
            let Some(txn) = self.cluster().take_woken() else {
                return Ok(());
            };
            let Some(op) = self.parked.remove(&txn) else {
                continue;
            };
            let (events, line, blocked) = self.exec(txn, &op)?;
            out.extend(events);
            let c = self.cluster().coord(txn);
            let how = if c.isolation() == Isolation::ReadCommitted {
                format!(
                    "resumed, statement re-evaluated at a new snapshot @ {}",
                    Ts(c.read_ts)
                )
            } else {
                "resumed".to_string()
            };
            out.push(format!("{txn}: {op} ({how}) → {line}"));
            if blocked {
                self.parked.insert(txn, op);
            }
        }
    }

    /// Runs a transaction's request: (events, result, blocked).
    fn exec(&mut self, txn: TxnId, op: &str) -> Result<(Vec<String>, String, bool), String> {
        let words: Vec<&str> = op.split_whitespace().collect();
        let c = self.cluster();
        let res: Result<Step<String>, TxnError> = match words.as_slice() {
            ["get", k] => c
                .get(txn, &Key::new(k))
                .map(|s| map_step(s, |v| show_read(&v))),
            ["scan", range] => {
                let (a, b) = range.split_once("..").ok_or("scan wants a..b")?;
                let span = Span::new(Key::new(a), Key::new(b));
                c.scan(txn, &span).map(|s| {
                    map_step(s, |rows| {
                        if rows.is_empty() {
                            format!("{span}: no rows")
                        } else {
                            let r: Vec<String> = rows.iter().map(show_read).collect();
                            let n = rows.len();
                            let s = if n == 1 { "" } else { "s" };
                            format!("{span}: {} ({n} row{s})", r.join(", "))
                        }
                    })
                })
            }
            ["put", kv, flags @ ..] => {
                let (k, v) = parse_kv(kv)?;
                let in_flight = flags.contains(&"in-flight");
                c.put(txn, &k, Some(v), in_flight).map(|s| {
                    map_step(s, |p| match p {
                        PutOutcome::Written(w) => format!("ok, intent @ {}", Ts(w.ts)),
                        PutOutcome::InFlight => {
                            "sent; still in flight (not yet replicated)".to_string()
                        }
                    })
                })
            }
            ["del", k] => c.put(txn, &Key::new(k), None, false).map(|s| {
                map_step(s, |p| match p {
                    PutOutcome::Written(w) => format!("ok, deletion intent @ {}", Ts(w.ts)),
                    PutOutcome::InFlight => "in flight".to_string(),
                })
            }),
            ["update", k, op, n] => {
                let n: i64 = n.parse().map_err(|_| format!("bad number {n}"))?;
                let delta = match *op {
                    "+=" => n,
                    "-=" => -n,
                    _ => return Err(format!("bad update operator {op}")),
                };
                c.increment(txn, &Key::new(k), delta).map(|s| {
                    map_step(s, |i| {
                        format!("{k}: {} → {}, intent @ {}", i.old, i.new, Ts(i.write.ts))
                    })
                })
            }
            ["commit", rest @ ..] => {
                let crash = rest.contains(&"crash-after-staging");
                let mut writes = Vec::new();
                for w in rest.iter().filter(|w| w.contains('=')) {
                    let (k, v) = parse_kv(w)?;
                    writes.push((k, Some(v)));
                }
                c.commit(txn, &writes, crash)
                    .map(|s| map_step(s, |o| show_commit(&o)))
            }
            ["rollback"] => c
                .rollback(txn)
                .map(|_| Step::Done("rolled back".to_string())),
            _ => return Err(format!("unknown request: {op}")),
        };
        let events: Vec<String> = c.take_events().iter().map(|e| e.to_string()).collect();
        Ok(match res {
            Ok(Step::Done(s)) => (events, s, false),
            Ok(Step::Blocked(w)) => (events, show_wait(&w), true),
            Err(e) => (events, show_err(&e), false),
        })
    }

    fn command(&mut self, head: &str, rest: &str) -> Result<String, String> {
        let args: Vec<&str> = rest.split_whitespace().collect();
        match head {
            "cluster" => {
                let mut o = scenario_options();
                for a in &args {
                    let (k, v) = a.split_once('=').ok_or("cluster wants k=v")?;
                    match k {
                        "nodes" => o.nodes = v.parse().map_err(|_| "bad nodes")?,
                        "splits" => o.splits = v.split(',').map(Key::new).collect(),
                        "max-offset" => o.max_offset_nanos = parse_duration(v)? as u64,
                        _ => return Err(format!("unknown cluster option {k}")),
                    }
                }
                let c = Cluster::new(o);
                let ranges: Vec<String> = c
                    .ranges
                    .iter()
                    .map(|r| {
                        let end = r
                            .end
                            .as_ref()
                            .map(|k| k.to_string())
                            .unwrap_or_else(|| "∞".into());
                        let start = if r.start.0.is_empty() {
                            "-∞".to_string()
                        } else {
                            r.start.to_string()
                        };
                        format!("{} [{start}, {end}) on {}", r.id, r.node)
                    })
                    .collect();
                let line = format!(
                    "{} node(s), max clock offset {}; ranges: {}",
                    c.nodes.len(),
                    Ts(chitin_storage::Timestamp::new(
                        c.options.max_offset_nanos,
                        0
                    )),
                    ranges.join(", ")
                );
                self.cluster = Some(c);
                Ok(line)
            }
            "txn" => {
                let txn = parse_txn(args.first().ok_or("txn wants a name")?)?;
                let mut iso = Isolation::Serializable;
                let mut prio = Priority::NORMAL;
                let mut node = NodeId(1);
                for a in &args[1..] {
                    let (k, v) = a.split_once('=').ok_or("txn options are k=v")?;
                    match k {
                        "iso" => {
                            iso = match v {
                                "serializable" => Isolation::Serializable,
                                "rc" | "read-committed" => Isolation::ReadCommitted,
                                _ => return Err(format!("unknown isolation {v}")),
                            }
                        }
                        "priority" => prio = Priority::from_name(v).ok_or("bad priority")?,
                        "node" => {
                            node =
                                NodeId(v.trim_start_matches('n').parse().map_err(|_| "bad node")?)
                        }
                        _ => return Err(format!("unknown txn option {k}")),
                    }
                }
                let ts = self.cluster().begin(txn, node, iso, prio);
                let iso_name = match iso {
                    Isolation::Serializable => "SERIALIZABLE",
                    Isolation::ReadCommitted => "READ COMMITTED",
                };
                Ok(format!(
                    "{txn} begins @ {} on {node} ({iso_name}, priority {prio})",
                    Ts(ts)
                ))
            }
            "tick" => {
                let d = parse_duration(args.first().ok_or("tick wants a duration")?)?;
                self.cluster().tick(d as u64);
                Ok(format!("time is now {}", Ts(self.cluster().true_time())))
            }
            "skew" => {
                let node = NodeId(
                    args.first()
                        .ok_or("skew wants a node")?
                        .trim_start_matches('n')
                        .parse()
                        .map_err(|_| "bad node")?,
                );
                let d = parse_duration(args.get(1).ok_or("skew wants an offset")?)?;
                self.cluster().set_skew(node, d);
                Ok(format!(
                    "{node}'s clock is now {}{} off true time",
                    if d >= 0 { "+" } else { "-" },
                    Ts(chitin_storage::Timestamp::new(d.unsigned_abs(), 0))
                ))
            }
            "crash" => {
                let txn = parse_txn(args.first().ok_or("crash wants a txn")?)?;
                self.parked.remove(&txn);
                self.cluster().crash(txn);
                Ok(format!(
                    "{txn}'s coordinator crashed: no more requests or heartbeats"
                ))
            }
            "deliver" => {
                let txn = parse_txn(args.first().ok_or("deliver wants a txn")?)?;
                let staging = self
                    .cluster()
                    .record(txn)
                    .filter(|r| r.status != super::record::TxnStatus::Pending)
                    .map(|r| r.meta.write_ts);
                let d = self.cluster().deliver(txn);
                let mut parts = Vec::new();
                for (k, d) in d {
                    parts.push(match d {
                        Delivery::Landed(w) => {
                            let mut s = format!("{k} lands @ {}", Ts(w.ts));
                            if let Some(st) = staging {
                                if w.ts > st {
                                    let _ = write!(s, ", above the staging timestamp {}: it cannot complete a commit at {}", Ts(st), Ts(st));
                                }
                            }
                            s
                        }
                        Delivery::Conflict(c) => format!("{k} conflicts with {}'s intent", c.intent.txn.id),
                    });
                }
                if parts.is_empty() {
                    parts.push("nothing in flight".into());
                }
                let status = self
                    .cluster()
                    .record(txn)
                    .map(|r| r.status.to_string())
                    .unwrap_or_else(|| "no record".into());
                Ok(format!("{}; {txn} is {status}", parts.join("; ")))
            }
            "recover" => {
                let txn = parse_txn(args.first().ok_or("recover wants a txn")?)?;
                let anchor = self.cluster().coord(txn).meta.anchor.clone();
                match self.cluster().recover(txn, &anchor) {
                    Some(s) => Ok(format!("{txn} is {s}")),
                    None => Ok(format!("{txn} has no record")),
                }
            }
            "resolve-intents" => {
                let done = self.cluster().resolve_intents();
                if done.is_empty() {
                    return Ok("nothing to resolve".into());
                }
                let parts: Vec<String> = done
                    .iter()
                    .map(|(r, items)| {
                        let i: Vec<String> = items
                            .iter()
                            .map(|(k, t, how)| match how {
                                Resolution::Commit(ts) => {
                                    format!("{k} ({t} committed @ {})", Ts(*ts))
                                }
                                Resolution::Abort => format!("{k} ({t} aborted: removed)"),
                                Resolution::Push(ts) => format!("{k} ({t} pushed to {})", Ts(*ts)),
                            })
                            .collect();
                        format!("{r}: {}", i.join(", "))
                    })
                    .collect();
                Ok(format!("resolved {}", parts.join("; ")))
            }
            "record" => {
                let txn = parse_txn(args.first().ok_or("record wants a txn")?)?;
                Ok(self
                    .cluster()
                    .record(txn)
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| format!("{txn} has no record")))
            }
            "dump" => {
                let c = self.cluster();
                let mut history: BTreeMap<Key, Vec<String>> = BTreeMap::new();
                for (k, ts, v) in c.committed_versions() {
                    let v = v
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "<deleted>".into());
                    history
                        .entry(k)
                        .or_default()
                        .push(format!("{v} @ {}", Ts(ts)));
                }
                let mut lines: Vec<String> = history
                    .iter()
                    .map(|(k, vs)| format!("  {k}: {}", vs.join(", ")))
                    .collect();
                for r in &c.ranges {
                    for (k, i) in r.mvcc.intents() {
                        lines.push(format!("  {k}: intent of {} @ {}", i.txn.id, Ts(i.ts())));
                    }
                }
                if lines.is_empty() {
                    return Ok("nothing committed, no intents".into());
                }
                Ok(format!(
                    "committed versions, oldest first:\n{}",
                    lines.join("\n")
                ))
            }
            _ => Err(format!("unknown command {head}")),
        }
    }

    /// Requests still parked at the end of a script.
    pub fn parked(&self) -> Vec<String> {
        self.parked
            .iter()
            .map(|(t, op)| format!("{t}: {op}"))
            .collect()
    }
}

fn map_step<T>(s: Step<T>, f: impl FnOnce(T) -> String) -> Step<String> {
    match s {
        Step::Done(v) => Step::Done(f(v)),
        Step::Blocked(w) => Step::Blocked(w),
    }
}

/// Runs a golden file's text, returning it with every command's output regenerated.
pub fn run_script(text: &str) -> Result<String, String> {
    let mut h = Harness::new();
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
        // Skip the old output block.
        if lines.peek().map(|l| l.trim()) == Some("----") {
            lines.next();
            while let Some(l) = lines.peek() {
                if l.trim().is_empty() {
                    break;
                }
                lines.next();
            }
        }
        let result = h.run(t).map_err(|e| format!("{t}: {e}"))?;
        out.push_str("----\n");
        for r in result {
            out.push_str(&r);
            out.push('\n');
        }
        if lines.peek().is_none() {
            break;
        }
    }
    let parked = h.parked();
    if !parked.is_empty() {
        return Err(format!(
            "requests still blocked at the end: {}",
            parked.join("; ")
        ));
    }
    Ok(out)
}
