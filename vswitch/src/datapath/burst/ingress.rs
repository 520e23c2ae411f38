//! Ingress: every packet parsed into the burst's key array (the key hashed
//! by the parser), or, for the exact-match cache, its frame key read from
//! its bytes (the flow key built later, only if the cache misses); on
//! uplinks the VTEP answers ARP/ND for its addresses and decapsulates VXLAN
//! sent to them; runs of one key found on the way.

use super::engine::*;
use super::memo::{DecapMemo, FrameMemo, MaskMemo, RunMemo};
use super::stages::l2_len;
use crate::actions::{vxlan, PacketBuf};
use crate::datapath::counters::{Counter, DropReason, PortCounter};
use crate::datapath::tunnel::{NeighbourAction, Special};
use crate::flow::Bits;
use crate::packet::parse::{parse_hashed_fast, FrameKey, FrameMask, ParseError, TunnelMeta, VxlanBytes, ETH_TYPE_IPV4};

impl Engine {
    /// The frame mask for this burst (see [`MaskMemo`]): made again only
    /// when the set of the live flows' masks has changed.
    #[inline(always)]
    pub(super) fn frame_mask(&mut self) -> Option<FrameMask> {
        let changes = self.flows.mask_changes();
        if self.frame_mask.0 != changes {
            self.frame_mask = (changes, self.flows.sole_mask().map(|(id, m)| (id, FrameMask::of(m))));
        }
        self.frame_mask.1.map(|(_, m)| m)
    }

    /// Parses every packet into the burst's key array; on uplinks the VTEP
    /// first answers ARP/ND for its addresses and decapsulates VXLAN sent to
    /// them. With `framing` other than [`Framing::Parse`], a packet from
    /// another port that the parser's fast path would take gets its frame
    /// key instead (the `framed` and `unparsed` bits; with its hash for
    /// [`Framing::Lookup`]: the exact-match stage looks it up by that).
    /// Returns the packets left to classify.
    pub fn stage_ingress<I: Io>(
        &mut self,
        in_port: u32,
        pkts: &mut Packets<I::Pkt>,
        n: usize,
        io: &mut I,
        framing: Framing,
    ) -> u64 {
        let vtep = self.tun.is_uplink(in_port);
        self.burst_len = n;
        self.live_bytes = None;
        self.swept = 0;
        // Port numbers above 16 bits have no frame keys.
        if framing != Framing::Parse && !vtep && in_port <= u32::from(u16::MAX) {
            return self.ingress_framed(in_port, pkts, n, framing == Framing::Lookup);
        }
        let mut pending: u64 = 0;
        let mut rx_bytes = 0u64;
        let rx_limit = if vtep { 0 } else { self.rx_limit(in_port) };
        self.mask_runs = 0;
        let mut memo = RunMemo::new();
        let mut decap = DecapMemo::new();
        let mut runs = 0u64;
        for i in 0..n {
            self.flow_of[i] = None;
            let Some(m) = pkts[i].as_mut() else { continue };
            let len = m.len();
            rx_bytes += len as u64;
            self.lens[i] = len as u32;
            if self.above_mtu(rx_limit, m.data()) {
                pkts[i] = None;
                continue;
            }
            let from = if vtep {
                match self.uplink_packet(in_port, i, pkts, io, &mut decap, &mut runs) {
                    Some(from) => from,
                    None => continue,
                }
            } else if self.parse_one(in_port, i, pkts, &mut memo, &mut runs) {
                in_port
            } else {
                continue;
            };
            self.in_ports[i] = from;
            pending |= 1 << i;
        }
        self.ingress_done(in_port, rx_bytes, pending, runs, 0)
    }

    /// [`stage_ingress`](Self::stage_ingress) for a burst from a port that
    /// is not an uplink, with frame keys: a loop of its own (without the
    /// uplink's work in it, the frame key path keeps its values in
    /// registers). A frame the parser's fast path would take gets its frame
    /// key, and its hash when the exact-match cache is looked up (`lookup`),
    /// or joins the run of the packet before it with that key, or of the
    /// last looked-up packet's megaflow; any other is parsed. Without
    /// `lookup` frame keys serve only megaflow runs: once the check gives
    /// up, the rest of the burst is parsed.
    fn ingress_framed<P: PacketBuf>(&mut self, in_port: u32, pkts: &mut Packets<P>, n: usize, lookup: bool) -> u64 {
        let mut pending: u64 = 0;
        let mut rx_bytes = 0u64;
        // Bytes of the packets dropped here (the rest's are the flows').
        let mut lost = 0u64;
        let rx_limit = self.rx_limit(in_port);
        let mut memo = RunMemo::new();
        let mut frame_memo = FrameMemo::new();
        let mut mask_memo = MaskMemo::new(self.frame_mask());
        let mut runs = 0u64;
        let mut framed = 0u64;
        let mut mask_runs = 0u64;
        let end = n.min(BURST);
        let mut next = 0;
        while next < end {
            let i = next;
            next += 1;
            self.flow_of[i] = None;
            let Some(m) = pkts[i].as_ref() else { continue };
            let f = m.data();
            rx_bytes += f.len() as u64;
            self.lens[i] = f.len() as u32;
            if self.above_mtu(rx_limit, f) {
                lost += f.len() as u64;
                pkts[i] = None;
                continue;
            }
            if let Some(j) = frame_memo.check(f, in_port) {
                // A run of frame keys: no parse, no hash, no error possible
                // (the fast path would take the frame). The packets after
                // it that continue the run are taken in a loop of their own.
                let (to, bits, bytes) = self.sweep_run(pkts, i, end, j as u8, in_port, rx_limit);
                framed |= bits;
                runs |= bits;
                pending |= bits;
                rx_bytes += bytes;
                next = to;
            } else if let Some(fk) = (lookup || mask_memo.checking()).then(|| FrameKey::of(f, in_port)).flatten() {
                framed |= 1 << i;
                self.frames[i] = fk;
                if let Some((j, key, mask)) = mask_memo.check(&fk) {
                    // The megaflow of packet j: no hash, no lookup. The
                    // packets after it of that megaflow are taken in a loop
                    // of their own.
                    // With the packets' source ports when its flow is
                    // expected to encapsulate (see `swept`).
                    let of = (&key, &mask);
                    let (to, bits, bytes) = if self.sweep_sports.1 {
                        let taken = self.sweep_mask::<P, true>(pkts, i, end, j as u8, of, in_port, rx_limit);
                        // Packet i keeps its frame key (stored above).
                        self.swept |= taken.1 & !(1 << i);
                        taken
                    } else {
                        self.sweep_mask::<P, false>(pkts, i, end, j as u8, of, in_port, rx_limit)
                    };
                    framed |= bits;
                    mask_runs |= bits;
                    pending |= bits;
                    rx_bytes += bytes;
                    next = to;
                } else {
                    if lookup {
                        // Looked up by its bytes, without a parse.
                        self.hashes[i] = fk.hash();
                    }
                    mask_memo.took(i, fk);
                }
                frame_memo.took(i, fk);
            } else if !self.parse_one(in_port, i, pkts, &mut memo, &mut runs) {
                lost += u64::from(self.lens[i]);
                continue;
            }
            self.in_ports[i] = in_port;
            pending |= 1 << i;
        }
        self.mask_runs = mask_runs & pending;
        self.swept &= pending;
        self.live_bytes = Some(rx_bytes - lost);
        self.ingress_done(in_port, rx_bytes, pending, runs, framed)
    }

    /// Packet `i`, found a run of packet `j`'s frame key, and the packets
    /// after it up to `end` that continue the run, in a loop that does
    /// nothing else: (the first packet it left for ingress's loop, the
    /// run's packets, their bytes). It leaves the packets that are gone, or
    /// longer than `rx_limit` lets through without a check, or not of the
    /// run (ingress's loop checks those again).
    #[inline(never)]
    fn sweep_run<P: PacketBuf>(
        &mut self,
        pkts: &Packets<P>,
        i: usize,
        end: usize,
        j: u8,
        in_port: u32,
        rx_limit: usize,
    ) -> (usize, u64, u64) {
        let key = self.frames[usize::from(j) % BURST];
        // Packet i's bytes are counted by the caller.
        let (mut bits, mut bytes) = (1u64 << i, 0);
        self.run_prev[i] = j;
        self.in_ports[i] = in_port;
        let mut k = i + 1;
        while k < end {
            let Some(m) = pkts[k].as_ref() else { break };
            let f = m.data();
            if (rx_limit != 0 && f.len() > rx_limit + 14) || !key.same_frame(f, in_port) {
                break;
            }
            self.flow_of[k] = None;
            self.lens[k] = f.len() as u32;
            self.run_prev[k] = j;
            self.in_ports[k] = in_port;
            bits |= 1 << k;
            bytes += f.len() as u64;
            k += 1;
        }
        (k, bits, bytes)
    }

    /// Packet `i`, found of packet `j`'s megaflow (`of`: that packet's frame
    /// key and the frame mask), and the packets after it up to `end` of that
    /// megaflow too, in a loop that does nothing else: as
    /// [`sweep_run`](Self::sweep_run). Each has its own outer source port:
    /// with `SPORTS` (the megaflow is expected to encapsulate, see
    /// `sweep_sports`) that of the packets after `i` is computed here, from
    /// the frame key in registers (the key is not kept: see `swept`);
    /// otherwise the key is kept for egress. Each variant is a function of
    /// its own: compiled as one, with the choice inside, the forwarding
    /// variant came out 3 instructions a packet longer.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn sweep_mask<P: PacketBuf, const SPORTS: bool>(
        &mut self,
        pkts: &Packets<P>,
        i: usize,
        end: usize,
        j: u8,
        of: (&FrameKey, &FrameMask),
        in_port: u32,
        rx_limit: usize,
    ) -> (usize, u64, u64) {
        let (last, mask) = of;
        // Packet i's bytes are counted by the caller.
        let (mut bits, mut bytes) = (1u64 << i, 0);
        self.run_prev[i] = j;
        self.in_ports[i] = in_port;
        let mut k = i + 1;
        while k < end {
            let Some(m) = pkts[k].as_ref() else { break };
            let f = m.data();
            if rx_limit != 0 && f.len() > rx_limit + 14 {
                break;
            }
            let Some(fk) = FrameKey::of(f, in_port).filter(|fk| fk.eq_masked(last, mask)) else { break };
            if SPORTS {
                self.sports[k] = fk.src_port();
            } else {
                self.frames[k] = fk;
            }
            self.flow_of[k] = None;
            self.lens[k] = f.len() as u32;
            self.run_prev[k] = j;
            self.in_ports[k] = in_port;
            bits |= 1 << k;
            bytes += f.len() as u64;
            k += 1;
        }
        (k, bits, bytes)
    }

    /// A representor's VF MTU, the longest frame (without its Ethernet and
    /// VLAN headers) it can send; 0 for no limit.
    #[inline(always)]
    fn rx_limit(&self, in_port: u32) -> usize {
        self.mtus.get(in_port as usize).map_or(0, |&m| usize::from(m))
    }

    /// Whether frame `f` is above `rx_limit` (see [`rx_limit`](Self::rx_limit)):
    /// a VF cannot send it; its e-switch port drops it (counted here).
    #[inline(always)]
    fn above_mtu(&mut self, rx_limit: usize, f: &[u8]) -> bool {
        let above = rx_limit != 0 && f.len() > rx_limit + 14 && f.len() - l2_len(f) > rx_limit;
        if above {
            self.counters.drop(DropReason::RxMtu, 1);
        }
        above
    }

    /// Packet `i` from `in_port` parsed into its key and hash, or found to
    /// have the key of the last one parsed (a run: `runs`, `run_prev`; its
    /// key stays that packet's until a stage needs it, see
    /// [`own_keys`](Self::own_keys)). `false`: it does not parse (dropped,
    /// counted).
    #[inline(always)]
    fn parse_one<P: PacketBuf>(
        &mut self,
        in_port: u32,
        i: usize,
        pkts: &mut Packets<P>,
        memo: &mut RunMemo,
        runs: &mut u64,
    ) -> bool {
        let Some(m) = pkts[i].as_ref() else { return false };
        let layout = if let Some((j, layout)) = memo.check(m.data()) {
            // Found without a parse, a hash or a key compare.
            *runs |= 1 << i;
            self.run_prev[i] = j as u8;
            layout
        } else {
            let (layout, hash, fast) = parse_hashed_fast(m.data(), in_port, None, &mut self.keys[i]);
            self.hashes[i] = hash;
            memo.parsed(i, fast, m.data());
            layout
        };
        if let Some(e) = layout.error {
            self.unparsed(e, pkts, i);
            return false;
        }
        true
    }

    /// The end of ingress: the received bytes counted, the burst's bit
    /// masks set, the runs the parse did not find looked for. Returns
    /// `pending`.
    #[inline(always)]
    fn ingress_done(&mut self, in_port: u32, rx_bytes: u64, pending: u64, runs: u64, framed: u64) -> u64 {
        self.counters.port(in_port as usize, PortCounter::RxBytes, rx_bytes);
        // A framed run's key is its own frame's (parsed when needed).
        self.borrowed = runs & pending & !framed;
        self.framed = framed & pending;
        self.unparsed = self.framed;
        self.find_runs(pending & !framed, runs);
        // Runs name an earlier packet of their key (a run's own first, or
        // one of its runs), megaflow runs a packet looked up by itself:
        // with one packet of its own, all are of its flow.
        let own = pending & !(self.runs | self.mask_runs);
        self.lone = if own.count_ones() == 1 { own.trailing_zeros() as usize } else { BURST };
        pending
    }

    /// Packet `i` does not parse: dropped, counted by its reason.
    fn unparsed<P>(&mut self, e: ParseError, pkts: &mut Packets<P>, i: usize) {
        self.counters.parse_error(e);
        self.counters.drop(DropReason::ParseError, 1);
        pkts[i] = None;
    }

    /// Gives the packets of `mask` their own flow key and its hash, for the
    /// stages after the exact-match cache, which look keys up by index:
    /// framed packets have their frame parsed (the fast path takes it; a
    /// swept one gets its frame key back too, for the cache's insertion),
    /// and those whose key is still their run's first packet's (found at
    /// ingress) a copy of it.
    #[inline]
    pub(super) fn own_keys<P: PacketBuf>(&mut self, mask: u64, pkts: &Packets<P>) {
        for i in Bits(mask & self.unparsed) {
            if let Some(m) = pkts[i].as_ref() {
                let (layout, hash, fast) = parse_hashed_fast(m.data(), self.in_ports[i], None, &mut self.keys[i]);
                debug_assert!(fast && layout.error.is_none(), "a frame key for a frame the fast path refuses");
                self.hashes[i] = hash;
            }
        }
        self.unparsed &= !mask;
        for i in Bits(mask & self.swept) {
            // The sweep made it from these same bytes: it is there.
            match pkts[i].as_ref().and_then(|m| FrameKey::of(m.data(), self.in_ports[i])) {
                Some(fk) => self.frames[i] = fk,
                None => self.framed &= !(1 << i),
            }
        }
        self.swept &= !mask;
        for i in Bits(mask & self.borrowed) {
            let j = usize::from(self.run_prev[i]) % BURST;
            self.keys[i] = self.keys[j];
            self.hashes[i] = self.hashes[j];
        }
        self.borrowed &= !mask;
    }

    /// Packets with the key of the packet kept before them (same hash first,
    /// then every word) join its run: they take its flow in the exact-match
    /// stage without a lookup of their own. `runs`: those ingress found
    /// already (from their bytes, see `KeyBytes`; their key is in the slot
    /// `run_prev` names). `pending`: the packets with flow keys. A pass of
    /// its own after the parse: comparing a key the parser has just stored
    /// in 8-byte pieces with 16-byte loads stalls until the stores reach
    /// the cache.
    #[inline]
    fn find_runs(&mut self, pending: u64, mut runs: u64) {
        // The slot holding the previous packet's key.
        let mut last = BURST;
        for i in Bits(pending) {
            if runs & (1 << i) != 0 {
                // Found at ingress already.
                last = usize::from(self.run_prev[i]) % BURST;
                continue;
            }
            if last < BURST && self.hashes[last] == self.hashes[i] && self.keys[last].same(&self.keys[i]) {
                runs |= 1 << i;
                self.run_prev[i] = last as u8;
            }
            last = i;
        }
        self.runs = runs;
    }

    /// Ingress for packet `i` of uplink `in_port`: `None` when the packet
    /// was consumed (answered, learned from, dropped), else the port to
    /// classify it as coming from (a tunnel port after decapsulation). A
    /// VXLAN packet with the outer headers of the last one decapsulated
    /// (see `VxlanBytes`) skips their parse and lookups.
    fn uplink_packet<I: Io>(
        &mut self,
        in_port: u32,
        i: usize,
        pkts: &mut Packets<I::Pkt>,
        io: &mut I,
        d: &mut DecapMemo,
        runs: &mut u64,
    ) -> Option<u32> {
        let m = pkts[i].as_mut()?;
        if let Some((bytes, t, meta)) = d.outer {
            if let Some(end) = bytes.same_outer(m.data()) {
                if vxlan::decap_same_outer(m, end).is_err() {
                    self.counters.drop(DropReason::DecapError, 1);
                    pkts[i] = None;
                    return None;
                }
                return self.decapsulated(i, t, meta, pkts, d, runs);
            }
            d.outer_miss();
        }
        // Most packets here are VXLAN to the VTEP: the outer key's hash
        // would go unused (the inner key's is what counts).
        let (layout, _, fast) = parse_hashed_fast(m.data(), in_port, None, &mut self.keys[i]);
        if let Some(e) = layout.error {
            self.unparsed(e, pkts, i);
            return None;
        }
        match self.tun.special(&self.keys[i], in_port) {
            Special::None => {
                self.hashes[i] = self.keys[i].hash();
                Some(in_port)
            }
            kind @ (Special::Arp | Special::Nd) => {
                let l3 = usize::from(layout.l3_offset);
                let action = match kind {
                    Special::Arp => self.tun.arp(m.data(), l3, in_port),
                    _ => self.tun.nd(m.data(), l3, in_port),
                };
                match action {
                    NeighbourAction::PassOn => {
                        self.hashes[i] = self.keys[i].hash();
                        Some(in_port)
                    }
                    NeighbourAction::Consumed => {
                        pkts[i] = None;
                        self.counters.add(Counter::NeighConsumed, 1);
                        None
                    }
                    NeighbourAction::Reply(len) => {
                        self.counters.add(Counter::NeighConsumed, 1);
                        if let Some(mut m) = pkts[i].take() {
                            if m.replace(&self.tun.scratch[..len]) {
                                self.counters.add(Counter::NeighRepliesSent, 1);
                                io.send(in_port, m, &mut self.counters);
                            }
                        }
                        None
                    }
                }
            }
            Special::Vxlan(udp_port) => {
                // The outer bytes a later packet may share, read before the
                // decapsulation moves the frame's start (the fast path's
                // IPv4 frames only).
                let bytes =
                    if fast && self.keys[i].eth_type() == ETH_TYPE_IPV4 { VxlanBytes::of(m.data()) } else { None };
                let outer = layout.with_key(self.keys[i]);
                let Ok(meta) = vxlan::decap_parsed(m, &outer, udp_port) else {
                    self.counters.drop(DropReason::DecapError, 1);
                    pkts[i] = None;
                    return None;
                };
                let Some(t) = self.tun.tunnel_for(udp_port, meta.src, meta.dst, meta.vni) else {
                    self.counters.drop(DropReason::UnknownTunnel, 1);
                    pkts[i] = None;
                    return None;
                };
                d.decapsulated(bytes.map(|b| (b, t, meta)));
                self.decapsulated(i, t, meta, pkts, d, runs)
            }
        }
    }

    /// Packet `i`, decapsulated, came through tunnel port `t` with `meta`:
    /// its inner key (a run's, when its inner bytes are those of the last
    /// inner packet parsed through the same tunnel), counted as received
    /// there.
    #[inline(always)]
    fn decapsulated<P: PacketBuf>(
        &mut self,
        i: usize,
        t: u32,
        meta: TunnelMeta,
        pkts: &mut Packets<P>,
        d: &mut DecapMemo,
        runs: &mut u64,
    ) -> Option<u32> {
        let m = pkts[i].as_mut()?;
        let inner = &mut d.inner;
        if let Some((j, _)) = inner.check(m.data()) {
            *runs |= 1 << i;
            self.run_prev[i] = j as u8;
        } else {
            let (layout, hash, fast) = parse_hashed_fast(m.data(), t, Some(&meta), &mut self.keys[i]);
            self.hashes[i] = hash;
            if let Some(e) = layout.error {
                self.unparsed(e, pkts, i);
                return None;
            }
            inner.parsed(i, fast, m.data());
        }
        self.counters.add(Counter::Decapsulated, 1);
        self.counters.port(t as usize, PortCounter::RxPackets, 1);
        self.lens[i] = m.len() as u32;
        self.counters.port(t as usize, PortCounter::RxBytes, u64::from(self.lens[i]));
        Some(t)
    }
}
