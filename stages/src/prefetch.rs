//! A cache hint for the lookups of large tables (fastText rows, n-gram indexes):
//! asking for the memory a few steps ahead lets the misses overlap.

/// Asks the CPU to bring `items` into its caches, a 64-byte line at a time
/// (a hint: no effect on results).
#[inline(always)]
pub fn prefetch<T>(items: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let (start, len) = (items.as_ptr().cast::<i8>(), std::mem::size_of_val(items));
        for offset in (0..len).step_by(64) {
            // SAFETY: the address is inside `items`; prefetching is a hint that never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = items;
}
