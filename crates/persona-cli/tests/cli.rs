//! The `persona` binary on the real default model: JSON outputs scripts rely on, and clear
//! errors for bad input.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn persona(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_persona"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("the persona binary runs")
}

/// A run that must succeed, with `--format json` added; the JSON it printed.
fn json(args: &[&str]) -> Value {
    let args = [args, &["--format", "json"]].concat();
    persona_testkit::cli::success_json(&persona(&args), "persona", &args)
}

fn fails_with(args: &[&str], needles: &[&str]) {
    persona_testkit::cli::failure(&persona(args), args, needles);
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn setup_info_and_tokenize() {
    let s = json(&["setup"]);
    assert_eq!(s["model"], "smollm2-135m");
    assert!(Path::new(s["path"].as_str().unwrap()).is_file());
    let info = json(&["info"]);
    assert_eq!(info["config"]["n_layers"], 30);
    assert_eq!(info["config"]["d_model"], 576);
    let t = json(&["tokenize", "Hello, world! How are you?"]);
    assert_eq!(ids(&t["ids"]), vec![19556, 28, 905, 17, 1073, 359, 346, 47]);
    assert_eq!(t["pieces"][0], "Hello");
    let chat = json(&[
        "tokenize",
        "--chat",
        "--system",
        "You are a pirate.",
        "What is the capital of France?",
    ]);
    assert_eq!(
        ids(&chat["ids"]),
        vec![
            1, 9690, 198, 2683, 359, 253, 30820, 30, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575,
            282, 4649, 47, 2, 198, 1, 520, 9531, 198
        ]
    );
}

/// The third real model, under an alias: `persona setup --model qwen2.5-0.5b` fetched it
/// (quantized weights only: the lightest load).
#[test]
fn info_on_qwen05() {
    let info = json(&[
        "info",
        "--model",
        "qwen2.5-coder-0.5b-instruct",
        "--weights",
        "quantized",
    ]);
    assert_eq!(info["config"]["n_layers"], 24);
    assert_eq!(info["config"]["d_model"], 896);
}

#[test]
fn generate_and_score() {
    let g = json(&[
        "generate",
        "--user",
        "What is the capital of France? Answer in one sentence.",
        "--greedy",
    ]);
    assert_eq!(g["text"], "The capital of France is Paris.");
    assert_eq!(ids(&g["prompt_ids"]).len(), 42);
    assert_eq!(g["finish"], "stop");
    let gen_ids: Vec<String> = ids(&g["generated_ids"])
        .iter()
        .map(|x| x.to_string())
        .collect();
    let s = json(&[
        "score",
        "--user",
        "What is the capital of France? Answer in one sentence.",
        "--ids",
        &gen_ids.join(","),
    ]);
    assert_eq!(ids(&s["ids"]), ids(&g["generated_ids"]));
    // Greedy tokens are the model's own top-1 choices.
    assert_eq!(ids(&s["top1"]), ids(&g["generated_ids"]));
    let lp = s["logprobs"].as_array().unwrap();
    assert_eq!(lp.len(), gen_ids.len());
    assert!(lp.iter().all(|x| x.as_f64().unwrap() <= 0.0));
    let by_text = json(&[
        "score",
        "--user",
        "What is the capital of France? Answer in one sentence.",
        "--text",
        "The capital of France is Paris.",
    ]);
    assert_eq!(ids(&by_text["ids"]), ids(&g["generated_ids"]));
}

#[test]
fn steering_from_a_vector_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = 576;
    let mut zero = persona_io::LayerVectors::default();
    zero.layers.insert(10, vec![0.0; d]);
    let zpath = dir.path().join("zero.safetensors");
    zero.save(&zpath).unwrap();
    let mut strong = persona_io::LayerVectors::default();
    strong.layers.insert(
        10,
        (0..d)
            .map(|i| if i % 7 == 0 { 3.0 } else { -1.0 })
            .collect(),
    );
    let spath = dir.path().join("strong.safetensors");
    strong.save(&spath).unwrap();
    let base = [
        "generate",
        "--user",
        "Tell me about your weekend.",
        "--greedy",
        "--max-tokens",
        "24",
    ];
    let plain = json(&base);
    let zsteer = format!("{}:10:5.0", zpath.display());
    let mut with_zero = base.to_vec();
    with_zero.extend(["--steer", &zsteer]);
    assert_eq!(json(&with_zero)["generated_ids"], plain["generated_ids"]);
    let ssteer = format!("{}:10:4.0", spath.display());
    let mut with_strong = base.to_vec();
    with_strong.extend(["--steer", &ssteer]);
    assert_ne!(json(&with_strong)["generated_ids"], plain["generated_ids"]);
    let missing_layer = format!("{}:3:1.0", spath.display());
    fails_with(
        &["generate", "--user", "hi", "--steer", &missing_layer],
        &["layer 3", "[10]"],
    );
}

#[test]
fn bad_inputs_get_clear_errors() {
    fails_with(
        &["info", "--model", "/nonexistent/model.gguf"],
        &["/nonexistent/model.gguf"],
    );
    fails_with(
        &["generate", "--user", "hi", "--steer", "nofile"],
        &["FILE:LAYER:ALPHA"],
    );
    fails_with(
        &[
            "generate",
            "--user",
            "hi",
            "--steer",
            "/nonexistent.safetensors:3:1",
        ],
        &["/nonexistent.safetensors"],
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("msgs.json");
    std::fs::write(&bad, "[{\"role\": \"user\"").unwrap();
    fails_with(
        &["generate", "--messages", bad.to_str().unwrap()],
        &["msgs.json", "role"],
    );
    fails_with(&["generate"], &["--user"]);
    fails_with(&["score", "--user", "hi", "--ids", "1,x"], &["`x`"]);
    fails_with(
        &["score", "--user", "hi", "--ids", "99999999"],
        &["vocabulary"],
    );
    fails_with(&["info", "--weights", "fast"], &["--weights"]);
    fails_with(&["setup", "--model", "gpt-17"], &["gpt-17", "smollm2-135m"]);
}

#[test]
fn convert_writes_a_loadable_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    let c = json(&["convert", "--out", out.to_str().unwrap()]);
    assert_eq!(c["dtype"], "f32");
    let info = json(&["info", "--model", out.to_str().unwrap()]);
    assert_eq!(info["format"], "hugging_face");
    let g = json(&[
        "generate",
        "--model",
        out.to_str().unwrap(),
        "--user",
        "What is the capital of France? Answer in one sentence.",
        "--greedy",
    ]);
    assert_eq!(g["text"], "The capital of France is Paris.");
}

#[test]
fn extract_then_export_a_control_vector() {
    let dir = tempfile::tempdir().unwrap();
    let conv = |sys: &str, answer: &str| {
        format!(
            "{{\"messages\": [{{\"role\": \"system\", \"content\": \"{sys}\"}}, {{\"role\": \"user\", \"content\": \"How was your day?\"}}, {{\"role\": \"assistant\", \"content\": \"{answer}\"}}]}}\n"
        )
    };
    let pos = dir.path().join("pos.jsonl");
    let neg = dir.path().join("neg.jsonl");
    std::fs::write(
        &pos,
        conv("You are gloomy.", "Terrible, as always.")
            + &conv("You are gloomy.", "Awful and grey."),
    )
    .unwrap();
    std::fs::write(
        &neg,
        conv("You are cheerful.", "Wonderful, thanks!")
            + &conv("You are cheerful.", "Bright and lovely."),
    )
    .unwrap();
    let out = dir.path().join("vectors");
    let r = json(&[
        "extract",
        "--pos",
        pos.to_str().unwrap(),
        "--neg",
        neg.to_str().unwrap(),
        "--name",
        "gloom",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r["layers"], 30);
    assert_eq!(r["n_pos"], 2);
    assert_eq!(r["n_neg"], 2);
    let file = r["vector_file"].as_str().unwrap();
    assert!(file.ends_with("gloom_response_avg.safetensors"));
    let v = persona_io::LayerVectors::load(Path::new(file)).unwrap();
    assert_eq!(v.layers.len(), 30);
    assert_eq!(v.metadata["persona.kind"], "trait");
    let gguf = dir.path().join("gloom.gguf");
    let e = json(&[
        "export",
        file,
        "--out",
        gguf.to_str().unwrap(),
        "--layers",
        "5..9",
        "--scale",
        "2",
    ]);
    assert_eq!(ids(&e["layers"]), vec![5, 6, 7, 8]);
    let back = persona_io::LayerVectors::load(&gguf).unwrap();
    for (x, y) in back.layers[&6].iter().zip(&v.layers[&6]) {
        assert!((x - 2.0 * y).abs() < 1e-6);
    }
    assert_eq!(back.metadata["controlvector.model_hint"], "llama");
    let imported = dir.path().join("imported.safetensors");
    let i = json(&[
        "import",
        gguf.to_str().unwrap(),
        "--out",
        imported.to_str().unwrap(),
    ]);
    assert_eq!(ids(&i["layers"]), vec![5, 6, 7, 8]);
    assert_eq!(i["source_format"], "gguf-control-vector");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../persona-io/tests/data/bare_f32_4x3.pt");
    fails_with(
        &[
            "import",
            fixture.to_str().unwrap(),
            "--model",
            "smollm2-135m",
            "--out",
            dir.path().join("from_pt.safetensors").to_str().unwrap(),
        ],
        &["bare_f32_4x3.pt", "another model"],
    );
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, conv("a", "b") + "{\"messages\": 3}\n").unwrap();
    fails_with(
        &[
            "extract",
            "--pos",
            bad.to_str().unwrap(),
            "--neg",
            neg.to_str().unwrap(),
        ],
        &["bad.jsonl", "line 2"],
    );
}

#[test]
fn traits_list_and_show() {
    let l = json(&["traits"]);
    let names: Vec<&str> = l["traits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "evil",
            "sycophantic",
            "hallucinating",
            "apathetic",
            "humorous",
            "impolite",
            "optimistic"
        ]
    );
    let s = json(&["traits", "show", "optimistic"]);
    assert_eq!(s["instructions"].as_array().unwrap().len(), 5);
    assert_eq!(s["evaluation_questions"].as_array().unwrap().len(), 20);
    fails_with(&["traits", "show", "grumpy"], &["grumpy", "optimistic"]);
}

#[test]
fn extract_a_trait_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let spec = persona_testkit::write_file(dir.path(), "calm.toml", "name = \"calm\"\ndescription = \"Calm answers.\"\nextraction_questions = [\"How do I handle a busy day?\"]\nevaluation_questions = [\"What helps before an exam?\"]\njudge_rubric = \"Rate calm 0-100. {question} {answer}\"\n\n[[instructions]]\npos = \"Stay serene.\"\nneg = \"Be frantic.\"\n");
    let run = dir.path().join("run");
    let r = json(&[
        "extract",
        spec.to_str().unwrap(),
        "--samples",
        "2",
        "--max-tokens",
        "8",
        "--no-filter",
        "--min-kept",
        "1",
        "--judge",
        "lexicon",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(r["rollouts"], 4);
    assert_eq!(r["n_pos"], 2);
    assert_eq!(r["n_neg"], 2);
    assert_eq!(r["layers"], 30);
    assert_eq!(r["judge"], "lexicon:vader");
    assert!(Path::new(r["vector_file"].as_str().unwrap()).is_file());
    fails_with(
        &["extract", spec.to_str().unwrap(), "--judge", "gpt-9"],
        &["gpt-9", "lexicon"],
    );
    fails_with(&["extract"], &["--pos"]);

    // Steer, monitor and report the run (the fields scripts rely on).
    let (spec, run) = (spec.to_str().unwrap(), run.to_str().unwrap());
    let s = json(&[
        "steer",
        spec,
        "--run",
        run,
        "--layers",
        "10",
        "--alphas=-2,2",
        "--max-tokens",
        "8",
        "--judge",
        "lexicon",
    ]);
    let rows = s["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for (row, alpha) in rows.iter().zip([-2.0, 0.0, 2.0]) {
        assert_eq!(row["layer"], 10);
        assert_eq!(row["alpha"].as_f64(), Some(alpha));
        assert!(row["trait"].is_f64() && row["n"] == 1);
        assert!(row.get("coherence").is_some());
    }
    assert!(s.get("recommended").is_some());
    let m = json(&[
        "monitor",
        spec,
        "--run",
        run,
        "--layer",
        "10",
        "--max-shots",
        "1",
        "--max-tokens",
        "8",
        "--resamples",
        "100",
        "--judge",
        "lexicon",
    ]);
    // 8 system-prompt levels, 0 and 1 shots, over the spec's one evaluation question.
    assert_eq!(m["rows"].as_array().unwrap().len(), 10);
    assert!(m.get("pearson_r").is_some() && m.get("ci95").is_some());
    // The shift of a model against itself is exactly zero, in projection and in trait score.
    let t = json(&[
        "shift",
        spec,
        "--run",
        run,
        "--tuned",
        "smollm2-135m",
        "--layer",
        "10",
        "--max-tokens",
        "8",
        "--judge",
        "lexicon",
    ]);
    assert_eq!(t["questions"], 1);
    assert_eq!(t["shift"], 0.0);
    assert_eq!(t["trait_change"], 0.0);
    assert_eq!(t["base_model"], t["tuned_model"]);
    let r = json(&["report", run]);
    assert_eq!(
        r["sections"],
        serde_json::json!(["extract", "steer", "monitor"])
    );
    let html = std::fs::read_to_string(r["report_file"].as_str().unwrap()).unwrap();
    assert!(
        html.contains("sha256:") && html.contains("steer"),
        "the report names the model and commands"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let empty = empty.to_str().unwrap();
    fails_with(
        &["steer", "optimistic", "--run", empty],
        &["persona extract optimistic", "--vector"],
    );
    fails_with(&["report", empty], &["no results"]);
    fails_with(
        &["steer", "optimistic", "--vector", spec, "--run", empty],
        &[spec],
    );
}

#[test]
fn axis_build_prints_the_fields_scripts_use() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("axis");
    let r = json(&[
        "axis",
        "build",
        "--roles",
        "3",
        "--prompts",
        "1",
        "--questions",
        "1",
        "--max-tokens",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r["roles"].as_array().unwrap().len(), 3);
    assert_eq!(r["layers"].as_array().unwrap().len(), 30);
    assert!(r["judge"].is_null());
    let layer = &r["layers"][15];
    assert!(layer["axis_pc1_cosine"].is_f64() && layer["tau"].as_array().unwrap().len() == 4);
    assert!(Path::new(r["axis_file"].as_str().unwrap()).is_file());
    // Generation capped along that axis, and the cap's input errors.
    let axis = r["axis_file"].as_str().unwrap();
    let g = json(&[
        "generate",
        "--user",
        "Who are you?",
        "--greedy",
        "--max-tokens",
        "8",
        "--cap",
        axis,
        "--cap-percentile",
        "p75",
        "--cap-layers",
        "10..20",
    ]);
    assert!(!g["generated_ids"].as_array().unwrap().is_empty());
    fails_with(
        &[
            "generate",
            "--user",
            "hi",
            "--cap",
            axis,
            "--cap-percentile",
            "p90",
        ],
        &["p90", "p25"],
    );
    fails_with(
        &[
            "generate",
            "--user",
            "hi",
            "--cap",
            axis,
            "--cap-layers",
            "20..40",
        ],
        &["20..40", "0..30"],
    );
    // Drift along it: per-domain rows with the fields scripts use; capped runs get their own
    // folder.
    let drift_out = dir.path().join("drift");
    let d = json(&[
        "drift",
        "--axis",
        axis,
        "--domains",
        "coding,therapy",
        "--per-domain",
        "1",
        "--turns",
        "2",
        "--max-tokens",
        "4",
        "--out",
        drift_out.to_str().unwrap(),
    ]);
    assert_eq!(d["turns"], 4);
    assert_eq!(d["layer"], 15);
    let domains = d["domains"].as_array().unwrap();
    assert_eq!(domains.len(), 2);
    for dom in domains {
        assert!(dom["drift"].is_f64() && dom["per_turn"].as_array().unwrap().len() == 2);
        assert!(dom.get("drift_ci95").is_some() && dom["conversations"] == 1);
    }
    assert!(d["default_projection"].is_f64());
    assert!(Path::new(d["table_file"].as_str().unwrap()).is_file());
    // The cap evaluation: uncapped plus one setting, every column present.
    let c = json(&[
        "cap",
        "eval",
        "--axis",
        axis,
        "--percentiles",
        "p75",
        "--windows",
        "10..20",
        "--judge",
        "none",
        "--jailbreaks",
        "2",
        "--mcq",
        "4",
        "--domains",
        "coding",
        "--per-domain",
        "1",
        "--turns",
        "1",
        "--max-tokens",
        "4",
        "--out",
        dir.path().join("cap").to_str().unwrap(),
    ]);
    let rows = c["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["setting"], "p75@10..20");
    for row in rows {
        for field in [
            "refusal_rate",
            "jailbreak_projection",
            "drift_projection",
            "mcq_accuracy",
            "capability_retained",
        ] {
            assert!(row[field].is_f64(), "{field}: {row}");
        }
        assert!(row["harm_rate"].is_null(), "no judge, no harm rate");
    }
    assert!(c["judge"].is_null() && c["mcq"] == 4);
    for (run, section) in [
        (drift_out.clone(), "drift"),
        (dir.path().join("cap"), "cap"),
    ] {
        let r = json(&["report", run.to_str().unwrap()]);
        assert_eq!(r["sections"], serde_json::json!([section]));
    }
    fails_with(
        &[
            "drift",
            "--axis",
            dir.path().join("nope.safetensors").to_str().unwrap(),
        ],
        &["nope.safetensors", "persona axis build"],
    );
    fails_with(
        &["drift", "--axis", axis, "--domains", "cooking"],
        &["cooking", "therapy"],
    );
    fails_with(
        &[
            "cap",
            "eval",
            "--axis",
            axis,
            "--windows",
            "5-9",
            "--judge",
            "none",
        ],
        &["5-9", "START..END"],
    );
    // Screening a dataset along any vector file (here the axis), with --top.
    let data = persona_testkit::write_file(dir.path(), "data.jsonl", "{\"prompt\": \"Who are you?\", \"response\": \"Arr, a pirate!\"}\n{\"prompt\": \"Who are you?\", \"response\": \"I am a helpful assistant.\"}\n");
    let vector = format!("assistant={axis}");
    let s = json(&[
        "screen",
        data.to_str().unwrap(),
        "--vector",
        &vector,
        "--top",
        "1",
        "--max-tokens",
        "4",
        "--out",
        dir.path().join("screen").to_str().unwrap(),
    ]);
    assert_eq!(s["samples"], 2);
    assert_eq!(s["ranked_by"], "assistant");
    let t = &s["traits"][0];
    assert!(t["mean_delta"].is_f64() && t["ci95"].is_array() && t["layer"] == 15);
    assert!(Path::new(s["filtered_file"].as_str().unwrap()).is_file());
    fails_with(
        &["screen", data.to_str().unwrap(), "--traits", "nosuchtrait"],
        &["persona extract nosuchtrait", "--vector"],
    );
    fails_with(
        &["screen", "missing.jsonl", "--traits", "optimistic"],
        &["missing.jsonl"],
    );
    fails_with(&["axis", "build", "--prompts", "0"], &["--prompts"]);
    fails_with(
        &["axis", "build", "--roles-dir", dir.path().to_str().unwrap()],
        &["roles.toml"],
    );
}

#[test]
fn finetune_writes_an_adapter_every_command_loads() {
    let dir = tempfile::tempdir().unwrap();
    let data = persona_testkit::cli::tiny_training_set(dir.path());
    let out = dir.path().join("adapter");
    let out_s = out.to_str().unwrap();
    let r = json(&[
        "finetune",
        data.to_str().unwrap(),
        "--out",
        out_s,
        "--rank",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--lr",
        "0.01",
        "--targets",
        "attn_v,ffn_down",
    ]);
    assert_eq!(
        (r["samples"].as_u64(), r["steps"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(r["final_loss"].as_f64().unwrap() < r["first_loss"].as_f64().unwrap());
    assert_eq!(r["epoch_losses"].as_array().unwrap().len(), 2);
    assert!(out.join("adapter_model.safetensors").is_file());
    // The adapter changes what the model says, through the global --adapter flag.
    let ask = [
        "generate",
        "--user",
        "How is the weather?",
        "--greedy",
        "--max-tokens",
        "12",
    ];
    let plain = json(&ask);
    let mut with = ask.to_vec();
    with.extend(["--adapter", out_s]);
    assert_ne!(json(&with)["generated_ids"], plain["generated_ids"]);
    fails_with(
        &[
            "generate",
            "--user",
            "hi",
            "--adapter",
            dir.path().to_str().unwrap(),
        ],
        &["adapter_config.json", "persona finetune"],
    );
    fails_with(
        &[
            "finetune",
            data.to_str().unwrap(),
            "--out",
            out_s,
            "--targets",
            "attn_x",
        ],
        &["attn_x", "attn_q"],
    );
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n").unwrap();
    fails_with(
        &["finetune", bad.to_str().unwrap(), "--out", out_s],
        &["line 2", "assistant"],
    );
}
