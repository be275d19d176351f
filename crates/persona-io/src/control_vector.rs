//! Writing llama.cpp / repeng GGUF control vectors.
//!
//! llama.cpp adds tensor `direction.N` to the output of block N, which is persona's layer N
//! (`blocks.N.resid_post`), so layers map one to one. Block 0 cannot be written (llama.cpp
//! rejects `direction.0`), and llama.cpp can only add: caps and ablations do not export.

use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use persona_core::fs::AtomicFile;

use crate::{IoError, LayerVectors};

#[derive(Debug, Clone)]
pub struct ControlVectorOptions {
    /// `controlvector.model_hint`: the model family (llama.cpp warns on a mismatch).
    pub model_hint: String,
    /// Multiplies every direction (the α persona would steer with).
    pub scale: f32,
    /// Only layers in `start..end` (None: all but 0).
    pub layers: Option<(usize, usize)>,
}

/// Writes `vectors` as a GGUF control vector at `path` (atomically) and returns the layers
/// written.
pub fn write_control_vector(
    vectors: &LayerVectors,
    opts: &ControlVectorOptions,
    path: &Path,
) -> Result<Vec<usize>, IoError> {
    let wr = |message: String| IoError::Write {
        path: path.to_path_buf(),
        message,
    };
    let layers: Vec<usize> = vectors
        .layers
        .keys()
        .copied()
        .filter(|&l| l >= 1)
        .filter(|&l| opts.layers.is_none_or(|(a, b)| l >= a && l < b))
        .collect();
    if layers.is_empty() {
        return Err(wr(
            "no layer to write: llama.cpp control vectors cannot hold layer 0, and the chosen range selects no other layer".into(),
        ));
    }
    let scaled: std::collections::BTreeMap<usize, Vec<f32>> = layers
        .iter()
        .map(|&l| {
            (
                l,
                vectors.layers[&l].iter().map(|x| x * opts.scale).collect(),
            )
        })
        .collect();
    if !opts.scale.is_finite() {
        return Err(wr(format!(
            "the scale {} is not a finite number",
            opts.scale
        )));
    }
    crate::check_layers(&vectors.layers).map_err(&wr)?;
    if crate::check_layers(&scaled).is_err() {
        return Err(wr(format!(
            "scaling by {} overflows 32-bit floats; use a smaller --scale",
            opts.scale
        )));
    }
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (&l, v) in &scaled {
        let t = Tensor::from_slice(v, v.len(), &Device::Cpu).map_err(|e| wr(e.to_string()))?;
        let q = QTensor::quantize(&t, GgmlDType::F32).map_err(|e| wr(e.to_string()))?;
        tensors.push((format!("direction.{l}"), q));
    }
    let mut meta: Vec<(String, gguf_file::Value)> = vec![
        (
            "general.architecture".into(),
            gguf_file::Value::String("controlvector".into()),
        ),
        (
            "controlvector.model_hint".into(),
            gguf_file::Value::String(opts.model_hint.clone()),
        ),
        (
            "controlvector.layer_count".into(),
            gguf_file::Value::I32(layers.len() as i32),
        ),
        (
            "persona.scale".into(),
            gguf_file::Value::String(opts.scale.to_string()),
        ),
    ];
    for (k, v) in &vectors.metadata {
        if k.starts_with("persona.") {
            meta.push((k.clone(), gguf_file::Value::String(v.clone())));
        }
    }
    let meta_refs: Vec<(&str, &gguf_file::Value)> =
        meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut f = AtomicFile::create(path)?;
    gguf_file::write(&mut f, &meta_refs, &tensor_refs).map_err(|e| wr(e.to_string()))?;
    f.commit()?;
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_reader_and_skips_layer_0() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cv.gguf");
        let mut v = LayerVectors::default();
        for l in 0..4 {
            v.layers.insert(l, vec![l as f32, 1.0, -2.0]);
        }
        v.metadata.insert("persona.name".into(), "evil".into());
        let opts = ControlVectorOptions {
            model_hint: "llama".into(),
            scale: 2.0,
            layers: Some((0, 3)),
        };
        let written = write_control_vector(&v, &opts, &path).unwrap();
        assert_eq!(written, vec![1, 2]);
        let back = LayerVectors::load(&path).unwrap();
        assert_eq!(back.layers.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(back.layers[&2], vec![4.0, 2.0, -4.0]);
        assert_eq!(back.metadata["controlvector.model_hint"], "llama");
        assert_eq!(back.metadata["persona.name"], "evil");
        let only0 = ControlVectorOptions {
            layers: Some((0, 1)),
            ..opts
        };
        let e = write_control_vector(&v, &only0, &path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer 0"), "{e}");
    }
}
