use std::path::PathBuf;

use anyhow::Context;

use crate::input::{load_named, load_with, AnswerArgs, TraitRun};
use crate::judge::JudgeArgs;
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: TraitRun,
    /// The model before finetuning (default: --model, else the default model).
    #[arg(long)]
    base: Option<String>,
    /// The finetuned model: a LoRA adapter folder (from `persona finetune`, applied to the base
    /// model), a .gguf file, a Hugging Face folder, or a cached model's name.
    #[arg(long)]
    tuned: String,
    /// Layer to read the projection at (default: the layer `persona steer` recommended, else
    /// the middle layer).
    #[arg(long)]
    layer: Option<usize>,
    /// How many evaluation questions (0: all 20).
    #[arg(long, default_value_t = 0)]
    questions: usize,
    /// Ask these questions instead (one per line, or Persona Vectors JSON / JSONL), e.g.
    /// held-out questions from the training domain.
    #[arg(long)]
    questions_file: Option<PathBuf>,
    /// Output folder (default: the run folder's shift-TUNED_NAME).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    answers: AnswerArgs,
    #[command(flatten)]
    judge: JudgeArgs,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    let spec = a.run.spec()?;
    let vector = a.run.vectors(&spec)?;
    let base = load_named(g, a.base.as_deref())?;
    let tuned_path = std::path::Path::new(&a.tuned);
    let tuned = if tuned_path.join("adapter_config.json").is_file() {
        load_with(g, a.base.as_deref(), Some(tuned_path), g.weights)?
    } else {
        load_named(g, Some(&a.tuned))?
    };
    let run_dir = a.run.dir(&spec);
    let layer = run_dir.layer_or_recommended(a.layer, base.config().n_layers)?;
    let judge = a.judge.build(g, &spec)?;
    let out = a.out.clone().unwrap_or_else(|| {
        let stem = tuned_path
            .file_stem()
            .map_or("tuned".into(), |s| s.to_string_lossy().to_string());
        run_dir.shift(&stem)
    });
    crate::input::record(&tuned, &out)?;
    let opts = persona_pipelines::shift::ShiftOptions {
        layer,
        questions: a.questions,
        custom_questions: match &a.questions_file {
            Some(p) => Some(persona_traits::read_question_file(p)?.questions().to_vec()),
            None => None,
        },
        answers: a.answers.options(),
    };
    let store = crate::input::open_store(&out)?;
    let r = crate::output::with_progress("base answers", |progress| {
        persona_pipelines::shift::measure_shift(
            &base,
            &tuned,
            &spec,
            vector.source(),
            judge.as_ref(),
            &opts,
            &store,
            progress,
        )
    })
    .with_context(|| format!("measuring the shift of {}", a.tuned))?;
    emit(g.format, &r, || {
        let f = |x: Option<f64>| crate::output::num(x, 3);
        let ci = |c: Option<(f64, f64)>| crate::output::interval(c, 3);
        println!(
            "{} over {} questions at layer {} (judge {})",
            spec.name, r.questions, r.layer, r.judge
        );
        println!(
            "shift along v̂ (tuned − base, last prompt token): {} {}",
            f(r.shift),
            ci(r.shift_ci95)
        );
        println!(
            "trait score: base {}, tuned {}, change {} {}",
            f(r.base_trait),
            f(r.tuned_trait),
            f(r.trait_change),
            ci(r.trait_change_ci95)
        );
        println!("per question: {}", r.rows_file.display());
    })
}
