use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::input::{load_engine, AnswerArgs};
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    /// The finetuning dataset: JSONL, one `{"messages": [...]}` per line ending with the
    /// assistant's response, or `{"prompt", "response"}`.
    dataset: PathBuf,
    /// Traits to screen for, comma-separated; each one's vector is
    /// runs/TRAIT/TRAIT_response_avg.safetensors (from `persona extract TRAIT`).
    #[arg(long, value_delimiter = ',')]
    traits: Vec<String>,
    /// A vector file for a trait, NAME=FILE (repeatable; adds the trait or replaces its file).
    #[arg(long, value_name = "NAME=FILE")]
    vector: Vec<String>,
    /// Layer to read every trait at (default: the layer `persona steer` recommended for the
    /// trait, else the middle layer).
    #[arg(long)]
    layer: Option<usize>,
    /// Write the K highest-ΔP samples (by the first trait) to top.jsonl and the dataset
    /// without them to filtered.jsonl.
    #[arg(long, default_value_t = 0)]
    top: usize,
    /// Samples measured together (memory holds one chunk's activations).
    #[arg(long, default_value_t = 64)]
    chunk: usize,
    /// Output folder (default runs/screen/DATASET_NAME; its caches make a rerun resume).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    answers: AnswerArgs,
}

struct TraitInput {
    name: String,
    file: PathBuf,
    vectors: persona_io::LayerVectors,
    layer: usize,
}

fn trait_inputs(a: &Args, n_layers: usize) -> anyhow::Result<Vec<TraitInput>> {
    let mut named: Vec<(String, Option<PathBuf>)> =
        a.traits.iter().map(|t| (t.clone(), None)).collect();
    for v in &a.vector {
        let (name, file) = crate::input::named_vector(v)?;
        match named.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = Some(file),
            None => named.push((name, Some(file))),
        }
    }
    if named.is_empty() {
        bail!("name the traits to screen for: --traits optimistic,evil, or --vector NAME=FILE");
    }
    named
        .into_iter()
        .map(|(name, file)| {
            let run_dir = persona_pipelines::RunDir::for_trait(&name, None);
            let file = match file {
                Some(f) => f,
                None => {
                    let f = run_dir.response_vector(&name);
                    if !f.exists() {
                        bail!(
                            "no vector for {name} at {}: run `persona extract {name}` first, or give --vector {name}=FILE",
                            f.display()
                        );
                    }
                    f
                }
            };
            let vectors = persona_io::LayerVectors::load(&file)?;
            let layer = run_dir.layer_or_recommended(a.layer, n_layers)?;
            Ok(TraitInput {
                name,
                file,
                vectors,
                layer,
            })
        })
        .collect()
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    if !a.dataset.is_file() {
        bail!(
            "no dataset at {}: give a JSONL file of chat samples",
            a.dataset.display()
        );
    }
    let engine = load_engine(g)?;
    let inputs = trait_inputs(&a, engine.config().n_layers)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| persona_pipelines::run_dir::screen_dir(&a.dataset));
    crate::input::record(&engine, &out)?;
    let traits: Vec<persona_pipelines::screen::ScreenTrait> = inputs
        .iter()
        .map(|t| persona_pipelines::screen::ScreenTrait {
            name: &t.name,
            layer: t.layer,
            vectors: persona_pipelines::VectorSource {
                vectors: &t.vectors,
                file: &t.file,
            },
        })
        .collect();
    let opts = persona_pipelines::screen::ScreenOptions {
        answers: a.answers.options(),
        chunk: a.chunk,
        top: a.top,
    };
    let store = crate::input::open_store(&out)?;
    let r = crate::output::with_progress("screen", |progress| {
        persona_pipelines::screen::screen(&engine, &a.dataset, &traits, &opts, &store, progress)
    })
    .with_context(|| format!("screening {}", a.dataset.display()))?;
    emit(g.format, &r, || {
        println!("{} samples screened", r.samples);
        println!(
            "{:<16} {:>5} {:>10} {:>20} {:>12}",
            "trait", "layer", "mean ΔP", "95% interval", "ΔP > 0"
        );
        for t in &r.traits {
            println!(
                "{:<16} {:>5} {:>10} {:>20} {:>11.0}%",
                t.trait_name,
                t.layer,
                crate::output::num(t.mean_delta, 3),
                crate::output::interval(t.ci95, 3),
                t.positive_share.unwrap_or(f64::NAN) * 100.0
            );
        }
        println!("ranked by {}: {}", r.ranked_by, r.table_file.display());
        if let (Some(t), Some(f)) = (&r.top_file, &r.filtered_file) {
            println!(
                "highest-ΔP samples: {}  without them: {}",
                t.display(),
                f.display()
            );
        }
    })
}
