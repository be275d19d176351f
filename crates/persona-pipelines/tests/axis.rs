//! `build_axis` on the real default model at a small size: the files, the bookkeeping
//! (axis = default − mean of the role files, exactly), oriented components, ordered thresholds,
//! and a rerun that reuses every cached rollout and role vector.

use persona_engine::WeightMode;
use persona_io::LayerVectors;
use persona_pipelines::answers::AnswerOptions;
use persona_pipelines::axis::{build_axis, AxisOptions};
use persona_pipelines::DirStore;

#[test]
fn axis_build_on_the_default_model() {
    let engine = persona_testkit::load(WeightMode::Auto);
    let inventory = persona_roles::RoleInventory::builtin();
    let dir = tempfile::tempdir().unwrap();
    let opts = AxisOptions {
        roles: 5,
        prompts: 1,
        questions: 2,
        answers: AnswerOptions::greedy(12, 16),
        min_adherence: 2.5,
        components: 3,
        tau_samples: 100,
        model_name: "SmolLM2".into(),
    };
    let build = || {
        build_axis(
            &engine,
            &inventory,
            None,
            &opts,
            &DirStore::open(dir.path()).unwrap(),
            &mut |_, _, _| {},
        )
    };
    let r = build().unwrap();
    // 5 roles × 1 prompt × 2 questions, and the default's first prompt (no system message).
    assert_eq!(r.rollouts, 12);
    assert_eq!(r.kept, 12);
    assert_eq!(r.judge, None);
    assert_eq!(r.roles.len(), 5);
    // A subset is spread over the inventory: more than one category.
    let mut cats: Vec<&str> = r.roles.iter().map(|p| p.category.as_str()).collect();
    cats.dedup();
    assert!(cats.len() > 1, "{cats:?}");
    assert_eq!(r.layers.len(), engine.config().n_layers);
    for s in &r.layers {
        let total: f64 = s.explained_variance_ratio.iter().sum();
        assert!(
            total <= 1.0 + 1e-9 && s.explained_variance_ratio.len() == 4,
            "{s:?}"
        );
        assert!((0.0..=1.0 + 1e-9).contains(&s.axis_pc1_cosine), "{s:?}");
        assert!(s.tau.windows(2).all(|w| w[0] <= w[1]), "{s:?}");
    }
    // The axis file is default − mean(roles), from the role files.
    let axis = LayerVectors::load(&r.axis_file).unwrap();
    assert_eq!(axis.metadata["persona.kind"], "axis");
    let tau: std::collections::BTreeMap<String, Vec<f64>> =
        serde_json::from_str(&axis.metadata["persona.tau"]).unwrap();
    assert_eq!(tau["p25"].len(), engine.config().n_layers);
    let role_file = |name: &str| {
        LayerVectors::load(&dir.path().join("roles").join(format!("{name}.safetensors"))).unwrap()
    };
    let names: Vec<String> = (0..5)
        .map(|i| inventory.roles[i * inventory.roles.len() / 5].name.clone())
        .collect();
    let default = role_file("default");
    for l in [3, 15, 27] {
        let roles: Vec<Vec<f32>> = names
            .iter()
            .map(|n| role_file(n).layers[&l].clone())
            .collect();
        let want = persona_core::axis::assistant_axis(&default.layers[&l], &roles);
        let got = &axis.layers[&l];
        let err = persona_core::norm(&persona_core::sub(got, &want)) / persona_core::norm(&want);
        assert!(err < 1e-6, "layer {l}: {err}");
    }
    persona_testkit::assert_files(
        dir.path(),
        &[
            "axis.json",
            "axis_variance.svg",
            "axis_pc1_pc2.svg",
            "axis_roles.svg",
        ],
    );

    let rep = persona_pipelines::report::write_report(dir.path()).unwrap();
    assert_eq!(rep.sections, vec!["axis"]);

    let cache = || std::fs::read_to_string(dir.path().join("answers_cache.jsonl")).unwrap();
    let before = cache();
    let again = build().unwrap();
    assert_eq!(cache(), before, "a rerun regenerated cached rollouts");
    assert_eq!(
        again.layers[15].axis_pc1_cosine,
        r.layers[15].axis_pc1_cosine
    );
}
