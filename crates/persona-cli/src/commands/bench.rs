use std::path::PathBuf;

use anyhow::Context;
use persona_bench::training::{self, TrainingOptions};
use persona_bench::{BenchOptions, BenchReport};
use persona_finetune::FrozenProducts;

use crate::input::{load_engine, model_path};
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Timed repetitions per figure (the best is kept).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Folder with the reference workload (greedy_llamacpp.json, extract_workload/).
    /// Default: $PERSONA_SHARED/reference, else ../shared/reference.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Peers to run beside ours: `run` (llama.cpp and HF transformers, in this same
    /// invocation), or `none`.
    #[arg(long, default_value = "run")]
    peers: String,
    /// Folder with the peers' scripts (run_baselines.sh). Default: beside the reference folder.
    #[arg(long)]
    peer_scripts: Option<PathBuf>,
    /// Run the peers with their full protocol (3 processes × 3 reps) instead of the quick one.
    #[arg(long)]
    full_peers: bool,
    /// What to measure, comma-separated: `inference` (prompt processing, decode, rollouts,
    /// extraction; needs the reference workload's model, SmolLM2-135M) and `training` (LoRA
    /// steps, any model).
    #[arg(long, value_delimiter = ',', default_value = "inference,training")]
    sections: Vec<Section>,
    /// Timed LoRA steps of batch 8 (after one untimed step), ours and PyTorch + PEFT's.
    #[arg(long, default_value_t = 3)]
    train_steps: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    Inference,
    Training,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    let reference = a
        .reference
        .clone()
        .unwrap_or_else(persona_bench::default_reference_dir);
    let engine = load_engine(g)?;
    let opts = BenchOptions {
        reps: a.reps,
        reference_dir: reference.clone(),
    };
    let mut report = BenchReport::default();
    let run_peers = match a.peers.as_str() {
        "none" => {
            report.notes.push("peers not run (--peers none)".into());
            false
        }
        "run" => true,
        other => anyhow::bail!("unknown --peers `{other}`: use run or none"),
    };
    let training = TrainingOptions {
        timed_steps: a.train_steps.max(1),
        ..Default::default()
    };
    if run_peers && a.sections.contains(&Section::Training) {
        training::check_peer(&training::peer_python())
            .context("the PyTorch + PEFT training peer cannot run")?;
    }
    let train_samples = if a.sections.contains(&Section::Training) {
        Some(training::training_samples(&reference, &engine)?)
    } else {
        None
    };
    if a.sections.contains(&Section::Inference) {
        let pb = crate::output::bar(4, "bench");
        report.figures = persona_bench::run_ours(&engine, &opts, &mut |stage| {
            pb.inc(1);
            pb.set_message(stage.to_string());
        })?;
        pb.finish_and_clear();
    }
    if let Some(samples) = &train_samples {
        let weights = engine.dense_weights()?;
        drop(engine);
        for (products, prefix, steps) in [
            (FrozenProducts::Fast, "train_", training.timed_steps),
            (FrozenProducts::Reference, "train_reference_", 1),
        ] {
            eprintln!(
                "training: {} LoRA steps of batch {} ({})",
                training.warmup_steps + steps,
                training.batch_size,
                products.describe()
            );
            let o = TrainingOptions {
                timed_steps: steps,
                ..training.clone()
            };
            report.figures.extend(training::run_ours(
                weights.clone(),
                samples,
                &o,
                products,
                prefix,
            )?);
        }
        report.notes.push(format!(
            "training: {} samples of {:.0} tokens on average, rank {}, all 7 projections, frozen products {}",
            samples.len(),
            samples.iter().map(|s| s.ids.len()).sum::<usize>() as f64 / samples.len() as f64,
            training.rank,
            FrozenProducts::Fast.describe()
        ));
    } else {
        drop(engine);
    }
    if run_peers {
        if a.sections.contains(&Section::Inference) {
            let scripts = a
                .peer_scripts
                .clone()
                .unwrap_or_else(|| reference.join("..").join("bench"));
            eprintln!("running the peers (llama.cpp, HF transformers) on the same workloads; this takes a few minutes");
            report.peers = persona_bench::run_peers(&scripts, &model_path(g)?, !a.full_peers)
                .context("the peer benchmark failed")?;
        }
        if let Some(samples) = &train_samples {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let threads = std::env::var("RAYON_NUM_THREADS")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(threads);
            eprintln!("running PyTorch + PEFT on the same training steps");
            let peft = training::run_peer(
                &training::peer_python(),
                &model_path(g)?,
                samples,
                &training,
                threads,
            )
            .context("the PyTorch + PEFT training peer failed")?;
            report.peers.extend(peft);
        }
    }
    report.ratios = persona_bench::ratios(&report.figures, &report.peers);
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into());
    report.notes.push(format!("persona threads: {threads}"));
    emit(g.format, &report, || print_report(&report))
}

fn print_report(r: &BenchReport) {
    println!("persona");
    for (k, v) in &r.figures {
        println!("  {k:<28} {v:>10.1}");
    }
    if !r.peers.is_empty() {
        println!("peers (same run)");
        for (k, v) in &r.peers {
            println!("  {k:<28} {v:>10.1}");
        }
        println!("ratios (persona / peer)");
        for (k, v) in &r.ratios {
            println!("  {k:<28} {v:>10.2}");
        }
    }
    for n in &r.notes {
        println!("note: {n}");
    }
}
