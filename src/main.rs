//! The `ecospac` command line.

mod calibrate;
mod progress;
#[cfg(feature = "train")]
mod train_cmd;
mod verify_cmd;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ecospac_backends::{export_checkpoint, export_onnx, ExportOptions, ExternalData};
use ecospac_frontends::hf::Checkpoint;
use ecospac_ir::{verify, DType, Model};
use ecospac_passes::PassManager;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(name = "ecospac", version, about = "Coupled structured sparsity for transformer graphs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarise a model: opsets, inputs/outputs, op histogram, parameters.
    Inspect {
        /// The ONNX model.
        model: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Print the IR text form instead.
        #[arg(long, conflicts_with = "json")]
        text: bool,
        /// Bind symbolic dims by name for the FLOPs count, e.g. `batch=1,seq=128` (`*=N` binds the rest).
        #[arg(long, value_delimiter = ',')]
        bind: Vec<String>,
        /// Print the coupling groups (what can be pruned together) and the pinned weight axes.
        #[arg(long, conflicts_with = "text")]
        groups: bool,
    },
    /// Run the compile pipeline and write the result.
    Compile {
        /// The ONNX model.
        model: PathBuf,
        /// Where to write the result (never the input).
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        prune: Box<PruneArgs>,
        /// Passes to run, comma-separated (see `ecospac passes`).
        #[arg(long, value_delimiter = ',', default_value = "infer-shapes")]
        passes: Vec<String>,
        /// Print the IR text form after this pass (repeatable).
        #[arg(long)]
        dump_after: Vec<String>,
        /// Write weights to `<output>.data` even when the model is under 2 GB.
        #[arg(long)]
        external_data: bool,
        /// Run the verifier after every pass (always on in debug builds).
        #[arg(long)]
        verify_each: bool,
    },
    /// Run the original (or, with --masked, the masked original) and the compact
    /// model in ONNX Runtime on the same generated inputs: fidelity and latency.
    Verify {
        /// The model before compiling.
        original: PathBuf,
        /// The compiled model.
        compact: PathBuf,
        /// Check exactness against the original with this plan's removed slices zeroed.
        #[arg(long, value_name = "PLAN")]
        masked: Option<PathBuf>,
        /// Largest difference allowed with --masked, relative to the largest output.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f64,
        /// Symbolic input dims, e.g. `batch=2,seq=64` (`*=N` for the rest; default 1 and 16).
        #[arg(long, value_delimiter = ',')]
        bind: Vec<String>,
        /// Timed runs per model.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// The ONNX Runtime shared library (else $ORT_DYLIB_PATH, else .venv).
        #[arg(long)]
        ort_lib: Option<PathBuf>,
    },
    /// List the registered passes.
    Passes,
    /// Train with the EcoSpa schedule (pre-train from a config or fine-tune a
    /// checkpoint), shrinking the model as it learns; export it to ONNX.
    #[cfg(feature = "train")]
    Train(Box<train_cmd::TrainArgs>),
}

/// Restores the default SIGPIPE action, so that `ecospac ... | head` ends quietly
/// instead of panicking on a closed stdout.
#[cfg(unix)]
fn default_sigpipe() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    // SAFETY: setting SIGPIPE (13) to SIG_DFL (0) before any thread starts.
    unsafe {
        signal(13, 0);
    }
}

fn main() {
    #[cfg(unix)]
    default_sigpipe();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect { model, json, text, groups: false, bind } => inspect(&model, json, text, &bind),
        Command::Inspect { model, json, groups: true, .. } => inspect_groups(&model, json),
        Command::Compile { model, output, prune, passes, dump_after, external_data, verify_each } => {
            compile(&model, &output, &prune, &passes, &dump_after, external_data, verify_each)
        }
        Command::Verify { original, compact, masked, tolerance, bind, runs, ort_lib } => {
            let args = verify_cmd::VerifyArgs {
                original,
                compact,
                masked_plan: masked,
                tolerance,
                bind: parse_bindings(&bind)?,
                runs,
                ort_lib,
            };
            verify_cmd::verify(&args, |m| {
                PassManager::from_names(ecospac_passes::PRUNE_PREPARATION)?.run(m)?;
                Ok(())
            })
        }
        #[cfg(feature = "train")]
        Command::Train(args) => train_cmd::train(&args),
        Command::Passes => {
            for name in ecospac_passes::PASS_NAMES {
                let pass = ecospac_passes::pass_by_name(name)?;
                println!("{name:24} {}", pass.doc());
            }
            Ok(())
        }
    }
}

fn load(path: &Path) -> Result<Model> {
    Ok(load_any(path)?.0)
}

/// Reads an ONNX file, or a checkpoint folder (then also returns the checkpoint).
fn load_any(path: &Path) -> Result<(Model, Option<Checkpoint>)> {
    let _stage = progress::stage(&format!("importing {}", path.display()));
    if ecospac_frontends::is_checkpoint(path) {
        let hf = ecospac_frontends::import_checkpoint(path)
            .with_context(|| format!("cannot import the checkpoint {}", path.display()))?;
        return Ok((hf.model, Some(hf.checkpoint)));
    }
    if path.is_dir() {
        bail!("{} is a folder without config.json; give an ONNX file or a checkpoint folder", path.display());
    }
    let model = ecospac_frontends::import_file(path).with_context(|| format!("cannot import {}", path.display()))?;
    Ok((model, None))
}

fn shape_string(m: &Model, v: ecospac_ir::ValueId) -> String {
    m.graph.value(v).best_ty().map_or("?".into(), |t| ecospac_ir::text::ty_string(&m.graph, &t))
}

fn parse_bindings(bind: &[String]) -> Result<std::collections::HashMap<String, i64>> {
    bind.iter()
        .map(|b| {
            let (k, v) = b.split_once('=').with_context(|| format!("--bind takes name=value, got `{b}`"))?;
            Ok((k.to_string(), v.parse().with_context(|| format!("--bind {k}: `{v}` is not an integer"))?))
        })
        .collect()
}

fn inspect(path: &Path, json: bool, text: bool, bind: &[String]) -> Result<()> {
    let bindings = parse_bindings(bind)?;
    let mut model = load(path)?;
    PassManager::from_names(&["infer-shapes"])?.run(&mut model).context("inspect needs a valid graph")?;
    if text {
        print!("{}", ecospac_ir::text::print(&model));
        return Ok(());
    }
    let g = &model.graph;
    let mut ops: BTreeMap<String, usize> = BTreeMap::new();
    for (_, n) in g.nodes() {
        let key = if n.op.domain().is_empty() {
            n.op.op_type().to_string()
        } else {
            format!("{}::{}", n.op.domain(), n.op.op_type())
        };
        *ops.entry(key).or_default() += 1;
    }
    let mut params: BTreeMap<String, (u128, u64)> = BTreeMap::new();
    for &v in &g.initializers {
        if let Some(t) = &g.value(v).constant {
            let e = params.entry(t.dtype.name()).or_default();
            e.0 += t.numel();
            e.1 += t.bytes().len() as u64;
        }
    }
    let float_params: u128 =
        params.iter().filter(|(k, _)| DType::from_name(k).is_some_and(|d| d.is_float())).map(|(_, v)| v.0).sum();
    let io = |vs: &[ecospac_ir::ValueId]| -> Vec<(String, String)> {
        vs.iter().map(|&v| (g.value(v).name.clone(), shape_string(&model, v))).collect()
    };
    if json {
        let value = serde_json::json!({
            "path": path.display().to_string(),
            "ir_version": model.ir_version,
            "opsets": model.opsets.iter().map(|o| serde_json::json!({"domain": o.domain, "version": o.version})).collect::<Vec<_>>(),
            "inputs": io(&g.inputs).into_iter().map(|(n, t)| serde_json::json!({"name": n, "type": t})).collect::<Vec<_>>(),
            "outputs": io(&g.outputs).into_iter().map(|(n, t)| serde_json::json!({"name": n, "type": t})).collect::<Vec<_>>(),
            "nodes": g.order.len(),
            "ops": ops,
            "parameters": params.iter().map(|(k, v)| (k.clone(), serde_json::json!({"elements": v.0 as u64, "bytes": v.1}))).collect::<BTreeMap<_, _>>(),
            "float_parameters": float_params as u64,
            "matmul_flops": ecospac_passes::cost::matmul_flops(&model, &bindings).map(|f| f as u64),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("{}", path.display());
    let opsets: Vec<String> = model
        .opsets
        .iter()
        .map(|o| format!("{}={}", if o.domain.is_empty() { "ai.onnx" } else { &o.domain }, o.version))
        .collect();
    println!("  IR version {}, opsets {}", model.ir_version, opsets.join(" "));
    for (label, list) in [("input", io(&g.inputs)), ("output", io(&g.outputs))] {
        for (n, t) in list {
            println!("  {label:6} {n}: {t}");
        }
    }
    println!("  {} nodes, {} initializers", g.order.len(), g.initializers.len());
    println!("  parameters ({} float):", float_params);
    match ecospac_passes::cost::matmul_flops(&model, &bindings) {
        Some(f) => println!("  matmul FLOPs {f} (dims bound: {bind:?})"),
        None => println!("  matmul FLOPs: bind the symbolic dims with --bind name=value to count them"),
    }
    for (k, (n, b)) in &params {
        println!("    {k:6} {n:>14} elements {b:>14} bytes");
    }
    println!("  ops:");
    for (k, n) in &ops {
        println!("    {k:28} {n}");
    }
    Ok(())
}

fn inspect_groups(path: &Path, json: bool) -> Result<()> {
    let mut model = load(path)?;
    PassManager::from_names(&["infer-shapes"])?.run(&mut model).context("inspect needs a valid graph")?;
    let coupling = ecospac_passes::coupling::analyze(&model);
    let g = &model.graph;
    let name = |v| g.value(v).name.clone();
    let role = |r| if r == ecospac_passes::coupling::Role::Reader { "reads" } else { "writes" };
    if json {
        let groups: Vec<_> = coupling
            .groups
            .iter()
            .map(|gr| {
                serde_json::json!({
                    "size": gr.size,
                    "blocks": gr.blocks(),
                    "copies": gr.copies(),
                    "params_per_index": gr.cost_per_index(&model),
                    "members": gr.members.iter().map(|m| serde_json::json!({
                        "weight": name(m.value), "axis": m.axis, "role": role(m.role),
                        "copies": m.positions.first().map_or(0, Vec::len),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let pinned: Vec<_> = coupling
            .pinned
            .iter()
            .map(|p| serde_json::json!({"weight": name(p.value), "axis": p.axis, "why": p.reasons.iter().map(|r| r.describe()).collect::<Vec<_>>()}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"groups": groups, "pinned": pinned}))?);
        return Ok(());
    }
    println!("{}: {} coupling groups", path.display(), coupling.groups.len());
    for (i, gr) in coupling.groups.iter().enumerate() {
        println!(
            "group {i}: {} indices ({} blocks of {}, a kept set per block) x {} copies, {} parameters per index",
            gr.size,
            gr.blocks(),
            gr.block,
            gr.copies(),
            gr.cost_per_index(&model)
        );
        for m in &gr.members {
            let copies = m.positions.first().map_or(0, Vec::len);
            println!("    {:6} {} axis {} ({} per index)", role(m.role), name(m.value), m.axis, copies);
        }
    }
    println!("pinned weight axes:");
    for p in &coupling.pinned {
        let why: Vec<&str> = p.reasons.iter().map(|r| r.describe()).collect();
        println!(
            "    {} axis {}: {}",
            name(p.value),
            p.axis,
            if why.is_empty() { "size 1 or outer factor (heads)".to_string() } else { why.join("; ") }
        );
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The pruning settings of `compile`.
#[derive(clap::Args)]
struct PruneArgs {
    /// Fraction of the prunable (coupled) parameters to keep; 1.0 keeps the model as it is.
    #[arg(long, default_value_t = 1.0)]
    budget: f64,
    /// Importance criterion: coupled (EcoSpa, weights), coupled-act (EcoSpa with
    /// calibration activations), and the baselines uncoupled, uncoupled-act, random.
    #[arg(long, default_value = "coupled")]
    criterion: String,
    /// Calibration inputs for the -act criteria: an .npz with one array per model input.
    #[arg(long, conflicts_with = "calibration_text")]
    calibration: Option<PathBuf>,
    /// Calibration text for the -act criteria, one text per line (needs --tokenizer).
    #[arg(long, requires = "tokenizer")]
    calibration_text: Option<PathBuf>,
    /// The model's tokenizer.json, for --calibration-text.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Tokens per calibration text (padded or truncated).
    #[arg(long, default_value_t = 64)]
    calibration_length: usize,
    /// The ONNX Runtime shared library for calibration (else $ORT_DYLIB_PATH, else .venv).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    /// Budget allocation: uniform (same fraction per group) or global (one ranking).
    #[arg(long, default_value = "uniform")]
    allocation: String,
    /// Kept counts are multiples of this where a group is at least twice as large.
    #[arg(long, default_value_t = 8)]
    align: usize,
    /// Seed for --criterion random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the slice plan (JSON) here.
    #[arg(long)]
    emit_plan: Option<PathBuf>,
    /// Apply this slice plan (JSON) instead of choosing one.
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Write the compile report (JSON) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Bind symbolic dims for the report's FLOPs, e.g. `batch=1,seq=128` (`*=N` for the rest).
    #[arg(long, value_delimiter = ',')]
    bind: Vec<String>,
    /// Which groups to prune: `all`, or `config` (only those whose width is one
    /// config.json key, such as the FFN width: the written checkpoint stays
    /// loadable by stock `transformers`). `auto`: `config` when writing a
    /// checkpoint folder, else `all`.
    #[arg(long, default_value = "auto")]
    scope: String,
}

/// The outcome of [`prune`].
struct Pruned {
    report: serde_json::Value,
    coupling: ecospac_passes::coupling::Coupling,
    plan: ecospac_passes::prune::SlicePlan,
}

fn float_params(model: &Model) -> u128 {
    let g = &model.graph;
    g.initializers
        .iter()
        .filter_map(|&v| g.value(v).constant.as_ref())
        .filter(|t| t.dtype.is_float())
        .map(|t| t.numel())
        .sum()
}

/// Analyses, plans and slices (only config-sized groups when `config_scope`
/// names the checkpoint); returns the report, the analysis and the plan.
fn prune(model: &mut Model, args: &PruneArgs, config_scope: Option<&Checkpoint>) -> Result<Pruned> {
    use ecospac_passes::coupling::Coupling;
    use ecospac_passes::prune::{apply_plan, plan, Allocation, Criterion, PlanOptions, SlicePlan};
    let t0 = Instant::now();
    PassManager::from_names(ecospac_passes::PRUNE_PREPARATION)?.run(model)?;
    let mut coupling = {
        let _stage = progress::stage("coupling analysis");
        ecospac_passes::coupling::analyze(model)
    };
    let analysed = t0.elapsed();
    eprintln!(
        "coupling analysis: {} groups, {} pinned weight axes ({analysed:.2?})",
        coupling.groups.len(),
        coupling.pinned.len()
    );
    if coupling.groups.is_empty() {
        bail!("nothing in this model can be pruned: every weight axis is pinned (see `ecospac inspect --groups`)");
    }
    let prunable: u64 = coupling.groups.iter().map(|g| g.cost_per_index(model) * g.size as u64).sum();
    let in_scope: Vec<bool> = match config_scope {
        None => vec![true; coupling.groups.len()],
        Some(ckpt) => (0..coupling.groups.len())
            .map(|gi| ecospac_backends::safetensors::group_size_key(model, ckpt, &coupling, gi).is_some())
            .collect(),
    };
    if args.plan.is_none() && !in_scope.contains(&true) {
        bail!("no group's width is a config.json key, so --scope config leaves nothing to prune; try --scope all");
    }
    if config_scope.is_some() {
        eprintln!(
            "scope config: pruning the {} of {} groups whose width is a config.json key (--scope all prunes every group)",
            in_scope.iter().filter(|&&x| x).count(),
            in_scope.len()
        );
    }
    // Plans are chosen among the groups in scope; the others keep every index.
    let scoped = Coupling::of_groups(
        coupling.groups.iter().zip(&in_scope).filter(|(_, &s)| s).map(|(g, _)| g.clone()).collect(),
    );
    let widen = |sub: SlicePlan| -> SlicePlan {
        let mut sub = sub.groups.into_iter();
        let kept = coupling
            .groups
            .iter()
            .zip(&in_scope)
            .map(|(g, &s)| match s.then(|| sub.next()).flatten() {
                Some(gp) => gp.kept,
                None => (0..g.size as u32).collect(),
            })
            .collect();
        SlicePlan::from_kept(model, &coupling, kept)
    };
    let slice_plan: SlicePlan = match &args.plan {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read plan {}", p.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not a slice plan", p.display()))?
        }
        None => {
            let allocation = match args.allocation.as_str() {
                "uniform" => Allocation::Uniform,
                "global" => Allocation::Global,
                other => bail!("unknown --allocation `{other}` (uniform, global)"),
            };
            let activation = args.criterion.strip_suffix("-act");
            let base = activation.unwrap_or(&args.criterion);
            let criterion = Criterion::parse(base)
                .filter(|c| activation.is_none() || *c != Criterion::Random)
                .with_context(|| {
                    format!(
                        "unknown --criterion `{}` (coupled, coupled-act, uncoupled, uncoupled-act, random)",
                        args.criterion
                    )
                })?;
            let opts =
                PlanOptions { budget: args.budget, criterion, allocation, align: args.align.max(1), seed: args.seed };
            widen(match activation {
                None => plan(model, &scoped, &opts),
                Some(_) => {
                    let (data, source) = match (&args.calibration, &args.calibration_text, &args.tokenizer) {
                        (Some(npz), _, _) => (calibrate::read_npz(npz)?, npz.display().to_string()),
                        (None, Some(text), Some(tok)) => {
                            (calibrate::read_text(text, tok, args.calibration_length, model)?, text.display().to_string())
                        }
                        _ => bail!(
                            "--criterion {} needs --calibration FILE.npz or --calibration-text FILE --tokenizer tokenizer.json",
                            args.criterion
                        ),
                    };
                    let env = verify_cmd::ort_env(args.ort_lib.as_deref())?;
                    let probes = ecospac_passes::prune::activation_probes(model, &scoped);
                    let t = Instant::now();
                    let energy = {
                        let _stage = progress::stage("calibrating in ONNX Runtime");
                        calibrate::activation_energy(&env, model, &probes, &data)?
                    };
                    eprintln!("calibration: {} activations from {} in {:.2?}", probes.len(), source, t.elapsed());
                    let scores = ecospac_passes::prune::activation_scores(
                        model,
                        &scoped,
                        &energy,
                        criterion == Criterion::Coupled,
                    );
                    ecospac_passes::prune::plan_with_scores(model, &scoped, &opts, scores)
                }
            })
        }
    };
    if let Some(p) = &args.emit_plan {
        write_atomically(p, serde_json::to_string_pretty(&slice_plan)?.as_bytes())?;
    }
    let kept_prunable: u64 = coupling
        .groups
        .iter()
        .zip(&slice_plan.groups)
        .map(|(g, p)| g.cost_per_index(model) * p.kept.len() as u64)
        .sum();
    let before = float_params(model);
    let bind = parse_bindings(&args.bind)?;
    let flops_before = ecospac_passes::cost::matmul_flops(model, &bind);
    let t1 = Instant::now();
    {
        let _stage = progress::stage("slicing");
        apply_plan(model, &mut coupling, &slice_plan)?;
    }
    PassManager::from_names(&["infer-shapes", "eliminate-dead-nodes"])?
        .verify_each(true)
        .run(model)
        .context("the sliced model")?;
    let sliced = t1.elapsed();
    let after = float_params(model);
    let flops_after = ecospac_passes::cost::matmul_flops(model, &bind);
    if let (Some(b), Some(a)) = (flops_before, flops_after) {
        eprintln!("matmul FLOPs {a} of {b} ({:.3}) with {:?}", a as f64 / b.max(1) as f64, bind);
    }
    let (mut scoped_before, mut scoped_after) = (0u64, 0u64);
    for ((g, p), _) in coupling.groups.iter().zip(&slice_plan.groups).zip(&in_scope).filter(|(_, &s)| s) {
        scoped_before += g.cost_per_index(model) * g.size as u64;
        scoped_after += g.cost_per_index(model) * p.kept.len() as u64;
    }
    if scoped_before != prunable {
        eprintln!(
            "kept {scoped_after} of {scoped_before} parameters of the groups in scope ({:.3})",
            scoped_after as f64 / scoped_before.max(1) as f64
        );
    }
    eprintln!(
        "kept {kept_prunable} of {prunable} prunable parameters ({:.3}); model {after} of {before} ({:.3}); sliced in {sliced:.2?}",
        kept_prunable as f64 / prunable.max(1) as f64,
        after as f64 / before.max(1) as f64
    );
    let report = serde_json::json!({
        "prunable_parameters": {"before": prunable, "after": kept_prunable},
        "in_scope_parameters": {"before": scoped_before, "after": scoped_after},
        "float_parameters": {"before": before as u64, "after": after as u64},
        "matmul_flops": {"before": flops_before.map(|f| f as u64), "after": flops_after.map(|f| f as u64), "bind": bind},
        "groups": slice_plan.groups.iter().map(|g| serde_json::json!({"size": g.size, "kept": g.kept.len(), "weights": g.weights})).collect::<Vec<_>>(),
        "pinned_weight_axes": coupling.pinned.len(),
        "seconds": {"analysis": analysed.as_secs_f64(), "slice": sliced.as_secs_f64()},
    });
    Ok(Pruned { report, coupling, plan: slice_plan })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp =
        ecospac_backends::onnx::staging_file(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn compile(
    input: &Path,
    output: &Path,
    args: &PruneArgs,
    passes: &[String],
    dump_after: &[String],
    external: bool,
    verify_each: bool,
) -> Result<()> {
    if !(args.budget > 0.0 && args.budget <= 1.0) {
        bail!("--budget must be in (0, 1], got {}", args.budget);
    }
    let mut data_out = output.as_os_str().to_owned();
    data_out.push(".data");
    if same_file(input, output) || same_file(input, Path::new(&data_out)) {
        bail!("refusing to overwrite the input {}; choose another --output", input.display());
    }
    // A folder output (existing, or named with a trailing slash) is a checkpoint.
    let to_folder = output.is_dir() || output.as_os_str().to_string_lossy().ends_with(std::path::MAIN_SEPARATOR);
    if to_folder {
        if output.read_dir().is_ok_and(|mut d| d.next().is_some()) {
            bail!("refusing to write into {}: the folder is not empty", output.display());
        }
        if output.canonicalize().ok().zip(input.canonicalize().ok()).is_some_and(|(o, i)| o.starts_with(&i)) {
            bail!("refusing to write the checkpoint inside the input folder {}", input.display());
        }
    }
    let t0 = Instant::now();
    let (mut model, checkpoint) = load_any(input)?;
    if to_folder && checkpoint.is_none() {
        bail!(
            "{} is a folder, so ecospac would write a checkpoint, which needs a checkpoint folder as input; \
             name an .onnx file to write ONNX",
            output.display()
        );
    }
    let config_scope = match args.scope.as_str() {
        "all" => None,
        "auto" if !to_folder => None,
        "config" | "auto" => Some(checkpoint.as_ref().context("--scope config needs a checkpoint folder as input")?),
        other => bail!("unknown --scope `{other}` (auto, all, config)"),
    };
    eprintln!("imported {} in {:.2?}", input.display(), t0.elapsed());
    let mut pm = PassManager::from_names(passes)?;
    if verify_each {
        pm = pm.verify_each(true);
    }
    for d in dump_after {
        pm = pm.dump_after(d)?;
    }
    let timings = pm.run(&mut model)?;
    for t in &timings {
        eprintln!(
            "pass {:24} {:>10.2?} {}",
            t.name,
            t.elapsed,
            if t.changed == ecospac_passes::Changed::Yes { "changed" } else { "" }
        );
    }
    for (pass, text) in pm.dumps() {
        println!("; after {pass}\n{text}");
    }
    let pruned = if args.budget < 1.0 || args.plan.is_some() || to_folder {
        Some(prune(&mut model, args, config_scope)?)
    } else {
        None
    };
    let proof =
        verify(&model.graph).map_err(|e| anyhow::anyhow!("{e}")).context("the compiled graph does not verify")?;
    let t1 = Instant::now();
    if let (true, Some(ckpt), Some(p)) = (to_folder, &checkpoint, &pruned) {
        let written = {
            let _stage = progress::stage(&format!("writing {}", output.display()));
            export_checkpoint(&model, proof, ckpt, &p.coupling, &p.plan, output)?
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
        if let Some(path) = &args.report {
            write_atomically(path, serde_json::to_string_pretty(&p.report)?.as_bytes())?;
        }
        return Ok(());
    }
    let opts = ExportOptions { external_data: if external { ExternalData::Always } else { ExternalData::Auto } };
    let written = {
        let _stage = progress::stage(&format!("writing {}", output.display()));
        export_onnx(&model, proof, output, &opts)?
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
    if let (Some(path), Some(p)) = (&args.report, pruned) {
        write_atomically(path, serde_json::to_string_pretty(&p.report)?.as_bytes())?;
    }
    Ok(())
}
