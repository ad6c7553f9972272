//! The hybrid logical clock over a pluggable physical clock.
//!
//! An HLC timestamp is the physical wall time in nanoseconds plus a logical counter that
//! orders events within one wall tick and carries causality across nodes: every message
//! received moves the clock past the sender's reading ([`Hlc::update`]). Clocks of different
//! nodes may disagree by at most the configured maximum offset; a node that sees a remote
//! clock further ahead than that refuses to update from it (and the node refuses to serve),
//! because every uncertainty interval in the cluster assumes the bound holds.

use chitin_storage::Timestamp;

use super::meta::Ts;

/// The default maximum clock offset between any two nodes: 500 ms.
pub const DEFAULT_MAX_OFFSET_NANOS: u64 = 500_000_000;

/// A source of physical time in nanoseconds. The node uses the system clock; tests use
/// [`ManualClock`]. It need not be monotonic: the HLC never goes backwards regardless.
pub trait PhysicalClock {
    fn now_nanos(&self) -> u64;
}

/// A physical clock that moves only when told: the protocol's tests drive time with it.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: u64,
}

impl ManualClock {
    pub fn new(nanos: u64) -> Self {
        ManualClock { nanos }
    }

    pub fn advance(&mut self, nanos: u64) {
        self.nanos += nanos;
    }

    pub fn set(&mut self, nanos: u64) {
        self.nanos = nanos;
    }
}

impl PhysicalClock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.nanos
    }
}

/// A remote clock was further ahead of ours than the maximum offset allows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("remote clock reads {}, {} ahead of local physical clock {} (max offset {})", Ts(*.remote), Ts(Timestamp::new(.remote.wall - .local_physical, 0)), Ts(Timestamp::new(*.local_physical, 0)), Ts(Timestamp::new(*.max_offset, 0)))]
pub struct ClockOffsetError {
    pub remote: Timestamp,
    pub local_physical: u64,
    pub max_offset: u64,
}

/// A hybrid logical clock.
#[derive(Clone, Debug)]
pub struct Hlc<C: PhysicalClock> {
    physical: C,
    last: Timestamp,
    max_offset: u64,
}

impl<C: PhysicalClock> Hlc<C> {
    pub fn new(physical: C, max_offset_nanos: u64) -> Self {
        Hlc {
            physical,
            last: Timestamp::MIN,
            max_offset: max_offset_nanos,
        }
    }

    pub fn max_offset(&self) -> u64 {
        self.max_offset
    }

    pub fn physical(&self) -> &C {
        &self.physical
    }

    pub fn physical_mut(&mut self) -> &mut C {
        &mut self.physical
    }

    /// A timestamp strictly greater than every one this clock handed out or observed.
    pub fn now(&mut self) -> Timestamp {
        let wall = self.physical.now_nanos();
        self.last = if wall > self.last.wall {
            Timestamp::new(wall, 0)
        } else {
            super::meta::ts_next(self.last)
        };
        self.last
    }

    /// The clock's reading without ticking it: at least the physical time and at least
    /// every timestamp handed out or observed. What a message carries.
    pub fn peek(&self) -> Timestamp {
        let wall = self.physical.now_nanos();
        if wall > self.last.wall {
            Timestamp::new(wall, 0)
        } else {
            self.last
        }
    }

    /// Observes a remote clock reading (called for every incoming message): afterwards
    /// [`Hlc::now`] is above `remote`. Refuses, leaving the clock alone, when `remote` is
    /// more than the maximum offset ahead of the local physical clock.
    pub fn update(&mut self, remote: Timestamp) -> Result<(), ClockOffsetError> {
        let local = self.physical.now_nanos();
        if remote.wall > local.saturating_add(self.max_offset) {
            return Err(ClockOffsetError {
                remote,
                local_physical: local,
                max_offset: self.max_offset,
            });
        }
        if remote > self.last {
            self.last = remote;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_strictly_monotonic_on_a_stopped_clock() {
        let mut h = Hlc::new(ManualClock::new(1_000), DEFAULT_MAX_OFFSET_NANOS);
        let a = h.now();
        let b = h.now();
        assert_eq!(a, Timestamp::new(1_000, 0));
        assert_eq!(b, Timestamp::new(1_000, 1));
        h.physical_mut().advance(1);
        assert_eq!(h.now(), Timestamp::new(1_001, 0));
    }

    #[test]
    fn update_moves_past_remote_within_offset_and_refuses_beyond() {
        let mut h = Hlc::new(ManualClock::new(1_000_000), 500);
        h.update(Timestamp::new(1_000_400, 7)).unwrap();
        assert!(h.now() > Timestamp::new(1_000_400, 7));
        let before = h.peek();
        let err = h.update(Timestamp::new(1_000_501, 0)).unwrap_err();
        assert_eq!(err.local_physical, 1_000_000);
        assert_eq!(h.peek(), before);
    }
}
