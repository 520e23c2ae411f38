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

/// Hash of a whole key (exact-match cache). Four independent lanes keep the
/// multiply chain short.
#[inline]
pub fn hash_key(key: &FlowKey) -> u64 {
    let w = &key.words;
    let mut l = [0x243f_6a88_85a3_08d3u64, 0x1319_8a2e_0370_7344, 0xa409_3822_299f_31d0, 0x082e_fa98_ec4e_6c89];
    let mut i = 0;
    while i + 4 <= KEY_WORDS {
        for (lane, word) in l.iter_mut().zip(&w[i..i + 4]) {
            *lane = mix(*lane, *word);
        }
        i += 4;
    }
    for (lane, word) in l.iter_mut().zip(&w[i..]) {
        *lane = mix(*lane, *word);
    }
    finish(mix(mix(mix(l[0], l[1]), l[2]), l[3]))
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
