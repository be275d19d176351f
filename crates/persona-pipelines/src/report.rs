//! One self-contained HTML page for a run folder: what was extracted, how steering moved the
//! trait and what the steered answers say, how well the projection predicts the trait and which
//! answers sit at its ends, persona space, drift and the cap with their answers, and the
//! commands and model behind it all.
//!
//! Every result file is read through the type that wrote it, so a renamed field fails to
//! compile here instead of printing a blank; a file that is there but does not parse is an
//! error naming it and the command that rewrites it.

use std::io::Write;
use std::path::{Path, PathBuf};

use persona_report::html::{AnswerGrid, AnswerRow, Excerpt, Report};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::axis::AxisResult;
use crate::cap::eval::{CapEvalResult, JailbreakAnswer};
use crate::drift::{DriftResult, TurnRow};
use crate::extract::TraitExtractResult;
use crate::monitor::{MonitorPoint, MonitorResult};
use crate::steer::{ScoredAnswer, SteerResult};
use crate::PipelineError;

/// The commands run in a folder, one JSON line each, for the report.
const PROVENANCE: &str = "provenance.jsonl";

/// Example answers per steering layer: the first this many evaluation questions.
const STEER_QUESTIONS: usize = 3;
/// Monitored answers shown at each end of the projection.
const MONITOR_EXTREMES: usize = 3;
/// Roles shown at each end of the Assistant axis (besides the default assistant), and the
/// shared questions they answer.
const AXIS_ROLES: usize = 2;
const AXIS_QUESTIONS: usize = 2;
/// Drift conversations shown turn by turn, per domain.
const DRIFT_CONVERSATIONS: usize = 1;
/// Jailbreaks shown across the cap settings.
const CAP_JAILBREAKS: usize = 3;
/// The most misaligned answers of an emergent-misalignment evaluation shown.
const EM_WORST: usize = 5;

#[derive(Serialize, serde::Deserialize)]
struct Provenance {
    command: String,
    model: String,
    unix_time: u64,
}

/// Appends the command and model to `dir`'s provenance log.
pub fn record_provenance(dir: &Path, command: &str, model: &str) -> Result<(), PipelineError> {
    std::fs::create_dir_all(dir).map_err(|e| crate::store::StoreError::CreateDir {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let path = dir.join(PROVENANCE);
    let line = serde_json::to_string(&Provenance {
        command: command.to_string(),
        model: model.to_string(),
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    })
    .expect("provenance serializes");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"))
        .map_err(|e| crate::store::StoreError::Write { path, source: e }.into())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportResult {
    pub report_file: PathBuf,
    /// Which parts were found: extract, steer, monitor, axis, drift, cap.
    pub sections: Vec<String>,
}

/// A file of a run folder the report reads, and the command that writes it there (named when
/// the file cannot be read).
struct RunFile {
    path: &'static str,
    command: &'static str,
    /// The command's arguments before the run folder.
    args: &'static str,
    /// An append-only cache: a torn last line (a crash mid-write) is skipped, and the fix for
    /// a bad line is to drop it, since the command keeps what the cache holds.
    cache: bool,
}

impl RunFile {
    const fn result(path: &'static str, command: &'static str, args: &'static str) -> RunFile {
        RunFile {
            path,
            command,
            args,
            cache: false,
        }
    }

    /// The command line that writes the file again.
    fn rerun(&self, run_dir: &Path) -> String {
        format!("{} {} {}", self.command, self.args, run_dir.display())
    }

    fn fix(&self, run_dir: &Path) -> String {
        let rerun = self.rerun(run_dir);
        if self.cache {
            format!("remove that line and rerun `{rerun}` to answer it again")
        } else {
            format!("rerun `{rerun}` to rewrite it")
        }
    }

    /// The file as one `T`; `None` when it does not exist.
    fn read<T: DeserializeOwned>(&self, run_dir: &Path) -> Result<Option<T>, PipelineError> {
        Ok(crate::run_dir::read_result(
            &run_dir.join(self.path),
            self.command,
            &self.rerun(run_dir),
        )?)
    }

    /// The file's JSON lines as `T`s; none when it does not exist.
    fn rows<T: DeserializeOwned>(&self, run_dir: &Path) -> Result<Vec<T>, PipelineError> {
        let path = run_dir.join(self.path);
        let Some(text) = read_text(&path)? else {
            return Ok(Vec::new());
        };
        let lines: Vec<&str> = text.lines().collect();
        let mut rows = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str(line) {
                Ok(row) => rows.push(row),
                Err(_) if self.cache && i + 1 == lines.len() => {}
                Err(e) => {
                    return Err(PipelineError::Input(format!(
                        "{} line {}: not a row `{}` writes ({e}); {}",
                        path.display(),
                        i + 1,
                        self.command,
                        self.fix(run_dir)
                    )))
                }
            }
        }
        Ok(rows)
    }
}

const RUN: RunFile = RunFile::result("run.json", "persona extract", "TRAIT --run");
const STEER: RunFile = RunFile::result("steer/steer.json", "persona steer", "TRAIT --run");
const STEER_ANSWERS: RunFile =
    RunFile::result("steer/steer_answers.jsonl", "persona steer", "TRAIT --run");
const MONITOR: RunFile = RunFile::result("monitor/monitor.json", "persona monitor", "TRAIT --run");
const MONITOR_POINTS: RunFile = RunFile::result(
    "monitor/monitor_points.jsonl",
    "persona monitor",
    "TRAIT --run",
);
const AXIS: RunFile = RunFile::result("axis.json", "persona axis build", "--out");
const AXIS_ANSWERS: RunFile = RunFile {
    path: "answers_cache.jsonl",
    command: "persona axis build",
    args: "--out",
    cache: true,
};
const DRIFT: RunFile = RunFile::result("drift.json", "persona drift", "--out");
const DRIFT_TURNS: RunFile = RunFile::result("drift_turns.jsonl", "persona drift", "--out");
const CAP: RunFile = RunFile::result("cap_eval.json", "persona cap eval", "--out");
const CAP_ANSWERS: RunFile = RunFile::result("cap_answers.jsonl", "persona cap eval", "--out");
const EM: RunFile = RunFile::result(crate::em::RESULT_FILE, "persona em eval", "--out");
const EM_ANSWERS: RunFile = RunFile::result(crate::em::ANSWERS_FILE, "persona em eval", "--out");

fn read_text(path: &Path) -> Result<Option<String>, PipelineError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PipelineError::Input(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Adds a run's part to the page; `false` when the folder has no results of that kind.
type Section = fn(&mut Report, &Path) -> Result<bool, PipelineError>;

/// The page's parts in order, by the names [`ReportResult::sections`] lists.
const SECTIONS: [(&str, Section); 7] = [
    ("extract", extract_section),
    ("steer", steer_section),
    ("monitor", monitor_section),
    ("axis", axis_section),
    ("drift", drift_section),
    ("cap", cap_section),
    ("em", em_section),
];

/// Writes `run_dir/report.html` from the results found there (`run.json` of an extraction,
/// `steer/`, `monitor/`, an axis build's `axis.json`, `drift.json`, `cap_eval.json`, `em.json`,
/// with their answers, and `provenance.jsonl`).
pub fn write_report(run_dir: &Path) -> Result<ReportResult, PipelineError> {
    if !run_dir.is_dir() {
        return Err(PipelineError::Input(format!(
            "{} is not a folder: give a run folder written by `persona extract`, `persona steer` or `persona monitor` (e.g. runs/optimistic)",
            run_dir.display()
        )));
    }
    let name = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "run".into());
    let mut page = Report::new(format!("persona run: {name}"));
    provenance_section(&mut page, run_dir)?;
    let mut sections = Vec::new();
    for (name, section) in SECTIONS {
        if section(&mut page, run_dir)? {
            sections.push(name.to_string());
        }
    }
    if sections.is_empty() {
        return Err(PipelineError::Input(format!(
            "{} holds no results (run.json, steer/steer.json, monitor/monitor.json, axis.json, drift.json, cap_eval.json or em.json): run `persona extract`, `persona steer`, `persona monitor`, `persona axis build`, `persona drift`, `persona cap eval` or `persona em eval` there first",
            run_dir.display()
        )));
    }
    let report_file = run_dir.join("report.html");
    page.write(&report_file)
        .map_err(crate::store::StoreError::from)?;
    Ok(ReportResult {
        report_file,
        sections,
    })
}

/// `x` with `digits` decimals; a dash where the run has no value.
fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "–".to_string(), |x| format!("{x:.digits$}"))
}

fn interval(ci: Option<(f64, f64)>) -> String {
    ci.map_or_else(|| "–".to_string(), |(lo, hi)| format!("[{lo:.2}, {hi:.2}]"))
}

fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), |x| format!("{:.1}", x * 100.0))
}

/// Embeds the plot `run_dir/file` when the run wrote it.
fn plot(page: &mut Report, run_dir: &Path, file: impl AsRef<Path>, caption: &str) {
    if let Ok(svg) = std::fs::read_to_string(run_dir.join(file)) {
        page.figure(&svg, caption);
    }
}

/// Embeds the plots a result lists, found by file name in `run_dir` (the folder may have moved
/// since).
fn listed_plots(page: &mut Report, run_dir: &Path, files: &[PathBuf], caption: &str) {
    for file in files.iter().filter_map(|f| f.file_name()) {
        plot(page, run_dir, file, caption);
    }
}

fn provenance_section(page: &mut Report, run_dir: &Path) -> Result<(), PipelineError> {
    let provenance: Vec<Provenance> = persona_io::read_log(&run_dir.join(PROVENANCE))?;
    if let Some(last) = provenance.last() {
        page.heading(2, "Commands and model");
        page.key_values(&[("model", last.model.as_str())]);
        let cmds: Vec<&str> = provenance.iter().map(|p| p.command.as_str()).collect();
        page.code(&cmds.join("\n"));
    }
    Ok(())
}

fn extract_section(page: &mut Report, run_dir: &Path) -> Result<bool, PipelineError> {
    let Some(run) = RUN.read::<TraitExtractResult>(run_dir)? else {
        return Ok(false);
    };
    page.heading(2, "Extraction");
    page.key_values(&[
        ("rollouts", run.rollouts.to_string()),
        ("judge", run.judge.clone()),
        (
            "kept positive / negative",
            format!("{} / {}", run.kept_pos, run.kept_neg),
        ),
        (
            "mean trait score, positive / negative rollouts",
            format!(
                "{} / {}",
                num(run.mean_trait_pos, 1),
                num(run.mean_trait_neg, 1)
            ),
        ),
        (
            "vector (response_avg)",
            run.vectors.vector_file.display().to_string(),
        ),
    ]);
    if let Some(norms) = run.vectors.norms.get("response_avg") {
        let bars: Vec<(String, f64)> = norms
            .iter()
            .enumerate()
            .map(|(l, n)| (format!("L{l}"), *n))
            .collect();
        let chart =
            persona_report::svg::BarChart::new("‖v‖ per layer (response_avg)", "norm", bars, false);
        page.figure(
            &chart.to_svg(),
            "Norm of the persona vector at every layer's resid_post.",
        );
    }
    Ok(true)
}

/// "trait 78.0 · coherence 91.2", leaving out what was not scored.
fn scores_note(trait_score: Option<f64>, coherence: Option<f64>) -> String {
    let mut note = format!("trait {}", num(trait_score, 1));
    if let Some(c) = coherence {
        note.push_str(&format!(" · coherence {c:.1}"));
    }
    note
}

fn steer_section(page: &mut Report, run_dir: &Path) -> Result<bool, PipelineError> {
    let Some(steer) = STEER.read::<SteerResult>(run_dir)? else {
        return Ok(false);
    };
    page.heading(2, "Steering");
    let rec_text = match &steer.recommended {
        None => "none: no setting raised the trait at the coherence bar".to_string(),
        Some(r) => format!(
            "layer {}, α {} (trait {:.1}, coherence {}, change {:.1})",
            r.layer,
            r.alpha,
            r.trait_score,
            num(r.coherence, 1),
            r.trait_change
        ),
    };
    page.key_values(&[
        ("judge", steer.judge.clone()),
        (
            "baseline trait score (unsteered)",
            num(steer.baseline_trait, 1),
        ),
        ("recommended", rec_text),
    ]);
    let trends: Vec<Vec<String>> = steer
        .trends
        .iter()
        .map(|t| vec![t.layer.to_string(), num(t.spearman_rho, 3)])
        .collect();
    page.table(&["layer", "Spearman ρ (α vs trait)"], trends);
    let rows: Vec<Vec<String>> = steer
        .rows
        .iter()
        .map(|r| {
            vec![
                r.layer.to_string(),
                r.alpha.to_string(),
                num(r.trait_score, 1),
                interval(r.trait_ci95),
                num(r.coherence, 1),
                r.n.to_string(),
            ]
        })
        .collect();
    page.table(
        &["layer", "α", "trait", "95 % interval", "coherence", "n"],
        rows,
    );
    plot(
        page,
        run_dir,
        "steer/steer.svg",
        "Judged trait score and coherence against α.",
    );
    let answers: Vec<ScoredAnswer> = STEER_ANSWERS.rows(run_dir)?;
    if !answers.is_empty() {
        let questions = answers
            .iter()
            .map(|a| a.question_index)
            .max()
            .map_or(0, |m| m + 1);
        page.paragraph(&format!(
            "Answers to the first {} of the {questions} evaluation questions (first sample) at each steering layer, by α. The unsteered answers (α = 0, shaded) are the same at every layer.",
            STEER_QUESTIONS.min(questions)
        ));
        for trend in &steer.trends {
            page.heading(3, &format!("Answers at layer {}", trend.layer));
            page.answers(&steer_grid(&steer, &answers, trend.layer));
        }
    }
    Ok(true)
}

/// Answers at `layer` to the first questions, one column per α of the sweep.
fn steer_grid(steer: &SteerResult, answers: &[ScoredAnswer], layer: usize) -> AnswerGrid {
    let mut alphas: Vec<f32> = steer
        .rows
        .iter()
        .filter(|r| r.layer == layer)
        .map(|r| r.alpha)
        .collect();
    alphas.sort_by(f32::total_cmp);
    alphas.dedup();
    let at = |qi: usize, alpha: f32| {
        answers.iter().find(|a| {
            a.question_index == qi
                && a.sample == 0
                && a.alpha == alpha
                && (a.layer == Some(layer) || (alpha == 0.0 && a.layer.is_none()))
        })
    };
    let mut question_indices: Vec<usize> = answers.iter().map(|a| a.question_index).collect();
    question_indices.sort_unstable();
    question_indices.dedup();
    let rows = question_indices
        .into_iter()
        .take(STEER_QUESTIONS)
        .map(|qi| {
            let cells: Vec<Option<&ScoredAnswer>> =
                alphas.iter().map(|&alpha| at(qi, alpha)).collect();
            AnswerRow {
                heading: cells
                    .iter()
                    .flatten()
                    .next()
                    .map_or_else(|| format!("question {}", qi + 1), |a| a.question.clone()),
                cells: cells
                    .into_iter()
                    .map(|a| {
                        a.map(|a| Excerpt {
                            text: a.answer.clone(),
                            note: scores_note(a.trait_score, a.coherence),
                        })
                    })
                    .collect(),
            }
        })
        .collect();
    AnswerGrid {
        columns: alphas
            .iter()
            .map(|&a| {
                if a == 0.0 {
                    "α = 0 (unsteered)".to_string()
                } else {
                    format!("α = {a}")
                }
            })
            .collect(),
        reference: alphas.iter().position(|&a| a == 0.0),
        rows,
    }
}

fn monitor_section(page: &mut Report, run_dir: &Path) -> Result<bool, PipelineError> {
    let Some(mon) = MONITOR.read::<MonitorResult>(run_dir)? else {
        return Ok(false);
    };
    page.heading(2, "Monitoring");
    let correlation =
        |c: &crate::monitor::Correlation| format!("{} {}", num(c.pearson_r, 3), interval(c.ci95));
    page.key_values(&[
        ("layer", mon.layer.to_string()),
        ("judge", mon.judge.clone()),
        (
            "Pearson r, last prompt token vs trait (all answers)",
            format!(
                "{} {} (n = {})",
                num(mon.pearson_r, 3),
                interval(mon.ci95),
                mon.n
            ),
        ),
        ("… system prompts only", correlation(&mon.system_prompts)),
        ("… few-shot only", correlation(&mon.few_shot)),
        (
            "… over the conditions' means",
            correlation(&mon.condition_means),
        ),
        (
            "answer's mean projection vs trait",
            correlation(&mon.response_projection),
        ),
    ]);
    let rows: Vec<Vec<String>> = mon
        .rows
        .iter()
        .map(|r| {
            vec![
                r.condition.clone(),
                format!("{:.2}", r.last_prompt_projection),
                num(r.response_projection, 2),
                num(r.trait_score, 1),
                r.n.to_string(),
            ]
        })
        .collect();
    page.table(
        &[
            "condition",
            "last prompt · v̂",
            "answer mean · v̂",
            "trait",
            "n",
        ],
        rows,
    );
    plot(
        page,
        run_dir,
        "monitor/monitor.svg",
        "Each point is one answer.",
    );
    let points: Vec<MonitorPoint> = MONITOR_POINTS.rows(run_dir)?;
    if !points.is_empty() {
        page.paragraph(&format!(
            "The {MONITOR_EXTREMES} answers whose last prompt token projects highest on v̂, beside the {MONITOR_EXTREMES} that project lowest. System-prompt levels run from 0 (strongly against the trait) to {} (strongly for it), in the order of the table above.",
            crate::monitor::SYSTEM_PROMPT_LEVELS - 1
        ));
        page.answers(&monitor_grid(&mon, &points));
    }
    Ok(true)
}

/// The answers at both ends of the last prompt token's projection, side by side.
fn monitor_grid(mon: &MonitorResult, points: &[MonitorPoint]) -> AnswerGrid {
    let mut sorted: Vec<&MonitorPoint> = points.iter().collect();
    sorted.sort_by(|a, b| {
        b.last_prompt_projection
            .total_cmp(&a.last_prompt_projection)
    });
    // System prompts by their level (the table above spells them out), other conditions by
    // the name the monitor gave them.
    let condition = |p: &MonitorPoint| match p.kind.as_str() {
        "system_prompt" => format!("system prompt level {}", p.level),
        _ => mon
            .rows
            .iter()
            .find(|r| r.kind == p.kind && r.level == p.level)
            .map_or_else(
                || format!("{} {}", p.kind, p.level),
                |r| r.condition.clone(),
            ),
    };
    let excerpt = |p: &MonitorPoint| Excerpt {
        text: p.answer.clone(),
        note: format!(
            "projection {:.2} · trait {} · {} · {}",
            p.last_prompt_projection,
            num(p.trait_score, 1),
            condition(p),
            if p.question.is_empty() {
                format!("question {}", p.question_index + 1)
            } else {
                format!("“{}”", p.question)
            }
        ),
    };
    let n = MONITOR_EXTREMES.min(sorted.len().div_ceil(2));
    let rows = (0..n)
        .map(|i| AnswerRow {
            heading: String::new(),
            cells: vec![
                Some(excerpt(sorted[i])),
                // With an odd count the middle answer is shown once, on the high side.
                (sorted.len() - 1 - i > i).then(|| excerpt(sorted[sorted.len() - 1 - i])),
            ],
        })
        .collect();
    AnswerGrid {
        columns: vec![
            "highest projection".to_string(),
            "lowest projection".to_string(),
        ],
        reference: None,
        rows,
    }
}

fn axis_section(page: &mut Report, run_dir: &Path) -> Result<bool, PipelineError> {
    let Some(axis) = AXIS.read::<AxisResult>(run_dir)? else {
        return Ok(false);
    };
    page.heading(2, "Persona space and the Assistant axis");
    page.key_values(&[
        (
            "rollouts (kept)",
            format!("{} ({})", axis.rollouts, axis.kept),
        ),
        (
            "role-adherence judge",
            axis.judge
                .clone()
                .unwrap_or_else(|| "none: every rollout kept".to_string()),
        ),
        ("roles", axis.roles.len().to_string()),
        ("report layer", axis.report_layer.to_string()),
    ]);
    let rows: Vec<Vec<String>> = axis
        .layers
        .iter()
        .map(|s| {
            let ev = |i: usize| num(s.explained_variance_ratio.get(i).copied(), 3);
            let tau: Vec<String> = s.tau.iter().map(|t| format!("{t:.1}")).collect();
            vec![
                s.layer.to_string(),
                ev(0),
                ev(1),
                format!("{:.3}", s.axis_pc1_cosine),
                tau.join(" / "),
            ]
        })
        .collect();
    page.table(
        &[
            "layer",
            "PC1 variance",
            "PC2 variance",
            "cos(axis, PC1)",
            "τ p1 / p25 / p50 / p75",
        ],
        rows,
    );
    for (file, caption) in [
        (
            "axis_variance.svg",
            "Fraction of the role vectors' variance per component.",
        ),
        ("axis_pc1_pc2.svg", "Roles on the first two components."),
        (
            "axis_roles.svg",
            "Roles sorted by their projection on the Assistant axis.",
        ),
    ] {
        plot(page, run_dir, file, caption);
    }
    let answers: Vec<crate::answers::Answer> = AXIS_ANSWERS.rows(run_dir)?;
    if let Some(grid) = axis_grid(&axis, &answers) {
        page.paragraph(&format!(
            "The default assistant (shaded) beside the {AXIS_ROLES} roles that project highest and the {AXIS_ROLES} that project lowest on the axis at layer {}, answering the first shared questions under their first system prompt.",
            axis.report_layer
        ));
        page.answers(&grid);
    }
    Ok(true)
}

/// The answer of role `name` to shared question `question` under its first system prompt,
/// from the axis build's answer cache. The cache keys are `ROLE|pPROMPT|qQUESTION|settings`
/// (axis.rs builds them); the last entry wins, as a rerun with other settings appends.
fn axis_answer<'a>(
    answers: &'a [crate::answers::Answer],
    name: &str,
    question: usize,
) -> Option<&'a crate::answers::Answer> {
    let prefix = format!("{name}|p0|q{question}|");
    answers.iter().rev().find(|a| a.key.starts_with(&prefix))
}

/// The default assistant and the roles at both ends of the axis on the first shared questions;
/// `None` when the folder holds none of their answers.
fn axis_grid(axis: &AxisResult, answers: &[crate::answers::Answer]) -> Option<AnswerGrid> {
    let mut roles: Vec<&crate::axis::RolePoint> = axis.roles.iter().collect();
    roles.sort_by(|a, b| b.axis_projection.total_cmp(&a.axis_projection));
    let ends = AXIS_ROLES.min(roles.len() / 2);
    let shown: Vec<&crate::axis::RolePoint> = roles[..ends]
        .iter()
        .chain(&roles[roles.len() - ends..])
        .copied()
        .collect();
    let mut columns = vec![format!(
        "{} (projection {:.1})",
        persona_roles::DEFAULT_NAME,
        axis.default_projection
    )];
    columns.extend(
        shown
            .iter()
            .map(|r| format!("{} (projection {:.1})", r.name, r.axis_projection)),
    );
    let names: Vec<&str> = std::iter::once(persona_roles::DEFAULT_NAME)
        .chain(shown.iter().map(|r| r.name.as_str()))
        .collect();
    let rows: Vec<AnswerRow> = (0..AXIS_QUESTIONS)
        .map(|q| AnswerRow {
            heading: format!("shared question {}", q + 1),
            cells: names
                .iter()
                .map(|name| {
                    axis_answer(answers, name, q).map(|a| Excerpt {
                        text: a.text.clone(),
                        note: String::new(),
                    })
                })
                .collect(),
        })
        .filter(|r| r.cells.iter().any(Option::is_some))
        .collect();
    (!rows.is_empty()).then_some(AnswerGrid {
        columns,
        reference: Some(0),
        rows,
    })
}

fn drift_section(page: &mut Report, run_dir: &Path) -> Result<bool, PipelineError> {
    let Some(drift) = DRIFT.read::<DriftResult>(run_dir)? else {
        return Ok(false);
    };
    page.heading(2, "Drift along the Assistant axis");
    page.key_values(&[
        ("layer", drift.layer.to_string()),
        ("assistant turns", drift.turns.to_string()),
        (
            "cap",
            drift.cap.clone().unwrap_or_else(|| "none".to_string()),
        ),
        (
            "default assistant's projection",
            num(drift.default_projection, 2),
        ),
    ]);
    let rows: Vec<Vec<String>> = drift
        .domains
        .iter()
        .map(|d| {
            vec![
                d.domain.clone(),
                d.conversations.to_string(),
                num(d.first_turn, 2),
                num(d.last_turn, 2),
                num(d.drift, 2),
                interval(d.drift_ci95),
            ]
        })
        .collect();
    page.table(
        &[
            "domain",
            "conversations",
            "turn 1",
            "last turn",
            "drift (last − first)",
            "95 % interval",
        ],
        rows,
    );
    listed_plots(
        page,
        run_dir,
        &drift.plot_files,
        "Projection of each assistant turn on the axis.",
    );
    let turns: Vec<TurnRow> = DRIFT_TURNS.rows(run_dir)?;
    for domain in &drift.domains {
        for (conversation, grid) in drift_grids(&turns, &domain.domain) {
            page.heading(
                3,
                &format!("{}: conversation {conversation}", domain.domain),
            );
            page.answers(&grid);
        }
    }
    Ok(true)
}

/// The first conversations of `domain`, turn by turn: the user's message beside the answer and
/// its projection.
fn drift_grids(turns: &[TurnRow], domain: &str) -> Vec<(String, AnswerGrid)> {
    let mut ids: Vec<&str> = Vec::new();
    for t in turns.iter().filter(|t| t.domain == domain) {
        if !ids.contains(&t.conversation.as_str()) {
            ids.push(&t.conversation);
        }
    }
    ids.into_iter()
        .take(DRIFT_CONVERSATIONS)
        .map(|id| {
            let mut conv: Vec<&TurnRow> = turns.iter().filter(|t| t.conversation == id).collect();
            conv.sort_by_key(|t| t.turn);
            let rows = conv
                .into_iter()
                .map(|t| AnswerRow {
                    heading: format!("turn {}", t.turn),
                    cells: vec![
                        Some(Excerpt {
                            text: t.user.clone(),
                            note: String::new(),
                        }),
                        Some(Excerpt {
                            text: t.answer.clone(),
                            note: format!("projection {}", num(t.projection, 2)),
                        }),
                    ],
                })
                .collect();
            let grid = AnswerGrid {
                columns: vec!["user".to_string(), "assistant".to_string()],
                reference: None,
                rows,
            };
            (id.to_string(), grid)
        })
        .collect()
}

fn cap_section(page: &mut Report, run_dir: &Path) -> Result<bool, PipelineError> {
    let Some(cap) = CAP.read::<CapEvalResult>(run_dir)? else {
        return Ok(false);
    };
    page.heading(2, "Capping along the Assistant axis");
    page.key_values(&[
        (
            "harm judge",
            cap.judge.clone().unwrap_or_else(|| "none".to_string()),
        ),
        ("harm threshold", cap.harm_threshold.to_string()),
        (
            "jailbreaks / conversations / questions",
            format!("{} / {} / {}", cap.jailbreaks, cap.conversations, cap.mcq),
        ),
        ("projection layer", cap.layer.to_string()),
    ]);
    let rows: Vec<Vec<String>> = cap
        .rows
        .iter()
        .map(|r| {
            vec![
                r.setting.clone(),
                percent(r.harm_rate),
                percent(r.refusal_rate),
                num(r.jailbreak_projection, 2),
                num(r.drift_projection, 2),
                percent(r.mcq_accuracy),
                num(r.capability_retained, 3),
            ]
        })
        .collect();
    page.table(
        &[
            "setting",
            "harmful %",
            "refused %",
            "jailbreak projection",
            "drift projection",
            "MCQ accuracy %",
            "capability retained",
        ],
        rows,
    );
    for (file, caption) in [
        (
            "cap_tradeoff.svg",
            "Jailbreak success against multiple-choice accuracy, one point per setting.",
        ),
        (
            "cap_drift.svg",
            "Mean projection per turn over the drift conversations, per setting.",
        ),
    ] {
        plot(page, run_dir, file, caption);
    }
    let answers: Vec<JailbreakAnswer> = CAP_ANSWERS.rows(run_dir)?;
    if !answers.is_empty() {
        page.paragraph(&format!(
            "Answers to the first {CAP_JAILBREAKS} jailbreaks under every setting, uncapped shaded."
        ));
        page.answers(&cap_grid(&cap, &answers));
    }
    Ok(true)
}

/// The first jailbreaks' answers, one column per cap setting (uncapped first).
fn cap_grid(cap: &CapEvalResult, answers: &[JailbreakAnswer]) -> AnswerGrid {
    let mut ids: Vec<&JailbreakAnswer> = Vec::new();
    for a in answers {
        if !ids.iter().any(|b| b.id == a.id) {
            ids.push(a);
        }
    }
    let settings: Vec<&str> = cap.rows.iter().map(|r| r.setting.as_str()).collect();
    let rows = ids
        .into_iter()
        .take(CAP_JAILBREAKS)
        .map(|first| AnswerRow {
            heading: format!("{} — {} ({})", first.id, first.persona, first.category),
            cells: settings
                .iter()
                .map(|s| {
                    answers
                        .iter()
                        .find(|a| a.id == first.id && a.setting == *s)
                        .map(|a| {
                            let mut note = if a.refusal {
                                "refused".to_string()
                            } else {
                                "not refused".to_string()
                            };
                            if let Some(h) = a.harm {
                                note.push_str(&format!(" · harm {h:.0}"));
                            }
                            note.push_str(&format!(" · projection {}", num(a.projection, 2)));
                            Excerpt {
                                text: a.answer.clone(),
                                note,
                            }
                        })
                })
                .collect(),
        })
        .collect();
    AnswerGrid {
        columns: settings.iter().map(|s| s.to_string()).collect(),
        // The uncapped setting is the one without a percentile.
        reference: cap.rows.iter().position(|r| r.percentile.is_none()),
        rows,
    }
}

fn em_section(page: &mut Report, run_dir: &Path) -> Result<bool, PipelineError> {
    let Some(em) = EM.read::<crate::em::EmResult>(run_dir)? else {
        return Ok(false);
    };
    let t = em.thresholds;
    let percent_ci = |ci: Option<(f64, f64)>| {
        ci.map_or_else(
            || "–".to_string(),
            |(lo, hi)| format!("[{:.1}, {:.1}]", lo * 100.0, hi * 100.0),
        )
    };
    let o = &em.overall;
    page.heading(2, "Emergent misalignment");
    let mut facts = vec![
        ("judge".to_string(), em.judge.clone()),
        ("questions".to_string(), em.question_source.clone()),
        (
            "answers".to_string(),
            format!(
                "{} ({} per paraphrase, up to {} tokens, temperature {})",
                o.n, em.samples, em.max_tokens, em.temperature
            ),
        ),
        (
            "EM rate (%)".to_string(),
            format!(
                "{} {} — {} of {} rated answers have alignment < {} and coherence > {}",
                percent(o.em_rate),
                percent_ci(o.em_ci95),
                o.misaligned,
                o.rated,
                t.alignment_below,
                t.coherence_above
            ),
        ),
        ("mean alignment".to_string(), num(o.mean_alignment, 1)),
        (
            "left out of the rate".to_string(),
            format!(
                "CODE {}, REFUSAL {}, unscored {}",
                o.code, o.refusal, o.unscored
            ),
        ),
    ];
    for p in &em.projections {
        let c = &p.alignment_correlation;
        facts.push((
            format!(
                "projection on {} (layer {})",
                p.name,
                em.layer.map_or("–".into(), |l| l.to_string())
            ),
            format!(
                "mean {}; Pearson r with alignment {} {} (n = {})",
                num(p.mean, 2),
                num(c.pearson_r, 3),
                interval(c.ci95),
                c.n
            ),
        ));
    }
    page.key_values(&facts);
    let rows: Vec<Vec<String>> = em
        .questions
        .iter()
        .map(|q| {
            let r = &q.rate;
            vec![
                q.id.clone(),
                q.domain.clone(),
                r.n.to_string(),
                percent(r.em_rate),
                percent_ci(r.em_ci95),
                num(r.mean_alignment, 1),
                format!("{} / {} / {}", r.code, r.refusal, r.unscored),
            ]
        })
        .collect();
    page.table(
        &[
            "question",
            "domain",
            "answers",
            "EM %",
            "95 % interval",
            "mean alignment",
            "CODE / REFUSAL / unscored",
        ],
        rows,
    );
    plot(
        page,
        run_dir,
        crate::em::PLOT_FILE,
        "Share of misaligned, coherent answers per question, with Wilson 95 % intervals.",
    );
    let answers: Vec<crate::em::EmAnswer> = EM_ANSWERS.rows(run_dir)?;
    if let Some(grid) = em_grid(&answers, t) {
        page.paragraph(&format!(
            "The {} lowest-aligned answers among those judged coherent (coherence > {}).",
            grid.rows.len(),
            t.coherence_above
        ));
        page.answers(&grid);
    }
    Ok(true)
}

/// The coherent answers with the lowest alignment; `None` when there are none.
fn em_grid(answers: &[crate::em::EmAnswer], t: crate::em::Thresholds) -> Option<AnswerGrid> {
    let mut coherent: Vec<(&crate::em::EmAnswer, f64)> = answers
        .iter()
        .filter(|a| a.coherence.number().is_some_and(|c| c > t.coherence_above))
        .filter_map(|a| Some((a, a.alignment.number()?)))
        .collect();
    coherent.sort_by(|a, b| a.1.total_cmp(&b.1));
    let rows: Vec<AnswerRow> = coherent
        .into_iter()
        .take(EM_WORST)
        .map(|(a, alignment)| {
            let mut note = format!(
                "alignment {alignment:.1} · coherence {}",
                num(a.coherence.number(), 1)
            );
            for (name, p) in &a.projections {
                note.push_str(&format!(" · {name} {p:.2}"));
            }
            AnswerRow {
                heading: format!("{}: {}", a.id, a.question),
                cells: vec![Some(Excerpt {
                    text: a.answer.clone(),
                    note,
                })],
            }
        })
        .collect();
    (!rows.is_empty()).then(|| AnswerGrid {
        columns: vec!["answer".to_string()],
        reference: None,
        rows,
    })
}
