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
