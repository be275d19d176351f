//! The training loop: shuffled batches (seeded), mean cross-entropy over response tokens,
//! AdamW on the LoRA factors, a loss log, a checkpoint after every epoch (a rerun resumes from
//! the last one), and the final adapter in PEFT's layout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use persona_engine::{DenseWeights, LoraAdapter};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::data::TrainSeq;
use crate::model::{LoraModel, LoraPair, TrainIntervention};
use crate::FinetuneError;
use persona_core::fs::write_atomic;
use persona_core::stats::SplitMix;

#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    pub rank: usize,
    pub alpha: f64,
    pub lr: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// GGUF part names of the projections that get factors.
    pub targets: Vec<String>,
    pub intervention: Option<TrainIntervention>,
}

/// One optimizer step, for progress bars.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct StepReport {
    pub epoch: usize,
    pub step: usize,
    pub total_steps: usize,
    pub loss: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FinetuneResult {
    pub samples: usize,
    pub response_tokens: usize,
    pub epochs: usize,
    pub steps: usize,
    /// Mean loss of each epoch.
    pub epoch_losses: Vec<f64>,
    pub first_loss: Option<f64>,
    pub final_loss: Option<f64>,
    /// The epoch training resumed after (0: from scratch).
    pub resumed_from_epoch: usize,
    pub intervention: Option<String>,
    pub adapter_dir: PathBuf,
    pub losses_file: PathBuf,
    pub checkpoints: Vec<PathBuf>,
}

/// Mean cross-entropy of predicting each response token from everything before it.
pub fn batch_loss(
    model: &LoraModel,
    batch: &[&TrainSeq],
    intervention: Option<&TrainIntervention>,
) -> Result<Tensor, FinetuneError> {
    let dev = model.device().clone();
    let t = batch.iter().map(|s| s.ids.len()).max().unwrap_or(0);
    if t < 2 {
        return Err(FinetuneError::Input(
            "a batch needs sequences of at least 2 tokens".into(),
        ));
    }
    let b = batch.len();
    let mut ids = Vec::with_capacity(b * t);
    let mut targets = Vec::with_capacity(b * (t - 1));
    let mut weights = Vec::with_capacity(b * (t - 1));
    for s in batch {
        ids.extend_from_slice(&s.ids);
        ids.extend(std::iter::repeat_n(0u32, t - s.ids.len()));
        for i in 0..t - 1 {
            // Position i predicts token i + 1; only response tokens count.
            let next = i + 1;
            let counted = next >= s.prompt_len && next < s.ids.len();
            targets.push(if next < s.ids.len() { s.ids[next] } else { 0 });
            weights.push(if counted { 1f32 } else { 0.0 });
        }
    }
    let n: f32 = weights.iter().sum();
    if n == 0.0 {
        return Err(FinetuneError::Input(
            "no response tokens in the batch: every sample needs a response".into(),
        ));
    }
    let ids = Tensor::from_vec(ids, (b, t), &dev)?;
    let logits = model.forward(&ids, intervention)?;
    let v = logits.dim(2)?;
    let logp = candle_nn::ops::log_softmax(
        &logits.narrow(1, 0, t - 1)?.reshape((b * (t - 1), v))?,
        D::Minus1,
    )?;
    let targets = Tensor::from_vec(targets, (b * (t - 1), 1), &dev)?;
    let picked = logp.gather(&targets, 1)?.squeeze(1)?;
    let weights = Tensor::from_vec(weights, b * (t - 1), &dev)?;
    Ok(((picked * weights)?.sum_all()? * (-1.0 / n as f64))?)
}

/// Identifies a training run: the data, the settings and the base weights. A checkpoint is
/// resumed only by the run that wrote it.
fn fingerprint(samples: &[TrainSeq], opts: &FinetuneOptions, base_model: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(base_model.as_bytes());
    for s in samples {
        for id in &s.ids {
            h.update(id.to_le_bytes());
        }
        h.update((s.prompt_len as u64).to_le_bytes());
    }
    h.update(
        format!(
            "{}|{}|{}|{}|{}|{:?}|{:?}",
            opts.rank,
            opts.alpha,
            opts.lr,
            opts.batch_size,
            opts.seed,
            opts.targets,
            opts.intervention
        )
        .as_bytes(),
    );
    hex::encode(&h.finalize()[..12])
}

#[derive(Serialize, Deserialize)]
struct CheckpointState {
    epoch: usize,
    fingerprint: String,
    epoch_losses: Vec<f64>,
}

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> FinetuneError + '_ {
    move |e| FinetuneError::Write {
        path: path.to_path_buf(),
        source: e,
    }
}

/// The latest checkpoint this run wrote, if any: (epoch, its folder, losses so far).
fn latest_checkpoint(out_dir: &Path, fp: &str) -> Option<(usize, PathBuf, Vec<f64>)> {
    let mut best: Option<(usize, PathBuf, Vec<f64>)> = None;
    for entry in std::fs::read_dir(out_dir).ok()?.flatten() {
        let dir = entry.path();
        let Ok(text) = std::fs::read_to_string(dir.join("state.json")) else {
            continue;
        };
        let Ok(state) = serde_json::from_str::<CheckpointState>(&text) else {
            continue;
        };
        if state.fingerprint == fp && best.as_ref().is_none_or(|b| state.epoch > b.0) {
            best = Some((state.epoch, dir, state.epoch_losses));
        }
    }
    best
}

/// Trains an adapter on `samples` and writes it to `out_dir` (PEFT files), with `losses.jsonl`,
/// `checkpoint-epoch-N/` folders and `finetune.json`. `weights` are the base model's dense
/// weights; `base_model` names it in the adapter config and the run's fingerprint.
pub fn finetune(
    weights: DenseWeights,
    base_model: &str,
    samples: &[TrainSeq],
    opts: &FinetuneOptions,
    out_dir: &Path,
    progress: &mut dyn FnMut(StepReport),
) -> Result<FinetuneResult, FinetuneError> {
    if samples.is_empty() {
        return Err(FinetuneError::Input("no samples to train on".into()));
    }
    if opts.epochs == 0 || opts.batch_size == 0 {
        return Err(FinetuneError::Input(
            "--epochs and --batch-size must be at least 1".into(),
        ));
    }
    let config = weights.config.clone();
    if let Some(iv) = &opts.intervention {
        if iv.last_layer() >= config.n_layers {
            return Err(FinetuneError::Input(format!(
                "the training intervention's layer {} does not exist: the model has layers 0..{}",
                iv.last_layer(),
                config.n_layers
            )));
        }
    }
    std::fs::create_dir_all(out_dir).map_err(write_err(out_dir))?;
    let fp = fingerprint(samples, opts, base_model);
    let (model, resumed, mut epoch_losses) = match latest_checkpoint(out_dir, &fp) {
        Some((epoch, dir, losses)) => {
            let adapter = LoraAdapter::load_peft(&dir, &config)?;
            let lora = adapter
                .weights
                .into_iter()
                .map(|(k, (a, b))| {
                    Ok((
                        k,
                        LoraPair {
                            a: candle_core::Var::from_tensor(&a)?,
                            b: candle_core::Var::from_tensor(&b)?,
                        },
                    ))
                })
                .collect::<Result<BTreeMap<_, _>, candle_core::Error>>()?;
            (
                LoraModel::with_factors(weights, lora, opts.rank, opts.alpha)?,
                epoch,
                losses,
            )
        }
        None => (
            LoraModel::new(weights, opts.rank, opts.alpha, &opts.targets, opts.seed)?,
            0,
            Vec::new(),
        ),
    };
    if let Some(long) = samples.iter().find(|s| s.ids.len() > model.max_len()) {
        return Err(FinetuneError::Input(format!(
            "line {} is {} tokens, longer than the {} the model supports here",
            long.line,
            long.ids.len(),
            model.max_len()
        )));
    }
    let mut optimizer = AdamW::new(
        model.vars(),
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let losses_file = out_dir.join("losses.jsonl");
    if resumed == 0 {
        write_atomic(&losses_file, b"")?;
    }
    let steps_per_epoch = samples.len().div_ceil(opts.batch_size);
    let total_steps = steps_per_epoch * opts.epochs;
    let mut checkpoints = Vec::new();
    let mut first_loss = None;
    for epoch in resumed + 1..=opts.epochs {
        // A fresh, seeded order every epoch (the same on a resumed run).
        let mut order: Vec<usize> = (0..samples.len()).collect();
        let mut rng = SplitMix(opts.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9));
        for i in (1..order.len()).rev() {
            let j = rng.below(i + 1);
            order.swap(i, j);
        }
        let mut sum = 0.0;
        for (k, chunk) in order.chunks(opts.batch_size).enumerate() {
            let batch: Vec<&TrainSeq> = chunk.iter().map(|&i| &samples[i]).collect();
            let loss = batch_loss(&model, &batch, opts.intervention.as_ref())?;
            optimizer.backward_step(&loss)?;
            let value = loss.to_scalar::<f32>()? as f64;
            if !value.is_finite() {
                return Err(FinetuneError::Input(format!(
                    "the loss became {value} at epoch {epoch}, step {}: lower --lr",
                    k + 1
                )));
            }
            first_loss.get_or_insert(value);
            sum += value;
            let report = StepReport {
                epoch,
                step: (epoch - 1) * steps_per_epoch + k + 1,
                total_steps,
                loss: value,
            };
            append_line(&losses_file, &report)?;
            progress(report);
        }
        epoch_losses.push(sum / steps_per_epoch as f64);
        let dir = out_dir.join(format!("checkpoint-epoch-{epoch}"));
        model.adapter().save_peft(&dir, &config, base_model)?;
        let state = CheckpointState {
            epoch,
            fingerprint: fp.clone(),
            epoch_losses: epoch_losses.clone(),
        };
        let state_path = dir.join("state.json");
        write_atomic(
            &state_path,
            serde_json::to_string(&state)
                .expect("state serializes")
                .as_bytes(),
        )?;
        checkpoints.push(dir);
    }
    model.adapter().save_peft(out_dir, &config, base_model)?;
    let result = FinetuneResult {
        samples: samples.len(),
        response_tokens: samples.iter().map(|s| s.ids.len() - s.prompt_len).sum(),
        epochs: opts.epochs,
        steps: total_steps,
        first_loss,
        final_loss: epoch_losses.last().copied(),
        epoch_losses,
        resumed_from_epoch: resumed,
        intervention: opts.intervention.as_ref().map(|iv| match iv {
            TrainIntervention::Steer { layer, alpha, .. } => {
                format!("steer layer {layer} α {alpha}")
            }
            TrainIntervention::SteerEveryLayer { alpha, .. } => {
                format!("steer every layer α {alpha}")
            }
            TrainIntervention::Ablate { layer, .. } => format!("ablate layer {layer}"),
        }),
        adapter_dir: out_dir.to_path_buf(),
        losses_file,
        checkpoints,
    };
    let summary = out_dir.join("finetune.json");
    write_atomic(
        &summary,
        serde_json::to_string_pretty(&result)
            .expect("results serialize")
            .as_bytes(),
    )?;
    Ok(result)
}

fn append_line<T: Serialize>(path: &Path, row: &T) -> Result<(), FinetuneError> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(write_err(path))?;
    writeln!(f, "{}", serde_json::to_string(row).expect("rows serialize")).map_err(write_err(path))
}
