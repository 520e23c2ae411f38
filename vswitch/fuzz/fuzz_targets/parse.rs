//! Fuzzes the packet parser and the VXLAN decap path on arbitrary bytes:
//! neither may panic or read out of bounds, and offsets stay inside the frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::actions::vxlan::decap;
use vswitch::actions::{PacketBuf, VecPacket};
use vswitch::packet::parse;

fuzz_target!(|data: &[u8]| {
    let p = parse(data, 1, None);
    assert!(usize::from(p.l3_offset) <= data.len());
    if let Some(l4) = p.l4_offset {
        assert!(usize::from(l4) <= data.len());
    }
    if let Some(Ok(vx)) = p.vxlan(data, 4789) {
        assert!(usize::from(vx.inner_offset) <= data.len());
    }
    let mut pkt = VecPacket::new(data, 0);
    if decap(&mut pkt, 4789).is_ok() {
        let _ = parse(pkt.data(), 2, None);
    } else {
        assert_eq!(pkt.data(), data, "a refused decap leaves the packet alone");
    }
});
