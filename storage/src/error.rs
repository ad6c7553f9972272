use std::path::PathBuf;

/// The result of every fallible storage call.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in storage. Nothing here panics on bad bytes or failed I/O.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed (EIO, ENOSPC, short read…).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk do not match their checksum or their format.
    #[error("corruption in {path} at offset {offset}: {detail}")]
    Corruption {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    /// The caller asked for something the store does not hold (e.g. compacted log entries).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The engine was used wrongly (e.g. a malformed batch).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Wraps a `std::io::Error` with what was being done and to which file.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Wraps a glommio error with what was being done and to which file.
    pub fn glommio(
        op: &'static str,
        path: impl Into<PathBuf>,
        e: glommio::GlommioError<()>,
    ) -> Self {
        Error::io(op, path, std::io::Error::other(e.to_string()))
    }

    /// True when the error is bad bytes on disk rather than a failed call.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}
