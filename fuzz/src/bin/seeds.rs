//! Writes the seed corpus: tiny valid files of every format the targets read, made by
//! persona's own writers (or, where persona has none, built here byte by byte). Usage:
//! `seeds [DIR]` (default `corpus`); files go to `DIR/<target>/`.

use std::path::Path;

use candle_core::quantized::{gguf_file::Value, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use persona_io::{write_control_vector, ControlVectorOptions, LayerVectors};
use persona_traits::{InstructionPair, TraitSpec};

fn put(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("create a corpus folder");
    std::fs::write(d.join(name), bytes).expect("write a seed");
}

/// A tensor of `dims` with small distinct values, stored as `dtype`.
fn weight(dims: &[usize], dtype: GgmlDType) -> QTensor {
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|i| ((i % 17) as f32 - 8.0) / 32.0).collect();
    let t = Tensor::from_vec(values, dims, &Device::Cpu).expect("tensor");
    QTensor::quantize(&t, dtype).expect("quantize")
}

/// A one-block model of width 8 (two heads of 4, one KV head) with a six-token byte-level BPE
/// vocabulary and a chat template, in `arch`'s GGUF naming.
fn tiny_model(arch: &str, dtype: GgmlDType, biases: bool) -> Vec<u8> {
    let (d, ff, heads, kv, hd) = (8usize, 16usize, 2usize, 1usize, 4usize);
    let tokens = ["a", "b", "ab", "Ġ", "Ġa", "<|endoftext|>"];
    let u32v = |x: usize| Value::U32(x as u32);
    let strings =
        |xs: &[&str]| Value::Array(xs.iter().map(|s| Value::String(s.to_string())).collect());
    let key = |k: &str| format!("{arch}.{k}");
    let meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String("fuzz seed".into())),
        (key("block_count"), u32v(1)),
        (key("context_length"), u32v(64)),
        (key("embedding_length"), u32v(d)),
        (key("feed_forward_length"), u32v(ff)),
        (key("attention.head_count"), u32v(heads)),
        (key("attention.head_count_kv"), u32v(kv)),
        (key("rope.freq_base"), Value::F32(10000.0)),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens".into(), strings(&tokens)),
        ("tokenizer.ggml.merges".into(), strings(&["a b", "Ġ a"])),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(vec![1, 1, 1, 1, 1, 3].into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), u32v(5)),
        ("tokenizer.ggml.eos_token_id".into(), u32v(5)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        (
            "tokenizer.chat_template".into(),
            Value::String(
                "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}".into(),
            ),
        ),
    ];
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            weight(&[tokens.len(), d], dtype),
        ),
        ("output_norm.weight".into(), weight(&[d], GgmlDType::F32)),
        (
            "blk.0.attn_norm.weight".into(),
            weight(&[d], GgmlDType::F32),
        ),
        ("blk.0.ffn_norm.weight".into(), weight(&[d], GgmlDType::F32)),
        (
            "blk.0.attn_q.weight".into(),
            weight(&[heads * hd, d], dtype),
        ),
        ("blk.0.attn_k.weight".into(), weight(&[kv * hd, d], dtype)),
        ("blk.0.attn_v.weight".into(), weight(&[kv * hd, d], dtype)),
        (
            "blk.0.attn_output.weight".into(),
            weight(&[d, heads * hd], dtype),
        ),
        ("blk.0.ffn_gate.weight".into(), weight(&[ff, d], dtype)),
        ("blk.0.ffn_up.weight".into(), weight(&[ff, d], dtype)),
        ("blk.0.ffn_down.weight".into(), weight(&[d, ff], dtype)),
    ];
    if biases {
        for (part, n) in [
            ("attn_q", heads * hd),
            ("attn_k", kv * hd),
            ("attn_v", kv * hd),
        ] {
            tensors.push((format!("blk.0.{part}.bias"), weight(&[n], GgmlDType::F32)));
        }
        tensors.push(("output.weight".into(), weight(&[tokens.len(), d], dtype)));
    }
    let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    candle_core::quantized::gguf_file::write(&mut out, &meta, &tensors).expect("write GGUF");
    out.into_inner()
}

fn vectors(layers: usize, width: usize) -> LayerVectors {
    let mut v = LayerVectors::default();
    for l in 0..layers {
        v.layers.insert(
            l,
            (0..width)
                .map(|i| (l * width + i) as f32 / 8.0 - 1.0)
                .collect(),
        );
    }
    v.metadata.insert("persona.kind".into(), "trait".into());
    v.metadata.insert("persona.name".into(), "evil".into());
    v
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "corpus".into());
    let dir = Path::new(&dir);
    let scratch = std::env::temp_dir().join(format!("persona-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch folder");

    put(
        dir,
        "gguf_model",
        "llama-f32.gguf",
        &tiny_model("llama", GgmlDType::F32, false),
    );
    put(
        dir,
        "gguf_model",
        "qwen2-f16.gguf",
        &tiny_model("qwen2", GgmlDType::F16, true),
    );

    let opts = ControlVectorOptions {
        model_hint: "llama".into(),
        scale: 1.5,
        layers: None,
    };
    let cv = scratch.join("cv.gguf");
    write_control_vector(&vectors(4, 6), &opts, &cv).expect("control vector");
    put(
        dir,
        "gguf_control_vector",
        "cv.gguf",
        &std::fs::read(&cv).unwrap(),
    );

    put(
        dir,
        "safetensors_vectors",
        "layers.safetensors",
        &vectors(3, 5).to_safetensors().unwrap(),
    );
    let stacked = Tensor::from_vec(
        (0..12).map(|i| i as f32).collect::<Vec<_>>(),
        (4, 3),
        &Device::Cpu,
    )
    .unwrap()
    .to_dtype(candle_core::DType::BF16)
    .unwrap();
    let meta: std::collections::HashMap<String, String> =
        [("persona.kind".to_string(), "axis".to_string())].into();
    let bytes = safetensors::serialize([("vectors", stacked)], Some(meta)).unwrap();
    put(
        dir,
        "safetensors_vectors",
        "stacked-bf16.safetensors",
        &bytes,
    );

    let f32s: Vec<u8> = (0..12)
        .flat_map(|i| (i as f32 / 4.0 - 1.0).to_le_bytes())
        .collect();
    let bf16s: Vec<u8> = (0..12)
        .flat_map(|i| half::bf16::from_f32(i as f32 / 4.0 - 1.0).to_le_bytes())
        .collect();
    let bare = persona_fuzz::tensor_pickle("FloatStorage", 12, 4, 3, None);
    let dict = persona_fuzz::tensor_pickle("BFloat16Storage", 12, 4, 3, Some("axis"));
    put(
        dir,
        "pt_file",
        "bare-f32.pt",
        &persona_fuzz::torch_zip(&bare, &f32s),
    );
    put(
        dir,
        "pt_file",
        "dict-bf16.pt",
        &persona_fuzz::torch_zip(&dict, &bf16s),
    );
    // pt_pickle's storage is 64 f32s.
    put(
        dir,
        "pt_pickle",
        "bare.pkl",
        &persona_fuzz::tensor_pickle("FloatStorage", 64, 8, 8, None),
    );
    put(
        dir,
        "pt_pickle",
        "view.pkl",
        &persona_fuzz::tensor_pickle("FloatStorage", 64, 3, 5, None),
    );
    put(
        dir,
        "pt_pickle",
        "dict.pkl",
        &persona_fuzz::tensor_pickle("FloatStorage", 64, 2, 32, Some("axis")),
    );

    put(
        dir,
        "jsonl_log",
        "answers.jsonl",
        b"{\"id\": 1, \"answer\": \"yes\", \"score\": 0.5}\n{\"id\": 2, \"answer\": \"no\\u00e9\", \"score\": null}\r\n[1, 2.5e3, true]\n{\"id\"",
    );
    put(
        dir,
        "conversations",
        "chat.jsonl",
        "\u{feff}{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n\n{\"prompt\": \"a\", \"response\": \"b\"}\r\n".as_bytes(),
    );

    let spec = TraitSpec {
        name: "curious".into(),
        description: "asks questions".into(),
        instructions: vec![InstructionPair {
            pos: "Be curious.".into(),
            neg: "Be incurious.".into(),
        }],
        extraction_questions: vec!["What is rain?".into(), "Why is the sky blue?".into()],
        evaluation_questions: vec!["How do birds fly?".into()],
        judge_rubric: "Rate curiosity 0-100.\nQ: {question}\nA: {answer}".into(),
        lexicon: None,
        question_split: None,
    };
    let toml = persona_traits::generate::spec_to_toml(&spec, "fuzz seed").unwrap();
    put(dir, "trait_spec", "curious.toml", toml.as_bytes());
    let paper = serde_json::json!({
        "instruction": [{"pos": "Be curious.", "neg": "Be incurious."}],
        "questions": ["What is rain?", "Why is the sky blue?", "How do birds fly?"],
        "eval_prompt": "Rate curiosity.\nQ: {question}\nA: {answer}",
    });
    let paper = serde_json::to_vec_pretty(&paper).unwrap();
    put(dir, "trait_spec", "curious.json", &paper);

    let mut q = vec![0u8];
    q.extend_from_slice(&paper);
    put(dir, "question_file", "paper.json", &q);
    put(
        dir,
        "question_file",
        "list.json",
        b"\0[\"What is rain?\", \"Why?\"]",
    );
    put(
        dir,
        "question_file",
        "lines.jsonl",
        b"\x01\"What is rain?\"\n\n{\"question\": \"Why?\"}\n",
    );
    put(
        dir,
        "question_file",
        "lines.txt",
        "\x02\u{feff}What is rain?\r\n  Why?  \n".as_bytes(),
    );

    std::fs::remove_dir_all(&scratch).ok();
}
