//! The role inventory for mapping persona space (the Assistant-axis method,
//! docs/assistant-axis.md §1–§2).
//!
//! A [`RoleInventory`] holds character archetypes ([`Role`]s), each with five system prompts
//! that make an assistant take on the role; the default assistant (five prompts, the first one
//! empty: no system message); shared [`Question`]s that every role answers; and one judge
//! template that scores role adherence 0–3 with `{role}`, `{description}`, `{question}` and
//! `{answer}` slots.
//!
//! Sources:
//! - [`RoleInventory::builtin`]: persona's own inventory (`data/` in this crate, our own text).
//! - [`RoleInventory::load_dir`]: a folder in the same layout — `roles.toml` (required),
//!   `default.toml`, `questions.toml`, `role_rubric.txt` (each falls back to the built-in one
//!   when absent).
//! - [`RoleInventory::with_assistant_axis_dir`] / [`Role::from_assistant_axis_json`]: the
//!   Assistant-Axis code's role files read unchanged (`{"instruction": [{"pos": …}],
//!   "questions": […], "eval_prompt": …}` per role, `default.json` for the default).
//!
//! Every loader validates what it read and reports every problem it found at once, each
//! naming its file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The number of system prompts every role has (the default's first one is empty).
pub const PROMPTS_PER_ROLE: usize = 5;

/// The slots of the shared judge template, each filled by [`Role::rubric_prompt`].
pub const RUBRIC_SLOTS: [&str; 4] = ["{role}", "{description}", "{question}", "{answer}"];

/// The slot in a system prompt that [`Role::system_prompt`] fills with the model's name.
pub const MODEL_NAME_SLOT: &str = "{model_name}";

/// The name of the default assistant, in our files and in the Assistant-Axis ones.
pub const DEFAULT_NAME: &str = "default";

const BUILTIN_ROLES: &str = include_str!("../data/roles.toml");
const BUILTIN_DEFAULT: &str = include_str!("../data/default.toml");
const BUILTIN_QUESTIONS: &str = include_str!("../data/questions.toml");
const BUILTIN_RUBRIC: &str = include_str!("../data/role_rubric.txt");

#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} is not valid: {reason}")]
    Parse { origin: String, reason: String },
    #[error("{}", invalid_message(.origin, .problems))]
    Invalid {
        origin: String,
        problems: Vec<String>,
    },
}

fn invalid_message(origin: &str, problems: &[String]) -> String {
    let n = problems.len();
    let mut s = format!("{origin} has {n} problem{}:", if n == 1 { "" } else { "s" });
    for p in problems {
        s.push_str("\n  - ");
        s.push_str(p);
    }
    s
}

pub type Result<T> = std::result::Result<T, RolesError>;

/// What kind of character a role is. The ten inventory categories, plus `default` (the
/// default assistant only) and `uncategorized` (roles read from the Assistant-Axis files,
/// which carry no category).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleCategory {
    Profession,
    Fictional,
    Mythic,
    HistoricalType,
    NonHuman,
    Emotional,
    Adversarial,
    Mystical,
    Everyday,
    Abstract,
    Default,
    Uncategorized,
}

impl RoleCategory {
    /// The categories of the character inventory (not `default`, not `uncategorized`).
    pub const INVENTORY: [RoleCategory; 10] = [
        RoleCategory::Profession,
        RoleCategory::Fictional,
        RoleCategory::Mythic,
        RoleCategory::HistoricalType,
        RoleCategory::NonHuman,
        RoleCategory::Emotional,
        RoleCategory::Adversarial,
        RoleCategory::Mystical,
        RoleCategory::Everyday,
        RoleCategory::Abstract,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RoleCategory::Profession => "profession",
            RoleCategory::Fictional => "fictional",
            RoleCategory::Mythic => "mythic",
            RoleCategory::HistoricalType => "historical_type",
            RoleCategory::NonHuman => "non_human",
            RoleCategory::Emotional => "emotional",
            RoleCategory::Adversarial => "adversarial",
            RoleCategory::Mystical => "mystical",
            RoleCategory::Everyday => "everyday",
            RoleCategory::Abstract => "abstract",
            RoleCategory::Default => "default",
            RoleCategory::Uncategorized => "uncategorized",
        }
    }
}

impl fmt::Display for RoleCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a shared question asks for. `uncategorized` is for questions read from elsewhere
/// (the Assistant-Axis `extraction_questions.jsonl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionCategory {
    Advice,
    Opinion,
    Identity,
    Emotions,
    Facts,
    Tasks,
    Uncategorized,
}

impl QuestionCategory {
    /// The categories of the built-in questions.
    pub const INVENTORY: [QuestionCategory; 6] = [
        QuestionCategory::Advice,
        QuestionCategory::Opinion,
        QuestionCategory::Identity,
        QuestionCategory::Emotions,
        QuestionCategory::Facts,
        QuestionCategory::Tasks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuestionCategory::Advice => "advice",
            QuestionCategory::Opinion => "opinion",
            QuestionCategory::Identity => "identity",
            QuestionCategory::Emotions => "emotions",
            QuestionCategory::Facts => "facts",
            QuestionCategory::Tasks => "tasks",
            QuestionCategory::Uncategorized => "uncategorized",
        }
    }
}

impl fmt::Display for QuestionCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A character the model is asked to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Unique; snake_case in our files, the file stem for Assistant-Axis files.
    pub name: String,
    pub category: RoleCategory,
    /// One line; fills the `{description}` slot of the judge template.
    pub description: String,
    /// Exactly five system prompts. Only the default's may be empty (= no system message).
    pub prompts: Vec<String>,
    /// A judge template of the role's own (the Assistant-Axis `eval_prompt`), used instead of
    /// the shared one; it has at least `{question}` and `{answer}` slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rubric: Option<String>,
    /// Role-specific questions, kept for reference (the Assistant-Axis files carry 40 each;
    /// its pipeline does not use them). Empty for our roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub questions: Vec<String>,
}

/// A question every role answers (the user turn of a rollout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub text: String,
    pub category: QuestionCategory,
}

/// Roles, the default assistant, shared questions and the role-adherence judge template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInventory {
    pub roles: Vec<Role>,
    pub default: Role,
    pub questions: Vec<Question>,
    /// Judge template with `{role}`, `{description}`, `{question}`, `{answer}` slots, asking
    /// for one digit 0–3. Used for every role without a rubric of its own.
    pub rubric_template: String,
}

// ---------------------------------------------------------------- file formats

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesFile {
    role: Vec<Role>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultFile {
    #[serde(default = "default_name")]
    name: String,
    description: String,
    prompts: Vec<String>,
}

fn default_name() -> String {
    DEFAULT_NAME.to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuestionsFile {
    question: Vec<Question>,
}

/// One Assistant-Axis role file. Unknown keys are ignored, as the reference code does.
#[derive(Deserialize)]
struct AxisRoleFile {
    instruction: Vec<AxisInstruction>,
    #[serde(default)]
    questions: Vec<String>,
    #[serde(default)]
    eval_prompt: Option<String>,
}

#[derive(Deserialize)]
struct AxisInstruction {
    pos: String,
}

#[derive(Deserialize)]
struct AxisQuestionLine {
    question: String,
}

fn parse_roles(text: &str, origin: &str) -> Result<Vec<Role>> {
    let file: RolesFile = toml::from_str(text).map_err(|e| RolesError::Parse {
        origin: origin.to_string(),
        reason: format!(
            "expected `[[role]]` tables with `name`, `category`, `description`, `prompts` \
             (and optionally `rubric`, `questions`): {}",
            e.to_string().trim_end()
        ),
    })?;
    Ok(file.role)
}

fn parse_default(text: &str, origin: &str) -> Result<Role> {
    let file: DefaultFile = toml::from_str(text).map_err(|e| RolesError::Parse {
        origin: origin.to_string(),
        reason: format!(
            "expected `description` and `prompts` (and optionally `name`): {}",
            e.to_string().trim_end()
        ),
    })?;
    Ok(Role {
        name: file.name,
        category: RoleCategory::Default,
        description: file.description,
        prompts: file.prompts,
        rubric: None,
        questions: Vec::new(),
    })
}

fn parse_questions(text: &str, origin: &str) -> Result<Vec<Question>> {
    let file: QuestionsFile = toml::from_str(text).map_err(|e| RolesError::Parse {
        origin: origin.to_string(),
        reason: format!(
            "expected `[[question]]` tables with `text` and `category`: {}",
            e.to_string().trim_end()
        ),
    })?;
    Ok(file.question)
}

// ---------------------------------------------------------------- validation

fn is_snake_case(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__")
}

/// The problems of one role, each prefixed with `origin` and the role's name.
fn role_problems(role: &Role, origin: &str, strict_names: bool) -> Vec<String> {
    let mut out = Vec::new();
    let who = if role.name.trim().is_empty() {
        format!("{origin}: a role with an empty name")
    } else {
        format!("{origin}: role `{}`", role.name)
    };
    let is_default = role.category == RoleCategory::Default;
    if role.name.trim().is_empty() {
        out.push(format!("{who}: `name` is empty"));
    } else if role.name.chars().any(char::is_whitespace) {
        out.push(format!("{who}: the name contains whitespace"));
    } else if strict_names && !is_default && !is_snake_case(&role.name) {
        out.push(format!(
            "{who}: the name is not snake_case (lowercase letters, digits and single underscores, starting with a letter)"
        ));
    }
    if role.description.trim().is_empty() {
        out.push(format!("{who}: `description` is empty"));
    }
    if role.prompts.len() != PROMPTS_PER_ROLE {
        out.push(format!(
            "{who}: has {} prompt{}, expected exactly {PROMPTS_PER_ROLE}",
            role.prompts.len(),
            if role.prompts.len() == 1 { "" } else { "s" }
        ));
    }
    if !is_default {
        for (i, p) in role.prompts.iter().enumerate() {
            if p.trim().is_empty() {
                out.push(format!(
                    "{who}: prompt {i} is empty (only the default assistant may have an empty prompt)"
                ));
            }
        }
    }
    let mut seen = HashSet::new();
    for (i, p) in role.prompts.iter().enumerate() {
        if !seen.insert(p.trim()) {
            out.push(format!("{who}: prompt {i} repeats an earlier prompt"));
        }
    }
    if let Some(rubric) = &role.rubric {
        for slot in ["{question}", "{answer}"] {
            if !rubric.contains(slot) {
                out.push(format!("{who}: its rubric has no {slot} slot"));
            }
        }
    }
    out
}

fn rubric_template_problems(template: &str, origin: &str) -> Vec<String> {
    RUBRIC_SLOTS
        .iter()
        .filter(|slot| !template.contains(*slot))
        .map(|slot| format!("{origin}: the rubric template has no {slot} slot"))
        .collect()
}

fn question_problems(questions: &[Question], origin: &str) -> Vec<String> {
    let mut out = Vec::new();
    if questions.is_empty() {
        out.push(format!(
            "{origin}: there are no questions (at least 1 is needed)"
        ));
    }
    for (i, q) in questions.iter().enumerate() {
        if q.text.trim().is_empty() {
            out.push(format!("{origin}: question {i} has empty text"));
        }
    }
    out
}

/// Where each part of an inventory came from, for problem messages.
struct Origins {
    roles: RolesOrigin,
    default: String,
    questions: String,
    rubric: String,
}

enum RolesOrigin {
    /// All roles in one file.
    File(String),
    /// One `<name>.json` per role in this folder.
    JsonDir(PathBuf),
}

impl Origins {
    fn role(&self, name: &str) -> String {
        match &self.roles {
            RolesOrigin::File(f) => f.clone(),
            RolesOrigin::JsonDir(d) => d.join(format!("{name}.json")).display().to_string(),
        }
    }

    fn roles_collection(&self) -> String {
        match &self.roles {
            RolesOrigin::File(f) => f.clone(),
            RolesOrigin::JsonDir(d) => d.display().to_string(),
        }
    }

    fn generic() -> Self {
        Origins {
            roles: RolesOrigin::File("roles".into()),
            default: "default role".into(),
            questions: "questions".into(),
            rubric: "rubric template".into(),
        }
    }
}

impl RoleInventory {
    /// persona's own inventory, embedded in the binary.
    pub fn builtin() -> Self {
        Self::from_sources(
            BUILTIN_ROLES,
            BUILTIN_DEFAULT,
            BUILTIN_QUESTIONS,
            BUILTIN_RUBRIC,
            &Origins {
                roles: RolesOrigin::File("built-in roles.toml".into()),
                default: "built-in default.toml".into(),
                questions: "built-in questions.toml".into(),
                rubric: "built-in role_rubric.txt".into(),
            },
            "the built-in role inventory",
        )
        .expect("the built-in role inventory is valid (tested)")
    }

    /// A folder in the built-in layout: `roles.toml` (required), `default.toml`,
    /// `questions.toml`, `role_rubric.txt` (each optional: the built-in one when absent).
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let roles_path = dir.join("roles.toml");
        let roles = read(&roles_path)?;
        let optional = |file: &str, builtin: &'static str| -> Result<(String, String)> {
            let path = dir.join(file);
            if path.exists() {
                Ok((read(&path)?, path.display().to_string()))
            } else {
                Ok((builtin.to_string(), format!("built-in {file}")))
            }
        };
        let (default, default_origin) = optional("default.toml", BUILTIN_DEFAULT)?;
        let (questions, questions_origin) = optional("questions.toml", BUILTIN_QUESTIONS)?;
        let (rubric, rubric_origin) = optional("role_rubric.txt", BUILTIN_RUBRIC)?;
        Self::from_sources(
            &roles,
            &default,
            &questions,
            &rubric,
            &Origins {
                roles: RolesOrigin::File(roles_path.display().to_string()),
                default: default_origin,
                questions: questions_origin,
                rubric: rubric_origin,
            },
            &format!("the role inventory in {}", dir.display()),
        )
    }

    fn from_sources(
        roles: &str,
        default: &str,
        questions: &str,
        rubric: &str,
        origins: &Origins,
        what: &str,
    ) -> Result<Self> {
        // Parse every file first, so that one bad file does not hide the others' problems.
        let mut problems = Vec::new();
        let roles = parse_roles(roles, &origins.roles_collection());
        let default = parse_default(default, &origins.default);
        let questions = parse_questions(questions, &origins.questions);
        for e in [
            roles.as_ref().err(),
            default.as_ref().err(),
            questions.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        {
            problems.push(e.to_string());
        }
        let (Ok(roles), Ok(default), Ok(questions)) = (roles, default, questions) else {
            return Err(RolesError::Invalid {
                origin: what.to_string(),
                problems,
            });
        };
        let inventory = RoleInventory {
            roles,
            default,
            questions,
            rubric_template: rubric.to_string(),
        };
        inventory.check(origins, true, what)?;
        Ok(inventory)
    }

    /// The Assistant-Axis code's role files, read unchanged: a folder of `<role>.json`
    /// (`data/roles/instructions/` in that repository, or its parent `data/roles/`, which holds
    /// `instructions/` and `role_list.json`). `default.json` becomes the default; descriptions
    /// come from `role_list.json` (next to the files or one folder up) when there is one.
    /// Questions and the shared rubric template are the built-in ones (each Assistant-Axis role
    /// brings its own rubric); replace [`RoleInventory::questions`] with
    /// [`load_assistant_axis_questions`] to use that code's question set.
    pub fn with_assistant_axis_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let (json_dir, list_candidates) = if dir.join("instructions").is_dir() {
            (dir.join("instructions"), vec![dir.join("role_list.json")])
        } else {
            let mut c = vec![dir.join("role_list.json")];
            if let Some(parent) = dir.parent() {
                c.push(parent.join("role_list.json"));
            }
            (dir.to_path_buf(), c)
        };
        let what = format!("the Assistant-Axis roles in {}", json_dir.display());
        let mut problems = Vec::new();

        let mut descriptions: HashMap<String, String> = HashMap::new();
        if let Some(list) = list_candidates.iter().find(|p| p.is_file()) {
            let text = read(list)?;
            match serde_json::from_str::<BTreeMap<String, String>>(&text) {
                Ok(map) => descriptions.extend(map),
                Err(e) => problems.push(format!(
                    "{}: expected a JSON object mapping role names to one-line descriptions: {e}",
                    list.display()
                )),
            }
        }

        let entries = std::fs::read_dir(&json_dir).map_err(|e| RolesError::Read {
            path: json_dir.display().to_string(),
            source: e,
        })?;
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| RolesError::Read {
                path: json_dir.display().to_string(),
                source: e,
            })?;
            let path = entry.path();
            let is_json = path.extension().and_then(|e| e.to_str()) == Some("json");
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if path.is_file() && is_json && stem != "role_list" {
                files.push(path);
            }
        }
        files.sort();

        let mut default = None;
        let mut roles = Vec::new();
        for path in &files {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = read(path)?;
            match parse_assistant_axis(&name, &text, &path.display().to_string()) {
                Ok(mut role) => {
                    if let Some(d) = descriptions.get(&name) {
                        role.description = d.clone();
                    }
                    if name == DEFAULT_NAME {
                        default = Some(role);
                    } else {
                        roles.push(role);
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        if files.is_empty() {
            problems.push(format!(
                "{}: no role files (`<role>.json`) found",
                json_dir.display()
            ));
        } else if default.is_none() && !files.iter().any(|f| f.ends_with("default.json")) {
            problems.push(format!(
                "{}: no default.json (the default assistant's prompts)",
                json_dir.display()
            ));
        }
        let (Some(default), true) = (default, problems.is_empty()) else {
            return Err(RolesError::Invalid {
                origin: what,
                problems,
            });
        };

        let builtin = Self::builtin();
        let inventory = RoleInventory {
            roles,
            default,
            questions: builtin.questions,
            rubric_template: builtin.rubric_template,
        };
        let origins = Origins {
            roles: RolesOrigin::JsonDir(json_dir.clone()),
            default: json_dir.join("default.json").display().to_string(),
            questions: "built-in questions.toml".into(),
            rubric: "built-in role_rubric.txt".into(),
        };
        inventory.check(&origins, false, &what)?;
        Ok(inventory)
    }

    /// Checks the whole inventory and reports every problem: exactly five prompts per role,
    /// none empty except the default's, unique names, rubric slots present, at least one
    /// question.
    pub fn validate(&self) -> Result<()> {
        self.check(&Origins::generic(), false, "the role inventory")
    }

    fn check(&self, origins: &Origins, strict_names: bool, what: &str) -> Result<()> {
        let mut problems = Vec::new();
        for role in &self.roles {
            problems.extend(role_problems(role, &origins.role(&role.name), strict_names));
            if role.category == RoleCategory::Default {
                problems.push(format!(
                    "{}: role `{}`: the category `default` is reserved for the default assistant",
                    origins.role(&role.name),
                    role.name
                ));
            }
        }
        let mut default = self.default.clone();
        default.category = RoleCategory::Default;
        problems.extend(role_problems(&default, &origins.default, strict_names));
        if self.default.category != RoleCategory::Default {
            problems.push(format!(
                "{}: the default assistant must have the category `default`, not `{}`",
                origins.default, self.default.category
            ));
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for name in self.roles.iter().map(|r| r.name.as_str()) {
            *counts.entry(name).or_default() += 1;
        }
        for (name, n) in &counts {
            if *n > 1 {
                problems.push(format!(
                    "{}: the role name `{name}` is used {n} times (names must be unique)",
                    origins.roles_collection()
                ));
            }
        }
        if counts.contains_key(self.default.name.as_str()) {
            problems.push(format!(
                "{}: a role is named `{}`, the default assistant's name",
                origins.roles_collection(),
                self.default.name
            ));
        }
        if self.roles.is_empty() {
            problems.push(format!(
                "{}: there are no roles",
                origins.roles_collection()
            ));
        }
        problems.extend(rubric_template_problems(
            &self.rubric_template,
            &origins.rubric,
        ));
        problems.extend(question_problems(&self.questions, &origins.questions));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RolesError::Invalid {
                origin: what.to_string(),
                problems,
            })
        }
    }

    /// A role by name; `default` (the default's name) gives the default assistant.
    pub fn role(&self, name: &str) -> Option<&Role> {
        if name == self.default.name {
            return Some(&self.default);
        }
        self.roles.iter().find(|r| r.name == name)
    }

    /// The default assistant first, then every role.
    pub fn all_roles(&self) -> impl Iterator<Item = &Role> {
        std::iter::once(&self.default).chain(self.roles.iter())
    }

    /// How many roles each category has (the default not counted).
    pub fn roles_per_category(&self) -> BTreeMap<RoleCategory, usize> {
        let mut out = BTreeMap::new();
        for r in &self.roles {
            *out.entry(r.category).or_default() += 1;
        }
        out
    }

    /// How many questions each category has.
    pub fn questions_per_category(&self) -> BTreeMap<QuestionCategory, usize> {
        let mut out = BTreeMap::new();
        for q in &self.questions {
            *out.entry(q.category).or_default() += 1;
        }
        out
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| RolesError::Read {
        path: path.display().to_string(),
        source: e,
    })
}

fn parse_assistant_axis(name: &str, text: &str, origin: &str) -> Result<Role> {
    let file: AxisRoleFile = serde_json::from_str(text).map_err(|e| RolesError::Parse {
        origin: origin.to_string(),
        reason: format!(
            "expected an Assistant-Axis role file: `instruction` = a list of {{\"pos\": <system prompt>}}, \
             optional `questions` and `eval_prompt` ({e})"
        ),
    })?;
    let is_default = name == DEFAULT_NAME;
    let role = Role {
        name: name.to_string(),
        category: if is_default {
            RoleCategory::Default
        } else {
            RoleCategory::Uncategorized
        },
        description: if is_default {
            "The model's own default persona: no role, just the assistant it was trained to be."
                .to_string()
        } else {
            name.replace(['_', '-'], " ")
        },
        prompts: file.instruction.into_iter().map(|i| i.pos).collect(),
        rubric: file.eval_prompt,
        questions: file.questions,
    };
    let problems = role_problems(&role, origin, false);
    if problems.is_empty() {
        Ok(role)
    } else {
        Err(RolesError::Invalid {
            origin: format!("Assistant-Axis role `{name}`"),
            problems,
        })
    }
}

/// The Assistant-Axis `extraction_questions.jsonl` (one `{"question", "id"}` per line), as
/// uncategorized questions in file order. Duplicates are kept, as that code keeps them.
pub fn load_assistant_axis_questions(path: impl AsRef<Path>) -> Result<Vec<Question>> {
    let path = path.as_ref();
    let text = read(path)?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<AxisQuestionLine>(line) {
            Ok(q) => out.push(Question {
                text: q.question,
                category: QuestionCategory::Uncategorized,
            }),
            Err(e) => problems.push(format!(
                "line {}: expected {{\"question\": ..., \"id\": ...}} ({e})",
                i + 1
            )),
        }
    }
    problems.extend(question_problems(&out, &path.display().to_string()));
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(RolesError::Invalid {
            origin: path.display().to_string(),
            problems,
        })
    }
}

impl Role {
    /// One Assistant-Axis role file, read unchanged: `instruction[*].pos` → prompts,
    /// `eval_prompt` → rubric, `questions` kept for reference. `name` is the file stem;
    /// `default` gives the default assistant (whose first prompt may be empty). The
    /// description is the name in words until a `role_list.json` supplies one.
    pub fn from_assistant_axis_json(name: &str, text: &str) -> Result<Role> {
        parse_assistant_axis(name, text, &format!("{name}.json"))
    }

    /// The name in words (`grieving_widow` → `grieving widow`): the `{role}` slot.
    pub fn display_name(&self) -> String {
        self.name.replace(['_', '-'], " ")
    }

    pub fn is_default(&self) -> bool {
        self.category == RoleCategory::Default
    }

    /// System prompt `i` with `{model_name}` filled; `None` for an empty prompt (no system
    /// message: the default's first one) or an index past the last prompt.
    pub fn system_prompt(&self, i: usize, model_name: &str) -> Option<String> {
        let p = self.prompts.get(i)?;
        if p.trim().is_empty() {
            return None;
        }
        Some(p.replace(MODEL_NAME_SLOT, model_name))
    }

    /// The judge prompt for one answer: the role's own rubric when it has one, else
    /// `template`, with `{role}`, `{description}`, `{question}` and `{answer}` filled in one
    /// pass (text inside the question or answer is never treated as a slot).
    pub fn rubric_prompt(&self, template: &str, question: &str, answer: &str) -> String {
        let template = self.rubric.as_deref().unwrap_or(template);
        let name = self.display_name();
        fill_slots(
            template,
            &[
                ("{role}", name.as_str()),
                ("{description}", self.description.as_str()),
                ("{question}", question),
                ("{answer}", answer),
            ],
        )
    }
}

/// Replaces each `slot` in `template` with its value, in one left-to-right pass: inserted text
/// is never scanned again, and braces that are not slots are left alone.
pub fn fill_slots(template: &str, slots: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        match slots.iter().find(|(slot, _)| tail.starts_with(slot)) {
            Some((slot, value)) => {
                out.push_str(value);
                rest = &tail[slot.len()..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A judge's reply → role-adherence score, as the Assistant-Axis judge reads it: the first
/// whole number in the text, kept when it is 0–3 (otherwise the answer is unscored).
pub fn parse_adherence_score(reply: &str) -> Option<u8> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let chars: Vec<(usize, char)> = reply.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && chars[j].1.is_ascii_digit() {
                j += 1;
            }
            let before_ok = i == 0 || !is_word(chars[i - 1].1);
            let after_ok = j == chars.len() || !is_word(chars[j].1);
            if before_ok && after_ok {
                let end = chars.get(j).map_or(reply.len(), |&(b, _)| b);
                return match reply[start..end].parse::<u64>() {
                    Ok(n) if n <= 3 => Some(n as u8),
                    _ => None,
                };
            }
            i = j;
        } else {
            i += 1;
        }
    }
    None
}
