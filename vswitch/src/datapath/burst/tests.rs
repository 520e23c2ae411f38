//! The burst engine on plain buffers: each stage and whole bursts, no DPDK.

use super::*;
use crate::actions::VecPacket;
use crate::datapath::counters::Shared;
use crate::ofrule::parse_rule;
use crate::underlay::{LocalAddress, NeighSource, Neighbour, Route, RouteSource, Tables, Tunnel};

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
    let mut t = Tables::default();
    let ip = |s: &str| s.parse().expect("ip");
    t.locals.push(LocalAddress { ip: ip("198.18.0.1"), len: 24, port: 2, mac: UPLINK_MAC, mtu: 1500 });
    t.routes.push(Route {
        prefix: "198.18.0.0/24".parse().expect("p"),
        via: None,
        port: 2,
        source: RouteSource::Connected,
        metric: 0,
    });
    t.neighbours.insert(ip("198.18.0.2"), Neighbour { mac: REMOTE_MAC, port: 2, source: NeighSource::Config });
    t.tunnels.push(Tunnel {
        name: "vxlan0".into(),
        number: 3,
        remote: ip("198.18.0.2"),
        vni: Some(100),
        local: None,
        udp_port: 4789,
    });
    Arc::new(Underlay::new(t))
}

fn table(rules: &[&str]) -> RuleTable {
    let mut table = RuleTable::new();
    let resolve = |n: &str| PORTS.iter().position(|p| *p == n).map(|i| i as u32);
    for r in rules {
        let spec = parse_rule(r, &resolve).expect(r);
        table.insert(spec.priority, spec.matcher, spec.actions);
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
fn port_facts(vf0_mtu: u16) -> Vec<crate::offloading::translate::PortFacts> {
    ["vf0", "vf1", "uplink0"]
        .iter()
        .enumerate()
        .map(|(i, name)| crate::offloading::translate::PortFacts {
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
    facts: &[crate::offloading::translate::PortFacts],
    u: &Underlay,
    model: &Arc<offload::model::ModelSwitch>,
) -> (Vec<FlowInfo>, Vec<String>) {
    use crate::offloading::translate::{translate, Context};
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
        model: Arc::clone(model),
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

#[test]
fn forwards_by_rule_caches_the_megaflow_and_counts_lookup_tiers() {
    let mut e = engine(&["priority=10,in_port=vf0,ip actions=output:uplink0"], 64);
    let frames: Vec<Vec<u8>> = (0..8).map(|i| udp([2; 6], [4; 6], [10, 0, 0, i], 80, 60)).collect();
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&frames);
    e.process(0, &mut pkts, n, 1, &mut io);
    assert_eq!(io.sent.len(), 8);
    assert!(io.sent.iter().all(|(p, _)| *p == 2));
    assert_eq!(io.sent.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(), frames, "unchanged, in order");
    let c = counters(&e);
    assert_eq!((c.get(Counter::Upcalls), c.get(Counter::MegaflowHits)), (1, 7), "one upcall covers the burst");
    assert_eq!(e.flow_count(), 1);
    // The second burst hits the exact-match cache for the packets inserted.
    let (mut pkts, n) = burst(&frames);
    e.process(0, &mut pkts, n, 2, &mut io);
    let c = counters(&e);
    assert_eq!(c.get(Counter::EmcHits), 8, "every packet was inserted on its megaflow hit (1 in 1)");
    assert_eq!(c.port(0, PortCounter::RxPackets), 16);
    let dump = e.dump(3);
    assert_eq!((dump.len(), dump[0].packets), (1, 16));
    assert_balanced(&e);
}

#[test]
fn stages_one_by_one() {
    let mut e = engine(&["priority=10,in_port=vf0,ip actions=output:uplink0"], 64);
    let frames = vec![udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60), vec![1, 2, 3]];
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&frames);
    let pending = e.stage_ingress(0, &mut pkts, n, &mut io);
    assert_eq!(pending, 0b01, "the 3-byte frame is a parse error");
    assert!(pkts[1].is_none());
    assert_eq!(counters(&e).drops(DropReason::ParseError), 1);
    assert_eq!(e.stage_emc(pending), 0b01, "empty cache: a miss");
    assert_eq!(e.stage_megaflow(pending), 0b01, "no megaflow yet");
    e.stage_upcall(pending, &mut pkts, 1);
    let g = group(&e.flow_of, &pkts, n);
    assert_eq!((g.len, g.members[0]), (1, 0b01));
    e.stage_execute(&g, &mut pkts, 1, &mut io);
    assert_eq!(io.sent.len(), 1);
}

#[test]
fn vlan_mac_drop_copies_and_mtu() {
    let mut e = engine(
        &[
            "priority=20,in_port=vf0,udp,tp_dst=53 actions=mod_vlan_vid:100,output:uplink0",
            "priority=10,in_port=vf0,ip actions=mod_dl_src:02:aa:00:00:00:01,output:uplink0,output:vf1",
            "priority=30,in_port=vf0,ip,nw_dst=10.9.0.0/16 actions=drop",
        ],
        64,
    );
    let dns = udp([2; 6], [4; 6], [10, 0, 0, 1], 53, 60);
    let web = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let dropped = udp([2; 6], [4; 6], [10, 9, 0, 1], 80, 60);
    let big = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 1600);
    let mut io = VecIo { copies: 10, ..Default::default() };
    let (mut pkts, n) = burst(&[dns.clone(), web.clone(), dropped, big]);
    e.process(0, &mut pkts, n, 1, &mut io);
    let mut tagged = dns[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 100]);
    tagged.extend_from_slice(&dns[12..]);
    let mut rewritten = web.clone();
    rewritten[6..12].copy_from_slice(&[2, 0xaa, 0, 0, 0, 1]);
    assert!(io.sent.contains(&(2, tagged)), "VLAN pushed");
    assert!(io.sent.contains(&(2, rewritten.clone())) && io.sent.contains(&(1, rewritten)), "both outputs");
    let c = counters(&e);
    assert_eq!(c.drops(DropReason::RuleDrop), 1);
    assert_eq!(c.drops(DropReason::RxMtu), 1, "vf0 cannot send a 1600-byte frame above its MTU of 1500");
    assert_eq!(io.sent.len(), 3);
    // Without buffers the copy is dropped and counted; the last output still goes.
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&[web]);
    e.process(0, &mut pkts, n, 2, &mut io);
    assert_eq!(io.sent.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![1]);
    assert_eq!(counters(&e).drops(DropReason::NoMbuf), 1);
    assert_balanced(&e);
}

#[test]
fn upcall_budget_limits_new_flows_per_iteration() {
    let mut e = engine(
        &[
            "priority=10,in_port=vf0,ip,nw_dst=10.0.0.0/8 actions=output:uplink0",
            "priority=20,in_port=vf0,udp,tp_dst=53 actions=output:vf1",
            "priority=5,in_port=vf0 actions=output:vf1",
        ],
        2,
    );
    // Three distinct megaflows (different rules), budget 2.
    let frames = vec![
        udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60),
        udp([2; 6], [4; 6], [10, 0, 0, 1], 53, 60),
        udp([2; 6], [4; 6], [11, 0, 0, 1], 80, 60),
    ];
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&frames);
    e.process(0, &mut pkts, n, 1, &mut io);
    let c = counters(&e);
    assert_eq!((c.get(Counter::Upcalls), c.drops(DropReason::UpcallBudget)), (2, 1));
    e.start_iteration();
    let (mut pkts, n) = burst(&frames);
    e.process(0, &mut pkts, n, 2, &mut io);
    assert_eq!(counters(&e).get(Counter::Upcalls), 3, "the next iteration has budget again");
    assert_balanced(&e);
}

/// The flood scenario: vf0 offers a new flow in every packet (each its own
/// megaflow: the rules consult the whole destination address), vf1 offers
/// 10 established flows. `iterations` PMD iterations, each polling both
/// ports in the PMD's rotating order; returns the share of vf1's packets
/// delivered.
fn flood_round(e: &mut Engine, iterations: usize, flood: &mut u32, with_flood: bool, now: &mut u64) -> f64 {
    let established: Vec<Vec<u8>> = (0..10).map(|i| udp([2; 6], [6; 6], [10, 1, 0, i], 80, 60)).collect();
    let (mut offered, mut delivered) = (0usize, 0usize);
    for it in 0..iterations {
        *now += 10_000; // 10 us per iteration
        e.start_iteration();
        for step in 0..2 {
            let queue = (it + step) % 2;
            e.queue_turn(1 - step, 2);
            let mut io = VecIo::default();
            if queue == 0 {
                if !with_flood {
                    continue;
                }
                let frames: Vec<Vec<u8>> = (0..BURST as u32)
                    .map(|_| {
                        *flood += 1;
                        udp([2; 6], [4; 6], [10, 2, (*flood >> 8) as u8, *flood as u8], 80, 60)
                    })
                    .collect();
                let (mut pkts, n) = burst(&frames);
                e.process(0, &mut pkts, n, *now, &mut io);
            } else {
                let (mut pkts, n) = burst(&established);
                e.process(1, &mut pkts, n, *now, &mut io);
                offered += n;
                delivered += io.sent.iter().filter(|(p, _)| *p == 2).count();
            }
        }
        if it % 1000 == 999 {
            e.maintenance(*now); // every 10 ms (the PMD: 100 ms)
        }
    }
    delivered as f64 / offered as f64
}

#[test]
fn a_new_flow_flood_on_one_port_does_not_shut_out_established_flows_on_another() {
    let rules = [
        "priority=20,in_port=vf0,ip,nw_dst=10.9.9.9 actions=drop",
        "priority=20,in_port=vf1,ip,nw_dst=10.9.9.9 actions=drop",
        "priority=10,ip actions=output:uplink0",
    ];
    // A small budget (4 upcalls per iteration for both ports) and a table of
    // 1,000 flows: the flood offers 32 new flows an iteration.
    let mut e = engine(&rules, 4);
    let (mut flood, mut now) = (0u32, 1u64);
    let alone = flood_round(&mut e, 50, &mut flood, false, &mut now);
    assert!(alone > 0.9, "alone: {alone}");
    let under_flood = flood_round(&mut e, 2000, &mut flood, true, &mut now);
    let c = counters(&e);
    assert!(e.flow_count() <= 1000);
    assert!(c.drops(DropReason::UpcallBudget) > 0, "the flood was over budget");
    assert!(under_flood >= 0.5 * alone, "under flood {under_flood:.3} vs alone {alone:.3}");
    // A rule change that revalidates vf1's flows out (they must now match
    // on the UDP port): they come back under the flood.
    let mut changed = rules.to_vec();
    changed.push("priority=30,in_port=vf1,udp,tp_dst=9999 actions=drop");
    let report = e.revalidate(Arc::new(table(&changed)));
    assert!(report.removed >= 10, "{report:?}");
    let after = flood_round(&mut e, 2000, &mut flood, true, &mut now);
    assert!(after >= 0.5 * alone, "after a rule change, under flood {after:.3} vs alone {alone:.3}");
    // The established flows are back in the table and stay there.
    let vf1_flows = e.dump(now).iter().filter(|f| f.key.in_port() == 1).count();
    assert_eq!(vf1_flows, 10);
    assert!(c.get(Counter::FlowsEvicted) > 500, "the full table made room: {}", c.get(Counter::FlowsEvicted));
    // Under pressure (over 3/4 full) idle flows expire after 100 ms rather
    // than the idle timeout (10 s here); the established ones stay.
    assert!(e.flow_count() > 750);
    flood_round(&mut e, 15_000, &mut flood, false, &mut now);
    assert!(e.flow_count() < 100, "idle flood flows expired: {} left", e.flow_count());
    assert_eq!(e.dump(now).iter().filter(|f| f.key.in_port() == 1).count(), 10, "established flows kept");
    assert_balanced(&e);
}

/// New flows far beyond a tiny table: each burst installs more megaflows
/// than the table holds, so installs evict flows of earlier bursts, never
/// those the burst in flight points to; whatever cannot be installed is
/// counted as `flow_limit`, and every packet is accounted for.
#[test]
fn a_tiny_flow_table_under_many_new_flows_loses_no_packet_uncounted() {
    let rules: Vec<String> =
        (0..=255).map(|i| format!("priority=20,ip,nw_dst=10.3.0.{i} actions=output:uplink0")).collect();
    let refs: Vec<&str> = rules.iter().map(String::as_str).collect();
    for max_flows in [16, 32] {
        let mut e = engine_sized(&refs, 1000, max_flows);
        let (mut sent, mut offered) = (0usize, 0usize);
        for b in 0..40u32 {
            e.start_iteration();
            // 32 packets over 25 flows (some twice in a burst), new ones each burst.
            let frames: Vec<Vec<u8>> =
                (0..32u32).map(|i| udp([2; 6], [4; 6], [10, 3, 0, ((b * 7 + i % 25) % 256) as u8], 80, 60)).collect();
            let mut io = VecIo::default();
            let (mut pkts, n) = burst(&frames);
            e.process(0, &mut pkts, n, u64::from(b + 1) * 1000, &mut io);
            offered += n;
            sent += io.sent.len();
            assert_balanced(&e);
        }
        let c = counters(&e);
        let drops: u64 = DropReason::ALL.iter().map(|&r| c.drops(r)).sum();
        assert_eq!(c.drops(DropReason::FlowGone), 0, "no flow of the burst in flight was evicted");
        assert_eq!(sent as u64 + drops, offered as u64, "max_flows {max_flows}");
        assert_eq!(drops, c.drops(DropReason::FlowLimit), "only the table's limit drops");
        assert!(e.flow_count() <= max_flows);
        assert!(c.get(Counter::FlowsEvicted) > 0, "the table made room");
        if max_flows == 32 {
            assert_eq!(drops, 0, "25 flows a burst fit a table of 32");
        }
    }
}

mod differential;

mod balance_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Random table sizes, flow mixes, rules with copies, drops and
        /// outputs to the input port, oversized frames and garbage: the
        /// balance holds after every burst.
        #[test]
        fn every_packet_is_sent_dropped_or_consumed(
            max_flows in 1usize..48,
            budget in 1usize..40,
            copies in 0usize..40,
            bursts in proptest::collection::vec(
                (0u32..3, proptest::collection::vec((0u8..64, 0u16..4, any::<bool>(), any::<bool>()), 1..=BURST)),
                1..12,
            ),
        ) {
            let rules = [
                "priority=40,ip,nw_dst=10.4.0.1 actions=drop",
                "priority=30,ip,nw_dst=10.4.0.2 actions=output:uplink0,output:vf1",
                "priority=30,ip,nw_dst=10.4.0.3 actions=output:vf0",
                "priority=30,ip,nw_dst=10.4.0.4 actions=output:vxlan0",
                "priority=30,ip,nw_dst=10.4.0.5 actions=output:vf1,mod_dl_src:02:00:00:00:00:99",
                "priority=20,udp,tp_dst=2 actions=mod_vlan_vid:7,output:uplink0",
                "priority=10,ip actions=output:vf1",
            ];
            let mut e = engine_sized(&rules, budget, max_flows);
            let mut now = 1u64;
            for (port, pkts) in &bursts {
                e.start_iteration();
                now += 1000;
                let frames: Vec<Vec<u8>> = pkts
                    .iter()
                    .map(|&(host, dport, big, junk)| {
                        if junk {
                            vec![host; usize::from(dport) + 5]
                        } else {
                            udp([2; 6], [4; 6], [10, 4, 0, host], dport, if big { 1530 } else { 60 })
                        }
                    })
                    .collect();
                let mut io = VecIo { copies, ..Default::default() };
                let (mut p, n) = burst(&frames);
                e.process(*port, &mut p, n, now, &mut io);
                let b = counters(&e).balance(3);
                prop_assert_eq!(b.unaccounted(), 0, "{:?}", b);
                prop_assert_eq!(counters(&e).drops(DropReason::FlowGone), 0);
            }
        }
    }
}

#[test]
fn the_flood_port_polled_first_cannot_take_the_whole_upcall_budget() {
    let many: Vec<Vec<u8>> = (0..8).map(|i| udp([2; 6], [4; 6], [10, 0, 0, i], 80, 60)).collect();
    let mut io = VecIo::default();
    // vf0 polled first, vf1 after it: vf0 may use 4 - 2 (vf1's share).
    let rules = (0..8).map(|i| format!("priority=20,ip,nw_dst=10.0.0.{i} actions=output:uplink0")).collect::<Vec<_>>();
    let refs: Vec<&str> = rules.iter().map(String::as_str).collect();
    let mut e = engine(&refs, 4);
    e.start_iteration();
    e.queue_turn(1, 2);
    let (mut pkts, n) = burst(&many);
    e.process(0, &mut pkts, n, 1, &mut io);
    let c = counters(&e);
    assert_eq!((c.get(Counter::Upcalls), c.drops(DropReason::UpcallBudget)), (2, 6), "vf1's share kept");
    e.queue_turn(0, 2);
    let theirs: Vec<Vec<u8>> = (0..2).map(|i| udp([2; 6], [6; 6], [10, 0, 0, i], 80, 60)).collect();
    let (mut pkts, n) = burst(&theirs);
    e.process(1, &mut pkts, n, 1, &mut io);
    assert_eq!(counters(&e).get(Counter::Upcalls), 4, "vf1 got its share");
}

#[test]
fn an_output_to_the_input_port_is_skipped_unless_the_rule_says_in_port() {
    let mut e = engine(
        &[
            "priority=10,in_port=vf0 actions=output:vf0,output:uplink0",
            "priority=10,in_port=vf1 actions=mod_vlan_vid:5,output:vf1",
            "priority=10,in_port=uplink0 actions=output:in_port",
        ],
        64,
    );
    let f = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let mut io = VecIo::default();
    for port in [0, 1, 2] {
        let (mut pkts, n) = burst(std::slice::from_ref(&f));
        e.process(port, &mut pkts, n, 1, &mut io);
    }
    let to: Vec<u32> = io.sent.iter().map(|(p, _)| *p).collect();
    assert_eq!(to, vec![2, 2], "vf0's copy to itself skipped; uplink0 hairpins by in_port");
    assert_eq!(counters(&e).drops(DropReason::ToInPort), 1, "vf1's only output was to itself");
    // The flows show what they do.
    let mut flows = e.dump(2);
    flows.sort_by_key(|f| f.key.in_port());
    let outs: Vec<Vec<Action>> = flows.iter().map(|f| f.actions.to_vec()).collect();
    assert_eq!(outs[0], vec![Action::Output(2)]);
    assert_eq!(outs[2], vec![Action::Output(2)]);
}

#[test]
fn encap_to_the_tunnel_uses_the_offload_source_port() {
    let mut e = engine(&["priority=10,in_port=vf0 actions=output:vxlan0"], 64);
    let inner = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(std::slice::from_ref(&inner));
    e.process(0, &mut pkts, n, 1, &mut io);
    assert_eq!(io.sent.len(), 1);
    let (port, out) = &io.sent[0];
    assert_eq!(*port, 2);
    assert_eq!(&out[0..6], &REMOTE_MAC);
    assert_eq!(&out[50..], &inner[..]);
    let sport = u16::from_be_bytes([out[34], out[35]]);
    assert_eq!(sport, vxlan_src_port(&InnerFlow::from_frame(&inner)), "the same function as the model e-switch");
    assert_eq!(counters(&e).get(Counter::Encapsulated), 1);
}

#[test]
fn vtep_answers_arp_and_decapsulates() {
    let mut e = engine(&["priority=10,in_port=vxlan0 actions=output:vf0"], 64);
    // ARP request for the VTEP address.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&REMOTE_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&REMOTE_MAC);
    arp.extend_from_slice(&[198, 18, 0, 2]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[198, 18, 0, 1]);
    // VXLAN from the remote VTEP, VNI 100.
    let inner = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let vx = from_remote_vtep(&inner, 0xc000);
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&[arp, vx]);
    e.process(2, &mut pkts, n, 1, &mut io);
    assert_eq!(io.sent.len(), 2, "{:?}", io.sent.iter().map(|(p, f)| (p, f.len())).collect::<Vec<_>>());
    let (reply_port, reply) = &io.sent[0];
    assert_eq!((*reply_port, &reply[12..14], &reply[20..22]), (2, &[0x08, 0x06][..], &[0, 2][..]), "ARP reply");
    assert_eq!(io.sent[1], (0, inner), "decapsulated to vf0");
    let c = counters(&e);
    assert_eq!((c.get(Counter::Decapsulated), c.get(Counter::NeighRepliesSent)), (1, 1));
    assert_eq!(c.port(3, PortCounter::RxPackets), 1, "counted on the tunnel port");
}

#[test]
fn revalidation_keeps_unaffected_flows_and_removes_shadowed_ones() {
    let mut e = engine(
        &["priority=10,in_port=vf0,ip actions=output:uplink0", "priority=10,in_port=vf1,ip actions=output:uplink0"],
        64,
    );
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&[udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60)]);
    e.process(0, &mut pkts, n, 1, &mut io);
    let (mut pkts, n) = burst(&[udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60)]);
    e.process(1, &mut pkts, n, 1, &mut io);
    assert_eq!(e.flow_count(), 2);
    let mut table = RuleTable::new();
    let resolve = |n: &str| PORTS.iter().position(|p| *p == n).map(|i| i as u32);
    for r in ["priority=10,in_port=vf0,ip actions=output:uplink0", "priority=10,in_port=vf1,ip actions=output:vf0"] {
        let s = parse_rule(r, &resolve).expect(r);
        table.insert(s.priority, s.matcher, s.actions);
    }
    let report = e.revalidate(Arc::new(table));
    assert_eq!((report.kept, report.removed), (1, 1));
    assert_eq!(e.flow_count(), 1);
}

/// A revalidation in slices: before its sweep reaches a stale flow, a packet
/// hitting it has it revalidated first (so it is sent by the new rules, never
/// the old); the sweep then checks the rest, a slice at a time, and the tally
/// counts every flow once.
#[test]
fn a_sliced_revalidation_never_forwards_by_the_old_rules() {
    let rules: Vec<String> =
        (0..200).map(|i| format!("priority=10,ip,nw_dst=10.0.1.{i} actions=output:uplink0")).collect();
    let refs: Vec<&str> = rules.iter().map(String::as_str).collect();
    let mut e = engine(&refs, 256);
    let mut io = VecIo::default();
    let frames: Vec<Vec<u8>> = (0..200u8).map(|i| udp([2; 6], [4; 6], [10, 0, 1, i], 80, 60)).collect();
    for chunk in frames.chunks(32) {
        e.start_iteration();
        let (mut pkts, n) = burst(chunk);
        e.process(0, &mut pkts, n, 1, &mut io);
    }
    assert_eq!(e.flow_count(), 200, "one megaflow per rule");
    // The new rules send 10.0.1.7 to vf1: its megaflow must go.
    let mut changed = refs.clone();
    changed.push("priority=20,ip,nw_dst=10.0.1.7 actions=output:vf1");
    e.set_rules(Arc::new(table(&changed)));
    assert!(e.revalidating());
    assert_eq!(e.stale_flows(), 200);
    io.sent.clear();
    e.start_iteration();
    let (mut pkts, n) = burst(&[frames[7].clone(), frames[8].clone()]);
    e.process(0, &mut pkts, n, 2, &mut io);
    let ports: Vec<u32> = io.sent.iter().map(|(p, _)| *p).collect();
    assert_eq!(ports, vec![1, 2], "10.0.1.7 by the new rule, 10.0.1.8 by the old megaflow revalidated");
    // A budget of zero still checks a few flows a slice; the sweep ends.
    let mut slices = 0;
    let report = loop {
        slices += 1;
        if let Some(r) = e.revalidate_slice(0) {
            break r;
        }
        assert!(slices < 10_000, "the sweep ends");
    };
    assert!(!e.revalidating());
    assert_eq!(e.stale_flows(), 0);
    assert!(slices > 1, "a zero budget takes several slices");
    // Every flow stale at set_rules counted once, the two the packets
    // revalidated first included.
    assert_eq!((report.kept, report.removed), (199, 1), "{report:?}");
    assert_eq!(e.flow_count(), 200, "10.0.1.7's new flow replaced the old");
    assert_eq!(e.dump(3).len(), 200);
}

/// Offload on and off give the same packets out: the bursts go through an
/// engine without hardware, its megaflows are translated and installed in the
/// model e-switch, and the same bursts go through an engine with the model in
/// front: every port gets the same frames (as multisets), and the model
/// handles what it took.
#[test]
fn model_offload_gives_the_same_packets_as_software() {
    use offload::model::{ModelSwitch, Profile};
    let rules = [
        "priority=10,in_port=vf0,ip,nw_dst=10.2.0.0/16 actions=output:uplink0",
        "priority=20,in_port=vf0,udp,tp_dst=53 actions=mod_vlan_vid:100,output:uplink0",
        "priority=10,in_port=vf1 actions=output:vxlan0",
        "priority=10,in_port=uplink0,dl_dst=02:00:00:00:00:10 actions=mod_dl_src:02:aa:00:00:00:01,output:vf0",
        "priority=10,in_port=uplink0,dl_dst=02:00:00:00:00:11,dl_vlan=200 actions=strip_vlan,output:vf1",
        "priority=10,in_port=vxlan0 actions=output:vf1",
        "priority=30,in_port=vf0,ip,nw_dst=10.2.9.0/24 actions=drop",
    ];
    let vm0 = [2, 0, 0, 0, 0, 0x10];
    let vm1 = [2, 0, 0, 0, 0, 0x11];
    let mut bursts: Vec<(u32, Vec<Vec<u8>>)> = Vec::new();
    for round in 0..6u8 {
        let from_vf0: Vec<Vec<u8>> = (0..8u8)
            .map(|i| match i % 4 {
                0 => udp([2; 6], vm0, [10, 2, round, i], 80, 60 + usize::from(i)),
                1 => udp([2; 6], vm0, [10, 2, 1, i], 53, 64),
                2 => udp([2; 6], vm0, [10, 2, 9, i], 80, 60),
                _ => udp([2; 6], vm0, [10, 3, 0, i], 80, 60),
            })
            .collect();
        let from_vf1: Vec<Vec<u8>> =
            (0..6u8).map(|i| udp([4; 6], vm1, [10, 9, round, i], 1000 + u16::from(i), 70)).collect();
        let mut from_uplink: Vec<Vec<u8>> = (0..4u8).map(|i| udp(vm0, [6; 6], [10, 0, 0, i], 7, 60)).collect();
        from_uplink.extend((0..3u8).map(|i| {
            let f = udp(vm1, [6; 6], [10, 0, 1, i], 7, 60);
            let mut t = f[..12].to_vec();
            t.extend_from_slice(&[0x81, 0x00, 0x00, 200]);
            t.extend_from_slice(&f[12..]);
            t
        }));
        from_uplink.extend(
            (0..4u8).map(|i| from_remote_vtep(&udp(vm1, [8; 6], [10, 1, round, i], 9, 60), 0xc000 + u16::from(i))),
        );
        bursts.push((0, from_vf0));
        bursts.push((1, from_vf1));
        bursts.push((2, from_uplink));
    }
    // Offload off.
    let mut software = engine(&rules, 64);
    let want = run_bursts(&mut software, &bursts);
    assert!(want.len() > 100, "the bursts produce output: {}", want.len());
    // Translate and install every megaflow.
    let model = Arc::new(ModelSwitch::new(Profile::default()));
    let u = underlay();
    // The encapsulating flow needs room for 50 bytes more than the VMs' MTU.
    u.write(|t| {
        t.locals[0].mtu = 1600;
        ((), true)
    });
    let (installed, refused) = install_all(&mut software, &port_facts(1500), &u, &model);
    assert!(refused.is_empty(), "every flow here translates: {refused:?}");
    assert!(installed.len() >= 7, "{} rules", installed.len());
    // Offload on: the model in front.
    let mut with_hw = engine(&rules, 64);
    with_hw.underlay_for_tests(&u);
    with_hw.hardware = Some(model_stage(&model));
    let got = run_bursts(&mut with_hw, &bursts);
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want, "the same frames on the same ports");
    let c = counters(&with_hw);
    let total: u64 = bursts.iter().map(|(_, f)| f.len() as u64).sum();
    assert_eq!(c.get(Counter::HwPackets), total, "the model took every packet (all flows were offloaded)");
    assert_eq!(c.drops(DropReason::HwRuleDrop), 6 * 4, "per round: two by the drop rule, two that match no rule");
}

#[test]
fn hot_detection_reports_flows_that_keep_the_rate_for_the_hot_time() {
    // Rules on nw_dst: one megaflow per destination.
    let mut e = engine(
        &[
            "priority=10,in_port=vf0,ip,nw_dst=10.0.0.1 actions=output:uplink0",
            "priority=10,in_port=vf0,ip,nw_dst=10.0.0.2 actions=output:uplink0",
            "priority=10,in_port=vf0,ip,nw_dst=10.0.0.3 actions=output:uplink0",
        ],
        64,
    );
    let (tx, rx) = crossbeam_channel::unbounded();
    e.events = Some(tx);
    let policy = HotPolicy { min_pps: 1000, hot: Duration::from_millis(200), repeat: Duration::from_millis(100) };
    e.hot = Some(policy);
    assert_eq!(policy.window(), Duration::from_millis(50));
    let fast = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let slow = udp([2; 6], [4; 6], [10, 0, 0, 2], 80, 60);
    let bursty = udp([2; 6], [4; 6], [10, 0, 0, 3], 80, 60);
    let mut io = VecIo::default();
    let ms = 1_000_000u64; // hz is 1e9 in these tests
    let mut hot = Vec::new();
    let mut installed = std::collections::HashMap::new();
    // 400 ms: the fast flow at 2000 pps, the slow one at 500 pps (a packet
    // every 0.5 and 2 ms), the bursty one at 1333 pps in bursts of 8 every
    // 6 ms (a 5 ms measurement would see 0 or 1600 pps and never call it
    // hot); hot checks every 5 ms as the PMD does.
    for step in 1..=800u64 {
        let now = step * ms / 2;
        e.start_iteration();
        let mut frames = vec![fast.clone()];
        if step % 4 == 0 {
            frames.push(slow.clone());
        }
        if step % 12 == 0 {
            frames.extend(std::iter::repeat_n(bursty.clone(), 8));
        }
        let (mut pkts, n) = burst(&frames);
        e.process(0, &mut pkts, n, now, &mut io);
        if step % 10 == 0 {
            e.hot_check(now);
            e.maintenance(now);
        }
        e.flush_events(None);
        for ev in rx.try_iter().flatten() {
            match ev {
                FlowEvent::Installed { id, key, .. } => {
                    installed.insert(id, key.nw_dst());
                }
                FlowEvent::Hot { id, pps, hot_for } => {
                    assert!(hot_for >= policy.hot, "{hot_for:?}");
                    hot.push((now / ms, installed[&id], pps));
                }
                FlowEvent::Hits { .. } => panic!("hit deltas were not asked for"),
                FlowEvent::Removed { .. } => panic!("nothing expires here"),
            }
        }
    }
    assert_eq!(installed.len(), 3);
    let of = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().expect("ip");
        hot.iter().filter(|(_, i, _)| *i == ip).map(|(t, _, pps)| (*t, *pps)).collect::<Vec<_>>()
    };
    let (fast, slow, bursty) = (of("10.0.0.1"), of("10.0.0.2"), of("10.0.0.3"));
    assert!(slow.is_empty(), "500 pps is below the threshold: {hot:?}");
    assert_eq!(fast.len(), 2, "reported, then again after the repeat interval while in software: {hot:?}");
    assert!((200..=205).contains(&fast[0].0), "reported at the first check after 200 ms at the rate: {hot:?}");
    assert!((1900..=2100).contains(&fast[0].1), "its rate is measured over whole windows: {hot:?}");
    assert!(!bursty.is_empty(), "a bursty flow above the rate is hot too: {hot:?}");
    assert!((1100..=1600).contains(&bursty[0].1), "its rate averages over its bursts: {hot:?}");
}

#[test]
fn a_slow_hot_flow_is_reported_on_time_without_a_hit_at_that_moment() {
    let mut e = engine(&["priority=10,in_port=vf0,ip actions=output:uplink0"], 64);
    let (tx, rx) = crossbeam_channel::unbounded();
    e.events = Some(tx);
    e.hot = Some(HotPolicy { min_pps: 20, hot: Duration::from_millis(100), repeat: Duration::from_millis(100) });
    let frame = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let mut io = VecIo::default();
    let ms = 1_000_000u64;
    let mut reported = None;
    // A packet every 30 ms (33 pps); checks every 5 ms.
    for t in (0..=200u64).step_by(5) {
        e.start_iteration();
        if t % 30 == 0 {
            let (mut pkts, n) = burst(std::slice::from_ref(&frame));
            e.process(0, &mut pkts, n, t * ms, &mut io);
        }
        e.hot_check(t * ms);
        e.flush_events(None);
        for ev in rx.try_iter().flatten() {
            if let FlowEvent::Hot { pps, hot_for, .. } = ev {
                reported.get_or_insert((t, pps, hot_for));
            }
        }
    }
    let (t, pps, hot_for) = reported.expect("reported hot");
    // Its first window (0-30 ms) began at its install: due at 100 ms, when
    // the flow is between packets (90 and 120).
    assert_eq!((t, hot_for), (100, Duration::from_millis(100)), "{reported:?}");
    assert!((20..=40).contains(&pps), "{pps}");
}

#[test]
fn the_signature_match_cache_serves_megaflows_once_there_are_several_masks() {
    let mut e = engine(
        &[
            "priority=40,in_port=vf0,ip,nw_dst=10.0.3.3/32 actions=drop",
            "priority=30,in_port=vf0,udp,tp_dst=80 actions=output:uplink0",
            "priority=20,in_port=vf0,ip,nw_dst=10.0.2.0/24 actions=output:vf1",
            "priority=10,in_port=vf0,ip actions=output:uplink0",
        ],
        64,
    );
    let frames: Vec<Vec<u8>> =
        (0..24u8).map(|i| udp([2; 6], [4; 6], [10, 0, i % 4, i], if i % 3 == 0 { 80 } else { 81 }, 60)).collect();
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&frames);
    e.process(0, &mut pkts, n, 1, &mut io);
    assert!(e.dpcls.subtable_count() >= SMC_MIN_MASKS, "{} masks", e.dpcls.subtable_count());
    let all = (1u64 << n) - 1;
    // The classifier's answers, which fill the cache...
    let (mut pkts, _) = burst(&frames);
    assert_eq!(e.stage_ingress(0, &mut pkts, n, &mut io), all);
    assert_eq!(e.stage_megaflow(all), 0);
    let want = e.flow_of;
    // ...and the cache gives the same flows without the classifier.
    let (mut pkts, _) = burst(&frames);
    assert_eq!(e.stage_ingress(0, &mut pkts, n, &mut io), all);
    e.flow_of = [None; BURST];
    assert_eq!(e.stage_smc(all), 0, "every packet a cache hit");
    assert_eq!(e.flow_of, want);
    assert_eq!(counters(&e).get(Counter::SmcHits), n as u64);
    // A removed flow's entry is verified away, not followed.
    let gone = want[0].expect("flow");
    e.remove_flow(gone, RemoveReason::Idle);
    let (mut pkts, _) = burst(&frames);
    e.stage_ingress(0, &mut pkts, n, &mut io);
    e.flow_of = [None; BURST];
    let missed = e.stage_smc(all);
    assert_ne!(missed & 1, 0, "the removed flow's packet misses");
    assert!(Bits(all & !missed).all(|i| e.flow_of[i] == want[i] && want[i] != Some(gone)));
}
