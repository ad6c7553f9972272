//! Shared harness for the integration tests: runs the built `chitin` binary as a real
//! process on 127.0.0.1 and hands out connection settings for it.
//!
//! A test either spawns its own server ([`TestServer::start`]) or, when the environment
//! names an existing server (`CHITIN_TEST_URL`, or a test's own variable such as
//! `CHITIN_SLT_URL`), runs against that instead ([`Target::from_env`]). The second form is
//! how the tests are validated against PostgreSQL itself, so nothing in a test may depend
//! on being able to kill or restart a server it did not start.
//!
//! Invariants the harness keeps:
//! - Every spawned server is killed (SIGKILL) and reaped by [`TestServer`]'s `Drop`, also
//!   when the test panics or times out, so no test leaves a process behind.
//! - Every temporary store is removed by [`TempDir`]'s `Drop`, after the server using it
//!   is gone (a [`TestServer`] that owns its store drops the process first) — unless the
//!   test panicked and `CHITIN_KEEP_FAILED` is set, for debugging a failure.
//! - Ports are chosen by binding port 0 and releasing it just before the spawn; another
//!   process could take the port in that window, which shows up as a readiness timeout
//!   with the server's log printed, not as a hang.
//!
//! Implementation caveats:
//! - Readiness is `GET /health?ready=1` answering 200, or else a pgwire connection that
//!   runs `SELECT 1`; whichever succeeds first. Both are polled until
//!   [`READY_TIMEOUT`].
//! - If the test process itself is killed (not panicking), `Drop` does not run and the
//!   server may outlive it.

#![allow(dead_code)]

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, Config, NoTls};

/// How long a freshly spawned server has to become ready. Generous: CI runs on two
/// cores next to other builds.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The start of the readiness error for a server process that exited by itself.
const EXITED_EARLY: &str = "chitin exited before becoming ready";

/// The user and database a fresh Chitin node serves.
pub const DEFAULT_USER: &str = "root";
pub const DEFAULT_DATABASE: &str = "defaultdb";

/// A directory under the system temp dir, removed with everything in it on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a new empty directory whose name starts with `prefix`.
    pub fn new(prefix: &str) -> io::Result<TempDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("{prefix}-{}-{nanos}-{n}", std::process::id()));
        fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A failing test's stores and logs are kept when asked (debugging a flake).
        if std::thread::panicking() && std::env::var_os("CHITIN_KEEP_FAILED").is_some() {
            eprintln!("kept {} (CHITIN_KEEP_FAILED)", self.path.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Returns a port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Options for spawning a server.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// `--cores N`; `None` leaves the server's default.
    pub cores: Option<usize>,
    /// Environment variables for the server (testing knobs such as
    /// `CHITIN_TESTING_SPLIT_STOP`).
    pub env: Vec<(String, String)>,
}

/// A `chitin start-single-node` process. Killed and reaped on drop.
pub struct TestServer {
    child: Option<Child>,
    /// The store and the log file, when this server owns them (removed after the kill).
    owned_dir: Option<TempDir>,
    store: PathBuf,
    log_path: PathBuf,
    pub sql_addr: SocketAddr,
    pub http_addr: SocketAddr,
}

impl TestServer {
    /// Spawns a server on a new temporary store and waits until it is ready.
    pub fn start(options: &ServerOptions) -> Result<TestServer, String> {
        let dir = TempDir::new("chitin-test").map_err(|e| format!("temp dir: {e}"))?;
        let store = dir.path().join("store");
        let log_path = dir.path().join("server.log");
        let mut server = Self::start_on(&store, &log_path, options)?;
        server.owned_dir = Some(dir);
        Ok(server)
    }

    /// Spawns a server on `store` (which may hold data from an earlier server) logging to
    /// `log_path` (appended to), and waits until it is ready. The caller owns both paths.
    ///
    /// A port taken by another process between [`free_port`] and the server's bind makes
    /// the server exit at once; that is retried with new ports, a few times.
    pub fn start_on(
        store: &Path,
        log_path: &Path,
        options: &ServerOptions,
    ) -> Result<TestServer, String> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut server = Self::spawn(store, log_path, options)?;
            match server.wait_ready(READY_TIMEOUT) {
                Ok(()) => return Ok(server),
                Err(e) if attempt < 3 && e.contains(EXITED_EARLY) && e.contains("in use") => {
                    server.kill();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Spawns a server on `store` without waiting for it to be ready (for example to kill
    /// it during recovery).
    pub fn spawn_unready(
        store: &Path,
        log_path: &Path,
        options: &ServerOptions,
    ) -> Result<TestServer, String> {
        Self::spawn(store, log_path, options)
    }

    fn spawn(store: &Path, log_path: &Path, options: &ServerOptions) -> Result<TestServer, String> {
        let sql_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut http_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        while http_addr == sql_addr {
            http_addr.set_port(free_port());
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| format!("open {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| format!("dup log: {e}"))?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_chitin"));
        command
            .arg("start-single-node")
            .arg("--store")
            .arg(store)
            .arg("--listen-addr")
            .arg(sql_addr.to_string())
            .arg("--http-addr")
            .arg(http_addr.to_string())
            .arg("--insecure");
        if let Some(cores) = options.cores {
            command.arg("--cores").arg(cores.to_string());
        }
        command.envs(options.env.iter().map(|(k, v)| (k, v)));
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", env!("CARGO_BIN_EXE_chitin")))?;
        Ok(TestServer {
            child: Some(child),
            owned_dir: None,
            store: store.to_path_buf(),
            log_path: log_path.to_path_buf(),
            sql_addr,
            http_addr,
        })
    }

    /// Polls readiness until `timeout`; fails early if the process exits.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "{EXITED_EARLY} ({status}); log:\n{}",
                        self.log_tail()
                    ));
                }
            }
            if http_ready(self.http_addr) || pg_ready(self.sql_addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "chitin not ready after {timeout:?} (sql {}, http {}); log:\n{}",
                    self.sql_addr,
                    self.http_addr,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The connection settings for `database` as user root.
    pub fn config(&self, database: &str) -> Config {
        let mut config = Config::new();
        config
            .host(self.sql_addr.ip().to_string())
            .port(self.sql_addr.port())
            .user(DEFAULT_USER)
            .dbname(database)
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// The `postgresql://` URL of `database`, for messages and external tools.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://{DEFAULT_USER}@{}/{database}", self.sql_addr)
    }

    pub fn store(&self) -> &Path {
        &self.store
    }

    /// Sends SIGKILL and reaps the process. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the running process.
    pub fn signal(&self, signal: i32) -> Result<(), String> {
        let child = self.child.as_ref().ok_or("the server is not running")?;
        let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet, so the
        // pid cannot have been reused by another process.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!(
                "kill({pid}, {signal}): {}",
                io::Error::last_os_error()
            ))
        }
    }

    /// Waits up to `timeout` for the process to exit by itself and reaps it. Returns its
    /// exit status, or `None` if it is still running (it is then left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, 60)
    }

    /// The CPU time (user + system) the running process has used so far.
    #[allow(dead_code)]
    pub fn cpu_time(&self) -> Result<Duration, String> {
        let child = self.child.as_ref().ok_or("the server is not running")?;
        let stat =
            fs::read_to_string(format!("/proc/{}/stat", child.id())).map_err(|e| e.to_string())?;
        // Fields after the command name (which may hold spaces): state is field 3, utime
        // and stime fields 14 and 15, in clock ticks.
        let rest = stat.rsplit_once(')').ok_or("bad /proc stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> Result<u64, String> {
            fields
                .get(i - 3)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| "bad /proc stat".to_string())
        };
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_millis((ticks(14)? + ticks(15)?) * 1000 / hz))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
        // `owned_dir` is dropped after this, once the process can no longer write to it.
    }
}

/// The last `lines` lines of the file at `path`, preceded by the first line of every
/// panic, stack overflow or fatal runtime error in it (at most 10), which a long backtrace
/// would push out of the tail.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let panics: Vec<&str> = all
                .iter()
                .copied()
                .filter(|l| {
                    l.contains("panicked at")
                        || l.contains("overflowed its stack")
                        || l.contains("fatal runtime error")
                })
                .take(10)
                .collect();
            let tail = all[all.len().saturating_sub(lines)..].join("\n");
            if panics.is_empty() {
                tail
            } else {
                format!(
                    "panics and fatal errors in the log:\n{}\n... last {lines} lines:\n{tail}",
                    panics.join("\n")
                )
            }
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}

/// Whether `GET /health?ready=1` answers 200.
pub fn http_ready(addr: SocketAddr) -> bool {
    let attempt = || -> io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        write!(
            stream,
            "GET /health?ready=1 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut head = [0u8; 64];
        let mut filled = 0;
        while filled < 12 {
            let n = stream.read(&mut head[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        let status = String::from_utf8_lossy(&head[..filled]);
        Ok(status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200"))
    };
    attempt().unwrap_or(false)
}

/// Whether a pgwire startup as root to defaultdb reaches ReadyForQuery. Plain blocking
/// I/O, so that readiness can be awaited from any context, async or not.
fn pg_ready(addr: SocketAddr) -> bool {
    let attempt = || -> io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(&startup_message(DEFAULT_USER, DEFAULT_DATABASE))?;
        loop {
            let mut header = [0u8; 5];
            stream.read_exact(&mut header)?;
            let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            if !(4..=1 << 20).contains(&len) {
                return Ok(false);
            }
            let mut body = vec![0u8; len as usize - 4];
            stream.read_exact(&mut body)?;
            match header[0] {
                // ReadyForQuery: the session is usable. Say goodbye politely.
                b'Z' => {
                    let _ = stream.write_all(&[b'X', 0, 0, 0, 4]);
                    return Ok(true);
                }
                // AuthenticationOk, ParameterStatus, BackendKeyData, NoticeResponse.
                b'R' if body.starts_with(&[0, 0, 0, 0]) => {}
                b'S' | b'K' | b'N' => {}
                // An error or an authentication request we cannot answer.
                _ => return Ok(false),
            }
        }
    };
    attempt().unwrap_or(false)
}

/// A protocol 3.0 StartupMessage for `user` and `database`.
pub fn startup_message(user: &str, database: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes());
    for (key, value) in [("user", user), ("database", database)] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    message
}

/// Connects without TLS and drives the connection on a spawned task.
pub async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        // A connection error ends the task; the client sees it on its next call.
        let _ = connection.await;
    });
    Ok(client)
}

/// The server a test talks to: one it spawned, or an existing one named by a URL.
pub enum Target {
    Spawned(TestServer),
    External(Config),
}

impl Target {
    /// Uses the server at `$var` if that variable holds a URL, else spawns one.
    pub fn from_env(var: &str, options: &ServerOptions) -> Result<Target, String> {
        match std::env::var(var) {
            Ok(url) if !url.trim().is_empty() => {
                let config: Config = url
                    .trim()
                    .parse()
                    .map_err(|e| format!("{var}={url}: {e}"))?;
                Ok(Target::External(config))
            }
            _ => TestServer::start(options).map(Target::Spawned),
        }
    }

    /// The connection settings for `database` (the URL's user and host, that database).
    pub fn config(&self, database: &str) -> Config {
        match self {
            Target::Spawned(server) => server.config(database),
            Target::External(config) => {
                let mut config = config.clone();
                config.dbname(database);
                if config.get_connect_timeout().is_none() {
                    config.connect_timeout(Duration::from_secs(10));
                }
                config
            }
        }
    }

    /// The database the target starts in: the URL's, or defaultdb.
    pub fn default_database(&self) -> String {
        match self {
            Target::External(config) => config.get_dbname().unwrap_or(DEFAULT_DATABASE).to_string(),
            Target::Spawned(_) => DEFAULT_DATABASE.to_string(),
        }
    }

    /// The SQL address, for tests that speak raw TCP. External URLs must name a TCP host.
    pub fn sql_addr(&self) -> Result<SocketAddr, String> {
        match self {
            Target::Spawned(server) => Ok(server.sql_addr),
            Target::External(config) => {
                use std::net::ToSocketAddrs;
                use tokio_postgres::config::Host;
                let host = match config.get_hosts().first() {
                    Some(Host::Tcp(host)) => host.clone(),
                    _ => return Err("the URL must name a TCP host".to_string()),
                };
                let port = config.get_ports().first().copied().unwrap_or(5432);
                (host.as_str(), port)
                    .to_socket_addrs()
                    .map_err(|e| format!("resolve {host}: {e}"))?
                    .next()
                    .ok_or_else(|| format!("{host} resolves to nothing"))
            }
        }
    }

    /// The spawned server's recent log, or nothing for an external server.
    pub fn log_tail(&self) -> String {
        match self {
            Target::Spawned(server) => server.log_tail(),
            Target::External(_) => String::new(),
        }
    }

    pub fn is_spawned(&self) -> bool {
        matches!(self, Target::Spawned(_))
    }
}

/// The server the tests of one test binary share: spawned (or taken from `$var`) by the
/// first test that asks, killed when the last test holding it drops its handle.
pub fn shared_target(var: &str) -> Result<Arc<Target>, String> {
    static SHARED: Mutex<Weak<Target>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(target) = shared.upgrade() {
        return Ok(target);
    }
    let target = Arc::new(Target::from_env(var, &ServerOptions::default())?);
    *shared = Arc::downgrade(&target);
    Ok(target)
}

/// Creates the database `name` on `target` (dropping any earlier one of that name) and
/// returns the settings to connect to it.
pub async fn fresh_database(target: &Target, name: &str) -> Result<Config, String> {
    let admin = connect(&target.config(&target.default_database()))
        .await
        .map_err(|e| format!("connect to {}: {e:?}", target.default_database()))?;
    let _ = admin
        .simple_query(&format!("DROP DATABASE IF EXISTS {name}"))
        .await;
    admin
        .simple_query(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(|e| format!("CREATE DATABASE {name}: {e:?}"))?;
    Ok(target.config(name))
}

/// The sum of every series of metric `name` in the server's `/_status/vars` (0 if absent).
/// The table rows the flows of an `EXPLAIN ANALYZE (DISTSQL)` read, summed over its
/// "ran on …: …, N rows read, …" lines.
pub fn flow_rows_read(lines: &[String]) -> u64 {
    lines
        .iter()
        .filter(|l| l.starts_with("ran on "))
        .map(|l| {
            l.split(", ")
                .find_map(|p| p.strip_suffix(" rows read"))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no rows read in {l}"))
        })
        .sum()
}

pub fn status_var(http: SocketAddr, name: &str) -> u64 {
    let mut s = TcpStream::connect(http).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /_status/vars HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
