//! Budgeted coupled pruning: calibration statistics → scores → an allocation
//! → a [`SlicePlan`] (with refit weights) → a sliced model.
//!
//! Each step is a library function here and a registered pass of the
//! [pipeline](crate::pipeline); the pipeline is how the CLI runs them.

mod allocate;
mod importance;
mod measure;
mod plan;
mod refit;
mod segments;
mod slice;
mod stats;

pub use allocate::{global, greedy, keep_strongest, kept_fraction, measured, step, uniform, weakest_first, Allocation};
pub use importance::{scores, scores_with, Criterion, ScoreError};
pub use measure::{exchange_rates, relative_error, MeasureError};
pub use plan::{
    cuts, group_key, prunable_parameters, prunable_parameters_in, AxisRef, Cuts, GroupPlan, PlanError, Refit,
    SlicePlan, PLAN_FORMAT,
};
pub use refit::{compensation, consumers, local_refit, refit, residual_of, Consumer, RefitError};
pub use segments::{node_positions, run_segment, segment, State};
pub use slice::{apply_plan, mask_plan, masked, SliceError};
pub use stats::{collect, member_activation, probe_model, run_probes, ActivationStats, CalibrationStats};

use crate::coupling::Coupling;
use ecospac_ir::{EntityId, Model};

/// Settings of a plan chosen without running the model.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PlanOptions {
    /// Fraction of the prunable parameters to keep.
    pub budget: f64,
    /// Scoring (a weight-only criterion, or random).
    pub criterion: Criterion,
    /// Spreading: uniform, global or greedy (measured needs an executor).
    pub allocation: Allocation,
    /// Kept counts are multiples of this where the group is at least twice as large.
    pub align: usize,
    /// Seed of the random criterion.
    pub seed: u64,
}

/// Chooses what to keep under the budget from the weights alone.
pub fn plan(model: &Model, coupling: &Coupling, opts: &PlanOptions) -> Result<SlicePlan, ScoreError> {
    let s = scores(model, coupling, opts.criterion, None, opts.seed)?;
    plan_with_scores(model, coupling, opts, s)
}

/// Chooses what to keep under the budget from given scores (per group and
/// index, linear, higher is more important), spread uniformly, globally or greedily
/// (the measured allocation runs the model: see [`exchange_rates`]).
pub fn plan_with_scores(
    model: &Model,
    coupling: &Coupling,
    opts: &PlanOptions,
    scores: Vec<Vec<f64>>,
) -> Result<SlicePlan, ScoreError> {
    let per_block = match opts.allocation {
        Allocation::Uniform => uniform(coupling, opts.budget, opts.align),
        Allocation::Global => global(model, coupling, &scores, &[], opts.budget, opts.align),
        Allocation::Greedy => greedy(model, coupling, &scores, &[], opts.budget, opts.align),
        Allocation::Measured => return Err(ScoreError::NeedsRates),
    };
    Ok(keep_strongest(model, coupling, &scores, &per_block))
}

/// How ONNX Runtime's dynamic quantiser turns an integer product's int32
/// output into the float it stands for: `Cast(MatMulInteger) * scale`, each
/// the only reader of the one before. The `Mul` and the scale it multiplies by
/// (`input scale * weight scale`); `None` for any other shape.
pub(crate) fn integer_product_scaling<'g>(
    g: &'g ecospac_ir::Graph,
    consumers: &[Vec<ecospac_ir::NodeId>],
    product: &ecospac_ir::Node,
) -> Option<(&'g ecospac_ir::Node, ecospac_ir::ValueId)> {
    use ecospac_ir::Op;
    let only = |v: ecospac_ir::ValueId| match consumers.get(v.index())?.as_slice() {
        [n] => Some(g.node(*n)),
        _ => None,
    };
    let cast = only(product.outputs.first().copied().flatten()?).filter(|c| matches!(c.op, Op::Cast(_)))?;
    let cast_out = cast.outputs.first().copied().flatten()?;
    let mul = only(cast_out).filter(|m| matches!(m.op, Op::Binary(ecospac_ir::op::BinaryOp::Mul)))?;
    let scale = mul.inputs.iter().flatten().copied().find(|&v| v != cast_out)?;
    Some((mul, scale))
}

/// The weight's scale of an integer product ([`integer_product_scaling`]):
/// the constant factor of its scale.
fn integer_scale(g: &ecospac_ir::Graph, node: &ecospac_ir::Node) -> Option<Vec<f64>> {
    let (_, factor) = integer_product_scaling(g, &g.consumers(), node)?;
    let constant = |v: ecospac_ir::ValueId| g.value(v).constant.as_ref().and_then(|t| t.to_f64s());
    constant(factor).or_else(|| {
        let p = g.node(g.producers()[factor.index()]?);
        if !matches!(p.op, ecospac_ir::Op::Binary(ecospac_ir::op::BinaryOp::Mul)) {
            return None;
        }
        p.inputs.iter().flatten().find_map(|&v| constant(v))
    })
}

/// `(q - zero) · scale` of the codes `q` of `dims`: one scale and zero point
/// for all, or one per index of `axis`; `None` when they do not fit.
fn dequantised(
    dims: &[usize],
    q: &ecospac_ir::Tensor,
    scale: &ecospac_ir::Tensor,
    zero: Option<&ecospac_ir::Tensor>,
    axis: Option<usize>,
) -> Option<Vec<f64>> {
    let (q, scale) = (q.to_f64s()?, scale.to_f64s()?);
    let zero = zero.map_or_else(|| Some(vec![0.0; scale.len()]), |z| z.to_f64s())?;
    if zero.len() != scale.len() || scale.is_empty() {
        return None;
    }
    let index = if scale.len() == 1 {
        None
    } else {
        let a = axis?;
        (dims.get(a) == Some(&scale.len())).then_some(())?;
        Some((a, dims[a + 1..].iter().product::<usize>().max(1)))
    };
    let at = |e: usize| index.map_or(0, |(a, inner)| (e / inner) % dims[a]);
    Some(q.iter().enumerate().map(|(e, &x)| (x - zero[at(e)]) * scale[at(e)]).collect())
}

/// The values of a member's weight as the model computes with them, with
/// their dims: its elements, or, for quantised data, `(q - zero_point) ·
/// scale`: per tensor or per axis where a `DequantizeLinear` or a quantised
/// operator (`QLinearMatMul`…) reads it, per
/// block where a `MatMulNBits` does (dims `[N, k_blocks, block_size]`, the
/// member's axis unchanged).
pub fn weight_values(model: &Model, m: &crate::coupling::Member) -> Option<(Vec<usize>, Vec<f64>)> {
    let g = &model.graph;
    let t = g.value(m.value).constant.as_ref()?;
    let dims: Vec<usize> = t.dims.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
    let Some((node, input)) = m.reader else { return Some((dims, t.to_f64s()?)) };
    let node = g.node(node);
    let param = |i: usize| g.value((*node.inputs.get(i)?)?).constant.as_ref();
    match &node.op {
        ecospac_ir::Op::Dequantize(quant) if input == 0 => {
            let axis = quant.axis(dims.len()).ok();
            Some((dims.clone(), dequantised(&dims, t, param(1)?, param(2), axis)?))
        }
        ecospac_ir::Op::QLinear(q) => {
            let Some((scale, zero)) = q.params_of(input) else { return Some((dims, t.to_f64s()?)) };
            let axis = q.column_axis(scale, dims.len());
            Some((dims.clone(), dequantised(&dims, t, param(scale)?, param(zero), axis)?))
        }
        ecospac_ir::Op::MatMulInteger if input == 1 && dims.len() == 2 => {
            // (q - zero point) times the weight's scale, one per column or one
            // for all; without a scale that can be found, the codes less their
            // zero points (the same ranking within the weight).
            let q = t.to_f64s()?;
            let n = dims[1].max(1);
            let per_column = |v: Vec<f64>| (v.len() == 1 || v.len() == n).then_some(v);
            let zero = param(3).map_or_else(|| Some(vec![0.0]), |z| per_column(z.to_f64s()?))?;
            let scale = integer_scale(g, node).and_then(per_column).unwrap_or_else(|| vec![1.0]);
            let at = |v: &[f64], c: usize| v[if v.len() == 1 { 0 } else { c }];
            Some((dims, q.iter().enumerate().map(|(e, &x)| (x - at(&zero, e % n)) * at(&scale, e % n)).collect()))
        }
        ecospac_ir::Op::MatMulNBits(mm) if input == 1 => {
            let (bits, bs) = (usize::try_from(mm.bits).ok()?, usize::try_from(mm.block_size).ok()?);
            let [n, kb, blob] = dims[..] else { return None };
            let bytes = t.bytes();
            let scale = param(2)?.to_f64s()?;
            let rows_blocks = n.checked_mul(kb)?;
            if blob * 8 != bs * bits || bytes.len() != rows_blocks.checked_mul(blob)? || scale.len() != rows_blocks {
                return None;
            }
            let code = |data: &[u8], i: usize| -> Option<f64> {
                let byte = *data.get(i * bits / 8)?;
                Some(f64::from((byte >> ((i * bits) % 8)) & ((1u16 << bits) - 1) as u8))
            };
            // Zero points: the scales' type per block, packed codes, or the middle code.
            let zero_at = |row: usize, block: usize| -> Option<f64> {
                match param(3) {
                    None => Some(f64::from(1u32 << (bits - 1))),
                    Some(z) if z.dtype.is_float() => z.to_f64s()?.get(row * kb + block).copied(),
                    Some(z) => code(z.bytes().get(row * (z.bytes().len() / n.max(1))..)?, block),
                }
            };
            let mut values = Vec::with_capacity(rows_blocks.saturating_mul(bs));
            for row in 0..n {
                for block in 0..kb {
                    let (s, z) = (scale[row * kb + block], zero_at(row, block)?);
                    let data = &bytes[(row * kb + block) * blob..(row * kb + block + 1) * blob];
                    for e in 0..bs {
                        values.push((code(data, e)? - z) * s);
                    }
                }
            }
            Some((vec![n, kb, bs], values))
        }
        _ => Some((dims, t.to_f64s()?)),
    }
}
