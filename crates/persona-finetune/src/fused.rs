//! Fused training ops with hand-written backward passes, for the fast path: RMSNorm with a
//! frozen weight, rotary embeddings, and the cross-entropy of logits. Composed from candle's
//! elementwise ops, each is 5–10 passes over its tensor (and as many tensors kept for the
//! backward pass); fused, it is one pass each way, parallel over rows. The plain composition
//! stays in `model.rs` as the reference path these are checked against.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use persona_engine::RopeStyle;
use persona_kernels::parallel;

/// The contiguous f32 values of a CPU tensor operand.
fn values<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(all) = storage else {
        candle_core::bail!("{op} takes f32 tensors")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&all[start..end]),
        None => candle_core::bail!("{op} takes contiguous tensors"),
    }
}

/// `out` in rows of `width`, each written by `f(row index, row)`, rows split over the pool.
fn par_rows(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let rows = out.len() / width.max(1);
    let base = out.as_mut_ptr() as usize;
    parallel::for_each_chunk(rows, 64, |range| {
        for r in range {
            // SAFETY: each row index is visited once, so the row slices are disjoint and in
            // bounds of `out`, which outlives the parallel loop.
            let row =
                unsafe { std::slice::from_raw_parts_mut((base as *mut f32).add(r * width), width) };
            f(r, row);
        }
    });
}

/// `x / rms(x) · w` over the last dimension; `w` frozen.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let op = RmsNorm {
        w: Arc::new(w.flatten_all()?.to_vec1::<f32>()?),
        eps: eps as f32,
    };
    x.contiguous()?.apply_op1(op)
}

#[derive(Clone)]
struct RmsNorm {
    w: Arc<Vec<f32>>,
    eps: f32,
}

impl RmsNorm {
    fn inv_rms(&self, row: &[f32]) -> f32 {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
        1.0 / (ms + self.eps).sqrt()
    }
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = values(s, l, "fused rms norm")?;
        let d = self.w.len();
        let mut y = vec![0f32; x.len()];
        par_rows(&mut y, d, |r, out| {
            let row = &x[r * d..(r + 1) * d];
            let inv = self.inv_rms(row);
            for ((o, v), w) in out.iter_mut().zip(row).zip(self.w.iter()) {
                *o = v * inv * w;
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, self)?))
    }
}

/// The backward pass: `dx = inv·(g·w − x̂·mean(g·w·x̂))` with `x̂ = x·inv`.
impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, g) = (
            values(s1, l1, "rms-norm backward")?,
            values(s2, l2, "rms-norm backward")?,
        );
        let d = self.w.len();
        let mut dx = vec![0f32; x.len()];
        par_rows(&mut dx, d, |r, out| {
            let (row, grow) = (&x[r * d..(r + 1) * d], &g[r * d..(r + 1) * d]);
            let inv = self.inv_rms(row);
            let dot: f32 = row
                .iter()
                .zip(grow)
                .zip(self.w.iter())
                .map(|((v, g), w)| g * w * v * inv)
                .sum::<f32>()
                / d as f32;
            for (((o, v), g), w) in out.iter_mut().zip(row).zip(grow).zip(self.w.iter()) {
                *o = inv * (g * w - v * inv * dot);
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Rotary embeddings on `[b, heads, t, hd]` with tables `cos`, `sin` `[≥ t, hd / 2]`.
pub fn rope(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    style: RopeStyle,
) -> candle_core::Result<Tensor> {
    let (_, _, t, hd) = x.dims4()?;
    let table = |m: &Tensor| -> candle_core::Result<Arc<Vec<f32>>> {
        Ok(Arc::new(
            m.narrow(0, 0, t)?.flatten_all()?.to_vec1::<f32>()?,
        ))
    };
    let op = Rope {
        cos: table(cos)?,
        sin: table(sin)?,
        t,
        hd,
        style,
        inverse: false,
    };
    x.contiguous()?.apply_op1(op)
}

#[derive(Clone)]
struct Rope {
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
    t: usize,
    hd: usize,
    style: RopeStyle,
    /// Rotate by −θ: the backward pass of the rotation by θ.
    inverse: bool,
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = values(s, l, self.name())?;
        let (hd, half) = (self.hd, self.hd / 2);
        let sign = if self.inverse { -1.0 } else { 1.0 };
        let mut y = vec![0f32; x.len()];
        par_rows(&mut y, hd, |r, out| {
            let pos = r % self.t;
            let row = &x[r * hd..(r + 1) * hd];
            for i in 0..half {
                let (c, s) = (self.cos[pos * half + i], sign * self.sin[pos * half + i]);
                let (a, b) = match self.style {
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    RopeStyle::Half => (i, i + half),
                };
                out[a] = row[a] * c - row[b] * s;
                out[b] = row[a] * s + row[b] * c;
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let back = Rope {
            inverse: !self.inverse,
            ..self.clone()
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}

/// `−log softmax(logits)[target]` for each row of `logits` `[n, V]`: `[n]`.
pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> candle_core::Result<Tensor> {
    let (n, _) = logits.dims2()?;
    if targets.len() != n {
        candle_core::bail!("cross entropy: {} targets for {n} rows", targets.len())
    }
    logits.contiguous()?.apply_op1(CrossEntropy {
        targets: Arc::new(targets.to_vec()),
    })
}

#[derive(Clone)]
struct CrossEntropy {
    targets: Arc<Vec<u32>>,
}

/// `(max, log Σ exp(x − max))` of a row.
fn log_sum_exp(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
    (max, sum.ln())
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = values(s, l, "fused cross entropy")?;
        let n = self.targets.len();
        let v = x.len() / n.max(1);
        let mut loss = vec![0f32; n];
        par_rows(&mut loss, 1, |r, out| {
            let row = &x[r * v..(r + 1) * v];
            let (max, lse) = log_sum_exp(row);
            out[0] = max + lse - row[self.targets[r] as usize];
        });
        Ok((CpuStorage::F32(loss), Shape::from(n)))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, self)?))
    }
}

/// The backward pass: `d logits = (softmax − onehot(target)) · g` per row.
impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "fused-cross-entropy-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, g) = (
            values(s1, l1, "cross-entropy backward")?,
            values(s2, l2, "cross-entropy backward")?,
        );
        let n = self.targets.len();
        let v = x.len() / n.max(1);
        let mut dx = vec![0f32; x.len()];
        par_rows(&mut dx, v, |r, out| {
            let row = &x[r * v..(r + 1) * v];
            let (max, lse) = log_sum_exp(row);
            for (o, xv) in out.iter_mut().zip(row) {
                *o = (xv - max - lse).exp() * g[r];
            }
            out[self.targets[r] as usize] -= g[r];
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
        let (a, b) = (
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert!(
                (p - q).abs() <= 1e-4 * (1.0 + q.abs()),
                "{what} {i}: {p} vs {q}"
            );
        }
    }

    /// Value and input gradient of `f` (fused) and `g` (composed) on `x`, weighted by `w`.
    fn check(
        x: &Tensor,
        fused: impl Fn(&Tensor) -> Tensor,
        composed: impl Fn(&Tensor) -> Tensor,
        what: &str,
    ) {
        let run = |f: &dyn Fn(&Tensor) -> Tensor| {
            let v = Var::from_tensor(x).unwrap();
            let y = f(v.as_tensor());
            let w = Tensor::arange(0f32, y.elem_count() as f32, &Device::Cpu)
                .unwrap()
                .reshape(y.shape())
                .unwrap()
                .sin()
                .unwrap();
            let g = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            (y, g.get(v.as_tensor()).unwrap().clone())
        };
        let ((y1, g1), (y2, g2)) = (run(&fused), run(&composed));
        assert_close(&y1, &y2, &format!("{what} value"));
        assert_close(&g1, &g2, &format!("{what} gradient"));
    }

    #[test]
    fn rms_norm_matches_the_composed_ops() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 8), &dev).unwrap();
        let w = Tensor::randn(1f32, 0.2, 8, &dev).unwrap();
        check(
            &x,
            |x| rms_norm(x, &w, 1e-5).unwrap(),
            |x| {
                let ms = x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                x.broadcast_mul(&(ms + 1e-5).unwrap().sqrt().unwrap().recip().unwrap())
                    .unwrap()
                    .broadcast_mul(&w)
                    .unwrap()
            },
            "rms norm",
        );
    }

    #[test]
    fn rope_matches_the_composed_ops_in_both_styles() {
        let dev = Device::Cpu;
        let (b, h, t, hd) = (2, 3, 5, 8);
        let x = Tensor::randn(0f32, 1.0, (b, h, t, hd), &dev).unwrap();
        let cos = Tensor::randn(0f32, 1.0, (7, hd / 2), &dev).unwrap();
        let sin = Tensor::randn(0f32, 1.0, (7, hd / 2), &dev).unwrap();
        let (c, s) = (cos.narrow(0, 0, t).unwrap(), sin.narrow(0, 0, t).unwrap());
        for style in [RopeStyle::Interleaved, RopeStyle::Half] {
            check(
                &x,
                |x| rope(x, &cos, &sin, style).unwrap(),
                |x| {
                    let rot = |x0: &Tensor, x1: &Tensor| {
                        let r0 = (x0.broadcast_mul(&c).unwrap() - x1.broadcast_mul(&s).unwrap())
                            .unwrap();
                        let r1 = (x0.broadcast_mul(&s).unwrap() + x1.broadcast_mul(&c).unwrap())
                            .unwrap();
                        (r0, r1)
                    };
                    match style {
                        RopeStyle::Interleaved => {
                            let p = x.reshape((b, h, t, hd / 2, 2)).unwrap();
                            let x0 = p.narrow(4, 0, 1).unwrap().squeeze(4).unwrap();
                            let x1 = p.narrow(4, 1, 1).unwrap().squeeze(4).unwrap();
                            let (r0, r1) = rot(&x0, &x1);
                            Tensor::stack(&[r0, r1], 4)
                                .unwrap()
                                .reshape((b, h, t, hd))
                                .unwrap()
                        }
                        RopeStyle::Half => {
                            let x0 = x.narrow(3, 0, hd / 2).unwrap();
                            let x1 = x.narrow(3, hd / 2, hd / 2).unwrap();
                            let (r0, r1) = rot(&x0, &x1);
                            Tensor::cat(&[r0, r1], 3).unwrap()
                        }
                    }
                },
                &format!("rope {style:?}"),
            );
        }
    }

    #[test]
    fn cross_entropy_matches_log_softmax() {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 1.0, (4, 11), &dev).unwrap() * 5.0).unwrap();
        let targets = [3u32, 0, 10, 7];
        let t = Tensor::new(&targets[..], &dev)
            .unwrap()
            .unsqueeze(1)
            .unwrap();
        check(
            &x,
            |x| cross_entropy(x, &targets).unwrap(),
            |x| {
                let lp = candle_nn::ops::log_softmax(x, D::Minus1).unwrap();
                lp.gather(&t, 1).unwrap().squeeze(1).unwrap().neg().unwrap()
            },
            "cross entropy",
        );
    }
}
