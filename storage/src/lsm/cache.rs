//! A least-recently-used cache (CLOCK approximation) with a budget in caller-defined units: bytes for the block
//! cache, open files for the table cache.
//!
//! Single-core (`&mut self`, wrapped in a `RefCell` by the owner). Values are cheap clones
//! (`Rc`s); an evicted value stays alive while a reader still holds it, so the budget bounds
//! what the cache keeps, not what readers pin.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

struct Entry<V> {
    value: V,
    charge: usize,
    referenced: Cell<bool>,
}

/// CLOCK ("second chance") approximation of LRU: a hit only sets a bit, so `get` never
/// restructures anything.
// PERF: every block-cache hit goes through `get`.
pub struct LruCache<K, V> {
    map: HashMap<K, Entry<V>>,
    /// Keys in insertion order; may hold keys already removed (skipped when met).
    ring: VecDeque<K>,
    used: usize,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> LruCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        LruCache {
            map: HashMap::new(),
            ring: VecDeque::new(),
            used: 0,
            capacity,
        }
    }

    pub fn get(&self, k: &K) -> Option<V> {
        let e = self.map.get(k)?;
        e.referenced.set(true);
        Some(e.value.clone())
    }

    /// Inserts `v` with `charge` units, then evicts entries not used since the clock hand
    /// last passed them until the budget holds (never the entry just inserted).
    pub fn insert(&mut self, k: K, v: V, charge: usize) {
        self.remove(&k);
        self.map.insert(
            k.clone(),
            Entry {
                value: v,
                charge,
                referenced: Cell::new(false),
            },
        );
        self.ring.push_back(k.clone());
        self.used += charge;
        while self.used > self.capacity && self.map.len() > 1 {
            let Some(victim) = self.ring.pop_front() else {
                break;
            };
            let second_chance = match self.map.get(&victim) {
                None => continue,
                Some(_) if victim == k => true,
                Some(e) => e.referenced.replace(false),
            };
            if second_chance {
                self.ring.push_back(victim);
            } else if let Some(e) = self.map.remove(&victim) {
                self.used -= e.charge;
            }
        }
        if self.ring.len() > 2 * self.map.len() + 16 {
            let map = &self.map;
            self.ring.retain(|k| map.contains_key(k));
        }
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let e = self.map.remove(k)?;
        self.used -= e.charge;
        Some(e.value)
    }

    /// Removes every entry whose key does not satisfy `keep`.
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
        c.insert(3, "c", 4); // evicts 2: 1 was used since, so it gets a second chance
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
