//! vswitch-bench: generates scenario traffic, runs vswitchd on it (net_pcap
//! replaying a pcap forever -> net_null), and reports Mpps, PMD cycles per
//! packet and lookups by tier.
//!
//! Scenarios: `fwd` (representor -> uplink through a 5-tuple-ish rule set),
//! `encap` (VF -> VXLAN -> wire), `decap` (wire -> VXLAN -> VF) and `setup`
//! (every packet a new megaflow: flow-setup rate; its cycles/packet column is
//! the rule-table classification and install cost per upcall).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use pcap_file::pcap::{PcapPacket, PcapWriter};
use serde::Serialize;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vswitch::actions::vxlan::{EncapSpec, EncapTemplate};
use vswitch::actions::{PacketBuf, VecPacket};
use vswitch::control::{call, Request};
use vswitch::traffic::{udp_frame, TrafficSpec};

#[derive(Parser, Debug)]
#[command(version, about = "Benchmark harness for vswitchd (Mpps, cycles/packet, lookup tiers)")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Scenario {
    /// Representor -> uplink through a 5-tuple-ish rule set.
    Fwd,
    /// Representor -> VXLAN tunnel -> uplink.
    Encap,
    /// Uplink (VXLAN) -> tunnel port -> representor.
    Decap,
    /// Every packet a new megaflow: new flows per second.
    Setup,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write a scenario's input pcap.
    Gen {
        #[arg(long, value_enum, default_value = "fwd")]
        scenario: Scenario,
        #[arg(long, default_value_t = 1000)]
        flows: u32,
        /// Frame size without FCS (60 = 64 on the wire).
        #[arg(long, default_value_t = 60)]
        size: usize,
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Run vswitchd on a scenario and measure.
    Run {
        #[arg(long, value_enum, default_value = "fwd")]
        scenario: Scenario,
        #[arg(long, default_value_t = 1000)]
        flows: u32,
        #[arg(long, default_value_t = 60)]
        size: usize,
        /// Seconds before measuring (vdevs ramp up, caches fill).
        #[arg(long, default_value_t = 5)]
        warmup: u64,
        /// Measured window in seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// PMD core.
        #[arg(long, default_value_t = 1)]
        core: usize,
        /// vswitchd binary (default: next to this one).
        #[arg(long)]
        vswitchd: Option<PathBuf>,
        /// Write the result as JSON here too.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A few seconds per scenario: checks the harness produces numbers (CI).
    Smoke {
        #[arg(long)]
        vswitchd: Option<PathBuf>,
    },
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
struct Measurement {
    switch: &'static str,
    scenario: Scenario,
    flows: u32,
    frame_bytes: usize,
    seconds: f64,
    mpps: f64,
    cycles_per_packet: f64,
    exact_match_pct: f64,
    megaflow_pct: f64,
    upcall_pct: f64,
    upcalls_per_second: f64,
    megaflows: u64,
    drops: u64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("vswitch-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    match args.cmd {
        Cmd::Gen { scenario, flows, size, out } => {
            let n = write_scenario_pcap(&out, scenario, flows, size)?;
            println!("{}: {n} packets, {flows} flows, {size}-byte frames ({scenario:?})", out.display());
        }
        Cmd::Run { scenario, flows, size, warmup, seconds, core, vswitchd, json } => {
            let bin = vswitchd_path(vswitchd)?;
            let m = measure(&bin, scenario, flows, size, warmup, seconds, core, true)?;
            print_table(std::slice::from_ref(&m));
            let text = serde_json::to_string_pretty(&m)?;
            println!("{text}");
            if let Some(path) = json {
                std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Cmd::Smoke { vswitchd } => {
            let bin = vswitchd_path(vswitchd)?;
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let mut all = Vec::new();
            for scenario in [Scenario::Fwd, Scenario::Encap, Scenario::Decap, Scenario::Setup] {
                let flows = if scenario == Scenario::Setup { 100_000 } else { 1000 };
                let m = measure(&bin, scenario, flows, 60, 1, 2, cores - 1, false)?;
                if scenario == Scenario::Setup {
                    if m.upcalls_per_second <= 0.0 {
                        bail!("setup scenario produced no upcalls: {m:?}");
                    }
                } else if m.mpps <= 0.0 || m.cycles_per_packet <= 0.0 {
                    bail!("{scenario:?} produced no numbers: {m:?}");
                }
                all.push(m);
            }
            print_table(&all);
        }
    }
    Ok(())
}

fn vswitchd_path(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe().context("locating vswitch-bench")?;
    let p = me.with_file_name("vswitchd");
    if !p.exists() {
        bail!("{} not found: build it (cargo build --release -p vswitch) or pass --vswitchd", p.display());
    }
    Ok(p)
}

const VM_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x01];

fn vm_traffic(flows: u32, size: usize) -> TrafficSpec {
    TrafficSpec {
        flows,
        size,
        dl_src: VM_MAC,
        dl_dst: vec![GW_MAC],
        nw_src: "10.0.0.0".parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        nw_dst: "10.255.255.1".parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
    }
}

/// Writes the scenario's input; returns the packet count.
fn write_scenario_pcap(path: &Path, scenario: Scenario, flows: u32, size: usize) -> Result<u64> {
    let spec = vm_traffic(flows, size);
    let remote_encap = EncapTemplate::new(EncapSpec {
        eth_src: [2, 0, 0, 0, 1, 2],
        eth_dst: [2, 0, 0, 0, 1, 1],
        ip_src: "198.18.0.2".parse()?,
        ip_dst: "198.18.0.1".parse()?,
        vni: 100,
        udp_dst: 4789,
        ttl: 64,
        tos: 0,
        df: true,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = PcapWriter::new(std::io::BufWriter::new(file))?;
    let flows = flows.max(1);
    let total = u64::from(flows).max(1024).div_ceil(u64::from(flows)) * u64::from(flows);
    let mut pkt = VecPacket::new(&[], 128);
    for n in 0..total {
        let i = (n % u64::from(flows)) as u32;
        let mut frame = udp_frame(&spec, i);
        if scenario == Scenario::Decap {
            // The remote VTEP's encapsulation; the inner frame shrinks so
            // the outer one has the requested size.
            frame.truncate(size.saturating_sub(50).max(60));
            pkt.reset(&frame, 128);
            remote_encap.encap(&mut pkt, u64::from(i)).map_err(|e| anyhow::anyhow!("{e}"))?;
            frame = pkt.data().to_vec();
        }
        w.write_packet(&PcapPacket::new(Duration::from_nanos(n), frame.len() as u32, &frame))?;
    }
    w.into_writer().flush()?;
    Ok(total)
}

fn config_text(scenario: Scenario, pcap: &Path, socket: &Path, core: usize, flows: u32) -> String {
    let pcap = pcap.display();
    let sock = socket.display();
    let common = format!(
        "[eal]\nargs = [\"--no-huge\", \"-m\", \"{mem}\", \"--no-pci\", \"--no-telemetry\", \"--log-level=lib.eal:warning\"]\n\
         [datapath]\npmd_cores = [{core}]\nidle_timeout_ms = 60000\nmax_flows = 2000000\nmbufs = {mbufs}\n\
         [control]\nsocket = \"{sock}\"\n[metrics]\nlisten = \"off\"\n",
        mem = 1024 + (u64::from(flows) * 3 / 1024).min(16384),
        // net_pcap's infinite_rx keeps the whole file in mbufs.
        mbufs = u64::from(flows).max(1024) + 65536
    );
    // A 5-tuple-ish rule set: the matching rule sits among others that
    // consult ports and prefixes, as a tenant's security rules would.
    let mut rules = vec![
        "priority=100,in_port=vf0,udp,nw_dst=10.255.255.0/24,tp_dst=5001 actions=output:uplink0".to_owned(),
        "priority=90,in_port=vf0,tcp,tp_dst=22 actions=drop".to_owned(),
        "priority=90,in_port=vf0,udp,tp_dst=53 actions=output:uplink0".to_owned(),
        "priority=80,in_port=vf0,ip,nw_dst=192.168.0.0/16 actions=drop".to_owned(),
        "priority=10,in_port=vf0,ip actions=output:uplink0".to_owned(),
        "priority=0 actions=drop".to_owned(),
    ];
    let ports;
    match scenario {
        Scenario::Fwd => {
            ports = format!(
                "[[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_pcap_b0,rx_pcap={pcap},infinite_rx=1\"\n\
                 [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null_b1,no-rx=1\"\n"
            );
        }
        Scenario::Setup => {
            // An exact source-address rule makes every source its own megaflow.
            rules.insert(0, "priority=200,in_port=vf0,ip,nw_src=10.0.0.0/32 actions=drop".to_owned());
            ports = format!(
                "[[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_pcap_b0,rx_pcap={pcap},infinite_rx=1\"\n\
                 [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null_b1,no-rx=1\"\n"
            );
        }
        Scenario::Encap => {
            rules = rules.into_iter().map(|r| r.replace("output:uplink0", "output:vxlan0")).collect();
            ports = format!(
                "[[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_pcap_b0,rx_pcap={pcap},infinite_rx=1\"\n\
                 [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null_b1,no-rx=1\"\nip = \"198.18.0.1/24\"\n\
                 [[tunnel]]\nname = \"vxlan0\"\nremote_ip = \"198.18.0.2\"\nvni = 100\n\
                 [[neighbour]]\nip = \"198.18.0.2\"\nmac = \"02:00:00:00:01:02\"\nport = \"uplink0\"\n"
            );
        }
        Scenario::Decap => {
            rules = vec![
                "priority=100,in_port=vxlan0,tun_id=100,udp,nw_dst=10.255.255.0/24,tp_dst=5001 actions=output:vf0"
                    .to_owned(),
                "priority=90,in_port=vxlan0,tcp,tp_dst=22 actions=drop".to_owned(),
                "priority=0 actions=drop".to_owned(),
            ];
            ports = format!(
                "[[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_null_b0,no-rx=1\"\n\
                 [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_pcap_b1,rx_pcap={pcap},infinite_rx=1\"\nip = \"198.18.0.1/24\"\n\
                 [[tunnel]]\nname = \"vxlan0\"\nremote_ip = \"198.18.0.2\"\nvni = 100\n"
            );
        }
    }
    let rules: Vec<String> = rules.iter().map(|r| format!("  {r:?},")).collect();
    format!("rules = [\n{}\n]\n{common}{ports}", rules.join("\n"))
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn show(socket: &Path) -> Result<Value> {
    call(socket, &Request { cmd: "show".into(), rule: None, args: vec![] })
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn sink_tx(s: &Value, scenario: Scenario) -> u64 {
    let sink = if scenario == Scenario::Decap { "vf0" } else { "uplink0" };
    s["ports"].as_array().into_iter().flatten().filter(|p| p["name"] == sink).map(|p| u(&p["tx_packets"])).sum()
}

#[allow(clippy::too_many_arguments)]
fn measure(
    bin: &Path,
    scenario: Scenario,
    flows: u32,
    size: usize,
    warmup: u64,
    seconds: u64,
    core: usize,
    progress: bool,
) -> Result<Measurement> {
    let dir = std::env::temp_dir().join(format!("vswitch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pcap = dir.join(format!("{scenario:?}-{flows}-{size}.pcap"));
    write_scenario_pcap(&pcap, scenario, flows, size)?;
    let socket = dir.join("ctl.sock");
    let cfg = dir.join("bench.toml");
    std::fs::write(&cfg, config_text(scenario, &pcap, &socket, core, flows))?;
    let log = std::fs::File::create(dir.join("vswitchd.log"))?;
    let child = Command::new(bin)
        .arg(&cfg)
        .arg("--no-stats")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let _daemon = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while show(&socket).is_err() {
        if Instant::now() > deadline {
            bail!(
                "vswitchd did not start; log: {}",
                std::fs::read_to_string(dir.join("vswitchd.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The setup scenario measures from the start: the first pass over the
    // file is all new flows.
    let warmup = if scenario == Scenario::Setup { 0 } else { warmup };
    std::thread::sleep(Duration::from_secs(warmup));
    let (t0, a) = (Instant::now(), show(&socket)?);
    let mut last = (t0, sink_tx(&a, scenario));
    if scenario == Scenario::Setup {
        // Flow setup: sample until the upcalls stop (every flow installed) or
        // the window ends; the rate is over the time the upcalls took.
        let mut last_up = (t0, u(&a["upcalls"]));
        while t0.elapsed() < Duration::from_secs(seconds) {
            std::thread::sleep(Duration::from_millis(50));
            let s = show(&socket)?;
            let up = u(&s["upcalls"]);
            if up > last_up.1 {
                last_up = (Instant::now(), up);
            } else if up >= u64::from(flows) {
                break;
            }
        }
        let dt = last_up.0.duration_since(t0).as_secs_f64().max(1e-3);
        let b = show(&socket)?;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(Measurement {
            switch: "vswitch",
            scenario,
            flows,
            frame_bytes: size + 4,
            seconds: dt,
            mpps: 0.0,
            cycles_per_packet: u(&b["upcall_cycles"]).saturating_sub(u(&a["upcall_cycles"])) as f64
                / (last_up.1.saturating_sub(u(&a["upcalls"]))).max(1) as f64,
            exact_match_pct: 0.0,
            megaflow_pct: 0.0,
            upcall_pct: 100.0,
            upcalls_per_second: (last_up.1 - u(&a["upcalls"])) as f64 / dt,
            megaflows: u(&b["flows"]),
            drops: 0,
        });
    }
    while t0.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(1000).min(Duration::from_secs(seconds).saturating_sub(t0.elapsed())));
        if progress {
            let s = show(&socket)?;
            let now = (Instant::now(), sink_tx(&s, scenario));
            let mpps = (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64() / 1e6;
            eprint!("\r{scenario:?} {flows} flows {size} B: {:>5.1}s {mpps:>6.2} Mpps   ", t0.elapsed().as_secs_f64());
            last = now;
        }
    }
    let (t1, b) = (Instant::now(), show(&socket)?);
    if progress {
        eprintln!();
    }
    let dt = t1.duration_since(t0).as_secs_f64();
    let d = |k: &str| u(&b[k]).saturating_sub(u(&a[k]));
    let busy: u64 = b["pmds"].as_array().into_iter().flatten().map(|p| u(&p["busy_cycles"])).sum::<u64>()
        - a["pmds"].as_array().into_iter().flatten().map(|p| u(&p["busy_cycles"])).sum::<u64>();
    let packets = d("packets");
    let lookups = (d("emc_hits") + d("megaflow_hits") + d("upcalls")).max(1);
    let drops: u64 = b["drops"].as_object().into_iter().flatten().map(|(_, v)| u(v)).sum::<u64>()
        - a["drops"].as_object().into_iter().flatten().map(|(_, v)| u(v)).sum::<u64>();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Measurement {
        switch: "vswitch",
        scenario,
        flows,
        frame_bytes: size + 4,
        seconds: dt,
        mpps: (sink_tx(&b, scenario) - sink_tx(&a, scenario)) as f64 / dt / 1e6,
        cycles_per_packet: if packets == 0 { 0.0 } else { busy as f64 / packets as f64 },
        exact_match_pct: d("emc_hits") as f64 * 100.0 / lookups as f64,
        megaflow_pct: d("megaflow_hits") as f64 * 100.0 / lookups as f64,
        upcall_pct: d("upcalls") as f64 * 100.0 / lookups as f64,
        upcalls_per_second: d("upcalls") as f64 / dt,
        megaflows: u(&b["flows"]),
        drops,
    })
}

fn print_table(ms: &[Measurement]) {
    println!("| switch | scenario | flows | frame | Mpps | cyc/pkt | exact-match % | megaflow % | upcall % | new flows/s | megaflows |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for m in ms {
        println!(
            "| {} | {:?} | {} | {} | {:.2} | {:.0} | {:.1} | {:.1} | {:.2} | {:.0} | {} |",
            m.switch,
            m.scenario,
            m.flows,
            m.frame_bytes,
            m.mpps,
            m.cycles_per_packet,
            m.exact_match_pct,
            m.megaflow_pct,
            m.upcall_pct,
            m.upcalls_per_second,
            m.megaflows
        );
    }
}
