//! After finetuning: how far the tuned model moved along a trait's vector, and whether its
//! answers show the trait more. The shift is the mean over the trait's evaluation questions of
//! (h_tuned − h_base) · v̂ at the last prompt token, before either model has answered; the trait
//! change is the judged score of the tuned model's answers minus the base model's.

use std::path::PathBuf;

use persona_engine::{Engine, Message};
use persona_judges::Judge;
use persona_traits::TraitSpec;
use serde::{Deserialize, Serialize};

use crate::answers::{answer_all, Answer, AnswerJob, AnswerOptions, AnswerRequest, Probe};
use crate::store::RunStore;
use crate::PipelineError;

#[derive(Debug, Clone)]
pub struct ShiftOptions {
    /// The layer whose `resid_post` is projected on v̂.
    pub layer: usize,
    /// How many evaluation questions (0: all).
    pub questions: usize,
    /// Questions to ask instead of the trait's evaluation questions (e.g. held-out questions
    /// from the training domain).
    pub custom_questions: Option<Vec<String>>,
    pub answers: AnswerOptions,
}

/// One evaluation question under both models.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuestionShift {
    pub question: String,
    pub base_projection: Option<f64>,
    pub tuned_projection: Option<f64>,
    /// tuned − base projection at the last prompt token.
    pub shift: Option<f64>,
    pub base_trait: Option<f64>,
    pub tuned_trait: Option<f64>,
    pub base_answer: String,
    pub tuned_answer: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShiftResult {
    pub layer: usize,
    /// Mean shift along v̂ over the questions, with a normal 95 % interval.
    pub shift: Option<f64>,
    pub shift_ci95: Option<(f64, f64)>,
    /// Mean judged trait score of each model's answers.
    pub base_trait: Option<f64>,
    pub tuned_trait: Option<f64>,
    /// Mean over questions of (tuned − base) trait score, with a normal 95 % interval.
    pub trait_change: Option<f64>,
    pub trait_change_ci95: Option<(f64, f64)>,
    pub questions: usize,
    pub judge: String,
    pub base_model: String,
    pub tuned_model: String,
    pub rows_file: PathBuf,
    pub out_dir: PathBuf,
}

/// The name `shift` gives its result.
pub const RESULT_FILE: &str = "shift.json";

/// Measures the shift of `tuned` against `base` for one trait; puts `shift.json` and
/// `shift_questions.jsonl` in `store` (answers and judgements are cached there).
#[allow(clippy::too_many_arguments)]
pub fn measure_shift(
    base: &Engine,
    tuned: &Engine,
    spec: &TraitSpec,
    vector: crate::VectorSource,
    judge: &dyn Judge,
    opts: &ShiftOptions,
    store: &dyn RunStore,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<ShiftResult, PipelineError> {
    let (b, t) = (base.config(), tuned.config());
    if (b.n_layers, b.d_model) != (t.n_layers, t.d_model) {
        return Err(PipelineError::Input(format!(
            "the tuned model has {} layers of width {} but the base model {} of width {}: give the model the tuned one was trained from as --base",
            t.n_layers, t.d_model, b.n_layers, b.d_model
        )));
    }
    let direction = vector.layer(opts.layer, b.d_model)?;
    let probe = Probe {
        layer: opts.layer,
        direction,
    };
    let pool = opts
        .custom_questions
        .as_ref()
        .unwrap_or(&spec.evaluation_questions);
    let questions: Vec<&String> = match opts.questions {
        0 => pool.iter().collect(),
        n => pool.iter().take(n).collect(),
    };
    if questions.is_empty() {
        return Err(PipelineError::Input(format!(
            "no questions to ask: the trait {} has no evaluation questions and none were given",
            spec.name
        )));
    }
    // Keyed by the model's weights too, so answers cached for one tuned model are never
    // taken for another's.
    let requests_for = |engine: &Engine| -> Result<Vec<AnswerRequest>, PipelineError> {
        let model = engine.model_sha256()?;
        Ok(questions
            .iter()
            .enumerate()
            .map(|(i, q)| AnswerRequest {
                key: format!("{model}|{}|q{i}", spec.name),
                messages: vec![Message::new("user", q.as_str())],
                steer: None,
            })
            .collect())
    };
    let requests = requests_for(base)?;
    let tuned_requests = requests_for(tuned)?;
    let mut answer = |engine: &Engine,
                      requests: &[AnswerRequest],
                      which: &str|
     -> Result<Vec<Answer>, PipelineError> {
        let stage = format!("{which} answers");
        Ok(answer_all(
            &AnswerJob::new(engine, requests, &opts.answers, store).probed(probe),
            &mut |d, n| progress(&stage, d, n),
        )?)
    };
    let base_answers = answer(base, &requests, "base")?;
    let tuned_answers = answer(tuned, &tuned_requests, "tuned")?;
    let mut judge_side = |answers: &[Answer], which: &str| {
        let stage = format!("judge {which}");
        let items = crate::judging::question_answer_pairs(&requests, answers);
        crate::judging::judge_cached(
            &crate::judging::JudgeJob::new(judge, spec, &items, store),
            &mut |d, n| progress(&stage, d, n),
        )
    };
    let base_judged = judge_side(&base_answers, "base")?;
    let tuned_judged = judge_side(&tuned_answers, "tuned")?;

    let rows: Vec<QuestionShift> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let (bp, tp) = (
                base_answers[i].last_prompt_projection,
                tuned_answers[i].last_prompt_projection,
            );
            QuestionShift {
                question: q.to_string(),
                base_projection: bp,
                tuned_projection: tp,
                shift: bp.zip(tp).map(|(b, t)| t - b),
                base_trait: base_judged[i].trait_score,
                tuned_trait: tuned_judged[i].trait_score,
                base_answer: base_answers[i].text.clone(),
                tuned_answer: tuned_answers[i].text.clone(),
            }
        })
        .collect();
    let (shift, shift_ci95) = crate::mean_and_ci(rows.iter().filter_map(|r| r.shift));
    let (trait_change, trait_change_ci95) = crate::mean_and_ci(
        rows.iter()
            .filter_map(|r| r.base_trait.zip(r.tuned_trait).map(|(b, t)| t - b)),
    );
    let rows_file = crate::store::put_jsonl(store, "shift_questions.jsonl", &rows)?;
    let result = ShiftResult {
        layer: opts.layer,
        shift,
        shift_ci95,
        base_trait: crate::mean_and_ci(rows.iter().filter_map(|r| r.base_trait)).0,
        tuned_trait: crate::mean_and_ci(rows.iter().filter_map(|r| r.tuned_trait)).0,
        trait_change,
        trait_change_ci95,
        questions: rows.len(),
        judge: judge.id(),
        base_model: base.model_id()?,
        tuned_model: tuned.model_id()?,
        rows_file,
        out_dir: store.dir(),
    };
    crate::store::put_json(store, RESULT_FILE, &result)?;
    Ok(result)
}
