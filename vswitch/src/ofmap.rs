//! OpenFlow matches and actions onto the switch's rule vocabulary, and back.
//!
//! OpenFlow port numbers are the datapath's plus one (port 0 is not a port in
//! OpenFlow): the first `[[port]]` is 1, tunnel ports follow the ports.
//! Whatever has no counterpart in the rule table is refused with the code the
//! spec names for it; nothing is dropped silently.

use crate::actions::Action;
use crate::flow::table::Match;
use crate::ofrule::MAX_OUTPUTS;
use crate::packet::key::{mac_to, VLAN_PRESENT};
use crate::packet::parse::{ETH_TYPE_ARP, ETH_TYPE_IPV4, ETH_TYPE_IPV6, ETH_TYPE_QINQ, ETH_TYPE_VLAN};
use crate::packet::Field;
use openflow::action::port as ofp;
use openflow::error::{reject, ErrorCode as E, Rejection};
use openflow::oxm::{Field as Of, Oxm, VID_PRESENT};
use openflow::{Action as OfAction, Instruction};

/// Tables this switch has (0 to 253, as Open vSwitch).
pub const N_TABLES: u8 = crate::flow::pipeline::MAX_TABLES as u8;

/// Largest VNI (the rule table's tunnel id is 24 bits).
const MAX_VNI: u128 = 0x00ff_ffff;
/// An IPv4 address in the key: `::ffff:a.b.c.d`.
const V4_MAPPED: u128 = 0xffff_0000_0000;

/// The switch's ports as OpenFlow sees them.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// Physical ports and tunnel ports together.
    pub count: u32,
}

impl Ports {
    /// Datapath number of an OpenFlow port, if it is one of ours.
    pub fn datapath(&self, of_port: u32) -> Option<u32> {
        (1..=self.count).contains(&of_port).then(|| of_port - 1)
    }

    /// OpenFlow number of a datapath port.
    pub fn openflow(dp: u32) -> u32 {
        dp + 1
    }
}

/// An OpenFlow match as a rule-table match.
///
/// # Errors
/// `BAD_MATCH` with the field's code: fields the switch does not match on,
/// ports that are not its own, tunnel ids wider than a VNI.
pub fn to_match(m: &openflow::Match, ports: Ports) -> Result<Match, Rejection> {
    let mut out = Match::any();
    for o in &m.fields {
        let mask = o.effective_mask();
        out = match o.field {
            Of::InPort => {
                let dp = u32::try_from(o.value).ok().and_then(|p| ports.datapath(p)).ok_or_else(|| {
                    Rejection::new(E::BadMatchBadValue, format!("in_port {}: no such port on this switch", o.value))
                })?;
                out.with(Field::InPort, u128::from(dp))
            }
            Of::EthDst => out.with_masked(Field::EthDst, o.value, mask),
            Of::EthSrc => out.with_masked(Field::EthSrc, o.value, mask),
            Of::EthType => {
                let t = o.value as u16;
                if t == ETH_TYPE_VLAN || t == ETH_TYPE_QINQ {
                    return reject(E::BadMatchBadValue, "eth_type 0x8100/0x88a8: VLAN tags are matched with vlan_vid");
                }
                out.with(Field::EthType, o.value)
            }
            // OFPVID_PRESENT is the key's VLAN_PRESENT bit: the 13 bits map
            // one to one onto the TCI's low 13.
            Of::VlanVid => out.with_masked(Field::VlanTci, o.value, mask),
            Of::VlanPcp => out.with_masked(
                Field::VlanTci,
                (o.value << 13) | u128::from(VLAN_PRESENT),
                0xe000 | u128::from(VLAN_PRESENT),
            ),
            Of::IpDscp => out.with_masked(Field::IpTos, o.value << 2, 0xfc),
            Of::IpEcn => out.with_masked(Field::IpTos, o.value, 0x03),
            Of::IpProto | Of::ArpOp => out.with(Field::IpProto, o.value & 0xff),
            Of::Ipv4Src | Of::ArpSpa => out.with_masked(Field::NwSrc, V4_MAPPED | o.value, (u128::MAX << 32) | mask),
            Of::Ipv4Dst | Of::ArpTpa => out.with_masked(Field::NwDst, V4_MAPPED | o.value, (u128::MAX << 32) | mask),
            Of::Ipv6Src => out.with_masked(Field::NwSrc, o.value, mask),
            Of::Ipv6Dst => out.with_masked(Field::NwDst, o.value, mask),
            Of::TcpSrc | Of::UdpSrc | Of::SctpSrc | Of::Icmpv4Type | Of::Icmpv6Type => out.with(Field::TpSrc, o.value),
            Of::TcpDst | Of::UdpDst | Of::SctpDst | Of::Icmpv4Code | Of::Icmpv6Code => out.with(Field::TpDst, o.value),
            Of::TunnelId => {
                if o.value > MAX_VNI {
                    return reject(E::BadMatchBadValue, format!("tunnel_id {:#x} is wider than a 24-bit VNI", o.value));
                }
                out.with_masked(Field::TunId, o.value, mask & MAX_VNI)
            }
            other => {
                return reject(
                    E::BadMatchBadField,
                    format!("{} is not a field this switch matches on (docs/openflow.md lists them)", other.name()),
                )
            }
        };
    }
    Ok(out)
}

/// A rule-table match as OpenFlow fields, for dumps of rules that did not
/// come from OpenFlow. Returns the match and the names of the key fields it
/// could not say (IP TTL, fragments, TCP flags, the outer tunnel header,
/// masked transport ports).
pub fn from_match(m: &Match) -> (openflow::Match, Vec<&'static str>) {
    let mut fields = Vec::new();
    let mut unsaid = Vec::new();
    let get = |f: Field| (m.key.get(f), m.mask.get(f));
    let exact = |f: Field| m.mask.get(f) == f.full();
    let some = |o: Oxm| if o.mask == Some(o.field.full()) { Oxm::exact(o.field, o.value) } else { o };
    if exact(Field::InPort) {
        fields.push(Oxm::exact(Of::InPort, u128::from(Ports::openflow(m.key.in_port()))));
    }
    for (f, of) in [(Field::EthDst, Of::EthDst), (Field::EthSrc, Of::EthSrc)] {
        let (v, k) = get(f);
        if k != 0 {
            fields.push(some(Oxm::masked(of, v, k)));
        }
    }
    let eth = exact(Field::EthType).then(|| m.key.eth_type());
    if let Some(e) = eth {
        fields.push(Oxm::exact(Of::EthType, u128::from(e)));
    }
    let (tci, tci_mask) = get(Field::VlanTci);
    if tci_mask & 0x1fff != 0 {
        fields.push(some(Oxm::masked(Of::VlanVid, tci & 0x1fff, tci_mask & 0x1fff)));
    }
    if tci_mask & 0xe000 == 0xe000 && tci & u128::from(VLAN_PRESENT) != 0 {
        fields.push(Oxm::exact(Of::VlanPcp, tci >> 13));
    } else if tci_mask & 0xe000 != 0 {
        unsaid.push("vlan_pcp (masked)");
    }
    let proto = exact(Field::IpProto).then(|| m.key.ip_proto());
    let ip = matches!(eth, Some(ETH_TYPE_IPV4 | ETH_TYPE_IPV6));
    if let Some(p) = proto {
        fields.push(Oxm::exact(if eth == Some(ETH_TYPE_ARP) { Of::ArpOp } else { Of::IpProto }, u128::from(p)));
    }
    let (tos, tos_mask) = get(Field::IpTos);
    if tos_mask & 0xfc == 0xfc {
        fields.push(Oxm::exact(Of::IpDscp, tos >> 2));
    }
    if tos_mask & 0x03 == 0x03 {
        fields.push(Oxm::exact(Of::IpEcn, tos & 3));
    }
    let addr = |src: bool| match eth {
        Some(ETH_TYPE_IPV4) => Some(if src { Of::Ipv4Src } else { Of::Ipv4Dst }),
        Some(ETH_TYPE_ARP) => Some(if src { Of::ArpSpa } else { Of::ArpTpa }),
        Some(ETH_TYPE_IPV6) => Some(if src { Of::Ipv6Src } else { Of::Ipv6Dst }),
        _ => None,
    };
    for (f, src) in [(Field::NwSrc, true), (Field::NwDst, false)] {
        let (v, k) = get(f);
        match addr(src) {
            _ if k == 0 => {}
            Some(of) if of.bytes() == 4 => fields.push(some(Oxm::masked(of, v & 0xffff_ffff, k & 0xffff_ffff))),
            Some(of) => fields.push(some(Oxm::masked(of, v, k))),
            None => unsaid.push(if src { "nw_src" } else { "nw_dst" }),
        }
    }
    let tp = |src: bool| match (proto, ip) {
        (Some(6), true) => Some(if src { Of::TcpSrc } else { Of::TcpDst }),
        (Some(17), true) => Some(if src { Of::UdpSrc } else { Of::UdpDst }),
        (Some(132), true) => Some(if src { Of::SctpSrc } else { Of::SctpDst }),
        (Some(1), true) => Some(if src { Of::Icmpv4Type } else { Of::Icmpv4Code }),
        (Some(58), true) => Some(if src { Of::Icmpv6Type } else { Of::Icmpv6Code }),
        _ => None,
    };
    for (f, src) in [(Field::TpSrc, true), (Field::TpDst, false)] {
        let (v, k) = get(f);
        match tp(src) {
            _ if k == 0 => {}
            Some(of) if k == of.full() => fields.push(Oxm::exact(of, v)),
            _ => unsaid.push(if src { "tp_src" } else { "tp_dst" }),
        }
    }
    let (vni, vni_mask) = get(Field::TunId);
    if vni_mask != 0 {
        fields.push(Oxm::masked(Of::TunnelId, vni, vni_mask));
    }
    for (f, name) in [
        (Field::IpTtl, "nw_ttl"),
        (Field::IpFrag, "nw_frag"),
        (Field::TcpFlags, "tcp_flags"),
        (Field::VlanTci2, "inner VLAN"),
        (Field::TunSrc, "tun_src"),
        (Field::TunDst, "tun_dst"),
        (Field::TunFlags, "tun_flags"),
    ] {
        if m.mask.get(f) != 0 {
            unsaid.push(name);
        }
    }
    (openflow::Match::new(fields), unsaid)
}

/// A PACKET_OUT's actions (as an apply_actions instruction) as actions.
///
/// # Errors
/// As [`to_instructions`]; goto_table has no place here.
pub fn to_actions(instructions: &[Instruction], ports: Ports) -> Result<Vec<Action>, Rejection> {
    instructions_in(instructions, None, ports).map(|(t, _)| t)
}

/// A FLOW_MOD's instructions for a rule in `table`: its actions and the
/// table it goes on to.
///
/// # Errors
/// `BAD_INSTRUCTION` for instructions the switch does not run (write-actions,
/// metadata, meters) and for a goto_table that is not to a higher table
/// (BAD_TABLE_ID); `BAD_ACTION` for actions it cannot apply.
pub fn to_instructions(
    instructions: &[Instruction],
    table: u8,
    ports: Ports,
) -> Result<(Vec<Action>, Option<u8>), Rejection> {
    instructions_in(instructions, Some(table), ports)
}

fn instructions_in(
    instructions: &[Instruction],
    table: Option<u8>,
    ports: Ports,
) -> Result<(Vec<Action>, Option<u8>), Rejection> {
    let mut t = Vec::new();
    let mut goto = None;
    for i in instructions {
        match i {
            Instruction::ApplyActions(list) => {
                for a in list {
                    action(a, ports, &mut t)?;
                }
            }
            // No action set is kept, so clearing it is a no-op.
            Instruction::ClearActions => {}
            Instruction::GotoTable(next) => match table {
                Some(here) if crate::flow::RuleTable::valid_goto(here, *next) => goto = Some(*next),
                Some(here) => {
                    return reject(
                        E::BadInstructionBadTableId,
                        format!("goto_table:{next} from table {here}: the next table must be higher, below {N_TABLES}"),
                    )
                }
                None => return reject(E::BadInstructionUnsupInst, "goto_table in a packet-out"),
            },
            Instruction::WriteMetadata { .. } => {
                return reject(E::BadInstructionUnsupMetadata, "write_metadata: no metadata field in this switch")
            }
            Instruction::Experimenter { experimenter, .. } => {
                return reject(E::BadInstructionBadExperimenter, format!("experimenter instruction {experimenter:#x}"))
            }
            other => {
                return reject(
                    E::BadInstructionUnsupInst,
                    format!("{} is not supported (apply_actions, clear_actions and goto_table are)", other.name()),
                )
            }
        }
    }
    if t.iter().filter(|a| matches!(a, Action::Output(_) | Action::InPort)).count() > MAX_OUTPUTS {
        return reject(E::BadActionTooMany, format!("more than {MAX_OUTPUTS} outputs"));
    }
    Ok((t, goto))
}

/// One action onto `t`.
fn action(a: &OfAction, ports: Ports, t: &mut Vec<Action>) -> Result<(), Rejection> {
    match a {
        OfAction::Output { port, max_len } => match *port {
            ofp::IN_PORT => t.push(Action::InPort),
            ofp::FLOOD | ofp::ALL => {
                // Every port but the input (an output to the input port is
                // skipped); ALL sends back out of it too.
                t.extend((0..ports.count).map(Action::Output));
                if *port == ofp::ALL {
                    t.push(Action::InPort);
                }
            }
            ofp::CONTROLLER => t.push(Action::Controller { max_len: *max_len }),
            p => match ports.datapath(p) {
                Some(dp) => t.push(Action::Output(dp)),
                None => {
                    return reject(
                        E::BadActionBadOutPort,
                        format!("output:{p}: no such port (NORMAL, LOCAL and TABLE are not supported)"),
                    );
                }
            },
        },
        OfAction::PushVlan(tpid) => {
            if *tpid != ETH_TYPE_VLAN && *tpid != ETH_TYPE_QINQ {
                return reject(E::BadActionBadArgument, format!("push_vlan {tpid:#06x}: must be 0x8100 or 0x88a8"));
            }
            t.push(Action::PushVlan { tpid: *tpid, tci: 0 });
        }
        OfAction::PopVlan => t.push(Action::PopVlan),
        OfAction::SetField(o) => t.push(set_field(o)?),
        OfAction::Experimenter { experimenter, .. } => {
            return reject(E::BadActionBadExperimenter, format!("experimenter action {experimenter:#x}"))
        }
        other => {
            return reject(
                E::BadActionBadType,
                format!("{} is not supported (output, push_vlan, pop_vlan and set_field are)", other.name()),
            )
        }
    }
    Ok(())
}

fn set_field(o: &Oxm) -> Result<Action, Rejection> {
    let mac = |v: u128| {
        let b = v.to_be_bytes();
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[10..]);
        m
    };
    Ok(match o.field {
        Of::EthSrc => Action::SetEthSrc(mac(o.value)),
        Of::EthDst => Action::SetEthDst(mac(o.value)),
        Of::VlanVid => {
            if o.value & u128::from(VID_PRESENT) == 0 {
                return reject(E::BadActionBadSetArgument, "set_field vlan_vid without OFPVID_PRESENT (0x1000)");
            }
            Action::SetVlanVid((o.value & 0x0fff) as u16)
        }
        Of::TunnelId => {
            if o.value > MAX_VNI {
                return reject(
                    E::BadActionBadSetArgument,
                    format!("tunnel_id {:#x} is wider than a 24-bit VNI", o.value),
                );
            }
            Action::SetTunnel(o.value as u32)
        }
        other => {
            return reject(
                E::BadActionBadSetType,
                format!("set_field {}: only eth_src, eth_dst, vlan_vid and tunnel_id can be set", other.name()),
            )
        }
    })
}

/// Rule-table actions and next table as OpenFlow instructions (dumps of
/// rules that did not come from OpenFlow).
pub fn from_actions(actions: &[Action], goto: Option<u8>) -> Vec<Instruction> {
    let mut out = apply_actions(actions);
    out.extend(goto.map(Instruction::GotoTable));
    out
}

fn apply_actions(actions: &[Action]) -> Vec<Instruction> {
    let mut list = Vec::new();
    for a in actions {
        match a {
            Action::Output(p) => list.push(OfAction::Output { port: Ports::openflow(*p), max_len: 0 }),
            Action::InPort => list.push(OfAction::Output { port: ofp::IN_PORT, max_len: 0 }),
            Action::PushVlan { tpid, tci } => {
                list.push(OfAction::PushVlan(*tpid));
                if *tci != 0 {
                    list.push(OfAction::SetField(Oxm::exact(Of::VlanVid, u128::from(VID_PRESENT | (tci & 0x0fff)))));
                    if tci >> 13 != 0 {
                        list.push(OfAction::SetField(Oxm::exact(Of::VlanPcp, u128::from(tci >> 13))));
                    }
                }
            }
            Action::PopVlan => list.push(OfAction::PopVlan),
            Action::SetVlanVid(v) => {
                list.push(OfAction::SetField(Oxm::exact(Of::VlanVid, u128::from(VID_PRESENT | (v & 0x0fff)))))
            }
            Action::SetEthSrc(m) => list.push(OfAction::SetField(Oxm::exact(Of::EthSrc, mac_to(*m)))),
            Action::SetEthDst(m) => list.push(OfAction::SetField(Oxm::exact(Of::EthDst, mac_to(*m)))),
            Action::SetTunnel(v) => list.push(OfAction::SetField(Oxm::exact(Of::TunnelId, u128::from(*v)))),
            Action::Controller { max_len } => list.push(OfAction::Output { port: ofp::CONTROLLER, max_len: *max_len }),
            Action::Drop => {}
        }
    }
    if list.is_empty() {
        Vec::new()
    } else {
        vec![Instruction::ApplyActions(list)]
    }
}

/// Whether a rule's actions send out of OpenFlow port `of_port` (the
/// out_port filter of FLOW_MOD delete and of flow statistics).
pub fn outputs_to(actions: &[Action], of_port: u32, ports: Ports) -> bool {
    if of_port == ofp::ANY {
        return true;
    }
    let dp = ports.datapath(of_port);
    actions.iter().any(|a| match a {
        Action::Output(p) => Some(*p) == dp,
        Action::InPort => of_port == ofp::IN_PORT,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ofrule;
    use openflow::Match as OfMatch;

    const PORTS: Ports = Ports { count: 3 };

    fn port(n: &str) -> Option<u32> {
        match n {
            "vf0" => Some(0),
            "vf1" => Some(1),
            "uplink0" => Some(2),
            _ => None,
        }
    }

    #[test]
    fn matches_map_onto_the_rule_syntax() {
        let of = OfMatch::new(vec![
            Oxm::exact(Of::InPort, 1),
            Oxm::masked(Of::EthDst, 0x0200_0000_0000, 0xff00_0000_0000),
            Oxm::exact(Of::EthType, 0x0800),
            Oxm::exact(Of::VlanVid, 0x1000 | 10),
            Oxm::exact(Of::IpProto, 6),
            Oxm::masked(Of::Ipv4Dst, 0x0a00_0000, 0xffff_ff00),
            Oxm::exact(Of::TcpDst, 80),
            Oxm::exact(Of::TunnelId, 77),
        ]);
        let m = to_match(&of, PORTS).expect("maps");
        let (_, text) = ofrule::parse_match(
            "in_port=vf0,dl_dst=02:00:00:00:00:00/ff:00:00:00:00:00,dl_vlan=10,tcp,nw_dst=10.0.0.0/24,tp_dst=80,tun_id=77",
            &port,
        )
        .expect("parses");
        assert_eq!(m, text);
        let (back, unsaid) = from_match(&m);
        assert!(unsaid.is_empty(), "{unsaid:?}");
        assert_eq!(to_match(&back, PORTS).expect("maps back"), m);
    }

    #[test]
    fn what_the_switch_cannot_match_is_refused_with_its_code() {
        let code = |o: Vec<Oxm>| to_match(&OfMatch::new(o), PORTS).unwrap_err().code;
        assert_eq!(code(vec![Oxm::exact(Of::InPort, 9)]), E::BadMatchBadValue);
        assert_eq!(code(vec![Oxm::exact(Of::Metadata, 1)]), E::BadMatchBadField);
        assert_eq!(code(vec![Oxm::exact(Of::TunnelId, 1 << 30)]), E::BadMatchBadValue);
        assert_eq!(code(vec![Oxm::exact(Of::EthType, 0x8100)]), E::BadMatchBadValue);
    }

    #[test]
    fn actions_round_trip_and_refusals() {
        let instr = vec![Instruction::ApplyActions(vec![
            OfAction::PushVlan(0x8100),
            OfAction::SetField(Oxm::exact(Of::VlanVid, 0x1000 | 100)),
            OfAction::SetField(Oxm::exact(Of::EthSrc, 0x0200_0000_0001)),
            OfAction::SetField(Oxm::exact(Of::TunnelId, 5)),
            OfAction::Output { port: 3, max_len: 0 },
            OfAction::Output { port: ofp::IN_PORT, max_len: 0 },
        ])];
        let t = to_actions(&instr, PORTS).expect("maps");
        assert_eq!(
            t,
            vec![
                Action::PushVlan { tpid: 0x8100, tci: 0 },
                Action::SetVlanVid(100),
                Action::SetEthSrc([2, 0, 0, 0, 0, 1]),
                Action::SetTunnel(5),
                Action::Output(2),
                Action::InPort
            ]
        );
        assert_eq!(to_actions(&from_actions(&t, None), PORTS).expect("back"), t);
        let with_goto = from_actions(&t, Some(4));
        assert_eq!(to_instructions(&with_goto, 1, PORTS).expect("back"), (t.clone(), Some(4)));
        for (here, code) in [(4, E::BadInstructionBadTableId), (9, E::BadInstructionBadTableId)] {
            assert_eq!(to_instructions(&with_goto, here, PORTS).unwrap_err().code, code, "from table {here}");
        }
        let far = [Instruction::GotoTable(N_TABLES)];
        assert_eq!(to_instructions(&far, 0, PORTS).unwrap_err().code, E::BadInstructionBadTableId);
        assert_eq!(to_instructions(&[Instruction::GotoTable(1)], 0, PORTS).expect("goto only"), (vec![], Some(1)));
        let flood =
            to_actions(&[Instruction::ApplyActions(vec![OfAction::Output { port: ofp::FLOOD, max_len: 0 }])], PORTS);
        assert_eq!(flood.expect("flood"), vec![Action::Output(0), Action::Output(1), Action::Output(2)]);
        let code = |i: Instruction| to_actions(&[i], PORTS).unwrap_err().code;
        assert_eq!(code(Instruction::GotoTable(1)), E::BadInstructionUnsupInst, "not in a packet-out");
        assert_eq!(code(Instruction::WriteActions(vec![])), E::BadInstructionUnsupInst);
        assert_eq!(code(Instruction::ApplyActions(vec![OfAction::Group(1)])), E::BadActionBadType);
        assert_eq!(
            code(Instruction::ApplyActions(vec![OfAction::Output { port: 7, max_len: 0 }])),
            E::BadActionBadOutPort
        );
        assert_eq!(
            code(Instruction::ApplyActions(vec![OfAction::SetField(Oxm::exact(Of::Ipv4Dst, 1))])),
            E::BadActionBadSetType
        );
        assert_eq!(code(Instruction::ApplyActions(vec![OfAction::PushVlan(0x0800)])), E::BadActionBadArgument);
    }
}
