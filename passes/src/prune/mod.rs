//! Budgeted coupled pruning: scores → a [`SlicePlan`] → a sliced model.

mod importance;
mod slice;

pub use importance::{activation_probes, activation_scores, member_activation, scores, Criterion};
pub use slice::{apply_plan, mask_plan, SliceError};

use crate::coupling::Coupling;
use ecospac_ir::Model;

/// How the kept count is spread over groups.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Allocation {
    /// Every group keeps the same fraction.
    Uniform,
    /// One ranking of scores normalised per group.
    Global,
}

/// Settings of a plan.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PlanOptions {
    /// Fraction of the prunable parameters to keep.
    pub budget: f64,
    /// Scoring.
    pub criterion: Criterion,
    /// Spreading.
    pub allocation: Allocation,
    /// Kept counts are multiples of this where the group is at least twice as large.
    pub align: usize,
    /// Seed of the random criterion.
    pub seed: u64,
}

/// What to keep: plain data, written and read as JSON.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SlicePlan {
    /// Per group (in analysis order): its size and the kept indices, sorted.
    pub groups: Vec<GroupPlan>,
}

/// The plan of one group.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupPlan {
    /// Size of the index space.
    pub size: usize,
    /// Size of one block (head); every block keeps the same count.
    pub block: usize,
    /// Kept indices, sorted.
    pub kept: Vec<u32>,
    /// The weights it slices (names, for reading the plan).
    pub weights: Vec<String>,
}

impl SlicePlan {
    /// Removed indices per group.
    pub fn removed(&self) -> Vec<Vec<u32>> {
        self.groups.iter().map(|g| (0..g.size as u32).filter(|i| g.kept.binary_search(i).is_err()).collect()).collect()
    }
    /// A plan that keeps `kept[g]` of each group.
    pub fn from_kept(model: &Model, coupling: &Coupling, kept: Vec<Vec<u32>>) -> SlicePlan {
        let groups = coupling
            .groups
            .iter()
            .zip(kept)
            .map(|(g, mut k)| {
                k.sort_unstable();
                k.dedup();
                let mut weights: Vec<String> =
                    g.members.iter().map(|m| model.graph.value(m.value).name.clone()).collect();
                weights.dedup();
                GroupPlan { size: g.size, block: g.block, kept: k, weights }
            })
            .collect();
        SlicePlan { groups }
    }
}

fn step(size: usize, align: usize) -> usize {
    if align > 1 && size >= 2 * align {
        align
    } else {
        1
    }
}

/// `count` rounded up to the group's alignment step.
fn aligned(count: usize, size: usize, align: usize) -> usize {
    let a = step(size, align);
    count.div_ceil(a).saturating_mul(a).clamp(a, size)
}

/// `count` rounded to the nearest alignment step.
fn aligned_nearest(count: usize, size: usize, align: usize) -> usize {
    let a = step(size, align);
    ((count + a / 2) / a).saturating_mul(a).clamp(a, size)
}

/// Chooses what to keep under the budget.
pub fn plan(model: &Model, coupling: &Coupling, opts: &PlanOptions) -> SlicePlan {
    plan_with_scores(model, coupling, opts, scores(model, coupling, opts.criterion, opts.seed))
}

/// Chooses what to keep under the budget, from given log-scores (per group, per index).
pub fn plan_with_scores(model: &Model, coupling: &Coupling, opts: &PlanOptions, scores: Vec<Vec<f64>>) -> SlicePlan {
    // Kept count per block (every block of a group keeps the same count).
    let counts: Vec<usize> = match opts.allocation {
        Allocation::Uniform => coupling
            .groups
            .iter()
            .map(|g| aligned((opts.budget * g.block as f64).ceil() as usize, g.block, opts.align))
            .collect(),
        Allocation::Global => {
            // Normalise per group (log-score minus the group mean), then keep the best
            // indices until the kept parameters reach the budget.
            let costs: Vec<u64> = coupling.groups.iter().map(|g| g.cost_per_index(model)).collect();
            let total: u64 = coupling.groups.iter().zip(&costs).map(|(g, c)| c * g.size as u64).sum();
            let mut all: Vec<(f64, usize)> = Vec::new();
            for (gi, s) in scores.iter().enumerate() {
                let mean = s.iter().sum::<f64>() / s.len().max(1) as f64;
                all.extend(s.iter().map(|x| (x - mean, gi)));
            }
            all.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut counts = vec![0usize; coupling.groups.len()];
            let mut kept = 0u64;
            for (_, gi) in all {
                if kept as f64 >= opts.budget * total as f64 {
                    break;
                }
                counts[gi] += 1;
                kept += costs[gi];
            }
            // Per block, to the nearest alignment step.
            let mut per_block: Vec<usize> = counts
                .iter()
                .zip(&coupling.groups)
                .map(|(&c, g)| aligned_nearest((c + g.blocks() / 2) / g.blocks().max(1), g.block, opts.align))
                .collect();
            // Then trade whole steps between groups until the kept parameters are
            // within one step of the budget: drop the step whose best index is
            // weakest, or add the step whose next index is strongest.
            let normalised: Vec<Vec<f64>> = scores
                .iter()
                .map(|s| {
                    let mean = s.iter().sum::<f64>() / s.len().max(1) as f64;
                    let mut v: Vec<f64> = s.iter().map(|x| x - mean).collect();
                    v.sort_by(|a, b| b.total_cmp(a));
                    v
                })
                .collect();
            let groups = &coupling.groups;
            let step_of = |gi: usize| step(groups[gi].block, opts.align);
            let step_cost = |gi: usize| costs[gi] * (step_of(gi) * groups[gi].blocks()) as u64;
            let kept_params = |pb: &[usize]| -> u64 {
                (0..pb.len()).map(|gi| costs[gi] * (pb[gi] * groups[gi].blocks()) as u64).sum()
            };
            let target = opts.budget * total as f64;
            for _ in 0..4 * groups.len() * 64 {
                let kept = kept_params(&per_block) as f64;
                let over = (0..groups.len()).filter(|&gi| per_block[gi] >= 2 * step_of(gi)).min_by(|&a, &b| {
                    let at = |gi: usize| normalised[gi][(per_block[gi] * groups[gi].blocks()).saturating_sub(1)];
                    at(a).total_cmp(&at(b))
                });
                let under =
                    (0..groups.len()).filter(|&gi| per_block[gi] + step_of(gi) <= groups[gi].block).max_by(|&a, &b| {
                        let at = |gi: usize| {
                            normalised[gi][(per_block[gi] * groups[gi].blocks()).min(normalised[gi].len() - 1)]
                        };
                        at(a).total_cmp(&at(b))
                    });
                match (over, under) {
                    (Some(gi), _) if kept - step_cost(gi) as f64 / 2.0 > target => per_block[gi] -= step_of(gi),
                    (_, Some(gi)) if kept + step_cost(gi) as f64 / 2.0 < target => per_block[gi] += step_of(gi),
                    _ => break,
                }
            }
            per_block
        }
    };
    let kept = scores
        .iter()
        .zip(&coupling.groups)
        .zip(counts)
        .map(|((s, g), n)| {
            let mut kept = Vec::with_capacity(n * g.blocks());
            for b in 0..g.blocks() {
                let mut idx: Vec<u32> = (b * g.block..(b + 1) * g.block).map(|i| i as u32).collect();
                idx.sort_by(|&x, &y| s[y as usize].total_cmp(&s[x as usize]).then(x.cmp(&y)));
                kept.extend_from_slice(&idx[..n.min(idx.len())]);
            }
            kept
        })
        .collect();
    SlicePlan::from_kept(model, coupling, kept)
}
