//! The compile flags are shorthand for a recipe: the recipe `ecospac recipe`
//! prints compiles every fixture to the same bytes; bad recipes and foreign
//! plans are refused before anything is written.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

fn ecospac(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ecospac")).args(args).output().expect("run ecospac")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn ok(out: &Output) -> &Output {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn a_printed_recipe_compiles_to_the_same_bytes_as_its_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    for budget in ["0.5"] {
        let recipe = dir.path().join(format!("r{budget}.toml"));
        let text = ok(&ecospac(&["recipe", "--budget", budget])).stdout.clone();
        std::fs::write(&recipe, &text).expect("write recipe");
        for name in sliced_fixtures() {
            let src = fixture(name);
            let (a, b) = (dir.path().join("a.onnx"), dir.path().join("b.onnx"));
            // The fixtures were traced at 16 positions; generated calibration data must match.
            let data = ["--calibration-length", "16"];
            ok(&ecospac(&[&["compile", &s(&src), "-o", &s(&a), "--budget", budget][..], &data].concat()));
            ok(&ecospac(&[&["compile", &s(&src), "-o", &s(&b), "--recipe", &s(&recipe)][..], &data].concat()));
            let (x, y) = (std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
            assert!(x == y, "{name} at {budget}: the recipe's output differs from the flags' output");
            assert!(y.len() < std::fs::metadata(&src).expect("src").len() as usize, "{name}: nothing removed");
        }
    }
}

#[test]
fn bad_recipes_are_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = fixture("bert-torchscript.onnx");
    let out = dir.path().join("out.onnx");
    let cases = [
        ("[[step]]\npass = \"prepare\"\n[[step]]\npass = \"prune-harder\"\n", "step 2: unknown pass `prune-harder`"),
        (
            "[[step]]\npass = \"prepare\"\n[[step]]\npass = \"analyse-coupling\"\nheads = \"yes\"\n",
            "step 2 (`analyse-coupling`)",
        ),
        (
            "[[step]]\npass = \"prepare\"\n[[step]]\npass = \"analyse-coupling\"\n[[step]]\npass = \"allocate\"\n",
            "step 3 (`allocate`) needs the scores",
        ),
        ("[[step]]\npass = \"slice\"\n", "needs the slice plan"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let recipe = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&recipe, text).expect("write");
        let r = ecospac(&["compile", &s(&src), "-o", &s(&out), "--recipe", &s(&recipe)]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{text}: {err}");
        assert!(err.contains(needle), "{text}: expected `{needle}` in: {err}");
        assert!(!err.contains("calibration data:"), "{text}: refused only after work began: {err}");
        assert!(!out.exists(), "{text}: something was written");
    }
}

#[test]
fn a_plan_from_another_graph_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.json");
    let a = dir.path().join("a.onnx");
    ok(&ecospac(&[
        "compile",
        &s(&fixture("gpt2-torchscript.onnx")),
        "-o",
        &s(&a),
        "--budget",
        "0.5",
        "--criterion",
        "coupled",
        "--allocation",
        "global",
        "--refit",
        "none",
        "--emit-plan",
        &s(&plan),
    ]));
    for other in ["gpt2-dynamo.onnx", "llama-torchscript.onnx"] {
        let out = dir.path().join("b.onnx");
        let r = ecospac(&["compile", &s(&fixture(other)), "-o", &s(&out), "--plan", &s(&plan)]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{other}: {err}");
        assert!(err.contains("the plan does not fit this model"), "{other}: {err}");
        assert!(err.contains("cuts `"), "{other}: the first mismatch is named: {err}");
        assert!(!out.exists(), "{other}: an output was written");
    }
}
