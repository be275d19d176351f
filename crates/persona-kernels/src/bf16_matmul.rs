//! bf16 matrix products `y = x · Wᵀ` for many rows of `x` at once, on Intel AMX tiles or, where
//! a CPU has no AMX, on AVX-512 BF16 (`vdpbf16ps`).
//!
//! The weights are packed once, at load, into the tile layout `tdpbf16ps` reads (pairs of
//! consecutive k values side by side, "VNNI" order). That layout is also what `vdpbf16ps` reads:
//! one 64-byte row of a tile holds one k pair of 16 output columns, a whole zmm register. Each
//! call converts `x` to bf16 and accumulates in f32. On AMX it runs 32 × 32 output blocks
//! (four accumulator tiles) over the k blocks; tile instructions are written with `asm!` (AMX
//! intrinsics are not stable in Rust). On AVX-512 BF16 it runs register blocks of 6 rows ×
//! 64 columns.

#[cfg(target_arch = "x86_64")]
use std::arch::asm;

use crate::bf16::{from_bf16, to_bf16};
use crate::parallel;

/// Rows and k-values of one tile: 16 rows × 32 bf16 (64 bytes).
const TILE_ROWS: usize = 16;
const TILE_K: usize = 32;
const TILE_ELEMS: usize = TILE_ROWS * TILE_K;
const TILE_BYTES: usize = TILE_ELEMS * 2;
const PREFETCH_AHEAD: usize = 2;
/// Activation bytes per row chunk (half of a 2 MB L2, the rest for weights and outputs).
const L2_CHUNK_BYTES: usize = 512 << 10;

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch(p: *const u16) {
    // SAFETY: prefetching is a hint and never faults, even on an invalid address.
    unsafe { std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0) };
}

/// Which instructions run [`Bf16Matrix::matmul`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Kernel {
    Amx,
    Avx512Bf16,
}

impl Bf16Kernel {
    /// Every kernel this CPU has, fastest first (an AMX machine has AVX-512 BF16 too).
    pub fn available() -> Vec<Bf16Kernel> {
        let mut kernels = Vec::new();
        if crate::cpu::has_amx_bf16() {
            kernels.push(Bf16Kernel::Amx);
        }
        if crate::cpu::has_avx512_bf16() {
            kernels.push(Bf16Kernel::Avx512Bf16);
        }
        kernels
    }

    /// The fastest one this CPU has: AMX tiles, else AVX-512 BF16.
    pub fn detect() -> Option<Bf16Kernel> {
        Self::available().first().copied()
    }
}

/// A weight matrix `[n, k]` packed in bf16 tiles.
pub struct Bf16Matrix {
    n: usize,
    k: usize,
    /// Tiles of 16 output columns (`n_blocks`) × 32 k-values (`k_blocks`).
    n_blocks: usize,
    k_blocks: usize,
    /// `[n_block][k_block][k_pair 0..16][col 0..16][2]` as bf16 bits.
    tiles: Vec<u16>,
}

#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    /// Eight tiles of 16 rows × 64 bytes.
    fn full() -> Self {
        let mut c = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for i in 0..8 {
            c.colsb[i] = 64;
            c.rows[i] = TILE_ROWS as u8;
        }
        c
    }
}

impl Bf16Matrix {
    /// Packs a row-major f32 `[n, k]` matrix (rounded to bf16).
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(
            w.len(),
            n * k,
            "Bf16Matrix::pack: w has {} values, expected {n}×{k}",
            w.len()
        );
        let n_blocks = n.div_ceil(TILE_ROWS);
        let k_blocks = k.div_ceil(TILE_K);
        let mut tiles = vec![0u16; n_blocks * k_blocks * TILE_ELEMS];
        for nb in 0..n_blocks {
            for kb in 0..k_blocks {
                let tile = &mut tiles[(nb * k_blocks + kb) * TILE_ELEMS..][..TILE_ELEMS];
                for pair in 0..TILE_K / 2 {
                    for col in 0..TILE_ROWS {
                        let row = nb * TILE_ROWS + col;
                        for j in 0..2 {
                            let kk = kb * TILE_K + 2 * pair + j;
                            if row < n && kk < k {
                                tile[pair * 32 + col * 2 + j] = to_bf16(w[row * k + kk]);
                            }
                        }
                    }
                }
            }
        }
        Bf16Matrix {
            n,
            k,
            n_blocks,
            k_blocks,
            tiles,
        }
    }

    pub fn rows(&self) -> usize {
        self.n
    }

    pub fn cols(&self) -> usize {
        self.k
    }

    pub fn bytes(&self) -> usize {
        self.tiles.len() * 2
    }

    /// The packed weights back as a row-major f32 `[n, k]` matrix (the bf16 values).
    pub fn unpack(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.n * self.k];
        for nb in 0..self.n_blocks {
            for kb in 0..self.k_blocks {
                let tile = &self.tiles[(nb * self.k_blocks + kb) * TILE_ELEMS..][..TILE_ELEMS];
                for pair in 0..TILE_K / 2 {
                    for col in 0..TILE_ROWS {
                        for j in 0..2 {
                            let (row, kk) = (nb * TILE_ROWS + col, kb * TILE_K + 2 * pair + j);
                            if row < self.n && kk < self.k {
                                w[row * self.k + kk] = from_bf16(tile[pair * 32 + col * 2 + j]);
                            }
                        }
                    }
                }
            }
        }
        w
    }

    /// `y[m, n] = Σ_k x[m, k] · w[n, k]` for row-major `x` `[m, k]` and `y` `[m, n]`, on
    /// `kernel`, which must be one this CPU has (asserted).
    pub fn matmul(&self, kernel: Bf16Kernel, x: &[f32], m: usize, y: &mut [f32]) {
        assert_eq!(
            x.len(),
            m * self.k,
            "Bf16Matrix::matmul: x has {} values, expected {m}×{}",
            x.len(),
            self.k
        );
        assert_eq!(
            y.len(),
            m * self.n,
            "Bf16Matrix::matmul: y has {} values, expected {m}×{}",
            y.len(),
            self.n
        );
        if m == 0 {
            return;
        }
        match kernel {
            Bf16Kernel::Amx => assert!(
                crate::cpu::has_amx_bf16(),
                "Bf16Matrix::matmul needs AMX (check cpu::has_amx_bf16 first)"
            ),
            Bf16Kernel::Avx512Bf16 => {
                assert!(
                    crate::cpu::has_avx512_bf16(),
                    "the AVX-512 BF16 kernel needs a CPU with avx512bf16 (check cpu::has_avx512_bf16 first)"
                );
                return self.matmul_dpbf16(x, m, y);
            }
        }
        let m_blocks = m.div_ceil(TILE_ROWS);
        let k_pad = self.k_blocks * TILE_K;
        let n_pad = self.n_blocks * TILE_ROWS;
        // x in bf16, padded with zeros to whole tiles.
        let mut xa = Vec::with_capacity(m_blocks * TILE_ROWS * k_pad);
        for row in x.chunks(self.k) {
            xa.extend(row.iter().map(|&v| to_bf16(v)));
            xa.resize(xa.len() + k_pad - self.k, 0);
        }
        xa.resize(m_blocks * TILE_ROWS * k_pad, 0);
        // Tiles store whole 16 × 16 blocks: write straight into `y` when it has whole blocks,
        // else into a padded buffer copied out afterwards.
        let direct = m.is_multiple_of(TILE_ROWS) && self.n.is_multiple_of(TILE_ROWS);
        let mut padded = if direct {
            Vec::new()
        } else {
            vec![0f32; m_blocks * TILE_ROWS * n_pad]
        };
        let out: &mut [f32] = if direct { y } else { &mut padded };
        // Split the output columns in pairs of tile columns over the threads; each thread
        // keeps its weight panel hot while it walks down all rows.
        let n_pairs = self.n_blocks.div_ceil(2);
        let yp_addr = out.as_mut_ptr() as usize;
        let xa = &xa;
        parallel::for_each_thread(|t, threads| {
            let per = n_pairs.div_ceil(threads);
            let (p0, p1) = (t * per, ((t + 1) * per).min(n_pairs));
            if p0 >= p1 {
                return;
            }
            let job = Job {
                xa,
                k_pad,
                n_pad,
                m_blocks,
                y: yp_addr as *mut f32,
            };
            // SAFETY: AMX permission was granted (asserted above); every thread writes only the
            // output columns of its own tile-column pairs p0..p1, so the writes are disjoint.
            unsafe { self.run_columns(&job, p0, p1) };
        });
        if !direct {
            for (dst, src) in y.chunks_mut(self.n).zip(padded.chunks(n_pad)) {
                dst.copy_from_slice(&src[..self.n]);
            }
        }
    }

    /// Computes output tile-column pairs `p0..p1` for every row block.
    ///
    /// # Safety
    /// AMX must be enabled for the process; `job.y` must point to `m_blocks·16 × n_pad` floats
    /// that no other thread writes in these columns.
    #[cfg(target_arch = "x86_64")]
    unsafe fn run_columns(&self, job: &Job<'_>, p0: usize, p1: usize) {
        let cfg = TileConfig::full();
        asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack));
        let a_stride = job.k_pad * 2;
        let c_stride = job.n_pad * 4;
        let b_stride = 64usize;
        // Rows in chunks whose bf16 activations stay in L2 while every weight panel of this
        // thread passes over them (else they would stream from L3 once per panel).
        let chunk_blocks = (L2_CHUNK_BYTES / (TILE_ROWS * a_stride)).max(2) & !1;
        for m_lo in (0..job.m_blocks).step_by(chunk_blocks) {
            let m_hi = (m_lo + chunk_blocks).min(job.m_blocks);
            for p in p0..p1 {
                let nb0 = 2 * p;
                let two_n = nb0 + 1 < self.n_blocks;
                let b0 = self.tiles.as_ptr().add(nb0 * self.k_blocks * TILE_ELEMS);
                let b1 = if two_n {
                    b0.add(self.k_blocks * TILE_ELEMS)
                } else {
                    b0
                };
                let mut mb = m_lo;
                while mb < m_hi {
                    let two_m = mb + 1 < m_hi;
                    let a0 = job.xa.as_ptr().add(mb * TILE_ROWS * job.k_pad);
                    let a1 = if two_m {
                        a0.add(TILE_ROWS * job.k_pad)
                    } else {
                        a0
                    };
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nostack)
                    );
                    for kb in 0..self.k_blocks {
                        let (pa0, pa1) = (a0.add(kb * TILE_K), a1.add(kb * TILE_K));
                        let (pb0, pb1) = (b0.add(kb * TILE_ELEMS), b1.add(kb * TILE_ELEMS));
                        // Weights stream from memory once per call when few rows share them: ask
                        // for the tiles two steps ahead (the hardware prefetcher alone lags).
                        if kb + PREFETCH_AHEAD < self.k_blocks {
                            for line in 0..TILE_BYTES / 64 {
                                let ahead = PREFETCH_AHEAD * TILE_ELEMS + line * 32;
                                prefetch(pb0.add(ahead));
                                prefetch(pb1.add(ahead));
                            }
                        }
                        asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm5, [{a1} + {sa}*1]",
                            "tileloadd tmm6, [{b0} + {sb}*1]",
                            "tileloadd tmm7, [{b1} + {sb}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            a0 = in(reg) pa0, a1 = in(reg) pa1, b0 = in(reg) pb0, b1 = in(reg) pb1,
                            sa = in(reg) a_stride, sb = in(reg) b_stride,
                            options(nostack),
                        );
                    }
                    let c00 = job.y.add(mb * TILE_ROWS * job.n_pad + nb0 * TILE_ROWS);
                    asm!("tilestored [{c} + {s}*1], tmm0", c = in(reg) c00, s = in(reg) c_stride, options(nostack));
                    if two_n {
                        asm!("tilestored [{c} + {s}*1], tmm1", c = in(reg) c00.add(TILE_ROWS), s = in(reg) c_stride, options(nostack));
                    }
                    if two_m {
                        let c10 = c00.add(TILE_ROWS * job.n_pad);
                        asm!("tilestored [{c} + {s}*1], tmm2", c = in(reg) c10, s = in(reg) c_stride, options(nostack));
                        if two_n {
                            asm!("tilestored [{c} + {s}*1], tmm3", c = in(reg) c10.add(TILE_ROWS), s = in(reg) c_stride, options(nostack));
                        }
                    }
                    mb += if two_m { 2 } else { 1 };
                }
            }
        }
        asm!("tilerelease", options(nostack));
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run_columns(&self, _job: &Job<'_>, _p0: usize, _p1: usize) {
        unreachable!("AMX exists only on x86-64");
    }
}

/// Rows and 16-column tile blocks of one AVX-512 BF16 register block: 6 × 4 accumulators,
/// 4 weight registers and a broadcast fit the 32 zmm registers.
const DP_ROWS: usize = 6;
const DP_BLOCKS: usize = 4;

impl Bf16Matrix {
    /// `matmul` on AVX-512 BF16: threads take strips of 64 output columns, and walk all rows
    /// in blocks of 6 over the whole k for each strip (a strip's weights stay in L2).
    fn matmul_dpbf16(&self, x: &[f32], m: usize, y: &mut [f32]) {
        let pairs = self.k_blocks * TILE_K / 2;
        // x as bf16 pairs (low half: the even k), zero-padded to whole k blocks.
        let mut xa = vec![0u32; m * pairs];
        let xa_addr = xa.as_mut_ptr() as usize;
        parallel::for_each_chunk(m, 64, |rows| {
            for r in rows {
                let row = &x[r * self.k..(r + 1) * self.k];
                // SAFETY: row r of `xa` is written by this iteration only, and `xa` outlives
                // the loop.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut((xa_addr as *mut u32).add(r * pairs), pairs)
                };
                for (d, two) in dst.iter_mut().zip(row.chunks(2)) {
                    let lo = to_bf16(two[0]) as u32;
                    let hi = two.get(1).map_or(0, |&v| to_bf16(v)) as u32;
                    *d = lo | (hi << 16);
                }
            }
        });
        let strips = self.n_blocks.div_ceil(DP_BLOCKS);
        let y_addr = y.as_mut_ptr() as usize;
        let xa = &xa;
        parallel::for_each_chunk(strips, 2, |range| {
            for strip in range {
                let nb0 = strip * DP_BLOCKS;
                let blocks = DP_BLOCKS.min(self.n_blocks - nb0);
                let mut r0 = 0;
                while r0 < m {
                    let rows = DP_ROWS.min(m - r0);
                    let job = DpJob {
                        x: xa[r0 * pairs..].as_ptr(),
                        pairs,
                        w: self.tiles[nb0 * self.k_blocks * TILE_ELEMS..].as_ptr(),
                        w_stride: self.k_blocks * TILE_ELEMS,
                        k_blocks: self.k_blocks,
                        y: (y_addr as *mut f32).wrapping_add(r0 * self.n + nb0 * TILE_ROWS),
                        n: self.n,
                        cols: (self.n - nb0 * TILE_ROWS).min(blocks * TILE_ROWS),
                    };
                    // SAFETY: avx512bf16 was checked by the caller; `job` addresses rows
                    // r0..r0+rows of x and y and the strip's tiles, all in bounds, and strips
                    // write disjoint columns of y.
                    unsafe { dp_block_dispatch(rows, blocks, &job) };
                    r0 += rows;
                }
            }
        });
    }
}

/// One register block's operands: `rows` rows of x from `x` (row stride `pairs` u32), the
/// tiles of `blocks` 16-column blocks from `w` (block stride `w_stride` u16), outputs to `y`
/// (row stride `n`), of which only the first `cols` columns exist.
struct DpJob {
    x: *const u32,
    pairs: usize,
    w: *const u16,
    w_stride: usize,
    k_blocks: usize,
    y: *mut f32,
    n: usize,
    cols: usize,
}

/// Picks the register block for the ragged edges (fewer rows or column blocks).
///
/// # Safety
/// As [`dp_block`].
unsafe fn dp_block_dispatch(rows: usize, blocks: usize, job: &DpJob) {
    macro_rules! by_blocks {
        ($r:literal) => {
            match blocks {
                1 => dp_block::<$r, 1>(job),
                2 => dp_block::<$r, 2>(job),
                3 => dp_block::<$r, 3>(job),
                _ => dp_block::<$r, 4>(job),
            }
        };
    }
    match rows {
        1 => by_blocks!(1),
        2 => by_blocks!(2),
        3 => by_blocks!(3),
        4 => by_blocks!(4),
        5 => by_blocks!(5),
        _ => by_blocks!(6),
    }
}

/// `R` rows × `B` column blocks of y over the whole k.
///
/// # Safety
/// The CPU has avx512f and avx512bf16; `job`'s pointers cover `R` rows of x and y and `B`
/// blocks of tiles.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn dp_block<const R: usize, const B: usize>(job: &DpJob) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); B]; R];
    for kb in 0..job.k_blocks {
        for pair in 0..TILE_K / 2 {
            let mut w = [_mm512_setzero_si512(); B];
            for (b, wb) in w.iter_mut().enumerate() {
                let p = job.w.add(b * job.w_stride + kb * TILE_ELEMS + pair * 32);
                *wb = _mm512_loadu_si512(p as *const _);
            }
            let at = kb * TILE_K / 2 + pair;
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let xb = _mm512_set1_epi32(*job.x.add(r * job.pairs + at) as i32);
                for (a, wb) in acc_r.iter_mut().zip(&w) {
                    *a = _mm512_dpbf16_ps(*a, m512bh(xb), m512bh(*wb));
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (b, a) in acc_r.iter().enumerate() {
            let c0 = b * TILE_ROWS;
            if c0 >= job.cols {
                break;
            }
            let left = job.cols - c0;
            let p = job.y.add(r * job.n + c0);
            if left >= TILE_ROWS {
                _mm512_storeu_ps(p, *a);
            } else {
                _mm512_mask_storeu_ps(p, ((1u32 << left) - 1) as u16, *a);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn m512bh(v: std::arch::x86_64::__m512i) -> std::arch::x86_64::__m512bh {
    // SAFETY: both are 512 bits of plain data; bf16 pairs are the same bits seen as 32 bf16.
    unsafe { std::mem::transmute(v) }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn dp_block<const R: usize, const B: usize>(_job: &DpJob) {
    unreachable!("AVX-512 BF16 exists only on x86-64");
}

struct Job<'a> {
    xa: &'a [u16],
    k_pad: usize,
    n_pad: usize,
    m_blocks: usize,
    y: *mut f32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::lcg;

    /// Reference on the bf16-rounded operands, in f64.
    fn reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let r = |v: f32| from_bf16(to_bf16(v)) as f64;
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k)
                    .map(|t| r(x[i * k + t]) * r(w[j * k + t]))
                    .sum::<f64>() as f32;
            }
        }
        y
    }

    /// Every kernel this CPU has (AMX machines have AVX-512 BF16 too: both are tested there).
    pub(super) fn kernels_here() -> Vec<Bf16Kernel> {
        let k = Bf16Kernel::available();
        if k.is_empty() {
            eprintln!("SKIPPED: this CPU has neither AMX nor AVX-512 BF16");
        }
        k
    }

    #[test]
    fn matches_reference_on_ragged_shapes() {
        for kernel in kernels_here() {
            let mut seed = 7;
            for &(m, n, k) in &[
                (1, 16, 32),
                (17, 33, 40),
                (32, 32, 64),
                (70, 192, 576),
                (5, 1536, 576),
                (48, 576, 1536),
                (13, 70, 100),  // ragged rows, column blocks and k
                (600, 40, 576), // two row chunks
            ] {
                let x: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
                let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
                let a = Bf16Matrix::pack(&w, n, k);
                let mut y = vec![f32::NAN; m * n];
                a.matmul(kernel, &x, m, &mut y);
                let want = reference(&x, &w, m, n, k);
                for (i, (g, e)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                        "{kernel:?} {m}×{n}×{k} at {i}: {g} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn unpack_returns_the_bf16_weights() {
        let mut seed = 3;
        let (n, k) = (19, 45);
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
        let back = Bf16Matrix::pack(&w, n, k).unpack();
        for (a, b) in w.iter().zip(&back) {
            assert_eq!(from_bf16(to_bf16(*a)), *b);
        }
    }

    #[test]
    fn bf16_rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is exactly halfway between two bf16 values: rounds to the even one (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
    }
}

#[cfg(test)]
mod row_independence {
    use super::*;

    /// A row's result does not depend on how many rows are computed with it.
    #[test]
    fn rows_are_independent_of_the_batch() {
        for kernel in super::tests::kernels_here() {
            rows_independent_on(kernel);
        }
    }

    fn rows_independent_on(kernel: Bf16Kernel) {
        let (n, k) = (192, 576);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let a = Bf16Matrix::pack(&w, n, k);
        let x: Vec<f32> = (0..60 * k)
            .map(|i| ((i * 104729) % 991) as f32 / 991.0 - 0.5)
            .collect();
        let mut all = vec![0f32; 60 * n];
        a.matmul(kernel, &x, 60, &mut all);
        for m in [1, 5, 16, 20, 33] {
            let mut part = vec![0f32; m * n];
            a.matmul(kernel, &x[..m * k], m, &mut part);
            assert_eq!(&part[..], &all[..m * n], "{kernel:?}, m = {m}");
        }
    }
}
