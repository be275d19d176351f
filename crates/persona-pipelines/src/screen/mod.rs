//! Screening a finetuning dataset before training: for every sample, how much further along a
//! trait's vector the dataset's response sits than the model's own response to the same prompt,
//! ΔP = (ā(x, y_data) − ā(x, y_model)) · v̂, ā the mean response-token `resid_post` at the
//! trait's layer. Samples with a large ΔP are the ones that would teach the model the trait.
//!
//! The dataset streams through in chunks: only one chunk's conversations and activations are in
//! memory at a time, and every finished sample is appended to a cache, so a rerun resumes.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use persona_engine::{CaptureSpec, Engine, ForwardRequest, HookSite, Message};
use persona_io::{ConversationReader, DatasetRecord};
use persona_report::svg::Histogram;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::answers::{answer_all, AnswerJob, AnswerOptions, AnswerRequest};
use crate::store::{append_records, read_records, RunStore};
use crate::PipelineError;

/// The name of the per-sample cache in a screening folder.
pub const SAMPLE_CACHE: &str = "screen_samples.jsonl";
/// The name `screen` gives its result.
pub const RESULT_FILE: &str = "screen.json";

/// A trait to screen for: its vector file and the layer its projection is read at.
#[derive(Debug, Clone, Copy)]
pub struct ScreenTrait<'a> {
    pub name: &'a str,
    pub layer: usize,
    pub vectors: crate::VectorSource<'a>,
}

#[derive(Debug, Clone)]
pub struct ScreenOptions {
    /// How the model's own responses are generated (greedy by default in the CLI).
    pub answers: AnswerOptions,
    /// Samples read, answered and measured together.
    pub chunk: usize,
    /// Write the `top` highest-ΔP samples (by the first trait) and the dataset without them.
    pub top: usize,
}

/// One sample's measurements, as cached and written to `screen.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SampleRow {
    /// 1-based line in the dataset file.
    pub line: usize,
    /// Identifies the line's content, so a changed dataset is never matched to stale rows.
    pub digest: String,
    /// The last user message (the prompt's end) and the two responses.
    pub prompt: String,
    pub response: String,
    pub model_response: String,
    /// Per trait: ΔP, and the two projections it is the difference of.
    pub delta: BTreeMap<String, f64>,
    pub data_projection: BTreeMap<String, f64>,
    pub model_projection: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TraitScreen {
    #[serde(rename = "trait")]
    pub trait_name: String,
    pub layer: usize,
    /// Mean ΔP over the samples with a normal 95 % interval.
    pub mean_delta: Option<f64>,
    pub ci95: Option<(f64, f64)>,
    /// Share of samples whose response sits further along v̂ than the model's own.
    pub positive_share: Option<f64>,
    pub histogram_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScreenResult {
    pub samples: usize,
    pub traits: Vec<TraitScreen>,
    /// The trait the tables are ranked by (the first one).
    pub ranked_by: String,
    pub rows_file: PathBuf,
    pub table_file: PathBuf,
    /// With `top` > 0: the highest-ΔP samples and the dataset without them (lines unchanged).
    pub top_file: Option<PathBuf>,
    pub filtered_file: Option<PathBuf>,
    pub out_dir: PathBuf,
}

fn digest(raw: &str) -> String {
    hex::encode(&sha2::Sha256::digest(raw.as_bytes())[..8])
}

/// A dataset sample split into its prompt and the response to screen: the last message must be
/// the assistant's, with at least one message before it.
fn split_sample(r: &DatasetRecord, path: &Path) -> Result<(Vec<Message>, String), PipelineError> {
    let bad = |why: &str| {
        PipelineError::Input(format!(
            "{}, line {}: {why}; each sample needs a prompt and ends with the assistant's response",
            path.display(),
            r.line
        ))
    };
    let (last, prompt) = r.messages.split_last().ok_or_else(|| bad("no messages"))?;
    if last.role != "assistant" {
        return Err(bad(&format!("the last message is from `{}`", last.role)));
    }
    if prompt.is_empty() {
        return Err(bad("there is no prompt before the response"));
    }
    if last.content.trim().is_empty() {
        return Err(bad("the response is empty"));
    }
    Ok((prompt.to_vec(), last.content.clone()))
}

/// Screens every sample of `dataset` for every trait; writes `screen.jsonl` and `screen.csv`
/// (ranked by the first trait's ΔP, highest first), `screen.json`, a ΔP histogram per trait,
/// and with `opts.top` > 0 `top.jsonl` and `filtered.jsonl`.
pub fn screen(
    engine: &Engine,
    dataset: &Path,
    traits: &[ScreenTrait],
    opts: &ScreenOptions,
    store: &dyn RunStore,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<ScreenResult, PipelineError> {
    let first = traits
        .first()
        .ok_or_else(|| PipelineError::Input("no trait to screen for: name at least one".into()))?;
    let c = engine.config();
    let mut units: Vec<Vec<f32>> = Vec::new();
    for t in traits {
        if t.layer >= c.n_layers {
            return Err(PipelineError::Input(format!(
                "layer {} for {} does not exist: the model has layers 0..{}",
                t.layer, t.name, c.n_layers
            )));
        }
        let v = t.vectors.layer(t.layer, c.d_model)?;
        let n = persona_core::norm(v);
        units.push(v.iter().map(|x| (*x as f64 / n) as f32).collect());
    }
    let cached: Vec<SampleRow> = read_records(store, SAMPLE_CACHE)?;
    let trait_names: Vec<String> = traits.iter().map(|t| t.name.to_string()).collect();
    // A cached row counts when it has every trait asked for now.
    let mut done: BTreeMap<(usize, String), SampleRow> = cached
        .into_iter()
        .filter(|r| trait_names.iter().all(|t| r.delta.contains_key(t)))
        .map(|r| ((r.line, r.digest.clone()), r))
        .collect();
    let mut rows: Vec<SampleRow> = Vec::new();
    let mut pending: Vec<(DatasetRecord, Vec<Message>, String)> = Vec::new();
    let mut seen = 0;
    let chunk = opts.chunk.max(1);
    let mut reader = ConversationReader::open(dataset)?.peekable();
    while let Some(record) = reader.next() {
        let record = record?;
        seen += 1;
        let key = (record.line, digest(&record.raw));
        if let Some(row) = done.remove(&key) {
            rows.push(row);
        } else {
            let (prompt, response) = split_sample(&record, dataset)?;
            pending.push((record, prompt, response));
        }
        if pending.len() >= chunk || (reader.peek().is_none() && !pending.is_empty()) {
            let measured = measure_chunk(
                engine,
                traits,
                &units,
                &pending,
                opts,
                store,
                &mut |s, d, t| progress(&format!("{s} (sample {seen})"), d, t),
            )?;
            append_records(store, SAMPLE_CACHE, &measured)?;
            rows.extend(measured);
            pending.clear();
        }
        progress("screen", seen, seen);
    }
    if rows.is_empty() {
        return Err(PipelineError::Input(format!(
            "{} holds no samples",
            dataset.display()
        )));
    }

    // Rank by the first trait, highest ΔP first; ties keep file order.
    rows.sort_by(|a, b| {
        b.delta[first.name]
            .total_cmp(&a.delta[first.name])
            .then(a.line.cmp(&b.line))
    });
    let rows_file = crate::store::put_jsonl(store, "screen.jsonl", &rows)?;
    let table_file = write_table(store, &rows, &trait_names)?;
    let mut summaries = Vec::new();
    for t in traits {
        let deltas: Vec<f64> = rows.iter().map(|r| r.delta[t.name]).collect();
        let (mean_delta, ci95) = crate::mean_and_ci(deltas.iter().copied());
        let h = Histogram::new(
            format!("ΔP per sample: {} (layer {})", t.name, t.layer),
            "ΔP = (dataset response − model's response) · v̂",
            deltas.clone(),
            0,
        );
        let histogram_file = store.put(&format!("screen_{}.svg", t.name), h.to_svg().as_bytes())?;
        summaries.push(TraitScreen {
            trait_name: t.name.to_string(),
            layer: t.layer,
            mean_delta,
            ci95,
            positive_share: Some(
                deltas.iter().filter(|d| **d > 0.0).count() as f64 / deltas.len() as f64,
            ),
            histogram_file,
        });
    }
    let (top_file, filtered_file) = if opts.top > 0 {
        let top: HashSet<usize> = rows.iter().take(opts.top).map(|r| r.line).collect();
        let (t, f) = write_top_and_filtered(dataset, &top, store)?;
        (Some(t), Some(f))
    } else {
        (None, None)
    };
    let result = ScreenResult {
        samples: rows.len(),
        traits: summaries,
        ranked_by: first.name.to_string(),
        rows_file,
        table_file,
        top_file,
        filtered_file,
        out_dir: store.dir(),
    };
    crate::store::put_json(store, RESULT_FILE, &result)?;
    Ok(result)
}

/// The model's own responses to a chunk's prompts, then one teacher-forced pass over both
/// responses of every sample reading the traits' layers.
fn measure_chunk(
    engine: &Engine,
    traits: &[ScreenTrait],
    units: &[Vec<f32>],
    pending: &[(DatasetRecord, Vec<Message>, String)],
    opts: &ScreenOptions,
    store: &dyn RunStore,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Vec<SampleRow>, PipelineError> {
    let requests: Vec<AnswerRequest> = pending
        .iter()
        .map(|(record, prompt, _)| AnswerRequest {
            key: format!("sample|{}|{}", record.line, digest(&record.raw)),
            messages: prompt.clone(),
            steer: None,
        })
        .collect();
    let own = answer_all(
        &AnswerJob::new(engine, &requests, &opts.answers, store),
        &mut |d, t| progress("model responses", d, t),
    )?;
    let mut seqs = Vec::with_capacity(2 * pending.len());
    for ((_, prompt, response), answer) in pending.iter().zip(&own) {
        seqs.push(engine.chat_with_response(prompt, response)?);
        // An empty own response still needs tokens to read: the template's end of turn.
        seqs.push(if answer.text.trim().is_empty() {
            let mut turn = prompt.clone();
            turn.push(Message::new("assistant", ""));
            engine.chat_with_final_turn(&turn)?
        } else {
            engine.chat_with_response(prompt, &answer.text)?
        });
    }
    let mut layers: Vec<usize> = traits.iter().map(|t| t.layer).collect();
    layers.sort_unstable();
    layers.dedup();
    let req = ForwardRequest {
        captures: CaptureSpec::response_means(layers),
        ..Default::default()
    };
    let outs = engine.forward_batch(&seqs, &req, &mut |_| {})?;
    let project = |out: &persona_engine::ForwardOutput, t: &ScreenTrait, u: &[f32]| {
        out.captures
            .get(HookSite::resid_post(t.layer))
            .and_then(|c| c.means[0].as_ref())
            .map(|h| persona_core::dot(h, u))
            .unwrap_or(f64::NAN)
    };
    Ok(pending
        .iter()
        .zip(own)
        .zip(outs.chunks(2))
        .map(|(((record, prompt, response), answer), pair)| {
            let mut row = SampleRow {
                line: record.line,
                digest: digest(&record.raw),
                prompt: prompt.last().map_or(String::new(), |m| m.content.clone()),
                response: response.clone(),
                model_response: answer.text,
                delta: BTreeMap::new(),
                data_projection: BTreeMap::new(),
                model_projection: BTreeMap::new(),
            };
            for (t, u) in traits.iter().zip(units) {
                let (data, model) = (project(&pair[0], t, u), project(&pair[1], t, u));
                row.delta.insert(t.name.to_string(), data - model);
                row.data_projection.insert(t.name.to_string(), data);
                row.model_projection.insert(t.name.to_string(), model);
            }
            row
        })
        .collect())
}

fn write_table(
    store: &dyn RunStore,
    rows: &[SampleRow],
    traits: &[String],
) -> Result<PathBuf, PipelineError> {
    let mut header = vec!["line".to_string()];
    for t in traits {
        header.extend([
            format!("delta_{t}"),
            format!("data_{t}"),
            format!("model_{t}"),
        ]);
    }
    header.extend(["prompt", "response", "model_response"].map(String::from));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let one_line = |s: &str| s.replace('\n', " ");
    let cells = rows.iter().map(|r| {
        let mut cells = vec![r.line.to_string()];
        for t in traits {
            cells.extend([
                format!("{:.4}", r.delta[t]),
                format!("{:.4}", r.data_projection[t]),
                format!("{:.4}", r.model_projection[t]),
            ]);
        }
        cells.extend([
            one_line(&r.prompt),
            one_line(&r.response),
            one_line(&r.model_response),
        ]);
        cells
    });
    Ok(crate::store::put_csv(store, "screen.csv", &header, cells)?)
}

/// Copies the dataset's lines, unchanged, into `top.jsonl` (the lines in `top`) and
/// `filtered.jsonl` (every other sample), streaming.
fn write_top_and_filtered(
    dataset: &Path,
    top: &HashSet<usize>,
    store: &dyn RunStore,
) -> Result<(PathBuf, PathBuf), PipelineError> {
    use std::io::Write;
    let mut top_writer = store.create("top.jsonl")?;
    let mut rest_writer = store.create("filtered.jsonl")?;
    for record in ConversationReader::open(dataset)? {
        let record = record?;
        let (w, name) = if top.contains(&record.line) {
            (&mut top_writer, "top.jsonl")
        } else {
            (&mut rest_writer, "filtered.jsonl")
        };
        writeln!(w, "{}", record.raw).map_err(|e| crate::store::StoreError::Write {
            path: store.path(name),
            source: e,
        })?;
    }
    Ok((top_writer.commit()?, rest_writer.commit()?))
}
