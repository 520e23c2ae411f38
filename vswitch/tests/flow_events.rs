//! The switch in-process on one EAL: flow life-cycle events (installed, hit
//! deltas, removed on idle) that an offload manager will follow.

mod common;

use common::{eal, TempDir};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use vswitch::config::Config;
use vswitch::datapath::counters::Counter;
use vswitch::datapath::flows::{FlowEvent, RemoveReason};
use vswitch::switch::Switch;
use vswitch::traffic::{udp_frame, TrafficSpec};

#[test]
fn installed_hits_and_idle_removal_are_reported() {
    let dir = TempDir::new("events");
    let input = dir.path("in.pcap");
    let spec = TrafficSpec {
        flows: 2,
        size: 64,
        dl_src: [2, 0, 0, 0, 0, 1],
        dl_dst: vec![[2, 0, 0, 0, 0, 2]],
        nw_src: "10.0.0.1".parse().expect("ip"),
        nw_dst: "10.0.0.2".parse().expect("ip"),
    };
    let frames: Vec<Vec<u8>> = (0..100u32).map(|i| udp_frame(&spec, i % 2)).collect();
    common::pcap::write(&input, &frames);
    let text = format!(
        "rules = [\"priority=1,in_port=vf0 actions=output:uplink0\"]\n\
         [datapath]\npmd_cores = [0]\nidle_timeout_ms = 300\n\
         [control]\nsocket = \"{}\"\n[metrics]\nlisten = \"off\"\n\
         [[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_pcap_ev0,rx_pcap={}\"\n\
         [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null_ev1,no-rx=1\"\n",
        dir.path("unused.sock").display(),
        input.display()
    );
    let config = Config::parse(&text, "events.toml").expect("config");
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let switch = Switch::start(eal(), config, &BTreeMap::new(), Some(tx)).expect("switch");
    let mut installed = None;
    let mut hits = 0u64;
    let mut removed = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while removed.is_none() && Instant::now() < deadline {
        let Ok(batch) = rx.recv_timeout(Duration::from_millis(100)) else { continue };
        for ev in batch {
            match ev {
                FlowEvent::Installed { id, actions, .. } => {
                    assert_eq!(actions.len(), 1);
                    installed = Some(id);
                }
                FlowEvent::Hits { id, packets, .. } => {
                    assert_eq!(Some(id), installed, "hits for the installed flow");
                    hits += packets;
                }
                FlowEvent::Removed { id, reason } => {
                    assert_eq!(Some(id), installed);
                    assert_eq!(reason, RemoveReason::Idle);
                    removed = Some(id);
                }
                FlowEvent::Hot { .. } => panic!("no hot-flow policy without offload"),
            }
        }
    }
    assert!(installed.is_some(), "an Installed event arrived");
    assert!(removed.is_some(), "the idle flow was removed and reported");
    assert_eq!(hits, 100, "hit deltas add up to every packet");
    // Counters are published about every millisecond, after the event.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut stats = switch.stats();
    while stats.total(Counter::Flows) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        stats = switch.stats();
    }
    assert_eq!(stats.total(Counter::Flows), 0);
    assert_eq!(stats.total(Counter::FlowsExpired), 1);
    assert_eq!(stats.ports[1].tx_packets, 100);
    switch.shutdown();
}

/// Two PMDs (one per input port) sending through one output port with a
/// single transmit queue (net_pcap with one file: the PMDs share it under a
/// lock); a rule change reports the flows it revalidates out, and the
/// shutdown reports the rest.
#[test]
fn two_pmds_share_a_tx_queue_and_removals_are_reported_on_revalidation_and_shutdown() {
    let dir = TempDir::new("twopmd");
    let spec = |src: &str| TrafficSpec {
        flows: 1,
        size: 64,
        dl_src: [2, 0, 0, 0, 0, 1],
        dl_dst: vec![[2, 0, 0, 0, 0, 2]],
        nw_src: src.parse().expect("ip"),
        nw_dst: "10.0.0.2".parse().expect("ip"),
    };
    const EACH: u32 = 3000;
    for (name, src) in [("a", "10.0.0.1"), ("b", "10.0.1.1")] {
        let frames: Vec<Vec<u8>> = (0..EACH).map(|_| udp_frame(&spec(src), 0)).collect();
        common::pcap::write(&dir.path(&format!("in_{name}.pcap")), &frames);
    }
    let out = dir.path("out.pcap");
    let text = format!(
        "rules = [\"priority=1,in_port=vf0 actions=output:uplink0\", \"priority=1,in_port=vf1 actions=output:uplink0\"]\n\
         [datapath]\npmd_cores = [0, 1]\nidle_timeout_ms = 60000\n\
         [control]\nsocket = \"{}\"\n[metrics]\nlisten = \"off\"\n\
         [[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_pcap_tp0,rx_pcap={}\"\n\
         [[port]]\nname = \"vf1\"\nrole = \"representor\"\ndevargs = \"net_pcap_tp1,rx_pcap={}\"\n\
         [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_pcap_tp2,tx_pcap={}\"\n",
        dir.path("unused.sock").display(),
        dir.path("in_a.pcap").display(),
        dir.path("in_b.pcap").display(),
        out.display()
    );
    let config = Config::parse(&text, "twopmd.toml").expect("config");
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let switch = Switch::start(eal(), config, &BTreeMap::new(), Some(tx)).expect("switch");
    let mut installed: BTreeMap<u64, usize> = BTreeMap::new();
    let mut removed: Vec<(u64, RemoveReason)> = Vec::new();
    let drain = |timeout: Duration, installed: &mut BTreeMap<u64, usize>, removed: &mut Vec<(u64, RemoveReason)>| {
        while let Ok(batch) = rx.recv_timeout(timeout) {
            for ev in batch {
                match ev {
                    FlowEvent::Installed { id, pmd, .. } => {
                        installed.insert(id, pmd);
                    }
                    FlowEvent::Removed { id, reason } => removed.push((id, reason)),
                    FlowEvent::Hits { .. } | FlowEvent::Hot { .. } => {}
                }
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while switch.stats().ports[2].tx_packets < u64::from(2 * EACH) && Instant::now() < deadline {
        drain(Duration::from_millis(50), &mut installed, &mut removed);
    }
    let stats = switch.stats();
    assert_eq!(stats.ports[2].tx_packets, u64::from(2 * EACH), "every packet out of the shared queue: {stats:?}");
    assert_eq!(stats.pmds.len(), 2);
    assert!(stats.pmds.iter().all(|p| p.packets == u64::from(EACH)), "one input port per PMD: {:?}", stats.pmds);
    assert_eq!(installed.len(), 2, "a flow per port: {installed:?}");
    assert_eq!(installed.values().copied().collect::<std::collections::BTreeSet<_>>().len(), 2, "on both PMDs");

    // vf0's flow changes its decision, vf1's does not.
    let (_, report) = switch.add_rule("priority=5,in_port=vf0,udp actions=drop").expect("add-rule");
    assert_eq!((report.removed, report.kept), (1, 1), "{report:?}");
    drain(Duration::from_millis(200), &mut installed, &mut removed);
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].1, RemoveReason::Revalidated);
    let survivor = installed.keys().copied().find(|id| *id != removed[0].0).expect("the kept flow");

    switch.shutdown();
    drain(Duration::from_millis(200), &mut installed, &mut removed);
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert_eq!(removed[1], (survivor, RemoveReason::Shutdown));
    assert_eq!(common::pcap::read(&out).len(), 2 * EACH as usize, "the output file holds every packet");
}
