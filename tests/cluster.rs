//! A replicated cluster of real `chitin` processes on 127.0.0.1 (issue 5): three nodes
//! started with `start --join`, initialized with `chitin init`, every range a raft group
//! with a replica on each node.
//!
//! `three_nodes_survive_a_kill_without_losing_acknowledged_writes`: clients write through
//! every node; one node is killed with SIGKILL (first a follower's node, then the node
//! that initialized the cluster, which leads the ranges it created); writes through the
//! survivors resume within 10 s (the gap is printed), the killed node restarts and catches
//! up, and every acknowledged row is read back through every node. An acknowledged write
//! that is lost, or a row that appears without being written, fails the test.

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
    child: Option<Child>,
}

impl Node {
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
            child: None,
        })
        .collect()
}

/// Rows acknowledged by the writers, and whether they are still writing.
struct Load {
    acked: Mutex<BTreeSet<i64>>,
    /// Time of every acknowledged write, to measure the longest gap.
    times: Mutex<Vec<Instant>>,
    stop: AtomicBool,
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
                if e.as_db_error().is_none() {
                    client = None;
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
        // DDL on one node, used through the others.
        let c1 = common::connect(&nodes[0].config()).await.unwrap();
        c1.batch_execute("CREATE TABLE acked (k INT8 PRIMARY KEY, v INT8)")
            .await
            .unwrap();

        let load = Arc::new(Load {
            acked: Mutex::new(BTreeSet::new()),
            times: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
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

        // Kill node 3, then node 1 (the ranges' first leader), one after the other.
        for victim in [2usize, 0] {
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
