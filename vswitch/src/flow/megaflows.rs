//! The PMD's megaflow index: tuple-space search as in `dpcls` (the test oracle; one
//! table per mask, probed in order of recent hits), but an entry is 8 bytes,
//! a 32-bit hash signature and a flow slot. The key lives once, in the flow
//! table, reached through [`FlowKeys`]. A burst is looked up in three passes
//! per mask (hash and prefetch the home slots, find each signature and
//! prefetch its flow's key, then compare) so the cache misses of a large
//! table overlap instead of queueing one behind the other.
//!
//! Open addressing with linear probing, at most 3/4 full, deletion by
//! backward shift (no tombstones): the home slot comes from the signature
//! alone, so growing and shifting never need the keys.

use super::bits::Bits;
use super::hash::MaskWords;
use crate::packet::{FlowKey, FlowMask};

/// Where the index finds a flow's masked key by slot.
pub trait FlowKeys {
    /// The masked key of the flow in slot `index`, if one lives there.
    fn key_at(&self, index: u32) -> Option<&FlowKey>;
    /// Starts loading that key.
    fn prefetch_key(&self, index: u32);
}

const EMPTY: u64 = 0;
const MIN_SLOTS: usize = 16;

#[inline(always)]
fn pack(sig: u32, index: u32) -> u64 {
    (u64::from(sig) << 32) | (u64::from(index) + 1)
}

#[inline(always)]
fn sig_of(e: u64) -> u32 {
    (e >> 32) as u32
}

#[inline(always)]
fn index_of(e: u64) -> u32 {
    (e as u32).wrapping_sub(1)
}

struct Subtable {
    keyer: MaskWords,
    slots: Vec<u64>,
    len: usize,
    hits: u64,
}

impl Subtable {
    fn new(mask: &FlowMask) -> Self {
        Self { keyer: MaskWords::new(mask), slots: vec![EMPTY; MIN_SLOTS], len: 0, hits: 0 }
    }

    #[inline(always)]
    fn sig(&self, key: &FlowKey) -> u32 {
        (self.keyer.hash(key) >> 32) as u32
    }

    #[inline(always)]
    fn home(&self, sig: u32) -> usize {
        sig as usize & (self.slots.len() - 1)
    }

    /// The slot of `key` (signature `sig`), probing from `from`.
    #[inline(always)]
    fn find_from<K: FlowKeys>(&self, key: &FlowKey, sig: u32, from: usize, flows: &K) -> Option<u32> {
        let m = self.slots.len() - 1;
        let mut i = from;
        loop {
            let e = self.slots[i];
            if e == EMPTY {
                return None;
            }
            if sig_of(e) == sig && flows.key_at(index_of(e)).is_some_and(|k| self.keyer.matches(k, key)) {
                return Some(index_of(e));
            }
            i = (i + 1) & m;
        }
    }

    /// The position of the first entry from `sig`'s home with that
    /// signature, if one comes before an empty slot.
    #[inline(always)]
    fn first_candidate(&self, sig: u32) -> Option<usize> {
        let m = self.slots.len() - 1;
        let mut i = self.home(sig);
        loop {
            let e = self.slots[i];
            if e == EMPTY {
                return None;
            }
            if sig_of(e) == sig {
                return Some(i);
            }
            i = (i + 1) & m;
        }
    }

    fn put(&mut self, e: u64) {
        let m = self.slots.len() - 1;
        let mut i = self.home(sig_of(e));
        while self.slots[i] != EMPTY {
            i = (i + 1) & m;
        }
        self.slots[i] = e;
    }

    fn grow(&mut self) {
        let doubled = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        for e in old.into_iter().filter(|&e| e != EMPTY) {
            self.put(e);
        }
    }

    /// Removes the entry `e`; false if absent.
    fn remove_entry(&mut self, e: u64) -> bool {
        let m = self.slots.len() - 1;
        let mut i = self.home(sig_of(e));
        loop {
            match self.slots[i] {
                EMPTY => return false,
                x if x == e => break,
                _ => i = (i + 1) & m,
            }
        }
        // Backward shift: later entries of the run move up unless their home
        // lies (cyclically) after the hole.
        let mut hole = i;
        let mut j = (i + 1) & m;
        while self.slots[j] != EMPTY {
            let home = self.home(sig_of(self.slots[j]));
            if (j.wrapping_sub(home) & m) >= (j.wrapping_sub(hole) & m) {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
            j = (j + 1) & m;
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        true
    }
}

/// The index. Values are flow slots (`u32`, below `u32::MAX`).
pub struct Megaflows {
    subtables: Vec<Subtable>,
    entries: usize,
    /// A batch lookup's work and answers, per key: kept between batches,
    /// so that a batch of one key does not first fill 64 of each.
    sigs: [u32; 64],
    cand: [usize; 64],
    found: [u32; 64],
}

impl Default for Megaflows {
    fn default() -> Self {
        Self::new()
    }
}

impl Megaflows {
    pub fn new() -> Self {
        Self { subtables: Vec::new(), entries: 0, sigs: [0; 64], cand: [0; 64], found: [0; 64] }
    }

    /// Number of megaflows.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Number of distinct masks.
    pub fn subtable_count(&self) -> usize {
        self.subtables.len()
    }

    /// Bytes of entry arrays (for memory reports).
    pub fn bytes(&self) -> usize {
        self.subtables.iter().map(|s| s.slots.len() * 8).sum()
    }

    /// Indexes the flow in slot `index`, whose masked key `key` (under
    /// `mask`) `flows` already returns for that slot. If a flow with the same
    /// key and mask was indexed, its slot is replaced and returned.
    pub fn insert<K: FlowKeys>(&mut self, key: &FlowKey, mask: &FlowMask, index: u32, flows: &K) -> Option<u32> {
        debug_assert!(index < u32::MAX);
        let idx = match self.subtables.iter().position(|s| s.keyer.mask == *mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Subtable::new(mask));
                self.subtables.len() - 1
            }
        };
        let st = &mut self.subtables[idx];
        let sig = st.sig(key);
        let m = st.slots.len() - 1;
        let mut i = st.home(sig);
        loop {
            let e = st.slots[i];
            if e == EMPTY {
                break;
            }
            let old = index_of(e);
            if sig_of(e) == sig && old != index && flows.key_at(old).is_some_and(|k| st.keyer.matches(k, key)) {
                st.slots[i] = pack(sig, index);
                return Some(old);
            }
            i = (i + 1) & m;
        }
        if (st.len + 1) * 4 > st.slots.len() * 3 {
            st.grow();
        }
        st.put(pack(sig, index));
        st.len += 1;
        self.entries += 1;
        None
    }

    /// Removes the flow in slot `index` (masked key `key` under `mask`); an
    /// emptied mask's table goes away. Returns whether it was there.
    pub fn remove(&mut self, key: &FlowKey, mask: &FlowMask, index: u32) -> bool {
        let Some(idx) = self.subtables.iter().position(|s| s.keyer.mask == *mask) else { return false };
        let st = &mut self.subtables[idx];
        let sig = st.sig(key);
        if !st.remove_entry(pack(sig, index)) {
            return false;
        }
        self.entries -= 1;
        if st.len == 0 {
            self.subtables.remove(idx);
        }
        true
    }

    /// Re-orders the masks by hits since the last call (most hit first) and
    /// halves the counts, so the order follows the current traffic.
    pub fn rank(&mut self) {
        self.subtables.sort_by_key(|st| std::cmp::Reverse(st.hits));
        for st in &mut self.subtables {
            st.hits /= 2;
        }
    }

    /// The slot of the megaflow matching `key`, if any.
    pub fn lookup<K: FlowKeys>(&mut self, key: &FlowKey, flows: &K) -> Option<u32> {
        for st in &mut self.subtables {
            let sig = st.sig(key);
            if let Some(found) = st.find_from(key, sig, st.home(sig), flows) {
                st.hits += 1;
                return Some(found);
            }
        }
        None
    }

    /// Looks up the `pending` keys of a burst (bits of `keys`, at most 64).
    /// Returns the keys found; [`found`](Self::found) gives their slots.
    pub fn lookup_batch<K: FlowKeys>(&mut self, keys: &[FlowKey], pending: u64, flows: &K) -> u64 {
        let n = keys.len().min(64);
        let asked = pending & if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        let mut pending = asked;
        for st in &mut self.subtables {
            if pending == 0 {
                break;
            }
            for i in Bits(pending) {
                self.sigs[i] = st.sig(&keys[i]);
                crate::arch::prefetch(&st.slots[st.home(self.sigs[i])]);
            }
            for i in Bits(pending) {
                self.cand[i] = st.first_candidate(self.sigs[i]).unwrap_or(usize::MAX);
                if self.cand[i] != usize::MAX {
                    flows.prefetch_key(index_of(st.slots[self.cand[i]]));
                }
            }
            for i in Bits(pending) {
                if self.cand[i] == usize::MAX {
                    continue;
                }
                if let Some(found) = st.find_from(&keys[i], self.sigs[i], self.cand[i], flows) {
                    self.found[i] = found;
                    pending &= !(1u64 << i);
                    st.hits += 1;
                }
            }
        }
        asked & !pending
    }

    /// The slot the last [`lookup_batch`](Self::lookup_batch) found for key
    /// `i` (one of the keys it returned).
    #[inline(always)]
    pub fn found(&self, i: usize) -> u32 {
        self.found[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Dpcls;
    use crate::packet::key::{ip_to, ipv4, prefix_mask};
    use crate::packet::Field;

    /// Flow slots as a plain vector.
    struct Slots(Vec<Option<FlowKey>>);

    impl FlowKeys for Slots {
        fn key_at(&self, index: u32) -> Option<&FlowKey> {
            self.0.get(index as usize)?.as_ref()
        }
        fn prefetch_key(&self, _: u32) {}
    }

    fn masks() -> Vec<FlowMask> {
        [8u8, 16, 24, 32]
            .iter()
            .map(|&len| {
                let mut m = FlowMask::default();
                m.set(Field::NwDst, prefix_mask(true, len));
                m.exact(Field::InPort);
                m
            })
            .collect()
    }

    fn key(rng: &mut u64) -> FlowKey {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let r = *rng;
        let mut k = FlowKey::ZERO;
        // Few distinct values, so inserts collide and replace.
        k.set(Field::NwDst, ip_to(ipv4(10, (r % 3) as u8, ((r >> 8) % 4) as u8, ((r >> 16) % 64) as u8)));
        k.set(Field::InPort, u128::from((r >> 24) as u8 % 2));
        k
    }

    /// Random inserts, removes and lookups agree with the reference
    /// classifier (values there, slots here), through growth and backward
    /// shifts.
    #[test]
    fn agrees_with_the_reference_classifier() {
        let masks = masks();
        let mut idx = Megaflows::new();
        let mut reference: Dpcls<u32> = Dpcls::new();
        let mut slots = Slots(Vec::new());
        let mut live: Vec<(u32, usize)> = Vec::new();
        let mut rng = 0x1234_5678_9abc_def0u64;
        for step in 0..20_000 {
            let r = {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            if r % 3 != 0 || live.is_empty() {
                let mi = (r >> 8) as usize % masks.len();
                let k = key(&mut rng).masked(&masks[mi]);
                let slot = slots.0.len() as u32;
                slots.0.push(Some(k));
                let replaced = idx.insert(&k, &masks[mi], slot, &slots);
                assert_eq!(replaced, reference.insert(&k, &masks[mi], slot), "step {step}");
                if let Some(old) = replaced {
                    slots.0[old as usize] = None;
                    live.retain(|&(s, _)| s != old);
                }
                live.push((slot, mi));
            } else {
                let (slot, mi) = live.swap_remove((r >> 8) as usize % live.len());
                let k = slots.0[slot as usize].take().expect("live");
                assert!(idx.remove(&k, &masks[mi], slot), "step {step}");
                assert_eq!(reference.remove(&k, &masks[mi]), Some(slot));
            }
            assert_eq!(idx.len(), reference.len());
            let probes: Vec<FlowKey> = (0..40).map(|_| key(&mut rng)).collect();
            // A random subset of the probes asked for: only those are found.
            let asked = rng.rotate_left(17);
            let hit = idx.lookup_batch(&probes, asked, &slots);
            assert_eq!(hit & !asked, 0, "step {step}: only keys asked for are found");
            let mut want = [None; 40];
            reference.lookup_batch(&probes, &mut want);
            // Overlapping masks may answer with different megaflows; each
            // answer must match the probe.
            for (i, p) in probes.iter().enumerate() {
                if asked & (1 << i) == 0 {
                    continue;
                }
                let got = (hit & (1 << i) != 0).then(|| idx.found(i));
                assert_eq!(got.is_some(), want[i].is_some(), "step {step} probe {i}");
                if let Some(s) = got {
                    let (_, mi) = live.iter().find(|&&(l, _)| l == s).expect("a live slot");
                    assert!(p.eq_masked(slots.0[s as usize].as_ref().expect("live"), &masks[*mi]));
                    assert!(idx.lookup(p, &slots).is_some(), "the scalar lookup finds it too");
                }
            }
        }
        assert!(idx.subtable_count() <= masks.len());
    }

    #[test]
    fn removing_the_last_entry_of_a_mask_drops_its_table() {
        let masks = masks();
        let mut idx = Megaflows::new();
        let mut k = FlowKey::ZERO;
        k.set(Field::NwDst, ip_to(ipv4(10, 0, 0, 1)));
        let k = k.masked(&masks[0]);
        let slots = Slots(vec![Some(k)]);
        assert_eq!(idx.insert(&k, &masks[0], 0, &slots), None);
        assert_eq!(idx.subtable_count(), 1);
        assert!(!idx.remove(&k, &masks[1], 0), "another mask");
        assert!(!idx.remove(&k, &masks[0], 1), "another slot");
        assert!(idx.remove(&k, &masks[0], 0));
        assert_eq!((idx.len(), idx.subtable_count()), (0, 0));
    }
}
