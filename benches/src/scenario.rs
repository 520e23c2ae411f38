//! Scenarios: their traffic (pcap files) and their rule sets.
//!
//! Every switch under test gets the same pcap and the same OpenFlow-style
//! rules: the port names (`vf0`, `uplink0`, `vxlan0`) are the same in
//! vswitchd's config and in the Open vSwitch bridges, so the rule text is
//! handed to both unchanged.

use crate::pages::Pages;
use anyhow::{Context, Result};
use clap::ValueEnum;
use pcap_file::pcap::{PcapPacket, PcapWriter};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use vswitch::actions::vxlan::{EncapSpec, EncapTemplate};
use vswitch::actions::{PacketBuf, VecPacket};
use vswitch::traffic::{flow_frame, udp_frame, TrafficSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Representor -> uplink through a 5-tuple-ish rule set.
    Fwd,
    /// Representor -> VXLAN tunnel -> uplink.
    Encap,
    /// Uplink (VXLAN) -> tunnel port -> representor.
    Decap,
    /// Every packet a new megaflow: new flows per second.
    Setup,
    /// An ACL-style rule set (309 rules in 20 masks: in_port, address
    /// prefixes, protocol, ports) and flows spread over it: Mpps, megaflows
    /// and megaflow masks.
    Acl,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Fwd => "fwd",
            Self::Encap => "encap",
            Self::Decap => "decap",
            Self::Setup => "setup",
            Self::Acl => "acl",
        }
    }

    /// The port the traffic is replayed into and the port it leaves by.
    pub fn source_sink(self) -> (&'static str, &'static str) {
        match self {
            Self::Decap => ("uplink0", "vf0"),
            _ => ("vf0", "uplink0"),
        }
    }
}

/// Addresses of the bench topology (RFC 2544 benchmarking ranges).
pub const VM_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
pub const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x01];
pub const LOCAL_VTEP: &str = "198.18.0.1";
pub const REMOTE_VTEP: &str = "198.18.0.2";
pub const LOCAL_VTEP_MAC: &str = "02:00:00:00:01:01";
pub const REMOTE_VTEP_MAC: &str = "02:00:00:00:01:02";
pub const VNI: u32 = 100;
/// The uplink MTU in the bench topology: 1500-byte frames still fit after
/// VXLAN encapsulation (1482 + 50), and mbufs stay at 2 KiB of data room.
pub const UPLINK_MTU: u16 = 1600;

fn vm_traffic(flows: u32, size: usize) -> TrafficSpec {
    TrafficSpec {
        flows,
        size,
        dl_src: VM_MAC,
        dl_dst: vec![GW_MAC],
        nw_src: std::net::Ipv4Addr::new(10, 0, 0, 0),
        nw_dst: std::net::Ipv4Addr::new(10, 255, 255, 1),
    }
}

/// Writes the scenario's input: `flows` distinct UDP flows, round-robin,
/// at least 1024 packets; `frame` is the size on the wire (with the 4-byte
/// FCS, which the pcap does not hold). Returns the packet count.
pub fn write_pcap(path: &Path, scenario: Scenario, flows: u32, frame: usize) -> Result<u64> {
    write_pcap_replay(path, scenario, flows, frame, DEFAULT_REPLAY)
}

/// The fewest frames a case replays by default.
pub const DEFAULT_REPLAY: u64 = 1024;

/// [`write_pcap`] with at least `replay` packets (the flows repeated
/// round-robin, a whole number of times). The generator copies each frame
/// out of its own buffer, so the replay set's size, not only the flow
/// count, sets what the generator costs: a 1,000,000-frame set is read
/// from memory, a 1,024-frame one from cache.
pub fn write_pcap_replay(path: &Path, scenario: Scenario, flows: u32, frame: usize, replay: u64) -> Result<u64> {
    let size = frame.saturating_sub(4).max(60);
    // Decap input: the inner frame is 50 bytes shorter, so that the outer
    // one has the requested size.
    let inner = if scenario == Scenario::Decap { size.saturating_sub(50).max(60) } else { size };
    let spec = vm_traffic(flows, inner);
    let remote_encap = EncapTemplate::new(EncapSpec {
        eth_src: [2, 0, 0, 0, 1, 2],
        eth_dst: [2, 0, 0, 0, 1, 1],
        ip_src: REMOTE_VTEP.parse()?,
        ip_dst: LOCAL_VTEP.parse()?,
        vni: VNI,
        udp_dst: 4789,
        ttl: 64,
        tos: 0,
        df: true,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = PcapWriter::new(std::io::BufWriter::with_capacity(1 << 20, file))?;
    let flows = flows.max(1);
    let acl = if scenario == Scenario::Acl { vswitch::traffic::acl::flows(flows) } else { Vec::new() };
    let total = u64::from(flows).max(replay).div_ceil(u64::from(flows)) * u64::from(flows);
    let mut pkt = VecPacket::new(&[], 128);
    let mut cache: Vec<Vec<u8>> = Vec::new();
    for n in 0..total {
        let i = (n % u64::from(flows)) as u32;
        if (i as usize) < cache.len() {
            let f = &cache[i as usize];
            w.write_packet(&PcapPacket::new(Duration::from_nanos(n), f.len() as u32, f))?;
            continue;
        }
        let mut f = match acl.get(i as usize) {
            Some(flow) => flow_frame(VM_MAC, GW_MAC, flow, inner, i),
            None => udp_frame(&spec, i),
        };
        if scenario == Scenario::Decap {
            // The remote VTEP's encapsulation.
            pkt.reset(&f, 128);
            remote_encap.encap(&mut pkt, 0xc000 | (i as u16 & 0x3fff)).map_err(|e| anyhow::anyhow!("{e}"))?;
            f = pkt.data().to_vec();
        }
        w.write_packet(&PcapPacket::new(Duration::from_nanos(n), f.len() as u32, &f))?;
        if total > u64::from(flows) && cache.len() < 65536 {
            cache.push(f);
        }
    }
    w.into_writer().flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(total)
}

/// The rule set, in the syntax both vswitchd and `ovs-ofctl` read.
pub fn rules(scenario: Scenario) -> Vec<String> {
    // A 5-tuple-ish rule set: the matching rule sits among others that
    // consult ports and prefixes, as a tenant's security rules would.
    let mut rules: Vec<String> = vswitch::traffic::FWD_RULES.map(str::to_owned).to_vec();
    match scenario {
        Scenario::Fwd => {}
        Scenario::Acl => rules = vswitch::traffic::acl::rules("vf0", "uplink0"),
        Scenario::Setup => {
            // An exact source-address rule makes every source its own megaflow.
            rules.insert(0, "priority=200,in_port=vf0,ip,nw_src=10.0.0.0/32 actions=drop".to_owned());
        }
        Scenario::Encap => {
            rules = rules.into_iter().map(|r| r.replace("output:uplink0", "output:vxlan0")).collect();
        }
        Scenario::Decap => {
            rules = [
                "priority=100,in_port=vxlan0,tun_id=100,udp,nw_dst=10.255.255.0/24,tp_dst=5001 actions=output:vf0",
                "priority=90,in_port=vxlan0,tcp,tp_dst=22 actions=drop",
                "priority=0 actions=drop",
            ]
            .map(str::to_owned)
            .to_vec();
        }
    }
    rules
}

/// DPDK memory (`-m`, MB) for a pool of `mbufs` 2 KiB-data-room mbufs with
/// `--no-huge` ([`Pages::memory_mb`]).
pub fn eal_memory_mb(mbufs: u64) -> u64 {
    Pages::Small.memory_mb(mbufs)
}

/// vswitchd's config for the scenario: `source` devargs replay the pcap,
/// the sink is net_null.
/// vswitchd's configuration for a scenario: the source port replays
/// `pcaps` (one receive queue each), PMDs on `cores`.
pub fn vswitchd_config(
    scenario: Scenario,
    pcaps: &[std::path::PathBuf],
    socket: &Path,
    cores: &[usize],
    packets: u64,
    pages: &Pages,
) -> String {
    let (source, _) = scenario.source_sink();
    let files: Vec<String> = pcaps.iter().map(|p| format!("rx_pcap={}", p.display())).collect();
    // A port's devargs line (and the source's receive queues).
    let dev = |name: &str, i: usize| {
        if name == source {
            // rx_queues only when there are several (older vswitchd builds,
            // run for A/B comparisons, do not know the key).
            let queues = if pcaps.len() > 1 { format!("\nrx_queues = {}", pcaps.len()) } else { String::new() };
            format!("devargs = \"net_pcap_b{i},{},infinite_rx=1\"{queues}", files.join(","))
        } else {
            format!("devargs = \"net_null_b{i},no-rx=1\"")
        }
    };
    let core = cores.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
    let mut text = String::from("rules = [\n");
    for r in rules(scenario) {
        text.push_str(&format!("  {r:?},\n"));
    }
    // net_pcap's infinite_rx keeps the whole file in mbufs.
    let mbufs = packets + 65536;
    text.push_str(&format!(
        "]\n[eal]\nargs = [{mem}, \"--no-pci\", \"--no-telemetry\", \"--log-level=lib.eal:warning\"]\n\
         [datapath]\npmd_cores = [{core}]\nidle_timeout_ms = 60000\nmax_flows = 2000000\nmbufs = {mbufs}\n\
         [control]\nsocket = \"{sock}\"\n[metrics]\nlisten = \"off\"\n\
         [[port]]\nname = \"vf0\"\nrole = \"representor\"\n{vf}\n\
         [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\n{up}\nmtu = {UPLINK_MTU}\nip = \"{LOCAL_VTEP}/24\"\nmac = \"{LOCAL_VTEP_MAC}\"\n",
        mem = pages.eal(pages.memory_mb(mbufs)).iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", "),
        sock = socket.display(),
        vf = dev("vf0", 0),
        up = dev("uplink0", 1),
    ));
    if matches!(scenario, Scenario::Encap | Scenario::Decap) {
        text.push_str(&format!("[[tunnel]]\nname = \"vxlan0\"\nremote_ip = \"{REMOTE_VTEP}\"\nvni = {VNI}\n"));
    }
    if scenario == Scenario::Encap {
        text.push_str(&format!(
            "[[neighbour]]\nip = \"{REMOTE_VTEP}\"\nmac = \"{REMOTE_VTEP_MAC}\"\nport = \"uplink0\"\n"
        ));
    }
    text
}
