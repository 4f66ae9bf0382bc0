//! Hostile input and unsafe outputs (issue 13): graphs that overflow, declare
//! absurd sizes or nest deeply; outputs that would overwrite an input; runs
//! that are killed. Each case is a clear error (exit 1), never a crash, a hang
//! or a runaway allocation; nothing is written and nothing is left behind.

mod common;

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::{DataLocation, DataType};
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn value_info(name: &str, elem: DataType, dims: &[i64]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    shape.dim = dims
        .iter()
        .map(|&d| {
            let mut x = Dimension::new();
            x.value = Some(dimension::Value::DimValue(d));
            x
        })
        .collect();
    let mut t = type_proto::Tensor::new();
    t.elem_type = elem as i32;
    t.shape = Some(shape).into();
    let mut ty = TypeProto::new();
    ty.value = Some(type_proto::Value::TensorType(t));
    let mut vi = ValueInfoProto::new();
    vi.name = name.into();
    vi.type_ = Some(ty).into();
    vi
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], ints: &[(&str, Vec<i64>)]) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = format!("{op}_{}", outputs[0]);
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = outputs.iter().map(|s| s.to_string()).collect();
    n.attribute = ints
        .iter()
        .map(|(name, v)| {
            let mut a = AttributeProto::new();
            a.name = name.to_string();
            a.type_ = AttributeType::INTS.into();
            a.ints = v.clone();
            a
        })
        .collect();
    n
}

fn int64s(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = DataType::INT64 as i32;
    t.dims = dims.to_vec();
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

fn floats(name: &str, dims: &[i64], n: usize) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = DataType::FLOAT as i32;
    t.dims = dims.to_vec();
    t.raw_data = (0..n).flat_map(|i| (i as f32 * 0.01).to_le_bytes()).collect();
    t
}

fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
) -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "hostile".into();
    g.node = nodes;
    g.initializer = inits;
    g.input = inputs;
    g.output = outputs;
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let mut op = OperatorSetIdProto::new();
    op.version = 17;
    m.opset_import = vec![op];
    m.graph = Some(g).into();
    m
}

fn write(path: &Path, m: &ModelProto) {
    std::fs::write(path, m.write_to_bytes().expect("encode")).expect("write");
}

/// Runs ecospac with a time limit (a hang fails the test instead of blocking it).
fn run_limited(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ecospac"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ecospac");
    let t = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("ecospac {args:?} still runs after {limit:?} (a hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// A weights-only compile (no ONNX Runtime) of `input` into a fresh folder:
/// returns the exit code and the messages; checks that nothing panicked and
/// that a failure leaves nothing behind.
fn compile(input: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("out.onnx");
    let mut args = vec!["compile", input.to_str().expect("utf-8"), "-o", out.to_str().expect("utf-8")];
    args.extend_from_slice(&["--budget", "0.5", "--criterion", "coupled", "--allocation", "global", "--refit", "none"]);
    args.extend_from_slice(extra);
    let run = run_limited(&args, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(!stderr.contains("panicked") && run.status.code().is_some(), "crash: {stderr}");
    if run.status.code() != Some(0) {
        let left: Vec<_> = std::fs::read_dir(out_dir.path()).expect("ls").flatten().map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "left behind after a failure: {left:?}");
    }
    (run.status.code(), stderr)
}

fn expect_error(input: &Path, needles: &[&str]) {
    let (code, stderr) = compile(input, &[]);
    assert_eq!(code, Some(1), "{}: {stderr}", input.display());
    for n in needles {
        assert!(stderr.contains(n), "expected `{n}` in: {stderr}");
    }
}

#[test]
fn overflowing_constant_folding_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("div.onnx");
    let m = model(
        vec![node("Div", &["a", "b"], &["c"], &[]), node("Reshape", &["x", "c"], &["y"], &[])],
        vec![int64s("a", &[1], &[i64::MIN]), int64s("b", &[1], &[-1])],
        vec![value_info("x", DataType::FLOAT, &[2, 4])],
        vec![value_info("y", DataType::FLOAT, &[8])],
    );
    write(&p, &m);
    expect_error(&p, &["integer overflow", "Div"]);
}

#[test]
fn shape_tensors_of_absurd_length_are_refused_before_allocating() {
    let dir = tempfile::tempdir().expect("tempdir");
    for len in [1_000_000_000_000i64, 65] {
        let p = dir.path().join(format!("cos-{len}.onnx"));
        let m = model(
            vec![node("ConstantOfShape", &["s"], &["y"], &[])],
            vec![],
            vec![value_info("s", DataType::INT64, &[len])],
            vec![value_info("y", DataType::FLOAT, &[])],
        );
        write(&p, &m);
        expect_error(&p, &["ranks above 64"]);
    }
    // A negative declared length declares nothing: the rank is unknown, no crash.
    let p = dir.path().join("cos-neg.onnx");
    let m = model(
        vec![node("ConstantOfShape", &["s"], &["y"], &[])],
        vec![],
        vec![value_info("s", DataType::INT64, &[-1])],
        vec![value_info("y", DataType::FLOAT, &[])],
    );
    write(&p, &m);
    compile(&p, &[]);
}

#[test]
fn huge_activation_axes_are_not_enumerated() {
    // [1e12] reshaped to [1e6, 1e6]: an index space of 1e12 elements.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("huge.onnx");
    let n = 1_000_000i64;
    let m = model(
        vec![node("Reshape", &["x", "shape"], &["r"], &[]), node("MatMul", &["r", "w"], &["y"], &[])],
        vec![int64s("shape", &[2], &[n, n]), floats("w", &[n, 2], 0)],
        vec![value_info("x", DataType::FLOAT, &[n * n])],
        vec![value_info("y", DataType::FLOAT, &[n, 2])],
    );
    // `w` is declared [1e6, 2] without data: refused by its size.
    write(&p, &m);
    expect_error(&p, &["`w`", "needs 8000000 bytes but 0 are present"]);
    let mut small = model(
        vec![
            node("Reshape", &["x", "shape"], &["r"], &[]),
            node("Transpose", &["r"], &["t"], &[("perm", vec![1, 0])]),
            node("ReduceSum", &["t", "axes"], &["y"], &[]),
        ],
        vec![int64s("shape", &[2], &[n, n]), int64s("axes", &[1], &[0])],
        vec![value_info("x", DataType::FLOAT, &[n * n])],
        vec![value_info("y", DataType::FLOAT, &[1, n])],
    );
    small.graph.as_mut().expect("graph").initializer.push(floats("unused", &[4, 4], 16));
    write(&p, &small);
    let t = Instant::now();
    compile(&p, &[]);
    assert!(t.elapsed() < Duration::from_secs(60), "took {:?}", t.elapsed());
}

#[test]
fn deeply_nested_slices_do_not_overflow_the_stack() {
    // w[1:] of w[1:] of ... 50,000 deep: refinements nested 50,000 levels.
    let depth: usize = std::env::var("DEPTH").ok().and_then(|d| d.parse().ok()).unwrap_or(50_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("deep.onnx");
    let mut nodes = Vec::with_capacity(depth);
    let names: Vec<String> = (0..=depth).map(|i| if i == 0 { "w".into() } else { format!("t{i}") }).collect();
    for i in 0..depth {
        nodes.push(node("Slice", &[&names[i], "one", "big", "zero"], &[&names[i + 1]], &[]));
    }
    let m = model(
        nodes,
        vec![
            floats("w", &[depth as i64 + 8], depth + 8),
            int64s("one", &[1], &[1]),
            int64s("big", &[1], &[i64::MAX]),
            int64s("zero", &[1], &[0]),
        ],
        vec![],
        vec![value_info(&names[depth], DataType::FLOAT, &[8])],
    );
    write(&p, &m);
    compile(&p, &[]);
}

#[test]
fn bad_opset_imports_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = model(
        vec![node("Relu", &["x"], &["y"], &[])],
        vec![],
        vec![value_info("x", DataType::FLOAT, &[2])],
        vec![value_info("y", DataType::FLOAT, &[2])],
    );
    let mut none = base.clone();
    none.opset_import.clear();
    write(&dir.path().join("none.onnx"), &none);
    expect_error(&dir.path().join("none.onnx"), &["imports no opset of the default domain"]);
    for v in [0i64, -5] {
        let mut m = base.clone();
        m.opset_import[0].version = v;
        let p = dir.path().join(format!("v{v}.onnx"));
        write(&p, &m);
        expect_error(&p, &[&format!("opset {v}"), "versions start at 1"]);
    }
    let mut m = base.clone();
    m.opset_import[0].version = 1_000_000_000_000;
    write(&dir.path().join("new.onnx"), &m);
    expect_error(&dir.path().join("new.onnx"), &["opset 1000000000000", "up to opset"]);
}

#[test]
fn invalid_tensors_and_types_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relu = |init: TensorProto| {
        model(
            vec![node("Add", &["x", &init.name.clone()], &["y"], &[])],
            vec![init],
            vec![value_info("x", DataType::FLOAT, &[2])],
            vec![value_info("y", DataType::FLOAT, &[2])],
        )
    };
    // 2^248 elements: the count wraps to 0 in 128 bits.
    let p = dir.path().join("wrap.onnx");
    write(&p, &relu(floats("w", &[1 << 62, 1 << 62, 1 << 62, 1 << 62], 0)));
    expect_error(&p, &["`w`", "more elements than any file can hold"]);
    let p = dir.path().join("neg.onnx");
    write(&p, &relu(floats("w", &[-1, -1], 0)));
    expect_error(&p, &["`w`", "negative dimension"]);
    // MatMul on complex numbers.
    let p = dir.path().join("complex.onnx");
    let m = model(
        vec![node("MatMul", &["x", "x"], &["y"], &[])],
        vec![],
        vec![value_info("x", DataType::COMPLEX64, &[2, 2])],
        vec![value_info("y", DataType::COMPLEX64, &[2, 2])],
    );
    write(&p, &m);
    expect_error(&p, &["MatMul of", "real numbers"]);
}

#[cfg(unix)]
#[test]
fn external_data_naming_a_fifo_does_not_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("weights.bin");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let mut w = floats("w", &[2], 0);
    w.data_location = DataLocation::EXTERNAL.into();
    let mut e = StringStringEntryProto::new();
    e.key = "location".into();
    e.value = "weights.bin".into();
    w.external_data.push(e);
    let m = model(
        vec![node("Add", &["x", "w"], &["y"], &[])],
        vec![w],
        vec![value_info("x", DataType::FLOAT, &[2])],
        vec![value_info("y", DataType::FLOAT, &[2])],
    );
    let p = dir.path().join("fifo.onnx");
    write(&p, &m);
    expect_error(&p, &["weights.bin", "not a regular file"]);
}

// ---- outputs ---------------------------------------------------------------

fn ecospac(args: &[&str]) -> (Option<i32>, String) {
    let run = run_limited(args, Duration::from_secs(300));
    (run.status.code(), String::from_utf8_lossy(&run.stderr).to_string())
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("ls").flatten() {
        if e.path().is_dir() {
            out.extend(snapshot(&e.path()));
        } else {
            out.push((e.path(), std::fs::read(e.path()).unwrap_or_default()));
        }
    }
    out.sort();
    out
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

#[test]
fn outputs_never_overwrite_or_land_in_an_input() {
    // A checkpoint folder: nothing may be written into it, existing or not.
    let ck = tempfile::tempdir().expect("tempdir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(common::fixture("hf/llama").join(f), ck.path().join(f)).expect("copy");
    }
    let before = snapshot(ck.path());
    for out in [ck.path().join("model.safetensors"), ck.path().join("sub/"), ck.path().join("new.onnx")] {
        let (code, msg) = ecospac(&["compile", s(ck.path()), "-o", s(&out), "--budget", "1.0"]);
        assert_eq!(code, Some(1), "{msg}");
        assert!(msg.contains("inside the input folder"), "{msg}");
    }
    let report = ck.path().join("config.json");
    let (code, msg) = ecospac(&["compile", s(ck.path()), "-o", "/nonexistent/x.onnx", "--report", s(&report)]);
    assert_eq!(code, Some(1), "{msg}");
    assert!(msg.contains("--report"), "{msg}");
    assert_eq!(before, snapshot(ck.path()), "the checkpoint changed");

    // An ONNX model with external data: neither file may be an output.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("in.onnx");
    std::fs::copy(common::fixture("bert-torchscript.onnx"), dir.path().join("plain.onnx")).expect("copy");
    let (code, msg) = ecospac(&["compile", s(&dir.path().join("plain.onnx")), "-o", s(&src), "--external-data"]);
    assert_eq!(code, Some(0), "{msg}");
    std::fs::remove_file(dir.path().join("plain.onnx")).expect("rm");
    // in.onnx reads in.onnx.data; rename the data to model.onnx.data.
    let proto = std::fs::read(&src).expect("read");
    let mut m = ModelProto::parse_from_bytes(&proto).expect("decode");
    for t in &mut m.graph.as_mut().expect("graph").initializer {
        for e in &mut t.external_data {
            if e.key == "location" {
                e.value = "model.onnx.data".into();
            }
        }
    }
    write(&src, &m);
    std::fs::rename(dir.path().join("in.onnx.data"), dir.path().join("model.onnx.data")).expect("mv");
    let before = snapshot(dir.path());
    let cases: [(&[&str], &str); 4] = [
        (&["-o", "in.onnx"], "is that file"),
        (&["-o", "model.onnx.data"], "is that file"),
        (&["-o", "model.onnx", "--external-data"], "the external data of --output"),
        (&["-o", "x.onnx", "--emit-plan", "model.onnx.data"], "--emit-plan"),
    ];
    for (args, needle) in cases {
        let mut full: Vec<String> = vec!["compile".into(), s(&src).into()];
        for a in args {
            full.push(if a.starts_with('-') { a.to_string() } else { s(&dir.path().join(a)).to_string() });
        }
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let (code, msg) = ecospac(&full);
        assert_eq!(code, Some(1), "{args:?}: {msg}");
        assert!(msg.contains("refusing") && msg.contains(needle), "{args:?}: {msg}");
    }
    assert_eq!(before, snapshot(dir.path()), "an input changed");
}

#[test]
fn side_outputs_only_on_success_and_stale_files_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.json");
    let report = dir.path().join("report.json");
    // The model cannot be written (its folder is a file): no plan, no report.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").expect("write");
    let weights_only = ["--budget", "0.5", "--criterion", "coupled", "--allocation", "global", "--refit", "none"];
    let fixture = common::fixture("bert-torchscript.onnx");
    let compile_to = |out: &Path| {
        let mut args = vec!["compile", s(&fixture), "-o", s(out), "--emit-plan", s(&plan), "--report", s(&report)];
        args.extend(weights_only);
        ecospac(&args)
    };
    let (code, msg) = compile_to(&blocker.join("out.onnx"));
    assert_eq!(code, Some(1), "{msg}");
    assert!(!plan.exists() && !report.exists(), "side outputs written by a failed compile");
    // The destination named, not the staged file; each cause once.
    let line = msg.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(line.contains("cannot write") && line.contains("out.onnx") && !line.contains(".ecospac-"), "{msg}");
    let parts: Vec<&str> = line.split(": ").collect();
    assert!(parts.iter().enumerate().all(|(i, p)| !parts[..i].contains(p)), "a cause repeats: {line}");
    // A file left by a killed run (its process is gone) is removed by the next run there.
    let stale = dir.path().join(".ecospac-0-abcdef");
    std::fs::write(&stale, vec![0u8; 1024]).expect("write");
    let good = dir.path().join("good.onnx");
    let (code, msg) = compile_to(&good);
    assert_eq!(code, Some(0), "{msg}");
    assert!(plan.exists() && report.exists() && good.exists());
    if cfg!(target_os = "linux") {
        assert!(!stale.exists() && msg.contains("left by an ecospac run that was killed"), "{msg}");
    }
}

/// Kills a compile at random moments while it writes a model of ~90 MB with
/// external data; the previous output stays whole (or none is there), a
/// SIGTERM leaves no staged file, and after a SIGKILL the next run removes them.
#[cfg(unix)]
#[test]
fn killed_compiles_leave_the_previous_output_and_no_temp_files() {
    use rand::{Rng, SeedableRng};
    let input = common::minilm_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("m.onnx");
    let args = ["compile", s(&input), "-o", s(&out), "--external-data"];
    let first = ecospac(&args);
    assert_eq!(first.0, Some(0), "{}", first.1);
    let whole = (std::fs::read(&out).expect("model"), std::fs::read(dir.path().join("m.onnx.data")).expect("data"));
    let t = Instant::now();
    ecospac(&args);
    let took = t.elapsed().as_millis() as u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    for round in 0..6 {
        let signal = if round % 2 == 0 { "TERM" } else { "KILL" };
        let mut child = Command::new(env!("CARGO_BIN_EXE_ecospac"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(rng.random_range(took / 4..=took.max(4))));
        let killed = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status();
        assert!(killed.expect("kill").success() || child.try_wait().expect("wait").is_some());
        child.wait().expect("wait");
        let now = (std::fs::read(&out).expect("model"), std::fs::read(dir.path().join("m.onnx.data")).expect("data"));
        assert!(now == whole, "round {round} ({signal}): the output is not the previous whole one");
        let staged: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".ecospac-"))
            .collect();
        if signal == "TERM" {
            assert!(staged.is_empty(), "round {round}: SIGTERM left {staged:?}");
        }
    }
    let (code, msg) = ecospac(&args);
    assert_eq!(code, Some(0), "{msg}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ecospac-"))
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "after the next run: {left:?}");
}

#[test]
fn plans_with_absurd_sizes_or_paths_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.json");
    let fixture = common::fixture("bert-torchscript.onnx");
    let weights_only = ["--budget", "0.5", "--criterion", "coupled", "--allocation", "global", "--refit", "none"];
    let out = dir.path().join("a.onnx");
    let mut args = vec!["compile", s(&fixture), "-o", s(&out), "--emit-plan", s(&plan)];
    args.extend(weights_only);
    let (code, msg) = ecospac(&args);
    assert_eq!(code, Some(0), "{msg}");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&plan).expect("plan")).expect("json");
    let apply = |edit: &dyn Fn(&mut serde_json::Value), needle: &str| {
        let mut d = doc.clone();
        edit(&mut d);
        let p = dir.path().join("edited.json");
        std::fs::write(&p, d.to_string()).expect("write");
        let out = dir.path().join("b.onnx");
        let (code, msg) = ecospac(&["compile", s(&fixture), "-o", s(&out), "--plan", s(&p)]);
        assert_eq!(code, Some(1), "{msg}");
        assert!(msg.contains(needle), "expected `{needle}` in: {msg}");
        assert!(!out.exists());
    };
    apply(&|d| d["groups"][0]["size"] = u32::MAX.into(), "4294967295 in blocks");
    apply(&|d| d["groups"][0]["kept"] = serde_json::json!([u32::MAX]), "index out of range");
    apply(&|d| d["refit_file"] = "../../etc/passwd".into(), "is not a file name beside the plan");
}

/// Whenever `onnx.checker.check_model(full_check=True)` accepts a fixture, it
/// accepts its compact model too (ONNX's own structural and type rules).
#[test]
fn compact_models_pass_the_onnx_checker_whenever_the_input_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pairs = Vec::new();
    for name in common::sliced_fixtures() {
        let input = common::fixture(name);
        let out = dir.path().join(name);
        let mut args = vec!["compile", s(&input), "-o", s(&out)];
        args.extend(["--budget", "0.5", "--criterion", "coupled", "--allocation", "global", "--refit", "none"]);
        let (code, msg) = ecospac(&args);
        assert_eq!(code, Some(0), "{name}: {msg}");
        pairs.push(serde_json::json!([input, out]));
    }
    let script = r#"
import json, sys, onnx
res = []
for src, out in json.loads(sys.argv[1]):
    def ok(p):
        try:
            onnx.checker.check_model(p, full_check=True)
            return None
        except Exception as e:
            return str(e).splitlines()[0]
    res.append([src, ok(src), ok(out)])
print(json.dumps(res))
"#;
    let python = common::root().join(".venv/bin/python");
    let run = Command::new(&python)
        .args(["-c", script, &serde_json::Value::Array(pairs).to_string()])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup.sh", python.display()));
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let res: Vec<(String, Option<String>, Option<String>)> = serde_json::from_slice(&run.stdout).expect("json");
    let mut checked = 0;
    let total = res.len();
    for (src, input_err, output_err) in res {
        if input_err.is_none() {
            checked += 1;
            assert_eq!(output_err, None, "{src}: the input passes onnx.checker, its compact model does not");
        }
    }
    eprintln!("{checked} of {total} fixtures pass onnx.checker (full_check), and so do their compact models");
    assert!(checked >= 10, "only {checked} fixtures pass the checker themselves");
}
