use crate::input::TraitRun;
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
    let s = a.run.open(g, &a.judge, &a.cap)?;
    let layers = if a.layers.is_empty() {
        persona_pipelines::steer::default_layers(s.engine.config().n_layers)
    } else {
        a.layers.clone()
    };
    let opts = persona_pipelines::steer::SteerOptions {
        layers,
        alphas: a.alphas.clone(),
        samples: a.samples,
        questions: a.questions,
        answers: a.answers.capped(s.cap.clone()),
        coherence_min: a.coherence_min,
    };
    let out = s.run_dir.steer(s.cap.as_ref());
    let r = s.run(
        persona_pipelines::steer::steer_sweep,
        &opts,
        &out,
        "steering with",
    )?;
    emit(g.format, &r, || {
        println!(
            "{} steered along {} (judge {}{})",
            s.spec.name,
            s.vector.file.display(),
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
