//! `ecospac train` end to end (feature `train`): pre-training a tiny LLaMA on
//! the repository's README with a BPE trained on it, shrinking to half, the
//! ONNX check, and resuming from a checkpoint.
#![cfg(feature = "train")]

mod common;

use common::root;
use std::process::Command;

/// Runs `ecospac ARGS`: success, and stdout + stderr.
fn ecospac(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ecospac")).args(args).output().expect("run ecospac");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn train(args: &[&str]) -> (bool, String) {
    ecospac(&[&["train"], args].concat())
}

#[test]
fn train_shrinks_exports_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 1, "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 128, "rms_norm_eps": 1e-5}"#,
    )
    .unwrap();
    let out = dir.path().join("run");
    let readme = root().join("README.md");
    let common = [
        "--data",
        readme.to_str().unwrap(),
        "--vocab",
        "300",
        "--steps",
        "12",
        "--batch",
        "4",
        "--seq-len",
        "32",
        "--target",
        "0.5",
        "--start",
        "2",
        "--end",
        "8",
        "--every",
        "2",
        "--eval-every",
        "6",
        "--warmup",
        "2",
        "--checkpoint-every",
        "6",
        "--lr",
        "3e-3",
        "--align",
        "1",
        "--device",
        "cpu",
    ];
    let mut args = vec!["--config", config.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(&common);
    let (ok, text) = train(&args);
    assert!(ok, "{text}");
    assert!(text.contains("ONNX Runtime vs the trained model"), "{text}");
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 12);
    let params: Vec<i64> = lines.iter().map(|l| l["params"].as_i64().unwrap()).collect();
    assert!(params[11] < params[0], "the model shrank: {params:?}");
    assert!((lines[11]["density"].as_f64().unwrap() - 0.5).abs() < 0.1, "{}", lines[11]);
    for f in [
        "final/model.safetensors",
        "final/optimizer.safetensors",
        "final/plans.json",
        "checkpoint-6/trainer_state.json",
        "model.onnx",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // Resume from step 6 into a new folder: the same losses for steps 7..12.
    let resumed = dir.path().join("resumed");
    let ckpt = out.join("checkpoint-6");
    let mut args =
        vec!["--config", config.to_str().unwrap(), "-o", resumed.to_str().unwrap(), "--resume", ckpt.to_str().unwrap()];
    args.extend_from_slice(&common);
    let tok = out.join("tokenizer.json");
    args.extend_from_slice(&["--tokenizer", tok.to_str().unwrap()]);
    let (ok, text) = train(&args);
    assert!(ok, "{text}");
    let log2 = std::fs::read_to_string(resumed.join("log.jsonl")).unwrap();
    let a: Vec<f64> = lines[6..].iter().map(|l| l["loss"].as_f64().unwrap()).collect();
    let b: Vec<f64> =
        log2.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap()).collect();
    assert_eq!(a, b);
}

/// The TorchScript BERT fixture and its compile at `--budget 0.5` (no calibration) in `dir`.
fn compact_bert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let original = common::fixture("bert-torchscript.onnx");
    let compact = dir.join("compact.onnx");
    let (orig, comp) = (original.to_str().unwrap(), compact.to_str().unwrap());
    let (ok, text) = ecospac(&["compile", orig, "--budget", "0.5", "--no-calibration", "-o", comp]);
    assert!(ok, "{text}");
    (original, compact)
}

/// `train --from compact.onnx --teacher original.onnx`: a compile at half the
/// parameters repaired by distillation on `.npz` input batches, written as
/// ONNX and checked in ONNX Runtime; the original shrunk while distilling
/// from itself; and `compile --recover` in one command.
#[test]
fn train_distils_a_compact_model_from_its_original() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (original, compact) = compact_bert(dir.path());
    let (orig, comp) = (original.to_str().unwrap(), compact.to_str().unwrap());
    let model = ecospac_frontends::import_file(&original).expect("import");
    let bind = std::collections::HashMap::from([("*".to_string(), 16)]);
    let arrays = ecospac_passes::synthetic::synthetic_inputs(&model, 48, &bind, 3).expect("inputs");
    let npz = dir.path().join("data.npz");
    ecospac_frontends::data::write_npz(&npz, &arrays).expect("npz");
    let data = npz.to_str().unwrap();
    let pair = ["--from", comp, "--teacher", orig, "--data", data];
    let out = dir.path().join("run");
    let settings = ["--steps", "20", "--batch", "4", "--lr", "3e-3", "--warmup", "2", "--eval-every", "10"];
    let (ok, text) = train(&[&pair[..], &settings, &["--device", "cpu", "-o", out.to_str().unwrap()]].concat());
    assert!(ok, "{text}");
    assert!(text.contains("step 10/20") && text.contains("ONNX Runtime vs the trained model"), "{text}");
    let log = std::fs::read_to_string(out.join("log.jsonl")).expect("log");
    assert_eq!(log.lines().count(), 20);
    let curve: Vec<f64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["validation_cosine"].as_f64())
        .collect();
    assert_eq!(curve.len(), 2);
    let distilled = ecospac_frontends::import_file(&out.join("model.onnx")).expect("written model");
    let compact_model = ecospac_frontends::import_file(&compact).expect("compact");
    assert_eq!(distilled.graph.parameters(), compact_model.graph.parameters());

    // Shrinking while distilling: the original itself, from dense to half its prunable parameters.
    let run2 = dir.path().join("run2");
    let itself = ["--from", orig, "--teacher", orig, "--data", data, "--device", "cpu"];
    let shrink = ["--target", "0.5", "--start", "2", "--end", "12", "--every", "2", "--align", "1"];
    let (ok, text) = train(&[&itself[..], &settings, &shrink, &["-o", run2.to_str().unwrap()]].concat());
    assert!(ok, "{text}");
    assert!(text.contains("density") && text.contains("ONNX Runtime vs the trained model"), "{text}");
    let log = std::fs::read_to_string(run2.join("log.jsonl")).expect("log");
    let last: serde_json::Value = serde_json::from_str(log.lines().last().expect("a line")).expect("json");
    let density = last["density"].as_f64().expect("density");
    assert!((density - 0.5).abs() < 0.1, "density {density}");
    let shrunk = ecospac_frontends::import_file(&run2.join("model.onnx")).expect("written model");
    assert!(shrunk.graph.parameters() < model.graph.parameters(), "it did not shrink");

    // One command: compile, distil, check, write.
    let recovered = dir.path().join("recovered.onnx");
    let compile = ["compile", orig, "--budget", "0.5", "--no-calibration"];
    let (ok, text) =
        ecospac(&[&compile[..], &["--recover", "12", "--data", data, "-o", recovered.to_str().unwrap()]].concat());
    assert!(ok, "{text}");
    assert!(
        text.contains("recovered by 12 distillation steps")
            && text.contains("ONNX Runtime vs the recovered model: max"),
        "{text}"
    );
    // 48 samples, 9 held out: a batch is the 39 left (the default is 48).
    assert!(text.contains("batches of 39 (not 48)"), "{text}");
    let written = ecospac_frontends::import_file(&recovered).expect("recovered model");
    assert_eq!(written.graph.parameters(), compact_model.graph.parameters());
    let never = dir.path().join("never.onnx");
    let (ok, text) = ecospac(&[&compile[..], &["--recover", "5", "-o", never.to_str().unwrap()]].concat());
    assert!(!ok && text.contains("--recover needs --data"), "{text}");
    assert!(!never.exists());

    // Recovery is a pass: `ecospac recipe` prints it, a recipe runs it, and
    // `--dump-after recover` shows the graph it leaves.
    let (ok, recipe) = ecospac(&["recipe", "--budget", "0.5", "--no-calibration", "--recover", "12", "--data", data]);
    assert!(ok && recipe.contains("pass = \"recover\"") && recipe.contains("steps = 12"), "{recipe}");
    assert!(recipe.contains("lengths = \"auto\"") && recipe.contains("batch = 48"), "{recipe}");
    let r = dir.path().join("r.toml");
    std::fs::write(&r, &recipe).expect("recipe");
    let via_recipe = dir.path().join("via-recipe.onnx");
    let run = ["compile", orig, "--recipe", r.to_str().unwrap(), "--dump-after", "recover"];
    let (ok, text) = ecospac(&[&run[..], &["-o", via_recipe.to_str().unwrap()]].concat());
    assert!(ok && text.contains("recovered by 12 distillation steps") && text.contains("; after recover"), "{text}");
    let written = ecospac_frontends::import_file(&via_recipe).expect("recovered model");
    assert_eq!(written.graph.parameters(), compact_model.graph.parameters());
    let early = dir.path().join("early.toml");
    std::fs::write(&early, "[[step]]\npass = \"recover\"\nsteps = 5\ndata = \"x.npz\"\n").expect("recipe");
    let (ok, text) = ecospac(&["compile", orig, "--recipe", early.to_str().unwrap(), "-o", never.to_str().unwrap()]);
    assert!(!ok && text.contains("recover") && text.contains("slice"), "{text}");
    assert!(!never.exists());
}

/// A decoder from ONNX Runtime GenAI's builder (`GroupQueryAttention`, the
/// key/value cache as graph inputs) compiled down to fewer query heads is
/// repaired the same way: the `.npz` holds the token inputs only, the cache
/// starts empty (a prompt), and the written model keeps its cut head count.
#[test]
fn train_distils_a_genai_decoder_with_its_cache_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = common::fixture("llama-genai.onnx");
    let compact = dir.path().join("compact.onnx");
    let (orig, comp) = (original.to_str().unwrap(), compact.to_str().unwrap());
    let (ok, text) = ecospac(&["compile", orig, "--budget", "0.3", "-o", comp]);
    assert!(ok, "{text}");
    let heads = |path: &std::path::Path| -> Vec<i64> {
        let m = ecospac_frontends::import_file_with_data(path).expect("import").model;
        m.graph
            .nodes()
            .filter_map(|(_, n)| match &n.op {
                ecospac_ir::Op::GroupQueryAttention(g) => Some(g.num_heads),
                _ => None,
            })
            .collect()
    };
    assert_eq!(heads(&compact), [2, 2], "the compile at 0.3 cuts half the query heads (BENCHMARKS.md)");
    let ids: Vec<i64> = (0..48 * 12).map(|i| 3 + (i * 37 % 250)).collect();
    let arrays = vec![
        ("input_ids".to_string(), ecospac_ir::Tensor::from_i64s(vec![48, 12], &ids)),
        ("attention_mask".to_string(), ecospac_ir::Tensor::from_i64s(vec![48, 12], &[1; 48 * 12])),
    ];
    let npz = dir.path().join("tokens.npz");
    ecospac_frontends::data::write_npz(&npz, &arrays).expect("npz");
    let out = dir.path().join("run");
    let args = ["--from", comp, "--teacher", orig, "--data", npz.to_str().unwrap(), "--steps", "10", "--batch", "8"];
    let (ok, text) =
        train(&[&args[..], &["--eval-every", "5", "--device", "cpu", "-o", out.to_str().unwrap()]].concat());
    assert!(ok, "{text}");
    assert!(text.contains("step 10/10") && text.contains("ONNX Runtime vs the trained model"), "{text}");
    assert_eq!(heads(&out.join("model.onnx")), [2, 2]);
    // In one command: the recovery data calibrates too (the cache filled in).
    let recovered = dir.path().join("recovered.onnx");
    let one = ["compile", orig, "--budget", "0.3", "--recover", "4", "--data", npz.to_str().unwrap()];
    let (ok, text) = ecospac(&[&one[..], &["-o", recovered.to_str().unwrap()]].concat());
    assert!(ok, "{text}");
    assert!(text.contains("tokens.npz (48 samples, the --recover data)"), "{text}");
    assert!(text.contains("recovered by 4 distillation steps"), "{text}");
}

/// `train --teacher --group-by-length` on text: batches of like-length
/// texts padded to a few tokens past their longest, so fewer positions a sample than the
/// fixed `--seq-len`, and the same model written and checked.
#[test]
fn distillation_groups_texts_by_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (original, compact) = compact_bert(dir.path());
    let (orig, comp) = (original.to_str().unwrap(), compact.to_str().unwrap());
    let tok = root().join("tests/fixtures/tiny-tokenizer.json");
    let data = root().join("bench/sentences.txt");
    let base =
        ["--from", comp, "--teacher", orig, "--data", data.to_str().unwrap(), "--tokenizer", tok.to_str().unwrap()];
    let settings = ["--steps", "6", "--batch", "8", "--seq-len", "48", "--eval-every", "3", "--device", "cpu"];
    let average = |text: &str| -> f64 {
        let at = text.find(" positions on average").unwrap_or_else(|| panic!("no length in {text}"));
        text[..at].rsplit(' ').next().and_then(|x| x.parse().ok()).unwrap_or_else(|| panic!("{text}"))
    };
    let (fixed, grouped) = (dir.path().join("fixed"), dir.path().join("grouped"));
    let (ok, text) = train(&[&base[..], &settings, &["-o", fixed.to_str().unwrap()]].concat());
    assert!(ok, "{text}");
    assert_eq!(average(&text), 48.0, "{text}");
    let (ok, text) = train(&[&base[..], &settings, &["--group-by-length", "-o", grouped.to_str().unwrap()]].concat());
    assert!(ok, "{text}");
    let shorter = average(&text);
    assert!(shorter > 1.0 && shorter < 40.0, "{text}");
    assert!(text.contains("ONNX Runtime vs the trained model"), "{text}");
    let written = ecospac_frontends::import_file(&grouped.join("model.onnx")).expect("written model");
    let compact_model = ecospac_frontends::import_file(&compact).expect("compact");
    assert_eq!(written.graph.parameters(), compact_model.graph.parameters());
}

/// SIGTERM in the middle of a distillation ends it quietly with status 130,
/// staged outputs removed and no model written (no failure inside libtorch
/// from exit handlers run under a step).
#[cfg(unix)]
#[test]
fn an_interrupted_distillation_ends_quietly() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let (original, compact) = compact_bert(dir.path());
    let tok = root().join("tests/fixtures/tiny-tokenizer.json");
    let data = root().join("bench/sentences.txt");
    let out = dir.path().join("run");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ecospac"))
        .args(["train", "--from", compact.to_str().unwrap(), "--teacher", original.to_str().unwrap()])
        .args(["--data", data.to_str().unwrap(), "--tokenizer", tok.to_str().unwrap(), "--steps", "100000"])
        .args(["--batch", "8", "--seq-len", "32", "--device", "cpu", "-o", out.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut text = String::new();
    while !text.contains("step 0/") {
        let mut line = String::new();
        assert!(err.read_line(&mut line).expect("read") > 0, "ended early: {text}");
        text.push_str(&line);
    }
    // Mid-step: the validation before step 1 is done.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    std::io::Read::read_to_string(&mut err, &mut text).expect("read");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(text.contains("interrupted: removed"), "{text}");
    assert!(!text.contains("panicked") && !text.contains("INTERNAL ASSERT"), "{text}");
    assert!(!out.join("model.onnx").exists());
}

/// `compile --recover --data TEXT`: the text calibrates too (one text per
/// line in a file with no blank line), unless calibration data is given.
#[test]
fn compile_recover_calibrates_on_its_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = root().join("tests/fixtures/gpt2-torchscript.onnx");
    let tok = root().join("tests/fixtures/tiny-tokenizer.json");
    let data = root().join("bench/sentences.txt");
    let out = dir.path().join("c.onnx");
    let (m, t, d, o) = (model.to_str().unwrap(), tok.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    // The fixture was exported for sequences of 16 tokens.
    let base = ["compile", m, "--budget", "0.5", "--tokenizer", t, "--calibration-length", "16"];
    let args = [&base[..], &["--recover", "2", "--data", d, "-o", o]].concat();
    let (ok, text) = ecospac(&args);
    assert!(ok, "{text}");
    assert!(text.contains("sentences.txt (64 texts × 16 tokens, the --recover data)"), "{text}");
    // Text with a mask, token inputs of no fixed length: batches of like-length texts by default.
    assert!(text.contains("(grouped by length)"), "{text}");
    // The traced graph holds its 16 tokens inside (a Reshape): texts shorter
    // than that would make shorter batches, which it cannot run, so fixed rows.
    let short = dir.path().join("short.txt");
    std::fs::write(&short, (0..40).map(|i| format!("Cats sat {i}.\n\n")).collect::<String>()).expect("text");
    let (ok, text) = ecospac(&[&base[..], &["--recover", "2", "--data", short.to_str().unwrap(), "-o", o]].concat());
    assert!(ok, "{text}");
    assert!(text.contains("fixed rows, not grouped by length: the models do not run at"), "{text}");
    assert!(!text.contains("(grouped by length)") && text.contains("recovered by 2 distillation steps"), "{text}");
    let (ok, text) = ecospac(&[&args[..], &["--calibration-samples", "24"]].concat());
    assert!(ok && text.contains("(24 texts × 16 tokens, the --recover data)"), "{text}");
    let (ok, text) = ecospac(&[&args[..], &["--no-calibration"]].concat());
    assert!(ok && !text.contains("the --recover data"), "{text}");
}

/// `train --from model.onnx`: an exporter-made GPT-2 graph with no checkpoint
/// behind it trains as a causal LM with the EcoSpa schedule, shrinks, and its
/// export is checked in ONNX Runtime; without a tokenizer or an objective, or
/// with an objective for a config, it is refused before anything is written.
#[test]
fn train_shrinks_an_onnx_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = root().join("tests/fixtures/gpt2-torchscript.onnx");
    let tok = root().join("tests/fixtures/tiny-tokenizer.json");
    let data = root().join("bench/sentences.txt");
    let out = dir.path().join("run");
    let base = [
        "--from",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    let (ok, text) = train(&[&base[..], &["--tokenizer", tok.to_str().unwrap()]].concat());
    assert!(!ok && text.contains("--objective"), "{text}");
    let (ok, text) = train(&[&base[..], &["--objective", "causal"]].concat());
    assert!(!ok && text.contains("--tokenizer"), "{text}");
    assert!(!out.exists(), "nothing is written for a refused run");
    let schedule = [
        "--objective",
        "causal",
        "--tokenizer",
        tok.to_str().unwrap(),
        "--steps",
        "8",
        "--batch",
        "4",
        "--seq-len",
        "16",
        "--target",
        "0.5",
        "--start",
        "2",
        "--end",
        "6",
        "--every",
        "2",
        "--warmup",
        "2",
        "--eval-every",
        "4",
        "--checkpoint-every",
        "4",
        "--lr",
        "3e-3",
        "--align",
        "1",
    ];
    // The exporter baked the sequence length 16 into a Reshape: another length
    // fails there, and the error names the node in one line.
    let mut wrong = schedule.to_vec();
    wrong[9] = "12";
    let (ok, text) = train(&[&base[..], &wrong[..]].concat());
    assert!(!ok && text.contains("Reshape_2") && !text.contains("frame #"), "{text}");
    let (ok, text) = train(&[&base[..], &schedule[..]].concat());
    assert!(ok, "{text}");
    assert!(text.contains("ONNX Runtime vs the trained model"), "{text}");
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let params: Vec<i64> = lines.iter().map(|l| l["params"].as_i64().unwrap()).collect();
    assert!(params[7] < params[0], "the model shrank: {params:?}");
    assert!(out.join("checkpoint-4/model.onnx").is_file() && !out.join("checkpoint-4/config.json").exists());
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{"model_type": "gpt2", "n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 32}"#)
        .unwrap();
    let other = dir.path().join("other");
    let args = ["--config", config.to_str().unwrap(), "--objective", "causal", "--data", data.to_str().unwrap()];
    let (ok, text) = train(&[&args[..], &["-o", other.to_str().unwrap()]].concat());
    assert!(!ok && text.contains("--objective is for ONNX files"), "{text}");
}
