//! The stages that classify a burst: the (model) e-switch, the exact-match
//! and signature caches, the megaflow classifier, the upcall to the rule
//! table (ingress is in `ingress`).

use super::engine::*;
use crate::actions::{Action, PacketBuf};
use crate::datapath::counters::{Counter, DropReason, PortCounter};
use crate::datapath::flows::FlowHandle;
use crate::flow::emc::NO_SLOT;
use crate::flow::{dense, Bits};
use crate::packet::key::VLAN_PRESENT;
use crate::packet::parse::{ETH_TYPE_QINQ, ETH_TYPE_VLAN};
use crate::packet::{Field, FlowMask};
use offload::model::Verdict;
use std::sync::Arc;

impl Engine {
    /// The (model) e-switch takes the packets its rules match, as a NIC's
    /// e-switch would before they reach the representor: they are edited,
    /// sent or dropped by it and never reach the software path. Misses stay.
    pub fn stage_hardware<I: Io>(&mut self, in_port: u32, pkts: &mut Packets<I::Pkt>, n: usize, io: &mut I) {
        let Some(hw) = &self.hardware else { return };
        let Some(&ethdev) = hw.ethdev.get(in_port as usize) else { return };
        let t0 = crate::arch::cycles();
        let (mut taken, mut bytes) = (0u64, 0u64);
        let counters = &mut self.counters;
        hw.eswitch.with_session(&mut |session| {
            for slot in pkts.iter_mut().take(n) {
                let Some(p) = slot.as_mut() else { continue };
                let len = p.len() as u64;
                match session.process(ethdev, p) {
                    Verdict::Miss => continue,
                    Verdict::Output(e) => match hw.port_of.get(usize::from(e)).copied().flatten() {
                        Some(out) => {
                            if let Some(p) = slot.take() {
                                io.send(out, p, counters);
                            }
                        }
                        None => {
                            *slot = None;
                            counters.drop(DropReason::HwUnknownPort, 1);
                        }
                    },
                    Verdict::Drop => {
                        *slot = None;
                        counters.drop(DropReason::HwRuleDrop, 1);
                    }
                    Verdict::Error => {
                        *slot = None;
                        counters.drop(DropReason::HwError, 1);
                    }
                    // The same reasons software counts for these frames.
                    Verdict::RxOverMtu => {
                        *slot = None;
                        counters.drop(DropReason::RxMtu, 1);
                    }
                    Verdict::TxOverMtu(e) => {
                        *slot = None;
                        counters.drop(DropReason::Mtu, 1);
                        if let Some(out) = hw.port_of.get(usize::from(e)).copied().flatten() {
                            counters.port(out as usize, PortCounter::TxDropped, 1);
                        }
                    }
                }
                taken += 1;
                bytes += len;
            }
        });
        if taken > 0 {
            self.counters.add(Counter::HwPackets, taken);
            self.counters.add(Counter::HwBytes, bytes);
            self.counters.port(in_port as usize, PortCounter::HwRxPackets, taken);
            // Received like any packet (rx_packets is counted for the whole
            // burst before this stage; the bytes of the rest at ingress).
            self.counters.port(in_port as usize, PortCounter::RxBytes, bytes);
        }
        self.counters.add(Counter::HwCycles, crate::arch::cycles().wrapping_sub(t0));
    }

    /// The exact-match cache for the `pending` packets, in passes so cache
    /// misses overlap: prefetch every key's home entry, then compare keys
    /// there (frame keys for the `unparsed` packets, flow keys for the
    /// rest); for the keys not found at home, prefetch their tag lines,
    /// then their candidate entries, then compare. A packet with the key of
    /// the packet before it (a run, found at ingress) takes that packet's
    /// flow instead. Returns the misses, with their flow keys built.
    pub fn stage_emc<P: PacketBuf>(&mut self, mut pending: u64, pkts: &Packets<P>) -> u64 {
        let parsed = pending.count_ones();
        let lookups = pending & !(self.runs | self.mask_runs);
        // Decapsulated keys (from a tunnel port) have tunnel metadata:
        // their entries' wide words are prefetched too (IPv6 keys from a
        // physical port read theirs on demand). Framed packets come from
        // a physical port: when every lookup is one, the check is skipped.
        let phys = self.mtus.len();
        let all_framed = lookups & !self.unparsed == 0;
        let wide = |e: &Self, i: usize| !all_framed && e.in_ports[i] as usize >= phys;
        for i in Bits(lookups) {
            self.emc.prefetch_home(self.hashes[i], wide(self, i));
        }
        let mut hits = 0u64;
        let mut away = 0u64;
        for i in Bits(lookups) {
            let found = if self.unparsed & (1 << i) != 0 {
                self.emc.at_home_frame(&self.frames[i], self.hashes[i])
            } else {
                self.emc.at_home(&self.keys[i], self.hashes[i])
            };
            match found {
                Some(v) => self.emc_hit(i, v, &mut hits),
                None => away |= 1 << i,
            }
        }
        if away != 0 {
            for i in Bits(away) {
                self.emc.prefetch(self.hashes[i]);
            }
            let mut slots = [NO_SLOT; BURST];
            for i in Bits(away) {
                slots[i] = self.emc.candidate(self.hashes[i], wide(self, i));
            }
            for i in Bits(away) {
                let found = if self.unparsed & (1 << i) != 0 {
                    self.emc.verify_frame(slots[i], &self.frames[i], self.hashes[i])
                } else {
                    self.emc.verify(slots[i], &self.keys[i], self.hashes[i])
                };
                if let Some(v) = found {
                    self.emc_hit(i, v, &mut hits);
                }
            }
        }
        // The hits' flows are checked in a pass of their own, so that their
        // slots load while further keys are compared.
        for i in Bits(hits) {
            if self.flow_of[i].is_some_and(|h| self.flows.is_live(h)) {
                pending &= !(1 << i);
            } else {
                self.flow_of[i] = None;
            }
        }
        let cheap_misses = !self.smc_active();
        self.emc_gate.account(lookups.count_ones(), (lookups & !pending).count_ones(), cheap_misses);
        // Each hit's cached port, 0 when it has none (see `EmcValue::sport`).
        self.sport_known = hits & !pending;
        let mut uncounted = parsed;
        if self.mask_runs & pending != 0 {
            // Megaflow runs wait on packets looked up that missed: those go
            // to the megaflow classifier now (there is one mask, so no
            // signature cache), and the runs take their flows. Left to the
            // later stages, every packet of the runs would be parsed and
            // looked up by itself: each of the gate's probe bursts while
            // the cache misses (see `EmcGate`), at a million flows of one
            // megaflow.
            let own = lookups & pending;
            self.own_keys(own, pkts);
            let missed = self.stage_megaflow(own);
            uncounted -= (own & !missed).count_ones();
            pending = (pending & !own) | missed;
        }
        self.resolve_runs(pending, uncounted, pkts)
    }

    /// Packet `i` hit the exact-match cache with `v`: its flow (its slot
    /// prefetched for the liveness check) and cached source port.
    #[inline(always)]
    fn emc_hit(&mut self, i: usize, v: EmcValue, hits: &mut u64) {
        self.flows.prefetch_hot(v.flow.index);
        self.flow_of[i] = Some(v.flow);
        *hits |= 1 << i;
        self.sports[i] = v.sport;
    }

    /// The exact-match stage while the cache does not pay for its lookups
    /// (see `EmcGate`): the packets that are not runs (of a key, or of a
    /// megaflow) go to the megaflow classifier at once (nothing is inserted
    /// into the cache), then runs take their first packet's flow. Returns
    /// the misses.
    pub fn stage_emc_bypassed<P: PacketBuf>(&mut self, pending: u64, pkts: &Packets<P>) -> u64 {
        let parsed = pending.count_ones();
        let runs = pending & (self.runs | self.mask_runs);
        let own = pending & !runs;
        self.own_keys(own, pkts);
        self.counters.add(Counter::EmcSkipped, u64::from(own.count_ones()));
        let missed = self.stage_megaflow(own);
        // Counted as the megaflow stage's hits already: what is left to
        // count is the runs.
        self.sport_known = 0;
        self.resolve_runs(missed | runs, parsed - (own & !missed).count_ones(), pkts)
    }

    /// In order (a run's earlier packets first): each run packet whose
    /// previous packet has its flow takes it; so does each packet of that
    /// packet's megaflow (`mask_runs`) when the flow has the mask the frame
    /// mask was made from (it has: every live flow has that one mask, and
    /// none was added since ingress; checked all the same). The rest, and
    /// the packets of `pending` that are neither, are the misses, looked up
    /// by their own keys from here on. `uncounted`: the stage's packets no
    /// tier has counted yet; those that are not misses now are counted as
    /// exact-match hits (cache hits, runs) or megaflow hits (`mask_runs`).
    /// The misses get their own flow keys.
    fn resolve_runs<P: PacketBuf>(&mut self, mut pending: u64, uncounted: u32, pkts: &Packets<P>) -> u64 {
        let mut known = self.sport_known | self.swept;
        let mut by_mask = 0u32;
        let mask_id = self.frame_mask.1.map(|(id, _)| id);
        let lone = self.lone;
        if let Some(h) = self.flow_of.get(lone).copied().flatten().filter(|_| pending & (1 << lone) == 0) {
            // One packet looked up by itself, resolved: every run and
            // megaflow run is of its flow (see `lone`), no order to keep.
            // Megaflow runs need the flow to have the frame mask's mask.
            let megaflow = pending & self.mask_runs;
            if megaflow != 0 {
                // (A hint: set even when the mask check below fails.)
                self.hint_sweep(h);
            }
            if megaflow == 0 || self.flows.get(h).is_some_and(|f| Some(f.mask_id) == mask_id) {
                let runs = pending & (self.runs | self.mask_runs);
                // Nothing else is left to look up (`lone` is the only
                // packet looked up by itself): without a revalidation the
                // burst is one group of its flow, made without a look at
                // the others' slots (see `process`), which are left.
                debug_assert_eq!(pending & !runs, 0);
                if self.stale != 0 {
                    for i in dense(runs) {
                        self.flow_of[i] = Some(h);
                    }
                }
                let sport = self.sports[lone];
                if megaflow == 0 && sport != 0 && known & (1 << lone) != 0 {
                    // All of its key: its source port too (0: none cached,
                    // the flow does not encapsulate, or egress computes it
                    // once for the run, see `send_tunnel_many`).
                    for i in dense(runs) {
                        self.sports[i] = sport;
                    }
                    known |= runs;
                }
                by_mask = megaflow.count_ones();
                pending &= !runs;
            }
        }
        let mut checked: (usize, Option<FlowHandle>) = (BURST, None);
        for i in Bits(pending & (self.runs | self.mask_runs)) {
            let prev = usize::from(self.run_prev[i]) % BURST;
            if pending & (1 << prev) != 0 {
                continue;
            }
            if self.mask_runs & (1 << i) == 0 {
                self.flow_of[i] = self.flow_of[prev];
                pending &= !(1 << i);
                self.sports[i] = self.sports[prev];
                known |= ((known >> prev) & 1) << i;
                continue;
            }
            // Its own key, so its own outer source port (not cached). The
            // flow of packet `prev` (a packet looked up by itself, resolved
            // before this loop) is checked once for all of its megaflow run.
            if prev != checked.0 {
                let h = self.flow_of[prev].filter(|&h| self.flows.get(h).is_some_and(|f| Some(f.mask_id) == mask_id));
                if let Some(h) = h {
                    self.hint_sweep(h);
                }
                checked = (prev, h);
            }
            if let Some(h) = checked.1 {
                self.flow_of[i] = Some(h);
                pending &= !(1 << i);
                by_mask += 1;
            }
        }
        self.sport_known = known;
        self.counters.add(Counter::EmcHits, u64::from(uncounted - pending.count_ones() - by_mask));
        self.counters.add(Counter::MegaflowHits, u64::from(by_mask));
        self.own_keys(pending, pkts);
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
    pub(super) fn smc_active(&self) -> bool {
        self.smc.is_enabled() && self.megaflows.subtable_count() >= SMC_MIN_MASKS
    }

    #[inline(always)]
    pub(super) fn smc_insert(&mut self, i: usize, h: FlowHandle) {
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
        let found = self.megaflows.lookup_batch(&self.keys[..], pending, &self.flows);
        for i in Bits(found) {
            if let Some(h) = self.flows.handle_at(self.megaflows.found(i) as usize) {
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
            let found =
                self.megaflows.lookup(&self.keys[i], &self.flows).and_then(|ix| self.flows.handle_at(ix as usize));
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

    /// Inserts after a megaflow hit with probability 1/`emc_insert_inv_prob`,
    /// so that when there are far more flows than entries the cache does not
    /// churn on every packet (the Open vSwitch policy).
    #[inline]
    pub(super) fn emc_maybe_insert(&mut self, i: usize, h: FlowHandle) {
        if self.emc_gate.skipping() {
            return;
        }
        // `r < 2^64 / N` as a multiply: `r % N == 0` was a 64-bit division
        // on every megaflow hit (a quarter of that stage's cycles at 1M flows).
        let n = u128::from(self.config.emc_insert_inv_prob.max(1));
        if (u128::from(self.next_random()) * n) >> 64 == 0 {
            self.emc_insert(i, h);
        }
    }

    /// Inserts packet `i`'s key (its frame key if it has one) with flow
    /// `h`. The packet's flow key is built (a stage after the cache).
    #[inline]
    pub(super) fn emc_insert(&mut self, i: usize, h: FlowHandle) {
        if self.config.emc_entries > 0 {
            let encaps = self.encapsulates(h);
            let sport = if encaps { crate::packet::key::key_src_port(&self.keys[i]).unwrap_or(0) } else { 0 };
            let value = EmcValue { flow: h, sport };
            if self.framed & (1 << i) != 0 {
                // A run's frame key is its first packet's (a swept packet's
                // is back: see `own_keys`).
                let src = if self.runs & (1 << i) != 0 { usize::from(self.run_prev[i]) % BURST } else { i };
                debug_assert_eq!(self.swept & (1 << src), 0, "a frame key not kept");
                let fk = self.frames[src];
                self.emc.insert_frame(&fk, fk.hash(), value);
            } else {
                self.emc.insert(&self.keys[i], self.hashes[i], value);
            }
            self.counters.add(Counter::EmcInserts, 1);
        }
    }

    /// Whether flow `h` outputs to a tunnel port (encapsulates).
    fn encapsulates(&self, h: FlowHandle) -> bool {
        let phys = self.mtus.len();
        let out = |a: &Action| matches!(a, Action::Output(p) if *p as usize >= phys);
        self.flows.get(h).is_some_and(|f| f.actions.iter().any(out))
    }

    /// Flow `h` took a megaflow run: the next burst's megaflow runs get
    /// their source ports at ingress if it encapsulates (see `swept`). A
    /// flow's actions never change (a new one replaces it), so the answer
    /// is kept for as long as the runs are of the same flow.
    #[inline(always)]
    fn hint_sweep(&mut self, h: FlowHandle) {
        if self.sweep_sports.0 != Some(h) {
            self.sweep_sports = (Some(h), self.encapsulates(h));
        }
    }

    /// While flows are stale: the packets of the burst that found a stale
    /// flow in a cache have it revalidated first; those whose flow went are
    /// classified again (they join `pending`).
    pub fn stage_fresh<P: PacketBuf>(&mut self, mut pending: u64, pkts: &Packets<P>, n: usize) -> u64 {
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
        self.own_keys(pending, pkts);
        pending
    }
}

/// A megaflow's actions from its rule's, for packets from `in_port` (the
/// megaflow matches it exactly): `output:in_port` becomes that port, an
/// output to that port by name is skipped (Open vSwitch semantics). With the
/// drop reason when nothing is sent.
pub fn flow_actions(rule: Option<&crate::flow::Rule>, in_port: u32) -> FlowActions {
    let Some(rule) = rule else { return (Arc::from(Vec::new()), Some(DropReason::NoRule)) };
    if !rule.actions.iter().any(|a| matches!(a, Action::Output(_) | Action::InPort | Action::Controller { .. })) {
        return (Arc::from(rule.actions.clone()), Some(DropReason::RuleDrop));
    }
    let actions: Vec<Action> = rule
        .actions
        .iter()
        .filter(|a| **a != Action::Output(in_port))
        .map(|a| if *a == Action::InPort { Action::Output(in_port) } else { a.clone() })
        .collect();
    let sends = actions.iter().any(|a| matches!(a, Action::Output(_) | Action::Controller { .. }));
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
