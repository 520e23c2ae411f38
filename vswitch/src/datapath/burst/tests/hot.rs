//! Hot-flow detection for the offload policy.

use super::*;

#[test]
fn hot_detection_reports_flows_that_keep_the_rate_for_the_hot_time() {
    // Rules on nw_dst: one megaflow per destination.
    let mut e = engine(
        &[
            "priority=10,in_port=vf0,ip,nw_dst=10.0.0.1 actions=output:uplink0",
            "priority=10,in_port=vf0,ip,nw_dst=10.0.0.2 actions=output:uplink0",
            "priority=10,in_port=vf0,ip,nw_dst=10.0.0.3 actions=output:uplink0",
        ],
        64,
    );
    let (tx, rx) = crossbeam_channel::unbounded();
    e.events = Some(tx);
    let policy = HotPolicy { min_pps: 1000, hot: Duration::from_millis(200), repeat: Duration::from_millis(100) };
    e.hot = Some(policy);
    assert_eq!(policy.window(), Duration::from_millis(50));
    let fast = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let slow = udp([2; 6], [4; 6], [10, 0, 0, 2], 80, 60);
    let bursty = udp([2; 6], [4; 6], [10, 0, 0, 3], 80, 60);
    let mut io = VecIo::default();
    let ms = 1_000_000u64; // hz is 1e9 in these tests
    let mut hot = Vec::new();
    let mut installed = std::collections::HashMap::new();
    // 400 ms: the fast flow at 2000 pps, the slow one at 500 pps (a packet
    // every 0.5 and 2 ms), the bursty one at 1333 pps in bursts of 8 every
    // 6 ms (a 5 ms measurement would see 0 or 1600 pps and never call it
    // hot); hot checks every 5 ms as the PMD does.
    for step in 1..=800u64 {
        let now = step * ms / 2;
        e.start_iteration();
        let mut frames = vec![fast.clone()];
        if step % 4 == 0 {
            frames.push(slow.clone());
        }
        if step % 12 == 0 {
            frames.extend(std::iter::repeat_n(bursty.clone(), 8));
        }
        let (mut pkts, n) = burst(&frames);
        e.process(0, &mut pkts, n, now, &mut io);
        if step % 10 == 0 {
            e.hot_check(now);
            e.maintenance(now);
        }
        e.flush_events(None);
        for ev in rx.try_iter().flatten() {
            match ev {
                FlowEvent::Installed { id, key, .. } => {
                    installed.insert(id, key.nw_dst());
                }
                FlowEvent::Hot { id, pps, hot_for } => {
                    assert!(hot_for >= policy.hot, "{hot_for:?}");
                    hot.push((now / ms, installed[&id], pps));
                }
                FlowEvent::Hits { .. } => panic!("hit deltas were not asked for"),
                FlowEvent::Removed { .. } => panic!("nothing expires here"),
            }
        }
    }
    assert_eq!(installed.len(), 3);
    let of = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().expect("ip");
        hot.iter().filter(|(_, i, _)| *i == ip).map(|(t, _, pps)| (*t, *pps)).collect::<Vec<_>>()
    };
    let (fast, slow, bursty) = (of("10.0.0.1"), of("10.0.0.2"), of("10.0.0.3"));
    assert!(slow.is_empty(), "500 pps is below the threshold: {hot:?}");
    assert_eq!(fast.len(), 2, "reported, then again after the repeat interval while in software: {hot:?}");
    assert!((200..=205).contains(&fast[0].0), "reported at the first check after 200 ms at the rate: {hot:?}");
    assert!((1900..=2100).contains(&fast[0].1), "its rate is measured over whole windows: {hot:?}");
    assert!(!bursty.is_empty(), "a bursty flow above the rate is hot too: {hot:?}");
    assert!((1100..=1600).contains(&bursty[0].1), "its rate averages over its bursts: {hot:?}");
}

#[test]
fn a_slow_hot_flow_is_reported_on_time_without_a_hit_at_that_moment() {
    let mut e = engine(&["priority=10,in_port=vf0,ip actions=output:uplink0"], 64);
    let (tx, rx) = crossbeam_channel::unbounded();
    e.events = Some(tx);
    e.hot = Some(HotPolicy { min_pps: 20, hot: Duration::from_millis(100), repeat: Duration::from_millis(100) });
    let frame = udp([2; 6], [4; 6], [10, 0, 0, 1], 80, 60);
    let mut io = VecIo::default();
    let ms = 1_000_000u64;
    let mut reported = None;
    // A packet every 30 ms (33 pps); checks every 5 ms.
    for t in (0..=200u64).step_by(5) {
        e.start_iteration();
        if t % 30 == 0 {
            let (mut pkts, n) = burst(std::slice::from_ref(&frame));
            e.process(0, &mut pkts, n, t * ms, &mut io);
        }
        e.hot_check(t * ms);
        e.flush_events(None);
        for ev in rx.try_iter().flatten() {
            if let FlowEvent::Hot { pps, hot_for, .. } = ev {
                reported.get_or_insert((t, pps, hot_for));
            }
        }
    }
    let (t, pps, hot_for) = reported.expect("reported hot");
    // Its first window (0-30 ms) began at its install: due at 100 ms, when
    // the flow is between packets (90 and 120).
    assert_eq!((t, hot_for), (100, Duration::from_millis(100)), "{reported:?}");
    assert!((20..=40).contains(&pps), "{pps}");
}
