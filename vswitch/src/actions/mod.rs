//! Packet actions on bytes: VLAN push/pop, MAC rewrite, VXLAN encap/decap.
//! They work on any [`PacketBuf`] (an mbuf in the datapath, a `VecPacket` in
//! tests and benchmarks; the trait is `offload`'s, shared with the model
//! e-switch).

#![forbid(unsafe_code)]

pub mod control_packets;
pub mod vxlan;

use crate::packet::parse::{ETH_TYPE_QINQ, ETH_TYPE_VLAN};

/// What a rule does with a packet, in order. An empty list drops.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send a copy out of a port (by datapath port number). A packet is
    /// never sent back out of the port it came in on this way (as in Open
    /// vSwitch): that output is skipped.
    Output(u32),
    /// Send a copy back out of the port the packet came in on
    /// (`output:in_port`). Rules only: a megaflow has it as `Output` of its
    /// (always exact) input port.
    InPort,
    /// Push an 802.1Q (0x8100) or 802.1ad (0x88a8) tag.
    PushVlan {
        tpid: u16,
        tci: u16,
    },
    /// Pop the outermost VLAN tag (no-op on untagged frames).
    PopVlan,
    /// Set the outermost tag's VLAN id, pushing an 802.1Q tag on untagged frames.
    SetVlanVid(u16),
    SetEthSrc([u8; 6]),
    SetEthDst([u8; 6]),
    /// Set the VNI used by a following output to a tunnel port.
    SetTunnel(u32),
    /// Drop explicitly (the same as no output).
    Drop,
    /// Send the packet to the OpenFlow controllers (PACKET_IN), its first
    /// `max_len` bytes (65535: all of it). Rate-limited per PMD; a flow
    /// with it stays in software.
    Controller {
        max_len: u16,
    },
}

/// Why an action could not be applied. The datapath counts and drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("not enough headroom to add {0} bytes")]
    NoHeadroom(u16),
    #[error("frame too short for the action")]
    TooShort,
    #[error("frame too long to encapsulate")]
    TooLong,
    #[error("not a VXLAN packet")]
    NotVxlan,
    #[error("malformed VXLAN outer headers")]
    BadOuter,
    #[error("bad outer checksum")]
    BadChecksum,
}

pub use offload::packet::{PacketBuf, VecPacket};

/// Pushes a VLAN tag after the MAC addresses.
pub fn push_vlan(pkt: &mut impl PacketBuf, tpid: u16, tci: u16) -> Result<(), ActionError> {
    if pkt.data().len() < 14 {
        return Err(ActionError::TooShort);
    }
    pkt.prepend(4).ok_or(ActionError::NoHeadroom(4))?;
    let d = pkt.data_mut();
    d.copy_within(4..16, 0);
    d[12..14].copy_from_slice(&tpid.to_be_bytes());
    d[14..16].copy_from_slice(&tci.to_be_bytes());
    Ok(())
}

/// Pops the outermost VLAN tag; returns whether there was one.
pub fn pop_vlan(pkt: &mut impl PacketBuf) -> Result<bool, ActionError> {
    let d = pkt.data_mut();
    if d.len() < 18 {
        return Ok(false);
    }
    let tpid = u16::from_be_bytes([d[12], d[13]]);
    if tpid != ETH_TYPE_VLAN && tpid != ETH_TYPE_QINQ {
        return Ok(false);
    }
    d.copy_within(0..12, 4);
    Ok(pkt.adj(4))
}

/// Sets the outermost tag's VLAN id (keeping its priority bits), or pushes an
/// 802.1Q tag with that id on an untagged frame.
pub fn set_vlan_vid(pkt: &mut impl PacketBuf, vid: u16) -> Result<(), ActionError> {
    let d = pkt.data_mut();
    if d.len() < 14 {
        return Err(ActionError::TooShort);
    }
    let tpid = u16::from_be_bytes([d[12], d[13]]);
    if (tpid == ETH_TYPE_VLAN || tpid == ETH_TYPE_QINQ) && d.len() >= 18 {
        let tci = (u16::from_be_bytes([d[14], d[15]]) & 0xf000) | (vid & 0x0fff);
        d[14..16].copy_from_slice(&tci.to_be_bytes());
        return Ok(());
    }
    push_vlan(pkt, ETH_TYPE_VLAN, vid & 0x0fff)
}

/// Rewrites the Ethernet source address.
pub fn set_eth_src(pkt: &mut impl PacketBuf, mac: [u8; 6]) -> Result<(), ActionError> {
    let d = pkt.data_mut();
    d.get_mut(6..12).ok_or(ActionError::TooShort)?.copy_from_slice(&mac);
    Ok(())
}

/// Rewrites the Ethernet destination address.
pub fn set_eth_dst(pkt: &mut impl PacketBuf, mac: [u8; 6]) -> Result<(), ActionError> {
    let d = pkt.data_mut();
    d.get_mut(0..6).ok_or(ActionError::TooShort)?.copy_from_slice(&mac);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_push_pop_roundtrip() {
        let frame: Vec<u8> = (0u8..60).collect();
        let mut p = VecPacket::new(&frame, 8);
        push_vlan(&mut p, ETH_TYPE_VLAN, 0x0064).expect("push");
        assert_eq!(p.data().len(), 64);
        assert_eq!(&p.data()[12..16], &[0x81, 0x00, 0x00, 0x64]);
        assert_eq!(&p.data()[..12], &frame[..12]);
        assert_eq!(&p.data()[16..], &frame[12..]);
        assert_eq!(pop_vlan(&mut p), Ok(true));
        assert_eq!(p.data(), &frame[..]);
        assert_eq!(pop_vlan(&mut p), Ok(false), "untagged: no change");
        set_vlan_vid(&mut p, 7).expect("push by vid");
        assert_eq!(&p.data()[12..16], &[0x81, 0x00, 0x00, 0x07]);
        p.data_mut()[14] |= 0xa0;
        set_vlan_vid(&mut p, 0x123).expect("rewrite vid");
        assert_eq!(&p.data()[12..16], &[0x81, 0x00, 0xa1, 0x23], "priority bits kept");
        assert_eq!(pop_vlan(&mut p), Ok(true));
        let mut tight = VecPacket::new(&frame, 2);
        assert_eq!(push_vlan(&mut tight, ETH_TYPE_VLAN, 1), Err(ActionError::NoHeadroom(4)));
        assert_eq!(tight.data(), &frame[..]);
    }

    #[test]
    fn mac_rewrite() {
        let mut p = VecPacket::new(&[0u8; 20], 0);
        set_eth_dst(&mut p, [1; 6]).expect("dst");
        set_eth_src(&mut p, [2; 6]).expect("src");
        assert_eq!(&p.data()[..12], &[1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
        let mut short = VecPacket::new(&[0u8; 8], 0);
        assert_eq!(set_eth_src(&mut short, [2; 6]), Err(ActionError::TooShort));
    }
}
