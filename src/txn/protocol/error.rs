//! The protocol's errors. Retryable ones are what SQL reports as SQLSTATE 40001 (the code
//! itself is assigned at the pgwire boundary; the harness prints it for the reader).

use std::fmt;

use super::clock::ClockOffsetError;
use super::meta::TxnId;

pub type Result<T> = std::result::Result<T, TxnError>;

/// Why a transaction must restart, named as CockroachDB names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryReason {
    /// A refresh found a write in the read spans since the read timestamp.
    Serializable,
    /// A write met a newer committed version and the refresh that follows failed.
    WriteTooOld,
    /// A read met a value inside its uncertainty interval and could not refresh past it.
    ReadWithinUncertainty,
    /// The transaction was aborted (by a pusher, deadlock breaking, or status recovery).
    Aborted,
    /// A pipelined write failed after the client moved on.
    AsyncWriteFailure,
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RetryReason::Serializable => "RETRY_SERIALIZABLE",
            RetryReason::WriteTooOld => "RETRY_WRITE_TOO_OLD",
            RetryReason::ReadWithinUncertainty => "ReadWithinUncertaintyInterval",
            RetryReason::Aborted => "ABORTED",
            RetryReason::AsyncWriteFailure => "RETRY_ASYNC_WRITE_FAILURE",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// The transaction is over; the client may run it again (40001).
    #[error("40001 {reason}: {detail}")]
    Retry { reason: RetryReason, detail: String },
    /// A node refused a message from a clock too far ahead.
    #[error("refused: {0}")]
    ClockOffset(#[from] ClockOffsetError),
    /// The transaction already finished (or its coordinator is gone).
    #[error("{0} is not running ({1})")]
    NotRunning(TxnId, &'static str),
}

impl TxnError {
    pub fn retry(reason: RetryReason, detail: impl Into<String>) -> TxnError {
        TxnError::Retry {
            reason,
            detail: detail.into(),
        }
    }

    /// Whether the client may run the transaction again (SQLSTATE 40001).
    pub fn is_retryable(&self) -> bool {
        matches!(self, TxnError::Retry { .. })
    }
}
