//! Training throughput: LoRA steps of persona's trainer, and of PyTorch + PEFT (fp32) on the
//! same token ids, batches, rank, targets and optimizer, run by a peer script in the same
//! invocation.
//!
//! The samples are the extraction workload's 64 conversations (system prompt, question,
//! answer; ~115 tokens each), rendered with the model's own chat template, so every model can
//! run them; the loss is taken on the answers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use persona_engine::{DenseWeights, Engine, Message};
use persona_finetune::{FrozenProducts, LoraModel, TrainSeq, Trainer};
use serde::{Deserialize, Serialize};

use crate::peers::{figures_line, Figures};
use crate::workload::read;
use crate::{BenchError, PeerError, PeerFigures};

/// The peer script, carried in the binary so the bench runs from any folder.
const PEFT_PEER: &str = include_str!("../peers/peer_peft_train.py");

/// What both trainers run: the settings `persona finetune` defaults to, batches of 8.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingOptions {
    pub rank: usize,
    pub alpha: f64,
    pub lr: f64,
    pub batch_size: usize,
    pub targets: Vec<String>,
    pub warmup_steps: usize,
    pub timed_steps: usize,
}

impl Default for TrainingOptions {
    fn default() -> Self {
        TrainingOptions {
            rank: 8,
            alpha: 16.0,
            lr: 1e-4,
            batch_size: 8,
            targets: persona_engine::LORA_TARGETS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            warmup_steps: 1,
            timed_steps: 3,
        }
    }
}

#[derive(Deserialize)]
struct Extract {
    pos_system: String,
    neg_system: String,
    pos: Vec<Turn>,
    neg: Vec<Turn>,
}

#[derive(Deserialize)]
struct Turn {
    question: String,
    response: String,
}

/// The training samples: the workload's conversations in our chat template.
pub fn training_samples(
    reference_dir: &Path,
    engine: &Engine,
) -> Result<Vec<TrainSeq>, BenchError> {
    let path = reference_dir.join("extract_workload").join("workload.json");
    let x: Extract = read(&path)?;
    let with_system = |system: &str, turns: Vec<Turn>| {
        turns.into_iter().map({
            let system = system.to_string();
            move |t| (system.clone(), t)
        })
    };
    with_system(&x.pos_system, x.pos)
        .chain(with_system(&x.neg_system, x.neg))
        .enumerate()
        .map(|(i, (system, t))| {
            let msg = |role: &str, content: String| Message {
                role: role.into(),
                content,
            };
            let seq = engine.chat_with_final_turn(&[
                msg("system", system),
                msg("user", t.question),
                msg("assistant", t.response),
            ])?;
            Ok(TrainSeq {
                ids: seq.ids,
                prompt_len: seq.prompt_len,
                line: i + 1,
            })
        })
        .collect()
}

/// The `k`-th batch: consecutive samples in order, cycling (as the peer takes them).
fn batch(samples: &[TrainSeq], size: usize, k: usize) -> Vec<&TrainSeq> {
    let batches = samples.len().div_ceil(size);
    let start = (k % batches) * size;
    samples[start..(start + size).min(samples.len())]
        .iter()
        .collect()
}

fn tokens(batch: &[&TrainSeq]) -> (usize, usize) {
    let all = batch.iter().map(|s| s.ids.len()).sum();
    let response = batch
        .iter()
        .map(|s| s.ids.len() - s.prompt_len.max(1))
        .sum();
    (all, response)
}

/// Our trainer on the samples, its frozen products as `products`: `train_tok_s` (every token
/// of the timed batches per second), `train_response_tok_s`, `train_step_s` (median),
/// `train_first_loss` (the first, untrained step), `train_last_loss`, under `prefix`.
pub fn run_ours(
    weights: DenseWeights,
    samples: &[TrainSeq],
    opts: &TrainingOptions,
    products: FrozenProducts,
    prefix: &str,
) -> Result<BTreeMap<String, f64>, BenchError> {
    let model = LoraModel::new(weights, opts.rank, opts.alpha, &opts.targets, 0)?
        .with_products(products)
        .map_err(persona_finetune::FinetuneError::from)?;
    let mut trainer = Trainer::new(model, opts.lr, None);
    let mut losses = Vec::new();
    let mut times = Vec::new();
    let (mut all, mut response) = (0, 0);
    for k in 0..opts.warmup_steps + opts.timed_steps {
        let b = batch(samples, opts.batch_size, k);
        let t = Instant::now();
        losses.push(trainer.step(&b)?);
        if k >= opts.warmup_steps {
            times.push(t.elapsed().as_secs_f64());
            let (a, r) = tokens(&b);
            all += a;
            response += r;
        }
    }
    let total: f64 = times.iter().sum();
    times.sort_by(f64::total_cmp);
    let key = |k: &str| format!("{prefix}{k}");
    Ok(BTreeMap::from([
        (key("tok_s"), all as f64 / total),
        (key("response_tok_s"), response as f64 / total),
        (key("step_s"), times[times.len() / 2]),
        (key("first_loss"), losses[0]),
        (key("last_loss"), *losses.last().expect("at least one step")),
    ]))
}

#[derive(Serialize)]
struct PeerWorkload<'a> {
    model: &'a Path,
    #[serde(flatten)]
    opts: &'a TrainingOptions,
    threads: usize,
    samples: Vec<PeerSample<'a>>,
}

#[derive(Serialize)]
struct PeerSample<'a> {
    ids: &'a [u32],
    prompt_len: usize,
}

/// The Python of the peers' venv: `$PEERS_VENV`, else `$PERSONA_HOME/peers-venv`
/// (`~/.cache/persona/peers-venv`).
pub fn peer_python() -> PathBuf {
    let venv = std::env::var_os("PEERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("PERSONA_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/persona")
                });
            home.join("peers-venv")
        });
    venv.join("bin").join("python")
}

/// Whether `python` exists, before anything is measured (the peer runs last).
pub fn check_peer(python: &Path) -> Result<(), PeerError> {
    if python.is_file() {
        Ok(())
    } else {
        Err(peer_err(python, "no such interpreter".into()))
    }
}

/// PyTorch + PEFT on the same samples and settings: `peft_train_tok_s`, …, as ours. `model`
/// is the GGUF both load; `threads` torch's threads (ours: all cores).
pub fn run_peer(
    python: &Path,
    model: &Path,
    samples: &[TrainSeq],
    opts: &TrainingOptions,
    threads: usize,
) -> Result<PeerFigures, PeerError> {
    let dir = tempfile::tempdir().map_err(|e| peer_err(python, e.to_string()))?;
    let script = dir.path().join("peer_peft_train.py");
    let workload = dir.path().join("workload.json");
    let spec = PeerWorkload {
        model,
        opts,
        threads,
        samples: samples
            .iter()
            .map(|s| PeerSample {
                ids: &s.ids,
                prompt_len: s.prompt_len,
            })
            .collect(),
    };
    std::fs::write(&script, PEFT_PEER)
        .and_then(|_| {
            std::fs::write(
                &workload,
                serde_json::to_vec(&spec).expect("the workload serializes"),
            )
        })
        .map_err(|e| peer_err(python, e.to_string()))?;
    let out = Command::new(python)
        .arg(&script)
        .arg("--workload")
        .arg(&workload)
        .args(["--quiet-max-wait", "0"])
        .output()
        .map_err(|e| peer_err(python, e.to_string()))?;
    figures_line(&out).map_err(|e| match e {
        Figures::Failed(message) => peer_err(python, message),
        Figures::Unreadable(message) => PeerError::Output(message),
    })
}

fn peer_err(python: &Path, message: String) -> PeerError {
    PeerError::Run {
        script: python.to_path_buf(),
        setup: PathBuf::from("scripts/setup_train_peer.sh"),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: usize, prompt: usize) -> TrainSeq {
        TrainSeq {
            ids: vec![1; n],
            prompt_len: prompt,
            line: 1,
        }
    }

    #[test]
    fn batches_cycle_in_order_like_the_peer() {
        let s: Vec<TrainSeq> = (1..=5).map(|n| seq(n + 2, 1)).collect();
        let lens = |k| {
            batch(&s, 2, k)
                .iter()
                .map(|x| x.ids.len())
                .collect::<Vec<_>>()
        };
        assert_eq!(lens(0), vec![3, 4]);
        assert_eq!(lens(2), vec![7]);
        assert_eq!(lens(3), vec![3, 4]);
        assert_eq!(tokens(&batch(&s, 2, 0)), (7, 5));
    }
}
