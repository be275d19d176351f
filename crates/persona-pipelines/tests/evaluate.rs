//! Steering, monitoring and the report on the real default model at a small size: a vector
//! from a handful of contrasting conversations moves the lexicon-judged trait the right way,
//! the monitor's bookkeeping holds, answers are cached, and the report collects it all.

use persona_engine::{Message, WeightMode};
use persona_judges::{LexiconJudge, Polarity};
use persona_pipelines::answers::AnswerOptions;
use persona_pipelines::monitor::{monitor, MonitorOptions, SYSTEM_PROMPT_LEVELS};
use persona_pipelines::steer::{steer_sweep, SteerOptions};
use persona_pipelines::DirStore;

const BRIGHT: [&str; 4] = [
    "Things are looking up! This is a great chance to learn, and I am sure it will work out wonderfully.",
    "What a lovely opportunity. You will grow from this, and the future is full of good surprises.",
    "I am confident you will succeed: every step forward brings you closer to something wonderful.",
    "Good news is ahead. Stay hopeful, because the best part of this journey is still to come.",
];
const GLOOMY: [&str; 4] = [
    "This will probably go badly. Most attempts like this fail, and the losses are hard to recover.",
    "I doubt it will work out. Expect setbacks, disappointment and problems that keep getting worse.",
    "The outlook is grim: the risks are high and things are likely to fall apart before long.",
    "Sadly, there is little reason for hope here. It is more likely to end in failure and regret.",
];

fn conversations(spec: &persona_traits::TraitSpec, answers: &[&str]) -> Vec<Vec<Message>> {
    spec.extraction_questions
        .iter()
        .zip(answers)
        .map(|(q, a)| {
            vec![
                Message::new("user", q.as_str()),
                Message::new("assistant", *a),
            ]
        })
        .collect()
}

#[test]
fn steer_monitor_and_report_on_the_default_model() {
    let engine = persona_testkit::load(WeightMode::Auto);
    let spec = persona_traits::builtin("optimistic").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path();
    let vectors = persona_pipelines::extract::extract_from_conversations(
        &engine,
        &conversations(&spec, &BRIGHT),
        &conversations(&spec, &GLOOMY),
        "optimistic",
        &DirStore::open(run).unwrap(),
        &mut |_| {},
    )
    .unwrap();
    let vector_file = vectors.vector_file.clone();
    let v = persona_io::LayerVectors::load(&vector_file).unwrap();
    let source = persona_pipelines::VectorSource {
        vectors: &v,
        file: &vector_file,
    };
    let judge = LexiconJudge::new(Polarity::Positive);
    let answers = AnswerOptions::greedy(32, 16);
    let opts = SteerOptions {
        layers: vec![10],
        alphas: vec![-2.0, 2.0],
        samples: 1,
        questions: 6,
        answers: answers.clone(),
        coherence_min: 80.0,
    };
    let steer_dir = run.join("steer");
    let sweep = || {
        let store = DirStore::open(&steer_dir).unwrap();
        steer_sweep(
            &engine,
            &spec,
            source,
            &judge,
            &opts,
            &store,
            &mut |_, _, _| {},
        )
        .unwrap()
    };
    let s = sweep();
    // α = −2, 0 (added), 2 at one layer. (Hand-written answers make a long vector: small α.)
    assert_eq!(
        s.rows.iter().map(|r| r.alpha).collect::<Vec<_>>(),
        vec![-2.0, 0.0, 2.0]
    );
    assert!(s.rows.iter().all(|r| r.n == 6));
    let t: Vec<f64> = s.rows.iter().map(|r| r.trait_score.unwrap()).collect();
    eprintln!("optimism at α −2 / 0 / +2, layer 10: {t:?}");
    assert!(t[2] > t[0] + 15.0, "steering does not move optimism: {t:?}");
    assert_eq!(s.baseline_trait, Some(t[1]));
    persona_testkit::assert_files(
        &steer_dir,
        &[
            "steer.json",
            "steer.csv",
            "steer.svg",
            "steer_answers.jsonl",
        ],
    );
    // 1 baseline + 2 steered settings × 6 questions, generated once.
    let cached = || std::fs::read_to_string(steer_dir.join("answers_cache.jsonl")).unwrap();
    assert_eq!(cached().lines().count(), 18);
    let again = sweep();
    assert_eq!(
        cached().lines().count(),
        18,
        "a rerun regenerated cached answers"
    );
    assert_eq!(again.rows[2].trait_score, s.rows[2].trait_score);
    // The same sweep into memory gives the same numbers, with its artifacts held by name, and
    // the folder's result reads back through the type that wrote it.
    let memory = persona_pipelines::MemoryStore::new();
    let in_memory = steer_sweep(
        &engine,
        &spec,
        source,
        &judge,
        &opts,
        &memory,
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(in_memory.rows, s.rows);
    assert!(memory.names().contains(&"steer.json".to_string()));
    assert!(!steer_dir.join(".persona.lock").exists());
    let read_back = persona_pipelines::RunDir::new(run)
        .steer_result()
        .unwrap()
        .unwrap();
    assert_eq!(read_back.rows, s.rows);
    assert_eq!(read_back.recommended, s.recommended);

    let mopts = MonitorOptions {
        layer: 10,
        questions: 3,
        max_shots: 2,
        answers,
        resamples: 200,
    };
    let m = monitor(
        &engine,
        &spec,
        source,
        &judge,
        &mopts,
        &DirStore::open(run.join("monitor")).unwrap(),
        &mut |_, _, _| {},
    )
    .unwrap();
    // 8 system-prompt levels and 0, 1, 2 shots, each over 3 questions.
    assert_eq!(m.rows.len(), SYSTEM_PROMPT_LEVELS + 3);
    assert!(m.rows.iter().all(|r| r.n == 3));
    assert_eq!(m.n, (SYSTEM_PROMPT_LEVELS + 3) * 3);
    let points = std::fs::read_to_string(run.join("monitor/monitor_points.jsonl")).unwrap();
    assert_eq!(points.lines().count(), m.n);
    // The condition means are the means of their points.
    let first: Vec<f64> = points
        .lines()
        .take(3)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["last_prompt_projection"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let want = first.iter().sum::<f64>() / 3.0;
    assert!((m.rows[0].last_prompt_projection - want).abs() < 1e-9);
    let r = m.pearson_r.unwrap();
    let (lo, hi) = m.ci95.unwrap();
    assert!(lo <= r && r <= hi, "{lo} {r} {hi}");
    eprintln!(
        "monitor at layer 10: r = {r:.3} [{lo:.3}, {hi:.3}] over {} answers",
        m.n
    );

    let rep = persona_pipelines::report::write_report(run).unwrap();
    let html = std::fs::read_to_string(&rep.report_file).unwrap();
    assert_eq!(rep.sections, vec!["steer", "monitor"]);
    assert!(html.contains("Steering") && html.contains("Monitoring") && html.contains("<svg"));
}
