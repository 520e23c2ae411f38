//! Translation: a megaflow (masked key + actions) and the tunnels' current
//! resolution into an `offload` rule, or the reason it stays in software.
//!
//! The rule must match exactly the packets the megaflow matches (it may
//! match fewer: those then reach the software path, which is always safe)
//! and do to them what the software does. Whatever cannot be said exactly is
//! refused here with a [`Refusal`]; the device may refuse more.

use crate::actions::Action;
use crate::config::Role;
use crate::packet::key::{FRAG_ANY, FRAG_LATER, TUN_IPV6, TUN_PRESENT, VLAN_PRESENT};
use crate::packet::parse::{ETH_TYPE_ARP, ETH_TYPE_IPV4, ETH_TYPE_IPV6, IPPROTO_TCP, IPPROTO_UDP};
use crate::packet::{Field, FlowKey, FlowMask};
use crate::underlay::{Tables, Tunnel, Unresolved};
use offload::rule::{
    self as hw, EncapIp, EthMatch, Headers, Ipv4Match, Ipv4Prefix, Ipv6Match, Ipv6Prefix, L3Match, L4Match, Masked,
    Pattern, PortsMatch, TunnelMatch, VlanMatch, VxlanEncap,
};
use std::fmt;
use std::net::IpAddr;

/// What the translation needs to know of a physical port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortFacts {
    pub name: String,
    pub ethdev: u16,
    pub role: Role,
    pub mtu: u16,
    /// The e-switch it belongs to (`rte_eth_dev_info.switch_info.domain_id`,
    /// or `switch_domain` from the configuration); `None`: no e-switch.
    pub domain: Option<u16>,
    pub mac: [u8; 6],
}

/// Why a flow stays in software.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Something the vocabulary (or a NIC) cannot say.
    Unsupported(String),
    /// The ports are not all in one e-switch.
    OtherESwitch(String),
    /// A frame the source may send would not fit the egress.
    Mtu(String),
    /// A tunnel output with no route or neighbour yet.
    Unresolved(String),
    /// On a VTEP uplink, the flow could also match traffic for the VTEP
    /// itself (VXLAN, ARP, neighbour discovery), which software must see.
    Vtep(String),
    /// The flow sends packets to the OpenFlow controller (PACKET_IN): only
    /// software can.
    Controller,
}

impl Refusal {
    /// The reason's short name (metrics, counters).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Unsupported(_) => "unsupported",
            Refusal::OtherESwitch(_) => "other_eswitch",
            Refusal::Mtu(_) => "mtu",
            Refusal::Unresolved(_) => "unresolved",
            Refusal::Vtep(_) => "vtep",
            Refusal::Controller => "controller",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unsupported(s) => write!(f, "unsupported: {s}"),
            Refusal::OtherESwitch(s) => write!(f, "other e-switch: {s}"),
            Refusal::Mtu(s) => write!(f, "mtu: {s}"),
            Refusal::Unresolved(s) => write!(f, "unresolved: {s}"),
            Refusal::Vtep(s) => write!(f, "vtep: {s}"),
            Refusal::Controller => write!(f, "controller: packets go to the OpenFlow controller"),
        }
    }
}

/// A translated flow: the rule, and the tunnels (port, VNI) whose
/// resolution it used (re-translated when the underlay changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    pub rule: hw::HwRule,
    pub tunnels: Vec<(u32, Option<u32>)>,
}

fn unsupported<T>(why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Unsupported(why.into()))
}

/// Reads fields out of a masked key, remembering which were used, so that
/// any field left over is refused by name.
struct Fields<'a> {
    key: &'a FlowKey,
    mask: &'a FlowMask,
    left: FlowMask,
}

impl Fields<'_> {
    fn mask(&self, f: Field) -> u128 {
        self.mask.get(f)
    }

    fn value(&self, f: Field) -> u128 {
        self.key.get(f) & self.mask.get(f)
    }

    fn take_all(&mut self, f: Field) {
        self.left.set(f, 0);
    }

    /// The field's value when every bit is compared, `None` when none is,
    /// an error for a partial mask.
    fn exact(&mut self, f: Field) -> Result<Option<u128>, Refusal> {
        match self.mask(f) {
            0 => Ok(None),
            m if m == f.full() => {
                self.take_all(f);
                Ok(Some(self.value(f)))
            }
            m => unsupported(format!("partial match on {} (mask {m:#x})", f.name())),
        }
    }

    fn leftover(&self) -> Result<(), Refusal> {
        let names: Vec<&str> = Field::ALL.iter().filter(|f| self.left.get(**f) != 0).map(|f| f.name()).collect();
        if names.is_empty() {
            Ok(())
        } else {
            unsupported(format!("match on {}", names.join(", ")))
        }
    }
}

fn mac_of(v: u128) -> [u8; 6] {
    let b = (v as u64).to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

fn masked_mac(f: &mut Fields<'_>, field: Field) -> Option<Masked<[u8; 6]>> {
    let m = f.mask(field);
    f.take_all(field);
    (m != 0).then(|| Masked { value: mac_of(f.value(field)), mask: mac_of(m) })
}

/// An IPv4 prefix from a key-form mask (`::ffff:` marker compared too).
fn prefix4(f: &mut Fields<'_>, field: Field) -> Result<Option<Ipv4Prefix>, Refusal> {
    let m = f.mask(field);
    if m == 0 {
        return Ok(None);
    }
    let v4 = m as u32;
    if m >> 32 != u128::MAX >> 32 || v4.leading_ones() + v4.trailing_zeros() != 32 {
        return unsupported(format!("{} mask is not an IPv4 prefix", field.name()));
    }
    f.take_all(field);
    let len = v4.leading_ones() as u8;
    Ok((len > 0).then(|| Ipv4Prefix { addr: (f.value(field) as u32).into(), len }))
}

fn prefix6(f: &mut Fields<'_>, field: Field) -> Result<Option<Ipv6Prefix>, Refusal> {
    let m = f.mask(field);
    if m == 0 {
        return Ok(None);
    }
    if m.leading_ones() + m.trailing_zeros() != 128 {
        return unsupported(format!("{} mask is not an IPv6 prefix", field.name()));
    }
    f.take_all(field);
    Ok(Some(Ipv6Prefix { addr: f.value(field).into(), len: m.leading_ones() as u8 }))
}

fn tos(f: &mut Fields<'_>) -> Result<(Option<u8>, Option<u8>), Refusal> {
    let m = f.mask(Field::IpTos) as u8;
    let v = f.value(Field::IpTos) as u8;
    f.take_all(Field::IpTos);
    match m {
        0 => Ok((None, None)),
        0xff => Ok((Some(v >> 2), Some(v & 3))),
        0xfc => Ok((Some(v >> 2), None)),
        0x03 => Ok((None, Some(v & 3))),
        _ => unsupported(format!("partial match on nw_tos (mask {m:#x})")),
    }
}

/// VLAN tags the megaflow says the frame has (0, 1 or 2), their items.
fn vlans(f: &mut Fields<'_>) -> Result<(usize, Vec<VlanMatch>), Refusal> {
    let present = u128::from(VLAN_PRESENT);
    let mut tags = Vec::new();
    let mut absent = false;
    for field in [Field::VlanTci, Field::VlanTci2] {
        let m = f.mask(field);
        let v = f.value(field);
        f.take_all(field);
        if absent {
            // No outer tag, so no inner one: nothing more to say (the key
            // holds zeros there).
            continue;
        }
        if m & present == 0 {
            return unsupported(if m != 0 {
                format!("{} without tag presence", field.name())
            } else {
                "the megaflow does not say whether the frame is tagged".to_owned()
            });
        }
        if v & present == 0 {
            absent = true;
            continue;
        }
        let vid = match m & 0x0fff {
            0 => None,
            0x0fff => Some((v & 0x0fff) as u16),
            x => return unsupported(format!("partial VLAN id match (mask {x:#x})")),
        };
        let pcp = match m & 0xe000 {
            0 => None,
            0xe000 => Some((v >> 13) as u8),
            x => return unsupported(format!("partial VLAN priority match (mask {x:#x})")),
        };
        tags.push(VlanMatch { vid, pcp, inner_type: None, more_tags: None });
    }
    let n = tags.len();
    if n == 1 {
        // The second tag's presence bit was compared: say "no more tags".
        tags[0].more_tags = Some(false);
    } else if n == 2 {
        tags[0].more_tags = Some(true);
    }
    Ok((n, tags))
}

fn headers(f: &mut Fields<'_>) -> Result<Headers, Refusal> {
    let (ntags, mut tags) = vlans(f)?;
    let mut eth = EthMatch {
        dst: masked_mac(f, Field::EthDst),
        src: masked_mac(f, Field::EthSrc),
        ether_type: None,
        tagged: Some(ntags > 0),
    };
    let ty = f.exact(Field::EthType)?.map(|t| t as u16);
    if let Some(t) = ty {
        if t < 0x0600 {
            return unsupported("802.3 frames (a length, not a type)");
        }
        // The type after the tags: in the last tag, or in the Ethernet header.
        match tags.last_mut() {
            Some(last) => last.inner_type = Some(t),
            None => eth.ether_type = Some(t),
        }
    }
    let ip_fields = [Field::NwSrc, Field::NwDst, Field::IpProto, Field::IpTos, Field::IpTtl, Field::IpFrag];
    let l4_fields = [Field::TpSrc, Field::TpDst, Field::TcpFlags];
    let mut h = Headers { eth, vlans: tags, l3: None, l4: None };
    match ty {
        Some(ETH_TYPE_IPV4) => h.l3 = Some(L3Match::Ipv4(ipv4(f)?)),
        Some(ETH_TYPE_IPV6) => h.l3 = Some(L3Match::Ipv6(ipv6(f)?)),
        Some(ETH_TYPE_ARP) if ip_fields.iter().any(|&x| f.mask(x) != 0) => {
            return unsupported("ARP fields (arp_op, arp_spa, arp_tpa)")
        }
        _ => {}
    }
    if l4_fields.iter().any(|&x| f.mask(x) != 0) {
        let proto = match h.l3 {
            Some(L3Match::Ipv4(ip)) => ip.proto,
            Some(L3Match::Ipv6(ip)) => ip.next_header,
            None => None,
        };
        let ports = PortsMatch { src: port(f, Field::TpSrc), dst: port(f, Field::TpDst) };
        h.l4 = Some(match proto {
            Some(IPPROTO_UDP) if f.mask(Field::TcpFlags) == 0 => L4Match::Udp(ports),
            Some(IPPROTO_TCP) => {
                let m = f.mask(Field::TcpFlags);
                if m > 0xff {
                    return unsupported("TCP flags beyond the low eight (NS, reserved)");
                }
                f.take_all(Field::TcpFlags);
                let flags = (m != 0).then(|| Masked { value: f.value(Field::TcpFlags) as u8, mask: m as u8 });
                L4Match::Tcp { ports, flags }
            }
            Some(p) => return unsupported(format!("transport fields of IP protocol {p} (ICMP type/code, ...)")),
            None => return unsupported("transport fields without an exact IP protocol"),
        });
    }
    Ok(h)
}

fn port(f: &mut Fields<'_>, field: Field) -> Option<Masked<u16>> {
    let m = f.mask(field) as u16;
    f.take_all(field);
    (m != 0).then(|| Masked { value: f.value(field) as u16, mask: m })
}

fn frag_is_not_fragment(f: &mut Fields<'_>) -> Result<Option<bool>, Refusal> {
    let m = f.mask(Field::IpFrag) as u8;
    let v = f.value(Field::IpFrag) as u8;
    f.take_all(Field::IpFrag);
    match (m, v) {
        (0, _) => Ok(None),
        (x, 0) if x & FRAG_ANY != 0 => Ok(Some(false)),
        _ if m & (FRAG_ANY | FRAG_LATER) != 0 => unsupported(format!("nw_frag={v:#x}/{m:#x}")),
        _ => Ok(None),
    }
}

fn ipv4(f: &mut Fields<'_>) -> Result<Ipv4Match, Refusal> {
    let (dscp, ecn) = tos(f)?;
    Ok(Ipv4Match {
        src: prefix4(f, Field::NwSrc)?,
        dst: prefix4(f, Field::NwDst)?,
        proto: f.exact(Field::IpProto)?.map(|p| p as u8),
        dscp,
        ecn,
        ttl: f.exact(Field::IpTtl)?.map(|t| t as u8),
        fragment: frag_is_not_fragment(f)?,
    })
}

fn ipv6(f: &mut Fields<'_>) -> Result<Ipv6Match, Refusal> {
    let (dscp, ecn) = tos(f)?;
    if f.mask(Field::IpFrag) != 0 {
        return unsupported("IPv6 fragment matches (nw_frag)");
    }
    Ok(Ipv6Match {
        src: prefix6(f, Field::NwSrc)?,
        dst: prefix6(f, Field::NwDst)?,
        next_header: f.exact(Field::IpProto)?.map(|p| p as u8),
        dscp,
        ecn,
        hop_limit: f.exact(Field::IpTtl)?.map(|t| t as u8),
    })
}

fn unresolved_text(e: Unresolved) -> String {
    match e {
        Unresolved::NoRoute => "no route to the remote VTEP".into(),
        Unresolved::NoNeighbour { next_hop, .. } => format!("no neighbour entry for next hop {next_hop}"),
        Unresolved::NoVni => "flow-based tunnel without set_tunnel".into(),
        Unresolved::NoLocalAddress => "no local address on the uplink".into(),
    }
}

/// Everything [`translate`] reads besides the flow.
pub struct Context<'a> {
    /// Physical ports by number.
    pub ports: &'a [PortFacts],
    /// The underlay (tunnels, routes, neighbours, local addresses).
    pub tables: &'a Tables,
}

impl Context<'_> {
    fn port(&self, n: u32) -> Option<&PortFacts> {
        self.ports.get(n as usize)
    }

    fn tunnel(&self, n: u32) -> Option<&Tunnel> {
        self.tables.tunnels.iter().find(|t| t.number == n)
    }

    fn same_switch(&self, a: &PortFacts, b: &PortFacts) -> Result<(), Refusal> {
        match (a.domain, b.domain) {
            (Some(x), Some(y)) if x == y => Ok(()),
            (None, _) => Err(Refusal::OtherESwitch(format!("{} is in no e-switch", a.name))),
            (_, None) => Err(Refusal::OtherESwitch(format!("{} is in no e-switch", b.name))),
            (Some(x), Some(y)) => {
                Err(Refusal::OtherESwitch(format!("{} (domain {x}) and {} (domain {y})", a.name, b.name)))
            }
        }
    }
}

/// The ingress of a flow: a physical port, or a tunnel port (decapsulation).
enum Ingress<'a> {
    Port(&'a PortFacts),
    Tunnel { uplink: &'a PortFacts, pattern: TunnelMatch, tunnel_number: u32, vni: Option<u32>, overhead: usize },
}

fn ingress<'a>(key: &FlowKey, f: &mut Fields<'_>, ctx: &'a Context<'a>) -> Result<Ingress<'a>, Refusal> {
    if f.mask(Field::InPort) != Field::InPort.full() {
        return unsupported("the megaflow does not name its input port");
    }
    f.take_all(Field::InPort);
    let n = key.in_port();
    if let Some(p) = ctx.port(n) {
        // Not out of a tunnel: any compared tunnel field must say so.
        for tf in [Field::TunId, Field::TunFlags, Field::TunSrc, Field::TunDst] {
            if f.value(tf) != 0 {
                return unsupported(format!("{} on a packet from a port", tf.name()));
            }
            f.take_all(tf);
        }
        return Ok(Ingress::Port(p));
    }
    let Some(t) = ctx.tunnel(n) else { return unsupported(format!("input port {n} is unknown")) };
    // The VNI: the tunnel's, or the flow's (a flow-based tunnel needs tun_id).
    let vni = match (t.vni, f.exact(Field::TunId)?) {
        (Some(v), Some(x)) if u128::from(v) != x => return unsupported("tun_id differs from the tunnel's VNI"),
        (Some(v), _) => v,
        (None, Some(x)) => x as u32,
        (None, None) => return unsupported("flow-based tunnel flow without an exact tun_id"),
    };
    // Which uplink and local address the remote's traffic arrives on: the
    // path the route to the remote takes (the tunnel's own encapsulation).
    let r = ctx.tables.resolve(t, Some(vni)).map_err(|e| Refusal::Unresolved(unresolved_text(e)))?;
    let spec = r.template.spec();
    let local = t.local.unwrap_or(spec.ip_src);
    let tun_flags = f.value(Field::TunFlags) as u16;
    if f.mask(Field::TunFlags) != 0 {
        let want = TUN_PRESENT | if t.remote.is_ipv4() { 0 } else { TUN_IPV6 };
        if tun_flags & f.mask(Field::TunFlags) as u16 != want & f.mask(Field::TunFlags) as u16 {
            return unsupported("tun_flags differ from the tunnel's");
        }
        f.take_all(Field::TunFlags);
    }
    for (tf, addr) in [(Field::TunSrc, t.remote), (Field::TunDst, local)] {
        let m = f.mask(tf);
        if m != 0 {
            if crate::packet::key::ip_to(addr) & m != f.value(tf) {
                return unsupported(format!("{} differs from the tunnel's", tf.name()));
            }
            f.take_all(tf);
        }
    }
    let Some(uplink) = ctx.port(r.uplink) else { return unsupported("the tunnel's uplink is unknown") };
    Ok(Ingress::Tunnel {
        uplink,
        pattern: TunnelMatch { eth_dst: Some(uplink.mac), src: t.remote, dst: local, udp_dst: t.udp_port, vni },
        tunnel_number: t.number,
        vni: t.vni.is_none().then_some(vni),
        overhead: r.template.overhead(),
    })
}

/// On a VTEP uplink (one with addresses), the software first takes ARP and
/// neighbour discovery for its addresses and VXLAN sent to them; a hardware
/// rule for other traffic from that uplink must not match those. It is safe
/// when the match excludes them: a unicast destination MAC that is not the
/// uplink's, or an EtherType other than ARP, IPv4 and IPv6, or an IP
/// destination that is not a local address and not an ND target, or a
/// transport protocol other than UDP (and ICMPv6) or a UDP port no tunnel uses.
fn vtep_safe(h: &Headers, port: &PortFacts, tables: &Tables, key: &FlowKey) -> Result<(), Refusal> {
    let locals: Vec<IpAddr> = tables.locals.iter().filter(|l| l.port == key.in_port()).map(|l| l.ip).collect();
    if locals.is_empty() {
        return Ok(());
    }
    if let Some(d) = h.eth.dst {
        let dst_fixed = d.mask == [0xff; 6];
        if dst_fixed && d.value[0] & 1 == 0 && d.value != port.mac {
            return Ok(());
        }
    }
    let ty = h.vlans.last().and_then(|v| v.inner_type).or(h.eth.ether_type);
    if let Some(t) = ty {
        if t != ETH_TYPE_ARP && t != ETH_TYPE_IPV4 && t != ETH_TYPE_IPV6 {
            return Ok(());
        }
    }
    let udp_ports: Vec<u16> = tables.tunnels.iter().map(|t| t.udp_port).collect();
    match &h.l3 {
        Some(L3Match::Ipv4(ip)) => {
            let not_local = ip.dst.is_some_and(|p| p.len == 32 && !locals.contains(&IpAddr::V4(p.addr)));
            let not_udp = ip.proto.is_some_and(|p| p != IPPROTO_UDP);
            let other_port = matches!(&h.l4, Some(L4Match::Udp(p)) if p.dst.is_some_and(|d| d.mask == 0xffff && !udp_ports.contains(&d.value)));
            if not_local || not_udp || other_port {
                return Ok(());
            }
        }
        Some(L3Match::Ipv6(ip)) => {
            // Neighbour discovery goes to solicited-node multicast too: only
            // a transport that is neither UDP nor ICMPv6 proves it.
            let not_udp_or_icmp = ip.next_header.is_some_and(|p| p != IPPROTO_UDP && p != 58);
            if not_udp_or_icmp {
                return Ok(());
            }
        }
        None => {}
    }
    Err(Refusal::Vtep(format!("a flow from {} could also match VXLAN, ARP or ND for the local VTEP", port.name)))
}

/// Translates a megaflow. `priority` goes into the rule.
///
/// # Errors
/// The [`Refusal`] that keeps it in software.
pub fn translate(
    key: &FlowKey,
    mask: &FlowMask,
    actions: &[Action],
    ctx: &Context<'_>,
    priority: u32,
) -> Result<Translation, Refusal> {
    let mut f = Fields { key, mask, left: *mask };
    let ingress = ingress(key, &mut f, ctx)?;
    let headers = headers(&mut f)?;
    f.leftover()?;
    let (ingress_port, tunnel, mut deps, src_mtu) = match &ingress {
        Ingress::Port(p) => {
            if p.role == Role::Uplink {
                vtep_safe(&headers, p, ctx.tables, key)?;
            }
            (*p, None, Vec::new(), usize::from(p.mtu))
        }
        Ingress::Tunnel { uplink, pattern, tunnel_number, vni, overhead } => {
            // A decapsulated packet is at most the uplink's MTU less the tunnel.
            let limit = usize::from(uplink.mtu).saturating_sub(*overhead);
            (*uplink, Some(*pattern), vec![(*tunnel_number, *vni)], limit)
        }
    };
    let mut out = Vec::new();
    out.push(hw::HwAction::Count);
    if tunnel.is_some() {
        out.push(hw::HwAction::VxlanDecap);
    }
    let mut tags = headers.vlans.len();
    let mut vni = None;
    let mut outputs = 0;
    for a in actions {
        match a {
            Action::PopVlan => {
                if tags > 0 {
                    out.push(hw::HwAction::PopVlan);
                    tags -= 1;
                }
            }
            Action::PushVlan { tpid, tci } => {
                if tci & VLAN_PRESENT != 0 {
                    return unsupported("push_vlan with the DEI bit set");
                }
                out.push(hw::HwAction::PushVlan { ethertype: *tpid, vid: tci & 0x0fff, pcp: (tci >> 13) as u8 });
                tags += 1;
            }
            Action::SetVlanVid(vid) => {
                if tags > 0 {
                    out.push(hw::HwAction::SetVlanVid(*vid));
                } else {
                    out.push(hw::HwAction::PushVlan { ethertype: hw::TPID_8021Q, vid: *vid, pcp: 0 });
                    tags += 1;
                }
            }
            Action::SetEthSrc(m) => out.push(hw::HwAction::SetMacSrc(*m)),
            Action::SetEthDst(m) => out.push(hw::HwAction::SetMacDst(*m)),
            Action::SetTunnel(v) => vni = Some(*v),
            Action::Drop => {}
            Action::Controller { .. } => return Err(Refusal::Controller),
            // Megaflows carry it as the output to their input port.
            Action::InPort => return unsupported("output:in_port not resolved to the input port"),
            Action::Output(p) => {
                outputs += 1;
                if outputs > 1 {
                    return unsupported("several outputs (mirroring is not offloaded)");
                }
                output(*p, vni, ingress_port, src_mtu, tags, ctx, &mut out, &mut deps)?;
            }
        }
    }
    if outputs == 0 {
        // A drop flow: dropped in hardware, no CPU spent on a flood.
        out.retain(|a| matches!(a, hw::HwAction::Count));
        out.push(hw::HwAction::Drop);
    }
    let rule =
        hw::HwRule { pattern: Pattern { ingress: ingress_port.ethdev, tunnel, headers }, priority, actions: out };
    rule.validate().map_err(|e| Refusal::Unsupported(format!("not expressible: {e}")))?;
    Ok(Translation { rule, tunnels: deps })
}

/// One output action: to a port (same e-switch, MTU) or through a tunnel
/// (its current encapsulation, the uplink's MTU). `src_mtu` is the largest
/// IP packet the source sends; `tags` the VLAN tags the frame has by then.
#[allow(clippy::too_many_arguments, reason = "one call site; the pieces of one output decision")]
fn output(
    port: u32,
    vni: Option<u32>,
    ingress: &PortFacts,
    src_mtu: usize,
    tags: usize,
    ctx: &Context<'_>,
    out: &mut Vec<hw::HwAction>,
    deps: &mut Vec<(u32, Option<u32>)>,
) -> Result<(), Refusal> {
    if let Some(p) = ctx.port(port) {
        ctx.same_switch(ingress, p)?;
        // Toward the wire, the NIC would send what the software refuses: the
        // flow stays in software when the source's packets may exceed the
        // uplink's MTU. Toward a VM port, a packet above its MTU is the VF's
        // to drop (as on any e-switch), where software answers with ICMP.
        if p.role == Role::Uplink && src_mtu > usize::from(p.mtu) {
            return Err(Refusal::Mtu(format!("{} {} > {} {}", ingress.name, src_mtu, p.name, p.mtu)));
        }
        out.push(hw::HwAction::Output(p.ethdev));
        return Ok(());
    }
    let Some(t) = ctx.tunnel(port) else { return unsupported(format!("output to unknown port {port}")) };
    let r = ctx.tables.resolve(t, vni).map_err(|e| Refusal::Unresolved(unresolved_text(e)))?;
    let Some(uplink) = ctx.port(r.uplink) else { return unsupported("the tunnel's uplink is unknown") };
    ctx.same_switch(ingress, uplink)?;
    // The outer IP packet: the inner frame (headers, tags, payload) plus
    // 36 bytes (IPv4) or 56 (IPv6) of IP/UDP/VXLAN: the source MTU plus 50
    // or 70, plus 4 per tag.
    let overhead = r.template.overhead() + 4 * tags;
    if src_mtu + overhead > usize::from(r.uplink_mtu) {
        return Err(Refusal::Mtu(format!(
            "{} {} + {} > {} {}",
            ingress.name, src_mtu, overhead, uplink.name, r.uplink_mtu
        )));
    }
    let s = r.template.spec();
    let ip = match (s.ip_src, s.ip_dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => EncapIp::V4 { src, dst, tos: s.tos, ttl: s.ttl, df: s.df },
        (IpAddr::V6(src), IpAddr::V6(dst)) => EncapIp::V6 { src, dst, traffic_class: s.tos, hop_limit: s.ttl },
        _ => return unsupported("mixed-family tunnel"),
    };
    out.push(hw::HwAction::VxlanEncap(VxlanEncap {
        eth_src: s.eth_src,
        eth_dst: s.eth_dst,
        ip,
        udp_dst: s.udp_dst,
        vni: s.vni,
    }));
    out.push(hw::HwAction::Output(uplink.ethdev));
    deps.push((port, t.vni.is_none().then_some(s.vni)));
    Ok(())
}

#[cfg(test)]
mod tests;
