//! A poll-mode thread: polls its rx queues in bursts, looks packets up in the
//! exact-match cache, then the megaflow classifier, upcalls the rest to the
//! rule table (within a budget), runs each flow's actions once per burst group
//! and flushes per-port tx buffers every iteration.

use super::counters::{self as ctr, DropReason, Local, Shared};
use super::flows::{Flow, FlowEvent, FlowHandle, FlowInfo, FlowTable, RemoveReason};
use super::tunnel::{NeighbourAction, Special, TunnelCtx};
use crate::actions::control_packets::{icmp4_frag_needed, icmp6_packet_too_big};
use crate::actions::vxlan;
use crate::actions::{self, Action};
use crate::dpdk::{rdtsc, tsc_hz, Burst, Eal, Mbuf, Mempool, RxQueue, TxQueue, MAX_BURST};
use crate::flow::hash::hash_key;
use crate::flow::{Dpcls, Emc, RuleTable};
use crate::packet::parse::{parse_into, ETH_TYPE_QINQ, ETH_TYPE_VLAN};
use crate::packet::{Field, FlowKey, FlowMask};
use crate::underlay::{Underlay, Unresolved};
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Packets taken per rx poll.
pub const RX_BURST: usize = 32;

/// A tx queue owned by one PMD, or shared (with a lock taken once per flush)
/// when the device has fewer tx queues than there are PMDs.
pub enum TxHandle {
    Owned(TxQueue),
    Shared(Arc<Mutex<TxQueue>>),
}

/// Settings every PMD gets.
#[derive(Debug, Clone)]
pub struct PmdConfig {
    pub upcall_budget: usize,
    pub emc_entries: usize,
    /// Insert into the exact-match cache after 1 in N megaflow hits.
    pub emc_insert_inv_prob: u64,
    pub max_flows: usize,
    pub idle_timeout: Duration,
}

/// Messages from the control thread.
pub enum PmdCommand {
    /// Use this rule table from now on; revalidate cached flows; then answer.
    SetRules { table: Arc<RuleTable>, done: Sender<RevalidateReport> },
    /// Answer with every flow.
    DumpFlows(Sender<Vec<FlowInfo>>),
}

/// What a revalidation did.
#[derive(Debug, Clone, Copy, Default)]
pub struct RevalidateReport {
    pub kept: usize,
    pub removed: usize,
}

/// What the control thread sees of a PMD.
pub struct PmdShared {
    pub index: usize,
    pub core: usize,
    pub counters: Shared,
}

/// Everything a PMD thread starts with.
pub struct PmdSetup {
    pub index: usize,
    pub core: usize,
    pub eal: Eal,
    /// (datapath port number, queue)
    pub rxqs: Vec<(u32, RxQueue)>,
    /// Indexed by port number.
    pub txqs: Vec<TxHandle>,
    pub mtus: Vec<u16>,
    pub pool: Arc<Mempool>,
    pub table: Arc<RuleTable>,
    pub config: PmdConfig,
    pub shared: Arc<PmdShared>,
    pub commands: Receiver<PmdCommand>,
    pub stop: Arc<AtomicBool>,
    pub events: Option<Sender<FlowEvent>>,
    pub underlay: Arc<Underlay>,
    /// Per physical port: whether it is an uplink (VTEP duties).
    pub uplink: Vec<bool>,
    /// Tunnel ports (numbered after the physical ports).
    pub tunnels: usize,
}

struct TxPort {
    queue: TxHandle,
    buf: Burst,
    /// Bytes of the packets in `buf`.
    bytes: u64,
    mtu: u16,
}

struct Pmd {
    index: usize,
    rxqs: Vec<(u32, RxQueue)>,
    tx: Vec<TxPort>,
    pool: Arc<Mempool>,
    table: Arc<RuleTable>,
    config: PmdConfig,
    shared: Arc<PmdShared>,
    commands: Receiver<PmdCommand>,
    stop: Arc<AtomicBool>,
    events: Option<Sender<FlowEvent>>,
    flows: FlowTable,
    tun: TunnelCtx,
    hz: u64,
    in_ports: [u32; MAX_BURST],
    emc: Emc<FlowHandle>,
    dpcls: Dpcls<FlowHandle>,
    counters: Local,
    next_flow: u64,
    idle_tsc: u64,
    upcalls_left: usize,
    rng: u64,
    // Per-burst scratch, kept to avoid re-initialising on every burst.
    keys: Box<[FlowKey; MAX_BURST]>,
    miss_keys: Box<[FlowKey; MAX_BURST]>,
    hashes: [u64; MAX_BURST],
    /// Packet lengths after any decapsulation (flow byte counts).
    lens: [u32; MAX_BURST],
    flow_of: [Option<FlowHandle>; MAX_BURST],
}

/// Runs a PMD until `stop` is set.
pub fn run(setup: PmdSetup) {
    if let Err(e) = crate::dpdk::os::pin_current_thread(setup.core) {
        tracing::warn!(pmd = setup.index, core = setup.core, "cannot pin PMD thread: {e}");
    }
    match setup.eal.register_thread() {
        Ok(lcore) => tracing::info!(pmd = setup.index, core = setup.core, lcore, "PMD thread started"),
        Err(e) => tracing::warn!(pmd = setup.index, "PMD thread not registered with EAL (no mempool cache): {e}"),
    }
    let hz = tsc_hz().max(1);
    let tx = setup
        .txqs
        .into_iter()
        .zip(setup.mtus)
        .map(|(queue, mtu)| TxPort { queue, buf: Burst::new(), bytes: 0, mtu })
        .collect::<Vec<_>>();
    let phys = tx.len();
    let ports = phys + setup.tunnels;
    let mut pmd = Pmd {
        tun: TunnelCtx::new(setup.underlay, phys, setup.uplink),
        hz,
        in_ports: [0; MAX_BURST],
        index: setup.index,
        rxqs: setup.rxqs,
        tx,
        pool: setup.pool,
        table: setup.table,
        idle_tsc: (setup.config.idle_timeout.as_secs_f64() * hz as f64) as u64,
        upcalls_left: setup.config.upcall_budget,
        rng: 0x9e37_79b9_7f4a_7c15 ^ (setup.index as u64 + 1),
        emc: Emc::new(setup.config.emc_entries.max(WAYS_MIN)),
        config: setup.config,
        shared: setup.shared,
        commands: setup.commands,
        stop: setup.stop,
        events: setup.events,
        flows: FlowTable::default(),
        dpcls: Dpcls::new(),
        counters: Local::new(ports),
        next_flow: 1,
        keys: Box::new([FlowKey::ZERO; MAX_BURST]),
        miss_keys: Box::new([FlowKey::ZERO; MAX_BURST]),
        hashes: [0; MAX_BURST],
        lens: [0; MAX_BURST],
        flow_of: [None; MAX_BURST],
    };
    pmd.main_loop(hz);
}

const WAYS_MIN: usize = 4;

impl Pmd {
    fn main_loop(&mut self, hz: u64) {
        let mut burst = Burst::new();
        let mut last_publish = rdtsc();
        let mut last_maintenance = last_publish;
        let mut last_rank = last_publish;
        while !self.stop.load(Ordering::Relaxed) {
            let start = rdtsc();
            self.upcalls_left = self.config.upcall_budget;
            self.tun.refresh();
            let mut received = 0usize;
            let mut rxqs = std::mem::take(&mut self.rxqs);
            for (port, q) in rxqs.iter_mut() {
                let n = q.rx_burst_up_to(&mut burst, RX_BURST);
                if n > 0 {
                    received += n;
                    self.process(*port, &mut burst, start);
                }
            }
            self.rxqs = rxqs;
            self.flush_all();
            let end = rdtsc();
            let spent = end.wrapping_sub(start);
            self.counters.add(if received > 0 { ctr::BUSY_CYCLES } else { ctr::IDLE_CYCLES }, spent);
            self.counters.add(ctr::ITERATIONS, 1);
            while let Ok(cmd) = self.commands.try_recv() {
                self.command(cmd, end, hz);
            }
            if end.wrapping_sub(last_maintenance) > hz / 10 {
                self.maintenance(end);
                last_maintenance = end;
            }
            if end.wrapping_sub(last_rank) > hz {
                self.dpcls.rank();
                last_rank = end;
            }
            if end.wrapping_sub(last_publish) > hz / 1000 {
                self.publish();
                last_publish = end;
            }
        }
        self.flush_all();
        for h in self.flows.handles() {
            self.remove_flow(h, RemoveReason::Shutdown);
        }
        self.publish();
        tracing::info!(pmd = self.index, "PMD thread stopped");
    }

    fn publish(&mut self) {
        self.counters.v[ctr::FLOWS] = self.flows.len() as u64;
        self.counters.publish(&self.shared.counters);
    }

    #[allow(clippy::needless_range_loop, reason = "packets are taken out of their slots by index")]
    fn process(&mut self, in_port: u32, burst: &mut Burst, now: u64) {
        let mut pkts: [Option<Mbuf>; MAX_BURST] = [const { None }; MAX_BURST];
        let mut n = 0usize;
        burst.drain(|m| {
            pkts[n] = Some(m);
            n += 1;
        });
        let port = in_port as usize;
        self.counters.add(ctr::PACKETS, n as u64);
        self.counters.add(ctr::port(port, ctr::PORT_RX_PACKETS), n as u64);

        // Parse and hash. On uplinks, the VTEP first takes ARP for its
        // addresses and decapsulates VXLAN sent to them.
        let mut pending: u64 = 0;
        let mut rx_bytes = 0u64;
        let vtep = self.tun.is_uplink(in_port);
        for i in 0..n {
            let Some(m) = pkts[i].as_mut() else { continue };
            let len = m.pkt_len();
            rx_bytes += len as u64;
            self.lens[i] = len as u32;
            // Parsed straight into the burst's key array.
            let layout = parse_into(m.data(), in_port, None, &mut self.keys[i]);
            if let Some(e) = layout.error {
                self.counters.add(ctr::PARSE_BASE + e as usize, 1);
                self.counters.drop(DropReason::ParseError, 1);
                pkts[i] = None;
                continue;
            }
            let mut from = in_port;
            if vtep {
                match self.tun.special(&self.keys[i], in_port) {
                    Special::None => {}
                    kind @ (Special::Arp | Special::Nd) => {
                        let l3 = usize::from(layout.l3_offset);
                        let action = match kind {
                            Special::Arp => self.tun.arp(m.data(), l3, in_port),
                            _ => self.tun.nd(m.data(), l3, in_port),
                        };
                        match action {
                            NeighbourAction::PassOn => {}
                            NeighbourAction::Consumed => {
                                pkts[i] = None;
                                continue;
                            }
                            NeighbourAction::Reply(len) => {
                                if let Some(mut m) = pkts[i].take() {
                                    if m.set_data(&self.tun.scratch[..len]) {
                                        self.counters.add(ctr::NEIGH_REPLIES_SENT, 1);
                                        output_phys(&mut self.tx, in_port, m, &mut self.counters);
                                    }
                                }
                                continue;
                            }
                        }
                    }
                    Special::Vxlan(udp_port) => {
                        let outer = layout.with_key(self.keys[i]);
                        let meta = match vxlan::decap_parsed(m, &outer, udp_port) {
                            Ok(meta) => meta,
                            Err(_) => {
                                self.counters.drop(DropReason::DecapError, 1);
                                pkts[i] = None;
                                continue;
                            }
                        };
                        let Some(t) = self.tun.tunnel_for(udp_port, meta.src, meta.dst, meta.vni) else {
                            self.counters.drop(DropReason::UnknownTunnel, 1);
                            pkts[i] = None;
                            continue;
                        };
                        if let Some(e) = parse_into(m.data(), t, Some(&meta), &mut self.keys[i]).error {
                            self.counters.add(ctr::PARSE_BASE + e as usize, 1);
                            self.counters.drop(DropReason::ParseError, 1);
                            pkts[i] = None;
                            continue;
                        }
                        from = t;
                        self.counters.add(ctr::DECAPSULATED, 1);
                        self.counters.add(ctr::port(t as usize, ctr::PORT_RX_PACKETS), 1);
                        self.lens[i] = m.pkt_len() as u32;
                        self.counters.add(ctr::port(t as usize, ctr::PORT_RX_BYTES), u64::from(self.lens[i]));
                    }
                }
            }
            self.in_ports[i] = from;
            self.hashes[i] = hash_key(&self.keys[i]);
            self.flow_of[i] = None;
            pending |= 1 << i;
        }
        self.counters.add(ctr::port(port, ctr::PORT_RX_BYTES), rx_bytes);

        // Exact-match cache, in three passes so cache misses overlap: prefetch
        // every tag line, then every candidate entry, then compare keys.
        let parsed = pending.count_ones();
        for i in Bits(pending) {
            self.emc.prefetch(self.hashes[i]);
        }
        let mut slots = [None; MAX_BURST];
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
        self.counters.add(ctr::EMC_HITS, u64::from(parsed - pending.count_ones()));

        // Megaflow classifier for the misses, as one batch.
        if pending != 0 {
            let miss_keys = &mut self.miss_keys;
            let mut miss_idx = [0u8; MAX_BURST];
            let mut m = 0;
            for i in Bits(pending) {
                miss_keys[m] = self.keys[i];
                miss_idx[m] = i as u8;
                m += 1;
            }
            let mut found = [None; MAX_BURST];
            self.dpcls.lookup_batch(&self.miss_keys[..m], &mut found[..m]);
            for j in 0..m {
                let i = usize::from(miss_idx[j]);
                if let Some(h) = found[j].filter(|h| self.flows.is_live(*h)) {
                    self.flow_of[i] = Some(h);
                    pending &= !(1 << i);
                    self.counters.add(ctr::MEGAFLOW_HITS, 1);
                    self.emc_maybe_insert(i, h);
                }
            }
        }

        // Upcalls.
        for i in Bits(pending) {
            // A flow installed for an earlier packet of this burst may cover it.
            if let Some(h) = self.dpcls.lookup(&self.keys[i]).filter(|h| self.flows.is_live(*h)) {
                self.flow_of[i] = Some(h);
                self.counters.add(ctr::MEGAFLOW_HITS, 1);
                self.emc_insert(i, h);
                continue;
            }
            if self.upcalls_left == 0 {
                self.counters.drop(DropReason::UpcallBudget, 1);
                pkts[i] = None;
                continue;
            }
            self.upcalls_left -= 1;
            let t0 = rdtsc();
            let key = self.keys[i];
            match self.install(&key, now) {
                Some(h) => {
                    self.flow_of[i] = Some(h);
                    self.emc_insert(i, h);
                }
                None => {
                    self.counters.drop(DropReason::FlowLimit, 1);
                    pkts[i] = None;
                }
            }
            self.counters.add(ctr::UPCALLS, 1);
            self.counters.add(ctr::UPCALL_CYCLES, rdtsc().wrapping_sub(t0));
        }

        // Group packets by flow, then run each group's actions once.
        let mut groups: [(u32, u64); MAX_BURST] = [(u32::MAX, 0); MAX_BURST];
        let mut handles = [FlowHandle { index: 0, generation: 0 }; MAX_BURST];
        let mut ngroups = 0;
        for (i, pkt) in pkts.iter().enumerate().take(n) {
            if pkt.is_none() {
                continue;
            }
            let Some(h) = self.flow_of[i] else { continue };
            match (0..ngroups).find(|&g| groups[g].0 == h.index) {
                Some(g) => groups[g].1 |= 1 << i,
                None => {
                    groups[ngroups] = (h.index, 1 << i);
                    handles[ngroups] = h;
                    ngroups += 1;
                }
            }
        }
        for g in 0..ngroups {
            let members = groups[g].1;
            let Some(flow) = self.flows.get_mut(handles[g]) else {
                Bits(members).for_each(|i| pkts[i] = None);
                continue;
            };
            let bytes: u64 = Bits(members).map(|i| u64::from(self.lens[i])).sum();
            flow.packets += u64::from(members.count_ones());
            flow.bytes += bytes;
            flow.used_tsc = now;
            if let Some(reason) = flow.drop_reason {
                self.counters.drop(reason, u64::from(members.count_ones()));
                Bits(members).for_each(|i| pkts[i] = None);
                continue;
            }
            let mut x = Exec {
                tx: &mut self.tx,
                counters: &mut self.counters,
                pool: &self.pool,
                tun: &mut self.tun,
                hashes: &self.hashes,
                in_ports: &self.in_ports,
                now,
                hz: self.hz,
            };
            execute(&flow.actions, &mut pkts, members, &mut x);
        }
        // Anything still here was consumed by no output (freed on drop).
    }

    /// Inserts after a megaflow hit with probability 1/`emc_insert_inv_prob`,
    /// so that when there are far more flows than entries the cache does not
    /// churn on every packet (the Open vSwitch policy).
    #[inline]
    fn emc_maybe_insert(&mut self, i: usize, h: FlowHandle) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        if self.rng.is_multiple_of(self.config.emc_insert_inv_prob.max(1)) {
            self.emc_insert(i, h);
        }
    }

    #[inline]
    fn emc_insert(&mut self, i: usize, h: FlowHandle) {
        if self.config.emc_entries > 0 {
            self.emc.insert(&self.keys[i], self.hashes[i], h);
            self.counters.add(ctr::EMC_INSERTS, 1);
        }
    }

    /// Classifies `key`, installs the megaflow and returns its handle; `None`
    /// when the flow table is full.
    fn install(&mut self, key: &FlowKey, now: u64) -> Option<FlowHandle> {
        if self.flows.len() >= self.config.max_flows {
            return None;
        }
        let c = self.table.classify(key);
        let (actions, drop_reason): (Arc<[Action]>, Option<DropReason>) = match &c.rule {
            None => (Arc::from(Vec::new()), Some(DropReason::NoRule)),
            Some(r) if !r.actions.iter().any(|a| matches!(a, Action::Output(_))) => {
                (Arc::from(r.actions.clone()), Some(DropReason::RuleDrop))
            }
            Some(r) => (Arc::from(r.actions.clone()), None),
        };
        let mask = megaflow_mask(c.mask, &actions);
        let masked = key.masked(&mask);
        let id = ((self.index as u64) << 48) | self.next_flow;
        self.next_flow += 1;
        let flow = Flow {
            id,
            key: masked,
            mask,
            rule: c.rule,
            actions: Arc::clone(&actions),
            drop_reason,
            packets: 0,
            bytes: 0,
            created_tsc: now,
            used_tsc: now,
            reported_packets: 0,
            reported_bytes: 0,
        };
        let h = self.flows.insert(flow);
        if let Some(old) = self.dpcls.insert(&masked, &mask, h) {
            self.flows.remove(old);
        }
        if let Some(tx) = &self.events {
            let _ = tx.try_send(FlowEvent::Installed { id, pmd: self.index, key: masked, mask, actions });
        }
        Some(h)
    }

    fn remove_flow(&mut self, h: FlowHandle, reason: RemoveReason) {
        if let Some(flow) = self.flows.remove(h) {
            self.dpcls.remove(&flow.key, &flow.mask);
            if let Some(tx) = &self.events {
                let _ = tx.try_send(FlowEvent::Removed { id: flow.id, reason });
            }
        }
    }

    /// Idle expiry and hit-delta reports, every ~100 ms.
    fn maintenance(&mut self, now: u64) {
        let mut expired = 0;
        for h in self.flows.handles() {
            let Some(flow) = self.flows.get_mut(h) else { continue };
            if now.wrapping_sub(flow.used_tsc) > self.idle_tsc {
                self.remove_flow(h, RemoveReason::Idle);
                expired += 1;
                continue;
            }
            if let Some(tx) = &self.events {
                if flow.packets != flow.reported_packets {
                    let ev = FlowEvent::Hits {
                        id: flow.id,
                        packets: flow.packets - flow.reported_packets,
                        bytes: flow.bytes - flow.reported_bytes,
                    };
                    if tx.try_send(ev).is_ok() {
                        flow.reported_packets = flow.packets;
                        flow.reported_bytes = flow.bytes;
                    }
                }
            }
        }
        self.counters.add(ctr::FLOWS_EXPIRED, expired);
    }

    fn command(&mut self, cmd: PmdCommand, now: u64, hz: u64) {
        match cmd {
            PmdCommand::SetRules { table, done } => {
                self.table = table;
                let mut report = RevalidateReport::default();
                for h in self.flows.handles() {
                    let Some(flow) = self.flows.get(h) else { continue };
                    let c = self.table.classify(&flow.key);
                    let new_actions: &[Action] = c.rule.as_ref().map_or(&[], |r| &r.actions);
                    let new_mask = megaflow_mask(c.mask, new_actions);
                    // Keep a megaflow only if the new decision depends on no
                    // field outside it and acts the same.
                    if new_mask.is_subset_of(&flow.mask) && *new_actions == *flow.actions {
                        let rule = c.rule.clone();
                        if let Some(f) = self.flows.get_mut(h) {
                            f.rule = rule;
                        }
                        report.kept += 1;
                    } else {
                        self.remove_flow(h, RemoveReason::Revalidated);
                        report.removed += 1;
                    }
                }
                self.counters.add(ctr::FLOWS_REVALIDATED_OUT, report.removed as u64);
                self.publish();
                let _ = done.send(report);
            }
            PmdCommand::DumpFlows(reply) => {
                let in_emc: std::collections::HashSet<u32> =
                    self.emc.values().filter(|h| self.flows.is_live(**h)).map(|h| h.index).collect();
                let to_ms = |cycles: u64| (cycles as f64 * 1000.0 / hz as f64) as u64;
                let list = self
                    .flows
                    .handles()
                    .into_iter()
                    .filter_map(|h| {
                        let f = self.flows.get(h)?;
                        Some(FlowInfo {
                            id: f.id,
                            pmd: self.index,
                            key: f.key,
                            mask: f.mask,
                            actions: Arc::clone(&f.actions),
                            rule: f.rule.as_ref().map(|r| (r.id, r.priority)),
                            packets: f.packets,
                            bytes: f.bytes,
                            age_ms: to_ms(now.wrapping_sub(f.created_tsc)),
                            idle_ms: to_ms(now.wrapping_sub(f.used_tsc)),
                            in_emc: in_emc.contains(&h.index),
                        })
                    })
                    .collect();
                let _ = reply.send(list);
            }
        }
    }

    fn flush_all(&mut self) {
        for (port, tx) in self.tx.iter_mut().enumerate() {
            if !tx.buf.is_empty() {
                flush(tx, port, &mut self.counters);
            }
        }
    }
}

/// The megaflow mask for a decision: what the rule table consulted, plus
/// fields the actions' behaviour depends on, plus the input port (offload
/// rules always match their source port).
fn megaflow_mask(mut mask: FlowMask, actions: &[Action]) -> FlowMask {
    mask.exact(Field::InPort);
    if actions.iter().any(|a| matches!(a, Action::PopVlan | Action::PushVlan { .. } | Action::SetVlanVid(_))) {
        mask.exact(Field::VlanTci);
        mask.exact(Field::VlanTci2);
    }
    mask
}

fn flush(tx: &mut TxPort, port: usize, counters: &mut Local) {
    let bytes = std::mem::take(&mut tx.bytes);
    let sent = match &mut tx.queue {
        TxHandle::Owned(q) => q.tx_burst(&mut tx.buf),
        TxHandle::Shared(q) => match q.lock() {
            Ok(mut q) => q.tx_burst(&mut tx.buf),
            Err(poisoned) => poisoned.into_inner().tx_burst(&mut tx.buf),
        },
    };
    let unsent_bytes: u64 =
        if tx.buf.is_empty() { 0 } else { tx.buf.as_slice().iter().map(|m| m.pkt_len() as u64).sum() };
    counters.add(ctr::port(port, ctr::PORT_TX_PACKETS), sent as u64);
    counters.add(ctr::port(port, ctr::PORT_TX_BYTES), bytes - unsent_bytes);
    if !tx.buf.is_empty() {
        let dropped = tx.buf.len() as u64;
        counters.add(ctr::port(port, ctr::PORT_TX_DROPPED), dropped);
        counters.drop(DropReason::TxFull, dropped);
        tx.buf.clear();
    }
}

/// Indices of the set bits of a burst mask, lowest first.
#[derive(Clone, Copy)]
struct Bits(u64);

impl Iterator for Bits {
    type Item = usize;

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(i)
    }
}

/// Length of the Ethernet header with up to two VLAN tags.
#[inline]
fn l2_len(frame: &[u8]) -> usize {
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

/// Queues `m` on physical port `port` (the caller checked the MTU).
#[inline]
fn output_phys(tx: &mut [TxPort], port: u32, m: Mbuf, counters: &mut Local) {
    let Some(txp) = tx.get_mut(port as usize) else {
        counters.drop(DropReason::ActionError, 1);
        return;
    };
    let len = m.pkt_len() as u64;
    match txp.buf.push(m) {
        Ok(()) => txp.bytes += len,
        Err(m) => {
            flush(txp, port as usize, counters);
            match txp.buf.push(m) {
                Ok(()) => txp.bytes += len,
                Err(_) => counters.drop(DropReason::TxFull, 1),
            }
        }
    }
}

/// What running actions needs besides the packets.
struct Exec<'a> {
    tx: &'a mut [TxPort],
    counters: &'a mut Local,
    pool: &'a Mempool,
    tun: &'a mut TunnelCtx,
    hashes: &'a [u64; MAX_BURST],
    in_ports: &'a [u32; MAX_BURST],
    now: u64,
    hz: u64,
}

impl Exec<'_> {
    /// Sends packet `i` (`m`) out of `port`: a physical port (MTU checked) or
    /// a tunnel port (encapsulated towards its uplink).
    fn send(&mut self, port: u32, m: Mbuf, vni: Option<u32>, i: usize) {
        let phys = self.tx.len() as u32;
        if port < phys {
            let mtu = self.tx[port as usize].mtu;
            let frame = m.data();
            // Headers are at least 14 bytes: most frames pass without reading them.
            if frame.len() > usize::from(mtu) + 14 && frame.len() - l2_len(frame) > usize::from(mtu) {
                let l2 = l2_len(frame);
                self.too_big(m, usize::from(mtu), l2, i, port);
                return;
            }
            output_phys(self.tx, port, m, self.counters);
            return;
        }
        self.send_tunnel(port, m, vni, i);
    }

    fn send_tunnel(&mut self, port: u32, m: Mbuf, vni: Option<u32>, i: usize) {
        self.send_tunnel_many(port, vni, std::iter::once((i, m)));
    }

    /// Encapsulates packets (with their burst index) for tunnel port `port`
    /// and sends them out of the uplink; the encapsulation is resolved once
    /// for all of them (a flow's group shares port and VNI).
    fn send_tunnel_many(&mut self, port: u32, vni: Option<u32>, pkts: impl Iterator<Item = (usize, Mbuf)>) {
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
            if m.segments() != 1 {
                // Encapsulation (and the IPv6 UDP checksum) needs the whole
                // frame in one segment; the pool's buffers are sized for that.
                self.counters.drop(DropReason::ActionError, 1);
                continue;
            }
            let outer_ip_len = m.data_len() + overhead - 14;
            if outer_ip_len > usize::from(r.uplink_mtu) {
                let l2 = l2_len(m.data());
                // The largest inner IP packet that fits.
                let inner_mtu = (usize::from(r.uplink_mtu) + 14).saturating_sub(overhead + l2);
                self.too_big(m, inner_mtu, l2, i, r.uplink);
                continue;
            }
            if r.template.encap(&mut m, self.hashes[i]).is_err() {
                self.counters.drop(DropReason::ActionError, 1);
                continue;
            }
            self.counters.add(ctr::ENCAPSULATED, 1);
            self.counters.add(ctr::port(port as usize, ctr::PORT_TX_PACKETS), 1);
            self.counters.add(ctr::port(port as usize, ctr::PORT_TX_BYTES), m.pkt_len() as u64);
            output_phys(self.tx, r.uplink, m, self.counters);
        }
    }

    /// `n` packets could not be encapsulated: count them; for a missing
    /// neighbour, ask for it (rate-limited).
    fn unresolved(&mut self, e: Unresolved, n: u64) {
        match e {
            Unresolved::NoNeighbour { next_hop, port: uplink, local } => {
                self.counters.drop(DropReason::NeighbourMiss, n);
                if let Some(len) = self.tun.solicit(next_hop, uplink, local, self.now, self.hz) {
                    if let Some(mut req) = self.pool.alloc() {
                        if req.set_data(&self.tun.scratch[..len]) {
                            self.counters.add(ctr::NEIGH_REQUESTS_SENT, 1);
                            output_phys(self.tx, uplink, req, self.counters);
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
    fn too_big(&mut self, mut m: Mbuf, mtu: usize, l2: usize, i: usize, egress: u32) {
        self.counters.drop(DropReason::Mtu, 1);
        self.counters.add(ctr::port(egress as usize, ctr::PORT_TX_DROPPED), 1);
        let ingress = self.in_ports[i];
        if ingress as usize >= self.tx.len() {
            return; // arrived through a tunnel: no way back for ICMP here
        }
        let frame = m.data();
        let eth_type = u16::from_be_bytes([frame[l2 - 2], frame[l2 - 1]]);
        let mtu16 = mtu.min(usize::from(u16::MAX)) as u16;
        let len = match eth_type {
            crate::packet::parse::ETH_TYPE_IPV4 if frame.len() > l2 + 6 && frame[l2 + 6] & 0x40 != 0 => {
                icmp4_frag_needed(frame, l2, mtu16, &mut self.tun.scratch)
            }
            crate::packet::parse::ETH_TYPE_IPV6 => {
                icmp6_packet_too_big(frame, l2, mtu.max(1280) as u32, &mut self.tun.scratch)
            }
            _ => None,
        };
        if let Some(len) = len {
            if m.set_data(&self.tun.scratch[..len]) {
                self.counters.add(ctr::ICMP_TOO_BIG_SENT, 1);
                output_phys(self.tx, ingress, m, self.counters);
            }
        }
    }
}

/// Runs `actions` on the packets of one flow group (`members` bits of `pkts`).
fn execute(actions: &[Action], pkts: &mut [Option<Mbuf>; MAX_BURST], members: u64, x: &mut Exec<'_>) {
    let last = actions.len().saturating_sub(1);
    let mut vni = None;
    // One action over the whole group at a time: the dispatch is per action,
    // not per packet.
    for (ai, action) in actions.iter().enumerate() {
        match action {
            Action::SetTunnel(v) => vni = Some(*v),
            Action::Output(port) if ai == last && *port as usize >= x.tx.len() => {
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
                    match m.copy(x.pool) {
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
                        Action::SetTunnel(_) | Action::Output(_) | Action::Drop => Ok(()),
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
