use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use persona_judges::{ChatMessage, OpenAiClient, OpenAiConfig};
use serde_json::json;

use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// The built-in traits (the default).
    List,
    /// One trait spec in full: a built-in name, a .toml spec or a Persona Vectors .json file.
    Show { name: String },
    /// Have a language model behind an OpenAI-compatible server write a new spec (instruction
    /// pairs, extraction and evaluation questions, judge rubric) from a description.
    New(NewArgs),
}

#[derive(clap::Args)]
struct NewArgs {
    /// The trait's name (letters, digits, `-`, `_`): the spec's `name` and default file name.
    name: String,
    /// What the trait looks like in an assistant's replies, in a sentence or two.
    #[arg(long)]
    description: String,
    /// Where to write the spec (default: traits/NAME.toml).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The model that writes the spec (default: PERSONA_JUDGE_MODEL).
    #[arg(long)]
    judge_model: Option<String>,
    /// The OpenAI-compatible API root (default: PERSONA_JUDGE_BASE_URL, OPENAI_BASE_URL, or
    /// https://api.openai.com/v1); the key comes from PERSONA_JUDGE_API_KEY or OPENAI_API_KEY.
    #[arg(long)]
    base_url: Option<String>,
    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,
    /// Replies to ask for before giving up (each retry says what was wrong).
    #[arg(long, default_value_t = 3)]
    attempts: usize,
    /// Longest reply, in tokens (a spec is about 2500).
    #[arg(long, default_value_t = 6000)]
    max_tokens: u32,
    /// Sampling temperature of the writing model.
    #[arg(long, default_value_t = 0.7)]
    temperature: f64,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    match a.action.unwrap_or(Action::List) {
        Action::List => {
            let traits: Vec<persona_traits::TraitSpec> = persona_traits::BUILTIN_NAMES
                .iter()
                .filter_map(|n| persona_traits::builtin(n))
                .collect();
            let rows: Vec<serde_json::Value> = traits
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description}))
                .collect();
            emit(g.format, &json!({ "traits": rows }), || {
                for t in &traits {
                    println!("{:<14} {}", t.name, t.description);
                }
            })
        }
        Action::Show { name } => {
            let t = persona_traits::resolve(&name)?;
            emit(g.format, &t, || {
                println!("{}: {}", t.name, t.description);
                if let Some(split) = &t.question_split {
                    println!("note: {split}");
                }
                println!("\ninstruction pairs ({}):", t.instructions.len());
                for (i, p) in t.instructions.iter().enumerate() {
                    println!("  {i}+ {}", p.pos);
                    println!("  {i}- {}", p.neg);
                }
                println!("\nextraction questions ({}):", t.extraction_questions.len());
                for q in &t.extraction_questions {
                    println!("  - {q}");
                }
                println!("\nevaluation questions ({}):", t.evaluation_questions.len());
                for q in &t.evaluation_questions {
                    println!("  - {q}");
                }
                println!("\njudge rubric:\n{}", t.judge_rubric.trim());
            })
        }
        Action::New(a) => new_spec(g, a),
    }
}

fn new_spec(g: &Global, a: NewArgs) -> anyhow::Result<()> {
    persona_traits::generate::check_name(&a.name)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| Path::new("traits").join(format!("{}.toml", a.name)));
    if out.exists() && !a.force {
        bail!(
            "{} exists: pass --force to replace it, or --out another path",
            out.display()
        );
    }
    let mut config = OpenAiConfig::from_env(a.judge_model.as_deref())?;
    if let Some(url) = &a.base_url {
        config.base_url = url.trim_end_matches('/').to_string();
    }
    // A whole spec is a long reply: give slow local servers time to write it.
    config.timeout = config.timeout.max(Duration::from_secs(900));
    let client = OpenAiClient::new(config)?;
    let (model, base) = (
        client.config().model.clone(),
        client.config().base_url.clone(),
    );
    let mut attempt = 0;
    let mut chat = |prompt: &str| -> Result<String, String> {
        attempt += 1;
        eprintln!(
            "asking {model} at {base} for a spec of `{}` (attempt {attempt} of {})…",
            a.name, a.attempts
        );
        client
            .chat(&[ChatMessage::user(prompt)], a.max_tokens, a.temperature)
            .map_err(|e| e.to_string())
    };
    let generated = persona_traits::generate_spec(&a.name, &a.description, a.attempts, &mut chat)?;
    if out.file_name().is_none() {
        bail!("--out {} has no file name", out.display());
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    persona_core::fs::write_atomic(&out, generated.toml.as_bytes())?;
    emit(
        g.format,
        &json!({"path": out, "name": generated.spec.name, "attempts": generated.attempts}),
        || {
            println!(
                "wrote {} ({} attempt{}). Review it, then: persona extract {}",
                out.display(),
                generated.attempts,
                if generated.attempts == 1 { "" } else { "s" },
                out.display()
            )
        },
    )
}
