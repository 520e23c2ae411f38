//! Flood resilience: the rate of a port with 10 established flows, alone,
//! while another port floods new flows (each its own megaflow: a rule
//! consults the whole source address), and under the flood after a rule
//! change that revalidates the established flows. vswitchd, and with
//! `--peer ovs` Open vSwitch, on the same pcaps, rules and core. Every
//! port is a net_pcap replaying its file forever (sources) or a net_null
//! (sinks); the table limit is Open vSwitch's per-PMD 65,536 for both.

use crate::ours::{vswitchd_path, Daemon};
use crate::ovs::{parse_flows, Ovs, PmdStats};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vswitch::control::{call, Request};
use vswitch::traffic::{udp_frame, TrafficSpec};

/// Both switches' flow table per PMD (Open vSwitch's is fixed).
pub const MAX_FLOWS: u32 = 65_536;
/// The rule that makes the flood's megaflows exact on the source address.
pub const EXACT_RULE: &str = "priority=20,ip,nw_src=10.9.9.9 actions=drop";
/// The rule change: the established port's flows must now match the UDP port.
pub const CHANGE_RULE: &str = "priority=30,in_port=vf1,udp,tp_dst=9999 actions=drop";

pub struct Setup {
    pub flows: u32,
    pub warmup: Duration,
    pub window: Duration,
    pub core: usize,
    pub main_core: usize,
    pub peer: bool,
}

/// One switch's three rates (Mpps of the established port).
pub struct Row {
    pub switch: String,
    pub alone: f64,
    pub flood: f64,
    pub after_change: f64,
    pub note: String,
}

fn spec(nw_src: &str, flows: u32) -> TrafficSpec {
    TrafficSpec {
        flows,
        size: 60,
        dl_src: [2, 0, 0, 0, 0, 0x10],
        dl_dst: vec![[2, 0, 0, 0, 0, 0x20]],
        nw_src: nw_src.parse().expect("address"),
        nw_dst: "10.200.0.1".parse().expect("address"),
    }
}

fn write(path: &Path, spec: &TrafficSpec, packets: u32) -> Result<()> {
    let frames: Vec<Vec<u8>> = (0..packets).map(|i| udp_frame(spec, i % spec.flows)).collect();
    let file = std::fs::File::create(path)?;
    let mut w = pcap_file::pcap::PcapWriter::new(std::io::BufWriter::new(file))?;
    for (n, f) in frames.iter().enumerate() {
        w.write_packet(&pcap_file::pcap::PcapPacket::new(Duration::from_nanos(n as u64), f.len() as u32, f))?;
    }
    Ok(())
}

/// Runs the measurements and renders a table.
pub fn run(vswitchd: Option<PathBuf>, out: &Path, s: &Setup) -> Result<String> {
    std::fs::create_dir_all(out)?;
    let work = out.join("flood-work");
    std::fs::create_dir_all(&work)?;
    let (flood, est) = (work.join("flood.pcap"), work.join("established.pcap"));
    write(&flood, &spec("10.64.0.0", s.flows), s.flows)?;
    write(&est, &spec("10.1.0.1", 10), 1024)?;
    let bin = vswitchd_path(vswitchd)?;
    let mut rows = vec![ours(&bin, &work, s, &flood, &est)?];
    if s.peer {
        let mem = crate::scenario::eal_memory_mb(u64::from(s.flows) + 200_000);
        let ovs = Ovs::start(&work, &[s.core], s.main_core, mem, &crate::pages::Pages::Small)
            .context("starting Open vSwitch")?;
        let r = ovs.flood(&flood, &est, s);
        drop(ovs);
        rows.push(r?);
    }
    if let Some(r) = rows.iter().find(|r| r.alone <= 0.0 || r.flood <= 0.0) {
        bail!("{}: no established packets measured (alone {:.2}, under flood {:.2} Mpps)", r.switch, r.alone, r.flood);
    }
    let mut t = format!(
        "Flood resilience: established port (10 flows) in Mpps; the other port floods {} new flows (table {MAX_FLOWS})\n\n\
         | switch | alone | under flood | share | flood + rule change | share | notes |\n|---|---|---|---|---|---|---|\n",
        s.flows
    );
    for r in &rows {
        let _ = writeln!(
            t,
            "| {} | {:.2} | {:.2} | {:.0}% | {:.2} | {:.0}% | {} |",
            r.switch,
            r.alone,
            r.flood,
            r.flood * 100.0 / r.alone.max(1e-9),
            r.after_change,
            r.after_change * 100.0 / r.alone.max(1e-9),
            r.note
        );
    }
    std::fs::write(out.join("flood.md"), &t)?;
    Ok(t)
}

fn config(socket: &Path, core: usize, flood: Option<&Path>, est: &Path, flows: u32) -> String {
    let source = |name: &str, pcap: &Path| format!("net_pcap_fl{name},rx_pcap={},infinite_rx=1", pcap.display());
    let vf0 = flood.map_or_else(|| "net_null_fl0,no-rx=1".to_owned(), |p| source("0", p));
    let mbufs = u64::from(flows) + 65_536;
    format!(
        "rules = [\"{EXACT_RULE}\", \"priority=10,in_port=vf0,ip actions=output:sink0\", \"priority=10,in_port=vf1,ip actions=output:sink1\"]\n\
         [eal]\nargs = [\"--no-huge\", \"-m\", \"{mem}\", \"--no-pci\", \"--no-telemetry\", \"--log-level=lib.eal:warning\"]\n\
         [datapath]\npmd_cores = [{core}]\nidle_timeout_ms = 10000\nmax_flows = {MAX_FLOWS}\nmbufs = {mbufs}\n\
         [control]\nsocket = \"{}\"\n[metrics]\nlisten = \"off\"\n\
         [[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"{vf0}\"\n\
         [[port]]\nname = \"vf1\"\nrole = \"representor\"\ndevargs = \"{}\"\n\
         [[port]]\nname = \"sink0\"\nrole = \"representor\"\ndevargs = \"net_null_fl2,no-rx=1\"\n\
         [[port]]\nname = \"sink1\"\nrole = \"uplink\"\ndevargs = \"net_null_fl3,no-rx=1\"\n",
        socket.display(),
        source("1", est),
        mem = crate::scenario::eal_memory_mb(mbufs),
    )
}

fn sink1_tx(s: &Value) -> u64 {
    s["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "sink1")
        .map(|p| p["tx_packets"].as_u64().unwrap_or(0))
        .sum()
}

/// The rate of `counter` over the window after the warm-up.
pub fn rate(s: &Setup, mut counter: impl FnMut() -> Result<u64>) -> Result<f64> {
    crate::nap(s.warmup)?;
    let (t0, a) = (Instant::now(), counter()?);
    crate::nap(s.window)?;
    let b = counter()?;
    Ok(b.saturating_sub(a) as f64 / t0.elapsed().as_secs_f64() / 1e6)
}

fn ours(bin: &Path, work: &Path, s: &Setup, flood: &Path, est: &Path) -> Result<Row> {
    let mut row = Row { switch: "vswitchd".into(), alone: 0.0, flood: 0.0, after_change: 0.0, note: String::new() };
    for with_flood in [false, true] {
        let dir = work.join(if with_flood { "ours-flood" } else { "ours-alone" });
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("ctl.sock");
        let cfg = dir.join("flood.toml");
        std::fs::write(&cfg, config(&socket, s.core, with_flood.then_some(flood), est, s.flows))?;
        let log = dir.join("vswitchd.log");
        let _daemon = Daemon::vswitchd(bin, &cfg, &log)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while call(&socket, &Request::Show).is_err() {
            if Instant::now() > deadline {
                bail!("vswitchd did not start; its log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            crate::nap(Duration::from_millis(100))?;
        }
        let sample = || Ok(sink1_tx(&call(&socket, &Request::Show)?));
        if !with_flood {
            row.alone = rate(s, sample)?;
            continue;
        }
        row.flood = rate(s, sample)?;
        call(&socket, &Request::AddRule { rule: CHANGE_RULE.into() })?;
        row.after_change = rate(s, sample)?;
        let show = call(&socket, &Request::Show)?;
        row.note = format!(
            "megaflows {}, evicted {}, upcall_budget drops {}, flow_limit drops {}",
            show["flows"], show["flows_evicted"], show["drops"]["upcall_budget"], show["drops"]["flow_limit"]
        );
    }
    Ok(row)
}

/// Open vSwitch in the same case (its side lives here, beside the case,
/// so the OVS driver needs nothing of this module).
impl Ovs {
    /// The flood-resilience case (see flood.rs) on one bridge: vf0 (ofport 1)
    /// floods or is idle, vf1 (ofport 2) carries the established flows,
    /// sink0 and sink1 (ofports 3 and 4) take them; prefix tries off, so
    /// the flood's megaflows are exact on the source address as in vswitchd.
    pub fn flood(&self, flood: &Path, est: &Path, s: &Setup) -> Result<Row> {
        let mut row =
            Row { switch: self.version.clone(), alone: 0.0, flood: 0.0, after_change: 0.0, note: String::new() };
        for with_flood in [false, true] {
            let r = self.flood_phase(flood, est, s, with_flood, &mut row);
            let cleaned = self.clean();
            r.map_err(|e| anyhow::anyhow!("{e:#} (OVS log: {})", self.log_path().display()))?;
            cleaned?;
        }
        Ok(row)
    }

    fn flood_phase(&self, flood: &Path, est: &Path, s: &Setup, with_flood: bool, row: &mut Row) -> Result<()> {
        self.clean()?;
        self.vsctl(&["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev", "fail-mode=secure"])?;
        self.no_prefix_tries("br0")?;
        self.ofctl(&["del-flows", "br0"])?;
        self.add_dpdk_port("br0", "sink0", 3, &format!("{},no-rx=1", self.next_vdev("net_null")), None)?;
        self.add_dpdk_port("br0", "sink1", 4, &format!("{},no-rx=1", self.next_vdev("net_null")), None)?;
        let exact = EXACT_RULE.replace(" actions=", ",actions=");
        for f in
            [exact.as_str(), "priority=10,in_port=1,ip,actions=output:3", "priority=10,in_port=2,ip,actions=output:4"]
        {
            self.ofctl(&["add-flow", "br0", f])?;
        }
        let source = |pcap: &Path| format!("{},rx_pcap={},infinite_rx=1", self.next_vdev("net_pcap"), pcap.display());
        self.add_dpdk_port("br0", "vf1", 2, &source(est), None)?;
        let vf0 = if with_flood { source(flood) } else { format!("{},no-rx=1", self.next_vdev("net_null")) };
        self.add_dpdk_port("br0", "vf0", 1, &vf0, None)?;
        let sample = || self.port_tx("sink1");
        if !with_flood {
            row.alone = rate(s, sample)?;
            return Ok(());
        }
        row.flood = rate(s, sample)?;
        let change = CHANGE_RULE.replace("in_port=vf1", "in_port=2").replace(" actions=", ",actions=");
        self.ofctl(&["add-flow", "br0", &change])?;
        row.after_change = rate(s, sample)?;
        let stats = PmdStats::parse(&self.appctl(&["dpif-netdev/pmd-stats-show"])?);
        row.note = format!(
            "megaflows {}, failed upcalls {}",
            parse_flows(&self.appctl(&["dpctl/show"])?),
            stats.failed_upcalls
        );
        Ok(())
    }
}
