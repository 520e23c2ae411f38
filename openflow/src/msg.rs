//! The messages and their bodies.

use crate::action::{decode_actions, decode_instructions, encode_actions, encode_instructions, Action, Instruction};
use crate::error::{reject, ErrorCode as E, OrLen, Rejection};
use crate::multipart::{MultipartReply, MultipartReplyBody, MultipartRequest};
use crate::oxm::Match;
use crate::port::PortDesc;
use crate::wire::{Reader, Writer};

/// Message type numbers (`OFPT_*`).
pub mod kind {
    pub const HELLO: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const ECHO_REQUEST: u8 = 2;
    pub const ECHO_REPLY: u8 = 3;
    pub const EXPERIMENTER: u8 = 4;
    pub const FEATURES_REQUEST: u8 = 5;
    pub const FEATURES_REPLY: u8 = 6;
    pub const GET_CONFIG_REQUEST: u8 = 7;
    pub const GET_CONFIG_REPLY: u8 = 8;
    pub const SET_CONFIG: u8 = 9;
    pub const PACKET_IN: u8 = 10;
    pub const FLOW_REMOVED: u8 = 11;
    pub const PORT_STATUS: u8 = 12;
    pub const PACKET_OUT: u8 = 13;
    pub const FLOW_MOD: u8 = 14;
    pub const MULTIPART_REQUEST: u8 = 18;
    pub const MULTIPART_REPLY: u8 = 19;
    pub const BARRIER_REQUEST: u8 = 20;
    pub const BARRIER_REPLY: u8 = 21;
    pub const ROLE_REQUEST: u8 = 24;
    pub const ROLE_REPLY: u8 = 25;

    /// The spec's name of a message type.
    pub fn name(t: u8) -> &'static str {
        const NAMES: [&str; 30] = [
            "HELLO",
            "ERROR",
            "ECHO_REQUEST",
            "ECHO_REPLY",
            "EXPERIMENTER",
            "FEATURES_REQUEST",
            "FEATURES_REPLY",
            "GET_CONFIG_REQUEST",
            "GET_CONFIG_REPLY",
            "SET_CONFIG",
            "PACKET_IN",
            "FLOW_REMOVED",
            "PORT_STATUS",
            "PACKET_OUT",
            "FLOW_MOD",
            "GROUP_MOD",
            "PORT_MOD",
            "TABLE_MOD",
            "MULTIPART_REQUEST",
            "MULTIPART_REPLY",
            "BARRIER_REQUEST",
            "BARRIER_REPLY",
            "QUEUE_GET_CONFIG_REQUEST",
            "QUEUE_GET_CONFIG_REPLY",
            "ROLE_REQUEST",
            "ROLE_REPLY",
            "GET_ASYNC_REQUEST",
            "GET_ASYNC_REPLY",
            "SET_ASYNC",
            "METER_MOD",
        ];
        NAMES.get(usize::from(t)).copied().unwrap_or("unknown")
    }
}

/// HELLO: the version bitmap element, if the peer sent one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// Bit `v` of word `v / 32` set: version `v` is supported.
    pub bitmap: Option<Vec<u32>>,
}

impl Hello {
    /// Ours: OpenFlow 1.3 only.
    pub fn ours() -> Self {
        Self { bitmap: Some(vec![1 << crate::VERSION]) }
    }

    /// The version both sides speak, given the peer's HELLO and its header
    /// version (spec 6.3.1): with a bitmap, the highest common bit; without,
    /// the smaller of the two header versions, if we speak it.
    pub fn negotiate(&self, header_version: u8) -> Option<u8> {
        let ok = match &self.bitmap {
            Some(words) => words.first().is_some_and(|w| w & (1 << crate::VERSION) != 0),
            None => header_version >= crate::VERSION,
        };
        ok.then_some(crate::VERSION)
    }

    fn encode(&self, w: &mut Writer) {
        if let Some(words) = &self.bitmap {
            w.u16(1).u16((4 + 4 * words.len()) as u16);
            for &x in words {
                w.u32(x);
            }
            w.pad8();
        }
    }

    fn decode(r: &mut Reader<'_>) -> Self {
        // Unknown elements are skipped (spec 7.5.1); a malformed one ends
        // the list rather than the connection.
        let mut bitmap = None;
        while r.remaining() >= 4 {
            let (Ok(typ), Ok(len)) = (r.u16(), r.u16()) else { break };
            let len = usize::from(len);
            if len < 4 {
                break;
            }
            let Ok(mut body) = r.sub(len - 4) else { break };
            if typ == 1 && bitmap.is_none() {
                let mut words = Vec::new();
                while let Ok(x) = body.u32() {
                    words.push(x);
                }
                bitmap = Some(words);
            }
            let _ = r.skip(crate::wire::padding8(len).min(r.remaining()));
        }
        Self { bitmap }
    }
}

/// ERROR.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorMsg {
    pub typ: u16,
    pub code: u16,
    /// The start of the offending request (at least 64 bytes of it), or
    /// text for HELLO_FAILED.
    pub data: Vec<u8>,
}

/// FEATURES_REPLY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    pub datapath_id: u64,
    pub n_buffers: u32,
    pub n_tables: u8,
    pub auxiliary_id: u8,
    pub capabilities: u32,
}

/// `OFPC_FLOW_STATS | OFPC_TABLE_STATS | OFPC_PORT_STATS`.
pub const CAPABILITIES: u32 = 1 | 2 | 4;

/// GET_CONFIG_REPLY and SET_CONFIG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchConfig {
    pub flags: u16,
    pub miss_send_len: u16,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        Self { flags: 0, miss_send_len: 128 }
    }
}

/// PACKET_IN reasons.
pub mod packet_in_reason {
    pub const NO_MATCH: u8 = 0;
    pub const ACTION: u8 = 1;
    pub const INVALID_TTL: u8 = 2;
}

/// PACKET_IN.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PacketIn {
    pub buffer_id: u32,
    pub total_len: u16,
    pub reason: u8,
    pub table_id: u8,
    pub cookie: u64,
    pub matcher: Match,
    pub data: Vec<u8>,
}

/// FLOW_REMOVED reasons.
pub mod removed_reason {
    pub const IDLE_TIMEOUT: u8 = 0;
    pub const HARD_TIMEOUT: u8 = 1;
    pub const DELETE: u8 = 2;
}

/// FLOW_REMOVED.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowRemoved {
    pub cookie: u64,
    pub priority: u16,
    pub reason: u8,
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub packet_count: u64,
    pub byte_count: u64,
    pub matcher: Match,
}

/// PORT_STATUS reasons.
pub mod port_reason {
    pub const ADD: u8 = 0;
    pub const DELETE: u8 = 1;
    pub const MODIFY: u8 = 2;
}

/// PORT_STATUS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortStatus {
    pub reason: u8,
    pub desc: PortDesc,
}

/// PACKET_OUT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PacketOut {
    pub buffer_id: u32,
    pub in_port: u32,
    pub actions: Vec<Action>,
    pub data: Vec<u8>,
}

/// FLOW_MOD commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowModCommand {
    Add,
    Modify,
    ModifyStrict,
    Delete,
    DeleteStrict,
}

impl FlowModCommand {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Add,
            1 => Self::Modify,
            2 => Self::ModifyStrict,
            3 => Self::Delete,
            4 => Self::DeleteStrict,
            _ => return None,
        })
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Add => 0,
            Self::Modify => 1,
            Self::ModifyStrict => 2,
            Self::Delete => 3,
            Self::DeleteStrict => 4,
        }
    }
}

/// FLOW_MOD flags.
pub mod flow_flags {
    pub const SEND_FLOW_REM: u16 = 1;
    pub const CHECK_OVERLAP: u16 = 2;
    pub const RESET_COUNTS: u16 = 4;
    pub const NO_PKT_COUNTS: u16 = 8;
    pub const NO_BYT_COUNTS: u16 = 16;
    pub const ALL: u16 = 31;
}

/// `OFPTT_ALL`.
pub const TABLE_ALL: u8 = 0xff;

/// FLOW_MOD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMod {
    pub cookie: u64,
    pub cookie_mask: u64,
    pub table_id: u8,
    pub command: FlowModCommand,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub buffer_id: u32,
    pub out_port: u32,
    pub out_group: u32,
    pub flags: u16,
    pub matcher: Match,
    pub instructions: Vec<Instruction>,
}

impl Default for FlowMod {
    fn default() -> Self {
        Self {
            cookie: 0,
            cookie_mask: 0,
            table_id: 0,
            command: FlowModCommand::Add,
            idle_timeout: 0,
            hard_timeout: 0,
            priority: 0x8000,
            buffer_id: crate::action::NO_BUFFER,
            out_port: crate::action::port::ANY,
            out_group: crate::action::GROUP_ANY,
            flags: 0,
            matcher: Match::default(),
            instructions: Vec::new(),
        }
    }
}

/// ROLE_REQUEST and ROLE_REPLY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoleMsg {
    /// 0 NOCHANGE, 1 EQUAL, 2 MASTER, 3 SLAVE.
    pub role: u32,
    pub generation_id: u64,
}

/// An OpenFlow 1.3 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Error(ErrorMsg),
    EchoRequest(Vec<u8>),
    EchoReply(Vec<u8>),
    Experimenter { experimenter: u32, exp_type: u32, data: Vec<u8> },
    FeaturesRequest,
    FeaturesReply(Features),
    GetConfigRequest,
    GetConfigReply(SwitchConfig),
    SetConfig(SwitchConfig),
    PacketIn(PacketIn),
    FlowRemoved(FlowRemoved),
    PortStatus(PortStatus),
    PacketOut(PacketOut),
    FlowMod(FlowMod),
    MultipartRequest(MultipartRequest),
    MultipartReply(MultipartReply),
    BarrierRequest,
    BarrierReply,
    RoleRequest(RoleMsg),
    RoleReply(RoleMsg),
}

impl Message {
    /// The message type number.
    pub fn kind(&self) -> u8 {
        use kind::*;
        match self {
            Message::Hello(_) => HELLO,
            Message::Error(_) => ERROR,
            Message::EchoRequest(_) => ECHO_REQUEST,
            Message::EchoReply(_) => ECHO_REPLY,
            Message::Experimenter { .. } => EXPERIMENTER,
            Message::FeaturesRequest => FEATURES_REQUEST,
            Message::FeaturesReply(_) => FEATURES_REPLY,
            Message::GetConfigRequest => GET_CONFIG_REQUEST,
            Message::GetConfigReply(_) => GET_CONFIG_REPLY,
            Message::SetConfig(_) => SET_CONFIG,
            Message::PacketIn(_) => PACKET_IN,
            Message::FlowRemoved(_) => FLOW_REMOVED,
            Message::PortStatus(_) => PORT_STATUS,
            Message::PacketOut(_) => PACKET_OUT,
            Message::FlowMod(_) => FLOW_MOD,
            Message::MultipartRequest(_) => MULTIPART_REQUEST,
            Message::MultipartReply(_) => MULTIPART_REPLY,
            Message::BarrierRequest => BARRIER_REQUEST,
            Message::BarrierReply => BARRIER_REPLY,
            Message::RoleRequest(_) => ROLE_REQUEST,
            Message::RoleReply(_) => ROLE_REPLY,
        }
    }

    /// Writes the body (everything after the 8-byte header).
    pub(crate) fn encode_body(&self, w: &mut Writer) {
        match self {
            Message::Hello(h) => h.encode(w),
            Message::Error(e) => {
                w.u16(e.typ).u16(e.code).bytes(&e.data);
            }
            Message::EchoRequest(d) | Message::EchoReply(d) => {
                w.bytes(d);
            }
            Message::Experimenter { experimenter, exp_type, data } => {
                w.u32(*experimenter).u32(*exp_type).bytes(data);
            }
            Message::FeaturesRequest | Message::GetConfigRequest | Message::BarrierRequest | Message::BarrierReply => {}
            Message::FeaturesReply(f) => {
                w.u64(f.datapath_id).u32(f.n_buffers).u8(f.n_tables).u8(f.auxiliary_id).zeros(2);
                w.u32(f.capabilities).u32(0);
            }
            Message::GetConfigReply(c) | Message::SetConfig(c) => {
                w.u16(c.flags).u16(c.miss_send_len);
            }
            Message::PacketIn(p) => {
                w.u32(p.buffer_id).u16(p.total_len).u8(p.reason).u8(p.table_id).u64(p.cookie);
                p.matcher.encode(w);
                w.zeros(2).bytes(&p.data);
            }
            Message::FlowRemoved(f) => {
                w.u64(f.cookie).u16(f.priority).u8(f.reason).u8(f.table_id);
                w.u32(f.duration_sec).u32(f.duration_nsec).u16(f.idle_timeout).u16(f.hard_timeout);
                w.u64(f.packet_count).u64(f.byte_count);
                f.matcher.encode(w);
            }
            Message::PortStatus(p) => {
                w.u8(p.reason).zeros(7);
                p.desc.encode(w);
            }
            Message::PacketOut(p) => {
                let mut a = Writer::new();
                encode_actions(&p.actions, &mut a);
                w.u32(p.buffer_id).u32(p.in_port).u16(a.len() as u16).zeros(6).bytes(&a.buf).bytes(&p.data);
            }
            Message::FlowMod(f) => {
                w.u64(f.cookie).u64(f.cookie_mask).u8(f.table_id).u8(f.command.to_u8());
                w.u16(f.idle_timeout).u16(f.hard_timeout).u16(f.priority);
                w.u32(f.buffer_id).u32(f.out_port).u32(f.out_group).u16(f.flags).zeros(2);
                f.matcher.encode(w);
                encode_instructions(&f.instructions, w);
            }
            Message::MultipartRequest(m) => m.encode(w),
            Message::MultipartReply(m) => {
                w.u16(m.body.kind()).u16(m.flags).zeros(4);
                for e in m.body.entries() {
                    w.bytes(&e);
                }
            }
            Message::RoleRequest(r) | Message::RoleReply(r) => {
                w.u32(r.role).zeros(4).u64(r.generation_id);
            }
        }
    }

    /// Reads a body of message type `t`.
    pub(crate) fn decode_body(t: u8, r: &mut Reader<'_>) -> Result<Message, Rejection> {
        use kind::*;
        let bl = E::BadRequestBadLen;
        let name = kind::name(t);
        let m = match t {
            HELLO => Message::Hello(Hello::decode(r)),
            ERROR => Message::Error(ErrorMsg {
                typ: r.u16().or_len(bl, name)?,
                code: r.u16().or_len(bl, name)?,
                data: r.rest().to_vec(),
            }),
            ECHO_REQUEST => Message::EchoRequest(r.rest().to_vec()),
            ECHO_REPLY => Message::EchoReply(r.rest().to_vec()),
            EXPERIMENTER => Message::Experimenter {
                experimenter: r.u32().or_len(bl, name)?,
                exp_type: r.u32().or_len(bl, name)?,
                data: r.rest().to_vec(),
            },
            FEATURES_REQUEST => Message::FeaturesRequest,
            GET_CONFIG_REQUEST => Message::GetConfigRequest,
            BARRIER_REQUEST => Message::BarrierRequest,
            BARRIER_REPLY => Message::BarrierReply,
            FEATURES_REPLY => {
                let f = Features {
                    datapath_id: r.u64().or_len(bl, name)?,
                    n_buffers: r.u32().or_len(bl, name)?,
                    n_tables: r.u8().or_len(bl, name)?,
                    auxiliary_id: r.u8().or_len(bl, name)?,
                    capabilities: {
                        r.skip(2).or_len(bl, name)?;
                        r.u32().or_len(bl, name)?
                    },
                };
                r.skip(4).or_len(bl, name)?;
                Message::FeaturesReply(f)
            }
            GET_CONFIG_REPLY | SET_CONFIG => {
                let c = SwitchConfig { flags: r.u16().or_len(bl, name)?, miss_send_len: r.u16().or_len(bl, name)? };
                if t == SET_CONFIG {
                    Message::SetConfig(c)
                } else {
                    Message::GetConfigReply(c)
                }
            }
            PACKET_IN => Message::PacketIn(decode_packet_in(r)?),
            FLOW_REMOVED => Message::FlowRemoved(decode_flow_removed(r)?),
            PORT_STATUS => {
                let reason = r.u8().or_len(bl, name)?;
                r.skip(7).or_len(bl, name)?;
                Message::PortStatus(PortStatus { reason, desc: PortDesc::decode(r)? })
            }
            PACKET_OUT => Message::PacketOut(decode_packet_out(r)?),
            FLOW_MOD => Message::FlowMod(decode_flow_mod(r)?),
            MULTIPART_REQUEST => Message::MultipartRequest(MultipartRequest::decode(r)?),
            MULTIPART_REPLY => {
                let k = r.u16().or_len(bl, name)?;
                let flags = r.u16().or_len(bl, name)?;
                r.skip(4).or_len(bl, name)?;
                Message::MultipartReply(MultipartReply { flags, body: MultipartReplyBody::decode(k, r)? })
            }
            ROLE_REQUEST | ROLE_REPLY => {
                let role = r.u32().or_len(bl, name)?;
                r.skip(4).or_len(bl, name)?;
                let m = RoleMsg { role, generation_id: r.u64().or_len(bl, name)? };
                if t == ROLE_REQUEST {
                    Message::RoleRequest(m)
                } else {
                    Message::RoleReply(m)
                }
            }
            other => {
                return reject(
                    E::BadRequestBadType,
                    format!("message type {other} ({}) is not supported", kind::name(other)),
                )
            }
        };
        if !r.is_empty() {
            return reject(bl, format!("{name}: {} bytes after the body", r.remaining()));
        }
        Ok(m)
    }
}

fn decode_packet_in(r: &mut Reader<'_>) -> Result<PacketIn, Rejection> {
    let bl = E::BadRequestBadLen;
    let mut p = PacketIn {
        buffer_id: r.u32().or_len(bl, "PACKET_IN")?,
        total_len: r.u16().or_len(bl, "PACKET_IN")?,
        reason: r.u8().or_len(bl, "PACKET_IN")?,
        table_id: r.u8().or_len(bl, "PACKET_IN")?,
        cookie: r.u64().or_len(bl, "PACKET_IN")?,
        ..Default::default()
    };
    p.matcher = Match::decode(r)?;
    r.skip(2).or_len(bl, "PACKET_IN")?;
    p.data = r.rest().to_vec();
    Ok(p)
}

fn decode_flow_removed(r: &mut Reader<'_>) -> Result<FlowRemoved, Rejection> {
    let bl = E::BadRequestBadLen;
    let n = "FLOW_REMOVED";
    let mut f = FlowRemoved {
        cookie: r.u64().or_len(bl, n)?,
        priority: r.u16().or_len(bl, n)?,
        reason: r.u8().or_len(bl, n)?,
        table_id: r.u8().or_len(bl, n)?,
        duration_sec: r.u32().or_len(bl, n)?,
        duration_nsec: r.u32().or_len(bl, n)?,
        idle_timeout: r.u16().or_len(bl, n)?,
        hard_timeout: r.u16().or_len(bl, n)?,
        packet_count: r.u64().or_len(bl, n)?,
        byte_count: r.u64().or_len(bl, n)?,
        ..Default::default()
    };
    f.matcher = Match::decode(r)?;
    Ok(f)
}

fn decode_packet_out(r: &mut Reader<'_>) -> Result<PacketOut, Rejection> {
    let bl = E::BadRequestBadLen;
    let buffer_id = r.u32().or_len(bl, "PACKET_OUT")?;
    let in_port = r.u32().or_len(bl, "PACKET_OUT")?;
    let actions_len = usize::from(r.u16().or_len(bl, "PACKET_OUT")?);
    r.skip(6).or_len(bl, "PACKET_OUT")?;
    let actions = decode_actions(r, actions_len)?;
    Ok(PacketOut { buffer_id, in_port, actions, data: r.rest().to_vec() })
}

fn decode_flow_mod(r: &mut Reader<'_>) -> Result<FlowMod, Rejection> {
    let bl = E::BadRequestBadLen;
    let n = "FLOW_MOD";
    let cookie = r.u64().or_len(bl, n)?;
    let cookie_mask = r.u64().or_len(bl, n)?;
    let table_id = r.u8().or_len(bl, n)?;
    let cmd = r.u8().or_len(bl, n)?;
    let command = FlowModCommand::from_u8(cmd)
        .ok_or_else(|| Rejection::new(E::FlowModFailedBadCommand, format!("FLOW_MOD command {cmd}")))?;
    let idle_timeout = r.u16().or_len(bl, n)?;
    let hard_timeout = r.u16().or_len(bl, n)?;
    let priority = r.u16().or_len(bl, n)?;
    let buffer_id = r.u32().or_len(bl, n)?;
    let out_port = r.u32().or_len(bl, n)?;
    let out_group = r.u32().or_len(bl, n)?;
    let flags = r.u16().or_len(bl, n)?;
    r.skip(2).or_len(bl, n)?;
    let matcher = Match::decode(r)?;
    let instructions = decode_instructions(r)?;
    Ok(FlowMod {
        cookie,
        cookie_mask,
        table_id,
        command,
        idle_timeout,
        hard_timeout,
        priority,
        buffer_id,
        out_port,
        out_group,
        flags,
        matcher,
        instructions,
    })
}
