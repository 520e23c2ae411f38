//! Loading and comparing configurations: [`Config::load`], [`Config::parse`]
//! (each section's parser in order), [`Config::diff`] for `reload`.

use super::ctx::{ConfigError, Ctx};
use super::raw::RawConfig;
use super::types::*;
use super::{datapath, mbufs, offload, ports, rules, tunnels, underlay};

/// The configuration `vswitchd` runs with no arguments: the demo on virtual devices.
pub const DEMO_CONFIG: &str = include_str!("../../../configs/demo.toml");

fn names<T>(items: &[T], name: impl Fn(&T) -> &String) -> Vec<String> {
    items.iter().map(|i| name(i).clone()).collect()
}

/// "tunnels changed: added vxlan1, removed vxlan0" (or reordered / edited).
fn describe_change(what: &str, old: &[String], new: &[String]) -> String {
    let added: Vec<&str> = new.iter().filter(|n| !old.contains(n)).map(String::as_str).collect();
    let removed: Vec<&str> = old.iter().filter(|n| !new.contains(n)).map(String::as_str).collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("added {}", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {}", removed.join(", ")));
    }
    if parts.is_empty() {
        parts.push(if old == new { "settings edited".to_owned() } else { "reordered".to_owned() });
    }
    format!("{what}s changed ({})", parts.join("; "))
}

impl Config {
    /// Compares a configuration loaded for `reload` with this (running) one.
    /// Rule port names resolve against the port and tunnel numbering, so any
    /// change to ports or tunnels (added, removed, reordered, edited) is
    /// refused rather than resolved against a numbering the switch lacks.
    pub fn reload_diff(&self, new: &Config) -> ReloadDiff {
        let mut d = ReloadDiff::default();
        let port = |p: &PortSpec| {
            (
                p.name.clone(),
                p.devargs.clone(),
                p.role,
                p.mtu,
                p.ip.clone(),
                p.mac,
                p.switch_domain,
                p.kernel_ifname.clone(),
                p.rx_queues,
                p.rxq_affinity.clone(),
            )
        };
        let (old_ports, new_ports): (Vec<_>, Vec<_>) =
            (self.ports.iter().map(port).collect(), new.ports.iter().map(port).collect());
        if old_ports != new_ports {
            d.refused.push(describe_change("port", &names(&self.ports, |p| &p.name), &names(&new.ports, |p| &p.name)));
        }
        let tunnel = |t: &TunnelSpec| (t.name.clone(), t.remote, t.vni, t.local, t.udp_port);
        let (old_t, new_t): (Vec<_>, Vec<_>) =
            (self.tunnels.iter().map(tunnel).collect(), new.tunnels.iter().map(tunnel).collect());
        if old_t != new_t {
            d.refused.push(describe_change(
                "tunnel",
                &names(&self.tunnels, |t| &t.name),
                &names(&new.tunnels, |t| &t.name),
            ));
        }
        let datapath = |c: &Config| {
            (
                c.pmd_cores.clone(),
                c.queues,
                c.idle_timeout,
                c.upcall_budget,
                c.emc_entries,
                c.smc_entries,
                c.emc_insert_inv_prob,
                c.max_flows,
                c.prefix_checks,
            )
        };
        for (differs, section) in [
            (self.underlay != new.underlay, "underlay"),
            (self.routes != new.routes, "route"),
            (self.neighbours != new.neighbours, "neighbour"),
            (datapath(self) != datapath(new) || self.mbufs != new.mbufs, "datapath"),
            (self.offload != new.offload, "offload"),
            (self.eal_args != new.eal_args, "eal"),
            (self.metrics != new.metrics || self.stats_interval != new.stats_interval, "metrics"),
            (self.socket != new.socket, "control"),
            (self.openflow != new.openflow, "openflow"),
        ] {
            if differs {
                d.not_applied.push(section);
            }
        }
        d
    }

    /// Loads and validates a file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, line and field.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        Self::load_with(path, &Overrides::default())
    }

    /// Loads a file with command-line `overrides`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, line and field (or the flag).
    pub fn load_with(path: &std::path::Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            field: "file".into(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse_with(&text, &file, overrides)
    }

    /// The embedded demo configuration.
    ///
    /// # Errors
    /// Only if the embedded file is broken (a build defect; tests check it).
    pub fn demo() -> Result<Self, ConfigError> {
        Self::demo_with(&Overrides::default())
    }

    /// The embedded demo with command-line `overrides`.
    ///
    /// # Errors
    /// An override the machine cannot take (the embedded file is tested).
    pub fn demo_with(overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::parse_with(DEMO_CONFIG, "<embedded demo: configs/demo.toml>", overrides)
    }

    /// Parses and validates configuration text; `file` names it in errors.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, line and field.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        Self::parse_with(text, file, &Overrides::default())
    }

    /// As [`Config::parse`], with command-line `overrides` validated as the
    /// file's own settings would be (an error names the flag).
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, line and field.
    pub fn parse_with(text: &str, file: &str, overrides: &Overrides) -> Result<Self, ConfigError> {
        let ctx = Ctx::new(file, text);
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| syntax_error(&ctx, &e))?;
        if let Some(cores) = &overrides.pmd_cores {
            raw.datapath.pmd_cores = Some(toml::Spanned::new(0..0, cores.clone()));
        }
        let flag = |e: ConfigError| match (&overrides.pmd_cores, e.field.as_str()) {
            (Some(_), "datapath.pmd_cores") => ConfigError { file: "--pmd-cores".into(), line: 0, ..e },
            _ => e,
        };
        let cores = datapath::machine_cores();
        let dp = datapath::datapath(&ctx, &raw.datapath, cores).map_err(flag)?;
        let (socket, stats_interval) = datapath::control(&ctx, &raw.control)?;
        let metrics = datapath::metrics(&ctx, &raw.metrics)?;
        let ports = ports::ports(&ctx, &raw.ports)?;
        check_queues(&ctx, &raw.ports, &ports, &dp.pmd_cores)?;
        let tunnels = tunnels::tunnels(&ctx, &raw.tunnels, &ports)?;
        let underlay_spec = underlay::underlay(&ctx, raw.underlay.as_ref(), &ports)?;
        let routes = underlay::routes(&ctx, &raw.routes, &ports)?;
        if underlay_spec.routes == crate::config::RouteMode::Kernel {
            if let Some(r) = raw.routes.first() {
                return ctx.err(
                    r,
                    "route",
                    "[underlay] routes = \"kernel\" takes routes from the kernel only; use \"both\" to add [[route]]s",
                );
            }
        }
        let neighbours = underlay::neighbours(&ctx, &raw.neighbours, &ports)?;
        let rules = rules::rules(&ctx, &raw.rules, &ports, &tunnels)?;
        let mbufs = pool_size(&ctx, dp.mbufs, &ports, dp.pmd_cores.len())?;
        let offload = offload::offload(&ctx, raw.offload.as_ref(), dp.idle_timeout)?;
        let openflow = super::openflow::openflow(&ctx, raw.openflow.as_ref())?;
        Ok(Self {
            source: file.to_owned(),
            eal_args: datapath::eal_args(&raw.eal.args),
            pmd_cores: dp.pmd_cores,
            queues: dp.queues,
            idle_timeout: dp.idle_timeout,
            upcall_budget: dp.upcall_budget,
            emc_entries: dp.emc_entries,
            smc_entries: dp.smc_entries,
            prefix_checks: dp.prefix_checks,
            emc_insert_inv_prob: dp.emc_insert_inv_prob,
            max_flows: dp.max_flows,
            mbufs,
            socket,
            socket_overridden: false,
            overrides: overrides.clone(),
            metrics,
            stats_interval,
            ports,
            tunnels,
            underlay: underlay_spec,
            routes,
            neighbours,
            rules,
            offload,
            openflow,
        })
    }

    /// Port number by name (ports first, then tunnels).
    pub fn port_number(&self, name: &str) -> Option<u32> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .or_else(|| self.tunnels.iter().position(|t| t.name == name).map(|i| i + self.ports.len()))
            .map(|i| i as u32)
    }
}

/// Pinned queues name PMD cores; a generated port has a flow per queue at least.
fn check_queues(
    ctx: &Ctx<'_>,
    raw: &[toml::Spanned<super::raw::RawPort>],
    ports: &[PortSpec],
    pmd_cores: &[usize],
) -> Result<(), ConfigError> {
    for (spec, raw) in ports.iter().zip(raw) {
        let raw = raw.get_ref();
        let queues = spec.rx_queues.count(pmd_cores.len());
        if let (Some(a), Some(&(q, core))) =
            (&raw.rxq_affinity, spec.rxq_affinity.iter().find(|(_, c)| !pmd_cores.contains(c)))
        {
            return ctx.err(
                a,
                "port.rxq_affinity",
                format!("queue {q} is pinned to core {core}, which runs no PMD (datapath.pmd_cores = {pmd_cores:?})"),
            );
        }
        if let (Some(a), Some(&(q, _))) = (&raw.rxq_affinity, spec.rxq_affinity.iter().find(|(q, _)| *q >= queues)) {
            return ctx.err(a, "port.rxq_affinity", format!("queue {q} does not exist (the port has {queues})"));
        }
        if let (Some(g), Some(at)) = (&spec.generate, &raw.generate) {
            if g.flows < u32::from(queues) {
                return ctx.err(
                    at,
                    "port.generate.flows",
                    format!("{} flows cannot feed {queues} receive queues (a file per queue)", g.flows),
                );
            }
        }
    }
    Ok(())
}

/// A TOML syntax or schema error, located.
fn syntax_error(ctx: &Ctx<'_>, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map_or(0, |s| ctx.line_of(s.start));
    let mut msg = e.message().trim().to_owned();
    if msg.is_empty() {
        // Some toml errors carry only a position (found by fuzzing).
        msg = "not valid TOML here".to_owned();
    }
    if msg.starts_with("unknown field `rules`") {
        msg.push_str(" (in TOML, top-level keys such as `rules` must come before the first [table] or [[port]])");
    }
    // (An empty key, `'' = 1`, names no field: found by fuzzing.)
    let field = msg
        .split('`')
        .nth(1)
        .filter(|f| msg.starts_with("unknown field") && !f.is_empty())
        .unwrap_or("syntax")
        .to_owned();
    ctx.error_at(line, &field, msg)
}

/// The mbuf count: as given, if it covers the need ([`mbufs::need`]), or
/// the need with a quarter more (at least 16,384) by default.
fn pool_size(ctx: &Ctx<'_>, given: Option<(u64, usize)>, ports: &[PortSpec], pmds: usize) -> Result<u32, ConfigError> {
    let need = mbufs::need(ports, pmds);
    let total = need.total();
    match given {
        None => Ok((total + total / 4).max(16_384).min(u64::from(u32::MAX)) as u32),
        Some((n, line)) if n > u64::from(u32::MAX) => Err(ctx.error_at(line, "datapath.mbufs", "too large")),
        Some((n, line)) if n < total => Err(ctx.error_at(
            line,
            "datapath.mbufs",
            format!("{n} is too few: need at least {total} ({})", need.explain(ports.len(), pmds)),
        )),
        Some((n, _)) => Ok(n as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RxQueues;
    use crate::net::Prefix;
    use std::time::Duration;

    const GOOD: &str = r#"
[datapath]
pmd_cores = [0]

[control]
socket = "/tmp/x.sock"

[[port]]
name = "vf0"
role = "representor"
devargs = "net_ring0"

[[port]]
name = "uplink0"
role = "uplink"
devargs = "net_ring1"
ip = "198.18.0.1/24"
mtu = 9000

rules = [
  "priority=10,in_port=vf0 actions=output:uplink0",
]
"#;

    #[test]
    fn demo_config_is_valid() {
        let c = Config::demo().expect("the embedded demo config must be valid");
        assert!(c.ports.len() >= 3);
        assert!(!c.rules.is_empty());
    }

    #[test]
    fn good_config() {
        // `rules` after [[port]] tables belongs to the last port in TOML; the
        // schema refuses it, so configs put rules at the top. Check the refusal:
        let e = Config::parse(GOOD, "t.toml").expect_err("rules inside a port table");
        assert_eq!((e.line, e.field.as_str()), (20, "rules"), "{e}");
        assert!(e.message.contains("before the first"), "{e}");
        let fixed = format!(
            "rules = [\"priority=10,in_port=vf0 actions=output:uplink0\"]\n{}",
            GOOD.split("rules = [").next().unwrap_or("")
        );
        let c = Config::parse(&fixed, "t.toml").expect("valid");
        assert_eq!(c.pmd_cores, vec![0]);
        assert_eq!(c.ports[1].mtu, 9000);
        assert_eq!(c.ports[1].ip, vec!["198.18.0.1/24".parse::<Prefix>().expect("prefix")]);
        assert_eq!(c.rules[0].line, 1);
        assert_eq!(c.idle_timeout, Duration::from_secs(10));
        assert!(c.eal_args.iter().any(|a| a.starts_with("--file-prefix=")));
    }

    /// The check of a large rule list stays linear: ten times the rules
    /// take about ten times as long (a quadratic check, as once, a hundred).
    /// A ratio of two sizes in one run, so a slow or busy machine does not
    /// matter; the best of three runs of each.
    #[test]
    fn checking_rules_scales_linearly() {
        let text = |n: usize| {
            let rules: String = (0..n)
                .map(|i| {
                    format!(
                        "  \"priority={},in_port=vf0,ip,nw_dst=10.{}.{}.0/24 actions=drop\",\n",
                        i % 1000,
                        i >> 16,
                        (i >> 8) & 255
                    )
                })
                .collect();
            format!("rules = [\n{rules}]\n[[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_ring0\"\n")
        };
        let best = |t: &str| {
            (0..3)
                .map(|_| {
                    let t0 = std::time::Instant::now();
                    Config::parse(t, "f.toml").expect("valid");
                    t0.elapsed().as_secs_f64()
                })
                .fold(f64::MAX, f64::min)
        };
        let (small, large) = (text(10_000), text(100_000));
        let ratio = best(&large) / best(&small);
        assert!(ratio < 30.0, "100k rules took {ratio:.1}x as long as 10k (linear: about 10)");
    }

    #[test]
    fn errors_name_line_and_field() {
        let base = "[[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_ring0\"\n";
        let cases = [
            (format!("{base}mtu = 20\n"), 5, "port.mtu"),
            (base.replace("representor", "vm"), 3, "port.role"),
            (format!("rules = [\"in_port=vf9 actions=drop\"]\n{base}"), 1, "rules"),
            (format!("[datapath]\npmd_cores = [99]\n{base}"), 2, "datapath.pmd_cores"),
            (format!("[datapath]\nidle_timeout_ms = 1\n{base}"), 2, "datapath.idle_timeout_ms"),
            // Hardware hits read less often than flows idle out: refused.
            (
                format!("[datapath]\nidle_timeout_ms = 100\n[offload]\nquery_interval_ms = 60000\n{base}"),
                4,
                "offload.query_interval_ms",
            ),
            (
                format!("[datapath]\nidle_timeout_ms = 900\n[offload]\npolicy = \"all\"\n{base}"),
                3,
                "offload.query_interval_ms",
            ),
            (format!("{base}colour = \"red\"\n"), 5, "colour"),
            (format!("[metrics]\nlisten = \"nowhere\"\n{base}"), 2, "metrics.listen"),
            (format!("{base}[[port]]\nname = \"vf0\"\nrole = \"uplink\"\ndevargs = \"x\"\n"), 6, "port.name"),
            (format!("{base}ip = \"1.2.3.4/24\"\n"), 5, "port.ip"),
            (base.replace("\"vf0\"", "\"in_port\""), 2, "port.name"),
            (format!("{base}mac = \"01:00:5e:00:00:01\"\n"), 5, "port.mac"),
            (format!("{base}mac = \"02:00:00:00:01\"\n"), 5, "port.mac"),
            ("[[port]]\nname = \"vf0\"\nrole = \"uplink\"\n".to_owned(), 2, "port.devargs"),
            ("x = [\n".to_owned(), 2, "syntax"),
            // A NUL in a comment: toml gives no message (found by fuzzing).
            (format!("{base}# a comment \u{0}\n"), 5, "syntax"),
            // An empty key names no field (found by fuzzing).
            ("'' = '1'\n".to_owned(), 1, "syntax"),
            (format!("{base}rx_queues = 0\n"), 5, "port.rx_queues"),
            (format!("{base}rx_queues = 65\n"), 5, "port.rx_queues"),
            (format!("{base}rx_queues = \"many\"\n"), 5, "port.rx_queues"),
            (format!("{base}rxq_affinity = \"0-1\"\n"), 5, "port.rxq_affinity"),
            (format!("{base}rxq_affinity = \"0:0,0:0\"\n"), 5, "port.rxq_affinity"),
            (format!("{base}rx_queues = 2\nrxq_affinity = \"2:0\"\n"), 6, "port.rxq_affinity"),
            (format!("[datapath]\npmd_cores = [0]\n{base}rxq_affinity = \"0:1\"\n"), 7, "port.rxq_affinity"),
            (format!("[datapath]\nrxq_assign = \"group\"\n{base}"), 2, "datapath.rxq_assign"),
            (format!("[datapath]\nauto_lb_load_threshold = 0\n{base}"), 2, "datapath.auto_lb_load_threshold"),
            (format!("[datapath]\nrxq_interval_ms = 10\n{base}"), 2, "datapath.rxq_interval_ms"),
        ];
        for (text, line, field) in cases {
            let e = Config::parse(&text, "f.toml").expect_err(&text);
            assert_eq!((e.line, e.field.as_str()), (line, field), "{e}\n---\n{text}");
            assert!(e.to_string().starts_with(&format!("f.toml:{line}: {field}: ")), "{e}");
            assert!(!e.message.is_empty(), "{e:?}");
        }
    }

    #[test]
    fn queues_and_their_assignment() {
        let port =
            |extra: &str| format!("[[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_ring0\"\n{extra}");
        let c = Config::parse(&port(""), "f.toml").expect("defaults");
        assert_eq!(c.ports[0].rx_queues, RxQueues::Count(1));
        assert_eq!(c.queues, crate::config::QueueSettings::default());
        let text = format!(
            "[datapath]\npmd_cores = [0, 1]\nrxq_assign = \"roundrobin\"\npmd_rxq_isolate = false\n\
             auto_lb = true\nauto_lb_load_threshold = 80\nauto_lb_improvement_threshold = 10\nauto_lb_interval_ms = 2000\n{}",
            port("rx_queues = \"auto\"\nrxq_affinity = \"1:1\"\n")
        );
        if datapath::machine_cores() < 2 {
            return;
        }
        let c = Config::parse(&text, "f.toml").expect("valid");
        assert_eq!((c.ports[0].rx_queues, c.ports[0].rx_queues.count(2)), (RxQueues::Auto, 2));
        assert_eq!(c.ports[0].rxq_affinity, vec![(1, 1)]);
        assert_eq!((c.queues.assign, c.queues.isolate), (crate::config::Assign::Roundrobin, false));
        let lb = c.queues.auto_lb;
        assert_eq!((lb.enabled, lb.load_pct, lb.improvement_pct), (true, 80, 10));
        assert_eq!(lb.interval, Duration::from_secs(2));
        // Generated traffic: a file per queue, a flow per file at least.
        let gen = |flows: u32| {
            format!(
                "[[port]]\nname = \"vf0\"\nrole = \"representor\"\nrx_queues = 4\n[port.generate]\nflows = {flows}\n"
            )
        };
        let e = Config::parse(&gen(3), "f.toml").expect_err("3 flows for 4 queues");
        assert_eq!(e.field, "port.generate.flows", "{e}");
        let c = Config::parse(&gen(10), "f.toml").expect("10 flows for 4 queues");
        let g = c.ports[0].generate.as_ref().expect("generate");
        assert_eq!((0..4).map(|k| g.share(k, 4)).collect::<Vec<_>>(), vec![3, 3, 2, 2]);
        // The pool counts a ring per receive queue.
        assert_eq!(crate::config::mbufs::need(&c.ports, 1).rx_rings, 4 * u64::from(crate::dpdk::RX_DESCRIPTORS));
    }

    #[test]
    fn a_route_gateway_must_be_on_the_uplinks_connected_prefix() {
        let up = "[[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_ring0\"\nip = \"198.18.0.1/24\"\n";
        let route =
            |via: &str| format!("{up}[[route]]\nprefix = \"10.9.0.0/16\"\nvia = \"{via}\"\nport = \"uplink0\"\n");
        assert!(Config::parse(&route("198.18.0.254"), "f.toml").is_ok());
        for (via, why) in [
            ("198.19.0.254", "not on a connected prefix of uplink0 (198.18.0.0/24)"),
            ("198.18.0.1", "uplink0's own address"),
            ("2001:db8::1", "same address family"),
        ] {
            let e = Config::parse(&route(via), "f.toml").expect_err(via);
            assert_eq!((e.line, e.field.as_str()), (8, "route.via"), "{e}");
            assert!(e.message.contains(why), "{e}");
        }
        let bare = route("198.18.0.254").replace("ip = \"198.18.0.1/24\"\n", "");
        let e = Config::parse(&bare, "f.toml").expect_err("no address");
        assert!(e.message.contains("uplink0 has no address"), "{e}");
    }

    #[test]
    fn kernel_underlay_settings_and_their_errors() {
        let uplink =
            "[[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_ring1\"\nip = \"198.18.0.1/24\"\n";
        let ok = format!("[underlay]\nroutes = \"both\"\ntable = 100\n{uplink}kernel_ifname = \"eth1\"\n");
        let c = Config::parse(&ok, "t.toml").expect("valid");
        assert_eq!(c.underlay.routes, crate::config::RouteMode::Both);
        assert_eq!(c.underlay.table, 100);
        assert_eq!(c.ports[0].kernel_ifname.as_deref(), Some("eth1"));
        let c = Config::parse(&format!("[underlay]\ntable = \"main\"\n{uplink}"), "t.toml").expect("valid");
        assert_eq!((c.underlay.routes, c.underlay.table), (crate::config::RouteMode::Config, 254));
        let rep = "[[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_ring0\"\n";
        let route = "[[route]]\nprefix = \"10.0.0.0/8\"\nvia = \"198.18.0.254\"\nport = \"uplink0\"\n";
        let cases = [
            (format!("[underlay]\nroutes = \"bgp\"\n{uplink}"), 2, "underlay.routes", "expected"),
            (
                format!("[underlay]\nroutes = \"kernel\"\n{uplink}"),
                2,
                "underlay.routes",
                "needs an uplink with kernel_ifname",
            ),
            (format!("[underlay]\ntable = 255\n{uplink}"), 2, "underlay.table", "local"),
            (format!("[underlay]\ntable = 0\n{uplink}"), 2, "underlay.table", "expected"),
            (format!("[underlay]\ntable = \"default\"\n{uplink}"), 2, "underlay.table", "main"),
            (format!("[underlay]\nnetlink_rcvbuf = 1024\n{uplink}"), 2, "underlay.netlink_rcvbuf", "65536"),
            (format!("{rep}kernel_ifname = \"eth0\"\n"), 5, "port.kernel_ifname", "only an uplink"),
            (format!("{uplink}kernel_ifname = \"a/b\"\n"), 6, "port.kernel_ifname", "1-15 bytes"),
            (format!("{uplink}kernel_ifname = \"sixteen-chars-xx\"\n"), 6, "port.kernel_ifname", "1-15 bytes"),
            (
                format!(
                    "{uplink}kernel_ifname = \"eth1\"\n{}kernel_ifname = \"eth1\"\n",
                    uplink.replace("uplink0", "uplink1")
                ),
                12,
                "port.kernel_ifname",
                "already stands for uplink \"uplink0\"",
            ),
            (
                format!("[underlay]\nroutes = \"kernel\"\n{uplink}kernel_ifname = \"eth1\"\n{route}"),
                9,
                "route",
                "use \"both\"",
            ),
        ];
        for (text, line, field, says) in cases {
            let e = Config::parse(&text, "t.toml").expect_err(&text);
            assert_eq!((e.line, e.field.as_str()), (line, field), "{e}\n{text}");
            assert!(e.message.contains(says), "{e}");
        }
        // The underlay section and kernel_ifname need a restart.
        let a = Config::parse(&ok, "t.toml").expect("valid");
        let b = Config::parse(&ok.replace("table = 100", "table = 101"), "t.toml").expect("valid");
        assert_eq!(a.reload_diff(&b).not_applied, vec!["underlay"]);
        let c = Config::parse(&ok.replace("eth1", "eth2"), "t.toml").expect("valid");
        assert!(!a.reload_diff(&c).refused.is_empty(), "a port's kernel_ifname changed");
    }

    #[test]
    fn reload_refuses_port_and_tunnel_changes_and_names_sections_it_does_not_apply() {
        let base = "rules = [\"in_port=vf0 actions=output:vxlan0\"]\n\
            [[port]]\nname = \"vf0\"\nrole = \"representor\"\ndevargs = \"net_ring0\"\n\
            [[port]]\nname = \"uplink0\"\nrole = \"uplink\"\ndevargs = \"net_ring1\"\nip = \"198.18.0.1/24\"\n";
        let t =
            |name: &str, remote: &str| format!("[[tunnel]]\nname = \"{name}\"\nremote_ip = \"{remote}\"\nvni = 1\n");
        let two = format!("{base}{}{}", t("vxlan0", "198.18.0.2"), t("vxlan1", "198.18.0.3"));
        let running = Config::parse(&two, "a.toml").expect("valid");
        let diff = |text: String| running.reload_diff(&Config::parse(&text, "b.toml").expect("valid"));
        assert_eq!(diff(two.clone()), ReloadDiff::default());
        let cases = [
            (
                format!("{base}{}{}", t("vxlan1", "198.18.0.3"), t("vxlan0", "198.18.0.2")),
                "tunnels changed (reordered)",
            ),
            (format!("{base}{}", t("vxlan0", "198.18.0.2")), "tunnels changed (removed vxlan1)"),
            (format!("{two}{}", t("vxlan2", "198.18.0.4")), "tunnels changed (added vxlan2)"),
            (
                format!("{base}{}{}", t("vxlan0", "198.18.0.9"), t("vxlan1", "198.18.0.3")),
                "tunnels changed (settings edited)",
            ),
            (two.replace("198.18.0.1/24", "198.18.0.1/25"), "ports changed (settings edited)"),
        ];
        for (text, why) in cases {
            assert_eq!(diff(text).refused, vec![why.to_owned()]);
        }
        let routed = format!("{two}[[route]]\nprefix = \"10.9.0.0/16\"\nvia = \"198.18.0.254\"\nport = \"uplink0\"\n");
        let d =
            diff(routed.replace("[[port]]\nname = \"vf0\"", "[datapath]\nmax_flows = 100\n[[port]]\nname = \"vf0\""));
        assert!(d.refused.is_empty(), "{d:?}");
        assert_eq!(d.not_applied, vec!["route", "datapath"]);
    }
}
