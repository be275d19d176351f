//! The `persona` binary fed bad files and flags at its file boundary (import, export, convert,
//! vector files, model files, datasets): every one is refused with a message naming the thing
//! and the fix, exits non-zero and never panics. Tests that need a model use the default one
//! from `persona setup`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn persona_in(home: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_persona"));
    cmd.args(args).env("RAYON_NUM_THREADS", "1");
    if let Some(home) = home {
        cmd.env("PERSONA_HOME", home);
    }
    cmd.output().expect("the persona binary runs")
}

fn persona(args: &[&str]) -> Output {
    persona_in(None, args)
}

fn succeeds(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "persona {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The error of a failed run; it must contain every needle and no panic.
fn error_of(out: Output, args: &[&str], needles: &[&str]) -> String {
    persona_testkit::cli::failure(&out, args, needles)
}

fn fails_with(args: &[&str], needles: &[&str]) -> String {
    error_of(persona(args), args, needles)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../persona-io/tests/data")
        .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn import_of_a_pt_file_needs_no_model() {
    let dir = tempfile::tempdir().unwrap();
    // An empty home: no model could be loaded, so the import must not try.
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let out = dir.path().join("axis.safetensors");
    let pt = fixture("bare_f32_4x3.pt");
    let args = ["import", s(&pt), "--out", s(&out), "--format", "json"];
    let json: serde_json::Value =
        serde_json::from_str(&succeeds(persona_in(Some(&home), &args), &args)).unwrap();
    assert_eq!(json["rows"], 4);
    assert_eq!(json["d"], 3);
    assert_eq!(json["layout"], "assistant-axis");
    assert_eq!(json["layout_from"], "row-count");
    let v = persona_io::LayerVectors::load(&out).unwrap();
    assert_eq!(v.layers.len(), 4);
    assert_eq!(v.metadata["persona.source_shape"], "[4, 3]");
    // With the layout given, the same rows are hidden states: rows 1..2 are layers 0..1.
    let pv = dir.path().join("pv.safetensors");
    let args = [
        "import",
        s(&pt),
        "--layout",
        "persona-vectors",
        "--out",
        s(&pv),
    ];
    let text = succeeds(persona_in(Some(&home), &args), &args);
    assert!(text.contains("2 layers of 3 dimensions"), "{text}");
    // Checked against a model only when one is named.
    fails_with(
        &[
            "import",
            s(&pt),
            "--model",
            "smollm2-135m",
            "--out",
            s(&dir.path().join("never.safetensors")),
        ],
        &["bare_f32_4x3.pt", "another model"],
    );
    assert!(!dir.path().join("never.safetensors").exists());
}

/// A safetensors file written by hand: one f32 tensor per `(name, shape, values)`.
fn safetensors_file(path: &Path, tensors: &[(&str, &[usize], &[f32])]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        for v in *values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn non_finite_vectors_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let nan = dir.path().join("nan.safetensors");
    safetensors_file(&nan, &[("layer.3", &[2], &[0.5, f32::NAN])]);
    let out = dir.path().join("nan.gguf");
    let e = fails_with(
        &["export", s(&nan), "--out", s(&out)],
        &["nan.safetensors", "layer 3", "NaN", "non-finite"],
    );
    assert!(!out.exists(), "{e}");
}

#[test]
fn generation_settings_out_of_range_are_refused_before_generating() {
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &["--max-tokens", "18446744073709551615"],
            &[
                "max_tokens 18446744073709551615",
                "context of 8192 tokens",
                "at most",
            ],
        ),
        (&["--max-tokens", "0"], &["max_tokens is 0"]),
        (&["--temperature", "NaN"], &["temperature NaN"]),
        (&["--temperature=-1"], &["temperature -1"]),
        (&["--top-p", "2"], &["top_p 2 is outside (0, 1]"]),
        (&["--top-p", "0"], &["top_p 0 is outside (0, 1]"]),
        (&["--steer-span", "50..10"], &["`50..10` is empty"]),
    ];
    for (flags, needles) in cases {
        let mut args = vec!["generate", "--user", "hi"];
        args.extend_from_slice(flags);
        fails_with(&args, needles);
    }
}

#[test]
fn errors_say_each_thing_once_and_carry_no_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.safetensors");
    let args = ["export", s(&missing), "--out", "x.gguf"];
    let e = fails_with(&args, &["missing.safetensors", "os error 2"]);
    assert_eq!(e.matches("os error 2").count(), 1, "{e}");
    // candle writes a backtrace into its errors when RUST_BACKTRACE is set.
    let model = std::fs::read(
        persona_models::ModelCache::from_env()
            .unwrap()
            .models_dir()
            .join("SmolLM2-135M-Instruct.Q4_1.gguf"),
    )
    .unwrap();
    let part = dir.path().join("part.gguf");
    std::fs::write(&part, &model[..20_000_000]).unwrap();
    let args = ["info", "--model", s(&part)];
    let out = Command::new(env!("CARGO_BIN_EXE_persona"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let e = error_of(out, &args, &["part.gguf", "truncated", "download it again"]);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(!e.contains("backtrace") && !e.contains(" at "), "{e}");
}

#[test]
fn datasets_with_a_bom_read_and_bad_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let line = "{\"prompt\": \"How was your day?\", \"response\": \"Fine.\"}\n";
    let bom = dir.path().join("bom.jsonl");
    std::fs::write(&bom, format!("\u{feff}{line}{line}")).unwrap();
    let latin1 = dir.path().join("latin1.jsonl");
    let mut bytes = line.as_bytes().to_vec();
    bytes.extend_from_slice(b"{\"prompt\": \"caf\xe9\", \"response\": \"x\"}\n");
    std::fs::write(&latin1, bytes).unwrap();
    let e = fails_with(
        &["extract", "--pos", s(&bom), "--neg", s(&latin1)],
        &[
            "latin1.jsonl, line 2",
            "not valid UTF-8",
            "save the file as UTF-8",
        ],
    );
    assert!(!e.contains("bom.jsonl"), "{e}");
    let keys = dir.path().join("keys.jsonl");
    std::fs::write(&keys, "{\"question\": \"q\", \"answer\": \"a\"}\n").unwrap();
    let e = fails_with(
        &["extract", "--pos", s(&keys), "--neg", s(&bom)],
        &[
            "keys.jsonl, line 1",
            "\"question\"",
            "{\"prompt\": \"...\", \"response\": \"...\"}",
        ],
    );
    assert!(!e.contains("untagged"), "{e}");
}

#[test]
fn writing_commands_replace_user_files_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine.safetensors");
    std::fs::write(&mine, b"a user's file").unwrap();
    let pt = fixture("bare_f32_4x3.pt");
    fails_with(
        &["import", s(&pt), "--out", s(&mine)],
        &["mine.safetensors exists", "--force"],
    );
    assert_eq!(std::fs::read(&mine).unwrap(), b"a user's file");
    let args = ["import", s(&pt), "--out", s(&mine), "--force"];
    succeeds(persona(&args), &args);
    assert_eq!(
        persona_io::LayerVectors::load(&mine).unwrap().layers.len(),
        4
    );

    let gguf = dir.path().join("mine.gguf");
    std::fs::write(&gguf, b"a user's file").unwrap();
    fails_with(
        &["export", s(&mine), "--out", s(&gguf)],
        &["mine.gguf exists", "--force"],
    );
    assert_eq!(std::fs::read(&gguf).unwrap(), b"a user's file");

    let folder = dir.path().join("hf");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("config.json"), b"{\"mine\": true}").unwrap();
    fails_with(
        &["convert", "--out", s(&folder)],
        &["config.json exists", "--force"],
    );
    assert_eq!(
        std::fs::read(folder.join("config.json")).unwrap(),
        b"{\"mine\": true}"
    );
    assert!(!folder.join("model.safetensors").exists());
}
