//! The burst engine on plain buffers: each stage and whole bursts, no DPDK.
//! The shared fixtures are here; the tests sit in files by concern, as the
//! engine does: `stages`, `flows` (budget, flood, eviction, revalidation),
//! `hot`, `differential` (offload on and off give the same packets),
//! `controller` (packet-in and packet-out), `tables` (goto_table), `groups`
//! (grouping by flow, batches of one action list), `frames` (lookups by
//! frame key against lookups by flow key).

use super::engine::SMC_MIN_MASKS;
use super::gate::EmcGate;
use super::*;
use crate::actions::VecPacket;
use crate::actions::{Action, PacketBuf};
use crate::datapath::counters::Shared;
use crate::datapath::counters::{Counter, DropReason, Local, PortCounter};
use crate::datapath::flows::{FlowEvent, FlowInfo, RemoveReason};
use crate::flow::{Bits, RuleTable};
use crate::ofrule::parse_rule;
use crate::packet::Field;
use crate::underlay::Tables;
use crate::underlay::Underlay;
use offload::entropy::{vxlan_src_port, InnerFlow};
use std::sync::Arc;
use std::time::Duration;

/// Ports: 0 vf0, 1 vf1, 2 uplink0 (VTEP 198.18.0.1/24), 3 vxlan0 (tunnel).
const PORTS: [&str; 4] = ["vf0", "vf1", "uplink0", "vxlan0"];
const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
const REMOTE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xbb];

/// Collects what the engine sends, per port.
#[derive(Default)]
struct VecIo {
    sent: Vec<(u32, Vec<u8>)>,
    /// Copies left before "no buffers".
    copies: usize,
}

impl Io for VecIo {
    type Pkt = VecPacket;

    fn send(&mut self, port: u32, pkt: VecPacket, counters: &mut Local) {
        counters.port(port as usize, PortCounter::TxPackets, 1);
        self.sent.push((port, pkt.data().to_vec()));
    }

    fn copy(&mut self, pkt: &VecPacket) -> Option<VecPacket> {
        if self.copies == 0 {
            return None;
        }
        self.copies -= 1;
        Some(pkt.clone())
    }

    fn alloc(&mut self) -> Option<VecPacket> {
        Some(VecPacket::new(&[], 128))
    }
}

fn underlay() -> Arc<Underlay> {
    Arc::new(Underlay::new(Tables::one_vtep(2, 3, UPLINK_MAC, REMOTE_MAC, 1500)))
}

fn table(rules: &[&str]) -> RuleTable {
    let mut table = RuleTable::new();
    let resolve = |n: &str| PORTS.iter().position(|p| *p == n).map(|i| i as u32);
    for r in rules {
        let spec = parse_rule(r, &resolve).expect(r);
        table.add(crate::flow::Rule {
            table: spec.table,
            priority: spec.priority,
            matcher: spec.matcher,
            actions: spec.actions,
            goto: spec.goto,
            ..Default::default()
        });
    }
    table
}

fn engine(rules: &[&str], budget: usize) -> Engine {
    engine_sized(rules, budget, 1000)
}

fn engine_sized(rules: &[&str], budget: usize, max_flows: usize) -> Engine {
    engine_mtus(rules, budget, max_flows, vec![1500, 1500, 1500])
}

fn engine_mtus(rules: &[&str], budget: usize, max_flows: usize, mtus: Vec<u16>) -> Engine {
    let table = table(rules);
    let mut e = Engine::new(EngineSetup {
        index: 0,
        config: PmdConfig {
            upcall_budget: budget,
            emc_entries: 1024,
            smc_entries: 4096,
            emc_insert_inv_prob: 1,
            max_flows,
            idle_timeout: Duration::from_secs(10),
            hw_grace: Duration::ZERO,
        },
        table: Arc::new(table),
        events: None,
        hit_reports: false,
        underlay: underlay(),
        uplink: vec![false, false, true],
        mtus,
        tunnels: 1,
        hz: 1_000_000_000,
        hardware: None,
        hot: None,
        punt: Default::default(),
    });
    e.start_iteration();
    e
}

fn udp(dst: [u8; 6], src: [u8; 6], ip_dst: [u8; 4], dport: u16, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(42)];
    let n = f.len();
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((n - 14) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&ip_dst);
    let c = crate::packet::checksum::ipv4_header(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&1000u16.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&((n - 34) as u16).to_be_bytes());
    f
}

fn burst(frames: &[Vec<u8>]) -> (Packets<VecPacket>, usize) {
    let mut pkts: Packets<VecPacket> = [const { None }; BURST];
    for (i, f) in frames.iter().enumerate() {
        pkts[i] = Some(VecPacket::new(f, 128));
    }
    (pkts, frames.len())
}

fn counters(e: &Engine) -> Shared {
    let s = Shared::new(4);
    e.counters.publish(&s);
    s
}

/// `inner` as the remote VTEP (198.18.0.2) sends it to uplink0 over VXLAN,
/// VNI 100, with outer UDP source port `sport`.
fn from_remote_vtep(inner: &[u8], sport: u16) -> Vec<u8> {
    let remote = crate::actions::vxlan::EncapTemplate::new(crate::actions::vxlan::EncapSpec {
        eth_src: REMOTE_MAC,
        eth_dst: UPLINK_MAC,
        ip_src: "198.18.0.2".parse().expect("ip"),
        ip_dst: "198.18.0.1".parse().expect("ip"),
        vni: 100,
        udp_dst: 4789,
        ttl: 64,
        tos: 0,
        df: true,
    })
    .expect("template");
    let mut p = VecPacket::new(inner, 128);
    remote.encap(&mut p, sport).expect("encap");
    p.data().to_vec()
}

/// Runs `bursts` (input port, frames), one iteration each; what went out,
/// sorted (a multiset to compare).
fn run_bursts(e: &mut Engine, bursts: &[(u32, Vec<Vec<u8>>)]) -> Vec<(u32, Vec<u8>)> {
    let mut io = VecIo { copies: 100, ..Default::default() };
    for (round, (port, frames)) in bursts.iter().enumerate() {
        e.start_iteration();
        let (mut pkts, n) = burst(frames);
        e.process(*port, &mut pkts, n, round as u64 + 1, &mut io);
    }
    let mut out = io.sent;
    out.sort();
    out
}

/// The facts translation needs of the physical ports (ethdev 20 + number).
fn port_facts(vf0_mtu: u16) -> Vec<crate::offload_manager::translate::PortFacts> {
    ["vf0", "vf1", "uplink0"]
        .iter()
        .enumerate()
        .map(|(i, name)| crate::offload_manager::translate::PortFacts {
            name: (*name).into(),
            ethdev: 20 + i as u16,
            role: if i == 2 { crate::config::Role::Uplink } else { crate::config::Role::Representor },
            mtu: if i == 0 { vf0_mtu } else { 1500 },
            domain: Some(0),
            mac: if i == 2 { UPLINK_MAC } else { [2, 0, 0, 0, 0, 0x10 + i as u8] },
        })
        .collect()
}

/// Translates every megaflow of `software` and installs it in `model`;
/// returns the flows installed and the refusals.
fn install_all(
    software: &mut Engine,
    facts: &[crate::offload_manager::translate::PortFacts],
    u: &Underlay,
    model: &Arc<offload::model::ModelSwitch>,
) -> (Vec<FlowInfo>, Vec<String>) {
    use crate::offload_manager::translate::{translate, Context};
    use offload::device::FlowDevice;
    let mut device = offload::model::ModelDevice::new(Arc::clone(model));
    let (mut installed, mut refused) = (Vec::new(), Vec::new());
    for f in software.dump(100) {
        match u.read(|tables| translate(&f.key, &f.mask, &f.actions, &Context { ports: facts, tables }, 1)) {
            Ok(t) => {
                device.create(&offload::rte_flow::lower(&t.rule, 0, f.id).expect("lower")).expect("the model takes it");
                installed.push(f);
            }
            Err(r) => refused.push(r.to_string()),
        }
    }
    (installed, refused)
}

/// The model e-switch in front of the physical ports (ethdev 20 + number).
fn model_stage(model: &Arc<offload::model::ModelSwitch>) -> Hardware {
    Hardware {
        eswitch: Arc::clone(model) as Arc<dyn offload::device::InPath>,
        ethdev: vec![20, 21, 22],
        port_of: (0..23).map(|e| (20..23).contains(&e).then(|| (e - 20) as u32)).collect(),
    }
}

/// Every packet received (or copied, or made) was sent, dropped under a
/// reason or consumed: the balance over the three physical ports is even.
#[track_caller]
fn assert_balanced(e: &Engine) {
    let b = counters(e).balance(3);
    assert_eq!(b.unaccounted(), 0, "packets unaccounted for: {b:?}");
}

mod controller;
mod differential;
mod flows;
mod frames;
mod groups;
mod hot;
mod stages;
mod tables;
