//! Property tests of the offload crate:
//! - random rules -> lower -> read back -> the same rule;
//! - model(lower(rule)) on random packets equals a plain reference matcher and
//!   executor written over the vocabulary (match decision and output bytes).
//!
//! The reference shares no code with the model: it reads packets with its own
//! typed parser (etherparse for the IP headers) and edits them as byte
//! vectors, building encapsulations with etherparse.

use offload::device::FlowDevice;
use offload::entropy::{vxlan_src_port, InnerFlow};
use offload::model::{ModelDevice, ModelSwitch, Profile, Verdict};
use offload::packet::{PacketBuf, VecPacket};
use offload::rte_flow::{lower, read_back};
use offload::rule::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

// ---- Generators ------------------------------------------------------------------------------

fn mac() -> BoxedStrategy<Mac> {
    // A few distinct values so that packets and rules meet often.
    prop_oneof![Just([2, 0, 0, 0, 0, 1]), Just([2, 0, 0, 0, 0, 2]), any::<[u8; 6]>()].boxed()
}

fn masked_mac() -> BoxedStrategy<Option<Masked<Mac>>> {
    prop_oneof![
        2 => Just(None),
        2 => mac().prop_map(|m| Some(Masked::exact(m))),
        1 => (mac(), any::<[u8; 6]>()).prop_filter_map("non-zero mask", |(v, m)| {
            (m != [0; 6]).then(|| Some(Masked { value: std::array::from_fn(|i| v[i] & m[i]), mask: m }))
        }),
    ]
    .boxed()
}

fn masked16() -> BoxedStrategy<Option<Masked<u16>>> {
    prop_oneof![
        2 => Just(None),
        2 => prop_oneof![Just(53u16), Just(80), any::<u16>()].prop_map(|v| Some(Masked::exact(v))),
        1 => (any::<u16>(), 1..=u16::MAX).prop_map(|(v, m)| Some(Masked { value: v & m, mask: m })),
    ]
    .boxed()
}

fn v4() -> BoxedStrategy<Ipv4Addr> {
    prop_oneof![
        Just(Ipv4Addr::new(10, 0, 0, 1)),
        Just(Ipv4Addr::new(10, 1, 2, 3)),
        any::<u32>().prop_map(Ipv4Addr::from)
    ]
    .boxed()
}

fn v6() -> BoxedStrategy<Ipv6Addr> {
    prop_oneof![Just("2001:db8::1".parse().expect("v6")), any::<u128>().prop_map(Ipv6Addr::from)].boxed()
}

fn prefix4() -> BoxedStrategy<Option<Ipv4Prefix>> {
    prop_oneof![
        Just(None),
        (v4(), 1u8..=32).prop_map(|(a, len)| {
            let p = Ipv4Prefix { addr: a, len };
            Some(Ipv4Prefix { addr: Ipv4Addr::from(u32::from(a) & p.mask()), len })
        }),
    ]
    .boxed()
}

fn prefix6() -> BoxedStrategy<Option<Ipv6Prefix>> {
    prop_oneof![
        Just(None),
        (v6(), 1u8..=128).prop_map(|(a, len)| {
            let p = Ipv6Prefix { addr: a, len };
            Some(Ipv6Prefix { addr: Ipv6Addr::from(u128::from(a) & p.mask()), len })
        }),
    ]
    .boxed()
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![Just(None), s.prop_map(Some)]
}

fn l3() -> BoxedStrategy<Option<L3Match>> {
    let ipv4 = (
        prefix4(),
        prefix4(),
        opt(prop_oneof![Just(17u8), Just(6), any::<u8>()]),
        opt(0u8..64),
        opt(0u8..4),
        opt(any::<u8>()),
        opt(Just(false)),
    )
        .prop_map(|(src, dst, proto, dscp, ecn, ttl, fragment)| {
            L3Match::Ipv4(Ipv4Match { src, dst, proto, dscp, ecn, ttl, fragment })
        });
    let ipv6 = (
        prefix6(),
        prefix6(),
        opt(prop_oneof![Just(17u8), Just(6), any::<u8>()]),
        opt(0u8..64),
        opt(0u8..4),
        opt(any::<u8>()),
    )
        .prop_map(|(src, dst, next_header, dscp, ecn, hop_limit)| {
            L3Match::Ipv6(Ipv6Match { src, dst, next_header, dscp, ecn, hop_limit })
        });
    prop_oneof![1 => Just(None), 2 => ipv4.prop_map(Some), 1 => ipv6.prop_map(Some)].boxed()
}

fn l4() -> BoxedStrategy<Option<L4Match>> {
    let ports = || (masked16(), masked16()).prop_map(|(src, dst)| PortsMatch { src, dst });
    let flags = opt((any::<u8>(), 1..=u8::MAX).prop_map(|(v, m)| Masked { value: v & m, mask: m }));
    prop_oneof![
        Just(None),
        ports().prop_map(|p| Some(L4Match::Udp(p))),
        (ports(), flags).prop_map(|(ports, flags)| Some(L4Match::Tcp { ports, flags })),
    ]
    .boxed()
}

fn vlan() -> BoxedStrategy<VlanMatch> {
    (opt(0u16..4096), opt(0u8..8), opt(prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100)]), opt(any::<bool>()))
        .prop_map(|(vid, pcp, inner_type, more_tags)| VlanMatch { vid, pcp, inner_type, more_tags })
        .boxed()
}

fn headers() -> BoxedStrategy<Headers> {
    (
        masked_mac(),
        masked_mac(),
        opt(prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x0806), Just(0x8100)]),
        opt(any::<bool>()),
        prop::collection::vec(vlan(), 0..=2),
        l3(),
        l4(),
    )
        .prop_flat_map(|parts| (Just(parts), 0u8..10))
        .prop_map(|((dst, src, ether_type, tagged, mut vlans, mut l3, l4), coherence)| {
            let tagged = if vlans.is_empty() { tagged } else { tagged.filter(|t| *t) };
            let l4 = if l3.is_some() { l4 } else { None };
            let mut ether_type = ether_type;
            if coherence > 0 {
                // What the switch produces: types that agree with the layers below.
                let l3_type = match &l3 {
                    Some(L3Match::Ipv4(_)) => Some(0x0800),
                    Some(L3Match::Ipv6(_)) => Some(0x86dd),
                    None => None,
                };
                let n = vlans.len();
                for (i, v) in vlans.iter_mut().enumerate() {
                    if i + 1 < n {
                        v.inner_type = v.inner_type.map(|_| 0x8100);
                        v.more_tags = v.more_tags.map(|_| true);
                    } else {
                        v.inner_type = v.inner_type.map(|t| l3_type.unwrap_or(if t == 0x8100 { 0x0806 } else { t }));
                        v.more_tags = v.more_tags.map(|_| false);
                    }
                }
                ether_type = match (n, tagged) {
                    (0, Some(true)) => ether_type.map(|_| 0x8100),
                    (0, _) => ether_type.map(|t| l3_type.unwrap_or(if t == 0x8100 { 0x0806 } else { t })),
                    _ => ether_type.map(|_| 0x8100),
                };
                let proto = match &l4 {
                    Some(L4Match::Udp(_)) => Some(17),
                    Some(L4Match::Tcp { .. }) => Some(6),
                    None => None,
                };
                match &mut l3 {
                    Some(L3Match::Ipv4(ip)) => ip.proto = ip.proto.and(proto).or(ip.proto.filter(|_| proto.is_none())),
                    Some(L3Match::Ipv6(ip)) => {
                        ip.next_header = ip.next_header.and(proto).or(ip.next_header.filter(|_| proto.is_none()))
                    }
                    None => {}
                }
            }
            if vlans.len() == 2 && vlans[0].more_tags == Some(false) {
                vlans[0].more_tags = Some(true);
            }
            Headers { eth: EthMatch { dst, src, ether_type, tagged }, vlans, l3, l4 }
        })
        .boxed()
}

fn tunnel() -> BoxedStrategy<Option<TunnelMatch>> {
    let v4t = (opt(mac()), v4(), v4(), prop_oneof![Just(4789u16), Just(8472)], 0..=MAX_VNI).prop_map(
        |(eth_dst, s, d, udp_dst, vni)| TunnelMatch { eth_dst, src: IpAddr::V4(s), dst: IpAddr::V4(d), udp_dst, vni },
    );
    let v6t = (opt(mac()), v6(), v6(), 0..=MAX_VNI).prop_map(|(eth_dst, s, d, vni)| TunnelMatch {
        eth_dst,
        src: IpAddr::V6(s),
        dst: IpAddr::V6(d),
        udp_dst: VXLAN_PORT,
        vni,
    });
    prop_oneof![3 => Just(None), 1 => v4t.prop_map(Some), 1 => v6t.prop_map(Some)].boxed()
}

fn encap() -> BoxedStrategy<VxlanEncap> {
    let ip = prop_oneof![
        (v4(), v4(), any::<u8>(), 1u8..=255, any::<bool>()).prop_map(|(src, dst, tos, ttl, df)| EncapIp::V4 {
            src,
            dst,
            tos,
            ttl,
            df
        }),
        (v6(), v6(), any::<u8>(), 1u8..=255).prop_map(|(src, dst, traffic_class, hop_limit)| EncapIp::V6 {
            src,
            dst,
            traffic_class,
            hop_limit
        }),
    ];
    (mac(), mac(), ip, prop_oneof![Just(4789u16), 1..=u16::MAX], 0..=MAX_VNI)
        .prop_map(|(eth_src, eth_dst, ip, udp_dst, vni)| VxlanEncap { eth_src, eth_dst, ip, udp_dst, vni })
        .boxed()
}

#[derive(Debug, Clone)]
enum Edit {
    Push(u16, u16, u8),
    Pop,
    SetVid(u16),
    SetSrc(Mac),
    SetDst(Mac),
}

fn edit() -> BoxedStrategy<Edit> {
    prop_oneof![
        (prop_oneof![Just(TPID_8021Q), Just(TPID_8021AD)], 0u16..4096, 0u8..8)
            .prop_map(|(t, v, p)| Edit::Push(t, v, p)),
        Just(Edit::Pop),
        (0u16..4096).prop_map(Edit::SetVid),
        mac().prop_map(Edit::SetSrc),
        mac().prop_map(Edit::SetDst),
    ]
    .boxed()
}

/// A valid rule: the generator builds actions the way the switch does (edits
/// that need a tag only when the pattern guarantees one).
fn rule() -> BoxedStrategy<HwRule> {
    (
        0u16..3,
        tunnel(),
        headers(),
        0u32..4,
        any::<bool>(),
        opt(1u32..1000),
        prop::collection::vec(edit(), 0..3),
        opt(encap()),
        prop_oneof![4 => (0u16..3).prop_map(HwAction::Output), 1 => Just(HwAction::Drop)],
    )
        .prop_map(|(ingress, tunnel, headers, priority, count, age, edits, encap, fate)| {
            let mut actions = Vec::new();
            if count {
                actions.push(HwAction::Count);
            }
            if let Some(t) = age {
                actions.push(HwAction::Age { timeout_s: t });
            }
            if tunnel.is_some() {
                actions.push(HwAction::VxlanDecap);
            }
            // Track whether the frame is tagged at this point, as the model
            // (like mlx5) checks VLAN edits against the pattern.
            let mut tagged = !headers.vlans.is_empty() || headers.eth.tagged == Some(true);
            let mut pushed = false;
            for e in edits {
                match e {
                    Edit::Push(t, v, p) if !pushed => {
                        actions.push(HwAction::PushVlan { ethertype: t, vid: v, pcp: p });
                        pushed = true;
                    }
                    Edit::Pop if tagged && !pushed => {
                        actions.push(HwAction::PopVlan);
                        tagged = false;
                    }
                    Edit::SetVid(v) if tagged && !pushed => actions.push(HwAction::SetVlanVid(v)),
                    Edit::SetSrc(m) => actions.push(HwAction::SetMacSrc(m)),
                    Edit::SetDst(m) => actions.push(HwAction::SetMacDst(m)),
                    _ => {}
                }
            }
            if let Some(e) = encap {
                actions.push(HwAction::VxlanEncap(e));
            }
            actions.push(fate);
            HwRule { pattern: Pattern { ingress, tunnel, headers }, priority, actions }
        })
        .prop_filter("valid vocabulary", |r| r.validate().is_ok())
        .boxed()
}

// ---- Packets ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Frame {
    dst: Mac,
    src: Mac,
    /// (TPID, TCI) per tag.
    tags: Vec<(u16, u16)>,
    /// The type after the tags when there is no IP layer.
    ether_type: u16,
    ip: Option<Ip>,
    l4: Option<L4>,
    payload: usize,
}

#[derive(Debug, Clone)]
enum Ip {
    V4 { src: Ipv4Addr, dst: Ipv4Addr, proto: u8, tos: u8, ttl: u8, frag: u16 },
    V6 { src: Ipv6Addr, dst: Ipv6Addr, next: u8, tc: u8, hop: u8 },
}

#[derive(Debug, Clone)]
enum L4 {
    Udp(u16, u16),
    Tcp(u16, u16, u8),
}

fn build(fr: &Frame) -> Vec<u8> {
    let mut l4 = Vec::new();
    match fr.l4 {
        Some(L4::Udp(s, d)) => {
            l4.extend_from_slice(&s.to_be_bytes());
            l4.extend_from_slice(&d.to_be_bytes());
            l4.extend_from_slice(&((8 + fr.payload) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        Some(L4::Tcp(s, d, flags)) => {
            l4.extend_from_slice(&s.to_be_bytes());
            l4.extend_from_slice(&d.to_be_bytes());
            l4.extend_from_slice(&[0; 8]);
            l4.extend_from_slice(&[0x50, flags, 0x10, 0, 0, 0, 0, 0]);
        }
        None => {}
    }
    l4.extend((0..fr.payload).map(|i| i as u8));
    let mut f = Vec::new();
    f.extend_from_slice(&fr.dst);
    f.extend_from_slice(&fr.src);
    let mut types: Vec<u16> = fr.tags.iter().map(|t| t.0).collect();
    let ip_type = match &fr.ip {
        Some(Ip::V4 { .. }) => 0x0800,
        Some(Ip::V6 { .. }) => 0x86dd,
        None => fr.ether_type,
    };
    types.push(ip_type);
    f.extend_from_slice(&types[0].to_be_bytes());
    for (i, (_, tci)) in fr.tags.iter().enumerate() {
        f.extend_from_slice(&tci.to_be_bytes());
        f.extend_from_slice(&types[i + 1].to_be_bytes());
    }
    match &fr.ip {
        Some(Ip::V4 { src, dst, proto, tos, ttl, frag }) => {
            let mut h = etherparse::Ipv4Header::new(
                l4.len() as u16,
                *ttl,
                etherparse::IpNumber(*proto),
                src.octets(),
                dst.octets(),
            )
            .expect("ipv4 header");
            h.dscp = etherparse::Ipv4Dscp::try_new(tos >> 2).expect("dscp");
            h.ecn = etherparse::Ipv4Ecn::try_new(tos & 3).expect("ecn");
            h.dont_fragment = frag & 0x4000 != 0;
            h.more_fragments = frag & 0x2000 != 0;
            h.fragment_offset = etherparse::IpFragOffset::try_new(frag & 0x1fff).expect("offset");
            h.header_checksum = h.calc_header_checksum();
            h.write(&mut f).expect("write ipv4");
        }
        Some(Ip::V6 { src, dst, next, tc, hop }) => {
            let h = etherparse::Ipv6Header {
                traffic_class: *tc,
                flow_label: etherparse::Ipv6FlowLabel::ZERO,
                payload_length: l4.len() as u16,
                next_header: etherparse::IpNumber(*next),
                hop_limit: *hop,
                source: src.octets(),
                destination: dst.octets(),
            };
            h.write(&mut f).expect("write ipv6");
        }
        None => {}
    }
    f.extend_from_slice(&l4);
    f
}

/// A frame that mostly satisfies `h` (every compared bit set as the rule
/// says, the rest random), with `noise` flipping a few choices so that some
/// packets miss.
fn frame_for(h: &Headers, seed: &[u8; 32], noise: u8) -> Frame {
    let r = |i: usize| seed[i % 32];
    let pick_mac = |m: &Option<Masked<Mac>>, base: usize| -> Mac {
        let rand: Mac = std::array::from_fn(|i| r(base + i));
        match m {
            Some(m) => std::array::from_fn(|i| (m.value[i] & m.mask[i]) | (rand[i] & !m.mask[i])),
            None => rand,
        }
    };
    let pick16 = |m: &Option<Masked<u16>>, rand: u16| m.map_or(rand, |m| (m.value & m.mask) | (rand & !m.mask));
    let mut tags: Vec<(u16, u16)> = h
        .vlans
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut tci = u16::from_be_bytes([r(7 + i), r(9 + i)]);
            if let Some(vid) = v.vid {
                tci = (tci & 0xf000) | vid;
            }
            if let Some(p) = v.pcp {
                tci = (tci & 0x1fff) | (u16::from(p) << 13);
            }
            (0x8100, tci)
        })
        .collect();
    if h.vlans.is_empty() && h.eth.tagged == Some(true) {
        tags.push((0x8100, u16::from(r(13))));
    }
    if h.vlans.len() == 1 && h.vlans[0].more_tags == Some(true) {
        tags.push((0x8100, u16::from(r(14))));
    }
    let ip = match &h.l3 {
        Some(L3Match::Ipv4(m)) => {
            let addr = |p: &Option<Ipv4Prefix>, base: usize| {
                let rand = u32::from_be_bytes([r(base), r(base + 1), r(base + 2), r(base + 3)]);
                p.map_or(Ipv4Addr::from(rand), |p| Ipv4Addr::from((u32::from(p.addr) & p.mask()) | (rand & !p.mask())))
            };
            let tos = (m.dscp.unwrap_or(r(20) >> 2) << 2) | m.ecn.unwrap_or(r(21) & 3);
            Some(Ip::V4 {
                src: addr(&m.src, 0),
                dst: addr(&m.dst, 4),
                proto: m.proto.unwrap_or(if r(22) & 1 == 0 { 17 } else { 6 }),
                tos,
                ttl: m.ttl.unwrap_or(r(23)),
                frag: if m.fragment == Some(false) || r(24) & 3 != 0 { 0x4000 } else { 0x2000 | u16::from(r(25) & 1) },
            })
        }
        Some(L3Match::Ipv6(m)) => {
            let addr = |p: &Option<Ipv6Prefix>, base: usize| {
                let rand = u128::from_be_bytes(std::array::from_fn(|i| r(base + i)));
                p.map_or(Ipv6Addr::from(rand), |p| Ipv6Addr::from((u128::from(p.addr) & p.mask()) | (rand & !p.mask())))
            };
            Some(Ip::V6 {
                src: addr(&m.src, 0),
                dst: addr(&m.dst, 16),
                next: m.next_header.unwrap_or(if r(22) & 1 == 0 { 17 } else { 6 }),
                tc: (m.dscp.unwrap_or(r(20) >> 2) << 2) | m.ecn.unwrap_or(r(21) & 3),
                hop: m.hop_limit.unwrap_or(r(23)),
            })
        }
        None if h
            .vlans
            .last()
            .and_then(|v| v.inner_type)
            .or(h.eth.ether_type.filter(|_| h.vlans.is_empty()))
            .is_some_and(|t| t != 0x0800 && t != 0x86dd) =>
        {
            None
        }
        None => match r(26) % 3 {
            0 => None,
            1 => Some(Ip::V4 {
                src: Ipv4Addr::new(10, 0, 0, r(1)),
                dst: Ipv4Addr::new(10, 0, 0, 2),
                proto: 17,
                tos: 0,
                ttl: 64,
                frag: 0,
            }),
            _ => Some(Ip::V6 { src: Ipv6Addr::LOCALHOST, dst: Ipv6Addr::LOCALHOST, next: 6, tc: 0, hop: 64 }),
        },
    };
    let proto = match &ip {
        Some(Ip::V4 { proto, .. }) => Some(*proto),
        Some(Ip::V6 { next, .. }) => Some(*next),
        None => None,
    };
    let l4 = match (&h.l4, proto) {
        (Some(L4Match::Udp(p)), _) => Some(L4::Udp(pick16(&p.src, u16::from(r(27))), pick16(&p.dst, u16::from(r(28))))),
        (Some(L4Match::Tcp { ports, flags }), _) => Some(L4::Tcp(
            pick16(&ports.src, u16::from(r(27))),
            pick16(&ports.dst, u16::from(r(28))),
            flags.map_or(r(29), |f| (f.value & f.mask) | (r(29) & !f.mask)),
        )),
        (None, Some(17)) => Some(L4::Udp(u16::from(r(27)), u16::from(r(28)))),
        (None, Some(6)) => Some(L4::Tcp(u16::from(r(27)), u16::from(r(28)), r(29))),
        _ => None,
    };
    let ether_type = match (h.vlans.last().and_then(|v| v.inner_type), h.eth.ether_type) {
        (Some(t), _) if h.l3.is_none() => t,
        (_, Some(t)) if h.vlans.is_empty() && !tags.is_empty() => t,
        _ => 0x0806,
    };
    let mut fr = Frame {
        dst: pick_mac(&h.eth.dst, 0),
        src: pick_mac(&h.eth.src, 6),
        tags,
        ether_type,
        ip,
        l4,
        payload: usize::from(r(30) % 40),
    };
    if h.vlans.is_empty() && fr.tags.is_empty() {
        if let Some(t) = h.eth.ether_type {
            if t == 0x8100 {
                fr.tags.push((0x8100, 7));
            } else if fr.ip.is_none() {
                fr.ether_type = t;
            }
        }
    }
    // Noise: break one thing.
    match noise % 8 {
        0 => fr.dst[5] ^= 1,
        1 => fr.tags.clear(),
        2 => fr.tags.push((0x8100, 3)),
        3 => {
            if let Some(Ip::V4 { proto, .. }) = &mut fr.ip {
                *proto ^= 1;
            }
        }
        4 => fr.l4 = None,
        _ => {}
    }
    if matches!(fr.ip, Some(Ip::V4 { frag, .. }) if frag & 0x1fff != 0) {
        // A non-first fragment carries no transport header.
        fr.l4 = None;
    }
    fr
}

/// Wraps `inner` in VXLAN as `t` describes (optionally breaking it).
fn vxlan_wrap(t: &TunnelMatch, inner: &[u8], seed: &[u8; 32], noise: u8) -> Vec<u8> {
    let mut dst = t.eth_dst.unwrap_or([2, 0, 0, 0, 0, seed[3]]);
    let mut vni = t.vni;
    let mut dport = t.udp_dst;
    match noise % 11 {
        5 => dst[0] ^= 4,
        6 => vni ^= 1,
        7 => dport ^= 1,
        _ => {}
    }
    let mut payload = vec![0x08, 0, 0, 0];
    payload.extend_from_slice(&vni.to_be_bytes()[1..]);
    payload.push(0);
    payload.extend_from_slice(inner);
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, seed[4]], dst);
    let mut out = Vec::new();
    match (t.src, t.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let s = if noise % 11 == 8 { Ipv4Addr::from(u32::from(s) ^ 1) } else { s };
            builder.ipv4(s.octets(), d.octets(), 64).udp(u16::from(seed[5]) | 0xc000, dport).write(&mut out, &payload)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            builder.ipv6(s.octets(), d.octets(), 64).udp(u16::from(seed[5]) | 0xc000, dport).write(&mut out, &payload)
        }
        _ => unreachable!("validated: same family"),
    }
    .expect("vxlan packet");
    if noise % 11 == 9 && out.len() > 20 {
        out[24] ^= 0x10; // IPv4 checksum or IPv6 payload bytes: a corrupt outer header
    }
    out
}

// ---- Reference -------------------------------------------------------------------------------

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A header stack read by the reference.
#[derive(Debug, Default)]
struct Stack {
    dst: Mac,
    src: Mac,
    first_type: u16,
    /// (tci, type after the tag)
    tags: Vec<(u16, u16)>,
    l3_off: usize,
    ip: Option<RefIp>,
    l4: Option<(usize, u8)>,
    udp_end: usize,
}

#[derive(Debug)]
enum RefIp {
    V4(etherparse::Ipv4Header),
    V6(etherparse::Ipv6Header),
}

fn read_stack(f: &[u8]) -> Option<Stack> {
    if f.len() < 14 {
        return None;
    }
    let mut s = Stack {
        dst: f[0..6].try_into().ok()?,
        src: f[6..12].try_into().ok()?,
        first_type: be16(f, 12),
        ..Default::default()
    };
    let mut ty = s.first_type;
    let mut off = 14;
    while (ty == 0x8100 || ty == 0x88a8) && s.tags.len() < 2 && f.len() >= off + 4 {
        let next = be16(f, off + 2);
        s.tags.push((be16(f, off), next));
        ty = next;
        off += 4;
    }
    s.l3_off = off;
    let end;
    match ty {
        0x0800 => match etherparse::Ipv4Header::from_slice(&f[off..]) {
            Ok((h, _)) => {
                end = (off + usize::from(h.total_len)).min(f.len());
                let l4 = off + h.header_len();
                let first = u16::from(h.fragment_offset) == 0;
                let proto = h.protocol.0;
                s.ip = Some(RefIp::V4(h));
                if first {
                    s.l4 = Some((l4, proto));
                }
            }
            Err(_) => return Some(s),
        },
        0x86dd => match etherparse::Ipv6Header::from_slice(&f[off..]) {
            Ok((h, _)) => {
                end = (off + 40 + usize::from(h.payload_length)).min(f.len());
                s.l4 = Some((off + 40, h.next_header.0));
                s.ip = Some(RefIp::V6(h));
            }
            Err(_) => return Some(s),
        },
        _ => return Some(s),
    }
    // Keep the transport header only if it fits in the IP packet.
    s.l4 = match s.l4 {
        Some((at, 17)) if end >= at + 8 => {
            s.udp_end = (at + usize::from(be16(f, at + 4))).clamp(at + 8, end);
            Some((at, 17))
        }
        Some((at, 6)) if end >= at + 20 => Some((at, 6)),
        _ => None,
    };
    Some(s)
}

fn mac_ok(m: &Option<Masked<Mac>>, v: &Mac) -> bool {
    m.is_none_or(|m| (0..6).all(|i| v[i] & m.mask[i] == m.value[i]))
}

fn headers_match(h: &Headers, f: &[u8], s: &Stack) -> bool {
    if h.is_any() {
        return true;
    }
    if !mac_ok(&h.eth.dst, &s.dst) || !mac_ok(&h.eth.src, &s.src) {
        return false;
    }
    if h.eth.ether_type.is_some_and(|t| t != s.first_type) {
        return false;
    }
    if h.eth.tagged.is_some_and(|t| t == s.tags.is_empty()) {
        return false;
    }
    for (i, v) in h.vlans.iter().enumerate() {
        let Some(&(tci, next)) = s.tags.get(i) else { return false };
        if v.vid.is_some_and(|x| x != tci & 0x0fff) || v.pcp.is_some_and(|p| u16::from(p) != tci >> 13) {
            return false;
        }
        if v.inner_type.is_some_and(|t| t != next) {
            return false;
        }
        if v.more_tags.is_some_and(|m| m != (next == 0x8100 || next == 0x88a8)) {
            return false;
        }
    }
    let tos_ok = |dscp: Option<u8>, ecn: Option<u8>, tos: u8| {
        dscp.is_none_or(|d| d == tos >> 2) && ecn.is_none_or(|e| e == tos & 3)
    };
    match (&h.l3, &s.ip) {
        (None, _) => {}
        (Some(L3Match::Ipv4(m)), Some(RefIp::V4(ip))) => {
            let in4 = |p: &Option<Ipv4Prefix>, a: [u8; 4]| {
                p.is_none_or(|p| u32::from_be_bytes(a) & p.mask() == u32::from(p.addr))
            };
            let tos = (u8::from(ip.dscp) << 2) | u8::from(ip.ecn);
            let frag = ip.more_fragments || u16::from(ip.fragment_offset) != 0;
            if !in4(&m.src, ip.source)
                || !in4(&m.dst, ip.destination)
                || m.proto.is_some_and(|p| p != ip.protocol.0)
                || !tos_ok(m.dscp, m.ecn, tos)
                || m.ttl.is_some_and(|t| t != ip.time_to_live)
                || (m.fragment == Some(false) && frag)
            {
                return false;
            }
        }
        (Some(L3Match::Ipv6(m)), Some(RefIp::V6(ip))) => {
            let in6 = |p: &Option<Ipv6Prefix>, a: [u8; 16]| {
                p.is_none_or(|p| u128::from_be_bytes(a) & p.mask() == u128::from(p.addr))
            };
            if !in6(&m.src, ip.source)
                || !in6(&m.dst, ip.destination)
                || m.next_header.is_some_and(|p| p != ip.next_header.0)
                || !tos_ok(m.dscp, m.ecn, ip.traffic_class)
                || m.hop_limit.is_some_and(|t| t != ip.hop_limit)
            {
                return false;
            }
        }
        _ => return false,
    }
    let port_ok = |m: &Option<Masked<u16>>, v: u16| m.is_none_or(|m| v & m.mask == m.value);
    match (&h.l4, s.l4) {
        (None, _) => true,
        (Some(L4Match::Udp(p)), Some((at, 17))) => port_ok(&p.src, be16(f, at)) && port_ok(&p.dst, be16(f, at + 2)),
        (Some(L4Match::Tcp { ports, flags }), Some((at, 6))) => {
            port_ok(&ports.src, be16(f, at))
                && port_ok(&ports.dst, be16(f, at + 2))
                && flags.is_none_or(|fl| f[at + 13] & fl.mask == fl.value)
        }
        _ => false,
    }
}

fn checksum(b: &[u8]) -> u16 {
    let mut acc: u32 = b.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// For a decap rule: (the inner frame's bytes, whether the outer checksums are good).
fn tunnel_match(t: &TunnelMatch, f: &[u8]) -> Option<(Vec<u8>, bool)> {
    let s = read_stack(f)?;
    let (at, 17) = s.l4? else { return None };
    if be16(f, at + 2) != t.udp_dst || s.udp_end < at + 16 {
        return None;
    }
    if t.eth_dst.is_some_and(|d| d != s.dst) {
        return None;
    }
    let good = match &s.ip {
        Some(RefIp::V4(ip)) => {
            if IpAddr::V4(ip.source.into()) != t.src || IpAddr::V4(ip.destination.into()) != t.dst {
                return None;
            }
            let hdr_ok = checksum(&f[s.l3_off..s.l3_off + ip.header_len()]) == 0;
            let csum = be16(f, at + 6);
            let udp_ok = csum == 0
                || etherparse::UdpHeader::from_slice(&f[at..])
                    .ok()
                    .and_then(|(u, _)| u.calc_checksum_ipv4(ip, &f[at + 8..s.udp_end]).ok())
                    .is_some_and(|c| c == csum);
            hdr_ok && udp_ok
        }
        Some(RefIp::V6(ip)) => {
            if IpAddr::V6(ip.source.into()) != t.src || IpAddr::V6(ip.destination.into()) != t.dst {
                return None;
            }
            let csum = be16(f, at + 6);
            csum != 0
                && etherparse::UdpHeader::from_slice(&f[at..])
                    .ok()
                    .and_then(|(u, _)| u.calc_checksum_ipv6(ip, &f[at + 8..s.udp_end]).ok())
                    .is_some_and(|c| c == csum)
        }
        None => return None,
    };
    let vni = u32::from_be_bytes([0, f[at + 12], f[at + 13], f[at + 14]]);
    if vni != t.vni {
        return None;
    }
    Some((f[at + 16..s.udp_end].to_vec(), good))
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Miss,
    Out(u16, Vec<u8>),
    Drop,
}

fn reference(rule: &HwRule, port: u16, f: &[u8]) -> Outcome {
    if port != rule.pattern.ingress {
        return Outcome::Miss;
    }
    let mut frame = f.to_vec();
    if let Some(t) = &rule.pattern.tunnel {
        let Some((inner, good)) = tunnel_match(t, f) else { return Outcome::Miss };
        let Some(s) = read_stack(&inner) else {
            return if rule.pattern.headers.is_any() && good { Outcome::Out(0, vec![]) } else { Outcome::Miss };
        };
        if !headers_match(&rule.pattern.headers, &inner, &s) {
            return Outcome::Miss;
        }
        if !good {
            return Outcome::Miss;
        }
        frame = inner;
    } else {
        let Some(s) = read_stack(f) else {
            return if rule.pattern.headers.is_any() { run_actions(rule, frame) } else { Outcome::Miss };
        };
        if !headers_match(&rule.pattern.headers, f, &s) {
            return Outcome::Miss;
        }
    }
    run_actions(rule, frame)
}

fn run_actions(rule: &HwRule, mut f: Vec<u8>) -> Outcome {
    for a in &rule.actions {
        match a {
            HwAction::Count | HwAction::Age { .. } | HwAction::VxlanDecap => {}
            HwAction::PushVlan { ethertype, vid, pcp } => {
                let tci = (u16::from(*pcp) << 13) | vid;
                let tag: Vec<u8> = ethertype.to_be_bytes().into_iter().chain(tci.to_be_bytes()).collect();
                f.splice(12..12, tag);
            }
            HwAction::PopVlan => {
                f.drain(12..16);
            }
            HwAction::SetVlanVid(v) => {
                let tci = (be16(&f, 14) & 0xf000) | v;
                f[14..16].copy_from_slice(&tci.to_be_bytes());
            }
            HwAction::SetMacSrc(m) => f[6..12].copy_from_slice(m),
            HwAction::SetMacDst(m) => f[0..6].copy_from_slice(m),
            HwAction::VxlanEncap(e) => f = encapsulate(e, &f),
            HwAction::Drop => return Outcome::Drop,
            HwAction::Output(p) => return Outcome::Out(*p, f),
            HwAction::Jump { .. } => unreachable!("not generated"),
        }
    }
    unreachable!("a valid rule ends with a fate")
}

fn encapsulate(e: &VxlanEncap, inner: &[u8]) -> Vec<u8> {
    let sport = vxlan_src_port(&InnerFlow::from_frame(inner));
    let mut payload = vec![0x08, 0, 0, 0];
    payload.extend_from_slice(&e.vni.to_be_bytes()[1..]);
    payload.push(0);
    payload.extend_from_slice(inner);
    let mut out = Vec::new();
    let eth = etherparse::Ethernet2Header {
        source: e.eth_src,
        destination: e.eth_dst,
        ether_type: if matches!(e.ip, EncapIp::V4 { .. }) {
            etherparse::EtherType::IPV4
        } else {
            etherparse::EtherType::IPV6
        },
    };
    eth.write(&mut out).expect("eth");
    let udp_len = (8 + payload.len()) as u16;
    match e.ip {
        EncapIp::V4 { src, dst, tos, ttl, df } => {
            let mut ip =
                etherparse::Ipv4Header::new(udp_len, ttl, etherparse::IpNumber::UDP, src.octets(), dst.octets())
                    .expect("ipv4");
            ip.dscp = etherparse::Ipv4Dscp::try_new(tos >> 2).expect("dscp");
            ip.ecn = etherparse::Ipv4Ecn::try_new(tos & 3).expect("ecn");
            ip.dont_fragment = df;
            ip.identification = 0;
            ip.header_checksum = ip.calc_header_checksum();
            ip.write(&mut out).expect("ipv4");
            let udp =
                etherparse::UdpHeader { source_port: sport, destination_port: e.udp_dst, length: udp_len, checksum: 0 };
            udp.write(&mut out).expect("udp");
        }
        EncapIp::V6 { src, dst, traffic_class, hop_limit } => {
            let ip = etherparse::Ipv6Header {
                traffic_class,
                flow_label: etherparse::Ipv6FlowLabel::ZERO,
                payload_length: udp_len,
                next_header: etherparse::IpNumber::UDP,
                hop_limit,
                source: src.octets(),
                destination: dst.octets(),
            };
            ip.write(&mut out).expect("ipv6");
            let udp = etherparse::UdpHeader::with_ipv6_checksum(sport, e.udp_dst, &ip, &payload).expect("udp");
            udp.write(&mut out).expect("udp");
        }
    }
    out.extend_from_slice(&payload);
    out
}

fn model_outcome(session: &mut offload::model::Session<'_>, port: u16, f: &[u8]) -> Outcome {
    let mut p = VecPacket::new(f, 256);
    match session.process(port, &mut p) {
        Verdict::Miss => {
            assert_eq!(p.data(), f, "a miss leaves the packet unchanged");
            Outcome::Miss
        }
        Verdict::Output(port) => Outcome::Out(port, p.data().to_vec()),
        Verdict::Drop => Outcome::Drop,
        Verdict::Error => panic!("the model failed to execute a valid rule on a well-formed packet"),
        Verdict::RxOverMtu | Verdict::TxOverMtu(_) => panic!("no VF port MTU was set"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn lowered_rules_read_back_to_themselves(rule in rule(), group in 0u32..4, cookie in any::<u64>()) {
        let l = lower(&rule, group, cookie).expect("valid rules lower");
        let raw = l.raw().expect("reads");
        prop_assert_eq!(raw.group, group);
        prop_assert_eq!(read_back(&raw).expect("reads back"), rule);
    }

    #[test]
    fn model_agrees_with_the_reference(rule in rule(), seeds in prop::collection::vec((any::<[u8; 32]>(), any::<u8>(), 0u16..3), 1..24)) {
        let model = Arc::new(ModelSwitch::new(Profile::default()));
        let mut dev = ModelDevice::new(Arc::clone(&model));
        dev.create(&lower(&rule, 0, 1).expect("lower")).expect("the model takes every valid rule");
        // One session for all packets: the match vector keeps bytes of
        // earlier packets in slots a later packet does not fill.
        let mut session = model.session();
        for (seed, noise, port_noise) in seeds {
            let inner = build(&frame_for(&rule.pattern.headers, &seed, noise));
            let f = match &rule.pattern.tunnel {
                Some(t) => vxlan_wrap(t, &inner, &seed, noise),
                None => inner,
            };
            let port = if port_noise == 0 { rule.pattern.ingress ^ 1 } else { rule.pattern.ingress };
            let want = reference(&rule, port, &f);
            let got = model_outcome(&mut session, port, &f);
            prop_assert_eq!(got, want, "rule {}\nframe {:02x?}", rule, f);
        }
    }
}

/// The generator is useful: most rules see packets that match them.
#[test]
fn generated_packets_hit_their_rules_often() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut rules = 0;
    let mut hit_rules = 0;
    for _ in 0..300 {
        let rule = rule().new_tree(&mut runner).expect("rule").current();
        let seed: [u8; 32] = std::array::from_fn(|i| (i * 7 + rules) as u8);
        let inner = build(&frame_for(&rule.pattern.headers, &seed, 7));
        let f = match &rule.pattern.tunnel {
            Some(t) => vxlan_wrap(t, &inner, &seed, 10),
            None => inner,
        };
        rules += 1;
        if reference(&rule, rule.pattern.ingress, &f) != Outcome::Miss {
            hit_rules += 1;
        } else if std::env::var("SHOW_MISSES").is_ok() {
            eprintln!("MISS {rule}");
        }
    }
    assert!(hit_rules * 10 >= rules * 7, "only {hit_rules} of {rules} rules met a matching packet");
}
