//! Our side: vswitchd started on the scenario's config, measured through its
//! control socket.

use crate::report::{Measurement, Switch};
use crate::scenario::{vswitchd_config, Scenario};
use crate::Case;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vswitch::control::{call, Request};

/// The vswitchd binary: given, or next to this one.
pub fn vswitchd_path(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe().context("locating vswitch-bench")?;
    let p = me.with_file_name("vswitchd");
    if !p.exists() {
        bail!("{} not found: build it (cargo build --release -p vswitch) or pass --vswitchd", p.display());
    }
    Ok(p)
}

/// A child process ended (SIGTERM, then SIGKILL after 10 s) when dropped.
pub struct Daemon(pub Child);

impl Daemon {
    /// `vswitchd CFG --no-stats`, its log to `log`.
    pub fn vswitchd(bin: &Path, cfg: &Path, log: &Path) -> Result<Self> {
        let child = Command::new(bin)
            .arg(cfg)
            .arg("--no-stats")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(log)?))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self(child))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process's resident memory in bytes (`VmRSS` in /proc/PID/status).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse::<u64>().ok()?;
    Some(kb * 1024)
}

fn show(socket: &Path) -> Result<Value> {
    Ok(call(socket, &Request::Show)?)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn port_tx(s: &Value, port: &str) -> u64 {
    s["ports"].as_array().into_iter().flatten().filter(|p| p["name"] == port).map(|p| u(&p["tx_packets"])).sum()
}

fn sum_pmds(s: &Value, key: &str) -> u64 {
    s["pmds"].as_array().into_iter().flatten().map(|p| u(&p[key])).sum()
}

fn sum_drops(s: &Value) -> u64 {
    s["drops"].as_object().into_iter().flatten().map(|(_, v)| u(v)).sum()
}

/// How often flow setup is sampled (a `show` on the control thread's
/// core, not the PMD's).
const SETUP_SAMPLE: Duration = Duration::from_millis(2);

/// Flow setup: sample until the upcalls stop (every flow installed) or the
/// window ends; the rate is over the time the upcalls took, up to the first
/// sample that saw the last of them (so it errs low, by at most one
/// sampling interval). `start`: when the window began and `show` then.
fn measure_setup(
    socket: &Path,
    case: &Case,
    pid: u32,
    start: (Instant, &Value),
    rss0: Option<u64>,
) -> Result<Measurement> {
    let (t0, a) = start;
    let mut last_up = (t0, u(&a["upcalls"]));
    while t0.elapsed() < case.window {
        // 100k flows take about 60 ms: a 50 ms interval made that two
        // intervals whatever the switch did (0.99M/s at 100k, every run).
        crate::nap(SETUP_SAMPLE)?;
        let up = u(&show(socket)?["upcalls"]);
        if up > last_up.1 {
            last_up = (Instant::now(), up);
        } else if up >= u64::from(case.flows) {
            break;
        }
    }
    let dt = last_up.0.duration_since(t0).as_secs_f64().max(1e-3);
    let b = show(socket)?;
    let upcalls = last_up.1.saturating_sub(u(&a["upcalls"]));
    let mut m = Measurement::new(Switch::Vswitch, case);
    m.seconds = dt;
    m.cycles_per_packet = u(&b["upcall_cycles"]).saturating_sub(u(&a["upcall_cycles"])) as f64 / upcalls.max(1) as f64;
    m.tiers = BTreeMap::from([("upcall".to_owned(), 100.0)]);
    m.upcalls_per_second = upcalls as f64 / dt;
    m.megaflows = u(&b["flows"]);
    // Memory per megaflow: resident growth over the flows installed
    // meanwhile (tables grow by doubling: a large count averages that).
    let grown = u(&b["flows"]).saturating_sub(u(&a["flows"]));
    if let (Some(r0), Some(r1)) = (rss0, rss_bytes(pid)) {
        if grown >= 10_000 {
            m.bytes_per_megaflow = r1.saturating_sub(r0) as f64 / grown as f64;
        }
    }
    Ok(m)
}

/// Each PMD's busy share between two `show`s, percent.
fn pmd_busy(a: &Value, b: &Value) -> Vec<f64> {
    let pmds = |s: &Value| s["pmds"].as_array().cloned().unwrap_or_default();
    pmds(a)
        .iter()
        .zip(pmds(b))
        .map(|(x, y)| {
            let busy = u(&y["busy_cycles"]).saturating_sub(u(&x["busy_cycles"]));
            let idle = u(&y["idle_cycles"]).saturating_sub(u(&x["idle_cycles"]));
            busy as f64 * 100.0 / (busy + idle).max(1) as f64
        })
        .collect()
}

/// The drop reasons that grew between two `show`s ("none" if none did).
fn drops_between(a: &Value, b: &Value) -> String {
    let reasons: Vec<String> = b["drops"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| u(v) > u(&a["drops"][k.as_str()]))
        .map(|(k, v)| format!("{k} {}", u(v) - u(&a["drops"][k.as_str()])))
        .collect();
    if reasons.is_empty() {
        "none".into()
    } else {
        reasons.join(", ")
    }
}

/// Runs vswitchd on one case and measures it.
pub fn measure(bin: &Path, case: &Case, work: &Path, progress: bool) -> Result<Measurement> {
    let dir = work.join("vswitchd");
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("ctl.sock");
    let cfg = dir.join("bench.toml");
    std::fs::write(
        &cfg,
        vswitchd_config(case.scenario, &case.queue_pcaps, &socket, &case.pmd_cores, case.packets, &case.pages),
    )?;
    let log_path = dir.join("vswitchd.log");
    let log = std::fs::File::create(&log_path)?;
    let child = Command::new(bin)
        .arg(&cfg)
        .arg("--no-stats")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut daemon = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while show(&socket).is_err() {
        if Instant::now() > deadline || matches!(daemon.0.try_wait(), Ok(Some(_))) {
            bail!("vswitchd did not start; its log:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
        }
        crate::nap(Duration::from_millis(100))?;
    }
    let (_, sink) = case.scenario.source_sink();
    // The setup scenario measures from the start: the first pass over the
    // file is all new flows.
    if case.scenario != Scenario::Setup {
        crate::wait_warmup(case, || Ok(port_tx(&show(&socket)?, sink)), progress)?;
    }
    let (t0, a) = (Instant::now(), show(&socket)?);
    let rss0 = rss_bytes(daemon.0.id());
    if case.scenario == Scenario::Setup {
        return measure_setup(&socket, case, daemon.0.id(), (t0, &a), rss0);
    }
    let first = port_tx(&a, sink);
    crate::sample_window(case, progress, || Ok(port_tx(&show(&socket)?, sink)))?;
    let (t1, b) = (Instant::now(), show(&socket)?);
    let dt = t1.duration_since(t0).as_secs_f64();
    let d = |k: &str| u(&b[k]).saturating_sub(u(&a[k]));
    let busy = sum_pmds(&b, "busy_cycles").saturating_sub(sum_pmds(&a, "busy_cycles"));
    let packets = d("packets");
    let lookups = (d("emc_hits") + d("smc_hits") + d("megaflow_hits") + d("upcalls")).max(1) as f64;
    let mut m = Measurement::new(Switch::Vswitch, case);
    m.seconds = dt;
    m.mpps = port_tx(&b, sink).saturating_sub(first) as f64 / dt / 1e6;
    m.cycles_per_packet = if packets == 0 { 0.0 } else { busy as f64 / packets as f64 };
    m.tiers = BTreeMap::from([
        ("exact".to_owned(), d("emc_hits") as f64 * 100.0 / lookups),
        ("smc".to_owned(), d("smc_hits") as f64 * 100.0 / lookups),
        ("megaflow".to_owned(), d("megaflow_hits") as f64 * 100.0 / lookups),
        ("upcall".to_owned(), d("upcalls") as f64 * 100.0 / lookups),
    ]);
    m.upcalls_per_second = d("upcalls") as f64 / dt;
    m.megaflows = u(&b["flows"]);
    if case.scenario == Scenario::Acl {
        let dump: Value = call(&socket, &Request::DumpFlows { testpmd: false, per_pmd: false })?;
        let flows = dump.as_array().into_iter().flatten();
        m.masks = crate::report::distinct_masks(flows.filter_map(|f| f["match"].as_str()));
    }
    m.drops = sum_drops(&b).saturating_sub(sum_drops(&a));
    m.pmd_busy = pmd_busy(&a, &b);
    if m.mpps == 0.0 {
        bail!("no packets reached {sink}; drops: {}", drops_between(&a, &b));
    }
    Ok(m)
}
