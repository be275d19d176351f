//! `persona traits new`: clear errors before any request, and the whole request path against a
//! real OpenAI-compatible server (llama-cpp-python on the default model). The 135M model
//! cannot write a valid spec, so against it the command must fail with the validation error
//! after its retries and write nothing.

use std::path::Path;
use std::process::{Command, Output};

use persona_testkit::peers;

fn persona(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_persona"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .env_remove("PERSONA_JUDGE_MODEL")
        .env_remove("PERSONA_JUDGE_BASE_URL")
        .env_remove("OPENAI_BASE_URL")
        .output()
        .expect("the persona binary runs")
}

fn fails_with(args: &[&str], needles: &[&str]) -> String {
    persona_testkit::cli::failure(&persona(args), args, needles)
}

/// `persona traits new gloomy --description d --out OUT` and then `extra`.
fn gloomy<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "traits",
        "new",
        "gloomy",
        "--description",
        "d",
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    args
}

fn folder_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn refuses_bad_input_before_asking_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gloomy.toml");
    let out_s = out.to_str().unwrap();
    let nowhere = format!("http://127.0.0.1:{}/v1", peers::free_port());
    fails_with(
        &["traits", "new", "../gloomy", "--description", "d"],
        &["`../gloomy`", "letters, digits"],
    );
    fails_with(&gloomy(out_s, &[]), &["PERSONA_JUDGE_MODEL"]);
    fails_with(
        &gloomy(
            out_s,
            &["--judge-model", "m", "--base-url", "localhost:8000"],
        ),
        &["localhost:8000", "http://"],
    );
    let unreachable = gloomy(out_s, &["--judge-model", "m", "--base-url", &nowhere]);
    fails_with(&unreachable, &["cannot reach the judge at", &nowhere]);
    assert!(folder_is_empty(dir.path()));
    std::fs::write(&out, "mine").unwrap();
    fails_with(&unreachable, &["exists", "--force"]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "mine");
}

#[test]
fn a_weak_model_gets_retried_then_a_clear_validation_error() {
    let server = peers::LlamaServer::start(&peers::default_model_path());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gloomy.toml");
    let err = fails_with(
        &[
            "traits",
            "new",
            "gloomy",
            "--description",
            "Sees only the bad side of everything.",
            "--out",
            out.to_str().unwrap(),
            "--judge-model",
            "smollm2",
            "--base-url",
            &server.base_url(),
            "--attempts",
            "2",
            "--max-tokens",
            "48",
        ],
        &[
            "no usable spec for `gloomy` in 2 attempts",
            "rejected because",
        ],
    );
    assert_eq!(
        err.matches("asking smollm2 at").count(),
        2,
        "one request per attempt: {err}"
    );
    assert!(folder_is_empty(dir.path()), "nothing may be written");
}
