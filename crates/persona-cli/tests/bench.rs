//! `persona bench --sections training` on the default model: our trainer's figures (fast and
//! reference products) in the JSON fields scripts rely on, and a clear error when the
//! PyTorch + PEFT peer's venv is missing. The peer itself needs torch (~3 GB) and runs in
//! `persona bench` by hand, not here.

use std::process::{Command, Output};

fn bench(args: &[&str], peers_venv: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_persona"))
        .args(["bench", "--sections", "training", "--train-steps", "1"])
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .env("PERSONA_SHARED", persona_testkit::shared())
        .env("PEERS_VENV", peers_venv)
        .output()
        .expect("the persona binary runs")
}

#[test]
fn training_throughput_is_measured_for_both_product_paths() {
    let args = ["--peers", "none", "--format", "json"];
    let v = persona_testkit::cli::success_json(&bench(&args, "/nonexistent"), "persona", &args);
    let f = &v["figures"];
    for prefix in ["train_", "train_reference_"] {
        for key in ["tok_s", "response_tok_s", "step_s"] {
            let x = f[format!("{prefix}{key}")].as_f64().unwrap();
            assert!(x > 0.0, "{prefix}{key} = {x}");
        }
        // The first step is the untrained model's loss on chat answers: a few nats.
        let first = f[format!("{prefix}first_loss")].as_f64().unwrap();
        assert!((1.0..8.0).contains(&first), "{prefix}first_loss = {first}");
    }
    // Both paths start from the same factors: the same loss up to bf16 rounding.
    let (fast, reference) = (
        f["train_first_loss"].as_f64().unwrap(),
        f["train_reference_first_loss"].as_f64().unwrap(),
    );
    assert!(
        (fast - reference).abs() < 0.02 * reference,
        "{fast} vs {reference}"
    );
    assert!(v["ratios"]["train_vs_reference_products"].as_f64().unwrap() > 0.0);
    assert!(
        v["figures"].get("prompt_tok_s").is_none(),
        "inference was not asked for"
    );
}

#[test]
fn a_missing_peft_venv_is_a_clear_error() {
    let args = ["--peers", "run"];
    let out = bench(&args, "/nonexistent/venv");
    persona_testkit::cli::failure(
        &out,
        &args,
        &[
            "PyTorch + PEFT",
            "/nonexistent/venv/bin/python",
            "setup_train_peer.sh",
        ],
    );
}
