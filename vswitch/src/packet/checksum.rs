//! Internet checksums (RFC 1071) and incremental updates (RFC 1624).

pub use offload::packet::{checksum, fold, sum};

/// The IPv4 header checksum of `header` (its checksum field is skipped).
pub fn ipv4_header(header: &[u8]) -> u16 {
    let len = header.len().min(60);
    let acc = sum(&header[..len.min(10)], 0) + if len > 12 { sum(&header[12..len], 0) } else { 0 };
    !fold(acc)
}

/// RFC 1624 eqn. 3: the new checksum after a 16-bit field changes from
/// `old` to `new`.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!check) + u64::from(!old) + u64::from(new);
    !fold(acc)
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
    fn incremental_equals_full() {
        let mut h = [0x45u8, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let c0 = ipv4_header(&h);
        for total in [20u16, 64, 1500, 65535] {
            h[2..4].copy_from_slice(&total.to_be_bytes());
            assert_eq!(update16(c0, 0, total), ipv4_header(&h), "total {total}");
        }
    }

    #[test]
    fn odd_lengths() {
        assert_eq!(fold(sum(&[0xab], 0)), 0xab00);
        assert_eq!(fold(sum(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 0)), fold(sum(&[1, 2, 3, 4, 5, 6, 7, 8], 0x0900)));
    }
}
