//! Fuzzes what the kernel follower reads from rtnetlink: datagrams (each
//! prefixed by a 2-byte little-endian length) are decoded as the follower
//! decodes them and applied to its state. Never a panic; every message is
//! an event or a counted bad one; the switch's view holds only routes
//! through the uplinks, prefixes without host bits, unicast neighbour MACs.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::kernel::decode::{decode, Event};
use vswitch::kernel::state::{KernelState, Uplink};
use vswitch::kernel::Counters;

fuzz_target!(|data: &[u8]| {
    let uplinks = [
        Uplink { ifname: "up0".into(), port: 1, name: "uplink0".into() },
        Uplink { ifname: "up1".into(), port: 2, name: "uplink1".into() },
    ];
    let mut state = KernelState::default();
    let mut counters = Counters::default();
    let mut rest = data;
    let mut events = Vec::new();
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let datagram = &rest[2..2 + len];
        rest = &rest[2 + len..];
        events.clear();
        decode(datagram, &mut events);
        assert!(datagram.len() < 16 || !events.is_empty(), "a datagram of {} bytes gave nothing", datagram.len());
        for ev in &events {
            let bad = counters.bad_messages;
            state.apply(ev, 254, &mut counters);
            if matches!(ev, Event::Bad(_)) {
                assert_eq!(counters.bad_messages, bad + 1);
            }
        }
    }
    let view = state.view(&uplinks);
    for r in &view.routes {
        assert!(r.port == 1 || r.port == 2, "{r:?}");
        assert!(!r.prefix.has_host_bits(), "{r:?}");
        assert!(r.via.is_none_or(|v| v.is_ipv4() == r.prefix.is_ipv4()), "{r:?}");
    }
    for (_, n) in &view.neighbours {
        assert!(n.mac[0] & 1 == 0 && n.mac != [0; 6], "{n:?}");
    }
    assert!(view.ignored_routes.len() <= view.ignored_route_count);
});
