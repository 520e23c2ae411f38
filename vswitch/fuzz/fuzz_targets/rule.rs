//! Rule text (add-rule, config `rules`) through the parser the daemon uses:
//! never a panic, and a parsed rule formats to text that parses back to the
//! same rule (the round trip dump-rules and reload depend on).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::ofrule::{format_rule, parse_rule};

const PORTS: [&str; 4] = ["vf0", "vf1", "uplink0", "vxlan0"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // As the switch resolves: a configured name, or a port number in range.
    let resolve = |n: &str| {
        PORTS.iter().position(|p| *p == n).map(|i| i as u32).or_else(|| n.parse::<u32>().ok().filter(|&i| i < 4))
    };
    let name = |p: u32| PORTS.get(p as usize).map_or_else(|| p.to_string(), |n| (*n).to_owned());
    let Ok(rule) = parse_rule(text, &resolve) else { return };
    let again = format_rule(&rule, &name);
    let back =
        parse_rule(&again, &resolve).unwrap_or_else(|e| panic!("{text:?} formats as {again:?}, which fails: {e}"));
    assert_eq!(back, rule, "{text:?} formats as {again:?}, which parses differently");
});
