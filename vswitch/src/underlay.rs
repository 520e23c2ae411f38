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

impl RouteSource {
    /// Which source wins for one prefix: an operator's route (config or
    /// vswitchctl) over the kernel's, the kernel's over a connected one.
    fn rank(self) -> u8 {
        match self {
            RouteSource::Connected => 0,
            RouteSource::Kernel => 1,
            RouteSource::Config | RouteSource::Control => 2,
        }
    }
}

/// A route: prefix -> uplink, optionally through a gateway. A kernel route
/// with several next hops (ECMP) is one `Route` per next hop, same prefix
/// and metric.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    pub prefix: Prefix,
    pub via: Option<IpAddr>,
    /// Uplink port number.
    pub port: u32,
    pub source: RouteSource,
    /// The kernel's metric (priority); 0 for every other source. Lower wins
    /// among routes of one prefix and source.
    pub metric: u32,
}

/// Where a neighbour entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NeighSource {
    /// The configuration file.
    Config,
    /// `vswitchctl neigh-add`.
    Control,
    /// The kernel's neighbour table (netlink).
    Kernel,
    /// Our own ARP / neighbour discovery.
    Learned,
}

impl NeighSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NeighSource::Config => "config",
            NeighSource::Control => "control",
            NeighSource::Kernel => "kernel",
            NeighSource::Learned => "learned",
        }
    }
}

/// A neighbour entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Neighbour {
    #[serde(serialize_with = "ser_mac")]
    pub mac: [u8; 6],
    pub port: u32,
    pub source: NeighSource,
}

impl Neighbour {
    /// Set by an operator (config or vswitchctl): neither the kernel nor
    /// ARP replaces it.
    pub fn is_static(&self) -> bool {
        matches!(self.source, NeighSource::Config | NeighSource::Control)
    }
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
    /// Kernel routes not used, with why (for route-show); empty unless the
    /// underlay follows the kernel.
    pub ignored_routes: Vec<IgnoredRoute>,
    /// The kernel follower's status, when it runs.
    pub kernel: Option<crate::kernel::KernelStatus>,
    /// The neighbours the kernel has, including those an operator's entry
    /// hides (they come back when that entry is deleted).
    pub kernel_neighbours: BTreeMap<IpAddr, Neighbour>,
}

/// The one-VTEP underlay of the tests and benchmarks: the local VTEP
/// 198.18.0.1/24 on port `uplink` (with `mac` and `mtu`), the remote VTEP
/// 198.18.0.2 a configured neighbour at `remote_mac`, and `vxlan0` (port
/// `tunnel`) to it with VNI 100 on UDP 4789.
#[cfg(any(test, feature = "testing"))]
impl Tables {
    pub fn one_vtep(uplink: u32, tunnel: u32, mac: [u8; 6], remote_mac: [u8; 6], mtu: u16) -> Self {
        let local: IpAddr = std::net::Ipv4Addr::new(198, 18, 0, 1).into();
        let remote: IpAddr = std::net::Ipv4Addr::new(198, 18, 0, 2).into();
        let mut t = Tables::default();
        t.locals.push(LocalAddress { ip: local, len: 24, port: uplink, mac, mtu });
        t.routes.push(Route {
            prefix: "198.18.0.0/24".parse().expect("a prefix"),
            via: None,
            port: uplink,
            source: RouteSource::Connected,
            metric: 0,
        });
        t.neighbours.insert(remote, Neighbour { mac: remote_mac, port: uplink, source: NeighSource::Config });
        t.tunnels.push(Tunnel {
            name: "vxlan0".into(),
            number: tunnel,
            remote,
            vni: Some(100),
            local: None,
            udp_port: 4789,
        });
        t
    }
}

/// A kernel route the switch does not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IgnoredRoute {
    pub prefix: String,
    pub via: Option<IpAddr>,
    /// The kernel interface, by name (or index when unknown).
    pub dev: String,
    pub metric: u32,
    pub why: String,
}

/// The shared underlay.
#[derive(Debug, Default)]
pub struct Underlay {
    tables: RwLock<Tables>,
    generation: AtomicU64,
}

impl Tables {
    /// Longest-prefix match: (uplink port, next hop).
    ///
    /// Among routes of the longest matching prefix, an operator's (config,
    /// vswitchctl) beats the kernel's, the kernel's beats a connected one,
    /// and the lowest metric wins. Several next hops left (ECMP): they are
    /// ordered by (uplink port, gateway) and `dst` hashed (FNV-1a over its
    /// bytes) picks one, so a remote VTEP keeps its next hop as long as the
    /// set does not change, in every run.
    pub fn route(&self, dst: IpAddr) -> Option<(u32, IpAddr)> {
        let best = self
            .routes
            .iter()
            .filter(|r| r.prefix.contains(dst))
            .map(|r| (r.prefix.len, r.source.rank(), std::cmp::Reverse(r.metric)))
            .max()?;
        let mut hops: Vec<(u32, IpAddr)> = self
            .routes
            .iter()
            .filter(|r| r.prefix.contains(dst) && (r.prefix.len, r.source.rank(), std::cmp::Reverse(r.metric)) == best)
            .map(|r| (r.port, r.via.unwrap_or(dst)))
            .collect();
        hops.sort_unstable();
        hops.dedup();
        let pick = match hops.len() {
            0 => return None,
            1 => 0,
            n => (fnv1a(dst) % n as u64) as usize,
        };
        Some(hops[pick])
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

/// FNV-1a over an address's bytes: the ECMP choice (stable across runs).
fn fnv1a(ip: IpAddr) -> u64 {
    let fold = |bytes: &[u8]| {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    };
    match ip {
        IpAddr::V4(a) => fold(&a.octets()),
        IpAddr::V6(a) => fold(&a.octets()),
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
    /// Static and kernel entries are kept. Returns whether anything changed.
    pub fn learn(&self, ip: IpAddr, mac: [u8; 6], port: u32) -> bool {
        let kept = |n: &Neighbour| n.source != NeighSource::Learned;
        let known = self.read(|t| t.neighbours.get(&ip).copied());
        if known.is_some_and(|n| kept(&n) || (n.mac == mac && n.port == port)) {
            return false;
        }
        self.write(|t| {
            let entry = Neighbour { mac, port, source: NeighSource::Learned };
            let changed = t.neighbours.get(&ip) != Some(&entry) && !t.neighbours.get(&ip).is_some_and(kept);
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
        t.routes.push(Route {
            prefix: p("198.18.0.0/24"),
            via: None,
            port: 1,
            source: RouteSource::Connected,
            metric: 0,
        });
        t.routes.push(Route {
            prefix: p("10.0.0.0/8"),
            via: Some(ip("198.18.0.254")),
            port: 1,
            source: RouteSource::Config,
            metric: 0,
        });
        t.routes.push(Route {
            prefix: p("10.1.0.0/16"),
            via: Some(ip("198.18.0.253")),
            port: 1,
            source: RouteSource::Config,
            metric: 0,
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
        t.neighbours
            .insert(ip("198.18.0.253"), Neighbour { mac: [2, 0, 0, 0, 9, 9], port: 1, source: NeighSource::Config });
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
    fn sources_metrics_and_ecmp_choose_deterministically() {
        let mut t = tables();
        let p = |s: &str| s.parse::<Prefix>().expect("prefix");
        let kernel = |prefix: &str, via: &str, port: u32, metric: u32| Route {
            prefix: p(prefix),
            via: Some(ip(via)),
            port,
            source: RouteSource::Kernel,
            metric,
        };
        // The operator's 10.1.0.0/16 beats the kernel's same prefix.
        t.routes.push(kernel("10.1.0.0/16", "198.18.0.9", 1, 0));
        assert_eq!(t.route(ip("10.1.2.3")), Some((1, ip("198.18.0.253"))));
        // Among kernel routes the lowest metric wins.
        t.routes.push(kernel("10.5.0.0/16", "198.18.0.20", 1, 20));
        t.routes.push(kernel("10.5.0.0/16", "198.18.0.10", 1, 10));
        assert_eq!(t.route(ip("10.5.0.1")), Some((1, ip("198.18.0.10"))));
        // ECMP: two next hops of one metric; the choice depends only on the
        // destination and the set, not on the order the routes came in.
        t.routes.push(kernel("10.6.0.0/16", "198.18.0.31", 1, 0));
        t.routes.push(kernel("10.6.0.0/16", "198.18.1.32", 2, 0));
        let mut reversed = Tables { routes: t.routes.clone(), ..Tables::default() };
        reversed.routes.reverse();
        let mut used = std::collections::BTreeSet::new();
        for i in 0..64u8 {
            let dst = IpAddr::from([10, 6, 1, i]);
            let hop = t.route(dst).expect("routed");
            assert_eq!(reversed.route(dst), Some(hop), "order of arrival does not matter");
            assert_eq!(t.route(dst), Some(hop), "stable");
            used.insert(hop);
        }
        assert_eq!(used.len(), 2, "64 remotes spread over both next hops: {used:?}");
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
            t.neighbours.insert(ip("198.18.0.3"), Neighbour { mac: [1; 6], port: 1, source: NeighSource::Kernel });
            ((), true)
        });
        assert!(!u.learn(ip("198.18.0.3"), [2; 6], 1), "kernel entries are not replaced by ARP");
    }
}
