//! Steering sweeps: answers to the trait's evaluation questions with α·v added at a layer, for
//! every layer × α, judged for the trait and coherence. The evidence that a vector is the
//! trait's direction: the trait score should rise with α and fall with −α, and the
//! recommendation is the strongest change that still reads coherently.

use std::path::PathBuf;

use persona_engine::{Engine, Message};
use persona_io::LayerVectors;
use persona_traits::TraitSpec;
use serde::{Deserialize, Serialize};

use crate::answers::{answer_all, AnswerJob, AnswerOptions, AnswerRequest, Steer};
use crate::store::RunStore;
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recommendation {
    pub layer: usize,
    pub alpha: f32,
    #[serde(rename = "trait")]
    pub trait_score: f64,
    pub coherence: Option<f64>,
    /// Trait score minus the unsteered baseline.
    pub trait_change: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoredAnswer {
    /// `None` for the unsteered baseline.
    pub layer: Option<usize>,
    pub alpha: f32,
    pub question_index: usize,
    pub sample: usize,
    pub question: String,
    pub answer: String,
    #[serde(rename = "trait")]
    pub trait_score: Option<f64>,
    pub coherence: Option<f64>,
}

/// The name `steer` gives its result in its folder.
pub const RESULT_FILE: &str = "steer.json";
/// Every answer with its setting and scores.
pub const ANSWERS_FILE: &str = "steer_answers.jsonl";

/// The layers steered when none are named: a third, half and two thirds of the depth.
pub fn default_layers(n_layers: usize) -> Vec<usize> {
    vec![n_layers / 3, n_layers / 2, 2 * n_layers / 3]
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

/// One answer to produce: its setting (`None`: unsteered), question and sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slot {
    pub steer: Option<Steer>,
    pub question_index: usize,
    pub sample: usize,
}

/// What a sweep asks the model: the α values (0 included), the questions and every answer's
/// slot with its request.
#[derive(Debug, Clone)]
pub struct SteerPlan {
    pub alphas: Vec<f32>,
    pub questions: Vec<String>,
    pub slots: Vec<Slot>,
    pub requests: Vec<AnswerRequest>,
}

/// Plans the sweep: the baseline once, then every layer × nonzero α, for every question and
/// sample. `fingerprint` names the vector in the cache keys.
pub fn plan(spec: &TraitSpec, opts: &SteerOptions, fingerprint: &str) -> SteerPlan {
    let questions = spec.first_evaluation_questions(opts.questions);
    let mut alphas: Vec<f32> = opts.alphas.iter().copied().filter(|a| *a != 0.0).collect();
    alphas.push(0.0);
    alphas.sort_by(f32::total_cmp);
    alphas.dedup();
    let mut settings: Vec<Option<Steer>> = vec![None];
    for &layer in &opts.layers {
        for &alpha in alphas.iter().filter(|a| **a != 0.0) {
            settings.push(Some(Steer { layer, alpha }));
        }
    }
    let mut slots = Vec::new();
    let mut requests = Vec::new();
    for s in &settings {
        for (qi, q) in questions.iter().enumerate() {
            for sample in 0..opts.samples {
                let key = match s {
                    None => format!("base|q{qi}|s{sample}"),
                    Some(st) => {
                        format!("{fingerprint}|L{}|a{}|q{qi}|s{sample}", st.layer, st.alpha)
                    }
                };
                requests.push(AnswerRequest {
                    key,
                    messages: vec![Message::new("user", q.as_str())],
                    steer: *s,
                });
                slots.push(Slot {
                    steer: *s,
                    question_index: qi,
                    sample,
                });
            }
        }
    }
    SteerPlan {
        alphas,
        questions,
        slots,
        requests,
    }
}

/// The sweep's numbers: per-setting means, the trend per layer, the baseline and the
/// recommendation.
#[derive(Debug, Clone, PartialEq)]
pub struct SteerSummary {
    pub rows: Vec<SteerRow>,
    pub trends: Vec<LayerTrend>,
    pub baseline_trait: Option<f64>,
    pub recommended: Option<Recommendation>,
    pub coherence_scored: bool,
}

/// Summarises scored answers: a pure function of the answers' settings and judgements.
pub fn summarise(
    answers: &[ScoredAnswer],
    layers: &[usize],
    alphas: &[f32],
    coherence_min: f64,
) -> SteerSummary {
    let coherence_scored = answers.iter().any(|a| a.coherence.is_some());
    let row = |layer: Option<usize>, alpha: f32| -> SteerRow {
        let picked: Vec<&ScoredAnswer> = answers
            .iter()
            .filter(|a| match a.layer {
                None => alpha == 0.0,
                Some(l) => Some(l) == layer && a.alpha == alpha,
            })
            .collect();
        let traits: Vec<f64> = picked.iter().filter_map(|a| a.trait_score).collect();
        let coh: Vec<f64> = picked.iter().filter_map(|a| a.coherence).collect();
        let t = persona_core::stats::mean_ci95(&traits);
        SteerRow {
            layer: layer.unwrap_or(usize::MAX),
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
    for &layer in layers {
        let layer_rows: Vec<SteerRow> = alphas.iter().map(|&a| row(Some(layer), a)).collect();
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
    let baseline_trait = row(None, 0.0).trait_score;
    let recommended = recommend(&rows, baseline_trait, coherence_scored, coherence_min);
    SteerSummary {
        rows,
        trends,
        baseline_trait,
        recommended,
        coherence_scored,
    }
}

/// The largest rise in trait score over the baseline among positive α whose mean coherence
/// clears the bar (when coherence is scored).
fn recommend(
    rows: &[SteerRow],
    baseline: Option<f64>,
    coherence_scored: bool,
    coherence_min: f64,
) -> Option<Recommendation> {
    rows.iter()
        .filter(|r| r.alpha > 0.0)
        .filter(|r| !coherence_scored || r.coherence.is_some_and(|c| c >= coherence_min))
        .filter_map(|r| {
            let t = r.trait_score?;
            let change = t - baseline?;
            (change > 0.0).then_some(Recommendation {
                layer: r.layer,
                alpha: r.alpha,
                trait_score: t,
                coherence: r.coherence,
                trait_change: change,
            })
        })
        .max_by(|a, b| a.trait_change.total_cmp(&b.trait_change))
}

/// Runs the sweep and puts `steer_answers.jsonl`, `steer.csv`, `steer.svg` and `steer.json`
/// in `store` (answers and judgements are cached there: a rerun resumes).
pub fn steer_sweep(
    engine: &Engine,
    spec: &TraitSpec,
    source: crate::VectorSource,
    judge: &dyn persona_judges::Judge,
    opts: &SteerOptions,
    store: &dyn RunStore,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<SteerResult, PipelineError> {
    check_options(opts)?;
    let d = engine.config().d_model;
    for &l in &opts.layers {
        source.layer(l, d)?;
    }
    let plan = plan(
        spec,
        opts,
        &vector_fingerprint(source.vectors, &opts.layers),
    );
    let answers = answer_all(
        &AnswerJob::new(engine, &plan.requests, &opts.answers, store).steered_by(source.vectors),
        &mut |d, t| progress("generate", d, t),
    )?;
    let items = crate::judging::question_answer_pairs(&plan.requests, &answers);
    let judged = crate::judging::judge_cached(
        &crate::judging::JudgeJob::new(judge, spec, &items, store),
        &mut |d, t| progress("judge", d, t),
    )?;
    let scored: Vec<ScoredAnswer> = plan
        .slots
        .iter()
        .zip(&answers)
        .zip(&judged)
        .map(|((s, a), j)| ScoredAnswer {
            layer: s.steer.map(|s| s.layer),
            alpha: s.steer.map_or(0.0, |s| s.alpha),
            question_index: s.question_index,
            sample: s.sample,
            question: plan.questions[s.question_index].clone(),
            answer: a.text.clone(),
            trait_score: j.trait_score,
            coherence: j.coherence,
        })
        .collect();
    let answers_file = crate::store::put_jsonl(store, ANSWERS_FILE, &scored)?;
    let summary = summarise(&scored, &opts.layers, &plan.alphas, opts.coherence_min);
    let table_file = write_table(store, &summary.rows)?;
    let plot_file = store.put(
        "steer.svg",
        sweep_plot(spec, &summary.rows, opts, summary.coherence_scored).as_bytes(),
    )?;
    let result = SteerResult {
        rows: summary.rows,
        recommended: summary.recommended,
        trends: summary.trends,
        baseline_trait: summary.baseline_trait,
        judge: judge.id(),
        coherence_scored: summary.coherence_scored,
        coherence_min: opts.coherence_min,
        cap: opts.answers.cap.as_ref().map(|c| c.label()),
        vector_file: source.file.to_path_buf(),
        answers_file,
        table_file,
        plot_file,
        out_dir: store.dir(),
    };
    crate::store::put_json(store, RESULT_FILE, &result)?;
    Ok(result)
}

/// Settings a sweep cannot run with, refused before any work.
fn check_options(opts: &SteerOptions) -> Result<(), PipelineError> {
    if opts.layers.is_empty() {
        return Err(PipelineError::Input(
            "no layers to steer at: give --layers".into(),
        ));
    }
    if let Some(a) = opts.alphas.iter().find(|a| !a.is_finite()) {
        return Err(PipelineError::Input(format!(
            "--alphas has {a}: every α must be a finite number"
        )));
    }
    if opts.samples == 0 {
        return Err(PipelineError::Input(
            "--samples 0 asks for no answers: give at least 1".into(),
        ));
    }
    Ok(opts.answers.validate()?)
}

fn write_table(store: &dyn RunStore, rows: &[SteerRow]) -> Result<PathBuf, PipelineError> {
    let num = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.2}"));
    Ok(crate::store::put_csv(
        store,
        "steer.csv",
        &[
            "layer",
            "alpha",
            "trait",
            "trait_ci95_lo",
            "trait_ci95_hi",
            "coherence",
            "n",
        ],
        rows.iter().map(|r| {
            vec![
                r.layer.to_string(),
                r.alpha.to_string(),
                num(r.trait_score),
                num(r.trait_ci95.map(|c| c.0)),
                num(r.trait_ci95.map(|c| c.1)),
                num(r.coherence),
                r.n.to_string(),
            ]
        }),
    )?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(layer: Option<usize>, alpha: f32, t: f64, c: Option<f64>) -> ScoredAnswer {
        ScoredAnswer {
            layer,
            alpha,
            question_index: 0,
            sample: 0,
            question: "q".into(),
            answer: "a".into(),
            trait_score: Some(t),
            coherence: c,
        }
    }

    #[test]
    fn the_summary_means_each_setting_ranks_alpha_and_recommends_the_coherent_best() {
        let answers = vec![
            scored(None, 0.0, 20.0, Some(90.0)),
            scored(None, 0.0, 30.0, Some(90.0)),
            scored(Some(10), -4.0, 10.0, Some(85.0)),
            scored(Some(10), 4.0, 50.0, Some(85.0)),
            scored(Some(10), 8.0, 90.0, Some(40.0)),
        ];
        let s = summarise(&answers, &[10], &[-4.0, 0.0, 4.0, 8.0], 80.0);
        let traits: Vec<Option<f64>> = s.rows.iter().map(|r| r.trait_score).collect();
        assert_eq!(traits, [Some(10.0), Some(25.0), Some(50.0), Some(90.0)]);
        assert_eq!(s.rows[1].n, 2, "the baseline counts for every layer");
        assert_eq!(s.baseline_trait, Some(25.0));
        assert_eq!(s.trends[0].spearman_rho, Some(1.0));
        // α 8 raises the trait most but reads incoherently: α 4 is recommended.
        let rec = s.recommended.unwrap();
        assert_eq!((rec.layer, rec.alpha, rec.trait_change), (10, 4.0, 25.0));
        let ci = s.rows[1].trait_ci95.unwrap();
        assert!(ci.0 >= 0.0 && ci.1 <= 100.0);
        // Without coherence scores every positive α competes.
        let plain: Vec<ScoredAnswer> = answers
            .into_iter()
            .map(|a| ScoredAnswer {
                coherence: None,
                ..a
            })
            .collect();
        let s = summarise(&plain, &[10], &[-4.0, 0.0, 4.0, 8.0], 80.0);
        assert_eq!(s.recommended.unwrap().alpha, 8.0);
        assert!(!s.coherence_scored);
    }

    #[test]
    fn the_plan_adds_the_baseline_once_and_keys_steered_answers_by_vector() {
        let spec = persona_traits::resolve("optimistic").unwrap();
        let opts = SteerOptions {
            layers: vec![5, 9],
            alphas: vec![4.0, -4.0, 0.0, 4.0],
            samples: 2,
            questions: 3,
            answers: AnswerOptions::greedy(8, 4),
            coherence_min: 80.0,
        };
        let p = plan(&spec, &opts, "fp");
        assert_eq!(p.alphas, [-4.0, 0.0, 4.0]);
        // (1 baseline + 2 layers × 2 nonzero α) × 3 questions × 2 samples.
        assert_eq!(p.requests.len(), 5 * 3 * 2);
        assert_eq!(p.requests[0].key, "base|q0|s0");
        assert!(p.requests.iter().skip(6).all(|r| r.key.starts_with("fp|L")));
        assert_eq!(default_layers(30), [10, 15, 20]);
        assert!(check_options(&SteerOptions {
            alphas: vec![f32::NAN],
            ..opts.clone()
        })
        .is_err());
    }
}
