//! PORT_STATUS: the ports' link state and configuration, read once a second
//! off the PMDs (`rte_eth_link_get_nowait`); a port whose description
//! changed is sent to every session, slaves too (spec 6.3.7), as MODIFY, and
//! logged. Ports do not come and go while vswitchd runs (a reload that
//! changes them restarts the datapath), so ADD and DELETE are never sent.

use super::ctx::Ctx;
use super::stats::port_descs;
use openflow::msg::{port_reason, PortStatus};
use openflow::port::PortDesc;
use openflow::port::STATE_LINK_DOWN;
use openflow::{encode, Message};

/// Compares the ports with `last` (empty: the first look, nothing sent)
/// and announces those that changed. Returns how many did.
pub fn check(ctx: &Ctx, last: &mut Vec<PortDesc>) -> usize {
    let now = port_descs(&ctx.switch);
    let changed = changes(last, &now);
    for d in &changed {
        let up = d.state & STATE_LINK_DOWN == 0;
        tracing::info!(port = %d.name, openflow_port = d.port_no, link = if up { "up" } else { "down" }, "port status changed");
        let m = Message::PortStatus(PortStatus { reason: port_reason::MODIFY, desc: d.clone() });
        ctx.hub.broadcast(&encode(0, &m), true);
    }
    *last = now;
    changed.len()
}

/// The descriptions in `now` that differ from the same port's in `last`
/// (none when `last` is empty).
fn changes(last: &[PortDesc], now: &[PortDesc]) -> Vec<PortDesc> {
    if last.is_empty() {
        return Vec::new();
    }
    now.iter().filter(|d| last.iter().find(|l| l.port_no == d.port_no).is_some_and(|l| l != *d)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_changed_port_is_announced() {
        let port = |n: u32, state: u32| PortDesc { port_no: n, name: format!("p{n}"), state, ..Default::default() };
        let before = vec![port(1, 0), port(2, 0)];
        assert!(changes(&[], &before).is_empty(), "the first look announces nothing");
        assert!(changes(&before, &before).is_empty());
        let after = vec![port(1, 0), port(2, STATE_LINK_DOWN)];
        assert_eq!(changes(&before, &after), vec![port(2, STATE_LINK_DOWN)]);
    }
}
