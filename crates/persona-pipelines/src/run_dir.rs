//! The layout of persona's run folders, in one place: every front end asks here where a
//! trait's vectors, a steering sweep or a capped run live, so the CLI, the server and the
//! Python package find each other's results.

use std::path::{Path, PathBuf};

use crate::axis_cap::AxisCap;

/// Where results go when no folder is given.
pub const RUNS: &str = "runs";

/// A trait's run folder (`runs/<trait>` by default): its rollouts, vectors and the steer,
/// monitor and shift folders under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    /// `runs/<trait>`, or `folder` when one is given.
    pub fn for_trait(trait_name: &str, folder: Option<&Path>) -> Self {
        match folder {
            Some(f) => Self::new(f),
            None => Self::new(Path::new(RUNS).join(trait_name)),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<trait>_<method>.safetensors`: the file `extract` writes for a reading.
    pub fn vector_file_name(trait_name: &str, method: &str) -> String {
        format!("{trait_name}_{method}.safetensors")
    }

    /// The vector to steer and monitor with: `<trait>_response_avg.safetensors`.
    pub fn response_vector(&self, trait_name: &str) -> PathBuf {
        self.root
            .join(Self::vector_file_name(trait_name, "response_avg"))
    }

    /// The steering sweep's folder (`steer`, or `steer-cap-p25-15-22` for a capped sweep).
    pub fn steer(&self, cap: Option<&AxisCap>) -> PathBuf {
        capped(&self.root.join("steer"), cap)
    }

    /// The monitoring folder, likewise.
    pub fn monitor(&self, cap: Option<&AxisCap>) -> PathBuf {
        capped(&self.root.join("monitor"), cap)
    }

    /// The shift measurement of a tuned model named `stem`.
    pub fn shift(&self, stem: &str) -> PathBuf {
        self.root.join(format!("shift-{stem}"))
    }

    /// The uncapped steering result, if `persona steer` has run here.
    pub fn steer_result(
        &self,
    ) -> Result<Option<crate::steer::SteerResult>, crate::store::StoreError> {
        read_result(
            &self.steer(None).join(crate::steer::RESULT_FILE),
            "persona steer",
            &format!("persona steer TRAIT --run {}", self.root.display()),
        )
    }

    /// `given`, else the layer `persona steer` recommended here, else the middle layer.
    pub fn layer_or_recommended(
        &self,
        given: Option<usize>,
        n_layers: usize,
    ) -> Result<usize, crate::store::StoreError> {
        Ok(match given {
            Some(l) => l,
            None => self.recommended_layer()?.unwrap_or(n_layers / 2),
        })
    }

    /// The layer `persona steer` recommended here, if it has run and found one.
    pub fn recommended_layer(&self) -> Result<Option<usize>, crate::store::StoreError> {
        Ok(self
            .steer_result()?
            .and_then(|r| r.recommended)
            .map(|r| r.layer))
    }
}

/// The folder of a run under a cap: `<base>-cap-<slug>`, so a capped run never overwrites the
/// uncapped results it is compared with.
pub fn capped(base: &Path, cap: Option<&AxisCap>) -> PathBuf {
    match cap {
        Some(c) => {
            let name = base
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().to_string());
            base.with_file_name(format!("{name}-cap-{}", c.slug()))
        }
        None => base.to_path_buf(),
    }
}

/// `runs/axis`: where `axis build` writes the map of persona space.
pub fn axis_dir() -> PathBuf {
    Path::new(RUNS).join("axis")
}

/// `runs/axis/axis.safetensors`: the axis every axis command reads by default.
pub fn default_axis_file() -> PathBuf {
    axis_dir().join(crate::axis::AXIS_FILE)
}

/// `runs/drift` (capped: `runs/drift-cap-…`).
pub fn drift_dir(cap: Option<&AxisCap>) -> PathBuf {
    capped(&Path::new(RUNS).join("drift"), cap)
}

/// `runs/cap`: the cap evaluation.
pub fn cap_eval_dir() -> PathBuf {
    Path::new(RUNS).join("cap")
}

/// `runs/em/<name>`: the emergent-misalignment evaluation of a model, named by its adapter's
/// folder when one is merged in (the finetuned model is what the evaluation is about), else by
/// the model's name or file (`model`, without `.gguf`).
pub fn em_dir(model: &str, adapter: Option<&Path>) -> PathBuf {
    let last = |p: &Path| p.file_name().map(|n| n.to_string_lossy().to_string());
    let name = adapter
        .and_then(last)
        .or_else(|| last(Path::new(model)).map(|n| n.trim_end_matches(".gguf").to_string()))
        .unwrap_or_else(|| "model".to_string());
    Path::new(RUNS).join("em").join(name)
}

/// `runs/screen/<dataset stem>`.
pub fn screen_dir(dataset: &Path) -> PathBuf {
    let stem = dataset.file_stem().map_or_else(
        || "dataset".to_string(),
        |s| s.to_string_lossy().to_string(),
    );
    Path::new(RUNS).join("screen").join(stem)
}

/// A JSON result file read through its type, without taking its folder's lock (readers never
/// block a running writer: results are replaced atomically); `None` when it is not there.
/// `writer` and `rerun` name what writes and what rewrites it, for the error when it does not
/// parse.
pub fn read_result<T: serde::de::DeserializeOwned>(
    path: &Path,
    writer: &str,
    rerun: &str,
) -> Result<Option<T>, crate::store::StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => crate::store::parse_result(&bytes, path, writer, rerun).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::store::StoreError::Read {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_names_every_folder() {
        let run = RunDir::for_trait("optimistic", None);
        assert_eq!(run.root(), Path::new("runs/optimistic"));
        assert_eq!(
            run.response_vector("optimistic"),
            Path::new("runs/optimistic/optimistic_response_avg.safetensors")
        );
        assert_eq!(run.steer(None), Path::new("runs/optimistic/steer"));
        let cap = AxisCap {
            percentile: "p25".into(),
            layers: 15..22,
            units: vec![],
            taus: vec![],
        };
        assert_eq!(
            run.monitor(Some(&cap)),
            Path::new("runs/optimistic/monitor-cap-p25-15-22")
        );
        assert_eq!(drift_dir(Some(&cap)), Path::new("runs/drift-cap-p25-15-22"));
        assert_eq!(
            screen_dir(Path::new("data/finance.jsonl")),
            Path::new("runs/screen/finance")
        );
        assert_eq!(
            em_dir("qwen2.5-1.5b", None),
            Path::new("runs/em/qwen2.5-1.5b")
        );
        assert_eq!(
            em_dir("/m/SmolLM2.Q4_1.gguf", None),
            Path::new("runs/em/SmolLM2.Q4_1")
        );
        assert_eq!(
            em_dir("smollm2-135m", Some(Path::new("out/insecure/"))),
            Path::new("runs/em/insecure")
        );
        assert_eq!(
            RunDir::for_trait("x", Some(Path::new("elsewhere"))).shift("tuned"),
            Path::new("elsewhere/shift-tuned")
        );
    }
}
