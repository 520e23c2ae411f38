//! Protocol numbers the parser and the flow key share.

pub const ETH_TYPE_IPV4: u16 = 0x0800;
pub const ETH_TYPE_ARP: u16 = 0x0806;
pub const ETH_TYPE_IPV6: u16 = 0x86dd;
pub const ETH_TYPE_VLAN: u16 = 0x8100;
pub const ETH_TYPE_QINQ: u16 = 0x88a8;
/// `eth_type` of 802.3 frames whose type field is a length (as Open vSwitch).
pub const ETH_TYPE_NONE: u16 = 0x05ff;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Default VXLAN UDP port (IANA).
pub const VXLAN_PORT: u16 = 4789;
