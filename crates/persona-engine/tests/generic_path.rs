//! The device-generic path (candle ops only: what runs on GPUs) on the CPU, with the CPU
//! kernels switched off: same tokens as llama.cpp, same activations as the kernel path.

mod common;

use common::*;
use persona_engine::{CaptureSpec, ForwardRequest, HookSite, TokenSequence, WeightMode};

#[test]
fn generic_path_agrees_with_llamacpp_and_the_kernel_path() {
    let kernels = load(WeightMode::F32);
    // This test binary is its own process: switching the kernels off here affects nothing else.
    std::env::set_var("PERSONA_GENERIC_KERNELS", "1");
    std::env::set_var("PERSONA_NO_AMX", "1");
    let generic = load(WeightMode::F32);
    let reference = reference("greedy_llamacpp.json");
    let p = &reference["prompts"][0];
    let prompt = ids(&p["prompt_ids"]);
    let greedy = ids(&p["greedy_ids"]);
    let mut all = prompt.clone();
    all.extend(&greedy);
    let seq = TokenSequence {
        ids: all,
        prompt_len: prompt.len(),
    };
    let n = generic.config().n_layers;
    let req = ForwardRequest {
        captures: CaptureSpec::response_means(0..n),
        scores: true,
        ..Default::default()
    };
    let a = generic
        .forward_batch(std::slice::from_ref(&seq), &req, &mut |_| {})
        .unwrap()
        .remove(0);
    let b = kernels
        .forward_batch(std::slice::from_ref(&seq), &req, &mut |_| {})
        .unwrap()
        .remove(0);
    let agree = a
        .scores
        .iter()
        .zip(&greedy)
        .filter(|(s, g)| s.top[0].0 == **g)
        .count();
    eprintln!("generic path: teacher-forced top-1 agreement {agree}/128");
    assert!(agree >= 120);
    for l in 0..n {
        let site = HookSite::resid_post(l);
        let r = rel_err(
            a.captures.get(site).unwrap().means[0].as_ref().unwrap(),
            b.captures.get(site).unwrap().means[0].as_ref().unwrap(),
        );
        assert!(
            r < 1e-4,
            "layer {l}: generic and kernel paths differ by {r}"
        );
    }
}
