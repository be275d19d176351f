//! Judges that ask a language model for a number: the trait rubric of the spec, and persona's
//! coherence rubric. The score is read from the model's probabilities for its first answer,
//! not from sampled text (docs/design.md, "Judges"), so it is a smooth expected value and not a
//! coin toss between neighbouring numbers.

use persona_traits::TraitSpec;

use crate::{Judge, JudgeError, Judgement, Score};

/// Below this total probability on the numbers 0–100 the judge did not answer with a number.
pub const MIN_NUMBER_MASS: f64 = 0.25;

/// The coherence rubric (persona's own text). `{question}` and `{answer}` are filled in.
pub const COHERENCE_RUBRIC: &str = "You are checking whether a reply written by an AI assistant is coherent. Judge only the form of the reply, not whether you agree with it, whether it is correct, or whether it is kind.

This is the message the user sent:
=== USER MESSAGE BEGIN ===
{question}
=== USER MESSAGE END ===

This is the reply to check:
=== ASSISTANT REPLY BEGIN ===
{answer}
=== ASSISTANT REPLY END ===

Score 0 when the reply is gibberish, repeats the same words over and over, or has nothing to do with the message. Score about 50 when it is on topic but confused, contradicts itself or breaks off in a way that loses the thread. Score 100 when it is fluent, stays on the message and hangs together from start to end, whatever its opinions or tone.

Answer with a single integer between 0 and 100. Do not explain: write only the number.";

/// Names the coherence rubric in judgement-cache keys (change it with the rubric's text).
pub const COHERENCE_RUBRIC_ID: &str = "persona-coherence-v1";

/// The expected value of a number-valued answer: Σ k·p(k) / Σ p(k) over the candidate numbers
/// `(k, p)`; `None` when their total probability is below [`MIN_NUMBER_MASS`].
pub fn expected_number(candidates: &[(u32, f64)]) -> Option<f64> {
    let mass: f64 = candidates.iter().map(|&(_, p)| p).sum();
    // NaN mass (no candidates scored) is no score too.
    if mass.is_nan() || mass < MIN_NUMBER_MASS {
        return None;
    }
    Some(candidates.iter().map(|&(k, p)| k as f64 * p).sum::<f64>() / mass)
}

/// The numbers 0–100 among the top tokens of an answer's first position, as an OpenAI-style
/// `top_logprobs` list gives them: token text and natural-log probability. Tokens that are not
/// a whole number 0–100 (after trimming white space) carry no score; a number spelled by two
/// tokens (" 8", "5") counts by its first token, as in the reference method.
pub fn numbers_from_top_logprobs(top: &[(String, f64)]) -> Vec<(u32, f64)> {
    let mut by_number: std::collections::BTreeMap<u32, f64> = Default::default();
    for (token, logprob) in top {
        let t = token.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) || t.len() > 3 {
            continue;
        }
        if let Ok(k) = t.parse::<u32>() {
            if k <= 100 {
                *by_number.entry(k).or_default() += logprob.exp();
            }
        }
    }
    by_number.into_iter().collect()
}

/// Something that answers rubric prompts with a score 0–100 (or no score): a model behind an
/// OpenAI-compatible endpoint, or a local model.
pub trait NumberScorer {
    /// Identifies the backend and its model in caches and reports.
    fn id(&self) -> String;

    /// One score per prompt, each the expected number of the answer (see [`expected_number`]).
    fn score_prompts(&self, prompts: &[String]) -> Result<Vec<Option<f64>>, JudgeError>;

    /// One outcome per prompt of a rubric that may be answered with [`crate::CODE_WORD`] or
    /// [`crate::REFUSAL_WORD`] instead of a number (see [`crate::outcome`]). A scorer that
    /// cannot read words gives only numbers and no-scores.
    fn score_outcomes(&self, prompts: &[String]) -> Result<Vec<Score>, JudgeError> {
        Ok(self
            .score_prompts(prompts)?
            .into_iter()
            .map(Score::from)
            .collect())
    }
}

/// Which rubrics a [`RubricJudge`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rubrics {
    Trait,
    Coherence,
    TraitAndCoherence,
}

impl Rubrics {
    fn trait_(self) -> bool {
        self != Rubrics::Coherence
    }

    fn coherence(self) -> bool {
        self != Rubrics::Trait
    }
}

impl<T: NumberScorer + ?Sized> NumberScorer for Box<T> {
    fn id(&self) -> String {
        (**self).id()
    }

    fn score_prompts(&self, prompts: &[String]) -> Result<Vec<Option<f64>>, JudgeError> {
        (**self).score_prompts(prompts)
    }

    fn score_outcomes(&self, prompts: &[String]) -> Result<Vec<Score>, JudgeError> {
        (**self).score_outcomes(prompts)
    }
}

/// A judge that asks a [`NumberScorer`] the trait's rubric and/or the coherence rubric for
/// every answer.
pub struct RubricJudge<S> {
    scorer: S,
    rubrics: Rubrics,
}

impl<S: NumberScorer> RubricJudge<S> {
    pub fn new(scorer: S, rubrics: Rubrics) -> Self {
        RubricJudge { scorer, rubrics }
    }

    pub fn scorer(&self) -> &S {
        &self.scorer
    }
}

/// Fills `{question}` and `{answer}` of the coherence rubric.
pub fn coherence_prompt(question: &str, answer: &str) -> String {
    COHERENCE_RUBRIC
        .replace("{question}", question)
        .replace("{answer}", answer)
}

impl<S: NumberScorer> Judge for RubricJudge<S> {
    fn id(&self) -> String {
        match self.rubrics {
            Rubrics::Trait => self.scorer.id(),
            Rubrics::Coherence => format!("{}:{COHERENCE_RUBRIC_ID}", self.scorer.id()),
            Rubrics::TraitAndCoherence => format!("{}+{COHERENCE_RUBRIC_ID}", self.scorer.id()),
        }
    }

    fn judge(
        &self,
        spec: &TraitSpec,
        items: &[(String, String)],
    ) -> Result<Vec<Judgement>, JudgeError> {
        let mut prompts: Vec<String> = Vec::new();
        if self.rubrics.trait_() {
            prompts.extend(items.iter().map(|(q, a)| spec.judge_prompt(q, a)));
        }
        if self.rubrics.coherence() {
            prompts.extend(items.iter().map(|(q, a)| coherence_prompt(q, a)));
        }
        let scores = self.scorer.score_prompts(&prompts)?;
        if scores.len() != prompts.len() {
            return Err(JudgeError::Backend(format!(
                "{} returned {} scores for {} prompts",
                self.scorer.id(),
                scores.len(),
                prompts.len()
            )));
        }
        let n = items.len();
        let (traits, coherence) = if self.rubrics.trait_() {
            scores.split_at(n)
        } else {
            scores.split_at(0)
        };
        Ok((0..n)
            .map(|i| Judgement {
                trait_score: traits.get(i).copied().flatten(),
                coherence: coherence.get(i).copied().flatten(),
            })
            .collect())
    }
}

/// The trait score from one judge and the coherence score from another (e.g. a sentiment
/// lexicon for optimism, and a local model for coherence).
pub struct CombinedJudge {
    pub trait_judge: Box<dyn Judge + Send + Sync>,
    pub coherence_judge: Box<dyn Judge + Send + Sync>,
}

impl Judge for CombinedJudge {
    fn id(&self) -> String {
        format!(
            "trait={};coherence={}",
            self.trait_judge.id(),
            self.coherence_judge.id()
        )
    }

    fn judge(
        &self,
        spec: &TraitSpec,
        items: &[(String, String)],
    ) -> Result<Vec<Judgement>, JudgeError> {
        let traits = self.trait_judge.judge(spec, items)?;
        let coherence = self.coherence_judge.judge(spec, items)?;
        Ok(traits
            .into_iter()
            .zip(coherence)
            .map(|(t, c)| Judgement {
                trait_score: t.trait_score,
                coherence: c.coherence,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_number_weights_by_probability() {
        let s = expected_number(&[(0, 0.25), (100, 0.25)]).unwrap();
        assert!((s - 50.0).abs() < 1e-12);
        let s = expected_number(&[(80, 0.6), (90, 0.2)]).unwrap();
        assert!((s - 82.5).abs() < 1e-12);
        assert_eq!(expected_number(&[(70, 0.1), (80, 0.1)]), None);
        assert_eq!(expected_number(&[]), None);
    }

    #[test]
    fn only_whole_numbers_up_to_100_count() {
        let top = vec![
            ("85".to_string(), (0.5f64).ln()),
            (" 85".to_string(), (0.1f64).ln()),
            ("100".to_string(), (0.1f64).ln()),
            ("101".to_string(), (0.1f64).ln()),
            ("8.5".to_string(), (0.05f64).ln()),
            ("The".to_string(), (0.1f64).ln()),
            ("-5".to_string(), (0.05f64).ln()),
        ];
        let nums = numbers_from_top_logprobs(&top);
        assert_eq!(nums.len(), 2);
        assert_eq!(nums[0].0, 85);
        assert!((nums[0].1 - 0.6).abs() < 1e-12);
        assert_eq!(nums[1].0, 100);
    }

    struct Fixed(Vec<Option<f64>>);
    impl NumberScorer for Fixed {
        fn id(&self) -> String {
            "fixed".into()
        }
        fn score_prompts(&self, prompts: &[String]) -> Result<Vec<Option<f64>>, JudgeError> {
            Ok(prompts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    if p.contains("coherent") {
                        Some(90.0)
                    } else {
                        self.0[i]
                    }
                })
                .collect())
        }
    }

    #[test]
    fn rubric_judge_pairs_trait_and_coherence_scores() {
        let spec = persona_traits::builtin("optimistic").unwrap();
        let j = RubricJudge::new(Fixed(vec![Some(10.0), None]), Rubrics::TraitAndCoherence);
        let items = vec![
            ("q1".to_string(), "a1".to_string()),
            ("q2".to_string(), "a2".to_string()),
        ];
        let out = j.judge(&spec, &items).unwrap();
        assert_eq!(out[0].trait_score, Some(10.0));
        assert_eq!(out[1].trait_score, None);
        assert_eq!(out[0].coherence, Some(90.0));
        assert!(j.id().ends_with(COHERENCE_RUBRIC_ID));
        let c = RubricJudge::new(Fixed(vec![]), Rubrics::Coherence);
        let out = c.judge(&spec, &items).unwrap();
        assert_eq!(out[1].trait_score, None);
        assert_eq!(out[1].coherence, Some(90.0));
    }
}
