//! Hand-written CPU kernels for the two shapes of work an LLM engine does: many-token matrix
//! products (prompts, teacher-forced passes, batched rollouts) on Intel AMX tiles, and one-token
//! matrix-vector products (decode) on int8 weights with AVX-512 VNNI. Each kernel has a portable
//! fallback; callers ask [`cpu`] what this machine can do.

pub mod attention;
mod bf16;
pub mod bf16_matmul;
pub mod cpu;
pub mod gemv_i8;
pub mod math;
pub mod parallel;

/// Keeps freed large buffers in the process instead of returning them to the kernel.
///
/// Every forward pass allocates activation buffers of a few MB; glibc serves those with fresh
/// `mmap`s by default, so each call pays page faults and zeroing for memory it just released.
/// Call once at start-up.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: plain tuning calls on glibc's allocator, made before heavy allocation starts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

/// Never returns freed heap memory to the kernel (after [`keep_freed_memory`]'s settings): for
/// loops that free and reallocate the same gigabytes every step, such as training, where each
/// step would otherwise fault them in and zero them again.
pub fn keep_all_freed_memory() {
    keep_freed_memory();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: a plain tuning call on glibc's allocator; −1 disables trimming.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        }
    }
}

#[cfg(test)]
mod test_rng {
    /// A tiny LCG: reproducible test inputs in [−0.5, 0.5).
    pub fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }
}
