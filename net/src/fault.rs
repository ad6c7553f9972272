//! Fault injection for tests: partitions, random drops and delays, per peer node.
//!
//! One [`FaultHook`] belongs to one [`crate::Transport`] (one core); tests, and later the
//! node's HTTP admin endpoint, set rules on it. Rules name the *remote* node and apply to
//! every core of it:
//!
//! - `partition`: everything to and from the node is dropped, on send and on receive
//!   (connections stay up; calls to the node time out).
//! - `drop_probability`: each outbound raft message, request and heartbeat to the node is
//!   dropped with that probability (inbound traffic is not affected).
//! - `delay`: each outbound write to the node waits this long first. Order is kept and
//!   messages queued meanwhile join the next batch.
//!
//! With no rule set, a check is one `Cell<bool>` read.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use crate::NodeId;

/// The rules for one remote node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultRule {
    pub partitioned: bool,
    pub drop_probability: f64,
    pub delay: Option<Duration>,
}

impl FaultRule {
    fn is_noop(&self) -> bool {
        !self.partitioned && self.drop_probability <= 0.0 && self.delay.is_none()
    }
}

/// Per-core fault rules, keyed by remote node.
#[derive(Debug)]
pub struct FaultHook {
    /// PERF: the hot-path check; true iff `rules` is non-empty.
    active: Cell<bool>,
    rules: RefCell<HashMap<NodeId, FaultRule>>,
    rng: Cell<u64>,
}

impl Default for FaultHook {
    fn default() -> Self {
        FaultHook::new()
    }
}

impl FaultHook {
    pub fn new() -> FaultHook {
        FaultHook {
            active: Cell::new(false),
            rules: RefCell::new(HashMap::new()),
            rng: Cell::new(seed()),
        }
    }

    /// Drops everything to and from `node` until healed.
    pub fn partition(&self, node: NodeId) {
        self.update(node, |r| r.partitioned = true);
    }

    /// Removes every rule for `node`.
    pub fn heal(&self, node: NodeId) {
        self.rules.borrow_mut().remove(&node);
        self.active.set(!self.rules.borrow().is_empty());
    }

    /// Removes every rule.
    pub fn heal_all(&self) {
        self.rules.borrow_mut().clear();
        self.active.set(false);
    }

    /// Drops each outbound message to `node` with probability `p` (clamped to 0..=1).
    pub fn drop_probability(&self, node: NodeId, p: f64) {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self.update(node, |r| r.drop_probability = p);
    }

    /// Delays each outbound write to `node` by `delay` (zero removes the delay).
    pub fn delay(&self, node: NodeId, delay: Duration) {
        self.update(node, |r| r.delay = (!delay.is_zero()).then_some(delay));
    }

    /// The rule currently set for `node`, if any.
    pub fn rule(&self, node: NodeId) -> Option<FaultRule> {
        self.rules.borrow().get(&node).cloned()
    }

    fn update(&self, node: NodeId, f: impl FnOnce(&mut FaultRule)) {
        let mut rules = self.rules.borrow_mut();
        let rule = rules.entry(node).or_default();
        f(rule);
        if rule.is_noop() {
            rules.remove(&node);
        }
        self.active.set(!rules.is_empty());
    }

    /// Whether an outbound message to `node` should be dropped.
    pub(crate) fn drop_outbound(&self, node: NodeId) -> bool {
        if !self.active.get() {
            return false;
        }
        let rules = self.rules.borrow();
        match rules.get(&node) {
            None => false,
            Some(r) if r.partitioned => true,
            Some(r) if r.drop_probability > 0.0 => self.next_f64() < r.drop_probability,
            Some(_) => false,
        }
    }

    /// Whether an inbound frame from `node` should be dropped.
    pub(crate) fn drop_inbound(&self, node: NodeId) -> bool {
        self.active.get()
            && self
                .rules
                .borrow()
                .get(&node)
                .is_some_and(|r| r.partitioned)
    }

    /// The delay to apply before writing to `node`.
    pub(crate) fn outbound_delay(&self, node: NodeId) -> Option<Duration> {
        if !self.active.get() {
            return None;
        }
        self.rules.borrow().get(&node).and_then(|r| r.delay)
    }

    /// A uniform value in [0, 1) from a per-hook xorshift generator.
    fn next_f64(&self) -> f64 {
        let x = xorshift(&self.rng);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A non-zero seed that differs between hooks and runs (not cryptographic).
pub(crate) fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish() | 1
}

/// Advances a xorshift64 state and returns the new value.
pub(crate) fn xorshift(state: &Cell<u64>) -> u64 {
    let mut x = state.get();
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state.set(x);
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_set_and_heal() {
        let f = FaultHook::new();
        assert!(!f.drop_outbound(NodeId(1)));
        f.partition(NodeId(1));
        assert!(f.drop_outbound(NodeId(1)) && f.drop_inbound(NodeId(1)));
        assert!(!f.drop_outbound(NodeId(2)) && !f.drop_inbound(NodeId(2)));
        f.delay(NodeId(2), Duration::from_millis(5));
        assert_eq!(f.outbound_delay(NodeId(2)), Some(Duration::from_millis(5)));
        f.heal(NodeId(1));
        assert!(!f.drop_outbound(NodeId(1)));
        f.heal_all();
        assert!(f.outbound_delay(NodeId(2)).is_none());
        assert!(!f.active.get());

        f.drop_probability(NodeId(3), 1.0);
        assert!(f.drop_outbound(NodeId(3)) && !f.drop_inbound(NodeId(3)));
        f.drop_probability(NodeId(3), 0.5);
        let dropped = (0..10_000).filter(|_| f.drop_outbound(NodeId(3))).count();
        assert!((4_000..6_000).contains(&dropped), "{dropped}");
        f.drop_probability(NodeId(3), 0.0);
        assert!(f.rule(NodeId(3)).is_none() && !f.active.get());
    }
}
