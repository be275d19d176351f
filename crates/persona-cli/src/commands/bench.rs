use std::path::PathBuf;

use anyhow::Context;
use persona_bench::{BenchOptions, BenchReport};

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
    let pb = crate::output::bar(4, "bench");
    report.figures = persona_bench::run_ours(&engine, &opts, &mut |stage| {
        pb.inc(1);
        pb.set_message(stage.to_string());
    })?;
    pb.finish_and_clear();
    drop(engine);
    match a.peers.as_str() {
        "none" => report.notes.push("peers not run (--peers none)".into()),
        "run" => {
            let scripts = a
                .peer_scripts
                .unwrap_or_else(|| reference.join("..").join("bench"));
            eprintln!("running the peers (llama.cpp, HF transformers) on the same workloads; this takes a few minutes");
            report.peers = persona_bench::run_peers(&scripts, &model_path(g)?, !a.full_peers)
                .context("the peer benchmark failed")?;
            report.ratios = persona_bench::ratios(&report.figures, &report.peers);
        }
        other => anyhow::bail!("unknown --peers `{other}`: use run or none"),
    }
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
