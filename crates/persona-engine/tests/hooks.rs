//! Hooks on the real default model: captures agree with each other, interventions do what
//! docs/design.md's formulas say, batching and padding change nothing.

use persona_engine::{
    CaptureSpec, ForwardRequest, GenerateRequest, HookPoint, HookSite, Intervention,
    InterventionKind, Message, SamplingParams, Span, Tensor, TokenSequence,
};
use persona_testkit::*;

fn chat(engine: &persona_engine::Engine, system: &str, user: &str, answer: &str) -> TokenSequence {
    engine
        .chat_with_response(
            &[Message::new("system", system), Message::new("user", user)],
            answer,
        )
        .unwrap()
}

fn samples(engine: &persona_engine::Engine) -> Vec<TokenSequence> {
    vec![
        chat(
            engine,
            "You are a pirate.",
            "How are you today?",
            " Arr, I be fine, matey!",
        ),
        chat(engine, "You are terse.", "Name a colour.", " Blue."),
        chat(
            engine,
            "You are a helpful assistant.",
            "Explain rain in one sentence.",
            " Rain forms when water vapour condenses into droplets heavy enough to fall.",
        ),
    ]
}

fn full_capture(site: HookSite) -> CaptureSpec {
    CaptureSpec {
        sites: vec![site],
        means: vec![Span::Generated, Span::All],
        last_prompt: true,
        full: true,
        ..Default::default()
    }
}

fn vector(engine: &persona_engine::Engine, seed: u32) -> Tensor {
    let d = engine.config().d_model;
    let v: Vec<f32> = (0..d)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(seed)) % 1000) as f32 / 100.0 - 5.0
        })
        .collect();
    Tensor::from_vec(v, d, engine.device()).unwrap()
}

/// Means, last-prompt states and projections are consistent with the full per-token capture.
#[test]
fn captures_agree_with_full_activations() {
    let engine = engine();
    let site = HookSite::resid_post(12);
    let seqs = samples(engine);
    let v = vector(engine, 1);
    let d = engine.config().d_model;
    let mut spec = full_capture(site);
    spec.projections = Some(v.reshape((1, d)).unwrap());
    let req = ForwardRequest {
        captures: spec,
        ..Default::default()
    };
    let outs = engine.forward_batch(&seqs, &req, &mut |_| {}).unwrap();
    let vv: Vec<f32> = v.to_vec1().unwrap();
    let norm = vv.iter().map(|x| x * x).sum::<f32>().sqrt();
    for (s, o) in seqs.iter().zip(&outs) {
        let c = o.captures.get(site).unwrap();
        assert_eq!(c.full.len(), s.ids.len());
        let resp = &c.full[s.prompt_len..];
        let mean: Vec<f32> = (0..d)
            .map(|j| resp.iter().map(|r| r[j]).sum::<f32>() / resp.len() as f32)
            .collect();
        assert!(rel_err(c.means[0].as_ref().unwrap(), &mean) < 1e-5);
        assert_eq!(c.counts, vec![resp.len(), s.ids.len()]);
        assert_eq!(c.last_prompt.as_ref().unwrap(), &c.full[s.prompt_len - 1]);
        for (row, p) in c.full.iter().zip(&c.projections) {
            let want = row.iter().zip(&vv).map(|(a, b)| a * b).sum::<f32>() / norm;
            assert!(
                (p[0] - want).abs() <= 1e-3 * (1.0 + want.abs()),
                "{} vs {want}",
                p[0]
            );
        }
    }
}

/// A sequence's captures and scores do not depend on what else is in its batch.
#[test]
fn batching_and_padding_change_nothing() {
    let engine = engine();
    let site = HookSite::resid_post(20);
    let seqs = samples(engine);
    let req = ForwardRequest {
        captures: full_capture(site),
        scores: true,
        ..Default::default()
    };
    let together = engine.forward_batch(&seqs, &req, &mut |_| {}).unwrap();
    for (i, s) in seqs.iter().enumerate() {
        let alone = engine
            .forward_batch(std::slice::from_ref(s), &req, &mut |_| {})
            .unwrap()
            .remove(0);
        let (a, b) = (
            alone.captures.get(site).unwrap(),
            together[i].captures.get(site).unwrap(),
        );
        let r = rel_err(a.means[0].as_ref().unwrap(), b.means[0].as_ref().unwrap());
        assert!(r < 1e-5, "sequence {i}: relative difference {r:e}");
        for (x, y) in alone.scores.iter().zip(&together[i].scores) {
            assert!((x.logprob - y.logprob).abs() < 1e-3, "sequence {i}");
        }
    }
}

/// Adding a zero vector everywhere leaves logits bit-identical, in a forward pass and during
/// generation.
#[test]
fn zero_intervention_is_bit_identical() {
    let engine = engine();
    let seqs = samples(engine);
    let n_layers = engine.config().n_layers;
    let zero = Tensor::zeros(engine.config().d_model, candle_dtype(), engine.device()).unwrap();
    let zeros: Vec<Intervention> = (0..n_layers)
        .map(|l| Intervention::add(HookSite::resid_post(l), zero.clone(), 1.0, Span::All))
        .collect();
    let plain = ForwardRequest {
        scores: true,
        top_k: 3,
        ..Default::default()
    };
    let steered = ForwardRequest {
        interventions: zeros.clone(),
        ..plain.clone()
    };
    let a = engine.forward_batch(&seqs, &plain, &mut |_| {}).unwrap();
    let b = engine.forward_batch(&seqs, &steered, &mut |_| {}).unwrap();
    for (x, y) in a.iter().zip(&b) {
        for (s, t) in x.scores.iter().zip(&y.scores) {
            assert_eq!(s.logit.to_bits(), t.logit.to_bits());
            assert_eq!(s.top, t.top);
        }
    }
    let prompts: Vec<Vec<u32>> = seqs
        .iter()
        .map(|s| s.ids[..s.prompt_len].to_vec())
        .collect();
    let gen = |ivs: Vec<Intervention>| {
        engine
            .generate(
                &GenerateRequest {
                    prompts: prompts.clone(),
                    sampling: SamplingParams {
                        max_tokens: 24,
                        ..Default::default()
                    },
                    interventions: ivs,
                    ..Default::default()
                },
                &mut |_| {},
            )
            .unwrap()
    };
    let (g0, g1) = (gen(Vec::new()), gen(zeros));
    for (x, y) in g0.iter().zip(&g1) {
        assert_eq!(x.generated_ids, y.generated_ids);
    }
}

fn candle_dtype() -> persona_engine::DType {
    persona_engine::DType::F32
}

/// Add, cap and ablate measured at the hook site they act on.
#[test]
fn interventions_follow_their_formulas() {
    let engine = engine();
    let layer = 10;
    let site = HookSite::resid_post(layer);
    let seqs = samples(engine);
    let v = vector(engine, 7);
    let vv: Vec<f32> = v.to_vec1().unwrap();
    let norm = vv.iter().map(|x| x * x).sum::<f32>().sqrt();
    let u: Vec<f32> = vv.iter().map(|x| x / norm).collect();
    let run = |ivs: Vec<Intervention>| {
        engine
            .forward_batch(
                &seqs,
                &ForwardRequest {
                    captures: full_capture(site),
                    interventions: ivs,
                    ..Default::default()
                },
                &mut |_| {},
            )
            .unwrap()
    };
    let base = run(Vec::new());
    let proj = |row: &[f32]| row.iter().zip(&u).map(|(a, b)| a * b).sum::<f32>();

    // Add on generated positions only: exactly α·v there, nothing elsewhere.
    let added = run(vec![Intervention::add(
        site,
        v.clone(),
        0.5,
        Span::Generated,
    )]);
    for ((s, b), a) in seqs.iter().zip(&base).zip(&added) {
        let (b, a) = (b.captures.get(site).unwrap(), a.captures.get(site).unwrap());
        for (pos, (rb, ra)) in b.full.iter().zip(&a.full).enumerate() {
            for ((x, y), w) in rb.iter().zip(ra).zip(&vv) {
                let want = if pos >= s.prompt_len { x + 0.5 * w } else { *x };
                assert!((y - want).abs() <= 1e-3 * (1.0 + want.abs()), "pos {pos}");
            }
        }
    }

    // Cap floor at the median projection: nothing is left below τ (position 0 left out, it
    // carries the model's massive activation).
    let mut projs: Vec<f32> = base
        .iter()
        .flat_map(|o| {
            o.captures.get(site).unwrap().full[1..]
                .iter()
                .map(|r| proj(r))
                .collect::<Vec<_>>()
        })
        .collect();
    projs.sort_by(f32::total_cmp);
    let tau = projs[projs.len() / 2];
    let capped = run(vec![Intervention {
        site,
        kind: InterventionKind::CapFloor {
            direction: v.clone(),
            tau,
        },
        span: Span::AllButFirst,
        sequences: None,
    }]);
    for (b, c) in base.iter().zip(&capped) {
        let (b, c) = (b.captures.get(site).unwrap(), c.captures.get(site).unwrap());
        for (rb, rc) in b.full.iter().zip(&c.full).skip(1) {
            let (pb, pc) = (proj(rb), proj(rc));
            assert!(pc >= tau - 1e-2 * (1.0 + tau.abs()), "{pc} < {tau}");
            if pb >= tau {
                assert!((pb - pc).abs() < 1e-3 * (1.0 + pb.abs()));
            }
        }
    }

    // Ablation leaves no component along v.
    let ablated = run(vec![Intervention {
        site,
        kind: InterventionKind::Ablate {
            direction: v.clone(),
        },
        span: Span::All,
        sequences: None,
    }]);
    for o in &ablated {
        for r in &o.captures.get(site).unwrap().full {
            let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!(proj(r).abs() < 1e-4 * n.max(1.0), "{}", proj(r));
        }
    }
}

/// resid_post of block l is resid_pre of block l + 1; resid_mid = resid_pre + attn_out.
#[test]
fn hook_points_chain_within_and_across_blocks() {
    let engine = engine();
    let seqs = samples(engine);
    let sites = vec![
        HookSite::resid_post(4),
        HookSite {
            layer: 5,
            point: HookPoint::ResidPre,
        },
        HookSite {
            layer: 5,
            point: HookPoint::AttnOut,
        },
        HookSite {
            layer: 5,
            point: HookPoint::ResidMid,
        },
        HookSite {
            layer: 5,
            point: HookPoint::MlpOut,
        },
        HookSite::resid_post(5),
    ];
    let req = ForwardRequest {
        captures: CaptureSpec {
            sites: sites.clone(),
            full: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let out = engine
        .forward_batch(&seqs[..1], &req, &mut |_| {})
        .unwrap()
        .remove(0);
    let get = |i: usize| &out.captures.get(sites[i]).unwrap().full;
    assert_eq!(get(0), get(1));
    for t in 0..get(0).len() {
        for j in 0..engine.config().d_model {
            let mid = get(1)[t][j] + get(2)[t][j];
            assert!((mid - get(3)[t][j]).abs() <= 1e-4 * (1.0 + mid.abs()));
            let post = get(3)[t][j] + get(4)[t][j];
            assert!((post - get(5)[t][j]).abs() <= 1e-4 * (1.0 + post.abs()));
        }
    }
}

/// Prompts of different lengths generated together give what each gives alone, and steering
/// one sequence of the batch leaves the others alone.
#[test]
fn batched_generation_matches_single_and_steers_per_sequence() {
    let engine = engine();
    let prompts: Vec<Vec<u32>> = samples(engine)
        .iter()
        .map(|s| s.ids[..s.prompt_len].to_vec())
        .collect();
    let sampling = SamplingParams {
        max_tokens: 16,
        ignore_stop: true,
        ..Default::default()
    };
    let req = |ps: Vec<Vec<u32>>, ivs: Vec<Intervention>| GenerateRequest {
        prompts: ps,
        sampling: sampling.clone(),
        interventions: ivs,
        ..Default::default()
    };
    let together = engine
        .generate(&req(prompts.clone(), vec![]), &mut |_| {})
        .unwrap();
    for (i, p) in prompts.iter().enumerate() {
        let alone = engine
            .generate(&req(vec![p.clone()], vec![]), &mut |_| {})
            .unwrap();
        assert_eq!(
            alone[0].generated_ids, together[i].generated_ids,
            "prompt {i}"
        );
    }
    let mut steer = Intervention::add(HookSite::resid_post(8), vector(engine, 3), 4.0, Span::All);
    steer.sequences = Some(vec![1]);
    let steered = engine
        .generate(&req(prompts.clone(), vec![steer]), &mut |_| {})
        .unwrap();
    assert_eq!(steered[0].generated_ids, together[0].generated_ids);
    assert_eq!(steered[2].generated_ids, together[2].generated_ids);
    assert_ne!(steered[1].generated_ids, together[1].generated_ids);
}

/// Sampling is reproducible from its seed and differs across seeds.
#[test]
fn sampled_generation_is_seeded() {
    let engine = engine();
    let p = samples(engine)[0].ids[..samples(engine)[0].prompt_len].to_vec();
    let gen = |seed| {
        engine
            .generate(
                &GenerateRequest {
                    prompts: vec![p.clone(), p.clone()],
                    sampling: SamplingParams {
                        temperature: 1.0,
                        top_p: 0.95,
                        seed,
                        max_tokens: 24,
                        ignore_stop: true,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                &mut |_| {},
            )
            .unwrap()
    };
    let (a, b, c) = (gen(5), gen(5), gen(6));
    assert_eq!(a[0].generated_ids, b[0].generated_ids);
    assert_ne!(a[0].generated_ids, c[0].generated_ids);
    // Two sequences of one batch draw independently.
    assert_ne!(a[0].generated_ids, a[1].generated_ids);
}
