//! `ecospac verify`: runs two models in ONNX Runtime on the same inputs.

use anyhow::{bail, Context, Result};
use ecospac_backends::ort::{OrtExecutor, OrtSession};
use ecospac_ir::exec::{Array, Batch, Session};
use ecospac_ir::Model;
use ecospac_passes::prune::SlicePlan;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Settings of `ecospac verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The model before compiling (ONNX or checkpoint folder).
    original: PathBuf,
    /// The compiled model.
    compact: PathBuf,
    /// Check exactness against the original with this plan's removed slices
    /// zeroed and its refit weights substituted.
    #[arg(long, value_name = "PLAN")]
    masked: Option<PathBuf>,
    /// Largest difference allowed with --masked, relative to the largest output.
    #[arg(long, default_value_t = 1e-4)]
    tolerance: f64,
    /// Real inputs: an .npz with one array per model input.
    #[arg(long, conflicts_with = "text")]
    inputs: Option<PathBuf>,
    /// Real inputs from text, one per line, with the model's tokenizer.
    #[arg(long)]
    text: Option<PathBuf>,
    /// The tokenizer.json for --text (default: the checkpoint's, or one beside the original).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Tokens per text for --text.
    #[arg(long, default_value_t = 64)]
    length: usize,
    /// Symbolic dims of generated inputs, e.g. `batch=2,seq=64` (`*=N` for the rest; default 1 and 16).
    #[arg(long, value_delimiter = ',')]
    bind: Vec<String>,
    /// Timed runs per model.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// ONNX Runtime threads (0: its default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The ONNX Runtime shared library (else $ORT_DYLIB_PATH, else .venv).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
}

/// First output of a run, and the median latency over `runs`.
fn run(session: &mut OrtSession, inputs: &Batch, runs: usize) -> Result<(Array, f64)> {
    let mut times = Vec::new();
    let mut out = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let mut o = session.run(inputs)?;
        times.push(t.elapsed().as_secs_f64());
        if o.is_empty() {
            bail!("the model has no output");
        }
        out = Some(o.swap_remove(0));
    }
    times.sort_by(f64::total_cmp);
    let out = out.context("no run")?;
    let array = Array::of(&out).with_context(|| format!("the first output is {}, not a float tensor", out.dtype))?;
    Ok((array, times[times.len() / 2]))
}

/// Mean cosine of the rows of the last axis. Rows that are zero in both count
/// as equal; `keep` selects rows (real tokens).
fn mean_cosine(a: &Array, b: &Array, keep: Option<&[bool]>) -> f64 {
    let w = a.last_dim();
    let (mut sum, mut n) = (0.0, 0usize);
    for (i, (ra, rb)) in a.data.chunks(w).zip(b.data.chunks(w)).enumerate() {
        if keep.is_some_and(|k| !k.get(i).copied().unwrap_or(true)) {
            continue;
        }
        let dot: f64 = ra.iter().zip(rb).map(|(x, y)| *x as f64 * *y as f64).sum();
        let na: f64 = ra.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = rb.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        sum += match (na > 0.0, nb > 0.0) {
            (false, false) => 1.0,
            (true, true) => dot / (na * nb),
            _ => 0.0,
        };
        n += 1;
    }
    sum / n.max(1) as f64
}

/// Checkpoint folders run as the ONNX of their built graph.
fn as_onnx(path: &Path, dir: &Path, name: &str) -> Result<(Model, PathBuf)> {
    if !ecospac_frontends::is_checkpoint(path) {
        let m = ecospac_frontends::import_file(path).with_context(|| format!("cannot import {}", path.display()))?;
        return Ok((m, path.to_path_buf()));
    }
    let mut m = crate::import_checkpoint(path)?.model;
    ecospac_passes::infer_shapes(&mut m).map_err(|e| anyhow::anyhow!("{e}"))?;
    let proof = ecospac_ir::verify(&m.graph).map_err(|e| anyhow::anyhow!("{e}"))?;
    let p = dir.join(name);
    ecospac_backends::export_onnx(&m, proof, &p, &Default::default())?;
    Ok((m, p))
}

fn inputs_for(args: &VerifyArgs, original: &Model) -> Result<Batch> {
    use ecospac_frontends::data;
    if let Some(npz) = &args.inputs {
        return Ok(data::read_npz(npz)?);
    }
    if let Some(text) = &args.text {
        let beside = |p: &Path| if p.is_dir() { p.join("tokenizer.json") } else { p.with_file_name("tokenizer.json") };
        let tok = args.tokenizer.clone().unwrap_or_else(|| beside(&args.original));
        if !tok.is_file() {
            bail!("--text needs the model's tokenizer: --tokenizer tokenizer.json");
        }
        let lines = data::read_lines(text)?;
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        return crate::compile::tokenized(original, &tok, &refs, args.length);
    }
    let mut m = original.clone();
    ecospac_passes::infer_shapes(&mut m).map_err(|e| anyhow::anyhow!("{e}"))?;
    let bind = crate::parse_bindings(&args.bind)?;
    Ok(ecospac_passes::synthetic::synthetic_inputs(&m, 1, &bind, 0)?)
}

/// Runs the check; an exactness failure is an error (exit 1).
pub fn verify(args: &VerifyArgs) -> Result<()> {
    let exec = OrtExecutor::new(args.ort_lib.as_deref(), args.threads)?;
    let dir = tempfile::tempdir()?;
    let (mut original, original_path) = as_onnx(&args.original, dir.path(), "original.onnx")?;
    let (_, compact_path) = as_onnx(&args.compact, dir.path(), "compact.onnx")?;
    let inputs = inputs_for(args, &original)?;
    let reference_path = match &args.masked {
        Some(plan_path) => {
            let plan = SlicePlan::load(plan_path)?;
            ecospac_passes::prepare(&mut original)?;
            let proof = ecospac_ir::verify(&original.graph).map_err(|e| anyhow::anyhow!("{e}"))?;
            let coupling = ecospac_passes::coupling::analyze(proof);
            ecospac_passes::prune::mask_plan(&mut original, &coupling, &plan)?;
            let proof = ecospac_ir::verify(&original.graph).map_err(|e| anyhow::anyhow!("{e}"))?;
            let p = dir.path().join("masked.onnx");
            ecospac_backends::export_onnx(&original, proof, &p, &Default::default())?;
            p
        }
        None => original_path,
    };
    let (a, ta) = run(&mut exec.open(&reference_path)?, &inputs, args.runs)?;
    let (b, tb) = run(&mut exec.open(&compact_path)?, &inputs, args.runs)?;
    if a.dims != b.dims {
        bail!("the outputs differ in shape: {:?} vs {:?}", a.dims, b.dims);
    }
    let max_abs = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max);
    let scale = a.data.iter().map(|x| x.abs() as f64).fold(1e-12, f64::max);
    let rel = max_abs / scale;
    let what = if args.masked.is_some() { "masked original" } else { "original" };
    println!(
        "{what} vs compact: max |Δ| {max_abs:.3e} ({rel:.3e} of the largest output), mean row cosine {:.6}",
        mean_cosine(&a, &b, None)
    );
    let mask = inputs.iter().find(|(n, _)| n == "attention_mask").and_then(|(_, t)| t.to_i64s());
    if let Some(mask) = mask.filter(|m| m.len() == a.rows()) {
        let keep: Vec<bool> = mask.iter().map(|&x| x != 0).collect();
        println!(
            "mean row cosine over real tokens ({} of {} rows): {:.6}",
            keep.iter().filter(|&&k| k).count(),
            keep.len(),
            mean_cosine(&a, &b, Some(&keep))
        );
    }
    println!(
        "latency (median of {}): {what} {:.2} ms, compact {:.2} ms, speedup {:.2}",
        args.runs,
        ta * 1e3,
        tb * 1e3,
        ta / tb
    );
    if args.masked.is_some() && rel > args.tolerance {
        bail!(
            "NOT EXACT: the compact model differs from the masked original by {rel:.3e} (tolerance {:.1e})",
            args.tolerance
        );
    }
    Ok(())
}
