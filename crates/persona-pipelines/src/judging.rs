//! Judging many answers through a judgement cache in the run's store, in small chunks so
//! progress moves and a crash loses at most one chunk.

use persona_judges::{judgement_key, CacheEntry, Judge, Judgement, NumberScorer, Score};
use persona_traits::TraitSpec;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::{append_records, read_records, RunStore};
use crate::PipelineError;

/// Answers per judge call: small, because a local judge takes seconds per answer.
const CHUNK: usize = 16;

/// The name of the judgement cache every pipeline keeps in its store.
pub const JUDGEMENT_CACHE: &str = "judgements.jsonl";

/// The cache of rubric outcomes that may be words as well as numbers ([`Score`]), apart from
/// [`JUDGEMENT_CACHE`] since its lines hold another type.
pub const OUTCOME_CACHE: &str = "judgement_outcomes.jsonl";

/// (question, answer) pairs to judge for a trait, and where their judgements are cached.
pub struct JudgeJob<'a> {
    pub judge: &'a dyn Judge,
    pub spec: &'a TraitSpec,
    pub items: &'a [(String, String)],
    pub store: &'a dyn RunStore,
    /// The cache's name in the store (`judgements.jsonl`).
    pub cache: &'a str,
}

impl<'a> JudgeJob<'a> {
    /// Items judged through the store's `judgements.jsonl`.
    pub fn new(
        judge: &'a dyn Judge,
        spec: &'a TraitSpec,
        items: &'a [(String, String)],
        store: &'a dyn RunStore,
    ) -> Self {
        JudgeJob {
            judge,
            spec,
            items,
            store,
            cache: JUDGEMENT_CACHE,
        }
    }
}

/// Judges every item not already in the job's cache and returns every judgement in order.
/// `progress` receives (done, total).
pub fn judge_cached(
    job: &JudgeJob,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Judgement>, PipelineError> {
    let judge_id = job.judge.id();
    let keys: Vec<String> = job
        .items
        .iter()
        .map(|(q, a)| judgement_key(&judge_id, &job.spec.judge_rubric, q, a))
        .collect();
    through_cache(
        &keys,
        job.store,
        job.cache,
        &mut |chunk| {
            let batch: Vec<(String, String)> =
                chunk.iter().map(|&i| job.items[i].clone()).collect();
            Ok(job.judge.judge(job.spec, &batch)?)
        },
        progress,
    )
}

/// Judges the items at the given indices.
type JudgeChunk<'a, J> = dyn FnMut(&[usize]) -> Result<Vec<J>, PipelineError> + 'a;

/// Runs `judge` on the indices of the keys missing from the cache, a chunk at a time (the same
/// key twice is judged once), and returns every key's judgement in order.
fn through_cache<J: Copy + Serialize + DeserializeOwned>(
    keys: &[String],
    store: &dyn RunStore,
    cache: &str,
    judge: &mut JudgeChunk<J>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<J>, PipelineError> {
    let mut have: std::collections::HashMap<String, J> =
        read_records::<CacheEntry<J>>(store, cache)?
            .into_iter()
            .map(|e| (e.key, e.judgement))
            .collect();
    let mut seen = std::collections::HashSet::new();
    let missing: Vec<usize> = (0..keys.len())
        .filter(|&i| !have.contains_key(&keys[i]) && seen.insert(keys[i].as_str()))
        .collect();
    let total = keys.len();
    let mut done = total - missing.len();
    progress(done, total);
    for chunk in missing.chunks(CHUNK) {
        let entries: Vec<CacheEntry<J>> = chunk
            .iter()
            .zip(judge(chunk)?)
            .map(|(&i, judgement)| CacheEntry {
                key: keys[i].clone(),
                judgement,
            })
            .collect();
        append_records(store, cache, &entries)?;
        for e in entries {
            have.insert(e.key, e.judgement);
        }
        done = (done + chunk.len()).min(total);
        progress(done, total);
    }
    Ok(keys.iter().map(|k| have[k]).collect())
}

/// The (question, answer) pairs of generated answers: the question is the last message of
/// each request.
pub fn question_answer_pairs(
    requests: &[crate::answers::AnswerRequest],
    answers: &[crate::answers::Answer],
) -> Vec<(String, String)> {
    requests
        .iter()
        .zip(answers)
        .map(|(r, a)| {
            let question = r.messages.last().map_or("", |m| m.content.as_str());
            (question.to_string(), a.text.clone())
        })
        .collect()
}

/// Scores a batch of whole judge prompts.
type ScorePrompts<'a, J> = dyn Fn(&[String]) -> Result<Vec<J>, persona_judges::JudgeError> + 'a;

/// Scores rubric prompts (each a whole judge prompt) with `score` through the cache `cache` in
/// `store`; `rubric` names the rubric and `scorer` the backend in the cache keys.
fn score_cached<J: Copy + Serialize + DeserializeOwned>(
    scorer: &dyn NumberScorer,
    rubric: &str,
    prompts: &[String],
    store: &dyn RunStore,
    cache: &str,
    score: &ScorePrompts<J>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<J>, PipelineError> {
    let scorer_id = scorer.id();
    let keys: Vec<String> = prompts
        .iter()
        .map(|p| judgement_key(&scorer_id, rubric, p, ""))
        .collect();
    through_cache(
        &keys,
        store,
        cache,
        &mut |chunk| {
            let batch: Vec<String> = chunk.iter().map(|&i| prompts[i].clone()).collect();
            Ok(score(&batch)?)
        },
        progress,
    )
}

/// Scores rubric prompts (each a whole judge prompt) with a number scorer through the cache
/// `cache` in `store`; `rubric` names the rubric in the cache keys. Returns the scores in order.
pub fn score_prompts_cached(
    scorer: &dyn NumberScorer,
    rubric: &str,
    prompts: &[String],
    store: &dyn RunStore,
    cache: &str,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Option<f64>>, PipelineError> {
    let judged = score_cached(
        scorer,
        rubric,
        prompts,
        store,
        cache,
        &|batch| {
            Ok(scorer
                .score_prompts(batch)?
                .into_iter()
                .map(|score| Judgement {
                    trait_score: score,
                    coherence: None,
                })
                .collect())
        },
        progress,
    )?;
    Ok(judged.into_iter().map(|j| j.trait_score).collect())
}

/// [`score_prompts_cached`] for rubrics that may be answered with a word ([`Score`]), cached
/// in [`OUTCOME_CACHE`].
pub fn score_outcomes_cached(
    scorer: &dyn NumberScorer,
    rubric: &str,
    prompts: &[String],
    store: &dyn RunStore,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Score>, PipelineError> {
    score_cached(
        scorer,
        rubric,
        prompts,
        store,
        OUTCOME_CACHE,
        &|batch| scorer.score_outcomes(batch),
        progress,
    )
}
