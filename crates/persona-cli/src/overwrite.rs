//! Commands that write files a user names refuse to replace existing ones unless told to
//! (`--force`): a mistyped `--out` must not destroy a user's file.

use std::path::PathBuf;

use anyhow::bail;

/// Fails, naming them, if any of `paths` exists and `force` is not set.
pub fn refuse_to_replace(paths: &[PathBuf], force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    let existing: Vec<String> = paths
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    match existing.as_slice() {
        [] => Ok(()),
        [one] => bail!("{one} exists: pass --force to replace it, or --out another path"),
        many => bail!(
            "{} exist: pass --force to replace them, or --out another folder",
            many.join(", ")
        ),
    }
}
