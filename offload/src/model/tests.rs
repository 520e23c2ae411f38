//! The model on hand-built packets: each rule shape's effect, priorities,
//! groups, counters, aging, capacity, replacement and port stops.

use super::*;
use crate::packet::VecPacket;
use crate::probe::{sample_rule, ProbePorts, Shape};
use crate::rte_flow::lower;
use crate::rule::*;

const PORTS: ProbePorts = ProbePorts { vf: 1, uplink: 0 };

fn device() -> ModelDevice {
    ModelDevice::new(Arc::new(ModelSwitch::new(Profile::default())))
}

fn install(d: &mut ModelDevice, rule: &HwRule, group: u32) -> RuleHandle {
    d.create(&lower(rule, group, 42).expect("lower")).expect("create")
}

/// Ethernet (optionally one tag) / IPv4 / UDP with a payload.
fn udp_frame(dst: [u8; 6], src: [u8; 6], vlan: Option<u16>, ip_dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let payload = [0xabu8; 18];
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + 8 + payload.len()) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 1, 0, 1]);
    ip[16..20].copy_from_slice(&ip_dst);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&1234u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&payload);
    f
}

fn run(d: &ModelDevice, port: u16, frame: &[u8]) -> (Verdict, Vec<u8>) {
    let mut p = VecPacket::new(frame, 128);
    let v = d.switch().process(port, &mut p);
    (v, p.data().to_vec())
}

const VM: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const GW: [u8; 6] = [2, 0, 0, 0, 0, 1];

#[test]
fn forward_by_prefix_and_count() {
    let mut d = device();
    let (rule, g) = sample_rule(Shape::VfToUplink, PORTS, 0);
    let h = install(&mut d, &rule, g);
    let f = udp_frame(GW, VM, None, [10, 9, 9, 9], 80);
    assert_eq!(run(&d, 1, &f), (Verdict::Output(0), f.clone()), "matched and unchanged");
    assert_eq!(run(&d, 0, &f).0, Verdict::Miss, "other ingress port");
    assert_eq!(run(&d, 1, &udp_frame(GW, VM, None, [11, 0, 0, 1], 80)).0, Verdict::Miss, "outside 10/8");
    assert_eq!(run(&d, 1, &udp_frame(GW, VM, Some(5), [10, 0, 0, 1], 80)).0, Verdict::Miss, "tagged (has_vlan=0)");
    assert_eq!(run(&d, 1, &udp_frame(GW, GW, None, [10, 0, 0, 1], 80)).0, Verdict::Miss, "other source MAC");
    assert_eq!(d.query(h), Ok(HitCounts { packets: 1, bytes: f.len() as u64 }));
}

#[test]
fn vlan_push_pop_and_mac_rewrite_edit_like_the_software_actions() {
    let mut d = device();
    let (push, g) = sample_rule(Shape::VlanPush, PORTS, 0);
    install(&mut d, &push, g);
    let f = udp_frame(GW, VM, None, [10, 0, 0, 1], 80);
    let (v, out) = run(&d, 1, &f);
    assert_eq!(v, Verdict::Output(0));
    let mut want = f[..12].to_vec();
    want.extend_from_slice(&[0x81, 0x00, 0x00, 100]);
    want.extend_from_slice(&f[12..]);
    assert_eq!(out, want);

    let (pop, g) = sample_rule(Shape::VlanPop, PORTS, 0);
    install(&mut d, &pop, g);
    let tagged = udp_frame(VM, GW, Some(100), [10, 0, 0, 1], 80);
    let (v, out) = run(&d, 0, &tagged);
    assert_eq!((v, out), (Verdict::Output(1), udp_frame(VM, GW, None, [10, 0, 0, 1], 80)));
    assert_eq!(run(&d, 0, &udp_frame(VM, GW, Some(101), [10, 0, 0, 1], 80)).0, Verdict::Miss, "other VID");

    let (mac, g) = sample_rule(Shape::MacRewrite, PORTS, 0);
    install(&mut d, &mac, g);
    let (v, out) = run(&d, 0, &udp_frame(VM, GW, None, [10, 0, 0, 1], 80));
    assert_eq!(v, Verdict::Output(1));
    assert_eq!(&out[..12], &[2, 0, 0, 0, 0, 0x11, 2, 0, 0, 0, 0, 1]);
}

#[test]
fn encap_then_decap_gives_the_frame_back() {
    let mut d = device();
    let (encap, g) = sample_rule(Shape::VxlanEncapV4, PORTS, 0);
    install(&mut d, &encap, g);
    let inner = udp_frame([2, 0, 0, 0, 0, 0x20], VM, None, [10, 0, 0, 1], 80);
    let (v, out) = run(&d, 1, &inner);
    assert_eq!(v, Verdict::Output(0));
    assert_eq!(out.len(), inner.len() + 50);
    assert_eq!(checksum(&out[14..34]), 0, "outer IPv4 checksum valid");
    assert_eq!(u16::from_be_bytes([out[16], out[17]]) as usize, inner.len() + 36);
    let sport = u16::from_be_bytes([out[34], out[35]]);
    assert_eq!(sport, vxlan_src_port(&InnerFlow::from_frame(&inner)));
    assert_eq!(&out[50..], &inner[..]);

    // The decap rule matches what the encap rule produced, if addressed to
    // its VTEP: rewrite the outer addresses to the decap sample's.
    let mut wire = out.clone();
    wire[0..6].copy_from_slice(&GW);
    wire[26..30].copy_from_slice(&[198, 18, 0, 2]);
    wire[30..34].copy_from_slice(&[198, 18, 0, 1]);
    wire[24..26].copy_from_slice(&[0, 0]);
    let c = checksum(&wire[14..34]);
    wire[24..26].copy_from_slice(&c.to_be_bytes());
    // Inner destination: the VM.
    wire[50..56].copy_from_slice(&VM);
    let (decap, g) = sample_rule(Shape::VxlanDecap, PORTS, 0);
    install(&mut d, &decap, g);
    let (v, got) = run(&d, 0, &wire);
    assert_eq!(v, Verdict::Output(1));
    assert_eq!(&got[..], &wire[50..]);
    // A bad outer checksum is left to software.
    let mut bad = wire.clone();
    bad[24] ^= 1;
    assert_eq!(run(&d, 0, &bad), (Verdict::Miss, bad.clone()));
    // Another VNI does not match.
    let mut other = wire.clone();
    other[48] = 101;
    assert_eq!(run(&d, 0, &other).0, Verdict::Miss);
}

#[test]
fn priorities_groups_and_jumps() {
    let mut d = device();
    let base = |prio: u32, port: u16| HwRule {
        pattern: Pattern { ingress: 1, tunnel: None, headers: Headers::default() },
        priority: prio,
        actions: vec![HwAction::Output(port)],
    };
    install(&mut d, &base(5, 2), 1);
    let f = udp_frame(GW, VM, None, [10, 0, 0, 1], 80);
    assert_eq!(run(&d, 1, &f).0, Verdict::Miss, "group 1 is not reached without a jump");
    let (jump, g) = sample_rule(Shape::Jump, PORTS, 1);
    install(&mut d, &jump, g);
    assert_eq!(run(&d, 1, &f).0, Verdict::Output(2));
    let h = install(&mut d, &base(3, 3), 1);
    assert_eq!(run(&d, 1, &f).0, Verdict::Output(3), "lower number, higher priority");
    d.destroy(h).expect("destroy");
    assert_eq!(run(&d, 1, &f).0, Verdict::Output(2));
    // Same match, same priority: the newer rule answers (make-before-break).
    let newer = install(&mut d, &base(5, 4), 1);
    assert_eq!(run(&d, 1, &f).0, Verdict::Output(4));
    d.destroy(newer).expect("destroy");
    assert_eq!(run(&d, 1, &f).0, Verdict::Output(2), "the older one again");
    assert_eq!(d.destroy(newer).map_err(|e| e.kind), Err(crate::device::ErrorKind::Other), "unknown handle");
}

#[test]
fn capacity_aging_flush_and_port_stop() {
    let profile = Profile { max_rules: 3, ..Profile::default() };
    let mut d = ModelDevice::new(Arc::new(ModelSwitch::new(profile)));
    let rule = |dst: u8, out: u16| HwRule {
        pattern: Pattern {
            ingress: 1,
            tunnel: None,
            headers: Headers {
                eth: EthMatch { dst: Some(Masked::exact([2, 0, 0, 0, 0, dst])), ..Default::default() },
                ..Default::default()
            },
        },
        priority: 0,
        actions: vec![HwAction::Count, HwAction::Age { timeout_s: 1 }, HwAction::Output(out)],
    };
    for i in 0..3 {
        install(&mut d, &rule(i, 2), 0);
    }
    let e = d.create(&lower(&rule(9, 2), 0, 1).expect("lower")).expect_err("full");
    assert_eq!(e.kind, crate::device::ErrorKind::NoSpace, "{e}");
    assert!(d.aged().expect("aged").is_empty(), "nothing idle for a second yet");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(d.aged().expect("aged"), vec![42, 42, 42], "every rule's cookie, once");
    assert!(d.aged().expect("aged").is_empty(), "reported once");
    assert!(d.switch().port_stopped(7).is_empty());
    assert_eq!(d.switch().port_stopped(2).len(), 3, "rules sending to the stopped port are gone");
    assert_eq!(d.rules(), 0);
    install(&mut d, &rule(1, 2), 0);
    assert_eq!(d.flush(), Ok(1));
}

#[test]
fn sessions_batch_counts_per_rule() {
    let mut d = device();
    let (rule, g) = sample_rule(Shape::UplinkToVf, PORTS, 0);
    let h = install(&mut d, &rule, g);
    let f = udp_frame(VM, GW, None, [10, 0, 0, 1], 80);
    {
        let mut s = d.switch().session();
        for _ in 0..10 {
            let mut p = VecPacket::new(&f, 64);
            assert_eq!(s.process(0, &mut p), Verdict::Output(1));
        }
    }
    assert_eq!(d.query(h).map(|c| c.packets), Ok(10));
    assert_eq!(d.switch().stats.hits.load(Ordering::Relaxed), 10);
}

#[test]
fn push_without_headroom_is_an_error_not_a_panic() {
    let mut d = device();
    let (push, g) = sample_rule(Shape::VlanPush, PORTS, 0);
    install(&mut d, &push, g);
    let f = udp_frame(GW, VM, None, [10, 0, 0, 1], 80);
    let mut p = VecPacket::new(&f, 0);
    assert_eq!(d.switch().process(1, &mut p), Verdict::Error);
}
