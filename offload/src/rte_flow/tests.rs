//! Lowering, field by field: item and action types and order, byte order of
//! addresses, ports and VNI, masks, END, and the encap definition decoded by
//! an independent parser (etherparse).

use super::*;
use crate::probe::{sample_rule, ProbePorts, Shape};
use crate::rte_flow::read::{ItemBytes, Place};
use crate::rule::*;
use dpdk_sys as sys;

const PORTS: ProbePorts = ProbePorts { vf: 1, uplink: 0 };

fn lowered(shape: Shape) -> Lowered {
    let (rule, group) = sample_rule(shape, PORTS, 1);
    lower(&rule, group, 0xc0ffee).expect("lower")
}

fn kinds(raw: &RawRule) -> Vec<ItemKind> {
    raw.items.iter().map(|i| i.kind).collect()
}

/// The raw bytes of an item's spec struct (what DPDK reads), by index.
fn spec_bytes(l: &Lowered, index: usize, len: usize) -> Vec<u8> {
    assert!(index < l.item_count());
    // SAFETY: `index` is within the lowered array, whose spec pointers point
    // to structs of at least `len` bytes owned by `l` (checked per call site).
    unsafe {
        let item = &*l.items().add(index);
        assert!(!item.spec.is_null());
        std::slice::from_raw_parts(item.spec.cast::<u8>(), len).to_vec()
    }
}

fn mask_bytes(l: &Lowered, index: usize, len: usize) -> Vec<u8> {
    // SAFETY: as in spec_bytes.
    unsafe {
        let item = &*l.items().add(index);
        assert!(!item.mask.is_null());
        std::slice::from_raw_parts(item.mask.cast::<u8>(), len).to_vec()
    }
}

fn ends_and_no_last(l: &Lowered) {
    // SAFETY: the arrays are l.item_count() / l.action_count() long.
    unsafe {
        for i in 0..l.item_count() {
            assert!((*l.items().add(i)).last.is_null(), "item {i}: last is never set");
        }
        assert_eq!((*l.items().add(l.item_count() - 1)).type_, sys::RTE_FLOW_ITEM_TYPE_END);
        assert_eq!((*l.actions().add(l.action_count() - 1)).type_, sys::RTE_FLOW_ACTION_TYPE_END);
    }
}

#[test]
fn attribute_port_item_and_ipv4_prefix() {
    let l = lowered(Shape::VfToUplink);
    ends_and_no_last(&l);
    let raw = l.raw().expect("raw");
    assert!(raw.transfer && !raw.ingress && !raw.egress);
    assert_eq!((raw.group, raw.priority), (1, 0));
    assert_eq!(kinds(&raw), vec![ItemKind::RepresentedPort, ItemKind::Eth, ItemKind::Ipv4]);
    // REPRESENTED_PORT: port id in host order in the struct, full mask.
    assert_eq!(spec_bytes(&l, 0, 2), 1u16.to_ne_bytes());
    assert_eq!(mask_bytes(&l, 0, 2), [0xff, 0xff]);
    // ETH: src in wire order, dst and type unmasked, has_vlan 0 under mask 1.
    assert_eq!(spec_bytes(&l, 1, 14), [0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0x10, 0, 0]);
    assert_eq!(mask_bytes(&l, 1, 14), [0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]);
    assert_eq!(raw.items[1].spec.map(|s| s.flags), Some(0));
    assert_eq!(raw.items[1].mask.flags, 1, "has_vlan is compared");
    // IPV4: dst 10.0.0.0/8 in network order at bytes 16..20.
    let s = spec_bytes(&l, 2, 20);
    let m = mask_bytes(&l, 2, 20);
    assert_eq!(&s[16..20], &[10, 0, 0, 0]);
    assert_eq!(&m[16..20], &[255, 0, 0, 0]);
    assert!(m[..16].iter().all(|&b| b == 0), "nothing else compared: {m:?}");
    assert_eq!(raw.actions, vec![RawAction::Count, RawAction::RepresentedPort(0)]);
}

#[test]
fn udp_port_and_proto_byte_order() {
    let l = lowered(Shape::Drop);
    let raw = l.raw().expect("raw");
    assert_eq!(kinds(&raw), vec![ItemKind::RepresentedPort, ItemKind::Eth, ItemKind::Ipv4, ItemKind::Udp]);
    assert_eq!(spec_bytes(&l, 2, 20)[9], 17);
    assert_eq!(mask_bytes(&l, 2, 20)[9], 0xff);
    assert_eq!(spec_bytes(&l, 3, 8), [0, 0, 0, 53, 0, 0, 0, 0], "dst port 53 big-endian");
    assert_eq!(mask_bytes(&l, 3, 8), [0, 0, 0xff, 0xff, 0, 0, 0, 0]);
    assert_eq!(raw.actions, vec![RawAction::Count, RawAction::Drop]);
}

#[test]
fn vlan_push_pop_actions() {
    let l = lowered(Shape::VlanPush);
    ends_and_no_last(&l);
    let raw = l.raw().expect("raw");
    assert_eq!(
        raw.actions,
        vec![
            RawAction::Count,
            RawAction::PushVlan { ethertype: 0x8100 },
            RawAction::SetVlanVid(100),
            RawAction::SetVlanPcp(0),
            RawAction::RepresentedPort(0)
        ]
    );
    // The configuration structs hold network order.
    // SAFETY: action 1 is OF_PUSH_VLAN with an of_push_vlan conf, action 2
    // OF_SET_VLAN_VID with an of_set_vlan_vid conf (checked just above).
    unsafe {
        let push = &*(*l.actions().add(1)).conf.cast::<sys::rte_flow_action_of_push_vlan>();
        assert_eq!(push.ethertype.to_ne_bytes(), [0x81, 0x00]);
        let vid = &*(*l.actions().add(2)).conf.cast::<sys::rte_flow_action_of_set_vlan_vid>();
        assert_eq!(vid.vlan_vid.to_ne_bytes(), [0x00, 100]);
    }
    let l = lowered(Shape::VlanPop);
    let raw = l.raw().expect("raw");
    assert_eq!(kinds(&raw), vec![ItemKind::RepresentedPort, ItemKind::Eth, ItemKind::Vlan]);
    assert_eq!(spec_bytes(&l, 2, 4), [0, 100, 0, 0], "VID 100 in the TCI, network order");
    assert_eq!(mask_bytes(&l, 2, 4), [0x0f, 0xff, 0, 0]);
    assert_eq!((raw.items[2].spec.map(|s| s.flags), raw.items[2].mask.flags), (Some(0), 1), "has_more_vlan=0");
    assert_eq!(raw.items[1].spec.map(|s| s.flags), Some(1), "has_vlan=1");
    assert_eq!(raw.actions, vec![RawAction::Count, RawAction::PopVlan, RawAction::RepresentedPort(1)]);
}

#[test]
fn mac_rewrite_confs() {
    let raw = lowered(Shape::MacRewrite).raw().expect("raw");
    assert_eq!(
        raw.actions,
        vec![
            RawAction::Count,
            RawAction::SetMacSrc([2, 0, 0, 0, 0, 1]),
            RawAction::SetMacDst([2, 0, 0, 0, 0, 0x11]),
            RawAction::RepresentedPort(1)
        ]
    );
}

#[test]
fn decap_pattern_outer_then_inner() {
    let l = lowered(Shape::VxlanDecap);
    ends_and_no_last(&l);
    let raw = l.raw().expect("raw");
    assert_eq!(
        kinds(&raw),
        vec![ItemKind::RepresentedPort, ItemKind::Eth, ItemKind::Ipv4, ItemKind::Udp, ItemKind::Vxlan, ItemKind::Eth]
    );
    let ip = spec_bytes(&l, 2, 20);
    assert_eq!((&ip[12..16], &ip[16..20]), (&[198, 18, 0, 2][..], &[198, 18, 0, 1][..]));
    assert_eq!(&mask_bytes(&l, 2, 20)[12..20], &[0xff; 8]);
    assert_eq!(&spec_bytes(&l, 3, 8)[2..4], &4789u16.to_be_bytes());
    // VXLAN: VNI 100 in bytes 4..7, flags not compared.
    assert_eq!(spec_bytes(&l, 4, 8), [0, 0, 0, 0, 0, 0, 100, 0]);
    assert_eq!(mask_bytes(&l, 4, 8), [0, 0, 0, 0, 0xff, 0xff, 0xff, 0]);
    assert_eq!(&spec_bytes(&l, 5, 14)[..6], &[2, 0, 0, 0, 0, 0x10], "inner dst MAC");
    assert_eq!(raw.actions, vec![RawAction::Count, RawAction::VxlanDecap, RawAction::RepresentedPort(1)]);
}

fn encap_header(raw: &RawRule) -> Vec<u8> {
    let def = raw
        .actions
        .iter()
        .find_map(|a| match a {
            RawAction::VxlanEncap(d) => Some(d.clone()),
            _ => None,
        })
        .expect("an encap action");
    assert_eq!(
        def.iter().map(|i| i.kind).collect::<Vec<_>>(),
        [
            ItemKind::Eth,
            if def[1].kind == ItemKind::Ipv6 { ItemKind::Ipv6 } else { ItemKind::Ipv4 },
            ItemKind::Udp,
            ItemKind::Vxlan
        ]
    );
    def.iter().flat_map(|i| i.spec.expect("spec").hdr[..i.kind.header_len()].to_vec()).collect()
}

#[test]
fn encap_definition_decodes_as_eth_ipv4_udp_vxlan() {
    let raw = lowered(Shape::VxlanEncapV4).raw().expect("raw");
    let h = encap_header(&raw);
    assert_eq!(h.len(), 50);
    let (eth, rest) = etherparse::Ethernet2Header::from_slice(&h).expect("ethernet");
    assert_eq!((eth.source, eth.destination), ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]));
    assert_eq!(eth.ether_type, etherparse::EtherType::IPV4);
    let (ip, rest) = etherparse::Ipv4Header::from_slice(rest).expect("ipv4");
    assert_eq!((ip.source, ip.destination, ip.time_to_live), ([198, 18, 0, 1], [198, 18, 0, 2], 64));
    assert!(ip.dont_fragment);
    assert_eq!(ip.protocol, etherparse::IpNumber::UDP);
    let (udp, rest) = etherparse::UdpHeader::from_slice(rest).expect("udp");
    assert_eq!((udp.source_port, udp.destination_port, udp.checksum), (0, 4789, 0), "source port left to the device");
    assert_eq!(rest, &[0x08, 0, 0, 0, 0, 0, 100, 0], "VXLAN I flag and VNI 100");
}

#[test]
fn encap_definition_decodes_as_eth_ipv6_udp_vxlan() {
    let raw = lowered(Shape::VxlanEncapV6).raw().expect("raw");
    let h = encap_header(&raw);
    assert_eq!(h.len(), 70);
    let (eth, rest) = etherparse::Ethernet2Header::from_slice(&h).expect("ethernet");
    assert_eq!(eth.ether_type, etherparse::EtherType::IPV6);
    let (ip, rest) = etherparse::Ipv6Header::from_slice(rest).expect("ipv6");
    let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().expect("v6").octets();
    assert_eq!((ip.source, ip.destination, ip.hop_limit), (v6("2001:db8::1"), v6("2001:db8::2"), 64));
    assert_eq!(ip.next_header, etherparse::IpNumber::UDP);
    let (udp, rest) = etherparse::UdpHeader::from_slice(rest).expect("udp");
    assert_eq!(udp.destination_port, 4789);
    assert_eq!(rest, &[0x08, 0, 0, 0, 0, 0, 100, 0]);
}

#[test]
fn age_carries_the_cookie_and_jump_its_group() {
    let raw = lowered(Shape::Age).raw().expect("raw");
    assert_eq!(
        raw.actions,
        vec![RawAction::Count, RawAction::Age { timeout_s: 10, context: 0xc0ffee }, RawAction::RepresentedPort(0)]
    );
    let (rule, g) = sample_rule(Shape::Jump, PORTS, 5);
    let raw = lower(&rule, g, 0).expect("lower").raw().expect("raw");
    assert_eq!(
        (raw.group, kinds(&raw), raw.actions.clone()),
        (0, vec![ItemKind::RepresentedPort], vec![RawAction::Jump(5)])
    );
}

#[test]
fn every_shape_reads_back_to_itself_and_moving_keeps_pointers_valid() {
    let mut all: Vec<(HwRule, Lowered)> = Vec::new();
    for s in Shape::ALL {
        let (rule, g) = sample_rule(s, PORTS, 1);
        all.push((rule.clone(), lower(&rule, g, 1).expect("lower")));
    }
    // Moving every Lowered (the Vec reallocates) must not invalidate its arrays.
    let moved: Vec<(HwRule, Lowered)> = all.into_iter().rev().collect();
    let boxed: Vec<Box<(HwRule, Lowered)>> = moved.into_iter().map(Box::new).collect();
    for b in &boxed {
        let (rule, l) = &**b;
        assert_eq!(&read_back(&l.raw().expect("raw")).expect("reads back"), rule);
    }
}

#[test]
fn invalid_vocabulary_is_refused_before_lowering() {
    let (mut rule, _) = sample_rule(Shape::VfToUplink, PORTS, 1);
    rule.actions = vec![HwAction::Count];
    assert!(lower(&rule, 1, 0).is_err());
}

#[test]
fn reader_refuses_what_it_cannot_read() {
    // No END within the bound.
    let items = vec![
        sys::rte_flow_item {
            type_: sys::RTE_FLOW_ITEM_TYPE_VOID,
            spec: std::ptr::null(),
            last: std::ptr::null(),
            mask: std::ptr::null(),
        };
        read::MAX_ITEMS
    ];
    let actions = [sys::rte_flow_action { type_: sys::RTE_FLOW_ACTION_TYPE_END, conf: std::ptr::null() }];
    let mut attr = sys::rte_flow_attr::default();
    attr.set_transfer(1);
    // SAFETY: the arrays are MAX_ITEMS long / END-terminated, all specs NULL.
    let e = unsafe { read::read(&attr, items.as_ptr(), actions.as_ptr()) }.expect_err("no END");
    assert_eq!(e.place, Place::Item(read::MAX_ITEMS));
    // A NULL configuration where one is required.
    let end = [sys::rte_flow_item {
        type_: sys::RTE_FLOW_ITEM_TYPE_END,
        spec: std::ptr::null(),
        last: std::ptr::null(),
        mask: std::ptr::null(),
    }];
    let actions = [
        sys::rte_flow_action { type_: sys::RTE_FLOW_ACTION_TYPE_REPRESENTED_PORT, conf: std::ptr::null() },
        sys::rte_flow_action { type_: sys::RTE_FLOW_ACTION_TYPE_END, conf: std::ptr::null() },
    ];
    // SAFETY: END-terminated arrays; NULL confs are allowed by the contract.
    let e = unsafe { read::read(&attr, end.as_ptr(), actions.as_ptr()) }.expect_err("NULL conf");
    assert!(e.message.contains("conf is NULL"), "{e}");
    // An unknown item type is kept as Other (the model refuses it).
    let items = [
        sys::rte_flow_item { type_: 9999, spec: std::ptr::null(), last: std::ptr::null(), mask: std::ptr::null() },
        end[0],
    ];
    let actions = [sys::rte_flow_action { type_: sys::RTE_FLOW_ACTION_TYPE_DROP, conf: std::ptr::null() }, actions[1]];
    // SAFETY: as above.
    let r = unsafe { read::read(&attr, items.as_ptr(), actions.as_ptr()) }.expect("reads");
    assert_eq!(r.items[0].kind, ItemKind::Other(9999));
    assert_eq!(r.items[0].mask, ItemBytes::ZERO);
}
