//! The kernel's links, routes and neighbours as followed over netlink, and
//! what of them the switch uses ([`KernelState::view`]). Pure: no sockets,
//! so unit tests and the fuzz target drive it with decoded events.

#[cfg(test)]
use super::decode::KRoute;
use super::decode::{Event, Hop, KNeigh, Kind};
use super::status::Counters;
use crate::net::Prefix;
use crate::underlay::{IgnoredRoute, NeighSource, Neighbour, Route, RouteSource};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// At most this many ignored routes are listed (all are counted).
pub const MAX_IGNORED_LISTED: usize = 1000;

/// A kernel link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub up: bool,
}

/// An uplink that stands for a kernel interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    pub ifname: String,
    /// Its datapath port number and name.
    pub port: u32,
    pub name: String,
}

/// A route's identity in the kernel (per table): family and prefix, TOS and
/// metric.
type RouteKey = (Prefix, u8, u32);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    source_len: u8,
    nh_id: Option<u32>,
    hops: Vec<Hop>,
}

/// The followed state.
#[derive(Debug, Clone, Default)]
pub struct KernelState {
    pub links: BTreeMap<u32, Link>,
    routes: BTreeMap<RouteKey, Entry>,
    neighbours: BTreeMap<(IpAddr, u32), [u8; 6]>,
}

/// What changed in the state by one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Nothing,
    Changed,
    /// A link went up or down, appeared or went away: the kernel flushes
    /// IPv4 routes of a link that goes down without telling anyone, so only
    /// a fresh dump shows what is left.
    LinkChanged,
}

/// What the switch takes from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub routes: Vec<Route>,
    pub neighbours: Vec<(IpAddr, Neighbour)>,
    pub ignored_routes: Vec<IgnoredRoute>,
    /// Every ignored route next hop (the list stops at [`MAX_IGNORED_LISTED`]).
    pub ignored_route_count: usize,
    /// Neighbours on interfaces that are no uplink's.
    pub ignored_neighbours: usize,
}

impl KernelState {
    /// Applies one event; `table` is the routing table followed.
    pub fn apply(&mut self, event: &Event, table: u32, counters: &mut Counters) -> Applied {
        match event {
            Event::Link { index, name, up } => {
                let old = self.links.get(index).cloned();
                let name = name.clone().or_else(|| old.as_ref().map(|l| l.name.clone())).unwrap_or_default();
                let new = Link { name, up: *up };
                if old.as_ref() == Some(&new) {
                    return Applied::Nothing;
                }
                self.links.insert(*index, new);
                Applied::LinkChanged
            }
            Event::LinkGone { index } => {
                if self.links.remove(index).is_none() {
                    return Applied::Nothing;
                }
                self.routes.retain(|_, e| {
                    e.hops.retain(|h| h.ifindex != *index);
                    !e.hops.is_empty() || e.kind != Kind::Unicast
                });
                self.neighbours.retain(|(_, i), _| i != index);
                Applied::LinkChanged
            }
            Event::Route { route, append } => {
                if route.table != table {
                    counters.other_table += 1;
                    return Applied::Nothing;
                }
                let key = (route.prefix, route.tos, route.metric);
                let new = Entry {
                    kind: route.kind,
                    source_len: route.source_len,
                    nh_id: route.nh_id,
                    hops: route.hops.clone(),
                };
                match self.routes.get_mut(&key) {
                    // `ip -6 route append`: one more next hop of the same
                    // route. (IPv4 keeps an appended route apart and unused:
                    // the first one wins, as the kernel does.)
                    Some(e) if *append && !route.prefix.is_ipv4() => {
                        let before = e.hops.len();
                        for h in &route.hops {
                            if !e.hops.contains(h) {
                                e.hops.push(h.clone());
                            }
                        }
                        if e.hops.len() == before {
                            return Applied::Nothing;
                        }
                    }
                    Some(_) if *append => return Applied::Nothing,
                    Some(e) if *e == new => return Applied::Nothing,
                    _ => {
                        self.routes.insert(key, new);
                    }
                }
                Applied::Changed
            }
            Event::RouteGone(route) => {
                if route.table != table {
                    counters.other_table += 1;
                    return Applied::Nothing;
                }
                let key = (route.prefix, route.tos, route.metric);
                let Some(e) = self.routes.get_mut(&key) else { return Applied::Nothing };
                // Deleting some next hops of a multipath route leaves the
                // others; deleting all of them (or naming none) the route.
                let named: Vec<(u32, Option<IpAddr>)> = route.hops.iter().map(|h| (h.ifindex, h.gateway)).collect();
                let partial = !named.is_empty()
                    && named.len() < e.hops.len()
                    && named.iter().all(|n| e.hops.iter().any(|h| (h.ifindex, h.gateway) == *n));
                if partial {
                    e.hops.retain(|h| !named.contains(&(h.ifindex, h.gateway)));
                } else {
                    self.routes.remove(&key);
                }
                Applied::Changed
            }
            Event::Neigh(n) => self.neighbour(n),
            Event::NeighGone(n) => match self.neighbours.remove(&(n.ip, n.ifindex)) {
                Some(_) => Applied::Changed,
                None => Applied::Nothing,
            },
            Event::Done { .. } | Event::Error(_) => Applied::Nothing,
            Event::Skipped(_) => {
                counters.unknown_family += 1;
                Applied::Nothing
            }
            Event::Bad(_) => {
                counters.bad_messages += 1;
                Applied::Nothing
            }
        }
    }

    fn neighbour(&mut self, n: &KNeigh) -> Applied {
        let key = (n.ip, n.ifindex);
        match n.mac {
            Some(mac) if self.neighbours.get(&key) == Some(&mac) => Applied::Nothing,
            Some(mac) => {
                self.neighbours.insert(key, mac);
                Applied::Changed
            }
            None if self.neighbours.remove(&key).is_some() => Applied::Changed,
            None => Applied::Nothing,
        }
    }

    /// The number of routes and neighbours held (for logs).
    pub fn sizes(&self) -> (usize, usize) {
        (self.routes.len(), self.neighbours.len())
    }

    fn dev_name(&self, ifindex: u32) -> String {
        self.links.get(&ifindex).map_or_else(|| format!("if#{ifindex}"), |l| l.name.clone())
    }

    /// The routes and neighbours the switch uses: those through an uplink's
    /// kernel interface that is up; every other route next hop is listed
    /// with why.
    pub fn view(&self, uplinks: &[Uplink]) -> View {
        let uplink_of = |ifindex: u32| {
            let link = self.links.get(&ifindex)?;
            uplinks.iter().find(|u| u.ifname == link.name).map(|u| (u, link.up))
        };
        let mut v = View::default();
        let ignore = |v: &mut View, prefix: &Prefix, via: Option<IpAddr>, dev: String, metric: u32, why: String| {
            v.ignored_route_count += 1;
            if v.ignored_routes.len() < MAX_IGNORED_LISTED {
                v.ignored_routes.push(IgnoredRoute { prefix: prefix.to_string(), via, dev, metric, why });
            }
        };
        for ((prefix, tos, metric), e) in &self.routes {
            let whole = match e.kind {
                Kind::Other(name) => Some(format!("a {name} route")),
                Kind::Unicast if e.source_len > 0 => Some("a source-specific route".to_owned()),
                Kind::Unicast if *tos != 0 => Some(format!("a route for TOS {tos:#x} only")),
                Kind::Unicast if e.hops.is_empty() => Some(match e.nh_id {
                    Some(id) => {
                        format!("nexthop object {id} without its next hops (set net.ipv4.nexthop_compat_mode=1)")
                    }
                    None => "no next hop".to_owned(),
                }),
                Kind::Unicast => None,
            };
            if let Some(why) = whole {
                let dev = e.hops.first().map_or_else(|| "-".to_owned(), |h| self.dev_name(h.ifindex));
                ignore(&mut v, prefix, None, dev, *metric, why);
                continue;
            }
            for h in &e.hops {
                let dev = self.dev_name(h.ifindex);
                let why = match (h.unusable, uplink_of(h.ifindex)) {
                    (Some(why), _) => Some(why.to_owned()),
                    (None, None) => Some(format!("{dev} is not an uplink's kernel_ifname")),
                    (None, Some((u, false))) => Some(format!("{dev} ({}) is down", u.name)),
                    (None, Some((u, true))) => {
                        v.routes.push(Route {
                            prefix: *prefix,
                            via: h.gateway,
                            port: u.port,
                            source: RouteSource::Kernel,
                            metric: *metric,
                        });
                        None
                    }
                };
                if let Some(why) = why {
                    ignore(&mut v, prefix, h.gateway, dev, *metric, why);
                }
            }
        }
        v.routes.sort_by_key(|r| (r.prefix, r.metric, r.port, r.via));
        v.routes.dedup();
        let mut neighbours: BTreeMap<IpAddr, Neighbour> = BTreeMap::new();
        for ((ip, ifindex), mac) in &self.neighbours {
            match uplink_of(*ifindex) {
                Some((u, true)) => {
                    // The same address on two uplinks: the lower port.
                    let n = Neighbour { mac: *mac, port: u.port, source: NeighSource::Kernel };
                    neighbours.entry(*ip).and_modify(|e| *e = if e.port <= n.port { *e } else { n }).or_insert(n);
                }
                _ => v.ignored_neighbours += 1,
            }
        }
        v.neighbours = neighbours.into_iter().collect();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn route(prefix: &str, metric: u32, hops: &[(u32, Option<&str>)]) -> KRoute {
        KRoute {
            prefix: prefix.parse().expect("prefix"),
            table: 254,
            tos: 0,
            metric,
            kind: Kind::Unicast,
            source_len: 0,
            nh_id: None,
            hops: hops.iter().map(|(i, g)| Hop { ifindex: *i, gateway: g.map(ip), unusable: None }).collect(),
        }
    }

    fn state() -> (KernelState, Vec<Uplink>, Counters) {
        let mut s = KernelState::default();
        let mut c = Counters::default();
        for (index, name) in [(4, "up0"), (5, "up1"), (6, "eth0")] {
            s.apply(&Event::Link { index, name: Some(name.into()), up: true }, 254, &mut c);
        }
        let uplinks = vec![
            Uplink { ifname: "up0".into(), port: 1, name: "uplink0".into() },
            Uplink { ifname: "up1".into(), port: 2, name: "uplink1".into() },
        ];
        (s, uplinks, c)
    }

    #[test]
    fn routes_map_to_uplinks_and_the_rest_is_listed_with_why() {
        let (mut s, up, mut c) = state();
        let add = |s: &mut KernelState, c: &mut Counters, r: KRoute| {
            s.apply(&Event::Route { route: r, append: false }, 254, c)
        };
        assert_eq!(add(&mut s, &mut c, route("10.99.0.0/24", 20, &[(4, Some("198.18.0.2"))])), Applied::Changed);
        add(&mut s, &mut c, route("10.98.0.0/16", 0, &[(6, Some("192.0.2.1"))]));
        add(&mut s, &mut c, route("10.97.0.0/16", 0, &[(4, Some("198.18.0.2")), (6, Some("192.0.2.1"))]));
        let mut other = route("10.96.0.0/16", 0, &[(4, None)]);
        other.table = 100;
        add(&mut s, &mut c, other);
        let mut hole = route("10.95.0.0/16", 0, &[]);
        hole.kind = Kind::Other("blackhole");
        add(&mut s, &mut c, hole);
        assert_eq!(c.other_table, 1);
        let v = s.view(&up);
        let used: Vec<String> = v.routes.iter().map(|r| format!("{} {:?} {}", r.prefix, r.via, r.port)).collect();
        assert_eq!(used, ["10.97.0.0/16 Some(198.18.0.2) 1", "10.99.0.0/24 Some(198.18.0.2) 1"]);
        let why: Vec<String> = v.ignored_routes.iter().map(|r| format!("{} {}: {}", r.prefix, r.dev, r.why)).collect();
        assert_eq!(
            why,
            [
                "10.95.0.0/16 -: a blackhole route",
                "10.97.0.0/16 eth0: eth0 is not an uplink's kernel_ifname",
                "10.98.0.0/16 eth0: eth0 is not an uplink's kernel_ifname",
            ]
        );
        // Replacing, then a link going down, then deleting.
        add(&mut s, &mut c, route("10.99.0.0/24", 20, &[(5, Some("198.18.1.2"))]));
        assert_eq!(s.view(&up).routes.iter().find(|r| r.prefix.len == 24).map(|r| r.port), Some(2));
        assert_eq!(s.apply(&Event::Link { index: 5, name: None, up: false }, 254, &mut c), Applied::LinkChanged);
        let v = s.view(&up);
        assert!(v.routes.iter().all(|r| r.port != 2));
        assert!(v.ignored_routes.iter().any(|r| r.why == "up1 (uplink1) is down"), "{v:?}");
        let gone = route("10.99.0.0/24", 20, &[]);
        assert_eq!(s.apply(&Event::RouteGone(gone.clone()), 254, &mut c), Applied::Changed);
        assert_eq!(s.apply(&Event::RouteGone(gone), 254, &mut c), Applied::Nothing);
    }

    #[test]
    fn multipath_append_and_partial_delete() {
        let (mut s, up, mut c) = state();
        let r = route("2001:db8:99::/64", 1024, &[(4, Some("fe80::2"))]);
        s.apply(&Event::Route { route: r, append: false }, 254, &mut c);
        let r2 = route("2001:db8:99::/64", 1024, &[(5, Some("fe80::3"))]);
        assert_eq!(s.apply(&Event::Route { route: r2.clone(), append: true }, 254, &mut c), Applied::Changed);
        assert_eq!(s.view(&up).routes.len(), 2, "two next hops");
        s.apply(&Event::RouteGone(r2), 254, &mut c);
        let v = s.view(&up);
        assert_eq!(v.routes.len(), 1, "one next hop deleted, the other stays: {v:?}");
        assert_eq!(v.routes[0].port, 1);
        // IPv4 append: a second route the kernel does not use.
        let a = route("10.1.0.0/16", 0, &[(4, Some("198.18.0.2"))]);
        s.apply(&Event::Route { route: a, append: false }, 254, &mut c);
        let b = route("10.1.0.0/16", 0, &[(5, Some("198.18.1.2"))]);
        assert_eq!(s.apply(&Event::Route { route: b, append: true }, 254, &mut c), Applied::Nothing);
    }

    #[test]
    fn neighbours_follow_state_and_interface() {
        let (mut s, up, mut c) = state();
        let n = |ifindex, mac| Event::Neigh(KNeigh { ip: ip("198.18.0.2"), ifindex, mac });
        assert_eq!(s.apply(&n(4, Some([2, 0, 0, 0, 0, 2])), 254, &mut c), Applied::Changed);
        assert_eq!(s.apply(&n(4, Some([2, 0, 0, 0, 0, 2])), 254, &mut c), Applied::Nothing);
        s.apply(&Event::Neigh(KNeigh { ip: ip("192.0.2.9"), ifindex: 6, mac: Some([2; 6]) }), 254, &mut c);
        let v = s.view(&up);
        assert_eq!(v.neighbours.len(), 1);
        assert_eq!(v.neighbours[0].1, Neighbour { mac: [2, 0, 0, 0, 0, 2], port: 1, source: NeighSource::Kernel });
        assert_eq!(v.ignored_neighbours, 1, "eth0's neighbour");
        assert_eq!(s.apply(&n(4, None), 254, &mut c), Applied::Changed, "failed: withdrawn");
        assert!(s.view(&up).neighbours.is_empty());
        assert_eq!(s.apply(&Event::Bad("x".into()), 254, &mut c), Applied::Nothing);
        assert_eq!(s.apply(&Event::Skipped("neighbour family"), 254, &mut c), Applied::Nothing);
        assert_eq!((c.bad_messages, c.unknown_family), (1, 1));
    }

    #[test]
    fn a_deleted_link_takes_its_routes_and_neighbours() {
        let (mut s, up, mut c) = state();
        s.apply(&Event::Route { route: route("10.9.0.0/16", 0, &[(4, None)]), append: false }, 254, &mut c);
        s.apply(&Event::Neigh(KNeigh { ip: ip("198.18.0.2"), ifindex: 4, mac: Some([2; 6]) }), 254, &mut c);
        assert_eq!(s.apply(&Event::LinkGone { index: 4 }, 254, &mut c), Applied::LinkChanged);
        let v = s.view(&up);
        assert!(v.routes.is_empty() && v.neighbours.is_empty(), "{v:?}");
        assert_eq!(s.sizes(), (0, 0));
    }
}
