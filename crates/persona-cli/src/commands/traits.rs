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
    }
}
