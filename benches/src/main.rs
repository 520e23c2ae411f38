//! vswitch-bench: generates scenario traffic, runs vswitchd on it (net_pcap
//! replaying a pcap forever -> net_null), and, in the same invocation, Open
//! vSwitch's DPDK datapath (`--peer ovs`) and the dpdk-testpmd io-forward
//! floor on the same pcaps and vdevs; reports Mpps, PMD cycles per packet and
//! lookups by tier as JSON, a markdown table and a PNG plot.
//!
//! Scenarios: `fwd` (representor -> uplink through a 5-tuple-ish rule set),
//! `encap` (VF -> VXLAN -> wire), `decap` (wire -> VXLAN -> VF) and `setup`
//! (every packet a new megaflow: flow-setup rate; its cycles column is the
//! classification and install cost per upcall).

mod control;
mod flood;
mod floor;
mod flowmod;
mod fonts;
mod offload;
mod ours;
mod ovs;
mod packetin;
mod pages;
mod report;
mod scale;
mod scenario;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use pages::Pages;
use report::{Measurement, Results, Switch};
use scenario::Scenario;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Benchmark harness: vswitchd side by side with Open vSwitch (DPDK) and the testpmd floor",
    long_about = "Benchmark harness: vswitchd side by side with Open vSwitch's DPDK datapath and the \
dpdk-testpmd io-forward floor, on the same pcaps and virtual devices (net_pcap infinite_rx -> net_null), \
one PMD core each, on 2 MB hugepages and on 4 KiB pages (--pages).\n\n\
  vswitch-bench run --peer ovs            # the whole matrix; writes bench-results/{results.json,report.md,report.png}\n\
  vswitch-bench run --scenario fwd --flows 1000 --frame 64\n\
  vswitch-bench report bench-results/results.json\n\
  vswitch-bench smoke                     # a few seconds per scenario (CI)\n\n\
Runs as root (DPDK, OVS's bridge tap). Absolute numbers on a shared VM drift by up to 20 % between \
runs; ratios measured back to back in one run hold."
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Peer {
    /// Debian's openvswitch-switch-dpdk (ovs-vswitchd-dpdk), userspace datapath.
    Ovs,
}

/// Which pages `run` measures on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PagesArg {
    /// 2 MB and 4 KiB pages when 2 MB pages can be reserved, else 4 KiB.
    Auto,
    /// 2 MB pages only (an error when they cannot be reserved).
    Huge,
    /// 4 KiB pages only (`--no-huge`).
    Small,
}

#[derive(clap::Args, Debug, Clone)]
struct Timing {
    /// Seconds before measuring (vdevs ramp up, caches fill).
    #[arg(long, default_value_t = 4)]
    warmup: u64,
    /// Measured window in seconds.
    #[arg(long, default_value_t = 6)]
    seconds: u64,
    /// PMD core for every switch (default: the last core; core 0 keeps the
    /// control threads).
    #[arg(long)]
    core: Option<usize>,
    /// Measure each case this many times, the floor and the switches in
    /// turn each round, and report each program's median round (by cycles
    /// a packet; setup: by new flows a second). On a shared host one window
    /// can be 20-30 % off; rounds take that drift into every program alike.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=99))]
    rounds: u32,
}

/// One scenario's traffic.
#[derive(clap::Args, Debug, Clone)]
struct Traffic {
    #[arg(long, value_enum, default_value = "fwd")]
    scenario: Scenario,
    #[arg(long, default_value_t = 1000)]
    flows: u32,
    /// Frame size on the wire, FCS included (64 = 60 bytes in the pcap).
    #[arg(long, default_value_t = 64)]
    frame: usize,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write a scenario's input pcap.
    Gen {
        #[command(flatten)]
        traffic: Traffic,
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Measure a matrix of scenarios x frame sizes x flow counts; with
    /// `--peer ovs` OVS runs each case right after vswitchd.
    Run {
        #[arg(long, value_enum, value_delimiter = ',', default_value = "fwd,encap,decap,setup,acl")]
        scenario: Vec<Scenario>,
        #[arg(long, value_delimiter = ',', default_value = "1,1000,100000,1000000")]
        flows: Vec<u32>,
        /// Frame sizes on the wire (FCS included).
        #[arg(long, value_delimiter = ',', default_value = "64,1500")]
        frame: Vec<usize>,
        /// Flow counts measured with frames above 64 bytes (their pcaps
        /// hold every packet in memory: 1M x 1500 B would be 1.5 GB each).
        #[arg(long, value_delimiter = ',', default_value = "1,1000")]
        large_frame_flows: Vec<u32>,
        /// Flows offered in the setup scenario (one case each).
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
        setup_flows: Vec<u32>,
        /// Flows of the acl scenario (64-byte frames).
        #[arg(long, default_value_t = 20_000)]
        acl_flows: u32,
        /// Also measure this switch on every case.
        #[arg(long, value_enum)]
        peer: Option<Peer>,
        /// Skip the testpmd floor.
        #[arg(long)]
        no_floor: bool,
        /// Frames each case's input holds, at least: its flows repeated
        /// round-robin up to this many (default: 1,024, or one a flow above
        /// that). The generator (net_pcap) copies every frame from a buffer
        /// of its own, so a larger set costs the floor and every switch
        /// more; give the largest flow count to compare flow counts with
        /// the same input set (only the flows then differ).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=16_000_000))]
        replay_frames: Option<u64>,
        /// Pages DPDK runs on: `auto` measures every case on 2 MB pages (as
        /// hosts run DPDK; reserved for the run and given back) and again on
        /// 4 KiB pages, or on 4 KiB only when 2 MB pages cannot be had.
        #[arg(long, value_enum, default_value = "auto")]
        pages: PagesArg,
        #[command(flatten)]
        timing: Timing,
        /// Directory for results.json, report.md and report.png.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        /// vswitchd binary (default: next to this one).
        #[arg(long)]
        vswitchd: Option<PathBuf>,
    },
    /// The offload scenario: Zipf traffic over many flows, the model
    /// e-switch with a limited table; the hot-flow policy against offloading
    /// every megaflow. Writes offload.json and offload.md.
    Offload {
        #[arg(long, default_value_t = 100_000)]
        flows: u32,
        /// Packets in the replayed pcap (the Zipf sample).
        #[arg(long, default_value_t = 1_000_000)]
        packets: u64,
        /// Rules the model e-switch holds for flows.
        #[arg(long, default_value_t = 4096)]
        rules: usize,
        /// The hot threshold: low enough that the 4,096th flow of Zipf(1)
        /// over 100k flows at about 1.5 Mpps (some 25 pps) is above it.
        #[arg(long, default_value_t = 20)]
        min_pps: u64,
        #[arg(long, default_value_t = 100)]
        hot_ms: u64,
        /// Seconds before measuring (hot flows move into the model).
        #[arg(long, default_value_t = 10)]
        warmup: u64,
        #[arg(long, default_value_t = 6)]
        seconds: u64,
        #[arg(long)]
        core: Option<usize>,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        #[arg(long)]
        vswitchd: Option<PathBuf>,
    },
    /// The control socket: requests per second (small requests, one and
    /// several clients) and bulk rule loading (one by one against one
    /// add-rules batch).
    /// Flood resilience: an established port's Mpps alone, while another
    /// port floods new flows, and after a rule change under the flood
    /// (vswitchd, and Open vSwitch with --peer ovs).
    Flood {
        /// Distinct new flows the flooding port replays.
        #[arg(long, default_value_t = 200_000)]
        flows: u32,
        #[arg(long, default_value_t = 3)]
        warmup: u64,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long)]
        core: Option<usize>,
        #[arg(long, value_enum)]
        peer: Option<Peer>,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        #[arg(long)]
        vswitchd: Option<PathBuf>,
    },
    /// OpenFlow FLOW_MOD adds per second through one connection, a
    /// BARRIER every `batch`; with `--peer ovs`, Open vSwitch's too.
    Flowmod {
        #[arg(long, default_value_t = 100_000)]
        rules: u32,
        #[arg(long, default_value_t = 1000)]
        batch: u32,
        #[arg(long)]
        core: Option<usize>,
        #[arg(long, value_enum)]
        peer: Option<Peer>,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        #[arg(long)]
        vswitchd: Option<PathBuf>,
    },
    /// Packet-in round trips per second to an os-ken controller that
    /// answers each with a packet-out; with `--peer ovs`, Open vSwitch's too.
    Packetin {
        /// Seconds to measure over.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long)]
        core: Option<usize>,
        #[arg(long, value_enum)]
        peer: Option<Peer>,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        #[arg(long)]
        vswitchd: Option<PathBuf>,
    },
    Control {
        /// Rules for the bulk comparison.
        #[arg(long, default_value_t = 20_000)]
        rules: usize,
        #[arg(long)]
        core: Option<usize>,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        #[arg(long)]
        vswitchd: Option<PathBuf>,
    },
    /// Scaling over PMDs: one scenario with 1, 2, 4, ... PMDs, a receive
    /// queue per PMD (the traffic split by flow, as RSS does), vswitchd and
    /// (--peer ovs) Open vSwitch on the same queues and cores: Mpps,
    /// efficiency and busy shares per PMD count. Writes scale.{json,md}.
    Scale {
        /// PMD counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        pmds: Vec<usize>,
        /// PMD cores in order of use (N PMDs take the first N). Default:
        /// every core but the main one, then the main one if more are needed.
        #[arg(long, value_delimiter = ',')]
        cores: Option<Vec<usize>>,
        /// The core of the control threads (OVS's dpdk-lcore-mask).
        #[arg(long, default_value_t = 0)]
        main_core: usize,
        #[command(flatten)]
        traffic: Traffic,
        #[arg(long, value_enum)]
        peer: Option<Peer>,
        #[arg(long, default_value_t = 4)]
        warmup: u64,
        #[arg(long, default_value_t = 6)]
        seconds: u64,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        #[arg(long)]
        vswitchd: Option<PathBuf>,
    },
    /// Render report.md and report.png from a results.json.
    Report {
        results: PathBuf,
        /// Output directory (default: the results file's).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A few seconds per scenario, every switch: checks the harness
    /// produces numbers and a report (CI).
    Smoke {
        #[arg(long)]
        vswitchd: Option<PathBuf>,
        /// Leave Open vSwitch out.
        #[arg(long)]
        no_peer: bool,
    },
}

/// One measured case: the same pcap for every switch.
#[derive(Debug, Clone)]
pub struct Case {
    pub scenario: Scenario,
    pub flows: u32,
    pub frame: usize,
    pub pcap: PathBuf,
    pub packets: u64,
    pub core: usize,
    /// Every PMD core (the scale benchmark: several; else `core`).
    pub pmd_cores: Vec<usize>,
    /// The source port's files, one per receive queue (else `pcap`).
    pub queue_pcaps: Vec<PathBuf>,
    /// What DPDK's memory is on.
    pub pages: pages::Pages,
    pub warmup: Duration,
    pub window: Duration,
    /// The scaling baseline: one flow on a larger case's input set (see
    /// [`baselines`]), apart from the table's cases.
    pub baseline: bool,
}

impl Case {
    fn label(&self) -> String {
        let input = if self.baseline { format!(" on {} frames (baseline)", self.packets) } else { String::new() };
        format!("{} {} flows {} B{input}, {} pages", self.scenario.name(), self.flows, self.frame, self.pages.name())
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("vswitch-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    // Ctrl-C or SIGTERM ends the run between samples, so that every daemon
    // and run directory it started is cleaned up on the way out.
    vswitch::dpdk::os::install_stop_signals();
    match args.cmd {
        Cmd::Gen { traffic: Traffic { scenario, flows, frame }, out } => {
            let n = scenario::write_pcap(&out, scenario, flows, frame)?;
            println!("{}: {n} packets, {flows} flows, {frame}-byte frames ({})", out.display(), scenario.name());
        }
        Cmd::Run {
            scenario,
            flows,
            frame,
            large_frame_flows,
            setup_flows,
            acl_flows,
            peer,
            no_floor,
            replay_frames,
            pages,
            timing,
            out,
            vswitchd,
        } => {
            let cases = run_cases(&scenario, &flows, &frame, &large_frame_flows, &setup_flows, acl_flows);
            let replay = replay_frames.unwrap_or(scenario::DEFAULT_REPLAY);
            let opts = MatrixOptions { timing, peer: peer.is_some(), floor: !no_floor, pages, replay };
            show_reports(&matrix(&ours::vswitchd_path(vswitchd)?, &cases, &opts, &out)?, &out)?;
        }
        Cmd::Scale { pmds, cores: given, main_core, traffic, peer, warmup, seconds, out, vswitchd } => {
            let Traffic { scenario, flows, frame } = traffic;
            let cores = scale::cores(given, main_core)?;
            let setup = scale::Setup {
                scenario,
                flows,
                frame,
                pmds,
                cores,
                main_core,
                warmup,
                seconds,
                peer: peer.is_some(),
                out: out.clone(),
                vswitchd: ours::vswitchd_path(vswitchd)?,
            };
            println!("{}", scale::run(&setup)?);
            println!("wrote {0}/scale.json and {0}/scale.md", out.display());
        }
        Cmd::Report { results, out } => {
            let r = Results::load(&results)?;
            let dir = out.unwrap_or_else(|| results.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf));
            show_reports(&r, &dir)?;
        }
        Cmd::Offload { flows, packets, rules, min_pps, hot_ms, warmup, seconds, core, out, vswitchd } => {
            let setup = offload::Setup {
                flows,
                packets,
                rules,
                min_pps,
                hot_ms,
                warmup: Duration::from_secs(warmup),
                window: Duration::from_secs(seconds),
                core: core.unwrap_or(cores() - 1),
                out,
                vswitchd,
            };
            let r = offload::run(&setup)?;
            println!("{}", offload::markdown(&r));
            if let Some(p) = r.policies.iter().find(|p| p.hw_share <= 0.0) {
                bail!("policy {}: no packet was handled by the model e-switch", p.policy);
            }
        }
        Cmd::Flood { flows, warmup, seconds, core, peer, out, vswitchd } => {
            let core = core.unwrap_or(cores() - 1);
            let setup = flood::Setup {
                flows,
                warmup: Duration::from_secs(warmup),
                window: Duration::from_secs(seconds),
                core,
                main_core: if core == 0 { 1 } else { 0 },
                peer: peer.is_some(),
            };
            println!("{}", flood::run(vswitchd, &out, &setup)?);
        }
        Cmd::Control { rules, core, out, vswitchd } => {
            println!("{}", control::run(vswitchd, &out, core.unwrap_or(cores() - 1), rules)?);
        }
        Cmd::Flowmod { rules, batch, core, peer, out, vswitchd } => {
            let core = core.unwrap_or(cores() - 1);
            println!("{}", flowmod::run(vswitchd, &out, core, rules, batch.max(1), peer.is_some())?);
        }
        Cmd::Packetin { seconds, core, peer, out, vswitchd } => {
            let core = core.unwrap_or(cores() - 1);
            println!("{}", packetin::run(vswitchd, &out, core, seconds.max(1), peer.is_some())?);
        }
        Cmd::Smoke { vswitchd, no_peer } => smoke(vswitchd, no_peer)?,
    }
    Ok(())
}

/// The cases of `run`: every scenario at every frame size and flow count
/// (frames above 64 bytes only at `large_frame_flows`), then flow setup and
/// the ACL case.
fn run_cases(
    scenario: &[Scenario],
    flows: &[u32],
    frame: &[usize],
    large_frame_flows: &[u32],
    setup_flows: &[u32],
    acl_flows: u32,
) -> Vec<(Scenario, u32, usize)> {
    let mut cases = Vec::new();
    for sc in scenario.iter().copied().filter(|s| !matches!(s, Scenario::Setup | Scenario::Acl)) {
        for fr in frame {
            for fl in flows {
                if *fr > 64 && !large_frame_flows.contains(fl) {
                    continue;
                }
                cases.push((sc, *fl, *fr));
            }
        }
    }
    if scenario.contains(&Scenario::Setup) {
        cases.extend(setup_flows.iter().map(|&f| (Scenario::Setup, f, 64)));
    }
    if scenario.contains(&Scenario::Acl) {
        cases.push((Scenario::Acl, acl_flows, 64));
    }
    cases
}

/// `smoke`: every scenario for a few seconds through each switch; fails
/// unless every case produced its numbers and the plot.
fn smoke(vswitchd: Option<PathBuf>, no_peer: bool) -> Result<()> {
    let bin = ours::vswitchd_path(vswitchd)?;
    let timing = Timing { warmup: 1, seconds: 2, core: None, rounds: 1 };
    let cases = [
        (Scenario::Fwd, 1000, 64),
        (Scenario::Encap, 1000, 64),
        (Scenario::Decap, 1000, 64),
        (Scenario::Setup, 100_000, 64),
        (Scenario::Acl, 20_000, 64),
    ];
    let out = std::env::temp_dir().join(format!("vswitch-bench-smoke-{}", std::process::id()));
    // Both page sizes when 2 MB pages can be had: the hugepage path is checked too.
    let opts =
        MatrixOptions { timing, peer: !no_peer, floor: true, pages: PagesArg::Auto, replay: scenario::DEFAULT_REPLAY };
    let results = matrix(&bin, &cases, &opts, &out)?;
    let mut bad = Vec::new();
    for m in &results.measurements {
        let numbers = if m.scenario == Scenario::Setup {
            m.upcalls_per_second > 0.0
        } else if m.scenario == Scenario::Acl {
            m.mpps > 0.0 && m.megaflows > 0 && m.masks > 0
        } else {
            m.mpps > 0.0 && (m.switch == Switch::Testpmd || m.cycles_per_packet > 0.0)
        };
        if m.error.is_some() || !numbers {
            bad.push(format!("{m:?}"));
        }
    }
    // fwd, encap, decap: the floor and each switch; setup and acl: each
    // switch; on every page size the run had.
    let sizes = results.meta.get("pages").map_or(1, |p| p.split(", ").count());
    let expected = sizes * (3 * (if no_peer { 2 } else { 3 }) + 2 * if no_peer { 1 } else { 2 });
    if results.measurements.len() != expected {
        bad.push(format!("{} measurements, expected {expected}", results.measurements.len()));
    }
    write_reports(&results, &out)?;
    let png = std::fs::metadata(out.join("report.png")).map(|m| m.len()).unwrap_or(0);
    println!("{}", report::markdown(&results));
    println!("report.png: {png} bytes");
    let _ = std::fs::remove_dir_all(&out);
    if png < 1000 {
        bad.push("no plot".into());
    }
    if !bad.is_empty() {
        bail!("the smoke run did not produce every number:\n{}", bad.join("\n"));
    }
    Ok(())
}

/// Writes the reports and prints the table.
fn show_reports(r: &Results, dir: &Path) -> Result<()> {
    write_reports(r, dir)?;
    println!("{}\nwrote {1}/report.md and {1}/report.png", report::markdown(r), dir.display());
    Ok(())
}

fn write_reports(r: &Results, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("report.md"), report::markdown(r))?;
    let png = dir.join("report.png");
    if r.measurements.iter().any(|m| !matches!(m.scenario, Scenario::Setup | Scenario::Acl)) {
        report::plot(r, &png)?;
    } else {
        let _ = std::fs::remove_file(&png);
    }
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Measures every case with every switch on every page size asked for
/// (2 MB pages first), the pcap generated once per case and page size;
/// results.json is rewritten after each case, so an interrupted run keeps
/// what it measured.
fn matrix(bin: &Path, cases: &[(Scenario, u32, usize)], opts: &MatrixOptions, out: &Path) -> Result<Results> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let work = std::env::temp_dir().join(format!("vswitch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let _cleanup = RemoveDir(work.clone());
    let core = opts.timing.core.unwrap_or(cores() - 1);
    let main_core = if core == 0 { 1 } else { 0 };
    if main_core >= cores() {
        bail!("needs two cores: one for the PMD, one for the control threads");
    }
    let mut results = Results { meta: meta(core, &opts.timing), measurements: Vec::new() };
    // The reservation lives as long as the run (dropped last: after the
    // work directory's daemons are gone).
    let (reservation, modes) = page_plan(opts.pages, &work, cases, opts.peer, opts.replay)?;
    results.meta.insert("pages".into(), modes.iter().map(Pages::name).collect::<Vec<_>>().join(", "));
    if opts.replay != scenario::DEFAULT_REPLAY {
        results.meta.insert("replay_frames".into(), opts.replay.to_string());
    }
    // The table's cases, then the scaling baselines: (case, frames at
    // least, baseline).
    let plans: Vec<((Scenario, u32, usize), u64, bool)> = cases
        .iter()
        .map(|&c| (c, opts.replay, false))
        .chain(baselines(cases, opts.replay).into_iter().map(|(sc, frames)| ((sc, 1, 64), frames, true)))
        .collect();
    let total = plans.len() * modes.len();
    for (m, pages) in modes.iter().enumerate() {
        let ovs = if opts.peer {
            // Per-port pools: the largest source holds its pcap (a packet
            // per flow, at least the replay set), the other ports ~20k mbufs each.
            let mem = ovs_memory_mb(pages, most_frames(cases, opts.replay));
            let o = ovs::Ovs::start(&work, &[core], main_core, mem, pages).context("starting Open vSwitch")?;
            results.meta.insert("ovs".into(), o.version.clone());
            Some(o)
        } else {
            None
        };
        for (i, &((scenario, flows, frame), replay, baseline)) in plans.iter().enumerate() {
            let pcap = work.join(format!("{}-{flows}-{frame}-{replay}.pcap", scenario.name()));
            let packets = scenario::write_pcap_replay(&pcap, scenario, flows, frame, replay)?;
            let case = Case {
                scenario,
                flows,
                frame,
                pcap: pcap.clone(),
                packets,
                core,
                pmd_cores: vec![core],
                queue_pcaps: vec![pcap.clone()],
                pages: pages.clone(),
                warmup: Duration::from_secs(opts.timing.warmup),
                window: Duration::from_secs(opts.timing.seconds),
                baseline,
            };
            interrupted()?;
            eprintln!("[{}/{total}] {}", m * plans.len() + i + 1, case.label());
            let programs = Programs { bin, main_core, ovs: ovs.as_ref(), floor: opts.floor, work: &work };
            let row = measure_rounds(&programs, &case, opts.timing.rounds)?;
            results.measurements.extend(row);
            results.save(&out.join("results.json"))?;
            let _ = std::fs::remove_file(&pcap);
        }
    }
    drop(reservation);
    Ok(results)
}

/// The scaling target's baselines (1M flows at most 1.5x one flow): fwd
/// and encap at one 64-byte flow on as many frames as the run's largest
/// 64-byte flow count of that scenario replays, when the run has both and
/// that set is larger than one flow's own. The generator copies each frame
/// from a buffer of its own, so a 1M-frame set costs every program more
/// than a 1,024-frame one (the floor about twice as many cycles): with the
/// baseline, one flow and many differ in their flows alone.
fn baselines(cases: &[(Scenario, u32, usize)], replay: u64) -> Vec<(Scenario, u64)> {
    [Scenario::Fwd, Scenario::Encap]
        .into_iter()
        .filter(|sc| cases.contains(&(*sc, 1, 64)))
        .filter_map(|sc| {
            let most = cases.iter().filter(|c| c.0 == sc && c.2 == 64).map(|c| u64::from(c.1)).max()?;
            (most > replay).then_some((sc, most))
        })
        .collect()
}

/// What [`matrix`] measures besides the cases.
struct MatrixOptions {
    timing: Timing,
    peer: bool,
    floor: bool,
    pages: PagesArg,
    /// Frames each case's input holds at least (`--replay-frames`).
    replay: u64,
}

/// Open vSwitch's memory for the run: its per-port pools (see `matrix`).
/// On 2 MB pages half as much again as vswitchd's mbufs take: OVS's are
/// larger (measured: a 1M-packet source port's pool did not fit in 3.3 GB).
fn ovs_memory_mb(pages: &Pages, most_flows: u64) -> u64 {
    match pages {
        Pages::Small => pages.memory_mb(most_flows + 131_072).max(3072),
        Pages::Huge(_) => (pages.memory_mb(most_flows + 131_072) * 3 / 2).max(1024),
    }
}

/// The most frames any case's input holds (about: `write_pcap_replay`
/// rounds up to whole rounds of flows).
fn most_frames(cases: &[(Scenario, u32, usize)], replay: u64) -> u64 {
    cases.iter().map(|c| u64::from(c.1).max(replay)).max().unwrap_or(replay)
}

/// The page sizes to measure on and, for 2 MB pages, their reservation:
/// enough for Open vSwitch's pools and the largest case's switch (the
/// floor, vswitchd and Open vSwitch's port run one at a time; Open
/// vSwitch's pools stay for the run).
fn page_plan(
    arg: PagesArg,
    work: &Path,
    cases: &[(Scenario, u32, usize)],
    peer: bool,
    replay: u64,
) -> Result<(Option<pages::Reservation>, Vec<Pages>)> {
    if arg == PagesArg::Small {
        return Ok((None, vec![Pages::Small]));
    }
    let huge = Pages::Huge(PathBuf::new());
    let most = most_frames(cases, replay);
    let mut mb = huge.memory_mb((most + 65_536).max(131_072)) + 512;
    if peer {
        mb += ovs_memory_mb(&huge, most);
    }
    match pages::Reservation::take(work, mb) {
        Ok(r) => {
            eprintln!("2 MB pages: {mb} MB reserved for the run");
            let mut modes = vec![r.pages()];
            if arg == PagesArg::Auto {
                modes.push(Pages::Small);
            }
            Ok((Some(r), modes))
        }
        Err(e) if arg == PagesArg::Auto => {
            eprintln!("2 MB pages cannot be had ({e:#}): 4 KiB pages only");
            Ok((None, vec![Pages::Small]))
        }
        Err(e) => Err(e.context("--pages huge")),
    }
}

/// What measures a case: vswitchd, the floor (unless left out) and Open
/// vSwitch (when it runs), in a work directory, their control threads on
/// `main_core`.
struct Programs<'a> {
    bin: &'a Path,
    main_core: usize,
    ovs: Option<&'a ovs::Ovs>,
    floor: bool,
    work: &'a Path,
}

/// [`measure_case`] `rounds` times; per program, its median round (see
/// [`median_round`]).
fn measure_rounds(p: &Programs, case: &Case, rounds: u32) -> Result<Vec<Measurement>> {
    let mut all = Vec::new();
    for round in 1..=rounds {
        if rounds > 1 {
            eprintln!("  round {round} of {rounds}");
        }
        all.push(measure_case(p, case)?);
    }
    if rounds == 1 {
        return Ok(all.pop().unwrap_or_default());
    }
    let programs = all.first().map_or(0, Vec::len);
    Ok((0..programs).filter_map(|j| median_round(all.iter().filter_map(|r| r.get(j).cloned()).collect())).collect())
}

/// The median of one program's rounds of a case, by cycles a packet (setup:
/// new flows a second), with every round's figure kept beside it; the first
/// failure when no round has a figure.
fn median_round(mut rounds: Vec<Measurement>) -> Option<Measurement> {
    let figure =
        |m: &Measurement| if m.scenario == Scenario::Setup { m.upcalls_per_second } else { m.cycles_per_packet };
    let failed = rounds.iter().find(|m| m.error.is_some()).cloned();
    rounds.retain(|m| m.error.is_none());
    rounds.sort_by(|a, b| figure(a).total_cmp(&figure(b)));
    let figures: Vec<f64> = rounds.iter().map(figure).collect();
    rounds.get(rounds.len().saturating_sub(1) / 2).map(|m| Measurement { rounds: figures, ..m.clone() }).or(failed)
}

/// One case through the floor, vswitchd and Open vSwitch; their lines
/// printed as they come.
fn measure_case(p: &Programs, case: &Case) -> Result<Vec<Measurement>> {
    let Programs { bin, main_core, ovs, floor, work } = *p;
    let progress = atty_stderr();
    let mut row: Vec<Measurement> = Vec::new();
    if floor && !matches!(case.scenario, Scenario::Setup | Scenario::Acl) {
        row.push(
            floor::measure(case, main_core, work, progress)
                .unwrap_or_else(|e| Measurement::failed(Switch::Testpmd, case, format!("{e:#}"))),
        );
    }
    row.push(
        ours::measure(bin, case, work, progress)
            .unwrap_or_else(|e| Measurement::failed(Switch::Vswitch, case, format!("{e:#}"))),
    );
    if let Some(o) = ovs {
        row.push(
            o.measure(case, progress).unwrap_or_else(|e| Measurement::failed(Switch::Ovs, case, format!("{e:#}"))),
        );
    }
    // A measurement cut short by Ctrl-C is not a result.
    interrupted()?;
    for m in &row {
        match &m.error {
            Some(e) => eprintln!("    {:<14} failed: {e}", m.switch.label()),
            None if case.scenario == Scenario::Setup => {
                eprintln!(
                    "    {:<14} {:>10.0} new flows/s, {} megaflows",
                    m.switch.label(),
                    m.upcalls_per_second,
                    m.megaflows
                )
            }
            None => eprintln!("    {:<14} {:>7.2} Mpps {:>6.0} cyc/pkt", m.switch.label(), m.mpps, m.cycles_per_packet),
        }
    }
    Ok(row)
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn atty_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn meta(core: usize, timing: &Timing) -> BTreeMap<String, String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map_or(0, |kb| kb.div_ceil(1 << 20));
    BTreeMap::from([
        ("date".into(), command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])),
        ("machine".into(), format!("{} vCPU {cpu}, {mem_gib} GiB", cores())),
        ("kernel".into(), command_line("uname", &["-r"])),
        (
            "vswitch".into(),
            format!("{} {}", env!("CARGO_PKG_VERSION"), command_line("git", &["rev-parse", "--short", "HEAD"])),
        ),
        ("pmd_core".into(), core.to_string()),
        ("window".into(), format!("{} s after {} s warm-up", timing.seconds, timing.warmup)),
        ("rounds".into(), timing.rounds.to_string()),
    ])
}

/// Fails once SIGINT or SIGTERM arrived.
pub fn interrupted() -> Result<()> {
    if vswitch::dpdk::os::stop_requested() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps `d`, waking early (with an error) on SIGINT or SIGTERM.
pub fn nap(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        interrupted()?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Sleeps through the warm-up, showing the live rate.
pub fn wait_warmup(case: &Case, counter: impl FnMut() -> Result<u64>, progress: bool) -> Result<()> {
    watch(case, "warm-up", case.warmup, counter, progress)
}

/// Sleeps through the measured window, showing the live rate.
pub fn sample_window(case: &Case, progress: bool, counter: impl FnMut() -> Result<u64>) -> Result<()> {
    watch(case, "measuring", case.window, counter, progress)
}

fn watch(
    case: &Case,
    what: &str,
    span: Duration,
    mut counter: impl FnMut() -> Result<u64>,
    progress: bool,
) -> Result<()> {
    let t0 = Instant::now();
    let mut last = (t0, if progress { counter()? } else { 0 });
    while t0.elapsed() < span {
        nap(Duration::from_secs(1).min(span.saturating_sub(t0.elapsed())))?;
        if progress {
            let now = (Instant::now(), counter()?);
            let mpps = now.1.saturating_sub(last.1) as f64 / now.0.duration_since(last.0).as_secs_f64() / 1e6;
            eprint!("\r    {} {what} {:>4.1}s {mpps:>6.2} Mpps   ", case.label(), t0.elapsed().as_secs_f64());
            let _ = std::io::stderr().flush();
            last = now;
        }
    }
    if progress {
        eprint!("\r{:79}\r", "");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_only_for_a_run_with_one_flow_and_a_larger_set() {
        let cases = run_cases(
            &[Scenario::Fwd, Scenario::Encap, Scenario::Decap],
            &[1, 1000, 1_000_000],
            &[64, 1500],
            &[1, 1000],
            &[],
            0,
        );
        assert_eq!(baselines(&cases, 1024), vec![(Scenario::Fwd, 1_000_000), (Scenario::Encap, 1_000_000)]);
        // The input set is already that large, or there is no one-flow case.
        assert!(baselines(&cases, 1_000_000).is_empty());
        let many = run_cases(&[Scenario::Fwd], &[1000, 1_000_000], &[64], &[], &[], 0);
        assert!(baselines(&many, 1024).is_empty());
        let smoke = [(Scenario::Fwd, 1000, 64)];
        assert!(baselines(&smoke, 1024).is_empty());
    }

    fn m(scenario: &str, cycles: f64, upcalls: f64) -> Measurement {
        serde_json::from_value(serde_json::json!({
            "switch": "vswitch", "scenario": scenario, "flows": 1000, "frame_bytes": 64, "seconds": 1.0,
            "mpps": 10.0, "cycles_per_packet": cycles, "upcalls_per_second": upcalls, "megaflows": 0, "drops": 0
        }))
        .expect("measurement")
    }

    #[test]
    fn median_round_skips_failed_rounds_and_keeps_every_figure() {
        let failed = Measurement { error: Some("no packets".into()), ..m("fwd", 0.0, 0.0) };
        let rounds = vec![m("fwd", 130.0, 0.0), failed.clone(), m("fwd", 100.0, 0.0), m("fwd", 110.0, 0.0)];
        let median = median_round(rounds).expect("a median");
        assert_eq!(median.cycles_per_packet, 110.0);
        assert_eq!(median.rounds, vec![100.0, 110.0, 130.0]);
        assert!(median.error.is_none());
        // Two rounds: the lower one (the median of an even count is not a round).
        let median = median_round(vec![m("fwd", 120.0, 0.0), m("fwd", 90.0, 0.0)]).expect("a median");
        assert_eq!(median.cycles_per_packet, 90.0);
        // No round with a figure: the failure is the result.
        let only = median_round(vec![failed.clone(), failed]).expect("the failure");
        assert_eq!(only.error.as_deref(), Some("no packets"));
        assert!(median_round(Vec::new()).is_none());
    }

    #[test]
    fn setup_rounds_are_ranked_by_new_flows_a_second() {
        let rounds = vec![m("setup", 500.0, 1.2e6), m("setup", 900.0, 0.8e6), m("setup", 700.0, 1.0e6)];
        let median = median_round(rounds).expect("a median");
        assert_eq!(median.upcalls_per_second, 1.0e6);
        assert_eq!(median.rounds, vec![0.8e6, 1.0e6, 1.2e6]);
    }
}
