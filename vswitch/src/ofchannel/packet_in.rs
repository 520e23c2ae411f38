//! PACKET_IN: what the PMDs queued for the controllers (the `controller`
//! action, rate-limited there) goes to every session not in the slave role,
//! with the rule's cookie and table, and NO_MATCH when the rule is the
//! table-miss entry (priority 0, empty match), ACTION otherwise. Taken from
//! the PMDs' queues only while a session has room: a controller slower than
//! the traffic leaves them full, and the PMDs drop the excess at no cost
//! but a counter (`controller_limit`) instead of this thread encoding
//! packet-ins nobody will read.

use super::ctx::Ctx;
use crate::datapath::punt::PacketIn;
use crate::ofmap::Ports;
use crossbeam_channel::{Receiver, Select};
use openflow::action::NO_BUFFER;
use openflow::msg::packet_in_reason;
use openflow::oxm::{Field, Oxm};
use openflow::{encode, Match, Message};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Delivers packet-ins until the stop.
pub fn run(ctx: &Ctx, queues: &[Receiver<PacketIn>]) {
    if queues.is_empty() {
        return;
    }
    let mut sel = Select::new();
    for q in queues {
        sel.recv(q);
    }
    while !ctx.stop.load(Ordering::Relaxed) {
        let Ok(op) = sel.select_timeout(Duration::from_millis(100)) else { continue };
        let i = op.index();
        let Ok(p) = op.recv(&queues[i]) else { continue };
        // Held while every session that takes packet-ins is full; sent to
        // nobody when none takes them.
        while ctx.hub.room() == Some(false) && !ctx.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_micros(200));
        }
        deliver(ctx, &p);
    }
}

fn deliver(ctx: &Ctx, p: &PacketIn) {
    let (cookie, table, miss) = p.rule.and_then(|r| ctx.switch.of_rule_brief(r)).unwrap_or((u64::MAX, 0, false));
    let m = Message::PacketIn(openflow::PacketIn {
        buffer_id: NO_BUFFER,
        total_len: p.total_len.min(u32::from(u16::MAX)) as u16,
        reason: if miss { packet_in_reason::NO_MATCH } else { packet_in_reason::ACTION },
        table_id: table,
        cookie,
        matcher: Match::new(vec![Oxm::exact(Field::InPort, u128::from(Ports::openflow(p.in_port)))]),
        data: p.data.clone(),
    });
    ctx.hub.broadcast(&encode(0, &m), false);
}
