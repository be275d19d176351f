//! The device-generic path (candle ops only: what runs on GPUs) on the CPU, with the CPU
//! kernels switched off: same tokens as llama.cpp, same activations as the kernel path.

use persona_engine::{CaptureSpec, ForwardRequest, HookSite, WeightMode};
use persona_testkit::*;

#[test]
fn generic_path_agrees_with_llamacpp_and_the_kernel_path() {
    let kernels = load(WeightMode::F32);
    // This test binary is its own process: switching the kernels off here affects nothing else.
    std::env::set_var("PERSONA_GENERIC_KERNELS", "1");
    std::env::set_var("PERSONA_NO_BF16", "1");
    let generic = load(WeightMode::F32);
    let reference = reference("greedy_llamacpp.json");
    let p = &reference["prompts"][0];
    let greedy = ids(&p["greedy_ids"]);
    let seq = forced(&ids(&p["prompt_ids"]), &greedy);
    let n = generic.config().n_layers;
    let req = ForwardRequest {
        captures: CaptureSpec::response_means(0..n),
        scores: true,
        ..Default::default()
    };
    let a = run_one(&generic, &seq, &req);
    let b = run_one(&kernels, &seq, &req);
    let agree = top1_agreement(&a, &greedy);
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
