//! `[[tunnel]]`: VXLAN tunnel ports.

use super::ctx::ConfigError;
use super::ctx::Ctx;
use super::ports::{bad_name, valid_name};
use super::raw::{RawTunnel, RawVni};
use super::types::{PortSpec, TunnelSpec};
use std::net::IpAddr;
use toml::Spanned;

/// Every tunnel; `ports` are the already-validated ports (names are shared,
/// addresses come from the uplinks).
pub fn tunnels(ctx: &Ctx<'_>, raw: &[Spanned<RawTunnel>], ports: &[PortSpec]) -> Result<Vec<TunnelSpec>, ConfigError> {
    let uplink_addrs: Vec<IpAddr> = ports.iter().flat_map(|p| p.ip.iter().map(|a| a.addr)).collect();
    let mut out: Vec<TunnelSpec> = Vec::new();
    for t in raw {
        let line = ctx.line(t);
        let t = t.get_ref();
        let name = t.name.get_ref().clone();
        if !valid_name(&name) {
            return ctx.err(&t.name, "tunnel.name", bad_name(&name));
        }
        if ports.iter().any(|p| p.name == name) || out.iter().any(|x| x.name == name) {
            return ctx.err(&t.name, "tunnel.name", format!("{name:?} is used by another port or tunnel"));
        }
        let remote: IpAddr = t
            .remote_ip
            .get_ref()
            .parse()
            .or_else(|_| ctx.err(&t.remote_ip, "tunnel.remote_ip", "expected an IP address"))?;
        if !uplink_addrs.iter().any(|a| a.is_ipv4() == remote.is_ipv4()) {
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
                if !uplink_addrs.contains(&a) {
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
        out.push(TunnelSpec { name, remote, vni, local, udp_port, line });
    }
    Ok(out)
}
