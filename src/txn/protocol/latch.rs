//! Span latches: short-lived locks held while one request evaluates, so requests that
//! touch overlapping keys evaluate one after another (reads share, writes exclude).
//!
//! Latches are not transaction locks: they are released as soon as the request's effects
//! are applied (intents are the long-lived locks, see `lock_table.rs`). In this sans-I/O
//! code a request evaluates in one call, so a conflict can only mean that the caller
//! interleaved two evaluations; the caller decides whether to wait or retry.

use std::collections::BTreeMap;

use super::meta::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatchAccess {
    Read,
    Write,
}

/// Held latches, released with [`LatchManager::release`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "latches must be released"]
pub struct LatchGuard(u64);

/// The latch a request could not take, and who holds a conflicting one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatchConflict {
    pub span: Span,
    pub held_by: u64,
}

#[derive(Debug, Default)]
pub struct LatchManager {
    next: u64,
    held: BTreeMap<u64, Vec<(Span, LatchAccess)>>,
}

impl LatchManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes every latch in `spans` or none.
    pub fn acquire(&mut self, spans: &[(Span, LatchAccess)]) -> Result<LatchGuard, LatchConflict> {
        for (span, access) in spans {
            for (id, held) in &self.held {
                for (hs, ha) in held {
                    let compatible = *access == LatchAccess::Read && *ha == LatchAccess::Read;
                    if !compatible && hs.overlaps(span) {
                        return Err(LatchConflict {
                            span: span.clone(),
                            held_by: *id,
                        });
                    }
                }
            }
        }
        self.next += 1;
        self.held.insert(self.next, spans.to_vec());
        Ok(LatchGuard(self.next))
    }

    pub fn release(&mut self, guard: LatchGuard) {
        let removed = self.held.remove(&guard.0);
        assert!(
            removed.is_some(),
            "invariant: a latch guard is released once"
        );
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::protocol::meta::Key;

    #[test]
    fn reads_share_and_writes_exclude() {
        let mut m = LatchManager::new();
        let a = Span::key(&Key::new("a"));
        let ac = Span::new(Key::new("a"), Key::new("c"));
        let r1 = m.acquire(&[(a.clone(), LatchAccess::Read)]).unwrap();
        let r2 = m.acquire(&[(ac.clone(), LatchAccess::Read)]).unwrap();
        assert!(m.acquire(&[(ac.clone(), LatchAccess::Write)]).is_err());
        m.release(r1);
        m.release(r2);
        let w = m.acquire(&[(ac, LatchAccess::Write)]).unwrap();
        assert!(m.acquire(&[(a, LatchAccess::Read)]).is_err());
        m.release(w);
        assert_eq!(m.held(), 0);
    }
}
