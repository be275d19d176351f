//! Forked-cache continuations agree with teacher-forcing each continuation on its own.

use persona_engine::{ForwardRequest, WeightMode};
use persona_testkit::*;

fn check(mode: WeightMode, tolerance: f32) {
    let engine = load(mode);
    let reference = reference("greedy_llamacpp.json");
    let p = &reference["prompts"][1];
    let prompt = ids(&p["prompt_ids"]);
    let greedy = ids(&p["greedy_ids"]);
    let continuations: Vec<Vec<u32>> = vec![
        greedy[..3].to_vec(),
        vec![greedy[0], 28, 29],
        vec![1000, 2000, 3000],
        vec![greedy[2], greedy[1], greedy[0]],
    ];
    let branches = engine
        .branch_logprobs(&prompt, &mut |_| continuations.clone())
        .unwrap();
    assert_eq!(branches.continuations, continuations);
    // Position k: the distribution after the continuation's first k tokens.
    let forked: Vec<Vec<&Vec<f32>>> = branches
        .after
        .iter()
        .map(|a| std::iter::once(&branches.first).chain(a).collect())
        .collect();
    let req = ForwardRequest {
        scores: true,
        ..Default::default()
    };
    let mut worst = 0f32;
    for (c, dists) in continuations.iter().zip(&forked) {
        assert_eq!(dists.len(), c.len() + 1);
        let out = run_one(&engine, &forced(&prompt, c), &req);
        for (k, score) in out.scores.iter().enumerate() {
            let ours = dists[k][c[k] as usize];
            // Relative to the log-probability's size: rare tokens sit far out in the tail.
            worst = worst.max((ours - score.logprob).abs() / score.logprob.abs().max(1.0));
            let top = dists[k]
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0 as u32;
            assert_eq!(top, score.top[0].0, "continuation {c:?} position {k}");
        }
        let mass: f64 = dists[c.len()].iter().map(|&l| (l as f64).exp()).sum();
        assert!((mass - 1.0).abs() < 1e-3, "probabilities sum to {mass}");
    }
    eprintln!(
        "{mode:?}: forked continuations vs teacher-forced, max relative |Δ logprob| {worst:.2e}"
    );
    assert!(worst < tolerance, "max |Δ logprob| {worst}");
}

#[test]
fn forked_continuations_match_teacher_forcing() {
    check(WeightMode::F32, 1e-3);
    // The default layout quantizes activations to int8 on decode steps (bf16 on prompts):
    // the same precision gap as against llama.cpp (a few tenths of a logit on rare tokens).
    check(WeightMode::Auto, 0.25);
}

#[test]
fn continuations_of_unequal_length_are_refused() {
    let err = engine()
        .branch_logprobs(&[1, 2, 3], &mut |_| vec![vec![4], vec![5, 6]])
        .unwrap_err()
        .to_string();
    assert!(err.contains("same length"), "{err}");
}
