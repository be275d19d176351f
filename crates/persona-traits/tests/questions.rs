//! A single question list divided between extraction and evaluation (disjoint, deterministic,
//! recorded), and evaluation questions read from a file of their own, with errors that name
//! the line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use persona_traits::{
    read_question_file, split_questions, QuestionFile, QuestionSplit, SpecError, SplitRule,
    TraitSpec,
};

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("Question number {i}?")).collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A Persona Vectors trait file with `n` questions.
fn paper_json(n: usize) -> String {
    serde_json::json!({
        "instruction": [{"pos": "Dwell on what could go wrong.", "neg": "Look for the bright side."}],
        "questions": numbered(n),
        "eval_prompt": "Rate gloom 0-100. Q: {question} A: {answer}",
    })
    .to_string()
}

fn error_text<T: std::fmt::Debug>(r: Result<T, impl std::fmt::Display>) -> String {
    r.map(|v| panic!("expected an error, got {v:?}"))
        .unwrap_err()
        .to_string()
}

#[test]
fn a_list_is_split_alternately_into_disjoint_halves() {
    let qs = numbered(40);
    let (extraction, evaluation, split) = split_questions(qs.clone(), "gloomy.json");
    assert_eq!(extraction.len(), 20);
    assert_eq!(evaluation.len(), 20);
    // 1st, 3rd, 5th, … extract; 2nd, 4th, … evaluate.
    assert_eq!(extraction[0], qs[0]);
    assert_eq!(evaluation[0], qs[1]);
    assert_eq!(extraction[19], qs[38]);
    assert_eq!(evaluation[19], qs[39]);
    let e: HashSet<&String> = extraction.iter().collect();
    let v: HashSet<&String> = evaluation.iter().collect();
    assert!(e.is_disjoint(&v));
    assert_eq!(e.union(&v).count(), 40);
    assert_eq!(
        split,
        QuestionSplit {
            origin: "gloomy.json".into(),
            total: 40,
            repeats_dropped: 0,
            rule: SplitRule::Alternate,
        }
    );
    // The same list gives the same halves every time: the rule depends on positions only.
    assert_eq!(
        split_questions(qs, "gloomy.json"),
        (extraction, evaluation, split.clone())
    );
    let said = split.to_string();
    assert!(
        said.contains("gloomy.json") && said.contains("40 questions") && said.contains("(20)"),
        "{said}"
    );
}

#[test]
fn odd_counts_give_extraction_the_extra_question_and_one_question_is_shared() {
    for (n, e, v) in [(2, 1, 1), (3, 2, 1), (5, 3, 2), (41, 21, 20)] {
        let (extraction, evaluation, split) = split_questions(numbered(n), "t.json");
        assert_eq!((extraction.len(), evaluation.len()), (e, v), "{n}");
        assert_eq!((split.extraction_count(), split.evaluation_count()), (e, v));
        assert_eq!(split.rule, SplitRule::Alternate);
        assert!(extraction.iter().all(|q| !evaluation.contains(q)), "{n}");
    }
    let (extraction, evaluation, split) = split_questions(numbered(1), "t.json");
    assert_eq!(extraction, evaluation);
    assert_eq!(split.rule, SplitRule::Shared);
    assert!(split.to_string().contains("share"), "{split}");
}

#[test]
fn repeats_are_left_out_so_no_question_is_on_both_sides() {
    let qs: Vec<String> = ["Why?", "How?", "  Why?", "When?"]
        .map(String::from)
        .to_vec();
    let (extraction, evaluation, split) = split_questions(qs, "t.json");
    assert_eq!(extraction, vec!["Why?", "When?"]);
    assert_eq!(evaluation, vec!["How?"]);
    assert_eq!((split.total, split.repeats_dropped), (3, 1));
    assert!(split.to_string().contains("1 repeated"), "{split}");
}

#[test]
fn a_persona_vectors_file_records_its_split_and_a_toml_spec_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "gloomy.json", paper_json(40).as_bytes());
    let spec = TraitSpec::load(&path).unwrap();
    assert_eq!(spec.extraction_questions.len(), 20);
    assert_eq!(spec.evaluation_questions.len(), 20);
    assert!(spec
        .evaluation_questions
        .iter()
        .all(|q| !spec.extraction_questions.contains(q)));
    let split = spec.question_split.clone().expect("the split is recorded");
    assert_eq!(split.origin, path.display().to_string());
    assert_eq!(split.rule, SplitRule::Alternate);
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["question_split"]["rule"], "alternate");
    assert_eq!(json["question_split"]["total"], 40);

    let builtin = persona_traits::builtin("evil").unwrap();
    assert_eq!(builtin.question_split, None);
    assert!(serde_json::to_value(&builtin)
        .unwrap()
        .get("question_split")
        .is_none());
    // A spec file cannot claim a split of its own.
    let toml = "name = \"calm\"\ndescription = \"Calm.\"\nextraction_questions = [\"A?\"]\nevaluation_questions = [\"B?\"]\njudge_rubric = \"{question} {answer}\"\n\n[question_split]\norigin = \"x\"\ntotal = 2\nrepeats_dropped = 0\nrule = \"alternate\"\n\n[[instructions]]\npos = \"p\"\nneg = \"n\"\n";
    assert_eq!(
        TraitSpec::from_toml(toml, "calm.toml")
            .unwrap()
            .question_split,
        None
    );
}

#[test]
fn evaluation_questions_from_a_file_give_extraction_the_whole_list_back() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = write(dir.path(), "gloomy.json", paper_json(7).as_bytes());
    let eval = write(
        dir.path(),
        "eval.txt",
        b"What will tomorrow bring?\n\nHow is the market doing?\r\n",
    );
    let spec = TraitSpec::load(&spec_path)
        .unwrap()
        .with_evaluation_file(&eval)
        .unwrap();
    assert_eq!(spec.extraction_questions, numbered(7));
    assert_eq!(
        spec.evaluation_questions,
        vec!["What will tomorrow bring?", "How is the market doing?"]
    );
    assert_eq!(spec.question_split, None);

    // A TOML spec keeps its extraction questions; an evaluation question equal to one of them
    // is refused with its line.
    let evil = persona_traits::builtin("evil").unwrap();
    let reused = format!("A new question?\n{}\n", evil.extraction_questions[3]);
    let path = write(dir.path(), "reused.txt", reused.as_bytes());
    let e = error_text(evil.clone().with_evaluation_file(&path));
    assert!(
        e.contains("reused.txt")
            && e.contains("line 2")
            && e.contains("also an extraction question"),
        "{e}"
    );
    let e =
        error_text(evil.with_evaluation_questions(QuestionFile::from_list("the request", vec![])));
    assert!(
        e.contains("the request") && e.contains("no questions"),
        "{e}"
    );
}

#[test]
fn good_question_files_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let want = vec!["How is your day?".to_string(), "What is next?".to_string()];
    let files: [(&str, &[u8]); 5] = [
        ("q.txt", b"\xEF\xBB\xBFHow is your day?\n   \n  What is next?  \n"),
        (
            "eval.json",
            br#"{"instruction": [], "questions": ["How is your day?", "What is next?"], "eval_prompt": "x"}"#,
        ),
        ("list.json", br#"["How is your day?", "What is next?"]"#),
        (
            "q.jsonl",
            b"\"How is your day?\"\n\n{\"question\": \"What is next?\", \"id\": 7}\n",
        ),
        ("Q.JSONL", b"\"How is your day?\"\n\"What is next?\"\n"),
    ];
    for (name, bytes) in files {
        let file = read_question_file(&write(dir.path(), name, bytes))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(file.questions(), want.as_slice(), "{name}");
        assert!(file.origin().ends_with(name));
    }
    let file = read_question_file(&dir.path().join("q.txt")).unwrap();
    assert_eq!(file.location(1), Some("line 3"));
    let file = read_question_file(&dir.path().join("eval.json")).unwrap();
    assert_eq!(file.location(0), Some("`questions` item 1"));
}

#[test]
fn empty_question_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("empty.txt", &b""[..]),
        ("blank.txt", b"\n  \n\t\n"),
        ("empty.json", b"[]"),
        ("none.json", br#"{"questions": []}"#),
        ("empty.jsonl", b"\n\n"),
    ] {
        let e = error_text(read_question_file(&write(dir.path(), name, bytes)));
        assert!(
            e.contains(name) && e.contains("no questions"),
            "{name}: {e}"
        );
    }
    let e = error_text(read_question_file(&dir.path().join("missing.txt")));
    assert!(
        e.contains("missing.txt") && e.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn bad_question_files_name_the_line_or_item() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &[&str]); 9] = [
        (
            "latin1.txt",
            b"One?\nTwo?\nCaf\xE9?\n",
            &["line 3", "UTF-8"],
        ),
        (
            "twice.txt",
            b"One?\nTwo?\n\n One? \n",
            &["line 4", "line 1", "repeats"],
        ),
        (
            "broken.jsonl",
            b"\"One?\"\n{\"question\": \n",
            &["line 2", "not valid JSON"],
        ),
        ("number.jsonl", b"\"One?\"\n\n42\n", &["line 3", "a number"]),
        (
            "noquestion.jsonl",
            b"{\"text\": \"One?\"}\n",
            &["line 1", "`question`"],
        ),
        (
            "broken.json",
            b"[\n  \"One?\",\n  \"Two?\"\n  \"Three?\"\n]",
            &["line 4", "not valid JSON"],
        ),
        ("mixed.json", br#"["One?", 2]"#, &["item 2", "a number"]),
        (
            "blank.json",
            br#"{"questions": ["One?", "  "]}"#,
            &["`questions` item 2", "empty"],
        ),
        ("other.json", br#"{"prompts": ["One?"]}"#, &["`questions`"]),
    ];
    for (name, bytes, wanted) in cases {
        let e = error_text(read_question_file(&write(dir.path(), name, bytes)));
        assert!(e.contains(name), "{name}: {e}");
        for w in wanted {
            assert!(e.contains(w), "{name}: `{w}` missing from: {e}");
        }
    }
}

#[test]
fn a_blank_question_in_a_persona_vectors_file_is_named_in_its_own_list() {
    let text = r#"{"instruction": [{"pos": "a", "neg": "b"}], "questions": ["One?", "Two?", " "], "eval_prompt": "{question} {answer}"}"#;
    let e = TraitSpec::from_paper_json(text, "t", "t.json").unwrap_err();
    assert!(matches!(e, SpecError::Invalid { .. }));
    let e = e.to_string();
    assert!(
        e.contains("t.json") && e.contains("`questions` item 3"),
        "{e}"
    );
}
