//! The `persona` binary's files and steering against the real Python peers: persona vector
//! files read by `safetensors`, and steered greedy generation compared token by token with
//! llama.cpp (llama-cpp-python) applying the exported GGUF control vector.
//! Needs the test venv (`bash scripts/setup_test_peers.sh`); fails, never skips, without it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use persona_testkit::peers::{default_model_path, python};
use persona_testkit::shared;

/// Where llama.cpp adds the vector in the parity test, and how strongly: large enough to
/// change every reference reply visibly, small enough to keep the model talking.
const LAYER: usize = 12;
const ALPHA: f64 = 4.0;
const N_TOKENS: usize = 16;
/// A first divergence counts as a near-tie when llama.cpp's own top-1/top-2 gap is below this.
const NEAR_TIE: f64 = 0.5;

fn persona_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_persona"))
        .args(args)
        .args(["--format", "json", "--threads", "1"])
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("the persona binary runs");
    persona_testkit::cli::success_json(&out, "persona", args)
}

/// Runs a Python script file or `-c` program in the test venv and parses its JSON stdout.
fn python_json(args: &[&str]) -> Value {
    let out = Command::new(python())
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("the venv's python runs");
    persona_testkit::cli::success_json(&out, "python", args)
}

/// A few short contrastive conversations (optimistic vs gloomy answers to the same questions).
fn write_conversations(dir: &Path) -> (PathBuf, PathBuf) {
    let pairs = [
        (
            "How will next year go?",
            "Next year will be wonderful! So many good things are coming, and I am sure you will thrive.",
            "Next year will probably be hard. Costs keep rising and things may well get worse.",
        ),
        (
            "I failed my exam. What now?",
            "That's okay! This is a great chance to learn, and you will do brilliantly next time.",
            "That is a serious setback. It may hurt your chances, and retakes are often no easier.",
        ),
        (
            "What do you think of the future of cities?",
            "Cities will become greener, friendlier and full of opportunity. The future looks bright!",
            "Cities face crowding, pollution and rising rents. The outlook is bleak.",
        ),
        (
            "My garden died in the frost.",
            "Spring is a fresh start! Your next garden will be even more beautiful, I'm sure of it.",
            "Frost can ruin a season's work, and it may happen again next year. It is discouraging.",
        ),
    ];
    let line = |q: &str, a: &str| {
        json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
            .to_string()
    };
    let pos: Vec<String> = pairs.iter().map(|(q, p, _)| line(q, p)).collect();
    let neg: Vec<String> = pairs.iter().map(|(q, _, n)| line(q, n)).collect();
    let (pos_path, neg_path) = (dir.join("pos.jsonl"), dir.join("neg.jsonl"));
    std::fs::write(&pos_path, pos.join("\n") + "\n").unwrap();
    std::fs::write(&neg_path, neg.join("\n") + "\n").unwrap();
    (pos_path, neg_path)
}

/// `persona extract --pos --neg` on the conversations above; its JSON report.
fn extract(dir: &Path) -> Value {
    let (pos, neg) = write_conversations(dir);
    let out = dir.join("vectors");
    persona_json(&[
        "extract",
        "--pos",
        pos.to_str().unwrap(),
        "--neg",
        neg.to_str().unwrap(),
        "--name",
        "t",
        "--out",
        out.to_str().unwrap(),
    ])
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[test]
fn vector_files_load_in_python_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let report = extract(dir.path());
    let file = s(&report["vector_file"]).to_string();
    let ours: Vec<f64> = report["norms"]["response_avg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let program = r#"
import hashlib, json, sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file
path, model = sys.argv[1], sys.argv[2]
h = hashlib.sha256()
with open(model, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
tensors = load_file(path)
with safe_open(path, framework="numpy") as f:
    metadata = f.metadata()
print(json.dumps({
    "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype),
                    "norm": float(np.linalg.norm(v.astype(np.float64)))}
                for k, v in tensors.items()},
    "metadata": metadata,
    "model_sha256": h.hexdigest(),
}))
"#;
    let model_path = default_model_path();
    let py = python_json(&["-c", program, &file, model_path.to_str().unwrap()]);
    let tensors = py["tensors"].as_object().unwrap();
    assert_eq!(tensors.len(), 30, "{:?}", tensors.keys());
    for (l, want) in ours.iter().enumerate() {
        let t = &tensors[&format!("layer.{l}")];
        assert_eq!(t["shape"], json!([576]), "layer {l}");
        assert_eq!(t["dtype"], "float32", "layer {l}");
        let got = t["norm"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-4 * want.max(1.0),
            "layer {l}: python reads norm {got}, persona reported {want}"
        );
    }
    let m = &py["metadata"];
    assert_eq!(m["persona.kind"], "trait");
    assert_eq!(m["persona.name"], "t");
    assert_eq!(m["persona.hook_point"], "resid_post");
    assert_eq!(m["persona.method"], "response_avg");
    assert_eq!(m["persona.n_pos"], "4");
    assert_eq!(m["persona.n_neg"], "4");
    assert!(s(&m["persona.created"]).parse::<u64>().is_ok(), "{m}");
    let model = s(&m["persona.model"]);
    let sha = s(&py["model_sha256"]);
    assert!(
        sha.len() == 64 && model.contains(&format!("sha256:{sha}")),
        "persona.model `{model}` should name the weights' sha256 {sha}"
    );
}

/// How far persona's greedy tokens agree with llama.cpp's.
struct Agreement {
    /// Tokens identical before the first difference (all of them when equal).
    matched: usize,
    /// At the first difference: llama.cpp's top-1 minus top-2 logit, and our token's rank in
    /// llama.cpp's top 5 (None: not in it) and its logit below llama.cpp's top-1.
    divergence: Option<(f64, Option<usize>, Option<f64>)>,
}

fn agreement(ours: &[u64], llama: &Value) -> Agreement {
    let theirs: Vec<u64> = llama["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(ours.len(), theirs.len());
    let matched = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
    let divergence = (matched < ours.len()).then(|| {
        let top: Vec<u64> = llama["top5"][matched]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        let logits: Vec<f64> = llama["top5_logits"][matched]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let rank = top.iter().position(|&t| t == ours[matched]);
        (
            logits[0] - logits[1],
            rank,
            rank.map(|r| logits[0] - logits[r]),
        )
    });
    Agreement {
        matched,
        divergence,
    }
}

impl Agreement {
    /// The parity criterion for steered generation: identical, or identical up to a near-tie
    /// in llama.cpp where our token is its runner-up.
    fn steered_ok(&self) -> bool {
        match self.divergence {
            None => true,
            Some((gap, rank, _)) => gap < NEAR_TIE && rank == Some(1),
        }
    }

    /// The looser check of the unsteered harness: a first difference within llama.cpp's top 5
    /// and within the near-tie margin of its top-1 (three- and four-way near-ties occur).
    fn near_tie_ok(&self) -> bool {
        match self.divergence {
            None => true,
            Some((_, _, below)) => below.is_some_and(|b| b < NEAR_TIE),
        }
    }

    fn describe(&self) -> String {
        match self.divergence {
            None => format!("{}/{} identical", self.matched, N_TOKENS),
            Some((gap, rank, below)) => format!(
                "{}/{} identical, then llama.cpp top-1/top-2 gap {gap:.3}, ours is its {} ({})",
                self.matched,
                N_TOKENS,
                rank.map_or("(not in top 5)".to_string(), |r| format!("top-{}", r + 1)),
                below.map_or("-".to_string(), |b| format!("{b:.3} below top-1")),
            ),
        }
    }
}

/// llama.cpp's greedy tokens for the reference prompts, with the control vector if given.
fn llama_greedy(
    prompts: &[Vec<u64>],
    control_vector: Option<&Path>,
    shift: i32,
    dir: &Path,
) -> Value {
    let req = json!({
        "model": default_model_path(),
        "control_vector": control_vector,
        "n_tokens": N_TOKENS,
        "threads": 1,
        "prompts": prompts,
        "shift": shift,
    });
    let req_path = dir.join(format!("request_{}_{shift}.json", control_vector.is_some()));
    std::fs::write(&req_path, req.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/llamacpp_greedy.py");
    python_json(&[script.to_str().unwrap(), req_path.to_str().unwrap()])
}

#[test]
fn steered_greedy_matches_llama_cpp_control_vector() {
    let dir = tempfile::tempdir().unwrap();
    let report = extract(dir.path());
    let vector = s(&report["vector_file"]).to_string();
    let gguf = dir.path().join("t.gguf");
    let layers = format!("{LAYER}..{}", LAYER + 1);
    let alpha = ALPHA.to_string();
    let exported = persona_json(&[
        "export",
        &vector,
        "--out",
        gguf.to_str().unwrap(),
        "--scale",
        &alpha,
        "--layers",
        &layers,
    ]);
    assert_eq!(exported["layers"], json!([LAYER]));

    let reference_path = shared().join("reference/greedy_llamacpp.json");
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(&reference_path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", reference_path.display())),
    )
    .unwrap();
    let cases = reference["prompts"].as_array().unwrap();
    let prompts: Vec<Vec<u64>> = cases
        .iter()
        .map(|c| {
            c["prompt_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect()
        })
        .collect();

    let plain = llama_greedy(&prompts, None, 0, dir.path());
    let steered = llama_greedy(&prompts, Some(&gguf), 0, dir.path());
    // llama.cpp's own view of the exported file: its reader, its layer, our scale.
    let cv = &steered["control_vector"];
    assert_eq!(cv["metadata"]["general.architecture"], "controlvector");
    assert_eq!(cv["metadata"]["controlvector.model_hint"], "llama");
    assert_eq!(cv["metadata"]["controlvector.layer_count"], 1);
    assert_eq!(cv["layers"], json!([LAYER]));
    let ours_norm = report["norms"]["response_avg"][LAYER].as_f64().unwrap();
    let gguf_norm = cv["norms"][LAYER.to_string()].as_f64().unwrap();
    assert!(
        (gguf_norm - ALPHA * ours_norm).abs() < 1e-3 * gguf_norm,
        "direction.{LAYER} has norm {gguf_norm}, expected {ALPHA} x {ours_norm}"
    );

    let steer = format!("{vector}:{LAYER}:{ALPHA}");
    let max_tokens = N_TOKENS.to_string();
    let mut steered_changed = false;
    let mut ours_steered_all = Vec::new();
    let mut report_lines = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let messages = dir.path().join(format!("messages{i}.json"));
        std::fs::write(&messages, case["messages"].to_string()).unwrap();
        let base = [
            "generate",
            "--messages",
            messages.to_str().unwrap(),
            "--greedy",
            "--ignore-eos",
            "--max-tokens",
            &max_tokens,
        ];
        let ours_plain = persona_json(&base);
        let mut steered_args = base.to_vec();
        steered_args.extend(["--steer", &steer]);
        let ours_steered = persona_json(&steered_args);
        for out in [&ours_plain, &ours_steered] {
            assert_eq!(out["prompt_ids"], case["prompt_ids"], "prompt {i}");
        }
        let ids = |v: &Value| -> Vec<u64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect()
        };
        let (ours_p, ours_s) = (
            ids(&ours_plain["generated_ids"]),
            ids(&ours_steered["generated_ids"]),
        );
        let a_plain = agreement(&ours_p, &plain["outputs"][i]);
        let a_steered = agreement(&ours_s, &steered["outputs"][i]);
        let llama_s = ids(&steered["outputs"][i]["ids"]);
        let llama_p = ids(&plain["outputs"][i]["ids"]);
        steered_changed |= llama_s != llama_p && ours_s != ours_p;
        ours_steered_all.push(ours_s.clone());
        report_lines.push(format!(
            "prompt {i}: unsteered {}; steered (layer {LAYER}, alpha {ALPHA}) {}",
            a_plain.describe(),
            a_steered.describe()
        ));
        assert!(
            a_plain.near_tie_ok(),
            "prompt {i}: unsteered harness disagrees beyond a near-tie: {}",
            a_plain.describe()
        );
        assert!(
            a_steered.steered_ok(),
            "prompt {i}: steered generation differs from llama.cpp: {}\nours:  {ours_s:?}\nllama: {llama_s:?}",
            a_steered.describe()
        );
    }
    println!(
        "steered greedy parity with llama.cpp:\n  {}",
        report_lines.join("\n  ")
    );
    assert!(
        steered_changed,
        "alpha {ALPHA} at layer {LAYER} changed no reply in both tools: the test would not see a wrong layer"
    );

    // Negative control: the same vector added one block later in llama.cpp must not pass.
    let shifted = llama_greedy(&prompts, Some(&gguf), 1, dir.path());
    let failures = ours_steered_all
        .iter()
        .enumerate()
        .filter(|(i, ours)| !agreement(ours, &shifted["outputs"][*i]).steered_ok())
        .count();
    println!(
        "one block late in llama.cpp: {failures}/{} prompts fail the criterion",
        cases.len()
    );
    assert!(
        failures > 0,
        "the criterion cannot tell a one-layer shift apart"
    );
}

/// PEFT's merge rule, W + (lora_alpha / r)·B·A on the Hugging Face weights named by the adapter's
/// keys, computed in numpy from our adapter files and the base model's HF export, gives the HF
/// export of the model persona merges at load: the adapter is in PEFT's names and layout
/// (q and k included, whose rows GGUF orders differently).
#[test]
fn adapters_follow_peft_names_and_merge_rule() {
    let dir = tempfile::tempdir().unwrap();
    let data = persona_testkit::cli::tiny_training_set(dir.path());
    let adapter = dir.path().join("adapter");
    let a = adapter.to_str().unwrap();
    persona_json(&[
        "finetune",
        data.to_str().unwrap(),
        "--out",
        a,
        "--rank",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--lr",
        "0.01",
        "--targets",
        "attn_q,attn_k,ffn_down",
    ]);
    let base = dir.path().join("base_hf");
    let merged = dir.path().join("merged_hf");
    persona_json(&["convert", "--out", base.to_str().unwrap()]);
    persona_json(&["convert", "--adapter", a, "--out", merged.to_str().unwrap()]);
    let program = r#"
import json, sys
import numpy as np
from safetensors.numpy import load_file
adapter, base, merged = sys.argv[1:4]
cfg = json.load(open(adapter + "/adapter_config.json"))
lora = load_file(adapter + "/adapter_model.safetensors")
w0 = load_file(base + "/model.safetensors")
w1 = load_file(merged + "/model.safetensors")
scale = cfg["lora_alpha"] / cfg["r"]
worst, changed, modules = 0.0, set(), set()
for key in lora:
    if not key.endswith(".lora_A.weight"):
        continue
    name = key[len("base_model.model."):-len(".lora_A.weight")] + ".weight"
    a = lora[key]
    b = lora[key.replace("lora_A", "lora_B")]
    want = w0[name] + scale * (b @ a)
    worst = max(worst, float(np.abs(want - w1[name]).max()))
    changed.add(name)
    modules.add(name.split(".")[-2])
untouched = max(float(np.abs(w0[k] - w1[k]).max()) for k in w0 if k not in changed)
print(json.dumps({"worst": worst, "untouched": untouched, "n": len(changed),
                  "modules": sorted(modules), "target_modules": sorted(cfg["target_modules"]),
                  "peft_type": cfg["peft_type"]}))
"#;
    let r = python_json(&[
        "-c",
        program,
        a,
        base.to_str().unwrap(),
        merged.to_str().unwrap(),
    ]);
    assert_eq!(r["peft_type"], "LORA");
    assert_eq!(r["n"], 90, "3 projections × 30 layers: {r}");
    assert_eq!(r["modules"], json!(["down_proj", "k_proj", "q_proj"]));
    assert_eq!(r["target_modules"], r["modules"]);
    assert!(r["worst"].as_f64().unwrap() < 1e-5, "{r}");
    assert_eq!(r["untouched"].as_f64(), Some(0.0), "{r}");
}
