//! The Qwen2.5-Coder models (Q4_K_M, `qwen2`: q/k/v biases, NeoX RoPE, 151 936-token
//! vocabulary) against llama.cpp: Qwen2.5-Coder-1.5B-Instruct and -0.5B-Instruct. They are
//! fetched by `persona setup --model qwen2.5-1.5b` / `qwen2.5-0.5b`; without one its test says
//! so and fails.

use persona_engine::{Engine, ForwardRequest, LoadOptions};
use persona_testkit::*;

/// Tokenization of llama.cpp's raw strings and chat prompts identical, and teacher-forced on
/// llama.cpp's greedy tokens, the engine's top-1 agrees with them at ≥ 90 % of the steps.
fn teacher_forced_top1_matches_llamacpp(model: QwenModel) {
    let engine = Engine::load(&model.path(), &LoadOptions::default()).unwrap();
    let config = engine.config();
    assert_eq!(config.family, persona_engine::Family::Qwen2);
    assert_eq!(
        (config.n_layers, config.d_model),
        (model.n_layers, model.d_model)
    );
    let reference = model.reference.read();
    for case in reference["tokenize"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            engine.tokenizer().encode(text).unwrap(),
            ids(&case["ids"]),
            "{text}"
        );
    }
    for (name, p) in reference["prompts"].as_object().unwrap() {
        let messages: Vec<persona_engine::Message> =
            serde_json::from_value(p["messages"].clone()).unwrap();
        let prompt = engine.chat_prompt_ids(&messages).unwrap();
        assert_eq!(prompt, ids(&p["prompt_ids"]), "{name}: prompt ids");
        let greedy = ids(&p["greedy_ids"]);
        let req = ForwardRequest {
            scores: true,
            ..Default::default()
        };
        let out = run_one(&engine, &forced(&prompt, &greedy), &req);
        let agree = top1_agreement(&out, &greedy);
        eprintln!(
            "{} {name}: teacher-forced top-1 agreement {agree}/{}",
            model.name,
            greedy.len()
        );
        assert!(
            agree * 100 >= 90 * greedy.len(),
            "{} {name}: {agree}/{}",
            model.name,
            greedy.len()
        );
    }
}

#[test]
fn qwen_teacher_forced_top1_matches_llamacpp() {
    teacher_forced_top1_matches_llamacpp(QWEN_1_5B);
}

#[test]
fn qwen05_teacher_forced_top1_matches_llamacpp() {
    teacher_forced_top1_matches_llamacpp(QWEN_0_5B);
}
