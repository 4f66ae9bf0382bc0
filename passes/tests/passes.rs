//! Snapshot tests of the passes on small text-form graphs, run through the
//! pipeline (so the verifier runs after each pass), and the pipeline's contracts.

use ecospac_ir::text::{parse, print};
use ecospac_passes::pipeline::{Compilation, Env, Pipeline, Recipe};
use ecospac_passes::{run_passes, Changed};

/// An exporter-style head split: the Reshape target is computed from Shape at run time.
const HEAD_SPLIT: &str = r#"opset "" 17
graph "heads"
input v0 "x": f32[batch, seq, 64]
init v1 "q.weight" = f32[64, 64] bytes 16384
init v2 "zero" = i64[1] [0]
init v3 "one" = i64[1] [1]
init v4 "tail" = i64[2] [4, 16]
init v5 "perm_src" = i64[] [2]
node n0 "/q" MatMul (v0, v1) -> (v6 "q")
node n1 "/shape" Shape (v6) -> (v7 "q_shape")
node n2 "/b" Gather {axis = 0} (v7, v2) -> (v8 "b")
node n3 "/s" Gather {axis = 0} (v7, v3) -> (v9 "s")
node n4 "/target" Concat {axis = 0} (v8, v9, v4) -> (v10 "target")
node n5 "/split_heads" Reshape (v6, v10) -> (v11 "q_heads")
node n6 "/dim" Shape {start = -1} (v11) -> (v12 "head_dim")
node n7 "/t" Transpose {perm = ints[0, 2, 1, 3]} (v11) -> (v13 "q_t")
output v13
output v12
"#;

fn run(text: &str, passes: &[&str]) -> (String, Vec<Changed>) {
    let mut m = parse(text).expect("parse");
    let timings = run_passes(&mut m, passes).expect("run");
    (print(&m), timings.iter().map(|t| t.changed).collect())
}

#[test]
fn infer_shapes_follows_shape_chains_symbolically() {
    let (text, changed) = run(HEAD_SPLIT, &["infer-shapes"]);
    assert_eq!(changed, vec![Changed::Yes]);
    assert!(text.contains(r#"(v11 "q_heads": f32[batch, seq, 4, 16])"#), "{text}");
    insta::assert_snapshot!("head_split_inferred", text);
}

#[test]
fn folding_replaces_known_shape_values_and_keeps_symbolic_ones() {
    let (text, changed) = run(HEAD_SPLIT, &["infer-shapes", "fold-shape-constants", "eliminate-dead-nodes"]);
    assert_eq!(changed, vec![Changed::Yes, Changed::Yes, Changed::No], "the folded node itself is removed by the fold");
    // The head_dim Shape is static (16) and is folded; the target depends on batch/seq and stays.
    assert!(text.contains(r#"init v12 "head_dim" = i64[1] [16]"#), "{text}");
    assert!(text.contains("/target"), "{text}");
    insta::assert_snapshot!("head_split_folded", text);
}

#[test]
fn a_second_run_changes_nothing() {
    let (once, _) = run(HEAD_SPLIT, &["infer-shapes", "fold-shape-constants", "eliminate-dead-nodes"]);
    let (twice, changed) = run(&once, &["infer-shapes", "fold-shape-constants", "eliminate-dead-nodes"]);
    assert_eq!(once, twice);
    assert_eq!(changed[1..], [Changed::No, Changed::No]);
}

#[test]
fn a_broken_input_is_refused_before_any_pass() {
    let broken = HEAD_SPLIT.replace(r#"node n0 "/q" MatMul (v0, v1)"#, r#"node n0 "/q" MatMul (v0, v4)"#);
    let mut m = parse(&broken).expect("parse");
    let err = run_passes(&mut m, &["infer-shapes"]).expect_err("invalid");
    assert!(err.to_string().contains("the input graph does not verify"), "{err}");
    assert!(err.to_string().contains("`/q`"), "{err}");
}

#[test]
fn dump_after_records_the_text_form() {
    let env = Env::default();
    let recipe = Recipe::of(&["infer-shapes", "fold-shape-constants"]);
    let mut pm = Pipeline::new(&recipe, &env).expect("valid").dump_after("infer-shapes").expect("known");
    let mut cx = Compilation::new(parse(HEAD_SPLIT).expect("parse"));
    pm.run(&mut cx, &env).expect("run");
    assert_eq!(pm.dumps().len(), 1);
    assert_eq!(pm.dumps()[0].0, "infer-shapes");
    assert!(pm.dumps()[0].1.contains("q_heads"));
    let err = Pipeline::new(&recipe, &env).expect("valid").dump_after("slice").err().expect("not a step");
    assert!(err.to_string().contains("`slice` is not a step"), "{err}");
}

/// Recipes are checked against the registry and the passes' contracts before anything runs.
#[test]
fn recipes_are_validated_before_running() {
    let env = Env::default();
    let err = |text: &str| match Recipe::parse_toml(text).map_err(Into::into).and_then(|r| Pipeline::new(&r, &env)) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.to_string(),
    };
    let e = err("[[step]]\npass = \"prune-everything\"");
    assert!(e.contains("unknown pass `prune-everything`") && e.contains("known passes: infer-shapes"), "{e}");
    let e = err("[[step]]\npass = \"prepare\"\n[[step]]\npass = \"analyse-coupling\"\nhead = true");
    assert!(e.contains("step 2 (`analyse-coupling`)") && e.contains("unknown field `head`"), "{e}");
    let e = err("[[step]]\npass = \"prepare\"\n[[step]]\npass = \"analyse-coupling\"\n[[step]]\npass = \"score\"\ncriterion = \"variance\"");
    assert!(e.contains("step 3 (`score`) needs the calibration statistics") && e.contains("add `calibrate`"), "{e}");
    let e = err("[[step]]\npass = \"prepare\"\n[[step]]\npass = \"analyse-coupling\"\n[[step]]\npass = \"calibrate\"");
    assert!(e.contains("runs the model, which needs an engine"), "{e}");
    let e = err("[[step]]\npass = \"score\"\nseed = \"seven\"");
    assert!(e.contains("invalid type"), "{e}");
    let e = err("[[stage]]\npass = \"score\"");
    assert!(e.contains("unknown top-level key `stage`"), "{e}");
}

/// A recipe written out and read back is the same recipe, with every parameter explicit.
#[test]
fn recipes_round_trip_through_toml_and_json() {
    let r = Recipe::parse_toml("[[step]]\npass = \"prepare\"\n[[step]]\npass = \"allocate\"\nbudget = 0.3")
        .expect("parse")
        .normalized()
        .expect("valid");
    let toml = r.to_toml();
    assert!(toml.contains("allocation = \"measured\"") && toml.contains("budget = 0.3"), "{toml}");
    assert_eq!(Recipe::parse_toml(&toml).expect("toml").normalized().expect("valid"), r);
    assert_eq!(Recipe::parse_json(&r.to_json()).expect("json").normalized().expect("valid"), r);
}

/// A pass that fails leaves the model as it was before it.
#[test]
fn a_failing_pass_leaves_the_model_unchanged() {
    // `slice` fails on a refit of the wrong shape; the model must stay as analysed.
    let mlp = r#"opset "" 17
graph "mlp"
input v0 "x": f32[batch, 8]
init v1 "up.weight" = f32[8, 16] bytes 512
init v2 "down.weight" = f32[16, 8] bytes 512
node n0 "/up" MatMul (v0, v1) -> (v3 "h")
node n1 "/act" Relu (v3) -> (v4 "a")
node n2 "/down" MatMul (v4, v2) -> (v5 "y")
output v5
"#;
    let mut cx = Compilation::new(parse(mlp).expect("parse"));
    let env = Env::default();
    Pipeline::new(&Recipe::of(&["prepare", "analyse-coupling"]), &env).expect("valid").run(&mut cx, &env).expect("run");
    let before = print(&cx.model);
    let coupling = cx.coupling.as_ref().expect("analysed");
    let mut plan = ecospac_passes::prune::SlicePlan::identity(&cx.model, coupling);
    plan.groups[0].kept = vec![0];
    plan.refits.push(ecospac_passes::prune::Refit {
        weight: "down.weight".into(),
        tensor: ecospac_ir::Tensor::from_f32s(vec![1, 1], &[0.0]),
    });
    cx.plan = Some(plan);
    cx.facts = cx.facts.with(ecospac_passes::pipeline::Facts::PLAN);
    let err = Pipeline::starting_from(&Recipe::of(&["slice"]), &env, cx.facts)
        .expect("valid")
        .run(&mut cx, &env)
        .expect_err("the refit has the wrong shape");
    assert!(err.to_string().contains("the refit of `down.weight`"), "{err}");
    assert_eq!(print(&cx.model), before, "the model is untouched");
}
