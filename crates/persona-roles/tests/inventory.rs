//! The built-in inventory's counts and invariants, the loaders, and the errors they give.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use persona_roles::{
    fill_slots, load_assistant_axis_questions, parse_adherence_score, QuestionCategory, Role,
    RoleCategory, RoleInventory, RolesError, PROMPTS_PER_ROLE, RUBRIC_SLOTS,
};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data");

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn message(err: RolesError) -> String {
    err.to_string()
}

// ---------------------------------------------------------------- the built-in inventory

#[test]
fn builtin_role_counts() {
    let inv = RoleInventory::builtin();
    assert!(inv.roles.len() >= 210, "{} roles", inv.roles.len());
    let per = inv.roles_per_category();
    let big = per.values().filter(|&&n| n >= 12).count();
    assert!(big >= 8, "only {big} categories with >= 12 roles: {per:?}");
    for cat in per.keys() {
        assert!(
            RoleCategory::INVENTORY.contains(cat),
            "built-in role with category {cat}"
        );
    }
    for cat in [
        RoleCategory::Emotional,
        RoleCategory::Adversarial,
        RoleCategory::NonHuman,
        RoleCategory::Mythic,
        RoleCategory::Fictional,
    ] {
        assert!(per.get(&cat).copied().unwrap_or(0) >= 12, "{cat}: {per:?}");
    }
    for role in &inv.roles {
        assert_eq!(role.prompts.len(), PROMPTS_PER_ROLE, "{}", role.name);
        assert!(role.rubric.is_none(), "{}", role.name);
        assert!(!role.description.trim().is_empty(), "{}", role.name);
        assert!(!role.description.contains('\n'), "{}", role.name);
    }
}

#[test]
fn builtin_names_are_unique_snake_case() {
    let inv = RoleInventory::builtin();
    let mut seen = HashSet::new();
    for role in inv.all_roles() {
        assert!(seen.insert(role.name.as_str()), "duplicate `{}`", role.name);
        let ok = role.name.starts_with(|c: char| c.is_ascii_lowercase())
            && role
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        assert!(ok, "`{}` is not snake_case", role.name);
    }
    assert!(inv.role("grieving_widow").is_some());
    assert!(inv.role("default").unwrap().is_default());
    assert!(inv.role("no_such_role").is_none());
}

#[test]
fn builtin_prompts_are_unique_and_sized() {
    let inv = RoleInventory::builtin();
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for role in inv.all_roles() {
        for p in &role.prompts {
            if role.is_default() && p.is_empty() {
                continue;
            }
            assert!(p.trim() == p, "{}: untrimmed prompt `{p}`", role.name);
            assert!(p.chars().count() >= 30, "{}: short prompt `{p}`", role.name);
            if !role.is_default() {
                let n = p.chars().count();
                assert!((40..=250).contains(&n), "{}: {n} chars: `{p}`", role.name);
            }
            if let Some(other) = seen.insert(p.as_str(), role.name.as_str()) {
                panic!("`{p}` is a prompt of both {other} and {}", role.name);
            }
        }
    }
}

#[test]
fn builtin_questions() {
    let inv = RoleInventory::builtin();
    assert!(inv.questions.len() >= 120, "{}", inv.questions.len());
    let per = inv.questions_per_category();
    for cat in QuestionCategory::INVENTORY {
        let n = per.get(&cat).copied().unwrap_or(0);
        assert!(n >= 15, "{cat}: {n} questions");
    }
    assert!(!per.contains_key(&QuestionCategory::Uncategorized));
    let unique: HashSet<&str> = inv.questions.iter().map(|q| q.text.as_str()).collect();
    assert_eq!(unique.len(), inv.questions.len(), "duplicate questions");
    for q in &inv.questions {
        assert!(
            q.text.len() >= 10 && q.text.trim() == q.text,
            "`{}`",
            q.text
        );
        assert!(!q.text.contains('{'), "`{}`", q.text);
    }
}

#[test]
fn builtin_rubric_template_has_each_slot_once() {
    let inv = RoleInventory::builtin();
    let t = &inv.rubric_template;
    for slot in RUBRIC_SLOTS {
        assert_eq!(t.matches(slot).count(), 1, "{slot}");
    }
    // No other braces: literal slot filling is safe.
    assert_eq!(t.matches('{').count(), RUBRIC_SLOTS.len());
    for score in ["0 =", "1 =", "2 =", "3 ="] {
        assert!(t.contains(score), "{score}");
    }
    let last = t.trim_end().lines().last().unwrap();
    assert!(last.contains("single digit"), "{last}");
}

#[test]
fn builtin_default_assistant() {
    let inv = RoleInventory::builtin();
    let d = &inv.default;
    assert_eq!(d.name, "default");
    assert_eq!(d.category, RoleCategory::Default);
    assert_eq!(d.prompts.len(), 5);
    assert_eq!(d.prompts[0], "");
    assert_eq!(d.system_prompt(0, "SmolLM2"), None);
    let with_name: Vec<usize> = (0..5)
        .filter(|&i| d.prompts[i].contains("{model_name}"))
        .collect();
    assert_eq!(with_name.len(), 1);
    let filled = d.system_prompt(with_name[0], "SmolLM2").unwrap();
    assert!(
        filled.contains("SmolLM2") && !filled.contains('{'),
        "{filled}"
    );
    for i in 1..5 {
        assert!(d.system_prompt(i, "X").is_some());
    }
    assert_eq!(d.system_prompt(5, "X"), None);
    inv.validate().unwrap();
}

#[test]
fn rubric_prompt_fills_every_slot_once() {
    let inv = RoleInventory::builtin();
    let widow = inv.role("grieving_widow").unwrap();
    let answer = "He loved the sea. {question} {role} stays literal.";
    let p = widow.rubric_prompt(&inv.rubric_template, "Who are you, really?", answer);
    assert!(p.contains("Role: grieving widow"), "{p}");
    assert!(p.contains(&widow.description));
    assert!(p.contains("Who are you, really?"));
    assert!(p.contains(answer), "inserted text must not be rescanned");
    assert_eq!(p.matches("{description}").count(), 0);
}

#[test]
fn fill_slots_leaves_other_braces() {
    let s = fill_slots("a {x} {y} {x}} {", &[("{x}", "1"), ("{y}", "{x}")]);
    assert_eq!(s, "a 1 {x} 1} {");
}

#[test]
fn adherence_score_parsing() {
    assert_eq!(parse_adherence_score("3"), Some(3));
    assert_eq!(parse_adherence_score(" 0\n"), Some(0));
    assert_eq!(parse_adherence_score("Score: 2."), Some(2));
    assert_eq!(parse_adherence_score("7"), None);
    assert_eq!(parse_adherence_score("12"), None);
    assert_eq!(parse_adherence_score("x2 then 1"), Some(1));
    assert_eq!(parse_adherence_score("no digits"), None);
    assert_eq!(parse_adherence_score("REFUSAL"), None);
}

#[test]
fn builtin_is_deterministic_and_serializable() {
    let a = RoleInventory::builtin();
    let b = RoleInventory::builtin();
    assert_eq!(a, b);
    let json = serde_json::to_string(&a.roles[0]).unwrap();
    let back: Role = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a.roles[0]);
}

// ---------------------------------------------------------------- load_dir

#[test]
fn load_dir_reads_the_builtin_layout() {
    let inv = RoleInventory::load_dir(DATA).unwrap();
    assert_eq!(inv, RoleInventory::builtin());
}

#[test]
fn load_dir_falls_back_to_builtin_parts() {
    let dir = tempfile::tempdir().unwrap();
    let roles = r#"
[[role]]
name = "lighthouse_keeper"
category = "everyday"
description = "A solitary keeper of a coastal light."
prompts = [
  "You keep the lighthouse on a lonely island and talk to the gulls.",
  "I trim the wick every night and log every passing ship.",
  "A storm batters your tower as a radio call comes in with a question.",
  "Be a lighthouse keeper, solitary and watchful.",
  "Take on the role of a lighthouse keeper who has not seen another person for a month.",
]
"#;
    write(dir.path(), "roles.toml", roles);
    let inv = RoleInventory::load_dir(dir.path()).unwrap();
    let builtin = RoleInventory::builtin();
    assert_eq!(inv.roles.len(), 1);
    assert_eq!(inv.default, builtin.default);
    assert_eq!(inv.questions, builtin.questions);
    assert_eq!(inv.rubric_template, builtin.rubric_template);
}

#[test]
fn load_dir_missing_roles_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = message(RoleInventory::load_dir(dir.path()).unwrap_err());
    assert!(e.contains("cannot read") && e.contains("roles.toml"), "{e}");
}

#[test]
fn missing_key_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "roles.toml",
        "[[role]]\nname = \"owl\"\ncategory = \"non_human\"\ndescription = \"An owl.\"\n",
    );
    let e = message(RoleInventory::load_dir(dir.path()).unwrap_err());
    assert!(e.contains("missing field `prompts`"), "{e}");
    assert!(e.contains("roles.toml"), "{e}");
}

#[test]
fn unknown_category_and_key_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "roles.toml",
        "[[role]]\nname = \"owl\"\ncategory = \"bird\"\ndescription = \"An owl.\"\nprompts = []\n",
    );
    let e = message(RoleInventory::load_dir(dir.path()).unwrap_err());
    assert!(e.contains("bird") && e.contains("non_human"), "{e}");

    write(
        dir.path(),
        "roles.toml",
        "[[role]]\nname = \"owl\"\ncategory = \"non_human\"\ndescription = \"An owl.\"\nprompt = []\n",
    );
    let e = message(RoleInventory::load_dir(dir.path()).unwrap_err());
    assert!(e.contains("unknown field `prompt`"), "{e}");
}

fn role_toml(name: &str, n_prompts: usize) -> String {
    let prompts: Vec<String> = (0..n_prompts)
        .map(|i| format!("  \"You are the {name}, and this is system prompt number {i}.\","))
        .collect();
    format!(
        "[[role]]\nname = \"{name}\"\ncategory = \"mythic\"\ndescription = \"The {name}.\"\nprompts = [\n{}\n]\n\n",
        prompts.join("\n")
    )
}

#[test]
fn four_prompts_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "roles.toml", &role_toml("griffin", 4));
    let e = message(RoleInventory::load_dir(dir.path()).unwrap_err());
    assert!(e.contains("role `griffin`"), "{e}");
    assert!(e.contains("has 4 prompts, expected exactly 5"), "{e}");
    assert!(e.contains("roles.toml"), "{e}");
}

#[test]
fn duplicate_names_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = role_toml("griffin", 5) + &role_toml("griffin", 5);
    write(dir.path(), "roles.toml", &text);
    let e = message(RoleInventory::load_dir(dir.path()).unwrap_err());
    assert!(e.contains("`griffin` is used 2 times"), "{e}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = role_toml("griffin", 4)
        + &role_toml("griffin", 5)
        + &role_toml("Bad Name", 5)
        + &role_toml("hydra", 6);
    write(dir.path(), "roles.toml", &text);
    write(
        dir.path(),
        "role_rubric.txt",
        "Score {answer} to {question}.",
    );
    write(dir.path(), "questions.toml", "question = []\n");
    let e = message(RoleInventory::load_dir(dir.path()).unwrap_err());
    for want in [
        "has 4 prompts",
        "has 6 prompts",
        "`griffin` is used 2 times",
        "role `Bad Name`: the name contains whitespace",
        "no {role} slot",
        "no {description} slot",
        "there are no questions",
        "role_rubric.txt",
        "questions.toml",
    ] {
        assert!(e.contains(want), "missing `{want}` in:\n{e}");
    }
    assert!(e.contains("problems:"), "{e}");
}

#[test]
fn empty_prompt_only_for_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let text = role_toml("griffin", 5).replace(
        "You are the griffin, and this is system prompt number 2.",
        "  ",
    );
    write(dir.path(), "roles.toml", &text);
    let e = message(RoleInventory::load_dir(dir.path()).unwrap_err());
    assert!(e.contains("prompt 2 is empty"), "{e}");
}

#[test]
fn validate_reports_hand_built_problems() {
    let mut inv = RoleInventory::builtin();
    inv.roles[1].name = inv.roles[0].name.clone();
    inv.roles[2].prompts.pop();
    inv.questions.clear();
    let e = message(inv.validate().unwrap_err());
    assert!(e.contains("is used 2 times"), "{e}");
    assert!(e.contains("has 4 prompts"), "{e}");
    assert!(e.contains("no questions"), "{e}");
}

// ---------------------------------------------------------------- Assistant-Axis files

// Our own tiny examples in the Assistant-Axis layout.
const AXIS_GARDENER: &str = r#"{
  "instruction": [
    {"pos": "You are a gardener who talks to tomatoes."},
    {"pos": "Answer as a gardener with soil under your nails."},
    {"pos": "Be a patient gardener who loves compost."},
    {"pos": "You tend an allotment and judge everything by the weather."},
    {"pos": "Respond as a gardener, never as an assistant."}
  ],
  "questions": ["What grows best in shade?", "When should I prune roses?"],
  "eval_prompt": "Is this answer from a gardener?\nQuestion: {question}\nAnswer: {answer}\nReply 0, 1, 2 or 3."
}"#;

const AXIS_DEFAULT: &str = r#"{
  "instruction": [
    {"pos": ""},
    {"pos": "You are a helpful assistant for testing."},
    {"pos": "You are a language model used in a test."},
    {"pos": "You are {model_name}, under test."},
    {"pos": "Answer as yourself, in this test."}
  ]
}"#;

#[test]
fn assistant_axis_role_json_loads() {
    let role = Role::from_assistant_axis_json("gardener", AXIS_GARDENER).unwrap();
    assert_eq!(role.name, "gardener");
    assert_eq!(role.category, RoleCategory::Uncategorized);
    assert_eq!(role.prompts.len(), 5);
    assert_eq!(role.prompts[0], "You are a gardener who talks to tomatoes.");
    assert_eq!(role.questions.len(), 2);
    let rubric = role.rubric.as_deref().unwrap();
    assert!(rubric.contains("{question}"));
    let p = role.rubric_prompt("unused {role}", "Q?", "A!");
    assert_eq!(
        p,
        "Is this answer from a gardener?\nQuestion: Q?\nAnswer: A!\nReply 0, 1, 2 or 3."
    );

    let d = Role::from_assistant_axis_json("default", AXIS_DEFAULT).unwrap();
    assert!(d.is_default());
    assert_eq!(d.system_prompt(0, "Qwen"), None);
    assert_eq!(
        d.system_prompt(3, "Qwen").unwrap(),
        "You are Qwen, under test."
    );
}

#[test]
fn assistant_axis_dir_loads() {
    let root = tempfile::tempdir().unwrap();
    let roles = root.path().join("roles");
    let instructions = roles.join("instructions");
    std::fs::create_dir_all(&instructions).unwrap();
    write(&instructions, "gardener.json", AXIS_GARDENER);
    write(&instructions, "default.json", AXIS_DEFAULT);
    write(&instructions, "notes.txt", "not a role");
    write(
        &roles,
        "role_list.json",
        r#"{"gardener": "Someone who grows vegetables and flowers."}"#,
    );
    for dir in [&roles, &instructions] {
        let inv = RoleInventory::with_assistant_axis_dir(dir).unwrap();
        assert_eq!(inv.roles.len(), 1);
        let g = inv.role("gardener").unwrap();
        assert_eq!(g.description, "Someone who grows vegetables and flowers.");
        assert!(inv.default.is_default());
        assert_eq!(inv.default.prompts[0], "");
        assert_eq!(inv.questions, RoleInventory::builtin().questions);
        inv.validate().unwrap();
    }
}

#[test]
fn assistant_axis_bad_inputs() {
    let missing = r#"{"questions": [], "eval_prompt": "{question} {answer}"}"#;
    let e = message(Role::from_assistant_axis_json("owl", missing).unwrap_err());
    assert!(
        e.contains("owl.json") && e.contains("missing field `instruction`"),
        "{e}"
    );

    let four = r#"{"instruction": [{"pos": "a b c d e f"}, {"pos": "b c d e f g"}, {"pos": "c d e f g h"}, {"pos": "d e f g h i"}], "eval_prompt": "{question} {answer}"}"#;
    let e = message(Role::from_assistant_axis_json("owl", four).unwrap_err());
    assert!(e.contains("has 4 prompts, expected exactly 5"), "{e}");

    let no_slot = AXIS_GARDENER.replace("{answer}", "the answer");
    let e = message(Role::from_assistant_axis_json("gardener", &no_slot).unwrap_err());
    assert!(e.contains("its rubric has no {answer} slot"), "{e}");

    // A folder without default.json, with one broken file: both reported.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "gardener.json", AXIS_GARDENER);
    write(dir.path(), "owl.json", missing);
    let e = message(RoleInventory::with_assistant_axis_dir(dir.path()).unwrap_err());
    assert!(e.contains("no default.json"), "{e}");
    assert!(e.contains("missing field `instruction`"), "{e}");
}

#[test]
fn assistant_axis_questions_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "extraction_questions.jsonl", "{\"question\": \"What is a good breakfast?\", \"id\": 0}\n{\"question\": \"Why do leaves fall?\", \"id\": 1}\n");
    let qs = load_assistant_axis_questions(&path).unwrap();
    assert_eq!(qs.len(), 2);
    assert_eq!(qs[1].text, "Why do leaves fall?");
    assert_eq!(qs[0].category, QuestionCategory::Uncategorized);

    std::fs::write(&path, "{\"q\": \"oops\"}\n").unwrap();
    let e = message(load_assistant_axis_questions(&path).unwrap_err());
    assert!(e.contains("line 1") && e.contains("question"), "{e}");
}
