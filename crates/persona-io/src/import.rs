//! Vectors from other tools, mapped onto persona's layer numbering at the file boundary.
//!
//! Converting a file needs no model: the file's own shape says how many rows of which width
//! it holds. A model, when one is named, only checks that the file was made for it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::{read_pt_matrix, IoError, LayerVectors};

/// Row conventions of the `.pt` files of the two reference codebases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PtLayout {
    /// `[n + 1, d]`: row r = HF `hidden_states[r]`, so rows 1..n−1 are layers 0..n−2; row 0
    /// (embeddings) and row n (after the final norm) are not residual-stream points and are
    /// dropped.
    PersonaVectors,
    /// `[n, d]`: row l = the output of block l.
    AssistantAxis,
}

impl PtLayout {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "persona-vectors" => Some(Self::PersonaVectors),
            "assistant-axis" => Some(Self::AssistantAxis),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::PersonaVectors => "persona-vectors",
            Self::AssistantAxis => "assistant-axis",
        }
    }

    /// The layout a file of `rows` rows most likely has when no model says: models have an
    /// even number of blocks (all the reference models do), so an odd count is `n + 1`
    /// hidden states and an even one is `n` block outputs.
    fn guess(rows: usize) -> Self {
        if rows % 2 == 1 {
            Self::PersonaVectors
        } else {
            Self::AssistantAxis
        }
    }

    /// How many rows a file in this layout has for a model of `n_layers` blocks.
    fn rows_for(self, n_layers: usize) -> usize {
        match self {
            Self::PersonaVectors => n_layers + 1,
            Self::AssistantAxis => n_layers,
        }
    }
}

/// What decided a `.pt` file's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayoutSource {
    /// `--layout`.
    Given,
    /// The row count matched the model's block count (n + 1 or n).
    Model,
    /// No model was named: guessed from the row count ([`PtLayout`]'s odd/even rule).
    RowCount,
}

/// The model an import is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    pub n_layers: usize,
    pub d_model: usize,
}

/// What an import produced.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    #[serde(skip)]
    pub vectors: LayerVectors,
    /// `gguf-control-vector`, `persona-vectors` or `assistant-axis`.
    pub source_format: String,
    /// The stored rows (`.pt` rows, or GGUF directions) and their width.
    pub rows: usize,
    pub d: usize,
    /// `.pt` files only: the row convention and what chose it.
    pub layout: Option<PtLayout>,
    pub layout_from: Option<LayoutSource>,
    /// Source rows left out (with why).
    pub dropped: Vec<String>,
}

impl Imported {
    /// Writes into the vectors' metadata what was imported from where, as a persona vector
    /// file records it: an Assistant-Axis file is an axis, anything else a trait vector.
    pub fn record_provenance(&mut self, name: &str, source: &Path) {
        let kind = match self.layout {
            Some(PtLayout::AssistantAxis) => "axis",
            _ => "trait",
        };
        let metadata = &mut self.vectors.metadata;
        let mut set = |k: &str, v: String| metadata.insert(format!("persona.{k}"), v);
        set("kind", kind.into());
        set("name", name.into());
        set("hook_point", "resid_post".into());
        set("method", format!("imported from {}", self.source_format));
        set("source", source.display().to_string());
        set("source_shape", format!("[{}, {}]", self.rows, self.d));
        if let (Some(layout), Some(from)) = (self.layout, self.layout_from) {
            let why = match from {
                LayoutSource::Given => "as given",
                LayoutSource::Model => "matched to the model",
                LayoutSource::RowCount => "guessed from the row count",
            };
            set("source_layout", format!("{} ({why})", layout.name()));
        }
    }
}

/// Reads a GGUF control vector or a `.pt` matrix. `layout` picks the `.pt` convention;
/// without it the model's block count decides (n + 1 or n rows), or with no model the row
/// count's parity. With a model, the file must fit it (rows and width).
pub fn import_vectors(
    path: &Path,
    model: Option<ModelShape>,
    layout: Option<PtLayout>,
) -> Result<Imported, IoError> {
    let bad = |reason: String| IoError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let imported = if crate::starts_with(path, b"GGUF")? {
        // llama.cpp's direction.N is added to the output of block N: our layer N.
        let vectors = LayerVectors::load(path)?;
        let d = vectors.width();
        Imported {
            rows: vectors.layers.len(),
            d,
            vectors,
            source_format: "gguf-control-vector".into(),
            layout: None,
            layout_from: None,
            dropped: Vec::new(),
        }
    } else {
        let rows = read_pt_matrix(path, None)?;
        let (n, d) = (rows.len(), rows[0].len());
        let (layout, layout_from) = match (layout, model) {
            (Some(l), _) => (l, LayoutSource::Given),
            (None, Some(m)) if n == m.n_layers + 1 => (PtLayout::PersonaVectors, LayoutSource::Model),
            (None, Some(m)) if n == m.n_layers => (PtLayout::AssistantAxis, LayoutSource::Model),
            (None, Some(m)) => {
                return Err(bad(format!(
                    "{n} rows fit neither a persona_vectors file ({} rows) nor an assistant-axis file ({} rows) for this {}-layer model; was it made for another model?",
                    m.n_layers + 1,
                    m.n_layers,
                    m.n_layers
                )))
            }
            (None, None) => (PtLayout::guess(n), LayoutSource::RowCount),
        };
        if let Some(m) = model {
            let expected = layout.rows_for(m.n_layers);
            if n != expected {
                return Err(bad(format!(
                    "it has {n} rows, but a {} file for this {}-layer model has {expected}; was it made for another model?",
                    layout.name(),
                    m.n_layers
                )));
            }
        }
        let (layers, dropped) = rows_to_layers(rows, layout).map_err(bad)?;
        Imported {
            vectors: LayerVectors {
                layers,
                metadata: BTreeMap::new(),
            },
            source_format: layout.name().into(),
            rows: n,
            d,
            layout: Some(layout),
            layout_from: Some(layout_from),
            dropped,
        }
    };
    if let Some(m) = model {
        if imported.d != m.d_model {
            return Err(bad(format!(
                "its vectors have {} dimensions (shape [{}, {}]) but the model's residual stream has {}; was it made for another model?",
                imported.d, imported.rows, imported.d, m.d_model
            )));
        }
        if let Some(&l) = imported.vectors.layers.keys().find(|&&l| l >= m.n_layers) {
            return Err(bad(format!(
                "it has a vector for layer {l}, but the model has layers 0..{}",
                m.n_layers
            )));
        }
    }
    Ok(imported)
}

/// Vectors by persona layer.
type Layers = BTreeMap<usize, Vec<f32>>;

/// Rows to persona layers, with the rows left out and why.
fn rows_to_layers(rows: Vec<Vec<f32>>, layout: PtLayout) -> Result<(Layers, Vec<String>), String> {
    let n = rows.len();
    match layout {
        PtLayout::AssistantAxis => Ok((rows.into_iter().enumerate().collect(), Vec::new())),
        PtLayout::PersonaVectors if n < 3 => Err(format!(
            "{n} rows cannot be a persona-vectors file (embeddings, at least one block, the final norm); pass --layout assistant-axis if it has one row per block"
        )),
        PtLayout::PersonaVectors => {
            let last = n - 1;
            let layers = rows
                .into_iter()
                .enumerate()
                .take(last)
                .skip(1)
                .map(|(r, row)| (r - 1, row))
                .collect();
            let dropped = vec![
                "row 0 (embeddings)".to_string(),
                format!("row {last} (after the final norm)"),
            ];
            Ok((layers, dropped))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data as data;
    use crate::torch_save::{torch_save, Saved, Storage};

    fn model(n_layers: usize, d_model: usize) -> Option<ModelShape> {
        Some(ModelShape { n_layers, d_model })
    }

    #[test]
    fn rows_map_to_layers_by_convention() {
        // 4 rows of width 3: persona_vectors for a 3-block model, assistant-axis for 4 blocks.
        let pv = import_vectors(&data("bare_f32_4x3.pt"), model(3, 3), None).unwrap();
        assert_eq!(pv.source_format, "persona-vectors");
        assert_eq!(
            pv.vectors.layers.keys().copied().collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(pv.vectors.layers[&0], vec![-0.25, 0.0, 0.25]);
        assert_eq!(pv.dropped.len(), 2);
        let ax = import_vectors(&data("dict_axis_4x3.pt"), model(4, 3), None).unwrap();
        assert_eq!(ax.source_format, "assistant-axis");
        assert_eq!(ax.vectors.layers[&3], vec![1.25, 1.5, 1.75]);
        let e = import_vectors(&data("bare_f32_4x3.pt"), model(7, 3), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another model"), "{e}");
        let e = import_vectors(&data("bare_f32_4x3.pt"), model(4, 5), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("5"), "{e}");
    }

    #[test]
    fn a_given_layout_must_fit_the_model() {
        let e = import_vectors(
            &data("bare_f32_4x3.pt"),
            model(4, 3),
            Some(PtLayout::PersonaVectors),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("4 rows") && e.contains("has 5") && e.contains("another model"),
            "{e}"
        );
        let e = import_vectors(&data("bare_f32_4x3.pt"), model(4, 576), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[4, 3]") && e.contains("576"), "{e}");
    }

    /// The Assistant-Axis release's shapes (Gemma-2-27B, Qwen3-32B, Llama-3.3-70B), bf16,
    /// as `torch.save` writes them: converted without any model.
    #[test]
    fn large_models_files_convert_without_the_model() {
        let dir = tempfile::tempdir().unwrap();
        for (rows, cols) in [(46, 4608), (64, 5120), (80, 8192)] {
            let values: Vec<f32> = (0..rows * cols)
                .map(|i| ((i % 251) as f32 - 125.0) / 64.0)
                .collect();
            let path = dir.path().join("assistant_axis.pt");
            torch_save(&path, &Saved::new(rows, cols, Storage::BF16, &values));
            let i = import_vectors(&path, None, None).unwrap();
            assert_eq!((i.rows, i.d), (rows, cols));
            assert_eq!(i.layout, Some(PtLayout::AssistantAxis));
            assert_eq!(i.layout_from, Some(LayoutSource::RowCount));
            assert_eq!(i.vectors.layers.len(), rows);
            // Values of this pattern are exact in bf16.
            let last = &i.vectors.layers[&(rows - 1)];
            assert_eq!(last[..], values[(rows - 1) * cols..]);
            let mut i = i;
            i.record_provenance("axis", &path);
            let v = &i.vectors;
            assert_eq!(v.metadata["persona.kind"], "axis");
            assert_eq!(
                v.metadata["persona.source_shape"],
                format!("[{rows}, {cols}]")
            );
            assert_eq!(
                v.metadata["persona.source_layout"],
                "assistant-axis (guessed from the row count)"
            );
            // The same file checked against a model it was not made for.
            let e = import_vectors(&path, model(rows, 576), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("576") && e.contains(&cols.to_string()), "{e}");
        }
    }

    #[test]
    fn an_odd_row_count_is_read_as_hidden_states() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evil_response_avg_diff.pt");
        let values: Vec<f32> = (0..29 * 8).map(|i| i as f32).collect();
        torch_save(&path, &Saved::new(29, 8, Storage::F32, &values));
        let i = import_vectors(&path, None, None).unwrap();
        assert_eq!(i.layout, Some(PtLayout::PersonaVectors));
        assert_eq!(i.vectors.layers.len(), 27);
        assert_eq!(i.vectors.layers[&0], values[8..16]);
        assert_eq!(
            i.dropped,
            ["row 0 (embeddings)", "row 28 (after the final norm)"]
        );
        let forced = import_vectors(&path, None, Some(PtLayout::AssistantAxis)).unwrap();
        assert_eq!(forced.vectors.layers.len(), 29);
        assert_eq!(forced.layout_from, Some(LayoutSource::Given));
    }
}
