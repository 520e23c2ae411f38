//! Reading rte_flow arrays back: [`read`] copies what an attribute, an item
//! array and an action array say into plain values ([`RawRule`]): item types,
//! the header bytes of specs and masks in wire order, flag bits, action
//! configurations. The model e-switch executes those bytes; [`read_back`]
//! turns them into the vocabulary again (round-trip tests, diagnostics).
//!
//! Nothing is trusted: arrays are bounded, unknown types are kept as
//! `Other(n)` (the model refuses them), a missing END or a NULL configuration
//! is an error, never undefined behaviour.

use crate::rule::{
    EncapIp, EthMatch, Headers, HwAction, HwRule, Ipv4Match, Ipv4Prefix, Ipv6Match, Ipv6Prefix, L3Match, L4Match,
    Masked, Pattern, PortsMatch, TunnelMatch, VlanMatch, VxlanEncap,
};
use dpdk_sys as sys;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most pattern items (END included) the reader walks.
pub const MAX_ITEMS: usize = 32;
/// Most actions (END included) the reader walks.
pub const MAX_ACTIONS: usize = 32;
/// Most items of an encapsulation definition (END included).
pub const MAX_ENCAP_ITEMS: usize = 8;
/// Bytes of the largest header an item carries (IPv6).
pub const HDR_BYTES: usize = 40;

/// An item type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    RepresentedPort,
    Eth,
    Vlan,
    Ipv4,
    Ipv6,
    Udp,
    Tcp,
    Vxlan,
    /// Any other rte_flow item type, by number.
    Other(u32),
}

impl ItemKind {
    fn from_raw(t: sys::rte_flow_item_type) -> Option<Self> {
        Some(match t {
            sys::RTE_FLOW_ITEM_TYPE_END => return None,
            sys::RTE_FLOW_ITEM_TYPE_REPRESENTED_PORT => ItemKind::RepresentedPort,
            sys::RTE_FLOW_ITEM_TYPE_ETH => ItemKind::Eth,
            sys::RTE_FLOW_ITEM_TYPE_VLAN => ItemKind::Vlan,
            sys::RTE_FLOW_ITEM_TYPE_IPV4 => ItemKind::Ipv4,
            sys::RTE_FLOW_ITEM_TYPE_IPV6 => ItemKind::Ipv6,
            sys::RTE_FLOW_ITEM_TYPE_UDP => ItemKind::Udp,
            sys::RTE_FLOW_ITEM_TYPE_TCP => ItemKind::Tcp,
            sys::RTE_FLOW_ITEM_TYPE_VXLAN => ItemKind::Vxlan,
            other => ItemKind::Other(other),
        })
    }

    /// Header bytes the item compares (2 for a port id).
    pub fn header_len(self) -> usize {
        match self {
            ItemKind::RepresentedPort => 2,
            ItemKind::Eth => 14,
            ItemKind::Vlan => 4,
            ItemKind::Ipv4 => 20,
            ItemKind::Ipv6 => 40,
            ItemKind::Udp => 8,
            ItemKind::Tcp => 20,
            ItemKind::Vxlan => 8,
            ItemKind::Other(_) => 0,
        }
    }

    /// The name testpmd and the rte_flow documentation use.
    pub fn name(self) -> String {
        match self {
            ItemKind::RepresentedPort => "REPRESENTED_PORT".into(),
            ItemKind::Eth => "ETH".into(),
            ItemKind::Vlan => "VLAN".into(),
            ItemKind::Ipv4 => "IPV4".into(),
            ItemKind::Ipv6 => "IPV6".into(),
            ItemKind::Udp => "UDP".into(),
            ItemKind::Tcp => "TCP".into(),
            ItemKind::Vxlan => "VXLAN".into(),
            ItemKind::Other(n) => format!("item type {n}"),
        }
    }
}

/// Flag bits of items, as [`ItemBytes::flags`] holds them.
pub mod flags {
    /// ETH: the frame has at least one VLAN tag.
    pub const HAS_VLAN: u32 = 1;
    /// VLAN: another tag follows this one.
    pub const HAS_MORE_VLAN: u32 = 1;
    /// IPV6: any extension-header bit (hop, route, frag, auth, esp, dest,
    /// mobility, HIP, shim6), bits 0..9 in that order.
    pub const IPV6_EXT_ALL: u32 = 0x1ff;
}

/// What one spec or mask says: the header in wire order and the flag bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemBytes {
    pub hdr: [u8; HDR_BYTES],
    pub flags: u32,
}

impl ItemBytes {
    pub const ZERO: ItemBytes = ItemBytes { hdr: [0; HDR_BYTES], flags: 0 };
}

/// One pattern item: type, spec (None: match any such header), mask (the
/// type's default when the item gave none), and whether `last` was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawItem {
    pub kind: ItemKind,
    pub spec: Option<ItemBytes>,
    pub mask: ItemBytes,
    pub has_last: bool,
}

/// One action with its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawAction {
    Count,
    Age {
        timeout_s: u32,
        context: usize,
    },
    VxlanDecap,
    PopVlan,
    PushVlan {
        ethertype: u16,
    },
    SetVlanVid(u16),
    SetVlanPcp(u8),
    SetMacSrc([u8; 6]),
    SetMacDst([u8; 6]),
    /// The definition's items, END excluded.
    VxlanEncap(Vec<RawItem>),
    Drop,
    RepresentedPort(u16),
    Jump(u32),
    Other(u32),
}

impl RawAction {
    /// The rte_flow name.
    pub fn name(&self) -> String {
        match self {
            RawAction::Count => "COUNT".into(),
            RawAction::Age { .. } => "AGE".into(),
            RawAction::VxlanDecap => "VXLAN_DECAP".into(),
            RawAction::PopVlan => "OF_POP_VLAN".into(),
            RawAction::PushVlan { .. } => "OF_PUSH_VLAN".into(),
            RawAction::SetVlanVid(_) => "OF_SET_VLAN_VID".into(),
            RawAction::SetVlanPcp(_) => "OF_SET_VLAN_PCP".into(),
            RawAction::SetMacSrc(_) => "SET_MAC_SRC".into(),
            RawAction::SetMacDst(_) => "SET_MAC_DST".into(),
            RawAction::VxlanEncap(_) => "VXLAN_ENCAP".into(),
            RawAction::Drop => "DROP".into(),
            RawAction::RepresentedPort(_) => "REPRESENTED_PORT".into(),
            RawAction::Jump(_) => "JUMP".into(),
            RawAction::Other(n) => format!("action type {n}"),
        }
    }
}

/// An attribute, a pattern and actions, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRule {
    pub group: u32,
    pub priority: u32,
    pub ingress: bool,
    pub egress: bool,
    pub transfer: bool,
    /// END excluded.
    pub items: Vec<RawItem>,
    /// END excluded.
    pub actions: Vec<RawAction>,
}

/// Where a read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Attr,
    Item(usize),
    Action(usize),
}

/// Why arrays could not be read (or read back into the vocabulary).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", match .place { Place::Attr => "attribute".to_owned(), Place::Item(i) => format!("item {i}"), Place::Action(i) => format!("action {i}") })]
pub struct ReadError {
    pub place: Place,
    pub message: String,
}

fn err<T>(place: Place, message: impl Into<String>) -> Result<T, ReadError> {
    Err(ReadError { place, message: message.into() })
}

/// Copies the first `len` bytes of a `T` (a header in wire order).
fn header_of<T>(value: &T, len: usize) -> [u8; HDR_BYTES] {
    let mut out = [0u8; HDR_BYTES];
    let len = len.min(HDR_BYTES).min(std::mem::size_of::<T>());
    // SAFETY: `value` is a valid `T` of at least `len` bytes (checked above);
    // the bindgen item types are plain old data whose leading bytes are the
    // header in wire order.
    let bytes = unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), len) };
    out[..len].copy_from_slice(bytes);
    out
}

/// Reads a `T` from a possibly unaligned pointer, or `None` for NULL.
///
/// # Safety
/// A non-null `p` must point to a readable `T`.
unsafe fn read_opt<T: Copy>(p: *const std::ffi::c_void) -> Option<T> {
    if p.is_null() {
        None
    } else {
        // SAFETY: guaranteed by the caller.
        Some(unsafe { std::ptr::read_unaligned(p.cast::<T>()) })
    }
}

/// The bytes of a spec or mask of item type `kind` at `p`.
///
/// # Safety
/// A non-null `p` must point to a readable value of the item type's struct.
unsafe fn item_bytes(kind: ItemKind, p: *const std::ffi::c_void) -> Option<ItemBytes> {
    let len = kind.header_len();
    // SAFETY: every arm reads `p` as the struct of `kind`, which the caller
    // guarantees it points to when non-null.
    unsafe {
        Some(match kind {
            ItemKind::RepresentedPort => {
                let v = read_opt::<sys::rte_flow_item_ethdev>(p)?;
                let mut hdr = [0u8; HDR_BYTES];
                hdr[..2].copy_from_slice(&v.port_id.to_be_bytes());
                ItemBytes { hdr, flags: 0 }
            }
            ItemKind::Eth => {
                let v = read_opt::<sys::rte_flow_item_eth>(p)?;
                ItemBytes { hdr: header_of(&v, len), flags: v.has_vlan() & 1 }
            }
            ItemKind::Vlan => {
                let v = read_opt::<sys::rte_flow_item_vlan>(p)?;
                ItemBytes { hdr: header_of(&v, len), flags: v.has_more_vlan() & 1 }
            }
            ItemKind::Ipv4 => {
                let v = read_opt::<sys::rte_flow_item_ipv4>(p)?;
                ItemBytes { hdr: header_of(&v, len), flags: 0 }
            }
            ItemKind::Ipv6 => {
                let v = read_opt::<sys::rte_flow_item_ipv6>(p)?;
                let ext = [
                    v.has_hop_ext(),
                    v.has_route_ext(),
                    v.has_frag_ext(),
                    v.has_auth_ext(),
                    v.has_esp_ext(),
                    v.has_dest_ext(),
                    v.has_mobil_ext(),
                    v.has_hip_ext(),
                    v.has_shim6_ext(),
                ];
                let flags = ext.iter().enumerate().fold(0u32, |acc, (i, b)| acc | ((b & 1) << i));
                ItemBytes { hdr: header_of(&v, len), flags }
            }
            ItemKind::Udp => ItemBytes { hdr: header_of(&read_opt::<sys::rte_flow_item_udp>(p)?, len), flags: 0 },
            ItemKind::Tcp => ItemBytes { hdr: header_of(&read_opt::<sys::rte_flow_item_tcp>(p)?, len), flags: 0 },
            ItemKind::Vxlan => ItemBytes { hdr: header_of(&read_opt::<sys::rte_flow_item_vxlan>(p)?, len), flags: 0 },
            ItemKind::Other(_) => return None,
        })
    }
}

/// rte_flow's default mask of an item type (used when an item has none).
pub fn default_mask(kind: ItemKind) -> ItemBytes {
    let mut m = ItemBytes::ZERO;
    match kind {
        ItemKind::RepresentedPort => m.hdr[..2].copy_from_slice(&[0xff, 0xff]),
        ItemKind::Eth => m.hdr[..12].copy_from_slice(&[0xff; 12]),
        ItemKind::Vlan => m.hdr[..2].copy_from_slice(&[0x0f, 0xff]),
        ItemKind::Ipv4 => m.hdr[12..20].copy_from_slice(&[0xff; 8]),
        ItemKind::Ipv6 => m.hdr[8..40].copy_from_slice(&[0xff; 32]),
        ItemKind::Udp | ItemKind::Tcp => m.hdr[..4].copy_from_slice(&[0xff; 4]),
        ItemKind::Vxlan => m.hdr[4..7].copy_from_slice(&[0xff; 3]),
        ItemKind::Other(_) => {}
    }
    m
}

/// Reads an END-terminated item array.
///
/// # Safety
/// `items` must point to an array of `rte_flow_item` that is END-terminated
/// or at least `max` long; each item's non-null spec and mask must point to a
/// readable struct of the type its item type names (any pointer may be NULL).
unsafe fn read_items(
    items: *const sys::rte_flow_item,
    max: usize,
    place: impl Fn(usize) -> Place,
) -> Result<Vec<RawItem>, ReadError> {
    if items.is_null() {
        return err(place(0), "NULL item array");
    }
    let mut out = Vec::with_capacity(8);
    for i in 0..max {
        // SAFETY: the array is END-terminated or at least `max` long.
        let item = unsafe { std::ptr::read_unaligned(items.add(i)) };
        let Some(kind) = ItemKind::from_raw(item.type_) else { return Ok(out) };
        if let ItemKind::Other(_) = kind {
            out.push(RawItem { kind, spec: None, mask: ItemBytes::ZERO, has_last: !item.last.is_null() });
            continue;
        }
        // SAFETY: spec and mask point to the struct of this item type.
        let spec = unsafe { item_bytes(kind, item.spec) };
        // SAFETY: as above.
        let mask = unsafe { item_bytes(kind, item.mask) }.unwrap_or_else(|| default_mask(kind));
        out.push(RawItem { kind, spec, mask, has_last: !item.last.is_null() });
    }
    err(place(max), format!("no END item within {max} items"))
}

/// Reads an attribute, a pattern and an action list.
///
/// # Safety
/// `attr` must be NULL or point to an `rte_flow_attr`; `items` and `actions`
/// must be END-terminated arrays (or at least [`MAX_ITEMS`] / [`MAX_ACTIONS`]
/// long), and every non-null spec, mask and configuration must point to a
/// readable struct of the type its item or action type names; a VXLAN_ENCAP
/// definition must satisfy the same rule for items.
pub unsafe fn read(
    attr: *const sys::rte_flow_attr,
    items: *const sys::rte_flow_item,
    actions: *const sys::rte_flow_action,
) -> Result<RawRule, ReadError> {
    // SAFETY: NULL or a valid attribute, by the contract.
    let Some(a) = (unsafe { read_opt::<sys::rte_flow_attr>(attr.cast()) }) else {
        return err(Place::Attr, "NULL attribute");
    };
    // SAFETY: by the contract.
    let items = unsafe { read_items(items, MAX_ITEMS, Place::Item) }?;
    // SAFETY: by the contract.
    let actions = unsafe { read_actions(actions) }?;
    Ok(RawRule {
        group: a.group,
        priority: a.priority,
        ingress: a.ingress() != 0,
        egress: a.egress() != 0,
        transfer: a.transfer() != 0,
        items,
        actions,
    })
}

/// # Safety
/// As [`read`] for the action array.
unsafe fn read_actions(actions: *const sys::rte_flow_action) -> Result<Vec<RawAction>, ReadError> {
    if actions.is_null() {
        return err(Place::Action(0), "NULL action array");
    }
    let mut out = Vec::with_capacity(8);
    for i in 0..MAX_ACTIONS {
        // SAFETY: the array is END-terminated or MAX_ACTIONS long.
        let a = unsafe { std::ptr::read_unaligned(actions.add(i)) };
        let place = Place::Action(i);
        let need = |what: &str| ReadError { place, message: format!("{what} needs a configuration (conf is NULL)") };
        // SAFETY: each arm reads a non-null conf as the struct of this
        // action type, which the contract guarantees it points to.
        let action = unsafe {
            match a.type_ {
                sys::RTE_FLOW_ACTION_TYPE_END => return Ok(out),
                sys::RTE_FLOW_ACTION_TYPE_COUNT => RawAction::Count,
                sys::RTE_FLOW_ACTION_TYPE_AGE => {
                    let c = read_opt::<sys::rte_flow_action_age>(a.conf).ok_or_else(|| need("AGE"))?;
                    RawAction::Age { timeout_s: c.timeout(), context: c.context as usize }
                }
                sys::RTE_FLOW_ACTION_TYPE_VXLAN_DECAP => RawAction::VxlanDecap,
                sys::RTE_FLOW_ACTION_TYPE_OF_POP_VLAN => RawAction::PopVlan,
                sys::RTE_FLOW_ACTION_TYPE_OF_PUSH_VLAN => {
                    let c =
                        read_opt::<sys::rte_flow_action_of_push_vlan>(a.conf).ok_or_else(|| need("OF_PUSH_VLAN"))?;
                    RawAction::PushVlan { ethertype: u16::from_be(c.ethertype) }
                }
                sys::RTE_FLOW_ACTION_TYPE_OF_SET_VLAN_VID => {
                    let c = read_opt::<sys::rte_flow_action_of_set_vlan_vid>(a.conf)
                        .ok_or_else(|| need("OF_SET_VLAN_VID"))?;
                    RawAction::SetVlanVid(u16::from_be(c.vlan_vid))
                }
                sys::RTE_FLOW_ACTION_TYPE_OF_SET_VLAN_PCP => {
                    let c = read_opt::<sys::rte_flow_action_of_set_vlan_pcp>(a.conf)
                        .ok_or_else(|| need("OF_SET_VLAN_PCP"))?;
                    RawAction::SetVlanPcp(c.vlan_pcp)
                }
                sys::RTE_FLOW_ACTION_TYPE_SET_MAC_SRC => RawAction::SetMacSrc(
                    read_opt::<sys::rte_flow_action_set_mac>(a.conf).ok_or_else(|| need("SET_MAC_SRC"))?.mac_addr,
                ),
                sys::RTE_FLOW_ACTION_TYPE_SET_MAC_DST => RawAction::SetMacDst(
                    read_opt::<sys::rte_flow_action_set_mac>(a.conf).ok_or_else(|| need("SET_MAC_DST"))?.mac_addr,
                ),
                sys::RTE_FLOW_ACTION_TYPE_VXLAN_ENCAP => {
                    let c = read_opt::<sys::rte_flow_action_vxlan_encap>(a.conf).ok_or_else(|| need("VXLAN_ENCAP"))?;
                    let def = read_items(c.definition, MAX_ENCAP_ITEMS, |_| place)
                        .map_err(|e| ReadError { place, message: format!("encap definition: {}", e.message) })?;
                    RawAction::VxlanEncap(def)
                }
                sys::RTE_FLOW_ACTION_TYPE_DROP => RawAction::Drop,
                sys::RTE_FLOW_ACTION_TYPE_REPRESENTED_PORT => RawAction::RepresentedPort(
                    read_opt::<sys::rte_flow_action_ethdev>(a.conf).ok_or_else(|| need("REPRESENTED_PORT"))?.port_id,
                ),
                sys::RTE_FLOW_ACTION_TYPE_JUMP => {
                    RawAction::Jump(read_opt::<sys::rte_flow_action_jump>(a.conf).ok_or_else(|| need("JUMP"))?.group)
                }
                other => RawAction::Other(other),
            }
        };
        out.push(action);
    }
    err(Place::Action(MAX_ACTIONS), format!("no END action within {MAX_ACTIONS} actions"))
}

// ---- Read back into the vocabulary -------------------------------------------------------

/// Spec & mask of an item (no spec: everything zero).
fn masked(item: &RawItem) -> (ItemBytes, ItemBytes) {
    match item.spec {
        None => (ItemBytes::ZERO, ItemBytes::ZERO),
        Some(s) => {
            let mut v = s;
            for (b, m) in v.hdr.iter_mut().zip(item.mask.hdr) {
                *b &= m;
            }
            v.flags &= item.mask.flags;
            (v, ItemBytes { flags: item.mask.flags, ..item.mask })
        }
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn mac(b: &[u8], at: usize) -> [u8; 6] {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    m
}

struct Reader<'a> {
    items: &'a [RawItem],
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<ItemKind> {
        self.items.get(self.at).map(|i| i.kind)
    }

    fn place(&self) -> Place {
        Place::Item(self.at)
    }

    fn take(&mut self, kind: ItemKind) -> Result<(ItemBytes, ItemBytes), ReadError> {
        match self.items.get(self.at) {
            Some(item) if item.kind == kind => {
                if item.has_last {
                    return err(self.place(), "ranges (last) are not in the vocabulary");
                }
                self.at += 1;
                Ok(masked(item))
            }
            Some(item) => err(self.place(), format!("expected {}, found {}", kind.name(), item.kind.name())),
            None => err(self.place(), format!("expected {}, found the end", kind.name())),
        }
    }

    /// Fails unless the mask bytes `range` are all zero.
    fn unmasked(&self, m: &ItemBytes, range: std::ops::Range<usize>, what: &str) -> Result<(), ReadError> {
        if m.hdr[range].iter().any(|&b| b != 0) {
            return err(Place::Item(self.at - 1), format!("{what} is matched, which the vocabulary cannot say"));
        }
        Ok(())
    }
}

fn exact_or_none16(v: u16, m: u16, what: &str, place: Place) -> Result<Option<u16>, ReadError> {
    match m {
        0 => Ok(None),
        0xffff => Ok(Some(v)),
        _ => err(place, format!("{what}: partial mask {m:#06x}")),
    }
}

fn exact_or_none8(v: u8, m: u8, what: &str, place: Place) -> Result<Option<u8>, ReadError> {
    match m {
        0 => Ok(None),
        0xff => Ok(Some(v)),
        _ => err(place, format!("{what}: partial mask {m:#04x}")),
    }
}

fn mac_masked(v: [u8; 6], m: [u8; 6]) -> Option<Masked<[u8; 6]>> {
    (m != [0; 6]).then_some(Masked { value: v, mask: m })
}

fn prefix_len32(m: u32, place: Place, what: &str) -> Result<u8, ReadError> {
    if m.leading_ones() + m.trailing_zeros() != 32 {
        return err(place, format!("{what}: mask {m:#010x} is not a prefix"));
    }
    Ok(m.leading_ones() as u8)
}

fn prefix_len128(m: u128, place: Place, what: &str) -> Result<u8, ReadError> {
    if m.leading_ones() + m.trailing_zeros() != 128 {
        return err(place, format!("{what}: mask is not a prefix"));
    }
    Ok(m.leading_ones() as u8)
}

fn dscp_ecn(v: u8, m: u8, place: Place) -> Result<(Option<u8>, Option<u8>), ReadError> {
    let dscp = match m & 0xfc {
        0 => None,
        0xfc => Some(v >> 2),
        _ => return err(place, format!("DSCP: partial mask {m:#04x}")),
    };
    let ecn = match m & 0x03 {
        0 => None,
        0x03 => Some(v & 3),
        _ => return err(place, format!("ECN: partial mask {m:#04x}")),
    };
    Ok((dscp, ecn))
}

fn read_eth(r: &mut Reader<'_>) -> Result<EthMatch, ReadError> {
    let (v, m) = r.take(ItemKind::Eth)?;
    let place = Place::Item(r.at - 1);
    Ok(EthMatch {
        dst: mac_masked(mac(&v.hdr, 0), mac(&m.hdr, 0)),
        src: mac_masked(mac(&v.hdr, 6), mac(&m.hdr, 6)),
        ether_type: exact_or_none16(be16(&v.hdr, 12), be16(&m.hdr, 12), "eth type", place)?,
        tagged: (m.flags & 1 != 0).then_some(v.flags & 1 != 0),
    })
}

fn read_vlan(r: &mut Reader<'_>) -> Result<VlanMatch, ReadError> {
    let (v, m) = r.take(ItemKind::Vlan)?;
    let place = Place::Item(r.at - 1);
    let (tci, tm) = (be16(&v.hdr, 0), be16(&m.hdr, 0));
    if tm & 0x1000 != 0 {
        return err(place, "vlan: the DEI bit is matched");
    }
    let vid = match tm & 0x0fff {
        0 => None,
        0x0fff => Some(tci & 0x0fff),
        x => return err(place, format!("vlan id: partial mask {x:#06x}")),
    };
    let pcp = match tm & 0xe000 {
        0 => None,
        0xe000 => Some((tci >> 13) as u8),
        x => return err(place, format!("vlan pcp: partial mask {x:#06x}")),
    };
    Ok(VlanMatch {
        vid,
        pcp,
        inner_type: exact_or_none16(be16(&v.hdr, 2), be16(&m.hdr, 2), "vlan inner type", place)?,
        more_tags: (m.flags & 1 != 0).then_some(v.flags & 1 != 0),
    })
}

fn read_ipv4(r: &mut Reader<'_>) -> Result<Ipv4Match, ReadError> {
    let (v, m) = r.take(ItemKind::Ipv4)?;
    let place = Place::Item(r.at - 1);
    r.unmasked(&m, 0..1, "ipv4 version/IHL")?;
    r.unmasked(&m, 2..6, "ipv4 total length / packet id")?;
    r.unmasked(&m, 10..12, "ipv4 checksum")?;
    let prefix = |at: usize, what: &str| -> Result<Option<Ipv4Prefix>, ReadError> {
        let mask = be32(&m.hdr, at);
        if mask == 0 {
            return Ok(None);
        }
        Ok(Some(Ipv4Prefix { addr: Ipv4Addr::from(be32(&v.hdr, at)), len: prefix_len32(mask, place, what)? }))
    };
    let (dscp, ecn) = dscp_ecn(v.hdr[1], m.hdr[1], place)?;
    let fragment = match (be16(&v.hdr, 6), be16(&m.hdr, 6)) {
        (_, 0) => None,
        (0, 0x3fff) => Some(false),
        (x, y) => return err(place, format!("ipv4 fragment_offset {x:#06x}/{y:#06x} is not \"not a fragment\"")),
    };
    Ok(Ipv4Match {
        src: prefix(12, "ipv4 src")?,
        dst: prefix(16, "ipv4 dst")?,
        proto: exact_or_none8(v.hdr[9], m.hdr[9], "ipv4 proto", place)?,
        dscp,
        ecn,
        ttl: exact_or_none8(v.hdr[8], m.hdr[8], "ipv4 ttl", place)?,
        fragment,
    })
}

fn read_ipv6(r: &mut Reader<'_>) -> Result<Ipv6Match, ReadError> {
    let (v, m) = r.take(ItemKind::Ipv6)?;
    let place = Place::Item(r.at - 1);
    if m.flags != 0 {
        return err(place, "ipv6 extension-header flags are matched");
    }
    let (vtc, vtcm) = (be32(&v.hdr, 0), be32(&m.hdr, 0));
    if vtcm & 0xf00f_ffff != 0 {
        return err(place, "ipv6 version or flow label is matched");
    }
    r.unmasked(&m, 4..6, "ipv6 payload length")?;
    let (dscp, ecn) = dscp_ecn((vtc >> 20) as u8, (vtcm >> 20) as u8, place)?;
    let addr = |b: &[u8], at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[at..at + 16]);
        u128::from_be_bytes(a)
    };
    let prefix = |at: usize, what: &str| -> Result<Option<Ipv6Prefix>, ReadError> {
        let mask = addr(&m.hdr, at);
        if mask == 0 {
            return Ok(None);
        }
        Ok(Some(Ipv6Prefix { addr: Ipv6Addr::from(addr(&v.hdr, at)), len: prefix_len128(mask, place, what)? }))
    };
    Ok(Ipv6Match {
        src: prefix(8, "ipv6 src")?,
        dst: prefix(24, "ipv6 dst")?,
        next_header: exact_or_none8(v.hdr[6], m.hdr[6], "ipv6 next header", place)?,
        dscp,
        ecn,
        hop_limit: exact_or_none8(v.hdr[7], m.hdr[7], "ipv6 hop limit", place)?,
    })
}

fn read_ports(v: &ItemBytes, m: &ItemBytes) -> PortsMatch {
    let port = |at: usize| {
        let mask = be16(&m.hdr, at);
        (mask != 0).then(|| Masked { value: be16(&v.hdr, at), mask })
    };
    PortsMatch { src: port(0), dst: port(2) }
}

fn read_headers(r: &mut Reader<'_>) -> Result<Headers, ReadError> {
    let mut h = Headers::default();
    if r.peek().is_none() {
        return Ok(h);
    }
    h.eth = read_eth(r)?;
    while r.peek() == Some(ItemKind::Vlan) {
        h.vlans.push(read_vlan(r)?);
    }
    match r.peek() {
        Some(ItemKind::Ipv4) => h.l3 = Some(L3Match::Ipv4(read_ipv4(r)?)),
        Some(ItemKind::Ipv6) => h.l3 = Some(L3Match::Ipv6(read_ipv6(r)?)),
        _ => {}
    }
    match r.peek() {
        Some(ItemKind::Udp) => {
            let (v, m) = r.take(ItemKind::Udp)?;
            r.unmasked(&m, 4..8, "udp length/checksum")?;
            h.l4 = Some(L4Match::Udp(read_ports(&v, &m)));
        }
        Some(ItemKind::Tcp) => {
            let (v, m) = r.take(ItemKind::Tcp)?;
            r.unmasked(&m, 4..13, "tcp sequence/ack/data offset")?;
            r.unmasked(&m, 14..20, "tcp window/checksum/urgent pointer")?;
            let flags = (m.hdr[13] != 0).then_some(Masked { value: v.hdr[13], mask: m.hdr[13] });
            h.l4 = Some(L4Match::Tcp { ports: read_ports(&v, &m), flags });
        }
        _ => {}
    }
    Ok(h)
}

fn read_tunnel(r: &mut Reader<'_>) -> Result<TunnelMatch, ReadError> {
    let eth = read_eth(r)?;
    let place = Place::Item(r.at - 1);
    if eth.src.is_some() || eth.ether_type.is_some() || eth.tagged.is_some() {
        return err(place, "outer eth: only the destination can be matched");
    }
    let eth_dst = match eth.dst {
        None => None,
        Some(d) if d.mask == [0xff; 6] => Some(d.value),
        Some(_) => return err(place, "outer eth dst: partial mask"),
    };
    let (src, dst) = match r.peek() {
        Some(ItemKind::Ipv4) => {
            let ip = read_ipv4(r)?;
            match (ip, ip.src, ip.dst) {
                (Ipv4Match { proto: None, dscp: None, ecn: None, ttl: None, fragment: None, .. }, Some(s), Some(d))
                    if s.len == 32 && d.len == 32 =>
                {
                    (IpAddr::V4(s.addr), IpAddr::V4(d.addr))
                }
                _ => return err(Place::Item(r.at - 1), "outer ipv4: exactly source and destination"),
            }
        }
        Some(ItemKind::Ipv6) => {
            let ip = read_ipv6(r)?;
            match (ip, ip.src, ip.dst) {
                (Ipv6Match { next_header: None, dscp: None, ecn: None, hop_limit: None, .. }, Some(s), Some(d))
                    if s.len == 128 && d.len == 128 =>
                {
                    (IpAddr::V6(s.addr), IpAddr::V6(d.addr))
                }
                _ => return err(Place::Item(r.at - 1), "outer ipv6: exactly source and destination"),
            }
        }
        _ => return err(r.place(), "outer IPV4 or IPV6 expected"),
    };
    let (uv, um) = r.take(ItemKind::Udp)?;
    if be16(&um.hdr, 0) != 0 || be16(&um.hdr, 2) != 0xffff {
        return err(Place::Item(r.at - 1), "outer udp: exactly the destination port");
    }
    r.unmasked(&um, 4..8, "outer udp length/checksum")?;
    let (vv, vm) = r.take(ItemKind::Vxlan)?;
    if vm.hdr[..4] != [0; 4] || vm.hdr[7] != 0 || vm.hdr[4..7] != [0xff; 3] {
        return err(Place::Item(r.at - 1), "vxlan: exactly the VNI");
    }
    let vni = u32::from_be_bytes([0, vv.hdr[4], vv.hdr[5], vv.hdr[6]]);
    Ok(TunnelMatch { eth_dst, src, dst, udp_dst: be16(&uv.hdr, 2), vni })
}

fn read_encap(def: &[RawItem], place: Place) -> Result<VxlanEncap, ReadError> {
    let spec = |i: usize, kind: ItemKind| -> Result<ItemBytes, ReadError> {
        match def.get(i) {
            Some(item) if item.kind == kind => {
                item.spec.ok_or_else(|| ReadError { place, message: format!("encap {}: no spec", kind.name()) })
            }
            _ => err(place, format!("encap definition item {i} must be {}", kind.name())),
        }
    };
    let eth = spec(0, ItemKind::Eth)?;
    let (ip, l4) = match def.get(1).map(|i| i.kind) {
        Some(ItemKind::Ipv4) => {
            let h = spec(1, ItemKind::Ipv4)?.hdr;
            let ip = EncapIp::V4 {
                src: Ipv4Addr::from(be32(&h, 12)),
                dst: Ipv4Addr::from(be32(&h, 16)),
                tos: h[1],
                ttl: h[8],
                df: be16(&h, 6) & 0x4000 != 0,
            };
            (ip, 2)
        }
        Some(ItemKind::Ipv6) => {
            let h = spec(1, ItemKind::Ipv6)?.hdr;
            let a = |at: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&h[at..at + 16]);
                Ipv6Addr::from(b)
            };
            (EncapIp::V6 { src: a(8), dst: a(24), traffic_class: (be32(&h, 0) >> 20) as u8, hop_limit: h[7] }, 2)
        }
        _ => return err(place, "encap definition item 1 must be IPV4 or IPV6"),
    };
    let udp = spec(l4, ItemKind::Udp)?.hdr;
    let vx = spec(l4 + 1, ItemKind::Vxlan)?.hdr;
    if def.len() != l4 + 2 {
        return err(place, "encap definition must end after VXLAN");
    }
    Ok(VxlanEncap {
        eth_src: mac(&eth.hdr, 6),
        eth_dst: mac(&eth.hdr, 0),
        ip,
        udp_dst: be16(&udp, 2),
        vni: u32::from_be_bytes([0, vx[4], vx[5], vx[6]]),
    })
}

fn read_back_actions(raw: &[RawAction]) -> Result<Vec<HwAction>, ReadError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let place = Place::Action(i);
        let a = match &raw[i] {
            RawAction::Count => HwAction::Count,
            RawAction::Age { timeout_s, .. } => HwAction::Age { timeout_s: *timeout_s },
            RawAction::VxlanDecap => HwAction::VxlanDecap,
            RawAction::PopVlan => HwAction::PopVlan,
            RawAction::PushVlan { ethertype } => match (raw.get(i + 1), raw.get(i + 2)) {
                (Some(RawAction::SetVlanVid(vid)), Some(RawAction::SetVlanPcp(pcp))) => {
                    i += 2;
                    HwAction::PushVlan { ethertype: *ethertype, vid: *vid, pcp: *pcp }
                }
                _ => return err(place, "OF_PUSH_VLAN must be followed by OF_SET_VLAN_VID and OF_SET_VLAN_PCP"),
            },
            RawAction::SetVlanVid(vid) => HwAction::SetVlanVid(*vid),
            RawAction::SetVlanPcp(_) => return err(place, "OF_SET_VLAN_PCP alone is not in the vocabulary"),
            RawAction::SetMacSrc(m) => HwAction::SetMacSrc(*m),
            RawAction::SetMacDst(m) => HwAction::SetMacDst(*m),
            RawAction::VxlanEncap(def) => HwAction::VxlanEncap(read_encap(def, place)?),
            RawAction::Drop => HwAction::Drop,
            RawAction::RepresentedPort(p) => HwAction::Output(*p),
            RawAction::Jump(g) => HwAction::Jump { group: *g },
            RawAction::Other(n) => return err(place, format!("action type {n} is not in the vocabulary")),
        };
        out.push(a);
        i += 1;
    }
    Ok(out)
}

/// The vocabulary rule a [`RawRule`] says, when it says one.
///
/// # Errors
/// [`ReadError`] naming the item or action the vocabulary cannot express.
pub fn read_back(raw: &RawRule) -> Result<HwRule, ReadError> {
    if !raw.transfer || raw.ingress || raw.egress {
        return err(Place::Attr, "only transfer rules (transfer=1, ingress=0, egress=0) are in the vocabulary");
    }
    let mut r = Reader { items: &raw.items, at: 0 };
    let (pv, pm) = r.take(ItemKind::RepresentedPort)?;
    if pm.hdr[..2] != [0xff, 0xff] {
        return err(Place::Item(0), "REPRESENTED_PORT must match the whole port id");
    }
    let ingress = be16(&pv.hdr, 0);
    let tunnel = if raw.items.iter().any(|i| i.kind == ItemKind::Vxlan) { Some(read_tunnel(&mut r)?) } else { None };
    let headers = read_headers(&mut r)?;
    if let Some(rest) = raw.items.get(r.at) {
        return err(r.place(), format!("{} is not expected here", rest.kind.name()));
    }
    let rule = HwRule {
        pattern: Pattern { ingress, tunnel, headers },
        priority: raw.priority,
        actions: read_back_actions(&raw.actions)?,
    };
    rule.validate().map_err(|e| ReadError { place: Place::Attr, message: format!("not a valid rule: {e}") })?;
    Ok(rule)
}
