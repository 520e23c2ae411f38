//! rte_flow offload for the vswitch: the rule vocabulary the switch translates
//! its megaflows into, lowering to rte_flow structs, device calls, the offload
//! manager and a software e-switch model for tests and demos.
//!
//! Only the crate skeleton exists so far; the offload work builds on the
//! foundation (`dpdk-sys`) and the flow core.

/// The DPDK version this crate was built against.
pub fn dpdk_version() -> &'static str {
    dpdk_sys::DPDK_PKG_VERSION
}
