//! What the manager publishes for the switch: per-flow views and the
//! statistics behind offload-show and /metrics.

use super::core::*;
use std::collections::BTreeMap;
use std::sync::Arc;

impl Manager {
    /// Updates the shared views and counters.
    pub fn publish(&mut self) {
        self.publish_views();
        self.publish_stats();
    }

    /// Updates the shared per-flow views (of the flows changed since).
    pub(super) fn publish_views(&mut self) {
        {
            let mut views = self.shared.flows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in self.dirty.drain(..) {
                match self.flows.get(&id) {
                    None => {
                        views.remove(&id);
                    }
                    Some(r) => {
                        views.insert(
                            id,
                            FlowOffload {
                                state: r.state.text(),
                                hw_packets: r.hw_packets,
                                hw_bytes: r.hw_bytes,
                                rule: r.hw.as_ref().map(|h| Arc::clone(&h.rule)),
                                proxy: self.proxy,
                                group: self.config.group,
                            },
                        );
                    }
                }
            }
        }
    }

    /// Updates the shared counters (a walk over every flow: less often).
    pub(super) fn publish_stats(&mut self) {
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        for r in self.flows.values() {
            *by_state.entry(r.state.name().to_owned()).or_default() += 1;
            if let State::Refused(reason) = &r.state {
                *reasons.entry(reason.kind()).or_default() += 1;
            }
        }
        self.stats.flows_by_state = by_state;
        self.stats.refusals_by_reason = reasons;
        self.stats.rules_in_device = self.device.rules();
        self.stats.flow_rules = self.hw_count;
        (self.stats.install_to_active_ms_p50, self.stats.install_to_active_ms_p99) = percentiles(&self.latencies);
        (self.stats.hot_to_active_ms_p50, self.stats.hot_to_active_ms_p99) = percentiles(&self.hot_latencies);
        (self.stats.rate_to_active_ms_p50, self.stats.rate_to_active_ms_p99) = percentiles(&self.rate_latencies);
        self.stats.install_to_active_samples = self.latencies.len();
        *self.shared.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = self.stats.clone();
    }
}
