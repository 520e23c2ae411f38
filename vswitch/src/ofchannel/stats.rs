//! MULTIPART replies: the switch's description, rule statistics (each rule's
//! packets and bytes are the sum of its megaflows' in software and in
//! hardware), the table, port counters and descriptions, table features.

use crate::ofmap::Ports;
use crate::ofmap::{from_actions, from_match, N_TABLES};
use crate::switch::{OfFilter, Switch};
use openflow::action::port as ofp;
use openflow::error::{reject, ErrorCode as E, Rejection};
use openflow::multipart::{
    table_prop, AggregateStats, Desc, FlowStats, FlowStatsRequest, TableFeatureProp, TableFeatures, TableStats,
};
use openflow::oxm::Field as Of;
use openflow::port::{PortDesc, PortStats, CONFIG_PORT_DOWN, FEATURES_OTHER, STATE_LINK_DOWN, STATE_LIVE};
use openflow::{encode_multipart_reply, MultipartReplyBody, MultipartRequest, MultipartRequestBody};

/// Fields a rule can match on (TABLE_FEATURES' MATCH and WILDCARDS).
pub const MATCH_FIELDS: &[Of] = &[
    Of::InPort,
    Of::EthDst,
    Of::EthSrc,
    Of::EthType,
    Of::VlanVid,
    Of::VlanPcp,
    Of::IpDscp,
    Of::IpEcn,
    Of::IpProto,
    Of::Ipv4Src,
    Of::Ipv4Dst,
    Of::TcpSrc,
    Of::TcpDst,
    Of::UdpSrc,
    Of::UdpDst,
    Of::SctpSrc,
    Of::SctpDst,
    Of::Icmpv4Type,
    Of::Icmpv4Code,
    Of::ArpOp,
    Of::ArpSpa,
    Of::ArpTpa,
    Of::Ipv6Src,
    Of::Ipv6Dst,
    Of::Icmpv6Type,
    Of::Icmpv6Code,
    Of::TunnelId,
];

/// Fields set_field can write.
pub const SET_FIELDS: &[Of] = &[Of::EthDst, Of::EthSrc, Of::VlanVid, Of::TunnelId];

/// The replies to a multipart request.
///
/// # Errors
/// BAD_MULTIPART for a request spread over several messages, BAD_TABLE_ID,
/// BAD_PORT; BAD_REQUEST/EPERM when the datapath did not answer.
pub fn reply(xid: u32, m: &MultipartRequest, switch: &Switch, datapath_id: u64) -> Result<Vec<Vec<u8>>, Rejection> {
    if m.flags & openflow::multipart::MORE != 0 {
        return reject(E::BadRequestBadMultipart, "requests in several parts are not supported");
    }
    let body = match &m.body {
        MultipartRequestBody::Desc => MultipartReplyBody::Desc(Desc {
            mfr_desc: "vswitch project".into(),
            hw_desc: "DPDK userspace switch".into(),
            sw_desc: format!("vswitchd {}", env!("CARGO_PKG_VERSION")),
            serial_num: "None".into(),
            dp_desc: format!("vswitchd datapath {datapath_id:016x}"),
        }),
        MultipartRequestBody::Flow(req) => MultipartReplyBody::Flow(flows(req, switch)?),
        MultipartRequestBody::Aggregate(req) => {
            let list = flows(req, switch)?;
            MultipartReplyBody::Aggregate(AggregateStats {
                packet_count: list.iter().map(|f| f.packet_count).sum(),
                byte_count: list.iter().map(|f| f.byte_count).sum(),
                flow_count: list.len() as u32,
            })
        }
        MultipartRequestBody::Table => MultipartReplyBody::Table(tables(switch)?),
        MultipartRequestBody::PortStats(p) => MultipartReplyBody::PortStats(port_stats(*p, switch)?),
        MultipartRequestBody::PortDesc => MultipartReplyBody::PortDesc(port_descs(switch)),
        MultipartRequestBody::TableFeatures => MultipartReplyBody::TableFeatures((0..N_TABLES).map(features).collect()),
    };
    Ok(encode_multipart_reply(xid, &body))
}

fn datapath_error(e: impl std::fmt::Display) -> Rejection {
    Rejection::new(E::BadRequestEperm, format!("the datapath did not answer: {e}"))
}

fn filter(req: &FlowStatsRequest, switch: &Switch) -> Result<OfFilter, Rejection> {
    let table = match req.table_id {
        openflow::TABLE_ALL => None,
        t if t < N_TABLES => Some(t),
        t => return reject(E::BadRequestBadTableId, format!("table {t}: this switch has {N_TABLES}")),
    };
    Ok(OfFilter {
        table,
        matcher: crate::ofmap::to_match(&req.matcher, switch.of_ports())?,
        strict_priority: None,
        cookie: req.cookie,
        cookie_mask: req.cookie_mask,
        out_port: req.out_port,
    })
}

fn flows(req: &FlowStatsRequest, switch: &Switch) -> Result<Vec<FlowStats>, Rejection> {
    let f = filter(req, switch)?;
    let rules = switch.of_select(&f);
    let counts = if rules.is_empty() { Default::default() } else { switch.rule_counts().map_err(datapath_error)? };
    Ok(rules
        .iter()
        .map(|r| {
            let (packets, bytes) = counts.get(&r.id).copied().unwrap_or((0, 0));
            let age = r.meta.added.elapsed();
            let (matcher, instructions) = of_view(r);
            FlowStats {
                table_id: r.meta.table,
                duration_sec: age.as_secs() as u32,
                duration_nsec: age.subsec_nanos(),
                priority: r.meta.priority.min(0xffff) as u16,
                idle_timeout: r.meta.idle_timeout,
                hard_timeout: r.meta.hard_timeout,
                flags: r.meta.flags,
                cookie: r.meta.cookie,
                packet_count: packets,
                byte_count: bytes,
                matcher,
                instructions,
            }
        })
        .collect())
}

/// Every table: its rules; matches are its rules' packets; lookups in
/// table 0 are the packets that met the rule table (those a rule matched,
/// and those none did: the `no_rule` drops), in a later table the packets
/// of the rules that go on to it.
fn tables(switch: &Switch) -> Result<Vec<TableStats>, Rejection> {
    let counts = switch.rule_counts().map_err(datapath_error)?;
    let mut out: Vec<TableStats> = (0..N_TABLES).map(|t| TableStats { table_id: t, ..Default::default() }).collect();
    for (id, table, goto) in switch.rule_tables() {
        let packets = counts.get(&id).map_or(0, |c| c.0);
        let t = &mut out[usize::from(table)];
        t.active_count += 1;
        t.matched_count += packets;
        if let Some(next) = goto.and_then(|g| out.get_mut(usize::from(g))) {
            next.lookup_count += packets;
        }
    }
    out[0].lookup_count = out[0].matched_count + switch.stats().drops.get("no_rule").copied().unwrap_or(0);
    Ok(out)
}

fn port_stats(port: u32, switch: &Switch) -> Result<Vec<PortStats>, Rejection> {
    let ports = switch.of_ports();
    if port != ofp::ANY && ports.datapath(port).is_none() {
        return reject(E::BadRequestBadPort, format!("port {port}: no such port"));
    }
    let stats = switch.stats();
    let up = std::time::Duration::from_secs_f64(stats.uptime_s.max(0.0));
    Ok(stats
        .ports
        .iter()
        .filter(|p| port == ofp::ANY || Ports::openflow(p.number) == port)
        .map(|p| PortStats {
            port_no: Ports::openflow(p.number),
            rx_packets: p.rx_packets,
            tx_packets: p.tx_packets,
            rx_bytes: p.rx_bytes,
            tx_bytes: p.tx_bytes,
            rx_dropped: p.rx_missed + p.rx_no_mbuf,
            tx_dropped: p.tx_dropped,
            duration_sec: up.as_secs() as u32,
            duration_nsec: up.subsec_nanos(),
            ..Default::default()
        })
        .collect())
}

/// Every port (tunnel ports after the physical ones), as PORT_DESC and
/// PORT_STATUS describe them.
pub fn port_descs(switch: &Switch) -> Vec<PortDesc> {
    let mut out: Vec<PortDesc> = switch
        .ports()
        .iter()
        .map(|p| {
            let link = p.port.link().ok();
            let up = link.as_ref().is_some_and(|l| l.up);
            let kbps = link.map_or(0, |l| l.speed_mbps.saturating_mul(1000));
            PortDesc {
                port_no: Ports::openflow(p.number),
                hw_addr: p.port.mac_or(p.spec.mac).unwrap_or_default(),
                name: p.spec.name.clone(),
                config: if p.port.is_started() { 0 } else { CONFIG_PORT_DOWN },
                state: if up { STATE_LIVE } else { STATE_LINK_DOWN },
                curr: FEATURES_OTHER,
                curr_speed: kbps,
                max_speed: kbps,
                ..Default::default()
            }
        })
        .collect();
    let base = switch.ports().len() as u32;
    out.extend(switch.config().tunnels.iter().enumerate().map(|(i, t)| PortDesc {
        port_no: Ports::openflow(base + i as u32),
        name: t.name.clone(),
        state: STATE_LIVE,
        curr: FEATURES_OTHER,
        ..Default::default()
    }));
    out
}

/// A table's features: what it matches, the instructions and actions it
/// runs, what set_field can write, the tables it may go on to.
fn features(table: u8) -> TableFeatures {
    TableFeatures {
        table_id: table,
        name: format!("table{table}"),
        metadata_match: 0,
        metadata_write: 0,
        config: 0,
        max_entries: crate::config::rules::MAX_RULES as u32,
        properties: vec![
            // goto_table (1), apply_actions (4), clear_actions (5).
            TableFeatureProp::ids(table_prop::INSTRUCTIONS, if table + 1 < N_TABLES { &[1, 4, 5] } else { &[4, 5] }),
            TableFeatureProp::tables(table_prop::NEXT_TABLES, table + 1..N_TABLES),
            TableFeatureProp::ids(table_prop::WRITE_ACTIONS, &[]),
            // output (0), push_vlan (17), pop_vlan (18), set_field (25).
            TableFeatureProp::ids(table_prop::APPLY_ACTIONS, &[0, 17, 18, 25]),
            TableFeatureProp::fields(table_prop::MATCH, MATCH_FIELDS, true),
            TableFeatureProp::fields(table_prop::WILDCARDS, MATCH_FIELDS, false),
            TableFeatureProp::fields(table_prop::WRITE_SETFIELD, &[], false),
            TableFeatureProp::fields(table_prop::APPLY_SETFIELD, SET_FIELDS, false),
        ],
    }
}

/// The OpenFlow view of a rule's match and instructions.
pub fn of_view(r: &crate::switch::OfRuleView) -> (openflow::Match, Vec<openflow::Instruction>) {
    match &r.meta.openflow {
        Some((m, i)) => (m.clone(), i.clone()),
        None => (from_match(&r.meta.matcher).0, from_actions(&r.actions, r.goto)),
    }
}
