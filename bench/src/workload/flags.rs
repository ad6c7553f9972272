//! The `chitin workload` command line: `init|run ycsb|kv|bank [flags] [<postgresql-url>]`.
//!
//! Flags take their value either as the next argument or after `=`. Unknown flags and
//! flags that do not apply to the chosen workload are errors, so that a typo never turns
//! into a silently different benchmark.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// The URL used when none is given: a local Chitin node's defaults.
pub const DEFAULT_URL: &str = "postgresql://root@127.0.0.1:26257/defaultdb?sslmode=disable";

pub const USAGE: &str = "\
chitin workload: a load generator that speaks pgwire to Chitin or PostgreSQL

USAGE:
    chitin workload init <ycsb|kv|bank> [FLAGS] [<postgresql-url>]
    chitin workload run  <ycsb|kv|bank> [FLAGS] [<postgresql-url>]

The URL defaults to postgresql://root@127.0.0.1:26257/defaultdb?sslmode=disable.

FLAGS (all workloads):
    --concurrency N         Workers, one connection each [default: 8; init: 4]
    --duration D            Run for D (e.g. 30s, 5m); 0 runs until --max-ops or Ctrl-C [default: 0]
    --max-ops N             Stop after N operations in total
    --ramp D                Start the workers gradually over D; not counted in the summary
    --record-count N        Rows loaded by init and addressed by run [ycsb, kv: 10000; bank: 1000]
    --request-distribution zipfian|uniform|latest   [default: zipfian (ycsb), uniform (kv, bank)]
    --splits N              Pre-split the table in N ranges at init (ignored where unsupported)
    --drop                  init: drop the table first
    --load-batch N          init: rows per multi-row INSERT [default: 100]
    --json                  One JSON object per line instead of text
    --seed N                Seed of the workers' random generators [default: 42]
    --client-threads N      Client runtime threads [default: 1]

FLAGS (ycsb):
    --workload A|B|C|D|E|F  A 50/50 read/update, B 95/5 read/update, C read only,
                            D read latest/5% insert, E scan/5% insert, F read/read-modify-write
                            [default: B]
FLAGS (kv):
    --read-percent P        Percentage of reads [default: 95]
    --batch N               Keys per read or write statement [default: 1]
    --value-size N          Bytes per value [default: 64]
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Init,
    Run,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ycsb,
    Kv,
    Bank,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    Zipfian,
    Uniform,
    Latest,
}

/// One of the six standard YCSB workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YcsbWorkload {
    A,
    B,
    C,
    D,
    E,
    F,
}

/// Everything the command line says.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub command: Command,
    pub kind: Kind,
    pub url: String,
    pub concurrency: usize,
    /// `None`: no time limit.
    pub duration: Option<Duration>,
    pub max_ops: Option<u64>,
    pub ramp: Duration,
    pub record_count: u64,
    pub distribution: Distribution,
    pub splits: u32,
    pub drop: bool,
    pub load_batch: usize,
    pub json: bool,
    pub seed: u64,
    pub client_threads: usize,
    pub workload: YcsbWorkload,
    pub read_percent: u32,
    pub batch: usize,
    pub value_size: usize,
}

/// Parses `30s`, `5m`, `1h`, `250ms` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| anyhow!("bad duration {s:?} (expected e.g. 30s, 5m, 250ms)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("bad duration unit in {s:?} (use ms, s, m or h)"),
    };
    if !secs.is_finite() || secs < 0.0 {
        bail!("bad duration {s:?}");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses the arguments after `workload`.
pub fn parse(args: &[String]) -> Result<Options> {
    let command = match args.first().map(String::as_str) {
        Some("init") => Command::Init,
        Some("run") => Command::Run,
        Some(other) => bail!("unknown workload command {other:?} (expected init or run)"),
        None => bail!("missing command (init or run)"),
    };
    let kind = match args.get(1).map(String::as_str) {
        Some("ycsb") => Kind::Ycsb,
        Some("kv") => Kind::Kv,
        Some("bank") => Kind::Bank,
        Some(other) => bail!("unknown workload {other:?} (expected ycsb, kv or bank)"),
        None => bail!("missing workload (ycsb, kv or bank)"),
    };
    let mut o = Options {
        command,
        kind,
        url: DEFAULT_URL.to_string(),
        concurrency: if command == Command::Init { 4 } else { 8 },
        duration: None,
        max_ops: None,
        ramp: Duration::ZERO,
        record_count: if kind == Kind::Bank { 1000 } else { 10_000 },
        distribution: if kind == Kind::Ycsb {
            Distribution::Zipfian
        } else {
            Distribution::Uniform
        },
        splits: 0,
        drop: false,
        load_batch: 100,
        json: false,
        seed: 42,
        client_threads: 1,
        workload: YcsbWorkload::B,
        read_percent: 95,
        batch: 1,
        value_size: 64,
    };
    let mut url = None;
    let mut i = 2;
    while i < args.len() {
        let arg = &args[i];
        if !arg.starts_with("--") {
            if url.replace(arg.clone()).is_some() {
                bail!("more than one URL given ({arg:?})");
            }
            i += 1;
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = || -> Result<String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| anyhow!("{flag} needs a value"))
        };
        fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T> {
            v.trim()
                .replace('_', "")
                .parse()
                .map_err(|_| anyhow!("bad {flag} {v:?}"))
        }
        let only = |k: Kind| -> Result<()> {
            if kind != k {
                bail!("{flag} does not apply to this workload");
            }
            Ok(())
        };
        match flag {
            "--concurrency" => {
                o.concurrency = number(flag, &value()?)?;
                if o.concurrency == 0 {
                    bail!("--concurrency must be at least 1");
                }
            }
            "--duration" => {
                let d = parse_duration(&value()?)?;
                o.duration = (!d.is_zero()).then_some(d);
            }
            "--max-ops" => o.max_ops = Some(number(flag, &value()?)?),
            "--ramp" => o.ramp = parse_duration(&value()?)?,
            "--record-count" | "--accounts" => {
                o.record_count = number(flag, &value()?)?;
                if o.record_count == 0 {
                    bail!("{flag} must be at least 1");
                }
            }
            "--request-distribution" => {
                o.distribution = match value()?.to_ascii_lowercase().as_str() {
                    "zipfian" | "zipf" => Distribution::Zipfian,
                    "uniform" => Distribution::Uniform,
                    "latest" => Distribution::Latest,
                    other => bail!("bad --request-distribution {other:?}"),
                }
            }
            "--splits" => o.splits = number(flag, &value()?)?,
            "--drop" => o.drop = true,
            "--load-batch" => {
                o.load_batch = number(flag, &value()?)?;
                if o.load_batch == 0 {
                    bail!("--load-batch must be at least 1");
                }
            }
            "--json" => o.json = true,
            "--seed" => o.seed = number(flag, &value()?)?,
            "--client-threads" => {
                o.client_threads = number(flag, &value()?)?;
                if o.client_threads == 0 {
                    bail!("--client-threads must be at least 1");
                }
            }
            "--workload" => {
                only(Kind::Ycsb)?;
                o.workload = match value()?.to_ascii_uppercase().as_str() {
                    "A" => YcsbWorkload::A,
                    "B" => YcsbWorkload::B,
                    "C" => YcsbWorkload::C,
                    "D" => YcsbWorkload::D,
                    "E" => YcsbWorkload::E,
                    "F" => YcsbWorkload::F,
                    other => bail!("bad --workload {other:?} (expected A to F)"),
                };
            }
            "--read-percent" => {
                only(Kind::Kv)?;
                o.read_percent = number(flag, &value()?)?;
                if o.read_percent > 100 {
                    bail!("--read-percent must be at most 100");
                }
            }
            "--batch" => {
                only(Kind::Kv)?;
                o.batch = number(flag, &value()?)?;
                if o.batch == 0 {
                    bail!("--batch must be at least 1");
                }
            }
            "--value-size" => {
                only(Kind::Kv)?;
                o.value_size = number(flag, &value()?)?;
            }
            other => bail!("unknown flag {other}"),
        }
        i += 1;
    }
    if let Some(url) = url {
        o.url = url;
    }
    // YCSB D reads the latest records by definition.
    if kind == Kind::Ycsb && o.workload == YcsbWorkload::D {
        o.distribution = Distribution::Latest;
    }
    o.url
        .parse::<tokio_postgres::Config>()
        .with_context(|| format!("bad URL {:?}", o.url))?;
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn ycsb_run_flags() {
        let o = parse(&args(
            "run ycsb --workload a --concurrency 16 --duration=10s --max-ops 1_000 \
             --record-count 500 --request-distribution uniform --splits 4 --ramp 2s --json \
             postgresql://u@h:5432/db",
        ))
        .unwrap();
        assert_eq!(o.command, Command::Run);
        assert_eq!(o.kind, Kind::Ycsb);
        assert_eq!(o.workload, YcsbWorkload::A);
        assert_eq!(o.concurrency, 16);
        assert_eq!(o.duration, Some(Duration::from_secs(10)));
        assert_eq!(o.max_ops, Some(1000));
        assert_eq!(o.record_count, 500);
        assert_eq!(o.distribution, Distribution::Uniform);
        assert_eq!(o.splits, 4);
        assert_eq!(o.ramp, Duration::from_secs(2));
        assert!(o.json);
        assert_eq!(o.url, "postgresql://u@h:5432/db");
    }

    #[test]
    fn defaults_per_workload() {
        let y = parse(&args("init ycsb")).unwrap();
        assert_eq!(
            (
                y.command,
                y.concurrency,
                y.record_count,
                y.distribution,
                y.url.as_str()
            ),
            (Command::Init, 4, 10_000, Distribution::Zipfian, DEFAULT_URL)
        );
        assert_eq!(y.duration, None);
        let b = parse(&args("run bank --duration 0")).unwrap();
        assert_eq!((b.record_count, b.duration), (1000, None));
        let d = parse(&args("run ycsb --workload D")).unwrap();
        assert_eq!(d.distribution, Distribution::Latest);
        let kv = parse(&args("run kv --read-percent 50 --batch 10 --value-size 8")).unwrap();
        assert_eq!(
            (kv.read_percent, kv.batch, kv.value_size, kv.distribution),
            (50, 10, 8, Distribution::Uniform)
        );
    }

    #[test]
    fn mistakes_are_errors() {
        for bad in [
            "",
            "start ycsb",
            "run tpcc",
            "run ycsb --workload G",
            "run ycsb --read-percent 50",
            "run kv --workload A",
            "run kv --read-percent 101",
            "run ycsb --concurrency 0",
            "run ycsb --concurrency",
            "run ycsb --frobnicate 1",
            "run ycsb --duration 5 parsecs",
            "run ycsb url1 url2",
            "run ycsb --request-distribution hotspot",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} should not parse");
        }
    }
}
