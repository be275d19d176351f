//! Reading tensors out of PyTorch `torch.save` files (a zip holding `data.pkl` and raw
//! storages), including bare tensors and `{"key": tensor}` dicts, which candle's own reader
//! (state dicts only) skips. Only the pickle's top object is walked; nothing is executed.
//!
//! Every size the file declares is checked before anything is allocated: the pickle against
//! a budget of objects ([`pickle_budget`]), the tensor's shape against its storage and the
//! storage against the zip entry that holds it.

use std::io::Read;
use std::path::Path;

use candle_core::pickle::{Object, Stack};

use crate::pickle_budget::check_pickle;
use crate::IoError;

/// A tensor file's pickle is a few hundred bytes per tensor; anything near this is not one.
const MAX_PICKLE_BYTES: u64 = 64 << 20;

fn bad(path: &Path, reason: impl Into<String>) -> IoError {
    IoError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The element types a vector can be stored in.
#[derive(Debug, Clone, Copy)]
enum Element {
    F64,
    F32,
    F16,
    BF16,
}

impl Element {
    fn from_storage(class: &str) -> Option<Self> {
        match class {
            "DoubleStorage" => Some(Self::F64),
            "FloatStorage" => Some(Self::F32),
            "HalfStorage" => Some(Self::F16),
            "BFloat16Storage" => Some(Self::BF16),
            _ => None,
        }
    }

    fn size(self) -> usize {
        match self {
            Self::F64 => 8,
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
        }
    }

    fn decode(self, c: &[u8]) -> f32 {
        match self {
            Self::F64 => f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32,
            Self::F32 => f32::from_le_bytes(c.try_into().expect("4 bytes")),
            Self::F16 => half::f16::from_le_bytes([c[0], c[1]]).to_f32(),
            Self::BF16 => half::bf16::from_le_bytes([c[0], c[1]]).to_f32(),
        }
    }
}

/// What `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)` says.
#[derive(Debug)]
struct StoredTensor {
    /// The storage's name inside the archive's `data/` folder.
    key: String,
    element: Element,
    /// Elements the storage declares.
    storage_len: usize,
    /// Where the tensor starts in its storage, in elements.
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

fn class_name(obj: &Object) -> Option<(&str, &str)> {
    match obj {
        Object::Class {
            module_name,
            class_name,
        } => Some((module_name, class_name)),
        _ => None,
    }
}

fn count(obj: &Object) -> Option<usize> {
    match obj {
        Object::Int(n) => usize::try_from(*n).ok(),
        Object::Long(n) => usize::try_from(*n).ok(),
        _ => None,
    }
}

fn counts(obj: &Object) -> Option<Vec<usize>> {
    match obj {
        Object::Tuple(items) => items.iter().map(count).collect(),
        _ => None,
    }
}

/// The tensor a pickled object rebuilds (plain tensors, `nn.Parameter`s and tensor
/// subclasses), or why it is not one.
fn stored_tensor(obj: &Object) -> Result<StoredTensor, String> {
    let not_tensor = || "the saved object is not a tensor".to_string();
    let Object::Reduce { callable, args } = obj else {
        return Err(not_tensor());
    };
    let Object::Tuple(args) = args.as_ref() else {
        return Err(not_tensor());
    };
    match class_name(callable).ok_or_else(not_tensor)? {
        ("torch._utils", "_rebuild_tensor_v2") => {}
        ("torch._utils", "_rebuild_parameter") => {
            return stored_tensor(args.first().ok_or_else(not_tensor)?)
        }
        ("torch._tensor", "_rebuild_from_type_v2") => {
            // (func, type, func's args, state): rebuild the inner call.
            return match args.as_slice() {
                [func, _, inner, ..] => stored_tensor(&Object::Reduce {
                    callable: Box::new(func.clone()),
                    args: Box::new(inner.clone()),
                }),
                _ => Err(not_tensor()),
            };
        }
        (module, name) => {
            return Err(format!(
                "the saved object is a `{module}.{name}`, not a tensor"
            ))
        }
    }
    let malformed = |what: &str| format!("the tensor's {what} is malformed");
    let [storage, offset, shape, stride, ..] = args.as_slice() else {
        return Err(malformed("rebuild call"));
    };
    let Object::PersistentLoad(storage) = storage else {
        return Err(malformed("storage"));
    };
    let Object::Tuple(storage) = storage.as_ref() else {
        return Err(malformed("storage"));
    };
    let [_, class, Object::Unicode(key), _, storage_len, ..] = storage.as_slice() else {
        return Err(malformed("storage"));
    };
    let (_, class) = class_name(class).ok_or_else(|| malformed("storage type"))?;
    let element = Element::from_storage(class).ok_or_else(|| {
        format!(
            "it stores a `{class}`, not floating-point vectors (float, double, half or bfloat16)"
        )
    })?;
    Ok(StoredTensor {
        key: key.clone(),
        element,
        storage_len: count(storage_len).ok_or_else(|| malformed("storage size"))?,
        offset: count(offset).ok_or_else(|| malformed("offset"))?,
        shape: counts(shape).ok_or_else(|| malformed("shape"))?,
        stride: counts(stride).ok_or_else(|| malformed("stride"))?,
    })
}

/// The 2-D tensor stored in `path` (bare, or under `key` of a top-level dict, `axis` by
/// default), as f32 rows. Non-finite values are refused.
pub fn read_pt_matrix(path: &Path, key: Option<&str>) -> Result<Vec<Vec<f32>>, IoError> {
    let file = std::fs::File::open(path).map_err(|e| IoError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| bad(path, format!("not a torch.save zip file ({e})")))?;
    let pkl = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| bad(path, "no data.pkl inside (not a torch.save file)"))?;
    let dir = pkl.strip_suffix("data.pkl").expect("ends with data.pkl");
    let pickle = {
        let entry = zip.by_name(&pkl).map_err(|e| bad(path, e.to_string()))?;
        if entry.size() > MAX_PICKLE_BYTES {
            return Err(bad(
                path,
                format!(
                    "its data.pkl is {} bytes; a tensor file's pickle is a few kilobytes",
                    entry.size()
                ),
            ));
        }
        let mut bytes = Vec::new();
        entry
            .take(MAX_PICKLE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(path, format!("unreadable data.pkl ({e})")))?;
        bytes
    };
    check_pickle(&pickle).map_err(|e| bad(path, format!("unreadable pickle ({e})")))?;
    let mut stack = Stack::empty();
    stack
        .read_loop(&mut pickle.as_slice())
        .map_err(|e| bad(path, format!("unreadable pickle ({e})")))?;
    let top = stack
        .finalize()
        .map_err(|e| bad(path, format!("unreadable pickle ({e})")))?;
    let wanted = key.unwrap_or("axis");
    let obj = match &top {
        Object::Dict(items) => items
            .iter()
            .find(|(name, _)| matches!(name, Object::Unicode(n) if n == wanted))
            .map(|(_, v)| v)
            .ok_or_else(|| match key {
                Some(k) => bad(path, format!("no `{k}` entry in the saved dict")),
                // The Assistant-Axis loader also accepts `{"axis": tensor}`.
                None => bad(
                    path,
                    "it holds a dict without an `axis` entry, not a bare tensor; name the entry to read",
                ),
            })?,
        obj => obj,
    };
    let t = stored_tensor(obj).map_err(|e| bad(path, e))?;
    let [rows, cols] = t.shape[..] else {
        return Err(bad(
            path,
            format!("expected a [layers, d] matrix, found shape {:?}", t.shape),
        ));
    };
    if rows == 0 || cols == 0 {
        return Err(bad(
            path,
            format!("the saved tensor is empty (shape {:?})", t.shape),
        ));
    }
    if t.stride != [cols, 1] && !(rows == 1 && t.stride[1] == 1) {
        return Err(bad(
            path,
            format!(
                "the saved tensor is not contiguous (stride {:?}); save `t.contiguous()`",
                t.stride
            ),
        ));
    }
    let size = t.element.size();
    let storage_bytes = t.storage_len.checked_mul(size);
    let end = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_add(t.offset))
        .filter(|&end| end <= t.storage_len);
    let (Some(end), Some(storage_bytes)) = (end, storage_bytes) else {
        return Err(bad(
            path,
            format!(
                "its tensor of shape {:?} at offset {} does not fit in its storage of {} elements",
                t.shape, t.offset, t.storage_len
            ),
        ));
    };
    let storage_name = format!("{dir}data/{}", t.key);
    let entry = zip
        .by_name(&storage_name)
        .map_err(|e| bad(path, format!("missing storage {storage_name} ({e})")))?;
    // A zip entry cannot hold more than the file (stored entries, as torch writes them) or
    // than deflate's best ratio of the file (compressed ones).
    let entry_limit = match entry.compression() {
        zip::CompressionMethod::Stored => file_len,
        _ => file_len.saturating_mul(1032),
    };
    if (storage_bytes as u64) > entry.size() || entry.size() > entry_limit {
        return Err(bad(
            path,
            format!(
                "its storage declares {} elements ({storage_bytes} bytes) but {storage_name} holds {} bytes; the file is truncated or corrupt",
                t.storage_len,
                entry.size()
            ),
        ));
    }
    let mut bytes = Vec::new();
    let start = (t.offset * size) as u64;
    let mut entry = entry;
    std::io::copy(&mut entry.by_ref().take(start), &mut std::io::sink())
        .map_err(|e| bad(path, format!("unreadable storage ({e})")))?;
    let wanted_bytes = ((end - t.offset) * size) as u64;
    entry
        .take(wanted_bytes)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(path, format!("unreadable storage ({e})")))?;
    if bytes.len() as u64 != wanted_bytes {
        return Err(bad(
            path,
            format!(
                "the tensor data is truncated ({} of {wanted_bytes} bytes)",
                bytes.len()
            ),
        ));
    }
    let values: Vec<f32> = bytes
        .chunks_exact(size)
        .map(|c| t.element.decode(c))
        .collect();
    if let Some(i) = values.iter().position(|x| !x.is_finite()) {
        return Err(bad(
            path,
            format!(
                "row {}, column {} is {}; persona refuses non-finite vectors (was the file written from a diverged run?)",
                i / cols,
                i % cols,
                values[i]
            ),
        ));
    }
    Ok(values.chunks(cols).map(|r| r.to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data as data;
    use crate::torch_save::{torch_save, torch_save_pickle, Saved, Storage};

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

    #[test]
    fn declared_sizes_beyond_the_file_are_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lies.pt");
        let values = [0.5f32; 12];
        // A 10^12-element storage (4 TB) behind a 48-byte entry.
        let huge = Saved {
            storage_len: 1_000_000_000_000,
            ..Saved::new(4, 3, Storage::F32, &values)
        };
        torch_save(&path, &huge);
        let e = read_pt_matrix(&path, None).unwrap_err().to_string();
        assert!(
            e.contains("lies.pt") && e.contains("truncated or corrupt") && e.contains("48 bytes"),
            "{e}"
        );
        // 10^12 rows in a storage of 12 elements, and a shape whose size overflows.
        for rows in [1_000_000_000_000, usize::MAX / 2] {
            torch_save(&path, &Saved::new(rows, 3, Storage::F32, &values));
            let e = read_pt_matrix(&path, None).unwrap_err().to_string();
            assert!(e.contains("does not fit in its storage of 12"), "{e}");
        }
    }

    /// Found by fuzzing (`fuzz/`, target pt_pickle): a `data.pkl` of the 5 bytes
    /// `X ff ff ff ff` (a string declaring 4 GiB) made candle allocate 4 GiB.
    #[test]
    fn a_pickle_declaring_more_than_it_holds_is_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.pt");
        torch_save_pickle(&path, b"X\xff\xff\xff\xff", &[0; 48]);
        let e = read_pt_matrix(&path, None).unwrap_err().to_string();
        assert!(
            e.contains("bomb.pt")
                && e.contains("unreadable pickle")
                && e.contains("declares 4294967295 bytes, but only 0 are left"),
            "{e}"
        );
    }

    #[test]
    fn non_finite_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad_value in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let path = dir.path().join("nan.pt");
            let mut values = vec![0.5; 6];
            values[4] = bad_value;
            torch_save(&path, &Saved::new(2, 3, Storage::F32, &values));
            let e = read_pt_matrix(&path, None).unwrap_err().to_string();
            assert!(
                e.contains("nan.pt") && e.contains("row 1, column 1") && e.contains("non-finite"),
                "{e}"
            );
        }
    }
}
