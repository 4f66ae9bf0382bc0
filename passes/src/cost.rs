//! Cost model: multiply-accumulate work of the matrix products, for reports.

use ecospac_ir::op::{Gemm, QLinear};
use ecospac_ir::{Dim, EntityId, Model, Op};
use std::collections::HashMap;

/// FLOPs (2 × multiply-adds) of every MatMul, MatMulInteger and Gemm (and
/// their quantised operators) in the
/// model, with symbolic dims bound by name (`batch` → 1, ...; `*` binds every
/// other symbol). `None` when a product's shape has a dim that is neither known nor bound.
pub fn matmul_flops(model: &Model, bindings: &HashMap<String, i64>) -> Option<u128> {
    let g = &model.graph;
    let (facts, _) = ecospac_ir::infer::facts(g);
    let eval = |d: &Dim| -> Option<u128> {
        let mut v = d.coeff() as u128;
        for s in d.syms() {
            v *= *bindings.get(g.symbol_name(*s)).or_else(|| bindings.get("*"))? as u128;
        }
        Some(v)
    };
    let shape = |v: Option<ecospac_ir::ValueId>| facts[v?.index()].as_ref()?.ty.as_ref()?.shape.clone();
    let mut total = 0u128;
    for (_, node) in g.nodes() {
        let k = match &node.op {
            Op::MatMul | Op::MatMulInteger | Op::QLinear(QLinear::MatMul) => shape(node.inputs[0])?.last().cloned()?,
            Op::Gemm(Gemm { trans_a, .. }) | Op::QLinear(QLinear::Gemm { trans_a, .. }) => {
                let a = shape(node.inputs[0])?;
                if *trans_a {
                    a.first().cloned()?
                } else {
                    a.last().cloned()?
                }
            }
            _ => continue,
        };
        let out = shape(node.outputs[0])?;
        let elems = out.iter().try_fold(1u128, |acc, d| Some(acc * eval(d)?))?;
        total += 2 * elems * eval(&k)?;
    }
    Some(total)
}
