//! Conversation datasets: JSONL with one `{"messages": [{role, content}, ...]}` per line (the
//! common OpenAI / Hugging Face chat format), or `{"prompt": ..., "response": ...}`.

use std::path::{Path, PathBuf};

use persona_tokenizer::Message;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path} holds no conversations")]
    Empty { path: PathBuf },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Record {
    Chat { messages: Vec<Message> },
    Pair { prompt: String, response: String },
}

/// Reads every line; a bad line is an error naming its number, never skipped.
pub fn read_conversations(path: &Path) -> Result<Vec<Vec<Message>>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| DatasetError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let record: Record = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "not a {{\"messages\": [...]}} or {{\"prompt\", \"response\"}} record ({e})"
            ))
        })?;
        let messages = match record {
            Record::Chat { messages } => messages,
            Record::Pair { prompt, response } => vec![
                Message::new("user", prompt),
                Message::new("assistant", response),
            ],
        };
        if messages.is_empty() {
            return Err(bad("the conversation has no messages".into()));
        }
        out.push(messages);
    }
    if out.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_formats_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(
            &p,
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n\n{\"prompt\": \"a\", \"response\": \"b\"}\n",
        )
        .unwrap();
        let c = read_conversations(&p).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1][1].role, "assistant");
        assert_eq!(c[1][1].content, "b");
        std::fs::write(
            &p,
            "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"oops\": 1}\n",
        )
        .unwrap();
        let e = read_conversations(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("d.jsonl"), "{e}");
        std::fs::write(&p, "\n").unwrap();
        assert!(read_conversations(&p)
            .unwrap_err()
            .to_string()
            .contains("no conversations"));
    }
}
