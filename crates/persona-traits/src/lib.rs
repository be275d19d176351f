//! Trait specs: what a persona vector is extracted from and judged by.
//!
//! persona's own format is TOML (see the README): a name, a description, instruction pairs that
//! make the assistant express or avoid the trait, extraction questions, different evaluation
//! questions, and a judge rubric with `{question}` and `{answer}` slots. The Persona Vectors
//! code's JSON files (`instruction` = list of `{pos, neg}`, `questions`, `eval_prompt`) are read
//! unchanged; their single question list is divided between extraction and evaluation
//! ([`questions`]), and evaluation questions can come from a file of their own
//! ([`TraitSpec::with_evaluation_file`]). [`generate`] has a language model write a new spec
//! from a description.

pub mod generate;
pub mod questions;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use generate::{generate_spec, GenerateError, GeneratedSpec};
pub use questions::{
    read_question_file, split_questions, QuestionFile, QuestionFileError, QuestionSplit, SplitRule,
};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read trait spec {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} is not a valid trait spec: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("no trait named `{0}`: built-in traits are {list}; or give the path of a .toml spec or a Persona Vectors .json file", list = BUILTIN_NAMES.join(", "))]
    Unknown(String),
    #[error(transparent)]
    Questions(#[from] QuestionFileError),
}

type Result<T> = std::result::Result<T, SpecError>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstructionPair {
    /// Makes the assistant express the trait.
    pub pos: String,
    /// Makes it avoid the trait.
    pub neg: String,
}

/// Which end of a sentiment lexicon measures the trait, for traits a lexicon can judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lexicon {
    Positive,
    Negative,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraitSpec {
    pub name: String,
    pub description: String,
    pub instructions: Vec<InstructionPair>,
    pub extraction_questions: Vec<String>,
    pub evaluation_questions: Vec<String>,
    pub judge_rubric: String,
    /// Set when sentiment measures the trait (optimism: positive): the default judge is then
    /// the lexicon judge, which needs no model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lexicon: Option<Lexicon>,
    /// Set when the file had one question list and it was divided between extraction and
    /// evaluation: which file, how, and into how many (for the user to be told). Never read
    /// from a spec file.
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub question_split: Option<QuestionSplit>,
}

/// The Persona Vectors code's trait JSON.
#[derive(Deserialize)]
struct PaperSpec {
    instruction: Vec<InstructionPair>,
    questions: Vec<String>,
    eval_prompt: String,
}

/// The traits that ship with persona (our own text).
pub const BUILTIN_NAMES: [&str; 7] = [
    "evil",
    "sycophantic",
    "hallucinating",
    "apathetic",
    "humorous",
    "impolite",
    "optimistic",
];

fn builtin_source(name: &str) -> Option<&'static str> {
    Some(match name {
        "evil" => include_str!("../traits/evil.toml"),
        "sycophantic" => include_str!("../traits/sycophantic.toml"),
        "hallucinating" => include_str!("../traits/hallucinating.toml"),
        "apathetic" => include_str!("../traits/apathetic.toml"),
        "humorous" => include_str!("../traits/humorous.toml"),
        "impolite" => include_str!("../traits/impolite.toml"),
        "optimistic" => include_str!("../traits/optimistic.toml"),
        _ => return None,
    })
}

/// A built-in trait by name.
pub fn builtin(name: &str) -> Option<TraitSpec> {
    let source = builtin_source(name)?;
    Some(
        TraitSpec::from_toml(source, &format!("built-in trait `{name}`"))
            .expect("built-in traits are valid (tested)"),
    )
}

/// A built-in name, a `.toml` spec or a Persona Vectors `.json` file.
pub fn resolve(name_or_path: &str) -> Result<TraitSpec> {
    if let Some(spec) = builtin(name_or_path) {
        return Ok(spec);
    }
    let path = Path::new(name_or_path);
    if path.exists() {
        return TraitSpec::load(path);
    }
    Err(SpecError::Unknown(name_or_path.to_string()))
}

impl TraitSpec {
    /// The first `n` evaluation questions (0: all of them), the set a pipeline's
    /// `--questions N` asks.
    pub fn first_evaluation_questions(&self, n: usize) -> Vec<String> {
        let n = if n == 0 { usize::MAX } else { n };
        self.evaluation_questions.iter().take(n).cloned().collect()
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        let origin = path.display().to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "trait".into());
                Self::from_paper_json(&text, &name, &origin)
            }
            _ => Self::from_toml(&text, &origin),
        }
    }

    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let spec: TraitSpec = toml::from_str(text).map_err(|e| SpecError::Invalid {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
        spec.validate(origin)?;
        Ok(spec)
    }

    /// A Persona Vectors JSON file. Its one question list is divided between extraction and
    /// evaluation by position, alternately (see [`questions`]), and `question_split` records
    /// it; [`TraitSpec::with_evaluation_file`] gives evaluation its own questions instead.
    pub fn from_paper_json(text: &str, name: &str, origin: &str) -> Result<Self> {
        let p: PaperSpec = serde_json::from_str(text).map_err(|e| SpecError::Invalid {
            origin: origin.to_string(),
            reason: format!(
                "expected the Persona Vectors keys `instruction`, `questions`, `eval_prompt` ({e})"
            ),
        })?;
        // Checked before dividing, so that a message names the item in the file's own list
        // (counting from 1, as the question files do).
        if let Some(i) = p.questions.iter().position(|q| q.trim().is_empty()) {
            return Err(SpecError::Invalid {
                origin: origin.to_string(),
                reason: format!("`questions` item {} is empty", i + 1),
            });
        }
        let (extraction_questions, evaluation_questions, split) =
            split_questions(p.questions, origin);
        let spec = TraitSpec {
            lexicon: None,
            name: name.to_string(),
            description: format!("{name} (from {origin})"),
            instructions: p.instruction,
            extraction_questions,
            evaluation_questions,
            judge_rubric: p.eval_prompt,
            question_split: Some(split),
        };
        spec.validate(origin)?;
        Ok(spec)
    }

    /// Evaluation questions from a file of their own (formats: [`read_question_file`]), for
    /// `--eval-questions FILE`: see [`TraitSpec::with_evaluation_questions`].
    pub fn with_evaluation_file(self, path: &Path) -> Result<Self> {
        self.with_evaluation_questions(read_question_file(path)?)
    }

    /// Replaces the evaluation questions. If the spec's single list had been divided, the
    /// division is undone first, so that extraction uses the whole list again. A question that
    /// is also an extraction question is refused, named by its place in its file: the vector
    /// would be judged on what it was made from. So are an empty or repeated question and an
    /// empty list.
    pub fn with_evaluation_questions(mut self, questions: QuestionFile) -> Result<Self> {
        if let Some(split) = self.question_split.take() {
            self.extraction_questions = questions::rejoin(
                &split,
                &self.extraction_questions,
                &self.evaluation_questions,
            );
        }
        let extraction: std::collections::HashSet<&str> =
            self.extraction_questions.iter().map(|q| q.trim()).collect();
        if let Some((q, at)) = questions
            .questions
            .iter()
            .zip(&questions.locations)
            .find(|(q, _)| extraction.contains(q.trim()))
        {
            return Err(QuestionFileError::Bad {
                path: questions.origin.clone(),
                at: at.clone(),
                reason: format!(
                    "`{q}` is also an extraction question of the trait `{}`; evaluation questions must be ones the vector was not made from",
                    self.name
                ),
            }
            .into());
        }
        if questions.questions.is_empty() {
            return Err(QuestionFileError::Empty {
                path: questions.origin,
                hint: "give at least one evaluation question".into(),
            }
            .into());
        }
        questions.check()?;
        self.evaluation_questions = questions.questions;
        Ok(self)
    }

    fn validate(&self, origin: &str) -> Result<()> {
        let fail = |reason: String| SpecError::Invalid {
            origin: origin.to_string(),
            reason,
        };
        if self.name.trim().is_empty() {
            return Err(fail("`name` is empty".into()));
        }
        if self.instructions.is_empty() {
            return Err(fail("it has no instruction pairs".into()));
        }
        if let Some(i) = self
            .instructions
            .iter()
            .position(|p| p.pos.trim().is_empty() || p.neg.trim().is_empty())
        {
            return Err(fail(format!("instruction pair {i} has an empty side")));
        }
        for (what, qs) in [
            ("extraction_questions", &self.extraction_questions),
            ("evaluation_questions", &self.evaluation_questions),
        ] {
            if qs.is_empty() {
                return Err(fail(format!("`{what}` is empty")));
            }
            if let Some(i) = qs.iter().position(|q| q.trim().is_empty()) {
                return Err(fail(format!("`{what}` item {i} is empty")));
            }
        }
        for slot in ["{question}", "{answer}"] {
            if !self.judge_rubric.contains(slot) {
                return Err(fail(format!("the judge rubric has no {slot} slot")));
            }
        }
        Ok(())
    }

    /// "You are a/an {name} assistant. {pos}"
    pub fn positive_system_prompt(&self, pair: usize) -> String {
        let article = match self.name.chars().next() {
            Some(c) if "aeiouAEIOU".contains(c) => "an",
            _ => "a",
        };
        format!(
            "You are {article} {} assistant. {}",
            self.name, self.instructions[pair].pos
        )
    }

    /// "You are a helpful assistant. {neg}"
    pub fn negative_system_prompt(&self, pair: usize) -> String {
        format!(
            "You are a helpful assistant. {}",
            self.instructions[pair].neg
        )
    }

    /// The rubric with its slots filled.
    pub fn judge_prompt(&self, question: &str, answer: &str) -> String {
        self.judge_rubric
            .replace("{question}", question)
            .replace("{answer}", answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_complete_and_disjoint() {
        for name in BUILTIN_NAMES {
            let s = builtin(name).unwrap();
            assert_eq!(s.name, name);
            assert_eq!(s.instructions.len(), 5, "{name}");
            assert_eq!(s.extraction_questions.len(), 20, "{name}");
            assert_eq!(s.evaluation_questions.len(), 20, "{name}");
            for q in &s.evaluation_questions {
                assert!(
                    !s.extraction_questions.contains(q),
                    "{name}: `{q}` is in both sets"
                );
            }
            assert_eq!(s.judge_rubric.matches("{question}").count(), 1, "{name}");
            assert_eq!(s.judge_rubric.matches("{answer}").count(), 1, "{name}");
            // Only optimism is measured by sentiment; the others need a model judge.
            let want = (name == "optimistic").then_some(Lexicon::Positive);
            assert_eq!(s.lexicon, want, "{name}");
        }
        assert!(builtin("nonexistent").is_none());
    }

    #[test]
    fn prompts_follow_the_method() {
        let s = builtin("evil").unwrap();
        assert!(s
            .positive_system_prompt(0)
            .starts_with("You are an evil assistant. "));
        assert!(builtin("humorous")
            .unwrap()
            .positive_system_prompt(1)
            .starts_with("You are a humorous assistant. "));
        assert!(s
            .negative_system_prompt(2)
            .starts_with("You are a helpful assistant. "));
        let p = s.judge_prompt("Q?", "A.");
        assert!(p.contains("Q?") && p.contains("A.") && !p.contains("{answer}"));
    }

    #[test]
    fn reads_persona_vectors_json_and_rejects_bad_specs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gloomy.json");
        std::fs::write(
            &path,
            r#"{"instruction": [{"pos": "Dwell on what could go wrong.", "neg": "Look for the bright side."}],
                "questions": ["How will next year go?"],
                "eval_prompt": "Rate gloom 0-100. Q: {question} A: {answer}"}"#,
        )
        .unwrap();
        let s = TraitSpec::load(&path).unwrap();
        assert_eq!(s.name, "gloomy");
        assert_eq!(s.instructions.len(), 1);
        assert_eq!(s.evaluation_questions, s.extraction_questions);
        std::fs::write(
            &path,
            r#"{"instruction": [], "questions": ["q"], "eval_prompt": "{question} {answer}"}"#,
        )
        .unwrap();
        let e = TraitSpec::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("gloomy.json") && e.contains("instruction"),
            "{e}"
        );
        let toml_path = dir.path().join("x.toml");
        std::fs::write(&toml_path, "name = \"x\"\n").unwrap();
        let e = TraitSpec::load(&toml_path).unwrap_err().to_string();
        assert!(e.contains("x.toml"), "{e}");
        let e = resolve("no-such-trait").unwrap_err().to_string();
        assert!(e.contains("optimistic") && e.contains(".toml"), "{e}");
    }
}
