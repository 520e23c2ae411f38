//! The manager's decisions, driven by hand: events in, rules in the model
//! e-switch out.

use super::core::*;
use crate::actions::Action;
use crate::config::offload::{OffloadConfig, Policy};
use crate::config::Role;
use crate::datapath::burst::megaflow_mask;
use crate::datapath::flows::{FlowEvent, RemoveReason};
use crate::datapath::pmd::PmdCommand;
use crate::flow::RuleTable;
use crate::net::Prefix;
use crate::offload_manager::translate::{PortFacts, Refusal};
use crate::ofrule::parse_rule;
use crate::packet::parse::parse;
use crate::underlay::Underlay;
use crate::underlay::{LocalAddress, NeighSource, Neighbour, Route, RouteSource, Tables, Tunnel};
use crossbeam_channel::unbounded;
use crossbeam_channel::Receiver;
use offload::model::{ModelDevice, ModelSwitch, Profile, Verdict};
use offload::packet::{PacketBuf, VecPacket};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NAMES: [&str; 4] = ["vf0", "vf1", "uplink0", "vxlan0"];
const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
const HOP_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa1];
const HOP_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb2];

struct Rig {
    m: Manager,
    model: Arc<ModelSwitch>,
    underlay: Arc<Underlay>,
    pmd: Receiver<PmdCommand>,
    table: RuleTable,
    next_id: u64,
}

fn rig(policy: Policy, max_rules: usize) -> Rig {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
    let mut t = Tables::default();
    t.locals.push(LocalAddress { ip: ip("198.18.0.1"), len: 24, port: 2, mac: UPLINK_MAC, mtu: 1600 });
    t.routes.push(Route {
        prefix: "198.18.0.0/24".parse::<Prefix>().expect("p"),
        via: None,
        port: 2,
        source: RouteSource::Connected,
        metric: 0,
    });
    t.neighbours.insert(ip("198.18.0.2"), Neighbour { mac: HOP_A, port: 2, source: NeighSource::Config });
    t.neighbours.insert(ip("198.18.0.3"), Neighbour { mac: HOP_B, port: 2, source: NeighSource::Config });
    t.tunnels.push(Tunnel {
        name: "vxlan0".into(),
        number: 3,
        remote: ip("10.9.0.1"),
        vni: Some(100),
        local: None,
        udp_port: 4789,
    });
    // The remote VTEP 10.9.0.1 is reached through 198.18.0.2.
    t.routes.push(Route {
        prefix: "10.9.0.0/16".parse::<Prefix>().expect("p"),
        via: Some(ip("198.18.0.2")),
        port: 2,
        source: RouteSource::Config,
        metric: 0,
    });
    let underlay = Arc::new(Underlay::new(t));
    let model = Arc::new(ModelSwitch::new(Profile::default()));
    let (pmd_tx, pmd) = unbounded();
    let (_ev_tx, ev_rx) = unbounded();
    let ports = ["vf0", "vf1", "uplink0"]
        .iter()
        .enumerate()
        .map(|(i, n)| PortFacts {
            name: (*n).into(),
            ethdev: 20 + i as u16,
            role: if i == 2 { Role::Uplink } else { Role::Representor },
            mtu: 1500,
            domain: Some(0),
            mac: if i == 2 { UPLINK_MAC } else { [2, 0, 0, 0, 0, 0x10 + i as u8] },
        })
        .collect();
    let config =
        OffloadConfig { enabled: true, policy, max_rules, max_ops_per_s: 1_000_000, ..OffloadConfig::default() };
    let m = Manager::new(ManagerSetup {
        config,
        device: Box::new(ModelDevice::new(Arc::clone(&model))),
        proxy: 22,
        ports,
        underlay: Arc::clone(&underlay),
        events: ev_rx,
        pmds: vec![pmd_tx],
        idle_timeout: Duration::from_secs(10),
        shared: Arc::default(),
    });
    let mut table = RuleTable::new();
    let resolve = |n: &str| NAMES.iter().position(|p| *p == n).map(|i| i as u32);
    for r in [
        "priority=10,in_port=vf0,udp actions=output:uplink0",
        "priority=10,in_port=vf1 actions=output:vxlan0",
        "priority=20,in_port=vf0,udp,tp_dst=9 actions=output:vxlan0",
    ] {
        let s = parse_rule(r, &resolve).expect(r);
        table.insert(s.priority, s.matcher, s.actions);
    }
    Rig { m, model, underlay, pmd, table, next_id: 1 }
}

fn udp(src_port: u16, dport: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0x10, 0x08, 0x00, 0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0];
    f.extend_from_slice(&[10, 0, 0, 1, 10, 2, 0, 1]);
    f.extend_from_slice(&src_port.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 26, 0, 0]);
    f.extend_from_slice(&[0u8; 18]);
    f
}

impl Rig {
    /// Installs the megaflow of `frame` from `port`; returns its id.
    fn install(&mut self, port: u32, frame: &[u8]) -> u64 {
        let key = parse(frame, port, None).key;
        let c = self.table.classify(&key);
        let actions: Arc<[Action]> = Arc::from(c.rule.as_ref().map(|r| r.actions.clone()).unwrap_or_default());
        let mask = megaflow_mask(c.mask);
        let id = self.next_id;
        self.next_id += 1;
        self.m.events(vec![FlowEvent::Installed {
            id,
            pmd: 0,
            key: key.masked(&mask),
            mask,
            actions,
            rule: Some(id),
            via: Box::default(),
        }]);
        id
    }

    /// As [`Rig::install`], by PMD `pmd` (its id carries the PMD).
    fn install_on(&mut self, pmd: usize, port: u32, frame: &[u8]) -> u64 {
        let key = parse(frame, port, None).key;
        let c = self.table.classify(&key);
        let actions: Arc<[Action]> = Arc::from(c.rule.as_ref().map(|r| r.actions.clone()).unwrap_or_default());
        let mask = megaflow_mask(c.mask);
        let id = (pmd as u64) << 48 | self.next_id;
        self.next_id += 1;
        self.m.events(vec![FlowEvent::Installed {
            id,
            pmd,
            key: key.masked(&mask),
            mask,
            actions,
            rule: Some(id),
            via: Box::default(),
        }]);
        id
    }

    /// A Hot report, as after a second at the rate.
    fn hot(&mut self, id: u64, pps: u64) {
        self.hot_for(id, pps, Duration::from_secs(1));
    }

    fn hot_for(&mut self, id: u64, pps: u64, hot_for: Duration) {
        self.m.events(vec![FlowEvent::Hot { id, pps, hot_for }]);
    }

    fn state(&self, id: u64) -> State {
        self.m.flows.get(&id).map(|r| r.state.clone()).expect("flow")
    }

    /// A more specific route to the remote VTEP through the other next hop.
    fn route_via_hop_b(&self) {
        self.underlay.write(|t| {
            t.routes.push(Route {
                prefix: "10.9.0.1/32".parse::<Prefix>().expect("p"),
                via: Some("198.18.0.3".parse().expect("ip")),
                port: 2,
                source: RouteSource::Control,
                metric: 0,
            });
            ((), true)
        });
    }

    /// A frame through the model from ethdev `port`.
    fn send(&self, port: u16, frame: &[u8]) -> (Verdict, Vec<u8>) {
        let mut p = VecPacket::new(frame, 128);
        let v = self.model.process(port, &mut p);
        (v, p.data().to_vec())
    }
}

#[test]
fn hot_policy_offloads_on_hot_and_all_policy_at_install() {
    let mut r = rig(Policy::Hot, 16);
    let a = r.install(0, &udp(1, 80));
    assert_eq!(r.state(a), State::Software, "not hot yet");
    assert_eq!(r.model.rules(), 0);
    r.hot(a, 5000);
    assert_eq!(r.state(a), State::Hardware);
    assert_eq!(r.model.rules(), 2, "the flow's rule and vf0's jump rule");
    assert_eq!(r.send(20, &udp(1, 80)), (Verdict::Output(22), udp(1, 80)));
    assert_eq!(r.m.latencies.len(), 1);

    let mut r = rig(Policy::All, 16);
    let a = r.install(0, &udp(1, 80));
    assert_eq!(r.state(a), State::Hardware, "offloaded at install");
}

#[test]
fn full_table_evicts_only_a_much_colder_rule() {
    let mut r = rig(Policy::Hot, 2);
    let a = r.install(0, &udp(1, 80));
    let b = r.install(1, &udp(1, 80));
    r.hot(a, 1000);
    r.hot(b, 1000);
    assert_eq!((r.state(a), r.state(b)), (State::Hardware, State::Hardware));
    let c = r.install(0, &udp(1, 9));
    r.hot(c, 1_000_000);
    assert!(
        matches!(r.state(c), State::Refused(Reason::NoSpace(_))),
        "rules younger than the minimum residency are not evicted, however hot the candidate: {:?}",
        r.state(c)
    );
    // Hardware rates from the counters: a at 50 packets, b at 20 over five
    // seconds (10 and 4 pps); the rules are two seconds old.
    for _ in 0..50 {
        r.send(20, &udp(1, 80));
    }
    for _ in 0..20 {
        r.send(21, &udp(1, 80));
    }
    for rec in r.m.flows.values_mut() {
        if let Some(hw) = rec.hw.as_mut() {
            hw.last_at = Instant::now() - Duration::from_secs(5);
            hw.created = Instant::now() - Duration::from_secs(2);
            hw.pps = 0;
        }
    }
    r.m.query();
    // Smoothed with a one-second time constant: after five seconds the
    // measured rate is all but the whole of it.
    let pps = |id: u64| r.m.flows[&id].hw.as_ref().map_or(0, |h| h.pps);
    assert!((9..=10).contains(&pps(a)) && (3..=4).contains(&pps(b)), "{} {}", pps(a), pps(b));
    let touched = r.pmd.try_recv();
    assert!(touched.is_err(), "query alone sends nothing; the run loop sends the touches");
    // 4 pps is not 1.5 x the coldest (b at 3-4 pps): no space.
    r.hot(c, 4);
    assert!(matches!(r.state(c), State::Refused(Reason::NoSpace(_))), "{:?}", r.state(c));
    // 8 pps over only 200 ms is not evidence enough to evict.
    r.hot_for(c, 8, Duration::from_millis(200));
    assert!(matches!(r.state(c), State::Refused(Reason::NoSpace(_))), "{:?}", r.state(c));
    // 8 pps is: b goes back to software, c takes its place.
    r.hot(c, 8);
    assert_eq!((r.state(b), r.state(c)), (State::Evicted, State::Hardware));
    assert_eq!(r.state(a), State::Hardware, "the hottest keeps its rule");
    assert_eq!(r.m.stats.evictions, 1);
    assert_eq!(r.send(21, &udp(1, 80)).0, Verdict::Miss, "b's packets are software's again");
    assert_eq!(r.m.stats.waited_for_room, 1, "c waited for room: left out of the latencies");
}

#[test]
fn hardware_rate_is_smoothed_over_queries() {
    let mut r = rig(Policy::Hot, 4);
    let a = r.install(0, &udp(1, 80));
    r.hot(a, 100);
    let set_back = |r: &mut Rig, ms: u64| {
        for rec in r.m.flows.values_mut() {
            if let Some(hw) = rec.hw.as_mut() {
                hw.last_at = Instant::now() - Duration::from_millis(ms);
            }
        }
    };
    let pps = |r: &Rig| r.m.flows[&a].hw.as_ref().map_or(0, |h| h.pps);
    assert_eq!(pps(&r), 100, "the software rate until the first query");
    // 200 ms without a packet: one noisy sample moves the rate by about a fifth.
    set_back(&mut r, 200);
    r.m.query();
    assert!((80..=83).contains(&pps(&r)), "{}", pps(&r));
    // Then 40 packets in 200 ms (200 pps): up by about a fifth of the gap.
    for _ in 0..40 {
        r.send(20, &udp(1, 80));
    }
    set_back(&mut r, 200);
    r.m.query();
    assert!((100..=104).contains(&pps(&r)), "{}", pps(&r));
}

#[test]
fn route_change_replaces_exactly_the_affected_rules_make_before_break() {
    let mut r = rig(Policy::All, 16);
    let plain = r.install(0, &udp(1, 80));
    let tunnel = r.install(1, &udp(1, 80));
    assert_eq!((r.state(plain), r.state(tunnel)), (State::Hardware, State::Hardware));
    let (v, out) = r.send(21, &udp(1, 80));
    assert_eq!((v, &out[0..6]), (Verdict::Output(22), &HOP_A[..]));
    let rules_before = r.model.rules();
    r.route_via_hop_b();
    let report = r.m.check_underlay();
    assert_eq!((report.replaced, report.unchanged), (1, 0), "only the tunnel's flow depends on the route");
    assert_eq!(r.model.rules(), rules_before, "the old rule is gone once the new one is in");
    let (v, out) = r.send(21, &udp(1, 80));
    assert_eq!((v, &out[0..6]), (Verdict::Output(22), &HOP_B[..]), "the new next hop's MAC");
    assert_eq!(r.m.flows[&tunnel].priority, 0, "the replacement took the other priority");
    // An unrelated underlay change replaces nothing.
    r.underlay.write(|t| {
        t.neighbours.insert(
            "198.18.0.77".parse().expect("ip"),
            Neighbour { mac: [9; 6], port: 2, source: NeighSource::Config },
        );
        ((), true)
    });
    let report = r.m.check_underlay();
    assert_eq!((report.replaced, report.unchanged), (0, 1));
    // The neighbour goes away: the flow cannot be translated and leaves hardware.
    r.underlay.write(|t| {
        t.neighbours.remove(&"198.18.0.3".parse().expect("ip"));
        ((), true)
    });
    r.m.check_underlay();
    assert!(
        matches!(r.state(tunnel), State::Refused(Reason::Translate(Refusal::Unresolved(_)))),
        "{:?}",
        r.state(tunnel)
    );
    assert_eq!(r.send(21, &udp(1, 80)).0, Verdict::Miss);
    // It comes back when the neighbour does (policy all: at once).
    r.underlay.write(|t| {
        t.neighbours
            .insert("198.18.0.3".parse().expect("ip"), Neighbour { mac: HOP_B, port: 2, source: NeighSource::Config });
        ((), true)
    });
    r.m.check_underlay();
    assert_eq!(r.state(tunnel), State::Hardware);
}

#[test]
fn removed_flows_leave_port_stops_reinstall_and_shutdown_destroys_everything() {
    let mut r = rig(Policy::All, 16);
    let a = r.install(0, &udp(1, 80));
    let b = r.install(1, &udp(1, 80));
    assert_eq!(r.model.rules(), 4, "two flows, two jump rules");
    r.m.events(vec![FlowEvent::Removed { id: a, reason: RemoveReason::Idle }]);
    assert_eq!(r.model.rules(), 3);
    assert!(!r.m.flows.contains_key(&a));
    // vf1 stops: the model drops its rules; the flow waits, then comes back.
    assert_eq!(r.m.port_stopping(21), 1);
    assert_eq!(r.state(b), State::Pending);
    assert_eq!(r.model.rules(), 1, "vf0's jump rule is left");
    r.m.pending();
    assert_eq!((r.state(b), r.model.rules()), (State::Pending, 1), "no rule while its port is down");
    assert_eq!(r.m.port_started(21), 1);
    assert_eq!(r.state(b), State::Hardware);
    assert_eq!(r.m.shutdown(), 3);
    assert_eq!(r.model.rules(), 0);
}

#[test]
fn aged_rules_expire_their_flows_and_hits_touch_them() {
    let mut r = rig(Policy::All, 16);
    r.m.config.age = true;
    r.m.idle_timeout = Duration::from_secs(1);
    let a = r.install(0, &udp(1, 80));
    r.send(20, &udp(1, 80));
    let touched = r.m.query();
    assert_eq!(touched, vec![vec![a]], "hit in hardware: touched in its PMD");
    assert_eq!(r.m.flows[&a].hw_packets, 1);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(r.m.aged(), vec![vec![a]], "idle for the AGE timeout: expired in its PMD");
}

#[test]
fn refusals_are_visible_in_the_views() {
    let mut r = rig(Policy::All, 16);
    // Mirror: two outputs.
    let resolve = |n: &str| NAMES.iter().position(|p| *p == n).map(|i| i as u32);
    let s =
        parse_rule("priority=99,in_port=vf0,udp,tp_dst=7 actions=output:uplink0,output:vf1", &resolve).expect("rule");
    r.table.insert(s.priority, s.matcher, s.actions);
    let id = r.install(0, &udp(1, 7));
    r.m.publish();
    let view = r.m.shared.flow(id).expect("view");
    assert_eq!(view.state, "sw(unsupported: several outputs (mirroring is not offloaded))");
    let stats = r.m.shared.stats();
    assert_eq!(stats.refusals_by_reason.get("unsupported"), Some(&1));
}

#[test]
fn hardware_counts_go_to_flows_and_ports_and_the_last_hits_of_a_replaced_rule_are_kept() {
    let mut r = rig(Policy::All, 16);
    let plain = r.install(0, &udp(1, 80));
    let tunnel = r.install(1, &udp(1, 80));
    for _ in 0..5 {
        assert_eq!(r.send(20, &udp(1, 80)).0, Verdict::Output(22));
    }
    for _ in 0..3 {
        assert_eq!(r.send(21, &udp(1, 80)).0, Verdict::Output(22));
    }
    let touched = r.m.query();
    assert_eq!(touched[0].len(), 2, "both flows were hit");
    let hits = |p: u32| r.m.stats.hw_by_port.get(&p).copied().unwrap_or_default();
    assert_eq!((hits(0).rx_packets, hits(1).rx_packets), (5, 3), "vf0 and vf1 took them in");
    assert_eq!(hits(2).tx_packets, 8, "uplink0 sent them all");
    assert_eq!((hits(3).tx_packets, hits(3).rx_packets), (3, 0), "vxlan0 encapsulated the tunnel flow's");
    assert_eq!((r.m.flows[&plain].hw_packets, r.m.flows[&tunnel].hw_packets), (5, 3));
    // Two more on the tunnel flow, then a route change replaces its rule
    // before any query: the old rule's last hits still count.
    r.send(21, &udp(1, 80));
    r.send(21, &udp(1, 80));
    r.route_via_hop_b();
    assert_eq!(r.m.check_underlay().replaced, 1);
    assert_eq!(r.m.flows[&tunnel].hw_packets, 5);
    assert_eq!(r.m.stats.hw_packets, 10);
}

/// However a rule goes, the hits it took since the last query reach the
/// flow, the totals and the ports: packets through the model with no query
/// in between, then the rule removed by each path in turn.
#[test]
fn a_rules_last_hits_are_counted_however_it_goes() {
    let hw = |r: &Rig, id: u64| r.m.flows.get(&id).map_or(0, |f| f.hw_packets);
    let tx = |r: &Rig, port: u32| r.m.stats.hw_by_port.get(&port).map_or(0, |c| c.tx_packets);
    // Each path: (what it does to flow `id`, whether the flow record stays).
    type Path = fn(&mut Rig, u64);
    let paths: [(&str, Path); 6] = [
        ("replace (the route moves to another next hop)", |r, _| {
            r.route_via_hop_b();
            r.m.underlay_changed();
        }),
        ("unresolved (the neighbour goes)", |r, _| {
            r.underlay.write(|t| {
                t.neighbours.remove(&"198.18.0.2".parse().expect("ip"));
                ((), true)
            });
            r.m.underlay_changed();
        }),
        ("removed by its PMD (aging, revalidation)", |r, id| {
            r.m.events(vec![FlowEvent::Removed { id, reason: RemoveReason::Aged }]);
        }),
        ("eviction", |r, id| r.m.evict(id)),
        ("port restart", |r, _| {
            r.m.port_stopping(20);
        }),
        ("shutdown", |r, _| {
            r.m.shutdown();
        }),
    ];
    for (what, path) in paths {
        let mut r = rig(Policy::All, 16);
        let id = r.install(0, &udp(1, 9)); // vf0 -> vxlan0 through 198.18.0.2
        assert_eq!(r.state(id), State::Hardware, "{what}");
        let before = r.m.stats.hw_packets;
        for _ in 0..25 {
            assert!(matches!(r.send(20, &udp(1, 9)).0, Verdict::Output(22)), "{what}");
        }
        path(&mut r, id);
        assert_eq!(r.m.stats.hw_packets - before, 25, "{what}: the totals");
        assert_eq!(tx(&r, 2), 25, "{what}: the uplink's tx");
        assert_eq!(tx(&r, 3), 25, "{what}: the tunnel port's tx");
        if r.m.flows.contains_key(&id) {
            assert_eq!(hw(&r, id), 25, "{what}: the flow");
        }
    }
}

/// An underlay edit's answer reports the work the edit caused even when
/// the manager's periodic check got to it before the command's sync.
#[test]
fn an_underlay_edit_reports_its_work_whoever_did_it() {
    let mut r = rig(Policy::All, 16);
    let id = r.install(0, &udp(1, 9));
    assert_eq!(r.state(id), State::Hardware);
    let since = r.underlay.generation();
    r.route_via_hop_b();
    let periodic = r.m.check_underlay();
    assert_eq!(periodic.replaced, 1, "the periodic check replaced the rule");
    assert_eq!(r.m.check_underlay().replaced, 0, "the sync finds nothing left to do");
    assert_eq!(r.m.underlay_work_since(since).replaced, 1, "the command hears what its edit caused");
    assert_eq!(r.m.underlay_work_since(r.underlay.generation()).replaced, 0, "a later edit's answer does not");
}

#[test]
fn one_megaflow_of_two_pmds_is_one_rule_hot_by_their_sum_and_gone_with_the_last() {
    let mut r = rig(Policy::Hot, 16);
    let (pmd1, _pmd1_rx) = unbounded();
    r.m.pmds.push(pmd1);
    let min = r.m.config.min_pps;
    // Two PMDs, two flows of one megaflow (the source port is not matched).
    let a = r.install_on(0, 0, &udp(1, 80));
    let b = r.install_on(1, 0, &udp(2, 80));
    r.hot(a, min * 6 / 10);
    assert_eq!(r.state(a), State::Software, "60 % of the rate on one PMD is not hot");
    r.hot(b, min * 6 / 10);
    assert_eq!((r.state(a), r.state(b)), (State::Hardware, State::Hardware), "120 % over the two is");
    assert_eq!(r.model.rules(), 2, "one flow rule (and the jump rule) for both");
    assert_eq!(r.m.stats.shared_rules, 1);
    // A hit in hardware keeps both PMDs' flows from idling out.
    r.send(20, &udp(3, 80));
    let touched = r.m.query();
    assert_eq!(touched, vec![vec![a], vec![b]]);
    // The owner goes: the rule stays for the other, with its counts.
    let owner = if r.m.flows[&a].hw.is_some() { a } else { b };
    let other = if owner == a { b } else { a };
    r.m.events(vec![FlowEvent::Removed { id: owner, reason: RemoveReason::Idle }]);
    assert_eq!(r.model.rules(), 2, "the rule stays while a flow uses it");
    assert!(r.m.flows[&other].hw.is_some() && r.m.flows[&other].rides.is_none());
    r.send(20, &udp(4, 80));
    r.m.query();
    assert_eq!(r.m.stats.hw_packets, 2, "hits before and after the hand-over, each once");
    r.m.events(vec![FlowEvent::Removed { id: other, reason: RemoveReason::Idle }]);
    assert_eq!(r.model.rules(), 1, "gone with the last flow (the jump rule stays)");
    assert!(r.m.megaflows.is_empty());
    // Evicting or losing a shared rule sends every sharer back to software.
    let c = r.install_on(0, 0, &udp(5, 80));
    let d = r.install_on(1, 0, &udp(6, 80));
    r.hot(c, min);
    assert_eq!((r.state(c), r.state(d)), (State::Hardware, State::Hardware));
    assert_eq!(r.m.port_stopping(20), 1, "one rule dropped");
    assert_eq!((r.state(c), r.state(d)), (State::Pending, State::Pending));
    assert_eq!(r.m.port_started(20), 1);
    assert_eq!((r.state(c), r.state(d)), (State::Hardware, State::Hardware));
    assert_eq!(r.model.rules(), 2);
}

#[test]
fn a_handed_over_rule_ages_out_for_the_flow_holding_it() {
    let mut r = rig(Policy::All, 16);
    let (pmd1, _pmd1_rx) = unbounded();
    r.m.pmds.push(pmd1);
    r.m.config.age = true;
    r.m.idle_timeout = Duration::from_secs(1);
    let a = r.install_on(0, 0, &udp(1, 80));
    let b = r.install_on(1, 0, &udp(2, 80));
    assert_eq!(r.m.flows[&b].rides, Some(a), "policy all: b shares a's rule");
    r.m.events(vec![FlowEvent::Removed { id: a, reason: RemoveReason::Idle }]);
    assert!(r.m.flows[&b].hw.is_some(), "b holds the rule (the device still knows it by a's cookie)");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(r.m.aged(), vec![vec![], vec![b]], "the aged rule expires its holder, in its PMD");
}
