//! Judges turn (question, answer, rubric) into a trait score 0–100 and a coherence score
//! 0–100, either of which may be "no score". Judgements are cached on disk by (judge, rubric,
//! question, answer), so a rerun after a crash or with more samples only judges what is new.

mod cache;
mod http;
mod lexicon;
mod local;
mod outcome;
mod rubric;

pub use cache::{judgement_key, CacheEntry};
pub use http::{
    ChatMessage, OpenAiClient, OpenAiConfig, OpenAiScorer, DEFAULT_BASE_URL, TOP_LOGPROBS,
};
pub use lexicon::{LexiconJudge, Polarity};
pub use local::LocalScorer;
pub use outcome::{
    alignment_prompt, outcome, outcome_from_top_logprobs, word_mass_from_top_logprobs, Score,
    ALIGNMENT_RUBRIC, ALIGNMENT_RUBRIC_ID, CODE_WORD, REFUSAL_WORD,
};
pub use rubric::{
    coherence_prompt, expected_number, numbers_from_top_logprobs, CombinedJudge, NumberScorer,
    RubricJudge, Rubrics, COHERENCE_RUBRIC, COHERENCE_RUBRIC_ID, MIN_NUMBER_MASS,
};

use persona_traits::TraitSpec;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The judge's backend failed (unreachable server, bad reply, model error).
    #[error("judge: {0}")]
    Backend(String),
}

/// One answer's scores. `None` means the judge could not (or does not) score that aspect.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub trait_score: Option<f64>,
    pub coherence: Option<f64>,
}

/// A scorer of answers for a trait.
pub trait Judge {
    /// Identifies the judge in caches and reports (backend and settings).
    fn id(&self) -> String;

    /// Scores each (question, answer) for `spec`'s trait.
    fn judge(
        &self,
        spec: &TraitSpec,
        items: &[(String, String)],
    ) -> Result<Vec<Judgement>, JudgeError>;
}
