//! Translation of megaflows built the way the PMD builds them (rule table
//! classification + the megaflow mask) into rules, and every refusal.

use super::*;
use crate::datapath::burst::megaflow_mask;
use crate::flow::RuleTable;
use crate::net::Prefix;
use crate::ofrule::parse_rule;
use crate::packet::parse::parse;
use crate::underlay::{LocalAddress, NeighSource, Neighbour, Route, RouteSource};
use offload::rule::HwAction as Hw;

/// Ports 0 vf0, 1 vf1, 2 uplink0 (VTEP 198.18.0.1/24, 2001:db8::1/64), 3 uplink1
/// (other e-switch); tunnels 4 vxlan0 (IPv4, VNI 100), 5 vxlan6 (IPv6, VNI 300).
const NAMES: [&str; 6] = ["vf0", "vf1", "uplink0", "uplink1", "vxlan0", "vxlan6"];
const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
const NEXT_HOP: [u8; 6] = [2, 0, 0, 0, 0, 0xbb];

fn facts(vf_mtu: u16, uplink_mtu: u16) -> Vec<PortFacts> {
    let p =
        |name: &str, ethdev, role, mtu, domain, mac| PortFacts { name: name.into(), ethdev, role, mtu, domain, mac };
    vec![
        p("vf0", 10, Role::Representor, vf_mtu, Some(0), [2, 0, 0, 0, 0, 0x10]),
        p("vf1", 11, Role::Representor, 1500, Some(0), [2, 0, 0, 0, 0, 0x11]),
        p("uplink0", 12, Role::Uplink, uplink_mtu, Some(0), UPLINK_MAC),
        p("uplink1", 13, Role::Uplink, 1500, Some(1), [2, 0, 0, 0, 0, 0xcc]),
    ]
}

fn tables_mtu(neighbour: bool, mtu: u16) -> Tables {
    let mut t = Tables::default();
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    t.locals.push(LocalAddress { ip: ip("198.18.0.1"), len: 24, port: 2, mac: UPLINK_MAC, mtu });
    t.locals.push(LocalAddress { ip: ip("2001:db8::1"), len: 64, port: 2, mac: UPLINK_MAC, mtu });
    let route = |p: &str| Route {
        prefix: p.parse::<Prefix>().expect("p"),
        via: None,
        port: 2,
        source: RouteSource::Connected,
        metric: 0,
    };
    t.routes.push(route("198.18.0.0/24"));
    t.routes.push(route("2001:db8::/64"));
    if neighbour {
        t.neighbours.insert(ip("198.18.0.2"), Neighbour { mac: NEXT_HOP, port: 2, source: NeighSource::Config });
        t.neighbours.insert(ip("2001:db8::2"), Neighbour { mac: NEXT_HOP, port: 2, source: NeighSource::Config });
    }
    t.tunnels.push(Tunnel {
        name: "vxlan0".into(),
        number: 4,
        remote: ip("198.18.0.2"),
        vni: Some(100),
        local: None,
        udp_port: 4789,
    });
    t.tunnels.push(Tunnel {
        name: "vxlan6".into(),
        number: 5,
        remote: ip("2001:db8::2"),
        vni: Some(300),
        local: None,
        udp_port: 4789,
    });
    t
}

fn udp(dst: [u8; 6], tagged: Option<u16>, ip_dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&[2, 0, 0, 0, 0, 0x10]);
    if let Some(v) = tagged {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1]);
    f.extend_from_slice(&ip_dst);
    f.extend_from_slice(&1000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 26, 0, 0]);
    f.extend_from_slice(&[0u8; 18]);
    f
}

fn tables(neighbour: bool) -> Tables {
    tables_mtu(neighbour, 1600)
}

/// The megaflow the PMD would install for `frame` from `in_port` under `rules`.
fn megaflow(
    rules: &[&str],
    in_port: u32,
    frame: &[u8],
    tunnel: Option<&crate::packet::TunnelMeta>,
) -> (FlowKey, FlowMask, Vec<Action>) {
    let mut table = RuleTable::new();
    let resolve = |n: &str| NAMES.iter().position(|p| *p == n).map(|i| i as u32);
    for r in rules {
        let s = parse_rule(r, &resolve).expect(r);
        table.insert(s.priority, s.matcher, s.actions);
    }
    let key = parse(frame, in_port, tunnel).key;
    let c = table.classify(&key);
    let actions = c.rule.as_ref().map(|r| r.actions.clone()).unwrap_or_default();
    let mask = megaflow_mask(c.mask);
    (key.masked(&mask), mask, actions)
}

fn run(rules: &[&str], in_port: u32, frame: &[u8], ports: &[PortFacts], t: &Tables) -> Result<Translation, Refusal> {
    let (key, mask, actions) = megaflow(rules, in_port, frame, None);
    translate(&key, &mask, &actions, &Context { ports, tables: t }, 1)
}

#[test]
fn vf_to_uplink_by_prefix() {
    let tr = run(
        &["priority=10,in_port=vf0,ip,nw_dst=10.2.0.0/16 actions=output:uplink0"],
        0,
        &udp([2; 6], None, [10, 2, 3, 4], 80),
        &facts(1500, 1500),
        &tables(true),
    )
    .expect("translates");
    let r = &tr.rule;
    assert_eq!(r.pattern.ingress, 10);
    assert_eq!(r.pattern.headers.eth.tagged, Some(false));
    assert_eq!(r.pattern.headers.eth.ether_type, Some(0x0800));
    let Some(L3Match::Ipv4(ip)) = r.pattern.headers.l3 else { panic!("ipv4: {r}") };
    assert_eq!(ip.dst, Some(Ipv4Prefix { addr: "10.2.0.0".parse().expect("ip"), len: 16 }));
    assert_eq!(r.actions, vec![Hw::Count, Hw::Output(12)]);
    assert!(tr.tunnels.is_empty());
}

#[test]
fn vlan_edits_follow_the_tag_state() {
    let t = tables(true);
    let f = facts(1500, 1500);
    // Untagged + mod_vlan_vid: a push.
    let tr =
        run(&["in_port=vf0 actions=mod_vlan_vid:7,output:uplink0"], 0, &udp([2; 6], None, [10, 0, 0, 1], 1), &f, &t)
            .expect("push");
    assert_eq!(tr.rule.actions, vec![Hw::Count, Hw::PushVlan { ethertype: 0x8100, vid: 7, pcp: 0 }, Hw::Output(12)]);
    // Tagged + mod_vlan_vid: a rewrite; the pattern says there is one tag,
    // whatever its id (the rule did not consult it).
    let tr =
        run(&["in_port=vf0 actions=mod_vlan_vid:7,output:uplink0"], 0, &udp([2; 6], Some(5), [10, 0, 0, 1], 1), &f, &t)
            .expect("set");
    assert_eq!(tr.rule.actions, vec![Hw::Count, Hw::SetVlanVid(7), Hw::Output(12)]);
    assert_eq!(tr.rule.pattern.headers.vlans.len(), 1);
    assert_eq!(tr.rule.pattern.headers.vlans[0].vid, None);
    assert_eq!(tr.rule.pattern.headers.vlans[0].more_tags, Some(false));
    // Pop then MAC rewrite.
    let tr = run(&["in_port=uplink0,dl_dst=02:00:00:00:00:10,dl_vlan=5 actions=strip_vlan,mod_dl_src:02:00:00:00:00:99,output:vf0"], 2, &udp([2, 0, 0, 0, 0, 0x10], Some(5), [10, 0, 0, 1], 1), &f, &t)
        .expect("pop");
    assert_eq!(tr.rule.actions, vec![Hw::Count, Hw::PopVlan, Hw::SetMacSrc([2, 0, 0, 0, 0, 0x99]), Hw::Output(10)]);
}

#[test]
fn encapsulation_uses_the_current_resolution() {
    let tr = run(
        &["in_port=vf0 actions=output:vxlan0"],
        0,
        &udp([2; 6], None, [10, 0, 0, 1], 1),
        &facts(1500, 1600),
        &tables(true),
    )
    .expect("encap");
    let [Hw::Count, Hw::VxlanEncap(e), Hw::Output(12)] = tr.rule.actions.as_slice() else { panic!("{}", tr.rule) };
    assert_eq!((e.eth_src, e.eth_dst, e.vni, e.udp_dst), (UPLINK_MAC, NEXT_HOP, 100, 4789));
    assert!(matches!(e.ip, EncapIp::V4 { ttl: 64, df: true, .. }));
    assert_eq!(tr.tunnels, vec![(4, None)]);
    let tr = run(
        &["in_port=vf0 actions=output:vxlan6"],
        0,
        &udp([2; 6], None, [10, 0, 0, 1], 1),
        &facts(1500, 1600),
        &tables(true),
    )
    .expect("encap over IPv6");
    assert!(matches!(tr.rule.actions[1], Hw::VxlanEncap(VxlanEncap { ip: EncapIp::V6 { .. }, vni: 300, .. })));
}

#[test]
fn refusals_say_why() {
    let frame = udp([2; 6], None, [10, 0, 0, 1], 1);
    let t = tables(true);
    let refused = |rules: &[&str], in_port: u32, frame: &[u8], f: &[PortFacts], t: &Tables| {
        run(rules, in_port, frame, f, t).expect_err("refused").to_string()
    };
    assert_eq!(
        refused(&["in_port=vf0 actions=output:vxlan0"], 0, &frame, &facts(1500, 1500), &tables_mtu(true, 1500)),
        "mtu: vf0 1500 + 50 > uplink0 1500"
    );
    assert_eq!(
        refused(&["in_port=vf0 actions=output:vxlan6"], 0, &frame, &facts(1500, 1560), &tables_mtu(true, 1560)),
        "mtu: vf0 1500 + 70 > uplink0 1560"
    );
    assert_eq!(
        refused(&["in_port=vf0 actions=output:uplink0"], 0, &frame, &facts(9000, 1500), &t),
        "mtu: vf0 9000 > uplink0 1500"
    );
    assert!(
        run(
            &["in_port=uplink0,dl_dst=02:00:00:00:00:10 actions=output:vf0"],
            2,
            &udp([2, 0, 0, 0, 0, 0x10], None, [1, 1, 1, 1], 1),
            &facts(1500, 9000),
            &t
        )
        .is_ok(),
        "toward a VM port the VF enforces its MTU"
    );
    assert!(refused(&["in_port=vf0 actions=output:uplink0,output:vf1"], 0, &frame, &facts(1500, 1500), &t)
        .starts_with("unsupported: several outputs"));
    assert_eq!(
        refused(&["in_port=vf0 actions=output:uplink1"], 0, &frame, &facts(1500, 1500), &t),
        "other e-switch: vf0 (domain 0) and uplink1 (domain 1)"
    );
    assert_eq!(
        refused(&["in_port=vf0 actions=output:vxlan0"], 0, &frame, &facts(1500, 1600), &tables(false)),
        "unresolved: no neighbour entry for next hop 198.18.0.2"
    );
    assert!(refused(
        &["in_port=vf0,icmp,icmp_type=8 actions=output:uplink0"],
        0,
        &{
            let mut f = frame.clone();
            f[23] = 1;
            f
        },
        &facts(1500, 1500),
        &t
    )
    .contains("ICMP type/code"));
    // From a VTEP uplink, a catch-all could take VXLAN or ARP for the VTEP.
    assert!(refused(&["in_port=uplink0 actions=output:vf0"], 2, &frame, &facts(1500, 1500), &t).starts_with("vtep:"));
    // ... unless the match excludes them (a VM's unicast MAC).
    assert!(run(
        &["in_port=uplink0,dl_dst=02:00:00:00:00:10 actions=output:vf0"],
        2,
        &udp([2, 0, 0, 0, 0, 0x10], None, [1, 1, 1, 1], 1),
        &facts(1500, 1500),
        &t
    )
    .is_ok());
}

#[test]
fn drop_flows_become_drop_rules() {
    let tr = run(
        &["in_port=vf0,udp,tp_dst=53 actions=drop"],
        0,
        &udp([2; 6], None, [10, 0, 0, 1], 53),
        &facts(1500, 1500),
        &tables(true),
    )
    .expect("drop");
    assert_eq!(tr.rule.actions, vec![Hw::Count, Hw::Drop]);
    let Some(L4Match::Udp(p)) = tr.rule.pattern.headers.l4 else { panic!("udp: {}", tr.rule) };
    assert_eq!(p.dst, Some(Masked::exact(53)));
    // No rule at all: also a drop.
    let tr = run(
        &["in_port=vf1 actions=output:uplink0"],
        0,
        &udp([2; 6], None, [10, 0, 0, 1], 53),
        &facts(1500, 1500),
        &tables(true),
    )
    .expect("no-rule drop");
    assert_eq!(tr.rule.actions, vec![Hw::Count, Hw::Drop]);
}

/// Tunnel metadata of a packet the remote VTEP 198.18.0.2 sent with `vni`.
fn from_remote_vtep(vni: u32) -> crate::packet::TunnelMeta {
    crate::packet::TunnelMeta {
        vni,
        src: crate::packet::key::ip_to("198.18.0.2".parse().expect("ip")),
        dst: crate::packet::key::ip_to("198.18.0.1".parse().expect("ip")),
        ipv6: false,
    }
}

#[test]
fn decapsulation_matches_outer_headers_and_vni() {
    let inner = udp([2, 0, 0, 0, 0, 0x10], None, [10, 0, 0, 1], 1);
    let meta = from_remote_vtep(100);
    let (key, mask, actions) = megaflow(&["in_port=vxlan0 actions=output:vf0"], 4, &inner, Some(&meta));
    let f = facts(1500, 1600);
    let t = tables(true);
    let tr = translate(&key, &mask, &actions, &Context { ports: &f, tables: &t }, 1).expect("decap");
    let tm = tr.rule.pattern.tunnel.expect("a tunnel pattern");
    assert_eq!(
        (tm.src, tm.dst, tm.vni, tm.udp_dst, tm.eth_dst),
        ("198.18.0.2".parse().expect("ip"), "198.18.0.1".parse().expect("ip"), 100, 4789, Some(UPLINK_MAC))
    );
    assert_eq!(tr.rule.pattern.ingress, 12, "arrives on the uplink");
    assert_eq!(tr.rule.actions, vec![Hw::Count, Hw::VxlanDecap, Hw::Output(10)]);
}

/// A rule on the VNI (`tun_id`, 24 bits like the VXLAN header) goes to
/// hardware: its megaflow compares every bit of the field.
#[test]
fn a_tun_id_rule_is_offloaded() {
    let inner = udp([2, 0, 0, 0, 0, 0x10], None, [10, 0, 0, 1], 1);
    let meta = from_remote_vtep(100);
    let f = facts(1500, 1600);
    let t = tables(true);
    for rule in ["in_port=vxlan0,tun_id=100 actions=output:vf0", "tun_id=0x64 actions=output:vf0"] {
        let (key, mask, actions) = megaflow(&[rule], 4, &inner, Some(&meta));
        assert_eq!(mask.get(Field::TunId), 0xff_ffff, "{rule}");
        let tr = translate(&key, &mask, &actions, &Context { ports: &f, tables: &t }, 1).expect(rule);
        assert_eq!(tr.rule.pattern.tunnel.expect("a tunnel pattern").vni, 100, "{rule}");
        assert_eq!(tr.rule.actions, vec![Hw::Count, Hw::VxlanDecap, Hw::Output(10)], "{rule}");
    }
    // A VNI the tunnel port does not carry can never arrive on it.
    let (key, mask, actions) =
        megaflow(&["tun_id=300 actions=output:vf0", "actions=output:vf1"], 4, &inner, Some(&meta));
    let tr = translate(&key, &mask, &actions, &Context { ports: &f, tables: &t }, 1).expect("the catch-all");
    assert_eq!(tr.rule.actions, vec![Hw::Count, Hw::VxlanDecap, Hw::Output(11)]);
}

/// A rule that names only the VLAN id matches every priority of that VLAN:
/// one megaflow and one hardware rule for all of them, not one per PCP.
#[test]
fn a_dl_vlan_rule_gives_one_megaflow_for_every_priority() {
    let f = facts(1500, 1500);
    let t = tables(true);
    for rule in [
        "in_port=vf0,dl_vlan=100 actions=strip_vlan,output:uplink0",
        "in_port=vf0,dl_vlan=100 actions=mod_vlan_vid:200,output:uplink0",
        "in_port=vf0,dl_vlan=100 actions=push_vlan:0x88a8,output:uplink0",
    ] {
        let flows: Vec<_> = [0x0064u16, 0x2064, 0xe064]
            .iter()
            .map(|&tci| megaflow(&[rule], 0, &udp([2; 6], Some(tci), [10, 0, 0, 1], 80), None))
            .collect();
        assert!(flows.iter().all(|m| (m.0, m.1) == (flows[0].0, flows[0].1)), "{rule}: one megaflow");
        assert_eq!(flows[0].1.get(Field::VlanTci), 0x1fff, "{rule}: the id and the tag's presence");
        let tr = translate(&flows[0].0, &flows[0].1, &flows[0].2, &Context { ports: &f, tables: &t }, 1).expect(rule);
        let vlan = tr.rule.pattern.headers.vlans[0];
        assert_eq!((vlan.vid, vlan.pcp), (Some(100), None), "{rule}");
    }
}
