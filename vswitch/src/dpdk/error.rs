//! What the DPDK layer fails with, and DPDK's own reasons (errno texts).

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
