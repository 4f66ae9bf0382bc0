//! Reconstruction after removal: the consumer matrices of the cut groups (the
//! output projections that read V/O dims and heads, the down projections that
//! read FFN channels) and their biases get new values.
//!
//! - **Bias compensation**: the mean contribution of every removed input of a
//!   consumer (mean activation × its row) moves into the consumer's bias.
//! - **Refit**: layer by layer in graph order, the kept rows of each consumer
//!   and its bias are solved by ridge regression so that, on the compact
//!   model's own inputs to that consumer (earlier refits applied), it
//!   reproduces the original consumer's output; the penalty pulls toward the
//!   original weights, not toward zero, with strength `lambda` × the mean
//!   diagonal of `XᵀX` (toward zero, a refit overfits the calibration rows).
//!
//! Both produce [`Refit`]s at the sliced shape; the plan carries them, and the
//! masked original substitutes them, so sliced == masked still holds exactly.

use super::plan::{cuts, Refit};
use super::segments::{node_positions, run_segment, segment, State};
use super::slice::{masked, SliceError};
use super::stats::{member_activation, run_probes, CalibrationStats};
use crate::coupling::{Coupling, Role};
use ecospac_ir::exec::{Array, Batch, ExecError, Executor};
use ecospac_ir::{EntityId, Model, NodeId, Op, Tensor, ValueId};
use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Why a refit failed.
#[derive(Debug, thiserror::Error)]
pub enum RefitError {
    /// Running the model failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// Building the masked model failed.
    #[error(transparent)]
    Slice(#[from] SliceError),
    /// The regression had no solution.
    #[error("the refit of `{0}` is singular even with a strong penalty")]
    Singular(String),
}

/// A matrix that reads a cut axis of a group, with its product and bias.
#[derive(Clone, Debug)]
pub struct Consumer {
    /// The weight.
    pub weight: ValueId,
    /// Its contracted (input) axis as stored.
    pub axis: usize,
    /// The product node.
    pub node: NodeId,
    /// The node that reads the weight itself (the product, or a transpose or cast before it).
    pub reader: NodeId,
    /// The product's input activation `X` (its last axis is contracted).
    pub input: ValueId,
    /// The product's output (before the bias).
    pub output: ValueId,
    /// The bias added to the output, when there is one (a 1-D constant).
    pub bias: Option<ValueId>,
}

/// The consumers of every group that `removed` cuts, in graph order; weights
/// with several uses are left out (their values cannot change for one use only).
pub fn consumers(model: &Model, coupling: &Coupling, removed: &[Vec<u32>]) -> Vec<Consumer> {
    let g = &model.graph;
    let consumers_of = g.consumers();
    let producers = g.producers();
    let uses = |v: ValueId| consumers_of[v.index()].len() + g.outputs.iter().filter(|&&o| o == v).count();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (grp, r) in coupling.groups.iter().zip(removed) {
        if r.is_empty() {
            continue;
        }
        for m in grp.members.iter().filter(|m| m.role == Role::Reader) {
            let Some(t) = g.value(m.value).constant.as_ref() else { continue };
            // Quantised weights keep their values: a refit would have to requantise them.
            if t.dims.len() != 2 || !t.dtype.is_float() || uses(m.value) != 1 || !seen.insert(m.value) {
                continue;
            }
            let Some((input, Role::Reader)) = member_activation(model, m) else { continue };
            let Some(&node) = consumers_of[input.index()].iter().find(|&&n| {
                matches!(g.node(n).op, Op::MatMul | Op::Gemm(_))
                    && g.node(n).inputs.first() == Some(&Some(input))
                    && g.node(n).inputs.get(1).copied().flatten().is_some_and(|w| {
                        w == m.value
                            || producers[w.index()].is_some_and(|p| g.node(p).inputs.first() == Some(&Some(m.value)))
                    })
            }) else {
                continue;
            };
            let Some(output) = g.node(node).outputs.first().copied().flatten() else { continue };
            let d_out = t.dims[1 - m.axis];
            let is_bias = |v: ValueId| {
                g.value(v).constant.as_ref().is_some_and(|b| b.dims == [d_out] && b.dtype.is_float()) && uses(v) == 1
            };
            let bias = match &g.node(node).op {
                Op::Gemm(_) => g.node(node).inputs.get(2).copied().flatten().filter(|&b| is_bias(b)),
                _ => consumers_of[output.index()].iter().find_map(|&n| {
                    match (&g.node(n).op, g.node(n).inputs.as_slice()) {
                        (Op::Binary(ecospac_ir::op::BinaryOp::Add), [Some(a), Some(b)])
                            if *a == output && is_bias(*b) =>
                        {
                            Some(*b)
                        }
                        (Op::Binary(ecospac_ir::op::BinaryOp::Add), [Some(a), Some(b)])
                            if *b == output && is_bias(*a) =>
                        {
                            Some(*a)
                        }
                        _ => None,
                    }
                }),
            };
            let reader = m.reader.map_or(node, |(n, _)| n);
            out.push(Consumer { weight: m.value, axis: m.axis, node, reader, input, output, bias });
        }
    }
    let position: BTreeMap<NodeId, usize> = g.order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    out.sort_by_key(|c| {
        position.get(&c.reader).copied().unwrap_or(usize::MAX).min(position.get(&c.node).copied().unwrap_or(usize::MAX))
    });
    out
}

/// A weight as a `[d_in, d_out]` matrix (f64), whatever its stored layout.
fn as_in_out(t: &Tensor, axis: usize) -> Mat<f64> {
    let v = t.to_f64s().unwrap_or_default();
    let (r, c) = (t.dims[0].max(0) as usize, t.dims[1].max(0) as usize);
    if axis == 0 {
        Mat::from_fn(r, c, |i, j| v[i * c + j])
    } else {
        Mat::from_fn(c, r, |i, j| v[j * c + i])
    }
}

/// `[k, j]` values (rows = kept inputs) back in the stored layout of a weight with input `axis`.
fn stored(m: &Mat<f64>, axis: usize) -> Tensor {
    let (k, j) = (m.nrows(), m.ncols());
    let vals: Vec<f32> = if axis == 0 {
        (0..k).flat_map(|r| (0..j).map(move |c| (r, c))).map(|(r, c)| m[(r, c)] as f32).collect()
    } else {
        (0..j).flat_map(|c| (0..k).map(move |r| (r, c))).map(|(r, c)| m[(r, c)] as f32).collect()
    };
    let dims = if axis == 0 { vec![k as i64, j as i64] } else { vec![j as i64, k as i64] };
    Tensor::from_f32s(dims, &vals)
}

/// Kept inputs and outputs of a consumer under `removed`.
fn kept_axes(coupling: &Coupling, removed: &[Vec<u32>], c: &Consumer, t: &Tensor) -> (Vec<usize>, Vec<usize>) {
    let all = cuts(coupling, removed);
    let mut gone: BTreeMap<usize, BTreeSet<u32>> = BTreeMap::new();
    for ((v, _), axes) in &all {
        if *v == c.weight {
            for (a, s) in axes {
                gone.entry(*a).or_default().extend(s.iter().copied());
            }
        }
    }
    let keep = |axis: usize| -> Vec<usize> {
        (0..t.dims[axis].max(0) as usize)
            .filter(|p| !gone.get(&axis).is_some_and(|s| s.contains(&(*p as u32))))
            .collect()
    };
    (keep(c.axis), keep(1 - c.axis))
}

/// Bias compensation: for every consumer with a bias, the bias plus the mean
/// contribution of its removed inputs (means from `stats`).
pub fn compensation(model: &Model, coupling: &Coupling, stats: &CalibrationStats, removed: &[Vec<u32>]) -> Vec<Refit> {
    let mut out = Vec::new();
    for c in consumers(model, coupling, removed) {
        let (Some(bias), Some(s)) = (c.bias, stats.acts.get(&c.input)) else { continue };
        let Some(t) = model.graph.value(c.weight).constant.as_ref() else { continue };
        let Some(b) = model.graph.value(bias).constant.as_ref().and_then(|b| b.to_f64s()) else { continue };
        let w = as_in_out(t, c.axis);
        let (kept_in, kept_out) = kept_axes(coupling, removed, &c, t);
        let kept: BTreeSet<usize> = kept_in.iter().copied().collect();
        let mut nb = b.clone();
        for p in (0..w.nrows()).filter(|p| !kept.contains(p)) {
            let mu = s.mean(p);
            for (o, x) in nb.iter_mut().enumerate() {
                *x += mu * w[(p, o)];
            }
        }
        let vals: Vec<f32> = kept_out.iter().map(|&o| nb[o] as f32).collect();
        out.push(Refit {
            weight: model.graph.value(bias).name.clone(),
            tensor: Tensor::from_f32s(vec![vals.len() as i64], &vals),
        });
    }
    out
}

/// The ridge refit of every consumer of the cut groups from the original
/// model's calibration statistics alone: exact when nothing upstream of the
/// consumer changed (one group cut at a time, as the measured allocation
/// does). Consumers whose input covariance was not collected get bias
/// compensation instead.
pub fn local_refit(
    model: &Model,
    coupling: &Coupling,
    stats: &CalibrationStats,
    removed: &[Vec<u32>],
    lambda: f64,
) -> Vec<Refit> {
    let mut out = Vec::new();
    for c in consumers(model, coupling, removed) {
        let Some(s) = stats.acts.get(&c.input) else { continue };
        let Some(t) = model.graph.value(c.weight).constant.as_ref() else { continue };
        let bias0: Option<Vec<f64>> = c.bias.and_then(|b| model.graph.value(b).constant.as_ref()?.to_f64s());
        let Some(m) = s.matrix(bias0.is_some()) else {
            out.extend(
                compensation(model, coupling, stats, removed)
                    .into_iter()
                    .filter(|r| c.bias.is_some_and(|b| model.graph.value(b).name == r.weight)),
            );
            continue;
        };
        let w0 = as_in_out(t, c.axis);
        let (kept_in, kept_out) = kept_axes(coupling, removed, &c, t);
        let (k, j) = (kept_in.len(), kept_out.len());
        let mean_diag = kept_in.iter().map(|&p| s.moment(p, false)).sum::<f64>() / k.max(1) as f64;
        let l = lambda.max(1e-6) * mean_diag.max(1e-12);
        let mut a = Mat::<f64>::from_fn(k, k, |r, q| m[(kept_in[r], kept_in[q])]);
        for i in 0..k {
            a[(i, i)] += l;
        }
        let mk = Mat::<f64>::from_fn(k, w0.nrows(), |r, p| m[(kept_in[r], p)]);
        let wj = Mat::<f64>::from_fn(w0.nrows(), j, |p, col| w0[(p, kept_out[col])]);
        let mut rhs = &mk * &wj;
        for r in 0..k {
            for col in 0..j {
                rhs[(r, col)] += l * w0[(kept_in[r], kept_out[col])];
            }
        }
        let Ok(llt) = a.llt(Side::Lower) else { continue };
        let w = llt.solve(&rhs);
        out.push(Refit { weight: model.graph.value(c.weight).name.clone(), tensor: stored(&w, c.axis) });
        if let (Some(b), Some(b0)) = (c.bias, &bias0) {
            let vals: Vec<f32> = kept_out
                .iter()
                .enumerate()
                .map(|(col, &o)| {
                    let full: f64 = (0..w0.nrows()).map(|p| s.mean(p) * w0[(p, o)]).sum();
                    let kept: f64 = (0..k).map(|r| s.mean(kept_in[r]) * w[(r, col)]).sum();
                    (b0[o] + full - kept) as f32
                })
                .collect();
            out.push(Refit {
                weight: model.graph.value(b).name.clone(),
                tensor: Tensor::from_f32s(vec![j as i64], &vals),
            });
        }
    }
    out
}

/// The ridge system of one consumer: `[X_K, 1]ᵀ[X_K, 1]` and `[X_K, 1]ᵀ T`.
struct Normal {
    gram: Mat<f64>,
    cross: Mat<f64>,
}

/// The value added to a consumer's output (after its bias) by the residual
/// connection it feeds, when the output goes through exactly one `Add` with a
/// non-constant other side.
pub fn residual_of(model: &Model, c: &Consumer) -> Option<ValueId> {
    let g = &model.graph;
    let consumers = g.consumers();
    let only = |v: ValueId| match consumers[v.index()].as_slice() {
        [n] => Some(*n),
        _ => None,
    };
    let add_other = |n: NodeId, v: ValueId| match (&g.node(n).op, g.node(n).inputs.as_slice()) {
        (Op::Binary(ecospac_ir::op::BinaryOp::Add), [Some(a), Some(b)]) => Some(if *a == v { *b } else { *a }),
        _ => None,
    };
    let mut v = c.output;
    if let Some(bias) = c.bias {
        let n = only(v)?;
        if add_other(n, v)? != bias {
            return None;
        }
        v = g.node(n).outputs.first().copied().flatten()?;
    }
    let n = only(v)?;
    let r = add_other(n, v)?;
    (g.value(r).constant.is_none()).then_some(r)
}

/// Ridge refit of every consumer (and its bias) on `batches`, in graph order.
/// The model runs in segments: the piece between one consumer and the next,
/// fed with what the previous piece left (earlier refits applied), so the
/// whole refit costs about two runs of the model. With `residual`, a consumer
/// whose output joins a residual connection is fitted to what the original
/// sum needs (`y₀ + r₀ − r`), so it also corrects the error the compact
/// model's residual stream carries from earlier layers. `progress` is told
/// each consumer as it starts.
#[allow(clippy::too_many_arguments)]
pub fn refit(
    model: &Model,
    coupling: &Coupling,
    removed: &[Vec<u32>],
    exec: &dyn Executor,
    batches: &[Batch],
    lambda: f64,
    residual: bool,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<Refit>, RefitError> {
    let cons = consumers(model, coupling, removed);
    if cons.is_empty() {
        return Ok(Vec::new());
    }
    let resid: Vec<Option<ValueId>> =
        cons.iter().map(|c| if residual { residual_of(model, c) } else { None }).collect();
    // The original consumers' outputs (plus their biases, below) and residuals: the targets.
    let mut fetch: Vec<ValueId> = cons.iter().map(|c| c.output).collect();
    fetch.extend(resid.iter().flatten().copied());
    let mut original: Vec<Vec<Vec<f32>>> = vec![Vec::new(); fetch.len()];
    run_probes(exec, model, &fetch, batches, |_, arrays| {
        for (t, a) in original.iter_mut().zip(arrays) {
            t.push(a.data.clone());
        }
    })?;
    let mut resid_original: Vec<Option<Vec<Vec<f32>>>> = Vec::with_capacity(cons.len());
    let mut rest = original.split_off(cons.len()).into_iter();
    for r in &resid {
        resid_original.push(r.and_then(|_| rest.next()));
    }
    let targets = original;
    // Segment k runs from the first node that reads consumer k-1's weight
    // (so that its refit takes effect) to consumer k's input; what later
    // segments read from before their start is carried in the state.
    let pos = node_positions(model);
    let producer = model.graph.producers();
    let first_read =
        |c: &Consumer| pos.get(&c.reader).copied().unwrap_or(0).min(pos.get(&c.node).copied().unwrap_or(0));
    let starts: Vec<usize> = (0..cons.len()).map(|k| if k == 0 { 0 } else { first_read(&cons[k - 1]) }).collect();
    let position_of = |v: &ValueId| producer[v.index()].and_then(|p| pos.get(&p).copied());
    let mut plans: Vec<(Vec<ValueId>, Vec<ValueId>)> = vec![(Vec::new(), Vec::new()); cons.len()];
    let mut later: BTreeSet<ValueId> = BTreeSet::new();
    for k in (0..cons.len()).rev() {
        let end = if k + 1 < cons.len() { starts[k + 1] } else { usize::MAX };
        let made_here = |v: &ValueId| position_of(v).is_some_and(|p| p >= starts[k] && p < end);
        let mut outs = vec![cons[k].input];
        if let Some(r) = resid[k] {
            if position_of(&r).is_some_and(|p| p >= starts[k]) {
                outs.push(r);
            } else if !model.graph.inputs.contains(&r) {
                later.insert(r);
            }
        }
        let extra: Vec<ValueId> = later.iter().copied().filter(|v| made_here(v) && !outs.contains(v)).collect();
        outs.extend(extra);
        let (_, inputs) = segment(model, starts[k], &outs)?;
        later.retain(|v| !made_here(v));
        later.extend(inputs.iter().copied().filter(|v| !model.graph.inputs.contains(v)));
        plans[k] = (outs, inputs);
    }
    let mut state: State = vec![HashMap::new(); batches.len()];
    let mut refits: Vec<Refit> = Vec::new();
    let mut current = masked(model, coupling, removed, &refits)?;
    for (k, c) in cons.iter().enumerate() {
        let name = model.graph.value(c.weight).name.clone();
        progress(k, cons.len(), &name);
        let (outs, inputs) = &plans[k];
        let (seg, _) = segment(&current, starts[k], outs)?;
        let results = run_segment(exec, &seg, inputs, batches, &state)?;
        let Some(t) = model.graph.value(c.weight).constant.as_ref() else { continue };
        let w0 = as_in_out(t, c.axis);
        let (kept_in, kept_out) = kept_axes(coupling, removed, c, t);
        let bias0: Option<Vec<f64>> = c.bias.and_then(|b| model.graph.value(b).constant.as_ref()?.to_f64s());
        let (nk, j, extra) = (kept_in.len(), kept_out.len(), usize::from(bias0.is_some()));
        let n = nk + extra;
        let mut sys = Normal { gram: Mat::zeros(n, n), cross: Mat::zeros(n, j) };
        let d_out = w0.ncols();
        for (bi, out) in results.into_iter().enumerate() {
            for (v, t) in outs.iter().zip(out) {
                state[bi].insert(*v, t);
            }
            let get = |v: ValueId| state[bi].get(&v).and_then(Array::of);
            let x = get(c.input).ok_or_else(|| ExecError(format!("`{name}`: a non-float input")))?;
            let (d_in, rows) = (x.last_dim(), x.rows());
            let target = &targets[k][bi];
            if d_in != w0.nrows() || target.len() != rows * d_out {
                return Err(RefitError::Exec(ExecError(format!("`{name}`: activations of an unexpected shape"))));
            }
            // The residual correction r₀ − r, where the consumer feeds one.
            let correction: Option<Vec<f32>> = match (resid[k], &resid_original[k]) {
                (Some(r), Some(orig)) => get(r)
                    .filter(|a| a.data.len() == target.len())
                    .map(|now| orig[bi].iter().zip(&now.data).map(|(a, b)| a - b).collect()),
                _ => None,
            };
            let xm = Mat::<f64>::from_fn(
                rows,
                n,
                |r, col| if col < nk { x.data[r * d_in + kept_in[col]] as f64 } else { 1.0 },
            );
            let ym = Mat::<f64>::from_fn(rows, j, |r, col| {
                let o = kept_out[col];
                let i = r * d_out + o;
                target[i] as f64
                    + bias0.as_ref().map_or(0.0, |b| b[o])
                    + correction.as_ref().map_or(0.0, |c| c[i] as f64)
            });
            sys.gram += xm.transpose() * &xm;
            sys.cross += xm.transpose() * &ym;
        }
        // What no later segment reads can go.
        let keep: BTreeSet<ValueId> =
            plans[k + 1..].iter().flat_map(|(_, i)| i.iter().copied()).chain(later_needs(&resid[k + 1..])).collect();
        for s in &mut state {
            s.retain(|v, _| keep.contains(v));
        }
        let solution = solve(&sys, &w0, &kept_in, &kept_out, bias0.as_deref(), lambda, &name)?;
        let wk = Mat::<f64>::from_fn(nk, j, |r, col| solution[(r, col)]);
        refits.push(Refit { weight: name.clone(), tensor: stored(&wk, c.axis) });
        if let (Some(b), true) = (c.bias, extra == 1) {
            let vals: Vec<f32> = (0..j).map(|col| solution[(nk, col)] as f32).collect();
            refits.push(Refit {
                weight: model.graph.value(b).name.clone(),
                tensor: Tensor::from_f32s(vec![j as i64], &vals),
            });
        }
        current = masked(model, coupling, removed, &refits)?;
    }
    Ok(refits)
}

/// The residuals later consumers read (kept in the state between segments).
fn later_needs(resid: &[Option<ValueId>]) -> impl Iterator<Item = ValueId> + '_ {
    resid.iter().flatten().copied()
}

/// Solves `(G + λD) W = R + λD W₀`, `D` the identity with a near-zero bias entry,
/// `λ = lambda ×` the mean diagonal of the kept inputs' Gram matrix.
fn solve(
    sys: &Normal,
    w0: &Mat<f64>,
    kept_in: &[usize],
    kept_out: &[usize],
    bias0: Option<&[f64]>,
    lambda: f64,
    name: &str,
) -> Result<Mat<f64>, RefitError> {
    let (n, j, nk) = (sys.gram.nrows(), kept_out.len(), kept_in.len());
    let mean_diag = (0..nk).map(|i| sys.gram[(i, i)]).sum::<f64>() / nk.max(1) as f64;
    let prior = Mat::<f64>::from_fn(n, j, |r, col| {
        if r < nk {
            w0[(kept_in[r], kept_out[col])]
        } else {
            bias0.map_or(0.0, |b| b[kept_out[col]])
        }
    });
    let mut strength = lambda.max(1e-6) * mean_diag.max(1e-12);
    loop {
        let mut a = sys.gram.clone();
        let mut rhs = sys.cross.clone();
        for i in 0..n {
            let l = if i < nk { strength } else { strength * 1e-6 };
            a[(i, i)] += l;
            for col in 0..j {
                rhs[(i, col)] += l * prior[(i, col)];
            }
        }
        match a.llt(Side::Lower) {
            Ok(llt) => return Ok(llt.solve(&rhs)),
            Err(_) if strength < 1e12 * mean_diag.max(1e-12) => strength *= 10.0,
            Err(_) => return Err(RefitError::Singular(name.to_string())),
        }
    }
}
