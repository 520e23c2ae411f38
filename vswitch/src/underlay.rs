//! The VXLAN underlay: tunnel ports, the routing table (longest-prefix match
//! over configured routes and the uplinks' connected prefixes) and the
//! neighbour table (static entries and ARP-learned ones).
//!
//! Shared between the control thread (which edits it) and the PMDs (which
//! read it only when their per-tunnel encap cache misses, i.e. on the slow
//! path). Every change bumps a generation that PMDs check once per
//! iteration, so route and neighbour changes apply to cached flows at once.

use crate::actions::vxlan::{EncapSpec, EncapTemplate};
use crate::net::Prefix;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// A VXLAN tunnel port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    pub name: String,
    /// Datapath port number.
    pub number: u32,
    pub remote: IpAddr,
    /// Fixed VNI, or `None` for "from the flow" (`set_tunnel`, `tun_id`).
    pub vni: Option<u32>,
    /// Local VTEP address; `None`: the address of the uplink the route picks.
    pub local: Option<IpAddr>,
    pub udp_port: u16,
}

impl Tunnel {
    /// Whether a decapsulated packet belongs to this tunnel: same UDP port,
    /// the tunnel's remote as outer source, its local address (if fixed) as
    /// outer destination, and its VNI (any VNI for a flow-based tunnel).
    pub fn accepts(&self, udp_port: u16, outer_src: IpAddr, outer_dst: IpAddr, vni: u32) -> bool {
        self.udp_port == udp_port
            && self.remote == outer_src
            && self.local.is_none_or(|l| l == outer_dst)
            && self.vni.is_none_or(|v| v == vni)
    }
}

/// Where a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteSource {
    /// An uplink's own prefix.
    Connected,
    /// The configuration file.
    Config,
    /// `vswitchctl route-add`.
    Control,
    /// The kernel's routing table (netlink).
    Kernel,
}

impl RouteSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteSource::Connected => "connected",
            RouteSource::Config => "config",
            RouteSource::Control => "control",
            RouteSource::Kernel => "kernel",
        }
    }
}

/// A route: prefix -> uplink, optionally through a gateway.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    pub prefix: Prefix,
    pub via: Option<IpAddr>,
    /// Uplink port number.
    pub port: u32,
    pub source: RouteSource,
}

/// A neighbour entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Neighbour {
    #[serde(serialize_with = "ser_mac")]
    pub mac: [u8; 6],
    pub port: u32,
    /// Configured (never replaced by ARP) or learned.
    pub is_static: bool,
}

fn ser_mac<S: serde::Serializer>(mac: &[u8; 6], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::ofrule::format_mac(mac))
}

/// An uplink's own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddress {
    pub ip: IpAddr,
    pub len: u8,
    pub port: u32,
    pub mac: [u8; 6],
    pub mtu: u16,
}

/// How a tunnel's packets leave, once resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub template: EncapTemplate,
    pub uplink: u32,
    pub uplink_mtu: u16,
    pub next_hop: IpAddr,
}

/// Why a tunnel cannot send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    /// No route to the remote VTEP.
    NoRoute,
    /// The next hop's MAC is unknown: ARP/NS it on `port` from `local`.
    NoNeighbour { next_hop: IpAddr, port: u32, local: IpAddr },
    /// No VNI: a flow-based tunnel needs `set_tunnel`.
    NoVni,
    /// No local address to send from.
    NoLocalAddress,
}

/// The tables.
#[derive(Debug, Default)]
pub struct Tables {
    pub tunnels: Vec<Tunnel>,
    pub routes: Vec<Route>,
    pub neighbours: BTreeMap<IpAddr, Neighbour>,
    pub locals: Vec<LocalAddress>,
}

/// The shared underlay.
#[derive(Debug, Default)]
pub struct Underlay {
    tables: RwLock<Tables>,
    generation: AtomicU64,
}

impl Tables {
    /// Longest-prefix match: (uplink port, next hop).
    pub fn route(&self, dst: IpAddr) -> Option<(u32, IpAddr)> {
        self.routes
            .iter()
            .filter(|r| r.prefix.contains(dst))
            // Longest prefix; on a tie any other route beats a connected one.
            .max_by_key(|r| (r.prefix.len, r.source != RouteSource::Connected))
            .map(|r| (r.port, r.via.unwrap_or(dst)))
    }

    /// The local address on `port` of `dst`'s family.
    pub fn local_on(&self, port: u32, family_of: IpAddr) -> Option<&LocalAddress> {
        self.locals.iter().find(|l| l.port == port && l.ip.is_ipv4() == family_of.is_ipv4())
    }

    /// Resolves `tunnel` for `vni`.
    pub fn resolve(&self, tunnel: &Tunnel, flow_vni: Option<u32>) -> Result<Resolved, Unresolved> {
        let vni = tunnel.vni.or(flow_vni).ok_or(Unresolved::NoVni)?;
        let (port, next_hop) = self.route(tunnel.remote).ok_or(Unresolved::NoRoute)?;
        let local = self.local_on(port, tunnel.remote).ok_or(Unresolved::NoLocalAddress)?;
        let src = tunnel.local.unwrap_or(local.ip);
        let Some(n) = self.neighbours.get(&next_hop).filter(|n| n.port == port) else {
            return Err(Unresolved::NoNeighbour { next_hop, port, local: src });
        };
        let spec = EncapSpec {
            eth_src: local.mac,
            eth_dst: n.mac,
            ip_src: src,
            ip_dst: tunnel.remote,
            vni,
            udp_dst: tunnel.udp_port,
            ttl: 64,
            tos: 0,
            df: true,
        };
        let template = EncapTemplate::new(spec).map_err(|_| Unresolved::NoLocalAddress)?;
        Ok(Resolved { template, uplink: port, uplink_mtu: local.mtu, next_hop })
    }

    /// The tunnel a decapsulated packet belongs to (see [`Tunnel::accepts`]).
    pub fn tunnel_for(&self, udp_port: u16, outer_src: IpAddr, outer_dst: IpAddr, vni: u32) -> Option<&Tunnel> {
        self.tunnels.iter().find(|t| t.accepts(udp_port, outer_src, outer_dst, vni))
    }
}

impl Underlay {
    /// Creates the underlay with its tables.
    pub fn new(tables: Tables) -> Self {
        Self { tables: RwLock::new(tables), generation: AtomicU64::new(1) }
    }

    /// The current generation (checked by PMDs once per iteration).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reads the tables.
    pub fn read<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        let guard = self.tables.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&guard)
    }

    /// Edits the tables; the generation moves when `f` reports a change.
    pub fn write<R>(&self, f: impl FnOnce(&mut Tables) -> (R, bool)) -> R {
        let mut guard = self.tables.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (r, changed) = f(&mut guard);
        if changed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        r
    }

    /// Learns `ip -> mac` on `port` (ARP reply or request from a neighbour).
    /// Static entries are kept. Returns whether anything changed.
    pub fn learn(&self, ip: IpAddr, mac: [u8; 6], port: u32) -> bool {
        let known = self.read(|t| t.neighbours.get(&ip).copied());
        if known.is_some_and(|n| n.is_static || (n.mac == mac && n.port == port)) {
            return false;
        }
        self.write(|t| {
            let entry = Neighbour { mac, port, is_static: false };
            let changed = t.neighbours.get(&ip) != Some(&entry) && !t.neighbours.get(&ip).is_some_and(|n| n.is_static);
            if changed {
                t.neighbours.insert(ip, entry);
            }
            (changed, changed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn tables() -> Tables {
        let mut t = Tables::default();
        t.locals.push(LocalAddress { ip: ip("198.18.0.1"), len: 24, port: 1, mac: [2, 0, 0, 0, 1, 1], mtu: 1500 });
        let p = |s: &str| s.parse::<Prefix>().expect("prefix");
        t.routes.push(Route { prefix: p("198.18.0.0/24"), via: None, port: 1, source: RouteSource::Connected });
        t.routes.push(Route {
            prefix: p("10.0.0.0/8"),
            via: Some(ip("198.18.0.254")),
            port: 1,
            source: RouteSource::Config,
        });
        t.routes.push(Route {
            prefix: p("10.1.0.0/16"),
            via: Some(ip("198.18.0.253")),
            port: 1,
            source: RouteSource::Config,
        });
        t.tunnels.push(Tunnel {
            name: "vxlan0".into(),
            number: 2,
            remote: ip("10.1.2.3"),
            vni: Some(100),
            local: None,
            udp_port: 4789,
        });
        t
    }

    #[test]
    fn longest_prefix_match_and_resolution() {
        let mut t = tables();
        assert_eq!(t.route(ip("10.1.2.3")), Some((1, ip("198.18.0.253"))));
        assert_eq!(t.route(ip("10.2.0.1")), Some((1, ip("198.18.0.254"))));
        assert_eq!(t.route(ip("198.18.0.7")), Some((1, ip("198.18.0.7"))));
        assert_eq!(t.route(ip("192.0.2.1")), None);
        let tun = t.tunnels[0].clone();
        assert_eq!(
            t.resolve(&tun, None).map(|r| r.uplink),
            Err(Unresolved::NoNeighbour { next_hop: ip("198.18.0.253"), port: 1, local: ip("198.18.0.1") })
        );
        t.neighbours.insert(ip("198.18.0.253"), Neighbour { mac: [2, 0, 0, 0, 9, 9], port: 1, is_static: true });
        let r = t.resolve(&tun, None).expect("resolved");
        assert_eq!((r.uplink, r.template.spec().vni, r.template.spec().eth_dst), (1, 100, [2, 0, 0, 0, 9, 9]));
        let mut flow_based = tun.clone();
        flow_based.vni = None;
        assert_eq!(t.resolve(&flow_based, None).map(|r| r.uplink), Err(Unresolved::NoVni));
        assert_eq!(t.resolve(&flow_based, Some(7)).map(|r| r.template.spec().vni), Ok(7));
        assert!(t.tunnel_for(4789, ip("10.1.2.3"), ip("198.18.0.1"), 100).is_some());
        assert!(t.tunnel_for(4789, ip("10.1.2.3"), ip("198.18.0.1"), 200).is_none(), "other VNI");
        assert!(t.tunnel_for(4789, ip("10.9.9.9"), ip("198.18.0.1"), 100).is_none(), "other remote");
    }

    #[test]
    fn learning_bumps_the_generation_and_keeps_static_entries() {
        let u = Underlay::new(tables());
        let g = u.generation();
        assert!(u.learn(ip("198.18.0.2"), [2, 0, 0, 0, 0, 2], 1));
        assert!(u.generation() > g);
        let g = u.generation();
        assert!(!u.learn(ip("198.18.0.2"), [2, 0, 0, 0, 0, 2], 1), "same entry: no change");
        assert_eq!(u.generation(), g);
        u.write(|t| {
            t.neighbours.insert(ip("198.18.0.3"), Neighbour { mac: [1; 6], port: 1, is_static: true });
            ((), true)
        });
        assert!(!u.learn(ip("198.18.0.3"), [2; 6], 1), "static entries are not replaced by ARP");
    }
}
