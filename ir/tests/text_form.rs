//! The text form: snapshots of small graphs and a round-trip property.

use ecospac_ir::text::{parse, print};
use ecospac_ir::{verify, Attr, DType, Dim, Graph, Model, Node, Op, OpsetImport, Tensor, TensorTy, Value};
use proptest::prelude::*;

const MLP: &str = r#"opset "" 17
graph "mlp"
input v0 "x": f32[batch, seq, 8]
init v1 "up.weight" = f32[8, 16] bytes 512
init v2 "down.weight" = f32[16, 8] bytes 512
init v3 "scale" = f32[] [0.5]
node n0 "/up" MatMul (v0, v1) -> (v4 "h": f32[batch, seq, 16])
node n1 "/act" Gelu {approximate = "tanh"} (v4) -> (v5 "a": f32[batch, seq, 16])
node n2 "/down" MatMul (v5, v2) -> (v6 "y": f32[batch, seq, 8])
node n3 "/scale" Mul (v6, v3) -> (v7 "out": f32[batch, seq, 8])
output v7
"#;

#[test]
fn mlp_parses_verifies_and_prints_back() {
    let m = parse(MLP).expect("parse");
    verify(&m.graph).expect("verify");
    assert_eq!(print(&m), MLP);
}

#[test]
fn snapshot_of_attention_scores() {
    let mut g = Graph::new("scores");
    let (b, s) = (g.symbol("batch"), g.symbol("seq"));
    let mut x = Value::named("x");
    x.declared = Some(TensorTy::new(DType::F32, vec![Dim::sym(b), Dim::sym(s), Dim::known(64)]));
    let x = g.add_value(x);
    g.inputs.push(x);
    let wq = g.add_initializer("q.weight", Tensor::from_bytes(DType::F32, vec![64, 64], vec![0; 64 * 64 * 4]));
    let shape = g.add_initializer("heads", Tensor::from_i64s(vec![4], &[0, 0, 4, 16]));
    let q = g.add_value(Value::named("q"));
    let qh = g.add_value(Value::named("q_heads"));
    let qt = g.add_value(Value::named("q_t"));
    let node = |op, inputs: Vec<_>, outputs: Vec<_>| Node {
        name: String::new(),
        op,
        inputs,
        outputs,
        origin: None,
        captures: Vec::new(),
    };
    g.add_node(node(Op::MatMul, vec![Some(x), Some(wq)], vec![Some(q)]));
    g.add_node(node(Op::Reshape { allowzero: false }, vec![Some(q), Some(shape)], vec![Some(qh)]));
    g.add_node(node(Op::Transpose { perm: Some(vec![0, 2, 1, 3]) }, vec![Some(qh)], vec![Some(qt)]));
    g.outputs.push(qt);
    let m = Model {
        graph: g,
        ir_version: 8,
        opsets: vec![OpsetImport { domain: String::new(), version: 17 }],
        origin: None,
    };
    verify(&m.graph).expect("verify");
    insta::assert_snapshot!("attention_scores", print(&m));
}

#[test]
fn parse_errors_name_the_line() {
    let bad = "graph \"g\"\ninput v0 \"x\": f99[2]\n";
    let e = parse(bad).expect_err("bad dtype");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("f99"), "{e}");
    let e = parse("graph \"g\"\nnode n0 \"\" MatMul (v0 -> (v1 \"y\")\n").expect_err("syntax");
    assert_eq!(e.line, 2);
}

/// A random op with random but well-formed attributes.
fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::MatMul),
        (-3i64..3).prop_map(|axis| Op::Concat { axis }),
        (-3i64..3, any::<bool>()).prop_map(|(axis, _)| Op::Softmax(ecospac_ir::op::Softmax { axis, coerce_2d: false })),
        proptest::collection::vec(0i64..4, 0..4).prop_map(|p| Op::Transpose { perm: Some(p) }),
        (any::<f32>().prop_filter("finite", |f| f.is_finite()), any::<bool>(), any::<bool>()).prop_map(
            |(alpha, ta, tb)| { Op::Gemm(ecospac_ir::op::Gemm { alpha, beta: 1.0, trans_a: ta, trans_b: tb }) }
        ),
        (1e-12f32..1.0).prop_map(|epsilon| Op::LayerNorm(ecospac_ir::op::LayerNorm {
            axis: -1,
            epsilon,
            stash_type: 1,
            simplified: false,
        })),
        Just(Op::Unary(ecospac_ir::op::UnaryOp::Erf)),
        Just(Op::Binary(ecospac_ir::op::BinaryOp::Pow)),
        proptest::collection::vec(-100i64..100, 0..5).prop_map(|v| Op::Constant {
            value: Tensor::from_i64s(vec![v.len() as i64], &v),
            form: ecospac_ir::op::ConstantForm::Tensor
        }),
        (
            "[a-z]{1,6}",
            proptest::collection::vec(any::<i64>(), 0..3),
            any::<f32>().prop_filter("finite", |f| f.is_finite())
        )
            .prop_map(|(t, ints, f)| Op::Opaque(ecospac_ir::op::Opaque {
                domain: "com.example".into(),
                op_type: format!("X{t}"),
                attrs: vec![
                    ("ints".into(), Attr::Ints(ints)),
                    ("f".into(), Attr::Float(f)),
                    ("s".into(), Attr::Str(b"a \"quoted\" string".to_vec())),
                ],
            })),
    ]
}

fn any_dim() -> impl Strategy<Value = (Option<usize>, i64)> {
    prop_oneof![(0i64..5000).prop_map(|k| (None, k)), (0usize..3, 1i64..4).prop_map(|(s, k)| (Some(s), k))]
}

proptest! {
    #[test]
    fn print_parse_print_is_a_fixed_point(
        name in "\\PC{0,12}",
        ops in proptest::collection::vec((any_op(), "\\PC{0,8}", 0usize..3), 1..12),
        dims in proptest::collection::vec(any_dim(), 0..4),
    ) {
        let mut g = Graph::new(name);
        let syms = [g.symbol("batch"), g.symbol("seq"), g.symbol("d_model")];
        let shape: Vec<Dim> = dims.iter().map(|(s, k)| match s {
            Some(i) => Dim::sym(syms[*i]).mul(&Dim::known(*k)),
            None => Dim::known(*k),
        }).collect();
        let mut x = Value::named("input");
        x.declared = Some(TensorTy::new(DType::F32, shape));
        let mut live = vec![g.add_value(x)];
        g.inputs.push(live[0]);
        live.push(g.add_initializer("w", Tensor::from_f32s(vec![2], &[1.5, -0.0])));
        for (i, (op, node_name, arity)) in ops.into_iter().enumerate() {
            let inputs = match op {
                Op::Constant { .. } => vec![],
                _ => (0..=arity).map(|k| if k == 2 { None } else { Some(live[(i + k) % live.len()]) }).collect(),
            };
            let out = g.add_value(Value::named(format!("t{i}")));
            g.add_node(Node { name: node_name, op, inputs, outputs: vec![Some(out)], origin: None, captures: Vec::new() });
            live.push(out);
        }
        g.outputs.push(*live.last().expect("an output"));
        let m = Model { graph: g, ir_version: 9, opsets: vec![OpsetImport { domain: String::new(), version: 17 }], origin: None };
        let once = print(&m);
        let parsed = parse(&once).map_err(|e| TestCaseError::fail(format!("{e}\n{once}")))?;
        prop_assert_eq!(print(&parsed), once);
    }
}
