//! `recover`: the compiled model distilled from the original (the libtorch
//! training runtime), a pass registered beside the library's own, so that a
//! recipe can hold it and `--dump-after recover` shows its result.

use ecospac_passes::pipeline::{Changed, Compilation, Env, Facts, Pass, PassError, PassInfo, Registry};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The pass's name in recipes.
pub const NAME: &str = "recover";
const DOC: &str = "distils the compact model from the original on `data` (needs the training runtime)";

/// The parameters of a `recover` step.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverParams {
    /// Optimizer steps.
    pub steps: usize,
    /// Text (a file or a folder of .txt/.rst/.md) or an `.npz` of model inputs.
    pub data: PathBuf,
    /// The model's `tokenizer.json`, for text (the compile fills in the model's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
    /// Tokens per text sample at most (longer texts are cut; shorter ones
    /// padded to it, unless grouped by length).
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Samples per step (at most the data's training samples).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// How long the rows of a batch are.
    #[serde(default = "default_lengths")]
    pub lengths: Lengths,
}

/// How long the rows of a training batch are.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lengths {
    /// Every row as long as the data's samples (`seq_len` for text).
    Fixed,
    /// Texts of like length share a batch, padded to a few tokens past its
    /// longest only; an error where that cannot be done.
    Grouped,
    /// Grouped where the models and the data allow it (token inputs of no
    /// declared fixed length, an attention mask, and models that run at the
    /// shortest batch's length), else fixed; the run says which.
    Auto,
}

impl Default for RecoverParams {
    /// No steps and no data yet; every other setting as when a recipe step leaves it out.
    fn default() -> Self {
        RecoverParams {
            steps: 0,
            data: PathBuf::new(),
            tokenizer: None,
            seq_len: default_seq_len(),
            batch: default_batch(),
            lr: default_lr(),
            lengths: default_lengths(),
        }
    }
}

fn default_seq_len() -> usize {
    64
}
// 48 texts a step at lr 6e-4, grouped by length: the best measured on the
// real MiniLM within 10 minutes of this CPU (BENCHMARKS.md, recovery).
fn default_batch() -> usize {
    48
}
fn default_lr() -> f64 {
    6e-4
}
fn default_lengths() -> Lengths {
    Lengths::Auto
}

/// The passes a compile may name: the library's, and `recover`.
pub fn registry() -> Result<Registry, ecospac_passes::pipeline::RecipeError> {
    Registry::builtin().with(NAME, DOC, make)
}

fn make(params: &serde_json::Map<String, serde_json::Value>) -> Result<Box<dyn Pass>, String> {
    let p: RecoverParams =
        serde_json::from_value(serde_json::Value::Object(params.clone())).map_err(|e| e.to_string())?;
    if p.steps == 0 || p.batch == 0 || p.seq_len == 0 {
        return Err("steps, batch and seq_len must be positive".into());
    }
    if !(p.lr.is_finite() && p.lr > 0.0) {
        return Err(format!("lr must be a positive number, got {}", p.lr));
    }
    if !cfg!(feature = "train") {
        return Err("recovery needs the training runtime, and this ecospac is built without it \
                    (cargo build --features train)"
            .into());
    }
    Ok(Box::new(Recover(p)))
}

struct Recover(RecoverParams);

impl Pass for Recover {
    fn info(&self) -> PassInfo {
        PassInfo { requires: Facts::SLICED, writes_model: true, runs_model: true, ..PassInfo::new(NAME, DOC) }
    }

    fn run(&self, cx: &mut Compilation, env: &Env<'_>) -> Result<Changed, PassError> {
        run(&self.0, cx, env).map_err(|e| PassError::failed(NAME, format!("{e:#}")))
    }
}

#[cfg(feature = "train")]
fn run(p: &RecoverParams, cx: &mut Compilation, env: &Env<'_>) -> anyhow::Result<Changed> {
    use anyhow::Context;
    let teacher = cx.original.as_ref().context("the original model was not kept (Compilation::keeping_original)")?;
    let exec = env.executor.context("an engine (ONNX Runtime) to check the result")?;
    let device = ecospac_runtime_train::tch::Device::cuda_if_available();
    let settings = crate::distil_cmd::Settings {
        data: p.data.clone(),
        tokenizer: p.tokenizer.clone(),
        validation: None,
        steps: p.steps,
        batch: p.batch,
        fit_batch: true,
        seq_len: p.seq_len,
        lr: p.lr,
        warmup: (p.steps / 10).min(20),
        weight_decay: 0.0,
        clip: 1.0,
        seed: 0,
        eval_every: (p.steps / 4).max(1),
        device,
        train_embeddings: false,
        match_layers: true,
        lengths: p.lengths,
        log: None,
        snapshots: (0, None),
        schedule: None,
        criterion: ecospac_runtime_train::sparsity::TrainCriterion::Coupled,
        allocation: ecospac_passes::prune::Allocation::Uniform,
        align: 1,
    };
    let (trained, before, after, check) = crate::distil_cmd::run(&cx.model, teacher, &settings)?;
    let diff = crate::distil_cmd::check_in(exec, &trained, &check, device)?;
    cx.model = trained;
    eprintln!(
        "recovered by {} distillation steps: validation cosine {before:.4} -> {after:.4}; \
         ONNX Runtime vs the recovered model: max |Δ| {diff:.2e}",
        p.steps
    );
    cx.report.insert(
        "recovery".into(),
        serde_json::json!({"steps": p.steps, "validation_cosine_before": before, "validation_cosine_after": after}),
    );
    Ok(Changed::Yes)
}

#[cfg(not(feature = "train"))]
fn run(_: &RecoverParams, _: &mut Compilation, _: &Env<'_>) -> anyhow::Result<Changed> {
    anyhow::bail!("recovery needs the training runtime (cargo build --features train)")
}
