//! Key hashing: a multiply-rotate mix per 64-bit word, finished with an
//! avalanche, so every key bit affects the bucket and set bits.

use crate::packet::{FlowKey, FlowMask, KEY_WORDS};

const K: u64 = crate::packet::key::HASH_K;

use crate::packet::key::hash_words;

/// Hash of a whole key (exact-match cache): [`FlowKey::hash`].
#[inline]
pub fn hash_key(key: &FlowKey) -> u64 {
    key.hash()
}

/// A mask with the indices of its non-zero words (a megaflow or rule mask
/// uses a few of the key's 13 words): the rule table's quick hash reads
/// only those; the hash and the compare read every word, which costs less
/// than finding the words through the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskWords {
    pub mask: FlowMask,
    words: [u8; KEY_WORDS],
    nwords: u8,
}

impl MaskWords {
    pub fn new(mask: &FlowMask) -> Self {
        let mut words = [0u8; KEY_WORDS];
        let mut nwords = 0;
        for (i, &w) in mask.0.words.iter().enumerate() {
            if w != 0 {
                words[nwords] = i as u8;
                nwords += 1;
            }
        }
        Self { mask: *mask, words, nwords: nwords as u8 }
    }

    #[inline(always)]
    pub fn words(&self) -> &[u8] {
        &self.words[..usize::from(self.nwords)]
    }

    /// The hash of `key & mask`: every word masked (those the mask does
    /// not use become zero), then hashed as the exact-match cache hashes a
    /// whole key ([`hash_words`]: four multiplies in parallel). A chain of
    /// one multiply per listed word, each word found through the index
    /// list, was a third of the megaflow stage at 100k flows.
    #[inline(always)]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        let m = &self.mask.0.words;
        let w: [u64; KEY_WORDS] = std::array::from_fn(|i| key.words[i] & m[i]);
        hash_words(&w)
    }

    /// A cheaper hash of `key & mask` (one multiply), for indexes where a
    /// collision only costs time, never an answer (the rule table's stages).
    #[inline(always)]
    pub fn quick_hash(&self, key: &FlowKey) -> u64 {
        let mut x = 0u64;
        for &i in self.words() {
            let i = usize::from(i).min(KEY_WORDS - 1);
            x = x.rotate_left(19) ^ (key.words[i] & self.mask.0.words[i]);
        }
        let h = (x ^ 0x243f_6a88_85a3_08d3).wrapping_mul(K);
        h ^ (h >> 29)
    }

    /// Whether `key` and `stored` agree under the mask (`stored` is kept
    /// masked), over every word without branching: cheaper than finding
    /// the mask's words through the index list.
    #[inline(always)]
    pub fn matches(&self, stored: &FlowKey, key: &FlowKey) -> bool {
        let m = &self.mask.0.words;
        let diff = (key.words.iter().zip(&stored.words).zip(m)).fold(0u64, |d, ((k, s), m)| d | ((k ^ s) & m));
        diff == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::parse::parse;
    use crate::traffic::{udp_frame, TrafficSpec};

    /// 256k UDP flows that differ in source address and port only: no two
    /// share a 64-bit hash, and their exact-match sets (low 12 bits) are
    /// evenly loaded.
    #[test]
    fn flows_spread_over_buckets() {
        let spec = TrafficSpec {
            flows: 1 << 18,
            size: 60,
            dl_src: [2, 0, 0, 0, 0, 1],
            dl_dst: vec![[2, 0, 0, 0, 0, 2]],
            nw_src: std::net::Ipv4Addr::new(10, 0, 0, 0),
            nw_dst: std::net::Ipv4Addr::new(10, 255, 255, 1),
        };
        let mut hashes: Vec<u64> =
            (0..spec.flows).map(|i| hash_key(&parse(&udp_frame(&spec, i), 1, None).key)).collect();
        let mut buckets = vec![0u32; 1 << 12];
        for h in &hashes {
            buckets[(*h as usize) & 0xfff] += 1;
        }
        let (min, max) = (buckets.iter().min().copied().unwrap_or(0), buckets.iter().max().copied().unwrap_or(0));
        // 64 per bucket on average; a uniform hash stays well inside 32..110.
        assert!(min > 32 && max < 110, "bucket load {min}..{max}");
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), 1 << 18);
    }
}
