//! vswitchd as a systemd `Type=notify` service, without systemd: the test
//! plays the service manager on a notify socket of its own. READY once the
//! ports and the control socket are up, STOPPING on SIGTERM; the watchdog
//! fed while every PMD makes progress and no longer once one is stuck (the
//! test hook VSWITCHD_TEST_STALL_PMD stalls one). JSON log lines.

mod common;

use common::daemon::VSWITCHD;
use common::TempDir;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn config(dir: &TempDir, pmds: &str) -> String {
    format!(
        "rules = [\"priority=1 actions=drop\"]\n\
         [eal]\nargs = [\"--no-huge\", \"-m\", \"512\", \"--no-pci\", \"--no-telemetry\", \"--log-level=lib.eal:warning\"]\n\
         [datapath]\npmd_cores = [{pmds}]\n[control]\nsocket = \"{}\"\n[metrics]\nlisten = \"off\"\n\
         [[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_null_svc0\"\n",
        dir.path("ctl.sock").display()
    )
}

/// The notifications received within `timeout` until `until` is among them.
fn receive_until(sock: &UnixDatagram, until: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = text.lines().any(|l| l == until);
            got.push(text);
            if done {
                break;
            }
        }
    }
    got
}

fn stop(child: &mut std::process::Child) -> std::process::ExitStatus {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(Instant::now() < deadline, "vswitchd did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ready_and_stopping_reach_the_service_manager_and_logs_can_be_json() {
    let dir = TempDir::new("svc");
    let cfg = dir.path("vswitchd.toml");
    std::fs::write(&cfg, config(&dir, "0")).expect("config");
    let notify = dir.path("notify.sock");
    let manager = UnixDatagram::bind(&notify).expect("bind notify socket");
    let mut child = Command::new(VSWITCHD)
        .arg(&cfg)
        .args(["--no-stats", "--log-format", "json"])
        .env("NOTIFY_SOCKET", &notify)
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.path("log.json")).expect("log")))
        .spawn()
        .expect("vswitchd");
    let ready = receive_until(&manager, "READY=1", Duration::from_secs(30));
    assert!(ready.iter().any(|m| m.lines().any(|l| l == "READY=1")), "no READY=1: {ready:?}");
    let text = ready.join("\n");
    assert!(text.contains("STATUS=forwarding: 1 ports, 1 PMDs"), "{text}");
    assert!(text.contains(&format!("MAINPID={}", child.id())), "{text}");
    // READY means the control socket answers.
    let out = Command::new(common::daemon::VSWITCHCTL)
        .args(["--socket", &dir.path("ctl.sock").display().to_string(), "--json", "show"])
        .output()
        .expect("vswitchctl");
    assert!(out.status.success(), "control socket not up at READY: {}", String::from_utf8_lossy(&out.stderr));
    let status = stop(&mut child);
    let stopping = receive_until(&manager, "STOPPING=1", Duration::from_secs(5));
    assert!(status.success(), "{status}");
    assert!(stopping.iter().any(|m| m.lines().any(|l| l == "STOPPING=1")), "no STOPPING=1: {stopping:?}");
    // No watchdog asked for: none fed.
    assert!(!ready.iter().chain(&stopping).any(|m| m.contains("WATCHDOG=1")));
    // Every log line is a JSON object, with no terminal colour codes.
    let log = std::fs::read_to_string(dir.path("log.json")).expect("log");
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty() && l.starts_with('{')).collect();
    assert!(lines.len() >= 3, "{log}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{l}");
    }
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a log that is not a terminal");
}

#[test]
fn the_watchdog_is_fed_while_the_pmds_run_and_not_once_one_is_stuck() {
    let dir = TempDir::new("svc-wd");
    let cfg = dir.path("vswitchd.toml");
    std::fs::write(&cfg, config(&dir, "0, 1")).expect("config");
    let notify = dir.path("notify.sock");
    let manager = UnixDatagram::bind(&notify).expect("bind notify socket");
    // A watchdog of 1 s (fed every 0.5 s); PMD 1 stalls 3 s after start.
    let mut child = Command::new(VSWITCHD)
        .arg(&cfg)
        .arg("--no-stats")
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "1000000")
        .env("VSWITCHD_TEST_STALL_PMD", "1:3")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.path("log")).expect("log")))
        .spawn()
        .expect("vswitchd");
    let ready = receive_until(&manager, "READY=1", Duration::from_secs(30));
    assert!(ready.iter().any(|m| m.contains("READY=1")), "{ready:?}");
    let started = Instant::now();
    // Fed while both PMDs iterate.
    let mut feeds = Vec::new();
    let mut buf = [0u8; 512];
    manager.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    while started.elapsed() < Duration::from_secs(7) {
        if let Ok(n) = manager.recv(&mut buf) {
            if &buf[..n] == b"WATCHDOG=1" {
                feeds.push(started.elapsed());
            }
        }
    }
    let status = stop(&mut child);
    let log = std::fs::read_to_string(dir.path("log")).expect("log");
    assert!(status.success(), "{status}\n{log}");
    eprintln!("fed at {feeds:?}");
    assert!(feeds.iter().filter(|t| **t < Duration::from_secs(2)).count() >= 2, "not fed while running: {feeds:?}");
    // PMD 1 stalls at about 3 s after start (at its next once-a-second
    // check, so by 4 s); the next check sees no progress and stops feeding.
    let last = feeds.last().copied().unwrap_or_default();
    assert!(last < Duration::from_secs(5), "still fed after the PMD stalled: {feeds:?}\n{log}");
    assert!(log.contains("PMD made no progress") && log.contains("pmd=1"), "{log}");
    // Plain text lines: no terminal colour codes when stderr is a file.
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a log that is not a terminal:\n{log}");
}
