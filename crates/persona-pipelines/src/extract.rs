//! Persona vectors from contrastive conversations: the mean activation of trait-expressing
//! ("pos") conversations minus that of the others ("neg"), at every layer's `resid_post`.
//!
//! Three readings, as the Persona Vectors method defines them: `response_avg` (mean over the
//! assistant response's tokens; the one to steer and monitor with), `prompt_avg` (mean over the
//! prompt's tokens, position 0 included as in the reference code) and `prompt_last` (the last
//! prompt token). Each side's value is the mean of per-conversation means.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use persona_engine::{CaptureSpec, Engine, ForwardRequest, HookSite, Message, Span, TokenSequence};

use crate::PipelineError;
use serde::{Deserialize, Serialize};

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
        let per_sample = |pick: &dyn Fn(&persona_engine::SiteCapture) -> Option<&Vec<f32>>| {
            let vs: Vec<&[f32]> = outs
                .iter()
                .filter_map(|o| o.captures.get(site).and_then(pick).map(|v| v.as_slice()))
                .collect();
            persona_core::mean(vs).unwrap_or_default()
        };
        result[0].push(per_sample(&|c| c.means[0].as_ref()));
        result[1].push(per_sample(&|c| c.means[1].as_ref()));
        result[2].push(per_sample(&|c| c.last_prompt.as_ref()));
    }
    Ok(result)
}

/// Extracts the three vectors from `pos` and `neg` conversations and writes
/// `<out_dir>/<name>_<method>.safetensors`.
pub fn extract_from_conversations(
    engine: &Engine,
    pos: &[Vec<Message>],
    neg: &[Vec<Message>],
    name: &str,
    out_dir: &Path,
    progress: &mut dyn FnMut(usize),
) -> Result<ExtractResult, PipelineError> {
    crate::create_dir(out_dir)?;
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
        let meta = crate::VectorMeta {
            kind: "trait",
            name,
            method,
            model: &model,
            n_pos: pos.len(),
            n_neg: Some(neg.len()),
        };
        let v = crate::persona_vectors(diffs, &meta);
        let path = out_dir.join(format!("{name}_{method}.safetensors"));
        v.save(&path)?;
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
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Filter {
    /// Positive rollouts need a trait score at least this.
    pub pos_min: f64,
    /// Negative rollouts need a trait score below this.
    pub neg_max: f64,
    /// Both need coherence at least this (when the judge scores coherence).
    pub coherence_min: f64,
}

#[derive(Debug, Clone)]
pub struct TraitExtractOptions {
    pub rollouts: crate::rollouts::RolloutOptions,
    /// `None`: keep every rollout.
    pub filter: Option<Filter>,
    /// Fewer survivors than this on either side is an error, not a silently weak vector.
    pub min_kept: usize,
}

/// A rollout with its judgement, as written to `judged.jsonl`.
#[derive(Debug, Clone, Serialize)]
struct Judged<'a> {
    #[serde(flatten)]
    rollout: &'a crate::rollouts::Rollout,
    trait_score: Option<f64>,
    coherence: Option<f64>,
    kept: bool,
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

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = xs.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The whole method for one trait: rollouts (cached, resumable), judgements (cached), the
/// filter, then the vectors from the kept conversations. Files go to `run_dir`:
/// `rollouts.jsonl`, `judgements.jsonl` (cache), `judged.jsonl` (every rollout with its
/// scores), the vector files, and `run.json`.
pub fn extract_trait(
    engine: &Engine,
    spec: &persona_traits::TraitSpec,
    judge: &dyn persona_judges::Judge,
    opts: &TraitExtractOptions,
    run_dir: &Path,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<TraitExtractResult, PipelineError> {
    use crate::rollouts::{run_rollouts, Side};
    crate::create_dir(run_dir)?;
    let rollouts = run_rollouts(
        engine,
        spec,
        &opts.rollouts,
        &run_dir.join("rollouts.jsonl"),
        &mut |d, t| progress("rollouts", d, t),
    )?;
    let items: Vec<(String, String)> = rollouts
        .iter()
        .map(|r| (r.question.clone(), r.answer.clone()))
        .collect();
    let judged = crate::judging::judge_cached(
        judge,
        spec,
        &items,
        &run_dir.join("judgements.jsonl"),
        &mut |d, t| progress("judge", d, t),
    )?;
    let judge_id = judge.id();
    let coherence_scored = judged.iter().any(|j| j.coherence.is_some());
    let keep = |r: &crate::rollouts::Rollout, j: &persona_judges::Judgement| -> bool {
        let Some(f) = opts.filter else { return true };
        let coherent = j.coherence.is_none_or(|c| c >= f.coherence_min);
        match (r.side, j.trait_score) {
            (Side::Pos, Some(t)) => t >= f.pos_min && coherent,
            (Side::Neg, Some(t)) => t < f.neg_max && coherent,
            (_, None) => false,
        }
    };
    let kept: Vec<bool> = rollouts
        .iter()
        .zip(&judged)
        .map(|(r, j)| keep(r, j))
        .collect();
    let table = rollouts
        .iter()
        .zip(&judged)
        .zip(&kept)
        .map(|((r, j), &k)| Judged {
            rollout: r,
            trait_score: j.trait_score,
            coherence: j.coherence,
            kept: k,
        });
    crate::write_jsonl(&run_dir.join("judged.jsonl"), table)?;
    let side_convs = |side: Side| -> Vec<Vec<Message>> {
        rollouts
            .iter()
            .zip(&kept)
            .filter(|(r, &k)| k && r.side == side)
            .map(|(r, _)| r.messages())
            .collect()
    };
    let (pos, neg) = (side_convs(Side::Pos), side_convs(Side::Neg));
    if pos.len() < opts.min_kept || neg.len() < opts.min_kept {
        return Err(PipelineError::TooFewSurvivors {
            pos: pos.len(),
            neg: neg.len(),
            min: opts.min_kept,
        });
    }
    let side_mean = |side: Side| {
        mean(
            rollouts
                .iter()
                .zip(&judged)
                .filter(|(r, _)| r.side == side)
                .filter_map(|(_, j)| j.trait_score),
        )
    };
    progress("extract", 0, pos.len() + neg.len());
    let vectors = extract_from_conversations(engine, &pos, &neg, &spec.name, run_dir, &mut |_| {})?;
    let result = TraitExtractResult {
        vectors,
        rollouts: rollouts.len(),
        judge: judge_id,
        coherence_scored,
        filter: opts.filter,
        kept_pos: pos.len(),
        kept_neg: neg.len(),
        mean_trait_pos: side_mean(Side::Pos),
        mean_trait_neg: side_mean(Side::Neg),
        run_dir: run_dir.to_path_buf(),
    };
    crate::write_json(&run_dir.join("run.json"), &result)?;
    Ok(result)
}
