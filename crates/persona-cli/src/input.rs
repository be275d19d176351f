//! Shared inputs: the model argument, chat messages, steering vectors.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use persona_engine::{Engine, Intervention, LoadOptions, Message, Span};
use persona_pipelines::{DirStore, RunDir};

use crate::Global;

/// Resolves `--model` and loads it.
pub fn load_engine(g: &Global) -> anyhow::Result<Engine> {
    load_named(g, None)
}

/// Loads a model named on the command line (a .gguf file, a Hugging Face folder or a cached
/// model's name), or `--model` when none is named, in the `--weights` layout, with `--adapter`
/// merged in.
pub fn load_named(g: &Global, name: Option<&str>) -> anyhow::Result<Engine> {
    load_with(g, name, g.adapter.as_deref(), g.weights)
}

/// Loads a model with an explicit adapter and weight layout.
pub fn load_with(
    g: &Global,
    name: Option<&str>,
    adapter: Option<&Path>,
    weights: persona_engine::WeightMode,
) -> anyhow::Result<Engine> {
    let path = resolve_model(g, name)?;
    let opts = LoadOptions {
        weights,
        adapter: adapter.map(Path::to_path_buf),
        ..Default::default()
    };
    let what = match adapter {
        Some(a) => format!("{} with the adapter {}", path.display(), a.display()),
        None => path.display().to_string(),
    };
    Engine::load(&path, &opts).with_context(|| format!("loading {what}"))
}

/// The path of `--model` (or the default model).
pub fn model_path(g: &Global) -> anyhow::Result<PathBuf> {
    resolve_model(g, None)
}

fn resolve_model(g: &Global, name: Option<&str>) -> anyhow::Result<PathBuf> {
    let cache = persona_models::ModelCache::from_env()?;
    Ok(persona_models::resolve(
        &cache,
        name.or(g.model.as_deref()),
    )?)
}

/// Chat messages from `--messages FILE` or `--system` / `--user`.
#[derive(clap::Args, Clone)]
pub struct ChatArgs {
    /// JSON file with a list of {"role", "content"} messages.
    #[arg(long, conflicts_with_all = ["system", "user", "prompt"])]
    pub messages: Option<PathBuf>,
    /// System prompt (with --user).
    #[arg(long)]
    pub system: Option<String>,
    /// User message.
    #[arg(long)]
    pub user: Option<String>,
    /// A raw prompt, tokenized as is (no chat template).
    #[arg(long, conflicts_with_all = ["system", "user"])]
    pub prompt: Option<String>,
}

impl ChatArgs {
    /// The prompt token ids: the rendered chat with the generation prompt, or the raw prompt.
    pub fn prompt_ids(&self, engine: &Engine) -> anyhow::Result<Vec<u32>> {
        if let Some(raw) = &self.prompt {
            return Ok(engine.tokenizer().encode(raw)?);
        }
        Ok(engine.chat_prompt_ids(&self.messages()?)?)
    }

    pub fn messages(&self) -> anyhow::Result<Vec<Message>> {
        if let Some(path) = &self.messages {
            return read_messages(path);
        }
        let mut msgs = Vec::new();
        if let Some(s) = &self.system {
            msgs.push(Message {
                role: "system".into(),
                content: s.clone(),
            });
        }
        match &self.user {
            Some(u) => msgs.push(Message {
                role: "user".into(),
                content: u.clone(),
            }),
            None => bail!("give the conversation: --messages FILE, --user TEXT (with optional --system), or --prompt TEXT"),
        }
        Ok(msgs)
    }
}

pub fn read_messages(path: &Path) -> anyhow::Result<Vec<Message>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read messages file {}", path.display()))?;
    let msgs: Vec<Message> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} must be a JSON list of {{\"role\": ..., \"content\": ...}} objects",
            path.display()
        )
    })?;
    if msgs.is_empty() {
        bail!("{} holds no messages", path.display());
    }
    Ok(msgs)
}

/// Steering flags shared by the commands that run the model.
#[derive(clap::Args, Clone)]
pub struct SteerArgs {
    /// Add ALPHA × the vector of LAYER from FILE at blocks.LAYER.resid_post (repeatable).
    /// FILE: a persona vector file or a GGUF control vector.
    #[arg(long, value_name = "FILE:LAYER:ALPHA")]
    pub steer: Vec<String>,
    /// Positions the steering applies to: all, prompt, generated, last_prompt, START..END.
    #[arg(long, default_value = "all")]
    pub steer_span: String,
    #[command(flatten)]
    pub cap: CapArgs,
}

impl SteerArgs {
    pub fn interventions(&self, engine: &Engine) -> anyhow::Result<Vec<Intervention>> {
        let span: Span = self.steer_span.parse().context("--steer-span")?;
        let c = engine.config();
        let mut ivs = self
            .steer
            .iter()
            .map(|spec| {
                let spec: persona_pipelines::SteerSpec = spec.parse()?;
                Ok(spec.intervention(span, c.n_layers, c.d_model)?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if let Some(cap) = self.cap.cap(engine)? {
            ivs.extend(cap.interventions()?);
        }
        Ok(ivs)
    }
}

/// `--cap AXIS_FILE`: the Assistant-axis cap, on every command that generates.
#[derive(clap::Args, Clone)]
pub struct CapArgs {
    /// Cap activations along an Assistant axis (from `persona axis build`): a floor at τ on
    /// the axis, at every position of the --cap-layers window.
    #[arg(long, value_name = "AXIS_FILE")]
    pub cap: Option<PathBuf>,
    /// Which of the axis file's thresholds is τ: p1, p25, p50 or p75 (of rollout projections).
    #[arg(long, default_value = "p25", requires = "cap")]
    pub cap_percentile: String,
    /// Layers to cap, START..END (default: from half to three quarters of the depth).
    #[arg(long, requires = "cap")]
    pub cap_layers: Option<String>,
}

impl CapArgs {
    /// The cap asked for, if any (docs/design.md: h ← h + u·max(τ − h·u, 0) at each window layer).
    pub fn cap(&self, engine: &Engine) -> anyhow::Result<Option<persona_pipelines::cap::AxisCap>> {
        let Some(path) = &self.cap else {
            return Ok(None);
        };
        let c = engine.config();
        let layers = match &self.cap_layers {
            Some(w) => {
                persona_pipelines::cap::parse_window(w, c.n_layers).context("--cap-layers")?
            }
            None => persona_pipelines::cap::default_window(c.n_layers),
        };
        let axis = load_axis(path)?;
        Ok(Some(persona_pipelines::cap::AxisCap::from_axis(
            &axis,
            path,
            &self.cap_percentile,
            layers,
            c.d_model,
        )?))
    }
}

/// A trait, its run folder and its vector: the inputs of `steer` and `monitor`.
#[derive(clap::Args, Clone)]
pub struct TraitRun {
    /// A built-in trait, a .toml spec or a Persona Vectors .json file.
    pub r#trait: String,
    /// The run folder (default runs/<trait>, where `persona extract TRAIT` writes).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// The vector file (default: the run folder's <trait>_response_avg.safetensors).
    #[arg(long)]
    pub vector: Option<PathBuf>,
    /// Evaluation questions from their own file (one per line, or Persona Vectors JSON /
    /// JSONL), e.g. the evaluation twin of a Persona Vectors trait file.
    #[arg(long, value_name = "FILE")]
    pub eval_questions: Option<PathBuf>,
}

/// A trait spec by name or file, with evaluation questions from `eval_questions` if given. A
/// single question list that was divided between extraction and evaluation is said on stderr.
pub fn resolve_trait(
    name: &str,
    eval_questions: Option<&Path>,
) -> anyhow::Result<persona_traits::TraitSpec> {
    let mut spec = persona_traits::resolve(name)?;
    if let Some(path) = eval_questions {
        spec = spec.with_evaluation_file(path)?;
    }
    if let Some(split) = &spec.question_split {
        eprintln!("note: {split} (give --eval-questions FILE to evaluate on other questions)");
    }
    Ok(spec)
}

impl TraitRun {
    /// The trait spec, with `--eval-questions` applied.
    pub fn spec(&self) -> anyhow::Result<persona_traits::TraitSpec> {
        resolve_trait(&self.r#trait, self.eval_questions.as_deref())
    }

    pub fn dir(&self, spec: &persona_traits::TraitSpec) -> RunDir {
        RunDir::for_trait(&spec.name, self.run.as_deref())
    }

    pub fn vectors(&self, spec: &persona_traits::TraitSpec) -> anyhow::Result<TraitVector> {
        let path = match &self.vector {
            Some(p) => p.clone(),
            None => {
                let p = self.dir(spec).response_vector(&spec.name);
                if !p.exists() {
                    bail!(
                        "no vector at {}: run `persona extract {}` first, or give --vector FILE",
                        p.display(),
                        spec.name
                    );
                }
                p
            }
        };
        let vectors = persona_io::LayerVectors::load(&path)?;
        Ok(TraitVector {
            file: path,
            vectors,
        })
    }
}

/// What `steer` and `monitor` both start from: the trait, its vector, the model, the judge,
/// the run folder and the cap asked for.
pub struct TraitSession {
    pub spec: persona_traits::TraitSpec,
    pub vector: TraitVector,
    pub engine: Engine,
    pub run_dir: RunDir,
    pub judge: crate::judge::BoxedJudge,
    pub cap: Option<persona_pipelines::cap::AxisCap>,
}

impl TraitRun {
    /// Resolves the trait and its vector (before the model loads, so a missing vector is said
    /// at once), then loads the model, the judge and the cap.
    pub fn open(
        &self,
        g: &Global,
        judge: &crate::judge::JudgeArgs,
        cap: &CapArgs,
    ) -> anyhow::Result<TraitSession> {
        let spec = self.spec()?;
        let vector = self.vectors(&spec)?;
        let engine = load_engine(g)?;
        let run_dir = self.dir(&spec);
        let judge = judge.build(g, &spec)?;
        let cap = cap.cap(&engine)?;
        Ok(TraitSession {
            spec,
            vector,
            engine,
            run_dir,
            judge,
            cap,
        })
    }
}

/// A trait pipeline's shape, shared by `steer_sweep` and `monitor`.
pub type TraitPipeline<O, R> = fn(
    &Engine,
    &persona_traits::TraitSpec,
    persona_pipelines::VectorSource,
    &dyn persona_judges::Judge,
    &O,
    &dyn persona_pipelines::RunStore,
    &mut dyn FnMut(&str, usize, usize),
) -> Result<R, persona_pipelines::PipelineError>;

impl TraitSession {
    /// Notes the command in the run folder, then runs `pipeline` into `out` with a progress
    /// bar; a failure says it happened while `doing` with the vector file.
    pub fn run<O, R>(
        &self,
        pipeline: TraitPipeline<O, R>,
        opts: &O,
        out: &Path,
        doing: &str,
    ) -> anyhow::Result<R> {
        record(&self.engine, self.run_dir.root())?;
        let store = open_store(out)?;
        crate::output::with_progress("generate", |progress| {
            pipeline(
                &self.engine,
                &self.spec,
                self.vector.source(),
                self.judge.as_ref(),
                opts,
                &store,
                progress,
            )
        })
        .with_context(|| format!("{doing} {}", self.vector.file.display()))
    }
}

/// A trait's vector file, loaded.
pub struct TraitVector {
    pub file: PathBuf,
    pub vectors: persona_io::LayerVectors,
}

impl TraitVector {
    pub fn source(&self) -> persona_pipelines::VectorSource<'_> {
        persona_pipelines::VectorSource {
            vectors: &self.vectors,
            file: &self.file,
        }
    }
}

/// Opens a run folder for writing (taking its lock).
pub fn open_store(dir: &Path) -> anyhow::Result<DirStore> {
    Ok(DirStore::open(dir)?)
}

/// Notes the command line and the model in the run folder, for `persona report`.
pub fn record(engine: &Engine, run_dir: &Path) -> anyhow::Result<()> {
    let command: Vec<String> = std::env::args().collect();
    let model = engine.model_id()?;
    persona_pipelines::report::record_provenance(run_dir, &command.join(" "), &model)?;
    Ok(())
}

/// How the commands that ask the model generate their answers.
#[derive(clap::Args, Clone)]
pub struct AnswerArgs {
    /// Tokens per answer (default 64; `em eval`: 256).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Sampling temperature, 0 for greedy (default 0; `em eval`: 1).
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sequences generated together.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

impl AnswerArgs {
    /// The options with every answer under `cap`.
    pub fn capped(
        &self,
        cap: Option<persona_pipelines::cap::AxisCap>,
    ) -> persona_pipelines::answers::AnswerOptions {
        persona_pipelines::answers::AnswerOptions {
            cap,
            ..self.options()
        }
    }

    /// Greedy answers of 64 tokens unless the flags say otherwise.
    pub fn options(&self) -> persona_pipelines::answers::AnswerOptions {
        self.options_or(64, 0.0)
    }

    /// The options, with these defaults for the flags not given.
    pub fn options_or(
        &self,
        max_tokens: usize,
        temperature: f32,
    ) -> persona_pipelines::answers::AnswerOptions {
        persona_pipelines::answers::AnswerOptions {
            max_tokens: self.max_tokens.unwrap_or(max_tokens),
            temperature: self.temperature.unwrap_or(temperature),
            seed: self.seed,
            batch_size: self.batch_size,
            cap: None,
        }
    }
}

/// `--vector NAME=FILE`: a vector file under the name results give it.
pub fn named_vector(spec: &str) -> anyhow::Result<(String, PathBuf)> {
    match spec.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => bail!("--vector `{spec}` must be NAME=FILE, e.g. evil=runs/evil/evil_response_avg.safetensors"),
    }
}

/// Which drift conversations to run: the built-in set or a file, narrowed by domain, count and
/// length.
#[derive(clap::Args, Clone)]
pub struct ConversationArgs {
    /// A conversation file: JSONL with one `{"messages": [...]}` per line (the user turns are
    /// kept; the model answers each), or persona's TOML format. Default: the built-in set.
    #[arg(long)]
    pub conversations: Option<PathBuf>,
    /// Only these domains, comma-separated (built-in: coding, writing, therapy, ai_philosophy).
    #[arg(long, value_delimiter = ',')]
    pub domains: Vec<String>,
    /// At most this many conversations per domain (0: all).
    #[arg(long, default_value_t = 0)]
    pub per_domain: usize,
    /// At most this many user turns per conversation (0: all).
    #[arg(long, default_value_t = 0)]
    pub turns: usize,
}

impl ConversationArgs {
    pub fn load(&self) -> anyhow::Result<Vec<persona_evals::DriftConversation>> {
        let all = match &self.conversations {
            Some(path) => persona_evals::load_conversations(path)?,
            None => persona_evals::builtin_drift(),
        };
        Ok(persona_pipelines::drift::select_conversations(
            all,
            &persona_pipelines::drift::ConversationFilter {
                domains: self.domains.clone(),
                per_domain: self.per_domain,
                turns: self.turns,
            },
        )?)
    }
}

/// `--axis FILE`: an Assistant axis from `persona axis build`.
pub fn load_axis(path: &Path) -> anyhow::Result<persona_io::LayerVectors> {
    if !path.exists() {
        bail!(
            "no axis at {}: run `persona axis build` first (it writes {}), or give --axis FILE",
            path.display(),
            persona_pipelines::run_dir::default_axis_file().display()
        );
    }
    let v = persona_io::LayerVectors::load(path)?;
    if let Err(kind) = persona_pipelines::axis::check_axis_file(&v) {
        bail!(
            "{} is a {kind} file, not an Assistant axis: give the axis.safetensors that `persona axis build` writes",
            path.display()
        );
    }
    Ok(v)
}
