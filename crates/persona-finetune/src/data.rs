//! Finetuning samples as token ids with the response marked: the whole conversation rendered
//! with the model's chat template, the loss taken on the last assistant message only.

use std::path::Path;

use persona_engine::Engine;
use persona_io::ConversationReader;

use crate::FinetuneError;

/// One training sequence: `ids[prompt_len..]` is the response the loss is taken on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainSeq {
    pub ids: Vec<u32>,
    pub prompt_len: usize,
    /// 1-based line in the dataset file.
    pub line: usize,
}

/// Reads a chat dataset (JSONL of `{"messages": [...]}` ending with the assistant's response,
/// or `{"prompt", "response"}`) into training sequences of at most `max_len` tokens (longer
/// responses are cut; a prompt that leaves no room is an error naming its line).
pub fn load_dataset(
    engine: &Engine,
    path: &Path,
    max_len: usize,
) -> Result<Vec<TrainSeq>, FinetuneError> {
    let mut out = Vec::new();
    for record in ConversationReader::open(path)? {
        let record = record?;
        let bad = |why: String| {
            FinetuneError::Input(format!("{}, line {}: {why}", path.display(), record.line))
        };
        let seq = engine
            .chat_with_final_turn(&record.messages)
            .map_err(|e| bad(e.to_string()))?;
        if seq.prompt_len + 1 >= max_len {
            return Err(bad(format!(
                "the prompt is {} tokens, leaving no room for the response within --max-len {max_len}",
                seq.prompt_len
            )));
        }
        let mut ids = seq.ids;
        ids.truncate(max_len);
        out.push(TrainSeq {
            ids,
            prompt_len: seq.prompt_len,
            line: record.line,
        });
    }
    if out.is_empty() {
        return Err(FinetuneError::Input(format!(
            "{} holds no samples",
            path.display()
        )));
    }
    Ok(out)
}
