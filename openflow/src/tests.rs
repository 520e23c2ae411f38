//! Round trips of every message kind and the refusals of the framing.

use super::*;
use crate::action::port;
use crate::multipart::{AggregateStats, Desc, FlowStats, FlowStatsRequest, TableStats};
use crate::port::{PortDesc, PortStats};

fn samples() -> Vec<Message> {
    let m = Match::new(vec![Oxm::exact(Field::InPort, 1), Oxm::exact(Field::EthType, 0x0806)]);
    let instr = vec![Instruction::ApplyActions(vec![Action::Output { port: 2, max_len: 0 }])];
    let desc = PortDesc { port_no: 1, hw_addr: [2, 0, 0, 0, 0, 1], name: "vf0".into(), state: 4, ..Default::default() };
    vec![
        Message::Hello(Hello::ours()),
        Message::Hello(Hello { bitmap: None }),
        Message::Error(ErrorMsg { typ: 1, code: 1, data: vec![4, 99, 0, 8, 0, 0, 0, 1] }),
        Message::EchoRequest(b"ping".to_vec()),
        Message::EchoReply(vec![]),
        Message::Experimenter { experimenter: 0x2320, exp_type: 7, data: vec![1, 2] },
        Message::FeaturesRequest,
        Message::FeaturesReply(Features {
            datapath_id: 42,
            n_buffers: 0,
            n_tables: 254,
            auxiliary_id: 0,
            capabilities: 7,
        }),
        Message::GetConfigRequest,
        Message::GetConfigReply(SwitchConfig::default()),
        Message::SetConfig(SwitchConfig { flags: 0, miss_send_len: 0xffff }),
        Message::PacketIn(PacketIn {
            buffer_id: action::NO_BUFFER,
            total_len: 60,
            reason: packet_in_reason::NO_MATCH,
            table_id: 0,
            cookie: u64::MAX,
            matcher: Match::new(vec![Oxm::exact(Field::InPort, 3)]),
            data: vec![0xab; 60],
        }),
        Message::FlowRemoved(FlowRemoved {
            cookie: 9,
            priority: 10,
            reason: removed_reason::IDLE_TIMEOUT,
            table_id: 1,
            duration_sec: 3,
            duration_nsec: 500,
            idle_timeout: 10,
            hard_timeout: 0,
            packet_count: 5,
            byte_count: 300,
            matcher: m.clone(),
        }),
        Message::PortStatus(PortStatus { reason: port_reason::MODIFY, desc: desc.clone() }),
        Message::PacketOut(PacketOut {
            buffer_id: action::NO_BUFFER,
            in_port: port::CONTROLLER,
            actions: vec![Action::Output { port: port::FLOOD, max_len: 0 }],
            data: vec![1; 64],
        }),
        Message::FlowMod(FlowMod {
            cookie: 0x10,
            cookie_mask: 0xff,
            table_id: 2,
            command: FlowModCommand::ModifyStrict,
            idle_timeout: 5,
            hard_timeout: 60,
            priority: 100,
            flags: flow_flags::SEND_FLOW_REM,
            matcher: m.clone(),
            instructions: instr.clone(),
            ..Default::default()
        }),
        Message::MultipartRequest(MultipartRequest { flags: 0, body: MultipartRequestBody::Desc }),
        Message::MultipartRequest(MultipartRequest {
            flags: 0,
            body: MultipartRequestBody::Flow(FlowStatsRequest {
                table_id: TABLE_ALL,
                out_port: port::ANY,
                out_group: action::GROUP_ANY,
                matcher: m.clone(),
                ..Default::default()
            }),
        }),
        Message::MultipartRequest(MultipartRequest {
            flags: 0,
            body: MultipartRequestBody::Aggregate(FlowStatsRequest::default()),
        }),
        Message::MultipartRequest(MultipartRequest { flags: 0, body: MultipartRequestBody::Table }),
        Message::MultipartRequest(MultipartRequest { flags: 0, body: MultipartRequestBody::PortStats(port::ANY) }),
        Message::MultipartRequest(MultipartRequest { flags: 0, body: MultipartRequestBody::PortDesc }),
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Desc(Desc {
                mfr_desc: "vswitch".into(),
                hw_desc: "DPDK".into(),
                sw_desc: "0.1.0".into(),
                serial_num: "None".into(),
                dp_desc: "test".into(),
            }),
        }),
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Flow(vec![FlowStats {
                table_id: 0,
                priority: 1,
                cookie: 3,
                packet_count: 10,
                byte_count: 640,
                matcher: m,
                instructions: instr,
                ..Default::default()
            }]),
        }),
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Aggregate(AggregateStats { packet_count: 1, byte_count: 2, flow_count: 3 }),
        }),
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Table(vec![TableStats {
                table_id: 0,
                active_count: 1,
                lookup_count: 2,
                matched_count: 1,
            }]),
        }),
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::PortStats(vec![PortStats { port_no: 1, rx_packets: 5, ..Default::default() }]),
        }),
        Message::MultipartReply(MultipartReply { flags: 0, body: MultipartReplyBody::PortDesc(vec![desc]) }),
        Message::MultipartRequest(MultipartRequest { flags: 0, body: MultipartRequestBody::TableFeatures }),
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::TableFeatures(vec![crate::multipart::TableFeatures {
                table_id: 3,
                name: "acl".into(),
                max_entries: 1000,
                properties: vec![
                    crate::multipart::TableFeatureProp::ids(0, &[1, 4]),
                    crate::multipart::TableFeatureProp::tables(2, 4..10),
                    crate::multipart::TableFeatureProp::fields(8, &[Field::InPort, Field::EthDst], true),
                ],
                ..Default::default()
            }]),
        }),
        Message::BarrierRequest,
        Message::BarrierReply,
        Message::RoleRequest(RoleMsg { role: 2, generation_id: 7 }),
        Message::RoleReply(RoleMsg { role: 2, generation_id: 7 }),
    ]
}

#[test]
fn every_message_round_trips() {
    for (i, m) in samples().into_iter().enumerate() {
        let bytes = encode(i as u32, &m);
        assert_eq!(frame_len(&bytes), Frame::Complete(bytes.len()));
        let (h, back) = decode(&bytes).unwrap_or_else(|e| panic!("{m:?}: {}", e.rejection));
        assert_eq!((h.version, h.xid, h.kind), (VERSION, i as u32, m.kind()));
        assert_eq!(back, m);
    }
}

#[test]
fn framing_and_header_refusals() {
    assert_eq!(frame_len(&[4, 0, 0]), Frame::Partial);
    assert_eq!(frame_len(&[4, 0, 0, 16, 0, 0, 0, 0]), Frame::Partial);
    assert_eq!(frame_len(&[4, 0, 0, 4, 0, 0, 0, 0]), Frame::Broken(4));
    let code = |b: &[u8]| decode(b).unwrap_err().rejection.code;
    // OpenFlow 1.0 FEATURES_REQUEST, an unknown type, GROUP_MOD, trailing bytes.
    assert_eq!(code(&[1, 5, 0, 8, 0, 0, 0, 1]), ErrorCode::BadRequestBadVersion);
    assert_eq!(code(&[4, 99, 0, 8, 0, 0, 0, 1]), ErrorCode::BadRequestBadType);
    assert_eq!(code(&[4, 15, 0, 8, 0, 0, 0, 1]), ErrorCode::BadRequestBadType);
    assert_eq!(code(&[4, 20, 0, 9, 0, 0, 0, 1, 0]), ErrorCode::BadRequestBadLen);
    // A multipart kind this switch does not answer (GROUP_DESC).
    assert_eq!(code(&[4, 18, 0, 16, 0, 0, 0, 1, 0, 7, 0, 0, 0, 0, 0, 0]), ErrorCode::BadRequestBadMultipart);
    // FLOW_MOD with command 9.
    let mut fm = encode(1, &Message::FlowMod(FlowMod::default()));
    fm[8 + 17] = 9;
    assert_eq!(code(&fm), ErrorCode::FlowModFailedBadCommand);
    // A HELLO of any version decodes; negotiation picks 1.3 or nothing.
    let (h, m) = decode(&[6, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 8, 0, 0, 0, 0x42]).expect("hello");
    let Message::Hello(hello) = m else { panic!("not a hello") };
    assert_eq!(hello.negotiate(h.version), None, "bitmap without 1.3");
    assert_eq!(Hello { bitmap: None }.negotiate(6), Some(VERSION));
    assert_eq!(Hello { bitmap: None }.negotiate(1), None);
    assert_eq!(Hello { bitmap: Some(vec![0x12]) }.negotiate(4), Some(VERSION));
}

#[test]
fn large_replies_split_between_entries() {
    let flows: Vec<FlowStats> = (0..2000)
        .map(|i| FlowStats {
            priority: i as u16,
            matcher: Match::new(vec![Oxm::exact(Field::InPort, i)]),
            ..Default::default()
        })
        .collect();
    let body = MultipartReplyBody::Flow(flows.clone());
    let parts = encode_multipart_reply(5, &body);
    assert!(parts.len() > 1);
    let mut back = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        assert!(p.len() <= MAX_LEN);
        let (_, m) = decode(p).expect("part decodes");
        let Message::MultipartReply(r) = m else { panic!("not a reply") };
        assert_eq!(r.flags, if i + 1 < parts.len() { multipart::MORE } else { 0 });
        let MultipartReplyBody::Flow(f) = r.body else { panic!("not flows") };
        back.extend(f);
    }
    assert_eq!(back, flows);
}

#[test]
fn error_reply_carries_the_request() {
    let req = encode(77, &Message::FlowMod(FlowMod::default()));
    let e = error_reply(77, ErrorCode::BadMatchBadPrereq, &req);
    let (h, m) = decode(&e).expect("error decodes");
    assert_eq!(h.xid, 77);
    assert_eq!(m, Message::Error(ErrorMsg { typ: 4, code: 9, data: req.clone() }));
}

/// Bytes ovs-ofctl 3.1 (`-O OpenFlow13`) sent for add-flow, mod-flows,
/// del-flows, dump-*, show and packet-out (the fuzz seeds, captured from it):
/// every message decodes and re-encodes to the same bytes.
#[test]
fn ovs_ofctl_messages_decode() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../vswitch/fuzz/seeds/openflow");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("seed directory") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("seed");
        let mut rest = &bytes[..];
        while let Frame::Complete(n) = frame_len(rest) {
            let (one, tail) = rest.split_at(n);
            rest = tail;
            let (h, m) = decode(one).unwrap_or_else(|e| panic!("{one:02x?}: {}", e.rejection));
            assert_eq!(encode(h.xid, &m), one, "{m:?}");
            seen += 1;
        }
        assert!(rest.is_empty());
    }
    assert!(seen >= 40, "{seen} messages");
}
