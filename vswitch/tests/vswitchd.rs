//! vswitchd end to end on DPDK virtual devices: the real daemon binary,
//! net_pcap ports reading and writing pcap files, vswitchctl over the control
//! socket.

mod common;

use common::daemon::{port, wait_for, Daemon, VSWITCHD};
use common::frames::{mac, push_vlan, strip_vlan, udp};
use common::pcap::{read as read_pcap, sorted, write as write_pcap};
use common::{free_port, TempDir};
use serde_json::Value;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

fn base_config(dir: &TempDir, rules: &[&str], ports: &str) -> String {
    let rules: Vec<String> = rules.iter().map(|r| format!("  {r:?},")).collect();
    format!(
        "rules = [\n{}\n]\n\n[eal]\nargs = [\"--no-huge\", \"-m\", \"512\", \"--no-pci\", \"--no-telemetry\", \"--log-level=lib.eal:warning\"]\n\n[datapath]\nidle_timeout_ms = 60000\n\n[control]\nsocket = \"{}\"\n\n[metrics]\nlisten = \"off\"\n\n{ports}",
        rules.join("\n"),
        dir.path("unused.sock").display()
    )
}

fn pcap_port(dir: &TempDir, name: &str, role: &str) -> String {
    format!(
        "[[port]]\nname = \"{name}\"\nrole = \"{role}\"\ndevargs = \"net_pcap_{name},rx_pcap={},tx_pcap={}\"\n\n",
        dir.path(&format!("in_{name}.pcap")).display(),
        dir.path(&format!("out_{name}.pcap")).display()
    )
}

/// Waits until the daemon has received `expected` packets in total and its
/// counters stop moving.
fn wait_all_received(d: &Daemon, expected: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    loop {
        let s = d.show();
        let rx: u64 = s["ports"].as_array().expect("ports").iter().map(|p| p["rx_packets"].as_u64().unwrap_or(0)).sum();
        let tx: u64 = s["ports"].as_array().expect("ports").iter().map(|p| p["tx_packets"].as_u64().unwrap_or(0)).sum();
        if rx == expected && last == Some(tx) {
            return s;
        }
        assert!(rx <= expected, "received more than was sent: {rx} > {expected}");
        assert!(Instant::now() < deadline, "only {rx} of {expected} packets arrived:\n{s:#}\n{}", d.log_text());
        last = (rx == expected).then_some(tx);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn pcap_in_pcap_out_with_priorities_wildcards_vlan_mac_and_drop() {
    let dir = TempDir::new("fwd");
    let rules = [
        "priority=100,in_port=vf0,ip,nw_dst=10.2.0.0/16 actions=output:uplink0",
        "priority=200,in_port=vf0,udp,tp_dst=53 actions=mod_vlan_vid:100,output:uplink0",
        "priority=300,in_port=vf0,ip,nw_dst=10.2.9.0/24 actions=drop",
        "priority=100,in_port=uplink0,dl_vlan=200 actions=strip_vlan,output:vf1",
        "priority=100,in_port=uplink0,dl_dst=02:00:00:00:00:10 actions=mod_dl_src:02:aa:00:00:00:01,output:vf0",
        "priority=100,in_port=vf1 actions=output:uplink0,output:vf0",
    ];
    let ports = format!(
        "{}{}{}",
        pcap_port(&dir, "vf0", "representor"),
        pcap_port(&dir, "vf1", "representor"),
        pcap_port(&dir, "uplink0", "uplink")
    );
    let (vm0, vm1, gw) = (mac(0x10), mac(0x11), mac(0x01));
    let mut in_vf0 = Vec::new();
    let mut in_up = Vec::new();
    let mut in_vf1 = Vec::new();
    let (mut to_up, mut to_vf0, mut to_vf1) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rule_drops, mut no_rule) = (0u64, 0u64);
    for s in 0..40u16 {
        let host = (s % 7) as u8 + 1;
        // a) plain forward by prefix
        let a = udp(gw, vm0, None, [10, 0, 0, 1], [10, 2, 1, host], 5001, s);
        to_up.push(a.clone());
        in_vf0.push(a);
        // b) DNS: higher priority, VLAN 100 pushed
        let b = udp(gw, vm0, None, [10, 0, 0, 1], [10, 2, 1, host], 53, s);
        to_up.push(push_vlan(&b, 100));
        in_vf0.push(b);
        // c) DNS into the dropped subnet: the highest priority wins
        in_vf0.push(udp(gw, vm0, None, [10, 0, 0, 1], [10, 2, 9, host], 53, s));
        rule_drops += 1;
        // d) nothing matches
        in_vf0.push(udp(gw, vm0, None, [10, 0, 0, 1], [10, 3, 0, host], 5001, s));
        no_rule += 1;
        // e) VLAN 200 from the wire: popped, to vf1
        let e = udp(vm1, gw, Some(200), [10, 9, 0, 1], [10, 1, 0, 1], 7, s);
        to_vf1.push(strip_vlan(&e));
        in_up.push(e);
        // f) to VM0's MAC: source MAC rewritten
        let f = udp(vm0, gw, None, [10, 9, 0, 1], [10, 0, 0, 1], 7, s);
        let mut fo = f.clone();
        fo[6..12].copy_from_slice(&[2, 0xaa, 0, 0, 0, 1]);
        to_vf0.push(fo);
        in_up.push(f);
        // g) unknown MAC from the wire
        in_up.push(udp(mac(0x55), gw, None, [10, 9, 0, 1], [10, 0, 0, 9], 7, s));
        no_rule += 1;
        // h) from vf1: copied to the uplink and to vf0
        let h = udp(gw, vm1, None, [10, 1, 0, 1], [10, 2, 0, host], 9, s);
        to_up.push(h.clone());
        to_vf0.push(h.clone());
        in_vf1.push(h);
    }
    write_pcap(&dir.path("in_vf0.pcap"), &in_vf0);
    write_pcap(&dir.path("in_vf1.pcap"), &in_vf1);
    write_pcap(&dir.path("in_uplink0.pcap"), &in_up);
    let total = (in_vf0.len() + in_vf1.len() + in_up.len()) as u64;

    let d = Daemon::start(&dir.0, &base_config(&dir, &rules, &ports));
    let s = wait_all_received(&d, total);
    assert_eq!(port(&s, "vf0")["rx_packets"], in_vf0.len() as u64);
    // Receive drops are shown apart: ring full and no mbuf (none here).
    assert_eq!((&port(&s, "vf0")["rx_missed"], &port(&s, "vf0")["rx_no_mbuf"]), (&Value::from(0), &Value::from(0)));
    assert_eq!(port(&s, "uplink0")["rx_packets"], in_up.len() as u64);
    assert_eq!(port(&s, "uplink0")["tx_packets"], to_up.len() as u64);
    assert_eq!(port(&s, "vf0")["tx_packets"], to_vf0.len() as u64);
    assert_eq!(port(&s, "vf1")["tx_packets"], to_vf1.len() as u64);
    assert_eq!(s["drops"]["rule_drop"], rule_drops);
    assert_eq!(s["drops"]["no_rule"], no_rule);
    let lookups = s["emc_hits"].as_u64().unwrap_or(0)
        + s["megaflow_hits"].as_u64().unwrap_or(0)
        + s["upcalls"].as_u64().unwrap_or(0);
    assert_eq!(lookups, total, "every packet was looked up exactly once");

    // Megaflows: few (wildcards), each with the fields its rules consulted.
    let flows = d.ctl_json(&["dump-flows"]).expect("dump-flows");
    let flows = flows.as_array().expect("array");
    assert!(!flows.is_empty() && flows.len() < 20, "megaflows cover many packets: {flows:#?}");
    let dns = flows
        .iter()
        .find(|f| f["actions"].as_str().is_some_and(|a| a.contains("mod_vlan_vid:100")))
        .unwrap_or_else(|| panic!("a DNS megaflow: {flows:#?}"));
    let m = dns["match"].as_str().expect("match");
    assert!(m.contains("in_port=vf0") && m.contains("tp_dst=0x35"), "{m}");
    let packets: u64 = flows.iter().map(|f| f["packets"].as_u64().unwrap_or(0)).sum();
    assert_eq!(packets, total, "flow counters add up to the packets");
    let text = d.ctl(&["dump-flows"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("actions=strip_vlan,output:vf1"));

    d.stop();
    assert_eq!(sorted(read_pcap(&dir.path("out_uplink0.pcap"))), sorted(to_up), "uplink0 output");
    assert_eq!(sorted(read_pcap(&dir.path("out_vf0.pcap"))), sorted(to_vf0), "vf0 output");
    assert_eq!(read_pcap(&dir.path("out_vf1.pcap")), to_vf1, "vf1 output, in order");
}

#[test]
fn malformed_packets_are_dropped_and_counted_by_reason() {
    let dir = TempDir::new("malformed");
    let rules = ["priority=1,in_port=vf0 actions=output:uplink0"];
    let ports = format!("{}{}", pcap_port(&dir, "vf0", "representor"), pcap_port(&dir, "uplink0", "uplink"));
    let mut input = Vec::new();
    let mut good = Vec::new();
    let mut bad_ihl = 0;
    let mut truncated = 0;
    let mut runts = 0;
    let mut beyond = 0;
    for s in 0..50u16 {
        let ok = udp(mac(1), mac(0x10), None, [10, 0, 0, 1], [10, 2, 0, 1], 80, s);
        good.push(ok.clone());
        input.push(ok.clone());
        match s % 4 {
            0 => {
                let mut b = ok.clone();
                b[14] = 0x43; // IHL 3
                input.push(b);
                bad_ihl += 1;
            }
            1 => {
                input.push(ok[..30].to_vec());
                truncated += 1;
            }
            2 => {
                input.push(ok[..9].to_vec());
                runts += 1;
            }
            _ => {
                let mut b = ok.clone();
                b[16..18].copy_from_slice(&1400u16.to_be_bytes());
                input.push(b);
                beyond += 1;
            }
        }
    }
    write_pcap(&dir.path("in_vf0.pcap"), &input);
    write_pcap(&dir.path("in_uplink0.pcap"), &[]);
    let d = Daemon::start(&dir.0, &base_config(&dir, &rules, &ports));
    let s = wait_all_received(&d, input.len() as u64);
    assert_eq!(s["parse_errors"]["bad_ipv4_header_length"], bad_ihl);
    assert_eq!(s["parse_errors"]["truncated_ipv4"], truncated);
    assert_eq!(s["parse_errors"]["truncated_ethernet"], runts);
    assert_eq!(s["parse_errors"]["ipv4_total_length_beyond_frame"], beyond);
    assert_eq!(s["drops"]["parse_error"], bad_ihl + truncated + runts + beyond);
    assert_eq!(port(&s, "uplink0")["tx_packets"], good.len() as u64);
    let show = String::from_utf8_lossy(&d.ctl(&["show"]).stdout).into_owned();
    assert!(show.contains("parse errors:") && show.contains("truncated_ipv4="), "{show}");
    d.stop();
    assert_eq!(read_pcap(&dir.path("out_uplink0.pcap")), good, "every good packet, in order");
}

fn tx_of(d: &Daemon, name: &str) -> u64 {
    port(&d.show(), name)["tx_packets"].as_u64().unwrap_or(0)
}

#[test]
fn rule_changes_apply_to_cached_flows_and_bad_requests_get_errors() {
    let dir = TempDir::new("rules");
    let metrics = free_port();
    let ports = "[[port]]\nname = \"vf0\"\nrole = \"representor\"\n[port.generate]\nflows = 100\n\n\
                 [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null_a,no-rx=1\"\n\n\
                 [[port]]\nname = \"uplink1\"\nrole = \"uplink\"\ndevargs = \"net_null_b,no-rx=1\"\n";
    let cfg = base_config(&dir, &["priority=10,in_port=vf0,ip actions=output:uplink0"], ports)
        .replace("listen = \"off\"", &format!("listen = \"127.0.0.1:{metrics}\""));
    let d = Daemon::start(&dir.0, &cfg);
    // Waits for `port` to send `n` more packets; returns its count then.
    let grows = |port: &str, n: u64| {
        let from = tx_of(&d, port);
        wait_for(Duration::from_secs(10), &format!("{port} to send {n} more packets"), || {
            let now = tx_of(&d, port);
            (now >= from + n).then_some(now)
        })
    };
    // After a change is acknowledged: once `to` has sent packets (so the
    // counters were published after the change), `from` sends no more
    // while `to` sends a thousand.
    let moved = |from: &str, to: &str| {
        grows(to, 1);
        let before = tx_of(&d, from);
        grows(to, 1000);
        assert_eq!(tx_of(&d, from), before, "{from} sent packets after the change moved them to {to}");
    };
    grows("uplink0", 1000);
    let flows = d.ctl_json(&["dump-flows"]).expect("flows");
    assert!(flows.as_array().is_some_and(|f| f.iter().any(|f| f["actions"] == "output:uplink0")), "{flows:#}");

    // A higher-priority rule takes over the cached flow as soon as it is acknowledged.
    let added = d.ctl_json(&["add-rule", "priority=20,in_port=vf0,udp actions=output:uplink1"]).expect("add-rule");
    assert!(added["flows_removed"].as_u64().unwrap_or(0) >= 1, "the cached flow was revalidated out: {added}");
    assert_eq!(added["flows_kept"], 0, "every vf0 flow is UDP: none may stay on uplink0: {added}");
    moved("uplink0", "uplink1");
    // A rule that changes no decision keeps every flow (UDP flows already
    // match on the protocol a TCP rule consults).
    let kept = d.ctl_json(&["add-rule", "priority=25,in_port=vf0,tcp actions=drop"]).expect("add-rule");
    assert_eq!(kept["flows_removed"], 0, "{kept}");
    assert!(kept["flows_kept"].as_u64().unwrap_or(0) >= 1, "the UDP flows stay: {kept}");
    grows("uplink1", 1000);
    let rules = d.ctl_json(&["dump-rules"]).expect("rules");
    assert_eq!(rules.as_array().map(Vec::len), Some(3));
    let new_id = added["id"].as_u64().expect("id").to_string();

    // Deleting it brings the old path back.
    let deleted = d.ctl_json(&["del-rule", &new_id]).expect("del-rule");
    assert_eq!(deleted["deleted"], 1);
    moved("uplink1", "uplink0");
    // Deletion by text (match + priority): nothing forwards, no_rule counts.
    d.ctl_json(&["del-rule", "priority=10,in_port=vf0,ip"]).expect("del by text");
    let no_rule = |d: &Daemon| d.show()["drops"]["no_rule"].as_u64().unwrap_or(0);
    let first = wait_for(Duration::from_secs(10), "no_rule drops", || Some(no_rule(&d)).filter(|n| *n > 0));
    let u0 = tx_of(&d, "uplink0");
    wait_for(Duration::from_secs(10), "a thousand more no_rule drops", || (no_rule(&d) >= first + 1000).then_some(()));
    assert_eq!(tx_of(&d, "uplink0"), u0, "no rule left: nothing forwarded");

    // Bad requests get an error and the daemon keeps running.
    let bad = d.ctl(&["add-rule", "in_port=nowhere actions=drop"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no such port"), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(!d.ctl(&["del-rule", "999"]).status.success());
    let mut raw = std::os::unix::net::UnixStream::connect(&d.socket).expect("connect");
    raw.write_all(b"{not json\n").expect("write");
    let mut reply = String::new();
    raw.read_to_string(&mut reply).expect("reply");
    assert!(reply.contains("\"ok\":false") && reply.contains("bad request"), "{reply}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&d.socket).expect("socket").permissions());
    assert_eq!(mode & 0o777, 0o600, "control socket is private");

    // reload re-reads the file's rules (the one added with vswitchctl
    // stays); a port change is refused.
    let cfg_path = dir.path("vswitchd.toml");
    let reloaded = cfg.replace(
        "priority=10,in_port=vf0,ip actions=output:uplink0",
        "priority=30,in_port=vf0,ip actions=output:uplink1\", \"priority=5 actions=drop",
    );
    std::fs::write(&cfg_path, &reloaded).expect("rewrite config");
    let r = d.ctl_json(&["reload"]).expect("reload");
    assert_eq!(r["rules"], 2, "{r}");
    let rules = d.ctl_json(&["dump-rules"]).expect("rules");
    let texts: Vec<(&str, &str)> = rules
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| Some((r["text"].as_str()?, r["origin"].as_str()?)))
        .collect();
    assert_eq!(
        texts,
        [
            ("priority=30,in_port=vf0,ip actions=output:uplink1", "config"),
            ("priority=25,in_port=vf0,tcp actions=drop", "control"),
            ("priority=5 actions=drop", "config")
        ]
    );
    grows("uplink1", 1000);
    std::fs::write(&cfg_path, reloaded.replace("net_null_b", "net_null_c")).expect("rewrite config");
    let refused = d.ctl(&["reload"]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("need a restart"));

    // Prometheus metrics on the configured address (published every stats interval).
    let body = wait_for(Duration::from_secs(10), "metrics with drops", || {
        Some(common::metrics_page(metrics)).filter(|b| b.contains("vswitch_drops_total{reason=\"no_rule\"}"))
    });
    assert!(body.contains("vswitch_port_rx_packets_total{port=\"vf0\"}"), "{body}");
    assert!(d.show()["uptime_s"].as_f64().unwrap_or(0.0) > 0.0, "still running");
    d.stop();
}

/// Reloading a file that did not change applies nothing and refuses
/// nothing, whether it pins the PMD to a core or not (the check used to run
/// on the control thread the EAL pinned to one core, so any core but 0 was
/// "missing", and the default core differed).
#[test]
fn reload_of_an_unchanged_file_changes_nothing_with_or_without_pmd_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for pinned in [Some(cores - 1), None] {
        let dir = TempDir::new("reload-cores");
        let rules = ["priority=1,in_port=vf0 actions=output:uplink0"];
        let ports = format!("{}{}", pcap_port(&dir, "vf0", "representor"), pcap_port(&dir, "uplink0", "uplink"));
        write_pcap(&dir.path("in_vf0.pcap"), &[]);
        write_pcap(&dir.path("in_uplink0.pcap"), &[]);
        let mut cfg = base_config(&dir, &rules, &ports);
        if let Some(core) = pinned {
            cfg = cfg.replace("idle_timeout_ms = 60000\n", &format!("idle_timeout_ms = 60000\npmd_cores = [{core}]\n"));
        }
        let d = Daemon::start(&dir.0, &cfg);
        let r = d.ctl_json(&["reload"]).unwrap_or_else(|e| panic!("reload with pmd_cores {pinned:?}: {e}"));
        assert_eq!(r["not_applied"], serde_json::json!([]), "pmd_cores {pinned:?}: {r}");
        assert_eq!(r["rules"], 1, "{r}");
        d.stop();
    }
}

#[test]
fn bad_config_exits_nonzero_naming_line_and_field() {
    let dir = TempDir::new("badcfg");
    let cfg = dir.path("bad.toml");
    std::fs::write(&cfg, "[[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_null0\"\nmtu = 70000\n")
        .expect("write");
    let out = Command::new(VSWITCHD).arg(&cfg).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:5: port.mtu:", cfg.display())), "{err}");
    assert!(err.contains("expected 68..=9600"), "{err}");

    std::fs::write(&cfg, "rules = [\"in_port=vf9 actions=drop\"]\n[[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_null0\"\n").expect("write");
    let out = Command::new(VSWITCHD).arg(&cfg).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":1: rules:") && err.contains("no such port"), "{err}");

    let out = Command::new(VSWITCHD).arg(dir.path("missing.toml")).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    // A pool too small for the ports (and a pcap replayed from mbufs) is
    // refused by --check too, with the need.
    let frames: Vec<Vec<u8>> = (0..5000u32).map(|i| common::frame(i, 60)).collect();
    write_pcap(&dir.path("in.pcap"), &frames);
    std::fs::write(
        &cfg,
        format!(
            "[datapath]\nmbufs = 8192\n[[port]]\nname = \"vf0\"\nrole = \"representor\"\n\
             devargs = \"net_pcap0,rx_pcap={},infinite_rx=1\"\n",
            dir.path("in.pcap").display()
        ),
    )
    .expect("write");
    let out = Command::new(VSWITCHD).arg(&cfg).arg("--check").output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2: datapath.mbufs: 8192 is too few: need at least"), "{err}");
    assert!(err.contains("preloaded pcap packets 5000"), "{err}");
}

/// A transmit queue that does not take the packets: counted as tx_full and
/// as the port's tx_dropped. The net_ring port's ring is both its receive
/// and its transmit queue; what it receives goes back out of it
/// (`output:in_port`), so the ring stays full and vf0's packets find no room.
#[test]
fn a_full_transmit_queue_is_counted() {
    let dir = TempDir::new("txfull");
    let ports = "[[port]]\nname = \"vf0\"\nrole = \"representor\"\n[port.generate]\nflows = 10\n\n\
                 [[port]]\nname = \"ring0\"\nrole = \"representor\"\ndevargs = \"net_ring_txfull\"\n\n\
                 [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null_txf,no-rx=1\"\n";
    let rules = ["priority=10,in_port=vf0 actions=output:ring0", "priority=10,in_port=ring0 actions=output:in_port"];
    let d = Daemon::start(&dir.0, &base_config(&dir, &rules, ports));
    let s = wait_for(Duration::from_secs(10), "tx_full drops", || {
        let s = d.show();
        (s["drops"]["tx_full"].as_u64().unwrap_or(0) > 1000).then_some(s)
    });
    let ring = port(&s, "ring0");
    assert!(ring["tx_dropped"].as_u64().unwrap_or(0) > 0, "{ring}");
    assert!(ring["rx_packets"].as_u64().unwrap_or(0) > 0, "the ring loops back: {ring}");
    d.stop();
}
