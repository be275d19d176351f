use serde_json::json;

use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Also print the model's info after setting it up.
    #[arg(long)]
    quiet: bool,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    let cache = persona_models::ModelCache::from_env()?;
    let name = g.model.as_deref().unwrap_or("default");
    let known = persona_models::find(name).ok_or_else(|| {
        let names: Vec<&str> = persona_models::known_models()
            .iter()
            .map(|m| m.name)
            .collect();
        anyhow::anyhow!(
            "`{name}` is not a model persona can fetch; known models: {}",
            names.join(", ")
        )
    })?;
    let bar = crate::output::bar(known.size, known.name);
    let path = cache.ensure(known, &mut |p| crate::output::show_fetch_progress(&bar, &p))?;
    bar.finish_and_clear();
    emit(
        g.format,
        &json!({"model": known.name, "path": path, "sha256": known.sha256}),
        || {
            if !a.quiet {
                println!("{} ready at {}", known.name, path.display());
            }
        },
    )
}
