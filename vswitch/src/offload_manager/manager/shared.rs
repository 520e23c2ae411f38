//! One megaflow, several PMDs. With receive queues spread over PMDs the
//! same megaflow (its masked key and mask) is installed by each PMD that
//! sees its packets, each with its own flow id; the device gets one rule.
//! The first flow to get it owns the rule (its handle and counters); the
//! others ride on it (state `hw`, no rule of their own). The rule goes
//! when the last of them goes: an owner removed hands the rule to a rider.
//! A megaflow is hot by the sum of its PMDs' rates (each PMD reports its
//! flows from its share of the threshold on).

use super::core::*;
use crate::packet::{FlowKey, FlowMask};
use std::time::{Duration, Instant};

/// A PMD's rate report counts towards its megaflow's sum for this long
/// (PMDs repeat their reports every 100 ms while a flow stays hot).
const REPORT_FRESH: Duration = Duration::from_millis(500);

impl Manager {
    fn megaflow_of(&self, id: u64) -> Option<(FlowKey, FlowMask)> {
        self.flows.get(&id).map(|r| (r.key, r.mask))
    }

    /// Flow `id` joins its megaflow's index.
    pub(super) fn index_add(&mut self, id: u64) {
        if let Some(m) = self.megaflow_of(id) {
            self.megaflows.entry(m).or_default().push(id);
        }
    }

    /// Flow `id` leaves the index (before its record goes).
    pub(super) fn index_remove(&mut self, id: u64) {
        let Some(m) = self.megaflow_of(id) else { return };
        if let Some(ids) = self.megaflows.get_mut(&m) {
            ids.retain(|&x| x != id);
            if ids.is_empty() {
                self.megaflows.remove(&m);
            }
        }
    }

    /// The other flows of `id`'s megaflow.
    fn peers(&self, id: u64) -> Vec<u64> {
        self.megaflow_of(id)
            .and_then(|m| self.megaflows.get(&m))
            .map(|ids| ids.iter().copied().filter(|&x| x != id).collect())
            .unwrap_or_default()
    }

    /// The megaflow's rate: flow `id`'s report and its peers' recent ones.
    pub(super) fn megaflow_pps(&self, id: u64) -> u64 {
        let now = Instant::now();
        let fresh = |r: &FlowRec| r.reported.is_some_and(|t| now.duration_since(t) < REPORT_FRESH);
        let own = self.flows.get(&id).map_or(0, |r| r.pps);
        own + self.peers(id).iter().filter_map(|p| self.flows.get(p)).filter(|r| fresh(r)).map(|r| r.pps).sum::<u64>()
    }

    /// A peer holding a rule flow `id` can share (same actions).
    pub(super) fn rule_to_share(&self, id: u64) -> Option<u64> {
        let rec = self.flows.get(&id)?;
        self.peers(id)
            .into_iter()
            .find(|p| self.flows.get(p).is_some_and(|o| o.hw.is_some() && o.actions == rec.actions))
    }

    /// Flow `id` rides on `owner`'s rule.
    pub(super) fn join(&mut self, id: u64, owner: u64) {
        if let Some(o) = self.flows.get_mut(&owner) {
            o.riders.push(id);
        }
        if let Some(rec) = self.flows.get_mut(&id) {
            rec.rides = Some(owner);
            rec.state = State::Hardware;
            rec.offloaded_before = true;
        }
        self.stats.shared_rules += 1;
        self.dirty.push(id);
    }

    /// Flow `id` is going (removed from its PMD): a rider gets off; an
    /// owner with riders hands its rule to the first of them. Returns
    /// whether the rule stays (nothing to destroy).
    pub(super) fn leave(&mut self, id: u64) -> bool {
        let Some(rec) = self.flows.get_mut(&id) else { return false };
        if let Some(owner) = rec.rides.take() {
            if let Some(o) = self.flows.get_mut(&owner) {
                o.riders.retain(|&r| r != id);
            }
            return true;
        }
        if rec.riders.is_empty() || rec.hw.is_none() {
            return false;
        }
        let riders = std::mem::take(&mut rec.riders);
        let hw = rec.hw.take();
        let priority = rec.priority;
        let heir = riders[0];
        for &r in &riders[1..] {
            if let Some(x) = self.flows.get_mut(&r) {
                x.rides = Some(heir);
            }
        }
        if let Some(cookie) = hw.as_ref().map(|h| h.cookie) {
            self.handed.insert(cookie, heir);
        }
        if let Some(h) = self.flows.get_mut(&heir) {
            h.rides = None;
            h.hw = hw;
            h.priority = priority;
            h.riders = riders[1..].to_vec();
        }
        self.dirty.push(heir);
        true
    }

    /// `owner`'s rule went (eviction, the underlay, a port stop,
    /// shutdown): its riders are in `state` now too.
    pub(super) fn unseat_riders(&mut self, owner: u64, state: &State) {
        let riders = self.flows.get_mut(&owner).map(|o| std::mem::take(&mut o.riders)).unwrap_or_default();
        for r in riders {
            if let Some(x) = self.flows.get_mut(&r) {
                x.rides = None;
                x.state = state.clone();
                self.dirty.push(r);
            }
        }
    }

    /// Flow `id` got its rule: the other PMDs' flows of its megaflow in
    /// software take it too.
    pub(super) fn seat_peers(&mut self, id: u64) {
        let Some(actions) = self.flows.get(&id).map(|r| r.actions.clone()) else { return };
        for p in self.peers(id) {
            let waiting =
                self.flows.get(&p).is_some_and(|r| r.hw.is_none() && r.rides.is_none() && r.actions == actions);
            if waiting {
                self.join(p, id);
            }
        }
    }

    /// The flow holding the rule the device reports by `cookie`.
    pub(super) fn holder(&self, cookie: u64) -> u64 {
        self.handed.get(&cookie).copied().unwrap_or(cookie)
    }

    /// The flows a hardware rule stands for: its owner and riders.
    pub(super) fn riders_of(&self, owner: u64) -> Vec<u64> {
        self.flows.get(&owner).map(|o| o.riders.clone()).unwrap_or_default()
    }
}
