//! How many mbufs the configuration needs: every receive and transmit
//! descriptor can hold one, net_pcap with `infinite_rx=1` keeps its whole
//! file in mbufs, each core's mempool cache holds up to one and a half
//! caches, and the PMDs hold bursts in flight. A pool below that stalls or
//! drops at receive (`rx_nombuf`), so the configuration is refused with the
//! number instead.

use super::PortSpec;
use crate::dpdk::{RX_DESCRIPTORS, TX_DESCRIPTORS};
use std::io::{BufReader, Read};
use std::path::Path;

/// The per-lcore mempool cache size the switch creates its pool with.
pub const POOL_CACHE: u64 = 256;
/// Mbufs kept spare (copies for several outputs, ARP requests, ICMP).
const SPARE: u64 = 512;

/// The parts of the need, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbufNeed {
    pub rx_rings: u64,
    pub tx_rings: u64,
    pub preloaded: u64,
    pub caches: u64,
    pub in_flight: u64,
}

impl MbufNeed {
    pub fn total(&self) -> u64 {
        self.rx_rings + self.tx_rings + self.preloaded + self.caches + self.in_flight + SPARE
    }

    pub fn explain(&self, ports: usize, pmds: usize) -> String {
        format!(
            "rx rings {} x {RX_DESCRIPTORS} = {}, tx rings {ports} x {TX_DESCRIPTORS} x {pmds} PMD(s) = {}, \
             preloaded pcap packets {}, mempool caches {}, bursts in flight {}, spare {SPARE}",
            self.rx_rings / u64::from(RX_DESCRIPTORS),
            self.rx_rings,
            self.tx_rings,
            self.preloaded,
            self.caches,
            self.in_flight
        )
    }
}

/// Bytes of data room per mbuf: headroom (128) and the largest configured
/// frame (MTU + Ethernet + two tags), at least 2 KiB.
pub fn data_room(ports: &[PortSpec]) -> u16 {
    let max_mtu = ports.iter().map(|p| usize::from(p.mtu)).max().unwrap_or(1500);
    (128 + max_mtu + 14 + 8).max(2048 + 128) as u16
}

/// The need of `ports` served by `pmds` PMD threads.
pub fn need(ports: &[PortSpec], pmds: usize) -> MbufNeed {
    let (n, pmds) = (ports.len() as u64, pmds.max(1) as u64);
    MbufNeed {
        rx_rings: ports.iter().map(|p| u64::from(p.rx_queues.count(pmds as usize))).sum::<u64>()
            * u64::from(RX_DESCRIPTORS),
        // A port has a transmit queue per PMD at most.
        tx_rings: n * u64::from(TX_DESCRIPTORS) * pmds,
        preloaded: ports.iter().map(|p| preloaded(p, pmds as usize)).sum(),
        // Each PMD's lcore and the main lcore: up to 1.5 caches each.
        caches: (pmds + 1) * POOL_CACHE * 3 / 2,
        // A received burst and a transmit batch per port, per PMD.
        in_flight: pmds * (n + 1) * 32,
    }
}

/// Packets net_pcap keeps in mbufs for a port replaying its file forever.
fn preloaded(p: &PortSpec, pmds: usize) -> u64 {
    let args: Vec<&str> = p.devargs.split(',').map(str::trim).collect();
    if !args.iter().any(|a| a.replace(' ', "") == "infinite_rx=1") {
        return 0;
    }
    if let Some(g) = &p.generate {
        return g.packets(p.rx_queues.count(pmds));
    }
    args.iter().filter_map(|a| a.strip_prefix("rx_pcap=")).filter_map(|f| pcap_packets(Path::new(f))).sum()
}

/// The number of packets in a pcap file (record headers only), or `None`
/// when it cannot be read as one.
pub fn pcap_packets(path: &Path) -> Option<u64> {
    // Regular files only: a FIFO or a device could block or never end.
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let mut r = BufReader::with_capacity(1 << 16, std::fs::File::open(path).ok()?);
    let mut header = [0u8; 24];
    r.read_exact(&mut header).ok()?;
    let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let little = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        _ => return None,
    };
    let mut count = 0u64;
    let mut rec = [0u8; 16];
    loop {
        match r.read_exact(&mut rec) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Some(count),
            Err(_) => return None,
        }
        let b = [rec[8], rec[9], rec[10], rec[11]];
        let caplen = if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) };
        if caplen > 1 << 18 {
            return None;
        }
        std::io::copy(&mut (&mut r).take(u64::from(caplen)), &mut std::io::sink()).ok()?;
        count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pcap_records_and_the_need_adds_up() {
        let dir = std::env::temp_dir().join(format!("mbufs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.pcap");
        let spec = crate::traffic::TrafficSpec {
            flows: 10,
            size: 60,
            dl_src: [2, 0, 0, 0, 0, 1],
            dl_dst: vec![[2, 0, 0, 0, 0, 2]],
            nw_src: std::net::Ipv4Addr::new(10, 0, 0, 1),
            nw_dst: std::net::Ipv4Addr::new(10, 1, 0, 1),
        };
        let written = crate::traffic::write_pcap(&path, &spec).expect("write");
        assert_eq!(pcap_packets(&path), Some(written));
        std::fs::write(dir.join("bad.pcap"), b"not a pcap file at all, no").expect("write");
        assert_eq!(pcap_packets(&dir.join("bad.pcap")), None);
        assert_eq!(pcap_packets(Path::new("/dev/zero")), None, "not a regular file");
        let port = |devargs: String| PortSpec {
            name: "p".into(),
            devargs,
            role: super::super::Role::Representor,
            mtu: 1500,
            ip: Vec::new(),
            generate: None,
            switch_domain: None,
            mac: None,
            kernel_ifname: None,
            rx_queues: super::super::RxQueues::default(),
            rxq_affinity: Vec::new(),
            line: 1,
        };
        let ports = vec![
            port(format!("net_pcap0,rx_pcap={},infinite_rx=1", path.display())),
            port(format!("net_pcap1,rx_pcap={}", path.display())),
        ];
        let n = need(&ports, 2);
        assert_eq!(n.preloaded, written, "only the infinite_rx port preloads");
        assert_eq!(n.rx_rings, 2 * 1024);
        assert_eq!(n.tx_rings, 2 * 1024 * 2);
        assert_eq!(n.total(), n.rx_rings + n.tx_rings + n.preloaded + n.caches + n.in_flight + SPARE);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
