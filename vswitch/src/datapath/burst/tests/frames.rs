//! Frame keys (the exact-match cache by a frame's bytes) against flow keys.

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
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
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
        let mut d: Vec<(Vec<u64>, u64)> = e.dump(1).into_iter().map(|f| (f.key.words.to_vec(), f.packets)).collect();
        d.sort();
        d
    };
    assert_eq!(flows(&mut with_frames), flows(&mut without), "the same flows, the same counts");
    let (a, b) = (counters(&with_frames), counters(&without));
    assert!(a.get(Counter::EmcHits) > 1000, "{} exact-match hits", a.get(Counter::EmcHits));
    assert_eq!(b.get(Counter::EmcInserts), 0);
    for c in [Counter::Upcalls, Counter::Encapsulated] {
        assert_eq!(a.get(c), b.get(c), "{c:?}");
    }
    assert_balanced(&with_frames);
    assert_balanced(&without);
}
