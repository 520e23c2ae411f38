//! Fuzzes the packet parser and the VXLAN decap path on arbitrary bytes:
//! neither may panic or read out of bounds, and offsets stay inside the frame.
//! The halves of the input, as two frames: when the fast path parsed the
//! first and `same_fast_key` says the second has its key, the full parse of
//! the second agrees; when the first is VXLAN and `VxlanBytes` says the
//! second has its outer headers, the full parse and decap of the second
//! agree (the UDP source port aside); when both have frame keys equal under
//! the frame mask of a mask the input picks, their flow keys are equal under
//! that mask.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::actions::vxlan::{decap, decap_same_outer};
use vswitch::actions::{PacketBuf, VecPacket};
use vswitch::packet::parse;
use vswitch::packet::parse::{parse_hashed_fast, same_fast_key, FrameKey, FrameMask, VxlanBytes, ETH_TYPE_IPV4};
use vswitch::packet::{Field, FlowKey, FlowMask};

fuzz_target!(|data: &[u8]| {
    let p = parse(data, 1, None);
    assert!(usize::from(p.l3_offset) <= data.len());
    if let Some(l4) = p.l4_offset {
        assert!(usize::from(l4) <= data.len());
    }
    if let Some(Ok(vx)) = p.vxlan(data, 4789) {
        assert!(usize::from(vx.inner_offset) <= data.len());
    }
    let (a, b) = data.split_at(data.len() / 2);
    let mut key = FlowKey::ZERO;
    if parse_hashed_fast(a, 1, None, &mut key).2 {
        if let Some(layout) = same_fast_key(a, b) {
            let p = parse(b, 1, None);
            assert!(p.key == key && p.layout() == layout, "same_fast_key said the same key wrongly");
        }
    }
    let (fa, fb) = (FrameKey::of(a, 1), FrameKey::of(b, 1));
    for (f, k) in [(a, fa), (b, fb)] {
        if k.is_some() {
            let mut fast = FlowKey::ZERO;
            assert!(parse_hashed_fast(f, 1, None, &mut fast).2, "a frame key for a frame the fast path refuses");
            assert!(parse(f, 1, None).key == fast);
        }
    }
    if let Some(fa) = fa {
        assert_eq!(fa.same_frame(b, 1), fb == Some(fa), "same_frame and the frame keys disagree");
        if fb == Some(fa) {
            assert!(parse(a, 1, None).key == parse(b, 1, None).key, "equal frame keys, different flow keys");
        }
        // A mask of the fields the input's first bytes pick: frame keys
        // equal under its frame mask, flow keys equal under it.
        if let Some(fb) = fb {
            let mut mask = FlowMask::default();
            for (field, byte) in Field::ALL.iter().zip(data.iter()) {
                if byte & 1 != 0 {
                    mask.exact(*field);
                }
            }
            if fa.eq_masked(&fb, &FrameMask::of(&mask)) {
                let (ka, kb) = (parse(a, 1, None).key, parse(b, 1, None).key);
                assert!(ka.masked(&mask) == kb.masked(&mask), "equal under the frame mask, not under the mask");
            }
        }
    }
    let outer_a = parse(a, 1, None);
    if parse_hashed_fast(a, 1, None, &mut key).2
        && key.eth_type() == ETH_TYPE_IPV4
        && matches!(outer_a.vxlan(a, 4789), Some(Ok(_)))
    {
        if let Some(end) = VxlanBytes::of(a).and_then(|o| o.same_outer(b)) {
            let p = parse(b, 1, None);
            let mut want = outer_a.key;
            want.set(Field::TpSrc, p.key.get(Field::TpSrc));
            assert!(p.key == want && usize::from(p.l3_end) == end, "same_outer said the same headers wrongly");
            assert_eq!(p.vxlan(b, 4789), outer_a.vxlan(a, 4789));
            let (mut full, mut run) = (VecPacket::new(b, 0), VecPacket::new(b, 0));
            assert_eq!(decap(&mut full, 4789).is_ok(), decap_same_outer(&mut run, end).is_ok());
            assert_eq!(full.data(), run.data());
        }
    }
    let mut pkt = VecPacket::new(data, 0);
    if decap(&mut pkt, 4789).is_ok() {
        let _ = parse(pkt.data(), 2, None);
    } else {
        assert_eq!(pkt.data(), data, "a refused decap leaves the packet alone");
    }
});
