//! The one decoder configuration every supported family maps onto.

use serde::Serialize;

/// How RoPE pairs the dimensions of a head. GGUF `llama` files store q/k permuted for the
/// interleaved form; Hugging Face checkpoints and GGUF `qwen2`/`qwen3` use the half-split form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeStyle {
    /// Pairs (2i, 2i+1): llama.cpp's normal rope, candle's `rope_i`.
    Interleaved,
    /// Pairs (i, i + d/2): "rotate_half", llama.cpp's NeoX rope, candle's `rope`.
    Half,
}

/// Llama 3.1-style frequency scaling (HF `rope_scaling` with `rope_type = "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// The architecture families that share the generic decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
}

impl Family {
    /// Parses a GGUF `general.architecture` or HF `model_type`.
    pub fn parse(name: &str) -> Option<Family> {
        match name {
            "llama" | "smollm" => Some(Family::Llama),
            "mistral" => Some(Family::Mistral),
            "qwen2" => Some(Family::Qwen2),
            "qwen3" => Some(Family::Qwen3),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
        }
    }

    pub const SUPPORTED: &'static str =
        "llama (SmolLM2, Llama 3.x), mistral, qwen2 (Qwen2/2.5), qwen3";
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelConfig {
    pub family: Family,
    pub name: String,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub d_ff: usize,
    pub vocab_size: usize,
    pub rope_theta: f64,
    pub rope_style: RopeStyle,
    pub rope_scaling: Option<Llama3RopeScaling>,
    pub rms_eps: f64,
    /// q/k/v projections carry biases (Qwen2).
    pub qkv_bias: bool,
    /// RMSNorm on each query/key head before RoPE (Qwen3).
    pub qk_norm: bool,
    pub tied_embeddings: bool,
    pub context_length: usize,
}

impl ModelConfig {
    /// Inverse RoPE frequencies, one per dimension pair, with Llama 3 scaling when configured.
    pub fn rope_inv_freqs(&self) -> Vec<f32> {
        let half = self.head_dim / 2;
        (0..half)
            .map(|i| {
                let base = 1.0 / self.rope_theta.powf(2.0 * i as f64 / self.head_dim as f64);
                match &self.rope_scaling {
                    None => base as f32,
                    Some(s) => llama3_scale(base, s) as f32,
                }
            })
            .collect()
    }

    /// Number of parameters in the blocks (embeddings excluded): decides the weight layout.
    pub fn block_parameters(&self) -> usize {
        let attn = self.d_model * self.head_dim * (2 * self.n_heads + 2 * self.n_kv_heads);
        let mlp = 3 * self.d_model * self.d_ff;
        self.n_layers * (attn + mlp)
    }
}

fn llama3_scale(freq: f64, s: &Llama3RopeScaling) -> f64 {
    let low_wavelen = s.original_max_position_embeddings as f64 / s.low_freq_factor;
    let high_wavelen = s.original_max_position_embeddings as f64 / s.high_freq_factor;
    let wavelen = 2.0 * std::f64::consts::PI / freq;
    if wavelen < high_wavelen {
        freq
    } else if wavelen > low_wavelen {
        freq / s.factor
    } else {
        let smooth = (s.original_max_position_embeddings as f64 / wavelen - s.low_freq_factor)
            / (s.high_freq_factor - s.low_freq_factor);
        (1.0 - smooth) * freq / s.factor + smooth * freq
    }
}
