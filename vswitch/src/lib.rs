//! The vswitch: safe DPDK layer, packets, flows, datapath.

pub mod dpdk;
