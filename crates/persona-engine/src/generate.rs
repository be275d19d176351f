//! KV-cached generation, batched over many prompts (left-padded), with hooks on every step.

use candle_core::Tensor;
use serde::Serialize;

use crate::chunk::Layout;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::hooks::{CaptureSpec, Intervention, SequenceCaptures};
use crate::model::LogitsWanted;
use crate::sampling::{Sampler, SamplingParams};

#[derive(Debug, Clone, Default)]
pub struct GenerateRequest {
    pub prompts: Vec<Vec<u32>>,
    pub sampling: SamplingParams,
    pub interventions: Vec<Intervention>,
    pub captures: CaptureSpec,
    /// Sequences decoded together (0: all at once, up to 64).
    pub batch_size: usize,
    /// One sampling seed per prompt, so a prompt's sample does not depend on what else is in
    /// the request (resumed rollouts). Empty: derived from `sampling.seed` and the position.
    pub seeds: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
}

#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    /// Generated ids, the stop token excluded.
    pub generated_ids: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
    #[serde(skip)]
    pub captures: SequenceCaptures,
}

impl Engine {
    /// Generates a continuation of every prompt. `progress` receives the number of new tokens
    /// after each decode step.
    pub fn generate(
        &self,
        req: &GenerateRequest,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Generation>> {
        req.sampling.validate()?;
        if !req.seeds.is_empty() && req.seeds.len() != req.prompts.len() {
            return Err(EngineError::InvalidRequest(format!(
                "{} seeds for {} prompts; give one per prompt or none",
                req.seeds.len(),
                req.prompts.len()
            )));
        }
        if let Some(i) = req.prompts.iter().position(|p| p.is_empty()) {
            return Err(EngineError::InvalidRequest(format!(
                "prompt {i} is empty; generation needs at least one prompt token"
            )));
        }
        let batch_size = match req.batch_size {
            0 => 64,
            n => n,
        };
        let mut out = Vec::with_capacity(req.prompts.len());
        let all: Vec<usize> = (0..req.prompts.len()).collect();
        for batch in all.chunks(batch_size) {
            out.extend(self.generate_batch(req, batch, progress)?);
        }
        Ok(out)
    }

    fn generate_batch(
        &self,
        req: &GenerateRequest,
        batch: &[usize],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Generation>> {
        let model = self.model();
        let c = &model.config;
        let dev = &model.device;
        let p = &req.sampling;
        let b = batch.len();
        let lens: Vec<usize> = batch.iter().map(|&i| req.prompts[i].len()).collect();
        let t = *lens.iter().max().expect("non-empty batch");
        // The prompt and at least one new token must fit.
        if t >= c.context_length {
            return Err(EngineError::ContextOverflow {
                len: t + 1,
                max: c.context_length,
            });
        }
        let room = c.context_length - t;
        if p.max_tokens > room {
            return Err(EngineError::InvalidRequest(format!(
                "max_tokens {} after a {t}-token prompt exceeds the model's context of {} tokens; ask for at most {room}",
                p.max_tokens, c.context_length
            )));
        }
        let max_total = t + p.max_tokens;
        let stop_ids: Vec<u32> = if p.stop_ids.is_empty() {
            self.tokenizer().eos_ids()
        } else {
            p.stop_ids.clone()
        };
        let (plan, mut capture) = self.batch_hooks(&req.interventions, &req.captures, batch)?;
        let mut caches = model.new_caches(b, max_total);
        let mut samplers: Vec<Sampler> = batch
            .iter()
            .map(|&i| {
                let seed = match req.seeds.get(i) {
                    Some(&s) => s,
                    None => Sampler::derived_seed(p, i),
                };
                Sampler::new(p, seed)
            })
            .collect();

        // Prefill, left-padded so every row's next token lands in the same column.
        let mut ids = Vec::with_capacity(b * t);
        for &i in batch {
            let prompt = &req.prompts[i];
            ids.extend(std::iter::repeat_n(0u32, t - prompt.len()));
            ids.extend_from_slice(prompt);
        }
        let mut layout = Layout {
            t,
            col0: lens.iter().map(|&l| l as i64 - t as i64).collect(),
            prompt_len: lens.clone(),
            seq_len: lens.clone(),
            past: 0,
        };
        let ids = Tensor::from_vec(ids, (b, t), dev)?;
        let mut run = |ids: &Tensor, layout: &Layout| -> Result<Tensor> {
            Ok(model
                .forward(
                    ids,
                    layout,
                    &plan,
                    Some(&mut caches),
                    capture.as_mut(),
                    LogitsWanted::Last,
                )?
                .expect("logits were asked for"))
        };
        let mut logits = run(&ids, &layout)?;
        let mut generated: Vec<Vec<u32>> = vec![Vec::new(); b];
        let mut finished: Vec<Option<FinishReason>> = vec![None; b];
        for step in 0..p.max_tokens {
            let rows = logits.to_vec2::<f32>()?;
            let mut next = Vec::with_capacity(b);
            for r in 0..b {
                let tok = if finished[r].is_some() {
                    0
                } else {
                    let tok = samplers[r].next(&rows[r]);
                    if !p.ignore_stop && stop_ids.contains(&tok) {
                        finished[r] = Some(FinishReason::Stop);
                    } else {
                        generated[r].push(tok);
                    }
                    tok
                };
                next.push(tok);
            }
            progress(finished.iter().filter(|f| f.is_none()).count());
            if step + 1 == p.max_tokens || finished.iter().all(|f| f.is_some()) {
                break;
            }
            // Rows that stopped keep decoding a dummy token; nothing of theirs is captured.
            layout = Layout {
                t: 1,
                col0: (0..b).map(|r| (lens[r] + step) as i64).collect(),
                prompt_len: lens.clone(),
                seq_len: (0..b)
                    .map(|r| {
                        if finished[r].is_some() {
                            0
                        } else {
                            lens[r] + step + 1
                        }
                    })
                    .collect(),
                past: t + step,
            };
            let step_ids = Tensor::from_vec(next, (b, 1), dev)?;
            logits = run(&step_ids, &layout)?;
        }
        let captures = match capture {
            Some(c) => c.finish()?,
            None => vec![SequenceCaptures::default(); b],
        };
        batch
            .iter()
            .zip(generated)
            .zip(finished)
            .zip(captures)
            .map(|(((&i, ids), fin), caps)| {
                Ok(Generation {
                    prompt_ids: req.prompts[i].clone(),
                    text: self.tokenizer().decode(&ids, true)?,
                    generated_ids: ids,
                    finish: fin.unwrap_or(FinishReason::Length),
                    captures: caps,
                })
            })
            .collect()
    }
}
