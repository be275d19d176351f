//! Mapping persona space: every role of an inventory (and the default assistant) answers shared
//! questions under its system prompts; a role's vector is the mean response-token state of its
//! kept answers at every layer. PCA over the role vectors gives persona space's main
//! directions, and the Assistant axis is the default's vector minus the mean role vector —
//! which, if the method's claim holds, lines up with the first component.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use persona_core::pca::Pca;
use persona_engine::{CaptureSpec, Engine, ForwardRequest, HookSite, Message};
use persona_io::LayerVectors;
use persona_roles::{Role, RoleInventory};
use serde::{Deserialize, Serialize};

use crate::answers::{answer_all, AnswerOptions, AnswerRequest};
use crate::PipelineError;

/// Axis-file metadata: the default assistant's projection on the unit axis, per layer.
pub const DEFAULT_PROJECTION_KEY: &str = "persona.default_projection";

/// The percentiles a cap threshold τ can be chosen from.
pub const TAU_PERCENTILES: [f64; 4] = [1.0, 25.0, 50.0, 75.0];

#[derive(Debug, Clone)]
pub struct AxisOptions {
    /// How many roles of the inventory (0: all).
    pub roles: usize,
    /// System prompts per role (at most 5).
    pub prompts: usize,
    /// How many shared questions.
    pub questions: usize,
    pub answers: AnswerOptions,
    /// Keep a role's answer only when the judge scores its adherence at least this (0–3).
    pub min_adherence: f64,
    /// Principal components reported per layer.
    pub components: usize,
    /// Conversations sampled for the cap thresholds' percentiles.
    pub tau_samples: usize,
    /// Fills `{model_name}` in the default assistant's prompts.
    pub model_name: String,
}

/// A judge of role adherence: a number 0–3 per rubric prompt.
pub type AdherenceScorer<'a> = &'a dyn persona_judges::NumberScorer;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerSummary {
    pub layer: usize,
    /// Of the first components (of all the role vectors span).
    pub explained_variance_ratio: Vec<f64>,
    /// Cosine between the Assistant axis and PC1 (PC1 oriented toward the axis).
    pub axis_pc1_cosine: f64,
    pub axis_norm: f64,
    /// τ candidates: percentiles p1, p25, p50, p75 of rollout projections on the unit axis.
    pub tau: [f64; 4],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolePoint {
    pub name: String,
    pub category: String,
    /// Loadings on PC1 and PC2 at the report layer.
    pub pc1: f64,
    pub pc2: f64,
    /// Projection of the role vector on the unit axis at the report layer.
    pub axis_projection: f64,
    pub kept: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AxisResult {
    pub layers: Vec<LayerSummary>,
    /// The layer the role table and plots are drawn at.
    pub report_layer: usize,
    pub roles: Vec<RolePoint>,
    /// The default assistant's projection on the unit axis at the report layer.
    pub default_projection: f64,
    /// The default assistant's scores on PC1 and PC2 at the report layer.
    pub default_pcs: [f64; 2],
    pub rollouts: usize,
    pub kept: usize,
    /// `None`: no judge, every rollout kept (`--no-filter`).
    pub judge: Option<String>,
    pub axis_file: PathBuf,
    pub plot_files: Vec<PathBuf>,
    pub out_dir: PathBuf,
}

/// One answered rollout: which role (index into the roles run, `None` for the default).
struct Slot {
    role: Option<usize>,
    question: String,
}

/// Mean response-token `resid_post` at every layer, one per conversation.
fn response_means(
    engine: &Engine,
    convs: &[Vec<Message>],
) -> Result<Vec<Vec<Vec<f32>>>, PipelineError> {
    let n_layers = engine.config().n_layers;
    let seqs = convs
        .iter()
        .map(|c| {
            let (last, context) = c.split_last().expect("rollouts have an answer");
            engine.chat_with_response(context, &last.content)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let req = ForwardRequest {
        captures: CaptureSpec::response_means(0..n_layers),
        ..Default::default()
    };
    let outs = engine.forward_batch(&seqs, &req, &mut |_| {})?;
    Ok(outs
        .iter()
        .map(|o| {
            (0..n_layers)
                .map(|l| {
                    o.captures
                        .get(HookSite::resid_post(l))
                        .and_then(|c| c.means[0].clone())
                        .unwrap_or_else(|| vec![0.0; engine.config().d_model])
                })
                .collect()
        })
        .collect())
}

/// The mean over conversations at every layer.
fn layer_means(per_conv: &[Vec<Vec<f32>>], n_layers: usize) -> Vec<Vec<f32>> {
    (0..n_layers)
        .map(|l| persona_core::mean(per_conv.iter().map(|c| c[l].as_slice())).unwrap_or_default())
        .collect()
}

/// Builds the map: rollouts (cached), adherence judgements (optional, cached), role and
/// default vectors (`roles/<name>.safetensors`), PCA and the axis per layer, τ percentiles;
/// writes `axis.safetensors`, `axis.json` and the plots to `out_dir`.
pub fn build_axis(
    engine: &Engine,
    inventory: &RoleInventory,
    judge: Option<AdherenceScorer>,
    opts: &AxisOptions,
    out_dir: &Path,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<AxisResult, PipelineError> {
    crate::create_dir(&out_dir.join("roles"))?;
    let n_layers = engine.config().n_layers;
    // A subset is spread evenly over the inventory, so it spans its categories.
    let total = inventory.roles.len();
    let roles: Vec<&Role> = match opts.roles {
        0 => inventory.roles.iter().collect(),
        n => (0..n.min(total))
            .map(|i| &inventory.roles[i * total / n.min(total)])
            .collect(),
    };
    if roles.len() < 3 {
        return Err(PipelineError::Input(format!(
            "persona space needs at least 3 roles for its components; {} were given",
            roles.len()
        )));
    }
    let questions: Vec<&str> = inventory
        .questions
        .iter()
        .take(opts.questions.max(1))
        .map(|q| q.text.as_str())
        .collect();
    let mut requests = Vec::new();
    let mut slots = Vec::new();
    let everyone = roles
        .iter()
        .enumerate()
        .map(|(i, r)| (Some(i), *r))
        .chain(std::iter::once((None, &inventory.default)));
    for (ri, role) in everyone {
        for p in 0..opts.prompts.clamp(1, role.prompts.len()) {
            for (qi, q) in questions.iter().enumerate() {
                let mut messages = Vec::new();
                if let Some(system) = role.system_prompt(p, &opts.model_name) {
                    messages.push(Message::new("system", system));
                }
                messages.push(Message::new("user", *q));
                requests.push(AnswerRequest {
                    key: format!("{}|p{p}|q{qi}", role.name),
                    messages,
                    steer: None,
                });
                slots.push(Slot {
                    role: ri,
                    question: q.to_string(),
                });
            }
        }
    }
    let answers = answer_all(
        engine,
        &requests,
        &opts.answers,
        None,
        None,
        &out_dir.join("answers_cache.jsonl"),
        &mut |d, t| progress("rollouts", d, t),
    )?;

    // Role adherence: the default's answers are never judged (it is the reference).
    let mut keep = vec![true; slots.len()];
    if let Some(scorer) = judge {
        let judged: Vec<usize> = (0..slots.len())
            .filter(|&i| slots[i].role.is_some())
            .collect();
        let prompts: Vec<String> = judged
            .iter()
            .map(|&i| {
                let role = roles[slots[i].role.expect("judged slots have a role")];
                role.rubric_prompt(
                    &inventory.rubric_template,
                    &slots[i].question,
                    &answers[i].text,
                )
            })
            .collect();
        let scores = crate::judging::score_prompts_cached(
            scorer,
            "role-adherence",
            &prompts,
            &out_dir.join("judgements.jsonl"),
            &mut |d, t| progress("judge", d, t),
        )?;
        for (&i, score) in judged.iter().zip(scores) {
            keep[i] = score.is_some_and(|s| s >= opts.min_adherence);
        }
    }

    // Role vectors, one file per role (a rerun reads them back).
    let model = engine.model_id()?;
    let mut role_vectors: Vec<Vec<Vec<f32>>> = Vec::new();
    let mut kept_per_role = Vec::new();
    let mut all_roles: Vec<(Option<usize>, &Role)> = roles
        .iter()
        .enumerate()
        .map(|(i, r)| (Some(i), *r))
        .collect();
    all_roles.push((None, &inventory.default));
    let mut default_vector = Vec::new();
    for (done, (ri, role)) in all_roles.iter().enumerate() {
        progress("vectors", done, all_roles.len());
        let mine: Vec<usize> = (0..slots.len())
            .filter(|&i| slots[i].role == *ri && keep[i])
            .collect();
        let path = out_dir
            .join("roles")
            .join(format!("{}.safetensors", role.name));
        let cached = LayerVectors::load(&path).ok().filter(|v| {
            v.metadata.get("persona.n_pos") == Some(&mine.len().to_string())
                && v.metadata.get("persona.model") == Some(&model)
        });
        let per_layer = match cached {
            Some(v) => v.layers.into_values().collect(),
            None if mine.is_empty() => Vec::new(),
            None => {
                let convs: Vec<Vec<Message>> = mine
                    .iter()
                    .map(|&i| {
                        let mut c = requests[i].messages.clone();
                        c.push(Message::new("assistant", answers[i].text.clone()));
                        c
                    })
                    .collect();
                let means = layer_means(&response_means(engine, &convs)?, n_layers);
                let meta = crate::VectorMeta {
                    kind: "role",
                    name: &role.name,
                    method: "response_avg",
                    model: &model,
                    n_pos: mine.len(),
                    n_neg: None,
                };
                crate::persona_vectors(means.clone(), &meta).save(&path)?;
                means
            }
        };
        match ri {
            None => default_vector = per_layer,
            Some(_) => {
                role_vectors.push(per_layer);
                kept_per_role.push(mine.len());
            }
        }
    }
    if default_vector.is_empty() {
        return Err(PipelineError::Input(
            "the default assistant has no answers to read its vector from".into(),
        ));
    }
    // Roles with no kept answer drop out of the map.
    let present: Vec<usize> = (0..roles.len())
        .filter(|&i| !role_vectors[i].is_empty())
        .collect();
    if present.len() < 3 {
        return Err(PipelineError::Input(format!(
            "only {} roles kept any answer at adherence ≥ {}: lower --min-adherence, use a stronger judge, or --no-filter",
            present.len(),
            opts.min_adherence
        )));
    }

    // τ: projections of a sample of kept rollouts (roles and default) on the unit axis.
    let axis: Vec<Vec<f32>> = (0..n_layers)
        .map(|l| {
            let rm: Vec<Vec<f32>> = present
                .iter()
                .map(|&i| role_vectors[i][l].clone())
                .collect();
            persona_core::axis::assistant_axis(&default_vector[l], &rm)
        })
        .collect();
    let kept_slots: Vec<usize> = (0..slots.len()).filter(|&i| keep[i]).collect();
    let step = (kept_slots.len() / opts.tau_samples.max(1)).max(1);
    let sample: Vec<Vec<Message>> = kept_slots
        .iter()
        .step_by(step)
        .map(|&i| {
            let mut c = requests[i].messages.clone();
            c.push(Message::new("assistant", answers[i].text.clone()));
            c
        })
        .collect();
    progress("thresholds", 0, sample.len());
    let sample_means = response_means(engine, &sample)?;

    let k = opts.components.min(present.len() - 1).max(1);
    let mut layers = Vec::new();
    let mut pcas = Vec::new();
    for l in 0..n_layers {
        let rows: Vec<&[f32]> = present
            .iter()
            .map(|&i| role_vectors[i][l].as_slice())
            .collect();
        let mut pca = Pca::fit(&rows, k.min(rows.len() - 1)).map_err(|e| {
            PipelineError::Input(format!("PCA over the role vectors at layer {l}: {e}"))
        })?;
        pca.orient_toward(0, &axis[l]);
        let unit_norm = persona_core::norm(&axis[l]);
        let projections: Vec<f64> = sample_means
            .iter()
            .map(|c| persona_core::dot(&c[l], &axis[l]) / unit_norm)
            .collect();
        let tau = persona_core::axis::percentiles(&projections, &TAU_PERCENTILES)
            .map(|t| [t[0], t[1], t[2], t[3]])
            .unwrap_or([f64::NAN; 4]);
        layers.push(LayerSummary {
            layer: l,
            explained_variance_ratio: pca
                .explained_variance_ratio
                .iter()
                .take(10)
                .copied()
                .collect(),
            axis_pc1_cosine: pca.cosine_to(0, &axis[l]),
            axis_norm: unit_norm,
            tau,
        });
        pcas.push(pca);
    }
    let report_layer = n_layers / 2;
    let pca = &pcas[report_layer];
    let axis_l = &axis[report_layer];
    let roles_out: Vec<RolePoint> = present
        .iter()
        .map(|&i| {
            let v = &role_vectors[i][report_layer];
            let scores = pca.project(v);
            RolePoint {
                name: roles[i].display_name(),
                category: roles[i].category.as_str().to_string(),
                pc1: scores[0],
                pc2: scores.get(1).copied().unwrap_or(0.0),
                axis_projection: persona_core::projection(v, axis_l),
                kept: kept_per_role[i],
            }
        })
        .collect();
    let default_projection = persona_core::projection(&default_vector[report_layer], axis_l);
    let default_scores = pca.project(&default_vector[report_layer]);
    let default_pcs = [
        default_scores[0],
        default_scores.get(1).copied().unwrap_or(0.0),
    ];

    let meta = crate::VectorMeta {
        kind: "axis",
        name: "assistant",
        method: "response_avg",
        model: &model,
        n_pos: present.len(),
        n_neg: None,
    };
    // The default assistant's own level on the axis, per layer: the reference drift is read
    // against.
    let default_levels: Vec<f64> = (0..n_layers)
        .map(|l| persona_core::projection(&default_vector[l], &axis[l]))
        .collect();
    let mut axis_file_vectors = crate::persona_vectors(axis, &meta);
    axis_file_vectors.metadata.insert(
        DEFAULT_PROJECTION_KEY.into(),
        serde_json::to_string(&default_levels).expect("numbers serialize"),
    );
    let taus: BTreeMap<String, Vec<f64>> = TAU_PERCENTILES
        .iter()
        .enumerate()
        .map(|(j, p)| (format!("p{p}"), layers.iter().map(|s| s.tau[j]).collect()))
        .collect();
    axis_file_vectors.metadata.insert(
        "persona.tau".into(),
        serde_json::to_string(&taus).expect("taus serialize"),
    );
    let axis_file = out_dir.join("axis.safetensors");
    axis_file_vectors.save(&axis_file)?;
    let plot_files = write_plots(
        out_dir,
        &layers,
        report_layer,
        &roles_out,
        default_projection,
        default_pcs,
    )?;
    let result = AxisResult {
        layers,
        report_layer,
        roles: roles_out,
        default_projection,
        default_pcs,
        rollouts: slots.len(),
        kept: kept_slots.len(),
        judge: judge.map(|j| j.id()),
        axis_file,
        plot_files,
        out_dir: out_dir.to_path_buf(),
    };
    crate::write_json(&out_dir.join("axis.json"), &result)?;
    Ok(result)
}

/// The explained-variance curve, roles on PC1 × PC2, and roles sorted along the axis.
fn write_plots(
    out_dir: &Path,
    layers: &[LayerSummary],
    report_layer: usize,
    roles: &[RolePoint],
    default_projection: f64,
    default_pcs: [f64; 2],
) -> Result<Vec<PathBuf>, PipelineError> {
    use persona_report::svg::{BarChart, Chart, Point, Series, SeriesKind};
    let s = &layers[report_layer];
    let spectrum = Chart::new(
        format!("Persona space at layer {report_layer}: variance per component"),
        "principal component",
        "fraction of the role vectors' variance",
    )
    .with_series(Series::line_markers(
        "explained variance",
        s.explained_variance_ratio
            .iter()
            .enumerate()
            .map(|(i, r)| ((i + 1) as f64, *r)),
    ));
    // Labels for the roles farthest out only: hundreds of labels would cover each other.
    let mut by_reach: Vec<usize> = (0..roles.len()).collect();
    by_reach.sort_by(|&a, &b| {
        let reach = |r: &RolePoint| r.pc1.hypot(r.pc2);
        reach(&roles[b]).total_cmp(&reach(&roles[a]))
    });
    let labelled: std::collections::HashSet<usize> = by_reach.into_iter().take(30).collect();
    let points = roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let p = Point::new(r.pc1, r.pc2);
            if labelled.contains(&i) {
                p.with_label(r.name.clone())
            } else {
                p
            }
        })
        .collect();
    let map = Chart::new(
        format!("Roles on PC1 × PC2 (layer {report_layer}; PC1 oriented toward the Assistant)"),
        "PC1",
        "PC2",
    )
    .with_series(Series::new("roles", SeriesKind::Markers, points))
    .with_series(Series::new(
        "default assistant",
        SeriesKind::Markers,
        vec![Point::new(default_pcs[0], default_pcs[1]).with_label("DEFAULT ASSISTANT")],
    ));
    let mut sorted: Vec<(String, f64)> = roles
        .iter()
        .map(|r| (r.name.clone(), r.axis_projection))
        .chain(std::iter::once((
            "DEFAULT ASSISTANT".to_string(),
            default_projection,
        )))
        .collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    let bars = BarChart::new(
        format!("Roles along the Assistant axis (layer {report_layer})"),
        "projection on the unit axis",
        sorted,
        true,
    );
    let mut files = Vec::new();
    for (name, svg) in [
        ("axis_variance.svg", spectrum.to_svg()),
        ("axis_pc1_pc2.svg", map.to_svg()),
        ("axis_roles.svg", bars.to_svg()),
    ] {
        let path = out_dir.join(name);
        crate::write_file(&path, svg.as_bytes())?;
        files.push(path);
    }
    Ok(files)
}
