//! persona's pipelines over the engine. Each one plans its prompts, runs them through
//! `Engine::forward_batch` / `Engine::generate` (answers and judgements cached in a
//! [`store::RunStore`]), and summarises with pure functions of the answers and judgements. The
//! library never decides where output goes: results come back typed, artifacts go to the store.

pub mod answers;
pub mod axis;
mod axis_cap;
pub mod cap;
pub mod drift;
pub mod em;
pub mod extract;
pub mod judging;
pub mod monitor;
pub mod report;
pub mod run_dir;
pub mod screen;
pub mod shift;
pub mod steer;
pub mod steer_spec;
pub mod store;
pub mod vector_meta;

pub use run_dir::RunDir;
pub use steer_spec::SteerSpec;
pub use store::{DirStore, MemoryStore, RunStore};
pub use vector_meta::VectorMeta;

use std::path::{Path, PathBuf};

/// Errors of the pipelines.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Engine(#[from] persona_engine::EngineError),
    #[error(transparent)]
    Io(#[from] persona_io::IoError),
    #[error(transparent)]
    Answers(#[from] answers::AnswerError),
    #[error(transparent)]
    Judge(#[from] persona_judges::JudgeError),
    #[error(transparent)]
    Dataset(#[from] persona_io::DatasetError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{path} holds vectors of size {got} but the model's hidden size is {want}: it was made with another model")]
    VectorSize {
        path: PathBuf,
        got: usize,
        want: usize,
    },
    #[error("{0}")]
    Input(String),
    #[error("{side} conversation {index}: {message}")]
    Conversation {
        side: &'static str,
        index: usize,
        message: String,
    },
    #[error("only {pos} positive and {neg} negative rollouts passed the filter (at least {min} of each are needed): the judge found too little contrast. Use --no-filter, more --samples, or a judge that fits this trait")]
    TooFewSurvivors { pos: usize, neg: usize, min: usize },
}

/// A trait's vectors and the file they came from (named in errors and results).
#[derive(Debug, Clone, Copy)]
pub struct VectorSource<'a> {
    pub vectors: &'a persona_io::LayerVectors,
    pub file: &'a Path,
}

impl<'a> VectorSource<'a> {
    /// The vector at `layer`, checked against the model's hidden size.
    pub fn layer(&self, layer: usize, d_model: usize) -> Result<&'a [f32], PipelineError> {
        let v = self.vectors.get(layer, self.file)?;
        if v.len() != d_model {
            return Err(PipelineError::VectorSize {
                path: self.file.to_path_buf(),
                got: v.len(),
                want: d_model,
            });
        }
        Ok(v)
    }
}

/// Puts vectors in `store` as a persona safetensors file named `name`.
pub(crate) fn put_vectors(
    store: &dyn RunStore,
    name: &str,
    vectors: &persona_io::LayerVectors,
) -> Result<PathBuf, PipelineError> {
    let bytes = vectors.to_safetensors().map_err(|e| {
        PipelineError::Input(format!("cannot serialize the vectors of {name}: {e}"))
    })?;
    Ok(store.put(name, &bytes)?)
}

/// The mean and its normal 95 % interval, each `None` where there are too few values.
pub(crate) fn mean_and_ci(
    values: impl IntoIterator<Item = f64>,
) -> (Option<f64>, Option<(f64, f64)>) {
    let values: Vec<f64> = values.into_iter().collect();
    match persona_core::stats::mean_ci95(&values) {
        Some((m, ci)) => (Some(m), ci),
        None => (None, None),
    }
}
