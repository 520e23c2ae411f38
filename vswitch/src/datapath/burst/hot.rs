//! Hot-flow tracking: which flows keep the offload policy's rate long
//! enough to be reported to the offload manager.

use super::engine::*;
use crate::datapath::flows::{FlowEvent, FlowExtra};
use std::time::Duration;

impl Engine {
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
}
