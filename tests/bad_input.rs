//! Bad input never panics and never leaves a partial output: each case gives a
//! clear error naming the problem and a non-zero exit code.

mod common;

use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{Message, ModelProto, StringStringEntryProto};
use std::path::Path;
use std::process::Command;

fn fixture_proto() -> ModelProto {
    let bytes = std::fs::read(common::fixture("bert-torchscript.onnx")).expect("fixture");
    ModelProto::parse_from_bytes(&bytes).expect("decode")
}

fn write(path: &Path, m: &ModelProto) {
    std::fs::write(path, m.write_to_bytes().expect("encode")).expect("write");
}

/// Runs `ecospac compile` and checks the failure: exit code, message, nothing written.
fn expect_failure(input: &Path, needles: &[&str]) -> String {
    let dir = input.parent().expect("dir");
    let before: Vec<_> = std::fs::read_dir(dir).expect("ls").flatten().map(|e| e.file_name()).collect();
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("out.onnx");
    let run = Command::new(env!("CARGO_BIN_EXE_ecospac"))
        .args(["compile", &input.display().to_string(), "-o", &out.display().to_string()])
        .output()
        .expect("run ecospac");
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert_eq!(run.status.code(), Some(1), "exit status for {}: {stderr}", input.display());
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "expected `{n}` in: {stderr}");
    }
    let left: Vec<_> = std::fs::read_dir(out_dir.path()).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "partial output left behind: {left:?}");
    let after: Vec<_> = std::fs::read_dir(dir).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert_eq!(before, after, "the input folder changed");
    stderr
}

#[test]
fn truncated_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("truncated.onnx");
    let bytes = std::fs::read(common::fixture("bert-torchscript.onnx")).expect("fixture");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).expect("write");
    expect_failure(&p, &["truncated.onnx", "not a readable ONNX protobuf"]);
}

#[test]
fn not_an_onnx_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("notes.onnx");
    std::fs::write(&p, "these are my notes, not a model\n").expect("write");
    expect_failure(&p, &["notes.onnx", "ONNX"]);
    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, b"").expect("write");
    expect_failure(&empty, &["not an ONNX model"]);
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    expect_failure(&dir.path().join("absent.onnx"), &["cannot read", "absent.onnx"]);
}

#[test]
fn graph_referencing_a_missing_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("missing.onnx");
    let mut m = fixture_proto();
    let g = m.graph.as_mut().expect("graph");
    let i = g.node.iter().position(|n| n.op_type == "MatMul").expect("a MatMul");
    g.node[i].input[0] = "no_such_value".into();
    let node = g.node[i].name.clone();
    write(&p, &m);
    expect_failure(&p, &["no_such_value", &node, "no node, graph input or initializer defines"]);
}

fn externalise(m: &mut ModelProto, location: &str) -> String {
    let g = m.graph.as_mut().expect("graph");
    let t = g.initializer.iter_mut().max_by_key(|t| t.raw_data.len()).expect("initializer");
    let len = t.raw_data.len();
    t.raw_data.clear();
    t.data_location = DataLocation::EXTERNAL.into();
    let kv = |k: &str, v: String| StringStringEntryProto { key: k.into(), value: v, ..Default::default() };
    t.external_data = vec![kv("location", location.into()), kv("offset", "0".into()), kv("length", len.to_string())];
    t.name.clone()
}

#[test]
fn external_data_outside_the_model_folder_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(root.path().join("outside.bin"), vec![0u8; 1 << 20]).expect("write");
    for location in ["../outside.bin", "/etc/passwd", "sub/../../outside.bin"] {
        let mut m = fixture_proto();
        let tensor = externalise(&mut m, location);
        let p = dir.join("escape.onnx");
        write(&p, &m);
        expect_failure(&p, &[&tensor, location, "refused"]);
    }
    // A link inside the folder that points outside is refused too.
    std::os::unix::fs::symlink(root.path().join("outside.bin"), dir.join("link.bin")).expect("symlink");
    let mut m = fixture_proto();
    let tensor = externalise(&mut m, "link.bin");
    let p = dir.join("link.onnx");
    write(&p, &m);
    expect_failure(&p, &[&tensor, "outside the model's folder"]);
}

#[test]
fn external_data_file_missing_or_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = fixture_proto();
    let tensor = externalise(&mut m, "weights.bin");
    let p = dir.path().join("ext.onnx");
    write(&p, &m);
    expect_failure(&p, &[&tensor, "weights.bin", "cannot be opened"]);
    std::fs::write(dir.path().join("weights.bin"), vec![0u8; 100]).expect("write");
    expect_failure(&p, &[&tensor, "but the file has 100"]);
}

#[test]
fn tensor_declared_larger_than_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("short.onnx");
    let mut m = fixture_proto();
    let g = m.graph.as_mut().expect("graph");
    let t = g.initializer.iter_mut().max_by_key(|t| t.raw_data.len()).expect("initializer");
    t.dims[0] *= 2;
    let name = t.name.clone();
    write(&p, &m);
    expect_failure(&p, &[&name, "bytes but", "are present"]);
}

#[test]
fn output_never_overwrites_the_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("model.onnx");
    std::fs::copy(common::fixture("vit-torchscript.onnx"), &p).expect("copy");
    let before = std::fs::read(&p).expect("read");
    let run = Command::new(env!("CARGO_BIN_EXE_ecospac"))
        .args(["compile", &p.display().to_string(), "-o", &p.display().to_string()])
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("refusing to overwrite the input"));
    assert_eq!(before, std::fs::read(&p).expect("read"), "input changed");
}

#[test]
fn unknown_pass_is_rejected_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("o.onnx");
    let run = Command::new(env!("CARGO_BIN_EXE_ecospac"))
        .args([
            "compile",
            &common::fixture("vit-torchscript.onnx").display().to_string(),
            "-o",
            &out.display().to_string(),
        ])
        .args(["--passes", "infer-shapes,frobnicate"])
        .output()
        .expect("run");
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("unknown pass `frobnicate`"));
    assert!(!out.exists());
}

/// A subgraph reading a name that nothing defines is refused at import, naming it.
#[test]
fn subgraph_reading_an_undefined_name() {
    let bytes = std::fs::read(common::fixture("if-reads-weight.onnx")).expect("fixture");
    let mut m = ModelProto::parse_from_bytes(&bytes).expect("decode");
    let graph = m.graph.as_mut().expect("graph");
    let if_node = graph.node.iter_mut().find(|n| n.op_type == "If").expect("If node");
    let then = if_node.attribute.iter_mut().find(|a| a.name == "then_branch").expect("then");
    then.g.as_mut().expect("body").node[0].input[1] = "no.such.weight".into();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("undefined.onnx");
    write(&p, &m);
    expect_failure(&p, &["no.such.weight", "inside a subgraph"]);
}

/// Quantisation and fused-attention attributes from the input are checked
/// before any arithmetic on them: absurd or inconsistent values are an error
/// naming the node's problem, never an overflow or a wrong slice.
#[test]
fn absurd_quantisation_and_attention_attributes_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let load = |name: &str| {
        ModelProto::parse_from_bytes(&std::fs::read(common::fixture(name)).expect("fixture")).expect("decode")
    };
    let set = |m: &mut ModelProto, op: &str, attr: &str, value: i64| {
        let node = m.graph.mut_or_insert_default().node.iter_mut().find(|n| n.op_type == op).expect("node");
        let a = node.attribute.iter_mut().find(|a| a.name == attr).expect("attribute");
        a.i = value;
    };
    let cases: [(&str, &str, &str, i64, &str); 4] = [
        ("llama-int4.onnx", "MatMulNBits", "K", i64::MAX, "not a valid quantisation"),
        ("llama-int4.onnx", "MatMulNBits", "block_size", 7, "not a valid quantisation"),
        ("llama-int4.onnx", "MatMulNBits", "N", 48, "MatMulNBits: B is"),
        ("bert-ortopt.onnx", "Attention", "num_heads", -3, "a positive head count is required"),
    ];
    for (k, (fixture, op, attr, value, needle)) in cases.into_iter().enumerate() {
        let mut m = load(fixture);
        set(&mut m, op, attr, value);
        let p = dir.path().join(format!("case{k}.onnx"));
        write(&p, &m);
        expect_failure(&p, &[needle]);
    }
}

/// `--recover` in a build without the training runtime is an error saying so, before any work.
#[cfg(not(feature = "train"))]
#[test]
fn recover_without_the_training_runtime_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.onnx");
    let run = Command::new(env!("CARGO_BIN_EXE_ecospac"))
        .arg("compile")
        .arg(common::fixture("bert-torchscript.onnx"))
        .args(["--budget", "0.5", "--recover", "10", "--data", "corpus/", "-o"])
        .arg(&out)
        .output()
        .expect("run ecospac");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--features train"), "{stderr}");
    assert!(!out.exists());
}

/// ONNX Runtime sorts a graph itself, so files whose nodes are out of order
/// exist: ecospac reads them sorted, with the groups of the sorted file. Nodes
/// that read each other's outputs in a cycle are refused, naming one of them.
#[test]
fn unsorted_nodes_are_sorted_and_cycles_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = fixture_proto();
    m.graph.as_mut().expect("graph").node.reverse();
    let p = dir.path().join("unsorted.onnx");
    write(&p, &m);
    let groups = |path: &Path| {
        let mut model = ecospac_frontends::import_file(path).expect("import");
        ecospac_ir::verify(&model.graph).expect("a sorted graph");
        ecospac_passes::prepare(&mut model).expect("prepare");
        common::analyze(&model).groups.len()
    };
    assert_eq!(groups(&p), groups(&common::fixture("bert-torchscript.onnx")));
    let out = dir.path().join("compact.onnx");
    let run = Command::new(env!("CARGO_BIN_EXE_ecospac"))
        .args(["compile", &p.display().to_string(), "--budget", "0.5", "--calibration-length", "16", "-o"])
        .arg(&out)
        .output()
        .expect("run ecospac");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let mut m = fixture_proto();
    let g = m.graph.as_mut().expect("graph");
    let made_by =
        |g: &onnx_protobuf::GraphProto, name: &str| g.node.iter().position(|n| n.output.iter().any(|o| o == name));
    // A node whose first input another node makes; that node now reads it back.
    let (n, p_) = (0..g.node.len())
        .find_map(|n| Some((n, made_by(g, g.node[n].input.first()?)?)))
        .expect("a node fed by another");
    let loop_back = g.node[n].output[0].clone();
    g.node[p_].input[0] = loop_back;
    let cyclic = dir.path().join("cyclic.onnx");
    write(&cyclic, &m);
    expect_failure(&cyclic, &["cycle through node"]);
}
