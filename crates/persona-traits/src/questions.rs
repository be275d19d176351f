//! Question lists: dividing a trait file's single list between extraction and evaluation, and
//! reading evaluation questions from a file of their own.
//!
//! A vector must be judged on questions it was not made from. persona's TOML specs keep two
//! lists; a Persona Vectors JSON file has one (the reference code keeps the evaluation questions
//! in a second file). Such a list is divided by position, alternately: the 1st, 3rd, 5th, …
//! question go to extraction and the 2nd, 4th, 6th, … to evaluation, so an odd count gives
//! extraction the extra one. The rule depends on nothing but the order of the list, so it gives
//! the same halves on every run and platform; alternating rather than halving keeps both sides
//! alike when a list is grouped by topic; and it can be undone exactly when evaluation
//! questions arrive from a file ([`read_question_file`]), so that extraction gets the whole
//! list back.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Why a question file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum QuestionFileError {
    #[error("cannot read the questions file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, {at}: {reason}")]
    Bad {
        path: String,
        /// Where in the file: `line 4`, `item 2`, `` `questions` item 2 ``.
        at: String,
        reason: String,
    },
    #[error("{path} holds no questions: {hint}")]
    Empty { path: String, hint: String },
}

/// How a single question list was divided between extraction and evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionSplit {
    /// The file the list came from.
    pub origin: String,
    /// Distinct questions in the list.
    pub total: usize,
    /// Exact repeats (equal after trimming white space) left out before dividing, so that no
    /// question lands on both sides.
    pub repeats_dropped: usize,
    pub rule: SplitRule,
}

/// The rule a [`QuestionSplit`] followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitRule {
    /// By position, alternately: the 1st, 3rd, 5th, … question extract, the 2nd, 4th, …
    /// evaluate.
    Alternate,
    /// One question cannot be divided: extraction and evaluation share it.
    Shared,
}

impl QuestionSplit {
    /// Questions on the extraction side.
    pub fn extraction_count(&self) -> usize {
        match self.rule {
            SplitRule::Alternate => self.total.div_ceil(2),
            SplitRule::Shared => self.total,
        }
    }

    /// Questions on the evaluation side.
    pub fn evaluation_count(&self) -> usize {
        match self.rule {
            SplitRule::Alternate => self.total / 2,
            SplitRule::Shared => self.total,
        }
    }
}

impl fmt::Display for QuestionSplit {
    /// One sentence for a user: what was divided, how, and into how many.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule {
            SplitRule::Alternate => write!(
                f,
                "{} has one list of {} questions: the 1st, 3rd, 5th, … ({}) are used for extraction and the 2nd, 4th, … ({}) for evaluation",
                self.origin,
                self.total,
                self.extraction_count(),
                self.evaluation_count()
            )?,
            SplitRule::Shared => write!(
                f,
                "{} has a single question, so extraction and evaluation share it: steering and monitoring are judged on the question the vector is made from",
                self.origin
            )?,
        }
        if self.repeats_dropped > 0 {
            write!(f, " ({} repeated questions left out)", self.repeats_dropped)?;
        }
        Ok(())
    }
}

/// Divides one question list into (extraction, evaluation) by the alternating rule of the
/// module docs, after leaving out exact repeats; fewer than two distinct questions are shared.
pub fn split_questions(
    questions: Vec<String>,
    origin: &str,
) -> (Vec<String>, Vec<String>, QuestionSplit) {
    let mut seen = std::collections::HashSet::new();
    let total_given = questions.len();
    let distinct: Vec<String> = questions
        .into_iter()
        .filter(|q| seen.insert(q.trim().to_string()))
        .collect();
    let record = |rule| QuestionSplit {
        origin: origin.to_string(),
        total: distinct.len(),
        repeats_dropped: total_given - distinct.len(),
        rule,
    };
    if distinct.len() < 2 {
        let split = record(SplitRule::Shared);
        return (distinct.clone(), distinct, split);
    }
    let split = record(SplitRule::Alternate);
    let (mut extraction, mut evaluation) = (Vec::new(), Vec::new());
    for (i, q) in distinct.into_iter().enumerate() {
        match i % 2 {
            0 => extraction.push(q),
            _ => evaluation.push(q),
        }
    }
    (extraction, evaluation, split)
}

/// The list a split was made from (repeats left out), from its two sides.
pub(crate) fn rejoin(
    split: &QuestionSplit,
    extraction: &[String],
    evaluation: &[String],
) -> Vec<String> {
    match split.rule {
        SplitRule::Shared => extraction.to_vec(),
        SplitRule::Alternate => {
            let mut whole = Vec::with_capacity(extraction.len() + evaluation.len());
            for (i, q) in extraction.iter().enumerate() {
                whole.push(q.clone());
                if let Some(v) = evaluation.get(i) {
                    whole.push(v.clone());
                }
            }
            whole
        }
    }
}

/// Questions with where each stands in its source, so that errors can point at them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionFile {
    /// The file (or other source) they came from.
    pub(crate) origin: String,
    pub(crate) questions: Vec<String>,
    /// One per question: `line 4`, `item 2`, `` `questions` item 2 ``.
    pub(crate) locations: Vec<String>,
}

impl QuestionFile {
    /// Questions that come from no file (a request, a script), numbered from 1.
    pub fn from_list(origin: &str, questions: Vec<String>) -> Self {
        let locations = (1..=questions.len())
            .map(|i| format!("question {i}"))
            .collect();
        QuestionFile {
            origin: origin.to_string(),
            questions,
            locations,
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn questions(&self) -> &[String] {
        &self.questions
    }

    /// Where question `i` stands in its source (`line 4`, `item 2`, …).
    pub fn location(&self, i: usize) -> Option<&str> {
        self.locations.get(i).map(String::as_str)
    }

    /// An empty or repeated question, named by its place. (No questions at all is the
    /// caller's to refuse, with advice that fits the source.)
    pub(crate) fn check(&self) -> Result<(), QuestionFileError> {
        let mut first: HashMap<&str, &str> = HashMap::new();
        for (q, at) in self.questions.iter().zip(&self.locations) {
            if q.trim().is_empty() {
                return Err(bad(&self.origin, at.as_str(), "the question is empty"));
            }
            if let Some(earlier) = first.insert(q.trim(), at) {
                return Err(bad(
                    &self.origin,
                    at.as_str(),
                    format!("it repeats the question at {earlier}; give each question once"),
                ));
            }
        }
        Ok(())
    }
}

/// Reads questions from `path`; the extension picks the format:
///
/// - `.json`: a Persona Vectors trait file, whose `questions` list is taken (its other keys are
///   ignored, so the reference code's evaluation file serves as it is), or a JSON list of
///   strings;
/// - `.jsonl`: one question per non-blank line, as a JSON string or as an object with a
///   `question` string;
/// - anything else: UTF-8 text, one question per non-blank line, white space around it trimmed.
///
/// A UTF-8 byte-order mark at the start is skipped. Refused, with the line or item named:
/// text that is not UTF-8, malformed JSON, an entry that is not a string, an empty question,
/// and a question that repeats an earlier one; refused too: a file with no question at all.
pub fn read_question_file(path: &Path) -> Result<QuestionFile, QuestionFileError> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| QuestionFileError::Read {
        path: origin.clone(),
        source,
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        QuestionFileError::Bad {
            path: origin.clone(),
            at: format!("line {line}"),
            reason: "this is not UTF-8 text; save the file as UTF-8".into(),
        }
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let file = match ext.as_deref() {
        Some("json") => parse_json(text, &origin)?,
        Some("jsonl") => parse_jsonl(text, &origin)?,
        _ => parse_lines(text, &origin),
    };
    if file.questions.is_empty() {
        let hint = match ext.as_deref() {
            Some("json") => "give a non-empty `questions` list or a JSON list of strings",
            Some("jsonl") => "write one JSON string per line",
            _ => "write one question per line",
        };
        return Err(QuestionFileError::Empty {
            path: origin,
            hint: hint.into(),
        });
    }
    file.check()?;
    Ok(file)
}

fn bad(origin: &str, at: impl Into<String>, reason: impl Into<String>) -> QuestionFileError {
    QuestionFileError::Bad {
        path: origin.to_string(),
        at: at.into(),
        reason: reason.into(),
    }
}

/// serde_json's message without its own "at line L column C" (the error names the place).
fn json_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A non-empty question from a JSON value at `at`.
fn json_question(
    v: &serde_json::Value,
    origin: &str,
    at: &str,
) -> Result<String, QuestionFileError> {
    match v {
        serde_json::Value::String(s) if s.trim().is_empty() => {
            Err(bad(origin, at, "the question is empty"))
        }
        serde_json::Value::String(s) => Ok(s.clone()),
        other => Err(bad(
            origin,
            at,
            format!(
                "expected a question as a JSON string, found {}",
                json_kind(other)
            ),
        )),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

fn parse_json(text: &str, origin: &str) -> Result<QuestionFile, QuestionFileError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        bad(
            origin,
            format!("line {}, column {}", e.line(), e.column()),
            format!("not valid JSON: {}", json_reason(&e)),
        )
    })?;
    let (items, label) = match &value {
        serde_json::Value::Array(items) => (items, "item"),
        serde_json::Value::Object(map) => match map.get("questions") {
            Some(serde_json::Value::Array(items)) => (items, "`questions` item"),
            Some(other) => {
                return Err(bad(
                    origin,
                    "`questions`",
                    format!("expected a list of questions, found {}", json_kind(other)),
                ))
            }
            None => {
                return Err(bad(
                    origin,
                    "the top level",
                    "an object needs a `questions` list (as a Persona Vectors trait file has); or give a JSON list of strings",
                ))
            }
        },
        other => {
            return Err(bad(
                origin,
                "the top level",
                format!(
                    "expected a list of questions or a Persona Vectors trait file, found {}",
                    json_kind(other)
                ),
            ))
        }
    };
    let mut file = QuestionFile::from_list(origin, Vec::new());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{label} {}", i + 1);
        file.questions.push(json_question(item, origin, &at)?);
        file.locations.push(at);
    }
    Ok(file)
}

fn parse_jsonl(text: &str, origin: &str) -> Result<QuestionFile, QuestionFileError> {
    let mut file = QuestionFile::from_list(origin, Vec::new());
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("line {}", i + 1);
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| bad(origin, &at, format!("not valid JSON: {}", json_reason(&e))))?;
        let question = match &value {
            serde_json::Value::Object(map) => match map.get("question") {
                Some(q) => json_question(q, origin, &at)?,
                None => return Err(bad(origin, &at, "the object has no `question` string")),
            },
            other => json_question(other, origin, &at)?,
        };
        file.questions.push(question);
        file.locations.push(at);
    }
    Ok(file)
}

fn parse_lines(text: &str, origin: &str) -> QuestionFile {
    let mut file = QuestionFile::from_list(origin, Vec::new());
    for (i, line) in text.lines().enumerate() {
        let q = line.trim();
        if !q.is_empty() {
            file.questions.push(q.to_string());
            file.locations.push(format!("line {}", i + 1));
        }
    }
    file
}
