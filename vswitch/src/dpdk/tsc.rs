//! The cycle counter DPDK times with.

/// Reads the TSC (cycle counter) DPDK uses for its timing. On x86_64 the
/// instruction itself, inline, not through bindgen's out-of-line wrapper of
/// `rte_rdtsc`. The PMD reads it twice an iteration; the wrapper had 1.7 %
/// of its samples at fwd 1k flows, most of them the instruction's own
/// latency on a VM, which stays (1.9 % on the two inline reads).
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
