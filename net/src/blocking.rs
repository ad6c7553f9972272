//! A blocking, one-request client of the node transport, for command-line tools and for
//! bootstrap calls made off the executors (`chitin init`, `chitin node status`, a node
//! probing its join list from a blocking thread).
//!
//! It dials `addr`, sends a handshake to node 0 ("whoever listens here", accepted by every
//! node) and the given core, waits for the ack, sends one `Request` and reads frames until
//! the matching `Response`. One connection per call: these are cold paths.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;

use crate::frame::{encode_frame, DEFAULT_MAX_FRAME, LENGTH_PREFIX};
use crate::wire::{frame::Body, Frame, Handshake, HandshakeAck, Request};
use crate::{CoreId, Endpoint, Error, NodeId, Result};

/// Calls `method` with `payload` on core `core` of the node listening at `addr`, as
/// `from` (node 0 for a tool), and returns the response payload. The whole call, connect
/// included, is bounded by `timeout`.
pub fn call(
    addr: SocketAddr,
    from: Endpoint,
    core: CoreId,
    method: u32,
    payload: &[u8],
    timeout: Duration,
) -> Result<Bytes> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(Error::Timeout)
    };
    let mut stream = TcpStream::connect_timeout(&addr, left()?)
        .map_err(|e| Error::Unavailable(format!("dial {addr}: {e}")))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(left()?))?;
    stream.set_write_timeout(Some(left()?))?;
    let hs = Handshake::new(0, from, Endpoint::new(NodeId(0), core));
    stream.write_all(&hs.encode())?;
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack)?;
    match HandshakeAck::from_byte(ack[0]) {
        Some(HandshakeAck::Accepted) => {}
        other => return Err(Error::Rejected(format!("{other:?}"))),
    }
    let frame = Frame {
        body: Some(Body::Request(Request {
            id: 1,
            method,
            payload: Bytes::copy_from_slice(payload),
        })),
    };
    let mut out = Vec::new();
    encode_frame(&frame, DEFAULT_MAX_FRAME, &mut out)?;
    stream.write_all(&out)?;
    loop {
        stream.set_read_timeout(Some(left()?))?;
        let mut prefix = [0u8; LENGTH_PREFIX];
        stream.read_exact(&mut prefix).map_err(timeout_or_io)?;
        let len = u32::from_le_bytes(prefix) as usize;
        if len > DEFAULT_MAX_FRAME {
            return Err(Error::FrameTooLarge {
                len: len as u64,
                max: DEFAULT_MAX_FRAME as u64,
            });
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).map_err(timeout_or_io)?;
        let frame = Frame::decode(Bytes::from(body))?;
        if let Some(Body::Response(r)) = frame.body {
            if r.id != 1 {
                continue;
            }
            return match r.error {
                Some(e) => Err(Error::Remote(e)),
                None => Ok(r.payload),
            };
        }
    }
}

fn timeout_or_io(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Error::Timeout,
        _ => Error::Io(e),
    }
}
