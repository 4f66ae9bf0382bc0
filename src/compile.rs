//! `ecospac compile` and `ecospac recipe`: the flags stand for a recipe, the
//! library's pipeline runs it, and this file finds the calibration data,
//! prints what happened and writes the result.

use crate::progress;
use anyhow::{bail, Context, Result};
use ecospac_backends::ort::OrtExecutor;
use ecospac_backends::{export_checkpoint, export_onnx, CheckpointSource, ExportOptions, ExternalData, Resized};
use ecospac_frontends::hf::Checkpoint;
use ecospac_ir::{verify, Model};
use ecospac_passes::pipeline::{CalibrationData, Compilation, ConfigSizes, Env, Facts, Pipeline, Recipe};
use ecospac_passes::prune::{Allocation, Criterion};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn criterion(s: &str) -> Result<Criterion, String> {
    let names: Vec<&str> = Criterion::ALL.iter().map(|(n, _)| *n).collect();
    Criterion::parse(s).ok_or_else(|| format!("one of {}", names.join(", ")))
}

/// `--allocation`: a choice, or `auto`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AllocationFlag(Option<Allocation>);

fn allocation(s: &str) -> Result<AllocationFlag, String> {
    let names: Vec<&str> = Allocation::ALL.iter().map(|(n, _)| *n).collect();
    if s == "auto" {
        return Ok(AllocationFlag(None));
    }
    let a = Allocation::ALL.iter().find(|(n, _)| *n == s).map(|&(_, a)| a);
    a.map(|a| AllocationFlag(Some(a))).ok_or_else(|| format!("auto or one of {}", names.join(", ")))
}

/// How consumers are reconstructed after removal.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RefitFlag {
    /// Ridge regression toward the original weights (needs calibration data).
    Ridge,
    /// Bias compensation only.
    Bias,
    /// Neither.
    None,
}

/// Which groups to prune.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScopeFlag {
    /// `config` when writing a checkpoint folder, else `all`.
    Auto,
    /// Every group.
    All,
    /// Only groups whose width is one config.json key (the checkpoint stays loadable by stock transformers).
    Config,
}

/// The pruning settings of `compile` (shorthand for a recipe; `ecospac recipe` prints it).
#[derive(clap::Args, Clone)]
pub struct PruneArgs {
    /// Fraction of the prunable (coupled) parameters to keep; 1.0 keeps the model as it is.
    #[arg(long, default_value_t = 1.0)]
    pub budget: f64,
    /// Importance: obs (the consumer's output error a refit cannot undo, the default), variance
    /// (contribution to the consumer's output), energy, coupled-act (EcoSpa on activations),
    /// uncoupled-act, coupled (EcoSpa, weights only), uncoupled, random.
    #[arg(long, default_value = "obs", value_parser = criterion)]
    pub criterion: Criterion,
    /// Budget allocation: measured (exchange rates measured on calibration data), greedy (the
    /// scores taken as one scale, with no measuring), global, uniform;
    /// auto: uniform when writing a checkpoint folder with scope config (so every layer keeps
    /// one width and the config stays standard), else measured.
    #[arg(long, default_value = "auto", value_parser = allocation)]
    pub allocation: AllocationFlag,
    /// Reconstruction of the consumers after removal.
    #[arg(long, value_enum, default_value_t = RefitFlag::Ridge)]
    pub refit: RefitFlag,
    /// Ridge strength of the `obs` score and of the local refit that measures
    /// exchange rates, in units of the mean diagonal of XᵀX.
    #[arg(long, default_value_t = 1.0)]
    pub lambda: f64,
    /// Ridge strength of the final refit, in units of the mean diagonal of XᵀX
    /// (0.1 measured best on held-out text from the built-in corpus; BENCHMARKS.md).
    #[arg(long, default_value_t = 0.1)]
    pub refit_lambda: f64,
    /// Only dims inside heads and FFN channels; never whole heads.
    #[arg(long)]
    pub no_whole_heads: bool,
    /// Kept counts are multiples of this where a block is at least twice as large.
    #[arg(long, default_value_t = 8)]
    pub align: usize,
    /// Seed for --criterion random.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Calibration inputs: an .npz with one array per model input.
    #[arg(long, conflicts_with_all = ["calibration_text", "no_calibration"])]
    pub calibration: Option<PathBuf>,
    /// Calibration text, one text per line (with the model's tokenizer).
    #[arg(long, conflicts_with = "no_calibration")]
    pub calibration_text: Option<PathBuf>,
    /// The model's tokenizer.json (default: the checkpoint's, or one beside the ONNX file);
    /// with it, the built-in English corpus calibrates unless other data is given.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Calibration texts (or .npz rows) to use; 0: all of them (the built-in corpus has 450;
    /// generated sequences: 256), or, calibrating on --recover's --data (as it does when no
    /// calibration data is given), 2,000 of its texts, shuffled.
    #[arg(long, default_value_t = 0)]
    pub calibration_samples: usize,
    /// Tokens per calibration text (padded or truncated).
    #[arg(long, default_value_t = 64)]
    pub calibration_length: usize,
    /// Calibrate on generated token sequences instead of text (no tokenizer needed; worse).
    #[arg(long, conflicts_with_all = ["calibration", "calibration_text"])]
    pub no_calibration: bool,
    /// ONNX Runtime threads for calibration (0: its default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// The ONNX Runtime shared library (else $ORT_DYLIB_PATH, else .venv).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// Write the slice plan (JSON, refit weights beside it) here.
    #[arg(long)]
    pub emit_plan: Option<PathBuf>,
    /// Apply this slice plan instead of choosing one.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Write the compile report (JSON) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Bind symbolic dims for the report's FLOPs, e.g. `batch=1,seq=128` (`*=N` for the rest).
    #[arg(long, value_delimiter = ',')]
    pub bind: Vec<String>,
    /// Which groups to prune.
    #[arg(long, value_enum, default_value_t = ScopeFlag::Auto)]
    pub scope: ScopeFlag,
    /// After compiling, repair the compact model by this many distillation steps from the
    /// original on --data (48 samples a step at lr 6e-4, texts of like length batched together where
    /// the model runs them, cut at --calibration-length tokens, every block's output matched; the recipe's
    /// `recover` step sets more; needs the training runtime, `cargo build --features train`).
    #[arg(long, default_value_t = 0)]
    pub recover: usize,
    /// Data for --recover: text (a file or a folder of .txt/.rst/.md, tokenized with the
    /// model's tokenizer) or an .npz of model inputs.
    #[arg(long, requires = "recover")]
    pub data: Option<PathBuf>,
}

/// Whether the flags ask for any pruning.
fn prunes(args: &PruneArgs, to_folder: bool) -> bool {
    args.budget < 1.0 || args.plan.is_some() || to_folder
}

/// The recipe the flags stand for (`passes`: model passes to run first).
pub fn recipe_of(args: &PruneArgs, passes: &[String], to_folder: bool, has_checkpoint: bool) -> Result<Recipe> {
    if !(args.budget > 0.0 && args.budget <= 1.0) {
        bail!("--budget must be in (0, 1], got {}", args.budget);
    }
    let mut r = Recipe::default();
    for p in passes {
        r.push(p, serde_json::json!({}));
    }
    if !prunes(args, to_folder) {
        return Ok(r);
    }
    let scope = match (args.scope, to_folder) {
        (ScopeFlag::All, _) | (ScopeFlag::Auto, false) => "all",
        (ScopeFlag::Config | ScopeFlag::Auto, _) if has_checkpoint => "config",
        _ => bail!("--scope config needs a checkpoint folder as input"),
    };
    r.push("prepare", serde_json::json!({}));
    r.push("analyse-coupling", serde_json::json!({"heads": !args.no_whole_heads, "scope": scope}));
    if let Some(plan) = &args.plan {
        r.push("load-plan", serde_json::json!({"path": plan}));
    } else if args.budget >= 1.0 {
        // A checkpoint folder at budget 1: an identity plan.
        r.push("score", serde_json::json!({"criterion": "coupled"}));
        r.push("allocate", serde_json::json!({"budget": 1.0, "allocation": "uniform", "align": args.align}));
    } else {
        let needs_stats = args.criterion.needs_data() || args.refit != RefitFlag::None;
        if needs_stats {
            r.push("calibrate", serde_json::json!({}));
        }
        r.push(
            "score",
            serde_json::json!({"criterion": args.criterion.name(), "seed": args.seed, "lambda": args.lambda}),
        );
        let chosen =
            args.allocation.0.unwrap_or(if scope == "config" { Allocation::Uniform } else { Allocation::Measured });
        let allocation = Allocation::ALL.iter().find(|(_, a)| *a == chosen).map(|(n, _)| *n);
        // The measured allocation anticipates the refit the recipe will make.
        let measure_lambda = if args.refit == RefitFlag::Ridge && needs_stats { args.lambda } else { 0.0 };
        r.push(
            "allocate",
            serde_json::json!({"budget": args.budget, "allocation": allocation, "align": args.align, "measure_refit_lambda": measure_lambda}),
        );
        match args.refit {
            RefitFlag::Ridge => r.push("refit", serde_json::json!({"method": "ridge", "lambda": args.refit_lambda})),
            RefitFlag::Bias => r.push("refit", serde_json::json!({"method": "bias"})),
            RefitFlag::None => {}
        }
    }
    r.push("slice", serde_json::json!({}));
    if args.recover > 0 {
        let data = args
            .data
            .as_ref()
            .context("--recover needs --data: text (with the model's tokenizer) or an .npz of model inputs")?;
        let step = crate::recover::RecoverParams {
            steps: args.recover,
            data: data.clone(),
            tokenizer: args.tokenizer.clone(),
            seq_len: args.calibration_length,
            ..crate::recover::RecoverParams::default()
        };
        r.push(crate::recover::NAME, serde_json::to_value(step)?);
    }
    Ok(crate::recover::registry()?.normalized(&r)?)
}

/// The model's tokenizer: `--tokenizer`, else the checkpoint's, else one beside the ONNX file.
fn tokenizer(args: &PruneArgs, input: &Path, checkpoint: Option<&Checkpoint>) -> Option<PathBuf> {
    args.tokenizer.clone().or_else(|| {
        let beside = match checkpoint {
            Some(c) => c.dir.join("tokenizer.json"),
            None => input.parent().unwrap_or(Path::new(".")).join("tokenizer.json"),
        };
        beside.is_file().then_some(beside)
    })
}

/// The arrays of the model's inputs, in their order (others left out), and
/// an empty key/value cache for each cache input they lack (a prompt).
pub(crate) fn model_inputs(
    model: &Model,
    mut arrays: Vec<(String, ecospac_ir::Tensor)>,
) -> Vec<(String, ecospac_ir::Tensor)> {
    let g = &model.graph;
    let rows = arrays.first().and_then(|(_, t)| t.dims.first()).copied().unwrap_or(0).max(0) as usize;
    let mut caches = ecospac_passes::synthetic::empty_caches(model, rows);
    let mut out = Vec::new();
    for &v in &g.inputs {
        let name = &g.value(v).name;
        match arrays.iter().position(|(n, _)| n == name) {
            Some(i) => out.push(arrays.swap_remove(i)),
            None => out.extend(caches.remove(&v).map(|c| (name.clone(), c))),
        }
    }
    out
}

/// The model's inputs for `texts`, `length` tokens each: the tokenizer's
/// arrays, and an empty key/value cache where the model reads one (a prompt).
pub(crate) fn tokenized(
    model: &Model,
    tokenizer: &Path,
    texts: &[&str],
    length: usize,
) -> Result<Vec<(String, ecospac_ir::Tensor)>> {
    let g = &model.graph;
    let mut caches = ecospac_passes::synthetic::empty_caches(model, texts.len());
    let names: Vec<String> =
        g.inputs.iter().filter(|v| !caches.contains_key(v)).map(|&v| g.value(v).name.clone()).collect();
    let mut arrays = ecospac_frontends::data::tokenize(tokenizer, texts, length, &names)?.into_iter();
    // In the order of the graph's inputs.
    let mut out = Vec::new();
    for &v in &g.inputs {
        match caches.remove(&v) {
            Some(cache) => out.push((g.value(v).name.clone(), cache)),
            None => out.extend(arrays.next()),
        }
    }
    Ok(out)
}

/// Texts of `--recover`'s `--data` that calibrate when no calibration data is given.
const RECOVER_CALIBRATION: usize = 2000;

/// Where calibration data comes from, once the model is known.
fn calibration_data(
    args: &PruneArgs,
    input: &Path,
    model: &Model,
    checkpoint: Option<&Checkpoint>,
) -> Result<CalibrationData> {
    use ecospac_frontends::data;
    let rows = 16;
    let limit = if args.calibration_samples == 0 { usize::MAX } else { args.calibration_samples };
    let take_first = |arrays: Vec<(String, ecospac_ir::Tensor)>, n: usize| -> Result<Vec<ecospac_ir::exec::Batch>> {
        let total = arrays.first().and_then(|(_, t)| t.dims.first()).map_or(0, |&d| usize::try_from(d).unwrap_or(0));
        let limited =
            if n == 0 || total <= n { arrays } else { data::select_rows(&arrays, &(0..n).collect::<Vec<_>>())? };
        Ok(ecospac_ir::exec::split_batches(&limited, rows)?)
    };
    let take = |arrays| take_first(arrays, args.calibration_samples);
    if let Some(npz) = &args.calibration {
        let batches = take(model_inputs(model, data::read_npz(npz)?))?;
        return Ok(CalibrationData { source: format!("{} ({} samples)", npz.display(), count(&batches)), batches });
    }
    let tokenizer = tokenizer(args, input, checkpoint);
    if let Some(text) = &args.calibration_text {
        let tok = tokenizer.context("--calibration-text needs the model's tokenizer (--tokenizer tokenizer.json)")?;
        let lines = data::read_lines(text)?;
        let refs: Vec<&str> = lines.iter().take(limit).map(String::as_str).collect();
        let batches = take(tokenized(model, &tok, &refs, args.calibration_length)?)?;
        return Ok(CalibrationData {
            source: format!("{} ({} texts × {} tokens)", text.display(), count(&batches), args.calibration_length),
            batches,
        });
    }
    // What recovery distils on is text of the domain the model will serve:
    // it calibrates too (the real MiniLM: held-out 0.934 against 0.879 with
    // the built-in corpus; BENCHMARKS.md).
    if let (Some(d), true, false) = (&args.data, args.recover > 0, args.no_calibration) {
        let recover_limit = if args.calibration_samples == 0 { RECOVER_CALIBRATION } else { limit };
        if d.extension().is_some_and(|e| e == "npz") {
            let batches = take_first(model_inputs(model, data::read_npz(d)?), recover_limit)?;
            let source = format!("{} ({} samples, the --recover data)", d.display(), count(&batches));
            return Ok(CalibrationData { source, batches });
        }
        let tok = tokenizer.context("--recover on text needs the model's tokenizer (--tokenizer tokenizer.json)")?;
        let mut texts = data::read_paragraphs(d)?;
        texts.shuffle(&mut rand::rngs::StdRng::seed_from_u64(args.seed));
        let refs: Vec<&str> = texts.iter().take(recover_limit).map(String::as_str).collect();
        let batches = take(tokenized(model, &tok, &refs, args.calibration_length)?)?;
        let source = format!(
            "{} ({} texts × {} tokens, the --recover data)",
            d.display(),
            count(&batches),
            args.calibration_length
        );
        return Ok(CalibrationData { source, batches });
    }
    if let (Some(tok), false) = (&tokenizer, args.no_calibration) {
        let corpus = data::builtin_corpus();
        let refs: Vec<&str> = corpus.iter().take(limit).copied().collect();
        let batches = take(tokenized(model, tok, &refs, args.calibration_length)?)?;
        return Ok(CalibrationData {
            source: format!(
                "the built-in English corpus ({} texts × {} tokens, tokenized by {})",
                count(&batches),
                args.calibration_length,
                tok.display()
            ),
            batches,
        });
    }
    let bind = std::collections::HashMap::from([("*".to_string(), args.calibration_length as i64)]);
    let generated = if args.calibration_samples == 0 { 256 } else { args.calibration_samples };
    let arrays = ecospac_passes::synthetic::synthetic_inputs(model, generated, &bind, args.seed)?;
    let batches = take(arrays)?;
    // Token ids come in as integers; a model of float inputs only (images,
    // features) has no text to calibrate on.
    let g = &model.graph;
    let reads_tokens = g.inputs.iter().any(|&v| g.value(v).best_ty().is_some_and(|t| !t.dtype.is_float()));
    if !args.no_calibration && reads_tokens {
        eprintln!(
            "WARNING: no calibration data and no tokenizer, so ecospac calibrates on {} generated token sequences. \
             Real text keeps the compact model much closer to the original (the real all-MiniLM-L6-v2 at --budget 0.5: \
             held-out cosine 0.72 with generated sequences, 0.88 with the built-in English corpus; BENCHMARKS.md). \
             Give --tokenizer tokenizer.json (the built-in corpus is then used), --calibration-text FILE or \
             --calibration FILE.npz.",
            count(&batches)
        );
    } else if !args.no_calibration {
        eprintln!(
            "WARNING: no calibration data, so ecospac calibrates on {} generated inputs (random values of the \
             declared types). Inputs like the ones the model will see keep the compact model closer to the \
             original: give --calibration FILE.npz.",
            count(&batches)
        );
    }
    let what = if reads_tokens { "sequences" } else { "inputs" };
    Ok(CalibrationData { source: format!("{} generated {what} (no data given)", count(&batches)), batches })
}

fn count(batches: &[ecospac_ir::exec::Batch]) -> usize {
    batches.iter().map(ecospac_ir::exec::batch_rows).sum()
}

/// Settings of `ecospac compile` besides the pruning flags.
pub struct CompileArgs<'a> {
    /// The model.
    pub input: &'a Path,
    /// Where to write.
    pub output: &'a Path,
    /// The pruning flags.
    pub prune: &'a PruneArgs,
    /// Model passes to run first.
    pub passes: &'a [String],
    /// A recipe file to run instead of the flags.
    pub recipe: Option<&'a Path>,
    /// Print the text IR after these passes.
    pub dump_after: &'a [String],
    /// Weights to `<output>.data`.
    pub external: bool,
    /// Verify after every pass.
    pub verify_each: bool,
}

/// Every path a compile writes, with the flag that names it.
fn outputs(a: &CompileArgs<'_>, to_folder: bool) -> Vec<(&'static str, PathBuf)> {
    let mut out = vec![("--output", a.output.to_path_buf())];
    if !to_folder {
        let mut data = a.output.as_os_str().to_owned();
        data.push(".data");
        out.push(("the external data of --output", PathBuf::from(data)));
    }
    if let Some(p) = &a.prune.emit_plan {
        out.push(("--emit-plan", p.clone()));
        out.push(("the refit weights of --emit-plan", ecospac_passes::prune::SlicePlan::weights_path(p)));
    }
    if let Some(p) = &a.prune.report {
        out.push(("--report", p.clone()));
    }
    out
}

/// `ecospac compile`.
pub fn compile(a: &CompileArgs<'_>) -> Result<()> {
    let args = a.prune;
    let to_folder = a.output.is_dir() || a.output.as_os_str().to_string_lossy().ends_with(std::path::MAIN_SEPARATOR);
    let outputs = outputs(a, to_folder);
    let mut inputs = crate::paths::Inputs::default();
    inputs.file(a.input);
    if a.input.is_dir() {
        inputs.folder(a.input);
    }
    // Cheap refusals before the import, the full check (external data, shards) after it.
    crate::paths::check_outputs(&inputs, &outputs)?;
    if to_folder && a.output.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        bail!("refusing to write into {}: the folder is not empty", a.output.display());
    }
    if args.recover > 0 {
        if !cfg!(feature = "train") {
            bail!("--recover needs the training runtime, and this ecospac is built without it (cargo build --features train)");
        }
        if args.data.is_none() {
            bail!("--recover needs --data: text (with the model's tokenizer) or an .npz of model inputs");
        }
    }
    let t0 = Instant::now();
    let (model, checkpoint, mut inputs) = crate::load_any(a.input)?;
    let read_too = [
        args.plan.clone(),
        args.calibration.clone(),
        args.calibration_text.clone(),
        args.tokenizer.clone(),
        args.data.clone(),
    ];
    for p in read_too.iter().flatten().chain(a.recipe.map(Path::to_path_buf).iter()) {
        inputs.file(p);
    }
    if let Some(plan) = &args.plan {
        inputs.file(&ecospac_passes::prune::SlicePlan::weights_path(plan));
    }
    crate::paths::check_outputs(&inputs, &outputs)?;
    crate::paths::clean_stale(&outputs);
    if to_folder && checkpoint.is_none() {
        bail!(
            "{} is a folder, so ecospac would write a checkpoint, which needs a checkpoint folder as input; \
             name an .onnx file to write ONNX",
            a.output.display()
        );
    }
    eprintln!("imported {} in {:.2?}", a.input.display(), t0.elapsed());
    let registry = crate::recover::registry()?;
    let mut recipe = match a.recipe {
        Some(path) => registry.normalized(&Recipe::read(path)?)?,
        None => recipe_of(args, a.passes, to_folder, checkpoint.is_some())?,
    };
    let recovers = recipe.steps.iter().any(|s| s.pass == crate::recover::NAME);
    if recovers && to_folder {
        bail!("recovery writes ONNX; recovering into a checkpoint folder is not built yet");
    }
    // A recovery on text without a tokenizer uses the model's own.
    if let Some(tok) = tokenizer(args, a.input, checkpoint.as_ref()) {
        for s in recipe.steps.iter_mut().filter(|s| s.pass == crate::recover::NAME) {
            s.params.entry("tokenizer").or_insert_with(|| serde_json::json!(tok));
        }
    }
    let sizes =
        checkpoint.as_ref().map(|c| ConfigSizes { size_keys: c.size_keys.clone(), key_sizes: c.key_sizes.clone() });
    // An engine and data only when a step runs the model.
    let probe = Pipeline::with_registry(&registry, &recipe, &Env::default(), Facts::NONE);
    let needs_engine = matches!(probe, Err(ecospac_passes::PassError::NoEngine { .. }));
    let (exec, data) = if needs_engine {
        let exec = OrtExecutor::new(args.ort_lib.as_deref(), args.threads)?;
        let t = Instant::now();
        let mut prepared = model.clone();
        ecospac_passes::infer_shapes(&mut prepared).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut data = calibration_data(args, a.input, &prepared, checkpoint.as_ref())?;
        eprintln!("calibration data: {} ({:.2?})", data.source, t.elapsed());
        let (batches, split) = ecospac_ir::exec::runnable_batches(&exec, &prepared, data.batches);
        if split {
            eprintln!("ONNX Runtime runs this model on one sample at a time only: its runs here go so (slower)");
        }
        data.batches = batches;
        (Some(exec), Some(data))
    } else {
        (None, None)
    };
    let bar = progress::Bar::new();
    let report_progress = |stage: &str, done: usize, total: usize| bar.set(stage, done, total);
    let env = Env {
        executor: exec.as_ref().map(|e| e as &dyn ecospac_ir::exec::Executor),
        data: data.as_ref(),
        config_sizes: sizes.as_ref(),
        progress: Some(&report_progress),
    };
    let mut pipeline = Pipeline::with_registry(&registry, &recipe, &env, Facts::NONE)?;
    if a.verify_each {
        pipeline = pipeline.verify_each(true);
    }
    for d in a.dump_after {
        pipeline = pipeline.dump_after(d)?;
    }
    let before = model.graph.parameters();
    let float_before = model.graph.float_parameters();
    let bind = crate::parse_bindings(&args.bind)?;
    let flops_before = ecospac_passes::cost::matmul_flops(&model, &bind);
    let mut cx = if recovers { Compilation::new(model).keeping_original() } else { Compilation::new(model) };
    let timings = pipeline.run(&mut cx, &env);
    drop(bar);
    let timings = match timings {
        Err(e)
            if needs_engine
                && matches!(&e, ecospac_passes::PassError::Failed { pass: "calibrate" | "allocate" | "refit", message }
                    if message.contains("ONNX Runtime")) =>
        {
            return Err(anyhow::Error::new(e).context(
                "running the model in ONNX Runtime on the calibration data failed; a model exported with \
                 fixed sizes needs calibration data of those sizes (--calibration-length N, or --calibration \
                 FILE.npz), and a compile that does not run the model at all is --criterion coupled \
                 --allocation global --refit none (worse: weights only)",
            ))
        }
        other => other?,
    };
    for t in &timings {
        eprintln!(
            "pass {:24} {:>10.2?} {}",
            t.name,
            t.elapsed,
            if t.changed == ecospac_passes::Changed::Yes { "changed" } else { "" }
        );
    }
    for (pass, text) in pipeline.dumps() {
        println!("; after {pass}\n{text}");
    }
    let after = cx.model.graph.parameters();
    let flops_after = ecospac_passes::cost::matmul_flops(&cx.model, &bind);
    summarize(&cx, before, after, flops_before, flops_after, &bind);
    eprintln!("compiled in {:.1?}", t0.elapsed());
    if after > before {
        bail!("the compiled model has {after} parameters, more than the input's {before}; nothing was written");
    }
    let proof =
        verify(&cx.model.graph).map_err(|e| anyhow::anyhow!("{e}")).context("the compiled graph does not verify")?;
    cx.report.insert("recipe".into(), serde_json::from_str(&recipe.to_json())?);
    cx.report.insert("parameters".into(), serde_json::json!({"before": before as u64, "after": after as u64}));
    cx.report.insert(
        "float_parameters".into(),
        serde_json::json!({"before": float_before as u64, "after": cx.model.graph.float_parameters() as u64}),
    );
    cx.report.insert(
        "matmul_flops".into(),
        serde_json::json!({"before": flops_before.map(|f| f as u64), "after": flops_after.map(|f| f as u64), "bind": bind}),
    );
    cx.report.insert(
        "seconds".into(),
        serde_json::json!(timings.iter().map(|t| (t.name, t.elapsed.as_secs_f64())).collect::<Vec<_>>()),
    );
    let t1 = Instant::now();
    if to_folder {
        let (Some(ckpt), Some(coupling), Some(plan)) = (&checkpoint, &cx.coupling, &cx.plan) else {
            bail!("writing a checkpoint needs a plan (a recipe with `slice`)");
        };
        let removed = plan.bind(&cx.model, coupling)?;
        let sizes = sizes.as_ref().context("a checkpoint's config sizes")?;
        let resized: Vec<Resized> = coupling
            .groups
            .iter()
            .zip(&removed)
            .enumerate()
            .map(|(gi, (g, r))| Resized {
                key: coupling.config_key(&cx.model, sizes, gi),
                size: g.size,
                kept: g.size - r.len(),
                weights: ecospac_passes::prune::group_key(&cx.model, g).into_iter().map(|c| c.weight).collect(),
            })
            .collect();
        let src = CheckpointSource {
            dir: &ckpt.dir,
            config: &ckpt.config,
            tensors: ckpt
                .weights
                .order
                .iter()
                .filter_map(|n| Some((n.as_str(), ckpt.weights.tensors.get(n)?)))
                .collect(),
        };
        let files = plan.encode("slice_plan.json")?;
        let written = {
            let _stage = progress::stage(&format!("writing {}", a.output.display()));
            export_checkpoint(&cx.model, proof, &src, &resized, &files, a.output)?
        };
        eprintln!(
            "wrote the checkpoint {} (model.safetensors {} bytes) in {:.2?}",
            written.dir.display(),
            written.weight_bytes,
            t1.elapsed()
        );
        match &written.reason {
            None => eprintln!("config.json is standard (updated: {:?}); transformers loads it as is", written.updated_keys),
            Some(why) => eprintln!(
                "note: {why}; config.json records the sizes under `ecospac`, and stock loaders \
                 (transformers) will NOT read this checkpoint (use --scope config and --allocation uniform for one they read)"
            ),
        }
    } else {
        let opts = ExportOptions { external_data: if a.external { ExternalData::Always } else { ExternalData::Auto } };
        let written = {
            let _stage = progress::stage(&format!("writing {}", a.output.display()));
            export_onnx(&cx.model, proof, a.output, &opts)?
        };
        eprintln!(
            "wrote {} ({} bytes{}) in {:.2?}",
            written.model_path.display(),
            written.model_bytes,
            written.data_path.as_ref().map_or(String::new(), |p| format!(
                ", data {} ({} bytes)",
                p.display(),
                written.data_bytes
            )),
            t1.elapsed()
        );
    }
    // Side outputs only once the model is written.
    if let (Some(p), Some(plan)) = (&args.emit_plan, &cx.plan) {
        plan.save(p)?;
    }
    if let Some(path) = &args.report {
        crate::write_atomically(path, serde_json::to_string_pretty(&serde_json::Value::Object(cx.report))?.as_bytes())?;
    }
    Ok(())
}

/// A few lines on what the compile did.
fn summarize(
    cx: &Compilation,
    before: u128,
    after: u128,
    flops_before: Option<u128>,
    flops_after: Option<u128>,
    bind: &std::collections::HashMap<String, i64>,
) {
    let r = &cx.report;
    if let Some(a) = r.get("analysis") {
        eprintln!(
            "coupling analysis: {} groups ({} of whole heads), {} pinned weight axes",
            a["groups"], a["head_groups"], a["pinned_weight_axes"]
        );
        if let Some(ops) = a["unmodelled_ops"].as_object().filter(|o| !o.is_empty()) {
            let names: Vec<String> = ops.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
            let pinned = a["unmodelled_pinned_parameters"].as_u64().unwrap_or(0);
            eprintln!(
                "warning: {pinned} of {before} parameters cannot be pruned because they reach ops ecospac \
                 does not model or slice yet: {}",
                names.join(", ")
            );
        }
    }
    if let Some(c) = r.get("calibration") {
        if c["activations"].as_u64() == Some(0) {
            eprintln!(
                "calibration measured no activation: the groups' weights feed ops whose activations are not \
                 measured yet (convolutions), so their scores come from the weights alone"
            );
        } else {
            eprintln!("calibrated on {} samples: {} activations", c["samples"], c["activations"]);
        }
    }
    if let (Some(p), Some(coupling)) = (r.get("plan"), &cx.coupling) {
        let count = |k: &str| {
            let v = &p[k];
            (v["before"].as_u64().unwrap_or(0), v["after"].as_u64().unwrap_or(0))
        };
        let ((b, a), (sb, sa)) = (count("prunable_parameters"), count("in_scope_parameters"));
        eprintln!("kept {a} of {b} prunable parameters ({:.3})", a as f64 / b.max(1) as f64);
        if sb != b {
            eprintln!("  of the groups in scope: {sa} of {sb} ({:.3})", sa as f64 / sb.max(1) as f64);
        }
        let mut heads = Vec::new();
        let mut channels = Vec::new();
        let groups = p["groups"].as_array().map(Vec::as_slice).unwrap_or_default();
        for (g, gp) in coupling.groups.iter().zip(groups) {
            let kept = format!("{}/{}", gp["kept"], gp["size"]);
            if g.outer {
                heads.push(kept);
            } else if g.blocks() == 1 {
                channels.push(kept);
            }
        }
        if !heads.is_empty() {
            eprintln!("  heads kept per group: {}", heads.join(" "));
        }
        if !channels.is_empty() {
            eprintln!("  channels kept per group: {}", channels.join(" "));
        }
    }
    if let Some(f) = r.get("refit") {
        eprintln!("refit: {} weights ({})", f["weights"], f["method"].as_str().unwrap_or("?"));
    }
    eprintln!("model: {after} of {before} parameters ({:.3})", after as f64 / before.max(1) as f64);
    if let (Some(b), Some(a)) = (flops_before, flops_after) {
        eprintln!("matmul FLOPs {a} of {b} ({:.3}) with {bind:?}", a as f64 / b.max(1) as f64);
    }
}
