//! Spreading the budget over groups: how many indices each group keeps.
//!
//! - `measured` (the default): every group's scores are put on one scale by an
//!   exchange rate measured on calibration data (the model's output error when
//!   the group alone loses its weakest indices, per unit of score removed);
//!   then steps are removed greedily, cheapest error per parameter first,
//!   across layers, groups and granularities (whole heads, dims inside heads,
//!   FFN channels), until the kept parameters reach the budget. Parameters are
//!   counted exactly where groups nest (a head's dims go with the head).
//! - `greedy`: the same greedy removal with the scores taken as they are, for
//!   scores that are already on one scale (first-order Taylor estimates of the
//!   loss each removal causes, as training collects them).
//! - `global`: one ranking of scores normalised per group (no heads).
//! - `uniform`: every group that is not a whole-head group keeps the same fraction.

use super::plan::{prunable_parameters, prunable_parameters_in, SlicePlan};
use crate::coupling::{Coupling, Group};
use ecospac_ir::{Model, NodeId, ValueId};
use std::collections::HashMap;

/// How the kept count is spread over groups.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Allocation {
    /// Every group (but whole-head groups, which keep every head) keeps the same fraction.
    Uniform,
    /// One ranking of scores normalised per group (whole-head groups keep every head).
    Global,
    /// Greedy by measured exchange rates, whole heads included.
    Measured,
    /// Greedy by the scores as they are (they must share one scale, as Taylor
    /// estimates of the loss do), whole heads included.
    Greedy,
}

impl Allocation {
    /// Every allocation, by name.
    pub const ALL: [(&'static str, Allocation); 4] = [
        ("measured", Allocation::Measured),
        ("greedy", Allocation::Greedy),
        ("global", Allocation::Global),
        ("uniform", Allocation::Uniform),
    ];
}

/// The alignment step of a block of `size`: `align` where the block is at least twice as large, else 1.
pub fn step(size: usize, align: usize) -> usize {
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

/// Per group, per block: the block's indices from weakest to strongest.
pub fn weakest_first(g: &Group, scores: &[f64]) -> Vec<Vec<u32>> {
    (0..g.blocks())
        .map(|b| {
            let mut idx: Vec<u32> = (b * g.block..(b + 1) * g.block).map(|i| i as u32).collect();
            idx.sort_by(|&x, &y| scores[x as usize].total_cmp(&scores[y as usize]).then(y.cmp(&x)));
            idx
        })
        .collect()
}

/// The plan that keeps `per_block[g]` strongest indices of every block of each group.
pub fn keep_strongest(model: &Model, coupling: &Coupling, scores: &[Vec<f64>], per_block: &[usize]) -> SlicePlan {
    let kept = coupling
        .groups
        .iter()
        .zip(scores)
        .zip(per_block)
        .map(|((g, s), &n)| {
            weakest_first(g, s).into_iter().flat_map(|b| b[b.len() - n.min(b.len())..].to_vec()).collect()
        })
        .collect();
    let mut plan = SlicePlan::from_kept(model, coupling, kept);
    for (gp, s) in plan.groups.iter_mut().zip(scores) {
        gp.scores = Some(s.iter().map(|&x| x as f32).collect());
    }
    plan
}

/// Uniform: every non-head group keeps `budget` of each block.
pub fn uniform(coupling: &Coupling, budget: f64, align: usize) -> Vec<usize> {
    coupling
        .groups
        .iter()
        .map(|g| if g.outer { g.block } else { aligned((budget * g.block as f64).ceil() as usize, g.block, align) })
        .collect()
}

/// Global: one ranking of log-scores normalised by their group mean, then
/// whole steps traded until the kept parameters are within one step of the
/// budget (of the cut weights' parameters, parts no group cuts included).
/// Whole-head groups, and groups out of `scope`, keep everything.
pub fn global(
    model: &Model,
    coupling: &Coupling,
    scores: &[Vec<f64>],
    scope: &[bool],
    budget: f64,
    align: usize,
) -> Vec<usize> {
    let groups = &coupling.groups;
    let inside: Vec<bool> = (0..groups.len()).map(|gi| scope.get(gi).copied().unwrap_or(true)).collect();
    let active = |gi: usize| !groups[gi].outer && inside[gi];
    let costs: Vec<u64> =
        (0..groups.len()).map(|gi| if active(gi) { groups[gi].cost_per_index(model) } else { 0 }).collect();
    let total: u64 = groups.iter().zip(&costs).map(|(g, c)| c * g.size as u64).sum();
    // Parts of the cut weights that no (non-head) group cuts always stay.
    let (exact, _) = prunable_parameters_in(model, coupling, &vec![Vec::new(); groups.len()], Some(&inside));
    let fixed = exact.saturating_sub(total);
    let budget = ((budget * exact as f64 - fixed as f64) / total.max(1) as f64).clamp(0.0, 1.0);
    let normalised: Vec<Vec<f64>> = scores
        .iter()
        .map(|s| {
            let logs: Vec<f64> = s.iter().map(|x| (x + 1e-300).ln()).collect();
            let mean = logs.iter().sum::<f64>() / logs.len().max(1) as f64;
            let mut v: Vec<f64> = logs.iter().map(|x| x - mean).collect();
            v.sort_by(|a, b| b.total_cmp(a));
            v
        })
        .collect();
    let mut all: Vec<(f64, usize)> = Vec::new();
    for (gi, s) in normalised.iter().enumerate() {
        if active(gi) {
            all.extend(s.iter().map(|&x| (x, gi)));
        }
    }
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut counts = vec![0usize; groups.len()];
    let mut kept = 0u64;
    for (_, gi) in all {
        if kept as f64 >= budget * total as f64 {
            break;
        }
        counts[gi] += 1;
        kept += costs[gi];
    }
    let mut per_block: Vec<usize> = counts
        .iter()
        .zip(groups)
        .enumerate()
        .map(|(gi, (&c, g))| {
            if active(gi) {
                aligned_nearest((c + g.blocks() / 2) / g.blocks().max(1), g.block, align)
            } else {
                g.block
            }
        })
        .collect();
    let step_of = |gi: usize| step(groups[gi].block, align);
    let step_cost = |gi: usize| costs[gi] * (step_of(gi) * groups[gi].blocks()) as u64;
    let kept_params =
        |pb: &[usize]| -> u64 { (0..pb.len()).map(|gi| costs[gi] * (pb[gi] * groups[gi].blocks()) as u64).sum() };
    let target = budget * total as f64;
    for _ in 0..4 * groups.len() * 64 {
        let kept = kept_params(&per_block) as f64;
        let prunable = |gi: &usize| active(*gi);
        let over =
            (0..groups.len()).filter(prunable).filter(|&gi| per_block[gi] >= 2 * step_of(gi)).min_by(|&a, &b| {
                let at = |gi: usize| normalised[gi][(per_block[gi] * groups[gi].blocks()).saturating_sub(1)];
                at(a).total_cmp(&at(b))
            });
        let under = (0..groups.len())
            .filter(prunable)
            .filter(|&gi| per_block[gi] + step_of(gi) <= groups[gi].block)
            .max_by(|&a, &b| {
                let at =
                    |gi: usize| normalised[gi][(per_block[gi] * groups[gi].blocks()).min(normalised[gi].len() - 1)];
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

/// Per weight use and axis, which positions are gone, with the kept counts.
struct Tensors {
    dims: Vec<Vec<u64>>,
    gone: Vec<Vec<Vec<bool>>>,
    kept: Vec<Vec<u64>>,
}

impl Tensors {
    fn size(&self, t: usize) -> u64 {
        self.kept[t].iter().product()
    }
}

/// Measured: greedy removal of the step with the least estimated output error
/// per parameter, where a group's error per unit of score is `rates[g]`,
/// until the kept parameters are at most `budget` of the prunable ones of the
/// groups in `scope` (the others keep everything).
pub fn measured(
    model: &Model,
    coupling: &Coupling,
    scores: &[Vec<f64>],
    rates: &[f64],
    scope: &[bool],
    budget: f64,
    align: usize,
) -> Vec<usize> {
    let groups = &coupling.groups;
    let active = |gi: usize| scope.get(gi).copied().unwrap_or(true) && rates[gi].is_finite();
    // Tensor uses and the (tensor, axis) each member cuts.
    let mut index: HashMap<(ValueId, Option<(NodeId, usize)>), usize> = HashMap::new();
    let mut ts = Tensors { dims: Vec::new(), gone: Vec::new(), kept: Vec::new() };
    let mut members: Vec<Vec<(usize, usize, usize)>> = Vec::new(); // (tensor, axis, member index)
    for (gi, g) in groups.iter().enumerate() {
        let mut ms = Vec::new();
        if !active(gi) {
            members.push(ms);
            continue;
        }
        for (mi, m) in g.members.iter().enumerate() {
            let Some(t) = model.graph.value(m.value).constant.as_ref() else { continue };
            let ti = *index.entry(m.storage()).or_insert_with(|| {
                let dims: Vec<u64> = t.dims.iter().map(|&d| d.max(0) as u64).collect();
                ts.gone.push(dims.iter().map(|&d| vec![false; d as usize]).collect());
                ts.kept.push(dims.clone());
                ts.dims.push(dims);
                ts.dims.len() - 1
            });
            ms.push((ti, m.axis, mi));
        }
        members.push(ms);
    }
    let total: u64 = (0..ts.dims.len()).map(|t| ts.size(t)).sum();
    let target = (budget * total as f64).floor() as u64;
    let orders: Vec<Vec<Vec<u32>>> = groups.iter().zip(scores).map(|(g, s)| weakest_first(g, s)).collect();
    let mut removed_per_block = vec![0usize; groups.len()];
    let mut current = total;
    // The change in kept parameters (and the live score) if group `gi` removes its next step.
    let evaluate = |gi: usize, done: usize, ts: &Tensors| -> Option<(u64, f64)> {
        let g = &groups[gi];
        let st = step(g.block, align);
        if !active(gi) || done + 2 * st > g.block {
            return None;
        }
        let step_indices: Vec<u32> = orders[gi].iter().flat_map(|b| b[done..done + st].iter().copied()).collect();
        let mut newly: HashMap<(usize, usize), Vec<u32>> = HashMap::new();
        let mut live_score = 0.0;
        for &i in &step_indices {
            let mut any_live = false;
            for &(ti, axis, mi) in &members[gi] {
                for &p in &g.members[mi].positions[i as usize] {
                    if !ts.gone[ti][axis][p as usize] {
                        any_live = true;
                        newly.entry((ti, axis)).or_default().push(p);
                    }
                }
            }
            if any_live {
                live_score += scores[gi][i as usize];
            }
        }
        let mut delta = 0u64;
        let mut by_tensor: HashMap<usize, Vec<(usize, u64)>> = HashMap::new();
        for ((ti, axis), mut ps) in newly {
            ps.sort_unstable();
            ps.dedup();
            by_tensor.entry(ti).or_default().push((axis, ps.len() as u64));
        }
        for (ti, cuts) in by_tensor {
            let mut kept = ts.kept[ti].clone();
            for (axis, n) in cuts {
                kept[axis] = kept[axis].saturating_sub(n);
            }
            delta += ts.size(ti) - kept.iter().product::<u64>();
        }
        Some((delta, live_score * rates[gi].max(0.0)))
    };
    while current > target {
        let mut best: Option<(f64, u64, usize)> = None;
        for (gi, &done) in removed_per_block.iter().enumerate() {
            let Some((delta, err)) = evaluate(gi, done, &ts) else { continue };
            if delta == 0 {
                continue;
            }
            let ratio = err / delta as f64;
            if best.is_none_or(|(r, d, _)| ratio < r || (ratio == r && delta > d)) {
                best = Some((ratio, delta, gi));
            }
        }
        let Some((_, delta, gi)) = best else { break };
        let g = &groups[gi];
        let done = removed_per_block[gi];
        let st = step(g.block, align);
        for b in &orders[gi] {
            for &i in &b[done..done + st] {
                for &(ti, axis, mi) in &members[gi] {
                    for &p in &g.members[mi].positions[i as usize] {
                        if !ts.gone[ti][axis][p as usize] {
                            ts.gone[ti][axis][p as usize] = true;
                            ts.kept[ti][axis] -= 1;
                        }
                    }
                }
            }
        }
        removed_per_block[gi] += st;
        current -= delta;
    }
    groups.iter().zip(removed_per_block).map(|(g, r)| g.block - r).collect()
}

/// Greedy: [`measured`] with every group's error per unit of score 1, for
/// scores that share one scale.
pub fn greedy(
    model: &Model,
    coupling: &Coupling,
    scores: &[Vec<f64>],
    scope: &[bool],
    budget: f64,
    align: usize,
) -> Vec<usize> {
    measured(model, coupling, scores, &vec![1.0; coupling.groups.len()], scope, budget, align)
}

/// The exact kept fraction of the prunable parameters under `plan`'s removals.
pub fn kept_fraction(model: &Model, coupling: &Coupling, removed: &[Vec<u32>]) -> f64 {
    let (before, after) = prunable_parameters(model, coupling, removed);
    after as f64 / before.max(1) as f64
}
