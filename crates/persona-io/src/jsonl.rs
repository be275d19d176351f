//! Append-only JSONL logs (rollouts, judgements): read back after a crash.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::IoError;

/// Every record of the log at `path` (none if it does not exist). A torn last line — a crash
/// mid-write — is cut off the file, so later appends start on a clean line; a bad line
/// anywhere else is an error naming it.
pub fn read_log<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, IoError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| IoError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<T>(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() => {
                let keep: usize = lines[..i].iter().map(|l| l.len() + 1).sum();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(keep as u64))
                    .map_err(|e| IoError::Write {
                        path: path.to_path_buf(),
                        message: format!("cannot cut off a torn last line ({e})"),
                    })?;
            }
            Err(e) => {
                return Err(IoError::Format {
                    path: path.to_path_buf(),
                    reason: format!(
                        "line {} is corrupt ({e}); delete the file to start over",
                        i + 1
                    ),
                })
            }
        }
    }
    Ok(out)
}
