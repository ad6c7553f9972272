//! The `chitin` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chitin::kv::engine::EngineKind;
use chitin::node::{self, NodeConfig};

const HELP: &str = "\
chitin: a geo-distributed, serializable SQL database (thread-per-core)

USAGE:
    chitin <COMMAND> [FLAGS]

COMMANDS:
    start-single-node   Start a single-node cluster (replication factor 1) and serve SQL.
    start               Start a node of a cluster: --join the others, then `chitin init` once.
    init                Initialize a new cluster: --host HOST:PORT of one started node,
                        [--num-replicas N] replicas per range [default: 3].
    node status         List the cluster's nodes: --host HOST:PORT of any node.
    node decommission ID  Move every replica off node ID (the allocator does it in the
                        background; `node status` shows the replicas left), --host H:P.
    node recommission ID  Undo a decommission.
    node drain ID       Node ID stops accepting SQL connections and hands its leases to
                        other nodes (until it restarts), --host H:P.
    demo                A throwaway local cluster: --nodes N (default 3), temporary stores,
                        each node's URL printed; Ctrl-C stops it and removes everything.
    workload            Load generator: init/run ycsb, kv, bank (`chitin workload help`).
    version             Print the version.
    help                Print this help.

FLAGS (start-single-node, start):
    --store DIR             Directory of the node's data [default: ./chitin-data]
    --listen-addr HOST:PORT SQL (pgwire) address [default: 127.0.0.1:26257]
    --http-addr HOST:PORT   HTTP address: /health, /_status/vars [default: 127.0.0.1:8080]
    --cores N               Number of cores (executors) [default: every CPU]
    --pin                   Pin each core's executor to a CPU
    --insecure              Serve without TLS and with trust authentication (the only mode
                            until TLS exists; accepted for CockroachDB compatibility)
    --cache SIZE            Block cache budget, e.g. 256MiB [default: 128MiB]
    --engine lsm|mem        Storage engine: the LSM (durable) or in-memory, rebuilt from
                            the raft log at start [default: lsm]

FLAGS (start only):
    --join A,B,C            Addresses (HOST:PORT) of the cluster's nodes; every node of a new
                            cluster lists the same ones. Required.
    --advertise-addr H:P    Address other nodes reach this one at [default: --listen-addr]
    --locality K=V,...      e.g. region=us-east1,zone=a (recorded; placement is to do)

FLAGS (init, node status):
    --host HOST:PORT        A node's --listen-addr [default: 127.0.0.1:26257]

Nodes talk to each other on --listen-addr too (the node transport shares the port with
pgwire). Ranges start with replicas on the first --num-replicas (3) nodes; the allocator
replaces replicas on nodes dead for `server.time_until_store_dead` (SET CLUSTER SETTING,
default 5 min) or decommissioning, with snapshots to the new nodes.

Connect with: psql postgresql://root@127.0.0.1:26257/defaultdb
";

fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: usize = digits.parse().ok()?;
    let unit = s[digits.len()..].trim().to_ascii_lowercase();
    let mult = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn parse_start(args: &[String]) -> Result<NodeConfig, String> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut cfg = NodeConfig::single_node(
        PathBuf::from("chitin-data"),
        "127.0.0.1:26257".parse().unwrap(),
        "127.0.0.1:8080".parse().unwrap(),
    );
    cfg.cores = cpus;
    cfg.engine = EngineKind::Lsm;
    let mut i = 0;
    while i < args.len() {
        let (flag, inline) = match args[i].split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (args[i].clone(), None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--store" | "-s" => {
                let v = value()?;
                cfg.store = PathBuf::from(v.strip_prefix("path=").unwrap_or(&v));
            }
            "--listen-addr" => cfg.listen_addr = parse_addr(&value()?)?,
            "--http-addr" => cfg.http_addr = parse_addr(&value()?)?,
            "--cores" => {
                let v = value()?;
                cfg.cores = v
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1 && *n <= 1024)
                    .ok_or(format!("bad --cores {v}"))?;
            }
            "--pin" => cfg.pin = true,
            "--engine" => {
                cfg.engine = match value()?.as_str() {
                    "lsm" => EngineKind::Lsm,
                    "mem" | "memory" => EngineKind::Mem,
                    other => return Err(format!("bad --engine {other}: lsm or mem")),
                }
            }
            "--insecure" => {}
            "--join" => {
                cfg.join = value()?
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(parse_addr)
                    .collect::<Result<_, _>>()?
            }
            "--advertise-addr" => cfg.advertise_addr = Some(parse_addr(&value()?)?),
            "--locality" => cfg.locality = value()?,
            "--cache" => {
                let v = value()?;
                cfg.cache_bytes = parse_size(&v).ok_or(format!("bad --cache {v}"))?;
            }
            "--max-offset" => {
                let v = value()?;
                cfg.max_offset = chitin::node::settings::parse_duration(&v)
                    .filter(|d| !d.is_zero())
                    .ok_or(format!("bad --max-offset {v}: a duration such as 500ms"))?;
            }
            // Runs this node's clock ahead (or, with a leading '-', behind) of the system
            // clock: for tests of clock-offset handling only.
            "--testing-clock-offset" => {
                let v = value()?;
                let (sign, text) = match v.strip_prefix('-') {
                    Some(rest) => (-1i64, rest),
                    None => (1, v.as_str()),
                };
                let d = chitin::node::settings::parse_duration(text)
                    .ok_or(format!("bad --testing-clock-offset {v}"))?;
                chitin_net::clock::set_testing_offset(sign * d.as_nanos() as i64);
            }
            other => return Err(format!("unknown flag {other}")),
        }
        i += 1;
    }
    Ok(cfg)
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = if s.starts_with(':') {
        format!("127.0.0.1{s}")
    } else {
        s.to_string()
    };
    s.parse().map_err(|_| format!("bad address {s}"))
}

/// Runs an admin call (`init`, `node status`) on the node at `--host` and prints its answer.
fn admin(args: &[String], method: u32, timeout: Duration) -> ExitCode {
    admin_with(args, method, Vec::new(), timeout)
}

fn admin_with(args: &[String], method: u32, payload: Vec<u8>, timeout: Duration) -> ExitCode {
    let mut host = "127.0.0.1:26257".to_string();
    let mut payload = payload;
    let mut i = 0;
    while i < args.len() {
        match args[i].split_once('=') {
            Some(("--host", v)) => host = v.to_string(),
            Some(("--num-replicas", v)) if method == chitin::cluster::METHOD_INIT => {
                payload = format!("num_replicas {v}").into_bytes()
            }
            _ if args[i] == "--num-replicas" && method == chitin::cluster::METHOD_INIT => {
                i += 1;
                match args.get(i) {
                    Some(v) => payload = format!("num_replicas {v}").into_bytes(),
                    None => {
                        eprintln!("error: --num-replicas needs a value");
                        return ExitCode::from(2);
                    }
                }
            }
            _ if args[i] == "--host" => {
                i += 1;
                match args.get(i) {
                    Some(v) => host = v.clone(),
                    None => {
                        eprintln!("error: --host needs a value");
                        return ExitCode::from(2);
                    }
                }
            }
            _ if args[i] == "--insecure" => {}
            _ => {
                eprintln!("error: unknown flag {}", args[i]);
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    let addr = match parse_addr(&host) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let tool = chitin_net::Endpoint::new(chitin_net::NodeId(0), chitin_net::CoreId(0));
    match chitin_net::blocking::call(addr, tool, chitin_net::CoreId(0), method, &payload, timeout) {
        Ok(reply) => {
            println!("{}", String::from_utf8_lossy(&reply).trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

static DEMO_STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn demo_signal(_: libc::c_int) {
    DEMO_STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// A port free now, preferring `want` (ports below the ephemeral range stay usable for a
/// node's restarts).
fn demo_port(want: u16) -> u16 {
    for p in want..want.saturating_add(200) {
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(want)
}

/// `chitin demo --nodes N`: starts N local nodes on temporary stores, initializes them as a
/// cluster, prints their URLs, and on SIGINT/SIGTERM stops them and removes the stores.
fn demo(args: &[String]) -> ExitCode {
    let mut nodes = 3usize;
    let mut i = 0;
    while i < args.len() {
        let (flag, inline) = match args[i].split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (args[i].clone(), None),
        };
        match flag.as_str() {
            "--nodes" => {
                let v = match inline.or_else(|| {
                    i += 1;
                    args.get(i).cloned()
                }) {
                    Some(v) => v,
                    None => {
                        eprintln!("error: --nodes needs a value");
                        return ExitCode::from(2);
                    }
                };
                match v.parse::<usize>() {
                    Ok(n) if (1..=9).contains(&n) => nodes = n,
                    _ => {
                        eprintln!("error: bad --nodes {v} (1 to 9)");
                        return ExitCode::from(2);
                    }
                }
            }
            "--insecure" => {}
            other => {
                eprintln!("error: unknown flag {other}");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, demo_signal as *const () as libc::sighandler_t);
        libc::signal(
            libc::SIGTERM,
            demo_signal as *const () as libc::sighandler_t,
        );
    }
    let dir = std::env::temp_dir().join(format!("chitin-demo-{}", std::process::id()));
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find the chitin binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut sql = Vec::new();
    let mut http = Vec::new();
    for n in 0..nodes {
        let s = demo_port(26257 + n as u16);
        let mut h = demo_port(8080 + n as u16);
        while h == s || sql.contains(&h) {
            h = demo_port(h + 1);
        }
        sql.push(s);
        http.push(h);
    }
    let join = sql
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    let result = (|| -> Result<(), String> {
        for n in 0..nodes {
            let store = dir.join(format!("node{}", n + 1));
            std::fs::create_dir_all(&store).map_err(|e| e.to_string())?;
            let log = std::fs::File::create(dir.join(format!("node{}.log", n + 1)))
                .map_err(|e| e.to_string())?;
            let child = std::process::Command::new(&exe)
                .arg("start")
                .arg("--store")
                .arg(&store)
                .arg("--listen-addr")
                .arg(format!("127.0.0.1:{}", sql[n]))
                .arg("--http-addr")
                .arg(format!("127.0.0.1:{}", http[n]))
                .arg("--join")
                .arg(&join)
                .arg("--cores")
                .arg("1")
                .arg("--insecure")
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot start node {}: {e}", n + 1))?;
            children.push(child);
        }
        let first: SocketAddr = format!("127.0.0.1:{}", sql[0]).parse().unwrap();
        let tool = chitin_net::Endpoint::new(chitin_net::NodeId(0), chitin_net::CoreId(0));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let r = chitin_net::blocking::call(
                first,
                tool,
                chitin_net::CoreId(0),
                chitin::cluster::METHOD_INIT,
                &[],
                Duration::from_secs(60),
            );
            match r {
                Ok(_) => break,
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(format!("cannot initialize the cluster: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
            if DEMO_STOP.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(());
            }
        }
        // Ready when each node serves HTTP (it starts once the node serves SQL).
        for (n, h) in http.iter().enumerate() {
            while std::net::TcpStream::connect(("127.0.0.1", *h)).is_err() {
                if std::time::Instant::now() > deadline {
                    return Err(format!("node {} did not become ready", n + 1));
                }
                if DEMO_STOP.load(std::sync::atomic::Ordering::SeqCst) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        println!(
            "Chitin demo cluster of {nodes} nodes (stores and logs in {})",
            dir.display()
        );
        for n in 0..nodes {
            println!(
                "node {}: postgresql://root@127.0.0.1:{}/defaultdb?sslmode=disable  http://127.0.0.1:{}/",
                n + 1,
                sql[n],
                http[n]
            );
        }
        println!("Press Ctrl-C to stop the cluster and remove its data.");
        while !DEMO_STOP.load(std::sync::atomic::Ordering::SeqCst) {
            for (n, c) in children.iter_mut().enumerate() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!("node {} exited ({status})", n + 1));
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    })();
    // Stop the nodes (SIGTERM, then SIGKILL after 5 s) and remove everything.
    for c in &children {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for c in children.iter_mut() {
        while matches!(c.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(()) => {
            println!("demo cluster stopped; {} removed", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // Core threads get deep stacks: SQL expressions are recursive structures (their depth
    // is capped by the parser front, this is the headroom behind that cap).
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        std::env::set_var("RUST_MIN_STACK", (64usize << 20).to_string());
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{HELP}");
        return ExitCode::from(2);
    };
    match cmd.as_str() {
        "start-single-node" => {
            let cfg = match parse_start(&args[1..]) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}\n\n{HELP}");
                    return ExitCode::from(2);
                }
            };
            match node::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "start" => {
            let mut cfg = match parse_start(&args[1..]) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}\n\n{HELP}");
                    return ExitCode::from(2);
                }
            };
            cfg.single_node = false;
            if cfg.join.is_empty() {
                eprintln!("error: start needs --join (or use start-single-node)\n\n{HELP}");
                return ExitCode::from(2);
            }
            match node::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "init" => admin(
            &args[1..],
            chitin::cluster::METHOD_INIT,
            Duration::from_secs(60),
        ),
        "node" => match args.get(1).map(String::as_str) {
            Some("status") => admin(
                &args[2..],
                chitin::cluster::METHOD_STATUS,
                Duration::from_secs(10),
            ),
            Some("drain") => match args.get(2).and_then(|id| id.parse::<u64>().ok()) {
                Some(id) => admin_with(
                    &args[3..],
                    chitin::cluster::METHOD_DRAIN,
                    format!("drain {id}").into_bytes(),
                    Duration::from_secs(45),
                ),
                None => {
                    eprintln!("error: expected `chitin node drain NODE_ID --host HOST:PORT`");
                    ExitCode::from(2)
                }
            },
            Some(verb @ ("decommission" | "recommission")) => {
                match args.get(2).and_then(|id| id.parse::<u64>().ok()) {
                    Some(id) => admin_with(
                        &args[3..],
                        chitin::cluster::METHOD_DECOMMISSION,
                        format!("{verb} {id}").into_bytes(),
                        Duration::from_secs(30),
                    ),
                    None => {
                        eprintln!("error: expected `chitin node {verb} NODE_ID --host HOST:PORT`");
                        ExitCode::from(2)
                    }
                }
            }
            _ => {
                eprintln!(
                    "error: expected `chitin node status|drain ID|decommission ID|recommission ID --host HOST:PORT`"
                );
                ExitCode::from(2)
            }
        },
        "demo" => demo(&args[1..]),
        "workload" => chitin_bench::workload::main(&args[1..]),
        "version" | "--version" => {
            println!("chitin {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("error: unknown command {other}\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}
