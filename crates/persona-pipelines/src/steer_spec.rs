//! `FILE:LAYER:ALPHA`: one steering vector at one layer with its strength, as every front end
//! writes it (the CLI's `--steer`, the server's request objects).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use persona_engine::{HookSite, Intervention, Span};

use crate::PipelineError;

/// Add α × the vector of `layer` from `file` at `blocks.{layer}.resid_post`.
#[derive(Debug, Clone, PartialEq)]
pub struct SteerSpec {
    pub file: PathBuf,
    pub layer: usize,
    pub alpha: f32,
}

impl FromStr for SteerSpec {
    type Err = PipelineError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| PipelineError::Input(format!("--steer `{spec}`: {why}"));
        let mut parts = spec.rsplitn(3, ':');
        let (alpha, layer, file) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(l), Some(f)) if !f.is_empty() => (a, l, f),
            _ => {
                return Err(bad(
                    "write it as FILE:LAYER:ALPHA, e.g. evil.safetensors:12:1.5".into(),
                ))
            }
        };
        let alpha: f32 = alpha
            .trim()
            .parse()
            .map_err(|_| bad(format!("ALPHA `{alpha}` is not a number")))?;
        if !alpha.is_finite() {
            return Err(bad(format!("ALPHA is {alpha}: give a finite number")));
        }
        let layer: usize = layer
            .trim()
            .parse()
            .map_err(|_| bad(format!("LAYER `{layer}` is not a layer index")))?;
        Ok(SteerSpec {
            file: PathBuf::from(file),
            layer,
            alpha,
        })
    }
}

impl SteerSpec {
    /// Loads the vector file (a persona vector file or a GGUF control vector) and builds the
    /// add intervention on `span`, checked against the model's depth and width.
    pub fn intervention(
        &self,
        span: Span,
        n_layers: usize,
        d_model: usize,
    ) -> Result<Intervention, PipelineError> {
        if self.layer >= n_layers {
            return Err(PipelineError::Input(format!(
                "--steer {}: layer {} does not exist; the model has layers 0..{n_layers}",
                self.file.display(),
                self.layer
            )));
        }
        let vectors = persona_io::LayerVectors::load(&self.file)?;
        let source = crate::VectorSource {
            vectors: &vectors,
            file: Path::new(&self.file),
        };
        let v = source.layer(self.layer, d_model)?;
        Ok(Intervention::add_values(
            HookSite::resid_post(self.layer),
            v,
            self.alpha,
            span,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_layer_alpha_and_refuses_the_rest() {
        let s: SteerSpec = "runs/a:b/evil.safetensors:12:-1.5".parse().unwrap();
        assert_eq!(s.file, Path::new("runs/a:b/evil.safetensors"));
        assert_eq!((s.layer, s.alpha), (12, -1.5));
        for bad in [
            "evil.safetensors",
            "evil.safetensors:12",
            ":12:1",
            "v:x:1",
            "v:12:abc",
            "v:12:NaN",
            "v:12:inf",
            "v:-1:2",
        ] {
            let e = bad.parse::<SteerSpec>().unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn the_layer_is_checked_before_the_file_is_read() {
        let s: SteerSpec = "missing.safetensors:40:1".parse().unwrap();
        let e = s.intervention(Span::All, 30, 576).unwrap_err().to_string();
        assert!(e.contains("layers 0..30"), "{e}");
    }
}
