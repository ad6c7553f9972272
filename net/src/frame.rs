//! Length-prefixed framing of [`Frame`]s.
//!
//! On the wire a frame is a u32 little-endian length followed by that many bytes of the
//! prost-encoded [`Frame`]. A length above the configured maximum, a body that does not
//! decode, or EOF in the middle of a frame is an error that closes the connection; nothing
//! here panics on input from the network.

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt};
use prost::Message;

use crate::wire::Frame;
use crate::{Error, Result};

/// Size of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Default maximum encoded frame size (the length prefix excluded).
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// Appends `frame`, length prefix first, to `out`. Returns the bytes appended.
///
/// Fails (appending nothing) if the encoded frame would exceed `max_frame`.
pub fn encode_frame(frame: &Frame, max_frame: usize, out: &mut Vec<u8>) -> Result<usize> {
    let start = out.len();
    out.extend_from_slice(&[0u8; LENGTH_PREFIX]);
    // PERF: encode in place and patch the prefix, rather than `encoded_len` + encode, which
    // walks every nested message twice.
    frame
        .encode(out)
        .map_err(|e| Error::Malformed(e.to_string()))?;
    let len = out.len() - start - LENGTH_PREFIX;
    if len > max_frame || len > u32::MAX as usize {
        out.truncate(start);
        return Err(Error::FrameTooLarge {
            len: len as u64,
            max: max_frame as u64,
        });
    }
    out[start..start + LENGTH_PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(out.len() - start)
}

/// Reads frames from one connection, buffering reads (so use it only once the handshake is
/// done). Payloads of decoded frames share the read buffer (zero-copy `Bytes`).
pub struct FrameReader {
    /// `buf[..filled]` is data read but not yet returned; `buf[filled..]` is initialized
    /// scratch space for the next read (so it is zeroed once, not per read).
    buf: BytesMut,
    filled: usize,
    max_frame: usize,
}

/// Bytes asked of the socket per read at least, and at most per step while a large frame
/// arrives (so a huge length prefix does not allocate before its bytes do).
const READ_CHUNK: usize = 64 << 10;
const READ_STEP_MAX: usize = 4 << 20;

impl FrameReader {
    pub fn new(max_frame: usize) -> FrameReader {
        FrameReader {
            buf: BytesMut::new(),
            filled: 0,
            max_frame,
        }
    }

    /// Returns the next frame and its size on the wire, or `None` on a clean EOF at a frame
    /// boundary.
    pub async fn read<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<Option<(Frame, usize)>> {
        loop {
            if self.filled >= LENGTH_PREFIX {
                let mut prefix = [0u8; LENGTH_PREFIX];
                prefix.copy_from_slice(&self.buf[..LENGTH_PREFIX]);
                let len = u32::from_le_bytes(prefix) as usize;
                if len > self.max_frame {
                    return Err(Error::FrameTooLarge {
                        len: len as u64,
                        max: self.max_frame as u64,
                    });
                }
                let total = LENGTH_PREFIX + len;
                if self.filled >= total {
                    let mut bytes: Bytes = self.buf.split_to(total).freeze();
                    self.filled -= total;
                    let body = bytes.split_off(LENGTH_PREFIX);
                    let frame = Frame::decode(body)?;
                    if frame.body.is_none() {
                        return Err(Error::Malformed("frame without a body".into()));
                    }
                    return Ok(Some((frame, total)));
                }
                if !self.fill(reader, total - self.filled).await? {
                    return Err(eof());
                }
            } else if !self.fill(reader, LENGTH_PREFIX - self.filled).await? {
                if self.filled == 0 {
                    return Ok(None);
                }
                return Err(eof());
            }
        }
    }

    /// One read into the buffer, with room for at least `want` more bytes (capped per
    /// step). Returns false on EOF.
    async fn fill<R: AsyncRead + Unpin>(&mut self, reader: &mut R, want: usize) -> Result<bool> {
        let room = want.clamp(READ_CHUNK, READ_STEP_MAX);
        if self.buf.len() - self.filled < room {
            self.buf.resize(self.filled + room, 0);
        }
        let n = reader.read(&mut self.buf[self.filled..]).await?;
        self.filled += n;
        Ok(n > 0)
    }
}

fn eof() -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "connection closed mid-frame",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{frame::Body, Heartbeat, RaftBatch, RaftEnvelope};
    use futures_lite::future::block_on;
    use futures_lite::io::Cursor;

    fn heartbeat(id: u64) -> Frame {
        Frame {
            body: Some(Body::Heartbeat(Heartbeat {
                id,
                node_id: 1,
                epoch: 2,
                now_nanos: 3,
                draining: false,
            })),
        }
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let mut out = Vec::new();
        let big = Frame {
            body: Some(Body::RaftBatch(RaftBatch {
                messages: vec![RaftEnvelope {
                    range_id: 1,
                    message: vec![7u8; 200_000].into(),
                }],
            })),
        };
        encode_frame(&heartbeat(1), 1 << 20, &mut out).unwrap();
        encode_frame(&big, 1 << 20, &mut out).unwrap();
        encode_frame(&heartbeat(2), 1 << 20, &mut out).unwrap();
        let total = out.len();
        let mut r = Cursor::new(out);
        let mut fr = FrameReader::new(1 << 20);
        let mut sizes = 0;
        for want in [heartbeat(1), big, heartbeat(2)] {
            let (got, size) = block_on(fr.read(&mut r)).unwrap().unwrap();
            assert_eq!(got, want);
            sizes += size;
        }
        assert_eq!(sizes, total);
        assert!(block_on(fr.read(&mut r)).unwrap().is_none());
    }

    /// Hands out at most 3 bytes per read, to exercise frames split across reads.
    struct Trickle(Cursor<Vec<u8>>);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(3);
            std::pin::Pin::new(&mut self.0).poll_read(cx, &mut buf[..n])
        }
    }

    #[test]
    fn frames_split_across_many_reads() {
        let mut out = Vec::new();
        let frames: Vec<Frame> = (0..20).map(heartbeat).collect();
        for f in &frames {
            encode_frame(f, 1 << 20, &mut out).unwrap();
        }
        let mut r = Trickle(Cursor::new(out));
        let mut fr = FrameReader::new(1 << 20);
        for want in frames {
            assert_eq!(block_on(fr.read(&mut r)).unwrap().unwrap().0, want);
        }
        assert!(block_on(fr.read(&mut r)).unwrap().is_none());
    }

    #[test]
    fn oversize_is_an_error_on_both_sides() {
        let mut out = Vec::new();
        let err = encode_frame(&heartbeat(1), 4, &mut out).unwrap_err();
        assert!(matches!(err, Error::FrameTooLarge { .. }));
        assert!(out.is_empty());

        let mut r = Cursor::new(u32::MAX.to_le_bytes().to_vec());
        let err = block_on(FrameReader::new(1 << 20).read(&mut r)).unwrap_err();
        assert!(matches!(err, Error::FrameTooLarge { .. }));
    }

    #[test]
    fn garbage_truncation_and_empty_bodies_are_errors() {
        // A length of 3 followed by bytes that are not a valid message.
        let mut r = Cursor::new(vec![3, 0, 0, 0, 0xff, 0xff, 0xff]);
        assert!(block_on(FrameReader::new(1 << 20).read(&mut r)).is_err());
        // EOF in the middle of a frame.
        let mut r = Cursor::new(vec![10, 0, 0, 0, 1]);
        assert!(matches!(
            block_on(FrameReader::new(1 << 20).read(&mut r)),
            Err(Error::Io(_))
        ));
        // EOF in the middle of the prefix.
        let mut r = Cursor::new(vec![10, 0]);
        assert!(matches!(
            block_on(FrameReader::new(1 << 20).read(&mut r)),
            Err(Error::Io(_))
        ));
        // A frame with no body.
        let mut r = Cursor::new(vec![0, 0, 0, 0]);
        assert!(matches!(
            block_on(FrameReader::new(1 << 20).read(&mut r)),
            Err(Error::Malformed(_))
        ));
    }
}
