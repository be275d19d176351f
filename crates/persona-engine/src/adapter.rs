//! LoRA adapters: low-rank updates W ← W + (α / r)·B·A of a model's projection weights, stored
//! the way PEFT stores them (`adapter_config.json` + `adapter_model.safetensors`, tensors named
//! `base_model.model.model.layers.L.self_attn.q_proj.lora_A.weight`, in Hugging Face layout), and
//! merged into the weights when a model loads with one.
//!
//! In memory an adapter is in the engine's layout (GGUF tensor names and row order): for GGUF
//! llama-family models llama.cpp stores q/k rows permuted for interleaved RoPE, so B's rows of
//! those projections are permuted on save and load, as the weights are in `persona convert`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use persona_core::fs::write_atomic;
use serde::{Deserialize, Serialize};

use crate::config::{ModelConfig, RopeStyle};
use crate::error::{EngineError, Result};
use crate::hf::{hf_name, reorder_rows};
use crate::weights::{RawTensor, TensorSource};

/// The projections an adapter may update, in GGUF naming.
pub const LORA_TARGETS: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

/// PEFT's name for a target module.
fn peft_module(part: &str) -> Option<&'static str> {
    Some(match part {
        "attn_q" => "q_proj",
        "attn_k" => "k_proj",
        "attn_v" => "v_proj",
        "attn_output" => "o_proj",
        "ffn_gate" => "gate_proj",
        "ffn_up" => "up_proj",
        "ffn_down" => "down_proj",
        _ => return None,
    })
}

fn peft_prefix(layer: usize, part: &str) -> Option<String> {
    let hf = hf_name(&format!("blk.{layer}.{part}.weight"))?;
    Some(format!("base_model.model.{}", hf.strip_suffix(".weight")?))
}

/// A LoRA adapter in the engine's layout.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    pub rank: usize,
    pub alpha: f64,
    /// `(layer, part)` → (A `[r, in]`, B `[out, r]`), f32.
    pub weights: BTreeMap<(usize, String), (Tensor, Tensor)>,
}

#[derive(Serialize, Deserialize)]
struct PeftConfig {
    peft_type: String,
    r: usize,
    lora_alpha: f64,
    target_modules: Vec<String>,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    #[serde(default = "causal_lm")]
    task_type: String,
    #[serde(default)]
    lora_dropout: f64,
    #[serde(default = "no_bias")]
    bias: String,
    #[serde(default)]
    fan_in_fan_out: bool,
}

fn causal_lm() -> String {
    "CAUSAL_LM".into()
}

fn no_bias() -> String {
    "none".into()
}

fn row_heads(config: &ModelConfig, part: &str) -> Option<usize> {
    if config.rope_style != RopeStyle::Interleaved {
        return None;
    }
    match part {
        "attn_q" => Some(config.n_heads),
        "attn_k" => Some(config.n_kv_heads),
        _ => None,
    }
}

fn bad(path: &Path, reason: String) -> EngineError {
    EngineError::UnsupportedModel {
        path: path.to_path_buf(),
        reason,
    }
}

impl LoraAdapter {
    /// (α / r): the factor B·A is scaled by.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// The weight update of one projection, `[out, in]`, if the adapter has it.
    pub fn delta(&self, layer: usize, part: &str) -> Result<Option<Tensor>> {
        match self.weights.get(&(layer, part.to_string())) {
            Some((a, b)) => Ok(Some((b.matmul(a)? * self.scale())?)),
            None => Ok(None),
        }
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` to `dir` (created if
    /// missing), in PEFT's names and Hugging Face layout.
    pub fn save_peft(&self, dir: &Path, config: &ModelConfig, base_model: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::write(dir, e))?;
        let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
        let mut modules: Vec<String> = Vec::new();
        for ((layer, part), (a, b)) in &self.weights {
            let prefix = peft_prefix(*layer, part)
                .ok_or_else(|| bad(dir, format!("`{part}` is not a LoRA target")))?;
            let b = match row_heads(config, part) {
                Some(h) => reorder_rows(b, h, config.head_dim, true)?,
                None => b.clone(),
            };
            tensors.insert(format!("{prefix}.lora_A.weight"), a.contiguous()?);
            tensors.insert(format!("{prefix}.lora_B.weight"), b.contiguous()?);
            let m = peft_module(part)
                .expect("targets have PEFT names")
                .to_string();
            if !modules.contains(&m) {
                modules.push(m);
            }
        }
        let cfg = PeftConfig {
            peft_type: "LORA".into(),
            r: self.rank,
            lora_alpha: self.alpha,
            target_modules: modules,
            base_model_name_or_path: Some(base_model.to_string()),
            task_type: causal_lm(),
            lora_dropout: 0.0,
            bias: no_bias(),
            fan_in_fan_out: false,
        };
        let weights_path = dir.join("adapter_model.safetensors");
        // Serialized in memory, then written with the usual file permissions.
        let bytes = safetensors::serialize(tensors.iter(), None)
            .map_err(|e| bad(&weights_path, format!("cannot serialize the adapter ({e})")))?;
        write_atomic(&weights_path, &bytes)?;
        let json = serde_json::to_string_pretty(&cfg).expect("config serializes");
        write_atomic(dir.join("adapter_config.json"), json.as_bytes())?;
        Ok(())
    }

    /// Reads a PEFT LoRA adapter folder for a model with `config`.
    pub fn load_peft(dir: &Path, config: &ModelConfig) -> Result<LoraAdapter> {
        let config_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| {
            bad(
                dir,
                format!("no readable adapter_config.json ({e}): give a folder written by `persona finetune` or PEFT"),
            )
        })?;
        let cfg: PeftConfig = serde_json::from_str(&text)
            .map_err(|e| bad(&config_path, format!("not a PEFT adapter config ({e})")))?;
        if cfg.peft_type != "LORA" {
            return Err(bad(
                &config_path,
                format!(
                    "peft_type is {}; only LORA adapters are supported",
                    cfg.peft_type
                ),
            ));
        }
        if cfg.fan_in_fan_out || cfg.bias != "none" {
            return Err(bad(
                &config_path,
                "fan_in_fan_out and trained biases are not supported".into(),
            ));
        }
        let weights_path = dir.join("adapter_model.safetensors");
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu).map_err(|e| {
            bad(
                &weights_path,
                format!(
                    "cannot read the adapter weights ({})",
                    crate::error::without_backtrace(e)
                ),
            )
        })?;
        let mut weights = BTreeMap::new();
        for layer in 0..config.n_layers {
            for part in LORA_TARGETS {
                let prefix = peft_prefix(layer, part).expect("targets have HF names");
                let a = tensors.get(&format!("{prefix}.lora_A.weight"));
                let b = tensors.get(&format!("{prefix}.lora_B.weight"));
                let (a, b) = match (a, b) {
                    (Some(a), Some(b)) => (a.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?),
                    (None, None) => continue,
                    _ => {
                        return Err(bad(
                            &weights_path,
                            format!("{prefix} has only one of lora_A and lora_B"),
                        ))
                    }
                };
                if a.dim(0)? != cfg.r || b.dim(1)? != cfg.r {
                    return Err(bad(
                        &weights_path,
                        format!(
                            "{prefix}: A is {:?} and B {:?} but the rank is {}",
                            a.dims(),
                            b.dims(),
                            cfg.r
                        ),
                    ));
                }
                let b = match row_heads(config, part) {
                    Some(h) => reorder_rows(&b, h, config.head_dim, false)?,
                    None => b,
                };
                weights.insert((layer, part.to_string()), (a, b));
            }
        }
        if weights.is_empty() {
            return Err(bad(
                &weights_path,
                "no LoRA weights for this model's layers (was it trained on another model?)".into(),
            ));
        }
        Ok(LoraAdapter {
            rank: cfg.r,
            alpha: cfg.lora_alpha,
            weights,
        })
    }
}

/// A tensor source that merges an adapter into the weights it hands out.
pub(crate) struct MergedSource<'a> {
    pub inner: &'a mut dyn TensorSource,
    pub adapter: &'a LoraAdapter,
    pub device: Device,
}

impl TensorSource for MergedSource<'_> {
    fn take(&mut self, name: &str) -> Result<Option<RawTensor>> {
        let raw = self.inner.take(name)?;
        let target = name
            .strip_prefix("blk.")
            .and_then(|r| r.strip_suffix(".weight"))
            .and_then(|r| r.split_once('.'))
            .and_then(|(l, part)| Some((l.parse::<usize>().ok()?, part)));
        let Some((layer, part)) = target else {
            return Ok(raw);
        };
        let Some(raw) = raw else {
            return Ok(None);
        };
        let Some(delta) = self.adapter.delta(layer, part)? else {
            return Ok(Some(raw));
        };
        let w = raw.to_f32(&self.device)?;
        if w.dims() != delta.dims() {
            return Err(bad(
                &self.inner.describe(),
                format!(
                    "the adapter's update of {name} is {:?} but the weight is {:?}: it was trained on another model",
                    delta.dims(),
                    w.dims()
                ),
            ));
        }
        Ok(Some(RawTensor::Dense(
            (w + delta.to_device(&self.device)?)?,
        )))
    }

    fn describe(&self) -> PathBuf {
        self.inner.describe()
    }

    fn stored_name(&self, name: &str) -> String {
        self.inner.stored_name(name)
    }

    fn config_origin(&self) -> &'static str {
        self.inner.config_origin()
    }
}

/// One block's weights as dense f32 tensors (GGUF layout), for training.
#[derive(Debug, Clone)]
pub struct DenseBlock {
    pub attn_norm: Tensor,
    pub mlp_norm: Tensor,
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
    /// Part name (`attn_q`, …) → (weight `[out, in]`, bias `[out]`).
    pub linears: BTreeMap<String, (Tensor, Option<Tensor>)>,
}

/// A model's weights as dense f32 tensors: what a training forward pass differentiates
/// through (frozen) while only adapter weights learn.
#[derive(Debug, Clone)]
pub struct DenseWeights {
    pub config: ModelConfig,
    /// `[V, d]`.
    pub embed: Tensor,
    pub blocks: Vec<DenseBlock>,
    pub final_norm: Tensor,
    /// `[V, d]`.
    pub lm_head: Tensor,
    /// The model's RoPE tables `[context, head_dim / 2]`: cos and sin of position × frequency.
    pub rope_cos: Tensor,
    pub rope_sin: Tensor,
}
