//! The README's run command uses the default store, `./chitin-data`: a path relative to the
//! working directory. The server must serve and recover from it exactly as from an absolute
//! path (an early build could not open its raft log through a relative path).

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, TempDir};

struct Server {
    child: Child,
    sql: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(cwd: &std::path::Path, sql: SocketAddr, http: SocketAddr) -> Server {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cwd.join("server.log"))
        .expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_chitin"))
        .current_dir(cwd)
        .args(["start-single-node", "--store", "chitin-data", "--insecure"])
        .arg("--listen-addr")
        .arg(sql.to_string())
        .arg("--http-addr")
        .arg(http.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .spawn()
        .expect("spawn chitin");
    Server { child, sql }
}

/// Starts a server in `cwd` with the relative default store and connects to it, retrying
/// with new ports if another process took them first.
async fn start(cwd: &std::path::Path) -> (Server, tokio_postgres::Client) {
    for _ in 0..3 {
        let sql: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut server = spawn(cwd, sql, http);
        let mut config = tokio_postgres::Config::new();
        config
            .host(server.sql.ip().to_string())
            .port(server.sql.port())
            .user("root")
            .dbname("defaultdb")
            .connect_timeout(Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(_)) = server.child.try_wait() {
                break; // exited early (port taken?): retry with new ports
            }
            if let Ok(c) = common::connect(&config).await {
                return (server, c);
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(cwd.join("server.log")).unwrap_or_default();
                panic!("chitin with a relative store did not come up; log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let log = std::fs::read_to_string(cwd.join("server.log")).unwrap_or_default();
    panic!("chitin with a relative store kept exiting; log:\n{log}");
}

#[test]
fn relative_default_store_serves_and_recovers() {
    let dir = TempDir::new("chitin-relative").expect("temp dir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (server, client) = start(dir.path()).await;
        client
            .batch_execute(
                "CREATE TABLE t (k INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a')",
            )
            .await
            .expect("write through a relative store");
        drop(client);
        drop(server); // SIGKILL
        assert!(
            dir.path().join("chitin-data").is_dir(),
            "store created in the working directory"
        );
        let (_server, client) = start(dir.path()).await;
        let rows = client
            .query("SELECT v FROM t WHERE k = 1", &[])
            .await
            .expect("read");
        assert_eq!(rows.len(), 1, "the acknowledged row survived kill -9");
        assert_eq!(rows[0].get::<_, String>(0), "a");
    });
}
