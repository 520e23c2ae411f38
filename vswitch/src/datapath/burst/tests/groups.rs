//! Grouping a burst by flow, and running the groups of flows that share an
//! action list as one batch.

use super::*;
use crate::datapath::flows::FlowHandle;

/// The grouping by a search of the groups so far (what `Groups::fill`
/// must agree with).
fn groups_by_search(flow_of: &[Option<FlowHandle>; BURST], n: usize) -> Vec<(u32, u64)> {
    let mut out: Vec<(u32, u64)> = Vec::new();
    for (i, h) in flow_of.iter().enumerate().take(n) {
        let Some(h) = h else { continue };
        match out.iter_mut().find(|(index, _)| *index == h.index) {
            Some((_, members)) => *members |= 1 << i,
            None => out.push((h.index, 1 << i)),
        }
    }
    out
}

#[test]
fn groups_agree_with_a_search_when_flows_share_index_entries() {
    let mut g = Groups::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let pkts: Packets<u8> = [const { Some(0) }; BURST];
    let mut collided = 0;
    for round in 0..2000 {
        // Few distinct remainders modulo 256, many flows on each: most
        // groups' entries are taken by another flow. Some packets have no
        // flow (dropped before grouping).
        let distinct = 1 + (round % 40) as u64;
        let mut flow_of = [None; BURST];
        for slot in flow_of.iter_mut() {
            let r = next();
            if r % 10 != 0 {
                let f = (r >> 8) % distinct;
                *slot = Some(FlowHandle { index: ((f % 3) + 256 * (f / 3)) as u32, generation: 1 });
            }
        }
        let n = 1 + (next() % BURST as u64) as usize;
        g.fill(&flow_of, &pkts, n);
        let got: Vec<(u32, u64)> = (0..g.len).map(|k| (g.handles[k].index, g.members[k])).collect();
        let want = groups_by_search(&flow_of, n);
        assert_eq!(got, want, "round {round}");
        collided += want.iter().filter(|(index, _)| *index >= 256).count();
    }
    assert!(collided > 1000, "flows sharing an entry were grouped {collided} times");
}

#[test]
fn flows_of_one_rule_leave_as_one_batch_in_arrival_order() {
    // The rule on port 53 makes every megaflow match the UDP destination
    // port exactly: eight flows of the lower rule, one action list.
    let mut e = engine(
        &["priority=20,in_port=vf0,udp,tp_dst=53 actions=drop", "priority=10,in_port=vf0,ip actions=output:uplink0"],
        64,
    );
    let frame = |seq: usize| {
        let dport = if seq % 9 == 8 { 53 } else { 80 + (seq % 9) as u16 };
        let mut f = udp([4; 6], [2; 6], [10, 0, 0, 9], dport, 64);
        f[63] = seq as u8;
        f
    };
    let mut io = VecIo::default();
    for round in 0..3 {
        let frames: Vec<Vec<u8>> = (0..36).map(|s| frame(round * 36 + s)).collect();
        let (mut pkts, n) = burst(&frames);
        e.process(0, &mut pkts, n, round as u64 + 1, &mut io);
        let forwarded: Vec<Vec<u8>> = frames.iter().filter(|f| f[37] != 53).cloned().collect();
        let sent: Vec<Vec<u8>> =
            io.sent.drain(..).map(|(port, f)| (port == 2).then_some(f).expect("uplink0")).collect();
        assert_eq!(sent, forwarded, "round {round}: the eight flows' packets interleaved as they came");
    }
    let flows = e.dump(4);
    assert_eq!(flows.len(), 9);
    assert!(
        flows.iter().all(|f| f.packets == 12),
        "each flow counted its own packets: {:?}",
        flows.iter().map(|f| f.packets).collect::<Vec<_>>()
    );
    assert_eq!(counters(&e).drops(DropReason::RuleDrop), 12);
    assert_balanced(&e);
}

#[test]
fn flows_of_different_rules_in_one_burst_keep_each_flows_order() {
    let mut e = engine(
        &[
            "priority=20,in_port=vf0,udp,tp_dst=53 actions=drop",
            "priority=15,in_port=vf0,udp,tp_dst=99 actions=output:vf1",
            "priority=12,in_port=vf0,udp,tp_dst=98 actions=output:vxlan0",
            "priority=10,in_port=vf0,ip actions=output:uplink0",
        ],
        64,
    );
    let ports = [80u16, 99, 81, 98, 53, 82, 99, 98];
    let frames: Vec<Vec<u8>> = (0..48)
        .map(|s| {
            let mut f = udp([4; 6], [2; 6], [10, 0, 0, 9], ports[(s * 5 + s / 8) % ports.len()], 64);
            f[63] = s as u8;
            f
        })
        .collect();
    let mut io = VecIo::default();
    for round in 0..2 {
        let (mut pkts, n) = burst(&frames);
        e.process(0, &mut pkts, n, round + 1, &mut io);
    }
    // Per destination port: the sequence numbers in the order they left.
    let dport_of = |f: &[u8]| {
        if f.len() > 64 {
            u16::from_be_bytes([f[50 + 36], f[50 + 37]])
        } else {
            u16::from_be_bytes([f[36], f[37]])
        }
    };
    let seq_of = |f: &[u8]| f[f.len() - 1];
    for dport in [80u16, 81, 82, 98, 99] {
        let want: Vec<u8> = frames.iter().filter(|f| dport_of(f) == dport).map(|f| seq_of(f)).collect();
        let got: Vec<u8> = io.sent.iter().filter(|(_, f)| dport_of(f) == dport).map(|(_, f)| seq_of(f)).collect();
        assert_eq!(got, [want.clone(), want].concat(), "port {dport}'s flow in order");
    }
    let port_for = |dport: u16| match dport {
        99 => 1,
        _ => 2,
    };
    assert!(io.sent.iter().all(|(p, f)| *p == port_for(dport_of(f))));
    assert_eq!(
        io.sent.iter().filter(|(_, f)| f.len() > 64).count(),
        24,
        "port 98 encapsulated (50 bytes more): 12 a burst"
    );
    assert_eq!(counters(&e).drops(DropReason::RuleDrop), 12);
    assert_balanced(&e);
}
