//! CPU hints the flow core uses without holding `unsafe` itself: the flow
//! core modules forbid unsafe code and call these safe wrappers.

/// Hints the CPU to fetch the cache line holding `value` (no effect on
/// correctness; used to overlap cache misses across a burst).
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch never faults and reads nothing architecturally; the
    // pointer comes from a live reference anyway. SSE is baseline on x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((value as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// The CPU's cycle counter (the TSC on x86_64; nanoseconds elsewhere), for
/// cycle accounting in the DPDK-free burst engine.
#[inline(always)]
pub fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc reads a counter; it has no memory effects and is
        // available on every x86_64 CPU.
        unsafe { std::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
    }
}
