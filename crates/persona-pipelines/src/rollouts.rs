//! Trait rollouts: every extraction question × instruction pair × sample, answered under the
//! positive and the negative system prompt, sampled at temperature 1 in batches, appended to a
//! JSONL cache as they finish, and resumed from it after a crash.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use persona_engine::{Engine, GenerateRequest, Message, SamplingParams};
use persona_traits::TraitSpec;
use serde::{Deserialize, Serialize};
use sha2::Digest;

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error(transparent)]
    Engine(#[from] persona_engine::EngineError),
    #[error(transparent)]
    Log(#[from] persona_io::IoError),
    #[error("rollout cache {path}: {message}")]
    Cache { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Pos,
    Neg,
}

/// One answer, as stored in `rollouts.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rollout {
    pub side: Side,
    pub pair: usize,
    pub question_index: usize,
    pub sample: usize,
    pub system: String,
    pub question: String,
    pub answer: String,
}

impl Rollout {
    fn slot(&self) -> (Side, usize, usize, usize) {
        (self.side, self.pair, self.question_index, self.sample)
    }

    /// The conversation the vector is read from.
    pub fn messages(&self) -> Vec<Message> {
        vec![
            Message::new("system", self.system.clone()),
            Message::new("user", self.question.clone()),
            Message::new("assistant", self.answer.clone()),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct RolloutOptions {
    pub samples: usize,
    pub max_tokens: usize,
    pub temperature: f32,
    pub seed: u64,
    pub batch_size: usize,
}

/// A seed per rollout slot, so resumed runs sample exactly what an uninterrupted run would.
fn slot_seed(seed: u64, slot: (Side, usize, usize, usize)) -> u64 {
    let mut h = sha2::Sha256::new();
    h.update(seed.to_le_bytes());
    h.update([slot.0 as u8]);
    for x in [slot.1, slot.2, slot.3] {
        h.update((x as u64).to_le_bytes());
    }
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// Generates every rollout missing from `cache_path` and returns them all (cached first).
/// `progress` receives (done, total) after each batch.
pub fn run_rollouts(
    engine: &Engine,
    spec: &TraitSpec,
    opts: &RolloutOptions,
    cache_path: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Rollout>, RolloutError> {
    let mut done: Vec<Rollout> = persona_io::read_log(cache_path)?;
    let have: HashSet<_> = done.iter().map(Rollout::slot).collect();
    let mut todo = Vec::new();
    for side in [Side::Pos, Side::Neg] {
        for pair in 0..spec.instructions.len() {
            for (qi, q) in spec.extraction_questions.iter().enumerate() {
                for sample in 0..opts.samples {
                    let system = match side {
                        Side::Pos => spec.positive_system_prompt(pair),
                        Side::Neg => spec.negative_system_prompt(pair),
                    };
                    let r = Rollout {
                        side,
                        pair,
                        question_index: qi,
                        sample,
                        system,
                        question: q.clone(),
                        answer: String::new(),
                    };
                    if !have.contains(&r.slot()) {
                        todo.push(r);
                    }
                }
            }
        }
    }
    let total = done.len() + todo.len();
    progress(done.len(), total);
    let batch = opts.batch_size.max(1);
    for chunk in todo.chunks(batch) {
        let prompts = chunk
            .iter()
            .map(|r| {
                engine.chat_prompt_ids(&[
                    Message::new("system", r.system.clone()),
                    Message::new("user", r.question.clone()),
                ])
            })
            .collect::<Result<Vec<_>, _>>()?;
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
                .map(|r| slot_seed(opts.seed, r.slot()))
                .collect(),
            batch_size: batch,
            ..Default::default()
        };
        let gens = engine.generate(&req, &mut |_| {})?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(cache_path)
            .map_err(|e| RolloutError::Cache {
                path: cache_path.to_path_buf(),
                message: e.to_string(),
            })?;
        for (r, g) in chunk.iter().zip(gens) {
            let r = Rollout {
                answer: g.text,
                ..r.clone()
            };
            let line = serde_json::to_string(&r).expect("rollouts serialize");
            writeln!(file, "{line}").map_err(|e| RolloutError::Cache {
                path: cache_path.to_path_buf(),
                message: e.to_string(),
            })?;
            done.push(r);
        }
        progress(done.len(), total);
    }
    Ok(done)
}
