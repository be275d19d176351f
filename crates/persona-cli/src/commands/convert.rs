use std::path::PathBuf;

use anyhow::bail;
use persona_engine::{ConvertDType, HF_FOLDER_FILES};
use serde_json::json;

use crate::input::load_with;
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Output folder (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Replace the model files in OUT if they exist.
    #[arg(long)]
    force: bool,
    /// Weight dtype: f32 (exact), f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    let dtype = match a.dtype.as_str() {
        "f32" => ConvertDType::F32,
        "f16" => ConvertDType::F16,
        "bf16" => ConvertDType::BF16,
        other => bail!("unknown --dtype `{other}`: use f32, f16 or bf16"),
    };
    let files: Vec<PathBuf> = HF_FOLDER_FILES.iter().map(|f| a.out.join(f)).collect();
    if !a.out.is_file() {
        crate::overwrite::refuse_to_replace(&files, a.force)?;
    }
    // Exact dequantized weights, whatever layout the user would run with.
    // (With --adapter, the merged model is written.)
    let engine = load_with(
        g,
        None,
        g.adapter.as_deref(),
        persona_engine::WeightMode::F32,
    )?;
    engine.write_hf_folder(&a.out, dtype)?;
    emit(g.format, &json!({"out": a.out, "dtype": a.dtype}), || {
        println!("wrote {} ({})", a.out.display(), HF_FOLDER_FILES.join(", "))
    })
}
