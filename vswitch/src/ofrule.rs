//! Rule text in the OpenFlow style Open vSwitch users know:
//!
//! ```text
//! priority=100,in_port=vf0,ip,nw_dst=10.0.0.0/24 actions=output:uplink0
//! ```
//!
//! A rule is `match-fields actions=action-list`. Match fields are separated by
//! commas or spaces; a field left out is wildcarded. `priority` defaults to
//! 32768. See `docs/rules.md` for the whole grammar.

#![forbid(unsafe_code)]

use crate::actions::Action;
use crate::flow::pipeline::{RuleTable, MAX_TABLES};
use crate::flow::table::Match;
use crate::packet::key::{ip_to, mac_to, prefix_mask, FRAG_ANY, FRAG_LATER, VLAN_PRESENT};
use crate::packet::parse::{
    ETH_TYPE_ARP, ETH_TYPE_IPV4, ETH_TYPE_IPV6, ETH_TYPE_QINQ, ETH_TYPE_VLAN, IPPROTO_ICMP, IPPROTO_ICMPV6,
    IPPROTO_TCP, IPPROTO_UDP,
};
use crate::packet::{Field, FlowKey, FlowMask};
use std::net::IpAddr;

/// Priority of a rule that gives none (as Open vSwitch).
pub const DEFAULT_PRIORITY: u32 = 32768;
/// Highest priority accepted.
pub const MAX_PRIORITY: u32 = 65535;

/// A parsed rule, ready for the rule table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleSpec {
    /// `table=N` (0 when not given).
    pub table: u8,
    pub priority: u32,
    pub matcher: Match,
    pub actions: Vec<Action>,
    /// `goto_table:N`, the last action: the table the packet goes on to.
    pub goto: Option<u8>,
}

/// What was wrong with a rule's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    pub message: String,
}

fn err<T>(message: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError { message: message.into() })
}

fn parse_u128(field: &str, text: &str, max: u128) -> Result<u128, RuleError> {
    let t = text.trim();
    let v = if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u128::from_str_radix(hex, 16)
    } else {
        t.parse::<u128>()
    };
    match v {
        Ok(v) if v <= max => Ok(v),
        Ok(_) => err(format!("{field}={text}: value is larger than {max}")),
        Err(_) => err(format!("{field}={text}: expected a decimal or 0x-hex number")),
    }
}

/// `value[/mask]` as numbers.
fn parse_masked(field: &str, text: &str, max: u128) -> Result<(u128, u128), RuleError> {
    match text.split_once('/') {
        Some((v, m)) => Ok((parse_u128(field, v, max)?, parse_u128(field, m, max)?)),
        None => Ok((parse_u128(field, text, max)?, max)),
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats a MAC address.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn parse_mac_masked(field: &str, text: &str) -> Result<(u128, u128), RuleError> {
    let bad = || RuleError {
        message: format!("{field}={text}: expected a MAC address like 02:00:00:00:00:01[/ff:ff:ff:ff:ff:ff]"),
    };
    let (v, m) = match text.split_once('/') {
        Some((v, m)) => (parse_mac(v).ok_or_else(bad)?, parse_mac(m).ok_or_else(bad)?),
        None => (parse_mac(text).ok_or_else(bad)?, [0xff; 6]),
    };
    Ok((mac_to(v), mac_to(m)))
}

/// `addr[/len]`: the address in key form, the mask, and whether it is IPv4.
fn parse_prefix(field: &str, text: &str) -> Result<(u128, u128, bool), RuleError> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let ip: IpAddr =
        addr.parse().map_err(|_| RuleError { message: format!("{field}={text}: expected an IP address or prefix") })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return err(format!("{field}={text}: prefix length must be 0..={max}")),
        },
    };
    Ok((ip_to(ip), prefix_mask(ip.is_ipv4(), len), ip.is_ipv4()))
}

#[derive(Default)]
struct Requirements {
    /// (field name, accepted eth types)
    eth: Vec<(String, &'static [u16])>,
    /// (field name, accepted ip protos)
    proto: Vec<(String, &'static [u8])>,
}

/// Parses the match part (everything before `actions=`). `priority` may be in it.
/// `port` resolves a port name or number to its datapath number.
pub fn parse_match(text: &str, port: &dyn Fn(&str) -> Option<u32>) -> Result<(u32, Match), RuleError> {
    let mut m = Match::any();
    let mut priority = DEFAULT_PRIORITY;
    let mut req = Requirements::default();
    for token in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|t| !t.is_empty()) {
        let (name, value) = match token.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (token.trim(), None),
        };
        match name {
            "priority" => {
                priority = parse_u128("priority", need(name, value)?, u128::from(MAX_PRIORITY))? as u32;
                continue;
            }
            // What an empty match prints as (dump-flows, dump-rules).
            "any" if value.is_none() => continue,
            _ => {}
        }
        let x = match shortcut(name) {
            Some(x) => x,
            None => field_match(token, name, value, port, &mut req)?,
        };
        m = merge(m, x, token)?;
    }
    prerequisites(&m, &req)?;
    Ok((priority, m))
}

/// A field's value, or the error saying it needs one.
fn need<'a>(name: &str, v: Option<&'a str>) -> Result<&'a str, RuleError> {
    v.filter(|v| !v.is_empty()).ok_or_else(|| RuleError { message: format!("{name}: needs a value ({name}=...)") })
}

/// `ip`, `tcp6`, ...: an Ethernet type and maybe an IP protocol.
fn shortcut(name: &str) -> Option<Match> {
    let (eth, proto) = match name {
        "ip" => (ETH_TYPE_IPV4, None),
        "ipv6" => (ETH_TYPE_IPV6, None),
        "arp" => (ETH_TYPE_ARP, None),
        "tcp" => (ETH_TYPE_IPV4, Some(IPPROTO_TCP)),
        "udp" => (ETH_TYPE_IPV4, Some(IPPROTO_UDP)),
        "icmp" => (ETH_TYPE_IPV4, Some(IPPROTO_ICMP)),
        "tcp6" => (ETH_TYPE_IPV6, Some(IPPROTO_TCP)),
        "udp6" => (ETH_TYPE_IPV6, Some(IPPROTO_UDP)),
        "icmp6" => (ETH_TYPE_IPV6, Some(IPPROTO_ICMPV6)),
        _ => return None,
    };
    let mut x = Match::any().with(Field::EthType, u128::from(eth));
    if let Some(p) = proto {
        x = x.with(Field::IpProto, u128::from(p));
    }
    Some(x)
}

/// `m` and `x` together; conflicting values for the same bits are an
/// error, not a silent override.
fn merge(m: Match, x: Match, token: &str) -> Result<Match, RuleError> {
    let overlap = FlowMask(m.mask.0.masked(&x.mask));
    if !m.key.eq_masked(&x.key, &overlap) {
        return err(format!("{token}: conflicts with an earlier field of this rule"));
    }
    let mut mask = m.mask;
    mask.union_with(&x.mask);
    let mut key = FlowKey::ZERO;
    for i in 0..key.words.len() {
        key.words[i] = m.key.words[i] | x.key.words[i];
    }
    Ok(Match { key, mask })
}

fn one(f: Field, v: u128, mask: u128) -> Match {
    Match::any().with_masked(f, v, mask)
}

/// One `name=value` field of a match; the Ethernet types and IP protocols
/// it needs go into `req`.
fn field_match(
    token: &str,
    name: &str,
    value: Option<&str>,
    port: &dyn Fn(&str) -> Option<u32>,
    req: &mut Requirements,
) -> Result<Match, RuleError> {
    match name {
        "in_port" | "dl_src" | "dl_dst" | "dl_type" | "dl_vlan" | "dl_vlan_pcp" | "vlan_tci" | "tun_id" => {
            l2_match(name, need(name, value)?, port)
        }
        "nw_src" | "nw_dst" | "arp_spa" | "arp_tpa" | "ipv6_src" | "ipv6_dst" | "tun_src" | "tun_dst" => {
            address_match(token, name, need(name, value)?, req)
        }
        "nw_proto" | "arp_op" | "nw_tos" | "nw_ttl" | "nw_frag" => l3_match(token, name, need(name, value)?, req),
        "tp_src" | "tp_dst" | "tcp_src" | "tcp_dst" | "udp_src" | "udp_dst" | "icmp_type" | "icmp_code"
        | "icmpv6_type" | "icmpv6_code" | "tcp_flags" => l4_match(token, name, need(name, value)?, req),
        other => err(format!("unknown match field {other:?} (see docs/rules.md for the fields)")),
    }
}

/// Ports, Ethernet, VLAN and the tunnel id.
fn l2_match(name: &str, v: &str, port: &dyn Fn(&str) -> Option<u32>) -> Result<Match, RuleError> {
    Ok(match name {
        "in_port" => {
            let n = port(v).ok_or_else(|| RuleError { message: format!("in_port={v}: no such port") })?;
            one(Field::InPort, u128::from(n), Field::InPort.full())
        }
        "dl_src" | "dl_dst" => {
            let (v, mask) = parse_mac_masked(name, v)?;
            one(if name == "dl_src" { Field::EthSrc } else { Field::EthDst }, v, mask)
        }
        "dl_type" => {
            let v = parse_u128(name, v, 0xffff)?;
            if v == u128::from(ETH_TYPE_VLAN) || v == u128::from(ETH_TYPE_QINQ) {
                return err(format!("dl_type={v:#x}: VLAN tags are matched with dl_vlan or vlan_tci, not dl_type"));
            }
            one(Field::EthType, v, 0xffff)
        }
        "dl_vlan" => {
            let v = parse_u128(name, v, 0xffff)?;
            if v == 0xffff {
                one(Field::VlanTci, 0, u128::from(VLAN_PRESENT))
            } else if v > 4095 {
                return err(format!("dl_vlan={v}: a VLAN id is 0..=4095 (0xffff: no tag)"));
            } else {
                one(Field::VlanTci, v | u128::from(VLAN_PRESENT), 0x0fff | u128::from(VLAN_PRESENT))
            }
        }
        "dl_vlan_pcp" => {
            let v = parse_u128(name, v, 7)?;
            one(Field::VlanTci, (v << 13) | u128::from(VLAN_PRESENT), 0xe000 | u128::from(VLAN_PRESENT))
        }
        "vlan_tci" => {
            let (v, mask) = parse_masked(name, v, 0xffff)?;
            one(Field::VlanTci, v, mask)
        }
        _ => {
            let (v, mask) = parse_masked(name, v, 0x00ff_ffff)?;
            one(Field::TunId, v, mask)
        }
    })
}

/// IPv4, IPv6, ARP and tunnel addresses (with prefixes).
fn address_match(token: &str, name: &str, v: &str, req: &mut Requirements) -> Result<Match, RuleError> {
    let (v, mask, v4) = parse_prefix(name, v)?;
    let field = match name {
        "nw_src" | "arp_spa" | "ipv6_src" => Field::NwSrc,
        "nw_dst" | "arp_tpa" | "ipv6_dst" => Field::NwDst,
        "tun_src" => Field::TunSrc,
        _ => Field::TunDst,
    };
    match name {
        "nw_src" | "nw_dst" | "arp_spa" | "arp_tpa" if !v4 => {
            return err(format!("{token}: an IPv6 address goes in ipv6_src/ipv6_dst"))
        }
        "ipv6_src" | "ipv6_dst" if v4 => return err(format!("{token}: an IPv4 address goes in nw_src/nw_dst")),
        _ => {}
    }
    match name {
        "nw_src" | "nw_dst" => req.eth.push((token.to_owned(), &[ETH_TYPE_IPV4, ETH_TYPE_ARP])),
        "arp_spa" | "arp_tpa" => req.eth.push((token.to_owned(), &[ETH_TYPE_ARP])),
        "ipv6_src" | "ipv6_dst" => req.eth.push((token.to_owned(), &[ETH_TYPE_IPV6])),
        _ => {}
    }
    Ok(one(field, v, mask))
}

/// The IP protocol (or ARP opcode), TOS, TTL and fragment state.
fn l3_match(token: &str, name: &str, v: &str, req: &mut Requirements) -> Result<Match, RuleError> {
    Ok(match name {
        "nw_proto" | "arp_op" => {
            let v = parse_u128(name, v, 0xff)?;
            let allowed: &'static [u16] =
                if name == "arp_op" { &[ETH_TYPE_ARP] } else { &[ETH_TYPE_IPV4, ETH_TYPE_IPV6, ETH_TYPE_ARP] };
            req.eth.push((token.to_owned(), allowed));
            one(Field::IpProto, v, 0xff)
        }
        "nw_tos" | "nw_ttl" => {
            let v = parse_u128(name, v, 0xff)?;
            req.eth.push((token.to_owned(), &[ETH_TYPE_IPV4, ETH_TYPE_IPV6]));
            one(if name == "nw_tos" { Field::IpTos } else { Field::IpTtl }, v, 0xff)
        }
        _ => {
            let (val, mask) = match v {
                "no" => (0, FRAG_ANY),
                "yes" => (FRAG_ANY, FRAG_ANY),
                "first" => (FRAG_ANY, FRAG_ANY | FRAG_LATER),
                "later" => (FRAG_ANY | FRAG_LATER, FRAG_ANY | FRAG_LATER),
                "not_later" => (0, FRAG_LATER),
                _ => return err(format!("nw_frag={v}: expected no, yes, first, later or not_later")),
            };
            req.eth.push((token.to_owned(), &[ETH_TYPE_IPV4, ETH_TYPE_IPV6]));
            one(Field::IpFrag, u128::from(val), u128::from(mask))
        }
    })
}

/// Transport ports, ICMP type and code, TCP flags.
fn l4_match(token: &str, name: &str, v: &str, req: &mut Requirements) -> Result<Match, RuleError> {
    Ok(match name {
        "icmp_type" | "icmp_code" | "icmpv6_type" | "icmpv6_code" => {
            let v = parse_u128(name, v, 0xff)?;
            req.proto
                .push((token.to_owned(), if name.starts_with("icmpv6") { &[IPPROTO_ICMPV6] } else { &[IPPROTO_ICMP] }));
            one(if name.ends_with("type") { Field::TpSrc } else { Field::TpDst }, v, 0xff)
        }
        "tcp_flags" => {
            let (v, mask) = parse_masked(name, v, 0x0fff)?;
            req.proto.push((token.to_owned(), &[IPPROTO_TCP]));
            one(Field::TcpFlags, v, mask)
        }
        _ => {
            let (v, mask) = parse_masked(name, v, 0xffff)?;
            let allowed: &'static [u8] = match name {
                "tcp_src" | "tcp_dst" => &[IPPROTO_TCP],
                "udp_src" | "udp_dst" => &[IPPROTO_UDP],
                _ => &[IPPROTO_TCP, IPPROTO_UDP, 132],
            };
            req.proto.push((token.to_owned(), allowed));
            one(if name.ends_with("src") { Field::TpSrc } else { Field::TpDst }, v, mask)
        }
    })
}

/// The Ethernet types and IP protocols the fields need are in the match
/// (as Open vSwitch requires: `nw_src` needs `ip` or `arp`, `tp_dst` needs
/// `tcp`, `udp` or `sctp`).
fn prerequisites(m: &Match, req: &Requirements) -> Result<(), RuleError> {
    let eth = (m.mask.get(Field::EthType) == 0xffff).then(|| m.key.eth_type());
    for (token, allowed) in &req.eth {
        if !eth.is_some_and(|e| allowed.contains(&e)) {
            let names: Vec<String> = allowed.iter().map(|t| format!("dl_type={t:#06x}")).collect();
            return err(format!("{token} needs {} in the rule (e.g. add 'ip', 'ipv6' or 'arp')", names.join(" or ")));
        }
    }
    let proto = (m.mask.get(Field::IpProto) == 0xff).then(|| m.key.ip_proto());
    for (token, allowed) in &req.proto {
        if !proto.is_some_and(|p| allowed.contains(&p)) || !matches!(eth, Some(ETH_TYPE_IPV4 | ETH_TYPE_IPV6)) {
            return err(format!("{token} needs an IP protocol in the rule (e.g. add 'tcp', 'udp', 'icmp' or 'icmp6')"));
        }
    }
    Ok(())
}

/// Outputs one rule may have (each is a packet copy).
pub const MAX_OUTPUTS: usize = 32;

/// Parses an action list (the text after `actions=`).
pub fn parse_actions(text: &str, port: &dyn Fn(&str) -> Option<u32>) -> Result<Vec<Action>, RuleError> {
    let mut out = Vec::new();
    for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (name, arg) = match token.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (token, None),
        };
        let need = || {
            arg.filter(|a| !a.is_empty())
                .ok_or_else(|| RuleError { message: format!("action {name}: needs an argument ({name}:...)") })
        };
        let mac =
            |a: &str| parse_mac(a).ok_or_else(|| RuleError { message: format!("{token}: expected a MAC address") });
        let action = match name {
            "output" if arg.is_some_and(|a| a.eq_ignore_ascii_case("in_port")) => Action::InPort,
            "in_port" if arg.is_none() => Action::InPort,
            "output" => {
                let p = need()?;
                Action::Output(port(p).ok_or_else(|| RuleError { message: format!("{token}: no such port {p:?}") })?)
            }
            "drop" => Action::Drop,
            "strip_vlan" | "pop_vlan" => Action::PopVlan,
            "push_vlan" => {
                let tpid = parse_u128("push_vlan", need()?, 0xffff)? as u16;
                if tpid != ETH_TYPE_VLAN && tpid != ETH_TYPE_QINQ {
                    return err(format!("{token}: the tag type must be 0x8100 or 0x88a8"));
                }
                Action::PushVlan { tpid, tci: 0 }
            }
            "mod_vlan_vid" => {
                let vid = parse_u128("mod_vlan_vid", need()?, 4095)? as u16;
                Action::SetVlanVid(vid)
            }
            "mod_dl_src" => Action::SetEthSrc(mac(need()?)?),
            "mod_dl_dst" => Action::SetEthDst(mac(need()?)?),
            "set_tunnel" => Action::SetTunnel(parse_u128("set_tunnel", need()?, 0x00ff_ffff)? as u32),
            "controller" => Action::Controller {
                max_len: match arg {
                    None => u16::MAX,
                    Some(a) => parse_u128("controller", a, u128::from(u16::MAX))? as u16,
                },
            },
            "normal" | "flood" | "all" | "local" => {
                return err(format!("action {name:?} is not supported: this switch forwards by explicit output actions"))
            }
            bare if arg.is_none() && port(bare).is_some() => Action::Output(port(bare).unwrap_or_default()),
            other => return err(format!("unknown action {other:?} (output:PORT, drop, strip_vlan, push_vlan:0x8100, mod_vlan_vid:VID, mod_dl_src:MAC, mod_dl_dst:MAC, set_tunnel:VNI, controller[:MAX_LEN])")),
        };
        out.push(action);
    }
    if out.is_empty() {
        // (e.g. "actions=,": found by fuzzing; it printed back as "drop")
        return err("actions= lists no action (use actions=drop to drop)");
    }
    if out.len() > 1 && out.contains(&Action::Drop) {
        return err("drop cannot be combined with other actions");
    }
    let outputs = out.iter().filter(|a| matches!(a, Action::Output(_) | Action::InPort)).count();
    if outputs > MAX_OUTPUTS {
        return err(format!("{outputs} outputs: at most {MAX_OUTPUTS} per rule"));
    }
    Ok(out)
}

/// Parses a whole rule: `match-fields actions=action-list`.
pub fn parse_rule(text: &str, port: &dyn Fn(&str) -> Option<u32>) -> Result<RuleSpec, RuleError> {
    let Some(idx) = text.find("actions=") else {
        return err("missing actions= (e.g. 'in_port=vf0 actions=output:uplink0'; use actions=drop to drop)");
    };
    let (match_text, rest) = text.split_at(idx);
    let actions_text = &rest["actions=".len()..];
    if actions_text.trim().is_empty() {
        return err("actions= is empty (use actions=drop to drop)");
    }
    let (table, match_text) = take_table(match_text)?;
    let (priority, matcher) = parse_match(&match_text, port)?;
    let (actions_text, goto) = take_goto(actions_text)?;
    if let Some(g) = goto.filter(|&g| !RuleTable::valid_goto(table, g)) {
        return err(format!(
            "goto_table:{g} in table {table}: the next table must be a higher one, below {MAX_TABLES}"
        ));
    }
    let actions = match (actions_text.trim().is_empty(), goto) {
        (true, Some(_)) => Vec::new(),
        _ => parse_actions(actions_text, port)?,
    };
    Ok(RuleSpec { table, priority, matcher, actions, goto })
}

/// Takes `table=N` out of a match text: the table and the rest.
///
/// # Errors
/// A table that is not a number below [`MAX_TABLES`], or given twice.
pub fn take_table(match_text: &str) -> Result<(u8, String), RuleError> {
    let mut table = None;
    let mut rest = Vec::new();
    for token in match_text.split(|c: char| c == ',' || c.is_whitespace()).filter(|t| !t.is_empty()) {
        match token.split_once('=') {
            Some(("table", v)) => {
                let t = parse_u128("table", v.trim(), (MAX_TABLES - 1) as u128)? as u8;
                if table.replace(t).is_some() {
                    return err("table= given twice");
                }
            }
            _ => rest.push(token),
        }
    }
    Ok((table.unwrap_or(0), rest.join(",")))
}

/// Takes a trailing `goto_table:N` off an action list.
fn take_goto(actions_text: &str) -> Result<(&str, Option<u8>), RuleError> {
    let (head, last) = match actions_text.rsplit_once(',') {
        Some((h, l)) => (h, l),
        None => ("", actions_text),
    };
    let Some(arg) = last.trim().strip_prefix("goto_table:") else {
        if actions_text.contains("goto_table") {
            return err("goto_table:N must be the last action");
        }
        return Ok((actions_text, None));
    };
    if head.contains("goto_table") {
        return err("goto_table given twice");
    }
    let t = parse_u128("goto_table", arg.trim(), (MAX_TABLES - 1) as u128)? as u8;
    Ok((head, Some(t)))
}

/// Formats a whole rule so that [`parse_rule`] reads it back the same.
pub fn format_rule(spec: &RuleSpec, port_name: &dyn Fn(u32) -> String) -> String {
    let table = if spec.table == 0 { String::new() } else { format!("table={},", spec.table) };
    let m = format_match(&spec.matcher, port_name);
    let sep = if m.is_empty() { "" } else { "," };
    format!(
        "{table}priority={}{sep}{m} actions={}",
        spec.priority,
        format_instructions(&spec.actions, spec.goto, port_name)
    )
}

/// Formats a rule's actions and next table (`output:vf0,goto_table:2`).
pub fn format_instructions(actions: &[Action], goto: Option<u8>, port_name: &dyn Fn(u32) -> String) -> String {
    match (actions.is_empty(), goto) {
        (_, None) => format_actions(actions, port_name),
        (true, Some(g)) => format!("goto_table:{g}"),
        (false, Some(g)) => format!("{},goto_table:{g}", format_actions(actions, port_name)),
    }
}

/// Formats an action list in the same syntax.
pub fn format_actions(actions: &[Action], port_name: &dyn Fn(u32) -> String) -> String {
    if actions.is_empty() {
        return "drop".to_owned();
    }
    actions
        .iter()
        .map(|a| match a {
            Action::Output(p) => format!("output:{}", port_name(*p)),
            Action::InPort => "output:in_port".to_owned(),
            Action::Drop => "drop".to_owned(),
            Action::PopVlan => "strip_vlan".to_owned(),
            Action::PushVlan { tpid, .. } => format!("push_vlan:{tpid:#06x}"),
            Action::SetVlanVid(v) => format!("mod_vlan_vid:{v}"),
            Action::SetEthSrc(m) => format!("mod_dl_src:{}", format_mac(m)),
            Action::SetEthDst(m) => format!("mod_dl_dst:{}", format_mac(m)),
            Action::SetTunnel(v) => format!("set_tunnel:{v}"),
            Action::Controller { max_len: u16::MAX } => "controller".to_owned(),
            Action::Controller { max_len } => format!("controller:{max_len}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Formats a match with port names.
pub fn format_match(m: &Match, port_name: &dyn Fn(u32) -> String) -> String {
    let mut rest = m.mask;
    let mut parts = Vec::new();
    if m.mask.get(Field::InPort) == Field::InPort.full() {
        parts.push(format!("in_port={}", port_name(m.key.in_port())));
        rest.set(Field::InPort, 0);
    }
    // ICMP type and code live in the transport ports' fields: say them as
    // the parser takes them (tp_src/tp_dst need TCP, UDP or SCTP; found by
    // fuzzing).
    let proto = (m.mask.get(Field::IpProto) == 0xff).then(|| m.key.ip_proto());
    let icmp = match proto {
        Some(IPPROTO_ICMP) => Some("icmp"),
        Some(IPPROTO_ICMPV6) => Some("icmpv6"),
        _ => None,
    };
    let mut icmp_parts = Vec::new();
    if let Some(icmp) = icmp {
        for (field, what) in [(Field::TpSrc, "type"), (Field::TpDst, "code")] {
            if m.mask.get(field) == 0xff {
                icmp_parts.push(format!("{icmp}_{what}={}", m.key.get(field) & 0xff));
                rest.set(field, 0);
            }
        }
    }
    let tail = crate::packet::key::format_match(&m.key, &rest);
    if tail != "any" || (parts.is_empty() && icmp_parts.is_empty()) {
        parts.push(tail);
    }
    parts.extend(icmp_parts);
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::key::ipv4;
    use crate::packet::parse;

    fn ports(name: &str) -> Option<u32> {
        match name {
            "vf0" => Some(0),
            "vf1" => Some(1),
            "uplink0" => Some(2),
            n => n.parse().ok().filter(|&n: &u32| n < 3),
        }
    }

    #[test]
    fn the_readme_example() {
        let r =
            parse_rule("priority=100,in_port=vf0,ip,nw_dst=10.0.0.0/24 actions=output:uplink0", &ports).expect("rule");
        assert_eq!(r.priority, 100);
        assert_eq!(r.actions, vec![Action::Output(2)]);
        let mut k = FlowKey::ZERO;
        k.set(Field::InPort, 0);
        k.set(Field::EthType, 0x0800);
        k.set(Field::NwDst, ip_to(ipv4(10, 0, 0, 77)));
        assert!(r.matcher.matches(&k));
        k.set(Field::NwDst, ip_to(ipv4(10, 0, 1, 77)));
        assert!(!r.matcher.matches(&k));
    }

    #[test]
    fn fields_and_actions() {
        let r = parse_rule(
            "in_port=1 dl_vlan=100 dl_dst=02:00:00:00:00:02 udp tp_dst=0x1000/0xf000 actions=strip_vlan,mod_dl_src:02:00:00:00:00:09,output:2",
            &ports,
        )
        .expect("rule");
        assert_eq!(r.priority, DEFAULT_PRIORITY);
        assert_eq!(r.actions, vec![Action::PopVlan, Action::SetEthSrc([2, 0, 0, 0, 0, 9]), Action::Output(2)]);
        let mut f =
            vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0, 0, 100, 8, 0, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0x1a, 0xbc, 0, 8, 0, 0]);
        assert!(r.matcher.matches(&parse(&f, 1, None).key));
        let r = parse_rule("ipv6,ipv6_dst=2001:db8::/32,tun_id=100 actions=vf0,vf1", &ports).expect("bare ports");
        assert_eq!(r.actions, vec![Action::Output(0), Action::Output(1)]);
        let r = parse_rule("arp,arp_tpa=10.0.0.1,arp_op=1 actions=drop", &ports).expect("arp");
        assert_eq!(r.actions, vec![Action::Drop]);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = |t: &str| parse_rule(t, &ports).expect_err(t).message;
        assert!(e("in_port=vf9 actions=drop").contains("no such port"));
        assert!(e("nw_dst=10.0.0.0/24 actions=drop").contains("needs dl_type"));
        assert!(e("ip,tp_dst=80 actions=drop").contains("IP protocol"));
        assert!(e("ip,nw_dst=10.0.0.0/33 actions=drop").contains("prefix length"));
        assert!(e("ip,nw_dst=2001:db8::1 actions=drop").contains("ipv6_dst"));
        assert!(e("in_port=vf0").contains("missing actions="));
        assert!(e("in_port=vf0 actions=").contains("empty"));
        assert!(e("bogus=1 actions=drop").contains("unknown match field"));
        assert!(e("ip actions=normal").contains("not supported"));
        assert!(e("ip actions=output:nowhere").contains("no such port"));
        assert!(e("ip,ipv6 actions=drop").contains("conflicts"));
        assert!(e("priority=70000 actions=drop").contains("larger"));
        assert!(e("dl_vlan=5000 actions=drop").contains("VLAN id"));
        assert!(e("ip actions=drop,output:vf0").contains("drop cannot"));
        assert!(e("ip actions=,").contains("lists no action"), "found by fuzzing");
        let many = vec!["output:vf0"; MAX_OUTPUTS + 1].join(",");
        assert!(e(&format!("ip actions={many}")).contains("at most 32 per rule"));
        assert!(e("ip actions=mod_dl_dst:zz").contains("MAC"));
    }

    #[test]
    fn tables_and_goto() {
        let r = parse_rule("table=2,priority=5,ip actions=output:vf0,goto_table:7", &ports).expect("rule");
        assert_eq!((r.table, r.goto, r.actions.len()), (2, Some(7), 1));
        let r = parse_rule("ip actions=goto_table:1", &ports).expect("goto alone");
        assert_eq!((r.table, r.goto, r.actions.len()), (0, Some(1), 0));
        let name = |p: u32| ["vf0", "vf1", "uplink0"][p as usize].to_owned();
        assert_eq!(format_instructions(&r.actions, r.goto, &name), "goto_table:1");
        assert_eq!(format_instructions(&[Action::Output(0)], Some(3), &name), "output:vf0,goto_table:3");
        let e = |t: &str| parse_rule(t, &ports).unwrap_err().message;
        assert!(e("table=3 actions=goto_table:3").contains("higher one"));
        assert!(e("table=1,table=2 actions=drop").contains("twice"));
        assert!(e("table=254 actions=drop").contains("table"));
        assert!(e("ip actions=goto_table:1,output:vf0").contains("last action"));
        assert!(e("ip actions=goto_table:x").contains("goto_table"));
        assert_eq!(take_table("in_port=vf0, table=4 ,ip").expect("table"), (4, "in_port=vf0,ip".to_owned()));
    }

    #[test]
    fn format_roundtrip() {
        let name = |p: u32| ["vf0", "vf1", "uplink0"][p as usize].to_owned();
        let r = parse_rule(
            "priority=5,in_port=vf1,tcp,nw_src=10.1.0.0/16,tp_dst=443 actions=mod_vlan_vid:7,output:uplink0",
            &ports,
        )
        .expect("rule");
        let text = format!(
            "priority={},{} actions={}",
            r.priority,
            format_match(&r.matcher, &name),
            format_actions(&r.actions, &name)
        );
        assert_eq!(parse_rule(&text, &ports).as_ref(), Ok(&r), "{text}");
        assert!(text.contains("in_port=vf1") && text.contains("nw_src=10.1.0.0/16"), "{text}");
        // ICMP type and code print as such (found by fuzzing).
        for t in ["icmp,icmp_type=8,icmp_code=0 actions=drop", "icmp6,icmpv6_type=135 actions=drop"] {
            let r = parse_rule(t, &ports).expect(t);
            let text = format!("{} actions=drop", format_match(&r.matcher, &name));
            assert!(text.contains("icmp"), "{text}");
            assert_eq!(parse_rule(&text, &ports).map(|x| x.matcher), Ok(r.matcher), "{text}");
        }
        // An empty match prints as "any", which parses back (found by fuzzing).
        let any = parse_rule("priority=5 actions=drop", &ports).expect("rule");
        assert_eq!(format_match(&any.matcher, &name), "any");
        assert_eq!(parse_rule("priority=5,any actions=drop", &ports), Ok(any));
        // output:in_port (also the bare in_port action) formats and re-parses.
        for t in ["ip actions=output:in_port", "ip actions=in_port", "ip actions=output:IN_PORT"] {
            let r = parse_rule(t, &ports).expect(t);
            assert_eq!(r.actions, vec![Action::InPort], "{t}");
            assert_eq!(format_actions(&r.actions, &name), "output:in_port");
        }
    }
}
