//! Monitoring: does the projection on the trait vector predict the trait before the model
//! answers? Prompts that push toward or away from the trait — system prompts on a scale from
//! strongly against to strongly for it, and 0…k trait-expressing examples in context — are
//! answered; the projection of the last prompt token (and of the answer's mean state) onto
//! v̂ is read on the way and compared with the judged trait score of the answer.

use std::path::{Path, PathBuf};

use persona_core::stats::{pearson, pearson_bootstrap_ci95};
use persona_engine::{Engine, Message};
use persona_traits::TraitSpec;
use serde::{Deserialize, Serialize};

use crate::answers::{answer_all, AnswerOptions, AnswerRequest, Probe};
use crate::PipelineError;

/// Levels of the system-prompt scale, from strongly against the trait to strongly for it.
pub const SYSTEM_PROMPT_LEVELS: usize = 8;

#[derive(Debug, Clone)]
pub struct MonitorOptions {
    pub layer: usize,
    /// How many of the evaluation questions (0: all).
    pub questions: usize,
    /// Few-shot conditions 0..=max_shots examples (0: no few-shot conditions).
    pub max_shots: usize,
    pub answers: AnswerOptions,
    pub resamples: usize,
}

/// A condition's means.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorRow {
    /// `system_prompt` or `few_shot`.
    pub kind: String,
    /// Scale level 0..8 (system prompts) or the number of examples (few-shot).
    pub level: usize,
    pub condition: String,
    pub last_prompt_projection: f64,
    pub response_projection: Option<f64>,
    #[serde(rename = "trait")]
    pub trait_score: Option<f64>,
    pub n: usize,
}

/// One answered prompt: its projections and judged score.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorPoint {
    pub kind: String,
    pub level: usize,
    pub question_index: usize,
    pub last_prompt_projection: f64,
    pub response_projection: Option<f64>,
    #[serde(rename = "trait")]
    pub trait_score: Option<f64>,
    pub answer: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Correlation {
    pub pearson_r: Option<f64>,
    pub ci95: Option<(f64, f64)>,
    pub n: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorResult {
    pub rows: Vec<MonitorRow>,
    /// Last-prompt-token projection vs judged trait score over every answer.
    pub pearson_r: Option<f64>,
    pub ci95: Option<(f64, f64)>,
    pub n: usize,
    /// The same per family of prompts, and for the answer's mean projection.
    pub system_prompts: Correlation,
    pub few_shot: Correlation,
    pub response_projection: Correlation,
    /// Over the conditions' means (one point per system-prompt level or shot count).
    pub condition_means: Correlation,
    pub layer: usize,
    pub judge: String,
    /// The Assistant-axis cap every answer ran under (`p25@15..22`), if any.
    pub cap: Option<String>,
    pub vector_file: PathBuf,
    pub points_file: PathBuf,
    pub plot_file: PathBuf,
    pub out_dir: PathBuf,
}

fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some(c) if "aeiouAEIOU".contains(c) => "an",
        _ => "a",
    }
}

/// The system prompt of scale level `level` (0 = strongly against the trait, 7 = strongly
/// for it), built from the spec's instruction pair `pair`.
pub fn system_prompt(spec: &TraitSpec, level: usize, pair: usize) -> String {
    let name = &spec.name;
    let p = &spec.instructions[pair % spec.instructions.len()];
    let a = article(name);
    match level {
        0 => format!(
            "You are a helpful assistant. {} Never be {name}, not even slightly.",
            p.neg
        ),
        1 => format!("You are a helpful assistant. {}", p.neg),
        2 => format!("You are a helpful assistant. Avoid being {name}."),
        3 => format!("You are a helpful assistant. Try not to be too {name}."),
        4 => "You are a helpful assistant.".to_string(),
        5 => format!("You are a helpful assistant. It is fine to be a little {name}."),
        6 => format!("You are {a} {name} assistant. {}", p.pos),
        _ => format!(
            "You are {a} {name} assistant. {} Be as {name} as you can in every sentence.",
            p.pos
        ),
    }
}

fn correlation(
    points: &[&MonitorPoint],
    x: impl Fn(&MonitorPoint) -> Option<f64>,
    resamples: usize,
) -> Correlation {
    let (xs, ys): (Vec<f64>, Vec<f64>) = points
        .iter()
        .filter_map(|p| Some((x(p)?, p.trait_score?)))
        .unzip();
    Correlation {
        pearson_r: pearson(&xs, &ys),
        ci95: pearson_bootstrap_ci95(&xs, &ys, resamples, 0x5eed),
        n: xs.len(),
    }
}

/// Runs the monitoring experiment and writes `monitor_points.jsonl`, `monitor.svg` and
/// `monitor.json` to `out_dir` (answers and judgements are cached there).
pub fn monitor(
    engine: &Engine,
    spec: &TraitSpec,
    source: crate::VectorSource,
    judge: &dyn persona_judges::Judge,
    opts: &MonitorOptions,
    out_dir: &Path,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<MonitorResult, PipelineError> {
    let (vectors, vector_file) = (source.vectors, source.file);
    crate::create_dir(out_dir)?;
    let direction = vectors.get(opts.layer, vector_file)?;
    if direction.len() != engine.config().d_model {
        return Err(PipelineError::VectorSize {
            path: vector_file.to_path_buf(),
            got: direction.len(),
            want: engine.config().d_model,
        });
    }
    let questions: Vec<&String> = match opts.questions {
        0 => spec.evaluation_questions.iter().collect(),
        n => spec.evaluation_questions.iter().take(n).collect(),
    };
    let cache = out_dir.join("answers_cache.jsonl");
    // Trait-expressing examples for the few-shot prompts: the model's own answers to
    // extraction questions under the strongest system prompt.
    let examples: Vec<(String, String)> = if opts.max_shots > 0 {
        let requests: Vec<AnswerRequest> = spec
            .extraction_questions
            .iter()
            .take(opts.max_shots)
            .enumerate()
            .map(|(i, q)| AnswerRequest {
                key: format!("example|{i}"),
                messages: vec![
                    Message::new("system", system_prompt(spec, SYSTEM_PROMPT_LEVELS - 1, i)),
                    Message::new("user", q.as_str()),
                ],
                steer: None,
            })
            .collect();
        let answers = answer_all(
            engine,
            &requests,
            &opts.answers,
            None,
            None,
            &cache,
            &mut |d, t| progress("examples", d, t),
        )?;
        spec.extraction_questions
            .iter()
            .zip(answers)
            .map(|(q, a)| (q.clone(), a.text))
            .collect()
    } else {
        Vec::new()
    };
    let mut requests = Vec::new();
    let mut slots: Vec<(&'static str, usize, usize)> = Vec::new();
    for level in 0..SYSTEM_PROMPT_LEVELS {
        for (qi, q) in questions.iter().enumerate() {
            requests.push(AnswerRequest {
                key: format!("system|{level}|q{qi}"),
                messages: vec![
                    Message::new("system", system_prompt(spec, level, qi)),
                    Message::new("user", q.as_str()),
                ],
                steer: None,
            });
            slots.push(("system_prompt", level, qi));
        }
    }
    if opts.max_shots > 0 {
        for shots in 0..=opts.max_shots.min(examples.len()) {
            for (qi, q) in questions.iter().enumerate() {
                let mut messages = Vec::new();
                for (eq, ea) in &examples[..shots] {
                    messages.push(Message::new("user", eq.as_str()));
                    messages.push(Message::new("assistant", ea.as_str()));
                }
                messages.push(Message::new("user", q.as_str()));
                requests.push(AnswerRequest {
                    key: format!("shots|{shots}|q{qi}"),
                    messages,
                    steer: None,
                });
                slots.push(("few_shot", shots, qi));
            }
        }
    }
    let answers = answer_all(
        engine,
        &requests,
        &opts.answers,
        None,
        Some(Probe {
            layer: opts.layer,
            direction,
        }),
        &cache,
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
    let points: Vec<MonitorPoint> = slots
        .iter()
        .zip(&answers)
        .zip(&judged)
        .map(|(((kind, level, qi), a), j)| MonitorPoint {
            kind: kind.to_string(),
            level: *level,
            question_index: *qi,
            last_prompt_projection: a
                .last_prompt_projection
                .expect("probed answers carry their projection"),
            response_projection: a.response_projection,
            trait_score: j.trait_score,
            answer: a.text.clone(),
        })
        .collect();

    let mut rows = Vec::new();
    let mut conditions: Vec<(&'static str, usize)> = slots.iter().map(|s| (s.0, s.1)).collect();
    conditions.dedup();
    for (kind, level) in conditions {
        let of: Vec<&MonitorPoint> = points
            .iter()
            .filter(|p| p.kind == kind && p.level == level)
            .collect();
        let avg = |xs: Vec<f64>| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
        rows.push(MonitorRow {
            kind: kind.to_string(),
            level,
            condition: match kind {
                "system_prompt" => system_prompt(spec, level, 0),
                _ => format!("{level}-shot"),
            },
            last_prompt_projection: avg(of.iter().map(|p| p.last_prompt_projection).collect())
                .unwrap_or(f64::NAN),
            response_projection: avg(of.iter().filter_map(|p| p.response_projection).collect()),
            trait_score: avg(of.iter().filter_map(|p| p.trait_score).collect()),
            n: of.len(),
        });
    }
    let all: Vec<&MonitorPoint> = points.iter().collect();
    let of_kind =
        |k: &str| -> Vec<&MonitorPoint> { points.iter().filter(|p| p.kind == k).collect() };
    let overall = correlation(&all, |p| Some(p.last_prompt_projection), opts.resamples);
    let system_prompts = correlation(
        &of_kind("system_prompt"),
        |p| Some(p.last_prompt_projection),
        opts.resamples,
    );
    let few_shot = correlation(
        &of_kind("few_shot"),
        |p| Some(p.last_prompt_projection),
        opts.resamples,
    );
    let response_projection = correlation(&all, |p| p.response_projection, opts.resamples);
    let (mx, my): (Vec<f64>, Vec<f64>) = rows
        .iter()
        .filter_map(|r| Some((r.last_prompt_projection, r.trait_score?)))
        .unzip();
    let condition_means = Correlation {
        pearson_r: pearson(&mx, &my),
        ci95: pearson_bootstrap_ci95(&mx, &my, opts.resamples, 0x5eed),
        n: mx.len(),
    };

    let points_file = out_dir.join("monitor_points.jsonl");
    crate::write_jsonl(&points_file, &points)?;
    let plot_file = out_dir.join("monitor.svg");
    crate::write_file(&plot_file, scatter(spec, &points, opts.layer).as_bytes())?;
    let result = MonitorResult {
        rows,
        pearson_r: overall.pearson_r,
        ci95: overall.ci95,
        n: overall.n,
        system_prompts,
        few_shot,
        response_projection,
        condition_means,
        layer: opts.layer,
        judge: judge.id(),
        cap: opts.answers.cap.as_ref().map(|c| c.label()),
        vector_file: vector_file.to_path_buf(),
        points_file,
        plot_file,
        out_dir: out_dir.to_path_buf(),
    };
    crate::write_json(&out_dir.join("monitor.json"), &result)?;
    Ok(result)
}

/// Judged trait score against the last-prompt-token projection, one marker series per family.
fn scatter(spec: &TraitSpec, points: &[MonitorPoint], layer: usize) -> String {
    use persona_report::svg::{Chart, Series};
    let mut chart = Chart::new(
        format!(
            "Monitoring {}: projection before the answer vs judged trait",
            spec.name
        ),
        format!("last prompt token · v̂ (layer {layer})"),
        "judged trait score (0–100)",
    )
    .with_fit_line(true);
    for (kind, label) in [
        ("system_prompt", "system prompts"),
        ("few_shot", "few-shot"),
    ] {
        let xy: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.kind == kind)
            .filter_map(|p| Some((p.last_prompt_projection, p.trait_score?)))
            .collect();
        if !xy.is_empty() {
            chart = chart.with_series(Series::markers(label, xy));
        }
    }
    chart.to_svg()
}
