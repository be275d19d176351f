use std::path::PathBuf;

use anyhow::{bail, Context};
use persona_finetune::TrainIntervention;

use crate::input::load_with;
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    /// The training data: JSONL, one `{"messages": [...]}` per line ending with the
    /// assistant's response (the loss is taken on it), or `{"prompt", "response"}`.
    dataset: PathBuf,
    /// Output folder: the adapter (adapter_config.json, adapter_model.safetensors), the loss
    /// log, a checkpoint per epoch (a rerun resumes after the last one), finetune.json.
    #[arg(long)]
    out: PathBuf,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// LoRA α (updates are scaled by α / rank).
    #[arg(long, default_value_t = 16.0)]
    alpha: f64,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Samples per optimizer step.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Seeds the factors' initialisation and the sample order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Longest training sequence in tokens (longer responses are cut).
    #[arg(long, default_value_t = 256)]
    max_len: usize,
    /// Projections that get factors, comma-separated (attn_q, attn_k, attn_v, attn_output,
    /// ffn_gate, ffn_up, ffn_down).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down"
    )]
    targets: Vec<String>,
    /// Preventative steering: add ALPHA × the vector of LAYER from FILE at
    /// blocks.LAYER.resid_post while training (never afterwards).
    #[arg(long, value_name = "FILE:LAYER:ALPHA", conflicts_with_all = ["ablate", "steer_every_layer"])]
    steer: Option<String>,
    /// Preventative steering at every layer: add ALPHA × the file's vector of each layer at
    /// that layer's resid_post while training (the file needs every layer).
    #[arg(long, value_name = "FILE:ALPHA", conflicts_with = "ablate")]
    steer_every_layer: Option<String>,
    /// Project the direction of LAYER from FILE out of blocks.LAYER.resid_post while training.
    #[arg(long, value_name = "FILE:LAYER")]
    ablate: Option<String>,
    /// Compute the frozen weights' products with plain f32 matmuls (and their needless weight
    /// gradients): the slow reference the default bf16 products (AMX or AVX-512 BF16, where
    /// the CPU has them) are checked against.
    #[arg(long)]
    reference_products: bool,
}

/// `FILE:LAYER[:ALPHA]` → (the layer's vector, layer, alpha).
fn vector_at(spec: &str, flag: &str, with_alpha: bool) -> anyhow::Result<(Vec<f32>, usize, f32)> {
    let parts: Vec<&str> = spec.rsplitn(if with_alpha { 3 } else { 2 }, ':').collect();
    let form = if with_alpha {
        "FILE:LAYER:ALPHA"
    } else {
        "FILE:LAYER"
    };
    let (file, layer, alpha) = match (with_alpha, parts.as_slice()) {
        (true, [a, l, f]) => (
            *f,
            *l,
            a.parse::<f32>()
                .with_context(|| format!("{flag} `{spec}`: `{a}` is not a number"))?,
        ),
        (false, [l, f]) => (*f, *l, 1.0),
        _ => bail!("{flag} `{spec}` must be {form}"),
    };
    let layer: usize = layer
        .parse()
        .with_context(|| format!("{flag} `{spec}`: `{layer}` is not a layer index"))?;
    let path = std::path::Path::new(file);
    let vectors = persona_io::LayerVectors::load(path)?;
    Ok((vectors.get(layer, path)?.to_vec(), layer, alpha))
}

/// `FILE:ALPHA` → steering with every layer's vector of FILE (layers 0..n, none missing).
fn every_layer(spec: &str) -> anyhow::Result<TrainIntervention> {
    let (file, alpha) = spec
        .rsplit_once(':')
        .with_context(|| format!("--steer-every-layer `{spec}` must be FILE:ALPHA"))?;
    let alpha: f32 = alpha
        .parse()
        .with_context(|| format!("--steer-every-layer `{spec}`: `{alpha}` is not a number"))?;
    let path = std::path::Path::new(file);
    let vectors = persona_io::LayerVectors::load(path)?;
    let n = vectors.layers.len();
    let per_layer = (0..n)
        .map(|l| Ok(vectors.get(l, path)?.to_vec()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if per_layer.is_empty() {
        bail!("{} holds no vectors", path.display());
    }
    Ok(TrainIntervention::SteerEveryLayer {
        vectors: per_layer,
        alpha,
    })
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    if !a.dataset.is_file() {
        bail!(
            "no dataset at {}: give a JSONL file of chat samples",
            a.dataset.display()
        );
    }
    let intervention = match (&a.steer, &a.steer_every_layer, &a.ablate) {
        (Some(s), _, _) => {
            let (vector, layer, alpha) = vector_at(s, "--steer", true)?;
            Some(TrainIntervention::Steer {
                layer,
                vector,
                alpha,
            })
        }
        (None, Some(s), _) => Some(every_layer(s)?),
        (None, None, Some(s)) => {
            let (direction, layer, _) = vector_at(s, "--ablate", false)?;
            Some(TrainIntervention::Ablate { layer, direction })
        }
        (None, None, None) => None,
    };
    // Training differentiates through exact f32 weights.
    let engine = load_with(
        g,
        None,
        g.adapter.as_deref(),
        persona_engine::WeightMode::F32,
    )?;
    if let Some(iv) = &intervention {
        let (d, layers) = match iv {
            TrainIntervention::Steer { vector, .. } => (vector.len(), None),
            TrainIntervention::SteerEveryLayer { vectors, .. } => {
                (vectors[0].len(), Some(vectors.len()))
            }
            TrainIntervention::Ablate { direction, .. } => (direction.len(), None),
        };
        if let Some(n) = layers.filter(|&n| n != engine.config().n_layers) {
            bail!(
                "--steer-every-layer: the file has vectors for {n} layers but the model has {}",
                engine.config().n_layers
            );
        }
        if d != engine.config().d_model {
            bail!(
                "the vector has {d} values but the model's hidden size is {}: it was made with another model",
                engine.config().d_model
            );
        }
    }
    let samples = persona_finetune::load_dataset(&engine, &a.dataset, a.max_len)?;
    crate::input::record(&engine, &a.out)?;
    let opts = persona_finetune::FinetuneOptions {
        rank: a.rank,
        alpha: a.alpha,
        lr: a.lr,
        epochs: a.epochs,
        batch_size: a.batch_size,
        seed: a.seed,
        targets: a.targets.clone(),
        intervention,
        products: if a.reference_products {
            persona_finetune::FrozenProducts::Reference
        } else {
            persona_finetune::FrozenProducts::Fast
        },
    };
    let base = engine.model_id()?;
    let weights = engine.dense_weights()?;
    drop(engine);
    let bar = crate::output::bar(1, "training");
    let r = persona_finetune::finetune(weights, &base, &samples, &opts, &a.out, &mut |s| {
        bar.set_length(s.total_steps as u64);
        bar.set_position(s.step as u64);
        bar.set_message(format!("epoch {} loss {:.4}", s.epoch, s.loss));
    })
    .with_context(|| format!("finetuning on {}", a.dataset.display()))?;
    bar.finish_and_clear();
    emit(g.format, &r, || {
        println!(
            "{} samples ({} response tokens), {} epochs, {} steps{}",
            r.samples,
            r.response_tokens,
            r.epochs,
            r.steps,
            r.intervention
                .as_deref()
                .map_or(String::new(), |i| format!(", training with {i}"))
        );
        let f = |x: Option<f64>| crate::output::num(x, 4);
        println!(
            "loss: first step {}, last epoch {} (per epoch: {})",
            f(r.first_loss),
            f(r.final_loss),
            r.epoch_losses
                .iter()
                .map(|l| format!("{l:.4}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "adapter: {} (use it with --adapter {})",
            r.adapter_dir.display(),
            r.adapter_dir.display()
        );
    })
}
