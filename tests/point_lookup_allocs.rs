//! Heap allocations per prepared point lookup. Issue 3, item 5: "A prepared point lookup by
//! primary key is the fast path: cached plan, one KV get, no avoidable allocation."
//!
//! The node runs in this process (one core, in-memory engine and LSM variants) under a
//! counting global allocator, and the client is a hand-rolled pgwire client on a blocking
//! socket whose Bind/Execute/Sync bytes are encoded once and whose reads go into one
//! reused buffer, so the client itself allocates nothing per query. The process-wide
//! allocation count over many lookups, divided by their number, is then the server's cost
//! per lookup (plus background work — raft ticks, timers — spread thin over the run).
//!
//! What remains per lookup is listed at [`ALLOWED_PER_LOOKUP_MEM`]; a change that adds an
//! allocation to the path fails here. `CHITIN_ALLOC_TRACE=1` prints the stack of every
//! allocation made during three lookups.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
/// Set while measuring with `CHITIN_ALLOC_TRACE=1`: every allocation's stack is printed,
/// which is how to find a new one on the path.
static TRACING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

thread_local! {
    static IN_TRACE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn trace_allocation() {
    if !TRACING.load(Ordering::Relaxed) {
        return;
    }
    IN_TRACE.with(|t| {
        if t.replace(true) {
            return;
        }
        eprintln!(
            "--- allocation\n{}",
            std::backtrace::Backtrace::force_capture()
        );
        t.set(false);
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        trace_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        trace_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocations a prepared point lookup may still make, beyond an empty round trip's
/// (measured per run as the baseline; glommio allocates per socket operation and timer):
/// - in-memory engine (2): its `BTreeMap<(key, ts)>` is searched with an owned bound, and
///   `get` returns the value as an owned `Vec`;
/// - LSM engine (about 3–4): the encoded seek key, the list of memtables in the read
///   snapshot, and the found version's key and value copied out of the memtable (the value
///   copy becomes the result).
///
/// Everything above the engine — plan, Bind decoding, parameter values, key encoding,
/// range routing, row decoding, DataRow and CommandComplete encoding — reuses buffers and
/// allocates nothing. The bounds leave about 1.5 allocations of slack for background work (raft
/// ticks, timers) that lands in the measured window.
const ALLOWED_PER_LOOKUP_MEM: f64 = 3.5;
const ALLOWED_PER_LOOKUP_LSM: f64 = 5.5;

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Reads messages into `buf` until ReadyForQuery; returns the number of DataRows and
/// whether an ErrorResponse was seen. Allocates nothing once `buf` is large enough.
fn read_until_ready(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (usize, bool) {
    let mut rows = 0;
    let mut error = false;
    let mut have = 0usize;
    let mut at = 0usize;
    loop {
        while have - at >= 5 {
            let tag = buf[at];
            let len = i32::from_be_bytes(buf[at + 1..at + 5].try_into().unwrap()) as usize;
            if have - at < 1 + len {
                break;
            }
            match tag {
                b'D' => rows += 1,
                b'E' => error = true,
                b'Z' => return (rows, error),
                _ => {}
            }
            at += 1 + len;
        }
        if at > 0 {
            buf.copy_within(at..have, 0);
            have -= at;
            at = 0;
        }
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = stream.read(&mut buf[have..]).expect("read from server");
        assert!(n > 0, "server closed the connection");
        have += n;
    }
}

fn simple(stream: &mut TcpStream, buf: &mut Vec<u8>, sql: &str) {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    stream.write_all(&message(b'Q', &body)).unwrap();
    let (_, error) = read_until_ready(stream, buf);
    assert!(!error, "{sql} failed");
}

/// Starts a one-core node in this process and returns its SQL address. The node lives
/// until the test process exits; its store is removed by the returned guard.
fn start_node(engine: chitin::kv::engine::EngineKind) -> (SocketAddr, common::TempDir) {
    let dir = common::TempDir::new("chitin-allocs").unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let mut cfg = chitin::node::NodeConfig::single_node(dir.path().to_path_buf(), listen, http);
    cfg.cache_bytes = 16 << 20;
    cfg.engine = engine;
    std::thread::spawn(move || {
        let _ = chitin::node::run(cfg);
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Ready once it serves HTTP (started after the node is ready for SQL).
        if TcpStream::connect(http).is_ok() {
            return (listen, dir);
        }
        assert!(Instant::now() < deadline, "node did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn allocations_per_lookup(engine: chitin::kv::engine::EngineKind, table: &str) -> f64 {
    let (addr, _dir) = start_node(engine);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    s.write_all(&common::startup_message("root", "defaultdb"))
        .unwrap();
    read_until_ready(&mut s, &mut buf);
    simple(
        &mut s,
        &mut buf,
        &format!("CREATE TABLE {table} (k INT8 PRIMARY KEY, v TEXT, n INT8)"),
    );
    simple(
        &mut s,
        &mut buf,
        &format!("INSERT INTO {table} SELECT i, 'value ' || i::TEXT, i * 2 FROM generate_series(1, 100) AS g(i)"),
    );

    // Parse "s" once, with the parameter typed int8.
    let mut parse = b"s\0".to_vec();
    parse.extend_from_slice(format!("SELECT k, v, n FROM {table} WHERE k = $1\0").as_bytes());
    parse.extend_from_slice(&1i16.to_be_bytes());
    parse.extend_from_slice(&20i32.to_be_bytes());
    let mut setup = message(b'P', &parse);
    setup.extend_from_slice(&message(b'S', &[]));
    s.write_all(&setup).unwrap();
    let (_, error) = read_until_ready(&mut s, &mut buf);
    assert!(!error, "Parse failed");

    // Bind (binary int8 parameter, binary results) + Execute + Sync, encoded once per key.
    let lookups: Vec<Vec<u8>> = (1..=100i64)
        .map(|k| {
            let mut bind = b"\0s\0".to_vec();
            bind.extend_from_slice(&1i16.to_be_bytes());
            bind.extend_from_slice(&1i16.to_be_bytes());
            bind.extend_from_slice(&1i16.to_be_bytes());
            bind.extend_from_slice(&8i32.to_be_bytes());
            bind.extend_from_slice(&k.to_be_bytes());
            bind.extend_from_slice(&1i16.to_be_bytes());
            bind.extend_from_slice(&1i16.to_be_bytes());
            let mut m = message(b'B', &bind);
            m.extend_from_slice(&message(b'E', b"\0\0\0\0\0"));
            m.extend_from_slice(&message(b'S', &[]));
            m
        })
        .collect();
    fn run(s: &mut TcpStream, buf: &mut Vec<u8>, lookups: &[Vec<u8>], n: usize) {
        for i in 0..n {
            s.write_all(&lookups[i % lookups.len()]).unwrap();
            let (rows, error) = read_until_ready(s, buf);
            assert!(!error && rows == 1, "lookup {i} returned {rows} rows");
        }
    }
    // Warm up: plan cache, buffers, block cache, session maps.
    run(&mut s, &mut buf, &lookups, 500);
    // Text-format results from the fast path read like the general path's.
    let mut bind = b"\0s\0".to_vec();
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&8i32.to_be_bytes());
    bind.extend_from_slice(&7i64.to_be_bytes());
    bind.extend_from_slice(&0i16.to_be_bytes());
    let mut text = message(b'B', &bind);
    text.extend_from_slice(&message(b'E', b"\0\0\0\0\0"));
    text.extend_from_slice(&message(b'S', &[]));
    s.write_all(&text).unwrap();
    let mut reply = Vec::new();
    while !reply.ends_with(b"Z\0\0\0\x05I") {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "server closed the connection");
        reply.extend_from_slice(&chunk[..n]);
    }
    let mut row = b"D".to_vec();
    let fields: [&[u8]; 3] = [b"7", b"value 7", b"14"];
    let body_len = 4 + 2 + fields.iter().map(|f| 4 + f.len()).sum::<usize>();
    row.extend_from_slice(&(body_len as i32).to_be_bytes());
    row.extend_from_slice(&3i16.to_be_bytes());
    for f in fields {
        row.extend_from_slice(&(f.len() as i32).to_be_bytes());
        row.extend_from_slice(f);
    }
    assert!(
        reply.windows(row.len()).any(|w| w == row.as_slice()),
        "text DataRow {row:?} not in {reply:?}"
    );
    assert!(reply.windows(9).any(|w| w == b"SELECT 1\0"), "{reply:?}");
    if std::env::var_os("CHITIN_ALLOC_TRACE").is_some() {
        TRACING.store(true, Ordering::Relaxed);
        run(&mut s, &mut buf, &lookups, 3);
        TRACING.store(false, Ordering::Relaxed);
    }
    // Background work (raft ticks, timers, metrics) allocates by the clock, not per
    // request: each figure is the least of several windows, which it disturbs least.
    let n = 2000;
    let sync = message(b'S', &[]);
    let (mut lookup, mut baseline, mut elapsed) = (f64::MAX, f64::MAX, Duration::MAX);
    for _ in 0..4 {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let started = Instant::now();
        run(&mut s, &mut buf, &lookups, n);
        elapsed = elapsed.min(started.elapsed());
        lookup = lookup.min((ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64);
        // The baseline: a round trip that does no work (Sync → ReadyForQuery) still costs
        // the runtime's own allocations for parking and waking the core (glommio allocates
        // an io_uring source per socket operation and per preemption timer); those are not
        // the lookup's.
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..n {
            s.write_all(&sync).unwrap();
            read_until_ready(&mut s, &mut buf);
        }
        baseline = baseline.min((ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64);
    }
    let per = lookup - baseline;
    println!(
        "{engine:?}: {lookup:.2} allocations per prepared point lookup round trip, {baseline:.2} per empty round trip: {per:.2} for the lookup; {:.1} µs per lookup round trip",
        elapsed.as_secs_f64() * 1e6 / n as f64
    );
    per
}

#[test]
fn prepared_point_lookup_allocates_only_in_the_engine() {
    use chitin::kv::engine::EngineKind;
    let mem = allocations_per_lookup(EngineKind::Mem, "kv_mem");
    let lsm = allocations_per_lookup(EngineKind::Lsm, "kv_lsm");
    assert!(
        mem <= ALLOWED_PER_LOOKUP_MEM,
        "in-memory engine: {mem:.2} allocations per lookup, at most {ALLOWED_PER_LOOKUP_MEM} allowed"
    );
    assert!(
        lsm <= ALLOWED_PER_LOOKUP_LSM,
        "LSM engine: {lsm:.2} allocations per lookup, at most {ALLOWED_PER_LOOKUP_LSM} allowed"
    );
}
