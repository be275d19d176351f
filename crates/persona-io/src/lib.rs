//! persona's file formats.
//!
//! Vectors are safetensors files with one `layer.{l}` tensor (f32 `[d]`) per layer, or one
//! stacked `vectors` tensor `[n, d]` (row l = layer l), plus a `persona.*` string metadata map.
//! GGUF control vectors (llama.cpp / repeng: `direction.N`, added to the output of block N) are
//! read too.

mod control_vector;
mod conversations;
pub mod gguf;
mod import;
mod jsonl;
mod pickle_budget;
mod torch;
#[cfg(test)]
mod torch_save;

pub use control_vector::{write_control_vector, ControlVectorOptions};
pub use conversations::{read_conversations, ConversationReader, DatasetError, DatasetRecord};
pub use import::{import_vectors, Imported, LayoutSource, ModelShape, PtLayout};
pub use jsonl::{line_text, read_log};
pub use torch::read_pt_matrix;

use std::collections::{BTreeMap, HashMap};

/// A fixture in `tests/data/` (files written by the tools persona reads).
#[cfg(test)]
fn test_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("{path} is not a vector file persona can read: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}, line {line}, is corrupt ({reason}); this file is a resumable cache: delete that line (or the whole file, to redo everything) and run again to recompute only what is missing")]
    CacheLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path} has no vector for layer {layer}; it has layers {available:?}")]
    MissingLayer {
        path: PathBuf,
        layer: usize,
        available: Vec<usize>,
    },
}

impl From<persona_core::fs::WriteError> for IoError {
    fn from(e: persona_core::fs::WriteError) -> IoError {
        IoError::Write {
            path: e.path,
            message: e.source.to_string(),
        }
    }
}

/// Per-layer vectors of one model with their metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerVectors {
    pub layers: BTreeMap<usize, Vec<f32>>,
    pub metadata: BTreeMap<String, String>,
}

impl LayerVectors {
    /// The vectors' common length (0 when there are none).
    pub fn width(&self) -> usize {
        self.layers.values().next().map_or(0, Vec::len)
    }

    pub fn get(&self, layer: usize, path: &Path) -> Result<&[f32], IoError> {
        self.layers
            .get(&layer)
            .map(|v| v.as_slice())
            .ok_or_else(|| IoError::MissingLayer {
                path: path.to_path_buf(),
                layer,
                available: self.layers.keys().copied().collect(),
            })
    }

    /// Reads our safetensors files or a GGUF control vector, by content.
    pub fn load(path: &Path) -> Result<Self, IoError> {
        let bytes = std::fs::read(path).map_err(|e| IoError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        if bytes.starts_with(b"GGUF") {
            Self::from_gguf(path)
        } else {
            Self::from_safetensors(path, &bytes)
        }
    }

    /// Reads our safetensors bytes (held in memory, e.g. by a run store); `path` names them
    /// in errors.
    pub fn from_safetensors(path: &Path, bytes: &[u8]) -> Result<Self, IoError> {
        let bad = |reason: String| IoError::Format {
            path: path.to_path_buf(),
            reason,
        };
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
        let metadata: BTreeMap<String, String> = meta
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .map_err(|e| bad(format!("unreadable tensors ({e})")))?;
        let mut layers = BTreeMap::new();
        if let Some(stacked) = tensors.get("vectors") {
            if stacked.rank() != 2 {
                return Err(bad(format!(
                    "tensor `vectors` has shape {:?}; it must be a [layers, d] matrix",
                    stacked.dims()
                )));
            }
            // An empty matrix can still declare any number of rows, each an allocation.
            if stacked.elem_count() == 0 {
                return Err(bad(format!(
                    "tensor `vectors` has shape {:?}, with no elements",
                    stacked.dims()
                )));
            }
            let rows = to_f32_rows(stacked).map_err(|e| bad(format!("`vectors`: {e}")))?;
            layers.extend(rows.into_iter().enumerate());
        }
        for (name, t) in &tensors {
            if let Some(l) = name.strip_prefix("layer.") {
                let l: usize = l
                    .parse()
                    .map_err(|_| bad(format!("tensor `{name}` is not layer.<number>")))?;
                if t.rank() != 1 {
                    return Err(bad(format!(
                        "tensor `{name}` has shape {:?}; a layer's vector is one row of shape [d] (several layers go in one `vectors` tensor of shape [layers, d])",
                        t.dims()
                    )));
                }
                let v = t
                    .flatten_all()
                    .and_then(|t| t.to_dtype(candle_core::DType::F32))
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(|e| bad(format!("`{name}`: {e}")))?;
                layers.insert(l, v);
            }
        }
        if layers.is_empty() {
            return Err(bad(
                "no `layer.<l>` or `vectors` tensors (is this a model file rather than a vector file?)".into(),
            ));
        }
        check_layers(&layers).map_err(bad)?;
        Ok(LayerVectors { layers, metadata })
    }

    /// A llama.cpp control vector: `direction.N` is what llama.cpp adds to the output of block
    /// N, i.e. our layer N.
    fn from_gguf(path: &Path) -> Result<Self, IoError> {
        let bad = |reason: String| IoError::Format {
            path: path.to_path_buf(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| IoError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        let file_len = file
            .metadata()
            .map_err(|e| IoError::Read {
                path: path.to_path_buf(),
                source: e,
            })?
            .len();
        let mut f = std::io::BufReader::new(file);
        let content =
            gguf::read_header(&mut f).map_err(|e| bad(format!("unreadable GGUF ({e})")))?;
        let mut layers = BTreeMap::new();
        let names: Vec<String> = content.tensor_infos.keys().cloned().collect();
        for name in names {
            let Some(n) = name.strip_prefix("direction.") else {
                continue;
            };
            let l: usize = n
                .parse()
                .map_err(|_| bad(format!("tensor `{name}` is not direction.<number>")))?;
            gguf::tensor_extent(
                &content.tensor_infos[&name],
                content.tensor_data_offset,
                file_len,
            )
            .map_err(|problem| bad(format!("tensor `{name}` cannot be read: {problem}")))?;
            let v = content
                .tensor(&mut f, &name, &Device::Cpu)
                .and_then(|q| q.dequantize(&Device::Cpu))
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| bad(format!("`{name}`: {e}")))?;
            layers.insert(l, v);
        }
        if layers.is_empty() {
            return Err(bad(
                "a GGUF without `direction.<N>` tensors is not a control vector".into(),
            ));
        }
        check_layers(&layers).map_err(bad)?;
        let metadata = content
            .metadata
            .iter()
            .filter_map(|(k, v)| match v {
                gguf_file::Value::String(s) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect();
        Ok(LayerVectors { layers, metadata })
    }

    /// The safetensors bytes of `layer.{l}` tensors and the metadata, for a store to write.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, String> {
        check_layers(&self.layers)?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (l, v) in &self.layers {
            let t = Tensor::from_slice(v, v.len(), &Device::Cpu).map_err(|e| e.to_string())?;
            tensors.insert(format!("layer.{l}"), t);
        }
        let meta: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        safetensors::serialize(tensors.iter(), Some(meta)).map_err(|e| e.to_string())
    }

    /// Writes `layer.{l}` tensors and the metadata, atomically ([`persona_core::fs`]).
    pub fn save(&self, path: &Path) -> Result<(), IoError> {
        // Serialized in memory and written with the usual permissions (the crate's own file
        // writer makes files only their owner can read).
        let bytes = self.to_safetensors().map_err(|message| IoError::Write {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(persona_core::fs::write_atomic(path, &bytes)?)
    }
}

/// Whether the file at `path` begins with `magic` (false for a shorter file).
fn starts_with(path: &Path, magic: &[u8]) -> Result<bool, IoError> {
    use std::io::Read;
    let mut head = Vec::with_capacity(magic.len());
    std::fs::File::open(path)
        .and_then(|f| f.take(magic.len() as u64).read_to_end(&mut head))
        .map_err(|e| IoError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
    Ok(head == magic)
}

fn to_f32_rows(t: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
    t.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()
}

/// Vectors persona can use: one non-zero width, finite numbers only.
fn check_layers(layers: &BTreeMap<usize, Vec<f32>>) -> Result<(), String> {
    let mut widths = layers.values().map(|v| v.len());
    let first = widths.next().unwrap_or(0);
    if first == 0 || widths.any(|w| w != first) {
        return Err("the layer vectors do not all have the same, non-zero length".into());
    }
    for (l, v) in layers {
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(format!(
                "layer {l} holds {} at index {i}; persona refuses non-finite vectors (was the file written from a diverged run?)",
                v[i]
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_keeps_layers_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.safetensors");
        let mut v = LayerVectors::default();
        v.layers.insert(3, vec![1.0, -2.0, 0.5]);
        v.layers.insert(7, vec![0.0, 4.0, 1.5]);
        v.metadata.insert("persona.kind".into(), "trait".into());
        v.save(&path).unwrap();
        let back = LayerVectors::load(&path).unwrap();
        assert_eq!(back, v);
        let err = back.get(5, &path).unwrap_err().to_string();
        assert!(err.contains("layer 5") && err.contains("[3, 7]"), "{err}");
    }

    #[test]
    fn gguf_control_vector_is_read_by_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cv.gguf");
        let t = Tensor::new(&[0.25f32, -1.0], &Device::Cpu).unwrap();
        let q =
            candle_core::quantized::QTensor::quantize(&t, candle_core::quantized::GgmlDType::F32)
                .unwrap();
        let arch = gguf_file::Value::String("controlvector".into());
        let mut f = std::fs::File::create(&path).unwrap();
        gguf_file::write(
            &mut f,
            &[("general.architecture", &arch)],
            &[("direction.4", &q)],
        )
        .unwrap();
        drop(f);
        let v = LayerVectors::load(&path).unwrap();
        assert_eq!(v.layers.get(&4), Some(&vec![0.25, -1.0]));
        assert_eq!(v.metadata["general.architecture"], "controlvector");
    }

    /// Found while writing the fuzz targets (the safetensors_vectors target did not reach it in
    /// 2.6M runs): a `vectors` tensor of shape [2^40, 0] holds no bytes, and turning it into
    /// rows made 2^40 empty vectors (a hang, then out of memory).
    #[test]
    fn an_empty_stacked_matrix_is_refused_without_building_its_rows() {
        let header =
            br#"{"vectors":{"dtype":"F32","shape":[1099511627776,0],"data_offsets":[0,0]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        let e = LayerVectors::from_safetensors(Path::new("empty.safetensors"), &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("empty.safetensors")
                && e.contains("`vectors` has shape [1099511627776, 0], with no elements"),
            "{e}"
        );
    }

    /// Found by fuzzing (`fuzz/`, target gguf_control_vector): a `direction.1` of shape [0]
    /// made candle build the tensor's data from a dangling pointer (undefined behaviour, a
    /// panic in debug builds). Sizes that overflow, data past the end and a zero
    /// `general.alignment` (candle divides by it) are refused the same way.
    #[test]
    fn gguf_tensors_candle_cannot_read_safely_are_refused() {
        use crate::gguf::tests::gguf_bytes;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cv.gguf");
        let data = [0u8; 16];
        let cases: [(&[u64], &str); 3] = [
            (&[0], "shape [0] has no elements"),
            (&[1 << 40, 1 << 40], "more elements than any file can hold"),
            (&[1 << 20], "past the end of the file"),
        ];
        for (dims, want) in cases {
            std::fs::write(
                &path,
                gguf_bytes(&[], &[("direction.1", dims, 0, 0)], &data),
            )
            .unwrap();
            let e = LayerVectors::load(&path).unwrap_err().to_string();
            assert!(
                e.contains("cv.gguf")
                    && e.contains("`direction.1` cannot be read")
                    && e.contains(want),
                "{e}"
            );
        }
        let zero = 0u32.to_le_bytes();
        let bytes = gguf_bytes(
            &[("general.alignment", 4, &zero)],
            &[("direction.1", &[4], 0, 0)],
            &data,
        );
        std::fs::write(&path, bytes).unwrap();
        let e = LayerVectors::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("cv.gguf") && e.contains("general.alignment to 0"),
            "{e}"
        );
    }

    #[test]
    fn non_finite_vectors_are_refused_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let st = dir.path().join("nan.safetensors");
            let mut v = LayerVectors::default();
            v.layers.insert(0, vec![1.0, 2.0]);
            v.layers.insert(2, vec![0.0, bad]);
            // Neither writer writes them ...
            let e = v.save(&st).unwrap_err().to_string();
            assert!(e.contains("layer 2") && e.contains("non-finite"), "{e}");
            let opts = ControlVectorOptions {
                model_hint: "llama".into(),
                scale: 1.0,
                layers: None,
            };
            let gguf = dir.path().join("nan.gguf");
            let e = write_control_vector(&v, &opts, &gguf)
                .unwrap_err()
                .to_string();
            assert!(e.contains("non-finite"), "{e}");
            // ... and files other tools wrote are refused on reading.
            let t = Tensor::new(&[0.0f32, bad], &Device::Cpu).unwrap();
            let tensors = [("layer.2", t.clone())];
            std::fs::write(&st, safetensors::serialize(tensors, None).unwrap()).unwrap();
            let e = LayerVectors::load(&st).unwrap_err().to_string();
            assert!(
                e.contains("nan.safetensors") && e.contains("layer 2") && e.contains("index 1"),
                "{e}"
            );
            let q = candle_core::quantized::QTensor::quantize(
                &t,
                candle_core::quantized::GgmlDType::F32,
            )
            .unwrap();
            let mut f = std::fs::File::create(&gguf).unwrap();
            gguf_file::write(&mut f, &[], &[("direction.2", &q)]).unwrap();
            let e = LayerVectors::load(&gguf).unwrap_err().to_string();
            assert!(e.contains("nan.gguf") && e.contains("non-finite"), "{e}");
        }
    }

    #[test]
    fn tensors_of_the_wrong_rank_are_named_with_their_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.safetensors");
        let t = Tensor::zeros((2, 576), candle_core::DType::F32, &Device::Cpu).unwrap();
        std::fs::write(
            &path,
            safetensors::serialize([("layer.3", t)], None).unwrap(),
        )
        .unwrap();
        let e = LayerVectors::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("wide.safetensors") && e.contains("`layer.3` has shape [2, 576]"),
            "{e}"
        );
        assert!(!e.contains("1152"), "{e}");
        let t = Tensor::zeros((2, 3, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        std::fs::write(
            &path,
            safetensors::serialize([("vectors", t)], None).unwrap(),
        )
        .unwrap();
        let e = LayerVectors::load(&path).unwrap_err().to_string();
        assert!(e.contains("[2, 3, 4]") && e.contains("[layers, d]"), "{e}");
    }

    #[test]
    fn garbage_is_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.safetensors");
        std::fs::write(&path, b"not a tensor file").unwrap();
        let err = LayerVectors::load(&path).unwrap_err().to_string();
        assert!(err.contains("junk.safetensors"), "{err}");
    }
}
