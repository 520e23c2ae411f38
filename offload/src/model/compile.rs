//! Compiles what the model read from rte_flow arrays ([`RawRule`]) into a
//! match (spec and mask vectors) and a program of packet operations, or
//! refuses it the way a device would: with an rte_flow error type, errno and
//! message. The profile decides which items and actions are taken at all.

use super::profile::{ActionKind, Profile};
use super::vector::{self, Slot, Vector};
use crate::device::{libc_errno, DeviceError, ERROR_TYPE_ACTION, ERROR_TYPE_ATTR, ERROR_TYPE_ITEM};
use crate::rte_flow::read::flags;
use crate::rte_flow::{ItemKind, RawAction, RawItem, RawRule};
use crate::rule::VXLAN_PORT;

/// `RTE_FLOW_ERROR_TYPE_ITEM_MASK`.
const ERROR_TYPE_ITEM_MASK: u32 = 12;
/// `RTE_FLOW_ERROR_TYPE_ITEM_LAST`.
const ERROR_TYPE_ITEM_LAST: u32 = 11;
/// `RTE_FLOW_ERROR_TYPE_ATTR_TRANSFER`.
const ERROR_TYPE_ATTR_TRANSFER: u32 = 7;

impl ActionKind {
    fn of(a: &RawAction) -> Option<Self> {
        Some(match a {
            RawAction::Count => ActionKind::Count,
            RawAction::Age { .. } => ActionKind::Age,
            RawAction::VxlanDecap => ActionKind::VxlanDecap,
            RawAction::VxlanEncap(_) => ActionKind::VxlanEncap,
            RawAction::PushVlan { .. } => ActionKind::PushVlan,
            RawAction::PopVlan => ActionKind::PopVlan,
            RawAction::SetVlanVid(_) => ActionKind::SetVlanVid,
            RawAction::SetVlanPcp(_) => ActionKind::SetVlanPcp,
            RawAction::SetMacSrc(_) | RawAction::SetMacDst(_) => ActionKind::SetMac,
            RawAction::Drop => ActionKind::Drop,
            RawAction::RepresentedPort(_) => ActionKind::RepresentedPort,
            RawAction::Jump(_) => ActionKind::Jump,
            RawAction::Other(_) => return None,
        })
    }
}

/// A prebuilt outer header for VXLAN_ENCAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncapHeader {
    pub bytes: [u8; 70],
    pub len: usize,
    pub ipv6: bool,
}

/// One packet operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Decap,
    PopVlan,
    PushVlan { tpid: u16, tci: u16 },
    SetVid(u16),
    SetPcp(u8),
    SetMacSrc([u8; 6]),
    SetMacDst([u8; 6]),
    Encap(Box<EncapHeader>),
}

/// What ends a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Output(u16),
    Drop,
    Jump(u32),
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub group: u32,
    pub priority: u32,
    pub spec: Vector,
    pub mask: Vector,
    pub ingress: Option<u16>,
    /// UDP destination port of the rule's VXLAN item, if any.
    pub vxlan_port: Option<u16>,
    /// Whether the rule compares inner (post-VXLAN) headers.
    pub inner: bool,
    pub ops: Vec<Op>,
    pub fate: Fate,
    pub count: bool,
    /// (timeout in seconds, context).
    pub age: Option<(u32, u64)>,
}

fn item_error(i: usize, type_: u32, errno: i32, msg: String) -> DeviceError {
    DeviceError::new("validate", errno, type_, format!("model: item {i}: {msg}"))
}

fn action_error(i: usize, errno: i32, msg: String) -> DeviceError {
    DeviceError::new("validate", errno, ERROR_TYPE_ACTION, format!("model: action {i}: {msg}"))
}

/// Layer rank of an item, for the order check (outer 0..=4, VXLAN 5, inner 6..).
fn rank(kind: ItemKind, inner: bool) -> usize {
    let base = match kind {
        ItemKind::RepresentedPort => 0,
        ItemKind::Eth => 1,
        ItemKind::Vlan => 2,
        ItemKind::Ipv4 | ItemKind::Ipv6 => 3,
        ItemKind::Udp | ItemKind::Tcp => 4,
        ItemKind::Vxlan => 5,
        ItemKind::Other(_) => 99,
    };
    if inner && base != 5 {
        base + 5
    } else {
        base
    }
}

fn place(spec: &mut Vector, mask: &mut Vector, slot: Slot, item: &RawItem) {
    let len = item.kind.header_len();
    let (s, m) = (&mut spec.0[slot.offset..slot.offset + len], &mut mask.0[slot.offset..slot.offset + len]);
    if let Some(sp) = &item.spec {
        for i in 0..len {
            m[i] = item.mask.hdr[i];
            s[i] = sp.hdr[i] & item.mask.hdr[i];
        }
    }
}

/// State while walking the pattern.
struct Walk {
    spec: Vector,
    mask: Vector,
    port: (u16, u16),
    flags: (u32, u32),
    presence: u32,
    inner: bool,
    vlans: usize,
    udp_dst: Option<u16>,
    last_rank: usize,
}

fn compile_items(raw: &RawRule, profile: &Profile) -> Result<Walk, DeviceError> {
    let mut w = Walk {
        spec: Vector::default(),
        mask: Vector::default(),
        port: (0, 0),
        flags: (0, 0),
        presence: 0,
        inner: false,
        vlans: 0,
        udp_dst: None,
        last_rank: 0,
    };
    for (i, item) in raw.items.iter().enumerate() {
        check_item(i, item, profile, &mut w)?;
        if let Some(slot) = item_slot(i, item, &mut w)? {
            place(&mut w.spec, &mut w.mask, slot, item);
            w.presence |= slot.presence;
        }
    }
    Ok(w)
}

/// Refuses item `i` where a device would: not supported, not in the
/// profile, a range, a misplaced REPRESENTED_PORT, out of header order.
fn check_item(i: usize, item: &RawItem, profile: &Profile, w: &mut Walk) -> Result<(), DeviceError> {
    let unsupported = libc_errno::ENOTSUP;
    if let ItemKind::Other(n) = item.kind {
        return Err(item_error(i, ERROR_TYPE_ITEM, unsupported, format!("item type {n} is not supported")));
    }
    if !profile.items.contains(&item.kind) {
        return Err(item_error(
            i,
            ERROR_TYPE_ITEM,
            unsupported,
            format!("{} is not in profile {:?}", item.kind.name(), profile.name),
        ));
    }
    if item.has_last {
        return Err(item_error(i, ERROR_TYPE_ITEM_LAST, unsupported, "ranges (last) are not supported".into()));
    }
    if (i == 0) != (item.kind == ItemKind::RepresentedPort) {
        return Err(item_error(
            i,
            ERROR_TYPE_ITEM,
            libc_errno::EINVAL,
            "a transfer rule starts with one REPRESENTED_PORT item (as under mlx5 hardware steering)".into(),
        ));
    }
    let r = rank(item.kind, w.inner);
    let same_rank_ok = item.kind == ItemKind::Vlan && w.vlans < 2 && w.last_rank == r;
    if i > 0 && r <= w.last_rank && !same_rank_ok {
        return Err(item_error(
            i,
            ERROR_TYPE_ITEM,
            libc_errno::EINVAL,
            format!("{} is out of order in the header stack", item.kind.name()),
        ));
    }
    w.last_rank = r;
    Ok(())
}

/// Where item `i` goes in the match vectors (`None`: placed already, or
/// not a header), with the flags and state it sets on the way.
fn item_slot(i: usize, item: &RawItem, w: &mut Walk) -> Result<Option<Slot>, DeviceError> {
    let unsupported = libc_errno::ENOTSUP;
    let at = |s: Slot, inner: bool| if inner { vector::inner(s) } else { s };
    let fshift = if w.inner { vector::INNER_FLAG_SHIFT } else { 0 };
    let slot = match item.kind {
        ItemKind::RepresentedPort => {
            if let Some(s) = &item.spec {
                let m = u16::from_be_bytes([item.mask.hdr[0], item.mask.hdr[1]]);
                w.port = (u16::from_be_bytes([s.hdr[0], s.hdr[1]]) & m, m);
            }
            return Ok(None);
        }
        ItemKind::Eth => {
            if let Some(s) = &item.spec {
                if item.mask.flags & flags::HAS_VLAN != 0 {
                    w.flags.1 |= vector::FLAG_HAS_VLAN << fshift;
                    w.flags.0 |= (s.flags & flags::HAS_VLAN) * (vector::FLAG_HAS_VLAN << fshift);
                }
            }
            at(vector::ETH, w.inner)
        }
        ItemKind::Vlan => {
            let n = w.vlans;
            if n >= 2 {
                return Err(item_error(i, ERROR_TYPE_ITEM, unsupported, "more than two VLAN items".into()));
            }
            w.vlans += 1;
            if let Some(s) = &item.spec {
                if item.mask.flags & flags::HAS_MORE_VLAN != 0 {
                    let bit = vector::FLAG_VLAN_MORE[n] << fshift;
                    w.flags.1 |= bit;
                    if s.flags & flags::HAS_MORE_VLAN != 0 {
                        w.flags.0 |= bit;
                    }
                }
            }
            at(vector::VLAN[n], w.inner)
        }
        ItemKind::Ipv4 => at(vector::IPV4, w.inner),
        ItemKind::Ipv6 => {
            if item.spec.is_some() && item.mask.flags & flags::IPV6_EXT_ALL != 0 {
                return Err(item_error(
                    i,
                    ERROR_TYPE_ITEM_MASK,
                    unsupported,
                    "IPv6 extension-header flags are not supported".into(),
                ));
            }
            at(vector::IPV6, w.inner)
        }
        ItemKind::Udp => {
            if !w.inner {
                if let Some(s) = &item.spec {
                    if item.mask.hdr[2..4] == [0xff, 0xff] {
                        w.udp_dst = Some(u16::from_be_bytes([s.hdr[2], s.hdr[3]]));
                    }
                }
            }
            at(vector::UDP, w.inner)
        }
        ItemKind::Tcp => at(vector::TCP, w.inner),
        ItemKind::Vxlan => {
            if w.presence & vector::UDP.presence == 0 {
                return Err(item_error(
                    i,
                    ERROR_TYPE_ITEM,
                    libc_errno::EINVAL,
                    "VXLAN needs a UDP item before it".into(),
                ));
            }
            let s = vector::VXLAN;
            place(&mut w.spec, &mut w.mask, s, item);
            w.presence |= s.presence;
            w.inner = true;
            w.vlans = 0;
            return Ok(None);
        }
        ItemKind::Other(_) => unreachable!("refused above"),
    };
    Ok(Some(slot))
}

fn compile_encap(i: usize, def: &[RawItem], profile: &Profile) -> Result<EncapHeader, DeviceError> {
    let bad = |msg: &str| action_error(i, libc_errno::EINVAL, format!("VXLAN_ENCAP definition: {msg}"));
    let kinds: Vec<ItemKind> = def.iter().map(|d| d.kind).collect();
    let ipv6 = match kinds.as_slice() {
        [ItemKind::Eth, ItemKind::Ipv4, ItemKind::Udp, ItemKind::Vxlan] => false,
        [ItemKind::Eth, ItemKind::Ipv6, ItemKind::Udp, ItemKind::Vxlan] => true,
        _ => return Err(bad("must be ETH / IPV4|IPV6 / UDP / VXLAN / END")),
    };
    let len: usize = kinds.iter().map(|k| k.header_len()).sum();
    if len > profile.max_encap_bytes {
        return Err(action_error(
            i,
            libc_errno::ENOTSUP,
            format!("encapsulation of {len} bytes exceeds the profile's {} bytes", profile.max_encap_bytes),
        ));
    }
    let mut bytes = [0u8; 70];
    let mut at = 0;
    for d in def {
        let spec = d.spec.ok_or_else(|| bad(&format!("{} has no spec", d.kind.name())))?;
        let n = d.kind.header_len();
        bytes[at..at + n].copy_from_slice(&spec.hdr[..n]);
        at += n;
    }
    // Defaults a device fills in for zero fields (as mlx5 does).
    if ipv6 {
        if bytes[14] >> 4 == 0 {
            bytes[14] |= 0x60;
        }
        if bytes[14 + 7] == 0 {
            bytes[14 + 7] = 0xff;
        }
        bytes[14 + 6] = 17;
    } else {
        if bytes[14] == 0 {
            bytes[14] = 0x45;
        }
        if bytes[14 + 8] == 0 {
            bytes[14 + 8] = 64;
        }
        bytes[14 + 9] = 17;
    }
    let udp = if ipv6 { 54 } else { 34 };
    if bytes[udp + 2..udp + 4] == [0, 0] {
        bytes[udp + 2..udp + 4].copy_from_slice(&VXLAN_PORT.to_be_bytes());
    }
    if bytes[udp + 8] == 0 {
        bytes[udp + 8] = 0x08;
    }
    Ok(EncapHeader { bytes, len, ipv6 })
}

/// What a rule's actions compile to.
#[derive(Default)]
struct Actions {
    ops: Vec<Op>,
    fate: Option<Fate>,
    count: bool,
    age: Option<(u32, u64)>,
    decapped: bool,
    encapped: bool,
}

/// Compiles the action list in order, refusing what a device would
/// (unsupported, not in the profile, after the fate, after VXLAN_ENCAP).
/// `vlan`: whether the pattern says the frame is tagged (outer, inner).
fn compile_actions(
    raw: &RawRule,
    profile: &Profile,
    has_vxlan: bool,
    vlan: (bool, bool),
) -> Result<Actions, DeviceError> {
    let mut x = Actions::default();
    let mut i = 0;
    while i < raw.actions.len() {
        let a = &raw.actions[i];
        let Some(kind) = ActionKind::of(a) else {
            return Err(action_error(i, libc_errno::ENOTSUP, format!("{} is not supported", a.name())));
        };
        if !profile.actions.contains(&kind) {
            return Err(action_error(
                i,
                libc_errno::ENOTSUP,
                format!("{} is not in profile {:?}", a.name(), profile.name),
            ));
        }
        if x.fate.is_some() {
            return Err(action_error(i, libc_errno::EINVAL, format!("{} after the rule's fate", a.name())));
        }
        let tagged = if x.decapped { vlan.1 } else { vlan.0 };
        if x.encapped
            && !matches!(a, RawAction::Drop | RawAction::RepresentedPort(_) | RawAction::Count | RawAction::Age { .. })
        {
            return Err(action_error(i, libc_errno::ENOTSUP, format!("{} after VXLAN_ENCAP", a.name())));
        }
        i += x.apply(i, raw, profile, has_vxlan, tagged)?;
        i += 1;
    }
    Ok(x)
}

impl Actions {
    /// Compiles action `i`; returns how many of the following actions it
    /// took with it (OF_PUSH_VLAN takes its VID and PCP).
    fn apply(
        &mut self,
        i: usize,
        raw: &RawRule,
        profile: &Profile,
        has_vxlan: bool,
        tagged: bool,
    ) -> Result<usize, DeviceError> {
        let a = &raw.actions[i];
        let mut taken = 0;
        let needs_tag = |what: &str| {
            if tagged {
                Ok(())
            } else {
                Err(action_error(
                    i,
                    libc_errno::EINVAL,
                    format!("{what} needs a VLAN item (or has_vlan=1) in the pattern"),
                ))
            }
        };
        match a {
            RawAction::Count => self.count = true,
            RawAction::Age { timeout_s, context } => {
                if *timeout_s == 0 {
                    return Err(action_error(i, libc_errno::EINVAL, "AGE timeout 0".into()));
                }
                self.age = Some((*timeout_s, *context as u64));
            }
            RawAction::VxlanDecap => {
                if !has_vxlan {
                    return Err(action_error(
                        i,
                        libc_errno::EINVAL,
                        "VXLAN_DECAP needs a VXLAN item in the pattern".into(),
                    ));
                }
                if !self.ops.is_empty() || self.decapped {
                    return Err(action_error(i, libc_errno::EINVAL, "VXLAN_DECAP must come first".into()));
                }
                self.decapped = true;
                self.ops.push(Op::Decap);
            }
            RawAction::PopVlan => {
                needs_tag("OF_POP_VLAN")?;
                self.ops.push(Op::PopVlan);
            }
            RawAction::PushVlan { ethertype } => {
                let (op, more) = push_vlan(i, raw, *ethertype)?;
                self.ops.push(op);
                taken += more;
            }
            RawAction::SetVlanVid(vid) => {
                needs_tag("OF_SET_VLAN_VID")?;
                if *vid > 0x0fff {
                    return Err(action_error(i, libc_errno::EINVAL, format!("VLAN id {vid} > 4095")));
                }
                self.ops.push(Op::SetVid(*vid));
            }
            RawAction::SetVlanPcp(p) => {
                needs_tag("OF_SET_VLAN_PCP")?;
                self.ops.push(Op::SetPcp(*p & 7));
            }
            RawAction::SetMacSrc(m) => self.ops.push(Op::SetMacSrc(*m)),
            RawAction::SetMacDst(m) => self.ops.push(Op::SetMacDst(*m)),
            RawAction::VxlanEncap(def) => {
                self.ops.push(Op::Encap(Box::new(compile_encap(i, def, profile)?)));
                self.encapped = true;
            }
            RawAction::Drop => self.fate = Some(Fate::Drop),
            RawAction::RepresentedPort(p) => self.fate = Some(Fate::Output(*p)),
            RawAction::Jump(g) => {
                if *g <= raw.group {
                    return Err(action_error(
                        i,
                        libc_errno::EINVAL,
                        format!("JUMP to group {g} from group {}", raw.group),
                    ));
                }
                if self.encapped {
                    return Err(action_error(i, libc_errno::ENOTSUP, "JUMP after VXLAN_ENCAP".into()));
                }
                self.fate = Some(Fate::Jump(*g));
            }
            RawAction::Other(_) => unreachable!("refused above"),
        }
        Ok(taken)
    }
}

/// OF_PUSH_VLAN at `i` with the OF_SET_VLAN_VID (and OF_SET_VLAN_PCP)
/// after it, as one operation; with how many actions it took beyond `i`.
fn push_vlan(i: usize, raw: &RawRule, ethertype: u16) -> Result<(Op, usize), DeviceError> {
    let Some(RawAction::SetVlanVid(vid)) = raw.actions.get(i + 1) else {
        return Err(action_error(i, libc_errno::EINVAL, "OF_PUSH_VLAN must be followed by OF_SET_VLAN_VID".into()));
    };
    let (pcp, taken) = match raw.actions.get(i + 2) {
        Some(RawAction::SetVlanPcp(p)) => (*p, 2),
        _ => (0, 1),
    };
    if *vid > 0x0fff || pcp > 7 {
        return Err(action_error(i + taken, libc_errno::EINVAL, format!("VLAN id {vid} / PCP {pcp} out of range")));
    }
    Ok((Op::PushVlan { tpid: ethertype, tci: (u16::from(pcp) << 13) | vid }, taken))
}

/// Compiles a rule read from rte_flow arrays.
///
/// # Errors
/// The refusal a device would give: unsupported item or action (not in the
/// profile, or beyond what the model executes), invalid order or
/// configuration.
pub fn compile(raw: &RawRule, profile: &Profile) -> Result<Compiled, DeviceError> {
    if !raw.transfer || raw.ingress || raw.egress {
        return Err(DeviceError::new(
            "validate",
            libc_errno::ENOTSUP,
            ERROR_TYPE_ATTR_TRANSFER,
            "model: only transfer rules (the e-switch)",
        ));
    }
    if raw.group > profile.max_group {
        return Err(DeviceError::new(
            "validate",
            libc_errno::ENOTSUP,
            ERROR_TYPE_ATTR,
            format!("model: group {} > {}", raw.group, profile.max_group),
        ));
    }
    let w = compile_items(raw, profile)?;
    let has_vxlan = w.presence & vector::VXLAN.presence != 0;
    let vlan_outer = w.presence & (vector::VLAN[0].presence) != 0 || w.flags.0 & vector::FLAG_HAS_VLAN != 0;
    let vlan_inner = w.presence & (vector::inner(vector::VLAN[0]).presence) != 0
        || w.flags.0 & (vector::FLAG_HAS_VLAN << vector::INNER_FLAG_SHIFT) != 0;

    let acts = compile_actions(raw, profile, has_vxlan, (vlan_outer, vlan_inner))?;
    let Actions { ops, fate, count, age, .. } = acts;
    let Some(fate) = fate else {
        return Err(DeviceError::new(
            "validate",
            libc_errno::EINVAL,
            ERROR_TYPE_ACTION,
            "model: no fate action (REPRESENTED_PORT, DROP or JUMP)",
        ));
    };
    let mut spec = w.spec;
    let mut mask = w.mask;
    spec.set_meta(w.port.0, w.flags.0, w.presence);
    mask.set_meta(w.port.1, w.flags.1, w.presence);
    let vxlan_port = has_vxlan.then_some(w.udp_dst.unwrap_or(VXLAN_PORT));
    Ok(Compiled {
        group: raw.group,
        priority: raw.priority,
        spec,
        mask,
        ingress: (w.port.1 == 0xffff).then_some(w.port.0),
        vxlan_port,
        inner: w.presence >> vector::INNER_PRESENCE_SHIFT != 0,
        ops,
        fate,
        count,
        age,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rte_flow::lower;
    use crate::rule::*;

    fn rule(actions: Vec<HwAction>) -> HwRule {
        HwRule { pattern: Pattern { ingress: 3, tunnel: None, headers: Headers::default() }, priority: 0, actions }
    }

    #[test]
    fn refusals_name_item_or_action() {
        let p = Profile::default();
        let r = lower(&rule(vec![HwAction::PopVlan, HwAction::Output(1)]), 1, 0).expect("lower");
        let e = compile(&r.raw().expect("raw"), &p).expect_err("pop without a tag");
        assert!(e.message.contains("needs a VLAN item"), "{e}");
        let mut p2 = Profile::default();
        p2.actions.retain(|a| *a != ActionKind::SetMac);
        let r = lower(&rule(vec![HwAction::SetMacDst([2; 6]), HwAction::Output(1)]), 1, 0).expect("lower");
        let e = compile(&r.raw().expect("raw"), &p2).expect_err("not in profile");
        assert_eq!(e.kind, crate::device::ErrorKind::UnsupportedAction, "{e}");
        let ok = lower(&rule(vec![HwAction::Count, HwAction::Output(1)]), 1, 0).expect("lower");
        let c = compile(&ok.raw().expect("raw"), &p).expect("compiles");
        assert_eq!((c.ingress, c.fate, c.count), (Some(3), Fate::Output(1), true));
    }
}
