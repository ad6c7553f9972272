//! Metrics: lock-free counters and fixed-bucket latency histograms, one set per core, read
//! by the HTTP server for `/_status/vars` (Prometheus text format).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Bucket upper bounds in microseconds (Prometheus `le`), then +Inf.
const BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000, 10_000_000,
];

/// A latency histogram any thread may update or read without locks.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 17],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(16);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cum = 0;
        for (i, b) in BUCKETS_US.iter().enumerate() {
            cum += self.buckets[i].load(Relaxed);
            let le = *b as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cum}");
        }
        cum += self.buckets[16].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cum}");
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{}}} {sum}", labels.trim_end_matches(','));
        let _ = writeln!(
            out,
            "{name}_count{{{}}} {}",
            labels.trim_end_matches(','),
            self.count.load(Relaxed)
        );
    }
}

/// Statement kinds counted separately.
pub const STATEMENT_KINDS: [&str; 7] = [
    "select", "insert", "update", "delete", "ddl", "txn", "other",
];

/// One core's metrics.
#[derive(Default)]
pub struct CoreMetrics {
    pub statements: [AtomicU64; 7],
    pub errors: [AtomicU64; 7],
    pub statement_latency: Histogram,
    pub log_sync_latency: Histogram,
    pub connections: AtomicU64,
    pub ranges: AtomicU64,
    pub queued_requests: AtomicU64,
    /// Raft log entries dropped after the engine durably applied them.
    pub raft_log_truncated_entries: AtomicU64,
    /// Implicit transactions the server retried itself after a 40001.
    pub txn_retries: AtomicU64,
    /// Transactions that committed (explicit and implicit, with writes or not).
    pub txn_commits: AtomicU64,
    /// Commits of transactions that wrote to one range: one raft command (1PC).
    pub txn_one_phase_commits: AtomicU64,
    /// Multi-range commits decided in one round (STAGING record and prepares at once).
    pub txn_parallel_commits: AtomicU64,
    /// Multi-range commits that needed a second round to decide (a participant pushed the
    /// commit timestamp, or one failed).
    pub txn_parallel_commit_slow: AtomicU64,
    /// Rounds of consensus commits waited for before answering the client.
    pub txn_commit_rounds: AtomicU64,
    /// Reads that met a value in their uncertainty interval and moved their transaction's
    /// read timestamp up to it (clusters of several nodes only).
    pub txn_uncertainty_restarts: AtomicU64,
    /// Raft commands proposed by this core's leaders.
    pub raft_proposals: AtomicU64,
    /// From proposal to applied, on the proposing leader.
    pub raft_commit_latency: Histogram,
    /// Replicas on this core that lead their range.
    pub raft_leaders: AtomicU64,
    /// Leaders whose lease is valid (they serve).
    pub raft_leaseholders: AtomicU64,
    /// Replicas on this core that know of no leader (their range is unavailable to them).
    pub raft_leaderless: AtomicU64,
    /// Replicas on this core that are quiesced (idle: not ticked, no heartbeats).
    pub raft_quiesced: AtomicU64,
    /// Raft messages sent to and received from other nodes, and dropped on the way out.
    pub raft_messages_sent: AtomicU64,
    pub raft_messages_received: AtomicU64,
    pub raft_messages_dropped: AtomicU64,
    /// Membership changes applied (conf-change entries, joint enter and leave).
    pub raft_conf_changes: AtomicU64,
    /// Snapshots sent to new or lagging replicas and installed from leaders, and bytes.
    pub raft_snapshots_sent: AtomicU64,
    pub raft_snapshots_applied: AtomicU64,
    pub raft_snapshot_bytes_sent: AtomicU64,
    pub raft_snapshot_bytes_received: AtomicU64,
    /// Chunks of streamed snapshots sent (ranges larger than one chunk), and installed.
    pub raft_snapshot_chunks_sent: AtomicU64,
    pub raft_snapshot_chunks_applied: AtomicU64,
    /// Ranges this core leads with fewer voters than wanted, or with a voter on a dead
    /// or decommissioning node.
    pub ranges_underreplicated: AtomicU64,
    /// Splits this core's split queue made, by size and by load (manual splits not
    /// counted).
    pub range_splits_size: AtomicU64,
    pub range_splits_load: AtomicU64,
    /// Merges this core's merge queue made.
    pub range_merges: AtomicU64,
    /// Replicas on this core (initialized or waiting for a snapshot).
    pub replicas: AtomicU64,
    /// Replicas this core destroyed after their group removed them (replica GC).
    pub replicas_gc: AtomicU64,
}

impl CoreMetrics {
    pub fn observe_log_sync(&self, d: Duration) {
        self.log_sync_latency.observe(d);
    }

    pub fn observe_statement(&self, kind: usize, d: Duration, failed: bool) {
        self.statements[kind].fetch_add(1, Relaxed);
        if failed {
            self.errors[kind].fetch_add(1, Relaxed);
        }
        self.statement_latency.observe(d);
    }
}

/// A per-core metric line: name, Prometheus type, and how to read it from a core.
type MetricLine = (&'static str, &'static str, fn(&CoreMetrics) -> u64);

/// Renders all cores' metrics in the Prometheus text exposition format.
pub fn render(cores: &[std::sync::Arc<CoreMetrics>]) -> String {
    let mut out = String::new();
    out.push_str("# HELP sql_statements_total Statements executed, by kind.\n# TYPE sql_statements_total counter\n");
    for (i, kind) in STATEMENT_KINDS.iter().enumerate() {
        let n: u64 = cores.iter().map(|c| c.statements[i].load(Relaxed)).sum();
        let _ = writeln!(out, "sql_statements_total{{kind=\"{kind}\"}} {n}");
    }
    out.push_str("# HELP sql_errors_total Statements that failed, by kind.\n# TYPE sql_errors_total counter\n");
    for (i, kind) in STATEMENT_KINDS.iter().enumerate() {
        let n: u64 = cores.iter().map(|c| c.errors[i].load(Relaxed)).sum();
        let _ = writeln!(out, "sql_errors_total{{kind=\"{kind}\"}} {n}");
    }
    out.push_str("# HELP sql_statement_latency_seconds Statement latency.\n# TYPE sql_statement_latency_seconds histogram\n");
    for (i, c) in cores.iter().enumerate() {
        c.statement_latency.render(
            "sql_statement_latency_seconds",
            &format!("core=\"{i}\","),
            &mut out,
        );
    }
    out.push_str("# HELP raft_log_fdatasync_latency_seconds Raft log append + fdatasync latency.\n# TYPE raft_log_fdatasync_latency_seconds histogram\n");
    for (i, c) in cores.iter().enumerate() {
        c.log_sync_latency.render(
            "raft_log_fdatasync_latency_seconds",
            &format!("core=\"{i}\","),
            &mut out,
        );
    }
    out.push_str("# HELP core_queue_depth KV requests waiting on each core.\n# TYPE core_queue_depth gauge\n");
    for (i, c) in cores.iter().enumerate() {
        let _ = writeln!(
            out,
            "core_queue_depth{{core=\"{i}\"}} {}",
            c.queued_requests.load(Relaxed)
        );
    }
    out.push_str(
        "# HELP sql_connections Open SQL connections per core.\n# TYPE sql_connections gauge\n",
    );
    for (i, c) in cores.iter().enumerate() {
        let _ = writeln!(
            out,
            "sql_connections{{core=\"{i}\"}} {}",
            c.connections.load(Relaxed)
        );
    }
    out.push_str("# HELP ranges Range replicas per core.\n# TYPE ranges gauge\n");
    for (i, c) in cores.iter().enumerate() {
        let _ = writeln!(out, "ranges{{core=\"{i}\"}} {}", c.ranges.load(Relaxed));
    }
    out.push_str("# HELP sql_txn_retries_total Implicit transactions retried by the server after 40001.\n# TYPE sql_txn_retries_total counter\n");
    let n: u64 = cores.iter().map(|c| c.txn_retries.load(Relaxed)).sum();
    let _ = writeln!(out, "sql_txn_retries_total {n}");
    out.push_str("# HELP sql_txn_commits_total Transactions committed.\n# TYPE sql_txn_commits_total counter\n");
    let n: u64 = cores.iter().map(|c| c.txn_commits.load(Relaxed)).sum();
    let _ = writeln!(out, "sql_txn_commits_total {n}");
    // (name, help, reader)
    let txn_counters: [MetricLine; 5] = [
        (
            "sql_txn_one_phase_commits_total",
            "Commits of transactions that wrote one range, in one raft command.",
            |c| c.txn_one_phase_commits.load(Relaxed),
        ),
        (
            "sql_txn_parallel_commits_total",
            "Multi-range commits decided in one round of consensus (parallel commit).",
            |c| c.txn_parallel_commits.load(Relaxed),
        ),
        (
            "sql_txn_parallel_commit_slow_total",
            "Multi-range commits that needed a second round (pushed or failed participant).",
            |c| c.txn_parallel_commit_slow.load(Relaxed),
        ),
        (
            "sql_txn_commit_rounds_total",
            "Rounds of consensus commits waited for before answering the client.",
            |c| c.txn_commit_rounds.load(Relaxed),
        ),
        (
            "sql_txn_uncertainty_restarts_total",
            "Reads that met a value in their uncertainty interval and moved up to it.",
            |c| c.txn_uncertainty_restarts.load(Relaxed),
        ),
    ];
    for (name, help, get) in txn_counters {
        let n: u64 = cores.iter().map(|c| get(c)).sum();
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {n}"
        );
    }
    let gauges: [MetricLine; 22] = [
        ("range_merges_total", "counter", |c| {
            c.range_merges.load(Relaxed)
        }),
        ("replicas", "gauge", |c| c.replicas.load(Relaxed)),
        ("replicas_gc_total", "counter", |c| {
            c.replicas_gc.load(Relaxed)
        }),
        ("range_splits_size_total", "counter", |c| {
            c.range_splits_size.load(Relaxed)
        }),
        ("range_splits_load_total", "counter", |c| {
            c.range_splits_load.load(Relaxed)
        }),
        ("raft_conf_changes_total", "counter", |c| {
            c.raft_conf_changes.load(Relaxed)
        }),
        ("raft_snapshots_sent_total", "counter", |c| {
            c.raft_snapshots_sent.load(Relaxed)
        }),
        ("raft_snapshots_applied_total", "counter", |c| {
            c.raft_snapshots_applied.load(Relaxed)
        }),
        ("raft_snapshot_bytes_sent_total", "counter", |c| {
            c.raft_snapshot_bytes_sent.load(Relaxed)
        }),
        ("raft_snapshot_chunks_sent_total", "counter", |c| {
            c.raft_snapshot_chunks_sent.load(Relaxed)
        }),
        ("raft_snapshot_chunks_applied_total", "counter", |c| {
            c.raft_snapshot_chunks_applied.load(Relaxed)
        }),
        ("raft_snapshot_bytes_received_total", "counter", |c| {
            c.raft_snapshot_bytes_received.load(Relaxed)
        }),
        ("ranges_underreplicated", "gauge", |c| {
            c.ranges_underreplicated.load(Relaxed)
        }),
        ("raft_proposals_total", "counter", |c| {
            c.raft_proposals.load(Relaxed)
        }),
        ("raft_leaders", "gauge", |c| c.raft_leaders.load(Relaxed)),
        ("raft_leaseholders", "gauge", |c| {
            c.raft_leaseholders.load(Relaxed)
        }),
        ("raft_quiesced_ranges", "gauge", |c| {
            c.raft_quiesced.load(Relaxed)
        }),
        ("ranges_unavailable", "gauge", |c| {
            c.raft_leaderless.load(Relaxed)
        }),
        ("raft_messages_sent_total", "counter", |c| {
            c.raft_messages_sent.load(Relaxed)
        }),
        ("raft_messages_received_total", "counter", |c| {
            c.raft_messages_received.load(Relaxed)
        }),
        ("raft_messages_dropped_total", "counter", |c| {
            c.raft_messages_dropped.load(Relaxed)
        }),
        ("raft_log_fsyncs_total", "counter", |c| {
            c.log_sync_latency.count.load(Relaxed)
        }),
    ];
    for (name, kind, get) in gauges {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (i, c) in cores.iter().enumerate() {
            let _ = writeln!(out, "{name}{{core=\"{i}\"}} {}", get(c));
        }
    }
    out.push_str("# HELP raft_commit_latency_seconds From proposal to applied on the leader.\n# TYPE raft_commit_latency_seconds histogram\n");
    for (i, c) in cores.iter().enumerate() {
        c.raft_commit_latency.render(
            "raft_commit_latency_seconds",
            &format!("core=\"{i}\","),
            &mut out,
        );
    }
    out.push_str("# HELP raft_log_truncated_entries_total Raft log entries dropped once durably applied.\n# TYPE raft_log_truncated_entries_total counter\n");
    for (i, c) in cores.iter().enumerate() {
        let _ = writeln!(
            out,
            "raft_log_truncated_entries_total{{core=\"{i}\"}} {}",
            c.raft_log_truncated_entries.load(Relaxed)
        );
    }
    out
}
