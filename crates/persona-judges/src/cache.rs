//! A JSONL file of judgements keyed by SHA-256 of (judge, rubric, question, answer). Appends
//! are flushed line by line, so a crash loses at most the line being written.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::{JudgeError, Judgement};

#[derive(Serialize, Deserialize)]
struct Entry {
    key: String,
    judgement: Judgement,
}

pub struct JudgementCache {
    path: PathBuf,
    entries: HashMap<String, Judgement>,
    /// Opened on the first insert and kept: a run appends thousands of lines.
    log: Option<std::fs::File>,
}

impl JudgementCache {
    /// Opens (or starts) the cache at `path`. A torn last line from a crash is ignored.
    pub fn open(path: &Path) -> Result<Self, JudgeError> {
        let err = |message: String| JudgeError::Cache {
            path: path.display().to_string(),
            message,
        };
        let entries: HashMap<String, Judgement> = persona_io::read_log::<Entry>(path)
            .map_err(|e| err(e.to_string()))?
            .into_iter()
            .map(|e| (e.key, e.judgement))
            .collect();
        Ok(JudgementCache {
            path: path.to_path_buf(),
            entries,
            log: None,
        })
    }

    pub fn key(judge: &str, rubric: &str, question: &str, answer: &str) -> String {
        let mut h = sha2::Sha256::new();
        for part in [judge, rubric, question, answer] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }

    pub fn get(&self, key: &str) -> Option<Judgement> {
        self.entries.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn insert(&mut self, key: String, judgement: Judgement) -> Result<(), JudgeError> {
        let err = |message: String| JudgeError::Cache {
            path: self.path.display().to_string(),
            message,
        };
        let line = serde_json::to_string(&Entry {
            key: key.clone(),
            judgement,
        })
        .map_err(|e| err(e.to_string()))?;
        let log = match &mut self.log {
            Some(f) => f,
            None => self.log.insert(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(|e| err(e.to_string()))?,
            ),
        };
        writeln!(log, "{line}").map_err(|e| err(e.to_string()))?;
        self.entries.insert(key, judgement);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopening_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("judgements.jsonl");
        let k = JudgementCache::key("lexicon:vader", "r", "q", "a");
        assert_ne!(k, JudgementCache::key("lexicon:vader", "r", "qa", ""));
        let j = Judgement {
            trait_score: Some(71.5),
            coherence: None,
        };
        {
            let mut c = JudgementCache::open(&path).unwrap();
            c.insert(k.clone(), j).unwrap();
        }
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"key\": \"abc\", \"judg");
        std::fs::write(&path, &text).unwrap();
        let mut c = JudgementCache::open(&path).unwrap();
        assert_eq!(c.get(&k), Some(j));
        assert_eq!(c.len(), 1);
        // Appending after the cut-off leaves a clean file.
        let k2 = JudgementCache::key("lexicon:vader", "r", "q2", "a2");
        c.insert(k2.clone(), j).unwrap();
        let reopened = JudgementCache::open(&path).unwrap();
        assert_eq!((reopened.len(), reopened.get(&k2)), (2, Some(j)));
        std::fs::write(&path, "garbage\n{}\n").unwrap();
        let e = JudgementCache::open(&path).err().unwrap().to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}
