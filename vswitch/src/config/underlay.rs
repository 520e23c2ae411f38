//! `[underlay]`, `[[route]]` and `[[neighbour]]`.

use super::ctx::ConfigError;
use super::ctx::Ctx;
use super::raw::{RawNeighbour, RawRoute, RawTable, RawUnderlay};
use super::types::{NeighbourSpec, PortSpec, Role, RouteSpec};
use super::types::{RouteMode, UnderlaySpec};
use crate::net::Prefix;
use std::net::IpAddr;
use toml::Spanned;

fn uplink(ctx: &Ctx<'_>, ports: &[PortSpec], s: &Spanned<String>, field: &str) -> Result<u32, ConfigError> {
    match ports.iter().position(|p| p.name == *s.get_ref()) {
        Some(i) if ports[i].role == Role::Uplink => Ok(i as u32),
        Some(_) => ctx.err(s, field, format!("{:?} is not an uplink", s.get_ref())),
        None => ctx.err(s, field, format!("no port named {:?}", s.get_ref())),
    }
}

/// Why gateway `via` cannot be used on uplink `port`, if it cannot: it must
/// be on one of the uplink's connected prefixes (an off-link gateway would
/// be resolved by flooding ARP or ND for an address nobody answers for).
pub fn offlink_gateway(via: IpAddr, port: &PortSpec) -> Option<String> {
    if let (Some(p), IpAddr::V4(v)) = (port.ip.iter().find(|p| p.contains(via) && p.addr != via), via) {
        // No host answers ARP for an IPv4 subnet's network or broadcast address.
        if p.len < 31 {
            let host = u32::from(v) & (u32::MAX >> p.len);
            if host == 0 {
                return Some(format!("gateway {via} is the network address of {}", p.network()));
            }
            if host == u32::MAX >> p.len {
                return Some(format!("gateway {via} is the broadcast address of {}", p.network()));
            }
        }
        return None;
    }
    if port.ip.iter().any(|p| p.contains(via) && p.addr != via) {
        return None;
    }
    let connected: Vec<String> = port.ip.iter().map(|p| p.network().to_string()).collect();
    Some(if port.ip.iter().any(|p| p.addr == via) {
        format!("gateway {via} is {}'s own address", port.name)
    } else if connected.is_empty() {
        format!("gateway {via} is not on a connected prefix: {} has no address (set its ip)", port.name)
    } else {
        format!("gateway {via} is not on a connected prefix of {} ({})", port.name, connected.join(", "))
    })
}

pub fn routes(ctx: &Ctx<'_>, raw: &[Spanned<RawRoute>], ports: &[PortSpec]) -> Result<Vec<RouteSpec>, ConfigError> {
    let mut out = Vec::new();
    for r in raw {
        let r = r.get_ref();
        let Ok(prefix) = r.prefix.get_ref().parse::<Prefix>() else {
            return ctx.err(
                &r.prefix,
                "route.prefix",
                format!("{:?}: expected ADDRESS/LEN, e.g. 198.18.1.0/24", r.prefix.get_ref()),
            );
        };
        let via = match &r.via {
            None => None,
            Some(v) => {
                Some(v.get_ref().parse::<IpAddr>().or_else(|_| ctx.err(v, "route.via", "expected an IP address"))?)
            }
        };
        if via.is_some_and(|v| v.is_ipv4() != prefix.is_ipv4()) {
            let at = r.via.as_ref().unwrap_or(&r.prefix);
            return ctx.err(at, "route.via", "the gateway and the prefix must be the same address family");
        }
        let port = uplink(ctx, ports, &r.port, "route.port")?;
        if let Some(why) = via.and_then(|v| offlink_gateway(v, &ports[port as usize])) {
            return ctx.err(r.via.as_ref().unwrap_or(&r.prefix), "route.via", why);
        }
        out.push(RouteSpec { prefix: prefix.network(), via, port });
    }
    Ok(out)
}

pub fn neighbours(
    ctx: &Ctx<'_>,
    raw: &[Spanned<RawNeighbour>],
    ports: &[PortSpec],
) -> Result<Vec<NeighbourSpec>, ConfigError> {
    let mut out = Vec::new();
    for n in raw {
        let n = n.get_ref();
        let ip =
            n.ip.get_ref().parse::<IpAddr>().or_else(|_| ctx.err(&n.ip, "neighbour.ip", "expected an IP address"))?;
        let mac = crate::ofrule::parse_mac(n.mac.get_ref())
            .map_or_else(|| ctx.err(&n.mac, "neighbour.mac", "expected a MAC address"), Ok)?;
        out.push(NeighbourSpec { ip, mac, port: uplink(ctx, ports, &n.port, "neighbour.port")? });
    }
    Ok(out)
}

/// `[underlay]`: where routes come from, the kernel table followed, the
/// netlink receive buffer.
pub fn underlay(
    ctx: &Ctx<'_>,
    raw: Option<&Spanned<RawUnderlay>>,
    ports: &[PortSpec],
) -> Result<UnderlaySpec, ConfigError> {
    let mut spec = UnderlaySpec::default();
    let Some(raw) = raw else { return Ok(spec) };
    let r = raw.get_ref();
    if let Some(m) = &r.routes {
        spec.routes = match m.get_ref().as_str() {
            "config" => RouteMode::Config,
            "kernel" => RouteMode::Kernel,
            "both" => RouteMode::Both,
            other => {
                return ctx.err(m, "underlay.routes", format!("{other:?}: expected \"config\", \"kernel\" or \"both\""))
            }
        };
    }
    if let Some(t) = &r.table {
        spec.table = match t.get_ref() {
            RawTable::Name(n) if n == "main" => 254,
            RawTable::Number(n) if (1..=i64::from(u32::MAX)).contains(n) && *n != 255 => *n as u32,
            RawTable::Number(255) => {
                return ctx.err(t, "underlay.table", "table 255 (local) holds local addresses, not routes to follow")
            }
            RawTable::Number(n) => {
                return ctx.err(t, "underlay.table", format!("{n}: expected 1..=4294967295 or \"main\""))
            }
            RawTable::Name(n) => {
                return ctx.err(t, "underlay.table", format!("{n:?}: expected \"main\" or a table number"))
            }
        };
    }
    if let Some(b) = &r.netlink_rcvbuf {
        let n = *b.get_ref();
        if !(65_536..=1 << 30).contains(&n) {
            return ctx.err(b, "underlay.netlink_rcvbuf", format!("{n}: expected 65536..=1073741824 bytes"));
        }
        spec.netlink_rcvbuf = n as u32;
    }
    let kernel_uplinks = ports.iter().filter(|p| p.kernel_ifname.is_some()).count();
    if spec.routes.follows_kernel() && kernel_uplinks == 0 {
        let at = r.routes.as_ref().map_or_else(|| ctx.line(raw), |m| ctx.line(m));
        return Err(ctx.error_at(
            at,
            "underlay.routes",
            format!(
                "routes = \"{}\" needs an uplink with kernel_ifname (the kernel interface it stands for)",
                spec.routes.as_str()
            ),
        ));
    }
    Ok(spec)
}
