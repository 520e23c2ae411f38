//! Internet checksums (RFC 1071) and incremental updates (RFC 1624).

pub use offload::packet::{checksum, fold, sum};

/// The IPv4 header checksum of `header` (its checksum field is skipped).
pub fn ipv4_header(header: &[u8]) -> u16 {
    let len = header.len().min(60);
    let acc = sum(&header[..len.min(10)], 0) + if len > 12 { sum(&header[12..len], 0) } else { 0 };
    !fold(acc)
}

/// Whether an IPv4 header without options has a right checksum: its
/// one's-complement sum is 0xffff. Summed as five 32-bit words in the
/// machine's byte order: the sum of byte-swapped words is the byte-swapped
/// sum, and 0xffff is its own swap.
#[inline(always)]
pub fn ipv4_header_ok(h: &[u8; 20]) -> bool {
    let w = |at: usize| u64::from(u32::from_ne_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
    fold(w(0) + w(4) + w(8) + w(12) + w(16)) == 0xffff
}

/// RFC 1624 eqn. 3: the new checksum after a 16-bit field changes from
/// `old` to `new`.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    // Three 16-bit words sum below 2^18: two folds carry every bit back in
    // (the first leaves at most 0x1_0001), without `fold`'s loop.
    let acc = u32::from(!check) + u32::from(!old) + u32::from(new);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

/// UDP/TCP checksum over an IPv6 pseudo header and `l4` (checksum field zeroed
/// by the caller). A result of 0 is sent as 0xffff for UDP.
pub fn ipv6_l4(src: &[u8; 16], dst: &[u8; 16], proto: u8, l4: &[u8]) -> u16 {
    let len = l4.len() as u32;
    let mut acc = sum(src, 0) + sum(dst, 0);
    acc += u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(proto);
    acc += sum(l4, 0);
    !fold(acc)
}

/// UDP/TCP checksum over an IPv4 pseudo header and `l4`.
pub fn ipv4_l4(src: &[u8; 4], dst: &[u8; 4], proto: u8, l4: &[u8]) -> u16 {
    let mut acc = sum(src, 0) + sum(dst, 0);
    acc += l4.len() as u64 + u64::from(proto);
    acc += sum(l4, 0);
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example bytes.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
    }

    #[test]
    fn header_check_agrees_with_the_full_sum() {
        let mut h = [0x45u8, 0, 0, 84, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let c = ipv4_header(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(ipv4_header_ok(&h) && checksum(&h) == 0);
        let mut x = 0x9e37_79b9_u32;
        for at in 0..20 {
            for v in [0u8, 1, 0x7f, 0x80, 0xff, h[at] ^ 0xff] {
                let mut g = h;
                g[at] = v;
                assert_eq!(ipv4_header_ok(&g), checksum(&g) == 0, "byte {at} = {v:#x}");
            }
        }
        for _ in 0..10_000 {
            let mut g = [0u8; 20];
            for b in &mut g {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            let c = ipv4_header(&g);
            if x & 1 == 0 {
                g[10..12].copy_from_slice(&c.to_be_bytes());
            }
            assert_eq!(ipv4_header_ok(&g), checksum(&g) == 0, "{g:?}");
        }
        assert_eq!(ipv4_header_ok(&[0; 20]), checksum(&[0; 20]) == 0, "all zero");
    }

    #[test]
    fn incremental_equals_full() {
        let mut h = [0x45u8, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let c0 = ipv4_header(&h);
        for total in [20u16, 64, 1500, 65535] {
            h[2..4].copy_from_slice(&total.to_be_bytes());
            assert_eq!(update16(c0, 0, total), ipv4_header(&h), "total {total}");
        }
    }

    /// The two unconditional folds give what the looped fold gives, the
    /// largest sums (all three words 0xffff) included.
    #[test]
    fn update16_folds_every_carry() {
        let edge = [0u16, 1, 2, 0x7fff, 0x8000, 0xfffe, 0xffff];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut words = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u16
        };
        let mut cases: Vec<[u16; 3]> = Vec::new();
        for &a in &edge {
            for &b in &edge {
                for &c in &edge {
                    cases.push([a, b, c]);
                }
            }
        }
        cases.extend((0..20_000).map(|_| [words(), words(), words()]));
        for [check, old, new] in cases {
            let looped = !fold(u64::from(!check) + u64::from(!old) + u64::from(new));
            assert_eq!(update16(check, old, new), looped, "{check:#x} {old:#x} {new:#x}");
        }
    }

    #[test]
    fn odd_lengths() {
        assert_eq!(fold(sum(&[0xab], 0)), 0xab00);
        assert_eq!(fold(sum(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 0)), fold(sum(&[1, 2, 3, 4, 5, 6, 7, 8], 0x0900)));
    }
}
