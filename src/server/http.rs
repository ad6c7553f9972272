//! HTTP on core 0: `GET /health`, `GET /health?ready=1`, `GET /_status/vars` (Prometheus).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::node::CoreCtx;

pub async fn listen(ctx: Rc<CoreCtx>, addr: SocketAddr) {
    let listener = match chitin_net::listen::bind_listener(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot serve HTTP on {addr}: {e}");
            return;
        }
    };
    // Runs until cancelled at shutdown; accepts are never raced against a timer (see
    // `pgwire::listen`).
    loop {
        if let Ok(stream) = listener.accept().await {
            let ctx = ctx.clone();
            glommio::spawn_local(async move {
                let _ = glommio::timer::timeout(Duration::from_secs(5), async {
                    let _ = serve(&ctx, stream).await;
                    Ok(())
                })
                .await;
            })
            .detach();
        }
    }
}

async fn serve(ctx: &CoreCtx, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let shutting_down = ctx.shared.shutdown.load(Ordering::SeqCst);
    let ready = ctx.shared.ready.load(Ordering::SeqCst)
        && !shutting_down
        && !ctx.shared.clock_unsafe.load(Ordering::SeqCst);
    let (code, ctype, body) = match (method, path) {
        ("GET", "/health") => {
            let want_ready = query
                .split('&')
                .any(|kv| kv == "ready=1" || kv == "ready=true");
            if want_ready && !ready {
                (503, "application/json", "{\"ready\": false}\n".to_string())
            } else {
                (200, "application/json", format!("{{\"ready\": {ready}}}\n"))
            }
        }
        ("GET", "/_status/vars") | ("GET", "/metrics") => (
            200,
            "text/plain; version=0.0.4",
            crate::metrics::render(&ctx.shared.metrics) + &clock_metrics(ctx),
        ),
        ("GET", "/") => (
            200,
            "text/plain",
            "Chitin node. See /health and /_status/vars.\n".into(),
        ),
        ("GET", _) => (404, "text/plain", "not found\n".into()),
        _ => (405, "text/plain", "method not allowed\n".into()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let resp = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.flush().await?;
    Ok(())
}

/// The clock offsets heartbeats measured (`node::clock`), as Prometheus lines.
fn clock_metrics(ctx: &CoreCtx) -> String {
    use std::fmt::Write;
    let mut out = String::from(
        "# HELP clock_offset_nanos Another node's clock minus this one's, as heartbeats measured it.\n# TYPE clock_offset_nanos gauge\n",
    );
    let readings = ctx
        .shared
        .clock
        .lock()
        .map(|m| m.readings())
        .unwrap_or_default();
    for (node, r) in readings {
        let _ = writeln!(
            out,
            "clock_offset_nanos{{node=\"{node}\"}} {}",
            r.offset_nanos
        );
    }
    let unsafe_now = ctx.shared.clock_unsafe.load(Ordering::Relaxed) as u8;
    let _ = write!(
        out,
        "# HELP clock_unsafe 1 while this node's clock is too far from most others' (it serves no SQL).\n# TYPE clock_unsafe gauge\nclock_unsafe {unsafe_now}\n"
    );
    out
}
