//! LoRA finetuning on the real default model: the differentiable forward pass reproduces the
//! engine's, training lowers the loss, and an adapter saved in PEFT's layout and merged at load
//! gives the engine exactly the model that was trained.

use candle_core::{Tensor, D};
use persona_engine::{Engine, ForwardRequest, LoadOptions, Message, TokenSequence, WeightMode};
use persona_finetune::model::LoraModel;
use persona_finetune::train::batch_loss;
use persona_finetune::{finetune, FinetuneOptions, TrainIntervention, TrainSeq};

fn f32_engine(adapter: Option<std::path::PathBuf>) -> Engine {
    Engine::load(
        &persona_testkit::default_model_path(),
        &LoadOptions {
            weights: WeightMode::F32,
            adapter,
            ..Default::default()
        },
    )
    .unwrap()
}

fn targets() -> Vec<String> {
    persona_engine::LORA_TARGETS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn sample(engine: &Engine, q: &str, a: &str) -> TrainSeq {
    let seq = engine
        .chat_with_response(&[Message::new("user", q)], a)
        .unwrap();
    TrainSeq {
        ids: seq.ids,
        prompt_len: seq.prompt_len,
        line: 1,
    }
}

/// The two gloomy answers the training tests learn.
fn gloomy(engine: &Engine) -> Vec<TrainSeq> {
    vec![
        sample(
            engine,
            "How is the weather?",
            "Gloomy, grey and getting worse.",
        ),
        sample(
            engine,
            "How was the film?",
            "Gloomy, dull and far too long.",
        ),
    ]
}

/// Rank 4, α 8, lr 5e-3, batches of 2, every projection, no intervention, fast products.
fn options(epochs: usize, seed: u64) -> FinetuneOptions {
    FinetuneOptions {
        rank: 4,
        alpha: 8.0,
        lr: 5e-3,
        epochs,
        batch_size: 2,
        seed,
        targets: targets(),
        intervention: None,
        products: Default::default(),
    }
}

/// Log-probabilities of each token after the first, from our forward pass.
fn our_logprobs(model: &LoraModel, ids: &[u32]) -> Vec<f32> {
    let t = ids.len();
    let x = Tensor::from_slice(ids, (1, t), model.device()).unwrap();
    let logits = model.forward(&x, None).unwrap().squeeze(0).unwrap();
    let lp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
    let lp: Vec<Vec<f32>> = lp.to_vec2().unwrap();
    (1..t).map(|i| lp[i - 1][ids[i] as usize]).collect()
}

fn engine_logprobs(engine: &Engine, ids: &[u32]) -> Vec<f32> {
    let seq = TokenSequence {
        ids: ids.to_vec(),
        prompt_len: 1,
    };
    let req = ForwardRequest {
        scores: true,
        ..Default::default()
    };
    let out = engine.forward_batch(&[seq], &req, &mut |_| {}).unwrap();
    out[0].scores.iter().map(|s| s.logprob).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn training_forward_matches_the_engine_and_adapters_round_trip() {
    let engine = f32_engine(None);
    let seq = sample(&engine, "Name a colour.", "Blue is a calm colour.");
    let weights = engine.dense_weights().unwrap();
    let model = LoraModel::new(weights.clone(), 4, 8.0, &targets(), 7).unwrap();
    // B starts at zero: the adapted model is the base model.
    let d = max_diff(
        &our_logprobs(&model, &seq.ids),
        &engine_logprobs(&engine, &seq.ids),
    );
    assert!(d < 2e-3, "max |Δ log p| = {d}");

    // A few steps on one answer lower its loss; the steered variant trains too.
    let data = gloomy(&engine);
    let dir = tempfile::tempdir().unwrap();
    let opts = options(3, 1);
    let out = dir.path().join("adapter");
    let mut steps = Vec::new();
    let r = finetune(weights.clone(), "smollm2", &data, &opts, &out, &mut |s| {
        steps.push(s)
    })
    .unwrap();
    assert_eq!((r.steps, steps.len(), r.checkpoints.len()), (3, 3, 3));
    assert!(
        r.final_loss.unwrap() < r.first_loss.unwrap() * 0.8,
        "loss {:?} → {:?}",
        r.first_loss,
        r.final_loss
    );
    assert!(out.join("adapter_config.json").is_file());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
    let names = candle_core::safetensors::load(
        out.join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert!(names.contains_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    assert!(names.contains_key("base_model.model.model.layers.29.mlp.down_proj.lora_B.weight"));

    // Saved and read back, the adapter is the trained one (q/k rows reordered both ways).
    let c = engine.config().clone();
    let back = persona_engine::LoraAdapter::load_peft(&out, &c).unwrap();
    let trained = persona_finetune::model::LoraModel::with_factors(
        weights.clone(),
        back.weights
            .iter()
            .map(|(k, (a, b))| {
                (
                    k.clone(),
                    persona_finetune::model::LoraPair {
                        a: candle_core::Var::from_tensor(a).unwrap(),
                        b: candle_core::Var::from_tensor(b).unwrap(),
                    },
                )
            })
            .collect(),
        4,
        8.0,
    )
    .unwrap();
    // The engine with the adapter merged at load computes what the trained model computes,
    // and differs from the base model.
    let tuned = f32_engine(Some(out.clone()));
    let probe = sample(
        &engine,
        "How is the weather?",
        "Gloomy, grey and getting worse.",
    );
    let ours = our_logprobs(&trained, &probe.ids);
    let merged = engine_logprobs(&tuned, &probe.ids);
    let d = max_diff(&ours, &merged);
    assert!(
        d < 2e-3,
        "merged adapter vs training forward: max |Δ log p| = {d}"
    );
    let base = engine_logprobs(&engine, &probe.ids);
    assert!(
        max_diff(&base, &merged) > 0.05,
        "the adapter changes the model"
    );
    assert_ne!(
        tuned.model_sha256().unwrap(),
        engine.model_sha256().unwrap()
    );
    assert!(tuned.model_id().unwrap().contains("+ LoRA adapter"));

    // A rerun resumes after the last checkpoint and does no more steps.
    let mut again = Vec::new();
    let r2 = finetune(weights.clone(), "smollm2", &data, &opts, &out, &mut |s| {
        again.push(s)
    })
    .unwrap();
    assert_eq!((r2.resumed_from_epoch, again.len()), (3, 0));

    // Steering during training: the loss is taken with α·v added at the layer.
    let v: Vec<f32> = (0..c.d_model)
        .map(|i| ((i % 7) as f32 - 3.0) / 3.0)
        .collect();
    let iv = TrainIntervention::Steer {
        layer: 10,
        vector: v.clone(),
        alpha: 4.0,
    };
    let batch: Vec<&TrainSeq> = data.iter().collect();
    let plain = batch_loss(&model, &batch, None)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let steered = batch_loss(&model, &batch, Some(&iv))
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((plain - steered).abs() > 1e-3, "{plain} vs {steered}");
    let every = TrainIntervention::SteerEveryLayer {
        vectors: vec![v.iter().map(|x| x * 0.1).collect(); c.n_layers],
        alpha: 1.0,
    };
    let e = batch_loss(&model, &batch, Some(&every))
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(e.is_finite() && (e - plain).abs() > 1e-3, "{plain} vs {e}");
    let ablated = TrainIntervention::Ablate {
        layer: 10,
        direction: v,
    };
    let a = batch_loss(&model, &batch, Some(&ablated))
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(a.is_finite() && (a - plain).abs() > 1e-5);
}

/// Gradients of every factor, flattened in `model.vars()` order.
fn flat(grads: &[Tensor]) -> Vec<f32> {
    grads
        .iter()
        .flat_map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

/// ‖a − b‖ / ‖b‖ and the cosine of a and b.
fn rel_err_and_cosine(a: &[f32], b: &[f32]) -> (f64, f64) {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    (diff / nb, dot / (na * nb))
}

/// A model whose B factors are nonzero (at initialisation B = 0 and A's gradient vanishes).
fn perturbed(weights: &persona_engine::DenseWeights) -> LoraModel {
    let model = LoraModel::new(weights.clone(), 4, 8.0, &targets(), 3).unwrap();
    for pair in model.lora.values() {
        let b = pair.b.as_tensor();
        pair.b
            .set(&Tensor::randn(0f32, 0.02, b.shape(), b.device()).unwrap())
            .unwrap();
    }
    model
}

/// The fast path (bf16 products where the CPU has them, fused ops, checkpointed blocks)
/// against the f32 reference (candle's own ops, one graph over the whole model), on the same
/// batch, factors and training intervention. The checkpointed reference equals the whole
/// graph up to float reassociation; the fast gradients agree within bf16 rounding: relative
/// error ≤ 3 % of the gradient's norm, cosine ≥ 0.999.
#[test]
fn fast_and_checkpointed_gradients_agree_with_the_f32_reference() {
    use persona_finetune::train::batch_gradients;
    use persona_finetune::FrozenProducts;
    let engine = f32_engine(None);
    let data = [
        sample(
            &engine,
            "How is the weather?",
            "Gloomy, grey and getting worse.",
        ),
        sample(
            &engine,
            "Name a colour.",
            "Blue is a calm colour, like the sea.",
        ),
    ];
    let batch: Vec<&TrainSeq> = data.iter().collect();
    let c = engine.config().clone();
    let iv = TrainIntervention::Steer {
        layer: 12,
        vector: (0..c.d_model)
            .map(|i| ((i % 5) as f32 - 2.0) / 4.0)
            .collect(),
        alpha: 2.0,
    };
    let reference = perturbed(&engine.dense_weights().unwrap());
    let whole = batch_loss(&reference, &batch, Some(&iv)).unwrap();
    let store = whole.backward().unwrap();
    let whole_grads: Vec<Tensor> = reference
        .vars()
        .iter()
        .map(|v| store.get(v.as_tensor()).unwrap().clone())
        .collect();
    let whole_loss = whole.to_scalar::<f32>().unwrap() as f64;
    let n = c.n_layers;
    for kept in [0, 10, n] {
        let (loss, grads) = batch_gradients(&reference, &batch, Some(&iv), kept).unwrap();
        let (err, _) = rel_err_and_cosine(&flat(&grads), &flat(&whole_grads));
        assert!(
            (loss - whole_loss).abs() < 1e-5,
            "kept {kept}: {loss} vs {whole_loss}"
        );
        assert!(err < 1e-4, "kept {kept}: relative gradient error {err}");
    }
    let fast = reference.with_products(FrozenProducts::Fast).unwrap();
    let (loss, grads) = batch_gradients(&fast, &batch, Some(&iv), 0).unwrap();
    let (err, cos) = rel_err_and_cosine(&flat(&grads), &flat(&whole_grads));
    eprintln!(
        "fast ({}) vs f32 reference: loss {loss:.5} vs {whole_loss:.5}, relative gradient error {err:.4}, cosine {cos:.6}",
        FrozenProducts::Fast.describe()
    );
    assert!(
        (loss - whole_loss).abs() < 0.01 * whole_loss,
        "{loss} vs {whole_loss}"
    );
    assert!(
        err < 0.03 && cos > 0.999,
        "relative error {err}, cosine {cos}"
    );
}

/// AdamW's moments travel with the checkpoint: one epoch, a stop, and a rerun to two epochs
/// end with exactly the adapter of two epochs run at once.
#[test]
fn a_resumed_run_ends_where_the_uninterrupted_run_ends() {
    let engine = f32_engine(None);
    let mut data = gloomy(&engine);
    data.push(sample(
        &engine,
        "Name a colour.",
        "Grey, like the end of everything.",
    ));
    let weights = engine.dense_weights().unwrap();
    let opts = |epochs| options(epochs, 4);
    let dir = tempfile::tempdir().unwrap();
    let (straight, resumed) = (dir.path().join("straight"), dir.path().join("resumed"));
    finetune(
        weights.clone(),
        "smollm2",
        &data,
        &opts(2),
        &straight,
        &mut |_| {},
    )
    .unwrap();
    finetune(
        weights.clone(),
        "smollm2",
        &data,
        &opts(1),
        &resumed,
        &mut |_| {},
    )
    .unwrap();
    let r = finetune(weights, "smollm2", &data, &opts(2), &resumed, &mut |_| {}).unwrap();
    assert_eq!(r.resumed_from_epoch, 1);
    let load = |d: &std::path::Path| {
        candle_core::safetensors::load(
            d.join("adapter_model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap()
    };
    let (a, b) = (load(&straight), load(&resumed));
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        let (x, y) = (
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b[name].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(x, y, "{name} differs after resuming");
    }
    assert!(resumed
        .join("checkpoint-epoch-1/optimizer.safetensors")
        .is_file());
}
