//! Packets the switch itself sends: ICMP "fragmentation needed", ICMPv6
//! "packet too big", ARP requests and replies for the underlay.

use crate::packet::checksum;
use crate::packet::parse::{ETH_TYPE_ARP, ETH_TYPE_IPV4, ETH_TYPE_IPV6};
use std::net::Ipv4Addr;

/// Largest frame these builders write.
pub const MAX_CONTROL_FRAME: usize = 14 + 8 + 1280;

/// IPv4 bytes of the offending packet quoted in ICMP (576 - 20 - 8).
const ICMP4_QUOTE: usize = 548;
/// IPv6 bytes quoted in ICMPv6 (1280 - 40 - 8).
const ICMP6_QUOTE: usize = 1232;

/// Writes an ICMP "fragmentation needed" (type 3, code 4) answering `orig`
/// (whose IPv4 header starts at `l3`) into `out`; returns its length. The
/// Ethernet addresses are swapped, VLAN tags kept, and the source address is
/// the one the packet was sent to. `None` if `orig` is not IPv4 or too short.
pub fn icmp4_frag_needed(
    orig: &[u8],
    l3: usize,
    next_hop_mtu: u16,
    out: &mut [u8; MAX_CONTROL_FRAME],
) -> Option<usize> {
    let ip = orig.get(l3..)?;
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let quote = &ip[..ip.len().min(ICMP4_QUOTE)];
    let l2 = write_l2(orig, l3, ETH_TYPE_IPV4, out)?;
    let total = 20 + 8 + quote.len();
    let h = out.get_mut(l2..l2 + total)?;
    h[..20].copy_from_slice(&[0x45, 0xc0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[12..16].copy_from_slice(&ip[16..20]);
    h[16..20].copy_from_slice(&ip[12..16]);
    let c = checksum::ipv4_header(&h[..20]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let icmp = &mut h[20..];
    icmp[..8].copy_from_slice(&[3, 4, 0, 0, 0, 0, 0, 0]);
    icmp[6..8].copy_from_slice(&next_hop_mtu.to_be_bytes());
    icmp[8..].copy_from_slice(quote);
    let c = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(l2 + total)
}

/// Writes an ICMPv6 "packet too big" answering `orig` (IPv6 header at `l3`).
pub fn icmp6_packet_too_big(orig: &[u8], l3: usize, mtu: u32, out: &mut [u8; MAX_CONTROL_FRAME]) -> Option<usize> {
    let ip = orig.get(l3..)?;
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return None;
    }
    let quote = &ip[..ip.len().min(ICMP6_QUOTE)];
    let l2 = write_l2(orig, l3, ETH_TYPE_IPV6, out)?;
    let payload = 8 + quote.len();
    let h = out.get_mut(l2..l2 + 40 + payload)?;
    h[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, 58, 64]);
    h[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&ip[24..40]);
    dst.copy_from_slice(&ip[8..24]);
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    let icmp = &mut h[40..];
    icmp[..8].copy_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    icmp[4..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(quote);
    let c = checksum::ipv6_l4(&src, &dst, 58, icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(l2 + 40 + payload)
}

/// Copies the L2 header with swapped addresses and the given inner type.
fn write_l2(orig: &[u8], l3: usize, eth_type: u16, out: &mut [u8]) -> Option<usize> {
    if l3 < 14 || orig.len() < l3 || out.len() < l3 {
        return None;
    }
    out[..l3].copy_from_slice(&orig[..l3]);
    out[0..6].copy_from_slice(&orig[6..12]);
    out[6..12].copy_from_slice(&orig[0..6]);
    out[l3 - 2..l3].copy_from_slice(&eth_type.to_be_bytes());
    Some(l3)
}

/// The fields of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

/// Reads an ARP packet whose ARP header starts at `l3`.
pub fn read_arp(frame: &[u8], l3: usize) -> Option<Arp> {
    let a = frame.get(l3..l3 + 28)?;
    if a[0..2] != [0, 1] || a[2..4] != [8, 0] || a[4] != 6 || a[5] != 4 {
        return None;
    }
    let mac = |at: usize| -> [u8; 6] { [a[at], a[at + 1], a[at + 2], a[at + 3], a[at + 4], a[at + 5]] };
    let ip = |at: usize| Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]);
    Some(Arp {
        op: u16::from_be_bytes([a[6], a[7]]),
        sender_mac: mac(8),
        sender_ip: ip(14),
        target_mac: mac(18),
        target_ip: ip(24),
    })
}

/// Writes an Ethernet/ARP frame (padded to 60 bytes); returns its length.
pub fn write_arp(eth_dst: [u8; 6], eth_src: [u8; 6], arp: &Arp, out: &mut [u8; MAX_CONTROL_FRAME]) -> usize {
    out[..60].fill(0);
    out[0..6].copy_from_slice(&eth_dst);
    out[6..12].copy_from_slice(&eth_src);
    out[12..14].copy_from_slice(&ETH_TYPE_ARP.to_be_bytes());
    let a = &mut out[14..42];
    a[..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
    a[6..8].copy_from_slice(&arp.op.to_be_bytes());
    a[8..14].copy_from_slice(&arp.sender_mac);
    a[14..18].copy_from_slice(&arp.sender_ip.octets());
    a[18..24].copy_from_slice(&arp.target_mac);
    a[24..28].copy_from_slice(&arp.target_ip.octets());
    60
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::parse;

    #[test]
    fn frag_needed_quotes_and_checksums() {
        let spec = crate::traffic::TrafficSpec {
            flows: 1,
            size: 1400,
            dl_src: [2, 0, 0, 0, 0, 1],
            dl_dst: vec![[2, 0, 0, 0, 0, 2]],
            nw_src: "10.0.0.1".parse().expect("ip"),
            nw_dst: "10.0.0.2".parse().expect("ip"),
        };
        let orig = crate::traffic::udp_frame(&spec, 0);
        let mut out = [0u8; MAX_CONTROL_FRAME];
        let n = icmp4_frag_needed(&orig, 14, 1450, &mut out).expect("icmp");
        let f = &out[..n];
        assert_eq!(n, 14 + 20 + 8 + 548);
        assert_eq!(&f[0..6], &orig[6..12]);
        let p = parse(f, 0, None);
        assert_eq!(p.error, None);
        assert_eq!((p.key.ip_proto(), p.key.tp_src(), p.key.tp_dst()), (1, 3, 4));
        assert_eq!(p.key.nw_src(), "10.0.0.2".parse::<std::net::IpAddr>().expect("ip"));
        assert_eq!(checksum::checksum(&f[14..34]), 0);
        assert_eq!(checksum::checksum(&f[34..]), 0);
        assert_eq!(u16::from_be_bytes([f[40], f[41]]), 1450);
        assert_eq!(&f[42..62], &orig[14..34], "quotes the original header");
    }

    #[test]
    fn packet_too_big_checksum() {
        let mut orig = vec![0u8; 14 + 40 + 1400];
        orig[12..14].copy_from_slice(&[0x86, 0xdd]);
        orig[14] = 0x60;
        orig[18..20].copy_from_slice(&1400u16.to_be_bytes());
        orig[20] = 17;
        orig[22..38].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        orig[38..54].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        let mut out = [0u8; MAX_CONTROL_FRAME];
        let n = icmp6_packet_too_big(&orig, 14, 1430, &mut out).expect("ptb");
        assert_eq!(n, MAX_CONTROL_FRAME - 8, "quote limited to 1280 bytes of IPv6 packet");
        let f = &out[..n];
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&f[22..38]);
        dst.copy_from_slice(&f[38..54]);
        assert_eq!(checksum::ipv6_l4(&src, &dst, 58, &f[54..]), 0);
        assert_eq!(parse(f, 0, None).key.tp_src(), 2);
    }

    #[test]
    fn arp_roundtrip() {
        let arp = Arp {
            op: 1,
            sender_mac: [2, 0, 0, 0, 0, 1],
            sender_ip: Ipv4Addr::new(198, 18, 0, 1),
            target_mac: [0; 6],
            target_ip: Ipv4Addr::new(198, 18, 0, 2),
        };
        let mut out = [0u8; MAX_CONTROL_FRAME];
        let n = write_arp([0xff; 6], arp.sender_mac, &arp, &mut out);
        assert_eq!(read_arp(&out[..n], 14), Some(arp));
        assert_eq!(parse(&out[..n], 0, None).error, None);
    }
}
