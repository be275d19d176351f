//! The pickle inside a `.pt` file: the input becomes `data.pkl` of an otherwise well-formed
//! `torch.save` zip (mutating the pickle inside a zip would mostly break its CRC), with a
//! storage `data/0` of 64 finite floats.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let storage: Vec<u8> = (0..64)
        .flat_map(|i| (i as f32 / 8.0).to_le_bytes())
        .collect();
    let path = persona_fuzz::scratch_file("archive.pt", &persona_fuzz::torch_zip(data, &storage));
    let _ = persona_io::read_pt_matrix(&path, None);
});
