//! Judging many answers through the on-disk judgement cache, in small chunks so progress moves
//! and a crash loses at most one chunk.

use std::path::Path;

use persona_judges::{Judge, JudgeError, Judgement, JudgementCache, NumberScorer};
use persona_traits::TraitSpec;

/// Answers per judge call: small, because a local judge takes seconds per answer.
const CHUNK: usize = 16;

/// Judges every (question, answer) not already in the cache at `cache_path` and returns every
/// judgement in order. `progress` receives (done, total).
pub fn judge_cached(
    judge: &dyn Judge,
    spec: &TraitSpec,
    items: &[(String, String)],
    cache_path: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Judgement>, JudgeError> {
    let judge_id = judge.id();
    let keys: Vec<String> = items
        .iter()
        .map(|(q, a)| JudgementCache::key(&judge_id, &spec.judge_rubric, q, a))
        .collect();
    through_cache(
        &keys,
        cache_path,
        &mut |chunk| {
            let batch: Vec<(String, String)> = chunk.iter().map(|&i| items[i].clone()).collect();
            judge.judge(spec, &batch)
        },
        progress,
    )
}

/// Judges the items at the given indices.
type JudgeChunk<'a> = dyn FnMut(&[usize]) -> Result<Vec<Judgement>, JudgeError> + 'a;

/// Runs `judge` on the indices of the keys missing from the cache at `cache_path`, a chunk at
/// a time (the same key twice is judged once), and returns every key's judgement in order.
fn through_cache(
    keys: &[String],
    cache_path: &Path,
    judge: &mut JudgeChunk,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Judgement>, JudgeError> {
    let mut cache = JudgementCache::open(cache_path)?;
    let mut seen = std::collections::HashSet::new();
    let missing: Vec<usize> = (0..keys.len())
        .filter(|&i| cache.get(&keys[i]).is_none() && seen.insert(keys[i].as_str()))
        .collect();
    let total = keys.len();
    let mut done = total - missing.len();
    progress(done, total);
    for chunk in missing.chunks(CHUNK) {
        for (&i, j) in chunk.iter().zip(judge(chunk)?) {
            cache.insert(keys[i].clone(), j)?;
        }
        done = (done + chunk.len()).min(total);
        progress(done, total);
    }
    Ok(keys
        .iter()
        .map(|k| cache.get(k).expect("every item was judged"))
        .collect())
}

/// Judges generated answers against the question each request ended with.
pub fn judge_answers(
    judge: &dyn Judge,
    spec: &TraitSpec,
    requests: &[crate::answers::AnswerRequest],
    answers: &[crate::answers::Answer],
    cache_path: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Judgement>, JudgeError> {
    let items: Vec<(String, String)> = requests
        .iter()
        .zip(answers)
        .map(|(r, a)| {
            let question = r.messages.last().map_or("", |m| m.content.as_str());
            (question.to_string(), a.text.clone())
        })
        .collect();
    judge_cached(judge, spec, &items, cache_path, progress)
}

/// Scores rubric prompts (each a whole judge prompt) with a number scorer through the cache at
/// `cache_path`; `rubric` names the rubric in the cache keys. Returns the scores in order.
pub fn score_prompts_cached(
    scorer: &dyn NumberScorer,
    rubric: &str,
    prompts: &[String],
    cache_path: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Option<f64>>, JudgeError> {
    let scorer_id = scorer.id();
    let keys: Vec<String> = prompts
        .iter()
        .map(|p| JudgementCache::key(&scorer_id, rubric, p, ""))
        .collect();
    let judged = through_cache(
        &keys,
        cache_path,
        &mut |chunk| {
            let batch: Vec<String> = chunk.iter().map(|&i| prompts[i].clone()).collect();
            Ok(scorer
                .score_prompts(&batch)?
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
