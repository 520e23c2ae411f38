//! Lowering a [`HwRule`] into rte_flow structs: the attribute, the item
//! and action arrays, every spec, mask and configuration they point to, in
//! one owner ([`Lowered`]). This is where the rte_flow structs are built.

use super::read::{self, RawRule, ReadError};
use crate::rule::{EncapIp, Headers, HwAction, HwRule, L3Match, L4Match, RuleError, TunnelMatch};
use dpdk_sys as sys;
use std::any::Any;
use std::ffi::c_void;
use std::net::IpAddr;

/// mlx5's limit on a VXLAN_ENCAP definition's header bytes.
pub const MAX_ENCAP_HEADER: usize = 132;

/// A rule as rte_flow structs, ready for `rte_flow_validate` / `rte_flow_create`
/// on a transfer proxy port. Not `Send`: it holds raw pointers into itself.
pub struct Lowered {
    rule: HwRule,
    group: u32,
    cookie: u64,
    attr: Box<sys::rte_flow_attr>,
    items: Vec<sys::rte_flow_item>,
    actions: Vec<sys::rte_flow_action>,
    /// Specs, masks and action configurations the arrays point into.
    _storage: Vec<Box<dyn Any>>,
}

impl std::fmt::Debug for Lowered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lowered")
            .field("rule", &self.rule.to_string())
            .field("group", &self.group)
            .field("items", &self.items.len())
            .field("actions", &self.actions.len())
            .finish()
    }
}

impl Lowered {
    /// The rule it was lowered from.
    pub fn rule(&self) -> &HwRule {
        &self.rule
    }

    /// Its group.
    pub fn group(&self) -> u32 {
        self.group
    }

    /// The AGE context it carries (0 without AGE).
    pub fn cookie(&self) -> u64 {
        self.cookie
    }

    /// The attribute.
    pub fn attr(&self) -> *const sys::rte_flow_attr {
        &*self.attr
    }

    /// The END-terminated pattern.
    pub fn items(&self) -> *const sys::rte_flow_item {
        self.items.as_ptr()
    }

    /// The END-terminated action list.
    pub fn actions(&self) -> *const sys::rte_flow_action {
        self.actions.as_ptr()
    }

    /// Number of pattern items, END included.
    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    /// Number of actions, END included.
    pub fn action_count(&self) -> usize {
        self.actions.len()
    }

    /// Reads the structs back (what a device sees).
    ///
    /// # Errors
    /// Only if lowering produced something the reader refuses (a defect).
    pub fn raw(&self) -> Result<RawRule, ReadError> {
        // SAFETY: the arrays and everything they point to are owned by `self`
        // (built by `lower`), END-terminated, with specs of the types their
        // item and action types name.
        unsafe { read::read(self.attr(), self.items(), self.actions()) }
    }
}

/// Collects the boxes the arrays point into.
struct Builder {
    storage: Vec<Box<dyn Any>>,
}

impl Builder {
    /// Boxes `value` and returns a pointer to it that stays valid while the
    /// box is in `storage`.
    fn keep<T: 'static>(&mut self, value: T) -> *const c_void {
        let boxed = Box::new(value);
        let ptr: *const T = &*boxed;
        self.storage.push(boxed);
        ptr.cast()
    }

    fn item<T: 'static>(&mut self, type_: sys::rte_flow_item_type, spec: T, mask: T) -> sys::rte_flow_item {
        sys::rte_flow_item { type_, spec: self.keep(spec), last: std::ptr::null(), mask: self.keep(mask) }
    }

    fn action<T: 'static>(&mut self, type_: sys::rte_flow_action_type, conf: T) -> sys::rte_flow_action {
        sys::rte_flow_action { type_, conf: self.keep(conf) }
    }
}

fn end_item() -> sys::rte_flow_item {
    sys::rte_flow_item {
        type_: sys::RTE_FLOW_ITEM_TYPE_END,
        spec: std::ptr::null(),
        last: std::ptr::null(),
        mask: std::ptr::null(),
    }
}

fn bare_action(type_: sys::rte_flow_action_type) -> sys::rte_flow_action {
    sys::rte_flow_action { type_, conf: std::ptr::null() }
}

fn ether(dst: [u8; 6], src: [u8; 6], ether_type: u16) -> sys::rte_ether_hdr {
    sys::rte_ether_hdr {
        dst_addr: sys::rte_ether_addr { addr_bytes: dst },
        src_addr: sys::rte_ether_addr { addr_bytes: src },
        ether_type: ether_type.to_be(),
    }
}

fn eth_item(b: &mut Builder, e: &crate::rule::EthMatch) -> sys::rte_flow_item {
    let mut spec = sys::rte_flow_item_eth::default();
    let mut mask = sys::rte_flow_item_eth::default();
    let (dv, dm) = e.dst.map_or(([0; 6], [0; 6]), |m| (m.value, m.mask));
    let (sv, sm) = e.src.map_or(([0; 6], [0; 6]), |m| (m.value, m.mask));
    let (tv, tm) = e.ether_type.map_or((0, 0), |t| (t, 0xffff));
    spec.__bindgen_anon_1.hdr = ether(dv, sv, tv);
    mask.__bindgen_anon_1.hdr = ether(dm, sm, tm);
    if let Some(tagged) = e.tagged {
        spec.set_has_vlan(u32::from(tagged));
        mask.set_has_vlan(1);
    }
    b.item(sys::RTE_FLOW_ITEM_TYPE_ETH, spec, mask)
}

fn vlan_item(b: &mut Builder, v: &crate::rule::VlanMatch) -> sys::rte_flow_item {
    let mut spec = sys::rte_flow_item_vlan::default();
    let mut mask = sys::rte_flow_item_vlan::default();
    let mut tci = 0u16;
    let mut tci_mask = 0u16;
    if let Some(vid) = v.vid {
        tci |= vid;
        tci_mask |= 0x0fff;
    }
    if let Some(pcp) = v.pcp {
        tci |= u16::from(pcp) << 13;
        tci_mask |= 0xe000;
    }
    let (it, itm): (u16, u16) = v.inner_type.map_or((0, 0), |t| (t, 0xffff));
    spec.__bindgen_anon_1.hdr = sys::rte_vlan_hdr { vlan_tci: tci.to_be(), eth_proto: it.to_be() };
    mask.__bindgen_anon_1.hdr = sys::rte_vlan_hdr { vlan_tci: tci_mask.to_be(), eth_proto: itm.to_be() };
    if let Some(more) = v.more_tags {
        spec.set_has_more_vlan(u32::from(more));
        mask.set_has_more_vlan(1);
    }
    b.item(sys::RTE_FLOW_ITEM_TYPE_VLAN, spec, mask)
}

/// (value, mask) of a TOS / traffic-class byte from DSCP and ECN.
fn tos(dscp: Option<u8>, ecn: Option<u8>) -> (u8, u8) {
    let mut v = 0;
    let mut m = 0;
    if let Some(d) = dscp {
        v |= d << 2;
        m |= 0xfc;
    }
    if let Some(e) = ecn {
        v |= e & 3;
        m |= 0x03;
    }
    (v, m)
}

fn ipv4_hdr(src: u32, dst: u32, proto: u8, tos: u8, ttl: u8, frag: u16) -> sys::rte_ipv4_hdr {
    let mut h: sys::rte_ipv4_hdr = sys::rte_ipv4_hdr {
        __bindgen_anon_1: sys::rte_ipv4_hdr__bindgen_ty_1 { version_ihl: 0 },
        type_of_service: tos,
        total_length: 0,
        packet_id: 0,
        fragment_offset: frag.to_be(),
        time_to_live: ttl,
        next_proto_id: proto,
        hdr_checksum: 0,
        src_addr: src.to_be(),
        dst_addr: dst.to_be(),
    };
    h.__bindgen_anon_1.version_ihl = 0;
    h
}

fn ipv4_item(b: &mut Builder, ip: &crate::rule::Ipv4Match) -> sys::rte_flow_item {
    let (sv, sm) = ip.src.map_or((0, 0), |p| (u32::from(p.addr), p.mask()));
    let (dv, dm) = ip.dst.map_or((0, 0), |p| (u32::from(p.addr), p.mask()));
    let (pv, pm) = ip.proto.map_or((0, 0), |p| (p, 0xff));
    let (tv, tm) = tos(ip.dscp, ip.ecn);
    let (lv, lm) = ip.ttl.map_or((0, 0), |t| (t, 0xff));
    // "Not a fragment": MF clear and offset 0.
    let fm = if ip.fragment == Some(false) { 0x3fff } else { 0 };
    let spec = sys::rte_flow_item_ipv4 { hdr: ipv4_hdr(sv, dv, pv, tv, lv, 0) };
    let mask = sys::rte_flow_item_ipv4 { hdr: ipv4_hdr(sm, dm, pm, tm, lm, fm) };
    b.item(sys::RTE_FLOW_ITEM_TYPE_IPV4, spec, mask)
}

fn ipv6_hdr(src: u128, dst: u128, proto: u8, tc: u8, hop: u8) -> sys::rte_ipv6_hdr {
    sys::rte_ipv6_hdr {
        // version (4 bits) | traffic class (8) | flow label (20)
        vtc_flow: (u32::from(tc) << 20).to_be(),
        payload_len: 0,
        proto,
        hop_limits: hop,
        src_addr: src.to_be_bytes(),
        dst_addr: dst.to_be_bytes(),
    }
}

fn ipv6_item(b: &mut Builder, ip: &crate::rule::Ipv6Match) -> sys::rte_flow_item {
    let (sv, sm) = ip.src.map_or((0, 0), |p| (u128::from(p.addr), p.mask()));
    let (dv, dm) = ip.dst.map_or((0, 0), |p| (u128::from(p.addr), p.mask()));
    let (pv, pm) = ip.next_header.map_or((0, 0), |p| (p, 0xff));
    let (tv, tm) = tos(ip.dscp, ip.ecn);
    let (hv, hm) = ip.hop_limit.map_or((0, 0), |h| (h, 0xff));
    let spec = sys::rte_flow_item_ipv6 { hdr: ipv6_hdr(sv, dv, pv, tv, hv), ..Default::default() };
    let mask = sys::rte_flow_item_ipv6 { hdr: ipv6_hdr(sm, dm, pm, tm, hm), ..Default::default() };
    b.item(sys::RTE_FLOW_ITEM_TYPE_IPV6, spec, mask)
}

fn udp_hdr(src: u16, dst: u16) -> sys::rte_udp_hdr {
    sys::rte_udp_hdr { src_port: src.to_be(), dst_port: dst.to_be(), dgram_len: 0, dgram_cksum: 0 }
}

fn tcp_hdr(src: u16, dst: u16, flags: u8) -> sys::rte_tcp_hdr {
    let mut h = sys::rte_tcp_hdr { src_port: src.to_be(), dst_port: dst.to_be(), ..Default::default() };
    h.tcp_flags = flags;
    h
}

fn l4_item(b: &mut Builder, l4: &L4Match) -> sys::rte_flow_item {
    let m16 = |m: Option<crate::rule::Masked<u16>>| m.map_or((0, 0), |m| (m.value, m.mask));
    match l4 {
        L4Match::Udp(p) => {
            let ((sv, sm), (dv, dm)) = (m16(p.src), m16(p.dst));
            let spec = sys::rte_flow_item_udp { hdr: udp_hdr(sv, dv) };
            let mask = sys::rte_flow_item_udp { hdr: udp_hdr(sm, dm) };
            b.item(sys::RTE_FLOW_ITEM_TYPE_UDP, spec, mask)
        }
        L4Match::Tcp { ports, flags } => {
            let ((sv, sm), (dv, dm)) = (m16(ports.src), m16(ports.dst));
            let (fv, fm) = flags.map_or((0, 0), |f| (f.value, f.mask));
            let spec = sys::rte_flow_item_tcp { hdr: tcp_hdr(sv, dv, fv) };
            let mask = sys::rte_flow_item_tcp { hdr: tcp_hdr(sm, dm, fm) };
            b.item(sys::RTE_FLOW_ITEM_TYPE_TCP, spec, mask)
        }
    }
}

fn vxlan_hdr(flags: u8, vni: u32) -> sys::rte_flow_item_vxlan {
    let mut v = sys::rte_flow_item_vxlan::default();
    let vni = vni.to_be_bytes();
    v.__bindgen_anon_1.__bindgen_anon_1 = sys::rte_flow_item_vxlan__bindgen_ty_1__bindgen_ty_1 {
        flags,
        rsvd0: [0; 3],
        vni: [vni[1], vni[2], vni[3]],
        rsvd1: 0,
    };
    v
}

fn headers_items(b: &mut Builder, h: &Headers, out: &mut Vec<sys::rte_flow_item>) {
    if h.is_any() {
        return;
    }
    out.push(eth_item(b, &h.eth));
    for v in &h.vlans {
        out.push(vlan_item(b, v));
    }
    match &h.l3 {
        Some(L3Match::Ipv4(ip)) => out.push(ipv4_item(b, ip)),
        Some(L3Match::Ipv6(ip)) => out.push(ipv6_item(b, ip)),
        None => {}
    }
    if let Some(l4) = &h.l4 {
        out.push(l4_item(b, l4));
    }
}

fn tunnel_items(b: &mut Builder, t: &TunnelMatch, out: &mut Vec<sys::rte_flow_item>) {
    let (dv, dm) = t.eth_dst.map_or(([0; 6], [0; 6]), |m| (m, [0xff; 6]));
    let mut es = sys::rte_flow_item_eth::default();
    let mut em = sys::rte_flow_item_eth::default();
    es.__bindgen_anon_1.hdr = ether(dv, [0; 6], 0);
    em.__bindgen_anon_1.hdr = ether(dm, [0; 6], 0);
    out.push(b.item(sys::RTE_FLOW_ITEM_TYPE_ETH, es, em));
    match (t.src, t.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let spec = sys::rte_flow_item_ipv4 { hdr: ipv4_hdr(s.into(), d.into(), 0, 0, 0, 0) };
            let mask = sys::rte_flow_item_ipv4 { hdr: ipv4_hdr(u32::MAX, u32::MAX, 0, 0, 0, 0) };
            out.push(b.item(sys::RTE_FLOW_ITEM_TYPE_IPV4, spec, mask));
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(v) => u128::from(v),
                IpAddr::V4(v) => u128::from(v.to_ipv6_mapped()),
            };
            let spec = sys::rte_flow_item_ipv6 { hdr: ipv6_hdr(v6(s), v6(d), 0, 0, 0), ..Default::default() };
            let mask = sys::rte_flow_item_ipv6 { hdr: ipv6_hdr(u128::MAX, u128::MAX, 0, 0, 0), ..Default::default() };
            out.push(b.item(sys::RTE_FLOW_ITEM_TYPE_IPV6, spec, mask));
        }
    }
    let spec = sys::rte_flow_item_udp { hdr: udp_hdr(0, t.udp_dst) };
    let mask = sys::rte_flow_item_udp { hdr: udp_hdr(0, 0xffff) };
    out.push(b.item(sys::RTE_FLOW_ITEM_TYPE_UDP, spec, mask));
    out.push(b.item(sys::RTE_FLOW_ITEM_TYPE_VXLAN, vxlan_hdr(0, t.vni), vxlan_hdr(0, crate::rule::MAX_VNI)));
}

/// The VXLAN_ENCAP definition: `ETH / IPV4|IPV6 / UDP / VXLAN / END`, every
/// field the device must write given in the spec with a full mask. The outer
/// UDP source port and checksum are 0 (the device fills the port; see
/// [`crate::entropy`]).
fn encap_definition(b: &mut Builder, e: &crate::rule::VxlanEncap) -> Vec<sys::rte_flow_item> {
    let mut items = Vec::with_capacity(5);
    let (ether_type, ip_item) = match e.ip {
        EncapIp::V4 { src, dst, tos, ttl, df } => {
            let mut hdr = ipv4_hdr(src.into(), dst.into(), 17, tos, ttl, if df { 0x4000 } else { 0 });
            hdr.__bindgen_anon_1.version_ihl = 0x45;
            let spec = sys::rte_flow_item_ipv4 { hdr };
            let mut mhdr = ipv4_hdr(u32::MAX, u32::MAX, 0xff, 0xff, 0xff, 0xffff);
            mhdr.__bindgen_anon_1.version_ihl = 0xff;
            let mask = sys::rte_flow_item_ipv4 { hdr: mhdr };
            (0x0800, b.item(sys::RTE_FLOW_ITEM_TYPE_IPV4, spec, mask))
        }
        EncapIp::V6 { src, dst, traffic_class, hop_limit } => {
            let mut hdr = ipv6_hdr(src.into(), dst.into(), 17, traffic_class, hop_limit);
            hdr.vtc_flow = ((6u32 << 28) | (u32::from(traffic_class) << 20)).to_be();
            let spec = sys::rte_flow_item_ipv6 { hdr, ..Default::default() };
            let mut mhdr = ipv6_hdr(u128::MAX, u128::MAX, 0xff, 0xff, 0xff);
            mhdr.vtc_flow = 0xfff0_0000u32.to_be();
            let mask = sys::rte_flow_item_ipv6 { hdr: mhdr, ..Default::default() };
            (0x86dd, b.item(sys::RTE_FLOW_ITEM_TYPE_IPV6, spec, mask))
        }
    };
    let mut es = sys::rte_flow_item_eth::default();
    let mut em = sys::rte_flow_item_eth::default();
    es.__bindgen_anon_1.hdr = ether(e.eth_dst, e.eth_src, ether_type);
    em.__bindgen_anon_1.hdr = ether([0xff; 6], [0xff; 6], 0xffff);
    items.push(b.item(sys::RTE_FLOW_ITEM_TYPE_ETH, es, em));
    items.push(ip_item);
    let us = sys::rte_flow_item_udp { hdr: udp_hdr(0, e.udp_dst) };
    let um = sys::rte_flow_item_udp { hdr: udp_hdr(0, 0xffff) };
    items.push(b.item(sys::RTE_FLOW_ITEM_TYPE_UDP, us, um));
    items.push(b.item(sys::RTE_FLOW_ITEM_TYPE_VXLAN, vxlan_hdr(0x08, e.vni), vxlan_hdr(0xff, crate::rule::MAX_VNI)));
    items.push(end_item());
    items
}

fn lower_actions(b: &mut Builder, rule: &HwRule, cookie: u64) -> Vec<sys::rte_flow_action> {
    let mut out = Vec::with_capacity(rule.actions.len() + 3);
    for a in &rule.actions {
        match a {
            HwAction::Count => {
                out.push(b.action(sys::RTE_FLOW_ACTION_TYPE_COUNT, sys::rte_flow_action_count { id: 0 }))
            }
            HwAction::Age { timeout_s } => {
                let mut age =
                    sys::rte_flow_action_age { context: cookie as usize as *mut c_void, ..Default::default() };
                age.set_timeout(*timeout_s);
                out.push(b.action(sys::RTE_FLOW_ACTION_TYPE_AGE, age));
            }
            HwAction::VxlanDecap => out.push(bare_action(sys::RTE_FLOW_ACTION_TYPE_VXLAN_DECAP)),
            HwAction::PushVlan { ethertype, vid, pcp } => {
                let push = sys::rte_flow_action_of_push_vlan { ethertype: ethertype.to_be() };
                out.push(b.action(sys::RTE_FLOW_ACTION_TYPE_OF_PUSH_VLAN, push));
                let vid = sys::rte_flow_action_of_set_vlan_vid { vlan_vid: vid.to_be() };
                out.push(b.action(sys::RTE_FLOW_ACTION_TYPE_OF_SET_VLAN_VID, vid));
                let pcp = sys::rte_flow_action_of_set_vlan_pcp { vlan_pcp: *pcp };
                out.push(b.action(sys::RTE_FLOW_ACTION_TYPE_OF_SET_VLAN_PCP, pcp));
            }
            HwAction::PopVlan => out.push(bare_action(sys::RTE_FLOW_ACTION_TYPE_OF_POP_VLAN)),
            HwAction::SetVlanVid(vid) => {
                let vid = sys::rte_flow_action_of_set_vlan_vid { vlan_vid: vid.to_be() };
                out.push(b.action(sys::RTE_FLOW_ACTION_TYPE_OF_SET_VLAN_VID, vid));
            }
            HwAction::SetMacSrc(mac) => out
                .push(b.action(sys::RTE_FLOW_ACTION_TYPE_SET_MAC_SRC, sys::rte_flow_action_set_mac { mac_addr: *mac })),
            HwAction::SetMacDst(mac) => out
                .push(b.action(sys::RTE_FLOW_ACTION_TYPE_SET_MAC_DST, sys::rte_flow_action_set_mac { mac_addr: *mac })),
            HwAction::VxlanEncap(e) => {
                let definition = encap_definition(b, e);
                let conf = sys::rte_flow_action_vxlan_encap { definition: definition.as_ptr().cast_mut() };
                // The definition's buffer is on the heap: moving the Vec into
                // storage keeps the pointer valid.
                b.storage.push(Box::new(definition));
                out.push(b.action(sys::RTE_FLOW_ACTION_TYPE_VXLAN_ENCAP, conf));
            }
            HwAction::Drop => out.push(bare_action(sys::RTE_FLOW_ACTION_TYPE_DROP)),
            HwAction::Output(port) => out.push(
                b.action(sys::RTE_FLOW_ACTION_TYPE_REPRESENTED_PORT, sys::rte_flow_action_ethdev { port_id: *port }),
            ),
            HwAction::Jump { group } => {
                out.push(b.action(sys::RTE_FLOW_ACTION_TYPE_JUMP, sys::rte_flow_action_jump { group: *group }))
            }
        }
    }
    out.push(bare_action(sys::RTE_FLOW_ACTION_TYPE_END));
    out
}

/// Lowers `rule` into a transfer rule of `group`. `cookie` is the context an
/// AGE action reports back (the caller's id for the rule).
///
/// # Errors
/// [`RuleError`] when the rule is not valid vocabulary.
pub fn lower(rule: &HwRule, group: u32, cookie: u64) -> Result<Lowered, RuleError> {
    rule.validate()?;
    let mut b = Builder { storage: Vec::with_capacity(16) };
    let mut attr = sys::rte_flow_attr { group, priority: rule.priority, ..Default::default() };
    attr.set_transfer(1);
    let mut items = Vec::with_capacity(8);
    let port = sys::rte_flow_item_ethdev { port_id: rule.pattern.ingress };
    items.push(b.item(sys::RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT, port, sys::rte_flow_item_ethdev { port_id: 0xffff }));
    if let Some(t) = &rule.pattern.tunnel {
        tunnel_items(&mut b, t, &mut items);
    }
    headers_items(&mut b, &rule.pattern.headers, &mut items);
    items.push(end_item());
    let actions = lower_actions(&mut b, rule, cookie);
    Ok(Lowered { rule: rule.clone(), group, cookie, attr: Box::new(attr), items, actions, _storage: b.storage })
}
