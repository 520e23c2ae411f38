//! OXM match fields (the `OFPXMC_OPENFLOW_BASIC` class) and `ofp_match`.
//!
//! A field's value (and mask) is held as a `u128` of the field's width, so
//! every basic field fits; decoding checks the length, whether the field may
//! be masked, that no value bit is set outside its mask, duplicates and the
//! prerequisites of spec table 11, and answers with the spec's code.

use crate::error::{reject, ErrorCode as E, OrLen, Rejection};
use crate::wire::{padding8, Reader, Writer};

/// The basic class.
pub const CLASS_BASIC: u16 = 0x8000;
/// `OFPMT_OXM`.
pub const MATCH_TYPE_OXM: u16 = 1;
/// `OFPVID_PRESENT`: the VLAN_VID bit meaning "a tag is present".
pub const VID_PRESENT: u16 = 0x1000;

macro_rules! fields {
    ($($name:ident = ($num:expr, $bytes:expr, $maskable:expr, $text:expr),)*) => {
        /// An OXM basic field.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Field {
            $($name,)*
        }

        impl Field {
            pub const ALL: &'static [Field] = &[$(Field::$name,)*];

            /// The field number on the wire.
            pub fn number(self) -> u8 {
                match self { $(Field::$name => $num,)* }
            }

            /// The value's width in bytes.
            pub fn bytes(self) -> usize {
                match self { $(Field::$name => $bytes,)* }
            }

            /// Whether the spec lets it carry a mask.
            pub fn maskable(self) -> bool {
                match self { $(Field::$name => $maskable,)* }
            }

            /// The spec's name (`OFPXMT_OFB_` left out, lower case).
            pub fn name(self) -> &'static str {
                match self { $(Field::$name => $text,)* }
            }

            pub fn from_number(n: u8) -> Option<Field> {
                match n { $($num => Some(Field::$name),)* _ => None }
            }
        }
    };
}

fields! {
    InPort = (0, 4, false, "in_port"),
    InPhyPort = (1, 4, false, "in_phy_port"),
    Metadata = (2, 8, true, "metadata"),
    EthDst = (3, 6, true, "eth_dst"),
    EthSrc = (4, 6, true, "eth_src"),
    EthType = (5, 2, false, "eth_type"),
    VlanVid = (6, 2, true, "vlan_vid"),
    VlanPcp = (7, 1, false, "vlan_pcp"),
    IpDscp = (8, 1, false, "ip_dscp"),
    IpEcn = (9, 1, false, "ip_ecn"),
    IpProto = (10, 1, false, "ip_proto"),
    Ipv4Src = (11, 4, true, "ipv4_src"),
    Ipv4Dst = (12, 4, true, "ipv4_dst"),
    TcpSrc = (13, 2, false, "tcp_src"),
    TcpDst = (14, 2, false, "tcp_dst"),
    UdpSrc = (15, 2, false, "udp_src"),
    UdpDst = (16, 2, false, "udp_dst"),
    SctpSrc = (17, 2, false, "sctp_src"),
    SctpDst = (18, 2, false, "sctp_dst"),
    Icmpv4Type = (19, 1, false, "icmpv4_type"),
    Icmpv4Code = (20, 1, false, "icmpv4_code"),
    ArpOp = (21, 2, false, "arp_op"),
    ArpSpa = (22, 4, true, "arp_spa"),
    ArpTpa = (23, 4, true, "arp_tpa"),
    ArpSha = (24, 6, true, "arp_sha"),
    ArpTha = (25, 6, true, "arp_tha"),
    Ipv6Src = (26, 16, true, "ipv6_src"),
    Ipv6Dst = (27, 16, true, "ipv6_dst"),
    Ipv6Flabel = (28, 4, true, "ipv6_flabel"),
    Icmpv6Type = (29, 1, false, "icmpv6_type"),
    Icmpv6Code = (30, 1, false, "icmpv6_code"),
    Ipv6NdTarget = (31, 16, false, "ipv6_nd_target"),
    Ipv6NdSll = (32, 6, false, "ipv6_nd_sll"),
    Ipv6NdTll = (33, 6, false, "ipv6_nd_tll"),
    MplsLabel = (34, 4, false, "mpls_label"),
    MplsTc = (35, 1, false, "mpls_tc"),
    MplsBos = (36, 1, false, "mpls_bos"),
    PbbIsid = (37, 3, true, "pbb_isid"),
    TunnelId = (38, 8, true, "tunnel_id"),
    Ipv6Exthdr = (39, 2, true, "ipv6_exthdr"),
}

impl Field {
    /// All ones over the field's width (VLAN_VID: 13 bits, the spec's widths
    /// for the other sub-byte fields).
    pub fn full(self) -> u128 {
        match self {
            Field::VlanVid => 0x1fff,
            Field::VlanPcp => 0x7,
            Field::IpDscp => 0x3f,
            Field::IpEcn => 0x3,
            Field::Ipv6Flabel => 0x000f_ffff,
            Field::MplsLabel => 0x000f_ffff,
            Field::MplsTc => 0x7,
            Field::MplsBos => 0x1,
            Field::Ipv6Exthdr => 0x01ff,
            f => {
                if f.bytes() == 16 {
                    u128::MAX
                } else {
                    (1u128 << (8 * f.bytes())) - 1
                }
            }
        }
    }
}

/// One OXM TLV: a field, its value and an optional mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Oxm {
    pub field: Field,
    pub value: u128,
    /// `None`: exact.
    pub mask: Option<u128>,
}

impl Oxm {
    pub fn exact(field: Field, value: u128) -> Self {
        Self { field, value, mask: None }
    }

    pub fn masked(field: Field, value: u128, mask: u128) -> Self {
        Self { field, value, mask: Some(mask) }
    }

    /// The mask in effect (all ones when exact).
    pub fn effective_mask(&self) -> u128 {
        self.mask.unwrap_or(self.field.full())
    }

    /// Encoded size: 4-byte header, value and mask.
    pub fn wire_len(&self) -> usize {
        4 + self.field.bytes() * if self.mask.is_some() { 2 } else { 1 }
    }

    pub fn encode(&self, w: &mut Writer) {
        let n = self.field.bytes();
        let has_mask = self.mask.is_some();
        w.u16(CLASS_BASIC)
            .u8((self.field.number() << 1) | u8::from(has_mask))
            .u8((n * if has_mask { 2 } else { 1 }) as u8);
        put_uint(w, self.value, n);
        if let Some(m) = self.mask {
            put_uint(w, m, n);
        }
    }

    /// Reads one OXM TLV (the match codes on errors; set-field maps them).
    pub fn decode(r: &mut Reader<'_>) -> Result<Oxm, Rejection> {
        let class = r.u16().or_len(E::BadMatchBadLen, "OXM header")?;
        let fm = r.u8().or_len(E::BadMatchBadLen, "OXM header")?;
        let len = usize::from(r.u8().or_len(E::BadMatchBadLen, "OXM header")?);
        let body = r.bytes(len).or_len(E::BadMatchBadLen, "OXM field")?;
        if class != CLASS_BASIC {
            return reject(
                E::BadMatchBadField,
                format!("OXM class {class:#06x} (only the OpenFlow basic class 0x8000 is supported)"),
            );
        }
        let field = Field::from_number(fm >> 1)
            .ok_or_else(|| Rejection::new(E::BadMatchBadField, format!("unknown OXM basic field {}", fm >> 1)))?;
        let has_mask = fm & 1 == 1;
        let n = field.bytes();
        if len != n * if has_mask { 2 } else { 1 } {
            return reject(E::BadMatchBadLen, format!("{}: length {len}, expected {n} per value", field.name()));
        }
        if has_mask && !field.maskable() {
            return reject(E::BadMatchBadMask, format!("{} cannot be masked", field.name()));
        }
        let value = get_uint(&body[..n]);
        let mask = has_mask.then(|| get_uint(&body[n..]));
        if value & !field.full() != 0 || mask.is_some_and(|m| m & !field.full() != 0) {
            return reject(E::BadMatchBadValue, format!("{}: value {value:#x} is wider than the field", field.name()));
        }
        if let Some(m) = mask {
            if value & !m != 0 {
                return reject(
                    E::BadMatchBadWildcards,
                    format!("{}: value {value:#x} has bits outside its mask {m:#x}", field.name()),
                );
            }
        }
        Ok(Oxm { field, value, mask })
    }
}

fn put_uint(w: &mut Writer, v: u128, n: usize) {
    w.bytes(&v.to_be_bytes()[16 - n..]);
}

fn get_uint(b: &[u8]) -> u128 {
    b.iter().fold(0u128, |acc, &x| (acc << 8) | u128::from(x))
}

/// `ofp_match` of type OXM: its fields in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Match {
    pub fields: Vec<Oxm>,
}

/// Ethernet types of the prerequisites.
const ETH_IPV4: u128 = 0x0800;
const ETH_IPV6: u128 = 0x86dd;
const ETH_ARP: u128 = 0x0806;
const ETH_MPLS: u128 = 0x8847;
const ETH_MPLS_MC: u128 = 0x8848;
const ETH_PBB: u128 = 0x88e7;

impl Match {
    pub fn new(fields: Vec<Oxm>) -> Self {
        Self { fields }
    }

    pub fn get(&self, f: Field) -> Option<&Oxm> {
        self.fields.iter().find(|o| o.field == f)
    }

    /// An exact value of a field, if the match has it unmasked.
    pub fn exact(&self, f: Field) -> Option<u128> {
        self.get(f).filter(|o| o.mask.is_none()).map(|o| o.value)
    }

    /// Encoded length without the trailing padding.
    pub fn unpadded_len(&self) -> usize {
        4 + self.fields.iter().map(Oxm::wire_len).sum::<usize>()
    }

    /// Writes `ofp_match` with its padding to 8.
    pub fn encode(&self, w: &mut Writer) {
        w.u16(MATCH_TYPE_OXM).u16(self.unpadded_len() as u16);
        for f in &self.fields {
            f.encode(w);
        }
        w.zeros(padding8(self.unpadded_len()));
    }

    /// Reads `ofp_match` and its padding; checks duplicates and
    /// prerequisites.
    pub fn decode(r: &mut Reader<'_>) -> Result<Match, Rejection> {
        let typ = r.u16().or_len(E::BadMatchBadLen, "ofp_match")?;
        let len = usize::from(r.u16().or_len(E::BadMatchBadLen, "ofp_match")?);
        if typ != MATCH_TYPE_OXM {
            return reject(E::BadMatchBadType, format!("match type {typ} (only OXM, type 1, is OpenFlow 1.3's)"));
        }
        if len < 4 {
            return reject(E::BadMatchBadLen, format!("match length {len} < 4"));
        }
        let mut body = r.sub(len - 4).or_len(E::BadMatchBadLen, "ofp_match")?;
        r.skip(padding8(len)).or_len(E::BadMatchBadLen, "ofp_match padding")?;
        let mut fields = Vec::new();
        while !body.is_empty() {
            let o = Oxm::decode(&mut body)?;
            if fields.iter().any(|x: &Oxm| x.field == o.field) {
                return reject(E::BadMatchDupField, format!("{} appears twice", o.field.name()));
            }
            fields.push(o);
        }
        let m = Match { fields };
        m.check_prerequisites()?;
        Ok(m)
    }

    /// Spec table 11: a field is only matched when the fields it depends on
    /// are matched exactly with the right values.
    pub fn check_prerequisites(&self) -> Result<(), Rejection> {
        let eth = self.exact(Field::EthType);
        let proto = self.exact(Field::IpProto);
        let ip = matches!(eth, Some(ETH_IPV4 | ETH_IPV6));
        for o in &self.fields {
            let ok = match o.field {
                Field::InPhyPort => self.get(Field::InPort).is_some(),
                Field::VlanPcp => self.get(Field::VlanVid).is_some_and(|v| v.mask.is_none() && v.value != 0),
                Field::IpDscp | Field::IpEcn | Field::IpProto => ip,
                Field::Ipv4Src | Field::Ipv4Dst => eth == Some(ETH_IPV4),
                Field::TcpSrc | Field::TcpDst => ip && proto == Some(6),
                Field::UdpSrc | Field::UdpDst => ip && proto == Some(17),
                Field::SctpSrc | Field::SctpDst => ip && proto == Some(132),
                Field::Icmpv4Type | Field::Icmpv4Code => eth == Some(ETH_IPV4) && proto == Some(1),
                Field::ArpOp | Field::ArpSpa | Field::ArpTpa | Field::ArpSha | Field::ArpTha => eth == Some(ETH_ARP),
                Field::Ipv6Src | Field::Ipv6Dst | Field::Ipv6Flabel | Field::Ipv6Exthdr => eth == Some(ETH_IPV6),
                Field::Icmpv6Type | Field::Icmpv6Code => eth == Some(ETH_IPV6) && proto == Some(58),
                Field::Ipv6NdTarget => {
                    eth == Some(ETH_IPV6)
                        && proto == Some(58)
                        && matches!(self.exact(Field::Icmpv6Type), Some(135 | 136))
                }
                Field::Ipv6NdSll => self.exact(Field::Icmpv6Type) == Some(135) && proto == Some(58),
                Field::Ipv6NdTll => self.exact(Field::Icmpv6Type) == Some(136) && proto == Some(58),
                Field::MplsLabel | Field::MplsTc | Field::MplsBos => matches!(eth, Some(ETH_MPLS | ETH_MPLS_MC)),
                Field::PbbIsid => eth == Some(ETH_PBB),
                _ => true,
            };
            if !ok {
                return reject(
                    E::BadMatchBadPrereq,
                    format!("{} without the fields it depends on (eth_type, ip_proto, ...)", o.field.name()),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(m: &Match) -> Match {
        let mut w = Writer::new();
        m.encode(&mut w);
        assert_eq!(w.len() % 8, 0);
        let mut r = Reader::new(&w.buf);
        let back = Match::decode(&mut r).expect("decodes");
        assert!(r.is_empty());
        back
    }

    #[test]
    fn fields_round_trip() {
        let m = Match::new(vec![
            Oxm::exact(Field::InPort, 3),
            Oxm::masked(Field::EthDst, 0x0200_0000_0000, 0xff00_0000_0000),
            Oxm::exact(Field::EthType, 0x0800),
            Oxm::exact(Field::IpProto, 17),
            Oxm::masked(Field::Ipv4Dst, 0x0a00_0000, 0xff00_0000),
            Oxm::exact(Field::UdpDst, 4789),
            Oxm::masked(Field::TunnelId, 0x1234, 0xffff),
        ]);
        assert_eq!(roundtrip(&m), m);
        assert_eq!(roundtrip(&Match::default()), Match::default());
    }

    fn decode_bytes(b: &[u8]) -> Result<Match, Rejection> {
        Match::decode(&mut Reader::new(b))
    }

    #[test]
    fn refusals_carry_the_spec_codes() {
        let code = |m: Match| {
            let mut w = Writer::new();
            m.encode(&mut w);
            decode_bytes(&w.buf).unwrap_err().code
        };
        assert_eq!(code(Match::new(vec![Oxm::exact(Field::TcpDst, 80)])), E::BadMatchBadPrereq);
        assert_eq!(
            code(Match::new(vec![Oxm::exact(Field::EthType, 0x800), Oxm::exact(Field::EthType, 0x800)])),
            E::BadMatchDupField
        );
        assert_eq!(code(Match::new(vec![Oxm::masked(Field::EthType, 0x800, 0xff00)])), E::BadMatchBadMask);
        assert_eq!(code(Match::new(vec![Oxm::masked(Field::EthSrc, 0xff, 0xf0)])), E::BadMatchBadWildcards);
        assert_eq!(code(Match::new(vec![Oxm::exact(Field::VlanVid, 0x2000)])), E::BadMatchBadValue);
        // Standard (OpenFlow 1.1) match type, an unknown class, a short TLV.
        assert_eq!(decode_bytes(&[0, 0, 0, 4, 0, 0, 0, 0]).unwrap_err().code, E::BadMatchBadType);
        assert_eq!(
            decode_bytes(&[0, 1, 0, 12, 0, 1, 2, 4, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap_err().code,
            E::BadMatchBadField
        );
        assert_eq!(decode_bytes(&[0, 1, 0, 10, 0x80, 0, 0, 4, 0, 0, 0, 0]).unwrap_err().code, E::BadMatchBadLen);
        assert_eq!(decode_bytes(&[0, 1, 0, 8, 0x80, 0, 0, 3, 0, 0, 0, 0]).unwrap_err().code, E::BadMatchBadLen);
    }

    #[test]
    fn every_field_round_trips_at_full_width() {
        for &f in Field::ALL {
            let m = Match::new(vec![Oxm::exact(f, f.full())]);
            let mut w = Writer::new();
            m.encode(&mut w);
            let mut r = Reader::new(&w.buf);
            // Prerequisites aside, the TLV itself reads back.
            r.skip(4).unwrap();
            assert_eq!(Oxm::decode(&mut r).expect("decodes"), m.fields[0], "{}", f.name());
        }
    }
}
