//! A conversation dataset (JSONL of `messages` or `prompt`/`response` records).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = persona_fuzz::scratch_file("dataset.jsonl", data);
    let _ = persona_io::read_conversations(&path);
});
