use std::io::Write;

use persona_engine::{GenerateRequest, SamplingParams};
use serde_json::json;

use crate::input::{load_engine, ChatArgs, SteerArgs};
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    chat: ChatArgs,
    /// Greedy decoding (argmax). Otherwise sampled with --temperature / --top-p / --seed.
    #[arg(long)]
    greedy: bool,
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Do not stop at end-of-turn tokens.
    #[arg(long)]
    ignore_eos: bool,
    #[command(flatten)]
    steer: SteerArgs,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    let engine = load_engine(g)?;
    let prompt_ids = a.chat.prompt_ids(&engine)?;
    let req = GenerateRequest {
        prompts: vec![prompt_ids.clone()],
        sampling: SamplingParams {
            temperature: if a.greedy { 0.0 } else { a.temperature },
            top_p: a.top_p,
            seed: a.seed,
            max_tokens: a.max_tokens,
            stop_ids: Vec::new(),
            ignore_stop: a.ignore_eos,
        },
        interventions: a.steer.interventions(&engine)?,
        batch_size: 1,
        ..Default::default()
    };
    let out = engine
        .generate(&req, &mut |_| {})?
        .pop()
        .expect("one prompt gives one generation");
    emit(
        g.format,
        &json!({
            "prompt_ids": out.prompt_ids,
            "generated_ids": out.generated_ids,
            "text": out.text,
            "finish": out.finish,
        }),
        || {
            println!("{}", out.text);
            let _ = std::io::stdout().flush();
        },
    )
}
