//! The PostgreSQL wire protocol (3.0) on glommio sockets. The `pgwire` crate decodes and
//! encodes messages; this file owns the connection state machine: SSLRequest ('N' until TLS
//! exists), startup, trust authentication, simple and extended query, cancel, terminate.
//!
//! Anything malformed a client sends is an error for that connection only (08P01, then
//! close): nothing here panics on input.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use pgwire::messages::data::{FieldDescription, ParameterDescription, RowDescription};
use pgwire::messages::response::{ReadyForQuery, SslResponse, TransactionStatus};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus, SecretKey};
use pgwire::messages::{
    DecodeContext, Message, PgWireFrontendMessage, ProtocolVersion, SslNegotiationMetaMessage,
};

use crate::error::{Error, ErrorKind, Result};
use crate::kv::keys::DatumRef;
use crate::node::CoreCtx;
use crate::sql::copy::{self, CopyDecoder, CopySpec};
use crate::sql::session::{BindParams, Column, Outcome, PointRow, Session};
use crate::sql::types::{Datum, SqlType};

/// Accepts SQL connections on this core until the task is cancelled (at shutdown).
///
/// The accept is never raced against a timer: dropping an io_uring accept that already
/// completed would leak the accepted socket and leave its client hanging forever.
pub async fn listen(ctx: Rc<CoreCtx>, addr: SocketAddr) {
    let listener = match chitin_net::listen::bind_listener(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("core {}: cannot listen on {addr}: {e}", ctx.core);
            ctx.shared.shutdown.store(true, Ordering::SeqCst);
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("core {}: accept failed: {e}", ctx.core);
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if ctx.shared.shutdown.load(Ordering::SeqCst) {
            // Dropping the stream refuses the connection.
            continue;
        }
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        ctx.active_sessions.set(ctx.active_sessions.get() + 1);
        glommio::spawn_local(async move {
            ctx.metrics().connections.fetch_add(1, Ordering::Relaxed);
            // A bug reachable from one connection must not take the core down with it: a
            // panic ends that connection only.
            // The connection's session time zone travels with its task (see
            // `sql::time_zone::scoped`).
            let served = futures_lite::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                crate::sql::time_zone::scoped("UTC", serve(ctx.clone(), stream)),
            ))
            .await;
            if served.is_err() {
                eprintln!(
                    "core {}: a session panicked; its connection was closed",
                    ctx.core
                );
            }
            ctx.metrics().connections.fetch_sub(1, Ordering::Relaxed);
            ctx.active_sessions.set(ctx.active_sessions.get() - 1);
        })
        .detach();
    }
}

/// Buffered connection: input bytes, output bytes, decode state.
struct Conn {
    stream: TcpStream,
    inbuf: BytesMut,
    out: BytesMut,
    dctx: DecodeContext,
    /// One encoded column value at a time, reused across rows.
    scratch: Vec<u8>,
    /// The last Bind, decoded into reused buffers.
    bind: BindMessage,
    /// The portal name of the last Execute.
    execute_portal: String,
    /// The point-lookup fast path's result and its scratch.
    point: PointRow,
    value_starts: Vec<usize>,
}

/// A frontend message: the hot extended-protocol ones (Bind, Execute, Sync) are decoded
/// here into reused buffers, everything else by the `pgwire` codec.
enum Msg {
    Codec(PgWireFrontendMessage),
    /// Its contents are in [`Conn::bind`].
    Bind,
    /// The portal name is in [`Conn::execute_portal`].
    Execute {
        max_rows: i32,
    },
    Sync,
}

/// A Bind message's fields, as spans of its body (`raw`). PERF: decoding one reuses these
/// buffers, so a warm connection binds without allocating.
#[derive(Default)]
struct BindMessage {
    raw: Vec<u8>,
    portal: (usize, usize),
    statement: (usize, usize),
    param_formats: Vec<i16>,
    params: Vec<Option<(usize, usize)>>,
    result_formats: Vec<i16>,
}

/// Largest message accepted (PostgreSQL's limit for most messages is 1 GiB too).
const MAX_MESSAGE_LEN: usize = 1 << 30;

impl BindMessage {
    /// Decodes a Bind body: portal, statement, parameter formats, parameters, result
    /// formats. Every count and length is checked against the body.
    fn decode(&mut self, body: &[u8]) -> Result<()> {
        let bad = || Error::protocol("invalid message: malformed Bind");
        self.raw.clear();
        self.raw.extend_from_slice(body);
        self.param_formats.clear();
        self.params.clear();
        self.result_formats.clear();
        let b = &self.raw[..];
        let mut pos = 0usize;
        let cstr = |pos: &mut usize| -> Result<(usize, usize)> {
            let end = *pos + b[*pos..].iter().position(|&c| c == 0).ok_or_else(bad)?;
            let span = (*pos, end);
            *pos = end + 1;
            Ok(span)
        };
        let i16_at = |pos: &mut usize| -> Result<i16> {
            let v = b.get(*pos..*pos + 2).ok_or_else(bad)?;
            *pos += 2;
            Ok(i16::from_be_bytes([v[0], v[1]]))
        };
        self.portal = cstr(&mut pos)?;
        self.statement = cstr(&mut pos)?;
        let n = i16_at(&mut pos)?;
        for _ in 0..n.max(0) {
            self.param_formats.push(i16_at(&mut pos)?);
        }
        let n = i16_at(&mut pos)?;
        for _ in 0..n.max(0) {
            let v = b.get(pos..pos + 4).ok_or_else(bad)?;
            let len = i32::from_be_bytes([v[0], v[1], v[2], v[3]]);
            pos += 4;
            if len < 0 {
                self.params.push(None);
            } else {
                let end = pos.checked_add(len as usize).filter(|&e| e <= b.len());
                let end = end.ok_or_else(bad)?;
                self.params.push(Some((pos, end)));
                pos = end;
            }
        }
        let n = i16_at(&mut pos)?;
        for _ in 0..n.max(0) {
            self.result_formats.push(i16_at(&mut pos)?);
        }
        if pos != b.len() {
            return Err(bad());
        }
        std::str::from_utf8(&b[self.portal.0..self.portal.1]).map_err(|_| bad())?;
        std::str::from_utf8(&b[self.statement.0..self.statement.1]).map_err(|_| bad())?;
        Ok(())
    }

    fn name(&self, span: (usize, usize)) -> &str {
        // Checked to be UTF-8 by `decode`.
        std::str::from_utf8(&self.raw[span.0..span.1]).unwrap_or("")
    }
}

impl Conn {
    /// Decodes a complete Bind, Execute or Sync at the head of the input. `Ok(None)` when
    /// the head is another message (the codec's) or still incomplete.
    /// PERF: the hot path of prepared statements; allocation-free on a warm connection.
    fn next_hot(&mut self) -> Result<Option<Msg>> {
        if self.dctx.awaiting_frontend_startup || self.inbuf.len() < 5 {
            return Ok(None);
        }
        let tag = self.inbuf[0];
        if !matches!(tag, b'B' | b'E' | b'S') {
            return Ok(None);
        }
        let len = i32::from_be_bytes([self.inbuf[1], self.inbuf[2], self.inbuf[3], self.inbuf[4]]);
        if len < 4 || len as usize > MAX_MESSAGE_LEN {
            self.inbuf.clear();
            return Err(Error::protocol("invalid message: bad length"));
        }
        let total = 1 + len as usize;
        if self.inbuf.len() < total {
            return Ok(None);
        }
        let body = &self.inbuf[5..total];
        let msg = match tag {
            b'B' => {
                self.bind.decode(body)?;
                Msg::Bind
            }
            b'E' => {
                let bad = || Error::protocol("invalid message: malformed Execute");
                let end = body.iter().position(|&c| c == 0).ok_or_else(bad)?;
                let name = std::str::from_utf8(&body[..end]).map_err(|_| bad())?;
                let rest = &body[end + 1..];
                if rest.len() != 4 {
                    return Err(bad());
                }
                self.execute_portal.clear();
                self.execute_portal.push_str(name);
                Msg::Execute {
                    max_rows: i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
                }
            }
            _ => {
                if !body.is_empty() {
                    return Err(Error::protocol("invalid message: malformed Sync"));
                }
                Msg::Sync
            }
        };
        bytes::Buf::advance(&mut self.inbuf, total);
        Ok(Some(msg))
    }

    /// Reads the next frontend message; `None` at EOF.
    async fn next(&mut self) -> Result<Option<Msg>> {
        loop {
            if let Some(m) = self.next_hot()? {
                return Ok(Some(m));
            }
            // The codec trusts counts inside messages and can panic on lying ones; a
            // malformed message must only cost its own connection, so contain that here.
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                PgWireFrontendMessage::decode(&mut self.inbuf, &self.dctx)
            }));
            match decoded {
                Ok(Ok(Some(m))) => return Ok(Some(Msg::Codec(m))),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return Err(Error::protocol(format!("invalid message: {e}"))),
                Err(_) => {
                    self.inbuf.clear();
                    return Err(Error::protocol("invalid message: malformed contents"));
                }
            }
            self.flush().await?;
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.inbuf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn flush(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    fn send<M: Message>(&mut self, m: &M) {
        if let Err(e) = m.encode(&mut self.out) {
            // Only possible for oversized messages we built; report it instead.
            self.error(&Error::internal(format!("cannot encode message: {e}")));
        }
    }

    fn error(&mut self, e: &Error) {
        let mut fields = vec![
            (b'S', "ERROR".to_string()),
            (b'V', "ERROR".to_string()),
            (b'C', e.sqlstate().to_string()),
            (b'M', e.message.clone()),
        ];
        if let Some(d) = &e.detail {
            fields.push((b'D', d.clone()));
        }
        if let Some(h) = &e.hint {
            fields.push((b'H', h.clone()));
        }
        if let Some(p) = e.position {
            fields.push((b'P', p.to_string()));
        }
        let _ = pgwire::messages::response::ErrorResponse::new(fields).encode(&mut self.out);
    }

    fn ready(&mut self, status: TransactionStatus) {
        self.send(&ReadyForQuery::new(status));
    }

    fn command_complete(&mut self, tag: &str) {
        self.send(&pgwire::messages::response::CommandComplete::new(
            tag.to_string(),
        ));
    }

    fn row_description(&mut self, cols: &[Column], formats: &[i16]) {
        let fields = cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                FieldDescription::new(
                    c.name.clone(),
                    0,
                    0,
                    c.ty.oid(),
                    c.ty.type_size(),
                    -1,
                    format_for(formats, i),
                )
            })
            .collect();
        self.send(&RowDescription::new(fields));
    }

    /// Encodes what the point-lookup fast path found: its row (if any) straight from the
    /// stored bytes, then CommandComplete. PERF: allocation-free on a warm connection.
    fn point_row(&mut self) -> Result<()> {
        let Some(lookup) = self.point.lookup.take() else {
            return Err(Error::internal("point lookup without a plan"));
        };
        let found = self.point.row.is_some();
        if let Some(row) = &self.point.row {
            let out = &mut self.out;
            let scratch = &mut self.scratch;
            let formats = &self.point.formats;
            out.put_u8(b'D');
            let len_at = out.len();
            out.put_i32(0);
            out.put_i16(lookup.width() as i16);
            let mut i = 0;
            lookup.for_each_output(row, &mut self.value_starts, |ty, v| {
                let binary = format_for(formats, i) == 1;
                i += 1;
                match v {
                    DatumRef::Fixed(Datum::Null) => out.put_i32(-1),
                    DatumRef::Text(t) => {
                        out.put_i32(t.len() as i32);
                        out.put_slice(t.as_bytes());
                    }
                    DatumRef::Bytes(b) if binary => {
                        out.put_i32(b.len() as i32);
                        out.put_slice(b);
                    }
                    DatumRef::Bytes(b) => {
                        out.put_i32(2 + 2 * b.len() as i32);
                        out.put_slice(b"\\x");
                        for byte in b {
                            const HEX: &[u8; 16] = b"0123456789abcdef";
                            out.put_u8(HEX[(byte >> 4) as usize]);
                            out.put_u8(HEX[(byte & 15) as usize]);
                        }
                    }
                    DatumRef::Fixed(d) => {
                        scratch.clear();
                        if binary {
                            d.to_binary(ty, scratch)?;
                        } else {
                            d.write_text(ty, scratch);
                        }
                        out.put_i32(scratch.len() as i32);
                        out.put_slice(scratch);
                    }
                }
                Ok(())
            })?;
            let len = (out.len() - len_at) as i32;
            out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        }
        self.point.row = None;
        let tag: &[u8] = if found { b"SELECT 1\0" } else { b"SELECT 0\0" };
        self.out.put_u8(b'C');
        self.out.put_i32(4 + tag.len() as i32);
        self.out.put_slice(tag);
        Ok(())
    }

    /// PERF: rows are encoded straight into the output buffer, no DataRow allocation.
    fn data_row(&mut self, row: &[Datum], cols: &[Column], formats: &[i16]) -> Result<()> {
        let out = &mut self.out;
        let scratch = &mut self.scratch;
        out.put_u8(b'D');
        let len_at = out.len();
        out.put_i32(0);
        out.put_i16(row.len() as i16);
        for (i, d) in row.iter().enumerate() {
            if d.is_null() {
                out.put_i32(-1);
                continue;
            }
            let ty = cols.get(i).map(|c| c.ty).unwrap_or(SqlType::Text);
            scratch.clear();
            if format_for(formats, i) == 1 {
                d.to_binary(ty, scratch)?;
            } else {
                d.write_text(ty, scratch);
            }
            out.put_i32(scratch.len() as i32);
            out.put_slice(scratch);
        }
        let len = (out.len() - len_at) as i32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

fn format_for(formats: &[i16], i: usize) -> i16 {
    match formats.len() {
        0 => 0,
        1 => formats[0],
        _ => formats.get(i).copied().unwrap_or(0),
    }
}

fn status(s: &Session) -> TransactionStatus {
    match s.txn_status() {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    }
}

async fn serve(ctx: Rc<CoreCtx>, mut stream: TcpStream) -> Result<()> {
    // Every pgwire connection opens with at least 8 bytes (SSLRequest, GSSENCRequest,
    // CancelRequest, StartupMessage); the node transport opens with its 8-byte magic.
    let mut first = [0u8; 8];
    if stream.read_exact(&mut first).await.is_err() {
        return Ok(());
    }
    if chitin_net::Handshake::is_magic(&first) {
        crate::node::cluster::accept_transport(&ctx, stream, first).await;
        return Ok(());
    }
    let mut conn = Conn {
        stream,
        inbuf: BytesMut::with_capacity(8192),
        out: BytesMut::with_capacity(8192),
        dctx: DecodeContext::new(ProtocolVersion::PROTOCOL3_0),
        scratch: Vec::new(),
        bind: BindMessage::default(),
        execute_portal: String::new(),
        point: PointRow::default(),
        value_starts: Vec::new(),
    };
    conn.inbuf.extend_from_slice(&first);
    // --- Startup ---
    let params = loop {
        let msg = match conn.next().await {
            Ok(Some(Msg::Codec(m))) => m,
            Ok(Some(_)) => {
                let e = Error::protocol("expected a startup message");
                conn.error(&e);
                conn.flush().await?;
                return Ok(());
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                conn.error(&e);
                let _ = conn.flush().await;
                return Err(e);
            }
        };
        match msg {
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresSsl(_))
            | PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresGss(_)) => {
                conn.send(&SslResponse::Refuse);
                conn.flush().await?;
                conn.dctx.awaiting_frontend_ssl = false;
            }
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::None) => {
                conn.dctx.awaiting_frontend_ssl = false;
            }
            PgWireFrontendMessage::CancelRequest(c) => {
                let secret = match &c.secret_key {
                    SecretKey::I32(s) => *s,
                    SecretKey::Bytes(b) if b.len() == 4 => {
                        i32::from_be_bytes([b[0], b[1], b[2], b[3]])
                    }
                    _ => return Ok(()),
                };
                let flag = ctx
                    .shared
                    .cancels
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&(c.pid, secret)).cloned());
                if let Some(f) = flag {
                    f.store(true, Ordering::SeqCst);
                }
                return Ok(());
            }
            PgWireFrontendMessage::Startup(s) => {
                if s.protocol_number_major != 3 {
                    let e = Error::new(
                        ErrorKind::FeatureNotSupported,
                        format!(
                            "unsupported frontend protocol {}.{}",
                            s.protocol_number_major, s.protocol_number_minor
                        ),
                    );
                    conn.error(&e);
                    conn.flush().await?;
                    return Ok(());
                }
                conn.dctx.awaiting_frontend_ssl = false;
                conn.dctx.awaiting_frontend_startup = false;
                break s.parameters;
            }
            _ => {
                let e = Error::protocol("expected a startup message");
                conn.error(&e);
                conn.flush().await?;
                return Ok(());
            }
        }
    };
    if !ctx.shared.ready.load(Ordering::SeqCst) {
        conn.error(&Error::new(
            ErrorKind::AdminShutdown,
            "the node is starting up; retry shortly",
        ));
        conn.flush().await?;
        return Ok(());
    }
    if ctx.shared.draining.load(Ordering::SeqCst) {
        conn.error(&Error::new(
            ErrorKind::AdminShutdown,
            "the node is draining and accepts no new connections; connect to another node",
        ));
        conn.flush().await?;
        return Ok(());
    }
    let user = params.get("user").cloned().unwrap_or_else(|| "root".into());
    let database = params
        .get("database")
        .cloned()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "defaultdb".into());
    let pid =
        ctx.shared.next_backend.fetch_add(1, Ordering::Relaxed) as i32 | ((ctx.core as i32) << 24);
    let secret = (ctx.shared.hlc.now().wall as i32) ^ 0x5bd1_e995u32 as i32;
    let cancel = Arc::new(AtomicBool::new(false));
    if let Ok(mut m) = ctx.shared.cancels.lock() {
        m.insert((pid, secret), cancel.clone());
    }
    let result = async {
        let mut session =
            match Session::new(ctx.clone(), &user, &database, &params, cancel.clone()).await {
                Ok(s) => s,
                Err(e) => {
                    conn.error(&e);
                    conn.flush().await?;
                    return Ok(());
                }
            };
        conn.send(&Authentication::Ok);
        for (k, v) in session.startup_parameters() {
            conn.send(&ParameterStatus::new(k, v));
        }
        conn.send(&BackendKeyData::new(pid, SecretKey::I32(secret)));
        conn.ready(TransactionStatus::Idle);
        conn.flush().await?;
        let r = session_loop(&mut conn, &mut session).await;
        session.close_transaction();
        r
    }
    .await;
    if let Ok(mut m) = ctx.shared.cancels.lock() {
        m.remove(&(pid, secret));
    }
    if let Err(e) = &result {
        if e.kind == ErrorKind::Protocol {
            conn.error(e);
            let _ = conn.flush().await;
        }
    }
    result
}

async fn session_loop(conn: &mut Conn, session: &mut Session) -> Result<()> {
    // After an error in the extended protocol, messages are skipped until Sync.
    let mut skipping = false;
    loop {
        if session.ctx.shared.shutdown.load(Ordering::SeqCst) {
            conn.error(&Error::new(
                ErrorKind::AdminShutdown,
                "the server is shutting down",
            ));
            conn.flush().await?;
            return Ok(());
        }
        let msg = match conn.next().await? {
            Some(m) => m,
            None => return Ok(()),
        };
        let extended = match &msg {
            Msg::Codec(m) => m.is_extended_query() && !matches!(m, PgWireFrontendMessage::Sync(_)),
            Msg::Bind | Msg::Execute { .. } => true,
            Msg::Sync => false,
        };
        if skipping && extended {
            continue;
        }
        let msg = match msg {
            Msg::Bind => {
                let b = &conn.bind;
                let params = BindParams {
                    raw: &b.raw,
                    spans: &b.params,
                };
                let bound = session.bind(
                    b.name(b.portal),
                    b.name(b.statement),
                    &params,
                    &b.param_formats,
                    &b.result_formats,
                );
                match bound {
                    Ok(()) => conn.send(&pgwire::messages::extendedquery::BindComplete::new()),
                    Err(e) => {
                        conn.error(&e);
                        session.on_error();
                        skipping = true;
                    }
                }
                continue;
            }
            Msg::Execute { max_rows } => {
                let name = std::mem::take(&mut conn.execute_portal);
                let r = execute(conn, session, &name, max_rows).await;
                conn.execute_portal = name;
                if !r? {
                    skipping = true;
                }
                continue;
            }
            Msg::Sync => {
                skipping = false;
                session.sync().await;
                let st = status(session);
                conn.ready(st);
                conn.flush().await?;
                continue;
            }
            Msg::Codec(m) => m,
        };
        match msg {
            PgWireFrontendMessage::Query(q) => {
                simple_query(conn, session, &q.query).await?;
                let st = status(session);
                conn.ready(st);
                conn.flush().await?;
            }
            PgWireFrontendMessage::Parse(p) => {
                let name = p.name.unwrap_or_default();
                match session.parse_prepared(&name, &p.query, &p.type_oids).await {
                    Ok(()) => conn.send(&pgwire::messages::extendedquery::ParseComplete::new()),
                    Err(e) => {
                        conn.error(&e);
                        session.on_error();
                        skipping = true;
                    }
                }
            }
            PgWireFrontendMessage::Describe(d) => {
                let name = d.name.unwrap_or_default();
                let described = if d.target_type == b'S' {
                    session.describe_statement(&name).map(|(params, cols)| {
                        conn.send(&ParameterDescription::new(
                            params.iter().map(|t| t.oid()).collect(),
                        ));
                        (cols, Vec::new())
                    })
                } else {
                    session.describe_portal(&name)
                };
                match described {
                    Ok((Some(cols), formats)) => conn.row_description(&cols, &formats),
                    Ok((None, _)) => conn.send(&pgwire::messages::data::NoData::new()),
                    Err(e) => {
                        conn.error(&e);
                        session.on_error();
                        skipping = true;
                    }
                }
            }
            PgWireFrontendMessage::Bind(_)
            | PgWireFrontendMessage::Execute(_)
            | PgWireFrontendMessage::Sync(_) => {
                // Decoded by `Conn::next_hot`; the codec never sees them.
                return Err(Error::protocol("unexpected message"));
            }
            PgWireFrontendMessage::Flush(_) => conn.flush().await?,
            PgWireFrontendMessage::Close(c) => {
                let name = c.name.unwrap_or_default();
                session.close(c.target_type, &name);
                conn.send(&pgwire::messages::extendedquery::CloseComplete::new());
            }
            PgWireFrontendMessage::Terminate(_) => return Ok(()),
            PgWireFrontendMessage::CopyData(_)
            | PgWireFrontendMessage::CopyDone(_)
            | PgWireFrontendMessage::CopyFail(_) => {
                // No COPY in progress: ignore, as PostgreSQL does outside COPY.
            }
            _ => return Err(Error::protocol("unexpected message")),
        }
    }
}

/// Runs Execute on portal `name`: through the point-lookup fast path when it can take it,
/// else the general path. False when an error was sent (the caller then skips to Sync).
async fn execute(
    conn: &mut Conn,
    session: &mut Session,
    name: &str,
    max_rows: i32,
) -> Result<bool> {
    if session.execute_point(name, &mut conn.point).await.is_some() {
        if let Err(e) = conn.point_row() {
            conn.error(&e);
            return Ok(false);
        }
        return Ok(true);
    }
    let max_rows = if max_rows <= 0 {
        usize::MAX
    } else {
        max_rows as usize
    };
    let ok = match session.execute_portal(name, max_rows).await {
        Ok((outcome, cols, formats)) => match send_outcome(conn, outcome, &cols, &formats, false) {
            Ok(()) => true,
            Err(e) => {
                conn.error(&e);
                false
            }
        },
        Err(e) => {
            conn.error(&e);
            session.on_error();
            false
        }
    };
    if conn.out.len() > 64 * 1024 {
        conn.flush().await?;
    }
    Ok(ok)
}

fn send_outcome(
    conn: &mut Conn,
    outcome: Outcome,
    cols: &Option<Vec<Column>>,
    formats: &[i16],
    describe: bool,
) -> Result<()> {
    match outcome {
        Outcome::Rows {
            rows,
            tag,
            suspended,
        } => {
            let cols = cols.as_deref().unwrap_or(&[]);
            if describe {
                conn.row_description(cols, formats);
            }
            for r in &rows {
                conn.data_row(r, cols, formats)?;
            }
            if suspended {
                conn.send(&pgwire::messages::extendedquery::PortalSuspended::new());
            } else {
                conn.command_complete(&tag);
            }
        }
        Outcome::Command(tag) => conn.command_complete(&tag),
        Outcome::Empty => conn.send(&pgwire::messages::response::EmptyQueryResponse::new()),
    }
    Ok(())
}

async fn simple_query(conn: &mut Conn, session: &mut Session, sql: &str) -> Result<()> {
    if copy::is_copy(sql) {
        return copy_statement(conn, session, sql).await;
    }
    let stmts = match session.parse_sql(sql) {
        Ok(s) => s,
        Err(e) => {
            conn.error(&e);
            session.on_error();
            return Ok(());
        }
    };
    if stmts.is_empty() {
        conn.send(&pgwire::messages::response::EmptyQueryResponse::new());
        return Ok(());
    }
    let multi = stmts.len() > 1;
    if multi {
        session.begin_batch();
    }
    let mut ok = true;
    for stmt in stmts {
        match session.execute_simple(stmt, multi).await {
            Ok((outcome, cols)) => {
                // A FETCH from a BINARY cursor sends binary rows.
                let formats: &[i16] = if session.take_binary_result() {
                    &[1]
                } else {
                    &[]
                };
                send_outcome(conn, outcome, &cols, formats, true)?;
            }
            Err(e) => {
                conn.error(&e);
                session.on_error();
                ok = false;
                break;
            }
        }
        if conn.out.len() > 64 * 1024 {
            conn.flush().await?;
        }
    }
    if multi {
        if let Err(e) = session.end_batch(ok).await {
            conn.error(&e);
        }
    }
    Ok(())
}

/// `COPY … FROM STDIN` / `COPY … TO STDOUT` from a simple Query: the copy sub-protocol.
/// Errors go to the client at once (ErrorResponse, then ReadyForQuery from the caller);
/// CopyData still arriving after that is ignored by the session loop, as PostgreSQL does.
async fn copy_statement(conn: &mut Conn, session: &mut Session, sql: &str) -> Result<()> {
    let spec = match copy::parse(sql) {
        Ok(s) => s,
        Err(e) => {
            conn.error(&e);
            session.on_error();
            return Ok(());
        }
    };
    let r = if spec.from {
        copy_in(conn, session, &spec).await?
    } else {
        copy_out(conn, session, &spec).await
    };
    match r {
        Ok(n) => conn.command_complete(&format!("COPY {n}")),
        Err(e) => {
            conn.error(&e);
            session.on_error();
        }
    }
    Ok(())
}

/// Receives CopyData until CopyDone, inserting rows in batches. The outer error is the
/// connection's (EOF, socket), the inner one the statement's.
async fn copy_in(conn: &mut Conn, session: &mut Session, spec: &CopySpec) -> Result<Result<u64>> {
    let ncols = match session.copy_in_start(spec).await {
        Ok(n) => n,
        Err(e) => return Ok(Err(e)),
    };
    conn.send(&pgwire::messages::copy::CopyInResponse::new(
        0,
        ncols as i16,
        vec![0; ncols],
    ));
    conn.flush().await?;
    let mut decoder = CopyDecoder::new(spec);
    let mut rows = Vec::new();
    let mut total = 0u64;
    loop {
        let Some(msg) = conn.next().await? else {
            return Err(Error::protocol("connection closed during COPY"));
        };
        let done = match msg {
            Msg::Codec(PgWireFrontendMessage::CopyData(d)) => {
                if let Err(e) = decoder.feed(&d.data, &mut rows) {
                    return Ok(Err(e));
                }
                false
            }
            Msg::Codec(PgWireFrontendMessage::CopyDone(_)) => {
                if let Err(e) = decoder.finish(&mut rows) {
                    return Ok(Err(e));
                }
                true
            }
            Msg::Codec(PgWireFrontendMessage::CopyFail(f)) => {
                return Ok(Err(Error::new(
                    ErrorKind::QueryCanceled,
                    format!("COPY from stdin failed: {}", f.message),
                )));
            }
            // PostgreSQL ignores Flush and Sync during copy-in.
            Msg::Sync | Msg::Codec(PgWireFrontendMessage::Flush(_)) => false,
            _ => {
                return Ok(Err(Error::protocol(
                    "unexpected message type during COPY from stdin",
                )));
            }
        };
        if rows.len() >= copy::COPY_BATCH_ROWS || (done && !rows.is_empty()) {
            let end_line = decoder.line - u64::from(decoder.done);
            let first_line = end_line + 1 - rows.len() as u64;
            match session.copy_in_rows(spec, &rows, first_line).await {
                Ok(n) => total += n,
                Err(e) => return Ok(Err(e)),
            }
            rows.clear();
        }
        if done {
            return Ok(Ok(total));
        }
    }
}

/// Sends the rows of `COPY … TO STDOUT`: CopyOutResponse, a CopyData per row, CopyDone.
async fn copy_out(conn: &mut Conn, session: &mut Session, spec: &CopySpec) -> Result<u64> {
    let (rows, cols) = session.copy_out(spec).await?;
    let force: Vec<bool> = cols
        .iter()
        .map(|c| spec.force_quote.contains(&c.name))
        .collect();
    conn.send(&pgwire::messages::copy::CopyOutResponse::new(
        0,
        cols.len() as i16,
        vec![0; cols.len()],
    ));
    let mut line = Vec::new();
    if spec.header {
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        copy::encode_header(spec, &names, &mut line);
        conn.send(&pgwire::messages::copy::CopyData::new(line.clone().into()));
    }
    for r in &rows {
        let texts: Vec<Option<String>> =
            r.iter().zip(&cols).map(|(d, c)| d.to_text(c.ty)).collect();
        let fields: Vec<Option<&str>> = texts.iter().map(|t| t.as_deref()).collect();
        line.clear();
        copy::encode_row(spec, &fields, &force, &mut line);
        conn.send(&pgwire::messages::copy::CopyData::new(line.clone().into()));
        if conn.out.len() > 64 * 1024 {
            conn.flush().await?;
        }
    }
    conn.send(&pgwire::messages::copy::CopyDone::new());
    Ok(rows.len() as u64)
}
