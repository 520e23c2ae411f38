//! Control-socket request bytes through `control::respond` (the socket's
//! size, text, JSON and request checks): the reply is always one line of a
//! JSON object with a boolean `ok`; a request that decodes encodes back to
//! an equal request. The switch's dispatch is replaced by a stand-in that
//! echoes the request.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::control::{respond, Request};

fuzz_target!(|data: &[u8]| {
    let mut seen = None;
    let reply = respond(data, |req| {
        seen = Some(req.clone());
        Ok(serde_json::to_value(req).expect("a request encodes"))
    });
    assert!(reply.ends_with('\n') && !reply[..reply.len() - 1].contains('\n'), "one line: {reply:?}");
    let v: serde_json::Value = serde_json::from_str(&reply).expect("the reply is JSON");
    assert!(v["ok"].is_boolean(), "{reply}");
    if let Some(req) = seen {
        let back: Request = serde_json::from_value(v["result"].clone()).expect("the echo decodes");
        assert_eq!(back, req);
    }
});
