//! Weight layout: each matrix is kept dense (f32, for many-row matmuls: prompts, teacher-forced
//! passes, batched rollouts) and/or quantized (for one-row decode steps), chosen per call.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use serde::Serialize;

use crate::error::Result;

/// Up to this many rows a matmul uses the quantized copy when there is one.
const QUANT_MAX_ROWS: usize = 4;

/// How weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WeightMode {
    /// Dense f32 and quantized for small models (< 600 M block parameters); quantized only above.
    #[default]
    Auto,
    /// Dense f32 and a quantized copy: fastest everywhere, most memory.
    Dual,
    /// Dense f32 only: exact arithmetic on the dequantized weights.
    F32,
    /// Quantized only (the file's own format where it has fast kernels, else Q8_0): least memory.
    Quantized,
}

impl WeightMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "dual" => Some(Self::Dual),
            "f32" => Some(Self::F32),
            "quantized" | "q" => Some(Self::Quantized),
            _ => None,
        }
    }

    /// Resolves `Auto` for a model of this size.
    pub fn resolve(self, block_parameters: usize) -> Self {
        match self {
            Self::Auto if block_parameters < 600_000_000 => Self::Dual,
            Self::Auto => Self::Quantized,
            other => other,
        }
    }

    fn wants_dense(self) -> bool {
        matches!(self, Self::Dual | Self::F32)
    }

    fn wants_quant(self) -> bool {
        matches!(self, Self::Dual | Self::Quantized)
    }
}

/// A weight as read from a file: still quantized (GGUF) or already a dense tensor.
pub(crate) enum RawTensor {
    Quant(QTensor),
    Dense(Tensor),
}

impl RawTensor {
    pub(crate) fn dims(&self) -> Vec<usize> {
        match self {
            RawTensor::Quant(q) => q.shape().dims().to_vec(),
            RawTensor::Dense(t) => t.dims().to_vec(),
        }
    }

    pub(crate) fn to_f32(&self, device: &Device) -> Result<Tensor> {
        Ok(match self {
            RawTensor::Quant(q) => q.dequantize(device)?,
            RawTensor::Dense(t) => t.to_dtype(DType::F32)?.to_device(device)?,
        })
    }
}

/// GGUF types with SIMD kernels in candle; others are requantized to Q8_0 for decode.
fn has_fast_kernel(dtype: GgmlDType) -> bool {
    matches!(
        dtype,
        GgmlDType::Q4_0
            | GgmlDType::Q8_0
            | GgmlDType::Q2K
            | GgmlDType::Q3K
            | GgmlDType::Q4K
            | GgmlDType::Q5K
            | GgmlDType::Q6K
            | GgmlDType::Q8K
    )
}

/// y = x·Wᵀ (+ b) with W `[out, in]`.
pub(crate) struct Linear {
    dense: Option<Tensor>,
    quant: Option<QMatMul>,
    bias: Option<Tensor>,
}

impl Linear {
    pub(crate) fn new(
        raw: RawTensor,
        bias: Option<Tensor>,
        mode: WeightMode,
        device: &Device,
    ) -> Result<Self> {
        let in_dim = *raw.dims().last().unwrap_or(&0);
        // Q8_0 and the K-quants need rows that are whole 32-element blocks.
        let wants_quant = mode.wants_quant() && in_dim % 32 == 0;
        let dense = if mode.wants_dense() || !wants_quant {
            Some(raw.to_f32(device)?)
        } else {
            None
        };
        let quant = if wants_quant {
            let q = match raw {
                RawTensor::Quant(q) if has_fast_kernel(q.dtype()) => q,
                other => {
                    let f = match &dense {
                        Some(d) => d.clone(),
                        None => other.to_f32(device)?,
                    };
                    QTensor::quantize(&f, GgmlDType::Q8_0)?
                }
            };
            Some(QMatMul::from_qtensor(q)?)
        } else {
            None
        };
        Ok(Linear { dense, quant, bias })
    }

    /// A linear map that reuses an existing dense matrix (tied embeddings).
    pub(crate) fn from_parts(dense: Option<Tensor>, quant: Option<QMatMul>) -> Self {
        Linear {
            dense,
            quant,
            bias: None,
        }
    }

    /// `x`: `[..., in]` → `[..., out]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = match (&self.quant, &self.dense) {
            (Some(q), Some(_)) if rows <= QUANT_MAX_ROWS => q.forward(x)?,
            (_, Some(w)) => {
                let x2 = x.reshape((rows, dims[dims.len() - 1]))?;
                let y2 = x2.matmul(&w.t()?)?;
                let mut out_dims = dims.clone();
                *out_dims.last_mut().expect("rank >= 1") = y2.dim(1)?;
                y2.reshape(out_dims)?
            }
            (Some(q), None) => q.forward(x)?,
            (None, None) => unreachable!("a Linear always holds a dense or quantized matrix"),
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// The weight as dense f32 `[out, in]`, dequantizing if needed (for conversion).
    pub(crate) fn to_dense(&self, device: &Device) -> Result<Tensor> {
        match (&self.dense, &self.quant) {
            (Some(w), _) => Ok(w.clone()),
            (None, Some(QMatMul::QTensor(q))) => Ok(q.dequantize(device)?),
            (None, Some(QMatMul::Tensor(w))) | (None, Some(QMatMul::TensorF16(w))) => {
                Ok(w.to_dtype(DType::F32)?)
            }
            (None, None) => unreachable!("a Linear always holds a dense or quantized matrix"),
        }
    }

    pub(crate) fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    pub(crate) fn bytes(&self) -> usize {
        let dense = self.dense.as_ref().map_or(0, |t| t.elem_count() * 4);
        let quant = match &self.quant {
            Some(QMatMul::QTensor(q)) => q.storage_size_in_bytes(),
            Some(QMatMul::Tensor(t)) | Some(QMatMul::TensorF16(t)) => {
                t.elem_count() * t.dtype().size_in_bytes()
            }
            None => 0,
        };
        dense + quant
    }
}
