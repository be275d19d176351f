//! Drift along the Assistant axis over a conversation: the model answers each scripted user
//! turn in turn (its own earlier answers stay in context), and every answer's mean
//! response-token state is projected on the unit axis. A falling projection is the model moving
//! away from its default assistant persona.

use std::collections::BTreeMap;
use std::path::PathBuf;

use persona_engine::{Engine, Message};
use persona_evals::DriftConversation;
use persona_report::svg::{Chart, Series};
use serde::{Deserialize, Serialize};

use crate::answers::{answer_all, AnswerJob, AnswerOptions, AnswerRequest, Probe};
use crate::store::RunStore;
use crate::PipelineError;

#[derive(Debug, Clone)]
pub struct DriftOptions {
    /// The layer whose `resid_post` is projected on the axis.
    pub layer: usize,
    pub answers: AnswerOptions,
}

/// One assistant turn and where it sits on the axis.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TurnRow {
    pub conversation: String,
    pub domain: String,
    /// 1-based.
    pub turn: usize,
    /// Mean over the answer's tokens of `resid_post · û` at the layer; `None` for an empty
    /// answer.
    pub projection: Option<f64>,
    pub user: String,
    pub answer: String,
}

/// The drift of one domain: per-turn means and the change from the first turn to the last.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DomainDrift {
    pub domain: String,
    pub conversations: usize,
    /// Mean projection at turn 1, 2, … over the conversations that reached it.
    pub per_turn: Vec<Option<f64>>,
    pub first_turn: Option<f64>,
    pub last_turn: Option<f64>,
    /// Mean over conversations of (last answered turn − first turn); negative: away from the
    /// Assistant.
    pub drift: Option<f64>,
    pub drift_ci95: Option<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftResult {
    pub layer: usize,
    /// The cap every answer ran under (`p25@15..22`), if any.
    pub cap: Option<String>,
    /// The default assistant's projection at the layer, from the axis file (if it has it).
    pub default_projection: Option<f64>,
    pub domains: Vec<DomainDrift>,
    pub turns: usize,
    /// Every turn (also in `turns_file`).
    #[serde(skip)]
    pub rows: Vec<TurnRow>,
    pub turns_file: PathBuf,
    pub table_file: PathBuf,
    pub plot_files: Vec<PathBuf>,
    pub out_dir: PathBuf,
}

/// The messages the model answers at turn `answers.len() + 1`: the optional system prompt,
/// then the user turns so far with the model's own answers between them.
pub fn turn_messages(conv: &DriftConversation, answers: &[String]) -> Vec<Message> {
    let mut messages = Vec::with_capacity(2 * answers.len() + 2);
    if let Some(system) = &conv.system {
        messages.push(Message::new("system", system.clone()));
    }
    for (user, answer) in conv.turns.iter().zip(answers) {
        messages.push(Message::new("user", user.clone()));
        messages.push(Message::new("assistant", answer.clone()));
    }
    if let Some(next) = conv.turns.get(answers.len()) {
        messages.push(Message::new("user", next.clone()));
    }
    messages
}

/// Identifies a turn in the answer cache by its whole context, so an edited conversation or a
/// changed earlier answer never reuses a stale answer.
fn turn_key(conv: &DriftConversation, turn: usize, messages: &[Message]) -> String {
    format!(
        "{}|t{turn}|{}",
        conv.id,
        crate::answers::messages_digest(messages)
    )
}

/// Per-domain drift from turn rows (domains in first-seen order).
pub fn summarize(rows: &[TurnRow]) -> Vec<DomainDrift> {
    let mut order: Vec<&str> = Vec::new();
    // domain → conversation → (turn → projection)
    let mut by_domain: BTreeMap<&str, BTreeMap<&str, BTreeMap<usize, f64>>> = BTreeMap::new();
    for r in rows {
        if !order.contains(&r.domain.as_str()) {
            order.push(&r.domain);
        }
        let conv = by_domain
            .entry(&r.domain)
            .or_default()
            .entry(&r.conversation)
            .or_default();
        if let Some(p) = r.projection {
            conv.insert(r.turn, p);
        }
    }
    order
        .into_iter()
        .map(|domain| {
            let convs = &by_domain[domain];
            let turns = convs
                .values()
                .filter_map(|c| c.keys().next_back().copied())
                .max()
                .unwrap_or(0);
            let per_turn: Vec<Option<f64>> = (1..=turns)
                .map(|t| {
                    let at: Vec<f64> = convs.values().filter_map(|c| c.get(&t).copied()).collect();
                    crate::mean_and_ci(at).0
                })
                .collect();
            let changes: Vec<f64> = convs
                .values()
                .filter(|c| c.len() >= 2)
                .map(|c| c.values().next_back().unwrap() - c.values().next().unwrap())
                .collect();
            let (drift, drift_ci95) = crate::mean_and_ci(changes);
            DomainDrift {
                domain: domain.to_string(),
                conversations: convs.len(),
                first_turn: per_turn.first().copied().flatten(),
                last_turn: per_turn.last().copied().flatten(),
                per_turn,
                drift,
                drift_ci95,
            }
        })
        .collect()
}

/// Which conversations of a set to run: some domains, at most so many per domain, at most so
/// many user turns each (0: no limit).
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub domains: Vec<String>,
    pub per_domain: usize,
    pub turns: usize,
}

/// The conversations the filter picks, in set order. A domain the set does not have is an
/// error naming the ones it has.
pub fn select_conversations(
    all: Vec<DriftConversation>,
    filter: &ConversationFilter,
) -> Result<Vec<DriftConversation>, PipelineError> {
    if let Some(unknown) = filter
        .domains
        .iter()
        .find(|d| !all.iter().any(|c| &c.domain == *d))
    {
        let mut known: Vec<&str> = all.iter().map(|c| c.domain.as_str()).collect();
        known.dedup();
        return Err(PipelineError::Input(format!(
            "--domains: no conversation is in domain `{unknown}`; the set has {}",
            known.join(", ")
        )));
    }
    let mut per_domain: std::collections::HashMap<String, usize> = Default::default();
    Ok(all
        .into_iter()
        .filter(|c| filter.domains.is_empty() || filter.domains.contains(&c.domain))
        .filter(|c| {
            let n = per_domain.entry(c.domain.clone()).or_default();
            *n += 1;
            filter.per_domain == 0 || *n <= filter.per_domain
        })
        .map(|mut c| {
            if filter.turns > 0 {
                c.turns.truncate(filter.turns);
            }
            c
        })
        .collect())
}

/// The name `drift` gives its result in its folder.
pub const RESULT_FILE: &str = "drift.json";
/// Every turn with its text and projection.
pub const TURNS_FILE: &str = "drift_turns.jsonl";

/// Runs every conversation turn by turn (all conversations batched per turn, answers cached),
/// projects each answer on the unit axis at `opts.layer`, and puts `drift_turns.jsonl`,
/// `drift.csv`, `drift.json` and a plot per domain in `store`.
pub fn run_drift(
    engine: &Engine,
    conversations: &[DriftConversation],
    axis: crate::VectorSource,
    opts: &DriftOptions,
    store: &dyn RunStore,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<DriftResult, PipelineError> {
    if conversations.is_empty() {
        return Err(PipelineError::Input(
            "no conversations to run: give a conversation file with at least one conversation"
                .into(),
        ));
    }
    let direction = axis.layer(opts.layer, engine.config().d_model)?;
    let rows = answer_turns(engine, conversations, direction, opts, store, progress)?;
    let domains = summarize(&rows);
    let default_projection = crate::axis::default_projection(axis.vectors, opts.layer);
    let turns_file = crate::store::put_jsonl(store, TURNS_FILE, &rows)?;
    let table_file = write_table(store, &domains)?;
    let mut plot_files = Vec::new();
    for d in &domains {
        let chart = domain_chart(d, &rows, opts.layer, default_projection);
        plot_files.push(store.put(
            &format!("drift_{}.svg", file_stem(&d.domain)),
            chart.to_svg().as_bytes(),
        )?);
    }
    plot_files.push(
        store.put(
            "drift_domains.svg",
            domains_chart(&domains, opts.layer, default_projection)
                .to_svg()
                .as_bytes(),
        )?,
    );
    let result = DriftResult {
        layer: opts.layer,
        cap: opts.answers.cap.as_ref().map(|c| c.label()),
        default_projection,
        domains,
        turns: rows.len(),
        rows,
        turns_file,
        table_file,
        plot_files,
        out_dir: store.dir(),
    };
    crate::store::put_json(store, RESULT_FILE, &result)?;
    Ok(result)
}

/// Every conversation's turns answered in order, with each answer's projection on the unit
/// `direction`; rows in conversation order, turns in order.
fn answer_turns(
    engine: &Engine,
    conversations: &[DriftConversation],
    direction: &[f32],
    opts: &DriftOptions,
    store: &dyn RunStore,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Vec<TurnRow>, PipelineError> {
    let probe = Probe {
        layer: opts.layer,
        direction,
    };
    let max_turns = conversations
        .iter()
        .map(|c| c.turns.len())
        .max()
        .unwrap_or(0);
    let mut answers: Vec<Vec<String>> = vec![Vec::new(); conversations.len()];
    let mut rows = Vec::new();
    for turn in 1..=max_turns {
        let live: Vec<usize> = (0..conversations.len())
            .filter(|&i| conversations[i].turns.len() >= turn)
            .collect();
        let requests: Vec<AnswerRequest> = live
            .iter()
            .map(|&i| {
                let messages = turn_messages(&conversations[i], &answers[i]);
                AnswerRequest {
                    key: turn_key(&conversations[i], turn, &messages),
                    messages,
                    steer: None,
                }
            })
            .collect();
        let label = format!("turn {turn}/{max_turns}");
        let got = answer_all(
            &AnswerJob::new(engine, &requests, &opts.answers, store).probed(probe),
            &mut |d, t| progress(&label, d, t),
        )?;
        for (&i, a) in live.iter().zip(got) {
            let conv = &conversations[i];
            rows.push(TurnRow {
                conversation: conv.id.clone(),
                domain: conv.domain.clone(),
                turn,
                projection: a.response_projection,
                user: conv.turns[turn - 1].clone(),
                answer: a.text.clone(),
            });
            answers[i].push(a.text);
        }
    }
    rows.sort_by_key(|r| {
        (
            conversations.iter().position(|c| c.id == r.conversation),
            r.turn,
        )
    });
    Ok(rows)
}

/// A domain name as a file-name part: letters, digits, `-` and `_` kept, the rest `_`.
fn file_stem(domain: &str) -> String {
    domain
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write_table(store: &dyn RunStore, domains: &[DomainDrift]) -> Result<PathBuf, PipelineError> {
    let f = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.4}"));
    Ok(crate::store::put_csv(
        store,
        "drift.csv",
        &[
            "domain",
            "conversations",
            "first_turn",
            "last_turn",
            "drift",
            "drift_lo",
            "drift_hi",
        ],
        domains.iter().map(|d| {
            vec![
                d.domain.clone(),
                d.conversations.to_string(),
                f(d.first_turn),
                f(d.last_turn),
                f(d.drift),
                f(d.drift_ci95.map(|c| c.0)),
                f(d.drift_ci95.map(|c| c.1)),
            ]
        }),
    )?)
}

fn with_default_line(chart: Chart, default_projection: Option<f64>) -> Chart {
    match default_projection {
        Some(p) => chart.with_hline(p, "default assistant"),
        None => chart,
    }
}

/// One line per conversation of the domain and the domain's mean.
fn domain_chart(
    d: &DomainDrift,
    rows: &[TurnRow],
    layer: usize,
    default_projection: Option<f64>,
) -> Chart {
    let mut chart = Chart::new(
        format!(
            "Drift along the Assistant axis: {} (layer {layer})",
            d.domain
        ),
        "user turn",
        "projection on the axis",
    );
    let mut convs: Vec<&str> = Vec::new();
    for r in rows.iter().filter(|r| r.domain == d.domain) {
        if !convs.contains(&r.conversation.as_str()) {
            convs.push(&r.conversation);
        }
    }
    for c in convs {
        let xy = rows
            .iter()
            .filter(|r| r.conversation == c)
            .map(|r| (r.turn as f64, r.projection.unwrap_or(f64::NAN)));
        chart = chart.with_series(Series::line(c, xy));
    }
    chart = chart.with_series(Series::line_markers("mean", per_turn_points(d)));
    with_default_line(chart, default_projection)
}

fn per_turn_points(d: &DomainDrift) -> Vec<(f64, f64)> {
    d.per_turn
        .iter()
        .enumerate()
        .map(|(i, p)| ((i + 1) as f64, p.unwrap_or(f64::NAN)))
        .collect()
}

/// Every domain's mean projection per turn on one chart.
fn domains_chart(domains: &[DomainDrift], layer: usize, default_projection: Option<f64>) -> Chart {
    let mut chart = Chart::new(
        format!("Drift along the Assistant axis by domain (layer {layer})"),
        "user turn",
        "mean projection on the axis",
    );
    for d in domains {
        chart = chart.with_series(Series::line_markers(&d.domain, per_turn_points(d)));
    }
    with_default_line(chart, default_projection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(id: &str, turns: usize) -> DriftConversation {
        DriftConversation {
            id: id.into(),
            domain: "therapy".into(),
            title: String::new(),
            turns: (1..=turns).map(|t| format!("u{t}")).collect(),
            system: Some("sys".into()),
        }
    }

    fn row(conv: &str, domain: &str, turn: usize, p: Option<f64>) -> TurnRow {
        TurnRow {
            conversation: conv.into(),
            domain: domain.into(),
            turn,
            projection: p,
            user: String::new(),
            answer: String::new(),
        }
    }

    #[test]
    fn each_turn_sees_the_earlier_turns_and_the_models_own_answers() {
        let c = conv("c", 3);
        let roles = |m: &[Message]| {
            m.iter()
                .map(|m| format!("{}:{}", m.role, m.content))
                .collect::<Vec<_>>()
        };
        assert_eq!(roles(&turn_messages(&c, &[])), ["system:sys", "user:u1"]);
        assert_eq!(
            roles(&turn_messages(&c, &["a1".into(), "a2".into()])),
            [
                "system:sys",
                "user:u1",
                "assistant:a1",
                "user:u2",
                "assistant:a2",
                "user:u3"
            ]
        );
    }

    #[test]
    fn the_filter_picks_domains_counts_and_turns() {
        let mut coding = conv("k", 4);
        coding.domain = "coding".into();
        let all = vec![conv("a", 5), coding, conv("b", 5), conv("c", 2)];
        let f = ConversationFilter {
            domains: vec!["therapy".into()],
            per_domain: 2,
            turns: 3,
        };
        let picked = select_conversations(all.clone(), &f).unwrap();
        let ids: Vec<&str> = picked.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(picked.iter().all(|c| c.turns.len() == 3));
        assert_eq!(
            select_conversations(all.clone(), &ConversationFilter::default())
                .unwrap()
                .len(),
            4
        );
        let e = select_conversations(
            all,
            &ConversationFilter {
                domains: vec!["cooking".into()],
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cooking") && e.contains("therapy, coding"),
            "{e}"
        );
    }

    #[test]
    fn turn_keys_change_with_any_earlier_message() {
        let c = conv("c", 2);
        let k1 = turn_key(&c, 2, &turn_messages(&c, &["a1".into()]));
        let k2 = turn_key(&c, 2, &turn_messages(&c, &["a1!".into()]));
        assert_ne!(k1, k2);
        assert!(k1.starts_with("c|t2|"));
    }

    #[test]
    fn drift_is_last_minus_first_turn_averaged_over_conversations() {
        let rows = vec![
            row("a", "therapy", 1, Some(10.0)),
            row("a", "therapy", 2, Some(8.0)),
            row("a", "therapy", 3, Some(4.0)),
            row("b", "therapy", 1, Some(12.0)),
            row("b", "therapy", 2, Some(10.0)),
            row("c", "coding", 1, Some(5.0)),
            row("c", "coding", 2, None),
            row("c", "coding", 3, Some(6.0)),
        ];
        let d = summarize(&rows);
        assert_eq!(d.len(), 2);
        let therapy = &d[0];
        assert_eq!(therapy.domain, "therapy");
        assert_eq!(therapy.conversations, 2);
        assert_eq!(therapy.per_turn, vec![Some(11.0), Some(9.0), Some(4.0)]);
        // a: 4 − 10 = −6, b: 10 − 12 = −2 → mean −4, sd √8, half-width 1.96·2
        assert_eq!(therapy.drift, Some(-4.0));
        let (lo, hi) = therapy.drift_ci95.unwrap();
        assert!((lo + 4.0 + 3.92).abs() < 1e-12 && (hi + 4.0 - 3.92).abs() < 1e-12);
        let coding = &d[1];
        // An empty answer leaves its turn out; the drift runs from turn 1 to turn 3.
        assert_eq!(coding.per_turn, vec![Some(5.0), None, Some(6.0)]);
        assert_eq!(coding.drift, Some(1.0));
        assert_eq!(coding.drift_ci95, None);
    }
}
