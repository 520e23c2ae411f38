//! A test oracle (built with `cfg(test)` or the `testing` feature): the
//! plain megaflow classifier the datapath's index ([`super::Megaflows`]) is
//! checked against. Tuple-space search: one hash table per distinct mask
//! (a subtable); a lookup probes subtables in order of recent hits and returns
//! the first entry whose masked key equals the packet's. Megaflows installed
//! from the rule table never disagree where they overlap (every packet inside
//! a megaflow gets the same rule), so the first hit is a correct answer.

use super::hash::MaskWords;
use crate::packet::{FlowKey, FlowMask};
use hashbrown::HashTable;

struct Entry<V> {
    key: FlowKey,
    hash: u64,
    value: V,
}

struct Subtable<V> {
    /// The mask and its non-zero words: hashing and comparing skip the rest.
    keyer: MaskWords,
    table: HashTable<Entry<V>>,
    hits: u64,
}

impl<V> Subtable<V> {
    fn new(mask: &FlowMask) -> Self {
        Self { keyer: MaskWords::new(mask), table: HashTable::new(), hits: 0 }
    }

    #[inline(always)]
    fn hash(&self, key: &FlowKey) -> u64 {
        self.keyer.hash(key)
    }

    /// `entry_key` is stored masked; compares `key & mask` to it on the mask's words.
    #[inline(always)]
    fn matches(&self, entry_key: &FlowKey, key: &FlowKey) -> bool {
        self.keyer.matches(entry_key, key)
    }

    #[inline(always)]
    fn find(&self, key: &FlowKey, hash: u64) -> Option<&Entry<V>> {
        self.table.find(hash, |e| self.matches(&e.key, key))
    }
}

/// The classifier. `V` is what a megaflow resolves to (a flow handle).
pub struct Dpcls<V> {
    subtables: Vec<Subtable<V>>,
    entries: usize,
}

impl<V> Default for Dpcls<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Dpcls<V> {
    /// An empty classifier.
    pub fn new() -> Self {
        Self { subtables: Vec::new(), entries: 0 }
    }

    /// Number of megaflows.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether it holds no megaflow.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Number of distinct masks.
    pub fn subtable_count(&self) -> usize {
        self.subtables.len()
    }

    /// Inserts the megaflow `key & mask`; returns the value it replaced.
    pub fn insert(&mut self, key: &FlowKey, mask: &FlowMask, value: V) -> Option<V> {
        let idx = match self.subtables.iter().position(|s| s.keyer.mask == *mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Subtable::new(mask));
                self.subtables.len() - 1
            }
        };
        let st = &mut self.subtables[idx];
        let masked = key.masked(mask);
        let hash = st.hash(&masked);
        let keyer = st.keyer;
        if let Some(e) = st.table.find_mut(hash, |e| keyer.matches(&e.key, &masked)) {
            return Some(std::mem::replace(&mut e.value, value));
        }
        st.table.insert_unique(hash, Entry { key: masked, hash, value }, |e| e.hash);
        self.entries += 1;
        None
    }

    /// Removes the megaflow `key & mask`; an emptied subtable goes away.
    pub fn remove(&mut self, key: &FlowKey, mask: &FlowMask) -> Option<V> {
        let idx = self.subtables.iter().position(|s| s.keyer.mask == *mask)?;
        let st = &mut self.subtables[idx];
        let masked = key.masked(mask);
        let hash = st.hash(&masked);
        let entry = st.table.find_entry(hash, |e| e.key == masked).ok()?;
        let (removed, _) = entry.remove();
        self.entries -= 1;
        if st.table.is_empty() {
            self.subtables.remove(idx);
        }
        Some(removed.value)
    }

    /// Re-orders subtables by hits since the last call (most hit first) and
    /// halves the counts, so the order follows the current traffic.
    pub fn rank(&mut self) {
        self.subtables.sort_by_key(|st| std::cmp::Reverse(st.hits));
        for st in &mut self.subtables {
            st.hits /= 2;
        }
    }

    /// Every megaflow: (masked key, mask, value).
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &FlowMask, &V)> {
        self.subtables.iter().flat_map(|st| st.table.iter().map(move |e| (&e.key, &st.keyer.mask, &e.value)))
    }
}

impl<V: Copy> Dpcls<V> {
    /// The megaflow matching `key`, if any.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey) -> Option<V> {
        for st in &mut self.subtables {
            let found = st.find(key, st.hash(key)).map(|e| e.value);
            if found.is_some() {
                st.hits += 1;
                return found;
            }
        }
        None
    }

    /// Removes every megaflow for which `remove` says so; returns their values.
    pub fn remove_where(&mut self, mut remove: impl FnMut(&FlowKey, &FlowMask, &V) -> bool) -> Vec<V> {
        let mut out = Vec::new();
        for st in &mut self.subtables {
            let mask = st.keyer.mask;
            st.table.retain(|e| {
                let gone = remove(&e.key, &mask, &e.value);
                if gone {
                    out.push(e.value);
                }
                !gone
            });
        }
        self.subtables.retain(|st| !st.table.is_empty());
        self.entries -= out.len();
        out
    }

    /// Looks up a burst (at most 64 keys): `out[i]` gets the value for
    /// `keys[i]`, or `None`. Subtables are the outer loop, so each subtable's
    /// mask stays hot while the unresolved keys go through it.
    pub fn lookup_batch(&mut self, keys: &[FlowKey], out: &mut [Option<V>]) {
        let n = keys.len().min(out.len()).min(64);
        let mut pending: u64 = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        for o in out.iter_mut().take(n) {
            *o = None;
        }
        for st in &mut self.subtables {
            if pending == 0 {
                break;
            }
            let mut bits = pending;
            while bits != 0 {
                let i = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let key = &keys[i];
                if let Some(e) = st.find(key, st.hash(key)) {
                    out[i] = Some(e.value);
                    pending &= !(1u64 << i);
                    st.hits += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::key::{ip_to, ipv4, prefix_mask};
    use crate::packet::Field;

    #[test]
    fn insert_lookup_remove_across_subtables() {
        let mut cls = Dpcls::new();
        let mut m24 = FlowMask::default();
        m24.set(Field::NwDst, prefix_mask(true, 24));
        let mut mport = FlowMask::default();
        mport.exact(Field::InPort);
        let mut k = FlowKey::ZERO;
        k.set(Field::NwDst, ip_to(ipv4(10, 0, 0, 7)));
        k.set(Field::InPort, 3);
        assert_eq!(cls.insert(&k, &m24, 1u32), None);
        assert_eq!(cls.insert(&k, &mport, 2u32), None);
        assert_eq!(cls.insert(&k, &m24, 3u32), Some(1), "same megaflow replaces");
        assert_eq!((cls.len(), cls.subtable_count()), (2, 2));
        let mut probe = k;
        probe.set(Field::NwDst, ip_to(ipv4(10, 0, 0, 200)));
        probe.set(Field::InPort, 9);
        assert_eq!(cls.lookup(&probe), Some(3));
        let mut out = [None; 2];
        let mut miss = probe;
        miss.set(Field::NwDst, ip_to(ipv4(10, 0, 1, 1)));
        cls.lookup_batch(&[probe, miss], &mut out);
        assert_eq!(out, [Some(3), None]);
        assert_eq!(cls.remove(&probe, &m24), Some(3));
        assert_eq!(cls.subtable_count(), 1);
        assert_eq!(cls.lookup(&probe), None);
        assert_eq!(cls.lookup(&k), Some(2));
        cls.rank();
        assert_eq!(cls.remove_where(|_, _, v| *v == 2), vec![2]);
        assert!(cls.is_empty());
    }
}
