//! What goes over a node-transport connection, byte for byte.
//!
//! A connection starts with a fixed-size, hand-encoded [`Handshake`] from the dialer and a
//! one-byte [`HandshakeAck`] from the serving core. After that both directions carry
//! length-prefixed [`Frame`]s (see [`crate::frame`]): the dialer sends raft batches,
//! requests and heartbeats; the server sends responses and heartbeat replies.
//!
//! The frame bodies are prost 0.14 messages written by hand (no protoc, no build.rs). Raft
//! messages and request/response payloads are opaque bytes here: this crate knows nothing of
//! raft or KV semantics. Field tags are the compatibility contract: never reuse a tag.

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{CoreId, Endpoint, Error, NodeId, Result};

/// The first 8 bytes of every node-transport connection. Read as a pgwire length prefix it
/// would be ~1.1 GB, which no pgwire client sends, so the shared port can tell them apart
/// (an SSLRequest or startup packet is at least 8 bytes long, so peeking 8 never stalls).
pub const MAGIC: [u8; 8] = *b"CHTNRPC1";

/// The transport protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The dialer's opening message. Fixed size, little-endian:
///
/// | offset | size | field                                  |
/// |-------:|-----:|----------------------------------------|
/// |      0 |    8 | magic `b"CHTNRPC1"`                    |
/// |      8 |    4 | version (u32)                          |
/// |     12 |    8 | cluster id (u64, 0 = not yet known)    |
/// |     20 |    8 | from node (u64)                        |
/// |     28 |    4 | from core (u32)                        |
/// |     32 |    8 | to node (u64)                          |
/// |     40 |    4 | to core (u32)                          |
///
/// Total [`Handshake::LEN`] = 44 bytes. The dialer then waits for the one-byte ack before
/// sending anything else, so a reader of exactly 44 bytes never consumes frame bytes (the
/// node may hand the socket to another core in between).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub version: u32,
    pub cluster_id: u64,
    pub from: Endpoint,
    pub to: Endpoint,
}

impl Handshake {
    /// Encoded size in bytes.
    pub const LEN: usize = 44;

    /// A handshake of this build's version.
    pub fn new(cluster_id: u64, from: Endpoint, to: Endpoint) -> Handshake {
        Handshake {
            version: VERSION,
            cluster_id,
            from,
            to,
        }
    }

    /// Whether the first 8 bytes of a connection announce a node-transport connection.
    pub fn is_magic(prefix: &[u8; 8]) -> bool {
        *prefix == MAGIC
    }

    /// Encodes the handshake, magic included.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        out[12..20].copy_from_slice(&self.cluster_id.to_le_bytes());
        out[20..28].copy_from_slice(&self.from.node.0.to_le_bytes());
        out[28..32].copy_from_slice(&self.from.core.0.to_le_bytes());
        out[32..40].copy_from_slice(&self.to.node.0.to_le_bytes());
        out[40..44].copy_from_slice(&self.to.core.0.to_le_bytes());
        out
    }

    /// Decodes a handshake. Fails on a bad magic; the version is returned as sent (the
    /// serving side decides whether it speaks it).
    pub fn decode(bytes: &[u8; Self::LEN]) -> Result<Handshake> {
        let magic: [u8; 8] = take(bytes, 0);
        if !Self::is_magic(&magic) {
            return Err(Error::BadMagic(magic));
        }
        Ok(Handshake {
            version: u32::from_le_bytes(take(bytes, 8)),
            cluster_id: u64::from_le_bytes(take(bytes, 12)),
            from: Endpoint {
                node: NodeId(u64::from_le_bytes(take(bytes, 20))),
                core: CoreId(u32::from_le_bytes(take(bytes, 28))),
            },
            to: Endpoint {
                node: NodeId(u64::from_le_bytes(take(bytes, 32))),
                core: CoreId(u32::from_le_bytes(take(bytes, 40))),
            },
        })
    }

    /// Reads exactly [`Handshake::LEN`] bytes (no read-ahead) and decodes them.
    pub async fn read_exact_from<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Handshake> {
        let mut buf = [0u8; Self::LEN];
        reader.read_exact(&mut buf).await?;
        Self::decode(&buf)
    }

    /// Like [`Handshake::read_exact_from`] for a caller that already consumed the 8 magic
    /// bytes (to tell transport from pgwire): reads exactly the remaining 36 bytes.
    pub async fn read_after_magic<R: AsyncRead + Unpin>(
        magic: [u8; 8],
        reader: &mut R,
    ) -> Result<Handshake> {
        let mut buf = [0u8; Self::LEN];
        buf[0..8].copy_from_slice(&magic);
        reader.read_exact(&mut buf[8..]).await?;
        Self::decode(&buf)
    }

    /// Writes the encoded handshake.
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, writer: &mut W) -> Result<()> {
        writer.write_all(&self.encode()).await?;
        Ok(())
    }
}

fn take<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// The serving core's one-byte answer to a [`Handshake`]. Anything but `Accepted` is
/// followed by the server closing the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HandshakeAck {
    Accepted = 1,
    WrongNode = 2,
    WrongCore = 3,
    ClusterMismatch = 4,
    UnsupportedVersion = 5,
}

impl HandshakeAck {
    pub fn from_byte(b: u8) -> Option<HandshakeAck> {
        Some(match b {
            1 => HandshakeAck::Accepted,
            2 => HandshakeAck::WrongNode,
            3 => HandshakeAck::WrongCore,
            4 => HandshakeAck::ClusterMismatch,
            5 => HandshakeAck::UnsupportedVersion,
            _ => return None,
        })
    }

    /// Writes the ack byte.
    pub async fn write_to<W: AsyncWrite + Unpin>(self, writer: &mut W) -> Result<()> {
        writer.write_all(&[self as u8]).await?;
        Ok(())
    }

    /// Reads one ack byte.
    pub async fn read_from<R: AsyncRead + Unpin>(reader: &mut R) -> Result<HandshakeAck> {
        let mut b = [0u8; 1];
        reader.read_exact(&mut b).await?;
        HandshakeAck::from_byte(b[0])
            .ok_or_else(|| Error::Malformed(format!("handshake ack byte {}", b[0])))
    }
}

/// One frame: exactly one body. A frame without a body is malformed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    #[prost(oneof = "frame::Body", tags = "1, 2, 3, 4, 5")]
    pub body: Option<frame::Body>,
}

/// The bodies a [`Frame`] may carry.
pub mod frame {
    /// Dialer → server: `RaftBatch`, `Request`, `Heartbeat`. Server → dialer: `Response`,
    /// `HeartbeatReply`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Body {
        #[prost(message, tag = "1")]
        RaftBatch(super::RaftBatch),
        #[prost(message, tag = "2")]
        Request(super::Request),
        #[prost(message, tag = "3")]
        Response(super::Response),
        #[prost(message, tag = "4")]
        Heartbeat(super::Heartbeat),
        #[prost(message, tag = "5")]
        HeartbeatReply(super::HeartbeatReply),
    }
}

/// Every raft message queued for one destination core since the last write, in send order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RaftBatch {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<RaftEnvelope>,
}

/// One raft message, encoded by the caller, for one range.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RaftEnvelope {
    #[prost(uint64, tag = "1")]
    pub range_id: u64,
    #[prost(bytes = "bytes", tag = "2")]
    pub message: Bytes,
}

/// A request; `id` is unique among the dialer's in-flight requests on the connection.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint32, tag = "2")]
    pub method: u32,
    #[prost(bytes = "bytes", tag = "3")]
    pub payload: Bytes,
}

/// The answer to the [`Request`] with the same `id`: `error` set means the handler failed
/// (and `payload` is empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(bytes = "bytes", tag = "2")]
    pub payload: Bytes,
    #[prost(string, optional, tag = "3")]
    pub error: Option<String>,
}

/// A liveness probe. `epoch` is the sender's liveness epoch, `now_nanos` its wall clock
/// (nanoseconds since the Unix epoch) when sent, `draining` whether it is giving its
/// ranges' leadership away (others then do not hand leadership to it).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Heartbeat {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub node_id: u64,
    #[prost(uint64, tag = "3")]
    pub epoch: u64,
    #[prost(uint64, tag = "4")]
    pub now_nanos: u64,
    #[prost(bool, tag = "5")]
    pub draining: bool,
}

/// The answer to the [`Heartbeat`] with the same `id`, with the answering node's identity,
/// epoch, wall clock and whether it is draining.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeartbeatReply {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub node_id: u64,
    #[prost(uint64, tag = "3")]
    pub epoch: u64,
    #[prost(uint64, tag = "4")]
    pub now_nanos: u64,
    #[prost(bool, tag = "5")]
    pub draining: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn round_trip(frame: Frame) {
        let bytes = Bytes::from(frame.encode_to_vec());
        assert_eq!(Frame::decode(bytes).unwrap(), frame);
    }

    #[test]
    fn every_body_round_trips() {
        round_trip(Frame {
            body: Some(frame::Body::RaftBatch(RaftBatch {
                messages: vec![
                    RaftEnvelope {
                        range_id: 7,
                        message: Bytes::from_static(b"vote"),
                    },
                    RaftEnvelope {
                        range_id: u64::MAX,
                        message: Bytes::new(),
                    },
                ],
            })),
        });
        round_trip(Frame {
            body: Some(frame::Body::Request(Request {
                id: 42,
                method: 3,
                payload: Bytes::from_static(b"get a"),
            })),
        });
        for error in [None, Some("boom".to_string()), Some(String::new())] {
            round_trip(Frame {
                body: Some(frame::Body::Response(Response {
                    id: 42,
                    payload: Bytes::from_static(b"a=1"),
                    error,
                })),
            });
        }
        round_trip(Frame {
            body: Some(frame::Body::Heartbeat(Heartbeat {
                id: 1,
                node_id: 2,
                epoch: 3,
                now_nanos: 4,
                draining: true,
            })),
        });
        round_trip(Frame {
            body: Some(frame::Body::HeartbeatReply(HeartbeatReply {
                id: 1,
                node_id: 2,
                epoch: 3,
                now_nanos: 4,
                draining: false,
            })),
        });
        round_trip(Frame { body: None });
    }

    #[test]
    fn handshake_round_trips_and_layout_is_fixed() {
        let hs = Handshake::new(
            0xdead_beef,
            Endpoint::new(NodeId(1), CoreId(2)),
            Endpoint::new(NodeId(3), CoreId(4)),
        );
        let enc = hs.encode();
        assert_eq!(&enc[0..8], b"CHTNRPC1");
        assert_eq!(enc[8..12], 1u32.to_le_bytes());
        assert_eq!(enc[12..20], 0xdead_beefu64.to_le_bytes());
        assert_eq!(enc[20..28], 1u64.to_le_bytes());
        assert_eq!(enc[28..32], 2u32.to_le_bytes());
        assert_eq!(enc[32..40], 3u64.to_le_bytes());
        assert_eq!(enc[40..44], 4u32.to_le_bytes());
        assert_eq!(Handshake::decode(&enc).unwrap(), hs);

        let mut bad = enc;
        bad[0] = b'X';
        assert!(matches!(Handshake::decode(&bad), Err(Error::BadMagic(_))));
        assert!(Handshake::is_magic(b"CHTNRPC1"));
        assert!(!Handshake::is_magic(&[0, 0, 0, 8, 4, 210, 22, 47])); // pgwire SSLRequest
    }

    #[test]
    fn handshake_reads_exactly_its_bytes() {
        let hs = Handshake::new(0, Endpoint::default(), Endpoint::new(NodeId(9), CoreId(1)));
        let mut stream = hs.encode().to_vec();
        stream.extend_from_slice(b"rest");
        let mut reader = futures_lite::io::Cursor::new(stream);
        let got = futures_lite::future::block_on(Handshake::read_exact_from(&mut reader));
        assert_eq!(got.unwrap(), hs);
        assert_eq!(reader.position(), Handshake::LEN as u64);

        let mut reader = futures_lite::io::Cursor::new(hs.encode()[8..].to_vec());
        let got = futures_lite::future::block_on(Handshake::read_after_magic(MAGIC, &mut reader));
        assert_eq!(got.unwrap(), hs);
    }

    #[test]
    fn ack_bytes_round_trip() {
        for ack in [
            HandshakeAck::Accepted,
            HandshakeAck::WrongNode,
            HandshakeAck::WrongCore,
            HandshakeAck::ClusterMismatch,
            HandshakeAck::UnsupportedVersion,
        ] {
            assert_eq!(HandshakeAck::from_byte(ack as u8), Some(ack));
        }
        assert_eq!(HandshakeAck::from_byte(0), None);
    }
}
