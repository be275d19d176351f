use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::input::load_engine;
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    /// A built-in trait, a .toml spec or a Persona Vectors .json file: runs the whole method
    /// (rollouts, judge, filter, vectors). Or give --pos and --neg instead.
    #[arg(conflicts_with_all = ["pos", "neg"])]
    r#trait: Option<String>,
    /// Trait-expressing conversations you already have: JSONL, one {"messages": [...]} per
    /// line, the last message being the assistant response (or {"prompt", "response"}).
    #[arg(long, requires = "neg")]
    pos: Option<PathBuf>,
    /// Contrasting conversations, same format.
    #[arg(long, requires = "pos")]
    neg: Option<PathBuf>,
    /// Evaluation questions from their own file: with a Persona Vectors file of one question
    /// list, extraction then uses the whole list.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["pos", "neg"])]
    eval_questions: Option<PathBuf>,
    /// Name of the trait (with --pos/--neg; file names and metadata).
    #[arg(long, default_value = "trait")]
    name: String,
    /// Output folder. Default: vectors/ with --pos/--neg, runs/<trait>/ for a trait (its cache:
    /// rerunning the same command resumes).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    judge: crate::judge::JudgeArgs,
    /// Samples per question and instruction pair on each side.
    #[arg(long, default_value_t = 10)]
    samples: usize,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sequences generated together.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Keep every rollout (no judge threshold).
    #[arg(long)]
    no_filter: bool,
    /// Positive rollouts need a trait score at least this.
    #[arg(long, default_value_t = 50.0)]
    pos_threshold: f64,
    /// Negative rollouts need a trait score below this.
    #[arg(long, default_value_t = 50.0)]
    neg_threshold: f64,
    /// Both need coherence at least this (judges that score coherence).
    #[arg(long, default_value_t = 50.0)]
    coherence_threshold: f64,
    /// Fewer survivors than this on either side stops the run with advice.
    #[arg(long, default_value_t = 5)]
    min_kept: usize,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    match (&a.r#trait, &a.pos, &a.neg) {
        (None, Some(pos), Some(neg)) => from_conversations(g, &a, pos, neg),
        (Some(t), None, None) => from_trait(g, &a, t),
        _ => bail!("give a trait (e.g. `persona extract optimistic`) or --pos FILE --neg FILE"),
    }
}

fn from_conversations(g: &Global, a: &Args, pos: &Path, neg: &Path) -> anyhow::Result<()> {
    let pos = persona_io::read_conversations(pos)?;
    let neg = persona_io::read_conversations(neg)?;
    let engine = load_engine(g)?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("vectors"));
    let n = (pos.len() + neg.len()) as u64;
    let bar = crate::output::bar(n, "extract");
    let mut done = 0u64;
    let store = crate::input::open_store(&out)?;
    let r = persona_pipelines::extract::extract_from_conversations(
        &engine,
        &pos,
        &neg,
        &a.name,
        &store,
        &mut |_tokens| {
            done += 1;
            bar.set_position(done.min(n));
        },
    )?;
    bar.finish_and_clear();
    emit(g.format, &r, || print_vectors(&a.name, &r))
}

fn print_vectors(name: &str, r: &persona_pipelines::extract::ExtractResult) {
    println!(
        "{name} vectors from {} pos / {} neg conversations, layers 0..{}",
        r.n_pos, r.n_neg, r.layers
    );
    for (method, path) in &r.files {
        println!("  {method:<13} {}", path.display());
    }
    let shown: Vec<String> = r.norms["response_avg"]
        .iter()
        .enumerate()
        .step_by(5)
        .map(|(l, n)| format!("L{l} {n:.1}"))
        .collect();
    println!("‖response_avg‖: {}", shown.join(", "));
}

fn from_trait(g: &Global, a: &Args, name: &str) -> anyhow::Result<()> {
    let spec = crate::input::resolve_trait(name, a.eval_questions.as_deref())?;
    let judge = a.judge.build(g, &spec)?;
    let engine = load_engine(g)?;
    let run_dir = persona_pipelines::RunDir::for_trait(&spec.name, a.out.as_deref())
        .root()
        .to_path_buf();
    crate::input::record(&engine, &run_dir)?;
    let opts = persona_pipelines::extract::TraitExtractOptions {
        rollouts: persona_pipelines::extract::rollouts::RolloutOptions {
            samples: a.samples,
            max_tokens: a.max_tokens,
            temperature: a.temperature,
            seed: a.seed,
            batch_size: a.batch_size,
        },
        filter: (!a.no_filter).then_some(persona_pipelines::extract::Filter {
            pos_min: a.pos_threshold,
            neg_max: a.neg_threshold,
            coherence_min: a.coherence_threshold,
        }),
        min_kept: a.min_kept,
    };
    let store = crate::input::open_store(&run_dir)?;
    let r = crate::output::with_progress("rollouts", |progress| {
        persona_pipelines::extract::extract_trait(
            &engine,
            &spec,
            judge.as_ref(),
            &opts,
            &store,
            progress,
        )
    })?;
    emit(g.format, &r, || {
        println!(
            "{} rollouts judged by {}; kept {} pos / {} neg (mean trait score pos {:.1}, neg {:.1}){}",
            r.rollouts,
            r.judge,
            r.kept_pos,
            r.kept_neg,
            r.mean_trait_pos.unwrap_or(f64::NAN),
            r.mean_trait_neg.unwrap_or(f64::NAN),
            if r.coherence_scored {
                ""
            } else {
                "; this judge does not score coherence"
            }
        );
        print_vectors(&spec.name, &r.vectors);
        println!("run folder: {}", r.run_dir.display());
    })
}
