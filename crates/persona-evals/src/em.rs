//! Open questions for the emergent-misalignment evaluation (Betley et al. 2025): the built-in
//! set in our TOML format, and the YAML files of the Emergent Misalignment code (a list of items
//! with `id`, `type`, `paraphrases`, `samples_per_paraphrase`, `judge_prompts` and an optional
//! `system`, written with anchors and aliases).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{blank, check_ids, parse_items, read, Checker, EvalsError, Item, Result};

/// The built-in emergent-misalignment questions, as shipped.
pub const EM_QUESTIONS_TOML: &str = include_str!("../data/em_questions.toml");

/// The domains of the built-in questions: `open` holds the open "first-plot" style questions.
/// User files may use other domain names; YAML files take their file name as the domain.
pub const EM_DOMAINS: [&str; 8] = [
    "open",
    "medical",
    "financial",
    "legal",
    "relationships",
    "ai_self",
    "politics",
    "coding",
];

/// One question, asked in each of its paraphrases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmQuestion {
    /// Unique within its file.
    pub id: String,
    pub domain: String,
    /// The wordings to ask; each is answered `--samples` times.
    pub paraphrases: Vec<String>,
    /// A system prompt to ask under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// How many answers per paraphrase the file asks for (the Emergent Misalignment files say
    /// 100); kept as the file's own word, while the evaluation's `--samples` decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_per_paraphrase: Option<usize>,
    /// The file's judge prompts by name (`aligned`, `coherent`, …), each with an `{answer}` slot
    /// and mostly a `{question}` one. persona judges with its own rubrics; these are kept so
    /// a file's prompts can be read and compared.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub judge_prompts: BTreeMap<String, String>,
}

/// The built-in questions (8 open ones and 6 in each of 7 domains).
pub fn builtin_em_questions() -> Vec<EmQuestion> {
    parse_em_toml(EM_QUESTIONS_TOML, "built-in em_questions.toml")
        .expect("the built-in emergent-misalignment questions are valid (tested)")
}

/// Questions from a file: the Emergent Misalignment YAML format when the name ends in `.yaml`
/// or `.yml` (the file name, without extension, is every question's domain), persona's TOML
/// format otherwise: `[[question]]` tables with `id`, `domain`, `paraphrases` and optionally
/// `system`.
pub fn load_em_questions(path: &Path) -> Result<Vec<EmQuestion>> {
    let text = read(path)?;
    let origin = path.display().to_string();
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => {
            let domain = path
                .file_stem()
                .map_or_else(|| "questions".into(), |s| s.to_string_lossy().into_owned());
            parse_em_yaml(&text, &origin, &domain)
        }
        _ => parse_em_toml(&text, &origin),
    }
}

/// What is wrong with a question, if anything, beyond its id.
fn problem(q: &EmQuestion) -> Option<String> {
    if blank(&q.domain) {
        return Some(format!(
            "`domain` is empty; name one, e.g. {}",
            EM_DOMAINS.join(", ")
        ));
    }
    if q.paraphrases.is_empty() {
        return Some("`paraphrases` is empty; give at least one wording of the question".into());
    }
    if let Some(k) = q.paraphrases.iter().position(|p| blank(p)) {
        return Some(format!(
            "paraphrase {} is empty; every paraphrase must be a question",
            k + 1
        ));
    }
    if q.system.as_deref().is_some_and(blank) {
        return Some("`system` is empty; remove it or write the system prompt".into());
    }
    if q.samples_per_paraphrase == Some(0) {
        return Some("`samples_per_paraphrase` is 0; give at least 1".into());
    }
    q.judge_prompts
        .iter()
        .find(|(_, prompt)| !prompt.contains("{answer}"))
        .map(|(name, _)| {
            format!("judge prompt `{name}` has no {{answer}} slot; the judged answer goes there")
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmFile {
    #[serde(default)]
    question: Vec<toml::Spanned<EmQuestion>>,
}

/// [`load_em_questions`] on TOML text; `origin` names the text in errors.
pub fn parse_em_toml(text: &str, origin: &str) -> Result<Vec<EmQuestion>> {
    let check = Checker { text, origin };
    let items = parse_items(
        text,
        origin,
        "emergent-misalignment question",
        (
            "question",
            "questions",
            "`id`, `domain` and `paraphrases` (a list of wordings)",
        ),
        |f: EmFile| f.question,
        |q: &EmQuestion| &q.id,
    )?;
    items
        .into_iter()
        .map(|Item { span, name, value }| match problem(&value) {
            Some(p) => Err(check.err(&span, name, p)),
            None => Ok(value),
        })
        .collect()
}

/// An item of an Emergent Misalignment YAML file: the fields persona reads (`type` and `judge`
/// are left aside: every item is asked as a free-form question and judged by persona's rubrics).
#[derive(Deserialize)]
struct YamlItem {
    id: String,
    #[serde(default)]
    paraphrases: Vec<String>,
    #[serde(default)]
    samples_per_paraphrase: Option<usize>,
    #[serde(default)]
    judge_prompts: BTreeMap<String, String>,
    #[serde(default)]
    system: Option<String>,
}

/// The line of each top-level list item (`- ` at the start of a line) when there is one per
/// item, as in block-style files; `None` for each otherwise (a flow-style list).
fn yaml_item_lines(text: &str, items: usize) -> Vec<Option<usize>> {
    let starts: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l == &"-" || l.starts_with("- "))
        .map(|(i, _)| i + 1)
        .collect();
    if starts.len() == items {
        starts.into_iter().map(Some).collect()
    } else {
        vec![None; items]
    }
}

/// [`load_em_questions`] on the text of an Emergent Misalignment YAML file; `origin` names it
/// in errors and `domain` is given to every question.
pub fn parse_em_yaml(text: &str, origin: &str, domain: &str) -> Result<Vec<EmQuestion>> {
    let items: Vec<YamlItem> = yaml_serde::from_str(text).map_err(|e| EvalsError::Yaml {
        origin: origin.to_string(),
        line: e.location().map(|l| l.line()),
        message: format!(
            "{e}; expected a list of items with `id`, `paraphrases` (a list of wordings) and \
             optionally `system`, `samples_per_paraphrase` and `judge_prompts`"
        ),
    })?;
    if items.is_empty() {
        return Err(EvalsError::Empty {
            origin: origin.to_string(),
            problem: "holds no questions; write a list of items with `id` and `paraphrases`".into(),
        });
    }
    let lines = yaml_item_lines(text, items.len());
    let name = |i: usize, id: &str| format!("item {} (`{id}`)", i + 1);
    check_ids(
        origin,
        items
            .iter()
            .zip(&lines)
            .enumerate()
            .map(|(i, (it, line))| (it.id.as_str(), *line, name(i, &it.id))),
    )?;
    items
        .into_iter()
        .zip(lines)
        .enumerate()
        .map(|(i, (it, line))| {
            let q = EmQuestion {
                id: it.id,
                domain: domain.to_string(),
                paraphrases: it.paraphrases,
                system: it.system,
                samples_per_paraphrase: it.samples_per_paraphrase,
                judge_prompts: it.judge_prompts,
            };
            match problem(&q) {
                Some(problem) => Err(EvalsError::Invalid {
                    origin: origin.to_string(),
                    line,
                    item: name(i, &q.id),
                    problem,
                }),
                None => Ok(q),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_set_has_open_questions_and_every_domain() {
        let qs = builtin_em_questions();
        let count = |d: &str| qs.iter().filter(|q| q.domain == d).count();
        assert!(count("open") >= 8, "{}", count("open"));
        assert!(qs.len() - count("open") >= 40, "{}", qs.len());
        for d in EM_DOMAINS {
            assert!(count(d) > 0, "no questions in {d}");
        }
        assert!(qs.iter().all(|q| EM_DOMAINS.contains(&q.domain.as_str())));
    }

    #[test]
    fn bad_toml_questions_name_their_line() {
        let text = "[[question]]\nid = \"a\"\ndomain = \"open\"\nparaphrases = [\"Hi?\"]\n\n[[question]]\nid = \"b\"\ndomain = \"open\"\nparaphrases = []\n";
        let e = parse_em_toml(text, "q.toml").unwrap_err().to_string();
        assert!(
            e.contains("q.toml, line 6") && e.contains("`b`") && e.contains("paraphrases"),
            "{e}"
        );
        let e = parse_em_toml("[[question]]\nid = \"a\"\nparaphrase = [\"x\"]\n", "q.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line") && e.contains("paraphrase"), "{e}");
    }

    #[test]
    fn bad_yaml_questions_name_their_line() {
        let dup = "- id: a\n  paraphrases: [\"Hi?\"]\n- id: a\n  paraphrases: [\"Yo?\"]\n";
        let e = parse_em_yaml(dup, "q.yaml", "q").unwrap_err().to_string();
        assert!(e.contains("q.yaml, line 3") && e.contains("line 1"), "{e}");
        let slotless = "- id: a\n  paraphrases: [\"Hi?\"]\n- id: b\n  paraphrases: [\"Yo?\"]\n  judge_prompts:\n    aligned: Rate it.\n";
        let e = parse_em_yaml(slotless, "q.yaml", "q")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("aligned") && e.contains("{answer}"),
            "{e}"
        );
        let broken = "- id: a\n  paraphrases: [\"Hi?\"\n- id: b\n";
        let e = parse_em_yaml(broken, "q.yaml", "q")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("q.yaml, line") && e.contains("not a valid"),
            "{e}"
        );
        let missing = "- id: a\n  paraphrases: [\"Hi?\"]\n- paraphrases: [\"Yo?\"]\n";
        let e = parse_em_yaml(missing, "q.yaml", "q")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("`id`"), "{e}");
        let undefined = "- id: a\n  paraphrases: *nowhere\n";
        let e = parse_em_yaml(undefined, "q.yaml", "q")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("anchor"), "{e}");
        let e = parse_em_yaml("[]", "q.yaml", "q").unwrap_err().to_string();
        assert!(e.contains("no questions"), "{e}");
    }
}
