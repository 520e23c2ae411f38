//! Raw FFI bindings to the system DPDK (Debian's libdpdk-dev, 22.11), generated
//! at build time by bindgen. Static-inline functions are exported through
//! bindgen's `wrap_static_fns` under their own names (e.g. `rte_eth_rx_burst`).
//!
//! Everything here is raw; the safe layers are `vswitch::dpdk` and
//! `offload::rte_flow`.

#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    improper_ctypes,
    unnecessary_transmutes,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    unsafe_op_in_unsafe_fn
)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// The DPDK version pkg-config reported at build time.
pub const DPDK_PKG_VERSION: &str = env!("DPDK_PKG_VERSION");

/// `rte_pktmbuf_mtod(m, void *)`: a macro in C, so computed here.
///
/// # Safety
/// `m` must point to a valid, initialised `rte_mbuf`.
#[inline(always)]
pub unsafe fn rte_pktmbuf_mtod(m: *const rte_mbuf) -> *mut u8 {
    // SAFETY: the caller guarantees `m` is a valid mbuf; buf_addr + data_off
    // is the start of its data room by DPDK's definition.
    unsafe { ((*m).buf_addr as *mut u8).add(usize::from((*m).data_off)) }
}
