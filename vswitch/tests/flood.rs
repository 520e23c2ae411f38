//! A new-flow flood on one port next to established flows on another, end
//! to end: the real daemon, net_pcap ports replaying their files forever.
//! vf0 offers 20,000 distinct flows (each its own megaflow) to a table of
//! 4,096 with an upcall budget of 8 per iteration; vf1 offers 10
//! established flows. The established port must keep its packets flowing,
//! before and after a rule change that revalidates its flows out.
//!
//! The measure is the share of vf1's received packets that are delivered
//! (what a full table and an unfair upcall budget took to 0). The rate in
//! packets per second is printed too: the PMD shares its cycles equally
//! between backlogged ports (datapath/fair.rs), so vf1 keeps about half its
//! rate alone; as a speed it belongs to the benchmark, not to an assertion.

mod common;

use common::daemon::{port, wait_for, Daemon};
use common::frames::{flood_and_established, mac};
use common::pcap::write as write_pcap;
use common::TempDir;
use serde_json::Value;
use std::time::{Duration, Instant};

const MAX_FLOWS: u64 = 4096;

fn config(dir: &TempDir, flood: bool) -> String {
    let pcap = |name: &str| {
        format!(
            "net_pcap_{name},rx_pcap={},tx_pcap={},infinite_rx=1",
            dir.path(&format!("in_{name}.pcap")).display(),
            dir.path(&format!("out_{name}.pcap")).display()
        )
    };
    let vf0 = if flood { pcap("vf0") } else { "net_null_fv0,no-rx=1".to_string() };
    format!(
        "rules = [\n  \"priority=20,ip,nw_dst=10.9.9.9 actions=drop\",\n  \"priority=10,in_port=vf0,ip actions=output:vf2\",\n  \"priority=10,in_port=vf1,ip actions=output:uplink0\",\n]\n\n\
         [eal]\nargs = [\"--no-huge\", \"-m\", \"768\", \"--no-pci\", \"--no-telemetry\", \"--log-level=lib.eal:warning\"]\n\n\
         [datapath]\nidle_timeout_ms = 60000\nmax_flows = {MAX_FLOWS}\nupcall_budget = 8\nmbufs = 65536\n\n\
         [control]\nsocket = \"{}\"\n\n[metrics]\nlisten = \"off\"\n\n\
         [[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"{vf0}\"\n\n\
         [[port]]\nname = \"vf1\"\nrole = \"representor\"\ndevargs = \"{}\"\n\n\
         [[port]]\nname = \"vf2\"\nrole = \"representor\"\ndevargs = \"net_null_fv2,no-rx=1\"\n\n\
         [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null_fu0,no-rx=1\"\n",
        dir.path("unused.sock").display(),
        pcap("vf1"),
    )
}

fn count(s: &Value, name: &str, field: &str) -> u64 {
    port(s, name)[field].as_u64().unwrap_or(0)
}

/// vf1's packets over one second: (share delivered, delivered per second).
fn established(d: &Daemon) -> (f64, f64) {
    let (a, t0) = (d.show(), Instant::now());
    std::thread::sleep(Duration::from_secs(1));
    let (b, dt) = (d.show(), t0.elapsed().as_secs_f64());
    let rx = count(&b, "vf1", "rx_packets") - count(&a, "vf1", "rx_packets");
    let tx = count(&b, "uplink0", "tx_packets") - count(&a, "uplink0", "tx_packets");
    assert!(rx > 0, "vf1 received nothing in a second");
    (tx as f64 / rx as f64, tx as f64 / dt)
}

#[test]
fn established_flows_keep_flowing_under_a_new_flow_flood_and_after_a_rule_change() {
    let dir = TempDir::new("flood");
    let (flood, est) = flood_and_established(mac(2));
    write_pcap(&dir.path("in_vf0.pcap"), &flood);
    write_pcap(&dir.path("in_vf1.pcap"), &est);

    let alone = {
        let d = Daemon::start(&dir.0, &config(&dir, false));
        wait_for(Duration::from_secs(10), "vf1's flows installed", || (d.show()["flows"] == 10).then_some(()));
        let r = established(&d);
        d.stop();
        r
    };
    let d = Daemon::start(&dir.0, &config(&dir, true));
    wait_for(Duration::from_secs(30), "the flow table full", || {
        let s = d.show();
        (s["flows_evicted"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    let flood1 = established(&d);
    // A rule change that revalidates vf1's flows out (they must now match
    // on the UDP port) while the table is full.
    let out = d.ctl(&["add-rule", "priority=30,in_port=vf1,udp,tp_dst=9999 actions=drop"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = d.show();
    assert!(s["flows_revalidated_out"].as_u64().unwrap_or(0) >= 10, "{s:#}");
    let flood2 = established(&d);
    let s = d.show();
    println!(
        "vf1 alone: {:.1}% delivered, {:.2} Mpps; under flood: {:.1}%, {:.2} Mpps; after the rule change: {:.1}%, {:.2} Mpps; \
         flows {} (max {MAX_FLOWS}), evicted {}, upcall_budget drops {}, flow_limit drops {}",
        alone.0 * 100.0,
        alone.1 / 1e6,
        flood1.0 * 100.0,
        flood1.1 / 1e6,
        flood2.0 * 100.0,
        flood2.1 / 1e6,
        s["flows"],
        s["flows_evicted"],
        s["drops"]["upcall_budget"],
        s["drops"]["flow_limit"]
    );
    assert!(s["flows"].as_u64().unwrap_or(0) <= MAX_FLOWS);
    assert!(s["drops"]["upcall_budget"].as_u64().unwrap_or(0) > 0, "the flood was over the budget: {s:#}");
    assert!(flood1.0 >= 0.5 * alone.0, "under flood: {:.3} of vf1's packets vs {:.3} alone", flood1.0, alone.0);
    assert!(flood2.0 >= 0.5 * alone.0, "after a rule change: {:.3} vs {:.3} alone", flood2.0, alone.0);
    // vf1's ten flows are back in the table.
    let flows = d.ctl_json(&["dump-flows"]).expect("dump-flows");
    let vf1 = flows
        .as_array()
        .expect("array")
        .iter()
        .filter(|f| f["match"].as_str().is_some_and(|m| m.contains("in_port=vf1")))
        .count();
    assert_eq!(vf1, 10, "vf1's flows reinstalled");
    d.stop();
}
