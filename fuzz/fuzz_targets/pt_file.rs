//! A `.pt` file as `persona import` reads it: the zip, its pickle, the storage.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = persona_fuzz::scratch_file("vectors.pt", data);
    let _ = persona_io::import_vectors(&path, None, None);
});
