//! Causal attention over a key/value cache on the CPU, with RoPE applied on the way in.
//!
//! Each (sequence, query head) is computed from that sequence's own real keys only, in a fixed
//! order, so a sequence's result does not depend on its batch mates or on padding.

use crate::bf16::{from_bf16, to_bf16};
use crate::math::{exp_nonpositive, sum_lanes};
use crate::parallel;

/// RoPE pairing (see the engine's `RopeStyle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rope {
    /// Pairs (2i, 2i+1).
    Interleaved,
    /// Pairs (i, i + d/2).
    Half,
}

/// How the cache stores numbers: `f32` (exact), or [`Bf16`] (decode steps read the whole cache
/// every step: half the bytes is nearly half the time).
pub trait KvElement: Copy + Default + Send + Sync {
    fn store(x: f32) -> Self;
    fn load(self) -> f32;
}

impl KvElement for f32 {
    #[inline(always)]
    fn store(x: f32) -> Self {
        x
    }

    #[inline(always)]
    fn load(self) -> f32 {
        self
    }
}

/// A bf16 number as its bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bf16(u16);

impl KvElement for Bf16 {
    #[inline(always)]
    fn store(x: f32) -> Self {
        Bf16(to_bf16(x))
    }

    #[inline(always)]
    fn load(self) -> f32 {
        from_bf16(self.0)
    }
}

/// Keys and values of a batch of sequences. Keys are stored transposed,
/// `[batch, kv_heads, head_dim, capacity]`, so the scores of one query against all keys are a
/// run of vector multiply-adds along the cache; values are `[batch, kv_heads, capacity,
/// head_dim]`.
pub struct KvCache<E: KvElement> {
    batch: usize,
    kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
    k: Vec<E>,
    v: Vec<E>,
}

impl<E: KvElement> KvCache<E> {
    pub fn new(batch: usize, kv_heads: usize, head_dim: usize, capacity: usize) -> Self {
        let n = batch * kv_heads * capacity * head_dim;
        KvCache {
            batch,
            kv_heads,
            head_dim,
            capacity,
            len: 0,
            k: vec![E::default(); n],
            v: vec![E::default(); n],
        }
    }

    /// Columns filled so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Forgets every column (the buffers are kept for reuse).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A cache of `batch` sequences that all start as copies of sequence 0 of this one: a
    /// prompt run once can then be continued in many ways.
    pub fn fork_first(&self, batch: usize) -> Self {
        let row = self.kv_heads * self.capacity * self.head_dim;
        let repeat = |x: &[E]| -> Vec<E> {
            let mut out = Vec::with_capacity(batch * row);
            for _ in 0..batch {
                out.extend_from_slice(&x[..row]);
            }
            out
        };
        KvCache {
            batch,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            capacity: self.capacity,
            len: self.len,
            k: repeat(&self.k),
            v: repeat(&self.v),
        }
    }

    /// Start of value column `col` of (sequence b, kv head g).
    fn v_at(&self, b: usize, g: usize, col: usize) -> usize {
        ((b * self.kv_heads + g) * self.capacity + col) * self.head_dim
    }

    /// Start of the transposed key block of (sequence b, kv head g).
    fn k_block(&self, b: usize, g: usize) -> usize {
        (b * self.kv_heads + g) * self.head_dim * self.capacity
    }
}

/// The shape of one attention call.
pub struct AttentionShape<'a> {
    pub batch: usize,
    /// New tokens per sequence in this call.
    pub tokens: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Position of each new token, `[batch * tokens]`, for RoPE (padding: any value).
    pub positions: &'a [usize],
    /// First cache column that holds a real key of each sequence (left padding before it).
    pub first_key: &'a [usize],
    pub rope: Rope,
    /// `cos`/`sin` tables `[positions, head_dim / 2]`.
    pub cos: &'a [f32],
    pub sin: &'a [f32],
}

fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32], rope: Rope) {
    let half = x.len() / 2;
    match rope {
        Rope::Interleaved => {
            for i in 0..half {
                let (a, b) = (x[2 * i], x[2 * i + 1]);
                x[2 * i] = a * cos[i] - b * sin[i];
                x[2 * i + 1] = a * sin[i] + b * cos[i];
            }
        }
        Rope::Half => {
            for i in 0..half {
                let (a, b) = (x[i], x[i + half]);
                x[i] = a * cos[i] - b * sin[i];
                x[i + half] = a * sin[i] + b * cos[i];
            }
        }
    }
}

/// Appends this call's keys/values (after RoPE on the keys) to the cache and computes the
/// attention of the new queries.
///
/// `q` is `[batch, tokens, heads * head_dim]`, `k` and `v` are `[batch, tokens, kv_heads *
/// head_dim]` (the projections' outputs); `out` receives `[batch, tokens, heads * head_dim]`.
/// Query `t` of a sequence sees cache columns `first_key ..= past + t`.
pub fn attend<E: KvElement>(
    s: &AttentionShape<'_>,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    cache: &mut KvCache<E>,
    out: &mut [f32],
) {
    let (bsz, t, h, g, d) = (s.batch, s.tokens, s.heads, s.kv_heads, s.head_dim);
    assert_eq!(q.len(), bsz * t * h * d, "attend: q has the wrong size");
    assert_eq!(k.len(), bsz * t * g * d, "attend: k has the wrong size");
    assert_eq!(v.len(), bsz * t * g * d, "attend: v has the wrong size");
    assert_eq!(out.len(), q.len(), "attend: out has the wrong size");
    assert!(
        cache.batch == bsz && cache.kv_heads == g && cache.head_dim == d,
        "attend: the cache was made for another batch or model"
    );
    assert!(
        cache.len + t <= cache.capacity,
        "attend: the cache holds {} columns, {} needed",
        cache.capacity,
        cache.len + t
    );
    let half = d / 2;
    let past = cache.len;
    // Keys (rotated, transposed) and values into the cache.
    let mut rotated = vec![0f32; d];
    for b in 0..bsz {
        for i in 0..t {
            let pos = s.positions[b * t + i];
            let (cos, sin) = (&s.cos[pos * half..][..half], &s.sin[pos * half..][..half]);
            for gh in 0..g {
                let src = ((b * t + i) * g + gh) * d;
                rotated.copy_from_slice(&k[src..src + d]);
                rotate(&mut rotated, cos, sin, s.rope);
                let kb = cache.k_block(b, gh);
                for (x, r) in rotated.iter().enumerate() {
                    cache.k[kb + x * cache.capacity + past + i] = E::store(*r);
                }
                let dst = cache.v_at(b, gh, past + i);
                for (c, x) in cache.v[dst..dst + d].iter_mut().zip(&v[src..src + d]) {
                    *c = E::store(*x);
                }
            }
        }
    }
    cache.len = past + t;
    let cache = &*cache;
    let group = h / g;
    let scale = 1.0 / (d as f32).sqrt();
    let out_addr = out.as_mut_ptr() as usize;
    // Tasks of (sequence, kv head, block of queries): the query heads that share a kv head are
    // done together, so every key and value is read once for all of them. Parallel only when
    // there is real work (a single sequence's one-token decode step is too small to split).
    const QUERY_BLOCK: usize = 16;
    let q_blocks = t.div_ceil(QUERY_BLOCK);
    let work = bsz * h * t * (past + t);
    let min_parallel = if work >= 8192 { 2 } else { usize::MAX };
    parallel::for_each_chunk(bsz * g * q_blocks, min_parallel, |tasks| {
        let mut qv = vec![0f32; group * d];
        let mut scores = vec![0f32; group * (past + t)];
        let mut acc = vec![0f32; group * d];
        for task in tasks {
            let (b, rest) = (task / (g * q_blocks), task % (g * q_blocks));
            let (gh, qb) = (rest / q_blocks, rest % q_blocks);
            let kt = &cache.k[cache.k_block(b, gh)..][..d * cache.capacity];
            for i in qb * QUERY_BLOCK..((qb + 1) * QUERY_BLOCK).min(t) {
                let pos = s.positions[b * t + i];
                let (cos, sin) = (&s.cos[pos * half..][..half], &s.sin[pos * half..][..half]);
                for hi in 0..group {
                    let src = ((b * t + i) * h + gh * group + hi) * d;
                    let qh = &mut qv[hi * d..(hi + 1) * d];
                    qh.copy_from_slice(&q[src..src + d]);
                    rotate(qh, cos, sin, s.rope);
                }
                let first = s.first_key[b].min(past + i);
                let last = past + i;
                let n = last + 1 - first;
                for hi in 0..group {
                    scores[hi * n..(hi + 1) * n]
                        .iter_mut()
                        .for_each(|x| *x = 0.0);
                }
                for x in 0..d {
                    let row = &kt[x * cache.capacity + first..=x * cache.capacity + last];
                    for hi in 0..group {
                        let qx = qv[hi * d + x];
                        for (sc, kx) in scores[hi * n..(hi + 1) * n].iter_mut().zip(row) {
                            *sc = qx.mul_add(kx.load(), *sc);
                        }
                    }
                }
                let mut inv = vec![0f32; group];
                for hi in 0..group {
                    let sc = &mut scores[hi * n..(hi + 1) * n];
                    let max = sc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                    for x in sc.iter_mut() {
                        *x = exp_nonpositive((*x - max) * scale);
                    }
                    inv[hi] = 1.0 / sum_lanes(sc);
                }
                acc.iter_mut().for_each(|a| *a = 0.0);
                for (j, col) in (first..=last).enumerate() {
                    let vv = &cache.v[cache.v_at(b, gh, col)..][..d];
                    for hi in 0..group {
                        let p = scores[hi * n + j];
                        for (a, x) in acc[hi * d..(hi + 1) * d].iter_mut().zip(vv) {
                            *a = p.mul_add(x.load(), *a);
                        }
                    }
                }
                for hi in 0..group {
                    let dst_off = ((b * t + i) * h + gh * group + hi) * d;
                    // SAFETY: this task is the only writer of out[(b, i, heads of kv head gh)].
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut((out_addr as *mut f32).add(dst_off), d)
                    };
                    for (o, a) in dst.iter_mut().zip(&acc[hi * d..(hi + 1) * d]) {
                        *o = a * inv[hi];
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::lcg;

    fn tables(n: usize, half: usize) -> (Vec<f32>, Vec<f32>) {
        let mut c = vec![];
        let mut s = vec![];
        for p in 0..n {
            for i in 0..half {
                let a = p as f32 / 10000f32.powf(i as f32 / half as f32);
                c.push(a.cos());
                s.push(a.sin());
            }
        }
        (c, s)
    }

    fn bf(x: f32) -> f32 {
        crate::bf16::from_bf16(crate::bf16::to_bf16(x))
    }

    /// Straightforward f64 attention for one sequence, all tokens at once.
    /// `dims` = (tokens, heads, kv heads, head dim); `tables` = (cos, sin).
    fn reference(
        qkv: (&[f32], &[f32], &[f32]),
        dims: (usize, usize, usize, usize),
        rope: Rope,
        tables: (&[f32], &[f32]),
    ) -> Vec<f32> {
        let ((q, k, v), (t, h, g, d), (cos, sin)) = (qkv, dims, tables);
        let half = d / 2;
        let rot = |x: &[f32], p: usize| {
            let mut y = x.to_vec();
            rotate(
                &mut y,
                &cos[p * half..][..half],
                &sin[p * half..][..half],
                rope,
            );
            y
        };
        let mut out = vec![0f32; t * h * d];
        for hh in 0..h {
            let gh = hh / (h / g);
            for i in 0..t {
                let qi = rot(&q[(i * h + hh) * d..][..d], i);
                let sc: Vec<f64> = (0..=i)
                    .map(|j| {
                        // The cache keeps keys (after RoPE) and values in bf16.
                        let kj: Vec<f32> = rot(&k[(j * g + gh) * d..][..d], j)
                            .into_iter()
                            .map(bf)
                            .collect();
                        qi.iter()
                            .zip(&kj)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for x in 0..d {
                    out[(i * h + hh) * d + x] = (0..=i)
                        .map(|j| e[j] / z * bf(v[(j * g + gh) * d + x]) as f64)
                        .sum::<f64>() as f32;
                }
            }
        }
        out
    }

    #[test]
    fn prefill_then_decode_matches_reference_and_padding_is_ignored() {
        let (h, g, d, t) = (6, 2, 8, 7);
        let (cos, sin) = tables(64, d / 2);
        for rope in [Rope::Interleaved, Rope::Half] {
            let mut seed = 11;
            let q: Vec<f32> = (0..t * h * d).map(|_| lcg(&mut seed)).collect();
            let k: Vec<f32> = (0..t * g * d).map(|_| lcg(&mut seed)).collect();
            let v: Vec<f32> = (0..t * g * d).map(|_| lcg(&mut seed)).collect();
            let want = reference((&q, &k, &v), (t, h, g, d), rope, (&cos, &sin));
            // The 7 tokens as a 5-token prefill + 2 decode steps.
            // Both sequences are left-padded by 3 dummy columns.
            let pad = 3;
            let mut cache = KvCache::<Bf16>::new(2, g, d, t + pad);
            let mut got = vec![vec![0f32; t * h * d]; 2];
            let steps: [(usize, usize); 3] = [(0, 5 + pad), (5 + pad, 1), (6 + pad, 1)];
            for (c0, n) in steps {
                let cols: Vec<usize> = (c0..c0 + n).collect();
                // Column c holds token c - pad (columns < pad are dummies full of 9s).
                let tok = |_b: usize, c: usize| -> Option<usize> { c.checked_sub(pad) };
                let mut qs = vec![0f32; 2 * n * h * d];
                let mut ks = vec![0f32; 2 * n * g * d];
                let mut vs = vec![0f32; 2 * n * g * d];
                let mut positions = vec![0usize; 2 * n];
                for b in 0..2 {
                    for (i, &c) in cols.iter().enumerate() {
                        let Some(j) = tok(b, c) else {
                            for x in &mut qs[(b * n + i) * h * d..][..h * d] {
                                *x = 9.0;
                            }
                            for x in &mut ks[(b * n + i) * g * d..][..g * d] {
                                *x = 9.0;
                            }
                            for x in &mut vs[(b * n + i) * g * d..][..g * d] {
                                *x = 9.0;
                            }
                            continue;
                        };
                        positions[b * n + i] = j;
                        qs[(b * n + i) * h * d..][..h * d]
                            .copy_from_slice(&q[j * h * d..][..h * d]);
                        ks[(b * n + i) * g * d..][..g * d]
                            .copy_from_slice(&k[j * g * d..][..g * d]);
                        vs[(b * n + i) * g * d..][..g * d]
                            .copy_from_slice(&v[j * g * d..][..g * d]);
                    }
                }
                let shape = AttentionShape {
                    batch: 2,
                    tokens: n,
                    heads: h,
                    kv_heads: g,
                    head_dim: d,
                    positions: &positions,
                    first_key: &[pad, pad],
                    rope,
                    cos: &cos,
                    sin: &sin,
                };
                let mut out = vec![0f32; qs.len()];
                attend(&shape, &qs, &ks, &vs, &mut cache, &mut out);
                for b in 0..2 {
                    for (i, &c) in cols.iter().enumerate() {
                        if let Some(j) = tok(b, c) {
                            got[b][j * h * d..][..h * d]
                                .copy_from_slice(&out[(b * n + i) * h * d..][..h * d]);
                        }
                    }
                }
            }
            for (b, got_b) in got.iter().enumerate() {
                for (x, y) in got_b.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-5, "{rope:?} sequence {b}: {x} vs {y}");
                }
            }
            assert_eq!(got[0], got[1]);
        }
    }
}
