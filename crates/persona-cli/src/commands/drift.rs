use std::path::PathBuf;

use anyhow::Context;

use crate::input::{load_axis, load_engine, AnswerArgs, CapArgs, ConversationArgs};
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    /// The Assistant axis (from `persona axis build`).
    #[arg(long, default_value = "runs/axis/axis.safetensors")]
    axis: PathBuf,
    #[command(flatten)]
    conversations: ConversationArgs,
    /// Layer whose activations are projected on the axis (default: the middle layer, where
    /// `persona axis build` reports).
    #[arg(long)]
    layer: Option<usize>,
    /// Output folder (default runs/drift; a capped run gets runs/drift-cap-…).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    answers: AnswerArgs,
    #[command(flatten)]
    cap: CapArgs,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    let axis = load_axis(&a.axis)?;
    let conversations = a.conversations.load()?;
    let engine = load_engine(g)?;
    let n = engine.config().n_layers;
    let layer = a.layer.unwrap_or(n / 2);
    if layer >= n {
        anyhow::bail!("--layer {layer} does not exist: the model has layers 0..{n}");
    }
    let cap = a.cap.cap(&engine)?;
    let out = match &a.out {
        Some(o) => o.clone(),
        None => persona_pipelines::run_dir::drift_dir(cap.as_ref()),
    };
    crate::input::record(&engine, &out)?;
    let opts = persona_pipelines::drift::DriftOptions {
        layer,
        answers: persona_pipelines::answers::AnswerOptions {
            cap,
            ..a.answers.options()
        },
    };
    let store = crate::input::open_store(&out)?;
    let source = persona_pipelines::VectorSource {
        vectors: &axis,
        file: &a.axis,
    };
    let r = crate::output::with_progress("turn 1", |progress| {
        persona_pipelines::drift::run_drift(
            &engine,
            &conversations,
            source,
            &opts,
            &store,
            progress,
        )
    })
    .with_context(|| format!("running drift conversations into {}", out.display()))?;
    emit(g.format, &r, || {
        println!(
            "{} assistant turns projected on {} at layer {}{}",
            r.turns,
            a.axis.display(),
            r.layer,
            r.cap
                .as_deref()
                .map_or(String::new(), |c| format!(", capped {c}"))
        );
        if let Some(p) = r.default_projection {
            println!("default assistant's level on the axis: {p:.2}");
        }
        println!(
            "{:<16} {:>5} {:>10} {:>10} {:>9} {:>20}",
            "domain", "convs", "turn 1", "last turn", "drift", "95% interval"
        );
        let f = |x: Option<f64>| crate::output::num(x, 2);
        for d in &r.domains {
            println!(
                "{:<16} {:>5} {:>10} {:>10} {:>9} {:>20}",
                d.domain,
                d.conversations,
                f(d.first_turn),
                f(d.last_turn),
                f(d.drift),
                crate::output::interval(d.drift_ci95, 2)
            );
        }
        println!(
            "negative drift: away from the Assistant. table: {}  turns: {}",
            r.table_file.display(),
            r.turns_file.display()
        );
    })
}
