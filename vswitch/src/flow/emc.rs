//! Exact-match cache: per PMD thread, set-associative, fixed memory.
//!
//! Each set holds [`WAYS`] entries; a key maps to one set by its hash and may
//! sit in any way. Insertion takes a free way, else the way the hash's upper
//! bits pick (cheap pseudo-random replacement). Values are small handles (the
//! datapath stores a megaflow reference and checks it is still alive).

use crate::packet::FlowKey;

/// Ways per set.
pub const WAYS: usize = 4;

#[derive(Clone, Copy)]
struct Entry<V> {
    hash: u32,
    key: FlowKey,
    value: Option<V>,
}

/// Hit/miss/insert/evict counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmcStats {
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub evictions: u64,
}

/// The cache. `V` is a small copyable handle.
pub struct Emc<V: Copy> {
    entries: Box<[Entry<V>]>,
    set_mask: usize,
    pub stats: EmcStats,
}

impl<V: Copy> Emc<V> {
    /// A cache of at least `capacity` entries (rounded up to a power of two
    /// number of sets of [`WAYS`]).
    pub fn new(capacity: usize) -> Self {
        let sets = capacity.div_ceil(WAYS).next_power_of_two().max(1);
        let empty = Entry { hash: 0, key: FlowKey::ZERO, value: None };
        Self { entries: vec![empty; sets * WAYS].into_boxed_slice(), set_mask: sets - 1, stats: EmcStats::default() }
    }

    /// Entries the cache can hold.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    #[inline(always)]
    fn set(&self, hash: u64) -> usize {
        (hash as usize & self.set_mask) * WAYS
    }

    /// Looks `key` (with its [`hash_key`](super::hash::hash_key)) up.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, hash: u64) -> Option<V> {
        let base = self.set(hash);
        let tag = (hash >> 32) as u32;
        for e in &self.entries[base..base + WAYS] {
            if e.hash == tag && e.value.is_some() && e.key == *key {
                self.stats.hits += 1;
                return e.value;
            }
        }
        self.stats.misses += 1;
        None
    }

    /// Inserts or replaces `key`.
    pub fn insert(&mut self, key: &FlowKey, hash: u64, value: V) {
        let base = self.set(hash);
        let tag = (hash >> 32) as u32;
        let set = &mut self.entries[base..base + WAYS];
        let slot = set
            .iter()
            .position(|e| e.value.is_some() && e.hash == tag && e.key == *key)
            .or_else(|| set.iter().position(|e| e.value.is_none()));
        let idx = match slot {
            Some(i) => i,
            None => {
                self.stats.evictions += 1;
                (hash >> 58) as usize % WAYS
            }
        };
        set[idx] = Entry { hash: tag, key: *key, value: Some(value) };
        self.stats.inserts += 1;
    }

    /// Drops every entry whose value `dead` says is stale.
    pub fn remove_if(&mut self, mut dead: impl FnMut(&V) -> bool) {
        for e in self.entries.iter_mut() {
            if e.value.as_ref().is_some_and(&mut dead) {
                e.value = None;
            }
        }
    }

    /// Values of the occupied entries.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().filter_map(|e| e.value.as_ref())
    }

    /// Empties the cache.
    pub fn clear(&mut self) {
        for e in self.entries.iter_mut() {
            e.value = None;
        }
    }

    /// Occupied entries.
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.value.is_some()).count()
    }

    /// Whether no entry is occupied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::hash::hash_key;
    use crate::packet::Field;

    fn key(i: u32) -> FlowKey {
        let mut k = FlowKey::ZERO;
        k.set(Field::InPort, u128::from(i));
        k
    }

    #[test]
    fn hit_miss_insert_evict() {
        let mut emc = Emc::<u32>::new(64);
        let k = key(1);
        let h = hash_key(&k);
        assert_eq!(emc.lookup(&k, h), None);
        emc.insert(&k, h, 7);
        assert_eq!(emc.lookup(&k, h), Some(7));
        emc.insert(&k, h, 8);
        assert_eq!(emc.lookup(&k, h), Some(8), "re-insert replaces in place");
        assert_eq!(emc.len(), 1);
        for i in 0..10_000 {
            let k = key(i);
            emc.insert(&k, hash_key(&k), i);
        }
        assert!(emc.stats.evictions > 0);
        assert!(emc.len() <= emc.capacity());
        // Whatever survived maps to its own value.
        let mut found = 0;
        for i in 0..10_000 {
            let k = key(i);
            if let Some(v) = emc.lookup(&k, hash_key(&k)) {
                assert_eq!(v, i);
                found += 1;
            }
        }
        assert_eq!(found, emc.len());
        emc.remove_if(|v| v % 2 == 0);
        assert!(emc.len() <= found);
        emc.clear();
        assert!(emc.is_empty());
    }
}
