//! The flow life cycle under load: the upcall budget and its fairness, a
//! new-flow flood, eviction from a tiny table, the packet balance, and
//! revalidation.

use super::*;

#[test]
fn upcall_budget_limits_new_flows_per_iteration() {
    let mut e = engine(
        &[
            "priority=10,in_port=vf0,ip,nw_dst=10.0.0.0/8 actions=output:uplink0",
            "priority=20,in_port=vf0,udp,tp_dst=53 actions=output:vf1",
            "priority=5,in_port=vf0 actions=output:vf1",
        ],
        2,
    );
    // Three distinct megaflows (different rules), budget 2.
    let frames = vec![
        udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60),
        udp([2; 6], [4; 6], [10, 0, 0, 1], 53, 60),
        udp([2; 6], [4; 6], [11, 0, 0, 1], 80, 60),
    ];
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&frames);
    e.process(0, &mut pkts, n, 1, &mut io);
    let c = counters(&e);
    assert_eq!((c.get(Counter::Upcalls), c.drops(DropReason::UpcallBudget)), (2, 1));
    e.start_iteration();
    let (mut pkts, n) = burst(&frames);
    e.process(0, &mut pkts, n, 2, &mut io);
    assert_eq!(counters(&e).get(Counter::Upcalls), 3, "the next iteration has budget again");
    assert_balanced(&e);
}

/// The flood scenario: vf0 offers a new flow in every packet (each its own
/// megaflow: the rules consult the whole destination address), vf1 offers
/// 10 established flows. `iterations` PMD iterations, each polling both
/// ports in the PMD's rotating order; returns the share of vf1's packets
/// delivered.
fn flood_round(e: &mut Engine, iterations: usize, flood: &mut u32, with_flood: bool, now: &mut u64) -> f64 {
    let established: Vec<Vec<u8>> = (0..10).map(|i| udp([2; 6], [6; 6], [10, 1, 0, i], 80, 60)).collect();
    let (mut offered, mut delivered) = (0usize, 0usize);
    for it in 0..iterations {
        *now += 10_000; // 10 us per iteration
        e.start_iteration();
        for step in 0..2 {
            let queue = (it + step) % 2;
            e.queue_turn(1 - step, 2);
            let mut io = VecIo::default();
            if queue == 0 {
                if !with_flood {
                    continue;
                }
                let frames: Vec<Vec<u8>> = (0..BURST as u32)
                    .map(|_| {
                        *flood += 1;
                        udp([2; 6], [4; 6], [10, 2, (*flood >> 8) as u8, *flood as u8], 80, 60)
                    })
                    .collect();
                let (mut pkts, n) = burst(&frames);
                e.process(0, &mut pkts, n, *now, &mut io);
            } else {
                let (mut pkts, n) = burst(&established);
                e.process(1, &mut pkts, n, *now, &mut io);
                offered += n;
                delivered += io.sent.iter().filter(|(p, _)| *p == 2).count();
            }
        }
        if it % 1000 == 999 {
            e.maintenance(*now); // every 10 ms (the PMD: 100 ms)
        }
    }
    delivered as f64 / offered as f64
}

#[test]
fn a_new_flow_flood_on_one_port_does_not_shut_out_established_flows_on_another() {
    let rules = [
        "priority=20,in_port=vf0,ip,nw_dst=10.9.9.9 actions=drop",
        "priority=20,in_port=vf1,ip,nw_dst=10.9.9.9 actions=drop",
        "priority=10,ip actions=output:uplink0",
    ];
    // A small budget (4 upcalls per iteration for both ports) and a table of
    // 1,000 flows: the flood offers 32 new flows an iteration.
    let mut e = engine(&rules, 4);
    let (mut flood, mut now) = (0u32, 1u64);
    let alone = flood_round(&mut e, 50, &mut flood, false, &mut now);
    assert!(alone > 0.9, "alone: {alone}");
    let under_flood = flood_round(&mut e, 2000, &mut flood, true, &mut now);
    let c = counters(&e);
    assert!(e.flow_count() <= 1000);
    assert!(c.drops(DropReason::UpcallBudget) > 0, "the flood was over budget");
    assert!(under_flood >= 0.5 * alone, "under flood {under_flood:.3} vs alone {alone:.3}");
    // A rule change that revalidates vf1's flows out (they must now match
    // on the UDP port): they come back under the flood.
    let mut changed = rules.to_vec();
    changed.push("priority=30,in_port=vf1,udp,tp_dst=9999 actions=drop");
    let report = e.revalidate(Arc::new(table(&changed)));
    assert!(report.removed >= 10, "{report:?}");
    let after = flood_round(&mut e, 2000, &mut flood, true, &mut now);
    assert!(after >= 0.5 * alone, "after a rule change, under flood {after:.3} vs alone {alone:.3}");
    // The established flows are back in the table and stay there.
    let vf1_flows = e.dump(now).iter().filter(|f| f.key.in_port() == 1).count();
    assert_eq!(vf1_flows, 10);
    assert!(c.get(Counter::FlowsEvicted) > 500, "the full table made room: {}", c.get(Counter::FlowsEvicted));
    // Under pressure (over 3/4 full) idle flows expire after 100 ms rather
    // than the idle timeout (10 s here); the established ones stay.
    assert!(e.flow_count() > 750);
    flood_round(&mut e, 15_000, &mut flood, false, &mut now);
    assert!(e.flow_count() < 100, "idle flood flows expired: {} left", e.flow_count());
    assert_eq!(e.dump(now).iter().filter(|f| f.key.in_port() == 1).count(), 10, "established flows kept");
    assert_balanced(&e);
}

/// New flows far beyond a tiny table: each burst installs more megaflows
/// than the table holds, so installs evict flows of earlier bursts, never
/// those the burst in flight points to; whatever cannot be installed is
/// counted as `flow_limit`, and every packet is accounted for.
#[test]
fn a_tiny_flow_table_under_many_new_flows_loses_no_packet_uncounted() {
    let rules: Vec<String> =
        (0..=255).map(|i| format!("priority=20,ip,nw_dst=10.3.0.{i} actions=output:uplink0")).collect();
    let refs: Vec<&str> = rules.iter().map(String::as_str).collect();
    for max_flows in [16, 32] {
        let mut e = engine_sized(&refs, 1000, max_flows);
        let (mut sent, mut offered) = (0usize, 0usize);
        for b in 0..40u32 {
            e.start_iteration();
            // 32 packets over 25 flows (some twice in a burst), new ones each burst.
            let frames: Vec<Vec<u8>> =
                (0..32u32).map(|i| udp([2; 6], [4; 6], [10, 3, 0, ((b * 7 + i % 25) % 256) as u8], 80, 60)).collect();
            let mut io = VecIo::default();
            let (mut pkts, n) = burst(&frames);
            e.process(0, &mut pkts, n, u64::from(b + 1) * 1000, &mut io);
            offered += n;
            sent += io.sent.len();
            assert_balanced(&e);
        }
        let c = counters(&e);
        let drops: u64 = DropReason::ALL.iter().map(|&r| c.drops(r)).sum();
        assert_eq!(c.drops(DropReason::FlowGone), 0, "no flow of the burst in flight was evicted");
        assert_eq!(sent as u64 + drops, offered as u64, "max_flows {max_flows}");
        assert_eq!(drops, c.drops(DropReason::FlowLimit), "only the table's limit drops");
        assert!(e.flow_count() <= max_flows);
        assert!(c.get(Counter::FlowsEvicted) > 0, "the table made room");
        if max_flows == 32 {
            assert_eq!(drops, 0, "25 flows a burst fit a table of 32");
        }
    }
}

mod balance_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Random table sizes, flow mixes, rules with copies, drops and
        /// outputs to the input port, oversized frames and garbage: the
        /// balance holds after every burst.
        #[test]
        fn every_packet_is_sent_dropped_or_consumed(
            max_flows in 1usize..48,
            budget in 1usize..40,
            copies in 0usize..40,
            bursts in proptest::collection::vec(
                (0u32..3, proptest::collection::vec((0u8..64, 0u16..4, any::<bool>(), any::<bool>()), 1..=BURST)),
                1..12,
            ),
        ) {
            let rules = [
                "priority=40,ip,nw_dst=10.4.0.1 actions=drop",
                "priority=30,ip,nw_dst=10.4.0.2 actions=output:uplink0,output:vf1",
                "priority=30,ip,nw_dst=10.4.0.3 actions=output:vf0",
                "priority=30,ip,nw_dst=10.4.0.4 actions=output:vxlan0",
                "priority=30,ip,nw_dst=10.4.0.5 actions=output:vf1,mod_dl_src:02:00:00:00:00:99",
                "priority=20,udp,tp_dst=2 actions=mod_vlan_vid:7,output:uplink0",
                "priority=10,ip actions=output:vf1",
            ];
            let mut e = engine_sized(&rules, budget, max_flows);
            let mut now = 1u64;
            for (port, pkts) in &bursts {
                e.start_iteration();
                now += 1000;
                let frames: Vec<Vec<u8>> = pkts
                    .iter()
                    .map(|&(host, dport, big, junk)| {
                        if junk {
                            vec![host; usize::from(dport) + 5]
                        } else {
                            udp([2; 6], [4; 6], [10, 4, 0, host], dport, if big { 1530 } else { 60 })
                        }
                    })
                    .collect();
                let mut io = VecIo { copies, ..Default::default() };
                let (mut p, n) = burst(&frames);
                e.process(*port, &mut p, n, now, &mut io);
                let b = counters(&e).balance(3);
                prop_assert_eq!(b.unaccounted(), 0, "{:?}", b);
                prop_assert_eq!(counters(&e).drops(DropReason::FlowGone), 0);
            }
        }
    }
}

#[test]
fn the_flood_port_polled_first_cannot_take_the_whole_upcall_budget() {
    let many: Vec<Vec<u8>> = (0..8).map(|i| udp([2; 6], [4; 6], [10, 0, 0, i], 80, 60)).collect();
    let mut io = VecIo::default();
    // vf0 polled first, vf1 after it: vf0 may use 4 - 2 (vf1's share).
    let rules = (0..8).map(|i| format!("priority=20,ip,nw_dst=10.0.0.{i} actions=output:uplink0")).collect::<Vec<_>>();
    let refs: Vec<&str> = rules.iter().map(String::as_str).collect();
    let mut e = engine(&refs, 4);
    e.start_iteration();
    e.queue_turn(1, 2);
    let (mut pkts, n) = burst(&many);
    e.process(0, &mut pkts, n, 1, &mut io);
    let c = counters(&e);
    assert_eq!((c.get(Counter::Upcalls), c.drops(DropReason::UpcallBudget)), (2, 6), "vf1's share kept");
    e.queue_turn(0, 2);
    let theirs: Vec<Vec<u8>> = (0..2).map(|i| udp([2; 6], [6; 6], [10, 0, 0, i], 80, 60)).collect();
    let (mut pkts, n) = burst(&theirs);
    e.process(1, &mut pkts, n, 1, &mut io);
    assert_eq!(counters(&e).get(Counter::Upcalls), 4, "vf1 got its share");
}

#[test]
fn revalidation_keeps_unaffected_flows_and_removes_shadowed_ones() {
    let mut e = engine(
        &["priority=10,in_port=vf0,ip actions=output:uplink0", "priority=10,in_port=vf1,ip actions=output:uplink0"],
        64,
    );
    let mut io = VecIo::default();
    let (mut pkts, n) = burst(&[udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60)]);
    e.process(0, &mut pkts, n, 1, &mut io);
    let (mut pkts, n) = burst(&[udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60)]);
    e.process(1, &mut pkts, n, 1, &mut io);
    assert_eq!(e.flow_count(), 2);
    let mut table = RuleTable::new();
    let resolve = |n: &str| PORTS.iter().position(|p| *p == n).map(|i| i as u32);
    for r in ["priority=10,in_port=vf0,ip actions=output:uplink0", "priority=10,in_port=vf1,ip actions=output:vf0"] {
        let s = parse_rule(r, &resolve).expect(r);
        table.insert(s.priority, s.matcher, s.actions);
    }
    let report = e.revalidate(Arc::new(table));
    assert_eq!((report.kept, report.removed), (1, 1));
    assert_eq!(e.flow_count(), 1);
}

/// A revalidation in slices: before its sweep reaches a stale flow, a packet
/// hitting it has it revalidated first (so it is sent by the new rules, never
/// the old); the sweep then checks the rest, a slice at a time, and the tally
/// counts every flow once.
#[test]
fn a_sliced_revalidation_never_forwards_by_the_old_rules() {
    let rules: Vec<String> =
        (0..200).map(|i| format!("priority=10,ip,nw_dst=10.0.1.{i} actions=output:uplink0")).collect();
    let refs: Vec<&str> = rules.iter().map(String::as_str).collect();
    let mut e = engine(&refs, 256);
    let mut io = VecIo::default();
    let frames: Vec<Vec<u8>> = (0..200u8).map(|i| udp([2; 6], [4; 6], [10, 0, 1, i], 80, 60)).collect();
    for chunk in frames.chunks(32) {
        e.start_iteration();
        let (mut pkts, n) = burst(chunk);
        e.process(0, &mut pkts, n, 1, &mut io);
    }
    assert_eq!(e.flow_count(), 200, "one megaflow per rule");
    // The new rules send 10.0.1.7 to vf1: its megaflow must go.
    let mut changed = refs.clone();
    changed.push("priority=20,ip,nw_dst=10.0.1.7 actions=output:vf1");
    e.set_rules(Arc::new(table(&changed)));
    assert!(e.revalidating());
    assert_eq!(e.stale_flows(), 200);
    io.sent.clear();
    e.start_iteration();
    let (mut pkts, n) = burst(&[frames[7].clone(), frames[8].clone()]);
    e.process(0, &mut pkts, n, 2, &mut io);
    let ports: Vec<u32> = io.sent.iter().map(|(p, _)| *p).collect();
    assert_eq!(ports, vec![1, 2], "10.0.1.7 by the new rule, 10.0.1.8 by the old megaflow revalidated");
    // A budget of zero still checks a few flows a slice; the sweep ends.
    let mut slices = 0;
    let report = loop {
        slices += 1;
        if let Some(r) = e.revalidate_slice(0) {
            break r;
        }
        assert!(slices < 10_000, "the sweep ends");
    };
    assert!(!e.revalidating());
    assert_eq!(e.stale_flows(), 0);
    assert!(slices > 1, "a zero budget takes several slices");
    // Every flow stale at set_rules counted once, the two the packets
    // revalidated first included.
    assert_eq!((report.kept, report.removed), (199, 1), "{report:?}");
    assert_eq!(e.flow_count(), 200, "10.0.1.7's new flow replaced the old");
    assert_eq!(e.dump(3).len(), 200);
}

/// A burst of one flow (one packet looked up, the rest runs of its key)
/// while its flow is stale: every packet is revalidated with it and sent
/// by the new rules, none left behind or sent by the old.
#[test]
fn a_one_flow_burst_while_its_flow_is_stale_goes_by_the_new_rules() {
    let old = ["priority=10,ip,nw_dst=10.0.1.7 actions=output:uplink0"];
    let mut e = engine(&old, 64);
    let mut io = VecIo::default();
    let frames = vec![udp([2; 6], [4; 6], [10, 0, 1, 7], 80, 60); 8];
    for now in 1..=2 {
        e.start_iteration();
        let (mut pkts, n) = burst(&frames);
        e.process(0, &mut pkts, n, now, &mut io);
    }
    assert!(counters(&e).get(Counter::EmcHits) >= 8, "the second burst is a cache hit and its runs");
    e.set_rules(Arc::new(table(&["priority=10,ip,nw_dst=10.0.1.7 actions=output:vf1"])));
    assert_eq!(e.stale_flows(), 1);
    io.sent.clear();
    e.start_iteration();
    let (mut pkts, n) = burst(&frames);
    e.process(0, &mut pkts, n, 3, &mut io);
    assert!(pkts.iter().all(Option::is_none), "every slot emptied");
    let ports: Vec<u32> = io.sent.iter().map(|(p, _)| *p).collect();
    assert_eq!(ports, vec![1; 8], "all eight to vf1 by the new rule");
    assert_balanced(&e);
}
