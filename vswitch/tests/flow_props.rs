//! Property tests of the flow core (no DPDK): parser against etherparse, and
//! rule table, megaflows, exact-match cache and megaflow classifier against a
//! naive reference classifier.

use etherparse::{IpHeaders, Ipv4Dscp, Ipv4Header, Ipv6FlowLabel, Ipv6Header, PacketBuilder};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vswitch::actions::Action;
use vswitch::flow::hash::hash_key;
use vswitch::flow::table::Match;
use vswitch::flow::{Dpcls, Emc, Rule, RuleId, RuleTable};
use vswitch::packet::key::{ip_to, prefix_mask, VLAN_PRESENT};
use vswitch::packet::parse::{ETH_TYPE_IPV4, ETH_TYPE_IPV6, ETH_TYPE_VLAN};
use vswitch::packet::{parse, Field, FlowKey, FlowMask};

// ---------------------------------------------------------------- parser

#[derive(Debug, Clone)]
enum L4 {
    Udp(u16, u16),
    Tcp(u16, u16),
    Icmp(u16),
}

#[derive(Debug, Clone)]
struct FrameSpec {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vlan: Option<u16>,
    v6: bool,
    src4: [u8; 4],
    dst4: [u8; 4],
    src6: [u8; 16],
    dst6: [u8; 16],
    ttl: u8,
    tos: u8,
    l4: L4,
    payload: Vec<u8>,
}

fn l4_strategy() -> impl Strategy<Value = L4> {
    prop_oneof![
        (any::<u16>(), any::<u16>()).prop_map(|(s, d)| L4::Udp(s, d)),
        (any::<u16>(), any::<u16>()).prop_map(|(s, d)| L4::Tcp(s, d)),
        any::<u16>().prop_map(L4::Icmp),
    ]
}

fn frame_strategy() -> impl Strategy<Value = FrameSpec> {
    (
        (any::<[u8; 6]>(), any::<[u8; 6]>(), proptest::option::of(0u16..4096), any::<bool>()),
        (any::<[u8; 4]>(), any::<[u8; 4]>(), any::<[u8; 16]>(), any::<[u8; 16]>()),
        (any::<u8>(), 0u8..64, l4_strategy(), proptest::collection::vec(any::<u8>(), 0..64)),
    )
        .prop_map(|((src_mac, dst_mac, vlan, v6), (src4, dst4, src6, dst6), (ttl, dscp, l4, payload))| FrameSpec {
            src_mac,
            dst_mac,
            vlan,
            v6,
            src4,
            dst4,
            src6,
            dst6,
            ttl,
            tos: dscp << 2,
            l4,
            payload,
        })
}

fn build(spec: &FrameSpec) -> Vec<u8> {
    let ip = if spec.v6 {
        IpHeaders::Ipv6(
            Ipv6Header {
                traffic_class: spec.tos,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: 0,
                next_header: etherparse::IpNumber::UDP,
                hop_limit: spec.ttl,
                source: spec.src6,
                destination: spec.dst6,
            },
            Default::default(),
        )
    } else {
        let mut h = Ipv4Header::new(0, spec.ttl, etherparse::IpNumber::UDP, spec.src4, spec.dst4).expect("ipv4");
        h.dscp = Ipv4Dscp::try_new(spec.tos >> 2).expect("dscp");
        IpHeaders::Ipv4(h, Default::default())
    };
    let step = PacketBuilder::ip(ip);
    let mut l3 = Vec::new();
    match spec.l4 {
        L4::Udp(s, d) => step.udp(s, d).write(&mut l3, &spec.payload),
        L4::Tcp(s, d) => step.tcp(s, d, 1, 1000).write(&mut l3, &spec.payload),
        L4::Icmp(id) if spec.v6 => step.icmpv6_echo_request(id, 1).write(&mut l3, &spec.payload),
        L4::Icmp(id) => step.icmpv4_echo_request(id, 1).write(&mut l3, &spec.payload),
    }
    .expect("write");
    let mut f = Vec::new();
    f.extend_from_slice(&spec.dst_mac);
    f.extend_from_slice(&spec.src_mac);
    let ethertype = if spec.v6 { ETH_TYPE_IPV6 } else { ETH_TYPE_IPV4 };
    if let Some(vid) = spec.vlan {
        f.extend_from_slice(&ETH_TYPE_VLAN.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(&l3);
    f
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_recovers_built_fields(spec in frame_strategy(), port in 0u32..64) {
        let frame = build(&spec);
        let p = parse(&frame, port, None);
        prop_assert_eq!(p.error, None);
        let k = &p.key;
        prop_assert_eq!(k.in_port(), port);
        prop_assert_eq!(k.eth_src(), spec.src_mac);
        prop_assert_eq!(k.eth_dst(), spec.dst_mac);
        prop_assert_eq!(k.vlan_tci(), spec.vlan.map_or(0, |v| v | VLAN_PRESENT));
        prop_assert_eq!(k.ip_ttl(), spec.ttl);
        prop_assert_eq!(k.ip_tos(), spec.tos);
        if spec.v6 {
            prop_assert_eq!(k.eth_type(), ETH_TYPE_IPV6);
            prop_assert_eq!(k.nw_src(), IpAddr::V6(Ipv6Addr::from(spec.src6)).to_canonical());
            prop_assert_eq!(k.nw_dst(), IpAddr::V6(Ipv6Addr::from(spec.dst6)).to_canonical());
        } else {
            prop_assert_eq!(k.eth_type(), ETH_TYPE_IPV4);
            prop_assert_eq!(k.nw_src(), IpAddr::V4(Ipv4Addr::from(spec.src4)));
            prop_assert_eq!(k.nw_dst(), IpAddr::V4(Ipv4Addr::from(spec.dst4)));
        }
        match spec.l4 {
            L4::Udp(s, d) => {
                prop_assert_eq!(k.ip_proto(), 17);
                prop_assert_eq!((k.tp_src(), k.tp_dst()), (s, d));
            }
            L4::Tcp(s, d) => {
                prop_assert_eq!(k.ip_proto(), 6);
                prop_assert_eq!((k.tp_src(), k.tp_dst()), (s, d));
            }
            L4::Icmp(_) => {
                prop_assert_eq!(k.ip_proto(), if spec.v6 { 58 } else { 1 });
                prop_assert_eq!(k.tp_src(), if spec.v6 { 128 } else { 8 }, "echo request type");
                prop_assert_eq!(k.tp_dst(), 0);
            }
        }
    }

    #[test]
    fn parse_never_panics_on_truncated_or_corrupted_frames(
        spec in frame_strategy(), cut in any::<prop::sample::Index>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)
    ) {
        let mut frame = build(&spec);
        for (at, v) in flips {
            let i = at.index(frame.len());
            frame[i] ^= v;
        }
        let n = cut.index(frame.len() + 1);
        let p = parse(&frame[..n], 1, None);
        if n < 14 {
            prop_assert!(p.error.is_some());
        }
        if let Some(l4) = p.l4_offset {
            prop_assert!(usize::from(l4) <= n);
        }
        // Every offset stays inside the bytes actually given.
        prop_assert!(usize::from(p.l3_end) <= n, "l3_end {} beyond the {} bytes parsed", p.l3_end, n);
        prop_assert!(usize::from(p.l3_offset) <= n);
    }

    #[test]
    fn parse_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes, 0, None);
    }
}

// ---------------------------------------------------------------- classifier

const NW_VALUES: [[u8; 4]; 6] =
    [[10, 1, 2, 3], [10, 1, 2, 4], [10, 1, 3, 1], [10, 2, 0, 1], [11, 0, 0, 1], [10, 1, 2, 200]];
const PREFIXES: [([u8; 4], u8); 5] =
    [([10, 0, 0, 0], 8), ([10, 1, 0, 0], 16), ([10, 1, 2, 0], 24), ([10, 1, 2, 3], 32), ([10, 1, 2, 0], 25)];
const PORTS: [u16; 4] = [80, 443, 53, 8080];

fn v4(b: [u8; 4]) -> u128 {
    ip_to(IpAddr::V4(Ipv4Addr::from(b)))
}

#[derive(Debug, Clone)]
struct RuleSpec {
    priority: u32,
    in_port: Option<u32>,
    eth_type: Option<u16>,
    nw_dst: Option<usize>,
    nw_src: Option<usize>,
    proto: Option<u8>,
    tp_dst: Option<(u16, u16)>,
    vlan: Option<u16>,
    tun_id: Option<u32>,
    out: u32,
}

fn rule_strategy() -> impl Strategy<Value = RuleSpec> {
    (
        (
            0u32..6,
            proptest::option::of(0u32..4),
            proptest::option::of(prop_oneof![Just(ETH_TYPE_IPV4), Just(ETH_TYPE_IPV6)]),
        ),
        (proptest::option::of(0usize..PREFIXES.len()), proptest::option::of(0usize..PREFIXES.len())),
        (
            proptest::option::of(prop_oneof![Just(6u8), Just(17u8)]),
            proptest::option::of((0usize..PORTS.len(), prop_oneof![Just(0xffffu16), Just(0xff00u16), Just(0x00f0u16)])),
            proptest::option::of(prop_oneof![Just(10u16), Just(20u16)]),
            proptest::option::of(prop_oneof![Just(0u32), Just(100u32), Just(200u32)]),
            0u32..8,
        ),
    )
        .prop_map(|((priority, in_port, eth_type), (nw_dst, nw_src), (proto, tp, vlan, tun_id, out))| RuleSpec {
            priority,
            in_port,
            eth_type,
            nw_dst,
            nw_src,
            proto,
            tp_dst: tp.map(|(i, m)| (PORTS[i], m)),
            vlan,
            tun_id,
            out,
        })
}

fn to_match(r: &RuleSpec) -> Match {
    let mut m = Match::any();
    if let Some(p) = r.in_port {
        m = m.with(Field::InPort, u128::from(p));
    }
    if let Some(t) = r.eth_type {
        m = m.with(Field::EthType, u128::from(t));
    }
    if let Some(i) = r.nw_dst {
        let (a, len) = PREFIXES[i];
        m = m.with_masked(Field::NwDst, v4(a), prefix_mask(true, len));
    }
    if let Some(i) = r.nw_src {
        let (a, len) = PREFIXES[i];
        m = m.with_masked(Field::NwSrc, v4(a), prefix_mask(true, len));
    }
    if let Some(p) = r.proto {
        m = m.with(Field::IpProto, u128::from(p));
    }
    if let Some((port, mask)) = r.tp_dst {
        m = m.with_masked(Field::TpDst, u128::from(port), u128::from(mask));
    }
    if let Some(v) = r.vlan {
        m = m.with(Field::VlanTci, u128::from(v | VLAN_PRESENT));
    }
    if let Some(t) = r.tun_id {
        m = m.with(Field::TunId, u128::from(t));
    }
    m
}

#[derive(Debug, Clone)]
struct PacketSpec {
    in_port: u32,
    v6: bool,
    dst: usize,
    src: usize,
    proto: u8,
    tp_dst: u16,
    tp_src: u16,
    vlan: Option<u16>,
    tun_id: u32,
}

fn packet_strategy() -> impl Strategy<Value = PacketSpec> {
    (
        (0u32..5, prop::bool::weighted(0.2), 0usize..NW_VALUES.len(), 0usize..NW_VALUES.len()),
        (
            prop_oneof![Just(6u8), Just(17u8), Just(1u8)],
            prop_oneof![Just(80u16), Just(443), Just(53), Just(8080), Just(0x00f1), any::<u16>()],
            any::<u16>(),
            proptest::option::of(prop_oneof![Just(10u16), Just(20u16), Just(30u16)]),
            prop_oneof![Just(0u32), Just(100u32), Just(200u32), Just(300u32)],
        ),
    )
        .prop_map(|((in_port, v6, dst, src), (proto, tp_dst, tp_src, vlan, tun_id))| PacketSpec {
            in_port,
            v6,
            dst,
            src,
            proto,
            tp_dst,
            tp_src,
            vlan,
            tun_id,
        })
}

fn to_key(p: &PacketSpec) -> FlowKey {
    let mut k = FlowKey::ZERO;
    k.set(Field::InPort, u128::from(p.in_port));
    k.set(Field::EthType, u128::from(if p.v6 { ETH_TYPE_IPV6 } else { ETH_TYPE_IPV4 }));
    let addr = |i: usize| {
        if p.v6 {
            let b = NW_VALUES[i];
            ip_to(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, u16::from(b[0]), u16::from(b[3]))))
        } else {
            v4(NW_VALUES[i])
        }
    };
    k.set(Field::NwDst, addr(p.dst));
    k.set(Field::NwSrc, addr(p.src));
    k.set(Field::IpProto, u128::from(p.proto));
    k.set(Field::TpDst, u128::from(p.tp_dst));
    k.set(Field::TpSrc, u128::from(p.tp_src));
    k.set(Field::IpTtl, 64);
    if let Some(v) = p.vlan {
        k.set(Field::VlanTci, u128::from(v | VLAN_PRESENT));
    }
    k.set(Field::TunId, u128::from(p.tun_id));
    k
}

/// The naive reference: scan every rule; highest priority wins, then the
/// oldest (lowest id).
fn reference(rules: &[(RuleId, u32, Match)], key: &FlowKey) -> Option<RuleId> {
    let mut best: Option<(RuleId, u32)> = None;
    for &(id, prio, m) in rules {
        if m.matches(key) && best.is_none_or(|(bid, bp)| prio > bp || (prio == bp && id < bid)) {
            best = Some((id, prio));
        }
    }
    best.map(|(id, _)| id)
}

fn build_table(specs: &[RuleSpec]) -> (RuleTable, Vec<(RuleId, u32, Match)>) {
    let mut table = RuleTable::new();
    let mut list = Vec::new();
    for r in specs {
        let m = to_match(r);
        let id = table.insert(r.priority, m, vec![Action::Output(r.out)]);
        list.push((id, r.priority, m));
    }
    (table, list)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn table_agrees_with_reference_and_megaflows_are_sound(
        rules in proptest::collection::vec(rule_strategy(), 0..40),
        deleted in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
        packets in proptest::collection::vec((packet_strategy(), packet_strategy()), 1..40),
    ) {
        let (mut table, mut list) = build_table(&rules);
        for d in deleted {
            if list.is_empty() {
                break;
            }
            let i = d.index(list.len());
            let (id, _, _) = list.remove(i);
            prop_assert!(table.remove(id).is_some());
        }
        prop_assert_eq!(table.len(), list.len());
        let mut plain = table.clone();
        plain.set_prefix_checks(false);
        for ((p, other), table) in packets.iter().flat_map(|p| [(p, &table), (p, &plain)]) {
            let key = to_key(p);
            let c = table.classify(&key);
            let want = reference(&list, &key);
            prop_assert_eq!(c.rule.as_ref().map(|r| r.id), want, "key {:?}", key);
            // Any packet equal to `key` under the megaflow mask gets the same rule.
            let noise = to_key(other);
            let mut inside = FlowKey::ZERO;
            for w in 0..inside.words.len() {
                inside.words[w] = (key.words[w] & c.mask.0.words[w]) | (noise.words[w] & !c.mask.0.words[w]);
            }
            prop_assert_eq!(reference(&list, &inside), want, "megaflow mask {:?} is too wide", c.mask);
        }
    }

    #[test]
    fn emc_dpcls_and_table_agree_with_reference(
        rules in proptest::collection::vec(rule_strategy(), 1..30),
        packets in proptest::collection::vec(packet_strategy(), 1..200),
    ) {
        let (table, list) = build_table(&rules);
        // A tiny EMC so evictions happen; dpcls holds megaflows -> rule id.
        let mut emc: Emc<Option<RuleId>> = Emc::new(16);
        let mut dpcls: Dpcls<Option<RuleId>> = Dpcls::new();
        let mut keys = Vec::new();
        for p in &packets {
            let key = to_key(p);
            let hash = hash_key(&key);
            let got = match emc.lookup(&key, hash) {
                Some(v) => v,
                None => match dpcls.lookup(&key) {
                    Some(v) => {
                        emc.insert(&key, hash, v);
                        v
                    }
                    None => {
                        let c = table.classify(&key);
                        let v = c.rule.map(|r| r.id);
                        dpcls.insert(&key, &c.mask, v);
                        emc.insert(&key, hash, v);
                        v
                    }
                },
            };
            prop_assert_eq!(got, reference(&list, &key));
            keys.push(key);
        }
        // The burst lookup gives the same answers as single lookups.
        for chunk in keys.chunks(32) {
            let mut out = [None; 32];
            dpcls.lookup_batch(chunk, &mut out[..chunk.len()]);
            for (k, o) in chunk.iter().zip(&out) {
                prop_assert_eq!(o.flatten(), reference(&list, k));
                prop_assert!(o.is_some(), "every key seen once has a megaflow");
            }
        }
        dpcls.rank();
        for k in &keys {
            prop_assert_eq!(dpcls.lookup(k).flatten(), reference(&list, k));
        }
    }
}

// ------------------------------------------------ several tables (goto_table)

/// A rule of a three-table pipeline: its table, match, a rewrite of a
/// field later tables match (VLAN id, tunnel id), an output, a next table.
fn pipeline_rule() -> impl Strategy<Value = (u8, RuleSpec, Option<Action>, Option<u8>)> {
    (
        0u8..3,
        rule_strategy(),
        proptest::option::of(prop_oneof![
            Just(Action::SetVlanVid(10)),
            Just(Action::SetVlanVid(20)),
            Just(Action::SetTunnel(100)),
            Just(Action::SetTunnel(300)),
        ]),
        proptest::option::of(1u8..3),
    )
}

/// The naive walk: the best rule of table 0 by a scan, its actions applied
/// to the key as the spec says, on to its next table. The actions, the
/// rules matched.
fn reference_walk(rules: &[Rule], key: &FlowKey) -> (Vec<Action>, Vec<RuleId>) {
    let (mut key, mut table, mut actions, mut matched) = (*key, 0u8, Vec::new(), Vec::new());
    loop {
        let here: Vec<(RuleId, u32, Match)> =
            rules.iter().filter(|r| r.table == table).map(|r| (r.id, r.priority, r.matcher)).collect();
        let Some(id) = reference(&here, &key) else { break };
        let r = rules.iter().find(|r| r.id == id).expect("the rule");
        for a in &r.actions {
            match a {
                Action::SetVlanVid(v) => key.set(Field::VlanTci, u128::from(v | VLAN_PRESENT)),
                Action::SetTunnel(t) => key.set(Field::TunId, u128::from(*t)),
                _ => {}
            }
        }
        actions.extend(r.actions.iter().cloned());
        matched.push(id);
        match r.goto {
            Some(next) if next > table => table = next,
            _ => break,
        }
    }
    (actions, matched)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The walk through tables gives the naive walk's actions and rules, and
    /// its megaflow mask is sound: a packet equal to the key under it walks
    /// the same way.
    #[test]
    fn pipeline_agrees_with_the_naive_walk_and_its_masks_are_sound(
        rules in proptest::collection::vec(pipeline_rule(), 0..40),
        packets in proptest::collection::vec((packet_strategy(), packet_strategy()), 1..40),
    ) {
        let mut table = RuleTable::new();
        let mut list = Vec::new();
        for (t, spec, rewrite, goto) in &rules {
            let actions: Vec<Action> = rewrite.iter().cloned().chain([Action::Output(spec.out)]).collect();
            let goto = goto.filter(|&g| g > *t);
            let m = to_match(spec);
            let rule = Rule { table: *t, priority: spec.priority, matcher: m, actions, goto, ..Default::default() };
            let id = table.add(rule.clone());
            list.push(Rule { id, ..rule });
        }
        for (p, other) in &packets {
            let key = to_key(p);
            let c = table.classify(&key);
            let (want, matched) = reference_walk(&list, &key);
            let got = c.rule.as_ref().map(|r| (r.actions.clone(), r.credited().collect::<Vec<_>>()));
            prop_assert_eq!(got.clone().unwrap_or_default(), (want.clone(), matched.clone()), "key {:?}", key);
            let noise = to_key(other);
            let mut inside = FlowKey::ZERO;
            for w in 0..inside.words.len() {
                inside.words[w] = (key.words[w] & c.mask.0.words[w]) | (noise.words[w] & !c.mask.0.words[w]);
            }
            prop_assert_eq!(reference_walk(&list, &inside), (want, matched), "megaflow mask {:?} is too wide", c.mask);
        }
    }
}

#[test]
fn equal_priority_tie_goes_to_the_older_rule() {
    let mut t = RuleTable::new();
    let a = t.insert(5, Match::any().with(Field::InPort, 1), vec![Action::Output(1)]);
    let b = t.insert(5, Match::any().with(Field::EthType, u128::from(ETH_TYPE_IPV4)), vec![Action::Output(2)]);
    let mut k = FlowKey::ZERO;
    k.set(Field::InPort, 1);
    k.set(Field::EthType, u128::from(ETH_TYPE_IPV4));
    assert_eq!(t.classify(&k).rule.map(|r| r.id), Some(a));
    t.remove(a);
    assert_eq!(t.classify(&k).rule.map(|r| r.id), Some(b));
    // A megaflow of a miss still says which fields were looked at.
    let mut miss = k;
    miss.set(Field::EthType, u128::from(ETH_TYPE_IPV6));
    let c = t.classify(&miss);
    assert!(c.rule.is_none());
    assert_eq!(c.mask.get(Field::EthType), 0xffff);
    assert_eq!(c.mask.get(Field::InPort), 0, "a removed rule's fields are no longer consulted");
    assert_eq!(FlowMask::CATCH_ALL.get(Field::InPort), 0, "the catch-all mask consults no field");
    assert_eq!(FlowMask::CATCH_ALL.get(Field::EthType), 0);
}

// ------------------------------------------- VXLAN source port: key vs bytes

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The software encapsulation takes the inner flow from the parsed key
    /// (IP frames), the model e-switch from the frame's bytes: for every frame
    /// the parser accepts, even with any one byte changed, the two agree.
    #[test]
    fn inner_flow_from_key_equals_inner_flow_from_bytes(spec in frame_strategy(), at in any::<prop::sample::Index>(), value in any::<u8>(), frag in 0u16..4) {
        let mut frame = build(&spec);
        if !spec.v6 {
            // Fragments too: MF and/or an offset (no ports after the first).
            let ip = if spec.vlan.is_some() { 18 } else { 14 };
            let f = match frag { 0 => 0x4000, 1 => 0x2000, 2 => 0x2001, _ => 0x0002 };
            frame[ip + 6..ip + 8].copy_from_slice(&u16::to_be_bytes(f));
        }
        for variant in 0..2 {
            let mut f = frame.clone();
            if variant == 1 {
                let i = at.index(f.len());
                f[i] = value;
            }
            let p = parse(&f, 0, None);
            let ty = p.key.eth_type();
            if p.error.is_some() || (ty != ETH_TYPE_IPV4 && ty != ETH_TYPE_IPV6) {
                continue;
            }
            prop_assert_eq!(
                vswitch::packet::key::inner_flow(&p.key),
                offload::entropy::InnerFlow::from_frame(&f),
                "frame {:02x?}", f
            );
        }
    }
}
