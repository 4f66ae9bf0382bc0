//! Applying a plan: physically (slice weights, rewrite the shape constants that
//! encode sliced sizes) or as a mask (zero the removed slices, for the
//! exactness check: sliced == masked original).

use super::plan::{cuts, Cuts, PlanError, Refit, SlicePlan};
use crate::coupling::Coupling;
use ecospac_ir::infer::Fact;
use ecospac_ir::op::{SizeFlow, SizeUse};
use ecospac_ir::{DType, EntityId, Model, NodeId, Op, Patch, Tensor, ValueId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Why a plan could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    /// The plan was made for another graph.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A refit tensor does not have the shape of the weight it replaces.
    #[error("the refit of `{weight}` is {got:?}, the sliced weight {want:?}")]
    RefitShape {
        /// The weight.
        weight: String,
        /// The refit's dims.
        got: Vec<i64>,
        /// The sliced weight's dims.
        want: Vec<i64>,
    },
    /// Slicing would leave more parameters than the input has (per-use copies
    /// of tensors that several nodes read outweigh what the plan removes).
    #[error(
        "the compact model would have {after} parameters, more than the input's {before}: \
         tensors that several nodes read would be copied per use"
    )]
    Grew {
        /// Parameters of the input ([`ecospac_ir::Graph::parameters`]).
        before: u128,
        /// Parameters after slicing.
        after: u128,
    },
    /// The graph to slice does not verify (the slicer takes the verifier's witness).
    #[error("the graph to slice does not verify: {0}")]
    Invalid(ecospac_ir::VerifierErrors),
    /// The slicer's edits do not fit the graph they were decided on (a bug,
    /// reported instead of applied; the model is unchanged).
    #[error(transparent)]
    Patch(#[from] ecospac_ir::patch::StalePatch),
    /// A size the slice changes is encoded in a way the slicer cannot rewrite.
    #[error("node `{node}`: cannot rewrite {what}")]
    Unrewritable {
        /// The node.
        node: String,
        /// What.
        what: String,
    },
}

/// A constant and the element changes one reader needs.
type ConstantEdits = (ValueId, Vec<(usize, i64)>);

/// Copies `t` keeping only `keep` positions of `axis`.
fn gather_axis(t: &Tensor, axis: usize, keep: &[u32]) -> Tensor {
    let size = t.dtype.size().unwrap_or(1);
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product::<usize>() * size;
    let b = t.bytes();
    let mut out = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &p in keep {
            let start = (o * dims[axis] + p as usize) * inner;
            out.extend_from_slice(&b[start..start + inner]);
        }
    }
    let mut new_dims = t.dims.clone();
    new_dims[axis] = keep.len() as i64;
    let mut n = Tensor::from_bytes(t.dtype, new_dims, out);
    n.origin = t.origin.clone();
    n
}

/// What zero is in a tensor: 0, or, for quantised data, its zero point (one
/// value, or one per index of an axis).
struct ZeroPoint {
    point: Tensor,
    axis: Option<usize>,
}

/// The zero point that `reader` applies to `value` (a `DequantizeLinear`'s
/// data, either side of a `MatMulInteger`: one per row of A, per column of B,
/// or a quantised operator's data input: per tensor, or per column of B).
/// A tensor sliced in place (`reader` None) has the zero point of its first
/// use that applies one (all its uses read the same codes).
fn zero_point(model: &Model, value: ValueId, reader: Option<(NodeId, usize)>) -> Option<ZeroPoint> {
    let Some((node, input)) = reader else {
        return model.graph.nodes().find_map(|(id, n)| {
            let i = n.inputs.iter().position(|v| *v == Some(value))?;
            zero_point(model, value, Some((id, i)))
        });
    };
    let node = model.graph.node(node);
    let rank = model.graph.value(value).constant.as_ref()?.dims.len();
    let at = match (&node.op, input) {
        (Op::Dequantize(_), 0) => 2,
        (Op::MatMulInteger, 0 | 1) => input + 2,
        (Op::QLinear(q), _) => q.params_of(input)?.1,
        _ => return None,
    };
    let point = model.graph.value((*node.inputs.get(at)?)?).constant.clone()?;
    // One zero point for all, or one per index of the axis it follows.
    let axis = match &node.op {
        _ if point.numel() == 1 => None,
        Op::Dequantize(q) => Some(q.axis(rank).ok()?),
        Op::QLinear(q) => Some(q.column_axis(at, rank)?),
        _ => Some(rank.checked_sub(2 - input)?),
    };
    Some(ZeroPoint { point, axis })
}

/// Copies `t` with the `zero` positions of `axis` set to zero (its zero point
/// for quantised data).
fn zero_axis(t: &Tensor, axis: usize, zero: &BTreeSet<u32>, point: Option<&ZeroPoint>) -> Tensor {
    let size = t.dtype.size().unwrap_or(1);
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let stride = |a: usize| dims[a + 1..].iter().product::<usize>();
    let mut b = t.bytes().to_vec();
    match point.filter(|p| p.point.dtype == t.dtype) {
        None => {
            // An empty tensor has nothing to zero (and chunks of 0 bytes do not exist).
            let inner = (stride(axis) * size).max(1);
            for (k, chunk) in b.chunks_mut(inner).enumerate() {
                if zero.contains(&((k % dims[axis]) as u32)) {
                    chunk.fill(0);
                }
            }
        }
        Some(p) => {
            let zp = p.point.bytes();
            for (e, chunk) in b.chunks_mut(size).enumerate() {
                if zero.contains(&(((e / stride(axis)) % dims[axis]) as u32)) {
                    let at = p.axis.map_or(0, |a| (e / stride(a)) % dims[a]) * size;
                    if let Some(v) = zp.get(at..at + size) {
                        chunk.copy_from_slice(v);
                    }
                }
            }
        }
    }
    let mut n = Tensor::from_bytes(t.dtype, t.dims.clone(), b);
    n.origin = t.origin.clone();
    n
}

fn uses(model: &Model) -> HashMap<ValueId, usize> {
    let mut n = HashMap::new();
    for (_, node) in model.graph.nodes() {
        for v in node.inputs.iter().flatten().chain(&node.captures) {
            *n.entry(*v).or_default() += 1;
        }
    }
    for &v in &model.graph.outputs {
        *n.entry(v).or_default() += 1;
    }
    n
}

/// Puts `tensor` where `reader` reads `value` (in the patch): in place when
/// it is the only use, else as a new initializer for that use.
fn replace_use(
    model: &Model,
    patch: &mut Patch,
    value: ValueId,
    reader: Option<(NodeId, usize)>,
    tensor: Tensor,
    counts: &HashMap<ValueId, usize>,
) {
    match reader {
        Some((node, i)) if counts.get(&value).copied().unwrap_or(0) > 1 => {
            let name = format!("{}::ecospac{}", model.graph.value(value).name, patch.next_value().index());
            let mut t = tensor;
            t.origin = None;
            let new = patch.add_initializer(name, t, Some(value));
            patch.set_input(node, i, Some(new));
        }
        _ => patch.set_constant(value, Some(tensor)),
    }
}

/// Zeroes every removed slice (quantised data: sets it to its zero point, so
/// that it dequantises to 0) and substitutes the plan's refit weights
/// (scattered to the full shape, zero where removed): the masked original the
/// sliced model must equal. On an error the model is unchanged.
pub fn mask_plan(model: &mut Model, coupling: &Coupling, plan: &SlicePlan) -> Result<(), SliceError> {
    let removed = plan.bind(model, coupling)?;
    *model = masked(model, coupling, &removed, &plan.refits)?;
    Ok(())
}

/// The masked original as a new model: `removed` (per group) zeroed and `refits` substituted.
pub fn masked(model: &Model, coupling: &Coupling, removed: &[Vec<u32>], refits: &[Refit]) -> Result<Model, SliceError> {
    let all_cuts = cuts(coupling, removed);
    let counts = uses(model);
    let mut patch = Patch::new(&model.graph);
    for ((value, reader), axes) in &all_cuts {
        if axes.values().all(BTreeSet::is_empty) {
            continue;
        }
        let Some(mut t) = model.graph.value(*value).constant.clone() else { continue };
        let point = zero_point(model, *value, *reader);
        for (axis, zero) in axes {
            t = zero_axis(&t, *axis, zero, point.as_ref());
        }
        replace_use(model, &mut patch, *value, *reader, t, &counts);
    }
    for r in refits {
        let v = refit_target(model, r)?;
        let full = patch.constant(&model.graph, v).cloned().ok_or_else(|| missing(r))?;
        let axes = cuts_of(&all_cuts, v);
        let t = scatter(&full, &axes, r)?;
        patch.set_constant(v, Some(t));
    }
    let mut work = model.clone();
    patch.apply(&mut work.graph)?;
    Ok(work)
}

fn missing(r: &Refit) -> SliceError {
    SliceError::Plan(PlanError::Mismatch(format!("the plan refits `{}`, which the model lacks", r.weight)))
}

/// The initializer a refit replaces: the one of that name with a single use.
fn refit_target(model: &Model, r: &Refit) -> Result<ValueId, SliceError> {
    let v = model
        .graph
        .initializers
        .iter()
        .copied()
        .find(|&v| model.graph.value(v).name == r.weight)
        .ok_or_else(|| missing(r))?;
    if uses(model).get(&v).copied().unwrap_or(0) > 1 {
        return Err(SliceError::Plan(PlanError::Mismatch(format!(
            "the plan refits `{}`, which several nodes read",
            r.weight
        ))));
    }
    Ok(v)
}

/// The removed positions per axis of `value` (any reader).
fn cuts_of(all: &Cuts, value: ValueId) -> BTreeMap<usize, BTreeSet<u32>> {
    let mut out: BTreeMap<usize, BTreeSet<u32>> = BTreeMap::new();
    for ((v, _), axes) in all {
        if *v == value {
            for (a, s) in axes {
                out.entry(*a).or_default().extend(s.iter().copied());
            }
        }
    }
    out
}

/// The refit values placed into a tensor of `full`'s shape and dtype, zero at removed positions.
fn scatter(full: &Tensor, axes: &BTreeMap<usize, BTreeSet<u32>>, r: &Refit) -> Result<Tensor, SliceError> {
    let dims: Vec<usize> = full.dims.iter().map(|&d| d.max(0) as usize).collect();
    let kept: Vec<Vec<usize>> = dims
        .iter()
        .enumerate()
        .map(|(a, &d)| (0..d).filter(|p| !axes.get(&a).is_some_and(|s| s.contains(&(*p as u32)))).collect())
        .collect();
    let want: Vec<i64> = kept.iter().map(|k| k.len() as i64).collect();
    if want != r.tensor.dims {
        return Err(SliceError::RefitShape { weight: r.weight.clone(), got: r.tensor.dims.clone(), want });
    }
    let src = r.tensor.to_f64s().unwrap_or_default();
    let mut out = vec![0f32; dims.iter().product()];
    let mut idx = vec![0usize; dims.len()];
    for &x in &src {
        let mut flat = 0;
        for (a, &i) in idx.iter().enumerate() {
            flat = flat * dims[a] + kept[a][i];
        }
        out[flat] = x as f32;
        for a in (0..idx.len()).rev() {
            idx[a] += 1;
            if idx[a] < kept[a].len() {
                break;
            }
            idx[a] = 0;
        }
    }
    Ok(retyped(full, Tensor::from_f32s(full.dims.clone(), &out)))
}

/// `t` (f32) in `like`'s dtype, keeping `like`'s source record.
fn retyped(like: &Tensor, t: Tensor) -> Tensor {
    let mut n = ecospac_ir::tensor::cast_float(&t, like.dtype).unwrap_or(t);
    n.origin = like.origin.clone();
    n
}

/// Where a shape element comes from: a constant read by `reader` at input `input`.
struct Source {
    reader: NodeId,
    input: usize,
    constant: ValueId,
    element: usize,
}

fn constant_of(model: &Model, producers: &[Option<NodeId>], v: ValueId) -> Option<Tensor> {
    if let Some(t) = &model.graph.value(v).constant {
        return Some(t.clone());
    }
    match &model.graph.node(producers[v.index()]?).op {
        Op::Constant { value, .. } => Some(value.clone()),
        _ => None,
    }
}

/// Follows element `element` of the 1-D integer value read by `reader` at `input` back to a constant.
fn locate(
    model: &Model,
    producers: &[Option<NodeId>],
    facts: &[Option<Fact>],
    reader: NodeId,
    input: usize,
    element: usize,
) -> Option<Source> {
    let v = model.graph.node(reader).inputs.get(input).copied().flatten()?;
    if constant_of(model, producers, v).is_some() {
        return Some(Source { reader, input, constant: v, element });
    }
    let p = producers[v.index()]?;
    let node = model.graph.node(p);
    match node.op.size_facts().flows? {
        SizeFlow::Concat => {
            let mut offset = 0;
            for (j, x) in node.inputs.iter().enumerate() {
                let len = facts[(*x)?.index()].as_ref()?.ints.as_ref()?.len();
                if element < offset + len {
                    return locate(model, producers, facts, p, j, element - offset);
                }
                offset += len;
            }
            None
        }
        SizeFlow::Same => locate(model, producers, facts, p, 0, element),
        // The exporters' `Where(shape == -1, 1, shape)`: follow the branch taken.
        SizeFlow::Select => {
            let cond = facts[node.inputs[0]?.index()].as_ref()?.known_ints()?;
            let c = *cond.get(element).or(cond.first().filter(|_| cond.len() == 1))?;
            locate(model, producers, facts, p, if c != 0 { 1 } else { 2 }, element)
        }
    }
}

/// Sets elements of the constant read by `reader` at `input`, giving the reader its own copy.
fn rewrite(
    model: &Model,
    patch: &mut Patch,
    producers: &[Option<NodeId>],
    reader: NodeId,
    input: usize,
    constant: ValueId,
    changes: &[(usize, i64)],
) -> bool {
    let Some(t) = constant_of(model, producers, constant) else { return false };
    let Some(mut vals) = t.to_i64s() else { return false };
    for &(element, new) in changes {
        match vals.get_mut(element) {
            Some(v) => *v = new,
            None => return false,
        }
    }
    let bytes: Vec<u8> = match t.dtype {
        DType::I64 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::I32 => vals.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect(),
        _ => return false,
    };
    let name = format!("{}::ecospac{}", model.graph.value(constant).name, patch.next_value().index());
    let new_value = patch.add_initializer(name, Tensor::from_bytes(t.dtype, t.dims.clone(), bytes), Some(constant));
    patch.set_input(reader, input, Some(new_value));
    true
}

/// The inputs of a node that hold the sizes it reads (shape targets, slice
/// bounds, split sizes), or, inside a shape chain (`chain`), those the sizes
/// it passes on come from.
fn size_inputs(op: &Op, chain: bool, inputs: usize) -> Vec<usize> {
    let facts = op.size_facts();
    match (chain, facts.flows, facts.uses) {
        (true, Some(SizeFlow::Concat), _) => (0..inputs).collect(),
        (true, Some(SizeFlow::Same), _) => vec![0],
        (true, Some(SizeFlow::Select), _) => vec![0, 1, 2],
        (_, _, Some(SizeUse::Shape(i))) => vec![i],
        (_, _, Some(SizeUse::Bounds)) => vec![1, 2],
        (_, _, Some(SizeUse::SplitSizes)) => vec![1],
        (_, _, Some(SizeUse::AttentionHeads | SizeUse::PackedShape) | None) => Vec::new(),
    }
}

/// Gives every size-carrying input its own chain of shape ops, so that a size
/// rewritten for one consumer does not change another's (dynamo exports share
/// `Concat`s between the Q, K and V reshapes).
fn unshare_shape_chains(model: &mut Model) {
    let order: Vec<NodeId> = model.graph.order.clone();
    for id in order {
        unshare_inputs(model, id, 0);
    }
}

fn unshare_inputs(model: &mut Model, id: NodeId, depth: usize) {
    if depth > 8 {
        return;
    }
    let node = model.graph.node(id).clone();
    for i in size_inputs(&node.op, depth > 0, node.inputs.len()) {
        let Some(Some(v)) = node.inputs.get(i).copied() else { continue };
        let producers = model.graph.producers();
        let Some(p) = producers[v.index()] else { continue };
        let pn = model.graph.node(p).clone();
        if pn.op.size_facts().flows.is_none() {
            continue;
        }
        let consumers = model.graph.consumers();
        let target = if consumers[v.index()].len() > 1 {
            let mut value = model.graph.value(v).clone();
            value.name = format!("{}::ecospac{}", value.name, model.graph.num_values());
            value.origin = None;
            value.copy_of = Some(v);
            let nv = model.graph.add_value(value);
            let mut clone = pn.clone();
            clone.name = format!("{}::ecospac{}", pn.name, model.graph.num_values());
            clone.outputs = vec![Some(nv)];
            clone.origin = None;
            let c = model.graph.insert_node_before(clone, id);
            model.graph.node_mut(id).inputs[i] = Some(nv);
            c
        } else {
            p
        };
        unshare_inputs(model, target, depth + 1);
    }
}

/// An op that declares a kind of size attribute whose rewrite the slicer
/// does not have for it (a declaration without its rewrite).
fn unmodelled(node: &str, op: &Op) -> SliceError {
    SliceError::Unrewritable { node: node.to_string(), what: format!("the size attributes of {}", op.op_type()) }
}

/// Slices the model by the plan: weights, the constants that encode sliced
/// sizes, and the plan's refit weights. The rewrite is made on a copy and
/// replaces the model only when complete: on an error the model is unchanged.
pub fn apply_plan(model: &mut Model, coupling: &mut Coupling, plan: &SlicePlan) -> Result<(), SliceError> {
    let removed = plan.bind(model, coupling)?;
    let mut work = model.clone();
    slice_into(&mut work, coupling, plan, &removed)?;
    let (before, after) = (model.graph.parameters(), work.graph.parameters());
    if after > before {
        return Err(SliceError::Grew { before, after });
    }
    *model = work;
    Ok(())
}

fn slice_into(
    model: &mut Model,
    coupling: &mut Coupling,
    plan: &SlicePlan,
    removed: &[Vec<u32>],
) -> Result<(), SliceError> {
    unshare_shape_chains(model);
    let counts = uses(model);
    let proof = ecospac_ir::verify(&model.graph).map_err(SliceError::Invalid)?;
    let patch = slicing(model, proof, coupling, plan, removed, &counts)?;
    patch.apply(&mut model.graph)?;
    drop_orphans(model, &counts);
    Ok(())
}

/// Every edit of the slice, decided against the unsliced graph (with its
/// shape chains unshared), which it does not change; `proof` is the
/// verifier's witness for that graph.
fn slicing(
    model: &Model,
    proof: ecospac_ir::Verified<'_>,
    coupling: &mut Coupling,
    plan: &SlicePlan,
    removed: &[Vec<u32>],
    counts: &HashMap<ValueId, usize>,
) -> Result<Patch, SliceError> {
    debug_assert!(std::ptr::eq(proof.graph(), &model.graph), "the witness is of this graph");
    let removed = removed.to_vec();
    let all_cuts = cuts(coupling, &removed);
    let mut patch = Patch::new(proof.graph());
    let (facts, _) = ecospac_ir::infer::facts(&model.graph);
    let producers = model.graph.producers();
    // Sizes encoded in the graph: decide every rewrite against the unsliced graph.
    let mut edits: Vec<(Source, i64)> = Vec::new();
    let order: Vec<NodeId> = model.graph.order.clone();
    for id in order {
        let node = model.graph.node(id).clone();
        let label = if node.name.is_empty() { format!("{id}") } else { node.name.clone() };
        let need = |input: usize,
                    element: usize,
                    old: i64,
                    new: i64,
                    edits: &mut Vec<(Source, i64)>|
         -> Result<(), SliceError> {
            if old == new {
                return Ok(());
            }
            match locate(model, &producers, &facts, id, input, element) {
                Some(src) => {
                    edits.push((src, new));
                    Ok(())
                }
                None => Err(SliceError::Unrewritable {
                    node: label.clone(),
                    what: format!("element {element} of input {input} ({old} → {new})"),
                }),
            }
        };
        let fact = |v: Option<ValueId>| v.and_then(|v| facts[v.index()].clone());
        match node.op.size_facts().uses {
            Some(SizeUse::Shape(target_input)) => {
                let Some(out) = node.outputs[0] else {
                    continue;
                };
                let Some(target) = fact(node.inputs[target_input]).and_then(|f| f.ints) else { continue };
                let target: Vec<i64> = target.iter().map(|d| d.as_known().unwrap_or(-1)).collect();
                let out_rank =
                    facts[out.index()].as_ref().and_then(|f| f.ty.as_ref()).and_then(|t| t.rank()).unwrap_or(0);
                let offset = out_rank.saturating_sub(target.len());
                for (k, &t) in target.iter().enumerate() {
                    if let Some(mask) = coupling.keep_mask(out, k + offset, None, &removed) {
                        let new = mask.iter().filter(|&&b| b).count() as i64;
                        if t > 1 && t as usize == mask.len() {
                            need(target_input, k, t, new, &mut edits)?;
                        }
                    }
                }
            }
            Some(SizeUse::Bounds) => {
                let (Some(x), Some(starts), Some(ends)) = (
                    node.inputs[0],
                    fact(node.inputs[1]).and_then(|f| f.known_ints()),
                    fact(node.inputs[2]).and_then(|f| f.known_ints()),
                ) else {
                    continue;
                };
                let axes = match node.inputs.get(3).copied().flatten() {
                    Some(a) => fact(Some(a)).and_then(|f| f.known_ints()).unwrap_or_default(),
                    None => (0..starts.len() as i64).collect(),
                };
                let rank = facts[x.index()].as_ref().and_then(|f| f.ty.as_ref()).and_then(|t| t.rank()).unwrap_or(0);
                for (k, &a) in axes.iter().enumerate() {
                    let Ok(a) = ecospac_ir::infer::norm_axis(a, rank) else { continue };
                    let Some(mask) = coupling.keep_mask(x, a, Some((id, 0)), &removed) else { continue };
                    let d = mask.len() as i64;
                    let (b, e) = ecospac_ir::infer::slice_bounds(starts[k], ends[k], 1, d);
                    let count = |upto: i64| mask[..upto.clamp(0, d) as usize].iter().filter(|&&k| k).count() as i64;
                    if starts[k] != 0 && starts[k] < d {
                        need(1, k, starts[k], count(b), &mut edits)?;
                    }
                    if ends[k] < d {
                        need(2, k, ends[k], count(e), &mut edits)?;
                    }
                }
            }
            Some(SizeUse::AttentionHeads) if matches!(node.op, Op::GroupQueryAttention(_)) => {
                let Op::GroupQueryAttention(gqa) = &node.op else { return Err(unmodelled(&label, &node.op)) };
                if let Some(op) = gqa_resized(gqa, &node, &facts, &mut |x, axis, i| {
                    coupling.keep_mask(x, axis, Some((id, i)), &removed)
                })
                .map_err(|what| SliceError::Unrewritable { node: label.clone(), what })?
                {
                    patch.set_op(id, Op::GroupQueryAttention(op));
                }
            }
            Some(SizeUse::AttentionHeads) => {
                // The kept indices of the Q, K and V parts, and the head count.
                let (mask, parts, n) = match &node.op {
                    Op::FusedAttention(fa) => {
                        let Some(w) = node.inputs.get(1).copied().flatten() else { continue };
                        let Some(mask) = coupling.keep_mask(w, 1, Some((id, 1)), &removed) else { continue };
                        let parts: [i64; 3] = match fa.qkv_hidden_sizes.as_deref() {
                            Some(&[q, k, v]) => [q, k, v],
                            _ => [mask.len() as i64 / 3; 3],
                        };
                        (mask, parts, fa.num_heads)
                    }
                    Op::MultiHeadAttention(m) => {
                        let width = |i: usize| {
                            let v = node.inputs.get(i).copied().flatten()?;
                            facts[v.index()].as_ref()?.ty.as_ref()?.shape.as_ref()?.get(2)?.as_known()
                        };
                        let (Some(q), Some(k), Some(v)) = (width(0), width(1), width(2)) else { continue };
                        let mut mask = Vec::new();
                        let mut cut = false;
                        for (i, w) in [(0, q), (1, k), (2, v)] {
                            let x = node.inputs[i].and_then(|x| coupling.keep_mask(x, 2, Some((id, i)), &removed));
                            cut |= x.is_some();
                            mask.extend(x.unwrap_or_else(|| vec![true; w.max(0) as usize]));
                        }
                        if !cut {
                            continue;
                        }
                        (mask, [q, k, v], m.num_heads)
                    }
                    _ => return Err(unmodelled(&label, &node.op)),
                };
                // Per part and head, the indices kept: the op needs the same heads
                // in every part and the same count in every kept head of a part.
                let n = n.max(1);
                let mut per_head = [Vec::new(), Vec::new(), Vec::new()];
                let mut start = 0usize;
                for (p, &width) in parts.iter().enumerate() {
                    let head = (width.max(0) / n).max(1) as usize;
                    let end = (start + width.max(0) as usize).min(mask.len());
                    per_head[p] = mask[start..end].chunks(head).map(|c| c.iter().filter(|&&k| k).count()).collect();
                    start = end;
                }
                let heads: Vec<bool> = per_head[0].iter().map(|&c| c > 0).collect();
                let width = |p: usize| per_head[p].iter().copied().find(|&c| c > 0).unwrap_or(0);
                let regular = parts.iter().all(|&w| w % n == 0)
                    && heads.contains(&true)
                    && (0..3).all(|p| width(p) > 0)
                    && (0..3).all(|p| {
                        per_head[p].len() == heads.len()
                            && per_head[p].iter().zip(&heads).all(|(&c, &h)| if h { c == width(p) } else { c == 0 })
                    });
                if !regular {
                    return Err(SliceError::Unrewritable {
                        node: label.clone(),
                        what: format!("the head layout (Q, K, V keep {per_head:?} per head of {parts:?} in {n} heads)"),
                    });
                }
                let kept_heads = heads.iter().filter(|&&h| h).count() as i64;
                let dims = [width(0), width(1), width(2)].map(|w| w as i64);
                match &node.op {
                    Op::FusedAttention(fa) => {
                        let op = fa.resized(parts, kept_heads, dims);
                        if op != *fa {
                            patch.set_op(id, Op::FusedAttention(op));
                        }
                    }
                    Op::MultiHeadAttention(m) => {
                        let op = m.resized(kept_heads, parts[0] / n, dims[0]);
                        if op != *m {
                            patch.set_op(id, Op::MultiHeadAttention(op));
                        }
                    }
                    _ => return Err(unmodelled(&label, &node.op)),
                }
            }
            Some(SizeUse::PackedShape) => {
                let Op::MatMulNBits(mm) = &node.op else { return Err(unmodelled(&label, &node.op)) };
                let Some(b) = node.inputs.get(1).copied().flatten() else { continue };
                let mut kept = |axis: usize, full: i64| {
                    coupling
                        .keep_mask(b, axis, Some((id, 1)), &removed)
                        .map_or(full, |m| m.iter().filter(|&&k| k).count() as i64)
                };
                let (n, k_blocks) = (kept(0, mm.n), kept(1, mm.k_blocks()));
                let op = mm.resized(n, k_blocks);
                if op != *mm {
                    patch.set_op(id, Op::MatMulNBits(op));
                }
            }
            Some(SizeUse::SplitSizes) => {
                let Op::Split(sp) = &node.op else { return Err(unmodelled(&label, &node.op)) };
                let Some(x) = node.inputs[0] else { continue };
                let rank = facts[x.index()].as_ref().and_then(|f| f.ty.as_ref()).and_then(|t| t.rank()).unwrap_or(0);
                let Ok(a) = ecospac_ir::infer::norm_axis(sp.axis, rank) else { continue };
                let Some(mask) = coupling.keep_mask(x, a, Some((id, 0)), &removed) else { continue };
                let sizes: Vec<i64> = node
                    .outputs
                    .iter()
                    .map(|o| {
                        o.and_then(|o| facts[o.index()].as_ref()?.ty.as_ref()?.shape.as_ref()?.get(a)?.as_known())
                            .unwrap_or(0)
                    })
                    .collect();
                let mut start = 0usize;
                let mut new_sizes = Vec::new();
                for &s in &sizes {
                    new_sizes.push(mask[start..start + s as usize].iter().filter(|&&k| k).count() as i64);
                    start += s as usize;
                }
                if sp.split.is_some() {
                    let mut op = sp.clone();
                    op.split = Some(new_sizes);
                    patch.set_op(id, Op::Split(op));
                } else if node.inputs.get(1).copied().flatten().is_some() {
                    for (k, (&old, &new)) in sizes.iter().zip(&new_sizes).enumerate() {
                        need(1, k, old, new, &mut edits)?;
                    }
                } else if new_sizes.windows(2).any(|w| w[0] != w[1]) {
                    // An equal split (`num_outputs`) becomes one with explicit sizes.
                    let name = format!("{label}::split_sizes");
                    let mut op = sp.clone();
                    op.num_outputs = None;
                    if model.default_opset() >= 13 {
                        let sizes = Tensor::from_i64s(vec![new_sizes.len() as i64], &new_sizes);
                        let sizes_value = patch.add_initializer(name, sizes, None);
                        patch.set_op(id, Op::Split(op));
                        patch.set_inputs(id, vec![node.inputs[0], Some(sizes_value)]);
                    } else {
                        op.split = Some(new_sizes);
                        patch.set_op(id, Op::Split(op));
                    }
                }
            }
            None => {}
        }
    }
    // One copy per (reader, input) carrying all its element changes.
    let mut by_use: BTreeMap<(NodeId, usize), ConstantEdits> = BTreeMap::new();
    for (src, new) in edits {
        by_use.entry((src.reader, src.input)).or_insert_with(|| (src.constant, Vec::new())).1.push((src.element, new));
    }
    for ((reader, input), (constant, changes)) in by_use {
        if !rewrite(model, &mut patch, &producers, reader, input, constant, &changes) {
            return Err(SliceError::Unrewritable {
                node: model.graph.node(reader).name.clone(),
                what: "a shape constant".into(),
            });
        }
    }
    // Declared types of sliced values.
    let ids: Vec<ValueId> = model.graph.values().map(|(v, _)| v).collect();
    for v in ids {
        let Some(ty) = model.graph.value(v).declared.clone() else { continue };
        let Some(mut shape) = ty.shape.clone() else { continue };
        let mut changed = false;
        for (k, d) in shape.iter_mut().enumerate() {
            if let Some(mask) = coupling.keep_mask(v, k, None, &removed) {
                *d = ecospac_ir::Dim::known(mask.iter().filter(|&&b| b).count() as i64);
                changed = true;
            }
        }
        if changed {
            patch.set_declared(v, Some(ecospac_ir::TensorTy::new(ty.dtype, shape)));
        }
    }
    // Refit targets are found before slicing gives shared tensors per-use copies.
    let targets: Vec<ValueId> = plan.refits.iter().map(|r| refit_target(model, r)).collect::<Result<_, _>>()?;
    // Weights last: the analysis above reads the unsliced graph.
    for ((value, reader), axes) in &all_cuts {
        if axes.values().all(BTreeSet::is_empty) {
            continue;
        }
        let Some(mut t) = model.graph.value(*value).constant.clone() else { continue };
        for (axis, cut) in axes {
            let keep: Vec<u32> = (0..t.dims[*axis] as u32).filter(|p| !cut.contains(p)).collect();
            t = gather_axis(&t, *axis, &keep);
        }
        replace_use(model, &mut patch, *value, *reader, t, counts);
    }
    for (r, &v) in plan.refits.iter().zip(&targets) {
        let current = patch.constant(&model.graph, v).cloned().ok_or_else(|| missing(r))?;
        if current.dims != r.tensor.dims {
            return Err(SliceError::RefitShape {
                weight: r.weight.clone(),
                got: r.tensor.dims.clone(),
                want: current.dims,
            });
        }
        patch.set_constant(v, Some(retyped(&current, r.tensor.clone())));
    }
    Ok(patch)
}

/// Drops initializers that were read before slicing and no longer are (every
/// reader got its own copy).
fn drop_orphans(model: &mut Model, before: &HashMap<ValueId, usize>) {
    let now = uses(model);
    let orphans: Vec<ValueId> =
        model.graph.initializers.iter().copied().filter(|v| before.contains_key(v) && !now.contains_key(v)).collect();
    for &v in &orphans {
        model.graph.value_mut(v).constant = None;
    }
    model.graph.initializers.retain(|v| !orphans.contains(v));
}

/// A `GroupQueryAttention` with the head counts that its sliced inputs keep
/// (`None`: none cut), from the kept indices of the query's (packed: Q, K
/// and V's) width, `mask(value, axis, input)`. Every kept head keeps all its
/// dims, key and value keep the same heads, and every kept group the same
/// number of query heads; else the layout is named.
fn gqa_resized(
    g: &ecospac_ir::op::GroupQueryAttention,
    node: &ecospac_ir::Node,
    facts: &[Option<Fact>],
    mask: &mut dyn FnMut(ValueId, usize, usize) -> Option<Vec<bool>>,
) -> Result<Option<ecospac_ir::op::GroupQueryAttention>, String> {
    let input = |i: usize| node.inputs.get(i).copied().flatten();
    let width = |v: ValueId| facts[v.index()].as_ref()?.ty.as_ref()?.shape.as_ref()?.get(2)?.as_known();
    let Some(q) = input(0) else { return Ok(None) };
    let packed = input(1).is_none() && input(2).is_none();
    let Some(head) = width(q).and_then(|w| g.head_size(w, packed)) else { return Ok(None) };
    let (n, kv) = (g.num_heads.max(0) as usize, g.kv_num_heads.max(0) as usize);
    let head_u = head.max(1) as usize;
    let mut keep = Vec::new();
    let mut cut = false;
    if packed {
        match mask(q, 2, 0) {
            Some(m) => (keep, cut) = (m, true),
            None => return Ok(None),
        }
    } else {
        for i in 0..3 {
            let Some(v) = input(i) else { return Ok(None) };
            let m = mask(v, 2, i);
            cut |= m.is_some();
            keep.extend(m.unwrap_or_else(|| vec![true; width(v).unwrap_or(0).max(0) as usize]));
        }
    }
    if !cut {
        return Ok(None);
    }
    let per_head: Vec<usize> = keep.chunks(head_u).map(|c| c.iter().filter(|&&k| k).count()).collect();
    let layout =
        || format!("the head layout (heads of {head} keep {per_head:?}; {n} query heads over {kv} key/value heads)");
    // The head counts are attributes: checked before they index anything.
    if Some(per_head.len()) != kv.checked_mul(2).and_then(|k| k.checked_add(n))
        || per_head.iter().any(|&c| c != 0 && c != head_u)
    {
        return Err(layout());
    }
    let kept = |r: std::ops::Range<usize>| per_head[r].iter().map(|&c| c > 0).collect::<Vec<bool>>();
    let (qh, kh, vh) = (kept(0..n), kept(n..n + kv), kept(n + kv..n + 2 * kv));
    let group = n / kv.max(1);
    let per_group: Vec<usize> = qh.chunks(group.max(1)).map(|c| c.iter().filter(|&&k| k).count()).collect();
    let kept_q = per_group.iter().copied().find(|&c| c > 0).unwrap_or(0);
    let regular = kh == vh
        && kh.contains(&true)
        && per_group.len() == kv
        && per_group.iter().zip(&kh).all(|(&c, &k)| if k { c == kept_q } else { c == 0 });
    if !regular {
        return Err(layout());
    }
    let kv_kept = kh.iter().filter(|&&k| k).count();
    Ok(Some(g.resized((kept_q * kv_kept) as i64, kv_kept as i64)).filter(|op| op != g))
}
