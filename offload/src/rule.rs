//! The rule vocabulary: what the switch asks the e-switch to do, in typed
//! values with no DPDK in sight. [`crate::rte_flow::lower`] turns a [`HwRule`]
//! into rte_flow structs; [`crate::rte_flow::read_back`] turns those structs
//! back into a [`HwRule`].
//!
//! A rule matches packets arriving on one ethdev port (`ingress`) by their
//! headers, outermost first, and runs its actions in order; the last action
//! is the rule's fate (output to a port, drop, or jump to another group).
//!
//! Canonical form: a field that is not matched is `None`; a `Some` always
//! compares at least one bit (a zero mask or a /0 prefix is written `None`),
//! and values carry no bits outside their mask. [`HwRule::validate`] refuses
//! anything else, so every valid rule has exactly one rte_flow lowering and
//! reads back to itself.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An ethdev port id.
pub type PortId = u16;

/// A MAC address in wire order.
pub type Mac = [u8; 6];

/// The IANA VXLAN UDP port.
pub const VXLAN_PORT: u16 = 4789;
/// 802.1Q tag protocol id.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad (QinQ outer) tag protocol id.
pub const TPID_8021AD: u16 = 0x88a8;
/// Largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;
/// Largest AGE timeout rte_flow can carry (24 bits of seconds).
pub const MAX_AGE_S: u32 = 0x00ff_ffff;

/// A value compared under a mask (1 bits are compared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Masked<T> {
    pub value: T,
    pub mask: T,
}

/// Types with an all-ones value, for exact matches.
pub trait AllOnes: Copy {
    const ALL_ONES: Self;
}

impl AllOnes for u8 {
    const ALL_ONES: Self = u8::MAX;
}

impl AllOnes for u16 {
    const ALL_ONES: Self = u16::MAX;
}

impl AllOnes for Mac {
    const ALL_ONES: Self = [0xff; 6];
}

impl<T: AllOnes> Masked<T> {
    /// Every bit compared.
    pub fn exact(value: T) -> Self {
        Self { value, mask: T::ALL_ONES }
    }
}

/// An IPv4 prefix (`len` 1..=32 in canonical form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Prefix {
    /// A host address (/32).
    pub fn host(addr: Ipv4Addr) -> Self {
        Self { addr, len: 32 }
    }

    /// The mask as a number.
    pub fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len.min(32)))
        }
    }
}

/// An IPv6 prefix (`len` 1..=128 in canonical form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Prefix {
    pub addr: Ipv6Addr,
    pub len: u8,
}

impl Ipv6Prefix {
    /// A host address (/128).
    pub fn host(addr: Ipv6Addr) -> Self {
        Self { addr, len: 128 }
    }

    /// The mask as a number.
    pub fn mask(&self) -> u128 {
        if self.len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.len.min(128)))
        }
    }
}

/// Ethernet header fields. `ether_type` is the type field right after the
/// addresses (a tag's TPID when the frame is tagged); `tagged` says whether
/// the frame carries at least one VLAN tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EthMatch {
    pub dst: Option<Masked<Mac>>,
    pub src: Option<Masked<Mac>>,
    pub ether_type: Option<u16>,
    pub tagged: Option<bool>,
}

impl EthMatch {
    /// Whether nothing is compared.
    pub fn is_any(&self) -> bool {
        *self == Self::default()
    }
}

/// One VLAN tag. `inner_type` is the type field after the tag; `more_tags`
/// whether another tag follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanMatch {
    pub vid: Option<u16>,
    pub pcp: Option<u8>,
    pub inner_type: Option<u16>,
    pub more_tags: Option<bool>,
}

/// IPv4 header fields. `fragment == Some(false)` matches packets that are not
/// fragments (MF clear, offset 0); `Some(true)` is not expressible and invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ipv4Match {
    pub src: Option<Ipv4Prefix>,
    pub dst: Option<Ipv4Prefix>,
    pub proto: Option<u8>,
    /// Differentiated services code point (6 bits).
    pub dscp: Option<u8>,
    /// Explicit congestion notification (2 bits).
    pub ecn: Option<u8>,
    pub ttl: Option<u8>,
    pub fragment: Option<bool>,
}

/// IPv6 header fields (`next_header` is the fixed header's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ipv6Match {
    pub src: Option<Ipv6Prefix>,
    pub dst: Option<Ipv6Prefix>,
    pub next_header: Option<u8>,
    pub dscp: Option<u8>,
    pub ecn: Option<u8>,
    pub hop_limit: Option<u8>,
}

/// The network layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L3Match {
    Ipv4(Ipv4Match),
    Ipv6(Ipv6Match),
}

/// Transport ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PortsMatch {
    pub src: Option<Masked<u16>>,
    pub dst: Option<Masked<u16>>,
}

/// The transport layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4Match {
    Udp(PortsMatch),
    /// TCP ports and the low 8 flag bits (CWR..FIN).
    Tcp {
        ports: PortsMatch,
        flags: Option<Masked<u8>>,
    },
}

/// A header stack: Ethernet, up to two VLAN tags, IP, UDP/TCP. A layer that
/// is present (`vlans` entries, `l3`, `l4`) must be in the packet; `eth` is
/// always there (a frame has an Ethernet header).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Headers {
    pub eth: EthMatch,
    pub vlans: Vec<VlanMatch>,
    pub l3: Option<L3Match>,
    pub l4: Option<L4Match>,
}

impl Headers {
    /// Whether nothing at all is compared (the pattern stops before Ethernet).
    pub fn is_any(&self) -> bool {
        self.eth.is_any() && self.vlans.is_empty() && self.l3.is_none() && self.l4.is_none()
    }
}

/// The outer headers of a VXLAN packet to decapsulate: Ethernet destination
/// (optional), outer IPv4 or IPv6 source and destination, the UDP destination
/// port and the VNI. The inner frame is matched by [`Pattern::headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelMatch {
    pub eth_dst: Option<Mac>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub udp_dst: u16,
    pub vni: u32,
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    /// The ethdev port the packet arrived on (REPRESENTED_PORT).
    pub ingress: PortId,
    /// For decapsulation: the outer headers, then `headers` are the inner ones.
    pub tunnel: Option<TunnelMatch>,
    pub headers: Headers,
}

/// The outer IP header of an encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncapIp {
    V4 { src: Ipv4Addr, dst: Ipv4Addr, tos: u8, ttl: u8, df: bool },
    V6 { src: Ipv6Addr, dst: Ipv6Addr, traffic_class: u8, hop_limit: u8 },
}

impl EncapIp {
    /// Bytes the whole encapsulation adds: 50 over IPv4, 70 over IPv6.
    pub fn overhead(&self) -> usize {
        match self {
            EncapIp::V4 { .. } => 50,
            EncapIp::V6 { .. } => 70,
        }
    }
}

/// A VXLAN encapsulation: outer Ethernet, IP, UDP (source port left to the
/// device, see [`crate::entropy`]) and the VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanEncap {
    pub eth_src: Mac,
    pub eth_dst: Mac,
    pub ip: EncapIp,
    pub udp_dst: u16,
    pub vni: u32,
}

/// An action. Order matters; see [`HwRule::validate`] for what may follow what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HwAction {
    /// Count packets and bytes (queried with the device's `query`).
    Count,
    /// Report the rule as aged when no packet hit it for this many seconds.
    Age {
        timeout_s: u32,
    },
    /// Strip the outer Ethernet/IP/UDP/VXLAN headers (needs `Pattern::tunnel`).
    VxlanDecap,
    /// Push a tag (OF_PUSH_VLAN + OF_SET_VLAN_VID + OF_SET_VLAN_PCP).
    PushVlan {
        ethertype: u16,
        vid: u16,
        pcp: u8,
    },
    /// Pop the outermost tag.
    PopVlan,
    /// Rewrite the outermost tag's VLAN id.
    SetVlanVid(u16),
    SetMacSrc(Mac),
    SetMacDst(Mac),
    VxlanEncap(VxlanEncap),
    /// Fate: drop.
    Drop,
    /// Fate: send to the entity an ethdev port represents (a VF, the wire).
    Output(PortId),
    /// Fate: continue the lookup in another group.
    Jump {
        group: u32,
    },
}

impl HwAction {
    /// Whether this action ends a rule.
    pub fn is_fate(&self) -> bool {
        matches!(self, HwAction::Drop | HwAction::Output(_) | HwAction::Jump { .. })
    }
}

/// A rule: pattern, priority within its group (0 is the highest, as in
/// rte_flow) and actions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HwRule {
    pub pattern: Pattern,
    pub priority: u32,
    pub actions: Vec<HwAction>,
}

/// Why a rule is not valid vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

fn bad<T>(why: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError(why.into()))
}

fn check_masked_mac(what: &str, m: &Option<Masked<Mac>>) -> Result<(), RuleError> {
    if let Some(m) = m {
        if m.mask == [0; 6] {
            return bad(format!("{what}: a zero mask is written None"));
        }
        if m.value.iter().zip(m.mask).any(|(v, k)| v & !k != 0) {
            return bad(format!("{what}: value has bits outside its mask"));
        }
    }
    Ok(())
}

fn check_masked16(what: &str, m: &Option<Masked<u16>>) -> Result<(), RuleError> {
    match m {
        Some(m) if m.mask == 0 => bad(format!("{what}: a zero mask is written None")),
        Some(m) if m.value & !m.mask != 0 => bad(format!("{what}: value has bits outside its mask")),
        _ => Ok(()),
    }
}

fn check_prefix4(what: &str, p: &Option<Ipv4Prefix>) -> Result<(), RuleError> {
    match p {
        Some(p) if p.len == 0 || p.len > 32 => bad(format!("{what}: prefix length {} (1..=32; /0 is None)", p.len)),
        Some(p) if u32::from(p.addr) & !p.mask() != 0 => bad(format!("{what}: {}/{} has host bits", p.addr, p.len)),
        _ => Ok(()),
    }
}

fn check_prefix6(what: &str, p: &Option<Ipv6Prefix>) -> Result<(), RuleError> {
    match p {
        Some(p) if p.len == 0 || p.len > 128 => bad(format!("{what}: prefix length {} (1..=128; /0 is None)", p.len)),
        Some(p) if u128::from(p.addr) & !p.mask() != 0 => bad(format!("{what}: {}/{} has host bits", p.addr, p.len)),
        _ => Ok(()),
    }
}

fn check_bits(what: &str, v: Option<u8>, bits: u32) -> Result<(), RuleError> {
    match v {
        Some(x) if u32::from(x) >> bits != 0 => bad(format!("{what}: {x} does not fit in {bits} bits")),
        _ => Ok(()),
    }
}

impl Headers {
    fn validate(&self, inner: bool) -> Result<(), RuleError> {
        let side = if inner { "inner " } else { "" };
        check_masked_mac(&format!("{side}eth dst"), &self.eth.dst)?;
        check_masked_mac(&format!("{side}eth src"), &self.eth.src)?;
        if self.vlans.len() > 2 {
            return bad(format!("{side}at most two VLAN tags, not {}", self.vlans.len()));
        }
        if !self.vlans.is_empty() && self.eth.tagged == Some(false) {
            return bad(format!("{side}VLAN tags with eth tagged=false"));
        }
        for (i, v) in self.vlans.iter().enumerate() {
            if v.vid.is_some_and(|vid| vid > 0x0fff) {
                return bad(format!("{side}vlan {i}: VLAN id {} > 4095", v.vid.unwrap_or(0)));
            }
            check_bits(&format!("{side}vlan {i} pcp"), v.pcp, 3)?;
            if i == 0 && self.vlans.len() == 2 && v.more_tags == Some(false) {
                return bad(format!("{side}vlan 0: more_tags=false before a second tag"));
            }
        }
        match &self.l3 {
            Some(L3Match::Ipv4(ip)) => {
                check_prefix4(&format!("{side}ipv4 src"), &ip.src)?;
                check_prefix4(&format!("{side}ipv4 dst"), &ip.dst)?;
                check_bits(&format!("{side}ipv4 dscp"), ip.dscp, 6)?;
                check_bits(&format!("{side}ipv4 ecn"), ip.ecn, 2)?;
                if ip.fragment == Some(true) {
                    return bad(format!("{side}ipv4: \"is a fragment\" cannot be matched with one mask"));
                }
            }
            Some(L3Match::Ipv6(ip)) => {
                check_prefix6(&format!("{side}ipv6 src"), &ip.src)?;
                check_prefix6(&format!("{side}ipv6 dst"), &ip.dst)?;
                check_bits(&format!("{side}ipv6 dscp"), ip.dscp, 6)?;
                check_bits(&format!("{side}ipv6 ecn"), ip.ecn, 2)?;
            }
            None => {}
        }
        if let Some(l4) = &self.l4 {
            if self.l3.is_none() {
                return bad(format!("{side}a transport match needs an IP layer"));
            }
            let (ports, name) = match l4 {
                L4Match::Udp(p) => (p, "udp"),
                L4Match::Tcp { ports, flags } => {
                    if let Some(f) = flags {
                        if f.mask == 0 || f.value & !f.mask != 0 {
                            return bad(format!("{side}tcp flags: zero mask or bits outside the mask"));
                        }
                    }
                    (ports, "tcp")
                }
            };
            check_masked16(&format!("{side}{name} src"), &ports.src)?;
            check_masked16(&format!("{side}{name} dst"), &ports.dst)?;
        }
        Ok(())
    }
}

impl HwRule {
    /// The group-0 rule that sends everything from ethdev port `ingress` on
    /// to `group`, where the flow rules live (mlx5's root table is small
    /// and slow to insert into).
    pub fn jump(ingress: PortId, group: u32) -> HwRule {
        HwRule {
            pattern: Pattern { ingress, tunnel: None, headers: Headers::default() },
            priority: 0,
            actions: vec![HwAction::Jump { group }],
        }
    }

    /// Checks the rule is valid, canonical vocabulary.
    ///
    /// # Errors
    /// [`RuleError`] saying what is wrong.
    pub fn validate(&self) -> Result<(), RuleError> {
        let p = &self.pattern;
        p.headers.validate(p.tunnel.is_some())?;
        if let Some(t) = &p.tunnel {
            if t.src.is_ipv4() != t.dst.is_ipv4() {
                return bad("tunnel: outer source and destination of different families");
            }
            if t.vni > MAX_VNI {
                return bad(format!("tunnel: VNI {} > {MAX_VNI}", t.vni));
            }
            if t.udp_dst == 0 {
                return bad("tunnel: UDP port 0");
            }
        }
        let Some((fate, body)) = self.actions.split_last() else {
            return bad("no actions (a rule ends with output, drop or jump)");
        };
        if !fate.is_fate() {
            return bad(format!("the last action must be output, drop or jump, not {fate:?}"));
        }
        let mut seen_count = false;
        let mut seen_age = false;
        let mut seen_encap = false;
        for (i, a) in body.iter().enumerate() {
            match a {
                _ if a.is_fate() => return bad(format!("{a:?} must be the last action")),
                HwAction::Count if seen_count => return bad("count twice"),
                HwAction::Count => seen_count = true,
                HwAction::Age { .. } if seen_age => return bad("age twice"),
                HwAction::Age { timeout_s } => {
                    if *timeout_s == 0 || *timeout_s > MAX_AGE_S {
                        return bad(format!("age timeout {timeout_s} s (1..={MAX_AGE_S})"));
                    }
                    seen_age = true;
                }
                HwAction::VxlanDecap => {
                    if p.tunnel.is_none() {
                        return bad("vxlan_decap needs a tunnel pattern");
                    }
                    if i != body.iter().position(|x| !matches!(x, HwAction::Count | HwAction::Age { .. })).unwrap_or(i)
                    {
                        return bad("vxlan_decap must come before every other packet action");
                    }
                }
                HwAction::PushVlan { ethertype, vid, pcp } => {
                    if *ethertype != TPID_8021Q && *ethertype != TPID_8021AD {
                        return bad(format!("push_vlan: TPID {ethertype:#06x} (0x8100 or 0x88a8)"));
                    }
                    if *vid > 0x0fff || *pcp > 7 {
                        return bad(format!("push_vlan: vid {vid} pcp {pcp} out of range"));
                    }
                }
                HwAction::SetVlanVid(vid) if *vid > 0x0fff => return bad(format!("set_vlan_vid: {vid} > 4095")),
                HwAction::VxlanEncap(e) => {
                    if seen_encap {
                        return bad("vxlan_encap twice");
                    }
                    seen_encap = true;
                    if e.vni > MAX_VNI {
                        return bad(format!("vxlan_encap: VNI {} > {MAX_VNI}", e.vni));
                    }
                    if e.udp_dst == 0 {
                        return bad("vxlan_encap: UDP port 0");
                    }
                }
                _ if seen_encap => {
                    // Anything after an encapsulation would edit the outer headers.
                    return bad(format!("{a:?} after vxlan_encap"));
                }
                _ => {}
            }
        }
        if seen_encap && matches!(fate, HwAction::Jump { .. }) {
            return bad("vxlan_encap must end in output or drop");
        }
        Ok(())
    }

    /// The encapsulation this rule adds, if any.
    pub fn encap(&self) -> Option<&VxlanEncap> {
        self.actions.iter().find_map(|a| match a {
            HwAction::VxlanEncap(e) => Some(e),
            _ => None,
        })
    }

    /// The rule's fate (its last action).
    pub fn fate(&self) -> Option<&HwAction> {
        self.actions.last()
    }
}

fn mac_text(m: &Mac) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn masked_mac_text(m: &Masked<Mac>) -> String {
    if m.mask == [0xff; 6] {
        mac_text(&m.value)
    } else {
        format!("{}/{}", mac_text(&m.value), mac_text(&m.mask))
    }
}

fn masked16_text(m: &Masked<u16>) -> String {
    if m.mask == u16::MAX {
        m.value.to_string()
    } else {
        format!("{:#x}/{:#x}", m.value, m.mask)
    }
}

/// `name(a,b,...)` from the fields that are set.
fn layer(name: &str, fields: impl IntoIterator<Item = Option<String>>) -> String {
    let set: Vec<String> = fields.into_iter().flatten().collect();
    format!("{name}({})", set.join(","))
}

impl Headers {
    fn eth_text(&self) -> Option<String> {
        let e = &self.eth;
        let any = e.dst.is_some() || e.src.is_some() || e.ether_type.is_some() || e.tagged.is_some();
        any.then(|| {
            layer(
                "eth",
                [
                    e.dst.as_ref().map(|d| format!("dst={}", masked_mac_text(d))),
                    e.src.as_ref().map(|s| format!("src={}", masked_mac_text(s))),
                    e.ether_type.map(|t| format!("type={t:#06x}")),
                    e.tagged.map(|t| format!("tagged={t}")),
                ],
            )
        })
    }

    fn l3_text(&self) -> Option<String> {
        Some(match self.l3.as_ref()? {
            L3Match::Ipv4(ip) => layer(
                "ipv4",
                [
                    ip.src.map(|s| format!("src={}/{}", s.addr, s.len)),
                    ip.dst.map(|d| format!("dst={}/{}", d.addr, d.len)),
                    ip.proto.map(|p| format!("proto={p}")),
                    ip.dscp.map(|d| format!("dscp={d}")),
                    ip.ecn.map(|d| format!("ecn={d}")),
                    ip.ttl.map(|t| format!("ttl={t}")),
                    (ip.fragment == Some(false)).then(|| "frag=no".to_owned()),
                ],
            ),
            L3Match::Ipv6(ip) => layer(
                "ipv6",
                [
                    ip.src.map(|s| format!("src={}/{}", s.addr, s.len)),
                    ip.dst.map(|d| format!("dst={}/{}", d.addr, d.len)),
                    ip.next_header.map(|p| format!("proto={p}")),
                    ip.dscp.map(|d| format!("dscp={d}")),
                    ip.ecn.map(|d| format!("ecn={d}")),
                    ip.hop_limit.map(|t| format!("hop={t}")),
                ],
            ),
        })
    }

    fn l4_text(&self) -> Option<String> {
        let (name, ports, flags) = match self.l4.as_ref()? {
            L4Match::Udp(p) => ("udp", p, None),
            L4Match::Tcp { ports, flags } => ("tcp", ports, flags.as_ref()),
        };
        Some(layer(
            name,
            [
                ports.src.as_ref().map(|s| format!("src={}", masked16_text(s))),
                ports.dst.as_ref().map(|d| format!("dst={}", masked16_text(d))),
                flags.map(|fl| format!("flags={:#04x}/{:#04x}", fl.value, fl.mask)),
            ],
        ))
    }
}

impl fmt::Display for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vlans = self.vlans.iter().map(|v| {
            layer(
                "vlan",
                [
                    v.vid.map(|vid| format!("vid={vid}")),
                    v.pcp.map(|pcp| format!("pcp={pcp}")),
                    v.inner_type.map(|t| format!("type={t:#06x}")),
                    v.more_tags.map(|m| format!("more={m}")),
                ],
            )
        });
        let parts: Vec<String> =
            self.eth_text().into_iter().chain(vlans).chain(self.l3_text()).chain(self.l4_text()).collect();
        if parts.is_empty() {
            f.write_str("any")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

impl fmt::Display for HwAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HwAction::Count => f.write_str("count"),
            HwAction::Age { timeout_s } => write!(f, "age({timeout_s}s)"),
            HwAction::VxlanDecap => f.write_str("vxlan_decap"),
            HwAction::PushVlan { ethertype, vid, pcp } => write!(f, "push_vlan({ethertype:#06x},vid={vid},pcp={pcp})"),
            HwAction::PopVlan => f.write_str("pop_vlan"),
            HwAction::SetVlanVid(v) => write!(f, "set_vlan_vid({v})"),
            HwAction::SetMacSrc(m) => write!(f, "set_mac_src({})", mac_text(m)),
            HwAction::SetMacDst(m) => write!(f, "set_mac_dst({})", mac_text(m)),
            HwAction::VxlanEncap(e) => {
                let (src, dst) = match e.ip {
                    EncapIp::V4 { src, dst, .. } => (IpAddr::V4(src), IpAddr::V4(dst)),
                    EncapIp::V6 { src, dst, .. } => (IpAddr::V6(src), IpAddr::V6(dst)),
                };
                write!(f, "vxlan_encap(vni={},{src}->{dst},dst_mac={})", e.vni, mac_text(&e.eth_dst))
            }
            HwAction::Drop => f.write_str("drop"),
            HwAction::Output(p) => write!(f, "output({p})"),
            HwAction::Jump { group } => write!(f, "jump({group})"),
        }
    }
}

impl fmt::Display for HwRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port={}", self.pattern.ingress)?;
        if let Some(t) = &self.pattern.tunnel {
            write!(f, " vxlan(vni={},{}->{},udp={})", t.vni, t.src, t.dst, t.udp_dst)?;
        }
        if !self.pattern.headers.is_any() {
            write!(f, " {}", self.pattern.headers)?;
        }
        let actions: Vec<String> = self.actions.iter().map(ToString::to_string).collect();
        write!(f, " actions={}", actions.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HwRule {
        HwRule {
            pattern: Pattern { ingress: 0, tunnel: None, headers: Headers::default() },
            priority: 0,
            actions: vec![HwAction::Output(1)],
        }
    }

    #[test]
    fn validation_refuses_what_rte_flow_cannot_say_or_we_cannot_read_back() {
        assert_eq!(base().validate(), Ok(()));
        let cases: Vec<(HwRule, &str)> = vec![
            (HwRule { actions: vec![], ..base() }, "no actions"),
            (HwRule { actions: vec![HwAction::Count], ..base() }, "last action"),
            (HwRule { actions: vec![HwAction::Drop, HwAction::Output(1)], ..base() }, "must be the last"),
            (HwRule { actions: vec![HwAction::VxlanDecap, HwAction::Output(1)], ..base() }, "tunnel pattern"),
            (HwRule { actions: vec![HwAction::Age { timeout_s: 0 }, HwAction::Output(1)], ..base() }, "age timeout"),
            (HwRule { actions: vec![HwAction::SetVlanVid(5000), HwAction::Output(1)], ..base() }, "4095"),
            (HwRule { actions: vec![HwAction::Count, HwAction::Count, HwAction::Output(1)], ..base() }, "count twice"),
        ];
        for (rule, want) in cases {
            let e = rule.validate().expect_err(want);
            assert!(e.0.contains(want), "{e} should mention {want:?}");
        }
        let mut r = base();
        r.pattern.headers.l3 = Some(L3Match::Ipv4(Ipv4Match {
            dst: Some(Ipv4Prefix { addr: Ipv4Addr::new(10, 0, 0, 1), len: 24 }),
            ..Default::default()
        }));
        assert!(r.validate().expect_err("host bits").0.contains("host bits"));
        let mut r = base();
        r.pattern.headers.l4 = Some(L4Match::Udp(PortsMatch::default()));
        assert!(r.validate().expect_err("l4 without l3").0.contains("needs an IP layer"));
        let mut r = base();
        r.pattern.headers.eth.dst = Some(Masked { value: [1; 6], mask: [0; 6] });
        assert!(r.validate().expect_err("zero mask").0.contains("zero mask"));
        let encap = VxlanEncap {
            eth_src: [2; 6],
            eth_dst: [4; 6],
            ip: EncapIp::V4 {
                src: Ipv4Addr::new(1, 1, 1, 1),
                dst: Ipv4Addr::new(2, 2, 2, 2),
                tos: 0,
                ttl: 64,
                df: true,
            },
            udp_dst: VXLAN_PORT,
            vni: 7,
        };
        let r = HwRule { actions: vec![HwAction::VxlanEncap(encap), HwAction::PopVlan, HwAction::Output(1)], ..base() };
        assert!(r.validate().expect_err("edit after encap").0.contains("after vxlan_encap"));
    }

    #[test]
    fn display_is_readable() {
        let mut r = base();
        r.pattern.headers.eth.dst = Some(Masked::exact([2, 0, 0, 0, 0, 1]));
        r.pattern.headers.l3 = Some(L3Match::Ipv4(Ipv4Match { proto: Some(17), ..Default::default() }));
        r.actions = vec![HwAction::Count, HwAction::Output(3)];
        assert_eq!(r.to_string(), "port=0 eth(dst=02:00:00:00:00:01) ipv4(proto=17) actions=count,output(3)");
    }
}
