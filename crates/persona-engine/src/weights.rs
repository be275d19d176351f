//! Weight layout: each matrix is kept dense (f32, for many-row matmuls: prompts, teacher-forced
//! passes, batched rollouts) and/or quantized (for one-row decode steps), chosen per call.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use persona_kernels::bf16_matmul::{Bf16Kernel, Bf16Matrix};
use persona_kernels::gemv_i8::I8Matrix;
use serde::Serialize;

use crate::error::Result;
use crate::host::with_host_f32;

/// Up to this many rows a product uses candle's quantized copy when there is one.
const QUANT_MAX_ROWS: usize = 4;
/// Up to this many rows a product uses the int8 kernel when there is a copy for it: it streams
/// the weights once for all rows, which beats the AMX tiles' bf16 weights on few rows.
const INT8_MAX_ROWS: usize = 8;

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

/// Where a loader finds tensors by their GGUF names (`blk.N.attn_q.weight`, ...). Beside
/// [`RawTensor`], so that the file readers (GGUF, Hugging Face, adapters) need only the weights,
/// never the model they feed.
pub(crate) trait TensorSource {
    fn take(&mut self, name: &str) -> Result<Option<RawTensor>>;
    fn describe(&self) -> std::path::PathBuf;
    /// The tensor's name as the file spells it (persona asks by GGUF name).
    fn stored_name(&self, name: &str) -> String {
        name.to_string()
    }
    /// Where the sizes the weights are checked against come from.
    fn config_origin(&self) -> &'static str;
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

/// y = x·Wᵀ (+ b) with W `[out, in]`, each product routed to the copy that does it fastest.
pub(crate) struct Linear {
    /// Exact f32 weights.
    dense: Option<Tensor>,
    /// bf16 tiles: many-row products on CPUs with AMX or AVX-512 BF16, on that kernel.
    tiles: Option<(Bf16Matrix, Bf16Kernel)>,
    /// int8 weights: few-row products (decode steps) on CPUs with AVX-512 VNNI.
    int8: Option<I8Matrix>,
    /// candle's quantized weights: few-row products elsewhere, and the `quantized` layout.
    quant: Option<QMatMul>,
    bias: Option<Tensor>,
}

/// The bf16 kernel many-row products of dense weights go to instead of f32 matmuls, if any.
fn bf16_kernel(device: &Device) -> Option<Bf16Kernel> {
    Bf16Kernel::detect().filter(|_| device.is_cpu())
}

fn use_int8(device: &Device, in_dim: usize) -> bool {
    device.is_cpu()
        && persona_kernels::cpu::has_avx512_vnni()
        && in_dim.is_multiple_of(I8Matrix::BLOCK)
}

fn quantized_copy(raw: RawTensor, f32_copy: Option<&Tensor>, device: &Device) -> Result<QMatMul> {
    let q = match raw {
        RawTensor::Quant(q) if has_fast_kernel(q.dtype()) => q,
        other => {
            let f = match f32_copy {
                Some(d) => d.clone(),
                None => other.to_f32(device)?,
            };
            QTensor::quantize(&f, GgmlDType::Q8_0)?
        }
    };
    Ok(QMatMul::from_qtensor(q)?)
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
        let blocks_ok = in_dim.is_multiple_of(32);
        let mut l = Linear {
            dense: None,
            tiles: None,
            int8: None,
            quant: None,
            bias,
        };
        match mode {
            WeightMode::Quantized if blocks_ok => {
                l.quant = Some(quantized_copy(raw, None, device)?)
            }
            WeightMode::Dual => {
                let f = raw.to_f32(device)?;
                let (n, k) = f.dims2()?;
                let (int8, bf16) = (use_int8(device, k), bf16_kernel(device));
                // One host copy serves both CPU kernel layouts.
                let host = if int8 || bf16.is_some() {
                    f.flatten_all()?.to_vec1::<f32>()?
                } else {
                    Vec::new()
                };
                if int8 {
                    l.int8 = I8Matrix::quantize(&host, n, k);
                } else if blocks_ok {
                    l.quant = Some(quantized_copy(raw, Some(&f), device)?);
                }
                if let Some(kernel) = bf16 {
                    l.tiles = Some((Bf16Matrix::pack(&host, n, k), kernel));
                } else {
                    l.dense = Some(f);
                }
            }
            _ => l.dense = Some(raw.to_f32(device)?),
        }
        Ok(l)
    }

    /// `x`: `[..., in]` → `[..., out]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = match self.int8.as_ref().filter(|_| rows <= INT8_MAX_ROWS) {
            Some(w) => int8_products(&[w], x)?.remove(0),
            None => match (&self.quant, &self.tiles, &self.dense) {
                (Some(q), _, _) if rows <= QUANT_MAX_ROWS => q.forward(x)?,
                (_, Some((tiles, kernel)), _) => {
                    let x = x.contiguous()?;
                    let mut y = vec![0f32; rows * tiles.rows()];
                    with_host_f32(&x, |xs| tiles.matmul(*kernel, xs, rows, &mut y))?;
                    Tensor::from_vec(y, out_dims(&dims, tiles.rows()), x.device())?
                }
                (_, None, Some(w)) => {
                    let x2 = x.reshape((rows, dims[dims.len() - 1]))?;
                    x2.matmul(&w.t()?)?.reshape(out_dims(&dims, w.dim(0)?))?
                }
                (Some(q), None, None) => q.forward(x)?,
                // An int8 copy only exists beside bf16 tiles or f32 weights.
                (None, None, None) => unreachable!("a Linear keeps weights for many-row products"),
            },
        };
        self.add_bias(y)
    }

    fn add_bias(&self, y: Tensor) -> Result<Tensor> {
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// The weight as dense f32 `[out, in]` (for conversion; exact only in the f32 layout).
    pub(crate) fn to_dense(&self, device: &Device) -> Result<Tensor> {
        if let Some(w) = &self.dense {
            return Ok(w.clone());
        }
        if let Some((t, _)) = &self.tiles {
            return Ok(Tensor::from_vec(t.unpack(), (t.rows(), t.cols()), device)?);
        }
        match (&self.quant, &self.int8) {
            (Some(QMatMul::QTensor(q)), _) => Ok(q.dequantize(device)?),
            (Some(QMatMul::Tensor(w)), _) | (Some(QMatMul::TensorF16(w)), _) => {
                Ok(w.to_dtype(DType::F32)?)
            }
            (None, Some(w)) => Ok(Tensor::from_vec(
                w.dequantize(),
                (w.rows(), w.cols()),
                device,
            )?),
            (None, None) => unreachable!("a Linear always holds some weights"),
        }
    }

    pub(crate) fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    pub(crate) fn bytes(&self) -> usize {
        let dense = self.dense.as_ref().map_or(0, |t| t.elem_count() * 4);
        let tiles = self.tiles.as_ref().map_or(0, |(t, _)| t.bytes());
        let int8 = self.int8.as_ref().map_or(0, |t| t.bytes());
        let quant = match &self.quant {
            Some(QMatMul::QTensor(q)) => q.storage_size_in_bytes(),
            Some(QMatMul::Tensor(t)) | Some(QMatMul::TensorF16(t)) => {
                t.elem_count() * t.dtype().size_in_bytes()
            }
            None => 0,
        };
        dense + tiles + int8 + quant
    }
}

fn out_dims(dims: &[usize], out: usize) -> Vec<usize> {
    let mut d = dims.to_vec();
    *d.last_mut().expect("rank >= 1") = out;
    d
}

/// `x · Wᵀ` for int8 matrices sharing the input `x` `[..., in]`: one quantization of `x` and
/// one parallel pass of the kernel for all of them.
fn int8_products(mats: &[&I8Matrix], x: &Tensor) -> Result<Vec<Tensor>> {
    let dims = x.dims().to_vec();
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let x = x.contiguous()?;
    let mut ys: Vec<Vec<f32>> = mats.iter().map(|m| vec![0f32; rows * m.rows()]).collect();
    with_host_f32(&x, |xs| {
        let mut outs: Vec<&mut [f32]> = ys.iter_mut().map(|y| y.as_mut_slice()).collect();
        persona_kernels::gemv_i8::gemv_many(mats, xs, rows, &mut outs)
    })?;
    mats.iter()
        .zip(ys)
        .map(|(m, y)| Ok(Tensor::from_vec(y, out_dims(&dims, m.rows()), x.device())?))
        .collect()
}

/// Several projections of the same input (q/k/v, gate/up): one pass of the int8 kernel for
/// all of them on decode steps, separate products otherwise.
pub(crate) fn forward_group(linears: &[&Linear], x: &Tensor) -> Result<Vec<Tensor>> {
    let dims = x.dims().to_vec();
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let int8: Option<Vec<&I8Matrix>> = linears.iter().map(|l| l.int8.as_ref()).collect();
    match int8 {
        Some(mats) if rows <= INT8_MAX_ROWS => linears
            .iter()
            .zip(int8_products(&mats, x)?)
            .map(|(l, y)| l.add_bias(y))
            .collect(),
        _ => linears.iter().map(|l| l.forward(x)).collect(),
    }
}
