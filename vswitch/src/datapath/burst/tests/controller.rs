//! The `controller` action (PACKET_IN) and PACKET_OUT injection.

use super::*;
use crate::datapath::punt::{queues, PuntLimits};

#[test]
fn controller_action_queues_packets_under_the_rate_and_counts_the_rest() {
    let mut e = engine(
        &[
            "priority=10,in_port=vf0,udp,tp_dst=80 actions=output:uplink0,controller:20",
            "priority=0 actions=controller",
        ],
        64,
    );
    let (mut punts, rxs) = queues(1, PuntLimits { rate: 5, queue: 100 });
    e.punt = punts.remove(0);
    let web: Vec<Vec<u8>> = (0..4).map(|i| udp([2; 6], [4; 6], [10, 0, 0, i], 80, 60)).collect();
    let other: Vec<Vec<u8>> = (0..4).map(|i| udp([2; 6], [4; 6], [10, 0, 0, i], 81, 70)).collect();
    let out = run_bursts(&mut e, &[(0, web.clone()), (0, other.clone())]);
    // The web packets go out of the uplink and, truncated, to the
    // controller; the rate (5 a second, none refilled in these ticks) lets
    // 5 of the 8 through; the rest are counted drops.
    assert_eq!(out.len(), 4);
    let got: Vec<_> = rxs[0].try_iter().collect();
    assert_eq!(got.len(), 5);
    assert!(got[..4].iter().zip(&web).all(|(p, f)| p.data == f[..20] && p.total_len == 60 && p.in_port == 0));
    assert_eq!((got[4].data.len(), got[4].total_len), (70, 70), "controller without max_len: all of it");
    assert_ne!(got[0].rule, got[4].rule);
    let c = counters(&e);
    assert_eq!(c.get(Counter::ToController), 5);
    assert_eq!(c.drops(DropReason::ControllerLimit), 3);
    assert_eq!(c.get(Counter::Copies), 4, "the web packets' controller copies");
    assert_balanced(&e);
}

#[test]
fn packet_out_runs_actions_on_the_controllers_frame() {
    let mut e = engine(&["priority=0 actions=drop"], 64);
    let mut io = VecIo { copies: 10, ..Default::default() };
    let frame = udp([2; 6], [4; 6], [10, 0, 0, 9], 53, 64);
    e.inject(&frame, None, &[Action::SetEthDst([6; 6]), Action::Output(0), Action::Output(1)], 1, &mut io);
    e.inject(&frame, Some(1), &[], 2, &mut io);
    let mut want = frame.clone();
    want[..6].copy_from_slice(&[6; 6]);
    assert_eq!(io.sent, vec![(0, want.clone()), (1, want)]);
    let c = counters(&e);
    assert_eq!(c.get(Counter::PacketOutSent), 2);
    assert_eq!(c.drops(DropReason::RuleDrop), 1, "a packet-out without outputs is a counted drop");
    assert_balanced(&e);
}
