//! Keeping rules right when the world changes: underlay changes
//! (make-before-break replacement), port stop and start, shutdown.

use super::core::*;
use crate::config::offload::Policy;
use crate::offload_manager::translate::Refusal;
use offload::device::{HitCounts, RuleHandle};
use offload::rule::HwRule;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

impl Manager {
    /// Re-translates the hardware flows that depend on tunnels and replaces
    /// the changed ones make-before-break; retries flows waiting for a route.
    pub fn underlay_changed(&mut self) -> SyncReport {
        let mut report = SyncReport::default();
        let ids: Vec<u64> = self
            .flows
            .iter()
            .filter(|(_, r)| r.hw.as_ref().is_some_and(|h| !h.tunnels.is_empty()))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(rec) = self.flows.get(&id) else { continue };
            let priority = rec.priority ^ 1;
            let Some(hw) = rec.hw.as_ref() else { continue };
            let old_rule = hw.rule.clone();
            let old_handle = hw.handle;
            let (old_pps, old_created) = (hw.pps, hw.created);
            match self.context_translate(rec, priority) {
                Ok(t) => {
                    let new_rule = self.with_age(t.rule.clone());
                    if (HwRule { priority: old_rule.priority, ..new_rule.clone() }) == *old_rule {
                        report.unchanged += 1;
                        continue;
                    }
                    // Make before break: the new rule (other priority) first.
                    match self.create(id, &new_rule) {
                        Ok(handle) => {
                            self.stats.inserts += 1;
                            // The old rule's last hits, read as it goes.
                            if let Some(counts) = self.destroy(old_handle) {
                                self.account(id, counts);
                            }
                            self.handed.retain(|_, holder| *holder != id);
                            report.replaced += 1;
                            if let Some(rec) = self.flows.get_mut(&id) {
                                rec.priority = priority;
                                rec.hw = Some(Installed {
                                    handle,
                                    cookie: id,
                                    rule: Arc::new(new_rule),
                                    tunnels: t.tunnels,
                                    last: HitCounts::default(),
                                    last_at: Instant::now(),
                                    pps: old_pps,
                                    created: old_created,
                                });
                                self.dirty.push(id);
                            }
                        }
                        Err(e) => {
                            // The old rule is wrong now: back to software.
                            self.retire(id);
                            *self.stats.failures_by_device_error.entry(e.kind.to_string()).or_default() += 1;
                            self.refuse(id, Reason::Device(e));
                        }
                    }
                }
                Err(r) => {
                    self.retire(id);
                    self.refuse(id, Reason::Translate(r));
                }
            }
        }
        self.stats.replacements += report.replaced;
        self.stats.unchanged_on_underlay_change += report.unchanged;
        // Flows that waited for a route or neighbour may translate now.
        let waiting: Vec<u64> = self
            .flows
            .iter()
            .filter(|(_, r)| matches!(r.state, State::Refused(Reason::Translate(Refusal::Unresolved(_)))))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            let ready =
                self.flows.get(&id).is_some_and(|r| self.config.policy == Policy::All || r.pps >= self.config.min_pps);
            if ready {
                self.offload(id);
            } else if let Some(rec) = self.flows.get_mut(&id) {
                rec.state = State::Software;
                self.dirty.push(id);
            }
        }
        report
    }

    pub(super) fn check_underlay(&mut self) -> SyncReport {
        let g = self.underlay.generation();
        if g == self.generation {
            return SyncReport::default();
        }
        self.generation = g;
        let report = self.underlay_changed();
        if self.recent.len() == RECENT_UNDERLAY_CHECKS {
            self.recent.pop_front();
        }
        self.recent.push_back((g, report));
        report
    }

    /// The work done for underlay generations after `since` (by the
    /// periodic check or a sync): what a command that changed the underlay
    /// at `since` caused, with any change that came after it.
    pub fn underlay_work_since(&self, since: u64) -> SyncReport {
        self.recent.iter().filter(|(g, _)| *g > since).fold(SyncReport::default(), |mut sum, (_, r)| {
            sum.replaced += r.replaced;
            sum.unchanged += r.unchanged;
            sum
        })
    }

    /// A port is stopping: the device drops its rules (as a NIC does);
    /// their flows wait to be installed again.
    pub fn port_stopping(&mut self, ethdev: u16) -> usize {
        // No rule for it until it is up again (a stopped port takes none,
        // and a NIC would flush it).
        self.stopped.insert(ethdev);
        let dropped: HashMap<RuleHandle, Option<HitCounts>> = self.device.port_stopped(ethdev).into_iter().collect();
        self.jumps.retain(|_, h| !dropped.contains_key(h));
        let gone: Vec<(u64, Option<HitCounts>)> =
            self.flows.iter().filter_map(|(id, rec)| Some((*id, *dropped.get(&rec.hw.as_ref()?.handle)?))).collect();
        for (id, counts) in &gone {
            // Their last hits, read as the port stopped.
            if let Some(c) = counts {
                self.account(*id, *c);
            }
            if let Some(rec) = self.flows.get_mut(id) {
                if let Some(h) = rec.hw.take() {
                    self.handed.remove(&h.cookie);
                }
                rec.state = State::Pending;
                self.hw_count -= 1;
                self.dirty.push(*id);
            }
            self.unseat_riders(*id, &State::Pending);
        }
        gone.len()
    }

    /// Installs again what a port stop took out.
    pub fn port_started(&mut self, ethdev: u16) -> usize {
        self.stopped.remove(&ethdev);
        let pending: Vec<u64> =
            self.flows.iter().filter(|(_, r)| r.state == State::Pending).map(|(id, _)| *id).collect();
        let mut n = 0;
        for id in pending {
            self.offload(id);
            if self.flows.get(&id).is_some_and(|r| r.hw.is_some()) {
                n += 1;
            }
        }
        self.stats.reinstalled += n as u64;
        n
    }

    /// Destroys every rule (their last hits counted first); returns how many.
    pub fn shutdown(&mut self) -> usize {
        let ids: Vec<u64> = self.flows.iter().filter(|(_, r)| r.hw.is_some()).map(|(id, _)| *id).collect();
        let deletes = self.stats.deletes;
        for id in ids {
            self.retire(id);
        }
        let jumps: Vec<RuleHandle> = self.jumps.drain().map(|(_, h)| h).collect();
        for h in jumps {
            self.destroy(h);
        }
        self.hw_count = 0;
        self.publish();
        (self.stats.deletes - deletes) as usize
    }
}
