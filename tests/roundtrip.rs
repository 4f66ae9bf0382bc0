//! Lossless round trip of exporter-made models: `compile --budget 1.0` gives a
//! model whose ONNX Runtime outputs are bit-identical to the original's and
//! whose protobuf differs only where a pass changed something.

mod common;
#[path = "common/protodiff.rs"]
mod protodiff;

use common::*;
use ecospac_backends::{ExportOptions, ExternalData};

fn check_identity(name: &str) {
    let src = fixture(name);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.onnx");
    let model = compile(&src, &out, &["infer-shapes"], &ExportOptions::default());
    let inputs = make_inputs(&model);
    assert_bit_identical(&run_model(&src, &inputs), &run_model(&out, &inputs), name);
    let diffs = protodiff::diff(&protodiff::read(&src), &protodiff::read(&out));
    assert!(diffs.is_empty(), "{name}: the identity pipeline changed the protobuf at:\n  {}", diffs.join("\n  "));
}

#[test]
fn identity_gpt2_torchscript() {
    check_identity("gpt2-torchscript.onnx");
}
#[test]
fn identity_gpt2_dynamo() {
    check_identity("gpt2-dynamo.onnx");
}
#[test]
fn identity_llama_torchscript() {
    check_identity("llama-torchscript.onnx");
}
#[test]
fn identity_llama_dynamo() {
    check_identity("llama-dynamo.onnx");
}
#[test]
fn identity_qwen2_torchscript() {
    check_identity("qwen2-torchscript.onnx");
}
#[test]
fn identity_qwen2_dynamo() {
    check_identity("qwen2-dynamo.onnx");
}
#[test]
fn identity_phi3_torchscript() {
    check_identity("phi3-torchscript.onnx");
}
#[test]
fn identity_phi3_dynamo() {
    check_identity("phi3-dynamo.onnx");
}
#[test]
fn identity_bert_torchscript() {
    check_identity("bert-torchscript.onnx");
}
#[test]
fn identity_bert_dynamo() {
    check_identity("bert-dynamo.onnx");
}
#[test]
fn identity_vit_torchscript() {
    check_identity("vit-torchscript.onnx");
}
#[test]
fn identity_vit_dynamo() {
    check_identity("vit-dynamo.onnx");
}

#[test]
fn identity_albert_torchscript() {
    check_identity("albert-torchscript.onnx");
}

#[test]
fn identity_albert_dynamo() {
    check_identity("albert-dynamo.onnx");
}

#[test]
fn identity_ort_optimised() {
    for name in ["bert-ortopt-skipln.onnx", "bert-ortopt.onnx", "gpt2-ortopt.onnx"] {
        check_identity(name);
    }
}

/// Every node re-emitted from its typed op (no source record): the typed
/// attributes alone must reproduce the computation.
#[test]
fn typed_reemission_is_exact() {
    for name in FIXTURES {
        let src = fixture(name);
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.onnx");
        let imported = ecospac_frontends::import_file_with_data(&src).expect("import");
        let mut model = imported.model;
        let ids: Vec<_> = model.graph.order.clone();
        for id in ids {
            model.graph.node_mut(id); // drops the source record
        }
        // A contradicted annotation, ignored on import, is written as inferred.
        let mended: Vec<String> = imported.ignored.iter().map(|d| d.value.clone()).collect();
        let proof = ecospac_ir::verify(&model.graph).expect("verify");
        ecospac_backends::export_onnx(&model, proof, &out, &ExportOptions::default()).expect("export");
        let inputs = make_inputs(&model);
        assert_bit_identical(&run_model(&src, &inputs), &run_model(&out, &inputs), name);
        let diffs = protodiff::diff(&protodiff::read(&src), &protodiff::read(&out));
        let expected = |d: &String| {
            d.starts_with("node[") || (d.starts_with("value_info[") && mended.iter().any(|m| d.ends_with(m.as_str())))
        };
        assert!(diffs.iter().all(expected), "{name}: unexpected differences {diffs:?}");
    }
}

/// Folding shape chains changes nodes and initializers only, and not the outputs.
#[test]
fn folding_shape_chains_keeps_outputs_and_lists_changes() {
    let mut folded_any = false;
    for name in FIXTURES {
        let src = fixture(name);
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.onnx");
        let model = compile(
            &src,
            &out,
            &["infer-shapes", "fold-shape-constants", "eliminate-dead-nodes"],
            &ExportOptions::default(),
        );
        let inputs = make_inputs(&model);
        assert_bit_identical(&run_model(&src, &inputs), &run_model(&out, &inputs), name);
        let diffs = protodiff::diff(&protodiff::read(&src), &protodiff::read(&out));
        folded_any |= !diffs.is_empty();
        for d in &diffs {
            assert!(
                d.starts_with("node[") || d.starts_with("initializer ") || d.starts_with("value_info["),
                "{name}: folding changed something besides nodes and constants: {d}"
            );
        }
    }
    assert!(folded_any, "no fixture had a shape chain to fold");
}

/// Weights written to a side file load in ORT, and read back through the
/// external-data path of the frontend, compile back to the same model.
#[test]
fn external_data_round_trip() {
    let src = fixture("llama-torchscript.onnx");
    let dir = tempfile::tempdir().expect("tempdir");
    let ext = dir.path().join("ext.onnx");
    let opts = ExportOptions { external_data: ExternalData::Always };
    let model = compile(&src, &ext, &["infer-shapes"], &opts);
    let data = dir.path().join("ext.onnx.data");
    assert!(data.metadata().expect("side file").len() > 100_000, "weights went to the side file");
    let (model_len, src_len) = (ext.metadata().expect("model").len(), src.metadata().expect("src").len());
    assert!(model_len * 4 < src_len, "the model file still holds the weights: {model_len} of {src_len} bytes");
    let inputs = make_inputs(&model);
    let reference = run_model(&src, &inputs);
    assert_bit_identical(&reference, &run_model(&ext, &inputs), "external data");
    let back = dir.path().join("back.onnx");
    compile(&ext, &back, &["infer-shapes"], &ExportOptions::default());
    assert_bit_identical(&reference, &run_model(&back, &inputs), "external → inline");
    let diffs = protodiff::diff(&protodiff::read(&src), &protodiff::read(&back));
    assert!(diffs.is_empty(), "external → inline differs from the source at {diffs:?}");
}

/// Import keeps weights in the file's memory map (no copy); the decoded
/// tensors equal what a plain protobuf decode gives.
#[test]
fn weights_stay_in_the_file_map() {
    let src = fixture("gpt2-torchscript.onnx");
    let model = ecospac_frontends::import_file(&src).expect("import");
    let bytes = std::fs::read(&src).expect("read");
    let plain = ecospac_frontends::import_bytes(&bytes, None, "copy").expect("import from bytes");
    let g = &model.graph;
    let mut mapped = 0;
    for (&v, &w) in g.initializers.iter().zip(&plain.graph.initializers) {
        let (t, u) =
            (g.value(v).constant.as_ref().expect("data"), plain.graph.value(w).constant.as_ref().expect("data"));
        assert_eq!(g.value(v).name, plain.graph.value(w).name);
        assert!(t == u, "{} differs between the mapped and the copied import", g.value(v).name);
        if matches!(t.storage, ecospac_ir::Storage::Mapped { .. }) {
            mapped += 1;
        }
    }
    let with_data =
        g.initializers.iter().filter(|&&v| !g.value(v).constant.as_ref().is_some_and(|t| t.bytes().is_empty())).count();
    assert_eq!(mapped, with_data, "every initializer with raw data is mapped");
    assert!(mapped > 10);
}
