//! The underlay from the kernel (`[underlay] routes = "kernel"`): vswitchd
//! runs inside a network namespace whose veth ends are its uplinks'
//! `kernel_ifname`s, and follows that namespace's routes, neighbours and
//! links over netlink. The remote VTEP is the Linux kernel's vxlan device in
//! another namespace, behind a gateway, so only a kernel route reaches it.
//!
//! ```text
//!  netns V        netns H (vswitchd)                 netns R
//!  vm0 ==veth== vmh [vm] -> vxlan0 (remote 10.99.0.2)
//!                   up0 [uplink0] 198.18.0.1 ==veth== rem0 198.18.0.2, .3
//!                   up1 [uplink1] 198.18.1.1 ==veth== rem1 198.18.1.2
//!                                                     lo 10.99.0.2 (VTEP)
//!                                                     vx100 198.19.0.2/24
//! ```
//! Needs root (namespaces, veth, af_packet); in CI it runs and fails, never
//! skips, when it cannot. The FRR test needs Debian's `frr` package.

mod common;

use common::daemon::{wait_for, Daemon};
use common::netns::{self, helper_result, in_ns, must, must_ns, ping, run};
use common::TempDir;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The three namespaces; removed on drop (with their veths).
struct Topology {
    host: String,
    remote: String,
    vm: String,
}

impl Topology {
    fn build(tag: &str) -> Self {
        let id = std::process::id() % 100_000;
        let t = Self {
            host: format!("vswk-h{tag}-{id}"),
            remote: format!("vswk-r{tag}-{id}"),
            vm: format!("vswk-v{tag}-{id}"),
        };
        let (h, r, v) = (t.host.as_str(), t.remote.as_str(), t.vm.as_str());
        for ns in [h, r, v] {
            must("ip", &["netns", "add", ns]);
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        must("ip", &["-n", h, "link", "add", "up0", "type", "veth", "peer", "name", "rem0", "netns", r]);
        must("ip", &["-n", h, "link", "add", "up1", "type", "veth", "peer", "name", "rem1", "netns", r]);
        must("ip", &["-n", h, "link", "add", "vmh", "type", "veth", "peer", "name", "vm0", "netns", v]);
        // No IPv6 chatter on the switch's ports; no checksum offloads (af_packet
        // would pass unfinished checksums on).
        must_ns(h, "sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        // A multi-homed host: ARP answers and sender addresses per interface
        // (the kernel would otherwise answer for uplink0's address on up1).
        must_ns(h, "sysctl", &["-qw", "net.ipv4.conf.all.arp_ignore=1"]);
        must_ns(h, "sysctl", &["-qw", "net.ipv4.conf.all.arp_announce=2"]);
        must_ns(v, "sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        for (ns, dev) in [(h, "up0"), (h, "up1"), (h, "vmh"), (r, "rem0"), (r, "rem1"), (v, "vm0")] {
            must_ns(ns, "ethtool", &["-K", dev, "tx", "off", "tso", "off", "gso", "off"]);
        }
        // The host's kernel holds the uplinks' addresses (as the PF netdev of
        // a bifurcated NIC does): its routes need on-link gateways, FRR a
        // session address.
        must("ip", &["-n", h, "addr", "add", "198.18.0.1/24", "dev", "up0"]);
        must("ip", &["-n", h, "addr", "add", "198.18.1.1/24", "dev", "up1"]);
        must("ip", &["-n", r, "addr", "add", "198.18.0.2/24", "dev", "rem0"]);
        must("ip", &["-n", r, "addr", "add", "198.18.0.3/24", "dev", "rem0"]);
        must("ip", &["-n", r, "addr", "add", "198.18.1.2/24", "dev", "rem1"]);
        must("ip", &["-n", r, "addr", "add", "10.99.0.2/32", "dev", "lo"]);
        must_ns(r, "sysctl", &["-qw", "net.ipv4.conf.all.rp_filter=0"]);
        must_ns(r, "sysctl", &["-qw", "net.ipv4.conf.default.rp_filter=0"]);
        must_ns(r, "sysctl", &["-qw", "net.ipv4.conf.all.arp_ignore=1"]);
        must(
            "ip",
            &[
                "-n",
                r,
                "link",
                "add",
                "vx100",
                "type",
                "vxlan",
                "id",
                "100",
                "local",
                "10.99.0.2",
                "remote",
                "198.18.0.1",
                "dstport",
                "4789",
                // It answers through its configured remote (198.18.0.1 on rem0)
                // whichever uplink we send from.
                "nolearning",
            ],
        );
        must_ns(r, "ethtool", &["-K", "vx100", "tx", "off", "tso", "off", "gso", "off"]);
        must("ip", &["-n", r, "addr", "add", "198.19.0.2/24", "dev", "vx100"]);
        // The remote reaches our uplink addresses through either wire.
        must("ip", &["-n", v, "addr", "add", "198.19.0.1/24", "dev", "vm0"]);
        for (ns, dev) in [(h, "up0"), (h, "up1"), (h, "vmh"), (r, "rem0"), (r, "rem1"), (r, "vx100"), (v, "vm0")] {
            must("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.host, &self.remote, &self.vm] {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

fn config(mode: &str, extra_underlay: &str) -> String {
    format!(
        r#"rules = [
  "priority=10,in_port=vm actions=output:vxlan0",
  "priority=10,in_port=vxlan0 actions=output:vm",
]
[eal]
args = ["--no-huge", "-m", "512", "--no-pci", "--no-telemetry", "--log-level=lib.eal:warning"]
[metrics]
listen = "off"
[underlay]
routes = "{mode}"
{extra_underlay}
[[port]]
name = "vm"
role = "representor"
devargs = "net_af_packet_vm,iface=vmh,framecnt=4096"
[[port]]
name = "uplink0"
role = "uplink"
devargs = "net_af_packet_u0,iface=up0,framecnt=4096"
ip = "198.18.0.1/24"
kernel_ifname = "up0"
[[port]]
name = "uplink1"
role = "uplink"
devargs = "net_af_packet_u1,iface=up1,framecnt=4096"
ip = "198.18.1.1/24"
kernel_ifname = "up1"
[[tunnel]]
name = "vxlan0"
remote_ip = "10.99.0.2"
vni = 100
"#
    )
}

fn start(t: &Topology, dir: &TempDir, mode: &str, extra_underlay: &str) -> Daemon {
    Daemon::start_in(Some(&t.host), &dir.0, &config(mode, extra_underlay), &[])
}

fn ip_h(t: &Topology, args: &[&str]) {
    let mut all = vec!["-n", t.host.as_str()];
    all.extend_from_slice(args);
    must("ip", &all);
}

fn routes(d: &Daemon) -> Value {
    d.ctl_json(&["route-show"]).unwrap_or_else(|e| panic!("route-show: {e}\n{}", d.log_text()))
}

/// The kernel routes route-show holds, as "prefix via dev metric".
fn kernel_routes(d: &Daemon) -> BTreeSet<String> {
    routes(d)["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .filter(|r| r["source"] == "kernel")
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["prefix"].as_str().unwrap_or(""),
                r["via"].as_str().unwrap_or("-"),
                r["port"].as_str().unwrap_or(""),
                r["metric"]
            )
        })
        .collect()
}

fn has_kernel_route(d: &Daemon, line: &str) -> bool {
    kernel_routes(d).contains(line)
}

/// The encapsulation of the VM's tunnel flows (dump-flows).
fn encaps(d: &Daemon) -> Vec<String> {
    let flows = d.ctl_json(&["dump-flows"]).expect("dump-flows");
    flows.as_array().into_iter().flatten().filter_map(|f| f["encap"].as_str().map(str::to_owned)).collect()
}

/// Pings until one answer (ARP on both sides of the tunnel first).
fn ping_until_up(t: &Topology, d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ping(&t.vm, &["-c", "1", "-W", "1", "198.19.0.2"]).0 {
        assert!(
            Instant::now() < deadline,
            "no ping through the tunnel:\n{:#}\n{:#}\n{}",
            routes(d),
            d.ctl_json(&["show"]).unwrap_or_default(),
            d.log_text()
        );
    }
}

/// Polls route-show every 2 ms until `check` holds; the time it took.
fn time_until(d: &Daemon, what: &str, check: impl Fn(&Daemon) -> bool) -> Duration {
    let started = Instant::now();
    while !check(d) {
        assert!(started.elapsed() < Duration::from_secs(5), "route-show never showed {what}:\n{:#}", routes(d));
        std::thread::sleep(Duration::from_millis(2));
    }
    started.elapsed()
}

/// Test 1: `ip route add / replace / del` and `ip neigh replace` in the
/// daemon's namespace show in route-show / neigh-show at once, and the
/// running tunnel flow's next hop follows.
#[test]
fn kernel_route_and_neighbour_changes_reach_route_show_and_the_running_flow() {
    let t = Topology::build("a");
    let dir = TempDir::new("kunderlay-a");
    let d = start(&t, &dir, "kernel", "");
    let show = routes(&d);
    assert_eq!(show["mode"], "kernel");
    assert!(show["kernel"]["uplinks"].to_string().contains("up0"), "{show:#}");
    // The kernel's own connected routes come in at start.
    assert!(has_kernel_route(&d, "198.18.0.0/24 - uplink0 0"), "{:?}", kernel_routes(&d));

    let mut latencies = Vec::new();
    ip_h(&t, &["route", "add", "10.99.0.0/24", "via", "198.18.0.2", "dev", "up0"]);
    latencies.push(time_until(&d, "the added route", |d| has_kernel_route(d, "10.99.0.0/24 198.18.0.2 uplink0 0")));
    ping_until_up(&t, &d);
    let (ok, out) = ping(&t.vm, &["-c", "5", "-i", "0.1", "-W", "2", "198.19.0.2"]);
    assert!(ok && out.contains(" 0% packet loss"), "through the kernel route: {out}");
    assert!(encaps(&d).iter().any(|e| e.contains("via uplink0 next-hop 198.18.0.2")), "{:?}", encaps(&d));

    // Replace: the next hop moves to .3 (the remote answers ARP for it too).
    ip_h(&t, &["route", "replace", "10.99.0.0/24", "via", "198.18.0.3", "dev", "up0"]);
    latencies.push(time_until(&d, "the replaced route", |d| has_kernel_route(d, "10.99.0.0/24 198.18.0.3 uplink0 0")));
    ping_until_up(&t, &d);
    let e = encaps(&d);
    assert!(e.iter().any(|e| e.contains("next-hop 198.18.0.3")), "the flow's next hop followed: {e:?}");
    assert!(!e.iter().any(|e| e.contains("next-hop 198.18.0.2")), "{e:?}");

    // A kernel neighbour entry with a MAC nobody has: the flow's encapsulation
    // takes it at once (and the path breaks, as the kernel's would).
    ip_h(&t, &["neigh", "replace", "198.18.0.3", "lladdr", "02:de:ad:00:00:03", "dev", "up0", "nud", "permanent"]);
    let neigh_has = |d: &Daemon| {
        d.ctl_json(&["neigh-show"]).is_ok_and(|n| {
            n["neighbours"].as_array().is_some_and(|a| {
                a.iter().any(|n| n["ip"] == "198.18.0.3" && n["mac"] == "02:de:ad:00:00:03" && n["source"] == "kernel")
            })
        })
    };
    latencies.push(time_until(&d, "the kernel neighbour", neigh_has));
    let (ok, _) = ping(&t.vm, &["-c", "2", "-W", "1", "198.19.0.2"]);
    assert!(!ok, "a wrong kernel MAC for the next hop breaks the path");
    let e = encaps(&d);
    assert!(e.iter().any(|e| e.contains("next-hop 198.18.0.3 (02:de:ad:00:00:03)")), "{e:?}");
    // vswitchctl cannot delete what the kernel owns.
    let out = d.ctl(&["neigh-del", "198.18.0.3"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("ip neigh del"), "{out:?}");
    // An operator's entry hides the kernel's; deleting it brings the kernel's back.
    let source_of = |d: &Daemon| -> String {
        let n = d.ctl_json(&["neigh-show"]).expect("neigh-show");
        n["neighbours"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["ip"] == "198.18.0.3"))
            .map(|n| format!("{} {}", n["source"].as_str().unwrap_or(""), n["mac"].as_str().unwrap_or("")))
            .unwrap_or_default()
    };
    d.ctl_json(&["neigh-add", "198.18.0.3", "02:00:00:00:00:33", "uplink0"]).expect("neigh-add");
    assert_eq!(source_of(&d), "control 02:00:00:00:00:33");
    d.ctl_json(&["neigh-del", "198.18.0.3"]).expect("neigh-del of the operator's entry");
    assert_eq!(source_of(&d), "kernel 02:de:ad:00:00:03");
    ip_h(&t, &["neigh", "del", "198.18.0.3", "dev", "up0"]);
    latencies.push(time_until(&d, "the neighbour withdrawn", |d| !neigh_has(d)));
    ping_until_up(&t, &d);

    // Delete: no route, the flow cannot resolve (counted as no route).
    ip_h(&t, &["route", "del", "10.99.0.0/24"]);
    latencies.push(time_until(&d, "the route deleted", |d| !kernel_routes(d).iter().any(|r| r.starts_with("10.99."))));
    let before = d.drops("no_route");
    let (ok, _) = ping(&t.vm, &["-c", "2", "-W", "1", "198.19.0.2"]);
    assert!(!ok, "no route, no path");
    assert!(d.drops("no_route") > before, "counted as no_route: {:#}", d.show()["drops"]);
    let out = d.ctl(&["route-add", "10.99.0.0/24", "via", "198.18.0.2", "uplink0"]);
    assert!(!out.status.success(), "routes = kernel refuses route-add: {out:?}");

    latencies.sort();
    let median = latencies[latencies.len() / 2];
    println!("kernel change -> route-show/neigh-show (including one vswitchctl run per poll): {latencies:?}");
    assert!(median < Duration::from_millis(100), "median {median:?} of {latencies:?}");
    let c = &routes(&d)["kernel"]["counters"];
    assert_eq!(c["bad_messages"], 0, "{c}");
    d.stop();
}

/// Test 2: the remote VTEP behind a gateway, no `[[route]]` in the
/// configuration: traffic both ways through a route from the kernel only.
#[test]
fn the_tunnel_works_with_routes_from_the_kernel_only() {
    let t = Topology::build("b");
    let dir = TempDir::new("kunderlay-b");
    ip_h(&t, &["route", "add", "10.99.0.2/32", "via", "198.18.0.2", "dev", "up0", "proto", "static"]);
    let d = start(&t, &dir, "kernel", "");
    assert!(!std::fs::read_to_string(&d.config).expect("config").contains("[[route]]"));
    assert!(has_kernel_route(&d, "10.99.0.2/32 198.18.0.2 uplink0 0"), "present at start: {:?}", kernel_routes(&d));
    ping_until_up(&t, &d);
    let (ok, out) = ping(&t.vm, &["-c", "20", "-i", "0.05", "-W", "2", "198.19.0.2"]);
    assert!(ok && out.contains(" 0% packet loss"), "VM -> remote: {out}");
    let (ok, out) = ping(&t.remote, &["-c", "20", "-i", "0.05", "-W", "2", "198.19.0.1"]);
    assert!(ok && out.contains(" 0% packet loss"), "remote -> VM: {out}");
    let e = encaps(&d);
    assert!(
        e.iter().any(|e| e.starts_with("vxlan0 vni=100 198.18.0.1->10.99.0.2 via uplink0 next-hop 198.18.0.2")),
        "{e:?}"
    );
    let s = d.show();
    assert!(s["encapsulated"].as_u64().unwrap_or(0) >= 20 && s["decapsulated"].as_u64().unwrap_or(0) >= 20, "{s:#}");
    d.stop();
}

/// Offloaded flows follow a kernel route change: with the model e-switch
/// (policy all), the tunnel's flows are in hardware; the kernel route moves
/// to uplink1 and the offload manager replaces their rules make-before-break:
/// still in hardware, now leaving by uplink1.
#[test]
fn offloaded_flows_follow_a_kernel_route_change() {
    let t = Topology::build("f");
    let dir = TempDir::new("kunderlay-f");
    must("ip", &["-n", &t.vm, "link", "set", "vm0", "mtu", "1450"]);
    ip_h(&t, &["route", "add", "10.99.0.2/32", "via", "198.18.0.2", "dev", "up0"]);
    let config = config("kernel", "")
        .replace("name = \"vm\"\nrole = \"representor\"", "name = \"vm\"\nrole = \"representor\"\nmtu = 1450")
        + "\n[offload]\ndevice = \"model\"\npolicy = \"all\"\nquery_interval_ms = 100\n";
    let d = Daemon::start_in(Some(&t.host), &dir.0, &config, &[]);
    ping_until_up(&t, &d);
    let encap_states = |d: &Daemon| -> Vec<String> {
        let flows = d.ctl_json(&["dump-flows"]).expect("dump-flows");
        flows
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["actions"] == "output:vxlan0")
            .map(|f| format!("{} {}", f["offload"].as_str().unwrap_or(""), f["encap"].as_str().unwrap_or("")))
            .collect()
    };
    let (ok, out) = ping(&t.vm, &["-c", "20", "-i", "0.05", "-W", "2", "198.19.0.2"]);
    assert!(ok && out.contains(" 0% packet loss"), "{out}");
    let before = encap_states(&d);
    assert!(
        !before.is_empty() && before.iter().all(|s| s.starts_with("hw ") && s.contains("via uplink0")),
        "{before:?}"
    );
    let replaced = d.ctl_json(&["offload-show"]).expect("offload-show")["replacements"].as_u64().unwrap_or(0);
    let tx1 = port_tx(&d, "uplink1");
    // The host's kernel resolves the new next hop (a kernel neighbour), so
    // the move loses nothing: without it the first packet waits for ARP.
    let (ok, out) = ping(&t.host, &["-c", "1", "-W", "2", "198.18.1.2"]);
    assert!(ok, "{out}");

    ip_h(&t, &["route", "replace", "10.99.0.2/32", "via", "198.18.1.2", "dev", "up1"]);
    time_until(&d, "the moved route", |d| has_kernel_route(d, "10.99.0.2/32 198.18.1.2 uplink1 0"));
    let (ok, out) = ping(&t.vm, &["-c", "20", "-i", "0.05", "-W", "2", "198.19.0.2"]);
    assert!(ok && out.contains(" 0% packet loss"), "after the move: {out}");
    let after = encap_states(&d);
    assert!(!after.is_empty() && after.iter().all(|s| s.starts_with("hw ") && s.contains("via uplink1")), "{after:?}");
    let show = d.ctl_json(&["offload-show"]).expect("offload-show");
    assert!(show["replacements"].as_u64().unwrap_or(0) > replaced, "replaced in the device: {show:#}");
    // The model sends what its rules say: out of uplink1 now.
    assert!(port_tx(&d, "uplink1") >= tx1 + 20, "uplink1 carried the pings");
    d.stop();
}

/// A helper role in a namespace (this test binary, as [`STREAM_TEST`]).
fn helper(ns: &str, role: &str, arg: &str) -> Child {
    netns::helper(ns, STREAM_TEST, role, arg)
}

/// Datagrams per second of the stream, and its length.
const STREAM_PPS: u64 = 2000;
const STREAM_SECONDS: u64 = 6;

/// The test whose binary runs the helper roles.
const STREAM_TEST: &str = "the_route_moves_between_uplinks_on_replace_and_on_link_down";

/// Helper roles, in [`STREAM_TEST`] started again with the helper role set: a
/// steady UDP stream from the VM to the remote, sent and received counts.
fn helper_role(role: &str) {
    let arg = std::env::var(netns::HELPER_ARG).unwrap_or_default();
    match role {
        "udp-count" => {
            let sock = std::net::UdpSocket::bind(&arg).expect("bind");
            sock.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
            // Losses to count are the switch's, not a descheduled receiver's.
            netns::force_receive_buffer(&sock, 32 << 20);
            println!("READY");
            let mut got = 0u64;
            let mut buf = [0u8; 2048];
            // Until the sender has stopped for 3 s.
            while sock.recv(&mut buf).is_ok() {
                got += 1;
            }
            println!("RESULT {got}");
        }
        "udp-send" => {
            let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
            let start = Instant::now();
            let total = STREAM_PPS * STREAM_SECONDS;
            for seq in 0..total {
                let due = start + Duration::from_micros(seq * 1_000_000 / STREAM_PPS);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let _ = sock.send_to(&seq.to_be_bytes(), &arg);
            }
            println!("RESULT {total}");
        }
        other => panic!("unknown role {other}"),
    }
}

fn port_tx(d: &Daemon, name: &str) -> u64 {
    common::daemon::port(&d.show(), name)["tx_packets"].as_u64().unwrap_or(0)
}

/// Runs the stream while `change` moves the route; returns (sent,
/// received, uplink0 tx, uplink1 tx during the stream).
fn stream_across(t: &Topology, d: &Daemon, change: impl FnOnce()) -> (u64, u64, u64, u64) {
    let (tx0, tx1) = (port_tx(d, "uplink0"), port_tx(d, "uplink1"));
    let counter = helper(&t.remote, "udp-count", "198.19.0.2:7000");
    std::thread::sleep(Duration::from_millis(300));
    let sender = helper(&t.vm, "udp-send", "198.19.0.2:7000");
    std::thread::sleep(Duration::from_secs(STREAM_SECONDS / 2));
    change();
    let sent: u64 = helper_result(sender).parse().expect("sent");
    let received: u64 = helper_result(counter).parse().expect("received");
    (sent, received, port_tx(d, "uplink0") - tx0, port_tx(d, "uplink1") - tx1)
}

/// Test 3: two uplinks; the route to the remote VTEP moves from uplink0 to
/// uplink1 by `ip route replace`, then by uplink0's kernel link going down
/// (a backup route with a higher metric takes over). Traffic moves; the
/// datagrams lost during each switch are counted and bounded.
#[test]
fn the_route_moves_between_uplinks_on_replace_and_on_link_down() {
    if let Ok(role) = std::env::var(netns::HELPER_ROLE) {
        helper_role(&role);
        return;
    }
    let t = Topology::build("c");
    let dir = TempDir::new("kunderlay-c");
    ip_h(&t, &["route", "add", "10.99.0.2/32", "via", "198.18.0.2", "dev", "up0"]);
    let d = start(&t, &dir, "kernel", "");
    ping_until_up(&t, &d);
    // The remote side's kernel knows both wires' next hops already (its
    // answers to ARP), so only our side resolves anew.
    assert!(ping(&t.remote, &["-c", "1", "-W", "1", "198.18.1.1"]).0, "remote reaches uplink1's address");

    let (sent, got, tx0, tx1) = stream_across(&t, &d, || {
        ip_h(&t, &["route", "replace", "10.99.0.2/32", "via", "198.18.1.2", "dev", "up1"]);
    });
    let lost_replace = sent - got.min(sent);
    println!("route replace uplink0 -> uplink1: sent {sent}, received {got}, lost {lost_replace}; uplink0 tx {tx0}, uplink1 tx {tx1}");
    assert!(tx0 > sent / 4 && tx1 > sent / 4, "the stream used both uplinks: {tx0} then {tx1} of {sent}");
    let e = encaps(&d);
    assert!(e.iter().any(|e| e.contains("198.18.1.1->10.99.0.2 via uplink1 next-hop 198.18.1.2")), "{e:?}");

    // Back on uplink0 with a backup route through uplink1, then uplink0's
    // kernel link goes down: the kernel drops the route without a word
    // (IPv4), the follower sees the link and dumps again.
    ip_h(&t, &["route", "replace", "10.99.0.2/32", "via", "198.18.0.2", "dev", "up0", "metric", "10"]);
    ip_h(&t, &["route", "del", "10.99.0.2/32", "via", "198.18.1.2", "dev", "up1"]);
    ip_h(&t, &["route", "add", "10.99.0.2/32", "via", "198.18.1.2", "dev", "up1", "metric", "20"]);
    wait_for(Duration::from_secs(5), "both routes in route-show", || {
        let k = kernel_routes(&d);
        (k.contains("10.99.0.2/32 198.18.0.2 uplink0 10") && k.contains("10.99.0.2/32 198.18.1.2 uplink1 20"))
            .then_some(())
    });
    ping_until_up(&t, &d);
    assert!(encaps(&d).iter().any(|e| e.contains("via uplink0")), "{:?}", encaps(&d));
    let resyncs = routes(&d)["kernel"]["counters"]["resyncs"].as_u64().unwrap_or(0);
    let (sent, got, tx0, tx1) = stream_across(&t, &d, || ip_h(&t, &["link", "set", "up0", "down"]));
    let lost_down = sent - got.min(sent);
    println!("link down of up0: sent {sent}, received {got}, lost {lost_down}; uplink0 tx {tx0}, uplink1 tx {tx1}");
    let show = routes(&d);
    assert!(show["kernel"]["counters"]["resyncs"].as_u64().unwrap_or(0) > resyncs, "a link change dumps again");
    assert!(!kernel_routes(&d).iter().any(|r| r.ends_with("uplink0 10")), "{show:#}");
    assert!(tx1 > sent / 4, "the stream moved to uplink1: {tx1} of {sent}");
    let e = encaps(&d);
    assert!(e.iter().any(|e| e.contains("via uplink1")), "{e:?}");
    // The bound: each switch loses at most 0.25 s of the stream (we saw a
    // few datagrams: the ARP for the new next hop).
    let bound = STREAM_PPS / 4;
    assert!(lost_replace <= bound && lost_down <= bound, "lost {lost_replace} and {lost_down}, bound {bound}");
    let drops = d.show()["drops"].clone();
    println!("switch drops over the test: {drops}");
    d.stop();
}

/// Test 5: routes through non-uplink interfaces and other families are
/// counted and listed with why; a flood of 10k route changes into a small
/// netlink buffer overruns it, the follower dumps again and ends equal to
/// the kernel's table.
#[test]
fn foreign_routes_other_families_and_an_overrun_end_equal_to_the_kernel() {
    let t = Topology::build("d");
    let dir = TempDir::new("kunderlay-d");
    let d = start(&t, &dir, "both", "netlink_rcvbuf = 65536");
    let h = t.host.as_str();
    // An interface no uplink stands for (no dummy module here: a veth pair).
    ip_h(&t, &["link", "add", "x0", "type", "veth", "peer", "name", "x1"]);
    ip_h(&t, &["link", "set", "x0", "up"]);
    ip_h(&t, &["link", "set", "x1", "up"]);
    ip_h(&t, &["route", "add", "10.50.0.0/16", "dev", "x0"]);
    ip_h(&t, &["route", "add", "blackhole", "10.51.0.0/16"]);
    ip_h(&t, &["route", "add", "10.52.0.0/16", "via", "198.18.0.2", "dev", "up0", "table", "100"]);
    // An FDB entry: a neighbour message of family AF_BRIDGE.
    must_ns(h, "bridge", &["fdb", "add", "02:00:00:00:00:99", "dev", "x0", "self", "permanent"]);
    let show = wait_for(Duration::from_secs(5), "ignored routes listed", || {
        let s = routes(&d);
        let ignored = s["ignored"].to_string();
        (ignored.contains("x0 is not an uplink's kernel_ifname") && ignored.contains("a blackhole route")).then_some(s)
    });
    let c = &show["kernel"]["counters"];
    assert!(c["other_table"].as_u64().unwrap_or(0) >= 1, "table 100's route counted: {c}");
    assert_eq!(c["resyncs"], 0, "links of other interfaces (x0, x1) cause no dump: {c}");
    let unknown = wait_for(Duration::from_secs(5), "the FDB entry counted", || {
        let n = routes(&d)["kernel"]["counters"]["unknown_family"].as_u64().unwrap_or(0);
        (n >= 1).then_some(n)
    });
    assert!(!kernel_routes(&d).iter().any(|r| r.starts_with("10.5")), "none of them is used: {:?}", kernel_routes(&d));
    // IPv6 routes come the same way (IPv6 on for up0 only).
    must_ns(h, "sysctl", &["-qw", "net.ipv6.conf.up0.disable_ipv6=0"]);
    ip_h(&t, &["-6", "addr", "add", "2001:db8:18::1/64", "dev", "up0", "nodad"]);
    ip_h(&t, &["-6", "route", "add", "2001:db8:99::/48", "via", "2001:db8:18::2", "dev", "up0"]);
    wait_for(Duration::from_secs(5), "the IPv6 kernel route", || {
        has_kernel_route(&d, "2001:db8:99::/48 2001:db8:18::2 uplink0 1024").then_some(())
    });
    let text = String::from_utf8_lossy(&d.ctl(&["route-show"]).stdout).into_owned();
    assert!(text.contains("10.50.0.0/16 dev x0 metric 0: x0 is not an uplink's kernel_ifname"), "{text}");
    println!("{text}");

    // 10k routes in one batch into a 64 KiB buffer, then 10k deletions.
    let batch = dir.path("batch");
    let lines = |verb: &str| -> String {
        (0..10_000u32)
            .map(|i| {
                format!(
                    "route {verb} 10.{}.{}.{}/32 via 198.18.0.2 dev up0\n",
                    100 + i / 65_536,
                    (i / 256) % 256,
                    i % 256
                )
            })
            .collect()
    };
    for verb in ["add", "del"] {
        std::fs::write(&batch, lines(verb)).expect("batch");
        let before = routes(&d)["kernel"]["counters"].clone();
        // The daemon stopped while the kernel sends 10k notifications: a slow
        // consumer, for certain (running, it keeps up even with 64 KiB).
        must("kill", &["-STOP", &d.pid().to_string()]);
        let out = run("ip", &["-n", h, "-batch", batch.to_str().expect("path")]);
        must("kill", &["-CONT", &d.pid().to_string()]);
        assert!(out.status.success(), "ip -batch: {}", String::from_utf8_lossy(&out.stderr));
        let kernel = kernel_table(h);
        let ours = wait_for(Duration::from_secs(20), "route-show equal to the kernel's table", || {
            let ours: BTreeSet<String> = kernel_routes(&d).into_iter().filter(|r| !r.contains(':')).collect();
            (ours == kernel).then_some(ours)
        });
        let after = routes(&d)["kernel"]["counters"].clone();
        println!(
            "10k `ip route {verb}`: {} kernel routes in both; overruns {} -> {}, resyncs {} -> {}",
            ours.len(),
            before["overruns"],
            after["overruns"],
            before["resyncs"],
            after["resyncs"]
        );
        assert!(after["overruns"].as_u64() > before["overruns"].as_u64(), "the flood overran 64 KiB: {after}");
        assert!(after["resyncs"].as_u64() > before["resyncs"].as_u64(), "and a dump followed: {after}");
    }
    assert_eq!(routes(&d)["kernel"]["counters"]["bad_messages"], 0);
    assert!(unknown >= 1);
    d.stop();
}

/// The kernel's main-table unicast routes through up0/up1, in route-show's
/// "prefix via dev metric" form.
fn kernel_table(ns: &str) -> BTreeSet<String> {
    let out = in_ns(ns, "ip", &["-j", "-4", "route", "show", "table", "main"]);
    let mut set = BTreeSet::new();
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j route");
    for r in v.as_array().into_iter().flatten() {
        let dev = match r["dev"].as_str() {
            Some("up0") => "uplink0",
            Some("up1") => "uplink1",
            _ => continue,
        };
        if r["type"].as_str().is_some_and(|t| t != "unicast") {
            continue;
        }
        let dst = r["dst"].as_str().unwrap_or("");
        let prefix = if dst.contains('/') { dst.to_owned() } else { format!("{dst}/32") };
        let prefix = if dst == "default" { "0.0.0.0/0".to_owned() } else { prefix };
        set.insert(format!(
            "{prefix} {} {dev} {}",
            r["gateway"].as_str().unwrap_or("-"),
            r["metric"].as_u64().unwrap_or(0)
        ));
    }
    set
}

/// An FRR instance (zebra and bgpd) in a namespace; stopped on drop.
struct Frr {
    dir: std::path::PathBuf,
    children: Vec<Child>,
}

impl Frr {
    fn start(ns: &str, dir: std::path::PathBuf, conf: &str) -> Self {
        std::fs::create_dir_all(&dir).expect("frr dir");
        std::fs::write(dir.join("frr.conf"), conf).expect("frr.conf");
        // The daemons drop to the frr user (in the frrvty group vtysh needs).
        must("chown", &["-R", "frr:frr", dir.to_str().expect("path")]);
        let d = dir.to_str().expect("path").to_owned();
        let mut children = Vec::new();
        for daemon in ["zebra", "bgpd"] {
            let bin = format!("/usr/lib/frr/{daemon}");
            assert!(
                std::path::Path::new(&bin).exists(),
                "{bin} is missing: this test needs Debian's frr package (apt-get install frr)"
            );
            let child = Command::new("ip")
                .args(["netns", "exec", ns, &bin, "-u", "frr", "-g", "frr", "-A", "127.0.0.1", "-P", "0"])
                .args(["-i", &format!("{d}/{daemon}.pid"), "-z", &format!("{d}/zserv.api")])
                .args(["--vty_socket", &d, "-f", &format!("{d}/frr.conf"), "--log", &format!("file:{d}/{daemon}.log")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start FRR");
            children.push(child);
            if daemon == "zebra" {
                wait_for(Duration::from_secs(10), "zebra's socket", || dir.join("zserv.api").exists().then_some(()));
            }
        }
        Self { dir, children }
    }

    fn vtysh(&self, commands: &[&str]) {
        let mut args = vec!["--vty_socket", self.dir.to_str().expect("path")];
        for c in commands {
            args.extend(["-c", c]);
        }
        must("vtysh", &args);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bgpd.log")).unwrap_or_default()
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        }
        for c in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && !matches!(c.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn bgp_conf(asn: u32, id: &str, peer: &str, peer_as: u32, network: Option<&str>) -> String {
    let network = network
        .map(|n| format!(" address-family ipv4 unicast\n  network {n}\n exit-address-family\n"))
        .unwrap_or_default();
    format!(
        "frr defaults traditional\nhostname as{asn}\nrouter bgp {asn}\n bgp router-id {id}\n no bgp ebgp-requires-policy\n \
         no bgp network import-check\n timers bgp 1 3\n neighbor {peer} remote-as {peer_as}\n neighbor {peer} timers connect 1\n \
         neighbor {peer} advertisement-interval 0\n{network}"
    )
}

/// Test 4: FRR in the switch's namespace and in the remote's, with a BGP
/// session over uplink0's wire. The remote announces its VTEP's /32; zebra
/// installs it in the kernel, the follower takes it, the tunnel works;
/// withdrawing the announcement withdraws the route.
#[test]
fn a_bgp_route_from_frr_carries_the_tunnel_and_its_withdrawal_removes_it() {
    let t = Topology::build("e");
    let dir = TempDir::new("kunderlay-e");
    let d = start(&t, &dir, "kernel", "");
    let local = Frr::start(&t.host, dir.path("frr-local"), &bgp_conf(65001, "198.18.0.1", "198.18.0.2", 65002, None));
    let remote = Frr::start(
        &t.remote,
        dir.path("frr-remote"),
        &bgp_conf(65002, "198.18.0.2", "198.18.0.1", 65001, Some("10.99.0.2/32")),
    );
    let started = Instant::now();
    let route = "10.99.0.2/32 198.18.0.2 uplink0 20";
    let deadline = Instant::now() + Duration::from_secs(60);
    while !has_kernel_route(&d, route) {
        assert!(
            Instant::now() < deadline,
            "the BGP route never reached route-show: {:?}\nkernel: {}\nlocal bgpd: {}\nremote bgpd: {}",
            kernel_routes(&d),
            String::from_utf8_lossy(&in_ns(&t.host, "ip", &["route"]).stdout),
            local.log(),
            remote.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("BGP route in route-show {:?} after FRR started", started.elapsed());
    let kernel = String::from_utf8_lossy(&in_ns(&t.host, "ip", &["route", "show", "10.99.0.2"]).stdout).into_owned();
    assert!(kernel.contains("proto bgp"), "zebra installed it: {kernel}");
    ping_until_up(&t, &d);
    let (ok, out) = ping(&t.vm, &["-c", "10", "-i", "0.1", "-W", "2", "198.19.0.2"]);
    assert!(ok && out.contains(" 0% packet loss"), "through the BGP route: {out}");
    assert!(encaps(&d).iter().any(|e| e.contains("->10.99.0.2 via uplink0 next-hop 198.18.0.2")), "{:?}", encaps(&d));

    remote.vtysh(&["configure terminal", "router bgp 65002", "address-family ipv4 unicast", "no network 10.99.0.2/32"]);
    let waited = time_until(&d, "the withdrawn route gone", |d| !has_kernel_route(d, route));
    println!("withdrawal reached route-show in {waited:?}");
    let before = d.drops("no_route");
    let (ok, _) = ping(&t.vm, &["-c", "2", "-W", "1", "198.19.0.2"]);
    assert!(!ok, "no route after the withdrawal");
    assert!(d.drops("no_route") > before);
    drop(local);
    drop(remote);
    d.stop();
}
