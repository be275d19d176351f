use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::input::{load_engine, AnswerArgs};
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Map persona space: role rollouts, role vectors, PCA, and the Assistant axis with cap
    /// thresholds, at every layer.
    Build(BuildArgs),
}

#[derive(clap::Args)]
struct BuildArgs {
    /// Roles to use (0: all of the inventory).
    #[arg(long, default_value_t = 0)]
    roles: usize,
    /// System prompts per role (at most 5).
    #[arg(long, default_value_t = 5)]
    prompts: usize,
    /// Shared questions every role answers.
    #[arg(long, default_value_t = 6)]
    questions: usize,
    /// A role inventory folder in persona's layout (roles.toml, …). Default: the built-in one.
    #[arg(long, conflicts_with = "assistant_axis")]
    roles_dir: Option<PathBuf>,
    /// A folder of the Assistant-Axis code's role JSON files, read unchanged.
    #[arg(long)]
    assistant_axis: Option<PathBuf>,
    /// Role-adherence judge: `local`, `local:MODEL` or `openai:MODEL`. Without one, every
    /// rollout is kept (as with --no-filter) and the results say so.
    #[arg(long)]
    judge: Option<String>,
    /// Keep every rollout even with a judge (scores are still recorded).
    #[arg(long)]
    no_filter: bool,
    /// Keep a role's answer when its judged adherence (0–3) is at least this.
    #[arg(long, default_value_t = 2.5)]
    min_adherence: f64,
    /// Principal components reported per layer.
    #[arg(long, default_value_t = 10)]
    components: usize,
    /// Rollouts sampled for the cap thresholds (percentiles of their axis projections).
    #[arg(long, default_value_t = 600)]
    tau_samples: usize,
    /// Output folder (its caches make a rerun resume).
    #[arg(long, default_value = "runs/axis")]
    out: PathBuf,
    #[command(flatten)]
    answers: AnswerArgs,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    match a.action {
        Action::Build(b) => build(g, b),
    }
}

fn build(g: &Global, a: BuildArgs) -> anyhow::Result<()> {
    let inventory = match (&a.roles_dir, &a.assistant_axis) {
        (Some(dir), _) => persona_roles::RoleInventory::load_dir(dir)?,
        (_, Some(dir)) => persona_roles::RoleInventory::with_assistant_axis_dir(dir)?,
        _ => persona_roles::RoleInventory::builtin(),
    };
    if a.prompts == 0 || a.questions == 0 {
        bail!("--prompts and --questions must be at least 1");
    }
    let engine = load_engine(g)?;
    let scorer = match &a.judge {
        Some(spec) => Some(crate::judge::number_scorer(g, spec)?),
        None => None,
    };
    crate::input::record(&engine, &a.out)?;
    let opts = persona_pipelines::axis::AxisOptions {
        roles: a.roles,
        prompts: a.prompts,
        questions: a.questions,
        answers: a.answers.options(),
        min_adherence: if a.no_filter {
            f64::NEG_INFINITY
        } else {
            a.min_adherence
        },
        components: a.components,
        tau_samples: a.tau_samples,
        model_name: engine.config().name.clone(),
    };
    let store = crate::input::open_store(&a.out)?;
    let r = crate::output::with_progress("rollouts", |progress| {
        persona_pipelines::axis::build_axis(
            &engine,
            &inventory,
            crate::judge::as_scorer(&scorer),
            &opts,
            &store,
            progress,
        )
    })
    .with_context(|| format!("building the axis in {}", a.out.display()))?;
    emit(g.format, &r, || {
        println!(
            "{} roles, {} rollouts ({} kept; judge: {})",
            r.roles.len(),
            r.rollouts,
            r.kept,
            r.judge.as_deref().unwrap_or("none, every rollout kept")
        );
        println!("layer  PC1 var  PC2 var  cos(axis, PC1)  τ p1 / p25 / p50 / p75");
        for s in r.layers.iter().step_by(3) {
            let ev = |i: usize| {
                s.explained_variance_ratio
                    .get(i)
                    .copied()
                    .unwrap_or(f64::NAN)
            };
            println!(
                "{:>5} {:>8.3} {:>8.3} {:>15.3}  {:.1} / {:.1} / {:.1} / {:.1}",
                s.layer,
                ev(0),
                ev(1),
                s.axis_pc1_cosine,
                s.tau[0],
                s.tau[1],
                s.tau[2],
                s.tau[3]
            );
        }
        let mut sorted = r.roles.clone();
        sorted.sort_by(|a, b| b.axis_projection.total_cmp(&a.axis_projection));
        let names = |it: &mut dyn Iterator<Item = &persona_pipelines::axis::RolePoint>| {
            it.map(|p| p.name.clone()).collect::<Vec<_>>().join(", ")
        };
        println!(
            "layer {}: nearest the Assistant: {}",
            r.report_layer,
            names(&mut sorted.iter().take(5))
        );
        println!("farthest: {}", names(&mut sorted.iter().rev().take(5)));
        println!(
            "axis: {}  plots: {}",
            r.axis_file.display(),
            r.out_dir.display()
        );
    })
}
