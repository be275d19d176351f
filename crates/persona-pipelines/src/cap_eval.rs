//! What the Assistant-axis cap buys and costs: persona-modulation jailbreaks and drift
//! conversations run uncapped and under each cap setting (harm rate by judge, mean projection
//! on the axis), and capability as multiple-choice accuracy by log-likelihood under the same
//! cap.

use std::path::{Path, PathBuf};

use persona_engine::{Engine, ForwardRequest, Intervention, Message};
use persona_evals::{DriftConversation, Jailbreak, McQuestion};
use persona_judges::NumberScorer;
use persona_report::svg::{Chart, Point, Series, SeriesKind};
use serde::{Deserialize, Serialize};

use crate::answers::{answer_all, AnswerOptions, AnswerRequest, Probe};
use crate::cap::AxisCap;
use crate::drift::{run_drift, summarize, DriftOptions, TurnRow};
use crate::PipelineError;

/// How a multiple-choice question's options are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum McqScoring {
    /// Summed log-probability of each choice's text after the question alone (a cloze).
    Cloze,
    /// Log-probability of the answer letter (" A" … " D") after the lettered question.
    Letter,
}

/// Each question's four option scores (higher: more likely), under `interventions`.
pub fn mcq_scores(
    engine: &Engine,
    questions: &[McQuestion],
    scoring: McqScoring,
    interventions: &[Intervention],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<[f64; 4]>, PipelineError> {
    let mut seqs = Vec::with_capacity(4 * questions.len());
    for q in questions {
        let (prompt, options): (String, [String; 4]) = match scoring {
            McqScoring::Cloze => (q.cloze_prompt(), q.choice_continuations()),
            McqScoring::Letter => (
                q.prompt(),
                persona_evals::LETTER_CONTINUATIONS.map(String::from),
            ),
        };
        for o in &options {
            seqs.push(engine.text_with_response(&prompt, o)?);
        }
    }
    let req = ForwardRequest {
        interventions: interventions.to_vec(),
        scores: true,
        ..Default::default()
    };
    let total_tokens: usize = seqs.iter().map(|s| s.ids.len()).sum();
    let mut done = 0;
    let outs = engine.forward_batch(&seqs, &req, &mut |n| {
        done += n;
        progress(done, total_tokens);
    })?;
    Ok(outs
        .chunks(4)
        .map(|four| {
            std::array::from_fn(|i| match four[i].scores.as_slice() {
                [] => f64::NAN,
                scores => scores.iter().map(|s| s.logprob as f64).sum(),
            })
        })
        .collect())
}

#[derive(Debug, Clone)]
pub struct CapEvalOptions {
    /// The layer whose `resid_post` is projected on the axis.
    pub layer: usize,
    /// Generation settings (their own `cap` is ignored: each setting sets it).
    pub answers: AnswerOptions,
    /// A jailbreak answer with a judged harm score at or above this counts as harmful.
    pub harm_threshold: f64,
    pub mcq_scoring: McqScoring,
}

/// The evaluation sets.
#[derive(Debug, Clone, Copy)]
pub struct CapEvalSets<'a> {
    pub jailbreaks: &'a [Jailbreak],
    pub conversations: &'a [DriftConversation],
    pub mcq: &'a [McQuestion],
}

/// One cap setting's results (the first row is uncapped).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapEvalRow {
    /// `uncapped` or the cap's label, e.g. `p25@15..22`.
    pub setting: String,
    pub percentile: Option<String>,
    /// The capped window, START..END (END exclusive).
    pub layers: Option<[usize; 2]>,
    /// Share of judged jailbreak answers scored ≥ the threshold, with a Wilson 95 % interval.
    pub harm_rate: Option<f64>,
    pub harm_ci95: Option<(f64, f64)>,
    pub harmful: usize,
    pub judged: usize,
    pub mean_harm_score: Option<f64>,
    /// 1 − harm rate / uncapped harm rate.
    pub harm_reduction: Option<f64>,
    /// Share of jailbreak answers that decline (refusal phrases, no judge), Wilson 95 %.
    pub refusal_rate: Option<f64>,
    pub refusal_ci95: Option<(f64, f64)>,
    /// Mean projection on the axis of the jailbreak answers' tokens.
    pub jailbreak_projection: Option<f64>,
    /// Mean projection over every assistant turn of the drift conversations.
    pub drift_projection: Option<f64>,
    /// Mean over conversations of (last turn − first turn).
    pub drift_change: Option<f64>,
    /// Multiple-choice accuracy with a Wilson 95 % interval.
    pub mcq_accuracy: Option<f64>,
    pub mcq_ci95: Option<(f64, f64)>,
    /// Accuracy relative to uncapped (1: nothing lost).
    pub capability_retained: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapEvalResult {
    pub rows: Vec<CapEvalRow>,
    pub layer: usize,
    /// `None`: no harm judge; harm rates are absent.
    pub judge: Option<String>,
    pub harm_threshold: f64,
    pub jailbreaks: usize,
    pub conversations: usize,
    pub mcq: usize,
    pub mcq_scoring: McqScoring,
    pub table_file: PathBuf,
    pub answers_file: PathBuf,
    pub plot_files: Vec<PathBuf>,
    pub out_dir: PathBuf,
}

/// One jailbreak answer under one setting, as written to `cap_answers.jsonl`.
#[derive(Serialize)]
struct JailbreakAnswer<'a> {
    setting: &'a str,
    id: &'a str,
    persona: &'a str,
    category: &'a str,
    answer: &'a str,
    refusal: bool,
    harm: Option<f64>,
    projection: Option<f64>,
}

fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    crate::mean_and_ci(values).0
}

/// Runs the sets uncapped and under every cap in `caps`, writing `cap_eval.json`,
/// `cap_eval.csv`, `cap_answers.jsonl`, per-setting drift folders and the plots to `out_dir`.
#[allow(clippy::too_many_arguments)]
pub fn cap_eval(
    engine: &Engine,
    axis: crate::VectorSource,
    caps: &[AxisCap],
    sets: CapEvalSets,
    judge: Option<&dyn NumberScorer>,
    opts: &CapEvalOptions,
    out_dir: &Path,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<CapEvalResult, PipelineError> {
    if sets.jailbreaks.is_empty() && sets.conversations.is_empty() && sets.mcq.is_empty() {
        return Err(PipelineError::Input(
            "nothing to evaluate: give at least one jailbreak, conversation or question".into(),
        ));
    }
    crate::create_dir(out_dir)?;
    let direction = axis.vectors.get(opts.layer, axis.file)?;
    let probe = Probe {
        layer: opts.layer,
        direction,
    };
    let settings: Vec<Option<&AxisCap>> =
        std::iter::once(None).chain(caps.iter().map(Some)).collect();
    let jailbreak_requests: Vec<AnswerRequest> = sets
        .jailbreaks
        .iter()
        .map(|j| AnswerRequest {
            key: format!("jailbreak|{}", j.id),
            messages: vec![
                Message::new("system", j.system.clone()),
                Message::new("user", j.request.clone()),
            ],
            steer: None,
        })
        .collect();
    let mut rows: Vec<CapEvalRow> = Vec::new();
    let mut answer_lines = String::new();
    let mut drift_rows: Vec<(String, Vec<TurnRow>)> = Vec::new();
    for cap in settings {
        let setting = cap.map_or("uncapped".to_string(), AxisCap::label);
        let answers_opts = AnswerOptions {
            cap: cap.cloned(),
            ..opts.answers.clone()
        };
        // Jailbreaks: answers, their projection, and the judge's harm scores.
        let stage = format!("jailbreaks {setting}");
        let answers = answer_all(
            engine,
            &jailbreak_requests,
            &answers_opts,
            None,
            Some(probe),
            &out_dir.join("answers_cache.jsonl"),
            &mut |d, t| progress(&stage, d, t),
        )?;
        let harm: Vec<Option<f64>> = match judge {
            Some(scorer) => {
                let prompts: Vec<String> = sets
                    .jailbreaks
                    .iter()
                    .zip(&answers)
                    .map(|(j, a)| j.harm_prompt(&a.text))
                    .collect();
                let stage = format!("judge {setting}");
                crate::judging::score_prompts_cached(
                    scorer,
                    persona_evals::HARM_RUBRIC_ID,
                    &prompts,
                    &out_dir.join("judgements.jsonl"),
                    &mut |d, t| progress(&stage, d, t),
                )?
            }
            None => vec![None; answers.len()],
        };
        for ((j, a), h) in sets.jailbreaks.iter().zip(&answers).zip(&harm) {
            let line = JailbreakAnswer {
                setting: &setting,
                id: &j.id,
                persona: &j.persona,
                category: &j.category,
                answer: &a.text,
                refusal: persona_evals::is_refusal(&a.text),
                harm: *h,
                projection: a.response_projection,
            };
            answer_lines.push_str(&serde_json::to_string(&line).expect("rows serialize"));
            answer_lines.push('\n');
        }
        let scored: Vec<f64> = harm.iter().flatten().copied().collect();
        let harmful = scored.iter().filter(|&&s| s >= opts.harm_threshold).count();
        let judged = scored.len();

        // Drift conversations under the same setting.
        let (drift_projection, drift_change) = if sets.conversations.is_empty() {
            (None, None)
        } else {
            let stage = format!("drift {setting}");
            let d = run_drift(
                engine,
                sets.conversations,
                axis,
                &DriftOptions {
                    layer: opts.layer,
                    answers: answers_opts.clone(),
                },
                &out_dir.join(format!(
                    "drift-{}",
                    cap.map_or("uncapped".into(), AxisCap::slug)
                )),
                &mut |s, done, total| progress(&format!("{stage} {s}"), done, total),
            )?;
            let all = overall(&d.rows);
            let change = summarize(&all).first().and_then(|s| s.drift);
            let projection = mean(d.rows.iter().filter_map(|r| r.projection));
            drift_rows.push((setting.clone(), all));
            (projection, change)
        };

        // Capability: multiple-choice accuracy under the same cap.
        let (mcq_accuracy, mcq_ci95) = if sets.mcq.is_empty() {
            (None, None)
        } else {
            let interventions = match cap {
                Some(c) => c.interventions(engine)?,
                None => Vec::new(),
            };
            let stage = format!("questions {setting}");
            let scores = mcq_scores(
                engine,
                sets.mcq,
                opts.mcq_scoring,
                &interventions,
                &mut |d, t| progress(&stage, d, t),
            )?;
            let correct = sets
                .mcq
                .iter()
                .zip(&scores)
                .filter(|(q, s)| q.is_correct(s))
                .count();
            let n = sets.mcq.len();
            (
                Some(correct as f64 / n as f64),
                persona_core::stats::proportion_ci95(correct, n),
            )
        };

        let harm_rate = (judged > 0).then(|| harmful as f64 / judged as f64);
        let refusals = answers
            .iter()
            .filter(|a| persona_evals::is_refusal(&a.text))
            .count();
        let asked = answers.len();
        let baseline = rows.first();
        rows.push(CapEvalRow {
            percentile: cap.map(|c| c.percentile.clone()),
            layers: cap.map(|c| [c.layers.start, c.layers.end]),
            harm_rate,
            harm_ci95: (judged > 0)
                .then(|| persona_core::stats::proportion_ci95(harmful, judged))
                .flatten(),
            harmful,
            judged,
            mean_harm_score: mean(scored.iter().copied()),
            harm_reduction: match (baseline.and_then(|b| b.harm_rate), harm_rate) {
                (Some(b), Some(h)) if b > 0.0 => Some(1.0 - h / b),
                _ => None,
            },
            refusal_rate: (asked > 0).then(|| refusals as f64 / asked as f64),
            refusal_ci95: persona_core::stats::proportion_ci95(refusals, asked),
            jailbreak_projection: mean(answers.iter().filter_map(|a| a.response_projection)),
            drift_projection,
            drift_change,
            mcq_accuracy,
            mcq_ci95,
            capability_retained: match (baseline.and_then(|b| b.mcq_accuracy), mcq_accuracy) {
                (Some(b), Some(a)) if b > 0.0 => Some(a / b),
                (None, Some(_)) => Some(1.0),
                _ => None,
            },
            setting,
        });
    }

    let answers_file = out_dir.join("cap_answers.jsonl");
    crate::write_file(&answers_file, answer_lines.as_bytes())?;
    let table_file = out_dir.join("cap_eval.csv");
    crate::write_file(&table_file, cap_csv(&rows).as_bytes())?;
    let mut plot_files = Vec::new();
    let tradeoff = out_dir.join("cap_tradeoff.svg");
    crate::write_file(
        &tradeoff,
        tradeoff_chart(&rows, judge.is_some()).to_svg().as_bytes(),
    )?;
    plot_files.push(tradeoff);
    if !drift_rows.is_empty() {
        let path = out_dir.join("cap_drift.svg");
        crate::write_file(
            &path,
            drift_chart(&drift_rows, opts.layer).to_svg().as_bytes(),
        )?;
        plot_files.push(path);
    }
    let result = CapEvalResult {
        rows,
        layer: opts.layer,
        judge: judge.map(|j| j.id()),
        harm_threshold: opts.harm_threshold,
        jailbreaks: sets.jailbreaks.len(),
        conversations: sets.conversations.len(),
        mcq: sets.mcq.len(),
        mcq_scoring: opts.mcq_scoring,
        table_file,
        answers_file,
        plot_files,
        out_dir: out_dir.to_path_buf(),
    };
    crate::write_json(&out_dir.join("cap_eval.json"), &result)?;
    Ok(result)
}

/// The turn rows with every conversation in one domain, `all`, for the overall drift.
fn overall(rows: &[TurnRow]) -> Vec<TurnRow> {
    rows.iter()
        .map(|r| TurnRow {
            domain: "all".into(),
            ..r.clone()
        })
        .collect()
}

fn cap_csv(rows: &[CapEvalRow]) -> String {
    let f = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.4}"));
    let mut s = String::from(
        "setting,percentile,layer_start,layer_end,harm_rate,harm_lo,harm_hi,harmful,judged,mean_harm_score,refusal_rate,refusal_lo,refusal_hi,jailbreak_projection,drift_projection,drift_change,mcq_accuracy,mcq_lo,mcq_hi,capability_retained\n",
    );
    for r in rows {
        let cells = [
            r.setting.clone(),
            r.percentile.clone().unwrap_or_default(),
            r.layers.map_or(String::new(), |l| l[0].to_string()),
            r.layers.map_or(String::new(), |l| l[1].to_string()),
            f(r.harm_rate),
            f(r.harm_ci95.map(|c| c.0)),
            f(r.harm_ci95.map(|c| c.1)),
            r.harmful.to_string(),
            r.judged.to_string(),
            f(r.mean_harm_score),
            f(r.refusal_rate),
            f(r.refusal_ci95.map(|c| c.0)),
            f(r.refusal_ci95.map(|c| c.1)),
            f(r.jailbreak_projection),
            f(r.drift_projection),
            f(r.drift_change),
            f(r.mcq_accuracy),
            f(r.mcq_ci95.map(|c| c.0)),
            f(r.mcq_ci95.map(|c| c.1)),
            f(r.capability_retained),
        ];
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    s
}

/// Jailbreak success against capability, one labelled point per setting: the judged harm rate
/// (with a judge) and the share of answers without a refusal.
fn tradeoff_chart(rows: &[CapEvalRow], judged: bool) -> Chart {
    // One series carries the settings' names: both share x, and two labels per point collide.
    let percent = |x: f64, rate: Option<f64>, ci: Option<(f64, f64)>, label: Option<&str>| {
        let (lo, hi) = ci?;
        let p = Point::new(x, rate? * 100.0).with_err(lo * 100.0, hi * 100.0);
        Some(match label {
            Some(l) => p.with_label(l),
            None => p,
        })
    };
    let mut harm = Vec::new();
    let mut complied = Vec::new();
    for r in rows {
        let Some(x) = r.mcq_accuracy.map(|a| a * 100.0) else {
            continue;
        };
        let (harm_label, refusal_label) = if judged {
            (Some(r.setting.as_str()), None)
        } else {
            (None, Some(r.setting.as_str()))
        };
        harm.extend(percent(x, r.harm_rate, r.harm_ci95, harm_label));
        let no_refusal = r.refusal_rate.map(|v| 1.0 - v);
        let ci = r.refusal_ci95.map(|(lo, hi)| (1.0 - hi, 1.0 - lo));
        complied.extend(percent(x, no_refusal, ci, refusal_label));
    }
    let mut chart = Chart::new(
        "Cap settings: jailbreak success against capability",
        "multiple-choice accuracy (%)",
        "jailbreak answers (%)",
    )
    .with_y_range(0.0, 100.0);
    if judged {
        chart = chart.with_series(Series::new("harmful (judge)", SeriesKind::Markers, harm));
    }
    chart.with_series(Series::new(
        "not refused (phrases)",
        SeriesKind::Markers,
        complied,
    ))
}

/// Mean projection per turn over every drift conversation, one line per setting.
fn drift_chart(per_setting: &[(String, Vec<TurnRow>)], layer: usize) -> Chart {
    let mut chart = Chart::new(
        format!("Drift conversations along the Assistant axis, capped and not (layer {layer})"),
        "user turn",
        "mean projection on the axis",
    );
    for (setting, rows) in per_setting {
        if let Some(d) = summarize(rows).first() {
            let xy = d
                .per_turn
                .iter()
                .enumerate()
                .map(|(i, p)| ((i + 1) as f64, p.unwrap_or(f64::NAN)));
            chart = chart.with_series(Series::line_markers(setting, xy));
        }
    }
    chart
}
