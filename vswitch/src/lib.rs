//! The vswitch: the flow core (packet formats, flow lookup, actions, rule
//! text; no DPDK, no `unsafe`), the datapath (a DPDK-free burst engine and
//! the poll-mode threads around it), the offload manager, the safe DPDK
//! layer, configuration, control and metrics.

#![deny(unsafe_code)]

pub mod accept;
pub mod actions;
#[allow(unsafe_code)]
pub mod arch;
pub mod config;
pub mod control;
pub mod datapath;
#[allow(unsafe_code)]
pub mod dpdk;
pub mod flow;
pub mod kernel;
pub mod metrics;
pub(crate) mod named_enum;
pub mod net;
pub mod notify;
pub mod ofchannel;
pub mod offload_manager;
pub mod ofmap;
pub mod ofrule;
pub mod packet;
pub mod ratelimit;
pub mod switch;
pub mod traffic;
pub mod underlay;
