//! Loading GGUF files: configuration and tokenizer from the metadata, tensors on demand.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::Device;
use persona_tokenizer::GgufVocab;

use crate::config::{Family, ModelConfig, RopeStyle};
use crate::error::{without_backtrace, EngineError, Result};
use crate::model::TensorSource;
use crate::weights::RawTensor;

pub(crate) struct GgufFile {
    path: PathBuf,
    file_len: u64,
    reader: BufReader<File>,
    content: Content,
    device: Device,
}

impl GgufFile {
    pub(crate) fn open(path: &Path, device: &Device) -> Result<Self> {
        let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
        let unsupported = |reason: String| EngineError::UnsupportedModel {
            path: path.to_path_buf(),
            reason,
        };
        if file_len == 0 {
            return Err(unsupported(
                "the file is empty (0 bytes): download it again (`persona setup` for the known models) or check the path".into(),
            ));
        }
        let mut reader = BufReader::new(file);
        let content = persona_io::gguf::read_header(&mut reader).map_err(|e| match without_backtrace(e) {
            candle_core::Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                unsupported(format!(
                    "the file ends inside its GGUF header after {file_len} bytes: it is truncated; download it again"
                ))
            }
            // candle's bounds checks: a size the header declares runs past the end.
            e if e.to_string().contains("remaining") => unsupported(format!(
                "the file is truncated or corrupt: its header declares more than its {file_len} bytes hold ({e}); download it again"
            )),
            e => unsupported(format!("not a readable GGUF file ({e})")),
        })?;
        Ok(GgufFile {
            file_len,
            path: path.to_path_buf(),
            reader,
            content,
            device: device.clone(),
        })
    }

    fn meta(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn missing(&self, key: &str) -> EngineError {
        EngineError::MissingMetadata {
            path: self.path.clone(),
            key: key.to_string(),
        }
    }

    fn uint(&self, key: &str) -> Result<usize> {
        self.meta(key)
            .and_then(value_as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| self.missing(key))
    }

    fn float(&self, key: &str) -> Option<f64> {
        match self.meta(key)? {
            Value::F32(v) => Some(*v as f64),
            Value::F64(v) => Some(*v),
            other => value_as_u64(other).map(|v| v as f64),
        }
    }

    fn string(&self, key: &str) -> Option<&str> {
        match self.meta(key)? {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        match self.meta(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(self.missing(key)),
                })
                .collect(),
            _ => Err(self.missing(key)),
        }
    }

    pub(crate) fn config(&self) -> Result<ModelConfig> {
        let arch_name = self
            .string("general.architecture")
            .ok_or_else(|| self.missing("general.architecture"))?
            .to_string();
        let family = Family::parse(&arch_name).ok_or_else(|| EngineError::UnsupportedModel {
            path: self.path.clone(),
            reason: format!(
                "architecture `{arch_name}` is not supported; supported: {}",
                Family::SUPPORTED
            ),
        })?;
        let a = &arch_name;
        let d_model = self.uint(&format!("{a}.embedding_length"))?;
        let n_heads = self.uint(&format!("{a}.attention.head_count"))?;
        let n_kv_heads = self
            .uint(&format!("{a}.attention.head_count_kv"))
            .unwrap_or(n_heads);
        let head_dim = self
            .uint(&format!("{a}.attention.key_length"))
            .unwrap_or(d_model / n_heads);
        let vocab_size = match self.uint(&format!("{a}.vocab_size")) {
            Ok(v) => v,
            Err(_) => self.strings("tokenizer.ggml.tokens")?.len(),
        };
        let has_output = self.content.tensor_infos.contains_key("output.weight");
        let qkv_bias = self.content.tensor_infos.contains_key("blk.0.attn_q.bias");
        let qk_norm = self
            .content
            .tensor_infos
            .contains_key("blk.0.attn_q_norm.weight");
        if self.content.tensor_infos.contains_key("rope_freqs.weight") {
            return Err(EngineError::UnsupportedModel {
                path: self.path.clone(),
                reason: "per-dimension RoPE frequency factors (rope_freqs.weight, Llama 3.1+) are not supported yet in GGUF files; load the Hugging Face folder instead".into(),
            });
        }
        Ok(ModelConfig {
            family,
            name: self
                .string("general.name")
                .unwrap_or("unnamed model")
                .to_string(),
            n_layers: self.uint(&format!("{a}.block_count"))?,
            d_model,
            n_heads,
            n_kv_heads,
            head_dim,
            d_ff: self.uint(&format!("{a}.feed_forward_length"))?,
            vocab_size,
            rope_theta: self
                .float(&format!("{a}.rope.freq_base"))
                .unwrap_or(10_000.0),
            // llama.cpp permutes q/k of `llama` files for the interleaved rope; Qwen files use NeoX.
            rope_style: match family {
                Family::Llama | Family::Mistral => RopeStyle::Interleaved,
                Family::Qwen2 | Family::Qwen3 => RopeStyle::Half,
            },
            rope_scaling: None,
            rms_eps: self
                .float(&format!("{a}.attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-5),
            qkv_bias,
            qk_norm,
            tied_embeddings: !has_output,
            context_length: self.uint(&format!("{a}.context_length")).unwrap_or(4096),
        })
    }

    pub(crate) fn vocab(&self) -> Result<GgufVocab> {
        let token_types = match self.meta("tokenizer.ggml.token_type") {
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| value_as_i64(v).map(|x| x as i32))
                    .collect::<Option<Vec<i32>>>()
                    .ok_or_else(|| self.missing("tokenizer.ggml.token_type"))?,
            ),
            _ => None,
        };
        let id = |key: &str| self.meta(key).and_then(value_as_u64).map(|v| v as u32);
        Ok(GgufVocab {
            model: self
                .string("tokenizer.ggml.model")
                .ok_or_else(|| self.missing("tokenizer.ggml.model"))?
                .to_string(),
            pre: self.string("tokenizer.ggml.pre").map(str::to_string),
            tokens: self.strings("tokenizer.ggml.tokens")?,
            merges: self.strings("tokenizer.ggml.merges").unwrap_or_default(),
            token_types,
            bos_id: id("tokenizer.ggml.bos_token_id"),
            eos_id: id("tokenizer.ggml.eos_token_id"),
            add_bos: matches!(
                self.meta("tokenizer.ggml.add_bos_token"),
                Some(Value::Bool(true))
            ),
        })
    }

    pub(crate) fn chat_template(&self) -> Option<String> {
        self.string("tokenizer.chat_template").map(str::to_string)
    }

    /// All metadata except the large token arrays, for `persona info`.
    pub(crate) fn small_metadata(&self) -> HashMap<String, String> {
        self.content
            .metadata
            .iter()
            .filter(|(k, _)| {
                !k.starts_with("tokenizer.ggml.") && k.as_str() != "tokenizer.chat_template"
            })
            .map(|(k, v)| (k.clone(), format!("{v:?}")))
            .collect()
    }
}

impl TensorSource for GgufFile {
    fn take(&mut self, name: &str) -> Result<Option<RawTensor>> {
        let Some(info) = self.content.tensor_infos.get(name) else {
            return Ok(None);
        };
        use persona_io::gguf::{tensor_extent, TensorProblem};
        // Checked before candle reads it: candle multiplies the dimensions unchecked and
        // mishandles empty tensors.
        let extent = tensor_extent(info, self.content.tensor_data_offset, self.file_len);
        if let Err(problem) = extent {
            let reason = match problem {
                TensorProblem::PastEnd { .. } => format!(
                    "the file is truncated: tensor `{name}` lies beyond its end ({} bytes); download it again",
                    self.file_len
                ),
                problem => format!("tensor `{name}` cannot be read: {problem}; the file is corrupt"),
            };
            return Err(EngineError::UnsupportedModel {
                path: self.path.clone(),
                reason,
            });
        }
        let q = self
            .content
            .tensor(&mut self.reader, name, &self.device)
            .map_err(|e| EngineError::UnsupportedModel {
                path: self.path.clone(),
                reason: format!("cannot read tensor `{name}` ({})", without_backtrace(e)),
            })?;
        Ok(Some(RawTensor::Quant(q)))
    }

    fn describe(&self) -> PathBuf {
        self.path.clone()
    }

    fn config_origin(&self) -> &'static str {
        "the file's metadata (embedding_length, feed_forward_length, the head counts)"
    }
}

/// GGUF writers disagree on integer widths; accept any non-negative integer.
fn value_as_u64(v: &Value) -> Option<u64> {
    value_as_i64(v).and_then(|x| u64::try_from(x).ok())
}

fn value_as_i64(v: &Value) -> Option<i64> {
    Some(match v {
        Value::U8(x) => *x as i64,
        Value::I8(x) => *x as i64,
        Value::U16(x) => *x as i64,
        Value::I16(x) => *x as i64,
        Value::U32(x) => *x as i64,
        Value::I32(x) => *x as i64,
        Value::U64(x) => i64::try_from(*x).ok()?,
        Value::I64(x) => *x,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    use candle_core::Tensor;

    /// A GGUF file holding the f32 tensors `names` (4 elements each), as candle writes it,
    /// then with the dimensions of `patched` overwritten (GGUF order) to `dims`.
    fn file_with(names: &[&str], patched: &str, dims: [u64; 2]) -> Vec<u8> {
        let t = Tensor::new(&[[0.5f32, 1.0], [1.5, 2.0]], &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::F32).unwrap();
        let tensors: Vec<(&str, &QTensor)> = names.iter().map(|&n| (n, &q)).collect();
        let mut out = std::io::Cursor::new(Vec::new());
        gguf_file::write(&mut out, &[], &tensors).unwrap();
        let mut bytes = out.into_inner();
        // The name, then the number of dimensions (u32), then each dimension (u64).
        let at = bytes
            .windows(patched.len())
            .position(|w| w == patched.as_bytes())
            .unwrap()
            + patched.len()
            + 4;
        for (i, d) in dims.iter().enumerate() {
            bytes[at + 8 * i..at + 8 * i + 8].copy_from_slice(&d.to_le_bytes());
        }
        bytes
    }

    /// Found by fuzzing (`fuzz/`, target gguf_model): a weight whose dimensions multiply past
    /// 64 bits panicked on the overflow (debug builds) or wrapped to a small size (release
    /// builds) before anything was checked. An empty weight reached candle, which builds its
    /// data from a dangling pointer.
    #[test]
    fn weights_of_impossible_or_empty_shapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        let names = ["blk.0.attn_q.weight", "token_embd.weight"];
        let cases = [
            (
                [1 << 40, 1 << 40],
                "has more elements than any file can hold",
            ),
            ([2, 0], "shape [0, 2] has no elements"),
            ([2, 1 << 20], "is truncated"),
        ];
        for (dims, want) in cases {
            std::fs::write(&path, file_with(&names, names[0], dims)).unwrap();
            let mut f = GgufFile::open(&path, &Device::Cpu).unwrap();
            assert!(f.take("token_embd.weight").unwrap().is_some());
            let e = f.take(names[0]).err().unwrap().to_string();
            assert!(
                e.contains("model.gguf") && e.contains("`blk.0.attn_q.weight`") && e.contains(want),
                "{e}"
            );
        }
    }

    /// A `general.alignment` of 0 made candle's header reader divide by zero.
    #[test]
    fn a_zero_alignment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        let mut out = std::io::Cursor::new(Vec::new());
        let zero = gguf_file::Value::U32(0);
        gguf_file::write(&mut out, &[("general.alignment", &zero)], &[]).unwrap();
        std::fs::write(&path, out.into_inner()).unwrap();
        let e = GgufFile::open(&path, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("model.gguf") && e.contains("general.alignment to 0"),
            "{e}"
        );
    }
}
