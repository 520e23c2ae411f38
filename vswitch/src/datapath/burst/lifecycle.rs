//! The flow life cycle: install (with eviction under pressure), events to
//! the offload manager, idle expiry and maintenance, revalidation against a
//! new rule table, dumps.

use super::engine::*;
use super::stages::{flow_actions, megaflow_mask};
use crate::actions::Action;
use crate::datapath::counters::Counter;
use crate::datapath::flows::{Flow, FlowEvent, FlowExtra, FlowHandle, FlowInfo, RemoveReason};
use crate::flow::RuleTable;
use crate::packet::FlowKey;
use crossbeam_channel::{SendTimeoutError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

impl Engine {
    /// Classifies `key`, installs the megaflow and returns its handle. A full
    /// table first makes room (the flow idle longest among a random sample
    /// goes); `None` only when nothing could be evicted.
    pub(super) fn install(&mut self, key: &FlowKey, now: u64) -> Option<FlowHandle> {
        if self.flows.len() >= self.config.max_flows && !self.evict_one(now) {
            return None;
        }
        let c = self.table.classify(key);
        let memo = (c.rule.as_ref().map_or(u64::MAX, |r| r.id), key.in_port());
        // A decision through several tables is made for this packet: the
        // last rule's id does not name its actions.
        let walked = c.rule.as_ref().is_some_and(|r| !r.via.is_empty());
        let (actions, drop_reason) = match self.action_lists.get(&memo).filter(|_| !walked) {
            Some((a, d)) => (Arc::clone(a), *d),
            None if walked => flow_actions(c.rule.as_deref(), key.in_port()),
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
        let (rule, via) = c.rule.as_ref().map_or((None, Box::default()), |r| (Some(r.id), r.via.clone()));
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
        let old = self.megaflows.insert(&masked, &mask, h.index, &self.flows);
        if let Some(old) = old.and_then(|ix| self.flows.handle_at(ix as usize)) {
            // Same key and mask: the old flow is gone, and the manager hears of it.
            if let Some((f, _)) = self.flows.remove(old) {
                self.forget(&f);
                self.retire(&f);
                self.emit(FlowEvent::Removed { id: f.id, reason: RemoveReason::Replaced });
            }
        }
        self.emit(FlowEvent::Installed { id, pmd: self.index, key: masked, mask, actions, rule, via });
        Some(h)
    }

    /// Evicts the flow idle longest among [`EVICT_SAMPLE`] live flows drawn
    /// at random, sparing those recently hit in hardware. A flood's one-packet
    /// flows are idle longer than any established flow, so they are the ones
    /// that go. Returns whether a flow went.
    pub(super) fn evict_one(&mut self, now: u64) -> bool {
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
    pub(super) fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    pub(super) fn ticks(&self, d: Duration) -> u64 {
        (d.as_secs_f64() * self.hz as f64) as u64
    }

    /// Queues an event for the manager (sent at the end of the iteration).
    #[inline]
    pub(super) fn emit(&mut self, ev: FlowEvent) {
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

    pub(super) fn remove_flow(&mut self, h: FlowHandle, reason: RemoveReason) {
        if let Some((flow, mask)) = self.flows.remove(h) {
            self.forget(&flow);
            self.retire(&flow);
            self.megaflows.remove(&flow.key, &mask, h.index);
            self.emit(FlowEvent::Removed { id: flow.id, reason });
        }
    }

    /// Bookkeeping for a flow that left the table.
    #[inline]
    pub(super) fn forget(&mut self, flow: &Flow) {
        if flow.table_gen != self.table_gen {
            self.stale = self.stale.saturating_sub(1);
        }
    }

    /// Keeps a removed flow's counts with its rule (OpenFlow rule statistics
    /// outlive the megaflows that carried them).
    #[inline]
    fn retire(&mut self, flow: &Flow) {
        if let (Some(r), true) = (&flow.rule, flow.packets > 0) {
            for id in r.credited() {
                let e = self.retired.entry(id).or_default();
                e.0 += flow.packets;
                e.1 += flow.bytes;
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
    /// kept only if the new decision needs no field outside it, comes from
    /// the same rules and acts the same. A sweep in progress starts over
    /// (its tally carries on).
    pub fn set_rules(&mut self, table: Arc<RuleTable>) {
        self.set_rules_keeping(table, &[]);
    }

    /// [`set_rules`](Self::set_rules), keeping the counts of the rules in
    /// `keep` (sorted) even when they are in neither table: removed rules
    /// whose final counts are still to be read (FLOW_REMOVED), however many
    /// publications come before that.
    pub fn set_rules_keeping(&mut self, table: Arc<RuleTable>, keep: &[u64]) {
        // Counts of rules that are gone go with them (checked when they
        // pile up: a walk of the tables is not for every publication), a
        // publication after they went: those of the rules this one removes
        // are read after it (FLOW_REMOVED), with their last flows'.
        if self.retired.len() > table.len() + self.table.len() + keep.len() + 1024 {
            let live: std::collections::HashSet<u64> = table.rules().chain(self.table.rules()).map(|r| r.id).collect();
            self.retired.retain(|id, _| live.contains(id) || keep.binary_search(id).is_ok());
        }
        self.table = table;
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
    pub(super) fn revalidate_flow(&mut self, h: FlowHandle) -> bool {
        let Some(flow) = self.flows.get(h) else { return false };
        if flow.table_gen == self.table_gen {
            return true;
        }
        let c = self.table.classify(&flow.key);
        let (new_actions, _) = flow_actions(c.rule.as_deref(), flow.key.in_port());
        let new_mask = megaflow_mask(c.mask);
        // Kept only when the same rules decide it: its counts so far are
        // theirs (a flow that another rule now decides, with the same
        // actions, goes, and its counts stay with the rules it counted for).
        let same_rules = c.rule.as_deref().map(|r| (r.id, &*r.via)) == flow.rule.as_deref().map(|r| (r.id, &*r.via));
        if same_rules && new_mask.is_subset_of(self.flows.mask(flow)) && *new_actions == *flow.actions {
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
        self.emc.values().filter(|v| self.flows.is_live(v.flow)).map(|v| v.flow.index).collect()
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
                via: f.rule.as_ref().map(|r| r.via.clone()).unwrap_or_default(),
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
        self.megaflows.rank();
    }

    /// Updates the gauges; the caller publishes the counters.
    pub fn update_gauges(&mut self) {
        self.counters.set(Counter::Flows, self.flows.len() as u64);
    }
}
