//! Importance of each index of each coupling group.

use crate::coupling::{Coupling, Member, Role};
use ecospac_ir::Model;

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
