//! The vswitch: safe DPDK layer, packet formats and flow lookup (no DPDK),
//! packet actions.

pub mod actions;
pub mod config;
pub mod control;
pub mod datapath;
pub mod dpdk;
pub mod flow;
pub mod metrics;
pub mod ofrule;
pub mod packet;
pub mod traffic;
pub mod underlay;
