//! `[openflow]`: the OpenFlow 1.3 channel. Passive listeners for tools such
//! as `ovs-ofctl` (`ptcp:PORT[:IP]`, loopback unless an address is given;
//! `punix:PATH`) and active connections to controllers (`tcp:IP[:PORT]`,
//! `unix:PATH`), retried with back-off.

use super::ctx::{ConfigError, Ctx};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// The IANA OpenFlow port.
pub const DEFAULT_PORT: u16 = 6653;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOpenflow {
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
    #[serde(default)]
    pub controllers: Vec<Spanned<String>>,
    pub datapath_id: Option<Spanned<String>>,
    pub fail_mode: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<u64>>,
    pub packet_in_rate: Option<Spanned<u64>>,
    pub packet_in_queue: Option<Spanned<u64>>,
    pub probe_interval_ms: Option<Spanned<u64>>,
    pub max_backoff_ms: Option<Spanned<u64>>,
}

/// Where the switch listens or connects.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "tcp:{a}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What happens to the controllers' rules when the last controller is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// They stay, and the switch forwards by them (Open vSwitch's `secure`).
    Secure,
    /// They are removed and the switch forwards by its own rules (the file's
    /// and vswitchctl's) until a controller is back.
    Standalone,
}

/// The validated `[openflow]` section.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OpenflowSettings {
    pub listen: Vec<Target>,
    pub controllers: Vec<Target>,
    /// `None`: from the first port's MAC address (as Open vSwitch derives it
    /// from the bridge's).
    pub datapath_id: Option<u64>,
    pub fail_mode: FailMode,
    pub max_connections: usize,
    /// An idle connection gets an ECHO_REQUEST after this, and is closed
    /// when a second interval passes without a word.
    pub probe_interval: Duration,
    /// Reconnection to a controller backs off from 1 s up to this.
    pub max_backoff: Duration,
    /// Packets per second each PMD sends to the controllers at most (0: no
    /// limit but the queue).
    pub packet_in_rate: u64,
    /// Packets each PMD queues for the controllers at most.
    pub packet_in_queue: usize,
}

impl Default for OpenflowSettings {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            controllers: Vec::new(),
            datapath_id: None,
            fail_mode: FailMode::Secure,
            max_connections: 16,
            probe_interval: Duration::from_secs(5),
            max_backoff: Duration::from_secs(8),
            packet_in_rate: 1000,
            packet_in_queue: 256,
        }
    }
}

impl OpenflowSettings {
    /// Whether any channel is configured.
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty() || !self.controllers.is_empty()
    }

    /// The PMDs' packet-in limits.
    pub fn punt_limits(&self) -> crate::datapath::punt::PuntLimits {
        crate::datapath::punt::PuntLimits { rate: self.packet_in_rate, queue: self.packet_in_queue }
    }
}

/// `ptcp:PORT[:IP]` or `punix:PATH`.
pub fn parse_listen(text: &str) -> Result<Target, String> {
    if let Some(path) = text.strip_prefix("punix:") {
        return unix_path(path).map(Target::Unix);
    }
    let Some(rest) = text.strip_prefix("ptcp:") else {
        return Err(format!("{text:?}: expected ptcp:PORT[:IP] or punix:PATH"));
    };
    let (port, ip) = match rest.split_once(':') {
        Some((p, ip)) => (p, Some(ip.trim_start_matches('[').trim_end_matches(']'))),
        None => (rest, None),
    };
    let port = tcp_port(text, port)?;
    let ip: IpAddr = match ip {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(ip) => ip.parse().map_err(|_| format!("{text:?}: {ip:?} is not an IP address"))?,
    };
    Ok(Target::Tcp(SocketAddr::new(ip, port)))
}

/// `tcp:IP[:PORT]` (IPv6 in brackets) or `unix:PATH`.
pub fn parse_controller(text: &str) -> Result<Target, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        return unix_path(path).map(Target::Unix);
    }
    let Some(rest) = text.strip_prefix("tcp:") else {
        return Err(format!("{text:?}: expected tcp:IP[:PORT] or unix:PATH"));
    };
    if let Ok(a) = rest.parse::<SocketAddr>() {
        return Ok(Target::Tcp(a));
    }
    let ip = rest.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = ip.parse::<IpAddr>() {
        return Ok(Target::Tcp(SocketAddr::new(ip, DEFAULT_PORT)));
    }
    match rest.rsplit_once(':') {
        Some((ip, port)) if ip.parse::<Ipv4Addr>().is_ok() => {
            Ok(Target::Tcp(SocketAddr::new(IpAddr::V4(ip.parse().expect("checked")), tcp_port(text, port)?)))
        }
        _ => Err(format!("{text:?}: expected tcp:IP[:PORT] (IPv6 as tcp:[ADDR]:PORT)")),
    }
}

fn tcp_port(text: &str, port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{text:?}: {port:?} is not a TCP port (1..=65535)")),
    }
}

fn unix_path(path: &str) -> Result<PathBuf, String> {
    if path.is_empty() || !path.starts_with('/') {
        return Err(format!("unix socket path {path:?} must be absolute"));
    }
    Ok(PathBuf::from(path))
}

/// Validates `[openflow]`.
pub fn openflow(ctx: &Ctx<'_>, raw: Option<&Spanned<RawOpenflow>>) -> Result<OpenflowSettings, ConfigError> {
    let mut s = OpenflowSettings::default();
    let Some(raw) = raw else { return Ok(s) };
    let r = raw.get_ref();
    for l in &r.listen {
        let t = parse_listen(l.get_ref()).map_err(|m| ctx.error(l, "openflow.listen", m))?;
        if s.listen.contains(&t) {
            return ctx.err(l, "openflow.listen", format!("{t} is listed twice"));
        }
        s.listen.push(t);
    }
    for c in &r.controllers {
        let t = parse_controller(c.get_ref()).map_err(|m| ctx.error(c, "openflow.controllers", m))?;
        if s.controllers.contains(&t) {
            return ctx.err(c, "openflow.controllers", format!("{t} is listed twice"));
        }
        s.controllers.push(t);
    }
    if let Some(d) = &r.datapath_id {
        let t = d.get_ref().trim();
        let hex = t.strip_prefix("0x").unwrap_or(t);
        let v = u64::from_str_radix(hex, 16).ok().filter(|_| !hex.is_empty() && hex.len() <= 16);
        s.datapath_id = Some(v.ok_or_else(|| {
            ctx.error(
                d,
                "openflow.datapath_id",
                format!("{t:?} is not up to 16 hex digits (e.g. \"0x00000000000000a1\")"),
            )
        })?);
    }
    if let Some(m) = &r.fail_mode {
        s.fail_mode = match m.get_ref().as_str() {
            "secure" => FailMode::Secure,
            "standalone" => FailMode::Standalone,
            other => {
                return ctx.err(m, "openflow.fail_mode", format!("{other:?}: expected \"secure\" or \"standalone\""))
            }
        };
    }
    s.max_connections = ctx.range(&r.max_connections, "openflow.max_connections", 16, 1, 1024)? as usize;
    s.packet_in_rate = ctx.range(&r.packet_in_rate, "openflow.packet_in_rate", 1000, 0, 10_000_000)?;
    s.packet_in_queue = ctx.range(&r.packet_in_queue, "openflow.packet_in_queue", 256, 1, 65_536)? as usize;
    s.probe_interval =
        Duration::from_millis(ctx.range(&r.probe_interval_ms, "openflow.probe_interval_ms", 5000, 100, 3_600_000)?);
    s.max_backoff =
        Duration::from_millis(ctx.range(&r.max_backoff_ms, "openflow.max_backoff_ms", 8000, 1000, 3_600_000)?);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_listen("ptcp:6653"), Ok(Target::Tcp("127.0.0.1:6653".parse().unwrap())));
        assert_eq!(parse_listen("ptcp:6654:0.0.0.0"), Ok(Target::Tcp("0.0.0.0:6654".parse().unwrap())));
        assert_eq!(parse_listen("ptcp:6654:[::1]"), Ok(Target::Tcp("[::1]:6654".parse().unwrap())));
        assert_eq!(parse_listen("punix:/run/vswitch/of.sock"), Ok(Target::Unix("/run/vswitch/of.sock".into())));
        assert!(parse_listen("ptcp:0").is_err());
        assert!(parse_listen("tcp:1.2.3.4:6653").is_err());
        assert!(parse_listen("punix:relative").is_err());
        assert_eq!(parse_controller("tcp:10.0.0.1"), Ok(Target::Tcp("10.0.0.1:6653".parse().unwrap())));
        assert_eq!(parse_controller("tcp:10.0.0.1:6633"), Ok(Target::Tcp("10.0.0.1:6633".parse().unwrap())));
        assert_eq!(parse_controller("tcp:[fd00::1]:6633"), Ok(Target::Tcp("[fd00::1]:6633".parse().unwrap())));
        assert_eq!(parse_controller("tcp:fd00::1"), Ok(Target::Tcp("[fd00::1]:6653".parse().unwrap())));
        assert!(parse_controller("tcp:host.example:6653").is_err());
        assert!(parse_controller("ptcp:6653").is_err());
    }
}
