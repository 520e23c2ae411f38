//! The switch in-process on one EAL: flow life-cycle events (installed, hit
//! deltas, removed on idle) that an offload manager will follow.

mod common;

use common::{eal, TempDir};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use vswitch::config::Config;
use vswitch::datapath::flows::{FlowEvent, RemoveReason};
use vswitch::datapath::Switch;
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
    while stats.flows != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        stats = switch.stats();
    }
    assert_eq!(stats.flows, 0);
    assert_eq!(stats.flows_expired, 1);
    assert_eq!(stats.ports[1].tx_packets, 100);
    switch.shutdown();
}
