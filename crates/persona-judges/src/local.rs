//! A judge model run in-process: the model under study, or another local one (e.g. the
//! Qwen2.5-1.5B judge). It answers the rubric as a chat, and the score is the expected value
//! of the number it would write, read from its probabilities exactly like the HTTP judge reads
//! `top_logprobs` — except that here every number 0–100 is scored whole, even when the
//! tokenizer spells it digit by digit ("8", "5").

use std::collections::BTreeMap;

use persona_engine::{Engine, Message};

use crate::rubric::{expected_number, NumberScorer};
use crate::JudgeError;

/// First tokens less likely than this are not followed: they can move the score by at most
/// this much of its range.
const MIN_BRANCH_PROB: f64 = 1e-3;

/// Scores rubric prompts with a locally loaded model.
pub struct LocalScorer {
    engine: Engine,
    label: String,
    /// The token ids that spell each number 0–100 at the start of the answer.
    numbers: Vec<(u32, Vec<u32>)>,
}

impl LocalScorer {
    /// `label` names the model in judgement-cache keys (e.g. `qwen2.5-1.5b`).
    pub fn new(engine: Engine, label: &str) -> Result<Self, JudgeError> {
        let numbers = (0..=100u32)
            .map(|n| {
                let ids = engine.tokenizer().encode(&n.to_string()).map_err(|e| {
                    JudgeError::Backend(format!("cannot tokenize the number {n}: {e}"))
                })?;
                if ids.is_empty() || ids.len() > persona_engine::MAX_CONTINUATION_TOKENS {
                    return Err(JudgeError::Backend(format!(
                        "the judge model's tokenizer spells {n} with {} tokens; it cannot serve as a local judge",
                        ids.len()
                    )));
                }
                Ok((n, ids))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LocalScorer {
            engine,
            label: label.to_string(),
            numbers,
        })
    }

    /// The probability of each number 0–100 as the whole answer to `prompt`.
    pub fn number_probabilities(&self, prompt: &str) -> Result<Vec<(u32, f64)>, JudgeError> {
        let backend = |e: persona_engine::EngineError| JudgeError::Backend(e.to_string());
        let ids = self
            .engine
            .chat_prompt_ids(&[Message {
                role: "user".into(),
                content: prompt.to_string(),
            }])
            .map_err(backend)?;
        let numbers = &self.numbers;
        let branches = self
            .engine
            .branch_logprobs(&ids, &mut |first| follow_up(numbers, first))
            .map_err(backend)?;
        Ok(number_probabilities(
            numbers,
            &branches.first,
            &branches.continuations,
            &branches.after,
        ))
    }
}

/// One continuation per likely first token: the longest number spelling that starts with it
/// (so "1" is followed through "10" to "100"), all padded to one length.
fn follow_up(numbers: &[(u32, Vec<u32>)], first: &[f32]) -> Vec<Vec<u32>> {
    let mut longest: BTreeMap<u32, &Vec<u32>> = BTreeMap::new();
    for (_, ids) in numbers {
        if (first[ids[0] as usize] as f64).exp() < MIN_BRANCH_PROB {
            continue;
        }
        let e = longest.entry(ids[0]).or_insert(ids);
        if ids.len() > e.len() {
            *e = ids;
        }
    }
    let len = longest.values().map(|ids| ids.len()).max().unwrap_or(0);
    longest
        .into_values()
        .map(|ids| {
            let mut k = ids.clone();
            k.resize(len, *ids.last().expect("numbers have tokens"));
            k
        })
        .collect()
}

/// P(the answer is exactly n) = Π p(token | tokens before) × p(no further digit). Where the
/// distribution after a number's last token was not computed (two-digit numbers other than
/// multiples of ten, whose only longer readings are above 100), "it stops there" is assumed.
fn number_probabilities(
    numbers: &[(u32, Vec<u32>)],
    first: &[f32],
    continuations: &[Vec<u32>],
    after: &[Vec<Vec<f32>>],
) -> Vec<(u32, f64)> {
    let digit_like: Vec<u32> = numbers
        .iter()
        .filter(|(n, _)| *n < 10)
        .map(|(_, ids)| ids[0])
        .collect();
    // The distribution after `prefix`, when some continuation starts with it.
    let dist_after = |prefix: &[u32]| -> Option<&[f32]> {
        if prefix.is_empty() {
            return Some(first);
        }
        continuations
            .iter()
            .position(|k| k.starts_with(prefix))
            .map(|r| after[r][prefix.len() - 1].as_slice())
    };
    numbers
        .iter()
        .filter_map(|(n, ids)| {
            let mut p = 1.0f64;
            for k in 0..ids.len() {
                p *= (dist_after(&ids[..k])?[ids[k] as usize] as f64).exp();
            }
            let stop = match dist_after(ids) {
                Some(d) => {
                    1.0 - digit_like
                        .iter()
                        .map(|&t| (d[t as usize] as f64).exp())
                        .sum::<f64>()
                }
                None => 1.0,
            };
            Some((*n, p * stop.max(0.0)))
        })
        .filter(|&(_, p)| p > 0.0)
        .collect()
}

impl NumberScorer for LocalScorer {
    fn id(&self) -> String {
        format!("local:{}", self.label)
    }

    fn score_prompts(&self, prompts: &[String]) -> Result<Vec<Option<f64>>, JudgeError> {
        prompts
            .iter()
            .map(|p| Ok(expected_number(&self.number_probabilities(p)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: ids 0–9 are the digits, 10 is "end".
    fn digits() -> Vec<(u32, Vec<u32>)> {
        (0..=100u32)
            .map(|n| {
                (
                    n,
                    n.to_string().bytes().map(|b| (b - b'0') as u32).collect(),
                )
            })
            .collect()
    }

    fn dist(pairs: &[(u32, f64)]) -> Vec<f32> {
        let mut d = vec![f32::NEG_INFINITY; 11];
        for &(t, p) in pairs {
            d[t as usize] = p.ln() as f32;
        }
        d
    }

    #[test]
    fn numbers_spelled_digit_by_digit_are_scored_whole() {
        let numbers = digits();
        // First token: "8" 0.6, "1" 0.3, "5" 0.1.
        let first = dist(&[(8, 0.6), (1, 0.3), (5, 0.1)]);
        let conts = follow_up(&numbers, &first);
        // "1" is followed to "100"; "5" and "8" to their multiples of ten; padded to 3.
        assert_eq!(conts, vec![vec![1, 0, 0], vec![5, 0, 0], vec![8, 0, 0]]);
        let after = vec![
            // after "1": "0" 0.5, end 0.5; after "10": "0" 1.0; after "100": end.
            vec![
                dist(&[(0, 0.5), (10, 0.5)]),
                dist(&[(0, 1.0)]),
                dist(&[(10, 1.0)]),
            ],
            // after "5": end 1.0.
            vec![dist(&[(10, 1.0)]), dist(&[(10, 1.0)]), dist(&[(10, 1.0)])],
            // after "8": "5" 0.5, "0" 0.5; after "80": end.
            vec![
                dist(&[(5, 0.5), (0, 0.5)]),
                dist(&[(10, 1.0)]),
                dist(&[(10, 1.0)]),
            ],
        ];
        let probs: BTreeMap<u32, f64> = number_probabilities(&numbers, &first, &conts, &after)
            .into_iter()
            .collect();
        let close = |n: u32, want: f64| assert!((probs[&n] - want).abs() < 1e-6, "{n}: {probs:?}");
        close(1, 0.15); // "1" then end
        close(100, 0.15); // "1" "0" "0"
        close(5, 0.1);
        close(85, 0.3);
        close(80, 0.3);
        assert!(!probs.contains_key(&10), "{probs:?}"); // after "10" a digit always follows
        let score = expected_number(&probs.into_iter().collect::<Vec<_>>()).unwrap();
        let want = 0.15 * 1.0 + 0.15 * 100.0 + 0.1 * 5.0 + 0.3 * 85.0 + 0.3 * 80.0;
        assert!((score - want).abs() < 1e-6);
    }

    #[test]
    fn unlikely_first_tokens_are_not_followed() {
        let first = dist(&[(7, 0.9995), (3, 0.0005)]);
        assert_eq!(follow_up(&digits(), &first), vec![vec![7, 0]]);
    }
}
