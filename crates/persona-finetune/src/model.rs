//! The decoder as plain candle operations, so that gradients flow: the model's weights are
//! frozen tensors, only the LoRA factors are variables. It mirrors the engine's forward pass
//! (RMSNorm, RoPE in the model's own style, grouped-query attention, SwiGLU) without its
//! inference kernels, which have no backward pass.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var, D};
use persona_core::stats::SplitMix;
use persona_engine::{DenseWeights, RopeStyle};

use crate::FinetuneError;

/// Trainable low-rank factors of one projection: W x + s·B(A x).
pub struct LoraPair {
    /// `[r, in]`, initialised uniformly in ±1/√in.
    pub a: Var,
    /// `[out, r]`, initialised to zero: training starts from the base model exactly.
    pub b: Var,
}

/// What is done to the residual stream while training (and never afterwards): preventative
/// steering or ablation of a trait direction.
#[derive(Debug, Clone)]
pub enum TrainIntervention {
    /// h ← h + α·v at `blocks.layer.resid_post`, every position.
    Steer {
        layer: usize,
        vector: Vec<f32>,
        alpha: f32,
    },
    /// h ← h + α·v_l at every layer l's `resid_post` (`vectors[l]`: the trait's per-layer
    /// difference of means), every position.
    SteerEveryLayer { vectors: Vec<Vec<f32>>, alpha: f32 },
    /// h ← h − (h·û)û at `blocks.layer.resid_post`, every position.
    Ablate { layer: usize, direction: Vec<f32> },
}

impl TrainIntervention {
    /// The deepest layer it touches.
    pub fn last_layer(&self) -> usize {
        match self {
            TrainIntervention::Steer { layer, .. } | TrainIntervention::Ablate { layer, .. } => {
                *layer
            }
            TrainIntervention::SteerEveryLayer { vectors, .. } => vectors.len().saturating_sub(1),
        }
    }

    /// Its effect on `h` `[b, t, d]` after block `l`.
    fn apply(&self, l: usize, h: Tensor) -> candle_core::Result<Tensor> {
        let dev = h.device().clone();
        let add = |v: &[f32], alpha: f32| -> candle_core::Result<Tensor> {
            let v = Tensor::from_slice(v, v.len(), &dev)?;
            h.broadcast_add(&(v * alpha as f64)?)
        };
        match self {
            TrainIntervention::Steer {
                layer,
                vector,
                alpha,
            } if *layer == l => add(vector, *alpha),
            TrainIntervention::SteerEveryLayer { vectors, alpha } if l < vectors.len() => {
                add(&vectors[l], *alpha)
            }
            TrainIntervention::Ablate { layer, direction } if *layer == l => {
                let norm = persona_core::norm(direction);
                let unit: Vec<f32> = direction
                    .iter()
                    .map(|x| (*x as f64 / norm) as f32)
                    .collect();
                let u = Tensor::from_slice(&unit, unit.len(), &dev)?;
                // [b, t, d] · [d, 1] → [b, t, 1]
                let along = h.broadcast_matmul(&u.unsqueeze(1)?)?;
                h.broadcast_sub(&along.broadcast_mul(&u)?)
            }
            _ => Ok(h),
        }
    }
}

/// The frozen model with its adapter.
pub struct LoraModel {
    pub weights: DenseWeights,
    /// `(layer, part)` → factors.
    pub lora: BTreeMap<(usize, String), LoraPair>,
    pub rank: usize,
    pub alpha: f64,
    cos: Tensor,
    sin: Tensor,
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let mean_sq = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_mul(&(mean_sq + eps)?.sqrt()?.recip()?)?
        .broadcast_mul(w)
}

impl LoraModel {
    /// LoRA factors of rank `rank` on `targets` (GGUF part names) at every layer, A seeded.
    pub fn new(
        weights: DenseWeights,
        rank: usize,
        alpha: f64,
        targets: &[String],
        seed: u64,
    ) -> Result<LoraModel, FinetuneError> {
        if rank == 0 {
            return Err(FinetuneError::Input(
                "the LoRA rank must be at least 1".into(),
            ));
        }
        let dev = weights.embed.device().clone();
        let mut rng = SplitMix(seed);
        let mut lora = BTreeMap::new();
        for (l, block) in weights.blocks.iter().enumerate() {
            for part in targets {
                let (w, _) = block.linears.get(part).ok_or_else(|| {
                    FinetuneError::Input(format!(
                        "`{part}` is not a projection of this model: use {}",
                        persona_engine::LORA_TARGETS.join(", ")
                    ))
                })?;
                let (out, inp) = w.dims2()?;
                let bound = 1.0 / (inp as f32).sqrt();
                let a: Vec<f32> = (0..rank * inp).map(|_| rng.symmetric() * bound).collect();
                lora.insert(
                    (l, part.clone()),
                    LoraPair {
                        a: Var::from_tensor(&Tensor::from_vec(a, (rank, inp), &dev)?)?,
                        b: Var::from_tensor(&Tensor::zeros((out, rank), DType::F32, &dev)?)?,
                    },
                );
            }
        }
        Self::with_factors(weights, lora, rank, alpha)
    }

    /// The model with given factors (e.g. read back from a checkpoint).
    pub fn with_factors(
        weights: DenseWeights,
        lora: BTreeMap<(usize, String), LoraPair>,
        rank: usize,
        alpha: f64,
    ) -> Result<LoraModel, FinetuneError> {
        // The engine's own tables; training sequences stay within 4096 tokens (the attention
        // scores of every head are held for the backward pass).
        let n = weights.rope_cos.dim(0)?.min(4096);
        Ok(LoraModel {
            cos: weights.rope_cos.narrow(0, 0, n)?,
            sin: weights.rope_sin.narrow(0, 0, n)?,
            weights,
            lora,
            rank,
            alpha,
        })
    }

    pub fn vars(&self) -> Vec<Var> {
        self.lora
            .values()
            .flat_map(|p| [p.a.clone(), p.b.clone()])
            .collect()
    }

    pub fn device(&self) -> &Device {
        self.weights.embed.device()
    }

    /// The longest sequence the RoPE tables cover.
    pub fn max_len(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }

    /// `x` `[b, t, in]` through projection `part` of layer `l`, with its adapter.
    fn project(&self, l: usize, part: &str, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, inp) = x.dims3()?;
        let (w, bias) = &self.weights.blocks[l].linears[part];
        let flat = x.reshape((b * t, inp))?;
        let mut y = flat.matmul(&w.t()?)?;
        if let Some(bias) = bias {
            y = y.broadcast_add(bias)?;
        }
        if let Some(p) = self.lora.get(&(l, part.to_string())) {
            let low = flat.matmul(&p.a.as_tensor().t()?)?;
            let up = low.matmul(&p.b.as_tensor().t()?)?;
            y = (y + (up * (self.alpha / self.rank as f64))?)?;
        }
        let out = y.dim(1)?;
        y.reshape((b, t, out))
    }

    /// RoPE on `[b, heads, t, hd]`, in the model's own pairing of dimensions.
    fn rope(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, h, t, hd) = x.dims4()?;
        let half = hd / 2;
        let cos = self.cos.narrow(0, 0, t)?;
        let sin = self.sin.narrow(0, 0, t)?;
        match self.weights.config.rope_style {
            RopeStyle::Interleaved => {
                let pairs = x.reshape((b, h, t, half, 2))?;
                let x0 = pairs.narrow(4, 0, 1)?.squeeze(4)?;
                let x1 = pairs.narrow(4, 1, 1)?.squeeze(4)?;
                let r0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
                let r1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
                Tensor::stack(&[r0, r1], 4)?.reshape((b, h, t, hd))
            }
            RopeStyle::Half => {
                let x0 = x.narrow(3, 0, half)?;
                let x1 = x.narrow(3, half, half)?;
                let r0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
                let r1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
                Tensor::cat(&[r0, r1], 3)
            }
        }
    }

    /// Logits `[b, t, V]` for token ids `[b, t]` (right-padded rows are fine: attention is
    /// causal, so real tokens never see the padding after them).
    pub fn forward(
        &self,
        ids: &Tensor,
        intervention: Option<&TrainIntervention>,
    ) -> candle_core::Result<Tensor> {
        let c = &self.weights.config;
        let (b, t) = ids.dims2()?;
        let (nh, nkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let eps = c.rms_eps;
        let dev = self.device();
        let mut h = self
            .weights
            .embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, c.d_model))?;
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j > i { -1e9 } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), dev)?;
        let group = nh / nkv;
        for (l, block) in self.weights.blocks.iter().enumerate() {
            let x = rms_norm(&h, &block.attn_norm, eps)?;
            let heads =
                |y: Tensor, n: usize, norm: &Option<Tensor>| -> candle_core::Result<Tensor> {
                    let y = y.reshape((b, t, n, hd))?;
                    let y = match norm {
                        Some(w) => rms_norm(&y, w, eps)?,
                        None => y,
                    };
                    self.rope(&y.transpose(1, 2)?.contiguous()?)
                };
            let q = heads(self.project(l, "attn_q", &x)?, nh, &block.q_norm)?;
            let k = heads(self.project(l, "attn_k", &x)?, nkv, &block.k_norm)?;
            let v = self
                .project(l, "attn_v", &x)?
                .reshape((b, t, nkv, hd))?
                .transpose(1, 2)?;
            // Each key/value head serves `group` query heads.
            let repeat = |y: Tensor| -> candle_core::Result<Tensor> {
                y.unsqueeze(2)?
                    .broadcast_as((b, nkv, group, t, hd))?
                    .reshape((b, nh, t, hd))
            };
            let (k, v) = (repeat(k)?, repeat(v.contiguous()?)?);
            let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?.broadcast_add(&mask)?;
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let attn = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b, t, nh * hd))?;
            let mid = (&h + self.project(l, "attn_output", &attn)?)?;
            let x = rms_norm(&mid, &block.mlp_norm, eps)?;
            let act =
                (self.project(l, "ffn_gate", &x)?.silu()? * self.project(l, "ffn_up", &x)?)?;
            h = (mid + self.project(l, "ffn_down", &act)?)?;
            if let Some(iv) = intervention {
                h = iv.apply(l, h)?;
            }
        }
        let normed = rms_norm(&h, &self.weights.final_norm, eps)?;
        normed
            .reshape((b * t, c.d_model))?
            .matmul(&self.weights.lm_head.t()?)?
            .reshape((b, t, c.vocab_size))
    }

    /// The adapter as it stands, in the engine's layout.
    pub fn adapter(&self) -> persona_engine::LoraAdapter {
        persona_engine::LoraAdapter {
            rank: self.rank,
            alpha: self.alpha,
            weights: self
                .lora
                .iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        (p.a.as_tensor().clone(), p.b.as_tensor().clone()),
                    )
                })
                .collect(),
        }
    }
}
