//! Snapshot tests of the passes on small text-form graphs, run through the
//! manager (so the verifier runs after each pass).

use ecospac_ir::text::{parse, print};
use ecospac_passes::{Changed, PassManager};

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
    let timings = PassManager::from_names(passes).expect("passes").verify_each(true).run(&mut m).expect("run");
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
    let err = PassManager::from_names(&["infer-shapes"]).expect("passes").run(&mut m).expect_err("invalid");
    assert!(err.to_string().contains("the input graph does not verify"), "{err}");
    assert!(err.to_string().contains("`/q`"), "{err}");
}

#[test]
fn dump_after_records_the_text_form() {
    let mut m = parse(HEAD_SPLIT).expect("parse");
    let mut pm = PassManager::from_names(&["infer-shapes", "fold-shape-constants"])
        .expect("passes")
        .dump_after("infer-shapes")
        .expect("known");
    pm.run(&mut m).expect("run");
    assert_eq!(pm.dumps().len(), 1);
    assert_eq!(pm.dumps()[0].0, "infer-shapes");
    assert!(pm.dumps()[0].1.contains("q_heads"));
    assert!(PassManager::from_names(&["infer-shapes"]).expect("passes").dump_after("nope").is_err());
}
