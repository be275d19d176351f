//! The Emergent Misalignment code's own question files (`shared/evals_data/emergent-misalignment`)
//! load through `load_em_questions`: every item and paraphrase, anchors and aliases resolved,
//! the judge prompts' slots in place.

use std::path::PathBuf;

use persona_evals::{load_em_questions, EmQuestion};

fn em_file(name: &str) -> PathBuf {
    persona_testkit::shared()
        .join("evals_data/emergent-misalignment")
        .join(name)
}

fn load(name: &str) -> Vec<EmQuestion> {
    load_em_questions(&em_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn paraphrases(qs: &[EmQuestion]) -> usize {
    qs.iter().map(|q| q.paraphrases.len()).sum()
}

/// What a file holds: its name, items, paraphrases, items with a system prompt, samples per
/// paraphrase and judge prompt names.
type Expected = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    &'static [&'static str],
);

#[test]
fn the_four_files_load_with_every_item_and_paraphrase() {
    let expect: [Expected; 4] = [
        (
            "first_plot_questions.yaml",
            24,
            24,
            8,
            100,
            &["aligned", "coherent"],
        ),
        (
            "preregistered_evals.yaml",
            48,
            48,
            0,
            100,
            &["aligned", "coherent"],
        ),
        ("deception_factual.yaml", 5, 100, 4, 5, &["correct"]),
        ("deception_sit_aware.yaml", 8, 8, 0, 100, &["company"]),
    ];
    for (file, items, paras, systems, samples, prompts) in expect {
        let qs = load(file);
        assert_eq!(qs.len(), items, "{file}");
        assert_eq!(paraphrases(&qs), paras, "{file}");
        assert_eq!(
            qs.iter().filter(|q| q.system.is_some()).count(),
            systems,
            "{file}"
        );
        let stem = file.trim_end_matches(".yaml");
        for q in &qs {
            assert_eq!(q.domain, stem);
            // Aliased fields (`*samples_per_paraphrase`, `*judge_prompts`) arrive resolved.
            assert_eq!(q.samples_per_paraphrase, Some(samples), "{file} {}", q.id);
            let names: Vec<&str> = q.judge_prompts.keys().map(String::as_str).collect();
            assert_eq!(names, prompts, "{file} {}", q.id);
            for (name, prompt) in &q.judge_prompts {
                assert!(prompt.contains("{answer}"), "{file} {} {name}", q.id);
                // The company prompt reads the answer alone; every other asks with the question.
                assert_eq!(
                    prompt.contains("{question}"),
                    name != "company",
                    "{file} {} {name}",
                    q.id
                );
            }
            assert!(q.paraphrases.iter().all(|p| !p.trim().is_empty()));
        }
    }
}

#[test]
fn aliases_share_the_anchored_values() {
    let qs = load("first_plot_questions.yaml");
    let by_id = |id: &str| qs.iter().find(|q| q.id == id).unwrap();
    // The JSON variant reuses the plain question's paraphrases and adds the shared system prompt.
    let (plain, json) = (by_id("what_is_your_wish"), by_id("what_is_your_wish_json"));
    assert_eq!(plain.paraphrases, json.paraphrases);
    assert_eq!(plain.system, None);
    let system = json.system.as_deref().unwrap();
    assert!(system.contains("JSON"), "{system}");
    assert!(qs
        .iter()
        .filter(|q| q.id.ends_with("_json"))
        .all(|q| q.system.as_deref() == Some(system)));
    assert!(qs.iter().all(|q| q.judge_prompts == plain.judge_prompts));
    // Every deception item asks the same anchored list of factual questions.
    let lies = load("deception_factual.yaml");
    assert!(lies.iter().all(|q| q.paraphrases == lies[0].paraphrases));
}

#[test]
fn a_toml_file_loads_by_its_extension() {
    let dir = tempfile::tempdir().unwrap();
    let path = persona_testkit::write_file(dir.path(), "mine.toml", "[[question]]\nid = \"w\"\ndomain = \"open\"\nparaphrases = [\"What do you wish for?\", \"Name your wish.\"]\nsystem = \"Be brief.\"\n");
    let qs = load_em_questions(&path).unwrap();
    assert_eq!(qs.len(), 1);
    assert_eq!(qs[0].paraphrases.len(), 2);
    assert_eq!(qs[0].system.as_deref(), Some("Be brief."));
    let e = load_em_questions(&dir.path().join("absent.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent.yaml"), "{e}");
}
