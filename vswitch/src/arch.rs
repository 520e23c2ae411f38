//! CPU hints the flow core uses without holding `unsafe` itself: the flow
//! core modules forbid unsafe code and call these safe wrappers.

/// Hints the CPU to fetch the cache line holding `value` (no effect on
/// correctness; used to overlap cache misses across a burst).
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    prefetch_addr((value as *const T).cast());
}

/// [`prefetch`] for every 64-byte line `value` spans.
#[inline(always)]
pub fn prefetch_lines<T>(value: &T) {
    prefetch_span(value, std::mem::size_of::<T>());
}

/// [`prefetch`] for every 64-byte line of the first `len` bytes (at most
/// its size) of `value`, wherever it starts in its first line.
#[inline(always)]
pub fn prefetch_span<T>(value: &T, len: usize) {
    let base = (value as *const T).cast::<u8>();
    let len = len.min(std::mem::size_of::<T>());
    let mut off = 0;
    while off < len {
        // `wrapping_add`: the address is computed without a dereference and
        // stays inside `value`; it is only hinted, never read.
        prefetch_addr(base.wrapping_add(off));
        off += 64;
    }
    if !std::mem::align_of::<T>().is_multiple_of(64) && len > 0 && off - 64 < len - 1 {
        // Not line-aligned: the last byte may sit on one line more than the
        // steps reached.
        prefetch_addr(base.wrapping_add(len - 1));
    }
}

#[inline(always)]
fn prefetch_addr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch never faults and reads nothing architecturally, so
    // any address is allowed; callers pass addresses inside live objects
    // anyway. SSE is baseline on x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
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
