//! The cycle counter DPDK times with.

/// Reads the TSC (cycle counter) DPDK uses for its timing. On x86_64 the
/// instruction itself, inline: bindgen's wrapper of `rte_rdtsc` is an
/// out-of-line call, and the PMD reads the counter twice an iteration (1.7 %
/// of its samples at fwd 1k flows).
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        crate::arch::cycles()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: rte_rdtsc only reads the cycle counter.
        unsafe { dpdk_sys::rte_rdtsc() }
    }
}

/// TSC frequency as measured by EAL (0 before init).
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a value EAL computed at init; no preconditions.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}
