//! Test helpers: where the reference files and model GGUFs are, and a GGUF → [`GgufVocab`]
//! reader (the engine crate has its own; this crate must not depend on GGUF parsing).
#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::PathBuf;

use candle_core::quantized::gguf_file::{Content, Value};
use persona_tokenizer::{ChatTemplate, GgufVocab, Tokenizer};

/// `$PERSONA_SHARED`, default `<repo>/../shared` (the frozen reference files).
pub fn shared_dir() -> PathBuf {
    std::env::var_os("PERSONA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// A JSON file under `shared/reference/`.
pub fn reference(name: &str) -> serde_json::Value {
    let path = shared_dir().join("reference").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read reference file {} ({e}); set PERSONA_SHARED to the shared folder",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `$PERSONA_HOME/models`, default `~/.cache/persona/models`.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("PERSONA_HOME") {
        Some(home) => PathBuf::from(home).join("models"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/persona/models"),
    }
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

/// The optional Qwen2.5-Coder GGUF: `$PERSONA_QWEN_GGUF`, else the models folder.
pub fn qwen_gguf() -> Option<PathBuf> {
    let path = std::env::var_os("PERSONA_QWEN_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| models_dir().join("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"));
    path.is_file().then_some(path)
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

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).expect("a list of token ids")
}

pub fn str_of(v: &serde_json::Value) -> &str {
    v.as_str().expect("a string")
}
