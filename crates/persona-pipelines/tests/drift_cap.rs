//! `run_drift` and `cap_eval` on the real default model at a small size: turn bookkeeping, the
//! cap's floor seen through the pipeline, the tables' arithmetic, and resuming from caches.

use persona_pipelines::DirStore;
use std::collections::BTreeMap;
use std::path::Path;

use persona_engine::WeightMode;
use persona_evals::{DriftConversation, McQuestion};
use persona_io::LayerVectors;
use persona_judges::{JudgeError, NumberScorer};
use persona_pipelines::answers::AnswerOptions;
use persona_pipelines::cap::eval::{cap_eval, mcq_scores, CapEvalOptions, CapEvalSets, McqScoring};
use persona_pipelines::cap::AxisCap;
use persona_pipelines::drift::{run_drift, DriftOptions};
use persona_pipelines::VectorSource;

/// A fixed direction at every layer with thresholds p25 = 0 and p75 = 40 (far above where the
/// model's states sit, so the floor is visible).
fn synthetic_axis(n_layers: usize, d: usize) -> LayerVectors {
    let mut v = LayerVectors {
        layers: (0..n_layers)
            .map(|l| {
                let dir = (0..d)
                    .map(|i| (((i * 7919 + l * 31) % 97) as f32 - 48.0) / 48.0)
                    .collect();
                (l, dir)
            })
            .collect(),
        ..Default::default()
    };
    let taus: BTreeMap<String, Vec<f64>> = [
        ("p25".to_string(), vec![0.0; n_layers]),
        ("p75".to_string(), vec![40.0; n_layers]),
    ]
    .into();
    v.metadata
        .insert("persona.tau".into(), serde_json::to_string(&taus).unwrap());
    v.metadata.insert("persona.kind".into(), "axis".into());
    v
}

fn answers() -> AnswerOptions {
    AnswerOptions::greedy(8, 8)
}

fn conversations() -> Vec<DriftConversation> {
    let mut convs: Vec<DriftConversation> = persona_evals::builtin_drift()
        .into_iter()
        .filter(|c| c.domain == "coding" || c.domain == "therapy")
        .collect();
    convs.dedup_by(|a, b| a.domain == b.domain);
    for c in &mut convs {
        c.turns.truncate(2);
    }
    convs.last_mut().unwrap().turns.truncate(1);
    convs
}

#[test]
fn drift_turns_and_the_cap_floor_on_the_default_model() {
    let engine = persona_testkit::load(WeightMode::Auto);
    let c = engine.config();
    let axis = synthetic_axis(c.n_layers, c.d_model);
    let axis_path = Path::new("synthetic-axis.safetensors");
    let source = VectorSource {
        vectors: &axis,
        file: axis_path,
    };
    let convs = conversations();
    assert_eq!(convs.len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let layer = 16;
    let opts = DriftOptions {
        layer,
        answers: answers(),
    };
    let out = dir.path().join("drift");
    let drift = |opts: &DriftOptions| {
        let store = DirStore::open(&out).unwrap();
        run_drift(&engine, &convs, source, opts, &store, &mut |_, _, _| {}).unwrap()
    };
    let r = drift(&opts);
    // Two turns of the first conversation, one of the second, in conversation order.
    let ids: Vec<(String, usize)> = r
        .rows
        .iter()
        .map(|t| (t.conversation.clone(), t.turn))
        .collect();
    assert_eq!(
        ids,
        [
            (convs[0].id.clone(), 1),
            (convs[0].id.clone(), 2),
            (convs[1].id.clone(), 1)
        ]
    );
    assert!(r
        .rows
        .iter()
        .all(|t| t.projection.is_some_and(f64::is_finite)));
    assert_eq!(r.rows[1].user, convs[0].turns[1]);
    let coding = &r.domains[0];
    let (p1, p2) = (r.rows[0].projection.unwrap(), r.rows[1].projection.unwrap());
    assert_eq!(coding.drift, Some(p2 - p1));
    assert_eq!(r.domains[1].drift, None, "one turn: no drift");
    persona_testkit::assert_files(
        &out,
        &[
            "drift.json",
            "drift.csv",
            "drift_turns.jsonl",
            "drift_domains.svg",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(&r.turns_file)
            .unwrap()
            .lines()
            .count(),
        3
    );

    // A rerun answers from the cache: the same rows.
    let again = drift(&opts);
    assert_eq!(again.rows, r.rows);

    // Capped at p75 = 40 over a window holding the read layer: every token's projection is
    // lifted to at least 40, so every turn's mean is too.
    let cap = AxisCap::from_axis(&axis, axis_path, "p75", 14..18, c.d_model).unwrap();
    let capped = DriftOptions {
        layer,
        answers: AnswerOptions {
            cap: Some(cap),
            ..answers()
        },
    };
    let rc = drift(&capped);
    assert_eq!(rc.cap.as_deref(), Some("p75@14..18"));
    for t in &rc.rows {
        let p = t.projection.unwrap();
        assert!(
            p >= 40.0 - 1e-2,
            "turn {} of {}: {p}",
            t.turn,
            t.conversation
        );
    }
    assert!(r.rows.iter().any(|t| t.projection.unwrap() < 39.0));
}

/// Scores a prompt by its length: deterministic, so the harm bookkeeping can be checked.
struct LengthScorer;

impl NumberScorer for LengthScorer {
    fn id(&self) -> String {
        "length".into()
    }
    fn score_prompts(&self, prompts: &[String]) -> Result<Vec<Option<f64>>, JudgeError> {
        Ok(prompts
            .iter()
            .map(|p| Some((p.len() % 100) as f64))
            .collect())
    }
}

#[test]
fn cap_eval_tables_on_the_default_model() {
    let engine = persona_testkit::load(WeightMode::Auto);
    let c = engine.config();
    let axis = synthetic_axis(c.n_layers, c.d_model);
    let axis_path = Path::new("synthetic-axis.safetensors");
    let jailbreaks: Vec<_> = persona_evals::builtin_jailbreaks()
        .into_iter()
        .take(3)
        .collect();
    let mcq: Vec<McQuestion> = persona_evals::builtin_mcq().into_iter().take(8).collect();
    let convs = conversations();
    let caps = vec![
        AxisCap::from_axis(&axis, axis_path, "p25", 14..18, c.d_model).unwrap(),
        AxisCap::from_axis(&axis, axis_path, "p75", 14..18, c.d_model).unwrap(),
    ];
    let opts = CapEvalOptions {
        layer: 16,
        answers: answers(),
        harm_threshold: 50.0,
        mcq_scoring: McqScoring::Cloze,
    };
    let dir = tempfile::tempdir().unwrap();
    let sets = CapEvalSets {
        jailbreaks: &jailbreaks,
        conversations: &convs,
        mcq: &mcq,
    };
    let source = VectorSource {
        vectors: &axis,
        file: axis_path,
    };
    let r = cap_eval(
        &engine,
        source,
        &caps,
        sets,
        Some(&LengthScorer),
        &opts,
        &DirStore::open(dir.path()).unwrap(),
        &mut |_, _, _| {},
    )
    .unwrap();
    let settings: Vec<&str> = r.rows.iter().map(|r| r.setting.as_str()).collect();
    assert_eq!(settings, ["uncapped", "p25@14..18", "p75@14..18"]);

    // Harm and refusal rates are the shares of the answers file's lines.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&r.answers_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3 * jailbreaks.len());
    for row in &r.rows {
        let mine: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| l["setting"] == row.setting)
            .collect();
        let harmful = mine
            .iter()
            .filter(|l| l["harm"].as_f64().unwrap() >= 50.0)
            .count();
        assert_eq!((row.harmful, row.judged), (harmful, mine.len()));
        assert_eq!(row.harm_rate, Some(harmful as f64 / mine.len() as f64));
        let refused = mine.iter().filter(|l| l["refusal"] == true).count();
        assert_eq!(row.refusal_rate, Some(refused as f64 / mine.len() as f64));
    }

    // The floor at 40 on the read layer lifts the projections; p25 = 0 lifts less.
    let proj = |i: usize| r.rows[i].jailbreak_projection.unwrap();
    assert!(proj(2) >= 40.0 - 1e-2 && proj(0) < proj(2), "{:?}", r.rows);
    assert!(r.rows[2].drift_projection.unwrap() >= 40.0 - 1e-2);

    // Accuracy: uncapped equals scoring the questions directly; retained is the ratio.
    let scores = mcq_scores(&engine, &mcq, McqScoring::Cloze, &[], &mut |_, _| {}).unwrap();
    let correct = mcq
        .iter()
        .zip(&scores)
        .filter(|(q, s)| q.is_correct(s))
        .count();
    assert_eq!(
        r.rows[0].mcq_accuracy,
        Some(correct as f64 / mcq.len() as f64)
    );
    for row in &r.rows {
        let want = row.mcq_accuracy.unwrap() / r.rows[0].mcq_accuracy.unwrap();
        assert!((row.capability_retained.unwrap() - want).abs() < 1e-12);
    }
    persona_testkit::assert_files(
        dir.path(),
        &[
            "cap_eval.json",
            "cap_eval.csv",
            "cap_tradeoff.svg",
            "cap_drift.svg",
        ],
    );
    assert!(dir
        .path()
        .join("drift-p75-14-18")
        .join("drift.json")
        .is_file());
    let csv = std::fs::read_to_string(&r.table_file).unwrap();
    assert_eq!(csv.lines().count(), 4);
}
