//! The one error type of the transport.
//!
//! Errors on the inbound side close the one connection they came from and are counted in
//! [`crate::TransportStats`]; errors on the outbound side come back to the caller of
//! [`crate::Transport::call`] or are counted (raft sends never return errors: raft
//! retransmits).

use std::io;

/// Result alias for the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in `chitin-net`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket operation failed (includes EOF mid-frame).
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The first 8 bytes of a connection were not [`crate::wire::MAGIC`].
    #[error("bad handshake magic {0:02x?}")]
    BadMagic([u8; 8]),
    /// The peer speaks a protocol version this build does not.
    #[error("unsupported transport version {0}")]
    BadVersion(u32),
    /// The serving core refused the handshake (see [`crate::wire::HandshakeAck`]).
    #[error("handshake rejected: {0}")]
    Rejected(String),
    /// A frame's length prefix exceeds the configured maximum; the connection is closed.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge { len: u64, max: u64 },
    /// A frame did not decode, or decoded to something not allowed in that direction.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The call did not complete within its timeout.
    #[error("timed out")]
    Timeout,
    /// The destination could not be reached, or the connection was lost before the reply.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The remote handler returned an error for this request.
    #[error("remote: {0}")]
    Remote(String),
    /// No address is known for the destination node.
    #[error("no address for node {0}")]
    UnknownNode(u64),
    /// The transport has been closed.
    #[error("transport closed")]
    Closed,
}

impl Error {
    /// Whether retrying the same call later may succeed (the request may or may not have
    /// been executed remotely: callers must make requests idempotent or check).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Io(_) | Error::Timeout | Error::Unavailable(_) | Error::UnknownNode(_)
        )
    }
}

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Self {
        Error::Malformed(e.to_string())
    }
}

impl From<glommio::GlommioError<()>> for Error {
    fn from(e: glommio::GlommioError<()>) -> Self {
        Error::Io(e.into())
    }
}
