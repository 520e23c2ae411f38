//! The cycle counter DPDK times with.

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
