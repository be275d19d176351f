//! Choosing the next token: greedy, or temperature + nucleus sampling with a seeded generator.

use persona_kernels::math::exp_nonpositive;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy (argmax; the lowest id wins an exact tie).
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    pub max_tokens: usize,
    /// Generation stops after any of these ids (not included in the text). Empty: the model's
    /// end-of-turn tokens.
    pub stop_ids: Vec<u32>,
    /// Keep going past stop tokens (parity tests with other tools do this).
    pub ignore_stop: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            max_tokens: 128,
            stop_ids: Vec::new(),
            ignore_stop: false,
        }
    }
}

impl SamplingParams {
    /// Refuses settings that would sample something other than what was asked: a temperature
    /// that is not a number ≥ 0, a nucleus outside (0, 1], no tokens to generate.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::EngineError::InvalidRequest(m));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(format!(
                "temperature {} is not a number ≥ 0 (0 is greedy)",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!(
                "top_p {} is outside (0, 1] (1 keeps every token)",
                self.top_p
            ));
        }
        if self.max_tokens == 0 {
            return bad("max_tokens is 0; ask for at least 1 new token".into());
        }
        Ok(())
    }
}

/// One generator per sequence, so a sequence's sample does not depend on its batch mates.
pub(crate) struct Sampler {
    rng: rand::rngs::StdRng,
    temperature: f32,
    top_p: f32,
}

impl Sampler {
    /// The seed of sequence `index` of a request when it names no seeds of its own.
    pub(crate) fn derived_seed(p: &SamplingParams, index: usize) -> u64 {
        p.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    pub(crate) fn new(p: &SamplingParams, seed: u64) -> Self {
        Sampler {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            temperature: p.temperature,
            top_p: p.top_p,
        }
    }

    pub(crate) fn next(&mut self, logits: &[f32]) -> u32 {
        if self.temperature <= 0.0 {
            return argmax(logits);
        }
        let inv_t = 1.0 / self.temperature;
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f64> = logits
            .iter()
            .map(|&x| exp_nonpositive((x - max) * inv_t) as f64)
            .collect();
        let total: f64 = weights.iter().sum();
        if self.top_p >= 1.0 {
            return pick(&mut self.rng, weights.iter().copied().enumerate(), total);
        }
        let mut order: Vec<usize> = (0..weights.len()).collect();
        order.sort_unstable_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
        let mut kept = 0.0;
        let mut n = 0;
        for &i in &order {
            kept += weights[i];
            n += 1;
            if kept >= self.top_p as f64 * total {
                break;
            }
        }
        pick(
            &mut self.rng,
            order[..n].iter().map(|&i| (i, weights[i])),
            kept,
        )
    }
}

fn pick(
    rng: &mut rand::rngs::StdRng,
    items: impl Iterator<Item = (usize, f64)> + Clone,
    total: f64,
) -> u32 {
    let mut target = rng.random::<f64>() * total;
    let mut last = 0;
    for (i, w) in items {
        last = i;
        if target < w {
            return i as u32;
        }
        target -= w;
    }
    last as u32
}

pub(crate) fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// The `k` largest entries, best first (lowest id first among equals).
pub(crate) fn top_k(xs: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &x) in xs.iter().enumerate() {
        if best.len() == k && x <= best[k - 1].1 {
            continue;
        }
        let pos = best.partition_point(|&(_, y)| y >= x);
        best.insert(pos, (i as u32, x));
        best.truncate(k);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_sample_something_else_are_refused() {
        let ok = SamplingParams::default();
        ok.validate().unwrap();
        let cases = [
            (f32::NAN, 1.0, 8, "temperature NaN"),
            (-1.0, 1.0, 8, "temperature -1"),
            (f32::INFINITY, 1.0, 8, "temperature inf"),
            (0.7, 0.0, 8, "top_p 0 is outside (0, 1]"),
            (0.7, 2.0, 8, "top_p 2 is outside"),
            (0.7, f32::NAN, 8, "top_p NaN"),
            (0.7, 1.0, 0, "max_tokens is 0"),
        ];
        for (temperature, top_p, max_tokens, needle) in cases {
            let p = SamplingParams {
                temperature,
                top_p,
                max_tokens,
                ..ok.clone()
            };
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn argmax_prefers_lowest_id_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    }

    #[test]
    fn top_k_orders_and_breaks_ties_by_id() {
        let v = top_k(&[0.5, 2.0, 2.0, -1.0, 3.0], 3);
        assert_eq!(v, vec![(4, 3.0), (1, 2.0), (2, 2.0)]);
    }

    #[test]
    fn sampling_is_seeded_and_respects_top_p() {
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            seed: 7,
            ..Default::default()
        };
        // Token 2 holds ~88 % of the mass: with top_p 0.5 only it can be drawn.
        let logits = [0.0, 1.0, 4.0, 0.5];
        let mut s = Sampler::new(&p, Sampler::derived_seed(&p, 0));
        assert!((0..50).all(|_| s.next(&logits) == 2));
        let full = SamplingParams {
            top_p: 1.0,
            ..p.clone()
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(&full, Sampler::derived_seed(&full, 3));
            (0..40).map(|_| s.next(&logits)).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(&full, Sampler::derived_seed(&full, 3));
            (0..40).map(|_| s.next(&logits)).collect()
        };
        assert_eq!(a, b);
        assert!(
            a.iter().any(|&t| t != 2),
            "temperature 1 must sometimes pick others"
        );
    }
}
