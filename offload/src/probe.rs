//! "What will my card take?": one sample rule per rule shape the switch uses,
//! validated on a device, with the device's answer and the testpmd commands
//! to try it by hand.

use crate::device::FlowDevice;
use crate::rte_flow::lower;
use crate::rule::{
    EncapIp, EthMatch, Headers, HwAction, HwRule, Ipv4Match, Ipv4Prefix, L3Match, L4Match, Masked, Pattern, PortsMatch,
    TunnelMatch, VlanMatch, VxlanEncap, TPID_8021Q, VXLAN_PORT,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The rule shapes the switch installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    VfToUplink,
    UplinkToVf,
    VlanPush,
    VlanPop,
    MacRewrite,
    VxlanEncapV4,
    VxlanEncapV6,
    VxlanDecap,
    Drop,
    Age,
    Jump,
}

impl Shape {
    pub const ALL: [Shape; 11] = [
        Shape::VfToUplink,
        Shape::UplinkToVf,
        Shape::VlanPush,
        Shape::VlanPop,
        Shape::MacRewrite,
        Shape::VxlanEncapV4,
        Shape::VxlanEncapV6,
        Shape::VxlanDecap,
        Shape::Drop,
        Shape::Age,
        Shape::Jump,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::VfToUplink => "vf->uplink (ipv4 prefix, count)",
            Shape::UplinkToVf => "uplink->vf (dst mac)",
            Shape::VlanPush => "vlan push",
            Shape::VlanPop => "vlan pop",
            Shape::MacRewrite => "mac rewrite",
            Shape::VxlanEncapV4 => "vxlan encap, ipv4 underlay",
            Shape::VxlanEncapV6 => "vxlan encap, ipv6 underlay",
            Shape::VxlanDecap => "vxlan decap",
            Shape::Drop => "drop",
            Shape::Age => "age",
            Shape::Jump => "jump group 0 -> 1",
        }
    }
}

/// The ports sample rules use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbePorts {
    /// A VF representor's ethdev port id.
    pub vf: u16,
    /// The uplink's ethdev port id.
    pub uplink: u16,
}

const VM_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const NEXT_HOP_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn untagged() -> EthMatch {
    EthMatch { tagged: Some(false), ..Default::default() }
}

/// The sample rule of a shape and the group it goes in (`group` for all but
/// the jump rule, which lives in group 0).
pub fn sample_rule(shape: Shape, p: ProbePorts, group: u32) -> (HwRule, u32) {
    let from_vf = |headers: Headers, actions: Vec<HwAction>| HwRule {
        pattern: Pattern { ingress: p.vf, tunnel: None, headers },
        priority: 0,
        actions,
    };
    let from_uplink = |headers: Headers, actions: Vec<HwAction>| HwRule {
        pattern: Pattern { ingress: p.uplink, tunnel: None, headers },
        priority: 0,
        actions,
    };
    let eth_only = |eth: EthMatch| Headers { eth, ..Default::default() };
    let rule = match shape {
        Shape::VfToUplink => from_vf(
            Headers {
                eth: EthMatch { src: Some(Masked::exact(VM_MAC)), ..untagged() },
                l3: Some(L3Match::Ipv4(Ipv4Match {
                    dst: Some(Ipv4Prefix { addr: Ipv4Addr::new(10, 0, 0, 0), len: 8 }),
                    ..Default::default()
                })),
                ..Default::default()
            },
            vec![HwAction::Count, HwAction::Output(p.uplink)],
        ),
        Shape::UplinkToVf => from_uplink(
            eth_only(EthMatch { dst: Some(Masked::exact(VM_MAC)), ..untagged() }),
            vec![HwAction::Count, HwAction::Output(p.vf)],
        ),
        Shape::VlanPush => from_vf(
            eth_only(untagged()),
            vec![
                HwAction::Count,
                HwAction::PushVlan { ethertype: TPID_8021Q, vid: 100, pcp: 0 },
                HwAction::Output(p.uplink),
            ],
        ),
        Shape::VlanPop => from_uplink(
            Headers {
                eth: EthMatch { tagged: Some(true), ..Default::default() },
                vlans: vec![VlanMatch { vid: Some(100), more_tags: Some(false), ..Default::default() }],
                ..Default::default()
            },
            vec![HwAction::Count, HwAction::PopVlan, HwAction::Output(p.vf)],
        ),
        Shape::MacRewrite => from_uplink(
            eth_only(EthMatch { dst: Some(Masked::exact(VM_MAC)), ..untagged() }),
            vec![
                HwAction::Count,
                HwAction::SetMacSrc(UPLINK_MAC),
                HwAction::SetMacDst([2, 0, 0, 0, 0, 0x11]),
                HwAction::Output(p.vf),
            ],
        ),
        Shape::VxlanEncapV4 | Shape::VxlanEncapV6 | Shape::VxlanDecap => vxlan_rule(shape, p),
        Shape::Drop => from_vf(
            Headers {
                eth: untagged(),
                l3: Some(L3Match::Ipv4(Ipv4Match { proto: Some(17), ..Default::default() })),
                l4: Some(L4Match::Udp(PortsMatch { dst: Some(Masked::exact(53)), src: None })),
                ..Default::default()
            },
            vec![HwAction::Count, HwAction::Drop],
        ),
        Shape::Age => from_vf(
            eth_only(untagged()),
            vec![HwAction::Count, HwAction::Age { timeout_s: 10 }, HwAction::Output(p.uplink)],
        ),
        Shape::Jump => {
            let r = HwRule {
                pattern: Pattern { ingress: p.vf, tunnel: None, headers: Headers::default() },
                priority: 0,
                actions: vec![HwAction::Jump { group }],
            };
            return (r, 0);
        }
    };
    (rule, group)
}

/// The sample rules of the VXLAN shapes: encapsulation towards a remote
/// VTEP over IPv4 or IPv6 from the VF, decapsulation on the uplink.
fn vxlan_rule(shape: Shape, p: ProbePorts) -> HwRule {
    let encap = |ip: EncapIp| HwRule {
        pattern: Pattern { ingress: p.vf, tunnel: None, headers: Headers { eth: untagged(), ..Default::default() } },
        priority: 0,
        actions: vec![
            HwAction::Count,
            HwAction::VxlanEncap(VxlanEncap {
                eth_src: UPLINK_MAC,
                eth_dst: NEXT_HOP_MAC,
                ip,
                udp_dst: VXLAN_PORT,
                vni: 100,
            }),
            HwAction::Output(p.uplink),
        ],
    };
    match shape {
        Shape::VxlanEncapV4 => encap(EncapIp::V4 {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 18, 0, 2),
            tos: 0,
            ttl: 64,
            df: true,
        }),
        Shape::VxlanEncapV6 => encap(EncapIp::V6 {
            src: "2001:db8::1".parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::LOCALHOST),
            dst: "2001:db8::2".parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::LOCALHOST),
            traffic_class: 0,
            hop_limit: 64,
        }),
        _ => HwRule {
            pattern: Pattern {
                ingress: p.uplink,
                tunnel: Some(TunnelMatch {
                    eth_dst: Some(UPLINK_MAC),
                    src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
                    dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                    udp_dst: VXLAN_PORT,
                    vni: 100,
                }),
                headers: Headers {
                    eth: EthMatch { dst: Some(Masked::exact(VM_MAC)), ..untagged() },
                    ..Default::default()
                },
            },
            priority: 0,
            actions: vec![HwAction::Count, HwAction::VxlanDecap, HwAction::Output(p.vf)],
        },
    }
}

/// One line of the probe's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRow {
    pub shape: Shape,
    pub supported: bool,
    /// The device's message ("ok" when it took the rule).
    pub answer: String,
    pub testpmd: Vec<String>,
}

/// Validates every shape on `device`; `proxy` is the port testpmd commands
/// name.
pub fn probe(device: &mut dyn FlowDevice, ports: ProbePorts, proxy: u16, group: u32) -> Vec<ProbeRow> {
    Shape::ALL
        .iter()
        .map(|&shape| {
            let (rule, g) = sample_rule(shape, ports, group);
            let testpmd = crate::testpmd::commands(&rule, proxy, g);
            let (supported, answer) = match lower(&rule, g, 1) {
                Err(e) => (false, format!("lowering: {e}")),
                Ok(l) => match device.validate(&l) {
                    Ok(()) => (true, "ok".to_owned()),
                    Err(e) => (false, e.to_string()),
                },
            };
            ProbeRow { shape, supported, answer, testpmd }
        })
        .collect()
}

/// The probe's answer as a table.
pub fn render(device: &str, rows: &[ProbeRow]) -> String {
    let mut out = format!("{device}\n");
    let width = Shape::ALL.iter().map(|s| s.name().len()).max().unwrap_or(10);
    for r in rows {
        out += &format!("  {:width$}  {:3}  {}\n", r.shape.name(), if r.supported { "yes" } else { "no" }, r.answer);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActionKind, ModelDevice, ModelSwitch, Profile};
    use std::sync::Arc;

    #[test]
    fn every_sample_is_valid_vocabulary_and_the_model_answers_per_profile() {
        let ports = ProbePorts { vf: 1, uplink: 0 };
        for s in Shape::ALL {
            let (r, g) = sample_rule(s, ports, 1);
            assert_eq!(r.validate(), Ok(()), "{s:?}");
            assert!(lower(&r, g, 7).is_ok(), "{s:?}");
        }
        let mut full = ModelDevice::new(Arc::new(ModelSwitch::new(Profile::default())));
        let rows = probe(&mut full, ports, 0, 1);
        assert!(rows.iter().all(|r| r.supported), "{}", render("model", &rows));
        let mut no_decap =
            ModelDevice::new(Arc::new(ModelSwitch::new(Profile::default().without(ActionKind::VxlanDecap))));
        let rows = probe(&mut no_decap, ports, 0, 1);
        let refused: Vec<Shape> = rows.iter().filter(|r| !r.supported).map(|r| r.shape).collect();
        assert_eq!(refused, vec![Shape::VxlanDecap], "{}", render("model", &rows));
        assert!(rows[7].answer.contains("VXLAN_DECAP is not in profile"), "{}", rows[7].answer);
    }
}
