//! `chitin-cluster-latency`: single-row replicated write latency on a local 3-node cluster,
//! printed next to what it is made of on this machine (issue 5: "p50 ≤ 1.3 × (round trip
//! + fdatasync)"; issue 7: "single-client replicated write p50 ≤ 0.8 ms").
//!
//! It measures, in one run: the loopback TCP round trip (a 1-byte ping-pong between two
//! threads), the fdatasync of a 4 KiB overwrite in the stores' directory, then starts three
//! `chitin start` nodes (`--cores 1` each, stores in a temporary directory), initializes
//! them, and times single-row `UPSERT`s from one client, prepared, on distinct keys.
//!
//! ```text
//! cargo build --release
//! target/release/chitin-cluster-latency [--chitin target/release/chitin] [--ops 2000] [--dir /tmp]
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut chitin = PathBuf::from("target/release/chitin");
    let mut ops = 2000usize;
    let mut base = std::env::temp_dir();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned();
        match args[i].as_str() {
            "--chitin" => chitin = PathBuf::from(value.context("--chitin needs a path")?),
            "--ops" => ops = value.context("--ops needs a number")?.parse()?,
            "--dir" => base = PathBuf::from(value.context("--dir needs a path")?),
            other => bail!("unknown flag {other}"),
        }
        i += 2;
    }
    let dir = base.join(format!("chitin-cluster-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(&chitin, &dir, ops);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(chitin: &Path, dir: &Path, ops: usize) -> Result<()> {
    let rtt = loopback_round_trip(2000)?;
    let fsync = fdatasync_latency(&dir.join("fsync-probe"), 1000)?;
    let mut nodes = Nodes(Vec::new());
    let all = free_ports(6)?;
    let (ports, http_ports) = all.split_at(3);
    let join = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    for (n, (port, http)) in ports.iter().zip(http_ports).enumerate() {
        let log = std::fs::File::create(dir.join(format!("node{}.log", n + 1)))?;
        let child = Command::new(chitin)
            .args(["start", "--cores", "1", "--insecure", "--join", &join])
            .arg("--store")
            .arg(dir.join(format!("node{}", n + 1)))
            .arg("--listen-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{http}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", chitin.display()))?;
        nodes.0.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new(chitin)
            .args(["init", "--host", &format!("127.0.0.1:{}", ports[0])])
            .output()?;
        if out.status.success() {
            break;
        }
        if Instant::now() > deadline {
            bail!("init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let hist = rt.block_on(upserts(ports[0], ops))?;
    drop(nodes);
    let p = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let upsert_p50 = p(&hist, 0.5);
    let floor = rtt + fsync;
    println!("machine: {} cores; single client, 3 nodes × 1 core on loopback, prepared UPSERT of one row", cores());
    println!("| measure | p50 ms | p99 ms |");
    println!("|---|---:|---:|");
    println!("| loopback TCP round trip | {rtt:.3} | |");
    println!("| fdatasync (4 KiB overwrite) | {fsync:.3} | |");
    println!(
        "| replicated UPSERT ({} ops) | {upsert_p50:.3} | {:.3} |",
        hist.len(),
        p(&hist, 0.99)
    );
    println!(
        "UPSERT p50 / (round trip + fdatasync) = {:.2} (goal ≤ 1.3); p50 vs 0.8 ms goal: {:.2}×",
        upsert_p50 / floor,
        upsert_p50 / 0.8
    );
    Ok(())
}

/// Kills the nodes when dropped (also on error paths).
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn upserts(port: u16, ops: usize) -> Result<Histogram<u64>> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("root")
        .dbname("defaultdb");
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        match config.connect(tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                if client.simple_query("SELECT 1").await.is_ok() {
                    break client;
                }
            }
            Err(e) if Instant::now() > deadline => bail!("connect: {e}"),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS kv (k INT8 PRIMARY KEY, v INT8)")
        .await?;
    let stmt = client.prepare("UPSERT INTO kv VALUES ($1, $2)").await?;
    let mut hist = Histogram::<u64>::new(3)?;
    // Warm up (leases, plans, connections between nodes), then measure.
    for k in 0..(ops / 10).max(50) as i64 {
        client.execute(&stmt, &[&-k, &k]).await?;
    }
    for k in 0..ops as i64 {
        let started = Instant::now();
        client.execute(&stmt, &[&k, &k]).await?;
        hist.record(started.elapsed().as_micros() as u64)?;
    }
    Ok(hist)
}

/// p50 of a 1-byte TCP ping-pong on loopback, in ms.
fn loopback_round_trip(n: usize) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read_exact(&mut b).is_ok() {
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut samples = Vec::with_capacity(n);
    let mut b = [7u8; 1];
    for _ in 0..n {
        let t = Instant::now();
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
        samples.push(t.elapsed());
    }
    drop(c);
    let _ = echo.join();
    Ok(median_ms(samples))
}

/// p50 of fdatasync after overwriting 4 KiB written and synced before, in ms.
fn fdatasync_latency(path: &Path, n: usize) -> Result<f64> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    let block = vec![0xabu8; 4096];
    f.write_all_at(&block, 0)?;
    f.sync_all()?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all_at(&block, 0)?;
        f.sync_data()?;
        samples.push(t.elapsed());
    }
    let _ = std::fs::remove_file(path);
    Ok(median_ms(samples))
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

/// `n` distinct free ports below the ephemeral range (a node keeps its port for its life).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let start = 22000 + (std::process::id() % 4000) as u16;
    let mut held = Vec::new();
    for p in start..start + 4000 {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", p)) {
            held.push((p, l));
            if held.len() == n {
                return Ok(held.into_iter().map(|(p, _)| p).collect());
            }
        }
    }
    bail!("no free ports")
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
