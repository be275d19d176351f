use std::path::PathBuf;

use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    /// A run folder (e.g. runs/optimistic) with results of extract, steer or monitor.
    run_dir: PathBuf,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    let r = persona_pipelines::report::write_report(&a.run_dir)?;
    emit(g.format, &r, || {
        println!(
            "wrote {} ({})",
            r.report_file.display(),
            r.sections.join(", ")
        )
    })
}
