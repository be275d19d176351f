//! A llama.cpp control vector (`direction.N` tensors) read as persona reads vector files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use persona_io::LayerVectors;

fuzz_target!(|data: &[u8]| {
    // `load` picks the GGUF reader by the magic; anything else goes to the safetensors one,
    // which has its own target.
    if !data.starts_with(b"GGUF") {
        return;
    }
    let path = persona_fuzz::scratch_file("cv.gguf", data);
    let _ = LayerVectors::load(&path);
});
