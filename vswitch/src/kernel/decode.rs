//! Netlink bytes from the kernel -> [`Event`]s: the only place that reads
//! them (through `netlink-packet-route`). Anything it cannot read or does
//! not know becomes [`Event::Bad`] or [`Event::Skipped`], counted by the
//! caller; nothing here panics on any input (a fuzz target drives it).

use crate::net::Prefix;
use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteNextHopFlags, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::IpAddr;

/// `NLM_F_APPEND` on a route notification: one more next hop for an IPv6
/// route (`ip -6 route append`).
const NLM_F_APPEND: u16 = 0x800;
/// `NLM_F_DUMP_INTR`: the dump saw the table change midway; dump again.
pub const NLM_F_DUMP_INTR: u16 = 0x10;

/// One next hop of a kernel route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hop {
    pub ifindex: u32,
    pub gateway: Option<IpAddr>,
    /// Why the kernel itself does not use it (dead, link down), or a gateway
    /// we cannot use (another family through RTA_VIA).
    pub unusable: Option<&'static str>,
}

/// What kind of route, by the kernel's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unicast,
    /// Any other type (blackhole, unreachable, local, ...), by name.
    Other(&'static str),
}

/// A kernel route as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KRoute {
    pub prefix: Prefix,
    pub table: u32,
    pub tos: u8,
    pub metric: u32,
    pub kind: Kind,
    /// A source-specific route (`from` in iproute2): never ours.
    pub source_len: u8,
    /// A nexthop object id, when the route uses one.
    pub nh_id: Option<u32>,
    pub hops: Vec<Hop>,
}

/// A kernel neighbour as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KNeigh {
    pub ip: IpAddr,
    pub ifindex: u32,
    /// Its MAC, when the state says it is valid (reachable, stale, delay,
    /// probe, permanent, noarp) and the address is 6 bytes; `None` means
    /// "no usable entry" (incomplete, failed).
    pub mac: Option<[u8; 6]>,
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A link exists with this name and state (up: administratively up and
    /// with carrier).
    Link { index: u32, name: Option<String>, up: bool },
    /// A link is gone.
    LinkGone { index: u32 },
    /// A route was added or replaced (`append`: one more next hop).
    Route { route: KRoute, append: bool },
    /// A route (or some of its next hops) was deleted.
    RouteGone(KRoute),
    /// A neighbour entry changed.
    Neigh(KNeigh),
    /// A neighbour entry was deleted.
    NeighGone(KNeigh),
    /// The end of a dump; `interrupted`: the kernel's table changed meanwhile.
    Done { interrupted: bool },
    /// An error (negative errno) from the kernel, or an ACK (0).
    Error(i32),
    /// Something valid we do not follow, e.g. a bridge FDB entry (family
    /// AF_BRIDGE): counted as an unknown family.
    Skipped(&'static str),
    /// Not a valid netlink message: counted, the rest of the datagram dropped.
    Bad(String),
}

/// Decodes every netlink message in one datagram into `out`.
pub fn decode(mut buf: &[u8], out: &mut Vec<Event>) {
    while !buf.is_empty() {
        let len = match NetlinkBuffer::new_checked(buf) {
            Ok(b) => b.length() as usize,
            Err(e) => {
                out.push(Event::Bad(format!("netlink header: {e}")));
                return;
            }
        };
        if len < 16 || len > buf.len() {
            out.push(Event::Bad(format!("netlink message length {len} of {} bytes", buf.len())));
            return;
        }
        out.push(message(&buf[..len]));
        // Messages are 4-byte aligned within a datagram.
        let next = (len + 3) & !3;
        buf = buf.get(next..).unwrap_or(&[]);
    }
}

fn message(bytes: &[u8]) -> Event {
    let msg = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
        Ok(m) => m,
        Err(e) => return Event::Bad(format!("{e}")),
    };
    let flags = msg.header.flags;
    match msg.payload {
        NetlinkPayload::Done(_) => Event::Done { interrupted: flags & NLM_F_DUMP_INTR != 0 },
        NetlinkPayload::Error(e) => Event::Error(e.raw_code()),
        NetlinkPayload::Noop => Event::Skipped("noop"),
        NetlinkPayload::Overrun(_) => Event::Bad("overrun message".into()),
        NetlinkPayload::InnerMessage(m) => inner(m, flags),
        _ => Event::Skipped("unknown payload"),
    }
}

fn inner(m: RouteNetlinkMessage, flags: u16) -> Event {
    match m {
        RouteNetlinkMessage::NewLink(l) => link(&l),
        RouteNetlinkMessage::DelLink(l) => Event::LinkGone { index: l.header.index },
        RouteNetlinkMessage::NewRoute(r) => match route(&r) {
            Ok(route) => Event::Route { route, append: flags & NLM_F_APPEND != 0 },
            Err(e) => e,
        },
        RouteNetlinkMessage::DelRoute(r) => match route(&r) {
            Ok(route) => Event::RouteGone(route),
            Err(e) => e,
        },
        RouteNetlinkMessage::NewNeighbour(n) => neigh(&n).map_or_else(|e| e, Event::Neigh),
        RouteNetlinkMessage::DelNeighbour(n) => neigh(&n).map_or_else(|e| e, Event::NeighGone),
        _ => Event::Skipped("message type"),
    }
}

fn link(l: &LinkMessage) -> Event {
    let name = l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    });
    let up = l.header.flags.contains(LinkFlags::Up) && l.header.flags.contains(LinkFlags::LowerUp);
    Event::Link { index: l.header.index, name, up }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn kind_name(k: RouteType) -> Kind {
    match k {
        RouteType::Unicast => Kind::Unicast,
        RouteType::Local => Kind::Other("local"),
        RouteType::Broadcast => Kind::Other("broadcast"),
        RouteType::Anycast => Kind::Other("anycast"),
        RouteType::Multicast => Kind::Other("multicast"),
        RouteType::BlackHole => Kind::Other("blackhole"),
        RouteType::Unreachable => Kind::Other("unreachable"),
        RouteType::Prohibit => Kind::Other("prohibit"),
        RouteType::Throw => Kind::Other("throw"),
        RouteType::Nat => Kind::Other("nat"),
        _ => Kind::Other("unknown type"),
    }
}

/// Next hop attributes: (gateway, unusable-why).
fn hop_attrs(attrs: &[RouteAttribute]) -> (Option<IpAddr>, Option<&'static str>) {
    let mut gateway = None;
    let mut why = None;
    for a in attrs {
        match a {
            RouteAttribute::Gateway(g) => match ip_of(g) {
                Some(ip) => gateway = Some(ip),
                None => why = Some("gateway of an unknown family"),
            },
            RouteAttribute::Via(_) => why = Some("gateway of the other address family (RTA_VIA)"),
            RouteAttribute::Encap(_) | RouteAttribute::EncapType(_) => why = Some("lightweight tunnel encapsulation"),
            _ => {}
        }
    }
    (gateway, why)
}

fn route(r: &RouteMessage) -> Result<KRoute, Event> {
    let h = &r.header;
    let v4 = match h.address_family {
        AddressFamily::Inet => true,
        AddressFamily::Inet6 => false,
        _ => return Err(Event::Skipped("route family")),
    };
    let len = h.destination_prefix_length;
    if len > if v4 { 32 } else { 128 } {
        return Err(Event::Bad(format!("route prefix length {len}")));
    }
    let mut dst = None;
    let mut table = u32::from(h.table);
    let mut metric = 0;
    let mut oif = None;
    let mut multipath = None;
    let mut nh_id = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = ip_of(d),
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(hops) => multipath = Some(hops),
            RouteAttribute::NhId(id) => nh_id = Some(*id),
            _ => {}
        }
    }
    let unspecified = if v4 { IpAddr::from([0u8; 4]) } else { IpAddr::from([0u8; 16]) };
    let addr = dst.unwrap_or(unspecified);
    if addr.is_ipv4() != v4 {
        return Err(Event::Bad("route destination of the other family".into()));
    }
    let prefix = Prefix { addr, len }.network();
    let mut hops = Vec::new();
    if let Some(mp) = multipath {
        for nh in mp {
            let (gateway, mut why) = hop_attrs(&nh.attributes);
            if nh.flags.intersects(RouteNextHopFlags::Dead) {
                why = Some("next hop dead");
            } else if nh.flags.intersects(RouteNextHopFlags::Linkdown) {
                why = Some("next hop link down");
            }
            hops.push(Hop { ifindex: nh.interface_index, gateway, unusable: why });
        }
    } else if let Some(ifindex) = oif {
        let (gateway, why) = hop_attrs(&r.attributes);
        hops.push(Hop { ifindex, gateway, unusable: why });
    }
    if hops.iter().any(|h| h.gateway.is_some_and(|g| g.is_ipv4() != v4)) {
        return Err(Event::Bad("route gateway of the other family".into()));
    }
    Ok(KRoute {
        prefix,
        table,
        tos: h.tos,
        metric,
        kind: kind_name(h.kind),
        source_len: h.source_prefix_length,
        nh_id,
        hops,
    })
}

fn neigh(n: &NeighbourMessage) -> Result<KNeigh, Event> {
    let h = &n.header;
    if !matches!(h.family, AddressFamily::Inet | AddressFamily::Inet6) {
        return Err(Event::Skipped("neighbour family"));
    }
    let mut ip = None;
    let mut lladdr = None;
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => ip = Some(IpAddr::V4(*v4)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => ip = Some(IpAddr::V6(*v6)),
            NeighbourAttribute::LinkLayerAddress(m) => lladdr = <[u8; 6]>::try_from(m.as_slice()).ok(),
            _ => {}
        }
    }
    let Some(ip) = ip else { return Err(Event::Bad("neighbour without an address".into())) };
    let valid = matches!(
        h.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    );
    let mac = lladdr.filter(|m| valid && m[0] & 1 == 0 && *m != [0; 6]);
    Ok(KNeigh { ip, ifindex: h.ifindex, mac })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_route::route::{RouteHeader, RouteNextHop, RouteProtocol, RouteScope};

    fn bytes(m: RouteNetlinkMessage, flags: u16) -> Vec<u8> {
        let mut msg = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(m));
        msg.header.flags = flags;
        msg.finalize();
        let mut b = vec![0; msg.buffer_len()];
        msg.serialize(&mut b);
        b
    }

    fn hop(ifindex: u32, flags: RouteNextHopFlags, gw: Option<IpAddr>) -> RouteNextHop {
        let mut h = RouteNextHop::default();
        h.interface_index = ifindex;
        h.flags = flags;
        h.attributes = gw.into_iter().map(|g| RouteAttribute::Gateway(g.into())).collect();
        h
    }

    fn route_msg(dst: &str, len: u8, attrs: Vec<RouteAttribute>) -> RouteMessage {
        let mut r = RouteMessage::default();
        let ip: IpAddr = dst.parse().expect("ip");
        r.header = RouteHeader {
            address_family: if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 },
            destination_prefix_length: len,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::Static,
            scope: RouteScope::Universe,
            kind: RouteType::Unicast,
            ..RouteHeader::default()
        };
        r.attributes = attrs;
        r.attributes.push(RouteAttribute::Destination(ip.into()));
        r
    }

    #[test]
    fn routes_neighbours_and_links_decode() {
        let gw: IpAddr = "198.18.0.2".parse().expect("ip");
        let mut b = bytes(
            RouteNetlinkMessage::NewRoute(route_msg(
                "10.99.0.7",
                24,
                vec![RouteAttribute::Oif(4), RouteAttribute::Gateway(gw.into()), RouteAttribute::Priority(20)],
            )),
            0,
        );
        // Two messages in one datagram.
        b.extend(bytes(
            RouteNetlinkMessage::DelRoute(route_msg(
                "2001:db8::",
                64,
                vec![RouteAttribute::MultiPath(vec![hop(4, RouteNextHopFlags::empty(), None), {
                    let gw: IpAddr = "fe80::1".parse().expect("ip");
                    hop(5, RouteNextHopFlags::Linkdown, Some(gw))
                }])],
            )),
            0,
        ));
        let mut out = Vec::new();
        decode(&b, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        let Event::Route { route, append: false } = &out[0] else { panic!("{out:?}") };
        assert_eq!(route.prefix.to_string(), "10.99.0.0/24", "host bits cleared");
        assert_eq!((route.table, route.metric, route.kind), (254, 20, Kind::Unicast));
        assert_eq!(route.hops, vec![Hop { ifindex: 4, gateway: Some(gw), unusable: None }]);
        let Event::RouteGone(r6) = &out[1] else { panic!("{out:?}") };
        assert_eq!(r6.hops.len(), 2);
        assert_eq!(r6.hops[1].unusable, Some("next hop link down"));

        let mut n = NeighbourMessage::default();
        n.header.family = AddressFamily::Inet;
        n.header.ifindex = 4;
        n.header.state = NeighbourState::Stale;
        n.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet("198.18.0.2".parse().expect("ip"))),
            NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 2]),
        ];
        let mut failed = n.clone();
        failed.header.state = NeighbourState::Failed;
        let mut fdb = n.clone();
        fdb.header.family = AddressFamily::Bridge;
        let mut out = Vec::new();
        decode(&bytes(RouteNetlinkMessage::NewNeighbour(n), 0), &mut out);
        decode(&bytes(RouteNetlinkMessage::NewNeighbour(failed), 0), &mut out);
        decode(&bytes(RouteNetlinkMessage::NewNeighbour(fdb), 0), &mut out);
        assert_eq!(
            out[0],
            Event::Neigh(KNeigh { ip: gw, ifindex: 4, mac: Some([2, 0, 0, 0, 0, 2]) }),
            "a stale entry is usable"
        );
        assert_eq!(out[1], Event::Neigh(KNeigh { ip: gw, ifindex: 4, mac: None }), "a failed one is not");
        assert_eq!(out[2], Event::Skipped("neighbour family"), "bridge FDB entries are not ours");

        let mut l = LinkMessage::default();
        l.header.index = 4;
        l.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        l.attributes = vec![LinkAttribute::IfName("up0".into())];
        let mut out = Vec::new();
        decode(&bytes(RouteNetlinkMessage::NewLink(l), 0), &mut out);
        assert_eq!(out, vec![Event::Link { index: 4, name: Some("up0".into()), up: true }]);
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut out = Vec::new();
        decode(&[1, 2, 3], &mut out);
        decode(&[0xff; 40], &mut out);
        let mut short = bytes(RouteNetlinkMessage::NewRoute(route_msg("10.0.0.0", 8, vec![])), 0);
        short.truncate(short.len() - 4);
        decode(&short, &mut out);
        let mut bad_len = bytes(RouteNetlinkMessage::NewRoute(route_msg("10.0.0.0", 8, vec![])), 0);
        bad_len[16 + 1] = 40; // prefix length 40 for IPv4
        decode(&bad_len, &mut out);
        assert_eq!(out.len(), 4, "{out:?}");
        assert!(out.iter().all(|e| matches!(e, Event::Bad(_))), "{out:?}");
    }
}
