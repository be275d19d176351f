//! persona's pipelines over the engine. Each one turns plain inputs (conversations, specs,
//! vectors) into result files through `Engine::forward_batch` / `Engine::generate`.

pub mod answers;
pub mod extract;
pub mod judging;
pub mod monitor;
pub mod report;
pub mod rollouts;
pub mod steer;

use std::path::{Path, PathBuf};

/// Errors of the evaluation pipelines (steer, monitor, report).
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
    #[error("{path} holds vectors of size {got} but the model's hidden size is {want}: it was made with another model")]
    VectorSize {
        path: PathBuf,
        got: usize,
        want: usize,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the output folder {path}: {source}")]
    OutDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Input(String),
}

/// A trait's vectors and the file they came from (named in errors and results).
#[derive(Debug, Clone, Copy)]
pub struct VectorSource<'a> {
    pub vectors: &'a persona_io::LayerVectors,
    pub file: &'a Path,
}

pub(crate) fn create_dir(path: &Path) -> Result<(), PipelineError> {
    std::fs::create_dir_all(path).map_err(|e| PipelineError::OutDir {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Writes a result file atomically (a crash leaves the old file or the new one).
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PipelineError> {
    persona_report::write_atomic(path, bytes).map_err(|e| PipelineError::Write {
        path: path.to_path_buf(),
        source: e,
    })
}
