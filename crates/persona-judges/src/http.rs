//! Judges behind any OpenAI-compatible HTTP endpoint (OpenAI, vLLM, llama.cpp servers, …).
//!
//! The score of a rubric prompt is read from the top-20 log-probabilities of the first answer
//! token (docs/design.md, "Judges"), so each prompt costs one request for one token. Requests run
//! on a few threads at once; transient failures (rate limits, server errors, a server that
//! went away after answering before) are retried with exponential backoff, and everything else
//! stops the run at once with a message that says what to change.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::outcome::{outcome_from_top_logprobs, Score};
use crate::rubric::{expected_number, numbers_from_top_logprobs, NumberScorer};
use crate::JudgeError;

/// The base URL when neither `PERSONA_JUDGE_BASE_URL` nor `OPENAI_BASE_URL` is set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// How many top tokens the reference method reads (the most OpenAI's API returns).
pub const TOP_LOGPROBS: u32 = 20;

/// Where and how to reach the judge model.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiConfig {
    /// The API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The model name sent with every request.
    pub model: String,
    /// Sent as a bearer token when set; local servers usually need none.
    pub api_key: Option<String>,
    /// Requests in flight at once when scoring many prompts.
    pub concurrency: usize,
    /// Retries of one request after a transient failure.
    pub max_retries: u32,
    /// Limit for one whole request, reply included.
    pub timeout: Duration,
}

impl OpenAiConfig {
    /// A config for `model` at `base_url` with the default limits (8 in flight, 4 retries,
    /// 120 s per request) and no key.
    pub fn new(base_url: &str, model: &str) -> Self {
        OpenAiConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key: None,
            concurrency: 8,
            max_retries: 4,
            timeout: Duration::from_secs(120),
        }
    }

    /// The config from the environment: base URL from `PERSONA_JUDGE_BASE_URL`, else
    /// `OPENAI_BASE_URL`, else OpenAI's; key from `PERSONA_JUDGE_API_KEY`, else
    /// `OPENAI_API_KEY` (optional); model from `model`, else `PERSONA_JUDGE_MODEL`.
    pub fn from_env(model: Option<&str>) -> Result<Self, JudgeError> {
        Self::from_lookup(model, |k| std::env::var(k).ok())
    }

    /// [`Self::from_env`] over any variable lookup (testable without touching the process
    /// environment). Empty values count as unset.
    pub fn from_lookup(
        model: Option<&str>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, JudgeError> {
        let var = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let base_url = var("PERSONA_JUDGE_BASE_URL")
            .or_else(|| var("OPENAI_BASE_URL"))
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        let model = match model.filter(|m| !m.trim().is_empty()) {
            Some(m) => m.to_string(),
            None => var("PERSONA_JUDGE_MODEL").ok_or_else(|| {
                JudgeError::Backend(format!(
                    "no judge model named: name one on the command line or set \
                     PERSONA_JUDGE_MODEL (e.g. PERSONA_JUDGE_MODEL=gpt-4.1-mini); it is asked at \
                     {base_url} (set PERSONA_JUDGE_BASE_URL for another OpenAI-compatible server)"
                ))
            })?,
        };
        let mut config = OpenAiConfig::new(&base_url, &model);
        config.api_key = var("PERSONA_JUDGE_API_KEY").or_else(|| var("OPENAI_API_KEY"));
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), JudgeError> {
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return Err(JudgeError::Backend(format!(
                "judge base URL `{}` must start with http:// or https:// (e.g. \
                 http://127.0.0.1:8000/v1); set PERSONA_JUDGE_BASE_URL",
                self.base_url
            )));
        }
        if self.model.trim().is_empty() {
            return Err(JudgeError::Backend(
                "the judge model name is empty: set PERSONA_JUDGE_MODEL or pass a model".into(),
            ));
        }
        if self.concurrency == 0 {
            return Err(JudgeError::Backend(
                "judge concurrency must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "system".into(),
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// Why one HTTP exchange failed, sorted by what to do about it.
enum Failure {
    /// No connection could be made (refused, no such host, connect timeout).
    Unreachable(String),
    /// The connection broke or timed out after it was made.
    Broken(String),
    /// The server answered with an error status.
    Status {
        code: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Nothing a retry can change (bad URL, TLS, protocol).
    Fatal(String),
}

/// A blocking client for the chat-completions endpoint of an OpenAI-compatible server.
pub struct OpenAiClient {
    config: OpenAiConfig,
    agent: ureq::Agent,
    /// Set once the server has answered: after that, a refused connection is a restart or an
    /// overload worth retrying; before it, nothing is listening and waiting would not help.
    reached: AtomicBool,
}

impl OpenAiClient {
    pub fn new(config: OpenAiConfig) -> Result<Self, JudgeError> {
        let mut config = config;
        config.base_url = config.base_url.trim_end_matches('/').to_string();
        config.check()?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .timeout_connect(Some(config.timeout.min(Duration::from_secs(15))))
            .max_idle_connections_per_host(config.concurrency.max(3))
            .user_agent(concat!("persona/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(OpenAiClient {
            config,
            agent,
            reached: AtomicBool::new(false),
        })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.config.base_url)
    }

    /// The completion text of a chat (sampled at `temperature`).
    pub fn chat(
        &self,
        messages: &[ChatMessage],
        max_tokens: u32,
        temperature: f64,
    ) -> Result<String, JudgeError> {
        let body = json!({
            "model": self.config.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        });
        let reply = self.post(&body)?;
        match reply.pointer("/choices/0/message/content") {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(self.not_a_completion(&reply)),
        }
    }

    /// The top-20 candidates (token text, natural-log probability) for the first token of the
    /// reply to `prompt` as one user message, at temperature 0.
    pub fn first_token_top_logprobs(&self, prompt: &str) -> Result<Vec<(String, f64)>, JudgeError> {
        let body = json!({
            "model": self.config.model,
            "messages": [ChatMessage::user(prompt)],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": true,
            "top_logprobs": TOP_LOGPROBS,
        });
        let reply = self.post(&body)?;
        if reply.pointer("/choices/0").is_none() {
            return Err(self.not_a_completion(&reply));
        }
        let top = reply
            .pointer("/choices/0/logprobs/content/0/top_logprobs")
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                JudgeError::Backend(format!(
                    "the judge at {} (model {}) replied without top log-probabilities: the \
                     server must support `logprobs` and `top_logprobs` in chat completions \
                     (OpenAI's API, vLLM and llama-cpp-python's server do)",
                    self.config.base_url, self.config.model
                ))
            })?;
        top.iter()
            .map(|entry| {
                let token = entry.get("token").and_then(Value::as_str);
                let logprob = entry.get("logprob").and_then(Value::as_f64);
                match (token, logprob) {
                    (Some(t), Some(lp)) => Ok((t.to_string(), lp)),
                    _ => Err(JudgeError::Backend(format!(
                        "the judge at {} sent a top_logprobs entry without `token` and \
                         `logprob`: {}",
                        self.config.base_url,
                        snippet(&entry.to_string())
                    ))),
                }
            })
            .collect()
    }

    fn not_a_completion(&self, reply: &Value) -> JudgeError {
        JudgeError::Backend(format!(
            "{} sent a reply that is not a chat completion (no choices[0].message): {}",
            self.endpoint(),
            snippet(&reply.to_string())
        ))
    }

    /// POSTs `body` to the chat endpoint, retrying transient failures with backoff.
    fn post(&self, body: &Value) -> Result<Value, JudgeError> {
        let mut attempt = 0u32;
        loop {
            let failure = match self.post_once(body) {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            let reached = self.reached.load(Ordering::Relaxed);
            let (transient, wait_hint) = match &failure {
                Failure::Unreachable(_) => (reached, None),
                Failure::Broken(_) => (true, None),
                Failure::Status {
                    code, retry_after, ..
                } => (*code == 429 || *code >= 500, *retry_after),
                Failure::Fatal(_) => (false, None),
            };
            if !transient || attempt >= self.config.max_retries {
                return Err(self.explain(failure, attempt));
            }
            let backoff = Duration::from_millis(500u64 << attempt.min(6));
            std::thread::sleep(
                wait_hint
                    .map(|d| d.min(Duration::from_secs(60)))
                    .unwrap_or(backoff),
            );
            attempt += 1;
        }
    }

    fn post_once(&self, body: &Value) -> Result<Value, Failure> {
        let mut req = self.agent.post(self.endpoint());
        if let Some(key) = &self.config.api_key {
            req = req.header("Authorization", format!("Bearer {key}"));
        }
        let mut resp = req.send_json(body).map_err(classify)?;
        self.reached.store(true, Ordering::Relaxed);
        let code = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let text = resp.body_mut().read_to_string().map_err(classify)?;
        if !(200..300).contains(&code) {
            return Err(Failure::Status {
                code,
                message: server_message(&text),
                retry_after,
            });
        }
        serde_json::from_str(&text).map_err(|e| {
            Failure::Fatal(format!(
                "{} sent a reply that is not JSON ({e}): {}",
                self.endpoint(),
                snippet(&text)
            ))
        })
    }

    fn explain(&self, failure: Failure, retries: u32) -> JudgeError {
        let base = &self.config.base_url;
        let after = if retries > 0 {
            format!(" (after {retries} retries)")
        } else {
            String::new()
        };
        JudgeError::Backend(match failure {
            Failure::Unreachable(detail) | Failure::Broken(detail)
                if !self.reached.load(Ordering::Relaxed) =>
            {
                format!(
                    "cannot reach the judge at {base}: {detail}{after}; start an \
                     OpenAI-compatible server there or set PERSONA_JUDGE_BASE_URL"
                )
            }
            Failure::Unreachable(detail) | Failure::Broken(detail) => {
                format!("lost the connection to the judge at {base}: {detail}{after}")
            }
            Failure::Status {
                code: code @ (401 | 403),
                message,
                ..
            } => {
                let key = if self.config.api_key.is_some() {
                    "the API key was refused: set PERSONA_JUDGE_API_KEY (or OPENAI_API_KEY) to a \
                     key this server accepts"
                } else {
                    "no API key was sent: set PERSONA_JUDGE_API_KEY (or OPENAI_API_KEY)"
                };
                format!("the judge at {base} answered HTTP {code} ({message}); {key}")
            }
            Failure::Status {
                code: 404, message, ..
            } => format!(
                "{} answered HTTP 404 ({message}): check the model name `{}` and that the base \
                 URL includes the API version, e.g. https://api.openai.com/v1 or \
                 http://127.0.0.1:8000/v1 (set PERSONA_JUDGE_BASE_URL)",
                self.endpoint(),
                self.config.model
            ),
            Failure::Status { code, message, .. } if code == 429 || code >= 500 => {
                format!("the judge at {base} kept failing with HTTP {code}{after}: {message}")
            }
            Failure::Status { code, message, .. } => format!(
                "the judge at {base} rejected the request for model `{}` with HTTP {code}: \
                 {message}",
                self.config.model
            ),
            Failure::Fatal(detail) => format!("judge at {base}: {detail}"),
        })
    }
}

/// Sorts a transport error by what a retry could do about it.
fn classify(e: ureq::Error) -> Failure {
    use std::io::ErrorKind;
    match e {
        ureq::Error::HostNotFound => Failure::Unreachable("host not found".into()),
        ureq::Error::ConnectionFailed => Failure::Unreachable("connection failed".into()),
        ureq::Error::Timeout(t) => {
            let s = t.to_string();
            if matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve) {
                Failure::Unreachable(format!("timed out ({s})"))
            } else {
                Failure::Broken(format!("timed out ({s})"))
            }
        }
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused | ErrorKind::AddrNotAvailable => {
                Failure::Unreachable(format!("connection refused ({io})"))
            }
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::NotConnected
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof
            | ErrorKind::TimedOut
            | ErrorKind::Interrupted => Failure::Broken(io.to_string()),
            _ => Failure::Fatal(io.to_string()),
        },
        other => Failure::Fatal(other.to_string()),
    }
}

/// The `error.message` of an OpenAI-style error body, else the body itself (shortened).
fn server_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .or_else(|| v.get("detail"))
            .or_else(|| v.get("message"))
            .map(|m| match m {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
    });
    match message {
        Some(m) => snippet(&m),
        None if body.trim().is_empty() => "empty reply".into(),
        None => snippet(body),
    }
}

/// `text` cut to a length that fits in an error message.
fn snippet(text: &str) -> String {
    const MAX: usize = 400;
    let t = text.trim();
    match t.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

/// A [`NumberScorer`] over an OpenAI-compatible endpoint: the expected number of the first
/// answer token, from its top-20 log-probabilities.
pub struct OpenAiScorer {
    client: OpenAiClient,
}

impl OpenAiScorer {
    pub fn new(config: OpenAiConfig) -> Result<Self, JudgeError> {
        Ok(OpenAiScorer {
            client: OpenAiClient::new(config)?,
        })
    }

    pub fn client(&self) -> &OpenAiClient {
        &self.client
    }

    /// Scores in prompt order with at most `concurrency` requests in flight, each prompt's
    /// score read by `read` from its first token's top log-probabilities; the first failure
    /// (lowest prompt index among those that failed) stops the rest.
    fn score_all<T: Send>(
        &self,
        prompts: &[String],
        read: impl Fn(&[(String, f64)]) -> T + Sync,
    ) -> Result<Vec<T>, JudgeError> {
        let workers = self
            .client
            .config()
            .concurrency
            .clamp(1, prompts.len().max(1));
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        // One slot per prompt, filled by whichever worker took it.
        let results: Mutex<Vec<Option<Result<T, JudgeError>>>> =
            Mutex::new((0..prompts.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= prompts.len() {
                        break;
                    }
                    let r = self
                        .client
                        .first_token_top_logprobs(&prompts[i])
                        .map(|top| read(&top));
                    if r.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                });
            }
        });
        let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(prompts.len());
        for r in results {
            match r {
                Some(Ok(score)) => out.push(score),
                Some(Err(e)) => return Err(e),
                // Only skipped after an earlier-started prompt failed: report that failure.
                None => continue,
            }
        }
        if out.len() != prompts.len() {
            return Err(JudgeError::Backend(
                "judging stopped after a failed request".into(),
            ));
        }
        Ok(out)
    }
}

impl From<OpenAiClient> for OpenAiScorer {
    fn from(client: OpenAiClient) -> Self {
        OpenAiScorer { client }
    }
}

impl NumberScorer for OpenAiScorer {
    fn id(&self) -> String {
        let c = self.client.config();
        format!("openai:{}@{}", c.model, c.base_url)
    }

    fn score_prompts(&self, prompts: &[String]) -> Result<Vec<Option<f64>>, JudgeError> {
        self.score_all(prompts, |top| {
            expected_number(&numbers_from_top_logprobs(top))
        })
    }

    fn score_outcomes(&self, prompts: &[String]) -> Result<Vec<Score>, JudgeError> {
        self.score_all(prompts, outcome_from_top_logprobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn config_from_environment_in_order_of_precedence() {
        let c = OpenAiConfig::from_lookup(Some("m1"), env(&[])).unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.model, "m1");
        assert_eq!(c.api_key, None);
        assert_eq!((c.concurrency, c.max_retries), (8, 4));
        assert_eq!(c.timeout, Duration::from_secs(120));

        let c = OpenAiConfig::from_lookup(
            None,
            env(&[
                ("OPENAI_BASE_URL", "http://a:1/v1"),
                ("PERSONA_JUDGE_BASE_URL", "http://b:2/v1/"),
                ("OPENAI_API_KEY", "k1"),
                ("PERSONA_JUDGE_API_KEY", "k2"),
                ("PERSONA_JUDGE_MODEL", "m2"),
            ]),
        )
        .unwrap();
        assert_eq!(c.base_url, "http://b:2/v1");
        assert_eq!(c.api_key.as_deref(), Some("k2"));
        assert_eq!(c.model, "m2");

        let c = OpenAiConfig::from_lookup(
            Some("m3"),
            env(&[
                ("OPENAI_BASE_URL", "http://a:1/v1"),
                ("OPENAI_API_KEY", "k1"),
                ("PERSONA_JUDGE_MODEL", "m2"),
                ("PERSONA_JUDGE_API_KEY", ""),
            ]),
        )
        .unwrap();
        assert_eq!(c.base_url, "http://a:1/v1");
        assert_eq!(c.api_key.as_deref(), Some("k1"));
        assert_eq!(c.model, "m3");
    }

    #[test]
    fn config_errors_say_what_to_set() {
        let e = OpenAiConfig::from_lookup(None, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PERSONA_JUDGE_MODEL") && e.contains(DEFAULT_BASE_URL),
            "{e}"
        );
        let e = OpenAiConfig::from_lookup(
            Some("m"),
            env(&[("PERSONA_JUDGE_BASE_URL", "localhost:8000")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("localhost:8000") && e.contains("http://"), "{e}");
        let mut c = OpenAiConfig::new("http://127.0.0.1:9/v1", "m");
        c.concurrency = 0;
        assert!(OpenAiClient::new(c).is_err());
    }

    #[test]
    fn server_messages_are_extracted_and_shortened() {
        assert_eq!(
            server_message(r#"{"error": {"message": "bad model", "type": "x"}}"#),
            "bad model"
        );
        assert_eq!(server_message(r#"{"detail": "nope"}"#), "nope");
        assert_eq!(server_message(""), "empty reply");
        let long = "x".repeat(1000);
        assert!(server_message(&long).chars().count() <= 401);
    }
}
