//! Every rule as `dpdk-testpmd` commands, so a user can paste what the switch
//! installs into testpmd on a real card and see what the driver says.
//!
//! A VXLAN encapsulation takes two commands: `set vxlan-tos-ttl ...` (the
//! outer headers) and then the `flow create` whose actions say `vxlan_encap`.
//! testpmd reads at most 512 bytes per line ([`MAX_LINE`]); the switch's rules
//! stay well below (the longest shape is about 330 bytes). testpmd's `set
//! vxlan` always sends IPv4 with DF clear; a rule that sets DF says so in a
//! `#` comment line, which testpmd ignores.

use crate::rule::{
    EncapIp, EthMatch, Headers, HwAction, HwRule, L3Match, L4Match, Mac, Masked, TunnelMatch, VlanMatch,
};
use std::net::IpAddr;

/// testpmd's command-line buffer (cmdline's RDLINE_BUF_SIZE) less the newline.
pub const MAX_LINE: usize = 511;

fn mac(m: &Mac) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn mac_field(name: &str, m: &Masked<Mac>) -> String {
    if m.mask == [0xff; 6] {
        format!(" {name} is {}", mac(&m.value))
    } else {
        format!(" {name} spec {} {name} mask {}", mac(&m.value), mac(&m.mask))
    }
}

fn u16_field(name: &str, m: &Masked<u16>) -> String {
    if m.mask == u16::MAX {
        format!(" {name} is {}", m.value)
    } else {
        format!(" {name} spec {:#x} {name} mask {:#x}", m.value, m.mask)
    }
}

fn prefix_field(name: &str, addr: IpAddr, len: u8, full: u8) -> String {
    if len == full {
        format!(" {name} is {addr}")
    } else {
        format!(" {name} spec {addr} {name} prefix {len}")
    }
}

fn tos_field(name: &str, dscp: Option<u8>, ecn: Option<u8>) -> String {
    let mut v = 0u8;
    let mut m = 0u8;
    if let Some(d) = dscp {
        v |= d << 2;
        m |= 0xfc;
    }
    if let Some(e) = ecn {
        v |= e;
        m |= 3;
    }
    match m {
        0 => String::new(),
        0xff => format!(" {name} is {v}"),
        _ => format!(" {name} spec {v} {name} mask {m:#x}"),
    }
}

fn eth_text(e: &EthMatch) -> String {
    let mut s = "eth".to_owned();
    if let Some(d) = &e.dst {
        s += &mac_field("dst", d);
    }
    if let Some(x) = &e.src {
        s += &mac_field("src", x);
    }
    if let Some(t) = e.ether_type {
        s += &format!(" type is {t:#06x}");
    }
    if let Some(t) = e.tagged {
        s += &format!(" has_vlan is {}", u8::from(t));
    }
    s
}

fn vlan_text(v: &VlanMatch) -> String {
    let mut s = "vlan".to_owned();
    if let Some(vid) = v.vid {
        s += &format!(" vid is {vid}");
    }
    if let Some(p) = v.pcp {
        s += &format!(" pcp is {p}");
    }
    if let Some(t) = v.inner_type {
        s += &format!(" inner_type is {t:#06x}");
    }
    if let Some(m) = v.more_tags {
        s += &format!(" has_more_vlan is {}", u8::from(m));
    }
    s
}

fn headers_text(h: &Headers, out: &mut Vec<String>) {
    if h.is_any() {
        return;
    }
    out.push(eth_text(&h.eth));
    out.extend(h.vlans.iter().map(vlan_text));
    match &h.l3 {
        Some(L3Match::Ipv4(ip)) => {
            let mut s = "ipv4".to_owned();
            if let Some(p) = ip.src {
                s += &prefix_field("src", IpAddr::V4(p.addr), p.len, 32);
            }
            if let Some(p) = ip.dst {
                s += &prefix_field("dst", IpAddr::V4(p.addr), p.len, 32);
            }
            if let Some(p) = ip.proto {
                s += &format!(" proto is {p}");
            }
            s += &tos_field("tos", ip.dscp, ip.ecn);
            if let Some(t) = ip.ttl {
                s += &format!(" ttl is {t}");
            }
            if ip.fragment == Some(false) {
                s += " fragment_offset spec 0 fragment_offset mask 0x3fff";
            }
            out.push(s);
        }
        Some(L3Match::Ipv6(ip)) => {
            let mut s = "ipv6".to_owned();
            if let Some(p) = ip.src {
                s += &prefix_field("src", IpAddr::V6(p.addr), p.len, 128);
            }
            if let Some(p) = ip.dst {
                s += &prefix_field("dst", IpAddr::V6(p.addr), p.len, 128);
            }
            if let Some(p) = ip.next_header {
                s += &format!(" proto is {p}");
            }
            s += &tos_field("tc", ip.dscp, ip.ecn);
            if let Some(h) = ip.hop_limit {
                s += &format!(" hop is {h}");
            }
            out.push(s);
        }
        None => {}
    }
    match &h.l4 {
        Some(L4Match::Udp(p)) => {
            let mut s = "udp".to_owned();
            if let Some(x) = &p.src {
                s += &u16_field("src", x);
            }
            if let Some(x) = &p.dst {
                s += &u16_field("dst", x);
            }
            out.push(s);
        }
        Some(L4Match::Tcp { ports, flags }) => {
            let mut s = "tcp".to_owned();
            if let Some(x) = &ports.src {
                s += &u16_field("src", x);
            }
            if let Some(x) = &ports.dst {
                s += &u16_field("dst", x);
            }
            if let Some(f) = flags {
                s += &format!(" flags spec {:#04x} flags mask {:#04x}", f.value, f.mask);
            }
            out.push(s);
        }
        None => {}
    }
}

fn tunnel_text(t: &TunnelMatch, out: &mut Vec<String>) {
    out.push(match t.eth_dst {
        Some(d) => format!("eth dst is {}", mac(&d)),
        None => "eth".to_owned(),
    });
    let v = if t.src.is_ipv4() { "ipv4" } else { "ipv6" };
    out.push(format!("{v} src is {} dst is {}", t.src, t.dst));
    out.push(format!("udp dst is {}", t.udp_dst));
    out.push(format!("vxlan vni is {}", t.vni));
}

/// The commands that install `rule` through transfer proxy `proxy` in `group`.
pub fn commands(rule: &HwRule, proxy: u16, group: u32) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(e) = rule.encap() {
        let (version, src, dst, tos, ttl) = match e.ip {
            EncapIp::V4 { src, dst, tos, ttl, df } => {
                if df {
                    lines.push(
                        "# the rule sets DF in the outer IPv4 header; testpmd's set vxlan leaves it clear".into(),
                    );
                }
                ("ipv4", IpAddr::V4(src), IpAddr::V4(dst), tos, ttl)
            }
            EncapIp::V6 { src, dst, traffic_class, hop_limit } => {
                ("ipv6", IpAddr::V6(src), IpAddr::V6(dst), traffic_class, hop_limit)
            }
        };
        lines.push(format!(
            "set vxlan-tos-ttl ip-version {version} vni {} udp-src 0 udp-dst {} ip-tos {tos} ip-ttl {ttl} ip-src {src} ip-dst {dst} eth-src {} eth-dst {}",
            e.vni,
            e.udp_dst,
            mac(&e.eth_src),
            mac(&e.eth_dst)
        ));
    }
    let mut pattern = vec![format!("represented_port ethdev_port_id is {}", rule.pattern.ingress)];
    if let Some(t) = &rule.pattern.tunnel {
        tunnel_text(t, &mut pattern);
    }
    headers_text(&rule.pattern.headers, &mut pattern);
    let actions: Vec<String> = rule
        .actions
        .iter()
        .map(|a| match a {
            HwAction::Count => "count".to_owned(),
            HwAction::Age { timeout_s } => format!("age timeout {timeout_s}"),
            HwAction::VxlanDecap => "vxlan_decap".to_owned(),
            HwAction::PushVlan { ethertype, vid, pcp } => format!(
                "of_push_vlan ethertype {ethertype:#06x} / of_set_vlan_vid vlan_vid {vid} / of_set_vlan_pcp vlan_pcp {pcp}"
            ),
            HwAction::PopVlan => "of_pop_vlan".to_owned(),
            HwAction::SetVlanVid(v) => format!("of_set_vlan_vid vlan_vid {v}"),
            HwAction::SetMacSrc(m) => format!("set_mac_src mac_addr {}", mac(m)),
            HwAction::SetMacDst(m) => format!("set_mac_dst mac_addr {}", mac(m)),
            HwAction::VxlanEncap(_) => "vxlan_encap".to_owned(),
            HwAction::Drop => "drop".to_owned(),
            HwAction::Output(p) => format!("represented_port ethdev_port_id {p}"),
            HwAction::Jump { group } => format!("jump group {group}"),
        })
        .collect();
    let priority = if rule.priority == 0 { String::new() } else { format!(" priority {}", rule.priority) };
    lines.push(format!(
        "flow create {proxy} transfer group {group}{priority} pattern {} / end actions {} / end",
        pattern.join(" / "),
        actions.join(" / ")
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{sample_rule, ProbePorts, Shape};

    /// The golden text of every probe shape (ports vf=1, uplink=0, proxy 0).
    #[test]
    fn golden_text_of_every_shape() {
        let ports = ProbePorts { vf: 1, uplink: 0 };
        let want: &[(Shape, &[&str])] = &[
            (Shape::VfToUplink, &["flow create 0 transfer group 1 pattern represented_port ethdev_port_id is 1 / eth src is 02:00:00:00:00:10 has_vlan is 0 / ipv4 dst spec 10.0.0.0 dst prefix 8 / end actions count / represented_port ethdev_port_id 0 / end"]),
            (Shape::UplinkToVf, &["flow create 0 transfer group 1 pattern represented_port ethdev_port_id is 0 / eth dst is 02:00:00:00:00:10 has_vlan is 0 / end actions count / represented_port ethdev_port_id 1 / end"]),
            (Shape::VlanPush, &["flow create 0 transfer group 1 pattern represented_port ethdev_port_id is 1 / eth has_vlan is 0 / end actions count / of_push_vlan ethertype 0x8100 / of_set_vlan_vid vlan_vid 100 / of_set_vlan_pcp vlan_pcp 0 / represented_port ethdev_port_id 0 / end"]),
            (Shape::VlanPop, &["flow create 0 transfer group 1 pattern represented_port ethdev_port_id is 0 / eth has_vlan is 1 / vlan vid is 100 has_more_vlan is 0 / end actions count / of_pop_vlan / represented_port ethdev_port_id 1 / end"]),
            (Shape::MacRewrite, &["flow create 0 transfer group 1 pattern represented_port ethdev_port_id is 0 / eth dst is 02:00:00:00:00:10 has_vlan is 0 / end actions count / set_mac_src mac_addr 02:00:00:00:00:01 / set_mac_dst mac_addr 02:00:00:00:00:11 / represented_port ethdev_port_id 1 / end"]),
            (Shape::VxlanEncapV4, &[
                "# the rule sets DF in the outer IPv4 header; testpmd's set vxlan leaves it clear",
                "set vxlan-tos-ttl ip-version ipv4 vni 100 udp-src 0 udp-dst 4789 ip-tos 0 ip-ttl 64 ip-src 198.18.0.1 ip-dst 198.18.0.2 eth-src 02:00:00:00:00:01 eth-dst 02:00:00:00:00:02",
                "flow create 0 transfer group 1 pattern represented_port ethdev_port_id is 1 / eth has_vlan is 0 / end actions count / vxlan_encap / represented_port ethdev_port_id 0 / end",
            ]),
            (Shape::VxlanEncapV6, &[
                "set vxlan-tos-ttl ip-version ipv6 vni 100 udp-src 0 udp-dst 4789 ip-tos 0 ip-ttl 64 ip-src 2001:db8::1 ip-dst 2001:db8::2 eth-src 02:00:00:00:00:01 eth-dst 02:00:00:00:00:02",
                "flow create 0 transfer group 1 pattern represented_port ethdev_port_id is 1 / eth has_vlan is 0 / end actions count / vxlan_encap / represented_port ethdev_port_id 0 / end",
            ]),
            (Shape::VxlanDecap, &["flow create 0 transfer group 1 pattern represented_port ethdev_port_id is 0 / eth dst is 02:00:00:00:00:01 / ipv4 src is 198.18.0.2 dst is 198.18.0.1 / udp dst is 4789 / vxlan vni is 100 / eth dst is 02:00:00:00:00:10 has_vlan is 0 / end actions count / vxlan_decap / represented_port ethdev_port_id 1 / end"]),
            (Shape::Drop, &["flow create 0 transfer group 1 pattern represented_port ethdev_port_id is 1 / eth has_vlan is 0 / ipv4 proto is 17 / udp dst is 53 / end actions count / drop / end"]),
            (Shape::Age, &["flow create 0 transfer group 1 pattern represented_port ethdev_port_id is 1 / eth has_vlan is 0 / end actions count / age timeout 10 / represented_port ethdev_port_id 0 / end"]),
            (Shape::Jump, &["flow create 0 transfer group 0 pattern represented_port ethdev_port_id is 1 / end actions jump group 1 / end"]),
        ];
        assert_eq!(want.len(), Shape::ALL.len(), "every shape has its golden text");
        for (shape, lines) in want {
            let (rule, group) = sample_rule(*shape, ports, 1);
            let got = commands(&rule, 0, group);
            assert_eq!(got, lines.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), "{shape:?}");
            assert!(got.iter().all(|l| l.len() <= MAX_LINE), "{shape:?}: a line over testpmd's limit");
        }
    }
}
