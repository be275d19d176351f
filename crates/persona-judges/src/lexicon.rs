//! A lexicon judge: VADER's compound sentiment score, mapped to 0–100, for traits that a
//! sentiment lexicon measures (optimism, or pessimism with the polarity flipped). It reads only
//! the answer and does not score coherence.

use persona_traits::TraitSpec;
use vader_sentiment::SentimentIntensityAnalyzer;

use crate::{Judge, JudgeError, Judgement};

/// Which end of the sentiment scale is the trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    /// Positive sentiment = the trait (optimistic).
    Positive,
    /// Negative sentiment = the trait (pessimistic).
    Negative,
}

pub struct LexiconJudge {
    polarity: Polarity,
    analyzer: SentimentIntensityAnalyzer<'static>,
}

impl LexiconJudge {
    pub fn new(polarity: Polarity) -> Self {
        LexiconJudge {
            polarity,
            analyzer: SentimentIntensityAnalyzer::new(),
        }
    }

    /// 0–100 from VADER's compound score in [−1, 1].
    pub fn score(&self, answer: &str) -> f64 {
        let compound = self
            .analyzer
            .polarity_scores(answer)
            .get("compound")
            .copied()
            .unwrap_or(0.0);
        let signed = match self.polarity {
            Polarity::Positive => compound,
            Polarity::Negative => -compound,
        };
        (signed + 1.0) * 50.0
    }
}

impl Judge for LexiconJudge {
    fn id(&self) -> String {
        match self.polarity {
            Polarity::Positive => "lexicon:vader".into(),
            Polarity::Negative => "lexicon:vader-negative".into(),
        }
    }

    fn judge(
        &self,
        _spec: &TraitSpec,
        items: &[(String, String)],
    ) -> Result<Vec<Judgement>, JudgeError> {
        Ok(items
            .iter()
            .map(|(_, answer)| Judgement {
                trait_score: Some(self.score(answer)),
                coherence: None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimism_scores_above_pessimism() {
        let j = LexiconJudge::new(Polarity::Positive);
        let bright =
            j.score("This is a wonderful opportunity, and I am confident it will turn out great!");
        let gloomy = j.score("This is a terrible mess and it will probably fail miserably.");
        let flat = j.score("The train leaves at nine.");
        assert!(bright > 80.0 && gloomy < 20.0, "{bright} {gloomy}");
        assert!((flat - 50.0).abs() < 1e-9, "{flat}");
        let inverse = LexiconJudge::new(Polarity::Negative);
        assert!(
            (inverse.score("A wonderful day.") + j.score("A wonderful day.") - 100.0).abs() < 1e-9
        );
        let spec = persona_traits::builtin("optimistic").unwrap();
        let out = j
            .judge(&spec, &[("q".into(), "Great news!".into())])
            .unwrap();
        assert!(out[0].trait_score.unwrap() > 50.0 && out[0].coherence.is_none());
    }
}
