//! One PMD's switching state ([`Engine`]), what it starts with, and the
//! pipeline of stages a burst goes through ([`Engine::process`]).

pub(super) use super::gate::EmcGate;
use crate::actions::{Action, PacketBuf};
use crate::datapath::counters::{Counter, DropReason, Local, PortCounter};
use crate::datapath::flows::{EventBatch, FlowEvent, FlowHandle, FlowTable};
use crate::datapath::tunnel::TunnelCtx;
use crate::flow::{Emc, Megaflows, RuleTable, Smc};
use crate::packet::parse::{FrameKey, FrameMask};
use crate::packet::FlowKey;
use crate::underlay::Underlay;
use crossbeam_channel::Sender;
use offload::device::InPath;
use std::sync::Arc;
use std::time::Duration;
/// Packets a burst holds at most (the size of the per-burst arrays).
pub const BURST: usize = 64;
/// Packets taken per rx poll.
pub const RX_BURST: usize = 32;

/// A burst of packets: slots taken out (`None`) as stages consume them.
pub type Packets<P> = [Option<P>; BURST];

/// Empties the slots of `members`; returns how many held a packet (for the
/// caller to count as dropped).
#[inline]
pub fn take_members<P>(pkts: &mut Packets<P>, members: u64) -> u64 {
    crate::flow::Bits(members).filter(|&i| pkts[i].take().is_some()).count() as u64
}

/// Where the engine's packets go and where copies come from.
pub trait Io {
    type Pkt: PacketBuf;

    /// Queues `pkt` for physical port `port` (counted there; a full queue
    /// drops and counts `tx_full`).
    fn send(&mut self, port: u32, pkt: Self::Pkt, counters: &mut Local);

    /// Queues the packets of `members` (taken out of `pkts`, in order) for
    /// physical port `port`, as [`Io::send`] one by one would, except those
    /// longer than `limit` bytes: they stay in `pkts` and their bits are
    /// returned (the caller checks them against the port's MTU one by one).
    #[inline]
    fn send_all(
        &mut self,
        port: u32,
        pkts: &mut Packets<Self::Pkt>,
        members: u64,
        limit: usize,
        counters: &mut Local,
    ) -> u64 {
        let mut long = 0;
        for i in crate::flow::Bits(members) {
            match pkts[i].take() {
                Some(p) if p.len() > limit => {
                    pkts[i] = Some(p);
                    long |= 1 << i;
                }
                Some(p) => self.send(port, p, counters),
                None => {}
            }
        }
        long
    }

    /// A copy of `pkt` (several outputs), or `None` without buffers.
    fn copy(&mut self, pkt: &Self::Pkt) -> Option<Self::Pkt>;

    /// An empty packet (ARP requests), or `None` without buffers.
    fn alloc(&mut self) -> Option<Self::Pkt>;
}

/// A flow's actions and, when they deliver nothing, the counted reason.
pub(super) type FlowActions = (Arc<[Action]>, Option<DropReason>);

/// (rule, input port) action lists remembered per PMD (then forgotten at once).
pub(super) const ACTION_LISTS_MAX: usize = 4096;

/// Megaflow masks from which the signature-match cache is used.
pub(super) const SMC_MIN_MASKS: usize = 3;

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
pub(super) const PRESSURE_NUM: usize = 3;
pub(super) const PRESSURE_DEN: usize = 4;
pub(super) const PRESSURE_IDLE: Duration = Duration::from_millis(100);
/// Flows sampled at random when a full table makes room; the one idle
/// longest goes (approximate LRU at O(1) per install).
pub(super) const EVICT_SAMPLE: usize = 16;

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
pub(super) struct Sweep {
    pub(super) cursor: usize,
    pub(super) report: RevalidateReport,
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
    /// The queue to the OpenFlow channel (the `controller` action).
    pub punt: crate::datapath::punt::Punt,
}

/// The e-switch stage: what the offload device puts in the packet path (the
/// model e-switch; a NIC puts nothing there) and how its ethdev port ids
/// map to the switch's port numbers.
pub struct Hardware {
    pub eswitch: Arc<dyn InPath>,
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

pub(super) const WAYS_MIN: usize = 4;

/// One PMD's switching state.
pub struct Engine {
    pub index: usize,
    pub(super) config: PmdConfig,
    pub(super) table: Arc<RuleTable>,
    pub(super) events: Option<Sender<EventBatch>>,
    pub(super) hit_reports: bool,
    /// Events not sent yet (the channel was full, or the iteration is not over).
    pub(super) pending_events: Vec<FlowEvent>,
    pub(super) flows: FlowTable,
    pub(crate) hardware: Option<Hardware>,
    pub(super) hot: Option<HotPolicy>,
    /// Flows hit since the last hot check.
    pub(super) dirty: Vec<FlowHandle>,
    /// Flows keeping the hot rate, not reported yet: checked every time
    /// (a slow flow need not be hit at the moment its hot time is over).
    pub(super) watch: Vec<FlowHandle>,
    pub(super) tun: TunnelCtx,
    pub(super) mtus: Vec<u16>,
    pub(super) hz: u64,
    pub(super) idle_ticks: u64,
    pub(super) emc: Emc<EmcValue>,
    /// Whether the exact-match cache is looked up (see [`EmcGate`]).
    pub(super) emc_gate: EmcGate,
    pub(super) smc: Smc,
    /// The action lists of recent (rule, input port) pairs of this table:
    /// megaflows of one rule share one allocation. Cleared with each new table.
    pub(super) action_lists: std::collections::HashMap<(u64, u32), FlowActions>,
    /// Packets and bytes of removed flows, by their rule.
    pub retired: std::collections::HashMap<u64, (u64, u64)>,
    pub(super) punt: crate::datapath::punt::Punt,
    /// Where the next maintenance slice starts.
    pub(super) maint_cursor: usize,
    /// The rule table's generation (one more per `set_rules`).
    pub(super) table_gen: u32,
    /// Live flows not checked against the current table yet.
    pub(super) stale: usize,
    /// The revalidation in progress, if any.
    pub(super) sweep: Option<Sweep>,
    pub(super) megaflows: Megaflows,
    pub counters: Local,
    pub(super) next_flow: u64,
    pub(super) upcalls_left: usize,
    /// Upcalls of this iteration kept for the ports polled after the
    /// current one (their fair share: a flood on one port cannot take the
    /// whole budget).
    pub(super) upcall_reserve: usize,
    /// Packets of the last burst that missed both caches.
    pub(super) burst_misses: usize,
    pub(super) rng: u64,
    // Per-burst scratch, kept to avoid re-initialising on every burst.
    pub(super) keys: Box<[FlowKey; BURST]>,
    /// Each packet's key hash: its flow key's, or its frame key's while it
    /// is one of the `unparsed`.
    pub(super) hashes: [u64; BURST],
    /// Frame keys of the packets the exact-match cache looks up by their
    /// bytes (the `framed` bits; a run's is in the slot `run_prev` names).
    pub(super) frames: Box<[FrameKey; BURST]>,
    /// Packets looked up by frame key in this burst (see [`FrameKey`]).
    pub(super) framed: u64,
    /// Framed packets whose flow key is not built yet: only a stage after
    /// the exact-match cache needs it (see [`Engine::own_keys`]).
    pub(super) unparsed: u64,
    /// Packet lengths after any decapsulation (flow byte counts).
    pub(super) lens: [u32; BURST],
    /// The port each packet is classified as coming from (a tunnel port
    /// after decapsulation).
    pub(super) in_ports: [u32; BURST],
    pub(super) flow_of: [Option<FlowHandle>; BURST],
    /// Packets with the same key as the packet classified before them in
    /// the burst (bits), and that packet's index.
    pub(super) runs: u64,
    pub(super) run_prev: [u8; BURST],
    /// Framed packets of the megaflow of the packet `run_prev` names, found
    /// by their frame keys under the frame mask (keys that differ only where
    /// no flow looks): they take its flow without a lookup of their own.
    pub(super) mask_runs: u64,
    /// When the burst's packets are all runs (of keys or megaflows) but
    /// one: that one (its index; `BURST` otherwise). Every run then has its
    /// flow once it is resolved: without megaflow runs (all of its key) a
    /// single pass resolves them (see `Engine::resolve_runs`), and with
    /// them too the burst is one group.
    pub(super) lone: usize,
    /// The frame mask of the one mask every live flow has, when they have
    /// one (its id, see [`FrameMask`]), and the flow table's
    /// [`mask_changes`](FlowTable::mask_changes) it was made at.
    pub(super) frame_mask: (u64, Option<(u32, FrameMask)>),
    /// Runs whose key and hash are not in their own slot yet: the slot
    /// `run_prev` names holds them (see [`Engine::own_keys`]).
    pub(super) borrowed: u64,
    /// Outer UDP source ports the exact-match cache had for the burst's
    /// packets (those of the `sport_known` bits; 0 when the entry had none,
    /// see [`EmcValue::sport`]).
    pub(super) sports: [u16; BURST],
    pub(super) sport_known: u64,
    /// Megaflow runs whose source ports ingress computed (`sports`), their
    /// frame keys not kept (until `Engine::own_keys` needs them). It does
    /// when the last megaflow run was of a flow that encapsulates:
    /// `sweep_sports` (that flow, and whether it does).
    pub(super) swept: u64,
    pub(super) sweep_sports: (Option<FlowHandle>, bool),
    /// Packets in the burst being processed: flows its packets point to
    /// (`flow_of[..burst_len]`) are not evicted until it is executed.
    pub(super) burst_len: usize,
    /// The bytes (`lens`) of the packets ingress left to classify, when it
    /// counted them on the way (frame keys' ingress does).
    pub(super) live_bytes: Option<u64>,
    /// The burst's flow groups (kept: see [`Engine::process`]).
    pub(super) groups: Option<Box<Groups>>,
}

// An exact-match entry with this value is one cache line.
const _: () = assert!(Emc::<EmcValue>::ENTRY_BYTES == 64);

/// How ingress reads the frames the parser's fast path would take, from a
/// port that is not an uplink (see [`Engine::stage_ingress`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Framing {
    /// Parsed into flow keys.
    Parse,
    /// Frame keys, hashed: the exact-match cache looks them up.
    Lookup,
    /// Frame keys while they find megaflow runs (the cache is passed by):
    /// not hashed, and parsed once the burst's run check gives up.
    MaskRuns,
}

/// What the exact-match cache holds for a key.
#[derive(Clone, Copy, Default)]
pub(super) struct EmcValue {
    pub flow: FlowHandle,
    /// The outer UDP source port packets of this key are encapsulated with
    /// (a function of the key alone for IP), computed at insertion when the
    /// flow sends to a tunnel: a hit need not hash the inner flow again.
    /// 0: not cached (the flow does not encapsulate, or the key is not IP).
    pub sport: u16,
}

/// Packets of a burst grouped by flow: (flow handle, member bits).
pub struct Groups {
    pub handles: [FlowHandle; BURST],
    pub members: [u64; BURST],
    pub len: usize,
    /// The bytes of the one group's packets when [`Groups::one`] was
    /// given them.
    pub one_bytes: Option<u64>,
    /// By a flow's slot index modulo [`GROUP_SLOTS`]: 1 + the group of the
    /// first flow of the burst with that remainder (0: none yet). A packet
    /// finds its group in one probe, not by a search of the groups so far
    /// (a burst of 32 flows compared each packet with 16 groups on
    /// average). Only the entries of the last burst's groups are cleared.
    slot_of: [u8; GROUP_SLOTS],
}

/// Entries of [`Groups`]' index (four times the largest burst).
const GROUP_SLOTS: usize = 256;
const _: () = assert!(GROUP_SLOTS >= 4 * BURST && GROUP_SLOTS.is_power_of_two() && BURST < u8::MAX as usize);

#[inline(always)]
fn group_slot(index: u32) -> usize {
    index as usize & (GROUP_SLOTS - 1)
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
            emc_gate: EmcGate::default(),
            smc: Smc::new(s.config.smc_entries),
            action_lists: std::collections::HashMap::new(),
            retired: std::collections::HashMap::new(),
            punt: s.punt,
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
            megaflows: Megaflows::new(),
            counters: Local::new(ports),
            next_flow: 1,
            keys: Box::new([FlowKey::ZERO; BURST]),
            hashes: [0; BURST],
            frames: Box::new([FrameKey::default(); BURST]),
            framed: 0,
            unparsed: 0,
            lens: [0; BURST],
            in_ports: [0; BURST],
            flow_of: [None; BURST],
            runs: 0,
            run_prev: [0; BURST],
            mask_runs: 0,
            lone: BURST,
            // No count matches: made before the first burst.
            frame_mask: (u64::MAX, None),
            borrowed: 0,
            sports: [0; BURST],
            sport_known: 0,
            swept: 0,
            sweep_sports: (None, false),
            burst_len: 0,
            live_bytes: None,
            groups: None,
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
    /// through every stage; the first `n` slots of `pkts` are empty after.
    /// `now` is in the setup's ticks.
    pub fn process<I: Io>(&mut self, in_port: u32, pkts: &mut Packets<I::Pkt>, n: usize, now: u64, io: &mut I) {
        let n = n.min(BURST);
        self.counters.add(Counter::Packets, n as u64);
        self.counters.port(in_port as usize, PortCounter::RxPackets, n as u64);
        self.stage_hardware(in_port, pkts, n, io);
        let lookup = self.emc_gate.lookup_now();
        // Frames the parser's fast path takes are looked up by their bytes
        // while the cache is looked up at all, and get frame keys while the
        // flows have one mask even when it is not (the packets of one
        // megaflow then take its flow without a lookup, see `mask_runs`).
        let framing = match (self.config.emc_entries > 0, lookup) {
            (false, _) => Framing::Parse,
            (true, true) => Framing::Lookup,
            (true, false) if self.frame_mask().is_some() => Framing::MaskRuns,
            (true, false) => Framing::Parse,
        };
        let live = self.stage_ingress(in_port, pkts, n, io, framing);
        let mut pending = if lookup { self.stage_emc(live, pkts) } else { self.stage_emc_bypassed(live, pkts) };
        // Every packet has the flow of the one that is not a run (see
        // `lone`: all resolved, a megaflow run's flow checked to be it), and
        // no revalidation can take it: one group, no pass. (Only the lone
        // packet's `flow_of` names the flow then: `resolve_runs` leaves the
        // runs' slots under this same condition.)
        let one = (pending == 0 && self.stale == 0).then(|| self.flow_of.get(self.lone).copied().flatten()).flatten();
        pending = self.stage_smc(pending);
        pending = self.stage_megaflow(pending);
        pending = self.stage_fresh(pending, pkts, n);
        self.stage_upcall(pending, pkts, now);
        // The groups' arrays (1 KiB) are kept between bursts, not zeroed for each.
        let mut groups = self.groups.take().unwrap_or_else(Groups::new);
        match one {
            Some(h) => groups.one(h, live, self.live_bytes),
            None => groups.fill(&self.flow_of, pkts, n),
        }
        self.stage_execute(&groups, pkts, now, io);
        self.groups = Some(groups);
        self.burst_len = 0;
        // Every slot is empty (the PMD receives into them next): each
        // packet was dropped where it was found wanting, or is in a group,
        // and each group's packets were taken by their actions or counted
        // and dropped (see `run_batch`). A pass to check cost a cycle a
        // packet.
        debug_assert!(pkts.iter().take(n).all(Option::is_none), "a packet left in its slot");
    }
}

impl Groups {
    pub fn new() -> Box<Self> {
        Box::new(Groups {
            handles: [FlowHandle { index: 0, generation: 0 }; BURST],
            members: [0; BURST],
            len: 0,
            one_bytes: None,
            slot_of: [0; GROUP_SLOTS],
        })
    }

    /// The burst's packets `members` are all of flow `h`: one group (what it
    /// held before is forgotten), of `bytes` bytes when they were counted.
    pub fn one(&mut self, h: FlowHandle, members: u64, bytes: Option<u64>) {
        self.clear();
        self.one_bytes = bytes;
        self.handles[0] = h;
        self.members[0] = members;
        self.len = 1;
        self.slot_of[group_slot(h.index)] = 1;
    }

    /// Forgets the groups of the last burst: their index entries, their count.
    #[inline(always)]
    fn clear(&mut self) {
        self.one_bytes = None;
        for k in 0..self.len.min(BURST) {
            self.slot_of[group_slot(self.handles[k].index)] = 0;
        }
        self.len = 0;
    }

    /// Groups the burst's remaining packets by flow (what it held before is
    /// forgotten). A packet of the previous packet's flow joins its group at
    /// once (runs).
    pub fn fill<P>(&mut self, flow_of: &[Option<FlowHandle>; BURST], pkts: &Packets<P>, n: usize) {
        self.clear();
        // The group of the packet before: its index, its flow, and the
        // members found since, added to the array when another flow's
        // packet comes (an update in the array for each packet was a
        // chain of stores and loads through memory).
        let mut last: Option<(usize, u32, u64)> = None;
        for i in 0..n.min(BURST) {
            let Some(h) = flow_of[i] else { continue };
            if pkts[i].is_none() {
                continue;
            }
            if let Some((k, index, members)) = &mut last {
                if *index == h.index {
                    *members |= 1 << i;
                    continue;
                }
                self.members[*k] |= *members;
            }
            let len = self.len;
            let s = group_slot(h.index);
            let g = usize::from(self.slot_of[s]);
            let found = if g == 0 {
                // No flow with this remainder yet: a new group.
                None
            } else if g <= len && self.handles[g - 1].index == h.index {
                Some(g - 1)
            } else {
                // Another flow took the entry first: this flow's group,
                // if it has one yet, is not indexed, so search for it.
                (0..len).find(|&k| self.handles[k].index == h.index)
            };
            let k = found.unwrap_or_else(|| {
                self.handles[len] = h;
                self.members[len] = 0;
                self.len += 1;
                if g == 0 {
                    self.slot_of[s] = self.len as u8;
                }
                len
            });
            last = Some((k, h.index, 1 << i));
        }
        if let Some((k, _, members)) = last {
            self.members[k] |= members;
        }
    }
}
