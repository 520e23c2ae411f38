//! The signature-match cache: between the exact-match cache and the
//! megaflow classifier, a direct-mapped array from a packet's key hash to
//! the megaflow that last served that hash, 8 bytes an entry (the hash's
//! upper half as signature, the flow's slot index). A hit is verified
//! against the flow itself (the packet's key under the flow's mask equals
//! the flow's key), so a stale or colliding entry costs a lookup, never a
//! wrong answer. It answers in one probe however many megaflow masks there
//! are, and holds far more flows than the exact-match cache (1M entries =
//! 8 MiB against 8,192 full keys).

/// Entry: signature in the upper 32 bits, flow slot index in the lower.
const EMPTY: u64 = u64::MAX;

pub struct Smc {
    entries: Vec<u64>,
    mask: usize,
}

impl Smc {
    /// `entries` rounded up to a power of two; 0 disables the cache.
    pub fn new(entries: usize) -> Self {
        let n = if entries == 0 { 0 } else { entries.next_power_of_two() };
        Self { entries: vec![EMPTY; n], mask: n.saturating_sub(1) }
    }

    pub fn is_enabled(&self) -> bool {
        !self.entries.is_empty()
    }

    /// Entries (a power of two, or 0).
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    #[inline(always)]
    fn slot(&self, hash: u64) -> usize {
        // The exact-match cache indexes by the low bits; mix in the high
        // ones so that its set conflicts are not this table's too.
        (hash ^ (hash >> 29)) as usize & self.mask
    }

    #[inline(always)]
    fn signature(hash: u64) -> u32 {
        (hash >> 32) as u32
    }

    /// Starts loading the entry for `hash`.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        if let Some(e) = self.entries.get(self.slot(hash)) {
            crate::arch::prefetch(e);
        }
    }

    /// The flow slot index last stored for `hash`, if its signature matches.
    #[inline(always)]
    pub fn get(&self, hash: u64) -> Option<u32> {
        let e = *self.entries.get(self.slot(hash))?;
        (e != EMPTY && (e >> 32) as u32 == Self::signature(hash)).then_some(e as u32)
    }

    /// Remembers that flow slot `index` serves `hash`.
    #[inline(always)]
    pub fn insert(&mut self, hash: u64, index: u32) {
        let slot = self.slot(hash);
        if let Some(e) = self.entries.get_mut(slot) {
            *e = (u64::from(Self::signature(hash)) << 32) | u64::from(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_checks_the_signature() {
        let mut s = Smc::new(1000);
        assert_eq!(s.capacity(), 1024);
        let h = 0xdead_beef_0000_0042u64;
        assert_eq!(s.get(h), None);
        s.insert(h, 7);
        assert_eq!(s.get(h), Some(7));
        // Same slot, other signature: no answer.
        assert_eq!(s.get(h ^ (1 << 40)), None);
        s.insert(h ^ (1 << 40), 9);
        assert_eq!(s.get(h), None);
        let off = Smc::new(0);
        assert!(!off.is_enabled());
        assert_eq!(off.get(h), None);
    }
}
