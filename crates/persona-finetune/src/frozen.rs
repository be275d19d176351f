//! Products with the frozen base weights while training: `y = x·Wᵀ` forward and `dx = dy·W`
//! backward, and never `dW`. candle's own matmul computes and keeps a gradient for both of its
//! operands, frozen or not, which is a third of the work and a weight-sized buffer per
//! projection per step. Here each weight is packed twice in bf16 (W for the forward product, Wᵀ
//! for the backward one) for the engine's bf16 kernels (AMX tiles, else AVX-512 BF16); CPUs
//! with neither keep the f32 weight and run f32 products.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor};
use persona_kernels::bf16_matmul::{Bf16Kernel, Bf16Matrix};

/// How the frozen weights' products are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrozenProducts {
    /// bf16 kernels where the CPU has them (f32 elsewhere), no weight gradients.
    #[default]
    Fast,
    /// Plain candle f32 matmuls: the reference the fast path is checked against.
    Reference,
}

impl FrozenProducts {
    /// What `Fast` runs on this machine, for logs and results: `amx-bf16`, `avx512-bf16` or
    /// `f32`; `Reference` is `f32-reference`.
    pub fn describe(self) -> &'static str {
        match (self, Bf16Kernel::detect()) {
            (FrozenProducts::Reference, _) => "f32-reference",
            (FrozenProducts::Fast, Some(Bf16Kernel::Amx)) => "amx-bf16",
            (FrozenProducts::Fast, Some(Bf16Kernel::Avx512Bf16)) => "avx512-bf16",
            (FrozenProducts::Fast, None) => "f32",
        }
    }
}

/// One frozen weight `[n, k]` in the layouts its two products need.
pub struct FrozenMatrix {
    n: usize,
    k: usize,
    kind: FrozenKind,
}

enum FrozenKind {
    Bf16 {
        kernel: Bf16Kernel,
        w: Bf16Matrix,
        w_t: Bf16Matrix,
    },
    F32(Tensor),
}

impl FrozenMatrix {
    /// Packs `w` `[n, k]` for this CPU's fastest products.
    pub fn new(w: &Tensor) -> candle_core::Result<Arc<FrozenMatrix>> {
        let (n, k) = w.dims2()?;
        let kind = match Bf16Kernel::detect().filter(|_| w.device().is_cpu()) {
            Some(kernel) => {
                let host = w.flatten_all()?.to_vec1::<f32>()?;
                let mut t = vec![0f32; n * k];
                for (r, row) in host.chunks(k).enumerate() {
                    for (c, v) in row.iter().enumerate() {
                        t[c * n + r] = *v;
                    }
                }
                FrozenKind::Bf16 {
                    kernel,
                    w: Bf16Matrix::pack(&host, n, k),
                    w_t: Bf16Matrix::pack(&t, k, n),
                }
            }
            None => FrozenKind::F32(w.clone()),
        };
        Ok(Arc::new(FrozenMatrix { n, k, kind }))
    }

    /// `x` `[..., k]` → `x·Wᵀ` `[..., n]`, differentiable in `x` only.
    pub fn forward(self: &Arc<Self>, x: &Tensor) -> candle_core::Result<Tensor> {
        x.contiguous()?.apply_op1(Product {
            matrix: self.clone(),
            transposed: false,
        })
    }
}

/// `x·Wᵀ` (or `x·W` when `transposed`, the backward product).
struct Product {
    matrix: Arc<FrozenMatrix>,
    transposed: bool,
}

impl CustomOp1 for Product {
    fn name(&self) -> &'static str {
        "frozen-product"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(all) = storage else {
            candle_core::bail!("frozen products take f32 activations")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("frozen products take contiguous activations")
        };
        let x = &all[start..end];
        let m = &self.matrix;
        let (k_in, n_out) = if self.transposed {
            (m.n, m.k)
        } else {
            (m.k, m.n)
        };
        let dims = layout.dims();
        if dims.last() != Some(&k_in) {
            candle_core::bail!("frozen product: activations {dims:?} do not end in {k_in}")
        }
        let rows = x.len() / k_in;
        let y = match &m.kind {
            FrozenKind::Bf16 { kernel, w, w_t } => {
                let mut y = vec![0f32; rows * n_out];
                let packed = if self.transposed { w_t } else { w };
                packed.matmul(*kernel, x, rows, &mut y);
                y
            }
            FrozenKind::F32(w) => {
                let x = Tensor::from_slice(x, (rows, k_in), &Device::Cpu)?;
                let y = if self.transposed {
                    x.matmul(w)?
                } else {
                    x.matmul(&w.t()?)?
                };
                y.flatten_all()?.to_vec1::<f32>()?
            }
        };
        let mut out = dims.to_vec();
        *out.last_mut().expect("checked above") = n_out;
        Ok((CpuStorage::F32(y), Shape::from(out)))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let back = Product {
            matrix: self.matrix.clone(),
            transposed: !self.transposed,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// The fast product and its gradient against candle's f32 matmul, within bf16 rounding.
    #[test]
    fn forward_and_input_gradient_match_f32_matmul() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (70, 100), &dev).unwrap();
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 5, 100), &dev).unwrap()).unwrap();
        let g = Tensor::randn(0f32, 1.0, (3, 5, 70), &dev).unwrap();
        let frozen = FrozenMatrix::new(&w).unwrap();
        let fast = frozen.forward(x.as_tensor()).unwrap();
        let reference = x.as_tensor().broadcast_matmul(&w.t().unwrap()).unwrap();
        let grad_of = |y: &Tensor| {
            let loss = (y * &g).unwrap().sum_all().unwrap();
            loss.backward().unwrap().get(x.as_tensor()).unwrap().clone()
        };
        let close = |a: &Tensor, b: &Tensor, what: &str| {
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            let scale = b.iter().map(|v| v.abs()).fold(0f32, f32::max);
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                // bf16 keeps 8 bits: ~0.4 % per operand, averaging down over k terms.
                assert!((p - q).abs() <= 0.02 * scale, "{what} {i}: {p} vs {q}");
            }
        };
        close(&fast, &reference, "y");
        close(&grad_of(&fast), &grad_of(&reference), "dx");
    }
}
