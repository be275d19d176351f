//! SmolLM2-135M-Instruct: the tokenizer and template built from the default GGUF must give
//! llama.cpp's ids and HF's prompt bytes on every reference string.

use std::sync::OnceLock;

use persona_testkit::tokenizer::{messages, read_gguf, smollm_gguf, str_of, GgufTokenizerMeta};
use persona_testkit::{ids, reference};
use persona_tokenizer::{ChatTemplate, Message, Tokenizer};

fn model() -> &'static GgufTokenizerMeta {
    static MODEL: OnceLock<GgufTokenizerMeta> = OnceLock::new();
    MODEL.get_or_init(|| read_gguf(&smollm_gguf()))
}

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| model().tokenizer())
}

/// Every string of the three reference files, for the tokenizer.json round trip.
fn all_reference_strings() -> Vec<String> {
    let tokenize = reference("tokenize_llamacpp.json");
    let greedy = reference("greedy_llamacpp.json");
    let workload = reference("extract_workload/workload.json");
    let cases = tokenize["cases"].as_array().unwrap();
    let prompts = greedy["prompts"].as_array().unwrap();
    let samples = workload["pos"]
        .as_array()
        .unwrap()
        .iter()
        .chain(workload["neg"].as_array().unwrap());
    cases
        .iter()
        .map(|c| &c["text"])
        .chain(prompts.iter().map(|p| &p["prompt_text"]))
        .chain([&greedy["prompt_eval_text"]])
        .chain(samples.flat_map(|s| [&s["prompt"], &s["text"]]))
        .map(|v| str_of(v).to_owned())
        .collect()
}

#[test]
fn vocabulary_facts() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert!(!tok.add_bos());
    // <|im_end|> (the EOS) and <|endoftext|> both end a turn.
    assert_eq!(tok.eos_ids(), vec![0, 2]);
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tok.id_to_piece(198).as_deref(), Some("Ċ"));
    assert_eq!(tok.id_to_piece(49152), None);
}

#[test]
fn llamacpp_tokenize_cases() {
    let tok = tokenizer();
    let reference = reference("tokenize_llamacpp.json");
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let name = str_of(&case["name"]);
        let text = str_of(&case["text"]);
        let want = ids(&case["ids"]);
        let got = tok.encode(text).unwrap();
        assert_eq!(got, want, "ids of case {name}");
        let pieces: Vec<String> = serde_json::from_value(case["pieces"].clone()).unwrap();
        assert_eq!(tok.pieces(&got), pieces, "pieces of case {name}");
        assert_eq!(
            tok.decode(&got, false).unwrap(),
            text,
            "decode of case {name}"
        );
    }
}

#[test]
fn engine_notes_golden_ids() {
    let tok = tokenizer();
    assert_eq!(
        tok.encode("Hello, world! How are you?").unwrap(),
        [19556, 28, 905, 17, 1073, 359, 346, 47]
    );
    assert_eq!(
        tok.encode("The year 2024 had 366 days.").unwrap(),
        [504, 713, 216, 34, 32, 34, 36, 761, 216, 35, 38, 38, 2009, 30]
    );
    let prompt = model()
        .template()
        .render(
            &[
                Message::new("system", "You are a pirate."),
                Message::new("user", "What is the capital of France?"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        tok.encode(&prompt).unwrap(),
        [
            1, 9690, 198, 2683, 359, 253, 30820, 30, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575,
            282, 4649, 47, 2, 198, 1, 520, 9531, 198
        ]
    );
    // Special tokens are dropped on request, and only then.
    let ids = tok.encode("<|im_start|>user\nHi<|im_end|>").unwrap();
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\nHi");
}

#[test]
fn greedy_prompts_render_and_tokenize() {
    let tok = tokenizer();
    let template = model().template();
    let greedy = reference("greedy_llamacpp.json");
    assert_eq!(model().chat_template, str_of(&greedy["chat_template"]));
    let prompts = greedy["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 3);
    for (i, p) in prompts.iter().enumerate() {
        let text = template.render(&messages(&p["messages"]), true).unwrap();
        assert_eq!(text, str_of(&p["prompt_text"]), "prompt_text of prompt {i}");
        assert_eq!(
            tok.encode(&text).unwrap(),
            ids(&p["prompt_ids"]),
            "ids of prompt {i}"
        );
    }
    let eval_ids = tok.encode(str_of(&greedy["prompt_eval_text"])).unwrap();
    assert_eq!(eval_ids.len(), 592);
    assert_eq!(eval_ids[..512], ids(&greedy["prompt_eval_ids"])[..]);
}

#[test]
fn extraction_workload() {
    let tok = tokenizer();
    let template = model().template();
    let workload = reference("extract_workload/workload.json");
    assert_eq!(model().chat_template, str_of(&workload["chat_template"]));
    let mut n = 0;
    for side in ["pos", "neg"] {
        let system = str_of(&workload[format!("{side}_system")]);
        for (i, s) in workload[side].as_array().unwrap().iter().enumerate() {
            let chat = [
                Message::new("system", system),
                Message::new("user", str_of(&s["question"])),
            ];
            let prompt = template.render(&chat, true).unwrap();
            assert_eq!(prompt, str_of(&s["prompt"]), "{side}[{i}] prompt");
            let text = prompt.clone() + str_of(&s["response"]);
            assert_eq!(text, str_of(&s["text"]), "{side}[{i}] text");
            let input_ids = tok.encode(&text).unwrap();
            assert_eq!(input_ids, ids(&s["input_ids"]), "{side}[{i}] input_ids");
            let prompt_len = tok.encode(&prompt).unwrap().len();
            assert_eq!(
                prompt_len as u64,
                s["prompt_len"].as_u64().unwrap(),
                "{side}[{i}] prompt_len"
            );
            n += 1;
        }
    }
    assert_eq!(n, 64);
}

#[test]
fn tokenizer_json_round_trip() {
    let tok = tokenizer();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("tokenizer.json");
    std::fs::write(&json_path, tok.to_tokenizer_json().unwrap()).unwrap();
    let config = tok
        .to_tokenizer_config_json(Some(&model().chat_template))
        .unwrap();
    let config_path = dir.path().join("tokenizer_config.json");
    std::fs::write(&config_path, config).unwrap();

    let back = Tokenizer::from_tokenizer_json(&json_path).unwrap();
    assert_eq!(back.vocab_size(), tok.vocab_size());
    assert_eq!(back.bos_id(), tok.bos_id());
    assert_eq!(back.eos_id(), tok.eos_id());
    assert_eq!(back.add_bos(), tok.add_bos());
    assert_eq!(back.eos_ids(), tok.eos_ids());
    let strings = all_reference_strings();
    assert_eq!(strings.len(), 6 + 3 + 1 + 128);
    for s in &strings {
        let want = tok.encode(s).unwrap();
        assert_eq!(back.encode(s).unwrap(), want, "ids of {s:?}");
        assert_eq!(back.decode(&want, false).unwrap(), *s);
    }

    // The exported config carries the template and the special-token strings.
    let template = ChatTemplate::from_tokenizer_config(&config_path).unwrap();
    assert_eq!(template.source(), model().chat_template);
    let chat = [Message::new("user", "Hi")];
    assert_eq!(
        template.render(&chat, true).unwrap(),
        model().template().render(&chat, true).unwrap()
    );
}
