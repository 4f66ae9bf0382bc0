//! Importance of each index of each coupling group.

use crate::coupling::{Coupling, Member, Role};
use ecospac_ir::{EntityId, Model, ValueId};
use std::collections::HashMap;

/// How indices are scored.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Criterion {
    /// EcoSpa: the product of the norms of every matrix slice through the index.
    Coupled,
    /// Baseline: the norm of one side only (the first writer matrix).
    Uncoupled,
    /// Baseline: seeded random scores.
    Random,
}

impl Criterion {
    /// Parses `coupled`, `uncoupled` or `random`.
    pub fn parse(s: &str) -> Option<Criterion> {
        Some(match s {
            "coupled" => Criterion::Coupled,
            "uncoupled" => Criterion::Uncoupled,
            "random" => Criterion::Random,
            _ => return None,
        })
    }
}

/// Sum of squares of the weight over all axes but `axis`, per position of `axis`.
fn position_energy(model: &Model, m: &Member) -> Option<Vec<f64>> {
    let t = model.graph.value(m.value).constant.as_ref()?;
    let vals = t.to_f64s()?;
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let n = *dims.get(m.axis)?;
    let inner: usize = dims[m.axis + 1..].iter().product();
    let mut e = vec![0.0; n];
    for (k, v) in vals.iter().enumerate() {
        e[(k / inner) % n] += v * v;
    }
    Some(e)
}

/// Log-scores per group and index (higher is more important).
pub fn scores(model: &Model, coupling: &Coupling, criterion: Criterion, seed: u64) -> Vec<Vec<f64>> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    coupling
        .groups
        .iter()
        .map(|g| {
            if criterion == Criterion::Random {
                return (0..g.size)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state >> 11) as f64
                    })
                    .collect();
            }
            let matrices: Vec<&Member> = g
                .members
                .iter()
                .filter(|m| model.graph.value(m.value).constant.as_ref().is_some_and(|t| t.dims.len() >= 2))
                .collect();
            let chosen: Vec<&Member> = match criterion {
                Criterion::Uncoupled => matrices
                    .iter()
                    .copied()
                    .find(|m| m.role == Role::Writer)
                    .or(matrices.first().copied())
                    .into_iter()
                    .collect(),
                _ if matrices.is_empty() => g.members.iter().collect(),
                _ => matrices,
            };
            let mut log = vec![0.0; g.size];
            for m in chosen {
                let Some(e) = position_energy(model, m) else { continue };
                for (i, positions) in m.positions.iter().enumerate() {
                    let energy: f64 = positions.iter().map(|&p| e[p as usize]).sum();
                    log[i] += 0.5 * (energy + 1e-30).ln();
                }
            }
            log
        })
        .collect()
}

/// The activation a member's index shows up in, for activation-aware scores:
/// a writer's product output (last axis), or a reader's product input (last axis).
pub fn member_activation(model: &Model, m: &Member) -> Option<(ValueId, Role)> {
    let g = &model.graph;
    let (mut node, mut input) = m.reader?;
    // Look through a Transpose of the weight to the product that reads it.
    if let ecospac_ir::Op::Transpose { .. } = g.node(node).op {
        let out = g.node(node).outputs.first().copied().flatten()?;
        let consumers = g.consumers();
        let &next = consumers[out.index()].first()?;
        input = g.node(next).inputs.iter().position(|v| *v == Some(out))?;
        node = next;
    }
    let n = g.node(node);
    match (&n.op, m.role) {
        (ecospac_ir::Op::MatMul | ecospac_ir::Op::Gemm(_), Role::Writer) if input == 1 => {
            Some((n.outputs.first().copied().flatten()?, Role::Writer))
        }
        (ecospac_ir::Op::MatMul, Role::Reader) if input == 1 => {
            Some((n.inputs.first().copied().flatten()?, Role::Reader))
        }
        (ecospac_ir::Op::Gemm(gm), Role::Reader) if input == 1 && !gm.trans_a => {
            Some((n.inputs.first().copied().flatten()?, Role::Reader))
        }
        _ => None,
    }
}

/// Every activation the activation-aware criteria need.
pub fn activation_probes(model: &Model, coupling: &Coupling) -> Vec<ValueId> {
    let mut v: Vec<ValueId> = coupling
        .groups
        .iter()
        .flat_map(|g| g.members.iter())
        .filter_map(|m| member_activation(model, m))
        .map(|(v, _)| v)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Activation-aware log-scores. `energy[v]` is, for each position of the last
/// axis of activation `v`, its sum of squares over the calibration data.
/// Writers contribute the energy of their output columns; readers that of
/// their input columns times their weight rows. `coupled` multiplies every
/// member's term; otherwise only the first writer's counts (the baseline).
pub fn activation_scores(
    model: &Model,
    coupling: &Coupling,
    energy: &HashMap<ValueId, Vec<f64>>,
    coupled: bool,
) -> Vec<Vec<f64>> {
    coupling
        .groups
        .iter()
        .map(|g| {
            let mut log = vec![0.0; g.size];
            let mut used = false;
            for m in &g.members {
                let Some((act, role)) = member_activation(model, m) else { continue };
                let Some(e) = energy.get(&act) else { continue };
                if !coupled && (used || role != Role::Writer) {
                    continue;
                }
                let w = if role == Role::Reader { position_energy(model, m) } else { None };
                for (i, positions) in m.positions.iter().enumerate() {
                    let total: f64 = positions
                        .iter()
                        .map(|&p| e.get(p as usize).copied().unwrap_or(0.0) * w.as_ref().map_or(1.0, |w| w[p as usize]))
                        .sum();
                    log[i] += 0.5 * (total + 1e-30).ln();
                }
                used = true;
            }
            if !used {
                // No product reads this group's weights: fall back to weight norms.
                let one = Coupling::single(g.clone());
                return scores(model, &one, if coupled { Criterion::Coupled } else { Criterion::Uncoupled }, 0)
                    .remove(0);
            }
            log
        })
        .collect()
}
