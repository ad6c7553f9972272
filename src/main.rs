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
    init                Initialize a new cluster: --host HOST:PORT of one started node.
    node status         List the cluster's nodes: --host HOST:PORT of any node.
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
pgwire). A cluster keeps 3 replicas of every range on its first 3 nodes.

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
    let mut host = "127.0.0.1:26257".to_string();
    let mut i = 0;
    while i < args.len() {
        match args[i].split_once('=') {
            Some(("--host", v)) => host = v.to_string(),
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
    match chitin_net::blocking::call(addr, tool, chitin_net::CoreId(0), method, &[], timeout) {
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
            _ => {
                eprintln!("error: expected `chitin node status --host HOST:PORT`");
                ExitCode::from(2)
            }
        },
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
