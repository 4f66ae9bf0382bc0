//! `ecospac train --from compact.onnx --teacher original.onnx --data corpus/ -o out/`
//! (feature `train`): recovery by distillation. Both models run from their
//! IR graphs on libtorch; the compact one learns to match the original on the
//! outputs they share, on text tokenized with the model's tokenizer (or an
//! `.npz` of input batches), with a validation split watched as it goes. The
//! trained model is written as `out/model.onnx` and checked in ONNX Runtime
//! against the trained libtorch model.

use crate::train_cmd::TrainArgs;
use anyhow::{bail, Context, Result};
use ecospac_frontends::data;
use ecospac_ir::exec::{split_batches, Array, Batch, Executor, Session};
use ecospac_runtime_train::distil::{DistilConfig, Distiller};
use ecospac_runtime_train::exec::TchExecutor;
use ecospac_runtime_train::optim::AdamWConfig;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::io::Write;
use std::time::Instant;

/// Validation samples held out of the distillation data.
const VALIDATION: usize = 64;

/// Paragraphs (blank-line separated, lines joined) of at least three words.
fn paragraphs(files: &[std::path::PathBuf]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        for p in text.split("\n\n") {
            let joined = p.split_whitespace().collect::<Vec<_>>().join(" ");
            if joined.split(' ').count() >= 3 {
                out.push(joined);
            }
        }
    }
    Ok(out)
}

/// The model inputs of `names`, from `--data`: an `.npz` of arrays, or text.
fn samples(a: &TrainArgs, names: &[String], wanted: usize) -> Result<Vec<(String, ecospac_ir::Tensor)>> {
    if a.data.extension().is_some_and(|e| e == "npz") {
        return Ok(data::read_npz(&a.data)?);
    }
    let tok = a.tokenizer.as_ref().context(
        "distilling on text needs the model's tokenizer (--tokenizer tokenizer.json), or give --data FILE.npz",
    )?;
    let files = ecospac_runtime_train::data::text_files(&a.data)?;
    let mut texts = paragraphs(&files)?;
    if texts.len() < 2 {
        bail!(
            "{} holds {} paragraph(s) of three words or more; distillation needs more",
            a.data.display(),
            texts.len()
        );
    }
    texts.shuffle(&mut rand::rngs::StdRng::seed_from_u64(a.seed));
    texts.truncate(wanted);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    Ok(data::tokenize(tok, &refs, a.seq_len, names)?)
}

/// Runs the distillation that `train --teacher` asks for.
pub fn distil(a: &TrainArgs) -> Result<()> {
    if a.config.is_some() || a.resume.is_some() {
        bail!("--teacher distils the --from model; --config and --resume do not apply");
    }
    if a.target < 1.0 {
        bail!("shrinking while distilling (--target < 1 with --teacher) is not built yet; compile first, then distil");
    }
    let from = a.from.as_ref().context("--teacher needs --from, the model to repair")?;
    let teacher_path = a.teacher.as_ref().context("--teacher")?;
    let (student, _, student_files) = crate::load_any(from)?;
    let (teacher, _, teacher_files) = crate::load_any(teacher_path)?;
    let model_path = a.output.join("model.onnx");
    let outputs = vec![("--output", model_path.clone()), ("--output", a.output.join("log.jsonl"))];
    crate::paths::check_outputs(&student_files, &outputs)?;
    crate::paths::check_outputs(&teacher_files, &outputs)?;
    let device = crate::train_cmd::device(&a.device)?;
    ecospac_runtime_train::tch::manual_seed(a.seed as i64);

    let names: Vec<String> = student.graph.inputs.iter().map(|&v| student.graph.value(v).name.clone()).collect();
    let batch = a.batch.max(1);
    let wanted = a.steps.saturating_mul(batch).clamp(1, 50_000) + VALIDATION;
    let all = samples(a, &names, wanted)?;
    let total = all.first().and_then(|(_, t)| t.dims.first()).copied().unwrap_or(0).max(0) as usize;
    if total < 2 {
        bail!("the distillation data has {total} sample(s)");
    }
    let mut batches = split_batches(&all, batch)?;
    let validation: Vec<Batch> = match &a.validation {
        Some(npz) => {
            let arrays = data::read_npz(npz)?;
            let arrays = arrays.into_iter().filter(|(n, _)| names.contains(n)).collect::<Vec<_>>();
            split_batches(&arrays, batch)?
        }
        None => {
            // The last samples validate (whole batches, so at least `held` of them).
            let held = VALIDATION.min(total / 5).max(1);
            let val_batches = held.div_ceil(batch).min(batches.len() - 1).max(1);
            batches.split_off(batches.len() - val_batches)
        }
    };
    if validation.is_empty() {
        bail!("no validation samples");
    }
    eprintln!(
        "data: {} training batches of {batch} and {} validation samples ({} tokens each)",
        batches.len(),
        validation.iter().map(ecospac_ir::exec::batch_rows).sum::<usize>(),
        a.seq_len
    );

    let cfg = DistilConfig {
        steps: a.steps,
        adamw: AdamWConfig { lr: a.lr, weight_decay: a.weight_decay, beta2: 0.999, ..AdamWConfig::default() },
        warmup: a.warmup,
        clip: a.clip,
        loss: None,
        train_embeddings: a.train_embeddings,
        device,
    };
    let mut d = Distiller::new(&student, &teacher, cfg)?;
    let matched: Vec<String> = d.matched().map(|(n, l)| format!("{n} ({l:?})")).collect();
    eprintln!(
        "student: {} parameters ({} trained); teacher: {}; matching {}",
        student.graph.parameters(),
        d.trainable_parameters(),
        teacher.graph.parameters(),
        matched.join(", ")
    );
    std::fs::create_dir_all(&a.output).with_context(|| format!("cannot create {}", a.output.display()))?;
    let mut log = Vec::new();
    let start = Instant::now();
    let before = d.fidelity(&validation)?;
    eprintln!("step 0/{}: validation cosine {before:.4}", a.steps);
    let mut order: Vec<usize> = (0..batches.len()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let mut last = before;
    for step in 0..a.steps {
        if step % order.len() == 0 {
            order.shuffle(&mut rng);
        }
        let loss = d.step(&batches[order[step % order.len()]])?;
        let done = step + 1;
        let eval = (a.eval_every > 0 && done % a.eval_every == 0) || done == a.steps;
        let fidelity = if eval { Some(d.fidelity(&validation)?) } else { None };
        let secs = start.elapsed().as_secs_f64();
        writeln!(
            log,
            "{}",
            serde_json::json!({"step": done, "loss": loss, "validation_cosine": fidelity, "seconds": secs})
        )?;
        if let Some(f) = fidelity {
            eprintln!("step {done}/{}: loss {loss:.5}, validation cosine {f:.4} ({secs:.0} s)", a.steps);
            last = f;
        }
    }
    crate::write_atomically(&a.output.join("log.jsonl"), &log)?;

    let trained = d.into_model(&student)?;
    let proof = ecospac_ir::verify(&trained.graph).map_err(|e| anyhow::anyhow!("the trained model: {e}"))?;
    ecospac_backends::export_onnx(&trained, proof, &model_path, &ecospac_backends::ExportOptions::default())?;
    // The written file in ONNX Runtime against the trained model on libtorch.
    let ort = ecospac_backends::ort::OrtExecutor::new(a.ort_lib.as_deref(), 0)?;
    let feeds = &validation[0];
    let want = TchExecutor { device }.load(&trained)?.run(feeds)?;
    let got = ort.open(&model_path)?.run(feeds)?;
    let mut diff = 0f32;
    for (w, g) in want.iter().zip(&got) {
        if let (Some(w), Some(g)) = (Array::of(w), Array::of(g)) {
            diff = w.data.iter().zip(&g.data).fold(diff, |m, (x, y)| m.max((x - y).abs()));
        }
    }
    println!(
        "distilled {} steps: validation cosine {before:.4} -> {last:.4}; wrote {}; ONNX Runtime vs the trained model: max |Δ| {diff:.2e}",
        a.steps,
        model_path.display()
    );
    if diff > 1e-3 {
        bail!("the written ONNX differs from the trained model by {diff:.3e}");
    }
    Ok(())
}
