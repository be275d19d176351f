//! The generic decoder (Llama / Mistral / Qwen2 / Qwen3) with a hook at every named point.

use candle_core::{DType, Device, Tensor};
use candle_nn::kv_cache::KvCache;
use persona_kernels::attention::{self as cpu_attention, AttentionShape, Bf16, KvElement, Rope};

use crate::capture::CaptureState;
use crate::chunk::{ChunkContext, Layout};
use crate::config::{ModelConfig, RopeStyle};
use crate::error::{EngineError, Result};
use crate::hooks::{HookPoint, HookSite};
use crate::host::with_host_f32;
use crate::intervene::HookPlan;
use crate::weights::{forward_group, Linear, RawTensor, TensorSource, WeightMode};

/// Which logits a forward call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogitsWanted {
    None,
    /// `[B, V]` at each row's last real column.
    Last,
    /// `[B, T, V]`.
    All,
}

/// Key/value caches of every layer: the CPU kernel's own (f32 in the exact layout, bf16
/// otherwise), or candle's on other devices.
pub(crate) enum Caches {
    CpuF32(Vec<cpu_attention::KvCache<f32>>),
    CpuBf16(Vec<cpu_attention::KvCache<Bf16>>),
    Generic(Vec<KvCache>),
}

enum LayerCache<'a> {
    CpuF32(&'a mut cpu_attention::KvCache<f32>),
    CpuBf16(&'a mut cpu_attention::KvCache<Bf16>),
    Generic(Option<&'a mut KvCache>),
}

impl Caches {
    fn layer(&mut self, l: usize) -> LayerCache<'_> {
        match self {
            Caches::CpuF32(cs) => LayerCache::CpuF32(&mut cs[l]),
            Caches::CpuBf16(cs) => LayerCache::CpuBf16(&mut cs[l]),
            Caches::Generic(cs) => LayerCache::Generic(Some(&mut cs[l])),
        }
    }

    /// Caches of `batch` sequences, each a copy of sequence 0 of these.
    pub(crate) fn fork_first(&self, batch: usize) -> Result<Caches> {
        Ok(match self {
            Caches::CpuF32(cs) => Caches::CpuF32(cs.iter().map(|c| c.fork_first(batch)).collect()),
            Caches::CpuBf16(cs) => {
                Caches::CpuBf16(cs.iter().map(|c| c.fork_first(batch)).collect())
            }
            Caches::Generic(cs) => {
                let mut out = Vec::with_capacity(cs.len());
                for c in cs {
                    let mut forked = KvCache::new(2, c.k_cache().max_seq_len());
                    if let (Some(k), Some(v)) = (c.k()?, c.v()?) {
                        let k = k.narrow(0, 0, 1)?.repeat((batch, 1, 1, 1))?;
                        let v = v.narrow(0, 0, 1)?.repeat((batch, 1, 1, 1))?;
                        forked.append(&k.contiguous()?, &v.contiguous()?)?;
                    }
                    out.push(forked);
                }
                Caches::Generic(out)
            }
        })
    }

    /// Layer 0's cache, emptied: a one-layer scratch cache reused by every layer of a pass.
    fn emptied_first(&mut self) -> LayerCache<'_> {
        match self {
            Caches::CpuF32(cs) => cs[0].clear(),
            Caches::CpuBf16(cs) => cs[0].clear(),
            Caches::Generic(cs) => cs[0].reset(),
        }
        self.layer(0)
    }
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
    /// The same tables on the host, for the CPU attention kernel.
    cos_host: Vec<f32>,
    sin_host: Vec<f32>,
    /// Attention through the CPU kernel (else through candle ops, on any device).
    cpu_kernels: bool,
    pub mode: WeightMode,
}

fn require(src: &mut dyn TensorSource, name: &str, arch: &str) -> Result<RawTensor> {
    src.take(name)?.ok_or_else(|| EngineError::MissingTensor {
        path: src.describe(),
        name: name.to_string(),
        arch: arch.to_string(),
    })
}

fn check_shape(
    src: &dyn TensorSource,
    name: &str,
    raw: &RawTensor,
    expected: &[usize],
) -> Result<()> {
    let found = raw.dims();
    if found != expected {
        return Err(EngineError::ShapeMismatch {
            path: src.describe(),
            name: src.stored_name(name),
            found: found.into(),
            expected: expected.into(),
            config: src.config_origin(),
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
            check_shape(src, name, &raw, &[len])?;
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
                check_shape(src, &name, &raw, &[out, inp])?;
                let bias = if with_bias {
                    let bname = format!("blk.{l}.{part}.bias");
                    let b = require(src, &bname, arch)?;
                    check_shape(src, &bname, &b, &[out])?;
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
        check_shape(src, "token_embd.weight", &embed_raw, &[c.vocab_size, d])?;
        let embed = embed_raw.to_f32(device)?;
        let lm_head = match src.take("output.weight")? {
            Some(raw) if !c.tied_embeddings => {
                check_shape(src, "output.weight", &raw, &[c.vocab_size, d])?;
                Linear::new(raw, None, mode, device)?
            }
            // Tied: the head is the embedding matrix. The quantized layout keeps the file's own
            // quantization of it; the others derive their copies from the f32 table.
            _ => match mode {
                WeightMode::Quantized => Linear::new(embed_raw, None, mode, device)?,
                _ => Linear::new(RawTensor::Dense(embed.clone()), None, mode, device)?,
            },
        };
        let (cos, sin) = rope_tables(&config, device)?;
        let cpu_kernels = device.is_cpu() && std::env::var_os("PERSONA_GENERIC_KERNELS").is_none();
        Ok(Model {
            cos_host: cos.flatten_all()?.to_vec1()?,
            sin_host: sin.flatten_all()?.to_vec1()?,
            cpu_kernels,
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

    pub(crate) fn new_caches(&self, batch: usize, max_len: usize) -> Caches {
        self.caches(self.config.n_layers, batch, max_len)
    }

    /// `layers` caches of the kind this model's attention uses.
    fn caches(&self, layers: usize, batch: usize, max_len: usize) -> Caches {
        let c = &self.config;
        let (b, kv, hd) = (batch, c.n_kv_heads, c.head_dim);
        if self.cpu_kernels && self.mode == WeightMode::F32 {
            Caches::CpuF32(
                (0..layers)
                    .map(|_| cpu_attention::KvCache::new(b, kv, hd, max_len))
                    .collect(),
            )
        } else if self.cpu_kernels {
            Caches::CpuBf16(
                (0..layers)
                    .map(|_| cpu_attention::KvCache::new(b, kv, hd, max_len))
                    .collect(),
            )
        } else {
            Caches::Generic((0..layers).map(|_| KvCache::new(2, max_len)).collect())
        }
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
        mut caches: Option<&mut Caches>,
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
        let mut ctx = ChunkContext::new(layout, &self.device);
        if let Some(cap) = capture.as_deref_mut() {
            cap.begin_chunk(layout);
        }
        let (cos, sin, mask) = if self.cpu_kernels {
            (None, None, None)
        } else {
            let (c, s) = self.rope_for(layout)?;
            (Some(c), Some(s), attention_mask(layout, &self.device)?)
        };
        // The CPU kernel keeps this pass's keys even without a cache: in one scratch layer.
        let mut scratch = (caches.is_none() && self.cpu_kernels).then(|| self.caches(1, b, t));
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
            let cache = match (caches.as_deref_mut(), scratch.as_mut()) {
                (Some(cs), _) => cs.layer(l),
                (None, Some(s)) => s.emptied_first(),
                (None, None) => LayerCache::Generic(None),
            };
            let attn = match cache {
                LayerCache::CpuF32(kv) => self.attention_cpu(block, &h, layout, kv)?,
                LayerCache::CpuBf16(kv) => self.attention_cpu(block, &h, layout, kv)?,
                LayerCache::Generic(kv) => self.attention(
                    block,
                    &h,
                    cos.as_ref().expect("tables exist on the generic path"),
                    sin.as_ref().expect("tables exist on the generic path"),
                    mask.as_ref(),
                    kv,
                )?,
            };
            let attn = hook(HookPoint::AttnOut, attn)?;
            let mid = hook(HookPoint::ResidMid, (h + attn)?)?;
            let x = candle_nn::ops::rms_norm(&mid, &block.mlp_norm, c.rms_eps as f32)?;
            let [gate, up]: [Tensor; 2] = forward_group(&[&block.gate, &block.up], &x)?
                .try_into()
                .expect("two projections");
            let act = (gate.silu()? * up)?;
            let mlp = hook(HookPoint::MlpOut, block.down.forward(&act)?)?;
            h = hook(HookPoint::ResidPost, (mid + mlp)?)?;
        }
        if let Some(cap) = capture {
            cap.end_chunk()?;
        }
        let hidden = match logits {
            LogitsWanted::None => return Ok(None),
            LogitsWanted::All => h,
            LogitsWanted::Last => {
                let cols: Vec<u32> = (0..b)
                    .map(|r| {
                        (layout.seq_len[r] as i64 - 1 - layout.col0[r]).clamp(0, t as i64 - 1)
                            as u32
                    })
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

    /// Attention through the CPU kernel: RoPE, cache append and causal attention in one call.
    fn attention_cpu<E: KvElement>(
        &self,
        block: &Block,
        h: &Tensor,
        layout: &Layout,
        cache: &mut cpu_attention::KvCache<E>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, t, _) = h.dims3()?;
        let (nh, nkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let x = candle_nn::ops::rms_norm(h, &block.attn_norm, c.rms_eps as f32)?;
        let normed = |y: Tensor, n: usize, norm: &Option<Tensor>| -> Result<Tensor> {
            Ok(match norm {
                Some(w) => {
                    candle_nn::ops::rms_norm(&y.reshape((b, t, n, hd))?, w, c.rms_eps as f32)?
                        .reshape((b, t, n * hd))?
                }
                None => y,
            }
            .contiguous()?)
        };
        let [q, k, v]: [Tensor; 3] = forward_group(&[&block.q, &block.k, &block.v], &x)?
            .try_into()
            .expect("three projections");
        let q = normed(q, nh, &block.q_norm)?;
        let k = normed(k, nkv, &block.k_norm)?;
        let v = v.contiguous()?;
        let past = cache.len();
        let positions: Vec<usize> = (0..b)
            .flat_map(|r| (0..t).map(move |col| (layout.col0[r] + col as i64).max(0) as usize))
            .collect();
        let first_key: Vec<usize> = (0..b)
            .map(|r| (past as i64 - layout.col0[r]).max(0) as usize)
            .collect();
        let shape = AttentionShape {
            batch: b,
            tokens: t,
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
            positions: &positions,
            first_key: &first_key,
            rope: match c.rope_style {
                RopeStyle::Interleaved => Rope::Interleaved,
                RopeStyle::Half => Rope::Half,
            },
            cos: &self.cos_host,
            sin: &self.sin_host,
        };
        let mut out = vec![0f32; b * t * nh * hd];
        with_host_f32(&q, |qs| {
            with_host_f32(&k, |ks| {
                with_host_f32(&v, |vs| {
                    cpu_attention::attend(&shape, qs, ks, vs, cache, &mut out)
                })
            })
        })???;
        let out = Tensor::from_vec(out, (b, t, nh * hd), &self.device)?;
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

    /// RoPE tables `[context, head_dim / 2]`: cos and sin.
    pub(crate) fn rope_tables(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
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
