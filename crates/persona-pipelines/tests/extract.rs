//! Extraction from the fixed reference workload (`shared/reference/extract_workload/`)
//! matches the PyTorch fp32 persona vectors.

use persona_engine::{Message, WeightMode};
use persona_pipelines::extract::{extract_from_conversations, ExtractResult};
use persona_pipelines::{DirStore, PipelineError};
use persona_testkit::{load, load_npz, shared};

/// Extraction from `pos` and `neg` on the default model into a fresh folder.
fn extract(
    pos: &[Vec<Message>],
    neg: &[Vec<Message>],
    name: &str,
) -> Result<(ExtractResult, tempfile::TempDir), PipelineError> {
    let engine = load(WeightMode::Auto);
    let out = tempfile::tempdir().unwrap();
    let store = DirStore::open(out.path()).unwrap();
    extract_from_conversations(&engine, pos, neg, name, &store, &mut |_| {}).map(|r| (r, out))
}

#[test]
fn workload_vectors_match_pytorch() {
    let dir = shared().join("reference/extract_workload");
    let pos = persona_io::read_conversations(&dir.join("pos.jsonl")).unwrap();
    let neg = persona_io::read_conversations(&dir.join("neg.jsonl")).unwrap();
    let (r, _out) = extract(&pos, &neg, "cruel").unwrap();
    assert_eq!((r.n_pos, r.n_neg, r.layers), (32, 32, 30));
    let refs = load_npz(&dir.join("hf_fp32_vectors.npz"));
    let d = 576;
    for (method, array) in [
        ("response_avg", "response_avg_diff"),
        ("prompt_avg", "prompt_avg_diff"),
        ("prompt_last", "prompt_last_diff"),
    ] {
        let v = persona_io::LayerVectors::load(&r.files[method]).unwrap();
        assert_eq!(v.metadata["persona.method"], method);
        assert_eq!(v.metadata["persona.n_pos"], "32");
        assert!(v.metadata["persona.model"].contains("sha256:b179c952"));
        let (shape, rows) = &refs[array];
        assert_eq!(shape, &vec![31, d]);
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
    let (_, last) = &refs["response_avg_diff_last_prenorm"];
    let v = persona_io::LayerVectors::load(&r.vector_file).unwrap();
    assert!(persona_core::cosine(&v.layers[&29], last) >= 0.99);
}

#[test]
fn conversations_without_a_final_response_are_refused() {
    let bad = vec![vec![Message::new("user", "hi")]];
    let good = vec![vec![
        Message::new("user", "hi"),
        Message::new("assistant", "hello"),
    ]];
    let e = extract(&good, &bad, "x").unwrap_err().to_string();
    assert!(
        e.contains("neg conversation 0") && e.contains("assistant"),
        "{e}"
    );
}
