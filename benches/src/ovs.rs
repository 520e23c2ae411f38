//! The peer: Open vSwitch's DPDK datapath (Debian's openvswitch-switch-dpdk),
//! started by the harness in its own run directory, with no hugepages, one
//! PMD core and the same vdevs, pcaps and rule text as vswitchd.
//!
//! The userspace VXLAN setup follows OVS's userspace-tunneling howto: the
//! tunnel port sits on `br0`, the uplink on `br-phy`, which holds the local
//! VTEP address; the remote VTEP's MAC is a static `tnl/arp` entry.

use crate::pages::Pages;
use crate::report::{Measurement, Switch};
use crate::scenario::{rules, Scenario, LOCAL_VTEP, LOCAL_VTEP_MAC, REMOTE_VTEP, REMOTE_VTEP_MAC, UPLINK_MTU, VNI};
use crate::Case;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const VSWITCHD: &str = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk";
const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// A running ovsdb-server + ovs-vswitchd pair; stopped (and its DPDK run
/// directory removed) when dropped.
pub struct Ovs {
    dir: PathBuf,
    prefix: String,
    /// Counter for unique vdev names: DPDK keeps a detached name busy.
    vdevs: std::cell::Cell<u32>,
    pub version: String,
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        bail!(
            "{} {} failed ({}): {}{}",
            cmd.get_program().to_string_lossy(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Ovs {
    /// Starts both daemons. `cores` run the PMD threads, `main_core` the
    /// rest; `mem_mb` is DPDK's `-m`, on `pages`.
    pub fn start(work: &Path, cores: &[usize], main_core: usize, mem_mb: u64, pages: &Pages) -> Result<Self> {
        for bin in [VSWITCHD, SCHEMA] {
            if !Path::new(bin).exists() {
                bail!("{bin} is missing: install Open vSwitch with `apt-get install -y openvswitch-switch-dpdk` (make bench-deps)");
            }
        }
        let dir = work.join("ovs");
        // The harness's own directory: a database left by an earlier run
        // (ovsdb-tool refuses to create over it) goes.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        let prefix = format!("vsbovs{}", std::process::id());
        let mut ovs = Self { dir, prefix, vdevs: std::cell::Cell::new(0), version: String::new() };
        let db = ovs.dir.join("conf.db");
        run(Command::new("ovsdb-tool").arg("create").arg(&db).arg(SCHEMA))?;
        let d = |f: &str| ovs.dir.join(f).display().to_string();
        run(ovs.env(&mut Command::new("ovsdb-server")).args([
            &db.display().to_string(),
            &format!("--remote=punix:{}", d("db.sock")),
            "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
            &format!("--pidfile={}", d("ovsdb-server.pid")),
            &format!("--unixctl={}", d("ovsdb-server.ctl")),
            &format!("--log-file={}", d("ovsdb-server.log")),
            "--detach",
        ]))?;
        ovs.vsctl(&["--no-wait", "init"])?;
        // --legacy-mem on 4 KiB pages: OVS adds --in-memory otherwise, which
        // EAL refuses together with --no-huge. On 2 MB pages memory comes as
        // needed (legacy mode cut a 1M-mbuf pool into more pieces than its
        // memzone names can number: "File name too long").
        let mode = if *pages == Pages::Small { "--legacy-mem" } else { "" };
        let extra = format!(
            "\"{} --no-pci {mode} --no-shconf --no-telemetry --file-prefix={}\"",
            pages.eal(mem_mb).join(" "),
            ovs.prefix
        );
        // Per-port memory: with the shared pools OVS 3.1 holds at most
        // 262,144 mbufs per MTU, too few for the 1M-packet pcaps of the
        // 1M-flow cases; per port, a source's pool is sized to its pcap.
        ovs.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            "other_config:dpdk-init=true",
            "other_config:per-port-memory=true",
            "other_config:pmd-rxq-isolate=false",
            &format!("other_config:dpdk-extra={extra}"),
            &format!("other_config:dpdk-lcore-mask={:#x}", 1u64 << main_core),
            &format!("other_config:pmd-cpu-mask={:#x}", cores.iter().fold(0u64, |m, c| m | 1u64 << c)),
        ])?;
        run(ovs.env(&mut Command::new(VSWITCHD)).args([
            &format!("unix:{}", d("db.sock")),
            &format!("--pidfile={}", d("ovs-vswitchd.pid")),
            &format!("--unixctl={}", d("ovs-vswitchd.ctl")),
            &format!("--log-file={}", d("ovs-vswitchd.log")),
            "-vconsole:off",
            "--detach",
        ]))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while ovs.vsctl(&["get", "Open_vSwitch", ".", "dpdk_initialized"]).map(|s| s.trim() == "true").ok()
            != Some(true)
        {
            if Instant::now() > deadline {
                bail!("ovs-vswitchd did not initialise DPDK; see {}", d("ovs-vswitchd.log"));
            }
            crate::nap(Duration::from_millis(200))?;
        }
        let version = run(Command::new(VSWITCHD).arg("--version"))?;
        // "ovs-vswitchd-dpdk (Open vSwitch) 3.1.0" -> "Open vSwitch 3.1.0"
        ovs.version = version.lines().next().unwrap_or("").replace("ovs-vswitchd-dpdk ", "").replace(['(', ')'], "");
        Ok(ovs)
    }

    fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("OVS_RUNDIR", &self.dir).env("OVS_LOGDIR", &self.dir).env("OVS_DBDIR", &self.dir)
    }

    /// Turns `bridge`'s prefix tries off (table 0): a megaflow then keeps a
    /// rule's whole address match, as vswitchd's do.
    pub(crate) fn no_prefix_tries(&self, bridge: &str) -> Result<()> {
        self.vsctl(&[
            "--",
            "--id=@ft",
            "create",
            "Flow_Table",
            "name=t0",
            "prefixes=none",
            "--",
            "set",
            "Bridge",
            bridge,
            "flow_tables:0=@ft",
        ])
        .map(|_| ())
    }

    pub(crate) fn vsctl(&self, args: &[&str]) -> Result<String> {
        run(self
            .env(&mut Command::new("ovs-vsctl"))
            .arg(format!("--db=unix:{}", self.dir.join("db.sock").display()))
            .arg("--timeout=60")
            .args(args))
    }

    pub(crate) fn appctl(&self, args: &[&str]) -> Result<String> {
        run(self.env(&mut Command::new("ovs-appctl")).arg("-t").arg(self.dir.join("ovs-vswitchd.ctl")).args(args))
    }

    pub(crate) fn ofctl(&self, args: &[&str]) -> Result<String> {
        run(self.env(&mut Command::new("ovs-ofctl")).args(args))
    }

    /// The OpenFlow management socket of `bridge`.
    pub(crate) fn mgmt(&self, bridge: &str) -> PathBuf {
        self.dir.join(format!("{bridge}.mgmt"))
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("ovs-vswitchd.log")
    }

    pub(crate) fn next_vdev(&self, driver: &str) -> String {
        let n = self.vdevs.get();
        self.vdevs.set(n + 1);
        format!("{driver}{n}")
    }

    pub(crate) fn clean(&self) -> Result<()> {
        self.vsctl(&["--", "--if-exists", "del-br", "br0", "--", "--if-exists", "del-br", "br-phy"])?;
        Ok(())
    }

    pub(crate) fn add_dpdk_port(
        &self,
        bridge: &str,
        name: &str,
        ofport: u16,
        devargs: &str,
        mtu: Option<u16>,
    ) -> Result<()> {
        let mut args = vec![
            "add-port".to_owned(),
            bridge.to_owned(),
            name.to_owned(),
            "--".to_owned(),
            "set".to_owned(),
            "Interface".to_owned(),
            name.to_owned(),
            "type=dpdk".to_owned(),
            format!("ofport_request={ofport}"),
            format!("options:dpdk-devargs={devargs}"),
        ];
        if let Some(mtu) = mtu {
            args.push(format!("mtu_request={mtu}"));
        }
        // Per-port memory (see `start`): a pcap source's pool must hold the
        // whole file (net_pcap's infinite_rx keeps it in mbufs). OVS sizes
        // the pool by the rx queues asked for, times their descriptors, before
        // it caps the queues at what the device has (one): ask for enough.
        let files: Vec<&str> = devargs.split(',').filter_map(|a| a.strip_prefix("rx_pcap=")).collect();
        if !files.is_empty() {
            let mut packets = 0;
            for f in &files {
                packets += pcap_packets(Path::new(f))?;
            }
            args.push(format!("options:n_rxq={}", rx_queues_for(packets).max(files.len() as u64)));
            args.push(format!("options:n_rxq_desc={OVS_MAX_DESC}"));
        }
        let log_before = std::fs::metadata(self.log_path()).map_or(0, |m| m.len() as usize);
        self.vsctl(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        let err = self.vsctl(&["get", "Interface", name, "error"]).unwrap_or_default();
        let err = err.trim();
        if !err.is_empty() && err != "[]" {
            // DPDK's reason is in OVS's log, not in the Interface's error:
            // the first DPDK error since the port was requested.
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let dpdk = log
                .get(log_before..)
                .unwrap_or("")
                .lines()
                .find(|l| l.contains("|dpdk|ERR|"))
                .and_then(|l| l.split("|dpdk|ERR|").nth(1))
                .map_or(String::new(), |r| format!("; DPDK: {r}"));
            bail!("OVS refused port {name} ({devargs}): {err}{dpdk}");
        }
        Ok(())
    }

    /// Builds the scenario's bridges, the source port last.
    fn topology(&self, case: &Case) -> Result<()> {
        self.clean()?;
        let br = |name: &str, mode: &str, mac: &str| {
            self.vsctl(&[
                "add-br",
                name,
                "--",
                "set",
                "bridge",
                name,
                "datapath_type=netdev",
                &format!("fail-mode={mode}"),
                &format!("other_config:hwaddr={mac}"),
            ])
        };
        br("br0", "secure", "02:00:00:00:00:fe")?;
        if case.scenario == Scenario::Setup {
            // Without prefix tries, a megaflow keeps the rule's whole /32
            // source match: every source becomes its own megaflow, as in
            // vswitchd (with them, OVS folds the sources into ~20 prefixes).
            self.no_prefix_tries("br0")?;
        }
        self.ofctl(&["del-flows", "br0"])?;
        // One receive queue per file (the scale benchmark gives several).
        let files: Vec<String> = case.queue_pcaps.iter().map(|p| format!("rx_pcap={}", p.display())).collect();
        let source = format!("{},{},infinite_rx=1", self.next_vdev("net_pcap"), files.join(","));
        let sink = format!("{},no-rx=1", self.next_vdev("net_null"));
        let tunnel = matches!(case.scenario, Scenario::Encap | Scenario::Decap);
        let (uplink_br, vf_dev, up_dev) = match case.scenario {
            Scenario::Decap => ("br-phy", sink, source),
            Scenario::Encap => ("br-phy", source, sink),
            Scenario::Fwd | Scenario::Setup | Scenario::Acl => ("br0", source, sink),
        };
        if tunnel {
            self.vsctl(&[
                "add-port",
                "br0",
                "vxlan0",
                "--",
                "set",
                "Interface",
                "vxlan0",
                "type=vxlan",
                "ofport_request=10",
                &format!("options:remote_ip={REMOTE_VTEP}"),
                &format!("options:local_ip={LOCAL_VTEP}"),
                &format!("options:key={VNI}"),
            ])?;
            br("br-phy", "standalone", LOCAL_VTEP_MAC)?;
            self.vsctl(&["br-set-external-id", "br-phy", "bridge-id", "br-phy"])?;
            run(Command::new("ip").args(["addr", "replace", &format!("{LOCAL_VTEP}/24"), "dev", "br-phy"]))?;
            run(Command::new("ip").args(["link", "set", "br-phy", "up"]))?;
            // OVS learns the connected route from the kernel; add it in case
            // the netlink notification has not arrived yet.
            let _ = self.appctl(&["ovs/route/add", &format!("{REMOTE_VTEP}/32"), "br-phy"]);
            self.appctl(&["tnl/arp/set", "br-phy", REMOTE_VTEP, REMOTE_VTEP_MAC])?;
        }
        for r in rules(case.scenario) {
            self.ofctl(&["add-flow", "br0", &ofport_numbers(&r)])?;
        }
        if case.scenario == Scenario::Encap {
            // Encapsulated packets leave br-phy's LOCAL port: straight to the
            // uplink (NORMAL would also flood them to the br-phy tap).
            self.add_dpdk_port(uplink_br, "uplink0", 2, &up_dev, Some(UPLINK_MTU))?;
            self.ofctl(&["add-flow", "br-phy", "priority=100,in_port=LOCAL,actions=output:2"])?;
            self.add_dpdk_port("br0", "vf0", 1, &vf_dev, None)?;
        } else if case.scenario == Scenario::Decap {
            // br-phy forwards by NORMAL (the howto's setup): frames for its
            // MAC reach LOCAL, where OVS pops the tunnel.
            self.add_dpdk_port("br0", "vf0", 1, &vf_dev, None)?;
            self.add_dpdk_port(uplink_br, "uplink0", 2, &up_dev, Some(UPLINK_MTU))?;
        } else {
            self.add_dpdk_port(uplink_br, "uplink0", 2, &up_dev, Some(UPLINK_MTU))?;
            self.add_dpdk_port("br0", "vf0", 1, &vf_dev, None)?;
        }
        if case.pmd_cores.len() > 1 {
            // One source queue per PMD, as vswitchd's assignment does by
            // itself: OVS's cycles assignment without history put both of
            // a port's queues on one PMD here. The sink's queue goes to
            // any PMD (pmd-rxq-isolate=false).
            let (source, _) = case.scenario.source_sink();
            let pins: Vec<String> = case.pmd_cores.iter().enumerate().map(|(q, c)| format!("{q}:{c}")).collect();
            self.vsctl(&[
                "set",
                "Interface",
                source,
                &format!("other_config:pmd-rxq-affinity=\"{}\"", pins.join(",")),
            ])?;
        }
        Ok(())
    }

    /// The live TX packet counter of a datapath port (`dpctl/show -s`).
    pub(crate) fn port_tx(&self, port: &str) -> Result<u64> {
        parse_port_tx(&self.appctl(&["dpctl/show", "-s"])?, port)
            .ok_or_else(|| anyhow!("port {port} not in dpctl/show"))
    }

    /// Runs one case through OVS; the bridges are removed afterwards so
    /// that OVS's PMD stops polling.
    pub fn measure(&self, case: &Case, progress: bool) -> Result<Measurement> {
        let r = self.measure_inner(case, progress);
        let cleaned = self.clean();
        let m = r.map_err(|e| anyhow!("{e:#} (OVS log: {})", self.log_path().display()))?;
        cleaned?;
        Ok(m)
    }

    fn measure_inner(&self, case: &Case, progress: bool) -> Result<Measurement> {
        self.topology(case)?;
        let (_, sink) = case.scenario.source_sink();
        let mut m = Measurement::new(Switch::Ovs, case);
        if case.scenario == Scenario::Setup {
            self.appctl(&["dpif-netdev/pmd-stats-clear"])?;
            let t0 = Instant::now();
            let mut last = (t0, 0u64);
            while t0.elapsed() < case.window {
                crate::nap(Duration::from_millis(50))?;
                let stats = PmdStats::parse(&self.appctl(&["dpif-netdev/pmd-stats-show"])?);
                if stats.upcalls > last.1 {
                    last = (Instant::now(), stats.upcalls);
                } else if last.1 > 0 && last.0.elapsed() > Duration::from_millis(500) {
                    break;
                }
            }
            let dt = last.0.duration_since(t0).as_secs_f64().max(1e-3);
            m.seconds = dt;
            m.upcalls_per_second = last.1 as f64 / dt;
            m.tiers = BTreeMap::from([("upcall".to_owned(), 100.0)]);
            m.megaflows = parse_flows(&self.appctl(&["dpctl/show"])?);
            return Ok(m);
        }
        crate::wait_warmup(case, || self.port_tx(sink), progress)?;
        self.appctl(&["dpif-netdev/pmd-stats-clear"])?;
        let (t0, a) = (Instant::now(), self.port_tx(sink)?);
        crate::sample_window(case, progress, || self.port_tx(sink))?;
        let (t1, b) = (Instant::now(), self.port_tx(sink)?);
        let stats = PmdStats::parse(&self.appctl(&["dpif-netdev/pmd-stats-show"])?);
        if case.pmd_cores.len() > 1 {
            // Where OVS put the queues, for the report's reader.
            let rxqs = self.appctl(&["dpif-netdev/pmd-rxq-show"]).unwrap_or_default();
            eprintln!("    OVS pmd-rxq-show:\n{}", rxqs.trim_end());
        }
        let dt = t1.duration_since(t0).as_secs_f64();
        m.seconds = dt;
        m.mpps = b.saturating_sub(a) as f64 / dt / 1e6;
        m.cycles_per_packet = stats.cycles_per_packet;
        m.pmd_busy.clone_from(&stats.busy);
        let lookups = stats.lookups().max(1) as f64;
        let pct = |n: u64| n as f64 * 100.0 / lookups;
        m.tiers = BTreeMap::from([
            ("simple-match".to_owned(), pct(stats.simple_match)),
            ("exact".to_owned(), pct(stats.emc)),
            ("smc".to_owned(), pct(stats.smc)),
            ("megaflow".to_owned(), pct(stats.megaflow)),
            ("upcall".to_owned(), pct(stats.upcalls + stats.failed_upcalls)),
        ]);
        m.tiers.retain(|k, v| *v > 0.0 || k == "exact" || k == "megaflow" || k == "upcall");
        m.upcalls_per_second = stats.upcalls as f64 / dt;
        m.megaflows = parse_flows(&self.appctl(&["dpctl/show"])?);
        if case.scenario == Scenario::Acl {
            let dump = self.appctl(&["dpctl/dump-flows"])?;
            m.masks = crate::report::distinct_masks(dump.lines().filter_map(|l| l.split(", packets:").next()));
        }
        if m.mpps == 0.0 {
            bail!("no packets reached {sink}");
        }
        Ok(m)
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        let _ = self.clean();
        for (daemon, args) in [("ovs-vswitchd", &["exit", "--cleanup"][..]), ("ovsdb-server", &["exit"][..])] {
            let pidfile = self.dir.join(format!("{daemon}.pid"));
            let Some(pid) = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse::<u32>().ok()) else {
                continue;
            };
            let _ = run(self
                .env(&mut Command::new("timeout"))
                .args(["20", "ovs-appctl", "-t"])
                .arg(self.dir.join(format!("{daemon}.ctl")))
                .args(args));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
        // DPDK as root creates /var/run/dpdk/<file-prefix>: remove ours.
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
    }
}

/// The rule text with port numbers for names: ovs-ofctl resolves names
/// only for ports that exist, and the source port is added last.
/// OVS's largest receive ring (`n_rxq_desc`).
const OVS_MAX_DESC: u64 = 4096;

/// The receive queues to ask OVS for so that its per-port pool
/// (queues x descriptors + 2,048 tx + 16,384 spare) holds `packets` mbufs
/// with a ring's worth to spare.
fn rx_queues_for(packets: u64) -> u64 {
    packets.div_ceil(OVS_MAX_DESC) + 1
}

/// Packets in a pcap file (classic format, either byte order).
fn pcap_packets(path: &Path) -> Result<u64> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let magic = data.get(..4).ok_or_else(|| anyhow!("{}: not a pcap file", path.display()))?;
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => bail!("{}: not a pcap file", path.display()),
    };
    let (mut off, mut n) = (24usize, 0u64);
    while let Some(h) = data.get(off..off + 16) {
        let b = [h[8], h[9], h[10], h[11]];
        let caplen = if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) };
        off += 16 + caplen as usize;
        n += 1;
    }
    Ok(n)
}

fn ofport_numbers(rule: &str) -> String {
    rule.replace("vf0", "1").replace("uplink0", "2").replace("vxlan0", "10")
}

/// `dpctl/show -s`: "  port 2: uplink0 (dpdk: ...)" then "    TX packets:123 ...".
fn parse_port_tx(text: &str, port: &str) -> Option<u64> {
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("port ") {
            inside = rest.split_whitespace().nth(1) == Some(port);
        } else if inside {
            if let Some(v) = t.strip_prefix("TX packets:") {
                return v.split_whitespace().next()?.parse().ok();
            }
        }
    }
    None
}

/// `dpctl/show`: "  flows: 3".
pub(crate) fn parse_flows(text: &str) -> u64 {
    text.lines().find_map(|l| l.trim().strip_prefix("flows:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// The PMD thread's block of `dpif-netdev/pmd-stats-show`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct PmdStats {
    pub(crate) packets: u64,
    pub(crate) simple_match: u64,
    pub(crate) emc: u64,
    pub(crate) smc: u64,
    pub(crate) megaflow: u64,
    pub(crate) upcalls: u64,
    pub(crate) failed_upcalls: u64,
    pub(crate) cycles_per_packet: f64,
    /// Each PMD thread's processing share, percent.
    pub(crate) busy: Vec<f64>,
}

impl PmdStats {
    pub(crate) fn parse(text: &str) -> Self {
        let mut s = Self::default();
        let mut in_pmd = false;
        for line in text.lines() {
            if !line.starts_with(' ') {
                in_pmd = line.starts_with("pmd thread");
                continue;
            }
            if !in_pmd {
                continue;
            }
            let Some((key, value)) = line.trim().split_once(':') else { continue };
            let first = value.split_whitespace().next().unwrap_or("");
            let n = || first.parse::<u64>().unwrap_or(0);
            match key {
                "packets received" => s.packets += n(),
                "simple match hits" => s.simple_match += n(),
                "emc hits" => s.emc += n(),
                "smc hits" => s.smc += n(),
                "megaflow hits" => s.megaflow += n(),
                "miss with success upcall" => s.upcalls += n(),
                "miss with failed upcall" => s.failed_upcalls += n(),
                "avg cycles per packet" => s.cycles_per_packet = first.parse().unwrap_or(0.0),
                // "processing cycles: 123 (45.67%)"
                "processing cycles" => {
                    s.busy.push(value.split(['(', '%']).nth(1).and_then(|p| p.trim().parse().ok()).unwrap_or(0.0))
                }
                _ => {}
            }
        }
        s
    }

    fn lookups(&self) -> u64 {
        self.simple_match + self.emc + self.smc + self.megaflow + self.upcalls + self.failed_upcalls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The source port's pool is sized from the pcap's packet count.
    #[test]
    fn counts_pcap_packets_and_sizes_the_rx_queues() {
        let dir = std::env::temp_dir().join(format!("vsb-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("fwd.pcap");
        let written = crate::scenario::write_pcap(&path, Scenario::Fwd, 5000, 64).expect("pcap");
        assert_eq!(pcap_packets(&path).expect("count"), written);
        assert_eq!(written, 5000);
        assert_eq!(rx_queues_for(written), 3, "2 x 4096 >= 5000, one ring spare");
        assert!(rx_queues_for(1_000_000) * OVS_MAX_DESC >= 1_000_000 + OVS_MAX_DESC);
        std::fs::write(&path, b"not a pcap").expect("write");
        assert!(pcap_packets(&path).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn parses_pmd_stats_and_port_counters() {
        let stats = "pmd thread numa_id 0 core_id 1:\n  packets received: 93140608\n  packet recirculations: 0\n  \
            simple match hits: 10\n  emc hits: 20\n  smc hits: 0\n  megaflow hits: 30\n  \
            miss with success upcall: 4\n  miss with failed upcall: 1\n  \
            idle cycles: 100 (10.00%)\n  processing cycles: 900 (90.00%)\n  \
            avg cycles per packet: 264.17 (24604901675/93140608)\nmain thread:\n  packets received: 7\n  emc hits: 99\n";
        let s = PmdStats::parse(stats);
        assert_eq!(
            s,
            PmdStats {
                packets: 93140608,
                simple_match: 10,
                emc: 20,
                smc: 0,
                megaflow: 30,
                upcalls: 4,
                failed_upcalls: 1,
                cycles_per_packet: 264.17,
                busy: vec![90.0],
            }
        );
        assert_eq!(s.lookups(), 65);
        let show = "netdev@ovs-netdev:\n  lookups: hit:1 missed:2 lost:0\n  flows: 3\n  port 0: ovs-netdev (tap)\n    \
            RX packets:0 errors:0\n    TX packets:5 errors:0\n  port 2: uplink0 (dpdk: configured_rx_queues=1)\n    \
            RX packets:0 errors:0 dropped:0\n    TX packets:123456 errors:0 dropped:0\n";
        assert_eq!(parse_port_tx(show, "uplink0"), Some(123456));
        assert_eq!(parse_port_tx(show, "ovs-netdev"), Some(5));
        assert_eq!(parse_port_tx(show, "vf0"), None);
        assert_eq!(parse_flows(show), 3);
    }
}
