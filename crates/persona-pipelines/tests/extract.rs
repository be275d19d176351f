//! Extraction from the fixed reference workload (`shared/reference/extract_workload/`)
//! matches the PyTorch fp32 persona vectors.

use std::io::Read;
use std::path::PathBuf;

use persona_engine::{Engine, LoadOptions};

fn shared() -> PathBuf {
    match std::env::var_os("PERSONA_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// One `[rows, d]` float32 array of a `numpy.savez` file.
fn npz_array(path: &std::path::Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut entry = zip.by_name(&format!("{name}.npy")).unwrap();
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    let shape: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, data)
}

#[test]
fn workload_vectors_match_pytorch() {
    let cache = persona_models::ModelCache::from_env().unwrap();
    let model = persona_models::resolve(&cache, None)
        .unwrap_or_else(|e| panic!("{e}\nrun `persona setup` first"));
    let engine = Engine::load(&model, &LoadOptions::default()).unwrap();
    let dir = shared().join("reference/extract_workload");
    let pos = persona_io::read_conversations(&dir.join("pos.jsonl")).unwrap();
    let neg = persona_io::read_conversations(&dir.join("neg.jsonl")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let r = persona_pipelines::extract::extract_from_conversations(
        &engine,
        &pos,
        &neg,
        "cruel",
        out.path(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((r.n_pos, r.n_neg, r.layers), (32, 32, 30));
    let refs = dir.join("hf_fp32_vectors.npz");
    let d = engine.config().d_model;
    for (method, array) in [
        ("response_avg", "response_avg_diff"),
        ("prompt_avg", "prompt_avg_diff"),
        ("prompt_last", "prompt_last_diff"),
    ] {
        let v = persona_io::LayerVectors::load(&r.files[method]).unwrap();
        assert_eq!(v.metadata["persona.method"], method);
        assert_eq!(v.metadata["persona.n_pos"], "32");
        assert!(v.metadata["persona.model"].contains("sha256:b179c952"));
        let (shape, rows) = npz_array(&refs, array);
        assert_eq!(shape, vec![31, d]);
        let mut min_cos = f64::INFINITY;
        // HF row l + 1 is our layer l for l < 29 (row 30 is after the final norm).
        for l in 1..29 {
            let c = persona_core::cosine(&v.layers[&l], &rows[(l + 1) * d..(l + 2) * d]);
            min_cos = min_cos.min(c);
        }
        eprintln!("{method}: min cosine over layers 1..28 vs PyTorch {min_cos:.6}");
        // Single-token differences are noisy under quantized compute (shared/reference/README).
        let bar = if method == "prompt_last" { 0.9 } else { 0.99 };
        assert!(min_cos >= bar, "{method}: {min_cos}");
    }
    let (_, last) = npz_array(&refs, "response_avg_diff_last_prenorm");
    let v = persona_io::LayerVectors::load(&r.vector_file).unwrap();
    assert!(persona_core::cosine(&v.layers[&29], &last) >= 0.99);
}

#[test]
fn conversations_without_a_final_response_are_refused() {
    let cache = persona_models::ModelCache::from_env().unwrap();
    let model = persona_models::resolve(&cache, None).unwrap();
    let engine = Engine::load(&model, &LoadOptions::default()).unwrap();
    let bad = vec![vec![persona_engine::Message::new("user", "hi")]];
    let good = vec![vec![
        persona_engine::Message::new("user", "hi"),
        persona_engine::Message::new("assistant", "hello"),
    ]];
    let out = tempfile::tempdir().unwrap();
    let e = persona_pipelines::extract::extract_from_conversations(
        &engine,
        &good,
        &bad,
        "x",
        out.path(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("neg conversation 0") && e.contains("assistant"),
        "{e}"
    );
}
