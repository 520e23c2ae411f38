//! Packet-in round trips per second to an os-ken controller: a pcap of one
//! UDP flow replayed without pause (net_pcap `infinite_rx`) into port 1,
//! whose only rule is os-ken's table-miss entry (`output:CONTROLLER`); the
//! app (vswitch/tests/osken/packet_echo.py) answers every PACKET_IN with a
//! PACKET_OUT of the frame to port 2, a net_null port. A round trip is a
//! packet-out that left port 2; the rate is over `seconds` once the first
//! ones are out. The switch is offered far more than it can punt: what it
//! sustains is what matters, and the packets it did not punt are counted
//! drops (vswitchd: `controller_limit` at the per-PMD queue and rate).
//! With `--peer ovs`, Open vSwitch's DPDK datapath with the same ports,
//! pcap and app, in the same run.

use crate::ours::{vswitchd_path, Daemon};
use crate::scenario::{write_pcap, Scenario};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vswitch::control::{call, Request};

/// What one switch sustained.
struct Rates {
    round_trips: f64,
    packet_ins: Option<f64>,
    dropped: Option<f64>,
}

/// os-ken running packet_echo.py on a port; ended (by its PID) on drop.
struct Controller(Child);

impl Controller {
    fn start(python: &Path, port: u16, log: &Path) -> Result<Self> {
        let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vswitch/tests/osken/run.py");
        let file = std::fs::File::create(log)?;
        let child = Command::new(python)
            .arg(&run)
            .arg(port.to_string())
            .arg("packet_echo")
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()
            .with_context(|| format!("starting os-ken ({})", python.display()))?;
        let c = Self(child);
        let up = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if up.elapsed() > Duration::from_secs(30) {
                bail!("os-ken did not listen on {port}; see {}", log.display());
            }
            crate::nap(Duration::from_millis(100))?;
        }
        Ok(c)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The venv's python with os-ken 4.2.2 (made, as the tests make it, under
/// the target directory when missing).
fn osken_python() -> Result<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/osken-venv");
    let python = venv.join("bin/python");
    let ready = || Command::new(&python).args(["-c", "import os_ken"]).output().is_ok_and(|o| o.status.success());
    if !ready() {
        let ok = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().context("python3 -m venv")?;
        if !ok.success() {
            bail!("python3 -m venv {} failed (Debian: apt-get install python3-venv)", venv.display());
        }
        let pip = venv.join("bin/pip");
        let ok = Command::new(&pip).args(["install", "-q", "os-ken==4.2.2"]).status().context("pip")?;
        if !ok.success() {
            bail!("pip install os-ken==4.2.2 failed (PyPI must be reachable)");
        }
    }
    Ok(python)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn config(pcap: &Path, socket: &Path, core: usize, controller: u16) -> String {
    format!(
        "rules = []\n\
         [eal]\nargs = [\"--no-huge\", \"-m\", \"256\", \"--no-pci\", \"--no-telemetry\", \"--log-level=lib.eal:warning\"]\n\
         [datapath]\npmd_cores = [{core}]\n[control]\nsocket = \"{}\"\n[metrics]\nlisten = \"off\"\n\
         [openflow]\nlisten = []\ncontrollers = [\"tcp:127.0.0.1:{controller}\"]\npacket_in_rate = 10000000\n\
         [[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_pcap_pi0,rx_pcap={},infinite_rx=1\"\n\
         [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_null_pi1,no-rx=1\"\n",
        socket.display(),
        pcap.display()
    )
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn uplink_tx(s: &Value) -> u64 {
    s["ports"].as_array().into_iter().flatten().filter(|p| p["name"] == "uplink0").map(|p| u(&p["tx_packets"])).sum()
}

/// Waits until `count` grows (the first round trips are out), then returns
/// its growth per second over `seconds`, with `extra`'s likewise.
fn sustained<T: Fn() -> Result<(u64, Vec<u64>)>>(count: T, seconds: u64, what: &str) -> Result<(f64, Vec<f64>)> {
    let up = Instant::now();
    let first = count()?.0;
    while count()?.0 == first {
        if up.elapsed() > Duration::from_secs(60) {
            bail!("no packet-out left {what} within 60 s");
        }
        crate::nap(Duration::from_millis(100))?;
    }
    // A second to settle, then the window.
    crate::nap(Duration::from_secs(1))?;
    let (a, ax) = count()?;
    let t0 = Instant::now();
    crate::nap(Duration::from_secs(seconds))?;
    let (b, bx) = count()?;
    let secs = t0.elapsed().as_secs_f64();
    let rate = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
    Ok((rate(a, b), ax.iter().zip(&bx).map(|(x, y)| rate(*x, *y)).collect()))
}

fn ours(bin: &Path, out: &Path, pcap: &Path, core: usize, python: &Path, seconds: u64) -> Result<Rates> {
    let port = free_port()?;
    let _osken = Controller::start(python, port, &out.join("packetin-osken.log"))?;
    let socket = out.join("packetin-bench.sock");
    let cfg = out.join("packetin-bench.toml");
    std::fs::write(&cfg, config(pcap, &socket, core, port))?;
    let log = out.join("packetin-bench.log");
    let _daemon = Daemon::vswitchd(bin, &cfg, &log)?;
    let show = || -> Result<Value> {
        call(&socket, &Request::Show).with_context(|| format!("vswitchd's control socket (log: {})", log.display()))
    };
    let up = Instant::now();
    while show().is_err() {
        if up.elapsed() > Duration::from_secs(60) {
            bail!("vswitchd did not start; see {}", log.display());
        }
        crate::nap(Duration::from_millis(100))?;
    }
    let (rt, extra) = sustained(
        || {
            let s = show()?;
            Ok((uplink_tx(&s), vec![u(&s["to_controller"]), u(&s["drops"]["controller_limit"])]))
        },
        seconds,
        "vswitchd's uplink0",
    )?;
    Ok(Rates { round_trips: rt, packet_ins: extra.first().copied(), dropped: extra.get(1).copied() })
}

fn theirs(out: &Path, pcap: &Path, core: usize, python: &Path, seconds: u64) -> Result<(Rates, String)> {
    let port = free_port()?;
    let _osken = Controller::start(python, port, &out.join("packetin-osken-ovs.log"))?;
    let main_core = if core == 0 { 1.min(crate::cores() - 1) } else { 0 };
    let ovs = crate::ovs::Ovs::start(out, &[core], main_core, 256, &crate::pages::Pages::Small)?;
    ovs.vsctl(&["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev", "fail-mode=secure"])?;
    let null = format!("{},no-rx=1", ovs.next_vdev("net_null"));
    ovs.add_dpdk_port("br0", "uplink0", 2, &null, None)?;
    let src = format!("{},rx_pcap={},infinite_rx=1", ovs.next_vdev("net_pcap"), pcap.display());
    ovs.add_dpdk_port("br0", "vf0", 1, &src, None)?;
    ovs.vsctl(&["set-controller", "br0", &format!("tcp:127.0.0.1:{port}")])?;
    ovs.vsctl(&["set", "controller", "br0", "connection-mode=out-of-band"])?;
    let (rt, _) = sustained(|| Ok((ovs.port_tx("uplink0")?, Vec::new())), seconds, "Open vSwitch's uplink0")?;
    let version = ovs.version.clone();
    ovs.clean()?;
    Ok((Rates { round_trips: rt, packet_ins: None, dropped: None }, version))
}

/// Runs the measurement and returns a table.
pub fn run(vswitchd: Option<PathBuf>, out: &Path, core: usize, seconds: u64, peer: bool) -> Result<String> {
    std::fs::create_dir_all(out)?;
    let bin = vswitchd_path(vswitchd)?;
    let python = osken_python()?;
    let pcap = out.join("packetin-bench.pcap");
    write_pcap(&pcap, Scenario::Fwd, 1, 64)?;
    let ours = ours(&bin, out, &pcap, core, &python, seconds)?;
    let fmt = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let mut table = format!(
        "| switch | packet-in round trips/s (os-ken 4.2.2, {seconds} s) | packet-ins/s | punts dropped/s |\n|---|---:|---:|---:|\n\
         | vswitchd | {:.0} | {} | {} |\n",
        ours.round_trips,
        fmt(ours.packet_ins),
        fmt(ours.dropped)
    );
    if peer {
        let (t, version) = theirs(out, &pcap, core, &python, seconds)?;
        table.push_str(&format!(
            "| {version} | {:.0} | - | - |\n| vswitchd / OVS | {:.2}x | | |\n",
            t.round_trips,
            ours.round_trips / t.round_trips.max(1.0)
        ));
    }
    Ok(table)
}
