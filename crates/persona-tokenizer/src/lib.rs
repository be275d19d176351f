//! Byte-level BPE tokenizers and chat templates for persona.
//!
//! The engine reads a GGUF file and hands its `tokenizer.ggml.*` metadata over as a plain
//! [`GgufVocab`]; this crate knows nothing about GGUF itself. Tokenizers can also come from a
//! Hugging Face `tokenizer.json`, and can be written back as one (for `persona convert`).
//!
//! Both halves aim at byte-for-byte parity with the peers persona is tested against:
//! token ids identical to llama.cpp (`tokenize(add_bos=False, special=True)`), and chat
//! templates rendered exactly like HF transformers' jinja2 environment.

mod error;
mod pyjson;
mod template;
mod tokenizer;

pub use error::TokenizerError;
pub use template::{ChatTemplate, Message};
pub use tokenizer::{GgufVocab, Tokenizer, SUPPORTED_PRE};
