//! Answers to many chat prompts, some of them steered, generated in batches and cached by key
//! in a JSONL file: an evaluation that crashes or is rerun with more settings only generates
//! what is new. Optionally reads each answer's projection onto a probe direction on the way.

use std::collections::HashMap;
use std::path::Path;

use persona_engine::{
    CaptureSpec, Engine, GenerateRequest, HookSite, Intervention, Message, SamplingParams, Span,
};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::store::{append_records, read_records, RunStore};

#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Engine(#[from] persona_engine::EngineError),
    #[error(transparent)]
    Log(#[from] persona_io::IoError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the probe direction has {got} values but the model's hidden size is {want}: was the vector made with another model?")]
    ProbeSize { got: usize, want: usize },
    #[error("{0}")]
    Options(String),
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
    pub cap: Option<crate::axis_cap::AxisCap>,
}

impl AnswerOptions {
    /// Greedy answers of at most `max_tokens`, `batch_size` at a time, uncapped.
    pub fn greedy(max_tokens: usize, batch_size: usize) -> Self {
        AnswerOptions {
            max_tokens,
            temperature: 0.0,
            seed: 0,
            batch_size,
            cap: None,
        }
    }

    /// Settings no answer can be generated with, refused before any work.
    pub fn validate(&self) -> Result<(), AnswerError> {
        if self.max_tokens == 0 {
            return Err(AnswerError::Options(
                "--max-tokens 0 would give empty answers: give at least 1".into(),
            ));
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(AnswerError::Options(format!(
                "--temperature {} is not a temperature: give 0 (greedy) or a positive number",
                self.temperature
            )));
        }
        if self.batch_size == 0 {
            return Err(AnswerError::Options(
                "--batch-size 0 generates nothing: give at least 1".into(),
            ));
        }
        Ok(())
    }
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

/// A short digest of a conversation (every role and text): cache keys built on it never reuse
/// an answer to an edited prompt.
pub fn messages_digest(messages: &[Message]) -> String {
    let mut h = sha2::Sha256::new();
    for m in messages {
        h.update(m.role.as_bytes());
        h.update([0]);
        h.update(m.content.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

fn key_seed(key: &str) -> u64 {
    let h = sha2::Sha256::digest(key.as_bytes());
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
}

/// One batch of answers to produce: the requests, how to generate them, the vectors their
/// `steer` refers to, an optional probe to read on the way, and the store cache that makes a
/// rerun generate only what is new.
pub struct AnswerJob<'a> {
    pub engine: &'a Engine,
    pub requests: &'a [AnswerRequest],
    pub options: &'a AnswerOptions,
    pub steer_vectors: Option<&'a persona_io::LayerVectors>,
    pub probe: Option<Probe<'a>>,
    pub store: &'a dyn RunStore,
    /// The cache's name in the store (`answers_cache.jsonl`).
    pub cache: &'a str,
}

impl<'a> AnswerJob<'a> {
    /// A job over `requests` cached in the store's `answers_cache.jsonl`, with no steering
    /// vectors and no probe.
    pub fn new(
        engine: &'a Engine,
        requests: &'a [AnswerRequest],
        options: &'a AnswerOptions,
        store: &'a dyn RunStore,
    ) -> Self {
        AnswerJob {
            engine,
            requests,
            options,
            steer_vectors: None,
            probe: None,
            store,
            cache: ANSWER_CACHE,
        }
    }

    /// Reads `probe` on the way.
    pub fn probed(self, probe: Probe<'a>) -> Self {
        AnswerJob {
            probe: Some(probe),
            ..self
        }
    }

    /// The vectors the requests' `steer` refers to.
    pub fn steered_by(self, vectors: &'a persona_io::LayerVectors) -> Self {
        AnswerJob {
            steer_vectors: Some(vectors),
            ..self
        }
    }

    /// Caches in `cache` instead of `answers_cache.jsonl`.
    pub fn cached_in(self, cache: &'a str) -> Self {
        AnswerJob { cache, ..self }
    }
}

/// The name of the answer cache every pipeline keeps in its store.
pub const ANSWER_CACHE: &str = "answers_cache.jsonl";

/// Answers every request of the job, from its cache where it has them (with the projections
/// when a probe is asked for), generating the rest. `progress` receives (done, total) after
/// each batch.
pub fn answer_all(
    job: &AnswerJob,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Answer>, AnswerError> {
    let AnswerJob {
        engine,
        requests,
        options: opts,
        steer_vectors,
        probe,
        store,
        cache,
    } = *job;
    opts.validate()?;
    let c = engine.config();
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
    let cached: Vec<Answer> = read_records(store, cache)?;
    let mut have: HashMap<String, Answer> = cached
        .into_iter()
        .filter(|a| probe.is_none() || a.last_prompt_projection.is_some())
        .map(|a| (a.key.clone(), a))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let todo: Vec<&AnswerRequest> = requests
        .iter()
        .filter(|r| {
            let k = cache_key(&r.key, opts);
            !have.contains_key(&k) && seen.insert(k)
        })
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
    let cap_interventions = match &opts.cap {
        Some(cap) => cap.interventions()?,
        None => Vec::new(),
    };
    let batch = opts.batch_size;
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
            let v = vectors.get(s.layer, Path::new("the steering vector"))?;
            interventions.push(
                Intervention::add_values(HookSite::resid_post(s.layer), v, s.alpha, Span::All)?
                    .for_sequences(vec![row]),
            );
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
        let mut fresh = Vec::with_capacity(chunk.len());
        for (r, g) in chunk.iter().zip(gens) {
            let (mut last, mut mean) = (None, None);
            if let (Some(p), Some(u)) = (probe, &unit) {
                if let Some(cap) = g.captures.get(HookSite::resid_post(p.layer)) {
                    last = cap.last_prompt.as_ref().map(|h| persona_core::dot(h, u));
                    mean = cap.means[0].as_ref().map(|h| persona_core::dot(h, u));
                }
            }
            fresh.push(Answer {
                key: cache_key(&r.key, opts),
                text: g.text,
                last_prompt_projection: last,
                response_projection: mean,
            });
        }
        append_records(store, cache, &fresh)?;
        for a in fresh {
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
