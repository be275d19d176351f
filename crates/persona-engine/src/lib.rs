//! persona's engine: load real decoder models (GGUF or Hugging Face folders), run them in
//! batches, and expose every block's residual stream through named hook points.
//!
//! Pipelines never reach into layers: they describe captures and interventions as plain data
//! ([`CaptureSpec`], [`Intervention`]) and hand them to [`Engine::forward_batch`] or
//! [`Engine::generate`].

pub mod adapter;
mod capture;
mod chunk;
pub mod config;
mod continuations;
mod convert;
mod engine;
pub mod error;
mod generate;
mod gguf;
mod hf;
pub mod hooks;
mod host;
mod intervene;
mod model;
mod safetensors_out;
mod sampling;
mod weights;

pub use adapter::{DenseBlock, DenseWeights, LoraAdapter, LORA_TARGETS};
pub use candle_core::{DType, Device, Tensor};
pub use config::{Family, ModelConfig, RopeStyle};
pub use continuations::{Branches, MAX_CONTINUATION_TOKENS};
pub use convert::{ConvertDType, HF_FOLDER_FILES};
pub use engine::{
    Engine, ForwardOutput, ForwardRequest, LoadOptions, ModelFormat, ModelInfo, TokenScore,
    TokenSequence,
};
pub use error::{EngineError, Result};
pub use generate::{FinishReason, GenerateRequest, Generation};
pub use hooks::{
    CaptureSpec, HookPoint, HookSite, Intervention, InterventionKind, SequenceCaptures,
    SiteCapture, Span,
};
pub use persona_tokenizer::{ChatTemplate, Message, Tokenizer};
pub use sampling::SamplingParams;
pub use weights::WeightMode;

/// Sets the CPU thread count for tensor work. Call before the first model operation: candle
/// reads it once. `None` picks the physical core count.
pub fn set_threads(n: Option<usize>) {
    if let Some(n) = n {
        // SAFETY: called at start-up, before any thread that reads the environment exists.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
}
