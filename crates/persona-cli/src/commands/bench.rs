use crate::Global;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_g: &Global, _a: Args) -> anyhow::Result<()> {
    anyhow::bail!("the benchmark is being written")
}
