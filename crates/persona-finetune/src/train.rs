//! The training loop: shuffled batches (seeded), mean cross-entropy over response tokens,
//! AdamW on the LoRA factors, a loss log, a checkpoint after every epoch with the optimizer's
//! moments (a rerun resumes from the last one as if never stopped), and the final adapter in
//! PEFT's layout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Tensor, D};
use persona_engine::{DenseWeights, LoraAdapter};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::data::TrainSeq;
use crate::model::{LoraModel, LoraPair, TrainIntervention};
use crate::optim::AdamW;
use crate::FinetuneError;
use persona_core::fs::write_atomic;
use persona_core::stats::SplitMix;

#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    /// How the frozen weights' products are computed (fast by default).
    pub products: crate::FrozenProducts,
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

/// A batch as tensors: token ids `[b, t]` (right-padded), the flat positions `b·t` whose next
/// token is a response token, and those tokens. Logits are only needed at those positions
/// (the vocabulary product is the largest of the model).
struct BatchTensors {
    ids: Tensor,
    positions: Tensor,
    targets: Vec<u32>,
    /// Response tokens: the loss is their mean cross-entropy.
    n: usize,
}

fn batch_tensors(model: &LoraModel, batch: &[&TrainSeq]) -> Result<BatchTensors, FinetuneError> {
    let dev = model.device();
    let t = batch.iter().map(|s| s.ids.len()).max().unwrap_or(0);
    if t < 2 {
        return Err(FinetuneError::Input(
            "a batch needs sequences of at least 2 tokens".into(),
        ));
    }
    let mut ids = Vec::with_capacity(batch.len() * t);
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    for (row, s) in batch.iter().enumerate() {
        ids.extend_from_slice(&s.ids);
        ids.extend(std::iter::repeat_n(0u32, t - s.ids.len()));
        for next in s.prompt_len.max(1)..s.ids.len() {
            positions.push((row * t + next - 1) as u32);
            targets.push(s.ids[next]);
        }
    }
    let n = positions.len();
    if n == 0 {
        return Err(FinetuneError::Input(
            "no response tokens in the batch: every sample needs a response".into(),
        ));
    }
    Ok(BatchTensors {
        ids: Tensor::from_vec(ids, (batch.len(), t), dev)?,
        positions: Tensor::from_vec(positions, n, dev)?,
        targets,
        n,
    })
}

/// Σ −log p(target) over residual-stream `rows` `[n, d]` after the last block, scaled by
/// `scale` (fused on the fast path).
fn rows_loss(
    model: &LoraModel,
    rows: &Tensor,
    targets: &[u32],
    scale: f64,
) -> candle_core::Result<Tensor> {
    let logits = model.logits(rows)?;
    if model.is_fast() {
        return crate::fused::cross_entropy(&logits, targets)?.sum_all()? * scale;
    }
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let targets = Tensor::from_slice(targets, (targets.len(), 1), logits.device())?;
    logp.gather(&targets, 1)?.sum_all()? * (-scale)
}

/// Mean cross-entropy of predicting each response token from everything before it, as one
/// differentiable graph over the whole model (the reference [`batch_gradients`] is checked
/// against).
pub fn batch_loss(
    model: &LoraModel,
    batch: &[&TrainSeq],
    intervention: Option<&TrainIntervention>,
) -> Result<Tensor, FinetuneError> {
    let bt = batch_tensors(model, batch)?;
    let h = model.hidden(&bt.ids, intervention)?;
    let (b, t, d) = h.dims3()?;
    let rows = h.reshape((b * t, d))?.index_select(&bt.positions, 0)?;
    Ok(rows_loss(model, &rows, &bt.targets, 1.0 / bt.n as f64)?)
}

/// Logit bytes per chunk of the loss: the vocabulary product runs on this many rows at once.
const LOGIT_CHUNK_BYTES: usize = 64 << 20;

/// The gradient `grads` holds for `var`, or zeros when nothing reached it (built only then).
fn grad_or_zeros(
    grads: &candle_core::backprop::GradStore,
    var: &candle_core::Var,
) -> candle_core::Result<Tensor> {
    match grads.get(var.as_tensor()) {
        Some(g) => Ok(g.clone()),
        None => var.zeros_like(),
    }
}

/// Bytes of autograd graph one block keeps per token: the activations candle holds for the
/// backward pass (≈ 40 copies of the residual width, 12 of the MLP width, 5 of the attention
/// scores), measured on SmolLM2-135M and Qwen2.5-0.5B to within ~20 %.
pub fn graph_bytes_per_token(model: &LoraModel, seq_len: usize) -> usize {
    let c = &model.weights.config;
    4 * (40 * c.d_model + 12 * c.d_ff + 5 * c.n_heads * seq_len)
}

/// The loss of a batch (as [`batch_loss`]) and its gradient for each of `model.vars()`, in
/// that order. The last `kept` blocks keep their autograd graph from the forward pass; the
/// blocks before them keep only the residual stream between blocks and are recomputed one at
/// a time in the backward pass (activation checkpointing). All blocks kept is one forward and
/// one backward pass; none kept holds one block's activations at a time, for one more forward
/// pass of compute.
pub fn batch_gradients(
    model: &LoraModel,
    batch: &[&TrainSeq],
    intervention: Option<&TrainIntervention>,
    kept: usize,
) -> Result<(f64, Vec<Tensor>), FinetuneError> {
    let bt = batch_tensors(model, batch)?;
    let (b, t) = bt.ids.dims2()?;
    let mask = model.causal_mask(t)?;
    let n_layers = model.weights.blocks.len();
    let first_kept = n_layers - kept.min(n_layers);
    let mut stream = vec![model.embed(&bt.ids)?];
    for l in 0..first_kept {
        let next = model.block(l, &stream[l], &mask, intervention)?.detach();
        stream.push(next);
    }
    // The kept blocks as one graph from a variable at their input.
    let kept_input = candle_core::Var::from_tensor(&stream[first_kept])?;
    let mut kept_out = kept_input.as_tensor().clone();
    for l in first_kept..n_layers {
        kept_out = model.block(l, &kept_out, &mask, intervention)?;
    }
    let last = kept_out.detach();
    let d = last.dim(2)?;
    let rows = last.reshape((b * t, d))?.index_select(&bt.positions, 0)?;
    let vocab = model.weights.config.vocab_size;
    let chunk = (LOGIT_CHUNK_BYTES / (4 * vocab)).max(16);
    let mut loss = 0.0;
    let mut row_grads = Vec::with_capacity(bt.n.div_ceil(chunk));
    for start in (0..bt.n).step_by(chunk) {
        let len = chunk.min(bt.n - start);
        let x = candle_core::Var::from_tensor(&rows.narrow(0, start, len)?)?;
        let part = rows_loss(
            model,
            x.as_tensor(),
            &bt.targets[start..start + len],
            1.0 / bt.n as f64,
        )?;
        loss += part.to_scalar::<f32>()? as f64;
        let grads = part.backward()?;
        row_grads.push(grad_or_zeros(&grads, &x)?);
    }
    let grad_out = Tensor::zeros((b * t, d), candle_core::DType::F32, model.device())?
        .index_add(&bt.positions, &Tensor::cat(&row_grads, 0)?, 0)?
        .reshape((b, t, d))?;
    let vars = model.vars();
    let mut var_grads: Vec<Option<Tensor>> = vec![None; vars.len()];
    // Backward through `out` (computed from `input`) given the gradient at `out`; returns the
    // gradient at `input`.
    let mut backward =
        |input: &candle_core::Var, out: Tensor, grad: &Tensor| -> Result<Tensor, FinetuneError> {
            let grads = (out * grad)?.sum_all()?.backward()?;
            for (slot, var) in var_grads.iter_mut().zip(&vars) {
                if let Some(g) = grads.get(var.as_tensor()) {
                    *slot = Some(match slot.take() {
                        Some(acc) => (acc + g)?,
                        None => g.clone(),
                    });
                }
            }
            Ok(grad_or_zeros(&grads, input)?)
        };
    let mut grad = if first_kept < n_layers {
        backward(&kept_input, kept_out, &grad_out)?
    } else {
        grad_out
    };
    for l in (0..first_kept).rev() {
        stream.pop();
        let input = candle_core::Var::from_tensor(&stream[l])?;
        let out = model.block(l, input.as_tensor(), &mask, intervention)?;
        grad = backward(&input, out, &grad)?;
    }
    let var_grads = var_grads
        .into_iter()
        .zip(&vars)
        .map(|(g, v)| g.map_or_else(|| v.zeros_like(), Ok))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok((loss, var_grads))
}

/// A third of the memory available now (Linux `MemAvailable`), else 4 GiB: recomputing a
/// block costs a third of its training time, faulting in memory the system does not have
/// costs far more.
pub fn default_graph_budget() -> usize {
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemAvailable:"))?;
        line.split_whitespace().nth(1)?.parse::<usize>().ok()
    });
    available.map_or(4 << 30, |kib| kib * 1024 / 3)
}

/// A model and its optimizer, stepped one batch at a time: the loop of [`finetune`], and of
/// anything else that trains (the bench).
pub struct Trainer {
    pub model: LoraModel,
    pub optimizer: AdamW,
    /// Bytes of autograd graph a step may keep; blocks beyond it are recomputed.
    pub graph_budget: usize,
    intervention: Option<TrainIntervention>,
    vars: Vec<candle_core::Var>,
    names: Vec<String>,
}

impl Trainer {
    /// AdamW at `lr` (no weight decay) on every factor of `model`.
    pub fn new(model: LoraModel, lr: f64, intervention: Option<TrainIntervention>) -> Trainer {
        persona_kernels::keep_all_freed_memory();
        let vars = model.vars();
        let names = model.var_names();
        Trainer {
            optimizer: AdamW::new(&vars, lr, 0.0),
            graph_budget: default_graph_budget(),
            model,
            intervention,
            vars,
            names,
        }
    }

    /// One optimizer step on `batch`; returns the batch's loss before the step.
    pub fn step(&mut self, batch: &[&TrainSeq]) -> Result<f64, FinetuneError> {
        let t = batch.iter().map(|s| s.ids.len()).max().unwrap_or(0);
        let per_block = graph_bytes_per_token(&self.model, t) * t * batch.len();
        let kept = self.graph_budget / per_block.max(1);
        let (loss, grads) = batch_gradients(&self.model, batch, self.intervention.as_ref(), kept)?;
        if !loss.is_finite() {
            return Err(FinetuneError::Input(format!(
                "the loss became {loss} at optimizer step {}: lower --lr",
                self.optimizer.step + 1
            )));
        }
        self.optimizer.update(&self.vars, &grads)?;
        Ok(loss)
    }

    /// The adapter, and the optimizer's moments as `optimizer.safetensors`, in `dir`.
    fn save_checkpoint(
        &self,
        dir: &Path,
        config: &persona_engine::ModelConfig,
        base_model: &str,
    ) -> Result<(), FinetuneError> {
        self.model.adapter().save_peft(dir, config, base_model)?;
        self.optimizer.save(&dir.join(OPTIMIZER_FILE), &self.names)
    }

    /// The optimizer's moments from a checkpoint folder written by this run.
    fn resume_optimizer(&mut self, dir: &Path, step: u64) -> Result<(), FinetuneError> {
        self.optimizer
            .load(&dir.join(OPTIMIZER_FILE), &self.names, step)
    }
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
            "{:?}|{}|{}|{}|{}|{}|{:?}|{:?}",
            opts.products,
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
    /// AdamW steps taken (its moments are in `optimizer.safetensors` beside this file).
    optimizer_step: u64,
}

/// The optimizer's moments in a checkpoint folder.
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> FinetuneError + '_ {
    move |e| FinetuneError::Write {
        path: path.to_path_buf(),
        source: e,
    }
}

/// The latest checkpoint this run wrote, if any: its folder and state.
fn latest_checkpoint(out_dir: &Path, fp: &str) -> Option<(PathBuf, CheckpointState)> {
    let mut best: Option<(PathBuf, CheckpointState)> = None;
    for entry in std::fs::read_dir(out_dir).ok()?.flatten() {
        let dir = entry.path();
        let Ok(text) = std::fs::read_to_string(dir.join("state.json")) else {
            continue;
        };
        let Ok(state) = serde_json::from_str::<CheckpointState>(&text) else {
            continue;
        };
        if state.fingerprint == fp && best.as_ref().is_none_or(|b| state.epoch > b.1.epoch) {
            best = Some((dir, state));
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
    let checkpoint = latest_checkpoint(out_dir, &fp);
    let (model, resumed, mut epoch_losses) = match &checkpoint {
        Some((dir, state)) => {
            let adapter = LoraAdapter::load_peft(dir, &config)?;
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
                state.epoch,
                state.epoch_losses.clone(),
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
    // Packed only once the data is known to fit: packing a large model takes seconds.
    let model = model.with_products(opts.products)?;
    let mut trainer = Trainer::new(model, opts.lr, opts.intervention.clone());
    if let Some((dir, state)) = &checkpoint {
        trainer.resume_optimizer(dir, state.optimizer_step)?;
    }
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
            let value = trainer.step(&batch)?;
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
        trainer.save_checkpoint(&dir, &config, base_model)?;
        let state = CheckpointState {
            epoch,
            fingerprint: fp.clone(),
            epoch_losses: epoch_losses.clone(),
            optimizer_step: trainer.optimizer.step,
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
    trainer
        .model
        .adapter()
        .save_peft(out_dir, &config, base_model)?;
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
