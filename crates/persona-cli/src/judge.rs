//! `--judge` and `--coherence-judge`: which backend scores answers.

use anyhow::{bail, Context};
use persona_judges::{
    CombinedJudge, Judge, LexiconJudge, LocalScorer, OpenAiConfig, OpenAiScorer, Polarity,
    RubricJudge, Rubrics,
};

use crate::Global;

/// The judge flags shared by the commands that judge answers.
#[derive(clap::Args, Clone)]
pub struct JudgeArgs {
    /// Trait judge: `lexicon` (VADER sentiment: positive = trait, e.g. optimistic),
    /// `lexicon-negative`, `local` (the model under study answers the rubric),
    /// `local:MODEL` (another local model, e.g. `local:qwen2.5-1.5b`, or a .gguf path), or
    /// `openai:MODEL` (an OpenAI-compatible server: PERSONA_JUDGE_BASE_URL or OPENAI_BASE_URL,
    /// key in PERSONA_JUDGE_API_KEY or OPENAI_API_KEY). Default `auto`: the lexicon for traits
    /// whose spec names one (optimistic), else `local:qwen2.5-1.5b`.
    #[arg(long, default_value = "auto")]
    pub judge: String,
    /// Coherence judge, when the trait judge does not score coherence (lexicon): `local`,
    /// `local:MODEL`, `openai:MODEL`, or `none`. Default: the trait judge itself when it reads
    /// rubrics, else none.
    #[arg(long)]
    pub coherence_judge: Option<String>,
}

pub type BoxedJudge = Box<dyn Judge + Send + Sync>;

/// A local judge model (`name`, or the model under study) and its label for caches.
fn local_judge_engine(
    g: &Global,
    name: Option<&str>,
) -> anyhow::Result<(persona_engine::Engine, String)> {
    let cache = persona_models::ModelCache::from_env()?;
    let path = persona_models::resolve(&cache, name.or(g.model.as_deref()))?;
    // Judging is prompt processing: dense bf16 products read long prompts several times
    // faster than the quantized ones (4.5x on Qwen2.5-1.5B here), worth the memory.
    let opts = persona_engine::LoadOptions {
        weights: persona_engine::WeightMode::Dual,
        ..Default::default()
    };
    let engine = persona_engine::Engine::load(&path, &opts)
        .with_context(|| format!("loading the judge model {}", path.display()))?;
    let label = name.map_or_else(
        || {
            path.file_name()
                .map_or("model".into(), |n| n.to_string_lossy().to_string())
        },
        str::to_string,
    );
    Ok((engine, label))
}

/// A rubric judge (local model or HTTP) from `local…` / `openai:…`; `None` for other specs.
fn rubric_judge(g: &Global, spec: &str, rubrics: Rubrics) -> anyhow::Result<Option<BoxedJudge>> {
    let model_judge = spec == "local" || spec.starts_with("local:") || spec.starts_with("openai:");
    if !model_judge {
        return Ok(None);
    }
    Ok(Some(Box::new(RubricJudge::new(
        number_scorer(g, spec)?,
        rubrics,
    ))))
}

impl JudgeArgs {
    pub fn build(
        &self,
        g: &Global,
        spec: &persona_traits::TraitSpec,
    ) -> anyhow::Result<BoxedJudge> {
        let unknown = |s: &str| {
            anyhow::anyhow!(
                "unknown judge `{s}`: use auto, lexicon, lexicon-negative, local, local:MODEL or openai:MODEL"
            )
        };
        let judge = match (self.judge.as_str(), spec.lexicon) {
            ("auto", Some(persona_traits::Lexicon::Positive)) => "lexicon",
            ("auto", Some(persona_traits::Lexicon::Negative)) => "lexicon-negative",
            ("auto", None) => "local:qwen2.5-1.5b",
            (other, _) => other,
        };
        let lexicon = match judge {
            "lexicon" => Some(Polarity::Positive),
            "lexicon-negative" => Some(Polarity::Negative),
            _ => None,
        };
        let coherence = self.coherence_judge.as_deref();
        let Some(polarity) = lexicon else {
            // A rubric judge scores coherence itself unless told otherwise.
            return match coherence {
                None => rubric_judge(g, judge, Rubrics::TraitAndCoherence)?
                    .ok_or_else(|| unknown(judge)),
                Some("none") => {
                    rubric_judge(g, judge, Rubrics::Trait)?.ok_or_else(|| unknown(judge))
                }
                Some(c) => Ok(Box::new(CombinedJudge {
                    trait_judge: rubric_judge(g, judge, Rubrics::Trait)?
                        .ok_or_else(|| unknown(judge))?,
                    coherence_judge: rubric_judge(g, c, Rubrics::Coherence)?
                        .ok_or_else(|| unknown(c))?,
                })),
            };
        };
        let lexicon: BoxedJudge = Box::new(LexiconJudge::new(polarity));
        match coherence {
            None | Some("none") => Ok(lexicon),
            Some(c) => {
                let coherence_judge =
                    rubric_judge(g, c, Rubrics::Coherence)?.ok_or_else(|| unknown(c))?;
                if c.starts_with("lexicon") {
                    bail!("a lexicon judge does not score coherence: use local, local:MODEL or openai:MODEL for --coherence-judge");
                }
                Ok(Box::new(CombinedJudge {
                    trait_judge: lexicon,
                    coherence_judge,
                }))
            }
        }
    }
}

/// A number scorer as the pipelines take it.
pub fn as_scorer(
    scorer: &Option<Box<dyn persona_judges::NumberScorer + Send + Sync>>,
) -> Option<&dyn persona_judges::NumberScorer> {
    scorer
        .as_deref()
        .map(|s| s as &dyn persona_judges::NumberScorer)
}

/// A number scorer (for rubrics other than a trait's, e.g. role adherence 0–3) from
/// `local`, `local:MODEL` or `openai:MODEL`.
pub fn number_scorer(
    g: &Global,
    spec: &str,
) -> anyhow::Result<Box<dyn persona_judges::NumberScorer + Send + Sync>> {
    if spec == "local" || spec.starts_with("local:") {
        let (engine, label) = local_judge_engine(g, spec.strip_prefix("local:"))?;
        return Ok(Box::new(LocalScorer::new(engine, &label)?));
    }
    if let Some(model) = spec.strip_prefix("openai:") {
        let config = OpenAiConfig::from_env((!model.is_empty()).then_some(model))?;
        return Ok(Box::new(OpenAiScorer::new(config)?));
    }
    bail!("unknown judge `{spec}`: use local, local:MODEL or openai:MODEL")
}
