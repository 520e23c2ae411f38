//! The PMD's side of the underlay: a per-(tunnel, VNI) cache of resolved
//! encapsulations, refreshed when the shared underlay's generation moves,
//! the VTEP's ARP responder and learner, and rate-limited ARP requests.

use crate::actions::control_packets::{read_arp, read_nd, write_arp, write_na, write_ns, Arp, MAX_CONTROL_FRAME};
use crate::packet::key::{ip_from, ip_to, mac_to};
use crate::packet::parse::{ETH_TYPE_IPV4, ETH_TYPE_IPV6, IPPROTO_UDP};
use crate::packet::{Field, FlowKey};
use crate::underlay::{LocalAddress, Resolved, Tunnel, Underlay, Unresolved};
use hashbrown::HashMap;
use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

/// What an uplink packet is to the VTEP.
pub enum Special {
    /// ARP: maybe for us.
    Arp,
    /// IPv6 neighbour solicitation or advertisement: maybe for us.
    Nd,
    /// VXLAN (UDP to this port) addressed to one of our addresses.
    Vxlan(u16),
    /// Anything else: classify normally.
    None,
}

/// What to do with an ARP or neighbour-discovery packet.
pub enum NeighbourAction {
    /// Not for us: classify it like any packet.
    PassOn,
    /// Consumed (a reply we learned from).
    Consumed,
    /// Send this reply back out of the same port.
    Reply(usize),
}

/// (UDP port, outer source, outer destination, VNI) of a decapsulated packet.
type TunnelQuestion = (u16, u128, u128, u32);

pub struct TunnelCtx {
    pub underlay: Arc<Underlay>,
    pub phys_ports: usize,
    pub uplink: Vec<bool>,
    generation: u64,
    tunnels: Vec<Tunnel>,
    locals: Vec<LocalAddress>,
    /// (port, address, MAC in key form) of every local address: the
    /// per-packet "is this for our VTEP" test without conversions.
    local_keys: Vec<(u32, u128, u128)>,
    udp_ports: Vec<u16>,
    /// The last (udp port, outer src, outer dst, VNI) -> tunnel answer:
    /// a burst from one remote VTEP asks the same question 32 times.
    last_tunnel: Cell<Option<(TunnelQuestion, u32)>>,
    /// Shared with the flow group being sent (`Rc`: a group holds it while
    /// the PMD's other state is borrowed; cloning the 160-byte resolution
    /// for every group cost a copy per packet at 1k flows).
    cache: HashMap<(u32, u32), Result<Rc<Resolved>, Unresolved>>,
    arp_sent: HashMap<IpAddr, u64>,
    pub scratch: Box<[u8; MAX_CONTROL_FRAME]>,
}

impl TunnelCtx {
    pub fn new(underlay: Arc<Underlay>, phys_ports: usize, uplink: Vec<bool>) -> Self {
        let mut t = Self {
            underlay,
            phys_ports,
            uplink,
            generation: 0,
            tunnels: Vec::new(),
            locals: Vec::new(),
            local_keys: Vec::new(),
            udp_ports: Vec::new(),
            last_tunnel: Cell::new(None),
            cache: HashMap::new(),
            arp_sent: HashMap::new(),
            scratch: Box::new([0u8; MAX_CONTROL_FRAME]),
        };
        t.refresh();
        t
    }

    /// Once per iteration: drop cached resolutions when the underlay changed.
    #[inline]
    pub fn refresh(&mut self) {
        let g = self.underlay.generation();
        if g == self.generation {
            return;
        }
        self.generation = g;
        self.cache.clear();
        let (tunnels, locals) = self.underlay.read(|t| (t.tunnels.clone(), t.locals.clone()));
        self.udp_ports = tunnels.iter().map(|t| t.udp_port).collect();
        self.udp_ports.sort_unstable();
        self.udp_ports.dedup();
        self.tunnels = tunnels;
        self.local_keys = locals.iter().map(|l| (l.port, ip_to(l.ip), mac_to(l.mac))).collect();
        self.locals = locals;
        self.last_tunnel.set(None);
    }

    #[inline]
    pub fn is_uplink(&self, port: u32) -> bool {
        self.uplink.get(port as usize).copied().unwrap_or(false)
    }

    pub fn has_tunnels(&self) -> bool {
        !self.tunnels.is_empty()
    }

    /// Is this uplink packet ARP, or VXLAN for us (our address, sent to our
    /// MAC: what the e-switch's decapsulation rules match too)?
    #[inline]
    pub fn special(&self, key: &FlowKey, in_port: u32) -> Special {
        match key.eth_type() {
            crate::packet::parse::ETH_TYPE_ARP => Special::Arp,
            ETH_TYPE_IPV6
                if key.ip_proto() == crate::packet::parse::IPPROTO_ICMPV6 && matches!(key.tp_src(), 135 | 136) =>
            {
                Special::Nd
            }
            ETH_TYPE_IPV4 | ETH_TYPE_IPV6
                if key.ip_proto() == IPPROTO_UDP
                    && self.udp_ports.contains(&key.tp_dst())
                    && self.local_keys.iter().any(|&(port, ip, mac)| {
                        port == in_port && ip == key.get(Field::NwDst) && mac == key.get(Field::EthDst)
                    }) =>
            {
                Special::Vxlan(key.tp_dst())
            }
            _ => Special::None,
        }
    }

    /// The tunnel a decapsulated packet belongs to (its port number).
    /// `src` and `dst` are the outer addresses in key form.
    #[inline]
    pub fn tunnel_for(&self, udp_port: u16, src: u128, dst: u128, vni: u32) -> Option<u32> {
        let question = (udp_port, src, dst, vni);
        if let Some((q, number)) = self.last_tunnel.get() {
            if q == question {
                return Some(number);
            }
        }
        let (src_ip, dst_ip) = (ip_from(src), ip_from(dst));
        let number = self.tunnels.iter().find(|t| t.accepts(udp_port, src_ip, dst_ip, vni)).map(|t| t.number)?;
        self.last_tunnel.set(Some((question, number)));
        Some(number)
    }

    /// Handles an ARP packet received on uplink `port`: learns the sender of
    /// anything addressed to us, and for a request writes the reply into
    /// `scratch`.
    pub fn arp(&mut self, frame: &[u8], l3: usize, port: u32) -> NeighbourAction {
        let Some(arp) = read_arp(frame, l3) else { return NeighbourAction::PassOn };
        let Some(local) = self.locals.iter().find(|l| l.port == port && l.ip == IpAddr::V4(arp.target_ip)).copied()
        else {
            return NeighbourAction::PassOn;
        };
        if arp.sender_ip.octets() != [0, 0, 0, 0] {
            self.underlay.learn(IpAddr::V4(arp.sender_ip), arp.sender_mac, port);
        }
        if arp.op != 1 {
            return NeighbourAction::Consumed;
        }
        let reply = Arp {
            op: 2,
            sender_mac: local.mac,
            sender_ip: arp.target_ip,
            target_mac: arp.sender_mac,
            target_ip: arp.sender_ip,
        };
        let n = write_arp(arp.sender_mac, local.mac, &reply, &mut self.scratch);
        NeighbourAction::Reply(n)
    }

    /// Handles a neighbour solicitation/advertisement received on uplink
    /// `port`: learns from advertisements and from solicitations for our
    /// addresses, and for those writes the advertisement into `scratch`.
    pub fn nd(&mut self, frame: &[u8], l3: usize, port: u32) -> NeighbourAction {
        let Some(nd) = read_nd(frame, l3) else { return NeighbourAction::PassOn };
        if nd.icmp_type == 136 {
            if let Some(mac) = nd.lladdr {
                if self.locals.iter().any(|l| l.port == port && !l.ip.is_ipv4()) {
                    self.underlay.learn(IpAddr::V6(nd.target), mac, port);
                }
            }
            return NeighbourAction::PassOn;
        }
        let Some(local) = self.locals.iter().find(|l| l.port == port && l.ip == IpAddr::V6(nd.target)).copied() else {
            return NeighbourAction::PassOn;
        };
        if nd.src.is_unspecified() {
            // Duplicate address detection by someone else: not a question to answer here.
            return NeighbourAction::Consumed;
        }
        let reply_mac = nd.lladdr.unwrap_or(nd.eth_src);
        self.underlay.learn(IpAddr::V6(nd.src), reply_mac, port);
        let n = write_na(local.mac, nd.target, reply_mac, nd.src, &mut self.scratch);
        NeighbourAction::Reply(n)
    }

    /// The resolved encapsulation for tunnel port `port` and `flow_vni`.
    pub fn resolve(&mut self, port: u32, flow_vni: Option<u32>) -> &Result<Rc<Resolved>, Unresolved> {
        let index = port as usize - self.phys_ports;
        let key = (index as u32, flow_vni.unwrap_or(u32::MAX));
        let underlay = &self.underlay;
        let tunnels = &self.tunnels;
        self.cache.entry(key).or_insert_with(|| match tunnels.get(index) {
            Some(t) => underlay.read(|tables| tables.resolve(t, flow_vni)).map(Rc::new),
            None => Err(Unresolved::NoRoute),
        })
    }

    /// An ARP request (IPv4) or neighbour solicitation (IPv6) for
    /// `next_hop`, at most one per second per address, as a frame in
    /// `scratch`; returns its length.
    pub fn solicit(&mut self, next_hop: IpAddr, port: u32, local: IpAddr, now: u64, hz: u64) -> Option<usize> {
        if self.arp_sent.get(&next_hop).is_some_and(|&t| now.wrapping_sub(t) < hz) {
            return None;
        }
        let mac = self.locals.iter().find(|l| l.port == port && l.ip == local).map(|l| l.mac)?;
        let len = match (next_hop, local) {
            (IpAddr::V4(target), IpAddr::V4(sender)) => {
                let req = Arp { op: 1, sender_mac: mac, sender_ip: sender, target_mac: [0; 6], target_ip: target };
                write_arp([0xff; 6], mac, &req, &mut self.scratch)
            }
            (IpAddr::V6(target), IpAddr::V6(sender)) => write_ns(mac, sender, target, &mut self.scratch),
            _ => return None,
        };
        self.arp_sent.insert(next_hop, now);
        Some(len)
    }
}
