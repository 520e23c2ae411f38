//! Fragmented UDP through the switch, with real fragments from the Linux
//! kernel: datagrams of 3,000 and 9,000 bytes, IPv4 and IPv6, both ways,
//! through plain forwarding (VM to VM) and through the VXLAN tunnel (VM to
//! the kernel's vxlan device in another namespace).
//!
//! ```text
//!  netns a (a0, MTU 1450)       vswitchd                     netns b (b0, MTU 1450)
//!  198.51.100.1, 2001:db8:51::1 ==veth== [vm] <-> [vm2] ==veth== 198.51.100.2, 2001:db8:51::2
//!  198.19.0.1,   fd00:19::1             [vm] <-> vxlan0 (vni 100)
//!                                       [uplink0 198.18.0.1] ==veth== rem0 198.18.0.2 (netns r)
//!                                                                     vx100: 198.19.0.2, fd00:19::2
//! ```
//! The VMs' MTU is 1450 so that every fragment fits the tunnel (50 bytes of
//! VXLAN over a 1,500-byte uplink). The VMs' ports are net_pcap on the veth
//! (a live capture): net_af_packet's fanout socket asks the kernel to
//! reassemble IPv4 fragments first (PACKET_FANOUT_FLAG_DEFRAG), so the
//! switch would never see one, where a VF hands them over as they come.
//! Needs root; in CI it runs and fails, never skips, when it cannot.

mod common;

use common::daemon::Daemon;
use common::netns::{self, helper_result, must, must_ns, run};
use common::TempDir;
use std::time::Duration;

/// Datagrams per direction and size.
const DATAGRAMS: u32 = 20;
const TEST: &str = "udp_fragments_cross_plain_forwarding_and_the_tunnel_both_ways";

const MAC_A: &str = "02:00:00:00:51:01";
const MAC_B: &str = "02:00:00:00:51:02";
const MAC_VX: &str = "02:00:00:00:19:02";

struct Topology {
    a: String,
    b: String,
    r: String,
    host_a: String,
    host_b: String,
    host_r: String,
}

impl Topology {
    fn build() -> Self {
        let id = std::process::id() % 100_000;
        let t = Self {
            a: format!("vswt-fa-{id}"),
            b: format!("vswt-fb-{id}"),
            r: format!("vswt-fr-{id}"),
            host_a: format!("vfa{id}"),
            host_b: format!("vfb{id}"),
            host_r: format!("vfr{id}"),
        };
        for ns in [&t.a, &t.b, &t.r] {
            must("ip", &["netns", "add", ns]);
        }
        for (host, peer, ns) in [(&t.host_a, "a0", &t.a), (&t.host_b, "b0", &t.b), (&t.host_r, "rem0", &t.r)] {
            must("ip", &["link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns]);
            must("ip", &["link", "set", host, "addrgenmode", "none"]);
            must("sysctl", &["-qw", &format!("net.ipv6.conf.{host}.disable_ipv6=1")]);
            must("ethtool", &["-K", host, "tx", "off", "tso", "off", "gso", "off"]);
            must("ip", &["link", "set", host, "mtu", "1500", "up"]);
            must_ns(ns, "ip", &["link", "set", "lo", "up"]);
            must_ns(ns, "ethtool", &["-K", peer, "tx", "off", "tso", "off", "gso", "off"]);
        }
        let a = t.a.as_str();
        must_ns(a, "ip", &["link", "set", "a0", "address", MAC_A, "mtu", "1450", "up"]);
        for addr in ["198.51.100.1/24", "198.19.0.1/24"] {
            must_ns(a, "ip", &["addr", "add", addr, "dev", "a0"]);
        }
        for addr in ["2001:db8:51::1/64", "fd00:19::1/64"] {
            must_ns(a, "ip", &["addr", "add", addr, "dev", "a0", "nodad"]);
        }
        let b = t.b.as_str();
        must_ns(b, "ip", &["link", "set", "b0", "address", MAC_B, "mtu", "1450", "up"]);
        must_ns(b, "ip", &["addr", "add", "198.51.100.2/24", "dev", "b0"]);
        must_ns(b, "ip", &["addr", "add", "2001:db8:51::2/64", "dev", "b0", "nodad"]);
        let r = t.r.as_str();
        must_ns(r, "ip", &["addr", "add", "198.18.0.2/24", "dev", "rem0"]);
        must_ns(r, "ip", &["link", "set", "rem0", "up"]);
        must_ns(
            r,
            "ip",
            &[
                "link",
                "add",
                "vx100",
                "address",
                MAC_VX,
                "type",
                "vxlan",
                "id",
                "100",
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
        must_ns(r, "ethtool", &["-K", "vx100", "tx", "off", "tso", "off", "gso", "off"]);
        must_ns(r, "ip", &["link", "set", "vx100", "mtu", "1450", "up"]);
        must_ns(r, "ip", &["addr", "add", "198.19.0.2/24", "dev", "vx100"]);
        must_ns(r, "ip", &["addr", "add", "fd00:19::2/64", "dev", "vx100", "nodad"]);
        // Static neighbours: the test is about fragments, not ARP and ND.
        let neigh = |ns: &str, dev: &str, ip: &str, mac: &str| {
            must_ns(ns, "ip", &["neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent"]);
        };
        neigh(a, "a0", "198.51.100.2", MAC_B);
        neigh(a, "a0", "2001:db8:51::2", MAC_B);
        neigh(a, "a0", "198.19.0.2", MAC_VX);
        neigh(a, "a0", "fd00:19::2", MAC_VX);
        neigh(b, "b0", "198.51.100.1", MAC_A);
        neigh(b, "b0", "2001:db8:51::1", MAC_A);
        neigh(r, "vx100", "198.19.0.1", MAC_A);
        neigh(r, "vx100", "fd00:19::1", MAC_A);
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b, &self.r] {
            let _ = run("ip", &["netns", "del", ns]);
        }
        for host in [&self.host_a, &self.host_b, &self.host_r] {
            let _ = run("ip", &["link", "del", host]);
        }
    }
}

fn config(t: &Topology, socket: &std::path::Path) -> String {
    format!(
        r#"rules = [
  "priority=20,in_port=vm,dl_dst={MAC_B} actions=output:vm2",
  "priority=20,in_port=vm2 actions=output:vm",
  "priority=10,in_port=vm actions=output:vxlan0",
  "priority=10,in_port=vxlan0 actions=output:vm",
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
mtu = 1450
devargs = "net_pcap_fa,rx_iface_in={a},tx_iface={a}"
[[port]]
name = "vm2"
role = "representor"
mtu = 1450
devargs = "net_pcap_fb,rx_iface_in={b},tx_iface={b}"
[[port]]
name = "uplink0"
role = "uplink"
devargs = "net_af_packet_fr,iface={r},framecnt=8192"
ip = ["198.18.0.1/24"]
mtu = 1500
[[neighbour]]
ip = "198.18.0.2"
mac = "{mac_r}"
port = "uplink0"
[[tunnel]]
name = "vxlan0"
remote_ip = "198.18.0.2"
vni = 100
"#,
        socket = socket.display(),
        a = t.host_a,
        b = t.host_b,
        r = t.host_r,
        mac_r = rem0_mac(&t.r),
    )
}

fn rem0_mac(ns: &str) -> String {
    let out = netns::in_ns(ns, "cat", &["/sys/class/net/rem0/address"]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The bytes of datagram `seq` of `size` bytes (so the receiver checks them).
fn payload(seq: u32, size: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..size).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8).collect();
    p[..4].copy_from_slice(&seq.to_be_bytes());
    p
}

/// Helper roles: `recv ADDR SIZE` counts whole, intact datagrams; `send
/// ADDR SIZE` sends [`DATAGRAMS`] of them.
fn fragment_helper(role: &str) {
    let arg = std::env::var(netns::HELPER_ARG).unwrap_or_default();
    let (addr, size) = arg.rsplit_once(' ').expect("ADDR SIZE");
    let size: usize = size.parse().expect("size");
    match role {
        "recv" => {
            let sock = std::net::UdpSocket::bind(addr).expect("bind");
            sock.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            println!("READY");
            let (mut whole, mut seen) = (0u32, 0u32);
            let mut buf = vec![0u8; 65536];
            while seen < DATAGRAMS {
                let Ok(n) = sock.recv(&mut buf) else { break };
                seen += 1;
                let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                whole += u32::from(n == size && buf[..n] == payload(seq, size)[..]);
            }
            println!("RESULT {whole}");
        }
        "send" => {
            let any = if addr.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" };
            let sock = std::net::UdpSocket::bind(any).expect("bind");
            for seq in 0..DATAGRAMS {
                sock.send_to(&payload(seq, size), addr).expect("send");
                std::thread::sleep(Duration::from_millis(20));
            }
            println!("RESULT sent");
        }
        other => panic!("unknown helper role {other}"),
    }
}

#[test]
fn udp_fragments_cross_plain_forwarding_and_the_tunnel_both_ways() {
    if let Ok(role) = std::env::var(netns::HELPER_ROLE) {
        fragment_helper(&role);
        return;
    }
    let t = Topology::build();
    let dir = TempDir::new("fragments");
    let d = Daemon::start(&dir.0, &config(&t, &dir.path("ctl.sock")));
    // (path, sender ns, receiver ns, receiver address)
    let cases = [
        ("plain IPv4 a->b", &t.a, &t.b, "198.51.100.2:7000"),
        ("plain IPv4 b->a", &t.b, &t.a, "198.51.100.1:7000"),
        ("plain IPv6 a->b", &t.a, &t.b, "[2001:db8:51::2]:7000"),
        ("plain IPv6 b->a", &t.b, &t.a, "[2001:db8:51::1]:7000"),
        ("vxlan IPv4 a->r", &t.a, &t.r, "198.19.0.2:7000"),
        ("vxlan IPv4 r->a", &t.r, &t.a, "198.19.0.1:7000"),
        ("vxlan IPv6 a->r", &t.a, &t.r, "[fd00:19::2]:7000"),
        ("vxlan IPv6 r->a", &t.r, &t.a, "[fd00:19::1]:7000"),
    ];
    let mut failed = Vec::new();
    for (what, from, to, addr) in cases {
        for size in [3000usize, 9000] {
            let arg = format!("{addr} {size}");
            let recv = netns::helper(to, TEST, "recv", &arg);
            std::thread::sleep(Duration::from_millis(400));
            helper_result(netns::helper(from, TEST, "send", &arg));
            let got = helper_result(recv);
            println!("{what}, {size}-byte datagrams: {got} of {DATAGRAMS} whole");
            if got != DATAGRAMS.to_string() {
                failed.push(format!("{what} {size} B: {got} of {DATAGRAMS}"));
            }
        }
    }
    let s = d.show();
    assert!(
        failed.is_empty(),
        "fragmented datagrams lost: {failed:?}\n{:#}",
        serde_json::json!({"drops": s["drops"], "parse_errors": s["parse_errors"]})
    );
    assert_eq!(s["parse_errors"]["bad_udp_length"].as_u64().unwrap_or(0), 0, "{:#}", s["parse_errors"]);
    d.stop();
}
