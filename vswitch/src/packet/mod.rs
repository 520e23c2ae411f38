//! Packet formats: the flow key, the parser, checksums. Plain byte slices, no DPDK.

#![forbid(unsafe_code)]

pub mod checksum;
pub mod key;
pub mod parse;
pub mod proto;

pub use key::{Field, FlowKey, FlowMask, KEY_WORDS};
pub use parse::{parse, ParseError, Parsed, TunnelMeta};
