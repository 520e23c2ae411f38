//! vswitchd: the DPDK userspace switch daemon.
//!
//! With no arguments it runs the embedded demo (configs/demo.toml) on DPDK
//! virtual devices: no NIC, no hugepages. Give a TOML file to run your own.

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vswitch::config::Config;
use vswitch::datapath::counters::Counter;
use vswitch::dpdk::os;
use vswitch::switch::{Switch, SwitchStats};
use vswitch::traffic::{write_pcap_share, TrafficSpec};

/// DPDK userspace virtual switch.
///
/// Forwards between VF representors and the uplink through an exact-match
/// cache, a megaflow classifier and a priority rule table (OpenFlow-style
/// rules). Control it with vswitchctl; metrics are served for Prometheus.
/// Stop with Ctrl-C or SIGTERM (tx is flushed, ports released, exit 0).
#[derive(Parser, Debug)]
#[command(name = "vswitchd", version, about, long_about)]
struct Args {
    /// Configuration file (TOML). Without one, the embedded demo runs on
    /// virtual devices: see configs/demo.toml.
    config: Option<PathBuf>,
    /// Stop by itself after this many seconds (0: run until signalled).
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// Do not print the live statistics line.
    #[arg(long)]
    no_stats: bool,
    /// Control socket path (overrides the configuration).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Cores for the PMD threads, e.g. 2,3 (overrides [datapath] pmd_cores;
    /// ports with rx_queues = "auto" get a queue per PMD).
    #[arg(long, value_delimiter = ',', value_name = "CORES")]
    pmd_cores: Option<Vec<usize>>,
    /// Print the validated configuration and exit.
    #[arg(long)]
    check: bool,
    /// Log filter, e.g. info, debug, vswitch=debug (RUST_LOG works too).
    #[arg(long, default_value = "info")]
    log: String,
    /// Log lines as text (colour only on a terminal) or as JSON objects, one
    /// per line, for log shippers.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Reserve the 2 MB hugepages CONFIG needs (raising
    /// /proc/sys/vm/nr_hugepages when fewer are free) and exit; what the
    /// packaged vswitch-hugepages.service runs at boot.
    #[arg(long, value_name = "CONFIG")]
    reserve_hugepages: Option<PathBuf>,
    /// Write the man page (vswitchd.8) into DIR and exit (packaging).
    #[arg(long, value_name = "DIR", hide = true)]
    generate_man: Option<PathBuf>,
    /// Ask the NIC (rte_flow on the configuration's ports) and the model
    /// e-switch which rule shapes they take, print the answers with the
    /// testpmd commands to try by hand, and exit. On a ConnectX host: "what
    /// will my card take?".
    #[arg(long, value_name = "CONFIG")]
    probe_offload: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    let args = Args::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| args.log.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    match run(args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("vswitchd: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(args: Args) -> Result<()> {
    // First: a stop signal during start-up is then a clean stop, not a
    // death that leaves files behind.
    os::install_stop_signals();
    os::stop_on_hangup();
    if let Some(done) = one_shot(&args) {
        return done;
    }
    let config = load_config(&args)?;
    if args.check {
        print_check(&config);
        return Ok(());
    }
    tracing::info!(source = %config.source, ports = config.ports.len(), rules = config.rules.len(), pmd_cores = ?config.pmd_cores, "configuration loaded");

    // Generated traffic for ports that ask for it.
    let run_dir = std::env::temp_dir().join(format!("vswitchd-{}", std::process::id()));
    // Whatever happens from here on, leave nothing of ours behind: the
    // generated traffic now, the socket and DPDK's runtime directory once
    // they are ours (never another daemon's).
    let mut cleanup = Cleanup { paths: vec![run_dir.clone()] };
    let pcaps = generate_traffic(&config, &run_dir)?;
    match os::raise_nofile_limit() {
        Ok((before, after)) if before != after => tracing::info!(before, after, "open files limit raised"),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
    let listener = vswitch::control::bind(&config.socket)?;
    cleanup.paths.push(config.socket.clone());
    let socket_path = config.socket.clone();
    let metrics_addr = config.metrics;
    let eal = start_eal("vswitchd", &config.eal_args, &mut cleanup)?;
    if os::stop_requested() {
        tracing::info!("stop requested during start-up: not starting the switch");
        return Ok(());
    }
    let switch = Arc::new(interruptible("starting the ports and PMDs", &cleanup, || {
        Ok(Switch::start(&eal, config, &pcaps, None)?)
    })?);
    let sink: Arc<dyn vswitch::kernel::KernelSink> = Arc::clone(&switch) as _;
    let kernel = vswitch::kernel::Follower::start(switch.config(), sink).context("following the kernel's underlay")?;
    let _metrics = metrics_addr.map(|addr| serve_metrics(addr, &switch)).transpose()?;
    let control_stop = Arc::new(AtomicBool::new(false));
    let control = {
        let switch = Arc::clone(&switch);
        let stop = Arc::clone(&control_stop);
        let path = args.config.clone();
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || vswitch::control::serve(listener, switch, path, stop))?
    };
    tracing::info!(socket = %socket_path.display(), "control socket ready (vswitchctl --socket {})", socket_path.display());
    cleanup.paths.extend(switch.config().openflow.listen.iter().filter_map(|t| match t {
        vswitch::config::openflow::Target::Unix(p) => Some(p.clone()),
        vswitch::config::openflow::Target::Tcp(_) => None,
    }));
    let openflow = vswitch::ofchannel::start(Arc::clone(&switch)).map_err(anyhow::Error::msg)?;
    let notifier = vswitch::notify::Notifier::from_env();
    notifier.send(&format!(
        "READY=1\nSTATUS=forwarding: {} ports, {} PMDs\nMAINPID={}",
        switch.ports().len(),
        switch.config().pmd_cores.len(),
        std::process::id()
    ));

    let failure = supervise(&switch, kernel.as_ref(), &args, &notifier);
    notifier.send("STOPPING=1\nSTATUS=stopping");
    tracing::info!("stopping");
    control_stop.store(true, Ordering::SeqCst);
    if let Some(c) = openflow {
        c.stop();
    }
    let _ = control.join();
    if let Some(k) = kernel {
        k.stop();
    }
    let (final_stats, offload) = match Arc::try_unwrap(switch) {
        Ok(sw) => {
            let r = sw.shutdown();
            (r.stats, r.offload)
        }
        Err(sw) => {
            tracing::warn!("switch still referenced at shutdown");
            (sw.stats(), None)
        }
    };
    println!("{}", summary(&final_stats));
    if let Some((destroyed, left)) = offload {
        println!("  offload: {destroyed} rules destroyed at shutdown, {left} left in the model e-switch");
    }
    if let Some(f) = failure {
        bail!(f);
    }
    Ok(())
}

/// `--check`: what the configuration holds.
/// The modes that do one thing and exit (probe, man page, hugepages).
fn one_shot(args: &Args) -> Option<Result<()>> {
    if let Some(path) = &args.probe_offload {
        return Some(probe_offload(path));
    }
    if let Some(dir) = &args.generate_man {
        return Some(generate_man(dir));
    }
    let path = args.reserve_hugepages.as_ref()?;
    Some(Config::load(path).map_err(anyhow::Error::from).and_then(|c| reserve_hugepages(&c)))
}

/// The configuration with the command line's overrides.
fn load_config(args: &Args) -> Result<Config> {
    let overrides = vswitch::config::Overrides { pmd_cores: args.pmd_cores.clone() };
    let mut config = match &args.config {
        Some(path) => Config::load_with(path, &overrides)?,
        None => Config::demo_with(&overrides)?,
    };
    if let Some(s) = &args.socket {
        config.socket = s.clone();
        config.socket_overridden = true;
    }
    Ok(config)
}

/// Writes vswitchd.8 into `dir`.
fn generate_man(dir: &std::path::Path) -> Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("vswitchd.8");
    let mut out = Vec::new();
    clap_mangen::Man::new(Args::command().name("vswitchd")).section("8").render(&mut out)?;
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `--reserve-hugepages`: the 2 MB pages the configuration needs, reserved
/// when fewer are free; fails with what is missing.
fn reserve_hugepages(config: &Config) -> Result<()> {
    use vswitch::config::hugepages;
    let need = hugepages::need(config).pages();
    if need == 0 {
        println!("{}", hugepages::report(config));
        return Ok(());
    }
    let Some((total, free)) = hugepages::host_pages() else {
        bail!("this kernel offers no 2 MB hugepages (/sys/kernel/mm/hugepages/hugepages-2048kB)");
    };
    if free < need {
        let want = total + (need - free);
        std::fs::write("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", want.to_string())
            .with_context(|| format!("reserving {want} hugepages (as root)"))?;
        let (now, free) = hugepages::host_pages().unwrap_or((0, 0));
        if free < need {
            bail!("asked the kernel for {want} 2 MB pages, it reserved {now} ({free} free; {need} needed): memory is too fragmented or short; reserve them at boot (hugepages= on the kernel command line)");
        }
        tracing::info!(before = total, after = now, "hugepages reserved");
    }
    if !hugepages::hugetlbfs_mounted() {
        std::fs::create_dir_all("/dev/hugepages").context("creating /dev/hugepages")?;
        let status = std::process::Command::new("mount")
            .args(["-t", "hugetlbfs", "nodev", "/dev/hugepages"])
            .status()
            .context("running mount")?;
        if !status.success() {
            bail!("mounting hugetlbfs on /dev/hugepages failed");
        }
    }
    println!("{}", hugepages::report(config));
    Ok(())
}

fn print_check(config: &Config) {
    println!("{}: valid", config.source);
    let pmds = config.pmd_cores.len();
    let port = |p: &vswitch::config::PortSpec| {
        let pinned = if p.rxq_affinity.is_empty() {
            String::new()
        } else {
            let pins: Vec<String> = p.rxq_affinity.iter().map(|(q, c)| format!("{q}->core {c}")).collect();
            format!(", pinned {}", pins.join(" "))
        };
        format!("{} ({}, {} rx queue(s){pinned})", p.name, p.role.as_str(), p.rx_queues.count(pmds))
    };
    println!("  ports: {}", config.ports.iter().map(port).collect::<Vec<_>>().join(", "));
    println!("  rules: {}", config.rules.len());
    let q = &config.queues;
    println!(
        "  PMD cores: {:?}; queues assigned by {}{}; auto-lb {}",
        config.pmd_cores,
        q.assign.as_str(),
        if q.isolate { " (pinned PMDs isolated)" } else { "" },
        if q.auto_lb.enabled { "on" } else { "off" }
    );
    println!("  {}", vswitch::config::hugepages::report(config));
}

/// The Prometheus endpoint; its first scrape publishes the counters.
fn serve_metrics(addr: std::net::SocketAddr, switch: &Switch) -> Result<vswitch::metrics::MetricsServer> {
    let server = vswitch::metrics::install(addr, || {
        vswitch::metrics::publish(&switch.stats());
        vswitch::metrics::publish_rxqs(&switch.rxq_show());
        if let Some(o) = switch.offload() {
            vswitch::metrics::publish_offload(&o.shared.stats());
        }
    })?;
    tracing::info!(addr = %server.addr, "Prometheus metrics at http://{}/metrics", server.addr);
    Ok(server)
}

/// Runs until a stop signal, `--duration`, or a thread that should not end
/// (a PMD, the netlink follower) ends: then says which. Meanwhile publishes
/// the metrics and prints the statistics line every interval.
fn supervise(
    switch: &Switch,
    kernel: Option<&vswitch::kernel::Follower>,
    args: &Args,
    notifier: &vswitch::notify::Notifier,
) -> Option<&'static str> {
    let interval = switch.config().stats_interval;
    let started = Instant::now();
    let mut last = (Instant::now(), switch.stats());
    let mut watchdog = notifier.watchdog().map(|period| Watchdog::new(period, switch));
    while !os::stop_requested() {
        if let Some(w) = watchdog.as_mut() {
            w.check(switch, notifier);
        }
        std::thread::sleep(Duration::from_millis(50));
        if args.duration > 0 && started.elapsed() >= Duration::from_secs(args.duration) {
            break;
        }
        if !switch.pmds_alive() {
            return Some("a PMD thread stopped unexpectedly");
        }
        if kernel.is_some_and(|k| !k.alive()) {
            return Some("the netlink thread (kernel underlay) stopped unexpectedly");
        }
        if last.0.elapsed() >= interval {
            let now = (Instant::now(), switch.stats());
            vswitch::metrics::publish(&now.1);
            vswitch::metrics::publish_rxqs(&switch.rxq_show());
            if let Some(o) = switch.offload() {
                vswitch::metrics::publish_offload(&o.shared.stats());
            }
            if let Some(k) = switch.kernel_status() {
                vswitch::metrics::publish_kernel(&k);
            }
            if !args.no_stats {
                println!("{}", stats_line(&last.1, &now.1, now.0.duration_since(last.0).as_secs_f64()));
            }
            warn_receive_drops(&last.1, &now.1, switch.config().mbufs);
            last = now;
        }
    }
    None
}

/// The service manager's watchdog, fed at half its period while every PMD
/// has iterated since the last feeding: a PMD stuck in a loop (or a
/// deadlock) stops the feeding and the manager restarts the service.
struct Watchdog {
    period: Duration,
    next: Instant,
    iterations: Vec<u64>,
    stuck: Vec<bool>,
}

impl Watchdog {
    fn new(period: Duration, switch: &Switch) -> Self {
        tracing::info!(
            period_ms = period.as_millis() as u64,
            "service watchdog on: fed while every PMD makes progress"
        );
        let iterations = switch.stats().pmds.iter().map(|p| p.iterations).collect::<Vec<_>>();
        Self { period, next: Instant::now() + period / 2, stuck: vec![false; iterations.len()], iterations }
    }

    fn check(&mut self, switch: &Switch, notifier: &vswitch::notify::Notifier) {
        if Instant::now() < self.next {
            return;
        }
        self.next = Instant::now() + self.period / 2;
        let now: Vec<u64> = switch.stats().pmds.iter().map(|p| p.iterations).collect();
        let mut all = true;
        for (i, (n, before)) in now.iter().zip(&self.iterations).enumerate() {
            let stuck = n == before;
            if stuck && !self.stuck[i] {
                tracing::error!(
                    pmd = i,
                    "PMD made no progress for {} ms: not feeding the service watchdog",
                    (self.period / 2).as_millis()
                );
            }
            self.stuck[i] = stuck;
            all &= !stuck;
        }
        self.iterations = now;
        if all {
            notifier.send("WATCHDOG=1");
        }
    }
}

/// Drops at receive nobody would otherwise notice: no mbuf to receive into
/// (the pool), or the device's ring full (the PMD fell behind).
fn warn_receive_drops(before: &SwitchStats, now: &SwitchStats, mbufs: u32) {
    for (b, n) in before.ports.iter().zip(&now.ports) {
        let no_mbuf = n.rx_no_mbuf.saturating_sub(b.rx_no_mbuf);
        if no_mbuf > 0 {
            tracing::warn!(port = %n.name, packets = no_mbuf, "dropped at receive for want of mbufs: the pool of {mbufs} is exhausted or held (raise datapath.mbufs)");
        }
        let missed = n.rx_missed.saturating_sub(b.rx_missed);
        if missed > 0 {
            tracing::warn!(port = %n.name, packets = missed, "dropped at receive: the device's ring was full (the PMD fell behind)");
        }
    }
}

/// Removes files and directories this process created, on every exit path.
struct Cleanup {
    paths: Vec<PathBuf>,
}

impl Cleanup {
    fn remove(&self) {
        for p in &self.paths {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Runs a start-up step that can take long (a pool of millions of mbufs,
/// pcap files preloaded, a device that blocks on open) on its own thread and
/// keeps answering stop signals meanwhile: a stop removes what `cleanup`
/// holds and ends the process at once with status 0, without waiting for the
/// step. A step still running after a while is logged, so a start-up that
/// hangs says where.
fn interruptible<T: Send>(what: &str, cleanup: &Cleanup, step: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("start".into())
            .spawn_scoped(scope, step)
            .context("spawning the start-up thread")?;
        let started = Instant::now();
        let mut next_note = Duration::from_secs(10);
        while !handle.is_finished() {
            if os::stop_requested() {
                tracing::info!(
                    step = what,
                    after_ms = started.elapsed().as_millis() as u64,
                    "stop requested during start-up: leaving without waiting for the step"
                );
                cleanup.remove();
                use std::io::Write;
                let _ = std::io::stdout().flush();
                os::exit_now(0);
            }
            if started.elapsed() >= next_note {
                tracing::warn!(
                    step = what,
                    after_s = started.elapsed().as_secs(),
                    "start-up still running (SIGTERM stops it)"
                );
                next_note *= 2;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        handle.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn pct(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

fn stats_line(a: &SwitchStats, b: &SwitchStats, secs: f64) -> String {
    let mpps = |x: u64, y: u64| (y.saturating_sub(x)) as f64 / secs.max(1e-9) / 1e6;
    let ports: Vec<String> = a
        .ports
        .iter()
        .zip(&b.ports)
        .map(|(pa, pb)| {
            format!(
                "{} rx {:.2} tx {:.2}",
                pb.name,
                mpps(pa.rx_packets, pb.rx_packets),
                mpps(pa.tx_packets, pb.tx_packets)
            )
        })
        .collect();
    let lookups = (b.total(Counter::EmcHits) - a.total(Counter::EmcHits))
        + (b.total(Counter::SmcHits) - a.total(Counter::SmcHits))
        + (b.total(Counter::MegaflowHits) - a.total(Counter::MegaflowHits))
        + (b.total(Counter::Upcalls) - a.total(Counter::Upcalls));
    let drops: u64 = b.drops.values().sum::<u64>() - a.drops.values().sum::<u64>();
    let sum = |s: &SwitchStats, f: fn(&vswitch::switch::PmdView) -> u64| s.pmds.iter().map(f).sum::<u64>();
    // The software path's cycles: the model e-switch's share is not a CPU
    // cost a NIC has.
    let busy = (sum(b, |p| p.busy_cycles) - sum(a, |p| p.busy_cycles))
        .saturating_sub(sum(b, |p| p.hw_cycles) - sum(a, |p| p.hw_cycles));
    let pkts = b.total(Counter::Packets) - a.total(Counter::Packets);
    let hw = b.total(Counter::HwPackets) - a.total(Counter::HwPackets);
    let sw = pkts.saturating_sub(hw);
    let hw_share = if b.total(Counter::HwPackets) > 0 || a.total(Counter::HwPackets) > 0 {
        format!(" | hw {:.1}%", pct(hw, pkts))
    } else {
        String::new()
    };
    // Per software-handled packet; meaningless when nearly all are in hardware.
    let cycles = if sw > 0 && sw * 100 >= pkts { (busy / sw).to_string() } else { "-".to_owned() };
    // With several PMDs: each one's rate and busy share.
    let per_pmd = if b.pmds.len() > 1 {
        let each: Vec<String> = a
            .pmds
            .iter()
            .zip(&b.pmds)
            .map(|(pa, pb)| {
                let busy = pb.busy_cycles.saturating_sub(pa.busy_cycles);
                let all = busy + pb.idle_cycles.saturating_sub(pa.idle_cycles);
                format!(
                    "pmd{}@{} {:.2} Mpps {:.0}% busy",
                    pb.index,
                    pb.core,
                    mpps(pa.packets, pb.packets),
                    pct(busy, all)
                )
            })
            .collect();
        format!(" | {}", each.join(" "))
    } else {
        String::new()
    };
    format!(
        "[{:>5.0}s] {} Mpps{hw_share} | flows {} | emc {:.1}% smc {:.1}% megaflow {:.1}% upcall {:.2}% | drops {:.2} Mpps | {cycles} cyc/pkt{per_pmd}",
        b.uptime_s,
        ports.join(" | "),
        b.total(Counter::Flows),
        pct(b.total(Counter::EmcHits) - a.total(Counter::EmcHits), lookups),
        pct(b.total(Counter::SmcHits) - a.total(Counter::SmcHits), lookups),
        pct(b.total(Counter::MegaflowHits) - a.total(Counter::MegaflowHits), lookups),
        pct(b.total(Counter::Upcalls) - a.total(Counter::Upcalls), lookups),
        drops as f64 / secs.max(1e-9) / 1e6,
    )
}

/// Starts EAL. DPDK's runtime directory becomes the cleanup's once EAL
/// holds it, or when a failed start created it; one that was there before a
/// failure is another process's and stays.
fn start_eal(name: &str, args: &[String], cleanup: &mut Cleanup) -> Result<vswitch::dpdk::Eal> {
    let runtime_dir = eal_prefix(args).map(|p| PathBuf::from(format!("/var/run/dpdk/{p}")));
    let existed = runtime_dir.as_ref().is_some_and(|d| d.exists());
    let eal = vswitch::dpdk::EalBuilder::new(name).args(args.iter().cloned()).init();
    if let Some(dir) = runtime_dir {
        if eal.is_ok() || !existed {
            cleanup.paths.push(dir);
        }
    }
    eal.context("starting DPDK (EAL)")
}

/// The EAL file prefix in `args`: `--file-prefix=X` or `--file-prefix X`.
fn eal_prefix(args: &[String]) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| match a.strip_prefix("--file-prefix") {
        Some(rest) if rest.starts_with('=') => Some(rest[1..].to_owned()),
        Some("") => args.get(i + 1).cloned(),
        _ => None,
    })
}

/// Writes the traffic of the `[port.generate]` ports into `dir`: port index
/// to files, one per receive queue (flow `i` in file `i % queues`).
fn generate_traffic(config: &Config, dir: &std::path::Path) -> Result<BTreeMap<usize, Vec<PathBuf>>> {
    let mut pcaps = BTreeMap::new();
    for (i, p) in config.ports.iter().enumerate() {
        if let Some(g) = &p.generate {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let queues = p.rx_queues.count(config.pmd_cores.len());
            let mut files = Vec::new();
            for k in 0..queues {
                let path = if queues == 1 {
                    dir.join(format!("{}.pcap", p.name))
                } else {
                    dir.join(format!("{}.q{k}.pcap", p.name))
                };
                let n = write_pcap_share(&path, &TrafficSpec::from(g), k, queues)
                    .with_context(|| format!("writing {}", path.display()))?;
                tracing::info!(port = %p.name, queue = k, flows = g.share(k, queues), packets = n, file = %path.display(), "generated traffic");
                files.push(path);
            }
            pcaps.insert(i, files);
        }
    }
    Ok(pcaps)
}

/// `--probe-offload`: the configuration's ports opened (no PMDs), every rule
/// shape validated on the NIC's rte_flow and on the model e-switch.
fn probe_offload(path: &std::path::Path) -> Result<()> {
    use offload::device::FlowDevice;
    use offload::probe::{probe, render, ProbePorts};
    use vswitch::config::Role;
    let config = Config::load(path)?;
    // Generated-traffic ports open on their pcap like in a run.
    let run_dir = std::env::temp_dir().join(format!("vswitchd-probe-{}", std::process::id()));
    let mut cleanup = Cleanup { paths: vec![run_dir.clone()] };
    let pcaps = generate_traffic(&config, &run_dir)?;
    let eal = start_eal("vswitchd-probe", &config.eal_args, &mut cleanup)?;
    let mut ports = Vec::new();
    // Uplinks first: on a switchdev NIC the uplink's probe creates the representors.
    let mut order: Vec<(usize, &vswitch::config::PortSpec)> = config.ports.iter().enumerate().collect();
    order.sort_by_key(|(_, s)| s.role != Role::Uplink);
    for (i, spec) in order {
        let devargs = match pcaps.get(&i) {
            Some(files) => vswitch::datapath::ports::pcap_devargs(&spec.devargs, files),
            None => spec.devargs.clone(),
        };
        let port = vswitch::dpdk::Port::open(&eal, &devargs)
            .with_context(|| format!("port {:?}: opening {devargs:?}", spec.name))?;
        ports.push((spec, port));
    }
    let id = |role: Role| ports.iter().find(|(s, _)| s.role == role).map(|(_, p)| p.id());
    let (Some(uplink), Some(vf)) = (id(Role::Uplink), id(Role::Representor)) else {
        bail!("--probe-offload needs an uplink and a representor port in {}", path.display());
    };
    let ethdevs = ports.iter().map(|(s, p)| format!("{}={}", s.name, p.id())).collect::<Vec<_>>().join(" ");
    println!(
        "probe: ethdev ports {ethdevs}; sample rules between {vf} (representor) and {uplink} (uplink), group {}\n",
        config.offload.group
    );
    let sample = ProbePorts { vf, uplink };
    match offload::rte_flow::device::RteFlowDevice::new(uplink) {
        Ok(mut dev) => {
            let proxy = dev.proxy();
            let rows = probe(&mut dev, sample, proxy, config.offload.group);
            print!("{}", render(&format!("NIC: {}", dev.describe()), &rows));
            println!("\n  testpmd commands to try them by hand (dpdk-testpmd -a <PCI>,dv_flow_en=1,representor=vf[0-3] -- -i):");
            for r in &rows {
                for line in &r.testpmd {
                    println!("    {line}");
                }
            }
        }
        Err(e) => println!("NIC: no transfer proxy for port {uplink}: {e}"),
    }
    let mut model = offload::model::ModelDevice::new(std::sync::Arc::new(offload::model::ModelSwitch::new(
        config.offload.model.clone(),
    )));
    let rows = probe(&mut model, sample, uplink, config.offload.group);
    print!(
        "\n{}",
        render(&format!("model e-switch (a test and demo backend, not a NIC): {}", model.describe()), &rows)
    );
    Ok(())
}

fn summary(s: &SwitchStats) -> String {
    let mut out = format!(
        "vswitchd: ran {:.1} s, {} packets ({} exact-match, {} signature-match, {} megaflow, {} upcalls)",
        s.uptime_s,
        s.total(Counter::Packets),
        s.total(Counter::EmcHits),
        s.total(Counter::SmcHits),
        s.total(Counter::MegaflowHits),
        s.total(Counter::Upcalls)
    );
    for p in &s.ports {
        out.push_str(&format!(
            "\n  {:<10} rx {:>12}  tx {:>12}  tx-dropped {}",
            p.name, p.rx_packets, p.tx_packets, p.tx_dropped
        ));
    }
    let drops: Vec<String> = s.drops.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{k}={v}")).collect();
    if !drops.is_empty() {
        out.push_str(&format!("\n  drops: {}", drops.join(" ")));
    }
    let b = &s.balance;
    out.push_str(&format!(
        "\n  balance: received {} + copies {} + generated {} = sent {} + dropped {} + consumed {} (unaccounted {})",
        b.received,
        b.copies,
        b.generated,
        b.sent,
        b.dropped,
        b.consumed,
        b.unaccounted()
    ));
    out
}
