//! Read refresh: what a transaction read, and how it moves its read timestamp forward.
//!
//! A SERIALIZABLE transaction must commit at the timestamp it read at. When its write
//! timestamp was pushed (by the timestamp cache, a too-old write, or a pusher), it may still
//! commit at the new timestamp if nothing it read changed in between: it *refreshes* every
//! span it read over `(read_ts, new_ts]`. Any committed value or foreign intent there means
//! the reads are stale: a retryable error. A successful refresh also records the spans in
//! the timestamp cache at the new timestamp, so no write can slip in under it afterwards.

use chitin_storage::Timestamp;

use super::meta::Span;

/// The spans a transaction read, deduplicated as they are added.
#[derive(Clone, Debug, Default)]
pub struct RefreshSpans {
    spans: Vec<Span>,
}

impl RefreshSpans {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, span: Span) {
        if !self
            .spans
            .iter()
            .any(|s| s.start <= span.start && span.end <= s.end)
        {
            self.spans.push(span);
        }
    }

    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    pub fn clear(&mut self) {
        self.spans.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// A refresh to make: every read span from `from` to `to`.
#[derive(Clone, Debug)]
pub struct RefreshRequest {
    pub spans: Vec<Span>,
    pub from: Timestamp,
    pub to: Timestamp,
}
