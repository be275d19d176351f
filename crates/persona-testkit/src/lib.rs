//! Test support shared by persona's crates, used only as a dev-dependency.
//!
//! - this module: the frozen reference files (`$PERSONA_SHARED`, default `<repo>/../shared`)
//!   and those kept in the repository (`data/`), the real models the tests run on, and small
//!   helpers over the engine and numpy files;
//! - [`module_graph`]: which of a crate's modules import which, for the tests that keep
//!   those imports one-way;
//! - [`peers`]: the Python test peers (llama-cpp-python and its OpenAI-compatible server);
//! - [`tokenizer`]: a GGUF's tokenizer metadata read without the engine, for the tokenizer's
//!   own tests.
//!
//! Everything here fails (never skips) when what a test needs is missing, with the command
//! that sets it up.

pub mod cli;
pub mod module_graph;
pub mod peers;
pub mod tokenizer;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use persona_engine::{
    Engine, ForwardOutput, ForwardRequest, LoadOptions, TokenSequence, WeightMode,
};

/// The reference folder beside the project (`$PERSONA_SHARED` overrides).
pub fn shared() -> PathBuf {
    match std::env::var_os("PERSONA_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// A JSON file under `shared/reference/`.
pub fn reference(name: &str) -> serde_json::Value {
    read_json(
        &shared().join("reference").join(name),
        "set PERSONA_SHARED to the shared folder",
    )
}

/// A JSON file under this crate's `data/`: references kept in the repository.
pub fn repo_reference(name: &str) -> serde_json::Value {
    read_json(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join(name),
        "the file belongs to the repository",
    )
}

fn read_json(path: &Path, hint: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read reference file {} ({e}); {hint}",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Token ids from reference JSON.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).expect("a list of token ids")
}

/// Where a reference file lives.
#[derive(Debug, Clone, Copy)]
pub enum ReferenceFile {
    /// Under `shared/reference/` ([`reference`]).
    Shared(&'static str),
    /// Under this crate's `data/` ([`repo_reference`]).
    Repo(&'static str),
}

impl ReferenceFile {
    pub fn read(self) -> serde_json::Value {
        match self {
            ReferenceFile::Shared(name) => reference(name),
            ReferenceFile::Repo(name) => repo_reference(name),
        }
    }
}

/// A Qwen2.5-Coder model checked against llama.cpp, and what it must look like.
#[derive(Debug, Clone, Copy)]
pub struct QwenModel {
    /// The known model's name (`persona setup --model NAME`).
    pub name: &'static str,
    pub n_layers: usize,
    pub d_model: usize,
    /// llama.cpp's token ids for raw strings and its greedy tokens for chat prompts
    /// (`tokenize`: `[{text, ids}]`; `prompts`: name → `{messages, prompt_text, prompt_ids,
    /// greedy_ids, text}`).
    pub reference: ReferenceFile,
}

impl QwenModel {
    /// The model's cached file; fails (never skips) with the setup command when it is not set up.
    pub fn path(&self) -> PathBuf {
        known_model_path(self.name)
    }
}

/// Qwen2.5-Coder-1.5B-Instruct (Q4_K_M), the local judge.
pub const QWEN_1_5B: QwenModel = QwenModel {
    name: "qwen2.5-1.5b",
    n_layers: 28,
    d_model: 1536,
    reference: ReferenceFile::Shared("greedy_llamacpp_qwen2.5-1.5b.json"),
};

/// Qwen2.5-Coder-0.5B-Instruct (Q4_K_M); its reference is written by
/// `scripts/make_qwen05_reference.py`.
pub const QWEN_0_5B: QwenModel = QwenModel {
    name: "qwen2.5-0.5b",
    n_layers: 24,
    d_model: 896,
    reference: ReferenceFile::Repo("greedy_llamacpp_qwen2.5-0.5b.json"),
};

/// The default model's path; fails (never skips) when it is not set up.
pub fn default_model_path() -> PathBuf {
    let cache = persona_models::ModelCache::from_env().expect("a cache folder");
    persona_models::resolve(&cache, None).unwrap_or_else(|e| {
        panic!("{e}\nrun `persona setup` (or the README's first command) first")
    })
}

/// A known model's cached file; fails (never skips) when it is missing or damaged, with the
/// `persona setup --model NAME` command that fetches it.
pub fn known_model_path(name: &str) -> PathBuf {
    let cache = persona_models::ModelCache::from_env().expect("a cache folder");
    persona_models::resolve(&cache, Some(name)).unwrap_or_else(|e| {
        panic!("{e}\n(scripts/test.sh runs `persona setup --model {name}` before the tests)")
    })
}

/// The default model in the weight layout `mode`.
pub fn load(mode: WeightMode) -> Engine {
    Engine::load(
        &default_model_path(),
        &LoadOptions {
            weights: mode,
            ..Default::default()
        },
    )
    .expect("the default model loads")
}

/// The default model in its default layout, loaded once per test binary.
pub fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| load(WeightMode::Auto))
}

/// Arrays of a `numpy.savez` file: name → (shape, f32 data).
pub fn load_npz(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut zip = zip::ZipArchive::new(file).expect("npz is a zip");
    let mut out = HashMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry
            .name()
            .expect("utf-8 name")
            .trim_end_matches(".npy")
            .to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'<f4'") && header.contains("'fortran_order': False"));
        let shape_text = header
            .split("'shape': (")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap();
        let shape: Vec<usize> = shape_text
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().unwrap())
            .collect();
        let data: Vec<f32> = bytes[10 + header_len..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, (shape, data));
    }
    out
}

/// ‖a − b‖ / ‖b‖.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum();
    (diff / nb).sqrt()
}

/// `prompt` followed by `continuation` as one teacher-forced sequence.
pub fn forced(prompt: &[u32], continuation: &[u32]) -> TokenSequence {
    TokenSequence {
        ids: [prompt, continuation].concat(),
        prompt_len: prompt.len(),
    }
}

/// One sequence through `engine` with `req`.
pub fn run_one(engine: &Engine, seq: &TokenSequence, req: &ForwardRequest) -> ForwardOutput {
    engine
        .forward_batch(std::slice::from_ref(seq), req, &mut |_| {})
        .unwrap()
        .remove(0)
}

/// How many scored positions have the model's top-1 equal to `want`.
pub fn top1_agreement(out: &ForwardOutput, want: &[u32]) -> usize {
    out.scores
        .iter()
        .zip(want)
        .filter(|(s, w)| s.top[0].0 == **w)
        .count()
}

/// Asserts that each of `names` is a file in `dir`, naming the first one missing.
pub fn assert_files(dir: &Path, names: &[&str]) {
    for name in names {
        assert!(
            dir.join(name).is_file(),
            "{name} was not written in {}",
            dir.display()
        );
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {} ({e})", path.display()));
    path
}
