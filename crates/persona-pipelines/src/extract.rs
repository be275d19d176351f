//! Persona vectors from contrastive conversations: the mean activation of trait-expressing
//! ("pos") conversations minus that of the others ("neg"), at every layer's `resid_post`.
//!
//! Three readings, as the Persona Vectors method defines them: `response_avg` (mean over the
//! assistant response's tokens; the one to steer and monitor with), `prompt_avg` (mean over the
//! prompt's tokens, position 0 included as in the reference code) and `prompt_last` (the last
//! prompt token). Each side's value is the mean of per-conversation means.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use persona_engine::{CaptureSpec, Engine, ForwardRequest, HookSite, Message, Span, TokenSequence};
use persona_io::LayerVectors;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Engine(#[from] persona_engine::EngineError),
    #[error(transparent)]
    Io(#[from] persona_io::IoError),
    #[error("{side} conversation {index}: {message}")]
    Conversation {
        side: &'static str,
        index: usize,
        message: String,
    },
    #[error("cannot create the output folder {path}: {source}")]
    OutDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The readings a vector can be taken from.
pub const METHODS: [&str; 3] = ["response_avg", "prompt_avg", "prompt_last"];

#[derive(Debug, Clone, Serialize)]
pub struct ExtractResult {
    /// The `response_avg` file (the one to steer with).
    pub vector_file: PathBuf,
    /// Every method's file.
    pub files: BTreeMap<String, PathBuf>,
    pub layers: usize,
    pub n_pos: usize,
    pub n_neg: usize,
    /// ‖v‖ per layer for each method.
    pub norms: BTreeMap<String, Vec<f64>>,
}

/// Splits a conversation into (context, response): the last message must be the assistant's.
fn as_sequence(engine: &Engine, conv: &[Message]) -> Result<TokenSequence, String> {
    let (last, context) = conv
        .split_last()
        .ok_or_else(|| "it has no messages".to_string())?;
    if last.role != "assistant" {
        return Err(format!(
            "its last message is from `{}`; it must be the assistant response the vector is read from",
            last.role
        ));
    }
    if context.is_empty() {
        return Err("it has no prompt before the assistant response".into());
    }
    engine
        .chat_with_response(context, &last.content)
        .map_err(|e| e.to_string())
}

/// Per-side means of per-conversation means, for each method, at every layer.
fn side_means(
    engine: &Engine,
    convs: &[Vec<Message>],
    side: &'static str,
    progress: &mut dyn FnMut(usize),
) -> Result<[Vec<Vec<f32>>; 3], ExtractError> {
    let seqs = convs
        .iter()
        .enumerate()
        .map(|(index, c)| {
            as_sequence(engine, c).map_err(|message| ExtractError::Conversation {
                side,
                index,
                message,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n_layers = engine.config().n_layers;
    let req = ForwardRequest {
        captures: CaptureSpec {
            sites: (0..n_layers).map(HookSite::resid_post).collect(),
            means: vec![Span::Generated, Span::Prompt],
            last_prompt: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let outs = engine.forward_batch(&seqs, &req, progress)?;
    let mut result: [Vec<Vec<f32>>; 3] = Default::default();
    for l in 0..n_layers {
        let site = HookSite::resid_post(l);
        let per_sample = |pick: &dyn Fn(&persona_engine::SiteCapture) -> Option<&Vec<f32>>| {
            let vs: Vec<&[f32]> = outs
                .iter()
                .filter_map(|o| o.captures.get(site).and_then(pick).map(|v| v.as_slice()))
                .collect();
            persona_core::mean(vs).unwrap_or_default()
        };
        result[0].push(per_sample(&|c| c.means[0].as_ref()));
        result[1].push(per_sample(&|c| c.means[1].as_ref()));
        result[2].push(per_sample(&|c| c.last_prompt.as_ref()));
    }
    Ok(result)
}

/// Extracts the three vectors from `pos` and `neg` conversations and writes
/// `<out_dir>/<name>_<method>.safetensors`.
pub fn extract_from_conversations(
    engine: &Engine,
    pos: &[Vec<Message>],
    neg: &[Vec<Message>],
    name: &str,
    out_dir: &Path,
    progress: &mut dyn FnMut(usize),
) -> Result<ExtractResult, ExtractError> {
    std::fs::create_dir_all(out_dir).map_err(|e| ExtractError::OutDir {
        path: out_dir.to_path_buf(),
        source: e,
    })?;
    let p = side_means(engine, pos, "pos", progress)?;
    let n = side_means(engine, neg, "neg", progress)?;
    let model = format!("{} sha256:{}", engine.config().name, engine.model_sha256()?);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut files = BTreeMap::new();
    let mut norms = BTreeMap::new();
    for (k, method) in METHODS.iter().enumerate() {
        let mut v = LayerVectors::default();
        let mut layer_norms = Vec::new();
        for (l, (a, b)) in p[k].iter().zip(&n[k]).enumerate() {
            let diff = persona_core::sub(a, b);
            layer_norms.push(persona_core::norm(&diff));
            v.layers.insert(l, diff);
        }
        for (key, value) in [
            ("persona.kind", "trait".to_string()),
            ("persona.name", name.to_string()),
            ("persona.hook_point", "resid_post".to_string()),
            ("persona.method", method.to_string()),
            ("persona.model", model.clone()),
            ("persona.n_pos", pos.len().to_string()),
            ("persona.n_neg", neg.len().to_string()),
            ("persona.created", created.to_string()),
        ] {
            v.metadata.insert(key.to_string(), value);
        }
        let path = out_dir.join(format!("{name}_{method}.safetensors"));
        v.save(&path)?;
        files.insert(method.to_string(), path);
        norms.insert(method.to_string(), layer_norms);
    }
    Ok(ExtractResult {
        vector_file: files["response_avg"].clone(),
        files,
        layers: engine.config().n_layers,
        n_pos: pos.len(),
        n_neg: neg.len(),
        norms,
    })
}
