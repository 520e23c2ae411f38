//! The OpenFlow channel driven by a client nobody here wrote: Open vSwitch's
//! `ovs-ofctl -O OpenFlow13` against vswitchd's `punix:` listener, with
//! traffic from a namespace (net_af_packet on a veth pair) to count.

mod common;

use common::daemon::{port, wait_for, Daemon};
use common::netns::{self, Veth};
use common::pcap::write as write_pcap;
use common::TempDir;
use std::process::Command;
use std::time::Duration;

/// Helper role `send`: `COUNT:PORT` UDP datagrams to 10.77.0.2:PORT.
fn sender() {
    let arg = std::env::var(netns::HELPER_ARG).expect("arg");
    let (count, dport) = arg.split_once(':').expect("COUNT:PORT");
    let s = std::net::UdpSocket::bind("10.77.0.1:0").expect("bind");
    for i in 0..count.parse::<u32>().expect("count") {
        s.send_to(&i.to_be_bytes(), format!("10.77.0.2:{dport}")).expect("send");
        std::thread::sleep(Duration::from_micros(200));
    }
    println!("RESULT sent");
}

fn send(ns: &str, count: u32, dport: u16) {
    netns::helper_result(netns::helper(
        ns,
        "ovs_ofctl_adds_modifies_deletes_and_counts_rules",
        "send",
        &format!("{count}:{dport}"),
    ));
}

/// `ovs-ofctl -O OpenFlow13 ARGS...` against `target`: (success, stdout + stderr).
fn ofctl(target: &str, args: &[&str]) -> (bool, String) {
    let mut c = Command::new("ovs-ofctl");
    c.args(["-O", "OpenFlow13"]);
    let (cmd, rest) = args.split_first().expect("a command");
    c.args(rest.iter().take_while(|a| a.starts_with("--")));
    c.arg(cmd).arg(target);
    c.args(rest.iter().skip_while(|a| a.starts_with("--")));
    let out = c.output().unwrap_or_else(|e| panic!("ovs-ofctl (Debian's openvswitch-common) must be installed: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn must(target: &str, args: &[&str]) -> String {
    let (ok, text) = ofctl(target, args);
    assert!(ok, "ovs-ofctl {args:?} failed:\n{text}");
    text
}

/// `n_packets` of the dump-flows line that contains `needle`.
fn packets(dump: &str, needle: &str) -> u64 {
    let line = dump.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no flow with {needle:?}:\n{dump}"));
    let n = line.split("n_packets=").nth(1).and_then(|r| r.split(',').next()).expect("n_packets");
    n.parse().expect("a number")
}

#[test]
fn ovs_ofctl_adds_modifies_deletes_and_counts_rules() {
    if std::env::var(netns::HELPER_ROLE).is_ok() {
        return sender();
    }
    let veth = Veth::build("vsof");
    let dir = TempDir::new("openflow");
    write_pcap(&dir.path("empty.pcap"), &[]);
    let sock = dir.path("of.sock");
    let config = format!(
        "rules = [\"priority=0 actions=drop\"]\n\
         [eal]\nargs = [\"--no-huge\", \"-m\", \"512\", \"--no-pci\", \"--no-telemetry\", \"--log-level=lib.eal:warning\"]\n\n\
         [control]\nsocket = \"unused\"\n\n[metrics]\nlisten = \"off\"\n\n\
         [openflow]\nlisten = [\"punix:{}\"]\n\n\
         [[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_af_packet_of,iface=va\"\n\n\
         [[port]]\nname = \"out0\"\nrole = \"uplink\"\ndevargs = \"net_pcap_ofout,rx_pcap={},tx_pcap={}\"\n",
        sock.display(),
        dir.path("empty.pcap").display(),
        dir.path("out.pcap").display()
    );
    let d = Daemon::start_in(Some(&veth.ns), &dir.0, &config, &[]);
    let t = format!("unix:{}", sock.display());
    let t = t.as_str();

    // The switch as ovs-ofctl sees it: its ports by name, one table.
    let show = must(t, &["show"]);
    assert!(show.contains("n_tables:1") && show.contains("1(vf0)") && show.contains("2(out0)"), "{show}");
    let desc = must(t, &["dump-ports-desc"]);
    assert!(desc.contains("1(vf0)") && desc.contains("LIVE"), "{desc}");

    // add-flows from a file (ports by name), add-flow one more.
    let flows = dir.path("flows.txt");
    std::fs::write(
        &flows,
        "priority=100,in_port=vf0,udp,tp_dst=5000,actions=output:out0\n\
         cookie=0x10,priority=90,in_port=vf0,udp,actions=drop\n",
    )
    .expect("flows file");
    must(t, &["add-flows", flows.to_str().expect("path")]);
    must(t, &["add-flow", "priority=50,in_port=vf0,ip,nw_dst=10.77.0.0/24,actions=output:out0"]);
    let rules = d.ctl_json(&["dump-rules"]).expect("dump-rules");
    let rules = rules.as_array().expect("rules");
    assert_eq!(rules.len(), 4, "{rules:?}");
    assert!(
        rules.iter().any(|r| r["origin"] == "openflow" && r["cookie"] == "0x10" && r["priority"] == 90),
        "{rules:?}"
    );
    assert!(rules.iter().any(|r| r["origin"] == "config"), "the file's rule stays: {rules:?}");

    // Traffic: 100 datagrams to port 5000 leave by out0, 50 to 6000 are
    // dropped by the cookie-0x10 rule.
    send(&veth.ns, 100, 5000);
    send(&veth.ns, 50, 6000);
    wait_for(Duration::from_secs(10), "100 datagrams out of out0", || {
        (port(&d.show(), "out0")["tx_packets"].as_u64() == Some(100)).then_some(())
    });
    let dump = must(t, &["dump-flows"]);
    assert_eq!(packets(&dump, "priority=100"), 100, "{dump}");
    assert_eq!(packets(&dump, "priority=90"), 50, "{dump}");
    assert!(dump.contains("cookie=0x10"), "{dump}");
    let agg = must(t, &["dump-aggregate", "in_port=vf0"]);
    assert!(agg.contains("packet_count=150") && agg.contains("flow_count=3"), "{agg}");

    // mod-flows (not strict: the rules at least as specific as the match)
    // changes rule 100's actions and keeps its counts; its cached flow is
    // revalidated, so the next 20 datagrams are dropped.
    must(t, &["mod-flows", "in_port=vf0,udp,tp_dst=5000,actions=drop"]);
    send(&veth.ns, 20, 5000);
    wait_for(Duration::from_secs(10), "120 datagrams on rule 100", || {
        let dump = must(t, &["dump-flows"]);
        (packets(&dump, "priority=100") == 120).then_some(())
    });
    let dump = must(t, &["dump-flows"]);
    assert!(dump.contains("priority=100,udp,in_port=1,tp_dst=5000 actions=drop"), "{dump}");
    assert_eq!(port(&d.show(), "out0")["tx_packets"].as_u64(), Some(100), "nothing more left by out0");
    assert_eq!(packets(&dump, "priority=90"), 50, "the other rule untouched: {dump}");

    // Statistics by port and table.
    let ports = must(t, &["dump-ports", "1"]);
    assert!(ports.contains("rx pkts=170"), "{ports}");
    let tables = must(t, &["dump-tables"]);
    assert!(tables.contains("active=4"), "{tables}");

    // del-flows --strict removes one rule; del-flows by cookie another; a
    // loose del-flows the rest of vf0's, not the file's catch-all.
    must(t, &["del-flows", "--strict", "priority=90,in_port=vf0,udp"]);
    assert!(!must(t, &["dump-flows"]).contains("priority=90"));
    must(t, &["del-flows", "in_port=vf0"]);
    let left = d.ctl_json(&["dump-rules"]).expect("dump-rules");
    assert_eq!(left.as_array().map(Vec::len), Some(1), "only the file's rule: {left}");

    // Refusals carry the spec's codes, and the session stays usable.
    let (ok, text) = ofctl(t, &["add-flow", "table=3,actions=drop"]);
    assert!(!ok && text.contains("OFPFMFC_BAD_TABLE_ID"), "{text}");
    let (ok, text) = ofctl(t, &["add-flow", "metadata=1,actions=drop"]);
    assert!(!ok && text.contains("OFPBMC_BAD_FIELD"), "{text}");
    let (ok, text) = ofctl(t, &["add-flow", "in_port=vf0,actions=group:1"]);
    assert!(!ok && text.contains("OFPBAC_BAD_TYPE"), "{text}");
    let (ok, text) = ofctl(t, &["add-flow", "tcp,actions=set_field:10.0.0.1->ip_dst,output:out0"]);
    assert!(!ok && text.contains("OFPBAC_BAD_SET_TYPE"), "{text}");
    // An OpenFlow 1.0-only client is told the versions do not meet.
    let out = Command::new("ovs-ofctl").args(["-O", "OpenFlow10", "show", t]).output().expect("ovs-ofctl");
    assert!(!out.status.success(), "OpenFlow 1.0 must be refused");
    must(t, &["dump-flows"]);
    let log = d.stop();
    assert!(log.contains("openflow hello failed"), "{log}");
}
