//! The control plane under careless and hostile local clients: the socket
//! path, slow and idle clients on the control socket, idle connections on
//! the metrics port, batches of rules, and exits that leave nothing behind.

mod common;

use common::daemon::{wait_for, Daemon, VSWITCHCTL, VSWITCHD};
use common::{free_port, metrics_page, TempDir};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn config(dir: &TempDir, metrics: Option<u16>, eal_extra: &str) -> String {
    let listen = metrics.map_or("off".to_owned(), |p| format!("127.0.0.1:{p}"));
    format!(
        "rules = [\"priority=10,in_port=vf0 actions=output:uplink0\"]\n\
         [eal]\nargs = [\"--no-huge\", \"-m\", \"256\", \"--no-pci\", \"--no-telemetry\"{eal_extra}]\n\
         [control]\nsocket = \"{}\"\n[metrics]\nlisten = \"{listen}\"\n\
         [[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_null_c0,no-rx=1\"\n\
         [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null_c1,no-rx=1\"\n",
        dir.path("unused.sock").display()
    )
}

/// One raw request on the socket; the reply line. (A refused connection may
/// be answered and closed before the request is written: a failed write is
/// not an error here, the reply says what happened.)
fn raw(socket: &Path, request: &str) -> String {
    let mut s = UnixStream::connect(socket).expect("connect");
    let _ = s.write_all(request.as_bytes());
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("reply");
    line
}

#[test]
fn the_socket_path_is_never_something_else_and_has_mode_0600_from_the_start() {
    let dir = TempDir::new("sockpath");
    let precious = dir.path("precious.toml");
    std::fs::write(&precious, "keep me").expect("write");
    let cfg = dir.path("vswitchd.toml");
    std::fs::write(&cfg, config(&dir, None, "")).expect("write");
    let out = Command::new(VSWITCHD).arg(&cfg).arg("--socket").arg(&precious).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exists and is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&precious).expect("still there"), "keep me");

    let d = Daemon::start(&dir.0, &config(&dir, None, ""));
    let mode = std::fs::metadata(&d.socket).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second daemon on the same socket is refused; the first keeps it.
    let out = Command::new(VSWITCHD).arg(&cfg).arg("--socket").arg(&d.socket).output().expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("another vswitchd is listening"));
    assert!(d.ctl_json(&["show"]).is_ok());
    d.stop();
}

#[test]
fn slow_and_idle_clients_do_not_block_the_control_socket_or_the_stop() {
    let dir = TempDir::new("slow");
    let d = Daemon::start(&dir.0, &config(&dir, None, ""));
    // A client that sends a byte every 300 ms and never ends its line.
    let slow = {
        let socket = d.socket.clone();
        std::thread::spawn(move || {
            let mut s = UnixStream::connect(&socket).expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
            let started = Instant::now();
            let mut reply = String::new();
            while started.elapsed() < Duration::from_secs(15) {
                if s.write_all(b"{").is_err() {
                    break;
                }
                let mut buf = [0u8; 512];
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => reply.push_str(&String::from_utf8_lossy(&buf[..n])),
                    Err(_) => {}
                }
                if reply.contains('\n') {
                    break;
                }
            }
            (reply, started.elapsed())
        })
    };
    // Idle clients holding connections (not over the limit).
    let idle: Vec<UnixStream> = (0..10).map(|_| UnixStream::connect(&d.socket).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(300));
    // Meanwhile requests are answered: a hundred in a row.
    for _ in 0..100 {
        let r = raw(&d.socket, "{\"cmd\":\"dump-rules\"}\n");
        assert!(r.contains("\"ok\":true"), "{r}");
    }
    let (reply, took) = slow.join().expect("slow client");
    assert!(reply.contains("did not arrive whole within 5 s"), "{reply}");
    assert!(took < Duration::from_secs(8), "cut off at the deadline: {took:?}");
    drop(idle);
    // More connections than the limit: the extra ones are told at once.
    // (The threads of the dropped idle clients notice within a tenth of a
    // second; until then a held connection may be the one refused: retry.)
    let held = wait_for(Duration::from_secs(10), "all held connections accepted", || {
        let held: Vec<UnixStream> =
            (0..vswitch::control::MAX_CONNECTIONS).map(|_| UnixStream::connect(&d.socket).expect("connect")).collect();
        std::thread::sleep(Duration::from_millis(300));
        let refused = held.iter().any(|s| {
            s.set_nonblocking(true).expect("nonblocking");
            let mut b = [0u8; 1];
            (&*s).read(&mut b).is_ok()
        });
        (!refused).then_some(held)
    });
    let busy = raw(&d.socket, "{\"cmd\":\"show\"}\n");
    assert!(busy.contains("connections; try again"), "{busy}\n{}", d.log_text());
    // vswitchctl says the daemon's reason, not "Broken pipe".
    let out = d.ctl(&["show"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("connections; try again"), "{err}");
    // A request over the daemon's limit is refused before it is sent.
    let big = TempDir::new("bigreq");
    let path = big.path("many.rules");
    let line = "priority=1,in_port=vf0,ip,nw_dst=10.0.0.1 actions=drop\n";
    std::fs::write(&path, line.repeat((vswitch::control::MAX_REQUEST / line.len()) + 10)).expect("write");
    let out =
        Command::new(VSWITCHCTL).arg("--socket").arg(&d.socket).args(["add-rules"]).arg(&path).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("over the daemon's limit"), "{err}");
    // A stop with clients connected does not wait for them.
    let _slow_again = UnixStream::connect(&d.socket).expect("connect");
    let (_, took) = d.stop_with("TERM");
    assert!(took < Duration::from_secs(3), "the stop waited on clients: {took:?}");
    drop(held);
}

#[test]
fn idle_metrics_connections_cannot_cut_off_the_control_socket_or_the_scrape() {
    let dir = TempDir::new("metricsflood");
    let port = free_port();
    let d = Daemon::start(&dir.0, &config(&dir, Some(port), ""));
    // The very first scrape has the counters (published before the server
    // answers, not a second later).
    let first = metrics_page(port);
    assert!(first.starts_with("HTTP/1.1 200") && first.contains("vswitch_port_rx_packets_total"), "{first}");
    let idle: Vec<TcpStream> = (0..200).filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok()).collect();
    assert!(idle.len() >= 100, "connections accepted by the kernel: {}", idle.len());
    std::thread::sleep(Duration::from_millis(300));
    // The control socket is unaffected.
    assert!(d.ctl_json(&["show"]).is_ok());
    // A scrape while the idle ones hold the slots: busy, not a hang.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 503") || text.starts_with("HTTP/1.1 200"), "{text}");
    // The idle ones time out after 2 s; then scrapes work, other paths are 404.
    std::thread::sleep(Duration::from_millis(2500));
    let body = metrics_page(port);
    assert!(body.starts_with("HTTP/1.1 200") && body.contains("vswitch_port_rx_packets_total"), "{body}");
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    drop(idle);
    let log = d.stop();
    assert!(log.lines().count() < 200, "no log flood: {} lines", log.lines().count());
}

/// With a low open-file limit (as an unprivileged user's session may set,
/// `prlimit` here), a crowd of idle /metrics connections runs the daemon out
/// of descriptors: it keeps running, the control socket answers once the
/// idle ones time out, a scrape works again, and the log does not flood.
#[test]
fn idle_metrics_connections_under_a_low_file_limit_do_not_take_the_daemon_down() {
    let dir = TempDir::new("fdlimit");
    let port = free_port();
    let d = Daemon::start(&dir.0, &config(&dir, Some(port), ""));
    let open = std::fs::read_dir(format!("/proc/{}/fd", d.pid())).expect("fds").count();
    let limit = open + 12;
    let out = Command::new("prlimit")
        .args(["--pid", &d.pid().to_string(), &format!("--nofile={limit}:{limit}")])
        .output()
        .expect("prlimit (util-linux)");
    assert!(out.status.success(), "prlimit: {}", String::from_utf8_lossy(&out.stderr));
    let idle: Vec<TcpStream> = (0..300).filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok()).collect();
    assert!(idle.len() >= 100, "connections accepted by the kernel: {}", idle.len());
    std::thread::sleep(Duration::from_millis(500));
    // The idle ones time out (2 s) and their descriptors come back.
    std::thread::sleep(Duration::from_millis(2500));
    drop(idle);
    let body = wait_for(Duration::from_secs(10), "a scrape after the crowd", || {
        Some(metrics_page(port))
            .filter(|b| b.starts_with("HTTP/1.1 200") && b.contains("vswitch_port_rx_packets_total"))
    });
    assert!(!body.is_empty());
    wait_for(Duration::from_secs(10), "the control socket", || d.ctl_json(&["show"]).ok());
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", d.pid())).expect("fds").count();
    wait_for(Duration::from_secs(10), &format!("descriptors back to about {open} (now {})", fds()), || {
        (fds() <= open + 4).then_some(())
    });
    let log = d.stop();
    assert!(log.lines().count() < 200, "no log flood: {} lines", log.lines().count());
}

#[test]
fn add_rules_from_a_file_is_all_or_nothing() {
    let dir = TempDir::new("batch");
    let d = Daemon::start(&dir.0, &config(&dir, None, ""));
    let before = d.ctl_json(&["dump-rules"]).expect("rules").as_array().expect("array").len();
    let bad = dir.path("bad.rules");
    std::fs::write(
        &bad,
        "# a comment\npriority=20,in_port=vf0,udp actions=drop\n\npriority=21,in_port=vf9 actions=drop\n",
    )
    .expect("write");
    let out = d.ctl(&["add-rules", bad.to_str().expect("path")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rule 2") && err.contains("vf9") && err.contains("none added"), "{err}");
    assert_eq!(d.ctl_json(&["dump-rules"]).expect("rules").as_array().expect("array").len(), before, "nothing added");
    let good = dir.path("good.rules");
    let text: String = (0..2000)
        .map(|i| format!("priority=5,in_port=vf0,ip,nw_dst=10.{}.{}.0/24 actions=drop\n", i / 256, i % 256))
        .collect();
    std::fs::write(&good, text).expect("write");
    let r = d.ctl_json(&["add-rules", good.to_str().expect("path")]).expect("add-rules");
    assert_eq!(r["added"], 2000, "{r}");
    assert_eq!(d.ctl_json(&["dump-rules"]).expect("rules").as_array().expect("array").len(), before + 2000);
    // Exact duplicates (priority and match), within a batch or of a rule in
    // the table, are refused whole.
    let dup = dir.path("dup.rules");
    std::fs::write(
        &dup,
        "priority=30,in_port=vf0,tcp actions=drop
priority=30,in_port=vf0,tcp actions=output:uplink0
",
    )
    .expect("write");
    let e = d.ctl_json(&["add-rules", dup.to_str().expect("path")]).expect_err("a duplicate in the batch");
    assert!(e.contains("rule 2") && e.contains("rule 1 of this batch") && e.contains("Nothing added"), "{e}");
    let e = d
        .ctl_json(&["add-rule", "priority=5,in_port=vf0,ip,nw_dst=10.0.7.0/24 actions=output:uplink0"])
        .expect_err("a duplicate of a rule in the table");
    assert!(e.contains("already in the table"), "{e}");
    assert_eq!(d.ctl_json(&["dump-rules"]).expect("rules").as_array().expect("array").len(), before + 2000);
    // From standard input too.
    let mut child = Command::new(VSWITCHCTL)
        .arg("--socket")
        .arg(&d.socket)
        .args(["--json", "add-rules", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("vswitchctl");
    child.stdin.take().expect("stdin").write_all(b"priority=6,in_port=vf0,tcp actions=drop\n").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"added\": 1"));
    d.stop();
}

#[test]
fn every_exit_cleans_what_the_daemon_created_and_only_that() {
    // SIGHUP, SIGTERM and SIGINT are clean stops: socket, DPDK runtime
    // directory and generated traffic gone.
    for signal in ["HUP", "TERM", "INT"] {
        let dir = TempDir::new("sig");
        let prefix = format!("vswt-{}-{}", signal.to_lowercase(), std::process::id());
        let text = config(&dir, None, &format!(", \"--file-prefix\", \"{prefix}\""));
        // A port with generated traffic: its pcap lives in the daemon's run directory.
        let text = text.replace(
            "devargs = \"net_null_c0,no-rx=1\"\n",
            "[port.generate]\nflows = 16\ndl_src = \"02:00:00:00:00:10\"\ndl_dst = \"02:00:00:00:00:01\"\n\
             nw_src = \"10.0.0.0\"\nnw_dst = \"10.255.255.1\"\n",
        );
        let d = Daemon::start(&dir.0, &text);
        let runtime = format!("/var/run/dpdk/{prefix}");
        assert!(Path::new(&runtime).exists());
        let generated = std::env::temp_dir().join(format!("vswitchd-{}", d.pid()));
        assert!(generated.exists(), "the generated traffic is in {}", generated.display());
        let socket = d.socket.clone();
        d.stop_with(signal);
        assert!(!socket.exists(), "SIG{signal}: socket left behind");
        assert!(!Path::new(&runtime).exists(), "SIG{signal}: the runtime directory of --file-prefix X left behind");
        assert!(!generated.exists(), "SIG{signal}: generated traffic left behind in {}", generated.display());
    }

    // A failed EAL start removes the runtime directory it created ...
    let dir = TempDir::new("ealfail");
    let prefix = format!("vswt-fail-{}", std::process::id());
    let cfg = dir.path("vswitchd.toml");
    let text = config(&dir, None, &format!(", \"--file-prefix={prefix}\", \"--no-such-eal-option\""));
    std::fs::write(&cfg, text).expect("write");
    let out = Command::new(VSWITCHD).arg(&cfg).arg("--socket").arg(dir.path("s.sock")).output().expect("run");
    assert!(!out.status.success());
    assert!(!Path::new(&format!("/var/run/dpdk/{prefix}")).exists());
    assert!(!dir.path("s.sock").exists());
    // ... and never one another process holds: a second daemon on a live
    // prefix fails without touching the first one's directory.
    let dir2 = TempDir::new("ealbusy");
    let prefix = format!("vswt-busy-{}", std::process::id());
    let d = Daemon::start(&dir2.0, &config(&dir2, None, &format!(", \"--file-prefix={prefix}\"")));
    let cfg = dir2.path("second.toml");
    std::fs::write(&cfg, config(&dir2, None, &format!(", \"--file-prefix={prefix}\""))).expect("write");
    let out = Command::new(VSWITCHD).arg(&cfg).arg("--socket").arg(dir2.path("second.sock")).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("Success"), "a reason, not errno 0: {err}");
    assert!(Path::new(&format!("/var/run/dpdk/{prefix}")).exists(), "the first daemon's directory is kept");
    assert!(d.ctl_json(&["show"]).is_ok());
    d.stop();
}

/// A stop signal while the switch is still starting (here a port whose pcap
/// is a FIFO nobody writes: opening it blocks for ever, as a pool of millions
/// of mbufs takes seconds) ends the daemon at once with status 0, and it
/// leaves nothing behind: socket, DPDK runtime directory, generated traffic.
#[test]
fn a_stop_during_start_up_does_not_wait_for_it_and_cleans_up() {
    let dir = TempDir::new("startstop");
    let fifo = dir.path("never-written.pcap");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let prefix = format!("vswt-startstop-{}", std::process::id());
    let text = config(&dir, None, &format!(", \"--file-prefix\", \"{prefix}\""))
        .replace(
            "devargs = \"net_null_c0,no-rx=1\"\n",
            &format!(
                "devargs = \"net_pcap_blocked0,rx_pcap={},tx_pcap={}\"\n",
                fifo.display(),
                dir.path("tx.pcap").display()
            ),
        )
        // A port with generated traffic too: its pcap is the daemon's to remove.
        .replace(
            "devargs = \"net_null_c1,no-rx=1\"\n",
            "[port.generate]\nflows = 16\ndl_src = \"02:00:00:00:00:10\"\ndl_dst = \"02:00:00:00:00:01\"\n\
             nw_src = \"10.0.0.0\"\nnw_dst = \"10.255.255.1\"\n",
        );
    let cfg = dir.path("vswitchd.toml");
    std::fs::write(&cfg, text).expect("write");
    let socket = dir.path("ctl.sock");
    let log = dir.path("vswitchd.log");
    let mut child = Command::new(VSWITCHD)
        .arg(&cfg)
        .arg("--no-stats")
        .arg("--socket")
        .arg(&socket)
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn vswitchd");
    let pid = child.id();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    // The uplink is up (uplinks open first); the representor's open blocks.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log_text().contains("port up port=uplink0") {
        assert!(child.try_wait().expect("wait").is_none(), "vswitchd exited before starting:\n{}", log_text());
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the uplink did not come up:\n{}", log_text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().expect("wait").is_none(), "the port open must still block:\n{}", log_text());
    let runtime = format!("/var/run/dpdk/{prefix}");
    let generated = std::env::temp_dir().join(format!("vswitchd-{pid}"));
    assert!(socket.exists() && Path::new(&runtime).exists() && generated.exists(), "{}", log_text());
    assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill").success());
    // Without the fix the daemon waits for a start-up that never ends.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vswitchd did not stop during start-up:\n{}", log_text());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = log_text();
    assert!(status.success(), "exit status {status}:\n{text}");
    assert!(text.contains("stop requested during start-up") && text.contains("starting the ports and PMDs"), "{text}");
    assert!(!text.contains("control socket ready"), "{text}");
    assert!(!socket.exists(), "socket left behind");
    assert!(!Path::new(&runtime).exists(), "DPDK runtime directory left behind");
    assert!(!generated.exists(), "generated traffic left behind");
}

/// route-add refuses a gateway off the uplink's connected prefixes (it would
/// be resolved by ARP for an address nobody answers for), and the uplink's
/// own address; an on-link gateway is taken.
#[test]
fn route_add_refuses_off_link_gateways() {
    let dir = TempDir::new("offlink");
    let cfg = config(&dir, None, "")
        .replace("devargs = \"net_null_c1,no-rx=1\"\n", "devargs = \"net_null_c1,no-rx=1\"\nip = \"198.18.0.1/24\"\n");
    let d = Daemon::start(&dir.0, &cfg);
    let e = d.ctl_json(&["route-add", "10.9.0.0/16", "via", "198.19.0.254", "uplink0"]).expect_err("off-link");
    assert!(e.contains("not on a connected prefix of uplink0 (198.18.0.0/24)"), "{e}");
    let e = d.ctl_json(&["route-add", "10.9.0.0/16", "via", "198.18.0.1", "uplink0"]).expect_err("own address");
    assert!(e.contains("uplink0's own address"), "{e}");
    let e = d.ctl_json(&["route-add", "10.9.0.0/16", "via", "198.18.0.0", "uplink0"]).expect_err("network");
    assert!(e.contains("network address of 198.18.0.0/24"), "{e}");
    let e = d.ctl_json(&["route-add", "10.9.0.0/16", "via", "198.18.0.255", "uplink0"]).expect_err("broadcast");
    assert!(e.contains("broadcast address of 198.18.0.0/24"), "{e}");
    d.ctl_json(&["route-add", "10.9.0.0/16", "via", "198.18.0.254", "uplink0"]).expect("on-link");
    let underlay = d.ctl_json(&["dump-underlay"]).expect("dump-underlay");
    assert!(underlay.to_string().contains("10.9.0.0/16"), "{underlay}");
    d.stop();
}

/// Every PMD counter is in `show` under its name and in `/metrics` under the
/// metric its declaration names, with its help text; and `show` still has
/// every key scripts read before the counters were declared in one place.
#[test]
fn every_declared_counter_is_shown_and_exported_with_its_help() {
    use vswitch::datapath::counters::Counter;
    let dir = TempDir::new("counters");
    let port = free_port();
    let d = Daemon::start(&dir.0, &config(&dir, Some(port), ""));
    let show = d.show();
    for &c in Counter::ALL {
        assert!(show.get(c.as_str()).is_some_and(|v| v.is_u64()), "show lacks {}: {show}", c.as_str());
    }
    for key in [
        "packets",
        "hw_packets",
        "emc_hits",
        "smc_hits",
        "megaflow_hits",
        "upcalls",
        "upcall_cycles",
        "flows",
        "flows_expired",
        "flows_revalidated_out",
        "flows_evicted",
        "decapsulated",
        "encapsulated",
        "icmp_too_big_sent",
        "neighbour_replies_sent",
        "neighbour_requests_sent",
        "neighbour_consumed",
        "copies",
        "balance",
        "hw_malformed_forwarded",
        "rules",
        "drops",
        "parse_errors",
        "ports",
        "pmds",
        "uptime_s",
    ] {
        assert!(show.get(key).is_some(), "show lost {key}");
    }
    let page = metrics_page(port);
    for &c in Counter::ALL {
        let m = c.meta();
        let series = match m.label {
            Some((k, v)) => format!("{}{{{k}=\"{v}\"}}", m.name),
            None => format!("{} ", m.name),
        };
        assert!(page.contains(&series), "/metrics lacks {series}:\n{page}");
        assert!(page.contains(&format!("# HELP {} {}", m.name, m.help)), "/metrics lacks the help of {}", m.name);
    }
    d.stop();
}
