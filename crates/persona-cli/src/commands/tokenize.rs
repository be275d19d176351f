use serde_json::json;

use crate::input::load_engine;
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    /// The text to tokenize.
    text: String,
    /// Render the text as a user message with the chat template (and generation prompt) first.
    #[arg(long)]
    chat: bool,
    /// System prompt for --chat.
    #[arg(long, requires = "chat")]
    system: Option<String>,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    let engine = load_engine(g)?;
    let text = if a.chat {
        let mut msgs = Vec::new();
        if let Some(s) = a.system {
            msgs.push(persona_engine::Message {
                role: "system".into(),
                content: s,
            });
        }
        msgs.push(persona_engine::Message {
            role: "user".into(),
            content: a.text,
        });
        engine.render_chat(&msgs, true)?
    } else {
        a.text
    };
    let ids = engine.tokenizer().encode(&text)?;
    let pieces = engine.tokenizer().pieces(&ids);
    emit(g.format, &json!({"ids": ids, "pieces": pieces}), || {
        for (id, p) in ids.iter().zip(&pieces) {
            println!("{id:>7}  {p}");
        }
        println!("{} tokens", ids.len());
    })
}
