//! `chitin-storage-bench`: the per-core storage engine ([`LsmEngine`]) against RocksDB, same
//! workloads, same durability.
//!
//! # What runs
//!
//! Per engine, in one process (so its peak RSS is its own), on a fresh directory:
//!
//! 1. `fill-seq`: `--keys` keys (16 bytes) with 100-byte values, in key order, in batches
//!    of `--batch`, each batch durable before the next starts; then flush and wait until
//!    no compaction is pending ("settle").
//! 2. `fill-rand`: the same keys in a random order, into a second fresh store; flush, settle.
//! 3. `get-warm`: `--gets` random point gets of existing keys after as many untimed ones
//!    (the block cache, `--cache-mb`, then holds the working set).
//! 4. `scan-100`: `--scans` scans of 100 keys from a random existing key.
//! 5. `get-cold`: the store closed and reopened with a `--cold-cache-mb` block cache, then
//!    `--gets` random point gets.
//!
//! # Equal durability
//!
//! RocksDB writes each batch with its WAL on and `WriteOptions::set_sync(true)`. Chitin's
//! LSM has no WAL: the raft log is the WAL (DESIGN §3). So, exactly as a node applies a
//! proposal, each batch is first appended to a [`RaftLog`] (one entry holding the batch's
//! records plus the hard state; one write and one fdatasync), then applied to the engine
//! with its applied index; once a flush has made an applied index durable the log is
//! truncated below it. Fill latencies are per batch, fill throughput is keys/s.
//!
//! # Equal footing
//!
//! Both engines: 16 MiB memtables (RocksDB: 3 write buffers; Chitin: 1 active + 2 frozen),
//! 4 KiB blocks, no compression, 10-bit bloom filters, L0 compaction trigger 4 and stop 20,
//! 64 MiB L1, 16 MiB target files, a block cache of `--cache-mb`, and no OS page cache
//! (Chitin uses O_DIRECT throughout; RocksDB gets `use_direct_reads` and direct I/O for
//! flush and compaction unless `--rocksdb-page-cache`). RocksDB keeps its default of two
//! background threads for flush and compaction; Chitin does that work on the same core
//! as the foreground (thread-per-core). Chitin's keys carry an MVCC timestamp (12 bytes
//! more per key); RocksDB's do not.
//!
//! Write amplification is the process's `write_bytes` (/proc/self/io) over fill, flush
//! and settle, divided by the logical bytes (keys × (16 + 100)); it includes the WAL (raft
//! log), pre-zeroing of log segments, flushes, compactions and manifests.
//!
//! `--engine both` (the default when built with the `rocksdb` feature) runs each engine
//! in a child process (this binary re-executed with `--engine NAME`) and prints the
//! comparison as a Markdown table.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use chitin_bench::workload::zipf::Rng;
use hdrhistogram::Histogram;

const VALUE_LEN: usize = 100;
const KEY_LEN: usize = 16;

#[derive(Clone, Debug)]
struct Flags {
    keys: u64,
    engine: String,
    dir: PathBuf,
    batch: u64,
    gets: u64,
    scans: u64,
    cache_mb: usize,
    cold_cache_mb: usize,
    rocksdb_page_cache: bool,
    keep: bool,
}

const USAGE: &str = "usage: chitin-storage-bench [--keys N] [--engine chitin|rocksdb|both] [--dir DIR] \
[--batch N] [--gets N] [--scans N] [--cache-mb N] [--cold-cache-mb N] [--rocksdb-page-cache] [--keep]";

fn parse_flags() -> Result<Flags> {
    let mut f = Flags {
        keys: 1_000_000,
        engine: if cfg!(feature = "rocksdb") {
            "both".into()
        } else {
            "chitin".into()
        },
        dir: std::env::temp_dir().join(format!("chitin-storage-bench-{}", std::process::id())),
        batch: 100,
        gets: 200_000,
        scans: 20_000,
        cache_mb: 256,
        cold_cache_mb: 4,
        rocksdb_page_cache: false,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .ok_or_else(|| anyhow!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--keys" => f.keys = parse_count(&val()?)?,
            "--engine" => f.engine = val()?,
            "--dir" => f.dir = PathBuf::from(val()?),
            "--batch" => f.batch = parse_count(&val()?)?,
            "--gets" => f.gets = parse_count(&val()?)?,
            "--scans" => f.scans = parse_count(&val()?)?,
            "--cache-mb" => f.cache_mb = parse_count(&val()?)? as usize,
            "--cold-cache-mb" => f.cold_cache_mb = parse_count(&val()?)? as usize,
            "--rocksdb-page-cache" => f.rocksdb_page_cache = true,
            "--keep" => f.keep = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown flag {a}\n{USAGE}"),
        }
    }
    if f.keys == 0 || f.batch == 0 {
        bail!("--keys and --batch must be positive");
    }
    if !matches!(f.engine.as_str(), "chitin" | "rocksdb" | "both") {
        bail!("--engine must be chitin, rocksdb or both");
    }
    Ok(f)
}

/// Parses `1000000`, `1_000_000`, `200k` or `1m`.
fn parse_count(s: &str) -> Result<u64> {
    let s = s.replace('_', "").to_ascii_lowercase();
    let (num, mul) = match s.as_bytes().last() {
        Some(b'k') => (&s[..s.len() - 1], 1_000),
        Some(b'm') => (&s[..s.len() - 1], 1_000_000),
        _ => (&s[..], 1),
    };
    Ok(num
        .parse::<u64>()
        .with_context(|| format!("bad count {s}"))?
        * mul)
}

/// The key of record `i`: 16 hex digits, so key order is `i` order.
fn key(i: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    let s = format!("{i:016x}");
    k.copy_from_slice(s.as_bytes());
    k
}

/// The value of record `i`: 100 pseudo-random bytes derived from `i` (incompressible,
/// and checkable on read).
fn value(i: u64) -> Vec<u8> {
    let mut r = Rng::new(i);
    let mut v = Vec::with_capacity(VALUE_LEN);
    while v.len() < VALUE_LEN {
        v.extend_from_slice(&r.next_u64().to_le_bytes());
    }
    v.truncate(VALUE_LEN);
    v
}

fn check_value(i: u64, got: Option<&[u8]>) -> Result<()> {
    match got {
        Some(v) if v == value(i).as_slice() => Ok(()),
        Some(_) => bail!("key {i}: wrong value"),
        None => bail!("key {i}: not found"),
    }
}

fn check_scan(start: u64, got: usize, len: usize, total: u64) -> Result<()> {
    let want = (total - start).min(len as u64) as usize;
    if got != want {
        bail!("scan from {start}: {got} keys, want {want}");
    }
    Ok(())
}

/// A random permutation of `0..n`.
fn permutation(n: u64, seed: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    let mut r = Rng::new(seed);
    for i in (1..v.len()).rev() {
        let j = r.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(d.as_nanos().max(1) as u64);
}

/// Bytes this process has caused to be written to storage so far (/proc/self/io).
fn write_bytes() -> u64 {
    proc_field("/proc/self/io", "write_bytes:").unwrap_or(0)
}

/// Peak resident set size of this process, KiB (/proc/self/status VmHWM).
fn peak_rss_kib() -> u64 {
    proc_field("/proc/self/status", "VmHWM:").unwrap_or(0)
}

fn proc_field(path: &str, name: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let line = s.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// One measured workload of one engine.
#[derive(Clone, Debug)]
struct Outcome {
    workload: &'static str,
    /// Keys (fills, gets) or scans per second.
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    /// Fills only: bytes written / logical bytes.
    write_amp: Option<f64>,
    note: String,
}

impl Outcome {
    fn new(
        workload: &'static str,
        ops: u64,
        elapsed: Duration,
        h: &Histogram<u64>,
        write_amp: Option<f64>,
        note: String,
    ) -> Outcome {
        Outcome {
            workload,
            ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
            p50_us: h.value_at_quantile(0.50) as f64 / 1e3,
            p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
            write_amp,
            note,
        }
    }

    /// The line a child prints for its parent: tab-separated, prefixed `RESULT`.
    fn machine_line(&self, engine: &str) -> String {
        format!(
            "RESULT\t{engine}\t{}\t{:.1}\t{:.1}\t{:.1}\t{}\t{}",
            self.workload,
            self.ops_per_sec,
            self.p50_us,
            self.p99_us,
            self.write_amp
                .map(|w| format!("{w:.2}"))
                .unwrap_or("-".into()),
            self.note
        )
    }
}

fn print_outcome(engine: &str, o: &Outcome) {
    println!(
        "{engine:8} {:10} {:>12.0} ops/s  p50 {:>9.1} µs  p99 {:>9.1} µs  {}  {}",
        o.workload,
        o.ops_per_sec,
        o.p50_us,
        o.p99_us,
        o.write_amp
            .map(|w| format!("write-amp {w:5.2}"))
            .unwrap_or_else(|| " ".repeat(15)),
        o.note
    );
    println!("{}", o.machine_line(engine));
}

/// The workloads every engine runs, driven by [`run_workloads`].
trait Store {
    /// Writes records `order[..]` in batches of `batch`, each batch durable before the
    /// next; returns per-batch latencies.
    fn fill(&mut self, order: &[u64], batch: u64, h: &mut Histogram<u64>) -> Result<()>;
    /// Flushes memtables and waits until no compaction is pending.
    fn settle(&mut self) -> Result<()>;
    /// Gets records `keys[..]` one after another, checking each value; records each
    /// get's latency in `h` when given.
    fn gets(&mut self, keys: &[u64], h: Option<&mut Histogram<u64>>) -> Result<()>;
    /// Scans up to `len` records from each of `starts[..]` in turn, checking the counts
    /// against `total` records; records each scan's latency.
    fn scans(
        &mut self,
        starts: &[u64],
        len: usize,
        total: u64,
        h: &mut Histogram<u64>,
    ) -> Result<()>;
    /// Closes and reopens the store with a block cache of `cache_bytes`.
    fn reopen(&mut self, cache_bytes: usize) -> Result<()>;
    /// One line of engine-specific counters.
    fn describe(&mut self) -> String;
    /// Bytes the engine itself counts as written since it was opened (WAL or log appends,
    /// flushes, compactions), if it counts them.
    fn engine_bytes_written(&mut self) -> Option<u64> {
        None
    }
}

/// Opens a fresh store in a directory with a block cache of so many bytes.
type OpenStore<'a> = dyn FnMut(&Path, usize) -> Result<Box<dyn Store>> + 'a;

fn run_workloads(engine: &str, flags: &Flags, open: &mut OpenStore) -> Result<()> {
    let n = flags.keys;
    let logical = n * (KEY_LEN + VALUE_LEN) as u64;
    let base = flags.dir.join(engine);
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).with_context(|| format!("create {}", base.display()))?;
    let cache = flags.cache_mb << 20;

    // fill-seq and fill-rand, each into a fresh store.
    let mut store = None;
    for (name, order) in [
        ("fill-seq", (0..n).collect::<Vec<u64>>()),
        ("fill-rand", permutation(n, 7)),
    ] {
        let dir = base.join(name);
        let mut s = open(&dir, cache)?;
        let mut h = histogram();
        let w0 = write_bytes();
        let t = Instant::now();
        s.fill(&order, flags.batch, &mut h)?;
        let fill = t.elapsed();
        let t = Instant::now();
        s.settle()?;
        let settle = t.elapsed();
        let wamp = (write_bytes() - w0) as f64 / logical as f64;
        let counted = s
            .engine_bytes_written()
            .map(|b| {
                format!(
                    "; engine-counted write-amp {:.2}",
                    b as f64 / logical as f64
                )
            })
            .unwrap_or_default();
        let o = Outcome::new(
            name,
            n,
            fill,
            &h,
            Some(wamp),
            format!(
                "(latency per batch of {}; then flush+compaction settle {:.1} s; {}{counted})",
                flags.batch,
                settle.as_secs_f64(),
                s.describe()
            ),
        );
        print_outcome(engine, &o);
        if name == "fill-seq" {
            drop(s);
            if !flags.keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
        } else {
            store = Some(s);
        }
    }
    let mut s = store.expect("fill-rand store");

    let mut rng = Rng::new(11);
    let mut random_keys = |count: u64| (0..count).map(|_| rng.below(n)).collect::<Vec<u64>>();

    // Warm: as many untimed gets first.
    s.gets(&random_keys(flags.gets), None)?;
    let keys = random_keys(flags.gets);
    let mut h = histogram();
    let t = Instant::now();
    s.gets(&keys, Some(&mut h))?;
    let o = Outcome::new(
        "get-warm",
        flags.gets,
        t.elapsed(),
        &h,
        None,
        format!("({} MiB block cache; {})", flags.cache_mb, s.describe()),
    );
    print_outcome(engine, &o);

    let starts = random_keys(flags.scans);
    let mut h = histogram();
    let t = Instant::now();
    s.scans(&starts, 100, n, &mut h)?;
    let o = Outcome::new(
        "scan-100",
        flags.scans,
        t.elapsed(),
        &h,
        None,
        "(scans/s; 100 keys from a random key)".into(),
    );
    print_outcome(engine, &o);

    s.reopen(flags.cold_cache_mb << 20)?;
    let keys = random_keys(flags.gets);
    let mut h = histogram();
    let t = Instant::now();
    s.gets(&keys, Some(&mut h))?;
    let o = Outcome::new(
        "get-cold",
        flags.gets,
        t.elapsed(),
        &h,
        None,
        format!(
            "(reopened, {} MiB block cache; {})",
            flags.cold_cache_mb,
            s.describe()
        ),
    );
    print_outcome(engine, &o);
    drop(s);
    let rss = peak_rss_kib();
    println!("{engine:8} peak RSS {:.1} MiB (VmHWM)", rss as f64 / 1024.0);
    println!("PEAK_RSS\t{engine}\t{rss}");
    if !flags.keep {
        let _ = std::fs::remove_dir_all(&base);
        // Only when empty (the other engine may still use it).
        let _ = std::fs::remove_dir(&flags.dir);
    }
    Ok(())
}

mod chitin_store {
    //! Chitin's side: [`LsmEngine`] plus the [`RaftLog`] that is its WAL, on one glommio
    //! executor owned by the calling thread.

    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use anyhow::{anyhow, Result};
    use chitin_storage::raftlog::{Entry, HardState};
    use chitin_storage::{
        Engine, LsmEngine, LsmOptions, RaftLog, RaftLogOptions, RangeId, RangeWrite, ScanOptions,
        Timestamp, WriteBatch,
    };
    use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
    use hdrhistogram::Histogram;

    use super::{check_scan, check_value, key, record, value, Store};

    const RANGE: RangeId = RangeId(1);
    const WRITE_TS: Timestamp = Timestamp::new(1, 0);
    const READ_TS: Timestamp = Timestamp::new(2, 0);

    pub struct ChitinStore {
        ex: LocalExecutor,
        dir: PathBuf,
        engine: Option<LsmEngine>,
        log: Option<RaftLog>,
        next_index: u64,
        /// Block cache hits and misses as of the last `describe`.
        cache_seen: (u64, u64),
    }

    pub fn options(cache_bytes: usize) -> LsmOptions {
        LsmOptions {
            block_cache_bytes: cache_bytes,
            ..LsmOptions::default()
        }
    }

    impl ChitinStore {
        pub fn open(dir: &Path, cache_bytes: usize) -> Result<ChitinStore> {
            let ex = LocalExecutorBuilder::new(Placement::Unbound)
                .name("storage-bench")
                .make()
                .map_err(|e| anyhow!("glommio executor: {e}"))?;
            let dir = dir.to_path_buf();
            let (engine, log) = ex.run(async {
                std::fs::create_dir_all(&dir)?;
                let log = RaftLog::open(&dir.join("raftlog"), RaftLogOptions::default()).await?;
                let engine = LsmEngine::open(dir.join("lsm"), options(cache_bytes)).await?;
                Ok::<_, anyhow::Error>((engine, log))
            })?;
            Ok(ChitinStore {
                ex,
                dir,
                engine: Some(engine),
                log: Some(log),
                next_index: 1,
                cache_seen: (0, 0),
            })
        }

        fn engine(&self) -> &LsmEngine {
            self.engine.as_ref().expect("engine open")
        }
    }

    /// The raft entry payload of a batch: `(key_len u32, key, value_len u32, value)*`.
    fn encode(records: &[u64]) -> Vec<u8> {
        let mut out = Vec::with_capacity(records.len() * (8 + 16 + 100));
        for &i in records {
            let k = key(i);
            let v = value(i);
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&k);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(&v);
        }
        out
    }

    /// Decodes [`encode`]'s payload into a write batch, as the apply loop does.
    fn decode(data: &[u8], batch: &mut WriteBatch) {
        let mut p = 0;
        let take = |p: &mut usize| {
            let len = u32::from_le_bytes(data[*p..*p + 4].try_into().unwrap()) as usize;
            *p += 4;
            let b = &data[*p..*p + len];
            *p += len;
            b
        };
        while p < data.len() {
            let k = take(&mut p).to_vec();
            let v = take(&mut p).to_vec();
            batch.put(k, WRITE_TS, v);
        }
    }

    impl Store for ChitinStore {
        fn fill(&mut self, order: &[u64], batch: u64, h: &mut Histogram<u64>) -> Result<()> {
            let engine = self.engine.as_ref().expect("engine open");
            let log = self.log.as_ref().expect("log open");
            let next_index = &mut self.next_index;
            self.ex.run(async {
                for (n, chunk) in order.chunks(batch as usize).enumerate() {
                    let t = Instant::now();
                    let index = *next_index;
                    *next_index += 1;
                    let data = encode(chunk);
                    let mut wb = WriteBatch::new();
                    decode(&data, &mut wb);
                    // Durable first (one write + one fdatasync), as a node persists a Ready.
                    log.append(&[RangeWrite {
                        range: RANGE,
                        entries: vec![Entry {
                            index,
                            term: 1,
                            data,
                        }],
                        hard_state: Some(HardState {
                            term: 1,
                            vote: 1,
                            commit: index,
                        }),
                    }])
                    .await?;
                    // Then applied to the memtable with its applied index.
                    wb.set_applied(RANGE, index);
                    engine.write(wb).await?;
                    record(h, t.elapsed());
                    // Log truncation once a flush made the applied index durable.
                    if n % 64 == 63 {
                        if let Some(a) = engine.applied_index(RANGE) {
                            log.truncate(RANGE, a + 1).await?;
                        }
                    }
                }
                Ok::<_, anyhow::Error>(())
            })
        }

        fn settle(&mut self) -> Result<()> {
            let engine = self.engine();
            self.ex.run(async {
                engine.flush().await?;
                engine.compact_as_needed().await?;
                Ok(())
            })
        }

        fn gets(&mut self, keys: &[u64], mut h: Option<&mut Histogram<u64>>) -> Result<()> {
            let engine = self.engine();
            self.ex.run(async {
                for &i in keys {
                    let t = Instant::now();
                    let v = engine.get(&key(i), READ_TS).await?;
                    if let Some(h) = h.as_deref_mut() {
                        record(h, t.elapsed());
                    }
                    check_value(i, v.as_deref())?;
                }
                Ok(())
            })
        }

        fn scans(
            &mut self,
            starts: &[u64],
            len: usize,
            total: u64,
            h: &mut Histogram<u64>,
        ) -> Result<()> {
            let engine = self.engine();
            let mut o = ScanOptions::at(READ_TS);
            o.limit = len;
            self.ex.run(async {
                for &i in starts {
                    let t = Instant::now();
                    let kvs = engine.scan(&key(i), b"\xff", &o).await?;
                    record(h, t.elapsed());
                    check_scan(i, kvs.len(), len, total)?;
                }
                Ok(())
            })
        }

        fn reopen(&mut self, cache_bytes: usize) -> Result<()> {
            let engine = self.engine.take().expect("engine open");
            let log = self.log.take();
            let dir = self.dir.clone();
            let engine = self.ex.run(async move {
                engine.flush().await?;
                engine.close().await?;
                if let Some(log) = log {
                    log.close().await?;
                }
                Ok::<_, anyhow::Error>(
                    LsmEngine::open(dir.join("lsm"), options(cache_bytes)).await?,
                )
            })?;
            self.engine = Some(engine);
            self.cache_seen = (0, 0);
            Ok(())
        }

        fn describe(&mut self) -> String {
            let s = self.engine().stats();
            let (hits, misses) = (s.cache.block_hits, s.cache.block_misses);
            let (h0, m0) = std::mem::replace(&mut self.cache_seen, (hits, misses));
            let mut d = format!(
                "tables per level {:?}, flushed {} MB, compacted {} MB, block cache {} hits {} misses",
                &s.tables_per_level[..],
                s.bytes_flushed >> 20,
                s.bytes_compacted >> 20,
                hits - h0,
                misses - m0,
            );
            if let Some(log) = &self.log {
                let l = log.stats();
                d += &format!(
                    ", raft log {} MB written in {} fdatasyncs",
                    l.bytes_written >> 20,
                    l.fdatasyncs
                );
            }
            d
        }

        /// Raft log append writes (whole blocks, the tail block rewritten by the next
        /// append) plus SST bytes flushed and compacted; not the log's segment
        /// zero-filling, nor manifests.
        fn engine_bytes_written(&mut self) -> Option<u64> {
            let s = self.engine().stats();
            let log = self
                .log
                .as_ref()
                .map(|l| l.stats().bytes_written)
                .unwrap_or(0);
            Some(log + s.bytes_flushed + s.bytes_compacted)
        }
    }

    impl Drop for ChitinStore {
        fn drop(&mut self) {
            let engine = self.engine.take();
            let log = self.log.take();
            self.ex.run(async move {
                if let Some(e) = engine {
                    let _ = e.close().await;
                }
                if let Some(l) = log {
                    let _ = l.close().await;
                }
            });
        }
    }
}

#[cfg(feature = "rocksdb")]
mod rocks_store {
    //! RocksDB's side, configured like Chitin's engine (see the crate essay).

    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use anyhow::Result;
    use hdrhistogram::Histogram;
    use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options, WriteOptions, DB};

    use super::{check_scan, check_value, key, record, value, Store};

    pub struct RocksStore {
        db: Option<DB>,
        dir: PathBuf,
        direct_io: bool,
    }

    fn options(cache_bytes: usize, direct_io: bool) -> Result<Options> {
        let mut o = Options::default();
        o.create_if_missing(true);
        o.set_write_buffer_size(16 << 20);
        o.set_max_write_buffer_number(3);
        o.set_level_zero_file_num_compaction_trigger(4);
        o.set_level_zero_stop_writes_trigger(20);
        o.set_max_bytes_for_level_base(64 << 20);
        o.set_max_bytes_for_level_multiplier(10.0);
        o.set_target_file_size_base(16 << 20);
        o.set_compression_type(DBCompressionType::None);
        o.set_use_direct_reads(direct_io);
        o.set_use_direct_io_for_flush_and_compaction(direct_io);
        let mut b = BlockBasedOptions::default();
        b.set_block_size(4 << 10);
        b.set_bloom_filter(10.0, false);
        let cache = Cache::new_lru_cache(cache_bytes)?;
        b.set_block_cache(&cache);
        o.set_block_based_table_factory(&b);
        Ok(o)
    }

    impl RocksStore {
        pub fn open(dir: &Path, cache_bytes: usize, direct_io: bool) -> Result<RocksStore> {
            let db = DB::open(&options(cache_bytes, direct_io)?, dir)?;
            Ok(RocksStore {
                db: Some(db),
                dir: dir.to_path_buf(),
                direct_io,
            })
        }

        fn db(&self) -> &DB {
            self.db.as_ref().expect("db open")
        }

        fn prop(&self, name: &str) -> u64 {
            self.db()
                .property_int_value(name)
                .ok()
                .flatten()
                .unwrap_or(0)
        }
    }

    impl Store for RocksStore {
        fn fill(&mut self, order: &[u64], batch: u64, h: &mut Histogram<u64>) -> Result<()> {
            let db = self.db();
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            wo.disable_wal(false);
            for chunk in order.chunks(batch as usize) {
                let t = Instant::now();
                let mut wb = rocksdb::WriteBatch::default();
                for &i in chunk {
                    wb.put(key(i), value(i));
                }
                db.write_opt(wb, &wo)?;
                record(h, t.elapsed());
            }
            Ok(())
        }

        fn settle(&mut self) -> Result<()> {
            self.db().flush()?;
            loop {
                let busy = self.prop("rocksdb.compaction-pending")
                    + self.prop("rocksdb.num-running-compactions")
                    + self.prop("rocksdb.num-running-flushes")
                    + self.prop("rocksdb.mem-table-flush-pending");
                if busy == 0 {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        fn gets(&mut self, keys: &[u64], mut h: Option<&mut Histogram<u64>>) -> Result<()> {
            let db = self.db();
            for &i in keys {
                let t = Instant::now();
                let v = db.get(key(i))?;
                if let Some(h) = h.as_deref_mut() {
                    record(h, t.elapsed());
                }
                check_value(i, v.as_deref())?;
            }
            Ok(())
        }

        fn scans(
            &mut self,
            starts: &[u64],
            len: usize,
            total: u64,
            h: &mut Histogram<u64>,
        ) -> Result<()> {
            let db = self.db();
            for &i in starts {
                let t = Instant::now();
                let mut it = db.raw_iterator();
                it.seek(key(i));
                let mut out = Vec::with_capacity(len);
                while it.valid() && out.len() < len {
                    out.push((
                        it.key().expect("valid").to_vec(),
                        it.value().expect("valid").to_vec(),
                    ));
                    it.next();
                }
                it.status()?;
                record(h, t.elapsed());
                check_scan(i, out.len(), len, total)?;
            }
            Ok(())
        }

        fn reopen(&mut self, cache_bytes: usize) -> Result<()> {
            self.db().flush()?;
            drop(self.db.take());
            self.db = Some(DB::open(&options(cache_bytes, self.direct_io)?, &self.dir)?);
            Ok(())
        }

        fn describe(&mut self) -> String {
            let files: Vec<u64> = (0..7)
                .map(|l| self.prop(&format!("rocksdb.num-files-at-level{l}")))
                .collect();
            format!(
                "files per level {files:?}, block cache usage {} MB",
                self.prop("rocksdb.block-cache-usage") >> 20
            )
        }
    }
}

/// Runs one engine in this process.
fn run_one(flags: &Flags) -> Result<()> {
    println!(
        "# {} keys × ({KEY_LEN} B key + {VALUE_LEN} B value), batches of {} (each durable), \
         {} gets, {} scans, block cache {} MiB (cold: {} MiB), dir {}",
        flags.keys,
        flags.batch,
        flags.gets,
        flags.scans,
        flags.cache_mb,
        flags.cold_cache_mb,
        flags.dir.display()
    );
    match flags.engine.as_str() {
        "chitin" => {
            println!(
                "# chitin: LsmEngine (no WAL) + RaftLog append with one fdatasync per batch, \
                 then apply (the node's write path)"
            );
            run_workloads("chitin", flags, &mut |dir, cache| {
                Ok(Box::new(chitin_store::ChitinStore::open(dir, cache)?))
            })
        }
        #[cfg(feature = "rocksdb")]
        "rocksdb" => {
            let direct = !flags.rocksdb_page_cache;
            println!(
                "# rocksdb: WAL on, WriteOptions::set_sync(true) per batch; direct I/O {}",
                if direct {
                    "on (no page cache)"
                } else {
                    "off (page cache)"
                }
            );
            run_workloads("rocksdb", flags, &mut |dir, cache| {
                Ok(Box::new(rocks_store::RocksStore::open(dir, cache, direct)?))
            })
        }
        #[cfg(not(feature = "rocksdb"))]
        "rocksdb" => {
            bail!("built without RocksDB: rebuild with `--features rocksdb` (see bench/README.md)")
        }
        other => bail!("unknown engine {other}"),
    }
}

/// One engine's results, as parsed from its child's output.
#[derive(Default)]
struct EngineResults {
    outcomes: Vec<(String, f64, f64, f64, String)>,
    peak_rss_kib: u64,
}

/// Re-executes this binary once per engine and prints the comparison.
fn run_both(flags: &Flags) -> Result<()> {
    let exe = std::env::current_exe().context("current_exe")?;
    let mut results = Vec::new();
    for engine in ["chitin", "rocksdb"] {
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        // The last --engine wins.
        args.push("--engine".into());
        args.push(engine.into());
        let mut child = Command::new(&exe)
            .args(&args)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {}", exe.display()))?;
        let mut r = EngineResults::default();
        for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
            let line = line?;
            let f: Vec<&str> = line.split('\t').collect();
            match f.first() {
                Some(&"RESULT") if f.len() >= 7 => r.outcomes.push((
                    f[2].to_string(),
                    f[3].parse()?,
                    f[4].parse()?,
                    f[5].parse()?,
                    f[6].to_string(),
                )),
                Some(&"PEAK_RSS") if f.len() >= 3 => r.peak_rss_kib = f[2].parse()?,
                _ => println!("{line}"),
            }
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("{engine} run failed: {status}");
        }
        results.push(r);
    }
    let (c, r) = (&results[0], &results[1]);
    println!();
    println!(
        "{} keys, batches of {} (each durable), {} gets, {} scans:",
        flags.keys, flags.batch, flags.gets, flags.scans
    );
    println!();
    println!(
        "| workload | chitin ops/s | rocksdb ops/s | chitin/rocksdb | chitin p50 / p99 µs | rocksdb p50 / p99 µs | write-amp chitin / rocksdb |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut ratio_of = std::collections::HashMap::new();
    for (w, c_ops, c50, c99, cw) in &c.outcomes {
        let Some((_, r_ops, r50, r99, rw)) = r.outcomes.iter().find(|o| &o.0 == w) else {
            continue;
        };
        let ratio = c_ops / r_ops;
        ratio_of.insert(w.clone(), ratio);
        let wamp = if cw == "-" {
            "".to_string()
        } else {
            format!("{cw} / {rw}")
        };
        println!(
            "| {w} | {c_ops:.0} | {r_ops:.0} | {ratio:.2}× | {c50:.0} / {c99:.0} | {r50:.0} / {r99:.0} | {wamp} |"
        );
    }
    println!(
        "| peak RSS (VmHWM) | {:.0} MiB | {:.0} MiB | {:.2}× | | | |",
        c.peak_rss_kib as f64 / 1024.0,
        r.peak_rss_kib as f64 / 1024.0,
        c.peak_rss_kib as f64 / r.peak_rss_kib.max(1) as f64
    );
    println!();
    for (w, label) in [
        ("get-warm", "random get (warm)"),
        ("get-cold", "random get (cold)"),
        ("fill-rand", "random fill"),
    ] {
        if let Some(ratio) = ratio_of.get(w) {
            println!(
                "goal: {label} >= 1.0x RocksDB: {ratio:.2}x — {}",
                if *ratio >= 1.0 { "met" } else { "NOT met" }
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let flags = parse_flags()?;
    if flags.engine == "both" {
        if !cfg!(feature = "rocksdb") {
            bail!("--engine both needs RocksDB: rebuild with `--features rocksdb` (see bench/README.md)");
        }
        run_both(&flags)
    } else {
        run_one(&flags)
    }
}
