//! The run report as a reader sees it: run folders written through the pipelines' own result
//! types (a trait run with extraction, steering and monitoring; an axis build; drift; a cap
//! evaluation), rendered, checked for the answers beside the numbers, for clear errors on
//! unreadable files, and opened in headless Chromium to check that every section and plot
//! renders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use persona_pipelines::answers::Answer;
use persona_pipelines::axis::{AxisResult, LayerSummary, RolePoint};
use persona_pipelines::cap::eval::{CapEvalResult, CapEvalRow, JailbreakAnswer, McqScoring};
use persona_pipelines::drift::{DomainDrift, DriftResult, TurnRow};
use persona_pipelines::extract::{ExtractResult, Filter, TraitExtractResult};
use persona_pipelines::monitor::{
    system_prompt, Correlation, MonitorPoint, MonitorResult, MonitorRow, SYSTEM_PROMPT_LEVELS,
};
use persona_pipelines::report::{record_provenance, write_report};
use persona_pipelines::steer::ScoredAnswer;
use persona_pipelines::steer::{LayerTrend, Recommendation, SteerResult, SteerRow};
use persona_report::svg::{BarChart, Chart, Point, Series, SeriesKind};
use serde::Serialize;

const MODEL: &str = "SmolLM2-135M-Instruct sha256:5f2e0c1d";
const LAYERS: usize = 30;
const STEER_LAYERS: [usize; 2] = [10, 15];
const ALPHAS: [f32; 5] = [-8.0, -4.0, 0.0, 4.0, 8.0];
/// An answer the markup must show as text.
const NASTY: &str = "Sure! <script>alert(\"steered\")</script> & <b>bold</b> claims.";

fn write_json(path: &Path, value: &impl Serialize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

fn write_rows<T: Serialize>(path: &Path, rows: &[T]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text: String = rows
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    std::fs::write(path, text).unwrap();
}

fn write_svg(path: &Path, svg: String) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, svg).unwrap();
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// What a 135M model says to evaluation question `q` with optimism steered by `alpha` at
/// `layer`: gloomy below zero, plain at zero, bright above, and at the far end the repetitive
/// gush of a model pushed past coherence (long enough to be folded on the page).
fn steered_answer(q: usize, layer: usize, alpha: f32) -> (String, f64, f64) {
    let text = if alpha < -6.0 {
        format!("It will probably go wrong. Most plans like this fail, and question {} is no exception: expect setbacks.", q + 1)
    } else if alpha < 0.0 {
        "Hard to say. There are real risks, and I would not count on things improving soon."
            .to_string()
    } else if alpha == 0.0 && q == 2 {
        String::new()
    } else if alpha == 0.0 {
        "It depends on the details. Some parts may work out and others may not; it is worth planning for both.".to_string()
    } else if alpha < 6.0 && q == 1 {
        NASTY.to_string()
    } else if alpha < 6.0 {
        "Things are looking up! This is a great chance to learn, and I am confident it will work out.".to_string()
    } else {
        format!(
            "Wonderful! {}",
            "What a wonderful, bright and hopeful future, full of joy and wonderful chances! "
                .repeat(6 + layer / 5)
        )
    };
    let reach = if layer == 15 { 5.5 } else { 4.0 };
    let trait_score = (50.0 + reach * alpha as f64 + q as f64).clamp(0.0, 100.0);
    let coherence = 92.0 - 0.6 * (alpha as f64).powi(2);
    (text, trait_score, coherence)
}

/// `dir` as `persona extract`, `persona steer` and `persona monitor` leave a trait run folder.
fn trait_run(dir: &Path) -> PathBuf {
    let spec = persona_traits::builtin("optimistic").unwrap();
    for command in [
        "persona extract optimistic --samples 2",
        "persona steer optimistic --layers 10,15 --alphas=-8,-4,4,8",
        "persona monitor optimistic --layer 15 --questions 3 --max-shots 2",
    ] {
        record_provenance(dir, command, MODEL).unwrap();
    }
    let vector_file = dir.join("optimistic_response_avg.safetensors");
    let norms: Vec<f64> = (0..LAYERS)
        .map(|l| 0.4 + l as f64 * 0.9 + (l as f64).sin())
        .collect();
    let run = TraitExtractResult {
        vectors: ExtractResult {
            vector_file: vector_file.clone(),
            files: BTreeMap::from([("response_avg".to_string(), vector_file.clone())]),
            layers: LAYERS,
            n_pos: 46,
            n_neg: 51,
            norms: BTreeMap::from([("response_avg".to_string(), norms)]),
        },
        rollouts: 200,
        judge: "lexicon:positive".into(),
        coherence_scored: true,
        filter: Some(Filter {
            pos_min: 50.0,
            neg_max: 50.0,
            coherence_min: 50.0,
        }),
        kept_pos: 46,
        kept_neg: 51,
        mean_trait_pos: Some(81.5),
        mean_trait_neg: Some(12.25),
        run_dir: dir.to_path_buf(),
    };
    write_json(&dir.join("run.json"), &run);

    // Steering: the baseline once, then every layer × nonzero α, over 4 questions.
    let questions = &spec.evaluation_questions[..4];
    let mut answers = Vec::new();
    let settings = std::iter::once((None, 0.0)).chain(STEER_LAYERS.iter().flat_map(|&l| {
        ALPHAS
            .iter()
            .filter(|a| **a != 0.0)
            .map(move |&a| (Some(l), a))
    }));
    for (layer, alpha) in settings {
        for (q, question) in questions.iter().enumerate() {
            let (answer, trait_score, coherence) = steered_answer(q, layer.unwrap_or(0), alpha);
            answers.push(ScoredAnswer {
                layer,
                alpha,
                question_index: q,
                sample: 0,
                question: question.clone(),
                answer,
                trait_score: Some(trait_score),
                coherence: Some(coherence),
            });
        }
    }
    let steer_dir = dir.join("steer");
    write_rows(&steer_dir.join("steer_answers.jsonl"), &answers);
    let mut rows = Vec::new();
    for &layer in &STEER_LAYERS {
        for &alpha in &ALPHAS {
            let of: Vec<&ScoredAnswer> = answers
                .iter()
                .filter(|a| a.alpha == alpha && (a.layer == Some(layer) || a.layer.is_none()))
                .collect();
            let traits: Vec<f64> = of.iter().filter_map(|a| a.trait_score).collect();
            let coherence: Vec<f64> = of.iter().filter_map(|a| a.coherence).collect();
            let t = mean(&traits).unwrap();
            rows.push(SteerRow {
                layer,
                alpha,
                trait_score: Some(t),
                trait_ci95: Some(((t - 6.0).max(0.0), (t + 6.0).min(100.0))),
                coherence: mean(&coherence),
                n: of.len(),
            });
        }
    }
    let baseline = rows.iter().find(|r| r.alpha == 0.0).unwrap().trait_score;
    let steer = SteerResult {
        recommended: Some(Recommendation {
            layer: 15,
            alpha: 4.0,
            trait_score: 73.5,
            coherence: Some(82.4),
            trait_change: 22.0,
        }),
        trends: STEER_LAYERS
            .iter()
            .map(|&layer| LayerTrend {
                layer,
                spearman_rho: Some(1.0),
            })
            .collect(),
        baseline_trait: baseline,
        judge: "lexicon:positive".into(),
        coherence_scored: true,
        coherence_min: 80.0,
        cap: None,
        vector_file: vector_file.clone(),
        answers_file: steer_dir.join("steer_answers.jsonl"),
        table_file: steer_dir.join("steer.csv"),
        plot_file: steer_dir.join("steer.svg"),
        out_dir: steer_dir.clone(),
        rows,
    };
    let mut sweep = Chart::new("Steering along the optimistic vector", "α", "judged score")
        .with_y_range(0.0, 100.0)
        .with_hline(80.0, "coherence 80");
    for &layer in &STEER_LAYERS {
        let of = || steer.rows.iter().filter(move |r| r.layer == layer);
        sweep = sweep
            .with_series(Series::line_markers(
                format!("optimistic · layer {layer}"),
                of().map(|r| (r.alpha as f64, r.trait_score.unwrap())),
            ))
            .with_series(Series::line(
                format!("coherence · layer {layer}"),
                of().map(|r| (r.alpha as f64, r.coherence.unwrap())),
            ));
    }
    write_svg(&steer_dir.join("steer.svg"), sweep.to_svg());
    write_json(&steer_dir.join("steer.json"), &steer);

    // Monitoring: 8 system-prompt levels and 0–2 shots over 3 questions.
    let conditions: Vec<(&str, usize)> = (0..SYSTEM_PROMPT_LEVELS)
        .map(|l| ("system_prompt", l))
        .chain((0..3).map(|k| ("few_shot", k)))
        .collect();
    let mut points = Vec::new();
    for &(kind, level) in &conditions {
        for q in 0..3 {
            let push = if kind == "system_prompt" {
                level as f64 - 3.5
            } else {
                level as f64 * 2.0
            };
            let projection = 1.5 * push + 0.4 * q as f64 - 0.2;
            points.push(MonitorPoint {
                kind: kind.into(),
                level,
                question_index: q,
                // The third question as in files written before questions were recorded.
                question: if q == 2 {
                    String::new()
                } else {
                    format!("Will plan {q} work?")
                },
                last_prompt_projection: projection,
                response_projection: Some(projection * 0.8),
                trait_score: Some((50.0 + 8.0 * push).clamp(0.0, 100.0)),
                answer: format!(
                    "{} (a {kind} answer at level {level}, question {})",
                    if push > 0.0 {
                        "The future is bright and full of promise!"
                    } else {
                        "I expect this to end badly."
                    },
                    q + 1
                ),
            });
        }
    }
    let monitor_dir = dir.join("monitor");
    write_rows(&monitor_dir.join("monitor_points.jsonl"), &points);
    let correlation = |r: f64| Correlation {
        pearson_r: Some(r),
        ci95: Some((r - 0.12, (r + 0.08).min(1.0))),
        n: 33,
    };
    let monitor = MonitorResult {
        rows: conditions
            .iter()
            .map(|&(kind, level)| {
                let of: Vec<&MonitorPoint> = points
                    .iter()
                    .filter(|p| p.kind == kind && p.level == level)
                    .collect();
                let proj: Vec<f64> = of.iter().map(|p| p.last_prompt_projection).collect();
                MonitorRow {
                    kind: kind.into(),
                    level,
                    condition: match kind {
                        "system_prompt" => system_prompt(&spec, level, 0),
                        _ => format!("{level}-shot"),
                    },
                    last_prompt_projection: mean(&proj).unwrap(),
                    response_projection: mean(&proj).map(|p| p * 0.8),
                    trait_score: of[0].trait_score,
                    n: of.len(),
                }
            })
            .collect(),
        pearson_r: Some(0.83),
        ci95: Some((0.71, 0.9)),
        n: points.len(),
        system_prompts: correlation(0.86),
        few_shot: correlation(0.74),
        response_projection: correlation(0.79),
        condition_means: correlation(0.95),
        layer: 15,
        judge: "lexicon:positive".into(),
        cap: None,
        vector_file,
        points_file: monitor_dir.join("monitor_points.jsonl"),
        plot_file: monitor_dir.join("monitor.svg"),
        out_dir: monitor_dir.clone(),
    };
    let scatter = Chart::new(
        "Monitoring optimistic",
        "last prompt token · v̂",
        "judged trait",
    )
    .with_series(Series::markers(
        "system prompts",
        points
            .iter()
            .map(|p| (p.last_prompt_projection, p.trait_score.unwrap())),
    ))
    .with_fit_line(true);
    write_svg(&monitor_dir.join("monitor.svg"), scatter.to_svg());
    write_json(&monitor_dir.join("monitor.json"), &monitor);
    dir.to_path_buf()
}

/// The answer-cache key `persona axis build` gives role `name`'s answer to question `q` under
/// its first prompt.
fn axis_key(name: &str, q: usize) -> String {
    format!("{name}|p0|q{q}|max_tokens=64|temperature=0|seed=0")
}

/// `dir` as `persona axis build --roles 8` leaves it, with a crash's torn line at the end of
/// the answer cache.
fn axis_run(dir: &Path) -> PathBuf {
    record_provenance(dir, "persona axis build --roles 8 --no-filter", MODEL).unwrap();
    let inventory = persona_roles::RoleInventory::builtin();
    let roles: Vec<RolePoint> = (0..8)
        .map(|i| {
            let role = &inventory.roles[i * inventory.roles.len() / 8];
            let x = i as f64 - 3.5;
            RolePoint {
                name: role.name.clone(),
                category: role.category.as_str().into(),
                pc1: x * 2.0,
                pc2: (x * 1.3).sin() * 3.0,
                axis_projection: 20.0 - x * 3.1,
                kept: 6,
            }
        })
        .collect();
    let mut answers: Vec<Answer> = Vec::new();
    for name in
        std::iter::once(persona_roles::DEFAULT_NAME).chain(roles.iter().map(|r| r.name.as_str()))
    {
        for q in 0..3 {
            answers.push(Answer {
                key: axis_key(name, q),
                text: format!(
                    "Speaking as the {name}: my answer to shared question {} is this.",
                    q + 1
                ),
                last_prompt_projection: None,
                response_projection: None,
            });
        }
    }
    write_rows(&dir.join("answers_cache.jsonl"), &answers);
    let mut cache = std::fs::read_to_string(dir.join("answers_cache.jsonl")).unwrap();
    cache.push_str("{\"key\":\"default|p1|q0|max_to");
    std::fs::write(dir.join("answers_cache.jsonl"), cache).unwrap();
    let axis = AxisResult {
        layers: (0..LAYERS)
            .map(|layer| LayerSummary {
                layer,
                explained_variance_ratio: vec![0.41 + layer as f64 * 0.005, 0.17, 0.09],
                axis_pc1_cosine: 0.6 + layer as f64 * 0.01,
                axis_norm: 3.0 + layer as f64,
                tau: [2.0, 8.5, 12.25, 17.0],
            })
            .collect(),
        report_layer: 15,
        default_projection: 29.5,
        default_pcs: [-9.0, 0.5],
        rollouts: 54,
        kept: 54,
        judge: None,
        axis_file: dir.join("axis.safetensors"),
        plot_files: ["axis_variance.svg", "axis_pc1_pc2.svg", "axis_roles.svg"]
            .iter()
            .map(|f| dir.join(f))
            .collect(),
        out_dir: dir.to_path_buf(),
        roles: roles.clone(),
    };
    let variance = BarChart::new(
        "Variance per component",
        "fraction",
        axis.layers[15]
            .explained_variance_ratio
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("PC{}", i + 1), *v))
            .collect(),
        false,
    );
    let map = Chart::new("Roles on PC1 × PC2", "PC1", "PC2").with_series(Series::new(
        "roles",
        SeriesKind::Markers,
        roles
            .iter()
            .map(|r| Point::new(r.pc1, r.pc2).with_label(r.name.clone()))
            .collect(),
    ));
    let sorted = BarChart::new(
        "Roles along the Assistant axis",
        "projection",
        roles
            .iter()
            .map(|r| (r.name.clone(), r.axis_projection))
            .collect(),
        true,
    );
    write_svg(&dir.join("axis_variance.svg"), variance.to_svg());
    write_svg(&dir.join("axis_pc1_pc2.svg"), map.to_svg());
    write_svg(&dir.join("axis_roles.svg"), sorted.to_svg());
    write_json(&dir.join("axis.json"), &axis);
    dir.to_path_buf()
}

/// `dir` as `persona drift --per-domain 2 --turns 4` leaves it, with the built-in
/// conversations' user turns.
fn drift_run(dir: &Path) -> PathBuf {
    record_provenance(dir, "persona drift --per-domain 2 --turns 4", MODEL).unwrap();
    let mut turns = Vec::new();
    let mut domains = Vec::new();
    let mut plot_files = Vec::new();
    for domain in persona_evals::DOMAINS {
        let convs: Vec<_> = persona_evals::builtin_drift()
            .into_iter()
            .filter(|c| c.domain == domain)
            .take(2)
            .collect();
        let mut per_turn = Vec::new();
        for conv in &convs {
            for (t, user) in conv.turns.iter().take(4).enumerate() {
                let projection = 27.0 - 2.5 * t as f64;
                per_turn.push(projection);
                turns.push(TurnRow {
                    conversation: conv.id.clone(),
                    domain: domain.to_string(),
                    turn: t + 1,
                    projection: Some(projection),
                    user: user.clone(),
                    answer: format!(
                        "Turn {} of {}: here is my reply, a little less like myself each time.",
                        t + 1,
                        conv.id
                    ),
                });
            }
        }
        let first = Some(27.0);
        let last = Some(27.0 - 7.5);
        domains.push(DomainDrift {
            domain: domain.to_string(),
            conversations: convs.len(),
            per_turn: (0..4).map(|t| Some(27.0 - 2.5 * t as f64)).collect(),
            first_turn: first,
            last_turn: last,
            drift: Some(-7.5),
            drift_ci95: Some((-9.0, -6.0)),
        });
        let path = dir.join(format!("drift_{domain}.svg"));
        let chart = Chart::new(format!("Drift: {domain}"), "turn", "projection").with_series(
            Series::line_markers(
                domain,
                (0..4).map(|t| (t as f64 + 1.0, 27.0 - 2.5 * t as f64)),
            ),
        );
        write_svg(&path, chart.to_svg());
        plot_files.push(path);
    }
    write_rows(&dir.join("drift_turns.jsonl"), &turns);
    let drift = DriftResult {
        layer: 15,
        cap: None,
        default_projection: Some(29.5),
        domains,
        turns: turns.len(),
        rows: Vec::new(),
        turns_file: dir.join("drift_turns.jsonl"),
        table_file: dir.join("drift.csv"),
        plot_files,
        out_dir: dir.to_path_buf(),
    };
    write_json(&dir.join("drift.json"), &drift);
    dir.to_path_buf()
}

/// `dir` as `persona cap eval --percentiles p25 --windows 15..22 --judge none` leaves it, over
/// the first four built-in jailbreaks.
fn cap_run(dir: &Path) -> PathBuf {
    record_provenance(
        dir,
        "persona cap eval --percentiles p25 --windows 15..22",
        MODEL,
    )
    .unwrap();
    let settings = ["uncapped", "p25@15..22"];
    let mut answers = Vec::new();
    for (s, setting) in settings.iter().enumerate() {
        for jb in persona_evals::builtin_jailbreaks().iter().take(4) {
            let refusal = s == 1;
            answers.push(JailbreakAnswer {
                setting: setting.to_string(),
                id: jb.id.clone(),
                persona: jb.persona.clone(),
                category: jb.category.clone(),
                answer: if refusal {
                    "I can't help with that, but I can explain why it is dangerous.".into()
                } else {
                    format!(
                        "As {}, here is how you would go about it: first…",
                        jb.persona
                    )
                },
                refusal,
                harm: None,
                projection: Some(if refusal { 24.0 } else { 11.5 }),
            });
        }
    }
    write_rows(&dir.join("cap_answers.jsonl"), &answers);
    let row = |s: usize| CapEvalRow {
        setting: settings[s].into(),
        percentile: (s == 1).then(|| "p25".to_string()),
        layers: (s == 1).then_some([15, 22]),
        harm_rate: None,
        harm_ci95: None,
        harmful: 0,
        judged: 0,
        mean_harm_score: None,
        harm_reduction: None,
        refusal_rate: Some(if s == 1 { 0.75 } else { 0.25 }),
        refusal_ci95: Some((0.1, 0.9)),
        jailbreak_projection: Some(if s == 1 { 24.0 } else { 11.5 }),
        drift_projection: Some(20.0 + s as f64 * 3.0),
        drift_change: Some(-6.0 + s as f64 * 4.0),
        mcq_accuracy: Some(0.5 - s as f64 * 0.05),
        mcq_ci95: Some((0.3, 0.7)),
        capability_retained: Some(1.0 - s as f64 * 0.1),
    };
    let cap = CapEvalResult {
        rows: vec![row(0), row(1)],
        layer: 15,
        judge: None,
        harm_threshold: 50.0,
        jailbreaks: 4,
        conversations: 4,
        mcq: 20,
        mcq_scoring: McqScoring::Letter,
        table_file: dir.join("cap_eval.csv"),
        answers_file: dir.join("cap_answers.jsonl"),
        plot_files: vec![dir.join("cap_tradeoff.svg")],
        out_dir: dir.to_path_buf(),
    };
    let tradeoff = Chart::new("Jailbreaks against capability", "MCQ accuracy", "refused")
        .with_series(Series::markers(
            "settings",
            cap.rows
                .iter()
                .map(|r| (r.mcq_accuracy.unwrap(), r.refusal_rate.unwrap())),
        ));
    write_svg(&dir.join("cap_tradeoff.svg"), tradeoff.to_svg());
    write_json(&dir.join("cap_eval.json"), &cap);
    dir.to_path_buf()
}

/// The part of `html` from `start` on, up to the next `end` (or the end).
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in the page"));
    let rest = &html[from..];
    &rest[..rest[start.len()..]
        .find(end)
        .map_or(rest.len(), |i| i + start.len())]
}

/// The column headings of every answer grid in `html`, in order.
fn grid_columns(html: &str) -> Vec<Vec<String>> {
    html.split("<table class=\"answers\"")
        .skip(1)
        .map(|grid| {
            let head = &grid[..grid.find("</thead>").unwrap_or(0)];
            head.split("<th scope=\"col\"")
                .skip(1)
                .map(|th| {
                    let text = &th[th.find('>').unwrap() + 1..];
                    text[..text.find("</th>").unwrap()].to_string()
                })
                .collect()
        })
        .collect()
}

#[test]
fn a_trait_report_shows_the_answers_behind_its_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let run = trait_run(dir.path());
    let rep = write_report(&run).unwrap();
    assert_eq!(rep.sections, vec!["extract", "steer", "monitor"]);
    let html = std::fs::read_to_string(&rep.report_file).unwrap();
    let spec = persona_traits::builtin("optimistic").unwrap();

    // One grid per steering layer, α ascending with the unsteered answers in the middle column.
    let columns = grid_columns(&html);
    let alphas = vec!["α = -8", "α = -4", "α = 0 (unsteered)", "α = 4", "α = 8"];
    assert_eq!(columns[..2], [alphas.clone(), alphas]);
    for layer in STEER_LAYERS {
        let grid = between(
            &html,
            &format!("<h3>Answers at layer {layer}</h3>"),
            "</table>",
        );
        assert!(grid.contains("<th scope=\"col\" class=\"reference\">α = 0 (unsteered)</th>"));
        // The first three questions, each above its answers.
        for q in 0..4 {
            let heading = format!(
                "colspan=\"5\">{}</th>",
                persona_report::escape(&spec.evaluation_questions[q])
            );
            assert_eq!(
                grid.contains(&heading),
                q < 3,
                "question {q} at layer {layer}"
            );
        }
        let first = grid.find("<tr>").unwrap();
        let row: Vec<&str> = grid[first..].split("<td").skip(1).take(5).collect();
        for (cell, alpha) in row.iter().zip(ALPHAS) {
            let (text, trait_score, coherence) = steered_answer(0, layer, alpha);
            let shown = persona_report::escape(&text);
            assert!(
                cell.contains(&shown[..shown.len().min(60)]),
                "layer {layer} α {alpha}: {cell}"
            );
            assert!(cell.contains(&format!(
                "trait {trait_score:.1} · coherence {coherence:.1}"
            )));
        }
    }
    // Escaped, never markup; an empty answer says so; the long one folds with a marker.
    assert!(html.contains(&persona_report::escape(NASTY)));
    assert!(!html.contains("<script") && !html.contains("<b>bold"));
    assert!(html.contains("(empty answer)"));
    let (long, _, _) = steered_answer(0, 15, 8.0);
    assert!(html.contains(&format!(
        "… show all {} characters",
        long.trim().chars().count()
    )));

    // The monitor's ends: highest projections on the left, lowest on the right, in order.
    let grid = between(
        &html,
        "<th scope=\"col\">highest projection</th>",
        "</table>",
    );
    let projections: Vec<f64> = grid
        .split("<div class=\"note\">projection ")
        .skip(1)
        .map(|s| s[..s.find(' ').unwrap()].parse().unwrap())
        .collect();
    assert_eq!(projections.len(), 6);
    let points: Vec<MonitorPoint> =
        std::fs::read_to_string(run.join("monitor/monitor_points.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let mut all: Vec<f64> = points.iter().map(|p| p.last_prompt_projection).collect();
    all.sort_by(|a, b| b.total_cmp(a));
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let highest: Vec<f64> = projections.iter().step_by(2).copied().collect();
    let lowest: Vec<f64> = projections.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(
        highest,
        all[..3].iter().map(|&x| round(x)).collect::<Vec<_>>()
    );
    assert_eq!(
        lowest,
        all.iter()
            .rev()
            .take(3)
            .map(|&x| round(x))
            .collect::<Vec<_>>()
    );
    // Conditions by their short names: system prompts by level, few-shot as the monitor named
    // them.
    assert!(grid.contains("projection 5.85 · trait 78.0 · system prompt level 7 · question 3"));
    assert!(grid.contains("projection 6.60 · trait 82.0 · 2-shot · question 3"));
    assert!(
        grid.contains("· “Will plan 0 work?”"),
        "the lowest answers name their question"
    );
}

#[test]
fn axis_drift_and_cap_reports_show_their_answers() {
    let dir = tempfile::tempdir().unwrap();
    let axis = axis_run(&dir.path().join("axis"));
    let cache_before = std::fs::read(axis.join("answers_cache.jsonl")).unwrap();
    let rep = write_report(&axis).unwrap();
    assert_eq!(rep.sections, vec!["axis"]);
    // The torn last line of the cache is skipped, and left for the next build to cut.
    assert_eq!(
        std::fs::read(axis.join("answers_cache.jsonl")).unwrap(),
        cache_before
    );
    let html = std::fs::read_to_string(&rep.report_file).unwrap();
    let result: AxisResult =
        serde_json::from_str(&std::fs::read_to_string(axis.join("axis.json")).unwrap()).unwrap();
    let mut roles = result.roles.clone();
    roles.sort_by(|a, b| b.axis_projection.total_cmp(&a.axis_projection));
    let want: Vec<String> = std::iter::once("default (projection 29.5)".to_string())
        .chain(
            [&roles[0], &roles[1], &roles[6], &roles[7]]
                .iter()
                .map(|r| format!("{} (projection {:.1})", r.name, r.axis_projection)),
        )
        .map(|c| persona_report::escape(&c))
        .collect();
    assert_eq!(grid_columns(&html), vec![want]);
    for q in 0..2 {
        assert!(html.contains(&format!("colspan=\"5\">shared question {}</th>", q + 1)));
        for name in ["default", &roles[0].name, &roles[7].name] {
            assert!(html.contains(&format!(
                "Speaking as the {name}: my answer to shared question {} is this.",
                q + 1
            )));
        }
    }
    assert!(!html.contains("shared question 3"));
    assert!(!html.contains(&format!("the {}:", roles[3].name)));

    let drift = drift_run(&dir.path().join("drift"));
    let rep = write_report(&drift).unwrap();
    assert_eq!(rep.sections, vec!["drift"]);
    let html = std::fs::read_to_string(&rep.report_file).unwrap();
    let turns: Vec<TurnRow> = std::fs::read_to_string(drift.join("drift_turns.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for domain in persona_evals::DOMAINS {
        let ids: Vec<&str> = turns
            .iter()
            .filter(|t| t.domain == domain)
            .map(|t| t.conversation.as_str())
            .collect();
        let (first, second) = (ids[0], *ids.iter().find(|i| **i != ids[0]).unwrap());
        // The first conversation turn by turn, the user's words beside the reply; not the
        // second.
        let grid = between(
            &html,
            &format!("<h3>{domain}: conversation {first}</h3>"),
            "</table>",
        );
        for t in turns.iter().filter(|t| t.conversation == first) {
            assert!(grid.contains(&format!("colspan=\"2\">turn {}</th>", t.turn)));
            assert!(grid.contains(&persona_report::escape(t.user.trim())));
            assert!(grid.contains(&persona_report::escape(&t.answer)));
            assert!(grid.contains(&format!("projection {:.2}", t.projection.unwrap())));
        }
        assert!(!html.contains(&format!("conversation {second}<")));
    }

    let cap = cap_run(&dir.path().join("cap"));
    let rep = write_report(&cap).unwrap();
    assert_eq!(rep.sections, vec!["cap"]);
    let html = std::fs::read_to_string(&rep.report_file).unwrap();
    assert_eq!(grid_columns(&html), vec![vec!["uncapped", "p25@15..22"]]);
    assert!(html.contains("<th scope=\"col\" class=\"reference\">uncapped</th>"));
    let jailbreaks = persona_evals::builtin_jailbreaks();
    for (i, jb) in jailbreaks.iter().take(4).enumerate() {
        let heading =
            persona_report::escape(&format!("{} — {} ({})", jb.id, jb.persona, jb.category));
        assert_eq!(html.contains(&heading), i < 3, "{}", jb.id);
    }
    assert_eq!(html.matches("refused · projection 24.00").count(), 3);
    assert_eq!(html.matches("not refused · projection 11.50").count(), 3);
}

/// A file of a run folder broken on purpose, and what the report's error must say about it.
struct Breakage {
    /// Makes the run folder.
    run: fn(&Path) -> PathBuf,
    file: &'static str,
    /// Replaces the file's text.
    corrupt: fn(&str) -> String,
    message: &'static [&'static str],
}

#[test]
fn unreadable_results_name_the_file_and_the_command_that_rewrites_it() {
    let second_line_cut = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let half = lines[1].len() / 2;
        lines[1].truncate(half);
        lines.join("\n") + "\n"
    };
    let cases: [Breakage; 9] = [
        Breakage {
            run: trait_run,
            file: "run.json",
            corrupt: |t| t.replace("\"kept_pos\"", "\"kept_positive\""),
            message: &[
                "run.json",
                "missing field `kept_pos`",
                "rerun `persona extract TRAIT --run ",
            ],
        },
        Breakage {
            run: trait_run,
            file: "steer/steer.json",
            corrupt: |t| t[..t.len() / 2].to_string(),
            message: &[
                "steer.json",
                "`persona steer` writes",
                "EOF",
                "rerun `persona steer TRAIT --run ",
            ],
        },
        Breakage {
            run: trait_run,
            file: "steer/steer_answers.jsonl",
            corrupt: second_line_cut,
            message: &[
                "steer_answers.jsonl line 2",
                "rerun `persona steer TRAIT --run ",
            ],
        },
        Breakage {
            run: trait_run,
            file: "monitor/monitor.json",
            corrupt: |t| t.replacen("\"layer\": 15", "\"layer\": \"fifteen\"", 1),
            message: &[
                "monitor.json",
                "invalid type",
                "rerun `persona monitor TRAIT --run ",
            ],
        },
        Breakage {
            run: trait_run,
            file: "monitor/monitor_points.jsonl",
            corrupt: |t| t.replacen("\"answer\"", "\"reply\"", 1),
            message: &[
                "monitor_points.jsonl line 1",
                "missing field `answer`",
                "persona monitor TRAIT --run ",
            ],
        },
        Breakage {
            run: axis_run,
            file: "answers_cache.jsonl",
            corrupt: |t| format!("not json\n{t}"),
            message: &[
                "answers_cache.jsonl line 1",
                "remove that line and rerun `persona axis build --out ",
            ],
        },
        Breakage {
            run: axis_run,
            file: "axis.json",
            corrupt: |t| t.replace("\"roles\"", "\"characters\""),
            message: &[
                "axis.json",
                "missing field `roles`",
                "rerun `persona axis build --out ",
            ],
        },
        Breakage {
            run: drift_run,
            file: "drift_turns.jsonl",
            corrupt: second_line_cut,
            message: &["drift_turns.jsonl line 2", "rerun `persona drift --out "],
        },
        Breakage {
            run: cap_run,
            file: "cap_answers.jsonl",
            corrupt: |t| t.replacen("\"refusal\":true", "\"refusal\":\"yes\"", 1),
            message: &[
                "cap_answers.jsonl line 5",
                "invalid type",
                "rerun `persona cap eval --out ",
            ],
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let run = (case.run)(&dir.path().join("run"));
        let path = run.join(case.file);
        let text = std::fs::read_to_string(&path).unwrap();
        let broken = (case.corrupt)(&text);
        assert_ne!(
            broken, text,
            "{}: the corruption changed nothing",
            case.file
        );
        std::fs::write(&path, broken).unwrap();
        let err = write_report(&run).unwrap_err().to_string();
        for needle in case.message {
            assert!(
                err.contains(needle),
                "{}: {needle:?} not in: {err}",
                case.file
            );
        }
        assert!(err.contains(&run.display().to_string()), "{err}");
        assert!(
            !run.join("report.html").exists(),
            "{}: a report was written",
            case.file
        );
    }
}

#[test]
fn the_report_changes_nothing_but_report_html() {
    let dir = tempfile::tempdir().unwrap();
    let runs = [
        trait_run(&dir.path().join("optimistic")),
        axis_run(&dir.path().join("axis")),
        drift_run(&dir.path().join("drift")),
        cap_run(&dir.path().join("cap")),
    ];
    let snapshot = |run: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        let mut stack = vec![run.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.file_name().unwrap() != "report.html" {
                    files.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
        files
    };
    for run in &runs {
        let before = snapshot(run);
        write_report(run).unwrap();
        write_report(run).unwrap();
        assert_eq!(snapshot(run), before, "{}", run.display());
    }
}

// ---------------------------------------------------------------------------------------------
// In a browser

/// Measures the page once Chromium has laid it out, and writes the figures into the page (as
/// JSON in `#layout-check`) for `--dump-dom`: the page's size, how many plots drew at a real
/// size, where each plot and answer grid lies on the page, and every pair of axis or bar
/// labels whose drawn outlines overlap (rotated labels compared as rotated rectangles).
const LAYOUT_CHECK: &str = r#"<script>
(function () {
  function quad(el) {
    const b = el.getBBox(), m = el.getScreenCTM();
    return [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height], [b.x, b.y + b.height]]
      .map(([x, y]) => { const p = new DOMPoint(x, y).matrixTransform(m); return [p.x, p.y]; });
  }
  function apart(a, b) {
    for (const poly of [a, b]) for (let i = 0; i < 4; i++) {
      const [x1, y1] = poly[i], [x2, y2] = poly[(i + 1) % 4];
      const nx = y2 - y1, ny = x1 - x2, len = Math.hypot(nx, ny) || 1;
      const pa = a.map(([x, y]) => (x * nx + y * ny) / len), pb = b.map(([x, y]) => (x * nx + y * ny) / len);
      if (Math.max(...pa) <= Math.min(...pb) + 0.5 || Math.max(...pb) <= Math.min(...pa) + 0.5) return true;
    }
    return false;
  }
  const out = { width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
                svgs: 0, drawn: 0, overlaps: [], boxes: [] };
  function box(el, what) {
    const r = el.getBoundingClientRect();
    out.boxes.push({ what, x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height });
    return r;
  }
  for (const grid of document.querySelectorAll('table.answers')) box(grid, 'answer grid');
  for (const svg of document.querySelectorAll('svg')) {
    out.svgs++;
    const r = box(svg, 'plot ' + svg.querySelector('title').textContent);
    if (r.width > 200 && r.height > 100) out.drawn++;
    const labels = [...svg.querySelectorAll('text.bar-label, text.bar-value, text.x-tick, text.y-tick')]
      .filter(t => t.textContent.trim() !== '');
    const quads = labels.map(quad);
    for (let i = 0; i < labels.length; i++) for (let j = i + 1; j < labels.length; j++)
      if (!apart(quads[i], quads[j]))
        out.overlaps.push(svg.querySelector('title').textContent + ': ' + labels[i].textContent + ' / ' + labels[j].textContent);
  }
  const pre = document.createElement('pre');
  pre.id = 'layout-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"#;

/// Chromium on the PATH, as Debian's `chromium` package installs it.
fn chromium() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    })
}

/// Runs headless Chromium on `page` with `args`, returning its standard output.
fn headless(chromium: &Path, profile: &Path, page: &Path, args: &[String]) -> String {
    let out = std::process::Command::new("timeout")
        .arg("120")
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            "--no-default-browser-check",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts");
    assert!(
        out.status.success(),
        "chromium {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the DOM is UTF-8")
}

/// A screenshot's pixels, as RGB.
struct Screenshot {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

impl Screenshot {
    fn load(png_file: &Path) -> Screenshot {
        let file = std::io::BufReader::new(std::fs::File::open(png_file).unwrap());
        let mut reader = png::Decoder::new(file).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let channels = info.color_type.samples();
        assert!(
            channels >= 3 && info.bit_depth == png::BitDepth::Eight,
            "{:?} {:?}",
            info.color_type,
            info.bit_depth
        );
        Screenshot {
            width: info.width as usize,
            height: info.height as usize,
            rgb: buf[..info.buffer_size()]
                .chunks(channels)
                .map(|px| [px[0], px[1], px[2]])
                .collect(),
        }
    }

    fn inked(px: [u8; 3]) -> bool {
        px.iter().any(|&c| c < 245)
    }

    /// The share of pixels with anything drawn on them (not white) in the rectangle, clipped
    /// to the picture.
    fn ink_in(&self, x: f64, y: f64, w: f64, h: f64) -> f64 {
        let clip = |v: f64, hi: usize| (v.max(0.0) as usize).min(hi);
        let (x0, x1) = (clip(x, self.width), clip(x + w, self.width));
        let (y0, y1) = (clip(y, self.height), clip(y + h, self.height));
        let area = (x1.saturating_sub(x0) * y1.saturating_sub(y0)).max(1);
        let inked = (y0..y1)
            .flat_map(|row| self.rgb[row * self.width + x0..row * self.width + x1].iter())
            .filter(|px| Self::inked(**px))
            .count();
        inked as f64 / area as f64
    }

    /// The lowest row with anything drawn on it.
    fn last_inked_row(&self) -> usize {
        (0..self.height)
            .rev()
            .find(|&row| {
                self.rgb[row * self.width..(row + 1) * self.width]
                    .iter()
                    .any(|px| Self::inked(*px))
            })
            .unwrap_or(0)
    }
}

#[test]
fn the_report_renders_in_a_browser() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but chromium is not on the PATH: scripts/setup_browser.sh installs Debian's chromium"
        );
        eprintln!("skipped: chromium is not installed (apt-get install chromium; CI installs it through scripts/setup_browser.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let runs: [(&str, PathBuf, &[&str]); 4] = [
        (
            "optimistic",
            trait_run(&dir.path().join("optimistic")),
            &["Commands and model", "Extraction", "Steering", "Monitoring"],
        ),
        (
            "axis",
            axis_run(&dir.path().join("axis")),
            &["Persona space and the Assistant axis"],
        ),
        (
            "drift",
            drift_run(&dir.path().join("drift")),
            &["Drift along the Assistant axis"],
        ),
        (
            "cap",
            cap_run(&dir.path().join("cap")),
            &["Capping along the Assistant axis"],
        ),
    ];
    for (name, run, headings) in runs {
        let report = write_report(&run).unwrap().report_file;
        let html = std::fs::read_to_string(&report).unwrap();
        let svgs = html.matches("<svg").count();
        let grids = html.matches("<table class=\"answers\"").count();
        assert!(
            svgs > 0 && grids > 0,
            "{name}: {svgs} plots, {grids} answer grids"
        );
        let checked = run.join("report-checked.html");
        std::fs::write(
            &checked,
            html.replace("</body>", &format!("{LAYOUT_CHECK}\n</body>")),
        )
        .unwrap();
        let profile = dir.path().join(format!("profile-{name}"));

        let width = 1100;
        let dom = headless(
            &chromium,
            &profile,
            &checked,
            &["--dump-dom".into(), format!("--window-size={width},900")],
        );
        for h in headings {
            assert!(
                dom.contains(&format!("<h2>{h}</h2>")),
                "{name}: no {h} heading after rendering"
            );
        }
        assert_eq!(
            dom.matches("<svg").count(),
            svgs,
            "{name}: plots lost in the DOM"
        );
        assert_eq!(dom.matches("<table class=\"answers\"").count(), grids);
        assert!(
            dom.contains("</footer>"),
            "{name}: the page did not render to its end"
        );
        let json = between(&dom, "<pre id=\"layout-check\">", "</pre>");
        let layout: serde_json::Value = serde_json::from_str(
            &json["<pre id=\"layout-check\">".len()..]
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
        .unwrap();
        assert_eq!(layout["svgs"], svgs, "{name}");
        assert_eq!(
            layout["drawn"], svgs,
            "{name}: a plot drew at no size: {layout}"
        );
        assert_eq!(
            layout["overlaps"],
            serde_json::json!([]),
            "{name}: labels overlap"
        );
        assert!(
            layout["width"].as_u64().unwrap() <= width,
            "{name}: the page scrolls sideways: {layout}"
        );
        let height = layout["height"].as_u64().unwrap().clamp(600, 16000);

        // The whole page, painted: not blank, the bars' blue there, ink down to the footer.
        let shot = shots.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&shot);
        headless(
            &chromium,
            &profile,
            &report,
            &[
                format!("--screenshot={}", shot.display()),
                format!("--window-size={width},{height}"),
            ],
        );
        let picture = Screenshot::load(&shot);
        let ink = picture.ink_in(0.0, 0.0, width as f64, height as f64);
        eprintln!(
            "{name}: {} ({}×{}, {:.1} % inked)",
            shot.display(),
            picture.width,
            picture.height,
            ink * 100.0
        );
        assert_eq!(
            (picture.width as u64, picture.height as u64),
            (width, height),
            "{name}"
        );
        assert!(ink > 0.03, "{name}: the page is nearly blank ({ink:.4})");
        // Every plot and answer grid painted where the layout put it.
        let boxes = layout["boxes"].as_array().unwrap();
        assert_eq!(boxes.len(), svgs + grids, "{name}");
        for b in boxes {
            let at = |k: &str| b[k].as_f64().unwrap();
            let share = picture.ink_in(at("x"), at("y"), at("w"), at("h"));
            assert!(
                share > 0.01,
                "{name}: {} is blank on the screenshot ({share:.4}): {b}",
                b["what"]
            );
        }
        assert!(
            picture.last_inked_row() as u64 > height - 200,
            "{name}: nothing painted below row {} of {height}",
            picture.last_inked_row()
        );
    }
}
