//! The daemon's TOML configuration: schema, defaults and validation.
//!
//! Everything is checked before anything starts. An error names the file, the
//! line and the field, and says what was expected.

use crate::ofrule::{parse_rule, RuleSpec};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// The configuration `vswitchd` runs with no arguments: the demo on virtual devices.
pub const DEMO_CONFIG: &str = include_str!("../../configs/demo.toml");

/// A configuration error: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

/// Port roles on an NFV host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A VF representor (a VM's port).
    Representor,
    /// The uplink (PF / wire).
    Uplink,
    /// A VXLAN tunnel port (shown in stats; not a `role` in `[[port]]`).
    Tunnel,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Representor => "representor",
            Role::Uplink => "uplink",
            Role::Tunnel => "tunnel",
        }
    }
}

/// Generated test traffic for a port (demo and benchmarks): a pcap written at
/// start and replayed forever with net_pcap's `infinite_rx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generate {
    pub flows: u32,
    /// Frame size without FCS (60 = a 64-byte frame on the wire).
    pub size: usize,
    pub dl_src: [u8; 6],
    /// Destination MACs, used round-robin over the flows.
    pub dl_dst: Vec<[u8; 6]>,
    pub nw_src: std::net::Ipv4Addr,
    pub nw_dst: std::net::Ipv4Addr,
}

/// One port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub name: String,
    /// DPDK devargs; `{pcap}` stands for the generated traffic file.
    pub devargs: String,
    pub role: Role,
    pub mtu: u16,
    /// Addresses and prefix lengths on an uplink (VTEP addresses; one of
    /// each family at most).
    pub ip: Vec<(IpAddr, u8)>,
    pub generate: Option<Generate>,
    pub line: usize,
}

/// A VXLAN tunnel port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    pub name: String,
    pub remote: IpAddr,
    /// `None`: the VNI comes from the flow (`set_tunnel`) and is matched with `tun_id`.
    pub vni: Option<u32>,
    pub local: Option<IpAddr>,
    pub udp_port: u16,
    pub line: usize,
}

/// A configured route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub prefix: IpAddr,
    pub len: u8,
    pub via: Option<IpAddr>,
    /// Uplink port number.
    pub port: u32,
}

/// A static neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourSpec {
    pub ip: IpAddr,
    pub mac: [u8; 6],
    pub port: u32,
}

/// A rule with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredRule {
    pub text: String,
    pub spec: RuleSpec,
    pub line: usize,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (a path or "<embedded demo>").
    pub source: String,
    pub eal_args: Vec<String>,
    pub pmd_cores: Vec<usize>,
    pub idle_timeout: Duration,
    pub upcall_budget: usize,
    pub emc_entries: usize,
    pub emc_insert_inv_prob: u64,
    pub max_flows: usize,
    pub mbufs: u32,
    pub socket: PathBuf,
    pub metrics: Option<SocketAddr>,
    pub stats_interval: Duration,
    pub ports: Vec<PortSpec>,
    /// Tunnel ports; their datapath numbers follow the ports'.
    pub tunnels: Vec<TunnelSpec>,
    pub routes: Vec<RouteSpec>,
    pub neighbours: Vec<NeighbourSpec>,
    pub rules: Vec<ConfiguredRule>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEal {
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatapath {
    pmd_cores: Option<Spanned<Vec<usize>>>,
    idle_timeout_ms: Option<Spanned<u64>>,
    upcall_budget: Option<Spanned<usize>>,
    emc_entries: Option<Spanned<usize>>,
    emc_insert_inv_prob: Option<Spanned<u64>>,
    max_flows: Option<Spanned<usize>>,
    mbufs: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<Spanned<String>>,
    stats_interval_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGenerate {
    flows: Option<Spanned<u32>>,
    size: Option<Spanned<usize>>,
    dl_src: Option<Spanned<String>>,
    dl_dst: Option<Spanned<OneOrMany>>,
    nw_src: Option<Spanned<String>>,
    nw_dst: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: Spanned<String>,
    devargs: Option<Spanned<String>>,
    role: Spanned<String>,
    mtu: Option<Spanned<u32>>,
    ip: Option<Spanned<OneOrMany>>,
    generate: Option<Spanned<RawGenerate>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawVni {
    Number(u32),
    Word(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTunnel {
    name: Spanned<String>,
    remote_ip: Spanned<String>,
    vni: Option<Spanned<RawVni>>,
    local_ip: Option<Spanned<String>>,
    udp_port: Option<Spanned<u16>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: Spanned<String>,
    via: Option<Spanned<String>>,
    port: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbour {
    ip: Spanned<String>,
    mac: Spanned<String>,
    port: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    eal: RawEal,
    #[serde(default)]
    datapath: RawDatapath,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default, rename = "port")]
    ports: Vec<Spanned<RawPort>>,
    #[serde(default, rename = "tunnel")]
    tunnels: Vec<Spanned<RawTunnel>>,
    #[serde(default, rename = "route")]
    routes: Vec<Spanned<RawRoute>>,
    #[serde(default, rename = "neighbour")]
    neighbours: Vec<Spanned<RawNeighbour>>,
    #[serde(default)]
    rules: Vec<Spanned<String>>,
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].bytes().filter(|&b| b == b'\n').count() + 1
    }

    fn err<T, S>(&self, at: &Spanned<S>, field: &str, message: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.file.to_owned(),
            line: self.line_of(at.span().start),
            field: field.to_owned(),
            message: message.into(),
        })
    }

    fn err_at<T>(&self, line: usize, field: &str, message: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError { file: self.file.to_owned(), line, field: field.to_owned(), message: message.into() })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && !name.chars().all(|c| c.is_ascii_digit())
}

impl Config {
    /// Loads and validates a file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, line and field.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            field: "file".into(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &file)
    }

    /// The embedded demo configuration.
    ///
    /// # Errors
    /// Only if the embedded file is broken (a build defect; tests check it).
    pub fn demo() -> Result<Self, ConfigError> {
        Self::parse(DEMO_CONFIG, "<embedded demo: configs/demo.toml>")
    }

    /// Parses and validates configuration text; `file` names it in errors.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, line and field.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let ctx = Ctx { file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| ctx.line_of(s.start));
            let mut msg = e.message().to_owned();
            if msg.starts_with("unknown field `rules`") {
                msg.push_str(
                    " (in TOML, top-level keys such as `rules` must come before the first [table] or [[port]])",
                );
            }
            let field =
                msg.split('`').nth(1).filter(|_| msg.starts_with("unknown field")).unwrap_or("syntax").to_owned();
            ConfigError { file: file.to_owned(), line, field, message: msg }
        })?;

        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pmd_cores = match &raw.datapath.pmd_cores {
            Some(c) => {
                if c.get_ref().is_empty() {
                    return ctx.err(c, "datapath.pmd_cores", "needs at least one core, e.g. [1]");
                }
                if let Some(bad) = c.get_ref().iter().find(|&&n| n >= cores) {
                    return ctx.err(
                        c,
                        "datapath.pmd_cores",
                        format!("core {bad} does not exist (this machine has cores 0..={})", cores - 1),
                    );
                }
                let mut seen = c.get_ref().clone();
                seen.sort_unstable();
                seen.dedup();
                if seen.len() != c.get_ref().len() {
                    return ctx.err(c, "datapath.pmd_cores", "a core is listed twice");
                }
                c.get_ref().clone()
            }
            None => vec![cores - 1],
        };
        let range =
            |v: &Option<Spanned<u64>>, field: &str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
                match v {
                    None => Ok(default),
                    Some(s) if (min..=max).contains(s.get_ref()) => Ok(*s.get_ref()),
                    Some(s) => ctx.err(s, field, format!("{} is out of range; expected {min}..={max}", s.get_ref())),
                }
            };
        let widen = |v: &Option<Spanned<usize>>| v.as_ref().map(|s| Spanned::new(s.span(), *s.get_ref() as u64));
        let idle_ms = range(&raw.datapath.idle_timeout_ms, "datapath.idle_timeout_ms", 10_000, 100, 3_600_000)?;
        let upcall_budget = range(&widen(&raw.datapath.upcall_budget), "datapath.upcall_budget", 64, 1, 4096)? as usize;
        let emc_entries = range(&widen(&raw.datapath.emc_entries), "datapath.emc_entries", 8192, 0, 1 << 20)? as usize;
        let emc_insert_inv_prob =
            range(&raw.datapath.emc_insert_inv_prob, "datapath.emc_insert_inv_prob", 100, 1, 1 << 20)?;
        let max_flows = range(&widen(&raw.datapath.max_flows), "datapath.max_flows", 262_144, 16, 4 << 20)? as usize;
        let mbufs_given = raw.datapath.mbufs.as_ref().map(|s| Spanned::new(s.span(), u64::from(*s.get_ref())));
        let stats_ms = range(&raw.control.stats_interval_ms, "control.stats_interval_ms", 1000, 100, 60_000)?;

        let socket = match &raw.control.socket {
            Some(s) if s.get_ref().trim().is_empty() => return ctx.err(s, "control.socket", "must be a path"),
            Some(s) => PathBuf::from(s.get_ref()),
            None => PathBuf::from("/run/vswitchd.sock"),
        };
        let metrics = match &raw.metrics.listen {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            Some(s) if s.get_ref().is_empty() || s.get_ref() == "off" => None,
            Some(s) => Some(s.get_ref().parse::<SocketAddr>().or_else(|_| {
                ctx.err(
                    s,
                    "metrics.listen",
                    format!("{:?} is not ADDRESS:PORT (e.g. 127.0.0.1:9464), or \"off\"", s.get_ref()),
                )
            })?),
        };

        if raw.ports.is_empty() {
            return ctx.err_at(1, "port", "no [[port]] is configured; a switch needs at least one");
        }
        let mut ports: Vec<PortSpec> = Vec::new();
        for (index, p) in raw.ports.iter().enumerate() {
            let line = ctx.line_of(p.span().start);
            let p = p.get_ref();
            let name = p.name.get_ref().clone();
            if !valid_name(&name) {
                return ctx.err(
                    &p.name,
                    "port.name",
                    format!("{name:?}: use 1-32 letters, digits, '_', '-' or '.', not only digits"),
                );
            }
            if ports.iter().any(|q| q.name == name) {
                return ctx.err(&p.name, "port.name", format!("{name:?} is used by another port"));
            }
            let role = match p.role.get_ref().as_str() {
                "representor" => Role::Representor,
                "uplink" => Role::Uplink,
                other => {
                    return ctx.err(&p.role, "port.role", format!("{other:?}: expected \"representor\" or \"uplink\""))
                }
            };
            let mtu = match &p.mtu {
                None => 1500,
                Some(m) if (68..=9600).contains(m.get_ref()) => *m.get_ref() as u16,
                Some(m) => {
                    return ctx.err(m, "port.mtu", format!("{} is out of range; expected 68..=9600", m.get_ref()))
                }
            };
            let ip = match &p.ip {
                None => Vec::new(),
                Some(s) if role != Role::Uplink => return ctx.err(s, "port.ip", "only an uplink carries an address"),
                Some(s) => {
                    let list = match s.get_ref() {
                        OneOrMany::One(a) => vec![a.clone()],
                        OneOrMany::Many(v) => v.clone(),
                    };
                    let mut out: Vec<(IpAddr, u8)> = Vec::new();
                    for text in list {
                        let bad =
                            || ctx.err(s, "port.ip", format!("{text:?}: expected ADDRESS/PREFIX, e.g. 198.18.0.1/24"));
                        let Some((a, l)) = text.split_once('/') else { return bad() };
                        let (Ok(addr), Ok(len)) = (a.parse::<IpAddr>(), l.parse::<u8>()) else { return bad() };
                        if len > if addr.is_ipv4() { 32 } else { 128 } {
                            return bad();
                        }
                        if out.iter().any(|(o, _)| o.is_ipv4() == addr.is_ipv4()) {
                            return ctx.err(s, "port.ip", "at most one IPv4 and one IPv6 address per uplink");
                        }
                        out.push((addr, len));
                    }
                    out
                }
            };
            let generate = match &p.generate {
                None => None,
                Some(g) => Some(parse_generate(&ctx, g)?),
            };
            let devargs = match (&p.devargs, &generate) {
                (Some(d), _) if d.get_ref().trim().is_empty() => return ctx.err(d, "port.devargs", "is empty"),
                (Some(d), Some(_)) if !d.get_ref().contains("{pcap}") => {
                    return ctx.err(
                        d,
                        "port.devargs",
                        "with [port.generate], devargs must contain {pcap} (or be left out)",
                    )
                }
                (Some(d), _) => d.get_ref().clone(),
                (None, Some(_)) => format!("net_pcap_gen{index},rx_pcap={{pcap}},infinite_rx=1"),
                (None, None) => {
                    return ctx.err(
                        &p.name,
                        "port.devargs",
                        format!("port {name:?} needs devargs (e.g. \"net_pcap0,rx_pcap=in.pcap\" or a PCI address)"),
                    )
                }
            };
            ports.push(PortSpec { name, devargs, role, mtu, ip, generate, line });
        }

        let mut tunnels: Vec<TunnelSpec> = Vec::new();
        let uplink_addrs: Vec<(usize, IpAddr)> =
            ports.iter().enumerate().flat_map(|(i, p)| p.ip.iter().map(move |(a, _)| (i, *a))).collect();
        for t in &raw.tunnels {
            let line = ctx.line_of(t.span().start);
            let t = t.get_ref();
            let name = t.name.get_ref().clone();
            if !valid_name(&name) {
                return ctx.err(&t.name, "tunnel.name", format!("{name:?}: use 1-32 letters, digits, '_', '-' or '.'"));
            }
            if ports.iter().any(|p| p.name == name) || tunnels.iter().any(|x| x.name == name) {
                return ctx.err(&t.name, "tunnel.name", format!("{name:?} is used by another port or tunnel"));
            }
            let remote: IpAddr = t
                .remote_ip
                .get_ref()
                .parse()
                .or_else(|_| ctx.err(&t.remote_ip, "tunnel.remote_ip", "expected an IP address"))?;
            if !uplink_addrs.iter().any(|(_, a)| a.is_ipv4() == remote.is_ipv4()) {
                let family = if remote.is_ipv4() { "IPv4" } else { "IPv6" };
                return ctx.err(
                    &t.remote_ip,
                    "tunnel.remote_ip",
                    format!("no uplink has an {family} address (set ip = ... on an uplink port)"),
                );
            }
            let vni = match &t.vni {
                None => {
                    return ctx.err(
                        &t.name,
                        "tunnel.vni",
                        "give a VNI (0..=16777215) or \"flow\" (set by set_tunnel, matched by tun_id)",
                    )
                }
                Some(v) => match v.get_ref() {
                    RawVni::Number(n) if *n <= 0x00ff_ffff => Some(*n),
                    RawVni::Word(w) if w == "flow" => None,
                    _ => return ctx.err(v, "tunnel.vni", "expected 0..=16777215 or \"flow\""),
                },
            };
            let local = match &t.local_ip {
                None => None,
                Some(l) => {
                    let a: IpAddr =
                        l.get_ref().parse().or_else(|_| ctx.err(l, "tunnel.local_ip", "expected an IP address"))?;
                    if !uplink_addrs.iter().any(|(_, u)| *u == a) {
                        return ctx.err(l, "tunnel.local_ip", format!("{a} is not the ip of any uplink"));
                    }
                    Some(a)
                }
            };
            let udp_port = match &t.udp_port {
                None => crate::packet::parse::VXLAN_PORT,
                Some(p) if *p.get_ref() == 0 => return ctx.err(p, "tunnel.udp_port", "must not be 0"),
                Some(p) => *p.get_ref(),
            };
            tunnels.push(TunnelSpec { name, remote, vni, local, udp_port, line });
        }
        let uplink = |s: &Spanned<String>, field: &str| -> Result<u32, ConfigError> {
            match ports.iter().position(|p| p.name == *s.get_ref()) {
                Some(i) if ports[i].role == Role::Uplink => Ok(i as u32),
                Some(_) => ctx.err(s, field, format!("{:?} is not an uplink", s.get_ref())),
                None => ctx.err(s, field, format!("no port named {:?}", s.get_ref())),
            }
        };
        let mut routes = Vec::new();
        for r in &raw.routes {
            let r = r.get_ref();
            let bad = || {
                ctx.err(
                    &r.prefix,
                    "route.prefix",
                    format!("{:?}: expected ADDRESS/LEN, e.g. 198.18.1.0/24", r.prefix.get_ref()),
                )
            };
            let Some((a, l)) = r.prefix.get_ref().split_once('/') else { return bad() };
            let (Ok(prefix), Ok(len)) = (a.parse::<IpAddr>(), l.parse::<u8>()) else { return bad() };
            if len > if prefix.is_ipv4() { 32 } else { 128 } {
                return bad();
            }
            let via = match &r.via {
                None => None,
                Some(v) => {
                    Some(v.get_ref().parse::<IpAddr>().or_else(|_| ctx.err(v, "route.via", "expected an IP address"))?)
                }
            };
            if via.is_some_and(|v| v.is_ipv4() != prefix.is_ipv4()) {
                return ctx.err(&r.prefix, "route.via", "the gateway and the prefix must be the same address family");
            }
            routes.push(RouteSpec { prefix, len, via, port: uplink(&r.port, "route.port")? });
        }
        let mut neighbours = Vec::new();
        for n in &raw.neighbours {
            let n = n.get_ref();
            let ip =
                n.ip.get_ref()
                    .parse::<IpAddr>()
                    .or_else(|_| ctx.err(&n.ip, "neighbour.ip", "expected an IP address"))?;
            let mac = crate::ofrule::parse_mac(n.mac.get_ref())
                .map_or_else(|| ctx.err(&n.mac, "neighbour.mac", "expected a MAC address"), Ok)?;
            neighbours.push(NeighbourSpec { ip, mac, port: uplink(&n.port, "neighbour.port")? });
        }

        let resolve = |name: &str| -> Option<u32> {
            ports
                .iter()
                .position(|p| p.name == name)
                .or_else(|| tunnels.iter().position(|t| t.name == name).map(|i| i + ports.len()))
                .map(|i| i as u32)
        };
        let mut rules = Vec::new();
        for r in &raw.rules {
            let spec = parse_rule(r.get_ref(), &resolve)
                .or_else(|e| ctx.err(r, "rules", format!("{:?}: {}", r.get_ref(), e.message)))?;
            rules.push(ConfiguredRule { text: r.get_ref().clone(), spec, line: ctx.line_of(r.span().start) });
        }

        let generated: u64 =
            ports.iter().filter_map(|p| p.generate.as_ref()).map(|g| u64::from(g.flows.max(1024))).sum();
        let needed = 16_384 + generated + 2048 * ports.len() as u64;
        let mbufs = match &mbufs_given {
            None => needed.min(u64::from(u32::MAX)) as u32,
            Some(s) if *s.get_ref() < 4096 => return ctx.err(s, "datapath.mbufs", "must be at least 4096"),
            Some(s) => *s.get_ref() as u32,
        };

        let mut eal_args = raw.eal.args.clone();
        if !eal_args.iter().any(|a| a.starts_with("--file-prefix")) {
            eal_args.push(format!("--file-prefix=vswitchd-{}", std::process::id()));
        }
        Ok(Self {
            source: file.to_owned(),
            eal_args,
            pmd_cores,
            idle_timeout: Duration::from_millis(idle_ms),
            upcall_budget,
            emc_entries,
            emc_insert_inv_prob,
            max_flows,
            mbufs,
            socket,
            metrics,
            stats_interval: Duration::from_millis(stats_ms),
            ports,
            tunnels,
            routes,
            neighbours,
            rules,
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

fn parse_generate(ctx: &Ctx<'_>, g: &Spanned<RawGenerate>) -> Result<Generate, ConfigError> {
    let raw = g.get_ref();
    let flows = match &raw.flows {
        None => 1000,
        Some(f) if (1..=4_000_000).contains(f.get_ref()) => *f.get_ref(),
        Some(f) => return ctx.err(f, "port.generate.flows", "expected 1..=4000000"),
    };
    let size = match &raw.size {
        None => 60,
        Some(s) if (60..=9000).contains(s.get_ref()) => *s.get_ref(),
        Some(s) => return ctx.err(s, "port.generate.size", "expected 60..=9000 bytes (60 = 64 on the wire)"),
    };
    let mac = |v: &Option<Spanned<String>>, field: &str, default: [u8; 6]| match v {
        None => Ok(default),
        Some(s) => {
            crate::ofrule::parse_mac(s.get_ref()).map_or_else(|| ctx.err(s, field, "expected a MAC address"), Ok)
        }
    };
    let ip4 = |v: &Option<Spanned<String>>, field: &str, default: [u8; 4]| match v {
        None => Ok(std::net::Ipv4Addr::from(default)),
        Some(s) => s.get_ref().parse::<std::net::Ipv4Addr>().or_else(|_| ctx.err(s, field, "expected an IPv4 address")),
    };
    Ok(Generate {
        flows,
        size,
        dl_src: mac(&raw.dl_src, "port.generate.dl_src", [2, 0, 0, 0, 0, 1])?,
        dl_dst: match &raw.dl_dst {
            None => vec![[2, 0, 0, 0, 0, 2]],
            Some(s) => {
                let list = match s.get_ref() {
                    OneOrMany::One(m) => vec![m.clone()],
                    OneOrMany::Many(v) => v.clone(),
                };
                if list.is_empty() {
                    return ctx.err(s, "port.generate.dl_dst", "needs at least one MAC address");
                }
                let mut macs = Vec::new();
                for m in list {
                    match crate::ofrule::parse_mac(&m) {
                        Some(mac) => macs.push(mac),
                        None => return ctx.err(s, "port.generate.dl_dst", format!("{m:?} is not a MAC address")),
                    }
                }
                macs
            }
        },
        nw_src: ip4(&raw.nw_src, "port.generate.nw_src", [10, 0, 0, 0])?,
        nw_dst: ip4(&raw.nw_dst, "port.generate.nw_dst", [10, 255, 255, 1])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.ports[1].ip, vec![("198.18.0.1".parse().expect("ip"), 24)]);
        assert_eq!(c.rules[0].line, 1);
        assert_eq!(c.idle_timeout, Duration::from_secs(10));
        assert!(c.eal_args.iter().any(|a| a.starts_with("--file-prefix=")));
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
            (format!("{base}colour = \"red\"\n"), 5, "colour"),
            (format!("[metrics]\nlisten = \"nowhere\"\n{base}"), 2, "metrics.listen"),
            (format!("{base}[[port]]\nname = \"vf0\"\nrole = \"uplink\"\ndevargs = \"x\"\n"), 6, "port.name"),
            (format!("{base}ip = \"1.2.3.4/24\"\n"), 5, "port.ip"),
            ("[[port]]\nname = \"vf0\"\nrole = \"uplink\"\n".to_owned(), 2, "port.devargs"),
            ("x = [\n".to_owned(), 2, "syntax"),
        ];
        for (text, line, field) in cases {
            let e = Config::parse(&text, "f.toml").expect_err(&text);
            assert_eq!((e.line, e.field.as_str()), (line, field), "{e}\n---\n{text}");
            assert!(e.to_string().starts_with(&format!("f.toml:{line}: {field}: ")), "{e}");
        }
    }
}
