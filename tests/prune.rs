//! The exactness invariant: for any plan, the sliced model equals the masked
//! original (removed slices zeroed) in ONNX Runtime, on every fixture.

mod common;

use common::*;
use ecospac_backends::ExportOptions;
use ecospac_passes::coupling::analyze;
use ecospac_passes::prune::{apply_plan, mask_plan, plan, Allocation, Criterion, PlanOptions, SlicePlan};
use ecospac_passes::PassManager;

fn prepared(name: &str) -> ecospac_ir::Model {
    let mut m = ecospac_frontends::import_file(&fixture(name)).expect("import");
    PassManager::from_names(&["infer-shapes", "fold-shape-constants", "hoist-constants", "eliminate-dead-nodes"])
        .expect("passes")
        .verify_each(true)
        .run(&mut m)
        .expect("prepare");
    m
}

fn write(model: &ecospac_ir::Model, path: &std::path::Path) {
    let proof = ecospac_ir::verify(&model.graph).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ecospac_backends::export_onnx(model, proof, path, &ExportOptions::default()).expect("export");
}

fn max_rel_diff(a: &[(String, Vec<i64>, Vec<f32>)], b: &[(String, Vec<i64>, Vec<f32>)]) -> f64 {
    let mut worst = 0.0f64;
    for ((_, sa, da), (_, sb, db)) in a.iter().zip(b) {
        assert_eq!(sa, sb, "output shapes");
        let scale = da.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64)).max(1e-6);
        for (x, y) in da.iter().zip(db) {
            worst = worst.max((*x as f64 - *y as f64).abs() / scale);
        }
    }
    worst
}

/// Slices by `plan` and checks against the masked original; returns (kept params ratio, diff).
fn check(
    name: &str,
    model: &ecospac_ir::Model,
    plan_of: &dyn Fn(&ecospac_ir::Model, &ecospac_passes::coupling::Coupling) -> SlicePlan,
) -> f64 {
    let mut coupling = analyze(model);
    assert!(!coupling.groups.is_empty(), "{name}: no coupling groups");
    let p = plan_of(model, &coupling);
    let mut masked = model.clone();
    mask_plan(&mut masked, &coupling, &p).expect("mask");
    let mut sliced = model.clone();
    apply_plan(&mut sliced, &mut coupling, &p).unwrap_or_else(|e| panic!("{name}: {e}"));
    PassManager::from_names(&["infer-shapes", "eliminate-dead-nodes"])
        .expect("passes")
        .verify_each(true)
        .run(&mut sliced)
        .unwrap_or_else(|e| panic!("{name}: the sliced model does not verify: {e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let (mp, sp) = (dir.path().join("masked.onnx"), dir.path().join("sliced.onnx"));
    write(&masked, &mp);
    write(&sliced, &sp);
    let inputs = make_inputs(model);
    let diff = max_rel_diff(&run_model(&mp, &inputs), &run_model(&sp, &inputs));
    assert!(diff < 1e-4, "{name}: sliced differs from masked by {diff:e} (relative)");
    let params = |m: &ecospac_ir::Model| -> u128 {
        m.graph
            .initializers
            .iter()
            .filter_map(|&v| m.graph.value(v).constant.as_ref())
            .filter(|t| t.dtype.is_float())
            .map(|t| t.numel())
            .sum()
    };
    assert!(params(&sliced) < params(model), "{name}: nothing was removed");
    diff
}

fn random_plan(seed: u64) -> impl Fn(&ecospac_ir::Model, &ecospac_passes::coupling::Coupling) -> SlicePlan {
    move |m, c| {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let kept = c
            .groups
            .iter()
            .map(|g| {
                let n = 1 + (next() as usize) % g.size;
                let mut idx: Vec<u32> = (0..g.size as u32).collect();
                for i in (1..idx.len()).rev() {
                    idx.swap(i, (next() as usize) % (i + 1));
                }
                idx.truncate(n);
                idx
            })
            .collect();
        SlicePlan::from_kept(m, c, kept)
    }
}

fn budget_plan(
    budget: f64,
    allocation: Allocation,
) -> impl Fn(&ecospac_ir::Model, &ecospac_passes::coupling::Coupling) -> SlicePlan {
    move |m, c| plan(m, c, &PlanOptions { budget, criterion: Criterion::Coupled, allocation, align: 8, seed: 0 })
}

fn exact_on(name: &str) {
    let model = prepared(name);
    for seed in 1..=3 {
        check(name, &model, &random_plan(seed));
    }
    for budget in [0.3, 0.5, 0.7] {
        check(name, &model, &budget_plan(budget, Allocation::Uniform));
    }
    check(name, &model, &budget_plan(0.5, Allocation::Global));
}

#[test]
fn exact_gpt2_torchscript() {
    exact_on("gpt2-torchscript.onnx");
}
#[test]
fn exact_gpt2_dynamo() {
    exact_on("gpt2-dynamo.onnx");
}
#[test]
fn exact_llama_torchscript() {
    exact_on("llama-torchscript.onnx");
}
#[test]
fn exact_llama_dynamo() {
    exact_on("llama-dynamo.onnx");
}
#[test]
fn exact_bert_torchscript() {
    exact_on("bert-torchscript.onnx");
}
#[test]
fn exact_bert_dynamo() {
    exact_on("bert-dynamo.onnx");
}
#[test]
fn exact_vit_torchscript() {
    exact_on("vit-torchscript.onnx");
}
#[test]
fn exact_vit_dynamo() {
    exact_on("vit-dynamo.onnx");
}
