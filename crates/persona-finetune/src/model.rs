//! The decoder as plain candle operations, so that gradients flow: the model's weights are
//! frozen tensors, only the LoRA factors are variables. It mirrors the engine's forward pass
//! (RMSNorm, RoPE in the model's own style, grouped-query attention, SwiGLU) without its
//! inference kernels, which have no backward pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var, D};
use persona_core::stats::SplitMix;
use persona_engine::{DenseWeights, RopeStyle};

use crate::frozen::{FrozenMatrix, FrozenProducts};
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
    /// The frozen weights packed for fast products; `None`: plain f32 matmuls.
    frozen: Option<Frozen>,
}

struct Frozen {
    linears: BTreeMap<(usize, String), Arc<FrozenMatrix>>,
    lm_head: Arc<FrozenMatrix>,
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
            frozen: None,
        })
    }

    /// Computes the frozen weights' products as `products` says (a new model computes them
    /// with plain f32 matmuls, the reference).
    pub fn with_products(mut self, products: FrozenProducts) -> candle_core::Result<LoraModel> {
        self.frozen = match products {
            FrozenProducts::Reference => None,
            FrozenProducts::Fast => {
                let mut linears = BTreeMap::new();
                for (l, block) in self.weights.blocks.iter().enumerate() {
                    for (part, (w, _)) in &block.linears {
                        linears.insert((l, part.clone()), FrozenMatrix::new(w)?);
                    }
                }
                Some(Frozen {
                    linears,
                    lm_head: FrozenMatrix::new(&self.weights.lm_head)?,
                })
            }
        };
        Ok(self)
    }

    /// The trainable factors, in a fixed order (layer, projection, A before B).
    pub fn vars(&self) -> Vec<Var> {
        self.lora
            .values()
            .flat_map(|p| [p.a.clone(), p.b.clone()])
            .collect()
    }

    /// Names of [`Self::vars`], in the same order: `LAYER.PART.a`, `LAYER.PART.b`.
    pub fn var_names(&self) -> Vec<String> {
        self.lora
            .keys()
            .flat_map(|(l, part)| [format!("{l}.{part}.a"), format!("{l}.{part}.b")])
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
        let mut y = match &self.frozen {
            Some(f) => f.linears[&(l, part.to_string())].forward(&flat)?,
            None => flat.matmul(&w.t()?)?,
        };
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

    /// Whether the fast path (packed products, fused ops) is on.
    pub fn is_fast(&self) -> bool {
        self.frozen.is_some()
    }

    /// RMSNorm with a frozen weight: fused on the fast path.
    fn norm(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        let eps = self.weights.config.rms_eps;
        if self.is_fast() {
            crate::fused::rms_norm(x, w, eps)
        } else {
            rms_norm(x, w, eps)
        }
    }

    /// RoPE on `[b, heads, t, hd]`, in the model's own pairing of dimensions.
    fn rope(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.is_fast() {
            return crate::fused::rope(x, &self.cos, &self.sin, self.weights.config.rope_style);
        }
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
        let (b, t) = ids.dims2()?;
        let h = self.hidden(ids, intervention)?;
        self.logits(&h.reshape((b * t, self.weights.config.d_model))?)?
            .reshape((b, t, self.weights.config.vocab_size))
    }

    /// Logits `[n, V]` of residual-stream rows `[n, d]` after the last block.
    pub fn logits(&self, rows: &Tensor) -> candle_core::Result<Tensor> {
        let normed = self.norm(rows, &self.weights.final_norm)?;
        match &self.frozen {
            Some(f) => f.lm_head.forward(&normed),
            None => normed.matmul(&self.weights.lm_head.t()?),
        }
    }

    /// The residual stream `[b, t, d]` after the last block, for token ids `[b, t]`.
    pub fn hidden(
        &self,
        ids: &Tensor,
        intervention: Option<&TrainIntervention>,
    ) -> candle_core::Result<Tensor> {
        let mut h = self.embed(ids)?;
        let mask = self.causal_mask(ids.dim(1)?)?;
        for l in 0..self.weights.blocks.len() {
            h = self.block(l, &h, &mask, intervention)?;
        }
        Ok(h)
    }

    /// The token embeddings `[b, t, d]` of ids `[b, t]` (frozen: no gradient flows into them).
    pub fn embed(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        self.weights
            .embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, self.weights.config.d_model))
    }

    /// The additive causal mask `[t, t]`: 0 on and below the diagonal, −10⁹ above it.
    pub fn causal_mask(&self, t: usize) -> candle_core::Result<Tensor> {
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j > i { -1e9 } else { 0.0 }))
            .collect();
        Tensor::from_vec(mask, (t, t), self.device())
    }

    /// Block `l` on the residual stream `h` `[b, t, d]`, then the training intervention's
    /// effect at its `resid_post`.
    pub fn block(
        &self,
        l: usize,
        h: &Tensor,
        mask: &Tensor,
        intervention: Option<&TrainIntervention>,
    ) -> candle_core::Result<Tensor> {
        let c = &self.weights.config;
        let (b, t, _) = h.dims3()?;
        let (nh, nkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let group = nh / nkv;
        let block = &self.weights.blocks[l];
        let x = self.norm(h, &block.attn_norm)?;
        let heads = |y: Tensor, n: usize, norm: &Option<Tensor>| -> candle_core::Result<Tensor> {
            let y = y.reshape((b, t, n, hd))?;
            let y = match norm {
                Some(w) => self.norm(&y, w)?,
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
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let attn = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        let mid = (h + self.project(l, "attn_output", &attn)?)?;
        let x = self.norm(&mid, &block.mlp_norm)?;
        let act = (self.project(l, "ffn_gate", &x)?.silu()? * self.project(l, "ffn_up", &x)?)?;
        let out = (mid + self.project(l, "ffn_down", &act)?)?;
        match intervention {
            Some(iv) => iv.apply(l, out),
            None => Ok(out),
        }
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
