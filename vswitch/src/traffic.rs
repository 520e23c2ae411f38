//! Generated test traffic: UDP/IPv4 frames in N flows, written as pcap files
//! for net_pcap to replay (the demo, tests and benchmarks).
//!
//! Flow `i`: source address `nw_src + i`, source port `1024 + i % 64000`,
//! destination `nw_dst`:5001, destination MAC `dl_dst[i % len]`. Frames are
//! written round-robin over the flows and padded with further rounds to at
//! least 1024 packets.

pub mod acl;

use crate::packet::checksum;
use pcap_file::pcap::{PcapPacket, PcapWriter};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSpec {
    pub flows: u32,
    pub size: usize,
    pub dl_src: [u8; 6],
    pub dl_dst: Vec<[u8; 6]>,
    pub nw_src: Ipv4Addr,
    pub nw_dst: Ipv4Addr,
}

impl From<&crate::config::Generate> for TrafficSpec {
    fn from(g: &crate::config::Generate) -> Self {
        Self {
            flows: g.flows,
            size: g.size,
            dl_src: g.dl_src,
            dl_dst: g.dl_dst.clone(),
            nw_src: g.nw_src,
            nw_dst: g.nw_dst,
        }
    }
}

/// The benchmarks' forwarding rule set (`vswitch-bench`'s fwd scenario, the
/// engine's `burst` benchmark): the rule the generated flows match (UDP to
/// 10.255.255.0/24 port 5001, out of `uplink0`) sits among others that
/// consult ports and prefixes, as a tenant's security rules would.
pub const FWD_RULES: [&str; 6] = [
    "priority=100,in_port=vf0,udp,nw_dst=10.255.255.0/24,tp_dst=5001 actions=output:uplink0",
    "priority=90,in_port=vf0,tcp,tp_dst=22 actions=drop",
    "priority=90,in_port=vf0,udp,tp_dst=53 actions=output:uplink0",
    "priority=80,in_port=vf0,ip,nw_dst=192.168.0.0/16 actions=drop",
    "priority=10,in_port=vf0,ip actions=output:uplink0",
    "priority=0 actions=drop",
];

/// The frame of flow `i` (size at least 60).
pub fn udp_frame(spec: &TrafficSpec, i: u32) -> Vec<u8> {
    let dst = spec.dl_dst.get(i as usize % spec.dl_dst.len().max(1)).copied().unwrap_or([2, 0, 0, 0, 0, 2]);
    let flow = acl::Flow5 {
        src: Ipv4Addr::from(u32::from(spec.nw_src).wrapping_add(i)),
        dst: spec.nw_dst,
        proto: 17,
        sport: 1024 + (i % 64000) as u16,
        dport: 5001,
    };
    flow_frame(spec.dl_src, dst, &flow, spec.size, i)
}

/// An IPv4 frame of `size` bytes (at least 60) carrying `flow`: UDP, or TCP
/// (an ACK segment); `seed` numbers the IP id and fills the payload.
pub fn flow_frame(dl_src: [u8; 6], dl_dst: [u8; 6], flow: &acl::Flow5, size: usize, seed: u32) -> Vec<u8> {
    let tcp = flow.proto == 6;
    let l4_hdr = if tcp { 20 } else { 8 };
    let size = size.max(60).max(34 + l4_hdr);
    let mut f = vec![0u8; size];
    f[0..6].copy_from_slice(&dl_dst);
    f[6..12].copy_from_slice(&dl_src);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (size - 14).min(usize::from(u16::MAX)) as u16;
    let (src, dst) = (flow.src.octets(), flow.dst.octets());
    {
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[4..6].copy_from_slice(&(seed as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = flow.proto;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        let c = checksum::ipv4_header(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let l4_len = ip_len - 20;
    f[34..36].copy_from_slice(&flow.sport.to_be_bytes());
    f[36..38].copy_from_slice(&flow.dport.to_be_bytes());
    if tcp {
        f[38..42].copy_from_slice(&seed.to_be_bytes());
        f[46] = 5 << 4;
        f[47] = 0x10;
        f[48..50].copy_from_slice(&0xffffu16.to_be_bytes());
    } else {
        f[38..40].copy_from_slice(&l4_len.to_be_bytes());
    }
    for (k, b) in f[34 + l4_hdr..].iter_mut().enumerate() {
        *b = (seed as usize + k) as u8;
    }
    let c = checksum::ipv4_l4(&src, &dst, flow.proto, &f[34..]);
    let at = if tcp { 50 } else { 40 };
    let c = if c == 0 && !tcp { 0xffff } else { c };
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    f
}

/// Writes the pcap; returns the number of packets written.
///
/// # Errors
/// I/O errors, with the path.
pub fn write_pcap(path: &Path, spec: &TrafficSpec) -> std::io::Result<u64> {
    write_pcap_share(path, spec, 0, 1)
}

/// Writes share `k` of `n` of the flows (flow `i` when `i % n == k`), as
/// the file of one of `n` receive queues; returns the packets written.
///
/// # Errors
/// I/O errors, with the path.
pub fn write_pcap_share(path: &Path, spec: &TrafficSpec, k: u16, n: u16) -> std::io::Result<u64> {
    let file = std::fs::File::create(path)?;
    let mut w = PcapWriter::new(std::io::BufWriter::new(file)).map_err(std::io::Error::other)?;
    let (k, n) = (u32::from(k), u32::from(n.max(1)));
    let mine: Vec<u32> = (0..spec.flows.max(1)).filter(|i| i % n == k).collect();
    let flows = mine.len().max(1) as u32;
    let total = crate::config::Generate::packets_for(flows);
    let frames: Vec<Vec<u8>> = mine.iter().take(65536).map(|&i| udp_frame(spec, i)).collect();
    for m in 0..total {
        let j = (m % u64::from(flows)) as usize;
        let frame = if j < frames.len() {
            std::borrow::Cow::Borrowed(&frames[j])
        } else {
            std::borrow::Cow::Owned(udp_frame(spec, mine.get(j).copied().unwrap_or(0)))
        };
        w.write_packet(&PcapPacket::new(Duration::from_nanos(m), frame.len() as u32, &frame))
            .map_err(std::io::Error::other)?;
    }
    w.into_writer().flush()?;
    Ok(total)
}
