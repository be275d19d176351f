use std::path::Path;
use std::str::FromStr;

use ahash::AHashMap;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::sequence::Sequence as ProcessorSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::TokenizerError;

type Result<T> = std::result::Result<T, TokenizerError>;

/// What a GGUF file's `tokenizer.ggml.*` metadata says, as plain data.
///
/// The engine fills this in from the GGUF header, so this crate never parses GGUF itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`; only `"gpt2"` (byte-level BPE) is supported.
    pub model: String,
    /// `tokenizer.ggml.pre`, the pre-tokenizer name (see [`SUPPORTED_PRE`]). `None` (GGUFs
    /// written before the key existed) means `"default"`, as in llama.cpp.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: the vocabulary in byte-level form; the id is the index.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.merges`: `"left right"`, highest priority first.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused.
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`: whether [`Tokenizer::encode`] starts with BOS.
    pub add_bos: bool,
}

/// The `tokenizer.ggml.pre` values [`Tokenizer::from_gguf_vocab`] accepts.
pub const SUPPORTED_PRE: &[&str] = &[
    "smollm",
    "qwen2",
    "deepseek-r1-qwen",
    "llama-bpe",
    "llama3",
    "llama-v3",
    "default",
    "gpt-2",
    "gpt2",
];

/// llama.cpp's Qwen2 split regex: like GPT-4's, but digits one at a time. The explicit
/// `'[sS]` classes (instead of `(?i:'s)`) keep Unicode case folding out, as in llama.cpp.
const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's Llama-3 split regex: digits in groups of up to three.
const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-2's split regex, as llama.cpp writes it.
const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// llama.cpp's `default` pre-tokenizer (GGUFs without `tokenizer.ggml.pre`): punctuation runs,
/// then GPT-2, then digit runs, then groups of three digits, each splitting the previous pieces.
const LLAMACPP_DEFAULT_REGEXES: [&str; 4] = [
    r"[\p{P}\$\+<=>\^~\|]+",
    GPT2_REGEX,
    r"\p{N}+",
    "[0-9][0-9][0-9]",
];

/// Token texts that end a turn in the chat formats persona meets (llama.cpp's end-of-generation
/// list), so generation can stop on any of them, not just on the declared EOS.
const END_OF_TURN: &[&str] = &[
    "<end_of_utterance>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|end|>",
    "<end_of_turn>",
    "<EOT>",
];

/// GGUF token types that become added tokens (matched in text before BPE runs).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// A byte-level BPE tokenizer with the BOS/EOS facts generation needs.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    add_bos: bool,
}

impl Tokenizer {
    /// Builds the tokenizer llama.cpp would build from this GGUF metadata.
    ///
    /// Control tokens (type 3, and BOS/EOS whatever their type) become special added tokens,
    /// so `<|im_start|>` written in a rendered template is one token; user-defined tokens (type 4, e.g. Qwen's `<tool_call>`)
    /// are matched the same way but, as in llama.cpp and HF, are not special and so survive
    /// `decode(.., skip_special = true)`.
    pub fn from_gguf_vocab(v: &GgufVocab) -> Result<Self> {
        if v.model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(v.model.clone()));
        }
        let pre = pre_kind(v.pre.as_deref().unwrap_or("default"))?;
        if v.tokens.is_empty() {
            return Err(TokenizerError::InvalidVocab(
                "tokenizer.ggml.tokens is empty".into(),
            ));
        }
        let n = v.tokens.len();
        if let Some(types) = &v.token_types {
            if types.len() != n {
                return Err(TokenizerError::InvalidVocab(format!(
                    "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {n}",
                    types.len()
                )));
            }
        }
        for (key, id) in [("bos", v.bos_id), ("eos", v.eos_id)] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                return Err(TokenizerError::InvalidVocab(format!(
                    "tokenizer.ggml.{key}_token_id is {id} but the vocabulary has {n} tokens"
                )));
            }
        }
        if v.add_bos && v.bos_id.is_none() {
            return Err(TokenizerError::InvalidVocab(
                "tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is missing"
                    .into(),
            ));
        }

        let vocab: AHashMap<String, u32> = v
            .tokens
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let merges = v
            .merges
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| {
                        TokenizerError::InvalidVocab(format!(
                            "tokenizer.ggml.merges[{i}] = {m:?} is not two tokens separated by a space"
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(matches!(pre, PreKind::Llama3))
            .build()
            .map_err(|e| TokenizerError::InvalidVocab(e.to_string()))?;

        let mut inner = tokenizers::Tokenizer::new(bpe);
        let (pre_tokenizer, byte_level) = pre.pipeline()?;
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let post: PostProcessorWrapper = match v.bos_id.filter(|_| v.add_bos) {
            // Only HF users of the exported tokenizer.json see this: `encode` adds BOS itself.
            Some(bos) => ProcessorSequence::new(vec![
                byte_level.into(),
                bos_template(&v.tokens[bos as usize], bos)?.into(),
            ])
            .into(),
            None => byte_level.into(),
        };
        inner.with_post_processor(Some(post));

        let types = v.token_types.as_deref().unwrap_or(&[]);
        let is_special = |id: usize| {
            types.get(id) == Some(&TOKEN_TYPE_CONTROL)
                || [v.bos_id, v.eos_id].contains(&Some(id as u32))
        };
        let special = (0..n)
            .filter(|&id| is_special(id))
            .map(|id| AddedToken::from(v.tokens[id].clone(), true));
        let user = (0..n)
            .filter(|&id| types.get(id) == Some(&TOKEN_TYPE_USER_DEFINED) && !is_special(id))
            .map(|id| AddedToken::from(v.tokens[id].clone(), false).normalized(false));
        let added =
            |e: tokenizers::Error| TokenizerError::InvalidVocab(format!("added tokens: {e}"));
        inner.add_special_tokens(special).map_err(added)?;
        inner.add_tokens(user).map_err(added)?;

        Ok(Self {
            inner,
            bos_id: v.bos_id,
            eos_id: v.eos_id,
            add_bos: v.add_bos,
        })
    }

    /// Loads a Hugging Face `tokenizer.json`.
    ///
    /// BOS, EOS and `add_bos_token` come from a `tokenizer_config.json` in the same folder
    /// when there is one; without `add_bos_token`, BOS is added when the tokenizer.json's
    /// post-processor adds it (as HF does).
    pub fn from_tokenizer_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
            path: path.to_owned(),
            source,
        })?;
        let inner = tokenizers::Tokenizer::from_str(&text).map_err(|e| {
            TokenizerError::InvalidTokenizerJson {
                path: path.to_owned(),
                message: e.to_string(),
            }
        })?;
        let config_path = path.with_file_name("tokenizer_config.json");
        let config = if config_path.is_file() {
            read_json(&config_path)?
        } else {
            serde_json::Value::Null
        };
        let config_id = |key: &str| -> Result<Option<u32>> {
            let Some(token) = token_string(&config[key]) else {
                return Ok(None);
            };
            inner.token_to_id(&token).map(Some).ok_or_else(|| {
                TokenizerError::InvalidConfig {
                    path: config_path.clone(),
                    message: format!(
                        "{key} `{token}` is not in the vocabulary of {}; the two files do not belong together",
                        path.display()
                    ),
                }
            })
        };
        let mut bos_id = config_id("bos_token")?;
        let eos_id = config_id("eos_token")?;
        let add_bos = match config["add_bos_token"].as_bool() {
            Some(add) => add,
            None => match post_processor_bos(&inner)? {
                Some(bos) => {
                    bos_id = bos_id.or(Some(bos));
                    true
                }
                None => false,
            },
        };
        if add_bos && bos_id.is_none() {
            return Err(TokenizerError::InvalidConfig {
                path: config_path,
                message: "add_bos_token is true but bos_token is not set".into(),
            });
        }
        Ok(Self {
            inner,
            bos_id,
            eos_id,
            add_bos,
        })
    }

    /// Token ids of `text`. Special tokens written in the text (`<|im_start|>`) are matched;
    /// BOS is prepended only when the model asks for it (`add_bos`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let bos = self.bos_id.filter(|_| self.add_bos);
        Ok(bos
            .into_iter()
            .chain(encoding.get_ids().iter().copied())
            .collect())
    }

    /// Text of `ids`; special tokens are written out unless `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        if let Some(&id) = ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            return Err(TokenizerError::UnknownId(id));
        }
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// Vocabulary strings of `ids` in byte-level form (`Ġ` = space, `Ċ` = newline); an id
    /// outside the vocabulary gives an empty string (see [`Self::id_to_piece`]).
    pub fn pieces(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&id| self.id_to_piece(id).unwrap_or_default())
            .collect()
    }

    /// Number of token ids the tokenizer knows (can be below the model's embedding rows).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of a vocabulary string (byte-level form) or special token.
    pub fn token_to_id(&self, piece: &str) -> Option<u32> {
        self.inner.token_to_id(piece)
    }

    /// Vocabulary string of `id` in byte-level form.
    pub fn id_to_piece(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The BOS id, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// The declared EOS id, if any; prefer [`Self::eos_ids`] to stop generation.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Whether [`Self::encode`] prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Every id that ends a turn: the EOS plus `<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`
    /// and the like when the vocabulary has them. Sorted, without duplicates.
    pub fn eos_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = END_OF_TURN
            .iter()
            .filter_map(|t| self.inner.token_to_id(t))
            .chain(self.eos_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Serializes as a HF `tokenizer.json` string; [`Self::from_tokenizer_json`] reads it
    /// back to the same ids.
    pub fn to_tokenizer_json(&self) -> Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| TokenizerError::Serialize(e.to_string()))
    }

    /// A HF `tokenizer_config.json` to write beside [`Self::to_tokenizer_json`]'s output, so
    /// that HF and [`Self::from_tokenizer_json`] get the same BOS/EOS handling and decode
    /// without `clean_up_tokenization_spaces` rewriting the text.
    pub fn to_tokenizer_config_json(&self, chat_template: Option<&str>) -> Result<String> {
        let piece = |id: Option<u32>| id.and_then(|id| self.id_to_piece(id));
        let mut config = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": piece(self.bos_id),
            "eos_token": piece(self.eos_id),
            "add_bos_token": self.add_bos,
            "add_eos_token": false,
            "clean_up_tokenization_spaces": false,
        });
        if let Some(template) = chat_template {
            config["chat_template"] = template.into();
        }
        serde_json::to_string_pretty(&config).map_err(|e| TokenizerError::Serialize(e.to_string()))
    }
}

/// The pre-tokenizer families llama.cpp distinguishes among byte-level BPE models.
enum PreKind {
    Smollm,
    Qwen2,
    Llama3,
    LlamaCppDefault,
    Gpt2,
}

fn pre_kind(pre: &str) -> Result<PreKind> {
    Ok(match pre {
        "smollm" => PreKind::Smollm,
        "qwen2" | "deepseek-r1-qwen" => PreKind::Qwen2,
        "llama-bpe" | "llama3" | "llama-v3" => PreKind::Llama3,
        "default" => PreKind::LlamaCppDefault,
        "gpt-2" | "gpt2" => PreKind::Gpt2,
        other => {
            return Err(TokenizerError::UnknownPre {
                pre: other.to_owned(),
                supported: SUPPORTED_PRE.join(", "),
            })
        }
    })
}

impl PreKind {
    /// The pre-tokenizer, and the matching ByteLevel post-processor (which only fixes offsets).
    fn pipeline(&self) -> Result<(PreTokenizerWrapper, ByteLevel)> {
        let split = |regex: &str| {
            Split::new(
                SplitPattern::Regex(regex.to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| TokenizerError::Encode(format!("pre-tokenizer regex: {e}")))
        };
        Ok(match self {
            PreKind::Smollm => {
                let byte_level = ByteLevel::new(false, true, true);
                let seq = Sequence::new(vec![Digits::new(true).into(), byte_level.into()]);
                (seq.into(), byte_level)
            }
            PreKind::Qwen2 => {
                let byte_level = ByteLevel::new(false, false, false);
                let seq = Sequence::new(vec![split(QWEN2_REGEX)?.into(), byte_level.into()]);
                (seq.into(), byte_level)
            }
            PreKind::Llama3 => {
                let byte_level = ByteLevel::new(false, true, false);
                let seq = Sequence::new(vec![split(LLAMA3_REGEX)?.into(), byte_level.into()]);
                (seq.into(), byte_level)
            }
            PreKind::LlamaCppDefault => {
                let byte_level = ByteLevel::new(false, true, false);
                let mut steps = LLAMACPP_DEFAULT_REGEXES
                    .iter()
                    .map(|r| split(r).map(Into::into))
                    .collect::<Result<Vec<PreTokenizerWrapper>>>()?;
                steps.push(byte_level.into());
                (Sequence::new(steps).into(), byte_level)
            }
            PreKind::Gpt2 => {
                let byte_level = ByteLevel::new(false, true, true);
                (byte_level.into(), byte_level)
            }
        })
    }
}

/// A post-processor that puts BOS first, as HF's Llama-3 tokenizer.json does.
fn bos_template(bos: &str, bos_id: u32) -> Result<TemplateProcessing> {
    TemplateProcessing::builder()
        .try_single(format!("{bos} $A:0"))
        .and_then(|b| b.try_pair(format!("{bos} $A:0 {bos}:1 $B:1")))
        .map_err(|e| TokenizerError::Serialize(format!("BOS template: {e}")))?
        .special_tokens(vec![(bos.to_owned(), bos_id)])
        .build()
        .map_err(|e| TokenizerError::Serialize(format!("BOS template: {e}")))
}

/// The BOS a tokenizer.json's post-processor puts in front of the text, if any.
fn post_processor_bos(inner: &tokenizers::Tokenizer) -> Result<Option<u32>> {
    let encode = |special| {
        inner
            .encode("a", special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizerError::Encode(e.to_string()))
    };
    let (with, without) = (encode(true)?, encode(false)?);
    Ok((with.len() > without.len() && with.first() != without.first()).then(|| with[0]))
}

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| TokenizerError::InvalidConfig {
        path: path.to_owned(),
        message: format!("not valid JSON ({e})"),
    })
}

/// A special-token entry of tokenizer_config.json: a string or an `{"content": ..}` object.
pub(crate) fn token_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}
