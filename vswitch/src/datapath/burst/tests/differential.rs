//! Offload on and off, byte for byte, over the shapes where the two paths
//! could part: fragments (first and later, IPv4 and IPv6), `tun_id` rules,
//! frames above a VF's MTU in both directions, QinQ, and malformed frames.
//! The only difference allowed is the one docs/offload.md lists ("Where
//! hardware and software differ"): a hardware rule forwards a malformed
//! frame that software drops, and the model counts each one.

use super::*;
use crate::packet::ParseError;
use offload::model::{ModelSwitch, Profile};

const VM0: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const VM1: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
/// vf0's MTU: frames from it above this are refused on receive, frames to
/// it above this are dropped by its VF.
const VF0_MTU: u16 = 1400;

const RULES: [&str; 11] = [
    "priority=10,in_port=vf0,ip,nw_dst=10.2.0.0/16 actions=output:uplink0",
    "priority=20,in_port=vf0,udp,tp_dst=53 actions=mod_vlan_vid:100,output:uplink0",
    "priority=12,in_port=vf0,ipv6 actions=output:uplink0",
    "priority=10,in_port=vf1 actions=output:vxlan0",
    "priority=30,in_port=vf1,ip,nw_frag=later actions=drop",
    "priority=10,in_port=uplink0,dl_dst=02:00:00:00:00:10 actions=output:vf0",
    "priority=10,in_port=uplink0,dl_dst=02:00:00:00:00:11,dl_vlan=200 actions=strip_vlan,output:vf1",
    "priority=15,in_port=uplink0,dl_dst=02:00:00:00:00:11,dl_vlan=300 actions=output:vf1",
    "priority=20,in_port=vxlan0,tun_id=100 actions=output:vf1",
    "priority=10,in_port=vxlan0 actions=drop",
    "priority=5,in_port=uplink0 actions=drop",
];

/// IPv4 / UDP, `len` bytes of frame, with `frag` in the flags/offset field
/// and `udp_len` in the UDP header when given (a first fragment's is the
/// whole datagram's; 0 when the frame holds exactly the datagram).
fn udp4(dst: [u8; 6], src: [u8; 6], ip_dst: [u8; 4], dport: u16, len: usize, udp_len: u16, frag: u16) -> Vec<u8> {
    let mut f = udp(dst, src, ip_dst, dport, len);
    f[20..22].copy_from_slice(&frag.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = crate::packet::checksum::ipv4_header(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    if udp_len != 0 {
        f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    }
    f
}

/// IPv6 / (fragment header with `frag` = offset << 3 | M) / UDP of `len` bytes.
fn udp6(src: [u8; 6], frag: Option<u16>, dport: u16, len: usize, udp_len: u16) -> Vec<u8> {
    let mut f = [2u8; 6].to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x86, 0xdd]);
    let ext = if frag.is_some() { 8 } else { 0 };
    let payload = ext + len.max(8);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(payload as u16).to_be_bytes());
    f.extend_from_slice(&[if frag.is_some() { 44 } else { 17 }, 64]);
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    if let Some(fr) = frag {
        f.extend_from_slice(&[17, 0]);
        f.extend_from_slice(&fr.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x12, 0x34]);
    }
    let l4 = f.len();
    f.resize(l4 + len.max(8), 0x5a);
    if frag.is_none_or(|fr| fr >> 3 == 0) {
        f[l4..l4 + 2].copy_from_slice(&1000u16.to_be_bytes());
        f[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
        f[l4 + 4..l4 + 6].copy_from_slice(&udp_len.to_be_bytes());
        f[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
    }
    f
}

fn tagged(f: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut t = f[..12].to_vec();
    for (tpid, tci) in tags {
        t.extend_from_slice(&tpid.to_be_bytes());
        t.extend_from_slice(&tci.to_be_bytes());
    }
    t.extend_from_slice(&f[12..]);
    t
}

/// What one round offers, per port, and how many of its frames are
/// malformed ones a hardware rule forwards (software drops them).
struct Traffic {
    bursts: Vec<(u32, Vec<Vec<u8>>)>,
    malformed: Vec<Vec<u8>>,
}

fn traffic() -> Traffic {
    let (mut bursts, mut malformed) = (Vec::new(), Vec::new());
    for round in 0..4u8 {
        let bad_udp = udp4([2; 6], VM0, [10, 2, 0, 1], 80, 100, 400, 0);
        let mut beyond = udp4([2; 6], VM0, [10, 2, 0, 1], 80, 100, 0, 0);
        beyond[16..18].copy_from_slice(&300u16.to_be_bytes());
        malformed.extend([bad_udp.clone(), beyond.clone()]);
        let from_vf0 = vec![
            udp4([2; 6], VM0, [10, 2, round, 1], 80, 100, 0, 0),
            udp4([2; 6], VM0, [10, 2, 0, 1], 80, 100, 0, 0),
            udp4([2; 6], VM0, [10, 9, 0, 1], 53, 100, 0, 0),
            // A first fragment of a 3,000-byte DNS answer, then a later one.
            udp4([2; 6], VM0, [10, 9, 0, 1], 53, 1014, 3008, 0x2000),
            udp4([2; 6], VM0, [10, 2, 7, 1], 53, 1014, 0, 0x2000 | 125),
            udp6(VM0, Some(1), 7000, 1200, 9008),
            udp6(VM0, Some(150 << 3), 7000, 1200, 0),
            udp6(VM0, None, 7000, 200, 200),
            // Above vf0's MTU (1,450 bytes of IP): a VF cannot send it.
            udp4([2; 6], VM0, [10, 2, 0, 1], 80, 14 + 1450, 0, 0),
            bad_udp,
            beyond,
        ];
        let from_vf1 = vec![
            udp4([4; 6], VM1, [10, 9, round, 1], 1000, 70, 0, 0),
            udp4([4; 6], VM1, [10, 9, 0, 2], 1000, 1014, 9008, 0x2000),
            udp4([4; 6], VM1, [10, 9, 0, 2], 1000, 1014, 0, 0x2000 | 250),
            udp6(VM1, None, 7001, 100, 100),
            udp6(VM1, Some(1), 7001, 1200, 9008),
        ];
        let from_uplink = vec![
            udp4(VM0, [6; 6], [10, 0, 0, round], 7, 60, 0, 0),
            // To vm0 above its VF's MTU (within the uplink's): its VF drops it.
            udp4(VM0, [6; 6], [10, 0, 0, 1], 7, 14 + 1450, 0, 0),
            tagged(&udp4(VM1, [6; 6], [10, 0, 1, round], 7, 60, 0, 0), &[(0x8100, 200)]),
            tagged(&udp4(VM1, [6; 6], [10, 0, 1, 1], 7, 60, 0, 0), &[(0x8100, 0x2000 | 200)]),
            // QinQ: service tag 300 (two priorities), customer tag 5.
            tagged(&udp4(VM1, [6; 6], [10, 0, 3, round], 7, 60, 0, 0), &[(0x88a8, 300), (0x8100, 5)]),
            tagged(&udp4(VM1, [6; 6], [10, 0, 3, 1], 7, 60, 0, 0), &[(0x88a8, 0xa000 | 300), (0x8100, 5)]),
            from_remote_vtep(&udp4(VM1, [8; 6], [10, 1, round, 1], 9, 60, 0, 0), 0xc000 + u16::from(round)),
            from_remote_vtep(&udp4(VM1, [8; 6], [10, 1, 0, 2], 9, 1014, 3008, 0x2000), 0xc100),
            from_remote_vtep(&udp4(VM1, [8; 6], [10, 1, 0, 2], 9, 1014, 0, 0x2000 | 125), 0xc100),
        ];
        bursts.push((0, from_vf0));
        bursts.push((1, from_vf1));
        bursts.push((2, from_uplink));
    }
    Traffic { bursts, malformed }
}

fn engine_for_test(hardware: Option<Hardware>, u: &Arc<Underlay>) -> Engine {
    let mut e = engine_mtus(&RULES, 64, 1000, vec![VF0_MTU, 1500, 1500]);
    e.underlay_for_tests(u);
    e.hardware = hardware;
    e
}

#[test]
fn offload_on_and_off_agree_on_fragments_tun_id_mtu_qinq_and_malformed_frames() {
    let t = traffic();
    let u = underlay();
    // Room for the 50 bytes of encapsulation above the VMs' MTU.
    u.write(|t| {
        t.locals[0].mtu = 1600;
        ((), true)
    });
    let mut software = engine_for_test(None, &u);
    let want = run_bursts(&mut software, &t.bursts);
    let sw = counters(&software);
    assert_eq!(sw.balance(3).unaccounted(), 0, "{:?}", sw.balance(3));
    let rounds = 4;
    assert_eq!(sw.drops(DropReason::RxMtu), rounds, "vf0's oversized frame, refused on receive");
    assert_eq!(sw.drops(DropReason::Mtu), rounds, "the oversized frame to vm0, dropped by its VF");
    assert_eq!(sw.get(Counter::IcmpTooBigSent), 0, "a VM's port sends no ICMP");
    let pe: Vec<_> = ParseError::ALL.iter().map(|&e| (e, sw.parse_errors(e))).filter(|x| x.1 != 0).collect();
    assert_eq!(sw.drops(DropReason::ParseError), 2 * rounds, "the malformed frames: {pe:?}");
    assert_eq!(sw.parse_errors(ParseError::BadUdpLength), rounds, "first fragments are not malformed");

    // Translate and install every megaflow software made.
    let model = Arc::new(ModelSwitch::new(Profile::default()));
    model.set_vf_mtu(20, VF0_MTU);
    model.set_vf_mtu(21, 1500);
    let (installed, mut refused) = install_all(&mut software, &port_facts(VF0_MTU), &u, &model);
    let tun_id_offloaded = installed.iter().filter(|f| f.mask.get(Field::TunId) != 0).count();
    assert!(tun_id_offloaded >= 1, "the tun_id rule's megaflows go to hardware");
    // What stays in software, and why: vf1's fragments (a rule on
    // nw_frag=later made its megaflows say "first" or "later fragment",
    // which the rule vocabulary cannot say).
    refused.sort();
    refused.dedup();
    assert_eq!(refused, ["unsupported: nw_frag=0x1/0x3", "unsupported: nw_frag=0x3/0x3"]);

    let mut with_hw = engine_for_test(Some(model_stage(&model)), &u);
    let got = run_bursts(&mut with_hw, &t.bursts);
    let hw = counters(&with_hw);
    assert_eq!(hw.balance(3).unaccounted(), 0, "{:?}", hw.balance(3));
    // Of the 25 frames a round, software keeps vf0's later fragment (its
    // megaflow's rule asks for UDP port 0, and a later fragment has no UDP
    // header for a device to match) and vf1's two refused fragments.
    assert_eq!(hw.get(Counter::HwPackets), 22 * rounds);

    // The deliberate difference: the malformed frames, forwarded by the
    // rule of their megaflow (output to the uplink, unchanged), counted.
    let mut expected = want.clone();
    expected.extend(t.malformed.iter().map(|f| (2u32, f.clone())));
    expected.sort();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the same frames on the same ports, but for the malformed ones");
    assert_eq!(model.stats.malformed.load(std::sync::atomic::Ordering::Relaxed), 2 * rounds);
    assert_eq!(hw.drops(DropReason::ParseError), 0, "software never saw them");
    // Everything else counts the same in both.
    assert_eq!(hw.drops(DropReason::RxMtu), sw.drops(DropReason::RxMtu));
    assert_eq!(hw.drops(DropReason::Mtu), sw.drops(DropReason::Mtu));
    assert_eq!(hw.drops(DropReason::RuleDrop) + hw.drops(DropReason::HwRuleDrop), sw.drops(DropReason::RuleDrop));
    assert_eq!(
        model.stats.over_mtu.load(std::sync::atomic::Ordering::Relaxed),
        2 * rounds,
        "both MTU cases in the model"
    );
}

/// Offload on and off give the same packets out: the bursts go through an
/// engine without hardware, its megaflows are translated and installed in the
/// model e-switch, and the same bursts go through an engine with the model in
/// front: every port gets the same frames (as multisets), and the model
/// handles what it took.
#[test]
fn model_offload_gives_the_same_packets_as_software() {
    use offload::model::{ModelSwitch, Profile};
    let rules = [
        "priority=10,in_port=vf0,ip,nw_dst=10.2.0.0/16 actions=output:uplink0",
        "priority=20,in_port=vf0,udp,tp_dst=53 actions=mod_vlan_vid:100,output:uplink0",
        "priority=10,in_port=vf1 actions=output:vxlan0",
        "priority=10,in_port=uplink0,dl_dst=02:00:00:00:00:10 actions=mod_dl_src:02:aa:00:00:00:01,output:vf0",
        "priority=10,in_port=uplink0,dl_dst=02:00:00:00:00:11,dl_vlan=200 actions=strip_vlan,output:vf1",
        "priority=10,in_port=vxlan0 actions=output:vf1",
        "priority=30,in_port=vf0,ip,nw_dst=10.2.9.0/24 actions=drop",
    ];
    let vm0 = [2, 0, 0, 0, 0, 0x10];
    let vm1 = [2, 0, 0, 0, 0, 0x11];
    let mut bursts: Vec<(u32, Vec<Vec<u8>>)> = Vec::new();
    for round in 0..6u8 {
        let from_vf0: Vec<Vec<u8>> = (0..8u8)
            .map(|i| match i % 4 {
                0 => udp([2; 6], vm0, [10, 2, round, i], 80, 60 + usize::from(i)),
                1 => udp([2; 6], vm0, [10, 2, 1, i], 53, 64),
                2 => udp([2; 6], vm0, [10, 2, 9, i], 80, 60),
                _ => udp([2; 6], vm0, [10, 3, 0, i], 80, 60),
            })
            .collect();
        let from_vf1: Vec<Vec<u8>> =
            (0..6u8).map(|i| udp([4; 6], vm1, [10, 9, round, i], 1000 + u16::from(i), 70)).collect();
        let mut from_uplink: Vec<Vec<u8>> = (0..4u8).map(|i| udp(vm0, [6; 6], [10, 0, 0, i], 7, 60)).collect();
        from_uplink.extend((0..3u8).map(|i| {
            let f = udp(vm1, [6; 6], [10, 0, 1, i], 7, 60);
            let mut t = f[..12].to_vec();
            t.extend_from_slice(&[0x81, 0x00, 0x00, 200]);
            t.extend_from_slice(&f[12..]);
            t
        }));
        from_uplink.extend(
            (0..4u8).map(|i| from_remote_vtep(&udp(vm1, [8; 6], [10, 1, round, i], 9, 60), 0xc000 + u16::from(i))),
        );
        bursts.push((0, from_vf0));
        bursts.push((1, from_vf1));
        bursts.push((2, from_uplink));
    }
    // Offload off.
    let mut software = engine(&rules, 64);
    let want = run_bursts(&mut software, &bursts);
    assert!(want.len() > 100, "the bursts produce output: {}", want.len());
    // Translate and install every megaflow.
    let model = Arc::new(ModelSwitch::new(Profile::default()));
    let u = underlay();
    // The encapsulating flow needs room for 50 bytes more than the VMs' MTU.
    u.write(|t| {
        t.locals[0].mtu = 1600;
        ((), true)
    });
    let (installed, refused) = install_all(&mut software, &port_facts(1500), &u, &model);
    assert!(refused.is_empty(), "every flow here translates: {refused:?}");
    assert!(installed.len() >= 7, "{} rules", installed.len());
    // Offload on: the model in front.
    let mut with_hw = engine(&rules, 64);
    with_hw.underlay_for_tests(&u);
    with_hw.hardware = Some(model_stage(&model));
    let got = run_bursts(&mut with_hw, &bursts);
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want, "the same frames on the same ports");
    let c = counters(&with_hw);
    let total: u64 = bursts.iter().map(|(_, f)| f.len() as u64).sum();
    assert_eq!(c.get(Counter::HwPackets), total, "the model took every packet (all flows were offloaded)");
    assert_eq!(c.drops(DropReason::HwRuleDrop), 6 * 4, "per round: two by the drop rule, two that match no rule");
}
