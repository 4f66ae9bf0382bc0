//! Shape inference on the patterns exporters emit.

use ecospac_ir::infer::{propagate, SymSource};
use ecospac_ir::text::{parse, ty_string};
use ecospac_ir::{EntityId, SymId};

struct Fresh(usize);
impl SymSource for Fresh {
    fn fresh(&mut self) -> SymId {
        self.0 += 1;
        SymId::new(1000 + self.0)
    }
}

/// The type inferred for the value named `name`.
fn inferred(text: &str, name: &str) -> String {
    let m = parse(text).expect("parse");
    let (facts, issues) = propagate(&m.graph, &mut Fresh(0));
    assert!(issues.is_empty(), "{issues:?}");
    let (id, _) = m.graph.values().find(|(_, v)| v.name == name).expect("value");
    let ty = facts[id.index()].as_ref().and_then(|f| f.ty.clone()).expect("a type");
    ty_string(&m.graph, &ty)
}

#[test]
fn torch_expand_pattern_keeps_symbols() {
    // shape = [batch, -1, seq, seq]; Where(shape == -1, 1, shape) is [batch, 1, seq, seq].
    let text = r#"opset "" 17
graph "g"
input v0 "ids": i64[batch, seq]
input v1 "mask": bool[batch, 1, 1, seq]
node n0 "" Shape (v0) -> (v2 "s")
init v3 "i0" = i64[1] [0]
init v4 "i1" = i64[1] [1]
init v5 "minus1" = i64[1] [-1]
node n1 "" Gather {axis = 0} (v2, v3) -> (v6 "b")
node n2 "" Gather {axis = 0} (v2, v4) -> (v7 "l")
node n3 "" Concat {axis = 0} (v6, v5, v7, v7) -> (v8 "shape")
node n4 "" ConstantOfShape {value = tensor i64[1] [1]} (v4) -> (v9 "ones")
init v10 "four" = i64[1] [4]
node n5 "" ConstantOfShape {value = tensor i64[1] [1]} (v10) -> (v11 "ones4")
node n6 "" Mul (v11, v5) -> (v12 "neg")
node n7 "" Equal (v8, v12) -> (v13 "is_neg")
node n8 "" Where (v13, v11, v8) -> (v14 "target")
node n9 "" Expand (v1, v14) -> (v15 "expanded")
output v15
"#;
    assert_eq!(inferred(text, "expanded"), "bool[batch, 1, seq, seq]");
}

#[test]
fn slice_to_a_symbolic_length_and_range() {
    let text = r#"opset "" 17
graph "g"
input v0 "ids": i64[batch, seq]
init v1 "pos" = i64[1, 512] bytes 4096
node n0 "" Shape (v0) -> (v2 "s")
init v3 "i1" = i64[] [1]
node n1 "" Gather {axis = 0} (v2, v3) -> (v4 "len")
init v5 "zero1" = i64[1] [0]
node n2 "" Unsqueeze (v4, v5) -> (v6 "end")
init v7 "one1" = i64[1] [1]
node n3 "" Slice (v1, v5, v6, v7, v7) -> (v8 "positions")
init v9 "zero" = i64[] [0]
init v10 "one" = i64[] [1]
node n4 "" Range (v9, v4, v10) -> (v11 "arange")
node n5 "" Flatten {axis = 1} (v8) -> (v12 "flat")
output v8
output v11
output v12
"#;
    assert_eq!(inferred(text, "positions"), "i64[1, seq]");
    assert_eq!(inferred(text, "arange"), "i64[seq]");
    assert_eq!(inferred(text, "flat"), "i64[1, seq]");
}

#[test]
fn reshape_merges_and_splits_heads() {
    let text = r#"opset "" 17
graph "g"
input v0 "x": f32[batch, seq, 12, 32]
init v1 "merge" = i64[3] [0, 0, -1]
node n0 "" Reshape (v0, v1) -> (v2 "merged")
init v3 "split_shape" = i64[4] [0, -1, 6, 64]
node n1 "" Reshape (v2, v3) -> (v4 "split")
init v5 "flat" = i64[2] [-1, 384]
node n2 "" Reshape (v2, v5) -> (v6 "rows")
output v4
output v6
"#;
    assert_eq!(inferred(text, "merged"), "f32[batch, seq, 384]");
    assert_eq!(inferred(text, "split"), "f32[batch, seq, 6, 64]");
    assert_eq!(inferred(text, "rows"), "f32[batch*seq, 384]");
}

/// ONNX Runtime GenAI's `GroupQueryAttention` over packed Q, K and V: the
/// output has the query heads, the present cache the key/value heads; a query
/// that is no whole number of heads, or a cache of another head size, is refused.
#[test]
fn group_query_attention_shapes() {
    let graph = |width: usize, head: usize| {
        format!(
            r#"opset "" 17
opset "com.microsoft" 1
graph "g"
input v0 "qkv": f32[batch, seq, {width}]
input v1 "past_key": f32[batch, 2, past, {head}]
input v2 "past_value": f32[batch, 2, past, {head}]
input v3 "seqlens_k": i32[batch]
input v4 "total": i32[]
node n0 "" "com.microsoft"::GroupQueryAttention {{kv_num_heads = 2, num_heads = 4}} (v0, _, _, v1, v2, v3, v4) -> (v5 "out", v6 "present_key", v7 "present_value")
output v5
output v6
"#
        )
    };
    assert_eq!(inferred(&graph(128, 16), "out"), "f32[batch, seq, 64]");
    let present = inferred(&graph(128, 16), "present_key");
    assert!(present.starts_with("f32[batch, 2, ") && present.ends_with(", 16]"), "{present}");
    for (width, head, why) in [(100, 16, "not the packed Q, K and V heads"), (128, 8, "cache input 3")] {
        let m = parse(&graph(width, head)).expect("parse");
        let (_, issues) = propagate(&m.graph, &mut Fresh(0));
        assert!(format!("{issues:?}").contains(why), "{width}, {head}: {issues:?}");
    }
}
