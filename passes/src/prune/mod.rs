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
