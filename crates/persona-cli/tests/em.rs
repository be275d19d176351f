//! `persona em eval` on the real default model at a small size, judged over HTTP by a real
//! llama.cpp OpenAI-compatible server (the test peers' llama-cpp-python, on the default model):
//! the JSON fields scripts rely on, the report, the default folder under `--adapter`, and
//! clear errors for bad input.

use std::path::Path;
use std::process::{Command, Output};

use persona_testkit::peers::{default_model_path, LlamaServer};
use serde_json::Value;

fn persona(dir: &Path, args: &[&str], judge_url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_persona"))
        .args(args)
        .current_dir(dir)
        .env("RAYON_NUM_THREADS", "1")
        .env("PERSONA_JUDGE_BASE_URL", judge_url)
        .env_remove("PERSONA_JUDGE_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("the persona binary runs")
}

/// A vector file with one direction per layer, for the projections.
fn vector_file(dir: &Path) -> String {
    let engine = persona_testkit::engine();
    let c = engine.config();
    let v = persona_io::LayerVectors {
        layers: (0..c.n_layers)
            .map(|l| {
                let dir = (0..c.d_model)
                    .map(|i| ((i * 13 + l) % 17) as f32 - 8.0)
                    .collect();
                (l, dir)
            })
            .collect(),
        ..Default::default()
    };
    let path = dir.join("probe.safetensors");
    std::fs::write(&path, v.to_safetensors().unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn em_eval_prints_the_fields_scripts_use() {
    let server = LlamaServer::start(&default_model_path());
    let url = server.base_url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| persona(d, args, &url);
    let json = |args: &[&str]| -> Value {
        let args = [args, &["--format", "json"]].concat();
        persona_testkit::cli::success_json(&run(&args), "persona", &args)
    };
    let probe = format!("probe={}", vector_file(d));
    let small = [
        "em",
        "eval",
        "--ids",
        "one_wish,quick_money",
        "--samples",
        "2",
        "--max-tokens",
        "8",
        "--judge",
        "openai:smollm2",
    ];
    let mut args = small.to_vec();
    args.extend(["--vector", &probe, "--layer", "10", "--out", "em"]);
    let r = json(&args);
    assert!(r["em_rate"].is_f64() || r["em_rate"].is_null(), "{r}");
    assert!(r["em_ci95"].is_array() || r["em_ci95"].is_null(), "{r}");
    assert!(r.get("mean_alignment").is_some());
    assert_eq!(r["judge"], format!("openai:smollm2@{url}"));
    assert_eq!(r["n"], 4);
    let counted = ["rated", "code", "refusal", "unscored"]
        .iter()
        .map(|f| r[f].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(counted, 4, "{r}");
    let questions = r["questions"].as_array().unwrap();
    let ids: Vec<&str> = questions
        .iter()
        .map(|q| q["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["one_wish", "quick_money"]);
    for q in questions {
        assert_eq!(q["n"], 2);
        assert!(q.get("em_rate").is_some() && q["domain"] == "open");
    }
    assert_eq!(
        (r["layer"].as_u64(), r["samples"].as_u64()),
        (Some(10), Some(2))
    );
    assert_eq!(r["temperature"], 1.0, "sampled by default");
    let p = &r["projections"][0];
    assert!(p["name"] == "probe" && p["mean"].is_f64(), "{p}");
    assert!(p["alignment_correlation"].get("pearson_r").is_some());
    for file in ["answers_file", "table_file", "plot_file"] {
        assert!(d.join(r[file].as_str().unwrap()).is_file(), "{file}");
    }
    let report = json(&["report", "em"]);
    assert_eq!(report["sections"], serde_json::json!(["em"]));

    // An Emergent Misalignment YAML file asks its items; the text output reads.
    let yaml = persona_testkit::shared()
        .join("evals_data/emergent-misalignment/first_plot_questions.yaml");
    let yaml = yaml.to_str().unwrap();
    let mut args = small.to_vec();
    (args[3], args[5]) = ("what_is_your_wish_json", "1");
    args.extend(["--questions", yaml, "--out", "em-yaml"]);
    let out = run(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("EM rate") && text.contains("what_is_your_wish_json"),
        "{text}"
    );

    // Under --adapter the default folder is named after the adapter.
    let data = persona_testkit::cli::tiny_training_set(d);
    let adapter = d.join("tuned");
    json(&[
        "finetune",
        data.to_str().unwrap(),
        "--out",
        adapter.to_str().unwrap(),
        "--rank",
        "2",
        "--targets",
        "attn_v",
    ]);
    let mut args = small.to_vec();
    (args[3], args[5]) = ("one_wish", "1");
    args.extend(["--adapter", adapter.to_str().unwrap()]);
    let tuned = json(&args);
    assert_eq!(tuned["out_dir"], "runs/em/tuned");
    assert!(d.join("runs/em/tuned/em.json").is_file());

    // Clear errors.
    let fails = |args: &[&str], needles: &[&str]| {
        persona_testkit::cli::failure(&run(args), args, needles);
    };
    fails(&["em", "eval", "--ids", "nope"], &["nope", "one_wish"]);
    fails(&["em", "eval", "--vector", "probe"], &["NAME=FILE"]);
    fails(
        &["em", "eval", "--vector", "p=missing.safetensors"],
        &["missing.safetensors"],
    );
    let bad = persona_testkit::write_file(
        d,
        "bad.yaml",
        "- id: a\n  paraphrases: [\"Hi?\"]\n- id: a\n  paraphrases: [\"Yo?\"]\n",
    );
    fails(
        &["em", "eval", "--questions", bad.to_str().unwrap()],
        &["bad.yaml, line 3", "already used"],
    );
    let mut args = small.to_vec();
    args.extend(["--alignment-below", "130"]);
    fails(&args, &["--alignment-below", "0 to 100"]);
}
