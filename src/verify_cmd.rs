//! `ecospac verify`: runs two models in ONNX Runtime on the same inputs.

use anyhow::{bail, Context, Result};
use ecospac_ir::{DType, Model};
use ort::session::Session;
use ort::value::{DynValue, Tensor as OrtTensor};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The ONNX Runtime library: `--ort-lib`, `$ORT_DYLIB_PATH`, or the one `scripts/setup.sh` installs.
pub fn ort_library(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(p));
    }
    let mut roots = vec![PathBuf::from(".")];
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    for root in roots {
        let lib = root.join(".venv/lib");
        if let Ok(dir) = std::fs::read_dir(&lib) {
            for e in dir.flatten() {
                let p = e.path().join("site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1");
                if p.exists() {
                    return Ok(p);
                }
            }
        }
    }
    bail!("ONNX Runtime not found: pass --ort-lib PATH or set ORT_DYLIB_PATH (scripts/setup.sh installs it in .venv)")
}

enum Input {
    I64(Vec<i64>, Vec<i64>),
    F32(Vec<i64>, Vec<f32>),
}

/// Deterministic inputs from the declared input types; symbolic dims from `bind` (default 1 for the first axis, 16 for others).
fn make_inputs(model: &Model, bind: &HashMap<String, i64>) -> Result<Vec<(String, Input)>> {
    let g = &model.graph;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    g.inputs
        .iter()
        .map(|&v| {
            let value = g.value(v);
            let ty = value.declared.clone().with_context(|| format!("input `{}` declares no type", value.name))?;
            let shape = ty.shape.with_context(|| format!("input `{}` declares no shape", value.name))?;
            let dims: Vec<i64> = shape
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    d.as_known().unwrap_or_else(|| {
                        let name = d.syms().first().map(|s| g.symbol_name(*s).to_string()).unwrap_or_default();
                        *bind.get(&name).or_else(|| bind.get("*")).unwrap_or(&if i == 0 { 1 } else { 16 })
                    })
                })
                .collect();
            let n: i64 = dims.iter().product();
            let input = match ty.dtype {
                DType::I64 if value.name.contains("mask") => Input::I64(dims, vec![1; n as usize]),
                DType::I64 if value.name.contains("type") => Input::I64(dims, vec![0; n as usize]),
                DType::I64 => Input::I64(dims, (0..n).map(|_| (next() % 100) as i64).collect()),
                DType::F32 => Input::F32(dims, (0..n).map(|_| (next() % 2000) as f32 / 1000.0 - 1.0).collect()),
                other => bail!("input `{}`: no generator for {other} inputs yet", value.name),
            };
            Ok((value.name.clone(), input))
        })
        .collect()
}

/// First output of a run, and the median latency over `runs`.
fn run(
    env: &ort::environment::Environment,
    path: &Path,
    inputs: &[(String, Input)],
    runs: usize,
) -> Result<(Vec<f32>, f64)> {
    let mut s = Session::builder(env)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .commit_from_file(path)
        .map_err(|e| anyhow::anyhow!("ONNX Runtime cannot load {}: {e}", path.display()))?;
    let name = s.outputs().first().map(|o| o.name().to_string()).context("the model has no output")?;
    let mut times = Vec::new();
    let mut out = Vec::new();
    for _ in 0..runs.max(1) {
        let values: Vec<(Cow<'_, str>, ort::session::SessionInputValue<'_>)> = inputs
            .iter()
            .map(|(n, i)| {
                let v: DynValue = match i {
                    Input::I64(d, x) => OrtTensor::from_array((d.clone(), x.clone())).map(|t| t.into_dyn()),
                    Input::F32(d, x) => OrtTensor::from_array((d.clone(), x.clone())).map(|t| t.into_dyn()),
                }
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok((Cow::Owned(n.clone()), v.into()))
            })
            .collect::<Result<_>>()?;
        let t = Instant::now();
        let outputs = s.run(values).map_err(|e| anyhow::anyhow!("ONNX Runtime run of {}: {e}", path.display()))?;
        times.push(t.elapsed().as_secs_f64());
        let (_, data) = outputs[name.as_str()].try_extract_tensor::<f32>().map_err(|e| anyhow::anyhow!("{e}"))?;
        out = data.to_vec();
    }
    times.sort_by(f64::total_cmp);
    Ok((out, times[times.len() / 2]))
}

/// Max-abs difference, max difference relative to the reference's largest magnitude, mean row cosine.
fn compare(a: &[f32], b: &[f32], row: usize) -> (f64, f64, f64) {
    let max_abs = a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max);
    let scale = a.iter().map(|x| x.abs() as f64).fold(1e-12, f64::max);
    let row = row.max(1);
    let (mut sum, mut n) = (0.0, 0);
    for (ra, rb) in a.chunks(row).zip(b.chunks(row)) {
        let dot: f64 = ra.iter().zip(rb).map(|(x, y)| *x as f64 * *y as f64).sum();
        let na: f64 = ra.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = rb.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        sum += dot / (na * nb).max(1e-30);
        n += 1;
    }
    (max_abs, max_abs / scale, sum / n.max(1) as f64)
}

/// Loads ONNX Runtime (see [`ort_library`]).
pub fn ort_env(explicit: Option<&Path>) -> Result<ort::environment::Environment> {
    ort::init_from(ort_library(explicit)?)
        .map_err(|e| anyhow::anyhow!("cannot load ONNX Runtime: {e}"))?
        .with_name("ecospac")
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Settings of `ecospac verify`.
pub struct VerifyArgs {
    /// The model before compiling.
    pub original: PathBuf,
    /// The compiled model.
    pub compact: PathBuf,
    /// Compare with the masked original of this plan.
    pub masked_plan: Option<PathBuf>,
    /// Relative tolerance of the exactness check.
    pub tolerance: f64,
    /// Symbolic dim bindings for generated inputs.
    pub bind: HashMap<String, i64>,
    /// Timed runs.
    pub runs: usize,
    /// ONNX Runtime library.
    pub ort_lib: Option<PathBuf>,
}

/// Runs the check; an exactness failure is an error (exit 1).
pub fn verify(args: &VerifyArgs, prepare: impl Fn(&mut Model) -> Result<()>) -> Result<()> {
    let env = ort_env(args.ort_lib.as_deref())?;
    let dir = tempfile::tempdir()?;
    // Checkpoint folders run as the ONNX of their built graph.
    let as_onnx = |path: &PathBuf, name: &str| -> Result<(Model, PathBuf)> {
        if !ecospac_frontends::is_checkpoint(path) {
            let m =
                ecospac_frontends::import_file(path).with_context(|| format!("cannot import {}", path.display()))?;
            return Ok((m, path.clone()));
        }
        let mut m = ecospac_frontends::import_checkpoint(path)
            .with_context(|| format!("cannot import the checkpoint {}", path.display()))?
            .model;
        ecospac_passes::PassManager::from_names(&["infer-shapes"])?.run(&mut m)?;
        let proof = ecospac_ir::verify(&m.graph).map_err(|e| anyhow::anyhow!("{e}"))?;
        let p = dir.path().join(name);
        ecospac_backends::export_onnx(&m, proof, &p, &Default::default())?;
        Ok((m, p))
    };
    let (mut original, original_path) = as_onnx(&args.original, "original.onnx")?;
    let (_, compact_path) = as_onnx(&args.compact, "compact.onnx")?;
    let inputs = make_inputs(&original, &args.bind)?;
    let row = original
        .graph
        .outputs
        .first()
        .and_then(|&v| original.graph.value(v).declared.clone())
        .and_then(|t| t.shape?.last()?.as_known())
        .unwrap_or(1) as usize;
    let reference_path = match &args.masked_plan {
        Some(plan_path) => {
            let text =
                std::fs::read_to_string(plan_path).with_context(|| format!("cannot read {}", plan_path.display()))?;
            let plan: ecospac_passes::prune::SlicePlan = serde_json::from_str(&text).context("not a slice plan")?;
            prepare(&mut original)?;
            let coupling = ecospac_passes::coupling::analyze(&original);
            ecospac_passes::prune::mask_plan(&mut original, &coupling, &plan)?;
            let proof = ecospac_ir::verify(&original.graph).map_err(|e| anyhow::anyhow!("{e}"))?;
            let p = dir.path().join("masked.onnx");
            ecospac_backends::export_onnx(&original, proof, &p, &Default::default())?;
            p
        }
        None => original_path,
    };
    let (a, ta) = run(&env, &reference_path, &inputs, args.runs)?;
    let (b, tb) = run(&env, &compact_path, &inputs, args.runs)?;
    if a.len() != b.len() {
        bail!("the outputs differ in size: {} vs {} elements", a.len(), b.len());
    }
    let (max_abs, rel, cos) = compare(&a, &b, row);
    let what = if args.masked_plan.is_some() { "masked original" } else { "original" };
    println!("{what} vs compact: max |Δ| {max_abs:.3e} ({rel:.3e} of the largest output), mean row cosine {cos:.6}");
    println!(
        "latency (median of {}): {what} {:.2} ms, compact {:.2} ms, speedup {:.2}",
        args.runs,
        ta * 1e3,
        tb * 1e3,
        ta / tb
    );
    if args.masked_plan.is_some() && rel > args.tolerance {
        bail!(
            "NOT EXACT: the compact model differs from the masked original by {rel:.3e} (tolerance {:.1e})",
            args.tolerance
        );
    }
    Ok(())
}
