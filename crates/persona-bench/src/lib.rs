//! persona's benchmark: the engine's throughput on fixed workloads, and the peers' (llama.cpp,
//! HF transformers) on the same workloads, run in the same invocation so ratios compare like
//! with like on this machine.

mod peers;
pub mod training;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use persona_engine::{
    CaptureSpec, Engine, ForwardRequest, GenerateRequest, SamplingParams, TokenSequence,
};
use serde::Serialize;

pub use peers::{run_peers, PeerError, PeerFigures};
pub use workload::{Workload, WorkloadError};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Engine(#[from] persona_engine::EngineError),
    #[error(transparent)]
    Training(#[from] persona_finetune::FinetuneError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
}

/// The bench's output: our figures, the peers', and ours relative to theirs.
#[derive(Debug, Clone, Serialize, Default)]
pub struct BenchReport {
    pub figures: BTreeMap<String, f64>,
    pub peers: BTreeMap<String, f64>,
    pub ratios: BTreeMap<String, f64>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Timed repetitions of each figure; the best is kept (least disturbed by other load).
    pub reps: usize,
    pub reference_dir: PathBuf,
}

/// Best (shortest) of `reps` timings of `f`, in seconds.
fn best_of(reps: usize, mut f: impl FnMut() -> Result<(), BenchError>) -> Result<f64, BenchError> {
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Peak resident memory of this process so far, in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs our half of the benchmark on `engine`.
pub fn run_ours(
    engine: &Engine,
    opts: &BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<BTreeMap<String, f64>, BenchError> {
    let w = Workload::load(&opts.reference_dir, engine)?;
    let n_layers = engine.config().n_layers;
    let mut fig = BTreeMap::new();

    progress("prompt processing (512 tokens)");
    let prompt = TokenSequence {
        ids: w.prompt_eval_ids.clone(),
        prompt_len: w.prompt_eval_ids.len(),
    };
    let gen_req = |prompts: Vec<Vec<u32>>, max_tokens: usize, temperature: f32| GenerateRequest {
        prompts,
        sampling: SamplingParams {
            temperature,
            top_p: 1.0,
            seed: 1,
            max_tokens,
            stop_ids: Vec::new(),
            ignore_stop: true,
        },
        batch_size: 64,
        ..Default::default()
    };
    // Prompt processing as llama.cpp measures it: one pass over the prompt, logits of the last token.
    let pp = best_of(opts.reps, || {
        engine.generate(&gen_req(vec![prompt.ids.clone()], 1, 0.0), &mut |_| {})?;
        Ok(())
    })?;
    fig.insert("prompt_tok_s".into(), prompt.ids.len() as f64 / pp);

    progress("single-stream greedy decode (3 × 128 tokens)");
    let decode_tokens = 128;
    let mut decode_time = 0.0;
    for p in &w.greedy_prompts {
        let full = best_of(opts.reps, || {
            engine.generate(
                &gen_req(vec![p.clone()], decode_tokens + 1, 0.0),
                &mut |_| {},
            )?;
            Ok(())
        })?;
        let prefill = best_of(opts.reps, || {
            engine.generate(&gen_req(vec![p.clone()], 1, 0.0), &mut |_| {})?;
            Ok(())
        })?;
        decode_time += (full - prefill).max(1e-9);
    }
    let decode = (w.greedy_prompts.len() * decode_tokens) as f64 / decode_time;
    fig.insert("decode_tok_s".into(), decode);

    progress("batched rollouts (32 sequences × 128 sampled tokens)");
    let rollout_prompts: Vec<Vec<u32>> = w.rollout_prompts.iter().take(32).cloned().collect();
    let n_rollout = rollout_prompts.len() * 128;
    let rollout = best_of(opts.reps.min(2), || {
        engine.generate(&gen_req(rollout_prompts.clone(), 128, 1.0), &mut |_| {})?;
        Ok(())
    })?;
    fig.insert("rollout_tok_s".into(), n_rollout as f64 / rollout);

    progress("teacher-forced extraction workload");
    let total: usize = w.extraction.iter().map(|s| s.ids.len()).sum();
    let all_layers = ForwardRequest {
        captures: CaptureSpec::response_means(0..n_layers),
        ..Default::default()
    };
    let extract = best_of(opts.reps, || {
        engine.forward_batch(&w.extraction, &all_layers, &mut |_| {})?;
        Ok(())
    })?;
    fig.insert("extract_tok_s".into(), total as f64 / extract);
    // The same pass through every block with nothing captured: the price of capturing.
    let plain_req = ForwardRequest {
        captures: CaptureSpec {
            sites: vec![persona_engine::HookSite {
                layer: n_layers - 1,
                point: persona_engine::HookPoint::ResidPost,
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    let plain = best_of(opts.reps, || {
        engine.forward_batch(&w.extraction, &plain_req, &mut |_| {})?;
        Ok(())
    })?;
    fig.insert("forward_tok_s".into(), total as f64 / plain);
    fig.insert(
        "capture_overhead_pct".into(),
        100.0 * (extract / plain - 1.0),
    );
    fig.insert(
        "rollout_over_decode".into(),
        n_rollout as f64 / rollout / decode,
    );
    if let Some(rss) = peak_rss_mib() {
        fig.insert("peak_rss_mib".into(), rss);
    }
    Ok(fig)
}

/// Our figures over the peers' for the comparisons the project tracks (a denominator that no
/// peer measured may be one of ours: a reference path of our own).
pub fn ratios(
    ours: &BTreeMap<String, f64>,
    peers: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    let pairs = [
        ("extract_vs_hf_extract", "extract_tok_s", "hf_extract_tok_s"),
        (
            "extract_vs_llamacpp_prompt",
            "extract_tok_s",
            "llamacpp_prompt_tok_s",
        ),
        (
            "prompt_vs_llamacpp_prompt",
            "prompt_tok_s",
            "llamacpp_prompt_tok_s",
        ),
        (
            "decode_vs_llamacpp_decode",
            "decode_tok_s",
            "llamacpp_decode_tok_s",
        ),
        ("decode_vs_hf_decode", "decode_tok_s", "hf_decode_tok_s"),
        ("rss_vs_llamacpp", "peak_rss_mib", "peak_rss_mib_llamacpp"),
        ("train_vs_peft", "train_tok_s", "peft_train_tok_s"),
        (
            "train_vs_reference_products",
            "train_tok_s",
            "train_reference_tok_s",
        ),
    ];
    pairs
        .iter()
        .filter_map(|(name, a, b)| {
            let (x, y) = (ours.get(*a)?, peers.get(*b).or_else(|| ours.get(*b))?);
            (*y > 0.0).then(|| (name.to_string(), x / y))
        })
        .collect()
}

/// Where the reference workload lives by default: `$PERSONA_SHARED/reference`, else
/// `../shared/reference` beside the working directory.
pub fn default_reference_dir() -> PathBuf {
    match std::env::var_os("PERSONA_SHARED") {
        Some(s) => Path::new(&s).join("reference"),
        None => PathBuf::from("../shared/reference"),
    }
}
