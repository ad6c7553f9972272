//! A replicated cluster of real `chitin` processes on 127.0.0.1 (issue 5): three nodes
//! started with `start --join`, initialized with `chitin init`, every range a raft group
//! with a replica on each node, leases spread over the nodes.
//!
//! `three_nodes_survive_a_kill_without_losing_acknowledged_writes`: a table split into 20
//! ranges whose leases end up on all three nodes; clients write through
//! every node; one node is killed with SIGKILL (first the one holding the table's lease,
//! per `SHOW RANGES`, then another); writes through the survivors resume within 10 s (the
//! gap is printed), the killed node restarts and catches
//! up, and every acknowledged row is read back through every node. An acknowledged write
//! that is lost, or a row that appears without being written, fails the test.
//!
//! `a_partitioned_node_never_serves_stale_reads`: each node in turn is cut off from the
//! other two through the transport's fault hook (one of them leads the table's range).
//! Writes through the majority keep being acknowledged; a read through the isolated node
//! either fails or returns every row acknowledged before it started (a stale read fails
//! the test: leader leases, Raft §6.4 / §9.3 of Ongaro's thesis); after healing, every node
//! converges on every acknowledged row.
//!
//! `rolling_restart_under_load_loses_nothing`: each node in turn is stopped with SIGTERM
//! and restarted while clients write through all three; clients see only 40001, 40003 or
//! 57P01 (and dropped connections), and every acknowledged row is there at the end.
//!
//! `five_replicas_survive_two_simultaneous_kills`: five nodes initialized with
//! `--num-replicas 5`; two (one of them a lease holder) are killed at once; the other three
//! keep acknowledging writes and lose none, and the two catch up after restarting.
//!
//! `cross_range_transfers_stay_atomic_when_a_lease_holder_dies`: transfers between two
//! ranges (two-phase commits) from clients on every node while one range's lease holder
//! is killed and restarted; the total never changes (no partial commit).
//!
//! `a_dead_node_is_replaced_and_a_decommissioned_node_is_drained`: with a 3 s store-dead
//! timeout, a killed node's replicas are replaced on a fourth node (conf changes and
//! snapshots), a decommissioned node is emptied, and a node that joins the running cluster
//! gets replicas by rebalancing; nothing acknowledged is lost. Last, `chitin node drain`
//! of another node (asked through a third) leaves it leading nothing and refusing new
//! connections (57P01).
//!
//! `clock_skew_hides_no_acknowledged_write_and_a_far_off_node_stops_serving` (issue 4,
//! uncertainty): node 3's clock runs 300 ms ahead (`--testing-clock-offset`, within the
//! 500 ms maximum offset). Transactions through node 3 write two ranges (a two-phase
//! commit stamped by node 3's clock), and right after each is acknowledged node 1 reads
//! them: every read sees the write (without uncertainty intervals node 1's earlier clock
//! would read below it). Then node 3 restarts 1.5 s ahead: it notices within seconds,
//! refuses SQL with 58000 and reports not ready, while nodes 1 and 2 keep serving
//! everything; restarted with a good clock it serves again.
//!
//! `demo_serves_sql_and_leaves_nothing_behind`: `chitin demo --nodes 3` serves SQL on
//! every node and, on SIGINT, stops them and removes its directory.
//!
//! `an_index_built_online_waits_for_every_nodes_old_transactions` (issue 6, online schema
//! changes): while clients write through nodes 2 and 3, `CREATE INDEX` through node 1
//! waits, as `SHOW JOBS` shows, for a transaction on node 3 that wrote with the catalog
//! from before the build; once it commits the build finishes, and the index holds exactly
//! one entry per row (node 3's row included).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

struct Node {
    store: PathBuf,
    log: PathBuf,
    sql: SocketAddr,
    http: SocketAddr,
    join: String,
    /// More `chitin start` flags.
    extra: Vec<String>,
    child: Option<Child>,
}

impl Node {
    /// SIGTERM, then waits for a graceful exit (SIGKILL after `timeout`).
    fn stop(&mut self, timeout: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_chitin"))
            .arg("start")
            .arg("--store")
            .arg(&self.store)
            .arg("--listen-addr")
            .arg(self.sql.to_string())
            .arg("--http-addr")
            .arg(self.http.to_string())
            .arg("--join")
            .arg(&self.join)
            .arg("--cores")
            .arg("1")
            .arg("--insecure")
            .args(&self.extra)
            // Snapshots of ranges over 1 KiB stream in chunks (the default chunk is
            // 4 MiB): nearly every snapshot these tests send is streamed.
            .env("CHITIN_TESTING_SNAPSHOT_CHUNK_BYTES", "1024")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn chitin");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_tail(&self) -> String {
        common::log_tail(&self.log, 40)
    }

    fn config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.sql.port())
            .user("root")
            .dbname("defaultdb")
            .connect_timeout(Duration::from_secs(5));
        c
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn chitin(args: &[&str]) -> Result<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_chitin"))
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn wait_sql(node: &Node, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(c) = common::connect(&node.config()).await {
            if c.simple_query("SELECT 1").await.is_ok() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {} not serving SQL after {timeout:?}; log:\n{}",
            node.sql,
            node.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A free port below the kernel's ephemeral range (32768–60999): a node restarts on the
/// same port, and an ephemeral one may meanwhile be taken by any outgoing connection.
fn stable_port() -> u16 {
    use std::sync::atomic::AtomicU16;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() % 500) as u16 * 20;
    loop {
        let p = 21000 + (seed + NEXT.fetch_add(1, Ordering::SeqCst)) % 10000;
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn cluster(dir: &Path, n: usize) -> Vec<Node> {
    let sqls: Vec<SocketAddr> = (0..n)
        .map(|_| ([127, 0, 0, 1], stable_port()).into())
        .collect();
    let join = sqls
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    (0..n)
        .map(|i| Node {
            store: dir.join(format!("node{}", i + 1)),
            log: dir.join(format!("node{}.log", i + 1)),
            sql: sqls[i],
            http: ([127, 0, 0, 1], stable_port()).into(),
            join: join.clone(),
            extra: Vec::new(),
            child: None,
        })
        .collect()
}

/// Rows acknowledged by the writers, and whether they are still writing.
struct Load {
    acked: Mutex<BTreeSet<i64>>,
    /// Time of every acknowledged write, to measure the longest gap.
    times: Mutex<Vec<Instant>>,
    /// SQLSTATEs of the errors the server returned.
    errors: Mutex<BTreeSet<String>>,
    stop: AtomicBool,
}

impl Load {
    fn new() -> Arc<Load> {
        Arc::new(Load {
            acked: Mutex::new(BTreeSet::new()),
            times: Mutex::new(Vec::new()),
            errors: Mutex::new(BTreeSet::new()),
            stop: AtomicBool::new(false),
        })
    }
}

/// One writer: inserts distinct keys through `node`'s SQL port, reconnecting on errors.
async fn writer(config: tokio_postgres::Config, first_key: i64, stride: i64, load: Arc<Load>) {
    let mut k = first_key;
    let mut client = None;
    while !load.stop.load(Ordering::SeqCst) {
        if client.is_none() {
            match tokio::time::timeout(Duration::from_secs(3), common::connect(&config)).await {
                Ok(Ok(c)) => client = Some(c),
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let c = client.as_ref().unwrap();
        let sql = format!("INSERT INTO acked VALUES ({k}, {})", k * 7);
        match tokio::time::timeout(Duration::from_secs(15), c.simple_query(&sql)).await {
            Ok(Ok(_)) => {
                load.acked.lock().unwrap().insert(k);
                load.times.lock().unwrap().push(Instant::now());
                k += stride;
            }
            Ok(Err(e)) => {
                // Not acknowledged: may or may not be there; the key is not reused.
                match e.as_db_error() {
                    Some(db) => {
                        load.errors
                            .lock()
                            .unwrap()
                            .insert(db.code().code().to_string());
                    }
                    None => client = None,
                }
                k += stride;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => {
                client = None;
                k += stride;
            }
        }
    }
}

/// The longest stretch without an acknowledged write between `from` and `to`.
fn longest_gap(times: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut ts: Vec<Instant> = times
        .iter()
        .copied()
        .filter(|t| *t >= from && *t <= to)
        .collect();
    ts.sort();
    let mut prev = from;
    let mut gap = Duration::ZERO;
    for t in ts.into_iter().chain(std::iter::once(to)) {
        gap = gap.max(t - prev);
        prev = t;
    }
    gap
}

/// The lease holder of each range of table `acked`, in key order (`SHOW RANGES`).
async fn lease_holders(node: &Node) -> Vec<usize> {
    let c = common::connect(&node.config()).await.expect("connect");
    let msgs = c
        .simple_query("SHOW RANGES FROM TABLE acked")
        .await
        .expect("SHOW RANGES");
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get("lease_holder")?.parse().ok(),
            _ => None,
        })
        .collect()
}

/// `chitin init` against the first node (retried while the nodes come up), then waits
/// until every node serves SQL.
async fn init_and_wait(nodes: &[Node]) {
    let host = nodes[0].sql.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = chitin(&["init", "--host", &host]) {
        assert!(Instant::now() < deadline, "init failed: {e}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for n in nodes {
        wait_sql(n, Duration::from_secs(30)).await;
    }
}

async fn read_all(node: &Node) -> BTreeSet<i64> {
    let c = common::connect(&node.config()).await.expect("connect");
    // A retryable error (40001) is retried, as clients do.
    let mut attempts = 0;
    let rows = loop {
        match c.query("SELECT k, v FROM acked ORDER BY k", &[]).await {
            Ok(rows) => break rows,
            Err(e)
                if attempts < 20
                    && e.code()
                        == Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE) =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("read through {}: {e:?}\n{}", node.sql, node.log_tail()),
        }
    };
    let mut out = BTreeSet::new();
    for r in rows {
        let k: i64 = r.get(0);
        let v: i64 = r.get(1);
        assert_eq!(v, k * 7, "row {k} has a value nobody wrote");
        out.insert(k);
    }
    out
}

#[test]
fn three_nodes_survive_a_kill_without_losing_acknowledged_writes() {
    let dir = common::TempDir::new("chitin-cluster").unwrap();
    let mut nodes = cluster(dir.path(), 3);
    for n in nodes.iter_mut() {
        n.spawn();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = async {
        // init, retried while the nodes come up.
        let host = nodes[0].sql.to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match chitin(&["init", "--host", &host, "--insecure"]) {
                Ok(out) => {
                    println!("{}", out.trim());
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("init: {e}");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("init failed: {e}\n{}", nodes[0].log_tail()),
            }
        }
        for n in &nodes {
            wait_sql(n, Duration::from_secs(30)).await;
        }
        // Every node sees the others live.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = chitin(&["node", "status", "--host", &nodes[1].sql.to_string()]).unwrap();
            let live = status.lines().filter(|l| l.ends_with("\ttrue")).count();
            if live == 3 {
                println!("{status}");
                break;
            }
            assert!(Instant::now() < deadline, "node status:\n{status}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // DDL on one node, used through the others; 20 ranges, their leases spread.
        let c1 = common::connect(&nodes[0].config()).await.unwrap();
        c1.batch_execute("CREATE TABLE acked (k INT8 PRIMARY KEY, v INT8)")
            .await
            .unwrap();
        let points: Vec<String> = (1..20).map(|i| format!("({})", i * 1000)).collect();
        c1.batch_execute(&format!(
            "ALTER TABLE acked SPLIT AT VALUES {}",
            points.join(", ")
        ))
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let holders = lease_holders(&nodes[1]).await;
            let distinct: BTreeSet<usize> = holders.iter().copied().collect();
            if holders.len() >= 20 && distinct.len() == 3 {
                println!("{} ranges, leases on nodes {distinct:?}", holders.len());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ranges {} with leases on {distinct:?}",
                holders.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // The range of one row.
        let c3 = common::connect(&nodes[2].config()).await.unwrap();
        let msgs = c3
            .simple_query("SHOW RANGE FROM TABLE acked FOR ROW (1500)")
            .await
            .unwrap();
        let rows: Vec<(String, String)> = msgs
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                    r.get("start_key")?.to_string(),
                    r.get("end_key")?.to_string(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(rows, vec![("/1/1000".to_string(), "/1/2000".to_string())]);

        let load = Load::new();
        let mut writers = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            for j in 0..2 {
                let w = (i * 2 + j) as i64;
                writers.push(tokio::spawn(writer(n.config(), w, 6, load.clone())));
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = load.acked.lock().unwrap().len();
        assert!(
            before > 0,
            "no writes acknowledged; log:\n{}",
            nodes[0].log_tail()
        );

        // Kill the node holding the first range's lease, then another one, in turn.
        let holder = lease_holders(&nodes[1]).await[0];
        assert!((1..=3).contains(&holder), "lease holder {holder}");
        println!("node {holder} holds the lease of the table's first range");
        let first = holder - 1;
        for victim in [first, (first + 1) % 3] {
            let killed_at = Instant::now();
            nodes[victim].kill();
            tokio::time::sleep(Duration::from_secs(12)).await;
            let gap = longest_gap(&load.times.lock().unwrap(), killed_at, Instant::now());
            println!(
                "killed node {}: longest write gap {gap:?} ({} writes acknowledged so far)",
                victim + 1,
                load.acked.lock().unwrap().len()
            );
            assert!(
                gap < Duration::from_secs(10),
                "writes stalled {gap:?} after killing node {}; logs:\n{}\n{}",
                victim + 1,
                nodes[(victim + 1) % 3].log_tail(),
                nodes[(victim + 2) % 3].log_tail()
            );
            nodes[victim].spawn();
            wait_sql(&nodes[victim], Duration::from_secs(30)).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        load.stop.store(true, Ordering::SeqCst);
        for w in writers {
            let _ = w.await;
        }
        let acked = load.acked.lock().unwrap().clone();
        println!("{} writes acknowledged", acked.len());
        for n in &nodes {
            let seen = read_all(n).await;
            let lost: Vec<_> = acked.difference(&seen).take(10).collect();
            assert!(
                lost.is_empty(),
                "node {} lost acknowledged rows {lost:?}; log:\n{}",
                n.sql,
                n.log_tail()
            );
        }
    };
    let run = async { tokio::time::timeout(Duration::from_secs(240), body).await };
    if rt.block_on(run).is_err() {
        panic!(
            "timed out; logs:\n{}\n{}\n{}",
            nodes[0].log_tail(),
            nodes[1].log_tail(),
            nodes[2].log_tail()
        );
    }
}

/// Cuts `victim` off from the others (both directions, on every node), or heals all.
fn set_partition(nodes: &[Node], victim: Option<usize>) {
    for (i, n) in nodes.iter().enumerate() {
        let rule = match victim {
            None => "heal".to_string(),
            Some(v) if v == i => {
                let others: Vec<String> = (0..nodes.len())
                    .filter(|j| *j != v)
                    .map(|j| (j + 1).to_string())
                    .collect();
                format!("partition {}", others.join(","))
            }
            Some(v) => format!("partition {}", v + 1),
        };
        let tool = chitin_net::Endpoint::new(chitin_net::NodeId(0), chitin_net::CoreId(0));
        chitin_net::blocking::call(
            n.sql,
            tool,
            chitin_net::CoreId(0),
            chitin::cluster::METHOD_FAULT,
            rule.as_bytes(),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("fault rule on {}: {e}", n.sql));
    }
}

#[test]
fn a_partitioned_node_never_serves_stale_reads() {
    let dir = common::TempDir::new("chitin-partition").unwrap();
    let mut nodes = cluster(dir.path(), 3);
    for n in nodes.iter_mut() {
        n.spawn();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = async {
        init_and_wait(&nodes).await;
        let c1 = common::connect(&nodes[0].config()).await.unwrap();
        c1.batch_execute("CREATE TABLE acked (k INT8 PRIMARY KEY, v INT8)")
            .await
            .unwrap();
        let load = Load::new();
        let mut writers = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            writers.push(tokio::spawn(writer(n.config(), i as i64, 3, load.clone())));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        for victim in [2usize, 0, 1] {
            set_partition(&nodes, Some(victim));
            let cut_at = Instant::now();
            let isolated = common::connect(&nodes[victim].config()).await.unwrap();
            let mut served = 0;
            let mut refused = 0;
            while cut_at.elapsed() < Duration::from_secs(6) {
                let before = load.acked.lock().unwrap().clone();
                let read = tokio::time::timeout(
                    Duration::from_secs(2),
                    isolated.query("SELECT k FROM acked", &[]),
                )
                .await;
                match read {
                    Ok(Ok(rows)) => {
                        served += 1;
                        let seen: BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
                        let missing: Vec<_> = before.difference(&seen).take(5).collect();
                        assert!(
                            missing.is_empty(),
                            "stale read through isolated node {}: acknowledged rows {missing:?} missing",
                            victim + 1
                        );
                    }
                    _ => refused += 1,
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let gap = longest_gap(
                &load.times.lock().unwrap(),
                cut_at + Duration::from_millis(100),
                Instant::now(),
            );
            println!(
                "node {} cut off: {served} reads served there, {refused} refused; longest write gap {gap:?}",
                victim + 1
            );
            assert!(
                gap < Duration::from_secs(10),
                "the majority stopped serving writes for {gap:?}"
            );
            set_partition(&nodes, None);
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        load.stop.store(true, Ordering::SeqCst);
        for w in writers {
            let _ = w.await;
        }
        let acked = load.acked.lock().unwrap().clone();
        println!("{} writes acknowledged", acked.len());
        for n in &nodes {
            let seen = read_all(n).await;
            let lost: Vec<_> = acked.difference(&seen).take(10).collect();
            assert!(
                lost.is_empty(),
                "node {} lacks acknowledged rows {lost:?}",
                n.sql
            );
        }
    };
    let run = async { tokio::time::timeout(Duration::from_secs(180), body).await };
    if rt.block_on(run).is_err() {
        panic!(
            "timed out; logs:\n{}\n{}\n{}",
            nodes[0].log_tail(),
            nodes[1].log_tail(),
            nodes[2].log_tail()
        );
    }
}

#[test]
fn demo_serves_sql_and_leaves_nothing_behind() {
    use std::io::BufRead;
    let mut demo = Command::new(env!("CARGO_BIN_EXE_chitin"))
        .args(["demo", "--nodes", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn chitin demo");
    let pid = demo.id() as libc::pid_t;
    struct KillOnDrop(libc::pid_t);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            // SAFETY: kill(2) on our child's pid; harmless if it already exited.
            unsafe {
                libc::kill(self.0, libc::SIGTERM);
            }
        }
    }
    let _guard = KillOnDrop(pid);
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = demo.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut urls = Vec::new();
    let mut dir = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    while urls.len() < 3 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("demo did not print its nodes in time");
        println!("{line}");
        if let Some(rest) = line.split("stores and logs in ").nth(1) {
            dir = Some(PathBuf::from(rest.trim_end_matches(')')));
        }
        if let Some(url) = line
            .split_whitespace()
            .find(|w| w.starts_with("postgresql://"))
        {
            urls.push(url.to_string());
        }
    }
    let dir = dir.expect("demo names its directory");
    assert!(dir.exists());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for url in &urls {
            let config: tokio_postgres::Config = url.parse().unwrap();
            let c = common::connect(&config)
                .await
                .expect("connect to a demo node");
            let row = c.query_one("SELECT 1 + 1", &[]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), 2);
        }
    });
    // SAFETY: kill(2) on our child's pid.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = demo.try_wait() {
            assert!(status.success(), "demo exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!dir.exists(), "demo left {} behind", dir.display());
    for url in &urls {
        let port: u16 = url
            .split(':')
            .nth(2)
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "a demo node still listens on {port}"
        );
    }
}

#[test]
fn rolling_restart_under_load_loses_nothing() {
    let dir = common::TempDir::new("chitin-rolling").unwrap();
    let mut nodes = cluster(dir.path(), 3);
    for n in nodes.iter_mut() {
        n.spawn();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = async {
        init_and_wait(&nodes).await;
        let c1 = common::connect(&nodes[0].config()).await.unwrap();
        c1.batch_execute("CREATE TABLE acked (k INT8 PRIMARY KEY, v INT8)")
            .await
            .unwrap();
        let load = Load::new();
        let mut writers = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            writers.push(tokio::spawn(writer(n.config(), i as i64, 3, load.clone())));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        for (i, node) in nodes.iter_mut().enumerate() {
            let graceful = node.stop(Duration::from_secs(10));
            assert!(graceful, "node {} did not stop on SIGTERM", i + 1);
            node.spawn();
            wait_sql(node, Duration::from_secs(30)).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        load.stop.store(true, Ordering::SeqCst);
        for w in writers {
            let _ = w.await;
        }
        let acked = load.acked.lock().unwrap().clone();
        let errors = load.errors.lock().unwrap().clone();
        println!(
            "{} writes acknowledged; server errors seen: {errors:?}",
            acked.len()
        );
        // Retry (40001), ambiguous result (40003) and shutdown (57P01) are what a client of
        // a restarting cluster is told; nothing else.
        let unexpected: Vec<_> = errors
            .iter()
            .filter(|c| !["40001", "40003", "57P01"].contains(&c.as_str()))
            .collect();
        assert!(unexpected.is_empty(), "unexpected errors {unexpected:?}");
        for n in &nodes {
            let seen = read_all(n).await;
            let lost: Vec<_> = acked.difference(&seen).take(10).collect();
            assert!(
                lost.is_empty(),
                "node {} lacks acknowledged rows {lost:?}",
                n.sql
            );
        }
    };
    let run = async { tokio::time::timeout(Duration::from_secs(180), body).await };
    if rt.block_on(run).is_err() {
        panic!(
            "timed out; logs:\n{}\n{}\n{}",
            nodes[0].log_tail(),
            nodes[1].log_tail(),
            nodes[2].log_tail()
        );
    }
}

#[test]
fn five_replicas_survive_two_simultaneous_kills() {
    let dir = common::TempDir::new("chitin-five").unwrap();
    let mut nodes = cluster(dir.path(), 5);
    for n in nodes.iter_mut() {
        n.spawn();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = async {
        let host = nodes[0].sql.to_string();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            match chitin(&["init", "--host", &host, "--num-replicas", "5"]) {
                Ok(out) => {
                    println!("{}", out.trim());
                    assert!(out.contains("[1, 2, 3, 4, 5]"), "{out}");
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "init failed: {e}");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        for n in &nodes {
            wait_sql(n, Duration::from_secs(40)).await;
        }
        let c1 = common::connect(&nodes[0].config()).await.unwrap();
        c1.batch_execute("CREATE TABLE acked (k INT8 PRIMARY KEY, v INT8)")
            .await
            .unwrap();
        c1.batch_execute("ALTER TABLE acked SPLIT AT VALUES (1000), (2000), (3000), (4000)")
            .await
            .unwrap();
        let load = Load::new();
        let mut writers = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            writers.push(tokio::spawn(writer(n.config(), i as i64, 5, load.clone())));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Two at once: the first range's lease holder and the node after it.
        let holder = lease_holders(&nodes[1]).await[0];
        let victims = [holder - 1, holder % 5];
        let killed_at = Instant::now();
        for v in victims {
            nodes[v].kill();
        }
        tokio::time::sleep(Duration::from_secs(12)).await;
        let gap = longest_gap(&load.times.lock().unwrap(), killed_at, Instant::now());
        println!(
            "killed nodes {} and {}: longest write gap {gap:?}",
            victims[0] + 1,
            victims[1] + 1
        );
        assert!(gap < Duration::from_secs(10), "writes stalled {gap:?}");
        let acked_now = load.acked.lock().unwrap().clone();
        let survivor = (0..5).find(|i| !victims.contains(i)).unwrap();
        let seen = read_all(&nodes[survivor]).await;
        let lost: Vec<_> = acked_now.difference(&seen).take(10).collect();
        assert!(lost.is_empty(), "lost acknowledged rows {lost:?}");
        for v in victims {
            nodes[v].spawn();
        }
        for v in victims {
            wait_sql(&nodes[v], Duration::from_secs(40)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        load.stop.store(true, Ordering::SeqCst);
        for w in writers {
            let _ = w.await;
        }
        let acked = load.acked.lock().unwrap().clone();
        println!("{} writes acknowledged", acked.len());
        for n in &nodes {
            let seen = read_all(n).await;
            let lost: Vec<_> = acked.difference(&seen).take(10).collect();
            assert!(
                lost.is_empty(),
                "node {} lacks acknowledged rows {lost:?}",
                n.sql
            );
        }
    };
    let run = async { tokio::time::timeout(Duration::from_secs(240), body).await };
    if rt.block_on(run).is_err() {
        let tails: Vec<String> = nodes.iter().map(|n| n.log_tail()).collect();
        panic!("timed out; logs:\n{}", tails.join("\n"));
    }
}

/// One transfer between accounts `a` and `b` in an explicit transaction; any error rolls
/// back (the connection may be gone).
async fn transfer(
    c: &tokio_postgres::Client,
    a: i64,
    b: i64,
    amount: i64,
) -> Result<(), tokio_postgres::Error> {
    c.batch_execute("BEGIN").await?;
    let r = async {
        c.execute(
            "UPDATE accounts SET balance = balance - $1 WHERE id = $2",
            &[&amount, &a],
        )
        .await?;
        c.execute(
            "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
            &[&amount, &b],
        )
        .await?;
        c.batch_execute("COMMIT").await
    }
    .await;
    if r.is_err() {
        let _ = c.batch_execute("ROLLBACK").await;
    }
    r
}

#[test]
fn cross_range_transfers_stay_atomic_when_a_lease_holder_dies() {
    // Two-phase commits across ranges whose leaders sit on different nodes; the lease
    // holder of one range is killed mid-run and restarted. Whatever each client was told
    // (committed, retry, ambiguous, connection lost), money is neither created nor lost.
    const ACCOUNTS: i64 = 10;
    const INITIAL: i64 = 1000;
    let dir = common::TempDir::new("chitin-cluster-bank").unwrap();
    let mut nodes = cluster(dir.path(), 3);
    for n in nodes.iter_mut() {
        n.spawn();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = async {
        init_and_wait(&nodes).await;
        let c1 = common::connect(&nodes[0].config()).await.unwrap();
        c1.batch_execute("CREATE TABLE accounts (id INT8 PRIMARY KEY, balance INT8)")
            .await
            .unwrap();
        c1.batch_execute(&format!(
            "INSERT INTO accounts SELECT i, {INITIAL} FROM generate_series(0, {}) AS g(i)",
            ACCOUNTS - 1
        ))
        .await
        .unwrap();
        c1.batch_execute(&format!(
            "ALTER TABLE accounts SPLIT AT VALUES ({})",
            ACCOUNTS / 2
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(Mutex::new(0u64));
        let mut workers = Vec::new();
        for (w, n) in nodes.iter().enumerate() {
            let config = n.config();
            let stop = stop.clone();
            let committed = committed.clone();
            workers.push(tokio::spawn(async move {
                let mut seed = w as i64 * 7 + 3;
                let mut client = None;
                while !stop.load(Ordering::SeqCst) {
                    if client.is_none() {
                        client =
                            tokio::time::timeout(Duration::from_secs(3), common::connect(&config))
                                .await
                                .ok()
                                .and_then(Result::ok);
                        if client.is_none() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    }
                    seed = (seed * 1103515245 + 12345) & 0x7fff_ffff;
                    let a = seed % (ACCOUNTS / 2);
                    let b = ACCOUNTS / 2 + (seed / 7) % (ACCOUNTS / 2);
                    let (a, b) = if seed % 2 == 0 { (a, b) } else { (b, a) };
                    let c = client.as_ref().unwrap();
                    match tokio::time::timeout(
                        Duration::from_secs(15),
                        transfer(c, a, b, 1 + seed % 9),
                    )
                    .await
                    {
                        Ok(Ok(())) => *committed.lock().unwrap() += 1,
                        Ok(Err(e)) if e.as_db_error().is_some() => {}
                        _ => client = None,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let holder = {
            let c = common::connect(&nodes[1].config()).await.unwrap();
            let msgs = c
                .simple_query("SHOW RANGES FROM TABLE accounts")
                .await
                .unwrap();
            let holders: Vec<usize> = msgs
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        r.get("lease_holder")?.parse().ok()
                    }
                    _ => None,
                })
                .collect();
            println!("lease holders of the two ranges: {holders:?}");
            holders[1]
        };
        nodes[holder - 1].kill();
        tokio::time::sleep(Duration::from_secs(6)).await;
        nodes[holder - 1].spawn();
        wait_sql(&nodes[holder - 1], Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            let _ = w.await;
        }
        println!("{} transfers committed", committed.lock().unwrap());
        assert!(*committed.lock().unwrap() > 0);
        for n in &nodes {
            let c = common::connect(&n.config()).await.unwrap();
            let mut attempts = 0;
            let total: i64 = loop {
                match c
                    .query_one("SELECT sum(balance)::INT8, count(*) FROM accounts", &[])
                    .await
                {
                    Ok(row) => {
                        assert_eq!(row.get::<_, i64>(1), ACCOUNTS);
                        break row.get(0);
                    }
                    Err(e) if attempts < 50 => {
                        attempts += 1;
                        eprintln!("sum through {}: {e}", n.sql);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("sum through {}: {e:?}", n.sql),
                }
            };
            assert_eq!(
                total,
                ACCOUNTS * INITIAL,
                "money created or lost (read through {})",
                n.sql
            );
        }
    };
    let run = async { tokio::time::timeout(Duration::from_secs(180), body).await };
    if rt.block_on(run).is_err() {
        panic!(
            "timed out; logs:\n{}\n{}\n{}",
            nodes[0].log_tail(),
            nodes[1].log_tail(),
            nodes[2].log_tail()
        );
    }
}

/// The `replicas` of each range of table `acked` (`SHOW RANGES`), in key order.
async fn range_replicas(node: &Node) -> Result<Vec<Vec<u64>>, String> {
    let c = common::connect(&node.config())
        .await
        .map_err(|e| e.to_string())?;
    let msgs = c
        .simple_query("SHOW RANGES FROM TABLE acked")
        .await
        .map_err(|e| e.to_string())?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                let text = r.get("replicas")?;
                Some(
                    text.trim_matches(|c| c == '{' || c == '}')
                        .split(',')
                        .filter_map(|x| x.trim().parse().ok())
                        .collect(),
                )
            }
            _ => None,
        })
        .collect())
}

/// What each live node answers for a row a read missed, and who holds each range of
/// `acked` then: a lost-row failure says where the row went missing.
async fn lost_row_report(live: &[&Node], key: i64) -> String {
    let mut out = format!("row {key}:\n");
    for n in live {
        let Ok(c) = common::connect(&n.config()).await else {
            out += &format!("  via {}: no connection\n", n.sql);
            continue;
        };
        let point = c
            .query("SELECT v FROM acked WHERE k = $1", &[&key])
            .await
            .map(|r| r.len());
        let scan = read_all(n).await.contains(&key);
        out += &format!(
            "  via {}: point read rows {point:?}, full scan has it: {scan}\n",
            n.sql
        );
        if let Ok(msgs) = c.simple_query("SHOW RANGES FROM TABLE acked").await {
            for m in msgs {
                if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                    let cols: Vec<&str> =
                        (0..r.len()).map(|i| r.get(i).unwrap_or("NULL")).collect();
                    out += &format!("    {}\n", cols.join(" | "));
                }
            }
        }
    }
    for n in live {
        out += &format!("--- log {}:\n{}\n", n.sql, n.log_tail());
    }
    out
}

/// Waits until every range of `acked` has exactly three replicas, none on `without` (0:
/// any node).
async fn wait_replicated(via: &Node, without: u64, timeout: Duration) -> Duration {
    let started = Instant::now();
    let mut last = Err(String::new());
    while started.elapsed() < timeout {
        last = range_replicas(via).await;
        if let Ok(ranges) = &last {
            if !ranges.is_empty() && ranges.iter().all(|r| r.len() == 3 && !r.contains(&without)) {
                return started.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("ranges not moved off node {without} within {timeout:?}: {last:?}");
}

/// `a_dead_node_is_replaced_and_a_decommissioned_node_is_drained`: four nodes, replicas on
/// the first three, `server.time_until_store_dead` set to 3 s. Node 3 is killed under a
/// write load: every range gets a replica on node 4 (a joint-consensus change and a
/// snapshot) and loses node 3's. Then node 3 comes back (and destroys the replicas its
/// groups removed, replica GC) and node 1 is decommissioned:
/// every replica moves off node 1 (its leases first). Node 1 is recommissioned and a
/// fifth node joins the running cluster (`start --join`, no `init`): it becomes a member
/// and rebalancing gives it replicas. Nothing acknowledged is lost, and every node (the
/// decommissioned one too, forwarding) reads every acknowledged row.
#[test]
fn a_dead_node_is_replaced_and_a_decommissioned_node_is_drained() {
    let dir = common::TempDir::new("chitin-realloc").unwrap();
    let mut nodes = cluster(dir.path(), 4);
    for n in nodes.iter_mut() {
        n.spawn();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = async {
        init_and_wait(&nodes).await;
        let c1 = common::connect(&nodes[0].config()).await.unwrap();
        c1.batch_execute("SET CLUSTER SETTING server.time_until_store_dead = '3s'")
            .await
            .unwrap();
        let shown = c1
            .simple_query("SHOW CLUSTER SETTING server.time_until_store_dead")
            .await
            .unwrap();
        assert!(
            shown.iter().any(|m| matches!(m,
                tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("00:00:03"))),
            "setting not shown"
        );
        c1.batch_execute("CREATE TABLE acked (k INT8 PRIMARY KEY, v INT8)")
            .await
            .unwrap();
        c1.batch_execute("INSERT INTO acked SELECT -i, -i * 7 FROM generate_series(1, 300) AS i")
            .await
            .unwrap();
        if let Err(e) = c1
            .batch_execute("ALTER TABLE acked SPLIT AT VALUES (1000), (2000), (3000)")
            .await
        {
            let logs: Vec<String> = nodes.iter().map(|n| n.log_tail()).collect();
            panic!("SPLIT AT: {e:?}\n{}", logs.join("\n---\n"));
        }
        // The rebalancer may be moving a replica to node 4 (a joint configuration shows
        // four): wait for every range to be at three.
        wait_replicated(&nodes[0], 0, Duration::from_secs(30)).await;
        let load = Load::new();
        let mut writers = Vec::new();
        for (i, n) in [0usize, 1, 3].iter().enumerate() {
            writers.push(tokio::spawn(writer(
                nodes[*n].config(),
                i as i64,
                3,
                load.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        nodes[2].kill();
        let took = wait_replicated(&nodes[0], 3, Duration::from_secs(60)).await;
        println!("node 3 killed: every range back at 3 replicas (none on node 3) after {took:?}");
        let installed = common::status_var(nodes[3].http, "raft_snapshots_applied_total");
        let changes = common::status_var(nodes[0].http, "raft_conf_changes_total")
            + common::status_var(nodes[1].http, "raft_conf_changes_total");
        println!(
            "node 4 installed {installed} snapshots; nodes 1-2 applied {changes} conf changes"
        );
        assert!(installed >= 4, "node 4 installed {installed} snapshots");
        // The first range holds 300 rows from before any snapshot of it: node 4 got its
        // replica (replacing node 3's, or by rebalancing) as a streamed snapshot.
        let chunks = common::status_var(nodes[3].http, "raft_snapshot_chunks_applied_total");
        println!("node 4 installed {chunks} chunks of streamed snapshots");
        assert!(chunks > 1, "no snapshot was streamed to node 4");
        let acked_now = load.acked.lock().unwrap().clone();
        let seen = read_all(&nodes[3]).await;
        assert_eq!(
            seen.iter().filter(|k| **k < 0).count(),
            300,
            "the first rows"
        );
        let lost: Vec<_> = acked_now.difference(&seen).take(10).collect();
        if !lost.is_empty() {
            let live = [&nodes[0], &nodes[1], &nodes[3]];
            println!("{}", lost_row_report(&live, *lost[0]).await);
        }
        assert!(lost.is_empty(), "lost acknowledged rows {lost:?}");

        nodes[2].spawn();
        wait_sql(&nodes[2], Duration::from_secs(40)).await;
        // Node 3 came back with replicas its groups removed meanwhile: they know no
        // leader (unavailable, as it sees them) until replica GC asks their leaders and
        // destroys them (or rebalancing adds node 3 back, and they catch up).
        let started = Instant::now();
        loop {
            let collected = common::status_var(nodes[2].http, "replicas_gc_total");
            let unavailable = common::status_var(nodes[2].http, "ranges_unavailable");
            if collected > 0 && unavailable == 0 {
                println!(
                    "node 3 destroyed {collected} removed replicas after {:?}; it holds {}",
                    started.elapsed(),
                    common::status_var(nodes[2].http, "replicas")
                );
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(45),
                "node 3: {collected} replicas collected, {unavailable} without a leader\n{}",
                nodes[2].log_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Node 3 just restarted: the system range may be changing leader, and the command
        // then answers a retryable error (a user retries, so does the test).
        let mut attempts = 0;
        let out = loop {
            match chitin(&[
                "node",
                "decommission",
                "1",
                "--host",
                &nodes[1].sql.to_string(),
            ]) {
                Ok(out) => break out,
                Err(e) if e.contains("restart transaction") && attempts < 20 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("decommission: {e}"),
            }
        };
        println!("{}", out.trim());
        let took = wait_replicated(&nodes[1], 1, Duration::from_secs(60)).await;
        println!("node 1 decommissioned: its replicas moved away after {took:?}");
        let status =
            chitin(&["node", "status", "--host", &nodes[3].sql.to_string()]).expect("node status");
        let node1: Vec<&str> = status
            .lines()
            .find(|l| l.starts_with("1\t"))
            .map(|l| l.split('\t').collect())
            .unwrap_or_default();
        assert_eq!(
            node1.get(4).copied(),
            Some("true"),
            "node 1 not shown decommissioning:\n{status}"
        );
        // Node 1 comes back into service, and a fifth node joins the running cluster:
        // rebalancing by count gives it replicas.
        chitin(&[
            "node",
            "recommission",
            "1",
            "--host",
            &nodes[1].sql.to_string(),
        ])
        .expect("recommission");
        let mut n5 = Node {
            store: dir.path().join("node5"),
            log: dir.path().join("node5.log"),
            sql: ([127, 0, 0, 1], stable_port()).into(),
            http: ([127, 0, 0, 1], stable_port()).into(),
            join: nodes[0].join.clone(),
            extra: Vec::new(),
            child: None,
        };
        n5.spawn();
        wait_sql(&n5, Duration::from_secs(40)).await;
        let status =
            chitin(&["node", "status", "--host", &nodes[0].sql.to_string()]).expect("node status");
        println!("{}", status.trim());
        assert!(
            status.lines().any(|l| l.starts_with("5\t")),
            "node 5 not a member:\n{status}"
        );
        let started = Instant::now();
        loop {
            let ranges = range_replicas(&nodes[0]).await.unwrap_or_default();
            if ranges.iter().any(|r| r.contains(&5)) {
                println!(
                    "node 5 joined; holds replicas after {:?}: {ranges:?}",
                    started.elapsed()
                );
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "node 5 got no replica: {ranges:?}\n{}",
                n5.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        load.stop.store(true, Ordering::SeqCst);
        for w in writers {
            let _ = w.await;
        }
        let acked = load.acked.lock().unwrap().clone();
        println!("{} writes acknowledged", acked.len());
        assert!(acked.len() > 100, "too few writes acknowledged");
        for n in nodes.iter().chain(std::iter::once(&n5)) {
            let seen = read_all(n).await;
            let lost: Vec<_> = acked.difference(&seen).take(10).collect();
            assert!(
                lost.is_empty(),
                "node {} lacks acknowledged rows {lost:?}",
                n.sql
            );
        }
        // Drain node 2 (asked through node 4): it hands over every lease and refuses new
        // SQL connections; the others serve everything.
        let out = chitin(&["node", "drain", "2", "--host", &nodes[3].sql.to_string()])
            .expect("node drain");
        println!("{}", out.trim());
        assert!(out.contains("drained"), "{out}");
        assert_eq!(common::status_var(nodes[1].http, "raft_leaders"), 0);
        match common::connect(&nodes[1].config()).await {
            Ok(_) => panic!("a draining node accepted a connection"),
            Err(e) => assert_eq!(
                e.code(),
                Some(&tokio_postgres::error::SqlState::ADMIN_SHUTDOWN),
                "{e:?}"
            ),
        }
        let seen = read_all(&nodes[3]).await;
        assert!(acked.is_subset(&seen), "rows lost after the drain");
    };
    let run = async { tokio::time::timeout(Duration::from_secs(240), body).await };
    if rt.block_on(run).is_err() {
        let tails: Vec<String> = nodes.iter().map(|n| n.log_tail()).collect();
        panic!("timed out; logs:\n{}", tails.join("\n"));
    }
}

/// Runs `sql` through a new connection to `node`, answering the first column of each row
/// (simple protocol).
async fn query_col(node: &Node, sql: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let c = common::connect(&node.config()).await?;
    let msgs = c.simple_query(sql).await?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect())
}

#[test]
fn clock_skew_hides_no_acknowledged_write_and_a_far_off_node_stops_serving() {
    let dir = common::TempDir::new("chitin-clock").unwrap();
    let mut nodes = cluster(dir.path(), 3);
    nodes[2].extra = vec!["--testing-clock-offset".into(), "300ms".into()];
    for n in nodes.iter_mut() {
        n.spawn();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = async {
        init_and_wait(&nodes).await;
        let c1 = common::connect(&nodes[0].config()).await.unwrap();
        for sql in [
            "CREATE TABLE reg (k INT8 PRIMARY KEY, v INT8 NOT NULL)",
            "ALTER TABLE reg SPLIT AT VALUES (2)",
            "INSERT INTO reg VALUES (1, 0), (2, 0)",
        ] {
            c1.batch_execute(sql).await.unwrap();
        }
        let c3 = common::connect(&nodes[2].config()).await.unwrap();
        let started = Instant::now();
        // Warm both nodes' descriptor and plan caches (a single statement reloads a
        // catalog that has not yet noticed another node's CREATE TABLE).
        for (n, c) in [(1, &c1), (3, &c3)] {
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Err(e) = c.query("SELECT v FROM reg WHERE k = 1", &[]).await {
                assert!(Instant::now() < deadline, "node {n}: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        println!("table visible on node 3 after {:?}", started.elapsed());
        let mut stale = Vec::new();
        let mut written = 0i64;
        for i in 1..=150i64 {
            let txn = format!(
                "BEGIN; UPDATE reg SET v = {i} WHERE k = 1; UPDATE reg SET v = {i} WHERE k = 2; COMMIT"
            );
            match c3.batch_execute(&txn).await {
                Ok(()) => written = i,
                Err(e)
                    if e.code()
                        == Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE) =>
                {
                    let _ = c3.batch_execute("ROLLBACK").await;
                    continue;
                }
                Err(e) => panic!("write {i} through node 3: {e:?}\n{}", nodes[2].log_tail()),
            }
            // Acknowledged: a read that starts now must see it, on every node.
            let seen = loop {
                match c1.query("SELECT v FROM reg WHERE k = 1", &[]).await {
                    Ok(rows) => break rows[0].get::<_, i64>(0),
                    Err(e)
                        if e.code()
                            == Some(
                                &tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE,
                            ) =>
                    {
                        continue
                    }
                    Err(e) => panic!("read through node 1: {e:?}"),
                }
            };
            let sum = loop {
                match c1.query("SELECT sum(v)::INT8 FROM reg", &[]).await {
                    Ok(rows) => break rows[0].get::<_, i64>(0),
                    Err(e)
                        if e.code()
                            == Some(
                                &tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE,
                            ) =>
                    {
                        continue
                    }
                    Err(e) => panic!("scan through node 1: {e:?}"),
                }
            };
            if seen != written || sum != 2 * written {
                stale.push((written, seen, sum));
            }
        }
        let restarts = common::status_var(nodes[0].http, "sql_txn_uncertainty_restarts_total");
        println!(
            "{written} skewed writes read back through node 1 in {:?}: {} stale, {restarts} uncertainty restarts on node 1",
            started.elapsed(),
            stale.len()
        );
        assert!(written >= 100, "too few writes went through: {written}");
        assert!(
            stale.is_empty(),
            "{} reads missed acknowledged writes (write, value seen, sum seen): {:?}",
            stale.len(),
            &stale[..stale.len().min(10)]
        );

        // A clock beyond the maximum offset: node 3 stops serving, the others do not.
        drop(c3);
        nodes[2].stop(Duration::from_secs(10));
        nodes[2].extra = vec!["--testing-clock-offset".into(), "1500ms".into()];
        nodes[2].spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        let refused = loop {
            match query_col(&nodes[2], "SELECT count(*) FROM reg").await {
                Err(e) if e.code().map(|c| c.code()) == Some("58000") => break e,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "node 3 kept serving with its clock 1.5 s off\n{}",
                nodes[2].log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        println!("node 3 refuses: {refused:?}");
        assert!(
            !common::http_ready(nodes[2].http),
            "node 3 still reports ready"
        );
        for n in &nodes[..2] {
            let v = query_col(n, "SELECT sum(v)::INT8 FROM reg").await.unwrap();
            assert_eq!(v, vec![(2 * written).to_string()]);
            let c = common::connect(&n.config()).await.unwrap();
            c.batch_execute("UPDATE reg SET v = v WHERE k = 1")
                .await
                .unwrap();
        }
        nodes[2].stop(Duration::from_secs(10));
        nodes[2].extra.clear();
        nodes[2].spawn();
        wait_sql(&nodes[2], Duration::from_secs(30)).await;
        let v = query_col(&nodes[2], "SELECT sum(v)::INT8 FROM reg")
            .await
            .unwrap();
        assert_eq!(v, vec![(2 * written).to_string()]);
    };
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(150), body)
            .await
            .expect("clock test timed out")
    });
}

/// `SHOW RANGES FROM TABLE acked` as (first key of the range, lease holder).
async fn range_leases(node: &Node) -> Vec<(i64, usize)> {
    let c = common::connect(&node.config()).await.expect("connect");
    let msgs = c
        .simple_query("SHOW RANGES FROM TABLE acked")
        .await
        .expect("SHOW RANGES");
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                // "/1/1000" starts at key 1000; the first range at the table's start.
                let first = r
                    .get("start_key")
                    .and_then(|s| s.rsplit('/').next()?.parse().ok())
                    .unwrap_or(0);
                Some((first, r.get("lease_holder")?.parse().ok()?))
            }
            _ => None,
        })
        .collect()
}

/// Adds 1 to row `k`; a transaction that fails rolls back at once (releasing its locks),
/// as a client does.
async fn update_or_rollback(
    c: &tokio_postgres::Client,
    k: i64,
) -> Result<(), tokio_postgres::Error> {
    let r = c
        .batch_execute(&format!("UPDATE acked SET v = v + 1 WHERE k = {k}"))
        .await;
    if r.is_err() {
        let _ = c.batch_execute("ROLLBACK").await;
    }
    r
}

#[test]
fn a_deadlock_across_nodes_is_broken_by_failing_one_transaction() {
    let dir = common::TempDir::new("chitin-deadlock").unwrap();
    let mut nodes = cluster(dir.path(), 3);
    for n in nodes.iter_mut() {
        n.spawn();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = async {
        init_and_wait(&nodes).await;
        let c1 = common::connect(&nodes[0].config()).await.unwrap();
        for sql in [
            "CREATE TABLE acked (k INT8 PRIMARY KEY, v INT8 NOT NULL)",
            "ALTER TABLE acked SPLIT AT VALUES (1000), (2000), (3000), (4000), (5000)",
            "INSERT INTO acked SELECT g * 1000 + 500, 0 FROM generate_series(0, 5) AS g",
        ] {
            c1.batch_execute(sql).await.unwrap();
        }
        // Two rows whose ranges are led by different nodes: each transaction's wait is
        // then recorded on a different node, and neither node alone sees the cycle.
        let deadline = Instant::now() + Duration::from_secs(30);
        let (ka, kb) = loop {
            let leases = range_leases(&nodes[0]).await;
            let a = leases.first().copied();
            let b = leases
                .iter()
                .find(|(_, holder)| Some(*holder) != a.map(|a| a.1));
            if let (Some(a), Some(b)) = (a, b) {
                break (a.0 + 500, b.0 + 500);
            }
            assert!(
                Instant::now() < deadline,
                "leases all on one node: {leases:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let ca = common::connect(&nodes[1].config()).await.unwrap();
        let cb = common::connect(&nodes[2].config()).await.unwrap();
        for (c, k) in [(&ca, ka), (&cb, kb)] {
            c.batch_execute(&format!("BEGIN; UPDATE acked SET v = v + 1 WHERE k = {k}"))
                .await
                .unwrap();
        }
        // Each now waits for the row the other holds.
        let started = Instant::now();
        let (ra, rb) = tokio::join!(update_or_rollback(&ca, kb), update_or_rollback(&cb, ka));
        let took = started.elapsed();
        println!("rows {ka} and {kb}: deadlock broken after {took:?}: {ra:?} / {rb:?}");
        let (winner, loser) = match (&ra, &rb) {
            (Ok(()), Err(e)) => (&ca, e),
            (Err(e), Ok(())) => (&cb, e),
            _ => panic!("exactly one transaction must fail: {ra:?} / {rb:?}"),
        };
        assert_eq!(
            loser.code(),
            Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE),
            "{loser:?}"
        );
        assert!(
            format!("{loser:?}").contains("deadlock"),
            "not broken as a deadlock: {loser:?}"
        );
        // Row locks held past 5 s are taken over: the deadlock must be found before.
        assert!(took < Duration::from_secs(4), "took {took:?}");
        winner.batch_execute("COMMIT").await.unwrap();
        let v = query_col(&nodes[0], "SELECT sum(v)::INT8 FROM acked")
            .await
            .unwrap();
        assert_eq!(v, vec!["2".to_string()], "the winner's two increments");

        // A lock held for longer than a forwarded request may take (3 s) by a live
        // transaction: the waiter on another node waits, in slices, and gets the row.
        let leases = range_leases(&nodes[0]).await;
        let (first, holder) = leases[0];
        let k = first + 500;
        assert!((1..=3).contains(&holder), "lease holder {holder}");
        let gateway = holder % 3; // node holder + 1 (index = id - 1)
        let ch = common::connect(&nodes[holder - 1].config()).await.unwrap();
        let cw = common::connect(&nodes[gateway].config()).await.unwrap();
        ch.batch_execute(&format!("BEGIN; UPDATE acked SET v = v + 10 WHERE k = {k}"))
            .await
            .unwrap();
        cw.batch_execute("BEGIN").await.unwrap();
        let started = Instant::now();
        let update = format!("UPDATE acked SET v = v + 100 WHERE k = {k}");
        let waiter = cw.batch_execute(&update);
        let holder_done = async {
            tokio::time::sleep(Duration::from_millis(4000)).await;
            ch.batch_execute("COMMIT").await
        };
        let (w, h) = tokio::join!(waiter, holder_done);
        let waited = started.elapsed();
        println!(
            "waited {waited:?} on node {} for a lock led by node {holder}",
            gateway + 1
        );
        h.unwrap();
        w.unwrap_or_else(|e| panic!("a lock wait of {waited:?} across nodes failed: {e:?}"));
        cw.batch_execute("COMMIT").await.unwrap();
        assert!(
            waited >= Duration::from_millis(3500),
            "did not wait: {waited:?}"
        );
        let v = query_col(&nodes[0], &format!("SELECT v FROM acked WHERE k = {k}"))
            .await
            .unwrap();
        let before: i64 = if [ka, kb].contains(&k) { 1 } else { 0 };
        assert_eq!(v, vec![(before + 110).to_string()]);
    };
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), body)
            .await
            .expect("deadlock test timed out")
    });
}

/// Sums a `/_status/vars` family over the nodes that are up.
fn cluster_var(nodes: &[Node], name: &str) -> u64 {
    nodes
        .iter()
        .filter(|n| n.child.is_some())
        .map(|n| common::status_var(n.http, name))
        .sum()
}

/// Waits until at least 80 % of the replicas on the live nodes are quiesced.
async fn wait_quiesced(nodes: &[Node], within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let quiesced = cluster_var(nodes, "raft_quiesced_ranges");
        let replicas = cluster_var(nodes, "ranges");
        if replicas > 0 && quiesced * 10 >= replicas * 8 {
            println!("{quiesced} of {replicas} replicas quiesced");
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "only {quiesced} of {replicas} replicas quiesced after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Reads the table through `node` until every row in `want` comes back (retrying any
/// error), and returns how long that took.
async fn read_until_complete(node: &Node, want: &BTreeSet<i64>, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = async {
            let c = common::connect(&node.config()).await.ok()?;
            let rows = c
                .query("SELECT k, v FROM acked ORDER BY k", &[])
                .await
                .ok()?;
            Some(
                rows.iter()
                    .map(|r| {
                        let (k, v): (i64, i64) = (r.get(0), r.get(1));
                        assert_eq!(v, k * 7, "row {k} has a value nobody wrote");
                        k
                    })
                    .collect::<BTreeSet<i64>>(),
            )
        };
        if let Ok(Some(got)) = tokio::time::timeout(Duration::from_secs(5), got).await {
            assert!(got.is_superset(want), "rows lost: {want:?} vs {got:?}");
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "no complete read through {} within {within:?}\n{}",
            node.sql,
            node.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Idle ranges quiesce (no ticks, no heartbeats, `raft_quiesced_ranges`), a request wakes
/// one at once, and the death of a quiesced range's leader wakes its followers, which
/// elect another: nothing acknowledged is lost and reads resume within seconds.
#[test]
fn idle_ranges_quiesce_and_wake_for_requests_and_a_dead_leader() {
    let dir = common::TempDir::new("chitin-quiesce").unwrap();
    let mut nodes = cluster(dir.path(), 3);
    for n in nodes.iter_mut() {
        n.spawn();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let body = async {
            init_and_wait(&nodes).await;
            let c1 = common::connect(&nodes[0].config()).await.unwrap();
            c1.batch_execute("CREATE TABLE acked (k INT8 PRIMARY KEY, v INT8)")
                .await
                .unwrap();
            let points: Vec<String> = (1..10).map(|i| format!("({})", i * 1000)).collect();
            c1.batch_execute(&format!(
                "ALTER TABLE acked SPLIT AT VALUES {}",
                points.join(", ")
            ))
            .await
            .unwrap();
            let mut want = BTreeSet::new();
            for i in 0..10i64 {
                let k = i * 1000 + 1;
                c1.execute("INSERT INTO acked VALUES ($1, $2)", &[&k, &(k * 7)])
                    .await
                    .unwrap();
                want.insert(k);
            }
            let holders = lease_holders(&nodes[0]).await;
            println!("leases of the table's ranges: {holders:?}");
            let took = wait_quiesced(&nodes, Duration::from_secs(30)).await;
            println!("quiesced {took:?} after the last request");
            // Quiet: no heartbeats for the quiesced ranges.
            let before = cluster_var(&nodes, "raft_messages_sent_total");
            tokio::time::sleep(Duration::from_secs(2)).await;
            let quiet = cluster_var(&nodes, "raft_messages_sent_total") - before;
            let replicas = cluster_var(&nodes, "ranges");
            let awake = replicas - cluster_var(&nodes, "raft_quiesced_ranges");
            println!(
                "{quiet} raft messages in 2 s of idleness over {replicas} replicas ({awake} awake)"
            );
            // An awake replica exchanges about 10 heartbeats or answers a second (100 ms
            // ticks); quiesced ones send nothing.
            assert!(
                quiet < (awake + 1) * 20,
                "{quiet} raft messages in 2 s over {replicas} replicas, {awake} awake"
            );
            // A request wakes the quiesced ranges (their leases lapsed): answered at once.
            let took = read_until_complete(&nodes[1], &want, Duration::from_secs(10)).await;
            println!("read of quiesced ranges answered in {took:?}");
            assert!(took < Duration::from_secs(3), "woke in {took:?}");
            wait_quiesced(&nodes, Duration::from_secs(30)).await;
            // Kill the node leading the first range while everything sleeps.
            let victim = holders[0] - 1;
            let survivor = (victim + 1) % 3;
            nodes[victim].kill();
            let took = read_until_complete(&nodes[survivor], &want, Duration::from_secs(20)).await;
            println!(
                "killed node {} (leading quiesced ranges): reads answered again after {took:?}",
                victim + 1
            );
            assert!(took < Duration::from_secs(10), "took {took:?}");
            // And writes to every range.
            let c = common::connect(&nodes[survivor].config()).await.unwrap();
            for i in 0..10i64 {
                let k = i * 1000 + 2;
                c.execute("INSERT INTO acked VALUES ($1, $2)", &[&k, &(k * 7)])
                    .await
                    .unwrap();
                want.insert(k);
            }
            read_until_complete(&nodes[(survivor + 1) % 3], &want, Duration::from_secs(10)).await;
            // The nodes view shows the dead node as not live, the others as live.
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let live: Vec<(i64, bool)> = c
                    .query(
                        "SELECT node_id, is_live FROM crdb_internal.gossip_nodes ORDER BY node_id",
                        &[],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                let expect: Vec<(i64, bool)> =
                    (1..=3).map(|id| (id, id != victim as i64 + 1)).collect();
                if live == expect {
                    println!("crdb_internal.gossip_nodes: {live:?}");
                    break;
                }
                assert!(Instant::now() < deadline, "gossip_nodes says {live:?}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(150), body)
            .await
            .expect("quiesce test timed out")
    });
}

/// The rows of a simple query through `c`, as text.
async fn text_rows(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[test]
fn an_index_built_online_waits_for_every_nodes_old_transactions() {
    let dir = common::TempDir::new("chitin-online-index").unwrap();
    let mut nodes = cluster(dir.path(), 3);
    for n in nodes.iter_mut() {
        n.spawn();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        init_and_wait(&nodes).await;
        let c1 = common::connect(&nodes[0].config()).await.unwrap();
        for sql in [
            "CREATE TABLE oi (id INT8 PRIMARY KEY, v INT8 NOT NULL)",
            "ALTER TABLE oi SPLIT AT VALUES (2500), (5000), (7500)",
            "INSERT INTO oi SELECT g, g % 100 FROM generate_series(1, 10000) AS g",
        ] {
            c1.batch_execute(sql).await.unwrap();
        }
        // Node 3 has read the table's descriptor (its catalog knows the table)...
        let old = common::connect(&nodes[2].config()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(e) = old.batch_execute("SELECT count(*) FROM oi").await {
            assert!(
                Instant::now() < deadline,
                "node 3 never saw the table: {e:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // ... and one of its transactions writes with that catalog and stays open.
        old.batch_execute("BEGIN; INSERT INTO oi VALUES (-3, 33)")
            .await
            .unwrap();
        // Writers through nodes 2 and 3 all along.
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = [1usize, 2, 1, 2]
            .into_iter()
            .enumerate()
            .map(|(w, node)| {
                let (config, stop) = (nodes[node].config(), stop.clone());
                tokio::spawn(async move {
                    let c = common::connect(&config).await.unwrap();
                    let (mut n, mut acked) = (0i64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let id = 1 + (n * 7919 + w as i64 * 104_729) % 10_000;
                        let sql = match n % 5 {
                            0 => format!(
                                "INSERT INTO oi VALUES ({}, {})",
                                100_000 * (w as i64 + 1) + n,
                                n % 100
                            ),
                            1 => format!("DELETE FROM oi WHERE id = {id}"),
                            _ => format!("UPDATE oi SET v = {} WHERE id = {id}", (n * 31) % 100),
                        };
                        match c.batch_execute(&sql).await {
                            Ok(()) => acked += 1,
                            Err(e)
                                if e.code()
                                    == Some(
                                        &tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE,
                                    ) => {}
                            Err(e) => panic!("{sql}: {e:?}"),
                        }
                    }
                    acked
                })
            })
            .collect();
        let build = {
            let config = nodes[0].config();
            tokio::spawn(async move {
                let c = common::connect(&config).await.unwrap();
                c.batch_execute("CREATE INDEX oi_v ON oi (v)").await
            })
        };
        // The build waits for node 3, and says so.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let jobs = text_rows(&c1, "SHOW JOBS").await;
            let status = jobs
                .iter()
                .find(|r| r[2] == "CREATE INDEX oi_v ON oi(v)")
                .map(|r| r[5].clone())
                .unwrap_or_default();
            if status.starts_with("waiting for node(s) 3") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the build never waited for node 3: {jobs:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert!(!build.is_finished(), "the build did not wait for node 3");
        old.batch_execute("COMMIT").await.unwrap();
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(60), build)
            .await
            .expect("the build timed out")
            .unwrap()
            .expect("CREATE INDEX");
        println!(
            "build finished {:?} after node 3's commit",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        let mut acked = 0;
        for w in writers {
            acked += w.await.unwrap();
        }
        assert!(acked > 0, "no write acknowledged");
        // Entry for entry, read from the index itself.
        let table: BTreeSet<(i64, i64)> = text_rows(&c1, "SELECT v, id FROM oi")
            .await
            .iter()
            .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
            .collect();
        let index: BTreeSet<(i64, i64)> = text_rows(&c1, "SHOW INDEX ENTRIES FROM oi_v")
            .await
            .iter()
            .map(|r| {
                let key: Vec<&str> = r[0].split('/').collect();
                (key[2].parse().unwrap(), key[3].parse().unwrap())
            })
            .collect();
        assert!(index.contains(&(33, -3)), "node 3's late row has no entry");
        let missing: Vec<_> = table.difference(&index).take(5).collect();
        let extra: Vec<_> = index.difference(&table).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "index out of step: rows without entries {missing:?}, entries without rows {extra:?}"
        );
        println!(
            "{} rows, {acked} writes through nodes 2 and 3 during the build, index exact",
            table.len()
        );
    });
}

/// DistSQL across nodes (issue 6, item 4): a table whose ranges are led by all three nodes
/// is aggregated by flows on each leader's node and core (the spec and the partial groups
/// cross the node transport), and answers what gateway-only execution answers.
#[test]
fn distsql_flows_run_on_every_leaseholder_node() {
    let dir = common::TempDir::new("chitin-distsql").unwrap();
    let mut nodes = cluster(dir.path(), 3);
    for n in nodes.iter_mut() {
        n.spawn();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        init_and_wait(&nodes).await;
        let c = common::connect(&nodes[0].config()).await.unwrap();
        for sql in [
            "CREATE TABLE ds (id INT8 PRIMARY KEY, g INT8, v INT8, s TEXT)",
            "ALTER TABLE ds SPLIT AT VALUES (2000), (4000), (6000), (8000), (10000), (12000)",
            "INSERT INTO ds SELECT i, i % 11, i * 3, 's' || i::TEXT FROM generate_series(1, 14000) AS i",
        ] {
            c.batch_execute(sql).await.unwrap();
        }
        // Leadership spreads over the nodes (a preferred voter per range).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let holders: BTreeSet<String> = text_rows(&c, "SHOW RANGES FROM TABLE ds")
                .await
                .into_iter()
                .map(|r| r[3].clone())
                .collect();
            if holders.len() == 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "leases never spread over 3 nodes: {holders:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let queries = [
            "SELECT g, count(*), sum(v), min(s), max(v), avg(v) FROM ds GROUP BY g ORDER BY g",
            "SELECT count(*), sum(v) FROM ds WHERE s LIKE 's1%'",
            "SELECT id, v FROM ds WHERE v % 4001 = 0 ORDER BY id",
            "SELECT g, string_agg(s, ',' ORDER BY id) FROM ds WHERE id % 997 = 0 GROUP BY g ORDER BY g",
            // LIMITs: flows answer pages of the first rows, the gateway stops asking.
            "SELECT id, v FROM ds LIMIT 10 OFFSET 4000",
            "SELECT id, s FROM ds WHERE g = 3 LIMIT 50",
            "SELECT id FROM ds WHERE id > 13990 LIMIT 20",
        ];
        for q in queries {
            c.batch_execute("SET distsql = off").await.unwrap();
            let gateway = text_rows(&c, q).await;
            c.batch_execute("SET distsql = on").await.unwrap();
            // Twice: the first run also teaches the gateway where the leaders are.
            for _ in 0..2 {
                assert_eq!(text_rows(&c, q).await, gateway, "{q}");
            }
        }
        let total = text_rows(&c, "SELECT count(*), sum(v) FROM ds").await;
        assert_eq!(
            total,
            vec![vec!["14000".to_string(), (3 * 14000 * 14001 / 2).to_string()]]
        );
        let plan: Vec<String> = text_rows(
            &c,
            "EXPLAIN ANALYZE (DISTSQL) SELECT g, sum(v) FROM ds GROUP BY g",
        )
        .await
        .into_iter()
        .map(|r| r[0].trim().to_string())
        .collect();
        let text = plan.join("\n");
        println!("{text}");
        for node in 1..=3 {
            assert!(
                plan.iter().any(|l| l.starts_with("flow ")
                    && l.contains(&format!(": node {node} core "))
                    && l.contains("partial aggregation")),
                "no flow on node {node}:\n{text}"
            );
            assert!(
                plan.iter()
                    .any(|l| l.starts_with(&format!("ran on node {node} core "))
                        && !l.contains("(gateway)")),
                "nothing ran on node {node}:\n{text}"
            );
        }
        assert_eq!(common::flow_rows_read(&plan), 14000, "{text}");
    });
}
