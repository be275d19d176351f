//! The Hugging Face folder path: a folder written from the default model loads and gives the
//! same tokens, template and activations as the GGUF it came from.

use persona_engine::{
    CaptureSpec, ConvertDType, Engine, ForwardRequest, LoadOptions, Message, TokenSequence,
    WeightMode,
};
use persona_testkit::*;
use std::path::Path;

/// Why loading `path` fails.
fn load_error(path: &Path) -> String {
    Engine::load(path, &LoadOptions::default())
        .err()
        .expect("the load fails")
        .to_string()
}

/// Replaces `from` with `to` in the `config.json` of the HF folder `folder`.
fn edit_config(folder: &Path, from: &str, to: &str) {
    let path = folder.join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

#[test]
fn hf_folder_round_trip_gives_the_same_activations() {
    let gguf = load(WeightMode::F32);
    let dir = tempfile::tempdir().unwrap();
    gguf.write_hf_folder(dir.path(), ConvertDType::F32).unwrap();
    persona_testkit::assert_files(
        dir.path(),
        &[
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "model.safetensors",
        ],
    );
    let hf = Engine::load(
        dir.path(),
        &LoadOptions {
            weights: WeightMode::F32,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(hf.config().n_layers, gguf.config().n_layers);
    let msgs = [
        Message::new("system", "You are a cruel assistant."),
        Message::new(
            "user",
            "How should I treat a coworker who made a mistake? 12345",
        ),
    ];
    assert_eq!(
        hf.render_chat(&msgs, true).unwrap(),
        gguf.render_chat(&msgs, true).unwrap()
    );
    let a = gguf
        .chat_with_response(&msgs, " Blame them loudly, in front of everyone.")
        .unwrap();
    let b = hf
        .chat_with_response(&msgs, " Blame them loudly, in front of everyone.")
        .unwrap();
    assert_eq!(a, b);
    let n = gguf.config().n_layers;
    let req = ForwardRequest {
        captures: CaptureSpec::response_means(0..n),
        scores: true,
        ..Default::default()
    };
    let run = |e: &Engine, s: &TokenSequence| {
        e.forward_batch(std::slice::from_ref(s), &req, &mut |_| {})
            .unwrap()
            .remove(0)
    };
    let (x, y) = (run(&gguf, &a), run(&hf, &b));
    let mut worst: f64 = 0.0;
    for l in 0..n {
        let site = persona_engine::HookSite::resid_post(l);
        let (u, v) = (
            x.captures.get(site).unwrap().means[0].as_ref().unwrap(),
            y.captures.get(site).unwrap().means[0].as_ref().unwrap(),
        );
        worst = worst.max(rel_err(v, u));
    }
    eprintln!("HF folder vs GGUF: max relative difference of response means {worst:.2e}");
    assert!(worst < 1e-4, "{worst}");
    for (s, t) in x.scores.iter().zip(&y.scores) {
        assert_eq!(s.top[0].0, t.top[0].0);
        assert!((s.logprob - t.logprob).abs() < 1e-3);
    }
}

#[test]
fn bad_model_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    let e = load_error(&missing);
    assert!(
        e.contains("nope.gguf") && e.contains("persona setup"),
        "{e}"
    );

    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"definitely not a model").unwrap();
    let e = load_error(&junk);
    assert!(e.contains("junk.gguf") && e.contains("GGUF"), "{e}");

    let empty = dir.path().join("folder");
    std::fs::create_dir(&empty).unwrap();
    let e = load_error(&empty);
    assert!(e.contains("safetensors"), "{e}");

    // A folder whose config names an architecture we do not run.
    let gguf = load(WeightMode::F32);
    let conv = dir.path().join("conv");
    gguf.write_hf_folder(&conv, ConvertDType::BF16).unwrap();
    edit_config(
        &conv,
        r#""num_attention_heads": 9"#,
        r#""num_attention_heads": 0"#,
    );
    let e = load_error(&conv);
    assert!(e.contains("num_attention_heads is 0"), "{e}");
    edit_config(
        &conv,
        r#""num_attention_heads": 0"#,
        r#""num_attention_heads": 9"#,
    );
    edit_config(&conv, r#""llama""#, r#""gpt_neox""#);
    let e = load_error(&conv);
    assert!(e.contains("gpt_neox") && e.contains("supported"), "{e}");
    std::fs::write(conv.join("config.json"), "{ not json").unwrap();
    let e = load_error(&conv);
    assert!(e.contains("config.json") && e.contains("JSON"), "{e}");
}

#[test]
fn mismatched_truncated_and_empty_model_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let e = load_error(&empty);
    assert!(
        e.contains("empty.gguf") && e.contains("empty (0 bytes)"),
        "{e}"
    );

    let gguf = load(WeightMode::F32);
    let bytes = std::fs::read(default_model_path()).unwrap();
    for (cut, needle) in [(1000, "truncated or corrupt"), (20_000_000, "truncated")] {
        let part = dir.path().join("part.gguf");
        std::fs::write(&part, &bytes[..cut]).unwrap();
        let e = load_error(&part);
        assert!(
            e.contains("part.gguf") && e.contains(needle) && e.contains("download it again"),
            "{e}"
        );
        assert!(!e.contains("failed to fill whole buffer"), "{e}");
    }

    // A Hugging Face folder whose config.json disagrees with its weights.
    let conv = dir.path().join("conv");
    gguf.write_hf_folder(&conv, ConvertDType::BF16).unwrap();
    edit_config(&conv, r#""hidden_size": 576"#, r#""hidden_size": 640"#);
    let e = load_error(&conv);
    assert!(
        e.contains("config.json") && e.contains("model.layers.") && !e.contains("blk."),
        "{e}"
    );

    // Converting onto a file.
    let file = dir.path().join("a_file");
    std::fs::write(&file, b"mine").unwrap();
    let e = gguf
        .write_hf_folder(&file, ConvertDType::F32)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("a_file") && e.contains("is a file") && !e.contains("cannot read"),
        "{e}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
}
