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
    /// Replace OUT if it exists.
    #[arg(long)]
    force: bool,
    /// `.pt` row convention: persona-vectors or assistant-axis (default: from the row count).
    #[arg(long)]
    layout: Option<String>,
    /// Name recorded in the file's metadata.
    #[arg(long)]
    name: Option<String>,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    crate::overwrite::refuse_to_replace(std::slice::from_ref(&a.out), a.force)?;
    let layout = match &a.layout {
        None => None,
        Some(s) => Some(persona_io::PtLayout::parse(s).with_context(|| {
            format!("unknown --layout `{s}`: use persona-vectors or assistant-axis")
        })?),
    };
    // Converting needs no model; a model named with --model checks the file fits it.
    let model = match &g.model {
        Some(_) => {
            let c = load_engine(g)?.config().clone();
            Some(persona_io::ModelShape {
                n_layers: c.n_layers,
                d_model: c.d_model,
            })
        }
        None => None,
    };
    let mut imported = persona_io::import_vectors(&a.file, model, layout)?;
    let name = a.name.clone().unwrap_or_else(|| {
        a.file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "imported".into())
    });
    imported.record_provenance(&name, &a.file);
    imported.vectors.save(&a.out)?;
    let layers: Vec<usize> = imported.vectors.layers.keys().copied().collect();
    emit(
        g.format,
        &json!({
            "out": a.out,
            "layers": layers,
            "source_format": imported.source_format,
            "rows": imported.rows,
            "d": imported.d,
            "layout": imported.layout,
            "layout_from": imported.layout_from,
            "dropped": imported.dropped,
        }),
        || print_summary(&a.out, &imported),
    )
}

fn print_summary(out: &std::path::Path, imported: &persona_io::Imported) {
    println!(
        "wrote {} ({} layers of {} dimensions; source: {}, {} rows)",
        out.display(),
        imported.vectors.layers.len(),
        imported.d,
        imported.source_format,
        imported.rows
    );
    if let (Some(layout), Some(persona_io::LayoutSource::RowCount)) =
        (imported.layout, imported.layout_from)
    {
        println!(
                "  the row layout ({}) was guessed from the row count: an odd count is read as hidden states (persona-vectors), an even one as block outputs (assistant-axis); pass --layout or --model to be sure",
                layout.name()
            );
    }
    for d in &imported.dropped {
        println!("  left out {d}");
    }
}
