//! Loading Hugging Face model folders: `config.json`, `tokenizer.json`, `*.safetensors`.

use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{Device, Tensor};
use serde::Deserialize;

use crate::config::{Family, Llama3RopeScaling, ModelConfig, RopeStyle};
use crate::error::{EngineError, Result};
use crate::weights::{RawTensor, TensorSource};

#[derive(Deserialize)]
struct HfConfig {
    model_type: String,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    rope_scaling: Option<serde_json::Value>,
    #[serde(rename = "_name_or_path")]
    name_or_path: Option<String>,
}

pub(crate) struct HfFolder {
    dir: PathBuf,
    tensors: MmapedSafetensors,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| EngineError::Format {
        context: format!("{}", path.display()),
        message: format!("malformed JSON ({e})"),
    })
}

impl HfFolder {
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| EngineError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        shards.sort();
        if shards.is_empty() {
            return Err(EngineError::UnsupportedModel {
                path: dir.to_path_buf(),
                reason: "no *.safetensors weights in this folder (a Hugging Face model folder needs config.json, tokenizer.json and safetensors files)".into(),
            });
        }
        // SAFETY: the files are memory-mapped read-only; persona never writes them while loaded.
        let tensors = unsafe { MmapedSafetensors::multi(&shards) }.map_err(|e| {
            EngineError::UnsupportedModel {
                path: dir.to_path_buf(),
                reason: format!(
                    "cannot read the safetensors weights ({})",
                    crate::error::without_backtrace(e)
                ),
            }
        })?;
        Ok(HfFolder {
            dir: dir.to_path_buf(),
            tensors,
        })
    }

    pub(crate) fn config(&self) -> Result<ModelConfig> {
        let path = self.dir.join("config.json");
        let c: HfConfig = read_json(&path)?;
        let family = Family::parse(&c.model_type).ok_or_else(|| EngineError::UnsupportedModel {
            path: path.clone(),
            reason: format!(
                "model_type `{}` is not supported; supported: {}",
                c.model_type,
                Family::SUPPORTED
            ),
        })?;
        // Sizes the model is built from; a zero would divide by zero or build an empty model.
        for (key, value) in [
            ("num_hidden_layers", c.num_hidden_layers),
            ("hidden_size", c.hidden_size),
            ("num_attention_heads", c.num_attention_heads),
        ] {
            if value == 0 {
                return Err(EngineError::UnsupportedModel {
                    path: path.clone(),
                    reason: format!("{key} is 0: give the model's real size in config.json"),
                });
            }
        }
        let rope_scaling = match &c.rope_scaling {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(parse_rope_scaling(v, &path)?),
        };
        let tied =
            c.tie_word_embeddings.unwrap_or(false) || self.tensors.get("lm_head.weight").is_err();
        Ok(ModelConfig {
            family,
            name: c
                .name_or_path
                .clone()
                .unwrap_or_else(|| self.dir.display().to_string()),
            n_layers: c.num_hidden_layers,
            d_model: c.hidden_size,
            n_heads: c.num_attention_heads,
            n_kv_heads: c.num_key_value_heads.unwrap_or(c.num_attention_heads),
            head_dim: c.head_dim.unwrap_or(c.hidden_size / c.num_attention_heads),
            d_ff: c.intermediate_size,
            vocab_size: c.vocab_size,
            rope_theta: c.rope_theta.unwrap_or(10_000.0),
            rope_style: RopeStyle::Half,
            rope_scaling,
            rms_eps: c.rms_norm_eps.unwrap_or(1e-6),
            qkv_bias: family == Family::Qwen2 || c.attention_bias.unwrap_or(false),
            qk_norm: family == Family::Qwen3,
            tied_embeddings: tied,
            context_length: c.max_position_embeddings.unwrap_or(4096),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

fn parse_rope_scaling(v: &serde_json::Value, path: &Path) -> Result<Llama3RopeScaling> {
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(|x| x.as_str())
        .unwrap_or("");
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64());
    match (
        kind,
        num("factor"),
        num("low_freq_factor"),
        num("high_freq_factor"),
        num("original_max_position_embeddings"),
    ) {
        ("llama3", Some(factor), Some(lo), Some(hi), Some(orig)) => Ok(Llama3RopeScaling {
            factor,
            low_freq_factor: lo,
            high_freq_factor: hi,
            original_max_position_embeddings: orig as usize,
        }),
        _ => Err(EngineError::UnsupportedModel {
            path: path.to_path_buf(),
            reason: format!("rope_scaling {v} is not supported (only the `llama3` type is)"),
        }),
    }
}

/// HF parameter name for a GGUF tensor name.
pub(crate) fn hf_name(gguf: &str) -> Option<String> {
    Some(match gguf {
        "token_embd.weight" => "model.embed_tokens.weight".into(),
        "output_norm.weight" => "model.norm.weight".into(),
        "output.weight" => "lm_head.weight".into(),
        _ => {
            let rest = gguf.strip_prefix("blk.")?;
            let (layer, part) = rest.split_once('.')?;
            let (base, kind) = part.rsplit_once('.')?;
            let hf = match base {
                "attn_norm" => "input_layernorm",
                "ffn_norm" => "post_attention_layernorm",
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "attn_q_norm" => "self_attn.q_norm",
                "attn_k_norm" => "self_attn.k_norm",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                _ => return None,
            };
            format!("model.layers.{layer}.{hf}.{kind}")
        }
    })
}

/// Reorders q/k rows between llama.cpp's interleaved-RoPE layout and Hugging Face's: with
/// [`hf_name`], the mapping from the engine's GGUF layout to Hugging Face's that the folder
/// writer and the adapters share.
pub(crate) fn reorder_rows(
    w: &Tensor,
    heads: usize,
    head_dim: usize,
    to_hf: bool,
) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let rest: usize = dims[1..].iter().product();
    let t = if to_hf {
        w.reshape((heads, head_dim / 2, 2, rest))?
    } else {
        w.reshape((heads, 2, head_dim / 2, rest))?
    };
    Ok(t.transpose(1, 2)?.contiguous()?.reshape(dims)?)
}

impl TensorSource for HfFolder {
    fn take(&mut self, name: &str) -> Result<Option<RawTensor>> {
        let Some(hf) = hf_name(name) else {
            return Ok(None);
        };
        if self.tensors.get(&hf).is_err() {
            return Ok(None);
        }
        let t =
            self.tensors
                .load(&hf, &Device::Cpu)
                .map_err(|e| EngineError::UnsupportedModel {
                    path: self.dir.clone(),
                    reason: format!(
                        "cannot read tensor `{hf}` ({})",
                        crate::error::without_backtrace(e)
                    ),
                })?;
        Ok(Some(RawTensor::Dense(t)))
    }

    fn describe(&self) -> PathBuf {
        self.dir.clone()
    }

    fn stored_name(&self, name: &str) -> String {
        hf_name(name).unwrap_or_else(|| name.to_string())
    }

    fn config_origin(&self) -> &'static str {
        "config.json (hidden_size, intermediate_size, the head counts, vocab_size)"
    }
}
