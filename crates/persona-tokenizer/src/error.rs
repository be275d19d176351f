use std::path::PathBuf;

/// Everything that can go wrong while building or using a tokenizer or chat template.
///
/// Messages name the offending file or metadata key and say what to do, because they end up
/// in front of a CLI user who cannot see the code.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(
        "tokenizer.ggml.model is `{0}`, but only \"gpt2\" (byte-level BPE) is supported; \
         use a GGUF with a byte-level BPE vocabulary or load the model's tokenizer.json"
    )]
    UnsupportedModel(String),

    #[error(
        "tokenizer.ggml.pre is `{pre}`, which persona-tokenizer does not know; supported: {supported}. \
         Load the model's tokenizer.json instead, or add this pre-tokenizer to persona-tokenizer"
    )]
    UnknownPre { pre: String, supported: String },

    #[error("invalid GGUF tokenizer metadata: {0}; the GGUF file is probably damaged or from an unsupported converter")]
    InvalidVocab(String),

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path} is not a usable tokenizer.json: {message}; re-download or re-export it")]
    InvalidTokenizerJson { path: PathBuf, message: String },

    #[error("{path}: {message}")]
    InvalidConfig { path: PathBuf, message: String },

    #[error("tokenization failed: {0}")]
    Encode(String),

    #[error("detokenization failed: {0}")]
    Decode(String),

    #[error("token id {0} is not in the vocabulary; ids must come from this model's tokenizer")]
    UnknownId(u32),

    #[error("cannot serialize the tokenizer to tokenizer.json: {0}")]
    Serialize(String),

    #[error("the chat template does not compile: {0}; check the template source (GGUF tokenizer.chat_template or chat_template in tokenizer_config.json)")]
    TemplateSyntax(String),

    #[error("rendering the chat template failed: {0}")]
    TemplateRender(String),
}
