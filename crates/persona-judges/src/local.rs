//! A judge model run in-process: the model under study, or another local one (e.g. the
//! Qwen2.5-1.5B judge). It answers the rubric as a chat, and the score is the expected value
//! of the number it would write, read from its probabilities exactly like the HTTP judge reads
//! `top_logprobs` — except that here every number 0–100 is scored whole, even when the
//! tokenizer spells it digit by digit ("8", "5").

use std::collections::BTreeMap;

use persona_engine::{Engine, Message};

use crate::outcome::{outcome, Score, CODE_WORD, REFUSAL_WORD};
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
    /// The token ids of [`CODE_WORD`] and [`REFUSAL_WORD`] at the start of the answer.
    words: [Vec<u32>; 2],
}

impl LocalScorer {
    /// `label` names the model in judgement-cache keys (e.g. `qwen2.5-1.5b`).
    pub fn new(engine: Engine, label: &str) -> Result<Self, JudgeError> {
        let spell = |text: &str| {
            let ids = engine
                .tokenizer()
                .encode(text)
                .map_err(|e| JudgeError::Backend(format!("cannot tokenize {text:?}: {e}")))?;
            if ids.is_empty() || ids.len() > persona_engine::MAX_CONTINUATION_TOKENS {
                return Err(JudgeError::Backend(format!(
                    "the judge model's tokenizer spells {text:?} with {} tokens; it cannot serve as a local judge",
                    ids.len()
                )));
            }
            Ok(ids)
        };
        let numbers = (0..=100u32)
            .map(|n| Ok((n, spell(&n.to_string())?)))
            .collect::<Result<Vec<_>, JudgeError>>()?;
        let words = [spell(CODE_WORD)?, spell(REFUSAL_WORD)?];
        Ok(LocalScorer {
            engine,
            label: label.to_string(),
            numbers,
            words,
        })
    }

    /// The probability of each number 0–100 as the whole answer to `prompt`.
    pub fn number_probabilities(&self, prompt: &str) -> Result<Vec<(u32, f64)>, JudgeError> {
        Ok(self.probabilities(prompt, &[])?.numbers)
    }

    /// The numbers' probabilities (as [`Self::number_probabilities`]) and the probability that
    /// the answer starts with each of `words` (token ids).
    fn probabilities(&self, prompt: &str, words: &[Vec<u32>]) -> Result<Answers, JudgeError> {
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
            .branch_logprobs(&ids, &mut |first| {
                let mut conts = follow_up(numbers, first);
                conts.extend(words.iter().filter(|w| likely(first, w[0])).cloned());
                padded(conts)
            })
            .map_err(backend)?;
        let (first, continuations, after) =
            (&branches.first, &branches.continuations, &branches.after);
        let paths = Paths {
            first,
            continuations,
            after,
        };
        let words = words
            .iter()
            .map(|w| paths.probability(w).unwrap_or(0.0))
            .collect();
        Ok(Answers {
            numbers: number_probabilities(numbers, first, continuations, after),
            words,
        })
    }
}

/// The probabilities of a rubric's answers: each number 0–100, and each word asked about.
struct Answers {
    numbers: Vec<(u32, f64)>,
    words: Vec<f64>,
}

/// Whether a first token is likely enough to be followed.
fn likely(first: &[f32], token: u32) -> bool {
    (first[token as usize] as f64).exp() >= MIN_BRANCH_PROB
}

/// The continuations, each padded with its last token to the longest one's length (the
/// engine runs them side by side).
fn padded(continuations: Vec<Vec<u32>>) -> Vec<Vec<u32>> {
    let len = continuations.iter().map(Vec::len).max().unwrap_or(0);
    continuations
        .into_iter()
        .map(|mut k| {
            let last = *k.last().expect("continuations have tokens");
            k.resize(len, last);
            k
        })
        .collect()
}

/// One continuation per likely first token: the longest number spelling that starts with it
/// (so "1" is followed through "10" to "100"), all padded to one length.
fn follow_up(numbers: &[(u32, Vec<u32>)], first: &[f32]) -> Vec<Vec<u32>> {
    let mut longest: BTreeMap<u32, &Vec<u32>> = BTreeMap::new();
    for (_, ids) in numbers {
        if !likely(first, ids[0]) {
            continue;
        }
        let e = longest.entry(ids[0]).or_insert(ids);
        if ids.len() > e.len() {
            *e = ids;
        }
    }
    padded(longest.into_values().cloned().collect())
}

/// The next-token distributions that were computed: after the prompt, and after each prefix of
/// each continuation.
struct Paths<'a> {
    first: &'a [f32],
    continuations: &'a [Vec<u32>],
    after: &'a [Vec<Vec<f32>>],
}

impl Paths<'_> {
    /// The distribution after `prefix`, when some continuation starts with it.
    fn after(&self, prefix: &[u32]) -> Option<&[f32]> {
        if prefix.is_empty() {
            return Some(self.first);
        }
        self.continuations
            .iter()
            .position(|k| k.starts_with(prefix))
            .map(|r| self.after[r][prefix.len() - 1].as_slice())
    }

    /// Π p(token | tokens before) along `ids`; `None` where a step was not computed.
    fn probability(&self, ids: &[u32]) -> Option<f64> {
        let mut p = 1.0f64;
        for k in 0..ids.len() {
            p *= (self.after(&ids[..k])?[ids[k] as usize] as f64).exp();
        }
        Some(p)
    }
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
    let paths = Paths {
        first,
        continuations,
        after,
    };
    let digit_like: Vec<u32> = numbers
        .iter()
        .filter(|(n, _)| *n < 10)
        .map(|(_, ids)| ids[0])
        .collect();
    numbers
        .iter()
        .filter_map(|(n, ids)| {
            let p = paths.probability(ids)?;
            let stop = match paths.after(ids) {
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

    /// Follows the spellings of [`CODE_WORD`] and [`REFUSAL_WORD`] beside the numbers'.
    fn score_outcomes(&self, prompts: &[String]) -> Result<Vec<Score>, JudgeError> {
        prompts
            .iter()
            .map(|p| {
                let a = self.probabilities(p, &self.words)?;
                Ok(outcome(&a.numbers, a.words[0], a.words[1]))
            })
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

    #[test]
    fn words_are_scored_along_their_spelling() {
        // Ids 0–9 digits, 10 "end", 11 "RE", 12 "FUSAL", 13 "CODE".
        let d = |pairs: &[(u32, f64)]| {
            let mut v = dist(&[]);
            v.resize(14, f32::NEG_INFINITY);
            for &(t, p) in pairs {
                v[t as usize] = p.ln() as f32;
            }
            v
        };
        let first = d(&[(11, 0.6), (13, 0.2), (7, 0.2)]);
        let words = [vec![13], vec![11, 12]];
        let mut conts = follow_up(&digits(), &first);
        conts.extend(words.iter().filter(|w| likely(&first, w[0])).cloned());
        let conts = padded(conts);
        assert_eq!(conts, vec![vec![7, 0], vec![13, 13], vec![11, 12]]);
        let after = vec![
            vec![d(&[(10, 1.0)]), d(&[(10, 1.0)])],
            vec![d(&[(10, 1.0)]), d(&[(10, 1.0)])],
            vec![d(&[(12, 0.5), (10, 0.5)]), d(&[(10, 1.0)])],
        ];
        let paths = Paths {
            first: &first,
            continuations: &conts,
            after: &after,
        };
        let p: Vec<f64> = words
            .iter()
            .map(|w| paths.probability(w).unwrap())
            .collect();
        assert!(
            (p[0] - 0.2).abs() < 1e-6 && (p[1] - 0.3).abs() < 1e-6,
            "{p:?}"
        );
        let numbers = number_probabilities(&digits(), &first, &conts, &after);
        assert_eq!(outcome(&numbers, p[0], p[1]), Score::Refusal);
    }
}
