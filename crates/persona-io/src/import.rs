//! Vectors from other tools, mapped onto persona's layer numbering at the file boundary.

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
}

/// What an import produced.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    #[serde(skip)]
    pub vectors: LayerVectors,
    /// `gguf-control-vector`, `persona-vectors` or `assistant-axis`.
    pub source_format: String,
    /// Source rows left out (with why).
    pub dropped: Vec<String>,
}

/// Reads a GGUF control vector or a `.pt` matrix for a model with `n_layers` blocks of width
/// `d`. `layout` picks the `.pt` convention; without it, the row count decides (n + 1 or n).
pub fn import_vectors(
    path: &Path,
    n_layers: usize,
    d: usize,
    layout: Option<PtLayout>,
) -> Result<Imported, IoError> {
    let bad = |reason: String| IoError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let head = std::fs::read(path)
        .map_err(|e| IoError::Read {
            path: path.to_path_buf(),
            source: e,
        })?
        .into_iter()
        .take(4)
        .collect::<Vec<u8>>();
    let (vectors, source_format, dropped) = if head == b"GGUF" {
        // llama.cpp's direction.N is added to the output of block N: our layer N.
        (
            LayerVectors::load(path)?,
            "gguf-control-vector".to_string(),
            Vec::new(),
        )
    } else {
        let rows = read_pt_matrix(path, None)?;
        let layout = match layout {
            Some(l) => l,
            None if rows.len() == n_layers + 1 => PtLayout::PersonaVectors,
            None if rows.len() == n_layers => PtLayout::AssistantAxis,
            None => {
                return Err(bad(format!(
                    "{} rows fit neither a persona_vectors file ({} rows) nor an assistant-axis file ({} rows) for this {}-layer model; was it made for another model?",
                    rows.len(),
                    n_layers + 1,
                    n_layers,
                    n_layers
                )))
            }
        };
        let mut v = LayerVectors::default();
        let mut dropped = Vec::new();
        match layout {
            PtLayout::PersonaVectors => {
                for (r, row) in rows.into_iter().enumerate() {
                    match r {
                        0 => dropped.push("row 0 (embeddings)".to_string()),
                        r if r == n_layers => {
                            dropped.push(format!("row {r} (after the final norm)"))
                        }
                        r => {
                            v.layers.insert(r - 1, row);
                        }
                    }
                }
            }
            PtLayout::AssistantAxis => {
                v.layers.extend(rows.into_iter().enumerate());
            }
        }
        let name = match layout {
            PtLayout::PersonaVectors => "persona-vectors",
            PtLayout::AssistantAxis => "assistant-axis",
        };
        (v, name.to_string(), dropped)
    };
    if let Some((l, row)) = vectors.layers.iter().find(|(_, r)| r.len() != d) {
        return Err(bad(format!(
            "layer {l} has {} dimensions but the model's residual stream has {d}",
            row.len()
        )));
    }
    if let Some(&l) = vectors.layers.keys().find(|&&l| l >= n_layers) {
        return Err(bad(format!(
            "it has a vector for layer {l}, but the model has layers 0..{n_layers}"
        )));
    }
    Ok(Imported {
        vectors,
        source_format,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data as data;

    #[test]
    fn rows_map_to_layers_by_convention() {
        // 4 rows of width 3: persona_vectors for a 3-block model, assistant-axis for 4 blocks.
        let pv = import_vectors(&data("bare_f32_4x3.pt"), 3, 3, None).unwrap();
        assert_eq!(pv.source_format, "persona-vectors");
        assert_eq!(
            pv.vectors.layers.keys().copied().collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(pv.vectors.layers[&0], vec![-0.25, 0.0, 0.25]);
        assert_eq!(pv.dropped.len(), 2);
        let ax = import_vectors(&data("dict_axis_4x3.pt"), 4, 3, None).unwrap();
        assert_eq!(ax.source_format, "assistant-axis");
        assert_eq!(ax.vectors.layers[&3], vec![1.25, 1.5, 1.75]);
        let e = import_vectors(&data("bare_f32_4x3.pt"), 7, 3, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another model"), "{e}");
        let e = import_vectors(&data("bare_f32_4x3.pt"), 4, 5, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("5"), "{e}");
    }
}
