//! The EcoSpa schedule: coupled importance accumulated while training, a cubic
//! sparsity schedule, and physical shrinking of parameters and AdamW moments.
//!
//! The groups come from the compiler's coupling analysis on the model's graph
//! (the hf frontend's graph of the same config and tensor names); the graph is
//! sliced with the compiler's slicer alongside the live tensors, so it always
//! describes the model being trained and exports it at the end.

use crate::model::Model;
use crate::optim::AdamW;
use crate::TrainError;
use ecospac_frontends::hf::{build_graph, Weights};
use ecospac_ir::Model as IrModel;
use ecospac_passes::coupling::{analyze_with, AnalysisOptions, Coupling, Role};
use ecospac_passes::prune::{apply_plan, plan_with_scores, scores, Allocation, Criterion, PlanOptions, SlicePlan};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use tch::{Kind, Tensor};

/// How coupled indices are scored during training.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainCriterion {
    /// EcoSpa: first-order Taylor estimate of removing the whole coupled slice,
    /// `|Σ w·∂L/∂w|` over every matrix the index runs through, averaged (EMA).
    Coupled,
    /// The compiler's weight-only coupled criterion (product of slice norms) on the current weights.
    Magnitude,
    /// Baseline: the same Taylor term on one matrix of the group only (its first writer).
    Uncoupled,
}

impl TrainCriterion {
    /// Parses `coupled`, `magnitude` or `uncoupled`.
    pub fn parse(s: &str) -> Option<TrainCriterion> {
        Some(match s {
            "coupled" => TrainCriterion::Coupled,
            "magnitude" => TrainCriterion::Magnitude,
            "uncoupled" => TrainCriterion::Uncoupled,
            _ => return None,
        })
    }
}

/// Sparsity over training steps: dense until `start`, then a cubic ramp of the
/// kept fraction of prunable parameters down to `target` at `end`, one shrink every `every` steps.
///
/// ```
/// use ecospac_runtime_train::sparsity::Schedule;
/// let s = Schedule { target: 0.5, start: 10, end: 110, every: 25 };
/// assert_eq!(s.density(0), 1.0);
/// assert!((s.density(60) - 0.5625).abs() < 1e-12);
/// assert_eq!(s.density(500), 0.5);
/// assert!(s.shrinks_at(35) && !s.shrinks_at(36));
/// ```
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    /// Kept fraction of the prunable parameters at the end.
    pub target: f64,
    /// First shrink step.
    pub start: usize,
    /// Step at which the target is reached.
    pub end: usize,
    /// Steps between shrinks.
    pub every: usize,
}

impl Schedule {
    /// The kept fraction the schedule asks for after `step`.
    pub fn density(&self, step: usize) -> f64 {
        if step < self.start {
            return 1.0;
        }
        if step >= self.end || self.end <= self.start {
            return self.target;
        }
        let x = (step - self.start) as f64 / (self.end - self.start) as f64;
        self.target + (1.0 - self.target) * (1.0 - x).powi(3)
    }

    /// Whether the model shrinks after `step`.
    pub fn shrinks_at(&self, step: usize) -> bool {
        self.target < 1.0
            && step >= self.start
            && step <= self.end
            && ((step - self.start).is_multiple_of(self.every.max(1)) || step == self.end)
    }

    /// Whether importance is being accumulated at `step`.
    pub fn collects_at(&self, step: usize) -> bool {
        self.target < 1.0 && step + self.every.max(1) >= self.start && step <= self.end
    }
}

/// Importance state and the graph the shrinking follows.
pub struct Sparsifier {
    /// The model's graph, sliced with it.
    pub ir: IrModel,
    coupling: Coupling,
    /// Plans applied so far, in order (replayed on resume).
    pub plans: Vec<SlicePlan>,
    /// EMA of the importance per group and index.
    pub ema: Vec<Vec<f64>>,
    /// Scoring.
    pub criterion: TrainCriterion,
    /// Spreading over groups.
    pub allocation: Allocation,
    /// Kept counts are multiples of this where a group is twice as large.
    pub align: usize,
    /// EMA decay per collected step.
    pub decay: f64,
    dense_prunable: u64,
}

/// The training models keep their head counts (their attention reshapes by the
/// config's `num_heads`), so the analysis here has no whole-head groups.
const TRAIN_ANALYSIS: AnalysisOptions = AnalysisOptions { heads: false };

/// Per (tensor name, axis), the positions a plan removes.
pub type Cuts = BTreeMap<(String, usize), BTreeSet<u32>>;

impl Sparsifier {
    /// Builds the graph of `model` (config + current tensors) and analyses it.
    pub fn new(
        model: &Model,
        criterion: TrainCriterion,
        allocation: Allocation,
        align: usize,
    ) -> Result<Sparsifier, TrainError> {
        let mut weights = Weights::default();
        for name in model.params.keys().chain(model.buffers.keys()) {
            if let Some(t) = model.to_ir(name) {
                weights.order.push(name.clone());
                weights.tensors.insert(name.clone(), t);
            }
        }
        let mut ir = build_graph(Path::new("."), model.cfg.json.clone(), weights)?.model;
        ecospac_passes::prepare(&mut ir)?;
        let coupling = analyze_with(&ir, &TRAIN_ANALYSIS);
        let dense_prunable = prunable(&ir, &coupling);
        let ema = coupling.groups.iter().map(|g| vec![0.0; g.size]).collect();
        Ok(Sparsifier {
            ir,
            coupling,
            plans: Vec::new(),
            ema,
            criterion,
            allocation,
            align,
            decay: 0.9,
            dense_prunable,
        })
    }

    /// Coupling groups.
    pub fn coupling(&self) -> &Coupling {
        &self.coupling
    }

    /// Kept fraction of the dense prunable parameters.
    pub fn density(&self) -> f64 {
        prunable(&self.ir, &self.coupling) as f64 / self.dense_prunable.max(1) as f64
    }

    /// Adds this step's importance (gradients must be present) to the EMA.
    pub fn collect(&mut self, model: &Model) {
        if self.criterion == TrainCriterion::Magnitude {
            return;
        }
        let g = &self.ir.graph;
        let mut taylor: HashMap<(String, usize), Vec<f64>> = HashMap::new();
        tch::no_grad(|| {
            for group in &self.coupling.groups {
                for m in &group.members {
                    let name = g.value(m.value).name.clone();
                    if taylor.contains_key(&(name.clone(), m.axis)) {
                        continue;
                    }
                    let Some(p) = model.params.get(&name) else { continue };
                    let grad = p.grad();
                    if !grad.defined() {
                        continue;
                    }
                    let prod = p * grad;
                    let dims: Vec<i64> = (0..prod.dim() as i64).filter(|&d| d != m.axis as i64).collect();
                    let per =
                        if dims.is_empty() { prod } else { prod.sum_dim_intlist(dims.as_slice(), false, Kind::Double) };
                    let per = per.to_kind(Kind::Double).to_device(tch::Device::Cpu);
                    let n = per.numel();
                    let mut v = vec![0f64; n];
                    per.copy_data(&mut v, n);
                    taylor.insert((name, m.axis), v);
                }
            }
        });
        for (gi, group) in self.coupling.groups.iter().enumerate() {
            let members: Vec<_> = match self.criterion {
                TrainCriterion::Uncoupled => group
                    .members
                    .iter()
                    .filter(|m| model.params.get(&g.value(m.value).name).is_some_and(|p| p.dim() >= 2))
                    .find(|m| m.role == Role::Writer)
                    .into_iter()
                    .collect(),
                _ => group.members.iter().collect(),
            };
            let mut joint = vec![0.0f64; group.size];
            for m in members {
                let Some(t) = taylor.get(&(g.value(m.value).name.clone(), m.axis)) else { continue };
                for (i, positions) in m.positions.iter().enumerate() {
                    joint[i] += positions.iter().map(|&p| t[p as usize]).sum::<f64>();
                }
            }
            for (e, j) in self.ema[gi].iter_mut().zip(joint) {
                *e = self.decay * *e + (1.0 - self.decay) * j.abs();
            }
        }
    }

    /// Chooses what to keep so that the kept fraction of the dense prunable
    /// parameters becomes `density`; `None` when nothing would change.
    pub fn plan(&mut self, model: &Model, density: f64) -> Option<SlicePlan> {
        let current = self.density();
        if density >= current - 1e-9 {
            return None;
        }
        let linear: Vec<Vec<f64>> = match self.criterion {
            TrainCriterion::Magnitude => {
                self.refresh_weights(model);
                scores(&self.ir, &self.coupling, Criterion::Coupled, None, 0).ok()?
            }
            _ => self.ema.iter().map(|s| s.iter().map(|x| x + 1e-30).collect()).collect(),
        };
        let opts = PlanOptions {
            budget: density / current,
            criterion: Criterion::Coupled,
            allocation: self.allocation,
            align: self.align,
            seed: 0,
        };
        let p = plan_with_scores(&self.ir, &self.coupling, &opts, linear).ok()?;
        p.groups.iter().any(|g| g.kept.len() < g.size).then_some(p)
    }

    /// The positions `plan` removes, per tensor name and axis.
    pub fn cuts(&self, plan: &SlicePlan) -> Result<Cuts, TrainError> {
        let mut cuts = Cuts::new();
        let removed = plan.bind(&self.ir, &self.coupling).map_err(ecospac_passes::prune::SliceError::from)?;
        for (g, removed) in self.coupling.groups.iter().zip(removed) {
            for m in &g.members {
                let set = cuts.entry((self.ir.graph.value(m.value).name.clone(), m.axis)).or_default();
                for &i in &removed {
                    set.extend(m.positions[i as usize].iter().copied());
                }
            }
        }
        cuts.retain(|_, s| !s.is_empty());
        Ok(cuts)
    }

    /// Applies `plan`: slices the graph, the parameters, the buffers and the
    /// optimizer moments, then analyses the sliced graph for the next round.
    pub fn shrink(&mut self, model: &mut Model, opt: Option<&mut AdamW>, plan: SlicePlan) -> Result<(), TrainError> {
        let cuts = self.cuts(&plan)?;
        slice_tensors(&mut model.params, &cuts, true);
        slice_tensors(&mut model.buffers, &cuts, false);
        if let Some(opt) = opt {
            slice_tensors(&mut opt.m, &cuts, false);
            slice_tensors(&mut opt.v, &cuts, false);
        }
        apply_plan(&mut self.ir, &mut self.coupling, &plan)?;
        ecospac_passes::run_passes(&mut self.ir, &["infer-shapes", "eliminate-dead-nodes"])?;
        self.coupling = analyze_with(&self.ir, &TRAIN_ANALYSIS);
        self.ema = self.coupling.groups.iter().map(|g| vec![0.0; g.size]).collect();
        self.plans.push(plan);
        Ok(())
    }

    /// Copies the model's current tensors into the graph's initializers of the same names.
    pub fn refresh_weights(&mut self, model: &Model) {
        let g = &mut self.ir.graph;
        let ids: Vec<_> = g.initializers.clone();
        for v in ids {
            let name = g.value(v).name.clone();
            if let Some(t) = model.to_ir(&name) {
                g.value_mut(v).constant = Some(t);
            }
        }
    }
}

/// Parameters of the prunable groups as they stand.
fn prunable(ir: &IrModel, coupling: &Coupling) -> u64 {
    coupling.groups.iter().map(|g| g.cost_per_index(ir) * g.size as u64).sum()
}

/// Keeps, along each cut axis, only the positions not removed.
pub fn slice_tensors(tensors: &mut BTreeMap<String, Tensor>, cuts: &Cuts, trainable: bool) {
    for ((name, axis), removed) in cuts {
        let Some(t) = tensors.get(name) else { continue };
        let len = t.size()[*axis] as u32;
        let keep: Vec<i64> = (0..len).filter(|p| !removed.contains(p)).map(i64::from).collect();
        let index = Tensor::from_slice(&keep).to_device(t.device());
        let sliced = t.detach().index_select(*axis as i64, &index).contiguous();
        tensors.insert(name.clone(), if trainable { sliced.set_requires_grad(true) } else { sliced });
    }
}
