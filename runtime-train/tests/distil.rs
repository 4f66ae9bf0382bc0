//! Recovery by distillation on the executor: a compact model learns to match
//! its original, and the ONNX written from the trained student computes what
//! the student computed.
#![cfg(feature = "torch")]

mod common;

use common::root;
use ecospac_backends::ort::OrtExecutor;
use ecospac_ir::exec::{split_batches, Array, Batch, Executor};
use ecospac_ir::Model;
use ecospac_passes::pipeline::{Compilation, Env, Pipeline, Recipe};
use ecospac_runtime_train::distil::{DistilConfig, DistilLoss, Distiller};
use ecospac_runtime_train::exec::TchExecutor;
use std::collections::HashMap;
use tch::{Device, Tensor};

/// `model` at half its prunable parameters, cut by weight magnitude.
fn compact(model: &Model) -> Model {
    let recipe = Recipe::parse_toml(
        r#"
        [[step]]
        pass = "infer-shapes"
        [[step]]
        pass = "prepare"
        [[step]]
        pass = "analyse-coupling"
        [[step]]
        pass = "score"
        criterion = "coupled"
        [[step]]
        pass = "allocate"
        allocation = "uniform"
        budget = 0.5
        [[step]]
        pass = "slice"
    "#,
    )
    .expect("recipe");
    let env = Env::default();
    let mut cx = Compilation::new(model.clone());
    Pipeline::new(&recipe, &env).expect("pipeline").run(&mut cx, &env).expect("compile");
    assert!(cx.model.graph.parameters() < model.graph.parameters());
    cx.model
}

/// The exporter-made BERT fixture.
fn bert() -> Model {
    ecospac_frontends::onnx::import_file(&root().join("tests/fixtures/bert-torchscript.onnx")).expect("import")
}

fn batches(model: &Model, n: usize, seed: u64) -> Vec<Batch> {
    let all = ecospac_passes::synthetic::synthetic_inputs(model, n, &HashMap::from([("*".into(), 16)]), seed)
        .expect("inputs");
    split_batches(&all, 4).expect("batches")
}

#[test]
fn distillation_recovers_fidelity_and_the_written_model_matches() {
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let teacher = bert();
    let student = compact(&teacher);
    let train = batches(&teacher, 32, 1);
    let held_out = batches(&teacher, 16, 2);
    let cfg = DistilConfig {
        steps: 60,
        warmup: 5,
        adamw: {
            let mut a = DistilConfig::default().adamw;
            a.lr = 3e-3;
            a
        },
        ..DistilConfig::default()
    };
    let mut d = Distiller::new(&student, &teacher, cfg).expect("distiller");
    assert_eq!(d.matched().collect::<Vec<_>>(), [("last_hidden_state", DistilLoss::Cosine)]);
    let before = d.fidelity(&held_out).expect("fidelity");
    let mut first = None;
    let mut last = 0.0;
    for s in 0..60 {
        last = d.step(&train[s % train.len()]).expect("step");
        first.get_or_insert(last);
    }
    let after = d.fidelity(&held_out).expect("fidelity");
    println!("held-out fidelity {before:.6} -> {after:.6}; loss {:.6} -> {last:.6}", first.unwrap_or_default());
    // A random-init model keeps most of its output through the residual; what
    // distillation must do is remove most of what was lost.
    assert!(1.0 - after < 0.5 * (1.0 - before), "distillation did not help: {before:.6} -> {after:.6}");
    assert!(last < first.unwrap_or_default(), "the loss did not fall");

    // The trained student, written back into its graph, runs the same in ONNX Runtime.
    let trained = d.into_model().expect("write back");
    let by_name = |m: &Model, name: &str| {
        m.graph.initializers.iter().map(|&v| m.graph.value(v)).find(|v| v.name == name)?.constant.clone()
    };
    let changed = student
        .graph
        .initializers
        .iter()
        .map(|&v| student.graph.value(v))
        .filter(|v| v.constant.as_ref().is_some_and(|t| t.dtype.is_float() && t.numel() > 1))
        .filter(|v| by_name(&trained, &v.name).is_some_and(|t| Some(&t) != v.constant.as_ref()))
        .count();
    assert!(changed > 0, "weights were not written back");
    let ort = OrtExecutor::new(Some(&common::ort_library()), 1).expect("ORT");
    let feeds = &held_out[0];
    let a = ort.load(&trained).expect("ORT loads").run(feeds).expect("ORT runs");
    let b = TchExecutor { device: Device::Cpu }.load(&trained).expect("tch").run(feeds).expect("tch runs");
    let (a, b) = (Array::of(&a[0]).expect("float"), Array::of(&b[0]).expect("float"));
    let diff = a.data.iter().zip(&b.data).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff < 1e-4, "the written model differs from the trained student by {diff:e}");
}

#[test]
fn a_student_without_shared_outputs_is_refused() {
    let teacher = bert();
    let mut student = teacher.clone();
    let out = student.graph.outputs[0];
    student.graph.value_mut(out).name = "renamed".into();
    let err = Distiller::new(&student, &teacher, DistilConfig::default()).err().expect("refused");
    assert!(err.to_string().contains("share no float output"), "{err}");
}

#[test]
fn layer_outputs_are_matched_by_name_and_width() {
    let teacher = bert();
    let student = compact(&teacher);
    let cfg = DistilConfig { match_layers: true, ..DistilConfig::default() };
    let mut d = Distiller::new(&student, &teacher, cfg).expect("distiller");
    let matched: Vec<(String, DistilLoss)> = d.matched().map(|(n, l)| (n.to_string(), l)).collect();
    // The output, then the embedding LayerNorm and each block's two but the last (the output itself).
    assert_eq!(matched[0].0, "last_hidden_state");
    assert!(matched.len() >= 4, "{matched:?}");
    assert!(matched[1..].iter().all(|(n, l)| n.contains("LayerNorm") && *l == DistilLoss::Cosine), "{matched:?}");
    let loss = d.step(&batches(&teacher, 4, 5)[0]).expect("step");
    assert!(loss.is_finite() && loss > 0.0);
}

#[test]
fn each_loss_is_zero_on_equal_outputs_and_grows_with_the_difference() {
    let t = Tensor::from_slice(&[1.0f32, 2.0, -1.0, 0.5, 3.0, -2.0]).reshape([2, 3]);
    let near = &t + Tensor::from_slice(&[0.1f32, -0.1, 0.0, 0.0, 0.2, 0.1]).reshape([2, 3]);
    let far = t.neg();
    for loss in [DistilLoss::Cosine, DistilLoss::Mse, DistilLoss::Kl { temperature: 2.0 }] {
        let at = |s: &Tensor| loss.of(s, &t).expect("loss").double_value(&[]);
        let (same, a, b) = (at(&t), at(&near), at(&far));
        assert!(same.abs() < 1e-6, "{loss:?}: {same} on equal outputs");
        assert!(0.0 < a && a < b, "{loss:?}: near {a}, far {b}");
    }
    // Cosine ignores scale, the others do not.
    assert!(DistilLoss::Cosine.of(&(&t * 3.0), &t).expect("loss").double_value(&[]).abs() < 1e-6);
    assert!(DistilLoss::Mse.of(&(&t * 3.0), &t).expect("loss").double_value(&[]) > 1.0);
}

/// Shrinking while distilling, from the teacher itself: before the first
/// shrink the student equals the teacher and does not drift (its gradients
/// are rounding noise, which AdamW would otherwise turn into full steps:
/// fidelity 0.99997 after three steps at lr 1e-3 when it did);
/// then it shrinks on the schedule to the target, the first plan chosen by
/// weight magnitude (no importance yet), and keeps learning.
#[test]
fn shrinking_while_distilling_from_the_teacher_itself() {
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let teacher = bert();
    let train = batches(&teacher, 32, 1);
    let held_out = batches(&teacher, 8, 2);
    let schedule = ecospac_runtime_train::sparsity::Schedule { target: 0.5, start: 4, end: 12, every: 4 };
    let mut cfg = DistilConfig {
        steps: 16,
        warmup: 2,
        schedule: Some(schedule),
        align: 1,
        match_layers: true,
        ..DistilConfig::default()
    };
    cfg.adamw.lr = 1e-3;
    let mut d = Distiller::new(&teacher, &teacher, cfg).expect("distiller");
    assert_eq!(d.density(), Some(1.0));
    for s in 0..3 {
        d.step(&train[s % train.len()]).expect("step");
    }
    let before_shrink = d.fidelity(&held_out).expect("fidelity");
    assert!(before_shrink > 1.0 - 1e-6, "the student drifted from its teacher: {before_shrink}");
    let mut losses = Vec::new();
    for s in 3..16 {
        losses.push(d.step(&train[s % train.len()]).expect("step"));
    }
    // The cubic schedule asks for all of it at step 4; the first cut is after step 8.
    assert!(losses[..5].iter().all(|&l| l == 0.0), "the student drifted before its first shrink: {losses:?}");
    assert!(losses[5..].iter().all(|&l| l > 1e-6), "nothing to learn after shrinking: {losses:?}");
    let density = d.density().expect("density");
    assert!((density - 0.5).abs() < 0.1, "density {density}");
    let after = d.fidelity(&held_out).expect("fidelity");
    assert!(after > 0.5 && after < 1.0, "fidelity {after}");
    let shrunk = d.into_model().expect("model");
    assert!(shrunk.graph.parameters() < teacher.graph.parameters());
}
