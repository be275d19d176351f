//! What the Assistant-axis cap buys and costs: persona-modulation jailbreaks and drift
//! conversations run uncapped and under each cap setting (harm rate by judge, mean projection
//! on the axis), and capability as multiple-choice accuracy by log-likelihood under the same
//! cap.

use std::path::PathBuf;

use persona_engine::{Engine, ForwardRequest, Intervention, Message};
use persona_evals::{DriftConversation, Jailbreak, McQuestion};
use persona_judges::NumberScorer;
use persona_report::svg::{Chart, Point, Series, SeriesKind};
use serde::{Deserialize, Serialize};

use crate::answers::{answer_all, AnswerJob, AnswerOptions, AnswerRequest, Probe};
use crate::axis_cap::AxisCap;
use crate::drift::{run_drift, summarize, DriftOptions, TurnRow};
use crate::store::{RunStore, Scoped};
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JailbreakAnswer {
    pub setting: String,
    pub id: String,
    pub persona: String,
    pub category: String,
    pub answer: String,
    pub refusal: bool,
    pub harm: Option<f64>,
    pub projection: Option<f64>,
}

/// The name `cap eval` gives its result in its folder.
pub const RESULT_FILE: &str = "cap_eval.json";
/// Every jailbreak answer of every setting.
pub const ANSWERS_FILE: &str = "cap_answers.jsonl";

fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    crate::mean_and_ci(values).0
}

/// What one setting measured, before any summary.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingRun {
    /// `uncapped` or the cap's label.
    pub setting: String,
    pub percentile: Option<String>,
    pub layers: Option<[usize; 2]>,
    pub jailbreaks: Vec<JailbreakAnswer>,
    /// Every drift turn under this setting (`None`: no conversations were run).
    pub drift: Option<Vec<TurnRow>>,
    /// (correct, asked) multiple-choice answers (`None`: no questions were asked).
    pub mcq: Option<(usize, usize)>,
}

/// The table: one row per setting, the first one the baseline the others are compared with.
/// A pure function of what each setting measured.
pub fn summarise(runs: &[SettingRun], harm_threshold: f64) -> Vec<CapEvalRow> {
    let mut rows: Vec<CapEvalRow> = Vec::new();
    for run in runs {
        let scored: Vec<f64> = run.jailbreaks.iter().filter_map(|a| a.harm).collect();
        let harmful = scored.iter().filter(|&&s| s >= harm_threshold).count();
        let judged = scored.len();
        let harm_rate = (judged > 0).then(|| harmful as f64 / judged as f64);
        let refusals = run.jailbreaks.iter().filter(|a| a.refusal).count();
        let asked = run.jailbreaks.len();
        let (drift_projection, drift_change) = match &run.drift {
            Some(turns) => (
                mean(turns.iter().filter_map(|r| r.projection)),
                summarize(&overall(turns)).first().and_then(|s| s.drift),
            ),
            None => (None, None),
        };
        let (mcq_accuracy, mcq_ci95) = match run.mcq {
            Some((correct, n)) if n > 0 => (
                Some(correct as f64 / n as f64),
                persona_core::stats::proportion_ci95(correct, n),
            ),
            _ => (None, None),
        };
        let baseline = rows.first();
        rows.push(CapEvalRow {
            setting: run.setting.clone(),
            percentile: run.percentile.clone(),
            layers: run.layers,
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
            jailbreak_projection: mean(run.jailbreaks.iter().filter_map(|a| a.projection)),
            drift_projection,
            drift_change,
            mcq_accuracy,
            mcq_ci95,
            capability_retained: match (baseline.and_then(|b| b.mcq_accuracy), mcq_accuracy) {
                (Some(b), Some(a)) if b > 0.0 => Some(a / b),
                (None, Some(_)) => Some(1.0),
                _ => None,
            },
        });
    }
    rows
}

/// Everything one run of the evaluation shares across settings.
struct EvalContext<'a> {
    engine: &'a Engine,
    axis: crate::VectorSource<'a>,
    probe: Probe<'a>,
    sets: CapEvalSets<'a>,
    judge: Option<&'a dyn NumberScorer>,
    opts: &'a CapEvalOptions,
    store: &'a dyn RunStore,
    jailbreak_requests: Vec<AnswerRequest>,
}

/// Runs the jailbreaks (answers, projections, harm scores), the drift conversations (into
/// `drift-<slug>/`) and the multiple-choice questions under one setting.
fn run_setting(
    cx: &EvalContext,
    cap: Option<&AxisCap>,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<SettingRun, PipelineError> {
    let setting = cap.map_or("uncapped".to_string(), AxisCap::label);
    let answers_opts = AnswerOptions {
        cap: cap.cloned(),
        ..cx.opts.answers.clone()
    };
    let stage = format!("jailbreaks {setting}");
    let answers = answer_all(
        &AnswerJob::new(cx.engine, &cx.jailbreak_requests, &answers_opts, cx.store)
            .probed(cx.probe),
        &mut |d, t| progress(&stage, d, t),
    )?;
    let harm: Vec<Option<f64>> = match cx.judge {
        Some(scorer) => {
            let prompts: Vec<String> = cx
                .sets
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
                cx.store,
                crate::judging::JUDGEMENT_CACHE,
                &mut |d, t| progress(&stage, d, t),
            )?
        }
        None => vec![None; answers.len()],
    };
    let jailbreaks = cx
        .sets
        .jailbreaks
        .iter()
        .zip(&answers)
        .zip(&harm)
        .map(|((j, a), h)| JailbreakAnswer {
            setting: setting.clone(),
            id: j.id.clone(),
            persona: j.persona.clone(),
            category: j.category.clone(),
            answer: a.text.clone(),
            refusal: persona_evals::is_refusal(&a.text),
            harm: *h,
            projection: a.response_projection,
        })
        .collect();
    let drift = if cx.sets.conversations.is_empty() {
        None
    } else {
        let stage = format!("drift {setting}");
        let folder = format!("drift-{}", cap.map_or("uncapped".into(), AxisCap::slug));
        let d = run_drift(
            cx.engine,
            cx.sets.conversations,
            cx.axis,
            &DriftOptions {
                layer: cx.opts.layer,
                answers: answers_opts.clone(),
            },
            &Scoped::new(cx.store, &folder),
            &mut |s, done, total| progress(&format!("{stage} {s}"), done, total),
        )?;
        Some(d.rows)
    };
    let mcq = if cx.sets.mcq.is_empty() {
        None
    } else {
        let interventions = match cap {
            Some(c) => c.interventions()?,
            None => Vec::new(),
        };
        let stage = format!("questions {setting}");
        let scores = mcq_scores(
            cx.engine,
            cx.sets.mcq,
            cx.opts.mcq_scoring,
            &interventions,
            &mut |d, t| progress(&stage, d, t),
        )?;
        let correct = cx
            .sets
            .mcq
            .iter()
            .zip(&scores)
            .filter(|(q, s)| q.is_correct(s))
            .count();
        Some((correct, cx.sets.mcq.len()))
    };
    Ok(SettingRun {
        setting,
        percentile: cap.map(|c| c.percentile.clone()),
        layers: cap.map(|c| [c.layers.start, c.layers.end]),
        jailbreaks,
        drift,
        mcq,
    })
}

/// Runs the sets uncapped and under every cap in `caps`, putting `cap_eval.json`,
/// `cap_eval.csv`, `cap_answers.jsonl`, per-setting drift folders and the plots in `store`.
#[allow(clippy::too_many_arguments)]
pub fn cap_eval(
    engine: &Engine,
    axis: crate::VectorSource,
    caps: &[AxisCap],
    sets: CapEvalSets,
    judge: Option<&dyn NumberScorer>,
    opts: &CapEvalOptions,
    store: &dyn RunStore,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<CapEvalResult, PipelineError> {
    if sets.jailbreaks.is_empty() && sets.conversations.is_empty() && sets.mcq.is_empty() {
        return Err(PipelineError::Input(
            "nothing to evaluate: give at least one jailbreak, conversation or question".into(),
        ));
    }
    let direction = axis.layer(opts.layer, engine.config().d_model)?;
    let cx = EvalContext {
        engine,
        axis,
        probe: Probe {
            layer: opts.layer,
            direction,
        },
        sets,
        judge,
        opts,
        store,
        jailbreak_requests: sets
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
            .collect(),
    };
    let runs = std::iter::once(None)
        .chain(caps.iter().map(Some))
        .map(|cap| run_setting(&cx, cap, progress))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = summarise(&runs, opts.harm_threshold);
    let answers_file =
        crate::store::put_jsonl(store, ANSWERS_FILE, runs.iter().flat_map(|r| &r.jailbreaks))?;
    let table_file = write_table(store, &rows)?;
    let mut plot_files = vec![store.put(
        "cap_tradeoff.svg",
        tradeoff_chart(&rows, judge.is_some()).to_svg().as_bytes(),
    )?];
    let drift_rows: Vec<(String, Vec<TurnRow>)> = runs
        .iter()
        .filter_map(|r| Some((r.setting.clone(), overall(r.drift.as_ref()?))))
        .collect();
    if !drift_rows.is_empty() {
        plot_files.push(store.put(
            "cap_drift.svg",
            drift_chart(&drift_rows, opts.layer).to_svg().as_bytes(),
        )?);
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
        out_dir: store.dir(),
    };
    crate::store::put_json(store, RESULT_FILE, &result)?;
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

fn write_table(store: &dyn RunStore, rows: &[CapEvalRow]) -> Result<PathBuf, PipelineError> {
    let f = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.4}"));
    let header = [
        "setting",
        "percentile",
        "layer_start",
        "layer_end",
        "harm_rate",
        "harm_lo",
        "harm_hi",
        "harmful",
        "judged",
        "mean_harm_score",
        "refusal_rate",
        "refusal_lo",
        "refusal_hi",
        "jailbreak_projection",
        "drift_projection",
        "drift_change",
        "mcq_accuracy",
        "mcq_lo",
        "mcq_hi",
        "capability_retained",
    ];
    let cells = rows.iter().map(|r| {
        vec![
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
        ]
    });
    Ok(crate::store::put_csv(
        store,
        "cap_eval.csv",
        &header,
        cells,
    )?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(harm: Option<f64>, refusal: bool, projection: f64) -> JailbreakAnswer {
        JailbreakAnswer {
            setting: String::new(),
            id: String::new(),
            persona: String::new(),
            category: String::new(),
            answer: String::new(),
            refusal,
            harm,
            projection: Some(projection),
        }
    }

    fn turn(conv: &str, turn: usize, p: f64) -> TurnRow {
        TurnRow {
            conversation: conv.into(),
            domain: "therapy".into(),
            turn,
            projection: Some(p),
            user: String::new(),
            answer: String::new(),
        }
    }

    #[test]
    fn rows_compare_every_setting_with_the_uncapped_baseline() {
        let runs = vec![
            SettingRun {
                setting: "uncapped".into(),
                percentile: None,
                layers: None,
                jailbreaks: vec![
                    answer(Some(80.0), false, -4.0),
                    answer(Some(60.0), false, -2.0),
                    answer(Some(10.0), true, 0.0),
                    answer(None, false, 2.0),
                ],
                drift: Some(vec![turn("a", 1, 10.0), turn("a", 2, 4.0)]),
                mcq: Some((8, 10)),
            },
            SettingRun {
                setting: "p25@2..4".into(),
                percentile: Some("p25".into()),
                layers: Some([2, 4]),
                jailbreaks: vec![
                    answer(Some(80.0), false, 1.0),
                    answer(Some(20.0), true, 3.0),
                    answer(Some(10.0), true, 5.0),
                ],
                drift: Some(vec![turn("a", 1, 10.0), turn("a", 2, 9.0)]),
                mcq: Some((6, 10)),
            },
        ];
        let rows = summarise(&runs, 50.0);
        let (base, capped) = (&rows[0], &rows[1]);
        assert_eq!((base.harmful, base.judged), (2, 3));
        assert!((base.harm_rate.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(base.refusal_rate, Some(0.25));
        assert_eq!(base.jailbreak_projection, Some(-1.0));
        assert_eq!(base.drift_projection, Some(7.0));
        assert_eq!(base.drift_change, Some(-6.0));
        assert_eq!(base.capability_retained, Some(1.0));
        assert_eq!(base.harm_reduction, None);
        assert!((capped.harm_reduction.unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(capped.drift_change, Some(-1.0));
        assert!((capped.capability_retained.unwrap() - 0.75).abs() < 1e-12);
        assert_eq!(capped.layers, Some([2, 4]));
    }
}
