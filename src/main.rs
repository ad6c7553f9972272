//! The `chitin` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use chitin::kv::engine::EngineKind;
use chitin::node::{self, NodeConfig};

const HELP: &str = "\
chitin: a geo-distributed, serializable SQL database (thread-per-core)

USAGE:
    chitin <COMMAND> [FLAGS]

COMMANDS:
    start-single-node   Start a single-node cluster (replication factor 1) and serve SQL.
    workload            Load generator: init/run ycsb, kv, bank (`chitin workload help`).
    version             Print the version.
    help                Print this help.

FLAGS (start-single-node):
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
    let mut cfg = NodeConfig {
        store: PathBuf::from("chitin-data"),
        listen_addr: "127.0.0.1:26257".parse().unwrap(),
        http_addr: "127.0.0.1:8080".parse().unwrap(),
        cores: cpus,
        pin: false,
        cache_bytes: 128 << 20,
        engine: EngineKind::Lsm,
    };
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
