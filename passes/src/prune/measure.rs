//! Exchange rates between groups, measured: each group alone loses its
//! weakest indices (a fraction near the budget's, bias-compensated), the model
//! runs on calibration batches, and the relative error of its first output
//! (`Σ‖y − y₀‖² / Σ‖y₀‖²`) divided by the score removed is the group's rate:
//! output error per unit of score. Scores of different groups (heads scored
//! through their output projection, dims through their activations, FFN
//! channels through the down projection) become comparable, and so do layers.

use super::allocate::{step, weakest_first};
use super::refit::{compensation, local_refit};
use super::segments::{node_positions, run_segment, segment, State};
use super::slice::{masked, SliceError};
use super::stats::CalibrationStats;
use crate::coupling::Coupling;
use ecospac_ir::exec::{Array, Batch, ExecError, Executor};
use ecospac_ir::{Model, ValueId};
use std::collections::{BTreeSet, HashMap};

/// Why the rates could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// Running the model failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// Building a masked model failed.
    #[error(transparent)]
    Slice(#[from] SliceError),
}

/// Relative squared error of `b` against `a`.
pub fn relative_error(a: &[Array], b: &[Array]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.data.iter().zip(&y.data) {
            num += (*p as f64 - *q as f64).powi(2);
            den += (*p as f64).powi(2);
        }
    }
    num / den.max(1e-30)
}

/// The rate of every group (see the module doc). Each group's run starts at
/// the first node that reads its weights, fed with the original model's values
/// there. With `lambda`, the cut group's consumers are refit (from `stats`,
/// ridge `lambda`) as the compile will refit them; without, bias-compensated.
/// `progress` is told each group as it starts.
#[allow(clippy::too_many_arguments)]
pub fn exchange_rates(
    model: &Model,
    coupling: &Coupling,
    scores: &[Vec<f64>],
    stats: Option<&CalibrationStats>,
    budget: f64,
    align: usize,
    lambda: Option<f64>,
    exec: &dyn Executor,
    batches: &[Batch],
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<f64>, MeasureError> {
    let output = *model.graph.outputs.first().ok_or_else(|| ExecError("the model has no output".into()))?;
    let pos = node_positions(model);
    // Where each group's weights are first read, and what a run from there needs.
    let starts: Vec<usize> = coupling
        .groups
        .iter()
        .map(|g| g.members.iter().filter_map(|m| pos.get(&m.reader?.0).copied()).min().unwrap_or(0))
        .collect();
    let mut needs: Vec<Vec<ValueId>> = Vec::with_capacity(starts.len());
    let mut boundary: BTreeSet<ValueId> = BTreeSet::new();
    for &s in &starts {
        let (_, inputs) = segment(model, s, &[output])?;
        boundary.extend(inputs.iter().copied().filter(|v| !model.graph.inputs.contains(v)));
        needs.push(inputs);
    }
    let boundary: Vec<ValueId> = boundary.into_iter().collect();
    let mut fetch = vec![output];
    fetch.extend(boundary.iter().copied());
    let (reference_model, reference_inputs) = segment(model, 0, &fetch)?;
    let reference =
        run_segment(exec, &reference_model, &reference_inputs, batches, &vec![HashMap::new(); batches.len()])?;
    let reference_out: Vec<Array> = reference
        .iter()
        .map(|o| Array::of(&o[0]).ok_or_else(|| ExecError("the model's first output is not float".into())))
        .collect::<Result<_, _>>()?;
    let state: State =
        reference.into_iter().map(|o| boundary.iter().copied().zip(o.into_iter().skip(1)).collect()).collect();
    let mut rates = vec![f64::NAN; coupling.groups.len()];
    for (gi, g) in coupling.groups.iter().enumerate() {
        progress(gi, coupling.groups.len());
        let st = step(g.block, align);
        if g.block < 2 * st || scores[gi].iter().any(|s| !s.is_finite()) {
            continue;
        }
        let n = (((1.0 - budget) * g.block as f64 / st as f64).round() as usize * st).clamp(st, g.block - st);
        let weakest = weakest_first(g, &scores[gi]);
        let cut: Vec<u32> = weakest.iter().flat_map(|b| b[..n].iter().copied()).collect();
        let removed: Vec<Vec<u32>> =
            (0..coupling.groups.len()).map(|k| if k == gi { cut.clone() } else { Vec::new() }).collect();
        let refits = match (stats, lambda) {
            (Some(s), Some(l)) => local_refit(model, coupling, s, &removed, l),
            (Some(s), None) => compensation(model, coupling, s, &removed),
            (None, _) => Vec::new(),
        };
        let m = masked(model, coupling, &removed, &refits)?;
        let (seg, inputs) = segment(&m, starts[gi], &[output])?;
        let out = run_segment(exec, &seg, &inputs, batches, &state)?;
        let out: Vec<Array> = out.iter().filter_map(|o| Array::of(&o[0])).collect();
        let err = relative_error(&reference_out, &out);
        let score: f64 = cut.iter().map(|&i| scores[gi][i as usize]).sum();
        rates[gi] = err / score.max(1e-300);
    }
    // Groups too small to measure take the median rate of the others.
    let mut known: Vec<f64> = rates.iter().copied().filter(|r| r.is_finite()).collect();
    known.sort_by(f64::total_cmp);
    let median = known.get(known.len() / 2).copied().unwrap_or(1.0);
    Ok(rates.into_iter().map(|r| if r.is_finite() { r } else { median }).collect())
}
