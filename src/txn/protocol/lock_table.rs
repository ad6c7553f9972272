//! The lock table: for each key whose intent a request ran into, the lock holder and the
//! requests waiting for it, first come first served.
//!
//! A request that meets another transaction's intent enqueues here (and pushes the holder,
//! see `push.rs`). When the lock is released — the intent resolved after its transaction
//! committed or aborted — every waiter is handed back in arrival order; they evaluate again
//! in that order, so the first writer takes the lock next and the others queue behind it.

use std::collections::{BTreeMap, VecDeque};

use super::meta::{Key, TxnId};

#[derive(Clone, Debug, Default)]
struct LockState {
    holder: Option<TxnId>,
    waiters: VecDeque<TxnId>,
}

#[derive(Clone, Debug, Default)]
pub struct LockTable {
    locks: BTreeMap<Key, LockState>,
}

impl LockTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// `waiter` waits for `holder`'s lock on `key` (once, keeping its place if already
    /// queued). Returns its position in the queue (0 is first).
    pub fn enqueue(&mut self, key: &Key, holder: TxnId, waiter: TxnId) -> usize {
        let st = self.locks.entry(key.clone()).or_default();
        st.holder = Some(holder);
        if let Some(pos) = st.waiters.iter().position(|w| *w == waiter) {
            return pos;
        }
        st.waiters.push_back(waiter);
        st.waiters.len() - 1
    }

    /// Releases the lock on `key`: the waiters, first come first.
    pub fn release(&mut self, key: &Key) -> Vec<TxnId> {
        self.locks
            .remove(key)
            .map(|st| st.waiters.into_iter().collect())
            .unwrap_or_default()
    }

    /// Takes `waiter` out of every queue (it gave up, or was woken some other way).
    pub fn remove_waiter(&mut self, waiter: TxnId) {
        for st in self.locks.values_mut() {
            st.waiters.retain(|w| *w != waiter);
        }
        self.locks
            .retain(|_, st| !st.waiters.is_empty() || st.holder.is_some());
    }

    pub fn waiters(&self, key: &Key) -> Vec<TxnId> {
        self.locks
            .get(key)
            .map(|st| st.waiters.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_are_released_first_come_first_served() {
        let mut t = LockTable::new();
        let a = Key::new("a");
        assert_eq!(t.enqueue(&a, TxnId(1), TxnId(3)), 0);
        assert_eq!(t.enqueue(&a, TxnId(1), TxnId(2)), 1);
        assert_eq!(t.enqueue(&a, TxnId(1), TxnId(3)), 0);
        assert_eq!(t.release(&a), vec![TxnId(3), TxnId(2)]);
        assert!(t.release(&a).is_empty());
    }
}
