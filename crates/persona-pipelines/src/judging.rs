//! Judging many answers through the on-disk judgement cache, in small chunks so progress moves
//! and a crash loses at most one chunk.

use std::path::Path;

use persona_judges::{Judge, JudgeError, Judgement, JudgementCache};
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
    let mut cache = JudgementCache::open(cache_path)?;
    let judge_id = judge.id();
    let keys: Vec<String> = items
        .iter()
        .map(|(q, a)| JudgementCache::key(&judge_id, &spec.judge_rubric, q, a))
        .collect();
    // The same (question, answer) twice is judged once.
    let mut seen = std::collections::HashSet::new();
    let missing: Vec<usize> = (0..items.len())
        .filter(|&i| cache.get(&keys[i]).is_none() && seen.insert(keys[i].as_str()))
        .collect();
    let total = items.len();
    let mut done = total - missing.len();
    progress(done, total);
    for chunk in missing.chunks(CHUNK) {
        let batch: Vec<(String, String)> = chunk.iter().map(|&i| items[i].clone()).collect();
        for (&i, j) in chunk.iter().zip(judge.judge(spec, &batch)?) {
            cache.insert(keys[i].clone(), j)?;
        }
        done = (done + chunk.len()).min(total);
        progress(done, total);
    }
    Ok(keys
        .iter()
        .map(|k| cache.get(k).expect("every answer was judged"))
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
