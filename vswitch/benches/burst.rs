//! The burst engine alone (criterion): `Engine::process` on bursts of 32
//! 64-byte frames (`RX_BURST`, what a PMD receives at once), as the
//! harness's fwd and encap scenarios send them (the
//! same rule sets and frames), with no DPDK and no I/O. Packets are plain
//! buffers recycled between bursts; only `process` is timed. A first
//! filter for engine changes: pinned to one core it repeats within about
//! 10 %, where the harness's figures move by a third between runs on a
//! noisy host. Plain buffers are not mbufs (a packet costs more here than
//! vswitchd's share of a PMD), so a change it favours is then measured on
//! the PMD (`docs/benchmarks.md`). Run with
//! `taskset -c 1 cargo bench -p vswitch --features testing --bench burst`.
//!
//! With `BURST_COUNT=<bursts>` (and `BURST_CASE=<name>` for one case) it
//! runs each case that many bursts after its warm-up, without criterion,
//! for an instruction count that no host noise moves:
//! `valgrind --tool=callgrind --toggle-collect=burst::counted_burst`
//! counts what `process` executes (`callgrind_annotate` says where); it
//! prints the packets a burst holds, to divide the count by, and (on
//! stderr) the wall time a packet, for changes that move no instruction.

use criterion::{black_box, Criterion, Throughput};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vswitch::actions::VecPacket;
use vswitch::datapath::burst::{Engine, EngineSetup, Io, Packets, PmdConfig, BURST, RX_BURST};
use vswitch::datapath::counters::Local;
use vswitch::flow::RuleTable;
use vswitch::ofrule::parse_rule;
use vswitch::traffic::{udp_frame, TrafficSpec, FWD_RULES};
use vswitch::underlay::{Tables, Underlay};

/// Ports: 0 vf0 (the VM's representor), 1 uplink0, 2 vxlan0.
const PORTS: [&str; 3] = ["vf0", "uplink0", "vxlan0"];

/// Keeps what the engine sends, to recycle the buffers.
#[derive(Default)]
struct Recycle {
    sent: Vec<VecPacket>,
}

impl Io for Recycle {
    type Pkt = VecPacket;

    fn send(&mut self, _port: u32, pkt: VecPacket, _counters: &mut Local) {
        self.sent.push(pkt);
    }

    fn copy(&mut self, pkt: &VecPacket) -> Option<VecPacket> {
        Some(pkt.clone())
    }

    fn alloc(&mut self) -> Option<VecPacket> {
        Some(VecPacket::new(&[], 128))
    }
}

/// The harness's fwd rule set; encap sends to vxlan0 instead of uplink0.
fn table(encap: bool) -> RuleTable {
    let mut table = RuleTable::new();
    let resolve = |n: &str| PORTS.iter().position(|p| *p == n).map(|i| i as u32);
    for r in FWD_RULES {
        let text = if encap { r.replace("output:uplink0", "output:vxlan0") } else { r.to_owned() };
        let spec = parse_rule(&text, &resolve).expect("rule");
        table.insert(spec.priority, spec.matcher, spec.actions);
    }
    table
}

/// The harness's underlay: VTEP 198.18.0.1/24 on uplink0, the remote VTEP
/// 198.18.0.2 a known neighbour, vxlan0 to it with VNI 100.
fn underlay() -> Arc<Underlay> {
    Arc::new(Underlay::new(Tables::one_vtep(1, 2, [2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 1, 2], 1600)))
}

/// An engine with vswitchd's default PMD settings.
fn engine(encap: bool) -> Engine {
    Engine::new(EngineSetup {
        index: 0,
        config: PmdConfig {
            upcall_budget: 64,
            emc_entries: 8192,
            smc_entries: 1 << 20,
            emc_insert_inv_prob: 100,
            max_flows: 262_144,
            idle_timeout: Duration::from_secs(10),
            hw_grace: Duration::ZERO,
        },
        table: Arc::new(table(encap)),
        events: None,
        hit_reports: false,
        underlay: underlay(),
        uplink: vec![false, true],
        mtus: vec![1600, 1600],
        tunnels: 1,
        hz: 1_000_000_000,
        hardware: None,
        hot: None,
        punt: Default::default(),
    })
}

/// The harness's frames: flow `i` from 10.0.0.0 + i, port 1024 + i, to
/// 10.255.255.1:5001, 60 bytes (64 on the wire).
fn frames(flows: u32) -> Vec<Vec<u8>> {
    let spec = TrafficSpec {
        flows,
        size: 60,
        dl_src: [2, 0, 0, 0, 0, 1],
        dl_dst: vec![[2, 0, 0, 0, 0, 2]],
        nw_src: Ipv4Addr::new(10, 0, 0, 0),
        nw_dst: Ipv4Addr::new(10, 255, 255, 1),
    };
    (0..flows).map(|i| udp_frame(&spec, i)).collect()
}

/// One burst from port 0 (vf0), as timed.
#[inline(always)]
fn process_burst(e: &mut Engine, pkts: &mut Packets<VecPacket>, now: u64, io: &mut Recycle) {
    e.process(0, pkts, RX_BURST, now, io);
}

/// One burst, as counted: a function of its own, the one the instruction
/// count is taken in (not the warm-up's bursts).
#[inline(never)]
fn counted_burst(e: &mut Engine, pkts: &mut Packets<VecPacket>, now: u64, io: &mut Recycle) {
    e.process(0, pkts, RX_BURST, now, io);
}

/// A burst's processing: [`process_burst`] or [`counted_burst`].
type Burst = fn(&mut Engine, &mut Packets<VecPacket>, u64, &mut Recycle);

/// Time in `process` for `iters` bursts, the frames taken round-robin.
fn run(e: &mut Engine, frames: &[Vec<u8>], next: &mut usize, iters: u64, io: &mut Recycle, burst: Burst) -> Duration {
    let mut pool: Vec<VecPacket> = (0..RX_BURST).map(|_| VecPacket::new(&[], 128)).collect();
    // The engine's slots; a burst fills the first RX_BURST, as a PMD's
    // receive does.
    let mut pkts: Packets<VecPacket> = [const { None }; BURST];
    let mut total = Duration::ZERO;
    for it in 0..iters {
        for slot in pkts.iter_mut().take(RX_BURST) {
            let mut p = pool.pop().unwrap_or_else(|| VecPacket::new(&[], 128));
            p.reset(&frames[*next], 128);
            *next = if *next + 1 == frames.len() { 0 } else { *next + 1 };
            *slot = Some(p);
        }
        e.start_iteration();
        let t0 = Instant::now();
        burst(e, &mut pkts, black_box(it), io);
        total += t0.elapsed();
        pool.append(&mut io.sent);
    }
    total
}

/// The cases: name, encap or fwd, flows.
fn cases() -> Vec<(String, bool, u32)> {
    let mut v = Vec::new();
    for (name, encap) in [("fwd", false), ("encap", true)] {
        for flows in [1u32, 1000, 100_000] {
            let label =
                if flows >= 1000 { format!("{name}_{}k_flows", flows / 1000) } else { format!("{name}_{flows}_flow") };
            v.push((label, encap, flows));
        }
    }
    v
}

/// A case's engine, frames and sender after the warm-up: every flow
/// installed, the caches and the gate settled. 20,000 bursts (640k
/// packets): at 1,000 flows the exact-match cache, filled one insertion in
/// 100, is passed by until about 200k packets have gone through (see
/// `EmcGate`); a vswitchd PMD is there within its first tenth of a second.
fn warmed(encap: bool, flows: u32) -> (Engine, Vec<Vec<u8>>, usize, Recycle) {
    let frames = frames(flows);
    let mut e = engine(encap);
    let mut io = Recycle { sent: Vec::with_capacity(2 * RX_BURST) };
    let mut next = 0usize;
    let warm = (2 * frames.len() / RX_BURST).max(20_000) as u64;
    run(&mut e, &frames, &mut next, warm, &mut io, process_burst);
    (e, frames, next, io)
}

fn bench_bursts(c: &mut Criterion) {
    let mut group = c.benchmark_group("burst");
    group.throughput(Throughput::Elements(RX_BURST as u64));
    for (label, encap, flows) in cases() {
        // Warmed when criterion runs the case (not at all when a filter
        // leaves it out).
        let mut state = None;
        group.bench_function(label, |b| {
            let (e, frames, next, io) = state.get_or_insert_with(|| warmed(encap, flows));
            b.iter_custom(|iters| run(e, frames, next, iters, io, process_burst))
        });
    }
    group.finish();
}

fn main() {
    if let Ok(bursts) = std::env::var("BURST_COUNT") {
        let bursts: u64 = bursts.parse().expect("BURST_COUNT: a number of bursts");
        let only = std::env::var("BURST_CASE").ok();
        if let Some(o) = only.as_ref().filter(|o| !cases().iter().any(|(l, ..)| l == *o)) {
            let names: Vec<String> = cases().into_iter().map(|(l, ..)| l).collect();
            eprintln!("BURST_CASE={o}: no such case (the cases: {})", names.join(", "));
            std::process::exit(2);
        }
        for (label, encap, flows) in cases() {
            if only.as_ref().is_some_and(|o| *o != label) {
                continue;
            }
            let (mut e, frames, mut next, mut io) = warmed(encap, flows);
            let t = run(&mut e, &frames, &mut next, bursts, &mut io, counted_burst);
            println!("{label}: {bursts} bursts of {RX_BURST} packets");
            // Wall time as well (pin it: `taskset -c 1`), for changes that
            // move no instruction: memory and pages.
            let ns = t.as_secs_f64() * 1e9 / (bursts * RX_BURST as u64).max(1) as f64;
            eprintln!("{label}: {ns:.1} ns a packet");
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench_bursts(&mut c);
    c.final_summary();
}
