//! Safe layer over DPDK: EAL, mempools and mbufs, bursts, ethdev ports.
//!
//! With `offload::rte_flow`, this is the only module with `unsafe` code. The
//! ownership rules are in the types: an [`Mbuf`] frees itself on drop, a
//! [`Burst`] owns the mbufs it holds, and [`TxQueue::tx_burst`] takes what the
//! device accepted and leaves the rest in the caller's burst.

pub mod devargs;
mod eal;
mod mbuf;
pub mod os;
mod port;

pub use eal::{Eal, EalBuilder};
pub use mbuf::{Burst, Mbuf, Mempool, MAX_BURST};
pub use port::{
    LinkStatus, Port, PortConfig, PortInfo, PortStats, RxQueue, SwitchInfo, TxQueue, RX_DESCRIPTORS, TX_DESCRIPTORS,
};

use std::ffi::CStr;

/// Errors of the DPDK layer. Each carries DPDK's own reason where it gave one.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("EAL is already initialised in this process (DPDK allows one initialisation per process)")]
    EalAlreadyInitialised,
    #[error("EAL initialisation failed: {reason}{}", if .log.is_empty() { String::new() } else { format!("\nDPDK said:\n{}", .log.trim_end()) })]
    EalInit { reason: String, log: String },
    #[error("invalid EAL argument {arg:?}: {why}")]
    EalArgument { arg: String, why: &'static str },
    #[error("mempool {name:?}: {reason}")]
    Mempool { name: String, reason: String },
    #[error("device {devargs:?}: {reason}")]
    Device { devargs: String, reason: String },
    #[error("no DPDK port named {0:?}")]
    NoSuchPort(String),
    #[error("port {port}: {op} failed: {reason}")]
    Port { port: String, op: &'static str, reason: String },
    #[error("port {port}: MTU {mtu} is out of the device's range {min}..={max}")]
    MtuOutOfRange { port: String, mtu: u32, min: u16, max: u16 },
    #[error("port {port}: {what}")]
    PortState { port: String, what: String },
}

/// DPDK's text for an errno value (positive or negative).
pub(crate) fn strerror(err: i32) -> String {
    // SAFETY: rte_strerror accepts any int and returns a pointer to a static or
    // thread-local NUL-terminated string; we copy it out immediately.
    let ptr = unsafe { dpdk_sys::rte_strerror(err.abs()) };
    if ptr.is_null() {
        return format!("error {}", err.abs());
    }
    // SAFETY: non-null pointer to a NUL-terminated string owned by DPDK/libc.
    let text = unsafe { CStr::from_ptr(ptr) };
    format!("{} (errno {})", text.to_string_lossy(), err.abs())
}

/// The calling thread's `rte_errno`.
pub(crate) fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local int through the exported wrapper.
    unsafe { dpdk_sys::rte_errno_get() }
}

/// Reads the TSC (cycle counter) DPDK uses for its timing.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: rte_rdtsc only executes the rdtsc instruction.
    unsafe { dpdk_sys::rte_rdtsc() }
}

/// TSC frequency as measured by EAL (0 before init).
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a value EAL computed at init; no preconditions.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}
