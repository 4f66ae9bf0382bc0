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

pub use allocate::{global, keep_strongest, kept_fraction, measured, step, uniform, weakest_first, Allocation};
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
use ecospac_ir::Model;

/// Settings of a plan chosen without running the model.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PlanOptions {
    /// Fraction of the prunable parameters to keep.
    pub budget: f64,
    /// Scoring (a weight-only criterion, or random).
    pub criterion: Criterion,
    /// Spreading: uniform or global (measured needs an executor).
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
/// index, linear, higher is more important), spread uniformly or globally
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
        Allocation::Measured => return Err(ScoreError::NeedsRates),
    };
    Ok(keep_strongest(model, coupling, &scores, &per_block))
}

/// The values of a member's weight as the model computes with them: its
/// elements, or, for quantised data that a `DequantizeLinear` reads,
/// `(q - zero_point) · scale` (per tensor or per axis).
pub fn weight_values(model: &Model, m: &crate::coupling::Member) -> Option<Vec<f64>> {
    let g = &model.graph;
    let t = g.value(m.value).constant.as_ref()?;
    let q = t.to_f64s()?;
    let Some((node, 0)) = m.reader else { return Some(q) };
    let node = g.node(node);
    let ecospac_ir::Op::Dequantize(quant) = &node.op else { return Some(q) };
    let param = |i: usize| -> Option<Vec<f64>> { g.value((*node.inputs.get(i)?)?).constant.as_ref()?.to_f64s() };
    let scale = param(1)?;
    let zero = param(2).unwrap_or_else(|| vec![0.0; scale.len()]);
    if zero.len() != scale.len() || scale.is_empty() {
        return None;
    }
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let index = if scale.len() == 1 {
        None
    } else {
        let a = quant.axis(dims.len()).ok()?;
        (dims.get(a) == Some(&scale.len())).then_some(())?;
        Some((a, dims[a + 1..].iter().product::<usize>().max(1)))
    };
    Some(
        q.iter()
            .enumerate()
            .map(|(e, &x)| {
                let k = index.map_or(0, |(a, inner)| (e / inner) % dims[a]);
                (x - zero[k]) * scale[k]
            })
            .collect(),
    )
}
