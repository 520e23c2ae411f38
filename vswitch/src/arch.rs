//! CPU hints the flow core uses without holding `unsafe` itself: the flow
//! core modules forbid unsafe code and call these safe wrappers.

/// Hints the CPU to fetch the cache line holding `value` (no effect on
/// correctness; used to overlap cache misses across a burst).
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    prefetch_addr((value as *const T).cast());
}

/// [`prefetch`] for every 64-byte line `value` spans.
#[inline(always)]
pub fn prefetch_lines<T>(value: &T) {
    prefetch_span(value, std::mem::size_of::<T>());
}

/// [`prefetch`] for every 64-byte line of the first `len` bytes (at most
/// its size) of `value`, wherever it starts in its first line.
#[inline(always)]
pub fn prefetch_span<T>(value: &T, len: usize) {
    let base = (value as *const T).cast::<u8>();
    let len = len.min(std::mem::size_of::<T>());
    let mut off = 0;
    while off < len {
        // `wrapping_add`: the address is computed without a dereference and
        // stays inside `value`; it is only hinted, never read.
        prefetch_addr(base.wrapping_add(off));
        off += 64;
    }
    if !std::mem::align_of::<T>().is_multiple_of(64) && len > 0 && off - 64 < len - 1 {
        // Not line-aligned: the last byte may sit on one line more than the
        // steps reached.
        prefetch_addr(base.wrapping_add(len - 1));
    }
}

#[inline(always)]
fn prefetch_addr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch never faults and reads nothing architecturally, so
    // any address is allowed; callers pass addresses inside live objects
    // anyway. SSE is baseline on x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The CPU's cycle counter (the TSC on x86_64; nanoseconds elsewhere), for
/// cycle accounting in the DPDK-free burst engine.
#[inline(always)]
pub fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc reads a counter; it has no memory effects and is
        // available on every x86_64 CPU.
        unsafe { std::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
    }
}

/// The flow key words an IPv4 key without tunnel metadata uses (in_port,
/// EtherType and VLAN, MACs, protocol and TOS, TTL and ports, the two
/// addresses' low halves): what an exact-match entry's one line holds.
pub const NARROW_WORDS: [usize; 6] = [0, 1, 2, 3, 5, 7];
/// The other key words: the addresses' high halves (zero for IPv4) and the
/// tunnel metadata.
pub const WIDE_WORDS: [usize; 7] = [4, 6, 8, 9, 10, 11, 12];

/// Whether `entry` equals the [`NARROW_WORDS`] of `key` (in that order)
/// and, when `rest_zero`, the [`WIDE_WORDS`] of `key` are zero:
/// the exact-match cache's one-line compare. Branch-free: written as an OR
/// of XORs in plain code, the compiler turned it into a compare and a branch
/// per word, with the key spilled to the stack first.
#[inline(always)]
pub fn narrow_key_match(entry: &[u64; 6], key: &[u64; 13], rest_zero: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let k = key;
        // SAFETY: SSE2 is baseline on x86_64 (the intrinsics need only it);
        // every load reads two initialised u64s (16 bytes) inside `entry`
        // or `key`, at constant offsets within their lengths (6 and 13), and
        // `_mm_loadu_si128` allows any alignment.
        unsafe {
            let ld = |p: *const u64| _mm_loadu_si128(p.cast());
            let (e, kp) = (entry.as_ptr(), k.as_ptr());
            let mut acc = _mm_or_si128(_mm_xor_si128(ld(e), ld(kp)), _mm_xor_si128(ld(e.add(2)), ld(kp.add(2))));
            acc = _mm_or_si128(acc, _mm_xor_si128(ld(e.add(4)), _mm_set_epi64x(k[7] as i64, k[5] as i64)));
            if rest_zero {
                let rest = _mm_or_si128(ld(kp.add(8)), ld(kp.add(10)));
                acc = _mm_or_si128(acc, _mm_or_si128(rest, _mm_set_epi64x(k[12] as i64, (k[4] | k[6]) as i64)));
            }
            _mm_movemask_epi8(_mm_cmpeq_epi8(acc, _mm_setzero_si128())) == 0xffff
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let narrow = NARROW_WORDS.iter().zip(entry).fold(0, |d, (&i, &e)| d | (e ^ key[i]));
        let rest = if rest_zero { WIDE_WORDS.iter().fold(0, |d, &i| d | key[i]) } else { 0 };
        narrow | rest == 0
    }
}

/// Whether two six-word arrays are equal: three 16-byte compares OR-ed,
/// no early exit (an exact-match entry against a frame key).
#[inline(always)]
pub fn words6_equal(a: &[u64; 6], b: &[u64; 6]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is baseline on x86_64; each load reads two
        // initialised u64s (16 bytes) at offsets 0, 2 and 4 of six-word
        // arrays, and `_mm_loadu_si128` allows any alignment.
        unsafe {
            let ld = |p: *const u64| _mm_loadu_si128(p.cast());
            let (x, y) = (a.as_ptr(), b.as_ptr());
            let mut acc = _mm_or_si128(_mm_xor_si128(ld(x), ld(y)), _mm_xor_si128(ld(x.add(2)), ld(y.add(2))));
            acc = _mm_or_si128(acc, _mm_xor_si128(ld(x.add(4)), ld(y.add(4))));
            _mm_movemask_epi8(_mm_cmpeq_epi8(acc, _mm_setzero_si128())) == 0xffff
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
    }
}

/// Bit `w` set for each of the four `lanes` equal to `value`: one 16-byte
/// compare (the exact-match cache's way search, without a branch per way).
#[inline(always)]
pub fn lanes4_equal(lanes: &[u32; 4], value: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is baseline on x86_64; the load reads the 16
        // initialised bytes of `lanes`, and `_mm_loadu_si128` allows any
        // alignment.
        unsafe {
            let eq = _mm_cmpeq_epi32(_mm_loadu_si128(lanes.as_ptr().cast()), _mm_set1_epi32(value as i32));
            _mm_movemask_ps(_mm_castsi128_ps(eq)) as u32
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        lanes.iter().enumerate().fold(0, |m, (w, &t)| m | (u32::from(t == value) << w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words6_equal_checks_every_bit() {
        let a: [u64; 6] = std::array::from_fn(|i| 0x0123_4567_89ab_cdef_u64.rotate_left(i as u32 * 7));
        assert!(words6_equal(&a, &a));
        for i in 0..6 {
            for bit in [0, 17, 63] {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!words6_equal(&a, &b), "word {i} bit {bit}");
            }
        }
    }

    #[test]
    fn lanes4_equal_sets_the_bit_of_every_equal_lane() {
        let tag = 0x8000_0001;
        for m in 0u32..16 {
            let lanes: [u32; 4] = std::array::from_fn(|w| if m & (1 << w) != 0 { tag } else { tag ^ (1 << (w * 9)) });
            assert_eq!(lanes4_equal(&lanes, tag), m, "lanes {lanes:x?}");
        }
    }

    #[test]
    fn narrow_key_match_checks_every_word() {
        let mut key = [0u64; 13];
        for (i, w) in key.iter_mut().enumerate() {
            *w = 0x0101_0101_0101_0101 * (i as u64 + 1);
        }
        let entry = NARROW_WORDS.map(|i| key[i]);
        assert!(narrow_key_match(&entry, &key, false));
        assert!(!narrow_key_match(&entry, &key, true), "the wide words are not zero");
        for i in 0..13 {
            let mut k = key;
            k[i] ^= 1 << (i * 5 % 64);
            let narrow = NARROW_WORDS.contains(&i);
            assert_eq!(narrow_key_match(&entry, &k, false), !narrow, "word {i}");
        }
        let mut zero_rest = key;
        for i in WIDE_WORDS {
            zero_rest[i] = 0;
        }
        assert!(narrow_key_match(&entry, &zero_rest, true));
        for i in WIDE_WORDS {
            let mut k = zero_rest;
            k[i] = 1 << 63;
            assert!(!narrow_key_match(&entry, &k, true), "word {i}");
        }
    }
}
