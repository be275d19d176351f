//! Answers to many chat prompts, some of them steered, generated in batches and cached by key
//! in a JSONL file: an evaluation that crashes or is rerun with more settings only generates
//! what is new. Optionally reads each answer's projection onto a probe direction on the way.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use persona_engine::{
    CaptureSpec, Engine, GenerateRequest, HookSite, Intervention, Message, SamplingParams, Span,
    Tensor,
};
use serde::{Deserialize, Serialize};
use sha2::Digest;

#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Engine(#[from] persona_engine::EngineError),
    #[error(transparent)]
    Log(#[from] persona_io::IoError),
    #[error("answer cache {path}: {message}")]
    Cache { path: PathBuf, message: String },
    #[error("the probe direction has {got} values but the model's hidden size is {want}: was the vector made with another model?")]
    ProbeSize { got: usize, want: usize },
    #[error("layer {layer} does not exist: the model has layers 0..{n}")]
    Layer { layer: usize, n: usize },
}

/// Add `alpha` × the steering vector's layer-`layer` direction at `blocks.{layer}.resid_post`,
/// at every position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steer {
    pub layer: usize,
    pub alpha: f32,
    // The vector itself is given once to `answer_all`.
}

#[derive(Debug, Clone)]
pub struct AnswerRequest {
    /// Identifies the answer in the cache (with the generation settings).
    pub key: String,
    pub messages: Vec<Message>,
    pub steer: Option<Steer>,
}

#[derive(Debug, Clone)]
pub struct AnswerOptions {
    pub max_tokens: usize,
    /// 0: greedy.
    pub temperature: f32,
    pub seed: u64,
    pub batch_size: usize,
    /// An Assistant-axis cap applied to every answer (part of the cache key).
    pub cap: Option<crate::cap::AxisCap>,
}

/// Read `h·u` (u = direction / ‖direction‖) at `blocks.{layer}.resid_post` for the last prompt
/// token and as the mean over the answer's tokens.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    pub layer: usize,
    pub direction: &'a [f32],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub key: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_prompt_projection: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_projection: Option<f64>,
}

fn cache_key(key: &str, opts: &AnswerOptions) -> String {
    let mut k = format!(
        "{key}|max_tokens={}|temperature={}|seed={}",
        opts.max_tokens, opts.temperature, opts.seed
    );
    if let Some(cap) = &opts.cap {
        k.push_str(&format!("|cap={}", cap.label()));
    }
    k
}

fn key_seed(key: &str) -> u64 {
    let h = sha2::Sha256::digest(key.as_bytes());
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
}

/// Answers every request, from `cache_path` where it has them (with the projections when a
/// probe is asked for), generating the rest. `steer_vectors` holds the vectors the requests'
/// `steer` refers to. `progress` receives (done, total) after each batch.
pub fn answer_all(
    engine: &Engine,
    requests: &[AnswerRequest],
    opts: &AnswerOptions,
    steer_vectors: Option<&persona_io::LayerVectors>,
    probe: Option<Probe>,
    cache_path: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Answer>, AnswerError> {
    let c = engine.config();
    let cache_err = |message: String| AnswerError::Cache {
        path: cache_path.to_path_buf(),
        message,
    };
    if let Some(p) = probe {
        if p.layer >= c.n_layers {
            return Err(AnswerError::Layer {
                layer: p.layer,
                n: c.n_layers,
            });
        }
        if p.direction.len() != c.d_model {
            return Err(AnswerError::ProbeSize {
                got: p.direction.len(),
                want: c.d_model,
            });
        }
    }
    let cached: Vec<Answer> = persona_io::read_log(cache_path)?;
    let mut have: HashMap<String, Answer> = cached
        .into_iter()
        .filter(|a| probe.is_none() || a.last_prompt_projection.is_some())
        .map(|a| (a.key.clone(), a))
        .collect();
    let todo: Vec<&AnswerRequest> = requests
        .iter()
        .filter(|r| !have.contains_key(&cache_key(&r.key, opts)))
        .collect();
    let total = requests.len();
    let mut done = total - todo.len();
    progress(done, total);
    let unit = probe.map(|p| {
        let n = persona_core::norm(p.direction);
        p.direction
            .iter()
            .map(|x| (*x as f64 / n) as f32)
            .collect::<Vec<f32>>()
    });
    let mut steer_tensors: HashMap<usize, Tensor> = HashMap::new();
    let cap_interventions = match &opts.cap {
        Some(cap) => cap.interventions(engine)?,
        None => Vec::new(),
    };
    let batch = opts.batch_size.max(1);
    for chunk in todo.chunks(batch) {
        let prompts = chunk
            .iter()
            .map(|r| engine.chat_prompt_ids(&r.messages))
            .collect::<Result<Vec<_>, _>>()?;
        let mut interventions = cap_interventions.clone();
        for (row, r) in chunk.iter().enumerate() {
            let Some(s) = r.steer else { continue };
            if s.alpha == 0.0 {
                continue;
            }
            let vectors = steer_vectors.expect("steered requests come with their vectors");
            if let std::collections::hash_map::Entry::Vacant(e) = steer_tensors.entry(s.layer) {
                let v = vectors.get(s.layer, Path::new("the steering vector"))?;
                let t = Tensor::from_slice(v, v.len(), engine.device())
                    .map_err(persona_engine::EngineError::from)?;
                e.insert(t);
            }
            let mut iv = Intervention::add(
                HookSite::resid_post(s.layer),
                steer_tensors[&s.layer].clone(),
                s.alpha,
                Span::All,
            );
            iv.sequences = Some(vec![row]);
            interventions.push(iv);
        }
        let captures = match probe {
            Some(p) => CaptureSpec {
                sites: vec![HookSite::resid_post(p.layer)],
                means: vec![Span::Generated],
                last_prompt: true,
                ..Default::default()
            },
            None => CaptureSpec::default(),
        };
        let req = GenerateRequest {
            prompts,
            sampling: SamplingParams {
                temperature: opts.temperature,
                top_p: 1.0,
                seed: opts.seed,
                max_tokens: opts.max_tokens,
                stop_ids: Vec::new(),
                ignore_stop: false,
            },
            seeds: chunk
                .iter()
                .map(|r| key_seed(&cache_key(&r.key, opts)))
                .collect(),
            interventions,
            captures,
            batch_size: batch,
        };
        let gens = engine.generate(&req, &mut |_| {})?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(cache_path)
            .map_err(|e| cache_err(e.to_string()))?;
        for (r, g) in chunk.iter().zip(gens) {
            let (mut last, mut mean) = (None, None);
            if let (Some(p), Some(u)) = (probe, &unit) {
                if let Some(cap) = g.captures.get(HookSite::resid_post(p.layer)) {
                    last = cap.last_prompt.as_ref().map(|h| persona_core::dot(h, u));
                    mean = cap.means[0].as_ref().map(|h| persona_core::dot(h, u));
                }
            }
            let a = Answer {
                key: cache_key(&r.key, opts),
                text: g.text,
                last_prompt_projection: last,
                response_projection: mean,
            };
            let line = serde_json::to_string(&a).expect("answers serialize");
            writeln!(file, "{line}").map_err(|e| cache_err(e.to_string()))?;
            have.insert(a.key.clone(), a);
        }
        done += chunk.len();
        progress(done, total);
    }
    Ok(requests
        .iter()
        .map(|r| have[&cache_key(&r.key, opts)].clone())
        .collect())
}
