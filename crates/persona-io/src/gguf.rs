//! GGUF containers read with candle's reader, with the checks it lacks: both persona's GGUF
//! readers (model files in persona-engine, control vectors here) go through these, so that a
//! corrupt or hostile file is an error, never a panic or an unbounded allocation.
//!
//! candle 0.11 checks every length its header declares against the file's size, but panics on
//! a `general.alignment` of 0 (a division by zero), overflows when a tensor's dimensions
//! multiply past `usize`, and builds an empty tensor's data from a dangling pointer (undefined
//! behaviour). [`read_header`] and [`tensor_extent`] refuse those before candle sees them.

use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::gguf_file::{Content, TensorInfo};

/// Reads the header (metadata and tensor descriptions) of the GGUF file `reader` holds, from
/// its current position. candle's errors pass through unchanged; a `general.alignment` of 0 is
/// refused with a message saying so.
pub fn read_header<R: Read + Seek>(reader: &mut R) -> candle_core::Result<Content> {
    let start = reader.stream_position()?;
    // Where the dry run cannot follow the header, candle's reader fails too, with its own
    // message: only a zero alignment found on the way is reported here.
    let zero = zero_alignment(reader).unwrap_or(false);
    if zero {
        candle_core::bail!(
            "its metadata sets general.alignment to 0, and tensor data cannot be aligned to 0 bytes (llama.cpp's default is 32): the file is corrupt"
        )
    }
    reader.seek(SeekFrom::Start(start))?;
    Content::read(reader)
}

/// Why a tensor described in a GGUF header cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorProblem {
    /// Its shape has a 0 in it.
    Empty { dims: Vec<usize> },
    /// Its element or byte count does not fit in 64 bits.
    Overflow { dims: Vec<usize> },
    /// Its data would end at `end`, past the end of the file.
    PastEnd { end: Option<u64>, file_len: u64 },
}

impl std::fmt::Display for TensorProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TensorProblem::Empty { dims } => write!(f, "its shape {dims:?} has no elements"),
            TensorProblem::Overflow { dims } => write!(
                f,
                "its shape {dims:?} has more elements than any file can hold"
            ),
            TensorProblem::PastEnd {
                end: Some(end),
                file_len,
            } => write!(
                f,
                "its data would end at byte {end}, past the end of the file ({file_len} bytes)"
            ),
            TensorProblem::PastEnd {
                end: None,
                file_len,
            } => write!(
                f,
                "its offset lies past the end of the file ({file_len} bytes)"
            ),
        }
    }
}

/// The byte range `[start, end)` tensor `info` occupies in a file of `file_len` bytes whose
/// tensor data starts at `data_offset`, checked before candle reads it: at least one element,
/// sizes that fit in 64 bits, data inside the file.
pub fn tensor_extent(
    info: &TensorInfo,
    data_offset: u64,
    file_len: u64,
) -> Result<(u64, u64), TensorProblem> {
    let dims = info.shape.dims();
    let elements = dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .ok_or_else(|| TensorProblem::Overflow {
            dims: dims.to_vec(),
        })?;
    if elements == 0 {
        return Err(TensorProblem::Empty {
            dims: dims.to_vec(),
        });
    }
    let t = info.ggml_dtype;
    // A count that is not a whole number of blocks is candle's to refuse (with the block size).
    let bytes = (elements / t.block_size() as u64)
        .checked_mul(t.type_size() as u64)
        .filter(|&b| usize::try_from(b).is_ok())
        .ok_or_else(|| TensorProblem::Overflow {
            dims: dims.to_vec(),
        })?;
    let start = data_offset.checked_add(info.offset);
    let end = start.and_then(|s| s.checked_add(bytes));
    match (start, end) {
        (Some(start), Some(end)) if end <= file_len => Ok((start, end)),
        _ => Err(TensorProblem::PastEnd { end, file_len }),
    }
}

/// How deeply arrays may nest (candle's own limit).
const MAX_DEPTH: u32 = 64;

/// Walks the metadata as candle will read it and says whether the `general.alignment` it ends
/// up with (the last one, of an integer type candle takes it from) is 0. `None` where the walk
/// cannot follow the header.
fn zero_alignment<R: Read + Seek>(r: &mut R) -> Option<bool> {
    let file_len = {
        let here = r.stream_position().ok()?;
        let len = r.seek(SeekFrom::End(0)).ok()?;
        r.seek(SeekFrom::Start(here)).ok()?;
        len
    };
    let mut w = Walk { r, file_len };
    if !matches!(w.u32()?, 0x4655_4747 | 0x4747_5546) {
        return None;
    }
    let wide = match w.u32()? {
        1 => false,
        2 | 3 => true,
        _ => return None,
    };
    let _tensors = w.len(wide)?;
    let kvs = w.len(wide)?;
    let mut zero = false;
    for _ in 0..kvs {
        let key_len = w.len(wide)?;
        let is_alignment = if key_len == b"general.alignment".len() as u64 {
            let mut key = [0u8; 17];
            w.r.read_exact(&mut key).ok()?;
            &key == b"general.alignment"
        } else {
            w.skip(key_len)?;
            false
        };
        let ty = w.u32()?;
        if is_alignment {
            // candle reads U8, I8, U16, I16, U32 and I32 alignments; others mean the default.
            let value = match ty {
                0 | 1 => Some(w.bytes::<1>()?.iter().all(|&b| b == 0)),
                2 | 3 => Some(w.bytes::<2>()?.iter().all(|&b| b == 0)),
                4 | 5 => Some(w.bytes::<4>()?.iter().all(|&b| b == 0)),
                _ => None,
            };
            match value {
                Some(z) => zero = z,
                None => {
                    zero = false;
                    w.skip_value(ty, wide, 0)?;
                }
            }
        } else {
            w.skip_value(ty, wide, 0)?;
        }
    }
    Some(zero)
}

struct Walk<'a, R> {
    r: &'a mut R,
    file_len: u64,
}

impl<R: Read + Seek> Walk<'_, R> {
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).ok()?;
        Some(b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes::<4>().map(u32::from_le_bytes)
    }

    /// A length: 32 bits in GGUF v1, 64 after.
    fn len(&mut self, wide: bool) -> Option<u64> {
        match wide {
            true => self.bytes::<8>().map(u64::from_le_bytes),
            false => self.u32().map(u64::from),
        }
    }

    /// Skips `n` bytes; `None` if they run past the end of the file.
    fn skip(&mut self, n: u64) -> Option<()> {
        let here = self.r.stream_position().ok()?;
        if n > self.file_len.saturating_sub(here) {
            return None;
        }
        self.r.seek_relative(i64::try_from(n).ok()?).ok()
    }

    fn skip_value(&mut self, ty: u32, wide: bool, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match ty {
            0 | 1 | 7 => self.skip(1),
            2 | 3 => self.skip(2),
            4..=6 => self.skip(4),
            10..=12 => self.skip(8),
            8 => {
                let n = self.len(wide)?;
                self.skip(n)
            }
            9 => {
                let item = self.u32()?;
                let n = self.len(wide)?;
                let fixed = match item {
                    0 | 1 | 7 => Some(1u64),
                    2 | 3 => Some(2),
                    4..=6 => Some(4),
                    10..=12 => Some(8),
                    _ => None,
                };
                match fixed {
                    Some(size) => self.skip(n.checked_mul(size)?),
                    None => {
                        // Each string or array item takes at least a length: a count the file
                        // cannot hold ends the walk at its end.
                        for _ in 0..n {
                            self.skip_value(item, wide, depth + 1)?;
                        }
                        Some(())
                    }
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A GGUF v3 file written byte by byte: `kvs` (key, type, value bytes), then `tensors`
    /// (name, dims as GGUF writes them, ggml type, offset), padded to 32, then `data`.
    pub(crate) fn gguf_bytes(
        kvs: &[(&str, u32, &[u8])],
        tensors: &[(&str, &[u64], u32, u64)],
        data: &[u8],
    ) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
        let string = |b: &mut Vec<u8>, s: &str| {
            b.extend_from_slice(&(s.len() as u64).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        };
        for (key, ty, value) in kvs {
            string(&mut b, key);
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(value);
        }
        for (name, dims, ty, offset) in tensors {
            string(&mut b, name);
            b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in *dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(&offset.to_le_bytes());
        }
        b.resize(b.len().div_ceil(32) * 32, 0);
        b.extend_from_slice(data);
        b
    }

    fn header(bytes: &[u8]) -> candle_core::Result<Content> {
        read_header(&mut std::io::Cursor::new(bytes))
    }

    #[test]
    fn a_zero_alignment_is_refused_and_others_are_read() {
        let string_array: &[u8] = &[
            8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, b'a', 0, 0, 0, 0, 0, 0, 0,
            0,
        ];
        for ty in [0u32, 1, 2, 3, 4, 5] {
            let zero = vec![0u8; [1, 1, 2, 2, 4, 4][ty as usize]];
            let bytes = gguf_bytes(
                &[
                    ("tokens", 9, string_array),
                    ("general.alignment", ty, &zero),
                ],
                &[],
                &[],
            );
            let e = header(&bytes).unwrap_err().to_string();
            assert!(e.contains("general.alignment to 0"), "{e}");
        }
        // The last one counts, as in candle; a 64-bit one is ignored (the default, 32).
        let bytes = gguf_bytes(
            &[
                ("general.alignment", 4, &0u32.to_le_bytes()),
                ("general.alignment", 4, &64u32.to_le_bytes()),
            ],
            &[],
            &[],
        );
        assert!(header(&bytes).is_ok());
        let bytes = gguf_bytes(&[("general.alignment", 10, &0u64.to_le_bytes())], &[], &[]);
        assert_eq!(header(&bytes).unwrap().tensor_data_offset % 32, 0);
        // A header the walk cannot follow is candle's to refuse.
        let bytes = gguf_bytes(&[("general.alignment", 99, &[0])], &[], &[]);
        assert!(header(&bytes)
            .unwrap_err()
            .to_string()
            .contains("value-type"));
    }

    #[test]
    fn tensors_are_checked_against_their_shape_and_the_file() {
        let f32s = [0u8; 16];
        let bytes = gguf_bytes(
            &[],
            &[
                ("ok", &[4], 0, 0),
                ("empty", &[3, 0], 0, 0),
                ("huge", &[1 << 40, 1 << 40], 0, 0),
                ("bytes", &[1 << 62], 0, 0),
                ("late", &[4], 0, 8),
                ("far", &[4], 0, u64::MAX),
            ],
            &f32s,
        );
        let c = header(&bytes).unwrap();
        let len = bytes.len() as u64;
        let at = |name: &str| tensor_extent(&c.tensor_infos[name], c.tensor_data_offset, len);
        assert_eq!(at("ok"), Ok((len - 16, len)));
        assert_eq!(
            at("empty").unwrap_err().to_string(),
            "its shape [0, 3] has no elements"
        );
        for name in ["huge", "bytes"] {
            let e = at(name).unwrap_err().to_string();
            assert!(e.contains("more elements than any file can hold"), "{e}");
        }
        let e = at("late").unwrap_err().to_string();
        assert!(e.contains(&format!("end at byte {}", len + 8)), "{e}");
        let e = at("far").unwrap_err().to_string();
        assert!(e.contains("offset lies past the end"), "{e}");
    }
}
