//! The public engine: a loaded model with its tokenizer and chat template, and the batched
//! forward and generation calls every pipeline uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use persona_tokenizer::{ChatTemplate, Message, Tokenizer};
use serde::Serialize;
use sha2::Digest;

use crate::adapter::{DenseBlock, DenseWeights};
use crate::capture::CaptureState;
use crate::chunk::Layout;
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::hf::HfFolder;
use crate::hooks::{CaptureSpec, Intervention, SequenceCaptures};
use crate::intervene::HookPlan;
use crate::model::{LogitsWanted, Model};
use crate::weights::{TensorSource, WeightMode};

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub weights: WeightMode,
    pub device: Device,
    /// A LoRA adapter folder (PEFT layout) merged into the weights at load.
    pub adapter: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            weights: WeightMode::Auto,
            device: Device::Cpu,
            adapter: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    Gguf,
    HuggingFace,
}

/// What `persona info` reports, and what results record about their model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub format: ModelFormat,
    pub config: ModelConfig,
    pub weight_mode: WeightMode,
    pub weight_bytes: usize,
    pub chat_template: Option<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
    /// The LoRA adapter merged into the weights, if any.
    pub adapter: Option<PathBuf>,
}

pub struct Engine {
    model: Model,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    info: ModelInfo,
    /// The weights' SHA-256, computed on first use: hashing a large model takes seconds and
    /// every result file of a command records it.
    sha256: std::sync::OnceLock<String>,
}

/// One token sequence for a teacher-forced pass: `ids[..prompt_len]` is the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSequence {
    pub ids: Vec<u32>,
    pub prompt_len: usize,
}

#[derive(Debug, Clone)]
pub struct ForwardRequest {
    pub captures: CaptureSpec,
    pub interventions: Vec<Intervention>,
    /// Score every token after the prompt: its log-probability and the model's top tokens.
    pub scores: bool,
    pub top_k: usize,
    /// Upper bound on padded tokens per batch (memory/speed trade-off).
    pub max_batch_tokens: usize,
}

impl Default for ForwardRequest {
    fn default() -> Self {
        ForwardRequest {
            captures: CaptureSpec::default(),
            interventions: Vec::new(),
            scores: false,
            top_k: 1,
            max_batch_tokens: 2048,
        }
    }
}

/// The score of `ids[i]` given everything before it.
#[derive(Debug, Clone, Serialize)]
pub struct TokenScore {
    pub id: u32,
    pub logprob: f32,
    pub logit: f32,
    /// The model's `top_k` tokens at that position with their raw logits, best first.
    pub top: Vec<(u32, f32)>,
}

#[derive(Debug, Clone, Default)]
pub struct ForwardOutput {
    pub captures: SequenceCaptures,
    /// One per token at positions `max(prompt_len, 1)..len`.
    pub scores: Vec<TokenScore>,
}

impl Engine {
    /// Loads a GGUF file or a Hugging Face model folder.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Engine> {
        persona_kernels::keep_freed_memory();
        if !path.exists() {
            return Err(EngineError::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or folder (pass a .gguf file or a Hugging Face model folder, or run `persona setup` for the default model)",
                ),
            ));
        }
        if path.is_dir() {
            Self::load_hf(path, opts)
        } else {
            Self::load_gguf(path, opts)
        }
    }

    fn load_gguf(path: &Path, opts: &LoadOptions) -> Result<Engine> {
        let mut file = GgufFile::open(path, &opts.device)?;
        let config = file.config()?;
        let vocab = file.vocab()?;
        let tokenizer = Tokenizer::from_gguf_vocab(&vocab)?;
        let template_src = file.chat_template();
        let template = match &template_src {
            Some(src) => Some(ChatTemplate::new(
                src,
                &special_text(&tokenizer, vocab.bos_id),
                &special_text(&tokenizer, vocab.eos_id),
            )?),
            None => None,
        };
        let metadata = file.small_metadata().into_iter().collect();
        let model = Self::load_model(config, &mut file, opts)?;
        Ok(Self::assemble(
            model,
            tokenizer,
            template,
            path,
            ModelFormat::Gguf,
            metadata,
            opts,
        ))
    }

    fn load_hf(path: &Path, opts: &LoadOptions) -> Result<Engine> {
        let mut folder = HfFolder::open(path)?;
        let config = folder.config()?;
        let tokenizer = Tokenizer::from_tokenizer_json(&folder.dir().join("tokenizer.json"))?;
        let tc = folder.dir().join("tokenizer_config.json");
        // A base model may have no template at all; then only raw prompts work.
        let has_template = folder.dir().join("chat_template.jinja").is_file()
            || std::fs::read_to_string(&tc).is_ok_and(|s| s.contains("\"chat_template\""));
        let template = if has_template {
            Some(ChatTemplate::from_tokenizer_config(&tc)?)
        } else {
            None
        };
        let model = Self::load_model(config, &mut folder, opts)?;
        Ok(Self::assemble(
            model,
            tokenizer,
            template,
            path,
            ModelFormat::HuggingFace,
            Default::default(),
            opts,
        ))
    }

    /// The weights, with the adapter (if any) merged in as they are read.
    fn load_model(
        config: ModelConfig,
        src: &mut dyn TensorSource,
        opts: &LoadOptions,
    ) -> Result<Model> {
        let Some(dir) = &opts.adapter else {
            return Model::load(config, src, opts.weights, &opts.device);
        };
        let adapter = crate::adapter::LoraAdapter::load_peft(dir, &config)?;
        let mut merged = crate::adapter::MergedSource {
            inner: src,
            adapter: &adapter,
            device: opts.device.clone(),
        };
        Model::load(config, &mut merged, opts.weights, &opts.device)
    }

    fn assemble(
        model: Model,
        tokenizer: Tokenizer,
        template: Option<ChatTemplate>,
        path: &Path,
        format: ModelFormat,
        metadata: std::collections::BTreeMap<String, String>,
        opts: &LoadOptions,
    ) -> Engine {
        let info = ModelInfo {
            path: path.to_path_buf(),
            format,
            config: model.config.clone(),
            weight_mode: model.mode,
            weight_bytes: model.weight_bytes(),
            chat_template: template.as_ref().map(|t| t.source().to_string()),
            metadata,
            adapter: opts.adapter.clone(),
        };
        Engine {
            model,
            tokenizer,
            template,
            info,
            sha256: std::sync::OnceLock::new(),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.model.config
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn device(&self) -> &Device {
        &self.model.device
    }

    pub(crate) fn model(&self) -> &Model {
        &self.model
    }

    /// The weights as dense f32 tensors. Exact in the `f32` weight layout; the other layouts
    /// keep only rounded copies of some weights, so load with `WeightMode::F32` to train.
    pub fn dense_weights(&self) -> Result<DenseWeights> {
        let model = self.model();
        let dev = &model.device;
        let blocks = model
            .blocks()
            .iter()
            .map(|b| {
                let norms: BTreeMap<&str, Tensor> =
                    b.norms().into_iter().map(|(n, t)| (n, t.clone())).collect();
                let linears = b
                    .linears()
                    .into_iter()
                    .map(|(part, lin)| {
                        Ok((part.to_string(), (lin.to_dense(dev)?, lin.bias().cloned())))
                    })
                    .collect::<Result<_>>()?;
                Ok(DenseBlock {
                    attn_norm: norms["attn_norm"].clone(),
                    mlp_norm: norms["ffn_norm"].clone(),
                    q_norm: norms.get("attn_q_norm").cloned(),
                    k_norm: norms.get("attn_k_norm").cloned(),
                    linears,
                })
            })
            .collect::<Result<_>>()?;
        Ok(DenseWeights {
            config: model.config.clone(),
            embed: model.embed_table().clone(),
            blocks,
            final_norm: model.final_norm().clone(),
            lm_head: model.lm_head().to_dense(dev)?,
            rope_cos: model.rope_tables().0.clone(),
            rope_sin: model.rope_tables().1.clone(),
        })
    }

    /// SHA-256 of the weights file (or of the safetensors files, in name order; then the
    /// adapter's files when one is merged): the model identity recorded with every result.
    /// Hashed once per loaded model.
    pub fn model_sha256(&self) -> Result<String> {
        if let Some(h) = self.sha256.get() {
            return Ok(h.clone());
        }
        let path = &self.info.path;
        let files: Vec<PathBuf> = if path.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| EngineError::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            v.sort();
            v
        } else {
            vec![path.clone()]
        };
        // A merged adapter is part of the model: its files are hashed after the weights.
        let adapter_files = self.info.adapter.iter().flat_map(|d| {
            [
                d.join("adapter_config.json"),
                d.join("adapter_model.safetensors"),
            ]
        });
        let files: Vec<PathBuf> = files.into_iter().chain(adapter_files).collect();
        let mut h = sha2::Sha256::new();
        for f in files {
            let mut file = std::fs::File::open(&f).map_err(|e| EngineError::io(&f, e))?;
            std::io::copy(&mut file, &mut h).map_err(|e| EngineError::io(&f, e))?;
        }
        Ok(self
            .sha256
            .get_or_init(|| hex::encode(h.finalize()))
            .clone())
    }

    /// "NAME sha256:HASH" (with "+ LoRA ADAPTER_FOLDER" when an adapter is merged): the model as
    /// result files name it (`persona.model`).
    pub fn model_id(&self) -> Result<String> {
        let adapter = self.info.adapter.as_ref().map_or(String::new(), |d| {
            let name = d.file_name().unwrap_or(d.as_os_str());
            format!(" + LoRA {}", name.to_string_lossy())
        });
        Ok(format!(
            "{}{adapter} sha256:{}",
            self.config().name,
            self.model_sha256()?
        ))
    }

    /// Renders chat messages with the model's template.
    pub fn render_chat(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let t = self.template.as_ref().ok_or_else(|| {
            EngineError::InvalidRequest(format!(
                "{} has no chat template; pass a raw prompt instead",
                self.info.path.display()
            ))
        })?;
        Ok(t.render(messages, add_generation_prompt)?)
    }

    /// Prompt ids of a chat, ready for generation.
    pub fn chat_prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(&self.render_chat(messages, true)?)?)
    }

    /// A (prompt, response) pair the way the Persona Vectors code builds it: the prompt rendered
    /// with the generation prompt, the response appended verbatim (no end-of-turn token).
    pub fn chat_with_response(
        &self,
        messages: &[Message],
        response: &str,
    ) -> Result<TokenSequence> {
        self.text_with_response(&self.render_chat(messages, true)?, response)
    }

    /// A conversation ending with the assistant's message, rendered whole with the chat
    /// template (so the message carries the template's end-of-turn marker, as in training
    /// data), and where that message starts.
    pub fn chat_with_final_turn(&self, messages: &[Message]) -> Result<TokenSequence> {
        let prompt = match messages.split_last() {
            Some((last, prompt)) if last.role == "assistant" && !prompt.is_empty() => prompt,
            _ => {
                return Err(EngineError::InvalidRequest(
                    "the conversation needs a prompt and must end with the assistant's message"
                        .into(),
                ))
            }
        };
        let prompt_text = self.render_chat(prompt, true)?;
        let full = self.render_chat(messages, false)?;
        let response = full.strip_prefix(&prompt_text).ok_or_else(|| {
            EngineError::InvalidRequest(
                "the chat template renders this prompt differently inside the conversation".into(),
            )
        })?;
        self.text_with_response(&prompt_text, response)
    }

    /// A raw prompt text with a response appended verbatim, and where the response starts.
    pub fn text_with_response(&self, prompt: &str, response: &str) -> Result<TokenSequence> {
        let prompt_ids = self.tokenizer.encode(prompt)?;
        let ids = self.tokenizer.encode(&format!("{prompt}{response}"))?;
        if !ids.starts_with(&prompt_ids) {
            return Err(EngineError::InvalidRequest(
                "the response merges with the end of the prompt under this tokenizer, so the response tokens cannot be separated; start the response with a new word, or give token ids".into(),
            ));
        }
        Ok(TokenSequence {
            ids,
            prompt_len: prompt_ids.len(),
        })
    }

    /// Teacher-forced forward over many sequences: batched by length, padded on the right.
    /// `progress` receives the number of tokens finished after each batch.
    pub fn forward_batch(
        &self,
        seqs: &[TokenSequence],
        req: &ForwardRequest,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<ForwardOutput>> {
        let c = &self.model.config;
        for (i, s) in seqs.iter().enumerate() {
            if s.ids.is_empty() || s.prompt_len > s.ids.len() {
                return Err(EngineError::InvalidRequest(format!(
                    "sequence {i} has {} tokens and prompt length {}; it needs at least one token and a prompt no longer than the sequence",
                    s.ids.len(),
                    s.prompt_len
                )));
            }
            if let Some(&bad) = s.ids.iter().find(|&&id| id as usize >= c.vocab_size) {
                return Err(EngineError::InvalidRequest(format!(
                    "sequence {i} has token id {bad}, outside the vocabulary of {} tokens",
                    c.vocab_size
                )));
            }
        }
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].ids.len()));
        let mut outputs: Vec<Option<ForwardOutput>> = vec![None; seqs.len()];
        let mut start = 0;
        while start < order.len() {
            let longest = seqs[order[start]].ids.len();
            let rows = (req.max_batch_tokens / longest).clamp(1, 64);
            let batch: Vec<usize> = order[start..(start + rows).min(order.len())].to_vec();
            start += batch.len();
            let outs = self.forward_one_batch(seqs, &batch, req)?;
            for (i, out) in batch.iter().zip(outs) {
                outputs[*i] = Some(out);
            }
            progress(batch.iter().map(|&i| seqs[i].ids.len()).sum());
        }
        Ok(outputs
            .into_iter()
            .map(|o| o.expect("every sequence ran"))
            .collect())
    }

    fn forward_one_batch(
        &self,
        seqs: &[TokenSequence],
        batch: &[usize],
        req: &ForwardRequest,
    ) -> Result<Vec<ForwardOutput>> {
        let dev = &self.model.device;
        let t = batch.iter().map(|&i| seqs[i].ids.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(batch.len() * t);
        for &i in batch {
            ids.extend_from_slice(&seqs[i].ids);
            ids.extend(std::iter::repeat_n(0u32, t - seqs[i].ids.len()));
        }
        let ids = Tensor::from_vec(ids, (batch.len(), t), dev)?;
        let layout = Layout {
            t,
            col0: vec![0; batch.len()],
            prompt_len: batch.iter().map(|&i| seqs[i].prompt_len).collect(),
            seq_len: batch.iter().map(|&i| seqs[i].ids.len()).collect(),
            past: 0,
        };
        let (plan, mut capture) = self.batch_hooks(&req.interventions, &req.captures, batch)?;
        let wanted = if req.scores {
            LogitsWanted::All
        } else {
            LogitsWanted::None
        };
        let logits = self
            .model
            .forward(&ids, &layout, &plan, None, capture.as_mut(), wanted)?;
        let captures = match capture {
            Some(c) => c.finish()?,
            None => vec![SequenceCaptures::default(); batch.len()],
        };
        let mut outs = Vec::with_capacity(batch.len());
        for (r, (&i, caps)) in batch.iter().zip(captures).enumerate() {
            let scores = match &logits {
                Some(l) => score_tokens(&l.get(r)?, &seqs[i], req.top_k)?,
                None => Vec::new(),
            };
            outs.push(ForwardOutput {
                captures: caps,
                scores,
            });
        }
        Ok(outs)
    }
}

impl Engine {
    /// The hook plan and capture state of one batch (`batch` lists the caller's sequence
    /// indices in batch-row order).
    pub(crate) fn batch_hooks(
        &self,
        interventions: &[Intervention],
        captures: &CaptureSpec,
        batch: &[usize],
    ) -> Result<(HookPlan, Option<CaptureState>)> {
        let c = &self.model.config;
        let dev = &self.model.device;
        let interventions = remap_sequences(interventions, batch);
        let plan = HookPlan::new(&interventions, &captures.sites, c.n_layers, c.d_model, dev)?;
        let capture = if captures.is_empty() {
            None
        } else {
            Some(CaptureState::new(captures, batch.len(), c.d_model, dev)?)
        };
        Ok((plan, capture))
    }
}

/// The text of a special token id, for the template's `bos_token` / `eos_token`.
fn special_text(tok: &Tokenizer, id: Option<u32>) -> String {
    id.and_then(|i| tok.id_to_piece(i)).unwrap_or_default()
}

/// Restricts per-sequence interventions to a batch, renumbering sequences to batch rows.
fn remap_sequences(ivs: &[Intervention], batch: &[usize]) -> Vec<Intervention> {
    ivs.iter()
        .filter_map(|iv| match &iv.sequences {
            None => Some(iv.clone()),
            Some(list) => {
                let rows: Vec<usize> = batch
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| list.contains(s))
                    .map(|(r, _)| r)
                    .collect();
                (!rows.is_empty()).then(|| Intervention {
                    sequences: Some(rows),
                    ..iv.clone()
                })
            }
        })
        .collect()
}

/// Log-probabilities and top tokens from `[T, V]` logits of one (right-padded) row.
fn score_tokens(logits: &Tensor, seq: &TokenSequence, top_k: usize) -> Result<Vec<TokenScore>> {
    let first = seq.prompt_len.max(1);
    let n = seq.ids.len();
    if first >= n {
        return Ok(Vec::new());
    }
    let rows = logits.narrow(0, first - 1, n - first)?.to_vec2::<f32>()?;
    Ok(rows
        .iter()
        .zip(&seq.ids[first..])
        .map(|(row, &id)| {
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let lse = max as f64
                + row
                    .iter()
                    .map(|&x| ((x - max) as f64).exp())
                    .sum::<f64>()
                    .ln();
            TokenScore {
                id,
                logprob: (row[id as usize] as f64 - lse) as f32,
                logit: row[id as usize],
                top: crate::sampling::top_k(row, top_k.max(1)),
            }
        })
        .collect())
}
