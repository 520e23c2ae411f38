//! MULTIPART requests and replies: DESC, FLOW, AGGREGATE, TABLE,
//! PORT_STATS, PORT_DESC and TABLE_FEATURES (the query). Other kinds are refused with
//! `BAD_REQUEST/BAD_MULTIPART`.

use crate::action::{decode_instructions, encode_instructions, Instruction};
use crate::error::{reject, ErrorCode as E, OrLen, Rejection};
use crate::oxm::Match;
use crate::port::{PortDesc, PortStats};
use crate::wire::{fixed_str, Reader, Writer};

/// `OFPMPF_REQ_MORE` / `OFPMPF_REPLY_MORE`.
pub const MORE: u16 = 1;

pub const DESC: u16 = 0;
pub const FLOW: u16 = 1;
pub const AGGREGATE: u16 = 2;
pub const TABLE: u16 = 3;
pub const PORT_STATS: u16 = 4;
pub const TABLE_FEATURES: u16 = 12;
pub const PORT_DESC: u16 = 13;

/// The selection of FLOW and AGGREGATE requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowStatsRequest {
    /// `OFPTT_ALL` (0xff) for every table.
    pub table_id: u8,
    pub out_port: u32,
    pub out_group: u32,
    pub cookie: u64,
    pub cookie_mask: u64,
    pub matcher: Match,
}

impl FlowStatsRequest {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.table_id).zeros(3).u32(self.out_port).u32(self.out_group).zeros(4);
        w.u64(self.cookie).u64(self.cookie_mask);
        self.matcher.encode(w);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, Rejection> {
        let bl = E::BadRequestBadLen;
        let table_id = r.u8().or_len(bl, "flow stats request")?;
        r.skip(3).or_len(bl, "flow stats request")?;
        let out_port = r.u32().or_len(bl, "flow stats request")?;
        let out_group = r.u32().or_len(bl, "flow stats request")?;
        r.skip(4).or_len(bl, "flow stats request")?;
        let cookie = r.u64().or_len(bl, "flow stats request")?;
        let cookie_mask = r.u64().or_len(bl, "flow stats request")?;
        let matcher = Match::decode(r)?;
        Ok(Self { table_id, out_port, out_group, cookie, cookie_mask, matcher })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartRequestBody {
    Desc,
    Flow(FlowStatsRequest),
    Aggregate(FlowStatsRequest),
    Table,
    /// `OFPP_ANY` for all ports.
    PortStats(u32),
    PortDesc,
    /// Only the query (an empty body); setting features is refused.
    TableFeatures,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartRequest {
    pub flags: u16,
    pub body: MultipartRequestBody,
}

impl MultipartRequest {
    pub fn kind(&self) -> u16 {
        match self.body {
            MultipartRequestBody::Desc => DESC,
            MultipartRequestBody::Flow(_) => FLOW,
            MultipartRequestBody::Aggregate(_) => AGGREGATE,
            MultipartRequestBody::Table => TABLE,
            MultipartRequestBody::PortStats(_) => PORT_STATS,
            MultipartRequestBody::PortDesc => PORT_DESC,
            MultipartRequestBody::TableFeatures => TABLE_FEATURES,
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u16(self.kind()).u16(self.flags).zeros(4);
        match &self.body {
            MultipartRequestBody::Flow(f) | MultipartRequestBody::Aggregate(f) => f.encode(w),
            MultipartRequestBody::PortStats(p) => {
                w.u32(*p).zeros(4);
            }
            MultipartRequestBody::Desc
            | MultipartRequestBody::Table
            | MultipartRequestBody::PortDesc
            | MultipartRequestBody::TableFeatures => {}
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, Rejection> {
        let bl = E::BadRequestBadLen;
        let kind = r.u16().or_len(bl, "multipart request")?;
        let flags = r.u16().or_len(bl, "multipart request")?;
        r.skip(4).or_len(bl, "multipart request")?;
        let body = match kind {
            DESC => MultipartRequestBody::Desc,
            FLOW => MultipartRequestBody::Flow(FlowStatsRequest::decode(r)?),
            AGGREGATE => MultipartRequestBody::Aggregate(FlowStatsRequest::decode(r)?),
            TABLE => MultipartRequestBody::Table,
            PORT_STATS => {
                let p = r.u32().or_len(bl, "port stats request")?;
                r.skip(4).or_len(bl, "port stats request")?;
                MultipartRequestBody::PortStats(p)
            }
            PORT_DESC => MultipartRequestBody::PortDesc,
            TABLE_FEATURES if r.is_empty() => MultipartRequestBody::TableFeatures,
            TABLE_FEATURES => {
                return reject(E::TableFeaturesFailedEperm, "setting table features is not supported (query only)")
            }
            other => {
                return reject(
                    E::BadRequestBadMultipart,
                    format!("multipart type {other} ({}) is not supported", kind_name(other)),
                )
            }
        };
        if !r.is_empty() {
            return reject(
                bl,
                format!("multipart {} request: {} bytes after the body", kind_name(kind), r.remaining()),
            );
        }
        Ok(Self { flags, body })
    }
}

/// The spec's name of a multipart kind.
pub fn kind_name(kind: u16) -> &'static str {
    match kind {
        0 => "DESC",
        1 => "FLOW",
        2 => "AGGREGATE",
        3 => "TABLE",
        4 => "PORT_STATS",
        5 => "QUEUE",
        6 => "GROUP",
        7 => "GROUP_DESC",
        8 => "GROUP_FEATURES",
        9 => "METER",
        10 => "METER_CONFIG",
        11 => "METER_FEATURES",
        12 => "TABLE_FEATURES",
        13 => "PORT_DESC",
        0xffff => "EXPERIMENTER",
        _ => "unknown",
    }
}

/// The switch's description (`ofp_desc`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Desc {
    pub mfr_desc: String,
    pub hw_desc: String,
    pub sw_desc: String,
    pub serial_num: String,
    pub dp_desc: String,
}

/// One flow entry's statistics (`ofp_flow_stats`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowStats {
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: u16,
    pub cookie: u64,
    pub packet_count: u64,
    pub byte_count: u64,
    pub matcher: Match,
    pub instructions: Vec<Instruction>,
}

impl FlowStats {
    fn encode(&self, w: &mut Writer) {
        let start = w.len();
        w.u16(0).u8(self.table_id).u8(0).u32(self.duration_sec).u32(self.duration_nsec);
        w.u16(self.priority).u16(self.idle_timeout).u16(self.hard_timeout).u16(self.flags).zeros(4);
        w.u64(self.cookie).u64(self.packet_count).u64(self.byte_count);
        self.matcher.encode(w);
        encode_instructions(&self.instructions, w);
        let len = (w.len() - start) as u16;
        w.set_u16(start, len);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, Rejection> {
        let bl = E::BadRequestBadLen;
        let len = usize::from(r.peek_u16().or_len(bl, "flow stats")?);
        let mut b = r.sub(len.max(2)).or_len(bl, "flow stats")?;
        b.skip(2).or_len(bl, "flow stats")?;
        let table_id = b.u8().or_len(bl, "flow stats")?;
        b.skip(1).or_len(bl, "flow stats")?;
        let mut s = FlowStats {
            table_id,
            duration_sec: b.u32().or_len(bl, "flow stats")?,
            duration_nsec: b.u32().or_len(bl, "flow stats")?,
            priority: b.u16().or_len(bl, "flow stats")?,
            idle_timeout: b.u16().or_len(bl, "flow stats")?,
            hard_timeout: b.u16().or_len(bl, "flow stats")?,
            flags: b.u16().or_len(bl, "flow stats")?,
            ..Default::default()
        };
        b.skip(4).or_len(bl, "flow stats")?;
        s.cookie = b.u64().or_len(bl, "flow stats")?;
        s.packet_count = b.u64().or_len(bl, "flow stats")?;
        s.byte_count = b.u64().or_len(bl, "flow stats")?;
        s.matcher = Match::decode(&mut b)?;
        s.instructions = decode_instructions(&mut b)?;
        Ok(s)
    }
}

/// AGGREGATE's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AggregateStats {
    pub packet_count: u64,
    pub byte_count: u64,
    pub flow_count: u32,
}

/// One table's counters (`ofp_table_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableStats {
    pub table_id: u8,
    pub active_count: u32,
    pub lookup_count: u64,
    pub matched_count: u64,
}

/// One table's features (`ofp_table_features`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableFeatures {
    pub table_id: u8,
    pub name: String,
    pub metadata_match: u64,
    pub metadata_write: u64,
    pub config: u32,
    pub max_entries: u32,
    pub properties: Vec<TableFeatureProp>,
}

/// A table feature property: its type (`OFPTFPT_*`) and body (without
/// the padding).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableFeatureProp {
    pub typ: u16,
    pub body: Vec<u8>,
}

/// Table feature property types OpenFlow 1.3 requires in every entry.
pub mod table_prop {
    pub const INSTRUCTIONS: u16 = 0;
    pub const NEXT_TABLES: u16 = 2;
    pub const WRITE_ACTIONS: u16 = 4;
    pub const APPLY_ACTIONS: u16 = 6;
    pub const MATCH: u16 = 8;
    pub const WILDCARDS: u16 = 10;
    pub const WRITE_SETFIELD: u16 = 12;
    pub const APPLY_SETFIELD: u16 = 14;
}

impl TableFeatureProp {
    /// Instruction or action ids: (type, length 4) each.
    pub fn ids(typ: u16, ids: &[u16]) -> Self {
        let mut w = Writer::new();
        for &i in ids {
            w.u16(i).u16(4);
        }
        Self { typ, body: w.buf }
    }

    /// Table ids.
    pub fn tables(typ: u16, tables: impl IntoIterator<Item = u8>) -> Self {
        Self { typ, body: tables.into_iter().collect() }
    }

    /// OXM headers of fields (with the has-mask bit for maskable ones when
    /// `masks`).
    pub fn fields(typ: u16, fields: &[crate::oxm::Field], masks: bool) -> Self {
        let mut w = Writer::new();
        for f in fields {
            let has_mask = masks && f.maskable();
            let len = f.bytes() * if has_mask { 2 } else { 1 };
            w.u16(crate::oxm::CLASS_BASIC).u8((f.number() << 1) | u8::from(has_mask)).u8(len as u8);
        }
        Self { typ, body: w.buf }
    }
}

impl TableFeatures {
    fn encode(&self, w: &mut Writer) {
        let start = w.len();
        w.u16(0).u8(self.table_id).zeros(5).fixed_str(&self.name, 32);
        w.u64(self.metadata_match).u64(self.metadata_write).u32(self.config).u32(self.max_entries);
        for p in &self.properties {
            w.u16(p.typ).u16((4 + p.body.len()) as u16).bytes(&p.body).pad8();
        }
        let len = (w.len() - start) as u16;
        w.set_u16(start, len);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, Rejection> {
        let bl = E::BadRequestBadLen;
        let len = usize::from(r.peek_u16().or_len(bl, "table features")?);
        if len < 64 {
            return reject(bl, format!("table features length {len} < 64"));
        }
        let mut b = r.sub(len).or_len(bl, "table features")?;
        b.skip(2).or_len(bl, "table features")?;
        let table_id = b.u8().or_len(bl, "table features")?;
        b.skip(5).or_len(bl, "table features")?;
        let mut t = TableFeatures {
            table_id,
            name: fixed_str(b.bytes(32).or_len(bl, "table features")?),
            metadata_match: b.u64().or_len(bl, "table features")?,
            metadata_write: b.u64().or_len(bl, "table features")?,
            config: b.u32().or_len(bl, "table features")?,
            max_entries: b.u32().or_len(bl, "table features")?,
            properties: Vec::new(),
        };
        while !b.is_empty() {
            let typ = b.u16().or_len(bl, "table feature property")?;
            let plen = usize::from(b.u16().or_len(bl, "table feature property")?);
            if plen < 4 {
                return reject(bl, format!("table feature property length {plen} < 4"));
            }
            let body = b.bytes(plen - 4).or_len(bl, "table feature property")?.to_vec();
            b.skip(crate::wire::padding8(plen)).or_len(bl, "table feature property padding")?;
            t.properties.push(TableFeatureProp { typ, body });
        }
        Ok(t)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartReplyBody {
    Desc(Desc),
    Flow(Vec<FlowStats>),
    Aggregate(AggregateStats),
    Table(Vec<TableStats>),
    PortStats(Vec<PortStats>),
    PortDesc(Vec<PortDesc>),
    TableFeatures(Vec<TableFeatures>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartReply {
    pub flags: u16,
    pub body: MultipartReplyBody,
}

impl MultipartReplyBody {
    pub fn kind(&self) -> u16 {
        match self {
            MultipartReplyBody::Desc(_) => DESC,
            MultipartReplyBody::Flow(_) => FLOW,
            MultipartReplyBody::Aggregate(_) => AGGREGATE,
            MultipartReplyBody::Table(_) => TABLE,
            MultipartReplyBody::PortStats(_) => PORT_STATS,
            MultipartReplyBody::PortDesc(_) => PORT_DESC,
            MultipartReplyBody::TableFeatures(_) => TABLE_FEATURES,
        }
    }

    /// The body's entries, each encoded on its own (arrays) or the whole
    /// body as one entry; a reply too large for one message is split
    /// between entries.
    pub fn entries(&self) -> Vec<Vec<u8>> {
        fn each<T>(list: &[T], f: impl Fn(&T, &mut Writer)) -> Vec<Vec<u8>> {
            list.iter()
                .map(|x| {
                    let mut w = Writer::new();
                    f(x, &mut w);
                    w.buf
                })
                .collect()
        }
        match self {
            MultipartReplyBody::Desc(d) => {
                let mut w = Writer::new();
                w.fixed_str(&d.mfr_desc, 256).fixed_str(&d.hw_desc, 256).fixed_str(&d.sw_desc, 256);
                w.fixed_str(&d.serial_num, 32).fixed_str(&d.dp_desc, 256);
                vec![w.buf]
            }
            MultipartReplyBody::Flow(list) => each(list, FlowStats::encode),
            MultipartReplyBody::Aggregate(a) => {
                let mut w = Writer::new();
                w.u64(a.packet_count).u64(a.byte_count).u32(a.flow_count).zeros(4);
                vec![w.buf]
            }
            MultipartReplyBody::Table(list) => each(list, |t, w| {
                w.u8(t.table_id).zeros(3).u32(t.active_count).u64(t.lookup_count).u64(t.matched_count);
            }),
            MultipartReplyBody::PortStats(list) => each(list, PortStats::encode),
            MultipartReplyBody::PortDesc(list) => each(list, PortDesc::encode),
            MultipartReplyBody::TableFeatures(list) => each(list, TableFeatures::encode),
        }
    }

    pub(crate) fn decode(kind: u16, r: &mut Reader<'_>) -> Result<Self, Rejection> {
        let bl = E::BadRequestBadLen;
        Ok(match kind {
            DESC => {
                let mut s = |n: usize| r.bytes(n).map(fixed_str).or_len(bl, "desc");
                MultipartReplyBody::Desc(Desc {
                    mfr_desc: s(256)?,
                    hw_desc: s(256)?,
                    sw_desc: s(256)?,
                    serial_num: s(32)?,
                    dp_desc: s(256)?,
                })
            }
            FLOW => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    v.push(FlowStats::decode(r)?);
                }
                MultipartReplyBody::Flow(v)
            }
            AGGREGATE => {
                let a = AggregateStats {
                    packet_count: r.u64().or_len(bl, "aggregate")?,
                    byte_count: r.u64().or_len(bl, "aggregate")?,
                    flow_count: r.u32().or_len(bl, "aggregate")?,
                };
                r.skip(4).or_len(bl, "aggregate")?;
                MultipartReplyBody::Aggregate(a)
            }
            TABLE => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    let table_id = r.u8().or_len(bl, "table stats")?;
                    r.skip(3).or_len(bl, "table stats")?;
                    v.push(TableStats {
                        table_id,
                        active_count: r.u32().or_len(bl, "table stats")?,
                        lookup_count: r.u64().or_len(bl, "table stats")?,
                        matched_count: r.u64().or_len(bl, "table stats")?,
                    });
                }
                MultipartReplyBody::Table(v)
            }
            PORT_STATS => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    v.push(PortStats::decode(r)?);
                }
                MultipartReplyBody::PortStats(v)
            }
            PORT_DESC => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    v.push(PortDesc::decode(r)?);
                }
                MultipartReplyBody::PortDesc(v)
            }
            TABLE_FEATURES => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    v.push(TableFeatures::decode(r)?);
                }
                MultipartReplyBody::TableFeatures(v)
            }
            other => return reject(E::BadRequestBadMultipart, format!("multipart reply type {other}")),
        })
    }
}
