//! Persona vectors from contrastive conversations: the mean activation of trait-expressing
//! ("pos") conversations minus that of the others ("neg"), at every layer's `resid_post`.
//!
//! Three readings, as the Persona Vectors method defines them: `response_avg` (mean over the
//! assistant response's tokens; the one to steer and monitor with), `prompt_avg` (mean over the
//! prompt's tokens, position 0 included as in the reference code) and `prompt_last` (the last
//! prompt token). Each side's value is the mean of per-conversation means.

pub mod rollouts;

use std::collections::BTreeMap;
use std::path::PathBuf;

use persona_engine::{CaptureSpec, Engine, ForwardRequest, HookSite, Message, Span, TokenSequence};
use serde::{Deserialize, Serialize};

use crate::store::RunStore;
use crate::{PipelineError, RunDir, VectorMeta};
use rollouts::{Rollout, Side};

/// The readings a vector can be taken from.
pub const METHODS: [&str; 3] = ["response_avg", "prompt_avg", "prompt_last"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtractResult {
    /// The `response_avg` file (the one to steer with).
    pub vector_file: PathBuf,
    /// Every method's file.
    pub files: BTreeMap<String, PathBuf>,
    pub layers: usize,
    pub n_pos: usize,
    pub n_neg: usize,
    /// ‖v‖ per layer for each method.
    pub norms: BTreeMap<String, Vec<f64>>,
}

/// Splits a conversation into (context, response): the last message must be the assistant's.
fn as_sequence(engine: &Engine, conv: &[Message]) -> Result<TokenSequence, String> {
    let (last, context) = conv
        .split_last()
        .ok_or_else(|| "it has no messages".to_string())?;
    if last.role != "assistant" {
        return Err(format!(
            "its last message is from `{}`; it must be the assistant response the vector is read from",
            last.role
        ));
    }
    if context.is_empty() {
        return Err("it has no prompt before the assistant response".into());
    }
    engine
        .chat_with_response(context, &last.content)
        .map_err(|e| e.to_string())
}

/// Per-side means of per-conversation means, for each method, at every layer.
fn side_means(
    engine: &Engine,
    convs: &[Vec<Message>],
    side: &'static str,
    progress: &mut dyn FnMut(usize),
) -> Result<[Vec<Vec<f32>>; 3], PipelineError> {
    let seqs = convs
        .iter()
        .enumerate()
        .map(|(index, c)| {
            as_sequence(engine, c).map_err(|message| PipelineError::Conversation {
                side,
                index,
                message,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n_layers = engine.config().n_layers;
    let req = ForwardRequest {
        captures: CaptureSpec {
            sites: (0..n_layers).map(HookSite::resid_post).collect(),
            means: vec![Span::Generated, Span::Prompt],
            last_prompt: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let outs = engine.forward_batch(&seqs, &req, progress)?;
    let mut result: [Vec<Vec<f32>>; 3] = Default::default();
    for l in 0..n_layers {
        let site = HookSite::resid_post(l);
        let per_sample = |method: usize,
                          pick: &dyn Fn(&persona_engine::SiteCapture) -> Option<&Vec<f32>>|
         -> Result<Vec<f32>, PipelineError> {
            let vs: Vec<&[f32]> = outs
                .iter()
                .filter_map(|o| o.captures.get(site).and_then(pick).map(|v| v.as_slice()))
                .collect();
            persona_core::mean(vs).ok_or_else(|| {
                PipelineError::Input(format!(
                    "no {side} conversation has tokens to read `{}` from (are all its responses empty?): give conversations with non-empty assistant responses",
                    METHODS[method]
                ))
            })
        };
        result[0].push(per_sample(0, &|c| c.means[0].as_ref())?);
        result[1].push(per_sample(1, &|c| c.means[1].as_ref())?);
        result[2].push(per_sample(2, &|c| c.last_prompt.as_ref())?);
    }
    Ok(result)
}

/// Extracts the three vectors from `pos` and `neg` conversations and puts
/// `<name>_<method>.safetensors` in `store`. A side whose responses are all empty has no
/// response tokens to average: that is an error, not a zero-length vector.
pub fn extract_from_conversations(
    engine: &Engine,
    pos: &[Vec<Message>],
    neg: &[Vec<Message>],
    name: &str,
    store: &dyn RunStore,
    progress: &mut dyn FnMut(usize),
) -> Result<ExtractResult, PipelineError> {
    let p = side_means(engine, pos, "pos", progress)?;
    let n = side_means(engine, neg, "neg", progress)?;
    let model = engine.model_id()?;
    let mut files = BTreeMap::new();
    let mut norms = BTreeMap::new();
    for (k, method) in METHODS.iter().enumerate() {
        let diffs: Vec<Vec<f32>> = p[k]
            .iter()
            .zip(&n[k])
            .map(|(a, b)| persona_core::sub(a, b))
            .collect();
        let layer_norms: Vec<f64> = diffs.iter().map(|d| persona_core::norm(d)).collect();
        let meta = VectorMeta::new("trait", name, method, &model, pos.len()).with_n_neg(neg.len());
        let path = crate::put_vectors(
            store,
            &RunDir::vector_file_name(name, method),
            &meta.vectors(diffs),
        )?;
        files.insert(method.to_string(), path);
        norms.insert(method.to_string(), layer_norms);
    }
    Ok(ExtractResult {
        vector_file: files["response_avg"].clone(),
        files,
        layers: engine.config().n_layers,
        n_pos: pos.len(),
        n_neg: neg.len(),
        norms,
    })
}

/// Which rollouts a trait extraction keeps.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Filter {
    /// Positive rollouts need a trait score at least this.
    pub pos_min: f64,
    /// Negative rollouts need a trait score below this.
    pub neg_max: f64,
    /// Both need coherence at least this (when the judge scores coherence).
    pub coherence_min: f64,
}

impl Filter {
    /// Whether a rollout with this judgement is kept.
    pub fn keeps(&self, side: Side, j: &persona_judges::Judgement) -> bool {
        let coherent = j.coherence.is_none_or(|c| c >= self.coherence_min);
        match (side, j.trait_score) {
            (Side::Pos, Some(t)) => t >= self.pos_min && coherent,
            (Side::Neg, Some(t)) => t < self.neg_max && coherent,
            (_, None) => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TraitExtractOptions {
    pub rollouts: rollouts::RolloutOptions,
    /// `None`: keep every rollout.
    pub filter: Option<Filter>,
    /// Fewer survivors than this on either side is an error, not a silently weak vector.
    pub min_kept: usize,
}

/// A rollout with its judgement, as written to `judged.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JudgedRollout {
    #[serde(flatten)]
    pub rollout: Rollout,
    pub trait_score: Option<f64>,
    pub coherence: Option<f64>,
    pub kept: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TraitExtractResult {
    #[serde(flatten)]
    pub vectors: ExtractResult,
    pub rollouts: usize,
    pub judge: String,
    pub coherence_scored: bool,
    pub filter: Option<Filter>,
    pub kept_pos: usize,
    pub kept_neg: usize,
    pub mean_trait_pos: Option<f64>,
    pub mean_trait_neg: Option<f64>,
    pub run_dir: PathBuf,
}

/// The name `extract` gives its result in the run folder.
pub const RESULT_FILE: &str = "run.json";

/// What the filter made of the judged rollouts: a pure function of rollouts and judgements.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub judged: Vec<JudgedRollout>,
    pub kept_pos: usize,
    pub kept_neg: usize,
    pub mean_trait_pos: Option<f64>,
    pub mean_trait_neg: Option<f64>,
    pub coherence_scored: bool,
}

impl Selection {
    /// The kept conversations of one side, the vector is read from.
    pub fn conversations(&self, side: Side) -> Vec<Vec<Message>> {
        self.judged
            .iter()
            .filter(|j| j.kept && j.rollout.side == side)
            .map(|j| j.rollout.messages())
            .collect()
    }
}

/// Applies the filter (or keeps everything) and sums up each side's judged trait score.
pub fn select(
    rollouts: Vec<Rollout>,
    judgements: &[persona_judges::Judgement],
    filter: Option<Filter>,
) -> Selection {
    let judged: Vec<JudgedRollout> = rollouts
        .into_iter()
        .zip(judgements)
        .map(|(r, j)| JudgedRollout {
            kept: filter.is_none_or(|f| f.keeps(r.side, j)),
            trait_score: j.trait_score,
            coherence: j.coherence,
            rollout: r,
        })
        .collect();
    let count = |side: Side| {
        judged
            .iter()
            .filter(|j| j.kept && j.rollout.side == side)
            .count()
    };
    let side_mean = |side: Side| {
        crate::mean_and_ci(
            judged
                .iter()
                .filter(|j| j.rollout.side == side)
                .filter_map(|j| j.trait_score),
        )
        .0
    };
    Selection {
        kept_pos: count(Side::Pos),
        kept_neg: count(Side::Neg),
        mean_trait_pos: side_mean(Side::Pos),
        mean_trait_neg: side_mean(Side::Neg),
        coherence_scored: judgements.iter().any(|j| j.coherence.is_some()),
        judged,
    }
}

/// The whole method for one trait: rollouts (cached, resumable), judgements (cached), the
/// filter, then the vectors from the kept conversations. Artifacts go to `store` (the trait's
/// run folder): `rollouts.jsonl`, `judgements.jsonl` (caches), `judged.jsonl` (every rollout
/// with its scores), the vector files, and `run.json`.
pub fn extract_trait(
    engine: &Engine,
    spec: &persona_traits::TraitSpec,
    judge: &dyn persona_judges::Judge,
    opts: &TraitExtractOptions,
    store: &dyn RunStore,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<TraitExtractResult, PipelineError> {
    let rollouts = rollouts::run_rollouts(engine, spec, &opts.rollouts, store, &mut |d, t| {
        progress("rollouts", d, t)
    })?;
    let items: Vec<(String, String)> = rollouts
        .iter()
        .map(|r| (r.question.clone(), r.answer.clone()))
        .collect();
    let judged = crate::judging::judge_cached(
        &crate::judging::JudgeJob::new(judge, spec, &items, store),
        &mut |d, t| progress("judge", d, t),
    )?;
    let selection = select(rollouts, &judged, opts.filter);
    crate::store::put_jsonl(store, "judged.jsonl", &selection.judged)?;
    let (pos, neg) = (
        selection.conversations(Side::Pos),
        selection.conversations(Side::Neg),
    );
    if pos.len() < opts.min_kept || neg.len() < opts.min_kept {
        return Err(PipelineError::TooFewSurvivors {
            pos: pos.len(),
            neg: neg.len(),
            min: opts.min_kept,
        });
    }
    progress("extract", 0, pos.len() + neg.len());
    let vectors = extract_from_conversations(engine, &pos, &neg, &spec.name, store, &mut |_| {})?;
    let result = TraitExtractResult {
        vectors,
        rollouts: selection.judged.len(),
        judge: judge.id(),
        coherence_scored: selection.coherence_scored,
        filter: opts.filter,
        kept_pos: selection.kept_pos,
        kept_neg: selection.kept_neg,
        mean_trait_pos: selection.mean_trait_pos,
        mean_trait_neg: selection.mean_trait_neg,
        run_dir: store.dir(),
    };
    crate::store::put_json(store, RESULT_FILE, &result)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use persona_judges::Judgement;

    fn rollout(side: Side, i: usize) -> Rollout {
        Rollout {
            side,
            pair: 0,
            question_index: i,
            sample: 0,
            system: "s".into(),
            question: format!("q{i}"),
            answer: format!("a{i}"),
        }
    }

    fn j(t: Option<f64>, c: Option<f64>) -> Judgement {
        Judgement {
            trait_score: t,
            coherence: c,
        }
    }

    #[test]
    fn the_filter_keeps_contrasting_coherent_rollouts_and_sums_each_side() {
        let rollouts = vec![
            rollout(Side::Pos, 0),
            rollout(Side::Pos, 1),
            rollout(Side::Pos, 2),
            rollout(Side::Neg, 0),
            rollout(Side::Neg, 1),
        ];
        let judged = [
            j(Some(80.0), Some(90.0)),
            j(Some(40.0), Some(90.0)),
            j(Some(95.0), Some(20.0)),
            j(Some(10.0), None),
            j(None, Some(90.0)),
        ];
        let filter = Filter {
            pos_min: 50.0,
            neg_max: 50.0,
            coherence_min: 50.0,
        };
        let s = select(rollouts.clone(), &judged, Some(filter));
        assert_eq!(
            s.judged.iter().map(|j| j.kept).collect::<Vec<_>>(),
            [true, false, false, true, false]
        );
        assert_eq!((s.kept_pos, s.kept_neg), (1, 1));
        assert!((s.mean_trait_pos.unwrap() - 215.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.mean_trait_neg, Some(10.0));
        assert!(s.coherence_scored);
        assert_eq!(s.conversations(Side::Pos)[0][2].content, "a0");
        let all = select(rollouts, &judged, None);
        assert_eq!((all.kept_pos, all.kept_neg), (3, 2));
    }
}
