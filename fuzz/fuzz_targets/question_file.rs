//! A question file; the first byte picks its extension (which picks the format): 0 `.json`,
//! 1 `.jsonl`, anything else `.txt`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, text)) = data.split_first() else {
        return;
    };
    let name = match kind {
        0 => "questions.json",
        1 => "questions.jsonl",
        _ => "questions.txt",
    };
    let path = persona_fuzz::scratch_file(name, text);
    let _ = persona_traits::read_question_file(&path);
});
