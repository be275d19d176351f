//! The engine's error type: every message names the thing that is wrong and what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a model persona can load: {reason}")]
    UnsupportedModel { path: PathBuf, reason: String },
    #[error("model metadata key `{key}` is missing or has the wrong type in {path}; the file may be truncated or from an unsupported converter")]
    MissingMetadata { path: PathBuf, key: String },
    #[error("model tensor `{name}` is missing from {path}; the file does not match the `{arch}` architecture persona expects")]
    MissingTensor {
        path: PathBuf,
        name: String,
        arch: String,
    },
    #[error("tensor `{name}` in {path} has shape {found:?}, but {config} implies {expected:?}; the weights and their configuration disagree (a damaged, hand-edited or mismatched file?)")]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        found: Box<[usize]>,
        expected: Box<[usize]>,
        config: &'static str,
    },
    #[error("unknown hook point `{0}`: use blocks.<layer>.<point> with point one of resid_pre, attn_out, resid_mid, mlp_out, resid_post")]
    UnknownHookPoint(String),
    #[error(
        "layer {layer} does not exist: this model has layers 0..{n_layers} (0-based block index)"
    )]
    UnknownLayer { layer: usize, n_layers: usize },
    #[error("vector for {what} has {found} dimensions but the model's residual stream has {expected}; was it extracted from another model?")]
    VectorDimension {
        what: String,
        found: usize,
        expected: usize,
    },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error(
        "sequence of {len} tokens exceeds the model's context of {max} tokens; shorten the input"
    )]
    ContextOverflow { len: usize, max: usize },
    #[error(transparent)]
    Tokenizer(#[from] persona_tokenizer::TokenizerError),
    #[error("tensor computation failed: {0}")]
    Candle(candle_core::Error),
    #[error("{context}: {message}")]
    Format { context: String, message: String },
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Write {
            path: path.into(),
            source,
        }
    }
}

impl From<persona_core::fs::WriteError> for EngineError {
    fn from(e: persona_core::fs::WriteError) -> Self {
        EngineError::write(e.path, e.source)
    }
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError::Candle(without_backtrace(e))
    }
}

/// candle writes a backtrace into its errors' text whenever `RUST_BACKTRACE` is set; persona's
/// messages are read by users, so it is dropped (panics still print theirs).
pub(crate) fn without_backtrace(e: candle_core::Error) -> candle_core::Error {
    use candle_core::Error as E;
    match e {
        E::WithBacktrace { inner, .. } => without_backtrace(*inner),
        E::Context { inner, context } => E::Context {
            inner: Box::new(without_backtrace(*inner)),
            context,
        },
        E::WithPath { inner, path } => E::WithPath {
            inner: Box::new(without_backtrace(*inner)),
            path,
        },
        e => e,
    }
}
