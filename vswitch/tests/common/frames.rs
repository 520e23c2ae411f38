//! Frames the integration tests send.

pub fn mac(last: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, last]
}

/// Ethernet + optional VLAN + IPv4 + UDP, 64+ bytes, payload tagged with `seq`.
pub fn udp(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    vlan: Option<u16>,
    src: [u8; 4],
    dst: [u8; 4],
    dport: u16,
    seq: u16,
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let payload = 18usize;
    let total = (20 + 8 + payload) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&seq.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = vswitch::packet::checksum::ipv4_header(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&(1000 + seq).to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend((0..payload).map(|k| (seq as usize + k) as u8));
    f
}

/// A new-flow flood (20,000 destinations, each its own megaflow under a
/// rule on `nw_dst`) and 10 established flows, as the flood tests offer
/// them, to `dst`.
pub fn flood_and_established(dst: [u8; 6]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let flood = (0..20_000u32)
        .map(|i| udp(dst, mac(0x10), None, [10, 0, 0, 1], [10, 2, (i >> 8) as u8, i as u8], 5000, 0))
        .collect();
    let est = (0..10u8).map(|i| udp(dst, mac(0x11), None, [10, 1, 0, 1], [10, 3, 0, i], 5000, 0)).collect();
    (flood, est)
}

pub fn push_vlan(f: &[u8], vid: u16) -> Vec<u8> {
    let mut o = f[..12].to_vec();
    o.extend_from_slice(&[0x81, 0x00]);
    o.extend_from_slice(&vid.to_be_bytes());
    o.extend_from_slice(&f[12..]);
    o
}

pub fn strip_vlan(f: &[u8]) -> Vec<u8> {
    let mut o = f[..12].to_vec();
    o.extend_from_slice(&f[16..]);
    o
}
