//! Reading tensors out of PyTorch `torch.save` files (a zip holding `data.pkl` and raw
//! storages), including bare tensors and `{"key": tensor}` dicts, which candle's own reader
//! (state dicts only) skips. Only the pickle's top object is walked; nothing is executed.

use std::io::Read;
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::DType;

use crate::IoError;

fn bad(path: &Path, reason: impl Into<String>) -> IoError {
    IoError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The 2-D tensor stored in `path` (bare, or under `key` of a top-level dict, `axis` by
/// default), as f32 rows.
pub fn read_pt_matrix(path: &Path, key: Option<&str>) -> Result<Vec<Vec<f32>>, IoError> {
    let file = std::fs::File::open(path).map_err(|e| IoError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| bad(path, format!("not a torch.save zip file ({e})")))?;
    let pkl = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| bad(path, "no data.pkl inside (not a torch.save file)"))?;
    let dir = Path::new(pkl.strip_suffix(".pkl").expect("ends with .pkl")).to_path_buf();
    let mut stack = Stack::empty();
    {
        let entry = zip.by_name(&pkl).map_err(|e| bad(path, e.to_string()))?;
        stack
            .read_loop(&mut std::io::BufReader::new(entry))
            .map_err(|e| bad(path, format!("unreadable pickle ({e})")))?;
    }
    let top = stack
        .finalize()
        .map_err(|e| bad(path, format!("unreadable pickle ({e})")))?;
    let obj = match (top, key) {
        (Object::Dict(items), Some(k)) => items
            .into_iter()
            .find(|(name, _)| *name == Object::Unicode(k.to_string()))
            .map(|(_, v)| v)
            .ok_or_else(|| bad(path, format!("no `{k}` entry in the saved dict")))?,
        // The Assistant-Axis loader also accepts `{"axis": tensor}`.
        (Object::Dict(items), None) => items
            .into_iter()
            .find(|(name, _)| *name == Object::Unicode("axis".into()))
            .map(|(_, v)| v)
            .ok_or_else(|| {
                bad(
                    path,
                    "it holds a dict without an `axis` entry, not a bare tensor; name the entry to read",
                )
            })?,
        (obj, _) => obj,
    };
    let info = obj
        .into_tensor_info(Object::Unicode("tensor".into()), &dir)
        .map_err(|e| bad(path, e.to_string()))?
        .ok_or_else(|| bad(path, "the saved object is not a tensor"))?;
    if !info.layout.is_contiguous() {
        return Err(bad(path, "the saved tensor is not contiguous"));
    }
    let dims = info.layout.dims().to_vec();
    if dims.len() != 2 {
        return Err(bad(
            path,
            format!("expected a [layers, d] matrix, found shape {dims:?}"),
        ));
    }
    let mut entry = zip
        .by_name(&info.path)
        .map_err(|e| bad(path, format!("missing storage {} ({e})", info.path)))?;
    let size = info.dtype.size_in_bytes();
    // candle's reader already counts this offset in bytes.
    let skip = info.layout.start_offset() as u64;
    std::io::copy(&mut entry.by_ref().take(skip), &mut std::io::sink())
        .map_err(|e| bad(path, e.to_string()))?;
    let (rows, cols) = (dims[0], dims[1]);
    if rows == 0 || cols == 0 {
        return Err(bad(
            path,
            format!("the saved tensor is empty (shape {dims:?})"),
        ));
    }
    let mut bytes = vec![0u8; rows * cols * size];
    entry
        .read_exact(&mut bytes)
        .map_err(|e| bad(path, format!("the tensor data is truncated ({e})")))?;
    let values: Vec<f32> = match info.dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => {
            return Err(bad(
                path,
                format!("tensor dtype {other:?} is not a floating-point vector type"),
            ))
        }
    };
    let t = values.chunks(cols).map(|r| r.to_vec()).collect();
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data as data;

    fn expected() -> Vec<Vec<f32>> {
        (0..4)
            .map(|r| (0..3).map(|c| (r * 3 + c) as f32 / 4.0 - 1.0).collect())
            .collect()
    }

    #[test]
    fn reads_tensors_written_by_pytorch() {
        assert_eq!(
            read_pt_matrix(&data("bare_f32_4x3.pt"), None).unwrap(),
            expected()
        );
        // These values are exact in bf16.
        assert_eq!(
            read_pt_matrix(&data("bare_bf16_4x3.pt"), None).unwrap(),
            expected()
        );
        assert_eq!(
            read_pt_matrix(&data("dict_axis_4x3.pt"), Some("axis")).unwrap(),
            expected()
        );
        assert_eq!(
            read_pt_matrix(&data("view_f32_2x3.pt"), None).unwrap(),
            expected()[1..3].to_vec()
        );
    }

    #[test]
    fn wrong_inputs_are_named() {
        assert_eq!(
            read_pt_matrix(&data("dict_axis_4x3.pt"), None).unwrap(),
            expected()
        );
        let e = read_pt_matrix(&data("dict_axis_4x3.pt"), Some("vector"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`vector`"), "{e}");
        let e = read_pt_matrix(&data("README.md"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("README.md") && e.contains("zip"), "{e}");
    }
}
