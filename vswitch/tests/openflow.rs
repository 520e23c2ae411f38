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
    send_as("ovs_ofctl_adds_modifies_deletes_and_counts_rules", ns, count, dport);
}

/// [`send`] from the helper of test `test`.
fn send_as(test: &str, ns: &str, count: u32, dport: u16) {
    netns::helper_result(netns::helper(ns, test, "send", &format!("{count}:{dport}")));
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

/// A switch with an OpenFlow listener (its socket returned), `vf0` on the
/// namespace's veth and `out0` writing a pcap, and `extra` (sections);
/// `tag` names its devices.
fn listener_config(dir: &TempDir, tag: &str, extra: &str) -> (String, std::path::PathBuf) {
    write_pcap(&dir.path("empty.pcap"), &[]);
    let sock = dir.path("of.sock");
    let config = format!(
        "rules = [\"priority=0 actions=drop\"]\n\
         [eal]\nargs = [\"--no-huge\", \"-m\", \"512\", \"--no-pci\", \"--no-telemetry\", \"--log-level=lib.eal:warning\"]\n\n\
         [control]\nsocket = \"unused\"\n\n[metrics]\nlisten = \"off\"\n\n\
         [openflow]\nlisten = [\"punix:{}\"]\n\n\
         [[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_af_packet_{tag},iface=va\"\n\n\
         [[port]]\nname = \"out0\"\nrole = \"uplink\"\ndevargs = \"net_pcap_{tag}out,rx_pcap={},tx_pcap={}\"\n\n{extra}",
        sock.display(),
        dir.path("empty.pcap").display(),
        dir.path("out.pcap").display()
    );
    (config, sock)
}

#[test]
fn ovs_ofctl_adds_modifies_deletes_and_counts_rules() {
    if std::env::var(netns::HELPER_ROLE).is_ok() {
        return sender();
    }
    let veth = Veth::build("vsof");
    let dir = TempDir::new("openflow");
    let tap = "[[port]]\nname = \"tap0\"\nrole = \"representor\"\ndevargs = \"net_tap_of,iface=oftap0\"\n";
    let (config, sock) = listener_config(&dir, "of", tap);
    let d = Daemon::start_in(Some(&veth.ns), &dir.0, &config, &[]);
    let t = format!("unix:{}", sock.display());
    let t = t.as_str();

    // The switch as ovs-ofctl sees it: its ports by name, 254 tables.
    let show = must(t, &["show"]);
    assert!(show.contains("n_tables:254") && show.contains("1(vf0)") && show.contains("2(out0)"), "{show}");
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

    // packet-out: the controller's frame leaves by out0 (and by nothing
    // else: FLOOD from vf0 skips vf0).
    let frame = "02000000000202000000000108060001080006040001020000000001";
    let (ok, text) =
        ofctl(t, &["packet-out", &format!("in_port=vf0 packet={frame}0a4d00010000000000000a4d0002 actions=FLOOD")]);
    assert!(ok, "{text}");
    wait_for(Duration::from_secs(5), "the packet-out on out0", || {
        (port(&d.show(), "out0")["tx_packets"].as_u64() == Some(101)).then_some(())
    });

    // Statistics by port and table.
    let ports = must(t, &["dump-ports", "1"]);
    assert!(ports.contains("rx pkts=170"), "{ports}");
    let tables = must(t, &["dump-tables"]);
    assert!(tables.contains("active=4"), "{tables}");

    // Two tables: table 0 rewrites the destination MAC and goes on to table
    // 5, whose rule matches the rewritten address (the datagrams' own
    // destination is 02:00:00:00:00:77). Both rules count the packets.
    must(t, &["add-flow", "priority=95,in_port=vf0,udp,tp_dst=7000,actions=mod_dl_dst:02:00:00:00:00:55,goto_table:5"]);
    must(t, &["add-flow", "table=5,priority=10,dl_dst=02:00:00:00:00:55,actions=output:out0"]);
    send(&veth.ns, 30, 7000);
    wait_for(Duration::from_secs(10), "30 more datagrams out of out0", || {
        (port(&d.show(), "out0")["tx_packets"].as_u64() == Some(131)).then_some(())
    });
    let dump = must(t, &["dump-flows"]);
    assert_eq!(packets(&dump, "priority=95"), 30, "{dump}");
    assert_eq!(packets(&dump, "table=5"), 30, "{dump}");
    assert!(dump.contains("goto_table:5"), "{dump}");
    let tables = must(t, &["dump-tables"]).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(tables.contains("table 5: active=1, lookup=30, matched=30"), "{tables}");
    let rules = d.ctl_json(&["dump-rules"]).expect("dump-rules");
    assert!(rules.as_array().expect("rules").iter().any(|r| r["table"] == 5 && r["origin"] == "openflow"), "{rules}");
    must(t, &["del-flows", "table=5"]);

    // Asynchronous messages to a tool: `ovs-ofctl monitor` with a
    // miss_send_len sees packet-ins and the port status of a link that goes
    // down and up (the net_tap port's interface; net_af_packet in DPDK 22.11
    // reports its link up whatever the interface does).
    must(t, &["add-flow", "priority=200,in_port=vf0,udp,tp_dst=9000,actions=controller"]);
    let monitor = Monitor::start(t, &dir.path("monitor.txt"));
    // (It prints nothing when ready: a datagram at a time until one shows.)
    wait_for(Duration::from_secs(10), "a packet-in in ovs-ofctl monitor", || {
        send(&veth.ns, 1, 9000);
        std::thread::sleep(Duration::from_millis(100));
        monitor.text().contains("OFPT_PACKET_IN").then_some(())
    });
    let before = monitor.text().matches("OFPT_PACKET_IN").count();
    send(&veth.ns, 3, 9000);
    wait_for(Duration::from_secs(10), "3 more packet-ins in ovs-ofctl monitor", || {
        (monitor.text().matches("OFPT_PACKET_IN").count() >= before + 3).then_some(())
    });
    netns::must("ip", &["-n", &veth.ns, "link", "set", "oftap0", "down"]);
    wait_for(Duration::from_secs(10), "tap0's link down in ovs-ofctl monitor", || {
        monitor.text().contains("OFPT_PORT_STATUS").then_some(())
    });
    netns::must("ip", &["-n", &veth.ns, "link", "set", "oftap0", "up"]);
    wait_for(Duration::from_secs(10), "tap0's link up again", || {
        (monitor.text().matches("OFPT_PORT_STATUS").count() == 2).then_some(())
    });
    let text = monitor.text();
    assert!(text.contains("MOD: 3(tap0)") && text.contains("LINK_DOWN"), "{text}");
    assert!(text.contains("in_port=1 (via action)"), "{text}");
    // FLOW_REMOVED: a rule that asked for it, deleted after 7 hits, is
    // reported with all 7 (read once the datapath has let it go).
    must(t, &["add-flow", "send_flow_rem,priority=150,in_port=vf0,udp,tp_dst=9100,actions=drop"]);
    send(&veth.ns, 7, 9100);
    wait_for(Duration::from_secs(10), "7 datagrams on the send_flow_rem rule", || {
        (packets(&must(t, &["dump-flows"]), "priority=150") == 7).then_some(())
    });
    must(t, &["del-flows", "--strict", "priority=150,in_port=vf0,udp,tp_dst=9100"]);
    wait_for(Duration::from_secs(10), "FLOW_REMOVED in ovs-ofctl monitor", || {
        monitor.text().contains("OFPT_FLOW_REMOVED").then_some(())
    });
    let text = monitor.text();
    let removed: Vec<&str> = text.lines().skip_while(|l| !l.contains("OFPT_FLOW_REMOVED")).take(2).collect();
    let removed = removed.join(" ");
    assert!(removed.contains("tp_dst=9100") && removed.contains("reason=delete"), "{text}");
    assert!(removed.contains(" pkts7 "), "all 7 hits: {text}");
    drop(monitor);
    must(t, &["del-flows", "--strict", "priority=200,in_port=vf0,udp,tp_dst=9000"]);

    // del-flows --strict removes one rule; del-flows by cookie another; a
    // loose del-flows the rest of vf0's, not the file's catch-all.
    must(t, &["del-flows", "--strict", "priority=90,in_port=vf0,udp"]);
    assert!(!must(t, &["dump-flows"]).contains("priority=90"));
    must(t, &["del-flows", "in_port=vf0"]);
    let left = d.ctl_json(&["dump-rules"]).expect("dump-rules");
    assert_eq!(left.as_array().map(Vec::len), Some(1), "only the file's rule: {left}");

    // Refusals carry the spec's codes, and the session stays usable.
    let (ok, text) = ofctl(t, &["add-flow", "table=254,actions=drop"]);
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

/// FLOW_REMOVED carries the hits the e-switch counted: with the model
/// offloading every megaflow, a rule's datagrams after the first are
/// counted in hardware, and the FLOW_REMOVED of its deletion has them all
/// (the hardware's last counts, taken when its rule is destroyed).
#[test]
fn flow_removed_counts_the_hits_in_hardware() {
    const TEST: &str = "flow_removed_counts_the_hits_in_hardware";
    if std::env::var(netns::HELPER_ROLE).is_ok() {
        return sender();
    }
    let veth = Veth::build("vsfr");
    let dir = TempDir::new("openflow-hw");
    let offload = "[offload]\ndevice = \"model\"\npolicy = \"all\"\nquery_interval_ms = 50\n";
    let (config, sock) = listener_config(&dir, "fr", offload);
    let d = Daemon::start_in(Some(&veth.ns), &dir.0, &config, &[]);
    let t = format!("unix:{}", sock.display());
    let t = t.as_str();
    // The monitor is connected once it shows a packet-in.
    must(t, &["add-flow", "priority=200,in_port=vf0,udp,tp_dst=9000,actions=controller"]);
    let monitor = Monitor::start(t, &dir.path("monitor.txt"));
    wait_for(Duration::from_secs(10), "a packet-in in ovs-ofctl monitor", || {
        send_as(TEST, &veth.ns, 1, 9000);
        std::thread::sleep(Duration::from_millis(100));
        monitor.text().contains("OFPT_PACKET_IN").then_some(())
    });
    must(t, &["add-flow", "send_flow_rem,priority=150,in_port=vf0,udp,tp_dst=9100,actions=output:out0"]);
    // The first datagram makes the megaflow, which goes into the e-switch;
    // the next six are the e-switch's.
    send_as(TEST, &veth.ns, 1, 9100);
    let flow = |d: &Daemon| {
        let flows = d.ctl_json(&["dump-flows"]).expect("dump-flows");
        flows.as_array().expect("flows").iter().find(|f| f["priority"] == 150).cloned()
    };
    wait_for(Duration::from_secs(10), "the megaflow in hardware", || {
        flow(&d).filter(|f| f["offload"] == "hw").map(|_| ())
    });
    send_as(TEST, &veth.ns, 6, 9100);
    wait_for(Duration::from_secs(10), "7 datagrams on the rule, 6 of them in hardware", || {
        let hw = flow(&d).and_then(|f| f["hw_packets"].as_u64());
        (packets(&must(t, &["dump-flows"]), "priority=150") == 7 && hw == Some(6)).then_some(())
    });
    must(t, &["del-flows", "--strict", "priority=150,in_port=vf0,udp,tp_dst=9100"]);
    wait_for(Duration::from_secs(10), "FLOW_REMOVED in ovs-ofctl monitor", || {
        monitor.text().contains("OFPT_FLOW_REMOVED").then_some(())
    });
    let text = monitor.text();
    let removed: Vec<&str> = text.lines().skip_while(|l| !l.contains("OFPT_FLOW_REMOVED")).take(2).collect();
    assert!(removed.join(" ").contains(" pkts7 "), "all 7 hits, 6 of them in hardware: {text}");
    drop(monitor);
    d.stop();
}

/// `ovs-ofctl -O OpenFlow13 monitor TARGET 65535`, its output to a file;
/// ended (by its PID) on drop.
struct Monitor {
    _child: Reaped,
    out: std::path::PathBuf,
}

impl Monitor {
    fn start(target: &str, out: &std::path::Path) -> Self {
        let file = std::fs::File::create(out).expect("monitor output");
        let child = Command::new("ovs-ofctl")
            .args(["-O", "OpenFlow13", "monitor", target, "65535"])
            .arg(format!("--unixctl={}", out.with_extension("ctl").display()))
            .stdout(file.try_clone().expect("file"))
            .stderr(file)
            .spawn()
            .expect("ovs-ofctl monitor");
        Self { _child: Reaped(child), out: out.to_owned() }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

/// A child process this test started, killed and reaped on drop.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two VMs (namespaces) on veth pairs whose host ends are vswitchd's
/// net_af_packet ports. Removed on drop.
struct Vms {
    ns: [String; 2],
    host: [String; 2],
}

impl Vms {
    fn build() -> Self {
        let id = std::process::id() % 100_000;
        let v = Self {
            ns: [format!("vsof-a-{id}"), format!("vsof-b-{id}")],
            host: [format!("vofa{id}"), format!("vofb{id}")],
        };
        for (i, (ns, host)) in v.ns.iter().zip(&v.host).enumerate() {
            netns::must("ip", &["netns", "add", ns]);
            netns::must("ip", &["link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns]);
            netns::must("ip", &["link", "set", host, "addrgenmode", "none"]);
            netns::must("sysctl", &["-qw", &format!("net.ipv6.conf.{host}.disable_ipv6=1")]);
            netns::must("ip", &["link", "set", host, "up"]);
            netns::must_ns(ns, "sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            netns::must_ns(ns, "ip", &["link", "set", "eth0", "address", &format!("02:00:00:00:0f:0{}", i + 1), "up"]);
            netns::must_ns(ns, "ip", &["addr", "add", &format!("10.99.0.{}/24", i + 1), "dev", "eth0"]);
        }
        v
    }
}

impl Drop for Vms {
    fn drop(&mut self) {
        for (ns, host) in self.ns.iter().zip(&self.host) {
            let _ = netns::run("ip", &["link", "del", host]);
            let _ = netns::run("ip", &["netns", "del", ns]);
        }
    }
}

/// vswitchd with the two VMs' ports, offload into the model e-switch, and
/// the controller at `controller` (IP:PORT).
fn vms_config(vms: &Vms, controller: &str) -> String {
    format!(
        "rules = []\n\
         [eal]\nargs = [\"--no-huge\", \"-m\", \"512\", \"--no-pci\", \"--no-telemetry\", \"--log-level=lib.eal:warning\"]\n\n\
         [control]\nsocket = \"unused\"\n\n[metrics]\nlisten = \"off\"\n\n\
         [offload]\ndevice = \"model\"\npolicy = \"all\"\nquery_interval_ms = 50\n\n\
         [openflow]\ncontrollers = [\"tcp:{controller}\"]\n\n\
         [[port]]\nname = \"vm0\"\nrole = \"representor\"\ndevargs = \"net_af_packet_ca,iface={}\"\n\n\
         [[port]]\nname = \"vm1\"\nrole = \"representor\"\ndevargs = \"net_af_packet_cb,iface={}\"\n",
        vms.host[0], vms.host[1]
    )
}

/// What the test's controller saw and did.
#[derive(Debug, Default, Clone)]
struct Learned {
    packet_ins: u64,
    flow_mods: u64,
    packet_outs: u64,
    /// The reasons of the packet-ins.
    no_match: u64,
}

/// A learning switch in the style of Ryu's simple_switch_13, written
/// against this project's codec: a table-miss entry to the controller,
/// MACs learned from packet-ins, a flow per (in_port, eth_src, eth_dst)
/// once the destination is known, packet-out (flood when unknown).
fn learning_switch(
    listener: std::net::TcpListener,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Learned>>,
) {
    use openflow::action::{port as ofp, NO_BUFFER};
    use openflow::oxm::{Field, Oxm};
    use openflow::{Action, FlowMod, Instruction, Match, Message, PacketOut};
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let (mut s, _) = listener.accept().expect("the switch connects");
    s.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let send = |s: &mut std::net::TcpStream, m: &Message| s.write_all(&openflow::encode(7, m)).expect("send");
    send(&mut s, &Message::Hello(openflow::Hello::ours()));
    let apply = |a: Vec<Action>| vec![Instruction::ApplyActions(a)];
    let miss = FlowMod {
        priority: 0,
        instructions: apply(vec![Action::Output { port: ofp::CONTROLLER, max_len: openflow::action::NO_BUFFER_LEN }]),
        ..Default::default()
    };
    send(&mut s, &Message::FlowMod(miss));
    let mut macs: std::collections::HashMap<u128, u32> = std::collections::HashMap::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        while let openflow::Frame::Complete(n) = openflow::frame_len(&buf) {
            let frame: Vec<u8> = buf.drain(..n).collect();
            let (_, msg) = openflow::decode(&frame).expect("the switch sends valid messages");
            let p = match msg {
                Message::EchoRequest(d) => {
                    send(&mut s, &Message::EchoReply(d));
                    continue;
                }
                Message::Error(e) => panic!("the switch refused the controller: {e:?}"),
                Message::PacketIn(p) => p,
                _ => continue,
            };
            let in_port = p.matcher.exact(Field::InPort).expect("in_port") as u32;
            let mac = |b: &[u8]| b.iter().fold(0u128, |a, &x| (a << 8) | u128::from(x));
            let (dst, src) = (mac(&p.data[0..6]), mac(&p.data[6..12]));
            macs.insert(src, in_port);
            let out = macs.get(&dst).copied();
            {
                let mut l = seen.lock().expect("lock");
                l.packet_ins += 1;
                l.no_match += u64::from(p.reason == openflow::packet_in_reason::NO_MATCH);
            }
            if let Some(port) = out {
                let m = Match::new(vec![
                    Oxm::exact(Field::InPort, u128::from(in_port)),
                    Oxm::exact(Field::EthDst, dst),
                    Oxm::exact(Field::EthSrc, src),
                ]);
                let fm = FlowMod {
                    priority: 1,
                    matcher: m,
                    instructions: apply(vec![Action::Output { port, max_len: 0 }]),
                    ..Default::default()
                };
                send(&mut s, &Message::FlowMod(fm));
                seen.lock().expect("lock").flow_mods += 1;
            }
            let po = PacketOut {
                buffer_id: NO_BUFFER,
                in_port,
                actions: vec![Action::Output { port: out.unwrap_or(ofp::FLOOD), max_len: 0 }],
                data: p.data.clone(),
            };
            send(&mut s, &Message::PacketOut(po));
            seen.lock().expect("lock").packet_outs += 1;
        }
    }
}

/// An active controller drives the switch: vswitchd connects to it, the
/// table-miss entry sends the VMs' first packets to it (PACKET_IN), it
/// learns their MACs, answers with PACKET_OUT and installs flows; then the
/// VMs' pings go by those flows alone, offloaded to the model e-switch.
#[test]
fn a_learning_switch_controller_lets_two_vms_ping() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let vms = Vms::build();
    let dir = TempDir::new("openflow-ctl");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("controller listener");
    let addr = listener.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Learned::default()));
    let controller = {
        let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
        std::thread::spawn(move || learning_switch(listener, stop, seen))
    };
    let config = vms_config(&vms, &addr.to_string());
    let d = Daemon::start(&dir.0, &config);
    wait_for(Duration::from_secs(10), "the controller's table-miss entry", || {
        let r = d.ctl_json(&["dump-rules"]).ok()?;
        r.as_array().is_some_and(|a| a.iter().any(|r| r["origin"] == "controller")).then_some(())
    });
    let (ok, out) = netns::ping(&vms.ns[0], &["-c", "3", "-i", "0.2", "-W", "2", "10.99.0.2"]);
    assert!(ok, "ping through the controller's switch:\n{out}\n{}", d.log_text());
    let learned = seen.lock().expect("lock").clone();
    assert!(learned.packet_ins >= 2 && learned.flow_mods >= 2, "{learned:?}");
    assert!(learned.no_match >= 1, "the table-miss entry's packet-ins say NO_MATCH: {learned:?}");
    // Now the flows carry the pings: no more packet-ins, and in the model
    // e-switch.
    let (ok, out) = netns::ping(&vms.ns[0], &["-c", "20", "-i", "0.05", "-W", "2", "10.99.0.2"]);
    assert!(ok, "{out}");
    let after = seen.lock().expect("lock").clone();
    assert_eq!(after.packet_ins, learned.packet_ins, "the pings went by the learned flows: {after:?}");
    let flows = d.ctl_json(&["dump-flows"]).expect("dump-flows");
    let hw = flows.as_array().expect("flows").iter().filter(|f| f["offload"] == "hw").count();
    assert!(hw >= 2, "the learned flows are in the model e-switch:\n{flows:#}");
    let rules = d.ctl_json(&["dump-rules"]).expect("dump-rules");
    let miss = rules.as_array().expect("rules").iter().find(|r| r["priority"] == 0).cloned().expect("table-miss entry");
    assert!(miss["text"].as_str().is_some_and(|t| t.contains("controller")), "{miss}");
    let show = d.show();
    assert!(show["to_controller"].as_u64().unwrap_or(0) >= learned.packet_ins, "{show}");
    stop.store(true, Ordering::Relaxed);
    let log = d.stop();
    let _ = controller.join();
    assert!(log.contains("openflow controller connected"), "{log}");
}

/// A virtualenv with os-ken (made once under the target directory).
fn osken_python() -> std::path::PathBuf {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/osken-venv");
    let python = venv.join("bin/python");
    let ready = || Command::new(&python).args(["-c", "import os_ken"]).output().is_ok_and(|o| o.status.success());
    if !ready() {
        let made =
            Command::new("python3").args(["-m", "venv"]).arg(&venv).output().expect("python3 (Debian: python3-venv)");
        assert!(made.status.success(), "python3 -m venv: {}", String::from_utf8_lossy(&made.stderr));
        let pip = Command::new(venv.join("bin/pip")).args(["install", "-q", "os-ken==4.2.2"]).output().expect("pip");
        assert!(
            pip.status.success(),
            "pip install os-ken (PyPI must be reachable): {}",
            String::from_utf8_lossy(&pip.stderr)
        );
    }
    python
}

/// The same with a controller nobody here wrote the framework of: a
/// learning switch on os-ken 4.2.2 (tests/osken/learning_switch.py, in the
/// style of Ryu's simple_switch_13), as vswitchd's active controller.
#[test]
fn an_os_ken_learning_switch_lets_two_vms_ping() {
    let python = osken_python();
    let vms = Vms::build();
    let dir = TempDir::new("openflow-osken");
    let port = common::free_port();
    let stats = dir.path("osken.json");
    let log = std::fs::File::create(dir.path("osken.log")).expect("log");
    // Ended (by its PID) on drop, also when an assertion fails first.
    let osken = Reaped(
        Command::new(python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/osken/run.py"))
            .arg(port.to_string())
            .env("VSWT_OSKEN_STATS", &stats)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("os-ken"),
    );
    let read = || -> Option<serde_json::Value> { serde_json::from_str(&std::fs::read_to_string(&stats).ok()?).ok() };
    let osken_log = || std::fs::read_to_string(dir.path("osken.log")).unwrap_or_default();
    wait_for(Duration::from_secs(20), "os-ken listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok().then_some(())
    });
    let d = Daemon::start(&dir.0, &vms_config(&vms, &format!("127.0.0.1:{port}")));
    wait_for(Duration::from_secs(20), "os-ken's two tables' entries", || {
        let r = d.ctl_json(&["dump-rules"]).ok()?;
        (r.as_array()?.iter().filter(|r| r["origin"] == "controller").count() == 2).then_some(())
    });
    let (ok, out) = netns::ping(&vms.ns[0], &["-c", "3", "-i", "0.2", "-W", "2", "10.99.0.2"]);
    assert!(ok, "ping through os-ken's switch:\n{out}\n{}\n{}", d.log_text(), osken_log());
    let learned = read().expect("os-ken's counts");
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    assert_eq!(n(&learned, "n_tables"), 254, "{learned}");
    assert!(n(&learned, "packet_ins") >= 2 && n(&learned, "flows") >= 4, "{learned}");
    assert!(n(&learned, "no_match") >= 1, "{learned}");
    assert_eq!(learned["packet_in_tables"], serde_json::json!([1]), "table 1's miss entry sent them: {learned}");
    let (ok, out) = netns::ping(&vms.ns[0], &["-c", "20", "-i", "0.05", "-W", "2", "10.99.0.2"]);
    assert!(ok, "{out}");
    let after = read().expect("os-ken's counts");
    assert_eq!(n(&after, "packet_ins"), n(&learned, "packet_ins"), "the pings went by the learned flows: {after}");
    let flows = d.ctl_json(&["dump-flows"]).expect("dump-flows");
    let hw = flows.as_array().expect("flows").iter().filter(|f| f["offload"] == "hw").count();
    assert!(hw >= 2, "the learned flows are in the model e-switch:\n{flows:#}");
    // os-ken's flow statistics: every packet went through table 0's rule and
    // on to one of table 1's, whose counts add up to it; the learned flows
    // took the 20 pings and their replies.
    let totals = wait_for(Duration::from_secs(10), "os-ken's statistics after the pings", || {
        let s = read()?;
        let flows = s["flow_stats"].as_array()?.clone();
        let sum = |table: u64, min_priority: u64| -> u64 {
            flows
                .iter()
                .filter(|f| f["table"] == table && f["priority"].as_u64() >= Some(min_priority))
                .map(|f| f["packets"].as_u64().unwrap_or(0))
                .sum()
        };
        (sum(1, 1) >= 40).then(|| (sum(0, 0), sum(1, 0), sum(1, 1), s))
    });
    let (table0, table1, learned_flows, s) = totals;
    eprintln!("os-ken's flow statistics: table 0 {table0} packets, table 1 {table1} (learned flows {learned_flows})");
    assert_eq!(table0, table1, "table 0's rule counts every packet table 1 counts: {s}");
    assert!(learned_flows >= 40 && table0 > learned_flows, "{s}");
    let log = d.stop();
    drop(osken);
    assert!(log.contains("openflow controller connected"), "{log}");
}
