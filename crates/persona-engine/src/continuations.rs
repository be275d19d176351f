//! Next-token distributions after one prompt and several short continuations of it, with the
//! prompt run once: its KV cache is forked into one row per continuation. This is what a
//! judge needs to read a multi-token number ("8", "85", "100") from the model's probabilities
//! without paying for the prompt once per candidate.

use candle_core::Tensor;

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::hooks::CaptureSpec;
use crate::model::{Layout, LogitsWanted};

impl Engine {
    /// Log-probabilities of the next token after `prompt` followed by each continuation's
    /// first `0..=len` tokens: `[continuation][position][vocab]`, where position 0 is after
    /// the prompt alone (the same for every continuation) and position `k` after its first `k`
    /// tokens. Every continuation must have the same length.
    pub fn continuation_logprobs(
        &self,
        prompt: &[u32],
        continuations: &[Vec<u32>],
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let model = self.model();
        let c = &model.config;
        let dev = &model.device;
        let len = continuations.first().map_or(0, Vec::len);
        if prompt.is_empty() {
            return Err(EngineError::InvalidRequest(
                "the prompt to continue is empty".into(),
            ));
        }
        if let Some(i) = continuations.iter().position(|k| k.len() != len) {
            return Err(EngineError::InvalidRequest(format!(
                "continuation {i} has {} tokens and continuation 0 has {len}; they must all have the same length",
                continuations[i].len()
            )));
        }
        let bad = prompt
            .iter()
            .chain(continuations.iter().flatten())
            .find(|&&id| id as usize >= c.vocab_size);
        if let Some(&bad) = bad {
            return Err(EngineError::InvalidRequest(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                c.vocab_size
            )));
        }
        let total = prompt.len() + len;
        if total > c.context_length {
            return Err(EngineError::ContextOverflow {
                len: total,
                max: c.context_length,
            });
        }
        let n = continuations.len();
        let p = prompt.len();
        let (plan, _) = self.batch_hooks(&[], &CaptureSpec::default(), &[0])?;
        let mut caches = model.new_caches(1, total.max(p + 1));
        let layout = Layout {
            t: p,
            col0: vec![0],
            prompt_len: vec![p],
            seq_len: vec![p],
            past: 0,
        };
        let ids = Tensor::from_vec(prompt.to_vec(), (1, p), dev)?;
        let first = model
            .forward(&ids, &layout, &plan, Some(&mut caches), None, LogitsWanted::Last)?
            .expect("logits were asked for");
        let first = log_softmax(&first.to_vec2::<f32>()?[0]);
        let mut out: Vec<Vec<Vec<f32>>> = vec![vec![first]; n];
        if len == 0 || n == 0 {
            return Ok(out);
        }
        let rows: Vec<usize> = (0..n).collect();
        let (plan, _) = self.batch_hooks(&[], &CaptureSpec::default(), &rows)?;
        let mut caches = caches.fork_first(n)?;
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
                .forward(&ids, &layout, &plan, Some(&mut caches), None, LogitsWanted::Last)?
                .expect("logits were asked for")
                .to_vec2::<f32>()?;
            for (row, dist) in out.iter_mut().zip(&logits) {
                row.push(log_softmax(dist));
            }
        }
        Ok(out)
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
