//! Monitoring: does the projection on the trait vector predict the trait before the model
//! answers? Prompts that push toward or away from the trait — system prompts on a scale from
//! strongly against to strongly for it, and 0…k trait-expressing examples in context — are
//! answered; the projection of the last prompt token (and of the answer's mean state) onto
//! v̂ is read on the way and compared with the judged trait score of the answer.

use std::path::PathBuf;

use persona_core::stats::{pearson, pearson_bootstrap_ci95};
use persona_engine::{Engine, Message};
use persona_traits::TraitSpec;
use serde::{Deserialize, Serialize};

use crate::answers::{answer_all, AnswerJob, AnswerOptions, AnswerRequest, Probe};
use crate::store::RunStore;
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
    /// The question asked (empty in files written before it was recorded).
    #[serde(default)]
    pub question: String,
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

impl Correlation {
    /// Pearson's r of the pairs (x, y) with a percentile-bootstrap 95 % interval over
    /// `resamples` draws (seeded: a rerun gives the same interval).
    pub fn of(xs: &[f64], ys: &[f64], resamples: usize) -> Self {
        Correlation {
            pearson_r: pearson(xs, ys),
            ci95: pearson_bootstrap_ci95(xs, ys, resamples, 0x5eed),
            n: xs.len().min(ys.len()),
        }
    }
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
    Correlation::of(&xs, &ys, resamples)
}

/// The name `monitor` gives its result in its folder.
pub const RESULT_FILE: &str = "monitor.json";
/// Every answered prompt with its projections and score.
pub const POINTS_FILE: &str = "monitor_points.jsonl";

/// One prompt to answer: its family, level and question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub kind: &'static str,
    pub level: usize,
    pub question_index: usize,
}

/// The prompts a monitoring run answers (with their slots): every system-prompt level, then
/// 0..=k examples in context, for every question.
pub fn plan(
    spec: &TraitSpec,
    questions: &[String],
    examples: &[(String, String)],
) -> (Vec<Slot>, Vec<AnswerRequest>) {
    let mut requests = Vec::new();
    let mut slots = Vec::new();
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
            slots.push(Slot {
                kind: "system_prompt",
                level,
                question_index: qi,
            });
        }
    }
    if !examples.is_empty() {
        for shots in 0..=examples.len() {
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
                slots.push(Slot {
                    kind: "few_shot",
                    level: shots,
                    question_index: qi,
                });
            }
        }
    }
    (slots, requests)
}

/// The monitoring numbers: per-condition means and the correlations.
#[derive(Debug, Clone)]
pub struct MonitorSummary {
    pub rows: Vec<MonitorRow>,
    pub overall: Correlation,
    pub system_prompts: Correlation,
    pub few_shot: Correlation,
    pub response_projection: Correlation,
    pub condition_means: Correlation,
}

/// Summarises answered prompts: a pure function of the points (conditions in first-seen
/// order).
pub fn summarise(spec: &TraitSpec, points: &[MonitorPoint], resamples: usize) -> MonitorSummary {
    let mut conditions: Vec<(&str, usize)> =
        points.iter().map(|p| (p.kind.as_str(), p.level)).collect();
    conditions.dedup();
    let avg = |xs: Vec<f64>| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
    let rows: Vec<MonitorRow> = conditions
        .into_iter()
        .map(|(kind, level)| {
            let of: Vec<&MonitorPoint> = points
                .iter()
                .filter(|p| p.kind == kind && p.level == level)
                .collect();
            MonitorRow {
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
            }
        })
        .collect();
    let all: Vec<&MonitorPoint> = points.iter().collect();
    let of_kind =
        |k: &str| -> Vec<&MonitorPoint> { points.iter().filter(|p| p.kind == k).collect() };
    let last = |p: &MonitorPoint| Some(p.last_prompt_projection);
    let (mx, my): (Vec<f64>, Vec<f64>) = rows
        .iter()
        .filter_map(|r| Some((r.last_prompt_projection, r.trait_score?)))
        .unzip();
    MonitorSummary {
        overall: correlation(&all, last, resamples),
        system_prompts: correlation(&of_kind("system_prompt"), last, resamples),
        few_shot: correlation(&of_kind("few_shot"), last, resamples),
        response_projection: correlation(&all, |p| p.response_projection, resamples),
        condition_means: Correlation::of(&mx, &my, resamples),
        rows,
    }
}

/// Trait-expressing examples for the few-shot prompts: the model's own answers to extraction
/// questions under the strongest system prompt.
fn few_shot_examples(
    engine: &Engine,
    spec: &TraitSpec,
    opts: &MonitorOptions,
    store: &dyn RunStore,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Vec<(String, String)>, PipelineError> {
    if opts.max_shots == 0 {
        return Ok(Vec::new());
    }
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
        &AnswerJob::new(engine, &requests, &opts.answers, store),
        &mut |d, t| progress("examples", d, t),
    )?;
    Ok(spec
        .extraction_questions
        .iter()
        .zip(answers)
        .map(|(q, a)| (q.clone(), a.text))
        .collect())
}

/// Runs the monitoring experiment and puts `monitor_points.jsonl`, `monitor.svg` and
/// `monitor.json` in `store` (answers and judgements are cached there).
pub fn monitor(
    engine: &Engine,
    spec: &TraitSpec,
    source: crate::VectorSource,
    judge: &dyn persona_judges::Judge,
    opts: &MonitorOptions,
    store: &dyn RunStore,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<MonitorResult, PipelineError> {
    let direction = source.layer(opts.layer, engine.config().d_model)?;
    let questions = spec.first_evaluation_questions(opts.questions);
    let examples = few_shot_examples(engine, spec, opts, store, progress)?;
    let (slots, requests) = plan(spec, &questions, &examples);
    let answers = answer_all(
        &AnswerJob::new(engine, &requests, &opts.answers, store).probed(Probe {
            layer: opts.layer,
            direction,
        }),
        &mut |d, t| progress("generate", d, t),
    )?;
    let items = crate::judging::question_answer_pairs(&requests, &answers);
    let judged = crate::judging::judge_cached(
        &crate::judging::JudgeJob::new(judge, spec, &items, store),
        &mut |d, t| progress("judge", d, t),
    )?;
    let points: Vec<MonitorPoint> = slots
        .iter()
        .zip(&answers)
        .zip(&judged)
        .map(|((s, a), j)| MonitorPoint {
            kind: s.kind.to_string(),
            level: s.level,
            question_index: s.question_index,
            question: questions[s.question_index].clone(),
            last_prompt_projection: a
                .last_prompt_projection
                .expect("probed answers carry their projection"),
            response_projection: a.response_projection,
            trait_score: j.trait_score,
            answer: a.text.clone(),
        })
        .collect();
    let summary = summarise(spec, &points, opts.resamples);
    let points_file = crate::store::put_jsonl(store, POINTS_FILE, &points)?;
    let plot_file = store.put("monitor.svg", scatter(spec, &points, opts.layer).as_bytes())?;
    let result = MonitorResult {
        rows: summary.rows,
        pearson_r: summary.overall.pearson_r,
        ci95: summary.overall.ci95,
        n: summary.overall.n,
        system_prompts: summary.system_prompts,
        few_shot: summary.few_shot,
        response_projection: summary.response_projection,
        condition_means: summary.condition_means,
        layer: opts.layer,
        judge: judge.id(),
        cap: opts.answers.cap.as_ref().map(|c| c.label()),
        vector_file: source.file.to_path_buf(),
        points_file,
        plot_file,
        out_dir: store.dir(),
    };
    crate::store::put_json(store, RESULT_FILE, &result)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn point(kind: &str, level: usize, x: f64, t: f64) -> MonitorPoint {
        MonitorPoint {
            kind: kind.into(),
            level,
            question_index: 0,
            question: "Will it rain?".into(),
            last_prompt_projection: x,
            response_projection: Some(2.0 * x),
            trait_score: Some(t),
            answer: String::new(),
        }
    }

    #[test]
    fn the_summary_groups_conditions_and_correlates_each_family() {
        let spec = persona_traits::resolve("optimistic").unwrap();
        let points = vec![
            point("system_prompt", 0, -2.0, 10.0),
            point("system_prompt", 0, -1.0, 20.0),
            point("system_prompt", 7, 3.0, 80.0),
            point("few_shot", 0, 0.0, 40.0),
            point("few_shot", 1, 1.0, 30.0),
            point("few_shot", 2, 2.0, 70.0),
        ];
        let s = summarise(&spec, &points, 200);
        assert_eq!(s.rows.len(), 5);
        assert_eq!(s.rows[0].n, 2);
        assert_eq!(s.rows[0].last_prompt_projection, -1.5);
        assert_eq!(s.rows[0].trait_score, Some(15.0));
        assert_eq!(s.rows[3].condition, "1-shot");
        assert_eq!((s.overall.n, s.system_prompts.n, s.few_shot.n), (6, 3, 3));
        assert_eq!(s.condition_means.n, 5);
        // The answer projection is twice the prompt projection: the same r.
        let (a, b) = (
            s.overall.pearson_r.unwrap(),
            s.response_projection.pearson_r.unwrap(),
        );
        assert!((a - b).abs() < 1e-12 && a > 0.8, "{a} {b}");
    }

    #[test]
    fn the_plan_asks_every_level_then_every_shot_count() {
        let spec = persona_traits::resolve("optimistic").unwrap();
        let questions = vec!["q0".to_string(), "q1".to_string()];
        let examples = vec![("eq".to_string(), "ea".to_string())];
        let (slots, requests) = plan(&spec, &questions, &examples);
        assert_eq!(slots.len(), (SYSTEM_PROMPT_LEVELS + 2) * 2);
        let last = requests.last().unwrap();
        assert_eq!(last.key, "shots|1|q1");
        assert_eq!(last.messages.len(), 3);
        assert_eq!(
            plan(&spec, &questions, &[]).0.len(),
            SYSTEM_PROMPT_LEVELS * 2
        );
    }
}
