//! Safetensors files written atomically ([`AtomicFile`]) and streamed, one tensor's bytes in
//! memory at a time: a whole model need not fit in memory twice, as `safetensors::serialize`
//! would hold it, and `safetensors::serialize_to_file` writes through a temporary file of its own
//! that only its owner can read.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use candle_core::Tensor;
use persona_core::fs::AtomicFile;
use safetensors::{Dtype, View};

use crate::error::{EngineError, Result};

/// A tensor without its bytes: serializing these gives the file's header alone.
struct HeaderOnly<'a>(&'a Tensor);

impl View for HeaderOnly<'_> {
    fn dtype(&self) -> Dtype {
        View::dtype(&self.0)
    }
    fn shape(&self) -> &[usize] {
        self.0.dims()
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&[])
    }
    fn data_len(&self) -> usize {
        View::data_len(&self.0)
    }
}

/// Writes `tensors` and `metadata` to `path`: byte for byte the file `safetensors::serialize`
/// makes, its header written by safetensors itself, then each tensor's bytes where the header
/// places them.
pub(crate) fn write_safetensors(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let header = safetensors::serialize(
        tensors.iter().map(|(name, t)| (name, HeaderOnly(t))),
        Some(metadata),
    )
    .map_err(|e| EngineError::Format {
        context: path.display().to_string(),
        message: format!("cannot write safetensors ({e})"),
    })?;
    let json_len = u64::from_le_bytes(header[..8].try_into().expect("8 bytes")) as usize;
    let entries: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header[8..8 + json_len]).expect("safetensors writes JSON");
    let mut order: Vec<(u64, &Tensor)> = tensors
        .iter()
        .map(|(name, t)| {
            let start = entries[name.as_str()]["data_offsets"][0]
                .as_u64()
                .expect("every tensor has data offsets");
            (start, t)
        })
        .collect();
    order.sort_by_key(|(start, _)| *start);
    let mut out = AtomicFile::create(path)?;
    out.write_all(&header).map_err(|e| out.error(e))?;
    for (_, t) in order {
        out.write_all(&View::data(&t)).map_err(|e| out.error(e))?;
    }
    Ok(out.commit()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn streams_the_same_bytes_safetensors_serializes() {
        let dev = Device::Cpu;
        let mut tensors = HashMap::new();
        for (i, name) in ["model.norm.weight", "lm_head.weight", "a", "model.embed"]
            .iter()
            .enumerate()
        {
            let t = Tensor::arange(0f32, (6 * (i + 1)) as f32, &dev)
                .unwrap()
                .reshape((i + 1, 6))
                .unwrap()
                .to_dtype(DType::BF16)
                .unwrap();
            tensors.insert(name.to_string(), t);
        }
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        write_safetensors(&path, &tensors, metadata.clone()).unwrap();
        let expected = safetensors::serialize(tensors.iter(), Some(metadata)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
