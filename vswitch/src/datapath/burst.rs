//! The burst engine: what a PMD does to a burst of packets, as a sequence of
//! named stages, with no DPDK. It is generic over [`Io`] (where packets go
//! out, how they are copied) and over the packet type (an mbuf in the
//! datapath, a `VecPacket` in tests), so every stage and whole bursts are
//! tested on plain buffers.
//!
//! Stages, in order:
//! 1. [`Engine::stage_hardware`]: the model e-switch, when one is configured,
//!    takes the packets its rules match (as a NIC would before the
//!    representor) and sends them itself;
//! 2. [`Engine::stage_ingress`]: parse; on uplinks the VTEP answers ARP/ND
//!    for its addresses and decapsulates VXLAN sent to them;
//! 3. [`Engine::stage_emc`]: the exact-match cache, in three passes so cache
//!    misses overlap;
//! 4. [`Engine::stage_megaflow`]: the megaflow classifier for the misses, as
//!    one batch;
//! 5. [`Engine::stage_upcall`]: the rule table for the rest, within the
//!    iteration's upcall budget, installing megaflows;
//! 6. [`group`]: packets grouped by flow;
//! 7. [`Engine::stage_execute`]: each group's actions run once, per action
//!    across the group.

use super::counters::{Counter, DropReason, Local, PortCounter};
use super::flows::{EventBatch, Flow, FlowEvent, FlowExtra, FlowHandle, FlowInfo, FlowTable, RemoveReason};
use super::tunnel::{NeighbourAction, Special, TunnelCtx};
use crate::actions::control_packets::{icmp4_frag_needed, icmp6_packet_too_big};
use crate::actions::{self, vxlan, Action, PacketBuf};
use crate::flow::hash::hash_key;
pub use crate::flow::Bits;
use crate::flow::{Emc, Megaflows, RuleTable, Smc};
use crate::packet::key::inner_flow;
use crate::packet::key::VLAN_PRESENT;
use crate::packet::parse::{parse_into, ETH_TYPE_IPV4, ETH_TYPE_IPV6, ETH_TYPE_QINQ, ETH_TYPE_VLAN};
use crate::packet::{Field, FlowKey, FlowMask};
use crate::underlay::{Underlay, Unresolved};
use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};
use offload::entropy::{vxlan_src_port, InnerFlow};
use offload::model::{ModelSwitch, Verdict};
use std::sync::Arc;
use std::time::Duration;

/// Packets a burst holds at most (the size of the per-burst arrays).
pub const BURST: usize = 64;
/// Packets taken per rx poll.
pub const RX_BURST: usize = 32;

/// A burst of packets: slots taken out (`None`) as stages consume them.
pub type Packets<P> = [Option<P>; BURST];

/// Where the engine's packets go and where copies come from.
pub trait Io {
    type Pkt: PacketBuf;

    /// Queues `pkt` for physical port `port` (counted there; a full queue
    /// drops and counts `tx_full`).
    fn send(&mut self, port: u32, pkt: Self::Pkt, counters: &mut Local);

    /// A copy of `pkt` (several outputs), or `None` without buffers.
    fn copy(&mut self, pkt: &Self::Pkt) -> Option<Self::Pkt>;

    /// An empty packet (ARP requests), or `None` without buffers.
    fn alloc(&mut self) -> Option<Self::Pkt>;
}

/// A flow's actions and, when they deliver nothing, the counted reason.
type FlowActions = (Arc<[Action]>, Option<DropReason>);

/// (rule, input port) action lists remembered per PMD (then forgotten at once).
const ACTION_LISTS_MAX: usize = 4096;

/// Megaflow masks from which the signature-match cache is used.
const SMC_MIN_MASKS: usize = 3;

/// Settings every PMD gets.
#[derive(Debug, Clone)]
pub struct PmdConfig {
    pub upcall_budget: usize,
    pub emc_entries: usize,
    /// Signature-match cache entries (0: off).
    pub smc_entries: usize,
    /// Insert into the exact-match cache after 1 in N megaflow hits.
    pub emc_insert_inv_prob: u64,
    pub max_flows: usize,
    pub idle_timeout: Duration,
    /// How long a flow the offload manager saw hit in hardware is kept from
    /// eviction and pressure expiry (its software `used` time only moves on
    /// the manager's counter queries): twice the query interval; zero
    /// without offload.
    pub hw_grace: Duration,
}

/// A table above this share of `max_flows` is under pressure: idle flows
/// expire after [`PRESSURE_IDLE`] instead of the idle timeout (as Open
/// vSwitch's revalidator does above its flow limit).
const PRESSURE_NUM: usize = 3;
const PRESSURE_DEN: usize = 4;
const PRESSURE_IDLE: Duration = Duration::from_millis(100);
/// Flows sampled at random when a full table makes room; the one idle
/// longest goes (approximate LRU at O(1) per install).
const EVICT_SAMPLE: usize = 16;

/// What a revalidation did.
#[derive(Debug, Clone, Copy, Default)]
pub struct RevalidateReport {
    pub kept: usize,
    pub removed: usize,
    /// The offload manager did not confirm in time that the hardware rules
    /// of the flows removed are gone (they go when it catches up).
    pub offload_pending: bool,
}

/// A revalidation in progress: the next slot to check and the tally so far
/// (flows the sweep checked and those packets had checked first).
struct Sweep {
    cursor: usize,
    report: RevalidateReport,
}

/// What the engine starts with.
pub struct EngineSetup {
    pub index: usize,
    pub config: PmdConfig,
    pub table: Arc<RuleTable>,
    pub events: Option<Sender<EventBatch>>,
    /// Whether `events` also gets per-flow hit deltas (the offload manager
    /// does not use them: it counts hardware hits itself).
    pub hit_reports: bool,
    pub underlay: Arc<Underlay>,
    /// Per physical port: whether it is an uplink (VTEP duties).
    pub uplink: Vec<bool>,
    /// Per physical port: its MTU.
    pub mtus: Vec<u16>,
    /// Tunnel ports (numbered after the physical ports).
    pub tunnels: usize,
    /// Ticks per second of the `now` values the engine is given.
    pub hz: u64,
    /// The model e-switch in front of the software path, if configured.
    pub hardware: Option<Hardware>,
    /// Report flows that keep a rate (hot-flow offload policy), if set.
    pub hot: Option<HotPolicy>,
}

/// The (model) e-switch stage: the model and how its ethdev port ids map to
/// the switch's port numbers.
pub struct Hardware {
    pub model: Arc<ModelSwitch>,
    /// Per physical port: its ethdev port id.
    pub ethdev: Vec<u16>,
    /// Per ethdev port id: the physical port number.
    pub port_of: Vec<Option<u32>>,
}

/// When a flow counts as hot: at least `min_pps` for `hot` (reported again
/// every `repeat` while it stays hot in software).
#[derive(Debug, Clone, Copy)]
pub struct HotPolicy {
    pub min_pps: u64,
    pub hot: Duration,
    pub repeat: Duration,
}

impl HotPolicy {
    /// The shortest span a rate is measured over: a quarter of the hot time,
    /// 10 to 100 ms (the few packets of one check interval are noise, and a
    /// flow whose rate flickers across the threshold would never stay hot).
    pub fn window(&self) -> Duration {
        (self.hot / 4).clamp(Duration::from_millis(10), Duration::from_millis(100))
    }
}

const WAYS_MIN: usize = 4;

/// One PMD's switching state.
pub struct Engine {
    pub index: usize,
    config: PmdConfig,
    table: Arc<RuleTable>,
    events: Option<Sender<EventBatch>>,
    hit_reports: bool,
    /// Events not sent yet (the channel was full, or the iteration is not over).
    pending_events: Vec<FlowEvent>,
    flows: FlowTable,
    pub(crate) hardware: Option<Hardware>,
    hot: Option<HotPolicy>,
    /// Flows hit since the last hot check.
    dirty: Vec<FlowHandle>,
    /// Flows keeping the hot rate, not reported yet: checked every time
    /// (a slow flow need not be hit at the moment its hot time is over).
    watch: Vec<FlowHandle>,
    tun: TunnelCtx,
    mtus: Vec<u16>,
    hz: u64,
    idle_ticks: u64,
    emc: Emc<FlowHandle>,
    smc: Smc,
    /// The action lists of recent (rule, input port) pairs of this table:
    /// megaflows of one rule share one allocation. Cleared with each new table.
    action_lists: std::collections::HashMap<(u64, u32), FlowActions>,
    /// Where the next maintenance slice starts.
    maint_cursor: usize,
    /// The rule table's generation (one more per `set_rules`).
    table_gen: u32,
    /// Live flows not checked against the current table yet.
    stale: usize,
    /// The revalidation in progress, if any.
    sweep: Option<Sweep>,
    dpcls: Megaflows,
    pub counters: Local,
    next_flow: u64,
    upcalls_left: usize,
    /// Upcalls of this iteration kept for the ports polled after the
    /// current one (their fair share: a flood on one port cannot take the
    /// whole budget).
    upcall_reserve: usize,
    /// Packets of the last burst that missed both caches.
    burst_misses: usize,
    rng: u64,
    // Per-burst scratch, kept to avoid re-initialising on every burst.
    keys: Box<[FlowKey; BURST]>,
    miss_keys: Box<[FlowKey; BURST]>,
    hashes: [u64; BURST],
    /// Packet lengths after any decapsulation (flow byte counts).
    lens: [u32; BURST],
    /// The port each packet is classified as coming from (a tunnel port
    /// after decapsulation).
    in_ports: [u32; BURST],
    flow_of: [Option<FlowHandle>; BURST],
    /// Packets in the burst being processed: flows its packets point to
    /// (`flow_of[..burst_len]`) are not evicted until it is executed.
    burst_len: usize,
}

/// Packets of a burst grouped by flow: (flow handle, member bits).
pub struct Groups {
    pub handles: [FlowHandle; BURST],
    pub members: [u64; BURST],
    pub len: usize,
}

impl Engine {
    pub fn new(s: EngineSetup) -> Self {
        let phys = s.mtus.len();
        let ports = phys + s.tunnels;
        let hz = s.hz.max(1);
        // Only the offload manager addresses flows by id.
        let flows = FlowTable::new(s.events.is_some());
        Self {
            index: s.index,
            idle_ticks: (s.config.idle_timeout.as_secs_f64() * hz as f64) as u64,
            upcalls_left: s.config.upcall_budget,
            upcall_reserve: 0,
            burst_misses: 0,
            rng: 0x9e37_79b9_7f4a_7c15 ^ (s.index as u64 + 1),
            emc: Emc::new(s.config.emc_entries.max(WAYS_MIN)),
            smc: Smc::new(s.config.smc_entries),
            action_lists: std::collections::HashMap::new(),
            maint_cursor: 0,
            table_gen: 0,
            stale: 0,
            sweep: None,
            tun: TunnelCtx::new(s.underlay, phys, s.uplink),
            config: s.config,
            table: s.table,
            hit_reports: s.events.is_some() && s.hit_reports,
            events: s.events,
            pending_events: Vec::new(),
            flows,
            hardware: s.hardware,
            hot: s.hot,
            dirty: Vec::new(),
            watch: Vec::new(),
            mtus: s.mtus,
            hz,
            dpcls: Megaflows::new(),
            counters: Local::new(ports),
            next_flow: 1,
            keys: Box::new([FlowKey::ZERO; BURST]),
            miss_keys: Box::new([FlowKey::ZERO; BURST]),
            hashes: [0; BURST],
            lens: [0; BURST],
            in_ports: [0; BURST],
            flow_of: [None; BURST],
            burst_len: 0,
        }
    }

    /// Once per PMD iteration: a fresh upcall budget, underlay changes picked up.
    pub fn start_iteration(&mut self) {
        self.upcalls_left = self.config.upcall_budget;
        self.upcall_reserve = 0;
        self.tun.refresh();
    }

    /// Before a burst from one of `queues` receive queues polled this
    /// iteration, `later` of them still to come: the upcall budget keeps
    /// each of those its share (budget / queues, at least one). The PMD
    /// rotates which queue goes first, so every port gets the whole rest in
    /// turn.
    pub fn queue_turn(&mut self, later: usize, queues: usize) {
        let share = (self.config.upcall_budget / queues.max(1)).max(1);
        self.upcall_reserve = later * share;
    }

    /// Uses another underlay (tests that share one between engines).
    #[cfg(test)]
    pub(crate) fn underlay_for_tests(&mut self, u: &Arc<Underlay>) {
        let phys = self.mtus.len();
        self.tun = TunnelCtx::new(Arc::clone(u), phys, vec![false, false, true]);
    }

    /// Packets of the last burst that missed both caches (new flows).
    pub fn burst_misses(&self) -> usize {
        self.burst_misses
    }

    /// Flow slots (live or free): what a maintenance pass walks.
    pub fn flow_slots(&self) -> usize {
        self.flows.capacity()
    }

    /// Live megaflows.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Runs a burst of `n` packets received on physical port `in_port`
    /// through every stage. `now` is in the setup's ticks.
    pub fn process<I: Io>(&mut self, in_port: u32, pkts: &mut Packets<I::Pkt>, n: usize, now: u64, io: &mut I) {
        let n = n.min(BURST);
        self.counters.add(Counter::Packets, n as u64);
        self.counters.port(in_port as usize, PortCounter::RxPackets, n as u64);
        self.stage_hardware(in_port, pkts, n, io);
        let mut pending = self.stage_ingress(in_port, pkts, n, io);
        pending = self.stage_emc(pending);
        pending = self.stage_smc(pending);
        pending = self.stage_megaflow(pending);
        pending = self.stage_fresh(pending, pkts, n);
        self.stage_upcall(pending, pkts, now);
        let groups = group(&self.flow_of, pkts, n);
        self.stage_execute(&groups, pkts, now, io);
        self.burst_len = 0;
        // Anything still here went through a rule whose actions end without
        // an output (e.g. `output:vf1,mod_dl_src:...`): dropped by the rule.
        let left = pkts.iter().take(n).filter(|p| p.is_some()).count() as u64;
        if left > 0 {
            self.counters.drop(DropReason::RuleDrop, left);
        }
    }

    /// The (model) e-switch takes the packets its rules match, as a NIC's
    /// e-switch would before they reach the representor: they are edited,
    /// sent or dropped by it and never reach the software path. Misses stay.
    pub fn stage_hardware<I: Io>(&mut self, in_port: u32, pkts: &mut Packets<I::Pkt>, n: usize, io: &mut I) {
        let Some(hw) = &self.hardware else { return };
        let Some(&ethdev) = hw.ethdev.get(in_port as usize) else { return };
        let t0 = crate::arch::cycles();
        let mut session = hw.model.session();
        let (mut taken, mut bytes) = (0u64, 0u64);
        for slot in pkts.iter_mut().take(n) {
            let Some(p) = slot.as_mut() else { continue };
            let len = p.len() as u64;
            match session.process(ethdev, p) {
                Verdict::Miss => continue,
                Verdict::Output(e) => match hw.port_of.get(usize::from(e)).copied().flatten() {
                    Some(out) => {
                        if let Some(p) = slot.take() {
                            io.send(out, p, &mut self.counters);
                        }
                    }
                    None => {
                        *slot = None;
                        self.counters.drop(DropReason::HwUnknownPort, 1);
                    }
                },
                Verdict::Drop => {
                    *slot = None;
                    self.counters.drop(DropReason::HwRuleDrop, 1);
                }
                Verdict::Error => {
                    *slot = None;
                    self.counters.drop(DropReason::HwError, 1);
                }
                // The same reasons software counts for these frames.
                Verdict::RxOverMtu => {
                    *slot = None;
                    self.counters.drop(DropReason::RxMtu, 1);
                }
                Verdict::TxOverMtu(e) => {
                    *slot = None;
                    self.counters.drop(DropReason::Mtu, 1);
                    if let Some(out) = hw.port_of.get(usize::from(e)).copied().flatten() {
                        self.counters.port(out as usize, PortCounter::TxDropped, 1);
                    }
                }
            }
            taken += 1;
            bytes += len;
        }
        drop(session);
        if taken > 0 {
            self.counters.add(Counter::HwPackets, taken);
            self.counters.add(Counter::HwBytes, bytes);
            self.counters.port(in_port as usize, PortCounter::HwRxPackets, taken);
        }
        self.counters.add(Counter::HwCycles, crate::arch::cycles().wrapping_sub(t0));
    }

    /// Parses every packet into the burst's key array; on uplinks the VTEP
    /// first answers ARP/ND for its addresses and decapsulates VXLAN sent to
    /// them. Returns the packets left to classify.
    pub fn stage_ingress<I: Io>(&mut self, in_port: u32, pkts: &mut Packets<I::Pkt>, n: usize, io: &mut I) -> u64 {
        let mut pending: u64 = 0;
        let mut rx_bytes = 0u64;
        let vtep = self.tun.is_uplink(in_port);
        // A representor's VF MTU (uplinks: the NIC's receive limit is its own).
        let rx_limit = if vtep { 0 } else { self.mtus.get(in_port as usize).map_or(0, |&m| usize::from(m)) };
        self.burst_len = n;
        for i in 0..n {
            self.flow_of[i] = None;
            let Some(m) = pkts[i].as_mut() else { continue };
            let len = m.len();
            rx_bytes += len as u64;
            self.lens[i] = len as u32;
            if rx_limit != 0 && len > rx_limit + 14 && len - l2_len(m.data()) > rx_limit {
                // A VF cannot send above its MTU; its e-switch port drops it.
                self.counters.drop(DropReason::RxMtu, 1);
                pkts[i] = None;
                continue;
            }
            let layout = parse_into(m.data(), in_port, None, &mut self.keys[i]);
            if let Some(e) = layout.error {
                self.counters.parse_error(e);
                self.counters.drop(DropReason::ParseError, 1);
                pkts[i] = None;
                continue;
            }
            let mut from = in_port;
            if vtep {
                match self.vtep(in_port, i, usize::from(layout.l3_offset), layout, pkts, io) {
                    Some(port) => from = port,
                    None => continue,
                }
            }
            self.in_ports[i] = from;
            self.hashes[i] = hash_key(&self.keys[i]);
            pending |= 1 << i;
        }
        self.counters.port(in_port as usize, PortCounter::RxBytes, rx_bytes);
        pending
    }

    /// The VTEP's part of ingress for packet `i` of an uplink: `None` when
    /// the packet was consumed (answered, learned from, dropped), else the
    /// port to classify it as coming from (a tunnel port after decap).
    fn vtep<I: Io>(
        &mut self,
        in_port: u32,
        i: usize,
        l3: usize,
        layout: crate::packet::parse::Layout,
        pkts: &mut Packets<I::Pkt>,
        io: &mut I,
    ) -> Option<u32> {
        let m = pkts[i].as_mut()?;
        match self.tun.special(&self.keys[i], in_port) {
            Special::None => Some(in_port),
            kind @ (Special::Arp | Special::Nd) => {
                let action = match kind {
                    Special::Arp => self.tun.arp(m.data(), l3, in_port),
                    _ => self.tun.nd(m.data(), l3, in_port),
                };
                match action {
                    NeighbourAction::PassOn => Some(in_port),
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
                if let Some(e) = parse_into(m.data(), t, Some(&meta), &mut self.keys[i]).error {
                    self.counters.parse_error(e);
                    self.counters.drop(DropReason::ParseError, 1);
                    pkts[i] = None;
                    return None;
                }
                self.counters.add(Counter::Decapsulated, 1);
                self.counters.port(t as usize, PortCounter::RxPackets, 1);
                self.lens[i] = m.len() as u32;
                self.counters.port(t as usize, PortCounter::RxBytes, u64::from(self.lens[i]));
                Some(t)
            }
        }
    }

    /// The exact-match cache for the `pending` packets, in three passes so
    /// cache misses overlap: prefetch every tag line, then every candidate
    /// entry, then compare keys. Returns the misses.
    pub fn stage_emc(&mut self, mut pending: u64) -> u64 {
        let parsed = pending.count_ones();
        for i in Bits(pending) {
            self.emc.prefetch(self.hashes[i]);
        }
        let mut slots = [None; BURST];
        for i in Bits(pending) {
            slots[i] = self.emc.candidate(self.hashes[i]);
        }
        for i in Bits(pending) {
            if let Some(h) = self.emc.verify(slots[i], &self.keys[i], self.hashes[i]) {
                if self.flows.is_live(h) {
                    self.flow_of[i] = Some(h);
                    pending &= !(1 << i);
                }
            }
        }
        self.counters.add(Counter::EmcHits, u64::from(parsed - pending.count_ones()));
        pending
    }

    /// The signature-match cache for the `pending` packets, in three passes
    /// as the exact-match cache: prefetch the entries, then each candidate
    /// flow's key and mask, then verify (the key under the flow's mask is
    /// the flow's key). Returns the misses.
    pub fn stage_smc(&mut self, mut pending: u64) -> u64 {
        if pending == 0 || !self.smc_active() {
            return pending;
        }
        for i in Bits(pending) {
            self.smc.prefetch(self.hashes[i]);
        }
        let mut cand = [u32::MAX; BURST];
        for i in Bits(pending) {
            if let Some(index) = self.smc.get(self.hashes[i]) {
                self.flows.prefetch(index);
                cand[i] = index;
            }
        }
        let mut hits = 0;
        for i in Bits(pending) {
            let Some(h) = self.flows.handle_at(cand[i] as usize) else { continue };
            if self.flows.get(h).is_some_and(|f| self.keys[i].eq_masked(&f.key, self.flows.mask(f))) {
                self.flow_of[i] = Some(h);
                pending &= !(1 << i);
                hits += 1;
                self.emc_maybe_insert(i, h);
            }
        }
        self.counters.add(Counter::SmcHits, hits);
        pending
    }

    /// Whether the signature-match cache is in use: only with several
    /// megaflow masks. With one or two, the classifier answers in as many
    /// probes as the cache would, and at 1M flows (one mask) the cache's
    /// extra miss measured 10-20 % slower (8.2-8.5 against 6.5-7.4 Mpps).
    #[inline(always)]
    fn smc_active(&self) -> bool {
        self.smc.is_enabled() && self.dpcls.subtable_count() >= SMC_MIN_MASKS
    }

    #[inline(always)]
    fn smc_insert(&mut self, i: usize, h: FlowHandle) {
        if self.smc_active() {
            self.smc.insert(self.hashes[i], h.index);
        }
    }

    /// The megaflow classifier for the `pending` packets, as one batch.
    /// Returns the misses.
    pub fn stage_megaflow(&mut self, mut pending: u64) -> u64 {
        if pending == 0 {
            return 0;
        }
        let mut miss_idx = [0u8; BURST];
        let mut m = 0;
        for i in Bits(pending) {
            self.miss_keys[m] = self.keys[i];
            miss_idx[m] = i as u8;
            m += 1;
        }
        let mut found = [None; BURST];
        self.dpcls.lookup_batch(&self.miss_keys[..m], &mut found[..m], &self.flows);
        for j in 0..m {
            let i = usize::from(miss_idx[j]);
            if let Some(h) = found[j].and_then(|index| self.flows.handle_at(index as usize)) {
                self.flow_of[i] = Some(h);
                pending &= !(1 << i);
                self.counters.add(Counter::MegaflowHits, 1);
                self.smc_insert(i, h);
                self.emc_maybe_insert(i, h);
            }
        }
        pending
    }

    /// Classifies the `pending` packets against the rule table and installs
    /// their megaflows, within the iteration's upcall budget (the excess is
    /// dropped and counted).
    pub fn stage_upcall<P>(&mut self, pending: u64, pkts: &mut Packets<P>, now: u64) {
        self.burst_misses = pending.count_ones() as usize;
        for i in Bits(pending) {
            // A flow installed for an earlier packet of this burst may cover it.
            let found = self.dpcls.lookup(&self.keys[i], &self.flows).and_then(|ix| self.flows.handle_at(ix as usize));
            if let Some(h) = found.filter(|h| self.revalidate_flow(*h)) {
                self.flow_of[i] = Some(h);
                self.counters.add(Counter::MegaflowHits, 1);
                self.smc_insert(i, h);
                self.emc_insert(i, h);
                continue;
            }
            if self.upcalls_left <= self.upcall_reserve {
                self.counters.drop(DropReason::UpcallBudget, 1);
                pkts[i] = None;
                continue;
            }
            let t0 = crate::arch::cycles();
            let key = self.keys[i];
            match self.install(&key, now) {
                Some(h) => {
                    // Only an installed flow is charged to the budget.
                    self.upcalls_left -= 1;
                    self.flow_of[i] = Some(h);
                    self.smc_insert(i, h);
                    self.emc_insert(i, h);
                }
                None => {
                    self.counters.drop(DropReason::FlowLimit, 1);
                    pkts[i] = None;
                }
            }
            self.counters.add(Counter::Upcalls, 1);
            self.counters.add(Counter::UpcallCycles, crate::arch::cycles().wrapping_sub(t0));
        }
    }

    /// Runs each group's actions once, updating the flows' counters.
    pub fn stage_execute<I: Io>(&mut self, groups: &Groups, pkts: &mut Packets<I::Pkt>, now: u64, io: &mut I) {
        for g in 0..groups.len {
            let members = groups.members[g];
            let Some(flow) = self.flows.get_mut(groups.handles[g]) else {
                // Cannot happen while eviction spares the burst's flows;
                // counted all the same, never lost silently.
                let n = Bits(members).filter(|&i| pkts[i].take().is_some()).count() as u64;
                self.counters.drop(DropReason::FlowGone, n);
                continue;
            };
            let bytes: u64 = Bits(members).map(|i| u64::from(self.lens[i])).sum();
            flow.packets += u64::from(members.count_ones());
            flow.bytes += bytes;
            flow.used_tsc = now;
            if !flow.dirty && self.hot.is_some() {
                flow.dirty = true;
                self.dirty.push(groups.handles[g]);
            }
            if let Some(reason) = flow.drop_reason {
                self.counters.drop(reason, u64::from(members.count_ones()));
                Bits(members).for_each(|i| pkts[i] = None);
                continue;
            }
            let mut x = Exec {
                io: &mut *io,
                counters: &mut self.counters,
                tun: &mut self.tun,
                mtus: &self.mtus,
                keys: &self.keys,
                in_ports: &self.in_ports,
                now,
                hz: self.hz,
            };
            execute(&flow.actions, pkts, members, &mut x);
        }
    }

    /// Inserts after a megaflow hit with probability 1/`emc_insert_inv_prob`,
    /// so that when there are far more flows than entries the cache does not
    /// churn on every packet (the Open vSwitch policy).
    #[inline]
    fn emc_maybe_insert(&mut self, i: usize, h: FlowHandle) {
        if self.next_random().is_multiple_of(self.config.emc_insert_inv_prob.max(1)) {
            self.emc_insert(i, h);
        }
    }

    #[inline]
    fn emc_insert(&mut self, i: usize, h: FlowHandle) {
        if self.config.emc_entries > 0 {
            self.emc.insert(&self.keys[i], self.hashes[i], h);
            self.counters.add(Counter::EmcInserts, 1);
        }
    }

    /// Classifies `key`, installs the megaflow and returns its handle. A full
    /// table first makes room (the flow idle longest among a random sample
    /// goes); `None` only when nothing could be evicted.
    fn install(&mut self, key: &FlowKey, now: u64) -> Option<FlowHandle> {
        if self.flows.len() >= self.config.max_flows && !self.evict_one(now) {
            return None;
        }
        let c = self.table.classify(key);
        let memo = (c.rule.as_ref().map_or(u64::MAX, |r| r.id), key.in_port());
        let (actions, drop_reason) = match self.action_lists.get(&memo) {
            Some((a, d)) => (Arc::clone(a), *d),
            None => {
                let made = flow_actions(c.rule.as_deref(), key.in_port());
                if self.action_lists.len() >= ACTION_LISTS_MAX {
                    self.action_lists.clear();
                }
                self.action_lists.insert(memo, (Arc::clone(&made.0), made.1));
                made
            }
        };
        let mask = megaflow_mask(c.mask);
        let masked = key.masked(&mask);
        let id = ((self.index as u64) << 48) | self.next_flow;
        self.next_flow += 1;
        let flow = Flow {
            id,
            key: masked,
            mask_id: 0,
            rule: c.rule,
            actions: Arc::clone(&actions),
            drop_reason,
            packets: 0,
            bytes: 0,
            created_tsc: now,
            used_tsc: now,
            dirty: false,
            watched: false,
            extra: None,
            hw_seen_tsc: 0,
            table_gen: self.table_gen,
        };
        let h = self.flows.insert(flow, &mask);
        let old = self.dpcls.insert(&masked, &mask, h.index, &self.flows);
        if let Some(old) = old.and_then(|ix| self.flows.handle_at(ix as usize)) {
            // Same key and mask: the old flow is gone, and the manager hears of it.
            if let Some((f, _)) = self.flows.remove(old) {
                self.forget(&f);
                self.emit(FlowEvent::Removed { id: f.id, reason: RemoveReason::Replaced });
            }
        }
        self.emit(FlowEvent::Installed { id, pmd: self.index, key: masked, mask, actions });
        Some(h)
    }

    /// Evicts the flow idle longest among [`EVICT_SAMPLE`] live flows drawn
    /// at random, sparing those recently hit in hardware. A flood's one-packet
    /// flows are idle longer than any established flow, so they are the ones
    /// that go. Returns whether a flow went.
    fn evict_one(&mut self, now: u64) -> bool {
        let slots = self.flows.capacity();
        if slots == 0 {
            return false;
        }
        let grace = self.ticks(self.config.hw_grace);
        let mut best: Option<(u64, FlowHandle)> = None;
        let (mut found, mut tries) = (0, 0);
        while found < EVICT_SAMPLE && tries < EVICT_SAMPLE * 8 {
            tries += 1;
            let i = (self.next_random() % slots as u64) as usize;
            let Some(h) = self.flows.handle_at(i) else { continue };
            let Some(f) = self.flows.get(h) else { continue };
            // Packets of the burst in flight point to it: it must outlive them.
            if self.flow_of[..self.burst_len].contains(&Some(h)) {
                continue;
            }
            found += 1;
            if f.hw_seen_tsc != 0 && now.wrapping_sub(f.hw_seen_tsc) < grace {
                continue;
            }
            let idle = now.wrapping_sub(f.used_tsc);
            if best.is_none_or(|(b, _)| idle > b) {
                best = Some((idle, h));
            }
        }
        let Some((_, h)) = best else { return false };
        self.remove_flow(h, RemoveReason::Evicted);
        self.counters.add(Counter::FlowsEvicted, 1);
        true
    }

    #[inline]
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn ticks(&self, d: Duration) -> u64 {
        (d.as_secs_f64() * self.hz as f64) as u64
    }

    /// Queues an event for the manager (sent at the end of the iteration).
    #[inline]
    fn emit(&mut self, ev: FlowEvent) {
        if self.events.is_some() {
            self.pending_events.push(ev);
        }
    }

    /// Sends the queued events as one batch. With `wait`, blocks up to that
    /// long for room (before acknowledging a control request, so the manager
    /// sees every event first); without, a full channel keeps them for the
    /// next iteration (counted as delayed). Events are never dropped.
    pub fn flush_events(&mut self, wait: Option<Duration>) {
        let Some(tx) = &self.events else { return };
        if self.pending_events.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending_events);
        let n = batch.len() as u64;
        let back = match wait {
            None => match tx.try_send(batch) {
                Ok(()) => None,
                Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => Some(b),
            },
            Some(t) => match tx.send_timeout(batch, t) {
                Ok(()) => None,
                Err(SendTimeoutError::Timeout(b) | SendTimeoutError::Disconnected(b)) => Some(b),
            },
        };
        if let Some(b) = back {
            self.counters.add(Counter::EventsDelayed, n);
            self.pending_events = b;
        }
    }

    fn remove_flow(&mut self, h: FlowHandle, reason: RemoveReason) {
        if let Some((flow, mask)) = self.flows.remove(h) {
            self.forget(&flow);
            self.dpcls.remove(&flow.key, &mask, h.index);
            self.emit(FlowEvent::Removed { id: flow.id, reason });
        }
    }

    /// Bookkeeping for a flow that left the table.
    #[inline]
    fn forget(&mut self, flow: &Flow) {
        if flow.table_gen != self.table_gen {
            self.stale = self.stale.saturating_sub(1);
        }
    }

    /// Hot-flow detection. A flow's rate is measured over windows of at
    /// least [`HotPolicy::window`], each ended by a hit; a window below the
    /// policy's rate resets it. A flow is reported once its first window at
    /// the rate began the hot time ago and its average since then keeps the
    /// rate (checked on every call, hit or not, so a slow flow is reported on
    /// time), and again every `repeat` while it stays hot in software.
    pub fn hot_check(&mut self, now: u64) {
        let Some(policy) = self.hot else { return };
        let hz = self.hz;
        let to_ticks = |d: Duration| (d.as_secs_f64() * hz as f64) as u64;
        let (hot_ticks, repeat_ticks) = (to_ticks(policy.hot), to_ticks(policy.repeat));
        let window_ticks = to_ticks(policy.window()).max(1);
        let rate = |packets: u64, ticks: u64| (u128::from(packets) * u128::from(hz) / u128::from(ticks.max(1))) as u64;
        let mut dirty = std::mem::take(&mut self.dirty);
        for h in dirty.drain(..) {
            let Some(f) = self.flows.get_mut(h) else { continue };
            f.dirty = false;
            let x = f.extra.get_or_insert_with(|| FlowExtra::new(f.created_tsc));
            let dt = now.wrapping_sub(x.check_tsc);
            if dt < window_ticks {
                // Too short to measure: the window goes on.
                continue;
            }
            let pps = rate(f.packets - x.check_packets, dt);
            let start = (x.check_tsc, x.check_packets);
            x.check_packets = f.packets;
            x.check_tsc = now;
            if pps < policy.min_pps {
                x.hot_since = None;
                continue;
            }
            x.hot_since.get_or_insert(start);
            if !f.watched {
                f.watched = true;
                self.watch.push(h);
            }
        }
        self.dirty = dirty;
        let mut watch = std::mem::take(&mut self.watch);
        watch.retain(|&h| {
            let Some(f) = self.flows.get_mut(h) else { return false };
            let x = f.extra.get_or_insert_with(|| FlowExtra::new(f.created_tsc));
            let Some((since, since_packets)) = x.hot_since else {
                f.watched = false;
                return false;
            };
            let hot_for = now.wrapping_sub(since);
            if hot_for < hot_ticks {
                return true;
            }
            let pps = rate(f.packets - since_packets, hot_for);
            if pps < policy.min_pps {
                // Its average fell (it went quiet): it starts over.
                x.hot_since = None;
                f.watched = false;
                return false;
            }
            if x.hot_reported_tsc != 0 && now.wrapping_sub(x.hot_reported_tsc) < repeat_ticks {
                return true;
            }
            x.hot_reported_tsc = now;
            f.watched = false;
            let ev = FlowEvent::Hot { id: f.id, pps, hot_for: Duration::from_secs_f64(hot_for as f64 / hz as f64) };
            if self.events.is_some() {
                self.pending_events.push(ev);
            }
            false
        });
        self.watch = watch;
    }

    /// The manager saw these flows hit in hardware: they are in use (their
    /// packets no longer reach the software path, which would expire them).
    pub fn touch(&mut self, ids: &[u64], now: u64) {
        for &id in ids {
            if let Some(f) = self.flows.by_id(id).and_then(|h| self.flows.get_mut(h)) {
                f.used_tsc = now;
                f.hw_seen_tsc = now;
            }
        }
    }

    /// Removes these flows (the manager's decision: aged out in both tiers).
    pub fn expire(&mut self, ids: &[u64], reason: RemoveReason) {
        for &id in ids {
            if let Some(h) = self.flows.by_id(id) {
                self.remove_flow(h, reason);
            }
        }
    }

    /// How long a whole maintenance pass over the flow slots should take:
    /// a tenth of the idle timeout, 100 ms to 1 s; 100 ms under pressure
    /// (the table over three quarters full).
    pub fn maintenance_period(&self) -> Duration {
        if self.flows.len() * PRESSURE_DEN > self.config.max_flows * PRESSURE_NUM {
            return PRESSURE_IDLE;
        }
        (self.config.idle_timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// Idle expiry and hit-delta reports (a pass per [`Engine::maintenance_period`]). Under
    /// pressure (the table over three quarters full) flows idle for
    /// [`PRESSURE_IDLE`] go too, except those recently hit in hardware.
    pub fn maintenance(&mut self, now: u64) {
        self.maint_cursor = 0;
        self.maintenance_slice(now, usize::MAX);
    }

    /// Maintenance of the next `slots` flow slots (a whole pass takes
    /// capacity / `slots` calls): the PMD spreads the walk over its
    /// iterations, so a large table never stalls forwarding for a pass.
    pub fn maintenance_slice(&mut self, now: u64, slots: usize) {
        let mut expired = 0;
        let pressure = self.flows.len() * PRESSURE_DEN > self.config.max_flows * PRESSURE_NUM;
        let pressure_idle = self.ticks(PRESSURE_IDLE).min(self.idle_ticks);
        let grace = self.ticks(self.config.hw_grace);
        let cap = self.flows.capacity();
        if self.maint_cursor >= cap {
            self.maint_cursor = 0;
        }
        let from = self.maint_cursor;
        let to = from.saturating_add(slots).min(cap);
        self.maint_cursor = to;
        for i in from..to {
            let Some(h) = self.flows.handle_at(i) else { continue };
            let Some(flow) = self.flows.get_mut(h) else { continue };
            let idle = now.wrapping_sub(flow.used_tsc);
            let in_hw = flow.hw_seen_tsc != 0 && now.wrapping_sub(flow.hw_seen_tsc) < grace;
            if idle > self.idle_ticks || (pressure && !in_hw && idle > pressure_idle) {
                self.remove_flow(h, RemoveReason::Idle);
                expired += 1;
                continue;
            }
            let reported = flow.extra.as_ref().map_or((0, 0), |x| (x.reported_packets, x.reported_bytes));
            if self.hit_reports && flow.packets != reported.0 {
                let ev =
                    FlowEvent::Hits { id: flow.id, packets: flow.packets - reported.0, bytes: flow.bytes - reported.1 };
                let x = flow.extra.get_or_insert_with(|| FlowExtra::new(flow.created_tsc));
                x.reported_packets = flow.packets;
                x.reported_bytes = flow.bytes;
                self.pending_events.push(ev);
            }
        }
        self.counters.add(Counter::FlowsExpired, expired);
    }

    /// Uses `table` from now on and revalidates every megaflow at once (a
    /// whole pass: tests and tools; the PMD spreads it with
    /// [`Engine::set_rules`] and [`Engine::revalidate_slice`]).
    pub fn revalidate(&mut self, table: Arc<RuleTable>) -> RevalidateReport {
        self.set_rules(table);
        self.revalidate_slice(u64::MAX).unwrap_or_default()
    }

    /// Uses `table` from now on: new flows are classified by it, and every
    /// cached megaflow becomes stale until it is revalidated, by the slices
    /// of a sweep ([`Engine::revalidate_slice`]) or first by a packet that
    /// hits it (a stale flow forwards nothing before it is checked). One is
    /// kept only if the new decision needs no field outside it and acts the
    /// same. A sweep in progress starts over (its tally carries on).
    pub fn set_rules(&mut self, table: Arc<RuleTable>) {
        self.table = table;
        // Rule ids are only unique within one table (a reload numbers afresh).
        self.action_lists.clear();
        self.table_gen = self.table_gen.wrapping_add(1);
        self.stale = self.flows.len();
        let report = self.sweep.take().map(|s| s.report).unwrap_or_default();
        self.sweep = Some(Sweep { cursor: 0, report });
    }

    /// Whether a revalidation is in progress.
    pub fn revalidating(&self) -> bool {
        self.sweep.is_some()
    }

    /// Flows still to revalidate.
    pub fn stale_flows(&self) -> usize {
        self.stale
    }

    /// Revalidates the stale flows of the next slots, for about
    /// `budget_cycles` (checked every few flows). Returns the whole
    /// revalidation's tally once no stale flow is left.
    pub fn revalidate_slice(&mut self, budget_cycles: u64) -> Option<RevalidateReport> {
        let t0 = crate::arch::cycles();
        let cap = self.flows.capacity();
        let mut checked = 0u32;
        let mut cursor = self.sweep.as_ref()?.cursor;
        while self.stale > 0 && cursor < cap {
            let i = cursor;
            cursor += 1;
            let Some(h) = self.flows.handle_at(i) else { continue };
            if self.flows.get(h).is_some_and(|f| f.table_gen == self.table_gen) {
                continue;
            }
            self.revalidate_flow(h);
            checked += 1;
            if checked.is_multiple_of(16) && crate::arch::cycles().wrapping_sub(t0) > budget_cycles {
                break;
            }
        }
        let sweep = self.sweep.as_mut()?;
        sweep.cursor = cursor;
        if self.stale > 0 && cursor < cap {
            return None;
        }
        debug_assert_eq!(self.stale, 0, "every stale flow sits in a slot the sweep walked");
        self.stale = 0;
        self.sweep.take().map(|s| s.report)
    }

    /// Checks one flow against the current table if it is stale. Returns
    /// whether it is live and current afterwards (false: it was removed).
    fn revalidate_flow(&mut self, h: FlowHandle) -> bool {
        let Some(flow) = self.flows.get(h) else { return false };
        if flow.table_gen == self.table_gen {
            return true;
        }
        let c = self.table.classify(&flow.key);
        let (new_actions, _) = flow_actions(c.rule.as_deref(), flow.key.in_port());
        let new_mask = megaflow_mask(c.mask);
        if new_mask.is_subset_of(self.flows.mask(flow)) && *new_actions == *flow.actions {
            let gen = self.table_gen;
            if let Some(f) = self.flows.get_mut(h) {
                f.rule = c.rule;
                f.table_gen = gen;
            }
            self.stale = self.stale.saturating_sub(1);
            if let Some(s) = &mut self.sweep {
                s.report.kept += 1;
            }
            true
        } else {
            self.remove_flow(h, RemoveReason::Revalidated);
            self.counters.add(Counter::FlowsRevalidatedOut, 1);
            if let Some(s) = &mut self.sweep {
                s.report.removed += 1;
            }
            false
        }
    }

    /// While flows are stale: the packets of the burst that found a stale
    /// flow in a cache have it revalidated first; those whose flow went are
    /// classified again (they join `pending`).
    pub fn stage_fresh<P>(&mut self, mut pending: u64, pkts: &Packets<P>, n: usize) -> u64 {
        if self.stale == 0 {
            return pending;
        }
        for (i, pkt) in pkts.iter().enumerate().take(n) {
            if pending & (1 << i) != 0 || pkt.is_none() {
                continue;
            }
            let Some(h) = self.flow_of[i] else { continue };
            if !self.revalidate_flow(h) {
                self.flow_of[i] = None;
                pending |= 1 << i;
            }
        }
        pending
    }

    /// Every flow, for dump-flows (in one pass; the PMD uses
    /// [`Engine::dump_slice`]).
    pub fn dump(&mut self, now: u64) -> Vec<FlowInfo> {
        let in_emc = self.emc_slots();
        let mut out = Vec::new();
        self.dump_slice(0, usize::MAX, &in_emc, now, &mut out);
        out
    }

    /// The slots of the flows the exact-match cache holds entries for.
    pub fn emc_slots(&self) -> std::collections::HashSet<u32> {
        self.emc.values().filter(|h| self.flows.is_live(**h)).map(|h| h.index).collect()
    }

    /// Appends to `out` the flows in up to `slots` slots from `from`, for
    /// dump-flows; returns where the next slice starts (`None`: the table's
    /// end). Stale flows are revalidated first: a dump shows only flows the
    /// current rules keep.
    pub fn dump_slice(
        &mut self,
        from: usize,
        slots: usize,
        in_emc: &std::collections::HashSet<u32>,
        now: u64,
        out: &mut Vec<FlowInfo>,
    ) -> Option<usize> {
        let cap = self.flows.capacity();
        let to = from.saturating_add(slots).min(cap);
        let to_ms = |ticks: u64, hz: u64| (ticks as f64 * 1000.0 / hz as f64) as u64;
        out.reserve(self.flows.len().min(to - from.min(to)));
        // The answer gets copies of the action lists (one per distinct list),
        // not clones of the PMD's: the control thread dropping a million
        // clones would bounce the cache line the PMD reads them from.
        let mut copies: std::collections::HashMap<*const Action, Arc<[Action]>> = std::collections::HashMap::new();
        for i in from..to {
            let Some(h) = self.flows.handle_at(i) else { continue };
            if !self.revalidate_flow(h) {
                continue;
            }
            let Some(f) = self.flows.get(h) else { continue };
            let actions = copies.entry(f.actions.as_ptr()).or_insert_with(|| Arc::from(&f.actions[..]));
            out.push(FlowInfo {
                id: f.id,
                pmd: self.index,
                key: f.key,
                mask: *self.flows.mask(f),
                actions: Arc::clone(actions),
                rule: f.rule.as_ref().map(|r| (r.id, r.priority)),
                packets: f.packets,
                bytes: f.bytes,
                age_ms: to_ms(now.wrapping_sub(f.created_tsc), self.hz),
                idle_ms: to_ms(now.wrapping_sub(f.used_tsc), self.hz),
                in_emc: in_emc.contains(&h.index),
            });
        }
        (to < cap).then_some(to)
    }

    /// Removes every flow (shutdown).
    pub fn remove_all(&mut self, reason: RemoveReason) {
        for h in self.flows.handles() {
            self.remove_flow(h, reason);
        }
    }

    /// Re-ranks the classifier's subtables by hits.
    pub fn rank(&mut self) {
        self.dpcls.rank();
    }

    /// Updates the gauges; the caller publishes the counters.
    pub fn update_gauges(&mut self) {
        self.counters.set(Counter::Flows, self.flows.len() as u64);
    }
}

/// Groups the burst's remaining packets by flow.
pub fn group<P>(flow_of: &[Option<FlowHandle>; BURST], pkts: &Packets<P>, n: usize) -> Groups {
    let mut g = Groups { handles: [FlowHandle { index: 0, generation: 0 }; BURST], members: [0; BURST], len: 0 };
    for (i, pkt) in pkts.iter().enumerate().take(n) {
        if pkt.is_none() {
            continue;
        }
        let Some(h) = flow_of[i] else { continue };
        match (0..g.len).find(|&k| g.handles[k].index == h.index) {
            Some(k) => g.members[k] |= 1 << i,
            None => {
                g.handles[g.len] = h;
                g.members[g.len] = 1 << i;
                g.len += 1;
            }
        }
    }
    g
}

/// The megaflow mask for a decision: what the rule table consulted, plus
/// fields the actions' behaviour depends on, plus the input port (offload
/// rules always match their source port), plus whether the frame carries one
/// and two VLAN tags (as Open vSwitch's megaflows always say; a hardware
/// rule must say whether the frame is tagged to know where its IP header is).
/// A megaflow's actions from its rule's, for packets from `in_port` (the
/// megaflow matches it exactly): `output:in_port` becomes that port, an
/// output to that port by name is skipped (Open vSwitch semantics). With the
/// drop reason when nothing is sent.
pub fn flow_actions(rule: Option<&crate::flow::Rule>, in_port: u32) -> FlowActions {
    let Some(rule) = rule else { return (Arc::from(Vec::new()), Some(DropReason::NoRule)) };
    if !rule.actions.iter().any(|a| matches!(a, Action::Output(_) | Action::InPort)) {
        return (Arc::from(rule.actions.clone()), Some(DropReason::RuleDrop));
    }
    let actions: Vec<Action> = rule
        .actions
        .iter()
        .filter(|a| **a != Action::Output(in_port))
        .map(|a| if *a == Action::InPort { Action::Output(in_port) } else { a.clone() })
        .collect();
    let sends = actions.iter().any(|a| matches!(a, Action::Output(_)));
    (Arc::from(actions), (!sends).then_some(DropReason::ToInPort))
}

/// The megaflow's mask: what the rule table consulted, the input port, and
/// whether each VLAN tag is there (VLAN actions depend on how many tags a
/// frame has, never on the values in them: a rule on `dl_vlan` alone gives
/// one megaflow for every priority of that VLAN).
pub fn megaflow_mask(mut mask: FlowMask) -> FlowMask {
    mask.exact(Field::InPort);
    mask.set(Field::VlanTci, mask.get(Field::VlanTci) | u128::from(VLAN_PRESENT));
    mask.set(Field::VlanTci2, mask.get(Field::VlanTci2) | u128::from(VLAN_PRESENT));
    mask
}

/// Length of the Ethernet header with up to two VLAN tags.
#[inline]
pub fn l2_len(frame: &[u8]) -> usize {
    let mut off = 14;
    while off <= 22 && frame.len() >= off + 4 {
        let t = u16::from_be_bytes([frame[off - 2], frame[off - 1]]);
        if t != ETH_TYPE_VLAN && t != ETH_TYPE_QINQ {
            break;
        }
        off += 4;
    }
    off
}

/// The outer UDP source port for packet `i`: from its flow key when it is IP
/// (the same value [`InnerFlow::from_frame`] gives, see the equivalence test),
/// else from its bytes.
#[inline]
fn src_port_of(key: &FlowKey, frame: &[u8]) -> u16 {
    let ty = key.eth_type();
    if ty == ETH_TYPE_IPV4 || ty == ETH_TYPE_IPV6 {
        vxlan_src_port(&inner_flow(key))
    } else {
        vxlan_src_port(&InnerFlow::from_frame(frame))
    }
}

/// What running actions needs besides the packets.
struct Exec<'a, I: Io> {
    io: &'a mut I,
    counters: &'a mut Local,
    tun: &'a mut TunnelCtx,
    mtus: &'a [u16],
    keys: &'a [FlowKey; BURST],
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
        self.send_tunnel_many(port, vni, std::iter::once((i, m)));
    }

    /// Encapsulates packets (with their burst index) for tunnel port `port`
    /// and sends them out of the uplink; the encapsulation is resolved once
    /// for all of them (a flow's group shares port and VNI).
    fn send_tunnel_many(&mut self, port: u32, vni: Option<u32>, pkts: impl Iterator<Item = (usize, I::Pkt)>) {
        let r = match self.tun.resolve(port, vni) {
            Ok(r) => r.clone(),
            Err(e) => {
                let e = *e;
                let n = pkts.count() as u64;
                self.unresolved(e, n);
                return;
            }
        };
        let overhead = r.template.overhead();
        for (i, mut m) in pkts {
            if !m.is_contiguous() {
                // Encapsulation (and the IPv6 UDP checksum) needs the whole
                // frame in one segment; the pool's buffers are sized for that.
                self.counters.drop(DropReason::ActionError, 1);
                continue;
            }
            let outer_ip_len = m.data().len() + overhead - 14;
            if outer_ip_len > usize::from(r.uplink_mtu) {
                let l2 = l2_len(m.data());
                // The largest inner IP packet that fits.
                let inner_mtu = (usize::from(r.uplink_mtu) + 14).saturating_sub(overhead + l2);
                self.too_big(m, inner_mtu, l2, i, r.uplink);
                continue;
            }
            let sport = src_port_of(&self.keys[i], m.data());
            if r.template.encap(&mut m, sport).is_err() {
                self.counters.drop(DropReason::ActionError, 1);
                continue;
            }
            self.counters.add(Counter::Encapsulated, 1);
            self.counters.port(port as usize, PortCounter::TxPackets, 1);
            self.counters.port(port as usize, PortCounter::TxBytes, m.len() as u64);
            self.io.send(r.uplink, m, self.counters);
        }
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

/// Runs `actions` on the packets of one flow group (`members` bits of `pkts`).
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
                x.send_tunnel_many(*port, vni, Bits(members).filter_map(|i| Some((i, pkts[i].take()?))));
            }
            Action::Output(port) if ai == last => {
                for i in Bits(members) {
                    if let Some(m) = pkts[i].take() {
                        x.send(*port, m, vni, i);
                    }
                }
            }
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
            edit => {
                for i in Bits(members) {
                    let Some(m) = pkts[i].as_mut() else { continue };
                    let result = match edit {
                        Action::PopVlan => actions::pop_vlan(m).map(|_| ()),
                        Action::PushVlan { tpid, tci } => actions::push_vlan(m, *tpid, *tci),
                        Action::SetVlanVid(vid) => actions::set_vlan_vid(m, *vid),
                        Action::SetEthSrc(mac) => actions::set_eth_src(m, *mac),
                        Action::SetEthDst(mac) => actions::set_eth_dst(m, *mac),
                        Action::SetTunnel(_) | Action::Output(_) | Action::InPort | Action::Drop => Ok(()),
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

#[cfg(test)]
mod tests;
