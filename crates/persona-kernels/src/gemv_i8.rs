//! int8 weight × int8 activation matrix-vector products for decode steps.
//!
//! A decode step multiplies every weight matrix by one (or a few) activation vectors, so it is
//! bound by how fast the weights stream from memory. [`I8Matrix`] keeps the weights as int8 with
//! one f32 scale per 64-element block of each row (≈ 1.06 bytes per weight, a quarter of f32).
//!
//! Each call quantizes the activations the same way (per 64-block absmax, once per call), so
//! every block dot product is an exact int32: on AVX-512 VNNI one `vpdpbusd` per 64 bytes of
//! weights and vector. `vpdpbusd` multiplies *unsigned* by *signed* bytes; the kernel feeds it
//! `w + 128` (the weight's sign bit flipped, 1..=255) as the unsigned operand and `x` as the
//! signed one, and starts each accumulator at `-128 · Σx` (precomputed per activation block,
//! lane by lane), so the int32 result is exactly `Σ w·x`. (The textbook alternative, `|w|`
//! times `x` negated where `w < 0`, costs a masked negation per row *and* vector; this offset
//! costs one xor per row, which matters when several vectors share the weights.) The block
//! sums are scaled by `w_scale · x_scale` and accumulated in f32. The portable scalar path
//! computes the same int32 block sums (directly, as `Σ w·x`) and the same scale products; only
//! the f32 summation order differs.
//!
//! The SIMD kernel takes 4 consecutive rows at a time (each loaded activation block serves 4
//! rows, and 4 vectors per pass over them) and prefetches the weights 8 KiB ahead of use,
//! which measured ~20% faster from DRAM than relying on the hardware prefetchers alone.
//!
//! Rows are split over candle's worker pool (see [`crate::parallel`]) when the work is big
//! enough to pay for the fork-join;
//! [`gemv_many`] runs several matrices that read the same input (q/k/v, gate/up) in one
//! parallel region with one activation quantization.

use std::cell::Cell;
use std::ops::Range;

const BLOCK: usize = 64;

/// One 64-element block of int8 values, cache-line aligned so that every vector load reads
/// exactly one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([i8; BLOCK]);

impl Block {
    const ZERO: Block = Block([0; BLOCK]);
}

/// `-128 ×` the sums of each 4 consecutive quantized activations of a block: the starting
/// value of the 16 `vpdpbusd` lanes that cancels the `+128` offset of the weights.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Corr([i32; BLOCK / 4]);

/// Rows handed to the SIMD kernel together, sharing each loaded activation block.
const ROW_GROUP: usize = 4;
/// Below this many weights (summed over the matrices of a call) the call runs on the calling
/// thread: the fork-join would cost more than it saves.
const PAR_MIN_WEIGHTS: usize = 64 * 1024;
/// Parallel calls cut the rows into about this many chunks per thread (work stealing evens out
/// threads that are slowed down), but no chunk smaller than `MIN_CHUNK_BYTES`.
const CHUNKS_PER_THREAD: usize = 4;
const MIN_CHUNK_BYTES: usize = 32 * 1024;
/// Matrices per parallel region in [`gemv_many`] (more are done in further regions).
const MAX_MATS: usize = 8;

/// Row-major int8 weights with one f32 scale per 64-element block of each row.
///
/// Why this shape: a 64-block is one cache line and one AVX-512 register, so each block's
/// integer dot product is one instruction and its scale applies once; row-major blocks keep a
/// row contiguous, so the kernel streams groups of consecutive rows as one sequential read (and
/// `dequantize` / conversions stay trivial). `gemv` takes `n_vec` vectors because a few
/// sequences decoding together share one pass over the weights, which is the expensive part.
pub struct I8Matrix {
    rows: usize,
    cols: usize,
    /// `[rows][cols / 64]` blocks.
    quants: Vec<Block>,
    /// `[rows][cols / 64]`: the weight of a quant is `q · scale`.
    scales: Vec<f32>,
}

impl I8Matrix {
    pub const BLOCK: usize = BLOCK;

    /// Symmetric absmax quantization of an f32 `[rows, cols]` row-major matrix: each 64-block
    /// gets `scale = absmax / 127` and `q = round(w · 127 / absmax)` in -127..=127. `None`
    /// unless `cols % 64 == 0`.
    ///
    /// On Linux, quant buffers of 4 MiB or more are advised for transparent huge pages (fewer
    /// TLB misses while streaming; ~15% more DRAM bandwidth measured on the LM head).
    ///
    /// Panics if `w.len() != rows * cols`.
    pub fn quantize(w: &[f32], rows: usize, cols: usize) -> Option<Self> {
        assert_eq!(
            w.len(),
            rows * cols,
            "I8Matrix::quantize: w has {} values, expected {rows}×{cols}",
            w.len()
        );
        if !cols.is_multiple_of(BLOCK) {
            return None;
        }
        let n_blocks = rows * cols / BLOCK;
        let mut quants: Vec<Block> = Vec::with_capacity(n_blocks);
        advise_huge_pages(&quants);
        let mut scales = Vec::with_capacity(n_blocks);
        for src in w.chunks_exact(BLOCK) {
            let mut q = Block::ZERO;
            scales.push(quantize_block(src, &mut q));
            quants.push(q);
        }
        Some(I8Matrix {
            rows,
            cols,
            quants,
            scales,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of quants and scales, i.e. what one product streams from memory.
    pub fn bytes(&self) -> usize {
        self.quants.len() * BLOCK + self.scales.len() * std::mem::size_of::<f32>()
    }

    /// `y[m, r] = Σ_k x[m, k] · w[r, k]` for `m in 0..n_vec`, with `x` row-major `[n_vec, cols]`
    /// and `y` row-major `[n_vec, rows]`.
    ///
    /// `x` is quantized per 64-block to int8 (absmax / 127, round to nearest) once per call; the
    /// block dot products are exact int32 sums, scaled by `w_scale · x_scale` and accumulated in
    /// f32. One pass over the weights serves all `n_vec` vectors (meant to be small: 1..=8); the
    /// rows are split over the worker pool when the matrix has at least 64K weights.
    ///
    /// Panics if `x.len() != n_vec * cols` or `y.len() != n_vec * rows`.
    pub fn gemv(&self, x: &[f32], n_vec: usize, y: &mut [f32]) {
        gemv_many(&[self], x, n_vec, &mut [y]);
    }

    /// The dequantized matrix, row-major `[rows, cols]` (tests, conversions).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut w = Vec::with_capacity(self.rows * self.cols);
        for (q, &s) in self.quants.iter().zip(&self.scales) {
            w.extend(q.0.iter().map(|&v| v as f32 * s));
        }
        w
    }
}

/// `ys[i] = mats[i] · x` for every matrix, like [`I8Matrix::gemv`] on each, but quantizing `x`
/// once and splitting the rows of all matrices over the worker pool in one parallel region
/// (q/k/v or gate/up projections of the same hidden state).
///
/// Panics unless all matrices have the same `cols`, `ys.len() == mats.len()`,
/// `x.len() == n_vec * cols` and `ys[i].len() == n_vec * mats[i].rows()`.
pub fn gemv_many(mats: &[&I8Matrix], x: &[f32], n_vec: usize, ys: &mut [&mut [f32]]) {
    gemv_many_with(
        mats,
        x,
        n_vec,
        ys,
        crate::cpu::has_avx512_vnni(),
        crate::parallel::threads(),
    );
}

/// `threads` sizes the chunk plan (tests plan for more threads than the pool has; the chunks
/// then run one after another, which must give the same result).
fn gemv_many_with(
    mats: &[&I8Matrix],
    x: &[f32],
    n_vec: usize,
    ys: &mut [&mut [f32]],
    simd: bool,
    threads: usize,
) {
    assert_eq!(
        mats.len(),
        ys.len(),
        "gemv_many: {} matrices but {} outputs",
        mats.len(),
        ys.len()
    );
    let Some(first) = mats.first() else {
        return;
    };
    let cols = first.cols;
    for (i, (m, y)) in mats.iter().zip(ys.iter()).enumerate() {
        assert_eq!(
            m.cols, cols,
            "gemv_many: matrix {i} has {} columns, matrix 0 has {cols}",
            m.cols
        );
        assert_eq!(
            y.len(),
            n_vec * m.rows,
            "gemv: y[{i}] has {} values, expected {n_vec}×{} (n_vec × rows)",
            y.len(),
            m.rows
        );
    }
    assert_eq!(
        x.len(),
        n_vec * cols,
        "gemv: x has {} values, expected {n_vec}×{cols} (n_vec × cols)",
        x.len()
    );
    if n_vec == 0 {
        return;
    }
    with_quantized_acts(x, n_vec, cols, |acts| {
        for (mg, yg) in mats.chunks(MAX_MATS).zip(ys.chunks_mut(MAX_MATS)) {
            run_region(mg, yg, acts, n_vec, simd, threads);
        }
    });
}

/// Activations quantized per 64-block, each `[n_vec][cols / 64]`.
#[derive(Clone, Copy)]
struct Acts<'a> {
    q: &'a [Block],
    s: &'a [f32],
    c: &'a [Corr],
    /// Blocks per vector.
    nb: usize,
}

#[derive(Default)]
struct ActBufs {
    q: Vec<Block>,
    s: Vec<f32>,
    c: Vec<Corr>,
}

thread_local! {
    /// The quantized-activation buffers, reused across calls. Taken out for the duration of a
    /// call (and put back after), so a nested call on the same thread simply allocates its own.
    static ACT_BUFS: Cell<ActBufs> = const {
        Cell::new(ActBufs {
            q: Vec::new(),
            s: Vec::new(),
            c: Vec::new(),
        })
    };
}

fn with_quantized_acts<R>(
    x: &[f32],
    n_vec: usize,
    cols: usize,
    f: impl FnOnce(Acts<'_>) -> R,
) -> R {
    let nb = cols / BLOCK;
    let mut bufs = ACT_BUFS.with(|c| c.take());
    bufs.q.clear();
    bufs.q.resize(n_vec * nb, Block::ZERO);
    bufs.s.clear();
    bufs.s.resize(n_vec * nb, 0.0);
    bufs.c.clear();
    bufs.c.resize(n_vec * nb, Corr([0; BLOCK / 4]));
    for (((q, s), c), src) in bufs
        .q
        .iter_mut()
        .zip(&mut bufs.s)
        .zip(&mut bufs.c)
        .zip(x.chunks_exact(BLOCK))
    {
        *s = quantize_block(src, q);
        for (c, quad) in c.0.iter_mut().zip(q.0.chunks_exact(4)) {
            *c = -128 * quad.iter().map(|&v| v as i32).sum::<i32>();
        }
    }
    let r = f(Acts {
        q: &bufs.q,
        s: &bufs.s,
        c: &bufs.c,
        nb,
    });
    ACT_BUFS.with(|c| c.set(bufs));
    r
}

/// Asks Linux to back the (still untouched) allocation of `v` with transparent huge pages.
fn advise_huge_pages<T>(v: &Vec<T>) {
    #[cfg(not(target_os = "linux"))]
    let _ = v;
    #[cfg(target_os = "linux")]
    {
        let bytes = v.capacity() * std::mem::size_of::<T>();
        if bytes >= 4 << 20 {
            let page = 4096usize;
            let start = (v.as_ptr() as usize).next_multiple_of(page);
            let end = (v.as_ptr() as usize + bytes) & !(page - 1);
            // SAFETY: advice on whole pages inside our own allocation; it changes no contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
}

/// Absmax int8 quantization of one 64-block; returns the scale (0 for an all-zero block).
fn quantize_block(src: &[f32], dst: &mut Block) -> f32 {
    let amax = src.iter().fold(0f32, |a, &v| a.max(v.abs()));
    if amax == 0.0 {
        *dst = Block::ZERO;
        return 0.0;
    }
    let inv = 127.0 / amax;
    for (q, &v) in dst.0.iter_mut().zip(src) {
        *q = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
    amax / 127.0
}

/// Where one matrix's results go: `y[m * rows + r]`.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    rows: usize,
}

// SAFETY: `Out` is a pointer into a `&mut [f32]` borrowed for the whole parallel region; the
// threads write disjoint rows through it (see `run_region`).
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

impl Out {
    /// Vectors `m0..` only.
    #[inline(always)]
    fn skip(self, m0: usize) -> Self {
        Out {
            ptr: self.ptr.wrapping_add(m0 * self.rows),
            rows: self.rows,
        }
    }

    /// # Safety
    /// `m` must be below the number of vectors `ptr` was made for, `r < rows`, and no other
    /// thread may access that element concurrently.
    #[inline(always)]
    unsafe fn write(self, m: usize, r: usize, v: f32) {
        // SAFETY: in bounds of the output slice per the caller's contract.
        unsafe { *self.ptr.add(m * self.rows + r) = v };
    }
}

/// Runs the matrices of one `gemv_many` call (at most `MAX_MATS`) in one parallel region.
fn run_region(
    mats: &[&I8Matrix],
    ys: &mut [&mut [f32]],
    acts: Acts<'_>,
    n_vec: usize,
    simd: bool,
    threads: usize,
) {
    let mut outs = [Out {
        ptr: std::ptr::null_mut(),
        rows: 0,
    }; MAX_MATS];
    for ((o, y), m) in outs.iter_mut().zip(ys.iter_mut()).zip(mats) {
        *o = Out {
            ptr: y.as_mut_ptr(),
            rows: m.rows,
        };
    }
    let weights: usize = mats.iter().map(|m| m.rows * m.cols).sum();
    if threads <= 1 || weights < PAR_MIN_WEIGHTS {
        for (m, &out) in mats.iter().zip(&outs) {
            // SAFETY: `out` points to `ys[i]`, of length `n_vec * rows` (asserted by the caller),
            // borrowed mutably here; only this thread writes it.
            unsafe { run_rows(m, acts, n_vec, 0..m.rows, out, simd) };
        }
        return;
    }
    let bytes: usize = mats.iter().map(|m| m.bytes()).sum();
    let target = (bytes / (threads * CHUNKS_PER_THREAD)).max(MIN_CHUNK_BYTES);
    let mut chunk_rows = [0usize; MAX_MATS];
    let mut n_chunks = [0usize; MAX_MATS];
    for (i, m) in mats.iter().enumerate() {
        let row_bytes = (m.bytes() / m.rows.max(1)).max(1);
        chunk_rows[i] = (target / row_bytes).max(1).next_multiple_of(ROW_GROUP);
        n_chunks[i] = m.rows.div_ceil(chunk_rows[i]);
    }
    let total: usize = n_chunks.iter().sum();
    crate::parallel::for_each_chunk(total, 2, |chunks| {
        chunks.for_each(|mut c| {
            let mut i = 0;
            while c >= n_chunks[i] {
                c -= n_chunks[i];
                i += 1;
            }
            let m = mats[i];
            let r0 = c * chunk_rows[i];
            let r1 = (r0 + chunk_rows[i]).min(m.rows);
            // SAFETY: `outs[i]` points to `ys[i]` (`n_vec * rows` values, borrowed mutably for this
            // whole region); chunks of one matrix cover disjoint row ranges, so no element is
            // written by two threads.
            unsafe { run_rows(m, acts, n_vec, r0..r1, outs[i], simd) };
        })
    });
}

/// Computes rows `rows` of `mat · x` for all `n_vec` vectors.
///
/// # Safety
/// `out` must be valid for writing `y[m * out.rows + r]` for `m < n_vec`, `r in rows`, with no
/// concurrent access to those elements; `rows.end <= mat.rows`; `acts` holds `n_vec` vectors of
/// `mat.cols / 64` blocks; `simd` only if AVX-512 F/BW/VNNI are available.
unsafe fn run_rows(
    mat: &I8Matrix,
    acts: Acts<'_>,
    n_vec: usize,
    rows: Range<usize>,
    out: Out,
    simd: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: forwarded contract; the caller checked the CPU features.
        unsafe { vnni::rows(mat, acts, n_vec, rows, out) };
        return;
    }
    let _ = simd;
    // SAFETY: forwarded contract.
    unsafe { rows_scalar(mat, acts, n_vec, rows, out) };
}

/// The portable path: the same exact int32 block sums and the same f32 scale products as the
/// SIMD kernel, summed in a different order.
///
/// # Safety
/// As [`run_rows`].
unsafe fn rows_scalar(mat: &I8Matrix, acts: Acts<'_>, n_vec: usize, rows: Range<usize>, out: Out) {
    let nb = acts.nb;
    for r in rows {
        let wq = &mat.quants[r * nb..(r + 1) * nb];
        let ws = &mat.scales[r * nb..(r + 1) * nb];
        for m in 0..n_vec {
            let xq = &acts.q[m * nb..(m + 1) * nb];
            let xs = &acts.s[m * nb..(m + 1) * nb];
            let mut acc = 0f32;
            for b in 0..nb {
                let dot: i32 = wq[b]
                    .0
                    .iter()
                    .zip(&xq[b].0)
                    .map(|(&w, &x)| w as i32 * x as i32)
                    .sum();
                acc += dot as f32 * (ws[b] * xs[b]);
            }
            // SAFETY: `m < n_vec`, `r` in `rows`: in bounds and exclusive per the contract.
            unsafe { out.write(m, r, acc) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{Acts, Block, Corr, I8Matrix, Out, BLOCK, ROW_GROUP};
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// How far ahead of the rows being computed the weights are prefetched, in bytes.
    const PREFETCH_AHEAD: usize = 8192;
    /// Blocks whose scale products are computed at once (one f32 vector).
    const SCALE_TILE: usize = 16;

    /// Scale products of a group: `[row][vector][block of the tile]`.
    #[repr(C, align(64))]
    struct Scales([f32; ROW_GROUP * 4 * SCALE_TILE]);

    /// The pointers one group of rows × vectors works on.
    #[derive(Clone, Copy)]
    struct Ptrs {
        /// The first row's blocks and scales.
        wq: *const Block,
        ws: *const f32,
        /// The first vector's blocks, scales and corrections.
        xq: *const Block,
        xs: *const f32,
        xc: *const Corr,
        nb: usize,
    }

    /// AVX-512 VNNI rows: groups of 4 rows, each group times the vectors in passes of up to
    /// 4 (the weights of the group stay in L1 between passes), then single rows.
    ///
    /// # Safety
    /// As [`super::run_rows`]; AVX-512 F/BW/VNNI must be available.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn rows(
        mat: &I8Matrix,
        acts: Acts<'_>,
        n_vec: usize,
        rows: Range<usize>,
        out: Out,
    ) {
        let nb = acts.nb;
        assert!(
            rows.end <= mat.rows
                && [acts.q.len(), acts.s.len(), acts.c.len()]
                    .iter()
                    .all(|&l| l >= n_vec * nb),
            "gemv_i8: rows or activations out of range (internal error)"
        );
        let mut cs = Scales([0.0; ROW_GROUP * 4 * SCALE_TILE]);
        let mut r = rows.start;
        while r < rows.end {
            let group = if r + ROW_GROUP <= rows.end {
                ROW_GROUP
            } else {
                1
            };
            let mut m0 = 0;
            while m0 < n_vec {
                let p = Ptrs {
                    // SAFETY: row r exists (asserted above), so its blocks start in bounds.
                    wq: unsafe { mat.quants.as_ptr().add(r * nb) },
                    // SAFETY: as above, for its scales.
                    ws: unsafe { mat.scales.as_ptr().add(r * nb) },
                    xq: acts.q[m0 * nb..].as_ptr(),
                    xs: acts.s[m0 * nb..].as_ptr(),
                    xc: acts.c[m0 * nb..].as_ptr(),
                    nb,
                };
                let (o, pf) = (out.skip(m0), m0 == 0);
                // SAFETY: `p` covers `group` rows and `n` vectors (checked above); `out` is valid
                // and exclusive for these rows and vectors per the contract.
                unsafe {
                    match (group, n_vec - m0) {
                        (ROW_GROUP, 1) => group_rows::<ROW_GROUP, 1>(p, &mut cs, o, r, pf),
                        (ROW_GROUP, 2) => group_rows::<ROW_GROUP, 2>(p, &mut cs, o, r, pf),
                        (ROW_GROUP, 3) => group_rows::<ROW_GROUP, 3>(p, &mut cs, o, r, pf),
                        (ROW_GROUP, _) => group_rows::<ROW_GROUP, 4>(p, &mut cs, o, r, pf),
                        (_, 1) => group_rows::<1, 1>(p, &mut cs, o, r, false),
                        (_, 2) => group_rows::<1, 2>(p, &mut cs, o, r, false),
                        (_, 3) => group_rows::<1, 3>(p, &mut cs, o, r, false),
                        (_, _) => group_rows::<1, 4>(p, &mut cs, o, r, false),
                    }
                }
                m0 += 4;
            }
            r += group;
        }
    }

    /// Rows `r..r+R` times vectors `0..N` of `p`; prefetches the weights `PREFETCH_AHEAD` bytes
    /// ahead if `prefetch`.
    ///
    /// # Safety
    /// `p.wq`/`p.ws` valid for `R·nb` blocks/scales, `p.xq`/`p.xs`/`p.xc` for `N·nb`; `out`
    /// valid and exclusive for rows `r..r+R` of vectors `0..N`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn group_rows<const R: usize, const N: usize>(
        p: Ptrs,
        cs: &mut Scales,
        out: Out,
        r: usize,
        prefetch: bool,
    ) {
        let nb = p.nb;
        let flip = _mm512_set1_epi8(i8::MIN);
        let mut acc = [[_mm512_setzero_ps(); N]; R];
        let pf = p.wq.cast::<i8>().wrapping_add(PREFETCH_AHEAD);
        let mut b0 = 0;
        while b0 < nb {
            let len = (nb - b0).min(SCALE_TILE);
            let mask: __mmask16 = (((1u32 << len) - 1) & 0xffff) as u16;
            // w_scale · x_scale for these blocks, one vector per (row, vector).
            for i in 0..R {
                // SAFETY: the masked lanes are blocks b0..b0+len < nb of row i.
                let wsv = unsafe { _mm512_maskz_loadu_ps(mask, p.ws.add(i * nb + b0)) };
                for m in 0..N {
                    // SAFETY: as above for vector m; `cs` has room for R·N ≤ 16 vectors.
                    unsafe {
                        let xsv = _mm512_maskz_loadu_ps(mask, p.xs.add(m * nb + b0));
                        _mm512_store_ps(
                            cs.0.as_mut_ptr().add((i * N + m) * SCALE_TILE),
                            _mm512_mul_ps(wsv, xsv),
                        );
                    }
                }
            }
            for bb in 0..len {
                let b = b0 + bb;
                if prefetch {
                    for i in 0..R {
                        // A hint only: never faults, even past the end of the matrix.
                        _mm_prefetch::<_MM_HINT_T0>(pf.wrapping_add((i * nb + b) * BLOCK));
                    }
                }
                let mut xv = [_mm512_setzero_si512(); N];
                for (m, xv) in xv.iter_mut().enumerate() {
                    // SAFETY: block m·nb + b < N·nb of the 64-byte aligned activation blocks.
                    *xv = unsafe { _mm512_load_si512(p.xq.add(m * nb + b).cast()) };
                }
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    // SAFETY: block i·nb + b < R·nb of the 64-byte aligned weight blocks.
                    let wv = unsafe { _mm512_load_si512(p.wq.add(i * nb + b).cast()) };
                    // w + 128 as unsigned bytes (1..=255).
                    let wu = _mm512_xor_si512(wv, flip);
                    for m in 0..N {
                        // SAFETY: correction block m·nb + b < N·nb (64-byte aligned); the scale
                        // product (i, m, bb) was stored above.
                        let (c, s) = unsafe {
                            (
                                _mm512_load_si512(p.xc.add(m * nb + b).cast()),
                                *cs.0.get_unchecked((i * N + m) * SCALE_TILE + bb),
                            )
                        };
                        // -128·Σx + Σ (w + 128)·x = Σ w·x, per lane of 4 products.
                        let dot = _mm512_dpbusd_epi32(c, wu, xv[m]);
                        acc_i[m] =
                            _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(s), acc_i[m]);
                    }
                }
            }
            b0 += SCALE_TILE;
        }
        for (i, acc_i) in acc.iter().enumerate() {
            for (m, a) in acc_i.iter().enumerate() {
                // SAFETY: row r+i < r+R and vector m < N, exclusive per the contract.
                unsafe { out.write(m, r + i, _mm512_reduce_add_ps(*a)) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::lcg;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        // Vary the magnitude between blocks so that the per-block scales matter.
        (0..n)
            .map(|i| lcg(&mut s) * (1.0 + ((i / BLOCK) % 7) as f32))
            .collect()
    }

    /// The activations as the kernel sees them: quantized and dequantized.
    fn dequantized_acts(x: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len());
        for src in x.chunks_exact(BLOCK) {
            let mut q = Block::ZERO;
            let s = quantize_block(src, &mut q);
            out.extend(q.0.iter().map(|&v| v as f32 * s));
        }
        out
    }

    /// f64 reference on the dequantized operands; also returns Σ|w·x| per output (the scale
    /// of the rounding error).
    fn reference(w: &I8Matrix, x: &[f32], n_vec: usize) -> (Vec<f64>, Vec<f64>) {
        let wd = w.dequantize();
        let xd = dequantized_acts(x);
        let (rows, cols) = (w.rows(), w.cols());
        let mut y = vec![0f64; n_vec * rows];
        let mut mag = vec![0f64; n_vec * rows];
        for m in 0..n_vec {
            for r in 0..rows {
                let (mut s, mut a) = (0f64, 0f64);
                for k in 0..cols {
                    let p = wd[r * cols + k] as f64 * xd[m * cols + k] as f64;
                    s += p;
                    a += p.abs();
                }
                y[m * rows + r] = s;
                mag[m * rows + r] = a;
            }
        }
        (y, mag)
    }

    fn check_close(got: &[f32], want: &[f64], mag: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len());
        for (i, ((&g, &w), &a)) in got.iter().zip(want).zip(mag).enumerate() {
            let err = (g as f64 - w).abs();
            assert!(
                err <= tol * a + 1e-30,
                "{what}: element {i}: got {g}, want {w} (error {err:e}, Σ|w·x| {a:e})"
            );
        }
    }

    const SHAPES: &[(usize, usize)] = &[
        (576, 576),
        (192, 576),
        (1536, 576),
        (576, 1536),
        (49152, 576),
        (7, 64),
        (1, 128),
        (13, 192),
    ];

    #[test]
    fn quantize_rejects_ragged_columns() {
        assert!(I8Matrix::quantize(&[0.0; 2 * 65], 2, 65).is_none());
        assert!(I8Matrix::quantize(&[0.0; 96], 1, 96).is_none());
        assert!(I8Matrix::quantize(&[0.0; 128], 2, 64).is_some());
    }

    #[test]
    #[should_panic(expected = "I8Matrix::quantize: w has")]
    fn quantize_checks_length() {
        let _ = I8Matrix::quantize(&[0.0; 100], 2, 64);
    }

    #[test]
    fn dequantize_error_is_at_most_half_a_step() {
        let (rows, cols) = (37, 320);
        let mut w = random(rows * cols, 11);
        // An all-zero block and a block with one huge outlier.
        w[64..128].fill(0.0);
        w[200] = 1e3;
        let q = I8Matrix::quantize(&w, rows, cols).unwrap();
        assert_eq!((q.rows(), q.cols()), (rows, cols));
        assert_eq!(q.bytes(), rows * cols + rows * cols / 64 * 4);
        let d = q.dequantize();
        for (i, (&a, &b)) in w.iter().zip(&d).enumerate() {
            let scale = q.scales[i / BLOCK];
            assert!(
                (a - b).abs() <= scale * 0.5 * (1.0 + 1e-5),
                "element {i}: {a} vs {b} (scale {scale})"
            );
        }
        assert!(d[64..128].iter().all(|&v| v == 0.0));
        assert_eq!(d[200], 1e3);
    }

    #[test]
    fn gemv_matches_f64_reference() {
        for &(rows, cols) in SHAPES {
            let w = I8Matrix::quantize(&random(rows * cols, rows as u64 ^ 5), rows, cols).unwrap();
            for n_vec in 1..=4 {
                let x = random(n_vec * cols, 99 + n_vec as u64);
                let (want, mag) = reference(&w, &x, n_vec);
                let mut y = vec![f32::NAN; n_vec * rows];
                w.gemv(&x, n_vec, &mut y);
                check_close(
                    &y,
                    &want,
                    &mag,
                    1e-5,
                    &format!("{rows}×{cols}, n_vec {n_vec}"),
                );
            }
        }
    }

    #[test]
    fn simd_and_scalar_paths_agree() {
        if !crate::cpu::has_avx512_vnni() {
            eprintln!("SKIPPED: no AVX-512 VNNI on this CPU (only the scalar path runs here)");
            return;
        }
        for &(rows, cols) in SHAPES {
            let w = I8Matrix::quantize(&random(rows * cols, rows as u64 ^ 17), rows, cols).unwrap();
            for n_vec in [1, 2, 3, 4, 5, 8, 11] {
                let x = random(n_vec * cols, 3 + n_vec as u64);
                let mut ys = vec![0f32; n_vec * rows];
                let mut yv = vec![0f32; n_vec * rows];
                gemv_many_with(&[&w], &x, n_vec, &mut [&mut ys], false, 1);
                gemv_many_with(&[&w], &x, n_vec, &mut [&mut yv], true, 1);
                // Both sum the same exact block products × the same scales, in different orders.
                let (_, mag) = reference(&w, &x, n_vec);
                check_close(
                    &yv,
                    &ys.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                    &mag,
                    2e-6,
                    "simd vs scalar",
                );
            }
        }
    }

    #[test]
    fn scalar_path_matches_f64_reference() {
        for &(rows, cols) in &[(576, 576), (7, 64), (192, 576)] {
            let w = I8Matrix::quantize(&random(rows * cols, 1), rows, cols).unwrap();
            for n_vec in [1, 3, 9] {
                let x = random(n_vec * cols, 2);
                let (want, mag) = reference(&w, &x, n_vec);
                let mut y = vec![0f32; n_vec * rows];
                gemv_many_with(&[&w], &x, n_vec, &mut [&mut y], false, 1);
                check_close(&y, &want, &mag, 1e-5, "scalar");
            }
        }
    }

    #[test]
    fn many_vectors_take_several_passes() {
        let (rows, cols) = (45, 128);
        let w = I8Matrix::quantize(&random(rows * cols, 8), rows, cols).unwrap();
        for n_vec in [5, 6, 7, 8, 9, 17] {
            let x = random(n_vec * cols, 21);
            let (want, mag) = reference(&w, &x, n_vec);
            let mut y = vec![0f32; n_vec * rows];
            w.gemv(&x, n_vec, &mut y);
            check_close(&y, &want, &mag, 1e-5, &format!("n_vec {n_vec}"));
        }
    }

    #[test]
    fn gemv_many_equals_separate_calls() {
        let cols = 576;
        let shapes = [576, 192, 192, 1536, 7];
        let mats: Vec<I8Matrix> = shapes
            .iter()
            .enumerate()
            .map(|(i, &r)| I8Matrix::quantize(&random(r * cols, i as u64 + 40), r, cols).unwrap())
            .collect();
        let refs: Vec<&I8Matrix> = mats.iter().collect();
        for n_vec in 1..=3 {
            let x = random(n_vec * cols, 7);
            let mut many: Vec<Vec<f32>> = shapes.iter().map(|&r| vec![0f32; n_vec * r]).collect();
            let mut outs: Vec<&mut [f32]> = many.iter_mut().map(|v| v.as_mut_slice()).collect();
            gemv_many(&refs, &x, n_vec, &mut outs);
            for (m, got) in mats.iter().zip(&many) {
                let mut y = vec![0f32; n_vec * m.rows()];
                m.gemv(&x, n_vec, &mut y);
                assert_eq!(&y, got, "{}×{cols}, n_vec {n_vec}", m.rows());
            }
        }
    }

    /// The row split planned for several threads gives bit-identical results to one pass
    /// (each row is computed the same way, whichever chunk it falls in).
    #[test]
    fn parallel_split_gives_identical_results() {
        let cols = 576;
        let shapes = [1536, 576, 192, 49152, 3];
        let mats: Vec<I8Matrix> = shapes
            .iter()
            .map(|&r| I8Matrix::quantize(&random(r * cols, r as u64), r, cols).unwrap())
            .collect();
        let refs: Vec<&I8Matrix> = mats.iter().collect();
        let simd = crate::cpu::has_avx512_vnni();
        for n_vec in [1, 2, 4] {
            let x = random(n_vec * cols, 70);
            let run = |threads: usize| -> Vec<Vec<f32>> {
                let mut ys: Vec<Vec<f32>> = shapes.iter().map(|&r| vec![0f32; n_vec * r]).collect();
                let mut outs: Vec<&mut [f32]> = ys.iter_mut().map(|v| v.as_mut_slice()).collect();
                gemv_many_with(&refs, &x, n_vec, &mut outs, simd, threads);
                ys
            };
            assert_eq!(run(1), run(3), "n_vec {n_vec}");
        }
    }

    #[test]
    fn zero_vectors_and_zero_inputs() {
        let w = I8Matrix::quantize(&random(3 * 64, 1), 3, 64).unwrap();
        w.gemv(&[], 0, &mut []);
        let mut y = vec![1f32; 3];
        w.gemv(&[0.0; 64], 1, &mut y);
        assert_eq!(y, [0.0; 3]);
        gemv_many(&[], &[], 1, &mut []);
    }

    #[test]
    #[should_panic(expected = "gemv: y[0] has 5 values, expected 2×3")]
    fn gemv_checks_output_length() {
        let w = I8Matrix::quantize(&random(3 * 64, 1), 3, 64).unwrap();
        w.gemv(&[0.0; 128], 2, &mut [0.0; 5]);
    }

    #[test]
    #[should_panic(expected = "gemv: x has 64 values, expected 2×64")]
    fn gemv_checks_input_length() {
        let w = I8Matrix::quantize(&random(3 * 64, 1), 3, 64).unwrap();
        w.gemv(&[0.0; 64], 2, &mut [0.0; 6]);
    }

    #[test]
    #[should_panic(expected = "gemv_many: matrix 1 has 128 columns, matrix 0 has 64")]
    fn gemv_many_checks_columns() {
        let a = I8Matrix::quantize(&random(3 * 64, 1), 3, 64).unwrap();
        let b = I8Matrix::quantize(&random(3 * 128, 1), 3, 128).unwrap();
        gemv_many(
            &[&a, &b],
            &[0.0; 64],
            1,
            &mut [&mut [0.0; 3], &mut [0.0; 3]],
        );
    }
}
