//! The Assistant-axis activation cap (docs/design.md: h ← h + u·max(τ − h·u, 0)) over a window of
//! layers, τ per layer taken from the percentiles `persona axis build` stores with the axis.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use persona_engine::{HookSite, Intervention, Span};
use persona_io::LayerVectors;

use crate::PipelineError;

/// The layers capped when none are named: from half to three quarters of the depth, where the
/// axis separates roles best on the models tried.
pub fn default_window(n_layers: usize) -> Range<usize> {
    n_layers / 2..3 * n_layers / 4
}

/// Parses `START..END` (END exclusive) and checks it against the model's depth.
pub fn parse_window(text: &str, n_layers: usize) -> Result<Range<usize>, PipelineError> {
    let bad = |why: String| PipelineError::Input(format!("layer window `{text}`: {why}"));
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| bad("write it as START..END, e.g. 15..23".into()))?;
    let parse = |x: &str| {
        x.trim()
            .parse::<usize>()
            .map_err(|_| bad(format!("`{x}` is not a layer index")))
    };
    let window = parse(a)?..parse(b)?;
    check_window(&window, n_layers).map_err(bad)?;
    Ok(window)
}

fn check_window(window: &Range<usize>, n_layers: usize) -> Result<(), String> {
    if window.is_empty() || window.end > n_layers {
        return Err(format!(
            "it must be a non-empty window within 0..{n_layers}"
        ));
    }
    Ok(())
}

/// The per-layer cap thresholds stored in an axis file, by percentile name (`p1`, `p25`, …).
pub fn axis_thresholds(
    axis: &LayerVectors,
    path: &Path,
) -> Result<BTreeMap<String, Vec<f64>>, PipelineError> {
    let raw = axis.metadata.get("persona.tau").ok_or_else(|| {
        PipelineError::Input(format!(
            "{} has no cap thresholds (`persona.tau`): make it with `persona axis build`",
            path.display()
        ))
    })?;
    serde_json::from_str(raw).map_err(|e| {
        PipelineError::Input(format!(
            "{} has unreadable `persona.tau` metadata ({e}): rebuild it with `persona axis build`",
            path.display()
        ))
    })
}

/// A floor on the unit axis at τ, at every position, at every layer of a window.
#[derive(Debug, Clone)]
pub struct AxisCap {
    pub percentile: String,
    pub layers: Range<usize>,
    /// `[layer in window]`: the unit axis and τ at that layer.
    pub units: Vec<Vec<f32>>,
    pub taus: Vec<f64>,
}

impl AxisCap {
    /// The cap at `percentile` (a key of the axis file's thresholds) over `layers`.
    pub fn from_axis(
        axis: &LayerVectors,
        path: &Path,
        percentile: &str,
        layers: Range<usize>,
        d_model: usize,
    ) -> Result<AxisCap, PipelineError> {
        let thresholds = axis_thresholds(axis, path)?;
        let tau = thresholds.get(percentile).ok_or_else(|| {
            PipelineError::Input(format!(
                "cap percentile `{percentile}` is not in {}: it has {}",
                path.display(),
                thresholds.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let mut units = Vec::new();
        let mut taus = Vec::new();
        for l in layers.clone() {
            let v = crate::VectorSource {
                vectors: axis,
                file: path,
            }
            .layer(l, d_model)?;
            let norm = persona_core::norm(v);
            if norm == 0.0 {
                return Err(PipelineError::Input(format!(
                    "the axis in {} is zero at layer {l}",
                    path.display()
                )));
            }
            let t = tau
                .get(l)
                .copied()
                .filter(|t| t.is_finite())
                .ok_or_else(|| {
                    PipelineError::Input(format!(
                        "{} has no {percentile} threshold for layer {l}",
                        path.display()
                    ))
                })?;
            units.push(v.iter().map(|x| (*x as f64 / norm) as f32).collect());
            taus.push(t);
        }
        Ok(AxisCap {
            percentile: percentile.to_string(),
            layers,
            units,
            taus,
        })
    }

    /// Names the setting in folder names, e.g. `p25-15-22`.
    pub fn slug(&self) -> String {
        format!(
            "{}-{}-{}",
            self.percentile, self.layers.start, self.layers.end
        )
    }

    /// Names the setting in tables, plots and answer caches, e.g. `p25@15..22`.
    pub fn label(&self) -> String {
        format!(
            "{}@{}..{}",
            self.percentile, self.layers.start, self.layers.end
        )
    }

    /// The engine's interventions: a floor at `blocks.l.resid_post` for every layer l.
    pub fn interventions(&self) -> Result<Vec<Intervention>, persona_engine::EngineError> {
        self.layers
            .clone()
            .zip(self.units.iter().zip(&self.taus))
            .map(|(l, (unit, tau))| {
                Intervention::cap_values(
                    HookSite::resid_post(l),
                    unit,
                    *tau as f32,
                    false,
                    Span::All,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis_file(n: usize) -> LayerVectors {
        let mut v = LayerVectors {
            layers: (0..n).map(|l| (l, vec![0.0, 2.0 + l as f32])).collect(),
            ..Default::default()
        };
        let taus: BTreeMap<String, Vec<f64>> =
            [("p25".to_string(), (0..n).map(|l| l as f64 * 0.5).collect())].into();
        v.metadata
            .insert("persona.tau".into(), serde_json::to_string(&taus).unwrap());
        v
    }

    #[test]
    fn windows_parse_and_are_checked_against_the_depth() {
        assert_eq!(parse_window("15..23", 30).unwrap(), 15..23);
        assert_eq!(default_window(30), 15..22);
        for bad in ["15-23", "5..5", "20..31", "a..3"] {
            assert!(parse_window(bad, 30).is_err(), "{bad}");
        }
    }

    #[test]
    fn cap_takes_unit_axis_and_tau_of_each_window_layer() {
        let axis = axis_file(6);
        let cap = AxisCap::from_axis(&axis, Path::new("axis.safetensors"), "p25", 2..4, 2).unwrap();
        assert_eq!(cap.units, vec![vec![0.0, 1.0], vec![0.0, 1.0]]);
        assert_eq!(cap.taus, vec![1.0, 1.5]);
        assert_eq!(cap.label(), "p25@2..4");
    }

    #[test]
    fn cap_errors_name_what_is_missing() {
        let axis = axis_file(6);
        let p = Path::new("axis.safetensors");
        let e = AxisCap::from_axis(&axis, p, "p50", 2..4, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("p50") && e.contains("p25"), "{e}");
        let e = AxisCap::from_axis(&axis, p, "p25", 2..4, 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another model"), "{e}");
        let e = AxisCap::from_axis(&LayerVectors::default(), p, "p25", 0..1, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("persona axis build"), "{e}");
    }
}
