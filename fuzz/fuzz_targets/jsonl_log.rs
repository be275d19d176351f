//! An append-only JSONL log (rollouts, judgements) read back after a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = persona_fuzz::scratch_file("log.jsonl", data);
    let _ = persona_io::read_log::<serde_json::Value>(&path);
});
