//! A trait spec, as persona's TOML and as a Persona Vectors JSON file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use persona_traits::TraitSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = TraitSpec::from_toml(text, "fuzz.toml");
    let _ = TraitSpec::from_paper_json(text, "fuzz", "fuzz.json");
});
