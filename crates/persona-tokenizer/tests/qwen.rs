//! The Qwen2.5-Coder models (`qwen2` pre-tokenizer, 151936 tokens, a template with tool
//! branches), 1.5B and 0.5B Instruct: llama.cpp's ids for chat prompts and raw strings. Each
//! needs its model set up (`persona setup --model qwen2.5-1.5b` / `qwen2.5-0.5b`) and fails
//! without it.

use persona_testkit::tokenizer::{messages, read_gguf, str_of};
use persona_testkit::{ids, QwenModel, QWEN_0_5B, QWEN_1_5B};
use persona_tokenizer::{ChatTemplate, Message, Tokenizer};

#[test]
fn qwen25_coder_matches_llamacpp() {
    matches_llamacpp(QWEN_1_5B);
}

#[test]
fn qwen25_coder_05b_matches_llamacpp() {
    matches_llamacpp(QWEN_0_5B);
}

fn matches_llamacpp(qwen: QwenModel) {
    let path = qwen.path();
    let model = read_gguf(&path);
    assert_eq!(model.vocab.pre.as_deref(), Some("qwen2"));
    let tok = model.tokenizer();
    let template = model.template();
    assert_eq!(tok.vocab_size(), 151936);
    assert_eq!(tok.eos_id(), Some(151645));
    // <|endoftext|> (151643) and <|im_end|> (151645).
    assert_eq!(tok.eos_ids(), vec![151643, 151645]);
    // User-defined tokens are matched in text but are not special.
    let tool_call = tok.encode("<tool_call>").unwrap();
    assert_eq!(tool_call, [151657]);
    assert_eq!(tok.decode(&tool_call, true).unwrap(), "<tool_call>");

    let reference = qwen.reference.read();
    let mut strings = Vec::new();
    for (name, p) in reference["prompts"].as_object().unwrap() {
        let text = template.render(&messages(&p["messages"]), true).unwrap();
        assert_eq!(text, str_of(&p["prompt_text"]), "prompt_text of {name}");
        assert_eq!(
            tok.encode(&text).unwrap(),
            ids(&p["prompt_ids"]),
            "ids of {name}"
        );
        // The generated text is the greedy ids decoded without special tokens.
        let greedy = ids(&p["greedy_ids"]);
        assert_eq!(
            tok.decode(&greedy, true).unwrap(),
            str_of(&p["text"]),
            "text of {name}"
        );
        strings.push(text);
    }
    for case in reference["tokenize"].as_array().unwrap() {
        let text = str_of(&case["text"]);
        let got = tok.encode(text).unwrap();
        assert_eq!(got, ids(&case["ids"]), "ids of {text:?}");
        assert_eq!(tok.decode(&got, false).unwrap(), text);
        strings.push(text.to_owned());
    }

    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("tokenizer.json");
    std::fs::write(&json_path, tok.to_tokenizer_json().unwrap()).unwrap();
    let config_path = dir.path().join("tokenizer_config.json");
    let config = tok
        .to_tokenizer_config_json(Some(&model.chat_template))
        .unwrap();
    std::fs::write(&config_path, config).unwrap();
    let back = Tokenizer::from_tokenizer_json(&json_path).unwrap();
    assert_eq!(back.eos_ids(), tok.eos_ids());
    for s in &strings {
        assert_eq!(
            back.encode(s).unwrap(),
            tok.encode(s).unwrap(),
            "round trip of {s:?}"
        );
    }
    let back_template = ChatTemplate::from_tokenizer_config(&config_path).unwrap();
    let chat = [Message::new("user", "Hi")];
    assert_eq!(
        back_template.render(&chat, true).unwrap(),
        template.render(&chat, true).unwrap()
    );
}
