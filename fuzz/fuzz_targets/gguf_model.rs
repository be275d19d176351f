//! A model file: `Engine::load` of a `.gguf` (header, metadata, configuration, vocabulary,
//! chat template, every weight tensor).
#![no_main]

use libfuzzer_sys::fuzz_target;
use persona_engine::{Engine, LoadOptions};

fuzz_target!(|data: &[u8]| {
    let path = persona_fuzz::scratch_file("model.gguf", data);
    let _ = Engine::load(&path, &LoadOptions::default());
});
