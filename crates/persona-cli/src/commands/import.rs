use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use crate::input::load_engine;
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    /// A GGUF control vector (llama.cpp, repeng), or a `.pt` file of the Persona Vectors
    /// (`[n+1, d]`) or Assistant-Axis (`[n, d]` or `{"axis": ...}`) code.
    file: PathBuf,
    /// Where to write the persona vector file (safetensors).
    #[arg(long)]
    out: PathBuf,
    /// `.pt` row convention: persona-vectors or assistant-axis (default: from the row count).
    #[arg(long)]
    layout: Option<String>,
    /// Name recorded in the file's metadata.
    #[arg(long)]
    name: Option<String>,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    let layout = match &a.layout {
        None => None,
        Some(s) => Some(persona_io::PtLayout::parse(s).with_context(|| {
            format!("unknown --layout `{s}`: use persona-vectors or assistant-axis")
        })?),
    };
    // The model decides how rows map to layers and checks the width.
    let engine = load_engine(g)?;
    let c = engine.config();
    let mut imported = persona_io::import_vectors(&a.file, c.n_layers, c.d_model, layout)?;
    let name = a.name.clone().unwrap_or_else(|| {
        a.file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "imported".into())
    });
    let kind = if imported.source_format == "assistant-axis" {
        "axis"
    } else {
        "trait"
    };
    let meta = &mut imported.vectors.metadata;
    meta.insert("persona.kind".into(), kind.into());
    meta.insert("persona.name".into(), name);
    meta.insert("persona.hook_point".into(), "resid_post".into());
    meta.insert(
        "persona.method".into(),
        format!("imported from {}", imported.source_format),
    );
    meta.insert("persona.source".into(), a.file.display().to_string());
    imported.vectors.save(&a.out)?;
    let layers: Vec<usize> = imported.vectors.layers.keys().copied().collect();
    emit(
        g.format,
        &json!({
            "out": a.out,
            "layers": layers,
            "source_format": imported.source_format,
            "dropped": imported.dropped,
        }),
        || {
            println!(
                "wrote {} ({} layers from a {} file)",
                a.out.display(),
                layers.len(),
                imported.source_format
            );
            for d in &imported.dropped {
                println!("  left out {d}");
            }
        },
    )
}
