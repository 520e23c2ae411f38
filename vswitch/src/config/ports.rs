//! `[[port]]` and its `[port.generate]` traffic.

use super::ctx::ConfigError;
use super::ctx::Ctx;
use super::raw::{RawGenerate, RawPort, RawRxQueues};
use super::types::{Generate, PortSpec, Role, RxQueues, MAX_RX_QUEUES};
use crate::net::Prefix;
use toml::Spanned;

/// Names of ports and tunnels: 1-32 letters, digits, '_', '-' or '.', not only digits.
/// Names a rule's action list gives another meaning (`output:in_port`, a
/// bare `drop`, ...): no port or tunnel may have them.
pub const RESERVED_NAMES: [&str; 9] =
    ["in_port", "drop", "normal", "flood", "all", "controller", "local", "strip_vlan", "pop_vlan"];

/// What is wrong with a name [`valid_name`] refused.
pub fn bad_name(name: &str) -> String {
    format!(
        "{name:?}: use 1-32 letters, digits, '_', '-' or '.', not only digits, and none of {}",
        RESERVED_NAMES.join(", ")
    )
}

pub fn valid_name(name: &str) -> bool {
    !RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name))
        && !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && !name.chars().all(|c| c.is_ascii_digit())
}

/// Every `[[port]]`, in order (their index is their datapath number).
pub fn ports(ctx: &Ctx<'_>, raw: &[Spanned<RawPort>]) -> Result<Vec<PortSpec>, ConfigError> {
    if raw.is_empty() {
        return Err(ctx.error_at(1, "port", "no [[port]] is configured; a switch needs at least one"));
    }
    let mut out: Vec<PortSpec> = Vec::new();
    for (index, p) in raw.iter().enumerate() {
        let spec = port(ctx, index, p)?;
        if out.iter().any(|q| q.name == spec.name) {
            return ctx.err(&p.get_ref().name, "port.name", format!("{:?} is used by another port", spec.name));
        }
        if let (Some(k), Some(at)) = (&spec.kernel_ifname, &p.get_ref().kernel_ifname) {
            if let Some(q) = out.iter().find(|q| q.kernel_ifname.as_ref() == Some(k)) {
                return ctx.err(at, "port.kernel_ifname", format!("{k:?} already stands for uplink {:?}", q.name));
            }
        }
        out.push(spec);
    }
    Ok(out)
}

fn port(ctx: &Ctx<'_>, index: usize, p: &Spanned<RawPort>) -> Result<PortSpec, ConfigError> {
    let line = ctx.line(p);
    let p = p.get_ref();
    let name = p.name.get_ref().clone();
    if !valid_name(&name) {
        return ctx.err(&p.name, "port.name", bad_name(&name));
    }
    let role = match p.role.get_ref().as_str() {
        "representor" => Role::Representor,
        "uplink" => Role::Uplink,
        other => return ctx.err(&p.role, "port.role", format!("{other:?}: expected \"representor\" or \"uplink\"")),
    };
    let mtu = match &p.mtu {
        None => 1500,
        Some(m) if (68..=9600).contains(m.get_ref()) => *m.get_ref() as u16,
        Some(m) => return ctx.err(m, "port.mtu", format!("{} is out of range; expected 68..=9600", m.get_ref())),
    };
    let ip = match &p.ip {
        None => Vec::new(),
        Some(s) if role != Role::Uplink => return ctx.err(s, "port.ip", "only an uplink carries an address"),
        Some(s) => addresses(ctx, s)?,
    };
    let generate = p.generate.as_ref().map(|g| generate(ctx, g)).transpose()?;
    let devargs = match (&p.devargs, &generate) {
        (Some(d), _) if d.get_ref().trim().is_empty() => return ctx.err(d, "port.devargs", "is empty"),
        (Some(d), Some(_)) if !d.get_ref().contains("{pcap}") => {
            return ctx.err(d, "port.devargs", "with [port.generate], devargs must contain {pcap} (or be left out)")
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
    let switch_domain = p.switch_domain.as_ref().map(|d| *d.get_ref());
    let mac = match &p.mac {
        None => None,
        Some(m) => match crate::ofrule::parse_mac(m.get_ref()) {
            Some(a) if a[0] & 1 == 0 && a != [0; 6] => Some(a),
            Some(_) => return ctx.err(m, "port.mac", format!("{}: expected a unicast address", m.get_ref())),
            None => return ctx.err(m, "port.mac", format!("{:?}: expected xx:xx:xx:xx:xx:xx", m.get_ref())),
        },
    };
    let kernel_ifname = match &p.kernel_ifname {
        None => None,
        Some(k) if role != Role::Uplink => {
            return ctx.err(k, "port.kernel_ifname", "only an uplink stands for a kernel interface")
        }
        Some(k) if !valid_ifname(k.get_ref()) => {
            return ctx.err(
                k,
                "port.kernel_ifname",
                format!("{:?}: a Linux interface name is 1-15 bytes without '/', ':' or white space", k.get_ref()),
            )
        }
        Some(k) => Some(k.get_ref().clone()),
    };
    let (rx_queues, rxq_affinity) = queues(ctx, p)?;
    Ok(PortSpec {
        name,
        devargs,
        role,
        mtu,
        ip,
        generate,
        switch_domain,
        mac,
        kernel_ifname,
        rx_queues,
        rxq_affinity,
        line,
    })
}

/// `rx_queues` and `rxq_affinity`.
fn queues(ctx: &Ctx<'_>, p: &RawPort) -> Result<(RxQueues, Vec<(u16, usize)>), ConfigError> {
    let rx_queues = match &p.rx_queues {
        None => RxQueues::default(),
        Some(q) => match q.get_ref() {
            RawRxQueues::Word(w) if w == "auto" => RxQueues::Auto,
            RawRxQueues::Count(n) if (1..=i64::from(MAX_RX_QUEUES)).contains(n) => RxQueues::Count(*n as u16),
            _ => {
                return ctx.err(
                    q,
                    "port.rx_queues",
                    format!("expected 1..={MAX_RX_QUEUES} or \"auto\" (one queue per PMD)"),
                )
            }
        },
    };
    let rxq_affinity = match &p.rxq_affinity {
        None => Vec::new(),
        Some(a) => match affinity(a.get_ref()) {
            Ok(list) => list,
            Err(why) => return ctx.err(a, "port.rxq_affinity", why),
        },
    };
    // Queues and cores are checked against the PMDs in load.rs (check_queues).
    Ok((rx_queues, rxq_affinity))
}

/// `rxq_affinity`: "QUEUE:CORE" pairs separated by commas, each queue once.
pub fn affinity(text: &str) -> Result<Vec<(u16, usize)>, String> {
    let mut out: Vec<(u16, usize)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let parsed =
            item.split_once(':').and_then(|(q, c)| Some((q.trim().parse::<u16>().ok()?, c.trim().parse().ok()?)));
        let Some((q, c)) = parsed else {
            return Err(format!("{item:?}: expected QUEUE:CORE, e.g. \"0:2,1:3\""));
        };
        if out.iter().any(|(o, _)| *o == q) {
            return Err(format!("queue {q} is pinned twice"));
        }
        out.push((q, c));
    }
    Ok(out)
}

/// A name Linux takes for an interface (dev_valid_name): 1-15 bytes, not
/// "." or "..", no '/', ':' or white space.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

fn addresses(ctx: &Ctx<'_>, s: &Spanned<super::raw::OneOrMany>) -> Result<Vec<Prefix>, ConfigError> {
    let mut out: Vec<Prefix> = Vec::new();
    for text in s.get_ref().list() {
        let Ok(p) = text.parse::<Prefix>() else {
            return ctx.err(s, "port.ip", format!("{text:?}: expected ADDRESS/PREFIX, e.g. 198.18.0.1/24"));
        };
        if out.iter().any(|o| o.is_ipv4() == p.is_ipv4()) {
            return ctx.err(s, "port.ip", "at most one IPv4 and one IPv6 address per uplink");
        }
        out.push(p);
    }
    Ok(out)
}

fn generate(ctx: &Ctx<'_>, g: &Spanned<RawGenerate>) -> Result<Generate, ConfigError> {
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
    let dl_dst = match &raw.dl_dst {
        None => vec![[2, 0, 0, 0, 0, 2]],
        Some(s) => {
            let list = s.get_ref().list();
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
    };
    Ok(Generate {
        flows,
        size,
        dl_src: mac(&raw.dl_src, "port.generate.dl_src", [2, 0, 0, 0, 0, 1])?,
        dl_dst,
        nw_src: ip4(&raw.nw_src, "port.generate.nw_src", [10, 0, 0, 0])?,
        nw_dst: ip4(&raw.nw_dst, "port.generate.nw_dst", [10, 255, 255, 1])?,
    })
}
