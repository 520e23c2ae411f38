//! rte_flow offload for the vswitch: a DPDK-free rule vocabulary ([`rule`])
//! the switch translates its megaflows into, lowering to rte_flow structs and
//! reading them back ([`rte_flow`]), the devices rules go into behind one
//! trait ([`device`]): the real NIC through rte_flow and a model e-switch
//! ([`model`]) that executes the very structs the lowering built, for tests
//! and demos on machines whose NICs take no rules. Plus the testpmd text of
//! every rule ([`testpmd`]), a probe of which rule shapes a device takes
//! ([`probe`]), and the VXLAN source-port function both the model and the
//! software encapsulation use ([`entropy`]).
//!
//! `offload` never imports the switch: it speaks rte_flow and its own
//! vocabulary. `unsafe` code lives only in [`rte_flow`].

#![deny(unsafe_code)]

pub mod device;
pub mod entropy;
pub mod model;
pub mod packet;
pub mod probe;
#[allow(unsafe_code)]
pub mod rte_flow;
pub mod rule;
pub mod testpmd;

/// The DPDK version this crate was built against.
pub fn dpdk_version() -> &'static str {
    dpdk_sys::DPDK_PKG_VERSION
}
