//! Files written whole or not at all. Its own module because the Hugging Face folder writer
//! (`convert`, an extension of the engine) and the adapters (which the engine loads) both write
//! this way, and neither may import the other.

use std::path::Path;

use crate::error::{EngineError, Result};

/// Writes a file so that readers see the old one or the complete new one (temporary file,
/// then rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).map_err(|e| EngineError::write(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| EngineError::write(path, e))
}
