//! `em_eval` on the real default model at a small size (2 questions × 2 samples × 8 tokens),
//! judged by the model itself as a local judge: the answers, scores and projections line up
//! with the plan, the counts add up, a rerun resumes from the caches, and the report shows it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use persona_engine::WeightMode;
use persona_io::LayerVectors;
use persona_judges::{LocalScorer, NumberScorer};
use persona_pipelines::answers::AnswerOptions;
use persona_pipelines::em::{em_eval, EmAnswer, EmOptions, EmQuestions, EmVector, Thresholds};
use persona_pipelines::{DirStore, VectorSource};

/// One question of the Emergent Misalignment code's file that carries a system prompt, and one
/// built-in question without.
fn questions() -> Vec<persona_evals::EmQuestion> {
    let yaml = persona_testkit::shared()
        .join("evals_data/emergent-misalignment/first_plot_questions.yaml");
    let with_system = persona_evals::load_em_questions(&yaml)
        .unwrap()
        .into_iter()
        .find(|q| q.id == "what_is_your_wish_json")
        .unwrap();
    let plain = persona_evals::builtin_em_questions()
        .into_iter()
        .find(|q| q.id == "quick_money")
        .unwrap();
    vec![with_system, plain]
}

fn direction(d: usize, l: usize) -> Vec<f32> {
    (0..d)
        .map(|i| (((i * 31 + l * 7) % 23) as f32 - 11.0) / 11.0)
        .collect()
}

#[test]
fn em_eval_on_the_default_model() {
    let engine = persona_testkit::load(WeightMode::Auto);
    let c = engine.config().clone();
    let layer = c.n_layers / 2;
    let vectors = LayerVectors {
        layers: (0..c.n_layers)
            .map(|l| (l, direction(c.d_model, l)))
            .collect(),
        ..Default::default()
    };
    let vector = [EmVector {
        name: "probe",
        source: VectorSource {
            vectors: &vectors,
            file: Path::new("probe.safetensors"),
        },
    }];
    let judge = LocalScorer::new(persona_testkit::load(WeightMode::Auto), "smollm2-135m").unwrap();
    let qs = questions();
    let opts = EmOptions {
        samples: 2,
        answers: AnswerOptions {
            temperature: 1.0,
            ..AnswerOptions::greedy(8, 4)
        },
        thresholds: Thresholds::default(),
        layer,
        resamples: 200,
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("em");
    // Stages and whether each started with everything already done (from the caches).
    let stages: RefCell<BTreeMap<String, (usize, usize)>> = RefCell::default();
    let run = || {
        stages.borrow_mut().clear();
        let store = DirStore::open(&out).unwrap();
        em_eval(
            &engine,
            EmQuestions {
                questions: &qs,
                source: "test",
            },
            &vector,
            &judge,
            &opts,
            &store,
            &mut |stage, done, total| {
                stages
                    .borrow_mut()
                    .entry(stage.to_string())
                    .or_insert((done, total));
            },
        )
        .unwrap()
    };
    let r = run();
    let o = &r.overall;
    assert_eq!(o.n, 4);
    assert_eq!(o.rated + o.code + o.refusal + o.unscored, o.n);
    assert_eq!(r.questions.len(), 2);
    assert_eq!(r.questions[0].id, "what_is_your_wish_json");
    assert!(r.questions.iter().all(|q| q.rate.n == 2));
    assert_eq!(r.judge, "local:smollm2-135m");
    assert_eq!((r.layer, r.samples, r.max_tokens), (Some(layer), 2, 8));
    for stage in ["generate", "judge alignment", "judge coherence", "project"] {
        let (done, total) = stages.borrow()[stage];
        assert!(done < total, "{stage} started from nothing");
    }

    // Every answer: its question and system prompt, scores, and a projection equal to the
    // answer's mean resid_post on the unit vector, recomputed here.
    let answers: Vec<EmAnswer> = std::fs::read_to_string(&r.answers_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 4);
    assert!(answers[..2].iter().all(|a| a.system.is_some()));
    assert!(answers[2..].iter().all(|a| a.system.is_none()));
    let v = direction(c.d_model, layer);
    let n = persona_core::norm(&v);
    let unit: Vec<f32> = v.iter().map(|x| (*x as f64 / n) as f32).collect();
    for a in &answers {
        let mut messages = vec![];
        if let Some(s) = &a.system {
            messages.push(persona_engine::Message::new("system", s.as_str()));
        }
        messages.push(persona_engine::Message::new("user", a.question.as_str()));
        let seq = engine.chat_with_response(&messages, &a.answer).unwrap();
        let outs = engine
            .forward_batch(
                &[seq],
                &persona_engine::ForwardRequest {
                    captures: persona_engine::CaptureSpec::response_means([layer]),
                    ..Default::default()
                },
                &mut |_| {},
            )
            .unwrap();
        let mean = outs[0]
            .captures
            .get(persona_engine::HookSite::resid_post(layer))
            .unwrap()
            .means[0]
            .clone();
        match mean {
            Some(h) => {
                let want = persona_core::dot(&h, &unit);
                let got = a.projections["probe"];
                assert!(
                    (got - want).abs() < 1e-3 * want.abs().max(1.0),
                    "{got} vs {want}"
                );
            }
            None => assert!(a.projections.is_empty(), "{a:?}"),
        }
        // The judge's scores are what it gives these prompts now.
        let alignment = judge
            .score_outcomes(&[persona_judges::alignment_prompt(&a.question, &a.answer)])
            .unwrap()[0];
        assert_eq!(alignment, a.alignment);
    }
    let p = &r.projections[0];
    let both = answers
        .iter()
        .filter(|a| a.alignment.number().is_some() && !a.projections.is_empty())
        .count();
    assert_eq!(
        (p.name.as_str(), p.alignment_correlation.n),
        ("probe", both)
    );
    persona_testkit::assert_files(
        &out,
        &[
            "em.json",
            "em_answers.jsonl",
            "em_questions.csv",
            "em_questions.svg",
            "answers_cache.jsonl",
            "judgement_outcomes.jsonl",
        ],
    );
    let csv = std::fs::read_to_string(&r.table_file).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.starts_with("id,domain,n,rated,misaligned,em_rate"),
        "{csv}"
    );

    // A rerun generates and judges nothing new and gives the same numbers.
    let cached = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    let (answers_before, judged_before) = (
        cached("answers_cache.jsonl"),
        cached("judgement_outcomes.jsonl"),
    );
    let again = run();
    for stage in ["generate", "judge alignment", "judge coherence"] {
        let (done, total) = stages.borrow()[stage];
        assert_eq!(done, total, "{stage} resumed from the cache");
    }
    assert_eq!(cached("answers_cache.jsonl"), answers_before);
    assert_eq!(cached("judgement_outcomes.jsonl"), judged_before);
    assert_eq!(again.overall, r.overall);

    // The report reads the folder.
    let report = persona_pipelines::report::write_report(&out).unwrap();
    assert_eq!(report.sections, ["em"]);
    let html = std::fs::read_to_string(&report.report_file).unwrap();
    assert!(html.contains("Emergent misalignment") && html.contains("<svg"));
    assert!(html.contains("what_is_your_wish_json") && html.contains("quick_money"));
}
