//! The IR executor on libtorch against ONNX Runtime on every fixture graph
//! (exporter-made, ORT-optimised, quantised, and the checkpoint folders' built
//! graphs), and its gradients against finite differences.
#![cfg(feature = "torch")]

#[path = "../../tests/common/blocks.rs"]
mod blocks;
mod common;
#[path = "../../tests/common/ort_probe.rs"]
mod ort_probe;

use common::root;
use ecospac_backends::ort::OrtExecutor;
use ecospac_ir::exec::{Array, Executor};
use ecospac_ir::{DType, Model, Tensor as IrTensor};
use ecospac_runtime_train::exec::{to_tch, Program, TchExecutor};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn ort() -> OrtExecutor {
    OrtExecutor::new(Some(&common::ort_library()), 1).expect("load ORT")
}

/// Graphs the executor refuses, with the reason it must give.
const REFUSED: &[(&str, &str)] = &[
    ("if-reads-weight.onnx", "subgraphs"),
    ("bert-qop.onnx", "is not run by the libtorch executor"),
    ("gpt2-qop.onnx", "is not run by the libtorch executor"),
    ("llama-qop.onnx", "is not run by the libtorch executor"),
    ("cnn-qop.onnx", "is not run by the libtorch executor"),
];

/// The largest difference between two runs' outputs, relative to the
/// reference's scale (at least 1); integer outputs must be equal.
fn difference(reference: &[IrTensor], got: &[IrTensor], what: &str) -> f64 {
    assert_eq!(reference.len(), got.len(), "{what}: output count");
    let mut worst = 0f64;
    for (i, (r, g)) in reference.iter().zip(got).enumerate() {
        assert_eq!(r.dims, g.dims, "{what}: output {i} dims");
        assert_eq!(r.dtype, g.dtype, "{what}: output {i} type");
        match (Array::of(r), Array::of(g)) {
            (Some(a), Some(b)) => {
                let scale = a.data.iter().fold(1f64, |m, &v| m.max(f64::from(v).abs()));
                let d = a.data.iter().zip(&b.data).fold(0f64, |m, (&x, &y)| m.max(f64::from(x - y).abs()));
                assert!(a.data.iter().zip(&b.data).all(|(x, y)| x.is_nan() == y.is_nan()), "{what}: NaNs differ");
                worst = worst.max(d / scale);
            }
            _ => assert_eq!(r.bytes(), g.bytes(), "{what}: integer output {i}"),
        }
    }
    worst
}

/// The tolerance for a graph: 1e-4, or what half precision allows, or, where
/// activations are quantised dynamically, one quantisation step's effect
/// (rounding ties differ).
fn tolerance(model: &Model) -> f64 {
    let g = &model.graph;
    let half = g.values().any(|(_, v)| v.best_ty().is_some_and(|t| matches!(t.dtype, DType::F16 | DType::BF16)));
    let dynamic = g.nodes().any(|(_, n)| matches!(&n.op, ecospac_ir::Op::DynamicQuantize));
    match (half, dynamic) {
        (true, _) => 1e-2,
        (_, true) => 5e-2,
        _ => 1e-4,
    }
}

/// True for graphs whose activations are quantised: ONNX Runtime's
/// optimiser fuses their QDQ patterns into integer kernels that compute
/// something else than the graph as written, so they are compared with an
/// unoptimised ONNX Runtime.
fn requantised(model: &Model) -> bool {
    model.graph.nodes().any(|(_, n)| matches!(n.op, ecospac_ir::Op::Quantize(_) | ecospac_ir::Op::DynamicQuantize))
}

/// The difference on two generated samples (one at a time where ONNX
/// Runtime runs the graph on one sample only).
fn compare(name: &str, model: &Model, ort: &OrtExecutor) -> f64 {
    let feeds = ecospac_passes::synthetic::synthetic_inputs(model, 2, &HashMap::new(), 7).expect("inputs");
    let (batches, _) = ecospac_ir::exec::runnable_batches(ort, model, vec![feeds]);
    let mut reference = ort.load(model).expect("ORT loads");
    let tch = TchExecutor { device: Device::Cpu };
    let mut session = tch.load(model).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut worst = 0f64;
    for feeds in &batches {
        let want = reference.run(feeds).expect("ORT runs");
        let got = session.run(feeds).unwrap_or_else(|e| panic!("{name}: {e}"));
        worst = worst.max(difference(&want, &got, name));
    }
    worst
}

#[test]
fn executor_matches_onnx_runtime_on_every_fixture_graph() {
    tch::set_num_threads(1);
    let ort = ort();
    let plain = self::ort().unoptimised();
    let saturates = ort_probe::ort_saturates_u8s8(&ort);
    let mut graphs: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures"))
        .expect("fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    graphs.sort();
    assert!(graphs.len() >= 20, "fixtures found: {}", graphs.len());
    let mut ran = 0;
    for path in &graphs {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let model = ecospac_frontends::onnx::import_file(path).expect("import");
        if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
            let err = TchExecutor { device: Device::Cpu }.load(&model).and_then(|mut s| {
                let feeds = ecospac_passes::synthetic::synthetic_inputs(&model, 1, &HashMap::new(), 1)
                    .map_err(|e| ecospac_ir::exec::ExecError(e.to_string()))?;
                s.run(&feeds)
            });
            let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains(why), "{name}: expected a refusal naming {why}, got {msg:?}");
            continue;
        }
        let tol = tolerance(&model);
        let d = compare(&name, &model, if requantised(&model) { &plain } else { &ort });
        println!("{name}: {d:.2e} (tolerance {tol:.0e})");
        let integer = model.graph.nodes().any(|(_, n)| matches!(n.op, ecospac_ir::Op::MatMulInteger));
        if d > tol && integer && saturates {
            println!("  not compared: ONNX Runtime's uint8 x int8 products saturate on this CPU (no VNNI)");
            continue;
        }
        assert!(d <= tol, "{name}: libtorch differs from ONNX Runtime by {d:.3e} (relative), over {tol:.0e}");
        ran += 1;
    }
    assert!(ran >= 20, "graphs run: {ran}");
}

/// ONNX Runtime's fused BERT attention (`Attention`, and `MultiHeadAttention`
/// with the mask index of its `EmbedLayerNormalization`) over a padded
/// batch: the second sample has 5 real tokens of 9; outputs match at every
/// position.
#[test]
fn fused_attention_masks_padding_as_onnx_runtime_does() {
    tch::set_num_threads(1);
    let ort = ort();
    for name in ["bert-ortopt.onnx", "bert-ortopt-mha.onnx"] {
        let model = ecospac_frontends::onnx::import_file(&root().join("tests/fixtures").join(name)).expect("import");
        let ids: Vec<i64> = (0..18).map(|i| 5 + i * 7 % 90).collect();
        let mask: Vec<i64> = (0..18).map(|i| i64::from(i < 14)).collect();
        let feeds: ecospac_ir::exec::Batch = vec![
            ("input_ids".into(), IrTensor::from_i64s(vec![2, 9], &ids)),
            ("attention_mask".into(), IrTensor::from_i64s(vec![2, 9], &mask)),
        ];
        let want = ort.load(&model).expect("ORT loads").run(&feeds).expect("ORT runs");
        let got = TchExecutor { device: Device::Cpu }.load(&model).expect("load").run(&feeds).expect("runs");
        let d = difference(&want, &got, name);
        println!("{name}: padded batch within {d:.2e}");
        assert!(d < 1e-4, "{name}: differs by {d:e} on a padded batch");
    }
}

/// GenAI's decoders step by step: a prompt of 5 tokens for 2 samples, then
/// one new token each with the prompt's present cache as the past; outputs
/// (logits and the present caches) match ONNX Runtime at both steps.
#[test]
fn group_query_attention_decodes_with_a_cache_as_onnx_runtime_does() {
    tch::set_num_threads(1);
    let ort = ort();
    for name in ["llama-genai.onnx", "llama-genai-unfused.onnx"] {
        let model = ecospac_frontends::onnx::import_file(&root().join("tests/fixtures").join(name)).expect("import");
        let names: Vec<String> = model.graph.inputs.iter().map(|&v| model.graph.value(v).name.clone()).collect();
        let outputs: Vec<String> = model.graph.outputs.iter().map(|&v| model.graph.value(v).name.clone()).collect();
        let (mut reference, mut session) =
            (ort.load(&model).expect("ORT loads"), TchExecutor { device: Device::Cpu }.load(&model).expect("load"));
        let ids = IrTensor::from_i64s(vec![2, 5], &[3, 17, 92, 5, 200, 8, 41, 77, 150, 9]);
        let mut feeds: ecospac_ir::exec::Batch =
            vec![("input_ids".into(), ids), ("attention_mask".into(), IrTensor::from_i64s(vec![2, 5], &[1; 10]))];
        for n in names.iter().filter(|n| n.starts_with("past_key_values")) {
            feeds.push((n.clone(), IrTensor::from_f32s(vec![2, 2, 0, 16], &[])));
        }
        let want = reference.run(&feeds).expect("ORT runs the prompt");
        let got = session.run(&feeds).expect("libtorch runs the prompt");
        let d = difference(&want, &got, name);
        assert!(d < 1e-4, "{name}: prompt differs by {d:e}");
        // One more token each, the cache as the past.
        let mut step: ecospac_ir::exec::Batch = vec![
            ("input_ids".into(), IrTensor::from_i64s(vec![2, 1], &[33, 61])),
            ("attention_mask".into(), IrTensor::from_i64s(vec![2, 6], &[1; 12])),
        ];
        for n in names.iter().filter(|n| n.starts_with("past_key_values")) {
            let present = n.replace("past_key_values", "present");
            let i = outputs.iter().position(|o| *o == present).expect("a present cache per past");
            assert_eq!(want[i].dims, [2, 2, 5, 16], "{name}: {present}");
            step.push((n.clone(), want[i].clone()));
        }
        let want = reference.run(&step).expect("ORT runs the step");
        let got = session.run(&step).expect("libtorch runs the step");
        let d = difference(&want, &got, name);
        println!("{name}: prompt and one cached step within {d:.2e}");
        assert!(d < 1e-4, "{name}: the cached step differs by {d:e}");
    }
}

#[test]
fn executor_matches_onnx_runtime_on_checkpoint_graphs() {
    tch::set_num_threads(1);
    let ort = ort();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures/hf"))
        .expect("checkpoint fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| ecospac_frontends::hf::is_checkpoint(p))
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 7, "checkpoints found: {}", dirs.len());
    for dir in &dirs {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let model = ecospac_frontends::hf::import_checkpoint(dir).expect("checkpoint").model;
        let d = compare(&name, &model, &ort);
        println!("{name}: {d:.2e}");
        assert!(d <= 1e-4, "{name}: libtorch differs from ONNX Runtime by {d:.3e} (relative)");
    }
}

/// The exactness property test's random block stacks, swept over every
/// kind of block it draws (heads, head dims, FFN width, gating, biases,
/// activation, depth, shared layers).
#[test]
fn executor_matches_onnx_runtime_on_random_blocks() {
    tch::set_num_threads(1);
    let ort = ort();
    let acts = ["Relu", "Sigmoid", "Tanh"];
    let mut ran = 0;
    for i in 0..24usize {
        let a = blocks::Arch {
            heads: 1 + i % 3,
            head_dim: 2 + i % 5,
            ffn: 2 + (i * 7) % 18,
            gated: i % 2 == 0,
            bias: i % 4 < 2,
            act: acts[i % 3],
            layers: 1 + i % 3,
            shared: i % 5 == 0,
        };
        let mut m = ecospac_ir::text::parse(&blocks::block_text(&a)).expect("parse");
        m.ir_version = 8;
        blocks::randomise(&mut m, i as u64 + 1);
        ecospac_passes::run_passes(&mut m, &["infer-shapes"]).expect("infer");
        let d = compare(&format!("{a:?}"), &m, &ort);
        assert!(d <= 1e-4, "{a:?}: libtorch differs from ONNX Runtime by {d:.3e}");
        ran += 1;
    }
    assert_eq!(ran, 24);
}

#[test]
fn unknown_ops_are_an_error_naming_the_node_and_op() {
    let m = ecospac_ir::text::parse(
        r#"opset "" 17
graph "g"
input v0 "x": f32[2, 4]
node n0 "/odd" Hardmax {axis = 1} (v0) -> (v1 "y": f32[2, 4])
output v1
"#,
    )
    .expect("parse");
    let program = Program::new(&m, Device::Cpu).expect("program");
    let x = Tensor::zeros([2, 4], (Kind::Float, Device::Cpu));
    let err = program.forward(&[("x".into(), x)]).expect_err("Hardmax is not run");
    assert!(err.to_string().contains("/odd") && err.to_string().contains("Hardmax"), "{err}");
    let err = program.forward(&[]).expect_err("no feed");
    assert!(err.to_string().contains("`x` was not fed"), "{err}");
}

#[test]
fn absurd_computed_shapes_are_refused_before_allocating() {
    let m = ecospac_ir::text::parse(
        r#"opset "" 17
graph "g"
input v0 "x": f32[2]
init v1 "shape" = i64[2] [1000000, 1000000]
init v2 "start" = i64[] [0]
init v3 "limit" = i64[] [9000000000000000000]
init v4 "delta" = i64[] [1]
node n0 "/fill" ConstantOfShape (v1) -> (v5 "big")
node n1 "/count" Range (v2, v3, v4) -> (v6 "many")
output v5
output v6
"#,
    )
    .expect("parse");
    let program = Program::new(&m, Device::Cpu).expect("program");
    let x = Tensor::zeros([2], (Kind::Float, Device::Cpu));
    for (out, node) in [(0, "/fill"), (1, "/count")] {
        let v = program.graph().outputs[out];
        let err = program.forward_values(&[("x".into(), x.shallow_clone())], &[v]).expect_err("refused");
        assert!(err.to_string().contains(node) && err.to_string().contains("4294967296"), "{err}");
    }
}

/// A small f64 graph through MatMul, Add, LayerNormalization, Erf, Mul,
/// Transpose, Softmax and ReduceMean.
const TINY: &str = r#"opset "" 18
graph "tiny"
input v0 "x": f64[3, 4]
init v1 "w" = f64[4, 4] [0.3, -0.2, 0.5, 0.1, -0.4, 0.2, 0.05, 0.3, 0.1, 0.6, -0.3, 0.2, 0.25, -0.15, 0.4, -0.5]
init v2 "b" = f64[4] [0.1, -0.05, 0.2, 0.0]
init v3 "ln.w" = f64[4] [1.1, 0.9, 1.2, 0.8]
init v4 "ln.b" = f64[4] [0.05, -0.1, 0.0, 0.1]
init v5 "axes" = i64[1] [1]
node n0 "" MatMul (v0, v1) -> (v6 "h")
node n1 "" Add (v6, v2) -> (v7 "hb")
node n2 "" LayerNormalization {axis = -1, epsilon = 1e-05} (v7, v3, v4) -> (v8 "n")
node n3 "" Erf (v8) -> (v9 "e")
node n4 "" Mul (v9, v8) -> (v10 "m")
node n5 "" Transpose {perm = ints[1, 0]} (v10) -> (v11 "t")
node n6 "" MatMul (v10, v11) -> (v12 "s")
node n7 "" Softmax {axis = -1} (v12) -> (v13 "p")
node n8 "" ReduceMean {keepdims = 0} (v13, v5) -> (v14 "y")
output v14
"#;

#[test]
fn gradients_match_finite_differences() {
    let model = ecospac_ir::text::parse(TINY).expect("parse");
    let mut program = Program::new(&model, Device::Cpu).expect("program");
    program.set_trainable(|_| true).expect("trainable");
    let x = to_tch(
        &IrTensor::from_bytes(
            DType::F64,
            vec![3, 4],
            [0.5f64, -1.0, 0.25, 2.0, 1.5, 0.0, -0.5, 0.75, -1.25, 0.3, 0.9, -0.2]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        Device::Cpu,
    )
    .expect("x");
    let weights = Tensor::from_slice(&[0.7f64, -1.3, 0.4]);
    let loss = |p: &Program| -> Tensor {
        let y = p.forward(&[("x".into(), x.shallow_clone())]).expect("forward").remove(0);
        (y * &weights).sum(Kind::Double)
    };
    loss(&program).backward();
    let names: Vec<String> = program.parameters().iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names, ["w", "b", "ln.w", "ln.b"]);
    let eps = 1e-6;
    let mut checked = 0;
    for (name, p) in program.parameters() {
        let grad = p.grad();
        let n = p.numel() as i64;
        for i in 0..n {
            let flat = tch::no_grad(|| p.view([-1]));
            let orig = flat.double_value(&[i]);
            let at = |v: f64| {
                tch::no_grad(|| {
                    let _ = flat.get(i).fill_(v);
                    loss(&program).double_value(&[])
                })
            };
            let numeric = (at(orig + eps) - at(orig - eps)) / (2.0 * eps);
            at(orig);
            let analytic = grad.view([-1]).double_value(&[i]);
            assert!(
                (numeric - analytic).abs() <= 1e-6 * (1.0 + numeric.abs()),
                "{name}[{i}]: autograd {analytic:.9} vs finite differences {numeric:.9}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 16 + 4 + 4 + 4);
}

/// Mixed precision: with bfloat16 matrix products the outputs move (the flag
/// does something) but stay within bfloat16's rounding of float32 ones.
#[test]
fn bfloat16_matrix_products_stay_close_to_float32() {
    tch::set_num_threads(1);
    let model =
        ecospac_frontends::onnx::import_file(&root().join("tests/fixtures/llama-torchscript.onnx")).expect("import");
    let feeds = ecospac_passes::synthetic::synthetic_inputs(&model, 2, &HashMap::new(), 3).expect("inputs");
    let feeds: Vec<(String, Tensor)> =
        feeds.iter().map(|(n, t)| (n.clone(), to_tch(t, Device::Cpu).expect("feed"))).collect();
    let mut program = Program::new(&model, Device::Cpu).expect("program");
    let run = |p: &Program| tch::no_grad(|| p.forward(&feeds).expect("forward")).remove(0);
    let full = run(&program);
    program.set_bf16(true);
    let mixed = run(&program);
    assert_eq!(mixed.kind(), Kind::Float, "results stay float32");
    let scale = full.abs().max().double_value(&[]);
    let d = (&full - &mixed).abs().max().double_value(&[]) / scale;
    assert!(d > 1e-6, "bfloat16 changed nothing ({d:.1e})");
    assert!(d < 5e-2, "bfloat16 products differ by {d:.2e} of the output's scale");
}

/// GELUs and SiLUs written out as op chains (by exporters, and by the hf
/// frontend for opset 17) are found, one per layer, and run as one kernel;
/// the outputs still match ONNX Runtime (the fixture comparison above).
#[test]
fn activation_chains_run_as_one_kernel() {
    let onnx = |name: &str| {
        ecospac_frontends::onnx::import_file(&root().join(format!("tests/fixtures/{name}.onnx"))).expect("import")
    };
    let checkpoint = |name: &str| {
        ecospac_frontends::import_checkpoint(&root().join(format!("tests/fixtures/hf/{name}"))).expect("import").model
    };
    for (name, model, layers) in [
        ("gpt2-torchscript", onnx("gpt2-torchscript"), 2),
        ("bert-torchscript", onnx("bert-torchscript"), 2),
        ("llama-torchscript", onnx("llama-torchscript"), 2),
        ("hf gpt2", checkpoint("gpt2"), 2),
        ("hf llama", checkpoint("llama"), 2),
    ] {
        let program = Program::new(&model, Device::Cpu).expect("program");
        assert_eq!(program.fused_activations(), layers, "{name}");
    }
}
