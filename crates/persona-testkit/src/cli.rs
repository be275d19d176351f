//! Checks on a finished `persona` process, shared by the CLI's test files.

use std::process::Output;

/// The stderr of a run that must have failed with a clear message: non-zero exit, every needle
/// in the message, no panic.
pub fn failure(out: &Output, args: &[&str], needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "persona {args:?} should fail: {err}");
    assert!(
        !err.contains("panicked"),
        "persona {args:?} panicked: {err}"
    );
    for n in needles {
        assert!(
            err.contains(n),
            "persona {args:?}: error lacks `{n}`: {err}"
        );
    }
    err
}

/// The single JSON document a run that must have succeeded printed on stdout; `program` names
/// it in the failure message (`persona`, `python`).
pub fn success_json(out: &Output, program: &str, args: &[&str]) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{program} {args:?} printed no single JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A two-line training set (prompt/response JSONL) in `dir/train.jsonl`, for the finetuning
/// tests: small enough to train on in seconds.
pub fn tiny_training_set(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("train.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"How is the weather?\", \"response\": \"Grey, cold and getting worse.\"}\n\
         {\"prompt\": \"How was the film?\", \"response\": \"Dull, grey and far too long.\"}\n",
    )
    .unwrap();
    data
}
