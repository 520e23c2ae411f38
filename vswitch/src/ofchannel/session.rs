//! One OpenFlow session's protocol: version negotiation, then every request
//! answered (or refused with the spec's error, carrying the request's first
//! bytes) in order. FLOW_MODs change the rule table at once and reach the
//! datapath together before any other message is handled (and when what was
//! read is done): a BARRIER_REPLY is sent once the datapath runs by them.

use super::hub::{Hub, Role};
use super::stats::{self, of_view};
use crate::flow::table::RuleId;
use crate::ofmap::N_TABLES;
use crate::ofmap::{to_actions, to_instructions, to_match};
use crate::switch::{OfFilter, OfRule, Origin, Switch};
use openflow::action::{port as ofp, NO_BUFFER};
use openflow::error::{reject, ErrorCode as E, Rejection};
use openflow::msg::{flow_flags, removed_reason, FlowMod, FlowModCommand, FlowRemoved, TABLE_ALL};
use openflow::{encode, error_reply, Header, Hello, Message, RoleMsg, SwitchConfig};

/// FLOW_MODs applied before the datapath is given them at the latest (a
/// batch is otherwise published when the peer has nothing more queued, or
/// before a message that must see it).
pub const BATCH: usize = 10_000;

/// What a handled message leads to.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages to send, in order.
    pub replies: Vec<Vec<u8>>,
    /// Close the connection after sending them.
    pub close: bool,
}

/// A session's state.
pub struct Session {
    pub id: u64,
    /// An active connection to a controller (its rules are the controller's).
    pub controller: bool,
    negotiated: bool,
    config: SwitchConfig,
    pub datapath_id: u64,
    /// What the peer is called in logs.
    pub peer: String,
    /// FLOW_MODs applied and not yet published, and the xid of the last.
    pending: usize,
    last_xid: u32,
    /// Rules those FLOW_MODs deleted that asked for FLOW_REMOVED: sent when
    /// the batch is published, with the counts they have then.
    removed: Vec<crate::switch::OfRuleView>,
}

impl Session {
    pub fn new(id: u64, controller: bool, datapath_id: u64, peer: String) -> Self {
        Self {
            id,
            controller,
            negotiated: false,
            // A tool on a listener takes no asynchronous message until it
            // sets a miss_send_len (Open vSwitch's default for service
            // connections); a controller gets them with the spec's 128.
            config: SwitchConfig { flags: 0, miss_send_len: if controller { 128 } else { 0 } },
            datapath_id,
            peer,
            removed: Vec::new(),
            pending: 0,
            last_xid: 0,
        }
    }

    /// The HELLO a session starts with.
    pub fn hello() -> Vec<u8> {
        encode(0, &Message::Hello(Hello::ours()))
    }

    /// Handles one framed message.
    pub fn handle(&mut self, raw: &[u8], switch: &Switch, hub: &Hub) -> Outcome {
        let mut out = Outcome::default();
        let (h, msg) = match openflow::decode(raw) {
            Ok(x) => x,
            Err(refused) => {
                let r = &refused.rejection;
                tracing::info!(peer = %self.peer, xid = refused.header.xid, code = %r.code, "openflow request refused: {}", r.detail);
                if !self.negotiated {
                    return self.hello_failed(&format!("first message refused: {r}"));
                }
                out.replies.push(error_reply(refused.header.xid, r.code, raw));
                return out;
            }
        };
        if !self.negotiated {
            let Message::Hello(hello) = &msg else {
                return self.hello_failed("the first message must be HELLO");
            };
            if hello.negotiate(h.version).is_none() {
                return self.hello_failed(&format!(
                    "this switch speaks OpenFlow 1.3 (0x04) only; the peer offered version {:#04x}{}",
                    h.version,
                    if hello.bitmap.is_some() { " with a bitmap without 1.3" } else { "" }
                ));
            }
            self.negotiated = true;
            if self.controller {
                tracing::info!(peer = %self.peer, "openflow session up (1.3)");
            } else {
                tracing::debug!(peer = %self.peer, "openflow session up (1.3)");
            }
            return out;
        }
        if matches!(msg, Message::FlowMod(_)) {
            self.pending += 1;
            self.last_xid = h.xid;
        } else if let Some(e) = self.flush(switch, hub) {
            out.replies.push(e);
        }
        match self.request(h, &msg, switch, hub) {
            Ok(replies) => out.replies.extend(replies),
            Err(r) => {
                tracing::info!(peer = %self.peer, xid = h.xid, kind = openflow::msg::kind::name(h.kind), code = %r.code, "openflow request refused: {}", r.detail);
                out.replies.push(error_reply(h.xid, r.code, raw));
            }
        }
        out
    }

    /// Publishes the FLOW_MODs applied so far, then sends FLOW_REMOVED for
    /// the rules they deleted that asked for it, with the counts the rules
    /// had when the datapath let them go; an ERROR (FLOW_MOD_FAILED UNKNOWN,
    /// with the last one's xid) when the datapath did not take them (they
    /// stay in the rule table and the next publication carries them).
    pub fn flush(&mut self, switch: &Switch, hub: &Hub) -> Option<Vec<u8>> {
        if self.pending == 0 {
            return None;
        }
        self.pending = 0;
        let gone = std::mem::take(&mut self.removed);
        let ids: Vec<RuleId> = gone.iter().map(|r| r.id).collect();
        let (done, counts) = switch.of_commit_counting(&ids);
        notify_removed(hub, &gone, &counts, removed_reason::DELETE);
        let e = done.err()?;
        tracing::warn!(peer = %self.peer, "openflow: {e}");
        Some(error_reply(self.last_xid, e.code, &[]))
    }

    /// Whether a batch is due for publication anyway.
    pub fn batch_full(&self) -> bool {
        self.pending >= BATCH
    }

    fn hello_failed(&self, why: &str) -> Outcome {
        tracing::warn!(peer = %self.peer, "openflow hello failed: {why}");
        let (typ, code) = E::HelloFailedIncompatible.type_code();
        let msg = Message::Error(openflow::ErrorMsg { typ, code, data: why.as_bytes().to_vec() });
        Outcome { replies: vec![encode(0, &msg)], close: true }
    }

    fn request(&mut self, h: Header, msg: &Message, switch: &Switch, hub: &Hub) -> Result<Vec<Vec<u8>>, Rejection> {
        let one = |m: Message| Ok(vec![encode(h.xid, &m)]);
        let slave = || {
            if hub.role(self.id) == Role::Slave {
                reject(E::BadRequestIsSlave, "this connection is in the slave role")
            } else {
                Ok(())
            }
        };
        match msg {
            Message::Hello(_) => Ok(Vec::new()),
            Message::EchoRequest(d) => one(Message::EchoReply(d.clone())),
            Message::EchoReply(_) => Ok(Vec::new()),
            Message::Error(e) => {
                let name = openflow::ErrorCode::from_type_code(e.typ, e.code).map_or("?", |c| c.name());
                tracing::warn!(peer = %self.peer, xid = h.xid, "openflow peer sent an error: type {} code {} ({name})", e.typ, e.code);
                Ok(Vec::new())
            }
            Message::FeaturesRequest => one(Message::FeaturesReply(openflow::Features {
                datapath_id: self.datapath_id,
                n_buffers: 0,
                n_tables: N_TABLES,
                auxiliary_id: 0,
                capabilities: openflow::msg::CAPABILITIES,
            })),
            Message::GetConfigRequest => one(Message::GetConfigReply(self.config)),
            Message::SetConfig(c) => {
                if c.flags & !3 != 0 {
                    return reject(E::SwitchConfigFailedBadFlags, format!("flags {:#x}", c.flags));
                }
                if c.flags != 0 {
                    return reject(
                        E::SwitchConfigFailedBadFlags,
                        "fragment handling other than NORMAL is not supported",
                    );
                }
                self.config = *c;
                hub.set_asynchronous(self.id, self.controller || c.miss_send_len != 0);
                Ok(Vec::new())
            }
            Message::BarrierRequest => one(Message::BarrierReply),
            Message::RoleRequest(r) => self.role(h, r, hub),
            Message::FlowMod(fm) => {
                slave()?;
                self.flow_mod(fm, switch)?;
                Ok(Vec::new())
            }
            Message::MultipartRequest(m) => stats::reply(h.xid, m, switch, self.datapath_id),
            Message::PacketOut(po) => {
                slave()?;
                packet_out(po, switch)?;
                Ok(Vec::new())
            }
            Message::Experimenter { experimenter, .. } => {
                reject(E::BadRequestBadExperimenter, format!("experimenter {experimenter:#x}"))
            }
            other => reject(
                E::BadRequestBadType,
                format!("{} is a message a switch sends, not one it takes", openflow::msg::kind::name(other.kind())),
            ),
        }
    }

    fn role(&self, h: Header, r: &RoleMsg, hub: &Hub) -> Result<Vec<Vec<u8>>, Rejection> {
        let role = match r.role {
            0 => None,
            1 => Some(Role::Equal),
            2 => Some(Role::Master),
            3 => Some(Role::Slave),
            other => return reject(E::RoleRequestFailedBadRole, format!("role {other}")),
        };
        if let Some(role) = role {
            hub.set_role(self.id, role, r.generation_id).map_err(|s| {
                Rejection::new(
                    E::RoleRequestFailedStale,
                    format!("generation id {} is older than {}", r.generation_id, s.newest),
                )
            })?;
        }
        let now = hub.role(self.id);
        Ok(vec![encode(h.xid, &Message::RoleReply(RoleMsg { role: now.wire(), generation_id: r.generation_id }))])
    }

    fn flow_mod(&mut self, fm: &FlowMod, switch: &Switch) -> Result<(), Rejection> {
        let ports = switch.of_ports();
        if fm.flags & !flow_flags::ALL != 0 {
            return reject(E::FlowModFailedBadFlags, format!("flags {:#x}", fm.flags));
        }
        let deleting = matches!(fm.command, FlowModCommand::Delete | FlowModCommand::DeleteStrict);
        let table = match fm.table_id {
            TABLE_ALL if deleting => None,
            t if t < N_TABLES => Some(t),
            t => {
                return reject(
                    E::FlowModFailedBadTableId,
                    format!("table {t}: this switch has tables 0 to {}", N_TABLES - 1),
                )
            }
        };
        if fm.buffer_id != NO_BUFFER && !deleting {
            return reject(
                E::BadRequestBufferUnknown,
                format!("buffer {} (this switch buffers no packets)", fm.buffer_id),
            );
        }
        let matcher = to_match(&fm.matcher, ports)?;
        let filter = OfFilter {
            table,
            matcher,
            strict_priority: matches!(fm.command, FlowModCommand::ModifyStrict | FlowModCommand::DeleteStrict)
                .then_some(fm.priority),
            cookie: fm.cookie,
            cookie_mask: if fm.command == FlowModCommand::Add { 0 } else { fm.cookie_mask },
            out_port: if deleting { fm.out_port } else { ofp::ANY },
        };
        match fm.command {
            FlowModCommand::Add => {
                let (actions, goto) = to_instructions(&fm.instructions, fm.table_id, ports)?;
                switch.of_add(
                    OfRule {
                        table: fm.table_id,
                        priority: fm.priority,
                        matcher,
                        actions,
                        goto,
                        cookie: fm.cookie,
                        idle_timeout: fm.idle_timeout,
                        hard_timeout: fm.hard_timeout,
                        flags: fm.flags,
                        of_match: fm.matcher.clone(),
                        of_instructions: fm.instructions.clone(),
                    },
                    if self.controller { Origin::Controller } else { Origin::Openflow },
                )
            }
            FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
                // (A modify names its table: TABLE_ALL is refused above.)
                let (actions, goto) = to_instructions(&fm.instructions, fm.table_id, ports)?;
                switch.of_modify(&filter, &actions, goto, &fm.instructions);
                Ok(())
            }
            FlowModCommand::Delete | FlowModCommand::DeleteStrict => {
                let gone = switch.of_delete(&filter);
                self.removed.extend(gone.into_iter().filter(wants_removed));
                Ok(())
            }
        }
    }
}

/// PACKET_OUT: the controller's frame through the datapath. FLOOD and ALL
/// leave out (FLOOD) or include (ALL) the input port, as outputs to the
/// input port by number are skipped.
fn packet_out(po: &openflow::PacketOut, switch: &Switch) -> Result<(), Rejection> {
    let ports = switch.of_ports();
    if po.buffer_id != NO_BUFFER {
        return reject(E::BadRequestBufferUnknown, format!("buffer {} (this switch buffers no packets)", po.buffer_id));
    }
    let in_port =
        match po.in_port {
            ofp::CONTROLLER | ofp::ANY => None,
            p => Some(ports.datapath(p).ok_or_else(|| {
                Rejection::new(E::BadRequestBadPort, format!("in_port {p}: not a port of this switch"))
            })?),
        };
    if po.data.len() < 14 {
        return reject(E::BadRequestBadPacket, format!("{} bytes of data: not an Ethernet frame", po.data.len()));
    }
    let actions = to_actions(&[openflow::Instruction::ApplyActions(po.actions.clone())], ports)?;
    let mut out = Vec::with_capacity(actions.len());
    for a in actions {
        match (a, in_port) {
            (crate::actions::Action::Output(p), Some(i)) if p == i => {}
            (crate::actions::Action::InPort, Some(i)) => out.push(crate::actions::Action::Output(i)),
            (crate::actions::Action::InPort, None) => {
                return reject(E::BadActionBadOutPort, "output:IN_PORT for a packet from the controller")
            }
            (a, _) => out.push(a),
        }
    }
    switch.inject(po.data.clone(), in_port, out)
}

/// Whether a removed rule asked for FLOW_REMOVED (`send_flow_rem`).
pub fn wants_removed(r: &crate::switch::OfRuleView) -> bool {
    r.meta.flags & flow_flags::SEND_FLOW_REM != 0
}

/// FLOW_REMOVED to every session but slaves, for the removed rules that
/// asked for it (`send_flow_rem`).
pub fn notify_removed(
    hub: &Hub,
    gone: &[crate::switch::OfRuleView],
    counts: &std::collections::HashMap<crate::flow::table::RuleId, (u64, u64)>,
    reason: u8,
) {
    for r in gone.iter().filter(|r| wants_removed(r)) {
        let (packets, bytes) = counts.get(&r.id).copied().unwrap_or((0, 0));
        let age = r.meta.added.elapsed();
        let m = Message::FlowRemoved(FlowRemoved {
            cookie: r.meta.cookie,
            priority: r.meta.priority as u16,
            reason,
            table_id: r.meta.table,
            duration_sec: age.as_secs() as u32,
            duration_nsec: age.subsec_nanos(),
            idle_timeout: r.meta.idle_timeout,
            hard_timeout: r.meta.hard_timeout,
            packet_count: packets,
            byte_count: bytes,
            matcher: of_view(r).0,
        });
        hub.broadcast(&encode(0, &m), false);
    }
}

/// The datapath id: configured, or the first port's MAC address.
pub fn datapath_id(switch: &Switch) -> u64 {
    if let Some(d) = switch.config().openflow.datapath_id {
        return d;
    }
    switch
        .ports()
        .first()
        .and_then(|p| p.port.mac_or(p.spec.mac).ok())
        .map_or(1, |mac| mac.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b)))
}
