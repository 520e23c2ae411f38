//! Actions (`ofp_action_*`) and instructions (`ofp_instruction_*`).

use crate::error::{reject, ErrorCode as E, OrLen, Rejection};
use crate::oxm::Oxm;
use crate::wire::{Reader, Writer};

/// Reserved port numbers (`OFPP_*`).
pub mod port {
    pub const MAX: u32 = 0xffff_ff00;
    pub const IN_PORT: u32 = 0xffff_fff8;
    pub const TABLE: u32 = 0xffff_fff9;
    pub const NORMAL: u32 = 0xffff_fffa;
    pub const FLOOD: u32 = 0xffff_fffb;
    pub const ALL: u32 = 0xffff_fffc;
    pub const CONTROLLER: u32 = 0xffff_fffd;
    pub const LOCAL: u32 = 0xffff_fffe;
    pub const ANY: u32 = 0xffff_ffff;
}

/// `OFPCML_NO_BUFFER`: send the whole packet to the controller.
pub const NO_BUFFER_LEN: u16 = 0xffff;
/// `OFP_NO_BUFFER`.
pub const NO_BUFFER: u32 = 0xffff_ffff;
/// `OFPG_ANY`.
pub const GROUP_ANY: u32 = 0xffff_ffff;

/// An action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    Output { port: u32, max_len: u16 },
    CopyTtlOut,
    CopyTtlIn,
    SetMplsTtl(u8),
    DecMplsTtl,
    PushVlan(u16),
    PopVlan,
    PushMpls(u16),
    PopMpls(u16),
    SetQueue(u32),
    Group(u32),
    SetNwTtl(u8),
    DecNwTtl,
    SetField(Oxm),
    PushPbb(u16),
    PopPbb,
    Experimenter { experimenter: u32, data: Vec<u8> },
}

impl Action {
    /// The spec's action name (for logs and errors).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Output { .. } => "output",
            Action::CopyTtlOut => "copy_ttl_out",
            Action::CopyTtlIn => "copy_ttl_in",
            Action::SetMplsTtl(_) => "set_mpls_ttl",
            Action::DecMplsTtl => "dec_mpls_ttl",
            Action::PushVlan(_) => "push_vlan",
            Action::PopVlan => "pop_vlan",
            Action::PushMpls(_) => "push_mpls",
            Action::PopMpls(_) => "pop_mpls",
            Action::SetQueue(_) => "set_queue",
            Action::Group(_) => "group",
            Action::SetNwTtl(_) => "set_nw_ttl",
            Action::DecNwTtl => "dec_nw_ttl",
            Action::SetField(_) => "set_field",
            Action::PushPbb(_) => "push_pbb",
            Action::PopPbb => "pop_pbb",
            Action::Experimenter { .. } => "experimenter",
        }
    }

    pub fn encode(&self, w: &mut Writer) {
        let start = w.len();
        let typ: u16 = match self {
            Action::Output { .. } => 0,
            Action::CopyTtlOut => 11,
            Action::CopyTtlIn => 12,
            Action::SetMplsTtl(_) => 15,
            Action::DecMplsTtl => 16,
            Action::PushVlan(_) => 17,
            Action::PopVlan => 18,
            Action::PushMpls(_) => 19,
            Action::PopMpls(_) => 20,
            Action::SetQueue(_) => 21,
            Action::Group(_) => 22,
            Action::SetNwTtl(_) => 23,
            Action::DecNwTtl => 24,
            Action::SetField(_) => 25,
            Action::PushPbb(_) => 26,
            Action::PopPbb => 27,
            Action::Experimenter { .. } => 0xffff,
        };
        w.u16(typ).u16(0);
        match self {
            Action::Output { port, max_len } => {
                w.u32(*port).u16(*max_len).zeros(6);
            }
            Action::CopyTtlOut
            | Action::CopyTtlIn
            | Action::DecMplsTtl
            | Action::PopVlan
            | Action::DecNwTtl
            | Action::PopPbb => {
                w.zeros(4);
            }
            Action::SetMplsTtl(t) | Action::SetNwTtl(t) => {
                w.u8(*t).zeros(3);
            }
            Action::PushVlan(e) | Action::PushMpls(e) | Action::PopMpls(e) | Action::PushPbb(e) => {
                w.u16(*e).zeros(2);
            }
            Action::SetQueue(v) | Action::Group(v) => {
                w.u32(*v);
            }
            Action::SetField(o) => {
                o.encode(w);
                w.pad8();
            }
            Action::Experimenter { experimenter, data } => {
                w.u32(*experimenter).bytes(data).pad8();
            }
        }
        let len = (w.len() - start) as u16;
        w.set_u16(start + 2, len);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Action, Rejection> {
        let typ = r.u16().or_len(E::BadActionBadLen, "action header")?;
        let len = usize::from(r.u16().or_len(E::BadActionBadLen, "action header")?);
        if len < 8 || len % 8 != 0 {
            return reject(E::BadActionBadLen, format!("action type {typ}: length {len} is not a multiple of 8 >= 8"));
        }
        let mut b = r.sub(len - 4).or_len(E::BadActionBadLen, "action")?;
        let fixed = |want: usize| {
            if len == want {
                Ok(())
            } else {
                reject(E::BadActionBadLen, format!("action type {typ}: length {len}, expected {want}"))
            }
        };
        let a = match typ {
            0 => {
                fixed(16)?;
                Action::Output { port: bl(b.u32())?, max_len: bl(b.u16())? }
            }
            11 | 12 | 16 | 18 | 24 | 27 => {
                fixed(8)?;
                match typ {
                    11 => Action::CopyTtlOut,
                    12 => Action::CopyTtlIn,
                    16 => Action::DecMplsTtl,
                    18 => Action::PopVlan,
                    24 => Action::DecNwTtl,
                    _ => Action::PopPbb,
                }
            }
            15 | 23 => {
                fixed(8)?;
                let t = bl(b.u8())?;
                if typ == 15 {
                    Action::SetMplsTtl(t)
                } else {
                    Action::SetNwTtl(t)
                }
            }
            17 | 19 | 20 | 26 => {
                fixed(8)?;
                let e = bl(b.u16())?;
                match typ {
                    17 => Action::PushVlan(e),
                    19 => Action::PushMpls(e),
                    20 => Action::PopMpls(e),
                    _ => Action::PushPbb(e),
                }
            }
            21 | 22 => {
                fixed(8)?;
                let v = bl(b.u32())?;
                if typ == 21 {
                    Action::SetQueue(v)
                } else {
                    Action::Group(v)
                }
            }
            25 => {
                let o = Oxm::decode(&mut b).map_err(|e| {
                    let code = match e.code {
                        E::BadMatchBadLen => E::BadActionBadSetLen,
                        E::BadMatchBadField => E::BadActionBadSetType,
                        _ => E::BadActionBadSetArgument,
                    };
                    Rejection::new(code, format!("set_field: {}", e.detail))
                })?;
                if o.mask.is_some() {
                    return reject(E::BadActionBadSetArgument, format!("set_field {} with a mask", o.field.name()));
                }
                if len != (4 + o.wire_len()).div_ceil(8) * 8 {
                    return reject(E::BadActionBadSetLen, format!("set_field {}: length {len}", o.field.name()));
                }
                Action::SetField(o)
            }
            0xffff => {
                let experimenter = bl(b.u32())?;
                Action::Experimenter { experimenter, data: b.rest().to_vec() }
            }
            other => return reject(E::BadActionBadType, format!("unknown action type {other}")),
        };
        Ok(a)
    }
}

/// Encodes a list of actions.
pub fn encode_actions(actions: &[Action], w: &mut Writer) {
    for a in actions {
        a.encode(w);
    }
}

/// Decodes actions filling `len` bytes.
pub fn decode_actions(r: &mut Reader<'_>, len: usize) -> Result<Vec<Action>, Rejection> {
    let mut b = r.sub(len).or_len(E::BadActionBadLen, "action list")?;
    let mut out = Vec::new();
    while !b.is_empty() {
        out.push(Action::decode(&mut b)?);
    }
    Ok(out)
}

/// An instruction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Instruction {
    GotoTable(u8),
    WriteMetadata { metadata: u64, mask: u64 },
    WriteActions(Vec<Action>),
    ApplyActions(Vec<Action>),
    ClearActions,
    Meter(u32),
    Experimenter { experimenter: u32, data: Vec<u8> },
}

impl Instruction {
    pub fn name(&self) -> &'static str {
        match self {
            Instruction::GotoTable(_) => "goto_table",
            Instruction::WriteMetadata { .. } => "write_metadata",
            Instruction::WriteActions(_) => "write_actions",
            Instruction::ApplyActions(_) => "apply_actions",
            Instruction::ClearActions => "clear_actions",
            Instruction::Meter(_) => "meter",
            Instruction::Experimenter { .. } => "experimenter",
        }
    }

    /// The spec's instruction type number; the order they must run in.
    pub fn kind(&self) -> u16 {
        match self {
            Instruction::GotoTable(_) => 1,
            Instruction::WriteMetadata { .. } => 2,
            Instruction::WriteActions(_) => 3,
            Instruction::ApplyActions(_) => 4,
            Instruction::ClearActions => 5,
            Instruction::Meter(_) => 6,
            Instruction::Experimenter { .. } => 0xffff,
        }
    }

    pub fn encode(&self, w: &mut Writer) {
        let start = w.len();
        w.u16(self.kind()).u16(0);
        match self {
            Instruction::GotoTable(t) => {
                w.u8(*t).zeros(3);
            }
            Instruction::WriteMetadata { metadata, mask } => {
                w.zeros(4).u64(*metadata).u64(*mask);
            }
            Instruction::WriteActions(a) | Instruction::ApplyActions(a) => {
                w.zeros(4);
                encode_actions(a, w);
            }
            Instruction::ClearActions => {
                w.zeros(4);
            }
            Instruction::Meter(m) => {
                w.u32(*m);
            }
            Instruction::Experimenter { experimenter, data } => {
                w.u32(*experimenter).bytes(data).pad8();
            }
        }
        let len = (w.len() - start) as u16;
        w.set_u16(start + 2, len);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Instruction, Rejection> {
        let typ = r.u16().or_len(E::BadInstructionBadLen, "instruction header")?;
        let len = usize::from(r.u16().or_len(E::BadInstructionBadLen, "instruction header")?);
        if len < 8 || len % 8 != 0 {
            return reject(E::BadInstructionBadLen, format!("instruction type {typ}: length {len}"));
        }
        let mut b = r.sub(len - 4).or_len(E::BadInstructionBadLen, "instruction")?;
        let fixed = |want: usize| {
            if len == want {
                Ok(())
            } else {
                reject(E::BadInstructionBadLen, format!("instruction type {typ}: length {len}, expected {want}"))
            }
        };
        Ok(match typ {
            1 => {
                fixed(8)?;
                Instruction::GotoTable(il(b.u8())?)
            }
            2 => {
                fixed(24)?;
                il(b.skip(4))?;
                Instruction::WriteMetadata { metadata: il(b.u64())?, mask: il(b.u64())? }
            }
            3 | 4 => {
                il(b.skip(4))?;
                let n = b.remaining();
                let actions = decode_actions(&mut b, n)?;
                if typ == 3 {
                    Instruction::WriteActions(actions)
                } else {
                    Instruction::ApplyActions(actions)
                }
            }
            5 => {
                fixed(8)?;
                Instruction::ClearActions
            }
            6 => {
                fixed(8)?;
                Instruction::Meter(il(b.u32())?)
            }
            0xffff => {
                let experimenter = il(b.u32())?;
                Instruction::Experimenter { experimenter, data: b.rest().to_vec() }
            }
            other => return reject(E::BadInstructionUnknownInst, format!("unknown instruction type {other}")),
        })
    }
}

/// Decodes the instructions filling the rest of `r`; at most one of each
/// type (spec 5.9).
pub fn decode_instructions(r: &mut Reader<'_>) -> Result<Vec<Instruction>, Rejection> {
    let mut out: Vec<Instruction> = Vec::new();
    while !r.is_empty() {
        let i = Instruction::decode(r)?;
        if out.iter().any(|x| x.kind() == i.kind()) {
            return reject(E::BadInstructionUnsupInst, format!("{} given twice", i.name()));
        }
        out.push(i);
    }
    Ok(out)
}

pub fn encode_instructions(list: &[Instruction], w: &mut Writer) {
    for i in list {
        i.encode(w);
    }
}

fn bl<T>(x: Result<T, crate::wire::Short>) -> Result<T, Rejection> {
    x.or_len(E::BadActionBadLen, "action body")
}

fn il<T>(x: Result<T, crate::wire::Short>) -> Result<T, Rejection> {
    x.or_len(E::BadInstructionBadLen, "instruction body")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oxm::Field;

    #[test]
    fn actions_and_instructions_round_trip() {
        let list = vec![
            Instruction::ApplyActions(vec![
                Action::PushVlan(0x8100),
                Action::SetField(Oxm::exact(Field::VlanVid, 0x1000 | 10)),
                Action::SetField(Oxm::exact(Field::EthSrc, 0x0200_0000_0001)),
                Action::SetField(Oxm::exact(Field::TunnelId, 77)),
                Action::PopVlan,
                Action::Output { port: 2, max_len: 0 },
                Action::Output { port: port::CONTROLLER, max_len: 128 },
                Action::Group(4),
            ]),
            Instruction::WriteMetadata { metadata: 1, mask: 1 },
            Instruction::GotoTable(3),
        ];
        let mut w = Writer::new();
        encode_instructions(&list, &mut w);
        let back = decode_instructions(&mut Reader::new(&w.buf)).expect("decodes");
        assert_eq!(back, list);
    }

    #[test]
    fn bad_actions_get_their_codes() {
        let one = |b: &[u8]| Action::decode(&mut Reader::new(b)).unwrap_err().code;
        assert_eq!(one(&[0, 99, 0, 8, 0, 0, 0, 0]), E::BadActionBadType);
        assert_eq!(one(&[0, 0, 0, 8, 0, 0, 0, 0]), E::BadActionBadLen);
        assert_eq!(one(&[0, 0, 0, 15, 0, 0, 0, 0]), E::BadActionBadLen);
        assert_eq!(one(&[0, 0, 0, 32, 0, 0, 0, 0]), E::BadActionBadLen);
        // set_field with a masked eth_src, and with an unknown class.
        let mut w = Writer::new();
        w.u16(25).u16(24);
        Oxm::masked(Field::EthSrc, 0, 0).encode(&mut w);
        w.pad8();
        assert_eq!(one(&w.buf), E::BadActionBadSetArgument);
        assert_eq!(one(&[0, 25, 0, 16, 0, 1, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0]), E::BadActionBadSetType);
        let i = |b: &[u8]| decode_instructions(&mut Reader::new(b)).unwrap_err().code;
        assert_eq!(i(&[0, 9, 0, 8, 0, 0, 0, 0]), E::BadInstructionUnknownInst);
        assert_eq!(i(&[0, 1, 0, 8, 1, 0, 0, 0, 0, 1, 0, 8, 2, 0, 0, 0]), E::BadInstructionUnsupInst);
    }
}
