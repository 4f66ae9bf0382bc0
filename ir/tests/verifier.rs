//! The verifier reports every located error, with the names from the graph.

use ecospac_ir::text::parse;
use ecospac_ir::verify;

fn errors(text: &str) -> Vec<String> {
    let m = parse(text).expect("parse");
    match verify(&m.graph) {
        Ok(_) => vec![],
        Err(e) => e.0.into_iter().map(|e| e.message).collect(),
    }
}

#[test]
fn reports_all_structural_errors_at_once() {
    let errs = errors(
        r#"opset "" 17
graph "g"
input v0 "x": f32[2, 8]
node n0 "/uses_later" Relu (v2) -> (v1 "a": f32[2, 8])
node n1 "/defines" Relu (v0) -> (v2 "b": f32[2, 8])
node n2 "/twice" Relu (v0) -> (v2 "b": f32[2, 8])
output v1
output v9
"#,
    );
    assert!(errs.iter().any(|e| e.contains("`/uses_later`") && e.contains("before anything defines it")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("`b` is defined twice") && e.contains("`/twice`")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("v9") && e.contains("never defined")), "{errs:#?}");
    assert_eq!(errs.len(), 3, "{errs:#?}");
}

#[test]
fn reports_shape_contradictions_with_location() {
    let errs = errors(
        r#"opset "" 17
graph "g"
input v0 "x": f32[batch, 8]
input v6 "x2": f32[2, 8]
init v1 "w" = f32[4, 3] bytes 48
init v2 "shape" = i64[2] [5, 7]
node n0 "/mm" MatMul (v0, v1) -> (v3 "y": f32[batch, 3])
node n1 "/reshape" Reshape (v6, v2) -> (v4 "z": f32[5, 7])
node n2 "/declared" Relu (v0) -> (v5 "r": f32[batch, 9])
output v3
output v4
output v5
"#,
    );
    assert!(errs.iter().any(|e| e.contains("`/mm`") && e.contains("contraction 8 vs 4")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("`/reshape`") && e.contains("Reshape of 16 elements into 35")), "{errs:#?}");
    assert!(
        errs.iter().any(|e| e.contains("`r`") && e.contains("inferred f32[batch, 8] but declared f32[batch, 9]")),
        "{errs:#?}"
    );
}

#[test]
fn reports_arity_and_data_size() {
    let errs = errors(
        r#"opset "" 17
graph "g"
input v0 "x": f32[2]
init v1 "w" = f32[4] bytes 12
node n0 "/where" Where (v0, v0) -> (v2 "y": f32[2])
output v2
"#,
    );
    assert!(errs.iter().any(|e| e.contains("`w`") && e.contains("needs 16 bytes but 12")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("`/where`") && e.contains("takes 3..3 inputs, has 2")), "{errs:#?}");
}

#[test]
fn a_valid_graph_has_no_errors() {
    assert!(errors(
        r#"opset "" 17
graph "g"
input v0 "x": f32[batch, seq, 8]
node n0 "" Shape (v0) -> (v1 "s": i64[3])
init v2 "idx" = i64[] [1]
node n1 "" Gather {axis = 0} (v1, v2) -> (v3 "seq_len": i64[])
output v3
"#
    )
    .is_empty());
}
