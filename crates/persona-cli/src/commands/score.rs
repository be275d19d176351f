use anyhow::{bail, Context};
use persona_engine::{ForwardRequest, TokenSequence};
use serde_json::json;

use crate::input::{load_engine, ChatArgs, SteerArgs};
use crate::output::emit;
use crate::Global;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    chat: ChatArgs,
    /// The continuation to score, as text (appended verbatim after the prompt).
    #[arg(long, conflicts_with = "ids")]
    text: Option<String>,
    /// The continuation as token ids: comma-separated, or a JSON list.
    #[arg(long)]
    ids: Option<String>,
    /// How many of the model's top tokens to report per position.
    #[arg(long, default_value_t = 1)]
    top_k: usize,
    #[command(flatten)]
    steer: SteerArgs,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<()> {
    let engine = load_engine(g)?;
    let prompt_ids = a.chat.prompt_ids(&engine)?;
    let seq = match (&a.text, &a.ids) {
        (Some(text), None) => {
            let prompt_text = match &a.chat.prompt {
                Some(raw) => raw.clone(),
                None => engine.render_chat(&a.chat.messages()?, true)?,
            };
            engine.text_with_response(&prompt_text, text)?
        }
        (None, Some(list)) => {
            let cont = parse_ids(list)?;
            if cont.is_empty() {
                bail!("--ids is empty; give at least one token id");
            }
            let mut ids = prompt_ids.clone();
            ids.extend(cont);
            TokenSequence {
                prompt_len: prompt_ids.len(),
                ids,
            }
        }
        _ => bail!("give the continuation to score with --text TEXT or --ids 1,2,3"),
    };
    let req = ForwardRequest {
        scores: true,
        top_k: a.top_k,
        interventions: a.steer.interventions(&engine)?,
        ..Default::default()
    };
    let out = engine
        .forward_batch(std::slice::from_ref(&seq), &req, &mut |_| {})?
        .pop()
        .expect("one sequence gives one output");
    let ids: Vec<u32> = out.scores.iter().map(|s| s.id).collect();
    let logprobs: Vec<f32> = out.scores.iter().map(|s| s.logprob).collect();
    let top1: Vec<u32> = out.scores.iter().map(|s| s.top[0].0).collect();
    let top: Vec<Vec<(u32, f32)>> = out.scores.iter().map(|s| s.top.clone()).collect();
    let total: f64 = logprobs.iter().map(|&x| x as f64).sum();
    let value = json!({
        "prompt_ids": prompt_ids,
        "ids": ids,
        "logprobs": logprobs,
        "top1": top1,
        "top": top,
        "sum_logprob": total,
    });
    emit(g.format, &value, || {
        let tok = engine.tokenizer();
        println!(
            "{:>6} {:>8} {:>10}  {:<20} top-1",
            "pos", "id", "logprob", "piece"
        );
        for (i, s) in out.scores.iter().enumerate() {
            let piece = tok.pieces(&[s.id]).pop().unwrap_or_default();
            let top = tok.pieces(&[s.top[0].0]).pop().unwrap_or_default();
            let mark = if s.top[0].0 == s.id { "=" } else { " " };
            println!(
                "{:>6} {:>8} {:>10.4}  {:<20} {mark} {top}",
                seq.prompt_len + i,
                s.id,
                s.logprob,
                piece
            );
        }
        println!(
            "sum log-probability {total:.4} over {} tokens",
            out.scores.len()
        );
    })
}

fn parse_ids(s: &str) -> anyhow::Result<Vec<u32>> {
    let s = s.trim();
    if s.starts_with('[') {
        return serde_json::from_str(s).context("--ids JSON must be a list of token ids");
    }
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            x.trim()
                .parse::<u32>()
                .with_context(|| format!("`{x}` in --ids is not a token id"))
        })
        .collect()
}
