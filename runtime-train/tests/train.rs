//! The training runtime on CPU with tiny models, every one run as its IR
//! graph by the libtorch executor: a shrink step keeps the model's function
//! equal to the masked model's, optimizer state follows the parameters,
//! resume reproduces an uninterrupted run, and the exported ONNX matches the
//! trained model in ONNX Runtime; families that only the graph builders know
//! (Qwen2 with YaRN RoPE, Phi-3 with LongRoPE and fused projections, Gemma 2
//! and 3) and an exporter-made ONNX file with no checkpoint behind it train
//! the same way.
#![cfg(feature = "torch")]

mod common;

use common::root;
use ecospac_passes::prune::{Allocation, SlicePlan};
use ecospac_runtime_train::data::{text_files, train_bpe, Dataset};
use ecospac_runtime_train::net::{Net, Objective};
use ecospac_runtime_train::optim::AdamWConfig;
use ecospac_runtime_train::sparsity::{Schedule, Sparsifier, TrainCriterion};
use ecospac_runtime_train::trainer::{TrainConfig, Trainer};
use std::path::Path;
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

fn config(arch: &str, vocab: i64) -> serde_json::Value {
    if let "qwen2" | "phi3" | "gemma2" | "gemma3" = arch {
        // The configs transformers wrote for the checkpoint fixtures.
        let path = root().join(format!("tests/fixtures/hf/{arch}/config.json"));
        let text = std::fs::read_to_string(&path).expect("fixture config");
        let mut json: serde_json::Value = serde_json::from_str(&text).expect("json");
        json["vocab_size"] = vocab.into();
        return json;
    }
    match arch {
        "gpt2" => serde_json::json!({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": vocab,
            "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64}),
        "llama" => {
            serde_json::json!({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": vocab,
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "tie_word_embeddings": false})
        }
        _ => serde_json::json!({"model_type": "bert", "architectures": ["BertModel"], "vocab_size": vocab,
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "max_position_embeddings": 64, "type_vocab_size": 2, "layer_norm_eps": 1e-12}),
    }
}

/// A seeded random model. Tests run in parallel and torch's generator is
/// global, so seeding and drawing happen under one lock.
fn model(arch: &str, vocab: i64, seed: i64) -> Net {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    Net::init(&config(arch, vocab), Device::Cpu).expect("model")
}

/// An exporter-made ONNX fixture (no checkpoint behind it), trained as a causal LM.
fn onnx_model(name: &str) -> Net {
    let ir = ecospac_frontends::import_file(&root().join(format!("tests/fixtures/{name}.onnx"))).expect("import");
    Net::from_onnx(ir, Objective::Causal, Device::Cpu).expect("model")
}

/// The test corpus with every token id folded into `vocab`, in sequences of
/// 16 tokens (the length the ONNX fixtures were exported with).
fn folded(data: &Dataset, vocab: i64) -> Dataset {
    let fold = |s: &Vec<Vec<i64>>| s.iter().map(|q| q[..16].iter().map(|t| t % vocab).collect()).collect();
    Dataset { seq_len: 16, train: fold(&data.train), val: fold(&data.val) }
}

/// A small real corpus (the repository's own English text) and a BPE trained on it.
fn dataset() -> &'static (Dataset, i64) {
    static DATA: OnceLock<(Dataset, i64)> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files = text_files(&root().join("bench/sentences.txt")).expect("files");
        files.push(root().join("README.md"));
        let tok = train_bpe(&files, 400, &dir.path().join("tokenizer.json")).expect("bpe");
        let data = Dataset::build(&files, &tok, 17, 0.1).expect("dataset");
        (data, tok.get_vocab_size(true) as i64)
    })
}

fn ids(vocab: i64) -> Tensor {
    let v: Vec<i64> = (0..2 * 12).map(|i| (i * 37 + 11) % vocab).collect();
    Tensor::from_slice(&v).reshape([2, 12])
}

/// `plan` applied to `m` (made as `model(arch, 97, 1)`) equals the masked
/// model: every removed slice zeroed, nothing removed.
fn shrink_equals_masked(arch: &str, m: &mut Net, sp: &mut Sparsifier, plan: SlicePlan, density: f64) {
    let mut masked = model(arch, 97, 1);
    let cuts = sp.cuts(m, &plan).expect("cuts");
    tch::no_grad(|| {
        for ((name, axis), removed) in &cuts {
            let Some(t) = masked.params.get_mut(name) else { continue };
            let idx: Vec<i64> = removed.iter().map(|&p| p as i64).collect();
            let _ = t.index_fill_(*axis as i64, &Tensor::from_slice(&idx), 0.0);
        }
    });
    let before = m.num_params();
    sp.shrink(m, None, plan).expect("shrink");
    assert!(m.num_params() < before, "{arch}: nothing removed");
    assert!((sp.density(m) - density).abs() < 0.15, "{arch}: density {}", sp.density(m));
    let x = ids(97);
    let (a, b) = tch::no_grad(|| (masked.logits(&x).expect("masked"), m.logits(&x).expect("shrunk")));
    let diff = (a - b).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "{arch}: shrunk differs from masked by {diff}");
}

#[test]
fn one_shrink_step_equals_the_masked_model() {
    tch::set_num_threads(1);
    for arch in ["llama", "gpt2", "bert", "qwen2", "phi3", "gemma2", "gemma3"] {
        let mut m = model(arch, 97, 1);
        let mut sp = Sparsifier::new(&m, TrainCriterion::Magnitude, Allocation::Uniform, 1).expect("analysis");
        assert!(sp.coupling().groups.len() >= 4, "{arch}: {} groups", sp.coupling().groups.len());
        let plan = sp.plan(&mut m, 0.5).expect("planning").expect("a plan");
        shrink_equals_masked(arch, &mut m, &mut sp, plan, 0.5);
    }
}

/// The greedy allocation on collected Taylor importance removes whole heads
/// (key/value heads with their query heads, under GQA) beside dims and
/// channels, and the shrunk model still equals the masked one.
#[test]
fn greedy_shrinks_remove_whole_heads_and_equal_the_masked_model() {
    tch::set_num_threads(1);
    for arch in ["llama", "gpt2", "bert", "qwen2"] {
        let mut m = model(arch, 97, 1);
        let mut sp = Sparsifier::new(&m, TrainCriterion::Coupled, Allocation::Greedy, 1).expect("analysis");
        let heads = sp.coupling().groups.iter().filter(|g| g.outer).count();
        assert!(heads >= 2, "{arch}: {heads} whole-head groups");
        let loss = m.logits(&ids(97)).expect("logits").square().mean(Kind::Float);
        loss.backward();
        sp.collect(&m);
        let plan = sp.plan(&mut m, 0.3).expect("planning").expect("a plan");
        let gone: usize = sp
            .coupling()
            .groups
            .iter()
            .zip(&plan.groups)
            .filter(|(g, _)| g.outer)
            .map(|(g, p)| g.size - p.kept.len())
            .sum();
        assert!(gone > 0, "{arch}: no whole head removed at 0.3");
        shrink_equals_masked(arch, &mut m, &mut sp, plan, 0.3);
    }
}

fn train_config(out: &Path, steps: usize, target: f64, criterion: TrainCriterion) -> TrainConfig {
    TrainConfig {
        out: out.to_path_buf(),
        steps,
        batch: 4,
        accum: 2,
        adamw: AdamWConfig { lr: 3e-3, ..AdamWConfig::default() },
        warmup: 2,
        min_lr_ratio: 0.1,
        clip: 1.0,
        schedule: Schedule { target, start: 3, end: 7, every: 2 },
        criterion,
        allocation: Allocation::Uniform,
        align: 1,
        eval_every: 5,
        eval_sequences: 8,
        checkpoint_every: 5,
        seed: 7,
        device: Device::Cpu,
        bf16: false,
        mask_id: 1,
        progress: false,
    }
}

#[test]
fn optimizer_state_follows_the_parameters() {
    tch::set_num_threads(1);
    let (data, vocab) = dataset();
    let onnx_data = folded(data, 256);
    for (arch, criterion) in [
        ("llama", TrainCriterion::Coupled),
        ("gpt2", TrainCriterion::Uncoupled),
        ("bert", TrainCriterion::Coupled),
        ("qwen2", TrainCriterion::Coupled),
        ("phi3", TrainCriterion::Coupled),
        ("llama-torchscript.onnx", TrainCriterion::Coupled),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (net, data) = match arch.strip_suffix(".onnx") {
            Some(name) => (onnx_model(name), &onnx_data),
            None => (model(arch, *vocab, 2), data),
        };
        let mut t = Trainer::new(train_config(dir.path(), 9, 0.5, criterion), net).expect("trainer");
        let dense = t.model.num_params();
        let first = t.evaluate(data).expect("evaluate");
        for _ in 0..9 {
            let line = t.train_step(data).expect("step");
            assert!(line.loss.is_finite(), "{arch}: loss {}", line.loss);
            for (name, p) in &t.model.params {
                assert_eq!(t.opt.m[name].size(), p.size(), "{arch}: m of {name}");
                assert_eq!(t.opt.v[name].size(), p.size(), "{arch}: v of {name}");
            }
        }
        assert!(t.model.num_params() < dense, "{arch}: the model did not shrink");
        let density = t.sparsifier.density(&t.model);
        assert!((density - 0.5).abs() < 0.1, "{arch}: density {density}");
        let last = t.evaluate(data).expect("evaluate");
        assert!(last < first, "{arch}: validation loss {first} -> {last}: nothing learned");
    }
}

#[test]
fn resume_reproduces_the_uninterrupted_run() {
    tch::set_num_threads(1);
    let (data, vocab) = dataset();
    let dir = tempfile::tempdir().expect("tempdir");
    let full_dir = dir.path().join("full");
    let mut full = Trainer::new(train_config(&full_dir, 10, 0.5, TrainCriterion::Coupled), model("llama", *vocab, 3))
        .expect("trainer");
    full.run(data).expect("run");
    let resumed_cfg = train_config(&dir.path().join("resumed"), 10, 0.5, TrainCriterion::Coupled);
    let mut resumed = Trainer::resume(resumed_cfg, &full_dir.join("checkpoint-5")).expect("resume");
    assert_eq!(resumed.step, 5);
    resumed.run(data).expect("run");
    let a: Vec<f64> = full.history[5..].iter().map(|l| l.loss).collect();
    let b: Vec<f64> = resumed.history.iter().map(|l| l.loss).collect();
    assert_eq!(a.len(), 5);
    assert_eq!(a, b, "losses after resume");
    assert_eq!(full.model.num_params(), resumed.model.num_params());
}

#[test]
fn resume_reproduces_the_uninterrupted_run_of_an_onnx_model() {
    tch::set_num_threads(1);
    let data = folded(&dataset().0, 256);
    let dir = tempfile::tempdir().expect("tempdir");
    let full_dir = dir.path().join("full");
    let cfg = train_config(&full_dir, 10, 0.5, TrainCriterion::Coupled);
    let mut full = Trainer::new(cfg, onnx_model("gpt2-torchscript")).expect("trainer");
    full.run(&data).expect("run");
    assert!(full_dir.join("checkpoint-5/model.onnx").is_file(), "the checkpoint holds the graph");
    let resumed_cfg = train_config(&dir.path().join("resumed"), 10, 0.5, TrainCriterion::Coupled);
    let mut resumed = Trainer::resume(resumed_cfg, &full_dir.join("checkpoint-5")).expect("resume");
    assert_eq!(resumed.step, 5);
    resumed.run(&data).expect("run");
    let a: Vec<f64> = full.history[5..].iter().map(|l| l.loss).collect();
    let b: Vec<f64> = resumed.history.iter().map(|l| l.loss).collect();
    assert_eq!(a, b, "losses after resume");
    assert_eq!(full.model.num_params(), resumed.model.num_params());
    let (d1, d2) = (full.sparsifier.density(&full.model), resumed.sparsifier.density(&resumed.model));
    assert_eq!(d1, d2, "density after resume");
}

fn ort_env() -> &'static ort::environment::Environment {
    ecospac_backends::ort::environment(Some(&common::ort_library())).expect("load ORT")
}

#[test]
fn exported_onnx_matches_the_tch_model() {
    tch::set_num_threads(1);
    let (data, vocab) = dataset();
    for arch in ["llama", "gpt2", "bert", "qwen2", "phi3", "gemma2", "gemma3"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = Trainer::new(train_config(dir.path(), 8, 0.5, TrainCriterion::Coupled), model(arch, *vocab, 4))
            .expect("trainer");
        t.cfg.checkpoint_every = 0;
        t.run(data).expect("run");
        assert!(t.model.num_params() < t.history[0].params, "{arch}: did not shrink");
        let x = ids(*vocab);
        let (hidden, logits) = tch::no_grad(|| {
            let h = t.model.output(&x, "last_hidden_state").expect("hidden");
            let l = t.model.logits(&x).expect("logits");
            (h, l)
        });
        let mut session = ort::session::Session::builder(ort_env())
            .expect("builder")
            .commit_from_file(dir.path().join("model.onnx"))
            .expect("ORT loads the export");
        let shape = vec![2i64, 12];
        let ids_v: Vec<i64> = Vec::<i64>::try_from(&x.flatten(0, -1)).expect("ids");
        let mut feeds: Vec<(String, ort::value::DynValue)> = Vec::new();
        for input in session.inputs().iter().map(|i| i.name().to_string()).collect::<Vec<_>>() {
            let data = match input.as_str() {
                "input_ids" => ids_v.clone(),
                "attention_mask" => vec![1; 24],
                _ => vec![0; 24],
            };
            feeds.push((input, ort::value::Tensor::from_array((shape.clone(), data)).expect("tensor").into_dyn()));
        }
        let outputs = session.run(feeds).expect("run");
        let mut compared = 0;
        for (name, want) in [("last_hidden_state", &hidden), ("logits", &logits)] {
            let Some(v) = outputs.get(name) else { continue };
            compared += 1;
            let (_, got) = v.try_extract_tensor::<f32>().expect("f32");
            let want: Vec<f32> = Vec::<f32>::try_from(&want.flatten(0, -1).to_kind(Kind::Float)).expect("floats");
            let diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(diff < 1e-4, "{arch} {name}: ONNX vs tch differ by {diff}");
        }
        assert!(compared > 0, "{arch}: the exported model has neither last_hidden_state nor logits");
    }
}

#[test]
fn dense_checkpoints_round_trip_through_the_checkpoint_frontend() {
    tch::set_num_threads(1);
    let (data, vocab) = dataset();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = train_config(dir.path(), 3, 1.0, TrainCriterion::Coupled);
    cfg.checkpoint_every = 0;
    let mut t = Trainer::new(cfg, model("llama", *vocab, 5)).expect("trainer");
    t.run(data).expect("run");
    // The final checkpoint is a standard one: the hf frontend builds its graph.
    let mut hf =
        ecospac_frontends::import_checkpoint(&dir.path().join("final")).expect("import the trained checkpoint");
    ecospac_passes::run_passes(&mut hf.model, &["infer-shapes"]).expect("infer");
    let proof = ecospac_ir::verify(&hf.model.graph).expect("verify");
    let onnx = dir.path().join("from-checkpoint.onnx");
    ecospac_backends::export_onnx(&hf.model, proof, &onnx, &Default::default()).expect("export");
    let x = ids(*vocab);
    let logits = tch::no_grad(|| t.model.logits(&x)).expect("logits");
    let mut session =
        ort::session::Session::builder(ort_env()).expect("builder").commit_from_file(&onnx).expect("load");
    let ids_v: Vec<i64> = Vec::<i64>::try_from(&x.flatten(0, -1)).expect("ids");
    let feeds = vec![
        ("input_ids".to_string(), ort::value::Tensor::from_array((vec![2i64, 12], ids_v)).expect("t").into_dyn()),
        (
            "attention_mask".to_string(),
            ort::value::Tensor::from_array((vec![2i64, 12], vec![1i64; 24])).expect("t").into_dyn(),
        ),
    ];
    let outputs = session.run(feeds).expect("run");
    let (_, got) = outputs["logits"].try_extract_tensor::<f32>().expect("f32");
    let want: Vec<f32> = Vec::<f32>::try_from(&logits.flatten(0, -1)).expect("floats");
    let diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-4, "checkpoint graph vs tch: {diff}");
}

/// What an ONNX file trains: its weights, not the RoPE frequency table the
/// dynamo exporter stores as an initializer (it feeds only `Cos` and `Sin`)
/// nor the cos/sin caches of a fused `RotaryEmbedding`.
#[test]
fn rope_frequencies_of_an_onnx_file_are_not_weights() {
    let ir = ecospac_frontends::import_file(&root().join("tests/fixtures/llama-dynamo.onnx")).expect("import");
    let weights = ecospac_runtime_train::net::weights(&ir);
    let g = &ir.graph;
    let float: Vec<&str> = g
        .initializers
        .iter()
        .map(|&v| g.value(v))
        .filter(|v| v.constant.as_ref().is_some_and(|t| t.dtype.is_float() && t.numel() > 1))
        .map(|v| v.name.as_str())
        .collect();
    assert!(float.contains(&"expand_2"), "the fixture's frequency table: {float:?}");
    assert!(!weights.contains("expand_2"), "the frequency table is trained");
    assert_eq!(weights.len(), float.len() - 1, "every other float initializer is a weight: {weights:?}");
    // The cos/sin caches of ONNX Runtime's fused RotaryEmbedding are tables.
    let ir = ecospac_frontends::import_file(&root().join("tests/fixtures/llama-ortopt-rotary.onnx")).expect("import");
    let weights = ecospac_runtime_train::net::weights(&ir);
    assert!(!weights.is_empty() && !weights.contains("cos_cache") && !weights.contains("sin_cache"), "{weights:?}");
}
