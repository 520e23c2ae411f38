//! Into the device: flow events, translation, the capacity policy and
//! eviction, creation within the rate budget, refusals with a reason.

use super::core::*;
use crate::config::offload::Policy;
use crate::datapath::flows::{EventBatch, FlowEvent};
use crate::offload_manager::translate::{translate, Context, Refusal, Translation};
use offload::device::{DeviceError, ErrorKind, HitCounts, RuleHandle};
use offload::rte_flow::lower;
use offload::rule::{HwAction, HwRule};
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Manager {
    /// Handles one batch of flow events.
    pub fn events(&mut self, batch: EventBatch) {
        self.stats.events += batch.len() as u64;
        for ev in batch {
            match ev {
                FlowEvent::Installed { id, pmd, key, mask, actions, rule, via } => {
                    let rec = FlowRec {
                        pmd,
                        rule,
                        via,
                        key,
                        mask,
                        actions,
                        state: State::Software,
                        installed: Instant::now(),
                        pps: 0,
                        hot_for: Duration::ZERO,
                        hot_at: None,
                        rate_since: None,
                        waited: false,
                        offloaded_before: false,
                        hw: None,
                        hw_packets: 0,
                        hw_bytes: 0,
                        priority: 1,
                        rides: None,
                        riders: Vec::new(),
                        reported: None,
                    };
                    self.flows.insert(id, rec);
                    self.index_add(id);
                    self.dirty.push(id);
                    if self.config.policy == Policy::All {
                        self.offload(id);
                    }
                }
                FlowEvent::Hot { id, pps, hot_for } => {
                    let Some(rec) = self.flows.get_mut(&id) else { continue };
                    rec.pps = pps;
                    rec.hot_for = hot_for;
                    let now = Instant::now();
                    rec.reported = Some(now);
                    rec.hot_at.get_or_insert(now);
                    rec.rate_since.get_or_insert(now.checked_sub(hot_for).unwrap_or(now));
                    let retry = matches!(
                        rec.state,
                        State::Software | State::Evicted | State::Pending | State::Refused(Reason::NoSpace(_))
                    ) || matches!(&rec.state, State::Refused(Reason::Device(e)) if matches!(e.kind, ErrorKind::NoSpace | ErrorKind::Busy));
                    // Hot by the megaflow's rate over its PMDs (each PMD
                    // reports from its share of the threshold on; one PMD
                    // reports at the threshold).
                    let hot = self.pmds.len() <= 1 || self.megaflow_pps(id) >= self.config.min_pps;
                    if retry && hot {
                        self.offload(id);
                    }
                }
                FlowEvent::Removed { id, .. } => {
                    // A rule other PMDs' flows share stays; otherwise it
                    // goes, its last hits still counted in the totals.
                    if !self.leave(id) {
                        self.retire(id);
                    }
                    self.index_remove(id);
                    if let Some(rec) = self.flows.remove(&id) {
                        self.dirty.push(id);
                        // Its hardware counts stay with its rule.
                        if let (Some(rule), true) = (rec.rule, rec.hw_packets > 0) {
                            let mut r = self.shared.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                            for id in rec.via.iter().copied().chain([rule]) {
                                let e = r.entry(id).or_default();
                                e.0 += rec.hw_packets;
                                e.1 += rec.hw_bytes;
                            }
                        }
                    }
                }
                FlowEvent::Hits { .. } => {}
            }
        }
    }

    pub(super) fn context_translate(&self, rec: &FlowRec, priority: u32) -> Result<Translation, Refusal> {
        self.underlay.read(|tables| {
            let ctx = Context { ports: &self.ports, tables };
            translate(&rec.key, &rec.mask, &rec.actions, &ctx, priority)
        })
    }

    pub(super) fn with_age(&self, mut rule: HwRule) -> HwRule {
        if self.config.age {
            let timeout_s = self.idle_timeout.as_secs().clamp(1, u64::from(offload::rule::MAX_AGE_S)) as u32;
            let at = rule.actions.iter().position(|a| !matches!(a, HwAction::Count)).unwrap_or(0);
            rule.actions.insert(at, HwAction::Age { timeout_s });
        }
        rule
    }

    /// Destroys a rule; returns its last counts, as the device read them
    /// when it went.
    pub(super) fn destroy(&mut self, h: RuleHandle) -> Option<HitCounts> {
        match self.device.destroy(h) {
            Ok(counts) => {
                self.stats.deletes += 1;
                counts
            }
            Err(e) => {
                *self.stats.failures_by_device_error.entry(e.kind.to_string()).or_default() += 1;
                tracing::warn!("offload: destroying a rule: {e}");
                None
            }
        }
    }

    /// Destroys flow `id`'s rule with its last hits counted (every way a
    /// rule goes: removal, eviction, an unresolved tunnel, shutdown).
    /// Returns the rule, now gone from the flow.
    pub(super) fn retire(&mut self, id: u64) -> Option<Installed> {
        let handle = self.flows.get(&id)?.hw.as_ref()?.handle;
        if let Some(counts) = self.destroy(handle) {
            self.account(id, counts);
        }
        let hw = self.flows.get_mut(&id)?.hw.take();
        if let Some(h) = &hw {
            self.hw_count -= 1;
            self.handed.remove(&h.cookie);
        }
        // The flows that shared it start over in software.
        self.unseat_riders(id, &State::Software);
        hw
    }

    /// Installs `rule` for flow `id` (its jump rule first, if needed).
    pub(super) fn create(&mut self, id: u64, rule: &HwRule) -> Result<RuleHandle, DeviceError> {
        let group = self.config.group;
        if group > 0 && !self.jumps.contains_key(&rule.pattern.ingress) {
            let l = lower(&HwRule::jump(rule.pattern.ingress, group), 0, 0)
                .map_err(|e| DeviceError::new("lower", 22, 0, e.0))?;
            let h = self.device.create(&l)?;
            self.stats.inserts += 1;
            self.jumps.insert(rule.pattern.ingress, h);
        }
        let l = lower(rule, group, id).map_err(|e| DeviceError::new("lower", 22, 0, e.0))?;
        self.device.create(&l)
    }

    pub(super) fn refuse(&mut self, id: u64, reason: Reason) {
        if let Some(rec) = self.flows.get_mut(&id) {
            if rec.state != State::Refused(reason.clone()) {
                tracing::debug!(flow = id, %reason, "offload: stays in software");
            }
            rec.state = State::Refused(reason);
            self.dirty.push(id);
        }
    }

    /// The coldest hardware flow that may be evicted: (id, smoothed rate),
    /// from the list sorted at the last query.
    pub(super) fn coldest(&mut self) -> Option<(u64, u64)> {
        while let Some(&(pps, id)) = self.cold.get(self.cold_next) {
            if self.flows.get(&id).is_some_and(|r| r.hw.is_some()) {
                return Some((id, pps));
            }
            self.cold_next += 1;
        }
        None
    }

    /// Sorts the eviction candidates by their current hardware rate.
    pub(super) fn sort_cold(&mut self) {
        let now = Instant::now();
        self.cold.clear();
        self.cold_next = 0;
        for (id, r) in &self.flows {
            if let Some(h) = &r.hw {
                if now.duration_since(h.created) >= MIN_RESIDENCY {
                    self.cold.push((h.pps, *id));
                }
            }
        }
        self.cold.sort_unstable();
    }

    /// Tries to put flow `id` into the device.
    pub(super) fn offload(&mut self, id: u64) {
        let Some(rec) = self.flows.get(&id) else { return };
        if rec.hw.is_some() || rec.rides.is_some() {
            return;
        }
        // Another PMD's flow of this megaflow has its rule in: one rule.
        if let Some(owner) = self.rule_to_share(id) {
            return self.join(id, owner);
        }
        let t = match self.context_translate(rec, rec.priority) {
            Ok(t) => t,
            Err(r) => return self.refuse(id, Reason::Translate(r)),
        };
        let outputs = t.rule.actions.iter().filter_map(|a| match a {
            HwAction::Output(e) => Some(*e),
            _ => None,
        });
        if std::iter::once(t.rule.pattern.ingress).chain(outputs).any(|e| self.stopped.contains(&e)) {
            // A port of the rule is restarting: installed when it is up.
            if let Some(rec) = self.flows.get_mut(&id) {
                rec.state = State::Pending;
                self.dirty.push(id);
            }
            return;
        }
        if self.hw_count >= self.config.max_rules {
            let candidate = self.megaflow_pps(id);
            let hot_for = rec.hot_for;
            let proven = hot_for >= EVICT_EVIDENCE;
            match self.coldest() {
                Some((victim, pps))
                    if self.config.policy == Policy::Hot
                        && proven
                        && candidate as f64 > pps as f64 * self.config.hysteresis =>
                {
                    self.evict(victim);
                }
                other => {
                    let mut coldest = other.map_or(String::new(), |(_, p)| format!(", the coldest at {p} pps"));
                    if !proven && other.is_some() {
                        coldest += &format!(" (a rate kept for {} ms; evicting takes a second)", hot_for.as_millis());
                    }
                    if let Some(rec) = self.flows.get_mut(&id) {
                        rec.waited |= !rec.offloaded_before;
                    }
                    return self.refuse(
                        id,
                        Reason::NoSpace(format!(
                            "{} rules in use{coldest}; this flow at {candidate} pps",
                            self.hw_count
                        )),
                    );
                }
            }
        }
        if !self.budget.take() {
            self.stats.rate_limited += 1;
            if let Some(rec) = self.flows.get_mut(&id) {
                rec.state = State::Pending;
                self.dirty.push(id);
            }
            return;
        }
        let rule = Arc::new(self.with_age(t.rule));
        match self.create(id, &rule) {
            Ok(handle) => {
                self.installed(id, handle, rule, t.tunnels);
                self.seat_peers(id);
            }
            Err(e) => {
                *self.stats.failures_by_device_error.entry(e.kind.to_string()).or_default() += 1;
                self.refuse(id, Reason::Device(e));
            }
        }
    }

    /// Books a rule the device took for flow `id`: the flow's state, its
    /// hardware record, and the install latencies.
    pub(super) fn installed(
        &mut self,
        id: u64,
        handle: RuleHandle,
        rule: Arc<HwRule>,
        tunnels: Vec<(u32, Option<u32>)>,
    ) {
        self.stats.inserts += 1;
        self.hw_count += 1;
        if let Some(rec) = self.flows.get_mut(&id) {
            let first = !rec.offloaded_before;
            rec.offloaded_before = true;
            let ms = rec.installed.elapsed().as_secs_f64() * 1000.0;
            let since_ms = |t: Option<Instant>| t.map(|t| t.elapsed().as_secs_f64() * 1000.0);
            let (hot_ms, rate_ms) = (since_ms(rec.hot_at), since_ms(rec.rate_since));
            rec.state = State::Hardware;
            let now = Instant::now();
            rec.hw = Some(Installed {
                handle,
                cookie: id,
                rule,
                tunnels,
                last: HitCounts::default(),
                last_at: now,
                pps: rec.pps,
                created: now,
            });
            if first {
                push_sample(&mut self.latencies, ms);
                if rec.waited {
                    // Its delay is the table's (hotter flows held
                    // the rules), not the manager's.
                    self.stats.waited_for_room += 1;
                } else if let (Some(h), Some(r)) = (hot_ms, rate_ms) {
                    push_sample(&mut self.hot_latencies, h);
                    push_sample(&mut self.rate_latencies, r);
                }
                metrics::histogram!("vswitch_offload_install_to_active_seconds").record(ms / 1000.0);
            }
            self.dirty.push(id);
        }
    }

    pub(super) fn evict(&mut self, victim: u64) {
        if self.retire(victim).is_none() {
            return;
        }
        if let Some(rec) = self.flows.get_mut(&victim) {
            rec.state = State::Evicted;
        }
        self.stats.evictions += 1;
        self.dirty.push(victim);
    }

    /// Retries flows waiting for the rate budget: nothing to do (and no
    /// walk over the flows) while the budget has no operation to give.
    pub(super) fn pending(&mut self) {
        if !self.budget.available() {
            return;
        }
        let ids: Vec<u64> =
            self.flows.iter().filter(|(_, r)| r.state == State::Pending).map(|(id, _)| *id).take(1024).collect();
        for id in ids {
            self.offload(id);
        }
    }
}
