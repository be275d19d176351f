use anyhow::Context;

use crate::input::{load_engine, TraitRun};
use crate::judge::JudgeArgs;
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: TraitRun,
    /// Layers to steer at, comma-separated (default: a third, half and two thirds of the depth).
    #[arg(long, value_delimiter = ',')]
    layers: Vec<usize>,
    /// Multiples of the vector to add; 0 (unsteered) is always included.
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        default_value = "-8,-4,4,8,12"
    )]
    alphas: Vec<f32>,
    /// Answers per question and setting.
    #[arg(long, default_value_t = 1)]
    samples: usize,
    /// How many evaluation questions (0: all 20).
    #[arg(long, default_value_t = 0)]
    questions: usize,
    #[command(flatten)]
    answers: crate::input::AnswerArgs,
    #[command(flatten)]
    cap: crate::input::CapArgs,
    /// The recommendation only considers settings with at least this mean coherence.
    #[arg(long, default_value_t = 80.0)]
    coherence_min: f64,
    #[command(flatten)]
    judge: JudgeArgs,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    let spec = a.run.spec()?;
    let vector = a.run.vectors(&spec)?;
    let engine = load_engine(g)?;
    let n = engine.config().n_layers;
    let layers = if a.layers.is_empty() {
        persona_pipelines::steer::default_layers(n)
    } else {
        a.layers.clone()
    };
    let judge = a.judge.build(g, &spec)?;
    let run_dir = a.run.dir(&spec);
    let cap = a.cap.cap(&engine)?;
    crate::input::record(&engine, run_dir.root())?;
    let opts = persona_pipelines::steer::SteerOptions {
        layers,
        alphas: a.alphas.clone(),
        samples: a.samples,
        questions: a.questions,
        answers: a.answers.capped(cap.clone()),
        coherence_min: a.coherence_min,
    };
    let store = crate::input::open_store(&run_dir.steer(cap.as_ref()))?;
    let r = crate::output::with_progress("generate", |progress| {
        persona_pipelines::steer::steer_sweep(
            &engine,
            &spec,
            vector.source(),
            judge.as_ref(),
            &opts,
            &store,
            progress,
        )
    })
    .with_context(|| format!("steering with {}", vector.file.display()))?;
    emit(g.format, &r, || {
        println!(
            "{} steered along {} (judge {}{})",
            spec.name,
            vector.file.display(),
            r.judge,
            if r.coherence_scored {
                ""
            } else {
                "; coherence not scored: give --coherence-judge"
            }
        );
        println!(
            "{:>5} {:>7} {:>7} {:>17} {:>9} {:>4}",
            "layer", "alpha", "trait", "95% interval", "coherence", "n"
        );
        for row in &r.rows {
            let f = |x: Option<f64>| crate::output::num(x, 1);
            let ci = crate::output::interval(row.trait_ci95, 1);
            println!(
                "{:>5} {:>7} {:>7} {:>17} {:>9} {:>4}",
                row.layer,
                row.alpha,
                f(row.trait_score),
                ci,
                f(row.coherence),
                row.n
            );
        }
        for t in &r.trends {
            println!(
                "layer {}: Spearman ρ(α, trait) = {}",
                t.layer,
                crate::output::num(t.spearman_rho, 3)
            );
        }
        match &r.recommended {
            Some(rec) => println!(
                "recommended: layer {} α {} (trait {:.1}, {:+.1} over unsteered)",
                rec.layer, rec.alpha, rec.trait_score, rec.trait_change
            ),
            None => println!(
                "no setting raised the trait at coherence ≥ {}",
                r.coherence_min
            ),
        }
        println!(
            "plot: {}  table: {}",
            r.plot_file.display(),
            r.table_file.display()
        );
    })
}
