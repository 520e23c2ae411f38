//! Egress: each flow group counted on its flow; the actions of groups that
//! share them run once for all, per action across the batch (outputs, VXLAN
//! encapsulation towards a resolved next hop, copies, MTU).

use super::engine::*;
use super::stages::*;
use crate::actions::control_packets::{icmp4_frag_needed, icmp6_packet_too_big};
use crate::actions::{self, Action, PacketBuf};
use crate::datapath::counters::{Counter, DropReason, Local, PortCounter};
use crate::datapath::flows::FlowHandle;
use crate::datapath::punt::{PacketIn, Punt};
use crate::datapath::tunnel::TunnelCtx;
use crate::flow::Bits;
use crate::packet::key::key_src_port;
use crate::packet::parse::{FrameKey, ETH_TYPE_IPV4, ETH_TYPE_IPV6};
use crate::packet::FlowKey;
use crate::underlay::{Resolved, Unresolved};
use offload::entropy::{vxlan_src_port, InnerFlow};
use std::sync::Arc;

impl Engine {
    /// Updates each group's flow counters and runs the groups' actions:
    /// groups in a row whose flows share their action list and rule (the
    /// megaflows of one rule and input port share one allocation, see
    /// `action_lists`) as one batch, so that what the actions need (the
    /// output's queue, the encapsulation's next hop) is looked up once for
    /// all their packets, not once a flow. Each flow's packets keep their
    /// order; a batch's leave in the order they came.
    pub fn stage_execute<I: Io>(&mut self, groups: &Groups, pkts: &mut Packets<I::Pkt>, now: u64, io: &mut I) {
        // The batch being built: its first group, the packets of all its
        // groups, and what its flows share.
        let mut batch: Option<(usize, u64, ActionsId)> = None;
        for g in 0..groups.len.min(BURST) {
            let members = groups.members[g];
            let Some(id) = self.charge_group(groups.handles[g], members, groups.one_bytes, pkts, now) else { continue };
            match batch {
                Some((first, all, same)) if same == id => batch = Some((first, all | members, id)),
                _ => {
                    if let Some((first, all, _)) = batch {
                        self.run_batch(groups.handles[first], all, pkts, now, io);
                    }
                    batch = Some((g, members, id));
                }
            }
        }
        if let Some((first, all, _)) = batch {
            self.run_batch(groups.handles[first], all, pkts, now, io);
        }
    }

    /// Counts a group's packets (`members`) and bytes (summed here unless
    /// given) on its flow `h` and marks it used. Returns what its actions
    /// are, or `None` when there is nothing to run: the flow's actions
    /// deliver nothing, or the flow is gone (its packets dropped and
    /// counted).
    #[inline]
    fn charge_group<P: PacketBuf>(
        &mut self,
        h: FlowHandle,
        members: u64,
        bytes: Option<u64>,
        pkts: &mut Packets<P>,
        now: u64,
    ) -> Option<ActionsId> {
        let Some(flow) = self.flows.get_mut(h) else {
            // Cannot happen while eviction spares the burst's flows;
            // counted all the same, never lost silently.
            self.counters.drop(DropReason::FlowGone, take_members(pkts, members));
            return None;
        };
        let bytes = bytes.unwrap_or_else(|| Bits(members).map(|i| u64::from(self.lens[i])).sum());
        flow.packets += u64::from(members.count_ones());
        flow.bytes += bytes;
        flow.used_tsc = now;
        if !flow.dirty && self.hot.is_some() {
            flow.dirty = true;
            self.dirty.push(h);
        }
        if let Some(reason) = flow.drop_reason {
            self.counters.drop(reason, u64::from(members.count_ones()));
            Bits(members).for_each(|i| pkts[i] = None);
            return None;
        }
        Some(ActionsId::of(flow))
    }

    /// Runs the actions of flow `h` on the packets of `members`; none is
    /// left in its slot after.
    fn run_batch<I: Io>(&mut self, h: FlowHandle, members: u64, pkts: &mut Packets<I::Pkt>, now: u64, io: &mut I) {
        let Some(flow) = self.flows.get(h) else {
            // Alive: `charge_group` found it just now. Counted all the same.
            self.counters.drop(DropReason::FlowGone, take_members(pkts, members));
            return;
        };
        let mut x = Exec {
            io,
            counters: &mut self.counters,
            punt: &mut self.punt,
            rule: flow.rule.as_deref(),
            pmd: self.index,
            tun: &mut self.tun,
            mtus: &self.mtus,
            keys: &self.keys,
            runs: self.runs,
            run_prev: &self.run_prev,
            sports: &self.sports,
            sport_known: self.sport_known,
            unparsed: self.unparsed,
            frames: &self.frames,
            in_ports: &self.in_ports,
            now,
            hz: self.hz,
        };
        execute(&flow.actions, pkts, members, &mut x);
        if !takes_all(&flow.actions) {
            // Actions that end without an output (e.g.
            // `output:vf1,mod_dl_src:...`): what is left is dropped by the rule.
            self.counters.drop(DropReason::RuleDrop, take_members(pkts, members));
        }
    }
}

/// Whether running `actions` takes every packet out of its slot: the last
/// action sends, punts or drops it (see `execute`).
fn takes_all(actions: &[Action]) -> bool {
    matches!(actions.last(), Some(Action::Output(_) | Action::Controller { .. } | Action::Drop))
}

impl Engine {
    /// Runs `actions` on `frame` as if it came in on `in_port` (`None`: from
    /// the controller): an OpenFlow PACKET_OUT. Counted as generated, then
    /// sent or dropped like any packet.
    pub fn inject<I: Io>(&mut self, frame: &[u8], in_port: Option<u32>, actions: &[Action], now: u64, io: &mut I) {
        self.counters.add(Counter::PacketOutSent, 1);
        let Some(mut m) = io.alloc() else {
            self.counters.drop(DropReason::NoMbuf, 1);
            return;
        };
        if !m.replace(frame) {
            self.counters.drop(DropReason::ActionError, 1);
            return;
        }
        let port = in_port.unwrap_or(u32::MAX);
        crate::packet::parse::parse_into(frame, port, None, &mut self.keys[0]);
        self.in_ports[0] = port;
        let mut pkts: Packets<I::Pkt> = [const { None }; BURST];
        pkts[0] = Some(m);
        let mut x = Exec {
            io: &mut *io,
            counters: &mut self.counters,
            punt: &mut self.punt,
            rule: None,
            pmd: self.index,
            tun: &mut self.tun,
            mtus: &self.mtus,
            keys: &self.keys,
            runs: 0,
            run_prev: &self.run_prev,
            sports: &self.sports,
            sport_known: 0,
            unparsed: 0,
            frames: &self.frames,
            in_ports: &self.in_ports,
            now,
            hz: self.hz,
        };
        execute(actions, &mut pkts, 1, &mut x);
        if pkts[0].take().is_some() {
            self.counters.drop(DropReason::RuleDrop, 1);
        }
    }
}

/// The outer UDP source port for packet `i`: from its flow key when it is IP
/// (the same value [`InnerFlow::from_frame`] gives, see the equivalence test),
/// else from its bytes.
#[inline]
pub(super) fn src_port_of(key: &FlowKey, frame: &[u8]) -> u16 {
    key_src_port(key).unwrap_or_else(|| vxlan_src_port(&InnerFlow::from_frame(frame)))
}

/// What a flow's actions are, by the addresses of its action list and rule:
/// flows with equal ids run the same actions (the flows of a burst, and so
/// their allocations, are alive until it is executed).
#[derive(Clone, Copy, PartialEq, Eq)]
struct ActionsId(usize, usize);

impl ActionsId {
    #[inline(always)]
    fn of(flow: &crate::datapath::flows::Flow) -> Self {
        let rule = flow.rule.as_ref().map_or(0, |r| Arc::as_ptr(r) as usize);
        Self(Arc::as_ptr(&flow.actions).cast::<Action>() as usize, rule)
    }
}

/// What running actions needs besides the packets.
struct Exec<'a, I: Io> {
    io: &'a mut I,
    counters: &'a mut Local,
    punt: &'a mut Punt,
    /// The rule of the flows being run (packet-ins name it; read only then,
    /// not for every batch).
    rule: Option<&'a crate::flow::Rule>,
    pmd: usize,
    tun: &'a mut TunnelCtx,
    mtus: &'a [u16],
    keys: &'a [FlowKey; BURST],
    /// The burst's runs (see [`Engine::stage_emc`]): packets with the key of
    /// the packet `run_prev` names.
    runs: u64,
    run_prev: &'a [u8; BURST],
    /// Source ports the exact-match cache had (see [`EmcValue::sport`]),
    /// for the packets of the `sport_known` bits (0: none cached).
    sports: &'a [u16; BURST],
    sport_known: u64,
    /// Packets without a flow key (looked up by frame key, see
    /// `Engine::own_keys`): a source port not cached comes from the frame.
    unparsed: u64,
    /// The burst's frame keys (those of the `unparsed` packets, or of the
    /// packet `run_prev` names for a run).
    frames: &'a [FrameKey; BURST],
    in_ports: &'a [u32; BURST],
    now: u64,
    hz: u64,
}

impl<I: Io> Exec<'_, I> {
    /// Sends packet `i` (`m`) out of `port`: a physical port (MTU checked) or
    /// a tunnel port (encapsulated towards its uplink).
    fn send(&mut self, port: u32, m: I::Pkt, vni: Option<u32>, i: usize) {
        let phys = self.mtus.len() as u32;
        if port < phys {
            let mtu = self.mtus[port as usize];
            let frame = m.data();
            // Headers are at least 14 bytes: most frames pass without reading them.
            if frame.len() > usize::from(mtu) + 14 && frame.len() - l2_len(frame) > usize::from(mtu) {
                if !self.tun.is_uplink(port) {
                    // Towards a VF: its receive drops the frame, as it
                    // does behind the e-switch; no ICMP from a VM's port.
                    self.counters.drop(DropReason::Mtu, 1);
                    self.counters.port(port as usize, PortCounter::TxDropped, 1);
                    return;
                }
                let l2 = l2_len(frame);
                self.too_big(m, usize::from(mtu), l2, i, port);
                return;
            }
            self.io.send(port, m, self.counters);
            return;
        }
        // A copy (a later action still needs the original): alone.
        let mut one: Packets<I::Pkt> = [const { None }; BURST];
        one[i] = Some(m);
        self.send_tunnel_many(port, vni, &mut one, 1 << i);
    }

    /// Sends the packets of `members` out of physical port `port`: all at
    /// once, except those longer than the port's MTU + 14 (a length within
    /// that needs no header walk), which are checked one by one.
    fn send_all(&mut self, port: u32, pkts: &mut Packets<I::Pkt>, members: u64, vni: Option<u32>) {
        let long = match self.mtus.get(port as usize) {
            Some(&mtu) => self.io.send_all(port, pkts, members, usize::from(mtu) + 14, self.counters),
            None => members,
        };
        for i in Bits(long) {
            if let Some(m) = pkts[i].take() {
                self.send(port, m, vni, i);
            }
        }
    }

    /// Encapsulates the packets of `members` for tunnel port `port` and
    /// queues them on the uplink all at once; the encapsulation is resolved
    /// once for all of them (a batch shares port and VNI).
    fn send_tunnel_many(&mut self, port: u32, vni: Option<u32>, pkts: &mut Packets<I::Pkt>, members: u64) {
        let r = match self.tun.resolve(port, vni) {
            Ok(r) => std::rc::Rc::clone(r),
            Err(e) => {
                let e = *e;
                self.unresolved(e, take_members(pkts, members));
                return;
            }
        };
        let overhead = r.template.overhead();
        let (mut out, mut bytes) = (0u64, 0u64);
        // A packet with the key of the one encapsulated just before it (a
        // run) has its inner flow, so its source port: (the slot holding
        // that key, the port).
        let mut last: Option<(usize, u16)> = None;
        // The source ports of the packets with frame keys of their own
        // (megaflow runs, and the first packet of each run), hashed in a
        // pass of their own: independent hashes overlap there, where the
        // encapsulation loop would wait on each.
        let own = members & self.unparsed & !self.runs & !self.sport_known;
        let mut ports = [0u16; BURST];
        for i in Bits(own) {
            ports[i] = self.frames[i].src_port();
        }
        let mtu = usize::from(r.uplink_mtu);
        for i in Bits(members) {
            let Some(m) = pkts[i].as_mut() else { continue };
            let len = m.data().len();
            if len + overhead - 14 > mtu || !m.is_contiguous() {
                self.not_encapsulated(pkts, i, overhead, &r);
                continue;
            }
            // A run's key is in the slot `run_prev` names (its own slot may
            // not hold it: see `Engine::own_keys`).
            let src = if self.runs & (1 << i) != 0 { usize::from(self.run_prev[i]) % BURST } else { i };
            let sport = match last {
                _ if self.sport_known & (1 << i) != 0 && self.sports[i] != 0 => self.sports[i],
                _ if own & (1 << i) != 0 => ports[i],
                Some((prev, sport)) if prev == src => sport,
                // The same port as from its key (see `src_port_of`), from
                // its frame key (a run's is its first packet's).
                _ if self.unparsed & (1 << i) != 0 => self.frames[src].src_port(),
                _ => src_port_of(&self.keys[src], m.data()),
            };
            last = Some((src, sport));
            if r.template.encap(m, sport).is_err() {
                self.counters.drop(DropReason::ActionError, 1);
                pkts[i] = None;
                continue;
            }
            out |= 1 << i;
            // Contiguous: its length is the segment's.
            bytes += (len + overhead) as u64;
        }
        // One lookup of the uplink's buffer for the batch, not one a packet.
        // (Their length was checked against the uplink's MTU above.)
        self.io.send_all(r.uplink, pkts, out, usize::MAX, self.counters);
        let sent = u64::from(out.count_ones());
        self.counters.add(Counter::Encapsulated, sent);
        self.counters.port(port as usize, PortCounter::TxPackets, sent);
        self.counters.port(port as usize, PortCounter::TxBytes, bytes);
    }

    /// Packet `i` to the controller: its first `max_len` bytes queued for
    /// the OpenFlow channel (a copy unless the action is the last).
    fn punt(&mut self, pkts: &mut Packets<I::Pkt>, i: usize, max_len: u16, last: bool) {
        let Some(m) = pkts[i].as_ref() else { return };
        if !last {
            self.counters.add(Counter::Copies, 1);
        }
        let data = m.data();
        let (pmd, in_port, rule, total_len) = (self.pmd, self.in_ports[i], self.rule.map(|r| r.id), m.len() as u32);
        let n = data.len().min(usize::from(max_len));
        if self.punt.offer(self.now, self.hz, || PacketIn { pmd, in_port, rule, total_len, data: data[..n].to_vec() }) {
            self.counters.add(Counter::ToController, 1);
        } else {
            self.counters.drop(DropReason::ControllerLimit, 1);
        }
        if last {
            pkts[i] = None;
        }
    }

    /// Packet `i` was not encapsulated: it is not in one segment
    /// (encapsulation, and the IPv6 UDP checksum, need the whole frame in
    /// one; the pool's buffers are sized for that), or it would exceed the
    /// uplink's MTU with the outer headers (`too_big`).
    #[cold]
    #[inline(never)]
    fn not_encapsulated(&mut self, pkts: &mut Packets<I::Pkt>, i: usize, overhead: usize, r: &Resolved) {
        let Some(m) = pkts[i].take() else { return };
        if !m.is_contiguous() {
            self.counters.drop(DropReason::ActionError, 1);
            return;
        }
        let l2 = l2_len(m.data());
        // The largest inner IP packet that fits.
        let inner_mtu = (usize::from(r.uplink_mtu) + 14).saturating_sub(overhead + l2);
        self.too_big(m, inner_mtu, l2, i, r.uplink);
    }

    /// `n` packets could not be encapsulated: count them; for a missing
    /// neighbour, ask for it (rate-limited).
    fn unresolved(&mut self, e: Unresolved, n: u64) {
        match e {
            Unresolved::NoNeighbour { next_hop, port: uplink, local } => {
                self.counters.drop(DropReason::NeighbourMiss, n);
                if let Some(len) = self.tun.solicit(next_hop, uplink, local, self.now, self.hz) {
                    if let Some(mut req) = self.io.alloc() {
                        if req.replace(&self.tun.scratch[..len]) {
                            self.counters.add(Counter::NeighRequestsSent, 1);
                            self.io.send(uplink, req, self.counters);
                        }
                    }
                }
            }
            Unresolved::NoVni => self.counters.drop(DropReason::NoVni, n),
            Unresolved::NoRoute | Unresolved::NoLocalAddress => self.counters.drop(DropReason::NoRoute, n),
        }
    }

    /// A packet too big for `egress`: answer an IPv4 DF packet with ICMP
    /// "fragmentation needed" and an IPv6 one with "packet too big" (sent
    /// back out of its ingress port); otherwise drop. Counted as `mtu`.
    fn too_big(&mut self, mut m: I::Pkt, mtu: usize, l2: usize, i: usize, egress: u32) {
        self.counters.drop(DropReason::Mtu, 1);
        self.counters.port(egress as usize, PortCounter::TxDropped, 1);
        let ingress = self.in_ports[i];
        if ingress as usize >= self.mtus.len() {
            return; // arrived through a tunnel: no way back for ICMP here
        }
        let frame = m.data();
        let eth_type = u16::from_be_bytes([frame[l2 - 2], frame[l2 - 1]]);
        let mtu16 = mtu.min(usize::from(u16::MAX)) as u16;
        let len = match eth_type {
            ETH_TYPE_IPV4 if frame.len() > l2 + 6 && frame[l2 + 6] & 0x40 != 0 => {
                icmp4_frag_needed(frame, l2, mtu16, &mut self.tun.scratch)
            }
            ETH_TYPE_IPV6 => icmp6_packet_too_big(frame, l2, mtu.max(1280) as u32, &mut self.tun.scratch),
            _ => None,
        };
        if let Some(len) = len {
            if m.replace(&self.tun.scratch[..len]) {
                self.counters.add(Counter::IcmpTooBigSent, 1);
                self.io.send(ingress, m, self.counters);
            }
        }
    }
}

/// Runs `actions` on the packets of one batch (`members` bits of `pkts`).
fn execute<I: Io>(actions: &[Action], pkts: &mut Packets<I::Pkt>, members: u64, x: &mut Exec<'_, I>) {
    let last = actions.len().saturating_sub(1);
    let mut vni = None;
    let phys = x.mtus.len();
    // One action over the whole group at a time: the dispatch is per action,
    // not per packet.
    for (ai, action) in actions.iter().enumerate() {
        match action {
            Action::SetTunnel(v) => vni = Some(*v),
            Action::Output(port) if ai == last && *port as usize >= phys => {
                x.send_tunnel_many(*port, vni, pkts, members);
            }
            Action::Output(port) if ai == last => x.send_all(*port, pkts, members, vni),
            Action::Output(port) => {
                for i in Bits(members) {
                    let Some(m) = pkts[i].as_ref() else { continue };
                    x.counters.add(Counter::Copies, 1);
                    match x.io.copy(m) {
                        Some(copy) => x.send(*port, copy, vni, i),
                        None => x.counters.drop(DropReason::NoMbuf, 1),
                    }
                }
            }
            Action::Drop => {
                for i in Bits(members) {
                    if pkts[i].take().is_some() {
                        x.counters.drop(DropReason::RuleDrop, 1);
                    }
                }
            }
            Action::Controller { max_len } => {
                for i in Bits(members) {
                    x.punt(pkts, i, *max_len, ai == last);
                }
            }
            edit => {
                for i in Bits(members) {
                    let Some(m) = pkts[i].as_mut() else { continue };
                    let result = match edit {
                        Action::PopVlan => actions::pop_vlan(m).map(|_| ()),
                        Action::PushVlan { tpid, tci } => actions::push_vlan(m, *tpid, *tci),
                        Action::SetVlanVid(vid) => actions::set_vlan_vid(m, *vid),
                        Action::SetEthSrc(mac) => actions::set_eth_src(m, *mac),
                        Action::SetEthDst(mac) => actions::set_eth_dst(m, *mac),
                        Action::SetTunnel(_)
                        | Action::Output(_)
                        | Action::InPort
                        | Action::Drop
                        | Action::Controller { .. } => Ok(()),
                    };
                    if result.is_err() {
                        x.counters.drop(DropReason::ActionError, 1);
                        pkts[i] = None;
                    }
                }
            }
        }
    }
}
