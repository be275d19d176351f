//! Mapping persona space: every role of an inventory (and the default assistant) answers shared
//! questions under its system prompts; a role's vector is the mean response-token state of its
//! kept answers at every layer. PCA over the role vectors gives persona space's main
//! directions, and the Assistant axis is the default's vector minus the mean role vector —
//! which, if the method's claim holds, lines up with the first component.

use std::collections::BTreeMap;
use std::path::PathBuf;

use persona_core::pca::Pca;
use persona_engine::{CaptureSpec, Engine, ForwardRequest, HookSite, Message};
use persona_io::LayerVectors;
use persona_roles::{Role, RoleInventory};
use serde::{Deserialize, Serialize};

use crate::answers::{answer_all, AnswerJob, AnswerOptions, AnswerRequest};
use crate::store::RunStore;
use crate::{PipelineError, VectorMeta};

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

/// The name `axis build` gives the axis file and its result.
pub const AXIS_FILE: &str = "axis.safetensors";
pub const RESULT_FILE: &str = "axis.json";

/// The default assistant's projection on the unit axis at `layer`, from an axis file's
/// metadata (if it has it).
pub fn default_projection(axis: &LayerVectors, layer: usize) -> Option<f64> {
    axis.metadata
        .get(DEFAULT_PROJECTION_KEY)
        .and_then(|t| serde_json::from_str::<Vec<f64>>(t).ok())
        .and_then(|v| v.get(layer).copied())
}

/// Whether a vector file is an Assistant axis: it says so (`persona.kind` = axis), or it says
/// nothing (an imported file). `Err` names the kind it declares instead.
pub fn check_axis_file(vectors: &LayerVectors) -> Result<(), String> {
    match crate::vector_meta::declared_kind(vectors) {
        Some("axis") | None => Ok(()),
        Some(other) => Err(other.to_string()),
    }
}

/// One answered rollout: which role (index into the roles run, `None` for the default).
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub role: Option<usize>,
    pub question: String,
}

/// Who answers what: the roles chosen from the inventory and every rollout's request.
pub struct AxisPlan<'a> {
    pub roles: Vec<&'a Role>,
    pub slots: Vec<Slot>,
    pub requests: Vec<AnswerRequest>,
}

/// Plans the rollouts: every chosen role and the default assistant answer every question under
/// each of their first `opts.prompts` system prompts. A subset of roles is spread evenly over
/// the inventory, so it spans its categories.
pub fn plan<'a>(
    inventory: &'a RoleInventory,
    opts: &AxisOptions,
) -> Result<AxisPlan<'a>, PipelineError> {
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
    Ok(AxisPlan {
        roles,
        slots,
        requests,
    })
}

/// Which rollouts a role's vector is read from: every one without a judge; with one, the
/// roles' answers whose adherence clears `min_adherence` (the default's answers are never
/// judged: it is the reference).
fn adherence_filter(
    plan: &AxisPlan,
    inventory: &RoleInventory,
    answers: &[crate::answers::Answer],
    judge: Option<AdherenceScorer>,
    opts: &AxisOptions,
    store: &dyn RunStore,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Vec<bool>, PipelineError> {
    let slots = &plan.slots;
    let mut keep = vec![true; slots.len()];
    let Some(scorer) = judge else {
        return Ok(keep);
    };
    let judged: Vec<usize> = (0..slots.len())
        .filter(|&i| slots[i].role.is_some())
        .collect();
    let prompts: Vec<String> = judged
        .iter()
        .map(|&i| {
            let role = plan.roles[slots[i].role.expect("judged slots have a role")];
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
        store,
        crate::judging::JUDGEMENT_CACHE,
        &mut |d, t| progress("judge", d, t),
    )?;
    for (&i, score) in judged.iter().zip(scores) {
        keep[i] = score.is_some_and(|s| s >= opts.min_adherence);
    }
    Ok(keep)
}

/// Each role's vector (mean response-token state of its kept answers, every layer; empty when
/// it kept none) and the default assistant's, read back from `roles/<name>.safetensors` when
/// the store already has them for the same model and answer count.
struct RoleVectors {
    roles: Vec<Vec<Vec<f32>>>,
    kept_per_role: Vec<usize>,
    default: Vec<Vec<f32>>,
}

fn role_vectors(
    engine: &Engine,
    plan: &AxisPlan,
    inventory: &RoleInventory,
    answers: &[crate::answers::Answer],
    keep: &[bool],
    store: &dyn RunStore,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<RoleVectors, PipelineError> {
    let n_layers = engine.config().n_layers;
    let model = engine.model_id()?;
    let slots = &plan.slots;
    let mut all_roles: Vec<(Option<usize>, &Role)> = plan
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| (Some(i), *r))
        .collect();
    all_roles.push((None, &inventory.default));
    let mut out = RoleVectors {
        roles: Vec::new(),
        kept_per_role: Vec::new(),
        default: Vec::new(),
    };
    for (done, (ri, role)) in all_roles.iter().enumerate() {
        progress("vectors", done, all_roles.len());
        let mine: Vec<usize> = (0..slots.len())
            .filter(|&i| slots[i].role == *ri && keep[i])
            .collect();
        let name = format!("roles/{}.safetensors", role.name);
        let cached = store
            .get(&name)?
            .and_then(|b| LayerVectors::from_safetensors(&store.path(&name), &b).ok())
            .filter(|v| {
                VectorMeta::from_metadata(&v.metadata)
                    .is_some_and(|m| m.n_pos == mine.len() && m.model == model)
            });
        let per_layer = match cached {
            Some(v) => v.layers.into_values().collect(),
            None if mine.is_empty() => Vec::new(),
            None => {
                let convs: Vec<Vec<Message>> =
                    mine.iter().map(|&i| answered(plan, answers, i)).collect();
                let means = layer_means(&response_means(engine, &convs)?, n_layers);
                let meta = VectorMeta::new("role", &role.name, "response_avg", &model, mine.len());
                crate::put_vectors(store, &name, &meta.vectors(means.clone()))?;
                means
            }
        };
        match ri {
            None => out.default = per_layer,
            Some(_) => {
                out.roles.push(per_layer);
                out.kept_per_role.push(mine.len());
            }
        }
    }
    Ok(out)
}

/// Rollout `i`'s conversation with its answer.
fn answered(plan: &AxisPlan, answers: &[crate::answers::Answer], i: usize) -> Vec<Message> {
    let mut c = plan.requests[i].messages.clone();
    c.push(Message::new("assistant", answers[i].text.clone()));
    c
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

/// Persona space's numbers: the axis and the components per layer, the roles at the report
/// layer, and the default assistant's place.
#[derive(Debug, Clone)]
pub struct AxisSummary {
    /// The Assistant axis (default − mean of roles) at every layer.
    pub axis: Vec<Vec<f32>>,
    pub layers: Vec<LayerSummary>,
    pub report_layer: usize,
    pub roles: Vec<RolePoint>,
    pub default_projection: f64,
    pub default_pcs: [f64; 2],
    /// The default assistant's projection on the unit axis at every layer.
    pub default_levels: Vec<f64>,
}

/// A role of the map: its name, category, kept answers and vector at every layer.
pub struct MappedRole<'a> {
    pub name: String,
    pub category: &'a str,
    pub kept: usize,
    pub vector: &'a [Vec<f32>],
}

/// Summarises persona space from role vectors, the default's vector and a sample of rollout
/// states (for the cap thresholds): PCA and the axis at every layer, roles at the middle layer.
/// A pure function of vectors.
pub fn summarise(
    roles: &[MappedRole],
    default_vector: &[Vec<f32>],
    sample_states: &[Vec<Vec<f32>>],
    components: usize,
) -> Result<AxisSummary, PipelineError> {
    let n_layers = default_vector.len();
    let axis: Vec<Vec<f32>> = (0..n_layers)
        .map(|l| {
            let rm: Vec<Vec<f32>> = roles.iter().map(|r| r.vector[l].clone()).collect();
            persona_core::axis::assistant_axis(&default_vector[l], &rm)
        })
        .collect();
    let k = components.min(roles.len() - 1).max(1);
    let mut layers = Vec::new();
    let mut pcas = Vec::new();
    for l in 0..n_layers {
        let rows: Vec<&[f32]> = roles.iter().map(|r| r.vector[l].as_slice()).collect();
        let mut pca = Pca::fit(&rows, k.min(rows.len() - 1)).map_err(|e| {
            PipelineError::Input(format!("PCA over the role vectors at layer {l}: {e}"))
        })?;
        pca.orient_toward(0, &axis[l]);
        let unit_norm = persona_core::norm(&axis[l]);
        let projections: Vec<f64> = sample_states
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
    let role_points = roles
        .iter()
        .map(|r| {
            let v = &r.vector[report_layer];
            let scores = pca.project(v);
            RolePoint {
                name: r.name.clone(),
                category: r.category.to_string(),
                pc1: scores[0],
                pc2: scores.get(1).copied().unwrap_or(0.0),
                axis_projection: persona_core::projection(v, axis_l),
                kept: r.kept,
            }
        })
        .collect();
    let default_scores = pca.project(&default_vector[report_layer]);
    Ok(AxisSummary {
        default_projection: persona_core::projection(&default_vector[report_layer], axis_l),
        default_pcs: [
            default_scores[0],
            default_scores.get(1).copied().unwrap_or(0.0),
        ],
        default_levels: (0..n_layers)
            .map(|l| persona_core::projection(&default_vector[l], &axis[l]))
            .collect(),
        axis,
        layers,
        report_layer,
        roles: role_points,
    })
}

/// The axis file: the axis per layer, the default's level per layer and the cap thresholds
/// in its metadata.
fn axis_file_vectors(summary: &AxisSummary, model: &str, n_roles: usize) -> LayerVectors {
    let meta = VectorMeta::new("axis", "assistant", "response_avg", model, n_roles);
    let mut v = meta.vectors(summary.axis.clone());
    v.metadata.insert(
        DEFAULT_PROJECTION_KEY.into(),
        serde_json::to_string(&summary.default_levels).expect("numbers serialize"),
    );
    let taus: BTreeMap<String, Vec<f64>> = TAU_PERCENTILES
        .iter()
        .enumerate()
        .map(|(j, p)| {
            (
                format!("p{p}"),
                summary.layers.iter().map(|s| s.tau[j]).collect(),
            )
        })
        .collect();
    v.metadata.insert(
        "persona.tau".into(),
        serde_json::to_string(&taus).expect("taus serialize"),
    );
    v
}

/// Builds the map: rollouts (cached), adherence judgements (optional, cached), role and
/// default vectors (`roles/<name>.safetensors`), PCA and the axis per layer, τ percentiles;
/// puts `axis.safetensors`, `axis.json` and the plots in `store`.
pub fn build_axis(
    engine: &Engine,
    inventory: &RoleInventory,
    judge: Option<AdherenceScorer>,
    opts: &AxisOptions,
    store: &dyn RunStore,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<AxisResult, PipelineError> {
    let plan = plan(inventory, opts)?;
    let answers = answer_all(
        &AnswerJob::new(engine, &plan.requests, &opts.answers, store),
        &mut |d, t| progress("rollouts", d, t),
    )?;
    let keep = adherence_filter(&plan, inventory, &answers, judge, opts, store, progress)?;
    let vectors = role_vectors(engine, &plan, inventory, &answers, &keep, store, progress)?;
    if vectors.default.is_empty() {
        return Err(PipelineError::Input(
            "the default assistant has no answers to read its vector from".into(),
        ));
    }
    // Roles with no kept answer drop out of the map.
    let mapped: Vec<MappedRole> = (0..plan.roles.len())
        .filter(|&i| !vectors.roles[i].is_empty())
        .map(|i| MappedRole {
            name: plan.roles[i].display_name(),
            category: plan.roles[i].category.as_str(),
            kept: vectors.kept_per_role[i],
            vector: &vectors.roles[i],
        })
        .collect();
    if mapped.len() < 3 {
        return Err(PipelineError::Input(format!(
            "only {} roles kept any answer at adherence ≥ {}: lower --min-adherence, use a stronger judge, or --no-filter",
            mapped.len(),
            opts.min_adherence
        )));
    }
    // τ: projections of a sample of kept rollouts (roles and default) on the unit axis.
    let kept_slots: Vec<usize> = (0..plan.slots.len()).filter(|&i| keep[i]).collect();
    let step = (kept_slots.len() / opts.tau_samples.max(1)).max(1);
    let sample: Vec<Vec<Message>> = kept_slots
        .iter()
        .step_by(step)
        .map(|&i| answered(&plan, &answers, i))
        .collect();
    progress("thresholds", 0, sample.len());
    let sample_states = response_means(engine, &sample)?;
    let summary = summarise(&mapped, &vectors.default, &sample_states, opts.components)?;
    let model = engine.model_id()?;
    let axis_file = crate::put_vectors(
        store,
        AXIS_FILE,
        &axis_file_vectors(&summary, &model, mapped.len()),
    )?;
    let plot_files = write_plots(store, &summary)?;
    let result = AxisResult {
        layers: summary.layers,
        report_layer: summary.report_layer,
        roles: summary.roles,
        default_projection: summary.default_projection,
        default_pcs: summary.default_pcs,
        rollouts: plan.slots.len(),
        kept: kept_slots.len(),
        judge: judge.map(|j| j.id()),
        axis_file,
        plot_files,
        out_dir: store.dir(),
    };
    crate::store::put_json(store, RESULT_FILE, &result)?;
    Ok(result)
}

/// The explained-variance curve, roles on PC1 × PC2, and roles sorted along the axis.
fn write_plots(store: &dyn RunStore, summary: &AxisSummary) -> Result<Vec<PathBuf>, PipelineError> {
    use persona_report::svg::{BarChart, Chart, Point, Series, SeriesKind};
    let (report_layer, roles) = (summary.report_layer, &summary.roles);
    let (default_projection, default_pcs) = (summary.default_projection, summary.default_pcs);
    let s = &summary.layers[report_layer];
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
        files.push(store.put(name, svg.as_bytes())?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_finds_the_axis_and_orients_pc1_toward_it() {
        // Three roles spread along x and y at two layers; the default sits far along +x.
        let roles_v: Vec<Vec<Vec<f32>>> = [[-1.0f32, 1.0], [0.0, -1.0], [1.0, 0.0]]
            .iter()
            .map(|&[x, y]| vec![vec![x, y], vec![2.0 * x, 2.0 * y]])
            .collect();
        let roles: Vec<MappedRole> = roles_v
            .iter()
            .enumerate()
            .map(|(i, v)| MappedRole {
                name: format!("r{i}"),
                category: "c",
                kept: 1,
                vector: v,
            })
            .collect();
        let default = vec![vec![5.0, 0.0], vec![10.0, 0.0]];
        let sample = vec![
            vec![vec![1.0, 0.0], vec![1.0, 0.0]],
            vec![vec![3.0, 0.0], vec![3.0, 0.0]],
        ];
        let s = summarise(&roles, &default, &sample, 2).unwrap();
        assert_eq!(s.axis[0], vec![5.0, 0.0]);
        assert_eq!(s.report_layer, 1);
        assert_eq!(s.default_levels, vec![5.0, 10.0]);
        assert_eq!(s.default_projection, 10.0);
        // τ percentiles of the sample's projections on the unit axis (1 and 3).
        assert_eq!(s.layers[0].tau[2], 2.0);
        // PC1 points toward the axis: the role farthest along +x scores highest on it.
        let pc1: Vec<f64> = s.roles.iter().map(|r| r.pc1).collect();
        assert!(s.layers[1].axis_pc1_cosine > 0.0, "{:?}", s.layers[1]);
        assert!(pc1[2] > pc1[0], "{pc1:?}");
        let file = axis_file_vectors(&s, "m", 3);
        assert_eq!(default_projection(&file, 1), Some(10.0));
        assert!(check_axis_file(&file).is_ok());
        let role = VectorMeta::new("role", "r", "response_avg", "m", 1).vectors([vec![1.0]]);
        assert_eq!(check_axis_file(&role), Err("role".to_string()));
    }
}
