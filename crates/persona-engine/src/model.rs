//! The generic decoder (Llama / Mistral / Qwen2 / Qwen3) with a hook at every named point.

use candle_core::{DType, Device, Tensor};
use candle_nn::kv_cache::KvCache;

use crate::capture::CaptureState;
use crate::config::{ModelConfig, RopeStyle};
use crate::error::{EngineError, Result};
use crate::hooks::{HookPoint, HookSite};
use crate::intervene::HookPlan;
use crate::weights::{Linear, RawTensor, WeightMode};

/// Where every row of a chunk sits in its own sequence.
///
/// Column `c` of row `r` holds position `col0[r] + c`; a negative position is left padding and a
/// position at or past `seq_len[r]` is right padding. Neither is ever captured or intervened on.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub t: usize,
    pub col0: Vec<i64>,
    pub prompt_len: Vec<usize>,
    pub seq_len: Vec<usize>,
    /// Key columns already in the KV cache before this chunk.
    pub past: usize,
}

impl Layout {
    pub fn b(&self) -> usize {
        self.col0.len()
    }

    pub fn position(&self, row: usize, col: usize) -> Option<usize> {
        let p = self.col0[row] + col as i64;
        (p >= 0 && (p as usize) < self.seq_len[row]).then_some(p as usize)
    }

    fn has_left_padding(&self) -> bool {
        // Left padding is anything before position 0 in the cache or the chunk.
        self.col0.iter().any(|&c| c - (self.past as i64) < 0)
    }
}

/// Which logits a forward call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogitsWanted {
    None,
    /// `[B, V]` at each row's last real column.
    Last,
    /// `[B, T, V]`.
    All,
}

pub(crate) struct Block {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    mlp_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub(crate) struct Model {
    pub config: ModelConfig,
    pub device: Device,
    /// `[V, d]` f32 token embeddings.
    embed: Tensor,
    blocks: Vec<Block>,
    final_norm: Tensor,
    lm_head: Linear,
    /// RoPE tables `[context, head_dim / 2]`.
    cos: Tensor,
    sin: Tensor,
    pub mode: WeightMode,
}

/// Where a loader finds tensors by their GGUF names (`blk.N.attn_q.weight`, ...).
pub(crate) trait TensorSource {
    fn take(&mut self, name: &str) -> Result<Option<RawTensor>>;
    fn describe(&self) -> std::path::PathBuf;
}

fn require(src: &mut dyn TensorSource, name: &str, arch: &str) -> Result<RawTensor> {
    src.take(name)?.ok_or_else(|| EngineError::MissingTensor {
        path: src.describe(),
        name: name.to_string(),
        arch: arch.to_string(),
    })
}

fn check_shape(name: &str, raw: &RawTensor, expected: &[usize]) -> Result<()> {
    let found = raw.dims();
    if found != expected {
        return Err(EngineError::ShapeMismatch {
            name: name.to_string(),
            found,
            expected: expected.to_vec(),
        });
    }
    Ok(())
}

impl Model {
    pub(crate) fn load(
        config: ModelConfig,
        src: &mut dyn TensorSource,
        mode: WeightMode,
        device: &Device,
    ) -> Result<Model> {
        let mode = mode.resolve(config.block_parameters());
        let arch = config.family.name();
        let c = &config;
        let (d, hd) = (c.d_model, c.head_dim);
        let vector = |src: &mut dyn TensorSource, name: &str, len: usize| -> Result<Tensor> {
            let raw = require(src, name, arch)?;
            check_shape(name, &raw, &[len])?;
            raw.to_f32(device)
        };
        let mut blocks = Vec::with_capacity(c.n_layers);
        for l in 0..c.n_layers {
            let linear = |src: &mut dyn TensorSource,
                              part: &str,
                              out: usize,
                              inp: usize,
                              with_bias: bool|
             -> Result<Linear> {
                let name = format!("blk.{l}.{part}.weight");
                let raw = require(src, &name, arch)?;
                check_shape(&name, &raw, &[out, inp])?;
                let bias = if with_bias {
                    let bname = format!("blk.{l}.{part}.bias");
                    let b = require(src, &bname, arch)?;
                    check_shape(&bname, &b, &[out])?;
                    Some(b.to_f32(device)?)
                } else {
                    None
                };
                Linear::new(raw, bias, mode, device)
            };
            let q = linear(src, "attn_q", c.n_heads * hd, d, c.qkv_bias)?;
            let k = linear(src, "attn_k", c.n_kv_heads * hd, d, c.qkv_bias)?;
            let v = linear(src, "attn_v", c.n_kv_heads * hd, d, c.qkv_bias)?;
            let o = linear(src, "attn_output", d, c.n_heads * hd, false)?;
            let gate = linear(src, "ffn_gate", c.d_ff, d, false)?;
            let up = linear(src, "ffn_up", c.d_ff, d, false)?;
            let down = linear(src, "ffn_down", d, c.d_ff, false)?;
            let (q_norm, k_norm) = if c.qk_norm {
                (
                    Some(vector(src, &format!("blk.{l}.attn_q_norm.weight"), hd)?),
                    Some(vector(src, &format!("blk.{l}.attn_k_norm.weight"), hd)?),
                )
            } else {
                (None, None)
            };
            blocks.push(Block {
                attn_norm: vector(src, &format!("blk.{l}.attn_norm.weight"), d)?,
                q,
                k,
                v,
                o,
                q_norm,
                k_norm,
                mlp_norm: vector(src, &format!("blk.{l}.ffn_norm.weight"), d)?,
                gate,
                up,
                down,
            });
        }
        let final_norm = vector(src, "output_norm.weight", d)?;
        let embed_raw = require(src, "token_embd.weight", arch)?;
        check_shape("token_embd.weight", &embed_raw, &[c.vocab_size, d])?;
        let embed = embed_raw.to_f32(device)?;
        let lm_head = match src.take("output.weight")? {
            Some(raw) if !c.tied_embeddings => {
                check_shape("output.weight", &raw, &[c.vocab_size, d])?;
                Linear::new(raw, None, mode, device)?
            }
            _ => {
                // Tied: the dense head is the embedding table itself; the quantized copy keeps
                // the file's own quantization of it for decode steps.
                let quant = if mode != WeightMode::F32 {
                    let q = match embed_raw {
                        RawTensor::Quant(q) => q,
                        RawTensor::Dense(_) => candle_core::quantized::QTensor::quantize(
                            &embed,
                            candle_core::quantized::GgmlDType::Q8_0,
                        )?,
                    };
                    Some(candle_core::quantized::QMatMul::from_qtensor(q)?)
                } else {
                    None
                };
                let dense = (mode != WeightMode::Quantized || quant.is_none()).then(|| embed.clone());
                Linear::from_parts(dense, quant)
            }
        };
        let (cos, sin) = rope_tables(&config, device)?;
        Ok(Model {
            config,
            device: device.clone(),
            embed,
            blocks,
            final_norm,
            lm_head,
            cos,
            sin,
            mode,
        })
    }

    pub(crate) fn new_caches(&self, max_len: usize) -> Vec<KvCache> {
        (0..self.config.n_layers)
            .map(|_| KvCache::new(2, max_len))
            .collect()
    }

    /// Bytes held by the weights (dense and quantized copies together).
    pub(crate) fn weight_bytes(&self) -> usize {
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                [&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down]
                    .iter()
                    .map(|l| l.bytes())
                    .sum::<usize>()
            })
            .sum();
        blocks + self.embed.elem_count() * 4 + self.lm_head.bytes()
    }

    /// One forward pass over a `[B, T]` chunk of token ids.
    pub(crate) fn forward(
        &self,
        ids: &Tensor,
        layout: &Layout,
        plan: &HookPlan,
        mut caches: Option<&mut [KvCache]>,
        mut capture: Option<&mut CaptureState>,
        logits: LogitsWanted,
    ) -> Result<Option<Tensor>> {
        let c = &self.config;
        let (b, t) = ids.dims2()?;
        if b != layout.b() || t != layout.t {
            return Err(EngineError::InvalidRequest(format!(
                "token chunk is {b}×{t} but its layout describes {}×{}",
                layout.b(),
                layout.t
            )));
        }
        let total = layout.past + t;
        if total > c.context_length {
            return Err(EngineError::ContextOverflow {
                len: total,
                max: c.context_length,
            });
        }
        let mut ctx = plan.chunk_context(layout, &self.device)?;
        if let Some(cap) = capture.as_deref_mut() {
            cap.begin_chunk(layout);
        }
        let (cos, sin) = self.rope_for(layout)?;
        let mask = attention_mask(layout, &self.device)?;
        let mut h = self
            .embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, c.d_model))?;
        let last_layer = match (logits, plan.last_needed_layer()) {
            (LogitsWanted::None, Some(l)) => l + 1,
            _ => c.n_layers,
        };
        for (l, block) in self.blocks.iter().enumerate().take(last_layer) {
            let mut hook = |point: HookPoint, x: Tensor| -> Result<Tensor> {
                let site = HookSite { layer: l, point };
                if !plan.touches(site) {
                    return Ok(x);
                }
                let x = plan.apply(site, x, &mut ctx)?;
                if let Some(cap) = capture.as_deref_mut() {
                    cap.record(site, &x, layout, &mut ctx)?;
                }
                Ok(x)
            };
            h = hook(HookPoint::ResidPre, h)?;
            let cache = caches.as_deref_mut().map(|cs| &mut cs[l]);
            let attn = self.attention(block, &h, &cos, &sin, mask.as_ref(), cache)?;
            let attn = hook(HookPoint::AttnOut, attn)?;
            let mid = hook(HookPoint::ResidMid, (h + attn)?)?;
            let x = candle_nn::ops::rms_norm(&mid, &block.mlp_norm, c.rms_eps as f32)?;
            let act = (block.gate.forward(&x)?.silu()? * block.up.forward(&x)?)?;
            let mlp = hook(HookPoint::MlpOut, block.down.forward(&act)?)?;
            h = hook(HookPoint::ResidPost, (mid + mlp)?)?;
        }
        if let Some(cap) = capture.as_deref_mut() {
            cap.end_chunk()?;
        }
        let hidden = match logits {
            LogitsWanted::None => return Ok(None),
            LogitsWanted::All => h,
            LogitsWanted::Last => {
                let cols: Vec<u32> = (0..b)
                    .map(|r| (layout.seq_len[r] as i64 - 1 - layout.col0[r]).clamp(0, t as i64 - 1) as u32)
                    .collect();
                let idx = Tensor::from_vec(cols, (b, 1, 1), &self.device)?
                    .broadcast_as((b, 1, c.d_model))?
                    .contiguous()?;
                h.gather(&idx, 1)?
            }
        };
        let normed = candle_nn::ops::rms_norm(&hidden, &self.final_norm, c.rms_eps as f32)?;
        let out = self.lm_head.forward(&normed)?;
        Ok(Some(match logits {
            LogitsWanted::Last => out.squeeze(1)?,
            _ => out,
        }))
    }

    fn attention(
        &self,
        block: &Block,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, t, _) = h.dims3()?;
        let (nh, nkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let x = candle_nn::ops::rms_norm(h, &block.attn_norm, c.rms_eps as f32)?;
        let heads = |y: Tensor, n: usize, norm: &Option<Tensor>| -> Result<Tensor> {
            let y = y.reshape((b, t, n, hd))?;
            let y = match norm {
                Some(w) => candle_nn::ops::rms_norm(&y.contiguous()?, w, c.rms_eps as f32)?,
                None => y,
            };
            let y = y.transpose(1, 2)?.contiguous()?;
            Ok(match c.rope_style {
                RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&y, cos, sin)?,
                RopeStyle::Half => candle_nn::rotary_emb::rope(&y, cos, sin)?,
            })
        };
        let q = heads(block.q.forward(&x)?, nh, &block.q_norm)?;
        let k = heads(block.k.forward(&x)?, nkv, &block.k_norm)?;
        let v = block
            .v
            .forward(&x)?
            .reshape((b, t, nkv, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let (k, v) = match cache {
            Some(cache) => cache.append(&k, &v)?,
            None => (k, v),
        };
        let s = k.dim(2)?;
        let group = nh / nkv;
        // Query heads kv*group .. kv*group+group share key/value head kv: fold them into rows.
        let q = q.reshape((b, nkv, group * t, hd))?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let scores = match mask {
            Some(m) => scores
                .reshape((b, nkv, group, t, s))?
                .broadcast_add(m)?
                .reshape((b, nkv, group * t, s))?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs
            .matmul(&v)?
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        block.o.forward(&out)
    }

    /// cos/sin for the chunk: shared `[T, hd/2]` when every row starts at the same position,
    /// else `[B, T, hd/2]` gathered per row.
    fn rope_for(&self, layout: &Layout) -> Result<(Tensor, Tensor)> {
        let t = layout.t;
        let first = layout.col0[0];
        if first >= 0 && layout.col0.iter().all(|&c| c == first) {
            let start = first as usize;
            return Ok((
                self.cos.narrow(0, start, t)?.contiguous()?,
                self.sin.narrow(0, start, t)?.contiguous()?,
            ));
        }
        let idx: Vec<u32> = (0..layout.b())
            .flat_map(|r| (0..t).map(move |col| (layout.col0[r] + col as i64).max(0) as u32))
            .collect();
        let idx = Tensor::from_vec(idx, layout.b() * t, &self.device)?;
        let half = self.config.head_dim / 2;
        let gather = |table: &Tensor| -> Result<Tensor> {
            Ok(table
                .index_select(&idx, 0)?
                .reshape((layout.b(), t, half))?
                .contiguous()?)
        };
        Ok((gather(&self.cos)?, gather(&self.sin)?))
    }

    pub(crate) fn embed_table(&self) -> &Tensor {
        &self.embed
    }

    pub(crate) fn final_norm(&self) -> &Tensor {
        &self.final_norm
    }

    pub(crate) fn lm_head(&self) -> &Linear {
        &self.lm_head
    }

    pub(crate) fn blocks(&self) -> &[Block] {
        &self.blocks
    }
}

impl Block {
    /// (name, linear) pairs in GGUF naming, for conversion.
    pub(crate) fn linears(&self) -> [(&'static str, &Linear); 7] {
        [
            ("attn_q", &self.q),
            ("attn_k", &self.k),
            ("attn_v", &self.v),
            ("attn_output", &self.o),
            ("ffn_gate", &self.gate),
            ("ffn_up", &self.up),
            ("ffn_down", &self.down),
        ]
    }

    pub(crate) fn norms(&self) -> Vec<(&'static str, &Tensor)> {
        let mut v = vec![("attn_norm", &self.attn_norm), ("ffn_norm", &self.mlp_norm)];
        if let (Some(q), Some(k)) = (&self.q_norm, &self.k_norm) {
            v.push(("attn_q_norm", q));
            v.push(("attn_k_norm", k));
        }
        v
    }
}

fn rope_tables(c: &ModelConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let inv = c.rope_inv_freqs();
    let half = inv.len();
    let n = c.context_length;
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for p in 0..n {
        for f in &inv {
            let a = p as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, half), device)?,
        Tensor::from_vec(sin, (n, half), device)?,
    ))
}

/// Additive mask `[B or 1, 1, 1, T, S]`: causal, and no attention to left padding. `None` when a
/// single query needs no mask.
fn attention_mask(layout: &Layout, device: &Device) -> Result<Option<Tensor>> {
    let (t, past) = (layout.t, layout.past);
    let s = past + t;
    let left = layout.has_left_padding();
    if t == 1 && !left {
        return Ok(None);
    }
    let rows = if left { layout.b() } else { 1 };
    let mut m = vec![0f32; rows * t * s];
    for r in 0..rows {
        let key0 = layout.col0[r] - past as i64; // position of key column 0
        for i in 0..t {
            for j in 0..s {
                let allowed = j <= past + i && (key0 + j as i64 >= 0 || j == past + i);
                if !allowed {
                    m[(r * t + i) * s + j] = f32::NEG_INFINITY;
                }
            }
        }
    }
    Ok(Some(
        Tensor::from_vec(m, (rows, 1, 1, t, s), device)?.to_dtype(DType::F32)?,
    ))
}

