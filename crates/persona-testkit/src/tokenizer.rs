//! A GGUF's tokenizer metadata and chat template read with candle's GGUF reader alone, and the
//! model files the tokenizer's tests read, so those tests exercise the tokenizer crate without
//! the engine's own GGUF loading.

use std::path::PathBuf;

use candle_core::quantized::gguf_file::{Content, Value};
use persona_tokenizer::{ChatTemplate, GgufVocab, Tokenizer};

/// The models folder of the cache `persona setup` fills.
pub fn models_dir() -> PathBuf {
    persona_models::ModelCache::from_env()
        .expect("a cache folder")
        .models_dir()
}

/// The default model; a missing file fails the test, since every check here depends on it.
pub fn smollm_gguf() -> PathBuf {
    let path = models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "the default model {} is missing: run `persona setup` (or set PERSONA_HOME) first",
        path.display()
    );
    path
}

/// A GGUF's tokenizer metadata and chat template.
pub struct GgufTokenizerMeta {
    pub vocab: GgufVocab,
    pub chat_template: String,
}

impl GgufTokenizerMeta {
    pub fn tokenizer(&self) -> Tokenizer {
        Tokenizer::from_gguf_vocab(&self.vocab).expect("tokenizer from GGUF vocab")
    }

    /// The GGUF's template with its BOS/EOS strings, as llama.cpp and HF would set them up.
    pub fn template(&self) -> ChatTemplate {
        let token = |id: Option<u32>| {
            id.map(|id| self.vocab.tokens[id as usize].clone())
                .unwrap_or_default()
        };
        ChatTemplate::new(
            &self.chat_template,
            &token(self.vocab.bos_id),
            &token(self.vocab.eos_id),
        )
        .expect("GGUF chat template compiles")
    }
}

pub fn read_gguf(path: &std::path::Path) -> GgufTokenizerMeta {
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let content = Content::read(&mut file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let md = &content.metadata;
    let string = |key: &str| md.get(key).and_then(|v| v.to_string().ok()).cloned();
    let strings = |key: &str| -> Vec<String> {
        md.get(key)
            .and_then(|v| v.to_vec().ok())
            .map(|vs| {
                vs.iter()
                    .filter_map(|v| v.to_string().ok().cloned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let pre = string("tokenizer.ggml.pre");
    // llama.cpp adds BOS for Llama-3 vocabularies unless the file says otherwise.
    let default_add_bos = matches!(pre.as_deref(), Some("llama-bpe" | "llama3" | "llama-v3"));
    GgufTokenizerMeta {
        vocab: GgufVocab {
            model: string("tokenizer.ggml.model").unwrap_or_default(),
            pre,
            tokens: strings("tokenizer.ggml.tokens"),
            merges: strings("tokenizer.ggml.merges"),
            token_types: md
                .get("tokenizer.ggml.token_type")
                .and_then(|v| v.to_vec().ok())
                .map(|vs| vs.iter().map(|v| int(v).unwrap_or(1) as i32).collect()),
            bos_id: md
                .get("tokenizer.ggml.bos_token_id")
                .and_then(int)
                .map(|i| i as u32),
            eos_id: md
                .get("tokenizer.ggml.eos_token_id")
                .and_then(int)
                .map(|i| i as u32),
            add_bos: md
                .get("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.to_bool().ok())
                .unwrap_or(default_add_bos),
        },
        chat_template: string("tokenizer.chat_template").unwrap_or_default(),
    }
}

/// Any integer GGUF value: `Value::to_u32` only accepts `U32`, but writers differ.
fn int(v: &Value) -> Option<i64> {
    Some(match *v {
        Value::U8(x) => x.into(),
        Value::I8(x) => x.into(),
        Value::U16(x) => x.into(),
        Value::I16(x) => x.into(),
        Value::U32(x) => x.into(),
        Value::I32(x) => x.into(),
        Value::U64(x) => i64::try_from(x).ok()?,
        Value::I64(x) => x,
        _ => return None,
    })
}

/// `[{role, content}]` from reference JSON.
pub fn messages(v: &serde_json::Value) -> Vec<persona_tokenizer::Message> {
    serde_json::from_value(v.clone()).expect("messages are [{role, content}]")
}

pub fn str_of(v: &serde_json::Value) -> &str {
    v.as_str().expect("a string")
}
