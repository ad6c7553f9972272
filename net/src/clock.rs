//! The wall clock every part of a node reads (heartbeats here, the hybrid logical clock in
//! the server): the system clock plus an offset that only tests set, so a test can run
//! one node of a cluster with a clock that is off by a known amount.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static TESTING_OFFSET_NANOS: AtomicI64 = AtomicI64::new(0);

/// Nanoseconds since the Unix epoch, as this node's clock reads them.
pub fn wall_nanos() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    now.saturating_add_signed(TESTING_OFFSET_NANOS.load(Ordering::Relaxed))
}

/// Makes [`wall_nanos`] run `nanos` ahead of (negative: behind) the system clock. For
/// tests of clock-offset handling only (`chitin start --testing-clock-offset`).
pub fn set_testing_offset(nanos: i64) {
    TESTING_OFFSET_NANOS.store(nanos, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_testing_offset_moves_the_clock() {
        let before = wall_nanos();
        set_testing_offset(3_600_000_000_000);
        let ahead = wall_nanos();
        set_testing_offset(0);
        assert!(ahead >= before + 3_600_000_000_000);
        assert!(wall_nanos() < ahead);
    }
}
