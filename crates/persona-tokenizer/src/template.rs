use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{context, Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

use crate::tokenizer::{read_json, token_string};
use crate::{pyjson, TokenizerError};

type Result<T> = std::result::Result<T, TokenizerError>;

/// One chat turn, as HF's `apply_chat_template` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// "system", "user", "assistant" (templates may accept others, e.g. "tool").
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A model's Jinja chat template, rendered the way HF transformers renders it.
///
/// HF uses jinja2 with `trim_blocks` and `lstrip_blocks`, Python string methods, and the
/// globals `raise_exception` and `strftime_now`, and its own `tojson` (no HTML escaping,
/// `json.dumps` spacing); all of that is reproduced so prompts match byte for byte.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

const TEMPLATE_NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles `source`; `bos_token` / `eos_token` are the strings templates may reference.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| TokenizerError::TemplateSyntax(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", pyjson::tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(|e| TokenizerError::TemplateSyntax(e.to_string()))?;
        Ok(Self {
            env,
            source: source.to_owned(),
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// Reads a HF `tokenizer_config.json`: `chat_template` as a string or as a list of
    /// `{name, template}` (the one named "default", else the first), falling back to a
    /// `chat_template.jinja` beside it (newer transformers save it there); `bos_token` and
    /// `eos_token` as strings or `{"content": ..}` objects.
    pub fn from_tokenizer_config(path: &Path) -> Result<Self> {
        let config = read_json(path)?;
        let invalid = |message: String| TokenizerError::InvalidConfig {
            path: path.to_owned(),
            message,
        };
        let source = match &config["chat_template"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(list) => {
                let named = |e: &&serde_json::Value| e["name"] == "default";
                let entry = list.iter().find(named).or(list.first());
                entry
                    .and_then(|e| e["template"].as_str())
                    .ok_or_else(|| {
                        invalid("chat_template is a list without a {name, template} entry".into())
                    })?
                    .to_owned()
            }
            serde_json::Value::Null => {
                let jinja = path.with_file_name("chat_template.jinja");
                if !jinja.is_file() {
                    return Err(invalid(
                        "there is no chat_template, and no chat_template.jinja beside it; \
                         this model has no chat template, so give one explicitly"
                            .into(),
                    ));
                }
                std::fs::read_to_string(&jinja).map_err(|source| TokenizerError::Io {
                    path: jinja,
                    source,
                })?
            }
            _ => return Err(invalid("chat_template must be a string or a list".into())),
        };
        let token = |key: &str| token_string(&config[key]).unwrap_or_default();
        Self::new(&source, &token("bos_token"), &token("eos_token"))
    }

    /// The prompt text for `messages`; with `add_generation_prompt` it ends with the opening of
    /// the assistant turn (`<|im_start|>assistant\n` for ChatML).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TokenizerError::TemplateRender(e.to_string()))?;
        template
            .render(context! {
                messages => Value::from(Serde(messages)),
                add_generation_prompt => add_generation_prompt,
                // HF passes these as None when not given; templates test `tools is not none`.
                tools => Value::from(()),
                documents => Value::from(()),
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| TokenizerError::TemplateRender(e.to_string()))
    }

    /// The template text, e.g. to write it into a tokenizer_config.json.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Templates call `raise_exception(msg)` to reject a conversation (e.g. roles not alternating).
fn raise_exception(message: String) -> std::result::Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the current date, which Llama 3.x puts in its system header. UTC
/// (HF uses local time; they agree on machines running in UTC).
fn strftime_now(format: String) -> std::result::Result<String, Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    strftime_utc(now.as_secs() as i64, &format)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Python's `strftime` (C locale) for the directives chat templates use.
fn strftime_utc(unix_secs: i64, format: &str) -> std::result::Result<String, Error> {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = (days + 4).rem_euclid(7) as usize;
    let month_name = MONTHS[(month - 1) as usize];

    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let piece = match chars.next() {
            Some('Y') => year.to_string(),
            Some('y') => format!("{:02}", year.rem_euclid(100)),
            Some('m') => format!("{month:02}"),
            Some('d') => format!("{day:02}"),
            Some('B') => month_name.to_owned(),
            Some('b') => month_name[..3].to_owned(),
            Some('A') => WEEKDAYS[weekday].to_owned(),
            Some('a') => WEEKDAYS[weekday][..3].to_owned(),
            Some('H') => format!("{hour:02}"),
            Some('I') => format!("{:02}", (hour + 11) % 12 + 1),
            Some('p') => (if hour < 12 { "AM" } else { "PM" }).to_owned(),
            Some('M') => format!("{minute:02}"),
            Some('S') => format!("{second:02}"),
            Some('%') => "%".to_owned(),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: unsupported directive %{} (supported: %Y %y %m %d %B %b %A %a %H %I %p %M %S %%)",
                        other.map(String::from).unwrap_or_default()
                    ),
                ))
            }
        };
        out.push_str(&piece);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::strftime_utc;

    #[test]
    fn strftime_matches_python() {
        // 2024-07-26 13:25:09 UTC, a Friday; python: time.strftime(fmt, time.gmtime(1722000309))
        let t = 1_722_000_309;
        assert_eq!(strftime_utc(t, "%d %b %Y").unwrap(), "26 Jul 2024");
        assert_eq!(
            strftime_utc(t, "%A %a %B %m/%d/%y %H:%M:%S %I%p %%").unwrap(),
            "Friday Fri July 07/26/24 13:25:09 01PM %"
        );
        // A leap day and the epoch.
        assert_eq!(
            strftime_utc(951_782_400, "%Y-%m-%d %a").unwrap(),
            "2000-02-29 Tue"
        );
        assert_eq!(
            strftime_utc(0, "%Y-%m-%d %H %A").unwrap(),
            "1970-01-01 00 Thursday"
        );
        assert!(strftime_utc(t, "%Q").is_err());
        assert!(strftime_utc(t, "%").is_err());
    }
}
