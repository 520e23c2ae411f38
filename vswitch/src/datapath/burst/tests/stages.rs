//! The classifying stages and egress, one burst at a time.

use super::*;

#[test]
fn forwards_by_rule_caches_the_megaflow_and_counts_lookup_tiers() {
    let mut e = engine(&["priority=10,in_port=vf0,ip actions=output:uplink0"], 64);
    let frames: Vec<Vec<u8>> = (0..8).map(|i| udp([2; 6], [4; 6], [10, 0, 0, i], 80, 60)).collect();
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&frames);
    e.process(0, &mut pkts, n, 1, &mut io);
    assert_eq!(io.sent.len(), 8);
    assert!(io.sent.iter().all(|(p, _)| *p == 2));
    assert_eq!(io.sent.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(), frames, "unchanged, in order");
    let c = counters(&e);
    assert_eq!((c.get(Counter::Upcalls), c.get(Counter::MegaflowHits)), (1, 7), "one upcall covers the burst");
    assert_eq!(e.flow_count(), 1);
    assert_eq!(c.get(Counter::EmcInserts), 8, "every packet was inserted on its megaflow hit (1 in 1)");
    // The second burst: its first packet hits the exact-match cache; the
    // others, of the same megaflow (the flows' only mask) by their frame
    // keys, take its flow without a lookup (counted as megaflow hits).
    let (mut pkts, n) = burst(&frames);
    e.process(0, &mut pkts, n, 2, &mut io);
    let c = counters(&e);
    assert_eq!((c.get(Counter::EmcHits), c.get(Counter::MegaflowHits)), (1, 14));
    assert_eq!(c.port(0, PortCounter::RxPackets), 16);
    assert_eq!(io.sent.len(), 16);
    assert!(io.sent[8..].iter().zip(frames.iter()).all(|((p, f), g)| *p == 2 && f == g), "in order, unchanged");
    let dump = e.dump(3);
    assert_eq!((dump.len(), dump[0].packets), (1, 16));
    assert_balanced(&e);
}

#[test]
fn stages_one_by_one() {
    let mut e = engine(&["priority=10,in_port=vf0,ip actions=output:uplink0"], 64);
    let frames = vec![udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60), vec![1, 2, 3]];
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&frames);
    let pending = e.stage_ingress(0, &mut pkts, n, &mut io, Framing::Lookup);
    assert_eq!(pending, 0b01, "the 3-byte frame is a parse error");
    assert!(pkts[1].is_none());
    assert_eq!(counters(&e).drops(DropReason::ParseError), 1);
    assert_eq!(e.stage_emc(pending, &pkts), 0b01, "empty cache: a miss");
    assert_eq!(e.stage_megaflow(pending), 0b01, "no megaflow yet");
    e.stage_upcall(pending, &mut pkts, 1);
    let mut g = Groups::new();
    g.fill(&e.flow_of, &pkts, n);
    assert_eq!((g.len, g.members[0]), (1, 0b01));
    e.stage_execute(&g, &mut pkts, 1, &mut io);
    assert_eq!(io.sent.len(), 1);
}

#[test]
fn vlan_mac_drop_copies_and_mtu() {
    let mut e = engine(
        &[
            "priority=20,in_port=vf0,udp,tp_dst=53 actions=mod_vlan_vid:100,output:uplink0",
            "priority=10,in_port=vf0,ip actions=mod_dl_src:02:aa:00:00:00:01,output:uplink0,output:vf1",
            "priority=30,in_port=vf0,ip,nw_dst=10.9.0.0/16 actions=drop",
        ],
        64,
    );
    let dns = udp([2; 6], [4; 6], [10, 0, 0, 1], 53, 60);
    let web = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let dropped = udp([2; 6], [4; 6], [10, 9, 0, 1], 80, 60);
    let big = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 1600);
    let mut io = VecIo { copies: 10, ..Default::default() };
    let (mut pkts, n) = burst(&[dns.clone(), web.clone(), dropped, big]);
    e.process(0, &mut pkts, n, 1, &mut io);
    let mut tagged = dns[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 100]);
    tagged.extend_from_slice(&dns[12..]);
    let mut rewritten = web.clone();
    rewritten[6..12].copy_from_slice(&[2, 0xaa, 0, 0, 0, 1]);
    assert!(io.sent.contains(&(2, tagged)), "VLAN pushed");
    assert!(io.sent.contains(&(2, rewritten.clone())) && io.sent.contains(&(1, rewritten)), "both outputs");
    let c = counters(&e);
    assert_eq!(c.drops(DropReason::RuleDrop), 1);
    assert_eq!(c.drops(DropReason::RxMtu), 1, "vf0 cannot send a 1600-byte frame above its MTU of 1500");
    assert_eq!(io.sent.len(), 3);
    // Without buffers the copy is dropped and counted; the last output still goes.
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&[web]);
    e.process(0, &mut pkts, n, 2, &mut io);
    assert_eq!(io.sent.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![1]);
    assert_eq!(counters(&e).drops(DropReason::NoMbuf), 1);
    assert_balanced(&e);
}

#[test]
fn a_group_sends_the_frames_that_fit_and_checks_the_long_ones_alone() {
    // vf1 and the uplink have an MTU of 1000. In each flow's group the
    // 1400-byte frame is taken aside: dropped at vf1 (no ICMP towards a
    // VM's port), answered with ICMP at the uplink (DF set); the others go.
    let mut e = engine_mtus(
        &[
            "priority=10,in_port=vf0,udp,tp_dst=80 actions=output:vf1",
            "priority=10,in_port=vf0,udp,tp_dst=81 actions=output:uplink0",
        ],
        64,
        1000,
        vec![1500, 1000, 1000],
    );
    let df = |dport: u16, len: usize| {
        let mut f = udp([2; 6], [4; 6], [10, 0, 0, 1], dport, len);
        f[20] |= 0x40;
        f
    };
    let (s80, s81) = (df(80, 60), df(81, 60));
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&[s80.clone(), df(80, 1400), s80.clone(), s81.clone(), df(81, 1400), s81.clone()]);
    e.process(0, &mut pkts, n, 1, &mut io);
    assert!(pkts.iter().all(Option::is_none), "process leaves every slot empty");
    let to: Vec<u32> = io.sent.iter().map(|(p, _)| *p).collect();
    assert_eq!(to, vec![1, 1, 2, 2, 0], "two to vf1, two to the uplink, the ICMP back to vf0");
    assert_eq!(io.sent[..4], [(1, s80.clone()), (1, s80), (2, s81.clone()), (2, s81)]);
    let c = counters(&e);
    assert_eq!(c.drops(DropReason::Mtu), 2);
    assert_eq!(c.get(Counter::IcmpTooBigSent), 1);
    assert_balanced(&e);
}

#[test]
fn an_output_to_the_input_port_is_skipped_unless_the_rule_says_in_port() {
    let mut e = engine(
        &[
            "priority=10,in_port=vf0 actions=output:vf0,output:uplink0",
            "priority=10,in_port=vf1 actions=mod_vlan_vid:5,output:vf1",
            "priority=10,in_port=uplink0 actions=output:in_port",
        ],
        64,
    );
    let f = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let mut io = VecIo::default();
    for port in [0, 1, 2] {
        let (mut pkts, n) = burst(std::slice::from_ref(&f));
        e.process(port, &mut pkts, n, 1, &mut io);
    }
    let to: Vec<u32> = io.sent.iter().map(|(p, _)| *p).collect();
    assert_eq!(to, vec![2, 2], "vf0's copy to itself skipped; uplink0 hairpins by in_port");
    assert_eq!(counters(&e).drops(DropReason::ToInPort), 1, "vf1's only output was to itself");
    // The flows show what they do.
    let mut flows = e.dump(2);
    flows.sort_by_key(|f| f.key.in_port());
    let outs: Vec<Vec<Action>> = flows.iter().map(|f| f.actions.to_vec()).collect();
    assert_eq!(outs[0], vec![Action::Output(2)]);
    assert_eq!(outs[2], vec![Action::Output(2)]);
}

#[test]
fn encap_to_the_tunnel_uses_the_offload_source_port() {
    let mut e = engine(&["priority=10,in_port=vf0 actions=output:vxlan0"], 64);
    let inner = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(std::slice::from_ref(&inner));
    e.process(0, &mut pkts, n, 1, &mut io);
    assert_eq!(io.sent.len(), 1);
    let (port, out) = &io.sent[0];
    assert_eq!(*port, 2);
    assert_eq!(&out[0..6], &REMOTE_MAC);
    assert_eq!(&out[50..], &inner[..]);
    let sport = u16::from_be_bytes([out[34], out[35]]);
    assert_eq!(sport, vxlan_src_port(&InnerFlow::from_frame(&inner)), "the same function as the model e-switch");
    assert_eq!(counters(&e).get(Counter::Encapsulated), 1);

    // A later packet hits the exact-match cache, which kept the port it
    // computed at insertion.
    let want = |f: &[u8]| vxlan_src_port(&InnerFlow::from_frame(f));
    assert!(e.emc.values().any(|v| v.sport == want(&inner)), "the cache holds the port");
    let (mut pkts, n) = burst(std::slice::from_ref(&inner));
    e.process(0, &mut pkts, n, 2, &mut io);
    assert_eq!(counters(&e).get(Counter::EmcHits), 1);
    // A hit, another flow of its megaflow (its port from its own frame),
    // the first again (not a run).
    let other = udp([2; 6], [4; 6], [10, 0, 0, 9], 81, 60);
    let (mut pkts, n) = burst(&[inner.clone(), other.clone(), inner.clone()]);
    e.process(0, &mut pkts, n, 2, &mut io);
    let sports: Vec<u16> = io.sent[1..].iter().map(|(_, out)| u16::from_be_bytes([out[34], out[35]])).collect();
    assert_eq!(sports, vec![want(&inner), want(&inner), want(&other), want(&inner)]);
    assert_eq!((counters(&e).get(Counter::EmcHits), counters(&e).get(Counter::MegaflowHits)), (2, 2));

    // Runs in a burst no cache knows yet (every port computed at egress,
    // a run's from its first packet's key): two runs of one flow split by
    // another flow, the second run's packets differing in IP id.
    let mut e = engine(&["priority=10,in_port=vf0 actions=output:vxlan0"], 64);
    let mut inner_id = inner.clone();
    inner_id[18] ^= 0x5a;
    let frames = [inner.clone(), inner.clone(), other.clone(), inner_id.clone(), inner_id.clone()];
    let (mut pkts, n) = burst(&frames);
    let mut io = VecIo::default();
    e.process(0, &mut pkts, n, 1, &mut io);
    let sports: Vec<u16> = io.sent.iter().map(|(_, out)| u16::from_be_bytes([out[34], out[35]])).collect();
    let (a, b) = (want(&inner), want(&other));
    assert_eq!(sports, vec![a, a, b, a, a], "one megaflow: in order");
    assert_eq!(e.runs, 0b1_0010, "packets 1 and 4 continue runs");

    // A flow that does not encapsulate caches none.
    let mut e = engine(&["priority=10,in_port=vf0 actions=output:vf1"], 64);
    let (mut pkts, n) = burst(std::slice::from_ref(&inner));
    e.process(0, &mut pkts, n, 1, &mut io);
    assert!(e.emc.len() == 1 && e.emc.values().all(|v| v.sport == 0));
}

#[test]
fn a_copy_to_the_tunnel_is_encapsulated_and_the_original_goes_on() {
    let mut e = engine(&["priority=10,in_port=vf0 actions=output:vxlan0,output:vf1"], 64);
    let inner = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let mut io = VecIo { copies: 2, ..VecIo::default() };
    let (mut pkts, n) = burst(&[inner.clone(), inner.clone()]);
    e.process(0, &mut pkts, n, 1, &mut io);
    let to: Vec<u32> = io.sent.iter().map(|(p, _)| *p).collect();
    assert_eq!(to, vec![2, 2, 1, 1], "both copies encapsulated to the uplink, then both originals to vf1");
    for (_, out) in &io.sent[..2] {
        assert_eq!(&out[50..], &inner[..]);
        assert_eq!(u16::from_be_bytes([out[34], out[35]]), vxlan_src_port(&InnerFlow::from_frame(&inner)));
    }
    assert_eq!(&io.sent[2].1[..], &inner[..]);
    let c = counters(&e);
    assert_eq!((c.get(Counter::Copies), c.get(Counter::Encapsulated)), (2, 2));
}

#[test]
fn vtep_answers_arp_and_decapsulates() {
    let mut e = engine(&["priority=10,in_port=vxlan0 actions=output:vf0"], 64);
    // ARP request for the VTEP address.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&REMOTE_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&REMOTE_MAC);
    arp.extend_from_slice(&[198, 18, 0, 2]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[198, 18, 0, 1]);
    // VXLAN from the remote VTEP, VNI 100.
    let inner = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let vx = from_remote_vtep(&inner, 0xc000);
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&[arp, vx]);
    e.process(2, &mut pkts, n, 1, &mut io);
    assert_eq!(io.sent.len(), 2, "{:?}", io.sent.iter().map(|(p, f)| (p, f.len())).collect::<Vec<_>>());
    let (reply_port, reply) = &io.sent[0];
    assert_eq!((*reply_port, &reply[12..14], &reply[20..22]), (2, &[0x08, 0x06][..], &[0, 2][..]), "ARP reply");
    assert_eq!(io.sent[1], (0, inner), "decapsulated to vf0");
    let c = counters(&e);
    assert_eq!((c.get(Counter::Decapsulated), c.get(Counter::NeighRepliesSent)), (1, 1));
    assert_eq!(c.port(3, PortCounter::RxPackets), 1, "counted on the tunnel port");
}

#[test]
fn decapsulation_runs_give_what_one_packet_at_a_time_gives() {
    let rules = [
        "priority=20,in_port=vxlan0,udp,tp_dst=80 actions=output:vf0",
        "priority=10,in_port=vxlan0 actions=output:vf1",
        "priority=10,in_port=uplink0 actions=output:vf1",
    ];
    let a = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let b = udp([2; 6], [4; 6], [10, 0, 0, 2], 81, 70);
    let (va, vb) = (from_remote_vtep(&a, 0xc000), from_remote_vtep(&b, 0xc001));
    let edit = |f: &[u8], change: &dyn Fn(&mut Vec<u8>), fix_checksum: bool| {
        let mut f = f.to_vec();
        change(&mut f);
        if fix_checksum {
            f[24..26].fill(0);
            let c = crate::packet::checksum::ipv4_header(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
        }
        f
    };
    let frames = vec![
        va.clone(),
        va.clone(),
        edit(&va, &|f| f[24] ^= 0x10, false), // outer IP checksum wrong
        edit(&va, &|f| f[18..20].copy_from_slice(&[0x12, 0x34]), true), // another IP id
        vb.clone(),                           // another inner flow, same outer bytes but the source port
        vb.clone(),
        edit(&va, &|f| f[46] = 0x02, false), // VNI 512: no such tunnel
        edit(&va, &|f| f.extend_from_slice(&[0; 6]), false), // Ethernet padding
        edit(&va, &|f| f[40..42].copy_from_slice(&[0x12, 0x34]), false), // UDP checksum wrong
        edit(&va, &|f| f[16..18].copy_from_slice(&40u16.to_be_bytes()), true), // IP length too short for VXLAN
        edit(&va, &|f| f[38..40].copy_from_slice(&200u16.to_be_bytes()), false), // UDP length past the IP packet
        edit(&va, &|f| f[42] = 0, false),    // VXLAN flags without I
        b.clone(),                           // not VXLAN: plain traffic on the uplink
        va.clone(),
    ];
    let one_burst = {
        let mut e = engine(&rules, 64);
        (run_bursts(&mut e, &[(2, frames.clone())]), counters(&e))
    };
    let one_at_a_time = {
        let mut e = engine(&rules, 64);
        let bursts: Vec<(u32, Vec<Vec<u8>>)> = frames.iter().map(|f| (2, vec![f.clone()])).collect();
        (run_bursts(&mut e, &bursts), counters(&e))
    };
    assert_eq!(one_burst.0, one_at_a_time.0);
    let (c, d) = (&one_burst.1, &one_at_a_time.1);
    for counter in [Counter::Decapsulated, Counter::Packets] {
        assert_eq!(c.get(counter), d.get(counter), "{counter:?}");
    }
    for reason in [DropReason::DecapError, DropReason::UnknownTunnel, DropReason::ParseError] {
        assert_eq!(c.drops(reason), d.drops(reason), "{reason:?}");
    }
    for (port, counter) in [(3, PortCounter::RxPackets), (3, PortCounter::RxBytes), (2, PortCounter::RxBytes)] {
        assert_eq!(c.port(port, counter), d.port(port, counter), "port {port} {counter:?}");
    }
    // What each frame came to: a, a, a (new IP id), b, b, a (padding), a to
    // vf0 or vf1 by their inner port; b as plain traffic to vf1.
    let want: Vec<u32> = vec![0, 0, 0, 0, 0, 1, 1, 1];
    let mut to: Vec<u32> = one_burst.0.iter().map(|(p, _)| *p).collect();
    to.sort_unstable();
    assert_eq!(to, want);
    assert_eq!(c.get(Counter::Decapsulated), 7);
    assert_eq!(c.drops(DropReason::UnknownTunnel), 1);
    assert!(one_burst.0.iter().all(|(_, f)| *f == a || *f == b), "inner frames, padding gone");
}

#[test]
fn the_signature_match_cache_serves_megaflows_once_there_are_several_masks() {
    let mut e = engine(
        &[
            "priority=40,in_port=vf0,ip,nw_dst=10.0.3.3/32 actions=drop",
            "priority=30,in_port=vf0,udp,tp_dst=80 actions=output:uplink0",
            "priority=20,in_port=vf0,ip,nw_dst=10.0.2.0/24 actions=output:vf1",
            "priority=10,in_port=vf0,ip actions=output:uplink0",
        ],
        64,
    );
    let frames: Vec<Vec<u8>> =
        (0..24u8).map(|i| udp([2; 6], [4; 6], [10, 0, i % 4, i], if i % 3 == 0 { 80 } else { 81 }, 60)).collect();
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&frames);
    e.process(0, &mut pkts, n, 1, &mut io);
    assert!(e.megaflows.subtable_count() >= SMC_MIN_MASKS, "{} masks", e.megaflows.subtable_count());
    let all = (1u64 << n) - 1;
    // The classifier's answers, which fill the cache...
    let (mut pkts, _) = burst(&frames);
    assert_eq!(e.stage_ingress(0, &mut pkts, n, &mut io, Framing::Parse), all);
    assert_eq!(e.stage_megaflow(all), 0);
    let want = e.flow_of;
    // ...and the cache gives the same flows without the classifier.
    let (mut pkts, _) = burst(&frames);
    assert_eq!(e.stage_ingress(0, &mut pkts, n, &mut io, Framing::Parse), all);
    e.flow_of = [None; BURST];
    assert_eq!(e.stage_smc(all), 0, "every packet a cache hit");
    assert_eq!(e.flow_of, want);
    assert_eq!(counters(&e).get(Counter::SmcHits), n as u64);
    // A removed flow's entry is verified away, not followed.
    let gone = want[0].expect("flow");
    e.remove_flow(gone, RemoveReason::Idle);
    let (mut pkts, _) = burst(&frames);
    e.stage_ingress(0, &mut pkts, n, &mut io, Framing::Parse);
    e.flow_of = [None; BURST];
    let missed = e.stage_smc(all);
    assert_ne!(missed & 1, 0, "the removed flow's packet misses");
    assert!(Bits(all & !missed).all(|i| e.flow_of[i] == want[i] && want[i] != Some(gone)));
}

#[test]
fn runs_of_one_key_take_the_first_packets_flow() {
    let rules = [
        "priority=10,in_port=vf0,ip,nw_dst=10.0.0.1 actions=output:uplink0",
        "priority=5,in_port=vf0,ip actions=output:vf1",
    ];
    let a = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let b = udp([2; 6], [4; 6], [10, 0, 0, 2], 80, 60);
    // A run broken by a parse error, a second key, then the first again.
    let frames = vec![a.clone(), a.clone(), vec![1, 2, 3], a.clone(), b.clone(), b.clone(), a.clone()];
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&frames);
    let mut e = engine(&rules, 64);
    let pending = e.stage_ingress(0, &mut pkts, n, &mut io, Framing::Parse);
    assert_eq!(pending, 0b111_1011);
    assert_eq!(e.runs, 0b010_1010, "a packet with the key of the one kept before it");
    assert_eq!((e.run_prev[1], e.run_prev[3], e.run_prev[5]), (0, 0, 4), "the first packet; the parse error skipped");
    assert_eq!(e.borrowed, e.runs, "the runs' keys are still their first packets'");
    // Nothing cached yet: the runs' heads miss and so do their followers,
    // which get their own copy of the key for the classifier.
    assert_eq!(e.stage_emc(pending, &pkts), pending);
    assert_eq!(e.borrowed, 0);
    assert!(e.keys[3] == e.keys[0] && e.hashes[3] == e.hashes[0] && e.keys[5] == e.keys[4]);
    let mut e = engine(&rules, 64);
    let (mut pkts, n) = burst(&frames);
    e.process(0, &mut pkts, n, 2, &mut io);
    let c = counters(&e);
    assert_eq!(c.get(Counter::Upcalls), 2, "one per key");
    assert_eq!(c.get(Counter::MegaflowHits), 4, "the rest find the flows their keys' first packets installed");
    let want: Vec<(u32, Vec<u8>)> =
        vec![(2, a.clone()), (2, a.clone()), (2, a.clone()), (1, b.clone()), (1, b.clone()), (2, a.clone())];
    // Grouped by flow: a's packets leave first, in order, then b's.
    let mut sent = io.sent.clone();
    sent.sort_by_key(|(p, _)| std::cmp::Reverse(*p));
    let mut want_sorted = want.clone();
    want_sorted.sort_by_key(|(p, _)| std::cmp::Reverse(*p));
    assert_eq!(sent, want_sorted);
    // Cached now: the heads hit the exact-match cache, the followers take their flow.
    let hits = counters(&e).get(Counter::EmcHits);
    let (mut pkts, n) = burst(&frames);
    e.process(0, &mut pkts, n, 3, &mut io);
    assert_eq!(counters(&e).get(Counter::EmcHits) - hits, 6, "every packet an exact hit");
    let dump = e.dump(4);
    let mut counts: Vec<u64> = dump.iter().map(|f| f.packets).collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![4, 8], "a: 4 a burst, b: 2 a burst, two bursts");
    assert_balanced(&e);

    // Runs of frames the fast parser skips (VLAN-tagged) are found by key
    // compare; untagged ones from their bytes, IP id and checksum aside.
    let tagged: Vec<u8> = [&a[..12], &[0x81, 0, 0, 5], &a[12..]].concat();
    let mut a2 = a.clone();
    a2[18..20].copy_from_slice(&[0x12, 0x34]);
    a2[24..26].copy_from_slice(&[0xab, 0xcd]);
    let (mut pkts, n) = burst(&[tagged.clone(), tagged, a.clone(), a2.clone(), b.clone()]);
    let pending = e.stage_ingress(0, &mut pkts, n, &mut io, Framing::Parse);
    assert_eq!((pending, e.runs), (0b1_1111, 0b0_1010));
    assert_eq!((e.run_prev[1], e.run_prev[3]), (0, 2));
    assert!(e.keys[3] == e.keys[2] && e.hashes[3] == e.hashes[2]);
    let mut key = crate::packet::FlowKey::ZERO;
    crate::packet::parse::parse_into(&a2, 0, None, &mut key);
    assert!(key == e.keys[3], "the key its own parse gives");

    // Alternating flows: the check at ingress gives up after a few misses,
    // the compare by key still finds the run at the end.
    let c = udp([2; 6], [4; 6], [10, 0, 0, 3], 80, 60);
    let frames = [a.clone(), b.clone(), a.clone(), b.clone(), a, b, c.clone(), c];
    let (mut pkts, n) = burst(&frames);
    let pending = e.stage_ingress(0, &mut pkts, n, &mut io, Framing::Parse);
    assert_eq!((pending, e.runs, e.run_prev[7]), (0xff, 0x80, 6));
}

/// With far more flows than exact-match entries, bursts pass the cache by
/// (counted as skipped) and every packet is forwarded as before; once the
/// traffic narrows to flows the cache holds, the probe bursts hit and the
/// lookups resume.
#[test]
fn the_exact_match_cache_is_passed_by_while_it_misses_and_used_again_once_it_hits() {
    let rules =
        ["priority=10,in_port=vf0,ip actions=output:vf1", "priority=10,in_port=vf1,ip,nw_dst=10.0.0.0/8 actions=drop"];
    let mut e = engine_sized(&rules, 64, 100_000);
    let flow = |i: u32| udp([2; 6], [4; 6], [10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 80, 60);
    let mut io = VecIo::default();
    // A flow of another mask first: the flows then have two masks, so no
    // packet takes a flow by its megaflow alone (see `Engine::mask_runs`)
    // and every one is looked up.
    let (mut pkts, n) = burst(&[flow(0)]);
    e.process(1, &mut pkts, n, 1, &mut io);
    assert_eq!((e.flow_count(), counters(&e).drops(DropReason::RuleDrop)), (1, 1));
    let mut now = 1;
    let mut send = |e: &mut Engine, io: &mut VecIo, frames: &[Vec<u8>]| {
        e.start_iteration();
        let (mut pkts, n) = burst(frames);
        now += 1;
        e.process(0, &mut pkts, n, now, io);
    };
    // 20,000 flows against 1,024 entries: lookups miss (each flow comes
    // back after 20,000 packets).
    let many: Vec<Vec<u8>> = (0..20_000).map(flow).collect();
    for chunk in many.chunks(32).take(200) {
        send(&mut e, &mut io, chunk);
    }
    assert!(e.emc_gate.bypassed(), "a window of misses passes the cache by");
    let c = counters(&e);
    let skipped = c.get(Counter::EmcSkipped);
    assert!(skipped > 1000, "skipped {skipped}");
    let tiers = c.get(Counter::EmcHits) + c.get(Counter::MegaflowHits) + c.get(Counter::Upcalls);
    assert_eq!((io.sent.len(), tiers), (6400, 6401), "every packet forwarded and classified once (+ port 1's)");
    assert!(io.sent.iter().zip(many.iter()).all(|((p, f), g)| *p == 1 && f == g), "in order, unchanged");
    assert_eq!(e.flow_count(), 2);
    // Four flows: inserted on the probe bursts' megaflow hits, then hit by
    // the probes that follow.
    let few: Vec<Vec<u8>> = (0..32).map(|i| flow(i % 4)).collect();
    let mut bursts = 0;
    while e.emc_gate.bypassed() {
        send(&mut e, &mut io, &few);
        bursts += 1;
        assert!(bursts <= 3 * 4096 / 32 * 16, "still passed by after {bursts} bursts of four flows");
    }
    let (hits, skipped) = (counters(&e).get(Counter::EmcHits), counters(&e).get(Counter::EmcSkipped));
    for _ in 0..10 {
        send(&mut e, &mut io, &few);
    }
    let c = counters(&e);
    assert_eq!(c.get(Counter::EmcHits) - hits, 320, "every packet an exact-match hit again");
    assert_eq!(c.get(Counter::EmcSkipped), skipped, "no lookup skipped");
    assert_eq!(io.sent.len(), 6400 + 32 * (bursts + 10));
    assert_balanced(&e);
}

/// Runs still take their first packet's flow while the cache is passed
/// by, and a run whose first packet is new waits for its upcall.
#[test]
fn runs_take_their_first_packets_flow_while_the_cache_is_passed_by() {
    let mut e = engine(&["priority=10,in_port=vf0,ip actions=output:vf1"], 64);
    let mut gate = EmcGate::default();
    assert!(gate.lookup_now());
    gate.account(4096, 0, true);
    assert!(gate.bypassed());
    e.emc_gate = gate;
    let a = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let b = udp([2; 6], [4; 6], [10, 0, 0, 2], 80, 60);
    // a a a b b, three times.
    let frames = vec![a.clone(), a.clone(), a.clone(), b.clone(), b.clone()];
    let mut io = VecIo::default();
    for round in 0..3 {
        e.start_iteration();
        let (mut pkts, n) = burst(&frames);
        e.process(0, &mut pkts, n, round + 1, &mut io);
    }
    let c = counters(&e);
    assert_eq!(c.get(Counter::Upcalls), 1);
    // The first burst: its runs wait for the upcall of their first packet
    // and find the flow it installed (megaflow hits, as without the gate).
    // Then two run packets a burst (a, a) take their first packet's flow
    // without a lookup of their own; none of these bursts is a probe. Once
    // the flow is there (its mask the only one), the b's are of the first
    // a's megaflow by their frame keys (the second taken with the first, in
    // the megaflow run's own loop): megaflow hits without a lookup.
    assert_eq!(c.get(Counter::EmcHits), 4, "the runs of the second and third bursts");
    assert_eq!(c.get(Counter::MegaflowHits), 4 + 3 + 3);
    assert_eq!(c.get(Counter::EmcSkipped), 2 + 1 + 1, "the first burst's a and b, then each burst's first a");
    assert_eq!(c.get(Counter::EmcInserts), 5, "the first burst's upcall path only: no insertion on a megaflow hit");
    assert_eq!(io.sent.len(), 15);
    assert!(io.sent.iter().all(|(p, _)| *p == 1));
    assert_balanced(&e);
}

/// The gate: passed by below one hit in eight lookups over a window, only
/// while a miss is cheap; one burst in sixteen probes meanwhile.
#[test]
fn the_exact_match_gate_decides_per_window() {
    let mut g = EmcGate::default();
    g.account(4000, 0, true);
    assert!(!g.bypassed(), "not before a whole window");
    g.account(96, 0, true);
    assert!(g.bypassed());
    assert_eq!((0..64).filter(|_| g.lookup_now()).count(), 4, "one burst in 16 probes");
    g.account(4096, 512, true);
    assert!(!g.bypassed(), "one hit in eight pays for the lookups");
    g.account(4096, 511, true);
    assert!(g.bypassed());
    g.account(4096, 0, false);
    assert!(!g.bypassed(), "many masks: a miss is dear, the cache is always looked up");
    assert!((0..64).all(|_| g.lookup_now()));
}
