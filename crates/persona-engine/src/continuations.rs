//! Next-token distributions after one prompt and several short continuations of it, with the
//! prompt run once: its KV cache is forked into one row per continuation. This is what a
//! judge needs to read a multi-token number ("8", "85", "100") from the model's probabilities
//! without paying for the prompt once per candidate.

use candle_core::Tensor;

use crate::chunk::Layout;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::hooks::CaptureSpec;
use crate::model::LogitsWanted;

/// The longest continuation [`Engine::branch_logprobs`] runs (its cache is sized for it).
pub const MAX_CONTINUATION_TOKENS: usize = 8;

/// The next-token log-probabilities after a prompt and after continuations of it.
#[derive(Debug, Clone)]
pub struct Branches {
    /// `[vocab]` after the prompt alone.
    pub first: Vec<f32>,
    /// The continuations that were run.
    pub continuations: Vec<Vec<u32>>,
    /// `[continuation][k][vocab]`: after the prompt and the continuation's first `k + 1` tokens.
    pub after: Vec<Vec<Vec<f32>>>,
}

impl Engine {
    /// Runs `prompt` once, lets `choose` pick continuations from the next-token
    /// log-probabilities (e.g. only the likely first tokens), and runs each continuation from a
    /// copy of the prompt's KV cache. Every continuation must have the same length.
    pub fn branch_logprobs(
        &self,
        prompt: &[u32],
        choose: &mut dyn FnMut(&[f32]) -> Vec<Vec<u32>>,
    ) -> Result<Branches> {
        let model = self.model();
        let c = &model.config;
        let dev = &model.device;
        let check_ids = |ids: &[u32]| -> Result<()> {
            match ids.iter().find(|&&id| id as usize >= c.vocab_size) {
                Some(bad) => Err(EngineError::InvalidRequest(format!(
                    "token id {bad} is outside the vocabulary of {} tokens",
                    c.vocab_size
                ))),
                None => Ok(()),
            }
        };
        if prompt.is_empty() {
            return Err(EngineError::InvalidRequest(
                "the prompt to continue is empty".into(),
            ));
        }
        check_ids(prompt)?;
        let p = prompt.len();
        if p >= c.context_length {
            return Err(EngineError::ContextOverflow {
                len: p + 1,
                max: c.context_length,
            });
        }
        let (plan, _) = self.batch_hooks(&[], &CaptureSpec::default(), &[0])?;
        let capacity = c.context_length.min(p + MAX_CONTINUATION_TOKENS);
        let mut caches = model.new_caches(1, capacity);
        let layout = Layout {
            t: p,
            col0: vec![0],
            prompt_len: vec![p],
            seq_len: vec![p],
            past: 0,
        };
        let ids = Tensor::from_vec(prompt.to_vec(), (1, p), dev)?;
        let first = model
            .forward(
                &ids,
                &layout,
                &plan,
                Some(&mut caches),
                None,
                LogitsWanted::Last,
            )?
            .expect("logits were asked for");
        let first = log_softmax(&first.to_vec2::<f32>()?[0]);
        let continuations = choose(&first);
        let n = continuations.len();
        let len = continuations.first().map_or(0, Vec::len);
        if let Some(i) = continuations.iter().position(|k| k.len() != len) {
            return Err(EngineError::InvalidRequest(format!(
                "continuation {i} has {} tokens and continuation 0 has {len}; they must all have the same length",
                continuations[i].len()
            )));
        }
        for k in &continuations {
            check_ids(k)?;
        }
        let mut after: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(len); n];
        if len > 0 && n > 0 {
            if p + len > capacity {
                return Err(EngineError::InvalidRequest(format!(
                    "continuations of {len} tokens after a {p}-token prompt do not fit: at most {} tokens fit here (context {}, at most {MAX_CONTINUATION_TOKENS} per continuation)",
                    capacity - p,
                    c.context_length
                )));
            }
            let rows: Vec<usize> = (0..n).collect();
            let (plan, _) = self.batch_hooks(&[], &CaptureSpec::default(), &rows)?;
            let mut forked = caches.fork_first(n)?;
            for step in 0..len {
                let layout = Layout {
                    t: 1,
                    col0: vec![(p + step) as i64; n],
                    prompt_len: vec![p; n],
                    seq_len: vec![p + step + 1; n],
                    past: p + step,
                };
                let step_ids: Vec<u32> = continuations.iter().map(|k| k[step]).collect();
                let ids = Tensor::from_vec(step_ids, (n, 1), dev)?;
                let logits = model
                    .forward(
                        &ids,
                        &layout,
                        &plan,
                        Some(&mut forked),
                        None,
                        LogitsWanted::Last,
                    )?
                    .expect("logits were asked for")
                    .to_vec2::<f32>()?;
                for (row, dist) in after.iter_mut().zip(&logits) {
                    row.push(log_softmax(dist));
                }
            }
        }
        Ok(Branches {
            first,
            continuations,
            after,
        })
    }
}

fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = max as f64
        + logits
            .iter()
            .map(|&x| ((x - max) as f64).exp())
            .sum::<f64>()
            .ln();
    logits.iter().map(|&x| (x as f64 - lse) as f32).collect()
}
