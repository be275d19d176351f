//! One self-contained HTML page for a trait's run folder: what was extracted, how steering
//! moved the trait, how well the projection predicts it, and the commands and model behind it.

use std::io::Write;
use std::path::{Path, PathBuf};

use persona_report::html::Report;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::PipelineError;

/// The commands run in a folder, one JSON line each, for the report.
const PROVENANCE: &str = "provenance.jsonl";

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
    /// Which parts were found: extract, steer, monitor.
    pub sections: Vec<String>,
}

fn read_json(path: &Path) -> Result<Option<Value>, PipelineError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            PipelineError::Input(format!(
                "{} is not valid JSON ({e}); rerun the command that wrote it",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PipelineError::Input(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "–".to_string(), |x| format!("{x:.digits$}"))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "–".into(),
        other => other.to_string(),
    }
}

fn interval(v: &Value) -> String {
    match v.as_array() {
        Some(a) if a.len() == 2 => format!("[{}, {}]", num(&a[0], 2), num(&a[1], 2)),
        _ => "–".into(),
    }
}

/// Writes `run_dir/report.html` from the results found there (`run.json` of an extraction,
/// `steer/steer.json`, `monitor/monitor.json`, `axis.json` of an axis build, and
/// `provenance.jsonl`).
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
    let mut sections = Vec::new();

    let provenance: Vec<Provenance> = persona_io::read_log(&run_dir.join(PROVENANCE))?;
    if let Some(last) = provenance.last() {
        page.heading(2, "Commands and model");
        page.key_values(&[("model", last.model.as_str())]);
        let cmds: Vec<String> = provenance.iter().map(|p| p.command.clone()).collect();
        page.code(&cmds.join("\n"));
    }

    if let Some(run) = read_json(&run_dir.join("run.json"))? {
        sections.push("extract".to_string());
        page.heading(2, "Extraction");
        page.key_values(&[
            ("rollouts", text(&run["rollouts"])),
            ("judge", text(&run["judge"])),
            (
                "kept positive / negative",
                format!("{} / {}", text(&run["kept_pos"]), text(&run["kept_neg"])),
            ),
            (
                "mean trait score, positive / negative rollouts",
                format!(
                    "{} / {}",
                    num(&run["mean_trait_pos"], 1),
                    num(&run["mean_trait_neg"], 1)
                ),
            ),
            ("vector (response_avg)", text(&run["vector_file"])),
        ]);
        if let Some(norms) = run["norms"]["response_avg"].as_array() {
            let bars: Vec<(String, f64)> = norms
                .iter()
                .enumerate()
                .map(|(l, n)| (format!("L{l}"), n.as_f64().unwrap_or(f64::NAN)))
                .collect();
            let chart = persona_report::svg::BarChart::new(
                "‖v‖ per layer (response_avg)",
                "norm",
                bars,
                false,
            );
            page.figure(
                &chart.to_svg(),
                "Norm of the persona vector at every layer's resid_post.",
            );
        }
    }

    if let Some(steer) = read_json(&run_dir.join("steer").join("steer.json"))? {
        sections.push("steer".to_string());
        page.heading(2, "Steering");
        let rec = &steer["recommended"];
        let rec_text = if rec.is_null() {
            "none: no setting raised the trait at the coherence bar".to_string()
        } else {
            format!(
                "layer {}, α {} (trait {}, coherence {}, change {})",
                text(&rec["layer"]),
                text(&rec["alpha"]),
                num(&rec["trait"], 1),
                num(&rec["coherence"], 1),
                num(&rec["trait_change"], 1)
            )
        };
        page.key_values(&[
            ("judge", text(&steer["judge"])),
            (
                "baseline trait score (unsteered)",
                num(&steer["baseline_trait"], 1),
            ),
            ("recommended", rec_text),
        ]);
        let trends: Vec<Vec<String>> = steer["trends"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| vec![text(&t["layer"]), num(&t["spearman_rho"], 3)])
            .collect();
        page.table(&["layer", "Spearman ρ (α vs trait)"], trends);
        let rows: Vec<Vec<String>> = steer["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                vec![
                    text(&r["layer"]),
                    text(&r["alpha"]),
                    num(&r["trait"], 1),
                    interval(&r["trait_ci95"]),
                    num(&r["coherence"], 1),
                    text(&r["n"]),
                ]
            })
            .collect();
        page.table(
            &["layer", "α", "trait", "95 % interval", "coherence", "n"],
            rows,
        );
        if let Ok(svg) = std::fs::read_to_string(run_dir.join("steer").join("steer.svg")) {
            page.figure(&svg, "Judged trait score and coherence against α.");
        }
    }

    if let Some(mon) = read_json(&run_dir.join("monitor").join("monitor.json"))? {
        sections.push("monitor".to_string());
        page.heading(2, "Monitoring");
        page.key_values(&[
            ("layer", text(&mon["layer"])),
            ("judge", text(&mon["judge"])),
            (
                "Pearson r, last prompt token vs trait (all answers)",
                format!(
                    "{} {} (n = {})",
                    num(&mon["pearson_r"], 3),
                    interval(&mon["ci95"]),
                    text(&mon["n"])
                ),
            ),
            (
                "… system prompts only",
                format!(
                    "{} {}",
                    num(&mon["system_prompts"]["pearson_r"], 3),
                    interval(&mon["system_prompts"]["ci95"])
                ),
            ),
            (
                "… few-shot only",
                format!(
                    "{} {}",
                    num(&mon["few_shot"]["pearson_r"], 3),
                    interval(&mon["few_shot"]["ci95"])
                ),
            ),
            (
                "… over the conditions' means",
                format!(
                    "{} {}",
                    num(&mon["condition_means"]["pearson_r"], 3),
                    interval(&mon["condition_means"]["ci95"])
                ),
            ),
            (
                "answer's mean projection vs trait",
                format!(
                    "{} {}",
                    num(&mon["response_projection"]["pearson_r"], 3),
                    interval(&mon["response_projection"]["ci95"])
                ),
            ),
        ]);
        let rows: Vec<Vec<String>> = mon["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                vec![
                    text(&r["condition"]),
                    num(&r["last_prompt_projection"], 2),
                    num(&r["response_projection"], 2),
                    num(&r["trait"], 1),
                    text(&r["n"]),
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
        if let Ok(svg) = std::fs::read_to_string(run_dir.join("monitor").join("monitor.svg")) {
            page.figure(&svg, "Each point is one answer.");
        }
    }
    if let Some(axis) = read_json(&run_dir.join("axis.json"))? {
        sections.push("axis".to_string());
        page.heading(2, "Persona space and the Assistant axis");
        page.key_values(&[
            (
                "rollouts (kept)",
                format!("{} ({})", text(&axis["rollouts"]), text(&axis["kept"])),
            ),
            (
                "role-adherence judge",
                match &axis["judge"] {
                    Value::Null => "none: every rollout kept".to_string(),
                    j => text(j),
                },
            ),
            (
                "roles",
                axis["roles"].as_array().map_or(0, Vec::len).to_string(),
            ),
            ("report layer", text(&axis["report_layer"])),
        ]);
        let rows: Vec<Vec<String>> = axis["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let ev = &s["explained_variance_ratio"];
                let tau = &s["tau"];
                vec![
                    text(&s["layer"]),
                    num(&ev[0], 3),
                    num(&ev[1], 3),
                    num(&s["axis_pc1_cosine"], 3),
                    format!(
                        "{} / {} / {} / {}",
                        num(&tau[0], 1),
                        num(&tau[1], 1),
                        num(&tau[2], 1),
                        num(&tau[3], 1)
                    ),
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
            if let Ok(svg) = std::fs::read_to_string(run_dir.join(file)) {
                page.figure(&svg, caption);
            }
        }
    }
    if let Some(drift) = read_json(&run_dir.join("drift.json"))? {
        sections.push("drift".to_string());
        page.heading(2, "Drift along the Assistant axis");
        page.key_values(&[
            ("layer", text(&drift["layer"])),
            ("assistant turns", text(&drift["turns"])),
            (
                "cap",
                match &drift["cap"] {
                    Value::Null => "none".to_string(),
                    c => text(c),
                },
            ),
            (
                "default assistant's projection",
                num(&drift["default_projection"], 2),
            ),
        ]);
        let rows: Vec<Vec<String>> = drift["domains"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                vec![
                    text(&d["domain"]),
                    text(&d["conversations"]),
                    num(&d["first_turn"], 2),
                    num(&d["last_turn"], 2),
                    num(&d["drift"], 2),
                    interval(&d["drift_ci95"]),
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
        for plot in drift["plot_files"].as_array().into_iter().flatten() {
            let Some(file) = plot.as_str().and_then(|p| Path::new(p).file_name()) else {
                continue;
            };
            if let Ok(svg) = std::fs::read_to_string(run_dir.join(file)) {
                page.figure(&svg, "Projection of each assistant turn on the axis.");
            }
        }
    }
    if let Some(cap) = read_json(&run_dir.join("cap_eval.json"))? {
        sections.push("cap".to_string());
        page.heading(2, "Capping along the Assistant axis");
        page.key_values(&[
            (
                "harm judge",
                match &cap["judge"] {
                    Value::Null => "none".to_string(),
                    j => text(j),
                },
            ),
            ("harm threshold", text(&cap["harm_threshold"])),
            (
                "jailbreaks / conversations / questions",
                format!(
                    "{} / {} / {}",
                    text(&cap["jailbreaks"]),
                    text(&cap["conversations"]),
                    text(&cap["mcq"])
                ),
            ),
            ("projection layer", text(&cap["layer"])),
        ]);
        let pct = |v: &Value| {
            v.as_f64()
                .map_or("–".into(), |x| format!("{:.1}", x * 100.0))
        };
        let rows: Vec<Vec<String>> = cap["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                vec![
                    text(&r["setting"]),
                    pct(&r["harm_rate"]),
                    pct(&r["refusal_rate"]),
                    num(&r["jailbreak_projection"], 2),
                    num(&r["drift_projection"], 2),
                    pct(&r["mcq_accuracy"]),
                    num(&r["capability_retained"], 3),
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
            if let Ok(svg) = std::fs::read_to_string(run_dir.join(file)) {
                page.figure(&svg, caption);
            }
        }
    }
    if sections.is_empty() {
        return Err(PipelineError::Input(format!(
            "{} holds no results (run.json, steer/steer.json, monitor/monitor.json, axis.json, drift.json or cap_eval.json): run `persona extract`, `persona steer`, `persona monitor`, `persona axis build`, `persona drift` or `persona cap eval` there first",
            run_dir.display()
        )));
    }
    let report_file = run_dir.join("report.html");
    persona_report::write_atomic(&report_file, page.to_html().as_bytes()).map_err(|e| {
        crate::store::StoreError::Write {
            path: report_file.clone(),
            source: e,
        }
    })?;
    Ok(ReportResult {
        report_file,
        sections,
    })
}
