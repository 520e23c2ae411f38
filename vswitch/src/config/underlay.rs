//! `[[route]]` and `[[neighbour]]`: the static underlay.

use super::ctx::Ctx;
use super::raw::{RawNeighbour, RawRoute};
use super::{ConfigError, NeighbourSpec, PortSpec, Role, RouteSpec};
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
            return ctx.err(&r.prefix, "route.via", "the gateway and the prefix must be the same address family");
        }
        out.push(RouteSpec { prefix: prefix.network(), via, port: uplink(ctx, ports, &r.port, "route.port")? });
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
