//! Trait rollouts: every extraction question × instruction pair × sample, answered under the
//! positive and the negative system prompt, sampled at temperature 1 in batches. They are
//! answers like any other (`answers::answer_all`): cached in `rollouts.jsonl` as they finish,
//! each slot with its own seed, so a resumed run samples what an uninterrupted one would.

use persona_engine::{Engine, Message};
use persona_traits::TraitSpec;
use serde::{Deserialize, Serialize};

use crate::answers::{answer_all, AnswerError, AnswerJob, AnswerOptions, AnswerRequest};
use crate::store::RunStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Pos,
    Neg,
}

/// One answer, as stored in `rollouts.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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

impl RolloutOptions {
    fn answers(&self) -> AnswerOptions {
        AnswerOptions {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            seed: self.seed,
            batch_size: self.batch_size,
            cap: None,
        }
    }
}

/// The name of the rollout cache in a trait's run folder.
pub const ROLLOUT_CACHE: &str = "rollouts.jsonl";

/// Generates every rollout missing from the store's `rollouts.jsonl` and returns them all, in
/// slot order.
/// `progress` receives (done, total) after each batch.
pub fn run_rollouts(
    engine: &Engine,
    spec: &TraitSpec,
    opts: &RolloutOptions,
    store: &dyn RunStore,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Rollout>, AnswerError> {
    if opts.samples == 0 {
        return Err(AnswerError::Options(
            "--samples 0 asks for no rollouts: give at least 1".into(),
        ));
    }
    let mut slots = Vec::new();
    for side in [Side::Pos, Side::Neg] {
        for pair in 0..spec.instructions.len() {
            for (qi, q) in spec.extraction_questions.iter().enumerate() {
                for sample in 0..opts.samples {
                    let system = match side {
                        Side::Pos => spec.positive_system_prompt(pair),
                        Side::Neg => spec.negative_system_prompt(pair),
                    };
                    slots.push(Rollout {
                        side,
                        pair,
                        question_index: qi,
                        sample,
                        system,
                        question: q.clone(),
                        answer: String::new(),
                    });
                }
            }
        }
    }
    let requests: Vec<AnswerRequest> = slots
        .iter()
        .map(|r| AnswerRequest {
            key: format!(
                "{:?}|pair{}|q{}|s{}",
                r.side, r.pair, r.question_index, r.sample
            ),
            messages: vec![
                Message::new("system", r.system.clone()),
                Message::new("user", r.question.clone()),
            ],
            steer: None,
        })
        .collect();
    let options = opts.answers();
    let answers = answer_all(
        &AnswerJob::new(engine, &requests, &options, store).cached_in(ROLLOUT_CACHE),
        progress,
    )?;
    Ok(slots
        .into_iter()
        .zip(answers)
        .map(|(r, a)| Rollout {
            answer: a.text,
            ..r
        })
        .collect())
}
