//! Key hashing: a multiply-rotate mix per 64-bit word, finished with an
//! avalanche, so every key bit affects the bucket and set bits.

use crate::packet::{FlowKey, KEY_WORDS};

const K: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline(always)]
fn mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(23) ^ w).wrapping_mul(K)
}

#[inline(always)]
fn finish(mut h: u64) -> u64 {
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 32;
    h
}

/// Hash of a whole key (exact-match cache).
#[inline]
pub fn hash_key(key: &FlowKey) -> u64 {
    let mut h = 0u64;
    for i in 0..KEY_WORDS {
        h = mix(h, key.words[i]);
    }
    finish(h)
}

/// Hash of `key & mask` over the listed words (the mask's non-zero words).
#[inline]
pub fn hash_masked(key: &FlowKey, mask: &FlowKey, words: &[u8]) -> u64 {
    let mut h = 0u64;
    for &i in words {
        let i = usize::from(i) % KEY_WORDS;
        h = mix(h, key.words[i] & mask.words[i]);
    }
    finish(h)
}
