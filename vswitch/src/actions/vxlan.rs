//! VXLAN (RFC 7348) encapsulation from a prebuilt outer-header template, and
//! decapsulation.
//!
//! The template holds the outer Ethernet, IPv4 or IPv6, UDP and VXLAN headers
//! with every per-packet field zero. Per packet, encap copies it in front of
//! the frame and fills the lengths, the IPv4 header checksum (updated
//! incrementally from the template's), the UDP source port (given by the
//! caller from the inner flow, so ECMP spreads flows) and, for IPv6, the UDP checksum (IPv4
//! uses 0, as RFC 7348 allows).

use super::{ActionError, PacketBuf};
use crate::packet::checksum;
use crate::packet::parse::{parse, Parsed, TunnelMeta, ETH_TYPE_IPV4, ETH_TYPE_IPV6, VXLAN4_HEADERS};
use crate::packet::Field;
use std::net::IpAddr;

/// Outer header bytes over an IPv4 underlay.
pub const OVERHEAD_IPV4: usize = 50;
/// Outer header bytes over an IPv6 underlay.
pub const OVERHEAD_IPV6: usize = 70;

/// Everything that defines a tunnel's outer headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncapSpec {
    pub eth_src: [u8; 6],
    pub eth_dst: [u8; 6],
    pub ip_src: IpAddr,
    pub ip_dst: IpAddr,
    pub vni: u32,
    pub udp_dst: u16,
    pub ttl: u8,
    pub tos: u8,
    /// Set IPv4 don't-fragment (default in practice).
    pub df: bool,
}

/// Why a template could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncapSpecError {
    #[error("outer source and destination must both be IPv4 or both IPv6")]
    MixedFamilies,
    #[error("VNI {0} does not fit in 24 bits")]
    VniTooLarge(u32),
}

/// A prebuilt outer header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncapTemplate {
    header: [u8; OVERHEAD_IPV6],
    len: usize,
    /// IPv4 header checksum with total length 0.
    ipv4_check_base: u16,
    spec: EncapSpec,
}

impl EncapTemplate {
    /// Builds the template.
    ///
    /// # Errors
    /// [`EncapSpecError`] for mixed address families or a VNI over 24 bits.
    pub fn new(spec: EncapSpec) -> Result<Self, EncapSpecError> {
        if spec.vni > 0x00ff_ffff {
            return Err(EncapSpecError::VniTooLarge(spec.vni));
        }
        let mut h = [0u8; OVERHEAD_IPV6];
        h[0..6].copy_from_slice(&spec.eth_dst);
        h[6..12].copy_from_slice(&spec.eth_src);
        let (ipv6, l4) = match (spec.ip_src, spec.ip_dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                h[12..14].copy_from_slice(&ETH_TYPE_IPV4.to_be_bytes());
                let ip = &mut h[14..34];
                ip[0] = 0x45;
                ip[1] = spec.tos;
                if spec.df {
                    ip[6] = 0x40;
                }
                ip[8] = spec.ttl;
                ip[9] = 17;
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                (false, 34)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                h[12..14].copy_from_slice(&ETH_TYPE_IPV6.to_be_bytes());
                let ip = &mut h[14..54];
                ip[0] = 0x60 | (spec.tos >> 4);
                ip[1] = spec.tos << 4;
                ip[6] = 17;
                ip[7] = spec.ttl;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
                (true, 54)
            }
            _ => return Err(EncapSpecError::MixedFamilies),
        };
        h[l4 + 2..l4 + 4].copy_from_slice(&spec.udp_dst.to_be_bytes());
        let vx = &mut h[l4 + 8..l4 + 16];
        vx[0] = 0x08;
        vx[4..7].copy_from_slice(&spec.vni.to_be_bytes()[1..4]);
        let ipv4_check_base = if ipv6 { 0 } else { checksum::ipv4_header(&h[14..34]) };
        Ok(Self { header: h, len: l4 + 16, ipv4_check_base, spec })
    }

    /// Outer header length (50 or 70).
    pub fn overhead(&self) -> usize {
        self.len
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &EncapSpec {
        &self.spec
    }

    /// Encapsulates `pkt` with outer UDP source port `src_port` (see
    /// `offload::entropy::vxlan_src_port`, which the model e-switch uses too).
    ///
    /// # Errors
    /// [`ActionError::NoHeadroom`], or [`ActionError::TooLong`] when the outer
    /// packet would exceed 65535 bytes.
    pub fn encap(&self, pkt: &mut impl PacketBuf, src_port: u16) -> Result<(), ActionError> {
        let inner_len = pkt.data().len();
        let l3_len = inner_len + self.len - 14;
        let Ok(l3_len16) = u16::try_from(l3_len) else { return Err(ActionError::TooLong) };
        let overhead = self.len as u16;
        let out = pkt.prepend(overhead).ok_or(ActionError::NoHeadroom(overhead))?;
        // 50 bytes taken: the IPv4 template (70 is IPv6's). As an array its
        // fields are written without bounds checks, and the copy is a few
        // vector moves, not a call to memcpy.
        if let Ok(head) = <&mut [u8; OVERHEAD_IPV4]>::try_from(&mut *out) {
            self.write_ipv4(head, l3_len16, src_port);
            return Ok(());
        }
        let n = out.len();
        out.copy_from_slice(&self.header[..n]);
        let udp_len = (l3_len - 40) as u16;
        out[18..20].copy_from_slice(&udp_len.to_be_bytes());
        out[54..56].copy_from_slice(&src_port.to_be_bytes());
        out[58..60].copy_from_slice(&udp_len.to_be_bytes());
        let d = pkt.data_mut();
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&d[22..38]);
        dst.copy_from_slice(&d[38..54]);
        let mut c = checksum::ipv6_l4(&src, &dst, 17, &d[54..]);
        if c == 0 {
            c = 0xffff;
        }
        d[60..62].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }

    /// The IPv4 outer headers into `head`, for an outer IP packet of
    /// `l3_len` bytes: total length, header checksum (from the template's,
    /// incrementally), UDP source port and length.
    #[inline(always)]
    fn write_ipv4(&self, head: &mut [u8; OVERHEAD_IPV4], l3_len: u16, src_port: u16) {
        let (a, b) = head.split_at_mut(32);
        a.copy_from_slice(&self.header[..32]);
        b.copy_from_slice(&self.header[32..OVERHEAD_IPV4]);
        head[16..18].copy_from_slice(&l3_len.to_be_bytes());
        let check = checksum::update16(self.ipv4_check_base, 0, l3_len);
        head[24..26].copy_from_slice(&check.to_be_bytes());
        head[34..36].copy_from_slice(&src_port.to_be_bytes());
        head[38..40].copy_from_slice(&(l3_len - 20).to_be_bytes());
    }
}

/// Decapsulates a VXLAN packet addressed to `udp_port`: checks the outer
/// headers (IPv4 header checksum; UDP checksum when non-zero), strips them and
/// returns the tunnel metadata. The packet is unchanged on error.
///
/// # Errors
/// [`ActionError::NotVxlan`], [`ActionError::BadOuter`] or
/// [`ActionError::BadChecksum`].
pub fn decap(pkt: &mut impl PacketBuf, udp_port: u16) -> Result<TunnelMeta, ActionError> {
    let outer = parse(pkt.data(), 0, None);
    decap_parsed(pkt, &outer, udp_port)
}

/// [`decap`] for a packet the caller already parsed (`outer` must be the
/// parse of `pkt`'s current data), so the datapath parses the outer headers
/// once.
///
/// # Errors
/// As [`decap`].
pub fn decap_parsed(pkt: &mut impl PacketBuf, outer: &Parsed, udp_port: u16) -> Result<TunnelMeta, ActionError> {
    let d = pkt.data();
    let vx = match outer.vxlan(d, udp_port) {
        None => return Err(ActionError::NotVxlan),
        Some(Err(_)) => return Err(ActionError::BadOuter),
        Some(Ok(v)) => v,
    };
    let l3 = usize::from(outer.l3_offset);
    let l4 = usize::from(outer.l4_offset.ok_or(ActionError::BadOuter)?);
    let end = usize::from(outer.l3_end);
    let ipv6 = outer.key.eth_type() == ETH_TYPE_IPV6;
    if ipv6 {
        let udp_check = u16::from_be_bytes([d[l4 + 6], d[l4 + 7]]);
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&d[l3 + 8..l3 + 24]);
        dst.copy_from_slice(&d[l3 + 24..l3 + 40]);
        if udp_check != 0 && checksum::ipv6_l4(&src, &dst, 17, &d[l4..end]) != 0 {
            return Err(ActionError::BadChecksum);
        }
    } else {
        check_ipv4_outer(d, l3, l4, end)?;
    }
    let meta = TunnelMeta { vni: vx.vni, src: outer.key.get(Field::NwSrc), dst: outer.key.get(Field::NwDst), ipv6 };
    strip(pkt, vx.inner_offset, end)?;
    Ok(meta)
}

/// [`decap_parsed`] for a frame whose outer headers have the bytes of one
/// decapsulated before it ([`VxlanBytes::same_outer`] said so and where
/// its IP packet ends, `end`): only its checksums are left to check, then
/// the headers are stripped. Its tunnel metadata is the earlier frame's.
///
/// # Errors
/// [`ActionError::BadChecksum`] or [`ActionError::BadOuter`]; the packet
/// is unchanged then.
///
/// [`VxlanBytes::same_outer`]: crate::packet::parse::VxlanBytes::same_outer
#[inline]
pub fn decap_same_outer(pkt: &mut impl PacketBuf, end: usize) -> Result<(), ActionError> {
    let d = pkt.data();
    if d.len() < end || end < VXLAN4_HEADERS {
        return Err(ActionError::BadOuter);
    }
    check_ipv4_outer(d, 14, 34, end)?;
    strip(pkt, VXLAN4_HEADERS as u16, end)
}

/// The outer IPv4 header's checksum (header at `l3`), and the UDP
/// checksum (at `l4`, datagram through `end`) unless it is 0.
#[inline(always)]
fn check_ipv4_outer(d: &[u8], l3: usize, l4: usize, end: usize) -> Result<(), ActionError> {
    let ihl = usize::from(d[l3] & 0x0f) * 4;
    let header_ok = match d.get(l3..l3 + 20).and_then(|h| <&[u8; 20]>::try_from(h).ok()) {
        Some(h) if ihl == 20 => checksum::ipv4_header_ok(h),
        _ => checksum::checksum(&d[l3..l3 + ihl]) == 0,
    };
    if !header_ok {
        return Err(ActionError::BadChecksum);
    }
    let udp_check = u16::from_be_bytes([d[l4 + 6], d[l4 + 7]]);
    let src = [d[l3 + 12], d[l3 + 13], d[l3 + 14], d[l3 + 15]];
    let dst = [d[l3 + 16], d[l3 + 17], d[l3 + 18], d[l3 + 19]];
    if udp_check != 0 && checksum::ipv4_l4(&src, &dst, 17, &d[l4..end]) != 0 {
        return Err(ActionError::BadChecksum);
    }
    Ok(())
}

/// Strips the outer headers (the inner frame starts at `inner`) and any
/// Ethernet padding after the outer IP packet (which ends at `end`): it
/// belongs to no layer, the inner frame ends where the UDP payload ends.
#[inline]
fn strip(pkt: &mut impl PacketBuf, inner: u16, end: usize) -> Result<(), ActionError> {
    let trailing = (pkt.data().len() - end) as u16;
    if !pkt.adj(inner) || (trailing != 0 && !pkt.trim(trailing)) {
        return Err(ActionError::BadOuter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::VecPacket;
    use crate::packet::key::ipv4;

    pub(crate) fn spec_v4() -> EncapSpec {
        EncapSpec {
            eth_src: [2, 0, 0, 0, 1, 1],
            eth_dst: [2, 0, 0, 0, 1, 2],
            ip_src: ipv4(198, 18, 0, 1),
            ip_dst: ipv4(198, 18, 0, 2),
            vni: 100,
            udp_dst: 4789,
            ttl: 64,
            tos: 0,
            df: true,
        }
    }

    #[test]
    fn ipv4_encap_decap_roundtrip_and_checksum() {
        let t = EncapTemplate::new(spec_v4()).expect("template");
        let inner: Vec<u8> = (0..60u8).collect();
        let mut p = VecPacket::new(&inner, 128);
        t.encap(&mut p, 0xdead).expect("encap");
        assert_eq!(p.data().len(), inner.len() + OVERHEAD_IPV4);
        assert_eq!(checksum::checksum(&p.data()[14..34]), 0, "valid IPv4 header checksum");
        let meta = decap(&mut p, 4789).expect("decap");
        assert_eq!(meta.vni, 100);
        assert_eq!(p.data(), &inner[..]);
    }

    #[test]
    fn template_errors() {
        let mut s = spec_v4();
        s.vni = 1 << 24;
        assert_eq!(EncapTemplate::new(s), Err(EncapSpecError::VniTooLarge(1 << 24)));
        let mut s = spec_v4();
        s.ip_dst = "2001:db8::2".parse().expect("v6");
        assert_eq!(EncapTemplate::new(s), Err(EncapSpecError::MixedFamilies));
    }
}
