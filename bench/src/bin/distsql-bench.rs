//! `chitin-distsql-bench`: DistSQL against gateway-only execution on the same data, same
//! client, same run (issue 6: "a benchmark shows the speed-up over gateway-only execution").
//!
//! Starts `chitin start-single-node --cores N` on a temporary store (or uses `--url`), loads
//! `t(k INT8 PRIMARY KEY, g INT8, v INT8, f FLOAT8, s TEXT)` with `--rows` rows, splits it
//! into `--ranges` ranges (spread over the cores), then times each query `--rounds` times
//! with `SET distsql = off` (every row read through the gateway's core) and `= on` (a flow
//! per core: table reader, filter, partial aggregation), alternating, and prints the medians
//! and their ratio.
//!
//! ```text
//! cargo build --release
//! target/release/chitin-distsql-bench [--chitin target/release/chitin] [--rows 1000000]
//!     [--ranges 8] [--cores 2] [--rounds 5] [--url postgresql://root@127.0.0.1:26257/defaultdb]
//! ```

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const QUERIES: &[(&str, &str)] = &[
    ("count + sum", "SELECT count(*), sum(v) FROM t"),
    (
        "GROUP BY 10 groups, filter",
        "SELECT g, count(*), sum(v), avg(f) FROM t WHERE v % 3 <> 0 GROUP BY g",
    ),
    (
        "selective filter, rows back",
        "SELECT k, s FROM t WHERE s LIKE '%12345%'",
    ),
    (
        "ORDER BY … LIMIT (top-K per flow)",
        "SELECT k, v FROM t ORDER BY f DESC LIMIT 10",
    ),
    (
        "ORDER BY, 100k rows back (sorted runs merged)",
        "SELECT k, v FROM t WHERE v % 10 = 3 ORDER BY f DESC",
    ),
    (
        "LIMIT in key order, selective filter",
        "SELECT k FROM t WHERE s LIKE '%99999%' LIMIT 1",
    ),
    (
        "join inputs by flows (merge join)",
        "SELECT count(*) FROM t a JOIN t b ON a.k = b.k WHERE a.g = 1 AND b.v % 2 = 0",
    ),
];

struct Options {
    chitin: PathBuf,
    rows: u64,
    ranges: u64,
    cores: usize,
    rounds: usize,
    url: Option<String>,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Options {
        chitin: PathBuf::from("target/release/chitin"),
        rows: 1_000_000,
        ranges: 8,
        cores: 2,
        rounds: 5,
        url: None,
    };
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned();
        let v = || {
            value
                .clone()
                .with_context(|| format!("{} needs a value", args[i]))
        };
        match args[i].as_str() {
            "--chitin" => o.chitin = PathBuf::from(v()?),
            "--rows" => o.rows = v()?.parse()?,
            "--ranges" => o.ranges = v()?.parse()?,
            "--cores" => o.cores = v()?.parse()?,
            "--rounds" => o.rounds = v()?.parse()?,
            "--url" => o.url = Some(v()?),
            other => bail!("unknown flag {other}"),
        }
        i += 2;
    }
    let dir = std::env::temp_dir().join(format!("chitin-distsql-bench-{}", std::process::id()));
    let mut server = None;
    let url = match &o.url {
        Some(u) => u.clone(),
        None => {
            std::fs::create_dir_all(&dir)?;
            let port = free_port()?;
            let http = free_port()?;
            let log = std::fs::File::create(dir.join("server.log"))?;
            let child = Command::new(&o.chitin)
                .args(["start-single-node", "--cores", &o.cores.to_string()])
                .arg("--store")
                .arg(dir.join("store"))
                .arg("--listen-addr")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--http-addr")
                .arg(format!("127.0.0.1:{http}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("start {}", o.chitin.display()))?;
            server = Some(Server(child));
            format!("postgresql://root@127.0.0.1:{port}/defaultdb")
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&o, &url));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Kills the server when dropped (also on error paths).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn run(o: &Options, url: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                if client.simple_query("SELECT 1").await.is_ok() {
                    break client;
                }
            }
            Err(e) if Instant::now() > deadline => bail!("connect {url}: {e}"),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let loaded = Instant::now();
    client
        .batch_execute(
            "DROP TABLE IF EXISTS t; \
             CREATE TABLE t (k INT8 PRIMARY KEY, g INT8, v INT8, f FLOAT8, s TEXT)",
        )
        .await?;
    let batch = 50_000u64;
    let mut from = 1;
    while from <= o.rows {
        let to = (from + batch - 1).min(o.rows);
        client
            .batch_execute(&format!(
                "INSERT INTO t SELECT i, i % 10, i, i::FLOAT8 / 3, 'row ' || i::TEXT \
                 FROM generate_series({from}, {to}) AS i"
            ))
            .await?;
        from = to + 1;
    }
    for r in 1..o.ranges {
        let at = o.rows * r / o.ranges;
        client
            .batch_execute(&format!("ALTER TABLE t SPLIT AT VALUES ({at})"))
            .await?;
    }
    println!(
        "loaded {} rows in {:.1} s, {} ranges over {} cores",
        o.rows,
        loaded.elapsed().as_secs_f64(),
        o.ranges,
        o.cores
    );
    println!("| query | gateway only ms (p50) | DistSQL ms (p50) | speed-up |");
    println!("|---|---:|---:|---:|");
    for (name, sql) in QUERIES {
        let mut times = [Vec::new(), Vec::new()];
        // A warm-up run of each, then alternating rounds.
        for round in 0..=o.rounds {
            for (m, mode) in ["off", "on"].iter().enumerate() {
                client
                    .batch_execute(&format!("SET distsql = {mode}"))
                    .await?;
                let started = Instant::now();
                client.simple_query(sql).await?;
                if round > 0 {
                    times[m].push(started.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let off = median(&mut times[0]);
        let on = median(&mut times[1]);
        println!("| {name} | {off:.1} | {on:.1} | {:.2}× |", off / on);
    }
    Ok(())
}
