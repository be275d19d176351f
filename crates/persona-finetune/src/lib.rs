//! LoRA finetuning of the engine's models in Rust: the frozen weights (dequantized to f32), low
//! rank factors on the attention and MLP projections, cross-entropy on the response tokens
//! only, AdamW, checkpoints per epoch, and adapters saved the way PEFT saves them (so
//! `--adapter DIR` loads them in every persona command, and PEFT loads them in Python).
//! Optionally a trait direction is added to (preventative steering) or projected out of
//! (ablation) the residual stream while training, never afterwards.

pub mod data;
pub mod frozen;
mod fused;
pub mod model;
pub mod optim;
pub mod train;

pub use data::{load_dataset, TrainSeq};
pub use frozen::FrozenProducts;
pub use model::{LoraModel, TrainIntervention};
pub use train::{finetune, FinetuneOptions, FinetuneResult, StepReport, Trainer};

#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Engine(#[from] persona_engine::EngineError),
    #[error(transparent)]
    Dataset(#[from] persona_io::DatasetError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Input(String),
}

impl From<persona_core::fs::WriteError> for FinetuneError {
    fn from(e: persona_core::fs::WriteError) -> FinetuneError {
        FinetuneError::Write {
            path: e.path,
            source: e.source,
        }
    }
}
