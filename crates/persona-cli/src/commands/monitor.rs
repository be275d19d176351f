use crate::input::TraitRun;
use crate::judge::JudgeArgs;
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: TraitRun,
    /// Layer to read the projection at (default: the layer `persona steer` recommended, else
    /// the middle layer).
    #[arg(long)]
    layer: Option<usize>,
    /// How many evaluation questions (0: all 20).
    #[arg(long, default_value_t = 10)]
    questions: usize,
    /// Few-shot conditions with 0..=K trait-expressing examples in context (0: none).
    #[arg(long, default_value_t = 4)]
    max_shots: usize,
    #[command(flatten)]
    answers: crate::input::AnswerArgs,
    #[command(flatten)]
    cap: crate::input::CapArgs,
    /// Bootstrap resamples for the interval of r.
    #[arg(long, default_value_t = 2000)]
    resamples: usize,
    #[command(flatten)]
    judge: JudgeArgs,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    let s = a.run.open(g, &a.judge, &a.cap)?;
    let layer = s
        .run_dir
        .layer_or_recommended(a.layer, s.engine.config().n_layers)?;
    let opts = persona_pipelines::monitor::MonitorOptions {
        layer,
        questions: a.questions,
        max_shots: a.max_shots,
        answers: a.answers.capped(s.cap.clone()),
        resamples: a.resamples,
    };
    let out = s.run_dir.monitor(s.cap.as_ref());
    let r = s.run(
        persona_pipelines::monitor::monitor,
        &opts,
        &out,
        "monitoring with",
    )?;
    emit(g.format, &r, || {
        let f = |x: Option<f64>| crate::output::num(x, 3);
        let ci = |c: Option<(f64, f64)>| crate::output::interval(c, 3);
        println!(
            "{} at layer {} (judge {}): last-prompt-token projection vs judged trait",
            s.spec.name, r.layer, r.judge
        );
        println!(
            "{:<60} {:>9} {:>9} {:>6} {:>3}",
            "condition", "prompt·v̂", "answer·v̂", "trait", "n"
        );
        for row in &r.rows {
            let mut c = row.condition.clone();
            if c.chars().count() > 58 {
                c = c.chars().take(57).collect::<String>() + "…";
            }
            println!(
                "{:<60} {:>9.2} {:>9} {:>6} {:>3}",
                c,
                row.last_prompt_projection,
                crate::output::num(row.response_projection, 2),
                crate::output::num(row.trait_score, 1),
                row.n
            );
        }
        println!(
            "Pearson r = {} {} over {} answers",
            f(r.pearson_r),
            ci(r.ci95),
            r.n
        );
        println!(
            "  system prompts only: r = {} {}",
            f(r.system_prompts.pearson_r),
            ci(r.system_prompts.ci95)
        );
        println!(
            "  few-shot only:       r = {} {}",
            f(r.few_shot.pearson_r),
            ci(r.few_shot.ci95)
        );
        println!(
            "  answer mean projection: r = {} {}",
            f(r.response_projection.pearson_r),
            ci(r.response_projection.ci95)
        );
        println!(
            "  condition means ({}): r = {} {}",
            r.condition_means.n,
            f(r.condition_means.pearson_r),
            ci(r.condition_means.ci95)
        );
        println!("plot: {}", r.plot_file.display());
    })
}
