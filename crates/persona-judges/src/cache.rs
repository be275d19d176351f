//! The records of a judgement cache: each judgement keyed by SHA-256 of (judge, rubric,
//! question, answer), so a rerun after a crash or with more samples only judges what is new.
//! Where the records live (a run folder, memory) is the caller's store.

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::Judgement;

/// One cache line: the key and its judgement (a [`Judgement`], or what else a pipeline caches,
/// e.g. a rubric's [`crate::Score`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry<J = Judgement> {
    pub key: String,
    pub judgement: J,
}

/// The cache key of judging `answer` to `question` under `rubric` with `judge`.
pub fn judgement_key(judge: &str, rubric: &str, question: &str, answer: &str) -> String {
    let mut h = sha2::Sha256::new();
    for part in [judge, rubric, question, answer] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_their_parts() {
        let k = judgement_key("lexicon:vader", "r", "q", "a");
        assert_ne!(k, judgement_key("lexicon:vader", "r", "qa", ""));
        assert_eq!(k, judgement_key("lexicon:vader", "r", "q", "a"));
        let e = CacheEntry {
            key: k,
            judgement: Judgement {
                trait_score: Some(71.5),
                coherence: None,
            },
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<CacheEntry>(&line).unwrap(), e);
    }
}
