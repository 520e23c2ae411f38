//! The vswitch: safe DPDK layer, packet formats and flow lookup (no DPDK),
//! packet actions.

pub mod actions;
pub mod dpdk;
pub mod flow;
pub mod packet;
