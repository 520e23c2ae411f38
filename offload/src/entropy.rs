//! The outer UDP source port of a VXLAN encapsulation.
//!
//! RFC 7348 asks for a source port derived from the inner packet's flow so
//! that underlay ECMP spreads tunnels' flows, in the dynamic range
//! 49152..=65535. A NIC picks it itself; the model e-switch and the software
//! encapsulation both use [`vxlan_src_port`] so that their outputs are equal
//! byte for byte and can be compared.
//!
//! The inner flow is [`InnerFlow`]: for IPv4 and IPv6, the addresses, the
//! transport protocol (after IPv6 extension headers) and, for TCP and UDP
//! that are not non-first fragments, the ports; for any other frame, the
//! Ethernet addresses and type. The software path builds it from its parsed
//! flow key, the model from the frame's bytes ([`InnerFlow::from_frame`]);
//! the vswitch crate tests that both agree.

/// The fields the source port depends on. Addresses are 128-bit, IPv4 as
/// `::ffff:a.b.c.d`; a non-IP frame has `ip: false` and its MACs in `src`/`dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InnerFlow {
    pub ip: bool,
    /// EtherType after any VLAN tags.
    pub ether_type: u16,
    pub src: u128,
    pub dst: u128,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const MAX_EXT_HEADERS: usize = 8;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn mac(b: &[u8], at: usize) -> Option<u128> {
    let s = b.get(at..at + 6)?;
    Some(s.iter().fold(0u128, |acc, &x| (acc << 8) | u128::from(x)))
}

impl InnerFlow {
    /// The inner flow of a well-formed Ethernet frame, as it leaves the
    /// switch (up to three VLAN tags: two received plus one pushed).
    /// A frame too short for the layers it announces gives what could be
    /// read (never a panic).
    pub fn from_frame(f: &[u8]) -> Self {
        let (Some(dst), Some(src)) = (mac(f, 0), mac(f, 6)) else { return InnerFlow::default() };
        let mut off = 14;
        let Some(mut ty) = be16(f, 12) else { return InnerFlow::default() };
        let mut tags = 0;
        while (ty == 0x8100 || ty == 0x88a8) && tags < 3 {
            let Some(next) = be16(f, off + 2) else { return InnerFlow::default() };
            ty = next;
            off += 4;
            tags += 1;
        }
        // 802.3 frames carry a length, not a type: one value for all of them,
        // as the switch's flow key has.
        if ty < 0x0600 {
            ty = 0x05ff;
        }
        let l3 = match ty {
            ETH_IPV4 => Self::ipv4(f, off),
            ETH_IPV6 => Self::ipv6(f, off),
            _ => None,
        };
        match l3 {
            Some(ip) => Self { ether_type: ty, ..ip },
            None => Self { ip: false, ether_type: ty, src, dst, ..Default::default() },
        }
    }

    fn ipv4(f: &[u8], off: usize) -> Option<Self> {
        let h = f.get(off..off + 20)?;
        let ihl = usize::from(h[0] & 0x0f) * 4;
        let v4 =
            |at: usize| 0xffff_0000_0000u128 | u128::from(u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
        let mut flow = InnerFlow { ip: true, src: v4(12), dst: v4(16), proto: h[9], ..Default::default() };
        let later_fragment = u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0;
        if !later_fragment {
            flow.ports_at(f, off + ihl);
        }
        Some(flow)
    }

    fn ipv6(f: &[u8], off: usize) -> Option<Self> {
        let h = f.get(off..off + 40)?;
        let addr = |at: usize| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&h[at..at + 16]);
            u128::from_be_bytes(a)
        };
        let mut flow = InnerFlow { ip: true, src: addr(8), dst: addr(24), ..Default::default() };
        let mut next = h[6];
        let mut at = off + 40;
        let mut later_fragment = false;
        for _ in 0..MAX_EXT_HEADERS {
            let len = match next {
                0 | 43 | 60 => (usize::from(*f.get(at + 1)?) + 1) * 8,
                51 => (usize::from(*f.get(at + 1)?) + 2) * 4,
                44 => {
                    later_fragment = be16(f, at + 2)? >> 3 != 0;
                    8
                }
                _ => break,
            };
            next = *f.get(at)?;
            at += len;
        }
        flow.proto = next;
        if !later_fragment {
            flow.ports_at(f, at);
        }
        Some(flow)
    }

    fn ports_at(&mut self, f: &[u8], at: usize) {
        if self.proto == 6 || self.proto == 17 {
            if let (Some(s), Some(d)) = (be16(f, at), be16(f, at + 2)) {
                self.src_port = s;
                self.dst_port = d;
            }
        }
    }
}

#[inline(always)]
fn mix(h: u64, v: u64) -> u64 {
    let x = (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

/// The outer UDP source port for an inner flow: 49152..=65535, equal for
/// every packet of the flow, different flows spread over the range. The
/// words are mixed in independent lanes, then together: half the latency
/// of one chain (this runs for every encapsulated packet). IPv4 addresses
/// (and IPv4-mapped IPv6 ones) fit one word: two lanes, three multiplies.
#[inline]
pub fn vxlan_src_port(flow: &InnerFlow) -> u16 {
    let ports = v4_ports(flow.proto, flow.src_port, flow.dst_port);
    if flow.ip && flow.src >> 32 == 0xffff && flow.dst >> 32 == 0xffff {
        return vxlan_src_port_v4((flow.src as u64) << 32 | (flow.dst as u64 & 0xffff_ffff), ports);
    }
    let h = if flow.ip {
        let a = mix(0x5bd1_e995, (flow.src >> 64) as u64 ^ (flow.dst as u64).rotate_left(29));
        let b = mix(0x2545_f491_4f6c_dd1d, flow.src as u64 ^ ((flow.dst >> 64) as u64).rotate_left(17));
        let c = mix(0x94d0_49bb_1331_11eb, ports);
        mix(a ^ b.rotate_left(21), c)
    } else {
        let a = mix(0x5bd1_e995, flow.src as u64);
        let b = mix(0x2545_f491_4f6c_dd1d, flow.dst as u64 ^ (u64::from(flow.ether_type) << 48));
        mix(a, b)
    };
    in_range(h)
}

/// The word of an inner IP flow's protocol and ports that
/// [`vxlan_src_port`] mixes: the protocol in the low byte, the source port in bits 16..32, the
/// destination port in bits 32..48.
#[inline(always)]
pub fn v4_ports(proto: u8, src_port: u16, dst_port: u16) -> u64 {
    u64::from(proto) | (u64::from(src_port) << 16) | (u64::from(dst_port) << 32)
}

/// [`vxlan_src_port`] of an IPv4 inner flow, from its addresses (the
/// source's in the high half, each as the number its bytes spell in
/// network order) and its [`v4_ports`] word: for callers that hold those
/// words already (a frame's bytes, loaded whole).
#[inline(always)]
pub fn vxlan_src_port_v4(addrs: u64, ports: u64) -> u16 {
    in_range(mix(mix(0x5bd1_e995, addrs), mix(0x94d0_49bb_1331_11eb, ports)))
}

/// A hash folded into the dynamic port range, 49152..=65535.
#[inline(always)]
fn in_range(h: u64) -> u16 {
    0xc000 | ((h ^ (h >> 32)) as u16 & 0x3fff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp4(sport: u16, frag: u16) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[20..22].copy_from_slice(&frag.to_be_bytes());
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&53u16.to_be_bytes());
        f
    }

    #[test]
    fn flows_and_ports() {
        let a = InnerFlow::from_frame(&udp4(1000, 0));
        assert!(a.ip);
        assert_eq!((a.proto, a.src_port, a.dst_port), (17, 1000, 53));
        assert_eq!(a.src, 0xffff_0a00_0001);
        let later = InnerFlow::from_frame(&udp4(1000, 0x0010));
        assert_eq!((later.src_port, later.dst_port), (0, 0), "a later fragment has no ports");
        let ports: std::collections::HashSet<u16> =
            (0..2000u16).map(|p| vxlan_src_port(&InnerFlow::from_frame(&udp4(p, 0)))).collect();
        assert!(ports.iter().all(|&p| p >= 49152));
        assert!(ports.len() > 1500, "2000 flows spread over the range: {} distinct ports", ports.len());
        assert_eq!(vxlan_src_port(&a), vxlan_src_port(&InnerFlow::from_frame(&udp4(1000, 0))), "stable");
        // Flows that differ in one address only spread as well, either address.
        for at in [26, 30] {
            let ports: std::collections::HashSet<u16> = (0..2000u16)
                .map(|i| {
                    let mut f = udp4(1000, 0);
                    f[at + 2..at + 4].copy_from_slice(&i.to_be_bytes());
                    vxlan_src_port(&InnerFlow::from_frame(&f))
                })
                .collect();
            assert!(ports.len() > 1500, "2000 addresses at {at}: {} distinct ports", ports.len());
        }
        let arp = {
            let mut f = vec![0u8; 42];
            f[0..6].copy_from_slice(&[0xff; 6]);
            f[12..14].copy_from_slice(&[0x08, 0x06]);
            f
        };
        let x = InnerFlow::from_frame(&arp);
        assert!(!x.ip);
        assert_eq!((x.ether_type, x.dst), (0x0806, 0xffff_ffff_ffff));
        assert_eq!(InnerFlow::from_frame(&[1, 2, 3]), InnerFlow::default(), "short frames do not panic");
    }

    /// Every field of the IPv4 lanes spreads the port alone (the
    /// destination port, the protocol, the high bytes of each address),
    /// and so do IPv6 addresses (the other lanes).
    #[test]
    fn every_field_spreads() {
        let base = InnerFlow::from_frame(&udp4(1000, 0));
        let spread = |vary: &dyn Fn(&mut InnerFlow, u16)| {
            let ports: std::collections::HashSet<u16> = (0..2000u16)
                .map(|i| {
                    let mut f = base;
                    vary(&mut f, i);
                    vxlan_src_port(&f)
                })
                .collect();
            ports.len()
        };
        assert!(spread(&|f, i| f.dst_port = i) > 1500);
        assert!(spread(&|f, i| f.src ^= u128::from(i) << 20) > 1500);
        assert!(spread(&|f, i| f.dst ^= u128::from(i) << 20) > 1500);
        assert!(spread(&|f, i| f.proto = i as u8) > 200, "256 protocols");
        let v6 = InnerFlow { src: 0x2001_0db8 << 96, dst: 0x2001_0db8 << 96 | 1, ..base };
        let ports: std::collections::HashSet<u16> =
            (0..2000u128).map(|i| vxlan_src_port(&InnerFlow { src: v6.src | i << 70, ..v6 })).collect();
        assert!(ports.len() > 1500, "IPv6 addresses spread: {}", ports.len());
    }
}
