//! Running the peers' benchmark scripts (llama.cpp via llama-cpp-python, HF transformers) in
//! the same invocation as ours.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot run the peer benchmark {script}: {message}. Set it up with `bash {setup}`, or pass --peers none")]
    Run {
        script: PathBuf,
        setup: PathBuf,
        message: String,
    },
    #[error("the peer benchmark printed no figures JSON: {0}")]
    Output(String),
}

pub type PeerFigures = BTreeMap<String, f64>;

/// Runs `run_baselines.sh` from `bench_dir` (quick mode: 1 process × 2 reps) and returns its
/// figures. The peers use the model file at `model`.
pub fn run_peers(bench_dir: &Path, model: &Path, quick: bool) -> Result<PeerFigures, PeerError> {
    let script = bench_dir.join("run_baselines.sh");
    let setup = bench_dir.join("setup_peers.sh");
    let run_err = |message: String| PeerError::Run {
        script: script.clone(),
        setup: setup.clone(),
        message,
    };
    let mut cmd = Command::new("bash");
    cmd.arg(&script).env("PERSONA_MODEL", model);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().map_err(|e| run_err(e.to_string()))?;
    figures_line(&out).map_err(|e| match e {
        Figures::Failed(message) => run_err(message),
        Figures::Unreadable(message) => PeerError::Output(message),
    })
}

/// Why a peer's output gave no figures.
pub(crate) enum Figures {
    /// It exited with an error: the status and the last lines of its stderr.
    Failed(String),
    /// It printed no JSON line with a `figures` object.
    Unreadable(String),
}

/// The `figures` object of the last JSON line a peer printed on stdout.
pub(crate) fn figures_line(out: &std::process::Output) -> Result<PeerFigures, Figures> {
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        return Err(Figures::Failed(format!(
            "exit status {}: {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| Figures::Unreadable(stdout.chars().take(300).collect()))?;
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| Figures::Unreadable(e.to_string()))?;
    let figures = v
        .get("figures")
        .and_then(|f| f.as_object())
        .ok_or_else(|| Figures::Unreadable("no `figures` object".into()))?;
    Ok(figures
        .iter()
        .filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
        .collect())
}
