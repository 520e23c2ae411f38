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

/// An IPv6 neighbour solicitation (135) or advertisement (136).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nd {
    pub icmp_type: u8,
    pub src: std::net::Ipv6Addr,
    pub target: std::net::Ipv6Addr,
    /// The source (NS) or target (NA) link-layer address option.
    pub lladdr: Option<[u8; 6]>,
    pub eth_src: [u8; 6],
}

/// Reads a neighbour solicitation/advertisement: IPv6 header at `l3` with
/// ICMPv6 right after it, hop limit 255 as RFC 4861 requires.
pub fn read_nd(frame: &[u8], l3: usize) -> Option<Nd> {
    let ip = frame.get(l3..l3 + 40)?;
    if ip[0] >> 4 != 6 || ip[6] != 58 || ip[7] != 255 {
        return None;
    }
    let end = (l3 + 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]))).min(frame.len());
    let icmp = frame.get(l3 + 40..end)?;
    if icmp.len() < 24 || !(icmp[0] == 135 || icmp[0] == 136) || icmp[1] != 0 {
        return None;
    }
    let addr = |b: &[u8]| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[..16]);
        std::net::Ipv6Addr::from(a)
    };
    let want = if icmp[0] == 135 { 1 } else { 2 };
    let mut lladdr = None;
    let mut opts = &icmp[24..];
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            break;
        }
        if opts[0] == want && len >= 8 {
            lladdr = Some([opts[2], opts[3], opts[4], opts[5], opts[6], opts[7]]);
        }
        opts = &opts[len..];
    }
    let mut eth_src = [0u8; 6];
    eth_src.copy_from_slice(frame.get(6..12)?);
    Some(Nd { icmp_type: icmp[0], src: addr(&ip[8..24]), target: addr(&icmp[8..24]), lladdr, eth_src })
}

/// The fields of an ND message this switch sends.
#[derive(Clone, Copy)]
struct NdOut {
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    icmp_type: u8,
    flags: u32,
    target: std::net::Ipv6Addr,
    /// 1: source link-layer address (NS), 2: target link-layer address (NA).
    option: u8,
}

fn write_nd_common(out: &mut [u8; MAX_CONTROL_FRAME], m: &NdOut) -> usize {
    let NdOut { eth_dst, eth_src, src, dst, icmp_type, flags, target, option } = *m;
    let len = 14 + 40 + 32;
    out[..len].fill(0);
    out[0..6].copy_from_slice(&eth_dst);
    out[6..12].copy_from_slice(&eth_src);
    out[12..14].copy_from_slice(&ETH_TYPE_IPV6.to_be_bytes());
    let ip = &mut out[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = 58;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let icmp = &mut out[54..len];
    icmp[0] = icmp_type;
    icmp[4..8].copy_from_slice(&flags.to_be_bytes());
    icmp[8..24].copy_from_slice(&target.octets());
    icmp[24] = option;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&eth_src);
    let c = checksum::ipv6_l4(&src.octets(), &dst.octets(), 58, icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    len
}

/// A neighbour solicitation for `target` from `src` (our address), to the
/// target's solicited-node multicast group.
pub fn write_ns(
    mac: [u8; 6],
    src: std::net::Ipv6Addr,
    target: std::net::Ipv6Addr,
    out: &mut [u8; MAX_CONTROL_FRAME],
) -> usize {
    let t = target.octets();
    let group =
        std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(t[13]), u16::from_be_bytes([t[14], t[15]]));
    let eth_dst = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
    write_nd_common(out, &NdOut { eth_dst, eth_src: mac, src, dst: group, icmp_type: 135, flags: 0, target, option: 1 })
}

/// A solicited neighbour advertisement of `ours` (at `mac`) to `to`.
pub fn write_na(
    mac: [u8; 6],
    ours: std::net::Ipv6Addr,
    to_mac: [u8; 6],
    to: std::net::Ipv6Addr,
    out: &mut [u8; MAX_CONTROL_FRAME],
) -> usize {
    // Flags: solicited (0x40) and override (0x20) in the first byte.
    let na = NdOut {
        eth_dst: to_mac,
        eth_src: mac,
        src: ours,
        dst: to,
        icmp_type: 136,
        flags: 0x6000_0000,
        target: ours,
        option: 2,
    };
    write_nd_common(out, &na)
}

#[cfg(test)]
mod nd_tests {
    use super::*;
    use crate::packet::parse;

    #[test]
    fn ns_and_na_roundtrip_with_valid_checksums() {
        let ours: std::net::Ipv6Addr = "2001:db8::1".parse().expect("v6");
        let peer: std::net::Ipv6Addr = "2001:db8::2".parse().expect("v6");
        let mut out = [0u8; MAX_CONTROL_FRAME];
        let n = write_ns([2, 0, 0, 0, 0, 1], ours, peer, &mut out);
        let p = parse(&out[..n], 0, None);
        assert_eq!((p.error, p.key.ip_proto(), p.key.tp_src()), (None, 58, 135));
        assert_eq!(&out[0..6], &[0x33, 0x33, 0xff, 0, 0, 2]);
        let ns = read_nd(&out[..n], 14).expect("ns");
        assert_eq!((ns.icmp_type, ns.src, ns.target, ns.lladdr), (135, ours, peer, Some([2, 0, 0, 0, 0, 1])));
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&out[22..38]);
        dst.copy_from_slice(&out[38..54]);
        assert_eq!(checksum::ipv6_l4(&src, &dst, 58, &out[54..n]), 0);
        let n = write_na([2, 0, 0, 0, 0, 9], peer, [2, 0, 0, 0, 0, 1], ours, &mut out);
        let na = read_nd(&out[..n], 14).expect("na");
        assert_eq!((na.icmp_type, na.target, na.lladdr), (136, peer, Some([2, 0, 0, 0, 0, 9])));
        out[21] = 64; // hop limit other than 255: not a valid ND message
        assert_eq!(read_nd(&out[..n], 14), None);
    }
}
