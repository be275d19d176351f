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
use crate::weights::{RawTensor, TensorSource};

/// The most RoPE angles (context length × head size / 2) the model precomputes: 1M tokens at
/// head size 128, 256 MiB for each of the cos and sin tables.
const MAX_ROPE_ANGLES: usize = 1 << 26;

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
        if n_heads == 0 {
            return Err(self.corrupt(format!("its metadata sets {a}.attention.head_count to 0")));
        }
        let n_kv_heads = self
            .uint(&format!("{a}.attention.head_count_kv"))
            .unwrap_or(n_heads);
        let head_dim = self
            .uint(&format!("{a}.attention.key_length"))
            .unwrap_or_else(|_| d_model / n_heads);
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
        let config = ModelConfig {
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
        };
        self.check_sizes(&config, a)?;
        Ok(config)
    }

    fn corrupt(&self, what: String) -> EngineError {
        EngineError::UnsupportedModel {
            path: self.path.clone(),
            reason: format!("{what}: the file is corrupt"),
        }
    }

    /// Sizes a decoder can be built from. The loader allocates and multiplies by them before
    /// any weight is read, so they are held to what the file can hold: every size at least 1,
    /// query heads in whole groups per KV head, an even head size (RoPE turns pairs), no more
    /// blocks than tensors, no more weights than the file has bits, and RoPE tables of at most
    /// [`MAX_ROPE_ANGLES`].
    fn check_sizes(&self, c: &ModelConfig, a: &str) -> Result<()> {
        let sizes = [
            ("block_count", c.n_layers),
            ("embedding_length", c.d_model),
            ("attention.head_count_kv", c.n_kv_heads),
            (
                "attention.key_length (or embedding_length / head_count)",
                c.head_dim,
            ),
            ("feed_forward_length", c.d_ff),
            ("context_length", c.context_length),
        ];
        if let Some((key, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(self.corrupt(format!("its metadata sets {a}.{key} to 0")));
        }
        if c.vocab_size == 0 {
            return Err(self.corrupt(format!(
                "its vocabulary ({a}.vocab_size, or tokenizer.ggml.tokens) is empty"
            )));
        }
        if !c.n_heads.is_multiple_of(c.n_kv_heads) {
            return Err(self.corrupt(format!(
                "{a}.attention.head_count ({}) is not a multiple of {a}.attention.head_count_kv ({})",
                c.n_heads, c.n_kv_heads
            )));
        }
        if !c.head_dim.is_multiple_of(2) {
            return Err(self.corrupt(format!(
                "the head size {} is odd, and RoPE rotates pairs of dimensions",
                c.head_dim
            )));
        }
        let tensors = self.content.tensor_infos.len();
        if c.n_layers > tensors {
            return Err(self.corrupt(format!(
                "{a}.block_count is {}, but the file holds only {tensors} tensors",
                c.n_layers
            )));
        }
        // ModelConfig::block_parameters and the embedding table, checked: no GGUF type stores
        // a weight in less than a bit.
        let weights = (|| {
            let q = c.n_heads.checked_mul(c.head_dim)?;
            let kv = c.n_kv_heads.checked_mul(c.head_dim)?;
            let attn = c.d_model.checked_mul(q.checked_add(kv)?.checked_mul(2)?)?;
            let mlp = c.d_model.checked_mul(c.d_ff)?.checked_mul(3)?;
            let blocks = attn.checked_add(mlp)?.checked_mul(c.n_layers)?;
            blocks.checked_add(c.vocab_size.checked_mul(c.d_model)?)
        })();
        if weights.is_none_or(|w| w as u64 > self.file_len.saturating_mul(8)) {
            return Err(self.corrupt(format!(
                "its metadata ({} blocks of width {}, {} query and {} KV heads of size {}, feed-forward width {}, {} tokens) describes more weights than its {} bytes can hold",
                c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.head_dim, c.d_ff, c.vocab_size, self.file_len
            )));
        }
        let angles = c.context_length.checked_mul(c.head_dim / 2);
        if angles.is_none_or(|n| n > MAX_ROPE_ANGLES) {
            return Err(EngineError::UnsupportedModel {
                path: self.path.clone(),
                reason: format!(
                    "{a}.context_length is {} tokens; with heads of size {} persona's RoPE tables would hold more than {MAX_ROPE_ANGLES} angles (about 1M tokens at head size 128), so the file is corrupt or its context is longer than persona supports",
                    c.context_length, c.head_dim
                ),
            });
        }
        Ok(())
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

    /// A one-block llama of width 8 (2 heads of 4, 1 KV head, feed-forward 16, 4 tokens, 64
    /// positions), f32, with `changes` made to its metadata.
    fn tiny_model(changes: &[(&str, gguf_file::Value)]) -> Vec<u8> {
        use gguf_file::Value;
        let mut meta: Vec<(String, Value)> = vec![
            ("general.architecture".into(), Value::String("llama".into())),
            ("llama.block_count".into(), Value::U32(1)),
            ("llama.context_length".into(), Value::U32(64)),
            ("llama.embedding_length".into(), Value::U32(8)),
            ("llama.feed_forward_length".into(), Value::U32(16)),
            ("llama.attention.head_count".into(), Value::U32(2)),
            ("llama.attention.head_count_kv".into(), Value::U32(1)),
            ("llama.vocab_size".into(), Value::U32(4)),
        ];
        for (key, value) in changes {
            meta.retain(|(k, _)| k != key);
            meta.push((key.to_string(), value.clone()));
        }
        let w = |dims: &[usize]| {
            let t = Tensor::zeros(dims, candle_core::DType::F32, &Device::Cpu).unwrap();
            QTensor::quantize(&t, GgmlDType::F32).unwrap()
        };
        let tensors = [
            ("token_embd.weight", w(&[4, 8])),
            ("output_norm.weight", w(&[8])),
            ("blk.0.attn_norm.weight", w(&[8])),
            ("blk.0.ffn_norm.weight", w(&[8])),
            ("blk.0.attn_q.weight", w(&[8, 8])),
            ("blk.0.attn_k.weight", w(&[4, 8])),
            ("blk.0.attn_v.weight", w(&[4, 8])),
            ("blk.0.attn_output.weight", w(&[8, 8])),
            ("blk.0.ffn_gate.weight", w(&[16, 8])),
            ("blk.0.ffn_up.weight", w(&[16, 8])),
            ("blk.0.ffn_down.weight", w(&[8, 16])),
        ];
        let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (*k, t)).collect();
        let mut out = std::io::Cursor::new(Vec::new());
        gguf_file::write(&mut out, &meta, &tensors).unwrap();
        out.into_inner()
    }

    /// Found by fuzzing (`fuzz/`, target gguf_model): `llama.block_count` changed from 1 to
    /// 0x900001 in an otherwise valid model made the loader reserve 10 GB for the block list
    /// before reading a weight. Sizes like it, zero sizes (a zero head count divided by zero)
    /// and products past 64 bits are refused when the configuration is read.
    #[test]
    fn sizes_the_file_cannot_hold_are_refused_before_loading() {
        use gguf_file::Value;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        let config = |changes: &[(&str, Value)]| {
            std::fs::write(&path, tiny_model(changes)).unwrap();
            GgufFile::open(&path, &Device::Cpu).unwrap().config()
        };
        let c = config(&[]).unwrap();
        assert_eq!((c.n_layers, c.d_model, c.head_dim), (1, 8, 4));
        let cases = [
            (
                "llama.block_count",
                Value::U32(0x90_0001),
                "llama.block_count is 9437185, but the file holds only 11 tensors",
            ),
            (
                "llama.attention.head_count",
                Value::U32(0),
                "sets llama.attention.head_count to 0",
            ),
            (
                "llama.block_count",
                Value::U64(0),
                "sets llama.block_count to 0",
            ),
            ("llama.vocab_size", Value::U32(0), "vocabulary"),
            (
                "llama.attention.head_count_kv",
                Value::U32(3),
                "head_count (2) is not a multiple of llama.attention.head_count_kv (3)",
            ),
            (
                "llama.attention.key_length",
                Value::U32(5),
                "head size 5 is odd",
            ),
            (
                "llama.embedding_length",
                Value::U64(1 << 40),
                "describes more weights than its",
            ),
            (
                "llama.feed_forward_length",
                Value::U64(u64::MAX >> 1),
                "describes more weights than its",
            ),
            (
                "llama.context_length",
                Value::U64(1 << 40),
                "RoPE tables would hold more than 67108864 angles",
            ),
        ];
        for (key, value, want) in cases {
            let e = config(&[(key, value)]).err().unwrap().to_string();
            assert!(e.contains("model.gguf") && e.contains(want), "{key}: {e}");
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
