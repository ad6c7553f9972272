//! `chitin workload` end to end: the built binary loads and runs YCSB-B, kv and bank against a
//! real server over pgwire, and its JSON output shows operations, no errors and, for bank,
//! an unchanged total balance (serializability: no lost updates).
//!
//! Runs against a spawned single-node Chitin, or against the server named by
//! `CHITIN_WORKLOAD_URL` (that is how it is checked against PostgreSQL). Each run is short
//! and every child process is killed if it overruns, so the test stays under a minute.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ServerOptions, Target};

/// Longest any single `chitin workload` invocation may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(40);

/// The URL of the server under test.
fn url(target: &Target) -> String {
    match target {
        Target::Spawned(server) => server.url(common::DEFAULT_DATABASE),
        Target::External(_) => std::env::var("CHITIN_WORKLOAD_URL").expect("set for External"),
    }
}

/// Runs `chitin workload <args>` and returns (success, stdout, stderr); kills it after
/// [`COMMAND_TIMEOUT`].
fn workload(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chitin"))
        .arg("workload")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chitin workload");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    match status {
        Some(status) => (status.success(), out, err),
        None => panic!("chitin workload {args:?} ran over {COMMAND_TIMEOUT:?}\n{out}\n{err}"),
    }
}

/// The value of `"key":<number>` in a JSON line.
fn json_number(line: &str, key: &str) -> f64 {
    let pattern = format!("\"{key}\":");
    let start = line
        .find(&pattern)
        .unwrap_or_else(|| panic!("{key} missing in {line}"))
        + pattern.len();
    let rest = &line[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].parse().expect("a number")
}

fn summary_total(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.contains("\"type\":\"summary\"") && l.contains("\"op\":\"total\""))
        .unwrap_or_else(|| panic!("no summary total in:\n{stdout}"))
}

#[test]
fn ycsb_b_and_bank_run_against_a_server() {
    let target = Target::from_env("CHITIN_WORKLOAD_URL", &ServerOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let url = url(&target);
    let logs = || target.log_tail();

    // YCSB: load 300 rows from two connections, then three seconds of workload B.
    let (ok, out, err) = workload(&[
        "init",
        "ycsb",
        "--drop",
        "--record-count",
        "300",
        "--load-batch",
        "50",
        "--concurrency",
        "2",
        "--splits",
        "3",
        &url,
    ]);
    assert!(ok, "init ycsb failed:\n{out}\n{err}\n{}", logs());
    assert!(out.contains("loaded 300 rows into usertable"), "{out}");

    let (ok, out, err) = workload(&[
        "run",
        "ycsb",
        "--workload",
        "B",
        "--duration",
        "3s",
        "--concurrency",
        "4",
        "--record-count",
        "300",
        "--json",
        &url,
    ]);
    assert!(ok, "run ycsb failed:\n{out}\n{err}\n{}", logs());
    let ticks = out
        .lines()
        .filter(|l| l.contains("\"type\":\"tick\"") && l.contains("\"op\":\"read\""))
        .count();
    assert!(ticks >= 2, "expected per-second lines:\n{out}");
    let total = summary_total(&out);
    assert!(json_number(total, "ops") > 0.0, "{out}");
    assert_eq!(json_number(total, "errors"), 0.0, "{out}\n{err}");
    for op in ["read", "update"] {
        assert!(
            out.lines()
                .any(|l| l.contains("\"type\":\"summary\"")
                    && l.contains(&format!("\"op\":\"{op}\""))),
            "no {op} summary:\n{out}"
        );
    }

    // The text form prints the header, per-second lines and the summary.
    let (ok, out, err) = workload(&[
        "run",
        "ycsb",
        "--workload",
        "C",
        "--max-ops",
        "200",
        "--concurrency",
        "2",
        "--record-count",
        "300",
        &url,
    ]);
    assert!(ok, "run ycsb C failed:\n{out}\n{err}\n{}", logs());
    assert!(out.contains("ops(total)"), "{out}");
    let total_line = out
        .lines()
        .find(|l| l.ends_with(" total"))
        .unwrap_or_else(|| panic!("no total line:\n{out}"));
    assert!(total_line.split_whitespace().nth(3) == Some("200"), "{out}");

    // kv: upserts and point reads, stopped by --max-ops.
    let (ok, out, err) = workload(&[
        "init",
        "kv",
        "--drop",
        "--record-count",
        "100",
        "--concurrency",
        "1",
        &url,
    ]);
    assert!(ok, "init kv failed:\n{out}\n{err}\n{}", logs());
    let (ok, out, err) = workload(&[
        "run",
        "kv",
        "--read-percent",
        "50",
        "--record-count",
        "100",
        "--max-ops",
        "100",
        "--concurrency",
        "2",
        "--json",
        &url,
    ]);
    assert!(ok, "run kv failed:\n{out}\n{err}\n{}", logs());
    let total = summary_total(&out);
    assert_eq!(json_number(total, "ops"), 100.0, "{out}");
    assert_eq!(json_number(total, "errors"), 0.0, "{out}\n{err}");

    // Bank: concurrent transfers must leave the total unchanged.
    let (ok, out, err) = workload(&[
        "init",
        "bank",
        "--drop",
        "--accounts",
        "20",
        "--concurrency",
        "1",
        &url,
    ]);
    assert!(ok, "init bank failed:\n{out}\n{err}\n{}", logs());
    let (ok, out, err) = workload(&[
        "run",
        "bank",
        "--duration",
        "3s",
        "--concurrency",
        "4",
        "--json",
        &url,
    ]);
    assert!(ok, "run bank failed:\n{out}\n{err}\n{}", logs());
    let check = out
        .lines()
        .find(|l| l.contains("\"check\":\"bank_total\""))
        .unwrap_or_else(|| panic!("no bank check:\n{out}"));
    assert!(check.contains("\"ok\":true"), "{check}");
    assert_eq!(json_number(check, "before"), 20_000.0, "{check}");
    assert!(json_number(summary_total(&out), "ops") > 0.0, "{out}");
}
