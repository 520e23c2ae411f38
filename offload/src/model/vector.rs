//! The model's match vector: a packet's headers copied into fixed slots, so a
//! rule is "vector & mask == spec & mask" over a few 64-bit words.
//!
//! Rules are compiled into the same layout from the header bytes of their
//! rte_flow items (see `compile`), so what a rule compares is exactly the
//! bytes its specs and masks hold, at the place the item's header sits in
//! the packet.
//!
//! | bytes | slot |
//! |---|---|
//! | 0..8 | meta: port (16 bits), flags (16), presence (32) |
//! | 8..22 | Ethernet |
//! | 24..28, 28..32 | VLAN tags 0 and 1 |
//! | 32..72 | IPv4 (first 20 bytes) or IPv6 |
//! | 72..92 | UDP (8) or TCP (20) |
//! | 96..104 | VXLAN |
//! | 104..118, 120..128, 128..168, 168..188 | the inner Ethernet, tags, IP, L4 |
//!
//! The packet parser locates layers the way an e-switch does: up to two VLAN
//! tags, then IPv4 or IPv6 by EtherType, then UDP or TCP by protocol (not in
//! a non-first fragment, not behind IPv6 extension headers), then VXLAN when
//! the UDP destination port is one a rule's VXLAN item asked for.

/// Vector length in bytes.
pub const BYTES: usize = 192;
/// Vector length in 64-bit words.
pub const WORDS: usize = BYTES / 8;

/// Where each header goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub offset: usize,
    pub presence: u32,
}

pub const ETH: Slot = Slot { offset: 8, presence: 1 };
pub const VLAN: [Slot; 2] = [Slot { offset: 24, presence: 1 << 1 }, Slot { offset: 28, presence: 1 << 2 }];
pub const IPV4: Slot = Slot { offset: 32, presence: 1 << 3 };
pub const IPV6: Slot = Slot { offset: 32, presence: 1 << 4 };
pub const UDP: Slot = Slot { offset: 72, presence: 1 << 5 };
pub const TCP: Slot = Slot { offset: 72, presence: 1 << 6 };
pub const VXLAN: Slot = Slot { offset: 96, presence: 1 << 7 };
/// Inner slots: the outer ones shifted by this many bytes, presence by 8 bits.
pub const INNER_SHIFT: usize = 96;
pub const INNER_PRESENCE_SHIFT: u32 = 8;

/// Flag bits (bits 16..32 of the meta word, i.e. `flags << 16`).
pub const FLAG_HAS_VLAN: u32 = 1;
pub const FLAG_VLAN_MORE: [u32; 2] = [1 << 1, 1 << 2];
/// Inner flags: the outer ones shifted by this many bits.
pub const INNER_FLAG_SHIFT: u32 = 3;

/// A slot moved to the inner headers.
pub const fn inner(s: Slot) -> Slot {
    Slot { offset: s.offset + INNER_SHIFT, presence: s.presence << INNER_PRESENCE_SHIFT }
}

/// A vector (packet, spec or mask).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Vector(pub [u8; BYTES]);

impl Default for Vector {
    fn default() -> Self {
        Self([0; BYTES])
    }
}

impl std::fmt::Debug for Vector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nz: Vec<String> =
            (0..WORDS).filter(|&i| self.word(i) != 0).map(|i| format!("{i}:{:016x}", self.word(i))).collect();
        write!(f, "Vector[{}]", nz.join(" "))
    }
}

impl Vector {
    #[inline(always)]
    pub fn word(&self, i: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.0[i * 8..i * 8 + 8]);
        u64::from_ne_bytes(w)
    }

    /// The meta word's parts.
    pub fn set_meta(&mut self, port: u16, flags: u32, presence: u32) {
        let w = u64::from(port) | (u64::from(flags & 0xffff) << 16) | (u64::from(presence) << 32);
        self.0[..8].copy_from_slice(&w.to_ne_bytes());
    }

    pub fn meta(&self) -> (u16, u32, u32) {
        let w = self.word(0);
        (w as u16, ((w >> 16) & 0xffff) as u32, (w >> 32) as u32)
    }

    fn put(&mut self, at: usize, bytes: &[u8]) {
        self.0[at..at + bytes.len()].copy_from_slice(bytes);
    }
}

/// Where the layers of a packet are (offsets into its data).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layers {
    /// Offset of the outer L3 header.
    pub l3: usize,
    pub l4: Option<usize>,
    /// End of the outer IP packet (trailing padding lies beyond).
    pub l3_end: usize,
    /// Offset of the VXLAN header, when found.
    pub vxlan: Option<usize>,
    /// End of the outer UDP datagram.
    pub udp_end: usize,
    pub ipv6: bool,
    /// The outer headers' lengths disagree with the frame (IPv4 total
    /// length beyond the frame or shorter than its header, IPv6 payload
    /// beyond the frame, UDP length shorter than its header or, outside a
    /// first fragment, longer than the IP payload): what the software
    /// parser drops. A device matches such frames all the same.
    pub malformed: bool,
    /// The outer IP packet is a fragment.
    pub fragment: bool,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Fills `v` with one header stack starting at `off` (outer: `inner == false`).
/// Returns (presence bits, flags, layers).
fn stack(f: &[u8], mut off: usize, inner_side: bool, vxlan_ports: &[u16], v: &mut Vector) -> (u32, u32, Layers) {
    let (shift, pshift, fshift) =
        if inner_side { (INNER_SHIFT, INNER_PRESENCE_SHIFT, INNER_FLAG_SHIFT) } else { (0, 0, 0) };
    let mut presence = 0u32;
    let mut flags = 0u32;
    let mut layers = Layers::default();
    if f.len() < off + 14 {
        return (presence, flags, layers);
    }
    v.put(ETH.offset + shift, &f[off..off + 14]);
    presence |= ETH.presence << pshift;
    let mut ty = be16(f, off + 12);
    off += 14;
    for (i, slot) in VLAN.iter().enumerate() {
        if !(ty == 0x8100 || ty == 0x88a8) || f.len() < off + 4 {
            break;
        }
        if i == 0 {
            flags |= FLAG_HAS_VLAN << fshift;
        }
        v.put(slot.offset + shift, &f[off..off + 4]);
        presence |= slot.presence << pshift;
        ty = be16(f, off + 2);
        if ty == 0x8100 || ty == 0x88a8 {
            flags |= FLAG_VLAN_MORE[i] << fshift;
        }
        off += 4;
    }
    layers.l3 = off;
    layers.l3_end = f.len();
    let (proto, l4) = match ty {
        0x0800 if f.len() >= off + 20 && f[off] >> 4 == 4 && f[off] & 0x0f >= 5 => {
            let ihl = usize::from(f[off] & 0x0f) * 4;
            if f.len() < off + ihl {
                return (presence, flags, layers);
            }
            v.put(IPV4.offset + shift, &f[off..off + 20]);
            presence |= IPV4.presence << pshift;
            let total = usize::from(be16(f, off + 2));
            layers.l3_end = (off + total).clamp(off + ihl, f.len());
            layers.malformed |= total < ihl || off + total > f.len();
            let frag = be16(f, off + 6);
            layers.fragment = frag & 0x3fff != 0;
            let later_fragment = frag & 0x1fff != 0;
            (f[off + 9], (!later_fragment).then_some(off + ihl))
        }
        0x86dd if f.len() >= off + 40 && f[off] >> 4 == 6 => {
            v.put(IPV6.offset + shift, &f[off..off + 40]);
            presence |= IPV6.presence << pshift;
            layers.ipv6 = true;
            let end = off + 40 + usize::from(be16(f, off + 4));
            layers.malformed |= end > f.len();
            layers.l3_end = end.min(f.len());
            // A fragment header right after the fixed one.
            layers.fragment = f[off + 6] == 44;
            (f[off + 6], Some(off + 40))
        }
        _ => return (presence, flags, layers),
    };
    let Some(l4) = l4 else { return (presence, flags, layers) };
    let end = layers.l3_end;
    match proto {
        17 if end >= l4 + 8 => {
            v.put(UDP.offset + shift, &f[l4..l4 + 8]);
            presence |= UDP.presence << pshift;
            layers.l4 = Some(l4);
            let udp_len = usize::from(be16(f, l4 + 4));
            layers.udp_end = (l4 + udp_len).clamp(l4 + 8, end);
            layers.malformed |= udp_len < 8 || (l4 + udp_len > end && !layers.fragment);
            let dport = be16(f, l4 + 2);
            if !inner_side && vxlan_ports.contains(&dport) && layers.udp_end >= l4 + 16 {
                let vx = l4 + 8;
                v.put(VXLAN.offset, &f[vx..vx + 8]);
                presence |= VXLAN.presence;
                layers.vxlan = Some(vx);
            }
        }
        6 if end >= l4 + 20 => {
            v.put(TCP.offset + shift, &f[l4..l4 + 20]);
            presence |= TCP.presence << pshift;
            layers.l4 = Some(l4);
        }
        _ => {}
    }
    (presence, flags, layers)
}

/// Builds the vector of `frame` received on `port`. `vxlan_ports`: UDP
/// destination ports to parse as VXLAN; `inner`: whether to parse the inner
/// frame of VXLAN packets (only rules with inner items need it).
///
/// Slots of absent layers keep whatever an earlier packet left there: every
/// rule that compares a layer's bytes also requires its presence bit, so
/// stale bytes never decide a match (and clearing 192 bytes per packet is
/// not free).
pub fn build(frame: &[u8], port: u16, vxlan_ports: &[u16], inner: bool, v: &mut Vector) -> Layers {
    let (mut presence, mut flags, layers) = stack(frame, 0, false, vxlan_ports, v);
    if let (Some(vx), true) = (layers.vxlan, inner) {
        // The inner frame ends where the UDP datagram ends.
        let end = layers.udp_end.min(frame.len());
        let (p, fl, _) = stack(&frame[..end], vx + 8, true, &[], v);
        presence |= p;
        flags |= fl;
    }
    v.set_meta(port, flags, presence);
    layers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_land_in_their_slots() {
        // Ethernet / VLAN 5 / IPv4 / UDP 4789 / VXLAN 100 / inner Ethernet / IPv4 / TCP.
        let mut f = vec![0u8; 14 + 4 + 20 + 8 + 8 + 14 + 20 + 20];
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        f[14..16].copy_from_slice(&[0x00, 0x05]);
        f[16..18].copy_from_slice(&[0x08, 0x00]);
        let ip = 18;
        f[ip] = 0x45;
        let n = f.len();
        f[ip + 2..ip + 4].copy_from_slice(&((n - ip) as u16).to_be_bytes());
        f[ip + 9] = 17;
        let udp = ip + 20;
        f[udp + 2..udp + 4].copy_from_slice(&4789u16.to_be_bytes());
        f[udp + 4..udp + 6].copy_from_slice(&((n - udp) as u16).to_be_bytes());
        let vx = udp + 8;
        f[vx] = 0x08;
        f[vx + 6] = 100;
        let ie = vx + 8;
        f[ie + 12..ie + 14].copy_from_slice(&[0x08, 0x00]);
        let iip = ie + 14;
        f[iip] = 0x45;
        f[iip + 2..iip + 4].copy_from_slice(&40u16.to_be_bytes());
        f[iip + 9] = 6;
        let mut v = Vector::default();
        let l = build(&f, 7, &[4789], true, &mut v);
        let (port, flags, presence) = v.meta();
        assert_eq!(port, 7);
        assert_eq!(flags, FLAG_HAS_VLAN);
        let want = ETH.presence
            | VLAN[0].presence
            | IPV4.presence
            | UDP.presence
            | VXLAN.presence
            | inner(ETH).presence
            | inner(IPV4).presence
            | inner(TCP).presence;
        assert_eq!(presence, want);
        assert_eq!((l.l3, l.l4, l.vxlan), (18, Some(38), Some(46)));
        assert_eq!(&v.0[VXLAN.offset + 4..VXLAN.offset + 7], &[0, 0, 100]);
        assert_eq!(v.0[inner(IPV4).offset + 9], 6);
        // Without the port in the VXLAN list it is plain UDP.
        build(&f, 7, &[], true, &mut v);
        assert_eq!(v.meta().2 & VXLAN.presence, 0);
        // Truncations never panic.
        for n in 0..f.len() {
            build(&f[..n], 0, &[4789], true, &mut v);
        }
    }
}
