//! Parallel loops on candle's own worker pool.
//!
//! candle's CPU ops run on a spin-then-park barrier pool. A second pool (rayon) working between
//! candle ops competes with those spinning workers for the same cores and collapses throughput,
//! so every kernel here shares candle's pool instead.

use std::ops::Range;

/// Threads that work on a parallel loop (candle's workers plus the calling thread).
pub fn threads() -> usize {
    candle_core::utils::barrier_pool().n_workers() + 1
}

/// Calls `f(range)` over `0..n_items` split into chunks across the pool; inline when
/// `n_items` is below `min_parallel`.
pub fn for_each_chunk(n_items: usize, min_parallel: usize, f: impl Fn(Range<usize>) + Sync) {
    if n_items == 0 {
        return;
    }
    if n_items < min_parallel || threads() == 1 {
        f(0..n_items);
        return;
    }
    candle_core::utils::barrier_pool().execute_chunked(n_items, f);
}

/// Calls `f(part, parts)` once per pool thread, `part` in `0..parts`.
pub fn for_each_thread(f: impl Fn(usize, usize) + Sync) {
    let parts = threads();
    if parts == 1 {
        f(0, 1);
        return;
    }
    candle_core::utils::barrier_pool().execute(|tid| f(tid, parts));
}
