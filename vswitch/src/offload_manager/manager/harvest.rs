//! Out of the device: hardware counters read every query interval into the
//! flows' statistics (and the PMDs' idle clocks), aged rules.

use super::core::*;
use crate::actions::Action;
use offload::device::HitCounts;
use offload::rule::HwAction;
use std::time::Instant;

impl Manager {
    /// Reads every hardware rule's counters; returns the flows hit since the
    /// last time, per PMD.
    pub fn query(&mut self) -> Vec<Vec<u64>> {
        let mut touched: Vec<Vec<u64>> = vec![Vec::new(); self.pmds.len()];
        let ids: Vec<u64> = self.flows.iter().filter(|(_, r)| r.hw.is_some()).map(|(id, _)| *id).collect();
        for id in ids {
            if self.harvest(id) {
                // The rule stands for its owner and the flows sharing it.
                for f in std::iter::once(id).chain(self.riders_of(id)) {
                    if let Some(t) = self.flows.get(&f).and_then(|r| touched.get_mut(r.pmd)) {
                        t.push(f);
                    }
                }
            }
        }
        self.sort_cold();
        touched
    }

    /// Reads flow `id`'s rule counters and adds what is new to the flow, the
    /// totals and its ports; returns whether there was anything. Done before
    /// a rule goes too, so that its last hits are not lost.
    pub(super) fn harvest(&mut self, id: u64) -> bool {
        let Some(handle) = self.flows.get(&id).and_then(|r| r.hw.as_ref()).map(|h| h.handle) else { return false };
        let counts = match self.device.query(handle) {
            Ok(c) => c,
            Err(e) => {
                *self.stats.failures_by_device_error.entry(format!("query_{}", e.kind)).or_default() += 1;
                return false;
            }
        };
        self.account(id, counts)
    }

    /// Adds what `counts` (the device's count for flow `id`'s current rule)
    /// holds beyond the last reading to the flow, the totals and its ports;
    /// returns whether there was anything.
    pub(super) fn account(&mut self, id: u64, counts: HitCounts) -> bool {
        let Some(rec) = self.flows.get_mut(&id) else { return false };
        let Some(hw) = rec.hw.as_mut() else { return false };
        // The NIC's answer: counters only grow; anything else is a reset.
        let dp = counts.packets.saturating_sub(hw.last.packets);
        let db = counts.bytes.saturating_sub(hw.last.bytes);
        let now = Instant::now();
        let secs = now.duration_since(hw.last_at).as_secs_f64().max(1e-3);
        hw.last = counts;
        hw.last_at = now;
        // Exponential smoothing by elapsed time: a few packets per query at
        // low rates would otherwise make the rate (and evictions) jump.
        let alpha = 1.0 - (-secs / RATE_SMOOTHING.as_secs_f64()).exp();
        hw.pps = (hw.pps as f64 + alpha * (dp as f64 / secs - hw.pps as f64)).round() as u64;
        if dp == 0 {
            return false;
        }
        rec.hw_packets += dp;
        rec.hw_bytes += db;
        self.stats.hw_packets += dp;
        self.stats.hw_bytes += db;
        // Per port: where the e-switch took the packets in and sent them out
        // (physical ports by the rule, tunnel ports by the flow).
        let phys = self.ports.len() as u32;
        let ports = &self.ports;
        let port_of = |ethdev: u16| ports.iter().position(|p| p.ethdev == ethdev).map(|i| i as u32);
        let rx = port_of(hw.rule.pattern.ingress).into_iter().chain(Some(rec.key.in_port()).filter(|&p| p >= phys));
        let tx = hw
            .rule
            .actions
            .iter()
            .filter_map(|a| match a {
                HwAction::Output(e) => port_of(*e),
                _ => None,
            })
            .chain(rec.actions.iter().filter_map(|a| match a {
                Action::Output(p) if *p >= phys => Some(*p),
                _ => None,
            }));
        for p in rx {
            let c = self.stats.hw_by_port.entry(p).or_default();
            c.rx_packets += dp;
            c.rx_bytes += db;
        }
        for p in tx {
            let c = self.stats.hw_by_port.entry(p).or_default();
            c.tx_packets += dp;
            c.tx_bytes += db;
        }
        self.dirty.push(id);
        true
    }

    /// Handles rules the device reports aged (idle for their AGE timeout).
    pub(super) fn aged(&mut self) -> Vec<Vec<u64>> {
        let mut expire: Vec<Vec<u64>> = vec![Vec::new(); self.pmds.len()];
        let Ok(cookies) = self.device.aged() else { return expire };
        for cookie in cookies {
            // Only our cookies; anything else from the device is ignored.
            let id = self.holder(cookie);
            if self.flows.get(&id).is_some_and(|r| r.hw.is_some()) {
                self.stats.aged += 1;
                for f in std::iter::once(id).chain(self.riders_of(id)) {
                    if let Some(e) = expire.get_mut(pmd_of(f)) {
                        e.push(f);
                    }
                }
            }
        }
        expire
    }
}
