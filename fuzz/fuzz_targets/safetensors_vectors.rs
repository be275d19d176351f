//! A persona vector file (safetensors: `layer.N` or `vectors` tensors and string metadata).
#![no_main]

use libfuzzer_sys::fuzz_target;
use persona_io::LayerVectors;

fuzz_target!(|data: &[u8]| {
    let _ = LayerVectors::from_safetensors(std::path::Path::new("fuzz.safetensors"), data);
});
