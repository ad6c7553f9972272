//! A least-recently-used cache with a budget in caller-defined units: bytes for the block
//! cache, open files for the table cache.
//!
//! Single-core (`&mut self`, wrapped in a `RefCell` by the owner). Values are cheap clones
//! (`Rc`s); an evicted value stays alive while a reader still holds it, so the budget bounds
//! what the cache keeps, not what readers pin.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

pub struct LruCache<K, V> {
    map: HashMap<K, (V, usize, u64)>,
    /// Access tick → key, oldest first.
    order: BTreeMap<u64, K>,
    tick: u64,
    used: usize,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> LruCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        LruCache {
            map: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            used: 0,
            capacity,
        }
    }

    pub fn get(&mut self, k: &K) -> Option<V> {
        let (v, _, t) = self.map.get_mut(k)?;
        self.order.remove(t);
        self.tick += 1;
        *t = self.tick;
        self.order.insert(self.tick, k.clone());
        Some(v.clone())
    }

    /// Inserts `v` with `charge` units, then evicts the least recently used entries until
    /// the budget holds (never the entry just inserted).
    pub fn insert(&mut self, k: K, v: V, charge: usize) {
        self.remove(&k);
        self.tick += 1;
        self.order.insert(self.tick, k.clone());
        self.map.insert(k, (v, charge, self.tick));
        self.used += charge;
        while self.used > self.capacity && self.map.len() > 1 {
            let (&t, _) = self.order.iter().next().unwrap();
            let victim = self.order.remove(&t).unwrap();
            if let Some((_, c, _)) = self.map.remove(&victim) {
                self.used -= c;
            }
        }
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let (v, c, t) = self.map.remove(k)?;
        self.order.remove(&t);
        self.used -= c;
        Some(v)
    }

    /// Removes every entry whose key matches `pred`.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        let doomed: Vec<K> = self.map.keys().filter(|k| !keep(k)).cloned().collect();
        for k in doomed {
            self.remove(&k);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn used(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let mut c = LruCache::new(10);
        c.insert(1, "a", 4);
        c.insert(2, "b", 4);
        assert_eq!(c.get(&1), Some("a"));
        c.insert(3, "c", 4); // evicts 2, the least recently used
        assert_eq!(c.get(&2), None);
        assert_eq!(c.get(&1), Some("a"));
        assert_eq!(c.get(&3), Some("c"));
        assert_eq!(c.used(), 8);
        c.insert(4, "big", 100); // over budget alone: kept, everything else evicted
        assert_eq!(c.len(), 1);
        c.retain(|k| *k != 4);
        assert_eq!(c.len(), 0);
        assert_eq!(c.used(), 0);
    }
}
