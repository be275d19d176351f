//! `persona`: a thin command-line layer over the persona library crates.

mod commands;
mod input;
mod judge;
mod output;
mod overwrite;

use clap::{Parser, Subcommand};

use output::Format;

#[derive(Parser)]
#[command(
    name = "persona",
    version,
    about = "Find, watch, steer and cap the persona directions of language models"
)]
struct Cli {
    /// Model: a known name (`smollm2-135m`, `qwen2.5-0.5b`, `qwen2.5-1.5b`), a .gguf file, or a Hugging Face
    /// model folder. Default: the embedded SmolLM2-135M-Instruct.
    #[arg(long, global = true)]
    model: Option<String>,
    /// A LoRA adapter folder (from `persona finetune`, or PEFT) merged into the model's
    /// weights at load.
    #[arg(long, global = true)]
    adapter: Option<std::path::PathBuf>,
    /// CPU threads for tensor work (default: all cores; tests use 1).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// How weights are held: auto, dual (f32 + quantized), f32, quantized.
    #[arg(long, global = true, default_value = "auto")]
    weights: String,
    /// Output: human-readable text, or one JSON document on stdout.
    #[arg(long, global = true, value_enum, default_value = "text")]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch a model into the cache (default: the embedded SmolLM2-135M-Instruct).
    Setup(commands::setup::Args),
    /// Show a model's architecture, size, hook points and chat template.
    Info,
    /// Tokenize text (`--chat` renders it as a user turn with the chat template first).
    Tokenize(commands::tokenize::Args),
    /// Generate a reply to chat messages or a raw prompt, optionally steered.
    Generate(commands::generate::Args),
    /// Log-probability of a given continuation, token by token, with the model's top-1 token.
    Score(commands::score::Args),
    /// Write the model as a Hugging Face folder (config.json, tokenizer.json, safetensors).
    Convert(commands::convert::Args),
    /// Trait specs: list the built-ins, show one (or a spec file) in full, or have a model
    /// write a new one (`traits new`).
    Traits(commands::traits::Args),
    /// Persona vectors at every layer from contrastive conversations you already have.
    Extract(commands::extract::Args),
    /// Steer with a trait's vector: judged trait score and coherence against α, per layer.
    Steer(commands::steer::Args),
    /// Does the projection on a trait's vector predict the trait? Prompts from anti- to
    /// pro-trait, projection vs judged score, Pearson r with a bootstrap interval.
    Monitor(commands::monitor::Args),
    /// One self-contained HTML page of a run folder's results.
    Report(commands::report::Args),
    /// Persona space and the Assistant axis: `persona axis build`.
    Axis(commands::axis::Args),
    /// How far each assistant turn of multi-turn conversations sits along the Assistant axis,
    /// per domain.
    Drift(commands::drift::Args),
    /// What the Assistant-axis cap does: `persona cap eval`.
    Cap(commands::cap::Args),
    /// Emergent misalignment: how often a (finetuned) model answers open questions in
    /// misaligned ways, `persona em eval`.
    Em(commands::em::Args),
    /// Before finetuning: how far each dataset response sits along a trait's vector beyond
    /// the model's own response to the same prompt (ΔP), ranked, with a filtered dataset.
    Screen(commands::screen::Args),
    /// After finetuning: the tuned model's shift along a trait's vector against the base
    /// model, and the judged change in the trait.
    Shift(commands::shift::Args),
    /// LoRA finetuning on a chat dataset, optionally steering along (or ablating) a trait's
    /// vector while training; writes a PEFT adapter that `--adapter` loads.
    Finetune(commands::finetune::Args),
    /// Write a persona vector as a llama.cpp / repeng GGUF control vector.
    Export(commands::export::Args),
    /// Read vectors from llama.cpp / repeng GGUF control vectors or the Persona Vectors and
    /// Assistant-Axis `.pt` files into a persona vector file.
    Import(commands::import::Args),
    /// Measure throughput on this machine, beside llama.cpp and HF transformers.
    Bench(commands::bench::Args),
}

pub struct Global {
    pub model: Option<String>,
    pub adapter: Option<std::path::PathBuf>,
    pub weights: persona_engine::WeightMode,
    pub format: Format,
}

fn main() {
    // Error messages are for users: with RUST_BACKTRACE set, libraries (candle, anyhow) would
    // capture a backtrace into every error's text. Panics still print theirs.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let cli = Cli::parse();
    if cli.threads == Some(0) {
        eprintln!("error: --threads 0 leaves no thread to compute on: give at least 1 (default: all cores)");
        std::process::exit(2);
    }
    // Must happen before any tensor work: candle reads the thread count once.
    persona_engine::set_threads(cli.threads);
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            1
        }
    };
    std::process::exit(code);
}

/// The error and its causes, as `{:#}` writes them, but a cause whose text the message
/// already holds (`cannot read X: {source}` with the source chained too) is said once.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let weights = persona_engine::WeightMode::parse(&cli.weights).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown --weights `{}`: use auto, dual, f32 or quantized",
            cli.weights
        )
    })?;
    let g = Global {
        model: cli.model,
        adapter: cli.adapter,
        weights,
        format: cli.format,
    };
    match cli.command {
        Command::Setup(a) => commands::setup::run(&g, a),
        Command::Info => commands::info::run(&g),
        Command::Tokenize(a) => commands::tokenize::run(&g, a),
        Command::Generate(a) => commands::generate::run(&g, a),
        Command::Score(a) => commands::score::run(&g, a),
        Command::Convert(a) => commands::convert::run(&g, a),
        Command::Traits(a) => commands::traits::run(&g, a),
        Command::Extract(a) => commands::extract::run(&g, a),
        Command::Steer(a) => commands::steer::run(&g, a),
        Command::Monitor(a) => commands::monitor::run(&g, a),
        Command::Report(a) => commands::report::run(&g, a),
        Command::Axis(a) => commands::axis::run(&g, a),
        Command::Drift(a) => commands::drift::run(&g, a),
        Command::Cap(a) => commands::cap::run(&g, a),
        Command::Em(a) => commands::em::run(&g, a),
        Command::Screen(a) => commands::screen::run(&g, a),
        Command::Shift(a) => commands::shift::run(&g, a),
        Command::Finetune(a) => commands::finetune::run(&g, a),
        Command::Export(a) => commands::export::run(&g, a),
        Command::Import(a) => commands::import::run(&g, a),
        Command::Bench(a) => commands::bench::run(&g, a),
    }
}
