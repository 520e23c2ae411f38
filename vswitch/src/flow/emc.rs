//! Exact-match cache: per PMD thread, set-associative, fixed memory.
//!
//! Each set holds [`WAYS`] entries; a key maps to one set by its hash and may
//! sit in any way, but has a home way there (the hash's upper bits pick it).
//! Insertion takes the home way when it is free, else another free way, else
//! the home way (an eviction: cheap pseudo-random replacement). So while the
//! cache is not crowded nearly every key is in its home way, and a lookup
//! reads that one entry's line, without the tags: for a burst, call
//! [`Emc::prefetch_home`] for every packet, then [`Emc::at_home`] (or
//! [`Emc::at_home_frame`]). A key not found there may be in another way: for
//! those, [`Emc::prefetch`] the tags, then [`Emc::candidate`], then
//! [`Emc::verify`], each phase for all of them, so that cache misses overlap.
//! Values are small handles (the datapath stores a megaflow reference and
//! checks it is still alive).
//!
//! An entry is keyed either by a [`FlowKey`] or, for frames the parser's fast
//! path takes, by their [`FrameKey`] (the frame's own bytes: a hit needs no
//! flow key built). The datapath uses one form per frame, so the two never
//! stand for one packet; a lookup in one form never matches the other's entry.

use crate::arch::{NARROW_WORDS as NARROW, WIDE_WORDS as WIDE};
use crate::packet::parse::FrameKey;
use crate::packet::FlowKey;

/// Ways per set.
pub const WAYS: usize = 4;

/// [`Emc::candidate`]'s answer when no way of the set has the hash's tag:
/// past every slot, so a lookup that gets it finds no entry.
pub const NO_SLOT: u32 = u32::MAX;

/// One entry: one cache line, the key's [`NARROW`] words (or a frame key's
/// words) and the value. (The whole 104-byte key made an entry two lines,
/// and at 1k flows the second line's prefetch was a tenth of the stage.)
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Entry<V> {
    narrow: [u64; NARROW.len()],
    value: V,
    /// What `narrow` holds: [`NARROW_KEY`], [`WIDE_KEY`] or [`FRAME_KEY`];
    /// [`FREE`] exactly when the way's tag is 0 (a lookup in the home way
    /// reads no tag).
    form: u8,
}

/// A flow key whose [`WIDE`] words are all zero.
const NARROW_KEY: u8 = 0;
/// A flow key with a [`WIDE`] word not zero: they are in the wide array at
/// the same slot.
const WIDE_KEY: u8 = 1;
/// A [`FrameKey`]'s words.
const FRAME_KEY: u8 = 2;
/// Nothing: the way is free.
const FREE: u8 = 3;

/// An entry's [`WIDE`] words, when it has them.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct WideWords([u64; WIDE.len()]);

const _: () = assert!(std::mem::size_of::<Entry<u64>>() == 64);

/// The key's [`WIDE`] words, and whether one is not zero.
#[inline(always)]
fn wide_words(key: &FlowKey) -> ([u64; WIDE.len()], bool) {
    let w = WIDE.map(|i| key.words[i]);
    (w, w.iter().fold(0, |a, &b| a | b) != 0)
}

/// Insert/evict counters (hits and misses are the datapath's counters, per
/// burst: a per-lookup increment here was a loop-carried store).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmcStats {
    pub inserts: u64,
    pub evictions: u64,
}

/// The cache. `V` is a small copyable handle (its default fills free entries).
///
/// Tags (32 hash bits, never 0; 0 marks a free way) live apart from the
/// entries, four sets to a cache line, so a lookup that does not find its
/// key in the home way reads one tag line and then only the entry whose
/// tag matched.
pub struct Emc<V: Copy + Default> {
    tags: Box<[[u32; WAYS]]>,
    /// A way's entry is in use while its tag is not 0, and then only
    /// (its form is [`FREE`] otherwise; an `Option` here would add a line
    /// to every entry: its tag byte comes first).
    entries: Box<[Entry<V>]>,
    /// The [`WIDE`] words of the entries that have them, by slot.
    wide: Box<[WideWords]>,
    set_mask: usize,
    pub stats: EmcStats,
}

#[inline(always)]
fn tag_of(hash: u64) -> u32 {
    ((hash >> 32) as u32) | 1
}

/// The way of its set a key of `hash` is inserted into when that way is
/// free (and evicts when none is).
#[inline(always)]
fn home_way(hash: u64) -> usize {
    (hash >> 58) as usize % WAYS
}

/// The first way of `tags` that holds `tag`. Without a branch per way: the
/// way a flow sits in is as good as random (a set's second flow takes way 1),
/// and a compare loop mispredicted about 0.3 times a lookup at 1k flows
/// (callgrind's branch simulation).
#[inline(always)]
fn first_way(tags: &[u32; WAYS], tag: u32) -> Option<usize> {
    let hits = crate::arch::lanes4_equal(tags, tag);
    (hits != 0).then(|| hits.trailing_zeros() as usize)
}

impl<V> Entry<V> {
    /// Whether the entry at `slot` holds `key` (`wide`: every slot's
    /// [`WIDE`] words).
    #[inline(always)]
    fn holds(&self, key: &FlowKey, wide: &[WideWords], slot: usize) -> bool {
        match self.form {
            NARROW_KEY => crate::arch::narrow_key_match(&self.narrow, &key.words, true),
            WIDE_KEY => {
                crate::arch::narrow_key_match(&self.narrow, &key.words, false)
                    && wide.get(slot).is_some_and(|w| w.0 == wide_words(key).0)
            }
            _ => false,
        }
    }

    /// Whether the entry holds frame key `key`.
    #[inline(always)]
    fn holds_frame(&self, key: &FrameKey) -> bool {
        self.form == FRAME_KEY && crate::arch::words6_equal(&self.narrow, &key.0)
    }
}

impl<V: Copy + Default> Emc<V> {
    /// Bytes an entry takes: one line for a value of at most 15 bytes
    /// (the datapath asserts its value fits), two for larger ones.
    pub const ENTRY_BYTES: usize = std::mem::size_of::<Entry<V>>();

    /// A cache of at least `capacity` entries (rounded up to a power of two
    /// number of sets of [`WAYS`]), at most 2^31: every slot fits a `u32`
    /// below [`NO_SLOT`].
    pub fn new(capacity: usize) -> Self {
        let sets = capacity.min(1 << 31).div_ceil(WAYS).next_power_of_two().max(1);
        Self {
            tags: vec![[0u32; WAYS]; sets].into_boxed_slice(),
            entries: vec![Entry { narrow: [0; NARROW.len()], value: V::default(), form: FREE }; sets * WAYS]
                .into_boxed_slice(),
            wide: vec![WideWords([0; WIDE.len()]); sets * WAYS].into_boxed_slice(),
            set_mask: sets - 1,
            stats: EmcStats::default(),
        }
    }

    /// Entries the cache can hold.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    #[inline(always)]
    fn set(&self, hash: u64) -> usize {
        hash as usize & self.set_mask
    }

    /// The slot of `hash`'s home way.
    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        self.set(hash) * WAYS + home_way(hash)
    }

    /// Starts loading the entry in `hash`'s home way, and its wide words
    /// when `wide` (as [`candidate`](Self::candidate)). Call for a whole
    /// burst first.
    #[inline(always)]
    pub fn prefetch_home(&self, hash: u64, wide: bool) {
        let slot = self.home(hash);
        if let Some(e) = self.entries.get(slot) {
            crate::arch::prefetch(e);
        }
        if wide {
            if let Some(w) = self.wide.get(slot) {
                crate::arch::prefetch(w);
            }
        }
    }

    /// `key`'s value if it is in its home way (see
    /// [`prefetch_home`](Self::prefetch_home)); `None`: it may still be in
    /// another.
    #[inline(always)]
    pub fn at_home(&self, key: &FlowKey, hash: u64) -> Option<V> {
        let slot = self.home(hash);
        self.entries.get(slot).filter(|e| e.holds(key, &self.wide, slot)).map(|e| e.value)
    }

    /// [`at_home`](Self::at_home) for a frame key (with its
    /// [`hash`](FrameKey::hash)).
    #[inline(always)]
    pub fn at_home_frame(&self, key: &FrameKey, hash: u64) -> Option<V> {
        self.entries.get(self.home(hash)).filter(|e| e.holds_frame(key)).map(|e| e.value)
    }

    /// Starts loading the tags `hash` maps to (call for a whole burst first).
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        if let Some(t) = self.tags.get(self.set(hash)) {
            crate::arch::prefetch(t);
        }
    }

    /// The entry slot whose tag matches `hash`, else [`NO_SLOT`]; prefetches it, and
    /// its wide words when `wide` (the caller expects a key with tunnel
    /// metadata or IPv6 addresses). A hint the caller has without reading
    /// the key, which loaded here stalled [`verify`](Self::verify)'s loads
    /// of it; a wide key without the hint is still found, its wide words
    /// read on demand.
    #[inline(always)]
    pub fn candidate(&self, hash: u64, wide: bool) -> u32 {
        let set = self.set(hash);
        let Some(way) = self.tags.get(set).and_then(|t| first_way(t, tag_of(hash))) else { return NO_SLOT };
        let slot = set * WAYS + way;
        if let Some(e) = self.entries.get(slot) {
            crate::arch::prefetch(e);
        }
        if wide {
            if let Some(w) = self.wide.get(slot) {
                crate::arch::prefetch(w);
            }
        }
        slot as u32
    }

    /// Completes a lookup started with [`candidate`](Self::candidate).
    #[inline(always)]
    pub fn verify(&self, slot: u32, key: &FlowKey, hash: u64) -> Option<V> {
        let s = slot as usize;
        match self.entries.get(s) {
            Some(e) if e.holds(key, &self.wide, s) => Some(e.value),
            // A tag collision in the first matching way: check the others.
            Some(_) => self.lookup_slow(hash, |e, s| e.holds(key, &self.wide, s)),
            None => None,
        }
    }

    /// [`verify`](Self::verify) for a frame key (its
    /// [`hash`](FrameKey::hash) is the one the lookup started with).
    #[inline(always)]
    pub fn verify_frame(&self, slot: u32, key: &FrameKey, hash: u64) -> Option<V> {
        // NO_SLOT is past the last entry.
        match self.entries.get(slot as usize) {
            Some(e) if e.holds_frame(key) => Some(e.value),
            Some(_) => self.lookup_slow(hash, |e, _| e.holds_frame(key)),
            None => None,
        }
    }

    /// The value of the first entry of `hash`'s set with its tag that
    /// `holds` (entry, slot).
    fn lookup_slow(&self, hash: u64, holds: impl Fn(&Entry<V>, usize) -> bool) -> Option<V> {
        let set = self.set(hash);
        let tag = tag_of(hash);
        let tags = self.tags.get(set)?;
        (0..WAYS)
            .filter(|&w| tags[w] == tag)
            .map(|w| set * WAYS + w)
            .find_map(|s| self.entries.get(s).filter(|e| holds(e, s)).map(|e| e.value))
    }

    /// Looks frame key `key` up (tests; the datapath runs the phases).
    #[cfg(test)]
    pub fn lookup_frame(&self, key: &FrameKey) -> Option<V> {
        let hash = key.hash();
        self.at_home_frame(key, hash).or_else(|| self.verify_frame(self.candidate(hash, false), key, hash))
    }

    /// Looks `key` (with its [`hash_key`](super::hash::hash_key)) up.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, hash: u64) -> Option<V> {
        self.at_home(key, hash).or_else(|| self.verify(self.candidate(hash, wide_words(key).1), key, hash))
    }

    /// Inserts or replaces `key`.
    pub fn insert(&mut self, key: &FlowKey, hash: u64, value: V) {
        let slot = self.slot_for(hash, |e, s, wide| e.holds(key, wide, s));
        let (words, wide) = wide_words(key);
        let form = if wide { WIDE_KEY } else { NARROW_KEY };
        self.entries[slot] = Entry { narrow: NARROW.map(|i| key.words[i]), value, form };
        if wide {
            self.wide[slot] = WideWords(words);
        }
    }

    /// Inserts or replaces frame key `key` (with its [`hash`](FrameKey::hash)).
    pub fn insert_frame(&mut self, key: &FrameKey, hash: u64, value: V) {
        let slot = self.slot_for(hash, |e, _, _| e.holds_frame(key));
        self.entries[slot] = Entry { narrow: key.0, value, form: FRAME_KEY };
    }

    /// The slot an insertion of `hash` writes, tagged for it: the entry
    /// that `holds` the key already, else the home way if it is free, else
    /// another free way, else the home way (an eviction).
    fn slot_for(&mut self, hash: u64, holds: impl Fn(&Entry<V>, usize, &[WideWords]) -> bool) -> usize {
        let set = self.set(hash);
        let tag = tag_of(hash);
        let base = set * WAYS;
        let tags = self.tags[set];
        let same = (0..WAYS).find(|&w| tags[w] == tag && holds(&self.entries[base + w], base + w, &self.wide));
        let home = home_way(hash);
        let free = if tags[home] == 0 { Some(home) } else { tags.iter().position(|&t| t == 0) };
        let way = match same.or(free) {
            Some(w) => w,
            None => {
                self.stats.evictions += 1;
                home
            }
        };
        self.tags[set][way] = tag;
        self.stats.inserts += 1;
        base + way
    }

    /// Drops every entry whose value `dead` says is stale.
    pub fn remove_if(&mut self, mut dead: impl FnMut(&V) -> bool) {
        for (slot, e) in self.entries.iter_mut().enumerate() {
            let tag = &mut self.tags[slot / WAYS][slot % WAYS];
            if *tag != 0 && dead(&e.value) {
                *tag = 0;
                e.form = FREE;
            }
        }
    }

    /// Values of the occupied entries.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(slot, _)| self.tags[slot / WAYS][slot % WAYS] != 0)
            .map(|(_, e)| &e.value)
    }

    /// Empties the cache.
    pub fn clear(&mut self) {
        self.tags.iter_mut().for_each(|t| *t = [0; WAYS]);
        self.entries.iter_mut().for_each(|e| e.form = FREE);
    }

    /// Occupied entries.
    pub fn len(&self) -> usize {
        self.tags.iter().flatten().filter(|&&t| t != 0).count()
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

    /// Keys that differ only in words an entry keeps apart (tunnel
    /// metadata, the addresses' high halves) are told apart, whichever
    /// of them is in the cache.
    #[test]
    fn keys_differing_in_wide_words_do_not_match() {
        let mut narrow = key(3);
        narrow.set(Field::NwSrc, 0xffff_0a00_0001);
        narrow.set(Field::TpSrc, 1234);
        let variants: Vec<FlowKey> = [Field::NwSrc, Field::NwDst, Field::TunId, Field::TunSrc, Field::TunDst]
            .iter()
            .map(|&f| {
                let mut k = narrow;
                // A bit in the field's high word (or, for 32-bit fields, any).
                k.set(f, k.get(f) | if f == Field::TunId { 100 } else { 1 << 100 });
                k
            })
            .collect();
        for (i, k) in variants.iter().enumerate() {
            for (j, other) in variants.iter().enumerate().filter(|(j, _)| *j != i) {
                assert!(!k.same(other), "{i} {j}");
            }
        }
        let mut all = vec![narrow];
        all.extend(variants);
        for (i, stored) in all.iter().enumerate() {
            let mut emc = Emc::<u32>::new(64);
            // The same hash for all: only the entry's words tell them apart.
            emc.insert(stored, 42, i as u32);
            for (j, probe) in all.iter().enumerate() {
                let want = (i == j).then_some(i as u32);
                assert_eq!(emc.lookup(probe, 42), want, "stored {i}, probed {j}");
            }
        }
    }

    /// Frame keys and flow keys live side by side: each is found in its
    /// own form only, even when the words and the hash are the same.
    #[test]
    fn frame_keys_and_flow_keys_do_not_match_each_other() {
        let mut emc = Emc::<u32>::new(64);
        let k = key(5);
        let fk = FrameKey(NARROW.map(|i| k.words[i]));
        // One hash for both: only the entries' forms tell them apart.
        let hash = fk.hash();
        emc.insert(&k, hash, 1);
        assert_eq!(emc.verify_frame(emc.candidate(hash, false), &fk, hash), None, "a flow key's entry");
        emc.insert_frame(&fk, hash, 2);
        assert_eq!(emc.lookup(&k, hash), Some(1));
        assert_eq!(emc.lookup_frame(&fk), Some(2));
        emc.insert_frame(&fk, hash, 3);
        assert_eq!(emc.lookup_frame(&fk), Some(3), "re-insert replaces in place");
        assert_eq!(emc.len(), 2);
        let mut other = fk;
        other.0[5] ^= 1;
        assert_eq!(emc.lookup_frame(&other), None);
        // Many frame keys: whatever survived maps to its own value.
        let many = |i: u32| FrameKey([u64::from(i), 7, 8, 9, 10, 0]);
        for i in 1000..2000u32 {
            emc.insert_frame(&many(i), many(i).hash(), i);
        }
        let found = (1000..2000u32)
            .filter_map(|i| emc.lookup_frame(&many(i)).inspect(|&v| assert_eq!(v, i, "frame key {i}")))
            .count();
        assert!(found > 0);
        assert_eq!(found, emc.values().filter(|&&v| v >= 1000).count());
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
        let odd = (0..10_000u32).filter(|i| i % 2 == 1 && emc.lookup(&key(*i), hash_key(&key(*i))).is_some()).count();
        assert!(odd > 0 && odd < found, "both kinds survived: {odd} odd of {found}");
        emc.remove_if(|v| v % 2 == 0);
        assert_eq!(emc.len(), odd, "exactly the even values went");
        for i in 0..10_000u32 {
            let k = key(i);
            if let Some(v) = emc.lookup(&k, hash_key(&k)) {
                assert_eq!(v % 2, 1, "an even value was left");
            }
        }
        emc.clear();
        assert!(emc.is_empty());
    }

    /// A hash for set `set` with home way `home` and a tag told apart by `i`
    /// (the tag's low bit is always set).
    fn placed(set: u64, home: u64, i: u64) -> u64 {
        (home << 58) | ((i + 1) << 33) | set
    }

    /// A key goes to its home way while that way is free, and is found
    /// there without the tags; the set's other keys are found through them.
    /// A full set evicts the home way. A removed or cleared entry is found
    /// nowhere, its home way included (its form says it is free).
    #[test]
    fn home_way() {
        let mut emc = Emc::<u32>::new(64);
        let hashes: Vec<u64> = (0..4).map(|i| placed(5, 0, i)).collect();
        for (i, &h) in hashes.iter().enumerate() {
            emc.insert(&key(i as u32), h, i as u32);
        }
        assert_eq!(emc.at_home(&key(0), hashes[0]), Some(0), "the first takes its home way");
        for (i, &h) in hashes.iter().enumerate().skip(1) {
            assert_eq!(emc.at_home(&key(i as u32), h), None, "key {i} is in another way");
            assert_eq!(emc.lookup(&key(i as u32), h), Some(i as u32), "key {i} through the tags");
        }
        // The set is full: a key whose home is way 2 evicts what is there.
        let h = placed(5, 2, 9);
        emc.insert(&key(9), h, 9);
        assert_eq!((emc.stats.evictions, emc.at_home(&key(9), h)), (1, Some(9)));
        assert_eq!(emc.lookup(&key(2), hashes[2]), None, "way 2's key went");
        assert_eq!(emc.len(), 4);
        // Removed: not found at home, nor through the tags.
        emc.remove_if(|&v| v == 0);
        assert_eq!((emc.at_home(&key(0), hashes[0]), emc.lookup(&key(0), hashes[0])), (None, None));
        // Frame keys the same way.
        let fk = FrameKey([1, 2, 3, 4, 5, 0]);
        let fh = placed(7, 3, 1);
        emc.insert_frame(&fk, fh, 11);
        assert_eq!(emc.at_home_frame(&fk, fh), Some(11));
        emc.clear();
        assert_eq!(
            (emc.at_home_frame(&fk, fh), emc.at_home(&key(9), h), emc.lookup(&key(1), hashes[1])),
            (None, None, None)
        );
        assert!(emc.is_empty());
    }
}
