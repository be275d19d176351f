//! The whole method on a tiny trait spec: rollouts are cached and resumed, judgements cached,
//! the filter refuses a run with too few survivors instead of writing a weak vector.

use persona_engine::WeightMode;
use persona_judges::{LexiconJudge, Polarity};
use persona_pipelines::extract::rollouts::RolloutOptions;
use persona_pipelines::extract::{extract_trait, Filter, TraitExtractOptions};
use persona_pipelines::DirStore;

const SPEC: &str = r#"
name = "cheerful"
description = "Upbeat, warm answers."
extraction_questions = ["How was your week?", "What do you think about rainy days?"]
evaluation_questions = ["Any plans for the weekend?"]
judge_rubric = "Rate cheerfulness 0-100. Question: {question} Answer: {answer}"

[[instructions]]
pos = "Be upbeat and warm in every answer."
neg = "Be flat and downbeat in every answer."
"#;

#[test]
fn trait_extraction_resumes_from_its_caches() {
    let engine = persona_testkit::load(WeightMode::Auto);
    let spec = persona_traits::TraitSpec::from_toml(SPEC, "test spec").unwrap();
    let judge = LexiconJudge::new(Polarity::Positive);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = TraitExtractOptions {
        rollouts: RolloutOptions {
            samples: 2,
            max_tokens: 12,
            temperature: 1.0,
            seed: 3,
            batch_size: 3,
        },
        filter: None,
        min_kept: 1,
    };
    let run = |opts: &TraitExtractOptions| {
        extract_trait(
            &engine,
            &spec,
            &judge,
            opts,
            &DirStore::open(dir.path()).unwrap(),
            &mut |_, _, _| {},
        )
    };
    let first = run(&opts).unwrap();
    // 2 sides × 1 pair × 2 questions × 2 samples.
    assert_eq!(first.rollouts, 8);
    assert_eq!((first.kept_pos, first.kept_neg), (4, 4));
    assert_eq!(first.judge, "lexicon:vader");
    assert!(!first.coherence_scored);
    persona_testkit::assert_files(
        dir.path(),
        &[
            "rollouts.jsonl",
            "judgements.jsonl",
            "judged.jsonl",
            "run.json",
        ],
    );
    let rollouts = std::fs::read_to_string(dir.path().join("rollouts.jsonl")).unwrap();
    let v1 = persona_io::LayerVectors::load(&first.vectors.vector_file).unwrap();

    // A crash mid-write: drop the last rollout and tear the line before it.
    let lines: Vec<&str> = rollouts.lines().collect();
    let torn = format!("{}\n{}", lines[..6].join("\n"), &lines[6][..10]);
    std::fs::write(dir.path().join("rollouts.jsonl"), torn).unwrap();
    let second = run(&opts).unwrap();
    assert_eq!(second.rollouts, 8);
    let v2 = persona_io::LayerVectors::load(&second.vectors.vector_file).unwrap();
    // Per-slot seeds: the regenerated rollouts are the ones an uninterrupted run made.
    for l in [5, 15, 25] {
        let d = persona_core::cosine(&v1.layers[&l], &v2.layers[&l]);
        assert!(d > 0.99999, "layer {l}: {d}");
    }

    opts.filter = Some(Filter {
        pos_min: 101.0,
        neg_max: 50.0,
        coherence_min: 50.0,
    });
    opts.min_kept = 1;
    let e = run(&opts).unwrap_err().to_string();
    assert!(e.contains("0 positive") && e.contains("--no-filter"), "{e}");
}
