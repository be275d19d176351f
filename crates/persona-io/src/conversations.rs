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

/// One conversation of a dataset file, with where it came from.
#[derive(Debug, Clone)]
pub struct DatasetRecord {
    /// 1-based line number in the file.
    pub line: usize,
    /// The line as written (to copy samples into a filtered dataset unchanged).
    pub raw: String,
    pub messages: Vec<Message>,
}

/// Streams a dataset file a line at a time: memory stays flat however large the file is.
/// Blank lines are skipped; a bad line is an error naming its number, never skipped.
pub struct ConversationReader {
    path: PathBuf,
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    line: usize,
}

impl ConversationReader {
    pub fn open(path: &Path) -> Result<Self, DatasetError> {
        let file = std::fs::File::open(path).map_err(|e| DatasetError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        Ok(ConversationReader {
            path: path.to_path_buf(),
            lines: std::io::BufRead::lines(std::io::BufReader::new(file)),
            line: 0,
        })
    }

    fn parse(&self, raw: String) -> Result<DatasetRecord, DatasetError> {
        let bad = |message: String| DatasetError::Line {
            path: self.path.clone(),
            line: self.line,
            message,
        };
        let record: Record = serde_json::from_str(&raw).map_err(|e| {
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
        Ok(DatasetRecord {
            line: self.line,
            raw,
            messages,
        })
    }
}

impl Iterator for ConversationReader {
    type Item = Result<DatasetRecord, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.line += 1;
            let raw = match self.lines.next()? {
                Ok(raw) => raw,
                Err(e) => {
                    return Some(Err(DatasetError::Read {
                        path: self.path.clone(),
                        source: e,
                    }))
                }
            };
            if !raw.trim().is_empty() {
                return Some(self.parse(raw));
            }
        }
    }
}

/// Reads every conversation of a dataset file (see [`ConversationReader`]).
pub fn read_conversations(path: &Path) -> Result<Vec<Vec<Message>>, DatasetError> {
    let out = ConversationReader::open(path)?
        .map(|r| r.map(|r| r.messages))
        .collect::<Result<Vec<_>, _>>()?;
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
