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

/// What a line must look like, for messages about lines that do not.
const LINE_FORMS: &str = r#"each line must be {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]} or {"prompt": "...", "response": "..."}"#;

#[derive(Deserialize)]
struct Pair {
    prompt: String,
    response: String,
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
    reader: std::io::BufReader<std::fs::File>,
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
            reader: std::io::BufReader::new(file),
            line: 0,
        })
    }

    fn parse(&self, raw: String) -> Result<DatasetRecord, DatasetError> {
        let bad = |message: String| DatasetError::Line {
            path: self.path.clone(),
            line: self.line,
            message,
        };
        let value: serde_json::Value = serde_json::from_str(&raw)
            .map_err(|e| bad(format!("not valid JSON ({e}); {LINE_FORMS}")))?;
        let messages = match &value {
            serde_json::Value::Object(o) if o.contains_key("messages") => {
                serde_json::from_value::<Vec<Message>>(o["messages"].clone()).map_err(|e| {
                    bad(format!(
                        "`messages` must be a list of {{\"role\", \"content\"}} objects ({e})"
                    ))
                })?
            }
            serde_json::Value::Object(o)
                if o.contains_key("prompt") || o.contains_key("response") =>
            {
                let pair: Pair = serde_json::from_value(value.clone()).map_err(|e| {
                    bad(format!(
                        "a prompt/response record needs both as strings ({e})"
                    ))
                })?;
                vec![
                    Message::new("user", pair.prompt),
                    Message::new("assistant", pair.response),
                ]
            }
            serde_json::Value::Object(o) => {
                let keys: Vec<&String> = o.keys().collect();
                return Err(bad(format!("it has the keys {keys:?}; {LINE_FORMS}")));
            }
            _ => return Err(bad(format!("not a JSON object; {LINE_FORMS}"))),
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
            let mut bytes = Vec::new();
            match std::io::BufRead::read_until(&mut self.reader, b'\n', &mut bytes) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    return Some(Err(DatasetError::Read {
                        path: self.path.clone(),
                        source: e,
                    }))
                }
            }
            let raw = match crate::jsonl::line_text(bytes, self.line) {
                Ok(raw) => raw,
                Err(message) => {
                    return Some(Err(DatasetError::Line {
                        path: self.path.clone(),
                        line: self.line,
                        message,
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
        assert!(
            e.contains(r#"["oops"]"#) && e.contains(r#"{"prompt": "...""#),
            "{e}"
        );
        assert!(!e.contains("untagged"), "{e}");
        std::fs::write(&p, "\n").unwrap();
        assert!(read_conversations(&p)
            .unwrap_err()
            .to_string()
            .contains("no conversations"));
    }
}

#[cfg(test)]
mod encoding_tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_is_skipped_and_bad_utf8_is_named_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bom.jsonl");
        std::fs::write(
            &p,
            "\u{feff}{\"prompt\": \"a\", \"response\": \"b\"}\r\n{\"prompt\": \"c\", \"response\": \"d\"}",
        )
        .unwrap();
        let c = read_conversations(&p).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1][1].content, "d");
        let mut bytes = b"{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.extend_from_slice(b"\", \"response\": \"b\"}\n");
        std::fs::write(&p, bytes).unwrap();
        let e = read_conversations(&p).unwrap_err().to_string();
        assert!(
            e.contains("bom.jsonl, line 2") && e.contains("UTF-8") && e.contains("byte 13"),
            "{e}"
        );
        std::fs::write(&p, "[1, 2]\n").unwrap();
        let e = read_conversations(&p).unwrap_err().to_string();
        assert!(e.contains("not a JSON object"), "{e}");
        std::fs::write(&p, "{\"messages\": 3}\n").unwrap();
        let e = read_conversations(&p).unwrap_err().to_string();
        assert!(e.contains("`messages` must be a list"), "{e}");
    }
}
