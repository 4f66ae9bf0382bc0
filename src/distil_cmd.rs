//! Recovery by distillation (feature `train`): `ecospac train --from
//! compact.onnx --teacher original.onnx --data corpus/ -o out/`, and `ecospac
//! compile ... --recover STEPS --data corpus/`. Both models run from their IR
//! graphs on libtorch; the compact one learns to match the original on the
//! outputs they share, on text tokenized with the model's tokenizer (or an
//! `.npz` of input batches), with a validation split watched as it goes. With
//! `--target < 1` the student also shrinks as it learns (EcoSpa with
//! distillation), from its own size (the original itself, say) to the target.
//! The trained model is checked in ONNX Runtime against the trained libtorch model.

use crate::recover::Lengths;
use crate::train_cmd::TrainArgs;
use anyhow::{bail, Context, Result};
use ecospac_frontends::data;
use ecospac_ir::exec::{split_batches, Array, Batch, Executor};
use ecospac_ir::Model;
use ecospac_passes::prune::Allocation;
use ecospac_runtime_train::distil::{DistilConfig, Distiller};
use ecospac_runtime_train::exec::TchExecutor;
use ecospac_runtime_train::optim::AdamWConfig;
use ecospac_runtime_train::sparsity::{Schedule, TrainCriterion};
use ecospac_runtime_train::tch::Device;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Validation samples held out of the distillation data.
const VALIDATION: usize = 64;

/// Training samples are grouped by length within runs of this many batches.
const LENGTH_WINDOW: usize = 64;

/// Columns of padding a length-grouped batch keeps past its longest text,
/// so that padding rows (outputs of a padded batch too) are still learnt.
const PADDING_KEPT: usize = 4;

/// What a distillation run is told.
pub struct Settings {
    /// Text (a file or folder) or an `.npz` of input arrays.
    pub data: PathBuf,
    /// The model's `tokenizer.json`, for text.
    pub tokenizer: Option<PathBuf>,
    /// An `.npz` to validate on instead of samples held out of the data.
    pub validation: Option<PathBuf>,
    /// Optimizer steps.
    pub steps: usize,
    /// Samples per step.
    pub batch: usize,
    /// Where the data has fewer training samples than `batch`, a batch is
    /// all of them (said) instead of an error.
    pub fit_batch: bool,
    /// Tokens per text sample.
    pub seq_len: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warmup steps.
    pub warmup: usize,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Gradient clipping norm (0: off).
    pub clip: f64,
    /// Data order and shuffling.
    pub seed: u64,
    /// Validate every this many steps (and after the last).
    pub eval_every: usize,
    /// Where both models run.
    pub device: Device,
    /// Train the embedding tables too.
    pub train_embeddings: bool,
    /// Match every block's output too.
    pub match_layers: bool,
    /// How long the rows of a batch are.
    pub lengths: Lengths,
    /// Where to write the step log (JSON lines).
    pub log: Option<PathBuf>,
    /// Every this many steps, the student as it stands is written to
    /// `step-N.onnx` in this folder (0: never).
    pub snapshots: (usize, Option<PathBuf>),
    /// Shrink while distilling, on this schedule (with the importance, the
    /// allocation and the alignment that follow).
    pub schedule: Option<Schedule>,
    /// Importance for shrinking.
    pub criterion: TrainCriterion,
    /// Spreading the removals over groups.
    pub allocation: Allocation,
    /// Kept counts are multiples of this where a group is twice as large.
    pub align: usize,
}

/// The model's inputs from the data: an `.npz` of arrays, or text; a
/// key/value cache the data lacks is empty, as for a prompt.
fn samples(s: &Settings, model: &Model, wanted: usize) -> Result<Vec<(String, ecospac_ir::Tensor)>> {
    if s.data.extension().is_some_and(|e| e == "npz") {
        return Ok(crate::compile::model_inputs(model, data::read_npz(&s.data)?));
    }
    let tok = s.tokenizer.as_ref().context(
        "distilling on text needs the model's tokenizer (--tokenizer tokenizer.json), or give an .npz of inputs",
    )?;
    let mut texts = data::read_paragraphs(&s.data)?;
    if texts.len() < 2 {
        bail!(
            "{} holds {} paragraph(s) of three words or more; distillation needs more",
            s.data.display(),
            texts.len()
        );
    }
    texts.shuffle(&mut rand::rngs::StdRng::seed_from_u64(s.seed));
    texts.truncate(wanted);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    crate::compile::tokenized(model, tok, &refs, s.seq_len)
}

/// Whether a 2-D graph input (token ids, a mask) of `model` has a fixed length.
fn fixed_length(model: &Model) -> bool {
    let g = &model.graph;
    g.inputs
        .iter()
        .filter_map(|&v| g.value(v).declared.as_ref()?.shape.as_ref())
        .any(|shape| shape.len() == 2 && shape[1].as_known().is_some())
}

/// Distils `student` from `teacher`; returns the trained student, its
/// validation cosine before and after, and one validation batch for checks.
pub fn run(student: &Model, teacher: &Model, s: &Settings) -> Result<(Model, f64, f64, Batch)> {
    ecospac_runtime_train::tch::manual_seed(s.seed as i64);
    let batch = s.batch.max(1);
    let wanted = s.steps.saturating_mul(batch).clamp(1, 50_000) + VALIDATION;
    let all = samples(s, student, wanted)?;
    let total = all.first().and_then(|(_, t)| t.dims.first()).copied().unwrap_or(0).max(0) as usize;
    if total < 2 {
        bail!("the distillation data has {total} sample(s)");
    }
    // The last samples validate (at least one, at most a fifth) unless an .npz is given.
    let held = if s.validation.is_some() { 0 } else { VALIDATION.min(total / 5).max(1) };
    let batch = if s.fit_batch && total.saturating_sub(held) < batch {
        let fitted = total.saturating_sub(held).max(1);
        eprintln!("batches of {fitted} (not {batch}): the data has {fitted} training samples");
        fitted
    } else {
        batch
    };
    let (train, validation): (Vec<(String, ecospac_ir::Tensor)>, Vec<Batch>) = match &s.validation {
        Some(npz) => (all, split_batches(&crate::compile::model_inputs(student, data::read_npz(npz)?), batch)?),
        None => {
            if total <= batch {
                bail!("{total} samples make one batch of {batch}; holding some out to validate needs more samples");
            }
            let rows: Vec<usize> = (0..total).collect();
            let (fit, val) = rows.split_at(total.saturating_sub(held));
            (data::select_rows(&all, fit)?, split_batches(&data::select_rows(&all, val)?, batch)?)
        }
    };
    // Grouped by length, texts of like length share a batch, padded to a
    // few columns past its longest: the same samples, and most columns of
    // padding no sample of a batch uses stay out.
    let fixed_model = [(student, "student"), (teacher, "teacher")].into_iter().find(|(m, _)| fixed_length(m));
    let has_mask = train.iter().any(|(n, t)| n == "attention_mask" && t.dims.len() == 2);
    let mut grouped = match (s.lengths, fixed_model, has_mask) {
        (Lengths::Fixed, _, _) => false,
        (Lengths::Grouped, Some((_, who)), _) => {
            bail!("grouping batches by length: the {who} takes token inputs of a fixed length, so batches cannot be shortened")
        }
        (Lengths::Grouped, None, false) => {
            bail!("grouping batches by length: the data has no [samples, length] attention_mask to tell the texts' lengths")
        }
        (Lengths::Grouped, None, true) => true,
        (Lengths::Auto, fixed, mask) => fixed.is_none() && mask,
    };
    let mut batches = if grouped {
        data::length_grouped_batches(&train, batch, LENGTH_WINDOW, PADDING_KEPT)?
    } else {
        split_batches(&train, batch)?
    };
    let Some(check) = validation.first().cloned() else { bail!("no validation samples") };
    if batches.is_empty() {
        bail!("no training batches");
    }
    let cfg = DistilConfig {
        steps: s.steps,
        adamw: AdamWConfig { lr: s.lr, weight_decay: s.weight_decay, beta2: 0.999, ..AdamWConfig::default() },
        warmup: s.warmup,
        clip: s.clip,
        loss: None,
        train_embeddings: s.train_embeddings,
        match_layers: s.match_layers,
        device: s.device,
        schedule: s.schedule.clone(),
        criterion: s.criterion,
        allocation: s.allocation,
        align: s.align,
    };
    let mut d = Distiller::new(student, teacher, cfg)?;
    // A graph can declare token inputs of any length and still hold one
    // (a traced export): `auto` tries the shortest batch and keeps fixed rows
    // where the models do not run at its length.
    if grouped && s.lengths == Lengths::Auto {
        let width = |b: &Batch| b.iter().find(|(n, _)| n == "attention_mask").and_then(|(_, t)| t.dims.get(1).copied());
        if let Some(shortest) = batches.iter().min_by_key(|b| width(b).unwrap_or(i64::MAX)) {
            if let Err(e) = d.fidelity(std::slice::from_ref(shortest)) {
                eprintln!(
                    "fixed rows, not grouped by length: the models do not run at {} tokens ({e})",
                    width(shortest).unwrap_or(0)
                );
                batches = split_batches(&train, batch)?;
                grouped = false;
            }
        }
    }
    // Token positions a sample, where the inputs are token ids.
    let ids: Vec<&ecospac_ir::Tensor> =
        batches.iter().filter_map(|b| b.iter().find(|(n, _)| n == "input_ids")).map(|(_, t)| t).collect();
    let length = if ids.len() == batches.len() && ids.iter().all(|t| t.dims.len() == 2) {
        let (cells, rows) = ids.iter().fold((0i64, 0i64), |(c, r), t| {
            (c.saturating_add(t.dims[0].saturating_mul(t.dims[1])), r.saturating_add(t.dims[0]))
        });
        format!(" of {:.1} positions on average", cells as f64 / rows.max(1) as f64)
    } else {
        String::new()
    };
    eprintln!(
        "distillation data: {} training batches of {batch}{length}{}, {} validation samples",
        batches.len(),
        if grouped { " (grouped by length)" } else { "" },
        validation.iter().map(ecospac_ir::exec::batch_rows).sum::<usize>(),
    );
    let matched: Vec<String> = d.matched().map(|(n, l)| format!("{n} ({l:?})")).collect();
    let matched = if matched.len() > 3 {
        vec![format!("{} and {} layer outputs", matched[0], matched.len() - 1)]
    } else {
        matched
    };
    eprintln!(
        "student: {} parameters ({} trained); teacher: {}; matching {}",
        student.graph.parameters(),
        d.trainable_parameters(),
        teacher.graph.parameters(),
        matched.join(", ")
    );
    let mut log = Vec::new();
    let start = Instant::now();
    let before = d.fidelity(&validation)?;
    eprintln!("step 0/{}: validation cosine {before:.4}", s.steps);
    let mut order: Vec<usize> = (0..batches.len()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed);
    let mut last = before;
    for step in 0..s.steps {
        if step % order.len() == 0 {
            order.shuffle(&mut rng);
        }
        let loss = d.step(&batches[order[step % order.len()]])?;
        let done = step + 1;
        let eval = (s.eval_every > 0 && done % s.eval_every == 0) || done == s.steps;
        let fidelity = if eval { Some(d.fidelity(&validation)?) } else { None };
        let secs = start.elapsed().as_secs_f64();
        let (params, density) = (d.trainable_parameters(), d.density());
        writeln!(
            log,
            "{}",
            serde_json::json!({"step": done, "loss": loss, "validation_cosine": fidelity, "seconds": secs,
                "trained_parameters": params, "density": density})
        )?;
        if let (every @ 1.., Some(dir)) = (s.snapshots.0, &s.snapshots.1) {
            if done % every == 0 && done < s.steps {
                let m = d.model()?;
                let proof =
                    ecospac_ir::verify(&m.graph).map_err(|e| anyhow::anyhow!("the student at step {done}: {e}"))?;
                let path = dir.join(format!("step-{done}.onnx"));
                ecospac_backends::export_onnx(&m, proof, &path, &ecospac_backends::ExportOptions::default())?;
            }
        }
        if let Some(f) = fidelity {
            let shrink = density.map_or(String::new(), |x| format!(", density {x:.3}, {params} trained parameters"));
            eprintln!("step {done}/{}: loss {loss:.5}, validation cosine {f:.4}{shrink} ({secs:.0} s)", s.steps);
            last = f;
        }
    }
    if let Some(path) = &s.log {
        crate::write_atomically(path, &log)?;
    }
    Ok((d.into_model()?, before, last, check))
}

/// The largest difference between the trained model run by `engine` (ONNX
/// Runtime) and on libtorch, over their float outputs on `feeds` (an error
/// over 1e-3); checked before anything is written.
pub fn check_in(engine: &dyn Executor, trained: &Model, feeds: &Batch, device: Device) -> Result<f32> {
    let want = TchExecutor { device }.load(trained)?.run(feeds)?;
    let got = engine.load(trained)?.run(feeds)?;
    let mut diff = 0f32;
    for (w, g) in want.iter().zip(&got) {
        if let (Some(w), Some(g)) = (Array::of(w), Array::of(g)) {
            diff = w.data.iter().zip(&g.data).fold(diff, |m, (x, y)| m.max((x - y).abs()));
        }
    }
    if diff > 1e-3 {
        bail!("the written ONNX differs from the trained model by {diff:.3e}");
    }
    Ok(diff)
}

/// Runs the distillation that `train --teacher` asks for.
pub fn distil(a: &TrainArgs) -> Result<()> {
    if a.config.is_some() || a.resume.is_some() {
        bail!("--teacher distils the --from model; --config and --resume do not apply");
    }
    let from = a.from.as_ref().context("--teacher needs --from, the model to repair")?;
    let teacher_path = a.teacher.as_ref().context("--teacher")?;
    let (student, _, student_files) = crate::load_any(from)?;
    let (teacher, _, teacher_files) = crate::load_any(teacher_path)?;
    let model_path = a.output.join("model.onnx");
    let log = a.output.join("log.jsonl");
    let outputs = vec![("--output", model_path.clone()), ("--output", log.clone())];
    crate::paths::check_outputs(&student_files, &outputs)?;
    crate::paths::check_outputs(&teacher_files, &outputs)?;
    let device = crate::train_cmd::device(&a.device)?;
    std::fs::create_dir_all(&a.output).with_context(|| format!("cannot create {}", a.output.display()))?;
    let settings = Settings {
        data: a.data.clone(),
        tokenizer: a.tokenizer.clone(),
        validation: a.validation.clone(),
        steps: a.steps,
        batch: a.batch,
        seq_len: a.seq_len,
        lr: a.lr,
        warmup: a.warmup,
        weight_decay: a.weight_decay,
        clip: a.clip,
        seed: a.seed,
        eval_every: a.eval_every,
        device,
        train_embeddings: a.train_embeddings,
        match_layers: a.match_layers,
        fit_batch: false,
        lengths: if a.group_by_length { Lengths::Grouped } else { Lengths::Fixed },
        log: Some(log),
        snapshots: (a.checkpoint_every, Some(a.output.clone())),
        schedule: (a.target < 1.0).then(|| crate::train_cmd::schedule(a)),
        criterion: a.criterion,
        allocation: a.allocation,
        align: a.align.max(1),
    };
    let (trained, before, after, check) = run(&student, &teacher, &settings)?;
    let ort = ecospac_backends::ort::OrtExecutor::new(a.ort_lib.as_deref(), 0)?;
    let diff = check_in(&ort, &trained, &check, device)?;
    let proof = ecospac_ir::verify(&trained.graph).map_err(|e| anyhow::anyhow!("the trained model: {e}"))?;
    ecospac_backends::export_onnx(&trained, proof, &model_path, &ecospac_backends::ExportOptions::default())?;
    let (was, now) = (student.graph.parameters(), trained.graph.parameters());
    println!(
        "distilled {} steps: validation cosine {before:.4} -> {after:.4}, {was} -> {now} parameters; wrote {}; \
         ONNX Runtime vs the trained model: max |Δ| {diff:.2e}",
        a.steps,
        model_path.display()
    );
    Ok(())
}
