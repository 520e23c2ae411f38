//! OpenFlow 1.3 message bytes through the codec: the stream framing and
//! `decode` never panic; a message that decodes encodes to bytes that
//! decode to the same message; a refusal carries a code the spec defines.

#![no_main]

use libfuzzer_sys::fuzz_target;
use openflow::{decode, encode, frame_len, ErrorCode, Frame};

fuzz_target!(|data: &[u8]| {
    // The input as a stream: frame after frame, as a connection reads it.
    let mut rest = data;
    while let Frame::Complete(n) = frame_len(rest) {
        let (one, tail) = rest.split_at(n);
        rest = tail;
        match decode(one) {
            Ok((h, m)) => {
                let again = encode(h.xid, &m);
                let (h2, m2) = decode(&again).unwrap_or_else(|e| panic!("re-encoded {m:?} refused: {}", e.rejection));
                assert_eq!(m2, m);
                assert_eq!(h2.xid, h.xid);
            }
            Err(e) => {
                let (t, c) = e.rejection.code.type_code();
                assert_eq!(ErrorCode::from_type_code(t, c), Some(e.rejection.code));
            }
        }
    }
});
