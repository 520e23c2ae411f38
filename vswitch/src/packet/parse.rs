//! Miniflow extraction: frame bytes to [`FlowKey`].
//!
//! Each layer is bounds-checked once before its fields are read; nothing here
//! can panic or read past the slice. A malformed layer stops parsing: the key
//! keeps the layers read so far and [`Parsed::error`] names why, for the
//! datapath's drop counters.

use super::key::{
    ipv4_to, Field, FlowKey, FlowMask, FRAG_ANY, FRAG_LATER, KEY_WORDS, TUN_IPV6, TUN_PRESENT, VLAN_PRESENT,
};

pub use super::proto::{
    ETH_TYPE_ARP, ETH_TYPE_IPV4, ETH_TYPE_IPV6, ETH_TYPE_NONE, ETH_TYPE_QINQ, ETH_TYPE_VLAN, IPPROTO_ICMP,
    IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, VXLAN_PORT,
};

/// Most IPv6 extension headers walked before giving up.
const MAX_IPV6_EXT_HEADERS: usize = 8;

crate::named_enum::named_enum! {
    /// Why parsing stopped early. Every variant is a named drop reason.
    pub enum ParseError {
        TruncatedEthernet => "truncated_ethernet",
        TruncatedVlan => "truncated_vlan",
        TooManyVlanTags => "too_many_vlan_tags",
        TruncatedArp => "truncated_arp",
        TruncatedIpv4 => "truncated_ipv4",
        BadIpv4Version => "bad_ipv4_version",
        BadIpv4HeaderLength => "bad_ipv4_header_length",
        Ipv4TotalLengthTooShort => "ipv4_total_length_too_short",
        Ipv4TotalLengthBeyondFrame => "ipv4_total_length_beyond_frame",
        TruncatedIpv6 => "truncated_ipv6",
        BadIpv6Version => "bad_ipv6_version",
        Ipv6PayloadBeyondFrame => "ipv6_payload_beyond_frame",
        TruncatedIpv6ExtensionHeader => "truncated_ipv6_extension_header",
        TooManyIpv6ExtensionHeaders => "too_many_ipv6_extension_headers",
        TruncatedTcp => "truncated_tcp",
        BadTcpDataOffset => "bad_tcp_data_offset",
        TruncatedUdp => "truncated_udp",
        BadUdpLength => "bad_udp_length",
        TruncatedIcmp => "truncated_icmp",
        TruncatedIcmpv6 => "truncated_icmpv6",
        TruncatedVxlan => "truncated_vxlan",
        BadVxlanFlags => "bad_vxlan_flags",
    }
}

/// Tunnel metadata of a decapsulated packet (addresses in key form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TunnelMeta {
    pub vni: u32,
    pub src: u128,
    pub dst: u128,
    pub ipv6: bool,
}

/// The result of parsing one frame.
#[derive(Debug, Clone, Copy)]
pub struct Parsed {
    pub key: FlowKey,
    /// Offset of the L3 header (after any VLAN tags).
    pub l3_offset: u16,
    /// Offset of the L4 header, when one was found.
    pub l4_offset: Option<u16>,
    /// End of the L3 packet (IPv4 total length / IPv6 payload); trailing
    /// Ethernet padding lies beyond it.
    pub l3_end: u16,
    pub error: Option<ParseError>,
}

/// A VXLAN header found by [`Parsed::vxlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanHeader {
    pub vni: u32,
    /// Offset of the inner Ethernet frame.
    pub inner_offset: u16,
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn arr4(b: &[u8], at: usize) -> [u8; 4] {
    [b[at], b[at + 1], b[at + 2], b[at + 3]]
}

#[inline(always)]
fn arr16(b: &[u8], at: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    u128::from_be_bytes(a)
}

#[inline(always)]
fn mac48(b: &[u8], at: usize) -> u128 {
    let mut a = [0u8; 8];
    a[2..].copy_from_slice(&b[at..at + 6]);
    u128::from(u64::from_be_bytes(a))
}

/// Parses `frame` received on `in_port`, with `tunnel` metadata if it was
/// decapsulated. Never panics; see [`Parsed::error`].
#[inline]
pub fn parse(frame: &[u8], in_port: u32, tunnel: Option<&TunnelMeta>) -> Parsed {
    let mut key = FlowKey::ZERO;
    parse_into(frame, in_port, tunnel, &mut key).with_key(key)
}

/// Where the layers of a parsed frame are: [`Parsed`] without the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub l3_offset: u16,
    pub l4_offset: Option<u16>,
    pub l3_end: u16,
    pub error: Option<ParseError>,
}

impl Parsed {
    /// The offsets, without the key.
    pub fn layout(&self) -> Layout {
        Layout { l3_offset: self.l3_offset, l4_offset: self.l4_offset, l3_end: self.l3_end, error: self.error }
    }
}

impl Layout {
    /// The [`Parsed`] these offsets belong with.
    pub fn with_key(self, key: FlowKey) -> Parsed {
        Parsed { key, l3_offset: self.l3_offset, l4_offset: self.l4_offset, l3_end: self.l3_end, error: self.error }
    }
}

/// [`parse`], writing the key in place (the datapath parses straight into
/// its per-burst key array: no 104-byte copy per packet).
#[inline(always)]
pub fn parse_into(frame: &[u8], in_port: u32, tunnel: Option<&TunnelMeta>, key: &mut FlowKey) -> Layout {
    parse_hashed(frame, in_port, tunnel, key).0
}

/// [`parse_into`] that also returns the key's [`FlowKey::hash`]: the fast
/// path hashes the words while they are still in registers. Inlined in
/// the datapath (a call here cost 10-15 cycles a packet; `parse_full`, the
/// rare path, stays out of line).
#[inline(always)]
pub fn parse_hashed(frame: &[u8], in_port: u32, tunnel: Option<&TunnelMeta>, key: &mut FlowKey) -> (Layout, u64) {
    let (layout, hash, _) = parse_hashed_fast(frame, in_port, tunnel, key);
    (layout, hash)
}

/// [`parse_hashed`], and whether the fast path parsed the frame: then
/// [`same_fast_key`] can check later frames against it.
#[inline(always)]
pub fn parse_hashed_fast(
    frame: &[u8],
    in_port: u32,
    tunnel: Option<&TunnelMeta>,
    key: &mut FlowKey,
) -> (Layout, u64, bool) {
    if let Some((layout, hash)) = parse_fast(frame, in_port, tunnel, key) {
        return (layout, hash, true);
    }
    let p = parse_full(frame, in_port, tunnel);
    *key = p.key;
    (p.layout(), p.key.hash(), false)
}

/// The bytes [`same_fast_key`] reads: through the TCP flags, the last byte
/// the fast path's key is built from.
const MEMO_LEN: usize = 48;

#[inline(always)]
fn ld8<const N: usize>(b: &[u8; N], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(w)
}

/// Whether frame `f` takes the fast path to the same key as frame `prev`,
/// which the fast path parsed (from the same port, neither decapsulated),
/// and then `f`'s layout:
/// every byte that key is built from is equal, and the fast path's checks
/// pass on `f`'s own lengths. Bytes the key does not hold (IP length, id
/// and checksum, UDP length and checksum, TCP sequence numbers) may
/// differ. Packets of one flow, one after the other in a burst, skip the
/// parse and the hash this way; `None` does not mean the keys differ.
#[inline(always)]
pub fn same_fast_key(prev: &[u8], f: &[u8]) -> Option<Layout> {
    KeyBytes::of(prev)?.same_key(f)
}

/// The bytes of a fast-parsed frame its key is built from, read once:
/// [`KeyBytes::same_key`] checks the frames after it against them (see
/// [`same_fast_key`]) without going back to that frame.
#[derive(Debug, Clone, Copy)]
pub struct KeyBytes {
    /// Bytes 26..34 and 30..38 (IPv4 addresses and ports, where flows
    /// differ most), 0..8 and 8..16 (MACs, EtherType, version and header
    /// length, TOS), and 20..24 (fragment bits, TTL, protocol) in the low
    /// half of the last word.
    words: [u64; 5],
    /// Bytes 46..48 (TCP data offset and flags).
    tcp: [u8; 2],
}

/// The low four bytes of a word loaded from 20..28.
const BYTES_20_24: u64 = u64::from_ne_bytes([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

impl KeyBytes {
    /// Those bytes of `prev` (which the fast path parsed), if it is long
    /// enough for [`KeyBytes::same_key`] to say anything.
    #[inline(always)]
    pub fn of(prev: &[u8]) -> Option<Self> {
        let m: &[u8; MEMO_LEN] = prev.get(..MEMO_LEN)?.try_into().ok()?;
        Some(Self {
            words: [ld8(m, 26), ld8(m, 30), ld8(m, 0), ld8(m, 8), ld8(m, 20) & BYTES_20_24],
            tcp: [m[46], m[47]],
        })
    }

    /// [`same_fast_key`] against the frame these bytes were read from.
    #[inline(always)]
    pub fn same_key(&self, f: &[u8]) -> Option<Layout> {
        let h: &[u8; MEMO_LEN] = f.get(..MEMO_LEN)?.try_into().ok()?;
        let w = &self.words;
        // Addresses and ports first: a burst of many flows leaves here, on
        // a branch it learns.
        if (ld8(h, 26) ^ w[0]) | (ld8(h, 30) ^ w[1]) != 0 {
            return None;
        }
        let differ = (ld8(h, 0) ^ w[2]) | (ld8(h, 8) ^ w[3]) | ((ld8(h, 20) & BYTES_20_24) ^ w[4]);
        if differ != 0 {
            return None;
        }
        let (total, tcp) = fast_lengths(h, f)?;
        if h[23] == IPPROTO_TCP && tcp.to_be_bytes() != self.tcp {
            return None;
        }
        Some(Layout { l3_offset: 14, l4_offset: Some(34), l3_end: (14 + total) as u16, error: None })
    }
}

/// The fast path's length checks on frame `f` (`h`: its first bytes, at
/// least 42): an IPv4 total length within the frame and, behind a 20-byte
/// header, a UDP header whose length fits or a TCP header whose data
/// offset does. Then the total length and the TCP data offset and flags
/// (bytes 46..48; 0 for UDP). `None` for any other protocol.
#[inline(always)]
fn fast_lengths(h: &[u8], f: &[u8]) -> Option<(usize, u16)> {
    if f.len() > usize::from(u16::MAX) {
        return None;
    }
    let total = usize::from(be16(h, 16));
    if total < 20 || f.len() < 14 + total {
        return None;
    }
    let avail = total - 20;
    match h[23] {
        IPPROTO_UDP => {
            let udp_len = usize::from(be16(h, 38));
            (avail >= 8 && udp_len >= 8 && udp_len <= avail).then_some((total, 0))
        }
        IPPROTO_TCP => {
            let doff = usize::from(*f.get(46)? >> 4) * 4;
            (avail >= 20 && doff >= 20 && avail >= doff).then(|| (total, be16(f, 46)))
        }
        _ => None,
    }
}

/// The exact-match cache's key for a frame the fast path takes (untagged
/// IPv4 without options, not a fragment, UDP or TCP with consistent
/// lengths), read straight from its bytes: every byte the fast path builds
/// the [`FlowKey`] from, with the input port. Two frames with equal
/// `FrameKey`s have equal flow keys (the test below checks it against the
/// full parser), so a cache hit needs neither the key built nor hashed:
/// five words loaded, checked and hashed, against thirteen built, hashed
/// and stored. (The sixth word is always zero: an exact-match entry holds
/// six, compared in 16-byte pieces.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameKey(pub [u64; 6]);

impl FrameKey {
    /// `f`'s frame key as received on `in_port`, when the fast path would
    /// parse it and the port number fits 16 bits (else `None`: the frame
    /// is parsed and looked up by its flow key).
    #[inline(always)]
    pub fn of(f: &[u8], in_port: u32) -> Option<Self> {
        let h: &[u8; MEMO_LEN] = f.get(..MEMO_LEN)?.try_into().ok()?;
        let port = u16::try_from(in_port).ok()?;
        if h[12] != 0x08 || h[13] != 0x00 || h[14] != 0x45 || be16(h, 20) & 0x3fff != 0 {
            return None;
        }
        // Bytes 26..34 and 30..38 (addresses and ports, where flows differ
        // most), 0..16 (MACs, EtherType, version and header length, TOS),
        // 20..24 (fragment bits, TTL, protocol) with the TCP bytes and the
        // port above them.
        Some(Self([ld8(h, 26), ld8(h, 30), ld8(h, 0), ld8(h, 8), Self::rest(h, f, port)?, 0]))
    }

    /// The last word: bytes 20..24, the TCP bytes (UDP payload bytes at
    /// 46..48 are not part of the key: 0) and the port; `None` when the
    /// fast path's length checks fail.
    #[inline(always)]
    fn rest(h: &[u8; MEMO_LEN], f: &[u8], port: u16) -> Option<u64> {
        let (_, tcp) = fast_lengths(h, f)?;
        Some((ld8(h, 20) & BYTES_20_24) | (u64::from(tcp) << 32) | (u64::from(port) << 48))
    }

    /// Whether frame `f` from `in_port` has this frame key, checked the
    /// way [`KeyBytes::same_key`] checks a run: the addresses and ports
    /// first (where the frames of many flows differ), then the rest and
    /// `f`'s own lengths. The fast path's other checks need not be redone:
    /// the bytes they read are equal to those of the frame this key came
    /// from.
    #[inline(always)]
    pub fn same_frame(&self, f: &[u8], in_port: u32) -> bool {
        let Some(h) = f.get(..MEMO_LEN).and_then(|h| <&[u8; MEMO_LEN]>::try_from(h).ok()) else { return false };
        let w = &self.0;
        if (ld8(h, 26) ^ w[0]) | (ld8(h, 30) ^ w[1]) != 0 || (ld8(h, 0) ^ w[2]) | (ld8(h, 8) ^ w[3]) != 0 {
            return false;
        }
        u16::try_from(in_port).is_ok_and(|port| Self::rest(h, f, port) == Some(w[4]))
    }

    /// The key's hash (the exact-match cache's set and tag): two multiplies
    /// in parallel and the keys' final avalanche.
    #[inline(always)]
    pub fn hash(&self) -> u64 {
        let w = &self.0;
        let a = (w[0] ^ w[3].rotate_left(23)).wrapping_mul(super::key::HASH_K);
        let b = (w[1] ^ w[2].rotate_left(41) ^ w[4].rotate_left(11)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        super::key::finish(a ^ b.rotate_left(31))
    }
}

impl FrameKey {
    /// The outer UDP source port of its encapsulation: what
    /// `vxlan_src_port` gives for its frame's inner flow (the IPv4
    /// addresses, protocol and ports; `InnerFlow::from_frame`), from the
    /// key's words as they are, without a walk of the frame (the addresses'
    /// word, read in network order, is the source address above the
    /// destination).
    #[inline(always)]
    pub fn src_port(&self) -> u16 {
        let (a, b, c) = (self.0[0].to_ne_bytes(), self.0[1].to_ne_bytes(), self.0[4].to_ne_bytes());
        // Bytes 34..38 of the frame are the ports; byte 23 the protocol.
        let (src, dst) = (u16::from_be_bytes([b[4], b[5]]), u16::from_be_bytes([b[6], b[7]]));
        offload::entropy::vxlan_src_port_v4(u64::from_be_bytes(a), offload::entropy::v4_ports(c[3], src, dst))
    }

    /// Whether this key and `other` are equal in the bits of `mask`: then
    /// their frames' flow keys are equal under the flow mask `mask` was
    /// made from (see [`FrameMask::of`]).
    #[inline(always)]
    pub fn eq_masked(&self, other: &FrameKey, mask: &FrameMask) -> bool {
        let (a, b, m) = (&self.0, &other.0, &mask.0);
        ((a[0] ^ b[0]) & m[0])
            | ((a[1] ^ b[1]) & m[1])
            | ((a[2] ^ b[2]) & m[2])
            | ((a[3] ^ b[3]) & m[3])
            | ((a[4] ^ b[4]) & m[4])
            == 0
    }
}

/// Where each byte of the fast path's flow key comes from (bytes of a word
/// in little-endian order, as `FlowKey::words` holds them): a frame byte,
/// the input port ([`PORT`]), or nothing that varies between the frames
/// a [`FrameKey`] is made for ([`FIXED`]: the EtherType, the address words'
/// marker, the zero words, the tunnel words of a frame from a port). The
/// test `frame_key_bytes_table_matches_the_parser` checks it against
/// `parse_fast`, bit by bit.
const FIXED: u8 = 0xff;
const PORT: u8 = 0xfe;
const FAST_KEY_BYTES: [[u8; 8]; KEY_WORDS] = [
    [PORT, PORT, PORT, PORT, FIXED, FIXED, FIXED, FIXED], // in_port, EtherType
    [5, 4, 3, 2, 1, 0, FIXED, FIXED],                     // destination MAC
    [11, 10, 9, 8, 7, 6, 23, 15],                         // source MAC, protocol, TOS
    [22, FIXED, 47, 46, 35, 34, 37, 36],                  // TTL, TCP flags, ports
    [FIXED; 8],
    [29, 28, 27, 26, FIXED, FIXED, FIXED, FIXED], // IPv4 source
    [FIXED; 8],
    [33, 32, 31, 30, FIXED, FIXED, FIXED, FIXED], // IPv4 destination
    [FIXED; 8],                                   // tunnel metadata: none
    [FIXED; 8],
    [FIXED; 8],
    [FIXED; 8],
    [FIXED; 8],
];

/// A flow mask carried over to [`FrameKey`]s: the bits of the frame bytes
/// (and of the input port) that any bit of the flow mask is built from,
/// whole bytes at a time. Two frames whose frame keys are equal under it
/// have flow keys equal under the flow mask, so they belong to the same
/// megaflow of that mask: the second can take the first one's flow without
/// a lookup (see `Engine::ingress_framed`). Never the other way round: a
/// byte the mask covers only in part is compared whole, so frames of one
/// megaflow may still differ here (they are then looked up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameMask(pub [u64; 5]);

impl FrameMask {
    /// The frame key bits `mask` depends on.
    pub fn of(mask: &FlowMask) -> Self {
        let mut bytes = [0u8; MEMO_LEN];
        let mut port = false;
        for (w, sources) in mask.0.words.iter().zip(FAST_KEY_BYTES.iter()) {
            for (k, &src) in sources.iter().enumerate() {
                if (w >> (8 * k)) & 0xff == 0 {
                    continue;
                }
                match src {
                    FIXED => {}
                    PORT => port = true,
                    b => bytes[usize::from(b)] = 0xff,
                }
            }
        }
        // The same words `FrameKey::of` loads, from the byte mask.
        let tcp = u64::from(be16(&bytes, 46));
        let last = (ld8(&bytes, 20) & BYTES_20_24) | (tcp << 32) | if port { 0xffff << 48 } else { 0 };
        Self([ld8(&bytes, 26), ld8(&bytes, 30), ld8(&bytes, 0), ld8(&bytes, 8), last])
    }
}

/// Outer headers of VXLAN over IPv4 (untagged, no IP options): Ethernet
/// 14, IPv4 20, UDP 8, VXLAN 8.
pub const VXLAN4_HEADERS: usize = 50;

/// The bytes of a VXLAN frame whose outer headers the fast path parsed
/// (untagged IPv4 without options, not a fragment, UDP) and the datapath
/// then decapsulated: everything its outer key and VXLAN header are made of
/// except the UDP source port (the sender's entropy, one per inner flow,
/// which nothing after decapsulation reads). A later frame with the same
/// bytes ([`VxlanBytes::same_outer`]) is VXLAN to the same address and
/// port, through the same tunnel, with the same VNI: it is decapsulated
/// without a parse of its outer headers.
#[derive(Debug, Clone, Copy)]
pub struct VxlanBytes {
    /// Bytes 0..8, 8..16, 20..24 (the low half), 26..34, 30..38 with the
    /// source port (34..36) cleared, 42..50.
    words: [u64; 6],
}

/// A word loaded from 30..38 without the UDP source port (34..36).
const BYTES_30_38_NO_SPORT: u64 = u64::from_ne_bytes([0xff, 0xff, 0xff, 0xff, 0, 0, 0xff, 0xff]);

impl VxlanBytes {
    #[inline(always)]
    fn words(h: &[u8; VXLAN4_HEADERS]) -> [u64; 6] {
        [ld8(h, 0), ld8(h, 8), ld8(h, 20) & BYTES_20_24, ld8(h, 26), ld8(h, 30) & BYTES_30_38_NO_SPORT, ld8(h, 42)]
    }

    /// Those bytes of `prev`, a frame as described above (the caller knows
    /// it was; `None` only when it is too short).
    #[inline(always)]
    pub fn of(prev: &[u8]) -> Option<Self> {
        let h: &[u8; VXLAN4_HEADERS] = prev.get(..VXLAN4_HEADERS)?.try_into().ok()?;
        Some(Self { words: Self::words(h) })
    }

    /// Whether frame `f` has the same bytes and lengths the fast parser
    /// and the VXLAN header check accept (total length within the frame,
    /// a UDP length within it, room for an inner Ethernet header): then
    /// where its outer IP packet ends (its inner frame is
    /// `f[VXLAN4_HEADERS..end]`). Checksums are the caller's to check.
    #[inline(always)]
    pub fn same_outer(&self, f: &[u8]) -> Option<usize> {
        let h: &[u8; VXLAN4_HEADERS] = f.get(..VXLAN4_HEADERS)?.try_into().ok()?;
        let w = Self::words(h);
        let differ = w.iter().zip(&self.words).fold(0, |d, (a, b)| d | (a ^ b));
        if differ != 0 || f.len() > usize::from(u16::MAX) {
            return None;
        }
        let total = usize::from(be16(h, 16));
        // IPv4 and UDP headers, the VXLAN header and an inner Ethernet
        // header inside the IP packet.
        if total < 20 + 8 + 8 + 14 || f.len() < 14 + total {
            return None;
        }
        let udp_len = usize::from(be16(h, 38));
        if udp_len < 8 || udp_len > total - 20 {
            return None;
        }
        Some(14 + total)
    }
}

/// The common case in one pass: untagged Ethernet, IPv4 without options,
/// not a fragment, UDP or TCP with consistent lengths; the key words are
/// built whole instead of field by field. `None` (and `key` untouched) for
/// anything else, which [`parse_full`] handles; when it answers, the answer
/// equals `parse_full`'s.
#[inline(always)]
fn parse_fast(f: &[u8], in_port: u32, tunnel: Option<&TunnelMeta>, key: &mut FlowKey) -> Option<(Layout, u64)> {
    let h: &[u8; 42] = f.get(..42)?.try_into().ok()?;
    if h[12] != 0x08 || h[13] != 0x00 || h[14] != 0x45 {
        return None;
    }
    // MF set or a fragment offset: the full parser.
    if be16(h, 20) & 0x3fff != 0 {
        return None;
    }
    let (total, tcp) = fast_lengths(h, f)?;
    let proto = h[23];
    let (sport, dport) = (u64::from(be16(h, 34)), u64::from(be16(h, 36)));
    let tcp_flags = u64::from(tcp & 0x0fff);
    let mac = |at: usize| u64::from_be_bytes([0, 0, h[at], h[at + 1], h[at + 2], h[at + 3], h[at + 4], h[at + 5]]);
    let v4 = |at: usize| 0xffff_0000_0000 | u64::from(u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
    // Tunnel metadata: words 8 (tun_id, tun_flags), 9-10 (src), 11-12 (dst).
    let (tun, src, dst) = match tunnel {
        Some(t) => {
            let flags = u64::from(TUN_PRESENT | if t.ipv6 { TUN_IPV6 } else { 0 });
            (u64::from(t.vni) | (flags << 32), t.src, t.dst)
        }
        None => (0, 0, 0),
    };
    let words = [
        u64::from(in_port) | (u64::from(ETH_TYPE_IPV4) << 32),
        mac(0),
        mac(6) | (u64::from(proto) << 48) | (u64::from(h[15]) << 56),
        u64::from(h[22]) | (tcp_flags << 16) | (sport << 32) | (dport << 48),
        0,
        v4(26),
        0,
        v4(30),
        tun,
        (src >> 64) as u64,
        src as u64,
        (dst >> 64) as u64,
        dst as u64,
    ];
    let hash = super::key::hash_words(&words);
    key.words = words;
    Some((Layout { l3_offset: 14, l4_offset: Some(34), l3_end: (14 + total) as u16, error: None }, hash))
}

/// The general parser: every layer, every malformation named.
fn parse_full(frame: &[u8], in_port: u32, tunnel: Option<&TunnelMeta>) -> Parsed {
    // Frames longer than 64 KiB cannot come from a port; clamp so offsets fit u16.
    let frame = &frame[..frame.len().min(usize::from(u16::MAX))];
    let mut key = FlowKey::ZERO;
    key.set(Field::InPort, u128::from(in_port));
    if let Some(t) = tunnel {
        key.set(Field::TunId, u128::from(t.vni));
        key.set(Field::TunFlags, u128::from(TUN_PRESENT | if t.ipv6 { TUN_IPV6 } else { 0 }));
        key.set(Field::TunSrc, t.src);
        key.set(Field::TunDst, t.dst);
    }
    let mut p = Parsed { key, l3_offset: 0, l4_offset: None, l3_end: frame.len() as u16, error: None };
    if let Err(e) = parse_l2(frame, &mut p) {
        p.error = Some(e);
    }
    p
}

fn parse_l2(f: &[u8], p: &mut Parsed) -> Result<(), ParseError> {
    if f.len() < 14 {
        return Err(ParseError::TruncatedEthernet);
    }
    p.key.set(Field::EthDst, mac48(f, 0));
    p.key.set(Field::EthSrc, mac48(f, 6));
    let mut eth_type = be16(f, 12);
    let mut off = 14usize;
    let mut tags = 0;
    while eth_type == ETH_TYPE_VLAN || eth_type == ETH_TYPE_QINQ {
        if tags == 2 {
            p.key.set(Field::EthType, u128::from(eth_type));
            p.l3_offset = off as u16;
            return Err(ParseError::TooManyVlanTags);
        }
        if f.len() < off + 4 {
            return Err(ParseError::TruncatedVlan);
        }
        let tci = (be16(f, off) & !VLAN_PRESENT) | VLAN_PRESENT;
        p.key.set(if tags == 0 { Field::VlanTci } else { Field::VlanTci2 }, u128::from(tci));
        eth_type = be16(f, off + 2);
        off += 4;
        tags += 1;
    }
    if eth_type < 0x0600 {
        eth_type = ETH_TYPE_NONE;
    }
    p.key.set(Field::EthType, u128::from(eth_type));
    p.l3_offset = off as u16;
    match eth_type {
        ETH_TYPE_IPV4 => parse_ipv4(f, off, p),
        ETH_TYPE_IPV6 => parse_ipv6(f, off, p),
        ETH_TYPE_ARP => parse_arp(f, off, p),
        _ => Ok(()),
    }
}

fn parse_arp(f: &[u8], off: usize, p: &mut Parsed) -> Result<(), ParseError> {
    if f.len() < off + 28 {
        return Err(ParseError::TruncatedArp);
    }
    let (htype, ptype, hlen, plen) = (be16(f, off), be16(f, off + 2), f[off + 4], f[off + 5]);
    if htype == 1 && ptype == ETH_TYPE_IPV4 && hlen == 6 && plen == 4 {
        let op = be16(f, off + 6);
        if op <= 0xff {
            p.key.set(Field::IpProto, u128::from(op));
        }
        p.key.set(Field::NwSrc, ipv4_to(arr4(f, off + 14)));
        p.key.set(Field::NwDst, ipv4_to(arr4(f, off + 24)));
    }
    Ok(())
}

fn parse_ipv4(f: &[u8], off: usize, p: &mut Parsed) -> Result<(), ParseError> {
    if f.len() < off + 20 {
        return Err(ParseError::TruncatedIpv4);
    }
    let vihl = f[off];
    if vihl >> 4 != 4 {
        return Err(ParseError::BadIpv4Version);
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    if ihl < 20 {
        return Err(ParseError::BadIpv4HeaderLength);
    }
    if f.len() < off + ihl {
        return Err(ParseError::TruncatedIpv4);
    }
    let total = usize::from(be16(f, off + 2));
    if total < ihl {
        return Err(ParseError::Ipv4TotalLengthTooShort);
    }
    if f.len() < off + total {
        return Err(ParseError::Ipv4TotalLengthBeyondFrame);
    }
    let k = &mut p.key;
    k.set(Field::IpTos, u128::from(f[off + 1]));
    k.set(Field::IpTtl, u128::from(f[off + 8]));
    let proto = f[off + 9];
    k.set(Field::IpProto, u128::from(proto));
    k.set(Field::NwSrc, ipv4_to(arr4(f, off + 12)));
    k.set(Field::NwDst, ipv4_to(arr4(f, off + 16)));
    let frag = be16(f, off + 6);
    let (more, offset) = (frag & 0x2000 != 0, frag & 0x1fff);
    let mut frag_bits = 0u8;
    if more || offset != 0 {
        frag_bits |= FRAG_ANY;
    }
    if offset != 0 {
        frag_bits |= FRAG_LATER;
    }
    k.set(Field::IpFrag, u128::from(frag_bits));
    p.l3_end = (off + total) as u16;
    if frag_bits & FRAG_LATER != 0 {
        return Ok(());
    }
    parse_l4(f, off + ihl, off + total, proto, false, frag_bits & FRAG_ANY != 0, p)
}

fn parse_ipv6(f: &[u8], off: usize, p: &mut Parsed) -> Result<(), ParseError> {
    if f.len() < off + 40 {
        return Err(ParseError::TruncatedIpv6);
    }
    if f[off] >> 4 != 6 {
        return Err(ParseError::BadIpv6Version);
    }
    let end = off + 40 + usize::from(be16(f, off + 4));
    if f.len() < end {
        return Err(ParseError::Ipv6PayloadBeyondFrame);
    }
    let k = &mut p.key;
    k.set(Field::IpTos, u128::from(((f[off] & 0x0f) << 4) | (f[off + 1] >> 4)));
    k.set(Field::IpTtl, u128::from(f[off + 7]));
    k.set(Field::NwSrc, arr16(f, off + 8));
    k.set(Field::NwDst, arr16(f, off + 24));
    p.l3_end = end as u16;
    let mut next = f[off + 6];
    let mut at = off + 40;
    let mut frag_bits = 0u8;
    for _ in 0..=MAX_IPV6_EXT_HEADERS {
        let len = match next {
            // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
            0 | 43 | 60 => {
                if end < at + 2 {
                    return Err(ParseError::TruncatedIpv6ExtensionHeader);
                }
                (usize::from(f[at + 1]) + 1) * 8
            }
            // Authentication header: (len + 2) * 4 bytes.
            51 => {
                if end < at + 2 {
                    return Err(ParseError::TruncatedIpv6ExtensionHeader);
                }
                (usize::from(f[at + 1]) + 2) * 4
            }
            // Fragment header: 8 bytes.
            44 => {
                if end < at + 8 {
                    return Err(ParseError::TruncatedIpv6ExtensionHeader);
                }
                let frag = be16(f, at + 2);
                frag_bits |= FRAG_ANY;
                if frag >> 3 != 0 {
                    frag_bits |= FRAG_LATER;
                }
                8
            }
            proto => {
                p.key.set(Field::IpProto, u128::from(proto));
                p.key.set(Field::IpFrag, u128::from(frag_bits));
                if frag_bits & FRAG_LATER != 0 {
                    return Ok(());
                }
                return parse_l4(f, at, end, proto, true, frag_bits & FRAG_ANY != 0, p);
            }
        };
        if end < at + len {
            return Err(ParseError::TruncatedIpv6ExtensionHeader);
        }
        next = f[at];
        at += len;
    }
    p.key.set(Field::IpFrag, u128::from(frag_bits));
    Err(ParseError::TooManyIpv6ExtensionHeaders)
}

/// The L4 header at `at`, the IP payload ending at `end`. `first_fragment`:
/// the payload is the first piece of a fragmented datagram, so lengths that
/// cover the whole datagram (UDP's) are longer than what is here.
fn parse_l4(
    f: &[u8],
    at: usize,
    end: usize,
    proto: u8,
    v6: bool,
    first_fragment: bool,
    p: &mut Parsed,
) -> Result<(), ParseError> {
    let avail = end.saturating_sub(at);
    match proto {
        IPPROTO_TCP => {
            if avail < 20 {
                return Err(ParseError::TruncatedTcp);
            }
            let doff = usize::from(f[at + 12] >> 4) * 4;
            if doff < 20 {
                return Err(ParseError::BadTcpDataOffset);
            }
            if avail < doff {
                return Err(ParseError::TruncatedTcp);
            }
            p.key.set(Field::TpSrc, u128::from(be16(f, at)));
            p.key.set(Field::TpDst, u128::from(be16(f, at + 2)));
            p.key.set(Field::TcpFlags, u128::from(be16(f, at + 12) & 0x0fff));
        }
        IPPROTO_UDP => {
            if avail < 8 {
                return Err(ParseError::TruncatedUdp);
            }
            p.key.set(Field::TpSrc, u128::from(be16(f, at)));
            p.key.set(Field::TpDst, u128::from(be16(f, at + 2)));
            let udp_len = usize::from(be16(f, at + 4));
            // 0 is legal for IPv6 jumbograms only; anything shorter than the
            // header is malformed, and so is anything longer than the IP
            // payload unless this is a first fragment (its UDP length is the
            // whole datagram's; the rest comes in later fragments).
            if udp_len < 8 || (udp_len > avail && !first_fragment) {
                p.l4_offset = Some(at as u16);
                return Err(ParseError::BadUdpLength);
            }
        }
        IPPROTO_ICMP if !v6 => {
            if avail < 4 {
                return Err(ParseError::TruncatedIcmp);
            }
            p.key.set(Field::TpSrc, u128::from(f[at]));
            p.key.set(Field::TpDst, u128::from(f[at + 1]));
        }
        IPPROTO_ICMPV6 if v6 => {
            if avail < 4 {
                return Err(ParseError::TruncatedIcmpv6);
            }
            p.key.set(Field::TpSrc, u128::from(f[at]));
            p.key.set(Field::TpDst, u128::from(f[at + 1]));
        }
        _ => {}
    }
    p.l4_offset = Some(at as u16);
    Ok(())
}

impl Parsed {
    /// The VXLAN header, if this is a well-formed UDP packet to `udp_port`:
    /// `None` when it is not VXLAN at all, `Some(Err)` when it is addressed to
    /// the VXLAN port but malformed.
    pub fn vxlan(&self, frame: &[u8], udp_port: u16) -> Option<Result<VxlanHeader, ParseError>> {
        if self.error.is_some()
            || self.key.ip_proto() != IPPROTO_UDP
            || self.key.ip_frag() != 0
            || self.key.tp_dst() != udp_port
            || !matches!(self.key.eth_type(), ETH_TYPE_IPV4 | ETH_TYPE_IPV6)
        {
            return None;
        }
        let at = usize::from(self.l4_offset?) + 8;
        let end = usize::from(self.l3_end).min(frame.len());
        // VXLAN header (8) plus at least an inner Ethernet header.
        if end < at + 8 + 14 {
            return Some(Err(ParseError::TruncatedVxlan));
        }
        if frame[at] & 0x08 == 0 {
            return Some(Err(ParseError::BadVxlanFlags));
        }
        let vni = u32::from_be_bytes([0, frame[at + 4], frame[at + 5], frame[at + 6]]);
        Some(Ok(VxlanHeader { vni, inner_offset: (at + 8) as u16 }))
    }
}

/// Per-reason parse error counters (plain integers: one per PMD thread).
#[derive(Debug, Clone, Default)]
pub struct ParseErrorCounters {
    pub counts: [u64; ParseError::COUNT],
}

impl ParseErrorCounters {
    #[inline]
    pub fn count(&mut self, e: ParseError) {
        self.counts[e as usize] += 1;
    }

    /// Non-zero counters with their names.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ParseError::ALL.iter().zip(&self.counts).filter(|(_, &c)| c != 0).map(|(e, &c)| (e.as_str(), c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::key::ipv4;
    use offload::entropy::InnerFlow;

    fn udp4() -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&46u16.to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&1234u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[38..40].copy_from_slice(&26u16.to_be_bytes());
        f
    }

    #[test]
    fn udp_ipv4() {
        let p = parse(&udp4(), 3, None);
        assert_eq!(p.error, None);
        assert_eq!(p.key.in_port(), 3);
        assert_eq!(p.key.eth_type(), ETH_TYPE_IPV4);
        assert_eq!(p.key.nw_src(), ipv4(10, 0, 0, 1));
        assert_eq!(p.key.nw_dst(), ipv4(10, 0, 0, 2));
        assert_eq!((p.key.tp_src(), p.key.tp_dst()), (1234, 80));
        assert_eq!(p.l4_offset, Some(34));
    }

    #[test]
    fn malformed_ipv4_reasons() {
        let mut f = udp4();
        f[14] = 0x44;
        assert_eq!(parse(&f, 0, None).error, Some(ParseError::BadIpv4HeaderLength));
        let mut f = udp4();
        f[16..18].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(parse(&f, 0, None).error, Some(ParseError::Ipv4TotalLengthBeyondFrame));
        let mut f = udp4();
        f[14] = 0x65;
        assert_eq!(parse(&f, 0, None).error, Some(ParseError::BadIpv4Version));
        let f = udp4();
        let p = parse(&f[..30], 0, None);
        assert_eq!(p.error, Some(ParseError::TruncatedIpv4));
        assert_eq!(p.key.eth_type(), ETH_TYPE_IPV4, "layers before the bad one stay in the key");
        assert_eq!(parse(&f[..10], 0, None).error, Some(ParseError::TruncatedEthernet));
    }

    #[test]
    fn later_fragment_has_no_l4() {
        let mut f = udp4();
        f[20..22].copy_from_slice(&0x0010u16.to_be_bytes());
        let p = parse(&f, 0, None);
        assert_eq!(p.error, None);
        assert_eq!(p.key.ip_frag(), FRAG_ANY | FRAG_LATER);
        assert_eq!(p.key.tp_dst(), 0);
    }

    /// A first fragment as the kernel sends it: MF set, offset 0, the UDP
    /// length of the whole 3,000-byte datagram in a 1,500-byte packet.
    #[test]
    fn a_udp_first_fragment_keeps_its_ports_and_is_not_malformed() {
        let mut f = vec![0u8; 14 + 1500];
        f[..40].copy_from_slice(&udp4()[..40]);
        f[16..18].copy_from_slice(&1500u16.to_be_bytes());
        f[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
        f[38..40].copy_from_slice(&3008u16.to_be_bytes());
        let p = parse(&f, 0, None);
        assert_eq!(p.error, None);
        assert_eq!(p.key.ip_frag(), FRAG_ANY, "first fragment: nw_frag=first");
        assert_eq!((p.key.tp_src(), p.key.tp_dst()), (1234, 80), "the ports are there");
        assert_eq!(p.l4_offset, Some(34));
        // The same lengths without MF: a malformed datagram, as before.
        f[20..22].copy_from_slice(&0x4000u16.to_be_bytes());
        assert_eq!(parse(&f, 0, None).error, Some(ParseError::BadUdpLength));
        // A first fragment still needs a UDP length of at least the header.
        f[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
        f[38..40].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(parse(&f, 0, None).error, Some(ParseError::BadUdpLength));
    }

    #[test]
    fn an_ipv6_udp_first_fragment_keeps_its_ports() {
        // Fragment header (offset 0, M=1) then UDP claiming 9,008 bytes.
        let frag_first = [17, 0, 0x00, 0x01, 0, 0, 0, 9];
        let mut udp = vec![0x04, 0xd2, 0x00, 0x35];
        udp.extend_from_slice(&9008u16.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.resize(1448, 0xab);
        let p = parse(&ipv6_with(&frag_first, 44, &udp), 1, None);
        assert_eq!((p.error, p.key.ip_frag(), p.key.tp_src(), p.key.tp_dst()), (None, FRAG_ANY, 1234, 53));
        // Not a fragment: the same UDP length is malformed.
        assert_eq!(parse(&ipv6_with(&[], 17, &udp), 1, None).error, Some(ParseError::BadUdpLength));
        // A later fragment: no ports, nw_frag=later.
        let frag_later = [17, 0, 0x05, 0xa8, 0, 0, 0, 9];
        let p = parse(&ipv6_with(&frag_later, 44, &udp[8..]), 1, None);
        assert_eq!((p.error, p.key.ip_frag(), p.key.tp_dst()), (None, FRAG_ANY | FRAG_LATER, 0));
    }

    fn ipv6_with(ext: &[u8], first_next: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        let payload = (ext.len() + l4.len()) as u16;
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&payload.to_be_bytes());
        f.extend_from_slice(&[first_next, 64]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(ext);
        f.extend_from_slice(l4);
        f
    }

    #[test]
    fn ipv6_extension_headers_are_skipped() {
        // Hop-by-hop (8 bytes) -> destination options (16 bytes) -> UDP.
        let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let udp = [0x04, 0xd2, 0x00, 0x35, 0x00, 0x08, 0, 0];
        let p = parse(&ipv6_with(&ext, 0, &udp), 1, None);
        assert_eq!(p.error, None);
        assert_eq!(p.key.ip_proto(), IPPROTO_UDP);
        assert_eq!((p.key.tp_src(), p.key.tp_dst()), (1234, 53));
        assert_eq!(p.l4_offset, Some(14 + 40 + 24));

        // First fragment: L4 parsed; later fragment: not.
        let frag_first = [17, 0, 0x00, 0x01, 0, 0, 0, 1];
        let p = parse(&ipv6_with(&frag_first, 44, &udp), 1, None);
        assert_eq!((p.error, p.key.ip_frag(), p.key.tp_dst()), (None, FRAG_ANY, 53));
        let frag_later = [17, 0, 0x00, 0x08, 0, 0, 0, 1];
        let p = parse(&ipv6_with(&frag_later, 44, &udp), 1, None);
        assert_eq!((p.error, p.key.ip_frag(), p.key.tp_dst()), (None, FRAG_ANY | FRAG_LATER, 0));

        // An extension header cut off by the payload length.
        let p = parse(&ipv6_with(&[17, 3, 0, 0], 0, &[]), 1, None);
        assert_eq!(p.error, Some(ParseError::TruncatedIpv6ExtensionHeader));
        // A chain that never ends.
        let looped: Vec<u8> = (0..10).flat_map(|_| [60u8, 0, 0, 0, 0, 0, 0, 0]).collect();
        let p = parse(&ipv6_with(&looped, 60, &[]), 1, None);
        assert_eq!(p.error, Some(ParseError::TooManyIpv6ExtensionHeaders));
        // Payload length beyond the frame.
        let mut f = ipv6_with(&[], 17, &udp);
        f[18..20].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(parse(&f, 1, None).error, Some(ParseError::Ipv6PayloadBeyondFrame));
        // ICMPv6 type/code.
        let p = parse(&ipv6_with(&[], 58, &[135, 0, 0, 0]), 1, None);
        assert_eq!((p.key.tp_src(), p.key.tp_dst()), (135, 0));
    }

    #[test]
    fn qinq_arp_and_tunnel_metadata() {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x20, 0xc8, 0x08, 0x06]);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
        let tun = TunnelMeta { vni: 100, src: 1, dst: 2, ipv6: false };
        let p = parse(&f, 4, Some(&tun));
        assert_eq!(p.error, None);
        assert_eq!(p.key.vlan_tci(), 0x0064 | VLAN_PRESENT);
        assert_eq!(p.key.vlan_tci2(), 0x20c8 | VLAN_PRESENT);
        assert_eq!(p.key.eth_type(), ETH_TYPE_ARP);
        assert_eq!(p.key.ip_proto(), 1, "ARP request opcode");
        assert_eq!(p.key.nw_src(), ipv4(10, 0, 0, 1));
        assert_eq!(p.key.nw_dst(), ipv4(10, 0, 0, 2));
        assert_eq!(p.key.tun_id(), 100);
        assert_eq!(p.key.tun_flags(), TUN_PRESENT);
        assert_eq!(parse(&f[..30], 4, None).error, Some(ParseError::TruncatedArp));
        assert_eq!(parse(&f[..16], 4, None).error, Some(ParseError::TruncatedVlan));
        let mut triple = f.clone();
        triple.splice(20..20, [0x81, 0x00, 0, 5]);
        assert_eq!(parse(&triple, 4, None).error, Some(ParseError::TooManyVlanTags));
    }

    #[test]
    fn tcp_and_vxlan_detection() {
        let mut f = udp4();
        f[23] = 6;
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f.truncate(54);
        f[46] = 0x50;
        f[47] = 0x12;
        let p = parse(&f, 0, None);
        assert_eq!((p.error, p.key.tcp_flags()), (None, 0x012));
        f[46] = 0x40;
        assert_eq!(parse(&f, 0, None).error, Some(ParseError::BadTcpDataOffset));

        let mut v = udp4();
        v.resize(80, 0);
        v[16..18].copy_from_slice(&66u16.to_be_bytes());
        v[38..40].copy_from_slice(&46u16.to_be_bytes());
        v[36..38].copy_from_slice(&VXLAN_PORT.to_be_bytes());
        let p = parse(&v, 0, None);
        assert_eq!(p.vxlan(&v, VXLAN_PORT), Some(Err(ParseError::BadVxlanFlags)));
        v[42] = 0x08;
        v[46..49].copy_from_slice(&[0, 0, 100]);
        assert_eq!(p.vxlan(&v, VXLAN_PORT), Some(Ok(VxlanHeader { vni: 100, inner_offset: 50 })));
        assert_eq!(p.vxlan(&v, 4790), None);
        let mut short = udp4();
        short[16..18].copy_from_slice(&30u16.to_be_bytes());
        short[38..40].copy_from_slice(&10u16.to_be_bytes());
        short[36..38].copy_from_slice(&VXLAN_PORT.to_be_bytes());
        let p = parse(&short, 0, None);
        assert_eq!(p.vxlan(&short, VXLAN_PORT), Some(Err(ParseError::TruncatedVxlan)));
        let mut bad_udp = udp4();
        bad_udp[38..40].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(parse(&bad_udp, 0, None).error, Some(ParseError::BadUdpLength));
    }

    /// Compares two parse results field by field.
    fn same(a: &Parsed, b: &Parsed) -> bool {
        a.key == b.key
            && a.l3_offset == b.l3_offset
            && a.l4_offset == b.l4_offset
            && a.l3_end == b.l3_end
            && a.error == b.error
    }

    /// [`udp4`] as TCP (a 20-byte header, SYN+ACK).
    fn tcp4() -> Vec<u8> {
        let mut tcp = udp4();
        tcp[23] = IPPROTO_TCP;
        tcp[16..18].copy_from_slice(&46u16.to_be_bytes());
        tcp[46] = 0x50;
        tcp[47] = 0x12;
        tcp
    }

    #[test]
    fn fast_path_equals_the_full_parser_under_every_single_byte_change() {
        let tcp = tcp4();
        let meta = TunnelMeta { vni: 7, src: ipv4_to([1, 2, 3, 4]), dst: ipv4_to([5, 6, 7, 8]), ipv6: false };
        let mut fast = 0;
        for base in [udp4(), tcp] {
            for len in [42, 53, 54, 60] {
                for at in 0..len {
                    for v in [0u8, 1, 0x05, 0x06, 0x08, 0x11, 0x20, 0x2e, 0x40, 0x45, 0x46, 0x50, 0xff] {
                        let mut f = base[..len].to_vec();
                        f[at] = v;
                        for t in [None, Some(&meta)] {
                            let full = parse_full(&f, 3, t);
                            let mut key = FlowKey::ZERO;
                            if let Some((l, hash)) = parse_fast(&f, 3, t, &mut key) {
                                fast += 1;
                                assert_eq!(hash, key.hash(), "the fast path's hash is the key's");
                                let p = l.with_key(key);
                                assert!(same(&p, &full), "byte {at} = {v:#x}, len {len}: {p:?} vs {full:?}");
                            }
                            assert!(same(&parse(&f, 3, t), &full));
                        }
                    }
                }
            }
        }
        assert!(fast > 1000, "the fast path answered only {fast} times");
    }

    /// `same_fast_key` says "same key" only when the full parser agrees, and
    /// says it for packets of one flow that differ in what the key lacks.
    #[test]
    fn same_fast_key_only_when_the_full_parser_gives_the_same_key() {
        let tcp = tcp4();
        let (mut same_said, mut checked) = (0, 0);
        for base in [udp4(), tcp] {
            for len in [47, 48, 54, 60] {
                let one_change = |at: usize, v: u8| {
                    let mut f = base[..len].to_vec();
                    if at < len {
                        f[at] = v;
                    }
                    f
                };
                let prevs: Vec<Vec<u8>> =
                    (0..MEMO_LEN).flat_map(|at| [0u8, 0x45, 0xff].map(|v| one_change(at, v))).collect();
                for prev in prevs.iter().filter(|p| parse_fast(p, 3, None, &mut FlowKey::default()).is_some()) {
                    let want_key = parse_full(prev, 3, None).key;
                    for at in 0..len {
                        for v in [0u8, 1, 0x05, 0x06, 0x08, 0x11, 0x20, 0x2e, 0x40, 0x45, 0x46, 0x50, 0xff] {
                            let f = one_change(at, v);
                            checked += 1;
                            if let Some(l) = same_fast_key(prev, &f) {
                                same_said += 1;
                                let full = parse_full(&f, 3, None);
                                assert!(same(&l.with_key(want_key), &full), "byte {at} = {v:#x}, len {len}");
                            }
                        }
                    }
                }
            }
            // Packets of one flow differing in IP id and checksum, UDP
            // checksum or payload: found the same.
            let mut next = base.clone();
            next[18..20].copy_from_slice(&[0x12, 0x34]);
            next[24..26].copy_from_slice(&[0xab, 0xcd]);
            next[40..42].copy_from_slice(&[0x55, 0xaa]);
            next[59] = 0x77;
            assert!(same_fast_key(&base, &next).is_some());
        }
        assert!(same_said > 10_000, "said same {same_said} times of {checked}");
    }

    /// Frames with equal `FrameKey`s have equal flow keys (the full
    /// parser's), and a frame has one only when the fast path takes it;
    /// frames of one flow that differ in what the key lacks (IP id and
    /// checksum, UDP checksum and payload, lengths) share it.
    #[test]
    fn equal_frame_keys_only_for_equal_flow_keys() {
        let mut by_frame_key: std::collections::HashMap<[u64; 6], FlowKey> = std::collections::HashMap::new();
        let (mut framed, mut checked, mut runs) = (0, 0, 0);
        for base in [udp4(), tcp4()] {
            let base_key = FrameKey::of(&base, 3).expect("the fast path takes it");
            // Every single-byte change, and every pair of changes to three
            // values, of frames a little shorter than the IP packet and whole.
            let values = [0u8, 1, 0x05, 0x06, 0x08, 0x11, 0x20, 0x2e, 0x40, 0x45, 0x46, 0x50, 0xff];
            let mut changes: Vec<Vec<(usize, u8)>> =
                (0..base.len()).flat_map(|at| values.map(|v| vec![(at, v)])).collect();
            for a in 0..MEMO_LEN {
                for b in a + 1..MEMO_LEN {
                    changes.extend([(0u8, 0x45u8), (0xff, 0), (0x11, 0x06)].map(|(x, y)| vec![(a, x), (b, y)]));
                }
            }
            for len in [47, 48, 54, 60] {
                for change in &changes {
                    let mut f = base[..len].to_vec();
                    for &(at, v) in change.iter().filter(|(at, _)| *at < len) {
                        f[at] = v;
                    }
                    checked += 1;
                    // The run check says "same" exactly when the frame key is.
                    let same = base_key.same_frame(&f, 3);
                    assert_eq!(same, FrameKey::of(&f, 3) == Some(base_key), "{change:?}, len {len}");
                    runs += usize::from(same);
                    let Some(fk) = FrameKey::of(&f, 3) else { continue };
                    framed += 1;
                    let mut fast = FlowKey::default();
                    assert!(parse_fast(&f, 3, None, &mut fast).is_some(), "{change:?}, len {len}");
                    let full = parse_full(&f, 3, None);
                    assert!(full.error.is_none() && full.key == fast, "{change:?}, len {len}");
                    let sport = offload::entropy::vxlan_src_port(&InnerFlow::from_frame(&f));
                    assert_eq!(fk.src_port(), sport, "{change:?}, len {len}");
                    let first = *by_frame_key.entry(fk.0).or_insert(full.key);
                    assert!(first == full.key, "{change:?}, len {len}: one frame key, two flow keys");
                }
            }
            let fk = base_key;
            let mut next = base.clone();
            next[18..20].copy_from_slice(&[0x12, 0x34]);
            next[24..26].copy_from_slice(&[0xab, 0xcd]);
            next[40..42].copy_from_slice(&[0x55, 0xaa]);
            next[59] = 0x77;
            next.extend_from_slice(&[0; 4]);
            assert_eq!(FrameKey::of(&next, 3), Some(fk), "one flow");
            assert!(fk.same_frame(&next, 3) && !fk.same_frame(&next, 4) && !fk.same_frame(&next, 3 + (1 << 16)));
            assert_ne!(FrameKey::of(&base, 4), Some(fk), "another port");
            assert_eq!(FrameKey::of(&base, 1 << 16), None, "a port above 16 bits");
        }
        // A UDP frame's bytes 46..48 are payload: not part of its frame key.
        let mut f = udp4();
        let fk = FrameKey::of(&f, 3);
        f[46..48].copy_from_slice(&[0x5a, 0xa5]);
        assert_eq!(FrameKey::of(&f, 3), fk);
        assert!(
            framed > 5_000 && by_frame_key.len() > 1_500,
            "{framed} framed of {checked}, {} keys",
            by_frame_key.len()
        );
        assert!(runs > 500, "{runs} runs");
    }

    /// `FAST_KEY_BYTES` names, for every byte of the fast path's key, the
    /// frame byte it is built from: flipping any bit of a frame (that the
    /// fast path still takes) changes only key bytes the table gives that
    /// frame byte, each table entry is changed by some bit of its byte, and
    /// another port changes only the port's bytes.
    #[test]
    fn frame_key_bytes_table_matches_the_parser() {
        let key_of = |f: &[u8], port: u32| {
            let mut k = FlowKey::ZERO;
            parse_fast(f, port, None, &mut k).map(|_| k)
        };
        // The (word, byte) places where two keys differ, with the table's
        // source for each.
        let differ = |a: &FlowKey, b: &FlowKey| {
            let mut at = Vec::new();
            for (w, (x, y)) in a.words.iter().zip(b.words.iter()).enumerate() {
                for (byte, &src) in FAST_KEY_BYTES[w].iter().enumerate() {
                    if (x ^ y) >> (8 * byte) & 0xff != 0 {
                        at.push((w, byte, src));
                    }
                }
            }
            at
        };
        let mut seen = [[false; 8]; KEY_WORDS];
        for base in [udp4(), tcp4()] {
            let want = key_of(&base, 3).expect("the fast path takes it");
            for at in 0..MEMO_LEN {
                for bit in 0..8 {
                    let mut f = base.clone();
                    f[at] ^= 1 << bit;
                    let Some(k) = key_of(&f, 3) else { continue };
                    for (w, byte, src) in differ(&want, &k) {
                        assert_eq!(usize::from(src), at, "key word {w} byte {byte}");
                        seen[w][byte] = true;
                    }
                }
            }
            let other = key_of(&base, 0x1234).expect("the fast path takes it");
            for (w, byte, src) in differ(&want, &other) {
                assert_eq!(src, PORT, "key word {w} byte {byte}");
            }
        }
        // The protocol byte cannot change by one bit (the fast path takes
        // UDP and TCP only): the two bases' keys differ only where their
        // frames do.
        let (u, t) = (udp4(), tcp4());
        let (ku, kt) = (key_of(&u, 3).expect("UDP"), key_of(&t, 3).expect("TCP"));
        for (w, byte, src) in differ(&ku, &kt) {
            let at = usize::from(src);
            assert!(at < MEMO_LEN && u[at] != t[at], "key word {w} byte {byte}");
            seen[w][byte] = true;
        }
        for (w, sources) in FAST_KEY_BYTES.iter().enumerate() {
            for (byte, &src) in sources.iter().enumerate() {
                assert!(src >= PORT || seen[w][byte], "key word {w} byte {byte} (frame byte {src}) never changed");
            }
        }
    }

    /// Frames whose frame keys are equal under a `FrameMask` have flow keys
    /// equal under the flow mask it was made from: random masks (some
    /// fields, some bits of each) over frames that differ from a base in a
    /// few random bytes, on two ports. The frames of one megaflow that
    /// differ only where the mask does not look are found equal.
    #[test]
    fn frames_equal_under_a_frame_mask_have_equal_masked_flow_keys() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut equal, mut pairs) = (0, 0);
        for round in 0..400 {
            let mut mask = FlowMask::default();
            for &field in Field::ALL.iter() {
                if rand() % 4 == 0 {
                    let bits = if rand() % 2 == 0 { field.full() } else { u128::from(rand()) & field.full() };
                    mask.set(field, bits);
                }
            }
            let fm = FrameMask::of(&mask);
            let base = if round % 2 == 0 { udp4() } else { tcp4() };
            let frames: Vec<(Vec<u8>, u32)> = (0..24)
                .map(|_| {
                    let mut f = base.clone();
                    for _ in 0..rand() % 3 {
                        let at = (rand() % MEMO_LEN as u64) as usize;
                        f[at] = rand() as u8;
                    }
                    (f, 3 + (rand() % 2) as u32)
                })
                .collect();
            for (a, pa) in &frames {
                for (b, pb) in &frames {
                    let (Some(ka), Some(kb)) = (FrameKey::of(a, *pa), FrameKey::of(b, *pb)) else { continue };
                    pairs += 1;
                    if !ka.eq_masked(&kb, &fm) {
                        continue;
                    }
                    equal += 1;
                    let (mut fa, mut fb) = (FlowKey::ZERO, FlowKey::ZERO);
                    assert!(parse_fast(a, *pa, None, &mut fa).is_some() && parse_fast(b, *pb, None, &mut fb).is_some());
                    assert!(fa.masked(&mask) == fb.masked(&mask), "round {round}: {a:?} vs {b:?}");
                }
            }
        }
        assert!(equal > 20_000 && equal < pairs, "{equal} equal of {pairs}");
        // The benchmark's megaflow: the input port, UDP, a /24 destination,
        // the destination port. Another source address or port: the same;
        // another destination in the /24: the same; outside it, or another
        // port: not.
        let mut mask = FlowMask::default();
        for field in [Field::InPort, Field::EthType, Field::IpProto, Field::TpDst] {
            mask.exact(field);
        }
        mask.set(Field::NwDst, 0xffff_ff00);
        let fm = FrameMask::of(&mask);
        let base = FrameKey::of(&udp4(), 3).expect("framed");
        let with = |at: usize, v: u8, port: u32| {
            let mut f = udp4();
            f[at] = v;
            FrameKey::of(&f, port).expect("framed")
        };
        assert!(base.eq_masked(&with(29, 9, 3), &fm) && base.eq_masked(&with(35, 9, 3), &fm));
        assert!(base.eq_masked(&with(33, 9, 3), &fm) && base.eq_masked(&with(22, 9, 3), &fm));
        assert!(!base.eq_masked(&with(32, 9, 3), &fm) && !base.eq_masked(&with(37, 9, 3), &fm));
        assert!(!base.eq_masked(&with(35, 9, 4), &fm));
        assert!(!base.eq_masked(&FrameKey::of(&tcp4(), 3).expect("framed"), &fm), "TCP");
    }

    /// `VxlanBytes::same_outer` says "same outer headers" only when the
    /// full parser gives the same outer key (the UDP source port aside) and
    /// VXLAN header, and the frame's IP packet ends where it says.
    #[test]
    fn same_outer_only_when_the_full_parser_gives_the_same_outer_key() {
        // udp4's inner frame behind VXLAN (VNI 0x10203) to port 4789.
        let inner = udp4();
        let mut base = udp4()[..42].to_vec();
        base[36..38].copy_from_slice(&4789u16.to_be_bytes());
        base.extend_from_slice(&[0x08, 0, 0, 0, 0x01, 0x02, 0x03, 0]);
        base.extend_from_slice(&inner);
        let total = (base.len() - 14) as u16;
        base[16..18].copy_from_slice(&total.to_be_bytes());
        base[38..40].copy_from_slice(&(total - 20).to_be_bytes());
        let prev = parse_full(&base, 3, None);
        let vx = prev.vxlan(&base, 4789).expect("VXLAN").expect("well-formed");
        assert!(parse_fast(&base, 3, None, &mut FlowKey::default()).is_some());
        let bytes = VxlanBytes::of(&base).expect("long enough");
        let (mut said, mut checked) = (0, 0);
        for at in 0..VXLAN4_HEADERS + 2 {
            for v in [0u8, 1, 0x08, 0x11, 0x12, 0x20, 0x40, 0x45, 0x46, 0xff] {
                for tail in [0usize, 4] {
                    let mut f = base.clone();
                    f[at] = v;
                    f.extend(std::iter::repeat_n(0, tail));
                    checked += 1;
                    let Some(end) = bytes.same_outer(&f) else { continue };
                    said += 1;
                    let full = parse_full(&f, 3, None);
                    let mut want = prev.key;
                    want.set(Field::TpSrc, full.key.get(Field::TpSrc));
                    assert!(full.error.is_none() && full.key == want, "byte {at} = {v:#x}");
                    assert_eq!(usize::from(full.l3_end), end, "byte {at} = {v:#x}");
                    assert_eq!(full.vxlan(&f, 4789), Some(Ok(vx)), "byte {at} = {v:#x}");
                }
            }
        }
        // Lengths: each IP total length with each UDP length around it.
        for total in [28u16, 35, 36, 49, 50, 51, 95, 96, 97] {
            for udp in [total - 21, total - 20, total - 19, 8, 7] {
                let mut f = base.clone();
                f[16..18].copy_from_slice(&total.to_be_bytes());
                f[38..40].copy_from_slice(&udp.to_be_bytes());
                let Some(end) = bytes.same_outer(&f) else { continue };
                said += 1;
                let full = parse_full(&f, 3, None);
                assert!(full.error.is_none() && usize::from(full.l3_end) == end, "total {total}, udp {udp}");
                assert_eq!(full.vxlan(&f, 4789), Some(Ok(vx)), "total {total}, udp {udp}");
            }
        }
        // The frames of one tunnel differing in IP id and checksum, UDP
        // source port and checksum, padding: found the same.
        let mut next = base.clone();
        next[18..20].copy_from_slice(&[0x12, 0x34]);
        next[34..36].copy_from_slice(&[0xc0, 0x01]);
        next[40..42].copy_from_slice(&[0xab, 0xcd]);
        next.extend_from_slice(&[0; 6]);
        assert_eq!(bytes.same_outer(&next), Some(base.len()));
        assert!(said > 100, "said same {said} times of {checked}");
    }

    #[test]
    fn every_prefix_of_a_frame_parses_without_panic() {
        let f = udp4();
        for n in 0..f.len() {
            let _ = parse(&f[..n], 0, None);
        }
    }
}
