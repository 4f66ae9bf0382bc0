//! Generated model inputs, for checks and for calibration without data:
//! integer inputs that index a table (token ids) stay within the table's rows,
//! masks are all ones, type ids zero, position ids count up; float inputs are
//! uniform in [-1, 1]. Seeded, so runs repeat.

use ecospac_ir::{DType, EntityId, Model, Op, Tensor, ValueId};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// Why inputs could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input `{input}`: {message}")]
pub struct SyntheticError {
    /// The graph input.
    pub input: String,
    /// Why.
    pub message: String,
}

/// The number of rows of the table a graph input indexes (through `Gather`,
/// looking through casts and reshapes), when it indexes one.
pub fn index_bound(model: &Model, input: ValueId) -> Option<i64> {
    let g = &model.graph;
    let consumers = g.consumers();
    let (facts, _) = ecospac_ir::infer::facts(g);
    let mut frontier = vec![input];
    let mut bound: Option<i64> = None;
    let mut seen = 0;
    while let Some(v) = frontier.pop() {
        seen += 1;
        if seen > 64 {
            break;
        }
        for &n in &consumers[v.index()] {
            let node = g.node(n);
            match &node.op {
                Op::Gather { axis } if node.inputs.get(1) == Some(&Some(v)) => {
                    let data = node.inputs.first().copied().flatten()?;
                    let shape = facts[data.index()].as_ref()?.ty.as_ref()?.shape.clone()?;
                    let rank = shape.len();
                    let a = ecospac_ir::infer::norm_axis(*axis, rank).ok()?;
                    let rows = shape.get(a)?.as_known()?;
                    bound = Some(bound.map_or(rows, |b| b.min(rows)));
                }
                Op::Cast(_)
                | Op::Reshape { .. }
                | Op::Unsqueeze { .. }
                | Op::Squeeze { .. }
                | Op::Unary(ecospac_ir::op::UnaryOp::Identity)
                    if node.inputs.first() == Some(&Some(v)) =>
                {
                    frontier.extend(node.outputs.iter().flatten().copied());
                }
                _ => {}
            }
        }
    }
    bound
}

/// The graph inputs that hold a key/value cache (a `GroupQueryAttention`'s
/// `past_key` and `past_value`), each as the empty cache a prompt starts from
/// for `samples` samples: `[samples, kv_num_heads, 0, head_size]`.
pub fn empty_caches(model: &Model, samples: usize) -> HashMap<ValueId, Tensor> {
    let g = &model.graph;
    let (facts, _) = ecospac_ir::infer::facts(g);
    let mut caches = HashMap::new();
    for (_, node) in g.nodes() {
        let Op::GroupQueryAttention(a) = &node.op else { continue };
        let input = |i: usize| node.inputs.get(i).copied().flatten();
        let width = input(0)
            .and_then(|q| facts[q.index()].as_ref()?.ty.as_ref()?.shape.as_ref()?.get(2)?.as_known())
            .and_then(|w| a.head_size(w, input(1).is_none()));
        let Some(head) = width else { continue };
        for v in [input(3), input(4)].into_iter().flatten().filter(|v| g.inputs.contains(v)) {
            let dtype = g.value(v).best_ty().map_or(DType::F32, |t| t.dtype);
            let dims = vec![samples as i64, a.kv_num_heads, 0, head];
            caches.insert(v, Tensor::from_bytes(dtype, dims, Vec::new()));
        }
    }
    caches
}

/// Inputs for `samples` samples: symbolic dims are bound by name from `bind`;
/// otherwise the first axis is `samples`, and the others `bind["*"]` or 16.
/// A key/value cache is empty ([`empty_caches`]), as for a prompt.
pub fn synthetic_inputs(
    model: &Model,
    samples: usize,
    bind: &HashMap<String, i64>,
    seed: u64,
) -> Result<Vec<(String, Tensor)>, SyntheticError> {
    let g = &model.graph;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut caches = empty_caches(model, samples);
    let mut out = Vec::new();
    for &v in &g.inputs {
        let value = g.value(v);
        if let Some(cache) = caches.remove(&v) {
            out.push((value.name.clone(), cache));
            continue;
        }
        let err = |m: &str| SyntheticError { input: value.name.clone(), message: m.to_string() };
        let ty = value.declared.clone().or_else(|| value.ty.clone()).ok_or_else(|| err("declares no type"))?;
        let shape = ty.shape.ok_or_else(|| err("declares no shape"))?;
        let dims: Vec<i64> = shape
            .iter()
            .enumerate()
            .map(|(i, d)| {
                d.as_known().unwrap_or_else(|| {
                    let name = d.syms().first().map(|s| g.symbol_name(*s).to_string()).unwrap_or_default();
                    match (bind.get(&name), i) {
                        (Some(&v), _) => v,
                        (None, 0) => samples as i64,
                        (None, _) => bind.get("*").copied().unwrap_or(16),
                    }
                })
            })
            .collect();
        if dims.iter().any(|&d| d < 0) {
            return Err(err("a negative dimension"));
        }
        let n = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d as usize)).ok_or_else(|| err("too large"))?;
        if n > 1 << 28 {
            return Err(err("more than 2^28 elements; bind smaller dims"));
        }
        let last = dims.last().copied().unwrap_or(1).max(1);
        let name = value.name.to_lowercase();
        let tensor = match ty.dtype {
            DType::I64 | DType::I32 => {
                let vals: Vec<i64> = if name.contains("mask") {
                    vec![1; n]
                } else if name.contains("type") {
                    vec![0; n]
                } else if name.contains("position") {
                    (0..n as i64).map(|i| i % last).collect()
                } else {
                    let hi = index_bound(model, v).unwrap_or(100).max(1);
                    (0..n).map(|_| rng.random_range(0..hi)).collect()
                };
                let t = Tensor::from_i64s(dims, &vals);
                if ty.dtype == DType::I32 {
                    let bytes = vals.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect();
                    Tensor::from_bytes(DType::I32, t.dims, bytes)
                } else {
                    t
                }
            }
            DType::F32 => {
                let vals: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                Tensor::from_f32s(dims, &vals)
            }
            DType::Bool => Tensor::from_bytes(DType::Bool, dims, vec![1; n]),
            other => return Err(err(&format!("no generator for {other} inputs yet"))),
        };
        out.push((value.name.clone(), tensor));
    }
    Ok(out)
}
