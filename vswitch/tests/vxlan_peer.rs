//! VXLAN against a real peer: the Linux kernel's vxlan device in a network
//! namespace is the remote VTEP; another namespace is the VM. The switch's
//! ports are net_af_packet on the host ends of veth pairs.
//!
//! ```text
//!  netns vm                 vswitchd                         netns remote
//!  vm0 198.19.0.1/24 ==veth== [vm] -> vxlan0 (vni 100)
//!                             [uplink0 198.18.0.1] ==veth== rem0 198.18.0.2/24
//!                                                           vx100 (vni 100) 198.19.0.2/24
//!                                                           vx200 (vni 200) 198.20.0.3/24
//! ```
//! Needs root (namespaces, veth, af_packet); in CI it runs and fails, never
//! skips, when it cannot.

mod common;

use common::daemon::Daemon;
use common::netns::{self, helper_output, helper_result, in_ns, must, must_ns, ping, run};
use common::TempDir;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const UDP_DATAGRAMS: u32 = 10_000;
const TCP_BYTES: usize = 4 << 20;

/// Namespaces and veths; removed on drop (deleting a namespace removes its
/// veth ends and so the pairs).
struct Topology {
    vm: String,
    remote: String,
    host_vm: String,
    host_rem: String,
}

impl Topology {
    /// `tag` keeps two tests of one process (plain `cargo test`) apart.
    fn build(tag: &str) -> Self {
        let id = std::process::id() % 100_000;
        let t = Self {
            vm: format!("vswt-vm{tag}-{id}"),
            remote: format!("vswt-rem{tag}-{id}"),
            host_vm: format!("vsv{tag}{id}"),
            host_rem: format!("vsr{tag}{id}"),
        };
        must("ip", &["netns", "add", &t.vm]);
        must("ip", &["netns", "add", &t.remote]);
        must("ip", &["link", "add", &t.host_vm, "type", "veth", "peer", "name", "vm0", "netns", &t.vm]);
        must("ip", &["link", "add", &t.host_rem, "type", "veth", "peer", "name", "rem0", "netns", &t.remote]);
        for h in [&t.host_vm, &t.host_rem] {
            // No kernel chatter (router solicitations, MLD) on the switch's ports,
            // and no checksum/segmentation offloads (af_packet would pass
            // unfinished checksums on).
            must("ip", &["link", "set", h, "addrgenmode", "none"]);
            must("sysctl", &["-qw", &format!("net.ipv6.conf.{h}.disable_ipv6=1")]);
            must("ethtool", &["-K", h, "tx", "off", "tso", "off", "gso", "off"]);
            must("ip", &["link", "set", h, "up"]);
        }
        let (vm, rem) = (t.vm.as_str(), t.remote.as_str());
        // The VM speaks IPv4 only; the remote's underlay is dual-stack, its
        // overlay devices IPv4 only.
        must_ns(vm, "sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        must_ns(rem, "sysctl", &["-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        must_ns(rem, "sysctl", &["-qw", "net.ipv6.conf.rem0.disable_ipv6=0"]);
        must_ns(vm, "ip", &["link", "set", "lo", "up"]);
        must_ns(vm, "ethtool", &["-K", "vm0", "tx", "off", "tso", "off", "gso", "off"]);
        must_ns(vm, "ip", &["addr", "add", "198.19.0.1/24", "dev", "vm0"]);
        must_ns(vm, "ip", &["addr", "add", "198.20.0.1/24", "dev", "vm0"]);
        must_ns(vm, "ip", &["addr", "add", "198.21.0.1/24", "dev", "vm0"]);
        must_ns(vm, "ip", &["link", "set", "vm0", "up"]);
        must_ns(rem, "ip", &["link", "set", "lo", "up"]);
        must_ns(rem, "sysctl", &["-qw", "net.ipv4.conf.all.arp_ignore=1"]);
        must_ns(rem, "ethtool", &["-K", "rem0", "tx", "off", "tso", "off", "gso", "off"]);
        must_ns(rem, "ip", &["addr", "add", "198.18.0.2/24", "dev", "rem0"]);
        must_ns(rem, "ip", &["addr", "add", "2001:db8:18::2/64", "dev", "rem0", "nodad"]);
        must_ns(rem, "ip", &["link", "set", "rem0", "up"]);
        for (dev, vni, addr) in [("vx100", "100", "198.19.0.2/24"), ("vx200", "200", "198.20.0.3/24")] {
            must_ns(
                rem,
                "ip",
                &[
                    "link",
                    "add",
                    dev,
                    "type",
                    "vxlan",
                    "id",
                    vni,
                    "local",
                    "198.18.0.2",
                    "remote",
                    "198.18.0.1",
                    "dstport",
                    "4789",
                    "dev",
                    "rem0",
                ],
            );
            must_ns(rem, "ethtool", &["-K", dev, "tx", "off", "tso", "off", "gso", "off"]);
            must_ns(rem, "ip", &["addr", "add", addr, "dev", dev]);
            must_ns(rem, "ip", &["link", "set", dev, "up"]);
        }
        // VNI 300 over the IPv6 underlay.
        must_ns(
            rem,
            "ip",
            &[
                "link",
                "add",
                "vx300",
                "type",
                "vxlan",
                "id",
                "300",
                "local",
                "2001:db8:18::2",
                "remote",
                "2001:db8:18::1",
                "dstport",
                "4789",
                "dev",
                "rem0",
            ],
        );
        must_ns(rem, "ethtool", &["-K", "vx300", "tx", "off", "tso", "off", "gso", "off"]);
        must_ns(rem, "ip", &["addr", "add", "198.21.0.2/24", "dev", "vx300"]);
        must_ns(rem, "ip", &["link", "set", "vx300", "up"]);
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.vm]);
        let _ = run("ip", &["netns", "del", &self.remote]);
        let _ = run("ip", &["link", "del", &self.host_vm]);
        let _ = run("ip", &["link", "del", &self.host_rem]);
    }
}

/// The switch between the VM's veth and the remote's: its configuration.
fn peer_config(t: &Topology, socket: &std::path::Path) -> String {
    format!(
        r#"rules = [
  "priority=20,in_port=vm,ip,nw_dst=198.21.0.0/24 actions=output:vxlan6",
  "priority=20,in_port=vm,arp,arp_tpa=198.21.0.0/24 actions=output:vxlan6",
  "priority=10,in_port=vm actions=output:vxlan0",
  "priority=10,in_port=vxlan0 actions=output:vm",
  "priority=10,in_port=vxlan6 actions=output:vm",
]
[eal]
args = ["--no-huge", "-m", "512", "--no-pci", "--no-telemetry", "--log-level=lib.eal:warning"]
[control]
socket = "{socket}"
[metrics]
listen = "off"
[[port]]
name = "vm"
role = "representor"
devargs = "net_af_packet_vm,iface={vm},framecnt=8192"
[[port]]
name = "uplink0"
role = "uplink"
devargs = "net_af_packet_up,iface={rem},framecnt=8192"
ip = ["198.18.0.1/24", "2001:db8:18::1/64"]
mtu = 1500
[[tunnel]]
name = "vxlan0"
remote_ip = "198.18.0.2"
vni = 100
[[tunnel]]
name = "vxlan6"
remote_ip = "2001:db8:18::2"
vni = 300
"#,
        socket = socket.display(),
        vm = t.host_vm,
        rem = t.host_rem
    )
}

/// Starts vswitchd on the topology, in `dir`.
fn start_daemon(t: &Topology, dir: &TempDir) -> Daemon {
    Daemon::start(&dir.0, &peer_config(t, &dir.path("ctl.sock")))
}

const PEER_TEST: &str = "kernel_vxlan_peer_ping_udp_tcp_mtu_isolation_and_capture";

/// A helper role in a namespace (this test binary, as [`PEER_TEST`]).
fn helper(ns: &str, role: &str, arg: &str) -> Child {
    netns::helper(ns, PEER_TEST, role, arg)
}

fn sha256ish(data: &[u8]) -> String {
    // FNV-1a 64 over the stream plus its length: a checksum both sides compute.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:016x}-{}", h, data.len())
}

/// The first few runs of unseen sequence numbers, as `a-b,c,...`.
fn missing_ranges(seen: &[bool]) -> String {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < seen.len() && runs.len() < 12 {
        if seen[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < seen.len() && !seen[i] {
            i += 1;
        }
        runs.push(if i - start == 1 { start.to_string() } else { format!("{start}-{}", i - 1) });
    }
    if runs.is_empty() {
        "none".to_owned()
    } else {
        runs.join(",")
    }
}

/// This namespace's UDP counters (`/proc/net/snmp`), as `name=value` pairs.
fn udp_counters() -> String {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut rows = snmp.lines().filter(|l| l.starts_with("Udp:"));
    match (rows.next(), rows.next()) {
        (Some(names), Some(values)) => names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "unreadable".to_owned(),
    }
}

/// Waits for a `udp-recv` helper and checks it got every datagram in order;
/// on failure, says which were missing, the receiver's UDP counters, and the
/// switch's counters.
fn assert_udp_stream(recv: Child, d: &Daemon, what: &str) {
    let (result, text) = helper_output(recv);
    if result == format!("{UDP_DATAGRAMS} true") {
        return;
    }
    let loss = text.lines().find(|l| l.starts_with("LOSS ")).unwrap_or("LOSS (no line)");
    let show = d.ctl_json(&["show"]).map(|s| format!("{s:#}")).unwrap_or_default();
    panic!("{what}: received, in order: {result}, expected {UDP_DATAGRAMS} true\n{loss}\nswitch: {show}");
}

/// Helper roles, run inside namespaces by `helper()` (this test binary,
/// started again with the helper role set).
fn peer_helper(role: &str) {
    let arg = std::env::var(netns::HELPER_ARG).unwrap_or_default();
    match role {
        "udp-recv" => {
            let sock = std::net::UdpSocket::bind(&arg).expect("bind");
            sock.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            // The test is of the tunnel, not of this process's scheduling: a
            // receive buffer that holds the whole stream (about 1 KiB of
            // buffer per datagram), so a receiver descheduled on a busy host
            // loses nothing.
            netns::force_receive_buffer(&sock, 32 << 20);
            println!("READY");
            let mut last: Option<u32> = None;
            let mut in_order = true;
            let mut got = 0u32;
            let mut seen = vec![false; UDP_DATAGRAMS as usize];
            let mut buf = [0u8; 2048];
            while got < UDP_DATAGRAMS {
                let Ok(n) = sock.recv(&mut buf) else { break };
                if n < 4 {
                    continue;
                }
                let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                // Loss shows in the count; order means strictly increasing.
                in_order &= last.is_none_or(|l| seq > l);
                last = Some(seq);
                got += 1;
                if let Some(s) = seen.get_mut(seq as usize) {
                    *s = true;
                }
            }
            // Which datagrams are missing, and whether this namespace's UDP
            // layer dropped them: for the failure message.
            println!("LOSS missing {} udp {}", missing_ranges(&seen), udp_counters());
            println!("RESULT {got} {in_order}");
        }
        "udp-send" => {
            let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
            let mut payload = [0u8; 200];
            for seq in 0..UDP_DATAGRAMS {
                payload[..4].copy_from_slice(&seq.to_be_bytes());
                sock.send_to(&payload, &arg).expect("send");
                // About 10k datagrams a second: a tunnel, not a load test.
                if seq % 20 == 19 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            println!("RESULT sent");
        }
        "tcp-recv" => {
            let l = std::net::TcpListener::bind(&arg).expect("bind");
            let (mut s, _) = l.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
            let mut data = Vec::new();
            s.read_to_end(&mut data).expect("read");
            println!("RESULT {}", sha256ish(&data));
        }
        "tcp-send" => {
            let mut data = vec![0u8; TCP_BYTES];
            let mut x: u64 = 0x1234_5678;
            for b in data.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut s = loop {
                match std::net::TcpStream::connect(&arg) {
                    Ok(s) => break s,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "connect: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            };
            s.write_all(&data).expect("write");
            drop(s);
            println!("RESULT {}", sha256ish(&data));
        }
        other => panic!("unknown helper role {other}"),
    }
}

#[test]
fn kernel_vxlan_peer_ping_udp_tcp_mtu_isolation_and_capture() {
    if let Ok(role) = std::env::var(netns::HELPER_ROLE) {
        peer_helper(&role);
        return;
    }
    let t = Topology::build("");
    let dir = TempDir::new("peer");
    let d = start_daemon(&t, &dir);
    let (vm, rem) = (t.vm.as_str(), t.remote.as_str());

    // Warm up: ARP inside the overlay, ARP for the remote VTEP on the uplink.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ping(vm, &["-c", "1", "-W", "1", "198.19.0.2"]).0 {
        assert!(
            Instant::now() < deadline,
            "no ping through the tunnel:\n{:#}\n{}",
            d.ctl_json(&["show"]).unwrap_or_default(),
            d.log_text()
        );
    }

    // Capture the uplink while pinging both ways.
    let pcap = dir.path("uplink.pcap");
    // On the far end of the uplink's wire: af_packet sends with qdisc bypass,
    // which taps on the switch's own veth end do not see.
    let mut capture = Command::new("ip")
        .args([
            "netns",
            "exec",
            rem,
            "tshark",
            "-i",
            "rem0",
            "-f",
            "udp port 4789",
            "-c",
            "8",
            "-a",
            "duration:15",
            "-w",
        ])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark (apt-get install tshark)");
    std::thread::sleep(Duration::from_millis(1500));
    let (ok, text) = ping(vm, &["-c", "3", "-i", "0.2", "-W", "2", "198.19.0.2"]);
    assert!(ok && text.contains(" 0% packet loss"), "vm -> remote: {text}");
    let (ok, text) = ping(rem, &["-c", "3", "-i", "0.2", "-W", "2", "198.19.0.1"]);
    assert!(ok && text.contains(" 0% packet loss"), "remote -> vm: {text}");
    let status = capture.wait().expect("tshark");
    assert!(status.success(), "tshark capture failed");
    let decoded = run(
        "tshark",
        &[
            "-r",
            pcap.to_str().expect("path"),
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "vxlan.vni",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
        ],
    );
    let lines = String::from_utf8_lossy(&decoded.stdout).into_owned();
    assert!(lines.lines().count() >= 8, "captured VXLAN: {lines}");
    for l in lines.lines() {
        let f: Vec<&str> = l.split('|').collect();
        assert!(f[1].starts_with("198.18.0.") && f[2].starts_with("198.18.0."), "outer addresses: {l}");
        if f[1].starts_with("198.18.0.1") {
            assert_eq!(f[0], "100", "everything we encapsulate carries VNI 100: {l}");
        }
    }
    assert!(lines.contains("100|198.18.0.1,198.19.0.1|198.18.0.2,198.19.0.2"), "our encapsulation seen: {lines}");
    assert!(lines.contains("100|198.18.0.2,198.19.0.2|198.18.0.1,198.19.0.1"), "the kernel's seen: {lines}");

    // dump-flows shows the resolved encapsulation.
    let flows = d.ctl_json(&["dump-flows"]).expect("dump-flows");
    let encap: Vec<&str> = flows.as_array().expect("flows").iter().filter_map(|f| f["encap"].as_str()).collect();
    assert!(
        encap.iter().any(|e| e.starts_with("vxlan0 vni=100 198.18.0.1->198.18.0.2 via uplink0 next-hop 198.18.0.2")),
        "{flows:#}"
    );
    let underlay = d.ctl_json(&["dump-underlay"]).expect("underlay");
    assert!(
        underlay["neighbours"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["ip"] == "198.18.0.2" && n["static"] == false)),
        "learned by ARP: {underlay:#}"
    );

    // 10k UDP datagrams, whole and in order.
    let recv = helper(rem, "udp-recv", "198.19.0.2:9999");
    std::thread::sleep(Duration::from_millis(500));
    let send = helper(vm, "udp-send", "198.19.0.2:9999");
    helper_result(send);
    assert_udp_stream(recv, &d, "UDP stream");

    // A few MiB of TCP with a checksum.
    let recv = helper(rem, "tcp-recv", "198.19.0.2:9998");
    std::thread::sleep(Duration::from_millis(500));
    let send = helper(vm, "tcp-send", "198.19.0.2:9998");
    let sent = helper_result(send);
    assert_eq!(helper_result(recv), sent, "TCP data arrives intact");

    // A DF packet above the path MTU gets "fragmentation needed" back and the
    // VM's kernel caches the lower MTU.
    let icmp_before = d.ctl_json(&["show"]).expect("show")["icmp_too_big_sent"].as_u64().unwrap_or(0);
    let (ok, text) = ping(vm, &["-c", "2", "-W", "1", "-M", "do", "-s", "1460", "198.19.0.2"]);
    assert!(!ok, "a 1488-byte DF packet cannot cross a 1450-byte path: {text}");
    let route = String::from_utf8_lossy(&in_ns(vm, "ip", &["route", "get", "198.19.0.2"]).stdout).into_owned();
    assert!(route.contains("mtu 1450"), "route cache shows the path MTU: {route} (ping said: {text})");
    assert!(d.ctl_json(&["show"]).expect("show")["icmp_too_big_sent"].as_u64().unwrap_or(0) > icmp_before);
    let (ok, text) = ping(vm, &["-c", "2", "-W", "2", "-M", "do", "-s", "1400", "198.19.0.2"]);
    assert!(ok, "1428-byte DF packets fit: {text}");

    // Neighbour and route changes apply to the cached flow at once.
    d.ctl_json(&["neigh-add", "198.18.0.2", "02:de:ad:be:ef:01", "uplink0"]).expect("neigh-add");
    let (ok, _) = ping(vm, &["-c", "2", "-W", "1", "198.19.0.2"]);
    assert!(!ok, "a wrong static MAC for the remote VTEP breaks the path");
    d.ctl_json(&["neigh-del", "198.18.0.2"]).expect("neigh-del");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ping(vm, &["-c", "1", "-W", "1", "198.19.0.2"]).0 {
        assert!(Instant::now() < deadline, "ARP re-learns the remote VTEP");
    }
    d.ctl_json(&["route-add", "198.18.0.2/32", "via", "198.18.0.99", "uplink0"]).expect("route-add");
    let misses = d.drops("neighbour_miss");
    let (ok, _) = ping(vm, &["-c", "2", "-W", "1", "198.19.0.2"]);
    assert!(!ok, "a route through an absent gateway breaks the path");
    assert!(d.drops("neighbour_miss") > misses, "counted as neighbour misses");
    d.ctl_json(&["route-del", "198.18.0.2/32"]).expect("route-del");
    let (ok, text) = ping(vm, &["-c", "2", "-W", "2", "198.19.0.2"]);
    assert!(ok, "the connected route is back: {text}");

    // VNI isolation: the kernel's VNI 200 cannot reach the VM, and the VM's
    // ARP through VNI 100 does not reach VNI 200's address.
    let unknown = d.drops("unknown_tunnel");
    let (ok, text) = ping(rem, &["-c", "2", "-W", "1", "198.20.0.1"]);
    assert!(!ok, "VNI 200 must not reach the VM: {text}");
    assert!(d.drops("unknown_tunnel") > unknown, "VNI 200 packets were dropped and counted");
    let (ok, _) = ping(vm, &["-c", "2", "-W", "1", "198.20.0.3"]);
    assert!(!ok, "the VM must not reach VNI 200");
    // A check that can catch a leak: the remote sends UDP through VNI 200
    // addressed to the VM (its IP and MAC, statically); leaked, it would
    // arrive at the VM's socket.
    let vm_mac = String::from_utf8_lossy(&in_ns(vm, "cat", &["/sys/class/net/vm0/address"]).stdout).trim().to_owned();
    must_ns(rem, "ip", &["route", "add", "198.19.0.1/32", "dev", "vx200"]);
    must_ns(rem, "ip", &["neigh", "replace", "198.19.0.1", "lladdr", &vm_mac, "dev", "vx200", "nud", "permanent"]);
    let unknown = d.drops("unknown_tunnel");
    let recv = helper(vm, "udp-recv", "198.19.0.1:5557");
    std::thread::sleep(Duration::from_millis(300));
    helper_result(helper(rem, "udp-send", "198.19.0.1:5557"));
    let got = helper_result(recv);
    assert_eq!(got, "0 true", "VNI 200 datagrams addressed to the VM reached it");
    let dropped = d.drops("unknown_tunnel") - unknown;
    assert!(dropped >= u64::from(UDP_DATAGRAMS), "each was dropped and counted: {dropped}");
    must_ns(rem, "ip", &["neigh", "del", "198.19.0.1", "dev", "vx200"]);
    must_ns(rem, "ip", &["route", "del", "198.19.0.1/32", "dev", "vx200"]);

    // The IPv6 underlay: neighbour discovery both ways, VNI 300, ICMP
    // "fragmentation needed" with the 70-byte overhead.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ping(vm, &["-c", "1", "-W", "1", "198.21.0.2"]).0 {
        assert!(
            Instant::now() < deadline,
            "no ping over the IPv6 underlay:\n{:#}",
            d.ctl_json(&["show"]).unwrap_or_default()
        );
    }
    let (ok, text) = ping(rem, &["-c", "3", "-i", "0.2", "-W", "2", "198.21.0.1"]);
    assert!(ok && text.contains(" 0% packet loss"), "remote -> vm over IPv6: {text}");
    let underlay = d.ctl_json(&["dump-underlay"]).expect("underlay");
    assert!(
        underlay["neighbours"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["ip"] == "2001:db8:18::2" && n["static"] == false)),
        "learned by neighbour discovery: {underlay:#}"
    );
    let kernel_neigh =
        String::from_utf8_lossy(&in_ns(rem, "ip", &["-6", "neigh", "show", "2001:db8:18::1"]).stdout).into_owned();
    assert!(kernel_neigh.contains("lladdr"), "the kernel resolved our IPv6 VTEP: {kernel_neigh}");
    let flows = d.ctl_json(&["dump-flows"]).expect("dump-flows");
    assert!(
        flows.as_array().is_some_and(|f| f.iter().any(|f| f["encap"]
            .as_str()
            .is_some_and(|e| e.starts_with("vxlan6 vni=300 2001:db8:18::1->2001:db8:18::2")))),
        "{flows:#}"
    );
    let (ok, text) = ping(vm, &["-c", "2", "-W", "1", "-M", "do", "-s", "1420", "198.21.0.2"]);
    assert!(!ok, "1448-byte DF packets do not fit a 1430-byte IPv6-underlay path: {text}");
    let route = String::from_utf8_lossy(&in_ns(vm, "ip", &["route", "get", "198.21.0.2"]).stdout).into_owned();
    assert!(route.contains("mtu 1430"), "route cache shows the IPv6-underlay path MTU: {route} ({text})");

    // The VTEP answers ARP for its own address: make the kernel ask again.
    must_ns(rem, "ip", &["neigh", "flush", "dev", "rem0"]);
    let (ok, text) = ping(rem, &["-c", "2", "-W", "2", "198.19.0.1"]);
    assert!(ok, "remote -> vm after the remote forgot our MAC: {text}");
    let neigh = String::from_utf8_lossy(&in_ns(rem, "ip", &["neigh", "show", "198.18.0.1"]).stdout).into_owned();
    assert!(neigh.contains("lladdr"), "the kernel learned our VTEP MAC from our ARP reply: {neigh}");

    let stats = d.ctl_json(&["show"]).expect("show");
    assert!(stats["decapsulated"].as_u64().unwrap_or(0) > u64::from(UDP_DATAGRAMS) / 100, "{stats:#}");
    assert!(stats["encapsulated"].as_u64().unwrap_or(0) > u64::from(UDP_DATAGRAMS), "{stats:#}");
    assert!(stats["neighbour_replies_sent"].as_u64().unwrap_or(0) >= 1, "answered ARP for 198.18.0.1: {stats:#}");
}

/// The same topology with offload into the model e-switch (policy all): the
/// VM port's MTU leaves room for the tunnel, so its flows can be offloaded.
/// Ping, UDP and TCP pass, and the encapsulating and decapsulating flows are
/// in hardware.
#[test]
fn kernel_vxlan_peer_with_offload_into_the_model() {
    if let Ok(role) = std::env::var(netns::HELPER_ROLE) {
        peer_helper(&role);
        return;
    }
    let t = Topology::build("o");
    let (vm, rem) = (t.vm.as_str(), t.remote.as_str());
    must_ns(vm, "ip", &["link", "set", "vm0", "mtu", "1450"]);
    let dir = TempDir::new("peer-offload");
    let config = peer_config(&t, &dir.path("ctl.sock"))
        .replace("name = \"vm\"\nrole = \"representor\"", "name = \"vm\"\nrole = \"representor\"\nmtu = 1450")
        + "\n[offload]\ndevice = \"model\"\npolicy = \"all\"\nquery_interval_ms = 100\n";
    let d = Daemon::start(&dir.0, &config);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ping(vm, &["-c", "1", "-W", "1", "198.19.0.2"]).0 {
        assert!(Instant::now() < deadline, "no ping through the tunnel:\n{}", d.log_text());
    }
    let (ok, out) = ping(vm, &["-c", "20", "-i", "0.05", "-W", "2", "198.19.0.2"]);
    assert!(ok && out.contains(" 0% packet loss"), "VM -> remote: {out}");
    let (ok, out) = ping(rem, &["-c", "20", "-i", "0.05", "-W", "2", "198.19.0.1"]);
    assert!(ok && out.contains(" 0% packet loss"), "remote -> VM: {out}");
    // UDP: every datagram, in order.
    let recv = helper(vm, "udp-recv", "198.19.0.1:5555");
    std::thread::sleep(Duration::from_millis(300));
    let send = helper(rem, "udp-send", "198.19.0.1:5555");
    helper_result(send);
    assert_udp_stream(recv, &d, "UDP through hardware rules");
    // TCP: the stream intact.
    let recv = helper(rem, "tcp-recv", "198.19.0.2:5556");
    std::thread::sleep(Duration::from_millis(300));
    let send = helper(vm, "tcp-send", "198.19.0.2:5556");
    let sent = helper_result(send);
    assert_eq!(helper_result(recv), sent, "TCP stream through hardware rules");
    let flows = d.ctl_json(&["dump-flows"]).expect("dump-flows");
    let flows = flows.as_array().expect("array");
    let state_of = |m: &str, a: &str| -> Vec<String> {
        flows
            .iter()
            .filter(|f| {
                f["match"].as_str().is_some_and(|x| x.contains(m)) && f["actions"].as_str().is_some_and(|x| x == a)
            })
            .map(|f| f["offload"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    // The IP flows both ways are in hardware; an ARP flow that consulted
    // arp_tpa (no rte_flow item says it) stays in software with that reason.
    let encap = state_of("in_port=vm,dl_type=0x800", "output:vxlan0");
    let decap = state_of("in_port=vxlan0", "output:vm");
    assert!(!encap.is_empty() && encap.iter().all(|s| s == "hw"), "encapsulating flows: {encap:?}\n{flows:#?}");
    assert!(!decap.is_empty() && decap.iter().all(|s| s == "hw"), "decapsulating flows: {decap:?}\n{flows:#?}");
    let arp = state_of("in_port=vm,dl_type=0x806", "output:vxlan0");
    assert!(arp.iter().all(|s| s == "sw(unsupported: ARP fields (arp_op, arp_spa, arp_tpa))"), "{arp:?}");
    let show = d.show();
    assert!(
        show["hw_packets"].as_u64().unwrap_or(0) > u64::from(UDP_DATAGRAMS),
        "most of the traffic went through the model: {show:#}"
    );
    drop(d);
    drop(t);
}
