//! Steering sweeps: answers to the trait's evaluation questions with α·v added at a layer, for
//! every layer × α, judged for the trait and coherence. The evidence that a vector is the
//! trait's direction: the trait score should rise with α and fall with −α, and the
//! recommendation is the strongest change that still reads coherently.

use std::path::{Path, PathBuf};

use persona_engine::{Engine, Message};
use persona_io::LayerVectors;
use persona_traits::TraitSpec;
use serde::{Deserialize, Serialize};

use crate::answers::{answer_all, AnswerOptions, AnswerRequest, Steer};
use crate::PipelineError;

#[derive(Debug, Clone)]
pub struct SteerOptions {
    pub layers: Vec<usize>,
    /// α values; 0 (the unsteered baseline, shared by every layer) is always added.
    pub alphas: Vec<f32>,
    pub samples: usize,
    /// How many of the evaluation questions (0: all).
    pub questions: usize,
    pub answers: AnswerOptions,
    /// The recommendation only considers settings whose mean coherence is at least this.
    pub coherence_min: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SteerRow {
    pub layer: usize,
    pub alpha: f32,
    /// Mean judged trait score (0–100) of the answers.
    #[serde(rename = "trait")]
    pub trait_score: Option<f64>,
    pub trait_ci95: Option<(f64, f64)>,
    pub coherence: Option<f64>,
    /// Answers behind the means.
    pub n: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recommendation {
    pub layer: usize,
    pub alpha: f32,
    #[serde(rename = "trait")]
    pub trait_score: f64,
    pub coherence: Option<f64>,
    /// Trait score minus the unsteered baseline.
    pub trait_change: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerTrend {
    pub layer: usize,
    /// Spearman's ρ between α and the mean trait score over this layer's α values.
    pub spearman_rho: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SteerResult {
    pub rows: Vec<SteerRow>,
    /// `None` when no setting raised the trait at the coherence bar.
    pub recommended: Option<Recommendation>,
    pub trends: Vec<LayerTrend>,
    pub baseline_trait: Option<f64>,
    pub judge: String,
    pub coherence_scored: bool,
    pub coherence_min: f64,
    /// The Assistant-axis cap every answer ran under (`p25@15..22`), if any.
    pub cap: Option<String>,
    pub vector_file: PathBuf,
    pub answers_file: PathBuf,
    pub table_file: PathBuf,
    pub plot_file: PathBuf,
    pub out_dir: PathBuf,
}

/// One answer with its setting and scores, as written to `steer_answers.jsonl`.
#[derive(Serialize)]
struct ScoredAnswer<'a> {
    layer: Option<usize>,
    alpha: f32,
    question_index: usize,
    sample: usize,
    question: &'a str,
    answer: &'a str,
    #[serde(rename = "trait")]
    trait_score: Option<f64>,
    coherence: Option<f64>,
}

/// A short fingerprint of the vector's values at the swept layers: cached answers are reused
/// only for the same vector.
fn vector_fingerprint(vectors: &LayerVectors, layers: &[usize]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for &l in layers {
        if let Some(v) = vectors.layers.get(&l) {
            h.update((l as u64).to_le_bytes());
            for x in v {
                h.update(x.to_le_bytes());
            }
        }
    }
    hex::encode(&h.finalize()[..6])
}

/// Runs the sweep and writes `steer_answers.jsonl`, `steer.csv`, `steer.svg` and `steer.json`
/// to `out_dir` (answers and judgements are cached there: a rerun resumes).
pub fn steer_sweep(
    engine: &Engine,
    spec: &TraitSpec,
    source: crate::VectorSource,
    judge: &dyn persona_judges::Judge,
    opts: &SteerOptions,
    out_dir: &Path,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<SteerResult, PipelineError> {
    let (vectors, vector_file) = (source.vectors, source.file);
    crate::create_dir(out_dir)?;
    for &l in &opts.layers {
        vectors.get(l, vector_file)?;
    }
    let d = engine.config().d_model;
    if let Some(v) = vectors.layers.values().next() {
        if v.len() != d {
            return Err(PipelineError::VectorSize {
                path: vector_file.to_path_buf(),
                got: v.len(),
                want: d,
            });
        }
    }
    let questions: Vec<&String> = match opts.questions {
        0 => spec.evaluation_questions.iter().collect(),
        n => spec.evaluation_questions.iter().take(n).collect(),
    };
    let mut alphas: Vec<f32> = opts.alphas.iter().copied().filter(|a| *a != 0.0).collect();
    alphas.push(0.0);
    alphas.sort_by(f32::total_cmp);
    alphas.dedup();
    let fp = vector_fingerprint(vectors, &opts.layers);
    // Settings: the baseline once, then every layer × nonzero α.
    let mut settings: Vec<Option<Steer>> = vec![None];
    for &layer in &opts.layers {
        for &alpha in alphas.iter().filter(|a| **a != 0.0) {
            settings.push(Some(Steer { layer, alpha }));
        }
    }
    let mut requests = Vec::new();
    let mut slots = Vec::new();
    for s in &settings {
        for (qi, q) in questions.iter().enumerate() {
            for sample in 0..opts.samples.max(1) {
                let key = match s {
                    None => format!("base|q{qi}|s{sample}"),
                    Some(st) => format!("{fp}|L{}|a{}|q{qi}|s{sample}", st.layer, st.alpha),
                };
                requests.push(AnswerRequest {
                    key,
                    messages: vec![Message::new("user", q.as_str())],
                    steer: *s,
                });
                slots.push((*s, qi, sample));
            }
        }
    }
    let answers = answer_all(
        engine,
        &requests,
        &opts.answers,
        Some(vectors),
        None,
        &out_dir.join("answers_cache.jsonl"),
        &mut |d, t| progress("generate", d, t),
    )?;
    let judged = crate::judging::judge_answers(
        judge,
        spec,
        &requests,
        &answers,
        &out_dir.join("judgements.jsonl"),
        &mut |d, t| progress("judge", d, t),
    )?;
    let coherence_scored = judged.iter().any(|j| j.coherence.is_some());

    let table = slots
        .iter()
        .zip(&answers)
        .zip(&judged)
        .map(|(((s, qi, sample), a), j)| ScoredAnswer {
            layer: s.map(|s| s.layer),
            alpha: s.map_or(0.0, |s| s.alpha),
            question_index: *qi,
            sample: *sample,
            question: questions[*qi],
            answer: &a.text,
            trait_score: j.trait_score,
            coherence: j.coherence,
        });
    let answers_file = out_dir.join("steer_answers.jsonl");
    crate::write_jsonl(&answers_file, table)?;

    let summarize = |layer: usize, alpha: f32| -> SteerRow {
        let picked: Vec<&persona_judges::Judgement> = slots
            .iter()
            .zip(&judged)
            .filter(|((s, _, _), _)| match s {
                None => alpha == 0.0,
                Some(st) => st.layer == layer && st.alpha == alpha,
            })
            .map(|(_, j)| j)
            .collect();
        let traits: Vec<f64> = picked.iter().filter_map(|j| j.trait_score).collect();
        let coh: Vec<f64> = picked.iter().filter_map(|j| j.coherence).collect();
        let t = persona_core::stats::mean_ci95(&traits);
        SteerRow {
            layer,
            alpha,
            trait_score: t.map(|t| t.0),
            // Scores live in 0–100: so does the interval of their mean.
            trait_ci95: t
                .and_then(|t| t.1)
                .map(|(lo, hi)| (lo.max(0.0), hi.min(100.0))),
            coherence: persona_core::stats::mean_ci95(&coh).map(|c| c.0),
            n: picked.len(),
        }
    };
    let mut rows = Vec::new();
    let mut trends = Vec::new();
    for &layer in &opts.layers {
        let layer_rows: Vec<SteerRow> = alphas.iter().map(|&a| summarize(layer, a)).collect();
        let (xs, ys): (Vec<f64>, Vec<f64>) = layer_rows
            .iter()
            .filter_map(|r| r.trait_score.map(|t| (r.alpha as f64, t)))
            .unzip();
        trends.push(LayerTrend {
            layer,
            spearman_rho: persona_core::stats::spearman(&xs, &ys),
        });
        rows.extend(layer_rows);
    }
    let baseline_trait = summarize(usize::MAX, 0.0).trait_score;
    let recommended = rows
        .iter()
        .filter(|r| r.alpha > 0.0)
        .filter(|r| !coherence_scored || r.coherence.is_some_and(|c| c >= opts.coherence_min))
        .filter_map(|r| {
            let t = r.trait_score?;
            let change = t - baseline_trait?;
            (change > 0.0).then_some(Recommendation {
                layer: r.layer,
                alpha: r.alpha,
                trait_score: t,
                coherence: r.coherence,
                trait_change: change,
            })
        })
        .max_by(|a, b| a.trait_change.total_cmp(&b.trait_change));

    let table_file = out_dir.join("steer.csv");
    let mut csv = String::from("layer,alpha,trait,trait_ci95_lo,trait_ci95_hi,coherence,n\n");
    let num = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.2}"));
    for r in &rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            r.layer,
            r.alpha,
            num(r.trait_score),
            num(r.trait_ci95.map(|c| c.0)),
            num(r.trait_ci95.map(|c| c.1)),
            num(r.coherence),
            r.n
        ));
    }
    crate::write_file(&table_file, csv.as_bytes())?;
    let plot_file = out_dir.join("steer.svg");
    crate::write_file(
        &plot_file,
        sweep_plot(spec, &rows, opts, coherence_scored).as_bytes(),
    )?;
    let result = SteerResult {
        rows,
        recommended,
        trends,
        baseline_trait,
        judge: judge.id(),
        coherence_scored,
        coherence_min: opts.coherence_min,
        cap: opts.answers.cap.as_ref().map(|c| c.label()),
        vector_file: vector_file.to_path_buf(),
        answers_file,
        table_file,
        plot_file,
        out_dir: out_dir.to_path_buf(),
    };
    crate::write_json(&out_dir.join("steer.json"), &result)?;
    Ok(result)
}

/// Trait score (with its interval) and coherence against α, one pair of lines per layer.
fn sweep_plot(spec: &TraitSpec, rows: &[SteerRow], opts: &SteerOptions, coherence: bool) -> String {
    use persona_report::svg::{Chart, Point, Series, SeriesKind};
    let mut chart = Chart::new(
        format!("Steering along the {} vector", spec.name),
        "α (multiple of the vector added at every position)",
        "judged score (0–100)",
    )
    .with_y_range(0.0, 100.0);
    for &layer in &opts.layers {
        let of_layer = || rows.iter().filter(move |r| r.layer == layer);
        let trait_points = of_layer()
            .filter_map(|r| {
                let p = Point::new(r.alpha as f64, r.trait_score?);
                Some(match r.trait_ci95 {
                    Some((lo, hi)) => p.with_err(lo, hi),
                    None => p,
                })
            })
            .collect();
        chart = chart.with_series(Series::new(
            format!("{} · layer {layer}", spec.name),
            SeriesKind::LineMarkers,
            trait_points,
        ));
        if coherence {
            let points = of_layer()
                .filter_map(|r| Some(Point::new(r.alpha as f64, r.coherence?)))
                .collect();
            chart = chart.with_series(Series::new(
                format!("coherence · layer {layer}"),
                SeriesKind::Line,
                points,
            ));
        }
    }
    if coherence {
        chart = chart.with_hline(
            opts.coherence_min,
            format!("coherence {}", opts.coherence_min),
        );
    }
    chart.to_svg()
}
