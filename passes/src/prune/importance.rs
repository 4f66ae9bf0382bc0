//! Importance of each index of each coupling group (higher: more important).
//!
//! Scores are linear, non-negative estimates of what removing an index costs.
//! The data-aware criteria measure it where the group's slices meet the rest
//! of the model: for a group read by a consumer matrix (V/O dims, FFN
//! channels, whole heads through their output projection), the energy of the
//! index's contribution to the consumer's output over the calibration rows,
//! `tr(W_Pᵀ C_PP W_P)` with `C` the second moment (or covariance) of the
//! consumer's input over the positions `P` of the index; for a group no
//! matrix reads (Q/K dims, whose product is between activations), the product
//! over its matrices of the root-mean-square activation of the index (the
//! EcoSpa coupled score on activations).

use super::stats::{member_activation, CalibrationStats};
use crate::coupling::{Coupling, Group, Member, Role};
use ecospac_ir::{Model, ValueId};
use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// How indices are scored.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Criterion {
    /// Data, refit-aware: the consumer's output error that remains after its
    /// other inputs absorb the index as a refit would (Optimal Brain Surgeon on
    /// the consumer's input covariance, with the refit's ridge):
    /// `tr(W_Pᵀ (([(C+λI)⁻¹]_PP)⁻¹ − λI) W_P)`.
    Obs,
    /// Data: variance of each index's contribution to the consumer's output
    /// (the mean is what bias compensation and refits restore). The default.
    Variance,
    /// Data: second moment of each index's contribution to the consumer's output.
    Energy,
    /// Data, EcoSpa: the product of every member's activation norm (readers
    /// weighted by their rows) through the index.
    CoupledAct,
    /// Data, baseline: the activation norm of one writer only.
    UncoupledAct,
    /// Weights only, EcoSpa: the product of the norms of every matrix slice through the index.
    Coupled,
    /// Weights only, baseline: the norm of one side only (the first writer matrix).
    Uncoupled,
    /// Baseline: seeded random scores.
    Random,
}

impl Criterion {
    /// Every criterion, by its name.
    pub const ALL: [(&'static str, Criterion); 8] = [
        ("obs", Criterion::Obs),
        ("variance", Criterion::Variance),
        ("energy", Criterion::Energy),
        ("coupled-act", Criterion::CoupledAct),
        ("uncoupled-act", Criterion::UncoupledAct),
        ("coupled", Criterion::Coupled),
        ("uncoupled", Criterion::Uncoupled),
        ("random", Criterion::Random),
    ];

    /// Parses a criterion name.
    pub fn parse(s: &str) -> Option<Criterion> {
        Criterion::ALL.iter().find(|(n, _)| *n == s).map(|&(_, c)| c)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        Criterion::ALL.iter().find(|(_, c)| *c == self).map_or("?", |(n, _)| n)
    }

    /// Whether it needs calibration data.
    pub fn needs_data(self) -> bool {
        matches!(
            self,
            Criterion::Obs | Criterion::Variance | Criterion::Energy | Criterion::CoupledAct | Criterion::UncoupledAct
        )
    }
}

/// Why scores could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// A data criterion without calibration statistics.
    #[error("criterion `{0}` needs calibration data (run `calibrate` first)")]
    NeedsData(&'static str),
    /// The measured allocation without an engine to measure with.
    #[error("allocation `measured` runs the model: use the `allocate` pass with an engine and calibration data")]
    NeedsRates,
}

/// Sum of squares of the weight over all axes but `axis`, per position of `axis`.
fn position_energy(model: &Model, m: &Member) -> Option<Vec<f64>> {
    // float32 weights are their own values: summed straight from their bytes,
    // in the same order (the same sums), without a copy as f64.
    let t = model.graph.value(m.value).constant.as_ref()?;
    if t.dtype == ecospac_ir::DType::F32 {
        let dims: Vec<usize> = t.dims.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
        let n = *dims.get(m.axis)?;
        let inner: usize = dims[m.axis + 1..].iter().product();
        let mut e = vec![0.0; n];
        if n == 0 || inner == 0 {
            return Some(e);
        }
        for (c, run) in t.bytes().chunks_exact(4 * inner).enumerate() {
            let acc = &mut e[c % n];
            for b in run.chunks_exact(4) {
                let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64;
                *acc += v * v;
            }
        }
        return Some(e);
    }
    let (dims, vals) = super::weight_values(model, m)?;
    let n = *dims.get(m.axis)?;
    let inner: usize = dims[m.axis + 1..].iter().product();
    let mut e = vec![0.0; n];
    for (k, v) in vals.iter().enumerate() {
        e[(k / inner.max(1)) % n.max(1)] += v * v;
    }
    Some(e)
}

/// The rows of a weight along `axis` (each row: every element with that index).
fn rows_along(model: &Model, m: &Member) -> Option<Vec<Vec<f64>>> {
    let (dims, vals) = super::weight_values(model, m)?;
    let n = *dims.get(m.axis)?;
    let inner: usize = dims[m.axis + 1..].iter().product();
    let mut rows = vec![Vec::with_capacity(vals.len() / n.max(1)); n];
    for (k, v) in vals.iter().enumerate() {
        rows[(k / inner.max(1)) % n.max(1)].push(*v);
    }
    Some(rows)
}

fn is_matrix(model: &Model, m: &Member) -> bool {
    model.graph.value(m.value).constant.as_ref().is_some_and(|t| t.dims.len() >= 2)
}

/// Scores per group and index. Data criteria need `stats`; `lambda` is the
/// ridge of the refit that `obs` anticipates (in units of the mean diagonal).
pub fn scores(
    model: &Model,
    coupling: &Coupling,
    criterion: Criterion,
    stats: Option<&CalibrationStats>,
    seed: u64,
) -> Result<Vec<Vec<f64>>, ScoreError> {
    scores_with(model, coupling, criterion, stats, seed, 1.0)
}

/// [`scores`] with the ridge `lambda` of `obs` given.
pub fn scores_with(
    model: &Model,
    coupling: &Coupling,
    criterion: Criterion,
    stats: Option<&CalibrationStats>,
    seed: u64,
    lambda: f64,
) -> Result<Vec<Vec<f64>>, ScoreError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let stats = match (criterion.needs_data(), stats) {
        (true, None) => return Err(ScoreError::NeedsData(criterion.name())),
        (_, s) => s,
    };
    let mut inverses: HashMap<ValueId, Option<(Mat<f64>, f64)>> = HashMap::new();
    Ok(coupling
        .groups
        .iter()
        .map(|g| match criterion {
            Criterion::Obs => {
                let s = stats.and_then(|s| obs_scores(model, g, s, lambda, &mut inverses));
                s.or_else(|| stats.and_then(|s| activation_norm_scores(model, g, s, true)))
                    .unwrap_or_else(|| weight_scores(model, g, true))
            }
            Criterion::Random => (0..g.size).map(|_| rng.random_range(f64::MIN_POSITIVE..1.0)).collect(),
            Criterion::Coupled | Criterion::Uncoupled => weight_scores(model, g, criterion == Criterion::Coupled),
            Criterion::CoupledAct | Criterion::UncoupledAct => {
                let s = stats.map(|s| activation_norm_scores(model, g, s, criterion == Criterion::CoupledAct));
                s.flatten().unwrap_or_else(|| weight_scores(model, g, criterion == Criterion::CoupledAct))
            }
            Criterion::Variance | Criterion::Energy => {
                let centered = criterion == Criterion::Variance;
                let s = stats.and_then(|s| contribution_scores(model, g, s, centered));
                s.or_else(|| stats.and_then(|s| activation_norm_scores(model, g, s, true)))
                    .unwrap_or_else(|| weight_scores(model, g, true))
            }
        })
        .collect())
}

/// Weight-only: the product (`coupled`) of the norms of every matrix slice
/// through each index, or the norm of the first writer matrix alone.
fn weight_scores(model: &Model, g: &Group, coupled: bool) -> Vec<f64> {
    let matrices: Vec<&Member> = g.members.iter().filter(|m| is_matrix(model, m)).collect();
    let chosen: Vec<&Member> = if coupled {
        if matrices.is_empty() {
            g.members.iter().collect()
        } else {
            matrices
        }
    } else {
        matrices.iter().copied().find(|m| m.role == Role::Writer).or(matrices.first().copied()).into_iter().collect()
    };
    let mut log = vec![0.0; g.size];
    for m in chosen {
        let Some(e) = position_energy(model, m) else { continue };
        for (i, positions) in m.positions.iter().enumerate() {
            let energy: f64 = positions.iter().map(|&p| e[p as usize]).sum();
            log[i] += 0.5 * (energy + 1e-30).ln();
        }
    }
    log.into_iter().map(f64::exp).collect()
}

/// Activation norms: writers contribute the energy of their output columns,
/// readers that of their input columns times their weight rows; `coupled`
/// multiplies every member's term, else only the first writer's counts.
/// `None` when no member's activation was calibrated.
fn activation_norm_scores(model: &Model, g: &Group, stats: &CalibrationStats, coupled: bool) -> Option<Vec<f64>> {
    let mut log = vec![0.0; g.size];
    let mut used = false;
    for m in &g.members {
        let Some((act, role)) = member_activation(model, m) else { continue };
        let Some(s) = stats.acts.get(&act) else { continue };
        if !coupled && (used || role != Role::Writer) {
            continue;
        }
        let w = if role == Role::Reader { position_energy(model, m) } else { None };
        for (i, positions) in m.positions.iter().enumerate() {
            let total: f64 = positions
                .iter()
                .map(|&p| s.moment(p as usize, false) * w.as_ref().map_or(1.0, |w| w[p as usize]))
                .sum();
            log[i] += 0.5 * (total + 1e-30).ln();
        }
        used = true;
    }
    used.then(|| log.into_iter().map(f64::exp).collect())
}

/// Energy (or variance) of each index's contribution to its consumers'
/// outputs; `None` when no consumer matrix of the group was calibrated.
fn contribution_scores(model: &Model, g: &Group, stats: &CalibrationStats, centered: bool) -> Option<Vec<f64>> {
    let mut out = vec![0.0; g.size];
    let mut used = false;
    for m in g.members.iter().filter(|m| m.role == Role::Reader && is_matrix(model, m)) {
        let Some((act, Role::Reader)) = member_activation(model, m) else { continue };
        let Some(s) = stats.acts.get(&act) else { continue };
        let Some(rows) = rows_along(model, m) else { continue };
        for (i, positions) in m.positions.iter().enumerate() {
            out[i] += match positions.as_slice() {
                [] => 0.0,
                [p] => s.moment(*p as usize, centered) * dot(&rows[*p as usize], &rows[*p as usize]),
                ps => match s.block(ps, centered) {
                    Some(c) => {
                        let n = ps.len();
                        let mut t = 0.0;
                        for a in 0..n {
                            for b in 0..n {
                                t += c[(a, b)] * dot(&rows[ps[a] as usize], &rows[ps[b] as usize]);
                            }
                        }
                        t.max(0.0)
                    }
                    None => ps
                        .iter()
                        .map(|&p| s.moment(p as usize, centered) * dot(&rows[p as usize], &rows[p as usize]))
                        .sum(),
                },
            };
        }
        used = true;
    }
    used.then_some(out)
}

/// `(C + λ·mean(diag C)·I)⁻¹` of an activation's covariance, and that `λ·mean(diag C)`.
fn ridge_inverse(stats: &super::stats::ActivationStats, lambda: f64) -> Option<(Mat<f64>, f64)> {
    let mut c = stats.matrix(true)?;
    let n = c.nrows();
    let mean_diag = (0..n).map(|i| c[(i, i)]).sum::<f64>() / n.max(1) as f64;
    let l = lambda.max(1e-6) * mean_diag.max(1e-12);
    for i in 0..n {
        c[(i, i)] += l;
    }
    let llt = c.llt(Side::Lower).ok()?;
    Some((llt.solve(Mat::<f64>::identity(n, n)), l))
}

/// The output error a refit cannot undo when each index goes (see [`Criterion::Obs`]);
/// `None` when no consumer matrix of the group has its input covariance.
fn obs_scores(
    model: &Model,
    g: &Group,
    stats: &CalibrationStats,
    lambda: f64,
    inverses: &mut HashMap<ValueId, Option<(Mat<f64>, f64)>>,
) -> Option<Vec<f64>> {
    let mut out = vec![0.0; g.size];
    let mut used = false;
    for m in g.members.iter().filter(|m| m.role == Role::Reader && is_matrix(model, m)) {
        let Some((act, Role::Reader)) = member_activation(model, m) else { continue };
        let Some(s) = stats.acts.get(&act) else { continue };
        let Some((inv, l)) = inverses.entry(act).or_insert_with(|| ridge_inverse(s, lambda)).as_ref() else { continue };
        let Some(rows) = rows_along(model, m) else { continue };
        for (i, ps) in m.positions.iter().enumerate() {
            let n = ps.len();
            if n == 0 {
                continue;
            }
            // The residual covariance of the index's inputs given the others: (B⁻¹ − λI).
            let b = Mat::<f64>::from_fn(n, n, |a, c| inv[(ps[a] as usize, ps[c] as usize)]);
            let Ok(llt) = b.llt(Side::Lower) else { continue };
            let mut r = llt.solve(Mat::<f64>::identity(n, n));
            for a in 0..n {
                r[(a, a)] -= l;
            }
            let mut t = 0.0;
            for a in 0..n {
                for c in 0..n {
                    t += r[(a, c)] * dot(&rows[ps[a] as usize], &rows[ps[c] as usize]);
                }
            }
            out[i] += t.max(0.0);
        }
        used = true;
    }
    used.then_some(out)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
