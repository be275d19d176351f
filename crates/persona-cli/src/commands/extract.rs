use std::path::PathBuf;

use crate::input::load_engine;
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Trait-expressing conversations: JSONL, one {"messages": [...]} per line, the last message
    /// being the assistant response (or {"prompt", "response"}).
    #[arg(long)]
    pos: PathBuf,
    /// Contrasting conversations, same format.
    #[arg(long)]
    neg: PathBuf,
    /// Name of the trait (file names and metadata).
    #[arg(long, default_value = "trait")]
    name: String,
    /// Output folder for `<name>_{response_avg,prompt_avg,prompt_last}.safetensors`.
    #[arg(long, default_value = "vectors")]
    out: PathBuf,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    let pos = persona_io::read_conversations(&a.pos)?;
    let neg = persona_io::read_conversations(&a.neg)?;
    let engine = load_engine(g)?;
    let bar = crate::output::bar((pos.len() + neg.len()) as u64, "extract");
    let mut done = 0u64;
    let r = persona_pipelines::extract::extract_from_conversations(
        &engine,
        &pos,
        &neg,
        &a.name,
        &a.out,
        &mut |_tokens| {
            done += 1;
            bar.set_position(done.min((pos.len() + neg.len()) as u64));
        },
    )?;
    bar.finish_and_clear();
    emit(g.format, &r, || {
        println!(
            "{} vectors from {} pos / {} neg conversations, layers 0..{}",
            a.name, r.n_pos, r.n_neg, r.layers
        );
        for (method, path) in &r.files {
            println!("  {method:<13} {}", path.display());
        }
        let norms = &r.norms["response_avg"];
        let shown: Vec<String> = norms
            .iter()
            .enumerate()
            .step_by(5)
            .map(|(l, n)| format!("L{l} {n:.1}"))
            .collect();
        println!("‖response_avg‖: {}", shown.join(", "));
    })
}
