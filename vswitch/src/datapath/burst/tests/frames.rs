//! Frame keys (the exact-match cache by a frame's bytes) against flow keys;
//! megaflow runs (frame keys under the one mask of every flow).

use super::*;

/// Frames looked up by their bytes (frame keys) and by their flow keys
/// give the same packets out and the same flows: one engine with the
/// exact-match cache (frame keys for the frames the fast path takes), one
/// without (every packet through the classifier by its flow key), over
/// 300 random bursts of frames that differ where flows differ (MACs, TOS,
/// ports, TCP flags, the input port) and where they do not (IP id and
/// checksum, UDP payload at the TCP flags' offset), with runs, VLAN tags,
/// fragments, runts and encapsulation (the outer source port from the
/// cache or the frame equals the one from the flow key).
#[test]
fn frame_keys_and_flow_keys_give_the_same_packets_and_flows() {
    let rules = [
        "priority=40,in_port=vf0,tcp,tcp_flags=0x002/0x012 actions=drop",
        "priority=30,in_port=vf0,udp,tp_dst=53 actions=mod_vlan_vid:100,output:uplink0",
        "priority=25,in_port=vf0,dl_dst=02:00:00:00:00:99 actions=drop",
        "priority=20,in_port=vf0,ip,nw_tos=32 actions=output:vf1",
        "priority=10,in_port=vf0,ip actions=output:uplink0",
        "priority=5,in_port=vf0 actions=output:vf1",
        "priority=10,in_port=vf1 actions=output:vxlan0",
    ];
    let mut next = xorshift(0x1234_5678_9abc_def0u64);
    let frame = |next: &mut dyn FnMut(u64) -> u64| -> Vec<u8> {
        let dst = if next(8) == 0 { [2, 0, 0, 0, 0, 0x99] } else { [2, 0, 0, 0, 0, 0x10] };
        let mut f =
            udp(dst, [2, 0, 0, 0, 0, 1 + next(2) as u8], [10, 0, 0, next(4) as u8], [53, 80, 81][next(3) as usize], 60);
        f[15] = [0, 32][next(2) as usize];
        if next(2) == 0 {
            // TCP, a 20-byte header with some flags.
            f[23] = 6;
            f[46] = 0x50;
            f[47] = [0x02, 0x10, 0x12, 0x18][next(4) as usize];
        } else {
            // UDP payload where TCP has its flags: not part of the key.
            f[46] = next(256) as u8;
            f[47] = next(256) as u8;
        }
        // What flows do not differ in: IP id, checksum.
        f[18] = next(256) as u8;
        f[25] = next(256) as u8;
        match next(16) {
            0 => [&f[..12], &[0x81, 0, 0, 7], &f[12..]].concat(),
            1 => {
                f[20] = 0x20; // a first fragment: the full parser
                f
            }
            2 => f[..30].to_vec(),
            _ => f,
        }
    };
    let bursts: Vec<(u32, Vec<Vec<u8>>)> = (0..300)
        .map(|_| {
            let port = next(2) as u32;
            let mut frames: Vec<Vec<u8>> = Vec::new();
            for _ in 0..1 + next(32) {
                // Runs: the frame before again, its IP id changed.
                match frames.last() {
                    Some(last) if next(3) == 0 => {
                        let mut f = last.clone();
                        f[19] ^= 1;
                        frames.push(f);
                    }
                    _ => frames.push(frame(&mut next)),
                }
            }
            (port, frames)
        })
        .collect();
    let mut with_frames = engine(&rules, 64);
    let mut without = engine(&rules, 64);
    without.config.emc_entries = 0;
    let out = run_bursts(&mut with_frames, &bursts);
    assert!(out.len() > 1000, "{} packets out", out.len());
    assert!(out.iter().any(|(p, _)| *p == 2) && out.iter().any(|(p, _)| *p == 1));
    let other = run_bursts(&mut without, &bursts);
    let differ = out.iter().zip(&other).position(|(a, b)| a != b);
    assert!(
        out.len() == other.len() && differ.is_none(),
        "{} and {} out, first difference {differ:?}",
        out.len(),
        other.len()
    );
    let flows = |e: &mut Engine| {
        let mut d: Vec<(Vec<u64>, u64, u64)> =
            e.dump(1).into_iter().map(|f| (f.key.words.to_vec(), f.packets, f.bytes)).collect();
        d.sort();
        d
    };
    assert_eq!(flows(&mut with_frames), flows(&mut without), "the same flows, the same packet and byte counts");
    let (a, b) = (counters(&with_frames), counters(&without));
    assert!(a.get(Counter::EmcHits) > 1000, "{} exact-match hits", a.get(Counter::EmcHits));
    assert_eq!(b.get(Counter::EmcInserts), 0);
    for c in [Counter::Upcalls, Counter::Encapsulated] {
        assert_eq!(a.get(c), b.get(c), "{c:?}");
    }
    assert_balanced(&with_frames);
    assert_balanced(&without);
}

/// While every flow has one mask, a framed packet whose frame key equals
/// the last looked-up packet's under that mask takes its flow without a
/// lookup (a megaflow hit); packets of another megaflow of the mask, and
/// those after them, are looked up; one whose looked-up packet missed
/// waits for the upcall. With a second mask, every packet is looked up.
#[test]
fn packets_of_the_last_packets_megaflow_take_its_flow_while_flows_have_one_mask() {
    let mut e = engine(
        &[
            "priority=10,in_port=vf0,ip,nw_dst=10.0.1.0/24 actions=output:uplink0",
            "priority=10,in_port=vf0,ip,nw_dst=10.0.2.0/24 actions=output:vf1",
        ],
        64,
    );
    let to = |net: u8, host: u8, sport: u16| {
        let mut f = udp([2; 6], [4; 6], [10, 0, 0, host], 80, 60);
        f[32..34].copy_from_slice(&[net, host]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f
    };
    let mut io = VecIo::default();
    // New flows: the first packet of a megaflow misses, the next ones of it
    // wait for its upcall and then hit the megaflow it made.
    let (mut pkts, n) = burst(&[to(1, 1, 1), to(1, 2, 2), to(2, 1, 3)]);
    e.process(0, &mut pkts, n, 1, &mut io);
    let c = counters(&e);
    assert_eq!((c.get(Counter::Upcalls), c.get(Counter::MegaflowHits), e.flow_count()), (2, 1, 2));
    assert_eq!(io.sent.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![2, 2, 1]);

    let frames = [to(1, 1, 1), to(1, 3, 9), to(1, 4, 10), to(2, 5, 11), to(2, 6, 12), to(1, 7, 13)];
    let (mut pkts, n) = burst(&frames);
    let pending = e.stage_ingress(0, &mut pkts, n, &mut io, Framing::Lookup);
    assert_eq!((pending, e.mask_runs), (0b11_1111, 0b01_0110), "after 1.1: 1.3, 1.4; after 2.5: 2.6");
    assert_eq!((e.run_prev[1], e.run_prev[2], e.run_prev[4]), (0, 0, 3));
    let (mut pkts, n) = burst(&frames);
    let before = counters(&e);
    e.process(0, &mut pkts, n, 2, &mut io);
    let c = counters(&e);
    // By flow, each flow's packets in order.
    assert_eq!(io.sent[3..].iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![2, 2, 2, 2, 1, 1]);
    let order = [0, 1, 2, 5, 3, 4].map(|i| frames[i].clone());
    assert!(io.sent[3..].iter().zip(order.iter()).all(|((_, f), g)| f == g), "unchanged, in order");
    let delta = |k: Counter| c.get(k) - before.get(k);
    // 1.1 a cache hit; 2.5 and 1.7 new exact keys of known megaflows.
    assert_eq!((delta(Counter::EmcHits), delta(Counter::MegaflowHits), delta(Counter::Upcalls)), (1, 5, 0));
    let dump = e.dump(3);
    assert_eq!(dump.iter().map(|f| f.packets).sum::<u64>(), 9);

    // The cache passed by: frame keys only while the check finds runs; two
    // megaflows in turn make it give up after four misses, and the rest of
    // the burst is parsed.
    let turns: Vec<Vec<u8>> = (0..8).map(|i| to(1 + (i % 2) as u8, 20 + i as u8, 20)).collect();
    let (mut pkts, n) = burst(&turns);
    let pending = e.stage_ingress(0, &mut pkts, n, &mut io, Framing::MaskRuns);
    assert_eq!((pending, e.mask_runs, e.framed), (0xff, 0, 0b1_1111));

    // A flow of a second mask (another input port): every packet is looked up.
    let (mut pkts, n) = burst(&[to(1, 1, 1)]);
    e.process(1, &mut pkts, n, 3, &mut io);
    assert_eq!(e.flow_count(), 3);
    let (mut pkts, n) = burst(&frames);
    let pending = e.stage_ingress(0, &mut pkts, n, &mut io, Framing::Lookup);
    assert_eq!((pending, e.mask_runs), (0b11_1111, 0));
    assert_balanced(&e);
}

/// A xorshift generator from `seed`: a number below `n` per call.
fn xorshift(mut rng: u64) -> impl FnMut(u64) -> u64 {
    move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    }
}

/// Rules of one mask: megaflow runs on.
const ONE_MASK: [&str; 2] = [
    "priority=10,in_port=vf0,ip,nw_dst=10.0.1.0/24 actions=output:vxlan0",
    "priority=10,in_port=vf0,ip,nw_dst=10.0.2.0/24 actions=output:vf1",
];

/// vf0's MTU in these tests.
const MTUS: [u16; 3] = [1400, 1500, 1500];

/// A UDP frame to 10.0.`net`.`host`, from port `host`, `len` bytes.
fn to(net: u8, host: u8, len: usize) -> Vec<u8> {
    let mut f = udp([2; 6], [4; 6], [10, 0, net, host], 80, len);
    f[34..36].copy_from_slice(&u16::from(host).to_be_bytes());
    f
}

/// Frame `f` of the same flow again (its IP id changed: not in the key).
fn again(f: &[u8]) -> Vec<u8> {
    let mut g = f.to_vec();
    g[19] ^= 1;
    g
}

/// A burst with empty slots (`None`).
fn load(slots: &[Option<Vec<u8>>]) -> Packets<VecPacket> {
    let mut pkts: Packets<VecPacket> = [const { None }; BURST];
    for (i, f) in slots.iter().enumerate() {
        pkts[i] = f.as_ref().map(|f| VecPacket::new(f, 128));
    }
    pkts
}

/// An empty slot stands for a packet the hardware stage took: `process`
/// counted it received, and nothing else in these tests does.
fn empty_slots(e: &Engine) -> i128 {
    counters(e).balance(3).unaccounted()
}

/// The loops that take the later packets of a run and of a megaflow run
/// (`sweep_run`, `sweep_mask`) stop where ingress's own loop must look: an
/// empty slot, a frame above the VF's MTU, a frame the fast path refuses,
/// another flow or megaflow. Exactly, on one burst.
#[test]
fn runs_taken_in_loops_of_their_own_stop_where_ingress_must_look() {
    // An engine with the flows of both megaflows.
    let installed = |io: &mut VecIo| {
        let mut e = engine_mtus(&ONE_MASK, 64, 1000, MTUS.to_vec());
        let (mut pkts, n) = burst(&[to(1, 1, 60), to(2, 1, 60)]);
        e.process(0, &mut pkts, n, 1, io);
        assert_eq!(e.flow_count(), 2);
        e
    };
    let a = to(1, 1, 60);
    let slots: Vec<Option<Vec<u8>>> = vec![
        Some(a.clone()),
        Some(again(&a)),
        Some(to(1, 1, 1500)), // above vf0's MTU, of a's flow else
        Some(again(&again(&a))),
        None,
        Some(a.clone()),
        Some(to(1, 2, 60)),
        Some(to(1, 3, 60)),
        Some(to(2, 1, 60)),
        Some(to(2, 2, 60)),
        Some(a[..30].to_vec()), // a runt: parsed, refused
        Some(to(2, 3, 60)),
    ];
    let mut io = VecIo::default();
    let mut e = installed(&mut io);
    let mut pkts = load(&slots);
    let pending = e.stage_ingress(0, &mut pkts, slots.len(), &mut io, Framing::Lookup);
    assert_eq!(pending, 0b1011_1110_1011);
    assert_eq!((e.runs & pending, e.mask_runs), (0b10_1010, 0b1010_1100_0000));
    let prev = [1, 3, 5, 6, 7, 9, 11].map(|i| e.run_prev[i]);
    assert_eq!(prev, [0, 0, 0, 0, 0, 8, 8]);
    // The whole burst, through a second engine (the first counted the drops
    // of its ingress alone).
    let mut io = VecIo::default();
    let mut e = installed(&mut io);
    let mut pkts = load(&slots);
    e.process(0, &mut pkts, slots.len(), 2, &mut io);
    let c = counters(&e);
    assert_eq!((c.get(Counter::Encapsulated), c.get(Counter::MegaflowHits), c.get(Counter::EmcHits)), (7, 4, 5));
    assert_eq!(io.sent[2..].iter().filter(|(p, _)| *p == 1).count(), 3);
    assert_eq!((c.drops(DropReason::RxMtu), c.drops(DropReason::ParseError)), (1, 1));
    assert_eq!(empty_slots(&e), 1);
}

/// Long runs of flows and of megaflows broken by empty slots, frames above
/// the VF's MTU, VLAN tags and runts, through an engine with the
/// exact-match cache (and so the loops of `sweep_run` and `sweep_mask`) and
/// one without: the same packets out (encapsulated alike), the same flows
/// and the same counts.
#[test]
fn runs_taken_in_loops_of_their_own_give_what_the_parse_gives() {
    let mut next = xorshift(0x0bad_cafe_f00d_1234u64);
    let bursts: Vec<Vec<Option<Vec<u8>>>> = (0..200)
        .map(|_| {
            let mut slots: Vec<Option<Vec<u8>>> = Vec::new();
            for _ in 0..1 + next(32) {
                let last = slots.iter().rev().flatten().next().cloned();
                let f = match (next(16), last) {
                    (0, _) => None,
                    // The last frame's flow, longer than vf0's MTU.
                    (1, Some(l)) if l.len() > 40 => Some(to(l[32], l[33], 1500)),
                    (2, Some(l)) => Some([&l[..12], &[0x81, 0, 0, 7], &l[12..]].concat()),
                    (3, Some(l)) => Some(l[..30].to_vec()),
                    (4..=9, Some(l)) => Some(again(&l)),
                    (10..=12, Some(l)) if l.len() > 40 => Some(to(l[32], next(200) as u8, 60)),
                    _ => Some(to(1 + next(2) as u8, next(200) as u8, 60)),
                };
                slots.push(f);
            }
            slots
        })
        .collect();
    let run = |e: &mut Engine| {
        let mut io = VecIo { copies: 100, ..Default::default() };
        for (round, slots) in bursts.iter().enumerate() {
            e.start_iteration();
            let mut pkts = load(slots);
            e.process(0, &mut pkts, slots.len(), round as u64 + 1, &mut io);
        }
        let mut out = io.sent;
        out.sort();
        out
    };
    let mut with = engine_mtus(&ONE_MASK, 64, 1000, MTUS.to_vec());
    let mut without = engine_mtus(&ONE_MASK, 64, 1000, MTUS.to_vec());
    without.config.emc_entries = 0;
    let (out, other) = (run(&mut with), run(&mut without));
    assert!(out.len() > 2000, "{} packets out", out.len());
    assert!(out == other, "{} and {} out", out.len(), other.len());
    let flows = |e: &mut Engine| {
        let mut d: Vec<(Vec<u64>, u64, u64)> =
            e.dump(5).into_iter().map(|f| (f.key.words.to_vec(), f.packets, f.bytes)).collect();
        d.sort();
        d
    };
    assert_eq!(flows(&mut with), flows(&mut without), "the same flows, the same packet and byte counts");
    let (a, b) = (counters(&with), counters(&without));
    let hits = (a.get(Counter::MegaflowHits), a.get(Counter::EmcHits));
    assert!(hits.0 > 500 && hits.1 > 500, "megaflow and exact-match hits {hits:?}");
    for r in [DropReason::RxMtu, DropReason::ParseError] {
        assert!(a.drops(r) == b.drops(r) && b.drops(r) > 50, "{r:?}: {} and {}", a.drops(r), b.drops(r));
    }
    assert_eq!(a.get(Counter::Encapsulated), b.get(Counter::Encapsulated));
    let gaps = bursts.iter().flatten().filter(|f| f.is_none()).count() as i128;
    assert!(gaps > 50 && empty_slots(&with) == gaps && empty_slots(&without) == gaps, "{gaps} empty slots");
}

/// Megaflow runs of a flow that encapsulates get their outer source ports
/// at ingress once a burst has shown that flow (its frame keys are not
/// kept then): each packet its own flow's port, as the model e-switch
/// computes it. A megaflow run of a flow that does not encapsulate turns
/// that off for the next burst. (The frame keys of those that end up
/// looked up come back for the cache's insertions: the random bursts of
/// `runs_taken_in_loops_of_their_own_give_what_the_parse_gives` fail
/// without.)
#[test]
fn megaflow_runs_of_an_encapsulating_flow_get_their_ports_at_ingress() {
    let mut e = engine_mtus(&ONE_MASK, 64, 1000, MTUS.to_vec());
    let mut io = VecIo::default();
    let want = |f: &[u8]| vxlan_src_port(&InnerFlow::from_frame(f));
    let sports = |sent: &[(u32, Vec<u8>)]| -> Vec<u16> {
        sent.iter().map(|(_, out)| u16::from_be_bytes([out[34], out[35]])).collect()
    };
    // Both megaflows installed (their first packets' keys cached); each
    // burst below starts with one of those, then a run of its megaflow.
    let (mut pkts, n) = burst(&[to(1, 1, 60), to(2, 1, 60)]);
    e.process(0, &mut pkts, n, 1, &mut io);
    let of = |net: u8, hosts: std::ops::Range<u8>| -> Vec<Vec<u8>> {
        std::iter::once(to(net, 1, 60)).chain(hosts.map(|h| to(net, h, 60))).collect()
    };
    let (mut pkts, n) = burst(&of(1, 2..6));
    e.process(0, &mut pkts, n, 2, &mut io);
    assert!(e.sweep_sports.1, "the last megaflow run encapsulates");

    let tunnel = of(1, 10..20);
    let (mut pkts, n) = burst(&tunnel);
    let pending = e.stage_ingress(0, &mut pkts, n, &mut io, Framing::Lookup);
    assert_eq!((pending, e.mask_runs, e.swept), (0x7ff, 0x7fe, 0x7fc), "the run's first keeps its key");
    let (mut pkts, n) = burst(&tunnel);
    let before = io.sent.len();
    e.process(0, &mut pkts, n, 3, &mut io);
    assert_eq!(sports(&io.sent[before..]), tunnel.iter().map(|f| want(f)).collect::<Vec<_>>());
    assert!(io.sent[before..].iter().zip(&tunnel).all(|((p, out), f)| *p == 2 && out[50..] == f[..]));

    // A run of the other megaflow: the next burst keeps its frame keys.
    let (mut pkts, n) = burst(&of(2, 2..6));
    e.process(0, &mut pkts, n, 4, &mut io);
    assert!(!e.sweep_sports.1);
    let (mut pkts, n) = burst(&tunnel);
    let pending = e.stage_ingress(0, &mut pkts, n, &mut io, Framing::Lookup);
    assert_eq!((pending, e.mask_runs, e.swept), (0x7ff, 0x7fe, 0));
    let (mut pkts, n) = burst(&tunnel);
    let before = io.sent.len();
    e.process(0, &mut pkts, n, 5, &mut io);
    assert_eq!(sports(&io.sent[before..]), tunnel.iter().map(|f| want(f)).collect::<Vec<_>>());
    assert_balanced(&e);
}

/// A megaflow run whose first packet misses the exact-match cache (new
/// exact keys while the cache is looked up, as in the gate's probe bursts
/// at many flows of one megaflow) takes that packet's megaflow hit: its
/// packets are neither parsed nor looked up by themselves.
#[test]
fn a_megaflow_run_waits_for_its_first_packets_megaflow_hit() {
    let mut e = engine_mtus(&ONE_MASK, 64, 1000, MTUS.to_vec());
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&[to(1, 1, 60)]);
    e.process(0, &mut pkts, n, 1, &mut io);
    assert_eq!(e.flow_count(), 1);
    // New exact keys of that megaflow.
    let fresh: Vec<Vec<u8>> = (30..40).map(|h| to(1, h, 60)).collect();
    let (mut pkts, n) = burst(&fresh);
    let before = counters(&e);
    let sent = io.sent.len();
    assert!(e.emc_gate.lookup_now(), "the cache is looked up");
    e.process(0, &mut pkts, n, 2, &mut io);
    assert_eq!(e.mask_runs, 0x3fe);
    assert_eq!(e.unparsed & e.mask_runs, 0x3fe, "the run's packets were not parsed");
    let c = counters(&e);
    let delta = |k: Counter| c.get(k) - before.get(k);
    assert_eq!((delta(Counter::EmcHits), delta(Counter::MegaflowHits), delta(Counter::Upcalls)), (0, 10, 0));
    assert!(io.sent[sent..].iter().zip(&fresh).all(|((p, out), f)| *p == 2 && out[50..] == f[..]));
    assert_eq!(io.sent.len() - sent, fresh.len());
    assert_balanced(&e);
}
