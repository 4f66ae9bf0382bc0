//! What each fuzz target runs on one input; also run by the workspace test
//! `tests/fuzz_regressions.rs` on every input in `fuzz/regressions/`.
//! Each returns normally on any input the code refuses; a crash, a hang or an
//! allocation past the limits is the bug being looked for.

use ecospac_passes::pipeline::{Compilation, Env, Pipeline, Recipe};
use std::io::Write;
use std::sync::OnceLock;

/// The ONNX frontend on arbitrary bytes: decode, import, infer shapes, verify.
pub fn onnx_import(data: &[u8]) {
    let Ok(mut model) = ecospac_frontends::import_bytes(data, None, "fuzz input") else { return };
    let _ = ecospac_ir::verify(&model.graph);
    let _ = ecospac_passes::infer_shapes(&mut model);
    let _ = ecospac_ir::text::print(&model);
}

/// A private scratch folder per process, reused by every run.
fn scratch() -> Option<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ecospac-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// The checkpoint frontend: a `config.json` and a safetensors file (the input:
/// 4 bytes little-endian config length, the config, the weights).
pub fn checkpoint(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<4>() else { return };
    let n = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (config, weights) = rest.split_at(n);
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(config) else { return };
    let Some(dir) = scratch() else { return };
    let path = dir.join("model.safetensors");
    let Ok(mut f) = std::fs::File::create(&path) else { return };
    if f.write_all(weights).is_err() {
        return;
    }
    drop(f);
    let mut w = ecospac_frontends::hf::Weights::default();
    if w.read_file(&path).is_err() {
        return;
    }
    if let Ok(mut hf) = ecospac_frontends::hf::build_graph(&dir, json, w) {
        let _ = ecospac_passes::infer_shapes(&mut hf.model);
    }
}

/// A tiny BERT (fuzz/seeds/block.ir), prepared and analysed once.
fn block() -> &'static (ecospac_ir::Model, ecospac_passes::coupling::Coupling) {
    static BLOCK: OnceLock<(ecospac_ir::Model, ecospac_passes::coupling::Coupling)> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut m = ecospac_ir::text::parse(include_str!("../seeds/block.ir")).expect("the block parses");
        ecospac_passes::prepare(&mut m).expect("the block prepares");
        let c = ecospac_passes::coupling::analyze(ecospac_ir::verify(&m.graph).expect("the block verifies"));
        (m, c)
    })
}

/// The recipe loader (TOML and JSON, validated against the pass registry)
/// and the slice-plan loader, whose plan is then bound to a tiny BERT.
pub fn plan_recipe(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = Env::default();
    for recipe in [Recipe::parse_toml(text), Recipe::parse_json(text)].into_iter().flatten() {
        if let Ok(r) = recipe.normalized() {
            let _ = Pipeline::new(&r, &env);
            let _ = r.to_toml();
        }
    }
    let Some(dir) = scratch() else { return };
    let path = dir.join("plan.json");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(plan) = ecospac_passes::prune::SlicePlan::load(&path) {
        let (model, coupling) = block();
        let _ = plan.bind(model, coupling);
    }
}

const RECIPE: &str = r#"
[[step]]
pass = "prepare"
[[step]]
pass = "analyse-coupling"
[[step]]
pass = "score"
criterion = "coupled"
[[step]]
pass = "allocate"
budget = 0.5
allocation = "global"
[[step]]
pass = "slice"
"#;

/// The whole compile on a small graph in the IR's text form: parse, prepare,
/// analyse, plan from the weights at half the budget, slice, verify, export,
/// import again. A compact model that grows or does not verify is a bug.
pub fn compile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(model) = ecospac_ir::text::parse(text) else { return };
    let before = model.graph.parameters();
    let env = Env::default();
    let Ok(recipe) = Recipe::parse_toml(RECIPE) else { return };
    let Ok(mut pipeline) = Pipeline::new(&recipe, &env) else { return };
    let mut cx = Compilation::new(model);
    if pipeline.run(&mut cx, &env).is_err() {
        return;
    }
    assert!(cx.model.graph.parameters() <= before, "the compact model grew");
    let proof = match ecospac_ir::verify(&cx.model.graph) {
        Ok(p) => p,
        Err(e) => panic!("a sliced graph does not verify: {e}"),
    };
    let Some(dir) = scratch() else { return };
    let out = dir.join("out.onnx");
    let opts = ecospac_backends::ExportOptions::default();
    if ecospac_backends::export_onnx(&cx.model, proof, &out, &opts).is_ok() {
        let _ = ecospac_frontends::import_file(&out);
    }
}
