//! The fixed workloads: the 512-token prompt and chat prompts of the llama.cpp reference, and
//! the 64-sample persona-vector extraction workload, tokenized by our own tokenizer.

use std::path::{Path, PathBuf};

use persona_engine::{Engine, Message, TokenSequence};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("cannot read the benchmark workload {path}: {message}. Pass --reference DIR (the folder with greedy_llamacpp.json and extract_workload/) or set PERSONA_SHARED")]
    Read { path: PathBuf, message: String },
    #[error("our tokenizer disagrees with the reference workload in {path} ({what}); this model is not the one the workload was made for: measure other models with `persona bench --sections training`")]
    Mismatch { path: PathBuf, what: String },
}

pub struct Workload {
    pub prompt_eval_ids: Vec<u32>,
    pub greedy_prompts: Vec<Vec<u32>>,
    pub rollout_prompts: Vec<Vec<u32>>,
    pub extraction: Vec<TokenSequence>,
}

#[derive(Deserialize)]
struct Greedy {
    prompt_eval_ids: Vec<u32>,
    prompts: Vec<GreedyPrompt>,
}

#[derive(Deserialize)]
struct GreedyPrompt {
    prompt_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Extract {
    pos_system: String,
    questions: Vec<String>,
    pos: Vec<Sample>,
    neg: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    input_ids: Vec<u32>,
    prompt_len: usize,
}

pub(crate) fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, WorkloadError> {
    let err = |message: String| WorkloadError::Read {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}

impl Workload {
    pub fn load(dir: &Path, engine: &Engine) -> Result<Self, WorkloadError> {
        let greedy_path = dir.join("greedy_llamacpp.json");
        let g: Greedy = read(&greedy_path)?;
        let x_path = dir.join("extract_workload").join("workload.json");
        let x: Extract = read(&x_path)?;
        // Rollout prompts: the workload's questions under its system prompt, rendered here.
        let rollout_prompts = x
            .questions
            .iter()
            .map(|q| {
                engine.chat_prompt_ids(&[
                    Message {
                        role: "system".into(),
                        content: x.pos_system.clone(),
                    },
                    Message {
                        role: "user".into(),
                        content: q.clone(),
                    },
                ])
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| WorkloadError::Mismatch {
                path: x_path.clone(),
                what: e.to_string(),
            })?;
        if rollout_prompts
            .first()
            .zip(x.pos.first())
            .is_some_and(|(p, s)| s.input_ids.get(..p.len()) != Some(&p[..]))
        {
            return Err(WorkloadError::Mismatch {
                path: x_path,
                what: "rendered prompt ids differ from input_ids".into(),
            });
        }
        let extraction = x
            .pos
            .into_iter()
            .chain(x.neg)
            .map(|s| TokenSequence {
                ids: s.input_ids,
                prompt_len: s.prompt_len,
            })
            .collect();
        Ok(Workload {
            prompt_eval_ids: g.prompt_eval_ids,
            greedy_prompts: g.prompts.into_iter().map(|p| p.prompt_ids).collect(),
            rollout_prompts,
            extraction,
        })
    }
}
