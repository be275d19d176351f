//! A hand-made byte-level vocabulary: pre-tokenizer choice, BOS handling, and every error a bad
//! GGUF vocabulary or tokenizer.json can cause. Needs no model file.

use persona_tokenizer::{GgufVocab, Tokenizer, TokenizerError};

/// GPT-2's byte → printable character table, in byte order.
fn byte_pieces() -> Vec<String> {
    let printable: Vec<u32> = (0x21..=0x7E)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut shifted = 0;
    (0..256u32)
        .map(|b| {
            let c = if printable.contains(&b) {
                b
            } else {
                shifted += 1;
                255 + shifted
            };
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

const END: u32 = 256;
const BOS: u32 = 257;
const HELLO: u32 = 265;

/// ids 0–255 bytes, 256 `<|end|>`, 257 `<s>`, then merged digits and words.
fn tiny(pre: Option<&str>) -> GgufVocab {
    let mut tokens = byte_pieces();
    tokens.extend(
        [
            "<|end|>", "<s>", "12", "123", "45", "12345", "he", "ll", "hell", "hello", "Ġhello",
        ]
        .map(String::from),
    );
    let mut token_types = vec![1; tokens.len()];
    token_types[END as usize] = 3;
    token_types[BOS as usize] = 3;
    GgufVocab {
        model: "gpt2".into(),
        pre: pre.map(String::from),
        tokens,
        merges: [
            "1 2", "12 3", "4 5", "123 45", "h e", "l l", "he ll", "hell o", "Ġ hello",
        ]
        .map(String::from)
        .to_vec(),
        token_types: Some(token_types),
        bos_id: Some(BOS),
        eos_id: Some(END),
        add_bos: false,
    }
}

fn pieces(tok: &Tokenizer, text: &str) -> Vec<String> {
    tok.pieces(&tok.encode(text).unwrap())
}

#[test]
fn pre_tokenizers_split_digits_their_way() {
    let cases: [(Option<&str>, &[&str]); 6] = [
        (Some("smollm"), &["1", "2", "3", "4", "5"]),
        (Some("qwen2"), &["1", "2", "3", "4", "5"]),
        (Some("llama-bpe"), &["123", "45"]),
        (Some("gpt-2"), &["12345"]),
        // llama.cpp's default splits digit runs into groups of three as a last step.
        (Some("default"), &["123", "45"]),
        (None, &["123", "45"]),
    ];
    for (pre, want) in cases {
        let tok = Tokenizer::from_gguf_vocab(&tiny(pre)).unwrap();
        assert_eq!(pieces(&tok, "12345"), want, "pre {pre:?}");
        assert_eq!(
            pieces(&tok, "hello hello"),
            ["hello", "Ġhello"],
            "pre {pre:?}"
        );
        let ids = tok.encode("hello<|end|>").unwrap();
        assert_eq!(ids, [HELLO, END], "pre {pre:?}");
        assert_eq!(tok.decode(&ids, false).unwrap(), "hello<|end|>");
        assert_eq!(tok.decode(&ids, true).unwrap(), "hello");
    }
}

#[test]
fn bos_is_added_only_when_asked() {
    let mut vocab = tiny(Some("smollm"));
    assert_eq!(
        Tokenizer::from_gguf_vocab(&vocab)
            .unwrap()
            .encode("hello")
            .unwrap(),
        [HELLO]
    );
    vocab.add_bos = true;
    let tok = Tokenizer::from_gguf_vocab(&vocab).unwrap();
    assert_eq!(tok.encode("hello").unwrap(), [BOS, HELLO]);
    assert_eq!(tok.encode("").unwrap(), [BOS]);

    // Exported without a tokenizer_config.json, the BOS comes from the post-processor.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, tok.to_tokenizer_json().unwrap()).unwrap();
    let back = Tokenizer::from_tokenizer_json(&path).unwrap();
    assert!(back.add_bos());
    assert_eq!(back.bos_id(), Some(BOS));
    assert_eq!(back.eos_id(), None);
    assert_eq!(
        back.encode("hello 12345").unwrap(),
        tok.encode("hello 12345").unwrap()
    );

    // With one, its add_bos_token wins.
    let config = dir.path().join("tokenizer_config.json");
    std::fs::write(
        &config,
        r#"{"add_bos_token": false, "eos_token": "<|end|>"}"#,
    )
    .unwrap();
    let back = Tokenizer::from_tokenizer_json(&path).unwrap();
    assert!(!back.add_bos());
    assert_eq!(back.eos_ids(), [END]);
    assert_eq!(back.encode("hello").unwrap(), [HELLO]);
}

fn gguf_err(vocab: &GgufVocab) -> String {
    let err = Tokenizer::from_gguf_vocab(vocab).unwrap_err();
    err.to_string()
}

#[test]
fn bad_gguf_vocabularies_are_errors() {
    let err = gguf_err(&tiny(Some("falcon")));
    assert!(
        err.contains("`falcon`")
            && err.contains("smollm")
            && err.contains("qwen2")
            && err.contains("llama-bpe"),
        "{err}"
    );
    let err = Tokenizer::from_gguf_vocab(&tiny(Some("falcon"))).unwrap_err();
    assert!(matches!(err, TokenizerError::UnknownPre { .. }), "{err:?}");

    let mut v = tiny(None);
    v.model = "llama".into();
    assert!(gguf_err(&v).contains("only \"gpt2\""));

    let mut v = tiny(None);
    v.merges.push("hello".into());
    assert!(gguf_err(&v).contains("tokenizer.ggml.merges[9]"));

    let mut v = tiny(None);
    v.merges.push("x nothere".into());
    assert!(gguf_err(&v).contains("nothere"));

    let mut v = tiny(None);
    v.token_types.as_mut().unwrap().pop();
    assert!(gguf_err(&v).contains("token_type has 266 entries"));

    let mut v = tiny(None);
    v.eos_id = Some(9999);
    assert!(gguf_err(&v).contains("eos_token_id is 9999"));

    let mut v = tiny(None);
    v.add_bos = true;
    v.bos_id = None;
    assert!(gguf_err(&v).contains("bos_token_id is missing"));

    let v = GgufVocab {
        model: "gpt2".into(),
        ..GgufVocab::default()
    };
    assert!(gguf_err(&v).contains("tokens is empty"));
}

#[test]
fn bad_ids_and_files_are_errors() {
    let tok = Tokenizer::from_gguf_vocab(&tiny(None)).unwrap();
    let err = tok.decode(&[HELLO, 100_000], false).unwrap_err();
    assert!(matches!(err, TokenizerError::UnknownId(100_000)), "{err:?}");
    assert_eq!(tok.pieces(&[HELLO, 100_000]), ["hello", ""]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    let err = Tokenizer::from_tokenizer_json(&path).unwrap_err();
    assert!(matches!(err, TokenizerError::Io { .. }), "{err:?}");

    std::fs::write(&path, r#"{"model": {"type": "BPE", "vocab": 3}}"#).unwrap();
    let err = Tokenizer::from_tokenizer_json(&path).unwrap_err();
    assert!(
        matches!(err, TokenizerError::InvalidTokenizerJson { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    std::fs::write(&path, tok.to_tokenizer_json().unwrap()).unwrap();
    let config = dir.path().join("tokenizer_config.json");
    std::fs::write(&config, r#"{"bos_token": "<|not_here|>"}"#).unwrap();
    let err = Tokenizer::from_tokenizer_json(&path).unwrap_err();
    assert!(
        matches!(err, TokenizerError::InvalidConfig { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("<|not_here|>"), "{err}");
    std::fs::write(&config, "[1, 2").unwrap();
    let err = Tokenizer::from_tokenizer_json(&path).unwrap_err();
    assert!(err.to_string().contains("not valid JSON"), "{err}");
}

#[test]
fn shareable_across_threads() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Tokenizer>();
    check::<persona_tokenizer::ChatTemplate>();
}
