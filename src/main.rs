//! The `ecospac` command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ecospac_backends::{export_onnx, ExportOptions, ExternalData};
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
        /// Fraction of prunable parameters to keep. Only 1.0 (no pruning) is available yet.
        #[arg(long, default_value_t = 1.0)]
        budget: f64,
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
    /// List the registered passes.
    Passes,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect { model, json, text, groups: false } => inspect(&model, json, text),
        Command::Inspect { model, json, groups: true, .. } => inspect_groups(&model, json),
        Command::Compile { model, output, budget, passes, dump_after, external_data, verify_each } => {
            compile(&model, &output, budget, &passes, &dump_after, external_data, verify_each)
        }
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
    ecospac_frontends::import_file(path).with_context(|| format!("cannot import {}", path.display()))
}

fn shape_string(m: &Model, v: ecospac_ir::ValueId) -> String {
    m.graph.value(v).best_ty().map_or("?".into(), |t| ecospac_ir::text::ty_string(&m.graph, &t))
}

fn inspect(path: &Path, json: bool, text: bool) -> Result<()> {
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
            "group {i}: {} indices x {} copies, {} parameters per index",
            gr.size,
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

fn compile(
    input: &Path,
    output: &Path,
    budget: f64,
    passes: &[String],
    dump_after: &[String],
    external: bool,
    verify_each: bool,
) -> Result<()> {
    if !(budget > 0.0 && budget <= 1.0) {
        bail!("--budget must be in (0, 1], got {budget}");
    }
    if budget < 1.0 {
        bail!("pruning below --budget 1.0 is not implemented yet; this build only runs the identity pipeline");
    }
    let mut data_out = output.as_os_str().to_owned();
    data_out.push(".data");
    if same_file(input, output) || same_file(input, Path::new(&data_out)) {
        bail!("refusing to overwrite the input {}; choose another --output", input.display());
    }
    let t0 = Instant::now();
    let mut model = load(input)?;
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
    let proof =
        verify(&model.graph).map_err(|e| anyhow::anyhow!("{e}")).context("the compiled graph does not verify")?;
    let t1 = Instant::now();
    let opts = ExportOptions { external_data: if external { ExternalData::Always } else { ExternalData::Auto } };
    let report = export_onnx(&model, proof, output, &opts)?;
    eprintln!(
        "wrote {} ({} bytes{}) in {:.2?}",
        report.model_path.display(),
        report.model_bytes,
        report.data_path.as_ref().map_or(String::new(), |p| format!(
            ", data {} ({} bytes)",
            p.display(),
            report.data_bytes
        )),
        t1.elapsed()
    );
    Ok(())
}
