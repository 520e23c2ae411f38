//! Offload end to end: the real daemon on net_pcap ports with the model
//! e-switch (and, once, the rte_flow device of net_pcap, which has no flow
//! API): the same packets out with offload on and off, the reasons flows
//! stay in software, a full table, a route change under traffic, port
//! restarts, aging and shutdown.

mod common;

use common::daemon::{port, wait_for, Daemon};
use common::frames::{mac, push_vlan, strip_vlan, udp};
use common::pcap::{read as read_pcap, sorted, write as write_pcap};
use common::TempDir;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use vswitch::actions::vxlan::{EncapSpec, EncapTemplate};
use vswitch::actions::{PacketBuf, VecPacket};

const VM0: u8 = 0x10;
const VM1: u8 = 0x11;
const REMOTE4: [u8; 6] = [2, 0, 0, 0, 0, 0x42];
const REMOTE6: [u8; 6] = [2, 0, 0, 0, 0, 0x66];

fn pcap_port(dir: &TempDir, name: &str, role: &str, extra: &str, infinite: bool) -> String {
    let inf = if infinite { ",infinite_rx=1" } else { "" };
    format!(
        "[[port]]\nname = \"{name}\"\nrole = \"{role}\"\ndevargs = \"net_pcap_{name},rx_pcap={},tx_pcap={}{inf}\"\n{extra}\n",
        dir.path(&format!("in_{name}.pcap")).display(),
        dir.path(&format!("out_{name}.pcap")).display()
    )
}

fn config(dir: &TempDir, rules: &[&str], offload: &str, body: &str) -> String {
    config_with(dir, rules, offload, body, "")
}

/// As [`config`], with more `[datapath]` settings.
fn config_with(dir: &TempDir, rules: &[&str], offload: &str, body: &str, datapath: &str) -> String {
    let rules: Vec<String> = rules.iter().map(|r| format!("  {r:?},")).collect();
    format!(
        "rules = [\n{}\n]\n\n[eal]\nargs = [\"--no-huge\", \"-m\", \"512\", \"--no-pci\", \"--no-telemetry\", \"--log-level=lib.eal:warning\"]\n\n[datapath]\nidle_timeout_ms = 60000\n{datapath}\n[control]\nsocket = \"{}\"\n\n[metrics]\nlisten = \"off\"\n\n{offload}\n\n{body}",
        rules.join("\n"),
        dir.path("unused.sock").display()
    )
}

/// Total packets received over all ports.
fn received(s: &Value) -> u64 {
    s["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter(|p| p["role"] != "tunnel")
        .map(|p| p["rx_packets"].as_u64().unwrap_or(0))
        .sum()
}

/// Waits until every packet of the input files was received and the
/// counters stopped moving; returns `show`.
fn drained(d: &Daemon, total: u64) -> Value {
    let mut last = None;
    wait_for(Duration::from_secs(30), "every packet received and forwarded", || {
        let s = d.show();
        let tx: u64 = s["ports"].as_array().expect("ports").iter().map(|p| p["tx_packets"].as_u64().unwrap_or(0)).sum();
        let done = received(&s) == total && last == Some(tx);
        last = (received(&s) == total).then_some(tx);
        std::thread::sleep(Duration::from_millis(100));
        done.then_some(s)
    })
}

fn flows(d: &Daemon) -> Vec<Value> {
    d.ctl_json(&["dump-flows"]).expect("dump-flows").as_array().expect("array").clone()
}

fn flows_with_testpmd(d: &Daemon) -> Vec<Value> {
    d.ctl_json(&["dump-flows", "--testpmd"]).expect("dump-flows --testpmd").as_array().expect("array").clone()
}

fn vxlan_from(remote_mac: [u8; 6], remote_ip: &str, local_ip: &str, vni: u32, inner: &[u8], sport: u16) -> Vec<u8> {
    let t = EncapTemplate::new(EncapSpec {
        eth_src: remote_mac,
        eth_dst: mac(1),
        ip_src: remote_ip.parse().expect("ip"),
        ip_dst: local_ip.parse().expect("ip"),
        vni,
        udp_dst: 4789,
        ttl: 64,
        tos: 0,
        df: true,
    })
    .expect("template");
    let mut p = VecPacket::new(inner, 128);
    t.encap(&mut p, sport).expect("encap");
    p.data().to_vec()
}

const UNDERLAY: &str = "[[tunnel]]\nname = \"vxlan0\"\nremote_ip = \"198.18.0.2\"\nvni = 100\n\n\
    [[tunnel]]\nname = \"vxlan6\"\nremote_ip = \"2001:db8:18::2\"\nvni = 300\n\n\
    [[neighbour]]\nip = \"198.18.0.2\"\nmac = \"02:00:00:00:00:42\"\nport = \"uplink0\"\n\n\
    [[neighbour]]\nip = \"2001:db8:18::2\"\nmac = \"02:00:00:00:00:66\"\nport = \"uplink0\"\n";

/// Runs the daemon over the same input files with `offload`; returns the
/// output files' frames by port, `show` and the flows.
fn run_once(
    dir: &TempDir,
    rules: &[&str],
    offload: &str,
    ports: &str,
    total: u64,
) -> (BTreeMap<String, Vec<Vec<u8>>>, Value, Vec<Value>) {
    run_with(dir, rules, offload, ports, total, "", |_| {})
}

/// As [`run_once`], with more `[datapath]` settings, and `look` to ask
/// the daemon more before it stops.
fn run_with(
    dir: &TempDir,
    rules: &[&str],
    offload: &str,
    ports: &str,
    total: u64,
    datapath: &str,
    look: impl FnOnce(&Daemon),
) -> (BTreeMap<String, Vec<Vec<u8>>>, Value, Vec<Value>) {
    let run = TempDir::new("run");
    let d = Daemon::start(&run.0, &config_with(dir, rules, offload, &format!("{ports}{UNDERLAY}"), datapath));
    let s = drained(&d, total);
    // Hardware counters are read every query interval: wait for them.
    let f = wait_for(Duration::from_secs(10), "flow counters to add up to every packet", || {
        let f = flows(&d);
        let n: u64 = f.iter().map(|x| x["packets"].as_u64().unwrap_or(0)).sum();
        (n == total).then_some(f)
    });
    // The port counters with the hardware share as of that query (asking
    // for offload-show publishes the manager's counters; an error without
    // offload).
    let _ = d.ctl_json(&["offload-show"]);
    let s = if offload.is_empty() { s } else { d.show() };
    look(&d);
    d.stop();
    let mut out = BTreeMap::new();
    for name in ["vf0", "vf1", "uplink0"] {
        out.insert(name.to_owned(), sorted(read_pcap(&dir.path(&format!("out_{name}.pcap")))));
    }
    (out, s, f)
}

/// Rules, ports, vf0's frames, the uplink's frames.
type DiffInputs = ([&'static str; 8], String, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// The differential test's rules, ports (`queues` receive queues each) and
/// input frames (written, one file per queue: a flow's packets in one).
fn diff_inputs(dir: &TempDir, queues: usize) -> DiffInputs {
    let rules = [
        "priority=10,in_port=vf0,ip,nw_dst=10.2.0.0/16 actions=output:uplink0",
        "priority=20,in_port=vf0,udp,tp_dst=53 actions=mod_vlan_vid:100,output:uplink0",
        "priority=10,in_port=vf0,ip,nw_dst=10.3.0.0/16 actions=output:vxlan0",
        "priority=10,in_port=vf0,ip,nw_dst=10.4.0.0/16 actions=output:vxlan6",
        "priority=10,in_port=uplink0,dl_dst=02:00:00:00:00:10 actions=mod_dl_src:02:aa:00:00:00:01,output:vf0",
        "priority=10,in_port=uplink0,dl_dst=02:00:00:00:00:11,dl_vlan=200 actions=strip_vlan,output:vf1",
        "priority=10,in_port=vxlan0 actions=output:vf1",
        "priority=10,in_port=vxlan6 actions=output:vf1",
    ];
    let mut ports = format!(
        "{}{}{}",
        pcap_port(dir, "vf0", "representor", "", false),
        pcap_port(dir, "vf1", "representor", "", false),
        pcap_port(
            dir,
            "uplink0",
            "uplink",
            "ip = [\"198.18.0.1/24\", \"2001:db8:18::1/64\"]\nmtu = 1600\nmac = \"02:00:00:00:00:01\"",
            false
        )
    );
    if queues > 1 {
        // One input file per receive queue.
        for name in ["vf0", "vf1", "uplink0"] {
            let one = format!("rx_pcap={}", dir.path(&format!("in_{name}.pcap")).display());
            let all: Vec<String> = (0..queues)
                .map(|q| format!("rx_pcap={}", dir.path(&format!("in_{name}.q{q}.pcap")).display()))
                .collect();
            ports = ports.replace(&one, &all.join(","));
        }
        ports = ports.replace("role = \"representor\"\n", &format!("role = \"representor\"\nrx_queues = {queues}\n"));
        ports = ports.replace("role = \"uplink\"\n", &format!("role = \"uplink\"\nrx_queues = {queues}\n"));
    }
    let (mut vf0, mut up) = (Vec::new(), Vec::new());
    for s in 0..2500u16 {
        let h = (s % 5) as u8;
        vf0.push(udp(mac(1), mac(VM0), None, [10, 0, 0, 1], [10, 2, 0, h], 80, s));
        vf0.push(udp(mac(1), mac(VM0), None, [10, 0, 0, 1], [10, 2, 1, h], 53, s));
        vf0.push(udp(mac(1), mac(VM0), None, [10, 0, 0, 1], [10, 3, 0, h], 80, s));
        vf0.push(udp(mac(1), mac(VM0), None, [10, 0, 0, 1], [10, 4, 0, h], 80, s));
        up.push(udp(mac(VM0), mac(9), None, [10, 9, 0, 1], [10, 0, 0, 1], 7, s));
        up.push(udp(mac(VM1), mac(9), Some(200), [10, 9, 0, 1], [10, 1, 0, 1], 7, s));
        let inner = udp(mac(VM1), mac(8), None, [10, 8, 0, h], [10, 1, 0, 1], 9, s);
        up.push(vxlan_from(REMOTE4, "198.18.0.2", "198.18.0.1", 100, &inner, 0xc000 | s));
        up.push(vxlan_from(REMOTE6, "2001:db8:18::2", "2001:db8:18::1", 300, &inner, 0xd000 | s));
    }
    write_inputs(dir, "vf0", &vf0, queues);
    write_inputs(dir, "vf1", &[], queues);
    write_inputs(dir, "uplink0", &up, queues);
    (rules, ports, vf0, up)
}

/// A port's input: one file, or with several queues one per queue, each
/// flow (by its IP addresses) in one of them, in order.
fn write_inputs(dir: &TempDir, name: &str, frames: &[Vec<u8>], queues: usize) {
    if queues <= 1 {
        return write_pcap(&dir.path(&format!("in_{name}.pcap")), frames);
    }
    let mut per: Vec<Vec<Vec<u8>>> = vec![Vec::new(); queues];
    for f in frames {
        // The IPv4 addresses of the outermost header (bytes 26..34).
        let h: usize = f.get(26..34).map_or(0, |a| a.iter().map(|&b| usize::from(b)).sum());
        per[h % queues].push(f.clone());
    }
    for (q, frames) in per.iter().enumerate() {
        write_pcap(&dir.path(&format!("in_{name}.q{q}.pcap")), frames);
    }
}

#[test]
fn offload_on_and_off_deliver_the_same_packets() {
    let dir = TempDir::new("diff");
    let (rules, ports, vf0, up) = diff_inputs(&dir, 1);
    let total = (vf0.len() + up.len()) as u64;

    let (off, s_off, _) = run_once(&dir, &rules, "", &ports, total);
    assert_eq!(s_off["hw_packets"], 0);
    // The expected frames, built independently for the plain cases.
    let pushed: Vec<Vec<u8>> = vf0.iter().filter(|f| f[37] == 53).map(|f| push_vlan(f, 100)).collect();
    assert!(pushed.iter().all(|p| off["uplink0"].binary_search(p).is_ok()), "VLAN pushed on DNS");
    let popped: Vec<Vec<u8>> = up.iter().filter(|f| f.len() > 16 && f[12] == 0x81).map(|f| strip_vlan(f)).collect();
    assert!(popped.iter().all(|p| off["vf1"].binary_search(p).is_ok()), "VLAN popped");
    assert_eq!(off["uplink0"].len(), 10_000, "plain, DNS, and both tunnels' packets leave the uplink");
    assert_eq!(off["vf1"].len(), 7_500, "popped plus both tunnels' decapsulated packets");

    let offload = "[offload]\ndevice = \"model\"\npolicy = \"all\"\nquery_interval_ms = 50\n";
    let (on, s_on, f_on) = run_once(&dir, &rules, offload, &ports, total);
    for (name, frames) in &off {
        assert_eq!(on[name].len(), frames.len(), "{name}: as many frames");
        assert!(on[name] == *frames, "{name}: the same frames, byte for byte");
    }
    let hw = s_on["hw_packets"].as_u64().unwrap_or(0);
    assert!(hw * 2 > total, "most packets were handled by the model e-switch: {hw} of {total}");
    // Every port, tunnel ports included, counts the same packets in either tier.
    for name in ["vf0", "vf1", "uplink0", "vxlan0", "vxlan6"] {
        for what in ["rx_packets", "tx_packets"] {
            assert_eq!(port(&s_on, name)[what], port(&s_off, name)[what], "{name} {what}");
        }
    }
    // And the same bytes on the physical ports (the model's received bytes
    // were once left out).
    for name in ["vf0", "vf1", "uplink0"] {
        for what in ["rx_bytes", "tx_bytes"] {
            assert_eq!(port(&s_on, name)[what], port(&s_off, name)[what], "{name} {what}");
        }
    }
    assert!(port(&s_on, "vxlan0")["hw_tx_packets"].as_u64().unwrap_or(0) > 0, "encapsulated in hardware");
    assert!(
        port(&s_on, "vxlan6")["hw_rx_packets"].as_u64().unwrap_or(0) > 0,
        "decapsulated in hardware: {:#}",
        s_on["ports"]
    );
    let states: Vec<&str> = f_on.iter().filter_map(|f| f["offload"].as_str()).collect();
    assert!(states.iter().all(|s| *s == "hw"), "every flow in hardware: {states:?}");
    assert_eq!(f_on.len(), 8, "one megaflow per rule: {f_on:#?}");
}

/// Two PMDs, two receive queues per port, a megaflow's packets on both:
/// offload on and off deliver the same frames as one PMD does, and each
/// megaflow is one hardware rule however many PMDs cached it.
#[test]
fn two_pmds_deliver_the_same_packets_with_one_rule_per_megaflow() {
    let dir = TempDir::new("diff2");
    let (rules, ports, vf0, up) = diff_inputs(&dir, 2);
    let total = (vf0.len() + up.len()) as u64;
    let two = "pmd_cores = [0, 1]\n";
    let (off, _, _) = run_with(&dir, &rules, "", &ports, total, two, |_| {});
    let offload = "[offload]\ndevice = \"model\"\npolicy = \"all\"\nquery_interval_ms = 50\n";
    let mut per_pmd = Vec::new();
    let mut stats = Value::Null;
    let (on, s_on, merged) = run_with(&dir, &rules, offload, &ports, total, two, |d| {
        per_pmd = d.ctl_json(&["dump-flows", "--per-pmd"]).expect("per pmd").as_array().expect("array").clone();
        stats = d.ctl_json(&["offload-show"]).expect("offload-show");
    });
    assert_eq!(off["uplink0"].len(), 10_000);
    for (name, frames) in &off {
        assert!(on[name] == *frames, "{name}: the same frames with offload on, two PMDs");
    }
    assert_eq!(merged.len(), 8, "one line per megaflow: {merged:#?}");
    // With policy "all" a megaflow's rule usually lands before the other
    // PMD sees its packets (the e-switch then takes them first); a PMD that
    // cached it meanwhile shares the rule.
    assert!(per_pmd.len() >= merged.len(), "{per_pmd:#?}");
    assert_eq!(stats["flow_rules"], 8, "one hardware rule per megaflow: {stats}");
    assert_eq!(stats["shared_rules"].as_u64(), Some((per_pmd.len() - merged.len()) as u64), "{stats}");
    let hw = s_on["hw_packets"].as_u64().unwrap_or(0);
    assert!(hw * 2 > total, "most packets in the model e-switch: {hw} of {total}");
    let n: u64 = merged.iter().map(|f| f["packets"].as_u64().unwrap_or(0)).sum();
    assert_eq!(n, total, "the merged flows count every packet once");
}

/// Policy "hot" with two PMDs: one megaflow whose packets arrive on both
/// PMDs' queues at 60 % of the threshold each is hot by the sum, becomes
/// one hardware rule both PMDs' flows share, and its counts add up.
#[test]
fn a_megaflow_hot_over_two_pmds_is_one_shared_rule() {
    let dir = TempDir::new("shared");
    let files: Vec<String> = (0..2u8)
        .map(|q| {
            let frames: Vec<Vec<u8>> =
                (0..8u8).map(|i| udp(mac(1), mac(VM0), None, [10, 0, q, i], [10, 2, 0, 1], 80, 0)).collect();
            let path = dir.path(&format!("q{q}.pcap"));
            write_pcap(&path, &frames);
            format!("rx_pcap={}", path.display())
        })
        .collect();
    let ports = format!(
        "[[port]]\nname = \"vf0\"\nrole = \"representor\"\nrx_queues = 2\ndevargs = \"net_pcap_shv0,{},infinite_rx=1\"\n\n\
         [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null_shu0,no-rx=1\"\n",
        files.join(",")
    );
    // The pcaps replay at millions per second: a threshold no single PMD's
    // share can reach alone cannot be set by rate here, so the test sets it
    // from the measured rate of each queue.
    let offload = |min_pps: u64| {
        format!("[offload]\ndevice = \"model\"\npolicy = \"hot\"\nmin_pps = {min_pps}\nhot_ms = 200\nquery_interval_ms = 100\n")
    };
    let rules = ["priority=10,in_port=vf0,ip actions=output:uplink0"];
    let two = "pmd_cores = [0, 1]\nmbufs = 65536\n";
    let run = TempDir::new("shared-run");
    let d = Daemon::start(&run.0, &config_with(&dir, &rules, &offload(1_000_000_000), &ports, two));
    let flows = wait_for(Duration::from_secs(10), "both PMDs' flows of the megaflow", || {
        let f = d.ctl_json(&["dump-flows", "--per-pmd"]).ok()?.as_array()?.clone();
        (f.len() == 2).then_some(f)
    });
    assert_ne!(flows[0]["pmd"], flows[1]["pmd"], "{flows:#?}");
    assert_eq!(flows[0]["match"], flows[1]["match"], "one megaflow: {flows:#?}");
    assert!(flows.iter().all(|f| f["offload"] == "sw"), "a billion pps is out of reach: {flows:#?}");
    let merged = d.ctl_json(&["dump-flows"]).expect("dump-flows");
    assert_eq!(merged.as_array().map(Vec::len), Some(1), "{merged}");
    assert_eq!(merged[0]["pmds"].as_array().map(Vec::len), Some(2), "{merged}");
    d.stop();
    // Each queue's rate as the PMDs saw it; the threshold above either
    // alone (x 1.3) and below their sum.
    let rxq = {
        let d = Daemon::start(&run.0, &config_with(&dir, &rules, &offload(1_000_000_000), &ports, two));
        std::thread::sleep(Duration::from_millis(1500));
        let s = d.ctl_json(&["pmd-rxq-show"]).expect("pmd-rxq-show");
        d.stop();
        s
    };
    let pps: Vec<f64> = rxq["pmds"]
        .as_array()
        .expect("pmds")
        .iter()
        .flat_map(|p| p["queues"].as_array().expect("queues").iter().filter(|q| q["port"] == "vf0"))
        .map(|q| q["pps"].as_f64().unwrap_or(0.0))
        .collect();
    assert_eq!(pps.len(), 2, "{rxq}");
    let max = pps.iter().copied().fold(0.0, f64::max);
    let min_pps = (max * 1.3) as u64;
    assert!((min_pps as f64) < (pps[0] + pps[1]) * 0.95, "the queues are too uneven to test a sum: {pps:?}");
    let d = Daemon::start(&run.0, &config_with(&dir, &rules, &offload(min_pps), &ports, two));
    let flows = wait_for(Duration::from_secs(15), "the megaflow in hardware", || {
        let f = d.ctl_json(&["dump-flows", "--per-pmd"]).ok()?.as_array()?.clone();
        (f.len() == 2 && f.iter().all(|x| x["offload"] == "hw")).then_some(f)
    });
    let stats = d.ctl_json(&["offload-show"]).expect("offload-show");
    d.stop();
    assert_eq!(stats["flow_rules"], 1, "one rule for the two PMDs' flows: {stats}");
    assert_eq!(stats["shared_rules"], 1, "{stats}");
    eprintln!("queues at {pps:?} pps, threshold {min_pps}: {flows:#?}");
}

#[test]
fn software_fallback_keeps_delivering_with_its_reason() {
    let dir = TempDir::new("fallback");
    let rules = [
        "priority=10,in_port=vf0,ip,nw_dst=10.3.0.0/16 actions=output:vxlan0",
        "priority=10,in_port=vf0,ip,nw_dst=10.5.0.0/16 actions=output:uplink0,output:vf1",
        "priority=10,in_port=vf0,ip,nw_dst=10.6.0.0/16 actions=output:uplink1",
    ];
    let body = |uplink_mtu: u16| {
        format!(
            "{}{}{}{}",
            pcap_port(&dir, "vf0", "representor", "", false),
            pcap_port(&dir, "vf1", "representor", "", false),
            pcap_port(&dir, "uplink0", "uplink", &format!("ip = \"198.18.0.1/24\"\nmtu = {uplink_mtu}"), false),
            pcap_port(&dir, "uplink1", "uplink", "switch_domain = 1", false)
        )
    };
    let mut vf0 = Vec::new();
    for s in 0..300u16 {
        vf0.push(udp(mac(1), mac(VM0), None, [10, 0, 0, 1], [10, 3, 0, 1], 80, s));
        vf0.push(udp(mac(1), mac(VM0), None, [10, 0, 0, 1], [10, 5, 0, 1], 80, s));
        vf0.push(udp(mac(1), mac(VM0), None, [10, 0, 0, 1], [10, 6, 0, 1], 80, s));
    }
    write_pcap(&dir.path("in_vf0.pcap"), &vf0);
    for p in ["vf1", "uplink0", "uplink1"] {
        write_pcap(&dir.path(&format!("in_{p}.pcap")), &[]);
    }
    let offload = "[offload]\npolicy = \"all\"\nquery_interval_ms = 50\n";
    let underlay = "[[tunnel]]\nname = \"vxlan0\"\nremote_ip = \"198.18.0.2\"\nvni = 100\n\n[[neighbour]]\nip = \"198.18.0.2\"\nmac = \"02:00:00:00:00:42\"\nport = \"uplink0\"\n";
    let run = TempDir::new("fb-run");
    let d = Daemon::start(&run.0, &config(&dir, &rules, offload, &format!("{}{underlay}", body(1500))));
    let s = drained(&d, vf0.len() as u64);
    let by_dst: BTreeMap<String, String> = flows(&d)
        .iter()
        .map(|f| (f["match"].as_str().unwrap_or("").to_owned(), f["offload"].as_str().unwrap_or("").to_owned()))
        .collect();
    let state = |net: &str| by_dst.iter().find(|(m, _)| m.contains(net)).map(|(_, s)| s.clone()).unwrap_or_default();
    assert_eq!(state("10.3.0.0/16"), "sw(mtu: vf0 1500 + 50 > uplink0 1500)");
    assert_eq!(state("10.5.0.0/16"), "sw(unsupported: several outputs (mirroring is not offloaded))");
    assert_eq!(state("10.6.0.0/16"), "sw(other e-switch: vf0 (domain 0) and uplink1 (domain 1))");
    assert_eq!(s["hw_packets"], 0);
    assert_eq!(port(&s, "uplink0")["tx_packets"], 600, "encapsulated plus mirrored, in software");
    assert_eq!(port(&s, "vf1")["tx_packets"], 300);
    assert_eq!(port(&s, "uplink1")["tx_packets"], 300);
    let show = d.ctl_json(&["offload-show"]).expect("offload-show");
    assert_eq!(show["refusals_by_reason"]["mtu"], 1, "{show}");
    assert_eq!(show["refusals_by_reason"]["other_eswitch"], 1, "{show}");
    d.stop();
    // A larger uplink MTU: the tunnel flow is offloaded.
    let run = TempDir::new("fb-run2");
    let d = Daemon::start(&run.0, &config(&dir, &rules, offload, &format!("{}{underlay}", body(1600))));
    drained(&d, vf0.len() as u64);
    let tunnel_hw = |f: &Value| f["match"].as_str().is_some_and(|m| m.contains("10.3.0.0/16")) && f["offload"] == "hw";
    let hw = wait_for(Duration::from_secs(10), "the tunnel flow in hardware", || {
        flows_with_testpmd(&d).into_iter().find(tunnel_hw)
    });
    let plain = flows(&d).into_iter().find(tunnel_hw).expect("still in hardware");
    assert!(plain.get("testpmd").is_none(), "testpmd text only when asked: {plain:#}");
    assert!(
        hw["testpmd"]
            .as_array()
            .is_some_and(|t| t.iter().any(|l| l.as_str().is_some_and(|l| l.contains("vxlan_encap")))),
        "{hw:#}"
    );
    d.stop();
}

#[test]
fn rte_flow_on_a_device_without_a_flow_api_keeps_everything_in_software() {
    let dir = TempDir::new("rteflow");
    let rules = ["priority=10,in_port=vf0 actions=output:uplink0"];
    let ports = format!(
        "{}{}",
        pcap_port(&dir, "vf0", "representor", "switch_domain = 0", false),
        pcap_port(&dir, "uplink0", "uplink", "switch_domain = 0", false)
    );
    let frames: Vec<Vec<u8>> =
        (0..500u16).map(|s| udp(mac(1), mac(VM0), None, [10, 0, 0, 1], [10, 2, 0, 1], 80, s)).collect();
    write_pcap(&dir.path("in_vf0.pcap"), &frames);
    write_pcap(&dir.path("in_uplink0.pcap"), &[]);
    let run = TempDir::new("rf-run");
    let offload = "[offload]\ndevice = \"rte_flow\"\npolicy = \"all\"\n";
    let d = Daemon::start(&run.0, &config(&dir, &rules, offload, &ports));
    let s = drained(&d, 500);
    assert_eq!(port(&s, "uplink0")["tx_packets"], 500, "forwarding unaffected");
    let f = flows(&d);
    assert_eq!(f.len(), 1);
    let state = f[0]["offload"].as_str().unwrap_or("");
    assert!(
        state.starts_with("sw(device:") && state.contains("Function not implemented"),
        "the driver's own message: {state}"
    );
    let show = d.ctl_json(&["offload-show"]).expect("offload-show");
    assert!(show["device"].as_str().is_some_and(|x| x.starts_with("rte_flow on port")), "{show}");
    assert!(show["failures_by_device_error"]["unsupported"].as_u64().unwrap_or(0) >= 1, "{show}");
    d.stop();
    assert_eq!(read_pcap(&dir.path("out_uplink0.pcap")), frames);
}

#[test]
fn probe_offload_reports_the_driver_and_the_model_per_rule_shape() {
    let dir = TempDir::new("probe");
    write_pcap(&dir.path("in_vf0.pcap"), &[]);
    write_pcap(&dir.path("in_uplink0.pcap"), &[]);
    // The representor first: the probe opens the uplink first regardless.
    let ports = format!(
        "{}{}",
        pcap_port(&dir, "vf0", "representor", "", false),
        pcap_port(&dir, "uplink0", "uplink", "", false)
    );
    let path = dir.path("probe.toml");
    std::fs::write(&path, config(&dir, &["priority=1 actions=drop"], "", &ports)).expect("write");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_vswitchd"))
        .arg("--probe-offload")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run vswitchd --probe-offload");
    let runtime = format!("/var/run/dpdk/vswitchd-{}", child.id());
    let out = child.wait_with_output().expect("vswitchd --probe-offload");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!std::path::Path::new(&runtime).exists(), "the probe left DPDK's runtime directory {runtime}");
    assert!(text.contains("ethdev ports uplink0=0 vf0=1"), "uplink probed first: {text}");
    let section = |head: &str| -> Vec<String> {
        text.lines()
            .skip_while(|l| !l.starts_with(head))
            .skip(1)
            .take_while(|l| l.starts_with("  ") && !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    };
    let nic = section("NIC:");
    let model = section("model e-switch");
    assert_eq!(nic.len(), 11, "one row per rule shape: {text}");
    assert!(nic.iter().all(|l| l.contains(" no ") && l.contains("Function not implemented")), "{text}");
    assert_eq!(model.len(), 11, "{text}");
    assert!(model.iter().all(|l| l.contains(" yes ")), "{text}");
    let testpmd: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("flow create 0 transfer")).collect();
    assert_eq!(testpmd.len(), 11, "a testpmd line per shape: {text}");
    assert!(testpmd.iter().any(|l| l.contains("vxlan_encap")) && testpmd.iter().any(|l| l.contains("vxlan_decap")));
}

/// An infinite pcap where flow i appears `weights[i]` times per cycle.
fn weighted(weights: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for round in 0..8u16 {
        for (i, w) in weights.iter().enumerate() {
            for k in 0..*w {
                out.push(udp(mac(1), mac(VM0), None, [10, 0, 0, 1], [10, 2, i as u8, 1], 80, round * 100 + k as u16));
            }
        }
    }
    out
}

#[test]
fn a_full_table_holds_the_hottest_flows_and_loses_nothing() {
    let dir = TempDir::new("full");
    // Each destination /24 is its own megaflow.
    let rules = [
        "priority=10,in_port=vf0,ip,nw_dst=10.2.0.0/24 actions=output:uplink0",
        "priority=10,in_port=vf0,ip,nw_dst=10.2.1.0/24 actions=output:uplink0",
        "priority=10,in_port=vf0,ip,nw_dst=10.2.2.0/24 actions=output:uplink0",
        "priority=10,in_port=vf0,ip,nw_dst=10.2.3.0/24 actions=output:uplink0",
    ];
    write_pcap(&dir.path("in_vf0.pcap"), &weighted(&[1, 8, 2, 4]));
    write_pcap(&dir.path("in_uplink0.pcap"), &[]);
    let ports = format!(
        "{}[[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null_full,no-rx=1\"\n",
        pcap_port(&dir, "vf0", "representor", "", true)
    );
    // Two flow rules (plus the jump rule).
    let offload = "[offload]\npolicy = \"hot\"\nmin_pps = 1000\nhot_ms = 100\nmax_rules = 2\nquery_interval_ms = 100\n";
    let run = TempDir::new("full-run");
    let metrics = common::free_port();
    let text =
        config(&dir, &rules, offload, &ports).replace("listen = \"off\"", &format!("listen = \"127.0.0.1:{metrics}\""));
    let d = Daemon::start(&run.0, &text);
    let hot = wait_for(Duration::from_secs(20), "the two hottest flows in hardware", || {
        let f = flows(&d);
        let hw: Vec<String> =
            f.iter().filter(|x| x["offload"] == "hw").map(|x| x["match"].as_str().unwrap_or("").to_owned()).collect();
        (hw.len() == 2 && hw.iter().any(|m| m.contains("10.2.1.0/24")) && hw.iter().any(|m| m.contains("10.2.3.0/24")))
            .then_some(f)
    });
    // The colder two are in software: refused for space, or evicted when a
    // hotter flow (by its hardware or software rate) came along.
    let colder: Vec<&str> = hot.iter().filter_map(|x| x["offload"].as_str()).filter(|s| *s != "hw").collect();
    assert_eq!(colder.len(), 2, "{hot:#?}");
    assert!(colder.iter().all(|s| s.starts_with("sw(no space") || *s == "sw(evicted by a hotter flow)"), "{colder:?}");
    let show = d.ctl_json(&["offload-show"]).expect("show");
    assert_eq!(show["flow_rules"], 2);
    // Stable: the hysteresis keeps the two hottest where they are.
    let evictions = show["evictions"].as_u64().unwrap_or(0);
    std::thread::sleep(Duration::from_millis(500));
    let later = d.ctl_json(&["offload-show"]).expect("show");
    assert_eq!(later["evictions"].as_u64().unwrap_or(0), evictions, "no flapping once the rates are known: {later}");
    // Prometheus: rules, flows by state, packets by tier (published every second).
    let body = wait_for(Duration::from_secs(5), "offload metrics", || {
        let b = common::metrics_page(metrics);
        b.contains("vswitch_offload_flow_rules 2").then_some(b)
    });
    assert!(body.contains("vswitch_offload_flows{state=\"hardware\"} 2"), "{body}");
    assert!(body.contains("vswitch_offload_operations_total{op=\"insert\"}"), "{body}");
    assert!(body.contains("vswitch_packets_total{tier=\"hw\"}"), "{body}");
    assert!(body.contains("vswitch_offload_install_to_active_seconds"), "{body}");
    let log = d.stop();
    // Nothing lost: every packet received left the uplink (net_null counts it).
    let summary = std::fs::read_to_string(run.path("stdout.log")).expect("stdout");
    let field = |port: &str, what: &str| -> u64 {
        let line =
            summary.lines().find(|l| l.trim_start().starts_with(port)).unwrap_or_else(|| panic!("{summary}\n{log}"));
        let mut it = line.split_whitespace();
        while let Some(w) = it.next() {
            if w == what {
                return it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            }
        }
        panic!("{what} of {port} in {line}")
    };
    assert_eq!(field("vf0", "rx"), field("uplink0", "tx"), "{summary}");
    assert!(field("vf0", "rx") > 10_000);
}

#[test]
fn route_change_under_traffic_replaces_exactly_the_affected_rule() {
    let dir = TempDir::new("route");
    let rules = [
        "priority=10,in_port=vf0,ip,nw_dst=10.3.0.0/16 actions=output:vxlan0",
        "priority=10,in_port=vf0,ip,nw_dst=10.4.0.0/16 actions=output:vxlan1",
    ];
    let mut frames = Vec::new();
    for s in 0..64u16 {
        frames.push(udp(mac(1), mac(VM0), None, [10, 0, 0, 1], [10, 3, 0, 1], 80, s));
        frames.push(udp(mac(1), mac(VM0), None, [10, 0, 0, 1], [10, 4, 0, 1], 80, s));
    }
    write_pcap(&dir.path("in_vf0.pcap"), &frames);
    write_pcap(&dir.path("in_uplink0.pcap"), &[]);
    let body = format!(
        "{}{}[[tunnel]]\nname = \"vxlan0\"\nremote_ip = \"10.9.0.1\"\nvni = 100\n\n[[tunnel]]\nname = \"vxlan1\"\nremote_ip = \"10.9.1.1\"\nvni = 101\n\n\
         [[route]]\nprefix = \"10.9.0.0/16\"\nvia = \"198.18.0.2\"\nport = \"uplink0\"\n\n\
         [[neighbour]]\nip = \"198.18.0.2\"\nmac = \"02:00:00:00:00:0a\"\nport = \"uplink0\"\n\n\
         [[neighbour]]\nip = \"198.18.0.3\"\nmac = \"02:00:00:00:00:0b\"\nport = \"uplink0\"\n",
        pcap_port(&dir, "vf0", "representor", "", true),
        pcap_port(&dir, "uplink0", "uplink", "ip = \"198.18.0.1/24\"\nmtu = 1600", false)
    );
    let offload = "[offload]\npolicy = \"all\"\nquery_interval_ms = 50\n";
    let run = TempDir::new("route-run");
    let d = Daemon::start(&run.0, &config(&dir, &rules, offload, &body));
    wait_for(Duration::from_secs(10), "both tunnel flows in hardware", || {
        let f = flows(&d);
        (f.len() == 2 && f.iter().all(|x| x["offload"] == "hw")).then_some(())
    });
    std::thread::sleep(Duration::from_millis(200));
    let r = d.ctl_json(&["route-add", "10.9.0.1/32", "via", "198.18.0.3", "uplink0"]).expect("route-add");
    assert_eq!(r["offload"]["replaced"], 1, "only vxlan0's flow uses the route: {r}");
    assert_eq!(r["offload"]["unchanged"], 1, "vxlan1's flow is left alone: {r}");
    // The PMDs publish their counters at the barrier the reply waited for:
    // every packet from this position on left after the acknowledgement
    // and must carry the new next hop's MAC.
    let mark = port(&d.show(), "uplink0")["tx_packets"].as_u64().unwrap_or(0);
    std::thread::sleep(Duration::from_millis(200));
    let show = d.ctl_json(&["offload-show"]).expect("show");
    assert_eq!(show["replacements"], 1, "{show}");
    // A neighbour change: the new next hop's MAC changes; only the flow
    // through it is replaced, and from the reply on its packets carry it.
    let n = d.ctl_json(&["neigh-add", "198.18.0.3", "02:00:00:00:00:0c", "uplink0"]).expect("neigh-add");
    assert_eq!((n["offload"]["replaced"].as_u64(), n["offload"]["unchanged"].as_u64()), (Some(1), Some(1)), "{n}");
    let mark_neigh = port(&d.show(), "uplink0")["tx_packets"].as_u64().unwrap_or(0);
    std::thread::sleep(Duration::from_millis(200));
    // vxlan1's next hop goes: its flow is unresolved, leaves the hardware
    // with its hits counted, and its packets are dropped (neighbour_miss).
    let u = d.ctl_json(&["neigh-del", "198.18.0.2"]).expect("neigh-del");
    assert_eq!(u["offload"]["replaced"], 0, "{u}");
    let mark_unresolved = port(&d.show(), "uplink0")["tx_packets"].as_u64().unwrap_or(0);
    wait_for(Duration::from_secs(10), "neighbour_miss drops", || (d.drops("neighbour_miss") > 0).then_some(()));
    let f = flows(&d);
    assert!(
        f.iter().any(|x| x["offload"].as_str().is_some_and(|s| s.starts_with("sw(unresolved"))),
        "vxlan1's flow is back in software as unresolved: {f:#?}"
    );
    d.stop();
    let out = read_pcap(&dir.path("out_uplink0.pcap"));
    let summary = std::fs::read_to_string(run.path("stdout.log")).expect("stdout");
    let rx: u64 = summary
        .lines()
        .find(|l| l.trim_start().starts_with("vf0"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .expect("vf0 rx in the summary");
    let drops: u64 = summary
        .lines()
        .find(|l| l.trim_start().starts_with("drops:"))
        .map(|l| l.split_whitespace().filter_map(|kv| kv.split_once('=')?.1.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    let arp = summary
        .lines()
        .find(|l| l.trim_start().starts_with("balance:"))
        .and_then(|l| l.split("generated ").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert_eq!(out.len() as u64 + drops, rx + arp, "packets in = packets out + drops (+ ARP requests)\n{summary}");
    let to_remote0 = |f: &Vec<u8>| f.len() > 34 && f[30..34] == [10, 9, 0, 1];
    let old = [2, 0, 0, 0, 0, 0x0a];
    let new = [2, 0, 0, 0, 0, 0x0b];
    assert!(out.iter().take(mark as usize).any(|f| to_remote0(f) && f[0..6] == old), "the old next hop before");
    let late_old = out.iter().skip(mark as usize).filter(|f| to_remote0(f) && f[0..6] == old).count();
    assert_eq!(late_old, 0, "no packet to the moved remote leaves with the old next-hop MAC after the ack");
    assert!(out.iter().skip(mark as usize).any(|f| to_remote0(f) && f[0..6] == new), "the new next hop after");
    assert!(
        out.iter().skip(mark as usize).any(|f| f.len() > 34 && f[30..34] == [10, 9, 1, 1] && f[0..6] == old),
        "vxlan1 unchanged"
    );
    let newer = [2, 0, 0, 0, 0, 0x0c];
    let after_neigh = &out[mark_neigh as usize..mark_unresolved as usize];
    assert_eq!(
        after_neigh.iter().filter(|f| to_remote0(f) && f[0..6] != newer).count(),
        0,
        "the changed MAC from the reply on"
    );
    assert!(after_neigh.iter().any(to_remote0), "vxlan0's packets kept flowing");
    let to_remote1 = |f: &&Vec<u8>| f.len() > 34 && f[30..34] == [10, 9, 1, 1];
    assert_eq!(out[mark_unresolved as usize..].iter().filter(to_remote1).count(), 0, "vxlan1 sends nothing unresolved");
}

#[test]
fn port_restart_reinstalls_aging_clears_both_tiers_and_shutdown_clears_the_model() {
    let dir = TempDir::new("life");
    let rules = ["priority=10,in_port=vf0 actions=output:uplink0"];
    write_pcap(
        &dir.path("in_vf0.pcap"),
        &(0..200u16).map(|s| udp(mac(1), mac(VM0), None, [10, 0, 0, 1], [10, 2, 0, 1], 80, s)).collect::<Vec<_>>(),
    );
    write_pcap(
        &dir.path("in_vf1.pcap"),
        &(0..200u16).map(|s| udp(mac(1), mac(VM1), None, [10, 1, 0, 1], [10, 2, 0, 1], 80, s)).collect::<Vec<_>>(),
    );
    write_pcap(&dir.path("in_uplink0.pcap"), &[]);
    let ports = format!(
        "{}{}{}",
        pcap_port(&dir, "vf0", "representor", "", true),
        pcap_port(&dir, "vf1", "representor", "", false),
        "[[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null_life,no-rx=1\"\n"
    );
    let rules2 = [rules[0], "priority=10,in_port=vf1 actions=output:uplink0"];
    let offload = "[offload]\npolicy = \"all\"\nquery_interval_ms = 50\n";
    let run = TempDir::new("life-run");
    let text = config(&dir, &rules2, offload, &ports).replace("idle_timeout_ms = 60000", "idle_timeout_ms = 1000");
    let d = Daemon::start(&run.0, &text);
    wait_for(Duration::from_secs(10), "both flows in hardware", || {
        let f = flows(&d);
        (f.len() == 2 && f.iter().all(|x| x["offload"] == "hw")).then_some(())
    });
    let before = d.ctl_json(&["offload-show"]).expect("show")["rules_in_device"].as_u64().unwrap_or(0);
    assert_eq!(before, 4, "two flow rules and two jump rules");
    let r = d.ctl_json(&["port-restart", "vf0"]).expect("port-restart");
    assert_eq!((r["rules_dropped"].as_u64(), r["rules_reinstalled"].as_u64()), (Some(1), Some(1)), "{r}");
    let after = d.ctl_json(&["offload-show"]).expect("show");
    assert_eq!(after["rules_in_device"], 4, "the same rules again: {after}");
    assert_eq!(after["reinstalled"], 1);
    // vf1's finite traffic ends: its flow idles out of both tiers (the
    // endless vf0 flow stays, kept alive by its hardware hits).
    let left = wait_for(Duration::from_secs(15), "vf1's flow aged out of both tiers", || {
        let f = flows(&d);
        (f.len() == 1).then_some(f)
    });
    assert!(left[0]["match"].as_str().is_some_and(|m| m.contains("in_port=vf0")), "{left:#?}");
    assert_eq!(left[0]["offload"], "hw", "an offloaded flow does not expire in software while it is hit");
    let show = wait_for(Duration::from_secs(5), "its rule gone from the model", || {
        let s = d.ctl_json(&["offload-show"]).expect("show");
        (s["flow_rules"] == 1).then_some(s)
    });
    assert_eq!(show["rules_in_device"], 3, "one flow rule and the two jump rules: {show}");
    d.stop();
    let out = std::fs::read_to_string(run.path("stdout.log")).expect("stdout");
    assert!(out.contains("offload: 3 rules destroyed at shutdown, 0 left in the model e-switch"), "{out}");
}
