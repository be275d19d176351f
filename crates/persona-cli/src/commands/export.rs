use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use crate::input::load_engine;
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    /// A persona vector file (safetensors).
    vector: PathBuf,
    /// The GGUF control vector to write.
    #[arg(long)]
    out: PathBuf,
    /// Replace OUT if it exists.
    #[arg(long)]
    force: bool,
    /// Multiply the directions by this (the α persona would steer with).
    #[arg(long, default_value_t = 1.0)]
    scale: f32,
    /// Only layers START..END (block indices; layer 0 cannot be exported).
    #[arg(long)]
    layers: Option<String>,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    crate::overwrite::refuse_to_replace(std::slice::from_ref(&a.out), a.force)?;
    let vectors = persona_io::LayerVectors::load(&a.vector)?;
    let layers = match &a.layers {
        None => None,
        Some(s) => {
            let (x, y) = s
                .split_once("..")
                .with_context(|| format!("--layers `{s}` must be START..END, e.g. 8..16"))?;
            Some((
                x.parse()
                    .with_context(|| format!("bad start in --layers `{s}`"))?,
                y.parse()
                    .with_context(|| format!("bad end in --layers `{s}`"))?,
            ))
        }
    };
    // The hint llama.cpp checks is the model family of the vector's model.
    let engine = load_engine(g)?;
    let opts = persona_io::ControlVectorOptions {
        model_hint: engine.config().family.name().to_string(),
        scale: a.scale,
        layers,
    };
    let written = persona_io::write_control_vector(&vectors, &opts, &a.out)?;
    if vectors.layers.contains_key(&0) && layers.is_none_or(|(s, _)| s == 0) {
        eprintln!("note: layer 0 was left out (llama.cpp control vectors cannot hold it)");
    }
    emit(
        g.format,
        &json!({"out": a.out, "layers": written, "scale": a.scale}),
        || {
            println!(
                "wrote {} ({} layers, scale {}); in llama.cpp: --control-vector-scaled {}:1",
                a.out.display(),
                written.len(),
                a.scale,
                a.out.display()
            )
        },
    )
}
