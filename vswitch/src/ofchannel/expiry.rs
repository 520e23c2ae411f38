//! Rule timeouts (OpenFlow idle and hard timeouts; FLOW_REMOVED for rules
//! that asked), checked once a second off the PMDs, the standalone fail
//! mode's clean-up when the last controller is gone, and the ports' status
//! ([`super::port_status`]).

use super::ctx::Ctx;
use super::session::{notify_removed, wants_removed};
use crate::flow::table::RuleId;
use crate::switch::Origin;
use openflow::msg::removed_reason;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const PERIOD: Duration = Duration::from_secs(1);

/// Checks the timed rules and the ports every second until the stop.
pub fn run(ctx: &Ctx) {
    // Per rule: its packet count when last seen and when it last changed.
    let mut seen: HashMap<RuleId, (u64, Instant)> = HashMap::new();
    let mut ports = Vec::new();
    while !ctx.stop.load(Ordering::Relaxed) {
        let next = Instant::now() + PERIOD;
        check(ctx, &mut seen);
        super::port_status::check(ctx, &mut ports);
        while Instant::now() < next && !ctx.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn check(ctx: &Ctx, seen: &mut HashMap<RuleId, (u64, Instant)>) {
    let timed = ctx.switch.of_timed();
    if timed.is_empty() {
        seen.clear();
        return;
    }
    let now = Instant::now();
    let counts = if timed.iter().any(|t| t.1 != 0) {
        match ctx.switch.rule_counts() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("openflow idle timeouts: {e}");
                return;
            }
        }
    } else {
        HashMap::new()
    };
    let mut hard = Vec::new();
    let mut idle = Vec::new();
    for (id, idle_s, hard_s, added) in &timed {
        let packets = counts.get(id).map_or(0, |c| c.0);
        let e = seen.entry(*id).or_insert((packets, *added));
        if e.0 != packets {
            *e = (packets, now);
        }
        if *hard_s != 0 && now.duration_since(*added) >= Duration::from_secs(u64::from(*hard_s)) {
            hard.push(*id);
        } else if *idle_s != 0 && now.duration_since(e.1) >= Duration::from_secs(u64::from(*idle_s)) {
            idle.push(*id);
        }
    }
    seen.retain(|id, _| timed.iter().any(|t| t.0 == *id));
    for (ids, reason) in [(hard, removed_reason::HARD_TIMEOUT), (idle, removed_reason::IDLE_TIMEOUT)] {
        if ids.is_empty() {
            continue;
        }
        let gone = ctx.switch.of_remove(|id, _| ids.contains(&id));
        // The counts FLOW_REMOVED carries are read after the removal is
        // published (the hits until the datapath let the rules go).
        let wanted: Vec<RuleId> = gone.iter().filter(|r| wants_removed(r)).map(|r| r.id).collect();
        let (done, last) = ctx.switch.of_commit_counting(&wanted);
        if let Err(e) = done {
            tracing::warn!("openflow timeouts: {e}");
        }
        tracing::debug!(rules = gone.len(), reason, "openflow rules timed out");
        notify_removed(&ctx.hub, &gone, &last, reason);
        for g in &gone {
            seen.remove(&g.id);
        }
    }
}

/// The last controller is gone in standalone mode: its rules go, and the
/// switch forwards by the file's and vswitchctl's rules until one is back.
pub fn standalone(ctx: &Ctx) {
    let gone = ctx.switch.of_remove(|_, m| m.origin == Origin::Controller);
    // No controller to tell (FLOW_REMOVED): the counts are read only to be
    // let go (see `Switch::of_commit_counting`).
    let ids: Vec<RuleId> = gone.iter().filter(|r| wants_removed(r)).map(|r| r.id).collect();
    match ctx.switch.of_commit_counting(&ids).0 {
        Ok(()) => tracing::warn!(
            rules = gone.len(),
            "no OpenFlow controller connected (fail_mode standalone): the controllers' rules were removed"
        ),
        Err(e) => tracing::error!("fail_mode standalone: removing the controllers' rules: {e}"),
    }
}
