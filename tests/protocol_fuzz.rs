//! Malformed pgwire input over raw TCP: garbage and truncated startup packets, bad and
//! huge length fields, unknown message types, truncated and inconsistent Parse/Bind/
//! Execute messages, cut-off connections. Issue 3, item 7: "A malformed protocol message
//! closes only that connection. Nothing a client sends can panic the server."
//!
//! Each case opens its own connection, sends its bytes, half-closes, and drains whatever
//! the server answers until it closes or a short timeout passes; the answer itself is not
//! judged (an ErrorResponse, a close, or silence are all acceptable). What is judged is
//! that, after every case, a separate healthy tokio-postgres session still runs
//! `SELECT 1`, and every few cases a brand-new session can still connect. The cases are
//! pseudo-random from a fixed seed, so a failure names a case that replays exactly.
//!
//! `startup_handshake_and_transaction_status` checks the well-formed details drivers rely
//! on: SSLRequest answered 'N', the ParameterStatus set, BackendKeyData, ReadyForQuery's
//! I/T/E status, ErrorResponse fields with a position, EmptyQueryResponse.
//!
//! Environment: `CHITIN_TEST_URL=postgresql://...` runs against that server instead of
//! spawning Chitin; `CHITIN_FUZZ_SEED` and `CHITIN_FUZZ_CASES` change the seed (default
//! 0x5eed) and the number of random cases (default 300).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::Client;

use common::Target;

const URL_VAR: &str = "CHITIN_TEST_URL";

/// The whole run's limit; the cases are sized to finish well inside it.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// A bound on every well-formed exchange (connect, startup, `SELECT 1`): generous, so
/// that a loaded machine is not mistaken for a hung server.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for the server to answer one malformed connection and close it after
/// our half-close. Servers close at once (PostgreSQL and Chitin take milliseconds); the
/// margin is there so that a case that takes the server down is blamed, not the next one.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

const PROTOCOL_3_0: i32 = 196_608;
const SSL_REQUEST: i32 = 80_877_103;
const CANCEL_REQUEST: i32 = 80_877_102;
const GSSENC_REQUEST: i32 = 80_877_104;

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A frontend message: type byte, length (including itself), body.
fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// An untagged startup-phase packet: length, then body.
fn packet(body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn parse(name: &str, sql: &str, param_types: &[i32]) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, name);
    cstr(&mut body, sql);
    body.extend_from_slice(&(param_types.len() as i16).to_be_bytes());
    for oid in param_types {
        body.extend_from_slice(&oid.to_be_bytes());
    }
    message(b'P', &body)
}

fn bind(portal: &str, statement: &str, formats: &[i16], params: &[Option<&[u8]>]) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal);
    cstr(&mut body, statement);
    body.extend_from_slice(&(formats.len() as i16).to_be_bytes());
    for f in formats {
        body.extend_from_slice(&f.to_be_bytes());
    }
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(bytes) => {
                body.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                body.extend_from_slice(bytes);
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    message(b'B', &body)
}

fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal);
    body.extend_from_slice(&max_rows.to_be_bytes());
    message(b'E', &body)
}

fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut body = vec![kind];
    cstr(&mut body, name);
    message(b'D', &body)
}

fn query(sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, sql);
    message(b'Q', &body)
}

fn sync() -> Vec<u8> {
    message(b'S', &[])
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// One malformed connection: whether to complete a valid startup first, then the bytes.
struct Case {
    name: String,
    after_startup: bool,
    bytes: Vec<u8>,
    /// Close abruptly instead of half-closing and draining.
    abrupt: bool,
}

impl Case {
    fn startup(name: &str, bytes: Vec<u8>) -> Case {
        Case {
            name: name.to_string(),
            after_startup: false,
            bytes,
            abrupt: false,
        }
    }

    fn session(name: &str, bytes: Vec<u8>) -> Case {
        Case {
            name: name.to_string(),
            after_startup: true,
            bytes,
            abrupt: false,
        }
    }
}

/// The named cases, each a known way to break the protocol.
fn fixed_cases() -> Vec<Case> {
    let startup = common::startup_message(common::DEFAULT_USER, common::DEFAULT_DATABASE);
    let mut cases = vec![
        Case::startup("empty connection", vec![]),
        Case::startup("one byte", vec![0]),
        Case::startup("length 0", 0i32.to_be_bytes().to_vec()),
        Case::startup("length 4 only", packet(&[])),
        Case::startup("negative length", (-1i32).to_be_bytes().to_vec()),
        Case::startup("huge length", {
            let mut b = 0x7fff_ffffi32.to_be_bytes().to_vec();
            b.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
            b
        }),
        Case::startup("length beyond the data", {
            let mut b = 1000i32.to_be_bytes().to_vec();
            b.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
            b.extend_from_slice(b"user\0root\0");
            b
        }),
        Case::startup("protocol 2.0", packet(&131_072i32.to_be_bytes())),
        Case::startup("protocol 4.0", {
            let mut body = (4i32 << 16).to_be_bytes().to_vec();
            body.extend_from_slice(b"user\0root\0\0");
            packet(&body)
        }),
        Case::startup("startup without terminators", {
            let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
            body.extend_from_slice(b"user\0root");
            packet(&body)
        }),
        Case::startup("startup without user", {
            let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
            body.extend_from_slice(b"database\0defaultdb\0\0");
            packet(&body)
        }),
        Case::startup("startup with odd parameter list", {
            let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
            body.extend_from_slice(b"user\0root\0application_name\0");
            packet(&body)
        }),
        Case::startup("startup with invalid utf-8", {
            let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
            body.extend_from_slice(b"user\0\xff\xfe\xfd\0\0");
            packet(&body)
        }),
        Case::startup("ssl request then garbage", {
            let mut b = packet(&SSL_REQUEST.to_be_bytes());
            b.extend_from_slice(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
            b
        }),
        Case::startup("ssl request twice", {
            let mut b = packet(&SSL_REQUEST.to_be_bytes());
            b.extend(packet(&SSL_REQUEST.to_be_bytes()));
            b
        }),
        Case::startup("gssenc request", packet(&GSSENC_REQUEST.to_be_bytes())),
        Case::startup("cancel request with unknown key", {
            let mut body = CANCEL_REQUEST.to_be_bytes().to_vec();
            body.extend_from_slice(&12345i32.to_be_bytes());
            body.extend_from_slice(&67890i32.to_be_bytes());
            packet(&body)
        }),
        Case::startup(
            "short cancel request",
            packet(&CANCEL_REQUEST.to_be_bytes()),
        ),
        Case::startup(
            "http request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        Case::startup("tagged message before startup", query("SELECT 1")),
        Case::startup("startup cut in half", startup[..startup.len() / 2].to_vec()),
        Case::session("unknown message type", message(b'!', b"hello")),
        Case::session("message type zero", message(0, &[])),
        Case::session("length below 4", vec![b'Q', 0, 0, 0, 2]),
        Case::session("negative length", vec![b'Q', 0xff, 0xff, 0xff, 0xf0]),
        Case::session("huge length", {
            let mut b = vec![b'Q'];
            b.extend_from_slice(&0x7fff_ff00i32.to_be_bytes());
            b.extend_from_slice(b"SELECT 1");
            b
        }),
        Case::session("query without terminator", {
            let mut b = vec![b'Q'];
            b.extend_from_slice(&12i32.to_be_bytes());
            b.extend_from_slice(b"SELECT 1");
            b.extend(sync());
            b
        }),
        Case::session("query with invalid utf-8", {
            let mut b = query("SELECT 'x'");
            b[12] = 0xff;
            b
        }),
        Case::session("parse without terminators", message(b'P', b"stmt")),
        Case::session("parse with huge parameter count", {
            let mut body = b"s\0SELECT $1\0".to_vec();
            body.extend_from_slice(&i16::MAX.to_be_bytes());
            concat(&[message(b'P', &body), sync()])
        }),
        Case::session("parse with negative parameter count", {
            let mut body = b"s\0SELECT $1\0".to_vec();
            body.extend_from_slice(&(-5i16).to_be_bytes());
            concat(&[message(b'P', &body), sync()])
        }),
        Case::session("parse with unknown parameter type", {
            concat(&[parse("", "SELECT $1", &[999_999]), sync()])
        }),
        Case::session("parse of a syntax error", {
            concat(&[parse("", "SELEC 1", &[]), sync()])
        }),
        Case::session("parameter number out of range", {
            concat(&[
                parse("", "SELECT $70000", &[]),
                bind("", "", &[], &[]),
                execute("", 0),
                sync(),
            ])
        }),
        Case::session("truncated bind", {
            let full = bind("", "s", &[1], &[Some(&7i32.to_be_bytes())]);
            let mut cut = full[..full.len() - 5].to_vec();
            // Keep the length field claiming the full message.
            cut.extend(sync());
            concat(&[parse("s", "SELECT $1::INT4", &[23]), cut])
        }),
        Case::session("bind with too few parameters", {
            concat(&[
                parse("s", "SELECT $1::INT4, $2::INT4", &[23, 23]),
                bind("", "s", &[1], &[Some(&7i32.to_be_bytes())]),
                execute("", 0),
                sync(),
            ])
        }),
        Case::session("bind with parameter length beyond message", {
            let mut body = b"\0s\0".to_vec();
            body.extend_from_slice(&0i16.to_be_bytes());
            body.extend_from_slice(&1i16.to_be_bytes());
            body.extend_from_slice(&1_000_000i32.to_be_bytes());
            body.extend_from_slice(b"abc");
            body.extend_from_slice(&0i16.to_be_bytes());
            concat(&[
                parse("s", "SELECT $1::TEXT", &[25]),
                message(b'B', &body),
                sync(),
            ])
        }),
        Case::session("bind with parameter length -2", {
            let mut body = b"\0s\0".to_vec();
            body.extend_from_slice(&0i16.to_be_bytes());
            body.extend_from_slice(&1i16.to_be_bytes());
            body.extend_from_slice(&(-2i32).to_be_bytes());
            body.extend_from_slice(&0i16.to_be_bytes());
            concat(&[
                parse("s", "SELECT $1::TEXT", &[25]),
                message(b'B', &body),
                sync(),
            ])
        }),
        Case::session("bind with invalid format code", {
            concat(&[
                parse("s", "SELECT $1::INT4", &[23]),
                bind("", "s", &[7], &[Some(&7i32.to_be_bytes())]),
                execute("", 0),
                sync(),
            ])
        }),
        Case::session("binary int4 parameter of the wrong size", {
            concat(&[
                parse("s", "SELECT $1::INT4", &[23]),
                bind("", "s", &[1], &[Some(&[1, 2, 3])]),
                execute("", 0),
                sync(),
            ])
        }),
        Case::session("binary parameters of the wrong size for every type", {
            let mut parts = Vec::new();
            // int2, int4, int8, float4, float8, bool, numeric, date, timestamp, timestamptz, uuid
            for (i, oid) in [21, 23, 20, 700, 701, 16, 1700, 1082, 1114, 1184, 2950]
                .iter()
                .enumerate()
            {
                let name = format!("s{i}");
                parts.push(parse(&name, "SELECT $1", &[*oid]));
                parts.push(bind("", &name, &[1], &[Some(&[0xff; 5])]));
                parts.push(execute("", 0));
                parts.push(sync());
            }
            concat(&parts)
        }),
        Case::session("bind to a missing statement", {
            concat(&[bind("", "nosuch", &[], &[]), execute("", 0), sync()])
        }),
        Case::session(
            "execute a missing portal",
            concat(&[execute("nosuch", 0), sync()]),
        ),
        Case::session("execute with negative row limit", {
            concat(&[
                parse("", "SELECT 1", &[]),
                bind("", "", &[], &[]),
                execute("", -1),
                sync(),
            ])
        }),
        Case::session(
            "describe with a bad kind",
            concat(&[describe(b'Z', "x"), sync()]),
        ),
        Case::session("close with a bad kind", {
            concat(&[message(b'C', b"Zname\0"), sync()])
        }),
        Case::session("function call", concat(&[message(b'F', &[0; 12]), sync()])),
        Case::session("copy data outside copy", {
            concat(&[message(b'd', b"1\t2\n"), message(b'c', &[]), sync()])
        }),
        Case::session("copy fail outside copy", message(b'f', b"no\0")),
        Case::session("startup again after startup", {
            common::startup_message(common::DEFAULT_USER, common::DEFAULT_DATABASE)
        }),
        Case::session("extended messages without sync", {
            concat(&[
                parse("", "SELECT 1", &[]),
                bind("", "", &[], &[]),
                execute("", 0),
            ])
        }),
        Case::session("many syncs", (0..200).flat_map(|_| sync()).collect()),
        Case::session(
            "one MiB query",
            query(&format!("SELECT '{}'", "x".repeat(1 << 20))),
        ),
        Case::session("deeply nested parentheses", {
            query(&format!(
                "SELECT {}1{}",
                "(".repeat(100_000),
                ")".repeat(100_000)
            ))
        }),
        Case::session("very long operator chain", {
            query(&format!("SELECT 1{}", "+1".repeat(200_000)))
        }),
        Case::session("very long IN list", {
            let list: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
            query(&format!("SELECT 1 IN ({})", list.join(",")))
        }),
        Case::session("deeply nested NOT", {
            query(&format!("SELECT {}true", "NOT ".repeat(100_000)))
        }),
        Case::session("open transaction then drop", {
            concat(&[query("BEGIN"), query("SELECT 1")])
        }),
    ];
    if let Some(case) = cases.last_mut() {
        case.abrupt = true;
    }
    cases
}

/// A plausible message sequence to mutate.
fn base_sequence(rng: &mut Rng) -> Vec<Vec<u8>> {
    let int4 = 42i32.to_be_bytes();
    match rng.below(5) {
        0 => vec![query("SELECT 1; SELECT 'two'")],
        1 => vec![
            parse("", "SELECT $1::INT4 + 1", &[23]),
            bind("", "", &[1], &[Some(&int4)]),
            describe(b'P', ""),
            execute("", 0),
            sync(),
        ],
        2 => vec![
            parse("named", "SELECT $1::TEXT", &[25]),
            describe(b'S', "named"),
            bind("p", "named", &[0], &[Some(b"hello")]),
            execute("p", 1),
            message(b'H', &[]),
            sync(),
            message(b'C', b"Snamed\0"),
            sync(),
        ],
        3 => vec![
            parse("", "SELECT $1::INT8, $2::BOOL", &[]),
            bind("", "", &[], &[None, Some(b"t")]),
            execute("", 0),
            sync(),
        ],
        _ => vec![query("BEGIN"), query("SELECT 1/0"), query("ROLLBACK")],
    }
}

/// A random case: a base sequence with one or two mutations.
fn random_case(rng: &mut Rng, index: usize) -> Case {
    if rng.below(6) == 0 {
        // Raw garbage in place of a startup packet.
        let len = 1 + rng.below(96);
        return Case::startup(&format!("random #{index}: startup garbage"), rng.bytes(len));
    }
    let mut parts = base_sequence(rng);
    let mut what = Vec::new();
    for _ in 0..1 + rng.below(2) {
        let target = rng.below(parts.len());
        let part = &mut parts[target];
        match rng.below(7) {
            0 => {
                let cut = rng.below(part.len());
                part.truncate(cut);
                what.push(format!("truncate msg {target} at {cut}"));
            }
            1 if part.len() >= 5 => {
                let lengths = [0i32, 1, 3, 4, -1, i32::MIN, i32::MAX, 1 << 24, 65_536];
                let len = *rng.pick(&lengths);
                part[1..5].copy_from_slice(&len.to_be_bytes());
                what.push(format!("length of msg {target} = {len}"));
            }
            2 => {
                let tag = rng.next() as u8;
                part[0] = tag;
                what.push(format!("tag of msg {target} = {tag:#04x}"));
            }
            3 if part.len() > 5 => {
                for _ in 0..1 + rng.below(4) {
                    let at = 5 + rng.below(part.len() - 5);
                    part[at] = rng.next() as u8;
                }
                what.push(format!("flip bytes in msg {target}"));
            }
            4 => {
                let len = 1 + rng.below(32);
                let garbage = rng.bytes(len);
                parts.insert(target, garbage);
                what.push(format!("insert {len} garbage bytes before msg {target}"));
            }
            5 if part.len() > 5 => {
                // Field counts (i16) inside Parse/Bind are the classic overflow.
                let at = 5 + rng.below(part.len() - 5);
                let count = *rng.pick(&[i16::MAX, -1, i16::MIN, 1000]);
                let end = (at + 2).min(part.len());
                part[at..end].copy_from_slice(&count.to_be_bytes()[..end - at]);
                what.push(format!("count {count} at byte {at} of msg {target}"));
            }
            _ => {
                parts.remove(target);
                what.push(format!("drop msg {target}"));
                if parts.is_empty() {
                    parts.push(sync());
                }
            }
        }
    }
    let mut case = Case::session(
        &format!("random #{index}: {}", what.join(", ")),
        parts.concat(),
    );
    case.abrupt = rng.below(8) == 0;
    case
}

/// Completes a startup as root on `stream`, up to ReadyForQuery.
async fn complete_startup(stream: &mut TcpStream, database: &str) -> Result<(), String> {
    stream
        .write_all(&common::startup_message(common::DEFAULT_USER, database))
        .await
        .map_err(|e| format!("write startup: {e}"))?;
    let read = async {
        loop {
            let mut header = [0u8; 5];
            stream.read_exact(&mut header).await?;
            let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            if !(4..=1 << 20).contains(&len) {
                return Err(std::io::Error::other(format!("bad length {len}")));
            }
            let mut body = vec![0u8; len as usize - 4];
            stream.read_exact(&mut body).await?;
            match header[0] {
                b'Z' => return Ok(()),
                b'E' => {
                    return Err(std::io::Error::other(String::from_utf8_lossy(&body)));
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(CALL_TIMEOUT, read)
        .await
        .map_err(|_| "startup timed out after 30 s".to_string())?
        .map_err(|e| format!("startup: {e}"))
}

/// Runs one case: connect, optionally start up, send, then half-close and drain.
async fn run_case(addr: SocketAddr, database: &str, case: &Case) -> Result<(), String> {
    let mut stream = tokio::time::timeout(CALL_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    if case.after_startup {
        complete_startup(&mut stream, database).await?;
    }
    // The server may close as soon as it sees bad bytes; a failed write is fine.
    let _ = stream.write_all(&case.bytes).await;
    if case.abrupt {
        return Ok(());
    }
    let _ = stream.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    Ok(())
}

/// The healthy session still answers.
async fn check_healthy(client: &Client) -> Result<(), String> {
    let rows = tokio::time::timeout(CALL_TIMEOUT, client.simple_query("SELECT 1"))
        .await
        .map_err(|_| "SELECT 1 timed out after 30 s".to_string())?
        .map_err(|e| format!("SELECT 1: {e:?}"))?;
    let one = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    });
    if one.as_deref() == Some("1") {
        Ok(())
    } else {
        Err(format!("SELECT 1 returned {one:?}"))
    }
}

/// A brand-new session can connect and query.
async fn check_new_session(target: &Target, database: &str) -> Result<(), String> {
    let client = tokio::time::timeout(CALL_TIMEOUT, common::connect(&target.config(database)))
        .await
        .map_err(|_| "new connection timed out".to_string())?
        .map_err(|e| format!("new connection: {e:?}"))?;
    check_healthy(&client).await
}

fn env_number(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => v.parse().ok(),
            }
        })
        .unwrap_or(default)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn malformed_messages_close_only_their_connection() {
    let seed = env_number("CHITIN_FUZZ_SEED", 0x5eed);
    let random_cases = env_number("CHITIN_FUZZ_CASES", 300) as usize;
    let target = common::shared_target(URL_VAR).unwrap_or_else(|e| panic!("{e}"));
    let addr = target.sql_addr().unwrap_or_else(|e| panic!("{e}"));
    let database = target.default_database();
    let mut cases = fixed_cases();
    let mut rng = Rng(seed);
    cases.extend((0..random_cases).map(|i| random_case(&mut rng, i)));
    let total = cases.len();

    let result = runtime().block_on(async {
        let healthy = common::connect(&target.config(&database))
            .await
            .map_err(|e| format!("healthy connection: {e:?}"))?;
        check_healthy(&healthy).await?;
        let started = Instant::now();
        for (i, case) in cases.iter().enumerate() {
            if started.elapsed() > RUN_TIMEOUT {
                return Err(format!("ran out of time after {i} of {total} cases"));
            }
            // Failing to deliver a case is not the server's fault unless it is gone.
            if let Err(e) = run_case(addr, &database, case).await {
                if case.after_startup {
                    return Err(format!("case {i} ({}): {e}", case.name));
                }
            }
            check_healthy(&healthy)
                .await
                .map_err(|e| format!("after case {i} ({}): healthy session: {e}", case.name))?;
            if i % 25 == 24 || i + 1 == total {
                check_new_session(&target, &database)
                    .await
                    .map_err(|e| format!("after case {i} ({}): {e}", case.name))?;
            }
        }
        eprintln!(
            "protocol fuzz: {total} cases (seed {seed:#x}) in {:.1?}",
            started.elapsed()
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\nserver log (tail):\n{}", target.log_tail());
    }
}

#[test]
fn stalled_connections_do_not_block_others() {
    // Connections that stop mid-startup or mid-message must not hold up the listener or
    // other sessions (one core serving many connections must not block on one).
    let target = common::shared_target(URL_VAR).unwrap_or_else(|e| panic!("{e}"));
    let addr = target.sql_addr().unwrap_or_else(|e| panic!("{e}"));
    let database = target.default_database();
    let result = runtime().block_on(async {
        let mut stalled = Vec::new();
        for i in 0..16 {
            let mut stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let startup = common::startup_message(common::DEFAULT_USER, &database);
            if i % 2 == 0 {
                // Half a startup packet, then silence.
                let _ = stream.write_all(&startup[..startup.len() / 2]).await;
            } else {
                // A full session, then half a message, then silence.
                complete_startup(&mut stream, &database).await?;
                let q = query("SELECT 1");
                let _ = stream.write_all(&q[..q.len() - 3]).await;
            }
            stalled.push(stream);
        }
        for _ in 0..5 {
            check_new_session(&target, &database).await?;
        }
        drop(stalled);
        check_new_session(&target, &database).await
    });
    if let Err(e) = result {
        panic!("{e}\nserver log (tail):\n{}", target.log_tail());
    }
}

/// Reads one backend message: its type byte and body.
async fn read_message(stream: &mut TcpStream) -> Result<(u8, Vec<u8>), String> {
    let read = async {
        let mut header = [0u8; 5];
        stream.read_exact(&mut header).await?;
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if !(4..=1 << 24).contains(&len) {
            return Err(std::io::Error::other(format!("bad length {len}")));
        }
        let mut body = vec![0u8; len as usize - 4];
        stream.read_exact(&mut body).await?;
        Ok((header[0], body))
    };
    tokio::time::timeout(CALL_TIMEOUT, read)
        .await
        .map_err(|_| "read timed out".to_string())?
        .map_err(|e| format!("read: {e}"))
}

/// Sends a simple query and returns every message up to and including ReadyForQuery.
async fn simple_exchange(stream: &mut TcpStream, sql: &str) -> Result<Vec<(u8, Vec<u8>)>, String> {
    stream
        .write_all(&query(sql))
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut messages = Vec::new();
    loop {
        let message = read_message(stream).await?;
        let done = message.0 == b'Z';
        messages.push(message);
        if done {
            return Ok(messages);
        }
    }
}

/// The fields of an ErrorResponse body, by field type byte.
fn error_fields(body: &[u8]) -> Vec<(u8, String)> {
    body.split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).to_string()))
        .collect()
}

#[test]
fn startup_handshake_and_transaction_status() {
    // Well-formed protocol details drivers rely on: SSLRequest answered 'N' on the same
    // connection, the ParameterStatus set, BackendKeyData, ReadyForQuery's I/T/E status,
    // and ErrorResponse's SQLSTATE, message and position fields.
    let target = common::shared_target(URL_VAR).unwrap_or_else(|e| panic!("{e}"));
    let addr = target.sql_addr().unwrap_or_else(|e| panic!("{e}"));
    let database = target.default_database();
    let result: Result<(), String> = runtime().block_on(async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(&packet(&SSL_REQUEST.to_be_bytes()))
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut answer = [0u8; 1];
        tokio::time::timeout(CALL_TIMEOUT, stream.read_exact(&mut answer))
            .await
            .map_err(|_| "SSLRequest: no answer".to_string())?
            .map_err(|e| format!("SSLRequest: {e}"))?;
        if answer[0] != b'N' {
            return Err(format!(
                "SSLRequest answered {:?}, want 'N'",
                answer[0] as char
            ));
        }
        stream
            .write_all(&common::startup_message(common::DEFAULT_USER, &database))
            .await
            .map_err(|e| format!("write startup: {e}"))?;
        let mut parameters = Vec::new();
        let mut key_data = false;
        loop {
            let (tag, body) = read_message(&mut stream).await?;
            match tag {
                b'R' if body.starts_with(&[0, 0, 0, 0]) => {}
                b'R' => return Err(format!("authentication request {body:?} in trust mode")),
                b'S' => {
                    let name = body.split(|b| *b == 0).next().unwrap_or_default();
                    parameters.push(String::from_utf8_lossy(name).to_string());
                }
                b'K' => key_data = body.len() == 8,
                b'N' => {}
                b'Z' => {
                    if body != [b'I'] {
                        return Err(format!("first ReadyForQuery status {body:?}, want I"));
                    }
                    break;
                }
                other => return Err(format!("unexpected message {:?} in startup", other as char)),
            }
        }
        if !key_data {
            return Err("no BackendKeyData (needed for CancelRequest)".to_string());
        }
        for wanted in [
            "server_version",
            "server_encoding",
            "client_encoding",
            "DateStyle",
            "integer_datetimes",
            "standard_conforming_strings",
            "TimeZone",
            "application_name",
        ] {
            if !parameters.iter().any(|p| p == wanted) {
                return Err(format!("no ParameterStatus {wanted}; got {parameters:?}"));
            }
        }

        // ReadyForQuery status through a transaction: I, T, E, then I again.
        let status = |messages: &[(u8, Vec<u8>)]| messages.last().map(|(_, body)| body.clone());
        for (sql, want) in [
            ("SELECT 1", b'I'),
            ("BEGIN", b'T'),
            ("SELECT 1", b'T'),
            ("SELECT 1/0", b'E'),
            ("SELECT 1", b'E'),
            ("ROLLBACK", b'I'),
        ] {
            let messages = simple_exchange(&mut stream, sql).await?;
            if status(&messages) != Some(vec![want]) {
                return Err(format!(
                    "after {sql:?}: ReadyForQuery {:?}, want {:?}",
                    status(&messages),
                    want as char
                ));
            }
        }

        // A syntax error carries severity, SQLSTATE 42601, a message and a position.
        let messages = simple_exchange(&mut stream, "SELECT 1 FROM WHERE").await?;
        let (_, body) = messages
            .iter()
            .find(|(tag, _)| *tag == b'E')
            .ok_or("syntax error without ErrorResponse")?;
        let fields = error_fields(body);
        let field = |t: u8| fields.iter().find(|(f, _)| *f == t).map(|(_, v)| v.clone());
        if field(b'C').as_deref() != Some("42601") {
            return Err(format!("syntax error fields {fields:?}, want C=42601"));
        }
        if field(b'S').is_none() || field(b'M').is_none() {
            return Err(format!("error without severity or message: {fields:?}"));
        }
        match field(b'P').and_then(|p| p.parse::<usize>().ok()) {
            Some(p) if (1..=19).contains(&p) => {}
            _ => {
                return Err(format!(
                    "syntax error without a position in 1..=19: {fields:?}"
                ))
            }
        }

        // An empty query string: EmptyQueryResponse, then ReadyForQuery.
        let messages = simple_exchange(&mut stream, "").await?;
        if messages.first().map(|(tag, _)| *tag) != Some(b'I') {
            return Err(format!(
                "empty query answered {:?}, want EmptyQueryResponse",
                messages.iter().map(|(t, _)| *t as char).collect::<String>()
            ));
        }
        let _ = stream.write_all(&message(b'X', &[])).await;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\nserver log (tail):\n{}", target.log_tail());
    }
}
