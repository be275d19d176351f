//! persona's pipelines over the engine. Each one turns plain inputs (conversations, specs,
//! vectors) into result files through `Engine::forward_batch` / `Engine::generate`.

pub mod answers;
pub mod axis;
pub mod cap;
pub mod cap_eval;
pub mod drift;
pub mod extract;
pub mod judging;
pub mod monitor;
pub mod report;
pub mod rollouts;
pub mod screen;
pub mod shift;
pub mod steer;

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

/// What a vector file says about itself (the `persona.*` metadata of docs/formats.md).
pub(crate) struct VectorMeta<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub method: &'a str,
    pub model: &'a str,
    pub n_pos: usize,
    pub n_neg: Option<usize>,
}

/// Vectors at layers 0.. with their `persona.*` metadata, ready to save.
pub(crate) fn persona_vectors(
    per_layer: impl IntoIterator<Item = Vec<f32>>,
    meta: &VectorMeta,
) -> persona_io::LayerVectors {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut v = persona_io::LayerVectors {
        layers: per_layer.into_iter().enumerate().collect(),
        ..Default::default()
    };
    let mut put = |key: &str, value: String| {
        v.metadata.insert(format!("persona.{key}"), value);
    };
    put("kind", meta.kind.to_string());
    put("name", meta.name.to_string());
    put("hook_point", "resid_post".to_string());
    put("method", meta.method.to_string());
    put("model", meta.model.to_string());
    put("n_pos", meta.n_pos.to_string());
    if let Some(n) = meta.n_neg {
        put("n_neg", n.to_string());
    }
    put("created", created.to_string());
    v
}

pub(crate) fn create_dir(path: &Path) -> Result<(), PipelineError> {
    std::fs::create_dir_all(path).map_err(|e| PipelineError::OutDir {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Writes one JSON line per row, atomically.
pub(crate) fn write_jsonl<T: serde::Serialize>(
    path: &Path,
    rows: impl IntoIterator<Item = T>,
) -> Result<(), PipelineError> {
    let mut text = String::new();
    for row in rows {
        text.push_str(&serde_json::to_string(&row).expect("result rows serialize"));
        text.push('\n');
    }
    write_file(path, text.as_bytes())
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

/// Writes a result as pretty JSON, atomically.
pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), PipelineError> {
    let json = serde_json::to_string_pretty(value).expect("results serialize");
    write_file(path, json.as_bytes())
}

/// Writes a result file atomically (a crash leaves the old file or the new one).
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PipelineError> {
    persona_report::write_atomic(path, bytes).map_err(|e| PipelineError::Write {
        path: path.to_path_buf(),
        source: e,
    })
}
