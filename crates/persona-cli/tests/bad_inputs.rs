//! Bad input to the pipeline commands on the real default model: each class is refused with a
//! message naming the thing and the fix, before any work and without a panic; a killed run
//! resumes from its caches, and a second run on a busy run folder is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn persona_cmd(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_persona"));
    c.args(args)
        .current_dir(cwd)
        .env("RAYON_NUM_THREADS", "1")
        .env("CANDLE_NUM_THREADS", "1");
    c
}

fn persona(args: &[&str], cwd: &Path) -> Output {
    persona_cmd(args, cwd)
        .output()
        .expect("the persona binary runs")
}

fn fails_with(args: &[&str], cwd: &Path, needles: &[&str]) {
    persona_testkit::cli::failure(&persona(args, cwd), args, needles);
}

/// A small optimistic vector made from hand-written conversations, in `dir/vectors/`.
fn vector(dir: &Path) -> PathBuf {
    let conv = |answer: &str| {
        format!(
            "{{\"messages\": [{{\"role\": \"user\", \"content\": \"How is the future?\"}}, {{\"role\": \"assistant\", \"content\": \"{answer}\"}}]}}\n"
        )
    };
    std::fs::write(
        dir.join("pos.jsonl"),
        conv("Bright and full of hope!") + &conv("Wonderful things are coming."),
    )
    .unwrap();
    std::fs::write(
        dir.join("neg.jsonl"),
        conv("Grim, as always.") + &conv("Nothing good will happen."),
    )
    .unwrap();
    let out = persona(
        &[
            "extract",
            "--pos",
            "pos.jsonl",
            "--neg",
            "neg.jsonl",
            "--name",
            "optimistic",
            "--out",
            "runs/optimistic",
        ],
        dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("runs/optimistic/optimistic_response_avg.safetensors")
}

#[test]
fn out_of_range_and_non_finite_numbers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let v = vector(d);
    let v = v.to_str().unwrap();
    for alpha in ["NaN", "inf", "-inf"] {
        let spec = format!("{v}:10:{alpha}");
        fails_with(
            &[
                "generate",
                "--user",
                "hi",
                "--steer",
                &spec,
                "--max-tokens",
                "2",
            ],
            d,
            &["ALPHA", "finite"],
        );
    }
    fails_with(
        &["generate", "--user", "hi", "--steer", &format!("{v}:99:1")],
        d,
        &["layer 99", "layers 0..30"],
    );
    // A NaN vector never reaches a file (reading one is refused too: persona-io's tests).
    let mut nan = persona_io::LayerVectors::load(Path::new(v)).unwrap();
    nan.layers.get_mut(&10).unwrap()[3] = f32::NAN;
    let e = nan
        .save(&d.join("nan.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("layer 10") && e.contains("index 3"), "{e}");
    let steer = |extra: &[&str]| {
        let mut args = vec![
            "steer",
            "optimistic",
            "--layers",
            "10",
            "--judge",
            "lexicon",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    for (extra, needles) in [
        (vec!["--alphas=NaN"], vec!["--alphas", "finite"]),
        (
            vec!["--max-tokens", "0"],
            vec!["--max-tokens 0", "at least 1"],
        ),
        (vec!["--samples", "0"], vec!["--samples 0"]),
        (vec!["--temperature=-1"], vec!["--temperature -1"]),
        (vec!["--temperature", "NaN"], vec!["--temperature NaN"]),
        (vec!["--batch-size", "0"], vec!["--batch-size 0"]),
    ] {
        let args = steer(&extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails_with(&args, d, &needles);
    }
    // Positive conversations whose responses are all empty have nothing to average.
    std::fs::write(
        d.join("empty.jsonl"),
        "{\"prompt\": \"How is the future?\", \"response\": \"\"}\n".repeat(2),
    )
    .unwrap();
    fails_with(
        &[
            "extract",
            "--pos",
            "empty.jsonl",
            "--neg",
            "neg.jsonl",
            "--out",
            "e",
        ],
        d,
        &["pos", "responses empty"],
    );
    assert!(!d.join("e/trait_response_avg.safetensors").exists());
    fails_with(
        &["--threads", "0", "info"],
        d,
        &["--threads 0", "at least 1"],
    );
    // Nothing was generated for the refused runs.
    assert!(!d.join("runs/optimistic/steer/answers_cache.jsonl").exists());
}

#[test]
fn a_killed_run_resumes_and_a_busy_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    vector(d);
    let args = [
        "steer",
        "optimistic",
        "--layers",
        "10",
        "--alphas=-2,2",
        "--questions",
        "8",
        "--max-tokens",
        "24",
        "--batch-size",
        "4",
        "--judge",
        "lexicon",
    ];
    let cache = d.join("runs/optimistic/steer/answers_cache.jsonl");
    let lines = || {
        std::fs::read_to_string(&cache)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    // Kill the run once its first batch is cached (SIGKILL: no cleanup runs).
    let mut child = persona_cmd(&args, d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while lines() == 0 && start.elapsed() < std::time::Duration::from_secs(300) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let after_kill = lines();
    assert!(
        (1..24).contains(&after_kill),
        "the run was not killed mid-way ({after_kill} answers cached)"
    );
    // The killed process's lock is stale: a rerun takes it over and generates only the rest.
    let out = persona(&args, d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lines(),
        24,
        "1 baseline + 2 settings × 8 questions, each generated once"
    );
    assert!(!d.join("runs/optimistic/steer/.persona.lock").exists());

    // A live process holding the folder: the second run is refused, naming it.
    let holder = std::process::id().to_string();
    std::fs::write(
        d.join("runs/optimistic/steer/.persona.lock"),
        format!("{holder}\npersona steer optimistic\n"),
    )
    .unwrap();
    fails_with(
        &args,
        d,
        &["in use by process", &holder, "persona steer optimistic"],
    );
}

#[test]
fn a_single_question_list_is_split_and_evaluation_questions_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("pv.json"),
        r#"{"instruction": [{"pos": "Be cheerful.", "neg": "Be gloomy."}], "questions": ["q1?", "q2?", "q3?", "q4?", "q5?"], "eval_prompt": "Rate {question} {answer} 0-100"}"#,
    )
    .unwrap();
    let out = persona(&["traits", "show", "pv.json", "--format", "json"], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        spec["extraction_questions"],
        serde_json::json!(["q1?", "q3?", "q5?"])
    );
    assert_eq!(
        spec["evaluation_questions"],
        serde_json::json!(["q2?", "q4?"])
    );
    let out = persona(&["steer", "pv.json", "--vector", "missing.safetensors"], d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("note: pv.json has one list of 5 questions"),
        "{err}"
    );
    // An evaluation file repeating an extraction question is refused, naming its line.
    std::fs::write(d.join("eval.txt"), "e1?\nq1?\n").unwrap();
    fails_with(
        &[
            "steer",
            "pv.json",
            "--eval-questions",
            "eval.txt",
            "--vector",
            "v",
        ],
        d,
        &["eval.txt, line 2", "also an extraction question"],
    );
}
