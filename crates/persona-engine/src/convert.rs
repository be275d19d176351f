//! Writing a loaded model as a Hugging Face folder (`config.json`, `tokenizer.json`,
//! `tokenizer_config.json`, `model.safetensors`), so GGUF-only models open in transformers.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use persona_core::fs::write_atomic;
use serde_json::json;

use crate::config::{Family, RopeStyle};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::hf::{hf_name, reorder_rows};
use crate::safetensors_out::write_safetensors;

/// The files a Hugging Face folder from [`Engine::write_hf_folder`] holds.
pub const HF_FOLDER_FILES: [&str; 4] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "model.safetensors",
];

/// Safetensors dtype of the written weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvertDType {
    F32,
    F16,
    BF16,
}

impl ConvertDType {
    fn candle(self) -> DType {
        match self {
            ConvertDType::F32 => DType::F32,
            ConvertDType::F16 => DType::F16,
            ConvertDType::BF16 => DType::BF16,
        }
    }

    fn torch_name(self) -> &'static str {
        match self {
            ConvertDType::F32 => "float32",
            ConvertDType::F16 => "float16",
            ConvertDType::BF16 => "bfloat16",
        }
    }
}

impl Engine {
    /// Writes this model as a Hugging Face model folder at `dir` (created if missing).
    pub fn write_hf_folder(&self, dir: &Path, dtype: ConvertDType) -> Result<()> {
        if dir.exists() && !dir.is_dir() {
            return Err(EngineError::InvalidRequest(format!(
                "{} is a file, but a Hugging Face model is a folder (config.json, tokenizer.json, tokenizer_config.json, model.safetensors): give a folder path",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| EngineError::write(dir, e))?;
        let model = self.model();
        let c = &model.config;
        let dev = model.device.clone();
        let interleaved = c.rope_style == RopeStyle::Interleaved;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        let mut put = |gguf: String, t: Tensor| -> Result<()> {
            let name = hf_name(&gguf).expect("every written tensor has an HF name");
            tensors.insert(name, t.to_dtype(dtype.candle())?.contiguous()?);
            Ok(())
        };
        for (l, block) in model.blocks().iter().enumerate() {
            for (part, lin) in block.linears() {
                let mut w = lin.to_dense(&dev)?;
                let mut b = lin.bias().cloned();
                if interleaved && (part == "attn_q" || part == "attn_k") {
                    let heads = if part == "attn_q" {
                        c.n_heads
                    } else {
                        c.n_kv_heads
                    };
                    w = reorder_rows(&w, heads, c.head_dim, true)?;
                    if let Some(bias) = b {
                        b = Some(
                            reorder_rows(&bias.unsqueeze(1)?, heads, c.head_dim, true)?
                                .squeeze(1)?,
                        );
                    }
                }
                put(format!("blk.{l}.{part}.weight"), w)?;
                if let Some(bias) = b {
                    put(format!("blk.{l}.{part}.bias"), bias)?;
                }
            }
            for (part, w) in block.norms() {
                put(format!("blk.{l}.{part}.weight"), w.clone())?;
            }
        }
        put("token_embd.weight".into(), model.embed_table().clone())?;
        put("output_norm.weight".into(), model.final_norm().clone())?;
        if !c.tied_embeddings {
            put("output.weight".into(), model.lm_head().to_dense(&dev)?)?;
        }
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        let st_path = dir.join("model.safetensors");
        write_safetensors(&st_path, &tensors, metadata)?;

        let model_type = match c.family {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
        };
        let arch = match c.family {
            Family::Llama => "LlamaForCausalLM",
            Family::Mistral => "MistralForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Qwen3 => "Qwen3ForCausalLM",
        };
        let tok = self.tokenizer();
        let config = json!({
            "architectures": [arch],
            "model_type": model_type,
            "_name_or_path": c.name,
            "hidden_size": c.d_model,
            "intermediate_size": c.d_ff,
            "num_hidden_layers": c.n_layers,
            "num_attention_heads": c.n_heads,
            "num_key_value_heads": c.n_kv_heads,
            "head_dim": c.head_dim,
            "vocab_size": c.vocab_size,
            "rms_norm_eps": c.rms_eps,
            "rope_theta": c.rope_theta,
            "max_position_embeddings": c.context_length,
            "tie_word_embeddings": c.tied_embeddings,
            "attention_bias": c.qkv_bias,
            "hidden_act": "silu",
            "torch_dtype": dtype.torch_name(),
            "bos_token_id": tok.bos_id(),
            "eos_token_id": tok.eos_ids().first(),
        });
        write_atomic(
            dir.join("config.json"),
            serde_json::to_string_pretty(&config)
                .expect("JSON values serialize")
                .as_bytes(),
        )?;
        write_atomic(
            dir.join("tokenizer.json"),
            tok.to_tokenizer_json()?.as_bytes(),
        )?;
        let piece = |id: Option<u32>| id.and_then(|i| tok.id_to_piece(i));
        let tc = json!({
            "chat_template": self.info().chat_template,
            "bos_token": piece(tok.bos_id()),
            "eos_token": piece(tok.eos_ids().first().copied()),
            "add_bos_token": tok.add_bos(),
            "tokenizer_class": "PreTrainedTokenizerFast",
        });
        write_atomic(
            dir.join("tokenizer_config.json"),
            serde_json::to_string_pretty(&tc)
                .expect("JSON values serialize")
                .as_bytes(),
        )?;
        Ok(())
    }
}
