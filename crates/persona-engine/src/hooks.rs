//! Hook points, token spans, captures and interventions: plain data handed to a forward call.
//!
//! Names follow TransformerLens without the `hook_` prefix (`blocks.{l}.resid_post`); `layer` is
//! always the 0-based decoder block index.

use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// A named point inside a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookPoint {
    /// Block input.
    ResidPre,
    /// Output of the attention projection, before the residual add.
    AttnOut,
    /// After the attention residual add.
    ResidMid,
    /// Output of the MLP, before the residual add.
    MlpOut,
    /// Block output after the MLP residual add (llama.cpp's `l_out`): the default point.
    ResidPost,
}

impl HookPoint {
    pub const ALL: [HookPoint; 5] = [
        HookPoint::ResidPre,
        HookPoint::AttnOut,
        HookPoint::ResidMid,
        HookPoint::MlpOut,
        HookPoint::ResidPost,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HookPoint::ResidPre => "resid_pre",
            HookPoint::AttnOut => "attn_out",
            HookPoint::ResidMid => "resid_mid",
            HookPoint::MlpOut => "mlp_out",
            HookPoint::ResidPost => "resid_post",
        }
    }
}

/// `blocks.{layer}.{point}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HookSite {
    pub layer: usize,
    pub point: HookPoint,
}

impl HookSite {
    pub fn resid_post(layer: usize) -> Self {
        HookSite {
            layer,
            point: HookPoint::ResidPost,
        }
    }
}

impl fmt::Display for HookSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blocks.{}.{}", self.layer, self.point.name())
    }
}

impl FromStr for HookSite {
    type Err = EngineError;

    /// Accepts `blocks.12.resid_post`, or a bare layer number meaning its `resid_post`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(layer) = s.parse::<usize>() {
            return Ok(HookSite::resid_post(layer));
        }
        let parts: Vec<&str> = s.split('.').collect();
        let bad = || EngineError::UnknownHookPoint(s.to_string());
        if parts.len() != 3 || parts[0] != "blocks" {
            return Err(bad());
        }
        let layer = parts[1].parse().map_err(|_| bad())?;
        let point = HookPoint::ALL
            .into_iter()
            .find(|p| p.name() == parts[2])
            .ok_or_else(bad)?;
        Ok(HookSite { layer, point })
    }
}

/// Which positions of a sequence something applies to, in the sequence's own coordinates
/// (position 0 is its first real token; padding is never selected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Span {
    All,
    /// Positions `0..prompt_len`.
    Prompt,
    /// Positions `prompt_len..`: the response when teacher-forced, the new tokens when generating.
    Generated,
    /// Position `prompt_len - 1`.
    LastPrompt,
    /// Positions `start..end`.
    Range {
        start: usize,
        end: usize,
    },
    /// Every position except the first: leaves out the massive activation at position 0.
    AllButFirst,
}

impl Span {
    pub fn contains(self, pos: usize, prompt_len: usize) -> bool {
        match self {
            Span::All => true,
            Span::Prompt => pos < prompt_len,
            Span::Generated => pos >= prompt_len,
            Span::LastPrompt => prompt_len > 0 && pos == prompt_len - 1,
            Span::Range { start, end } => pos >= start && pos < end,
            Span::AllButFirst => pos > 0,
        }
    }
}

impl FromStr for Span {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "all" => Span::All,
            "prompt" => Span::Prompt,
            "generated" | "response" => Span::Generated,
            "last_prompt" => Span::LastPrompt,
            "all_but_first" => Span::AllButFirst,
            other => {
                let (a, b) = other.split_once("..").ok_or_else(|| {
                    EngineError::InvalidRequest(format!(
                        "unknown span `{other}`: use all, prompt, generated, last_prompt, all_but_first or START..END"
                    ))
                })?;
                let parse = |x: &str| {
                    x.parse::<usize>().map_err(|_| {
                        EngineError::InvalidRequest(format!("bad span bound `{x}` in `{other}`"))
                    })
                };
                let (start, end) = (parse(a)?, parse(b)?);
                if start >= end {
                    return Err(EngineError::InvalidRequest(format!(
                        "span `{other}` is empty: START..END covers positions START to END − 1, so END must be greater than START (e.g. {start}..{})",
                        start.saturating_add(1)
                    )));
                }
                Span::Range { start, end }
            }
        })
    }
}

/// What an intervention does to the hidden state h (u = v / ‖v‖).
#[derive(Debug, Clone)]
pub enum InterventionKind {
    /// h ← h + α·v (v raw).
    Add { vector: Tensor, alpha: f32 },
    /// h ← h + u·max(τ − h·u, 0).
    CapFloor { direction: Tensor, tau: f32 },
    /// h ← h − u·max(h·u − τ, 0).
    CapCeiling { direction: Tensor, tau: f32 },
    /// h ← h − (h·u)·u.
    Ablate { direction: Tensor },
}

/// One intervention at one hook site. `sequences = None` applies it to every sequence of the
/// batch; otherwise only to the listed batch rows.
#[derive(Debug, Clone)]
pub struct Intervention {
    pub site: HookSite,
    pub kind: InterventionKind,
    pub span: Span,
    pub sequences: Option<Vec<usize>>,
}

impl Intervention {
    pub fn add(site: HookSite, vector: Tensor, alpha: f32, span: Span) -> Self {
        Intervention {
            site,
            kind: InterventionKind::Add { vector, alpha },
            span,
            sequences: None,
        }
    }

    /// h ← h + α·v from plain values, so callers above the engine never build tensors. A
    /// non-finite α or vector value is refused: it would turn every later state into NaN.
    pub fn add_values(
        site: HookSite,
        values: &[f32],
        alpha: f32,
        span: Span,
    ) -> Result<Self, EngineError> {
        check_finite_scalar("the steering α", alpha)?;
        Ok(Self::add(
            site,
            finite_tensor(values, "steering")?,
            alpha,
            span,
        ))
    }

    /// A floor (`ceiling = false`) or ceiling at τ along `direction`, from plain values.
    pub fn cap_values(
        site: HookSite,
        direction: &[f32],
        tau: f32,
        ceiling: bool,
        span: Span,
    ) -> Result<Self, EngineError> {
        check_finite_scalar("the cap threshold τ", tau)?;
        let direction = finite_tensor(direction, "cap")?;
        let kind = match ceiling {
            false => InterventionKind::CapFloor { direction, tau },
            true => InterventionKind::CapCeiling { direction, tau },
        };
        Ok(Intervention {
            site,
            kind,
            span,
            sequences: None,
        })
    }

    /// h ← h − (h·u)·u along `direction`, from plain values.
    pub fn ablate_values(
        site: HookSite,
        direction: &[f32],
        span: Span,
    ) -> Result<Self, EngineError> {
        Ok(Intervention {
            site,
            kind: InterventionKind::Ablate {
                direction: finite_tensor(direction, "ablation")?,
            },
            span,
            sequences: None,
        })
    }

    /// Only these rows of the batch.
    pub fn for_sequences(mut self, rows: Vec<usize>) -> Self {
        self.sequences = Some(rows);
        self
    }
}

pub(crate) fn check_finite_scalar(what: &str, x: f32) -> Result<(), EngineError> {
    if x.is_finite() {
        return Ok(());
    }
    Err(EngineError::InvalidRequest(format!(
        "{what} is {x}: give a finite number"
    )))
}

/// A CPU tensor of `values` (the hook plan moves it to the model's device), refusing NaN and
/// infinities with the index of the first one.
fn finite_tensor(values: &[f32], what: &str) -> Result<Tensor, EngineError> {
    if let Some(i) = values.iter().position(|x| !x.is_finite()) {
        return Err(EngineError::InvalidRequest(format!(
            "the {what} vector has a non-finite value ({}) at index {i}: the vector file is corrupt or was made from NaN activations",
            values[i]
        )));
    }
    Ok(Tensor::from_slice(
        values,
        values.len(),
        &candle_core::Device::Cpu,
    )?)
}

/// What to read out of a forward pass. Everything is reduced while streaming; full per-token
/// activations only when `full` is asked for.
#[derive(Debug, Clone, Default)]
pub struct CaptureSpec {
    pub sites: Vec<HookSite>,
    /// Means over these spans at every site.
    pub means: Vec<Span>,
    /// The state at the last prompt token at every site.
    pub last_prompt: bool,
    /// Per-token projections h·v/‖v‖ onto these vectors (`[k, d]`) at every site.
    pub projections: Option<Tensor>,
    /// Full per-token states at every site (opt-in: T × d floats per site and sequence).
    pub full: bool,
}

impl CaptureSpec {
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// Means over the response tokens at `resid_post` of the given layers.
    pub fn response_means(layers: impl IntoIterator<Item = usize>) -> Self {
        CaptureSpec {
            sites: layers.into_iter().map(HookSite::resid_post).collect(),
            means: vec![Span::Generated],
            ..Default::default()
        }
    }
}

/// What was captured for one sequence at one site.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SiteCapture {
    /// One entry per span of `CaptureSpec::means`: the mean vector, or `None` if no position of
    /// the sequence fell in the span.
    pub means: Vec<Option<Vec<f32>>>,
    /// Token counts behind each mean.
    pub counts: Vec<usize>,
    pub last_prompt: Option<Vec<f32>>,
    /// `[positions][k]` projections, in position order.
    pub projections: Vec<Vec<f32>>,
    /// `[positions][d]` states, in position order.
    pub full: Vec<Vec<f32>>,
}

/// Captures of one sequence, in the order of `CaptureSpec::sites`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SequenceCaptures {
    pub sites: Vec<(HookSite, SiteCapture)>,
}

impl SequenceCaptures {
    pub fn get(&self, site: HookSite) -> Option<&SiteCapture> {
        self.sites.iter().find(|(s, _)| *s == site).map(|(_, c)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_empty_ranges_are_refused() {
        assert!(matches!(
            "3..7".parse::<Span>(),
            Ok(Span::Range { start: 3, end: 7 })
        ));
        assert!(matches!("generated".parse::<Span>(), Ok(Span::Generated)));
        for bad in ["50..10", "5..5"] {
            let e = bad.parse::<Span>().unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("empty"), "{e}");
        }
        let e = "1..x".parse::<Span>().unwrap_err().to_string();
        assert!(e.contains("`x`"), "{e}");
    }
}
