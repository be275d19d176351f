//! The second real model, Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, `qwen2`: q/k/v biases, NeoX
//! RoPE, 151 936-token vocabulary), against llama.cpp. It is fetched by
//! `persona setup --model qwen2.5-1.5b`; without it this test says so and fails.

use persona_engine::{Engine, ForwardRequest, LoadOptions};
use persona_testkit::*;

#[test]
fn qwen_teacher_forced_top1_matches_llamacpp() {
    let path = qwen_model_path()
        .expect("the Qwen2.5-1.5B model is not set up: run `persona setup --model qwen2.5-1.5b`");
    let engine = Engine::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(engine.config().family, persona_engine::Family::Qwen2);
    let reference = reference("greedy_llamacpp_qwen2.5-1.5b.json");
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
            "{name}: teacher-forced top-1 agreement {agree}/{}",
            greedy.len()
        );
        assert!(
            agree * 100 >= 90 * greedy.len(),
            "{name}: {agree}/{}",
            greedy.len()
        );
    }
}
